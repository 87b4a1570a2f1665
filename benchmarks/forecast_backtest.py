"""Backtest the arrivals forecast against the seasonal-naive baseline.

Generates demo data at ``demo`` scale into a temporary folder (or reads
``--data``), holds out the last ``--test-days`` per market and prints, per
market x queue, the MASE of the model and of the seasonal-naive baseline
(both scaled by the in-sample seasonal-naive error, season 168 hours) and the
coverage of their 80% prediction intervals, then a pooled summary.

Usage::

    .venv/bin/python benchmarks/forecast_backtest.py
    .venv/bin/python benchmarks/forecast_backtest.py --data data/demo --markets SG,ID
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence

import pandas as pd

from qualitylab.demo import generate
from qualitylab.forecast import HUMAN_ROUTINGS, MODEL_METHOD, NAIVE_METHOD, backtest
from qualitylab.sources import open_dataset

DEFAULT_MARKETS = ("SG", "ID", "JP", "TH", "VN")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def run(
    data: str,
    markets: Sequence[str],
    *,
    test_days: int,
    history_days: int,
    interval: float,
    human_only: bool,
) -> pd.DataFrame:
    """One row per market x queue: MASE and coverage of both methods, seconds."""
    ds = open_dataset(data)
    rows = []
    for market in markets:
        started = time.perf_counter()
        bt = backtest(
            ds,
            market,
            test_days=test_days,
            history_days=history_days,
            interval=interval,
            routing=HUMAN_ROUTINGS if human_only else None,
        )
        seconds = (time.perf_counter() - started) / max(bt["queue"].nunique(), 1)
        wide = bt.pivot_table(
            index=["market", "queue"], columns="method", values=["mase", "coverage", "n"]
        )
        for (mkt, queue), r in wide.iterrows():
            rows.append(
                {
                    "market": mkt,
                    "queue": queue,
                    "mase_model": r[("mase", MODEL_METHOD)],
                    "mase_naive": r[("mase", NAIVE_METHOD)],
                    "coverage_model": r[("coverage", MODEL_METHOD)],
                    "coverage_naive": r[("coverage", NAIVE_METHOD)],
                    "hours": int(r[("n", MODEL_METHOD)]),
                    "seconds_per_series": seconds,
                }
            )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.Series:
    """Pooled figures: medians of MASE, hour-weighted coverage, wins."""
    w = table["hours"]
    return pd.Series(
        {
            "series": len(table),
            "model_beats_naive": int((table["mase_model"] < table["mase_naive"]).sum()),
            "median_mase_model": table["mase_model"].median(),
            "median_mase_naive": table["mase_naive"].median(),
            "coverage_model": (table["coverage_model"] * w).sum() / w.sum(),
            "coverage_naive": (table["coverage_naive"] * w).sum() / w.sum(),
            "coverage_model_min": table["coverage_model"].min(),
            "coverage_model_max": table["coverage_model"].max(),
            "max_seconds_per_series": table["seconds_per_series"].max(),
        }
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: generate demo)")
    parser.add_argument("--markets", type=_csv, default=list(DEFAULT_MARKETS))
    parser.add_argument("--days", type=int, default=90, help="days of generated demo data")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scale", default="demo", choices=["small", "demo", "large"])
    parser.add_argument("--test-days", type=int, default=28)
    parser.add_argument("--history-days", type=int, default=56)
    parser.add_argument("--interval", type=float, default=0.8)
    parser.add_argument(
        "--human-only", action="store_true", help="forecast moderator-handled items only"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ql_backtest_") as tmp:
        data = args.data
        if data is None:
            started = time.perf_counter()
            generate(tmp, markets=None, days=args.days, scale=args.scale, seed=args.seed)
            data = tmp
            print(
                f"generated {args.scale} demo data ({args.days} days, seed {args.seed}) "
                f"in {time.perf_counter() - started:.1f}s",
                file=sys.stderr,
            )
        table = run(
            data,
            args.markets,
            test_days=args.test_days,
            history_days=args.history_days,
            interval=args.interval,
            human_only=args.human_only,
        )
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(
            f"Backtest: last {args.test_days} days held out, up to {args.history_days} days of "
            f"history, {args.interval:.0%} intervals\n"
        )
        print(table.round(3).to_string(index=False))
        print()
        print(summary(table).round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
