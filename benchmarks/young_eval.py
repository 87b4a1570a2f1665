"""False alarms and detection of ``qualitylab.detect.scan`` on young (14-day) data.

Issue #14: before ``baseline_days`` of history exist, ``scan`` judges each day
against the history it has (the young-baseline rule). This script measures,
over many seeds,

* **false alarms** on clean 14-day data from a generator with another shape
  than the demo (one market, vendors ``Kestrel``/``Osprey``, two queues,
  Poisson daily volumes with a weekly cycle and day-level gamma
  overdispersion (CV 7%), binomial accuracy through ``qa_audits``): young
  alerts per scan and the share of scans with any young alert;
* **detection** of a one-day market-wide volume spike on day 12 (80% of that
  market-local day's decisions duplicated under new ids): the share of seeds
  where a ``young_baseline`` volume alert of the market (or one grouped under
  it, in ``related``) covers day 12;
* the same on the demo data (``qualitylab.demo.generate(days=14)``, markets
  SG, ID, TH; the demo plants incidents in its last weeks, so a young alert
  there is counted as false only when it matches no planted incident's
  segment and dates).

Usage::

    .venv/bin/python benchmarks/young_eval.py --seeds 100 --demo-seeds 20 \\
        --out benchmarks/results/young_eval.md
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from qualitylab.detect import scan
from qualitylab.sources import open_dataset

# the generator of the young-baseline tests (another shape than the demo), not a copy
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from conftest import write_tables  # noqa: E402
from test_detect_young import MARKET, START, make_tables  # noqa: E402

SPIKE_DAY, SPIKE_FRAC = 12, 0.8


def run_scan(folder: Path, market: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped-series summaries
        return scan(open_dataset(folder), market)


def young(alerts: pd.DataFrame) -> pd.DataFrame:
    return alerts[alerts["note"].str.contains("young_baseline", na=False)]


def spike_found(alerts: pd.DataFrame, market: str, day: pd.Timestamp) -> bool:
    y = young(alerts)
    cover = (y["start_date"] <= day) & (y["end_date"] >= day) & (y["metric"] == "volume")
    market_row = cover & (y["dimension"] == "market")
    grouped = cover & y["related"].str.contains(f"volume market={market}", regex=False)
    return bool((market_row | grouped).any())


def own_generator(seeds: int, tmp: Path, say) -> dict[str, float]:
    clean_counts, hits, days_judged = [], [], []
    for seed in range(seeds):
        clean = run_scan(write_tables(tmp / f"c{seed}", make_tables(seed)), MARKET)
        clean_counts.append(len(young(clean)))
        days_judged.append(clean.attrs["young"]["days_judged"])
        spiked = run_scan(
            write_tables(tmp / f"s{seed}", make_tables(seed, spike=(SPIKE_DAY, SPIKE_FRAC))), MARKET
        )
        hits.append(spike_found(spiked, MARKET, START + pd.Timedelta(days=SPIKE_DAY)))
        shutil.rmtree(tmp / f"c{seed}")
        shutil.rmtree(tmp / f"s{seed}")
        if (seed + 1) % 20 == 0:
            say(f"  own generator: {seed + 1} seeds")
    c = np.asarray(clean_counts)
    return {
        "seeds": seeds,
        "young_alerts_per_scan": float(c.mean()),
        "share_with_young_alert": float((c > 0).mean()),
        "days_judged_per_scan": float(np.mean(days_judged)),
        "detection_rate": float(np.mean(hits)),
    }


def _plant(src: Path, dst: Path, market: str, tz: str) -> pd.Timestamp:
    shutil.copytree(src, dst)
    dec = pd.read_parquet(src / "decisions")
    local = dec["created_at"].dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    days = sorted(local[dec["market"] == market].unique())
    pool = dec[(dec["market"] == market) & (local == days[SPIKE_DAY])]
    dup = pool.sample(frac=SPIKE_FRAC, random_state=1).copy()
    dup["decision_id"] = dup["decision_id"] + "-dup"
    shutil.rmtree(dst / "decisions")
    (dst / "decisions").mkdir()
    pd.concat([dec, dup], ignore_index=True).to_parquet(dst / "decisions" / "part-0.parquet")
    return pd.Timestamp(days[SPIKE_DAY])


def demo(seeds: int, tmp: Path, say) -> pd.DataFrame:
    from qualitylab.demo import generate

    rows = []
    for seed in range(1, seeds + 1):
        folder = tmp / f"demo{seed}"
        generate(folder, scale="small", seed=seed, days=14)
        ds = open_dataset(folder)
        incidents = pd.read_csv(folder / "incidents.csv", parse_dates=["start_date", "end_date"])
        for market in ("SG", "ID", "TH"):
            tz = ds.params.market(market).timezone
            alerts = young(run_scan(folder, market))
            inc = incidents[incidents["market"] == market]
            false = 0
            for a in alerts.itertuples():
                ok = (
                    (inc["start_date"] <= a.end_date + pd.Timedelta(days=1))
                    & (inc["end_date"] >= a.start_date - pd.Timedelta(days=1))
                    & (inc["segment"].isin([a.segment, market]))
                )
                false += not bool(ok.any())
            day = _plant(folder, tmp / f"spiked{seed}{market}", market, tz)
            first = day - pd.Timedelta(days=SPIKE_DAY)
            vol = inc[inc["metric"] == "volume"]
            in_history = bool(((vol["start_date"] < day) & (vol["end_date"] >= first)).any())
            hit = spike_found(run_scan(tmp / f"spiked{seed}{market}", market), market, day)
            shutil.rmtree(tmp / f"spiked{seed}{market}")
            rows.append(
                {
                    "seed": seed,
                    "market": market,
                    "young": len(alerts),
                    "false": false,
                    "found": hit,
                    "contaminated": in_history,
                }
            )
        shutil.rmtree(folder)
        say(f"  demo seed {seed}")
    return pd.DataFrame(rows)


def demo_clean(seeds: int, tmp: Path, say) -> pd.DataFrame:
    """The demo's shape without its planted incidents: every young alert is false."""
    from qualitylab.demo import generate

    rows = []
    for seed in range(1, seeds + 1):
        folder = tmp / f"clean{seed}"
        generate(folder, scale="small", seed=seed, days=14, incidents=False)
        ds = open_dataset(folder)
        for market in ("SG", "ID", "TH"):
            tz = ds.params.market(market).timezone
            alerts = young(run_scan(folder, market))
            day = _plant(folder, tmp / f"cspiked{seed}{market}", market, tz)
            hit = spike_found(run_scan(tmp / f"cspiked{seed}{market}", market), market, day)
            shutil.rmtree(tmp / f"cspiked{seed}{market}")
            rows.append({"seed": seed, "market": market, "young": len(alerts), "found": hit})
        shutil.rmtree(folder)
        say(f"  clean demo seed {seed}")
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=100)
    ap.add_argument("--demo-seeds", type=int, default=20)
    ap.add_argument("--clean-demo-seeds", type=int, default=20)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="young_eval_"))
    try:
        own = own_generator(args.seeds, tmp, say)
        dm = demo(args.demo_seeds, tmp, say) if args.demo_seeds else pd.DataFrame()
        cl = demo_clean(args.clean_demo_seeds, tmp, say) if args.clean_demo_seeds else None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    cmd = " ".join(
        [".venv/bin/python benchmarks/young_eval.py", f"--seeds {args.seeds}"]
        + [f"--demo-seeds {args.demo_seeds}", f"--clean-demo-seeds {args.clean_demo_seeds}"]
        + ([f"--out {args.out}"] if args.out else [])
    )
    lines = [
        "# Young-baseline scan: false alarms and detection on 14-day data",
        "",
        f"Command: `{cmd}` (run time {time.perf_counter() - t0:.0f} s)",
        "",
        "A scan of 14 days judges days 8-14 (7 per series) against the days before them",
        "(young_baseline rule of `qualitylab.detect.scan`; FDR 5%, PH's alert sensitivity).",
        "",
        f"## Own generator ({own['seeds']} seeds; PH, ~400 decisions/day, weekly cycle,",
        "gamma day-level overdispersion CV 7%, binomial accuracy 93%)",
        "",
        "| measure | value |",
        "|---|---|",
        f"| young alerts per clean scan | {own['young_alerts_per_scan']:.3f} |",
        f"| clean scans with any young alert | {own['share_with_young_alert']:.1%} |",
        f"| series-days judged per scan | {own['days_judged_per_scan']:.0f} |",
        f"| day-12 80% market-wide spike found (young_baseline) | {own['detection_rate']:.1%} |",
        "",
    ]
    if len(dm):
        lines += [
            f"## Demo data (`generate(scale='small', days=14)`, seeds 1-{args.demo_seeds})",
            "",
            "Young alerts on the unmodified demo data matching no planted incident",
            "(segment or market, dates +-1 day) count as false.",
            "",
            "| market | young alerts per scan | false per scan | scans with a false one "
            "| day-12 spike found | planted volume incident in days 0-11 |",
            "|---|---|---|---|---|---|",
        ]
        for market, g in dm.groupby("market", sort=False):
            lines.append(
                f"| {market} | {g['young'].mean():.2f} | {g['false'].mean():.2f} "
                f"| {(g['false'] > 0).mean():.0%} | {g['found'].mean():.0%} "
                f"| {g['contaminated'].mean():.0%} |"
            )
        lines.append(
            f"| all | {dm['young'].mean():.2f} | {dm['false'].mean():.2f} "
            f"| {(dm['false'] > 0).mean():.0%} | {dm['found'].mean():.0%} "
            f"| {dm['contaminated'].mean():.0%} |"
        )
        clean = dm[~dm["contaminated"]]
        if len(clean):
            lines.append(
                f"| markets whose days 0-11 hold no planted volume incident | "
                f"{clean['young'].mean():.2f} | {clean['false'].mean():.2f} "
                f"| {(clean['false'] > 0).mean():.0%} | {clean['found'].mean():.0%} | 0% |"
            )
        lines += [
            "",
            "The demo plants its incidents in the last weeks of the data, so with 14 days",
            "some markets' history before day 12 holds a volume one (a two-day doubling of all",
            "volume, or a 2.5x surge of one queue for three days). Those days widen the",
            "history's spread: the screen drops a history point only when a prediction",
            "t-test against the rest confirms it at p < 0.001/h (needed to keep the test",
            "calibrated at h = 7), which a few-day incident among 12 days does not reach,",
            "and an 80% spike is then within the history's range. Screening on the MAD",
            "alone would drop them, but on clean data it trims 10-17% of histories and",
            "halves the test's effective degrees of freedom (simulated), costing more power",
            "than it saves.",
            "",
        ]
    if cl is not None and len(cl):
        lines += [
            f"## Demo shape without incidents (`generate(scale='small', days=14, "
            f"incidents=False)`, seeds 1-{args.clean_demo_seeds})",
            "",
            "Nothing is planted, so every young alert is a false alarm.",
            "",
            "| market | young alerts per scan | scans with any young alert | day-12 spike found |",
            "|---|---|---|---|",
        ]
        for market, g in cl.groupby("market", sort=False):
            lines.append(
                f"| {market} | {g['young'].mean():.2f} | {(g['young'] > 0).mean():.0%} "
                f"| {g['found'].mean():.0%} |"
            )
        lines += [
            f"| all | {cl['young'].mean():.2f} | {(cl['young'] > 0).mean():.0%} "
            f"| {cl['found'].mean():.0%} |",
            "",
        ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
