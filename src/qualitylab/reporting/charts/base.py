"""Validation and formatting helpers shared by every chart.

A chart function checks its frame once (:func:`as_frame`, :func:`check_numeric`,
:func:`check_unique`, ...), raising :class:`~qualitylab.errors.ParameterError`
or :class:`~qualitylab.errors.DataContractError` with one of the ``MSG_*``
messages, and formats values and axes per metric (:func:`fmt_value`,
:func:`value_axis`, :func:`tip_format`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import altair as alt
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.reporting.charts.theme import (
    RATE_METRICS,
    STATUS_COLORS,
    STATUS_ORDER,
    STATUS_SHAPES,
)

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


def as_frame(obj: object, name: str, required: Sequence[str], source: str) -> pd.DataFrame:
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


def check_numeric(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
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


def as_flags(values: pd.Series) -> pd.Series:
    """Booleans with missing values read as False."""
    return values.astype("object").where(values.notna(), False).astype(bool)


def as_datetimes(values: pd.Series, name: str, column: str) -> pd.Series:
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


def check_unique(frame: pd.DataFrame, name: str, keys: Sequence[str], hint: str) -> None:
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


def choose_metric(
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


def finite_number(value: object, name: str) -> float:
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


def value_axis(metric: str | None) -> alt.Axis:
    """Axis of a metric's values: percentage labels for rates."""
    fmt = _axis_format(metric)
    return alt.Axis(format=fmt) if fmt else alt.Axis()


def tip_format(metric: str | None) -> str:
    """d3 format for tooltips."""
    return ".1%" if _is_rate(metric) else ",.3~f"


def fmt_value(value: object, metric: str | None) -> str:
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


def fmt_delta(value: object, metric: str | None) -> str:
    """A signed change: percentage points for rates."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return "–"
    if not math.isfinite(v):
        return "–"
    if _is_rate(metric):
        return f"{100 * v:+.1f} pp"
    text = fmt_value(abs(v), metric)
    return ("+" if v >= 0 else "-") + text


def titled(chart: Any, title: str | None, default: str | None = None) -> Any:
    """Set the chart title when there is one (an explicit ``""`` means none)."""
    text = title if title is not None else default
    return chart.properties(title=text) if text else chart


def metric_label(metric: str | None) -> str:
    return metric.replace("_", " ") if metric else "value"


def one_row() -> alt.Data:
    """Data of one empty row, for annotation layers drawn from ``datum`` values."""
    return alt.Data(values=[{}])


def status_scales(title: str = "Status") -> tuple[alt.Color, alt.Shape]:
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


def check_statuses(frame: pd.DataFrame, name: str) -> pd.Series:
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
