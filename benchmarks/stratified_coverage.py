"""Coverage of the design-weighted accuracy interval under stratified QA samples.

Issue #17's design: each vendor is one replicate. 70% of its decisions sit in
a queue with 97% accuracy audited at 5%, 30% in a queue with 80% accuracy
audited at 20%; ``sample_weight`` is 1 / audit rate (about 95 audits per
vendor). ``qualitylab.metrics.qa_metrics(ds, market, by=["vendor"])`` gives one
accuracy interval per vendor; we count how often it covers the vendor's true
accuracy and compare the mean width with 3.92 x the SD of the estimates.

Run (about a minute on two cores)::

    .venv/bin/python benchmarks/stratified_coverage.py

It writes ``benchmarks/results/stratified_coverage.md``. The test
``tests/test_stratified.py`` runs the same simulation with fewer replicates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

MARKET = "SG"
NOTES = "<!-- notes: kept when the table above is regenerated -->"
T0 = pd.Timestamp("2026-03-02 02:00", tz="UTC")


@dataclass(frozen=True)
class Design:
    """A stratified audit design: per stratum the share of decisions, accuracy, audit rate."""

    name: str
    shares: tuple[float, ...]
    accuracy: tuple[float, ...]
    audit_rate: tuple[float, ...]
    decisions: int = 1000  # decisions per vendor
    bernoulli: bool = False  # audit each decision independently (random n_h)

    @property
    def true_accuracy(self) -> float:
        return float(np.dot(self.shares, self.accuracy))


TWO_QUEUE = Design("two queues (issue #17)", (0.7, 0.3), (0.97, 0.80), (0.05, 0.20))
# 30 audits per stratum, accuracy near 98%
SMALL_98 = Design("30 audits per stratum, accuracy 98%", (0.6, 0.4), (0.99, 0.965), (0.05, 0.075))
EQUAL = Design("equal weights", (0.7, 0.3), (0.97, 0.80), (0.095, 0.095))
TWO_QUEUE_BERNOULLI = Design(
    "two queues, Bernoulli audits", (0.7, 0.3), (0.97, 0.80), (0.05, 0.20), bernoulli=True
)
DESIGNS = (TWO_QUEUE, SMALL_98, EQUAL, TWO_QUEUE_BERNOULLI)


def simulate(design: Design, vendors: int, seed: int) -> tuple[dict[str, pd.DataFrame], pd.Series]:
    """Tables for ``vendors`` replicates of `design`, and each vendor's true accuracy.

    Only audited decisions are written (the others do not enter QA metrics).
    Each stratum gets exactly ``round(rate * size)`` audits (stratified
    sampling), or a binomial number when ``design.bernoulli``.
    A vendor's true accuracy is the design's population rate
    (:attr:`Design.true_accuracy`): the decisions themselves are random draws.
    ``stratum`` holds the queue the audit was drawn from.
    """
    rng = np.random.default_rng(seed)
    parts = []
    for h, (share, acc, rate) in enumerate(
        zip(design.shares, design.accuracy, design.audit_rate, strict=True)
    ):
        size = round(design.decisions * share)
        n_h = (
            rng.binomial(size, rate, size=vendors)
            if design.bernoulli
            else np.full(vendors, round(size * rate))
        )
        vendor = np.repeat(np.arange(vendors), n_h)
        parts.append(
            pd.DataFrame(
                {
                    "vendor": vendor,
                    "h": h,
                    "correct": rng.random(vendor.size) < acc,
                    "sample_weight": 1.0 / rate,
                }
            )
        )
    a = pd.concat(parts, ignore_index=True)
    m = len(a)
    ids = [f"d{i}" for i in range(m)]
    queues = np.array(["live_stream", "live_comment", "live_report", "appeal"])
    decisions = pd.DataFrame(
        {
            "decision_id": ids,
            "created_at": T0,
            "decided_at": T0 + pd.Timedelta(minutes=1),
            "market": MARKET,
            "vendor": [f"V{v:04d}" for v in a["vendor"]],
            "site": "S1",
            "queue": queues[a["h"].to_numpy()],
            "language": "en",
            "moderator_id": "m1",
            "routing": "human",
            "action": "warn",
            "policy": "spam",
            "ai_model": None,
            "ai_score": np.nan,
            "ai_policy": None,
        }
    )
    correct = a["correct"].to_numpy()
    audits = pd.DataFrame(
        {
            "audit_id": [f"a{i}" for i in range(m)],
            "decision_id": ids,
            "audited_at": T0 + pd.Timedelta(hours=1),
            "qa_source": "internal",
            "auditor_id": "q1",
            "qa_action": np.where(correct, "warn", "no_action"),
            "qa_policy": np.where(correct, "spam", "none"),
            "sample_weight": a["sample_weight"].to_numpy(),
            "stratum": queues[a["h"].to_numpy()],
        }
    )
    truth = pd.Series(design.true_accuracy, index=sorted(decisions["vendor"].unique()))
    return {"decisions": decisions, "qa_audits": audits}, truth


def coverage(
    design: Design, vendors: int, seed: int, folder: Path, **kwargs: object
) -> dict[str, float]:
    """Coverage, mean width and 3.92 x SD of the accuracy estimates over `vendors` replicates."""
    import qualitylab as ql
    from qualitylab.sources import open_dataset

    tables, truth = simulate(design, vendors, seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    ds = open_dataset(folder)
    out = ql.metrics.qa_metrics(ds, market=MARKET, by=["vendor"], start="2026-03-02", **kwargs)
    acc = out[out.metric == "accuracy"].set_index("vendor")
    t = truth.reindex(acc.index)
    covered = (acc.ci_low <= t) & (t <= acc.ci_high)
    width = acc.ci_high - acc.ci_low
    return {
        "replicates": float(len(acc)),
        "coverage": float(covered.mean()),
        "mean_width": float(width.mean()),
        "spread": float(3.92 * acc.value.std(ddof=1)),
        "mean_n": float(acc.n.mean()),
    }


def _markdown(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/stratified_coverage.md")
    )
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, design in enumerate(DESIGNS):
            for strata in ("auto", "none"):
                t = time.perf_counter()
                r = coverage(
                    design,
                    args.replicates,
                    args.seed + i,
                    Path(tmp) / f"{i}{strata}",
                    strata=strata,
                )
                r["seconds"] = time.perf_counter() - t
                rows.append({"design": design.name, "strata": strata, **r})
                print(rows[-1], file=sys.stderr)
    df = pd.DataFrame(rows)
    df["width/spread"] = df["mean_width"] / df["spread"]
    text = [
        "# Stratified accuracy intervals: coverage (issue #17)",
        "",
        f"`benchmarks/stratified_coverage.py --replicates {args.replicates} --seed {args.seed}`; "
        "one replicate = one vendor, `qa_metrics(ds, market, by=['vendor'])`, 95% intervals. "
        "`strata='auto'` is the default (strata = the `stratum` column, here the queue); "
        "`strata='none'` is one stratum per segment (with-replacement variance, "
        "same Korn-Graubard interval). `spread` = 3.92 x SD of the estimates.",
        "",
        _markdown(df),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # keep the hand-written notes (before/after, demo statuses) below the marker
    old = args.out.read_text() if args.out.exists() else ""
    if NOTES in old:
        text.append(old[old.index(NOTES) :])
    args.out.write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
