"""Score histograms: the engine step of the AI evaluation and the checks it shares.

Scored, labelled rows (``ai_score`` against a ground truth such as the QA
verdict) can run to tens of millions. The engine (DuckDB by default, any ibis
backend) reduces them in one ``GROUP BY`` to a *score histogram*: per segment and
score bin, the positive and negative counts (or weight sums).
:func:`score_histogram` is that step (re-exported by :mod:`qualitylab.aieval`);
:func:`engine_aggregate` is the one query behind it, behind
:func:`qualitylab.aieval.calibration_histogram` and behind the exact counts of
:func:`qualitylab.aieval.confusion_at`.

The other modules of the AI evaluation (:mod:`~qualitylab.measure.aithresholds`,
:mod:`~qualitylab.measure.aicompare`, :mod:`~qualitylab.measure.aicalibration`,
:mod:`~qualitylab.measure.aieval`) validate their arguments and histograms
here, once, with the same messages, and warn through :func:`warn_runtime`.

Bins are left-closed, ``[k / bins, (k + 1) / bins)``, the last one also holding
1.0; a score ``s`` lands in bin ``k`` exactly when ``k / bins <= s`` in float64,
so "predict positive when score >= threshold" is exact at every lower edge.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.measure.statbase import MSG_RANGE

__all__ = ["HIST_COLUMNS", "score_histogram"]

#: The modules of the AI evaluation: a warning names the first caller outside them.
AI_MODULES = frozenset(
    f"qualitylab.measure.{name}"
    for name in ("aieval", "aicalibration", "aicompare", "aihist", "aithresholds")
)

HIST_COLUMNS = ("bin", "lower", "upper", "pos", "neg", "n_pos", "n_neg", "pos_w2", "neg_w2")
HIST_REQUIRED = ("lower", "upper", "pos", "neg")

# Error and warning messages are module constants so tests can assert on them.
MSG_NOT_TABLE = "{name} must be an ibis Table (wrap a pandas frame with ibis.memtable); got {type}"
MSG_NOT_FRAME = "{name} must be a pandas DataFrame from {source}; got {type}"
MSG_MISSING_COLUMN = "{table} has no column {column!r}; available columns: {available}"
MSG_COLUMN_TYPE = "{table} column {column!r} must be {expected}; got {dtype}"
MSG_RESERVED = "by must not contain {names}: those are output columns of {func}"
MSG_BAD_ROWS = "{table} column {column!r} has {count} row(s) {problem}, e.g. {example!r}"
MSG_EXCLUDED = "{table}: excluded {detail} of {total} row(s) from the AI evaluation"
MSG_UNLISTED = (
    "hist has column(s) {extra} that are neither histogram columns nor in by={by}; {hint}"
)
MSG_BAD_COUNTS = "hist column {column!r} must hold finite non-negative counts; got {example!r}"
MSG_DUPLICATE_BIN = "hist has {count} duplicate bin(s) per group, e.g. lower={example!r}; {hint}"
MSG_INT = "{name} must be an integer >= {minimum}; got {value!r}"
MSG_NOT_EDGE = (
    "threshold {value!r} is not a lower bin edge of hist (bins={bins}, edges k/{bins} for "
    "k < {bins}); use a threshold on the grid or pass the ibis table for an exact count"
)
MSG_UNDEFINED = "{metric} is undefined{where} ({why}); returning NaN"

_GROUP_HINT = "pass them in by=, or filter/aggregate hist to one histogram first"
ONE_HIST_HINT = (
    "this function takes one histogram: filter hist to one group, or use "
    "hist.groupby(by).apply(func) to get one value per group"
)

# Row status codes used in the engine query (negative = not a histogram bin).
_NULL_SCORE, _NULL_TRUTH, _BAD_SCORE, _BAD_TRUTH, _BAD_WEIGHT = -1, -2, -3, -4, -5
_EXCLUDED = {_NULL_SCORE: "null score", _NULL_TRUTH: "null truth"}
_INVALID = {
    _BAD_SCORE: ("score", "outside [0, 1] or NaN", "__ql_ex_score", "invalid_score"),
    _BAD_TRUTH: ("truth", "not in {0, 1}", "__ql_ex_truth", "invalid_truth"),
    _BAD_WEIGHT: ("weight", "negative, NaN or infinite", "__ql_ex_weight", "invalid_weight"),
}
KEY = "__ql_key"


# --------------------------------------------------------------------------- #
# validation helpers (one place, used by every public entry point)
# --------------------------------------------------------------------------- #
def as_list(by: Sequence[str] | str) -> list[str]:
    """`by` as a list of column names, refusing repeats."""
    cols = [by] if isinstance(by, str) else list(by)
    if len(set(cols)) != len(cols):
        raise ParameterError(f"by must not repeat a column; got {cols}", key="by")
    return cols


def check_int(value: object, name: str, minimum: int) -> int:
    """`value` as an int if it is an integer >= `minimum` (not a bool), else a ParameterError."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ParameterError(MSG_INT.format(name=name, minimum=minimum, value=value), key=name)
    return int(value)


def check_unit(value: object, name: str, interval: str = "[0, 1]") -> float:
    """`value` as a float in `interval` (``[0, 1]``, ``(0, 1]``...), else a ParameterError."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = math.nan
    low_ok = v > 0 if interval.startswith("(") else v >= 0
    high_ok = v < 1 if interval.endswith(")") else v <= 1
    if not (low_ok and high_ok):
        raise ParameterError(MSG_RANGE.format(name=name, interval=interval, value=value), key=name)
    return v


def _table_name(table: ir.Table) -> str:
    try:
        name = table.get_name()
    except Exception:  # expressions that are not named tables
        return "table"
    return "table" if name.startswith("ibis_") else f"table {name!r}"


def check_table(
    table: object,
    *,
    score: str,
    truth: str,
    weight: str | None,
    by: list[str],
    reserved: Sequence[str],
    func: str,
) -> str:
    """Validate an engine table once; return its display name for messages."""
    if not isinstance(table, ir.Table):
        raise ParameterError(MSG_NOT_TABLE.format(name="table", type=type(table).__name__))
    name = _table_name(table)
    clash = sorted(set(by) & set(reserved))
    if clash:
        raise ParameterError(MSG_RESERVED.format(names=clash, func=func), key="by")
    schema = table.schema()
    for col in [score, truth, *([weight] if weight else []), *by]:
        if col not in schema:
            raise DataContractError(
                MSG_MISSING_COLUMN.format(table=name, column=col, available=list(schema.names)),
                table=name,
                column=col,
                check="missing_column",
            )

    def numeric(col: str) -> bool:  # an all-null column has the null type
        return schema[col].is_numeric() or schema[col].is_null()

    for col, ok, expected in (
        (score, numeric(score), "numeric"),
        (truth, schema[truth].is_boolean() or numeric(truth), "boolean or 0/1"),
        (weight, weight is None or numeric(weight), "numeric"),
    ):
        if not ok:
            raise DataContractError(
                MSG_COLUMN_TYPE.format(
                    table=name, column=col, expected=expected, dtype=schema[col]
                ),
                table=name,
                column=col,
                check="column_type",
            )
    return name


def check_hist(
    hist: object, by: list[str], *, hint: str = _GROUP_HINT, name: str = "hist"
) -> pd.DataFrame:
    """Validate a score histogram; return a copy with every HIST_COLUMNS column.

    Only ``lower, upper, pos, neg`` are required: a hand-made histogram without
    ``n_pos, n_neg, pos_w2, neg_w2`` is taken as unweighted (counts).
    """
    if not isinstance(hist, pd.DataFrame):
        raise ParameterError(
            MSG_NOT_FRAME.format(name=name, source="score_histogram", type=type(hist).__name__)
        )
    for col in [*HIST_REQUIRED, *by]:
        if col not in hist.columns:
            raise DataContractError(
                MSG_MISSING_COLUMN.format(table=name, column=col, available=list(hist.columns)),
                table=name,
                column=col,
                check="missing_column",
            )
    extra = [c for c in hist.columns if c not in HIST_COLUMNS and c not in by]
    if extra:
        raise ParameterError(MSG_UNLISTED.format(extra=extra, by=by, hint=hint), key="by")
    out = hist.copy()
    for col, src in (("n_pos", "pos"), ("n_neg", "neg"), ("pos_w2", "pos"), ("neg_w2", "neg")):
        if col not in out.columns:
            out[col] = out[src]
    for col in ("pos", "neg", "n_pos", "n_neg", "pos_w2", "neg_w2", "lower", "upper"):
        values = pd.to_numeric(out[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values < 0)
        if np.any(bad):
            raise DataContractError(
                MSG_BAD_COUNTS.format(column=col, example=out[col].to_numpy()[bad][0]),
                table=name,
                column=col,
                check="invalid_count",
                bad_rows=int(bad.sum()),
                example=out[col].to_numpy()[bad][0],
            )
    dup = out.duplicated([*by, "lower"])
    if dup.any():
        raise DataContractError(
            MSG_DUPLICATE_BIN.format(
                count=int(dup.sum()), example=float(out.loc[dup, "lower"].iloc[0]), hint=hint
            ),
            table=name,
            column="lower",
            check="duplicate_bin",
            bad_rows=int(dup.sum()),
        )
    return out


def bins_of(hist: pd.DataFrame) -> int:
    """Number of equal-width bins on [0, 1] of a histogram (1 when it is empty)."""
    if hist.empty:
        return 1
    return int(round(1.0 / float((hist["upper"] - hist["lower"]).iloc[0])))


def snap_threshold(threshold: float, hist: pd.DataFrame, name: str = "threshold") -> float:
    """Return `threshold` as the exact float64 edge k/bins it denotes, or raise."""
    t = check_unit(threshold, name)
    if hist.empty:  # no bins to align with; every count is 0 anyway
        return t
    bins = bins_of(hist)
    k = round(t * bins)
    if k >= bins or abs(t * bins - k) > 1e-9:
        raise ParameterError(MSG_NOT_EDGE.format(value=threshold, bins=bins), key=name)
    return k / bins


def warn_runtime(message: str) -> None:
    """RuntimeWarning attributed to the first caller outside the AI evaluation modules."""
    frame, level = sys._getframe(0), 1  # level 1 is this function
    while frame is not None and frame.f_globals.get("__name__") in AI_MODULES:
        frame, level = frame.f_back, level + 1
    warnings.warn(message, RuntimeWarning, stacklevel=level)


def warn_undefined(metric: str, why: str, group: object = None) -> None:
    """Warn that `metric` is NaN (for `group`, if given) and why."""
    where = "" if group is None else f" for {group}"
    warn_runtime(MSG_UNDEFINED.format(metric=metric, where=where, why=why))


def group_label(by: list[str], row: pd.Series) -> str | None:
    """``col='value', ...`` of a row's segment, for messages; None without segments."""
    if not by:
        return None
    return ", ".join(f"{c}={row[c]!r}" for c in by)


def iter_groups(frame: pd.DataFrame, by: list[str]) -> Any:
    """Iterate ``(label, subframe)`` over groups; one anonymous group when by is empty."""
    if not by:
        yield None, frame
        return
    for key, sub in frame.groupby(by, sort=True, dropna=False):
        keys = key if isinstance(key, tuple) else (key,)
        yield ", ".join(f"{c}={k!r}" for c, k in zip(by, keys, strict=True)), sub


# --------------------------------------------------------------------------- #
# engine step
# --------------------------------------------------------------------------- #
def bin_index(s: ir.FloatingValue, bins: int) -> ir.IntegerValue:
    """Bin of a valid score: k with k/bins <= s < (k+1)/bins in float64, clipped.

    ``floor(s * bins)`` alone can be one off at an edge (0.291 * 1000 is
    290.99999999999997); the two comparisons with the float64 edges repair it,
    using only portable arithmetic and CASE.
    """
    raw = (s * bins).floor()
    fixed = ibis.cases((s < raw / bins, raw - 1), (s >= (raw + 1) / bins, raw + 1), else_=raw)
    return ibis.cases((fixed < 0, 0), (fixed > bins - 1, bins - 1), else_=fixed)


def engine_aggregate(
    table: ir.Table,
    *,
    score: str,
    truth: str,
    weight: str | None,
    by: list[str],
    key: Callable[[ir.FloatingValue], ir.IntegerValue],
    sums: Callable[[ir.Table], dict[str, ir.Scalar]],
    name: str,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Group valid rows by ``[*by, key(score)]`` in the engine, in one query.

    Rows with a null score or truth are kept out of the bins under negative
    status keys and counted (warning); rows with an invalid score, truth or
    weight raise :class:`DataContractError` with the count and an example.
    Returns the aggregate of valid rows (key column ``__ql_key``) and the counts
    of excluded rows.
    """
    schema = table.schema()
    s = table[score].cast("float64")
    truth_col = table[truth]
    if schema[truth].is_boolean():
        bad_truth: ir.BooleanValue = ibis.literal(False)
        y = truth_col.cast("int64")
        ex_truth = None
    else:
        bad_truth = ~truth_col.isin([0, 1])
        # cast only 0/1 values: casting NaN or 0.5 to an integer fails or rounds
        y = ibis.ifelse(bad_truth, 0, truth_col).cast("int64")
        ex_truth = truth_col.cast("float64")
    w = table[weight].cast("float64").fill_null(1.0) if weight else None
    bad_score = s.isnan() | (s < 0) | (s > 1)
    bad_weight = (w.isnan() | w.isinf() | (w < 0)) if w is not None else ibis.literal(False)
    status = ibis.cases(
        (s.isnull(), _NULL_SCORE),
        (truth_col.isnull(), _NULL_TRUTH),
        (bad_score, _BAD_SCORE),
        (bad_weight, _BAD_WEIGHT),
        (bad_truth, _BAD_TRUTH),
        else_=0,
    )
    cols: dict[str, ir.Value] = {
        "__ql_s": s,
        "__ql_y": y,
        "__ql_w": w if w is not None else ibis.literal(1.0),
        "__ql_status": status,
        "__ql_ex_truth": ex_truth if ex_truth is not None else ibis.literal(0.0),
    }
    t = table.select(*by, **cols)
    t = t.mutate(__ql_safe=ibis.ifelse(t["__ql_status"] == 0, t["__ql_s"], 0.0))
    t = t.mutate(
        **{
            KEY: ibis.ifelse(
                t["__ql_status"] < 0, t["__ql_status"], key(t["__ql_safe"]).cast("int64")
            )
        }
    )
    aggs = {
        "__ql_rows": t.count(),
        "__ql_ex_score": t["__ql_s"].max(),
        "__ql_ex_truth": t["__ql_ex_truth"].max(),
        "__ql_ex_weight": t["__ql_w"].min(),
        **sums(t),
    }
    res = t.group_by([*by, KEY]).aggregate(**aggs).to_pandas()
    res[KEY] = res[KEY].astype("int64")
    rows_by_key = res.groupby(KEY)["__ql_rows"].sum()
    for code, (column, problem, ex_col, check) in _INVALID.items():
        if code in rows_by_key.index:
            example = res.loc[res[KEY] == code, ex_col].iloc[0]
            col_name = {"score": score, "truth": truth, "weight": weight}[column]
            count = int(rows_by_key[code])
            raise DataContractError(
                MSG_BAD_ROWS.format(
                    table=name, column=col_name, count=count, problem=problem, example=example
                ),
                table=name,
                column=col_name,
                check=check,
                bad_rows=count,
                example=example,
            )
    excluded = {label: int(rows_by_key.get(code, 0)) for code, label in _EXCLUDED.items()}
    if any(excluded.values()):
        detail = " and ".join(f"{n} with a {label}" for label, n in excluded.items() if n)
        warn_runtime(MSG_EXCLUDED.format(table=name, detail=detail, total=int(rows_by_key.sum())))
    valid = res.loc[res[KEY] >= 0].drop(
        columns=["__ql_rows", "__ql_ex_score", "__ql_ex_truth", "__ql_ex_weight"]
    )
    return valid.reset_index(drop=True), excluded


def label_sums(weighted: bool) -> Callable[[ir.Table], dict[str, ir.Scalar]]:
    """Per-key sums for a score histogram: weighted or plain positive/negative counts."""

    def sums(t: ir.Table) -> dict[str, ir.Scalar]:
        y = t["__ql_y"]
        out = {"n_pos": y.sum(), "n_neg": (1 - y).sum()}
        if weighted:
            w = t["__ql_w"]
            out |= {
                "pos": (w * y).sum(),
                "neg": (w * (1 - y)).sum(),
                "pos_w2": (w * w * y).sum(),
                "neg_w2": (w * w * (1 - y)).sum(),
            }
        return out

    return sums


def finish_counts(frame: pd.DataFrame, weighted: bool) -> pd.DataFrame:
    """Counts from :func:`label_sums` with nulls as 0, typed; unweighted: pos/neg are the counts."""
    for col in ("n_pos", "n_neg"):
        frame[col] = frame[col].fillna(0).astype("int64")
    if weighted:
        for col in ("pos", "neg", "pos_w2", "neg_w2"):
            frame[col] = frame[col].fillna(0.0).astype("float64")
    else:
        frame["pos"], frame["neg"] = frame["n_pos"], frame["n_neg"]
        frame["pos_w2"], frame["neg_w2"] = frame["n_pos"], frame["n_neg"]
    return frame


def score_histogram(
    table: ir.Table,
    *,
    score: str = "ai_score",
    truth: str = "truth",
    weight: str | None = None,
    by: Sequence[str] = (),
    bins: int = 1000,
) -> pd.DataFrame:
    """Positive and negative counts per score bin, computed in the engine.

    Parameters
    ----------
    table : ibis.Table
        One row per scored, labelled item (e.g. decisions joined to QA audits).
    score : str, default "ai_score"
        Numeric column in [0, 1].
    truth : str, default "truth"
        Ground truth: boolean, or numeric 0/1 (1 = violating).
    weight : str, optional
        Non-negative design weight per row (e.g. ``sample_weight``); null counts
        as 1. Without it every row weighs 1.
    by : sequence of str, default ()
        Segment columns (market, vendor, ai_model...).
    bins : int, default 1000
        Number of equal-width bins on [0, 1].

    Returns
    -------
    pandas.DataFrame
        One row per populated ``(*by, bin)``, sorted by ``[*by, bin]``, columns:

        * ``*by`` - the segment;
        * ``bin`` - int, ``k`` such that ``lower <= score < upper``;
        * ``lower``, ``upper`` - ``k / bins`` and ``(k + 1) / bins`` (the last
          bin also holds 1.0);
        * ``pos``, ``neg`` - rows (int) or weight sums (float, weighted) with
          truth 1 and 0;
        * ``n_pos``, ``n_neg`` - raw row counts (equal to pos/neg unweighted);
        * ``pos_w2``, ``neg_w2`` - sums of squared weights, for Kish effective
          sample sizes (equal to pos/neg unweighted).

        ``attrs["excluded_rows"]`` holds ``{"null score": k, "null truth": m}``.

    Raises
    ------
    ParameterError
        `table` is not an ibis table, `bins` < 1, or `by` names an output column.
    DataContractError
        A column is missing or of the wrong type, or rows have a score outside
        [0, 1] (or NaN), a truth outside {0, 1}, or a negative/NaN/infinite
        weight; the message gives the count and an example (a row with several
        problems is counted once, under score, then weight, then truth).

    Warns
    -----
    RuntimeWarning
        When rows with a null score or a null truth were excluded (with counts).

    Notes
    -----
    One engine query: rows are projected to the needed columns, given a status
    (null/invalid) or a bin ``clip(floor(score * bins), 0, bins - 1)`` corrected
    by one where float rounding puts a score on the wrong side of an edge, then
    ``GROUP BY [*by, bin]`` with sums. Only arithmetic, ``floor``, ``CASE`` and
    sums are used, so the expression runs on any ibis backend. Null and invalid
    rows come back as at most five status rows per segment, never row-level.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable(
    ...     {"ai_score": [0.12, 0.34, 0.35, 0.81, 0.97], "truth": [0, 0, 1, 1, 1]}
    ... )
    >>> score_histogram(t, bins=10)[["bin", "lower", "upper", "pos", "neg"]]
       bin  lower  upper  pos  neg
    0    1    0.1    0.2    0    1
    1    3    0.3    0.4    1    1
    2    8    0.8    0.9    1    0
    3    9    0.9    1.0    1    0
    """
    by = as_list(by)
    bins = check_int(bins, "bins", 1)
    name = check_table(
        table,
        score=score,
        truth=truth,
        weight=weight,
        by=by,
        reserved=HIST_COLUMNS,
        func="score_histogram",
    )
    agg, excluded = engine_aggregate(
        table,
        score=score,
        truth=truth,
        weight=weight,
        by=by,
        key=lambda s: bin_index(s, bins),
        sums=label_sums(weight is not None),
        name=name,
    )
    hist = finish_counts(agg.rename(columns={KEY: "bin"}), weight is not None)
    hist["lower"] = hist["bin"] / bins
    hist["upper"] = (hist["bin"] + 1) / bins
    hist = hist.sort_values([*by, "bin"], kind="mergesort").reset_index(drop=True)
    hist = hist[[*by, *HIST_COLUMNS]]
    hist.attrs["excluded_rows"] = excluded
    return hist
