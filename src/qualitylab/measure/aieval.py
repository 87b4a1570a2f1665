"""AI moderation model evaluation from score histograms.

Scored, labelled rows (``ai_score`` against a ground truth such as the QA
verdict) can run to tens of millions. The engine (DuckDB by default, any ibis
backend) reduces them in one ``GROUP BY`` to a *score histogram*: per segment and
score bin, the positive and negative counts (or weight sums). Every other
function here reasons on that histogram in pandas/numpy, so at most
``bins x segments`` rows ever leave the database.

* :func:`score_histogram` - the engine step (``[*by, bin, lower, upper, pos, neg, ...]``).
* :func:`threshold_sweep`, :func:`roc_curve`, :func:`pr_curve` - operating points.
* :func:`auc_roc`, :func:`average_precision` - ranking quality of one histogram.
* :func:`confusion_at` - the five ``ai_*`` metrics at one threshold, long and tidy.
* :func:`ai_metrics` - those metrics against QA truth for a Dataset, with
  design-weighted (stratified) intervals; :func:`scored_audits` is its input.
* :func:`recommend_threshold` - lowest threshold meeting a precision or FPR target.
* :func:`compare_models` - model B against model A with Newcombe intervals and Holm.
* :func:`calibration_histogram`, :func:`calibration` - reliability curve, ECE, MCE, Brier.

This module holds the metrics at one threshold (:func:`confusion_at`,
:func:`ai_metrics`) and is the place to import the whole AI evaluation from;
the rest lives in sibling modules by job and is re-exported here:
:mod:`qualitylab.measure.aihist` (the engine step and the checks every function
shares), :mod:`qualitylab.measure.aithresholds` (sweeps, curves, AUC, threshold
recommendation), :mod:`qualitylab.measure.aicompare` (model comparison) and
:mod:`qualitylab.measure.aicalibration` (calibration).

Bins are left-closed, ``[k / bins, (k + 1) / bins)``, the last one also holding
1.0; a score ``s`` lands in bin ``k`` exactly when ``k / bins <= s`` in float64,
so "predict positive when score >= threshold" is exact at every lower edge.

Tested in ``tests/test_aieval.py`` against scikit-learn (``confusion_matrix``,
``precision_score``, ``recall_score``, ``f1_score``, ``roc_auc_score``,
``roc_curve``, ``average_precision_score``, ``brier_score_loss``,
``calibration_curve``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.measure.aicalibration import CALIBRATION_COLUMNS as CALIBRATION_COLUMNS
from qualitylab.measure.aicalibration import CalibrationResult, calibration, calibration_histogram
from qualitylab.measure.aicompare import COMPARE_COLUMNS as COMPARE_COLUMNS
from qualitylab.measure.aicompare import COMPARED_METRICS as COMPARED_METRICS
from qualitylab.measure.aicompare import compare_models
from qualitylab.measure.aihist import HIST_COLUMNS as HIST_COLUMNS
from qualitylab.measure.aihist import HIST_REQUIRED as HIST_REQUIRED
from qualitylab.measure.aihist import (
    KEY,
    as_list,
    check_hist,
    check_int,
    check_table,
    check_unit,
    engine_aggregate,
    finish_counts,
    group_label,
    label_sums,
    score_histogram,
    snap_threshold,
    warn_runtime,
    warn_undefined,
)
from qualitylab.measure.aihist import MSG_BAD_COUNTS as MSG_BAD_COUNTS
from qualitylab.measure.aihist import MSG_BAD_ROWS as MSG_BAD_ROWS
from qualitylab.measure.aihist import MSG_COLUMN_TYPE as MSG_COLUMN_TYPE
from qualitylab.measure.aihist import MSG_DUPLICATE_BIN as MSG_DUPLICATE_BIN
from qualitylab.measure.aihist import MSG_EXCLUDED as MSG_EXCLUDED
from qualitylab.measure.aihist import MSG_INT as MSG_INT
from qualitylab.measure.aihist import MSG_MISSING_COLUMN as MSG_MISSING_COLUMN
from qualitylab.measure.aihist import MSG_NOT_EDGE as MSG_NOT_EDGE
from qualitylab.measure.aihist import MSG_NOT_FRAME as MSG_NOT_FRAME
from qualitylab.measure.aihist import MSG_NOT_TABLE as MSG_NOT_TABLE
from qualitylab.measure.aihist import MSG_RESERVED as MSG_RESERVED
from qualitylab.measure.aihist import MSG_UNDEFINED as MSG_UNDEFINED
from qualitylab.measure.aihist import MSG_UNLISTED as MSG_UNLISTED
from qualitylab.measure.aithresholds import MSG_NO_THRESHOLD as MSG_NO_THRESHOLD
from qualitylab.measure.aithresholds import MSG_TARGET as MSG_TARGET
from qualitylab.measure.aithresholds import SWEEP_COLUMNS as SWEEP_COLUMNS
from qualitylab.measure.aithresholds import (
    ThresholdRecommendation,
    auc_roc,
    average_precision,
    counts_at_hist,
    counts_from_keyed,
    pr_curve,
    recommend_threshold,
    roc_curve,
    threshold_sweep,
    with_rates,
)
from qualitylab.measure.scope import check_by
from qualitylab.measure.statbase import MSG_CONFIDENCE as MSG_CONFIDENCE
from qualitylab.measure.statbase import MSG_RANGE as MSG_RANGE
from qualitylab.measure.statbase import check_confidence
from qualitylab.measure.stats import stratified_proportion

__all__ = [
    "ai_metrics",
    "ai_metrics_from_audits",
    "scored_rows",
    "scored_audits",
    "AI_METRICS",
    "CalibrationResult",
    "ThresholdRecommendation",
    "auc_roc",
    "average_precision",
    "calibration",
    "calibration_histogram",
    "compare_models",
    "confusion_at",
    "pr_curve",
    "recommend_threshold",
    "roc_curve",
    "score_histogram",
    "threshold_sweep",
]

AI_METRICS = ("ai_precision", "ai_recall", "ai_fpr", "ai_fnr", "ai_f1")

CONFUSION_COLUMNS = ("metric", "value", "n", "ci_low", "ci_high")

MSG_UNDEFINED_SEGMENTS = (
    "{metric} is undefined for {count} segments ({why}); returning NaN, e.g. {examples}"
)

_UNDEFINED_WHY = {
    "ai_precision": "no predicted positives at this threshold",
    "ai_recall": "no actual positives",
    "ai_fpr": "no actual negatives",
    "ai_fnr": "no actual positives",
    "ai_f1": "precision or recall is undefined",
}
_UNDEFINED_EXAMPLES = 3  # segments named in the summary warning


# --------------------------------------------------------------------------- #
# one threshold
# --------------------------------------------------------------------------- #
def _f1_interval(
    cells: Sequence[float],
    w2: float,
    confidence_level: float,
    n_resamples: int,
    seed: int | None,
) -> tuple[float, float]:
    """Percentile bootstrap interval of F1 from multinomial resamples of the 2x2 table.

    `cells` is ``(tp, fp, fn, tn)`` and `w2` the sum of their squared weights.
    Every call starts a fresh generator from `seed`, so equal tables get equal
    intervals.
    """
    arr = np.array(cells, dtype=float)
    total = arr.sum()
    if not total > 0:
        return math.nan, math.nan
    n = int(round(total if w2 == total else total * total / w2))
    if n < 1:
        return math.nan, math.nan
    draws = np.random.default_rng(seed).multinomial(n, arr / total, size=n_resamples)
    tp, fp, fn = draws[:, 0], draws[:, 1], draws[:, 2]
    defined = (tp + fp > 0) & (tp + fn > 0)
    if not defined.any():
        return math.nan, math.nan
    f1 = 2.0 * tp[defined] / (2.0 * tp[defined] + fp[defined] + fn[defined])
    a = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(f1, [a, 1.0 - a])
    return float(low), float(high)


def _warn_undefined_segments(
    metric: str, by: list[str], rates: pd.DataFrame, undefined: np.ndarray
) -> None:
    """One warning for all segments where `metric` is undefined, naming the first few."""
    if not undefined.size:
        return
    why = _UNDEFINED_WHY[metric]
    if not by or undefined.size == 1:
        warn_undefined(metric, why, group_label(by, rates.iloc[undefined[0]]))
        return
    first = rates.iloc[undefined[:_UNDEFINED_EXAMPLES]]
    examples = "; ".join(group_label(by, row) or "" for _, row in first.iterrows())
    more = "; ..." if undefined.size > _UNDEFINED_EXAMPLES else ""
    warn_runtime(
        MSG_UNDEFINED_SEGMENTS.format(
            metric=metric, count=undefined.size, why=why, examples=examples + more
        )
    )


def _long_metrics(
    counts: pd.DataFrame,
    by: list[str],
    confidence_level: float,
    n_resamples: int,
    seed: int | None,
) -> pd.DataFrame:
    rates = with_rates(counts, confidence_level).reset_index(drop=True)
    f1_low = np.full(len(rates), np.nan)
    f1_high = np.full(len(rates), np.nan)
    if n_resamples:
        # one bootstrap per distinct table: each restarts the generator from `seed`,
        # so segments with equal counts share the interval (a shared stream across
        # segments would change every interval)
        cells = rates[["tp", "fp", "fn", "tn"]].to_numpy(dtype=float)
        w2 = (rates["tp_w2"] + rates["fp_w2"] + rates["fn_w2"] + rates["tn_w2"]).to_numpy(float)
        done: dict[tuple[float, ...], tuple[float, float]] = {}
        for i in np.flatnonzero(rates["f1"].notna().to_numpy()):
            table, sq = tuple(cells[i].tolist()), float(w2[i])
            if (*table, sq) not in done:
                done[(*table, sq)] = _f1_interval(table, sq, confidence_level, n_resamples, seed)
            f1_low[i], f1_high[i] = done[(*table, sq)]
    pred_pos = rates["n_tp"] + rates["n_fp"]
    actual_pos = rates["n_tp"] + rates["n_fn"]
    actual_neg = rates["n_fp"] + rates["n_tn"]
    spec = {
        "ai_precision": (
            rates["precision"],
            pred_pos,
            rates["precision_ci_low"],
            rates["precision_ci_high"],
        ),
        "ai_recall": (rates["recall"], actual_pos, rates["recall_ci_low"], rates["recall_ci_high"]),
        "ai_fpr": (rates["fpr"], actual_neg, rates["fpr_ci_low"], rates["fpr_ci_high"]),
        "ai_fnr": (
            rates["fnr"],
            actual_pos,
            1.0 - rates["recall_ci_high"],
            1.0 - rates["recall_ci_low"],
        ),
        "ai_f1": (rates["f1"], rates["n_tp"] + rates["n_fp"] + rates["n_fn"], f1_low, f1_high),
    }
    parts = []
    for order, (metric, (value, n, low, high)) in enumerate(spec.items()):
        _warn_undefined_segments(metric, by, rates, np.flatnonzero(pd.isna(value).to_numpy()))
        part = rates[by].copy()
        part["metric"] = metric
        part["value"] = np.asarray(value, dtype=float)
        part["n"] = np.asarray(n, dtype=float).astype(int)
        part["ci_low"] = np.asarray(low, dtype=float)
        part["ci_high"] = np.asarray(high, dtype=float)
        part["__row"] = np.arange(len(rates))
        part["__order"] = order
        parts.append(part)
    if not parts or not len(rates):
        return pd.DataFrame(columns=[*by, *CONFUSION_COLUMNS])
    out = pd.concat(parts, ignore_index=True).sort_values(["__row", "__order"], kind="stable")
    return out.drop(columns=["__row", "__order"]).reset_index(drop=True)[[*by, *CONFUSION_COLUMNS]]


def confusion_at(
    data: ir.Table | pd.DataFrame,
    threshold: float,
    *,
    by: Sequence[str] = (),
    score: str = "ai_score",
    truth: str = "truth",
    weight: str | None = None,
    confidence_level: float = 0.95,
    n_resamples: int = 2000,
    seed: int | None = 0,
    f1_interval: bool = True,
) -> pd.DataFrame:
    """The five ``ai_*`` metrics at one threshold, one row per segment x metric.

    Parameters
    ----------
    data : ibis.Table or pandas.DataFrame
        Either the scored rows (counted exactly in the engine at any threshold)
        or a histogram from :func:`score_histogram` (then `threshold` must be a
        lower bin edge ``k / bins``; it is snapped to the edge when within 1e-9
        bin widths).
    threshold : float
        In [0, 1]; an item is predicted positive when ``score >= threshold``.
    by : sequence of str, default ()
        Segment columns.
    score, truth, weight : str
        Column names, for table input only (see :func:`score_histogram`).
    confidence_level : float, default 0.95
    n_resamples : int, default 2000
        Bootstrap resamples for the F1 interval.
    seed : int or None, default 0
        Seed of the F1 bootstrap (the same for every segment), fixed for
        reproducible reports.
    f1_interval : bool, default True
        Compute the F1 bootstrap interval; False leaves it NaN (faster, for
        callers that do not use F1, such as detection scans).

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high]`` with metric in
        ``ai_precision, ai_recall, ai_fpr, ai_fnr, ai_f1`` (that order) and
        ``n`` the denominator in rows: predicted positives (precision), actual
        positives (recall, fnr), actual negatives (fpr), ``tp + fp + fn`` (F1).

    Raises
    ------
    ParameterError
        Bad threshold (outside [0, 1], or not an edge of a histogram), bad
        confidence level or resample count, or unlisted group columns.
    DataContractError
        As :func:`score_histogram` for table input.

    Warns
    -----
    RuntimeWarning
        For each undefined value (zero denominator): it is NaN with a NaN
        interval, never 0 or 1. F1 is undefined when precision or recall is.

    Notes
    -----
    Precision, recall and FPR have Wilson intervals (FNR the complement of
    recall's). F1 gets a percentile bootstrap interval from multinomial
    resamples of the 2x2 table :math:`(TP, FP, FN, TN)` with a fixed seed,
    dropping resamples where F1 is undefined. For weighted data rates are weight
    ratios, Wilson intervals use the Kish effective size of each denominator,
    the bootstrap draws the Kish effective total, and ``n`` counts rows.
    Values tested against scikit-learn ``confusion_matrix``, ``precision_score``,
    ``recall_score`` and ``f1_score``.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable(
    ...     {"ai_score": [0.1, 0.4, 0.6, 0.7, 0.8, 0.95], "truth": [0, 1, 0, 1, 1, 1]}
    ... )
    >>> confusion_at(t, 0.5)[["metric", "value", "n"]].round(3)
             metric  value  n
    0  ai_precision   0.75  4
    1     ai_recall   0.75  4
    2        ai_fpr   0.50  2
    3        ai_fnr   0.25  4
    4         ai_f1   0.75  5
    """
    by = as_list(by)
    confidence_level = check_confidence(confidence_level)
    n_resamples = check_int(n_resamples, "n_resamples", 1)
    if isinstance(data, pd.DataFrame):
        h = check_hist(data, by)
        counts = counts_at_hist(h, snap_threshold(threshold, h), by)
    else:
        t = check_unit(threshold, "threshold")
        name = check_table(
            data,
            score=score,
            truth=truth,
            weight=weight,
            by=by,
            reserved=(*CONFUSION_COLUMNS, KEY),
            func="confusion_at",
        )
        keyed, _ = engine_aggregate(
            data,
            score=score,
            truth=truth,
            weight=weight,
            by=by,
            key=lambda s: ibis.ifelse(s >= t, 1, 0),
            sums=label_sums(weight is not None),
            name=name,
        )
        keyed = finish_counts(keyed, weight is not None)
        counts = counts_from_keyed(keyed, by)
    return _long_metrics(counts, by, confidence_level, n_resamples if f1_interval else 0, seed)


# --------------------------------------------------------------------------- #
# Dataset-level entry points: the model's scores against QA truth
# --------------------------------------------------------------------------- #
def scored_audits(
    ds: Any,
    *,
    market: str | None = None,
    start: Any = None,
    end: Any = None,
    qa_source: str | None = "internal",
    model: str | Sequence[str] | None = None,
) -> ir.Table:
    """Audited decisions that the model scored, with ``truth`` from QA.

    ``truth`` is 1 when QA says the item violates (QA enforcement), ``w`` is
    the audit's sample weight (1 when null). Every routing is kept: the model
    scored every item, whoever acted on it.

    Returns
    -------
    ibis.Table
        Lazy; pass it to :func:`score_histogram` or :func:`confusion_at`.
    """
    from qualitylab.measure import metrics as m

    period = m.resolve_period(ds, market=market, start=start, end=end)
    j = m.audited_decisions(ds, market=market, period=period, qa_source=qa_source)
    return scored_rows(j, model=model)


def scored_rows(j: ir.Table, *, model: str | Sequence[str] | None = None) -> ir.Table:
    """The audited decisions of `j` that the model scored, with ``truth`` from QA.

    `j` is :func:`qualitylab.metrics.audited_decisions` (or an equivalent join
    of one QA source); ``truth`` is 1 when QA enforced. `model` keeps only
    those model versions (its rows need ``ai_model``).
    """
    j = j.filter(j.ai_score.notnull())
    if model is not None:
        models = [model] if isinstance(model, str) else list(model)
        j = j.filter(j.ai_model.isin(models))
    return j.mutate(truth=j.qa_enforced.cast("int64"))


def ai_metrics(
    ds: Any,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: Any = None,
    end: Any = None,
    threshold: float | None = None,
    qa_source: str | None = "internal",
    model: str | Sequence[str] | None = None,
    confidence_level: float | None = None,
    f1_interval: bool = True,
    strata: str = "auto",
) -> pd.DataFrame:
    """``ai_precision, ai_recall, ai_fpr, ai_fnr, ai_f1`` against QA truth.

    Parameters
    ----------
    ds : Dataset
    market, by, start, end
        As in :func:`qualitylab.metrics.qa_metrics`.
    threshold : float, optional
        Predict "violating" when ``ai_score >= threshold``; defaults to the
        market's ``ai_threshold`` parameter.
    qa_source : {"internal", "vendor", None}
        Whose audits are the truth.
    model : str or list of str, optional
        Restrict to model version(s); add ``"ai_model"`` to ``by`` to compare.
    f1_interval : bool, default True
        Bootstrap the F1 interval (see :func:`confusion_at`); False leaves it NaN.
    strata : {"auto", "column", "weight", "none"}, default "auto"
        Sampling strata of the audits, as in
        :func:`qualitylab.metrics.qa_metrics`.

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high, small_n]``; counts are
        design-weighted by ``sample_weight`` and ``n`` is the unweighted
        denominator (see :func:`confusion_at`).

    Notes
    -----
    Where a segment's weights differ, the intervals of ``ai_precision``,
    ``ai_recall`` and ``ai_fpr`` are those of a domain rate of a stratified
    sample (:func:`qualitylab.stats.stratified_proportion` with ``domain_n``:
    the engine aggregates per segment and stratum, the variance is combined
    over strata, and the interval is Wilson's at the design effective
    size of the denominator). With equal weights they are Wilson intervals.
    """
    from qualitylab.measure import metrics as m

    cols = check_by(by, (*m.GRAINS, *getattr(ds, "extra_grains", ())))
    params = ds.params.market(market) if market else ds.params.defaults
    thr = params.ai_threshold if threshold is None else threshold
    cl = confidence_level or params.confidence_level
    table = scored_audits(ds, market=market, start=start, end=end, qa_source=qa_source, model=model)
    out = ai_metrics_from_audits(
        table, thr, cols, confidence_level=cl, f1_interval=f1_interval, strata=strata
    )
    out["small_n"] = out["n"].fillna(0) < params.min_n
    return out[[*cols, *m.METRIC_COLUMNS]]


def ai_metrics_from_audits(
    table: ir.Table,
    threshold: float,
    by: Sequence[str] = (),
    *,
    confidence_level: float = 0.95,
    f1_interval: bool = True,
    strata: str = "auto",
) -> pd.DataFrame:
    """The rows of :func:`ai_metrics` (without ``small_n``) from scored audits.

    `table` is :func:`scored_audits` (audited decisions with ``ai_score``,
    ``truth`` and ``w``); two engine queries (the confusion counts and the
    per-stratum sums of the intervals).
    """
    cols = list(by)
    out = confusion_at(
        table,
        threshold,
        by=cols,
        weight="w",
        confidence_level=confidence_level,
        f1_interval=f1_interval,
    )
    return _stratified_intervals(out, table, threshold, cols, strata, confidence_level)


# metric: (domain, event) of the rate, as functions of (predicted, truth)
_DOMAIN_RATES: dict[str, tuple[Callable[[Any, Any], Any], Callable[[Any, Any], Any]]] = {
    "ai_precision": (lambda pred, truth: pred, lambda pred, truth: truth),
    "ai_recall": (lambda pred, truth: truth, lambda pred, truth: pred),
    "ai_fpr": (lambda pred, truth: ~truth, lambda pred, truth: pred),
}


def _stratified_intervals(
    out: pd.DataFrame,
    table: ir.Table,
    threshold: float,
    cols: list[str],
    strata: str,
    confidence_level: float,
) -> pd.DataFrame:
    """Replace the weighted rates' intervals by stratified domain intervals."""
    from qualitylab.measure import metrics as m

    t = table.mutate(_stratum=m.stratum_key(table, strata))
    pred = t.ai_score >= threshold
    truth = t.truth == 1
    aggs: dict[str, ir.Value] = {"n": t.count(), "sw": t.w.sum(), "sw2": (t.w * t.w).sum()}
    for name, (domain, event) in _DOMAIN_RATES.items():
        d = domain(pred, truth).cast("float64")
        de = (domain(pred, truth) & event(pred, truth)).cast("float64")
        aggs[f"{name}__nd"] = d.sum()
        aggs[f"{name}__w"] = (t.w * d).sum()
        aggs[f"{name}__w2"] = (t.w * t.w * d).sum()
        aggs[f"{name}__wy"] = (t.w * de).sum()
        aggs[f"{name}__w2y"] = (t.w * t.w * de).sum()
    by_h = t.group_by([*cols, "_stratum"]).aggregate(**aggs).to_pandas()
    if by_h.empty:
        return out
    sums = [c for c in by_h.columns if c not in (*cols, "_stratum")]
    if cols:
        seg = by_h.groupby(cols, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        agg = by_h.groupby(cols, sort=True, dropna=False, as_index=False)[sums].sum()
    else:
        seg = np.zeros(len(by_h), dtype=np.int64)
        agg = pd.DataFrame([by_h[sums].sum()])
    out = out.copy()
    for name in _DOMAIN_RATES:
        sp = stratified_proportion(
            by_h[f"{name}__wy"].to_numpy(float),
            by_h[f"{name}__w"].to_numpy(float),
            by_h[f"{name}__w2"].to_numpy(float),
            by_h[f"{name}__w2y"].to_numpy(float),
            n=by_h["n"].to_numpy(float),
            domain_n=by_h[f"{name}__nd"].to_numpy(float),
            segment=seg,
            confidence_level=confidence_level,
        )
        w, w2, nd = (agg[f"{name}__{k}"].to_numpy(float) for k in ("w", "w2", "nd"))
        unequal = (nd > 0) & ~np.isclose(w * w, nd * w2)
        if not unequal.any():
            continue
        res = agg.loc[unequal, cols].copy()
        res["metric"] = name
        res["_lo"] = sp.ci_low[unequal]
        res["_hi"] = sp.ci_high[unequal]
        merged = out.merge(res, on=[*cols, "metric"], how="left", indicator=True)
        hit = (merged["_merge"] == "both").to_numpy()
        out.loc[hit, "ci_low"] = merged.loc[hit, "_lo"].to_numpy()
        out.loc[hit, "ci_high"] = merged.loc[hit, "_hi"].to_numpy()
    return out
