"""Trend and anomaly detection on daily market-local series.

Two layers:

* **Detectors** — pure functions on one pandas Series (a value per day), each
  returning a per-day table ``date, observed, expected, lower, upper,
  statistic, p_value, flag`` (plus a few detector-specific columns):

  - :func:`p_chart` — binomial p-chart for rates whose daily ``n`` varies
    (accuracy, error rates, ``sla_compliance``, ``ai_recall``…), with Laney's
    p′ adjustment when the series is overdispersed;
  - :func:`cusum_chart` and :func:`ewma_chart` — slow drift on a standardised
    series (tabular CUSUM with reference ``k`` and decision interval ``h``;
    EWMA with time-varying limits);
  - :func:`stl_mad` — counts and times with weekly seasonality (volume,
    response percentiles): STL decomposition with robust MAD residual scores;
  - :func:`changepoints` — level shifts, by exact penalised segmentation
    (optimal partitioning, the search PELT prunes) with a BIC-like penalty.

  ``baseline`` (leading points used as the reference) and ``mask`` (points
  left out of the reference, e.g. known outages and holidays) mean the same in
  every detector.

* **Scan** — :func:`scan` aggregates a market once per dimension in the engine
  (``by=[dimension, "date"]``), runs the right detectors on every metric of
  every segment, tests the windows they propose, controls the false discovery
  rate across the whole run, groups alerts that share a cause and returns the
  ``alerts.csv`` table (:data:`ALERT_COLUMNS`); :func:`write_alerts` writes it.

References: Laney (2002) "Improved control charts for attributes", Quality
Engineering 14(4); Lucas & Saccucci (1990) EWMA ARL tables; Page (1954) and
Montgomery, *Introduction to Statistical Quality Control*, ch. 9 (tabular
CUSUM); Cleveland et al. (1990) STL; Iglewicz & Hoaglin (1993) modified
z-scores; Killick, Fearnhead & Eckley (2012) PELT; Benjamini & Hochberg (1995).
Tests in ``tests/test_detect.py`` check run lengths by simulation against those
tables and the segmentation against :mod:`ruptures`.
"""

from __future__ import annotations

import contextvars
import functools
import math
import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special
from scipy import stats as sps
from scipy.optimize import brentq

from qualitylab.errors import ParameterError, QualityLabError

__all__ = [
    "ALERT_COLUMNS",
    "DETECTOR_COLUMNS",
    "EXTRA_COLUMNS",
    "MIN_EFFECT",
    "REBASELINED_COLUMNS",
    "SCAN_DIMENSIONS",
    "SCAN_METRICS",
    "SENSITIVITY_FDR",
    "SKIPPED_COLUMNS",
    "STOP_EVENT_KINDS",
    "changepoints",
    "cusum_chart",
    "ewma_chart",
    "minimum_detectable_change",
    "nearby_events",
    "p_chart",
    "rebaselined_series",
    "required_n",
    "scan",
    "scan_p_value",
    "skipped_series",
    "stl_mad",
    "write_alerts",
]

#: Columns of ``alerts.csv``, in order (the shared contract).
ALERT_COLUMNS = [
    "market",
    "metric",
    "dimension",
    "segment",
    "start_date",
    "end_date",
    "observed",
    "expected",
    "direction",
    "severity",
    "detector",
    "p_value",
]
#: Extra columns :func:`scan` adds after the contract ones.
EXTRA_COLUMNS = ["p_adjusted", "n", "impact", "group_id", "related", "events", "note"]
#: Columns every detector returns (some add more after these).
DETECTOR_COLUMNS = [
    "date",
    "observed",
    "expected",
    "lower",
    "upper",
    "statistic",
    "p_value",
    "flag",
]
#: Columns of ``alerts.attrs["skipped"]``.
SKIPPED_COLUMNS = ["market", "metric", "dimension", "segment", "reason", "n", "days"]
#: Columns of ``alerts.attrs["rebaselined"]`` (see :func:`scan`, ``rebaseline``).
REBASELINED_COLUMNS = ["market", "metric", "dimension", "segment", "from", "days", "rule", "note"]
#: Market ``alert_sensitivity`` -> false discovery rate of a scan.
SENSITIVITY_FDR = {"low": 0.01, "medium": 0.05, "high": 0.10}
#: Smallest deviation :func:`scan` reports: (absolute, relative). Rates: points
#: of proportion and change relative to the rarer outcome; counts and times:
#: relative change only.
MIN_EFFECT = {"rate": (0.01, 0.10), "level": (0.0, 0.20)}
# The model scores content before anyone moderates it: AI metrics are sliced by
# what describes the content, not by who (vendor, site) handled it.
_CONTENT_DIMENSIONS = ("market", "queue", "language", "policy", "ai_model")
#: Dimensions a scan may slice by.
SCAN_DIMENSIONS = ("market", "vendor", "site", "queue", "language", "policy", "ai_model", "routing")

_RATE_QA = ("accuracy", "over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")
_RATE_OPS = ("sla_compliance",)
_RATE_WORKFLOW = ("auto_action_rate", "override_rate")
# ai_fnr (= 1 - ai_recall) and ai_f1 (not a proportion) are covered by ai_recall/ai_precision.
_RATE_AI = ("ai_precision", "ai_recall", "ai_fpr")
_COUNTS = ("volume",)
_TIMES = ("response_p50", "response_p90", "response_p99")
#: Metrics :func:`scan` can watch, in the shared vocabulary.
SCAN_METRICS = (
    *_COUNTS,
    *_RATE_OPS,
    *_TIMES,
    *_RATE_QA,
    *_RATE_WORKFLOW,
    *_RATE_AI,
    "reporting_gap",
    "red_team_recall",
)
_RATES = (*_RATE_QA, *_RATE_OPS, *_RATE_WORKFLOW, *_RATE_AI, "red_team_recall")
_SPEED_FAMILY = ("sla_compliance", "response_p90", "response_p50", "response_p99")

# Error messages are module constants so tests can assert on them.
MSG_NOT_1D = "{name} must be one-dimensional; got shape {shape}"
MSG_LENGTHS = "Found input variables with inconsistent lengths: {name}={a}, {other}={b}"
MSG_RANGE = "{name} must be in {interval}; got {value!r}"
MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_BASELINE = (
    "baseline must be an integer in [2, {n}] (leading points of the reference); got {value!r}"
)
MSG_FEW_POINTS = "{detector} needs at least {need} usable points{where}; got {got}"
MSG_UNKNOWN_METRIC = "scan cannot watch metric {metric!r}; choose from {allowed}"
MSG_UNKNOWN_DIMENSION = "unknown dimension {dim!r}; choose from {allowed}"
MSG_REBASELINE_KEY = (
    "rebaseline keys must be (metric, dimension, segment) tuples of strings; got {key!r}"
)
MSG_REBASELINE_DATE = (
    "rebaseline[{key!r}] must be a date or an ISO date string (YYYY-MM-DD); got {value!r}"
)
MSG_PERIOD = (
    "market {market}: the scan period {start}..{end} is empty or leaves no baseline; data "
    "covers {data_start}..{data_end} and baseline_days={baseline_days} (an explicit start needs "
    "7 days of data before it; leave start unset to scan the whole range)"
)

# Chart constants: d2 for moving ranges of two, and the Iglewicz-Hoaglin constant.
_D2 = 1.128
_MAD_K = 0.6745


# --------------------------------------------------------------------------- #
# Input helpers (validation lives here, once)
# --------------------------------------------------------------------------- #
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


def _check_positive(value: float, name: str) -> float:
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


def _two_sided(z: np.ndarray | float) -> np.ndarray:
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


def _norm_isf(q: Any) -> Any:
    """``scipy.stats.norm.isf(q)`` (0.0 - ...: scipy's ``+ loc`` turns -0.0 into 0.0)."""
    return 0.0 - special.ndtri(np.asarray(q, dtype=float))


def _norm_cdf(x: Any) -> Any:
    """``scipy.stats.norm.cdf(x)``."""
    return special.ndtr(np.asarray(x, dtype=float))


def _norm_pdf(x: Any) -> Any:
    """``scipy.stats.norm.pdf(x)``."""
    x = np.asarray(x, dtype=float)
    return np.exp(-(x**2) / 2.0) / _NORM_PDF_C


def _t_sf(x: Any, df: float) -> Any:
    """``scipy.stats.t.sf(x, df)`` for ``df > 0``."""
    return special.stdtr(df, -np.asarray(x, dtype=float))


@functools.lru_cache(maxsize=65536)
def _fisher_p(a: int, b: int, c: int, d: int) -> float:
    """Two-sided p-value of Fisher's exact test of ``[[a, b], [c, d]]`` (memoised)."""
    return float(sps.fisher_exact([[a, b], [c, d]]).pvalue)


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
_AS_ARRAYS: contextvars.ContextVar[bool] = contextvars.ContextVar("_AS_ARRAYS", default=False)


def _frame(index: pd.Index, **cols: Any) -> pd.DataFrame:
    data: dict[str, Any] = {"date": np.asarray(index)}
    data.update(cols)
    data["flag"] = np.asarray(data["flag"], dtype=bool)
    if _AS_ARRAYS.get():
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


# --------------------------------------------------------------------------- #
# Detectors
# --------------------------------------------------------------------------- #
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
    limit = _check_positive(limit, "limit")
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
        p_value=np.where(ok, _two_sided(stat), np.nan),
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
        sd = _check_positive(sigma, "sigma")
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
    h = _check_positive(h, "h")
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
    limit = _check_positive(limit, "limit")
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
        p_value=np.where(np.isfinite(zz), _two_sided(np.nan_to_num(zz)), np.nan),
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
    threshold = _check_positive(threshold, "threshold")
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
        mad = float(np.mean(np.abs(r0 - np.median(r0)))) * _MAD_K * math.sqrt(math.pi / 2)
    noise = mad / _MAD_K / _stl_shrinkage(len(filled), int(period), int(seasonal))
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
        p_value=np.where(finite, _two_sided(np.nan_to_num(z)), np.nan),
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
    for t in range(min_size, n + 1):
        s = np.flatnonzero(np.isfinite(f[: t - min_size + 1]))
        cost = table[s, t] if table is not None else s2[t] - s2[s] - (s1[t] - s1[s]) ** 2 / (t - s)
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
        sd = float(np.median(np.abs(d - np.median(d)))) / (_MAD_K * math.sqrt(2)) if len(d) else 0
        if not sd > 0:
            sd = float(np.std(d)) / math.sqrt(2) if len(d) > 1 else 0.0
        if not sd > 0:
            sd = 1e-12
    else:
        sd = _check_positive(sigma, "sigma")
    pen = (
        _check_positive(penalty, "penalty")
        if penalty is not None
        else _check_positive(penalty_factor, "penalty_factor") * sd**2 * math.log(max(n, 2))
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
            stat[a], pval[a], flag[a] = z, _two_sided(z), True
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


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
def _local_event_dates(events: pd.DataFrame, market: str, timezone: str) -> pd.DataFrame:
    ev = events[events["market"].isin([market, "*"])].copy()
    ts = pd.to_datetime(ev["effective_at"], utc=True)
    ev["date"] = ts.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    return ev.sort_values("date", kind="stable").reset_index(drop=True)


def nearby_events(
    events: pd.DataFrame,
    start: date | str | pd.Timestamp,
    *,
    market: str,
    timezone: str,
    end: date | str | pd.Timestamp | None = None,
    days_before: int = 3,
    days_after: int = 7,
    policy: str | None = None,
) -> list[str]:
    """Events effective near a date, as short readable strings.

    Parameters
    ----------
    events : pandas.DataFrame
        The ``events`` table (``effective_at, market, kind, policy,
        description``).
    start : date
        Market-local date an alert (or change) starts.
    market : str
        Market code; events for ``"*"`` apply to every market.
    timezone : str
        The market's time zone (event dates are market-local).
    end : date, optional
        Last day of the alert; the window never reaches past it.
    days_before, days_after : int
        Window ``[start - days_before, min(start + days_after, end)]``: what
        changed just before or during the first week of an alert.
    policy : str, optional
        When given (a policy segment), events about another policy are left out.

    Returns
    -------
    list of str
        ``"YYYY-MM-DD kind[policy]: description"`` in date order.

    Examples
    --------
    >>> ev = pd.DataFrame({"effective_at": ["2026-11-08T17:00:00Z"], "market": ["ID"],
    ...                    "kind": ["policy_change"], "policy": ["scam"],
    ...                    "description": ["Scam policy update"]})
    >>> nearby_events(ev, "2026-11-09", market="ID", timezone="Asia/Jakarta")
    ['2026-11-09 policy_change[scam]: Scam policy update']
    """
    ev = _local_event_dates(events, market, timezone)
    day = pd.Timestamp(start).normalize()
    last = day + pd.Timedelta(days=days_after)
    if end is not None:
        last = min(last, pd.Timestamp(end).normalize())
    sel = ev[(ev["date"] >= day - pd.Timedelta(days=days_before)) & (ev["date"] <= last)]
    if policy is not None:
        sel = sel[sel["policy"].isna() | (sel["policy"] == policy)]
    out = []
    for _, r in sel.iterrows():
        pol = f"[{r['policy']}]" if isinstance(r["policy"], str) and r["policy"] else ""
        out.append(f"{r['date']:%Y-%m-%d} {r['kind']}{pol}: {r['description']}")
    return out


# --------------------------------------------------------------------------- #
# Scan: data
# --------------------------------------------------------------------------- #
@dataclass
class _Context:
    market: str
    dates: pd.DatetimeIndex  # baseline start .. end, daily
    base_len: int  # leading days that are baseline only
    mask: np.ndarray  # days excluded from reference estimates
    min_n: int
    fdr: float
    skipped: list[dict[str, Any]] = field(default_factory=list)
    first_scan: int = 0  # first day alerts may start on (0: the whole range is scanned)
    window: int = 28  # baseline_days: the most history a young-baseline day is judged on

    @property
    def monitored_days(self) -> int:
        return len(self.dates) - self.base_len

    def skip(self, metric: str, dim: str, seg: str, reason: str, n: float, days: int) -> None:
        self.skipped.append(
            {
                "market": self.market,
                "metric": metric,
                "dimension": dim,
                "segment": seg,
                "reason": reason,
                "n": float(n),
                "days": int(days),
            }
        )


@dataclass
class _Series:
    metric: str
    dimension: str
    segment: str
    value: np.ndarray
    n: np.ndarray
    volume: np.ndarray
    counterfactual: np.ndarray | None = None  # baseline level x weekly pattern (counts/times)
    floor: float = 0.0  # sampling noise of one day, on the log scale (counts/times)
    stop: int | None = None  # first day of a segment that stopped (no data from here on)
    since: int = 0  # first day of the series' history (a re-baseline; no data before it)


@dataclass
class _Window:
    series: _Series
    kind: str
    detector: str
    start: int
    end: int  # inclusive
    direction: str
    p_raw: float
    observed: float
    expected: float
    n: float
    p_value: float = float("nan")
    p_adjusted: float = float("nan")
    kpi: str = ""
    history: int = 0  # young_baseline: days of history the day was judged against


def _daily_operational(
    ds: Any,
    market: str,
    dim: str | None,
    start: date,
    end: date,
    *,
    stack: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per (segment, day): volume, SLA, response percentiles and AI workflow rates, one query.

    Same definitions as :func:`qualitylab.metrics.operational_metrics` on
    days that are fully observed: items created that day; SLA met when decided
    within the queue's SLA, breached when decided later or still pending past
    it; items still pending and younger than their SLA at the end of the
    period are censored (left out of ``sla_compliance``'s n). Percentiles are
    exact (the metrics module's Kaplan-Meier estimate works on 5% bins) and
    NaN on days with items still pending (not final yet).
    ``auto_action_rate`` and ``override_rate`` are those of
    :func:`qualitylab.metrics.ai_workflow_metrics` (decided items; overrides
    among ``ai_assisted`` ones).

    ``dim=None`` groups by ``dimension, segment`` instead: of a dataset whose
    decisions are already stacked (:meth:`Dataset.stacked`), or, with
    ``stack`` (dimensions), of ``ds``'s decisions stacked here once per
    dimension *after* each decision's flags and response time are computed,
    keeping only the columns the aggregation reads (the same numbers as a
    stacked dataset; the row expressions run once per decision instead of
    once per decision and dimension, ~2.5x faster on the large demo data).
    """
    import ibis

    from qualitylab.data.localtime import epoch_seconds, period_bounds_utc
    from qualitylab.measure.metrics import Period, decisions_in_period, override_expr

    mp = ds.params.market(market)
    period = Period(start, end)
    dec = decisions_in_period(ds, market=market, period=period)
    as_of = period_bounds_utc(start, end, mp.timezone)[1]
    end_lit = ibis.literal(as_of)
    decided = dec.decided_at.notnull() & (dec.decided_at < end_lit)
    stop = ibis.ifelse(decided, dec.decided_at, end_lit)
    secs = (epoch_seconds(stop) - epoch_seconds(dec.created_at)).cast("float64")
    slas = dict(mp.sla_seconds)
    sla = (
        ibis.cases(*[(dec.queue == q, ibis.literal(float(s))) for q, s in slas.items()], else_=None)
        if slas
        else ibis.null("float64")
    )
    within = decided & (secs <= sla)
    breach = sla.notnull() & ~within & (decided | (secs > sla))
    resp = ibis.ifelse(decided, secs, ibis.null("float64"))
    # the AI workflow rates of metrics.ai_workflow_metrics, in the same pass
    acted = dec.action.notnull()
    assisted = acted & (dec.routing == "ai_assisted")
    keys = [dim, "date"] if dim is not None else ["dimension", "segment", "date"]
    # one row per decision: the flags the aggregation sums, and the response time
    flags = {
        "_within": within.cast("int64"),
        "_sla": (within | breach).cast("int64"),
        "_pending": (~decided).cast("int64"),
        "_resp": resp,
        "_acted": acted.cast("int64"),
        "_auto": (acted & (dec.routing == "ai_auto")).cast("int64"),
        "_assisted": assisted.cast("int64"),
        "_over": (assisted & override_expr(dec)).cast("int64"),
    }
    if dim is None and stack is not None:
        dims = list(stack)
        rows = dec.select(*dict.fromkeys([*dims, "date"]), **flags)
        cols = ["date", *flags]
        rows = ibis.union(
            *[
                rows.select(
                    dimension=ibis.literal(d),
                    segment=rows[d].cast("string"),
                    **{c: rows[c] for c in cols},
                )
                for d in dims
            ],
            distinct=False,
        )
    else:
        rows = dec.select(*keys, **flags)
    agg = (
        rows.group_by(keys)
        .aggregate(
            volume=rows.count(),
            sla_k=rows["_within"].sum(),
            sla_n=rows["_sla"].sum(),
            pending=rows["_pending"].sum(),
            # the three percentiles in one pass over each group's values
            _q=rows["_resp"].quantile([0.5, 0.9, 0.99]),
            wf_decided=rows["_acted"].sum(),
            wf_auto=rows["_auto"].sum(),
            wf_assisted=rows["_assisted"].sum(),
            wf_overrides=rows["_over"].sum(),
        )
        .to_pandas()
    )
    qs = np.full((len(agg), len(_TIMES)), np.nan)
    for i, v in enumerate(agg.pop("_q")):
        if isinstance(v, (list, np.ndarray)):  # null: no decided item that day
            qs[i] = [np.nan if x is None else x for x in v]
    pending = (agg["pending"] == 0).to_numpy()
    for j, c in enumerate(("response_p50", "response_p90", "response_p99")):
        # a day with items still pending has no final percentile yet
        agg[c] = pd.Series(qs[:, j], index=agg.index).where(pending)
    if dim is not None:
        agg = agg.rename(columns={dim: "segment"})
    agg = agg[agg["segment"].notna()]
    agg["date"] = pd.to_datetime(agg["date"]).dt.normalize()
    rows = [
        agg.assign(metric="volume", value=agg["volume"].astype(float), n=agg["volume"]),
        agg.assign(
            metric="sla_compliance",
            value=agg["sla_k"] / agg["sla_n"].where(agg["sla_n"] > 0),
            n=agg["sla_n"],
        ),
    ]
    rows += [agg.assign(metric=c, value=agg[c], n=agg["volume"]) for c in _TIMES]
    for metric, k, n in (
        ("auto_action_rate", "wf_auto", "wf_decided"),
        ("override_rate", "wf_overrides", "wf_assisted"),
    ):
        nn = agg[n].astype(float)
        rows.append(agg.assign(metric=metric, value=agg[k] / nn.where(nn > 0), n=nn))
    out = pd.concat(rows, ignore_index=True)
    out["volume_day"] = out["volume"].astype(float)
    # log-scale spread of response times per segment, (log p90 - log p50) / z_0.9
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (np.log(agg["response_p90"]) - np.log(agg["response_p50"])) / sps.norm.ppf(0.9)
    if dim is not None:
        disp = spread.groupby(agg["segment"]).median()
        out["dispersion"] = out["segment"].map(disp).astype(float)
        return out[["segment", "date", "metric", "value", "n", "volume_day", "dispersion"]]
    disp = spread.groupby([agg["dimension"], agg["segment"]]).median()
    idx = pd.MultiIndex.from_frame(out[["dimension", "segment"]])
    out["dispersion"] = disp.reindex(idx).to_numpy(float)
    return out[["dimension", "segment", "date", "metric", "value", "n", "volume_day", "dispersion"]]


def _daily_red_team(ds: Any, market: str, start: date, end: date) -> pd.DataFrame:
    """red_team_recall per attack and market-local day, in one engine query.

    As :func:`qualitylab.redteam.red_team_evaluation`: recall = violating
    red-team items (``policy != "none"``) the model flags at the market's
    ``ai_threshold``, over violating items; ``attack == "none"`` are the
    clean controls.
    """
    from qualitylab.data.localtime import local_date, period_bounds_utc

    mp = ds.params.market(market)
    lo, hi = period_bounds_utc(start, end, mp.timezone)
    rt = ds.table("red_team")
    rt = rt.filter((rt.market == market) & (rt.created_at >= lo) & (rt.created_at < hi))
    rt = rt.filter(rt.policy.notnull() & (rt.policy != "none") & rt.ai_score.notnull())
    rt = rt.mutate(date=local_date(rt.created_at, mp.timezone, start=lo, end=hi))
    agg = (
        rt.group_by(["attack", "date"])
        .aggregate(n=rt.count(), k=(rt.ai_score >= mp.ai_threshold).cast("int64").sum())
        .to_pandas()
    )
    out = pd.DataFrame(
        {
            "segment": agg["attack"].astype(str),
            "date": pd.to_datetime(agg["date"]).dt.normalize(),
            "metric": "red_team_recall",
            "value": agg["k"] / agg["n"],
            "n": agg["n"].astype(float),
        }
    )
    out["volume_day"] = out["n"]
    out["dispersion"] = np.nan
    return out


def _tidy(frame: pd.DataFrame, dim: str) -> pd.DataFrame:
    out = frame.rename(columns={dim: "segment"})[["segment", "date", "metric", "value", "n"]]
    out = out[out["segment"].notna()]
    out = out.assign(date=pd.to_datetime(out["date"]).dt.normalize())
    return out


def _ai_metrics_fn() -> Any:
    try:
        from qualitylab.measure.aieval import ai_metrics
    except ImportError:
        return None
    return ai_metrics


def _load_dimensions(
    ds: Any, market: str, dims: list[str], start: date, end: date, wanted: set[str]
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """:func:`_load_dimension` for several dimensions, from one query per metric family.

    The decisions are stacked once per dimension (:meth:`Dataset.stacked`) and
    grouped by ``(dimension, segment, date)``: the same numbers as one load
    per dimension, with a third of the engine queries (each costs ~0.1 s of
    ibis compilation on any data size).
    """
    from qualitylab.measure import metrics as qm

    if not hasattr(ds, "stacked"):  # a dataset-like object without stacking
        return {d: _load_dimension(ds, market, d, start, end, wanted) for d in dims}
    notes: list[str] = []
    stacked = ds.stacked(dims)
    ops = _daily_operational(ds, market, None, start, end, stack=dims)
    keys = ["dimension", "segment", "date"]
    volume = ops[ops["metric"] == "volume"][[*keys, "volume_day", "dispersion"]]
    parts = [ops[ops["metric"].isin(wanted)].drop(columns=["volume_day", "dispersion"])]
    kw = {"market": market, "by": keys, "start": start, "end": end}
    # The audits are joined to the decisions once and the (few) joined rows are
    # stacked, rather than joining them to the stacked decisions (every decision
    # once per dimension): the same rows and numbers, a fraction of the work. When
    # the audits carry a column named like a dimension, the join would rename the
    # decisions' one, so the stacked dataset is used as before.
    join_first = ds.has("qa_audits") and not set(dims) & set(ds.table("qa_audits").columns)
    mp = ds.params.market(market)
    if wanted & set(_RATE_QA):
        if not ds.has("qa_audits"):
            notes.append("qa_audits is not in the dataset")
        elif join_first:
            parts.append(_tidy_stacked(_qa_stacked(ds, market, dims, start, end)))
        else:
            parts.append(_tidy_stacked(qm.qa_metrics(stacked, **kw)))
    content = [d for d in dims if d in _CONTENT_DIMENSIONS]
    if wanted & set(_RATE_AI) and content:
        fn = _ai_metrics_fn()
        if fn is None:
            notes.append("qualitylab.aieval.ai_metrics is not available")
        else:
            try:
                if join_first:
                    from qualitylab.measure.aieval import ai_metrics_from_audits, scored_audits

                    table = _stack_rows(
                        scored_audits(ds, market=market, start=start, end=end), content
                    )
                    ai = ai_metrics_from_audits(
                        table,
                        mp.ai_threshold,
                        keys,
                        confidence_level=mp.confidence_level,
                        f1_interval=False,
                    )
                else:
                    ai_ds = stacked if content == dims else ds.stacked(content)
                    ai = fn(ai_ds, **kw, f1_interval=False)
                parts.append(_tidy_stacked(ai))
            except QualityLabError as exc:  # e.g. no QA truth for the model
                notes.append(f"ai metrics unavailable: {exc}")
    long = pd.concat(parts, ignore_index=True)
    long = long[long["metric"].isin(wanted)]
    long = long.merge(volume, on=keys, how="left")
    long["segment"] = long["segment"].astype(str)
    out = {}
    for d in dims:
        mine = long[long["dimension"] == d].drop(columns="dimension").reset_index(drop=True)
        out[d] = (mine, list(notes))
    return out


def _stack_rows(table: Any, dims: Sequence[str]) -> Any:
    """`table`'s rows once per dimension, with ``dimension`` and ``segment`` (as text).

    The rows :meth:`Dataset.stacked` makes of the decisions, for any table that
    has the dimensions' columns (e.g. audits joined to their decisions).
    """
    import ibis

    parts = [table.mutate(dimension=ibis.literal(d), segment=table[d].cast("string")) for d in dims]
    return ibis.union(*parts, distinct=False)


def _qa_stacked(ds: Any, market: str, dims: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """:func:`qualitylab.metrics.qa_metrics` by ``dimension, segment, date`` of a stacked dataset.

    The internal audits are joined to the period's decisions first and the
    joined rows stacked (:func:`_stack_rows`); same defaults as ``qa_metrics``.
    """
    from qualitylab.measure import metrics as qm

    j = qm.audited_decisions(ds, market=market, period=qm.Period(start, end), qa_source="internal")
    out = qm.qa_from_audits(
        _stack_rows(j, dims),
        ["dimension", "segment", "date"],
        confidence_level=ds.params.market(market).confidence_level,
    )
    if out.empty:
        warnings.warn("no audited decisions in the period; QA metrics are empty", stacklevel=2)
        return pd.DataFrame(columns=["dimension", "segment", "date", "metric", "value", "n"])
    return out


def _tidy_stacked(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["dimension", "segment", "date", "metric", "value", "n"]]
    out = out[out["segment"].notna()]
    return out.assign(date=pd.to_datetime(out["date"]).dt.normalize())


def _load_dimension(
    ds: Any, market: str, dim: str, start: date, end: date, wanted: set[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Every daily metric of one dimension, long: segment, date, metric, value, n."""
    from qualitylab.measure import metrics as qm

    notes: list[str] = []
    ops = _daily_operational(ds, market, dim, start, end)
    volume = ops[ops["metric"] == "volume"][["segment", "date", "volume_day", "dispersion"]]
    parts = [ops[ops["metric"].isin(wanted)].drop(columns=["volume_day", "dispersion"])]
    kw = {"market": market, "by": [dim, "date"], "start": start, "end": end}
    if wanted & set(_RATE_QA):
        if ds.has("qa_audits"):
            parts.append(_tidy(qm.qa_metrics(ds, **kw), dim))
        else:
            notes.append("qa_audits is not in the dataset")
    if wanted & set(_RATE_AI) and dim in _CONTENT_DIMENSIONS:
        fn = _ai_metrics_fn()
        if fn is None:
            notes.append("qualitylab.aieval.ai_metrics is not available")
        else:
            try:
                parts.append(_tidy(fn(ds, **kw, f1_interval=False), dim))
            except QualityLabError as exc:  # e.g. no QA truth for the model
                notes.append(f"ai metrics unavailable: {exc}")
    long = pd.concat(parts, ignore_index=True)
    long = long[long["metric"].isin(wanted)]
    long = long.merge(volume, on=["segment", "date"], how="left")
    long["segment"] = long["segment"].astype(str)
    return long, notes


# --------------------------------------------------------------------------- #
# Scan: windows
# --------------------------------------------------------------------------- #
def _runs(flag: np.ndarray, sign: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive flagged points with the same sign."""
    out = []
    i, n = 0, len(flag)
    while i < n:
        if flag[i]:
            j = i
            while j + 1 < n and flag[j + 1] and sign[j + 1] == sign[i]:
                j += 1
            out.append((i, j, int(sign[i])))
            i = j + 1
        else:
            i += 1
    return out


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


def _critical_z(period_days: int, series: int, fdr: float) -> float:
    """The window z a lone discovery needs: search over the period, Bonferroni over series."""
    target = fdr / max(int(series), 1)
    if float(scan_p_value(0.0, period_days)) <= target:
        return 0.0
    return float(brentq(lambda z: float(scan_p_value(z, period_days)) - target, 0.0, 40.0))


def _power(delta: float, rate: float, n: float, n_ref: float | None, zc: float) -> float:
    """Power of the two-proportion z-test (pooled null, unpooled alternative variance)."""
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
    return float(sps.norm.cdf((abs(delta) - zc * se0) / se1))


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
    rate = _check_positive(rate, "rate")
    if not 0 < rate < 1:
        raise ParameterError(MSG_RANGE.format(name="rate", interval="(0, 1)", value=rate))
    n = _check_positive(n, "n")
    if n_reference is not None:
        n_reference = _check_positive(n_reference, "n_reference")
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
    f = lambda d: _power(sign * d, rate, n, n_reference, zc) - power  # noqa: E731
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
    f = lambda n: _power(change, rate, n, None, zc) - power  # noqa: E731
    hi = 10.0
    while f(hi) < 0:
        hi *= 2
        if hi > 1e12:
            return float("inf")
    return float(brentq(f, 1e-6, hi, xtol=1e-6))


def _search_p(p_raw: float, days: int) -> float:
    """Search-corrected p-value of a window with two-sided p-value ``p_raw``."""
    if not p_raw < 1:
        return 1.0
    return float(scan_p_value(_norm_isf(max(p_raw, 1e-300) / 2), days))


def _extend(
    z: np.ndarray, a: int, b: int, sign: int, first: int, low: float = 2.0
) -> tuple[int, int]:
    """Grow a run of flagged days over neighbours still beyond ``low`` sigma (hysteresis)."""
    while a - 1 >= first and np.isfinite(z[a - 1]) and sign * z[a - 1] >= low:
        a -= 1
    while b + 1 < len(z) and np.isfinite(z[b + 1]) and sign * z[b + 1] >= low:
        b += 1
    return a, b


def _trim(z: np.ndarray, a: int, b: int, sign: int, k: float = 0.5) -> tuple[int, int] | None:
    """Drop end days that do not deviate by at least k sigma in the window's direction."""
    while a <= b and not (np.isfinite(z[a]) and sign * z[a] >= k):
        a += 1
    while b >= a and not (np.isfinite(z[b]) and sign * z[b] >= k):
        b -= 1
    return (a, b) if a <= b else None


def _rate_windows(s: _Series, ctx: _Context) -> list[_Window]:
    base, T = ctx.base_len, ctx.monitored_days
    pc = p_chart(s.value, s.n, baseline=base, mask=ctx.mask)
    p_bar, scale = pc.attrs["p_bar"], pc.attrs["scale"]
    k_ref, n_ref = pc.attrs["reference_k"], pc.attrs["reference_n"]
    z = pc["statistic"].to_numpy()
    ok = np.isfinite(z)
    k = np.where(ok, s.value * s.n, 0.0)
    nn = np.where(ok, s.n, 0.0)
    name = "laney_p_chart" if pc.attrs["laney"] else "p_chart"
    spans: list[tuple[str, int, int, int]] = []
    for a, b, sg in _runs(pc["flag"].to_numpy(), np.sign(z)):
        spans.append((name, *_extend(z, a, b, sg, base), sg))
    zc = np.where(ok, z, np.nan)
    cu = cusum_chart(zc, target=0.0, sigma=1.0, baseline=base)
    stat = cu["statistic"].to_numpy()
    # A CUSUM excursion runs from its onset to its peak (the classic estimates of
    # when the shift started and stopped); an EWMA one from its first signal to its peak.
    for a, b, sg in _runs(cu["flag"].to_numpy(), np.sign(stat)):
        onset = cu["onset"].iloc[a]
        peak = a + int(np.argmax(np.abs(stat[a : b + 1])))
        spans.append(("cusum", int(onset) if pd.notna(onset) else a, peak, sg))
    ew = ewma_chart(zc, target=0.0, sigma=1.0, baseline=base)
    ew_stat = np.nan_to_num(ew["statistic"].to_numpy())
    ew_flag = ew["flag"].to_numpy()
    for a, b, sg in _runs(ew_flag, np.sign(ew_stat)):
        spans.append(("ewma", a, a + int(np.argmax(np.abs(ew_stat[a : b + 1]))), sg))
    if ok.sum() >= 6:
        cp = changepoints(zc, sigma=1.0)
        seg = cp["segment"].to_numpy()
        for a in np.flatnonzero(cp["flag"].to_numpy()):
            if a < base:
                continue
            b = int(np.flatnonzero(seg == seg[a])[-1])
            sg = int(np.sign(cp["statistic"].iloc[a]))
            spans.append(("changepoint", int(a), b, sg))
    out = []
    for det, a, b, sg in spans:
        if det != name:
            tr = _trim(z, a, b, sg)
            if tr is None:
                continue
            a, b = tr
        n_w = nn[a : b + 1].sum()
        if n_w < ctx.min_n or n_w <= 0:
            continue
        k_w = k[a : b + 1].sum()
        zw = _window_z(k_w, n_w, k_ref, n_ref, scale)
        if np.sign(zw) != sg:
            continue
        out.append(
            _Window(
                s,
                "rate",
                det,
                a,
                b,
                "up" if zw > 0 else "down",
                float(_two_sided(zw)),
                k_w / n_w,
                p_bar,
                n_w,
            )
        )
    for w in out:
        w.p_value = _search_p(w.p_raw, T)
    return out


# Daily operational series have heavier tails than the normal (holidays, outages,
# cohort effects): their robust scores are read as Student's t with this many d.f.
_TAIL_DF = 10


def _heavy_tailed(z: np.ndarray) -> np.ndarray:
    """Normal-equivalent z of scores read as Student's t (same two-sided p-value)."""
    z = np.asarray(z, dtype=float)
    p = 2 * _t_sf(np.abs(z), _TAIL_DF)
    return np.sign(z) * _norm_isf(np.maximum(p, 1e-300) / 2)


def _window_z(k_w: float, n_w: float, k_ref: float, n_ref: float, scale: float) -> float:
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
        z = float(_norm_isf(max(p, 1e-300) / 2))
    return math.copysign(z / scale, diff)


def _level_windows(s: _Series, ctx: _Context) -> list[_Window]:
    """Counts and times: STL + MAD spikes, and level shifts of the deseasonalised series."""
    base, T = ctx.base_len, ctx.monitored_days
    st = stl_mad(s.value, log=True, baseline=base, mask=ctx.mask, scale_floor=s.floor)
    z = st["statistic"].to_numpy()
    y = np.log1p(s.value)
    seasonal = st["seasonal"].to_numpy()
    level = y - seasonal
    ref = np.isfinite(level) & ~ctx.mask
    ref[base:] = False
    mu_b = float(np.median(level[ref])) if ref.any() else float(np.nanmedian(level))
    counterfactual = np.expm1(mu_b + seasonal)
    spans: list[tuple[str, int, int, int, float]] = []
    for a, b, sg in _runs(st["flag"].to_numpy(), np.sign(z)):
        a, b = _extend(z, a, b, sg, base)
        zs = _heavy_tailed(z[a : b + 1])
        zs = zs[np.isfinite(zs)]
        spans.append(("stl_mad", a, b, sg, float(np.sum(zs) / math.sqrt(len(zs)))))
    # Level shifts: a new segment of the deseasonalised series, tested against the
    # baseline level (not the previous segment, which may itself be anomalous).
    scale = st.attrs["scale"]
    n_ref = int(ref.sum())
    cp = changepoints(level, sigma=scale)
    seg = cp["segment"].to_numpy()
    for a in np.flatnonzero(cp["flag"].to_numpy()):
        if a < base or n_ref < 2:
            continue
        b = int(np.flatnonzero(seg == seg[a])[-1])
        lv = level[a : b + 1]
        lv = lv[np.isfinite(lv)]
        if not len(lv):
            continue
        zc = (float(np.mean(lv)) - mu_b) / (scale * math.sqrt(1 / len(lv) + 1 / n_ref))
        zc = float(_heavy_tailed(np.array([zc]))[0])
        spans.append(("changepoint", int(a), b, int(np.sign(zc)), zc))
    out = []
    for det, a, b, sg, zw in spans:
        obs = s.value[a : b + 1]
        okw = np.isfinite(obs)
        if not okw.any():
            continue
        if det == "changepoint":
            expected = counterfactual[a : b + 1]
        else:
            expected = st["expected"].to_numpy()[a : b + 1]
        out.append(
            _Window(
                s,
                "level",
                det,
                a,
                b,
                "up" if sg > 0 else "down",
                float(_two_sided(zw)),
                float(np.mean(obs[okw])),
                float(np.mean(expected[okw])),
                float(np.nansum(s.volume[a : b + 1])),
            )
        )
    for w in out:
        w.p_value = _search_p(w.p_raw, T)
    s.counterfactual = counterfactual
    return out


def _noise_floor(s: _Series, dispersion: float) -> float:
    """Sampling noise of one day's value on the log scale (0 when unknown).

    Counts: Poisson, sd(log count) ~ 1/sqrt(count). Percentile q of n
    log-normal times with log-sd s: sd(log Q) ~ s sqrt(q(1-q)/n) / phi(z_q).
    """
    n = s.n[np.isfinite(s.n) & (s.n > 0)]
    if not len(n):
        return 0.0
    med = float(np.median(n))
    if s.metric in _COUNTS:
        return 1.0 / math.sqrt(med + 1.0)
    if s.metric in _TIMES and np.isfinite(dispersion) and dispersion > 0:
        q = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}[s.metric]
        return float(dispersion * math.sqrt(q * (1 - q) / med) / sps.norm.pdf(sps.norm.ppf(q)))
    return 0.0


def _percentile_min_n(metric: str) -> int:
    """Daily n that puts 10 observations beyond a percentile (p90: 100, p99: 1000)."""
    q = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}[metric]
    return math.ceil(10 / (1 - q) - 1e-9)


def _evaluate(s: _Series, ctx: _Context) -> list[_Window] | None:
    """Windows proposed for one series, or None when it is too small to judge."""
    base = ctx.base_len
    has = np.isfinite(s.value) & (np.nan_to_num(s.n) > 0)
    ref_days = int((has[:base] & ~ctx.mask[:base]).sum())
    mon_days = int(has[base:].sum())
    skip = None
    if s.metric in _RATES:
        n_ref = float(np.nansum(np.where(has[:base] & ~ctx.mask[:base], s.n[:base], 0)))
        n_mon = float(np.nansum(np.where(has[base:], s.n[base:], 0)))
        if ref_days < 7:
            skip = (f"baseline has {ref_days} day(s) with data (need 7)", n_ref, ref_days)
        elif n_ref < ctx.min_n:
            skip = (f"baseline n={n_ref:.0f} < min_n={ctx.min_n}", n_ref, ref_days)
        elif n_mon < ctx.min_n:
            skip = (f"period n={n_mon:.0f} < min_n={ctx.min_n}", n_mon, mon_days)
    else:
        med_n = float(np.nanmedian(np.where(has, s.n, np.nan))) if has.any() else 0.0
        if has.sum() < 15 or ref_days < 7:
            skip = (
                f"{int(has.sum())} day(s) with data (need 15, 7 in baseline)",
                med_n,
                int(has.sum()),
            )
        elif med_n < ctx.min_n:
            skip = (f"median daily n={med_n:.0f} < min_n={ctx.min_n}", med_n, int(has.sum()))
        elif s.metric in _TIMES and med_n < _percentile_min_n(s.metric):
            need = _percentile_min_n(s.metric)
            skip = (f"median daily n={med_n:.0f} < {need} for {s.metric}", med_n, int(has.sum()))
    if skip is not None:
        ctx.skip(s.metric, s.dimension, s.segment, *skip)
        return None
    if s.metric in _COUNTS:
        s.value = np.where(np.isfinite(s.value), s.value, 0.0)
        if s.stop is not None:  # a segment that stopped has no data, not zeros, after it
            s.value[s.stop :] = np.nan
        s.value[: s.since] = np.nan  # nor before its re-baseline
    token = _AS_ARRAYS.set(True)  # the detectors' results stay inside: arrays suffice
    try:
        return _rate_windows(s, ctx) if s.metric in _RATES else _level_windows(s, ctx)
    finally:
        _AS_ARRAYS.reset(token)


def _gap_windows(ds: Any, ctx: _Context, start: date, end: date) -> tuple[list[_Window], int]:
    """reporting_gap: weekly vendor-reported minus measured, tested by reconcile."""
    from qualitylab.measure.reconcile import reporting_gap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gap = reporting_gap(ds, ctx.market, start=start - timedelta(days=6), end=end)
    gap = gap[gap["kpi"].isin(["accuracy", "sla_compliance"]) & gap["p_value"].notna()]
    out: list[_Window] = []
    tested = 0
    for (vendor, kpi), g in gap.groupby(["vendor", "kpi"], sort=True):
        g = g.sort_values("week")
        weeks = pd.to_datetime(g["week"]).dt.normalize().to_numpy()
        z = np.sign(g["gap"].to_numpy(float)) * sps.norm.isf(g["p_value"].to_numpy(float) / 2)
        tested += 1
        flags = np.abs(z) > 3.0
        spans = [(a, b, sg) for a, b, sg in _runs(flags, np.sign(z))]
        cu = cusum_chart(z, target=0.0, sigma=1.0)
        for a, b, sg in _runs(cu["flag"].to_numpy(), np.sign(cu["statistic"].to_numpy())):
            onset = cu["onset"].iloc[a]
            spans.append((int(onset) if pd.notna(onset) else a, b, sg))
        s = _Series(
            "reporting_gap", "vendor", str(vendor), np.array([]), np.array([]), np.array([])
        )
        for a, b, sg in spans:
            tr = _trim(z, a, b, sg)
            if tr is None:
                continue
            a, b = tr
            zw = float(np.sum(z[a : b + 1]) / math.sqrt(b - a + 1))
            w0 = pd.Timestamp(weeks[a])
            w1 = min(pd.Timestamp(weeks[b]) + pd.Timedelta(days=6), ctx.dates[-1])
            i0 = int(ctx.dates.get_indexer([max(w0, ctx.dates[0])])[0])
            i1 = int(ctx.dates.get_indexer([w1])[0])
            gw = g.iloc[a : b + 1]
            win = _Window(
                s,
                "gap",
                "reconcile",
                i0,
                i1,
                "up" if zw > 0 else "down",
                float(_two_sided(zw)),
                float(gw["reported"].mean()),
                float(gw["measured"].mean()),
                float(gw["n"].sum()),
            )
            win.p_value = _search_p(win.p_raw, len(z))
            win.kpi = str(kpi)
            out.append(win)
    return out, tested


# --------------------------------------------------------------------------- #
# Scan: young baselines (fewer than baseline_days of history)
# --------------------------------------------------------------------------- #
_YOUNG = "young_baseline"
#: Fewest days of history a young-baseline day is judged against.
_YOUNG_MIN_HISTORY = 7
#: History days further than this many robust SDs from the history's median are screened out.
_YOUNG_SCREEN = 3.5
_YOUNG_TIMES = "response percentiles are not judged on a young baseline (sla_compliance is)"


def _robust_keep(x: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """History points to keep: outliers are screened out, ordinary points never.

    A point is a candidate outlier when it lies more than 3.5 robust SDs
    (MAD / 0.6745, at least ``floor``) from the median, and is dropped only
    when it is also far from the other points (two-sided prediction t-test
    against the non-candidates, p < 0.001/h). The MAD of 7-12 points is so
    noisy that the median/MAD rule alone trims ordinary points and shrinks
    the history's SD: 3x the nominal rejections at h = 7 in simulation (1.2x
    with the confirmation at 0.001/h; 1.9x at 0.01/h, 1.4x at h = 12).
    """
    med = float(np.median(x))
    rsd = max(float(np.median(np.abs(x - med))) / _MAD_K, floor)
    if not rsd > 0:
        return np.ones(len(x), bool)
    cand = np.abs(x - med) > _YOUNG_SCREEN * rsd
    rest = x[~cand]
    if not cand.any() or len(rest) < 3:
        return np.ones(len(x), bool)
    sd = max(float(np.std(rest, ddof=1)), floor)
    if not sd > 0:
        return ~cand
    t = np.abs(x - float(np.mean(rest))) / (sd * math.sqrt(1 + 1 / len(rest)))
    return ~(cand & (2 * _t_sf(t, len(rest) - 1) < 0.001 / len(x)))


def _young_level_test(hist: np.ndarray, value: float, floor: float) -> tuple[float, int, float]:
    """Prediction test of one log-scale day against its short history.

    Returns ``(t, h, mean)``: the history is screened (:func:`_robust_keep`),
    then :math:`t = (y - \\bar y_h) / (s_h \\sqrt{1 + 1/h})` with ``s_h``
    floored at the sampling noise ``floor``; under the null (independent
    normal days) ``t`` is Student's t with ``h - 1`` d.f. ``t`` is NaN when
    the history has no spread and no floor.
    """
    kept = hist[_robust_keep(hist, floor)]
    h = len(kept)
    mean = float(np.mean(kept))
    sd = max(float(np.std(kept, ddof=1)) if h > 1 else 0.0, floor)
    if not sd > 0 or h < 2:
        return float("nan"), h, mean
    return (value - mean) / (sd * math.sqrt(1 + 1 / h)), h, mean


def _young_rate_test(
    k_hist: np.ndarray, n_hist: np.ndarray, k: float, n: float
) -> tuple[float, int, float, float]:
    """Test of one day's rate against the pooled rate of its short history.

    Returns ``(z, h, p_bar, n_ref)``: history days whose binomial z against
    the pooled rate lies more than 3.5 robust SDs (at least 1) from the
    median z are screened out; ``p_bar = sum k / sum n`` over the rest. The
    day is compared with the pooled history by :func:`_window_z` (Fisher's
    exact test, or the pooled z when every cell is large), which accounts
    for the reference's own size. When the history is overdispersed
    (Pearson :math:`\\hat\\phi = \\sum z_i^2 / (h-1) > 1`) the z is divided
    by :math:`\\sqrt{\\hat\\phi}` and read as Student's t with ``h - 1`` d.f.
    (quasi-binomial); the returned ``z`` is the normal-equivalent score.
    """
    p0 = (k_hist.sum() + 0.5) / (n_hist.sum() + 1.0)
    z0 = (k_hist / n_hist - p0) / np.sqrt(p0 * (1 - p0) / n_hist)
    keep = _robust_keep(z0, 1.0)
    kh, nh = k_hist[keep], n_hist[keep]
    h = int(keep.sum())
    k_ref, n_ref = float(kh.sum()), float(nh.sum())
    p_bar = k_ref / n_ref
    pool = (k + k_ref) / (n + n_ref)
    se = math.sqrt(pool * (1 - pool) * (1 / n + 1 / n_ref))
    z = (k / n - p_bar) / se if se > 0 else 0.0
    if abs(z) > 0.67:  # p < 0.5 by the pooled z: worth the exact test (days above never flag)
        z = _window_z(k, n, k_ref, n_ref, 1.0)
    pc = (k_ref + 0.5) / (n_ref + 1.0)
    phi = float(np.sum((kh / nh - pc) ** 2 / (pc * (1 - pc) / nh)) / max(h - 1, 1))
    if phi > 1 and h > 1:
        p = 2 * _t_sf(abs(z) / math.sqrt(phi), h - 1)
        z = math.copysign(float(_norm_isf(max(p, 1e-300) / 2)), z)
    return z, h, p_bar, n_ref


def _young_days(s: _Series, ctx: _Context, late: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Days the young rule may judge, the days usable as history, and the first day with data."""
    n = len(ctx.dates)
    has = np.isfinite(s.value) & (np.nan_to_num(s.n) > 0)
    if s.metric in _COUNTS:  # zero counts are data from the segment's first day to its stop
        pos = np.flatnonzero(np.nan_to_num(s.value) > 0)
        has = np.zeros(n, bool)
        if len(pos):
            has[pos[0] : n if s.stop is None else s.stop] = True
    has[: s.since] = False  # a re-baselined series' history begins on its date
    first = int(np.argmax(has)) if has.any() else n
    judge = has.copy()
    judge[: max(ctx.first_scan, first + _YOUNG_MIN_HISTORY)] = False
    if not late:  # series judged by the full-baseline detectors: only the days before them
        judge[ctx.base_len :] = False
    return judge, has & ~ctx.mask, first


def _young_windows(
    s: _Series, ctx: _Context, late: bool
) -> tuple[list[_Window], int, tuple[str, float, int] | None]:
    """Young-baseline windows of one series: each judged day is one test.

    Returns the flagged single-day windows (p-values already Bonferroni-
    corrected over the series' judged days), the number of days judged, and
    a skip reason when none could be.

    Response percentiles are not judged on a young baseline: a day's p90 of
    a bimodal response-time distribution (most items in minutes, a tail in
    hours) jumps ten-fold when the day's tail share crosses 10%, which a few
    days of history cannot tell from a shift (on the demo's shape without
    incidents, every false young alert was such a p90 day).
    ``sla_compliance``, an exact binomial rate, watches the same response
    times there.
    """
    if s.metric in _TIMES:
        return [], 0, (_YOUNG_TIMES, float(np.nansum(s.n)), int(np.isfinite(s.value).sum()))
    value = s.value.copy()
    if s.metric in _COUNTS:
        value = np.where(np.isfinite(value), value, 0.0)
    ys = _Series(s.metric, s.dimension, s.segment, value, s.n.copy(), s.volume.copy())
    ys.stop, ys.since = s.stop, s.since
    judge, usable, first = _young_days(ys, ctx, late)
    if s.metric in _COUNTS and s.stop is not None:
        ys.value[s.stop :] = np.nan
    n_days = int(usable.sum())
    if not judge.any():
        why = f"{n_days} day(s) with data (need {_YOUNG_MIN_HISTORY + 1}, 7 of history)"
        return [], 0, (why, float(np.nansum(np.where(usable, s.n, 0))), n_days)
    rate = s.metric in _RATES
    if not rate:
        med_n = float(np.nanmedian(np.where(usable | judge, s.n, np.nan)))
        need = ctx.min_n
        if s.metric in _TIMES:
            need = max(need, _percentile_min_n(s.metric))
        if med_n < need:
            what = f" for {s.metric}" if s.metric in _TIMES else ""
            return [], 0, (f"median daily n={med_n:.0f} < {need}{what}", med_n, n_days)
        y = np.log1p(np.maximum(ys.value, 0.0))
    k = np.where(np.isfinite(ys.value), ys.value * np.nan_to_num(ys.n), 0.0)
    nn = np.nan_to_num(ys.n)
    stats: list[tuple[int, float, int, float, int, float, float]] = []  # t p sign exp h obs n
    largest_ref = 0.0
    for t in np.flatnonzero(judge):
        hist = np.flatnonzero(usable[max(0, t - ctx.window) : t]) + max(0, t - ctx.window)
        if len(hist) < _YOUNG_MIN_HISTORY:
            continue
        if rate:
            if nn[t] < ctx.min_n:
                continue
            z, h, p_bar, n_ref = _young_rate_test(k[hist], nn[hist], k[t], nn[t])
            largest_ref = max(largest_ref, n_ref)
            if n_ref < ctx.min_n or h < _YOUNG_MIN_HISTORY - 2:
                continue
            p = float(_two_sided(z))
            stats.append((int(t), p, int(np.sign(z)), p_bar, h, k[t] / nn[t], nn[t]))
        else:
            tt, h, mean = _young_level_test(y[hist], float(y[t]), s.floor)
            if not np.isfinite(tt) or h < _YOUNG_MIN_HISTORY - 2:
                continue
            p = float(2 * _t_sf(abs(tt), h - 1))
            obs = float(ys.value[t])
            stats.append((int(t), p, int(np.sign(tt)), float(np.expm1(mean)), h, obs, 0.0))
    if not stats:
        if rate:
            top = float(np.max(np.where(judge, nn, 0.0)))
            if top < ctx.min_n:  # a young day is judged alone: it needs min_n itself
                why = f"largest young-day n={top:.0f} < min_n={ctx.min_n}"
                return [], 0, (why, top, n_days)
            why = f"young baseline n={largest_ref:.0f} < min_n={ctx.min_n}"
            return [], 0, (why, largest_ref, n_days)
        return [], 0, (f"{n_days} day(s) with data (need 8, 7 of history)", 0.0, n_days)
    days = len(stats)
    cf = np.full(len(ctx.dates), np.nan)
    out = []
    for t, p_day, sign, expected, h, obs, n_t in stats:
        cf[t] = expected
        p = min(1.0, p_day * days)
        if p > ctx.fdr or sign == 0:
            continue
        w = _Window(
            ys,
            "rate" if rate else "level",
            _YOUNG,
            t,
            t,
            "up" if sign > 0 else "down",
            p_day,
            float(obs),
            float(expected),
            float(n_t if rate else np.nan_to_num(s.volume[t])),
            p_value=p,
            history=h,
        )
        if _window_large_enough(w):
            out.append(w)
    if not rate:
        ys.counterfactual = cf
    return out, days, None


# --------------------------------------------------------------------------- #
# Scan: segments that stop
# --------------------------------------------------------------------------- #
_STOPPED = "segment_stopped"
#: Event kind that explains a segment of each dimension dropping to zero.
STOP_EVENT_KINDS = {
    "ai_model": "model_release",
    "vendor": "vendor_offboarding",
    "queue": "queue_retired",
}
#: Days between a stop and the event that explains it.
_STOP_EVENT_DAYS = 2
# Days before a stop that describe the segment's normal share of the volume.
_STOP_LOOKBACK = 14


@dataclass
class _Stop:
    dimension: str
    segment: str
    start: int  # first stopped day (a partial last day counts as stopped)
    last_active: int
    expected: float  # decisions per stopped day had the segment kept its share
    missing: float  # decisions expected over the stopped days
    p_value: float  # Poisson probability of no decisions at all over the zero days
    p_adjusted: float = float("nan")
    event: str = ""
    covered_by: str = ""
    rebaselined: str = ""  # the re-baseline date (ISO) when the segment stopped before it


def _find_stops(volume: dict[str, pd.DataFrame], ctx: _Context) -> list[_Stop]:
    """Segments whose volume drops to zero and stays there until the end of the scan.

    ``volume[dim]`` is a segment x day grid of decisions. A segment stopped
    when its last day with decisions is before the last day scanned, it had
    decisions on at least 80% of the 14 days before, and no decisions at all
    on the remaining days is implausible had it kept its share of the
    dimension's volume: :math:`p = e^{-\\lambda}` with :math:`\\lambda` = that
    share x the dimension's decisions on the zero days, Bonferroni over every
    segment examined, at most the scan's FDR. A last day with less than half
    the segment's median daily volume is the (partial) day it stopped.
    """
    found: list[_Stop] = []
    examined = 0
    n = len(ctx.dates)
    for dim, grid in volume.items():
        vol = np.nan_to_num(grid.to_numpy(float))
        total = vol.sum(axis=0)
        for i, seg in enumerate(grid.index):
            v = vol[i]
            active = np.flatnonzero(v > 0)
            if not len(active):
                continue
            examined += 1
            first, last = int(active[0]), int(active[-1])
            if last >= n - 1:
                continue
            lo = max(first, last - _STOP_LOOKBACK)
            pre = np.arange(lo, last) if last > lo else np.array([last])
            if (v[pre] > 0).mean() < 0.8 or not total[pre].sum() > 0:
                continue
            share = v[pre].sum() / total[pre].sum()
            missing = float(share * total[last + 1 :].sum())
            start = last + 1
            if last > first and v[last] < 0.5 * float(np.median(v[pre])):
                start = last
            found.append(
                _Stop(
                    dim,
                    str(seg),
                    start,
                    last,
                    float(share * total[last + 1 :].mean()),
                    missing,
                    math.exp(-missing),
                )
            )
    for st in found:
        st.p_adjusted = min(1.0, st.p_value * max(examined, 1))
    return [st for st in found if st.p_adjusted <= ctx.fdr]


def _names(text: str, segment: str) -> bool:
    """Whether ``text`` names ``segment`` as a whole word (``VendorB`` not in ``VendorB-BKK``)."""
    pattern = r"(?<![\w-])" + re.escape(segment.lower()) + r"(?![\w-])"
    return re.search(pattern, str(text).lower()) is not None


def _match_stop_events(
    stops: list[_Stop],
    events: pd.DataFrame | None,
    ctx: _Context,
    timezone: str,
    volume: dict[str, pd.DataFrame],
) -> None:
    """Attach to each stop the event that explains it (see :func:`scan`, Notes)."""
    if events is None or not len(events) or not stops:
        return
    ev = _local_event_dates(events, ctx.market, timezone)
    ev = ev[ev["kind"].isin(list(STOP_EVENT_KINDS.values()))]
    for st in stops:
        day = ctx.dates[st.start]
        near = ev[(ev["date"] - day).abs() <= pd.Timedelta(days=_STOP_EVENT_DAYS)]
        desc = near["description"].fillna("").astype(str)
        named = near[[_names(d, st.segment) for d in desc]]
        kind = STOP_EVENT_KINDS.get(st.dimension)
        if not len(named) and kind is not None:
            # an event of the dimension's kind that names none of the dimension's other
            # segments that were there before (a release may name the model it brings)
            grid = volume[st.dimension]
            since = np.argmax(np.nan_to_num(grid.to_numpy(float)) > 0, axis=1)
            others = [
                str(o)
                for o, f in zip(grid.index, since, strict=True)
                if str(o) != st.segment and f < st.start - _STOP_EVENT_DAYS
            ]
            own = near[(near["kind"] == kind).to_numpy()]
            named = own[[not any(_names(d, o) for o in others) for d in own["description"]]]
        if len(named):
            r = named.iloc[int(np.argmin((named["date"] - day).abs().to_numpy()))]
            st.event = f"{r['date']:%Y-%m-%d} {r['kind']}: {r['description']}"


def _cover_stops(stops: list[_Stop], ds: Any, ctx: _Context, start: date, end: date) -> None:
    """A stop inside another that stopped with it (a vendor's site) is covered by that one."""
    if len(stops) < 2:
        return
    dims = sorted({st.dimension for st in stops})
    if len(dims) < 2:
        return
    counts = _overlap_counts(ds, ctx.market, start, end, dims)
    order = sorted(
        stops, key=lambda st: (st.dimension not in STOP_EVENT_KINDS, _dim_rank(st.dimension))
    )
    for st in stops:
        own = counts.loc[counts[st.dimension] == st.segment, "k"].sum()
        for parent in order:
            if parent is st or parent.dimension == st.dimension or parent.covered_by:
                continue
            if abs(parent.start - st.start) > 1 or not own:
                continue
            both = counts.loc[
                (counts[st.dimension] == st.segment) & (counts[parent.dimension] == parent.segment),
                "k",
            ].sum()
            if both / own >= _CONTAINED and order.index(parent) < order.index(st):
                st.covered_by = f"{parent.dimension}={parent.segment}"
                if not st.event:
                    st.event = parent.event
                break


def _stop_alert(st: _Stop, ctx: _Context, grid: pd.DataFrame) -> dict[str, Any]:
    """The one low-severity ``segment stopped`` alert of a stop no event explains."""
    v = np.nan_to_num(grid.loc[st.segment].to_numpy(float))
    a, b = st.start, len(ctx.dates) - 1
    observed = float(v[a:].mean())
    excess = np.zeros(len(ctx.dates))
    excess[a:] = np.maximum(st.expected - v[a:], 0.0)
    return {
        "market": ctx.market,
        "metric": "volume",
        "dimension": st.dimension,
        "segment": st.segment,
        "start_date": ctx.dates[a],
        "end_date": ctx.dates[b],
        "observed": observed,
        "expected": st.expected,
        "direction": "down",
        "detector": _STOPPED,
        "p_value": st.p_value,
        "p_adjusted": st.p_adjusted,
        "n": float(v[max(0, st.last_active - _STOP_LOOKBACK) : st.last_active + 1].sum()),
        "volume": float(v[a:].sum()),
        "note": (
            f"segment stopped: no decisions after {ctx.dates[st.last_active]:%Y-%m-%d} "
            f"(expected ~{st.expected:.0f}/day); no {STOP_EVENT_KINDS.get(st.dimension, 'stop')} "
            "event recorded"
        ),
        "_a": a,
        "_b": b,
        "_excess": excess,
    }


# --------------------------------------------------------------------------- #
# Scan: merging, grouping, output
# --------------------------------------------------------------------------- #
def _cluster(windows: list[_Window]) -> list[list[_Window]]:
    """Windows of one series and direction that overlap or touch (gap <= 1 day): one event."""
    key = lambda w: (w.series.metric, w.series.dimension, w.series.segment, w.direction)  # noqa: E731
    windows = sorted(windows, key=lambda w: (key(w), w.start, w.end))
    groups: list[list[_Window]] = []
    for w in windows:
        if (
            groups
            and key(groups[-1][0]) == key(w)
            and w.start <= max(g.end for g in groups[-1]) + 2
        ):
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def _merge(groups: list[list[_Window]], ctx: _Context) -> list[dict[str, Any]]:
    """One alert per event: the union of its windows, summarised over those days."""
    alerts: list[dict[str, Any]] = []
    for grp in groups:
        best = min(grp, key=lambda w: (w.p_value, -(w.end - w.start)))
        a = min(w.start for w in grp)
        b = max(w.end for w in grp)
        s = best.series
        obs, exp_, n_w = _window_summary(grp, best, a, b)
        volume = float(np.nansum(s.volume[a : b + 1])) if len(s.volume) else float("nan")
        # Daily excess in the alert's direction on every day (not only inside the
        # window), in decisions affected; grouping compares these between alerts.
        sign = 1.0 if best.direction == "up" else -1.0
        excess = np.zeros(len(ctx.dates))
        if best.kind == "rate":
            excess = sign * np.nan_to_num(s.value - best.expected) * np.nan_to_num(s.volume)
        elif best.kind == "level" and s.counterfactual is not None:
            if s.metric in _COUNTS:
                excess = sign * np.nan_to_num(s.value - s.counterfactual)
            else:
                rel = np.nan_to_num(s.value / s.counterfactual - 1)
                excess = np.clip(sign * rel, -1.0, 1.0) * np.nan_to_num(s.volume)
        alerts.append(
            {
                "market": ctx.market,
                "metric": s.metric,
                "dimension": s.dimension,
                "segment": s.segment,
                "start_date": ctx.dates[a],
                "end_date": ctx.dates[b],
                "observed": obs,
                "expected": exp_,
                "direction": best.direction,
                "detector": best.detector,
                "p_value": best.p_value,
                "p_adjusted": min(w.p_adjusted for w in grp),
                "n": n_w,
                "volume": volume,
                "note": _note(grp, best),
                "_a": a,
                "_b": b,
                "_excess": excess,
            }
        )
    return alerts


def _window_summary(
    grp: list[_Window], best: _Window, a: int, b: int
) -> tuple[float, float, float]:
    s = best.series
    if best.kind == "rate":
        ok = np.isfinite(s.value[a : b + 1]) & (np.nan_to_num(s.n[a : b + 1]) > 0)
        nn = s.n[a : b + 1][ok]
        kk = (s.value[a : b + 1] * s.n[a : b + 1])[ok]
        return float(kk.sum() / nn.sum()), best.expected, float(nn.sum())
    if best.kind == "level":
        obs = s.value[a : b + 1]
        cf = s.counterfactual
        if len(grp) == 1 or cf is None:
            return best.observed, best.expected, best.n
        ok = np.isfinite(obs)
        return (
            float(np.mean(obs[ok])),
            float(np.mean(cf[a : b + 1][ok])),
            float(np.nansum(s.volume[a : b + 1])),
        )
    # reporting gap: mean over the member windows
    return (
        float(np.mean([w.observed for w in grp])),
        float(np.mean([w.expected for w in grp])),
        float(max(w.n for w in grp)),
    )


def _note(grp: list[_Window], best: _Window) -> str:
    if best.kind == "gap":
        return f"{best.kpi}: partner reported {best.observed:.3f}, measured {best.expected:.3f}"
    if best.detector == _YOUNG:
        return f"{_YOUNG}: judged against {best.history} day(s) of history"
    dets = sorted({w.detector for w in grp})
    return "detectors: " + ", ".join(dets)


def _effect(alert: dict[str, Any]) -> tuple[float, float]:
    """(absolute, relative) size of the deviation."""
    obs, exp_ = alert["observed"], alert["expected"]
    diff = abs(obs - exp_)
    if alert["metric"] in _RATES or alert["metric"] == "reporting_gap":
        rare = max(min(exp_, 1 - exp_), 1e-3)
        return diff, diff / rare
    return diff, diff / max(abs(exp_), 1e-9)


def _window_large_enough(w: _Window) -> bool:
    """Whether one window's own deviation could make a reportable alert."""
    return _large_enough(
        {"metric": w.series.metric, "observed": w.observed, "expected": w.expected}
    )


def _large_enough(alert: dict[str, Any]) -> bool:
    diff, rel = _effect(alert)
    kind = "rate" if alert["metric"] in _RATES or alert["metric"] == "reporting_gap" else "level"
    lo = MIN_EFFECT[kind]
    return diff >= lo[0] and rel >= lo[1]


def _impact(alert: dict[str, Any]) -> float:
    """Decisions affected: volume in the window x size of the deviation."""
    diff, rel = _effect(alert)
    vol = alert["volume"]
    if alert["metric"] == "volume":
        days = (alert["end_date"] - alert["start_date"]).days + 1
        return diff * days
    if alert["metric"] in _TIMES:
        return vol * min(rel, 1.0)
    return vol * diff


def _severity(alert: dict[str, Any], fdr: float) -> str:
    diff, rel = _effect(alert)
    p = alert["p_adjusted"]
    rate = alert["metric"] in _RATES or alert["metric"] == "reporting_gap"
    big = (diff >= 0.05 or rel >= 0.5) if rate else rel >= 0.5
    moderate = (diff >= 0.02 or rel >= 0.2) if rate else rel >= 0.2
    if p <= fdr / 100 and big:
        return "high"
    if p <= fdr / 10 and moderate:
        return "medium"
    return "low"


# A segment lies inside another when this share of its decisions does; a part is a
# hotspot when its deviation is this many times its parent's.
_CONTAINED = 0.95
_HOTSPOT = 1.5


def _dim_rank(dim: str) -> int:
    return SCAN_DIMENSIONS.index(dim) if dim in SCAN_DIMENSIONS else len(SCAN_DIMENSIONS)


def _overlap_counts(ds: Any, market: str, start: date, end: date, dims: list[str]) -> pd.DataFrame:
    """Decision counts per combination of the given dimensions in the period (one query)."""
    from qualitylab.measure.metrics import Period, decisions_in_period

    dec = decisions_in_period(ds, market=market, period=Period(start, end))
    df = dec.group_by(dims).aggregate(k=dec.count()).to_pandas()
    return df.astype(dict.fromkeys(dims, str))


def _group(
    alerts: list[dict[str, Any]],
    ds: Any,
    market: str,
    start: date,
    end: date,
    counts: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Attach each alert explained by another (same cause) to it; return the primaries."""
    n = len(alerts)
    if n == 0:
        return []
    parent = [-1] * n
    cache: dict[tuple[str, str], dict[Any, float]] = {}
    cube: dict[str, pd.DataFrame] = {} if counts is None else {"df": counts}
    cube_dims = sorted({a["dimension"] for a in alerts} - {"market"})
    sizes: dict[tuple[str, str], float] = {}

    def share(a: dict[str, Any], b: dict[str, Any]) -> float:
        """Share of a's decisions that are also in b."""
        da, db = a["dimension"], b["dimension"]
        if da == db:
            return 1.0 if a["segment"] == b["segment"] else 0.0
        if db == "market":
            return 1.0
        if da == "market":
            return sizes.get((db, b["segment"]), 0.0) / max(sizes.get(("market", market), 1.0), 1.0)
        if (da, db) not in cache:
            if not cube:
                cube["df"] = _overlap_counts(ds, market, start, end, cube_dims)
            df = cube["df"].groupby([da, db], as_index=False)["k"].sum()
            for x, y in ((da, db), (db, da)):
                cache[(x, y)] = {
                    (u, v): float(k) for u, v, k in df[[x, y, "k"]].itertuples(index=False)
                }
                cache[(x, "__total__")] = df.groupby(x)["k"].sum().astype(float).to_dict()
        tot = cache[(da, "__total__")].get(a["segment"], 0.0)
        both = cache[(da, db)].get((a["segment"], b["segment"]), 0.0)
        return both / tot if tot else 0.0

    def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a["_a"] <= b["_b"] and b["_a"] <= a["_b"]

    for a in alerts:
        sizes.setdefault((a["dimension"], a["segment"]), a.get("segment_volume", 0.0))
    sizes.setdefault(
        ("market", market), max((a.get("market_volume", 0.0) for a in alerts), default=1.0)
    )

    def per_day(a: dict[str, Any]) -> float:
        return a["impact"] / (a["_b"] - a["_a"] + 1)

    def explains(i: int, j: int) -> float:
        """Share of j's excess, over j's window, that i's excess accounts for."""
        a, b = alerts[i], alerts[j]
        lo, hi = b["_a"], b["_b"]
        ea = float(a["_excess"][lo : hi + 1].sum())
        eb = float(b["_excess"][lo : hi + 1].sum())
        if not (a["_excess"].any() and b["_excess"].any()):  # no daily detail: daily averages
            ea, eb = per_day(a), per_day(b)
        if eb <= 0:
            return float("inf") if ea > 0 else 0.0
        return max(ea, 0.0) * share(a, b) / eb

    # 1. the same metric across dimensions
    def size(a: dict[str, Any]) -> float:
        """Deviation per decision: points for rates, relative change otherwise."""
        diff, rel = _effect(a)
        return diff if a["metric"] in _RATES or a["metric"] == "reporting_gap" else rel

    def related_pair(i: int, j: int) -> bool:
        a, b = alerts[i], alerts[j]
        return (
            i != j
            and a["metric"] == b["metric"]
            and a["direction"] == b["direction"]
            and (a["dimension"], a["segment"]) != (b["dimension"], b["segment"])
            and overlaps(a, b)
        )

    def inside(i: int, j: int) -> bool:
        """Alert i's segment lies (almost) wholly inside alert j's."""
        return share(alerts[i], alerts[j]) >= _CONTAINED

    for j in range(n):
        best, best_s = -1, 0.5
        for i in range(n):
            if not related_pair(i, j):
                continue
            a, b = alerts[i], alerts[j]
            s_ij = explains(i, j)
            if s_ij < best_s:
                continue
            j_in_i, i_in_j = inside(j, i), inside(i, j)
            if j_in_i and i_in_j:  # the same population under two names
                wins = _dim_rank(a["dimension"]) < _dim_rank(b["dimension"]) or (
                    a["dimension"] == b["dimension"] and a["p_value"] < b["p_value"]
                )
            elif j_in_i:  # a parent explains a part that moved like the whole, not a hotspot
                wins = size(b) <= _HOTSPOT * size(a)
            elif i_in_j:  # a part explains its parent only as a hotspot (step 1b)
                wins = False
            else:  # overlapping segments of different dimensions
                wins = s_ij > explains(j, i)
            if wins:
                best, best_s = i, s_ij
        parent[j] = best

    # 1b. a parent whose excess comes mostly from hotspots (parts that moved much more
    # than the whole, in one dimension) is explained by the largest of them
    for j in range(n):
        if parent[j] != -1:
            continue
        b = alerts[j]
        hot: dict[str, list[int]] = {}
        for i in range(n):
            part = related_pair(i, j) and inside(i, j) and not inside(j, i)
            if part and size(alerts[i]) > _HOTSPOT * size(b):
                hot.setdefault(alerts[i]["dimension"], []).append(i)
        eb = float(b["_excess"][b["_a"] : b["_b"] + 1].sum())
        for members in hot.values():
            carried = sum(
                max(float(alerts[i]["_excess"][b["_a"] : b["_b"] + 1].sum()), 0.0) for i in members
            )
            if eb > 0 and carried >= 0.5 * eb:
                parent[j] = max(members, key=lambda i: alerts[i]["_excess"].sum())
                break

    # 2. response percentiles are other views of the SLA on the same segment; accuracy
    # and its error types stay separate alerts (each error type has its own remedy)
    def consistent(a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Same story: accuracy down with an error rate up, SLA down with times up."""
        higher_better = ("accuracy", "sla_compliance")
        flip = (a["metric"] in higher_better) != (b["metric"] in higher_better)
        return (a["direction"] != b["direction"]) if flip else (a["direction"] == b["direction"])

    def family_parent(j: int) -> int:
        b = alerts[j]
        cands = [
            i
            for i in range(n)
            if i != j
            and parent[i] == -1
            and (alerts[i]["dimension"], alerts[i]["segment"]) == (b["dimension"], b["segment"])
            and overlaps(alerts[i], b)
            and consistent(alerts[i], b)
        ]
        if b["metric"] in _SPEED_FAMILY:
            rank = _SPEED_FAMILY.index(b["metric"])
            better = [i for i in cands if alerts[i]["metric"] in _SPEED_FAMILY[:rank]]
            return min(better, key=lambda i: _SPEED_FAMILY.index(alerts[i]["metric"]), default=-1)

        return -1

    for j in range(n):
        if parent[j] == -1:
            parent[j] = family_parent(j)

    def root(i: int) -> int:
        seen = set()
        while parent[i] != -1 and i not in seen:
            seen.add(i)
            i = parent[i]
        if i in seen:  # a cycle: the strongest evidence leads
            cyc = list(seen)
            i = min(cyc, key=lambda c: alerts[c]["p_value"])
            parent[i] = -1
        return i

    roots = [root(i) for i in range(n)]
    primaries = []
    for gid, r in enumerate(sorted(set(roots), key=lambda r: -alerts[r]["impact"]), start=1):
        members = [i for i in range(n) if roots[i] == r and i != r]
        members.sort(key=lambda i: -alerts[i]["impact"])
        alert = dict(alerts[r])
        alert["group_id"] = gid
        alert["related"] = "; ".join(
            f"{alerts[i]['metric']} {alerts[i]['dimension']}={alerts[i]['segment']}"
            for i in members
        )
        primaries.append(alert)
    return primaries


def _to_date(value: Any, name: str) -> date | None:
    if value is None:
        return None
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise ParameterError(
            MSG_RANGE.format(name=name, interval="ISO dates (YYYY-MM-DD)", value=value), key=name
        ) from None


@dataclass(frozen=True)
class _Range:
    """The dates a scan covers (market-local)."""

    data_start: date
    data_end: date
    base_start: date  # first day loaded
    start: date  # first day of the full-baseline period (after ``end`` when there is none)
    end: date
    young: bool  # the days before ``start`` are scanned with young baselines
    first: date | None = None  # young: the first day alerts may start on (default base_start)

    @property
    def first_alert(self) -> date:
        return (self.first or self.base_start) if self.young else self.start

    @property
    def days(self) -> int:
        return (self.end - self.base_start).days + 1


def _resolve_dates(ds: Any, market: str, start: Any, end: Any, baseline_days: int) -> _Range:
    from qualitylab.measure.metrics import resolve_period

    data = resolve_period(ds, market=market, start=None, end=None)
    e = _to_date(end, "end") or data.end
    s = _to_date(start, "start")
    young = s is None
    first = None
    if s is not None and data.start <= s <= min(e, data.end) and (s - data.start).days < 7:
        # too little history before an explicit start for a baseline: the young rule
        # judges the days from ``s`` on, the full detectors once baseline_days exist
        young, first = True, s
        s = None
    if s is None:
        s = data.start + timedelta(days=baseline_days)
        base_start = data.start
        bad = e < data.start
    else:
        base_start = max(s - timedelta(days=baseline_days), data.start)
        bad = e < s or (s - base_start).days < 7 or s > data.end
    if bad:
        raise QualityLabError(
            MSG_PERIOD.format(
                market=market,
                start=s,
                end=e,
                data_start=data.start,
                data_end=data.end,
                baseline_days=baseline_days,
            )
        )
    return _Range(data.start, data.end, base_start, s, min(e, data.end), young, first)


def _mask_dates(ds: Any, market: str, timezone: str, kinds: Collection[str]) -> set[pd.Timestamp]:
    if not kinds or not ds.has("events"):
        return set()
    ev = _local_event_dates(ds.table("events").to_pandas(), market, timezone)
    return set(ev.loc[ev["kind"].isin(list(kinds)), "date"])


def scan(
    ds: Any,
    market: str,
    start: date | str | None = None,
    end: date | str | None = None,
    *,
    dimensions: Sequence[str] = (
        "market",
        "vendor",
        "site",
        "queue",
        "language",
        "policy",
        "ai_model",
    ),
    metrics: Sequence[str] | None = None,
    baseline_days: int = 28,
    min_n: int | None = None,
    fdr: float | None = None,
    mask_events: Collection[str] = ("outage", "holiday"),
    rebaseline: Mapping[tuple[str, str, str], date | str] | None = None,
) -> pd.DataFrame:
    """Scan one market for anomalies in every metric of every segment.

    Parameters
    ----------
    ds : Dataset
    market : str
        Market code; its calendar defines the dates.
    start, end : date or ISO string, optional
        Market-local period to alert on, inclusive. By default the whole data
        range is scanned: days from ``baseline_days`` after the first day with
        data on by the full detectors, the days before them (from the 8th day)
        by the young-baseline rule (Notes). An explicit ``start`` scans
        ``start..end`` only, against the ``baseline_days`` before it (at least
        7 must exist). ``end`` defaults to the last day with data.
    dimensions : sequence of str
        Grains to slice by, from :data:`SCAN_DIMENSIONS`; ``"market"`` gives
        market-wide series.
    metrics : sequence of str, optional
        Metrics to watch, from :data:`SCAN_METRICS` (default: all the data
        supports; AI metrics need ``qualitylab.aieval.ai_metrics`` and are
        sliced by the content dimensions market, queue, language, policy and
        ai_model only; ``reporting_gap`` needs ``vendor_reported`` and the
        vendor dimension; ``red_team_recall`` needs ``red_team`` and is
        sliced by ``attack``).
    baseline_days : int, default 28
        Days of history that form the reference of the full detectors, and
        the most history a young-baseline day is judged against.
    min_n : int, optional
        Smallest sample to judge (default: the market's ``min_n``).
    fdr : float, optional
        False discovery rate of the run; by default from the market's
        ``alert_sensitivity`` via :data:`SENSITIVITY_FDR`.
    mask_events : collection of str, default ("outage", "holiday")
        Event kinds whose market-local dates are left out of every baseline.
    rebaseline : mapping, optional
        ``{(metric, dimension, segment): date}``: series whose history restarts
        on a market-local date (a ``date`` or ISO string), e.g. the date an
        alert on it was labelled ``new_normal``. The segment of the ``market``
        dimension is the market code. Days before the date are not used as
        baseline or reference, and no alert of the series lies wholly before
        it (Notes). Keys that match no series of the scan are ignored and
        noted; a date that is not one raises :class:`ParameterError` naming
        the key.

    Returns
    -------
    pandas.DataFrame
        One row per alert, ranked by ``impact``: :data:`ALERT_COLUMNS`, then
        ``p_adjusted`` (Benjamini-Hochberg), ``n`` (audits, decisions or
        SLA-eligible items behind ``observed``), ``impact`` (decisions affected:
        window volume x deviation, or excess items for volume), ``group_id``,
        ``related`` (alerts explained by this one), ``events`` (nearby events)
        and ``note``. ``attrs["skipped"]`` lists the series too small to judge
        as records (:func:`skipped_series` makes the tidy table,
        :data:`SKIPPED_COLUMNS`); a warning summarises them.
        ``attrs["scanned"]`` holds the dates as ISO strings: ``start``/``end``
        (the range scanned), ``young_start``/``young_end`` (days judged by the
        young-baseline rule; ``None`` when there are none) and
        ``full_start``/``full_end`` (the full-baseline period; ``None`` when
        the data is shorter than ``baseline_days`` + 1 days), plus
        ``data_start``/``data_end`` and ``baseline_days``. ``attrs["stopped"]``
        lists the segments that stopped (records: ``dimension, segment,
        last_active, stopped_from, expected_daily, p_value, event, covered_by,
        alerted, note``) and ``attrs["young"]`` counts the series and
        series-days the young rule judged. ``attrs["rebaselined"]`` has one
        record per key of ``rebaseline`` (:data:`REBASELINED_COLUMNS`;
        :func:`rebaselined_series` makes the table): its date (``from``), the
        days from it to the end of the scan, the ``rule`` that judged the
        series (``"full"``, ``"young"``, ``"none"``: too little data since,
        or ``"unknown"``: no such series, ignored) and a ``note``; unknown
        keys are also named in the warning. With fewer than 8 days of data the
        frame is empty and ``attrs["note"]`` says why (with a warning).

    Notes
    -----
    Data: one engine aggregation per dimension (``by=[dimension, "date"]``)
    per metric family; nothing is queried per segment. Each daily series
    (reindexed to every day of baseline + period) is judged by detectors for
    its kind:

    * rates: :func:`p_chart` (Laney when overdispersed), and on its z-scores
      :func:`cusum_chart`, :func:`ewma_chart` and :func:`changepoints`;
    * counts and times (on log scale): :func:`stl_mad` for spikes and
      :func:`changepoints` of the deseasonalised series for level shifts;
    * ``reporting_gap``: weekly z-scores of
      :func:`qualitylab.reconcile.reporting_gap`, with |z| > 3 and CUSUM.

    Each detector proposes windows of consecutive days (a run of flagged days
    grows over neighbours still beyond 2σ). A rate window is
    tested as one pooled sample against the baseline rate (Laney-scaled z);
    an STL window by the Stouffer sum of its robust scores; a level shift by
    its two-sample z against the baseline level (scores of counts and times
    are read as Student's t with 10 d.f.: daily operational series have
    heavier tails than the normal). The window p-value pays for the search: it
    is the tail of the largest of all windows of the monitored period
    (:func:`scan_p_value`), not of one fixed window.
    Overlapping or adjacent windows of one series and direction form one
    event (one hypothesis, with its smallest window p-value; windows whose
    p-value exceeds the FDR cannot be significant and join no event, but are
    counted), and Benjamini-Hochberg runs across every event in the market
    plus one null test per series that proposed none. Each significant event is one alert
    spanning its windows.
    Rate windows pooling fewer than ``min_n`` observations are not reported;
    count/time series whose median daily ``n`` is below ``min_n``, and rate
    series with fewer than ``min_n`` observations in the baseline or period
    or fewer than 7 baseline days with data, are skipped.

    Grouping (same metric and direction, overlapping dates). The excess of
    an alert is the decisions affected, day by day, against its expectation.
    A *parent* segment (one that holds at least 95% of the other's decisions)
    explains a part that moved like it (deviation at most 1.5 times the
    parent's) — a market-wide spike explains the same spike in every queue.
    A part that moved much more is a *hotspot*: hotspots of one dimension
    that carry at least half the parent's excess explain the parent — a
    vendor's drop explains the market's smaller drop. Between overlapping
    segments of different dimensions, A explains B when A's excess over B's
    days, times the share of A's decisions that lie in B, is at least half of
    B's excess and more than B explains A. Explained alerts are listed in the
    explaining alert's ``related`` (between identical populations the earlier
    dimension of :data:`SCAN_DIMENSIONS` is kept). On one segment,
    ``sla_compliance`` explains response percentiles (views of the same
    response times); accuracy and its error rates stay separate alerts, since
    each error type has its own remedy.

    Severity: ``high`` when ``p_adjusted <= fdr/100`` and the effect is large
    (rates: >= 5 points or >= 50% relative to the rarer outcome; counts and
    times: >= 50%), ``medium`` when ``p_adjusted <= fdr/10`` and the effect is
    >= 2 points / 20%, else ``low``. Alerts below :data:`MIN_EFFECT` are
    dropped however significant.

    Young baselines. Days with fewer than ``baseline_days`` of history (the
    first weeks of a dataset, and every day of a segment that has fewer than
    7 days of data in the full period's baseline: a new vendor, queue or
    model version) are judged one by one against the up to
    ``baseline_days`` days with data before them, from 7 on (so from the 8th
    day); masked days are left out of the history. The history is screened
    first: points more than 3.5 robust SDs (MAD/0.6745) from its median are
    dropped when a prediction t-test against the other points confirms them
    at p < 0.001/h (the MAD of a handful of points is too noisy to trim on
    alone). Counts and times (log scale): the exact small-sample prediction
    test :math:`t = (y_t - \bar y_h)/(s_h\\sqrt{1+1/h})`, Student's t with
    ``h - 1`` d.f., ``s_h`` floored at the series' sampling noise
    (Poisson, or the percentile's). Rates: the day against the pooled
    history :math:`\bar p = \\sum k/\\sum n` by Fisher's exact test (pooled
    z when every cell is large), which accounts for the history's size;
    when the history is overdispersed (Pearson
    :math:`\\hat\\phi = \\sum z_i^2/(h-1) > 1`) the z is divided by
    :math:`\\sqrt{\\hat\\phi}` and read as Student's t with ``h - 1`` d.f.
    Only days with ``n >= min_n`` (rates), and series whose median daily
    ``n`` reaches ``min_n`` (counts and times), are judged. Each judged day
    is one test; a series pays for the search over its days by Bonferroni
    (p x days judged). Flagged days of one series and direction that touch
    form one event, as above, and Benjamini-Hochberg runs over these events
    plus one null test per other series the rule judged: the young days are
    their own family, so the full period's alerts and adjusted p-values do
    not depend on how much history precedes it (each family has FDR at most
    ``fdr``, the union at most twice that). Such alerts have detector and
    ``note`` ``young_baseline``; MIN_EFFECT and the severity rules apply.
    Simulated null rejection rates at 1%/5%: normal days 1.0-1.3%/4.6-5.3%
    for h = 7..27; Poisson counts and binomial rates are conservative
    (``tests/test_detect_young.py``; false alarms and detection over many
    seeds in ``benchmarks/results/young_eval.md``).

    Segments that stop. A segment (any dimension but the market) whose last
    day with decisions is before the end of the scan stopped when it had
    decisions on 80% of the 14 days before and no decisions at all on the
    rest is implausible had it kept its share of its dimension's volume
    (Poisson, Bonferroni over the segments examined, at most ``fdr``); a last
    day with less than half its median volume is the (partial) day it
    stopped. From that day its series have no data (not zeros), so no
    detector alerts on it. The stop is annotated, not alerted, when an event
    of the dimension's kind (:data:`STOP_EVENT_KINDS`: ``model_release`` for
    ``ai_model``, ``vendor_offboarding`` for ``vendor``, ``queue_retired``
    for ``queue``; market or ``*``) is effective within 2 days of it and its
    description names the segment, or names none of the dimension's other
    segments that existed before (a release may name the model it brings);
    an event of any of these kinds that names the segment also explains it.
    A stop that lies inside another stop of the same day (95% of its
    decisions, e.g. a vendor's site) is covered by that one. Any other stop
    raises exactly one ``low`` alert: metric ``volume``, detector
    ``segment_stopped``, note ``segment stopped: ...``, from the day it
    stopped to the end of the scan, expected = its share of the
    dimension's daily volume.

    Re-baselined series (``rebaseline``, e.g. an alert labelled
    ``new_normal``). Such a series is judged as if its data began on its
    date: the days before it are treated as days without data, so they are
    in no reference, and the series is judged like a segment that starts
    that day. When at least 7 days of the full period's baseline lie on or
    after the date, the full detectors judge the period against those days
    (and, in a whole-range scan, the young rule the baseline days from the
    8th day after the date); otherwise the young-baseline rule judges it
    from the 8th day after the date, each day against the up to
    ``baseline_days`` days since (fewer than 8 days since: not judged, listed
    in ``attrs["skipped"]``). So a level that became the new normal on the
    date stops alerting, and a further shift after it is judged against
    that level. Windows that end before the date are dropped (none can
    hold data), and a ``segment_stopped`` alert is not raised when the
    segment stopped before its ``volume`` series was re-baselined. The
    series' tests stay in the run's Benjamini-Hochberg family.
    ``reporting_gap`` is tested against zero, not a baseline: a re-baseline
    only drops its windows before the date. A date before the first day
    loaded changes nothing; one after the end leaves the series unjudged.

    Examples
    --------
    >>> from qualitylab import open_dataset
    >>> ds = open_dataset("data/demo")  # doctest: +SKIP
    >>> alerts = scan(ds, "SG")  # doctest: +SKIP
    >>> write_alerts(alerts, "out/SG/alerts.csv")  # doctest: +SKIP
    """
    from qualitylab.measure.metrics import GRAINS

    mp = ds.params.market(market)
    dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    allowed_dims = [g for g in GRAINS if g not in ("date", "week", "month", "moderator_id")]
    for d in dims:
        if d not in allowed_dims:
            raise ParameterError(
                MSG_UNKNOWN_DIMENSION.format(dim=d, allowed=", ".join(allowed_dims)),
                key="dimensions",
            )
    wanted = list(SCAN_METRICS) if metrics is None else list(metrics)
    for m in wanted:
        if m not in SCAN_METRICS:
            raise ParameterError(
                MSG_UNKNOWN_METRIC.format(metric=m, allowed=", ".join(SCAN_METRICS)), key="metrics"
            )
    if not isinstance(baseline_days, int) or baseline_days < 7:
        raise ParameterError(
            MSG_RANGE.format(name="baseline_days", interval="integers >= 7", value=baseline_days),
            key="baseline_days",
        )
    q = SENSITIVITY_FDR[mp.alert_sensitivity] if fdr is None else fdr
    if not 0 < q < 1:
        raise ParameterError(MSG_RANGE.format(name="fdr", interval="(0, 1)", value=fdr), key="fdr")
    rebase = _check_rebaseline(rebaseline)
    if hasattr(ds, "for_market"):
        ds = ds.for_market(market)  # dozens of queries follow: slice the market once
    rng = _resolve_dates(ds, market, start, end, baseline_days)
    base_start, start_d, end_d = rng.base_start, rng.start, rng.end
    if rng.days < _YOUNG_MIN_HISTORY + 1:
        reason = (
            f"market {market}: only {rng.days} day(s) of data ({base_start}..{end_d}); a scan "
            f"needs {_YOUNG_MIN_HISTORY + 1} (a day judged against {_YOUNG_MIN_HISTORY} days "
            "of history)"
        )
        warnings.warn(reason, stacklevel=2)
        out = _empty_alerts(rng, q, baseline_days, reason)
        records = _rebaseline_records(rebase, dict.fromkeys(rebase, "none"), {}, market, rng)
        for r in records:
            r["note"] = "not judged: the scan is empty (see alerts.attrs['note'])"
        out.attrs["rebaselined"] = records
        return out
    dates = pd.date_range(pd.Timestamp(base_start), pd.Timestamp(end_d), freq="D")
    masked = _mask_dates(ds, market, mp.timezone, mask_events)
    ctx = _Context(
        market=market,
        dates=dates,
        base_len=min((start_d - base_start).days, len(dates)),
        mask=np.asarray(dates.isin(list(masked)), dtype=bool),
        min_n=int(min_n if min_n is not None else mp.min_n),
        fdr=float(q),
        first_scan=(rng.first_alert - base_start).days,
        window=baseline_days,
    )
    full = ctx.monitored_days > 0
    # re-baselined series: index of the first day of their history (len(dates): none in range)
    since_at = {k: min(max((d - base_start).days, 0), len(dates)) for k, d in rebase.items()}
    rb_rule: dict[tuple[str, str, str], str] = {}  # how each re-baselined series was judged
    rb_dropped: dict[tuple[str, str, str], int] = {}  # its windows that ended before the date
    # the period whose decisions define segment sizes and overlaps (as before: the full one)
    p0, p1 = (start_d, end_d) if full else (base_start, end_d)
    daily = set(wanted) - {"reporting_gap", "red_team_recall"}
    windows: list[_Window] = []
    young: list[_Window] = []
    quiet = quiet_young = young_days = young_series = 0
    volumes: dict[tuple[str, str], float] = {}
    notes: set[str] = set()
    # Who overlaps whom (for grouping), and dimensions that merely repeat the market.
    sub_dims = [d for d in dims if d != "market"]
    cube = _overlap_counts(ds, market, p0, p1, sub_dims) if sub_dims else None
    stacked_dims = []
    for dim in dims if daily else []:
        if cube is not None and "market" in dims and dim != "market":
            segments = cube.loc[cube[dim] != "nan", dim].unique()
            if len(segments) == 1:
                notes.add(f"{dim} has one segment ({segments[0]}), the same as the market")
                continue
        stacked_dims.append(dim)
    loads: list[tuple[str, pd.DataFrame, list[str]]] = []
    if stacked_dims:
        with warnings.catch_warnings():
            # a segment-day without positives has undefined AI rates: expected, not news
            warnings.filterwarnings(
                "ignore", message=r".* is undefined for ", category=RuntimeWarning
            )
            loaded = _load_dimensions(ds, market, stacked_dims, base_start, end_d, daily)
        loads = [(d, *loaded[d]) for d in stacked_dims]
    if "red_team_recall" in wanted and ds.has("red_team"):
        # red-team items are not decisions: their own dimension, the attack
        loads.append(("attack", _daily_red_team(ds, market, base_start, end_d), []))
    # Segments that stopped: found on the daily volume before any series is judged
    seg_volume: dict[str, pd.DataFrame] = {}
    for dim, long, _ in loads:
        if dim in ("market", "attack") or "volume" not in daily:
            continue
        v = long[long["date"].isin(dates)].drop_duplicates(["segment", "date"])
        seg_volume[dim] = v.pivot(index="segment", columns="date", values="volume_day").reindex(
            columns=dates
        )
    stops = _find_stops(seg_volume, ctx)
    events = ds.table("events").to_pandas() if ds.has("events") else None
    _match_stop_events(stops, events, ctx, mp.timezone, seg_volume)
    _cover_stops(stops, ds, ctx, base_start, end_d)
    stopped_at = {(st.dimension, st.segment): st.start for st in stops}
    for dim, long, dim_notes in loads:
        notes.update(dim_notes)
        # one (metric, segment) x day grid per column, instead of a reindex per series
        long = long[long["date"].isin(dates)].drop_duplicates(["metric", "segment", "date"])
        grids = {
            c: long.pivot(index=["metric", "segment"], columns="date", values=c)
            .reindex(columns=dates)
            .sort_index()
            for c in ("value", "n", "volume_day", "dispersion")
        }
        values = grids["value"].to_numpy(float)
        ns = grids["n"].to_numpy(float)
        vols = grids["volume_day"].to_numpy(float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN dispersion rows
            disps = np.nanmedian(grids["dispersion"].to_numpy(float), axis=1)
        for i, (metric, seg) in enumerate(grids["value"].index):
            s = _Series(str(metric), dim, str(seg), values[i].copy(), ns[i].copy(), vols[i].copy())
            if metric == "volume":
                s.n = np.where(np.isfinite(s.n), s.n, 0.0)
            s.stop = stopped_at.get((dim, str(seg)))
            if s.stop is not None:
                s.value[s.stop :] = np.nan
                s.n[s.stop :] = 0.0 if metric == "volume" else np.nan
            key = (s.metric, dim, s.segment)
            if key in since_at:  # judged as if its history began on the re-baseline date
                s.since = since_at[key]
                s.value[: s.since] = np.nan
                s.n[: s.since] = 0.0 if metric == "volume" else np.nan
            s.floor = _noise_floor(s, float(disps[i]))
            lo = ctx.base_len if full else 0
            volumes[(dim, str(seg))] = float(np.nansum(s.volume[lo:]))
            late = not full or _reference_days(s, ctx) < _YOUNG_MIN_HISTORY
            if not late:
                # the full-baseline detectors judge the period; young days before it too
                y_found, y_days, _ = _young_windows(s, ctx, late=False)
                found = _evaluate(s, ctx)
            else:
                # a segment with no baseline yet (or a dataset shorter than one): judged
                # from its own first day against the history it has
                y_found, y_days, why = _young_windows(s, ctx, late=True)
                found = None
                if not y_days and why is not None:
                    ctx.skip(s.metric, s.dimension, s.segment, *why)
            if key in since_at:
                y_found, found = _after_rebaseline(y_found, found, s.since, rb_dropped, key)
                rb_rule[key] = "full" if found is not None else "young" if y_days else "none"
            young.extend(y_found)
            young_days += y_days
            young_series += bool(y_days)
            if y_days and not y_found:
                quiet_young += 1
            if found is None:
                continue
            windows.extend(found)
            if not found:
                quiet += 1
    if "reporting_gap" in wanted and full:
        if "vendor" in dims and ds.has("vendor_reported"):
            try:
                gap_w, tested = _gap_windows(ds, ctx, start_d, end_d)
            except QualityLabError as exc:
                notes.add(f"reporting_gap skipped: {exc}")
            else:
                # the gap is tested against zero, not a baseline: a re-baseline only
                # drops its windows before the date
                keep = []
                for w in gap_w:
                    key = ("reporting_gap", "vendor", w.series.segment)
                    if key in since_at:
                        rb_rule[key] = "full"
                    if w.end >= since_at.get(key, 0):
                        keep.append(w)
                    else:
                        rb_dropped[key] = rb_dropped.get(key, 0) + 1
                gap_w = keep
                for w in gap_w:
                    w.series.volume = np.full(len(dates), np.nan)
                    vol = volumes.get(("vendor", w.series.segment))
                    if vol is not None:
                        w.series.volume[ctx.base_len :] = vol / max(ctx.monitored_days, 1)
                windows.extend(gap_w)
                quiet += max(tested - len({(w.series.segment, w.kpi) for w in gap_w}), 0)
        elif metrics is not None:
            notes.add("reporting_gap needs the vendor_reported table and the vendor dimension")
    # One hypothesis per event (overlapping windows of a series proposed by several
    # detectors); each window's p-value already pays for the search over windows.
    # Windows that cannot pass on their own (p > fdr), or whose own deviation is
    # below MIN_EFFECT (too small to report), are still counted as tests but do
    # not join events: a small level shift next to a spike would otherwise
    # dilute the spike's summary below MIN_EFFECT and lose it.
    significant = _benjamini_hochberg(windows, quiet, q)
    # The young-baseline days are their own family (see Notes): same procedure, with
    # each series' days paid for by Bonferroni instead of the window search.
    significant_young = _benjamini_hochberg(young, quiet_young, q)
    alerts = [a for a in _merge(significant, ctx) if _large_enough(a)]
    alerts += [a for a in _merge(significant_young, ctx) if _large_enough(a)]
    stop_alerts = []
    for st in stops:
        key = ("volume", st.dimension, st.segment)
        if key in since_at and since_at[key] > st.last_active:
            # no data since its re-baseline: the stop is the level it was re-baselined to
            st.rebaselined = rebase[key].isoformat()
            rb_rule.setdefault(key, "none")
        if not st.event and not st.covered_by and not st.rebaselined:
            stop_alerts.append(_stop_alert(st, ctx, seg_volume[st.dimension]))
    alerts += stop_alerts
    market_volume = volumes.get(("market", market), max(volumes.values(), default=1.0))
    for a in alerts:
        a["impact"] = _impact(a)
        a["severity"] = "low" if a["detector"] == _STOPPED else _severity(a, q)
        a["segment_volume"] = volumes.get((a["dimension"], a["segment"]), 0.0)
        a["market_volume"] = market_volume
    primaries = _group(alerts, ds, market, p0, p1, cube)
    for a in primaries:
        a["events"] = (
            " | ".join(
                nearby_events(
                    events,
                    a["start_date"],
                    end=a["end_date"],
                    market=market,
                    timezone=mp.timezone,
                    policy=a["segment"] if a["dimension"] == "policy" else None,
                )
            )
            if events is not None
            else ""
        )
    out = pd.DataFrame(primaries, columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    out = out.sort_values(["impact", "p_value"], ascending=[False, True], kind="stable")
    out = out.reset_index(drop=True)
    if len(out):
        out["group_id"] = np.arange(1, len(out) + 1)
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c])
    skipped = pd.DataFrame(ctx.skipped, columns=SKIPPED_COLUMNS)
    # Records, not a DataFrame: pandas compares attrs when concatenating, and a
    # frame there would break pd.concat of several markets' alerts.
    _scan_attrs(out, rng, q, baseline_days, ctx)
    out.attrs["skipped"] = skipped.to_dict("records")
    out.attrs["stopped"] = [_stop_record(st, ctx) for st in stops]
    out.attrs["young"] = {"series": young_series, "days_judged": young_days}
    out.attrs["rebaselined"] = _rebaseline_records(rebase, rb_rule, rb_dropped, market, rng)
    unknown = sum(r["rule"] == "unknown" for r in out.attrs["rebaselined"])
    if unknown:
        notes.add(
            f"{unknown} re-baselined series not in this scan, ignored "
            "(see alerts.attrs['rebaselined'])"
        )
    if len(skipped) or notes:
        parts = []
        if len(skipped):
            parts.append(
                f"{len(skipped)} series too small to judge were skipped "
                f"(see alerts.attrs['skipped'])"
            )
        parts += sorted(notes)
        warnings.warn(f"scan {market}: " + "; ".join(parts), stacklevel=2)
    return out


def _benjamini_hochberg(windows: list[_Window], quiet: int, q: float) -> list[list[_Window]]:
    """Events (clusters of windows) significant at FDR ``q`` among events and quiet series."""
    events = _cluster([w for w in windows if w.p_value <= q and _window_large_enough(w)])
    untested = max(len(_cluster(windows)) - len(events), 0)
    significant = []
    if events:
        from qualitylab.measure.stats import adjust_pvalues

        p = np.r_[[min(w.p_value for w in e) for e in events], np.ones(quiet + untested)]
        adj = adjust_pvalues(p, method="fdr_bh")
        for e, pa in zip(events, adj[: len(events)], strict=True):
            for w in e:
                w.p_adjusted = float(pa)
            if pa <= q:
                significant.append(e)
    return significant


def _check_rebaseline(rebaseline: Any) -> dict[tuple[str, str, str], date]:
    """``scan``'s ``rebaseline`` as ``{(metric, dimension, segment): date}``, validated."""
    if rebaseline is None:
        return {}
    if not isinstance(rebaseline, Mapping):
        raise ParameterError(
            "rebaseline must be a mapping {(metric, dimension, segment): date}; "
            f"got {type(rebaseline).__name__}",
            key="rebaseline",
        )
    out: dict[tuple[str, str, str], date] = {}
    for key, value in rebaseline.items():
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise ParameterError(MSG_REBASELINE_KEY.format(key=key), key="rebaseline")
        day: date | None = None
        if value is pd.NaT:  # a datetime subclass, but no date
            day = None
        elif isinstance(value, datetime):  # pandas Timestamps too
            day = value.date()
        elif isinstance(value, date):
            day = value
        elif isinstance(value, str):
            try:
                day = date.fromisoformat(value.strip())
            except ValueError:
                day = None
        if day is None:
            raise ParameterError(MSG_REBASELINE_DATE.format(key=key, value=value), key="rebaseline")
        out[key] = day
    return out


def _after_rebaseline(
    young: list[_Window],
    found: list[_Window] | None,
    since: int,
    dropped: dict[tuple[str, str, str], int],
    key: tuple[str, str, str],
) -> tuple[list[_Window], list[_Window] | None]:
    """Windows of a re-baselined series that reach its date (none lies wholly before it)."""
    before = [w for w in [*young, *(found or [])] if w.end < since]
    if before:
        dropped[key] = dropped.get(key, 0) + len(before)
        young = [w for w in young if w.end >= since]
        found = None if found is None else [w for w in found if w.end >= since]
    return young, found


def _rebaseline_records(
    rebase: dict[tuple[str, str, str], date],
    rules: dict[tuple[str, str, str], str],
    dropped: dict[tuple[str, str, str], int],
    market: str,
    rng: _Range,
) -> list[dict[str, Any]]:
    """``alerts.attrs["rebaselined"]``: one record per key (:data:`REBASELINED_COLUMNS`)."""
    what = {
        "full": "judged by the full-baseline detectors against the days since",
        "young": "judged by the young-baseline rule (under 7 baseline days since)",
        "none": "not judged: too little data since (see alerts.attrs['skipped'])",
    }
    records = []
    for key, day in rebase.items():
        rule = rules.get(key, "unknown")
        if rule == "unknown":
            note = "no such series in this scan: ignored"
        elif key[0] == "reporting_gap":
            note = "reporting_gap is tested against zero, not a baseline: windows before dropped"
        elif day > rng.end:
            note = f"from after the scan's end ({rng.end}): no data since, not judged"
        elif day <= rng.base_start:
            note = f"from on or before the first day loaded ({rng.base_start}): nothing dropped"
        else:
            note = f"days before it left out; {what[rule]}"
        if dropped.get(key):
            note += f"; {dropped[key]} window(s) before the date dropped"
        records.append(
            {
                "market": market,
                "metric": key[0],
                "dimension": key[1],
                "segment": key[2],
                "from": day.isoformat(),
                "days": max((rng.end - day).days + 1, 0),
                "rule": rule,
                "note": note,
            }
        )
    return records


def _reference_days(s: _Series, ctx: _Context) -> int:
    """Days with data in the full period's baseline (outside masked days)."""
    base = ctx.base_len
    has = np.isfinite(s.value) & (np.nan_to_num(s.n) > 0)
    return int((has[:base] & ~ctx.mask[:base]).sum())


def _stop_record(st: _Stop, ctx: _Context) -> dict[str, Any]:
    if st.event:
        note = f"segment stopped at a known event: {st.event}"
    elif st.covered_by:
        note = f"segment stopped with {st.covered_by}"
    else:
        note = "segment stopped: no event recorded (alerted)"
    if st.covered_by and st.event:
        note = f"segment stopped with {st.covered_by} at a known event: {st.event}"
    if st.rebaselined and not st.event and not st.covered_by:
        note = f"segment stopped before its volume was re-baselined on {st.rebaselined}"
    return {
        "market": ctx.market,
        "dimension": st.dimension,
        "segment": st.segment,
        "last_active": ctx.dates[st.last_active].date().isoformat(),
        "stopped_from": ctx.dates[st.start].date().isoformat(),
        "expected_daily": round(st.expected, 3),
        "p_value": st.p_value,
        "event": st.event,
        "covered_by": st.covered_by,
        "alerted": not st.event and not st.covered_by and not st.rebaselined,
        "note": note,
    }


def _iso(d: date | None) -> str | None:
    return None if d is None else d.isoformat()


def _scan_attrs(
    out: pd.DataFrame, rng: _Range, q: float, baseline_days: int, ctx: _Context | None
) -> None:
    """The dates a scan covered, as plain values (see :func:`scan`, Returns)."""
    first = rng.first_alert
    young_from = (
        max(rng.base_start + timedelta(days=_YOUNG_MIN_HISTORY), first) if rng.young else None
    )
    young_to = min(rng.start - timedelta(days=1), rng.end) if rng.young else None
    if young_from is not None and young_to is not None and young_from > young_to:
        young_from = young_to = None
    full_on = rng.start <= rng.end
    out.attrs["fdr"] = q
    out.attrs["period"] = (first, rng.end)
    out.attrs["baseline"] = (rng.base_start, min(rng.start - timedelta(days=1), rng.end))
    out.attrs["scanned"] = {
        "start": _iso(first),
        "end": _iso(rng.end),
        "data_start": _iso(rng.data_start),
        "data_end": _iso(rng.data_end),
        "young_start": _iso(young_from),
        "young_end": _iso(young_to),
        "full_start": _iso(rng.start) if full_on else None,
        "full_end": _iso(rng.end) if full_on else None,
        "baseline_days": int(baseline_days),
    }


def _empty_alerts(rng: _Range, q: float, baseline_days: int, reason: str) -> pd.DataFrame:
    out = pd.DataFrame(columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c])
    _scan_attrs(out, rng, q, baseline_days, None)
    out.attrs["skipped"] = []
    out.attrs["stopped"] = []
    out.attrs["young"] = {"series": 0, "days_judged": 0}
    out.attrs["note"] = reason
    return out


def skipped_series(alerts: pd.DataFrame) -> pd.DataFrame:
    """The series a scan skipped as too small to judge, as a tidy table.

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan`.

    Returns
    -------
    pandas.DataFrame
        :data:`SKIPPED_COLUMNS`, one row per skipped series (empty when the
        frame carries no scan metadata, e.g. after ``pd.concat``).

    Examples
    --------
    >>> skipped_series(pd.DataFrame(columns=ALERT_COLUMNS)).columns.tolist()
    ['market', 'metric', 'dimension', 'segment', 'reason', 'n', 'days']
    """
    return pd.DataFrame(alerts.attrs.get("skipped", []), columns=SKIPPED_COLUMNS)


def rebaselined_series(alerts: pd.DataFrame) -> pd.DataFrame:
    """The series a scan re-baselined (its ``rebaseline`` argument), as a tidy table.

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan`.

    Returns
    -------
    pandas.DataFrame
        :data:`REBASELINED_COLUMNS`, one row per key of ``rebaseline``:
        ``from`` (the date, ISO), ``days`` (days from it to the end of the
        scan), ``rule`` (``"full"``, ``"young"``, ``"none"``: not judged, or
        ``"unknown"``: no such series, ignored) and ``note``. Empty when the
        scan had no ``rebaseline`` or the frame carries no scan metadata.

    Examples
    --------
    >>> rebaselined_series(pd.DataFrame(columns=ALERT_COLUMNS)).columns.tolist()
    ['market', 'metric', 'dimension', 'segment', 'from', 'days', 'rule', 'note']
    """
    return pd.DataFrame(alerts.attrs.get("rebaselined", []), columns=REBASELINED_COLUMNS)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_alerts(alerts: pd.DataFrame, path: str | Path) -> Path:
    """Write alerts as ``alerts.csv`` (contract columns first, ISO dates).

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan` (extra columns are kept after the contract).
    path : str or path
        File to write; parent folders are created.

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    Text cells that a spreadsheet would run as a formula (starting with
    ``= + - @``, tab or carriage return) are prefixed with ``'``, since segment
    names and event descriptions come from data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> empty = pd.DataFrame(columns=ALERT_COLUMNS)
    >>> p = write_alerts(empty, pathlib.Path(tempfile.mkdtemp()) / "alerts.csv")
    >>> p.read_text().strip() == ",".join(ALERT_COLUMNS)
    True
    """
    missing = [c for c in ALERT_COLUMNS if c not in alerts.columns]
    if missing:
        raise ParameterError(
            f"alerts lacks contract column(s) {missing}; expected {', '.join(ALERT_COLUMNS)}",
            key="alerts",
        )
    out = alerts[[*ALERT_COLUMNS, *[c for c in alerts.columns if c not in ALERT_COLUMNS]]].copy()
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False)
    return target
