"""Proportions, two-group tests, multiplicity and audit planning.

Pure functions on counts (or small arrays) that the scorecard and drift code call
after the engine has aggregated.  Every interval routine is vectorised over its
count arguments; every test returns a frozen result dataclass that can answer
follow-up questions (``.confidence_interval(...)``, ``.to_frame()``), in the
manner of :mod:`scipy.stats`.

This module holds the intervals and tests of one and two proportions
(:func:`proportion_ci`, :func:`proportion_difference_ci`,
:func:`compare_proportions`, :func:`chi2_homogeneity`, :func:`mcnemar`) and is
the place to import every statistics routine from; the others live in sibling
modules by job and are re-exported here:

* :mod:`qualitylab.measure.design` - design-weighted (stratified) proportions:
  :func:`weighted_aggregates`, :func:`weighted_proportion`,
  :func:`stratified_proportion`.
* :mod:`qualitylab.measure.continuous` - continuous outcomes:
  :func:`mann_whitney`, :func:`bootstrap_quantile_diff`.
* :mod:`qualitylab.measure.multiplicity` - :func:`adjust_pvalues`.
* :mod:`qualitylab.measure.planning` - audit planning:
  :func:`audits_for_margin`, :func:`audits_to_detect_drop`.
* :mod:`qualitylab.measure.statbase` - :class:`ConfidenceInterval`, the
  argument checks and messages they share.

Each public function names, in its Notes, the peer implementation it is tested
against (statsmodels, scipy) in ``tests/test_stats.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy import stats

from qualitylab.errors import ParameterError
from qualitylab.measure.continuous import (
    BootstrapResult,
    RankTestResult,
    bootstrap_quantile_diff,
    mann_whitney,
)
from qualitylab.measure.design import STRATIFIED_CI_METHODS as STRATIFIED_CI_METHODS
from qualitylab.measure.design import WEIGHTED_CI_METHODS as WEIGHTED_CI_METHODS
from qualitylab.measure.design import (
    WeightedProportion,
    stratified_proportion,
    weighted_aggregates,
    weighted_proportion,
)
from qualitylab.measure.multiplicity import ADJUST_METHODS as ADJUST_METHODS
from qualitylab.measure.multiplicity import adjust_pvalues
from qualitylab.measure.planning import PLANNING_ALTERNATIVES as PLANNING_ALTERNATIVES
from qualitylab.measure.planning import audits_for_margin, audits_to_detect_drop
from qualitylab.measure.statbase import (
    ALTERNATIVES,
    MSG_COUNT_GT_NOBS,
    MSG_RANGE,
    MSG_SHAPES,
    ConfidenceInterval,
    FrameMixin,
    as_float_array,
    check_choice,
    check_confidence,
    first_bad,
    is_scalar,
    scalar_or_array,
    wilson_limits,
)
from qualitylab.measure.statbase import MSG_CHOICE as MSG_CHOICE
from qualitylab.measure.statbase import MSG_CONFIDENCE as MSG_CONFIDENCE
from qualitylab.measure.statbase import MSG_EMPTY as MSG_EMPTY
from qualitylab.measure.statbase import FloatOrArray as FloatOrArray

# The one-and-two-proportion intervals look the critical value up under this
# module's name _z: tests/test_coverage_rates.py patches qualitylab.stats._z
# to show that a 90% interval presented as 95% fails the coverage bands.
from qualitylab.measure.statbase import z_critical as _z

__all__ = [
    "BootstrapResult",
    "ConfidenceInterval",
    "HomogeneityTestResult",
    "McNemarResult",
    "ProportionTestResult",
    "RankTestResult",
    "WeightedProportion",
    "adjust_pvalues",
    "audits_for_margin",
    "audits_to_detect_drop",
    "bootstrap_quantile_diff",
    "chi2_homogeneity",
    "compare_proportions",
    "mann_whitney",
    "mcnemar",
    "proportion_ci",
    "proportion_difference_ci",
    "weighted_aggregates",
    "stratified_proportion",
    "weighted_proportion",
]

PROPORTION_CI_METHODS = ("wilson", "agresti_coull", "clopper_pearson", "jeffreys", "normal")
COMPARE_METHODS = ("auto", "z", "fisher")


# --------------------------------------------------------------------------- #
# argument checks of counts
# --------------------------------------------------------------------------- #
def _check_counts(count: npt.ArrayLike, nobs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast and validate ``0 <= count <= nobs``; NaNs pass through."""
    c = as_float_array(count, "count")
    n = as_float_array(nobs, "nobs")
    try:
        c, n = np.broadcast_arrays(c, n)
    except ValueError as exc:
        raise ParameterError(MSG_SHAPES.format(shapes=[c.shape, n.shape])) from exc
    with np.errstate(invalid="ignore"):
        if np.any(n < 0) or np.any(np.isinf(n)):
            bad = (n < 0) | np.isinf(n)
            raise ParameterError(
                MSG_RANGE.format(name="nobs", interval="[0, inf)", value=first_bad(n, bad)),
                key="nobs",
            )
        if np.any(c < 0) or np.any(np.isinf(c)):
            bad = (c < 0) | np.isinf(c)
            raise ParameterError(
                MSG_RANGE.format(name="count", interval="[0, nobs]", value=first_bad(c, bad)),
                key="count",
            )
        if np.any(c > n):
            bad = c > n
            raise ParameterError(
                MSG_COUNT_GT_NOBS.format(count=first_bad(c, bad), nobs=first_bad(n, bad)),
                key="count",
            )
    return c, n


# --------------------------------------------------------------------------- #
# single proportion
# --------------------------------------------------------------------------- #
def _proportion_ci_arrays(
    c: np.ndarray, n: np.ndarray, confidence_level: float, method: str
) -> tuple[np.ndarray, np.ndarray]:
    alpha2 = (1.0 - confidence_level) / 2.0
    z = _z(confidence_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c / n
        if method == "wilson":
            low, high = wilson_limits(p, n, z)
        elif method == "agresti_coull":
            n_t = n + z * z
            p_t = (c + z * z / 2.0) / n_t
            half = z * np.sqrt(p_t * (1.0 - p_t) / n_t)
            low, high = np.clip(p_t - half, 0.0, 1.0), np.clip(p_t + half, 0.0, 1.0)
        elif method == "normal":
            half = z * np.sqrt(p * (1.0 - p) / n)
            low, high = np.clip(p - half, 0.0, 1.0), np.clip(p + half, 0.0, 1.0)
        elif method == "clopper_pearson":
            low = np.where(c == 0, 0.0, stats.beta.ppf(alpha2, c, n - c + 1.0))
            high = np.where(c == n, 1.0, stats.beta.isf(alpha2, c + 1.0, n - c))
        else:  # jeffreys
            low = stats.beta.ppf(alpha2, c + 0.5, n - c + 0.5)
            high = stats.beta.isf(alpha2, c + 0.5, n - c + 0.5)
    undefined = ~(n > 0)  # nobs == 0 or NaN
    low = np.where(undefined | np.isnan(c), np.nan, low)
    high = np.where(undefined | np.isnan(c), np.nan, high)
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def proportion_ci(
    count: npt.ArrayLike,
    nobs: npt.ArrayLike,
    *,
    confidence_level: float = 0.95,
    method: str = "wilson",
) -> ConfidenceInterval:
    """Two-sided confidence interval for a binomial proportion.

    Parameters
    ----------
    count : int, float or array_like
        Number of successes (errors, violations...). Non-integer counts are
        accepted (e.g. pre-weighted), but must satisfy ``0 <= count <= nobs``.
    nobs : int, float or array_like
        Number of trials; broadcast against `count`.
    confidence_level : float, default 0.95
        Coverage of the two-sided interval.
    method : {"wilson", "agresti_coull", "clopper_pearson", "jeffreys", "normal"}
        Interval construction; see Notes.

    Returns
    -------
    ConfidenceInterval
        Named ``(low, high)``: floats when both inputs are scalars, otherwise
        float ndarrays of the broadcast shape (a pandas Series comes back as an
        ndarray in the Series' order). ``nobs == 0`` gives ``(nan, nan)``.

    Raises
    ------
    ParameterError
        For an unknown `method`, a `confidence_level` outside (0, 1), negative
        values, or ``count > nobs``; the message names the bad value.

    Notes
    -----
    With :math:`\\hat p = x/n` and :math:`z = \\Phi^{-1}(1-\\alpha/2)`:

    * ``wilson``: :math:`\\frac{\\hat p + z^2/2n \\pm z\\sqrt{\\hat p(1-\\hat p)/n
      + z^2/4n^2}}{1 + z^2/n}` (Wilson 1927; recommended by Newcombe 1998 and
      Brown, Cai & DasGupta 2001).
    * ``agresti_coull``: Wald interval around :math:`\\tilde p = (x + z^2/2)/(n + z^2)`
      with :math:`\\tilde n = n + z^2`, clipped to [0, 1].
    * ``clopper_pearson``: exact, :math:`B(\\alpha/2; x, n-x+1)` to
      :math:`B(1-\\alpha/2; x+1, n-x)`, with 0 (1) when x = 0 (x = n).
    * ``jeffreys``: equal-tailed Beta(x + 1/2, n - x + 1/2) posterior interval
      (no boundary modification, as statsmodels).
    * ``normal``: Wald :math:`\\hat p \\pm z\\sqrt{\\hat p(1-\\hat p)/n}`, clipped.

    Tested against statsmodels ``proportion_confint`` (``beta`` is its name for
    Clopper-Pearson) on random inputs, and against Newcombe (1998), example 81/263.

    Examples
    --------
    >>> low, high = proportion_ci(81, 263)
    >>> round(low, 4), round(high, 4)
    (0.2553, 0.3662)
    >>> ci = proportion_ci([0, 5], [0, 10], method="clopper_pearson")
    >>> ci.low.round(3)
    array([  nan, 0.187])
    """
    method = check_choice(method, PROPORTION_CI_METHODS, "method")
    confidence_level = check_confidence(confidence_level)
    scalar = is_scalar(count, nobs)
    c, n = _check_counts(count, nobs)
    low, high = _proportion_ci_arrays(c, n, confidence_level, method)
    return ConfidenceInterval(scalar_or_array(low, scalar), scalar_or_array(high, scalar))


# --------------------------------------------------------------------------- #
# result objects
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class ProportionTestResult(FrameMixin):
    """Result of :func:`compare_proportions`.

    Attributes
    ----------
    statistic : float
        z statistic (``method="z"``) or the sample odds ratio (``method="fisher"``,
        as :func:`scipy.stats.fisher_exact`).
    pvalue : float
    method : str
        ``"z"`` or ``"fisher"`` (``"auto"`` is resolved).
    alternative : str
        ``"two-sided"``, ``"less"`` (p1 < p2) or ``"greater"`` (p1 > p2).
    estimate : float
        Difference of proportions ``p1 - p2``.
    confidence_level : float
        Level used by :meth:`to_frame`.
    count1, nobs1, count2, nobs2 : float
        The data, kept so the interval can be recomputed.
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    count1: float
    nobs1: float
    count2: float
    nobs2: float

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Two-sided Newcombe hybrid-score interval for ``p1 - p2``."""
        return proportion_difference_ci(
            self.count1,
            self.nobs1,
            self.count2,
            self.nobs2,
            confidence_level=confidence_level,
        )


@dataclass(frozen=True)
class HomogeneityTestResult(FrameMixin):
    """Result of :func:`chi2_homogeneity`.

    Attributes
    ----------
    statistic : float
        Pearson chi-square statistic.
    pvalue : float
    method : str
        ``"chi2"``.
    alternative : str
        Always ``"two-sided"`` (rates differ in any direction).
    estimate : float
        Pooled proportion (the common rate under the null hypothesis).
    confidence_level : float
    df : int
        Degrees of freedom, number of groups with ``nobs > 0`` minus one.
    n_groups : int
        Number of groups with ``nobs > 0``.
    count, nobs : float
        Pooled totals, for the interval.
    rates : ndarray
        Observed rate per input group (NaN where ``nobs == 0``); not in ``to_frame``.
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    df: int
    n_groups: int
    count: float
    nobs: float
    rates: np.ndarray = field(repr=False, compare=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Wilson interval for the pooled proportion."""
        return proportion_ci(self.count, self.nobs, confidence_level=confidence_level)


@dataclass(frozen=True)
class McNemarResult(FrameMixin):
    """Result of :func:`mcnemar`.

    Attributes
    ----------
    statistic : float
        ``min(b, c)`` for the exact test (as statsmodels), else the chi-square
        statistic.
    pvalue : float
    method : str
        ``"exact"``, ``"chi2"`` or ``"chi2_corrected"``.
    alternative : str
        ``"two-sided"``.
    estimate : float
        ``b / (b + c)``: share of the discordant pairs that fall in cell b. The
        null hypothesis of marginal homogeneity is ``estimate == 0.5``.
    confidence_level : float
    b, c : float
        Discordant counts.
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    b: float
    c: float

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Interval for ``b / (b + c)``: Clopper-Pearson (exact) or Wilson."""
        method = "clopper_pearson" if self.method == "exact" else "wilson"
        return proportion_ci(
            self.b, self.b + self.c, confidence_level=confidence_level, method=method
        )


# --------------------------------------------------------------------------- #
# two proportions
# --------------------------------------------------------------------------- #
def proportion_difference_ci(
    count1: npt.ArrayLike,
    nobs1: npt.ArrayLike,
    count2: npt.ArrayLike,
    nobs2: npt.ArrayLike,
    *,
    confidence_level: float = 0.95,
) -> ConfidenceInterval:
    """Newcombe hybrid-score interval for ``p1 - p2`` (vectorised).

    Parameters
    ----------
    count1, nobs1, count2, nobs2 : int or array_like
        Successes and trials of the two independent groups (broadcast).
    confidence_level : float, default 0.95

    Returns
    -------
    ConfidenceInterval
        Floats for scalar input, arrays otherwise; NaN where a ``nobs`` is 0.

    Notes
    -----
    Newcombe (1998) method 10: with Wilson limits :math:`(l_i, u_i)` for each
    :math:`\\hat p_i` and :math:`d = \\hat p_1 - \\hat p_2`,

    .. math:: L = d - \\sqrt{(\\hat p_1 - l_1)^2 + (u_2 - \\hat p_2)^2},\\quad
              U = d + \\sqrt{(u_1 - \\hat p_1)^2 + (\\hat p_2 - l_2)^2}.

    Tested against statsmodels ``confint_proportions_2indep(method="newcomb")``
    and Newcombe's example 56/70 vs 48/80.

    Examples
    --------
    >>> low, high = proportion_difference_ci(56, 70, 48, 80)
    >>> round(low, 4), round(high, 4)
    (0.0524, 0.3339)
    """
    confidence_level = check_confidence(confidence_level)
    scalar = is_scalar(count1, nobs1, count2, nobs2)
    c1, n1 = _check_counts(count1, nobs1)
    c2, n2 = _check_counts(count2, nobs2)
    l1, u1 = _proportion_ci_arrays(c1, n1, confidence_level, "wilson")
    l2, u2 = _proportion_ci_arrays(c2, n2, confidence_level, "wilson")
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = c1 / n1, c2 / n2
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return ConfidenceInterval(scalar_or_array(low, scalar), scalar_or_array(high, scalar))


def _scalar_count(x: float, name: str) -> float:
    if np.ndim(x) != 0:
        raise ParameterError(f"{name} must be a scalar; got an array of shape {np.shape(x)}")
    return float(x)


def compare_proportions(
    count1: float,
    nobs1: float,
    count2: float,
    nobs2: float,
    *,
    alternative: str = "two-sided",
    method: str = "auto",
    confidence_level: float = 0.95,
) -> ProportionTestResult:
    """Test and estimate the difference of two independent proportions.

    Parameters
    ----------
    count1, nobs1 : int
        Successes and trials of group 1.
    count2, nobs2 : int
        Successes and trials of group 2.
    alternative : {"two-sided", "less", "greater"}, default "two-sided"
        ``"greater"`` tests p1 > p2.
    method : {"auto", "z", "fisher"}, default "auto"
        ``"z"``: pooled two-proportion z-test. ``"fisher"``: Fisher's exact test
        on ``[[count1, nobs1 - count1], [count2, nobs2 - count2]]``. ``"auto"``
        uses Fisher when any expected cell count is below 5, else z.
    confidence_level : float, default 0.95
        Level of the interval reported by ``to_frame()``.

    Returns
    -------
    ProportionTestResult
        ``estimate`` is ``p1 - p2``; ``confidence_interval()`` is Newcombe's
        (two-sided whatever `alternative`). With an empty group the z-test gives
        NaN statistic and p-value.

    Notes
    -----
    z-test: :math:`z = (\\hat p_1 - \\hat p_2)/\\sqrt{\\bar p(1-\\bar p)(1/n_1 + 1/n_2)}`
    with pooled :math:`\\bar p = (x_1 + x_2)/(n_1 + n_2)`; this equals the
    uncorrected Pearson chi-square (:math:`z^2`). Fisher: the conditional exact
    test from :func:`scipy.stats.fisher_exact`, whose statistic is the sample
    odds ratio. The interval is :func:`proportion_difference_ci`.

    Tested against scipy ``fisher_exact``, statsmodels
    ``test_proportions_2indep(method="score", correction=False)`` (z) and
    ``confint_proportions_2indep(method="newcomb")``.

    Examples
    --------
    >>> res = compare_proportions(56, 70, 48, 80)
    >>> res.method, round(res.estimate, 3), round(res.pvalue, 4)
    ('z', 0.2, 0.008)
    >>> [round(v, 4) for v in res.confidence_interval()]
    [0.0524, 0.3339]
    """
    alternative = check_choice(alternative, ALTERNATIVES, "alternative")
    method = check_choice(method, COMPARE_METHODS, "method")
    confidence_level = check_confidence(confidence_level)
    x1, n1 = (_scalar_count(count1, "count1"), _scalar_count(nobs1, "nobs1"))
    x2, n2 = (_scalar_count(count2, "count2"), _scalar_count(nobs2, "nobs2"))
    _check_counts(x1, n1)
    _check_counts(x2, n2)
    if method == "auto":
        total = n1 + n2
        col1 = x1 + x2
        if total > 0:
            expected = np.outer([n1, n2], [col1, total - col1]) / total
            method = "fisher" if np.any(expected < 5) else "z"
        else:
            method = "fisher"
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = x1 / n1 if n1 > 0 else np.nan, x2 / n2 if n2 > 0 else np.nan
        estimate = float(p1 - p2)
    if method == "fisher":
        for v, name in ((x1, "count1"), (n1, "nobs1"), (x2, "count2"), (n2, "nobs2")):
            if v != round(v):
                raise ParameterError(
                    f"{name} must be an integer for method='fisher'; got {v!r}", key=name
                )
        table = np.array([[x1, n1 - x1], [x2, n2 - x2]], dtype=np.int64)
        res = stats.fisher_exact(table, alternative=alternative)
        statistic, pvalue = float(res.statistic), float(res.pvalue)
    else:
        pooled = (x1 + x2) / (n1 + n2) if n1 + n2 > 0 else np.nan
        with np.errstate(divide="ignore", invalid="ignore"):
            se0 = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2)) if n1 and n2 else np.nan
            statistic = float(estimate / se0) if se0 > 0 else np.nan
        if pooled in (0.0, 1.0) and n1 > 0 and n2 > 0:
            statistic = 0.0  # identical, degenerate groups: no evidence of a difference
        pvalue = _normal_pvalue(statistic, alternative)
    return ProportionTestResult(
        statistic=statistic,
        pvalue=pvalue,
        method=method,
        alternative=alternative,
        estimate=estimate,
        confidence_level=confidence_level,
        count1=x1,
        nobs1=n1,
        count2=x2,
        nobs2=n2,
    )


def _normal_pvalue(z: float, alternative: str) -> float:
    if np.isnan(z):
        return float("nan")
    if alternative == "two-sided":
        return float(min(1.0, 2.0 * stats.norm.sf(abs(z))))
    if alternative == "greater":
        return float(stats.norm.sf(z))
    return float(stats.norm.cdf(z))


def chi2_homogeneity(
    counts: npt.ArrayLike, nobs: npt.ArrayLike, *, confidence_level: float = 0.95
) -> HomogeneityTestResult:
    """Pearson chi-square test that all groups share one rate.

    Parameters
    ----------
    counts : array_like
        Successes per group (1-D).
    nobs : array_like
        Trials per group, same length. Groups with ``nobs == 0`` are ignored.
    confidence_level : float, default 0.95
        Level of the (pooled-rate) interval in ``to_frame()``.

    Returns
    -------
    HomogeneityTestResult
        ``statistic``, ``pvalue``, ``df``; ``estimate`` is the pooled rate and
        ``rates`` the per-group rates. With fewer than two non-empty groups the
        statistic and p-value are NaN. If the pooled rate is 0 or 1 every group
        has the same rate, so the statistic is 0 and the p-value 1.

    Notes
    -----
    On the 2 x k table of successes and failures, with pooled
    :math:`\\bar p = \\sum x_i / \\sum n_i`:

    .. math:: X^2 = \\sum_i \\frac{(x_i - n_i\\bar p)^2}{n_i \\bar p (1-\\bar p)}
              \\sim \\chi^2_{k-1}.

    No continuity correction. Tested against scipy
    ``chi2_contingency(correction=False)``.

    Examples
    --------
    >>> res = chi2_homogeneity([12, 20, 35], [100, 100, 100])
    >>> res.df, round(res.statistic, 2), round(res.pvalue, 4)
    (2, 15.72, 0.0004)
    """
    confidence_level = check_confidence(confidence_level)
    c, n = _check_counts(counts, nobs)
    if c.ndim != 1:
        raise ParameterError(f"counts must be one-dimensional; got shape {c.shape}", key="counts")
    keep = n > 0
    ck, nk = c[keep], n[keep]
    k = int(keep.sum())
    total_c, total_n = float(ck.sum()), float(nk.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = np.where(n > 0, c / n, np.nan)
        pooled = total_c / total_n if total_n > 0 else np.nan
    if k < 2:
        statistic, pvalue = np.nan, np.nan
    elif pooled in (0.0, 1.0):
        statistic, pvalue = 0.0, 1.0
    else:
        statistic = float(np.sum((ck - nk * pooled) ** 2 / (nk * pooled * (1.0 - pooled))))
        pvalue = float(stats.chi2.sf(statistic, k - 1))
    return HomogeneityTestResult(
        statistic=float(statistic),
        pvalue=float(pvalue),
        method="chi2",
        alternative="two-sided",
        estimate=float(pooled),
        confidence_level=confidence_level,
        df=max(k - 1, 0),
        n_groups=k,
        count=total_c,
        nobs=total_n,
        rates=rates,
    )


def mcnemar(
    b: int,
    c: int,
    *,
    exact: bool | None = None,
    correction: bool = True,
    confidence_level: float = 0.95,
) -> McNemarResult:
    """McNemar test for paired binary outcomes (e.g. two graders on the same cases).

    Parameters
    ----------
    b : int
        Pairs positive under the first rule and negative under the second.
    c : int
        Pairs negative under the first rule and positive under the second.
    exact : bool, optional
        Exact binomial test on ``b`` out of ``b + c``. Default: exact when
        ``b + c < 25``, otherwise chi-square.
    correction : bool, default True
        Edwards' continuity correction for the chi-square version.
    confidence_level : float, default 0.95
        Level of the interval reported by ``to_frame()``.

    Returns
    -------
    McNemarResult
        ``estimate`` is ``b / (b + c)`` (0.5 under the null); NaN when
        ``b + c == 0``, in which case the p-value is 1.

    Notes
    -----
    Exact: :math:`p = \\min(1, 2\\,F_{Bin(b+c, 1/2)}(\\min(b, c)))`.
    Chi-square: :math:`X^2 = (\\max(0, |b-c| - 1))^2/(b+c)` with correction,
    :math:`(b-c)^2/(b+c)` without, on 1 df. (statsmodels uses
    :math:`(|b-c|-1)^2` even when ``b == c``; the ``max`` keeps the p-value at 1
    there.) Tested against statsmodels
    ``statsmodels.stats.contingency_tables.mcnemar``.

    Examples
    --------
    >>> res = mcnemar(3, 12)
    >>> res.method, res.statistic, round(res.pvalue, 4), res.estimate
    ('exact', 3.0, 0.0352, 0.2)
    """
    confidence_level = check_confidence(confidence_level)
    bb, cc = _scalar_count(b, "b"), _scalar_count(c, "c")
    for v, name in ((bb, "b"), (cc, "c")):
        if not (v >= 0 and v == round(v)):
            raise ParameterError(
                MSG_RANGE.format(name=name, interval="non-negative integers", value=v), key=name
            )
    m = bb + cc
    if exact is None:
        exact = m < 25
    estimate = bb / m if m > 0 else float("nan")
    if exact:
        statistic = min(bb, cc)
        pvalue = float(min(1.0, 2.0 * stats.binom.cdf(statistic, int(m), 0.5)))
        method = "exact"
    else:
        if m == 0:
            statistic, pvalue = 0.0, 1.0
        else:
            diff = abs(bb - cc) - (1.0 if correction else 0.0)
            statistic = max(diff, 0.0) ** 2 / m
            pvalue = float(stats.chi2.sf(statistic, 1))
        method = "chi2_corrected" if correction else "chi2"
    return McNemarResult(
        statistic=float(statistic),
        pvalue=pvalue,
        method=method,
        alternative="two-sided",
        estimate=float(estimate),
        confidence_level=confidence_level,
        b=bb,
        c=cc,
    )
