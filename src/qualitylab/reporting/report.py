"""Notebook narrative helpers and offline, safe HTML rendering.

Notebooks call these to show text and tables built from data (always
escaped: a vendor or event description containing ``<script>`` shows as
text), and the runner calls :func:`render_html` to turn an executed notebook
into the full or the stakeholder HTML: self-contained (the vega bundle is
inlined once, no CDN script), with a title naming market and period and a
table of contents.

A notebook section runs inside :func:`section`: when the data is too thin for
it (an optional table absent, no rows for the market or period, too little
history), the library raises :class:`~qualitylab.errors.QualityLabError`, and
the section shows one sentence saying what is missing instead of failing the
notebook. The sentence is also an output of mimetype :data:`NOTE_MIMETYPE`,
which the scheduled runner collects into the manifest and the hub.

The work is split by job, and every name stays importable from here
(``qualitylab.report``): :mod:`~qualitylab.reporting.tables` (escaped sentences
and tables), :mod:`~qualitylab.reporting.notes` (section notes and findings),
:mod:`~qualitylab.reporting.render` (the HTML pages),
:mod:`~qualitylab.reporting.context` (the market and period),
:mod:`~qualitylab.reporting.alertscan` (the period's alerts, scanned or stored),
:mod:`~qualitylab.reporting.session` (:func:`context` and :func:`alerts`, made
once per dataset), :mod:`~qualitylab.reporting.alertviews` (incidents and
labelling), :mod:`~qualitylab.reporting.portfolio` (all markets side by side)
and :mod:`~qualitylab.reporting.blindspots` (what the QA sample can see). This
module itself chooses what a deep dive or a triage looks into: the alerts to
explain (:func:`alerts_to_explain`, :func:`deep_dive_targets`), the periods
(:func:`rca_focus`, :func:`triage_window`) and the nearest event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.errors import ParameterError
from qualitylab.measure import metrics as m  # noqa: F401 - ``report.m`` is the metrics module, as before
from qualitylab.measure.scope import as_date
from qualitylab.reporting.alertscan import alerts_in_window as alerts_in_window
from qualitylab.reporting.alertscan import chartable as chartable
from qualitylab.reporting.alertscan import control_series as control_series
from qualitylab.reporting.alertscan import events_for
from qualitylab.reporting.alertscan import scan_period as scan_period
from qualitylab.reporting.alertviews import alert_columns, incident_table, label_controls
from qualitylab.reporting.blindspots import (
    SCAN_DIMENSIONS,
    blind_segment_table,
    blind_spot_sentence,
    blind_spot_table,
    sampling_plan_sentence,
    sampling_plan_summary,
    scan_blind_spots,
)
from qualitylab.reporting.context import (
    ReportContext,
    data_end,
    header,
    require_rows,
    weeks_with_data,
)
from qualitylab.reporting.context import baseline_of as baseline_of
from qualitylab.reporting.notes import (
    FINDING_MIMETYPE,
    NOTE_MIMETYPE,
    Finding,
    Section,
    SectionNote,
    finding,
    notebook_findings,
    notebook_notes,
    require,
    section,
)
from qualitylab.reporting.portfolio import EXPLORER_METRICS as EXPLORER_METRICS
from qualitylab.reporting.portfolio import PORTFOLIO_METRICS as PORTFOLIO_METRICS
from qualitylab.reporting.portfolio import Portfolio as Portfolio
from qualitylab.reporting.portfolio import explorer as explorer
from qualitylab.reporting.portfolio import period_scorecard, red_scorecard
from qualitylab.reporting.portfolio import portfolio as portfolio
from qualitylab.reporting.render import TEMPLATE_DIR as TEMPLATE_DIR
from qualitylab.reporting.render import external_references as external_references
from qualitylab.reporting.render import notebook_json_safe as notebook_json_safe
from qualitylab.reporting.render import render_html
from qualitylab.reporting.session import ALERTS_MEMO, PREFETCH_JOBS, alerts, alerts_key, context
from qualitylab.reporting.tables import (
    cell_text,
    escape,
    explanation_table,
    kpi_table,
    moderator_aliases,
    say,
    table,
)

__all__ = [
    "EXPLAIN_COLUMNS",
    "FINDING_MIMETYPE",
    "NOTE_MIMETYPE",
    "SCAN_DIMENSIONS",
    "TARGET_COLUMNS",
    "Finding",
    "ReportContext",
    "Section",
    "SectionNote",
    "alert_columns",
    "alerts_to_explain",
    "blind_segment_table",
    "blind_spot_sentence",
    "blind_spot_table",
    "context",
    "data_end",
    "deep_dive_targets",
    "escape",
    "explanation_table",
    "finding",
    "focus_of",
    "header",
    "incident_table",
    "kpi_table",
    "label_controls",
    "moderator_aliases",
    "notebook_findings",
    "notebook_notes",
    "period_scorecard",
    "red_scorecard",
    "render_html",
    "require",
    "require_rows",
    "sampling_plan_sentence",
    "sampling_plan_summary",
    "say",
    "scan_blind_spots",
    "section",
    "table",
    "weeks_with_data",
]

# the old private spellings of the alert memo and prefetch jobs (tests and kernels read them)
_ALERTS_MEMO = ALERTS_MEMO
_PREFETCH = PREFETCH_JOBS
_alerts_key = alerts_key


@dataclass(frozen=True)
class RcaFocus:
    """What a root-cause notebook explains: metric, periods and an optional segment."""

    metric: str
    current: tuple[date, date]
    baseline: tuple[date, date]
    reason: str
    segment_filter: dict[str, str] | None = None

    @property
    def current_label(self) -> str:
        """E.g. ``2026-11-02 to 2026-11-08``."""
        return f"{self.current[0]} to {self.current[1]}"

    @property
    def baseline_label(self) -> str:
        """E.g. ``2026-10-05 to 2026-11-01``."""
        return f"{self.baseline[0]} to {self.baseline[1]}"


def rca_focus(
    ctx: ReportContext,
    metric: str,
    *,
    current_start: str = "",
    current_end: str = "",
    baseline_days: int = 28,
    segment: str = "",
) -> RcaFocus:
    """Choose the periods to explain: given dates, else the top alert's window.

    Without dates, the current period is the window of the highest-impact
    alert on ``metric`` in the report period (or the last week of the
    period when there is none) and the baseline the ``baseline_days`` before.
    """
    seg = None
    if segment:
        if ":" not in segment:
            from qualitylab.errors import ParameterError

            raise ParameterError(
                f"segment must look like dimension:value (e.g. vendor:VendorC); got {segment!r}",
                key="segment",
            )
        dim, val = segment.split(":", 1)
        seg = {dim.strip(): val.strip()}
    if current_start and current_end:
        cur = (as_date(current_start), as_date(current_end))
        reason = "Periods as given."
    else:
        al = alerts(ctx)
        al = al[al["metric"] == metric] if len(al) else al
        if seg and len(al):
            ((dim, val),) = seg.items()
            narrowed = al[(al["dimension"] == dim) & (al["segment"].astype(str) == val)]
            al = narrowed if len(narrowed) else al
        if len(al):
            top = al.iloc[0]
            cur = (as_date(str(top["start_date"])[:10]), as_date(str(top["end_date"])[:10]))
            reason = (
                f"The window of the top {metric} alert ({top['dimension']} {top['segment']}, "
                f"{top['direction']})."
            )
        else:
            cur = (ctx.end - timedelta(days=6), ctx.end)
            reason = f"No {metric} alert in the period; explaining its last week."
    base = (cur[0] - timedelta(days=baseline_days), cur[0] - timedelta(days=1))
    return RcaFocus(metric, cur, base, reason, seg)


def waterfall_frame(result: Any, dimension: str, *, top: int = 8) -> pd.DataFrame:
    """``segment, contribution`` for a waterfall: the largest ``top`` segments, the rest pooled."""
    seg = result.segments[result.segments["dimension"] == dimension]
    seg = seg.reindex(seg["contribution"].abs().sort_values(ascending=False).index)
    head = seg.head(top)[["segment", "contribution"]].astype({"segment": str})
    rest = seg.iloc[top:]["contribution"].sum()
    if len(seg) > top:
        head = pd.concat(
            [head, pd.DataFrame({"segment": ["(other)"], "contribution": [rest]})],
            ignore_index=True,
        )
    return head.reset_index(drop=True)


@dataclass(frozen=True)
class Event:
    """One event, market-local date."""

    date: date
    kind: str
    description: str


def nearest_event(ctx: ReportContext, focus: RcaFocus) -> Event | None:
    """The latest relevant event between the baseline start and the current end."""
    ev = events_for(
        ctx,
        {
            "metric": focus.metric,
            "dimension": next(iter(focus.segment_filter or {"market": 0})),
            "segment": next(iter((focus.segment_filter or {"market": ctx.market}).values())),
        },
    )
    if ev.empty:
        return None
    local = pd.to_datetime(ev["effective_at"], utc=True).dt.tz_convert(ctx.params.tz).dt.date
    ev = ev.assign(day=local)
    ev = ev[(ev["day"] > focus.baseline[0]) & (ev["day"] <= focus.current[1])]
    if ev.empty:
        return None
    row = ev.sort_values("day").iloc[-1]
    return Event(row["day"], str(row["kind"]), str(row["description"]))


def triage_window(ctx: ReportContext, start: str = "", end: str = "") -> tuple[date, date, str]:
    """The days to triage: given dates, else the top high-impact alert's window.

    Without dates, the window runs from two days before the start of the
    period's highest-impact alert to its end (so the lead-up shows), capped to
    the period; with no alert it is the last seven days of the period.

    Returns
    -------
    (start, end, reason)
    """
    if start and end:
        return as_date(start), as_date(end), "Window as given."
    al = alerts(ctx)
    if len(al):
        top = al.iloc[0]
        a = as_date(str(top["start_date"])[:10])
        b = as_date(str(top["end_date"])[:10])
        lo = max(ctx.start, a - timedelta(days=2))
        hi = min(ctx.end, max(b, lo))
        return (
            lo,
            hi,
            f"The top alert's window ({top['metric']} on {top['dimension']} {top['segment']}, "
            f"{a} to {b}), from two days before it.",
        )
    return ctx.end - timedelta(days=6), ctx.end, "No alert in the period: its last seven days."


def launch_plans(ctx: ReportContext, launch: str = "") -> dict[str, Any]:
    """Launch plans to check for the context's market: the given file, else all of them.

    Plans come from ``<parameters>/launches/`` and are validated
    (:func:`qualitylab.readiness.load_launch_plans`); a given file must be for
    this market.
    """
    from qualitylab.operations.readiness import load_launch_plan, load_launch_plans

    if launch:
        plan = load_launch_plan(launch, parameters=ctx.ds.params)
        if plan.market != ctx.market:
            from qualitylab.errors import ParameterError

            raise ParameterError(
                f"{launch}: the plan is for market {plan.market}, this report is for {ctx.market}",
                key="market",
            )
        return {Path(launch).stem: plan}
    plans = load_launch_plans(ctx.ds.params.root, parameters=ctx.ds.params)
    return {name: p for name, p in plans.items() if p.market == ctx.market}


#: Columns the alert store adds to the market cache's ``ql_alerts`` in scheduled runs.
STORE_ALERT_COLUMNS = (
    "alert_id",
    "status",
    "label",
    "first_seen",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
)
#: Columns of :func:`alerts_to_explain`.
EXPLAIN_COLUMNS = [
    "alert_id",
    "market",
    "metric",
    "dimension",
    "segment",
    "direction",
    "start_date",
    "end_date",
    "severity",
    "observed",
    "expected",
    "impact",
    "status",
    "label",
    "first_seen",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
    "children",
    "related",
]
#: Columns of :func:`deep_dive_targets`: :data:`EXPLAIN_COLUMNS` and the periods.
TARGET_COLUMNS = [*EXPLAIN_COLUMNS, "baseline_start", "baseline_end", "reason"]
#: Alert statuses a deep dive explains (new or continuing, not muted or resolved).
EXPLAIN_STATUSES = ("new", "ongoing")
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def _check_max_alerts(max_alerts: object) -> int:
    if isinstance(max_alerts, bool) or not isinstance(max_alerts, int) or max_alerts < 0:
        raise ParameterError(
            f"max_alerts must be a non-negative integer; got {max_alerts!r}", key="max_alerts"
        )
    return max_alerts


def alerts_to_explain(
    ctx: ReportContext, *, max_alerts: int = 3, alerts_frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The market's alerts a deep dive should explain, most important first.

    With the alert store's columns (``ql_alerts`` of a scheduled run:
    :data:`STORE_ALERT_COLUMNS`), the alerts whose status is ``new`` or
    ``ongoing`` and that carry no label, each incident's children folded into
    their lead (``children`` counts them), incident leads first, then by
    severity and impact. Without them (an interactive session's scan), the
    scan's alerts (each already the lead of the views ``related`` lists), by
    severity and impact.

    Parameters
    ----------
    ctx : ReportContext
    max_alerts : int, default 3
    alerts_frame : pandas.DataFrame, optional
        Alerts to choose from; by default :func:`alerts` (those reaching into
        the period).

    Returns
    -------
    pandas.DataFrame
        :data:`EXPLAIN_COLUMNS`, at most `max_alerts` rows; text columns the
        alerts lack are empty strings.

    Raises
    ------
    QualityLabError
        When no scan was possible (the reason :func:`alerts` gives): inside
        :func:`section`, a one-line note.

    Examples
    --------
    >>> al = pd.DataFrame({"alert_id": ["a", "b", "c", "d"], "metric": "accuracy",
    ...     "status": ["new", "ongoing", "muted", "new"], "label": ["", "", "", "confirmed"],
    ...     "severity": ["medium", "high", "high", "high"], "impact": [5.0, 1.0, 9.0, 9.0],
    ...     "incident_id": ["i1", "i2", "", ""], "incident_role": ["lead", "child", "", ""]})
    >>> alerts_to_explain(None, alerts_frame=al)["alert_id"].tolist()
    ['a']
    """
    max_alerts = _check_max_alerts(max_alerts)
    al = require(alerts(ctx), "the alert scan") if alerts_frame is None else alerts_frame
    out = al.copy().reset_index(drop=True)
    stored = "status" in out.columns
    for col in EXPLAIN_COLUMNS:
        if col not in out.columns:
            out[col] = float("nan") if col in ("observed", "expected", "impact") else ""
    for col in ("observed", "expected", "impact"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    text = [c for c in EXPLAIN_COLUMNS if c not in ("observed", "expected", "impact", "children")]
    for col in text:
        values = [cell_text(v) for v in out[col]]
        if col in ("start_date", "end_date", "first_seen"):  # dates, not timestamps
            values = [v[:10] for v in values]
        out[col] = pd.Series(values, index=out.index, dtype="object")
    role = out["incident_role"].str.lower()
    inc = out["incident_id"]
    kids = inc[(role == "child") & (inc != "")].value_counts()
    out["children"] = [
        int(kids.get(i, 0)) if r == "lead" and i else 0 for i, r in zip(inc, role, strict=True)
    ]
    if stored:
        keep = out["status"].str.lower().isin(EXPLAIN_STATUSES) & (out["label"].str.strip() == "")
        out = out[keep & (role != "child")]
    out = out.assign(
        _lead=(out["incident_role"].str.lower() != "lead").astype(int),
        _sev=out["severity"].str.lower().map(_SEVERITY_ORDER).fillna(3),
        _impact=-out["impact"].fillna(0.0),
    )
    out = out.sort_values(["_lead", "_sev", "_impact"], kind="stable")
    return out[EXPLAIN_COLUMNS].head(max_alerts).reset_index(drop=True)


def deep_dive_targets(
    ctx: ReportContext,
    *,
    max_alerts: int = 3,
    metric: str = "",
    segment: str = "",
    current_start: str = "",
    current_end: str = "",
    baseline_days: int = 28,
) -> pd.DataFrame:
    """What notebook 03 explains: the given metric and dates, else the alerts.

    Parameters
    ----------
    ctx : ReportContext
    max_alerts : int, default 3
        Alerts explained when no metric is given (:func:`alerts_to_explain`).
    metric : str, optional
        Explain this metric (any of :data:`qualitylab.rca.EXPLAINED_METRICS`)
        instead of the alerts: over the given dates, else the window of its
        top alert (:func:`rca_focus`).
    segment : str, optional
        ``dimension:value``: with a metric, explain it within that segment;
        without, explain only the alerts on that segment.
    current_start, current_end : str, optional
        Both or neither: the current period, for the metric or every alert.
    baseline_days : int, default 28
        The baseline is the days before the current period.

    Returns
    -------
    pandas.DataFrame
        :data:`TARGET_COLUMNS`: one row per deep dive, with ``baseline_start``,
        ``baseline_end`` and a ``reason`` for the choice. Empty when no alert
        needs explaining.
    """
    from qualitylab.detection.rca import EXPLAINED_METRICS

    if bool(current_start) != bool(current_end):
        raise ParameterError(
            "give both current_start and current_end, or neither (the alerts' windows)",
            key="current_start" if not current_start else "current_end",
        )
    if isinstance(baseline_days, bool) or not isinstance(baseline_days, int) or baseline_days < 1:
        raise ParameterError(
            f"baseline_days must be a positive integer; got {baseline_days!r}", key="baseline_days"
        )
    seg = _segment_parameter(segment)
    if metric:
        if metric not in EXPLAINED_METRICS:
            raise ParameterError(
                f"metric must be one of {', '.join(EXPLAINED_METRICS)}; got {metric!r}",
                key="metric",
            )
        focus = rca_focus(
            ctx,
            metric,
            current_start=current_start,
            current_end=current_end,
            baseline_days=baseline_days,
            segment=segment,
        )
        dim, val = seg or ("market", ctx.market)
        row = {c: "" for c in EXPLAIN_COLUMNS} | {
            "market": ctx.market,
            "metric": metric,
            "dimension": dim,
            "segment": val,
            "start_date": str(focus.current[0]),
            "end_date": str(focus.current[1]),
            "observed": float("nan"),
            "expected": float("nan"),
            "impact": float("nan"),
            "children": 0,
            "baseline_start": str(focus.baseline[0]),
            "baseline_end": str(focus.baseline[1]),
            "reason": f"{metric} as asked. {focus.reason}",
        }
        return pd.DataFrame([row], columns=TARGET_COLUMNS)
    max_alerts = _check_max_alerts(max_alerts)
    todo = alerts_to_explain(ctx, max_alerts=10**9)
    if seg is not None:
        todo = todo[(todo["dimension"] == seg[0]) & (todo["segment"] == seg[1])]
    todo = todo.head(max_alerts).reset_index(drop=True)
    if current_start:
        todo["start_date"], todo["end_date"] = current_start, current_end
    starts = [as_date(str(s)[:10]) for s in todo["start_date"]]
    todo["baseline_start"] = [str(s - timedelta(days=baseline_days)) for s in starts]
    todo["baseline_end"] = [str(s - timedelta(days=1)) for s in starts]
    todo["reason"] = [_why(r, bool(current_start)) for r in todo.itertuples()]
    return todo[TARGET_COLUMNS]


def _segment_parameter(segment: str) -> tuple[str, str] | None:
    if not segment:
        return None
    if ":" not in segment:
        raise ParameterError(
            f"segment must look like dimension:value (e.g. vendor:VendorC); got {segment!r}",
            key="segment",
        )
    dim, val = segment.split(":", 1)
    return dim.strip(), val.strip()


def _why(r: Any, given: bool) -> str:
    """Why an alert is explained: its status and incident, in a few words."""
    parts = []
    if r.status == "new":
        parts.append("new alert")
    elif r.status == "ongoing":
        parts.append(f"ongoing since {r.first_seen[:10]}" if r.first_seen else "ongoing")
    else:  # a scan without the store: ranked by severity and impact
        parts.append(f"{r.severity} severity" if r.severity else "alert")
    if r.incident_role == "lead":
        parts.append(f"leads incident {r.incident_id}")
        if r.children:
            parts.append(f"{r.children} related alert(s) folded in")
    window = "the window as given" if given else "its window"
    return ", ".join(parts) + f"; {window} against the days before."


def focus_of(exp: Any) -> RcaFocus:
    """The :class:`RcaFocus` of an :class:`~qualitylab.rca.Explanation` (for :func:`nearest_event`)."""
    seg = None if exp.dimension == "market" else {exp.dimension: exp.segment}
    return RcaFocus(
        exp.metric,
        (exp.current.start, exp.current.end),
        (exp.baseline.start, exp.baseline.end),
        "The alert's window.",
        seg,
    )
