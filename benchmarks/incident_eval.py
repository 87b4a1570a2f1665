"""Score ``qualitylab.incidents.group_incidents`` on planted demo incidents.

For every seed the script generates demo data (:func:`qualitylab.demo.generate`,
which writes ``incidents.csv``), and for every market does what a scheduled
run does (``runner.build_market_cache``): the report context of the last four
full weeks (:func:`qualitylab.report.context`), the period's alerts
(:func:`qualitylab.report.scan_period`), then
:func:`qualitylab.incidents.group_incidents` on them. Nothing is tuned: scan
and grouping run with their defaults and the committed market parameters.

**Planted problems.** ``incidents.csv`` lists two rows for two causes: the
live_report surge (``volume`` up and ``sla_compliance`` down) and the scam
policy rollout (``over_enforcement_rate`` up and ``accuracy`` down), each pair
on one segment and the same dates (see ``demo._plan_incidents``). Rows of one
market, segment and dates are one *planted problem*; folding such a pair into
one incident is right, not a merge.

**Which alerts belong to a planted problem.**

* *direct*: the alert, or a view ``scan`` folded into its ``related``, finds
  one of the problem's rows by the rule of ``benchmarks/detect_eval.py``
  (:func:`detect_eval.covers`: a closely related metric in the consistent
  direction, on the row's segment or the whole market, on overlapping dates);
* *collateral*: otherwise, when the problem touches the decisions (every
  planted kind except ``red_team_recall``, which only changes the
  ``red_team`` table, and ``reporting_gap``, which only changes
  ``vendor_reported``), the alert's metric is computed from decisions or
  audits (not ``red_team_recall``/``reporting_gap``) and its window overlaps
  the problem's dates, and either it is on the problem's segment (itself or a
  view in its ``related``: another metric of the planted segment, as
  ``detect_eval`` counts collateral) or it starts no earlier than two days
  before the problem and no later than its last day (a knock-on effect
  starts with its cause; a detector's window may open a day or two early).
  An alert that qualifies for several problems by its start goes to the one
  whose start is closest to its own;
* every other alert is *not tied to a planted problem* (a false alarm, or an
  effect of an unplanted change such as the first-wave model release).

**Counts.** *Before*: medium and high alerts tied to the problem (rows of the
scan). *After*: incidents that hold at least one of them (what a reader sees:
each incident shows once, led by its lead). Target: at most 2 after.
*Merged*: an incident holding alerts (any severity) tied to two planted
problems. *Folded others*: alerts not tied to any planted problem that the
grouping put into a planted problem's incident (they could hide an
unrelated problem, so they are listed).

Usage::

    python benchmarks/incident_eval.py [--seeds 1,2] [--scale demo]
        [--markets SG,ID,...] [--out benchmarks/results/incident_eval.md]
        [--keep DIR]

``--keep DIR`` keeps (and reuses) the generated data in ``DIR/seed<N>``.
A demo seed takes about a minute on two cores (scans of ten markets, ~30 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab import open_dataset
from qualitylab.demo import SCALES, generate
from qualitylab.incidents import group_incidents
from qualitylab.report import context, scan_period

HERE = Path(__file__).resolve().parent
#: Planted metrics whose generator changes no decision or audit (see the module docstring).
OWN_TABLE_ONLY = ("red_team_recall", "reporting_gap")
SHOWN = ("medium", "high")
EARLY_DAYS = 2


def _detect_eval() -> Any:
    spec = importlib.util.spec_from_file_location("detect_eval", HERE / "detect_eval.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules.setdefault("detect_eval", mod)
    spec.loader.exec_module(mod)
    return mod


@dataclass
class Problem:
    key: str
    market: str
    rows: pd.DataFrame  # rows of incidents.csv
    start: pd.Timestamp
    end: pd.Timestamp

    @property
    def touches_decisions(self) -> bool:
        return not set(self.rows["metric"]) <= set(OWN_TABLE_ONLY)

    def label(self) -> str:
        r = self.rows.iloc[0]
        metrics = " + ".join(
            f"{m} {d}" for m, d in zip(self.rows["metric"], self.rows["direction"], strict=True)
        )
        return (
            f"{self.market} {metrics} {r['dimension']}={r['segment']} "
            f"{self.start:%m-%d}..{self.end:%m-%d}"
        )


def problems(incidents: pd.DataFrame) -> list[Problem]:
    """Rows of one market, segment and dates form one planted problem."""
    out = []
    keys = ["market", "dimension", "segment", "start_date", "end_date"]
    for k, rows in incidents.groupby(keys, sort=False):
        out.append(
            Problem(
                key="|".join(map(str, k)),
                market=str(k[0]),
                rows=rows.reset_index(drop=True),
                start=pd.Timestamp(k[3]),
                end=pd.Timestamp(k[4]),
            )
        )
    return out


def tie(alert: pd.Series, probs: list[Problem], de: Any) -> tuple[str | None, str]:
    """The planted problem an alert belongs to and how, or None (see the module docstring)."""
    for p in probs:
        for _, row in p.rows.iterrows():
            how = de.covers(alert, row)
            if how:
                return p.key, how
    if alert["metric"] in OWN_TABLE_ONLY:
        return None, ""
    where = {(dim, seg) for _, dim, seg, _, _ in de.views(alert)}
    overlapping = [
        p
        for p in probs
        if p.touches_decisions and alert["start_date"] <= p.end and alert["end_date"] >= p.start
    ]
    for p in overlapping:
        if (str(p.rows.loc[0, "dimension"]), str(p.rows.loc[0, "segment"])) in where:
            return p.key, "collateral (segment)"
    cands = [
        (abs((alert["start_date"] - p.start).days), p.key)
        for p in overlapping
        if p.start - pd.Timedelta(days=EARLY_DAYS) <= alert["start_date"] <= p.end
    ]
    if not cands:
        return None, ""
    return min(cands)[1], "collateral (onset)"


def git_state() -> str:
    def run(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=HERE.parent, capture_output=True, text=True, check=True
            ).stdout.rstrip("\n")
        except (OSError, subprocess.CalledProcessError):
            return ""

    rev = run("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [
        line[3:]
        for line in run("status", "--porcelain", "--", "src").splitlines()
        if line and not line.startswith("??")
    ]
    return rev + (f" (uncommitted changes in {', '.join(dirty)})" if dirty else "")


def evaluate_seed(
    seed: int, scale: str, markets: list[str], folder: Path, de: Any
) -> dict[str, Any]:
    if not (folder / "incidents.csv").exists():
        generate(folder, scale=scale, seed=seed)
    incidents = pd.read_csv(folder / "incidents.csv", parse_dates=["start_date", "end_date"])
    ds = open_dataset(str(folder))
    probs = problems(incidents)
    tied_rows, timing = [], []
    for market in markets:
        t0 = time.perf_counter()
        ctx = context(ds, market)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            alerts = scan_period(ds, ctx)
        t1 = time.perf_counter()
        grouped = group_incidents(alerts, ds, market, start=ctx.start, end=ctx.end)
        t2 = time.perf_counter()
        info = grouped.attrs.get("incidents", {})
        timing.append(
            {
                "seed": seed,
                "market": market,
                "alerts": len(alerts),
                "incidents": info.get("incidents", 0),
                "rca_calls": info.get("rca_calls", 0),
                "refused": len(info.get("refused", [])),
                "scan_s": t1 - t0,
                "group_s": t2 - t1,
            }
        )
        mine = [p for p in probs if p.market == market]
        for _, a in grouped.iterrows():
            key, how = tie(a, mine, de)
            tied_rows.append({**a.to_dict(), "seed": seed, "problem": key, "how": how})
    return {
        "seed": seed,
        "problems": probs,
        "alerts": pd.DataFrame(tied_rows),
        "timing": pd.DataFrame(timing),
    }


def score(run: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per problem before/after, merges, and alerts not tied to a problem."""
    al: pd.DataFrame = run["alerts"]
    if al.empty:
        al = pd.DataFrame(columns=["problem", "severity", "incident_id", "how", "market"])
    rows = []
    owners = (
        al.dropna(subset=["problem"])
        .groupby("incident_id")["problem"]
        .agg(lambda s: sorted(set(s)))
    )
    for p in run["problems"]:
        mine = al[al["problem"] == p.key]
        shown = mine[mine["severity"].isin(SHOWN)]
        incs = shown["incident_id"].unique().tolist()
        leads = al[al["incident_id"].isin(incs) & (al["incident_role"] == "lead")]
        merged = sorted(
            {q for i in mine["incident_id"].unique() for q in owners.get(i, []) if q != p.key}
        )
        rows.append(
            {
                "seed": run["seed"],
                "problem": p.label(),
                "found": bool((~mine["how"].str.startswith("collateral")).any()),
                "alerts": len(mine),
                "before": len(shown),
                "after": len(incs),
                "leads": "; ".join(
                    f"{r.metric} {r.dimension}={r.segment} ({r.severity})"
                    + (f" [{r.incident_event.split(':')[0]}]" if r.incident_event else "")
                    for r in leads.itertuples()
                ),
                "merged_with": "; ".join(merged),
            }
        )
    per = pd.DataFrame(rows)
    merges = per[per["merged_with"] != ""]
    others = al[al["problem"].isna()].copy()
    planted_incs = set(al.dropna(subset=["problem"])["incident_id"])
    others["folded_into_planted"] = others["incident_id"].isin(planted_incs)
    return per, merges, others


def _md_table(df: pd.DataFrame, cols: list[str]) -> list[str]:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        cells = [str(r[c]).replace("|", "/").replace("\n", " ") for c in cols]
        out.append("| " + " | ".join(cells) + " |")
    return out


def report(runs: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    pers, merges_all, others_all, timing = [], [], [], []
    for run in runs:
        per, merges, others = score(run)
        pers.append(per)
        merges_all.append(merges)
        others_all.append(others)
        timing.append(run["timing"])
    per = pd.concat(pers, ignore_index=True)
    merges = pd.concat(merges_all, ignore_index=True)
    others = pd.concat(others_all, ignore_index=True)
    tm = pd.concat(timing, ignore_index=True)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    cmd = (
        f"python benchmarks/incident_eval.py --seeds {args.seeds} --scale {args.scale} "
        f"--out {args.out}" + (f" --markets {args.markets}" if args.markets else "")
    )
    lines = [
        "# Incident grouping on planted demo incidents",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {os.cpu_count()} cores (load average {load} at the end), "
        f"{platform.platform()}, Python {platform.python_version()}; git {git_state()}. "
        f"Wall time {wall:.0f} s.",
        "",
        "Per market: `report.context(ds, market)` (the last four full weeks), "
        "`report.scan_period`, then `incidents.group_incidents` with its defaults. "
        "Definitions (planted problem, direct and collateral alerts, before/after) are in "
        "the script's docstring. *Before* = medium/high alerts tied to the problem; "
        "*after* = incidents holding them (target <= 2); *found* = a direct alert exists.",
        "",
        "## Per planted problem",
        "",
    ]
    per = per.assign(found=per["found"].map({True: "yes", False: "no"}))
    lines += _md_table(
        per, ["seed", "problem", "found", "alerts", "before", "after", "leads", "merged_with"]
    )
    shown = per[per["before"] > 0]
    ok = int((shown["after"] <= 2).sum())
    lines += [
        "",
        f"Problems with medium/high alerts: {len(shown)}; before grouping "
        f"{int(shown['before'].sum())} alerts ({shown['before'].min() if len(shown) else 0} to "
        f"{shown['before'].max() if len(shown) else 0} each), after {int(shown['after'].sum())} "
        f"incidents ({shown['after'].min() if len(shown) else 0} to "
        f"{shown['after'].max() if len(shown) else 0} each); at most 2 after: {ok} of {len(shown)}.",
        f"Problems with no direct alert (missed by the scan, before any grouping): "
        f"{int((per['found'] == 'no').sum())} of {len(per)}.",
        "",
        "## Merges of planted problems",
        "",
    ]
    if merges.empty:
        lines.append("None: no incident holds alerts tied to two planted problems.")
    else:
        lines += _md_table(merges, ["seed", "problem", "merged_with"])
    lines += ["", "## Alerts not tied to a planted problem", ""]
    if others.empty:
        lines.append("None.")
    else:
        sev = others.groupby("severity").size().to_dict()
        shown_o = others[others["severity"].isin(SHOWN)]
        lines.append(
            f"{len(others)} alerts ({', '.join(f'{k} {v}' for k, v in sorted(sev.items()))}); "
            f"medium/high {len(shown_o)} in {shown_o['incident_id'].nunique()} incidents after "
            f"grouping; folded into a planted problem's incident: "
            f"{int(others['folded_into_planted'].sum())}."
        )
        lines.append("")
        o = others.assign(
            dates=others["start_date"].dt.strftime("%m-%d")
            + ".."
            + others["end_date"].dt.strftime("%m-%d"),
            where=others["dimension"] + "=" + others["segment"].astype(str),
            folded=others["folded_into_planted"].map({True: "yes", False: ""}),
            cause=others["incident_cause"].str.slice(0, 140),
        )
        lines += _md_table(
            o,
            [
                "seed",
                "market",
                "metric",
                "where",
                "dates",
                "direction",
                "severity",
                "incident_role",
                "folded",
                "cause",
            ],
        )
    lines += ["", "## Runtime per market", ""]
    g = tm.groupby("seed")
    summary = pd.DataFrame(
        {
            "alerts": g["alerts"].sum(),
            "incidents": g["incidents"].sum(),
            "rca_calls": g["rca_calls"].sum(),
            "scan_s median/max": g["scan_s"].agg(lambda s: f"{s.median():.1f} / {s.max():.1f}"),
            "group_s median/max": g["group_s"].agg(lambda s: f"{s.median():.2f} / {s.max():.2f}"),
        }
    ).reset_index()
    lines += _md_table(summary, list(summary.columns))
    lines += ["", "Per market (grouping seconds, rca calls, alerts -> incidents):", ""]
    tm = tm.assign(
        cell=tm.apply(
            lambda r: f"{r.group_s:.1f} s, {r.rca_calls}, {r.alerts}->{r.incidents}", axis=1
        )
    )
    wide = tm.pivot(index="seed", columns="market", values="cell").reset_index()
    lines += _md_table(wide, list(wide.columns))
    lines += ["", "## Children and their causes (medium/high alerts tied to a problem)", ""]
    al = pd.concat([r["alerts"] for r in runs], ignore_index=True)
    kids = al[al["problem"].notna() & al["severity"].isin(SHOWN)].copy()
    if not kids.empty:
        kids["where"] = kids["dimension"] + "=" + kids["segment"].astype(str)
        kids["cause"] = kids["incident_cause"].str.slice(0, 170)
        lines += _md_table(
            kids,
            ["seed", "market", "metric", "where", "severity", "how", "incident_role", "cause"],
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--scale", default="demo")
    ap.add_argument("--markets", default="")
    ap.add_argument("--out", default="benchmarks/results/incident_eval.md")
    ap.add_argument("--keep", default="")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    markets = [m.strip().upper() for m in args.markets.split(",") if m.strip()] or list(
        SCALES[args.scale].markets
    )
    de = _detect_eval()
    t0 = time.perf_counter()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        for seed in seeds:
            folder = root / f"seed{seed}"
            runs.append(evaluate_seed(seed, args.scale, markets, folder, de))
            print(f"seed {seed}: done", file=sys.stderr, flush=True)
        text = report(runs, args, time.perf_counter() - t0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
