"""Operations: policy rollout, incident triage timeline, capacity heatmap, sampling plan."""

from __future__ import annotations

import math
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError
from qualitylab.reporting.charts.base import (
    as_datetimes,
    as_frame,
    check_numeric,
    fmt_value,
    metric_label,
    one_row,
    tip_format,
    titled,
    value_axis,
)
from qualitylab.reporting.charts.theme import (
    BLUE,
    DIVERGING_SCHEME,
    INK,
    OKABE_ITO,
    PURPLE,
    VERMILLION,
    WIDTH,
)

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
    df = as_frame(daily, "daily", ["date", metric, "ci_low", "ci_high", "n"], "rollout daily")
    df["date"] = as_datetimes(df["date"], "daily", "date")
    check_numeric(df, "daily", (metric, "ci_low", "ci_high", "n"))
    df = df.sort_values("date", kind="mergesort")[["date", metric, "ci_low", "ci_high", "n"]]
    df = df.rename(columns={metric: "value"})
    fmt = tip_format(metric)
    x = alt.X("date:T", title=None, axis=alt.Axis(format="%d %b", labelAngle=0))
    y = alt.Y(
        "value:Q", title=metric_label(metric), scale=alt.Scale(zero=False), axis=value_axis(metric)
    )
    tips = [
        alt.Tooltip("date:T", format="%a %d %b %Y"),
        alt.Tooltip("value:Q", title=metric_label(metric), format=fmt),
        alt.Tooltip("ci_low:Q", format=fmt),
        alt.Tooltip("ci_high:Q", format=fmt),
        alt.Tooltip("n:Q", format=",.0f"),
    ]
    base = alt.Chart(df)
    bars = base.mark_rule(color=BLUE, opacity=0.35, strokeWidth=2).encode(
        x=x,
        y=alt.Y("ci_low:Q", title=metric_label(metric), axis=value_axis(metric)),
        y2="ci_high:Q",
    )
    line = base.mark_line(color=INK, strokeWidth=1.5).encode(x=x, y=y)
    points = base.mark_point(filled=True, color=INK, size=30).encode(x=x, y=y, tooltip=tips)
    chart = bars + line + points
    marks = []
    if baseline is not None and math.isfinite(float(baseline)):
        marks.append(
            alt.Chart(one_row())
            .mark_rule(color=BLUE, strokeDash=[5, 4])
            .encode(y=alt.datum(float(baseline)), tooltip=[alt.Tooltip("label:N")])
            .transform_calculate(label=f"'baseline {fmt_value(baseline, metric)}'")
        )
    for when, colour, text in ((effective, PURPLE, "change"), (recovered_on, _GREEN, "recovered")):
        if when is None or pd.isna(when):
            continue
        stamp = pd.Timestamp(when).strftime("%Y-%m-%d")
        marks.append(
            alt.Chart(one_row())
            .mark_rule(color=colour, strokeWidth=2)
            .encode(
                x=alt.datum(alt.DateTime(**_datetime_parts(stamp))),
                tooltip=[alt.Tooltip("label:N")],
            )
            .transform_calculate(label=f"'{text} {stamp}'")
        )
    for m in marks:
        chart = chart + m
    return titled(chart, title, f"Daily {metric_label(metric)} around the change")


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
    tl = as_frame(timeline, "timeline", ["date"], "triage timeline")
    bd = as_frame(bands, "bands", ["series", "baseline", "band_low", "band_high"], "triage bands")
    tl["date"] = as_datetimes(tl["date"], "timeline", "date")
    first = {}
    if moves is not None and len(moves):
        mv = as_frame(moves, "moves", ["series", "first_date"], "triage moves")
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
        fmt = tip_format(series)
        y = alt.Y(
            "value:Q",
            title=metric_label(series),
            axis=value_axis(series),
            scale=alt.Scale(zero=False),
        )
        base = alt.Chart(df)
        band = base.mark_area(color=BLUE, opacity=0.12).encode(
            x=x, y=alt.Y("band_low:Q", title=metric_label(series)), y2="band_high:Q"
        )
        line = base.mark_line(color=INK, strokeWidth=1.5).encode(x=x, y=y)
        domain = ["normal", "outside band"]
        pts = base.mark_point(filled=True, opacity=1).encode(
            x=x,
            y=y,
            color=alt.Color(
                "signal:N", title=None, scale=alt.Scale(domain=domain, range=[INK, VERMILLION])
            ),
            shape=alt.Shape(
                "signal:N", title=None, scale=alt.Scale(domain=domain, range=["circle", "diamond"])
            ),
            tooltip=[
                alt.Tooltip("date:T", format="%a %d %b %Y"),
                alt.Tooltip("value:Q", title=metric_label(series), format=fmt),
                alt.Tooltip("band_low:Q", format=fmt),
                alt.Tooltip("band_high:Q", format=fmt),
            ],
        )
        panel = band + line + pts
        if series in first:
            stamp = first[series].strftime("%Y-%m-%d")
            panel = panel + alt.Chart(one_row()).mark_rule(
                color=VERMILLION, strokeDash=[3, 3]
            ).encode(
                x=alt.datum(alt.DateTime(**_datetime_parts(stamp))),
                tooltip=[alt.Tooltip("label:N")],
            ).transform_calculate(label=f"'{metric_label(series)} first moved {stamp}'")
        panels.append(panel.properties(height=110, width=WIDTH))
    if not panels:
        raise DataContractError(
            "triage_timeline: none of the bands' series is a column of the timeline",
            table="timeline",
            check="missing_column",
        )
    return titled(alt.vconcat(*panels), title, "Signals day by day")


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
    df = as_frame(table, "capacity", cols, "capacity_table")[cols]
    df["date"] = as_datetimes(df["date"], "capacity", "date")
    check_numeric(df, "capacity", ("hour", "gap", "required_agents", "staffed_agents", "arrivals"))
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
        .properties(width=WIDTH, height=144)
        .facet(row=alt.Row("queue:N", title=None))
    )
    return titled(chart, title, "Staffing gap: required minus staffed moderators")


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
    df = as_frame(frame, "sampling plan", PLAN_COLUMNS, "qualitylab.sampling.sampling_plan")
    strata = [c for c in df.columns if c not in PLAN_COLUMNS]
    if not strata:
        raise DataContractError(
            "sampling plan: no stratum columns (e.g. vendor, queue) before the plan columns",
            table="sampling plan",
            check="missing_column",
        )
    check_numeric(df, "sampling plan", [c for c in PLAN_COLUMNS if not c.startswith("blind")])
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
        .mark_text(align="left", dx=4, color=VERMILLION)
        .encode(y=y, x=alt.X("x:Q"), text=alt.Text("blind:N"))
    )
    height = max(len(df) * 28, 60)
    chart = alt.layer(bars, text).properties(width=WIDTH, height=height)
    return titled(chart, title, "Weekly audits per stratum: current and recommended")
