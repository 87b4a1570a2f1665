"""Audit planning: how many audits a margin of error or a detectable drop needs.

* :func:`audits_for_margin` - sample size for a rate within +/- a margin.
* :func:`audits_to_detect_drop` - sample size per group to detect a drop.

Both are re-exported by :mod:`qualitylab.stats`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy import optimize, stats

from qualitylab.errors import ParameterError
from qualitylab.measure.statbase import (
    MSG_RANGE,
    as_float_array,
    check_choice,
    check_confidence,
    first_bad,
    is_scalar,
    z_critical,
)

__all__ = ["audits_for_margin", "audits_to_detect_drop"]

PLANNING_ALTERNATIVES = ("one-sided", "two-sided")


def _check_open_unit(value: float, name: str) -> float:
    try:
        ok = 0.0 < float(value) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_RANGE.format(name=name, interval="(0, 1)", value=value), key=name)
    return float(value)


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
    confidence_level = check_confidence(confidence_level)
    scalar = is_scalar(p, margin, deff, population)
    p_a, m_a, d_a = (
        as_float_array(v, k) for v, k in ((p, "p"), (margin, "margin"), (deff, "deff"))
    )
    for arr, name in ((p_a, "p"), (m_a, "margin")):
        bad = ~((arr > 0) & (arr < 1))
        if np.any(bad):
            raise ParameterError(
                MSG_RANGE.format(name=name, interval="(0, 1)", value=first_bad(arr, bad)),
                key=name,
            )
    if np.any(~(d_a > 0)):
        raise ParameterError(
            MSG_RANGE.format(name="deff", interval="(0, inf)", value=first_bad(d_a, ~(d_a > 0))),
            key="deff",
        )
    z = z_critical(confidence_level)
    n0 = z * z * p_a * (1.0 - p_a) / (m_a * m_a) * d_a
    if population is not None:
        big_n = as_float_array(population, "population")
        if np.any(~(big_n >= 1)):
            raise ParameterError(
                MSG_RANGE.format(
                    name="population", interval="[1, inf)", value=first_bad(big_n, ~(big_n >= 1))
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
    alternative = check_choice(alternative, PLANNING_ALTERNATIVES, "alternative")
    power = _check_open_unit(power, "power")
    alpha = _check_open_unit(alpha, "alpha")
    scalar = is_scalar(p0, drop)
    p_a, d_a = np.broadcast_arrays(as_float_array(p0, "p0"), as_float_array(drop, "drop"))
    bad = ~((p_a > 0) & (p_a <= 1))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="p0", interval="(0, 1]", value=first_bad(p_a, bad)), key="p0"
        )
    bad = ~((d_a > 0) & (d_a <= p_a))
    if np.any(bad):
        raise ParameterError(
            MSG_RANGE.format(name="drop", interval="(0, p0]", value=first_bad(d_a, bad)),
            key="drop",
        )
    h = 2.0 * np.arcsin(np.sqrt(p_a)) - 2.0 * np.arcsin(np.sqrt(p_a - d_a))
    n = np.array([_n_per_group(float(hh), alpha, power, alternative) for hh in h.ravel()])
    return _ceil_int(n.reshape(h.shape), scalar)
