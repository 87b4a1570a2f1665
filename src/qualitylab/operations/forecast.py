"""Arrivals forecasting: items entering each queue per market-local hour.

The engine counts arrivals per queue x market-local date x hour in one
``group_by``; each queue's hourly series is then modelled in statsmodels on
that small aggregate (a few thousand numbers per queue; the series and the
model fit are :mod:`qualitylab.operations.hourly`, shared with capacity
planning):

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

from collections.abc import Sequence
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError
from qualitylab.measure.metrics import resolve_period
from qualitylab.operations.hourly import (
    ARRIVALS_COLUMNS,
    MIN_HISTORY_DAYS,
    SeriesFit,
    check_int,
    data_period,
    fit_series,
    hourly_counts,
    series_arrays,
)

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

MSG_INTERVAL = "interval must be strictly between 0 and 1; got {value!r}"

_MAX_SE2 = 5.0  # caps the parameter-uncertainty term of a near-empty level


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def _check_interval(value: object) -> float:
    try:
        ok = 0.0 < float(value) < 1.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_INTERVAL.format(value=value), key="interval")
    return float(value)  # type: ignore[arg-type]


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
    return hourly_counts(ds, market, period, queues, routing, mask_kinds, mask_hours)


# --------------------------------------------------------------------------- #
# statistics on one series
# --------------------------------------------------------------------------- #
def _predict(
    fit: SeriesFit, hour: np.ndarray, dow: np.ndarray, interval: float
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
    horizon_days = check_int(horizon_days, "horizon_days", 1)
    history_days = check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    interval = _check_interval(interval)
    period = data_period(ds, market, end, history_days, MIN_HISTORY_DAYS)
    hist = hourly_counts(ds, market, period, queues, routing, mask_kinds, mask_hours)
    f_date, f_hour, f_dow = _future_grid(period.end, horizon_days)
    parts = []
    for queue, g in hist.groupby("queue", sort=True):
        y, hour, dow, masked = series_arrays(g)
        fit = fit_series(y, hour, dow, ~masked)
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
    test_days = check_int(test_days, "test_days", 1)
    history_days = check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    interval = _check_interval(interval)
    period = data_period(ds, market, end, history_days + test_days, MIN_HISTORY_DAYS + test_days)
    data = hourly_counts(ds, market, period, queues, routing, mask_kinds, mask_hours)
    cut = pd.Timestamp(period.end - timedelta(days=test_days - 1))
    rows = []
    for queue, g in data.groupby("queue", sort=True):
        train, test = g[g["date"] < cut], g[g["date"] >= cut]
        y, hour, dow, masked = series_arrays(train)
        y_te, h_te, d_te, m_te = series_arrays(test)
        fit = fit_series(y, hour, dow, ~masked)
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
