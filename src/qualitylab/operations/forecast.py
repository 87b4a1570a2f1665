"""Arrivals forecasting: items entering each queue per market-local hour.

The engine counts arrivals per queue x market-local date x hour in one
``group_by``; each queue's hourly series is then modelled in statsmodels on
that small aggregate (a few thousand numbers per queue):

* **Model** — a Poisson log-linear model (GLM) with a level, a trend,
  hour-of-day effects (daily season) and day-of-week effects (weekly season),
  fitted to the last ``history_days``. The forecast holds the level where the
  trend puts it at the end of the history (the trend is not extrapolated, so a
  launch or a spike in the history cannot run away over the horizon).
* **Prediction intervals** — quantiles of a negative binomial whose mean is the
  forecast and whose variance ``mu + alpha_eff mu^2`` adds the over-dispersion
  of the history (moment estimate of ``alpha``) and the uncertainty of the
  fitted mean (``exp(se^2) - 1`` from the coefficients' covariance). Counts are
  integers, so a low-volume queue's intervals cover more than nominal.
* **Masking** — hours hit by events of ``mask_kinds`` (an outage routes every
  item to people; a launch moves volume) are left out of the fit, i.e. treated
  as missing; the seasonal-naive baseline imputes them from the same hour a
  week earlier.
* **Backtest** — :func:`backtest` holds out the last ``test_days`` and scores
  the model against the seasonal-naive baseline (the same hour a week earlier)
  with MASE (scaled by the in-sample seasonal-naive error, season 168 hours)
  and the coverage of the prediction intervals.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats as sps

from qualitylab.data.localtime import local_hour, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.metrics import Period, decisions_in_period, resolve_period

try:  # optional (installed with scikit-learn): small fits run fastest on one BLAS thread
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None

__all__ = [
    "ARRIVALS_COLUMNS",
    "BACKTEST_COLUMNS",
    "FORECAST_COLUMNS",
    "HUMAN_ROUTINGS",
    "MODEL_METHOD",
    "NAIVE_METHOD",
    "SEASON_HOURS",
    "backtest",
    "forecast_arrivals",
    "hourly_arrivals",
]

#: Hours in the weekly season of the hourly series.
SEASON_HOURS = 168
#: Routings whose items a moderator handles (``ai_auto`` items never reach one).
HUMAN_ROUTINGS = ("human", "ai_assisted")
#: Columns of :func:`hourly_arrivals`.
ARRIVALS_COLUMNS = ["market", "queue", "date", "hour", "arrivals", "masked"]
#: Columns of :func:`forecast_arrivals`.
FORECAST_COLUMNS = [
    "market",
    "queue",
    "date",
    "hour",
    "arrivals",
    "lower",
    "upper",
    "is_forecast",
    "masked",
]
#: Columns of :func:`backtest`.
BACKTEST_COLUMNS = ["market", "queue", "method", "mase", "mae", "coverage", "n"]
#: Method names in :func:`backtest`.
MODEL_METHOD = "seasonal_glm"
NAIVE_METHOD = "seasonal_naive"

MIN_HISTORY_DAYS = 14
MSG_INTEGER = "{name} must be an integer >= {low}; got {value!r}"
MSG_INTERVAL = "interval must be strictly between 0 and 1; got {value!r}"
MSG_HISTORY = (
    "the forecast needs at least {need} days of history for market {market!r}; "
    "the data has {have} days from {start} to {end}"
)

_TREND_UNIT_HOURS = 28 * 24  # the trend coefficient is per four weeks
_MAX_SE2 = 5.0  # caps the parameter-uncertainty term of a near-empty level


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ParameterError(MSG_INTEGER.format(name=name, low=low, value=value), key=name)
    return int(value)


def _check_interval(value: object) -> float:
    try:
        ok = 0.0 < float(value) < 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_INTERVAL.format(value=value), key="interval")
    return float(value)  # type: ignore[arg-type]


def _as_date(value: date | str | None, name: str) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(
            f"{name} is not an ISO date (YYYY-MM-DD): {value!r}", key=name
        ) from None


# --------------------------------------------------------------------------- #
# engine: hourly counts
# --------------------------------------------------------------------------- #
def hourly_arrivals(
    ds: Dataset,
    market: str,
    *,
    start: date | str | None = None,
    end: date | str | None = None,
    queues: Sequence[str] | None = None,
    routing: Sequence[str] | None = None,
    mask_kinds: Sequence[str] = ("outage",),
    mask_hours: int | None = None,
) -> pd.DataFrame:
    """Items entering each queue per market-local date and hour, zeros included.

    Parameters
    ----------
    ds : Dataset
    market : str
        Market code; its time zone defines dates and hours.
    start, end : date or ISO string, optional
        Market-local dates, inclusive; default to the data's range.
    queues : sequence of str, optional
        Queues to keep; by default every queue with an arrival in the period.
    routing : sequence of str, optional
        Keep items of these routings only, e.g. :data:`HUMAN_ROUTINGS` for the
        items moderators handle; all items by default.
    mask_kinds : sequence of str, default ("outage",)
        Event kinds (``events.kind``) whose hours are flagged ``masked``.
    mask_hours : int, optional
        Hours masked from an event's ``effective_at``; by default to the end of
        its market-local day.

    Returns
    -------
    pandas.DataFrame
        ``market, queue, date, hour, arrivals, masked``: one row per queue x
        date x hour (0-23) of the period, ``arrivals`` 0 where nothing came.

    Notes
    -----
    One engine query: ``group_by(queue, date, hour).count()`` on the
    decisions created in the period, with the market-local hour computed by
    :func:`qualitylab.localtime.local_hour`. On a daylight-saving day the
    skipped local hour reads 0 and the repeated one holds two hours' items.
    """
    period = resolve_period(ds, market=market, start=start, end=end)
    return _hourly(ds, market, period, queues, routing, mask_kinds, mask_hours)


def _hourly(
    ds: Dataset,
    market: str,
    period: Period,
    queues: Sequence[str] | None,
    routing: Sequence[str] | None,
    mask_kinds: Sequence[str],
    mask_hours: int | None,
) -> pd.DataFrame:
    tz = ds.params.market(market).timezone
    dec = decisions_in_period(ds, market=market, period=period)
    if routing is not None:
        dec = dec.filter(dec.routing.isin(list(routing)))
    if queues is not None:
        dec = dec.filter(dec.queue.isin(list(queues)))
    lo, hi = period_bounds_utc(period.start, period.end, tz)
    dec = dec.mutate(
        hour=local_hour(
            dec.created_at, tz, start=lo - timedelta(days=2), end=hi + timedelta(days=2)
        )
    )
    agg = dec.group_by(["queue", "date", "hour"]).aggregate(arrivals=dec.count()).to_pandas()
    names = sorted(set(agg["queue"])) if queues is None else list(dict.fromkeys(queues))
    dates = pd.date_range(period.start, period.end, freq="D").astype("datetime64[s]")
    grid = pd.MultiIndex.from_product([names, dates, range(24)], names=["queue", "date", "hour"])
    agg["date"] = pd.to_datetime(agg["date"]).astype("datetime64[s]")
    agg["hour"] = agg["hour"].astype("int64")
    counts = agg.set_index(["queue", "date", "hour"])["arrivals"]
    out = counts.reindex(grid, fill_value=0).astype("float64").reset_index()
    out.insert(0, "market", market)
    masked = _event_mask(ds, market, tz, period, mask_kinds, mask_hours)
    key = out["date"] + pd.to_timedelta(out["hour"], unit="h")
    out["masked"] = key.isin(masked) if len(masked) else False
    out["hour"] = out["hour"].astype("int64")
    return out[ARRIVALS_COLUMNS]


def _event_mask(
    ds: Dataset,
    market: str,
    tz: str,
    period: Period,
    kinds: Sequence[str],
    mask_hours: int | None,
) -> pd.DatetimeIndex:
    """Market-local hour starts (naive) covered by events of ``kinds``."""
    if not kinds or not ds.has("events"):
        return pd.DatetimeIndex([])
    if mask_hours is not None:
        _check_int(mask_hours, "mask_hours", 1)
    ev = ds.table("events")
    lo, hi = period_bounds_utc(period.start, period.end, tz)
    ev = ev.filter(
        ev.kind.isin(list(kinds))
        & ev.market.isin([market, "*"])
        & (ev.effective_at >= lo - timedelta(days=1))
        & (ev.effective_at < hi)
    )
    rows = ev.select("effective_at").to_pandas()
    hours: list[pd.DatetimeIndex] = []
    for ts in pd.to_datetime(rows["effective_at"], utc=True):
        local = ts.tz_convert(tz).tz_localize(None)
        first = local.floor("h")
        stop = (
            first + pd.Timedelta(hours=mask_hours)
            if mask_hours is not None
            else local.normalize() + pd.Timedelta(days=1)
        )
        hours.append(pd.date_range(first, stop, freq="h", inclusive="left"))
    if not hours:
        return pd.DatetimeIndex([])
    return pd.DatetimeIndex(np.unique(np.concatenate([h.to_numpy() for h in hours])))


# --------------------------------------------------------------------------- #
# statistics on one series
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Fit:
    """A fitted seasonal Poisson model of one hourly series."""

    params: np.ndarray
    cov: np.ndarray
    hours: np.ndarray  # hour-of-day levels kept (others are structural zeros)
    dows: np.ndarray  # day-of-week levels kept
    alpha: float  # negative-binomial over-dispersion (moment estimate)
    dispersion: float  # Pearson chi2 / residual df
    n: int  # hours used in the fit
    empty: bool  # no arrivals at all: the forecast is zero

    def design(self, hour: np.ndarray, dow: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Design matrix: intercept, trend, hour dummies, day-of-week dummies."""
        hp = {h: i for i, h in enumerate(self.hours[1:])}
        dp = {d: i for i, d in enumerate(self.dows[1:])}
        nh, nd = len(hp), len(dp)
        x = np.zeros((len(hour), 2 + nh + nd))
        x[:, 0] = 1.0
        x[:, 1] = t / _TREND_UNIT_HOURS
        rows = np.arange(len(hour))
        hi = np.array([hp.get(int(h), -1) for h in hour], dtype=np.int64)
        di = np.array([dp.get(int(d), -1) for d in dow], dtype=np.int64)
        x[rows[hi >= 0], 2 + hi[hi >= 0]] = 1.0
        x[rows[di >= 0], 2 + nh + di[di >= 0]] = 1.0
        return x

    def supported(self, hour: np.ndarray, dow: np.ndarray) -> np.ndarray:
        """Rows whose hour and weekday had arrivals in the history."""
        return np.isin(hour, self.hours) & np.isin(dow, self.dows)


def _one_blas_thread() -> AbstractContextManager[object]:
    """Limit BLAS to one thread: a 1,344 x 31 least-squares step gains nothing from
    threads, and on a busy machine OpenBLAS threads spin (100x slower)."""
    if threadpool_limits is None:  # pragma: no cover - depends on the environment
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit_series(y: np.ndarray, hour: np.ndarray, dow: np.ndarray, use: np.ndarray) -> _Fit:
    """Fit the seasonal Poisson GLM to the unmasked hours ``use`` of ``y``.

    ``t`` is measured in hours before the last hour of the history, so the
    intercept is the level at the end of the history.
    """
    n_all = len(y)
    t = np.arange(n_all, dtype=float) - (n_all - 1)
    y_u, h_u, d_u, t_u = y[use], hour[use], dow[use], t[use]
    hours = np.array([h for h in range(24) if y_u[h_u == h].sum() > 0], dtype=np.int64)
    dows = np.array([d for d in range(7) if y_u[d_u == d].sum() > 0], dtype=np.int64)
    if len(hours) == 0 or len(dows) == 0:
        return _Fit(np.zeros(0), np.zeros((0, 0)), hours, dows, 0.0, 1.0, int(use.sum()), True)
    shell = _Fit(np.zeros(0), np.zeros((0, 0)), hours, dows, 0.0, 1.0, 0, False)
    keep = shell.supported(h_u, d_u)
    x = shell.design(h_u[keep], d_u[keep], t_u[keep])
    yk = y_u[keep]
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore")  # near-separation of a rare level is expected
        res = sm.GLM(yk, x, family=sm.families.Poisson()).fit()
    mu = np.asarray(res.fittedvalues, dtype=float)
    df = max(len(yk) - x.shape[1], 1)
    dispersion = float(np.sum((yk - mu) ** 2 / np.maximum(mu, 1e-12)) / df)
    alpha = max(0.0, float(np.sum((yk - mu) ** 2 - yk) / np.sum(mu**2)))
    cov = np.asarray(res.cov_params(), dtype=float)
    return _Fit(
        np.asarray(res.params, dtype=float), cov, hours, dows, alpha, dispersion, len(yk), False
    )


def _predict(
    fit: _Fit, hour: np.ndarray, dow: np.ndarray, interval: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forecast mean and prediction interval at the end-of-history level."""
    n = len(hour)
    mean, lower, upper = np.zeros(n), np.zeros(n), np.zeros(n)
    if fit.empty:
        return mean, lower, upper
    ok = fit.supported(hour, dow)
    x = fit.design(hour[ok], dow[ok], np.zeros(int(ok.sum())))
    eta = x @ fit.params
    se2 = np.minimum(np.einsum("ij,jk,ik->i", x, fit.cov, x), _MAX_SE2)
    mu = np.exp(eta)
    a_eff = fit.alpha + np.expm1(se2)
    lo_q, hi_q = (1 - interval) / 2, (1 + interval) / 2
    lo, hi = _count_quantiles(mu, a_eff, lo_q), _count_quantiles(mu, a_eff, hi_q)
    mean[ok], lower[ok], upper[ok] = mu, lo, hi
    return mean, lower, upper


def _count_quantiles(mu: np.ndarray, alpha: np.ndarray, q: float) -> np.ndarray:
    """Quantile ``q`` of NB2(mean ``mu``, variance ``mu + alpha mu^2``); Poisson at alpha 0."""
    out = np.asarray(sps.poisson.ppf(q, mu), dtype=float)
    nb = alpha > 1e-9
    if nb.any():
        r = 1.0 / alpha[nb]
        out[nb] = sps.nbinom.ppf(q, r, r / (r + mu[nb]))
    return out


def _impute_seasonal(y: np.ndarray, masked: np.ndarray, m: int = SEASON_HOURS) -> np.ndarray:
    """Replace masked hours by the same hour a week earlier (later at the start)."""
    out = y.astype(float).copy()
    bad = masked.copy()
    for i in np.flatnonzero(bad):
        if i >= m and not bad[i - m]:
            out[i] = out[i - m]
            bad[i] = False
    for i in np.flatnonzero(bad)[::-1]:
        j = i + m
        while j < len(out) and bad[j]:
            j += m
        if j < len(out):
            out[i] = out[j]
            bad[i] = False
    return out


def _seasonal_naive(
    y: np.ndarray, masked: np.ndarray, horizon: int, interval: float, m: int = SEASON_HOURS
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Seasonal-naive forecast, its normal interval and the in-sample MAE scale.

    The forecast repeats the last observed week; the interval is
    ``+- z sigma sqrt(k + 1)`` for step ``h`` in week ``k = (h - 1) // m``
    (Hyndman & Athanasopoulos, *Forecasting: Principles and Practice*, 5.5),
    with ``sigma`` the RMS of the in-sample seasonal differences; the lower
    bound is clipped at 0. The MASE scale is the mean absolute in-sample
    seasonal difference over pairs where neither hour is masked.
    """
    filled = _impute_seasonal(y, masked, m)
    diff = filled[m:] - filled[:-m]
    clean = ~(masked[m:] | masked[:-m])
    d = diff[clean] if clean.any() else diff
    scale = float(np.mean(np.abs(d))) if len(d) else float("nan")
    sigma = float(np.sqrt(np.mean(d**2))) if len(d) else float("nan")
    last = filled[-m:]
    steps = np.arange(horizon)
    mean = last[steps % m]
    z = float(sps.norm.ppf((1 + interval) / 2))
    half = z * sigma * np.sqrt(steps // m + 1.0)
    return mean, np.maximum(mean - half, 0.0), mean + half, scale


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #
def _data_period(
    ds: Dataset, market: str, end: date | str | None, days_back: int, need: int
) -> Period:
    """The market-local period ending at ``end`` (default: last day with data)."""
    full = resolve_period(ds, market=market, start=None, end=None)
    last = _as_date(end, "end") or full.end
    first = max(full.start, last - timedelta(days=days_back - 1))
    have = (last - first).days + 1
    if have < need:
        raise QualityLabError(
            MSG_HISTORY.format(need=need, market=market, have=max(have, 0), start=first, end=last)
        )
    return Period(first, last)


def _series_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    y = frame["arrivals"].to_numpy(dtype=float)
    hour = frame["hour"].to_numpy(dtype=np.int64)
    dow = frame["date"].dt.day_of_week.to_numpy(dtype=np.int64)
    masked = frame["masked"].to_numpy(dtype=bool)
    return y, hour, dow, masked


def _future_grid(last: date, horizon_days: int) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    dates = pd.date_range(last + timedelta(days=1), periods=horizon_days, freq="D")
    d = pd.Series(np.repeat(dates.to_numpy(), 24)).astype("datetime64[s]")
    hour = np.tile(np.arange(24, dtype=np.int64), horizon_days)
    return d, hour, d.dt.day_of_week.to_numpy(dtype=np.int64)


def forecast_arrivals(
    ds: Dataset,
    market: str,
    *,
    horizon_days: int = 28,
    queues: Sequence[str] | None = None,
    history_days: int = 56,
    interval: float = 0.8,
    mask_kinds: Sequence[str] = ("outage",),
    mask_hours: int | None = None,
    routing: Sequence[str] | None = None,
    end: date | str | None = None,
) -> pd.DataFrame:
    """Hourly arrivals per queue: the history and a forecast with intervals.

    Parameters
    ----------
    ds : Dataset
    market : str
        Market code; dates and hours are market-local.
    horizon_days : int, default 28
        Days forecast after the history's last day.
    queues : sequence of str, optional
        Queues to forecast; by default every queue with arrivals in the history.
    history_days : int, default 56
        Days of history the model learns from (fewer if the data is shorter;
        at least 14).
    interval : float, default 0.8
        Coverage of the prediction interval (``lower``, ``upper``).
    mask_kinds : sequence of str, default ("outage",)
        Event kinds whose hours are left out of the fit (see
        :func:`hourly_arrivals`); ``()`` masks nothing.
    mask_hours : int, optional
        Hours masked per event; by default to the end of its local day.
    routing : sequence of str, optional
        Count only items of these routings (:data:`HUMAN_ROUTINGS` for the
        moderators' workload); all items by default.
    end : date or ISO string, optional
        Last day of the history; by default the last day with data. Pass it
        when that day is incomplete.

    Returns
    -------
    pandas.DataFrame
        :data:`FORECAST_COLUMNS`: ``market, queue, date, hour, arrivals,
        lower, upper, is_forecast, masked``. History rows hold the actual
        count (``lower``/``upper`` NaN); forecast rows the forecast mean and
        the prediction interval (integer quantiles of the predictive count).

    Raises
    ------
    QualityLabError
        If the market has fewer than 14 days of data up to ``end``.
    ParameterError
        If an argument is out of range.

    Notes
    -----
    Per queue, ``log E[y_t] = level + trend * t + hour_of_day + day_of_week``
    is fitted by Poisson maximum likelihood (statsmodels ``GLM``) to the
    unmasked hours, ``t`` counted back from the last hour of the history. The
    forecast keeps the trend's end-of-history level flat over the horizon. An
    hour of day or weekday with no arrivals in the history is forecast as 0.
    Intervals are negative-binomial quantiles with
    ``alpha_eff = alpha + exp(se^2) - 1`` (see the module docstring). The
    daily and weekly seasons multiply: a full hour-of-week model (168 levels,
    eight observations each in eight weeks) was less accurate on the demo
    data's backtests, and an hour-of-day x weekend interaction no better.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=28, seed=1)
    >>> fc = forecast_arrivals(open_dataset(folder), "SG", horizon_days=7, history_days=28)
    >>> fc.groupby("is_forecast").size().to_dict()
    {False: 2688, True: 672}
    >>> future = fc[fc["is_forecast"]]
    >>> bool((future["lower"] <= future["upper"]).all())
    True
    """
    horizon_days = _check_int(horizon_days, "horizon_days", 1)
    history_days = _check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    interval = _check_interval(interval)
    period = _data_period(ds, market, end, history_days, MIN_HISTORY_DAYS)
    hist = _hourly(ds, market, period, queues, routing, mask_kinds, mask_hours)
    f_date, f_hour, f_dow = _future_grid(period.end, horizon_days)
    parts = []
    for queue, g in hist.groupby("queue", sort=True):
        y, hour, dow, masked = _series_arrays(g)
        fit = _fit_series(y, hour, dow, ~masked)
        mean, lower, upper = _predict(fit, f_hour, f_dow, interval)
        past = g.assign(lower=np.nan, upper=np.nan, is_forecast=False)
        future = pd.DataFrame(
            {
                "market": market,
                "queue": queue,
                "date": f_date.to_numpy(),
                "hour": f_hour,
                "arrivals": mean,
                "lower": lower,
                "upper": upper,
                "is_forecast": True,
                "masked": False,
            }
        )
        parts.extend([past[FORECAST_COLUMNS], future[FORECAST_COLUMNS]])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in FORECAST_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    return out.astype({c: _DTYPES[c] for c in FORECAST_COLUMNS})


_DTYPES = {
    "market": "str",
    "queue": "str",
    "date": "datetime64[s]",
    "hour": "int64",
    "arrivals": "float64",
    "lower": "float64",
    "upper": "float64",
    "is_forecast": "bool",
    "masked": "bool",
}


def backtest(
    ds: Dataset,
    market: str,
    *,
    test_days: int = 28,
    queues: Sequence[str] | None = None,
    history_days: int = 56,
    interval: float = 0.8,
    mask_kinds: Sequence[str] = ("outage",),
    mask_hours: int | None = None,
    routing: Sequence[str] | None = None,
    end: date | str | None = None,
) -> pd.DataFrame:
    """Score the forecast against the seasonal-naive baseline on held-out days.

    The last ``test_days`` up to ``end`` are held out; both methods learn from
    up to ``history_days`` before them and forecast the held-out hours.

    Parameters
    ----------
    ds : Dataset
    market : str
    test_days : int, default 28
        Held-out days (the forecast horizon being scored).
    queues, history_days, interval, mask_kinds, mask_hours, routing, end
        As in :func:`forecast_arrivals`; the training window ends
        ``test_days`` before ``end``.

    Returns
    -------
    pandas.DataFrame
        :data:`BACKTEST_COLUMNS`: ``market, queue, method, mase, mae,
        coverage, n`` with one row per queue and method (``seasonal_glm``, the
        model; ``seasonal_naive``, the baseline). ``mase`` is the test MAE
        over the in-sample seasonal-naive MAE (season 168 hours; below 1 beats
        the baseline's in-sample accuracy), ``coverage`` the share of test
        hours inside the ``interval`` prediction interval, ``n`` the test hours
        scored (masked hours are not scored).

    Notes
    -----
    MASE follows Hyndman & Koehler (2006), "Another look at measures of
    forecast accuracy", with the seasonal scaling of their eq. for seasonal
    data. The baseline repeats the last training week; its intervals are
    normal with the seasonal-naive variance growth of Hyndman &
    Athanasopoulos, FPP 5.5.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=28, seed=1)
    >>> bt = backtest(open_dataset(folder), "SG", test_days=7, queues=["live_stream"])
    >>> bt[["queue", "method", "n"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'queue': 'live_stream', 'method': 'seasonal_glm', 'n': 168},
     {'queue': 'live_stream', 'method': 'seasonal_naive', 'n': 168}]
    """
    test_days = _check_int(test_days, "test_days", 1)
    history_days = _check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    interval = _check_interval(interval)
    period = _data_period(ds, market, end, history_days + test_days, MIN_HISTORY_DAYS + test_days)
    data = _hourly(ds, market, period, queues, routing, mask_kinds, mask_hours)
    cut = pd.Timestamp(period.end - timedelta(days=test_days - 1))
    rows = []
    for queue, g in data.groupby("queue", sort=True):
        train, test = g[g["date"] < cut], g[g["date"] >= cut]
        y, hour, dow, masked = _series_arrays(train)
        y_te, h_te, d_te, m_te = _series_arrays(test)
        fit = _fit_series(y, hour, dow, ~masked)
        mean, lower, upper = _predict(fit, h_te, d_te, interval)
        n_mean, n_lower, n_upper, scale = _seasonal_naive(y, masked, len(y_te), interval)
        score = ~m_te
        for method, (f, lo, hi) in (
            (MODEL_METHOD, (mean, lower, upper)),
            (NAIVE_METHOD, (n_mean, n_lower, n_upper)),
        ):
            err = np.abs(y_te[score] - f[score])
            mae = float(err.mean()) if score.any() else float("nan")
            inside = (y_te[score] >= lo[score]) & (y_te[score] <= hi[score])
            rows.append(
                {
                    "market": market,
                    "queue": queue,
                    "method": method,
                    "mase": mae / scale if scale > 0 else float("nan"),
                    "mae": mae,
                    "coverage": float(inside.mean()) if score.any() else float("nan"),
                    "n": int(score.sum()),
                }
            )
    return pd.DataFrame(rows, columns=BACKTEST_COLUMNS)
