"""The engine step of root-cause analysis: the items of a metric and their sums per segment.

One row per item of the metric's denominator (:func:`metric_table`), from
QA audits, decisions, scored audits, double-audited decisions,
escalations or red-team items; then sums per segment and period, one
``GROUP BY`` per dimension unioned into one query (:func:`aggregate`),
and the two periods side by side (:func:`periods_wide`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.data.localtime import epoch_seconds, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.vocabulary import (
    DECISION_DIMENSIONS,
    ESCALATION_DIMENSIONS,
    MISSING,
    RateMetric,
    check_dimensions,
)
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure import scope
from qualitylab.measure.scope import Period

# Internal plumbing of the rca package: its names are public for the sibling
# modules, none is part of qualitylab.rca's API.
__all__: list[str] = []

_QA_FLAGS = {
    "accuracy": "correct",
    "over_enforcement_rate": "over_enforcement",
    "under_enforcement_rate": "under_enforcement",
    "wrong_policy_rate": "wrong_policy",
}


def metric_table(
    ds: Dataset,
    spec: RateMetric,
    market: str | None,
    periods: Sequence[Period],
    qa_source: str | None,
) -> ir.Table:
    """Rows of the metric in any of `periods`, with ``_period`` (index into
    `periods`), ``_y`` (numerator: 0/1 outcome), ``_d`` (denominator: 1, or 0
    for a row that only counts in the numerator) and ``_w`` (design weight)."""
    span = Period(min(p.start for p in periods), max(p.end for p in periods))
    one = ibis.literal(1.0)
    if spec.source == "escalations":
        return _escalation_table(ds, market, span, periods)
    if spec.source == "red_team":
        t = with_period(_red_team_items(ds, market, span), periods)
        t = t.filter(t.policy != "none")
        y = t.ai_score >= _ai_threshold(ds, market)
        return t.mutate(_y=y.cast("float64"), _d=one, _w=one)
    if spec.source in ("audits", "scored"):
        t = m.audited_decisions(ds, market=market, period=span, qa_source=qa_source)
    elif spec.source == "qa_pairs":
        t = _qa_pairs(ds, market, span)
    else:
        t = m.decisions_in_period(ds, market=market, period=span)
    t = with_period(t, periods)
    w = one
    if spec.source == "audits":
        y = t[_QA_FLAGS[spec.name]]
        w = t.w.cast("float64")
    elif spec.source == "scored":
        # truth: QA enforced; prediction: score at or above the threshold (aieval.ai_metrics)
        thr = _ai_threshold(ds, market)
        t = t.filter(t.ai_score.notnull())
        if spec.name in ("ai_recall", "ai_fnr"):  # denominator: items QA found violating
            t = t.filter(t.qa_enforced)
        elif spec.name == "ai_fpr":  # items QA found not violating
            t = t.filter(~t.qa_enforced)
        else:  # ai_precision: items the model flagged
            t = t.filter(t.ai_score >= thr)
        flagged = t.ai_score >= thr
        y = {
            "ai_recall": flagged,
            "ai_fnr": ~flagged,
            "ai_fpr": flagged,
            "ai_precision": t.qa_enforced,
        }[spec.name]
        w = t.w.cast("float64")
    elif spec.source == "qa_pairs":
        y = t._label_i == t._label_v
        # weighted by the internal audit, as metrics.qa_alignment
        w = t.w.cast("float64")
    elif spec.name == "auto_action_rate":
        t = t.filter(t.action.notnull())
        y = t.routing == "ai_auto"
    elif spec.name == "override_rate":
        t = t.filter(t.action.notnull() & (t.routing == "ai_assisted"))
        y = m.override_expr(t)
    else:  # sla_compliance
        t, y = _sla_outcome(ds, t, market, periods)
    return t.mutate(_y=y.cast("float64"), _d=one, _w=w)


def with_period(t: ir.Table, periods: Sequence[Period]) -> ir.Table:
    """Rows whose market-local ``date`` falls in one of `periods`, with its index ``_period``."""
    per = ibis.cases(
        *[(t.date.between(p.start, p.end), ibis.literal(i)) for i, p in enumerate(periods)],
        else_=ibis.null("int64"),
    )
    t = t.mutate(_period=per)
    return t.filter(t._period.notnull())


def _ai_threshold(ds: Dataset, market: str | None) -> float:
    """The score at or above which the model flags an item (the ``ai_threshold`` parameter)."""
    params = ds.params.market(market) if market else ds.params.defaults
    return float(params.ai_threshold)


def _qa_pairs(ds: Dataset, market: str | None, span: Period) -> ir.Table:
    """Decisions audited by both QA sources: the decision's columns and both labels.

    The latest audit of each source counts, as in
    :func:`qualitylab.metrics.qa_alignment`; ``_label_i``/``_label_v`` are the
    internal and vendor labels (the policy when enforced, else ``none``) and
    ``w`` the internal audit's design weight.
    """
    j = m.audited_decisions(ds, market=market, period=span, qa_source=None)
    j = j.mutate(_label=ibis.ifelse(j.qa_enforced, j.qa_policy, ibis.literal("none")))
    rk = ibis.row_number().over(
        group_by=[j.decision_id, j.qa_source], order_by=ibis.desc(j.audited_at)
    )
    latest = j.mutate(_rk=rk)
    latest = latest.filter(latest._rk == 0)
    vendor = latest.filter(latest.qa_source == "vendor").select(
        _vid=latest.decision_id, _label_v=latest._label
    )
    internal = latest.filter(latest.qa_source == "internal")
    keep = [*DECISION_DIMENSIONS, "decision_id", "date", "_label", "w"]
    internal = internal.select(*keep).rename(_label_i="_label")
    pairs = internal.join(vendor, internal.decision_id == vendor._vid)
    return pairs.select(*[c for c in pairs.columns if c != "_vid"])


def _red_team_items(ds: Dataset, market: str | None, span: Period) -> ir.Table:
    """Red-team items created on market-local dates of `span`, with ``date``."""
    if not ds.has("red_team"):
        raise QualityLabError("red_team is not in the dataset; red_team_recall needs it")
    tzs = scope.timezones(ds, market)
    rt = ds.table("red_team")
    if market is not None:
        lo, hi = period_bounds_utc(span.start, span.end, tzs[market])
        rt = rt.filter((rt.market == market) & (rt.created_at >= lo) & (rt.created_at < hi))
    else:
        rt = rt.filter(rt.market.isin(list(tzs)))
    rt = rt.mutate(date=scope.local_date(rt, "created_at", tzs, span))
    return rt.filter(rt.date.between(span.start, span.end))


def _escalation_table(
    ds: Dataset, market: str | None, span: Period, periods: Sequence[Period]
) -> ir.Table:
    """Decisions (denominator rows) and escalations (numerator rows) in one table.

    Escalations are dated by ``raised_at``, decisions by ``created_at``, both
    market-local, as in :func:`qualitylab.escalations.escalation_rate`.
    """
    if not ds.has("escalations"):
        raise QualityLabError("escalations is not in the dataset; escalation_rate needs it")
    dec = m.decisions_in_period(ds, market=market, period=span)
    esc = m.escalations_in_period(ds, market, span, scope.timezones(ds, market))
    parts = []
    for t, y, d in ((dec, 0.0, 1.0), (esc, 1.0, 0.0)):
        parts.append(
            t.select(
                *[t[c].cast("string").name(c) for c in ESCALATION_DIMENSIONS],
                date=t.date.cast("date"),
                _y=ibis.literal(y),
                _d=ibis.literal(d),
                _w=ibis.literal(1.0),
            )
        )
    return with_period(ibis.union(*parts, distinct=False), periods)


def _sla_outcome(
    ds: Dataset, t: ir.Table, market: str | None, periods: Sequence[Period]
) -> tuple[ir.Table, ir.BooleanValue]:
    slas = scope.sla_map(ds, market, None)
    tzs = scope.timezones(ds, market)
    queues = t.select("queue").distinct().to_pandas()["queue"].tolist()
    unknown = sorted(set(queues) - set(slas))
    if unknown:
        warnings.warn(
            f"no SLA configured for queue(s) {unknown}; they are left out of "
            "sla_compliance (set sla_seconds in parameters)",
            stacklevel=4,
        )
    as_of = ibis.cases(
        *[
            (t._period == i, ibis.literal(scope.as_of(p, tzs, market)))
            for i, p in enumerate(periods)
        ],
        else_=ibis.null("timestamp"),
    )
    sla = ibis.cases(
        *[(t.queue == q, ibis.literal(float(s))) for q, s in slas.items()],
        else_=ibis.null("float64"),
    )
    decided = t.decided_at.notnull() & (t.decided_at < as_of)
    secs = (epoch_seconds(t.decided_at) - epoch_seconds(t.created_at)).cast("float64")
    age = (epoch_seconds(as_of) - epoch_seconds(t.created_at)).cast("float64")
    t = t.mutate(_sla=sla, _decided=decided, _secs=secs, _age=age)
    # Known outcome: decided by the period's end, or still pending but already late.
    t = t.filter(t._sla.notnull() & (t._decided | (t._age > t._sla)))
    return t, t._decided & (t._secs <= t._sla)


def weighted_sums(t: ir.Table, keys: Sequence[str]) -> pd.DataFrame:
    """Per key: count, events and design-weight sums ``n, k, sw, sw2, swy``, as floats."""
    sums = {
        "n": t._d.sum(),
        "k": t._y.sum(),
        "sw": (t._w * t._d).sum(),
        "sw2": (t._w * t._w * t._d).sum(),
        "swy": (t._w * t._y).sum(),
    }
    df = t.group_by(list(keys)).aggregate(**sums).to_pandas()
    for c in sums:
        df[c] = df[c].astype("float64")
    return df


def aggregate(
    t: ir.Table, groupings: Sequence[Sequence[str]], *, ds: Dataset | None = None
) -> pd.DataFrame:
    """Sums per (segment, period) for every grouping, in one engine query.

    Every grouping has the same width k; the result has columns ``_d0.._dk``
    (dimension names), ``_s0.._sk`` (segment values as strings), ``_period``
    and the sums ``n, k, sw, sw2, swy, sw2y``.

    With ``ds`` (the dataset ``t`` comes from) and several groupings, the
    columns they need are first kept by the engine (:meth:`Dataset.kept`), so
    ibis compiles ``t``'s expression once rather than once per branch of the
    union (each branch repeated it: ~0.1 s of compilation per grouping). The
    sums are the same.
    """
    if ds is not None and len(groupings) > 1:
        needed = {d for dims in groupings for d in dims} | {"_period", "_d", "_y", "_w"}
        with ds.kept(t.select(*[c for c in t.columns if c in needed])) as kept:
            return aggregate(kept, groupings)
    parts = []
    for dims in groupings:
        segs = {f"_s{i}": t[d].cast("string").fill_null(MISSING) for i, d in enumerate(dims)}
        keyed = t.mutate(**segs)
        g = keyed.group_by([*segs, "_period"]).aggregate(
            n=keyed._d.sum(),
            k=keyed._y.sum(),
            sw=(keyed._w * keyed._d).sum(),
            sw2=(keyed._w * keyed._w * keyed._d).sum(),
            swy=(keyed._w * keyed._y).sum(),
            sw2y=(keyed._w * keyed._w * keyed._y).sum(),
        )
        names = {f"_d{i}": ibis.literal(d) for i, d in enumerate(dims)}
        cols = [*names, *segs, "_period", "n", "k", "sw", "sw2", "swy", "sw2y"]
        parts.append(g.mutate(**names).select(cols))
    expr = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
    df = expr.to_pandas()
    for c in ("n", "k", "sw", "sw2", "swy", "sw2y"):
        df[c] = df[c].astype("float64")
    df["_period"] = df["_period"].astype("int64")
    return df


PAIR_KEYS = ["_d0", "_s0", "_d1", "_s1"]


def periods_wide(agg: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Periods side by side: ``<stat>_0`` (baseline) and ``<stat>_1`` (current)."""
    stats = ["n", "k", "sw", "sw2", "swy", "sw2y"]
    wide = agg.pivot_table(index=keys, columns="_period", values=stats, aggfunc="sum", fill_value=0)
    wide.columns = [f"{s}_{p}" for s, p in wide.columns]
    for s in stats:
        for p in (0, 1):
            if f"{s}_{p}" not in wide:
                wide[f"{s}_{p}"] = 0.0
    return wide.reset_index()


def use_weights(agg: pd.DataFrame, weighted: bool | None) -> bool:
    """Whether to use design weights: as asked, else when any weight differs from 1."""
    if weighted is not None:
        return bool(weighted)
    return bool(
        (~np.isclose(agg["sw"], agg["n"]) | ~np.isclose(agg["sw2"], agg["n"])).any()
        if len(agg)
        else False
    )


def period_sums(wide: pd.DataFrame, p: int, weighted: bool) -> tuple[np.ndarray, ...]:
    """Denominator, numerator and effective n of period `p`."""
    n = wide[f"n_{p}"].to_numpy(float)
    if weighted:
        sw = wide[f"sw_{p}"].to_numpy(float)
        sw2 = wide[f"sw2_{p}"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            neff = np.where(sw2 > 0, sw * sw / sw2, 0.0)
        return sw, wide[f"swy_{p}"].to_numpy(float), neff, n
    return n, wide[f"k_{p}"].to_numpy(float), n, n


def filter_expr(t: ir.Table, where: Mapping[str, Any], spec: RateMetric, name: str):
    """The condition of a segment filter ``{dimension: value(s)}`` on the items, checked."""
    if not isinstance(where, Mapping) or not where:
        raise ParameterError(
            f"{name} must be a non-empty mapping of dimension to value(s), e.g. "
            f"{{'policy': 'scam'}}; got {where!r}",
            key=name,
        )
    check_dimensions(list(where), spec)
    cond = ibis.literal(True)
    for col, val in where.items():
        vals = [val] if isinstance(val, str) else list(val)
        cond = cond & t[col].cast("string").fill_null(MISSING).isin([str(v) for v in vals])
    return cond
