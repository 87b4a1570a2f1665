"""The daily loop replayed: identities and statuses of the planted incidents (issue #16).

Generates demo data, replays the last 28 days for three markets with
:func:`qualitylab.replay.replay` (detection, incident grouping and the alert
store, no notebooks) and reports, from ``alerts.parquet``:

* for every incident planted in those markets (``incidents.csv``) that the
  scan finds — an alert of the same market, metric, dimension, segment and
  direction whose window overlaps the planted dates — its ``alert_id`` (s)
  across the days (target: exactly one), its incident id(s), and its status
  on each day (target: ``new`` on its first day, ``ongoing`` while it lasts,
  then ``resolved``; an incident planted up to the data's last day may end
  ``ongoing``);
* the new alerts per market and day (all, medium/high, and new incident
  leads).

``--period report`` replays what ``qualitylab run --as-of DAY`` scans (the
last four full weeks on or before the day, so the period moves on Sundays);
``--period trailing`` scans the 28 days ending on each day. Nothing is tuned:
the planted data and the detector's thresholds are the defaults.

Usage::

    .venv/bin/python benchmarks/replay_eval.py --scale demo --seed 42 \\
        --markets SG,ID,TH --period both --out benchmarks/results/replay_eval.md
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from qualitylab.alertstore import read_store
from qualitylab.demo import generate
from qualitylab.replay import replay

_ABBREV = {"new": "N", "ongoing": "O", "muted": "M", "resolved": "R"}


def planted_alerts(store: pd.DataFrame, inc: pd.Series) -> pd.DataFrame:
    """Store rows of the planted incident's series whose window overlaps its dates."""
    same = (
        (store["market"] == inc["market"])
        & (store["metric"] == inc["metric"])
        & (store["dimension"] == inc["dimension"])
        & (store["segment"] == inc["segment"])
        & (store["direction"] == inc["direction"])
    )
    rows = store[same]
    ids = rows.loc[
        (rows["start_date"] <= pd.Timestamp(inc["end_date"]))
        & (rows["end_date"] >= pd.Timestamp(inc["start_date"])),
        "alert_id",
    ].unique()
    return rows[rows["alert_id"].isin(ids)]


def sequence(rows: pd.DataFrame, days: list[date]) -> list[str]:
    """The alert's status each day ("" when the day wrote no row for it)."""
    by_day = rows.groupby(rows["as_of"].dt.date)["status"].agg(lambda s: ",".join(s))
    return [by_day.get(d, "") for d in days]


def verdict(seq: list[str], lasts_to_end: bool) -> str:
    """``ok`` when the written statuses read new, ongoing..., resolved (or ongoing at the end)."""
    written = [s for s in seq if s]
    if not written:
        return "not found"
    if any("," in s for s in written):
        return "two rows on a day"
    first = next(i for i, s in enumerate(seq) if s)
    last = max(i for i, s in enumerate(seq) if s)
    gaps = [i for i in range(first, last + 1) if not seq[i]]
    if written[0] != "new":
        return f"starts {written[0]}"
    middle = written[1:-1] if written[-1] == "resolved" else written[1:]
    if any(s != "ongoing" for s in middle):
        return "changes: " + " ".join(_ABBREV.get(s, s) for s in written)
    if gaps:
        return f"{len(gaps)} day(s) without a row while open"
    if written[-1] == "resolved":
        return "ok"
    if lasts_to_end:
        return "ok (ongoing at the end)"
    if len(written) == 1 and seq[-1] == "new":
        return "ok (first seen on the last day)"
    return "not resolved by the last day"


def compact(seq: list[str], days: list[date]) -> str:
    """Runs of equal statuses, e.g. ``new 11-08, ongoing 11-09..11-14, resolved 11-15``."""
    parts, i = [], 0
    while i < len(seq):
        j = i
        while j + 1 < len(seq) and seq[j + 1] == seq[i]:
            j += 1
        if seq[i]:
            span = f"{days[i]:%m-%d}" + (f"..{days[j]:%m-%d}" if j > i else "")
            parts.append(f"{seq[i]} {span}")
        i = j + 1
    return ", ".join(parts) or "-"


def evaluate(data: Path, reports: Path, markets: list[str], days: list[date], period: str):
    started = time.perf_counter()
    summary = replay(
        data,
        start=days[0],
        end=days[-1],
        markets=markets,
        out=reports,
        period=period,
        progress=lambda msg: print(f"[{period}] {msg}", flush=True),
    )
    seconds = time.perf_counter() - started
    store = read_store(reports)
    incidents = pd.read_csv(data / "incidents.csv")
    incidents = incidents[incidents["market"].isin(markets)].reset_index(drop=True)
    last_day = days[-1].isoformat()
    found = []
    for _, inc in incidents.iterrows():
        rows = planted_alerts(store, inc)
        ids = list(dict.fromkeys(rows.sort_values("as_of")["alert_id"]))
        incs = list(dict.fromkeys(rows.sort_values("as_of")["incident_id"]))
        seqs = {aid: sequence(rows[rows["alert_id"] == aid], days) for aid in ids}
        main_seq = seqs[ids[0]] if ids else [""] * len(days)
        roles = sorted(set(rows.loc[rows["status"] != "resolved", "incident_role"]))
        found.append(
            {
                "market": inc["market"],
                "planted": f"{inc['metric']} {inc['dimension']}={inc['segment']} "
                f"{inc['direction']} {inc['start_date'][5:]}..{inc['end_date'][5:]}",
                "alert_ids": ids,
                "incident_ids": incs,
                "roles": roles,
                "statuses": {aid: compact(s, days) for aid, s in seqs.items()},
                "verdict": verdict(main_seq, inc["end_date"] >= last_day) if ids else "not found",
                "ended_by": date.fromisoformat(inc["end_date"]),
            }
        )
    new = store[store["status"] == "new"].copy()
    new["day"] = new["as_of"].dt.date
    per_day = pd.DataFrame(
        {
            "new": new.groupby(["day", "market"]).size(),
            "new_mh": new[new["severity"].isin(["medium", "high"])]
            .groupby(["day", "market"])
            .size(),
            "new_leads": new[new["incident_role"] == "lead"].groupby(["day", "market"]).size(),
        }
    )
    grid = pd.MultiIndex.from_product([days, markets], names=["day", "market"])
    per_day = per_day.reindex(grid, fill_value=0).fillna(0).astype(int).reset_index()
    return {
        "period": period,
        "summary": summary,
        "found": found,
        "per_day": per_day,
        "seconds": seconds,
        "store_rows": len(store),
    }


def render(results: list[dict], args: argparse.Namespace, days: list[date], total: float) -> str:
    cmd = (
        f"`.venv/bin/python benchmarks/replay_eval.py --scale {args.scale} --seed {args.seed} "
        f"--markets {','.join(args.markets)} --period {args.period} --out {args.out}`"
    )
    lines = [
        "# Replay of the daily loop: alert identities and statuses of planted incidents",
        "",
        f"Command: {cmd} (run time {total:.0f} s on a shared 2-core machine)",
        "",
        f"Demo data `generate(scale={args.scale!r}, seed={args.seed}, markets={args.markets})`, "
        f"90 days to {days[-1]}; replayed {days[0]}..{days[-1]} ({len(days)} days) with "
        "`qualitylab.replay.replay` (scan, `incidents.group_incidents`, `alertstore.track`/"
        "`commit`), default thresholds, no labels. A planted incident is *found* when an "
        "alert of its market, metric, dimension, segment and direction has a window "
        "overlapping its dates. Statuses per day: the row each replayed day wrote for the "
        "alert (`-`: none).",
        "",
    ]
    for res in results:
        found = [f for f in res["found"] if f["alert_ids"]]
        one_id = sum(len(f["alert_ids"]) == 1 for f in found)
        one_inc = sum(len(f["incident_ids"]) == 1 for f in found)
        ok = sum(f["verdict"].startswith("ok") for f in found)
        resolved = sum(f["verdict"] == "ok" for f in found)
        ended = [f for f in found if f["ended_by"] <= days[-1] - timedelta(days=3)]
        resolved_ended = sum(f["verdict"] == "ok" for f in ended)
        title = {
            "report": "Period `report` (the last four full weeks on or before the day: what "
            "the scorecards report)",
            "trailing": "Period `trailing` (the 28 days ending on each day: what "
            "`qualitylab run --as-of DAY` scans)",
        }[res["period"]]
        lines += [
            f"## {title}",
            "",
            f"Replay time {res['seconds']:.0f} s; {res['store_rows']} store rows.",
            "",
            "| measure | value |",
            "|---|---|",
            f"| planted incidents in these markets | {len(res['found'])} |",
            f"| found by the scan | {len(found)} |",
            f"| found with exactly one alert_id across the days | {one_id} of {len(found)} |",
            f"| found with exactly one incident_id across the days | {one_inc} of {len(found)} |",
            f"| status sequence new → ongoing … → resolved, or still open on the last day | "
            f"{ok} of {len(found)} |",
            f"| resolved within the replay | {resolved} of {len(found)} "
            f"({resolved_ended} of the {len(ended)} that ended 3 or more days before its last day) |",
            "",
            "| market | planted incident | alert_id(s) | incident_id(s) | role | statuses by day | verdict |",
            "|---|---|---|---|---|---|---|",
        ]
        for f in res["found"]:
            ids = "<br>".join(f"`{a}`" for a in f["alert_ids"]) or "-"
            incs = "<br>".join(f"`{a}`" for a in f["incident_ids"]) or "-"
            st = "<br>".join(f["statuses"][a] for a in f["alert_ids"]) or "-"
            lines.append(
                f"| {f['market']} | {f['planted']} | {ids} | {incs} | {'/'.join(f['roles']) or '-'} "
                f"| {st} | {f['verdict']} |"
            )
        pd_ = res["per_day"]
        lines += [
            "",
            "New alerts per market-day (all / medium+high / new incident leads):",
            "",
            "| day | " + " | ".join(args.markets) + " | all |",
            "|---|" + "---|" * (len(args.markets) + 1),
        ]
        for day, g in pd_.groupby("day"):
            g = g.set_index("market")
            cells = [
                f"{g.at[m, 'new']} / {g.at[m, 'new_mh']} / {g.at[m, 'new_leads']}"
                for m in args.markets
            ]
            lines.append(
                f"| {day} ({day:%a}) | " + " | ".join(cells) + f" | {int(g['new'].sum())} |"
            )
        tot = pd_.groupby("market")[["new", "new_mh", "new_leads"]].sum()
        lines.append(
            "| total | "
            + " | ".join(
                f"{tot.at[m, 'new']} / {tot.at[m, 'new_mh']} / {tot.at[m, 'new_leads']}"
                for m in args.markets
            )
            + f" | {int(tot['new'].sum())} |"
        )
        per = pd_["new"]
        changed = [f for f in found if len(f["incident_ids"]) > 1]
        lines += [
            "",
            f"New alerts per market-day: mean {per.mean():.2f}, max {per.max()}, "
            f"{(per == 0).mean():.0%} of market-days with none.",
            "",
        ]
        if res["period"] == "report":
            lines += [
                "The report period moves on Sundays: the other days repeat Sunday's scan, so "
                "alerts turn new on Sundays only and an incident is first seen up to a week "
                "after it starts.",
                "",
            ]
        if changed:
            lines += [
                f"{len(changed)} found incident(s) changed incident id across the days: "
                "`incidents.group_incidents` regrouped their alert from one day to the next "
                "(two groups merging keep the older id, so the alerts of the younger one "
                "change id).",
                "",
            ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=["small", "demo"], default="demo")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--markets", type=lambda s: s.split(","), default=["SG", "ID", "TH"])
    ap.add_argument("--days", type=int, default=28, help="days replayed, ending on the data's end")
    ap.add_argument("--period", choices=["report", "trailing", "both"], default="report")
    ap.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    ap.add_argument("--out", default="benchmarks/results/replay_eval.md")
    args = ap.parse_args()
    started = time.perf_counter()
    work = Path(args.work or tempfile.mkdtemp(prefix="replay_eval_"))
    data = work / "data"
    summary = generate(data, scale=args.scale, seed=args.seed, markets=args.markets)
    end = summary.end_date
    days = [end - timedelta(days=args.days - 1 - i) for i in range(args.days)]
    periods = ["report", "trailing"] if args.period == "both" else [args.period]
    results = [evaluate(data, work / f"reports-{p}", args.markets, days, p) for p in periods]
    text = render(results, args, days, time.perf_counter() - started)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
