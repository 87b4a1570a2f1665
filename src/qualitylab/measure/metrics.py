"""Operational and QA metrics, aggregated in the engine.

Every function takes a :class:`~qualitylab.sources.Dataset`, a grain ``by``
and a market-local period, runs ibis aggregations in the data's engine, and
returns the long tidy table ``[*by, metric, value, n, ci_low, ci_high,
small_n]`` with statistics computed on the aggregates.

Grains: ``market, vendor, site, queue, language, policy, moderator_id,
routing, ai_model`` and the market-local ``date``, ``week`` (Monday) and
``month``.

Periods, grains and a market's settings live in :mod:`qualitylab.measure.scope`
and the Kaplan–Meier response times in :mod:`qualitylab.measure.survival`; the
names users know (:class:`Period`, :data:`GRAINS`, :func:`resolve_period`,
:func:`check_by`, ...) are importable from here as before.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from datetime import date, timedelta

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.data.localtime import epoch_seconds, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure.scope import (
    GRAINS,
    METRIC_COLUMNS,
    Period,
    as_of,
    check_by,
    confidence,
    finish,
    last_full_weeks,
    local_date,
    min_n,
    resolve_period,
    sla_map,
    timezones,
)
from qualitylab.measure.scope import TIME_GRAINS as TIME_GRAINS
from qualitylab.measure.stats import proportion_ci, stratified_proportion
from qualitylab.measure.survival import LOG_BIN_RATIO, km_metrics

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
    "override_expr",
    "escalations_in_period",
]


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
    tzs = timezones(ds, market)
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
    d = local_date(dec, "created_at", tzs, padded)
    dec = dec.mutate(date=d)
    dec = dec.mutate(week=dec.date.truncate("W"), month=dec.date.truncate("M"))
    if market is None:
        dec = dec.filter(dec.date.between(padded.start, padded.end))
    return dec


def escalations_in_period(
    ds: Dataset, market: str | None, period: Period, tzs: Mapping[str, str]
) -> ir.Table:
    """Escalations raised on market-local dates of the period, with time grains.

    Adds ``date``, ``week`` and ``month`` (market-local dates of ``raised_at``,
    zones `tzs` as :func:`~qualitylab.measure.scope.timezones` gives them), as
    :func:`decisions_in_period` does for decisions.
    """
    esc = ds.table("escalations")
    esc = esc.filter(esc.market == market) if market else esc.filter(esc.market.isin(list(tzs)))
    if market is not None:
        lo, hi = period_bounds_utc(period.start, period.end, tzs[market])
        esc = esc.filter((esc.raised_at >= lo) & (esc.raised_at < hi))
    esc = esc.mutate(date=local_date(esc, "raised_at", tzs, period))
    esc = esc.mutate(week=esc.date.truncate("W"), month=esc.date.truncate("M"))
    return esc.filter(esc.date.between(period.start, period.end))


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
    cols = check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    slas = sla_map(ds, market, sla_seconds)
    summary = decision_summary(ds, market=market, by=cols, periods=[period], slas=slas)
    staff = staffing_hours(ds, market=market, by=cols, periods=[period])
    out = operational_from_summary(summary, cols, slas=slas, staffing=staff, confidence_level=cl)
    if out.empty and cols:  # grouped and no decisions: no segment to report
        where = f" in market {market}" if market else ""
        warnings.warn(
            f"no decisions{where} in {period.start}..{period.end}; operational metrics are empty",
            stacklevel=2,
        )
        return finish(pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]]), cols, 1)
    return finish(out, cols, min_n(ds, market))


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
    """The UTC instant at which each row's period ends (see :func:`as_of`)."""
    tzs = timezones(ds, market)
    ends = [as_of(p, tzs, market) for p in periods]
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
    slas = sla_map(ds, market, None) if slas is None else dict(slas)
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
        __bin=(ibis.greatest(secs, 1.0).ln() / LOG_BIN_RATIO).floor().cast("int64"),
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
            overrides=(acted & assisted & override_expr(t)).cast("int64").sum(),
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
    rows.append(km_metrics(summary, cols, slas, confidence_level))
    if staffing is not None:
        staff = _staffing_metrics(staffing, counts, cols, confidence_level)
        if staff is not None:
            rows.append(staff)
    parts = [r for r in rows if len(r)]
    if not parts:
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]])
    return pd.concat(parts, ignore_index=True)


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
    cols = check_by(by, (*GRAINS, "qa_source", *getattr(ds, "extra_grains", ())))
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=qa_source)
    out = qa_from_audits(j, cols, weighted=weighted, strata=strata, fpc=fpc, confidence_level=cl)
    if out.empty:
        warnings.warn("no audited decisions in the period; QA metrics are empty", stacklevel=2)
        return finish(out, cols, 1)
    return finish(out, cols, min_n(ds, market))


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
    cols = check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=None)
    out = alignment_from_audits(j, cols, strata=strata, confidence_level=cl)
    if out.empty:
        warnings.warn("no decision was audited by both vendor and internal QA", stacklevel=2)
        return pd.DataFrame(columns=[*cols, *METRIC_COLUMNS, "p_value"])
    res = finish(out, cols, min_n(ds, market))
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
    cols = check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    summary = decision_summary(ds, market=market, by=cols, periods=[period])
    out = workflow_from_summary(summary, cols, confidence_level=cl)
    return finish(out, cols, min_n(ds, market))


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


def override_expr(dec: ir.Table) -> ir.BooleanValue:
    """Whether a human decision overrides the model's suggestion, per row of `dec`.

    The model suggests enforcement when ``ai_policy`` is not ``none``; an
    override is a different enforcement decision, or the same enforcement with
    a different policy (see :func:`ai_workflow_metrics`).
    """
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
    cols = check_by(by)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    j = audited_decisions(ds, market=market, period=period, qa_source=qa_source)
    ov = override_expr(j)
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
        return finish(pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]]), cols, 1)
    dr = design_rates(by_h, keys, cl)
    out = dr[cols].copy()
    out["metric"] = dr["__group"]
    for c in ("value", "n", "ci_low", "ci_high"):
        out[c] = dr[c].to_numpy(float)
    return finish(out, cols, min_n(ds, market))
