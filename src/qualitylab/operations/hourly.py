"""The hourly arrivals series behind forecasting and capacity planning.

Plumbing shared by :mod:`qualitylab.forecast` and :mod:`qualitylab.capacity`
(not part of the user-facing API; :func:`qualitylab.forecast.hourly_arrivals`
is the public entry point):

* :func:`hourly_counts` — one engine ``group_by`` of the items entering each
  queue per market-local date and hour, zeros included, with the hours hit by
  events flagged ``masked``;
* :func:`data_period` — the history window ending at a day, checked long
  enough;
* :func:`series_arrays` — one queue's series as NumPy arrays;
* :func:`fit_series` — the seasonal Poisson GLM of one series
  (:class:`SeriesFit`);
* :func:`intraday_profile` and :func:`shares` — the intraday profile and the
  typical daily arrivals per weekday of a series.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from statsmodels.genmod import families
from statsmodels.genmod.generalized_linear_model import GLM
from statsmodels.tools.sm_exceptions import PerfectSeparationWarning

from qualitylab.data.localtime import local_hour, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.metrics import Period, decisions_in_period, resolve_period

try:  # optional (installed with scikit-learn): small fits run fastest on one BLAS thread
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - depends on the environment
    threadpool_limits = None

#: Columns of :func:`hourly_counts` (and :func:`qualitylab.forecast.hourly_arrivals`).
ARRIVALS_COLUMNS = ["market", "queue", "date", "hour", "arrivals", "masked"]
#: Fewest days of history a fit learns from.
MIN_HISTORY_DAYS = 14
MSG_INTEGER = "{name} must be an integer >= {low}; got {value!r}"
MSG_HISTORY = (
    "the forecast needs at least {need} days of history for market {market!r}; "
    "the data has {have} days from {start} to {end}"
)

_TREND_UNIT_HOURS = 28 * 24  # the trend coefficient is per four weeks


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def check_int(value: object, name: str, low: int) -> int:
    """``value`` as an int, refused (:data:`MSG_INTEGER`) unless an integer >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ParameterError(MSG_INTEGER.format(name=name, low=low, value=value), key=name)
    return int(value)


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
def hourly_counts(
    ds: Dataset,
    market: str,
    period: Period,
    queues: Sequence[str] | None,
    routing: Sequence[str] | None,
    mask_kinds: Sequence[str],
    mask_hours: int | None,
) -> pd.DataFrame:
    """Items entering each queue per market-local date and hour of ``period``.

    The body of :func:`qualitylab.forecast.hourly_arrivals` (see there) on a
    resolved ``period``: :data:`ARRIVALS_COLUMNS`, one row per queue x date x
    hour (0-23), zeros included, ``masked`` for the hours of ``mask_kinds``
    events.
    """
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
        check_int(mask_hours, "mask_hours", 1)
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


def data_period(
    ds: Dataset, market: str, end: date | str | None, days_back: int, need: int
) -> Period:
    """The market-local period ending at ``end`` (default: last day with data).

    At most ``days_back`` days; :class:`QualityLabError` (:data:`MSG_HISTORY`)
    when the data has fewer than ``need``.
    """
    full = resolve_period(ds, market=market, start=None, end=None)
    last = _as_date(end, "end") or full.end
    first = max(full.start, last - timedelta(days=days_back - 1))
    have = (last - first).days + 1
    if have < need:
        raise QualityLabError(
            MSG_HISTORY.format(need=need, market=market, have=max(have, 0), start=first, end=last)
        )
    return Period(first, last)


def series_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``arrivals``, ``hour``, weekday (Monday 0) and ``masked`` of one queue's rows."""
    y = frame["arrivals"].to_numpy(dtype=float)
    hour = frame["hour"].to_numpy(dtype=np.int64)
    dow = frame["date"].dt.day_of_week.to_numpy(dtype=np.int64)
    masked = frame["masked"].to_numpy(dtype=bool)
    return y, hour, dow, masked


# --------------------------------------------------------------------------- #
# statistics on one series
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class SeriesFit:
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


def fit_series(y: np.ndarray, hour: np.ndarray, dow: np.ndarray, use: np.ndarray) -> SeriesFit:
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
        return SeriesFit(np.zeros(0), np.zeros((0, 0)), hours, dows, 0.0, 1.0, int(use.sum()), True)
    shell = SeriesFit(np.zeros(0), np.zeros((0, 0)), hours, dows, 0.0, 1.0, 0, False)
    keep = shell.supported(h_u, d_u)
    x = shell.design(h_u[keep], d_u[keep], t_u[keep])
    yk = y_u[keep]
    with (
        warnings.catch_warnings(),
        np.errstate(divide="ignore", invalid="ignore"),
        _one_blas_thread(),
    ):
        # A rare level (an hour or weekday with arrivals in one or two of its hours) is
        # fitted exactly: statsmodels flags the perfect prediction, the coefficient runs
        # towards -inf and its standard error up (capped in the forecast). Expected.
        warnings.filterwarnings("ignore", category=PerfectSeparationWarning)
        # errstate: with as many rows as columns the IRLS steps' weighted-least-squares
        # scale is x / 0 (statsmodels regression/_tools.py); a Poisson fit does not use it.
        res = GLM(yk, x, family=families.Poisson()).fit()
    mu = np.asarray(res.fittedvalues, dtype=float)
    df = max(len(yk) - x.shape[1], 1)
    dispersion = float(np.sum((yk - mu) ** 2 / np.maximum(mu, 1e-12)) / df)
    alpha = max(0.0, float(np.sum((yk - mu) ** 2 - yk) / np.sum(mu**2)))
    cov = np.asarray(res.cov_params(), dtype=float)
    return SeriesFit(
        np.asarray(res.params, dtype=float), cov, hours, dows, alpha, dispersion, len(yk), False
    )


def intraday_profile(hist: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Intraday profile (24 shares) and typical daily arrivals per weekday (7, Monday first).

    From the history rows of :func:`~qualitylab.forecast.forecast_arrivals`:
    the profile from the mean arrivals per hour of day over the unmasked
    hours, the weekday levels as the median daily total over the days without
    a masked hour (robust to a surge day; the overall median for a weekday
    without such days).
    """
    masked = hist["masked"].astype(bool)
    use = hist[~masked] if (~masked).any() else hist
    mean = use.groupby("hour")["arrivals"].mean().reindex(range(24), fill_value=0.0)
    profile = shares(mean.fillna(0.0).to_numpy(dtype=float))
    days = (
        hist.assign(masked=masked)
        .groupby("date")
        .agg(total=("arrivals", "sum"), masked=("masked", "any"))
    )
    if (~days["masked"]).any():
        days = days[~days["masked"]]
    weekday = pd.DatetimeIndex(days.index).day_of_week
    level = days["total"].groupby(weekday).median().reindex(range(7))
    level = level.fillna(float(days["total"].median()) if len(days) else 0.0)
    return profile, level.to_numpy(dtype=float)


def shares(weights: np.ndarray) -> np.ndarray:
    """``weights`` normalised to sum to 1 (uniform when they sum to 0)."""
    w = np.asarray(weights, dtype=float)
    total = float(w.sum())
    return w / total if total > 0 else np.full(w.shape, 1.0 / w.size)
