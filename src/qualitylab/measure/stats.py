"""Proportions, two-group tests, multiplicity and audit planning.

Pure functions on counts (or small arrays) that the scorecard and drift code call
after the engine has aggregated.  Every interval routine is vectorised over its
count arguments; every test returns a frozen result dataclass that can answer
follow-up questions (``.confidence_interval(...)``, ``.to_frame()``), in the
manner of :mod:`scipy.stats`.

Each public function names, in its Notes, the peer implementation it is tested
against (statsmodels, scipy) in ``tests/test_stats.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, stats

from qualitylab.errors import ParameterError

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

FloatOrArray = float | npt.NDArray[np.float64]

PROPORTION_CI_METHODS = ("wilson", "agresti_coull", "clopper_pearson", "jeffreys", "normal")
WEIGHTED_CI_METHODS = ("wilson", "linearized")
STRATIFIED_CI_METHODS = ("korn_graubard", "wilson", "linearized")
COMPARE_METHODS = ("auto", "z", "fisher")
ALTERNATIVES = ("two-sided", "less", "greater")
ADJUST_METHODS = ("holm", "bonferroni", "fdr_bh")
PLANNING_ALTERNATIVES = ("one-sided", "two-sided")

# Error messages are module constants so tests can assert on them.
MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_CONFIDENCE = "confidence_level must be strictly between 0 and 1; got {value!r}"
MSG_RANGE = "{name} must be in {interval}; got {value!r}"
MSG_COUNT_GT_NOBS = "count must not exceed nobs; got count={count!r} > nobs={nobs!r}"
MSG_SHAPES = "Found input variables with inconsistent shapes: {shapes}"
MSG_EMPTY = "{name} must contain at least one non-missing value; got {size} values"


class ConfidenceInterval(NamedTuple):
    """A two-sided interval, floats for scalar input and arrays otherwise."""

    low: Any
    high: Any


# --------------------------------------------------------------------------- #
# validation helpers (one place, used by every public entry point)
# --------------------------------------------------------------------------- #
def _check_choice(value: object, allowed: tuple[str, ...], name: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(MSG_CHOICE.format(name=name, allowed=allowed, value=value), key=name)
    return value


def _check_confidence(confidence_level: float) -> float:
    try:
        ok = 0.0 < float(confidence_level) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_CONFIDENCE.format(value=confidence_level), key="confidence_level")
    return float(confidence_level)


def _check_open_unit(value: float, name: str) -> float:
    try:
        ok = 0.0 < float(value) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_RANGE.format(name=name, interval="(0, 1)", value=value), key=name)
    return float(value)


def _first_bad(values: np.ndarray, bad: np.ndarray) -> object:
    return np.asarray(values)[bad].flat[0].item()


def _as_float_array(x: npt.ArrayLike, name: str) -> np.ndarray:
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be numeric; got {x!r}", key=name) from exc


def _check_counts(count: npt.ArrayLike, nobs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Broadcast and validate ``0 <= count <= nobs``; NaNs pass through."""
    c = _as_float_array(count, "count")
    n = _as_float_array(nobs, "nobs")
    try:
        c, n = np.broadcast_arrays(c, n)
    except ValueError as exc:
        raise ParameterError(MSG_SHAPES.format(shapes=[c.shape, n.shape])) from exc
    with np.errstate(invalid="ignore"):
        if np.any(n < 0) or np.any(np.isinf(n)):
            bad = (n < 0) | np.isinf(n)
            raise ParameterError(
                MSG_RANGE.format(name="nobs", interval="[0, inf)", value=_first_bad(n, bad)),
                key="nobs",
            )
        if np.any(c < 0) or np.any(np.isinf(c)):
            bad = (c < 0) | np.isinf(c)
            raise ParameterError(
                MSG_RANGE.format(name="count", interval="[0, nobs]", value=_first_bad(c, bad)),
                key="count",
            )
        if np.any(c > n):
            bad = c > n
            raise ParameterError(
                MSG_COUNT_GT_NOBS.format(count=_first_bad(c, bad), nobs=_first_bad(n, bad)),
                key="count",
            )
    return c, n


def _is_scalar(*args: object) -> bool:
    return all(np.ndim(a) == 0 for a in args)


def _out(x: np.ndarray, scalar: bool) -> FloatOrArray:
    return float(x) if scalar else np.asarray(x, dtype=float)


def _z(confidence_level: float) -> float:
    return float(stats.norm.isf((1.0 - confidence_level) / 2.0))


# --------------------------------------------------------------------------- #
# single proportion
# --------------------------------------------------------------------------- #
def _wilson(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval from a proportion and a (possibly effective) n."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = z * z
        denom = 1.0 + z2 / n
        center = (p + z2 / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low, high = np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)
    # At p = 0 or 1 the bound is exactly 0 or 1; keep rounding from making it 0.9999999999999999.
    return np.where(p <= 0.0, 0.0, low), np.where(p >= 1.0, 1.0, high)


def _proportion_ci_arrays(
    c: np.ndarray, n: np.ndarray, confidence_level: float, method: str
) -> tuple[np.ndarray, np.ndarray]:
    alpha2 = (1.0 - confidence_level) / 2.0
    z = _z(confidence_level)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = c / n
        if method == "wilson":
            low, high = _wilson(p, n, z)
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
    method = _check_choice(method, PROPORTION_CI_METHODS, "method")
    confidence_level = _check_confidence(confidence_level)
    scalar = _is_scalar(count, nobs)
    c, n = _check_counts(count, nobs)
    low, high = _proportion_ci_arrays(c, n, confidence_level, method)
    return ConfidenceInterval(_out(low, scalar), _out(high, scalar))


# --------------------------------------------------------------------------- #
# design-weighted proportion from aggregates
# --------------------------------------------------------------------------- #
def weighted_aggregates(y: npt.ArrayLike, weights: npt.ArrayLike) -> dict[str, float]:
    """Sufficient sums for :func:`weighted_proportion` from raw unit-level arrays.

    Parameters
    ----------
    y : array_like
        Outcome per unit, in [0, 1] (binary for the usual case).
    weights : array_like
        Non-negative design weight per unit, same length as `y`.

    Returns
    -------
    dict
        Keys ``sum_wy``, ``sum_w``, ``sum_w2``, ``sum_w2y``, ``sum_w2y2`` and ``n``,
        ready for ``weighted_proportion(**weighted_aggregates(y, w))``. The same
        sums are what an engine computes in SQL (``SUM(w*y)``, ``SUM(w*w)``...).

    Examples
    --------
    >>> weighted_aggregates([1, 0, 1], [2.0, 1.0, 1.0])["sum_wy"]
    3.0
    """
    y_a = _as_float_array(y, "y").ravel()
    w_a = _as_float_array(weights, "weights").ravel()
    if y_a.shape != w_a.shape:
        raise ParameterError(MSG_SHAPES.format(shapes=[y_a.shape, w_a.shape]))
    if np.any(w_a < 0) or not np.all(np.isfinite(w_a)):
        bad = ~(w_a >= 0) | ~np.isfinite(w_a)
        raise ParameterError(
            MSG_RANGE.format(name="weights", interval="[0, inf)", value=_first_bad(w_a, bad)),
            key="weights",
        )
    w2 = w_a * w_a
    return {
        "sum_wy": float(np.sum(w_a * y_a)),
        "sum_w": float(np.sum(w_a)),
        "sum_w2": float(np.sum(w2)),
        "sum_w2y": float(np.sum(w2 * y_a)),
        "sum_w2y2": float(np.sum(w2 * y_a * y_a)),
        "n": int(y_a.size),
    }


@dataclass(frozen=True)
class WeightedProportion:
    """A design-weighted (Hajek) proportion with its interval.

    Fields are floats for scalar input and aligned ndarrays otherwise.

    Attributes
    ----------
    estimate : float or ndarray
        :math:`\\hat p = \\sum w y / \\sum w`.
    se : float or ndarray
        Linearised (Taylor) standard error of the ratio estimator.
    n_eff : float or ndarray
        Kish effective sample size :math:`(\\sum w)^2 / \\sum w^2`.
    ci_low, ci_high : float or ndarray
        Interval at `confidence_level` by `method`.
    n : float or ndarray
        Number of units.
    method : str
        ``"wilson"`` (Wilson at n_eff) or ``"linearized"`` (Wald on `se`).
    confidence_level : float
    """

    estimate: Any
    se: Any
    n_eff: Any
    ci_low: Any
    ci_high: Any
    n: Any
    method: str
    confidence_level: float

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Recompute the interval at another level with the same `method`."""
        confidence_level = _check_confidence(confidence_level)
        scalar = np.ndim(self.estimate) == 0
        low, high = _weighted_interval(
            np.asarray(self.estimate, float),
            np.asarray(self.se, float),
            np.asarray(self.n_eff, float),
            confidence_level,
            self.method,
        )
        return ConfidenceInterval(_out(low, scalar), _out(high, scalar))

    def to_frame(self) -> pd.DataFrame:
        """One row per proportion: ``estimate, se, n, n_eff, ci_low, ci_high, method, confidence_level``."""
        est = np.atleast_1d(np.asarray(self.estimate, float))
        frame = pd.DataFrame(
            {
                "estimate": est,
                "se": np.broadcast_to(self.se, est.shape),
                "n": np.broadcast_to(self.n, est.shape),
                "n_eff": np.broadcast_to(self.n_eff, est.shape),
                "ci_low": np.broadcast_to(self.ci_low, est.shape),
                "ci_high": np.broadcast_to(self.ci_high, est.shape),
            }
        )
        frame["method"] = self.method
        frame["confidence_level"] = self.confidence_level
        return frame


def _weighted_interval(
    p: np.ndarray, se: np.ndarray, n_eff: np.ndarray, confidence_level: float, method: str
) -> tuple[np.ndarray, np.ndarray]:
    z = _z(confidence_level)
    if method == "wilson":
        low, high = _wilson(p, n_eff, z)
    elif method == "korn_graubard":
        # Clopper-Pearson at the effective size, x = p n_eff (need not be whole)
        alpha = 1.0 - confidence_level
        with np.errstate(invalid="ignore"):
            x = p * n_eff
            low = np.where(x > 0, stats.beta.ppf(alpha / 2, x, n_eff - x + 1), 0.0)
            high = np.where(x < n_eff, stats.beta.ppf(1 - alpha / 2, x + 1, n_eff - x), 1.0)
    else:
        low, high = np.clip(p - z * se, 0.0, 1.0), np.clip(p + z * se, 0.0, 1.0)
    nan = np.isnan(p)
    return np.where(nan, np.nan, low), np.where(nan, np.nan, high)


def weighted_proportion(
    sum_wy: npt.ArrayLike,
    sum_w: npt.ArrayLike,
    sum_w2: npt.ArrayLike,
    sum_w2y: npt.ArrayLike,
    sum_w2y2: npt.ArrayLike | None = None,
    *,
    n: npt.ArrayLike,
    confidence_level: float = 0.95,
    method: str = "wilson",
) -> WeightedProportion:
    """Design-weighted proportion and interval from aggregated sums.

    Works from the sums an engine produces per segment, so the unit-level rows
    never leave the database. All arguments broadcast (vectorised).

    Parameters
    ----------
    sum_wy : float or array_like
        :math:`\\sum_i w_i y_i`.
    sum_w : float or array_like
        :math:`\\sum_i w_i`.
    sum_w2 : float or array_like
        :math:`\\sum_i w_i^2`.
    sum_w2y : float or array_like
        :math:`\\sum_i w_i^2 y_i`.
    sum_w2y2 : float or array_like, optional
        :math:`\\sum_i w_i^2 y_i^2`. Omit for binary `y` (then it equals `sum_w2y`).
    n : int or array_like
        Number of units (rows) behind the sums, for the :math:`n/(n-1)` factor.
    confidence_level : float, default 0.95
    method : {"wilson", "linearized"}, default "wilson"
        ``"wilson"``: Wilson score interval evaluated at the Kish effective
        sample size (effective-n Wilson in the spirit of Korn & Graubard 1998).
        ``"linearized"``: Wald interval :math:`\\hat p \\pm z\\,\\widehat{se}`,
        clipped to [0, 1].

    Returns
    -------
    WeightedProportion
        ``estimate, se, n_eff, ci_low, ci_high, n, method, confidence_level``.
        Segments with ``sum_w == 0`` or ``n == 0`` give NaN; ``n == 1`` gives a
        NaN `se` (the Wilson interval is still defined).

    Notes
    -----
    Hajek (ratio) estimator :math:`\\hat p = \\sum w y / \\sum w` with the
    with-replacement linearised variance

    .. math:: \\widehat{var}(\\hat p) = \\frac{n}{n-1}
              \\frac{\\sum w_i^2 (y_i - \\hat p)^2}{(\\sum w_i)^2},\\quad
              \\sum w^2 (y-\\hat p)^2 = \\sum w^2y^2 - 2\\hat p\\sum w^2 y + \\hat p^2 \\sum w^2.

    The default interval is Wilson with :math:`n` replaced by Kish's
    :math:`n_{eff} = (\\sum w)^2/\\sum w^2`. Korn & Graubard (1998) use the
    variance-based :math:`n^* = \\hat p(1-\\hat p)/\\widehat{var}(\\hat p)`
    instead; Kish's version depends on the weights only, so it stays usable
    when :math:`\\hat p \\in \\{0, 1\\}` (where the linearised variance is 0).
    With equal weights the Wilson interval equals :func:`proportion_ci`.

    Tested against a direct computation on raw arrays and statsmodels
    ``DescrStatsW`` (weighted mean).

    Examples
    --------
    >>> agg = weighted_aggregates([1, 0, 0, 1, 0], [1.0, 2.0, 1.0, 3.0, 1.0])
    >>> res = weighted_proportion(**agg)
    >>> round(res.estimate, 3), round(res.n_eff, 2)
    (0.5, 4.0)
    >>> round(res.ci_low, 3), round(res.ci_high, 3)
    (0.15, 0.85)
    """
    method = _check_choice(method, WEIGHTED_CI_METHODS, "method")
    confidence_level = _check_confidence(confidence_level)
    scalar = _is_scalar(sum_wy, sum_w, sum_w2, sum_w2y, sum_w2y2, n)
    arrays = [
        _as_float_array(v, name)
        for v, name in (
            (sum_wy, "sum_wy"),
            (sum_w, "sum_w"),
            (sum_w2, "sum_w2"),
            (sum_w2y, "sum_w2y"),
            (sum_w2y if sum_w2y2 is None else sum_w2y2, "sum_w2y2"),
            (n, "n"),
        )
    ]
    try:
        swy, sw, sw2, sw2y, sw2y2, n_a = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise ParameterError(MSG_SHAPES.format(shapes=[a.shape for a in arrays])) from exc
    for arr, name in ((sw, "sum_w"), (sw2, "sum_w2"), (sw2y, "sum_w2y"), (n_a, "n")):
        if np.any(arr < 0):
            raise ParameterError(
                MSG_RANGE.format(name=name, interval="[0, inf)", value=_first_bad(arr, arr < 0)),
                key=name,
            )
    with np.errstate(invalid="ignore"):
        bad = (swy < 0) | (swy > sw * (1 + 1e-12))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="sum_wy", interval="[0, sum_w]", value=_first_bad(swy, bad)),
            key="sum_wy",
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        defined = (sw > 0) & (n_a > 0)
        p = np.where(defined, swy / sw, np.nan)
        n_eff = np.where(defined, sw * sw / sw2, np.nan)
        ss = np.maximum(sw2y2 - 2.0 * p * sw2y + p * p * sw2, 0.0)
        factor = np.where(n_a > 1, n_a / (n_a - 1.0), np.nan)
        se = np.sqrt(factor * ss) / sw
        se = np.where(defined, se, np.nan)
    low, high = _weighted_interval(p, se, n_eff, confidence_level, method)
    return WeightedProportion(
        estimate=_out(p, scalar),
        se=_out(se, scalar),
        n_eff=_out(n_eff, scalar),
        ci_low=_out(low, scalar),
        ci_high=_out(high, scalar),
        n=_out(n_a, scalar),
        method=method,
        confidence_level=confidence_level,
    )


def stratified_proportion(
    sum_wy: npt.ArrayLike,
    sum_w: npt.ArrayLike,
    sum_w2: npt.ArrayLike,
    sum_w2y: npt.ArrayLike,
    sum_w2y2: npt.ArrayLike | None = None,
    *,
    n: npt.ArrayLike,
    segment: npt.ArrayLike | None = None,
    population: npt.ArrayLike | None = None,
    domain_n: npt.ArrayLike | None = None,
    confidence_level: float = 0.95,
    method: str = "wilson",
    pure_events: float = 0.25,
) -> WeightedProportion:
    """Design-weighted proportion of a stratified sample, from per-stratum sums.

    Each array element is one stratum of one segment (the sums an engine
    produces grouped by segment and stratum); `segment` says which segment
    (integer codes ``0..k-1``). The result has one element per segment.

    Parameters
    ----------
    sum_wy, sum_w, sum_w2, sum_w2y, sum_w2y2 : array_like
        Per-stratum :math:`\\sum w y`, :math:`\\sum w`, :math:`\\sum w^2`,
        :math:`\\sum w^2 y` and :math:`\\sum w^2 y^2` (omit the last for binary
        `y`), as in :func:`weighted_proportion`.
    n : array_like
        Units (rows) per stratum, :math:`n_h`.
    segment : array_like of int, optional
        Segment code of each stratum; all strata form one segment when omitted.
    population : array_like, optional
        Stratum sizes :math:`N_h` where known (NaN where not), for the
        finite-population correction :math:`1 - n_h/N_h`. Without it the
        correction is dropped (a conservative with-replacement variance).
    domain_n : array_like, optional
        For a rate within a domain (e.g. precision: the share of true
        violations among the items the model flagged): the sums cover the
        domain's units only, `n` counts every unit of the stratum and
        `domain_n` the domain's. Units outside the domain then count as zeros
        in the within-stratum variance (domain estimation, Lohr 2010 §4.3),
        and `domain_n` is the sample size :math:`n^*` refers to.
    confidence_level : float, default 0.95
    method : {"wilson", "korn_graubard", "linearized"}, default "wilson"
        ``"wilson"``: Wilson score interval at the design effective sample
        size :math:`n^*`; ``"korn_graubard"``: Clopper-Pearson interval at
        :math:`n^*` (Korn & Graubard 1998); ``"linearized"``: Wald interval
        clipped to [0, 1].
    pure_events : float, default 0.25
        For a 0/1 outcome (`sum_w2y2` omitted): a stratum whose audits all
        have the same outcome gets the within-stratum variance it would have
        if this many of them had the other outcome (see Notes); 0 turns it off.

    Returns
    -------
    WeightedProportion
        Per segment: ``estimate, se, n_eff`` (:math:`n^*`), ``ci_low, ci_high``,
        ``n`` (:math:`\\sum_h n_h`).

    Notes
    -----
    Hajek (ratio) estimator :math:`\\hat p = \\sum_h \\sum_i w_{hi} y_{hi} /
    \\hat N`, :math:`\\hat N = \\sum_h \\sum_i w_{hi}`, with the stratified
    linearised variance (Lohr 2010, §9.1; Cochran 1977, §5.2)

    .. math:: \\widehat{var}(\\hat p) = \\frac{1}{\\hat N^2} \\sum_h (1-f_h)
              \\frac{n_h}{n_h-1} \\sum_i (a_{hi} - \\bar a_h)^2,\\quad
              a_{hi} = w_{hi}(y_{hi} - \\hat p).

    With a constant weight in each stratum this is the textbook
    :math:`\\sum_h (\\hat N_h/\\hat N)^2 (1-f_h) s_h^2/n_h` with
    :math:`\\hat N_h = \\sum_i w_{hi}`. A stratum with one unit has no
    within-stratum variance; it contributes :math:`a_{hi}^2` (centred at the
    overall mean, as R ``survey``'s ``lonely.psu = "adjust"``).

    The interval is Wilson's score interval at the design effective sample
    size :math:`n^* = n\\,\\widehat{var}_{srs}/\\widehat{var}(\\hat p)` with
    :math:`\\widehat{var}_{srs} = \\hat p(1-\\hat p)/(n-1)`, i.e. :math:`n` over
    the design effect (the effective-size approach of Korn, E. L. & Graubard,
    B. I. (1998). Confidence intervals for proportions with small expected
    number of positive counts estimated from survey data. *Survey Methodology*
    24(2), 193-201, who put Clopper-Pearson at :math:`n^*`:
    ``method="korn_graubard"``, without their degrees-of-freedom factor). Where
    the variance is 0 (:math:`\\hat p \\in \\{0, 1\\}`) :math:`n^* = n`, as Korn &
    Graubard do for :math:`\\hat p = 0`.

    *Pure strata.* QA rates sit near 0 or 1, so a stratum of tens of audits
    often has every audit correct (a 97% stratum with 35 audits: 34% of the
    time). Its estimated variance is then 0, the design effect is understated
    and the interval too narrow in exactly those samples: on issue #17's
    designs, coverage was about 58% in them against 98% in the others. Such a
    stratum's within-stratum variance gets the variance of `pure_events`
    (default 1/4) audits with the other outcome added to it,
    :math:`\\frac{n_h}{n_h-1}\\,\\overline{w^2_h}\\,e(1-e/n_h)` with :math:`e` =
    `pure_events` (in a domain, :math:`n_h` in the last factor and the mean
    weight are the domain's, and the units outside it keep their own
    variation). This is the idea of adding pseudo-counts to an empty cell, as
    Agresti & Coull's and Jeffreys' intervals do; 1/4 is the value the
    coverage study chose: with it, Wilson at :math:`n^*` covers 93-98% on the
    study's designs where Clopper-Pearson at :math:`n^*` without it ranged
    90-99% (``benchmarks/results/coverage.md``).

    The variance conditions on the stratum sample sizes: it is the design
    variance of stratified sampling with a fixed number of audits per stratum.
    When audits are drawn independently (Bernoulli sampling, so :math:`n_h` is
    random) the estimated stratum shares vary too, and one stratum
    (``strata="none"`` in :func:`qualitylab.metrics.qa_metrics`) is the
    matching variance.

    Examples
    --------
    Two strata, 3 of 4 correct at weight 1 and 1 of 2 at weight 3:

    >>> res = stratified_proportion([3, 3], [4, 6], [4, 18], [3, 9], n=[4, 2])
    >>> round(float(res.estimate[0]), 3), round(float(res.se[0]), 4)
    (0.6, 0.3162)

    which is :math:`\\sqrt{0.4^2 \\cdot 0.25/4 + 0.6^2 \\cdot 0.5/2} = \\sqrt{0.1}`.
    """
    method = _check_choice(method, STRATIFIED_CI_METHODS, "method")
    confidence_level = _check_confidence(confidence_level)
    arrays = [
        np.atleast_1d(_as_float_array(v, name))
        for v, name in (
            (sum_wy, "sum_wy"),
            (sum_w, "sum_w"),
            (sum_w2, "sum_w2"),
            (sum_w2y, "sum_w2y"),
            (sum_w2y if sum_w2y2 is None else sum_w2y2, "sum_w2y2"),
            (n, "n"),
            (np.nan if population is None else population, "population"),
            (n if domain_n is None else domain_n, "domain_n"),
        )
    ]
    try:
        swy, sw, sw2, sw2y, sw2y2, n_h, pop, n_d = np.broadcast_arrays(*arrays)
    except ValueError as exc:
        raise ParameterError(MSG_SHAPES.format(shapes=[a.shape for a in arrays])) from exc
    for arr, name in ((sw, "sum_w"), (sw2, "sum_w2"), (sw2y, "sum_w2y"), (n_h, "n")):
        if np.any(arr < 0):
            raise ParameterError(
                MSG_RANGE.format(name=name, interval="[0, inf)", value=_first_bad(arr, arr < 0)),
                key=name,
            )
    seg = (
        np.zeros(swy.shape, dtype=np.int64)
        if segment is None
        else np.broadcast_to(np.asarray(segment, dtype=np.int64), swy.shape)
    )
    k = int(seg.max()) + 1 if seg.size else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        n_seg = np.bincount(seg, weights=n_d, minlength=k)
        big_n = np.bincount(seg, weights=sw, minlength=k)
        defined = (big_n > 0) & (n_seg > 0)
        p = np.where(defined, np.bincount(seg, weights=swy, minlength=k) / big_n, np.nan)
        ph = p[seg]
        sum_a = swy - ph * sw
        sum_a2 = np.maximum(sw2y2 - 2.0 * ph * sw2y + ph * ph * sw2, 0.0)
        within = np.where(
            n_h > 1,
            n_h / (n_h - 1.0) * np.maximum(sum_a2 - sum_a * sum_a / n_h, 0.0),
            sum_a2,
        )
        # a stratum whose units all agree has exactly 0; the subtraction above
        # leaves round-off (~1e-18), which would make n* ~ 1e16
        within = np.where((n_h > 1) & (within <= 1e-12 * sum_a2), 0.0, within)
        if sum_w2y2 is None and pure_events > 0:
            # a stratum whose audits all agree: its variance as if `pure_events`
            # of them had gone the other way (see Notes)
            pure = (n_h > 1) & (n_d >= 1) & (np.isclose(swy, 0.0) | np.isclose(swy, sw))
            e = np.minimum(pure_events, n_d / 2.0)
            floor = n_h / (n_h - 1.0) * (sw2 / np.maximum(n_d, 1.0)) * e * (1.0 - e / n_d)
            # added: in a domain the units outside it still vary (a = 0 there)
            within = np.where(pure, within + floor, within)
        fpc = np.where(np.isfinite(pop) & (pop > 0), np.clip(1.0 - n_h / pop, 0.0, 1.0), 1.0)
        var = np.bincount(seg, weights=np.where(n_h > 0, fpc * within, 0.0), minlength=k)
        var = np.where(defined, var / (big_n * big_n), np.nan)
        se = np.sqrt(var)
        v_srs = np.where(n_seg > 1, p * (1.0 - p) / (n_seg - 1.0), 0.0)
        n_eff = np.where((var > 0) & (v_srs > 0), n_seg * v_srs / var, n_seg)
        n_eff = np.where(defined, n_eff, np.nan)
    low, high = _weighted_interval(p, se, n_eff, confidence_level, method)
    return WeightedProportion(
        estimate=p,
        se=se,
        n_eff=n_eff,
        ci_low=low,
        ci_high=high,
        n=n_seg,
        method=method,
        confidence_level=confidence_level,
    )


# --------------------------------------------------------------------------- #
# result objects
# --------------------------------------------------------------------------- #
_FRAME_HEAD = ["method", "alternative", "estimate", "statistic", "pvalue", "ci_low", "ci_high"]


class _FrameMixin:
    """Shared ``to_frame``: fixed leading columns, then the remaining public fields."""

    confidence_level: float

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        raise NotImplementedError  # pragma: no cover

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame: ``method, alternative, estimate, statistic, pvalue,
        ci_low, ci_high, confidence_level`` followed by the result's other fields."""
        low, high = self.confidence_interval(self.confidence_level)
        row: dict[str, Any] = {"ci_low": low, "ci_high": high}
        extra: list[str] = []
        for f in self.__dataclass_fields__.values():  # type: ignore[attr-defined]
            if f.repr:
                row[f.name] = getattr(self, f.name)
                if f.name not in _FRAME_HEAD:
                    extra.append(f.name)
        extra.remove("confidence_level")
        columns = [*_FRAME_HEAD, "confidence_level", *extra]
        return pd.DataFrame([row], columns=columns)


@dataclass(frozen=True)
class ProportionTestResult(_FrameMixin):
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
class HomogeneityTestResult(_FrameMixin):
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
class McNemarResult(_FrameMixin):
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


@dataclass(frozen=True)
class RankTestResult(_FrameMixin):
    """Result of :func:`mann_whitney`.

    Attributes
    ----------
    statistic : float
        Mann-Whitney U of `x` (scipy's ``U1``).
    pvalue : float
    method : str
        scipy's method, ``"exact"`` or ``"asymptotic"``.
    alternative : str
    estimate : float
        Probability of superiority :math:`U_1/(n_x n_y) = P(X>Y) + P(X=Y)/2`
        (the AUC of x against y).
    confidence_level : float
    se : float
        DeLong et al. (1988) standard error of `estimate`.
    n_x, n_y : int
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    se: float
    n_x: int
    n_y: int

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Wald interval ``estimate ± z·se`` on the probability scale, clipped to [0, 1]."""
        z = _z(_check_confidence(confidence_level))
        return ConfidenceInterval(
            float(np.clip(self.estimate - z * self.se, 0.0, 1.0)),
            float(np.clip(self.estimate + z * self.se, 0.0, 1.0)),
        )


@dataclass(frozen=True)
class BootstrapResult:
    """Percentile bootstrap estimate, as returned by :func:`bootstrap_quantile_diff`.

    Attributes
    ----------
    estimate : float
        The statistic on the observed data.
    ci_low, ci_high : float
        Percentile interval at `confidence_level`.
    se : float
        Standard deviation of the bootstrap distribution.
    confidence_level : float
    n_resamples : int
    method : str
        ``"percentile"``.
    distribution : ndarray
        Bootstrap replicates (not shown in repr, not compared).
    """

    estimate: float
    ci_low: float
    ci_high: float
    se: float
    confidence_level: float
    n_resamples: int
    method: str
    distribution: np.ndarray = field(repr=False, compare=False)

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Percentile interval from the stored replicates."""
        a = (1.0 - _check_confidence(confidence_level)) / 2.0
        low, high = np.nanquantile(self.distribution, [a, 1.0 - a])
        return ConfidenceInterval(float(low), float(high))

    def to_frame(self) -> pd.DataFrame:
        """One row: ``estimate, se, ci_low, ci_high, confidence_level, n_resamples, method``."""
        cols = ["estimate", "se", "ci_low", "ci_high", "confidence_level", "n_resamples", "method"]
        return pd.DataFrame([{c: getattr(self, c) for c in cols}], columns=cols)


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
    confidence_level = _check_confidence(confidence_level)
    scalar = _is_scalar(count1, nobs1, count2, nobs2)
    c1, n1 = _check_counts(count1, nobs1)
    c2, n2 = _check_counts(count2, nobs2)
    l1, u1 = _proportion_ci_arrays(c1, n1, confidence_level, "wilson")
    l2, u2 = _proportion_ci_arrays(c2, n2, confidence_level, "wilson")
    with np.errstate(divide="ignore", invalid="ignore"):
        p1, p2 = c1 / n1, c2 / n2
        d = p1 - p2
        low = d - np.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
        high = d + np.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return ConfidenceInterval(_out(low, scalar), _out(high, scalar))


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
    alternative = _check_choice(alternative, ALTERNATIVES, "alternative")
    method = _check_choice(method, COMPARE_METHODS, "method")
    confidence_level = _check_confidence(confidence_level)
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
    confidence_level = _check_confidence(confidence_level)
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
    confidence_level = _check_confidence(confidence_level)
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


# --------------------------------------------------------------------------- #
# continuous outcomes
# --------------------------------------------------------------------------- #
def _finite_1d(x: npt.ArrayLike, name: str) -> np.ndarray:
    a = _as_float_array(x, name).ravel()
    a = a[~np.isnan(a)]
    if a.size == 0:
        raise ParameterError(MSG_EMPTY.format(name=name, size=0), key=name)
    return a


def mann_whitney(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    alternative: str = "two-sided",
    confidence_level: float = 0.95,
) -> RankTestResult:
    """Mann-Whitney U test with the probability of superiority as effect size.

    Parameters
    ----------
    x, y : array_like
        Two independent samples; NaNs are dropped.
    alternative : {"two-sided", "less", "greater"}, default "two-sided"
        ``"greater"``: x tends to be larger than y.
    confidence_level : float, default 0.95
        Level of the interval reported by ``to_frame()``.

    Returns
    -------
    RankTestResult
        ``statistic`` is U of `x`, ``pvalue`` as :func:`scipy.stats.mannwhitneyu`
        (``method="auto"``, tie- and continuity-corrected in the asymptotic case);
        ``estimate`` :math:`= U_x/(n_x n_y)` with DeLong ``se``.

    Notes
    -----
    :math:`\\hat A = U_x/(n_x n_y) = P(X > Y) + \\tfrac12 P(X = Y)`. DeLong,
    DeLong & Clarke-Pearson (1988) variance from placement values
    :math:`V_{10,i} = (R_i - R^{x}_i)/n_y`, :math:`V_{01,j} = 1 - (R_j - R^{y}_j)/n_x`
    (:math:`R` midranks in the pooled sample, :math:`R^{x}` within x):
    :math:`\\widehat{var}(\\hat A) = s^2_{10}/n_x + s^2_{01}/n_y`.
    Test statistic and p-value are scipy's; the DeLong SE is tested against a
    direct O(n_x n_y) computation.

    Examples
    --------
    >>> res = mann_whitney([3.1, 4.2, 5.0, 6.3], [1.0, 2.2, 3.5])
    >>> res.statistic, round(res.pvalue, 3), round(res.estimate, 3)
    (11.0, 0.114, 0.917)
    """
    alternative = _check_choice(alternative, ALTERNATIVES, "alternative")
    confidence_level = _check_confidence(confidence_level)
    xa, ya = _finite_1d(x, "x"), _finite_1d(y, "y")
    nx, ny = xa.size, ya.size
    ranks = stats.rankdata(np.concatenate([xa, ya]))
    ties = np.unique(ranks).size < ranks.size
    # scipy's own "auto" rule, made explicit so the result can report it
    method = "asymptotic" if (nx > 8 and ny > 8) or ties else "exact"
    res = stats.mannwhitneyu(xa, ya, alternative=alternative, method=method)
    estimate = float(res.statistic) / (nx * ny)
    v10 = (ranks[:nx] - stats.rankdata(xa)) / ny
    v01 = 1.0 - (ranks[nx:] - stats.rankdata(ya)) / nx
    var = (np.var(v10, ddof=1) / nx if nx > 1 else np.nan) + (
        np.var(v01, ddof=1) / ny if ny > 1 else np.nan
    )
    return RankTestResult(
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        method=method,
        alternative=alternative,
        estimate=estimate,
        confidence_level=confidence_level,
        se=float(np.sqrt(var)),
        n_x=int(nx),
        n_y=int(ny),
    )


def bootstrap_quantile_diff(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    *,
    q: float = 0.5,
    n_resamples: int = 2000,
    confidence_level: float = 0.95,
    seed: int | None = 0,
) -> BootstrapResult:
    """Percentile bootstrap interval for ``quantile(x, q) - quantile(y, q)``.

    Parameters
    ----------
    x, y : array_like
        Two independent samples; NaNs are dropped.
    q : float, default 0.5
        Quantile level in [0, 1] (0.5 = median, 0.9 = p90 handling time...).
    n_resamples : int, default 2000
        Bootstrap replicates; each resamples x and y independently.
    confidence_level : float, default 0.95
    seed : int or None, default 0
        Seed of :func:`numpy.random.default_rng`; fixed for reproducible reports.

    Returns
    -------
    BootstrapResult
        ``estimate``, percentile ``ci_low``/``ci_high``, bootstrap ``se`` and the
        replicates in ``distribution``.

    Notes
    -----
    Quantiles use numpy's default (linear, type 7) definition. The percentile
    interval is :math:`[\\hat\\theta^*_{(\\alpha/2)}, \\hat\\theta^*_{(1-\\alpha/2)}]`
    (Efron & Tibshirani 1993, ch. 13). Tested against
    :func:`scipy.stats.bootstrap` (``method="percentile"``, independent
    resampling) up to Monte-Carlo error.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x, y = rng.normal(10, 2, 200), rng.normal(9, 2, 200)
    >>> res = bootstrap_quantile_diff(x, y, n_resamples=500)
    >>> bool(res.ci_low < res.estimate < res.ci_high)
    True
    """
    confidence_level = _check_confidence(confidence_level)
    if not 0.0 <= q <= 1.0:
        raise ParameterError(MSG_RANGE.format(name="q", interval="[0, 1]", value=q), key="q")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ParameterError(
            MSG_RANGE.format(name="n_resamples", interval="positive integers", value=n_resamples),
            key="n_resamples",
        )
    xa, ya = _finite_1d(x, "x"), _finite_1d(y, "y")
    rng = np.random.default_rng(seed)
    estimate = float(np.quantile(xa, q) - np.quantile(ya, q))
    reps = np.empty(int(n_resamples))
    chunk = max(1, int(4_000_000 // max(xa.size, ya.size)))
    for start in range(0, int(n_resamples), chunk):
        stop = min(start + chunk, int(n_resamples))
        bx = xa[rng.integers(0, xa.size, size=(stop - start, xa.size))]
        by = ya[rng.integers(0, ya.size, size=(stop - start, ya.size))]
        reps[start:stop] = np.quantile(bx, q, axis=1) - np.quantile(by, q, axis=1)
    a = (1.0 - confidence_level) / 2.0
    low, high = np.quantile(reps, [a, 1.0 - a])
    return BootstrapResult(
        estimate=estimate,
        ci_low=float(low),
        ci_high=float(high),
        se=float(np.std(reps, ddof=1)) if reps.size > 1 else float("nan"),
        confidence_level=confidence_level,
        n_resamples=int(n_resamples),
        method="percentile",
        distribution=reps,
    )


# --------------------------------------------------------------------------- #
# multiplicity
# --------------------------------------------------------------------------- #
def adjust_pvalues(p: npt.ArrayLike, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p : array_like
        P-values in [0, 1], any shape. NaNs pass through as NaN and do not
        count towards the number of tests m.
    method : {"holm", "bonferroni", "fdr_bh"}, default "holm"
        Family-wise control (Holm 1979 step-down, Bonferroni) or false
        discovery rate (Benjamini & Hochberg 1995).

    Returns
    -------
    ndarray
        Adjusted p-values, same shape as `p`, capped at 1.

    Notes
    -----
    With sorted :math:`p_{(1)} \\le \\dots \\le p_{(m)}`:
    Bonferroni :math:`\\min(1, m p_i)`;
    Holm :math:`\\tilde p_{(i)} = \\max_{j \\le i} \\min(1, (m-j+1) p_{(j)})`;
    BH :math:`\\tilde p_{(i)} = \\min_{j \\ge i} \\min(1, m p_{(j)}/j)`.
    Tested against statsmodels ``multipletests``.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03, 0.005, 0.20], method="holm")
    array([0.04 , 0.09 , 0.09 , 0.025, 0.2  ])
    """
    method = _check_choice(method, ADJUST_METHODS, "method")
    arr = _as_float_array(p, "p")
    flat = arr.ravel()
    ok = ~np.isnan(flat)
    vals = flat[ok]
    if np.any((vals < 0) | (vals > 1)):
        bad = (vals < 0) | (vals > 1)
        raise ParameterError(
            MSG_RANGE.format(name="p", interval="[0, 1]", value=_first_bad(vals, bad)), key="p"
        )
    m = vals.size
    out = np.full(flat.shape, np.nan)
    if m == 0:
        return out.reshape(arr.shape)
    if method == "bonferroni":
        adj = np.minimum(1.0, vals * m)
    else:
        order = np.argsort(vals, kind="mergesort")
        sorted_p = vals[order]
        rank = np.arange(1, m + 1)
        if method == "holm":
            adj_sorted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * sorted_p))
        else:  # fdr_bh
            adj_sorted = np.minimum.accumulate((m * sorted_p / rank)[::-1])[::-1]
            adj_sorted = np.minimum(1.0, adj_sorted)
        adj = np.empty(m)
        adj[order] = adj_sorted
    out[ok] = adj
    return out.reshape(arr.shape)


# --------------------------------------------------------------------------- #
# audit planning
# --------------------------------------------------------------------------- #
def _ceil_int(x: np.ndarray, scalar: bool) -> int | np.ndarray:
    # A tolerance keeps 384.0000000001 (floating noise) from becoming 385.
    n = np.ceil(np.asarray(x, float) - 1e-9).astype(np.int64)
    return int(n) if scalar else n


def audits_for_margin(
    p: npt.ArrayLike,
    margin: npt.ArrayLike,
    *,
    confidence_level: float = 0.95,
    deff: npt.ArrayLike = 1.0,
    population: npt.ArrayLike | None = None,
) -> int | np.ndarray:
    """Audits needed so a rate is estimated within ± `margin`.

    Parameters
    ----------
    p : float or array_like
        Anticipated rate in (0, 1); use 0.5 when unknown (the most conservative).
    margin : float or array_like
        Desired half-width of the interval, in (0, 1) (0.03 = ±3 points).
    confidence_level : float, default 0.95
    deff : float or array_like, default 1.0
        Design effect (> 0), e.g. Kish's :math:`1 + cv^2(w)` for weighted
        samples, or a clustering effect.
    population : int or array_like, optional
        Population size N for the finite-population correction (sampling
        without replacement from a finite queue).

    Returns
    -------
    int or ndarray of int
        Required sample size, rounded up; capped at `population` if given.

    Notes
    -----
    Normal (Wald) planning formula, Cochran (1977) eqs. 4.1-4.2:

    .. math:: n_0 = \\frac{z^2\\, p(1-p)}{m^2}\\,\\mathrm{deff},\\qquad
              n = \\frac{n_0}{1 + (n_0 - 1)/N}.

    The second step solves :math:`m^2 = z^2 p(1-p)/n\\cdot(N-n)/(N-1)`
    (times deff). Near 0 or 1 a Wald-based plan is optimistic; a Wilson
    interval on the resulting n is slightly wider than `margin`. Tested against
    the closed form and against the half-width of :func:`proportion_ci`
    (``method="normal"``).

    Examples
    --------
    >>> audits_for_margin(0.5, 0.05)
    385
    >>> audits_for_margin(0.5, 0.05, population=1000)
    278
    >>> audits_for_margin([0.1, 0.5], 0.03, deff=1.5).tolist()
    [577, 1601]
    """
    confidence_level = _check_confidence(confidence_level)
    scalar = _is_scalar(p, margin, deff, population)
    p_a, m_a, d_a = (
        _as_float_array(v, k) for v, k in ((p, "p"), (margin, "margin"), (deff, "deff"))
    )
    for arr, name in ((p_a, "p"), (m_a, "margin")):
        bad = ~((arr > 0) & (arr < 1))
        if np.any(bad):
            raise ParameterError(
                MSG_RANGE.format(name=name, interval="(0, 1)", value=_first_bad(arr, bad)),
                key=name,
            )
    if np.any(~(d_a > 0)):
        raise ParameterError(
            MSG_RANGE.format(name="deff", interval="(0, inf)", value=_first_bad(d_a, ~(d_a > 0))),
            key="deff",
        )
    z = _z(confidence_level)
    n0 = z * z * p_a * (1.0 - p_a) / (m_a * m_a) * d_a
    if population is not None:
        big_n = _as_float_array(population, "population")
        if np.any(~(big_n >= 1)):
            raise ParameterError(
                MSG_RANGE.format(
                    name="population", interval="[1, inf)", value=_first_bad(big_n, ~(big_n >= 1))
                ),
                key="population",
            )
        n0 = np.minimum(n0 / (1.0 + (n0 - 1.0) / big_n), big_n)
    return _ceil_int(n0, scalar)


def _n_per_group(h: float, alpha: float, power: float, alternative: str) -> float:
    """Continuous per-group n for Cohen's h (NormalIndPower, ratio=1)."""
    if alternative == "one-sided":
        return ((stats.norm.isf(alpha) + stats.norm.ppf(power)) / h) ** 2 * 2.0
    crit = stats.norm.isf(alpha / 2.0)

    def gap(n: float) -> float:
        shift = h * math.sqrt(n / 2.0)
        return float(stats.norm.sf(crit - shift) + stats.norm.cdf(-crit - shift) - power)

    approx = ((crit + stats.norm.ppf(power)) / h) ** 2 * 2.0
    return float(optimize.brentq(gap, approx * 0.5, approx * 1.5 + 1.0, xtol=1e-10))


def audits_to_detect_drop(
    p0: npt.ArrayLike,
    drop: npt.ArrayLike,
    *,
    power: float = 0.8,
    alpha: float = 0.05,
    alternative: str = "one-sided",
) -> int | np.ndarray:
    """Audits per group to detect a drop in a rate from `p0` to ``p0 - drop``.

    Parameters
    ----------
    p0 : float or array_like
        Baseline rate (e.g. accuracy), in (0, 1].
    drop : float or array_like
        Absolute drop to detect, with ``0 < drop <= p0``.
    power : float, default 0.8
        Probability of detecting the drop if it is real.
    alpha : float, default 0.05
        Significance level.
    alternative : {"one-sided", "two-sided"}, default "one-sided"
        One-sided looks for a drop only; two-sided for a change either way
        (power includes the negligible opposite tail, as statsmodels).

    Returns
    -------
    int or ndarray of int
        Sample size per group (baseline and comparison), rounded up.

    Notes
    -----
    Arcsine effect size (Cohen's h), :math:`h = 2\\arcsin\\sqrt{p_0} -
    2\\arcsin\\sqrt{p_0 - \\delta}`, and equal groups:

    .. math:: n = 2\\left(\\frac{z_{1-\\alpha} + z_{1-\\beta}}{h}\\right)^2

    (:math:`z_{1-\\alpha/2}` and a root-find when two-sided). Cohen (1988),
    ch. 6. Tested against statsmodels ``NormalIndPower().solve_power`` with
    ``proportion_effectsize``.

    Examples
    --------
    >>> audits_to_detect_drop(0.95, 0.05)
    334
    >>> audits_to_detect_drop(0.95, 0.05, alternative="two-sided")
    424
    """
    alternative = _check_choice(alternative, PLANNING_ALTERNATIVES, "alternative")
    power = _check_open_unit(power, "power")
    alpha = _check_open_unit(alpha, "alpha")
    scalar = _is_scalar(p0, drop)
    p_a, d_a = np.broadcast_arrays(_as_float_array(p0, "p0"), _as_float_array(drop, "drop"))
    bad = ~((p_a > 0) & (p_a <= 1))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="p0", interval="(0, 1]", value=_first_bad(p_a, bad)), key="p0"
        )
    bad = ~((d_a > 0) & (d_a <= p_a))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="drop", interval="(0, p0]", value=_first_bad(d_a, bad)),
            key="drop",
        )
    h = 2.0 * np.arcsin(np.sqrt(p_a)) - 2.0 * np.arcsin(np.sqrt(p_a - d_a))
    n = np.array([_n_per_group(float(hh), alpha, power, alternative) for hh in h.ravel()])
    return _ceil_int(n.reshape(h.shape), scalar)
