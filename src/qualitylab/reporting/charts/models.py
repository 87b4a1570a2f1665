"""AI model evaluation: precision-recall, ROC, calibration and threshold sweep charts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from qualitylab.errors import ParameterError
from qualitylab.reporting.charts.base import (
    MSG_CHOICE,
    as_frame,
    check_numeric,
    check_unique,
    finite_number,
    one_row,
    titled,
)
from qualitylab.reporting.charts.theme import BLUE, INK


# --------------------------------------------------------------------------- #
# AI model evaluation
# --------------------------------------------------------------------------- #
def _curve(
    sweep: pd.DataFrame, name: str, required: Sequence[str], color: str | None
) -> pd.DataFrame:
    """Copy, validate, and order a curve frame by descending threshold per group."""
    cols = [*required, *([color] if color else [])]
    df = as_frame(sweep, name, cols, "aieval output")
    check_numeric(df, name, required)
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
        alt.Chart(one_row())
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
    return titled(
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
    fixed = BLUE if not color else alt.Undefined
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
    return titled(
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
    df = as_frame(curve, "curve", required, "CalibrationResult.curve")
    extra = [c for c in ("bin", "lower", "upper") if c in df.columns]
    check_numeric(df, "curve", (*required, *extra))
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
    bars = base.mark_rule(color=BLUE, strokeWidth=1.5).encode(
        x=x, y=_unit_axis("ci_low", "observed fraction positive", alt.Y), y2="ci_high:Q"
    )
    line = base.mark_line(color=BLUE, strokeWidth=1.5).encode(x=x, y=y)
    points = base.mark_point(filled=True, color=BLUE, opacity=1).encode(
        x=x,
        y=y,
        size=alt.Size("n:Q", title="n", scale=alt.Scale(range=[20, 400])),
        tooltip=tips,
    )
    return titled(
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
    df = as_frame(sweep, "sweep", ("threshold", *names), "aieval.threshold_sweep output")
    check_unique(df, "sweep", ["threshold"], "filter sweep to one model and segment")
    df = _thin(df.sort_values("threshold", kind="mergesort"), [])
    with_ci = all(f"{m}_ci_low" in df and f"{m}_ci_high" in df for m in names)
    value_cols = [
        *names,
        *([f"{m}_ci_{s}" for m in names for s in ("low", "high")] if with_ci else []),
    ]
    check_numeric(df, "sweep", ("threshold", *value_cols))
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
        r = finite_number(recommended, "recommended")
        note = f"recommended {r:.3g}"
        layers.append(
            alt.Chart(one_row())
            .mark_rule(color=INK, strokeDash=[2, 2], strokeWidth=1.5)
            .encode(x=alt.datum(r), tooltip=alt.value(note))
        )
        layers.append(
            alt.Chart(one_row())
            .mark_text(align="left", dx=4, dy=4, baseline="top", fontSize=11, color=INK)
            .encode(x=alt.datum(r), y=alt.value(0), text=alt.value(note))
        )
    return titled(alt.layer(*layers), title, "Threshold sweep")
