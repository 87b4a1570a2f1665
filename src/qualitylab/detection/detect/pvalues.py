"""P-values of the scan: fast normal and t tails, the window search, window tests.

* exact equivalents of ``scipy.stats`` tails (:func:`two_sided`,
  :func:`norm_isf`, :func:`t_sf`, ...) that skip its argument handling: the
  scan evaluates them thousands of times on scalars;
* :func:`scan_p_value`: the p-value of the most deviant window of a period
  (Siegmund & Yakir), and :func:`search_p` for a window's raw p-value;
* :func:`window_z`: a rate window against its reference (Fisher's exact test,
  Laney-scaled), and :func:`heavy_tailed` for robust scores read as Student's t.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import special
from scipy import stats as sps


def two_sided(z: np.ndarray | float) -> np.ndarray:
    """Two-sided normal p-value, 2 * sf(|z|) = erfc(|z| / sqrt 2)."""
    return special.erfc(np.abs(z) / math.sqrt(2.0))


# The scan evaluates these tails thousands of times on scalars and short arrays;
# scipy.stats' distribution methods spend ~100 us each on argument handling
# around the same special functions. These call the special functions directly,
# exactly as scipy.stats does for finite arguments with loc=0, scale=1 (same
# values bit for bit, ``tests/test_detect.py`` checks them against scipy.stats).
_NORM_PDF_C = np.sqrt(2 * np.pi)


def _norm_sf(x: Any) -> Any:
    """``scipy.stats.norm.sf(x)``."""
    return special.ndtr(-np.asarray(x, dtype=float))


def norm_isf(q: Any) -> Any:
    """``scipy.stats.norm.isf(q)`` (0.0 - ...: scipy's ``+ loc`` turns -0.0 into 0.0)."""
    return 0.0 - special.ndtri(np.asarray(q, dtype=float))


def _norm_cdf(x: Any) -> Any:
    """``scipy.stats.norm.cdf(x)``."""
    return special.ndtr(np.asarray(x, dtype=float))


def _norm_pdf(x: Any) -> Any:
    """``scipy.stats.norm.pdf(x)``."""
    x = np.asarray(x, dtype=float)
    return np.exp(-(x**2) / 2.0) / _NORM_PDF_C


def t_sf(x: Any, df: float) -> Any:
    """``scipy.stats.t.sf(x, df)`` for ``df > 0``."""
    return special.stdtr(df, -np.asarray(x, dtype=float))


# The hypergeometric special functions behind scipy.stats.hypergeom (scipy keeps them
# in a private module; without them _fisher_p asks scipy.stats.fisher_exact itself)
_HYPERGEOM = tuple(
    getattr(getattr(special, "_ufuncs", None), f"_hypergeom_{f}", None)
    for f in ("pmf", "cdf", "sf")
)


def _hyper(fn: Any, k: int, good: int, draws: int, total: int) -> float:
    """``scipy.special``'s hypergeometric `fn` at ``k``, clipped to [0, 1] as scipy.stats does."""
    v = float(fn(float(k), float(good), float(draws), float(total)))
    return min(max(v, 0.0), 1.0)


def _fisher_search(a: Any, d: float, lo: int, hi: int) -> int:
    """scipy.stats' binary search of Fisher's test: ``i`` in ``[lo, hi]`` with a(i) <= d < a(i+1)."""
    while lo < hi:
        mid = lo + (hi - lo) // 2
        midval = a(mid)
        if midval < d:
            lo = mid + 1
        elif midval > d:
            hi = mid - 1
        else:
            return mid
    return lo if a(lo) <= d else lo - 1


@functools.lru_cache(maxsize=65536)
def _fisher_p(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test of ``[[a, b], [c, d]]`` (memoised).

    ``scipy.stats.fisher_exact(...).pvalue`` step by step, on the same
    hypergeometric special functions, without its argument handling (each of
    its ~5 distribution calls costs ~100 us; same values bit for bit,
    ``tests/test_detect.py`` checks them against scipy.stats).
    """
    if None in _HYPERGEOM:
        return float(sps.fisher_exact([[a, b], [c, d]]).pvalue)
    if min(a + c, b + d, a + b, c + d) == 0:  # an empty row or column
        return 1.0
    hyper_pmf, hyper_cdf, hyper_sf = _HYPERGEOM
    n1, n2, n = a + b, c + d, a + c
    total = n1 + n2
    lo_k, hi_k = max(n - (total - n1), 0), min(n1, n)  # the support

    def pmf(k: int) -> float:
        if k < lo_k or k > hi_k:
            return 0.0
        return _hyper(hyper_pmf, k, n1, n, total)

    def cdf(k: int) -> float:
        if k >= hi_k:
            return 1.0
        return 0.0 if k < lo_k else _hyper(hyper_cdf, k, n1, n, total)

    def sf(k: int) -> float:
        if k >= hi_k:
            return 0.0
        return 1.0 if k < lo_k else _hyper(hyper_sf, k, n1, n, total)

    mode = int(float((n + 1) * (n1 + 1)) / float(total + 2))
    pexact, pmode = pmf(a), pmf(mode)
    epsilon = 1e-14
    gamma = 1 + epsilon
    top = max(pexact, pmode)
    if top > 0 and abs(pexact - pmode) / top <= epsilon:
        return 1.0
    if a < mode:
        plower = cdf(a)
        if pmf(n) > pexact * gamma:
            return plower
        guess = _fisher_search(lambda x: -pmf(x), -pexact * gamma, mode, n)
        pvalue = plower + sf(guess)
    else:
        pupper = sf(a - 1)
        if pmf(0) > pexact * gamma:
            return pupper
        guess = _fisher_search(pmf, pexact * gamma, 0, mode)
        pvalue = pupper + cdf(guess)
    return min(pvalue, 1.0)


def _nu(x: np.ndarray) -> np.ndarray:
    """Siegmund's overshoot correction for a discrete-time scan (``nu(x) -> 1`` as ``x -> 0``)."""
    h = np.asarray(x, dtype=float) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        v = (_norm_cdf(h) - 0.5) / h / (h * _norm_cdf(h) + _norm_pdf(h))
    return np.where(h > 1e-9, v, 1.0)


def scan_p_value(z: float | npt.ArrayLike, days: int) -> np.ndarray | float:
    """Two-sided p-value of a window's z against the search over every window of ``days``.

    A scan that reports the most deviant window of consecutive days tests
    ``days * (days + 1) / 2`` overlapping windows. Their standardised sums
    :math:`Z_{s,t} = (S_t - S_s)/\\sqrt{t-s}` are strongly correlated, so a
    Bonferroni factor over all of them is far too strict for long windows.
    This is the tail of the maximum of that Gaussian random field
    (Siegmund & Yakir 2000; Siegmund, Yakir & Zhang 2011):

    .. math:: P(\\max |Z_{s,t}| > b) \\approx 2\\,\\bar\\Phi(b) \\Big[T + \\sum_{L=2}^{T}
              (T-L+1) \\Big(\\frac{b^2}{2L}\\,\\nu\\big(b/\\sqrt{L}\\big)\\Big)^2\\Big]

    with :math:`\\nu` the discrete-time overshoot correction; single days are
    counted exactly (:math:`T` independent windows). It is validated against
    simulation in ``tests/test_detect.py`` (within 20% for tail
    probabilities below 0.1).

    Parameters
    ----------
    z : float or array_like
        Window z-score(s), standard normal under the null for a fixed window.
    days : int
        Days searched (the monitored period).

    Returns
    -------
    float or numpy.ndarray
        The search-corrected p-value(s), capped at 1 and never below the
        window's own two-sided p-value.

    Examples
    --------
    >>> round(float(scan_p_value(4.0, 1)), 6)  # one day: the plain two-sided p
    6.3e-05
    >>> round(float(scan_p_value(4.0, 62)), 3)  # the most deviant of 1,953 windows
    0.019
    """
    zz = np.abs(np.asarray(z, dtype=float))
    T = max(int(days), 1)
    length = np.arange(2, T + 1, dtype=float)
    b = zz.reshape(-1, 1)
    dens = (T - length + 1) * (b * b / (2 * length) * _nu(b / np.sqrt(length))) ** 2
    tail = 2 * _norm_sf(zz)
    p = np.minimum(1.0, np.maximum(tail * (T + dens.sum(axis=1).reshape(zz.shape)), tail))
    return float(p) if np.ndim(z) == 0 else p


def search_p(p_raw: float, days: int) -> float:
    """Search-corrected p-value of a window with two-sided p-value ``p_raw``."""
    if not p_raw < 1:
        return 1.0
    return float(scan_p_value(norm_isf(max(p_raw, 1e-300) / 2), days))


# Daily operational series have heavier tails than the normal (holidays, outages,
# cohort effects): their robust scores are read as Student's t with this many d.f.
_TAIL_DF = 10


def heavy_tailed(z: np.ndarray) -> np.ndarray:
    """Normal-equivalent z of scores read as Student's t (same two-sided p-value)."""
    z = np.asarray(z, dtype=float)
    p = 2 * t_sf(np.abs(z), _TAIL_DF)
    return np.sign(z) * norm_isf(np.maximum(p, 1e-300) / 2)


def window_z(k_w: float, n_w: float, k_ref: float, n_ref: float, scale: float) -> float:
    """Signed z of a window's rate against the reference: Fisher's exact test, Laney-scaled.

    The exact two-sided p-value (counts rounded; weighted estimates carry
    non-integer counts) is turned into a normal z with the sign of the
    difference and divided by Laney's sigma_z, so overdispersion widens it
    as it widens the chart's limits. When every expected cell count is at
    least 10 the pooled two-proportion z-test is used instead (same answer,
    far cheaper).
    """
    kw, nw = round(k_w), max(round(n_w), 1)
    kr, nr = round(k_ref), max(round(n_ref), 1)
    kw, kr = min(kw, nw), min(kr, nr)
    diff = k_w / n_w - k_ref / n_ref
    if diff == 0:
        return 0.0
    pool = (kw + kr) / (nw + nr)
    if min(nw, nr) * min(pool, 1 - pool) >= 10:  # large counts: the pooled z-test agrees
        z = abs(diff) / math.sqrt(pool * (1 - pool) * (1 / nw + 1 / nr))
    else:
        p = _fisher_p(kw, nw - kw, kr, nr - kr)
        z = float(norm_isf(max(p, 1e-300) / 2))
    return math.copysign(z / scale, diff)
