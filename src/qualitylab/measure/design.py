"""Design-weighted proportions from aggregated sums (survey estimation).

The QA audits are a weighted, often stratified, sample of the decisions. These
functions estimate a rate from the sums an engine computes per segment (and per
stratum), so unit-level rows never leave the database:

* :func:`weighted_aggregates` - the sufficient sums from raw arrays.
* :func:`weighted_proportion` - Hajek estimate, linearised SE, Kish effective n.
* :func:`stratified_proportion` - per-stratum sums combined with the stratified
  variance; domain rates; Wilson or Korn-Graubard interval at the design
  effective size.

All are re-exported by :mod:`qualitylab.stats`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from qualitylab.errors import ParameterError
from qualitylab.measure.statbase import (
    MSG_RANGE,
    MSG_SHAPES,
    ConfidenceInterval,
    as_float_array,
    check_choice,
    check_confidence,
    first_bad,
    is_scalar,
    scalar_or_array,
    wilson_limits,
    z_critical,
)

__all__ = [
    "WeightedProportion",
    "stratified_proportion",
    "weighted_aggregates",
    "weighted_proportion",
]

WEIGHTED_CI_METHODS = ("wilson", "linearized")
STRATIFIED_CI_METHODS = ("korn_graubard", "wilson", "linearized")


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
    y_a = as_float_array(y, "y").ravel()
    w_a = as_float_array(weights, "weights").ravel()
    if y_a.shape != w_a.shape:
        raise ParameterError(MSG_SHAPES.format(shapes=[y_a.shape, w_a.shape]))
    if np.any(w_a < 0) or not np.all(np.isfinite(w_a)):
        bad = ~(w_a >= 0) | ~np.isfinite(w_a)
        raise ParameterError(
            MSG_RANGE.format(name="weights", interval="[0, inf)", value=first_bad(w_a, bad)),
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
        confidence_level = check_confidence(confidence_level)
        scalar = np.ndim(self.estimate) == 0
        low, high = _weighted_interval(
            np.asarray(self.estimate, float),
            np.asarray(self.se, float),
            np.asarray(self.n_eff, float),
            confidence_level,
            self.method,
        )
        return ConfidenceInterval(scalar_or_array(low, scalar), scalar_or_array(high, scalar))

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
    z = z_critical(confidence_level)
    if method == "wilson":
        low, high = wilson_limits(p, n_eff, z)
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
    method = check_choice(method, WEIGHTED_CI_METHODS, "method")
    confidence_level = check_confidence(confidence_level)
    scalar = is_scalar(sum_wy, sum_w, sum_w2, sum_w2y, sum_w2y2, n)
    arrays = [
        as_float_array(v, name)
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
                MSG_RANGE.format(name=name, interval="[0, inf)", value=first_bad(arr, arr < 0)),
                key=name,
            )
    with np.errstate(invalid="ignore"):
        bad = (swy < 0) | (swy > sw * (1 + 1e-12))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="sum_wy", interval="[0, sum_w]", value=first_bad(swy, bad)),
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
        estimate=scalar_or_array(p, scalar),
        se=scalar_or_array(se, scalar),
        n_eff=scalar_or_array(n_eff, scalar),
        ci_low=scalar_or_array(low, scalar),
        ci_high=scalar_or_array(high, scalar),
        n=scalar_or_array(n_a, scalar),
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
    method = check_choice(method, STRATIFIED_CI_METHODS, "method")
    confidence_level = check_confidence(confidence_level)
    arrays = [
        np.atleast_1d(as_float_array(v, name))
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
                MSG_RANGE.format(name=name, interval="[0, inf)", value=first_bad(arr, arr < 0)),
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
