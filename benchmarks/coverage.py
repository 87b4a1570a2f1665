"""Coverage study: does each 95% interval qualitylab shows cover the truth 95% of the time?

Issue #17. Every interval the product shows (and the level of its tests) is
simulated on designs that QA teams use: equal weights, two and four strata
with different rates, 30 audits per stratum, accuracy near 98%, an error rate
near 1%. Each study returns one :class:`Row` per (interval, design): the
share of replicates whose interval covered the truth (or, for a test, the
share that rejected a true null), the mean width, and 3.92 x the SD of the
estimates (the width a normal interval with the true standard error would
have), so "too wide" and "too narrow" can be told apart from "off-centre".

The studies live in two modules:

- ``benchmarks/coverage_rates.py``: Wilson, design-weighted rates
  (``qa_metrics``, ``qa_alignment``), Newcombe differences, AI metrics from
  audits;
- ``benchmarks/coverage_ops.py``: Kaplan-Meier percentiles with censoring,
  Fleiss / AC1 / Krippendorff, the F1 bootstrap, the arrival-forecast
  intervals on backtests, the reporting-gap test's level.

Run (``--replicates`` at least 2000 for the results file)::

    .venv/bin/python benchmarks/coverage.py --replicates 2000
    .venv/bin/python benchmarks/coverage.py --only wilson,newcombe --replicates 500

It writes ``benchmarks/results/coverage.md``; text below the notes marker is
kept when the table is regenerated.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
NOTES = "<!-- notes: kept when the table above is regenerated -->"
TOLERANCE = 0.015  # issue #17: 95% +- 1.5 pp


@dataclass(frozen=True)
class Row:
    """One interval (or test) on one design.

    ``nominal`` is 0.95 for a 95% interval and the test's alpha (0.05) for a
    test's level; ``observed`` is the coverage, or the rejection rate under a
    true null. ``spread`` is 3.92 x SD of the point estimates (NaN where it
    does not apply); ``reason`` says why a row outside ``nominal +- 1.5 pp``
    stays off, and by how much.
    """

    family: str
    interval: str
    design: str
    replicates: int
    nominal: float
    observed: float
    mean_width: float = math.nan
    spread: float = math.nan
    seconds: float = math.nan
    reason: str = ""

    @property
    def ok(self) -> bool:
        return abs(self.observed - self.nominal) <= TOLERANCE

    @property
    def mc_se(self) -> float:
        """Monte Carlo standard error of ``observed``."""
        p = self.observed
        return math.sqrt(max(p * (1 - p), 1e-12) / max(self.replicates, 1))


# name -> (module, function); each function is f(replicates: int, seed: int) -> list[Row]
Study = Callable[[int, int], list[Row]]
MODULES = ("coverage_rates", "coverage_ops")


def studies() -> dict[str, Study]:
    """Every study, by name, from the study modules (``STUDIES`` dicts)."""
    sys.path.insert(0, str(HERE))
    out: dict[str, Study] = {}
    for name in MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            print(f"coverage: {name}.py not found; its studies are skipped", file=sys.stderr)
            continue
        out.update(mod.STUDIES)
    return out


def frame(rows: list[Row]) -> pd.DataFrame:
    df = pd.DataFrame([asdict(r) for r in rows])
    df["ok"] = [r.ok for r in rows]
    df["mc_se"] = [r.mc_se for r in rows]
    df["width/spread"] = df["mean_width"] / df["spread"]
    return df


def _cell(v: object) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4f}"
    return str(v).replace("|", "\\|")


def markdown(df: pd.DataFrame, command: str) -> str:
    cols = [
        "family",
        "interval",
        "design",
        "replicates",
        "nominal",
        "observed",
        "mc_se",
        "ok",
        "mean_width",
        "spread",
        "width/spread",
        "seconds",
    ]
    lines = [
        "# Coverage study (issue #17)",
        "",
        f"`{command}`. `observed` is the coverage of a 95% interval, or a test's "
        "rejection rate under a true null (`nominal` 0.05); `ok` = within 1.5 pp of "
        "`nominal`; `mc_se` its Monte Carlo standard error; `spread` = 3.92 x SD of "
        "the estimates.",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    lines += [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in df[cols].itertuples(index=False)
    ]
    off = df[~df["ok"]]
    if len(off):
        lines += ["", "## Off by more than 1.5 pp, and why", ""]
        for r in off.itertuples(index=False):
            lines.append(
                f"- **{r.interval}, {r.design}: {r.observed:.3f}** "
                f"(nominal {r.nominal:.2f}). {r.reason or '(no reason given)'}"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--only", default="", help="comma-separated study names")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "coverage.md")
    args = parser.parse_args(argv)
    available = studies()
    names = [s for s in args.only.split(",") if s] or list(available)
    unknown = sorted(set(names) - set(available))
    if unknown:
        parser.error(f"unknown studies {unknown}; known: {sorted(available)}")
    rows: list[Row] = []
    for i, name in enumerate(names):
        t = time.perf_counter()
        got = available[name](args.replicates, args.seed + 1000 * i)
        print(f"{name}: {len(got)} rows in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        for r in got:
            print(f"  {r.interval} / {r.design}: {r.observed:.4f}", file=sys.stderr)
        rows.extend(got)
    df = frame(rows)
    command = "benchmarks/coverage.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(df, command.strip())
    if args.only:
        print(text)
        return 0
    notes = ""
    if args.out.exists() and NOTES in args.out.read_text():
        notes = args.out.read_text().split(NOTES, 1)[1]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n" + NOTES + notes)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0 if df["ok"].all() or (df.loc[~df["ok"], "reason"] != "").all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
