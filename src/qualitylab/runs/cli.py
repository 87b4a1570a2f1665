"""Command-line interface: parses arguments and calls the library.

Every library error (:class:`~qualitylab.errors.QualityLabError`) is printed as
one readable message and exits with status 2; a failed validation exits 1.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import pandas as pd

from qualitylab.errors import QualityLabError
from qualitylab.version import __version__

if TYPE_CHECKING:
    from qualitylab.detection.rca import AdtributorResult

__all__ = ["RCA_CSV_COLUMNS", "build_parser", "main", "rca_rows"]


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _date_range(text: str) -> tuple[str, str]:
    start, sep, end = text.partition(":")
    if not sep or not start or not end:
        raise argparse.ArgumentTypeError(
            f"expected START:END (YYYY-MM-DD:YYYY-MM-DD), got {text!r}"
        )
    return start.strip(), end.strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``qualitylab`` command."""
    parser = argparse.ArgumentParser(
        prog="qualitylab",
        description="Trust & Safety quality operations workbench.",
    )
    parser.add_argument("--version", action="version", version=f"qualitylab {__version__}")
    parser.add_argument(
        "--parameters", default=None, help="parameters folder (default: ./parameters)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check a dataset against the data contract")
    p.add_argument("--data", required=True, help="folder, DuckDB file or connection URL")
    p.add_argument("--assume-utc", action="store_true", help="accept naive timestamps as UTC")
    p.add_argument("--out", help="also write the problem table to this CSV file")

    p = sub.add_parser("demo-data", help="generate the synthetic demo dataset")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--markets", type=_csv_list, default=None, help="e.g. SG,ID (default: by scale)")
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--scale", choices=["small", "demo", "large"], default="demo")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument(
        "--young-market",
        default=None,
        metavar="CODE",
        help="a market that started recently (added if not in --markets): only the last "
        "--young-days days of history, a live_report queue live for the last 5 days "
        "(first decisions on the last day - 4), its other tables starting with its data, "
        "no planted incident; try the reports on too little data",
    )
    p.add_argument(
        "--young-days", type=int, default=14, help="days of history of --young-market (6 to --days)"
    )
    p.add_argument(
        "--no-incidents",
        action="store_true",
        help="plant no incidents (clean data; incidents.csv has only its header)",
    )

    p = sub.add_parser("scorecard", help="KPIs vs targets for one market, with change")
    p.add_argument("--data", required=True)
    p.add_argument("--market", required=True, help="market code, e.g. SG")
    p.add_argument("--by", type=_csv_list, default=[], help="grain, e.g. vendor,queue")
    p.add_argument("--start", default=None, help="first market-local date (YYYY-MM-DD)")
    p.add_argument("--end", default=None, help="last market-local date (YYYY-MM-DD)")
    p.add_argument("--threshold", type=float, default=None, help="AI decision threshold")
    p.add_argument("--out", default=None, help="CSV file to write (prints when omitted)")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser("detect", help="scan a market for anomalies; write alerts.csv")
    p.add_argument("--data", required=True)
    p.add_argument("--market", required=True)
    p.add_argument("--start", default=None)
    p.add_argument("--end", default=None)
    p.add_argument("--out", default=None, help="alerts CSV (prints when omitted)")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser("rca", help="explain a metric's change between two periods")
    p.add_argument("--data", required=True)
    p.add_argument("--market", required=True)
    p.add_argument("--metric", default="accuracy", help="e.g. accuracy, sla_compliance")
    p.add_argument("--current", required=True, type=_date_range, help="D1:D2 (market-local)")
    p.add_argument(
        "--baseline",
        default=None,
        type=_date_range,
        help="D3:D4 (default: the 28 days before --current)",
    )
    p.add_argument(
        "--dimensions", type=_csv_list, default=None, help="e.g. vendor,site,queue (default: all)"
    )
    p.add_argument("--out", default=None, help="ranked rows as CSV (prints when omitted)")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser("capacity", help="required vs staffed moderators per queue and hour")
    p.add_argument("--data", required=True)
    p.add_argument("--market", required=True)
    p.add_argument("--horizon", type=int, default=28, help="days to forecast (default 28)")
    p.add_argument("--history", type=int, default=56, help="days of history (default 56)")
    p.add_argument("--out", required=True, help="capacity CSV")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser(
        "sampling-plan",
        help="where QA audits are too few to see a drop, and a weekly allocation that fixes it",
    )
    p.add_argument("--data", required=True)
    p.add_argument("--market", required=True)
    p.add_argument("--weeks", type=int, default=4, help="full weeks measured (default 4)")
    p.add_argument(
        "--budget", type=int, default=None, help="weekly audits to allocate (default: current)"
    )
    p.add_argument(
        "--drop",
        type=float,
        default=None,
        help="accuracy drop each stratum must show (default: detectable_drop parameter)",
    )
    p.add_argument("--by", type=_csv_list, default=["vendor", "queue"], help="strata columns")
    p.add_argument("--out", default=None, help="plan CSV (the table is printed either way)")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser("readiness", help="check a queue launch plan; exit 1 when a check fails")
    p.add_argument("--data", required=True)
    p.add_argument("--launch", required=True, help="launch plan YAML (parameters/launches/)")
    p.add_argument("--out", default=None, help="checklist CSV (prints when omitted)")
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser("run", help="run the notebooks for every market and build the hub")
    p.add_argument("--data", default="data/demo")
    p.add_argument("--markets", default="all", help="e.g. SG,ID or all")
    p.add_argument(
        "--notebooks", default="all", help="scorecard,trends,rca,ai,capacity,rollout,triage or all"
    )
    p.add_argument(
        "--as-of",
        default=None,
        help="report date: YYYY-MM-DD, or today/yesterday in each market's time zone "
        "(default: the data's last day)",
    )
    p.add_argument("--out", default="reports")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--timeout", type=float, default=600, help="seconds per notebook cell")
    p.add_argument("--no-portfolio", action="store_true")
    p.add_argument("--notebooks-dir", default=None)
    p.add_argument(
        "--wait",
        type=float,
        default=0,
        metavar="SECONDS",
        help="wait this long when another run is writing the same market into --out "
        "(default: stop at once, naming that run)",
    )
    p.add_argument(
        "--notify",
        default=None,
        metavar="URL",
        help="POST the run's digest as JSON to this webhook (a failure is a warning only)",
    )

    p = sub.add_parser(
        "schedule",
        help="print crontab lines or write an Airflow DAG for parameters/schedule.yaml",
        description="Export parameters/schedule.yaml: crontab lines (in the cron daemon's "
        "zone, or market-local CRON_TZ lines with --cron-tz) or an Airflow DAG file. Paths "
        "are made absolute; every run passes its report date (--as-of).",
    )
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--crontab", action="store_true", help="print crontab lines")
    g.add_argument("--airflow", metavar="DIR", help="write DIR/qualitylab_dag.py")
    p.add_argument("--data", default="data/demo", help="dataset (made absolute)")
    p.add_argument("--out", default="reports", help="reports folder (made absolute)")
    p.add_argument(
        "--home",
        default=None,
        metavar="DIR",
        help="project folder the runs start in, holding notebooks/ (default: found from here)",
    )
    p.add_argument(
        "--host-tz",
        default="UTC",
        metavar="ZONE",
        help="crontab: the zone the cron daemon's clock runs in (default UTC; see `date`)",
    )
    p.add_argument(
        "--cron-tz",
        action="store_true",
        help="crontab: market-local lines under CRON_TZ= (cronie only; not Debian's cron)",
    )

    p = sub.add_parser(
        "due",
        help="exit 0 when the current minute matches a cron expression in a time zone",
        description="The guard of crontab lines for daylight-saving zones: exits 0 when the "
        "minute matches EXPR in ZONE, 1 (with one line on stderr) when it does not.",
    )
    p.add_argument("--cron", required=True, metavar="EXPR", help="5-field cron expression")
    p.add_argument("--tz", required=True, metavar="ZONE", help="IANA time zone of EXPR")
    p.add_argument(
        "--at",
        default=None,
        metavar="ISO",
        help="check this time instead of now (YYYY-MM-DDTHH:MM, in ZONE unless it has an offset)",
    )

    p = sub.add_parser("headline", help="print a per-market headline table")
    p.add_argument("--data", required=True)
    p.add_argument("--assume-utc", action="store_true")

    p = sub.add_parser(
        "alerts",
        help="the alert store of a reports folder: list, label, stats",
        description="Alerts remembered across runs (alerts.parquet in the reports folder) "
        "and their labels (alert_labels.csv).",
    )
    asub = p.add_subparsers(dest="alerts_command", required=True, metavar="{list,label,stats}")
    q = asub.add_parser("list", help="the latest state of each alert")
    q.add_argument("--reports", required=True, metavar="DIR", help="reports folder (a run's --out)")
    q.add_argument("--market", default=None, help="one market, e.g. SG")
    q.add_argument(
        "--status", default=None, help="comma-separated: new,ongoing,muted,resolved (default: all)"
    )
    q.add_argument("--format", choices=["table", "csv"], default="table")
    q.add_argument("--out", default=None, metavar="FILE", help="write here instead of printing")
    q = asub.add_parser("label", help="label an alert (appends to alert_labels.csv)")
    q.add_argument("alert_id", help="an id from `qualitylab alerts list`")
    q.add_argument(
        "--as",
        dest="label",
        required=True,
        metavar="{confirmed,expected,false_alarm,new_normal}",
        help="confirmed: keep; expected/false_alarm: mute while it continues; "
        "new_normal: re-baseline its series from the alert's start",
    )
    q.add_argument("--note", default="", help="why (free text)")
    q.add_argument("--by", default="", help="who")
    q.add_argument("--reports", required=True, metavar="DIR")
    q = asub.add_parser("stats", help="alert precision from the labels, and counts by status")
    q.add_argument("--reports", required=True, metavar="DIR")

    p = sub.add_parser(
        "replay",
        help="build the alert store day by day over past dates (detection only, no notebooks)",
        description="For each day from --from to --to and each market, scan the report period "
        "of `qualitylab run --as-of DAY`, fold the alerts into incidents and update the alert "
        "store in --out, as the daily runs would have. One line per day.",
    )
    p.add_argument("--data", required=True)
    p.add_argument("--from", dest="from_", required=True, metavar="D1", help="first day")
    p.add_argument("--to", required=True, metavar="D2", help="last day (inclusive)")
    p.add_argument("--markets", required=True, help="e.g. SG,ID,TH or all")
    p.add_argument("--out", required=True, metavar="DIR", help="reports folder")
    p.add_argument(
        "--period",
        choices=["report", "trailing"],
        default="trailing",
        help="trailing: the 28 days ending on each day, what `qualitylab run` scans (default); "
        "report: the last four full weeks",
    )
    p.add_argument("--no-incidents", action="store_true", help="store alerts without grouping")
    p.add_argument("--assume-utc", action="store_true")

    from qualitylab.runs.watchcli import add_watch_parsers

    add_watch_parsers(sub)  # watch, demo-stream (issue #19)
    return parser


def _open(args: argparse.Namespace, *, validate: bool = True):  # noqa: ANN202
    """The dataset named by ``--data`` (validated: fatal contract problems stop here)."""
    from qualitylab.data.sources import open_dataset

    ds = open_dataset(
        args.data, parameters=args.parameters, assume_utc=getattr(args, "assume_utc", False)
    )
    if validate:
        ds.validate(raise_on_fatal=True)
    return ds


def _show(frame: pd.DataFrame, empty: str = "(no rows)") -> None:
    with pd.option_context(
        "display.width", 200, "display.max_columns", 30, "display.max_colwidth", 100
    ):
        print(frame.to_string(index=False) if len(frame) else empty)


def _cmd_validate(args: argparse.Namespace) -> int:
    from qualitylab.data.sources import open_dataset

    ds = open_dataset(args.data, parameters=args.parameters, assume_utc=args.assume_utc)
    report = ds.validate()
    print(report.to_text())
    if args.out:
        report.frame.to_csv(args.out, index=False)
    return 0 if report.ok else 1


def _cmd_demo_data(args: argparse.Namespace) -> int:
    from qualitylab.demodata.generate import generate

    started = time.perf_counter()
    summary = generate(
        args.out,
        markets=args.markets,
        days=args.days,
        scale=args.scale,
        seed=args.seed,
        progress=lambda msg: print(msg, file=sys.stderr),
        young_market=args.young_market,
        young_days=args.young_days,
        incidents=not args.no_incidents,
    )
    print(
        f"wrote {args.out} in {time.perf_counter() - started:.1f}s: "
        + ", ".join(f"{t} {n:,}" for t, n in summary.rows.items())
    )
    return 0


def _cmd_headline(args: argparse.Namespace) -> int:
    from qualitylab.reporting.headline import headline

    ds = _open(args)
    table = headline(ds)
    _show(table)
    return 0


def _cmd_scorecard(args: argparse.Namespace) -> int:
    from qualitylab.measure.scorecard import scorecard

    started = time.perf_counter()
    ds = _open(args, validate=False)
    table = scorecard(
        ds, args.market, by=args.by, start=args.start, end=args.end, threshold=args.threshold
    )
    if args.out:
        table.to_csv(args.out, index=False)
        print(
            f"wrote {len(table)} rows to {args.out} "
            f"({time.perf_counter() - started:.1f}s, period {' to '.join(table.attrs['period'])})"
        )
    else:
        _show(table)
    for note in table.attrs.get("notes", ()):
        print(f"note: {note}", file=sys.stderr)
    return 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from qualitylab.detection.detect import scan, write_alerts

    ds = _open(args)
    alerts = scan(ds, args.market, start=args.start, end=args.end)
    skipped = alerts.attrs.get("skipped")
    if args.out:
        write_alerts(alerts, args.out)
        print(f"wrote {len(alerts)} alerts to {args.out}")
    else:
        _show(alerts, "no alerts")
    scanned = alerts.attrs.get("scanned") or {}
    if scanned:
        young = (
            f"young baseline {scanned['young_start']}..{scanned['young_end']}"
            if scanned.get("young_start")
            else "no young-baseline days"
        )
        full = (
            f"full baseline {scanned['full_start']}..{scanned['full_end']}"
            if scanned.get("full_start")
            else "no full-baseline days"
        )
        print(
            f"scanned {args.market} {scanned['start']}..{scanned['end']}: {young}; {full}",
            file=sys.stderr,
        )
    if alerts.attrs.get("note"):
        print(f"note: {alerts.attrs['note']}", file=sys.stderr)
    for st in alerts.attrs.get("stopped") or []:
        print(
            f"stopped {st['dimension']}={st['segment']} from {st['stopped_from']}: {st['note']}",
            file=sys.stderr,
        )
    if skipped:
        import re

        by_reason: dict[str, list[dict]] = {}
        for row in skipped:  # one line per kind of reason, numbers left out
            by_reason.setdefault(re.sub(r"\d+", "N", str(row["reason"])), []).append(row)
        print(f"{len(skipped)} series could not be judged:", file=sys.stderr)
        ranked = sorted(by_reason.items(), key=lambda kv: -len(kv[1]))
        for _, rows in ranked[:6]:
            eg = ", ".join(f"{r['metric']} {r['dimension']}={r['segment']}" for r in rows[:3])
            print(f"  {len(rows)} like {rows[0]['reason']!r} (e.g. {eg})", file=sys.stderr)
        if len(ranked) > 6:
            rest = sum(len(rows) for _, rows in ranked[6:])
            print(f"  {rest} more, for {len(ranked) - 6} other reasons", file=sys.stderr)
    return 0


#: Columns of ``qualitylab rca`` output, in order.
RCA_CSV_COLUMNS = [
    "dimension",
    "segment",
    "baseline_value",
    "current_value",
    "contribution",
    "share_of_change",
    "mix_effect",
    "rate_effect",
    "surprise",
    "n_current",
    "n_baseline",
]


def rca_rows(ranking: AdtributorResult) -> pd.DataFrame:
    """Adtributor segments as ranked ``qualitylab rca`` rows (best dimension first)."""
    seg = ranking.segments
    out = pd.DataFrame(
        {
            "dimension": seg["dimension"],
            "segment": seg["segment"],
            "baseline_value": seg["rate_base"],
            "current_value": seg["rate_cur"],
            "contribution": seg["contribution"],
            "share_of_change": seg["explanatory_power"],
            "mix_effect": seg["mix_effect"],
            "rate_effect": seg["rate_effect"],
            "surprise": seg["surprise"],
            "n_current": seg["n_cur"],
            "n_baseline": seg["n_base"],
        }
    )
    return out.reset_index(drop=True)


def _cmd_rca(args: argparse.Namespace) -> int:
    from datetime import date, timedelta

    from qualitylab.detection.rca import DEFAULT_DIMENSIONS, adtributor, decompose

    ds = _open(args)
    current = args.current
    if args.baseline is None:
        try:
            first = date.fromisoformat(current[0])
        except ValueError:
            raise QualityLabError(f"--current: {current[0]!r} is not a YYYY-MM-DD date") from None
        baseline = (str(first - timedelta(days=28)), str(first - timedelta(days=1)))
    else:
        baseline = args.baseline
    result = decompose(
        ds,
        args.metric,
        args.market,
        current=current,
        baseline=baseline,
        dimensions=args.dimensions or DEFAULT_DIMENSIONS,
    )
    rows = rca_rows(adtributor(result))
    print(
        f"{args.metric} {args.market}: {result.rate_base:.4f} ({baseline[0]}..{baseline[1]}) "
        f"-> {result.rate_cur:.4f} ({current[0]}..{current[1]})",
        file=sys.stderr,
    )
    if args.out:
        rows.to_csv(args.out, index=False)
        print(f"wrote {len(rows)} rows to {args.out}")
    else:
        _show(rows)
    return 0


def _cmd_capacity(args: argparse.Namespace) -> int:
    from qualitylab.operations.capacity import capacity_table

    started = time.perf_counter()
    ds = _open(args)
    table = capacity_table(ds, args.market, horizon_days=args.horizon, history_days=args.history)
    table.to_csv(args.out, index=False)
    gaps = table[table["gap"] > 0]
    print(
        f"wrote {len(table)} rows to {args.out} ({time.perf_counter() - started:.1f}s); "
        f"{len(gaps)} queue-hours short of the moderators the SLA needs"
    )
    return 0


def _cmd_sampling_plan(args: argparse.Namespace) -> int:
    from qualitylab.detection.sampling import sampling_plan

    if args.budget is not None and args.budget <= 0:
        raise QualityLabError(
            f"--budget must be a whole number of weekly audits >= 1; got {args.budget}"
        )
    if args.drop is not None and not 0 < args.drop < 1:
        raise QualityLabError(f"--drop must be in (0, 1), e.g. 0.05; got {args.drop}")
    if args.weeks < 1:
        raise QualityLabError(f"--weeks must be >= 1; got {args.weeks}")
    ds = _open(args)
    ds.params.market(args.market)  # an unknown market fails before any query
    plan = sampling_plan(
        ds, args.market, weeks=args.weeks, budget=args.budget, drop=args.drop, by=args.by
    )
    _show(plan.plan.round(4))
    print(
        f"\n{args.market} {plan.period[0]}..{plan.period[1]}: weekly budget {plan.budget}, "
        f"drop {plan.drop:g} (80% power; scan search over {plan.period_days} days, "
        f"{plan.series} series)"
    )
    _show(plan.summary().round(5))
    if plan.still_blind:
        print(f"still blind ({len(plan.still_blind)}): {', '.join(plan.still_blind)}")
        reach = [s for s in plan.still_blind if s not in plan.unreachable]
        if reach:
            print(
                f"a weekly budget of {plan.budget_to_close} would make every reachable stratum detectable"
            )
        if plan.unreachable:
            print(
                f"no budget closes {len(plan.unreachable)} (fewer weekly decisions than the "
                f"audits needed): {', '.join(plan.unreachable)}"
            )
    if args.out:
        plan.plan.to_csv(args.out, index=False)
        print(f"wrote {len(plan.plan)} strata to {args.out}")
    return 0


def _cmd_readiness(args: argparse.Namespace) -> int:
    from qualitylab.operations.readiness import has_failures, load_launch_plan, readiness

    plan = load_launch_plan(args.launch)
    ds = _open(args)
    checklist = readiness(ds, plan)
    if args.out:
        checklist.to_csv(args.out, index=False)
        print(f"wrote {len(checklist)} checks to {args.out}")
    _show(checklist)
    if has_failures(checklist):
        failed = checklist.loc[checklist["status"] == "fail", "check"].tolist()
        print(f"NOT READY: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from qualitylab.runs.runner import run

    summary = run(
        args.data,
        markets=args.markets,
        notebooks=args.notebooks,
        as_of=args.as_of,
        out=args.out,
        jobs=args.jobs,
        timeout=args.timeout,
        parameters=args.parameters,
        notebooks_dir=args.notebooks_dir,
        portfolio=not args.no_portfolio,
        echo=lambda msg: print(msg, file=sys.stderr),
        wait=args.wait,
        notify=args.notify,
    )
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(summary.table().to_string(index=False))
    print(f"hub: {summary.out / 'index.html'}")
    if not summary.ok:
        names = ", ".join(f"{r.market}/{r.notebook}" for r in summary.failures)
        print(f"FAILED: {names}", file=sys.stderr)
        return 1
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from qualitylab.runs.schedule import airflow_dag, crontab_lines, load_schedule

    sched = load_schedule(args.parameters)
    if args.crontab:
        lines = crontab_lines(
            sched,
            data=args.data,
            out=args.out,
            home=args.home,
            host_tz=args.host_tz,
            cron_tz=args.cron_tz,
        )
        print("\n".join(lines))
    else:
        path = airflow_dag(sched, args.airflow, data=args.data, out=args.out, home=args.home)
        print(f"wrote {path}")
    return 0


def _cmd_due(args: argparse.Namespace) -> int:
    from datetime import datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from qualitylab.runs.cron import matches, parse

    parse(args.cron)  # a bad expression or zone is an error (exit 2), not "not due"
    try:
        tz = ZoneInfo(args.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise QualityLabError(f"unknown time zone {args.tz!r} (an IANA name)") from None
    if args.at is None:
        when = datetime.now(tz)
    else:
        try:
            when = datetime.fromisoformat(args.at)
        except ValueError:
            raise QualityLabError(f"--at {args.at!r} is not an ISO date and time") from None
        when = when.replace(tzinfo=tz) if when.tzinfo is None else when.astimezone(tz)
    if matches(args.cron, when, args.tz):
        return 0
    print(
        f"qualitylab due: {when:%Y-%m-%d %H:%M} {args.tz} does not match {args.cron!r}; "
        "not running (a guarded crontab line fires under each of the zone's UTC offsets; "
        "this is not the one in effect)",
        file=sys.stderr,
    )
    return 1


def _reports(path: str):  # noqa: ANN202
    from pathlib import Path

    folder = Path(path)
    if not folder.is_dir():
        raise QualityLabError(f"reports folder {path!r} does not exist")
    return folder


def _cmd_alerts(args: argparse.Namespace) -> int:
    from qualitylab.detection import alertstore as st

    folder = _reports(args.reports)
    if args.alerts_command == "label":
        line = st.label_alert(folder, args.alert_id, args.label, note=args.note, by=args.by)
        print(f"labelled {line.alert_id} {line.label} ({folder / st.LABELS_FILE})")
        return 0
    store, labels = st.read_store(folder), st.read_labels(folder)
    if args.alerts_command == "stats":
        precision = st.alert_precision(store, labels)
        print("Alert precision (share of labelled alerts confirmed, Wilson 95% interval):")
        shown = precision.assign(
            precision=precision["precision"].map("{:.0%}".format),
            interval=[
                f"{lo:.0%}-{hi:.0%}"
                for lo, hi in zip(precision.ci_low, precision.ci_high, strict=True)
            ],
        ).drop(columns=["ci_low", "ci_high"])
        _show(shown, "no labelled alerts yet (qualitylab alerts label ID --as ...)")
        counts = st.status_counts(store, labels)
        print("\nAlerts by status (latest state):")
        table = counts.pivot(index="market", columns="status", values="alerts")
        _show(table.reindex(columns=list(st.STATUSES)).reset_index(), "no alerts stored")
        return 0
    latest = st.latest_alerts(store, labels, market=args.market, status=args.status)
    if args.format == "csv":
        text = st.alerts_csv(latest)
    else:
        with pd.option_context("display.width", 250, "display.max_colwidth", 60):
            shown = latest[st.LIST_COLUMNS].astype({"label": "object"}).fillna("")
            text = (shown.to_string(index=False) if len(shown) else "no alerts") + "\n"
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {len(latest)} alerts to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from qualitylab.runs.replay import replay

    started = time.perf_counter()
    markets = "all" if args.markets.strip() == "all" else _csv_list(args.markets)
    summary = replay(
        args.data,
        start=args.from_,
        end=args.to,
        markets=markets,
        out=args.out,
        parameters=args.parameters,
        period=args.period,
        incidents=not args.no_incidents,
        assume_utc=args.assume_utc,
        progress=lambda msg: print(msg, file=sys.stderr),
    )
    days = summary["as_of"].nunique()
    print(
        f"replayed {days} days x {summary['market'].nunique()} markets into "
        f"{args.out}/alerts.parquet in {time.perf_counter() - started:.0f}s: "
        f"{int(summary['new'].sum())} new alerts, {int(summary['resolved'].sum())} resolved"
    )
    return 0


_COMMANDS = {
    "alerts": _cmd_alerts,
    "replay": _cmd_replay,
    "capacity": _cmd_capacity,
    "due": _cmd_due,
    "detect": _cmd_detect,
    "rca": _cmd_rca,
    "readiness": _cmd_readiness,
    "sampling-plan": _cmd_sampling_plan,
    "run": _cmd_run,
    "schedule": _cmd_schedule,
    "scorecard": _cmd_scorecard,
    "validate": _cmd_validate,
    "demo-data": _cmd_demo_data,
    "headline": _cmd_headline,
}


def _watch_command(name: str):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        from qualitylab.runs.watchcli import WATCH_COMMANDS

        return WATCH_COMMANDS[name](args)

    return run


_COMMANDS.update({name: _watch_command(name) for name in ("watch", "demo-stream")})


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``qualitylab`` console script."""
    args = build_parser().parse_args(argv)

    def one_line(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
        # a library warning is a note to the user, not a source line to debug
        print(f"qualitylab {args.command}: note: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = one_line
        try:
            return _COMMANDS[args.command](args)
        except QualityLabError as exc:
            print(f"qualitylab {args.command}: error: {exc}", file=sys.stderr)
            return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
