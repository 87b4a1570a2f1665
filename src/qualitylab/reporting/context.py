"""A notebook's market and period: the :class:`ReportContext` and what it checks.

:func:`open_context` opens the data and fixes the period (the last full weeks
before the report date) and its baseline (the 28 days before);
:func:`require_rows` says when a table has no rows for the market and period,
and :func:`header` is the notebook's opening line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from qualitylab.data.localtime import period_bounds_utc
from qualitylab.data.params import MarketParams
from qualitylab.data.sources import Dataset, open_dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure.scope import as_date
from qualitylab.reporting.tables import say


@dataclass(frozen=True)
class ReportContext:
    """Everything a notebook needs to know about its run."""

    ds: Dataset
    market: str
    params: MarketParams
    period: m.Period
    baseline: m.Period
    as_of: date
    data_start: date | None = None  # first market-local date with decisions (None: unknown)

    @property
    def coverage(self) -> str:
        """One sentence when the market's data starts after the comparison period does.

        Empty when the data covers the period and its baseline. A market with
        two weeks of history otherwise reads "28 days, compared with the 28
        days before" over days it has no data for.

        Examples
        --------
        >>> from qualitylab.measure.metrics import Period
        >>> c = ReportContext(None, "MY", None, Period(date(2026, 10, 26), date(2026, 11, 22)),
        ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
        ...                   data_start=date(2026, 11, 9))
        >>> c.coverage
        "MY's data starts on 2026-11-09: 14 of the period's 28 days have data, and none of the 28 days before."
        """
        first = self.data_start
        if first is None or first <= self.baseline.start:
            return ""

        def covered(p: m.Period) -> int:
            return max((p.end - max(first, p.start)).days + 1, 0)

        cur, base = covered(self.period), covered(self.baseline)
        before = f"{base or 'none'} of the {self.baseline.days} days before"
        return (
            f"{self.market}'s data starts on {first}: {cur} of the period's {self.period.days} "
            f"days have data, and {before}."
        )

    @property
    def start(self) -> date:
        """First day of the period."""
        return self.period.start

    @property
    def end(self) -> date:
        """Last day of the period."""
        return self.period.end

    @property
    def label(self) -> str:
        """E.g. ``"Singapore (SG), 2026-10-26 to 2026-11-22"``."""
        return f"{self.params.name} ({self.market}), {self.start} to {self.end}"


def data_end(ds: Dataset, market: str) -> date:
    """The last market-local date with decisions for a market."""
    return m.resolve_period(ds, market=market, start=None, end=None).end


def open_context(
    data: str | Dataset,
    market: str,
    *,
    as_of: str | date | None = None,
    weeks: int = 4,
    parameters: str | None = None,
) -> ReportContext:
    """Open the data and fix the period: the last ``weeks`` full weeks before ``as_of``.

    :func:`qualitylab.report.context` is this and, if asked, starts the
    period's alert scan in a helper process.

    Parameters
    ----------
    data : str or Dataset
        Source for :func:`qualitylab.open_dataset`.
    market : str
    as_of : str or date, optional
        Defaults to the last day with data (empty string means the same).
    weeks : int, default 4
    parameters : str, optional
        Parameters folder (empty/None: found automatically).
    """
    ds = data if isinstance(data, Dataset) else open_dataset(data, parameters=parameters or None)
    mp = ds.params.market(market)
    try:
        covered = m.resolve_period(ds, market=market, start=None, end=None)
    except QualityLabError:  # no decisions for the market: its sections say so
        covered = None
    day = as_date(as_of) if as_of else data_end(ds, market)
    period = m.last_full_weeks(day, weeks)
    first = covered.start if covered is not None else None
    return ReportContext(ds, market, mp, period, baseline_of(period), day, first)


def baseline_of(period: m.Period, days: int = 28) -> m.Period:
    """The ``days`` before a period: the baseline alerts are judged against.

    Examples
    --------
    >>> b = baseline_of(m.Period(date(2026, 10, 26), date(2026, 11, 22)))
    >>> b.start.isoformat(), b.end.isoformat()
    ('2026-09-28', '2026-10-25')
    """
    return m.Period(period.start - timedelta(days=days), period.start - timedelta(days=1))


#: Time column of each table, used to find a market's rows in a period.
_TIME_COLUMNS = {
    "decisions": "created_at",
    "qa_audits": "audited_at",
    "staffing": "date",
    "calibration": "held_at",
    "vendor_reported": "week_start",
    "events": "effective_at",
    "escalations": "raised_at",
    "red_team": "created_at",
}


def require_rows(
    ctx: ReportContext,
    table: str,
    *,
    start: date | str | None = None,
    end: date | str | None = None,
) -> int:
    """The rows ``table`` has for the context's market and period; an error if none.

    Counted in the engine. Rows count for the market when their ``market`` is
    its code (or ``*`` in ``events``; ``qa_audits`` through their decisions),
    and for the period when their time falls in the market-local dates
    ``start``..``end`` (default: the report period; a ``vendor_reported``
    week counts when it overlaps them).

    Raises
    ------
    QualityLabError
        Naming the table and why: not in the dataset, or no rows for the
        market in the period. Inside :func:`section` this becomes its note.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=14, scale="small")
    ...     ctx = open_context(tmp, "SG", weeks=1)
    ...     require_rows(ctx, "decisions") > 0
    ...     require_rows(ctx, "red_team", start="2026-01-01", end="2026-01-31")
    Traceback (most recent call last):
    qualitylab.errors.QualityLabError: the red_team table has no rows for SG from 2026-01-01 to 2026-01-31
    """
    if table not in _TIME_COLUMNS:
        raise QualityLabError(f"unknown table {table!r}; choose from {', '.join(_TIME_COLUMNS)}")
    if not ctx.ds.has(table):
        raise QualityLabError(f"the dataset has no {table} table")
    lo = as_date(start) or ctx.start
    hi = as_date(end) or ctx.end
    t = ctx.ds.table(table)
    col = _TIME_COLUMNS[table]
    if table == "qa_audits":
        dec = ctx.ds.table("decisions")
        dec = dec.filter(dec.market == ctx.market).select("decision_id")
        t = t.semi_join(dec, "decision_id")
    elif table == "events":
        t = t.filter(t.market.isin([ctx.market, "*"]))
    else:
        t = t.filter(t.market == ctx.market)
    if table == "staffing":
        t = t.filter(t[col].between(lo, hi))
    elif table == "vendor_reported":
        t = t.filter(t[col].between(lo - timedelta(days=6), hi))
    else:
        a, b = period_bounds_utc(lo, hi, ctx.params.timezone)
        t = t.filter((t[col] >= a) & (t[col] < b))
    n = int(t.count().to_pyarrow().as_py())
    if n == 0:
        raise QualityLabError(f"the {table} table has no rows for {ctx.market} from {lo} to {hi}")
    return n


def header(ctx: ReportContext):
    """The notebook's opening line: market, period and baseline, and any gap in the data.

    Examples
    --------
    >>> from qualitylab.measure.metrics import Period
    >>> from qualitylab.data.params import load_parameters
    >>> sg = load_parameters().market("SG")
    >>> c = ReportContext(None, "SG", sg, Period(date(2026, 10, 26), date(2026, 11, 22)),
    ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
    ...                   data_start=date(2026, 10, 5))
    >>> print(header(c).data)  # doctest: +NORMALIZE_WHITESPACE
    <p><strong>Singapore (SG), 2026-10-26 to 2026-11-22</strong> &middot; 28 days, compared with the 28 days
    before. SG&#x27;s data starts on 2026-10-05: 28 of the period&#x27;s 28 days have data, and
    21 of the 28 days before.</p>
    """
    text = "<strong>{label}</strong> &middot; {days} days, compared with the {days} days before."
    if ctx.coverage:
        text += " {coverage}"
    return say(text, label=ctx.label, days=ctx.period.days, coverage=ctx.coverage)


def weeks_with_data(ctx: ReportContext) -> int:
    """Full weeks at the end of the period that have data (at least 1).

    The period's weeks, or fewer when the market's data starts inside the
    period: weekly audits averaged over weeks without data would read as a
    smaller sample than the market has.

    Examples
    --------
    >>> from qualitylab.measure.metrics import Period
    >>> c = ReportContext(None, "MY", None, Period(date(2026, 10, 26), date(2026, 11, 22)),
    ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
    ...                   data_start=date(2026, 11, 9))
    >>> weeks_with_data(c)
    2
    """
    weeks = max(ctx.period.days // 7, 1)
    first = ctx.data_start
    if first is None or first <= ctx.start:
        return weeks
    return min(max(((ctx.end - first).days + 1) // 7, 1), weeks)
