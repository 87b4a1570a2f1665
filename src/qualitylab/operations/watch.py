"""Live queue watch: backlog, items at risk and capacity, minute by minute.

Everything else in qualitylab is daily. This module computes the intraday
view of each queue of a market at an instant ``now`` (a *tick*), raises queue
alerts over consecutive ticks, and stores them in the daily loop's alert store
(:mod:`qualitylab.alertstore`) with ``kind="queue"``.

Definitions (issue #19), per queue of the market:

* an item is *open* at ``now`` when ``created_at <= now`` and ``decided_at``
  is empty or later than ``now``; ``oldest_open_seconds`` is ``now`` minus the
  earliest ``created_at`` of the open items; an open item is *at risk* when
  it has been open longer than ``at_risk_share`` x the queue's SLA;
* ``arrivals_60m`` counts ``created_at`` in ``(now - 60 min, now]`` and
  ``arrivals_15m`` the same over 15 minutes;
* ``decided_15m`` counts ``decided_at`` in ``(now - 15 min, now]``.

Cost: a tick reads only recent data
    The per-queue counts are one ibis aggregate over the decisions whose
    ``created_at`` lies in ``(now - lookback, now]`` or in the hour a week
    earlier: range predicates on ``created_at`` that the engine uses to skip
    Parquet row groups and partitions (DuckDB min/max statistics, Spark
    partition and predicate pushdown). The *bounded lookback* is the price:
    an item created before ``now - lookback_hours`` is not read, so if it is
    still open it is not counted in ``open_items``/``at_risk``, and a decision
    at time ``d`` of such an item is not counted in ``decided_15m``. The default
    (48 hours) is longer than every SLA of the default parameters except
    ``appeal`` (24 h), whose slowest items can outlast it; raise
    ``lookback_hours`` when that matters. The forecast and the staffing plan
    (:func:`watch_plan`) read more history, once per market-local day.

Queue alerts (:func:`queue_alerts`) are a pure function of the ticks so far;
:func:`record_alerts` stores them (``kind="queue"``) and
:func:`qualitylab.watchcli.alert_digest` turns them into a payload for
:func:`qualitylab.digest.notify`.
"""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.scope import resolve_period

__all__ = [
    "ALERT_CAUSES",
    "ALERT_COLUMNS",
    "TICK_COLUMNS",
    "WatchPlan",
    "check_queues",
    "default_now",
    "queue_alerts",
    "recent_ticks",
    "record_alerts",
    "tick",
    "tick_chart",
    "watch_plan",
]

#: Columns of :func:`tick`, in order (the first nine are the issue's CSV contract).
TICK_COLUMNS = [
    "market", "queue", "now", "open_items", "oldest_open_seconds", "at_risk", "arrivals_15m",
    "arrivals_60m", "decided_15m", "arrivals_60m_last_week", "forecast_60m", "forecast_lower",
    "forecast_upper", "decisions_per_minute", "minutes_to_clear", "human_arrivals_60m",
    "staffed_agents", "required_agents", "capacity_gap", "sla_seconds", "esc_open_sev1",
    "esc_open_sev2", "esc_open_sev3", "esc_open_sev4", "esc_past_sla_sev1", "esc_past_sla_sev2",
    "esc_past_sla_sev3", "esc_past_sla_sev4",
]  # fmt: skip
#: Causes of a queue alert, and the metric name each is stored under.
ALERT_CAUSES = {
    "backlog": "backlog",
    "at_risk": "items_at_risk",
    "arrivals": "volume",
    "staffing": "capacity_gap",
    "escalation_sla": "escalation_sla",
}
#: Columns of :func:`queue_alerts`.
ALERT_COLUMNS = [
    "market", "queue", "cause", "metric", "now", "event", "direction", "severity", "observed",
    "expected", "message",
]  # fmt: skip
SEVERITIES = ("sev1", "sev2", "sev3", "sev4")
HUMAN_ROUTINGS = ("human", "ai_assisted")
#: Hours of decisions a tick reads by default (see the module docstring).
DEFAULT_LOOKBACK_HOURS = 48.0
#: Days of escalations a tick reads (an escalation open longer is not counted).
ESCALATION_LOOKBACK_DAYS = 30

MSG_NO_DATA = "market {market!r} has no decisions in {source}"
MSG_UNKNOWN_QUEUE = "unknown queue {queue!r} for market {market}: known queues are {known}"
MSG_SHARE = "at_risk_share must be in (0, 1]; got {value!r}"
MSG_LOOKBACK = "lookback_hours must be > 1; got {value!r}"


# --------------------------------------------------------------------------- #
# validation and small helpers
# --------------------------------------------------------------------------- #
def _utc(value: datetime | str | pd.Timestamp, what: str = "now") -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} is not a time: {value!r}", key=what) from None
    if pd.isna(ts):
        raise ParameterError(f"{what} is not a time: {value!r}", key=what)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _lit(ts: pd.Timestamp) -> ibis.expr.types.TimestampScalar:
    return ibis.literal(ts.to_pydatetime(), type="timestamp('UTC')")


def _market_decisions(ds: Dataset, market: str) -> ibis.expr.types.Table:
    if market not in ds.params.codes:
        raise ParameterError(
            f"unknown market {market!r}: no parameters/markets/{market}.yaml "
            f"(known: {', '.join(sorted(ds.params.codes))})",
            key="market",
        )
    dec = ds.table("decisions")
    return dec.filter(dec.market == market)


def default_now(ds: Dataset, market: str, *, day: date | None = None) -> pd.Timestamp:
    """The watch's default "now": the last ``created_at`` of the market's decisions.

    With ``day`` (a market-local date), the last ``created_at`` up to the end
    of that day: a report rendered for a past date watches that date's end.

    Raises
    ------
    QualityLabError
        When the market has no decisions (:data:`MSG_NO_DATA`).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=14, seed=1)
    >>> default_now(open_dataset(folder), "SG").tzname()
    'UTC'
    """
    dec = _market_decisions(ds, market)
    if day is not None:
        tz = ds.params.market(market).timezone
        end = pd.Timestamp(day).tz_localize(tz) + pd.Timedelta(days=1)
        dec = dec.filter(dec.created_at < _lit(end.tz_convert("UTC")))
    last = dec.created_at.max().to_pyarrow().as_py()
    if last is None:
        raise QualityLabError(MSG_NO_DATA.format(market=market, source=ds.source))
    return _utc(last)


def check_queues(ds: Dataset, market: str, queues: Sequence[str] | None) -> list[str]:
    """``queues`` checked against the queues the market has decisions in (all of them if None).

    :func:`tick` calls it only for a requested queue with no decision in its
    window, so a tick does not scan the market's history for its queues.

    Raises
    ------
    ParameterError
        For a queue the market has no decisions in (:data:`MSG_UNKNOWN_QUEUE`).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=14, seed=1)
    >>> ds = open_dataset(folder)
    >>> check_queues(ds, "SG", None)
    ['appeal', 'live_comment', 'live_report', 'live_stream']
    >>> check_queues(ds, "SG", ["live_chat"])
    Traceback (most recent call last):
    ...
    qualitylab.errors.ParameterError: unknown queue 'live_chat' for market SG: known queues are appeal, live_comment, live_report, live_stream
    """
    dec = _market_decisions(ds, market)
    known = sorted(dec.select("queue").distinct().to_pandas()["queue"].dropna().astype(str))
    if queues is None:
        return known
    wanted = list(dict.fromkeys(q.strip() for q in queues if q and q.strip()))
    missing = [q for q in wanted if q not in known]
    if missing:
        raise ParameterError(
            MSG_UNKNOWN_QUEUE.format(
                queue=missing[0], market=market, known=", ".join(known) or "none"
            ),
            key="queues",
        )
    return wanted


# --------------------------------------------------------------------------- #
# the plan: forecast and staffing, once per market-local day
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class WatchPlan:
    """What a tick compares against, computed once per market-local day.

    Attributes
    ----------
    market : str
    day : datetime.date
        The market-local date the plan was made for (the forecast's first day).
    forecast : pandas.DataFrame
        ``queue, date, hour, arrivals, lower, upper``: the arrivals forecast
        (:func:`qualitylab.forecast.forecast_arrivals`, history up to the day
        before ``day``) for ``day`` and the next day, market-local hours.
    staffed : pandas.DataFrame
        ``queue, date, hour, staffed_agents, aht_seconds`` from
        :func:`qualitylab.capacity.capacity_table` (scheduled moderators in the
        hour).
    shrinkage : dict
        ``1 - productive/scheduled`` hours per queue over the plan's history.
    notes : tuple of str
        Why a part is missing (too little history, no staffing table, ...).
    """

    market: str
    day: date
    forecast: pd.DataFrame
    staffed: pd.DataFrame
    shrinkage: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _local(now: pd.Timestamp, tz: str) -> pd.Timestamp:
    return now.tz_convert(tz)


def watch_plan(
    ds: Dataset,
    market: str,
    now: datetime | str | pd.Timestamp,
    *,
    interval: float = 0.95,
    history_days: int = 28,
) -> WatchPlan:
    """The forecast and staffing a tick compares against, for ``now``'s local day.

    Parameters
    ----------
    ds : Dataset
    market : str
    now : datetime, ISO str or Timestamp
        UTC (naive values are taken as UTC).
    interval : float, default 0.95
        Coverage of the forecast interval the arrivals alert uses.
    history_days : int, default 28
        Days of history the forecast and the capacity table learn from (fewer
        when the data is shorter; at least 14, else the forecast is left out
        with a note).

    Returns
    -------
    WatchPlan
        Empty ``forecast``/``staffed`` frames (and a note) for the parts the
        data cannot support: the tick then shows NaN there.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=21, seed=1)
    >>> ds = open_dataset(folder)
    >>> plan = watch_plan(ds, "SG", default_now(ds, "SG"))
    >>> sorted(plan.forecast["queue"].unique())
    ['appeal', 'live_comment', 'live_report', 'live_stream']
    """
    from qualitylab.operations.capacity import (
        MSG_AHT_ESTIMATED,
        MSG_NO_SLA,
        capacity_table,
    )
    from qualitylab.operations.forecast import forecast_arrivals

    now = _utc(now)
    tz = ds.params.market(market).timezone
    day = _local(now, tz).date()
    end = day - timedelta(days=1)
    _market_decisions(ds, market)  # an unknown market is an error
    try:  # from the first local day with data (the slice remembers its range)
        have = (end - resolve_period(ds, market=market, start=None, end=None).start).days + 1
    except QualityLabError:  # no decisions
        have = 0
    hist = max(14, min(history_days, have))
    notes: list[str] = []
    fcols = ["queue", "date", "hour", "arrivals", "lower", "upper"]
    forecast = pd.DataFrame({c: pd.Series(dtype="float64") for c in fcols})
    staffed = pd.DataFrame(
        {c: pd.Series(dtype="float64") for c in ["queue", "date", "hour", "staffed_agents"]}
    )
    shrinkage: dict[str, float] = {}
    if have < 14:
        notes.append(f"no forecast or staffing plan: {have} day(s) of history before {day}")
        return WatchPlan(market, day, forecast, staffed, shrinkage, tuple(notes))
    with warnings.catch_warnings():
        # capacity_table's notes to a planner (handle times estimated from the data,
        # queues without an SLA) would repeat every day of a watch; the plan is shown
        # as it is. Each filter matches one message, up to its first field.
        for msg in (MSG_AHT_ESTIMATED, MSG_NO_SLA):
            warnings.filterwarnings(
                "ignore", message=re.escape(msg.split("{")[0]), category=UserWarning
            )
        try:
            fc = forecast_arrivals(
                ds, market, horizon_days=2, history_days=hist, interval=interval, end=end
            )
            forecast = fc.loc[fc["is_forecast"], fcols].reset_index(drop=True)
        except QualityLabError as exc:
            notes.append(f"no forecast: {exc}")
        if ds.has("staffing"):
            try:
                cap = capacity_table(ds, market, horizon_days=2, history_days=hist, end=end)
                cap = cap[cap["is_forecast"]]
                staffed = cap[["queue", "date", "hour", "staffed_agents", "aht_seconds"]]
                staffed = staffed.reset_index(drop=True)
                shrinkage = _shrinkage(ds, market, end, hist)
            except QualityLabError as exc:
                notes.append(f"no staffing plan: {exc}")
        else:
            notes.append("no staffing plan: the dataset has no staffing table")
    return WatchPlan(market, day, forecast, staffed, shrinkage, tuple(notes))


def _shrinkage(ds: Dataset, market: str, end: date, days: int) -> dict[str, float]:
    st = ds.table("staffing")
    st = st.filter((st.market == market) & st.date.between(end - timedelta(days=days - 1), end))
    agg = (
        st.group_by("queue")
        .aggregate(s=st.scheduled_hours.sum(), p=st.productive_hours.sum())
        .to_pandas()
    )
    out = {}
    for r in agg.itertuples(index=False):
        if r.s and r.s > 0:
            out[str(r.queue)] = float(min(max(1.0 - r.p / r.s, 0.0), 0.95))
    return out


# --------------------------------------------------------------------------- #
# the tick
# --------------------------------------------------------------------------- #
def _bounds(
    now: pd.Timestamp, slas: Mapping[str, float], at_risk_share: float, lookback_hours: float
) -> dict[str, pd.Timestamp]:
    """The instants a tick at ``now`` compares ``created_at`` with (``cutN``: N-th SLA)."""
    wk_hi = now - pd.Timedelta(days=7)
    out = {"now": now, "lo": now - pd.Timedelta(hours=lookback_hours)}
    out.update(wk_lo=wk_hi - pd.Timedelta(minutes=60), wk_hi=wk_hi)
    out.update(m15=now - pd.Timedelta(minutes=15), m60=now - pd.Timedelta(minutes=60))
    for i, q in enumerate(slas):
        out[f"cut{i}"] = now - pd.Timedelta(seconds=at_risk_share * float(slas[q]))
    return out


def _window(created: ir.TimestampValue, b: Mapping[str, Any]) -> ir.BooleanValue:
    """``created_at`` in the lookback window or in the hour a week earlier."""
    recent = (created > b["lo"]) & (created <= b["now"])
    return recent | ((created > b["wk_lo"]) & (created <= b["wk_hi"]))


def _at_instants(
    t: ir.Table, rows: list[dict[str, pd.Timestamp]], keep: Any
) -> tuple[ir.Table, dict[str, Any], list[str]]:
    """``t``'s rows paired with each instant (``_k``) they ``keep``, its bounds, ``["_k"]``;
    one instant: ``t`` filtered with its bounds as literals (the query a tick always ran)."""
    if len(rows) == 1:
        b = {c: _lit(v) for c, v in rows[0].items()}
        return t.filter(keep(t, b)), b, []
    frame = pd.DataFrame({"_k": np.arange(len(rows), dtype="int64")})
    for c in rows[0]:
        frame[f"_{c}"] = [r[c].to_pydatetime() for r in rows]
    schema = ibis.schema({c: "int64" if c == "_k" else "timestamp('UTC')" for c in frame})
    j = t.cross_join(ibis.memtable(frame, schema=schema))
    j = j.filter(keep(j, {c: j[f"_{c}"] for c in rows[0]}))
    return j, {c: j[f"_{c}"] for c in rows[0]}, ["_k"]


def _counts(
    ds: Dataset,
    market: str,
    instants: Sequence[pd.Timestamp],
    queues: Sequence[str] | None,
    slas: Mapping[str, float],
    at_risk_share: float,
    lookback_hours: float,
) -> pd.DataFrame:
    """The per-queue counts at each instant (``_k``: its position): one aggregate.

    The rows of all the windows are read once (range predicates on ``created_at``
    spanning them), each paired with the instants whose window holds it.
    """
    dec = _market_decisions(ds, market)
    rows = [_bounds(now, slas, at_risk_share, lookback_hours) for now in instants]
    span = {k: _lit(min(r[k] for r in rows)) for k in ("lo", "wk_lo")}
    span.update({k: _lit(max(r[k] for r in rows)) for k in ("now", "wk_hi")})

    def keep(t: ir.Table, b: Mapping[str, Any]) -> ir.BooleanValue:
        window = _window(t.created_at, b)
        return window if queues is None else window & t.queue.isin(list(queues))

    t, b, key = _at_instants(dec if len(rows) == 1 else dec.filter(keep(dec, span)), rows, keep)
    recent = t.created_at > b["lo"]
    is_open = recent & (t.decided_at.isnull() | (t.decided_at > b["now"]))
    cutoffs = [(t.queue == q, b[f"cut{i}"]) for i, q in enumerate(slas)]
    risky = (
        is_open & (t.created_at < ibis.cases(*cutoffs, else_=None)).fill_null(False)
        if cutoffs
        else ibis.literal(False)
    )
    in15 = (t.created_at > b["m15"]) & (t.created_at <= b["now"])
    in60 = (t.created_at > b["m60"]) & (t.created_at <= b["now"])
    dec15 = t.decided_at.notnull() & (t.decided_at > b["m15"]) & (t.decided_at <= b["now"])
    human = t.routing.isin(list(HUMAN_ROUTINGS))

    def n(cond: ir.BooleanValue) -> ir.IntegerScalar:
        return cond.cast("int64").sum()

    agg = t.group_by([*key, "queue"]).aggregate(
        open_items=n(is_open),
        oldest_open=t.created_at.min(where=is_open),
        at_risk=n(risky),
        arrivals_15m=n(in15),
        arrivals_60m=n(in60),
        decided_15m=n(dec15 & recent),
        arrivals_60m_last_week=n(~recent),
        human_arrivals_60m=n(in60 & human),
    )
    return agg.to_pandas() if key else agg.to_pandas().assign(_k=0)


def _escalations(
    ds: Dataset, market: str, instants: Sequence[pd.Timestamp], queues: list[str]
) -> pd.DataFrame:
    """``_k, queue, severity, open, past``: escalations open at each instant, one aggregate."""
    slas = dict(ds.params.market(market).escalation_sla_seconds)
    gaps = {f"late{i}": pd.Timedelta(seconds=float(slas[s])) for i, s in enumerate(slas)}
    gaps = {"start": pd.Timedelta(days=ESCALATION_LOOKBACK_DAYS), **gaps}
    rows = [{"now": t, **{k: t - d for k, d in gaps.items()}} for t in instants]
    esc = ds.table("escalations")

    def is_open(e: ir.Table, b: Mapping[str, Any]) -> ir.BooleanValue:
        live = (e.raised_at > b["start"]) & (e.raised_at <= b["now"])
        unresolved = e.resolved_at.isnull() | (e.resolved_at > b["now"])
        return (e.market == market) & e.queue.isin(queues) & live & unresolved

    span = {"start": min(r["start"] for r in rows), "now": max(r["now"] for r in rows)}
    live = (esc.raised_at > _lit(span["start"])) & (esc.raised_at <= _lit(span["now"]))
    pre = esc if len(rows) == 1 else esc.filter((esc.market == market) & live)
    j, b, key = _at_instants(pre, rows, is_open)
    late = [(j.severity == s, b[f"late{i}"]) for i, s in enumerate(slas)]
    past = (j.raised_at < ibis.cases(*late, else_=None)).fill_null(False) if late else False
    agg = j.group_by([*key, "queue", "severity"]).aggregate(
        open=j.count(), past=ibis.ifelse(past, 1, 0).sum()
    )
    return agg.to_pandas() if key else agg.to_pandas().assign(_k=0)


def _check_tick_options(at_risk_share: float, lookback_hours: float) -> None:
    try:
        share_ok = 0.0 < float(at_risk_share) <= 1.0
    except (TypeError, ValueError):
        share_ok = False
    if not share_ok:
        raise ParameterError(MSG_SHARE.format(value=at_risk_share), key="at_risk_share")
    if not isinstance(lookback_hours, int | float) or not lookback_hours > 1:
        raise ParameterError(MSG_LOOKBACK.format(value=lookback_hours), key="lookback_hours")


def tick(
    ds: Dataset,
    market: str,
    *,
    now: datetime | str | pd.Timestamp | None = None,
    queues: Sequence[str] | None = None,
    at_risk_share: float = 0.5,
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS,
    plan: WatchPlan | None = None,
    service_level_target: float | None = None,
) -> pd.DataFrame:
    """One tick of the live queue watch: each queue of a market at ``now``.

    Parameters
    ----------
    ds : Dataset
        Needs ``decisions``; ``staffing`` and ``escalations`` when present.
    market : str
    now : datetime, ISO str or Timestamp, optional
        The instant (UTC; naive values are UTC). Default: the last
        ``created_at`` of the market's decisions (:func:`default_now`).
    queues : sequence of str, optional
        Default: every queue with decisions created in the lookback window or
        the hour a week earlier. A requested queue the market has no
        decision in is an error (:func:`check_queues`).
    at_risk_share : float, default 0.5
        An open item is at risk once open longer than this share of its
        queue's SLA (``sla_seconds`` in the market's parameters).
    lookback_hours : float, default 48
        Decisions created earlier than ``now - lookback_hours`` are not read
        (module docstring: the bounded lookback).
    plan : WatchPlan, optional
        The day's forecast and staffing (:func:`watch_plan`); computed when
        omitted. A watch loop computes it once per market-local day.
    service_level_target : float, optional
        For the Erlang C requirement; the market's ``targets.sla_compliance``
        by default.

    Returns
    -------
    pandas.DataFrame
        :data:`TICK_COLUMNS`, one row per queue:

        - ``open_items``, ``oldest_open_seconds`` (NaN with none open),
          ``at_risk``, ``arrivals_15m``, ``arrivals_60m``, ``decided_15m``:
          the module's definitions;
        - ``arrivals_60m_last_week``: ``created_at`` in the same hour a week
          earlier, ``(now - 7 d - 60 min, now - 7 d]``;
        - ``forecast_60m``, ``forecast_lower``, ``forecast_upper``: the
          forecast mean and interval of ``now``'s market-local hour
          (:func:`qualitylab.forecast.forecast_arrivals`), NaN without a plan;
        - ``decisions_per_minute`` = ``decided_15m / 15``; ``minutes_to_clear``
          = ``open_items / decisions_per_minute`` (0 with nothing open, inf
          when items are open and nothing was decided);
        - ``human_arrivals_60m``: arrivals of routing ``human``/``ai_assisted``;
        - ``staffed_agents``: scheduled moderators in ``now``'s hour
          (:func:`qualitylab.capacity.capacity_table`; NaN for a queue without
          staffing rows); ``required_agents``: Erlang C scheduled moderators
          for ``human_arrivals_60m`` per hour at the queue's handle time, SLA
          and shrinkage (:func:`qualitylab.capacity.required_agents`);
          ``capacity_gap`` = required - staffed;
        - ``sla_seconds``: the queue's SLA (NaN when not configured);
        - ``esc_open_sevN``: escalations of the queue open at ``now``
          (``raised_at <= now`` and unresolved at ``now``, raised in the last
          30 days); ``esc_past_sla_sevN``: those open longer than their
          severity's SLA.

    Raises
    ------
    QualityLabError
        A market without decisions.
    ParameterError
        An unknown market or queue, ``at_risk_share`` outside (0, 1],
        ``lookback_hours <= 1``.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=21, seed=1)
    >>> t = tick(open_dataset(folder), "SG")
    >>> t.columns[:9].tolist()
    ['market', 'queue', 'now', 'open_items', 'oldest_open_seconds', 'at_risk', 'arrivals_15m', 'arrivals_60m', 'decided_15m']
    >>> t["queue"].tolist()
    ['appeal', 'live_comment', 'live_report', 'live_stream']
    """
    _check_tick_options(at_risk_share, lookback_hours)
    now = default_now(ds, market) if now is None else _utc(now)
    options = {"queues": queues, "at_risk_share": at_risk_share, "lookback_hours": lookback_hours}
    return _ticks(ds, market, [now], plan, service_level_target=service_level_target, **options)


def _ticks(
    ds: Dataset,
    market: str,
    instants: Sequence[pd.Timestamp],
    plan: WatchPlan | None,
    *,
    queues: Sequence[str] | None = None,
    at_risk_share: float = 0.5,
    lookback_hours: float = DEFAULT_LOOKBACK_HOURS,
    service_level_target: float | None = None,
) -> pd.DataFrame:
    """:func:`tick` at each of ``instants``, concatenated: two engine queries in all.

    ``plan`` serves the instants on its day; the instants of another day share
    that day's :func:`watch_plan`, made once.
    """
    from qualitylab.operations.capacity import required_agents

    _check_tick_options(at_risk_share, lookback_hours)
    mp = ds.params.market(market)
    wanted = None if queues is None else [q.strip() for q in queues if q and q.strip()]
    slas = {q: float(v) for q, v in mp.sla_seconds.items()}
    agg = _counts(ds, market, instants, wanted, slas, float(at_risk_share), float(lookback_hours))
    have = agg.groupby("_k")["queue"].agg(list).to_dict()
    plans = {} if plan is None else {plan.day: plan}
    frames, used = [], []
    for k, now in enumerate(instants):
        names = sorted(str(q) for q in have.get(k, []) if wanted is None)
        if wanted is None and not names:
            raise QualityLabError(
                f"market {market!r} has no decisions in the {lookback_hours:g} hours "
                f"before {now.isoformat()} in {ds.source}"
            )
        if wanted is not None and set(wanted) - set(have.get(k, [])):
            check_queues(ds, market, wanted)  # unknown to the market: an error
        names = names if wanted is None else sorted(dict.fromkeys(wanted))
        day = _local(now, mp.timezone).date()
        if day not in plans:
            plans[day] = watch_plan(ds, market, now)
        used.append(plans[day])
        frame = pd.DataFrame({"market": market, "queue": names})
        frame["now"] = now
        frames.append(frame.assign(_k=k))
    out = pd.concat(frames, ignore_index=True)
    out = out.merge(agg, on=["_k", "queue"], how="left")
    ints = [c for c in TICK_COLUMNS[3:10] if c != "oldest_open_seconds"] + ["human_arrivals_60m"]
    out[ints] = out[ints].fillna(0).astype("int64")
    oldest = pd.to_datetime(out["oldest_open"], utc=True)
    out["oldest_open_seconds"] = (out["now"] - oldest).dt.total_seconds()
    # the plan's forecast and staffing of each instant's market-local hour
    cols = {"arrivals": "forecast", "lower": "forecast", "upper": "forecast"}
    cols.update(staffed_agents="staffed", aht_seconds="staffed")
    looked: dict[str, list[float]] = {c: [] for c in cols}
    tables: dict[tuple[int, str], dict[tuple[int, int, str], float]] = {}
    for k, q in zip(out["_k"], out["queue"], strict=True):
        p = used[k]
        local = _local(instants[k], mp.timezone)
        key = (pd.Timestamp(local.date()).as_unit("ns").value, local.hour, q)
        for col, part in cols.items():
            if (id(p), col) not in tables:
                f = getattr(p, part)
                days = pd.to_datetime(f["date"]).astype("datetime64[ns]").astype("int64")
                keys = zip(days, f["hour"], f["queue"], strict=True) if len(f) else ()
                vals = f[col] if len(f) else ()
                tables[id(p), col] = dict(zip(keys, vals, strict=True))
            looked[col].append(tables[id(p), col].get(key, np.nan))
    for col, src in zip(TICK_COLUMNS[10:13], ("arrivals", "lower", "upper"), strict=True):
        out[col] = np.asarray(looked[src], dtype="float64")

    out["decisions_per_minute"] = out["decided_15m"] / 15.0
    with np.errstate(divide="ignore", invalid="ignore"):
        clear = out["open_items"] / out["decisions_per_minute"]
    out["minutes_to_clear"] = np.where(out["open_items"] == 0, 0.0, clear).astype("float64")

    out["staffed_agents"] = np.asarray(looked["staffed_agents"], dtype="float64")
    aht = pd.Series(np.asarray(looked["aht_seconds"], dtype="float64"), index=out.index)
    aht = aht.fillna(out["queue"].map({q: float(v) for q, v in mp.aht_seconds.items()}))
    out["sla_seconds"] = out["queue"].map(slas).astype("float64")
    target = service_level_target
    target = mp.targets.get("sla_compliance", 0.9) if target is None else target
    req = []
    for r, a, s, q, k in zip(
        out["human_arrivals_60m"], aht, out["sla_seconds"], out["queue"], out["_k"], strict=True
    ):
        if not (a > 0 and s >= 0):
            req.append(np.nan)
            continue
        shrink = used[k].shrinkage.get(q, 0.0)
        req.append(
            float(required_agents(float(r), float(a), float(s), float(target), shrinkage=shrink))
        )
    out["required_agents"] = np.asarray(req, dtype="float64")
    out["capacity_gap"] = out["required_agents"] - out["staffed_agents"]

    if ds.has("escalations"):
        esc = _escalations(ds, market, instants, sorted(set(out["queue"])))
        keys = list(zip(esc["_k"], esc["queue"], esc["severity"], strict=True))
        rows = list(zip(out["_k"], out["queue"], strict=True))
        for w, c in (("open", "open"), ("past_sla", "past")):
            got = dict(zip(keys, esc[c], strict=True))
            for s in SEVERITIES:
                vals = [got.get((k, q, s), 0) for k, q in rows]
                out[f"esc_{w}_{s}"] = np.asarray(vals, dtype="int64")
    else:
        out[TICK_COLUMNS[-8:]] = np.nan
    out = out[TICK_COLUMNS].reset_index(drop=True)
    notes = [list(p.notes) for p in used]
    if all(n == notes[0] for n in notes):
        out.attrs["notes"] = notes[0]
        out.attrs["lookback_hours"] = float(lookback_hours)
    return out


def recent_ticks(
    ds: Dataset,
    market: str,
    *,
    now: datetime | str | pd.Timestamp | None = None,
    hours: float = 6.0,
    step_minutes: float = 30.0,
    plan: WatchPlan | None = None,
    **options: Any,
) -> pd.DataFrame:
    """The ticks of the last ``hours`` before ``now``, every ``step_minutes``: the recent past.

    The same :func:`tick` at each instant (so the same definitions), oldest
    first; for the backlog and arrivals chart (:func:`tick_chart`) and to
    warm up :func:`queue_alerts`.

    Parameters
    ----------
    ds : Dataset
    market : str
    now : optional
        The last instant; :func:`default_now` by default.
    hours : float, default 6
    step_minutes : float, default 30
    plan : WatchPlan, optional
        Shared by every tick (computed once for ``now`` when omitted).
    **options
        Passed to :func:`tick` (``queues``, ``at_risk_share``, ``lookback_hours``).

    Returns
    -------
    pandas.DataFrame
        :data:`TICK_COLUMNS`, one row per queue and instant.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=21, seed=1)
    >>> r = recent_ticks(open_dataset(folder), "SG", hours=1, step_minutes=30)
    >>> r["now"].nunique(), r["queue"].nunique()
    (3, 4)
    """
    if not hours > 0 or not step_minutes > 0:
        raise ParameterError(
            f"hours and step_minutes must be > 0; got {hours!r}, {step_minutes!r}", key="hours"
        )
    end = default_now(ds, market) if now is None else _utc(now)
    if plan is None:
        plan = watch_plan(ds, market, end)
    steps = int(hours * 60 // step_minutes)
    instants = [end - pd.Timedelta(minutes=step_minutes * k) for k in range(steps, -1, -1)]
    return _ticks(ds, market, instants, plan, **options)


def tick_chart(ticks: pd.DataFrame) -> Any:
    """Backlog and arrivals per queue over recent ticks: two small altair panels.

    Parameters
    ----------
    ticks : pandas.DataFrame
        :func:`recent_ticks` (or a watch's kept ticks).

    Returns
    -------
    altair.VConcatChart
        Top: open items and items at risk; bottom: arrivals in the last 60
        minutes with the forecast interval of each hour.

    Examples
    --------
    >>> t = pd.DataFrame({"queue": ["q"] * 2, "now": pd.to_datetime(["2026-12-06 10:00",
    ...     "2026-12-06 10:30"], utc=True), "open_items": [3, 9], "at_risk": [0, 2],
    ...     "arrivals_60m": [40, 70], "forecast_lower": [30.0, 30.0],
    ...     "forecast_upper": [60.0, 60.0]})
    >>> sorted(tick_chart(t).to_dict()["vconcat"][0]["layer"][0]["encoding"])
    ['color', 'strokeDash', 'tooltip', 'x', 'y']
    """
    import altair as alt

    cols = ["queue", "now", "open_items", "at_risk", "arrivals_60m", "forecast_lower"]
    cols.append("forecast_upper")
    df = ticks[cols].copy()
    df["now"] = pd.to_datetime(df["now"], utc=True).dt.tz_convert(None)
    long = df.melt(
        id_vars=["queue", "now"], value_vars=["open_items", "at_risk"], var_name="series",
        value_name="items",
    )  # fmt: skip
    x = alt.X("now:T", title="UTC")
    backlog = (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("items:Q", title="open items / at risk"),
            color=alt.Color("queue:N"),
            strokeDash=alt.StrokeDash("series:N", title=None),
            tooltip=["queue:N", "series:N", "now:T", "items:Q"],
        )
        .properties(height=160, width=520, title="Backlog")
    )
    band = (
        alt.Chart(df.dropna(subset=["forecast_lower", "forecast_upper"]))
        .mark_area(opacity=0.15)
        .encode(x=x, y="forecast_lower:Q", y2="forecast_upper:Q", color="queue:N")
    )
    arrivals = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("arrivals_60m:Q", title="arrivals in 60 min"),
            color="queue:N",
            tooltip=["queue:N", "now:T", "arrivals_60m:Q", "forecast_lower:Q", "forecast_upper:Q"],
        )
    )
    return alt.vconcat(
        alt.layer(backlog),
        (band + arrivals).properties(height=160, width=520, title="Arrivals vs forecast interval"),
    )


# --------------------------------------------------------------------------- #
# queue alerts
# --------------------------------------------------------------------------- #
def _sev(cause: str, row: Mapping[str, Any]) -> str:
    if cause == "escalation_sla":
        return "high"
    if cause in ("backlog", "at_risk"):
        return "high" if row.get("at_risk", 0) and row.get("open_items", 0) else "medium"
    return "medium"


def queue_alerts(
    ticks: pd.DataFrame,
    *,
    backlog_ticks: int = 2,
    backlog_min_growth: int = 10,
    backlog_growth_share: float = 1.0,
    at_risk_max: int = 10,
    at_risk_load: float = 2.0,
    staffing_tolerance: float = 1.0,
    arrivals: bool = True,
) -> pd.DataFrame:
    """Queue alerts over consecutive ticks: when each cause is raised and cleared.

    Pure: a function of the ticks only. A watch loop calls it on the ticks it
    kept and acts on the events of the last tick.

    Parameters
    ----------
    ticks : pandas.DataFrame
        :func:`tick` rows of several ticks (any order; one market or several).
    backlog_ticks : int, default 2
        ``k``: the backlog alert needs ``k`` consecutive ticks of growth.
    backlog_min_growth : int, default 10
        ... by at least this many open items since ``k`` ticks before ...
    backlog_growth_share : float, default 1
        ... and by at least this share of the open items then (the default:
        the backlog doubled; a market's evening ramp-up grows it by half).
    at_risk_max : int, default 10
        The at-risk alert is raised when more items than this are at risk ...
    at_risk_load : float, default 2
        ... and more than this many SLA periods' worth of arrivals at the
        current rate (``arrivals_60m / 60 x sla_seconds / 60``): a count that
        scales with the queue's volume and SLA, since a busy or slow queue
        always has items past half its SLA.
    staffing_tolerance : float, default 1
        The staffing alert is raised when ``capacity_gap`` exceeds this many
        moderators.
    arrivals : bool, default True
        Raise the arrivals alert (``arrivals_60m`` outside the forecast
        interval).

    Returns
    -------
    pandas.DataFrame
        :data:`ALERT_COLUMNS`: one ``raised`` row when a cause starts for a
        queue and one ``cleared`` row when it ends, in time order. Debounced:
        while a cause is raised for a queue, it is not raised again.

    Notes
    -----
    Causes (``cause``, stored as ``metric``):

    - ``backlog``: for ``k`` consecutive ticks ``open_items`` grew, by at
      least ``backlog_min_growth`` and ``backlog_growth_share`` of its level
      ``k`` ticks before in all, while ``arrivals_15m`` exceeded
      ``decided_15m`` (decisions were not clearing it). Cleared when the
      open items are back to their level before the growth, or when
      decisions catch up (``decided_15m >= arrivals_15m``) and the backlog
      shrank since the previous tick.
    - ``at_risk``: ``at_risk > at_risk_max`` and ``at_risk > at_risk_load x
      arrivals_60m x sla_seconds / 3600`` (queues without an SLA: the first
      condition only); cleared when either fails.
    - ``arrivals``: ``arrivals_60m`` outside ``[forecast_lower,
      forecast_upper]`` (direction ``up`` or ``down``); cleared inside.
    - ``staffing``: ``capacity_gap > staffing_tolerance``; cleared at or below.
    - ``escalation_sla``: a ``sev1`` or ``sev2`` escalation open past its SLA;
      cleared when none is.

    Examples
    --------
    >>> base = dict(market="SG", queue="live_stream", at_risk=0, arrivals_15m=30,
    ...             decided_15m=10, arrivals_60m=50, forecast_lower=np.nan,
    ...             forecast_upper=np.nan, capacity_gap=0.0,
    ...             esc_past_sla_sev1=0, esc_past_sla_sev2=0)
    >>> ticks = pd.DataFrame([dict(base, now=pd.Timestamp(f"2026-12-06 10:0{i}Z"),
    ...                            open_items=o) for i, o in enumerate([5, 9, 16, 20, 4])])
    >>> queue_alerts(ticks)[["now", "cause", "event"]].astype(str).values.tolist()
    [['2026-12-06 10:02:00+00:00', 'backlog', 'raised'], ['2026-12-06 10:04:00+00:00', 'backlog', 'cleared']]
    """
    if isinstance(backlog_ticks, bool) or not isinstance(backlog_ticks, int) or backlog_ticks < 1:
        raise ParameterError(
            f"backlog_ticks must be an integer >= 1; got {backlog_ticks!r}", key="backlog_ticks"
        )
    rows: list[dict[str, Any]] = []
    if not len(ticks):
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ALERT_COLUMNS})
    frame = ticks.assign(now=pd.to_datetime(ticks["now"], utc=True))
    frame = frame.sort_values(["market", "queue", "now"], kind="stable")
    for (market, queue), g in frame.groupby(["market", "queue"], sort=True):
        g = g.reset_index(drop=True)
        active: dict[str, dict[str, Any]] = {}

        def emit(
            cause: str,
            event: str,
            i: int,
            observed: float,
            expected: float,
            direction: str,
            message: str,
            *,
            _g: pd.DataFrame = g,
            _m: str = market,
            _q: str = queue,
        ) -> None:
            rows.append(
                {
                    "market": _m,
                    "queue": _q,
                    "cause": cause,
                    "metric": ALERT_CAUSES[cause],
                    "now": _g.at[i, "now"],
                    "event": event,
                    "direction": direction,
                    "severity": _sev(cause, _g.iloc[i].to_dict()),
                    "observed": float(observed),
                    "expected": float(expected),
                    "message": message,
                }
            )

        opened = g["open_items"].to_numpy(dtype=float)
        for i in range(len(g)):
            r = g.iloc[i]
            # backlog
            k = backlog_ticks
            st = active.get("backlog")
            if st is None and i >= k:
                grew = all(opened[j] > opened[j - 1] for j in range(i - k + 1, i + 1))
                growth = opened[i] - opened[i - k]
                enough = growth >= max(backlog_min_growth, backlog_growth_share * opened[i - k])
                if grew and enough and r["arrivals_15m"] > r["decided_15m"]:
                    active["backlog"] = {"base": opened[i - k]}
                    emit(
                        "backlog",
                        "raised",
                        i,
                        opened[i],
                        opened[i - k],
                        "up",
                        f"{queue}: backlog grew {int(growth)} items in {k} ticks to "
                        f"{int(opened[i])} ({int(r['arrivals_15m'])} arrived, "
                        f"{int(r['decided_15m'])} decided in 15 min)",
                    )
            elif st is not None:
                caught_up = (
                    r["decided_15m"] >= r["arrivals_15m"] and i and opened[i] < opened[i - 1]
                )
                if opened[i] <= st["base"] or caught_up:
                    del active["backlog"]
                    emit(
                        "backlog",
                        "cleared",
                        i,
                        opened[i],
                        st["base"],
                        "up",
                        f"{queue}: backlog back to {int(opened[i])} open items",
                    )
            # at risk
            per_sla = r["arrivals_60m"] * r.get("sla_seconds", np.nan) / 3600.0
            flag = r["at_risk"] > at_risk_max and not r["at_risk"] <= at_risk_load * per_sla
            _switch(
                active,
                "at_risk",
                flag,
                emit,
                i,
                r["at_risk"],
                at_risk_max,
                "up",
                f"{queue}: {int(r['at_risk'])} items at risk (> {at_risk_max})",
            )
            # arrivals vs forecast
            lo, hi = r.get("forecast_lower", np.nan), r.get("forecast_upper", np.nan)
            a60 = r["arrivals_60m"]
            if arrivals and pd.notna(lo) and pd.notna(hi):
                out = a60 > hi or a60 < lo
                direction = "up" if a60 > hi else "down"
                expected = hi if a60 > hi else lo
                _switch(
                    active,
                    "arrivals",
                    out,
                    emit,
                    i,
                    a60,
                    expected,
                    direction,
                    f"{queue}: {int(a60)} arrivals in 60 min, outside the forecast "
                    f"interval [{lo:g}, {hi:g}]",
                )
            # staffing
            gap = r.get("capacity_gap", np.nan)
            if pd.notna(gap):
                _switch(
                    active,
                    "staffing",
                    gap > staffing_tolerance,
                    emit,
                    i,
                    gap,
                    staffing_tolerance,
                    "up",
                    f"{queue}: {gap:g} moderators short of the Erlang C requirement",
                )
            # escalations past SLA
            late = sum(  # NaN without an escalations table: nothing is late
                int(v)
                for v in (r.get("esc_past_sla_sev1"), r.get("esc_past_sla_sev2"))
                if pd.notna(v)
            )
            _switch(
                active,
                "escalation_sla",
                late > 0,
                emit,
                i,
                late,
                0,
                "up",
                f"{queue}: {late} sev1/sev2 escalation(s) open past their SLA",
            )
    out = pd.DataFrame(rows, columns=ALERT_COLUMNS)
    if len(out):
        out = out.sort_values(["now", "market", "queue", "cause"], kind="stable")
    return out.reset_index(drop=True)


def _switch(
    active: dict[str, dict[str, Any]],
    cause: str,
    flag: bool,
    emit: Any,
    i: int,
    observed: float,
    expected: float,
    direction: str,
    message: str,
) -> None:
    """Raise ``cause`` when ``flag`` turns on, clear it when it turns off (debounced)."""
    if flag and cause not in active:
        active[cause] = {"direction": direction}
        emit(cause, "raised", i, observed, expected, direction, message)
    elif not flag and cause in active:
        direction = active.pop(cause)["direction"]
        emit(
            cause, "cleared", i, observed, expected, direction, f"{message.split(':')[0]}: cleared"
        )


# --------------------------------------------------------------------------- #
# the alert store and the webhook
# --------------------------------------------------------------------------- #
def _alert_id(market: str, metric: str, queue: str, when: pd.Timestamp) -> str:
    text = "\x1f".join(["queue", market, metric, queue, when.isoformat()])
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
    return f"{market}-{when:%Y%m%dT%H%M}-{metric}-{digest}"


def record_alerts(
    reports_dir: str | os.PathLike[str],
    events: pd.DataFrame,
    *,
    timezone: str = "UTC",
) -> pd.DataFrame:
    """Store queue alert events in the alert store (``kind="queue"``).

    A ``raised`` event of a queue and cause that already has an open queue
    alert in the store is skipped (debounce across watch restarts); a
    ``cleared`` event writes a ``resolved`` row for the open alert and is
    skipped when there is none.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder of the daily loop (``alerts.parquet``).
    events : pandas.DataFrame
        :func:`queue_alerts` rows.
    timezone : str, default "UTC"
        The market's time zone: ``as_of``, ``start_date``, ``end_date`` are
        market-local dates.

    Returns
    -------
    pandas.DataFrame
        The store rows written (:data:`qualitylab.alertstore.STORE_COLUMNS`):
        ``alert_id`` like ``SG-20261206T1405-backlog-3f2a1c``, ``metric`` the
        cause's metric (:data:`ALERT_CAUSES`), ``dimension="queue"``,
        ``segment`` the queue, ``detector="queue_watch"``, ``run_id`` the
        tick's UTC time (``watch-YYYYMMDDTHHMMSSZ``), ``status`` ``new`` or
        ``resolved``.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.detection.alertstore import read_store
    >>> ev = pd.DataFrame([dict(market="SG", queue="live_stream", cause="backlog",
    ...     metric="backlog", now=pd.Timestamp("2026-12-06 10:02Z"), event="raised",
    ...     direction="up", severity="medium", observed=20.0, expected=5.0, message="")])
    >>> reports = tempfile.mkdtemp()
    >>> record_alerts(reports, ev)["status"].tolist()
    ['new']
    >>> record_alerts(reports, ev)["status"].tolist()  # still open: debounced
    []
    >>> read_store(reports)[["kind", "metric", "segment"]].values.tolist()
    [['queue', 'backlog', 'live_stream']]
    """
    from qualitylab.detection import alertstore as st

    def build(store: pd.DataFrame) -> pd.DataFrame:
        queue_rows = store[store["kind"] == "queue"]
        latest = queue_rows.groupby("alert_id").tail(1)
        open_ = latest[latest["status"] != "resolved"]
        opened: dict[tuple[str, str, str], dict[str, Any]] = {
            (r["market"], r["metric"], r["segment"]): r.to_dict() for _, r in open_.iterrows()
        }
        rows: list[dict[str, Any]] = []
        for e in events.itertuples(index=False):
            when = _utc(e.now)
            day = when.tz_convert(timezone).tz_localize(None).normalize()
            key = (e.market, e.metric, e.queue)
            if e.event == "raised":
                if key in opened:
                    continue
                row: dict[str, Any] = {
                    "alert_id": _alert_id(e.market, e.metric, e.queue, when),
                    "kind": "queue",
                    "market": e.market,
                    "metric": e.metric,
                    "dimension": "queue",
                    "segment": e.queue,
                    "direction": e.direction,
                    "start_date": day,
                    "end_date": day,
                    "severity": e.severity,
                    "observed": e.observed,
                    "expected": e.expected,
                    "detector": "queue_watch",
                    "status": "new",
                    "first_seen": day,
                    "last_seen": day,
                    "resolved_on": pd.NaT,
                    "label_note": e.message,
                    "period_start": day,
                    "period_end": day,
                }
                opened[key] = row
            else:
                if key not in opened:
                    continue
                row = {**opened.pop(key)}
                row.update(
                    status="resolved",
                    resolved_on=day,
                    end_date=day,
                    last_seen=day,
                    period_end=day,
                    observed=e.observed,
                    label_note=e.message,
                )
            row.update(run_id=f"watch-{when:%Y%m%dT%H%M%SZ}", as_of=day)
            rows.append(row)
        return pd.DataFrame(rows)

    if not len(events):
        return st.read_store(Path(reports_dir) / ".none")
    return st.append(reports_dir, build)
