"""Detectors: pure functions on one daily series, each returning a per-day table.

Each takes a pandas Series (a value per day) and returns ``date, observed,
expected, lower, upper, statistic, p_value, flag`` (:data:`DETECTOR_COLUMNS`,
plus a few detector-specific columns):

- :func:`p_chart` — binomial p-chart for rates whose daily ``n`` varies, with
  Laney's p′ adjustment when the series is overdispersed;
- :func:`cusum_chart` and :func:`ewma_chart` — slow drift on a standardised
  series (tabular CUSUM; EWMA with time-varying limits);
- :func:`stl_mad` — counts and times with weekly seasonality: STL
  decomposition with robust MAD residual scores;
- :func:`changepoints` — level shifts, by exact penalised segmentation.

``baseline`` (leading points used as the reference) and ``mask`` (points left
out of the reference, e.g. known outages and holidays) mean the same in every
detector; their checks live here, once.
"""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from qualitylab.detection.detect.pvalues import two_sided
from qualitylab.detection.detect.vocabulary import (
    MSG_BASELINE,
    MSG_CHOICE,
    MSG_FEW_POINTS,
    MSG_LENGTHS,
    MSG_NOT_1D,
    MSG_RANGE,
)
from qualitylab.errors import ParameterError

# Chart constants: d2 for moving ranges of two, and the Iglewicz-Hoaglin constant.
_D2 = 1.128
MAD_K = 0.6745


def _series(values: pd.Series | npt.ArrayLike, name: str) -> tuple[np.ndarray, pd.Index]:
    if isinstance(values, pd.Series):
        idx = values.index
        arr = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    else:
        arr = np.asarray(values, dtype=float)
        idx = pd.RangeIndex(arr.shape[0] if arr.ndim else 0)
    if arr.ndim != 1:
        raise ParameterError(MSG_NOT_1D.format(name=name, shape=arr.shape), key=name)
    return arr, idx


def _same_length(a: np.ndarray, b: np.ndarray, name: str, other: str) -> None:
    if len(a) != len(b):
        raise ParameterError(
            MSG_LENGTHS.format(name=name, a=len(a), other=other, b=len(b)), key=other
        )


def _phases(n: int, baseline: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Reference (Phase I) and monitored (Phase II) masks."""
    if baseline is None:
        return np.ones(n, bool), np.ones(n, bool)
    if isinstance(baseline, bool) or not isinstance(baseline, int | np.integer):
        raise ParameterError(MSG_BASELINE.format(n=n, value=baseline), key="baseline")
    if not 2 <= baseline <= n:
        raise ParameterError(MSG_BASELINE.format(n=n, value=baseline), key="baseline")
    ref = np.zeros(n, bool)
    ref[:baseline] = True
    return ref, ~ref


def _mask(mask: Any, index: pd.Index) -> np.ndarray:
    """A boolean mask from booleans (one per point) or a collection of labels."""
    n = len(index)
    if mask is None:
        return np.zeros(n, bool)
    arr = np.asarray(list(mask) if not hasattr(mask, "__len__") else mask)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ParameterError(
                MSG_LENGTHS.format(name="values", a=n, other="mask", b=arr.size), key="mask"
            )
        return arr.copy()
    labels = list(mask)
    if isinstance(index, pd.DatetimeIndex):
        labels = pd.to_datetime(labels)
    return np.asarray(index.isin(labels), dtype=bool)


def check_positive(value: float, name: str) -> float:
    """``value`` as a float, or a :class:`ParameterError` naming ``name`` unless finite and > 0."""
    if not (isinstance(value, int | float | np.number) and math.isfinite(value) and value > 0):
        raise ParameterError(
            MSG_RANGE.format(name=name, interval="(0, inf)", value=value), key=name
        )
    return float(value)


def _moving_range_sigma(x: np.ndarray) -> float:
    """Shewhart's short-term sigma: mean moving range of two / d2."""
    x = x[np.isfinite(x)]
    if len(x) < 2:
        return float("nan")
    return float(np.mean(np.abs(np.diff(x))) / _D2)


class _Column:
    """One column of an :class:`_Arrays` result: ``to_numpy()`` and ``iloc``."""

    __slots__ = ("iloc",)

    def __init__(self, values: Any) -> None:
        self.iloc = np.asarray(values)

    def to_numpy(self) -> np.ndarray:
        return self.iloc


class _Arrays(dict):
    """A detector's columns as arrays, for :func:`scan`'s inner loop.

    Building a DataFrame per detector call was a third of a scan's time (a
    scan runs ~1,500 of them); inside the scan only ``res[col].to_numpy()``,
    ``res[col].iloc[i]`` and ``res.attrs`` are used, which this provides.
    """

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__(data)
        self.attrs: dict[str, Any] = {}

    def __getitem__(self, key: str) -> _Column:
        return _Column(dict.__getitem__(self, key))


#: Set inside the scan's per-series evaluation: detectors then return :class:`_Arrays`.
AS_ARRAYS: contextvars.ContextVar[bool] = contextvars.ContextVar("AS_ARRAYS", default=False)


def _frame(index: pd.Index, **cols: Any) -> pd.DataFrame:
    data: dict[str, Any] = {"date": np.asarray(index)}
    data.update(cols)
    data["flag"] = np.asarray(data["flag"], dtype=bool)
    if AS_ARRAYS.get():
        return _Arrays(data)  # type: ignore[return-value]
    return pd.DataFrame(data)


def _labels_at(index: pd.Index, pos: np.ndarray) -> np.ndarray:
    """Index labels at positions (missing where pos < 0)."""
    safe = np.clip(pos, 0, max(len(index) - 1, 0))
    if isinstance(index, pd.DatetimeIndex):
        return np.where(pos >= 0, index.values[safe], np.datetime64("NaT"))
    values = np.asarray(index)
    if np.issubdtype(values.dtype, np.number):
        return np.where(pos >= 0, values[safe].astype(float), np.nan)
    return np.array([values[i] if i >= 0 else None for i in pos], dtype=object)


def p_chart(
    observed: pd.Series | npt.ArrayLike,
    n: pd.Series | npt.ArrayLike,
    *,
    baseline: int | None = None,
    mask: Any = None,
    laney: bool | str = "auto",
    limit: float = 3.0,
) -> pd.DataFrame:
    """Binomial p-chart with each day's ``n``, and Laney's p′ when overdispersed.

    Parameters
    ----------
    observed : Series or array_like
        Daily rates in [0, 1] (NaN where a day has no data). A Series' index
        (e.g. dates) becomes the ``date`` column.
    n : Series or array_like
        Daily denominators, same length.
    baseline : int, optional
        Number of leading points forming the reference (Phase I); only later
        points can be flagged. ``None`` uses every point as reference and
        judges every point (retrospective chart).
    mask : array_like of bool or collection of labels, optional
        Points left out of the reference (known outages, holidays).
    laney : {"auto", True, False}, default "auto"
        Use Laney's p′ limits. ``"auto"`` does so when the reference is
        overdispersed (chi-square dispersion test at 5%) and σ_z > 1.
    limit : float, default 3.0
        Limits at ``limit`` standard errors.

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag, n``:
        ``expected`` is the reference rate p̄; ``lower``/``upper`` the limits
        for that day's ``n``; ``statistic`` the (Laney-adjusted) z-score;
        ``p_value`` its two-sided normal p-value. ``attrs`` holds ``p_bar``,
        ``reference_k``/``reference_n`` (events and trials behind it),
        ``sigma_z``, ``laney`` (whether p′ was used), ``scale`` (the factor
        applied to binomial limits) and ``dispersion_pvalue``.

    Notes
    -----
    :math:`\\bar p = (\\sum k + 0.5)/(\\sum n + 1)` over the reference (the
    continuity terms keep limits finite when the reference has no events),
    :math:`z_i = (p_i-\\bar p)/\\sqrt{\\bar p(1-\\bar p)/n_i}`. Laney (2002):
    :math:`\\sigma_z = \\overline{MR}/1.128` from moving ranges of the
    reference z-scores, limits :math:`\\bar p \\pm L\\,\\sigma_z
    \\sqrt{\\bar p(1-\\bar p)/n_i}` (σ_z is floored at 1, so p′ never tightens
    the binomial limits). Reference points outside the limits are dropped and
    the estimates recomputed (standard Phase I practice), up to three times.

    Examples
    --------
    >>> res = p_chart([0.95, 0.96, 0.94, 0.95, 0.80], [400, 380, 410, 390, 400], baseline=4)
    >>> res[["observed", "expected", "flag"]].round(3).tail(2)
       observed  expected   flag
    3      0.95     0.950  False
    4      0.80     0.950   True
    """
    p, idx = _series(observed, "observed")
    nn, _ = _series(n, "n")
    _same_length(p, nn, "observed", "n")
    limit = check_positive(limit, "limit")
    if laney not in ("auto", True, False):
        raise ParameterError(
            MSG_CHOICE.format(name="laney", allowed='"auto", True, False', value=laney), key="laney"
        )
    bad = np.isfinite(p) & ((p < 0) | (p > 1))
    if bad.any():
        raise ParameterError(
            MSG_RANGE.format(name="observed", interval="[0, 1]", value=float(p[bad][0])),
            key="observed",
        )
    bad_n = np.isfinite(nn) & (nn < 0)
    if bad_n.any():
        raise ParameterError(
            MSG_RANGE.format(name="n", interval="[0, inf)", value=float(nn[bad_n][0])), key="n"
        )
    ok = np.isfinite(p) & np.isfinite(nn) & (nn > 0)
    in_ref, monitored = _phases(len(p), baseline)
    ref = ok & in_ref & ~_mask(mask, idx)
    if ref.sum() < 2:
        raise ParameterError(
            MSG_FEW_POINTS.format(
                detector="p_chart", need=2, where=" in the reference", got=int(ref.sum())
            ),
            key="baseline",
        )
    k = np.where(ok, p * np.where(ok, nn, 0.0), 0.0)
    safe_n = np.where(ok, nn, np.nan)
    for _ in range(3):
        p_bar = (k[ref].sum() + 0.5) / (nn[ref].sum() + 1.0)
        se = np.sqrt(p_bar * (1 - p_bar) / safe_n)
        z = (p - p_bar) / se
        sigma_z = _moving_range_sigma(z[ref])
        dispersion_p = float(sps.chi2.sf(np.sum(z[ref] ** 2), max(int(ref.sum()) - 1, 1)))
        use = laney is True or (laney == "auto" and dispersion_p < 0.05 and sigma_z > 1)
        s = max(sigma_z, 1.0) if use and np.isfinite(sigma_z) else 1.0
        out = ref & (np.abs(z) / s > limit)
        if not out.any() or (ref & ~out).sum() < 2:
            break
        ref = ref & ~out
    stat = z / s
    res = _frame(
        idx,
        observed=p,
        expected=np.full(len(p), p_bar),
        lower=np.clip(p_bar - limit * s * se, 0.0, 1.0),
        upper=np.clip(p_bar + limit * s * se, 0.0, 1.0),
        statistic=stat,
        p_value=np.where(ok, two_sided(stat), np.nan),
        flag=ok & monitored & (np.abs(np.nan_to_num(stat)) > limit),
        n=nn,
    )
    res.attrs.update(
        p_bar=float(p_bar),
        reference_k=float(k[ref].sum()),
        reference_n=float(nn[ref].sum()),
        sigma_z=float(sigma_z),
        laney=bool(use),
        dispersion_pvalue=dispersion_p,
        scale=float(s),
    )
    return res


def _location_scale(
    x: np.ndarray, ref: np.ndarray, target: float | None, sigma: float | None, name: str
) -> tuple[float, float]:
    if (target is None or sigma is None) and ref.sum() < 2:
        raise ParameterError(
            MSG_FEW_POINTS.format(
                detector=name, need=2, where=" in the reference", got=int(ref.sum())
            ),
            key="baseline",
        )
    mu = float(np.mean(x[ref])) if target is None else float(target)
    if sigma is None:
        sd = _moving_range_sigma(x[ref])
        if not sd > 0:
            sd = float(np.std(x[ref], ddof=1)) if ref.sum() > 1 else float("nan")
        if not sd > 0:
            raise ParameterError(
                f"{name}: the reference has no variation; pass sigma explicitly", key="sigma"
            )
    else:
        sd = check_positive(sigma, "sigma")
    return mu, sd


def _standardise(
    x: np.ndarray,
    idx: pd.Index,
    baseline: int | None,
    mask: Any,
    target: float | None,
    sigma: float | None,
    name: str,
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Finite points, monitored points, and the reference location and scale."""
    ok = np.isfinite(x)
    in_ref, monitored = _phases(len(x), baseline)
    mu, sd = _location_scale(x, ok & in_ref & ~_mask(mask, idx), target, sigma, name)
    return ok, monitored, mu, sd


def cusum_chart(
    values: pd.Series | npt.ArrayLike,
    *,
    target: float | None = None,
    sigma: float | None = None,
    k: float = 0.5,
    h: float = 4.5,
    baseline: int | None = None,
    mask: Any = None,
) -> pd.DataFrame:
    """Two-sided tabular CUSUM for sustained shifts.

    Parameters
    ----------
    values : Series or array_like
        The series (often already standardised, e.g. a p-chart's
        ``statistic``; then pass ``target=0, sigma=1``).
    target, sigma : float, optional
        In-control mean and standard deviation; estimated from the reference
        when omitted (mean, and moving-range sigma).
    k : float, default 0.5
        Reference value in σ units (half the shift to detect fastest).
    h : float, default 4.5
        Decision interval in σ units.
    baseline : int, optional
        Leading reference points; the sums restart at the first monitored
        point and only monitored points are flagged.
    mask : optional
        Points left out of the reference estimates (they still accumulate).

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag,
        onset``: ``statistic`` is :math:`C^+` or :math:`-C^-` (the larger
        side), ``lower``/``upper`` the decision interval ``∓h`` on that scale,
        ``onset`` the label where the current excursion began (the change-time
        estimate), and ``p_value`` the two-sided p-value of the standardised
        sum since ``onset`` (:math:`\\sum z/\\sqrt{m}`; not adjusted for the
        choice of onset).

    Notes
    -----
    :math:`C^+_t = \\max(0, C^+_{t-1} + z_t - k)`,
    :math:`C^-_t = \\max(0, C^-_{t-1} - z_t - k)`, signal when either exceeds
    ``h`` (Page 1954; Montgomery §9.1). Missing points carry the sums. With
    ``k=0.5, h=4.5`` the in-control average run length is about 300 points
    (two-sided) and a 1σ shift is signalled after about 9 points on average
    (checked by simulation in the tests).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.r_[np.zeros(20), np.ones(15)]  # a 1 sigma shift at point 20
    >>> res = cusum_chart(x, target=0, sigma=1, baseline=20)
    >>> int(res.index[res.flag][0]), int(res.onset[res.flag].iloc[0])
    (29, 20)
    """
    x, idx = _series(values, "values")
    k = float(k)
    h = check_positive(h, "h")
    if not k >= 0:
        raise ParameterError(MSG_RANGE.format(name="k", interval="[0, inf)", value=k), key="k")
    ok, monitored, mu, sd = _standardise(x, idx, baseline, mask, target, sigma, "cusum_chart")
    z = (x - mu) / sd
    n = len(x)
    stat = np.zeros(n)
    pval = np.ones(n)
    onset = np.full(n, -1)
    cp = cm = 0.0
    on_p = on_m = -1
    sum_p = sum_m = 0.0
    cnt_p = cnt_m = 0
    first_mon = int(np.argmax(monitored)) if baseline is not None else -1
    for t in range(n):
        if t == first_mon:
            cp = cm = 0.0
            on_p = on_m = -1
        if ok[t]:
            new_p = max(0.0, cp + z[t] - k)
            new_m = max(0.0, cm - z[t] - k)
            if new_p > 0:
                if cp == 0:
                    on_p, sum_p, cnt_p = t, 0.0, 0
                sum_p += z[t]
                cnt_p += 1
            else:
                on_p = -1
            if new_m > 0:
                if cm == 0:
                    on_m, sum_m, cnt_m = t, 0.0, 0
                sum_m += z[t]
                cnt_m += 1
            else:
                on_m = -1
            cp, cm = new_p, new_m
        if cp >= cm and cp > 0:
            stat[t], onset[t], pval[t] = cp, on_p, math.erfc(abs(sum_p) / math.sqrt(2 * cnt_p))
        elif cm > 0:
            stat[t], onset[t], pval[t] = -cm, on_m, math.erfc(abs(sum_m) / math.sqrt(2 * cnt_m))
    res = _frame(
        idx,
        observed=x,
        expected=np.full(n, mu),
        lower=np.full(n, -h),
        upper=np.full(n, h),
        statistic=stat,
        p_value=pval,
        flag=monitored & (np.abs(stat) > h),
        onset=_labels_at(idx, onset),
    )
    res.attrs.update(target=mu, sigma=sd, k=k, h=h)
    return res


def ewma_chart(
    values: pd.Series | npt.ArrayLike,
    *,
    target: float | None = None,
    sigma: float | None = None,
    lam: float = 0.2,
    limit: float = 2.962,
    baseline: int | None = None,
    mask: Any = None,
) -> pd.DataFrame:
    """EWMA chart with exact time-varying limits.

    Parameters
    ----------
    values : Series or array_like
    target, sigma : float, optional
        In-control mean and standard deviation (estimated from the reference
        when omitted).
    lam : float, default 0.2
        Smoothing weight in (0, 1].
    limit : float, default 2.962
        Width of the limits in standard deviations of the EWMA statistic;
        with ``lam=0.2`` the in-control ARL is 500 (Lucas & Saccucci 1990).
    baseline : int, optional
        Leading reference points; the statistic restarts at ``target`` at the
        first monitored point and only monitored points are flagged.
    mask : optional
        Points left out of the reference estimates.

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag``:
        ``statistic`` is the EWMA, ``lower``/``upper`` its limits and
        ``p_value`` the two-sided normal p-value of the EWMA.

    Notes
    -----
    :math:`E_t = \\lambda x_t + (1-\\lambda)E_{t-1}`, :math:`E_0 = \\mu`,
    limits :math:`\\mu \\pm L\\sigma\\sqrt{\\lambda/(2-\\lambda)\\,
    [1-(1-\\lambda)^{2i}]}` after *i* observations. Missing points carry the
    statistic. A 1σ shift is signalled after about 10 points on average.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.r_[np.zeros(20), np.full(15, 1.5)]
    >>> res = ewma_chart(x, target=0, sigma=1, baseline=20)
    >>> int(res.index[res.flag][0])
    24
    """
    x, idx = _series(values, "values")
    if not 0 < lam <= 1:
        raise ParameterError(MSG_RANGE.format(name="lam", interval="(0, 1]", value=lam), key="lam")
    limit = check_positive(limit, "limit")
    ok, monitored, mu, sd = _standardise(x, idx, baseline, mask, target, sigma, "ewma_chart")
    n = len(x)
    stat = np.full(n, np.nan)
    width = np.full(n, np.nan)
    e, i = mu, 0
    first_mon = int(np.argmax(monitored)) if baseline is not None else -1
    for t in range(n):
        if t == first_mon:
            e, i = mu, 0
        if ok[t]:
            i += 1
            e = lam * x[t] + (1 - lam) * e
        stat[t] = e
        width[t] = sd * math.sqrt(lam / (2 - lam) * (1 - (1 - lam) ** (2 * i))) if i else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        zz = (stat - mu) / width
    res = _frame(
        idx,
        observed=x,
        expected=np.full(n, mu),
        lower=mu - limit * width,
        upper=mu + limit * width,
        statistic=stat,
        p_value=np.where(np.isfinite(zz), two_sided(np.nan_to_num(zz)), np.nan),
        flag=monitored & np.isfinite(zz) & (np.abs(np.nan_to_num(zz)) > limit),
    )
    res.attrs.update(target=mu, sigma=sd, lam=lam, limit=limit)
    return res


def stl_mad(
    values: pd.Series | npt.ArrayLike,
    *,
    period: int = 7,
    seasonal: int = 13,
    log: bool = False,
    threshold: float = 3.5,
    robust: bool = True,
    scale_floor: float | None = None,
    baseline: int | None = None,
    mask: Any = None,
) -> pd.DataFrame:
    """Seasonal-trend decomposition (STL) with robust MAD residual scores.

    Parameters
    ----------
    values : Series or array_like
        One value per regular step (one per day), NaN where missing.
    period : int, default 7
        Seasonal period (7 = weekly cycle of daily data).
    seasonal : int, default 13
        STL seasonal smoother (odd, >= 7); 13 keeps the weekly profile
        nearly fixed over a quarter, so one odd day cannot reshape it.
    log : bool, default False
        Decompose ``log1p(values)`` (multiplicative seasonality; counts and
        times). Values must then be >= 0.
    threshold : float, default 3.5
        Flag points whose modified z-score exceeds this (Iglewicz & Hoaglin).
    robust : bool, default True
        Robust STL fitting (outliers get low weight in trend and season).
    scale_floor : float, optional
        Smallest residual standard deviation to use, on the decomposed scale
        (e.g. the Poisson noise ``1/sqrt(mean count)`` of a log count).
    baseline : int, optional
        Leading points that are reference only: never flagged, and the only
        points the residual scale is estimated from (all points when omitted).
    mask : optional
        Points left out of the residual scale (and interpolated for the fit).

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag,
        trend, seasonal, residual``: ``expected`` is trend + season (+ the
        residual median), back-transformed; ``lower``/``upper`` the band at
        ``threshold`` robust standard deviations; ``statistic`` the modified
        z-score; ``trend``/``seasonal``/``residual`` are on the decomposed
        (possibly log) scale. ``attrs["scale"]`` is the residual standard
        deviation used (MAD/0.6745, or the floor).

    Notes
    -----
    statsmodels ``STL(period, seasonal, robust)`` gives trend, season and
    residuals :math:`r`; scores are
    :math:`z = 0.6745\\,(r - \\tilde r)/\\mathrm{MAD}`, two-sided normal
    p-values. The MAD estimates the noise, not the robust fit's residuals:
    the robust fit gives bisquare weight ~0.6 to ordinary 2σ points and hugs
    the rest, so its own residual MAD is about half the noise standard
    deviation and would flag several percent of ordinary days at 3.5. The MAD
    is therefore taken over unmasked reference residuals of the same decomposition
    fitted *without* robustness weights and divided by that fit's shrinkage
    on white noise of the same length (STL absorbs part of the noise; ~0.73
    for 56 daily points). Outliers are scored against the robust fit, so a
    spike does not hide itself by bending trend or season. On Poisson counts
    with a weekly cycle this flags ~0.4% of ordinary days (the tests check
    the false-positive rate). Missing and masked points are
    linearly interpolated for the fit only.

    Examples
    --------
    >>> import numpy as np
    >>> week = np.array([100, 95, 97, 99, 110, 140, 135.0])
    >>> x = np.tile(week, 6) * (1 + 0.02 * np.sin(np.arange(42)))
    >>> x[37] *= 2
    >>> res = stl_mad(x, log=True)
    >>> res.index[res.flag].tolist()
    [37]
    """
    from statsmodels.tsa.seasonal import STL

    x, idx = _series(values, "values")
    if not isinstance(period, int | np.integer) or period < 2:
        raise ParameterError(
            MSG_RANGE.format(name="period", interval="integers >= 2", value=period), key="period"
        )
    if not isinstance(seasonal, int | np.integer) or seasonal < 7 or seasonal % 2 == 0:
        raise ParameterError(
            MSG_RANGE.format(name="seasonal", interval="odd integers >= 7", value=seasonal),
            key="seasonal",
        )
    threshold = check_positive(threshold, "threshold")
    finite = np.isfinite(x)
    need = 2 * period + 1
    if finite.sum() < need:
        raise ParameterError(
            MSG_FEW_POINTS.format(detector="stl_mad", need=need, where="", got=int(finite.sum())),
            key="values",
        )
    if log:
        if (x[finite] < 0).any():
            raise ParameterError(
                MSG_RANGE.format(
                    name="values", interval="[0, inf) with log=True", value=float(x[finite].min())
                ),
                key="values",
            )
        y = np.log1p(x)
        inv = np.expm1
    else:
        y = x.copy()

        def inv(v: np.ndarray) -> np.ndarray:
            return v

    in_ref, monitored = _phases(len(x), baseline)
    msk = _mask(mask, idx)
    use = finite & ~msk
    if use.sum() < need:
        use = finite
    filled = pd.Series(np.where(use, y, np.nan)).interpolate(limit_direction="both").to_numpy()
    # The noise scale comes from the reference points (all points without a baseline).
    ref = use & in_ref
    if ref.sum() < period:
        ref = use
    kw = {"period": int(period), "seasonal": int(seasonal)}
    fit = STL(filled, robust=robust, **kw).fit()
    trend = np.asarray(fit.trend)
    season = np.asarray(fit.seasonal)
    resid = y - trend - season
    plain = STL(filled, robust=False, **kw).fit() if robust else fit
    r0 = (filled - np.asarray(plain.trend) - np.asarray(plain.seasonal))[ref]
    mad = float(np.median(np.abs(r0 - np.median(r0))))
    if not mad > 0:  # more than half the residuals identical: fall back to the mean deviation
        mad = float(np.mean(np.abs(r0 - np.median(r0)))) * MAD_K * math.sqrt(math.pi / 2)
    noise = mad / MAD_K / _stl_shrinkage(len(filled), int(period), int(seasonal))
    scale = max(noise, float(scale_floor or 0.0), 1e-12)
    med = float(np.median(resid[use]))
    z = (resid - med) / scale
    centre = trend + season + med
    res = _frame(
        idx,
        observed=x,
        expected=inv(centre),
        lower=inv(centre - threshold * scale),
        upper=inv(centre + threshold * scale),
        statistic=z,
        p_value=np.where(finite, two_sided(np.nan_to_num(z)), np.nan),
        flag=finite & monitored & (np.abs(np.nan_to_num(z)) > threshold),
        trend=trend,
        seasonal=season,
        residual=resid,
    )
    res.attrs.update(scale=scale, median=med, log=bool(log), period=int(period))
    return res


@functools.lru_cache(maxsize=64)
def _stl_shrinkage(n: int, period: int, seasonal: int) -> float:
    """MAD of STL residuals / MAD of the noise, for white noise of length n.

    STL absorbs part of the noise into trend and season (for 56 daily points
    with a weekly period the residual MAD is ~0.73 of the noise's); dividing
    by this factor turns the residual MAD into an estimate of the noise
    standard deviation. Median over 8 seeded draws, so results are repeatable.
    """
    from statsmodels.tsa.seasonal import STL

    rng = np.random.default_rng(20240601)
    ratios = []
    for _ in range(8):
        e = rng.standard_normal(n)
        f = STL(e, period=period, seasonal=seasonal, robust=False).fit()
        r = e - np.asarray(f.trend) - np.asarray(f.seasonal)
        ratios.append(np.median(np.abs(r - np.median(r))) / np.median(np.abs(e - np.median(e))))
    return float(np.median(ratios))


def _block_ok(x: np.ndarray, pen: float, table: np.ndarray) -> bool:
    """Whether :func:`_partition_ends` applies: every value and segment cost is finite."""
    if not (math.isfinite(pen) and np.isfinite(x).all()):
        return False
    return bool(np.isfinite(np.triu(table, 1)).all())  # segments x[s:t], s < t


def _partition_ends(f: np.ndarray, last: np.ndarray, table: np.ndarray, pen: float, m: int) -> None:
    """The optimal-partitioning recursion of :func:`_optimal_partition` on slices.

    The best split before end ``t`` starts at 0 or at some ``s`` in
    ``[m, t - m]`` (``f`` is infinite in between): each candidate's total is
    the same sum as over the finite ``f`` (``f[s] + cost[s, t] + pen``) and
    ties go to the smallest ``s`` as ``argmin`` gives them, so ``f`` and
    ``last`` are the same, bit for bit (for finite values and costs,
    :func:`_block_ok`), without finding the finite entries at every step.
    """
    n = len(f) - 1
    cost = np.ascontiguousarray(table.T)  # cost[t, s] of the segment x[s:t]
    first = f[0] + cost[:, 0] + pen  # the single segment x[0:t], every t
    for t in range(m, n + 1):
        if t < 2 * m:
            f[t] = first[t]
            continue
        total = f[m : t - m + 1] + cost[t, m : t - m + 1]
        total += pen
        j = int(total.argmin())
        if first[t] <= total[j]:
            f[t] = first[t]
        else:
            f[t], last[t] = total[j], m + j


def _optimal_partition(x: np.ndarray, pen: float, min_size: int) -> list[int]:
    """Exact penalised least-squares segmentation; returns segment ends (last = n)."""
    n = len(x)
    if n < 2 * min_size:
        return [n]
    s1 = np.r_[0.0, np.cumsum(x)]
    s2 = np.r_[0.0, np.cumsum(x * x)]
    f = np.full(n + 1, np.inf)
    f[0] = -pen
    last = np.zeros(n + 1, dtype=int)
    # every segment's cost at once (cost[s, t] of x[s:t], same arithmetic as one t at a
    # time) when the (n+1)^2 table is small; the scan's series are a few months of days
    table = None
    if n <= 2000:
        pos = np.arange(n + 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            table = (
                s2[None, :]
                - s2[:, None]
                - (s1[None, :] - s1[:, None]) ** 2 / (pos[None, :] - pos[:, None])
            )
    if table is not None and _block_ok(x, pen, table):
        _partition_ends(f, last, table, pen, int(min_size))
    else:
        for t in range(min_size, n + 1):
            s = np.flatnonzero(np.isfinite(f[: t - min_size + 1]))
            cost = (
                table[s, t] if table is not None else s2[t] - s2[s] - (s1[t] - s1[s]) ** 2 / (t - s)
            )
            total = f[s] + cost + pen
            j = int(np.argmin(total))
            f[t], last[t] = total[j], s[j]
    ends = []
    t = n
    while t > 0:
        ends.append(t)
        t = last[t]
    return sorted(ends)


def changepoints(
    values: pd.Series | npt.ArrayLike,
    *,
    penalty: float | None = None,
    penalty_factor: float = 3.5,
    sigma: float | None = None,
    min_size: int = 3,
    limit: float = 3.0,
) -> pd.DataFrame:
    """Level shifts by penalised least-squares segmentation.

    Parameters
    ----------
    values : Series or array_like
        The series; missing points are interpolated for the fit.
    penalty : float, optional
        Cost of one extra change, in squared units of ``values``. By default
        ``penalty_factor * sigma**2 * log(n)`` (BIC-like).
    penalty_factor : float, default 3.5
        ``c`` of the default penalty. BIC proper is 2 (two parameters per
        change); 3.5 keeps spurious changes in white noise to about 2% of
        56-point series with sigma estimated (checked by simulation in the
        tests) while a 3σ shift is still placed within a day 98% of the time.
    sigma : float, optional
        Noise standard deviation; by default the MAD of first differences
        divided by :math:`0.6745\\sqrt 2` (robust to the shifts themselves).
    min_size : int, default 3
        Shortest segment.
    limit : float, default 3.0
        Width of the ``lower``/``upper`` band around each segment's mean, in σ.

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag,
        segment``: ``expected`` is the fitted segment mean, ``flag`` marks the
        first point of each new segment; there ``statistic`` is the two-sample
        z of the shift, :math:`(\\bar x_{after}-\\bar x_{before}) /
        (\\sigma\\sqrt{1/n_b + 1/n_a})`, and ``p_value`` its two-sided normal
        p-value (not adjusted for the search). ``attrs`` holds ``penalty``,
        ``sigma`` and ``changes`` (labels of the change points).

    Notes
    -----
    Cost :math:`\\sum (x_i - \\bar x_{seg})^2` per segment plus ``penalty``
    per change, minimised exactly by dynamic programming (optimal
    partitioning; PELT finds the same optimum faster, which matters only for
    much longer series). Tested against ``ruptures.Pelt(model="l2")``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.r_[np.zeros(30), np.full(20, 2.0)] + np.tile([0.4, -0.4], 25)
    >>> res = changepoints(x, sigma=0.5)
    >>> res.index[res.flag].tolist()
    [30]
    """
    x, idx = _series(values, "values")
    if not isinstance(min_size, int | np.integer) or min_size < 1:
        raise ParameterError(
            MSG_RANGE.format(name="min_size", interval="integers >= 1", value=min_size),
            key="min_size",
        )
    finite = np.isfinite(x)
    if finite.sum() < 2:
        raise ParameterError(
            MSG_FEW_POINTS.format(detector="changepoints", need=2, where="", got=int(finite.sum())),
            key="values",
        )
    xf = pd.Series(x).interpolate(limit_direction="both").to_numpy()
    n = len(xf)
    if sigma is None:
        d = np.diff(xf)
        sd = float(np.median(np.abs(d - np.median(d)))) / (MAD_K * math.sqrt(2)) if len(d) else 0
        if not sd > 0:
            sd = float(np.std(d)) / math.sqrt(2) if len(d) > 1 else 0.0
        if not sd > 0:
            sd = 1e-12
    else:
        sd = check_positive(sigma, "sigma")
    pen = (
        check_positive(penalty, "penalty")
        if penalty is not None
        else check_positive(penalty_factor, "penalty_factor") * sd**2 * math.log(max(n, 2))
    )
    ends = _optimal_partition(xf, pen, int(min_size))
    starts = [0, *ends[:-1]]
    expected = np.empty(n)
    seg = np.empty(n, dtype=int)
    stat = np.full(n, np.nan)
    pval = np.full(n, np.nan)
    flag = np.zeros(n, bool)
    means = []
    for j, (a, b) in enumerate(zip(starts, ends, strict=True)):
        m = float(np.mean(xf[a:b]))
        means.append(m)
        expected[a:b] = m
        seg[a:b] = j
        if j > 0:
            a0 = starts[j - 1]
            z = (m - means[j - 1]) / (sd * math.sqrt(1 / (a - a0) + 1 / (b - a)))
            stat[a], pval[a], flag[a] = z, two_sided(z), True
    res = _frame(
        idx,
        observed=x,
        expected=expected,
        lower=expected - limit * sd,
        upper=expected + limit * sd,
        statistic=stat,
        p_value=pval,
        flag=flag,
        segment=seg,
    )
    labels = np.asarray(idx)
    res.attrs.update(penalty=pen, sigma=sd, changes=[labels[a] for a in starts[1:]])
    return res
