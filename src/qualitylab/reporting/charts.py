"""Altair charts for qualitylab's tidy frames, and offline rendering.

Every chart function takes a tidy frame the library produced (or one built by
hand with the same columns) and returns an altair chart: plain data, testable
with ``chart.to_dict()``, composed from layers with ``+``. Intervals are drawn
from the ``ci_low``/``ci_high`` columns the statistics computed; nothing here
asks the browser to compute an interval (no ``extent="ci"``).

* Theme and palettes: the registered house theme ``qualitylab`` (enable it with
  :func:`use_theme`), :data:`OKABE_ITO` for categories, :data:`STATUS_COLORS`
  and :data:`STATUS_SHAPES` for red/amber/green, :data:`SEQUENTIAL_SCHEME` and
  :data:`DIVERGING_SCHEME` for heatmaps. Status is never shown by colour alone:
  a shape or a text label repeats it.
* Charts: :func:`control_chart`, :func:`trend_small_multiples`,
  :func:`funnel_plot`, :func:`waterfall`, :func:`scorecard_heatmap`,
  :func:`kpi_intervals`, :func:`pr_curve`, :func:`roc_curve`,
  :func:`calibration_curve`, :func:`threshold_sweep_chart`.
* Offline rendering: :func:`to_svg`, :func:`to_png` (vl-convert, no network),
  :func:`vega_bundle` (vega, vega-lite and vega-embed as one inline script),
  :func:`chart_html` (a ``<div>`` + ``<script>`` fragment) and the ``qualitylab``
  altair renderer (:func:`enable_offline_renderer`).

How a report shows interactive charts without a network: the report builder
puts ``<script>`` + :func:`vega_bundle` + ``</script>`` **once** in the page's
``<head>``; that defines the global ``vegaEmbed``. Each chart is then a
:func:`chart_html` fragment (which is what the ``qualitylab`` renderer writes as
the ``text/html`` output of a notebook cell) calling ``vegaEmbed`` on its own
``<div>``. Without the bundle, a fragment shows its static fallback image (the
renderer's default) or a short notice.

Text that came from data (vendor names, event descriptions) is hostile until
proven otherwise: vega draws it as text, vega-embed's tooltips escape it, and
:func:`chart_html` escapes every ``<``, ``>`` and ``&`` in the embedded JSON so
a string such as ``</script><script>alert(1)</script>`` cannot leave the
``<script>`` element.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import vl_convert as vlc

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.reporting.quietimport import import_jsonschema_quietly

import_jsonschema_quietly()  # before altair: saves ~2.5 s of import time

import altair as alt  # noqa: E402

__all__ = [
    "DIVERGING_SCHEME",
    "OKABE_ITO",
    "RATE_METRICS",
    "RENDERER_NAME",
    "SEQUENTIAL_SCHEME",
    "STATUS_COLORS",
    "STATUS_SHAPES",
    "THEME_NAME",
    "calibration_curve",
    "capacity_heatmap",
    "chart_html",
    "control_chart",
    "enable_offline_renderer",
    "funnel_plot",
    "kpi_intervals",
    "pr_curve",
    "roc_curve",
    "sampling_plan_chart",
    "scorecard_heatmap",
    "theme_config",
    "rollout_chart",
    "threshold_sweep_chart",
    "to_png",
    "to_svg",
    "trend_small_multiples",
    "triage_timeline",
    "use_theme",
    "vega_bundle",
    "waterfall",
]

# --------------------------------------------------------------------------- #
# palettes and theme
# --------------------------------------------------------------------------- #
THEME_NAME = "qualitylab"
RENDERER_NAME = "qualitylab"

#: Okabe & Ito (2008) colour-blind-safe categorical palette, yellow moved late
#: because it is hard to see on white.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#000000",  # black
    "#F0E442",  # yellow
)
#: Status colours from Okabe-Ito: distinguishable under deuteranopia and
#: protanopia by lightness as well as hue; always paired with a second cue.
STATUS_COLORS = {"green": "#009E73", "amber": "#E69F00", "red": "#D55E00", "na": "#BBBBBB"}
#: The redundant cue for status wherever a point is drawn.
STATUS_SHAPES = {"green": "circle", "amber": "triangle-up", "red": "cross", "na": "square"}
STATUS_ORDER = ("green", "amber", "red", "na")
#: Vega scheme for one-directional quantities (volumes, rates).
SEQUENTIAL_SCHEME = "viridis"
#: Vega scheme for signed changes (deltas), centred with ``domainMid=0``.
DIVERGING_SCHEME = "blueorange"

#: Metrics that are proportions in [0, 1] and are shown as percentages.
RATE_METRICS = frozenset(
    {
        "sla_compliance",
        "utilization",
        "accuracy",
        "over_enforcement_rate",
        "under_enforcement_rate",
        "wrong_policy_rate",
        "qa_alignment",
        "ai_precision",
        "ai_recall",
        "ai_fpr",
        "ai_fnr",
        "ai_f1",
        "override_rate",
        "auto_action_rate",
        "calibration_score",
        "red_team_recall",
        "override_accuracy",
        "ai_alone_accuracy",
        "precision",
        "recall",
        "fpr",
        "fnr",
        "f1",
    }
)

_FONT = "'Source Sans 3', 'Segoe UI', 'Helvetica Neue', Arial, 'Liberation Sans', sans-serif"
_INK = "#333333"
_MUTED = "#777777"
_GRID = "#E8E8E8"
_BLUE, _VERMILLION, _PURPLE = OKABE_ITO[0], OKABE_ITO[5], OKABE_ITO[3]
_WIDTH, _HEIGHT = 560, 260


def theme_config() -> dict[str, Any]:
    """The house theme as a vega-lite top-level ``config`` dict.

    Returns
    -------
    dict
        ``{"config": {...}}``: readable fonts, a light grid, a 560 x 260 px
        default view, the Okabe-Ito categorical range and the viridis /
        blueorange schemes for heatmaps and diverging colour scales.

    Examples
    --------
    >>> cfg = theme_config()["config"]
    >>> cfg["range"]["category"][:2], cfg["view"]["continuousWidth"]
    (['#0072B2', '#E69F00'], 560)
    """
    axis = {
        "labelFontSize": 12,
        "titleFontSize": 12,
        "titleFontWeight": "normal",
        "labelColor": _INK,
        "titleColor": _INK,
        "domainColor": "#888888",
        "tickColor": "#888888",
        "gridColor": _GRID,
        "gridOpacity": 1,
    }
    return {
        "config": {
            "font": _FONT,
            "background": "white",
            "padding": 8,
            "view": {"continuousWidth": _WIDTH, "continuousHeight": _HEIGHT, "stroke": None},
            "axis": axis,
            "axisBand": {"grid": False},
            "legend": {
                "labelFontSize": 12,
                "titleFontSize": 12,
                "titleFontWeight": "normal",
                "labelColor": _INK,
                "titleColor": _INK,
                "orient": "right",
            },
            "header": {"labelFontSize": 12, "titleFontSize": 13, "labelColor": _INK},
            "title": {
                "fontSize": 15,
                "fontWeight": 600,
                "anchor": "start",
                "color": _INK,
                "subtitleFontSize": 12,
                "subtitleColor": _MUTED,
            },
            "text": {"fontSize": 11, "color": _INK},
            "line": {"strokeWidth": 2},
            "point": {"size": 36, "filled": True},
            "range": {
                "category": list(OKABE_ITO),
                "heatmap": {"scheme": SEQUENTIAL_SCHEME},
                "ramp": {"scheme": SEQUENTIAL_SCHEME},
                "diverging": {"scheme": DIVERGING_SCHEME},
                "ordinal": {"scheme": SEQUENTIAL_SCHEME},
            },
        }
    }


@alt.theme.register(THEME_NAME, enable=False)
def _qualitylab_theme() -> alt.theme.ThemeConfig:
    return theme_config()  # type: ignore[return-value]


def use_theme() -> Any:
    """Enable the registered ``qualitylab`` altair theme.

    Returns
    -------
    altair.utils.plugin_registry.PluginEnabler
        Also usable as a context manager (``with use_theme(): ...``) to restore
        the previous theme afterwards.

    Examples
    --------
    >>> import altair as alt
    >>> with use_theme():
    ...     alt.theme.active
    'qualitylab'
    """
    return alt.theme.enable(THEME_NAME)


# --------------------------------------------------------------------------- #
# validation and formatting helpers (shared by every chart)
# --------------------------------------------------------------------------- #
MSG_NOT_FRAME = "{name} must be a pandas DataFrame ({source}); got {type}"
MSG_MISSING_COLUMN = "{table} has no column {column!r}; available columns: {available}"
MSG_BAD_ROWS = "{table} column {column!r} has {count} row(s) {problem}, e.g. {example!r}"
MSG_DUPLICATE = "{table} has {count} duplicate row(s) for {keys}, e.g. {example!r}; {hint}"
MSG_UNKNOWN_METRIC = "{table} has no rows for metric {metric!r}; metrics present: {available}"
MSG_ONE_METRIC = "{table} holds several metrics {available}; pass metric= to choose one"
MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_NUMBER = "{name} must be a finite number; got {value!r}"
MSG_DIV_ID = (
    "div_id must start with a letter and hold only letters, digits, '-' and '_'; got {value!r}"
)
MSG_NOT_CHART = "chart must be an altair chart or a vega-lite spec dict; got {type}"
MSG_NOT_JSON = "the chart spec cannot be embedded as JSON: {error}"
MSG_TIMEZONE = "timezone {value!r} is not a valid IANA time zone name"
MSG_DROPPED = "{table}: dropped {count} row(s) with {problem} (they cannot be drawn on a log axis)"

_DIV_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _frame(obj: object, name: str, required: Sequence[str], source: str) -> pd.DataFrame:
    """Check type and columns once, and return a copy (inputs are never modified)."""
    if not isinstance(obj, pd.DataFrame):
        raise ParameterError(
            MSG_NOT_FRAME.format(name=name, source=source, type=type(obj).__name__)
        )
    for col in required:
        if col not in obj.columns:
            raise DataContractError(
                MSG_MISSING_COLUMN.format(table=name, column=col, available=list(obj.columns)),
                table=name,
                column=col,
                check="missing_column",
            )
    return obj.copy()


def _numeric(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    """Coerce columns to float in place (on our copy); non-numbers are an error."""
    for col in columns:
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = values.isna() & frame[col].notna()
        if bad.any():
            raise DataContractError(
                MSG_BAD_ROWS.format(
                    table=name,
                    column=col,
                    count=int(bad.sum()),
                    problem="that are not numbers",
                    example=frame.loc[bad, col].iloc[0],
                ),
                table=name,
                column=col,
                check="not_numeric",
                bad_rows=int(bad.sum()),
                example=frame.loc[bad, col].iloc[0],
            )
        frame[col] = values.astype("float64")


def _flags(values: pd.Series) -> pd.Series:
    """Booleans with missing values read as False."""
    return values.astype("object").where(values.notna(), False).astype(bool)


def _datetimes(values: pd.Series, name: str, column: str) -> pd.Series:
    """Calendar dates/timestamps as naive datetimes (wall time, for a local-date axis)."""
    out = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = out.isna() & values.notna()
    if bad.any():
        raise DataContractError(
            MSG_BAD_ROWS.format(
                table=name,
                column=column,
                count=int(bad.sum()),
                problem="that are not dates",
                example=values[bad].iloc[0],
            ),
            table=name,
            column=column,
            check="not_date",
            bad_rows=int(bad.sum()),
            example=values[bad].iloc[0],
        )
    if getattr(out.dt, "tz", None) is not None:
        out = out.dt.tz_localize(None)
    return out


def _check_unique(frame: pd.DataFrame, name: str, keys: Sequence[str], hint: str) -> None:
    dup = frame.duplicated(list(keys), keep=False)
    if dup.any():
        example = tuple(frame.loc[dup, list(keys)].iloc[0])
        raise DataContractError(
            MSG_DUPLICATE.format(
                table=name, count=int(dup.sum()), keys=list(keys), example=example, hint=hint
            ),
            table=name,
            check="duplicate",
            bad_rows=int(dup.sum()),
            example=example,
        )


def _choose_metric(
    frame: pd.DataFrame, name: str, metric: str | None
) -> tuple[pd.DataFrame, str | None]:
    """Filter a long frame to one metric (the only one, or the one asked for)."""
    if "metric" not in frame.columns:
        return frame, metric
    present = list(pd.unique(frame["metric"].dropna()))
    if metric is None:
        if len(present) > 1:
            raise ParameterError(MSG_ONE_METRIC.format(table=name, available=present), key="metric")
        return frame, (str(present[0]) if present else None)
    out = frame[frame["metric"] == metric]
    if out.empty and not frame.empty:  # a frame without rows draws an empty chart
        raise ParameterError(
            MSG_UNKNOWN_METRIC.format(table=name, metric=metric, available=present), key="metric"
        )
    return out, metric


def _finite(value: object, name: str) -> float:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        out = math.nan
    if not math.isfinite(out) or isinstance(value, bool):
        raise ParameterError(MSG_NUMBER.format(name=name, value=value), key=name)
    return out


def _is_rate(metric: str | None) -> bool:
    return metric in RATE_METRICS


def _axis_format(metric: str | None) -> str | None:
    """d3 format for an axis: percentages for rates, altair's default otherwise."""
    return ".1~%" if _is_rate(metric) else None


def _value_axis(metric: str | None) -> alt.Axis:
    """Axis of a metric's values: percentage labels for rates."""
    fmt = _axis_format(metric)
    return alt.Axis(format=fmt) if fmt else alt.Axis()


def _tip_format(metric: str | None) -> str:
    """d3 format for tooltips."""
    return ".1%" if _is_rate(metric) else ",.3~f"


def _fmt(value: object, metric: str | None) -> str:
    """A value as text for labels: ``92.4%`` for rates, ``1,234``/``45.7``/``0.734`` else."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if _is_rate(metric):
        return f"{v:.1%}"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


def _fmt_delta(value: object, metric: str | None) -> str:
    """A signed change: percentage points for rates."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if _is_rate(metric):
        return f"{100 * v:+.1f} pp"
    text = _fmt(abs(v), metric)
    return ("+" if v >= 0 else "-") + text


def _titled(chart: Any, title: str | None, default: str | None = None) -> Any:
    """Set the chart title when there is one (an explicit ``""`` means none)."""
    text = title if title is not None else default
    return chart.properties(title=text) if text else chart


def _label(metric: str | None) -> str:
    return metric.replace("_", " ") if metric else "value"


def _one_row() -> alt.Data:
    """Data of one empty row, for annotation layers drawn from ``datum`` values."""
    return alt.Data(values=[{}])


def _status_scales(title: str = "Status") -> tuple[alt.Color, alt.Shape]:
    domain = list(STATUS_ORDER)
    color = alt.Color(
        "status:N",
        title=title,
        scale=alt.Scale(domain=domain, range=[STATUS_COLORS[s] for s in domain]),
    )
    shape = alt.Shape(
        "status:N",
        title=title,
        scale=alt.Scale(domain=domain, range=[STATUS_SHAPES[s] for s in domain]),
    )
    return color, shape


def _statuses(frame: pd.DataFrame, name: str) -> pd.Series:
    status = frame["status"].astype("object").where(frame["status"].notna(), "na")
    status = status.astype(str).str.lower()
    bad = ~status.isin(STATUS_ORDER)
    if bad.any():
        raise DataContractError(
            MSG_BAD_ROWS.format(
                table=name,
                column="status",
                count=int(bad.sum()),
                problem=f"outside {list(STATUS_ORDER)}",
                example=frame.loc[bad, "status"].iloc[0],
            ),
            table=name,
            column="status",
            check="bad_status",
            bad_rows=int(bad.sum()),
            example=frame.loc[bad, "status"].iloc[0],
        )
    return status


# --------------------------------------------------------------------------- #
# detection and trends
# --------------------------------------------------------------------------- #
_SERIES_COLUMNS = ("date", "observed", "expected", "lower", "upper", "flag")
_EVENT_COLUMNS = ("effective_at", "kind", "description")


def _event_frame(
    events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, timezone: str | None
) -> pd.DataFrame:
    ev = _frame(events, "events", _EVENT_COLUMNS, "the events table")
    at = pd.to_datetime(ev["effective_at"], errors="coerce", utc=True, format="mixed")
    bad = at.isna() & ev["effective_at"].notna()
    if bad.any():
        raise DataContractError(
            MSG_BAD_ROWS.format(
                table="events",
                column="effective_at",
                count=int(bad.sum()),
                problem="that are not timestamps",
                example=ev.loc[bad, "effective_at"].iloc[0],
            ),
            table="events",
            column="effective_at",
            check="not_timestamp",
            bad_rows=int(bad.sum()),
        )
    if timezone is not None:
        try:
            local = at.dt.tz_convert(timezone)
        except Exception as exc:  # zoneinfo raises several types
            raise ParameterError(MSG_TIMEZONE.format(value=timezone), key="timezone") from exc
    else:
        local = at
    ev["event_time"] = local.dt.tz_localize(None)
    ev["effective_at_utc"] = at.dt.strftime("%Y-%m-%d %H:%M UTC")
    for col in ("kind", "policy", "description"):
        if col not in ev.columns:
            ev[col] = ""
        ev[col] = ev[col].astype("object").where(ev[col].notna(), "").astype(str)
    keep = ev["event_time"].between(start, end + pd.Timedelta(days=1), inclusive="left")
    cols = ["event_time", "effective_at_utc", "kind", "policy", "description"]
    return ev.loc[keep, cols].reset_index(drop=True)


def control_chart(
    series: pd.DataFrame,
    *,
    events: pd.DataFrame | None = None,
    title: str | None = None,
    metric: str | None = None,
    timezone: str | None = None,
) -> alt.LayerChart:
    """Detector output as a control chart with its limits, signals and context.

    Parameters
    ----------
    series : pandas.DataFrame
        One row per day: ``date, observed, expected, lower, upper, flag`` and
        optionally ``changepoint`` (bool) and ``metric``. ``date`` is the
        market-local calendar date.
    events : pandas.DataFrame, optional
        The events table: ``effective_at`` (UTC), ``kind``, ``description`` and
        optionally ``policy``; events outside the series' dates are left out.
    title : str, optional
        Chart title; defaults to the metric name.
    metric : str, optional
        Metric name; rates (see :data:`RATE_METRICS`) get percentage axes and
        tooltips. Taken from a single-valued ``metric`` column when omitted.
    timezone : str, optional
        The market's IANA time zone: event times are converted to it so they
        line up with the market-local dates. Without it they are placed at
        their UTC wall time.

    Returns
    -------
    altair.LayerChart
        Layers, in order: the band between ``lower`` and ``upper`` (area), the
        expected centre (dashed line), observed (line), observed points with
        flagged days drawn as vermillion diamonds (colour *and* shape, with a
        legend), then, when present, changepoint rules and event rules with
        triangle markers whose tooltip gives time, kind, policy and description.

    Examples
    --------
    >>> import pandas as pd
    >>> series = pd.DataFrame(
    ...     {
    ...         "date": pd.date_range("2026-03-01", periods=3),
    ...         "observed": [0.91, 0.92, 0.80],
    ...         "expected": [0.90, 0.90, 0.90],
    ...         "lower": [0.85, 0.85, 0.85],
    ...         "upper": [0.95, 0.95, 0.95],
    ...         "flag": [False, False, True],
    ...     }
    ... )
    >>> spec = control_chart(series, metric="accuracy").to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['area', 'line', 'line', 'point']
    >>> spec["layer"][0]["encoding"]["y2"]["field"], spec["layer"][3]["encoding"]["y"]["axis"]["format"]
    ('upper', '.1~%')
    """
    df = _frame(series, "series", _SERIES_COLUMNS, "detector output")
    df, metric = _choose_metric(df, "series", metric)
    df["date"] = _datetimes(df["date"], "series", "date")
    _numeric(df, "series", ("observed", "expected", "lower", "upper"))
    df["flag"] = _flags(df["flag"])
    df["changepoint"] = _flags(df["changepoint"]) if "changepoint" in df else False
    df["signal"] = np.where(df["flag"], "flagged", "in control")
    _check_unique(df, "series", ["date"], "filter series to one segment and metric")
    df = df.sort_values("date", kind="mergesort").reset_index(drop=True)
    keep = ["date", "observed", "expected", "lower", "upper", "flag", "changepoint", "signal"]
    df = df[keep]

    tip_fmt = _tip_format(metric)
    y_title = _label(metric)
    x = alt.X("date:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0))
    tips = [
        alt.Tooltip("date:T", title="date", format="%a %d %b %Y"),
        alt.Tooltip("observed:Q", format=tip_fmt),
        alt.Tooltip("expected:Q", format=tip_fmt),
        alt.Tooltip("lower:Q", format=tip_fmt),
        alt.Tooltip("upper:Q", format=tip_fmt),
        alt.Tooltip("signal:N"),
    ]
    base = alt.Chart(df)
    band = base.mark_area(color=_BLUE, opacity=0.14).encode(
        x=x,
        y=alt.Y("lower:Q", title=y_title, scale=alt.Scale(zero=False), axis=_value_axis(metric)),
        y2="upper:Q",
    )
    centre = base.mark_line(color=_BLUE, strokeDash=[5, 4], strokeWidth=1.5).encode(
        x=x, y="expected:Q"
    )
    observed = base.mark_line(color=_INK, strokeWidth=1.5).encode(x=x, y="observed:Q")
    domain = ["in control", "flagged"]
    points = base.mark_point(filled=True, opacity=1).encode(
        x=x,
        y=alt.Y("observed:Q", title=y_title, axis=_value_axis(metric)),
        color=alt.Color(
            "signal:N", title=None, scale=alt.Scale(domain=domain, range=[_INK, _VERMILLION])
        ),
        shape=alt.Shape(
            "signal:N", title=None, scale=alt.Scale(domain=domain, range=["circle", "diamond"])
        ),
        size=alt.when(alt.datum.flag).then(alt.value(110)).otherwise(alt.value(28)),
        tooltip=tips,
    )
    chart = band + centre + observed + points
    if df["changepoint"].any():
        cps = alt.Chart(df[df["changepoint"]]).mark_rule(
            color="#000000", strokeDash=[2, 3], strokeWidth=1.5
        )
        chart += cps.encode(
            x=x, tooltip=[alt.Tooltip("date:T", title="changepoint", format="%a %d %b %Y")]
        )
    if events is not None and not df.empty:
        ev = _event_frame(events, df["date"].min(), df["date"].max(), timezone)
        if not ev.empty:
            ev_x = alt.X("event_time:T", title=None)
            ev_tips = [
                alt.Tooltip("effective_at_utc:N", title="effective at"),
                alt.Tooltip("kind:N"),
                alt.Tooltip("policy:N"),
                alt.Tooltip("description:N"),
            ]
            ev_base = alt.Chart(ev)
            rules = ev_base.mark_rule(color=_PURPLE, strokeWidth=1.5, opacity=0.8).encode(
                x=ev_x, tooltip=ev_tips
            )
            marks = ev_base.mark_point(
                shape="triangle-down", color=_PURPLE, filled=True, size=90, opacity=1
            ).encode(x=ev_x, y=alt.value(0), tooltip=ev_tips)
            chart = chart + rules + marks
    return _titled(chart, title, _label(metric) if metric else None)


def trend_small_multiples(
    frame: pd.DataFrame,
    *,
    metric: str,
    facet: str = "vendor",
    x: str = "date",
    columns: int = 3,
    target: float | None = None,
    shared_y: bool = True,
    width: int = 220,
    height: int = 130,
    title: str | None = None,
) -> alt.FacetChart:
    """One panel per segment: the metric over time with its interval band.

    Parameters
    ----------
    frame : pandas.DataFrame
        A metric frame ``[*by, metric, value, n, ci_low, ci_high, small_n]``
        whose ``by`` includes `facet` and `x`.
    metric : str
        The metric to draw.
    facet : str, default "vendor"
        The segment column, one panel per value (in order of appearance).
    x : str, default "date"
        The time column (``date``, ``week`` or ``month``).
    columns : int, default 3
        Panels per row.
    target : float, optional
        Draw the target as a dashed rule in every panel.
    shared_y : bool, default True
        Same y scale in every panel (comparable); False gives each its own.
    width, height : int
        Size of one panel in pixels.
    title : str, optional
        Defaults to the metric name.

    Returns
    -------
    altair.FacetChart
        A faceted layer of the ``ci_low``-``ci_high`` band (area), the value
        (line) and points, hollow where ``small_n`` is true, with tooltips
        holding value, interval and ``n``.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame(
    ...     {
    ...         "vendor": ["A", "A", "B", "B"],
    ...         "date": pd.to_datetime(["2026-03-01", "2026-03-02"] * 2),
    ...         "metric": "accuracy",
    ...         "value": [0.9, 0.92, 0.85, 0.88],
    ...         "n": [200, 210, 40, 35],
    ...         "ci_low": [0.85, 0.88, 0.72, 0.73],
    ...         "ci_high": [0.93, 0.95, 0.93, 0.95],
    ...         "small_n": [False, False, False, True],
    ...     }
    ... )
    >>> spec = trend_small_multiples(frame, metric="accuracy").to_dict()
    >>> spec["facet"]["field"], [layer["mark"]["type"] for layer in spec["spec"]["layer"]]
    ('vendor', ['area', 'line', 'point'])
    """
    df = _frame(frame, "frame", (facet, x, "value", "n", "ci_low", "ci_high"), "a metric frame")
    df, metric = _choose_metric(df, "frame", metric)
    _check_unique(df, "frame", [facet, x], f"filter frame to one row per {facet} and {x}")
    if not isinstance(columns, int) or isinstance(columns, bool) or columns < 1:
        raise ParameterError(
            MSG_CHOICE.format(name="columns", allowed="integers >= 1", value=columns)
        )
    df[x] = _datetimes(df[x], "frame", x)
    _numeric(df, "frame", ("value", "n", "ci_low", "ci_high"))
    df["small_n"] = _flags(df["small_n"]) if "small_n" in df else False
    df[facet] = df[facet].astype("object").where(df[facet].notna(), "(missing)").astype(str)
    order = list(pd.unique(df[facet]))
    df = df.sort_values([facet, x], kind="mergesort")[
        [facet, x, "value", "n", "ci_low", "ci_high", "small_n"]
    ]

    tip_fmt = _tip_format(metric)
    xx = alt.X(f"{x}:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0, tickCount=4))
    base = alt.Chart()
    band = base.mark_area(color=_BLUE, opacity=0.18).encode(
        x=xx,
        y=alt.Y(
            "ci_low:Q",
            title=_label(metric),
            scale=alt.Scale(zero=False),
            axis=_value_axis(metric),
        ),
        y2="ci_high:Q",
    )
    line = base.mark_line(color=_BLUE).encode(x=xx, y="value:Q")
    points = base.mark_point(filled=True, stroke=_BLUE, strokeWidth=1.5, size=30, opacity=1).encode(
        x=xx,
        y="value:Q",
        fill=alt.when(alt.datum.small_n).then(alt.value("white")).otherwise(alt.value(_BLUE)),
        tooltip=[
            alt.Tooltip(f"{facet}:N"),
            alt.Tooltip(f"{x}:T", format="%d %b %Y"),
            alt.Tooltip("value:Q", format=tip_fmt),
            alt.Tooltip("ci_low:Q", format=tip_fmt),
            alt.Tooltip("ci_high:Q", format=tip_fmt),
            alt.Tooltip("n:Q", format=",.0f"),
            alt.Tooltip("small_n:N"),
        ],
    )
    layers = [band, line, points]
    if target is not None:
        t = _finite(target, "target")
        layers.append(
            alt.Chart()
            .transform_aggregate(rows="count()", groupby=[facet])
            .mark_rule(color=_MUTED, strokeDash=[4, 4])
            .encode(y=alt.datum(t), tooltip=alt.value(f"target {_fmt(t, metric)}"))
        )
    chart = alt.layer(*layers, data=df).properties(width=width, height=height)
    out = chart.facet(facet=alt.Facet(f"{facet}:N", title=None, sort=order), columns=columns)
    out = _titled(out, title, _label(metric))
    if not shared_y:
        out = out.resolve_scale(y="independent")
    return out


# --------------------------------------------------------------------------- #
# comparison across units
# --------------------------------------------------------------------------- #
_FUNNEL_LIMITS = ("lower95", "upper95", "lower998", "upper998")


_FUNNEL_RENAMES = {
    "lower_95": "lower95",
    "upper_95": "upper95",
    "lower_998": "lower998",
    "upper_998": "upper998",
}


def funnel_plot(
    data: pd.DataFrame,
    *,
    limits: pd.DataFrame | None = None,
    label: str = "unit",
    metric: str | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Funnel plot: each unit's rate against its size, with control limits.

    Parameters
    ----------
    data : pandas.DataFrame
        One row per unit: ``unit, n, rate, population_rate, lower95, upper95,
        lower998, upper998, flagged`` (limits at each unit's ``n``).
    limits : pandas.DataFrame, optional
        Smooth limit curves ``n, lower95, upper95, lower998, upper998`` on a
        grid of ``n``. Without it the curves join the units' own limits.
    label : str, default "unit"
        Column naming each unit; flagged units are labelled with it.
    metric : str, optional
        Metric name, for the axis title.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Layers: the population rate (rule), the 95 % and 99.8 % limits (lines,
        dashed and solid), the units (points on a log ``n`` axis; flagged ones
        as vermillion diamonds), and text labels on the flagged units. Rates are
        shown as percentages. Rows with ``n <= 0`` cannot sit on a log axis and
        are dropped with a warning.

    Warns
    -----
    UserWarning
        When rows with ``n <= 0`` or missing ``n`` are dropped.

    Examples
    --------
    >>> import pandas as pd
    >>> data = pd.DataFrame(
    ...     {
    ...         "unit": ["m1", "m2", "m3"],
    ...         "n": [50, 200, 800],
    ...         "rate": [0.10, 0.05, 0.12],
    ...         "population_rate": 0.06,
    ...         "lower95": [0.0, 0.03, 0.045],
    ...         "upper95": [0.13, 0.093, 0.077],
    ...         "lower998": [0.0, 0.012, 0.035],
    ...         "upper998": [0.17, 0.11, 0.087],
    ...         "flagged": [False, False, True],
    ...     }
    ... )
    >>> spec = funnel_plot(data).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['rule', 'line', 'point', 'text']
    >>> spec["layer"][2]["encoding"]["x"]["scale"]["type"]
    'log'
    """
    required = (label, "n", "rate", "population_rate", *_FUNNEL_LIMITS, "flagged")
    # Accept rca.funnel output (``lower_95``...) as well as ``lower95``.
    data = data.rename(columns=_FUNNEL_RENAMES)
    if limits is not None:
        limits = limits.rename(columns=_FUNNEL_RENAMES)
    df = _frame(data, "data", required, "funnel data")
    _numeric(df, "data", ("n", "rate", "population_rate", *_FUNNEL_LIMITS))
    df["flagged"] = _flags(df["flagged"])
    if limits is None:
        lim = df[["n", *_FUNNEL_LIMITS]]
    else:
        lim = _frame(limits, "limits", ("n", *_FUNNEL_LIMITS), "limit curves")
        _numeric(lim, "limits", ("n", *_FUNNEL_LIMITS))
    drop = ~(df["n"] > 0)
    if drop.any():
        warnings.warn(
            MSG_DROPPED.format(table="data", count=int(drop.sum()), problem="n <= 0 or missing"),
            UserWarning,
            stacklevel=2,
        )
        df = df[~drop]
    lim = lim[lim["n"] > 0]
    pop = df["population_rate"].dropna()
    if pop.nunique() > 1:
        raise DataContractError(
            MSG_BAD_ROWS.format(
                table="data",
                column="population_rate",
                count=int(pop.nunique()),
                problem="of distinct values (expected one)",
                example=pop.iloc[0],
            ),
            table="data",
            column="population_rate",
            check="not_constant",
        )
    df[label] = df[label].astype("object").where(df[label].notna(), "(missing)").astype(str)
    df["status"] = np.where(df["flagged"], "outside limits", "within limits")
    long = (
        lim.drop_duplicates()
        .melt(id_vars="n", value_vars=list(_FUNNEL_LIMITS), var_name="curve", value_name="limit")
        .dropna(subset=["limit"])
    )
    long["level"] = np.where(long["curve"].str.endswith("998"), "99.8%", "95%")
    long["side"] = np.where(long["curve"].str.startswith("lower"), "lower", "upper")
    long = long.sort_values(["level", "side", "n"], kind="mergesort")[
        ["n", "level", "side", "limit"]
    ]

    y_title = f"{_label(metric)} (rate)" if metric else "rate"
    x = alt.X("n:Q", title="n (log scale)", scale=alt.Scale(type="log", nice=False, padding=12))
    y_axis = alt.Axis(format=".1~%")
    layers = []
    if not pop.empty:
        p = float(pop.iloc[0])
        layers.append(
            alt.Chart(_one_row())
            .mark_rule(color=_MUTED, strokeWidth=1.5)
            .encode(y=alt.datum(p), tooltip=alt.value(f"population rate {p:.2%}"))
        )
    lines = alt.Chart(long).mark_line(color=_MUTED, strokeWidth=1.2, interpolate="monotone")
    layers.append(
        lines.encode(
            x=x,
            y=alt.Y("limit:Q", title=y_title, axis=y_axis),
            detail="side:N",
            strokeDash=alt.StrokeDash(
                "level:N",
                title="control limit",
                scale=alt.Scale(domain=["95%", "99.8%"], range=[[5, 4], [1, 0]]),
            ),
        )
    )
    domain = ["within limits", "outside limits"]
    layers.append(
        alt.Chart(df)
        .mark_point(filled=True, opacity=0.9)
        .encode(
            x=x,
            y=alt.Y("rate:Q", title=y_title, axis=y_axis),
            color=alt.Color(
                "status:N", title=None, scale=alt.Scale(domain=domain, range=[_BLUE, _VERMILLION])
            ),
            shape=alt.Shape(
                "status:N", title=None, scale=alt.Scale(domain=domain, range=["circle", "diamond"])
            ),
            size=alt.when(alt.datum.flagged).then(alt.value(110)).otherwise(alt.value(40)),
            tooltip=[
                alt.Tooltip(f"{label}:N"),
                alt.Tooltip("n:Q", format=",.0f"),
                alt.Tooltip("rate:Q", format=".2%"),
                alt.Tooltip("lower95:Q", title="95% lower", format=".2%"),
                alt.Tooltip("upper95:Q", title="95% upper", format=".2%"),
                alt.Tooltip("lower998:Q", title="99.8% lower", format=".2%"),
                alt.Tooltip("upper998:Q", title="99.8% upper", format=".2%"),
                alt.Tooltip("status:N"),
            ],
        )
    )
    layers.append(
        alt.Chart(df[df["flagged"]])
        .mark_text(align="left", dx=7, dy=-4, fontSize=11, color=_VERMILLION)
        .encode(x=x, y="rate:Q", text=f"{label}:N")
    )
    return _titled(alt.layer(*layers), title)


def waterfall(
    contrib: pd.DataFrame,
    *,
    start_value: float,
    end_value: float,
    start_label: str = "baseline",
    end_label: str = "current",
    metric: str | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Waterfall from a baseline value to the current one through contributions.

    Parameters
    ----------
    contrib : pandas.DataFrame
        ``segment, contribution``: one row per segment, in the order to draw.
    start_value, end_value : float
        The metric in the baseline and the current period.
    start_label, end_label : str
        Labels of the two total bars.
    metric : str, optional
        Metric name: rates get percentage axes and contributions in
        percentage points.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Bars (``y``/``y2`` from the running total before and after each step)
        coloured by kind (``total``, ``increase``, ``decrease``), each with a
        text label of its amount, so the direction never rests on colour alone.
        When the contributions do not add up to ``end_value - start_value``
        (a non-additive decomposition), an ``unexplained`` bar closes the gap.
        When the steps are small against the level (e.g. accuracy 92.0 % to
        90.5 %), the y axis and the two total bars start one range of the
        running total below its minimum instead of at zero, so the steps are
        visible; the axis labels and the totals' text labels give the levels.

    Examples
    --------
    >>> import pandas as pd
    >>> contrib = pd.DataFrame({"segment": ["VendorA", "VendorB"], "contribution": [-0.02, 0.005]})
    >>> spec = waterfall(contrib, start_value=0.92, end_value=0.905, metric="accuracy").to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['bar', 'text']
    >>> [row["label"] for row in spec["datasets"][spec["data"]["name"]]]
    ['baseline', 'VendorA', 'VendorB', 'current']
    """
    df = _frame(contrib, "contrib", ("segment", "contribution"), "a decomposition")
    _numeric(df, "contrib", ("contribution",))
    start = _finite(start_value, "start_value")
    end = _finite(end_value, "end_value")
    df["segment"] = (
        df["segment"].astype("object").where(df["segment"].notna(), "(missing)").astype(str)
    )
    _check_unique(df, "contrib", ["segment"], "aggregate contributions to one row per segment")
    if (df["segment"].isin([start_label, end_label])).any():
        raise ParameterError(
            f"segment labels must differ from start_label {start_label!r} and end_label "
            f"{end_label!r}; pass other labels",
            key="start_label",
        )
    steps = df["contribution"].fillna(0.0).to_list()
    labels = df["segment"].to_list()
    residual = end - start - float(np.sum(steps))
    if abs(residual) > 1e-9 * max(1.0, abs(start), abs(end)):
        steps.append(residual)
        labels.append("unexplained")
    levels = np.cumsum([start, *steps])
    lo, hi = float(min(levels.min(), end)), float(max(levels.max(), end))
    span = (hi - lo) or max(abs(hi), 1.0) * 0.1
    # Small changes on a large level: start the axis (and the total bars) one
    # span below the lowest level so the steps are visible; else start at zero.
    floor = lo - span if lo - span > 0 else 0.0
    rows = [
        {
            "label": start_label,
            "kind": "total",
            "bar_start": floor,
            "bar_end": start,
            "amount": start,
        }
    ]
    running = start
    for lab, step in zip(labels, steps, strict=True):
        rows.append(
            {
                "label": lab,
                "kind": "increase" if step >= 0 else "decrease",
                "bar_start": running,
                "bar_end": running + step,
                "amount": step,
            }
        )
        running += step
    rows.append(
        {"label": end_label, "kind": "total", "bar_start": floor, "bar_end": end, "amount": end}
    )
    bars = pd.DataFrame(rows)
    bars["amount_label"] = [
        _fmt(r.amount, metric) if r.kind == "total" else _fmt_delta(r.amount, metric)
        for r in bars.itertuples()
    ]
    bars["top"] = bars[["bar_start", "bar_end"]].max(axis=1)
    order = bars["label"].to_list()

    x = alt.X("label:N", title=None, sort=order, axis=alt.Axis(labelAngle=-30, labelLimit=140))
    y_scale = (
        alt.Scale(zero=False, domain=[floor, hi + 0.2 * span], nice=False)
        if floor > 0
        else alt.Undefined
    )
    base = alt.Chart(bars)
    domain = ["total", "increase", "decrease"]
    bar = base.mark_bar(width={"band": 0.7}).encode(
        x=x,
        y=alt.Y("bar_start:Q", title=_label(metric), scale=y_scale, axis=_value_axis(metric)),
        y2="bar_end:Q",
        color=alt.Color(
            "kind:N",
            title=None,
            scale=alt.Scale(domain=domain, range=["#9E9E9E", _BLUE, OKABE_ITO[1]]),
        ),
        tooltip=[
            alt.Tooltip("label:N", title="step"),
            alt.Tooltip("amount_label:N", title="amount"),
            alt.Tooltip("bar_end:Q", title="running total", format=_tip_format(metric)),
        ],
    )
    text = base.mark_text(dy=-6, baseline="bottom", fontSize=11).encode(
        x=x, y="top:Q", text="amount_label:N"
    )
    return _titled((bar + text).properties(width=alt.Step(64)), title)


def scorecard_heatmap(
    scorecard: pd.DataFrame,
    *,
    rows: str | Sequence[str] = ("vendor",),
    columns: str = "metric",
    title: str | None = None,
) -> alt.LayerChart:
    """The scorecard as a grid of status-coloured cells with formatted values.

    Parameters
    ----------
    scorecard : pandas.DataFrame
        From :func:`qualitylab.scorecard.scorecard`: ``metric, value, n,
        ci_low, ci_high, status`` plus the `rows`/`columns` columns; ``target``,
        ``delta``, ``p_adjusted`` and ``small_n`` are shown in tooltips when
        present.
    rows : str or sequence of str, default ("vendor",)
        Columns forming the row label (joined with " · ").
    columns : str, default "metric"
        Column forming the columns.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Layers: rect cells coloured by ``status`` (:data:`STATUS_COLORS`), the
        value as text (percentages for rates, ``*`` when ``small_n``), and the
        status word in small text as the colour-independent cue. Tooltips give
        value, interval, ``n``, target, change and adjusted p-value.

    Raises
    ------
    DataContractError
        When two rows fall in one cell (add a column such as ``market`` to
        `rows`) or a status is not ``green/amber/red/na``.

    Examples
    --------
    >>> import pandas as pd
    >>> sc = pd.DataFrame(
    ...     {
    ...         "vendor": ["A", "A", "B"],
    ...         "metric": ["accuracy", "volume", "accuracy"],
    ...         "value": [0.95, 1200, 0.88],
    ...         "n": [400, 1200, 300],
    ...         "ci_low": [0.93, None, 0.84],
    ...         "ci_high": [0.97, None, 0.91],
    ...         "status": ["green", "na", "red"],
    ...     }
    ... )
    >>> spec = scorecard_heatmap(sc).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['rect', 'text', 'text']
    >>> [row["value_label"] for row in spec["datasets"][spec["data"]["name"]]]
    ['95.0%', '1,200', '88.0%']
    """
    row_cols = [rows] if isinstance(rows, str) else list(rows)
    if not row_cols:
        raise ParameterError(
            MSG_CHOICE.format(name="rows", allowed="one or more columns", value=rows)
        )
    required = (*row_cols, columns, "metric", "value", "n", "ci_low", "ci_high", "status")
    df = _frame(scorecard, "scorecard", tuple(dict.fromkeys(required)), "a scorecard")
    _check_unique(df, "scorecard", [*row_cols, columns], "add a column (e.g. 'market') to rows")
    df["status"] = _statuses(df, "scorecard")
    _numeric(df, "scorecard", ("value", "n", "ci_low", "ci_high"))
    metrics = df["metric"].astype(str)

    def text(col: str) -> pd.Series:
        return df[col].astype("object").where(df[col].notna(), "(missing)").astype(str)

    df["row_label"] = text(row_cols[0])
    for col in row_cols[1:]:
        df["row_label"] = df["row_label"] + " · " + text(col)
    df["column_label"] = text(columns)
    small = _flags(df["small_n"]) if "small_n" in df else pd.Series(False, index=df.index)
    df["value_label"] = [
        _fmt(v, m) + ("*" if s else "") for v, m, s in zip(df["value"], metrics, small, strict=True)
    ]
    df["interval"] = [
        f"[{_fmt(lo, m)}, {_fmt(hi, m) if pd.notna(hi) else 'not bounded'}]"
        if pd.notna(lo)
        else "–"
        for lo, hi, m in zip(df["ci_low"], df["ci_high"], metrics, strict=True)
    ]
    df["n_label"] = [f"{v:,.0f}" if pd.notna(v) else "–" for v in df["n"]]
    tips = [
        alt.Tooltip("row_label:N", title=" · ".join(row_cols)),
        alt.Tooltip("column_label:N", title=columns),
        alt.Tooltip("value_label:N", title="value"),
        alt.Tooltip("interval:N"),
        alt.Tooltip("n_label:N", title="n"),
    ]
    if "target" in df:
        df["target_label"] = [_fmt(t, m) for t, m in zip(df["target"], metrics, strict=True)]
        tips.append(alt.Tooltip("target_label:N", title="target"))
    if "delta" in df:
        df["delta_label"] = [_fmt_delta(d, m) for d, m in zip(df["delta"], metrics, strict=True)]
        tips.append(alt.Tooltip("delta_label:N", title="change"))
    if "p_adjusted" in df:
        df["p_adjusted_label"] = [
            f"{p:.3g}" if pd.notna(p) else "–"
            for p in pd.to_numeric(df["p_adjusted"], errors="coerce")
        ]
        tips.append(alt.Tooltip("p_adjusted_label:N", title="adjusted p"))
    tips.append(alt.Tooltip("status:N"))
    df["small_n"] = small
    if small.any():
        tips.append(alt.Tooltip("small_n:N", title="small n"))
    keep = ["row_label", "column_label", "status", "value_label", "interval", "n_label", "small_n"]
    keep += [c for c in ("target_label", "delta_label", "p_adjusted_label") if c in df]
    cells = df[keep].reset_index(drop=True)

    x = alt.X(
        "column_label:N",
        title=None,
        sort=list(pd.unique(cells["column_label"])),
        axis=alt.Axis(
            orient="top",
            labelAngle=-30,
            labelAlign="left",
            labelLimit=160,
            domain=False,
            ticks=False,
        ),
    )
    y = alt.Y(
        "row_label:N",
        title=None,
        sort=list(pd.unique(cells["row_label"])),
        axis=alt.Axis(domain=False, ticks=False, labelLimit=220),
    )
    color, _shape = _status_scales()
    base = alt.Chart(cells)
    rect = base.mark_rect(stroke="white", strokeWidth=2, opacity=0.9).encode(
        x=x, y=y, color=color, tooltip=tips
    )
    value = base.mark_text(dy=-5, fontSize=12, fontWeight=600, color="#000000").encode(
        x=x, y=y, text="value_label:N", tooltip=tips
    )
    word = base.mark_text(dy=9, fontSize=9, color="#000000").encode(
        x=x, y=y, text="status:N", tooltip=tips
    )
    return _titled((rect + value + word).properties(width=alt.Step(86), height=alt.Step(38)), title)


def kpi_intervals(
    frame: pd.DataFrame,
    *,
    segment: str = "vendor",
    target: float | None = None,
    metric: str | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Forest plot: one estimate and its interval per segment, against a target.

    Parameters
    ----------
    frame : pandas.DataFrame
        A metric frame or scorecard with one row per `segment`: ``value,
        ci_low, ci_high, n``; a ``status`` column colours the points (with
        matching shapes); ``small_n`` is shown in tooltips.
    segment : str, default "vendor"
        The column naming each row of the plot.
    target : float, optional
        Drawn as a dashed vertical rule.
    metric : str, optional
        Which metric to draw when `frame` holds several.
    title : str, optional
        Defaults to the metric name.

    Returns
    -------
    altair.LayerChart
        Layers: interval rules (``x``/``x2`` from ``ci_low``/``ci_high``),
        points at ``value``, then the target rule when given.

    Examples
    --------
    >>> import pandas as pd
    >>> frame = pd.DataFrame(
    ...     {
    ...         "vendor": ["A", "B"],
    ...         "metric": "accuracy",
    ...         "value": [0.93, 0.87],
    ...         "n": [400, 90],
    ...         "ci_low": [0.90, 0.79],
    ...         "ci_high": [0.95, 0.92],
    ...     }
    ... )
    >>> spec = kpi_intervals(frame, target=0.9).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['rule', 'point', 'rule']
    >>> spec["layer"][0]["encoding"]["x"]["field"], spec["layer"][0]["encoding"]["x2"]["field"]
    ('ci_low', 'ci_high')
    """
    df = _frame(frame, "frame", (segment, "value", "n", "ci_low", "ci_high"), "a metric frame")
    df, metric = _choose_metric(df, "frame", metric)
    _check_unique(df, "frame", [segment], f"filter frame to one row per {segment}")
    _numeric(df, "frame", ("value", "n", "ci_low", "ci_high"))
    df[segment] = df[segment].astype("object").where(df[segment].notna(), "(missing)").astype(str)
    df["small_n"] = _flags(df["small_n"]) if "small_n" in df else False
    has_status = "status" in df
    if has_status:
        df["status"] = _statuses(df, "frame")
    keep = [segment, "value", "n", "ci_low", "ci_high", "small_n"] + (
        ["status"] if has_status else []
    )
    df = df[keep]

    tip_fmt = _tip_format(metric)
    y = alt.Y(f"{segment}:N", title=None, sort=list(df[segment]))
    x_title = _label(metric)
    tips = [
        alt.Tooltip(f"{segment}:N"),
        alt.Tooltip("value:Q", format=tip_fmt),
        alt.Tooltip("ci_low:Q", format=tip_fmt),
        alt.Tooltip("ci_high:Q", format=tip_fmt),
        alt.Tooltip("n:Q", format=",.0f"),
        alt.Tooltip("small_n:N", title="small n"),
    ]
    base = alt.Chart(df)
    bars = base.mark_rule(color=_INK, strokeWidth=2).encode(
        x=alt.X("ci_low:Q", title=x_title, scale=alt.Scale(zero=False), axis=_value_axis(metric)),
        x2="ci_high:Q",
        y=y,
        tooltip=tips,
    )
    enc: dict[str, Any] = {
        "x": alt.X("value:Q", title=x_title, axis=_value_axis(metric)),
        "y": y,
        "tooltip": [*tips, alt.Tooltip("status:N")] if has_status else tips,
    }
    if has_status:
        enc["color"], enc["shape"] = _status_scales()
    points = base.mark_point(filled=True, size=80, opacity=1, color=_BLUE).encode(**enc)
    chart = bars + points
    if target is not None:
        t = _finite(target, "target")
        chart += (
            alt.Chart(_one_row())
            .mark_rule(color=_MUTED, strokeDash=[5, 4], strokeWidth=1.5)
            .encode(x=alt.datum(t), tooltip=alt.value(f"target {_fmt(t, metric)}"))
        )
    return _titled(chart.properties(height=alt.Step(28)), title, _label(metric) if metric else None)


# --------------------------------------------------------------------------- #
# AI model evaluation
# --------------------------------------------------------------------------- #
def _curve(
    sweep: pd.DataFrame, name: str, required: Sequence[str], color: str | None
) -> pd.DataFrame:
    """Copy, validate, and order a curve frame by descending threshold per group."""
    cols = [*required, *([color] if color else [])]
    df = _frame(sweep, name, cols, "aieval output")
    _numeric(df, name, required)
    if color:
        df[color] = df[color].astype("object").where(df[color].notna(), "(missing)").astype(str)
    keys = [color] if color else []
    df = df.sort_values(
        [*keys, "threshold"], ascending=[True] * len(keys) + [False], kind="mergesort"
    )
    df = _thin(df, keys)
    df["point_order"] = np.arange(len(df))
    return df[[*keys, *required, "point_order"]].reset_index(drop=True)


MAX_CURVE_POINTS = 250


def _thin(df: pd.DataFrame, keys: list[str], max_points: int = MAX_CURVE_POINTS) -> pd.DataFrame:
    """Keep at most ``max_points`` evenly spaced rows per curve (ends included).

    A 1,000-bin sweep drawn point by point makes a multi-megabyte report for
    no visible gain; the thinned curve is drawn from the same computed points.
    """
    groups = df.groupby(keys, sort=False) if keys else [(None, df)]
    parts = []
    for _, g in groups:
        if len(g) > max_points:
            idx = np.unique(np.linspace(0, len(g) - 1, max_points).round().astype(int))
            g = g.iloc[idx]
        parts.append(g)
    return pd.concat(parts) if parts else df


def _diagonal() -> alt.Chart:
    return (
        alt.Chart(_one_row())
        .mark_rule(color="#AAAAAA", strokeDash=[4, 4], strokeWidth=1)
        .encode(x=alt.datum(0), y=alt.datum(0), x2=alt.datum(1), y2=alt.datum(1))
    )


def _unit_axis(field: str, title: str, channel: type) -> Any:
    return channel(
        f"{field}:Q", title=title, scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".0%")
    )


def _series_encoding(color: str | None, *, points: bool = False) -> dict[str, Any]:
    """Colour and dash by the comparison column (one merged legend, on the lines)."""
    if not color:
        return {}
    if points:
        return {"color": alt.Color(f"{color}:N", legend=None)}
    return {
        "color": alt.Color(f"{color}:N", title=color),
        "strokeDash": alt.StrokeDash(f"{color}:N", title=color),
    }


def pr_curve(
    sweep: pd.DataFrame, *, color: str | None = None, title: str | None = None
) -> alt.LayerChart:
    """Precision against recall across thresholds.

    Parameters
    ----------
    sweep : pandas.DataFrame
        :func:`qualitylab.aieval.threshold_sweep` or
        :func:`qualitylab.aieval.pr_curve` output: ``threshold, precision,
        recall`` (``tp``/``fp`` and friends are not needed).
    color : str, optional
        Column naming the curves to compare (e.g. ``model``): colour and dash.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        A line and points per curve, drawn in threshold order, with a tooltip
        of threshold, precision and recall; both axes span 0-100 %.

    Examples
    --------
    >>> import pandas as pd
    >>> sweep = pd.DataFrame(
    ...     {"threshold": [0.1, 0.5, 0.9], "precision": [0.2, 0.61, 0.8], "recall": [1.0, 0.92, 0.67]}
    ... )
    >>> spec = pr_curve(sweep).to_dict()
    >>> spec["layer"][0]["mark"]["type"], spec["layer"][0]["encoding"]["x"]["field"]
    ('line', 'recall')
    """
    df = _curve(sweep, "sweep", ("threshold", "precision", "recall"), color)
    line, points = _curve_layers(
        df,
        _unit_axis("recall", "recall", alt.X),
        _unit_axis("precision", "precision", alt.Y),
        color,
        [
            alt.Tooltip("precision:Q", format=".1%"),
            alt.Tooltip("recall:Q", format=".1%"),
        ],
    )
    return _titled(
        (line + points).properties(width=340, height=320), title, "Precision-recall curve"
    )


def _curve_layers(
    df: pd.DataFrame, x: Any, y: Any, color: str | None, value_tips: list[Any]
) -> tuple[alt.Chart, alt.Chart]:
    """Line and threshold-tooltip points of a curve (one per ``color`` value)."""
    enc = {"x": x, "y": y, "order": alt.Order("point_order:Q"), **_series_encoding(color)}
    tips = [
        *([alt.Tooltip(f"{color}:N")] if color else []),
        alt.Tooltip("threshold:Q", format=".3~f"),
        *value_tips,
    ]
    base = alt.Chart(df)
    fixed = _BLUE if not color else alt.Undefined
    line = base.mark_line(strokeWidth=2, color=fixed).encode(**enc)
    points = base.mark_point(filled=True, size=24, color=fixed).encode(
        x=x, y=y, order=enc["order"], **_series_encoding(color, points=True), tooltip=tips
    )
    return line, points


def roc_curve(
    sweep: pd.DataFrame, *, color: str | None = None, title: str | None = None
) -> alt.LayerChart:
    """ROC curve: recall (true positive rate) against false positive rate.

    Parameters
    ----------
    sweep : pandas.DataFrame
        ``threshold, fpr`` and ``recall`` (threshold sweep) or ``tpr``
        (:func:`qualitylab.aieval.roc_curve`; its ``inf`` threshold is fine).
    color : str, optional
        Column naming the curves to compare (e.g. ``model``).
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Layers: the chance diagonal (dashed rule), the curve (line) and points
        with threshold tooltips.

    Examples
    --------
    >>> import pandas as pd
    >>> roc = pd.DataFrame(
    ...     {"threshold": [float("inf"), 0.9, 0.5, 0.1], "fpr": [0, 0.04, 0.15, 1], "tpr": [0, 0.67, 0.92, 1]}
    ... )
    >>> spec = roc_curve(roc).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['rule', 'line', 'point']
    """
    if isinstance(sweep, pd.DataFrame) and "recall" not in sweep.columns and "tpr" in sweep.columns:
        sweep = sweep.rename(columns={"tpr": "recall"})
    df = _curve(sweep, "sweep", ("threshold", "fpr", "recall"), color)
    line, points = _curve_layers(
        df,
        _unit_axis("fpr", "false positive rate", alt.X),
        _unit_axis("recall", "true positive rate (recall)", alt.Y),
        color,
        [
            alt.Tooltip("fpr:Q", title="false positive rate", format=".1%"),
            alt.Tooltip("recall:Q", format=".1%"),
        ],
    )
    return _titled(
        (_diagonal() + line + points).properties(width=340, height=320), title, "ROC curve"
    )


def calibration_curve(curve: pd.DataFrame, *, title: str | None = None) -> alt.LayerChart:
    """Reliability diagram: observed fraction of positives against mean score.

    Parameters
    ----------
    curve : pandas.DataFrame
        :attr:`qualitylab.aieval.CalibrationResult.curve`: ``bin, lower,
        upper, n, mean_score, frac_pos, ci_low, ci_high``.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Layers: the perfect-calibration diagonal, interval rules (``y``/``y2``
        from ``ci_low``/``ci_high``), the curve, and points sized by ``n``.

    Examples
    --------
    >>> import pandas as pd
    >>> curve = pd.DataFrame(
    ...     {
    ...         "bin": [0, 1],
    ...         "lower": [0.0, 0.5],
    ...         "upper": [0.5, 1.0],
    ...         "n": [120, 40],
    ...         "mean_score": [0.1, 0.9],
    ...         "frac_pos": [0.05, 0.8],
    ...         "ci_low": [0.02, 0.65],
    ...         "ci_high": [0.11, 0.9],
    ...     }
    ... )
    >>> spec = calibration_curve(curve).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['rule', 'rule', 'line', 'point']
    >>> spec["layer"][1]["encoding"]["y2"]["field"], spec["layer"][3]["encoding"]["size"]["field"]
    ('ci_high', 'n')
    """
    required = ("n", "mean_score", "frac_pos", "ci_low", "ci_high")
    df = _frame(curve, "curve", required, "CalibrationResult.curve")
    extra = [c for c in ("bin", "lower", "upper") if c in df.columns]
    _numeric(df, "curve", (*required, *extra))
    df = df.sort_values("mean_score", kind="mergesort")[[*extra, *required]].reset_index(drop=True)
    x = _unit_axis("mean_score", "mean predicted score", alt.X)
    y = _unit_axis("frac_pos", "observed fraction positive", alt.Y)
    tips = [
        *[alt.Tooltip(f"{c}:Q", format=".3~f") for c in extra],
        alt.Tooltip("n:Q", format=",.0f"),
        alt.Tooltip("mean_score:Q", format=".3f"),
        alt.Tooltip("frac_pos:Q", format=".1%"),
        alt.Tooltip("ci_low:Q", format=".1%"),
        alt.Tooltip("ci_high:Q", format=".1%"),
    ]
    base = alt.Chart(df)
    bars = base.mark_rule(color=_BLUE, strokeWidth=1.5).encode(
        x=x, y=_unit_axis("ci_low", "observed fraction positive", alt.Y), y2="ci_high:Q"
    )
    line = base.mark_line(color=_BLUE, strokeWidth=1.5).encode(x=x, y=y)
    points = base.mark_point(filled=True, color=_BLUE, opacity=1).encode(
        x=x,
        y=y,
        size=alt.Size("n:Q", title="n", scale=alt.Scale(range=[20, 400])),
        tooltip=tips,
    )
    return _titled(
        (_diagonal() + bars + line + points).properties(width=340, height=320), title, "Calibration"
    )


def threshold_sweep_chart(
    sweep: pd.DataFrame,
    *,
    recommended: float | None = None,
    metrics: Sequence[str] = ("precision", "recall", "fpr"),
    title: str | None = None,
) -> alt.LayerChart:
    """Rates against the decision threshold, with the recommended threshold.

    Parameters
    ----------
    sweep : pandas.DataFrame
        :func:`qualitylab.aieval.threshold_sweep` output for one model and
        segment: ``threshold`` and the `metrics` columns; ``{metric}_ci_low``
        and ``{metric}_ci_high`` columns, when all present, are drawn as bands.
    recommended : float, optional
        E.g. :attr:`ThresholdRecommendation.threshold`; drawn as a labelled rule.
    metrics : sequence of str, default ("precision", "recall", "fpr")
        Rate columns to draw.
    title : str, optional
        Chart title.

    Returns
    -------
    altair.LayerChart
        Layers: interval bands (if available), one line per metric (colour and
        dash), then the recommended-threshold rule and its label.

    Raises
    ------
    DataContractError
        When a threshold appears twice (several models or segments: filter
        first, or use :func:`pr_curve` with ``color``).

    Examples
    --------
    >>> import pandas as pd
    >>> sweep = pd.DataFrame(
    ...     {
    ...         "threshold": [0.1, 0.5, 0.9],
    ...         "precision": [0.2, 0.61, 0.8],
    ...         "recall": [1.0, 0.92, 0.67],
    ...         "fpr": [1.0, 0.15, 0.04],
    ...     }
    ... )
    >>> spec = threshold_sweep_chart(sweep, recommended=0.5).to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]]
    ['line', 'rule', 'text']
    """
    names = [metrics] if isinstance(metrics, str) else list(metrics)
    if not names:
        raise ParameterError(
            MSG_CHOICE.format(name="metrics", allowed="one or more columns", value=metrics)
        )
    df = _frame(sweep, "sweep", ("threshold", *names), "aieval.threshold_sweep output")
    _check_unique(df, "sweep", ["threshold"], "filter sweep to one model and segment")
    df = _thin(df.sort_values("threshold", kind="mergesort"), [])
    with_ci = all(f"{m}_ci_low" in df and f"{m}_ci_high" in df for m in names)
    value_cols = [
        *names,
        *([f"{m}_ci_{s}" for m in names for s in ("low", "high")] if with_ci else []),
    ]
    _numeric(df, "sweep", ("threshold", *value_cols))
    long = df.melt(id_vars="threshold", value_vars=names, var_name="rate", value_name="value")
    if with_ci:
        low = df.melt(
            id_vars="threshold", value_vars=[f"{m}_ci_low" for m in names], value_name="ci_low"
        )
        high = df.melt(
            id_vars="threshold", value_vars=[f"{m}_ci_high" for m in names], value_name="ci_high"
        )
        long["ci_low"], long["ci_high"] = low["ci_low"].to_numpy(), high["ci_high"].to_numpy()
    long = long.sort_values(["rate", "threshold"], kind="mergesort").reset_index(drop=True)

    x = alt.X(
        "threshold:Q",
        title="threshold (predict violating when score ≥ threshold)",
        scale=alt.Scale(domain=[0, 1]),
    )
    y = alt.Y("value:Q", title="rate", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".0%"))
    color = alt.Color("rate:N", title=None, sort=names)
    tips = [
        alt.Tooltip("rate:N"),
        alt.Tooltip("threshold:Q", format=".3~f"),
        alt.Tooltip("value:Q", format=".1%"),
    ]
    base = alt.Chart(long)
    layers = []
    if with_ci:
        tips += [alt.Tooltip("ci_low:Q", format=".1%"), alt.Tooltip("ci_high:Q", format=".1%")]
        layers.append(
            base.mark_area(opacity=0.15).encode(
                x=x,
                y=alt.Y(
                    "ci_low:Q",
                    title="rate",
                    scale=alt.Scale(domain=[0, 1]),
                    axis=alt.Axis(format=".0%"),
                ),
                y2="ci_high:Q",
                color=alt.Color("rate:N", sort=names, legend=None),
            )
        )
    layers.append(
        base.mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=14, filled=True)).encode(
            x=x,
            y=y,
            color=color,
            strokeDash=alt.StrokeDash("rate:N", title=None, sort=names),
            tooltip=tips,
        )
    )
    if recommended is not None:
        r = _finite(recommended, "recommended")
        note = f"recommended {r:.3g}"
        layers.append(
            alt.Chart(_one_row())
            .mark_rule(color=_INK, strokeDash=[2, 2], strokeWidth=1.5)
            .encode(x=alt.datum(r), tooltip=alt.value(note))
        )
        layers.append(
            alt.Chart(_one_row())
            .mark_text(align="left", dx=4, dy=4, baseline="top", fontSize=11, color=_INK)
            .encode(x=alt.datum(r), y=alt.value(0), text=alt.value(note))
        )
    return _titled(alt.layer(*layers), title, "Threshold sweep")


# --------------------------------------------------------------------------- #
# offline rendering
# --------------------------------------------------------------------------- #
def _vl_version() -> str | None:
    """The vega-lite version vl-convert should use: altair's, when vl-convert has it."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vlc.get_vegalite_versions() else None


def _spec(chart: Any) -> dict[str, Any]:
    if isinstance(chart, Mapping):
        return json.loads(json.dumps(chart))
    if isinstance(chart, alt.TopLevelMixin):
        return chart.to_dict()
    raise ParameterError(MSG_NOT_CHART.format(type=type(chart).__name__), key="chart")


def to_svg(chart: Any) -> str:
    """Render a chart to an SVG string offline with vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        A chart (the active altair theme applies, as in a notebook) or a
        vega-lite spec.

    Returns
    -------
    str
        The ``<svg …>`` document. External data URLs are refused, so nothing is
        fetched.
    """
    return vlc.vegalite_to_svg(_spec(chart), vl_version=_vl_version(), allowed_base_urls=[])


def to_png(chart: Any, scale: float = 1) -> bytes:
    """Render a chart to PNG bytes offline with vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        As for :func:`to_svg`.
    scale : float, default 1
        Pixel scale factor (2 for high-DPI images).

    Returns
    -------
    bytes
        The PNG file.
    """
    s = _finite(scale, "scale")
    if s <= 0:
        raise ParameterError(MSG_NUMBER.format(name="scale", value=scale), key="scale")
    return vlc.vegalite_to_png(
        _spec(chart), vl_version=_vl_version(), scale=s, allowed_base_urls=[]
    )


@functools.cache
def vega_bundle() -> str:
    """The JavaScript defining ``vegaEmbed``, ``vega`` and ``vegaLite``, inline.

    Built once per process by ``vl_convert.javascript_bundle()`` (vega,
    vega-lite at altair's version and vega-embed with every dependency, ~0.9
    MB) and cached. The report builder puts it in the page **once**, in
    ``<head>``: ``"<script>" + vega_bundle() + "</script>"``; it contains no
    ``</script`` and is wrapped so that loading it a second time in the same
    page (e.g. a notebook that also injected it) is a no-op.

    Returns
    -------
    str
        JavaScript source, no network needed.
    """
    js = vlc.javascript_bundle(vl_version=_vl_version())
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    return 'if (typeof window.vegaEmbed !== "function") {\n' + js + "\n}\n"


def _embed_json(spec: Mapping[str, Any]) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>``, ``&``, U+2028/9 left raw."""
    try:
        text = json.dumps(spec, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ParameterError(MSG_NOT_JSON.format(error=exc), key="chart") from exc
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _alt_text(spec: Mapping[str, Any]) -> str:
    t = spec.get("title")
    if isinstance(t, Mapping):
        t = t.get("text")
    if isinstance(t, list):
        t = " ".join(map(str, t))
    return str(t) if t else "chart"


_FALLBACKS = (None, "svg", "png")


def _fragment(spec: dict[str, Any], div_id: str | None, fallback: str | None) -> tuple[str, Any]:
    """The HTML fragment and the fallback image (svg str / png bytes / None)."""
    if div_id is None:
        div_id = "ql-chart-" + uuid.uuid4().hex[:12]
    elif not isinstance(div_id, str) or not _DIV_ID.match(div_id):
        raise ParameterError(MSG_DIV_ID.format(value=div_id), key="div_id")
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    spec = dict(spec)
    spec.pop("$schema", None)  # never fetched, but keep the page free of URLs
    image: Any = None
    parts = [f'<div id="{div_id}" class="qualitylab-chart"></div>']
    if fallback is not None:
        if fallback == "svg":
            image = to_svg(spec)
            uri = "data:image/svg+xml;base64," + base64.b64encode(image.encode()).decode("ascii")
        else:
            image = to_png(spec)
            uri = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
        alt_text = html.escape(_alt_text(spec), quote=True)
        parts.append(
            f'<div id="{div_id}-fallback" class="qualitylab-chart-fallback">'
            f'<img src="{uri}" alt="{alt_text}"></div>'
        )
    selector = json.dumps("#" + div_id)
    fallback_id = json.dumps(div_id + "-fallback")
    notice = json.dumps(
        "Chart not shown: the page lacks qualitylab.charts.vega_bundle() (vegaEmbed)."
    )
    parts.append(
        "<script>(function () {\n"
        f"  var spec = {_embed_json(spec)};\n"
        f"  var fallback = document.getElementById({fallback_id});\n"
        '  if (typeof vegaEmbed !== "function") {\n'
        f"    if (!fallback) {{ document.querySelector({selector}).textContent = {notice}; }}\n"
        "    return;\n"
        "  }\n"
        f'  vegaEmbed({selector}, spec, {{"actions": false, "renderer": "svg", "mode": "vega-lite"}})\n'
        "    .then(function () { if (fallback) { fallback.remove(); } })\n"
        "    .catch(function (err) { console.error(err); });\n"
        "})();</script>"
    )
    return "\n".join(parts), image


def chart_html(chart: Any, *, div_id: str | None = None, fallback: str | None = None) -> str:
    """An HTML fragment that draws the chart with the page's ``vegaEmbed``.

    Parameters
    ----------
    chart : altair chart or dict
        The chart or a vega-lite spec.
    div_id : str, optional
        ``id`` of the chart's ``<div>`` (letters, digits, ``-``, ``_``);
        a random ``ql-chart-…`` id by default.
    fallback : {None, "svg", "png"}, default None
        Also embed a static image (as a ``data:`` URI in an ``<img>``) that
        stays visible where ``vegaEmbed`` is absent (JupyterLab without the
        bundle, nbviewer, GitHub) and is removed once the interactive chart is
        drawn.

    Returns
    -------
    str
        ``<div id=…></div>``, the optional fallback, and a ``<script>`` calling
        ``vegaEmbed("#id", spec, {actions: false, renderer: "svg"})``. The
        fragment loads nothing: it relies on the ``vegaEmbed`` global that the
        report builder injects once per page in ``<head>`` from
        :func:`vega_bundle`. The spec is embedded with :func:`json.dumps` and
        every ``<``, ``>`` and ``&`` escaped as ``\\u003c``, ``\\u003e``,
        ``\\u0026`` (so ``</`` can never appear), which keeps data strings
        such as ``</script><script>alert(1)</script>`` inside their JSON
        string. The ``$schema`` URL is dropped.

    Examples
    --------
    >>> import altair as alt
    >>> import pandas as pd
    >>> chart = alt.Chart(pd.DataFrame({"v": ["</script><b>"]})).mark_text().encode(text="v")
    >>> fragment = chart_html(chart, div_id="c1")
    >>> fragment.startswith('<div id="c1"'), "</script><b>" in fragment, "vegaEmbed(\\"#c1\\"" in fragment
    (True, False, True)
    """
    return _fragment(_spec(chart), div_id, fallback)[0]


def _renderer(
    spec: dict[str, Any], fallback: str | None = "svg", inline_fallback: bool = True
) -> dict[str, Any]:
    """The ``qualitylab`` altair renderer: a mimebundle with HTML and an image."""
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    if inline_fallback and fallback is not None:
        fragment, image = _fragment(spec, None, fallback)
    else:
        fragment, image = _fragment(spec, None, None)
        if fallback == "svg":
            image = to_svg(spec)
        elif fallback == "png":
            image = to_png(spec)
    bundle: dict[str, Any] = {"text/html": fragment}
    if fallback == "svg":
        bundle["image/svg+xml"] = image
    elif fallback == "png":
        bundle["image/png"] = base64.b64encode(image).decode("ascii")
    return bundle


alt.renderers.register(RENDERER_NAME, _renderer)


def enable_offline_renderer(
    *, fallback: str | None = "svg", inline_fallback: bool = True, inject_bundle: bool = False
) -> Any:
    """Make notebooks display charts through the offline ``qualitylab`` renderer.

    Each displayed chart becomes a mimebundle: ``text/html`` from
    :func:`chart_html` (interactive, with tooltips, wherever the page has the
    :func:`vega_bundle`, e.g. the HTML report, whose builder injects it once in
    ``<head>``) and an ``image/svg+xml`` (or ``image/png``) rendering for
    frontends that do not run HTML.

    Parameters
    ----------
    fallback : {"svg", "png", None}, default "svg"
        The static rendering to include.
    inline_fallback : bool, default True
        Also put the static image inside the HTML fragment, so that JupyterLab
        (which prefers ``text/html``) shows the chart even without the bundle;
        turn off to halve the output size when every viewer has the bundle.
    inject_bundle : bool, default False
        In a running IPython kernel, also display the bundle once now, making
        charts interactive in JupyterLab (adds ~0.9 MB to the notebook; the
        bundle is a no-op where the report already loaded it).

    Returns
    -------
    altair.utils.plugin_registry.PluginEnabler
        Usable as a context manager to restore the previous renderer.
    """
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    enabler = alt.renderers.enable(
        RENDERER_NAME, fallback=fallback, inline_fallback=bool(inline_fallback)
    )
    if inject_bundle:
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:  # pragma: no cover - IPython ships with the notebook stack
            return enabler
        if get_ipython() is not None:
            display(HTML("<script>" + vega_bundle() + "</script>"))
    return enabler


# --------------------------------------------------------------------------- #
# operations: policy rollout, incident triage, capacity
# --------------------------------------------------------------------------- #
_GREEN = OKABE_ITO[2]


def rollout_chart(
    daily: pd.DataFrame,
    *,
    effective: Any,
    baseline: float | None = None,
    recovered_on: Any = None,
    metric: str = "accuracy",
    title: str | None = None,
) -> alt.LayerChart:
    """Daily accuracy around a policy change, with its interval, baseline and recovery.

    Parameters
    ----------
    daily : pandas.DataFrame
        One row per market-local day: ``date``, the metric column (default
        ``accuracy``), ``ci_low``, ``ci_high`` and ``n`` (e.g.
        :attr:`qualitylab.rollout.RolloutResult.daily` for one segment).
    effective : date-like
        Day the change took effect (purple rule).
    baseline : float, optional
        Baseline level before the change (dashed line).
    recovered_on : date-like, optional
        Day the metric recovered (green rule), if it did.
    metric : str, default "accuracy"
    title : str, optional

    Returns
    -------
    altair.LayerChart
        Interval bars, the daily line and points (tooltip with ``n``), then
        the baseline, the change and the recovery.

    Examples
    --------
    >>> import pandas as pd
    >>> d = pd.DataFrame({"date": pd.date_range("2026-11-01", periods=3), "accuracy": [0.9, 0.7, 0.88],
    ...                   "ci_low": [0.85, 0.6, 0.8], "ci_high": [0.94, 0.78, 0.93], "n": [90, 80, 85]})
    >>> spec = rollout_chart(d, effective="2026-11-02", baseline=0.9, recovered_on="2026-11-03").to_dict()
    >>> [layer["mark"]["type"] for layer in spec["layer"]][:3]
    ['rule', 'line', 'point']
    """
    df = _frame(daily, "daily", ["date", metric, "ci_low", "ci_high", "n"], "rollout daily")
    df["date"] = _datetimes(df["date"], "daily", "date")
    _numeric(df, "daily", (metric, "ci_low", "ci_high", "n"))
    df = df.sort_values("date", kind="mergesort")[["date", metric, "ci_low", "ci_high", "n"]]
    df = df.rename(columns={metric: "value"})
    fmt = _tip_format(metric)
    x = alt.X("date:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0))
    y = alt.Y(
        "value:Q", title=_label(metric), scale=alt.Scale(zero=False), axis=_value_axis(metric)
    )
    tips = [
        alt.Tooltip("date:T", format="%a %d %b %Y"),
        alt.Tooltip("value:Q", title=_label(metric), format=fmt),
        alt.Tooltip("ci_low:Q", format=fmt),
        alt.Tooltip("ci_high:Q", format=fmt),
        alt.Tooltip("n:Q", format=",.0f"),
    ]
    base = alt.Chart(df)
    bars = base.mark_rule(color=_BLUE, opacity=0.35, strokeWidth=2).encode(
        x=x, y=alt.Y("ci_low:Q", title=_label(metric), axis=_value_axis(metric)), y2="ci_high:Q"
    )
    line = base.mark_line(color=_INK, strokeWidth=1.5).encode(x=x, y=y)
    points = base.mark_point(filled=True, color=_INK, size=30).encode(x=x, y=y, tooltip=tips)
    chart = bars + line + points
    marks = []
    if baseline is not None and math.isfinite(float(baseline)):
        marks.append(
            alt.Chart(_one_row())
            .mark_rule(color=_BLUE, strokeDash=[5, 4])
            .encode(y=alt.datum(float(baseline)), tooltip=[alt.Tooltip("label:N")])
            .transform_calculate(label=f"'baseline {_fmt(baseline, metric)}'")
        )
    for when, colour, text in ((effective, _PURPLE, "change"), (recovered_on, _GREEN, "recovered")):
        if when is None or pd.isna(when):
            continue
        stamp = pd.Timestamp(when).strftime("%Y-%m-%d")
        marks.append(
            alt.Chart(_one_row())
            .mark_rule(color=colour, strokeWidth=2)
            .encode(
                x=alt.datum(alt.DateTime(**_datetime_parts(stamp))),
                tooltip=[alt.Tooltip("label:N")],
            )
            .transform_calculate(label=f"'{text} {stamp}'")
        )
    for m in marks:
        chart = chart + m
    return _titled(chart, title, f"Daily {_label(metric)} around the change")


def _datetime_parts(stamp: str) -> dict[str, int]:
    ts = pd.Timestamp(stamp)
    return {"year": ts.year, "month": ts.month, "date": ts.day}


def triage_timeline(
    timeline: pd.DataFrame,
    bands: pd.DataFrame,
    moves: pd.DataFrame | None = None,
    *,
    title: str | None = None,
) -> alt.VConcatChart:
    """One panel per signal (volume, backlog, SLA, escalations) on a shared day axis.

    Parameters
    ----------
    timeline : pandas.DataFrame
        :attr:`qualitylab.escalations.Triage.timeline`: ``date`` and one
        column per series.
    bands : pandas.DataFrame
        :attr:`~qualitylab.escalations.Triage.bands`: ``series, baseline,
        band_low, band_high``; each panel shades its normal band.
    moves : pandas.DataFrame, optional
        :attr:`~qualitylab.escalations.Triage.moves`: ``series, first_date``;
        the first day each series left its band is marked.
    title : str, optional

    Returns
    -------
    altair.VConcatChart
        Panels in the order of ``bands``, days outside the band drawn as
        vermillion diamonds, the first move as a vertical rule.

    Examples
    --------
    >>> import pandas as pd
    >>> tl = pd.DataFrame({"date": pd.date_range("2026-11-10", periods=3), "volume": [100, 260, 110]})
    >>> bands = pd.DataFrame({"series": ["volume"], "baseline": [100.0], "band_low": [70.0],
    ...                       "band_high": [130.0]})
    >>> len(triage_timeline(tl, bands).to_dict()["vconcat"])
    1
    """
    tl = _frame(timeline, "timeline", ["date"], "triage timeline")
    bd = _frame(bands, "bands", ["series", "baseline", "band_low", "band_high"], "triage bands")
    tl["date"] = _datetimes(tl["date"], "timeline", "date")
    first = {}
    if moves is not None and len(moves):
        mv = _frame(moves, "moves", ["series", "first_date"], "triage moves")
        first = {
            str(r.series): pd.Timestamp(r.first_date)
            for r in mv.itertuples()
            if r.first_date is not None and not pd.isna(r.first_date)
        }
    x = alt.X("date:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0))
    panels = []
    for b in bd.itertuples():
        series = str(b.series)
        if series not in tl.columns:
            continue
        df = pd.DataFrame({"date": tl["date"], "value": pd.to_numeric(tl[series], errors="coerce")})
        df["outside"] = (df["value"] < b.band_low) | (df["value"] > b.band_high)
        df["signal"] = np.where(df["outside"], "outside band", "normal")
        df["band_low"], df["band_high"] = float(b.band_low), float(b.band_high)
        fmt = _tip_format(series)
        y = alt.Y(
            "value:Q", title=_label(series), axis=_value_axis(series), scale=alt.Scale(zero=False)
        )
        base = alt.Chart(df)
        band = base.mark_area(color=_BLUE, opacity=0.12).encode(
            x=x, y=alt.Y("band_low:Q", title=_label(series)), y2="band_high:Q"
        )
        line = base.mark_line(color=_INK, strokeWidth=1.5).encode(x=x, y=y)
        domain = ["normal", "outside band"]
        pts = base.mark_point(filled=True, opacity=1).encode(
            x=x,
            y=y,
            color=alt.Color(
                "signal:N", title=None, scale=alt.Scale(domain=domain, range=[_INK, _VERMILLION])
            ),
            shape=alt.Shape(
                "signal:N", title=None, scale=alt.Scale(domain=domain, range=["circle", "diamond"])
            ),
            tooltip=[
                alt.Tooltip("date:T", format="%a %d %b %Y"),
                alt.Tooltip("value:Q", title=_label(series), format=fmt),
                alt.Tooltip("band_low:Q", format=fmt),
                alt.Tooltip("band_high:Q", format=fmt),
            ],
        )
        panel = band + line + pts
        if series in first:
            stamp = first[series].strftime("%Y-%m-%d")
            panel = panel + alt.Chart(_one_row()).mark_rule(
                color=_VERMILLION, strokeDash=[3, 3]
            ).encode(
                x=alt.datum(alt.DateTime(**_datetime_parts(stamp))),
                tooltip=[alt.Tooltip("label:N")],
            ).transform_calculate(label=f"'{_label(series)} first moved {stamp}'")
        panels.append(panel.properties(height=110, width=_WIDTH))
    if not panels:
        raise DataContractError(
            "triage_timeline: none of the bands' series is a column of the timeline",
            table="timeline",
            check="missing_column",
        )
    return _titled(alt.vconcat(*panels), title, "Signals day by day")


def capacity_heatmap(
    table: pd.DataFrame, *, history_days: int | None = None, title: str | None = None
) -> alt.Chart:
    """Staffing gap per queue, day and market-local hour (red: short of moderators).

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`qualitylab.capacity.capacity_table` output (``queue, date, hour,
        gap, required_agents, staffed_agents, arrivals, is_forecast``).
    history_days : int, optional
        Show only the last this many history days (and every forecast day).
    title : str, optional

    Returns
    -------
    altair.Chart
        One row of cells per queue (faceted), days across, hours down, colour the
        gap on a diverging scale centred on zero; forecast days carry a lighter
        opacity.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"queue": ["q"] * 2, "date": pd.to_datetime(["2026-11-01"] * 2), "hour": [0, 1],
    ...                   "gap": [0.5, -0.2], "required_agents": [1.5, 1.0], "staffed_agents": [1.0, 1.2],
    ...                   "arrivals": [3.0, 2.0], "is_forecast": [False, False]})
    >>> capacity_heatmap(t).to_dict()["spec"]["mark"]["type"]
    'rect'
    """
    cols = [
        "queue",
        "date",
        "hour",
        "gap",
        "required_agents",
        "staffed_agents",
        "arrivals",
        "is_forecast",
    ]
    df = _frame(table, "capacity", cols, "capacity_table")[cols]
    df["date"] = _datetimes(df["date"], "capacity", "date")
    _numeric(df, "capacity", ("hour", "gap", "required_agents", "staffed_agents", "arrivals"))
    df["kind"] = np.where(df["is_forecast"].astype(bool), "forecast", "history")
    df = df.drop(columns=["is_forecast"])
    if history_days is not None and (df["kind"] == "history").any():
        last = df.loc[df["kind"] == "history", "date"].max()
        first = last - pd.Timedelta(days=int(history_days) - 1)
        df = df[(df["kind"] == "forecast") | (df["date"] >= first)]
    limit = float(np.nanmax(np.abs(df["gap"]))) if df["gap"].notna().any() else 1.0
    chart = (
        alt.Chart(df)
        .mark_rect()
        .encode(
            x=alt.X(
                "yearmonthdate(date):O",
                title=None,
                # label Mondays only: a label per day does not fit
                axis=alt.Axis(
                    labelExpr="day(datum.value) == 1 ? timeFormat(datum.value, '%d %b') : ''",
                    labelAngle=0,
                    ticks=False,
                ),
            ),
            y=alt.Y("hour:O", title="hour (local)", axis=alt.Axis(values=list(range(0, 24, 3)))),
            color=alt.Color(
                "gap:Q",
                title="gap (moderators)",
                scale=alt.Scale(
                    scheme=DIVERGING_SCHEME, domainMid=0, domain=[-limit, limit], reverse=False
                ),
            ),
            opacity=alt.condition(alt.datum.kind == "forecast", alt.value(0.6), alt.value(1.0)),
            tooltip=[
                alt.Tooltip("queue:N"),
                alt.Tooltip("date:T", format="%a %d %b %Y"),
                alt.Tooltip("hour:O"),
                alt.Tooltip("kind:N"),
                alt.Tooltip("arrivals:Q", format=",.1f"),
                alt.Tooltip("required_agents:Q", format=",.2f"),
                alt.Tooltip("staffed_agents:Q", format=",.2f"),
                alt.Tooltip("gap:Q", format="+,.2f"),
            ],
        )
        .properties(width=_WIDTH, height=144)
        .facet(row=alt.Row("queue:N", title=None))
    )
    return _titled(chart, title, "Staffing gap: required minus staffed moderators")


def sampling_plan_chart(plan: Any, *, title: str | None = None) -> alt.LayerChart:
    """Current vs recommended weekly audits per stratum, with the strata that stay blind.

    Parameters
    ----------
    plan : SamplingPlan or pandas.DataFrame
        :func:`qualitylab.sampling.sampling_plan`'s result or its ``plan``
        table: the stratum columns (e.g. ``vendor, queue``), then
        ``current_audits, recommended_audits, audits_needed`` and the other
        plan columns.
    title : str, optional

    Returns
    -------
    altair.LayerChart
        One row per stratum: a bar per allocation (``current`` light,
        ``recommended`` dark; colour and position both tell them apart), and
        the text ``blind`` (with the audits it would need) beside strata that
        cannot show the drop with the recommended audits. Tooltips give the
        weekly decisions, accuracy, audits needed and the minimum detectable
        drop before and after.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"vendor": ["A", "B"], "queue": ["q", "q"], "weekly_decisions": [500.0, 90.0],
    ...                   "accuracy": [0.93, 0.97], "s": [0.26, 0.17], "current_audits": [40.0, 30.0],
    ...                   "audits_needed": [310.0, float("inf")], "recommended_audits": [55, 15],
    ...                   "mdc_before": [0.12, 0.2], "mdc_after": [0.1, 0.3],
    ...                   "blind_before": [True, True], "blind_after": [True, True]})
    >>> [layer["mark"]["type"] for layer in sampling_plan_chart(t).to_dict()["layer"]]
    ['bar', 'text']
    """
    from qualitylab.detection.sampling import PLAN_COLUMNS

    frame = getattr(plan, "plan", plan)
    df = _frame(frame, "sampling plan", PLAN_COLUMNS, "qualitylab.sampling.sampling_plan")
    strata = [c for c in df.columns if c not in PLAN_COLUMNS]
    if not strata:
        raise DataContractError(
            "sampling plan: no stratum columns (e.g. vendor, queue) before the plan columns",
            table="sampling plan",
            check="missing_column",
        )
    _numeric(df, "sampling plan", [c for c in PLAN_COLUMNS if not c.startswith("blind")])
    df["stratum"] = df[strata].astype("string").fillna("(none)").agg(" / ".join, axis=1)
    need = df["audits_needed"].where(np.isfinite(df["audits_needed"]))
    df["needed"] = need.map(lambda v: "no number of audits" if pd.isna(v) else f"{v:,.0f}")
    label = need.map(
        lambda v: "blind (no number of audits)" if pd.isna(v) else f"blind (needs {v:,.0f})"
    )
    df["blind"] = np.where(df["blind_after"].astype(bool), label, "")
    keep = ["stratum", "weekly_decisions", "accuracy", "needed", "mdc_before", "mdc_after"]
    long = pd.concat(
        [
            df[keep].assign(allocation="current", audits=df["current_audits"]),
            df[keep].assign(allocation="recommended", audits=df["recommended_audits"]),
        ],
        ignore_index=True,
    )
    long = long.replace([np.inf, -np.inf], np.nan)
    order = df.sort_values("weekly_decisions", ascending=False)["stratum"].tolist()
    y = alt.Y("stratum:N", title=None, sort=order)
    bars = (
        alt.Chart(long)
        .mark_bar()
        .encode(
            y=y,
            yOffset=alt.YOffset("allocation:N", sort=["current", "recommended"]),
            x=alt.X("audits:Q", title="audits a week"),
            color=alt.Color(
                "allocation:N",
                title="Allocation",
                scale=alt.Scale(
                    domain=["current", "recommended"], range=[OKABE_ITO[2], OKABE_ITO[0]]
                ),
            ),
            tooltip=[
                alt.Tooltip("stratum:N"),
                alt.Tooltip("allocation:N"),
                alt.Tooltip("audits:Q", format=",.1f"),
                alt.Tooltip("weekly_decisions:Q", title="decisions a week", format=",.0f"),
                alt.Tooltip("accuracy:Q", format=".1%"),
                alt.Tooltip("needed:N", title="audits needed"),
                alt.Tooltip("mdc_before:Q", title="detectable drop now", format=".1%"),
                alt.Tooltip("mdc_after:Q", title="detectable drop after", format=".1%"),
            ],
        )
    )
    ends = df[["stratum", "blind"]].assign(
        x=np.maximum(df["current_audits"], df["recommended_audits"])
    )
    text = (
        alt.Chart(ends)
        .mark_text(align="left", dx=4, color=_VERMILLION)
        .encode(y=y, x=alt.X("x:Q"), text=alt.Text("blind:N"))
    )
    height = max(len(df) * 28, 60)
    chart = alt.layer(bars, text).properties(width=_WIDTH, height=height)
    return _titled(chart, title, "Weekly audits per stratum: current and recommended")
