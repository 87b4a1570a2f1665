"""Comparison across units: funnel plot, waterfall, scorecard heatmap, KPI intervals."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.reporting.charts.base import (
    MSG_BAD_ROWS,
    MSG_CHOICE,
    MSG_DROPPED,
    as_flags,
    as_frame,
    check_numeric,
    check_statuses,
    check_unique,
    choose_metric,
    finite_number,
    fmt_delta,
    fmt_value,
    metric_label,
    one_row,
    status_scales,
    tip_format,
    titled,
    value_axis,
)
from qualitylab.reporting.charts.theme import BLUE, INK, MUTED, OKABE_ITO, VERMILLION

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
    df = as_frame(data, "data", required, "funnel data")
    check_numeric(df, "data", ("n", "rate", "population_rate", *_FUNNEL_LIMITS))
    df["flagged"] = as_flags(df["flagged"])
    if limits is None:
        lim = df[["n", *_FUNNEL_LIMITS]]
    else:
        lim = as_frame(limits, "limits", ("n", *_FUNNEL_LIMITS), "limit curves")
        check_numeric(lim, "limits", ("n", *_FUNNEL_LIMITS))
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

    y_title = f"{metric_label(metric)} (rate)" if metric else "rate"
    x = alt.X("n:Q", title="n (log scale)", scale=alt.Scale(type="log", nice=False, padding=12))
    y_axis = alt.Axis(format=".1~%")
    layers = []
    if not pop.empty:
        p = float(pop.iloc[0])
        layers.append(
            alt.Chart(one_row())
            .mark_rule(color=MUTED, strokeWidth=1.5)
            .encode(y=alt.datum(p), tooltip=alt.value(f"population rate {p:.2%}"))
        )
    lines = alt.Chart(long).mark_line(color=MUTED, strokeWidth=1.2, interpolate="monotone")
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
                "status:N", title=None, scale=alt.Scale(domain=domain, range=[BLUE, VERMILLION])
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
        .mark_text(align="left", dx=7, dy=-4, fontSize=11, color=VERMILLION)
        .encode(x=x, y="rate:Q", text=f"{label}:N")
    )
    return titled(alt.layer(*layers), title)


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
    df = as_frame(contrib, "contrib", ("segment", "contribution"), "a decomposition")
    check_numeric(df, "contrib", ("contribution",))
    start = finite_number(start_value, "start_value")
    end = finite_number(end_value, "end_value")
    df["segment"] = (
        df["segment"].astype("object").where(df["segment"].notna(), "(missing)").astype(str)
    )
    check_unique(df, "contrib", ["segment"], "aggregate contributions to one row per segment")
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
        fmt_value(r.amount, metric) if r.kind == "total" else fmt_delta(r.amount, metric)
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
        y=alt.Y("bar_start:Q", title=metric_label(metric), scale=y_scale, axis=value_axis(metric)),
        y2="bar_end:Q",
        color=alt.Color(
            "kind:N",
            title=None,
            scale=alt.Scale(domain=domain, range=["#9E9E9E", BLUE, OKABE_ITO[1]]),
        ),
        tooltip=[
            alt.Tooltip("label:N", title="step"),
            alt.Tooltip("amount_label:N", title="amount"),
            alt.Tooltip("bar_end:Q", title="running total", format=tip_format(metric)),
        ],
    )
    text = base.mark_text(dy=-6, baseline="bottom", fontSize=11).encode(
        x=x, y="top:Q", text="amount_label:N"
    )
    return titled((bar + text).properties(width=alt.Step(64)), title)


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
    df = as_frame(scorecard, "scorecard", tuple(dict.fromkeys(required)), "a scorecard")
    check_unique(df, "scorecard", [*row_cols, columns], "add a column (e.g. 'market') to rows")
    df["status"] = check_statuses(df, "scorecard")
    check_numeric(df, "scorecard", ("value", "n", "ci_low", "ci_high"))
    metrics = df["metric"].astype(str)

    def text(col: str) -> pd.Series:
        return df[col].astype("object").where(df[col].notna(), "(missing)").astype(str)

    df["row_label"] = text(row_cols[0])
    for col in row_cols[1:]:
        df["row_label"] = df["row_label"] + " · " + text(col)
    df["column_label"] = text(columns)
    small = as_flags(df["small_n"]) if "small_n" in df else pd.Series(False, index=df.index)
    df["value_label"] = [
        fmt_value(v, m) + ("*" if s else "")
        for v, m, s in zip(df["value"], metrics, small, strict=True)
    ]
    df["interval"] = [
        f"[{fmt_value(lo, m)}, {fmt_value(hi, m) if pd.notna(hi) else 'not bounded'}]"
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
        df["target_label"] = [fmt_value(t, m) for t, m in zip(df["target"], metrics, strict=True)]
        tips.append(alt.Tooltip("target_label:N", title="target"))
    if "delta" in df:
        df["delta_label"] = [fmt_delta(d, m) for d, m in zip(df["delta"], metrics, strict=True)]
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
    color, _shape = status_scales()
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
    return titled((rect + value + word).properties(width=alt.Step(86), height=alt.Step(38)), title)


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
    df = as_frame(frame, "frame", (segment, "value", "n", "ci_low", "ci_high"), "a metric frame")
    df, metric = choose_metric(df, "frame", metric)
    check_unique(df, "frame", [segment], f"filter frame to one row per {segment}")
    check_numeric(df, "frame", ("value", "n", "ci_low", "ci_high"))
    df[segment] = df[segment].astype("object").where(df[segment].notna(), "(missing)").astype(str)
    df["small_n"] = as_flags(df["small_n"]) if "small_n" in df else False
    has_status = "status" in df
    if has_status:
        df["status"] = check_statuses(df, "frame")
    keep = [segment, "value", "n", "ci_low", "ci_high", "small_n"] + (
        ["status"] if has_status else []
    )
    df = df[keep]

    tip_fmt = tip_format(metric)
    y = alt.Y(f"{segment}:N", title=None, sort=list(df[segment]))
    x_title = metric_label(metric)
    tips = [
        alt.Tooltip(f"{segment}:N"),
        alt.Tooltip("value:Q", format=tip_fmt),
        alt.Tooltip("ci_low:Q", format=tip_fmt),
        alt.Tooltip("ci_high:Q", format=tip_fmt),
        alt.Tooltip("n:Q", format=",.0f"),
        alt.Tooltip("small_n:N", title="small n"),
    ]
    base = alt.Chart(df)
    bars = base.mark_rule(color=INK, strokeWidth=2).encode(
        x=alt.X("ci_low:Q", title=x_title, scale=alt.Scale(zero=False), axis=value_axis(metric)),
        x2="ci_high:Q",
        y=y,
        tooltip=tips,
    )
    enc: dict[str, Any] = {
        "x": alt.X("value:Q", title=x_title, axis=value_axis(metric)),
        "y": y,
        "tooltip": [*tips, alt.Tooltip("status:N")] if has_status else tips,
    }
    if has_status:
        enc["color"], enc["shape"] = status_scales()
    points = base.mark_point(filled=True, size=80, opacity=1, color=BLUE).encode(**enc)
    chart = bars + points
    if target is not None:
        t = finite_number(target, "target")
        chart += (
            alt.Chart(one_row())
            .mark_rule(color=MUTED, strokeDash=[5, 4], strokeWidth=1.5)
            .encode(x=alt.datum(t), tooltip=alt.value(f"target {fmt_value(t, metric)}"))
        )
    return titled(
        chart.properties(height=alt.Step(28)), title, metric_label(metric) if metric else None
    )
