"""What a metric is computed over: periods, market-local dates, grouping keys, a market's settings.

The shared plumbing of the measurement layer (:mod:`qualitylab.metrics` and the
analyses built on it): a market-local :class:`Period` and how to infer it from
the data (:func:`resolve_period`, :func:`last_full_weeks`), the market-local
date of a timestamp in the engine (:func:`local_date`, :func:`as_of`), the
grains a metric may be grouped by (:data:`GRAINS`, :func:`check_by`), a
market's parameters (:func:`timezones`, :func:`confidence`, :func:`min_n`,
:func:`sla_map`) and the long metric table every metric returns
(:data:`METRIC_COLUMNS`, :func:`finish`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import ibis
import ibis.expr.types as ir
import pandas as pd

from qualitylab.data.localtime import date_at_offset, offset_segments, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError

__all__ = [
    "GRAINS",
    "METRIC_COLUMNS",
    "TIME_GRAINS",
    "Period",
    "as_date",
    "as_of",
    "check_by",
    "confidence",
    "finish",
    "last_full_weeks",
    "local_date",
    "min_n",
    "resolve_period",
    "sla_map",
    "timezones",
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
    d = as_date(as_of)
    if d is None:
        raise QualityLabError("as_of is required")
    if weeks < 1:
        raise QualityLabError(f"weeks must be >= 1, got {weeks}")
    end = d - timedelta(days=(d.weekday() + 1) % 7)
    return Period(end - timedelta(days=7 * weeks - 1), end)


def as_date(value: date | str | None) -> date | None:
    """`value` as a date (``None`` stays ``None``); an ISO string is parsed.

    Examples
    --------
    >>> as_date("2026-11-25")
    datetime.date(2026, 11, 25)
    """
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
    s, e = as_date(start), as_date(end)
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


def check_by(by: Sequence[str] | str | None, allowed: Sequence[str] = GRAINS) -> list[str]:
    """The grain `by` as a list, checked against `allowed` (a clear error otherwise).

    Examples
    --------
    >>> check_by("vendor")
    ['vendor']
    """
    if by is None:
        return []
    cols = [by] if isinstance(by, str) else list(by)
    bad = [c for c in cols if c not in allowed]
    if bad:
        raise QualityLabError(f"unknown grain {bad[0]!r} in by=; choose from {', '.join(allowed)}")
    if len(set(cols)) != len(cols):
        raise QualityLabError(f"by= repeats a column: {cols}")
    return cols


def timezones(ds: Dataset, market: str | None) -> dict[str, str]:
    """Time zone of `market`, or of every configured market when ``None`` (code -> zone)."""
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


def local_date(t: ir.Table, col: str, tzs: Mapping[str, str], period: Period) -> ir.DateValue:
    """Market-local date of the timestamp column `col` of `t` (zones `tzs` by ``t.market``).

    The UTC offsets are those in force around `period` (two days either side).
    """
    return date_at_offset(t[col], _offset_expr(t[col], t.market, tzs, period))


def as_of(period: Period, tzs: Mapping[str, str], market: str | None) -> datetime:
    """The UTC instant at which the period ends (start of the next local day)."""
    if market is not None:
        return period_bounds_utc(period.start, period.end, tzs[market])[1]
    # Across markets: the latest local midnight, so no market is cut short.
    return max(period_bounds_utc(period.start, period.end, tz)[1] for tz in tzs.values())


def finish(df: pd.DataFrame, by: Sequence[str], min_n: int) -> pd.DataFrame:
    """The long metric table: ``[*by, *METRIC_COLUMNS]``, ``small_n`` where ``n < min_n``, sorted."""
    out = df.copy()
    out["small_n"] = out["n"].fillna(0) < min_n
    cols = [*by, *METRIC_COLUMNS]
    for c in ("value", "n", "ci_low", "ci_high"):
        out[c] = out[c].astype("float64")
    return out[cols].sort_values([*by, "metric"], kind="stable").reset_index(drop=True)


def min_n(ds: Dataset, market: str | None) -> int:
    """The sample size below which a metric is flagged ``small_n`` (market or default)."""
    return ds.params.market(market).min_n if market else ds.params.defaults.min_n


def confidence(ds: Dataset, market: str | None) -> float:
    """The confidence level of intervals (market or default parameters)."""
    return (
        ds.params.market(market).confidence_level if market else ds.params.defaults.confidence_level
    )


def sla_map(
    ds: Dataset, market: str | None, override: Mapping[str, float] | None
) -> dict[str, float]:
    """SLA seconds per queue (market or default parameters), updated by `override`."""
    base = dict(ds.params.market(market).sla_seconds if market else ds.params.defaults.sla_seconds)
    base.update(override or {})
    return base
