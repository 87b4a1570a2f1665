"""Inter-rater agreement: Cohen's kappa, Fleiss' kappa, Krippendorff's alpha, Gwet's AC1.

Every coefficient comes with an interval and is returned as one frozen
:class:`AgreementResult`. Data shapes follow the peers they are tested against:

* two label arrays or a k x k table for Cohen's kappa (sklearn, statsmodels);
* a subjects x categories count table for Fleiss' kappa (statsmodels);
* a raters x units matrix with NaN for missing ratings for Krippendorff's alpha
  (the ``krippendorff`` package) and Gwet's AC1 (R ``irrCAC``, transposed).

:func:`agreement_from_long` turns tidy ``(case_id, rater_id, label)`` rows into
that matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.measure.stats import ConfidenceInterval

__all__ = [
    "AgreementResult",
    "ReliabilityData",
    "agreement_from_long",
    "cohen_kappa",
    "cohen_kappa_from_counts",
    "cohen_kappa_from_table",
    "fleiss_kappa",
    "gwet_ac1",
    "krippendorff_alpha",
]

KAPPA_WEIGHTS = (None, "linear", "quadratic")
ALPHA_LEVELS = ("nominal", "ordinal", "interval", "ratio")

MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_CONFIDENCE = "confidence_level must be strictly between 0 and 1; got {value!r}"
MSG_LENGTHS = "Found input variables with inconsistent numbers of samples: {lengths}"
MSG_UNKNOWN_LABEL = "{name} contains a label not in labels: {value!r}"
MSG_TABLE = "{name} must be a {shape} table of non-negative finite counts; got {detail}"
MSG_COLUMN = "{name} has no column {column!r}"
MSG_UNDEFINED = "{what} is undefined ({why}); returning NaN"
MSG_NOT_NUMERIC = (
    "level={level!r} needs numeric ratings; got non-numeric labels such as {value!r}. "
    "Map them to ordered numeric codes first (agreement_from_long(..., categories=[...]))."
)


# --------------------------------------------------------------------------- #
# result
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AgreementResult:
    """An agreement coefficient with its uncertainty.

    Attributes
    ----------
    statistic : float
        The coefficient (kappa, alpha or AC1).
    ci_low, ci_high : float
        Interval at `confidence_level` (upper limit capped at 1).
    se : float
        Standard error: asymptotic for ``ci_method="asymptotic"``, the standard
        deviation of the replicates for ``"bootstrap"``.
    n_items : int
        Units used (pairs for Cohen's kappa, rated subjects for Fleiss and AC1,
        pairable units for alpha).
    n_raters : int
        Raters (2 for Cohen; the largest number of ratings per subject for a
        Fleiss count table).
    method : str
        E.g. ``"cohen_kappa"``, ``"cohen_kappa_quadratic"``, ``"fleiss_kappa"``,
        ``"krippendorff_alpha_ordinal"``, ``"gwet_ac1"``.
    observed_agreement, expected_agreement : float
        :math:`p_o` and :math:`p_e` with statistic :math:`(p_o - p_e)/(1 - p_e)`
        (weighted for weighted kappa). For Krippendorff's alpha they are
        :math:`1 - D_o` and :math:`1 - D_e` for nominal data and NaN otherwise.
    confidence_level : float
    ci_method : str
        ``"asymptotic"`` (statistic ± z·se) or ``"bootstrap"`` (percentile).
    distribution : ndarray or None
        Bootstrap replicates (not in repr, not compared).
    """

    statistic: float
    ci_low: float
    ci_high: float
    se: float
    n_items: int
    n_raters: int
    method: str
    observed_agreement: float
    expected_agreement: float
    confidence_level: float
    ci_method: str
    distribution: np.ndarray | None = field(default=None, repr=False, compare=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Interval at another level, by the same `ci_method`."""
        return _interval(
            self.statistic, self.se, self.distribution, _check_confidence(confidence_level)
        )

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame with columns ``method, statistic, se, ci_low, ci_high,
        confidence_level, ci_method, n_items, n_raters, observed_agreement,
        expected_agreement``."""
        cols = [
            "method",
            "statistic",
            "se",
            "ci_low",
            "ci_high",
            "confidence_level",
            "ci_method",
            "n_items",
            "n_raters",
            "observed_agreement",
            "expected_agreement",
        ]
        return pd.DataFrame([{c: getattr(self, c) for c in cols}], columns=cols)


def _interval(
    statistic: float, se: float, distribution: np.ndarray | None, confidence_level: float
) -> ConfidenceInterval:
    a = (1.0 - confidence_level) / 2.0
    if distribution is not None:
        finite = distribution[np.isfinite(distribution)]
        if finite.size == 0:
            return ConfidenceInterval(float("nan"), float("nan"))
        low, high = np.quantile(finite, [a, 1.0 - a])
    else:
        z = float(stats.norm.isf(a))
        low, high = statistic - z * se, statistic + z * se
    return ConfidenceInterval(float(low), float(min(high, 1.0)))


def _result(
    statistic: float,
    se: float,
    *,
    n_items: int,
    n_raters: int,
    method: str,
    po: float,
    pe: float,
    confidence_level: float,
    distribution: np.ndarray | None = None,
) -> AgreementResult:
    low, high = _interval(statistic, se, distribution, confidence_level)
    return AgreementResult(
        statistic=float(statistic),
        ci_low=low,
        ci_high=high,
        se=float(se),
        n_items=int(n_items),
        n_raters=int(n_raters),
        method=method,
        observed_agreement=float(po),
        expected_agreement=float(pe),
        confidence_level=confidence_level,
        ci_method="asymptotic" if distribution is None else "bootstrap",
        distribution=distribution,
    )


def _check_confidence(confidence_level: float) -> float:
    try:
        ok = 0.0 < float(confidence_level) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_CONFIDENCE.format(value=confidence_level), key="confidence_level")
    return float(confidence_level)


def _check_choice(value: object, allowed: tuple[Any, ...], name: str) -> Any:
    if value not in allowed or not (value is None or isinstance(value, str)):
        raise ParameterError(MSG_CHOICE.format(name=name, allowed=allowed, value=value), key=name)
    return value


def _warn_undefined(what: str, why: str) -> None:
    warnings.warn(MSG_UNDEFINED.format(what=what, why=why), RuntimeWarning, stacklevel=3)


def _sorted_unique(values: np.ndarray) -> list[Any]:
    uniq = list(pd.unique(pd.Series(values, dtype=object)))
    try:
        return sorted(uniq)
    except TypeError:  # mixed, unorderable labels: keep first-seen order
        return uniq


# --------------------------------------------------------------------------- #
# Cohen's kappa
# --------------------------------------------------------------------------- #
def _agreement_weights(k: int, weights: str | None) -> np.ndarray:
    if weights is None or k == 1:
        return np.eye(k)
    d = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    return 1.0 - (d if weights == "linear" else d**2)


def _kappa_table(
    table: np.ndarray, weights: str | None, confidence_level: float
) -> AgreementResult:
    k = table.shape[0]
    n = float(table.sum())
    method = "cohen_kappa" if weights is None else f"cohen_kappa_{weights}"
    if n == 0:
        _warn_undefined("Cohen's kappa", "no rated pairs")
        return _result(
            np.nan,
            np.nan,
            n_items=0,
            n_raters=2,
            method=method,
            po=np.nan,
            pe=np.nan,
            confidence_level=confidence_level,
        )
    w = _agreement_weights(k, weights)
    p = table / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    po = float((w * p).sum())
    pe = float((w * np.outer(row, col)).sum())
    if np.isclose(pe, 1.0, rtol=0, atol=1e-12):
        _warn_undefined("Cohen's kappa", "chance agreement is 1: both raters used one category")
        return _result(
            np.nan,
            np.nan,
            n_items=int(n),
            n_raters=2,
            method=method,
            po=po,
            pe=pe,
            confidence_level=confidence_level,
        )
    kappa = (po - pe) / (1.0 - pe)
    # Fleiss, Cohen & Everitt (1969) large-sample variance, agreement weights w
    w_row = w @ col  # \bar w_{i.} = sum_j p_.j w_ij
    w_col = row @ w  # \bar w_{.j} = sum_i p_i. w_ij
    term = (p * (w - np.add.outer(w_row, w_col) * (1.0 - kappa)) ** 2).sum()
    var = (term - (kappa - pe * (1.0 - kappa)) ** 2) / ((1.0 - pe) ** 2 * n)
    return _result(
        kappa,
        np.sqrt(max(var, 0.0)),
        n_items=int(n),
        n_raters=2,
        method=method,
        po=po,
        pe=pe,
        confidence_level=confidence_level,
    )


def cohen_kappa_from_table(
    table: npt.ArrayLike,
    *,
    weights: str | None = None,
    confidence_level: float = 0.95,
) -> AgreementResult:
    """Cohen's kappa from a k x k contingency table of two raters.

    Parameters
    ----------
    table : array_like, shape (k, k)
        ``table[i, j]`` counts items rater 1 put in category i and rater 2 in j.
        Categories must be in the same (for weighted kappa: ordinal) order on both axes.
    weights : {None, "linear", "quadratic"}, default None
        Disagreement weights :math:`|i-j|/(k-1)` or :math:`(i-j)^2/(k-1)^2`.
    confidence_level : float, default 0.95

    Returns
    -------
    AgreementResult
        Asymptotic interval ``kappa ± z·se``. If chance agreement is 1 (both
        raters used a single, common category) kappa is undefined: NaN with a
        ``RuntimeWarning``. Perfect agreement with two or more categories used
        gives 1 with se 0.

    Notes
    -----
    With agreement weights :math:`w_{ij}` (identity for unweighted kappa),
    :math:`p_o = \\sum w_{ij}p_{ij}`, :math:`p_e = \\sum w_{ij} p_{i\\cdot}p_{\\cdot j}`,
    :math:`\\kappa = (p_o - p_e)/(1 - p_e)` and the large-sample variance of
    Fleiss, Cohen & Everitt (1969)

    .. math:: \\widehat{var}(\\kappa) = \\frac{\\sum_{ij} p_{ij}\\,[w_{ij} -
              (\\bar w_{i\\cdot} + \\bar w_{\\cdot j})(1-\\kappa)]^2
              - [\\kappa - p_e(1-\\kappa)]^2}{n (1-p_e)^2},

    :math:`\\bar w_{i\\cdot} = \\sum_j p_{\\cdot j} w_{ij}`,
    :math:`\\bar w_{\\cdot j} = \\sum_i p_{i\\cdot} w_{ij}`. Tested against statsmodels
    ``cohens_kappa`` (kappa and ``std_kappa``, weighted and unweighted).

    Examples
    --------
    >>> res = cohen_kappa_from_table([[20, 5], [10, 15]])
    >>> round(res.statistic, 3), round(res.se, 3)
    (0.4, 0.127)
    """
    confidence_level = _check_confidence(confidence_level)
    weights = _check_choice(weights, KAPPA_WEIGHTS, "weights")
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.size == 0:
        raise ParameterError(
            MSG_TABLE.format(name="table", shape="square k x k", detail=f"shape {t.shape}"),
            key="table",
        )
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        bad = t[~(np.isfinite(t) & (t >= 0))].flat[0]
        raise ParameterError(
            MSG_TABLE.format(name="table", shape="k x k", detail=f"value {bad!r}"), key="table"
        )
    return _kappa_table(t, weights, confidence_level)


def cohen_kappa(
    rater1: npt.ArrayLike,
    rater2: npt.ArrayLike,
    *,
    labels: npt.ArrayLike | None = None,
    weights: str | None = None,
    confidence_level: float = 0.95,
) -> AgreementResult:
    """Cohen's kappa between two raters' labels on the same items.

    Parameters
    ----------
    rater1, rater2 : array_like
        Labels (numbers or strings) per item, same length. Items where either
        label is missing (None/NaN) are dropped.
    labels : array_like, optional
        Categories in order (the order matters for weighted kappa). Default:
        the sorted union of observed labels, as sklearn. A label outside
        `labels` raises.
    weights : {None, "linear", "quadratic"}, default None
        Weighted kappa on category positions in `labels`.
    confidence_level : float, default 0.95

    Returns
    -------
    AgreementResult
        See :func:`cohen_kappa_from_table`.

    Notes
    -----
    Builds the contingency table and calls :func:`cohen_kappa_from_table`.
    Tested against ``sklearn.metrics.cohen_kappa_score`` (kappa, also with
    ``weights``) and statsmodels ``cohens_kappa`` (kappa and standard error).

    Examples
    --------
    >>> r1 = ["spam", "spam", "ok", "ok", "spam", "ok", "ok", "ok"]
    >>> r2 = ["spam", "ok", "ok", "ok", "spam", "ok", "spam", "ok"]
    >>> res = cohen_kappa(r1, r2)
    >>> round(res.statistic, 3), res.n_items
    (0.467, 8)
    """
    confidence_level = _check_confidence(confidence_level)
    weights = _check_choice(weights, KAPPA_WEIGHTS, "weights")
    a = np.asarray(pd.Series(rater1, dtype=object).to_numpy(), dtype=object).ravel()
    b = np.asarray(pd.Series(rater2, dtype=object).to_numpy(), dtype=object).ravel()
    if a.size != b.size:
        raise ParameterError(MSG_LENGTHS.format(lengths=[a.size, b.size]))
    keep = ~(pd.isna(a) | pd.isna(b))
    a, b = a[keep], b[keep]
    cats = _sorted_unique(np.concatenate([a, b])) if labels is None else list(labels)
    index = {c: i for i, c in enumerate(cats)}
    k = len(cats)
    codes = []
    for name, values in (("rater1", a), ("rater2", b)):
        try:
            codes.append(np.fromiter((index[v] for v in values), dtype=np.int64, count=values.size))
        except KeyError as exc:
            raise ParameterError(
                MSG_UNKNOWN_LABEL.format(name=name, value=exc.args[0]), key="labels"
            ) from None
    if k == 0:
        _warn_undefined("Cohen's kappa", "no rated pairs")
        return _result(
            np.nan,
            np.nan,
            n_items=0,
            n_raters=2,
            method="cohen_kappa" if weights is None else f"cohen_kappa_{weights}",
            po=np.nan,
            pe=np.nan,
            confidence_level=confidence_level,
        )
    table = np.bincount(codes[0] * k + codes[1], minlength=k * k).reshape(k, k).astype(float)
    return _kappa_table(table, weights, confidence_level)


def cohen_kappa_from_counts(
    counts: pd.DataFrame,
    *,
    by: Sequence[str] = (),
    rater1: str = "rater1",
    rater2: str = "rater2",
    count: str = "count",
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Unweighted Cohen's kappa for many segments at once, from long pair counts.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per segment x (rater-1 label, rater-2 label) with the number of
        items in column `count` — the long form of one contingency table per
        segment, as an engine's ``GROUP BY by, rater1, rater2`` returns it. Label
        pairs may repeat (their counts add up); absent pairs count 0.
    by : sequence of str, default ()
        Segment columns. Null keys form their own segment (``dropna=False``).
    rater1, rater2, count : str
        Column names of the two labels and of the count.
    confidence_level : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        One row per segment, ordered as ``counts.groupby(by, sort=True,
        dropna=False)``: ``[*by, statistic, se, ci_low, ci_high, n_items,
        observed_agreement, expected_agreement]``, each as the field of the
        same name of :func:`cohen_kappa_from_table` on that segment's table.
        Rows where either label is missing are not counted (as
        :func:`cohen_kappa`); a segment with no counted pair, or where both
        raters used one common category, gets NaN. No warning is issued.

    Notes
    -----
    Per segment, with :math:`p_{ij}` the share of pairs labelled (i, j) and
    marginals :math:`p_{i\\cdot}`, :math:`p_{\\cdot j}`:
    :math:`p_o = \\sum_i p_{ii}`, :math:`p_e = \\sum_i p_{i\\cdot} p_{\\cdot i}`,
    :math:`\\kappa = (p_o - p_e)/(1 - p_e)` and the Fleiss, Cohen & Everitt (1969)
    variance of :func:`cohen_kappa_from_table` with identity weights,

    .. math:: \\widehat{var}(\\kappa) = \\frac{\\sum_{ij} p_{ij}\\,[1_{i=j} -
              (p_{\\cdot i} + p_{j\\cdot})(1-\\kappa)]^2
              - [\\kappa - p_e(1-\\kappa)]^2}{n (1-p_e)^2},

    summed over observed cells only (the others have :math:`p_{ij} = 0`).
    Tested against :func:`cohen_kappa` per segment and
    ``sklearn.metrics.cohen_kappa_score``.

    Examples
    --------
    >>> counts = pd.DataFrame({
    ...     "queue": ["a", "a", "a", "a", "b"],
    ...     "rater1": ["spam", "spam", "ok", "ok", "ok"],
    ...     "rater2": ["spam", "ok", "spam", "ok", "ok"],
    ...     "count": [20, 5, 10, 15, 4],
    ... })
    >>> res = cohen_kappa_from_counts(counts, by=["queue"])
    >>> res[["queue", "statistic", "n_items"]].round(3)
      queue  statistic  n_items
    0     a        0.4       50
    1     b        NaN        4
    """
    confidence_level = _check_confidence(confidence_level)
    cols = list(by)
    absent = [c for c in (*cols, rater1, rater2, count) if c not in counts.columns]
    if absent:
        raise ParameterError(MSG_COLUMN.format(name="counts", column=absent[0]), key="counts")
    w = pd.to_numeric(counts[count], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        bad = w[~(np.isfinite(w) & (w >= 0))][0]
        raise ParameterError(
            MSG_TABLE.format(name="counts", shape="long", detail=f"count {bad!r}"), key="counts"
        )
    m = len(counts)
    if cols:
        seg = counts.groupby(cols, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        first = np.unique(seg, return_index=True)[1]  # first row of each segment, in order
        keys = counts[cols].iloc[first].reset_index(drop=True)
    else:
        seg = np.zeros(m, dtype=np.int64)
        keys = pd.DataFrame(index=pd.RangeIndex(1))
    n_seg = len(keys)
    # category codes shared by both raters, in sorted label order (-1: missing)
    codes, uniques = pd.factorize(
        pd.concat([counts[rater1], counts[rater2]], ignore_index=True).astype(object)
    )
    rank = np.empty(len(uniques), dtype=np.int64)
    rank[[uniques.get_loc(u) for u in _sorted_unique(np.asarray(uniques, dtype=object))]] = (
        np.arange(len(uniques))
    )
    a, b = codes[:m], codes[m:]
    valid = (a >= 0) & (b >= 0)
    seg, a, b, w = seg[valid], rank[a[valid]], rank[b[valid]], w[valid]
    # each segment's table has the categories it used, sorted, as cohen_kappa builds it
    n_cat = max(len(uniques), 1)
    used = np.unique(np.concatenate([seg * n_cat + a, seg * n_cat + b]))
    k_seg = np.bincount(used // n_cat, minlength=n_seg)
    starts = np.concatenate([[0], np.cumsum(k_seg)[:-1]])
    pos_a = np.searchsorted(used, seg * n_cat + a) - starts[seg]
    pos_b = np.searchsorted(used, seg * n_cat + b) - starts[seg]
    stat = {f: np.full(n_seg, np.nan) for f in ("statistic", "se", "po", "pe")}
    n = np.bincount(seg, weights=w, minlength=n_seg)
    for k in np.unique(k_seg[k_seg > 0]):
        segs = np.flatnonzero(k_seg == k)
        local = np.full(n_seg, -1, dtype=np.int64)
        local[segs] = np.arange(segs.size)
        rows = local[seg] >= 0
        tables = np.zeros((segs.size, k, k))
        np.add.at(tables, (local[seg[rows]], pos_a[rows], pos_b[rows]), w[rows])
        for f, v in zip(("statistic", "se", "po", "pe"), _kappa_tables(tables), strict=True):
            stat[f][segs] = v
    z = float(stats.norm.isf((1.0 - confidence_level) / 2.0))
    kappa, se = stat["statistic"], stat["se"]
    out = keys.copy()
    out["statistic"] = kappa
    out["se"] = se
    out["ci_low"] = kappa - z * se
    out["ci_high"] = np.minimum(kappa + z * se, 1.0)
    out["n_items"] = n.astype(np.int64)
    out["observed_agreement"] = stat["po"]
    out["expected_agreement"] = stat["pe"]
    return out


def _kappa_tables(tables: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unweighted :func:`_kappa_table` on a stack of k x k tables, operation for operation.

    Returns ``(kappa, se, po, pe)`` arrays; reductions run along contiguous rows
    of the same length and in the same order as on one table, so each segment
    gets the floating-point result of ``cohen_kappa`` (rounding noise included:
    ``se`` of a perfect agreement is the square root of a residual).
    """
    g, k = tables.shape[0], tables.shape[1]
    n = tables.reshape(g, k * k).sum(axis=1)
    eye = np.eye(k)
    kappa = np.full(g, np.nan)
    se = np.full(g, np.nan)
    po = np.full(g, np.nan)
    pe = np.full(g, np.nan)
    ok = n > 0
    p = tables[ok] / n[ok, None, None]
    row, col = p.sum(axis=2), p.sum(axis=1)
    po[ok] = (eye * p).reshape(-1, k * k).sum(axis=1)
    pe[ok] = (eye * (row[:, :, None] * col[:, None, :])).reshape(-1, k * k).sum(axis=1)
    defined = ok & ~np.isclose(pe, 1.0, rtol=0, atol=1e-12)
    sub = defined[ok]
    p, row, col = p[sub], row[sub], col[sub]
    po_d, pe_d, n_d = po[defined], pe[defined], n[defined]
    kap = (po_d - pe_d) / (1.0 - pe_d)
    # identity weights: w @ col is col and row @ w is row, exactly
    dev = eye - (col[:, :, None] + row[:, None, :]) * (1.0 - kap)[:, None, None]
    term = (p * dev**2).reshape(-1, k * k).sum(axis=1)
    var = (term - (kap - pe_d * (1.0 - kap)) ** 2) / ((1.0 - pe_d) ** 2 * n_d)
    kappa[defined] = kap
    se[defined] = np.sqrt(np.maximum(var, 0.0))
    return kappa, se, po, pe


# --------------------------------------------------------------------------- #
# reliability data (raters x units) helpers
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ReliabilityData:
    """A raters x units matrix of numeric ratings, NaN where a rater did not rate.

    Attributes
    ----------
    data : ndarray, shape (n_raters, n_items)
        Numeric label values, or codes ``0..k-1`` into `categories` when the
        labels were not numeric (or `categories` was given).
    raters : pandas.Index
        Row labels.
    items : pandas.Index
        Column labels.
    categories : pandas.Index
        All categories in order. For coded data ``categories[code]`` is the label.
    coded : bool
        Whether `data` holds codes rather than the label values.
    """

    data: np.ndarray = field(repr=False)
    raters: pd.Index
    items: pd.Index
    categories: pd.Index
    coded: bool

    def counts(self) -> np.ndarray:
        """Items x categories count table (the input of :func:`fleiss_kappa`)."""
        cats = list(range(len(self.categories))) if self.coded else list(self.categories)
        return _unit_counts(self.data, cats)[0]


def agreement_from_long(
    df: pd.DataFrame,
    *,
    item: str = "case_id",
    rater: str = "rater_id",
    label: str = "label",
    categories: list[Any] | None = None,
) -> ReliabilityData:
    """Pivot tidy ``(item, rater, label)`` rows into a raters x items matrix.

    Parameters
    ----------
    df : pandas.DataFrame
        One row per rating.
    item, rater, label : str
        Column names.
    categories : list, optional
        The full, ordered set of labels. When given, labels are coded
        ``0..k-1`` in this order (use it for ordinal string labels such as
        ``["low", "mid", "high"]`` and to declare categories nobody used).
        Otherwise numeric labels are kept as values and other labels are coded
        in sorted order.

    Returns
    -------
    ReliabilityData
        ``data`` (raters x items, NaN for missing), ``raters``, ``items``,
        ``categories``, ``coded``. Pass it, or its ``data``, to
        :func:`krippendorff_alpha` and :func:`gwet_ac1`; ``counts()`` feeds
        :func:`fleiss_kappa`.

    Raises
    ------
    DataContractError
        A column is missing, a rater rated an item twice, or a label is not in
        `categories`.

    Examples
    --------
    >>> long = pd.DataFrame({
    ...     "case_id": [1, 1, 2, 2, 3],
    ...     "rater_id": ["a", "b", "a", "b", "a"],
    ...     "label": ["spam", "spam", "ok", "spam", "ok"],
    ... })
    >>> rd = agreement_from_long(long)
    >>> list(rd.categories), rd.data.tolist()
    (['ok', 'spam'], [[1.0, 0.0, 0.0], [1.0, 1.0, nan]])
    """
    missing = [c for c in (item, rater, label) if c not in df.columns]
    if missing:
        raise DataContractError(
            f"agreement_from_long: column {missing[0]!r} not found; columns are {list(df.columns)}",
            column=missing[0],
            check="column_present",
        )
    dup = df.duplicated([item, rater], keep=False)
    if dup.any():
        first = df.loc[dup, [item, rater]].iloc[0]
        raise DataContractError(
            f"agreement_from_long: {int(dup.sum())} rows repeat an ({item}, {rater}) pair, "
            f"e.g. {item}={first[item]!r}, {rater}={first[rater]!r}",
            column=rater,
            check="unique_rating",
            bad_rows=int(dup.sum()),
            example=(first[item], first[rater]),
        )
    values = df[label]
    numeric = pd.api.types.is_numeric_dtype(values) and categories is None
    if numeric:
        coded_values = values.astype(float)
        cats = pd.Index(np.unique(coded_values.dropna().to_numpy()))
    else:
        cats = pd.Index(
            _sorted_unique(values.dropna().to_numpy()) if categories is None else categories
        )
        codes = pd.Series(cats.get_indexer(values), index=values.index, dtype=float)
        unknown = (codes < 0) & values.notna()
        if unknown.any():
            raise DataContractError(
                f"agreement_from_long: {int(unknown.sum())} labels are not in categories, "
                f"e.g. {values[unknown].iloc[0]!r}",
                column=label,
                check="label_in_categories",
                bad_rows=int(unknown.sum()),
                example=values[unknown].iloc[0],
            )
        coded_values = codes.where(values.notna())
    frame = pd.DataFrame({"item": df[item], "rater": df[rater], "value": coded_values})
    wide = frame.pivot(index="rater", columns="item", values="value")
    return ReliabilityData(
        data=wide.to_numpy(dtype=float),
        raters=wide.index.rename(rater),
        items=wide.columns.rename(item),
        categories=cats,
        coded=not numeric,
    )


def _as_matrix(reliability_data: Any) -> tuple[np.ndarray, pd.Index | None, bool]:
    """Return (raters x units array, declared categories, numeric?)."""
    if isinstance(reliability_data, ReliabilityData):
        cats = reliability_data.categories if reliability_data.coded else None
        if cats is not None:
            cats = pd.Index(range(len(cats)))
        return reliability_data.data, cats, True
    if isinstance(reliability_data, pd.DataFrame):
        arr = reliability_data.to_numpy(dtype=object)
    else:
        arr = np.asarray(reliability_data)
        if arr.dtype.kind not in "biuf":
            arr = np.asarray(reliability_data, dtype=object)
    if arr.ndim != 2:
        raise ParameterError(
            f"reliability_data must be 2-D (raters x units); got shape {arr.shape}",
            key="reliability_data",
        )
    if arr.dtype == object:
        present = arr[~pd.isna(arr)]
        numeric = all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in present
        )
        if numeric:
            arr = np.where(pd.isna(arr), np.nan, arr).astype(float)
        return arr, None, numeric
    return arr.astype(float), None, True


def _unit_counts(
    arr: np.ndarray, categories: pd.Index | list[Any] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """Units x categories counts from a raters x units matrix (missing = NaN/None)."""
    missing = pd.isna(arr)
    present = arr[~missing]
    n_units = arr.shape[1]
    unit_idx = np.broadcast_to(np.arange(n_units), arr.shape)[~missing]
    if arr.dtype != object and categories is None:  # fast path for numeric ratings
        uniq, codes = np.unique(present, return_inverse=True)
        cats: list[Any] = uniq.tolist()
    else:
        cats = _sorted_unique(present) if categories is None else list(categories)
        index = {c: i for i, c in enumerate(cats)}
        try:
            codes = np.fromiter((index[v] for v in present), dtype=np.int64, count=present.size)
        except KeyError as exc:
            raise ParameterError(
                f"reliability_data contains a label not in categories: {exc.args[0]!r}",
                key="categories",
            ) from None
    q = len(cats)
    counts = np.bincount(unit_idx * q + codes, minlength=n_units * q).reshape(n_units, q)
    return counts.astype(float), cats


# --------------------------------------------------------------------------- #
# Fleiss' kappa and Gwet's AC1 (Gwet 2008/2014 linearised variance)
# --------------------------------------------------------------------------- #
def _multirater(counts: np.ndarray, kind: str) -> tuple[float, float, float, float, int]:
    """Fleiss' kappa or Gwet's AC1 and variance from a subjects x categories table.

    Returns (coefficient, se, pa, pe, n_subjects). Follows irrCAC's
    ``fleiss.kappa.raw`` / ``gwet.ac1.raw`` (Gwet 2014, ch. 5), unweighted.
    """
    r = counts.sum(axis=1)
    counts, r = counts[r > 0], r[r > 0]
    n, q = counts.shape
    if n == 0:
        return np.nan, np.nan, np.nan, np.nan, 0
    pairable = r >= 2
    n2 = int(pairable.sum())
    if n2 == 0:
        return np.nan, np.nan, np.nan, np.nan, n
    den = np.where(pairable, r * (r - 1.0), 1.0)
    pa_i = np.where(pairable, (counts * (counts - 1.0)).sum(axis=1) / den, 0.0)
    pa = float(pa_i[pairable].mean())
    pi = (counts / r[:, None]).mean(axis=0)
    if kind == "fleiss":
        pe = float((pi * pi).sum())
        pe_i = (counts @ pi) / r
    else:
        if q < 2:
            return np.nan, np.nan, pa, np.nan, n
        pe = float((pi * (1.0 - pi)).sum() / (q - 1))
        pe_i = (counts @ (1.0 - pi)) / (r * (q - 1))
    if np.isclose(pe, 1.0, rtol=0, atol=1e-12):
        return np.nan, np.nan, pa, pe, n
    coef = (pa - pe) / (1.0 - pe)
    coef_i = (n / n2) * (pa_i - pe * pairable) / (1.0 - pe)
    coef_i = coef_i - 2.0 * (1.0 - coef) * (pe_i - pe) / (1.0 - pe)
    var = float(((coef_i - coef) ** 2).sum() / (n * (n - 1))) if n > 1 else np.nan
    return coef, float(np.sqrt(var)), pa, pe, n


def fleiss_kappa(table: npt.ArrayLike, *, confidence_level: float = 0.95) -> AgreementResult:
    """Fleiss' kappa for many raters from a subjects x categories count table.

    Parameters
    ----------
    table : array_like, shape (n_subjects, n_categories)
        ``table[i, k]`` is the number of raters who put subject i in category k
        (statsmodels' ``aggregate_raters`` format, or ``ReliabilityData.counts()``).
        Row totals may vary (missing ratings); subjects with no rating are dropped.
    confidence_level : float, default 0.95

    Returns
    -------
    AgreementResult
        Asymptotic interval ``kappa ± z·se`` with Gwet's linearised standard
        error (not the Fleiss-Nee-Landis standard error under the null, which is
        for testing kappa = 0 only). NaN with a ``RuntimeWarning`` when chance
        agreement is 1 (one category only) or no subject has two ratings.

    Notes
    -----
    With :math:`r_{ik}` raters putting subject i in category k,
    :math:`r_i = \\sum_k r_{ik}`, :math:`\\pi_k = \\frac1n\\sum_i r_{ik}/r_i`:
    :math:`p_a` is the mean over subjects with :math:`r_i \\ge 2` of
    :math:`\\sum_k r_{ik}(r_{ik}-1)/(r_i(r_i-1))`, :math:`p_e = \\sum_k \\pi_k^2`,
    :math:`\\kappa = (p_a - p_e)/(1 - p_e)` (Fleiss 1971; equal to statsmodels
    ``fleiss_kappa`` when every subject has the same number of raters).
    Variance (Gwet 2014, as R ``irrCAC::fleiss.kappa.raw``):
    :math:`\\kappa_i^* = \\kappa_i - 2(1-\\kappa)(p_{e|i} - p_e)/(1-p_e)`,
    :math:`\\widehat{var} = \\sum_i(\\kappa_i^* - \\kappa)^2/(n(n-1))`, where
    :math:`\\kappa_i = \\frac{n}{n_2}(p_{a|i} - p_e 1[r_i\\ge2])/(1-p_e)` and
    :math:`p_{e|i} = \\sum_k r_{ik}\\pi_k / r_i`. irrCAC uses a t quantile with
    n - 1 df for its interval; we use the normal quantile.

    Tested against statsmodels ``fleiss_kappa`` (kappa) and the irrCAC
    vignette values (kappa and standard error).

    Examples
    --------
    >>> table = [[0, 0, 3], [0, 3, 0], [1, 2, 0], [3, 0, 0], [0, 1, 2]]
    >>> res = fleiss_kappa(table)
    >>> round(res.statistic, 3), res.n_items, res.n_raters
    (0.595, 5, 3)
    """
    confidence_level = _check_confidence(confidence_level)
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[1] == 0:
        raise ParameterError(
            MSG_TABLE.format(
                name="table", shape="subjects x categories", detail=f"shape {t.shape}"
            ),
            key="table",
        )
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        bad = t[~(np.isfinite(t) & (t >= 0))].flat[0]
        raise ParameterError(
            MSG_TABLE.format(name="table", shape="subjects x categories", detail=f"value {bad!r}"),
            key="table",
        )
    kappa, se, pa, pe, n = _multirater(t, "fleiss")
    if np.isnan(kappa):
        _warn_undefined("Fleiss' kappa", "chance agreement is 1 or no subject has two ratings")
    return _result(
        kappa,
        se,
        n_items=n,
        n_raters=int(t.sum(axis=1).max(initial=0)),
        method="fleiss_kappa",
        po=pa,
        pe=pe,
        confidence_level=confidence_level,
    )


def gwet_ac1(
    reliability_data: Any,
    *,
    categories: list[Any] | None = None,
    confidence_level: float = 0.95,
) -> AgreementResult:
    """Gwet's AC1 for two or more raters, robust to rare categories.

    Parameters
    ----------
    reliability_data : array_like, shape (n_raters, n_items), or ReliabilityData
        Ratings with NaN/None where a rater did not rate an item. Two raters'
        label arrays can be passed as ``[rater1, rater2]``. Labels may be strings.
    categories : list, optional
        The full set of possible categories; AC1's chance agreement depends on
        their number q, including categories nobody used. Default: the observed
        labels (or ``ReliabilityData.categories``).
    confidence_level : float, default 0.95

    Returns
    -------
    AgreementResult
        Asymptotic interval with Gwet's (2008) linearised standard error. NaN
        with a ``RuntimeWarning`` when fewer than two categories are declared
        or no item has two ratings.

    Notes
    -----
    :math:`AC_1 = (p_a - p_e)/(1 - p_e)` with :math:`p_a` as for
    :func:`fleiss_kappa` and :math:`p_e = \\frac{1}{q-1}\\sum_k \\pi_k(1-\\pi_k)`.
    Unlike kappa, :math:`p_e` is small when one category dominates, so AC1
    does not collapse when raters agree on a rare-positive task (the "kappa
    paradox", Feinstein & Cicchetti 1990). Variance as
    :func:`fleiss_kappa` with :math:`p_{e|i} = \\sum_k r_{ik}(1-\\pi_k)/(r_i(q-1))`
    (Gwet 2008; R ``irrCAC::gwet.ac1.raw``; normal instead of t quantile).
    Tested against the irrCAC vignette values (coefficient and standard error).

    Examples
    --------
    Rare positives: the raters agree on 96 of 100 items, kappa says "fair",
    AC1 says "almost perfect".

    >>> r1 = [0] * 95 + [1, 1, 1, 0, 0]
    >>> r2 = [0] * 95 + [1, 0, 0, 1, 1]
    >>> res = gwet_ac1([r1, r2])
    >>> round(res.statistic, 3), round(cohen_kappa(r1, r2).statistic, 3)
    (0.958, 0.313)
    """
    confidence_level = _check_confidence(confidence_level)
    arr, declared, _ = _as_matrix(reliability_data)
    cats = categories if categories is not None else declared
    counts, used = _unit_counts(arr, cats)
    ac1, se, pa, pe, n = _multirater(counts, "ac1")
    if np.isnan(ac1):
        _warn_undefined("Gwet's AC1", f"{len(used)} categories declared or no item rated twice")
    return _result(
        ac1,
        se,
        n_items=n,
        n_raters=arr.shape[0],
        method="gwet_ac1",
        po=pa,
        pe=pe,
        confidence_level=confidence_level,
    )


# --------------------------------------------------------------------------- #
# Krippendorff's alpha
# --------------------------------------------------------------------------- #
def _alpha_distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(values.size)
    if level == "ordinal":
        cum = np.cumsum(n_c)
        i, j = np.meshgrid(np.arange(values.size), np.arange(values.size), indexing="ij")
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        between = cum[hi] - cum[lo] + n_c[lo]
        return (between - (n_c[i] + n_c[j]) / 2.0) ** 2
    diff = np.subtract.outer(values, values)
    if level == "interval":
        return diff**2
    total = np.add.outer(values, values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total != 0, diff / total, 0.0) ** 2


def _alpha_from_coincidences(
    o: np.ndarray, values: np.ndarray, level: str
) -> tuple[float, float, float]:
    """Return (alpha, D_o, D_e) from a coincidence matrix."""
    n_c = o.sum(axis=0)
    n = n_c.sum()
    delta = _alpha_distance(values, n_c, level)
    d_o = float((o * delta).sum() / n)
    d_e = float((np.outer(n_c, n_c) * delta).sum() / (n * (n - 1.0)))
    if not d_e > 0:
        return np.nan, d_o, d_e
    return 1.0 - d_o / d_e, d_o, d_e


def _coincidences(counts: np.ndarray, unit_weights: np.ndarray) -> np.ndarray:
    m = counts.sum(axis=1)
    scale = unit_weights / (m - 1.0)
    weighted = counts * scale[:, None]
    return weighted.T @ counts - np.diag(weighted.sum(axis=0))


def krippendorff_alpha(
    reliability_data: Any,
    *,
    level: str = "nominal",
    n_boot: int = 1000,
    seed: int | None = 0,
    confidence_level: float = 0.95,
) -> AgreementResult:
    """Krippendorff's alpha for any number of raters, missing ratings allowed.

    Parameters
    ----------
    reliability_data : array_like, shape (n_raters, n_units), or ReliabilityData
        Ratings with NaN (or None) for missing, as the ``krippendorff`` package.
        Non-numeric labels are allowed for ``level="nominal"`` only.
    level : {"nominal", "ordinal", "interval", "ratio"}, default "nominal"
        Level of measurement, which selects the distance metric.
    n_boot : int, default 1000
        Bootstrap replicates over units for the interval; 0 skips it (NaN interval).
    seed : int or None, default 0
        Seed of :func:`numpy.random.default_rng`.
    confidence_level : float, default 0.95

    Returns
    -------
    AgreementResult
        Percentile bootstrap interval; ``se`` is the bootstrap standard
        deviation. NaN with a ``RuntimeWarning`` when there is no variation
        (expected disagreement 0) or no unit has two ratings.

    Notes
    -----
    Coincidences :math:`o_{ck} = \\sum_u \\#(c,k \\text{ pairs in } u)/(m_u - 1)`
    over units with :math:`m_u \\ge 2` ratings, :math:`n_c = \\sum_k o_{ck}`,
    :math:`n = \\sum_c n_c`, and

    .. math:: \\alpha = 1 - \\frac{D_o}{D_e} = 1 - (n-1)\\frac{\\sum_{ck} o_{ck}\\,
              \\delta^2_{ck}}{\\sum_{ck} n_c n_k\\, \\delta^2_{ck}}

    with :math:`\\delta^2` nominal :math:`1[c\\ne k]`, ordinal
    :math:`(\\sum_{g=c}^{k} n_g - (n_c+n_k)/2)^2`, interval :math:`(c-k)^2`, ratio
    :math:`((c-k)/(c+k))^2` (Krippendorff 2011). The interval resamples pairable
    units with replacement (not Krippendorff's own pair-resampling algorithm).
    Tested against the ``krippendorff`` package (``alpha``) on random data with
    missing values and Krippendorff (2011) example C.

    Examples
    --------
    >>> nan = float("nan")
    >>> data = [[1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
    ...         [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
    ...         [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
    ...         [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan]]
    >>> round(krippendorff_alpha(data, level="interval", n_boot=200).statistic, 3)
    0.849
    """
    level = _check_choice(level, ALPHA_LEVELS, "level")
    confidence_level = _check_confidence(confidence_level)
    if int(n_boot) != n_boot or n_boot < 0:
        raise ParameterError(f"n_boot must be a non-negative integer; got {n_boot!r}", key="n_boot")
    arr, _, numeric = _as_matrix(reliability_data)
    if not numeric and level != "nominal":
        example = arr[~pd.isna(arr)].flat[0]
        raise ParameterError(MSG_NOT_NUMERIC.format(level=level, value=example), key="level")
    counts, used = _unit_counts(arr)
    values = np.asarray(used, dtype=float) if numeric else np.arange(len(used), dtype=float)
    counts = counts[counts.sum(axis=1) >= 2]
    method = f"krippendorff_alpha_{level}"
    n_units = counts.shape[0]
    if n_units == 0:
        _warn_undefined("Krippendorff's alpha", "no unit has two ratings")
        return _result(
            np.nan,
            np.nan,
            n_items=0,
            n_raters=arr.shape[0],
            method=method,
            po=np.nan,
            pe=np.nan,
            confidence_level=confidence_level,
        )
    o = _coincidences(counts, np.ones(n_units))
    alpha, d_o, d_e = _alpha_from_coincidences(o, values, level)
    if np.isnan(alpha):
        _warn_undefined("Krippendorff's alpha", "expected disagreement is 0 (one value only)")
    reps = np.full(int(n_boot), np.nan)
    if n_boot:
        rng = np.random.default_rng(seed)
        with np.errstate(divide="ignore", invalid="ignore"):
            for b in range(int(n_boot)):
                w = np.bincount(rng.integers(0, n_units, n_units), minlength=n_units)
                reps[b] = _alpha_from_coincidences(_coincidences(counts, w), values, level)[0]
    finite = reps[np.isfinite(reps)]
    se = float(np.std(finite, ddof=1)) if finite.size > 1 else np.nan
    nominal = level == "nominal"
    return _result(
        alpha,
        se,
        n_items=n_units,
        n_raters=arr.shape[0],
        method=method,
        po=1.0 - d_o if nominal else np.nan,
        pe=1.0 - d_e if nominal else np.nan,
        confidence_level=confidence_level,
        distribution=reps,
    )
