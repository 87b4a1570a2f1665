"""The period's alerts: a scan, or what a scheduled run stored, and their series.

:func:`scan_period` scans the report period against the 28 days before it
(the whole history for a young market); :func:`stored_alerts` reads the
alerts a scheduled run stored with the market's data (``ql_alerts``), and
:func:`period_alerts` takes those or scans. :func:`control_series` and
:func:`events_for` are what an alert is drawn with.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure.scope import as_date
from qualitylab.reporting.context import ReportContext


def scan_period(
    ds: Dataset,
    ctx: ReportContext,
    *,
    rebaseline: Mapping[tuple[str, str, str], date | str] | None = None,
) -> pd.DataFrame:
    """Alerts for the report period, judged against the 28 days before it.

    When the market's data starts too late for that baseline (fewer than 7
    days before the period: a young market), the whole data range is scanned
    instead, so the detector can judge the young days by its own rule; the
    alerts that reach into the period are the ones shown. When no scan is
    possible, an empty alert table is returned with a warning and the reason
    in ``attrs["note"]`` (:func:`require` turns it into a section note).
    ``rebaseline`` (``{(metric, dimension, segment): date}``, e.g. alerts
    labelled ``new_normal``) is passed to :func:`qualitylab.detect.scan`; a
    bad one raises its :class:`ParameterError`.
    """
    import warnings

    from qualitylab.detection.detect import ALERT_COLUMNS, scan

    try:
        return scan(ds, ctx.market, start=ctx.start, end=ctx.end, rebaseline=rebaseline)
    except QualityLabError as exc:
        if isinstance(exc, ParameterError) and exc.key == "rebaseline":
            raise  # a bad argument, not a market that cannot be scanned
        error = exc
    try:
        first = m.resolve_period(ds, market=ctx.market, start=None, end=None).start
        if ctx.start - timedelta(days=7) < first <= ctx.end:  # too young for the baseline
            return scan(ds, ctx.market, end=ctx.end, rebaseline=rebaseline)
    except QualityLabError as exc:
        error = exc
    warnings.warn(f"no alerts for {ctx.market}: {error}", stacklevel=2)
    empty = pd.DataFrame(columns=ALERT_COLUMNS)
    empty.attrs["note"] = str(error)
    return empty


def stored_alerts(ctx: ReportContext) -> pd.DataFrame | None:
    """The alerts a scheduled run stored with the market's data (``ql_alerts``), if any.

    Numbers are read back as numbers, and the reason the run's scan found
    nothing (``ql_alert_notes``) goes to ``attrs["note"]``. None when the data
    has no stored alerts or the backend cannot list its tables.
    """
    frame = None
    try:
        stored = ctx.ds.backend.list_tables()
        if "ql_alerts" in stored:
            frame = ctx.ds.backend.table("ql_alerts").to_pandas()
            frame = frame[frame["market"] == ctx.market].copy()
            for col in ("observed", "expected", "p_value", "impact", "n"):
                if col in frame.columns:
                    frame[col] = pd.to_numeric(frame[col], errors="coerce")
            if "ql_alert_notes" in stored:  # why the scheduled run's scan found nothing
                notes = ctx.ds.backend.table("ql_alert_notes").to_pandas()
                notes = notes[notes["market"] == ctx.market]["note"].dropna()
                if len(notes):
                    frame.attrs["note"] = str(notes.iloc[0])
    except Exception:  # a backend that cannot list tables: compute instead
        frame = None
    return frame


def period_alerts(ctx: ReportContext) -> pd.DataFrame:
    """The period's alerts: those a scheduled run stored, else a scan (:func:`scan_period`).

    All of them, also those that ended before the period (see :func:`current_alerts`).
    """
    frame = stored_alerts(ctx)
    if frame is None:
        import warnings

        # The scan warns about what it could not judge: the series too small to judge
        # (listed in attrs["skipped"]), a period it could not scan (attrs["note"], which
        # require() turns into a section note), and tables or dimensions it left out
        # (no audits, one segment, no vendor reports). A notebook shows the alerts and
        # those attrs, so the warnings are recorded here, not printed under the cell.
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            frame = scan_period(ctx.ds, ctx)
    return frame


def current_alerts(frame: pd.DataFrame, ctx: ReportContext) -> pd.DataFrame:
    """The alerts that reach into the period (end on or after its start), renumbered."""
    if len(frame):
        frame = frame[frame["end_date"].astype(str) >= str(ctx.start)]
    return frame.reset_index(drop=True)


def chartable(frame: pd.DataFrame) -> pd.DataFrame:
    """Alerts that have a daily series to draw (weekly reporting gaps do not)."""
    if frame.empty:
        return frame
    return frame[frame["metric"] != "reporting_gap"]


def control_series(
    ctx: ReportContext,
    alert: Mapping[str, Any] | pd.Series,
    *,
    baseline_days: int = 28,
) -> pd.DataFrame:
    """The daily series behind an alert, with control limits and changepoints.

    Rates get a binomial p-chart (Laney's p′ when overdispersed) from each
    day's n; counts and times get STL with robust MAD scores. The baseline is
    the ``baseline_days`` before the alert (masked days excluded by the
    detector). Adds a ``changepoint`` column from :func:`qualitylab.detect.changepoints`.

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag,
        changepoint`` — the input of :func:`qualitylab.charts.control_chart`.
    """
    from qualitylab.detection import detect
    from qualitylab.measure.aieval import ai_metrics

    metric, dim, seg = str(alert["metric"]), str(alert["dimension"]), str(alert["segment"])
    a_start = as_date(str(alert["start_date"])[:10])
    start = a_start - timedelta(days=baseline_days)
    end = max(ctx.end, as_date(str(alert["end_date"])[:10]))
    by = ["date"] if dim == "market" else [dim, "date"]
    if metric in m.QA_METRICS:
        fn = m.qa_metrics
    elif metric in ("auto_action_rate", "override_rate"):
        fn = m.ai_workflow_metrics
    elif metric.startswith("ai_"):
        fn = ai_metrics
    else:
        fn = m.operational_metrics
    frame = fn(ctx.ds, market=ctx.market, by=by, start=start, end=end)
    s = frame[frame["metric"] == metric]
    if dim != "market":
        s = s[s[dim].astype(str) == seg]
    days = pd.date_range(start, end, freq="D")
    s = s.assign(date=pd.to_datetime(s["date"])).set_index("date").reindex(days)
    base = int((pd.Timestamp(a_start) - days[0]).days)
    if metric in detect.RATES:
        det = detect.p_chart(s["value"], s["n"].fillna(0), baseline=base)
    else:
        det = detect.stl_mad(s["value"].ffill().bfill(), baseline=base)
    det["date"] = days
    cps = detect.changepoints(s["value"].interpolate().bfill().ffill())
    det["changepoint"] = cps["flag"].to_numpy(dtype=bool)
    return det


def events_for(
    ctx: ReportContext, alert: Mapping[str, Any] | pd.Series | None = None
) -> pd.DataFrame:
    """Events relevant to the market (and to an alert's segment, if given).

    Market-wide kinds (policy changes, model releases, outages, holidays) are
    kept; other events (e.g. a site's training) only when their description
    or policy names the alert's segment.
    """
    if not ctx.ds.has("events"):
        return pd.DataFrame(columns=["effective_at", "market", "kind", "policy", "description"])
    ev = ctx.ds.table("events")
    ev = ev.filter(ev.market.isin([ctx.market, "*"])).to_pandas()
    if alert is None:
        return ev
    seg = str(alert["segment"])
    broad = ev["kind"].isin(["policy_change", "model_release", "outage", "holiday"])
    named = ev["description"].astype(str).str.contains(seg, regex=False) | (
        ev["policy"].astype(str) == seg
    )
    if str(alert["dimension"]) == "policy":
        broad = broad & ((ev["policy"].isna()) | (ev["policy"].astype(str) == seg))
    return ev[broad | named].reset_index(drop=True)


def alerts_in_window(alerts_frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """Alerts whose dates overlap ``start``..``end`` (inclusive), in their order."""
    if alerts_frame is None or not len(alerts_frame):
        return alerts_frame
    a = pd.to_datetime(alerts_frame["start_date"].astype(str).str[:10]).dt.date
    b = pd.to_datetime(alerts_frame["end_date"].astype(str).str[:10]).dt.date
    return alerts_frame[(a <= end) & (b >= start)]
