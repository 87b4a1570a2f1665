"""Partial-data datasets for the acceptance tests of issue #14.

Each case is a dataset folder plus the command-line arguments every
``qualitylab`` command gets on it. The datasets are cut from the small demo
data of one market (SG) by deleting tables or rows, and one is the tiny
hand-built dataset of ``tests/conftest.py`` (a shape the generator never
produces). ``build_cases`` writes them all under one folder; the matrix test
runs the commands on them and records each cell in :data:`RESULTS` for the
terminal summary.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import yaml

from qualitylab.contract import TABLES
from tests.conftest import PARAMS, REPO, tiny_tables, write_tables

MARKET = "SG"
OTHER_MARKET = "ID"  # a market with a parameters file and, in these datasets, no decisions
OPTIONAL = tuple(name for name, spec in TABLES.items() if not spec.required)
COMMANDS = ("validate", "headline", "scorecard", "detect", "rca", "capacity", "readiness", "run")

#: (case, command) -> display text of the cell, filled in by the matrix test.
RESULTS: dict[tuple[str, str], str] = {}
#: Case names in display order, filled in by the matrix test.
CASE_ORDER: list[str] = []
#: What each case's data is, filled in by the matrix test.
CASE_NOTES: dict[str, str] = {}
#: Seconds per cell ("case/command") and in all ("total"), filled in by the matrix test.
TIMINGS: dict[str, float] = {}


@dataclass(frozen=True)
class Case:
    """A dataset and, per command, the extra arguments (None: not applicable)."""

    name: str
    data: Path
    first: date  # first and last market-local day with decisions
    last: date
    args: dict[str, list[str] | None] = field(default_factory=dict)
    plan: dict[str, object] = field(default_factory=dict)  # launch plan overrides
    note: str = ""


# --------------------------------------------------------------------------- #
# reading and writing the demo layout
# --------------------------------------------------------------------------- #
def read_tables(folder: Path) -> dict[str, pd.DataFrame]:
    """Every table of a dataset folder (Parquet file or folder of parts)."""
    out = {}
    for path in sorted(folder.iterdir()):
        if path.is_dir() or path.suffix == ".parquet":
            out[path.name.removesuffix(".parquet")] = pd.read_parquet(path)
    return out


def write_dataset(folder: Path, tables: dict[str, pd.DataFrame]) -> Path:
    """Write tables as ``decisions/part-00000.parquet`` and ``<name>.parquet``."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for name, df in tables.items():
        if name == "decisions":
            (folder / "decisions").mkdir()
            df.to_parquet(folder / "decisions" / "part-00000.parquet", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def generate_base(out: Path, *, days: int = 90, seed: int = 7) -> Path:
    """Small-scale demo data of :data:`MARKET` only."""
    from qualitylab.demo import generate

    generate(out, markets=[MARKET], days=days, scale="small", seed=seed)
    return out


def local_range(decisions: pd.DataFrame, tz: str = "Asia/Singapore") -> tuple[date, date]:
    """First and last market-local day with decisions."""
    local = pd.to_datetime(decisions["created_at"], utc=True).dt.tz_convert(tz)
    return local.min().date(), local.max().date()


def _local_day(ts: pd.Series, tz: str = "Asia/Singapore") -> pd.Series:
    return pd.to_datetime(ts, utc=True).dt.tz_convert(tz).dt.date


# --------------------------------------------------------------------------- #
# table surgery
# --------------------------------------------------------------------------- #
def only_decisions(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every optional table absent."""
    return {"decisions": tables["decisions"]}


def optional_for_other_market(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Every optional table present, none with a row for :data:`MARKET`.

    Tables with a ``market`` column keep their rows, relabelled to
    :data:`OTHER_MARKET`; ``qa_audits`` (no market column) keeps its columns
    and no rows.
    """
    out = dict(tables)
    for name in OPTIONAL:
        if name not in out:
            continue
        df = out[name].copy()
        if "market" in df.columns:
            df["market"] = OTHER_MARKET
        else:
            df = df.iloc[:0]
        out[name] = df
    return out


def drop_segment(
    tables: dict[str, pd.DataFrame],
    column: str,
    value: str,
    keep: Callable[[pd.Series], pd.Series],
) -> dict[str, pd.DataFrame]:
    """Drop a segment's rows on the days ``keep(local_date)`` rejects.

    Its decisions go, with their audits and escalations; its staffing and
    vendor-reported rows on those days go too (when the table has the column).
    """
    out = dict(tables)
    dec = tables["decisions"]
    days = _local_day(dec["created_at"])
    gone = (dec[column] == value) & ~keep(days)
    out["decisions"] = dec[~gone].reset_index(drop=True)
    dropped_ids = set(dec.loc[gone, "decision_id"])
    if "qa_audits" in out:
        qa = out["qa_audits"]
        out["qa_audits"] = qa[~qa["decision_id"].isin(dropped_ids)].reset_index(drop=True)
    if "escalations" in out and column in out["escalations"].columns:
        es = out["escalations"]
        bad = (es[column] == value) & ~keep(_local_day(es["raised_at"]))
        out["escalations"] = es[~bad & ~es["decision_id"].isin(dropped_ids)].reset_index(drop=True)
    if "staffing" in out and column in out["staffing"].columns:
        st = out["staffing"]
        bad = (st[column] == value) & ~keep(pd.to_datetime(st["date"]).dt.date)
        out["staffing"] = st[~bad].reset_index(drop=True)
    if "vendor_reported" in out and column in out["vendor_reported"].columns:
        vr = out["vendor_reported"]
        bad = (vr[column] == value) & ~keep(pd.to_datetime(vr["week_start"]).dt.date)
        out["vendor_reported"] = vr[~bad].reset_index(drop=True)
    return out


def write_plan(folder: Path, plan: dict[str, object]) -> Path:
    """The demo launch plan with ``plan``'s keys replaced, written to ``folder``."""
    base = yaml.safe_load((PARAMS / "launches" / "sg-live-shopping.yaml").read_text())
    base.update(plan)
    base.pop("expected_failures", None)  # the demo's promise does not hold on cut data
    path = folder / "launch.yaml"
    path.write_text(yaml.safe_dump({k: _plain(v) for k, v in base.items()}, sort_keys=False))
    return path


def _plain(v: object) -> object:
    return v.isoformat() if isinstance(v, date) else v


# --------------------------------------------------------------------------- #
# the cases
# --------------------------------------------------------------------------- #
def _default_args(first: date, last: date, out: Path) -> dict[str, list[str] | None]:
    cur_start = last - timedelta(days=6)
    return {
        "validate": [],
        "headline": [],
        "scorecard": ["--market", MARKET],
        "detect": ["--market", MARKET],
        "rca": ["--market", MARKET, "--current", f"{cur_start}:{last}"],
        "capacity": ["--market", MARKET, "--out", str(out / "capacity.csv")],
        "readiness": [],
        "run": ["--markets", MARKET],
    }


def build_cases(root: Path) -> list[Case]:
    """Write every case's dataset under ``root`` and return the cases."""
    root.mkdir(parents=True, exist_ok=True)
    base_dir = generate_base(root / "base")
    base = read_tables(base_dir)
    first, last = local_range(base["decisions"])
    mid = first + (last - first) / 2
    cases: list[Case] = []

    def add(name: str, tables: dict[str, pd.DataFrame] | Path, **kw: object) -> Case:
        folder = root / name
        data = tables if isinstance(tables, Path) else write_dataset(folder / "data", tables)
        folder.mkdir(parents=True, exist_ok=True)
        dec = read_tables(data)["decisions"]
        lo, hi = local_range(dec)
        args = _default_args(lo, hi, folder)
        args.update(kw.pop("args", {}))  # type: ignore[arg-type]
        plan = {"date": hi + timedelta(days=8), **kw.pop("plan", {})}  # type: ignore[dict-item]
        case = Case(name, data, lo, hi, args=args, plan=plan, **kw)  # type: ignore[arg-type]
        cases.append(case)
        return case

    add("no_optional", only_decisions(base), note="decisions only")
    add(
        "empty_optional",
        optional_for_other_market(base),
        note=f"optional tables have rows for {OTHER_MARKET} only (qa_audits: none)",
    )
    empty_start, empty_end = last + timedelta(days=40), last + timedelta(days=67)
    add(
        "empty_period",
        base_dir,
        args={
            "validate": None,
            "headline": None,
            "capacity": None,
            "scorecard": ["--market", MARKET, "--start", str(empty_start), "--end", str(empty_end)],
            "detect": ["--market", MARKET, "--start", str(empty_start), "--end", str(empty_end)],
            "rca": ["--market", MARKET, "--current", f"{empty_start}:{empty_end}"],
            "run": ["--markets", MARKET, "--as-of", str(first - timedelta(days=30))],
        },
        plan={"date": first - timedelta(days=60)},
        note=f"periods without data ({empty_start}..{empty_end}; run/readiness: before it)",
    )
    add(
        "whole_range",
        base_dir,
        args={
            "scorecard": [
                "--market",
                MARKET,
                "--by",
                "vendor",
                "--start",
                str(first),
                "--end",
                str(last),
            ],
            "detect": ["--market", MARKET, "--start", str(first), "--end", str(last)],
            "rca": ["--market", MARKET, "--current", f"{first}:{last}"],
            "capacity": [
                "--market",
                MARKET,
                "--history",
                str((last - first).days + 1),
                "--out",
                str(root / "whole_range" / "capacity.csv"),
            ],
            "run": ["--markets", MARKET, "--as-of", str(last)],
        },
        note=f"periods over the data's whole range {first}..{last}",
    )
    add("days10", generate_base(root / "days10" / "data", days=10), note="10 days of history")
    starts = mid + timedelta(days=30)  # inside the default 28-day window
    add(
        "segment_starts",
        drop_segment(base, "vendor", "inhouse", lambda d: d >= starts),
        args={"scorecard": ["--market", MARKET, "--by", "vendor,queue"]},
        note=f"vendor inhouse starts {starts}",
    )
    stops = last - timedelta(days=10)
    add(
        "segment_stops",
        drop_segment(base, "queue", "appeal", lambda d: d <= stops),
        args={"scorecard": ["--market", MARKET, "--by", "queue"]},
        note=f"queue appeal stops after {stops}",
    )
    for table in ("qa_audits", "staffing"):  # single tables absent (cheap: no run)
        add(
            f"no_{table}",
            {k: v for k, v in base.items() if k != table},
            args={"run": None},
            note=f"{table} absent (run: see no_optional)",
        )
    tiny = write_tables(root / "tiny" / "data", tiny_tables())
    add(
        "tiny",
        tiny,
        plan={
            "vendor": "VendorA",
            "site": "A-MNL",
            "queue": "live_shopping",
            "languages": ["en"],
        },
        note="8 hand-built decisions (tests/conftest.py)",
    )
    return cases


def command_line(case: Case, command: str, work: Path) -> list[str] | None:
    """The ``qualitylab`` arguments of one cell (None when not applicable)."""
    extra = case.args.get(command)
    if extra is None:
        return None
    if command == "readiness":
        plan = write_plan(work, case.plan)
        return ["readiness", "--data", str(case.data), "--launch", str(plan)]
    if command == "run":
        return [
            "run",
            "--data",
            str(case.data),
            *extra,
            "--notebooks",
            "all",
            "--jobs",
            "2",
            "--no-portfolio",
            "--notebooks-dir",
            str(REPO / "notebooks"),
            "--out",
            str(work / "reports"),
        ]
    return [command, "--data", str(case.data), *extra]


def matrix_lines() -> list[str]:
    """The commands x cases grid of :data:`RESULTS`, one line per case and command."""
    if not RESULTS:
        return []
    width = max(len(c) for c in CASE_ORDER)
    lines = [f"{case:<{width}}  = {CASE_NOTES.get(case, '')}" for case in CASE_ORDER]
    for case in CASE_ORDER:
        for command in COMMANDS:
            text = RESULTS.get((case, command), "not run")
            secs = TIMINGS.get(f"{case}/{command}")
            took = f"{secs:5.1f}s" if secs else "      "
            lines.append(f"{case:<{width}}  {command:<9}  {took}  {text}")
    total = TIMINGS.get("total")
    if total is not None:
        lines.append(f"{len(RESULTS)} cells in {total:.0f}s")
    return lines
