"""What a score threshold does: confusion counts and rates at every threshold.

From a score histogram (:func:`qualitylab.aieval.score_histogram`), in pandas:

* :func:`threshold_sweep`, :func:`roc_curve`, :func:`pr_curve` - operating points.
* :func:`auc_roc`, :func:`average_precision` - ranking quality of one histogram.
* :func:`recommend_threshold` - lowest threshold meeting a precision or FPR target.

:func:`cumulative_counts`, :func:`counts_at_hist` and :func:`with_rates` are the
confusion counts and rates the other modules of the AI evaluation build on.
Everything public here is re-exported by :mod:`qualitylab.aieval`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from qualitylab.errors import ParameterError
from qualitylab.measure.aihist import (
    HIST_COLUMNS,
    KEY,
    ONE_HIST_HINT,
    as_list,
    check_hist,
    check_unit,
    iter_groups,
    snap_threshold,
    warn_runtime,
    warn_undefined,
)
from qualitylab.measure.statbase import check_confidence
from qualitylab.measure.stats import proportion_ci

__all__ = [
    "SWEEP_COLUMNS",
    "ThresholdRecommendation",
    "auc_roc",
    "average_precision",
    "pr_curve",
    "recommend_threshold",
    "roc_curve",
    "threshold_sweep",
]

MSG_TARGET = "exactly one of target_precision and target_fpr is required; got {got}"
MSG_NO_THRESHOLD = "no threshold meets {criterion}; returning a NaN threshold"

# --------------------------------------------------------------------------- #
# confusion counts and rates
# --------------------------------------------------------------------------- #
_COUNT_COLS = ("tp", "fp", "fn", "tn", "n_tp", "n_fp", "n_fn", "n_tn")
_COUNT_COLS += ("tp_w2", "fp_w2", "fn_w2", "tn_w2")


def cumulative_counts(hist: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Confusion counts at every populated lower edge (positive when score >= edge)."""
    h = hist.sort_values([*by, "lower"], ascending=[True] * len(by) + [False], kind="mergesort")
    h = h.reset_index(drop=True)
    src = {"tp": "pos", "fp": "neg", "n_tp": "n_pos", "n_fp": "n_neg"}
    src |= {"tp_w2": "pos_w2", "fp_w2": "neg_w2"}
    out = h[by].copy()
    out["threshold"] = h["lower"].astype(float)
    grouped = h.groupby(by, sort=False, dropna=False) if by else None
    for dst, col in src.items():
        values = h[col].astype(float)
        out[dst] = grouped[col].cumsum().astype(float) if grouped is not None else values.cumsum()
    # totals as the last cumulative value, so tp <= total holds exactly
    totals = out.groupby(by, sort=False, dropna=False) if by else None
    for pred, miss in (("tp", "fn"), ("fp", "tn")):
        for prefix, suffix in (("", ""), ("n_", ""), ("", "_w2")):
            have = f"{prefix}{pred}{suffix}"
            if totals is not None:
                total = totals[have].transform("last")
            else:
                total = out[have].iloc[-1] if len(out) else 0.0
            out[f"{prefix}{miss}{suffix}"] = np.maximum(total - out[have], 0.0)
    return out


def _ratio(
    num: np.ndarray, den: np.ndarray, den_w2: np.ndarray, confidence_level: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rate ``num / den`` and its Wilson interval at the Kish effective size.

    ``n_eff = den**2 / den_w2`` equals ``den`` for counts; for weights it is
    the Kish effective number of units in the denominator. A zero denominator
    gives NaN for the rate and the interval.
    """
    num, den, den_w2 = (np.asarray(a, dtype=float) for a in (num, den, den_w2))
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.clip(num / den, 0.0, 1.0)
        n_eff = np.where(den_w2 == den, den, den * den / den_w2)
        count = np.where(den_w2 == den, np.minimum(num, den), p * n_eff)
    ok = den > 0
    p = np.where(ok, p, np.nan)
    low, high = proportion_ci(
        np.where(ok, count, 0.0),
        np.where(ok, n_eff, 0.0),
        confidence_level=confidence_level,
        method="wilson",
    )
    return p, np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def with_rates(counts: pd.DataFrame, confidence_level: float) -> pd.DataFrame:
    """Add precision, recall, fpr (with intervals), fnr and f1 to confusion counts."""
    c = {k: counts[k].to_numpy(dtype=float) for k in _COUNT_COLS}
    out = counts.copy()
    for metric, num, den, den_w2 in (
        ("precision", c["tp"], c["tp"] + c["fp"], c["tp_w2"] + c["fp_w2"]),
        ("recall", c["tp"], c["tp"] + c["fn"], c["tp_w2"] + c["fn_w2"]),
        ("fpr", c["fp"], c["fp"] + c["tn"], c["fp_w2"] + c["tn_w2"]),
    ):
        value, low, high = _ratio(num, den, den_w2, confidence_level)
        out[metric], out[f"{metric}_ci_low"], out[f"{metric}_ci_high"] = value, low, high
    out["fnr"] = 1.0 - out["recall"]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2.0 * c["tp"] / (2.0 * c["tp"] + c["fp"] + c["fn"])
    defined = out["precision"].notna() & out["recall"].notna()
    out["f1"] = np.where(defined, f1, np.nan)
    return out


SWEEP_COLUMNS = (
    "threshold",
    "tp",
    "fp",
    "fn",
    "tn",
    "precision",
    "precision_ci_low",
    "precision_ci_high",
    "recall",
    "recall_ci_low",
    "recall_ci_high",
    "fpr",
    "fpr_ci_low",
    "fpr_ci_high",
    "fnr",
    "f1",
)


def _warn_one_class(counts: pd.DataFrame, by: list[str]) -> None:
    for label, sub in iter_groups(counts, by):
        if sub.empty:
            continue
        row = sub.iloc[0]
        if row["tp"] + row["fn"] == 0:
            warn_undefined("ai_recall", "no actual positives", label)
        if row["fp"] + row["tn"] == 0:
            warn_undefined("ai_fpr", "no actual negatives", label)


def threshold_sweep(
    hist: pd.DataFrame, *, by: Sequence[str] = (), confidence_level: float = 0.95
) -> pd.DataFrame:
    """Confusion counts and rates at every populated bin's lower edge.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`.
    by : sequence of str, default ()
        The segment columns of `hist`; any other non-histogram column is an error.
    confidence_level : float, default 0.95
        Coverage of the Wilson intervals.

    Returns
    -------
    pandas.DataFrame
        One row per segment and threshold, sorted by ``[*by, threshold]``:
        ``*by, threshold, tp, fp, fn, tn, precision, precision_ci_low,
        precision_ci_high, recall, recall_ci_low, recall_ci_high, fpr,
        fpr_ci_low, fpr_ci_high, fnr, f1``. An item is predicted positive when
        ``score >= threshold``. Counts are weight sums for a weighted histogram.

    Warns
    -----
    RuntimeWarning
        Per segment with no actual positives (recall, fnr, f1 NaN) or no actual
        negatives (fpr NaN).

    Notes
    -----
    Counts are cumulative sums from the top bin down: :math:`TP(t) = \\sum_{k:
    lower_k \\ge t} pos_k`, :math:`FP(t)` likewise over ``neg``; FN and TN are
    the complements. Thresholds between two populated edges give the same
    counts as the upper one, so only populated edges are listed. Intervals are
    Wilson score intervals on the counts; for a weighted histogram the rate is
    the weighted ratio and the Wilson interval uses the Kish effective size
    :math:`(\\sum w)^2 / \\sum w^2` of its denominator. F1 has no interval here
    (see :func:`confusion_at`). Tested against scikit-learn
    ``confusion_matrix``, ``precision_score``, ``recall_score`` and
    ``f1_score`` (with ``sample_weight``) at every edge.

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [1, 3, 8], "neg": [40, 5, 2]}
    ... )
    >>> threshold_sweep(hist)[["threshold", "tp", "fp", "precision", "recall"]].round(3)
       threshold    tp    fp  precision  recall
    0        0.1  12  47      0.203   1.000
    1        0.5  11   7      0.611   0.917
    2        0.9   8   2      0.800   0.667
    """
    by = as_list(by)
    confidence_level = check_confidence(confidence_level)
    h = check_hist(hist, by)
    counts = cumulative_counts(h, by)
    if counts.empty:
        return pd.DataFrame(columns=[*by, *SWEEP_COLUMNS])
    _warn_one_class(counts, by)
    out = with_rates(counts, confidence_level)
    if all(pd.api.types.is_integer_dtype(h[c]) for c in ("pos", "neg")):
        out = out.astype({c: "int64" for c in ("tp", "fp", "fn", "tn")})
    out = out.sort_values([*by, "threshold"], kind="mergesort").reset_index(drop=True)
    return out[[*by, *SWEEP_COLUMNS]]


def roc_curve(hist: pd.DataFrame, *, by: Sequence[str] = ()) -> pd.DataFrame:
    """Binned ROC curve: false and true positive rates at each populated edge.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`.
    by : sequence of str, default ()
        Segment columns of `hist`.

    Returns
    -------
    pandas.DataFrame
        ``[*by, threshold, fpr, tpr]`` per segment in drawing order (threshold
        descending), starting at ``(inf, 0, 0)`` as scikit-learn's
        ``roc_curve``. Rates are NaN for a segment without positives
        (tpr) or negatives (fpr), with a warning.

    Notes
    -----
    Equals ``sklearn.metrics.roc_curve(..., drop_intermediate=False)`` when each
    bin holds one distinct score (e.g. scores with 3 decimals and ``bins=1000``).

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [1, 3, 8], "neg": [40, 5, 2]}
    ... )
    >>> roc_curve(hist).round(3)
       threshold    fpr    tpr
    0        inf  0.000  0.000
    1        0.9  0.043  0.667
    2        0.5  0.149  0.917
    3        0.1  1.000  1.000
    """
    by = as_list(by)
    h = check_hist(hist, by)
    counts = cumulative_counts(h, by)
    _warn_one_class(counts, by)
    rows = []
    for _, sub in iter_groups(counts, by):
        if sub.empty:
            continue
        p = (sub["tp"] + sub["fn"]).iloc[0]
        n = (sub["fp"] + sub["tn"]).iloc[0]
        start = sub.iloc[:1][by].assign(threshold=np.inf, tp=0.0, fp=0.0)
        pts = pd.concat([start, sub[[*by, "threshold", "tp", "fp"]]], ignore_index=True)
        pts["fpr"] = pts["fp"] / n if n > 0 else np.nan
        pts["tpr"] = pts["tp"] / p if p > 0 else np.nan
        rows.append(pts[[*by, "threshold", "fpr", "tpr"]])
    if not rows:
        return pd.DataFrame(columns=[*by, "threshold", "fpr", "tpr"])
    return pd.concat(rows, ignore_index=True)


def pr_curve(hist: pd.DataFrame, *, by: Sequence[str] = ()) -> pd.DataFrame:
    """Binned precision-recall curve at each populated edge.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`.
    by : sequence of str, default ()
        Segment columns of `hist`.

    Returns
    -------
    pandas.DataFrame
        ``[*by, threshold, precision, recall]`` per segment, threshold
        descending (recall increasing). Unlike scikit-learn's
        ``precision_recall_curve`` no artificial ``(recall 0, precision 1)``
        point is appended.

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [1, 3, 8], "neg": [40, 5, 2]}
    ... )
    >>> pr_curve(hist).round(3)
       threshold  precision  recall
    0        0.9      0.800   0.667
    1        0.5      0.611   0.917
    2        0.1      0.203   1.000
    """
    by = as_list(by)
    h = check_hist(hist, by)
    counts = cumulative_counts(h, by)
    _warn_one_class(counts, by)
    with np.errstate(divide="ignore", invalid="ignore"):
        counts["precision"] = counts["tp"] / (counts["tp"] + counts["fp"])
        counts["recall"] = counts["tp"] / (counts["tp"] + counts["fn"])
    return counts[[*by, "threshold", "precision", "recall"]].reset_index(drop=True)


def auc_counts(h: pd.DataFrame) -> tuple[float, float, float, float, float]:
    """(AUC, positives, negatives, Kish n_pos, Kish n_neg) of one histogram."""
    h = h.sort_values("lower", kind="mergesort")
    pos = h["pos"].to_numpy(dtype=float)
    neg = h["neg"].to_numpy(dtype=float)
    p_total, n_total = float(pos.sum()), float(neg.sum())
    neg_below = np.cumsum(neg) - neg
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = float(np.sum(pos * (neg_below + 0.5 * neg)) / (p_total * n_total))
        n_eff_pos = float(np.divide(p_total**2, h["pos_w2"].sum()))
        n_eff_neg = float(np.divide(n_total**2, h["neg_w2"].sum()))
    return auc, p_total, n_total, n_eff_pos, n_eff_neg


def auc_roc(hist: pd.DataFrame) -> float:
    """Area under the ROC curve of one score histogram.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`, one segment (no group columns).

    Returns
    -------
    float
        AUC in [0, 1]; NaN with a warning when a class is absent.

    Notes
    -----
    :math:`AUC = \\sum_k pos_k (N_{<k} + neg_k / 2) / (P N)` with
    :math:`N_{<k}` the negatives in lower bins: the Mann-Whitney statistic with
    scores in the same bin counted as ties (half), which equals the trapezoid
    rule on the binned ROC curve. With 1000 bins it is within 0.002 of the
    exact :func:`sklearn.metrics.roc_auc_score` on 100k continuous scores
    (tested). Weighted histograms give the weighted AUC. For several segments:
    ``hist.groupby(by).apply(auc_roc)``.

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [1, 3, 8], "neg": [40, 5, 2]}
    ... )
    >>> round(auc_roc(hist), 4)  # sklearn roc_auc_score on the 59 rows: 0.91401
    0.914
    """
    h = check_hist(hist, [], hint=ONE_HIST_HINT)
    auc, p, n, _, _ = auc_counts(h)
    if not (p > 0 and n > 0):
        warn_undefined("AUC", "no actual positives" if not p > 0 else "no actual negatives")
        return math.nan
    return auc


def average_precision(hist: pd.DataFrame) -> float:
    """Average precision (area under the step-wise PR curve) of one histogram.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`, one segment (no group columns).

    Returns
    -------
    float
        :math:`AP = \\sum_t (R_t - R_{t-1}) P_t` over populated edges from the
        top (:math:`R_0 = 0`); NaN with a warning without positives.

    Notes
    -----
    The definition of :func:`sklearn.metrics.average_precision_score` (no
    interpolation), with bins as the distinct scores: equal to it when each bin
    holds one distinct score (tested on 3-decimal scores, ``bins=1000``).

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [1, 3, 8], "neg": [40, 5, 2]}
    ... )
    >>> round(average_precision(hist), 4)  # sklearn average_precision_score: 0.70306
    0.7031
    """
    h = check_hist(hist, [], hint=ONE_HIST_HINT)
    counts = cumulative_counts(h, [])
    p = float((counts["tp"] + counts["fn"]).iloc[0]) if len(counts) else 0.0
    if not p > 0:
        warn_undefined("average precision", "no actual positives")
        return math.nan
    tp, fp = counts["tp"].to_numpy(), counts["fp"].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
    recall = tp / p
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


# --------------------------------------------------------------------------- #
# counts at one threshold
# --------------------------------------------------------------------------- #
def counts_at_hist(h: pd.DataFrame, threshold: float, by: list[str]) -> pd.DataFrame:
    """2x2 counts per segment from a histogram at an exact edge."""
    keyed = h.assign(**{KEY: (h["lower"] >= threshold).astype("int64")})
    keyed = keyed.groupby([*by, KEY], dropna=False, sort=True)[list(HIST_COLUMNS[3:])].sum()
    return counts_from_keyed(keyed.reset_index(), by)


def counts_from_keyed(keyed: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Turn ``[*by, key(0/1), pos, neg, n_pos, n_neg, pos_w2, neg_w2]`` into 2x2 columns."""
    names = {
        1: {"pos": "tp", "neg": "fp", "n_pos": "n_tp", "n_neg": "n_fp"},
        0: {"pos": "fn", "neg": "tn", "n_pos": "n_fn", "n_neg": "n_tn"},
    }
    names[1] |= {"pos_w2": "tp_w2", "neg_w2": "fp_w2"}
    names[0] |= {"pos_w2": "fn_w2", "neg_w2": "tn_w2"}
    segments = keyed[by].drop_duplicates().reset_index(drop=True) if by else pd.DataFrame(index=[0])
    out = segments.copy()
    for k, mapping in names.items():
        part = keyed.loc[keyed[KEY] == k, [*by, *mapping]].rename(columns=mapping)
        if by:
            out = out.merge(part, on=by, how="left")
        else:
            for col in mapping.values():
                out[col] = part[col].sum() if len(part) else 0.0
    for col in _COUNT_COLS:
        out[col] = out[col].fillna(0.0).astype(float)
    return out.sort_values(by, kind="mergesort").reset_index(drop=True) if by else out


# --------------------------------------------------------------------------- #
# threshold recommendation
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ThresholdRecommendation:
    """The lowest threshold that meets a precision or FPR target.

    Attributes
    ----------
    threshold : float
        Recommended threshold (predict positive when ``score >= threshold``);
        NaN when no threshold qualifies.
    precision, precision_ci_low, precision_ci_high : float
        Precision at `threshold` and its Wilson interval.
    recall, fpr, fpr_ci_low, fpr_ci_high : float
        Recall and false positive rate (with interval) at `threshold`.
    current_threshold : float
        The threshold in use (NaN if not given).
    current_recall : float
        Recall at `current_threshold`.
    recall_cost : float
        ``current_recall - recall``: recall given up by moving to `threshold`
        (negative: recall gained).
    target : str
        ``"precision"`` or ``"fpr"``.
    target_value : float
    conservative : bool
        Whether the interval bound, not the point estimate, had to meet the target.
    confidence_level : float
    method : str
        The rule applied, in words.
    reason : str
        Why the threshold is NaN; empty when a threshold was found.
    """

    threshold: float
    precision: float
    precision_ci_low: float
    precision_ci_high: float
    recall: float
    fpr: float
    fpr_ci_low: float
    fpr_ci_high: float
    current_threshold: float
    current_recall: float
    recall_cost: float
    target: str
    target_value: float
    conservative: bool
    confidence_level: float
    method: str
    reason: str = field(default="")

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame with every field as a column, in field order."""
        return pd.DataFrame([asdict(self)])


def recommend_threshold(
    hist: pd.DataFrame,
    *,
    target_precision: float | None = None,
    target_fpr: float | None = None,
    current_threshold: float | None = None,
    confidence_level: float = 0.95,
    conservative: bool = True,
) -> ThresholdRecommendation:
    """Lowest threshold whose precision (or FPR) meets a target.

    Parameters
    ----------
    hist : pandas.DataFrame
        From :func:`score_histogram`, one segment.
    target_precision : float, optional
        Required precision, in (0, 1].
    target_fpr : float, optional
        Maximum false positive rate, in [0, 1). Exactly one target is required.
    current_threshold : float, optional
        Threshold in use, a lower bin edge of `hist`; gives ``recall_cost``.
    confidence_level : float, default 0.95
    conservative : bool, default True
        Require the Wilson lower bound of precision (upper bound of FPR) to meet
        the target, so the target holds with that confidence, not just on
        average.

    Returns
    -------
    ThresholdRecommendation
        With a NaN threshold and a `reason` when no threshold qualifies.

    Raises
    ------
    ParameterError
        Zero or two targets, a target out of range, or `current_threshold` not
        a bin edge.

    Warns
    -----
    RuntimeWarning
        When no threshold meets the target.

    Notes
    -----
    Among the populated lower edges (see :func:`threshold_sweep`) the lowest
    qualifying one maximises recall under the constraint; precision need not be
    monotone in the threshold, so higher thresholds are not guaranteed to
    qualify too. FPR is monotone, so its rule is a cut-off.

    Examples
    --------
    >>> import pandas as pd
    >>> hist = pd.DataFrame(
    ...     {"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0], "pos": [10, 300, 800],
    ...      "neg": [4000, 50, 20]}
    ... )
    >>> rec = recommend_threshold(hist, target_precision=0.9, current_threshold=0.9)
    >>> rec.threshold, round(rec.precision, 3), round(rec.recall_cost, 3)
    (0.5, 0.94, -0.27)
    """
    confidence_level = check_confidence(confidence_level)
    given = {"target_precision": target_precision, "target_fpr": target_fpr}
    given = {k: v for k, v in given.items() if v is not None}
    if len(given) != 1:
        raise ParameterError(MSG_TARGET.format(got=given or "neither"), key="target")
    h = check_hist(hist, [], hint=ONE_HIST_HINT)
    sweep = with_rates(cumulative_counts(h, []), confidence_level).sort_values("threshold")
    if target_precision is not None:
        target, value = "precision", check_unit(target_precision, "target_precision", "(0, 1]")
        column = "precision_ci_low" if conservative else "precision"
        ok = sweep[column] >= value
        bound = f"{confidence_level:.0%} Wilson lower bound of " if conservative else ""
        criterion = f"{bound}precision >= {value:g}"
    else:
        target, value = "fpr", check_unit(target_fpr, "target_fpr", "[0, 1)")
        column = "fpr_ci_high" if conservative else "fpr"
        ok = sweep[column] <= value
        bound = f"{confidence_level:.0%} Wilson upper bound of " if conservative else ""
        criterion = f"{bound}FPR <= {value:g}"
    current, current_recall = math.nan, math.nan
    if current_threshold is not None:
        current = snap_threshold(current_threshold, h, "current_threshold")
        at = with_rates(counts_at_hist(h, current, []), confidence_level)
        current_recall = float(at["recall"].iloc[0])
    method = f"lowest populated bin edge with {criterion}"
    reason = ""
    if ok.any():
        best = sweep.loc[ok].iloc[0]
    else:
        reason = MSG_NO_THRESHOLD.format(criterion=criterion)
        warn_runtime(reason)
        best = pd.Series(math.nan, index=sweep.columns)
    return ThresholdRecommendation(
        threshold=float(best["threshold"]),
        precision=float(best["precision"]),
        precision_ci_low=float(best["precision_ci_low"]),
        precision_ci_high=float(best["precision_ci_high"]),
        recall=float(best["recall"]),
        fpr=float(best["fpr"]),
        fpr_ci_low=float(best["fpr_ci_low"]),
        fpr_ci_high=float(best["fpr_ci_high"]),
        current_threshold=current,
        current_recall=current_recall,
        recall_cost=current_recall - float(best["recall"]),
        target=target,
        target_value=value,
        conservative=bool(conservative),
        confidence_level=confidence_level,
        method=method,
        reason=reason,
    )
