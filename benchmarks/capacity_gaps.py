"""Do the planted understaffed hours show as capacity gaps, and only they?

Generates demo data for each seed into a temporary folder (or reads
``--data``), runs :func:`qualitylab.capacity.capacity_table` per market and
scores its history rows against ``incidents.csv``. Planted understaffing is a
queue-level ``capacity_gap`` incident (a rota cut) or a queue-level
``sla_compliance`` incident (a volume surge without extra staff).

Printed per seed:

* per planted incident: its queue-hours, the share with ``gap > 0``, the share
  of its days whose summed gap is positive, the mean gap, and the mean
  predicted vs measured SLA;
* per market, all other history queue-hours: the share with ``gap > 0``, the
  share short by more than 10% of the requirement, and the share of
  queue-days whose summed gap is positive.

Usage::

    .venv/bin/python benchmarks/capacity_gaps.py --scale small --seeds 7,11,23
    .venv/bin/python benchmarks/capacity_gaps.py --scale demo --seeds 7 --markets TH,ID
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from qualitylab.capacity import capacity_table
from qualitylab.demo import generate
from qualitylab.sources import open_dataset

PLANTED_METRICS = ("capacity_gap", "sla_compliance")
MATERIAL = 0.10  # "short by more than 10% of the requirement"


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def planted(incidents: pd.DataFrame) -> pd.DataFrame:
    """Queue-level incidents that plant understaffing."""
    keep = incidents["metric"].isin(PLANTED_METRICS) & (incidents["dimension"] == "queue")
    out = incidents[keep].copy()
    out["start_date"] = pd.to_datetime(out["start_date"])
    out["end_date"] = pd.to_datetime(out["end_date"])
    return out


def score(
    data: str | Path, markets: Sequence[str] | None = None, *, horizon_days: int = 28
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Planted-incident rows and other-hours rows for one dataset."""
    ds = open_dataset(data)
    inc = planted(pd.read_csv(Path(data) / "incidents.csv"))
    codes = list(markets) if markets else sorted(ds.params.codes)
    present = set(ds.table("decisions").select("market").distinct().to_pandas()["market"].tolist())
    rows_planted, rows_other = [], []
    for market in [c for c in codes if c in present]:
        started = time.perf_counter()
        cap = capacity_table(ds, market, horizon_days=horizon_days)
        seconds = time.perf_counter() - started
        hist = cap[~cap["is_forecast"]].copy()
        hist["planted"] = False
        for r in inc[inc["market"] == market].itertuples():
            sel = (hist["queue"] == r.segment) & hist["date"].between(r.start_date, r.end_date)
            hist.loc[sel, "planted"] = True
            x = hist[sel]
            daily = x.groupby("date")["gap"].sum()
            rows_planted.append(
                {
                    "market": market,
                    "incident": r.metric,
                    "queue": r.segment,
                    "dates": f"{r.start_date:%m-%d}..{r.end_date:%m-%d}",
                    "hours": len(x),
                    "gap_hours": (x["gap"] > 0).mean(),
                    "gap_days": (daily > 0).mean(),
                    "mean_gap": x["gap"].mean(),
                    "required": x["required_agents"].mean(),
                    "staffed": x["staffed_agents"].mean(),
                    "predicted_sla": x["predicted_sla"].mean(),
                    "measured_sla": x["measured_sla"].mean(),
                }
            )
        other = hist[~hist["planted"]]
        daily = other.groupby(["queue", "date"])["gap"].sum()
        rows_other.append(
            {
                "market": market,
                "hours": len(other),
                "gap_hours": (other["gap"] > 0).mean(),
                "material_gap_hours": (other["gap"] > MATERIAL * other["required_agents"]).mean(),
                "gap_queue_days": (daily > 0).mean(),
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows_planted), pd.DataFrame(rows_other)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="dataset folder (default: generate demo)")
    parser.add_argument("--markets", type=_csv, default=None, help="default: every market")
    parser.add_argument("--seeds", type=_csv, default=["7", "11", "23"])
    parser.add_argument("--scale", default="small", choices=["small", "demo", "large"])
    parser.add_argument("--days", type=int, default=90, help="days of generated demo data")
    args = parser.parse_args(argv)

    sources = [("data", args.data)] if args.data else [(s, None) for s in args.seeds]
    planted_all, other_all = [], []
    for label, data in sources:
        with tempfile.TemporaryDirectory(prefix="ql_capacity_") as tmp:
            if data is None:
                started = time.perf_counter()
                generate(
                    tmp, markets=args.markets, days=args.days, scale=args.scale, seed=int(label)
                )
                print(
                    f"generated {args.scale} demo data ({args.days} days, seed {label}) "
                    f"in {time.perf_counter() - started:.1f}s",
                    file=sys.stderr,
                )
            p, o = score(data or tmp, args.markets)
        planted_all.append(p.assign(seed=label))
        other_all.append(o.assign(seed=label))
    p = pd.concat(planted_all, ignore_index=True)
    o = pd.concat(other_all, ignore_index=True)
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print("Planted understaffing (history rows of capacity_table):\n")
        print(p[["seed", *p.columns[:-1]]].round(3).to_string(index=False))
        print("\nAll other history queue-hours:\n")
        print(o[["seed", *o.columns[:-1]]].round(3).to_string(index=False))
        pooled = (o["gap_hours"] * o["hours"]).sum() / o["hours"].sum()
        material = (o["material_gap_hours"] * o["hours"]).sum() / o["hours"].sum()
        print(
            f"\nPooled other hours: {pooled:.1%} with gap > 0, {material:.1%} short by more "
            f"than {MATERIAL:.0%} of the requirement"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
