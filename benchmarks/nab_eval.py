"""Score qualitylab's STL + MAD detector on the Numenta Anomaly Benchmark (NAB).

Runs :func:`qualitylab.detect.stl_mad` (default |z| > 3.5) and a naive
rolling 3-sigma rule (mean and sd of the previous 24 points), each also at
two stricter thresholds for a fair comparison at equal false-alarm rates, on the
real NAB series in ``refdata/nab`` (numenta/NAB at commit ea702d75, MIT
licence), and prints, per detector, the honest summary suggested by
``refdata/README.md``:

* **windows detected / windows** — a labelled anomaly window counts as
  detected when at least one flagged point falls inside it;
* **false detections per 1,000 points** — flagged points outside every
  window, per 1,000 scored points; and the same for alarms (a run of
  consecutive flagged points is one alarm).

Both detectors see the same series: values averaged to hourly points (NAB
series are sampled every 5 to 60 minutes; an hour is the coarsest step that
keeps every labelled window several points wide), STL with a daily period of
24 hours, and NAB's convention that the first 15% of each file is a
probationary period that is never flagged. This is not NAB's own score (which
rewards early detection inside a window and needs its scoring code); for
orientation, NAB's published scoreboard puts a windowed Gaussian at 39.6 on
its standard profile.

Usage::

    python benchmarks/nab_eval.py [--nab /work/shared/refdata/nab] [--per-file]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qualitylab.detect import stl_mad

DEFAULT_NAB = Path("/work/shared/refdata/nab")
PROBATION = 0.15  # NAB: the first 15% of each file is not scored
PERIOD = 24  # hourly points, daily cycle
ROLLING = 24  # naive baseline: mean and sd of the previous day


@dataclass
class Score:
    windows: int = 0
    detected: int = 0
    points: int = 0
    false: int = 0
    flagged: int = 0
    false_runs: int = 0

    def add(self, other: Score) -> None:
        for f in ("windows", "detected", "points", "false", "flagged", "false_runs"):
            setattr(self, f, getattr(self, f) + getattr(other, f))

    def row(self, name: str) -> str:
        rate = 1000 * self.false / max(self.points, 1)
        runs = 1000 * self.false_runs / max(self.points, 1)
        return (
            f"{name:<20} windows {self.detected:>2}/{self.windows:<2} "
            f"({self.detected / max(self.windows, 1):4.0%})  "
            f"false per 1,000 points: flagged points {rate:5.1f}, alarms {runs:5.2f}"
        )


def load(nab: Path, name: str) -> pd.Series:
    """One NAB file as an hourly series (mean of the raw points in each hour)."""
    df = pd.read_csv(nab / name, parse_dates=["timestamp"])
    s = df.set_index("timestamp")["value"].astype(float).sort_index()
    return s.resample("1h").mean()


def stl_scores(s: pd.Series, start: int) -> np.ndarray:
    """|z| of qualitylab's STL + MAD detector (log scale for non-negative series)."""
    log = bool((s.dropna() >= 0).all())
    res = stl_mad(s, period=PERIOD, log=log, baseline=start)
    z = np.abs(res["statistic"].to_numpy())
    z[:start] = 0.0
    return np.nan_to_num(z)


def rolling_scores(s: pd.Series, start: int) -> np.ndarray:
    """Naive baseline: |x - mean| / sd over the previous ``ROLLING`` points."""
    prev = s.shift(1).rolling(ROLLING, min_periods=ROLLING // 2)
    mean, sd = prev.mean(), prev.std()
    z = ((s - mean).abs() / sd.where(sd > 0)).to_numpy(dtype=float, copy=True)
    z[:start] = 0.0
    return np.nan_to_num(z)


def score(s: pd.Series, flags: np.ndarray, windows: list[list[str]], start: int) -> Score:
    idx = s.index
    inside = np.zeros(len(s), bool)
    sc = Score(windows=len(windows))
    for lo, hi in windows:
        # an hourly point [t, t+1h) overlaps the window [lo, hi]
        w = (idx + pd.Timedelta(hours=1) > pd.Timestamp(lo)) & (idx <= pd.Timestamp(hi))
        inside |= w
        sc.detected += bool((flags & w).any())
    scored = np.zeros(len(s), bool)
    scored[start:] = True
    scored &= s.notna().to_numpy()
    sc.points = int(scored.sum())
    sc.flagged = int((flags & scored).sum())
    out = flags & scored & ~inside
    sc.false = int(out.sum())
    sc.false_runs = int(out[0]) + int(np.sum(out[1:] & ~out[:-1]))  # runs of flagged points
    return sc


#: Detectors scored: name -> (scorer, thresholds); the first threshold is the default.
DETECTORS = {
    "stl_mad": (stl_scores, (3.5, 5.0, 7.0)),
    "rolling": (rolling_scores, (3.0, 4.0, 5.0)),
}


def label(det: str, threshold: float) -> str:
    """Row label of a detector at a threshold, e.g. ``stl_mad |z|>3.5``."""
    return f"{det} |z|>{threshold:g}"


def evaluate(
    nab: Path = DEFAULT_NAB, *, per_file: bool = False
) -> tuple[dict[str, Score], dict[tuple[str, str], Score], int]:
    """Score every detector at every threshold on the NAB files.

    Returns the totals per label (:func:`label`), the totals per (label,
    category) at the default thresholds, and the number of files scored.
    """
    windows = json.loads((nab / "combined_windows.json").read_text())
    files = sorted(f for f in windows if (nab / f).exists())
    totals: dict[str, Score] = {}
    by_group: dict[tuple[str, str], Score] = {}
    for name in files:
        s = load(nab, name)
        start = int(len(s) * PROBATION)
        for det, (fn, thresholds) in DETECTORS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                z = fn(s, start)
            for i, thr in enumerate(thresholds):
                sc = score(s, z > thr, windows[name], start)
                totals.setdefault(label(det, thr), Score()).add(sc)
                if i == 0:
                    by_group.setdefault((label(det, thr), name.split("/")[0]), Score()).add(sc)
                    if per_file:
                        print(sc.row(f"  {det[:8]} {Path(name).stem[:24]}"))
    return totals, by_group, len(files)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB, help="NAB reference folder")
    parser.add_argument("--per-file", action="store_true", help="print a line per file")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    totals, by_group, n_files = evaluate(args.nab, per_file=args.per_file)
    print(f"NAB: {n_files} files, hourly means, period {PERIOD}, probation {PROBATION:.0%}")
    for name, sc in totals.items():
        print(sc.row(name))
    print("by category (default thresholds):")
    for (name, group), sc in sorted(by_group.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        print(sc.row(f"  {group[4:14]} {name[:7]}"))
    print(f"runtime {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
