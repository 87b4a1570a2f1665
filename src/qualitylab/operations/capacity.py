"""Capacity planning: Erlang C staffing requirements against the rota.

Queueing formulas (vectorised NumPy, no data needed):

* :func:`erlang_c` — probability an item waits, M/M/c.
* :func:`service_level` — share of items picked up within a target time.
* :func:`required_agents` — smallest number of moderators meeting a service
  level (and an occupancy cap), optionally inflated by shrinkage to
  scheduled heads.
* :func:`simulate_mgc` — a seeded discrete-event M/G/c simulation, for handle
  times that are not exponential.

On a dataset:

* :func:`capacity_table` — per market x queue x date x hour, history and
  forecast: arrivals, handle time (the planning ``aht_seconds`` parameter,
  else estimated from the data), required and staffed moderators, the gap
  (``capacity_gap`` = required - staffed), the SLA the staffing predicts and
  the SLA measured.
* :func:`assumption_checks` — where the Erlang C assumptions (Poisson
  arrivals, exponential handle times, no abandonment, enough load) are off
  for the data.

The heavy steps run in the engine (one ``group_by`` for arrivals, one for the
measured SLA, one for staffing, one window query for the handle-time proxy);
the queueing maths runs on those aggregates.
"""

from __future__ import annotations

import heapq
import warnings
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

import ibis
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special

from qualitylab.data.localtime import epoch_seconds, local_hour, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import DataContractError, ParameterError
from qualitylab.measure.metrics import Period, decisions_in_period
from qualitylab.operations.forecast import HUMAN_ROUTINGS, forecast_arrivals
from qualitylab.operations.hourly import (
    MIN_HISTORY_DAYS,
    check_int,
    data_period,
    fit_series,
    hourly_counts,
    intraday_profile,
    series_arrays,
    shares,
)

__all__ = [
    "CAPACITY_COLUMNS",
    "CHECK_COLUMNS",
    "SUMMARY_COLUMNS",
    "assumption_checks",
    "capacity_summary",
    "capacity_table",
    "erlang_c",
    "required_agents",
    "service_level",
    "simulate_mgc",
]

#: Columns of :func:`capacity_table`, in order.
CAPACITY_COLUMNS = [
    "market",
    "queue",
    "date",
    "hour",
    "arrivals",
    "aht_seconds",
    "required_agents",
    "staffed_agents",
    "gap",
    "predicted_sla",
    "measured_sla",
    "is_forecast",
]
#: Columns of :func:`assumption_checks`, in order.
CHECK_COLUMNS = ["market", "queue", "check", "value", "threshold", "ok", "n", "note"]

# Error messages are module constants so tests can assert on them.
MSG_NEGATIVE = "{name} must be finite and >= 0; got {value!r}"
MSG_POSITIVE = "{name} must be finite and > 0; got {value!r}"
MSG_OPEN_UNIT = "{name} must be strictly between 0 and 1; got {value!r}"
MSG_SHRINKAGE = "shrinkage must be in [0, 1); got {value!r}"
MSG_OCCUPANCY = "max_occupancy must be in (0, 1]; got {value!r}"
MSG_SHAPES = "Found input variables with inconsistent shapes: {shapes}"
MSG_SERVICE_TIMES = (
    "service_times_seconds must be a sample of positive numbers, a scipy.stats "
    "distribution or a callable (rng, size) -> array; got {value!r}"
)
MSG_AHT_ESTIMATED = (
    "no planning handle time (aht_seconds) for queue(s) {queues} in market {market}; "
    "using productive hours x 3600 / human decisions from the data, which counts idle "
    "time as handling and so overstates handle time and required_agents wherever "
    "moderators are not fully occupied (set aht_seconds in parameters)"
)
MSG_NO_SLA = (
    "no SLA configured for queue(s) {queues} in market {market}; they are left "
    "out of the capacity table (set sla_seconds in parameters)"
)
MSG_NO_STAFFING = (
    "capacity_table needs the staffing table (scheduled and productive hours) for "
    "handle times and staffed moderators; it is not in {source}"
)

# Float guard for ceil(x / (1 - shrinkage)): 7 / 0.7 is 10.000000000000002 in binary.
_CEIL_EPS = 1e-9
# Assumption-check thresholds.
DISPERSION_MAX = 1.5
CV_RANGE = (0.5, 1.5)
ABANDON_MAX = 0.01
ABANDON_SLA_MULTIPLE = 10.0
LOAD_MIN = 1.0


# --------------------------------------------------------------------------- #
# validation (once, at the public entry points)
# --------------------------------------------------------------------------- #
def _array(x: npt.ArrayLike, name: str, *, positive: bool = False) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be numeric; got {x!r}", key=name) from exc
    bad = ~np.isfinite(a) | ((a <= 0) if positive else (a < 0))
    if bad.any():
        msg = MSG_POSITIVE if positive else MSG_NEGATIVE
        raise ParameterError(msg.format(name=name, value=a[bad].flat[0].item()), key=name)
    return a


def _broadcast(*arrays: np.ndarray) -> list[np.ndarray]:
    try:
        return list(np.broadcast_arrays(*arrays))
    except ValueError as exc:
        raise ParameterError(MSG_SHAPES.format(shapes=[a.shape for a in arrays])) from exc


def _open_unit(value: float, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=float)
    if not (np.all(a > 0) and np.all(a < 1)):
        raise ParameterError(MSG_OPEN_UNIT.format(name=name, value=value), key=name)
    return a


def _scalar_out(x: np.ndarray, scalar: bool, kind: type = float) -> Any:
    return kind(x) if scalar else x


# --------------------------------------------------------------------------- #
# queueing formulas
# --------------------------------------------------------------------------- #
def _load(arrival_rate: np.ndarray, aht_seconds: np.ndarray) -> np.ndarray:
    """Offered load in Erlangs: arrivals per hour x handle time in hours."""
    return arrival_rate * aht_seconds / 3600.0


def _erlang_c(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """P(wait) for load ``a`` and ``c`` agents, in log space; 1 when c <= a."""
    a, c = np.broadcast_arrays(np.asarray(a, float), np.asarray(c, float))
    out = np.ones(a.shape)
    out[a <= 0] = 0.0
    ok = (a > 0) & (c > a)
    if ok.any():
        aa, cc = a[ok], c[ok]
        # Erlang B = Poisson pmf(c; a) / cdf(c; a); cdf = Q(c + 1, a), the regularised
        # upper incomplete gamma, which also extends B to non-integer c.
        log_b = (
            cc * np.log(aa) - aa - special.gammaln(cc + 1) - np.log(special.gammaincc(cc + 1, aa))
        )
        b = np.exp(log_b)
        out[ok] = cc * b / (cc - aa * (1.0 - b))
    return out


def _service_level(a: np.ndarray, c: np.ndarray, t_over_aht: np.ndarray) -> np.ndarray:
    a, c, r = np.broadcast_arrays(np.asarray(a, float), np.asarray(c, float), t_over_aht)
    p = _erlang_c(a, c)
    with np.errstate(over="ignore", invalid="ignore"):
        sl = 1.0 - p * np.exp(-(c - a) * r)
    sl = np.where(c > a, sl, 0.0)
    sl = np.where(a <= 0, 1.0, sl)
    return np.clip(sl, 0.0, 1.0)


def erlang_c(arrival_rate: npt.ArrayLike, aht_seconds: npt.ArrayLike, agents: npt.ArrayLike) -> Any:
    """Probability that an arriving item waits (Erlang C, M/M/c).

    Parameters
    ----------
    arrival_rate : float or array_like
        Arrivals per hour (>= 0).
    aht_seconds : float or array_like
        Average handle time in seconds (> 0).
    agents : float or array_like
        Moderators handling the queue (>= 0); fractional values use the
        continuous extension of Erlang B (see Notes).

    Returns
    -------
    float or numpy.ndarray
        ``P(wait)`` in [0, 1], broadcast over the inputs; 1 when ``agents`` is
        at or below the offered load (the queue grows without bound), 0 when
        nothing arrives.

    Notes
    -----
    With offered load :math:`a = \\lambda \\cdot AHT` (Erlangs) and Erlang B
    :math:`B(c, a) = \\frac{a^c/c!}{\\sum_{k=0}^{c} a^k/k!}`,

    .. math:: C(c, a) = \\frac{c B}{c - a (1 - B)}.

    ``B`` is computed as a Poisson pmf over its cdf in log space,
    :math:`\\log B = c \\log a - a - \\log\\Gamma(c+1) - \\log Q(c+1, a)` with
    ``Q`` the regularised upper incomplete gamma (scipy ``gammaincc``): no
    factorial overflows for hundreds of agents, and it extends ``B`` to
    fractional agents (Jagerman 1974). Tested against pyworkforce
    ``ErlangC.waiting_probability`` (its Erlang B recursion) on a grid up to
    500 agents in ``tests/test_capacity.py``.

    Examples
    --------
    >>> round(erlang_c(100, 180, 7), 4)   # 5 Erlangs on 7 moderators
    0.3241
    >>> erlang_c([100, 100], 180, [5, 400]).round(6).tolist()
    [1.0, 0.0]
    """
    scalar = all(np.ndim(v) == 0 for v in (arrival_rate, aht_seconds, agents))
    lam = _array(arrival_rate, "arrival_rate")
    aht = _array(aht_seconds, "aht_seconds", positive=True)
    c = _array(agents, "agents")
    lam, aht, c = _broadcast(lam, aht, c)
    return _scalar_out(_erlang_c(_load(lam, aht), c), scalar)


def service_level(
    arrival_rate: npt.ArrayLike,
    aht_seconds: npt.ArrayLike,
    agents: npt.ArrayLike,
    target_seconds: npt.ArrayLike,
) -> Any:
    """Share of items picked up within ``target_seconds`` (Erlang C).

    Parameters
    ----------
    arrival_rate : float or array_like
        Arrivals per hour (>= 0).
    aht_seconds : float or array_like
        Average handle time in seconds (> 0).
    agents : float or array_like
        Moderators (>= 0; fractional as in :func:`erlang_c`).
    target_seconds : float or array_like
        Waiting-time target in seconds (>= 0), e.g. the queue's SLA.

    Returns
    -------
    float or numpy.ndarray
        ``P(wait <= target)`` in [0, 1]: 0 when ``agents`` is at or below
        the offered load, 1 when nothing arrives.

    Notes
    -----
    :math:`SL = 1 - C(c, a)\\, e^{-(c - a)\\, T / AHT}`. Tested against
    pyworkforce ``ErlangC.service_level`` and against the seeded simulation
    :func:`simulate_mgc` in ``tests/test_capacity.py``.

    Examples
    --------
    >>> round(service_level(100, 180, 7, 20), 4)
    0.7404
    """
    scalar = all(np.ndim(v) == 0 for v in (arrival_rate, aht_seconds, agents, target_seconds))
    lam = _array(arrival_rate, "arrival_rate")
    aht = _array(aht_seconds, "aht_seconds", positive=True)
    c = _array(agents, "agents")
    t = _array(target_seconds, "target_seconds")
    lam, aht, c, t = _broadcast(lam, aht, c, t)
    return _scalar_out(_service_level(_load(lam, aht), c, t / aht), scalar)


def required_agents(
    arrival_rate: npt.ArrayLike,
    aht_seconds: npt.ArrayLike,
    target_seconds: npt.ArrayLike,
    service_level: npt.ArrayLike,
    *,
    shrinkage: npt.ArrayLike = 0.0,
    max_occupancy: npt.ArrayLike = 1.0,
) -> Any:
    """Smallest number of moderators meeting a service level (Erlang C).

    Parameters
    ----------
    arrival_rate : float or array_like
        Arrivals per hour (>= 0).
    aht_seconds : float or array_like
        Average handle time in seconds (> 0).
    target_seconds : float or array_like
        Waiting-time target in seconds (>= 0).
    service_level : float or array_like
        Share of items to pick up within the target, in (0, 1).
    shrinkage : float or array_like, default 0
        Share of scheduled time not spent on the queue (breaks, training,
        meetings), in [0, 1): ``1 - productive/scheduled`` hours in
        ``staffing``. The result is inflated to scheduled heads
        ``ceil(c / (1 - shrinkage))``.
    max_occupancy : float or array_like, default 1
        Cap on the offered load per productive moderator, in (0, 1]; the
        count is raised to ``ceil(a / max_occupancy)`` when the service level
        alone would allow a higher occupancy.

    Returns
    -------
    int or numpy.ndarray of int
        Moderators to schedule (0 when nothing arrives).

    Notes
    -----
    Searches ``c = floor(a) + 1, floor(a) + 2, ...`` (the first count that
    keeps the queue stable) until :func:`service_level` reaches the target,
    vectorised over the inputs. Matches pyworkforce
    ``ErlangC.required_positions(...)["positions"]`` on a grid in
    ``tests/test_capacity.py`` with two documented differences: pyworkforce
    starts its search at ``round(a + 1)`` (one above the minimum when the
    fractional part of ``a`` is above one half) and its ``ceil`` has no
    guard against binary rounding (``ceil(7 / 0.7) = 11``; here 10).

    Examples
    --------
    >>> required_agents(100, 180, 20, 0.8)   # 5 Erlangs, 80% within 20 s
    8
    >>> required_agents(100, 180, 20, 0.8, shrinkage=0.3)
    12
    >>> required_agents([0, 100, 1000], 180, 20, 0.8).tolist()
    [0, 8, 56]
    """
    scalar = all(
        np.ndim(v) == 0
        for v in (
            arrival_rate,
            aht_seconds,
            target_seconds,
            service_level,
            shrinkage,
            max_occupancy,
        )
    )
    lam = _array(arrival_rate, "arrival_rate")
    aht = _array(aht_seconds, "aht_seconds", positive=True)
    t = _array(target_seconds, "target_seconds")
    sl = _open_unit(service_level, "service_level")
    shr = np.asarray(shrinkage, dtype=float)
    if not (np.all(shr >= 0) and np.all(shr < 1)):
        raise ParameterError(MSG_SHRINKAGE.format(value=shrinkage), key="shrinkage")
    occ = np.asarray(max_occupancy, dtype=float)
    if not (np.all(occ > 0) and np.all(occ <= 1)):
        raise ParameterError(MSG_OCCUPANCY.format(value=max_occupancy), key="max_occupancy")
    lam, aht, t, sl, shr, occ = _broadcast(lam, aht, t, sl, shr, occ)
    c = _required(_load(lam, aht), t / aht, sl, occ)
    heads = np.ceil(c / (1.0 - shr) - _CEIL_EPS)
    out = np.where(c > 0, heads, 0).astype(np.int64)
    return _scalar_out(out, scalar, int)


def _required(a: np.ndarray, r: np.ndarray, sl: np.ndarray, occ: np.ndarray) -> np.ndarray:
    """Smallest integer c > a with SL >= sl and a / c <= occ (0 when a == 0)."""
    shape = np.broadcast_shapes(np.shape(a), np.shape(r), np.shape(sl), np.shape(occ))
    a, r, sl, occ = (np.broadcast_to(x, shape).ravel() for x in (a, r, sl, occ))
    c = np.where(a > 0, np.floor(a) + 1.0, 0.0)
    todo = a > 0
    while todo.any():
        met = _service_level(a[todo], c[todo], r[todo]) >= sl[todo]
        idx = np.flatnonzero(todo)
        c[idx[~met]] += 1.0
        todo[idx[met]] = False
    cap = np.where(a > 0, np.ceil(a / occ - _CEIL_EPS), 0.0)
    return np.maximum(c, cap).reshape(shape)


# --------------------------------------------------------------------------- #
# simulation
# --------------------------------------------------------------------------- #
ServiceTimes = npt.ArrayLike | Callable[[np.random.Generator, int], npt.ArrayLike] | Any


def _draw_service(source: ServiceTimes, rng: np.random.Generator, n: int) -> np.ndarray:
    if hasattr(source, "rvs"):
        draws = np.asarray(source.rvs(size=n, random_state=rng), dtype=float)
    elif callable(source):
        draws = np.asarray(source(rng, n), dtype=float)
    else:
        try:
            sample = np.asarray(source, dtype=float).ravel()
        except (TypeError, ValueError):
            raise ParameterError(
                MSG_SERVICE_TIMES.format(value=source), key="service_times_seconds"
            ) from None
        if sample.size == 0:
            raise ParameterError(
                MSG_SERVICE_TIMES.format(value=source), key="service_times_seconds"
            )
        draws = rng.choice(sample, size=n, replace=True)
    if draws.shape != (n,) or not np.all(np.isfinite(draws)) or np.any(draws <= 0):
        raise ParameterError(MSG_SERVICE_TIMES.format(value=source), key="service_times_seconds")
    return draws


def _fcfs_waits(arrivals: np.ndarray, service: np.ndarray, agents: int) -> np.ndarray:
    """Waiting times of a first-come-first-served queue with ``agents`` servers."""
    free = [0.0] * agents  # min-heap of the times each moderator becomes free
    waits = np.empty(len(arrivals))
    for i, (t, s) in enumerate(zip(arrivals.tolist(), service.tolist(), strict=True)):
        start = max(t, free[0])
        waits[i] = start - t
        heapq.heapreplace(free, start + s)
    return waits


def simulate_mgc(
    arrival_rate: float,
    service_times_seconds: ServiceTimes,
    agents: int,
    target_seconds: float,
    *,
    hours: float = 1000.0,
    seed: int = 0,
    warmup_hours: float | None = None,
) -> float:
    """Service level of an M/G/c queue by discrete-event simulation.

    Parameters
    ----------
    arrival_rate : float
        Poisson arrivals per hour (> 0).
    service_times_seconds : array_like, scipy.stats distribution or callable
        Handle times: an empirical sample (resampled with replacement), a
        frozen ``scipy.stats`` distribution (``rvs`` is called) or a callable
        ``(rng, size) -> array``; seconds, > 0.
    agents : int
        Moderators (>= 1), first come first served, nobody abandons.
    target_seconds : float
        Waiting-time target in seconds.
    hours : float, default 1000
        Simulated hours (more hours, smaller Monte Carlo error).
    seed : int, default 0
        Seed of the random generator; the result is a pure function of the
        arguments.
    warmup_hours : float, optional
        Leading hours left out while the empty system fills (default 5% of
        ``hours``).

    Returns
    -------
    float
        Share of arrivals after the warm-up whose wait is ``<= target_seconds``.

    Notes
    -----
    Arrival times are uniform order statistics of a Poisson count over the
    horizon; each item starts with the moderator that frees up first
    (Kiefer-Wolfowitz recursion with a heap). With exponential handle times
    this is M/M/c, and ``tests/test_capacity.py`` checks it against
    :func:`service_level` within 2 percentage points.

    Examples
    --------
    >>> from scipy import stats
    >>> sl = simulate_mgc(100, stats.expon(scale=180), 7, 20, hours=500, seed=1)
    >>> abs(sl - service_level(100, 180, 7, 20)) < 0.03
    True
    """
    lam = float(_array(arrival_rate, "arrival_rate", positive=True))
    target = float(_array(target_seconds, "target_seconds"))
    span = float(_array(hours, "hours", positive=True))
    c = check_int(agents, "agents", 1)
    warm = 0.05 * span if warmup_hours is None else float(_array(warmup_hours, "warmup_hours"))
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(lam * span))
    arrivals = np.sort(rng.uniform(0.0, span * 3600.0, n))
    service = _draw_service(service_times_seconds, rng, n)
    waits = _fcfs_waits(arrivals, service, c)
    scored = arrivals >= warm * 3600.0
    if not scored.any():
        return float("nan")
    return float(np.mean(waits[scored] <= target))


# --------------------------------------------------------------------------- #
# data: handle time, staffing, measured SLA
# --------------------------------------------------------------------------- #
def _queue_slas(
    ds: Dataset, market: str, queues: Sequence[str], override: Mapping[str, float] | None
) -> dict[str, float]:
    slas = dict(ds.params.market(market).sla_seconds)
    slas.update(override or {})
    missing = [q for q in queues if q not in slas]
    if missing:
        warnings.warn(MSG_NO_SLA.format(queues=missing, market=market), stacklevel=3)
    return {q: float(slas[q]) for q in queues if q in slas}


def _human_work(
    ds: Dataset, market: str, period: Period, slas: Mapping[str, float]
) -> pd.DataFrame:
    """Per queue x date x hour: human items decided, within SLA, and judged.

    An item counts toward the measured SLA once it is decided, or once it has
    waited longer than the SLA at the end of the period (a pending breach).
    """
    tz = ds.params.market(market).timezone
    lo, hi = period_bounds_utc(period.start, period.end, tz)
    dec = decisions_in_period(ds, market=market, period=period)
    dec = dec.filter(dec.routing.isin(list(HUMAN_ROUTINGS)) & dec.queue.isin(list(slas)))
    sla = ibis.cases(*[(dec.queue == q, ibis.literal(s)) for q, s in slas.items()], else_=None)
    end = ibis.literal(hi)
    decided = dec.decided_at.notnull() & (dec.decided_at < end)
    created_s = epoch_seconds(dec.created_at).cast("float64")
    resp = epoch_seconds(dec.decided_at).cast("float64") - created_s
    age = epoch_seconds(end).cast("float64") - created_s
    dec = dec.mutate(
        hour=local_hour(
            dec.created_at, tz, start=lo - timedelta(days=2), end=hi + timedelta(days=2)
        ),
        _decided=decided.cast("int64"),
        _within=(decided & (resp <= sla)).cast("int64"),
        _judged=(decided | (age > sla)).cast("int64"),
    )
    agg = (
        dec.group_by(["queue", "date", "hour"])
        .aggregate(decided=dec._decided.sum(), within=dec._within.sum(), judged=dec._judged.sum())
        .to_pandas()
    )
    agg["date"] = pd.to_datetime(agg["date"]).astype("datetime64[s]")
    agg["hour"] = agg["hour"].astype("int64")
    return agg


def _staffing(ds: Dataset, market: str, start: date, end: date) -> pd.DataFrame:
    """Scheduled and productive hours per queue x date (summed over vendors and sites)."""
    if not ds.has("staffing"):
        raise DataContractError(
            MSG_NO_STAFFING.format(source=ds.source), table="staffing", check="missing_table"
        )
    st = ds.table("staffing")
    st = st.filter((st.market == market) & st.date.between(start, end))
    out = (
        st.group_by(["queue", "date"])
        .aggregate(scheduled=st.scheduled_hours.sum(), productive=st.productive_hours.sum())
        .to_pandas()
    )
    out["date"] = pd.to_datetime(out["date"]).astype("datetime64[s]")
    return out


def _estimated_handle_times(
    work: pd.DataFrame, staff: pd.DataFrame, period: Period
) -> dict[str, float]:
    """Seconds of productive time per human decision, per queue, over ``period``."""
    lo, hi = pd.Timestamp(period.start), pd.Timestamp(period.end)
    s = staff[(staff["date"] >= lo) & (staff["date"] <= hi)]
    prod = s.groupby("queue")["productive"].sum()
    done = work.groupby("queue")["decided"].sum()
    out = {}
    for q in sorted(set(prod.index) | set(done.index)):
        p, d = float(prod.get(q, 0.0)), float(done.get(q, 0.0))
        out[q] = p * 3600.0 / d if p > 0 and d > 0 else float("nan")
    return out


def _handle_times(
    ds: Dataset,
    market: str,
    queues: Sequence[str],
    work: pd.DataFrame,
    staff: pd.DataFrame,
    period: Period,
    override: Mapping[str, float] | None,
) -> dict[str, float]:
    """Handle time per queue: ``override``, else the planning value, else the data estimate.

    Warns (:data:`MSG_AHT_ESTIMATED`) naming the queues that fall back to the
    estimate from the data.
    """
    planned = dict(ds.params.market(market).aht_seconds)
    if override:
        planned.update(
            {q: float(_array(v, f"aht_seconds[{q!r}]", positive=True)) for q, v in override.items()}
        )
    estimated = [q for q in queues if q not in planned]
    est = _estimated_handle_times(work, staff, period) if estimated else {}
    if estimated:
        warnings.warn(
            MSG_AHT_ESTIMATED.format(queues=estimated, market=market),
            stacklevel=3,
        )
    return {q: float(planned[q]) if q in planned else est.get(q, float("nan")) for q in queues}


def _plan(
    staff: pd.DataFrame, queue: str, dates: pd.Series, last: pd.Timestamp, carry: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Scheduled and productive hours per date; after ``last``, the same weekday rolled forward."""
    s = staff[staff["queue"] == queue].set_index("date")
    sched = s["scheduled"].reindex(dates).to_numpy(dtype=float, copy=True)
    prod = s["productive"].reindex(dates).to_numpy(dtype=float, copy=True)
    if not carry:
        return sched, prod
    for i, d in enumerate(pd.DatetimeIndex(dates)):
        if d <= last or not np.isnan(sched[i]):
            continue
        back = d - pd.Timedelta(days=7 * int(np.ceil((d - last).days / 7)))
        for _ in range(8):
            if back in s.index:
                sched[i], prod[i] = s.at[back, "scheduled"], s.at[back, "productive"]
                break
            back -= pd.Timedelta(days=7)
    return sched, prod


def capacity_table(
    ds: Dataset,
    market: str,
    *,
    horizon_days: int = 28,
    history_days: int = 56,
    queues: Sequence[str] | None = None,
    service_level_target: float | None = None,
    sla_seconds: Mapping[str, float] | None = None,
    aht_seconds: Mapping[str, float] | None = None,
    max_occupancy: float = 1.0,
    mask_kinds: Sequence[str] = ("outage",),
    carry_forward_staffing: bool = True,
    end: date | str | None = None,
) -> pd.DataFrame:
    """Required vs staffed moderators per queue and market-local hour.

    This is the function behind ``qualitylab capacity --data SRC --market M
    [--horizon 28] --out capacity.csv``.

    Parameters
    ----------
    ds : Dataset
        Needs ``decisions`` and ``staffing``.
    market : str
    horizon_days : int, default 28
        Days forecast after the history (rows with ``is_forecast``).
    history_days : int, default 56
        Days of history shown and learnt from (forecast, handle time,
        shrinkage, intraday profile).
    queues : sequence of str, optional
        By default every queue with human-handled arrivals and an SLA.
    service_level_target : float, optional
        Share of items to pick up within the queue's SLA; defaults to the
        market's ``targets.sla_compliance`` (0.90 in ``defaults.yaml``).
    sla_seconds : mapping, optional
        SLA per queue, overriding the parameters.
    aht_seconds : mapping, optional
        Handle time per queue in seconds, overriding the market's planning
        ``aht_seconds`` parameters (see Notes).
    max_occupancy : float, default 1
        Occupancy cap passed to :func:`required_agents`.
    mask_kinds : sequence of str, default ("outage",)
        Event kinds left out of the forecast's history (see
        :func:`qualitylab.forecast.forecast_arrivals`).
    carry_forward_staffing : bool, default True
        For forecast days with no ``staffing`` rows (no rota yet), roll the
        same weekday of the last history week forward; NaN otherwise.
    end : date or ISO string, optional
        Last history day; by default the last day with decisions.

    Returns
    -------
    pandas.DataFrame
        :data:`CAPACITY_COLUMNS`, one row per queue x date x hour:

        - ``arrivals`` — human-handled items (routing ``human`` or
          ``ai_assisted``; ``ai_auto`` items never reach a moderator) that
          arrived in the hour, or the forecast mean;
        - ``aht_seconds`` — the queue's handle time (see Notes);
        - ``required_agents`` — ``required_agents`` metric: Erlang C
          moderators for ``service_level_target`` within the queue's SLA at
          the hour's arrival rate (see Notes), divided by ``1 - shrinkage`` to
          scheduled moderators (not rounded, so it is on the scale of
          ``staffed_agents``);
        - ``staffed_agents`` — scheduled hours of the day spread over its hours
          in proportion to the weekday's Erlang C requirement curve (see
          Notes);
        - ``gap`` — ``capacity_gap`` metric, ``required_agents -
          staffed_agents`` (positive: understaffed);
        - ``predicted_sla`` — Erlang C service level of the productive
          moderators on shift (productive hours spread the same way);
        - ``measured_sla`` — share of the hour's human-handled items decided
          within the SLA (NaN for forecast rows and hours without items);
        - ``is_forecast``.

    Raises
    ------
    DataContractError
        If ``staffing`` is missing.
    QualityLabError
        If there are fewer than 14 days of history.

    Notes
    -----
    *Handle time.* Per-item handle time is not in the data contract. The
    planning handle time of the queue (``aht_seconds`` in the market's
    parameters, e.g. from the vendor contract) is used when set. Otherwise it
    is estimated per queue as productive hours x 3600 / human decisions over
    the history window, with a warning: productive time includes idle time
    between items, so this is handle time divided by the moderators'
    occupancy, an upper bound. It is circular where occupancy is low (a queue
    staffed above its workload reads as slow handling and so as needing that
    staff) and can overstate ``required_agents`` many times over on small
    queues. It is pooled over the window so that a short-staffed day (fewer
    productive hours for the same items) does not read as faster handling.

    *Shrinkage* is ``1 - productive/scheduled`` over the window, per queue.

    *Arrival rate.* Erlang C takes a rate, not a count. A history row uses the
    day's human-handled arrivals x the window's intraday profile (mean
    arrivals per hour of day over the unmasked hours, normalised): this keeps
    a surge day's volume but not the Poisson noise of single hours, which
    would otherwise read as requirement (a quiet hour with no arrivals
    needing nobody, a noisy one an extra moderator). The ``arrivals`` column
    still holds the hour's count. A forecast row uses the forecast mean.

    *Staffed moderators.* ``staffing`` has hours per day, not shifts. A rota
    follows the requirement curve, not the arrivals curve: Erlang C needs at
    least one moderator in every hour with arrivals, so relatively more
    people at night than the arrivals share. The day's hours are therefore
    spread in proportion to the Erlang C moderators its weekday needs hour by
    hour, at the weekday's median daily arrivals (days without masked hours)
    x the intraday profile. A day whose volume differs from its weekday's
    typical one can show small gaps in the hours where the two curves step
    differently. Fractional moderators use the continuous Erlang C
    (:func:`erlang_c`), which is optimistic below one moderator.

    *Forecast rows* use :func:`qualitylab.forecast.forecast_arrivals` on the
    human-handled arrivals; staffing comes from ``staffing`` rows for those
    days when a rota is published, else (``carry_forward_staffing``) from the
    same weekday of the last history week.

    Erlang C assumes Poisson arrivals, exponential handle times and no
    abandonment; :func:`assumption_checks` reports where the data departs from
    them and :func:`simulate_mgc` evaluates other handle-time distributions.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=28, seed=1)
    >>> cap = capacity_table(open_dataset(folder), "SG", horizon_days=7, history_days=28)
    >>> list(cap.columns) == CAPACITY_COLUMNS
    True
    >>> bool(cap["predicted_sla"].between(0, 1).all())
    True
    """
    horizon_days = check_int(horizon_days, "horizon_days", 1)
    history_days = check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    mp = ds.params.market(market)
    target = service_level_target
    if target is None:
        target = float(mp.targets.get("sla_compliance", 0.9))
    _open_unit(target, "service_level_target")
    if not 0 < max_occupancy <= 1:
        raise ParameterError(MSG_OCCUPANCY.format(value=max_occupancy), key="max_occupancy")
    if not ds.has("staffing"):
        raise DataContractError(
            MSG_NO_STAFFING.format(source=ds.source), table="staffing", check="missing_table"
        )
    fc = forecast_arrivals(
        ds,
        market,
        horizon_days=horizon_days,
        queues=queues,
        history_days=history_days,
        routing=HUMAN_ROUTINGS,
        mask_kinds=mask_kinds,
        end=end,
    )
    if fc.empty:
        return pd.DataFrame(columns=CAPACITY_COLUMNS)
    hist_mask = ~fc["is_forecast"]
    period = Period(fc.loc[hist_mask, "date"].min().date(), fc.loc[hist_mask, "date"].max().date())
    slas = _queue_slas(ds, market, sorted(fc["queue"].unique()), sla_seconds)
    fc = fc[fc["queue"].isin(list(slas))]
    work = _human_work(ds, market, period, slas)
    staff = _staffing(ds, market, period.start, period.end + timedelta(days=horizon_days))
    ahts = _handle_times(ds, market, list(slas), work, staff, period, aht_seconds)
    s_hist = (
        staff[staff["date"] <= pd.Timestamp(period.end)].groupby("queue").sum(numeric_only=True)
    )
    last = pd.Timestamp(period.end)

    parts = []
    for queue, g in fc.groupby("queue", sort=True):
        g = g.reset_index(drop=True)
        past = ~g["is_forecast"].to_numpy()
        hour = g["hour"].to_numpy(dtype=np.int64)
        aht = ahts.get(queue, float("nan"))
        sla = slas[queue]
        known = bool(np.isfinite(aht) and aht > 0)
        profile, level = intraday_profile(g[past])
        # the rota of a weekday follows its requirement curve: Erlang C moderators for
        # the weekday's typical arrivals x the intraday profile, hour by hour
        expected = level[:, None] * profile[None, :]  # (weekday, hour)
        need = (
            _required(
                _load(expected, aht),
                np.asarray(sla / aht),
                np.asarray(target),
                np.asarray(max_occupancy),
            )
            if known
            else expected
        )
        rota = np.stack([shares(row) for row in need])
        # history: the day's arrivals x the window's intraday profile; forecast: the mean
        day_total = g["arrivals"].where(past, 0.0).groupby(g["date"]).transform("sum")
        arrivals = g["arrivals"].to_numpy(dtype=float)
        lam = np.where(past, day_total.to_numpy(dtype=float) * profile[hour], arrivals)
        weekday = pd.DatetimeIndex(g["date"]).day_of_week.to_numpy()
        shrink = 0.0
        if queue in s_hist.index and s_hist.at[queue, "scheduled"] > 0:
            shrink = 1.0 - s_hist.at[queue, "productive"] / s_hist.at[queue, "scheduled"]
        shrink = float(np.clip(shrink, 0.0, 0.95))
        days = g["date"].drop_duplicates().reset_index(drop=True)
        sched_d, prod_d = _plan(staff, queue, days, last, carry_forward_staffing)
        day_pos = pd.Series(np.arange(len(days)), index=pd.DatetimeIndex(days))
        pos = day_pos.reindex(pd.DatetimeIndex(g["date"])).to_numpy()
        staffed = sched_d[pos] * rota[weekday, hour]
        productive = prod_d[pos] * rota[weekday, hour]
        # a future rota may carry no productive hours yet: plan them net of shrinkage
        productive = np.where(
            g["is_forecast"].to_numpy() & ~(prod_d[pos] > 0), staffed * (1 - shrink), productive
        )
        if known:
            c = _required(
                _load(lam, aht),
                np.asarray(sla / aht),
                np.asarray(target),
                np.asarray(max_occupancy),
            )
            required = c / (1.0 - shrink)
            ok = np.isfinite(productive)
            predicted = np.full(len(g), np.nan)
            predicted[ok] = _service_level(
                _load(lam[ok], aht), productive[ok], np.asarray(sla / aht)
            )
        else:
            required = np.full(len(g), np.nan)
            predicted = np.full(len(g), np.nan)
        m = work[work["queue"] == queue].set_index(["date", "hour"])
        key = pd.MultiIndex.from_arrays([g["date"], g["hour"]])
        within = m["within"].reindex(key).to_numpy(dtype=float)
        judged = m["judged"].reindex(key).to_numpy(dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            measured = np.where(judged > 0, within / judged, np.nan)
        measured[~past] = np.nan
        parts.append(
            pd.DataFrame(
                {
                    "market": market,
                    "queue": queue,
                    "date": g["date"].to_numpy(),
                    "hour": hour,
                    "arrivals": arrivals,
                    "aht_seconds": aht,
                    "required_agents": required,
                    "staffed_agents": staffed,
                    "gap": required - staffed,
                    "predicted_sla": predicted,
                    "measured_sla": measured,
                    "is_forecast": ~past,
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=CAPACITY_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"date": "datetime64[s]", "hour": "int64", "is_forecast": "bool"})[
        CAPACITY_COLUMNS
    ]


# --------------------------------------------------------------------------- #
# assumption checks
# --------------------------------------------------------------------------- #
def _handle_gap_moments(
    ds: Dataset, market: str, period: Period, cap_seconds: float
) -> pd.DataFrame:
    """Per queue: count, sum and sum of squares of gaps between a moderator's decisions."""
    dec = decisions_in_period(ds, market=market, period=period)
    h = dec.filter(
        dec.routing.isin(list(HUMAN_ROUTINGS))
        & dec.moderator_id.notnull()
        & dec.decided_at.notnull()
    )
    w = ibis.window(group_by=h.moderator_id, order_by=h.decided_at)
    h = h.mutate(_prev=h.decided_at.lag().over(w))
    gap = (epoch_seconds(h.decided_at) - epoch_seconds(h._prev)).cast("float64")
    h = h.mutate(_gap=gap)
    h = h.filter(h._prev.notnull() & (h._gap > 0) & (h._gap <= cap_seconds))
    return (
        h.group_by("queue")
        .aggregate(n=h.count(), s1=h._gap.sum(), s2=(h._gap * h._gap).sum())
        .to_pandas()
    )


def _abandonment(
    ds: Dataset, market: str, period: Period, slas: Mapping[str, float]
) -> pd.DataFrame:
    """Per queue: human items old enough to judge, and those never decided."""
    tz = ds.params.market(market).timezone
    hi = period_bounds_utc(period.start, period.end, tz)[1]
    dec = decisions_in_period(ds, market=market, period=period)
    dec = dec.filter(dec.routing.isin(list(HUMAN_ROUTINGS)) & dec.queue.isin(list(slas)))
    wait = ibis.cases(
        *[(dec.queue == q, ibis.literal(s * ABANDON_SLA_MULTIPLE)) for q, s in slas.items()],
        else_=None,
    )
    age = epoch_seconds(ibis.literal(hi)).cast("float64") - epoch_seconds(dec.created_at).cast(
        "float64"
    )
    old = dec.filter(age > wait)
    never = old.decided_at.isnull() | (old.decided_at >= ibis.literal(hi))
    return old.group_by("queue").aggregate(n=old.count(), k=never.cast("int64").sum()).to_pandas()


def assumption_checks(
    ds: Dataset,
    market: str,
    *,
    history_days: int = 28,
    queues: Sequence[str] | None = None,
    mask_kinds: Sequence[str] = ("outage",),
    sla_seconds: Mapping[str, float] | None = None,
    gap_cap_seconds: float = 1800.0,
    end: date | str | None = None,
) -> pd.DataFrame:
    """Where the Erlang C assumptions are off for a market's queues.

    Parameters
    ----------
    ds : Dataset
    market : str
    history_days : int, default 28
        Days examined, ending at ``end``.
    queues : sequence of str, optional
        By default every queue with human-handled arrivals and an SLA.
    mask_kinds : sequence of str, default ("outage",)
        Event kinds left out of the dispersion fit.
    sla_seconds : mapping, optional
        SLA per queue, overriding the parameters.
    gap_cap_seconds : float, default 1800
        Longest gap between a moderator's consecutive decisions still read as
        handling (longer gaps are breaks).
    end : date or ISO string, optional
        Last day; by default the last day with decisions.

    Returns
    -------
    pandas.DataFrame
        :data:`CHECK_COLUMNS` ``market, queue, check, value, threshold, ok, n,
        note``, four rows per queue:

        - ``arrival_dispersion`` — Pearson chi-square / df of hourly
          human-handled arrivals around the seasonal Poisson fit of
          :mod:`qualitylab.forecast`; about 1 for Poisson arrivals, ok up to
          1.5 (bursty arrivals make Erlang C understaff). ``n`` hours.
        - ``handle_time_cv`` — coefficient of variation of the gaps between a
          moderator's consecutive decisions (``<= gap_cap_seconds``), a proxy
          for handle time, which the contract does not carry; 1 for
          exponential handle times, ok in [0.5, 1.5]. Otherwise check the
          requirement with :func:`simulate_mgc`. ``n`` gaps.
        - ``abandonment`` — share of human-handled items older than 10x the
          SLA that were never decided (a live that ended before review);
          Erlang C assumes nobody leaves, ok up to 1%. ``n`` items.
        - ``offered_load`` — mean offered load in Erlangs per hour (arrivals
          x handle time); below 1, the whole moderators Erlang C needs in every
          hour with arrivals dominate the requirement, so pooling queues (one
          team for several queues) is the lever. ``n`` hours.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", markets=["SG"], days=28, seed=1)
    >>> chk = assumption_checks(open_dataset(folder), "SG", queues=["live_stream"])
    >>> chk["check"].tolist()
    ['arrival_dispersion', 'handle_time_cv', 'abandonment', 'offered_load']
    """
    history_days = check_int(history_days, "history_days", MIN_HISTORY_DAYS)
    cap = float(_array(gap_cap_seconds, "gap_cap_seconds", positive=True))
    period = data_period(ds, market, end, history_days, MIN_HISTORY_DAYS)
    hist = hourly_counts(ds, market, period, queues, HUMAN_ROUTINGS, mask_kinds, None)
    slas = _queue_slas(ds, market, sorted(hist["queue"].unique()), sla_seconds)
    hist = hist[hist["queue"].isin(list(slas))]
    if hist.empty:
        return pd.DataFrame(columns=CHECK_COLUMNS)
    gaps = _handle_gap_moments(ds, market, period, cap).set_index("queue")
    aband = _abandonment(ds, market, period, slas).set_index("queue")
    planned = ds.params.market(market).aht_seconds
    ahts = {q: float(planned[q]) for q in slas if q in planned}
    missing = [q for q in slas if q not in planned]
    if missing and ds.has("staffing"):
        work = _human_work(ds, market, period, slas)
        staff = _staffing(ds, market, period.start, period.end)
        ahts.update(_handle_times(ds, market, missing, work, staff, period, None))
    rows: list[dict[str, Any]] = []

    def add(queue: str, check: str, value: float, threshold: float, ok: bool, n: int, note: str):
        rows.append(
            {
                "market": market,
                "queue": queue,
                "check": check,
                "value": value,
                "threshold": threshold,
                "ok": bool(ok) if np.isfinite(value) else False,
                "n": n,
                "note": note,
            }
        )

    for queue, g in hist.groupby("queue", sort=True):
        y, hour, dow, masked = series_arrays(g)
        fit = fit_series(y, hour, dow, ~masked)
        disp = float("nan") if fit.empty else fit.dispersion
        add(
            queue,
            "arrival_dispersion",
            disp,
            DISPERSION_MAX,
            disp <= DISPERSION_MAX,
            fit.n,
            "Pearson chi2/df of hourly arrivals around the seasonal Poisson fit; "
            + (
                "consistent with Poisson arrivals"
                if disp <= DISPERSION_MAX
                else "over-dispersed: bursty arrivals, Erlang C understaffs"
            ),
        )
        if queue in gaps.index and gaps.at[queue, "n"] > 1:
            n = float(gaps.at[queue, "n"])
            mean = gaps.at[queue, "s1"] / n
            var = max(gaps.at[queue, "s2"] / n - mean**2, 0.0) * n / (n - 1)
            cv = float(np.sqrt(var) / mean) if mean > 0 else float("nan")
            n_gaps = int(n)
        else:
            cv, n_gaps = float("nan"), 0
        lo, hi = CV_RANGE
        add(
            queue,
            "handle_time_cv",
            cv,
            1.0,
            lo <= cv <= hi,
            n_gaps,
            f"proxy: gaps <= {cap:.0f}s between a moderator's consecutive decisions "
            f"(per-item handle time is not in the data); exponential = 1, ok in [{lo}, {hi}]; "
            "otherwise evaluate staffing with simulate_mgc",
        )
        if queue in aband.index and aband.at[queue, "n"] > 0:
            n_old = int(aband.at[queue, "n"])
            share = float(aband.at[queue, "k"]) / n_old
        else:
            n_old, share = 0, float("nan")
        add(
            queue,
            "abandonment",
            share,
            ABANDON_MAX,
            share <= ABANDON_MAX,
            n_old,
            f"share of human-handled items older than {ABANDON_SLA_MULTIPLE:.0f}x the SLA "
            "never decided; Erlang C assumes nobody leaves the queue",
        )
        aht = ahts.get(queue, float("nan"))
        load = float(np.mean(y) * aht / 3600.0) if np.isfinite(aht) else float("nan")
        add(
            queue,
            "offered_load",
            load,
            LOAD_MIN,
            load >= LOAD_MIN,
            len(y),
            "mean Erlangs per hour (arrivals x handle time); below 1 the whole moderator "
            "needed in every hour with arrivals dominates: pool queues",
        )
    return pd.DataFrame(rows, columns=CHECK_COLUMNS)


#: Columns of :func:`capacity_summary`, in order.
SUMMARY_COLUMNS = [
    "queue",
    "kind",
    "queue_hours",
    "hours_short",
    "share_short",
    "largest_gap",
    "moderator_hours_short",
    "predicted_sla",
    "measured_sla",
]


def capacity_summary(table: pd.DataFrame, *, tolerance: float = 0.5) -> pd.DataFrame:
    """Per queue, history and forecast: how many hours are short of moderators.

    Parameters
    ----------
    table : pandas.DataFrame
        :func:`capacity_table` output.
    tolerance : float, default 0.5
        An hour is *short* when its gap exceeds this many moderators (half a
        person: staffing is planned in people, the requirement is continuous).

    Returns
    -------
    pandas.DataFrame
        :data:`SUMMARY_COLUMNS`: ``kind`` is ``history`` or ``forecast``;
        ``moderator_hours_short`` sums the positive gaps; ``predicted_sla``
        and ``measured_sla`` are arrival-weighted means over the hours (the
        measured one only for history).

    Examples
    --------
    >>> t = pd.DataFrame({"queue": ["q"] * 3, "gap": [1.0, -0.5, 0.2], "arrivals": [10.0, 5.0, 5.0],
    ...                   "predicted_sla": [0.7, 0.99, 0.9], "measured_sla": [0.6, 1.0, 0.9],
    ...                   "is_forecast": [False] * 3})
    >>> capacity_summary(t)[["queue", "hours_short", "largest_gap", "moderator_hours_short"]]
      queue  hours_short  largest_gap  moderator_hours_short
    0     q            1          1.0                    1.2
    """
    need = ["queue", "gap", "arrivals", "predicted_sla", "measured_sla", "is_forecast"]
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise DataContractError(
            f"capacity_summary needs capacity_table output; missing column(s) {missing}",
            table="capacity",
            column=missing[0],
            check="missing_column",
        )
    df = table[need].copy()
    df["kind"] = np.where(df["is_forecast"].astype(bool), "forecast", "history")
    rows = []
    for (queue, kind), g in df.groupby(["queue", "kind"], sort=True):
        gap = g["gap"].to_numpy(dtype=float)
        w = g["arrivals"].to_numpy(dtype=float)

        def wmean(col: str, g: pd.DataFrame = g, w: np.ndarray = w) -> float:
            v = g[col].to_numpy(dtype=float)
            ok = np.isfinite(v) & (w > 0)
            return float(np.average(v[ok], weights=w[ok])) if ok.any() else float("nan")

        rows.append(
            {
                "queue": queue,
                "kind": kind,
                "queue_hours": int(len(g)),
                "hours_short": int(np.sum(gap > tolerance)),
                "share_short": float(np.mean(gap > tolerance)) if len(g) else float("nan"),
                "largest_gap": float(np.nanmax(gap)) if np.isfinite(gap).any() else float("nan"),
                "moderator_hours_short": float(np.nansum(np.clip(gap, 0, None))),
                "predicted_sla": wmean("predicted_sla"),
                "measured_sla": wmean("measured_sla") if kind == "history" else float("nan"),
            }
        )
    out = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    order = {"history": 0, "forecast": 1}
    return out.sort_values(
        ["queue", "kind"], key=lambda s: s.map(order) if s.name == "kind" else s
    ).reset_index(drop=True)
