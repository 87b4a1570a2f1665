"""Does a stratum sampled at the plan's audits show the target drop 80% of the time? (issue #18)

Each replicate is a dataset of ``vendors`` vendors, one queue, 28 baseline
days and a 28-day scanned period. Every vendor is audited at the weekly
audits :func:`qualitylab.sampling.audits_needed` asks for a drop of
``drop`` from ``rate`` (the plan's number for the stratum), spread evenly
over the days; vendor ``V0`` loses ``drop`` of accuracy in the last
``drop_days`` days, the others stay at ``rate``. The real
:func:`qualitylab.detect.scan` (dimension vendor, metric accuracy, the
market's false discovery rate) then judges the ``vendors`` series, and a
replicate counts as detected when an alert on ``V0``'s accuracy, direction
down, reaches into the planted days.

The corrections are kept honest: one planted drop per scan (a lone
discovery, which is what the plan's Bonferroni share assumes: with several
true drops in a run Benjamini-Hochberg's bar is lower and detection would
look better than the plan promises), the plan is computed with
``series=vendors`` (the series this scan judges) and ``period_days=28``
(the days it searches), and the window is compared with the 28 baseline
days (``reference_weeks=4``).

Run ``python benchmarks/sampling_power.py [--replicates 400] [--jobs 2]``;
the result is written to ``benchmarks/results/sampling_power.md``. A faster
version (fewer replicates, a wider band) runs in ``tests/test_sampling.py``.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qualitylab import open_dataset
from qualitylab.detect import SENSITIVITY_FDR, scan
from qualitylab.params import load_parameters
from qualitylab.sampling import audits_needed

START = pd.Timestamp("2026-01-05")  # a Monday
BASELINE_DAYS = 28
PERIOD_DAYS = 28


@dataclass(frozen=True)
class Design:
    """One simulation setting."""

    rate: float = 0.94
    drop: float = 0.05
    vendors: int = 5
    drop_days: int = 7
    market: str = "SG"

    @property
    def fdr(self) -> float:
        return SENSITIVITY_FDR[load_parameters().market(self.market).alert_sensitivity]

    def weekly_audits(self) -> int:
        """The plan's weekly audits for the stratum (rounded up, as the plan does)."""
        need = audits_needed(
            self.rate,
            self.drop,
            reference_weeks=BASELINE_DAYS / 7,
            period_days=PERIOD_DAYS,
            series=self.vendors,
            fdr=self.fdr,
        )
        return math.ceil(need)


def build(folder: Path, design: Design, n_week: int, seed: int) -> Path:
    """Write one replicate's decisions and qa_audits (every decision audited once)."""
    rng = np.random.default_rng(seed)
    days = BASELINE_DAYS + PERIOD_DAYS
    per_day = np.full(7, n_week // 7)
    per_day[: n_week % 7] += 1  # the week's audits spread over its days, exactly n_week
    counts = np.tile(per_day, days // 7 + 1)[:days]
    frames = []
    tz = load_parameters().market(design.market).tz
    for v in range(design.vendors):
        day = np.repeat(np.arange(days), counts)
        planted = (v == 0) & (day >= days - design.drop_days)
        p = np.where(planted, design.rate - design.drop, design.rate)
        ok = rng.random(len(day)) < p
        minute = np.concatenate([np.arange(c) for c in counts])
        local = START + pd.to_timedelta(day, unit="D") + pd.to_timedelta(60 + minute, unit="min")
        created = local.tz_localize(tz).tz_convert("UTC")
        frames.append(
            pd.DataFrame(
                {
                    "decision_id": [f"v{v}d{d}i{i}" for d, i in zip(day, minute, strict=True)],
                    "created_at": created,
                    "vendor": f"V{v}",
                    "action": np.where(ok, "no_action", "ban"),
                }
            )
        )
    dec = pd.concat(frames, ignore_index=True)
    dec["decided_at"] = dec["created_at"] + pd.Timedelta(minutes=1)
    dec = dec.assign(
        market=design.market,
        site=dec["vendor"] + "-1",
        queue="live_stream",
        language="en",
        moderator_id="m1",
        routing="human",
        policy=np.where(dec["action"] == "no_action", "none", "spam"),
        ai_model=None,
        ai_score=np.nan,
        ai_policy=None,
    )
    qa = pd.DataFrame(
        {
            "audit_id": "a" + dec["decision_id"],
            "decision_id": dec["decision_id"],
            "audited_at": dec["created_at"] + pd.Timedelta(hours=2),
            "qa_source": "internal",
            "auditor_id": "q1",
            "qa_action": "no_action",
            "qa_policy": "none",
            "sample_weight": np.nan,
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    dec.to_parquet(folder / "decisions.parquet", index=False)
    qa.to_parquet(folder / "qa_audits.parquet", index=False)
    return folder


def replicate(args: tuple[Design, int, int]) -> tuple[bool, int]:
    """Scan one replicate: (planted drop found, false alerts on the other vendors)."""
    design, n_week, seed = args
    with tempfile.TemporaryDirectory() as tmp:
        ds = open_dataset(build(Path(tmp), design, n_week, seed))
        first = (START + pd.Timedelta(days=BASELINE_DAYS)).date()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alerts = scan(
                ds, design.market, start=first, dimensions=("vendor",), metrics=("accuracy",)
            )
    planted_from = START + pd.Timedelta(days=BASELINE_DAYS + PERIOD_DAYS - design.drop_days)
    acc = alerts[(alerts["metric"] == "accuracy") & (alerts["dimension"] == "vendor")]
    hit = acc[
        (acc["segment"] == "V0")
        & (acc["direction"] == "down")
        & (pd.to_datetime(acc["end_date"]) >= planted_from)
    ]
    return bool(len(hit)), int((acc["segment"] != "V0").sum())


def simulate(
    design: Design, replicates: int, *, seed: int = 0, jobs: int = 1
) -> tuple[float, int, int, int]:
    """Detection rate, detections, replicates and false alerts over the replicates."""
    n_week = design.weekly_audits()
    work = [(design, n_week, seed * 100_003 + r) for r in range(replicates)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            res = list(pool.map(replicate, work, chunksize=4))
    else:
        res = [replicate(w) for w in work]
    hits = sum(h for h, _ in res)
    return hits / replicates, hits, n_week, sum(f for _, f in res)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=400)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "sampling_power.md"))
    args = ap.parse_args(argv)
    lines = [
        "# Sampling plan power through the real scan (issue #18)",
        "",
        "`python benchmarks/sampling_power.py "
        f"--replicates {args.replicates} --seed {args.seed}`: one planted drop per scan, "
        "28 baseline + 28 scanned days, the plan's weekly audits for every vendor "
        "(`qualitylab.sampling.audits_needed` with series = vendors, period_days = 28, "
        "reference 4 weeks, the market's FDR). Detected: an alert on V0's accuracy, down, "
        "reaching into the planted days.",
        "",
        "| rate | drop | vendors (series) | drop days | weekly audits | replicates | detected "
        "| rate (95% CI) | false alerts / scan | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for design in (Design(), Design(rate=0.90, drop=0.08, vendors=8)):
        t0 = time.perf_counter()
        rate, hits, n_week, false = simulate(
            design, args.replicates, seed=args.seed, jobs=args.jobs
        )
        se = math.sqrt(rate * (1 - rate) / args.replicates)
        row = (
            f"| {design.rate} | {design.drop} | {design.vendors} | {design.drop_days} | {n_week} "
            f"| {args.replicates} | {hits} | {rate:.3f} ({rate - 1.96 * se:.3f}-{rate + 1.96 * se:.3f}) "
            f"| {false / args.replicates:.3f} | {time.perf_counter() - t0:.0f} |"
        )
        print(row, flush=True)
        lines.append(row)
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
