"""Detection and trends: the control chart of an alert and trend small multiples."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.reporting.charts.base import (
    MSG_BAD_ROWS,
    MSG_CHOICE,
    MSG_TIMEZONE,
    as_datetimes,
    as_flags,
    as_frame,
    check_numeric,
    check_unique,
    choose_metric,
    finite_number,
    fmt_value,
    metric_label,
    tip_format,
    titled,
    value_axis,
)
from qualitylab.reporting.charts.theme import BLUE, INK, MUTED, PURPLE, VERMILLION

# --------------------------------------------------------------------------- #
# detection and trends
# --------------------------------------------------------------------------- #
_SERIES_COLUMNS = ("date", "observed", "expected", "lower", "upper", "flag")
_EVENT_COLUMNS = ("effective_at", "kind", "description")


def _event_frame(
    events: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp, timezone: str | None
) -> pd.DataFrame:
    ev = as_frame(events, "events", _EVENT_COLUMNS, "the events table")
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
    df = as_frame(series, "series", _SERIES_COLUMNS, "detector output")
    df, metric = choose_metric(df, "series", metric)
    df["date"] = as_datetimes(df["date"], "series", "date")
    check_numeric(df, "series", ("observed", "expected", "lower", "upper"))
    df["flag"] = as_flags(df["flag"])
    df["changepoint"] = as_flags(df["changepoint"]) if "changepoint" in df else False
    df["signal"] = np.where(df["flag"], "flagged", "in control")
    check_unique(df, "series", ["date"], "filter series to one segment and metric")
    df = df.sort_values("date", kind="mergesort").reset_index(drop=True)
    keep = ["date", "observed", "expected", "lower", "upper", "flag", "changepoint", "signal"]
    df = df[keep]

    tip_fmt = tip_format(metric)
    y_title = metric_label(metric)
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
    band = base.mark_area(color=BLUE, opacity=0.14).encode(
        x=x,
        y=alt.Y("lower:Q", title=y_title, scale=alt.Scale(zero=False), axis=value_axis(metric)),
        y2="upper:Q",
    )
    centre = base.mark_line(color=BLUE, strokeDash=[5, 4], strokeWidth=1.5).encode(
        x=x, y="expected:Q"
    )
    observed = base.mark_line(color=INK, strokeWidth=1.5).encode(x=x, y="observed:Q")
    domain = ["in control", "flagged"]
    points = base.mark_point(filled=True, opacity=1).encode(
        x=x,
        y=alt.Y("observed:Q", title=y_title, axis=value_axis(metric)),
        color=alt.Color(
            "signal:N", title=None, scale=alt.Scale(domain=domain, range=[INK, VERMILLION])
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
            rules = ev_base.mark_rule(color=PURPLE, strokeWidth=1.5, opacity=0.8).encode(
                x=ev_x, tooltip=ev_tips
            )
            marks = ev_base.mark_point(
                shape="triangle-down", color=PURPLE, filled=True, size=90, opacity=1
            ).encode(x=ev_x, y=alt.value(0), tooltip=ev_tips)
            chart = chart + rules + marks
    return titled(chart, title, metric_label(metric) if metric else None)


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
    df = as_frame(frame, "frame", (facet, x, "value", "n", "ci_low", "ci_high"), "a metric frame")
    df, metric = choose_metric(df, "frame", metric)
    check_unique(df, "frame", [facet, x], f"filter frame to one row per {facet} and {x}")
    if not isinstance(columns, int) or isinstance(columns, bool) or columns < 1:
        raise ParameterError(
            MSG_CHOICE.format(name="columns", allowed="integers >= 1", value=columns)
        )
    df[x] = as_datetimes(df[x], "frame", x)
    check_numeric(df, "frame", ("value", "n", "ci_low", "ci_high"))
    df["small_n"] = as_flags(df["small_n"]) if "small_n" in df else False
    df[facet] = df[facet].astype("object").where(df[facet].notna(), "(missing)").astype(str)
    order = list(pd.unique(df[facet]))
    df = df.sort_values([facet, x], kind="mergesort")[
        [facet, x, "value", "n", "ci_low", "ci_high", "small_n"]
    ]

    tip_fmt = tip_format(metric)
    xx = alt.X(f"{x}:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0, tickCount=4))
    base = alt.Chart()
    band = base.mark_area(color=BLUE, opacity=0.18).encode(
        x=xx,
        y=alt.Y(
            "ci_low:Q",
            title=metric_label(metric),
            scale=alt.Scale(zero=False),
            axis=value_axis(metric),
        ),
        y2="ci_high:Q",
    )
    line = base.mark_line(color=BLUE).encode(x=xx, y="value:Q")
    points = base.mark_point(filled=True, stroke=BLUE, strokeWidth=1.5, size=30, opacity=1).encode(
        x=xx,
        y="value:Q",
        fill=alt.when(alt.datum.small_n).then(alt.value("white")).otherwise(alt.value(BLUE)),
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
        t = finite_number(target, "target")
        layers.append(
            alt.Chart()
            .transform_aggregate(rows="count()", groupby=[facet])
            .mark_rule(color=MUTED, strokeDash=[4, 4])
            .encode(y=alt.datum(t), tooltip=alt.value(f"target {fmt_value(t, metric)}"))
        )
    chart = alt.layer(*layers, data=df).properties(width=width, height=height)
    out = chart.facet(facet=alt.Facet(f"{facet}:N", title=None, sort=order), columns=columns)
    out = titled(out, title, metric_label(metric))
    if not shared_y:
        out = out.resolve_scale(y="independent")
    return out
