"""The watch loop and the ``watch`` / ``demo-stream`` commands.

:func:`watch` ticks a market every ``interval`` seconds
(:func:`qualitylab.watch.tick`), raises queue alerts over the ticks it keeps
(:func:`qualitylab.watch.queue_alerts`), stores them in the alert store
(``kind="queue"``) and posts the new ones to a webhook
(:func:`alert_digest`). In a terminal it
refreshes a ``rich`` table in place; otherwise it prints one line per tick.

The argparse wiring lives here (:func:`add_watch_parsers`,
:data:`WATCH_COMMANDS`) so that ``qualitylab.cli`` only hooks it in.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import pandas as pd

from qualitylab.errors import ParameterError, QualityLabError

if TYPE_CHECKING:
    from qualitylab.reporting.digest import Digest

__all__ = [
    "WATCH_COMMANDS",
    "add_watch_parsers",
    "alert_digest",
    "live_view",
    "render_line",
    "render_table",
    "watch",
]

#: Hours of ticks the loop keeps for the alert rules and the table.
KEEP_HOURS = 6.0
_SHOWN = [
    ("queue", "queue"),
    ("open_items", "open"),
    ("oldest_open_seconds", "oldest"),
    ("at_risk", "at risk"),
    ("arrivals_15m", "in 15m"),
    ("arrivals_60m", "in 60m"),
    ("arrivals_60m_last_week", "60m last wk"),
    ("forecast_60m", "forecast"),
    ("decisions_per_minute", "dec/min"),
    ("minutes_to_clear", "clear (min)"),
    ("staffed_agents", "staffed"),
    ("required_agents", "required"),
    ("esc_open", "esc open"),
    ("esc_past_sla", "esc late"),
]


def _fmt(col: str, v: Any, row: pd.Series) -> str:
    if col == "oldest_open_seconds":
        if pd.isna(v):
            return "-"
        return f"{v / 60:.0f}m" if v < 3600 else f"{v / 3600:.1f}h"
    if col == "forecast_60m":
        lo, hi = row.get("forecast_lower"), row.get("forecast_upper")
        return "-" if pd.isna(v) else f"{v:.0f} [{lo:.0f}-{hi:.0f}]"
    if col == "esc_open":
        return "/".join(str(int(row.get(f"esc_open_sev{i}", 0) or 0)) for i in range(1, 5))
    if col == "esc_past_sla":
        return "/".join(str(int(row.get(f"esc_past_sla_sev{i}", 0) or 0)) for i in range(1, 5))
    if isinstance(v, float):
        if pd.isna(v):
            return "-"
        if v == float("inf"):
            return "inf"
        return f"{v:.1f}"
    return str(v)


def render_table(frame: pd.DataFrame, events: pd.DataFrame | None = None, note: str = "") -> Any:
    """A ``rich`` table of one tick (and the alerts it raised), for a terminal."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = pd.Timestamp(frame["now"].iloc[0]) if len(frame) else None
    title = (
        f"qualitylab watch {frame['market'].iloc[0]} at {now:%Y-%m-%d %H:%M:%S} UTC"
        if now is not None
        else "qualitylab watch"
    )
    table = Table(title=title, title_justify="left")
    for _, head in _SHOWN:
        table.add_column(head, justify="left" if head == "queue" else "right")
    for _, row in frame.iterrows():
        style = "bold red" if row["at_risk"] > 0 and row["minutes_to_clear"] > 15 else None
        table.add_row(*[_fmt(c, row.get(c), row) for c, _ in _SHOWN], style=style)
    parts: list[Any] = [table]
    if events is not None and len(events):
        for e in events.itertuples(index=False):
            colour = "red" if e.event == "raised" else "green"
            parts.append(Text(f"{e.event}: [{e.severity}] {e.message}", style=colour))
    if note:
        parts.append(Text(note, style="yellow"))
    return Group(*parts)


def render_line(frame: pd.DataFrame) -> str:
    """One line per tick, for logs: the time, then each queue's key numbers.

    Examples
    --------
    >>> f = pd.DataFrame({"market": ["SG"], "queue": ["live_stream"],
    ...     "now": [pd.Timestamp("2026-12-06 10:00Z")], "open_items": [4], "at_risk": [1],
    ...     "oldest_open_seconds": [200.0], "arrivals_15m": [12], "arrivals_60m": [50],
    ...     "decided_15m": [10], "minutes_to_clear": [6.0]})
    >>> render_line(f)
    '2026-12-06T10:00:00Z SG live_stream open=4 oldest=200s risk=1 in15=12 in60=50 dec15=10 clear=6.0m'
    """
    if not len(frame):
        return ""
    now = pd.Timestamp(frame["now"].iloc[0])
    parts = [f"{now:%Y-%m-%dT%H:%M:%SZ}", str(frame["market"].iloc[0])]
    for r in frame.itertuples(index=False):
        oldest = "-" if pd.isna(r.oldest_open_seconds) else f"{r.oldest_open_seconds:.0f}s"
        parts.append(
            f"{r.queue} open={r.open_items} oldest={oldest} risk={r.at_risk} "
            f"in15={r.arrivals_15m} in60={r.arrivals_60m} dec15={r.decided_15m} "
            f"clear={r.minutes_to_clear:.1f}m"
        )
    return " ".join(parts[:2]) + " " + " | ".join(parts[2:])


def _write_csv(frame: pd.DataFrame, path: Path, *, append: bool = False) -> None:
    """Write (or append to) a CSV atomically: a temporary file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.copy()
    out["now"] = pd.to_datetime(out["now"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    text = out.to_csv(index=False, lineterminator="\n")
    if append and path.is_file() and path.stat().st_size:
        text = path.read_text() + text.split("\n", 1)[1]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _resolve_now(mode: str | None) -> Callable[[], pd.Timestamp | None]:
    if mode in (None, "", "data"):
        return lambda: None
    if mode == "wall":
        return lambda: pd.Timestamp.now(tz="UTC")
    try:
        fixed = pd.Timestamp(mode)
    except (TypeError, ValueError):
        raise ParameterError(
            f"--now must be data, wall or an ISO time; got {mode!r}", key="now"
        ) from None
    fixed = fixed.tz_localize("UTC") if fixed.tzinfo is None else fixed.tz_convert("UTC")
    return lambda: fixed


def alert_digest(events: pd.DataFrame, *, market: str, now: pd.Timestamp) -> Digest:
    """A :class:`qualitylab.digest.Digest` of a tick's raised queue alerts, for ``notify``.

    Examples
    --------
    >>> from qualitylab.operations.watch import ALERT_COLUMNS
    >>> d = alert_digest(pd.DataFrame(columns=ALERT_COLUMNS), market="SG",
    ...                  now=pd.Timestamp("2026-12-06 10:00Z"))
    >>> d.empty, d.payload["kind"]
    (True, 'queue')
    """
    from qualitylab.reporting.digest import Digest

    raised = events[events["event"] == "raised"] if len(events) else events
    lines = [f"Queue watch {market} at {pd.Timestamp(now):%Y-%m-%d %H:%M} UTC"]
    alerts = []
    for e in raised.itertuples(index=False):
        lines.append(f"- [{e.severity}] {e.cause}: {e.message}")
        alerts.append(
            {
                "market": e.market,
                "queue": e.queue,
                "cause": e.cause,
                "metric": e.metric,
                "now": pd.Timestamp(e.now).isoformat(),
                "direction": e.direction,
                "severity": e.severity,
                "observed": None if pd.isna(e.observed) else float(e.observed),
                "expected": None if pd.isna(e.expected) else float(e.expected),
                "message": e.message,
            }
        )
    md = "\n".join(lines) + "\n"
    page = "<pre>" + html.escape(md) + "</pre>"
    payload = {
        "kind": "queue",
        "as_of": pd.Timestamp(now).isoformat(),
        "market": market,
        "new_alerts": alerts,
        "turned_red": [],
        "text": md,
    }
    return Digest(md, page, payload)


def watch(
    source: str | os.PathLike[str],
    market: str,
    *,
    queues: Sequence[str] | None = None,
    interval: float = 60.0,
    once: bool = False,
    now: str | None = None,
    out: str | os.PathLike[str] | None = None,
    reports: str | os.PathLike[str] | None = None,
    notify_url: str | None = None,
    parameters: Any = None,
    at_risk_share: float = 0.5,
    max_ticks: int | None = None,
    stream: TextIO | None = None,
    errors: TextIO | None = None,
    terminal: bool | None = None,
    sleep: Callable[[float], None] = time.sleep,
    alert_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Watch a market's queues: a tick every ``interval`` seconds until Ctrl-C.

    Parameters
    ----------
    source : str or path
        ``--data``: re-opened at every tick, so new Parquet parts are read.
    market : str
    queues : sequence of str, optional
    interval : float, default 60
        Seconds between ticks (> 0).
    once : bool, default False
        One tick, printed (and written to ``out``), then return.
    now : {"data", "wall"} or ISO time, optional
        "now" of each tick: the last ``created_at`` (default), the wall clock
        or a fixed time.
    out : str or path, optional
        A ``.csv`` file: the latest tick, one row per queue. A folder:
        ``tick.csv`` (the latest tick), ``ticks.csv`` (every tick, appended)
        and the queue alerts in its alert store (``alerts.parquet``).
    reports : str or path, optional
        The alert store's folder (the daily loop's reports folder); default
        ``out`` when it is a folder, else alerts are not stored.
    notify_url : str, optional
        Post each tick's new alerts to this webhook
        (:func:`qualitylab.digest.notify`); a failure is a warning.
    parameters : optional
        Parameters or their folder, as in :func:`qualitylab.open_dataset`.
    at_risk_share : float, default 0.5
    max_ticks : int, optional
        Stop after this many ticks (tests, scripted runs).
    stream, errors : text files, optional
        Where the table/lines and the warnings go (stdout, stderr).
    terminal : bool, optional
        Force the table (True) or the line-per-tick output (False); by default
        the table when ``stream`` is a terminal.
    sleep : callable
        Injected for tests.
    alert_options : dict, optional
        Keyword arguments of :func:`qualitylab.watch.queue_alerts`.

    Returns
    -------
    pandas.DataFrame
        The last successful tick.

    Raises
    ------
    QualityLabError
        When the first tick fails (a missing source, a market without data,
        an unknown queue) or ``interval <= 0``. Later failures (a source that
        disappears mid-watch) are warnings: the watch keeps the last tick and
        retries at the next interval.
    """
    from qualitylab.data.sources import open_dataset
    from qualitylab.operations.watch import (
        default_now,
        queue_alerts,
        record_alerts,
        tick,
        watch_plan,
    )
    from qualitylab.reporting.digest import notify

    try:
        interval = float(interval)
    except (TypeError, ValueError):
        interval = float("nan")
    if not interval > 0:
        raise ParameterError(f"--interval must be > 0 seconds; got {interval:g}", key="interval")
    stream = stream or sys.stdout
    errors = errors or sys.stderr
    when = _resolve_now(now)
    out_path = Path(out) if out is not None else None
    csv_file = out_path if out_path is not None and out_path.suffix.lower() == ".csv" else None
    folder = out_path if out_path is not None and csv_file is None else None
    store = Path(reports) if reports is not None else folder
    table_mode = (
        terminal if terminal is not None else bool(getattr(stream, "isatty", lambda: False)())
    )

    history: list[pd.DataFrame] = []
    last: pd.DataFrame | None = None
    plan = None
    note = ""
    live = None
    ticks = 0

    def warn(msg: str) -> None:
        print(f"qualitylab watch: warning: {msg}", file=errors, flush=True)

    try:
        while True:
            started = time.monotonic()
            try:
                ds = open_dataset(source, parameters=parameters)
                tz = ds.params.market(market).timezone if market in ds.params.codes else "UTC"
                cur = when()
                cur = default_now(ds, market) if cur is None else cur
                if plan is None or plan.day != cur.tz_convert(tz).date():
                    plan = watch_plan(ds, market, cur)
                    # what the tick cannot show today, one line each (once a day)
                    missing = list(plan.notes)
                    if not ds.has("escalations"):
                        missing.append("no escalation columns: the dataset has no escalations")
                    for line in missing:
                        print(f"qualitylab watch: note: {line}", file=errors, flush=True)
                frame = tick(
                    ds, market, now=cur, queues=queues, at_risk_share=at_risk_share, plan=plan
                )
                note = ""
            except (QualityLabError, OSError, Exception) as exc:  # noqa: BLE001
                if last is None:
                    if isinstance(exc, QualityLabError):
                        raise
                    raise QualityLabError(f"{source}: {type(exc).__name__}: {exc}") from None
                note = (
                    f"tick failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                    f"keeping the tick of {pd.Timestamp(last['now'].iloc[0]):%H:%M:%S}, "
                    f"retrying in {interval:g}s"
                )
                warn(note)
                frame = None
            events = pd.DataFrame()
            if frame is not None:
                ticks += 1
                if history and pd.Timestamp(history[-1]["now"].iloc[0]) == cur:
                    history[-1] = frame  # no new data: same instant, replace
                else:
                    history.append(frame)
                keep_from = cur - pd.Timedelta(hours=KEEP_HOURS)
                history = [h for h in history if pd.Timestamp(h["now"].iloc[0]) >= keep_from]
                all_events = queue_alerts(
                    pd.concat(history, ignore_index=True), **(alert_options or {})
                )
                if len(all_events):
                    events = all_events[pd.to_datetime(all_events["now"], utc=True) == cur]
                last = frame
                if store is not None and len(events):
                    record_alerts(store, events, timezone=tz)
                raised = events[events["event"] == "raised"] if len(events) else events
                if notify_url and len(raised):
                    problem = notify(notify_url, alert_digest(raised, market=market, now=cur))
                    if problem:
                        warn(problem)
                if csv_file is not None:
                    _write_csv(frame, csv_file)
                if folder is not None:
                    _write_csv(frame, folder / "tick.csv")
                    _write_csv(frame, folder / "ticks.csv", append=True)
            shown = last
            if once:
                _print_once(shown, events, stream, table_mode)
                return shown
            if table_mode:
                if live is None:
                    from rich.console import Console
                    from rich.live import Live

                    live = Live(
                        render_table(shown, events, note),
                        console=Console(file=stream),
                        auto_refresh=False,
                    )
                    live.start()
                else:
                    live.update(render_table(shown, events, note), refresh=True)
            elif frame is not None:
                print(render_line(frame), file=stream, flush=True)
                for e in events.itertuples(index=False):
                    print(f"{e.event}: [{e.severity}] {e.message}", file=errors, flush=True)
            if max_ticks is not None and ticks >= max_ticks:
                return last
            sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        print("qualitylab watch: stopped", file=errors, flush=True)
        return last if last is not None else pd.DataFrame()
    finally:
        if live is not None:
            live.stop()


def _print_once(frame: pd.DataFrame, events: pd.DataFrame, stream: TextIO, table: bool) -> None:
    if table:
        from rich.console import Console

        Console(file=stream).print(render_table(frame, events))
        return
    with pd.option_context("display.width", 250, "display.max_columns", 40):
        print(frame.to_string(index=False), file=stream, flush=True)
    for e in events.itertuples(index=False) if len(events) else ():
        print(f"{e.event}: [{e.severity}] {e.message}", file=stream, flush=True)


def live_view(
    source: str | os.PathLike[str],
    market: str,
    *,
    interval: float = 60.0,
    queues: Sequence[str] | None = None,
    parameters: Any = None,
    hours: float = 3.0,
    step_minutes: float = 15.0,
    at_risk_share: float = 0.5,
) -> Any:
    """A live ipywidgets view of the watch for JupyterLab: table and chart, refreshed.

    Every ``interval`` seconds a background thread re-opens ``source``, ticks
    at its last ``created_at`` and redraws the tick table
    (:func:`qualitylab.report.table`) and the backlog and arrivals chart of
    the last ``hours`` (:func:`qualitylab.watch.tick_chart`); the Stop button
    ends the refresh. A failed refresh keeps the last view and says why.

    Returns
    -------
    ipywidgets.VBox
    """
    import threading

    import ipywidgets as widgets

    from qualitylab.data.sources import open_dataset
    from qualitylab.operations.watch import default_now, recent_ticks, tick, tick_chart, watch_plan
    from qualitylab.reporting import report

    if not float(interval) > 0:
        raise ParameterError(f"interval must be > 0 seconds; got {interval!r}", key="interval")
    status = widgets.HTML()
    stop = widgets.ToggleButton(value=False, description="Stop", icon="stop")
    shown = widgets.Output()
    state: dict[str, Any] = {"history": None, "plan": None}

    def refresh() -> None:
        ds = open_dataset(source, parameters=parameters)
        now = default_now(ds, market)
        tz = ds.params.market(market).timezone
        plan = state["plan"]
        if plan is None or plan.day != now.tz_convert(tz).date():
            plan = state["plan"] = watch_plan(ds, market, now)
        opts = {"queues": queues, "at_risk_share": at_risk_share}
        if state["history"] is None:
            hist = recent_ticks(ds, market, now=now, hours=hours, step_minutes=step_minutes,
                                plan=plan, **opts)  # fmt: skip
        else:
            hist = pd.concat([state["history"], tick(ds, market, now=now, plan=plan, **opts)])
            hist = hist.drop_duplicates(["queue", "now"], keep="last")
            hist = hist[hist["now"] >= now - pd.Timedelta(hours=hours)]
        state["history"] = hist.reset_index(drop=True)
        frame = hist[hist["now"] == now]
        shown.clear_output(wait=True)
        shown.append_display_data(report.table(frame, metric_column=None))
        shown.append_display_data(tick_chart(hist))
        status.value = report.escape(f"Last tick {now:%Y-%m-%d %H:%M:%S} UTC; every {interval:g} s")

    def loop() -> None:
        while not stop.value:
            time.sleep(float(interval))
            if stop.value:
                break
            try:
                refresh()
            except Exception as exc:  # noqa: BLE001 - keep the last view, say why
                status.value = report.escape(
                    f"Refresh failed ({type(exc).__name__}: {exc}); keeping the last tick."
                )
        status.value = report.escape("Stopped.")

    refresh()
    threading.Thread(target=loop, daemon=True, name=f"qualitylab-watch-{market}").start()
    return widgets.VBox([widgets.HBox([stop, status]), shown])


# --------------------------------------------------------------------------- #
# the commands
# --------------------------------------------------------------------------- #
def _queues_arg(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_watch_parsers(sub: Any) -> None:
    """Add the ``watch`` and ``demo-stream`` subcommands to ``qualitylab``'s subparsers."""
    p = sub.add_parser(
        "watch",
        help="live queue watch: backlog, items at risk and capacity, tick by tick",
        description="Each interval, compute one tick per queue of the market (open items, "
        "oldest age, items at risk, arrivals in 15/60 min vs last week and the forecast, "
        "decisions per minute, time to clear, staffed vs required, escalations), raise queue "
        "alerts and store them in the alert store (kind=queue). Ctrl-C stops.",
    )
    p.add_argument("--data", required=True, help="folder, DuckDB file or connection URL")
    p.add_argument("--market", required=True)
    p.add_argument("--queues", type=_queues_arg, default=None, help="e.g. live_stream,live_comment")
    p.add_argument(
        "--interval", type=float, default=60.0, help="seconds between ticks (default 60)"
    )
    p.add_argument("--once", action="store_true", help="one tick, printed (and written with --out)")
    p.add_argument(
        "--now",
        default="data",
        help="data (the last created_at, default), wall (the clock) or an ISO time",
    )
    p.add_argument(
        "--at-risk-share", type=float, default=0.5, help="share of the SLA (default 0.5)"
    )
    p.add_argument(
        "--out",
        help="a .csv file (the latest tick) or a folder (tick.csv, ticks.csv and the alert store)",
    )
    p.add_argument("--reports", metavar="DIR", help="alert store folder (default: --out folder)")
    p.add_argument("--notify", metavar="URL", help="post new queue alerts to this webhook")

    p = sub.add_parser(
        "demo-stream",
        help="replay demo decisions as if happening now, a Parquet part every few seconds",
        description="Writes DIR/decisions/part-*.parquet (temporary name, then rename) for "
        "`qualitylab watch --data DIR` to read while they are written.",
    )
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--market", required=True)
    p.add_argument("--speed", type=float, default=60.0, help="simulated seconds per second")
    p.add_argument("--surge", metavar="HH:MM", help="market-local time of a x3 surge (30 min)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between parts (default 5)")
    p.add_argument("--scale", choices=["small", "demo", "large"], default="large")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--duration", type=float, default=None, help="simulated seconds to replay")


def _cmd_watch(args: argparse.Namespace) -> int:
    watch(
        args.data,
        args.market,
        queues=args.queues,
        interval=args.interval,
        once=args.once,
        now=args.now,
        out=args.out,
        reports=args.reports,
        notify_url=args.notify,
        parameters=args.parameters,
        at_risk_share=args.at_risk_share,
    )
    return 0


def _cmd_demo_stream(args: argparse.Namespace) -> int:
    from qualitylab.demodata.stream import demo_stream, main_print

    try:
        demo_stream(
            args.out,
            args.market,
            speed=args.speed,
            surge=args.surge,
            every=args.every,
            scale=args.scale,
            seed=args.seed,
            duration=args.duration,
            progress=main_print,
        )
    except KeyboardInterrupt:
        print("qualitylab demo-stream: stopped", file=sys.stderr)
    return 0


#: Handlers of the subcommands :func:`add_watch_parsers` adds.
WATCH_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "watch": _cmd_watch,
    "demo-stream": _cmd_demo_stream,
}
