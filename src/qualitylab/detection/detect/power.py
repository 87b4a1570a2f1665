"""Power of a scan: the smallest change a window can flag, and the sample it needs.

:func:`minimum_detectable_change` and :func:`required_n` answer for a window
that must beat the scan's search over the period (:func:`scan_p_value`) and a
share of the false-alarm budget over the series judged together.
"""

from __future__ import annotations

import math

from scipy.optimize import brentq
from scipy.special import ndtr

from qualitylab.detection.detect.detectors import check_positive
from qualitylab.detection.detect.pvalues import scan_p_value
from qualitylab.detection.detect.vocabulary import MSG_CHOICE, MSG_RANGE
from qualitylab.errors import ParameterError


def _critical_z(period_days: int, series: int, fdr: float) -> float:
    """The window z a lone discovery needs: search over the period, Bonferroni over series."""
    target = fdr / max(int(series), 1)
    if float(scan_p_value(0.0, period_days)) <= target:
        return 0.0
    return float(brentq(lambda z: float(scan_p_value(z, period_days)) - target, 0.0, 40.0))


def z_test_power(delta: float, rate: float, n: float, n_ref: float | None, zc: float) -> float:
    """Power of the two-proportion z-test (pooled null, unpooled alternative variance).

    Against a known rate (``n_ref`` None) or a reference sample of ``n_ref``,
    for a change ``delta`` from ``rate`` with ``n`` items and critical value
    ``zc``. The normal tail is :func:`scipy.special.ndtr` (what
    ``scipy.stats.norm.cdf`` computes, without its per-call overhead).

    Examples
    --------
    >>> round(z_test_power(0.05, 0.9, 400, None, 1.96), 4)
    0.9706
    """
    p1 = rate + delta
    if n_ref is None:
        se0 = math.sqrt(rate * (1 - rate) / n)
        se1 = math.sqrt(p1 * (1 - p1) / n)
    else:
        pbar = (n * p1 + n_ref * rate) / (n + n_ref)
        se0 = math.sqrt(pbar * (1 - pbar) * (1 / n + 1 / n_ref))
        se1 = math.sqrt(p1 * (1 - p1) / n + rate * (1 - rate) / n_ref)
    if se1 == 0:
        return 1.0 if abs(delta) > zc * se0 else 0.0
    return float(ndtr((abs(delta) - zc * se0) / se1))


def minimum_detectable_change(
    rate: float,
    n: float,
    *,
    n_reference: float | None = None,
    period_days: int = 1,
    series: int = 1,
    fdr: float = 0.05,
    power: float = 0.8,
    direction: str = "down",
) -> float:
    """Smallest change of a rate that a window of ``n`` observations flags with the given power.

    What a scan can see: the change must beat the window search over
    ``period_days`` (:func:`scan_p_value`) and a Bonferroni share of the
    false-alarm budget over ``series`` series (a lone discovery; with other
    discoveries Benjamini–Hochberg's bar is lower). ``period_days=1`` and
    ``series=1`` give the plain two-sided two-proportion z-test.

    Parameters
    ----------
    rate : float
        Baseline rate, in (0, 1).
    n : float
        Observations in the window (e.g. audits of a vendor in a week).
    n_reference : float, optional
        Observations behind the baseline rate; ``None`` treats it as known.
    period_days : int, default 1
        Days the scan searches for the window (1: the dates are known).
    series : int, default 1
        Series judged together (one market's scan judges a few hundred).
    fdr : float, default 0.05
    power : float, default 0.8
    direction : {"down", "up"}, default "down"

    Returns
    -------
    float
        The absolute change (positive), or NaN when no change within [0, 1]
        reaches the power.

    Examples
    --------
    >>> round(minimum_detectable_change(0.94, 130), 3)  # dates and series known
    0.065
    >>> round(minimum_detectable_change(0.94, 130, period_days=62, series=220), 3)
    0.134
    """
    rate = check_positive(rate, "rate")
    if not 0 < rate < 1:
        raise ParameterError(MSG_RANGE.format(name="rate", interval="(0, 1)", value=rate))
    n = check_positive(n, "n")
    if n_reference is not None:
        n_reference = check_positive(n_reference, "n_reference")
    for name, v in (("fdr", fdr), ("power", power)):
        if not 0 < v < 1:
            raise ParameterError(MSG_RANGE.format(name=name, interval="(0, 1)", value=v))
    if direction not in ("down", "up"):
        raise ParameterError(
            MSG_CHOICE.format(name="direction", allowed="'down', 'up'", value=direction)
        )
    zc = _critical_z(period_days, series, fdr)
    sign = -1.0 if direction == "down" else 1.0
    room = rate if direction == "down" else 1 - rate
    f = lambda d: z_test_power(sign * d, rate, n, n_reference, zc) - power  # noqa: E731
    hi = room - 1e-12
    if f(hi) < 0:
        return float("nan")
    return float(brentq(f, 0.0, hi, xtol=1e-10))


def required_n(
    rate: float,
    change: float,
    *,
    period_days: int = 1,
    series: int = 1,
    fdr: float = 0.05,
    power: float = 0.8,
) -> float:
    """Observations a window needs for a change of ``change`` to be flagged with the given power.

    The inverse of :func:`minimum_detectable_change` with a known baseline
    (``change`` < 0: a drop). For planning a comparison of two equal samples
    at an ordinary significance level use
    :func:`qualitylab.stats.audits_to_detect_drop`; this one asks what a
    window needs against a long, well-measured baseline when it must also
    survive the scan's search (``period_days``) and the other ``series``.

    Examples
    --------
    >>> round(required_n(0.94, -0.10, period_days=62, series=220))  # audits in the week
    225
    """
    if not change or not 0 < rate + change < 1:
        raise ParameterError(
            MSG_RANGE.format(name="rate + change", interval="(0, 1)", value=rate + change)
        )
    zc = _critical_z(period_days, series, fdr)
    f = lambda n: z_test_power(change, rate, n, None, zc) - power  # noqa: E731
    hi = 10.0
    while f(hi) < 0:
        hi *= 2
        if hi > 1e12:
            return float("inf")
    return float(brentq(f, 1e-6, hi, xtol=1e-6))
