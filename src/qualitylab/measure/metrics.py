"""Operational and QA metrics, aggregated in the engine.

Every function takes a :class:`~qualitylab.sources.Dataset`, a grain ``by``
and a market-local period, runs ibis aggregations in the data's engine, and
returns the long tidy table ``[*by, metric, value, n, ci_low, ci_high,
small_n]`` with statistics computed on the aggregates.

Grains: ``market, vendor, site, queue, language, policy, moderator_id,
routing, ai_model`` and the market-local ``date``, ``week`` (Monday) and
``month``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.data.localtime import (
    date_at_offset,
    epoch_seconds,
    offset_segments,
    period_bounds_utc,
)
from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure.stats import proportion_ci, stratified_proportion

__all__ = [
    "GRAINS",
    "METRIC_COLUMNS",
    "Period",
    "operational_metrics",
    "qa_metrics",
    "qa_alignment",
    "audited_decisions",
    "ai_workflow_metrics",
    "override_quality",
    "decisions_in_period",
    "last_full_weeks",
    "resolve_period",
    "stratum_key",
    "design_rates",
    "STRATUM_SUMS",
    "check_by",
    "PERIOD",
    "decisions_in_periods",
    "decision_summary",
    "staffing_hours",
    "operational_from_summary",
    "workflow_from_summary",
    "audits_in_periods",
    "qa_from_audits",
    "alignment_from_audits",
]

GRAINS = (
    "market",
    "vendor",
    "site",
    "queue",
    "language",
    "policy",
    "moderator_id",
    "routing",
    "ai_model",
    "date",
    "week",
    "month",
)
TIME_GRAINS = ("date", "week", "month")
METRIC_COLUMNS = ["metric", "value", "n", "ci_low", "ci_high", "small_n"]
# Response-time histogram: bin k holds [1.05**k, 1.05**(k+1)) seconds (bin 0 also
# holds times under one second), so percentiles carry at most a 5% binning error
# before interpolation. The SLA is an exact edge (see decision_summary).
_RATIO = 1.05
_LOG_RATIO = math.log(_RATIO)


@dataclass(frozen=True)
class Period:
    """A market-local date range, inclusive, and its UTC bounds."""

    start: date
    end: date

    @property
    def days(self) -> int:
        """Number of days in the period."""
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of equal length just before this one."""
        return Period(self.start - timedelta(days=self.days), self.start - timedelta(days=1))


def last_full_weeks(as_of: date | str, weeks: int = 4) -> Period:
    """The last ``weeks`` full Monday–Sunday weeks ending on or before ``as_of``.

    Examples
    --------
    >>> p = last_full_weeks("2026-11-25", 4)   # a Wednesday
    >>> p.start.isoformat(), p.end.isoformat()
    ('2026-10-26', '2026-11-22')
    >>> last_full_weeks("2026-11-22", 1).end.isoformat()   # a Sunday counts
    '2026-11-22'
    """
    d = _as_date(as_of)
    if d is None:
        raise QualityLabError("as_of is required")
    if weeks < 1:
        raise QualityLabError(f"weeks must be >= 1, got {weeks}")
    end = d - timedelta(days=(d.weekday() + 1) % 7)
    return Period(end - timedelta(days=7 * weeks - 1), end)


def _as_date(value: date | str | None) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise QualityLabError(f"not an ISO date (YYYY-MM-DD): {value!r}") from None


def resolve_period(
    ds: Dataset, *, market: str | None, start: date | str | None, end: date | str | None
) -> Period:
    """Fill a missing start/end from the data's range (market-local dates).

    Parameters
    ----------
    ds : Dataset
    market : str, optional
        Market whose calendar defines the dates (UTC when ``None``).
    start, end : date or ISO string, optional
        Inclusive bounds; each defaults to the first/last day with data.

    Returns
    -------
    Period
    """
    s, e = _as_date(start), _as_date(end)
    if s is None or e is None:
        dec = ds.table("decisions")
        if market is not None:
            dec = dec.filter(dec.market == market)
        rng = ds.remember(  # a slice's range does not change
            ("decisions_range", market),
            lambda: dec.aggregate(lo=dec.created_at.min(), hi=dec.created_at.max()).to_pandas(),
        )
        if rng.empty or pd.isna(rng.loc[0, "lo"]):
            raise QualityLabError(f"no decisions for market {market!r}; cannot infer the period")
        tz = ds.params.market(market).tz if market else UTC
        # utc=True: some engines (Spark) hand back UTC instants without a time zone
        lo = pd.to_datetime(rng.loc[0, "lo"], utc=True).tz_convert(tz).date()
        hi = pd.to_datetime(rng.loc[0, "hi"], utc=True).tz_convert(tz).date()
        s = s or lo
        e = e or hi
    if e < s:
        raise QualityLabError(f"period end {e} is before its start {s}")
    return Period(s, e)


def _check_by(by: Sequence[str] | str | None, allowed: Sequence[str] = GRAINS) -> list[str]:
    if by is None:
        return []
    cols = [by] if isinstance(by, str) else list(by)
    bad = [c for c in cols if c not in allowed]
    if bad:
        raise QualityLabError(f"unknown grain {bad[0]!r} in by=; choose from {', '.join(allowed)}")
    if len(set(cols)) != len(cols):
        raise QualityLabError(f"by= repeats a column: {cols}")
    return cols


def check_by(by: Sequence[str] | str | None, allowed: Sequence[str] = GRAINS) -> list[str]:
    """The grain `by` as a list, checked against `allowed` (a clear error otherwise).

    Examples
    --------
    >>> check_by("vendor")
    ['vendor']
    """
    return _check_by(by, allowed)


def _timezones(ds: Dataset, market: str | None) -> dict[str, str]:
    if market is not None:
        return {market: ds.params.market(market).timezone}
    return {code: m.timezone for code, m in ds.params.markets.items()}


def _offset_expr(
    ts: ir.TimestampValue, market_col: ir.StringValue, tzs: Mapping[str, str], period: Period
) -> ir.IntegerValue:
    lo = datetime.combine(period.start - timedelta(days=2), datetime.min.time(), tzinfo=UTC)
    hi = datetime.combine(period.end + timedelta(days=2), datetime.min.time(), tzinfo=UTC)

    def one(tz: str) -> ir.IntegerValue:
        segs = offset_segments(tz, lo, hi)
        if len(segs) == 1:
            return ibis.literal(segs[0][1])
        branches = [
            (ts < ibis.literal(nxt), ibis.literal(sec))
            for (_, sec), (nxt, _) in zip(segs[:-1], segs[1:], strict=True)
        ]
        return ibis.cases(*branches, else_=ibis.literal(segs[-1][1]))

    per_market = {code: one(tz) for code, tz in tzs.items()}
    if len(per_market) == 1:
        return next(iter(per_market.values()))
    return ibis.cases(*[(market_col == code, e) for code, e in per_market.items()], else_=None)


def _local_date(t: ir.Table, col: str, tzs: Mapping[str, str], period: Period) -> ir.DateValue:
    return date_at_offset(t[col], _offset_expr(t[col], t.market, tzs, period))


def decisions_in_period(
    ds: Dataset,
    *,
    market: str | None = None,
    period: Period,
    by: Sequence[str] = (),
    pad_days: int = 0,
    table: ir.Table | None = None,
) -> ir.Table:
    """Decisions created in a market-local period, with time grains added.

    Adds the columns ``date``, ``week`` and ``month`` (market-local) and filters
    to the period (widened by ``pad_days`` on both sides). `table` replaces
    ``ds.table("decisions")`` (e.g. the decisions that were audited).
    """
    dec = ds.table("decisions") if table is None else table
    tzs = _timezones(ds, market)
    if market is not None:
        dec = dec.filter(dec.market == market)
    else:
        dec = dec.filter(dec.market.isin(list(tzs)))
    padded = Period(period.start - timedelta(days=pad_days), period.end + timedelta(days=pad_days))
    # UTC bounds first (one market's, or the widest over all markets), so the
    # engine prunes by created_at before computing local dates row by row
    bounds = [period_bounds_utc(padded.start, padded.end, tz) for tz in tzs.values()]
    if bounds:
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        dec = dec.filter((dec.created_at >= lo) & (dec.created_at < hi))
    d = _local_date(dec, "created_at", tzs, padded)
    dec = dec.mutate(date=d)
    dec = dec.mutate(week=dec.date.truncate("W"), month=dec.date.truncate("M"))
    if market is None:
        dec = dec.filter(dec.date.between(padded.start, padded.end))
    return dec


def _as_of(period: Period, tzs: Mapping[str, str], market: str | None) -> datetime:
    """The UTC instant at which the period ends (start of the next local day)."""
    if market is not None:
        return period_bounds_utc(period.start, period.end, tzs[market])[1]
    # Across markets: the latest local midnight, so no market is cut short.
    return max(period_bounds_utc(period.start, period.end, tz)[1] for tz in tzs.values())


def _finish(df: pd.DataFrame, by: Sequence[str], min_n: int) -> pd.DataFrame:
    out = df.copy()
    out["small_n"] = out["n"].fillna(0) < min_n
    cols = [*by, *METRIC_COLUMNS]
    for c in ("value", "n", "ci_low", "ci_high"):
        out[c] = out[c].astype("float64")
    return out[cols].sort_values([*by, "metric"], kind="stable").reset_index(drop=True)


def _min_n(ds: Dataset, market: str | None) -> int:
    return ds.params.market(market).min_n if market else ds.params.defaults.min_n


def _confidence(ds: Dataset, market: str | None) -> float:
    return (
        ds.params.market(market).confidence_level if market else ds.params.defaults.confidence_level
    )


def _sla_map(
    ds: Dataset, market: str | None, override: Mapping[str, float] | None
) -> dict[str, float]:
    base = dict(ds.params.market(market).sla_seconds if market else ds.params.defaults.sla_seconds)
    base.update(override or {})
    return base


# --------------------------------------------------------------------------- #
# Operational metrics
# --------------------------------------------------------------------------- #
def operational_metrics(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    sla_seconds: Mapping[str, float] | None = None,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Volume, backlog, SLA compliance, response percentiles, throughput, utilization.

    Parameters
    ----------
    ds : Dataset
    market : str, optional
        Restrict to one market (its calendar defines dates); all markets otherwise.
    by : sequence of str
        Grain, any of :data:`GRAINS`.
    start, end : date or ISO string, optional
        Market-local period, inclusive; defaults to the data's range.
    sla_seconds : mapping, optional
        SLA per queue, overriding the parameters.
    confidence_level : float, optional
        Defaults to the parameters' level.

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high, small_n]`` with metrics
        ``volume`` (items created; census count, no interval), ``backlog``
        (of those, still pending when the period ends), ``sla_compliance``,
        ``response_p50``, ``response_p90``, ``response_p99`` (seconds),
        ``throughput`` (human decisions per productive hour; Poisson interval)
        and ``utilization`` (productive / scheduled hours) where staffing covers
        the grain.

    Notes
    -----
    Items still pending at the end of the period are right-censored response
    times. SLA compliance and percentiles use the Kaplan–Meier estimator on an
    engine histogram of response times (bins 5% wide on a log scale, with the
    queue's SLA as an exact edge; events before censorings within a bin), so a
    growing backlog cannot make response times look better. Pending items
    already older than the SLA count as breaches. Compliance intervals are
    Wilson intervals at the Greenwood effective sample size
    :math:`n^* = \\hat p(1-\\hat p)/\\widehat{var}`, which equal plain Wilson
    intervals when nothing is censored. Percentile intervals invert the
    pointwise Greenwood band (Brookmeyer–Crowley style). A percentile the data
    cannot reach yet (too much still pending) is NaN.
    """
    cols = _check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or _confidence(ds, market)
    slas = _sla_map(ds, market, sla_seconds)
    summary = decision_summary(ds, market=market, by=cols, periods=[period], slas=slas)
    staff = staffing_hours(ds, market=market, by=cols, periods=[period])
    out = operational_from_summary(summary, cols, slas=slas, staffing=staff, confidence_level=cl)
    if out.empty and cols:  # grouped and no decisions: no segment to report
        where = f" in market {market}" if market else ""
        warnings.warn(
            f"no decisions{where} in {period.start}..{period.end}; operational metrics are empty",
            stacklevel=2,
        )
        return _finish(pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]]), cols, 1)
    return _finish(out, cols, _min_n(ds, market))


# --------------------------------------------------------------------------- #
# One pass per table: the engine aggregates the metric families share
# --------------------------------------------------------------------------- #
PERIOD = "_period"
# per-(segment, queue, bin, le_sla, event) sums of decision_summary besides k
_DECISION_SUMS = ("k", "human", "acted", "auto", "assisted", "overrides")


def decisions_in_periods(
    ds: Dataset,
    *,
    market: str | None = None,
    periods: Sequence[Period],
    table: ir.Table | None = None,
) -> ir.Table:
    """Decisions created in any of `periods`, with ``_period`` (the period's index).

    One scan serves several periods (a scorecard's current and previous
    period): the rows are :func:`decisions_in_period` over the span of the
    periods, labelled by the period whose market-local dates hold them (rows
    in a gap between periods are dropped).
    """
    periods = list(periods)
    span = Period(min(p.start for p in periods), max(p.end for p in periods))
    dec = decisions_in_period(ds, market=market, period=span, table=table)
    if len(periods) == 1:
        return dec.mutate(_period=ibis.literal(0))
    if market is not None:  # one calendar: compare instants, no local date per row
        tz = ds.params.market(market).timezone
        bounds = [period_bounds_utc(p.start, p.end, tz) for p in periods]
        label = ibis.cases(
            *[
                ((dec.created_at >= lo) & (dec.created_at < hi), i)
                for i, (lo, hi) in enumerate(bounds)
            ],
            else_=None,
        )
    else:
        label = _period_of(dec.date, periods)
    dec = dec.mutate(_period=label)
    days = sorted((p.start, p.end) for p in periods)
    covered = all(
        b[0] == a[1] + timedelta(days=1) for a, b in zip(days[:-1], days[1:], strict=True)
    )
    # contiguous periods cover the span, whose rows are already selected
    return dec if covered else dec.filter(dec._period.notnull())


def _period_of(day: ir.DateValue, periods: Sequence[Period]) -> ir.IntegerValue:
    """The index of the period holding each market-local `day` (null in none)."""
    return ibis.cases(
        *[(day.between(p.start, p.end), i) for i, p in enumerate(periods)], else_=None
    )


def _period_ends(
    t: ir.Table, ds: Dataset, market: str | None, periods: Sequence[Period]
) -> ir.TimestampValue:
    """The UTC instant at which each row's period ends (see :func:`_as_of`)."""
    tzs = _timezones(ds, market)
    ends = [_as_of(p, tzs, market) for p in periods]
    if len(ends) == 1:
        return ibis.literal(ends[0])
    return ibis.cases(*[(t._period == i, ibis.literal(e)) for i, e in enumerate(ends)], else_=None)


def decision_summary(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] = (),
    periods: Sequence[Period],
    slas: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Every decision-side count of the scorecard, in one engine pass.

    Parameters
    ----------
    ds : Dataset
    market : str, optional
    by : sequence of str
        Grain (as :func:`operational_metrics`); ``"_period"`` may be among
        them to keep the periods apart.
    periods : sequence of Period
        One or more market-local periods (a scorecard's current and previous).
    slas : mapping, optional
        SLA seconds per queue (default: the parameters').

    Returns
    -------
    pandas.DataFrame
        One row per ``[*by, queue, __bin, __le_sla, __event]``: the
        response-time histogram of :func:`operational_metrics` (``k`` items;
        ``__event`` decided before its period ended, else censored; ``__bin``
        the log-scale bin, ``__le_sla`` within the queue's SLA) and, summed
        in the same cells, ``human`` (decided by a person), ``acted`` (with an
        action), ``auto`` (acted by the AI alone), ``assisted`` and
        ``overrides`` (ai_assisted items whose human decision differs from
        the model's). Volume, backlog, SLA compliance, percentiles, workflow
        rates and the decisions behind throughput are sums over these cells
        (:func:`operational_from_summary`, :func:`workflow_from_summary`).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG"])
    >>> ds = open_dataset(folder)
    >>> p = resolve_period(ds, market="SG", start=None, end=None)
    >>> s = decision_summary(ds, market="SG", by=["vendor"], periods=[p])
    >>> int(s["k"].sum()) == int(ds.table("decisions").count().to_pyarrow().as_py())
    True
    """
    cols = list(by)
    slas = _sla_map(ds, market, None) if slas is None else dict(slas)
    dec = decisions_in_periods(ds, market=market, periods=periods)
    end = _period_ends(dec, ds, market, periods)
    decided = dec.decided_at.notnull() & (dec.decided_at < end)
    stop = ibis.ifelse(decided, dec.decided_at, end)
    secs = (epoch_seconds(stop) - epoch_seconds(dec.created_at)).cast("float64")
    secs = ibis.greatest(secs, 0.0)
    sla = ibis.cases(
        *[(dec.queue == q, ibis.literal(float(s))) for q, s in slas.items()], else_=None
    )
    acted = dec.action.notnull()
    assisted = dec.routing == "ai_assisted"
    t = dec.mutate(
        __bin=(ibis.greatest(secs, 1.0).ln() / _LOG_RATIO).floor().cast("int64"),
        __event=decided,
        __le_sla=secs <= sla,
    )
    keys = [*cols, *([] if "queue" in cols else ["queue"]), "__bin", "__le_sla", "__event"]
    # a null routing leaves an item out of a sum (as filtering on it would)
    return (
        t.group_by(keys)
        .aggregate(
            k=t.count(),
            human=(t.decided_at.notnull() & (t.routing != "ai_auto")).cast("int64").sum(),
            acted=acted.cast("int64").sum(),
            auto=(acted & (t.routing == "ai_auto")).cast("int64").sum(),
            assisted=(acted & assisted).cast("int64").sum(),
            overrides=(acted & assisted & _override_expr(t)).cast("int64").sum(),
        )
        .to_pandas()
    )


def _segment_sums(summary: pd.DataFrame, cols: list[str], names: Sequence[str]) -> pd.DataFrame:
    """Sums of `names` per segment (one row when `cols` is empty)."""
    vals = summary[list(names)].fillna(0)
    if not cols:
        return pd.DataFrame([vals.sum()]).astype("int64")
    out = (
        pd.concat([summary[cols], vals], axis=1)
        .groupby(cols, sort=False, dropna=False, as_index=False)[list(names)]
        .sum()
    )
    return out


def staffing_hours(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] = (),
    periods: Sequence[Period],
) -> pd.DataFrame | None:
    """Scheduled and productive hours per segment (``None`` when not measurable).

    ``None`` when the dataset has no ``staffing`` table or the grain has a
    column staffing does not carry (language, policy, ...). ``"_period"`` may
    be in `by`, as in :func:`decision_summary`.
    """
    cols = list(by)
    staff_dims = {"market", "vendor", "site", "queue", "date", "week", "month", PERIOD}
    if not ds.has("staffing") or not set(cols) <= staff_dims:
        return None
    periods = list(periods)
    st = ds.table("staffing")
    if market is not None:
        st = st.filter(st.market == market)
    if len(periods) == 1:
        st = st.filter(st.date.between(periods[0].start, periods[0].end))
        st = st.mutate(_period=ibis.literal(0))
    else:
        st = st.mutate(_period=_period_of(st.date, periods))
        st = st.filter(st._period.notnull())
    st = st.mutate(week=st.date.truncate("W"), month=st.date.truncate("M"))
    aggs = {"scheduled": st.scheduled_hours.sum(), "productive": st.productive_hours.sum()}
    hours = st.group_by(cols).aggregate(**aggs) if cols else st.aggregate(**aggs)
    h = hours.to_pandas()
    if cols == [PERIOD]:  # ungrouped: a period without staffing rows still gets its row
        h = h.set_index(PERIOD).reindex(range(len(periods))).rename_axis(PERIOD).reset_index()
    return None if h.empty else h


def operational_from_summary(
    summary: pd.DataFrame,
    cols: Sequence[str],
    *,
    slas: Mapping[str, float],
    staffing: pd.DataFrame | None = None,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Operational metrics from :func:`decision_summary` (and :func:`staffing_hours`).

    Returns the rows of :func:`operational_metrics` (without ``small_n``);
    empty when a grouped summary has no rows.
    """
    cols = list(cols)
    counts = _segment_sums(
        summary.assign(backlog=np.where(summary["__event"].astype(bool), 0, summary["k"])),
        cols,
        ("k", "backlog", "human"),
    )
    rows = []
    for metric in ("volume", "backlog"):
        part = counts[cols].copy()
        part["metric"] = metric
        part["value"] = counts["k" if metric == "volume" else "backlog"].astype("float64")
        part["n"] = counts["k"].astype("float64")
        part["ci_low"] = np.nan
        part["ci_high"] = np.nan
        rows.append(part)
    rows.append(_km_metrics(summary, cols, slas, confidence_level))
    if staffing is not None:
        staff = _staffing_metrics(staffing, counts, cols, confidence_level)
        if staff is not None:
            rows.append(staff)
    parts = [r for r in rows if len(r)]
    if not parts:
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]])
    return pd.concat(parts, ignore_index=True)


def _km(group: pd.DataFrame) -> pd.DataFrame:
    """Kaplan–Meier over ordered bins: columns d (events), c (censored)."""
    n_at_risk = group["d"].sum() + group["c"].sum()
    before = n_at_risk - (group["d"] + group["c"]).cumsum().shift(fill_value=0)
    hazard = np.where(before > 0, group["d"] / before.where(before > 0, 1), 0.0)
    surv = np.cumprod(1 - hazard)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(
            (before - group["d"]) > 0, group["d"] / (before * (before - group["d"])), 0.0
        )
    var = surv**2 * np.cumsum(term)
    return pd.DataFrame({"surv": surv, "var": var})


def _wilson_eff(p: np.ndarray, var: np.ndarray, n: np.ndarray, cl: float):
    """Wilson interval at the effective sample size p(1-p)/var."""
    p = np.asarray(p, dtype=float)
    var = np.asarray(var, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(var > 0, p * (1 - p) / var, n)
    n_eff = np.where(np.isfinite(n_eff) & (n_eff > 0), np.minimum(n_eff, n), n)
    k = p * n_eff
    low, high = proportion_ci(k, n_eff, confidence_level=cl, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def _km_metrics(
    hist: pd.DataFrame, cols: list[str], slas: Mapping[str, float], cl: float
) -> pd.DataFrame:
    """SLA compliance and response percentiles per group, all groups at once."""
    hist = hist.rename(columns={"__bin": "bin", "__le_sla": "le_sla", "__event": "event"})
    unknown_queues = sorted(set(hist["queue"].unique()) - set(slas))
    if unknown_queues:
        warnings.warn(
            f"no SLA configured for queue(s) {unknown_queues}; they are left out of "
            "sla_compliance (set sla_seconds in parameters)",
            stacklevel=3,
        )
    if hist.empty:
        return pd.DataFrame(columns=[*cols, "metric", "value", "n", "ci_low", "ci_high"])
    event = hist["event"].to_numpy(dtype=bool)
    k = hist["k"].to_numpy(dtype=float)
    hist = hist.assign(
        gid=hist.groupby(cols, dropna=False, sort=True).ngroup() if cols else 0,
        d=np.where(event, k, 0.0),
        c=np.where(event, 0.0, k),
        le_sla=hist["le_sla"].astype("boolean").fillna(False).astype(bool),
    )
    keys = hist.drop_duplicates("gid").set_index("gid")[cols].sort_index()
    parts = []

    # SLA compliance: KM per (group, queue) at the queue's SLA, pooled by volume.
    sla_steps = (
        hist[hist["queue"].isin(list(slas))]
        .groupby(["gid", "queue", "bin", "le_sla"], sort=False)[["d", "c"]]
        .sum()
        .reset_index()
        .sort_values(["gid", "queue", "bin", "le_sla"], ascending=[True, True, True, False])
        .reset_index(drop=True)
    )
    if len(sla_steps):
        gq = sla_steps.groupby(["gid", "queue"], sort=False).ngroup().to_numpy()
        surv, var = _km_grouped(gq, sla_steps["d"].to_numpy(), sla_steps["c"].to_numpy())
        sla_steps = sla_steps.assign(gq=gq, surv=surv, var=var)
        by_gq = sla_steps.groupby("gq", sort=False)
        nq = by_gq[["d", "c"]].sum().sum(axis=1)
        at = sla_steps[sla_steps["le_sla"]].groupby("gq", sort=False)[["surv", "var"]].last()
        per_q = pd.DataFrame({"gid": by_gq["gid"].first(), "nq": nq})
        per_q = per_q.join(at).fillna({"surv": 1.0, "var": 0.0})
        per_q["num"] = per_q["nq"] * (1 - per_q["surv"])
        per_q["vs"] = per_q["nq"] ** 2 * per_q["var"]
        pooled = per_q.groupby("gid")[["num", "vs", "nq"]].sum()
        pooled = pooled[pooled["nq"] > 0]
        p = (pooled["num"] / pooled["nq"]).to_numpy()
        v = (pooled["vs"] / pooled["nq"] ** 2).to_numpy()
        lo, hi = _wilson_eff(p, v, pooled["nq"].to_numpy(), cl)
        parts.append(
            pd.DataFrame(
                {
                    "gid": pooled.index,
                    "order": 0,
                    "metric": "sla_compliance",
                    "value": p,
                    "n": pooled["nq"].to_numpy(),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        )

    # Percentiles: KM over all queues of a group on the seconds grid.
    steps = hist.groupby(["gid", "bin"], sort=True)[["d", "c"]].sum().reset_index()
    gid = steps["gid"].to_numpy()
    surv, var = _km_grouped(gid, steps["d"].to_numpy(), steps["c"].to_numpy())
    f = 1 - surv
    se = np.sqrt(var)
    b = steps["bin"].to_numpy(dtype=float)
    lower = np.where(b <= 0, 0.0, _RATIO**b)
    upper = _RATIO ** (b + 1)
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    groups = gid[starts]
    n_all = np.add.reduceat(steps["d"].to_numpy() + steps["c"].to_numpy(), starts)
    for order, (q, name) in enumerate(
        ((0.5, "response_p50"), (0.9, "response_p90"), (0.99, "response_p99")), start=1
    ):
        qs = np.full(len(starts), q)
        value, first = _quantiles_grouped(f, lower, upper, starts, qs)
        # Interval: the quantiles at the Wilson bounds of q, at the Greenwood
        # effective sample size where the estimate sits (order-statistic
        # interval when nothing is censored).
        ok = first >= 0
        i = np.where(ok, first, 0)
        fi, sei = f[i], se[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            n_eff = np.where(sei > 0, fi * (1 - fi) / sei**2, n_all)
        n_eff = np.clip(n_eff, 1.0, n_all)
        n_eff = np.where(ok & (fi < 1), n_eff, n_all)
        lq, hq = proportion_ci(q * n_eff, n_eff, confidence_level=cl)
        ci_low, _ = _quantiles_grouped(f, lower, upper, starts, np.asarray(lq, dtype=float))
        hq = np.asarray(hq, dtype=float)
        ci_high, at = _quantiles_grouped(f, lower, upper, starts, hq)
        # an upper limit reached only at the step that empties the risk set (F = 1,
        # Greenwood variance 0) is not bounded by the data: not reached (NaN). With
        # 30 items the p90's exact order-statistic interval has no upper end either.
        emptied = (at >= 0) & (f[np.maximum(at, 0)] >= 1 - 1e-12) & (hq < 1 - 1e-12)
        ci_high = np.where(emptied, np.nan, ci_high)
        parts.append(
            pd.DataFrame(
                {
                    "gid": groups,
                    "order": order,
                    "metric": name,
                    "value": value,
                    "n": n_all,
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True).sort_values(["gid", "order"], kind="stable")
    out = keys.reindex(out["gid"]).reset_index(drop=True).join(out.reset_index(drop=True))
    return out.drop(columns=["gid", "order"])


def _km_grouped(
    group: np.ndarray, d: np.ndarray, c: np.ndarray, *, nan_when_exhausted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier survival and Greenwood variance over ordered steps, per group.

    Rows are ordered within each group (groups contiguous); ``d`` events and
    ``c`` censorings at each step (censored at a step are at risk at it).
    ``nan_when_exhausted`` makes the variance NaN from the step where
    everyone at risk has the event (statsmodels ``SurvfuncRight``'s
    convention) instead of carrying the sum.
    """
    d = np.asarray(d, dtype=float)
    c = np.asarray(c, dtype=float)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    total = np.repeat(np.add.reduceat(d + c, starts), sizes)
    cum = np.cumsum(d + c)
    before_group = np.repeat(np.r_[0.0, cum[starts[1:] - 1]], sizes)
    at_risk = total - (cum - (d + c) - before_group)  # at risk just before each step
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, d / np.where(at_risk > 0, at_risk, 1), 0.0)
        exhausted = np.nan if nan_when_exhausted else 0.0
        term = np.where(
            at_risk - d > 0, d / (at_risk * (at_risk - d)), np.where(d > 0, exhausted, 0.0)
        )
    g = pd.Series(group)
    surv = pd.Series(1.0 - hazard).groupby(g, sort=False).cumprod().to_numpy()
    var = surv**2 * pd.Series(term).groupby(g, sort=False).cumsum().to_numpy()
    if nan_when_exhausted:  # NaN from the exhausting step on (pandas cumsum skips NaN)
        after = pd.Series(np.isnan(term)).groupby(g, sort=False).cummax().to_numpy()
        var = np.where(after, np.nan, var)
    return surv, var


def _quantiles_grouped(
    f: np.ndarray, lower: np.ndarray, upper: np.ndarray, starts: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the first time the step CDF ``f`` reaches ``q[group]``.

    Interpolated geometrically within the bin (linearly in the first bin, which
    starts at 0). Returns the quantiles (NaN where never reached) and the row
    index where each was reached (-1 if never).
    """
    n = len(f)
    sizes = np.diff(np.r_[starts, n])
    qq = np.repeat(q, sizes)
    pos = np.where(f >= qq - 1e-12, np.arange(n), n)
    first = np.minimum.reduceat(pos, starts)
    ok = first < n
    i = np.where(ok, first, 0)
    f_prev = np.where(ok & (i > starts), f[np.maximum(i - 1, 0)], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(f[i] <= f_prev, 0.0, (q - f_prev) / (f[i] - f_prev))
        lo, hi = lower[i], upper[i]
        value = np.where(lo <= 0, hi * frac, lo * (hi / np.where(lo > 0, lo, 1.0)) ** frac)
    return np.where(ok, value, np.nan), np.where(ok, first, -1)


def _ordered(g: pd.DataFrame, *, with_sla: bool) -> pd.DataFrame:
    """Collapse to ordered steps: one row per (bin[, le_sla]) with d and c."""
    keys = ["bin", "le_sla"] if with_sla else ["bin"]
    g = g.assign(
        d=np.where(g["event"], g["k"], 0),
        c=np.where(g["event"], 0, g["k"]),
    )
    if with_sla:
        g = g.assign(le_sla=g["le_sla"].fillna(False).astype(bool))
    steps = g.groupby(keys, sort=False)[["d", "c"]].sum().reset_index()
    if with_sla:
        steps = steps.sort_values(["bin", "le_sla"], ascending=[True, False])
    else:
        steps = steps.sort_values("bin")
    return steps.reset_index(drop=True)


def _quantile_from_cdf(f: np.ndarray, lower: np.ndarray, upper: np.ndarray, q: float) -> float:
    """First time the step CDF reaches q, interpolated geometrically in the bin."""
    reached = np.flatnonzero(f >= q - 1e-12)
    if len(reached) == 0:
        return float("nan")
    i = reached[0]
    f_prev = f[i - 1] if i > 0 else 0.0
    frac = 0.0 if f[i] <= f_prev else (q - f_prev) / (f[i] - f_prev)
    lo, hi = lower[i], upper[i]
    if lo <= 0:
        return float(hi * frac)
    return float(lo * (hi / lo) ** frac)


def _staffing_metrics(
    h: pd.DataFrame, counts: pd.DataFrame, cols: list[str], cl: float
) -> pd.DataFrame | None:
    """Throughput and utilization from hours per segment and human decisions (``human``)."""
    d = counts[[*cols, "human"]].rename(columns={"human": "decided"})
    if cols:
        d = d[d["decided"] > 0]  # segments with human decisions, as the engine counted them
    m = h.merge(d, on=cols, how="left") if cols else pd.concat([h, d], axis=1)
    m["decided"] = m["decided"].fillna(0)
    alpha = 1 - cl
    k = m["decided"].to_numpy(dtype=float)
    hrs = m["productive"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(k > 0, sps.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0) / hrs
        hi = sps.chi2.ppf(1 - alpha / 2, 2 * (k + 1)) / 2 / hrs
        rate = k / hrs
        util = hrs / m["scheduled"].to_numpy(dtype=float)
    thr = m[cols].copy()
    thr["metric"] = "throughput"
    thr["value"] = np.where(hrs > 0, rate, np.nan)
    thr["n"] = k
    thr["ci_low"] = np.where(hrs > 0, lo, np.nan)
    thr["ci_high"] = np.where(hrs > 0, hi, np.nan)
    ut = m[cols].copy()
    ut["metric"] = "utilization"
    ut["value"] = np.where(m["scheduled"] > 0, util, np.nan)
    ut["n"] = m["scheduled"].to_numpy(dtype=float)
    ut["ci_low"] = np.nan
    ut["ci_high"] = np.nan
    return pd.concat([thr, ut], ignore_index=True)


# --------------------------------------------------------------------------- #
# QA metrics
# --------------------------------------------------------------------------- #
QA_METRICS = ("accuracy", "over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")


def audited_decisions(
    ds: Dataset,
    *,
    market: str | None = None,
    period: Period,
    qa_source: str | None = "internal",
) -> ir.Table:
    """Audits joined to their decisions, with correctness flags.

    Adds ``correct``, ``over_enforcement``, ``under_enforcement``,
    ``wrong_policy``, ``enforced``, ``qa_enforced`` and ``w`` (sample weight,
    1 when null). Pending decisions are excluded (nothing to audit yet).
    """
    _check_audit_source(ds, qa_source)
    return _join_audits(ds, decisions_in_period(ds, market=market, period=period), qa_source)


def audits_in_periods(
    ds: Dataset,
    *,
    market: str | None = None,
    periods: Sequence[Period],
    qa_source: str | None = None,
    columns: Sequence[str] | None = None,
) -> ir.Table:
    """:func:`audited_decisions` over several periods at once, with ``_period``.

    One join serves every QA family of a scorecard (both periods, both QA
    sources by default); engines that can keep it (``Dataset.kept``) then
    run the families on the small joined table. `columns` keeps only those
    decision columns (besides the ones the flags need), so the engine reads
    fewer columns of the decisions it joins.
    """
    _check_audit_source(ds, qa_source)
    # only audited decisions go on to local dates and the join (a semi-join on ids)
    decisions = ds.table("decisions")
    audited = decisions.filter(decisions.decision_id.isin(ds.table("qa_audits").decision_id))
    dec = decisions_in_periods(ds, market=market, periods=periods, table=audited)
    if columns is not None:
        need = ["decision_id", "action", "policy", PERIOD]
        dec = dec.select(*dict.fromkeys([*need, *columns]))
    return _join_audits(ds, dec, qa_source)


def _check_audit_source(ds: Dataset, qa_source: str | None) -> None:
    if not ds.has("qa_audits"):
        raise QualityLabError(
            "qa_audits is not in the dataset; QA metrics (accuracy, error rates, "
            "qa_alignment) need it"
        )
    if qa_source not in (None, "internal", "vendor"):
        raise QualityLabError(f"qa_source must be 'internal', 'vendor' or None; got {qa_source!r}")


def _join_audits(ds: Dataset, dec: ir.Table, qa_source: str | None) -> ir.Table:
    dec = dec.filter(dec.action.notnull())
    qa = ds.table("qa_audits")
    if qa_source is not None:
        qa = qa.filter(qa.qa_source == qa_source)
    j = qa.join(dec, qa.decision_id == dec.decision_id)
    enforced = j.action != "no_action"
    qa_enf = j.qa_action != "no_action"
    same_policy = j.policy.fill_null("none") == j.qa_policy
    return j.mutate(
        enforced=enforced,
        qa_enforced=qa_enf,
        correct=(enforced == qa_enf) & (~enforced | same_policy),
        over_enforcement=enforced & ~qa_enf,
        under_enforcement=~enforced & qa_enf,
        wrong_policy=enforced & qa_enf & ~same_policy,
        w=j.sample_weight.fill_null(1.0),
    )


STRATA = ("auto", "column", "weight", "none")


def _check_strata(strata: str) -> None:
    if strata not in STRATA:
        raise QualityLabError(
            f"strata must be 'auto', 'column', 'weight' or 'none'; got {strata!r}"
        )


def stratum_key(j: ir.Table, strata: str = "auto") -> ir.StringValue:
    """The sampling stratum of each audit in `j` (a table with ``w``), as a string.

    ``"column"``: the ``stratum`` column (an error when absent); ``"weight"``:
    the sample weight; ``"auto"``: ``stratum`` when present, else the weight;
    ``"none"``: one stratum. See :func:`qa_metrics`.
    """
    _check_strata(strata)
    has_column = "stratum" in j.columns
    if strata == "column" and not has_column:
        raise QualityLabError(
            "strata='column' needs a 'stratum' column in qa_audits; it has none "
            "(use strata='auto' to stratify by sample_weight)"
        )
    if strata == "none":
        return ibis.literal("")
    if has_column and strata in ("auto", "column"):
        return j.stratum.cast("string").fill_null("")
    return j.w.cast("string")


STRATUM_SUMS = ("n", "k", "sum_w", "sum_w2", "wy", "w2y")


def design_rates(
    sums: pd.DataFrame, keys: Sequence[str], confidence_level: float = 0.95
) -> pd.DataFrame:
    """A rate per segment from per-(segment, stratum) sums of a 0/1 outcome.

    Parameters
    ----------
    sums : pandas.DataFrame
        One row per segment and stratum (several rows per stratum are summed):
        the `keys`, ``_stratum`` and :data:`STRATUM_SUMS` (``n`` units, ``k``
        successes, ``sum_w``, ``sum_w2``, ``wy`` = :math:`\\sum w y`, ``w2y`` =
        :math:`\\sum w^2 y`), as an engine aggregate gives them.
    keys : sequence of str
        The segment columns (may be empty: one segment).
    confidence_level : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        One row per segment, sorted by `keys`: the `keys`, ``n``, ``value``,
        ``ci_low``, ``ci_high``, ``n_eff`` and ``design`` (True where the
        weights are unequal). With unequal weights the Hajek estimate, the
        stratified variance and Wilson's interval at the design effective n
        (:func:`qualitylab.stats.stratified_proportion`; ``n_eff`` the design
        effective sample size); with equal weights the plain share and its
        Wilson interval (``n_eff = n``).

    Examples
    --------
    >>> sums = pd.DataFrame({"_stratum": ["1", "3"], "n": [4, 2], "k": [3, 1],
    ...     "sum_w": [4.0, 6.0], "sum_w2": [4.0, 18.0], "wy": [3.0, 3.0], "w2y": [3.0, 9.0]})
    >>> r = design_rates(sums, [])
    >>> round(float(r.value[0]), 2), bool(r.design[0]), round(float(r.n_eff[0]), 2)
    (0.6, True, 2.88)
    """
    keys = list(keys)
    sums = sums[sums["n"] > 0]
    sums = sums.groupby([*keys, "_stratum"], sort=True, dropna=False, as_index=False)[
        list(STRATUM_SUMS)
    ].sum()
    if keys:
        seg = sums.groupby(keys, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        agg = sums.groupby(keys, sort=True, dropna=False, as_index=False)[list(STRATUM_SUMS)].sum()
    else:
        seg = np.zeros(len(sums), dtype=np.int64)
        agg = pd.DataFrame([sums[list(STRATUM_SUMS)].sum()]) if len(sums) else sums[[]]
    out = agg[keys].copy() if keys else pd.DataFrame(index=agg.index)
    if agg.empty:
        return out.assign(
            n=pd.Series(dtype=float),
            value=pd.Series(dtype=float),
            ci_low=pd.Series(dtype=float),
            ci_high=pd.Series(dtype=float),
            n_eff=pd.Series(dtype=float),
            design=pd.Series(dtype=bool),
        )
    sp = stratified_proportion(
        sums["wy"].to_numpy(float),
        sums["sum_w"].to_numpy(float),
        sums["sum_w2"].to_numpy(float),
        sums["w2y"].to_numpy(float),
        n=sums["n"].to_numpy(float),
        segment=seg,
        confidence_level=confidence_level,
    )
    n, k = agg["n"].to_numpy(float), agg["k"].to_numpy(float)
    design = ~np.isclose(agg["sum_w"].to_numpy(float) ** 2, n * agg["sum_w2"].to_numpy(float))
    lo, hi = proportion_ci(k, n, confidence_level=confidence_level)
    out["n"] = n
    out["value"] = np.where(design, sp.estimate, k / n)
    out["ci_low"] = np.where(design, sp.ci_low, lo)
    out["ci_high"] = np.where(design, sp.ci_high, hi)
    out["n_eff"] = np.where(design, np.asarray(sp.n_eff, float), n)
    out["design"] = design
    return out.reset_index(drop=True)


def qa_metrics(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    strata: str = "auto",
    fpc: bool = False,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Accuracy and error rates from QA audits.

    Parameters
    ----------
    ds : Dataset
    market, by, start, end
        As in :func:`operational_metrics`; dates are those of the decisions.
    qa_source : {"internal", "vendor", None}, default "internal"
        Whose audits are the truth; ``None`` pools both (add ``"qa_source"``
        to ``by`` to compare them).
    weighted : bool, optional
        Use ``sample_weight`` (design-weighted estimate); by default weights
        are used whenever any audit in a segment has a weight other than 1.
    strata : {"auto", "column", "weight", "none"}, default "auto"
        The sampling strata the variance is combined over. ``"column"``: the
        ``qa_audits.stratum`` column (required); ``"weight"``: the distinct
        ``sample_weight`` values of a segment (the common design of one audit
        rate per stratum); ``"auto"``: ``stratum`` when the table has it, else
        the weights; ``"none"``: one stratum (with-replacement variance of the
        whole segment).
    fpc : bool, default False
        Apply the finite-population correction :math:`1 - n_h/\\hat N_h` with
        :math:`\\hat N_h = \\sum_i w_{hi}`, the stratum size the weights imply
        (exact when ``sample_weight`` is the stratum's inverse audit rate). Use
        it to describe this period's decisions as a finite set; leave it off
        (the default) to judge the vendor's process, whose error rate the
        period's decisions are themselves a draw of.
    confidence_level : float, optional

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high, small_n]`` for ``accuracy``,
        ``over_enforcement_rate``, ``under_enforcement_rate`` and
        ``wrong_policy_rate``; ``n`` is the number of audits.

    Notes
    -----
    A decision is correct when its enforcement matches QA's and, if enforced,
    its policy matches. With weighted audits the Hajek estimator
    :math:`\\sum w y / \\sum w` is used; the engine aggregates per segment and
    stratum and :func:`qualitylab.stats.stratified_proportion` combines the
    strata with the stratified variance
    :math:`\\sum_h (\\hat N_h/\\hat N)^2 s_h^2/n_h` (:math:`\\hat N_h` the
    stratum's weight total) and gives Wilson's interval at the design
    effective sample size (Korn & Graubard's approach, 1998; a stratum whose
    audits all agree gets a small variance floor, see
    :func:`~qualitylab.stats.stratified_proportion`). The variance assumes
    a fixed number of audits per stratum (stratified sampling); when each
    decision is audited independently with its probability (Bernoulli
    sampling), ``strata="none"`` is the matching variance. No
    finite-population correction is applied by default: a status asks whether
    the vendor's process meets its target, and the period's decisions are a
    draw from that process, so the with-replacement variance is the right one
    for it (Deming's analytic study). Unaudited decisions carry no stratum,
    so stratum sizes cannot be counted from ``decisions``; ``fpc=True`` takes
    them from the weights. With
    equal weights (a self-weighting sample) the interval is the plain Wilson
    interval, as before.
    """
    _check_strata(strata)
    cols = _check_by(by, (*GRAINS, "qa_source", *getattr(ds, "extra_grains", ())))
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or _confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=qa_source)
    out = qa_from_audits(j, cols, weighted=weighted, strata=strata, fpc=fpc, confidence_level=cl)
    if out.empty:
        warnings.warn("no audited decisions in the period; QA metrics are empty", stacklevel=2)
        return _finish(out, cols, 1)
    return _finish(out, cols, _min_n(ds, market))


def qa_from_audits(
    j: ir.Table,
    cols: Sequence[str],
    *,
    weighted: bool | None = None,
    strata: str = "auto",
    fpc: bool = False,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """The rows of :func:`qa_metrics` (without ``small_n``) from audited decisions.

    `j` is :func:`audited_decisions` (or :func:`audits_in_periods` filtered to
    one QA source); one engine query per call. Empty when nothing is audited.
    """
    cols = list(cols)
    cl = confidence_level
    j = j.mutate(_stratum=stratum_key(j, strata))
    flags = {
        "accuracy": j.correct,
        "over_enforcement_rate": j.over_enforcement,
        "under_enforcement_rate": j.under_enforcement,
        "wrong_policy_rate": j.wrong_policy,
    }
    aggs: dict[str, ir.Value] = {
        "n": j.count(),
        "sum_w": j.w.sum(),
        "sum_w2": (j.w * j.w).sum(),
    }
    for name, flag in flags.items():
        y = flag.cast("float64")
        aggs[f"{name}__k"] = y.sum()
        aggs[f"{name}__wy"] = (j.w * y).sum()
        aggs[f"{name}__w2y"] = (j.w * j.w * y).sum()
    by_h = j.group_by([*cols, "_stratum"]).aggregate(**aggs).to_pandas()
    by_h = by_h[by_h["n"] > 0]
    if by_h.empty:
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]])
    sums = [c for c in by_h.columns if c not in (*cols, "_stratum")]
    if cols:
        seg = by_h.groupby(cols, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        agg = by_h.groupby(cols, sort=True, dropna=False, as_index=False)[sums].sum()
    else:
        seg = np.zeros(len(by_h), dtype=np.int64)
        agg = pd.DataFrame([by_h[sums].sum()])
    use_w = (
        (~np.isclose(agg["sum_w2"], agg["n"]) | ~np.isclose(agg["sum_w"], agg["n"]))
        if weighted is None
        else pd.Series(bool(weighted), index=agg.index)
    )
    unequal = ~np.isclose(agg["sum_w"] ** 2, agg["n"] * agg["sum_w2"])
    rows = []
    for name in flags:
        sp = stratified_proportion(
            by_h[f"{name}__wy"].to_numpy(float),
            by_h["sum_w"].to_numpy(float),
            by_h["sum_w2"].to_numpy(float),
            by_h[f"{name}__w2y"].to_numpy(float),
            n=by_h["n"].to_numpy(float),
            segment=seg,
            population=by_h["sum_w"].to_numpy(float) if fpc else None,
            confidence_level=cl,
        )
        plain = agg[f"{name}__k"].to_numpy(float) / agg["n"].to_numpy(float)
        lo_p, hi_p = proportion_ci(
            agg[f"{name}__k"].to_numpy(float), agg["n"].to_numpy(float), confidence_level=cl
        )
        uw = np.asarray(use_w, dtype=bool)
        # a self-weighting (equal-weight) segment keeps the plain Wilson interval
        design = uw & np.asarray(unequal, dtype=bool)
        part = agg[cols].copy()
        part["metric"] = name
        part["value"] = np.where(uw, sp.estimate, plain)
        part["n"] = agg["n"].to_numpy(float)
        part["ci_low"] = np.where(design, sp.ci_low, lo_p)
        part["ci_high"] = np.where(design, sp.ci_high, hi_p)
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def qa_alignment(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    strata: str = "auto",
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Vendor QA vs internal QA on decisions audited by both.

    Returns
    -------
    pandas.DataFrame
        Per segment: ``qa_alignment`` (share of double-audited decisions where
        both QA sources give the same label — enforcement and policy),
        ``qa_alignment_kappa`` (Cohen's kappa of the two
        labels with its asymptotic interval), and ``qa_leniency`` (McNemar:
        share of discordant verdicts where vendor QA passed a decision internal
        QA failed; its ``p_value`` column tests symmetry).

    Notes
    -----
    When a decision has several audits from one source, the latest counts.
    The engine joins the two sources and reduces the pairs to one row per
    segment x (vendor label, internal label) with the pair count and the
    discordant-verdict counts b (vendor passed, internal failed) and c; every
    segment's statistics are then computed at once from those counts, as
    :func:`~qualitylab.agreement.cohen_kappa_from_counts` for kappa and
    :func:`~qualitylab.stats.mcnemar` (exact below 25 discordant pairs,
    continuity-corrected chi-square from 25) for leniency.

    ``qa_alignment`` is design-weighted like :func:`qa_metrics`: each pair
    carries the internal audit's ``sample_weight`` and stratum (the internal
    audit is the draw that makes the pair; `strata` as in :func:`qa_metrics`),
    so with unequal weights the rate is the Hajek estimate with the stratified
    variance and Wilson's interval at the design effective n, and with equal weights the plain
    share with a Wilson interval. Kappa and leniency describe the audited
    pairs themselves (unweighted counts).
    """
    _check_strata(strata)
    cols = _check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or _confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=None)
    out = alignment_from_audits(j, cols, strata=strata, confidence_level=cl)
    if out.empty:
        warnings.warn("no decision was audited by both vendor and internal QA", stacklevel=2)
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS, "p_value"])
    res = _finish(out, cols, _min_n(ds, market))
    return res.merge(out[[*cols, "metric", "p_value"]], on=[*cols, "metric"], how="left")


def alignment_from_audits(
    j: ir.Table, cols: Sequence[str], *, strata: str = "auto", confidence_level: float = 0.95
) -> pd.DataFrame:
    """The rows of :func:`qa_alignment` (with ``p_value``, without ``small_n``).

    `j` holds the audits of both QA sources joined to their decisions
    (:func:`audited_decisions` with ``qa_source=None``). One engine query: the
    pairs reduced to one row per segment x stratum x (vendor label, internal
    label), from which both the design-weighted rate and the kappa and
    McNemar counts are summed. Empty when no decision was audited by both.
    """
    from qualitylab.measure.agreement import cohen_kappa_from_counts

    cols = list(cols)
    cl = confidence_level
    j = j.mutate(
        label=ibis.ifelse(j.qa_enforced, j.qa_policy, ibis.literal("none")),
        _stratum=stratum_key(j, strata),
    )
    keep = [*cols, "decision_id", "qa_source", "label", "correct", "audited_at", "w", "_stratum"]
    latest = j.select(keep).mutate(
        rk=ibis.row_number().over(
            group_by=[j.decision_id, j.qa_source], order_by=ibis.desc(j.audited_at)
        )
    )
    latest = latest.filter(latest.rk == 0)
    v = latest.filter(latest.qa_source == "vendor")
    i = latest.filter(latest.qa_source == "internal")
    pairs = v.join(i, "decision_id", lname="{name}_v", rname="{name}_i")
    pairs = pairs.select(
        *[pairs[f"{c}_v"].name(c) for c in cols],
        label_v=pairs.label_v,
        label_i=pairs.label_i,
        correct_v=pairs.correct_v,
        correct_i=pairs.correct_i,
        w=pairs.w_i,
        _stratum=pairs._stratum_i,
    )
    y = (pairs.label_v == pairs.label_i).fill_null(False).cast("float64")
    fine = (
        pairs.group_by([*cols, "_stratum", "label_v", "label_i"])
        .aggregate(
            n=pairs.count(),
            k=y.sum(),
            sum_w=pairs.w.sum(),
            sum_w2=(pairs.w * pairs.w).sum(),
            wy=(pairs.w * y).sum(),
            w2y=(pairs.w * pairs.w * y).sum(),
            # vendor passed, internal failed (b) and the reverse (c)
            b=(pairs.correct_v & ~pairs.correct_i).cast("int64").sum(),
            c=(~pairs.correct_v & pairs.correct_i).cast("int64").sum(),
        )
        .to_pandas()
    )
    if fine.empty:
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1], "p_value"])
    by_h = fine[[*cols, "_stratum", *STRATUM_SUMS]]  # design_rates sums rows per stratum
    df = (
        fine.rename(columns={"n": "count"})
        .groupby([*cols, "label_v", "label_i"], sort=False, dropna=False, as_index=False)[
            ["count", "b", "c"]
        ]
        .sum(min_count=1)
    )
    for name in ("count", "b", "c"):
        df[name] = df[name].fillna(0).astype("int64")
    if cols:
        seg = df.groupby(cols, sort=True, dropna=False).ngroup().to_numpy(dtype=np.int64)
        keys = df[cols].iloc[np.unique(seg, return_index=True)[1]].reset_index(drop=True)
    else:
        seg = np.zeros(len(df), dtype=np.int64)
        keys = pd.DataFrame(index=pd.RangeIndex(1))
    n_seg = len(keys)
    count = df["count"].to_numpy(dtype=np.int64)
    n = np.bincount(seg, weights=count, minlength=n_seg)
    b = np.bincount(seg, weights=df["b"].to_numpy(dtype=np.int64), minlength=n_seg)
    c = np.bincount(seg, weights=df["c"].to_numpy(dtype=np.int64), minlength=n_seg)
    # rows in the same segment order: both group df by cols with sort=True, dropna=False
    kappa = cohen_kappa_from_counts(
        df, by=cols, rater1="label_v", rater2="label_i", count="count", confidence_level=cl
    )

    def part(metric: str, rows: np.ndarray, **values: np.ndarray) -> pd.DataFrame:
        out = keys.iloc[rows].reset_index(drop=True)
        out["metric"] = metric
        for name, value in values.items():
            out[name] = value
        return out

    everything = np.arange(n_seg)
    # design-weighted alignment: the same segment order (groupby cols, sort=True)
    dr = design_rates(by_h, cols, cl)
    value, lo, hi = (dr[c].to_numpy(float) for c in ("value", "ci_low", "ci_high"))
    nan = np.full(n_seg, np.nan)
    parts = [
        part("qa_alignment", everything, value=value, n=n, ci_low=lo, ci_high=hi, p_value=nan),
        part(
            "qa_alignment_kappa",
            everything,
            value=kappa["statistic"].to_numpy(float),
            n=n,
            ci_low=kappa["ci_low"].to_numpy(float),
            ci_high=kappa["ci_high"].to_numpy(float),
            p_value=nan,
        ),
    ]
    discordant = np.flatnonzero(b + c > 0)
    if discordant.size:
        # stats.mcnemar(b, c) for every segment: exact below 25, else corrected chi-square
        bb, cc = b[discordant], c[discordant]
        m = bb + cc
        exact = sps.binom.cdf(np.minimum(bb, cc), m, 0.5)
        chi2 = sps.chi2.sf(np.maximum(np.abs(bb - cc) - 1.0, 0.0) ** 2 / m, 1)
        p_value = np.where(m < 25, np.minimum(1.0, 2.0 * exact), chi2)
        lo, hi = proportion_ci(bb, m, confidence_level=cl)
        parts.append(
            part(
                "qa_leniency", discordant, value=bb / m, n=m, ci_low=lo, ci_high=hi, p_value=p_value
            )
        )
    return pd.concat(parts, ignore_index=True)


# --------------------------------------------------------------------------- #
# Human-in-the-loop workflow metrics
# --------------------------------------------------------------------------- #
def ai_workflow_metrics(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """How people and the model share the work.

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high, small_n]`` with
        ``auto_action_rate`` (decided items the AI handled alone; n = decided
        items) and ``override_rate`` (``ai_assisted`` items where the human's
        enforcement or policy differs from the model's suggestion; n =
        ai_assisted decided items). Wilson intervals.

    Notes
    -----
    The model suggests enforcement when ``ai_policy`` is not ``none``; an
    override is a different enforcement decision, or the same enforcement with
    a different policy. Whether overrides were right is measured against QA by
    :func:`override_quality`.
    """
    cols = _check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or _confidence(ds, market)
    summary = decision_summary(ds, market=market, by=cols, periods=[period])
    out = workflow_from_summary(summary, cols, confidence_level=cl)
    return _finish(out, cols, _min_n(ds, market))


def workflow_from_summary(
    summary: pd.DataFrame, cols: Sequence[str], *, confidence_level: float = 0.95
) -> pd.DataFrame:
    """``auto_action_rate`` and ``override_rate`` from :func:`decision_summary`.

    Segments without a decided item are left out (one row stays when `cols`
    is empty), as in :func:`ai_workflow_metrics`.
    """
    cols = list(cols)
    agg = _segment_sums(summary, cols, ("acted", "auto", "assisted", "overrides"))
    if cols:
        agg = agg[agg["acted"] > 0]
    rows = []
    for metric, k, n in (
        ("auto_action_rate", "auto", "acted"),
        ("override_rate", "overrides", "assisted"),
    ):
        kk = agg[k].to_numpy(float)
        nn = agg[n].to_numpy(float)
        lo, hi = proportion_ci(kk, nn, confidence_level=confidence_level)
        part = agg[cols].copy()
        part["metric"] = metric
        with np.errstate(divide="ignore", invalid="ignore"):
            part["value"] = np.where(nn > 0, kk / nn, np.nan)
        part["n"] = nn
        part["ci_low"] = lo
        part["ci_high"] = hi
        rows.append(part)
    return pd.concat(rows, ignore_index=True)


def _override_expr(dec: ir.Table) -> ir.BooleanValue:
    ai_enf = dec.ai_policy.fill_null("none") != "none"
    human_enf = dec.action != "no_action"
    return (ai_enf != human_enf) | (ai_enf & human_enf & (dec.policy != dec.ai_policy))


def override_quality(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    qa_source: str | None = "internal",
    confidence_level: float | None = None,
    strata: str = "auto",
) -> pd.DataFrame:
    """Were human overrides of the model right, and is the AI alone accurate?

    Returns
    -------
    pandas.DataFrame
        ``override_accuracy`` (audited overrides where the human's decision was
        correct per QA), ``followed_accuracy`` (audited ai_assisted items where
        the human followed the model), and ``ai_alone_accuracy`` (audited
        ``ai_auto`` decisions that were correct); weighted, stratified
        (`strata`) and with intervals as :func:`qa_metrics`.
    """
    cols = _check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or _confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=qa_source)
    ov = _override_expr(j)
    j = j.mutate(
        __group=ibis.cases(
            ((j.routing == "ai_assisted") & ov, "override_accuracy"),
            (j.routing == "ai_assisted", "followed_accuracy"),
            (j.routing == "ai_auto", "ai_alone_accuracy"),
            else_=None,
        )
    )
    j = j.filter(j.__group.notnull())
    j = j.mutate(_stratum=stratum_key(j, strata))
    y = j.correct.cast("float64")
    keys = [*cols, "__group"]
    by_h = (
        j.group_by([*keys, "_stratum"])
        .aggregate(
            n=j.count(),
            k=y.sum(),
            sum_w=j.w.sum(),
            sum_w2=(j.w * j.w).sum(),
            wy=(j.w * y).sum(),
            w2y=(j.w * j.w * y).sum(),
        )
        .to_pandas()
    )
    if by_h.empty:
        return _finish(pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]]), cols, 1)
    dr = design_rates(by_h, keys, cl)
    out = dr[cols].copy()
    out["metric"] = dr["__group"]
    for c in ("value", "n", "ci_low", "ci_high"):
        out[c] = dr[c].to_numpy(float)
    return _finish(out, cols, _min_n(ds, market))
