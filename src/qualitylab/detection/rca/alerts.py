"""Root-cause analysis: which segments explain a change in a rate metric.

The engine reduces the audited (or decided) items of two market-local periods,
a *baseline* and a *current* one, to sums per segment and period — one
``GROUP BY`` per dimension (or pair of dimensions), all in one query — and the
rest is arithmetic on those sums in pandas/numpy:

* :func:`decompose` — per dimension, the change of the overall rate split into
  *mix* (segment shares) and *rate* (segment performance) effects that add up
  exactly to the change (Kitagawa's symmetric shift-share);
  :func:`shift_share` is the same arithmetic on arrays.
* :func:`adtributor` — Adtributor-style ranking (Bhagwan et al. 2014): per
  dimension the smallest set of segments whose explanatory power reaches a
  threshold, dimensions ranked by the surprise (Jensen–Shannon divergence) per
  segment of that set, a nested dimension (site in vendor) only ahead of its
  parent when its segments behaved differently; :func:`drill_down` repeats
  the search on pairs of dimensions.
* :func:`outlier_units` / :func:`funnel` — funnel-plot outliers (moderators,
  sites, auditors) with exact or normal control limits, Benjamini–Hochberg
  flags and optional overdispersion (Spiegelhalter 2005).
* :func:`error_anatomy` — error type × policy × language contributions to the
  change in the error rate; :func:`segment_context` — calibration score and QA
  alignment around a segment.
* :func:`event_impact` — before/after a dated event, with an optional
  difference-in-differences against a control.
* :func:`summarize` — a plain-language conclusion built from the numbers.
* :func:`explain_alert` — the breakdown that fits an alert's metric, over the
  alert's window against the days before it: a rate decomposition, counts or
  open items by segment, or response percentiles by segment.

Metrics (:data:`RCA_METRICS`), each with the numerator and denominator of the
function that computes it:

* QA audits, design-weighted (:func:`qualitylab.metrics.qa_metrics`):
  ``accuracy``, ``over_enforcement_rate``, ``under_enforcement_rate``,
  ``wrong_policy_rate``;
* decisions (:func:`~qualitylab.metrics.operational_metrics`,
  :func:`~qualitylab.metrics.ai_workflow_metrics`): ``sla_compliance``,
  ``auto_action_rate``, ``override_rate``;
* audited decisions the model scored, QA enforcement as the truth and
  ``ai_score >= ai_threshold`` as the prediction, design-weighted
  (:func:`qualitylab.aieval.ai_metrics`): ``ai_recall`` and ``ai_fnr`` (items
  QA found violating), ``ai_precision`` (items the model flagged), ``ai_fpr``
  (items QA found not violating);
* ``qa_alignment``: decisions audited by both vendor and internal QA (the
  latest audit of each), agreeing on the label
  (:func:`~qualitylab.metrics.qa_alignment`);
* ``escalation_rate``: escalations raised per decision created, by market,
  vendor and queue (:func:`qualitylab.escalations.escalation_rate` reports it
  per 1,000; results here are per decision, summaries per 1,000);
* ``red_team_recall``: violating red-team items the model flags
  (:func:`qualitylab.redteam.red_team_evaluation`).
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from qualitylab.data.localtime import epoch_seconds, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure.stats import (
    ConfidenceInterval,
    adjust_pvalues,
    compare_proportions,
    proportion_ci,
    proportion_difference_ci,
)

__all__ = [
    "ADTRIBUTOR_DIMENSION_COLUMNS",
    "ADTRIBUTOR_SEGMENT_COLUMNS",
    "ANATOMY_COLUMNS",
    "CONTEXT_COLUMNS",
    "DECOMPOSITION_COLUMNS",
    "DEFAULT_DIMENSIONS",
    "DRILL_DOWN_COLUMNS",
    "EXPLAINED_METRICS",
    "EXPLANATION_COLUMNS",
    "FUNNEL_COLUMNS",
    "METRIC_DIMENSIONS",
    "MISSING",
    "MIX_METHODS",
    "RCA_METRICS",
    "AdtributorResult",
    "DecompositionResult",
    "EventImpactResult",
    "Explanation",
    "FunnelResult",
    "adtributor",
    "decompose",
    "dimensions_of",
    "drill_down",
    "error_anatomy",
    "event_impact",
    "explain_alert",
    "funnel",
    "funnel_limits",
    "jensen_shannon",
    "outlier_units",
    "segment_context",
    "shift_share",
    "summarize",
]


# --------------------------------------------------------------------------- #
# vocabulary
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _RateMetric:
    name: str
    # "audits" (QA audits), "decisions", "scored" (audits the model scored),
    # "qa_pairs" (decisions audited by both QA sources), "escalations", "red_team"
    source: str
    higher_is_better: bool
    label: str
    items: str = "decisions"  # the denominator's items, for messages
    scale: float = 1.0  # reported per `scale` items (escalations per 1,000 decisions)

    @property
    def noun(self) -> str:
        """The label inside a sentence (``SLA``, ``AI``, ``QA`` keep their capitals)."""
        return self.label if self.label[:2] in ("SL", "AI", "QA") else self.label.lower()


_SCORED = "audited decisions the model scored"
_METRICS: dict[str, _RateMetric] = {
    "accuracy": _RateMetric("accuracy", "audits", True, "Accuracy", "audited decisions"),
    "over_enforcement_rate": _RateMetric(
        "over_enforcement_rate", "audits", False, "Over-enforcement rate", "audited decisions"
    ),
    "under_enforcement_rate": _RateMetric(
        "under_enforcement_rate", "audits", False, "Under-enforcement rate", "audited decisions"
    ),
    "wrong_policy_rate": _RateMetric(
        "wrong_policy_rate", "audits", False, "Wrong-policy rate", "audited decisions"
    ),
    "sla_compliance": _RateMetric("sla_compliance", "decisions", True, "SLA compliance"),
    "auto_action_rate": _RateMetric("auto_action_rate", "decisions", False, "Auto-action rate"),
    "override_rate": _RateMetric("override_rate", "decisions", False, "Override rate"),
    "ai_recall": _RateMetric(
        "ai_recall", "scored", True, "AI recall", f"{_SCORED} that QA found violating"
    ),
    "ai_fnr": _RateMetric(
        "ai_fnr", "scored", False, "AI false negative rate", f"{_SCORED} that QA found violating"
    ),
    "ai_precision": _RateMetric(
        "ai_precision", "scored", True, "AI precision", f"{_SCORED} and flagged"
    ),
    "ai_fpr": _RateMetric(
        "ai_fpr",
        "scored",
        False,
        "AI false positive rate",
        f"{_SCORED} that QA found not violating",
    ),
    "qa_alignment": _RateMetric(
        "qa_alignment", "qa_pairs", True, "QA alignment", "decisions audited by both QA sources"
    ),
    "escalation_rate": _RateMetric(
        "escalation_rate", "escalations", False, "Escalation rate", "decisions", scale=1000.0
    ),
    "red_team_recall": _RateMetric(
        "red_team_recall", "red_team", True, "Red-team recall", "violating red-team items"
    ),
}
#: Rate metrics the root-cause functions accept.
RCA_METRICS = tuple(_METRICS)
_QA_FLAGS = {
    "accuracy": "correct",
    "over_enforcement_rate": "over_enforcement",
    "under_enforcement_rate": "under_enforcement",
    "wrong_policy_rate": "wrong_policy",
}
_DECISION_DIMENSIONS = (
    "market",
    "vendor",
    "site",
    "queue",
    "language",
    "policy",
    "routing",
    "ai_model",
    "moderator_id",
)
_AUDIT_DIMENSIONS = ("auditor_id", "qa_policy", "qa_source")
_ESCALATION_DIMENSIONS = ("market", "vendor", "queue")
_RED_TEAM_DIMENSIONS = ("market", "language", "policy", "attack", "ai_model")
#: Dimensions :func:`decompose` splits by unless told otherwise.
DEFAULT_DIMENSIONS = ("vendor", "site", "queue", "language", "policy", "routing", "ai_model")
#: Default dimensions of the metrics that are not sliced by DEFAULT_DIMENSIONS: the
#: model scores content before anyone handles it (as the alert scan slices it), and
#: escalations and red-team items carry only these columns.
METRIC_DIMENSIONS: dict[str, tuple[str, ...]] = {
    **{name: ("queue", "language", "policy", "ai_model") for name in _METRICS if name[:3] == "ai_"},
    "escalation_rate": ("vendor", "queue"),
    "red_team_recall": ("language", "policy", "attack", "ai_model"),
}
#: Segment label for a null dimension value (e.g. ``moderator_id`` of ``ai_auto`` items).
MISSING = "(missing)"

DECOMPOSITION_COLUMNS = [
    "dimension",
    "segment",
    "share_base",
    "share_cur",
    "rate_base",
    "rate_cur",
    "n_base",
    "n_cur",
    "mix_effect",
    "rate_effect",
    "contribution",
    "p_value",
]
TOTALS_COLUMNS = [
    "dimension",
    "n_segments",
    "mix_effect",
    "rate_effect",
    "change",
]
ADTRIBUTOR_DIMENSION_COLUMNS = [
    "rank",
    "dimension",
    "explained",
    "n_selected",
    "top_segment",
    "explanatory_power",
    "surprise",
    "surprise_per_segment",
    "jsd",
    "mix_effect",
    "rate_effect",
    "nested_in",
    "heterogeneity_p",
    "explains_away",
    "outside_p",
]
ADTRIBUTOR_SEGMENT_COLUMNS = [
    "dimension",
    "segment",
    "explanatory_power",
    "surprise",
    "cumulative_ep",
    "selected",
    "contribution",
    "mix_effect",
    "rate_effect",
    "share_base",
    "share_cur",
    "rate_base",
    "rate_cur",
    "n_base",
    "n_cur",
]
DRILL_DOWN_COLUMNS = [
    "pair_rank",
    "dimension_a",
    "segment_a",
    "dimension_b",
    "segment_b",
    "explanatory_power",
    "surprise",
    "cumulative_ep",
    "selected",
    "n_selected",
    "contribution",
    "mix_effect",
    "rate_effect",
    "share_base",
    "share_cur",
    "rate_base",
    "rate_cur",
    "n_base",
    "n_cur",
]
FUNNEL_COLUMNS = [
    "n",
    "k",
    "rate",
    "population_rate",
    "z",
    "p_value",
    "p_adjusted",
    "flagged",
    "direction",
    "lower_95",
    "upper_95",
    "lower_998",
    "upper_998",
    "outside_95",
    "outside_998",
]
ANATOMY_COLUMNS = [
    "error_type",
    "n_base",
    "n_cur",
    "rate_base",
    "rate_cur",
    "change",
    "share_of_change",
]
CONTEXT_COLUMNS = [
    "metric",
    "dimension",
    "segment",
    "rater_group",
    "period",
    "value",
    "n",
    "ci_low",
    "ci_high",
]
_FUNNEL_LEVELS = {"95": 0.95, "998": 0.998}
#: Ways to split the mix effect between segments (see :func:`shift_share`).
MIX_METHODS = ("centered", "kitagawa")
_ERROR_TYPES = ("over_enforcement", "under_enforcement", "wrong_policy")

# Error messages are module constants so tests can assert on them.
MSG_METRIC = "metric must be one of {allowed}; got {value!r}"
MSG_DIMENSION = "unknown dimension {value!r} for metric {metric!r}; choose from {allowed}"
MSG_OVERLAP = "baseline {baseline} and current {current} periods overlap; they must be disjoint"
MSG_EMPTY_PERIOD = "no {what} for {metric} in market {market!r} in the {which} period {period}"
MSG_ZERO_CHANGE = "{metric} did not change; explanatory power is undefined"


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def _check_metric(metric: object) -> _RateMetric:
    if not isinstance(metric, str) or metric not in _METRICS:
        raise ParameterError(MSG_METRIC.format(allowed=RCA_METRICS, value=metric), key="metric")
    return _METRICS[metric]


def _allowed_dimensions(spec: _RateMetric) -> tuple[str, ...]:
    if spec.source in ("audits", "scored"):
        return (*_DECISION_DIMENSIONS, *_AUDIT_DIMENSIONS)
    if spec.source == "escalations":
        return _ESCALATION_DIMENSIONS
    if spec.source == "red_team":
        return _RED_TEAM_DIMENSIONS
    return _DECISION_DIMENSIONS


def dimensions_of(metric: str) -> tuple[str, ...]:
    """The dimensions a rate metric can be split by (:func:`decompose`, :func:`outlier_units`).

    Examples
    --------
    >>> dimensions_of("escalation_rate")
    ('market', 'vendor', 'queue')
    >>> "moderator_id" in dimensions_of("ai_recall")
    True
    """
    return _allowed_dimensions(_check_metric(metric))


def _default_dimensions(spec: _RateMetric, where: Mapping[str, Any] | None) -> list[str]:
    """The metric's default dimensions, less those a `where` filter fixes."""
    dims = METRIC_DIMENSIONS.get(spec.name, DEFAULT_DIMENSIONS)
    return [d for d in dims if d not in (where or {})]


def _check_dimensions(dimensions: Sequence[str] | str, spec: _RateMetric) -> list[str]:
    dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    allowed = _allowed_dimensions(spec)
    for d in dims:
        if d not in allowed:
            raise ParameterError(
                MSG_DIMENSION.format(value=d, metric=spec.name, allowed=", ".join(allowed)),
                key="dimensions",
            )
    if not dims:
        raise ParameterError("dimensions must name at least one dimension", key="dimensions")
    if len(set(dims)) != len(dims):
        raise ParameterError(f"dimensions repeats a name: {dims}", key="dimensions")
    return dims


def _as_period(value: object, name: str) -> m.Period:
    if isinstance(value, m.Period):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ParameterError(
            f"{name} must be a (start, end) pair of dates or ISO strings; got {value!r}", key=name
        )
    start, end = m._as_date(value[0]), m._as_date(value[1])
    if start is None or end is None:
        raise ParameterError(f"{name} needs both a start and an end; got {value!r}", key=name)
    if end < start:
        raise ParameterError(f"{name} ends ({end}) before it starts ({start})", key=name)
    return m.Period(start, end)


def _check_periods(baseline: object, current: object) -> tuple[m.Period, m.Period]:
    base = _as_period(baseline, "baseline")
    cur = _as_period(current, "current")
    if base.start <= cur.end and cur.start <= base.end:
        raise ParameterError(
            MSG_OVERLAP.format(baseline=_fmt_period(base), current=_fmt_period(cur)),
            key="current",
        )
    return base, cur


def _check_unit_interval(value: float, name: str, *, closed: bool = False) -> float:
    try:
        v = float(value)
        ok = (0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ParameterError(f"{name} must be in {interval}; got {value!r}", key=name)
    return v


def _check_qa_source(qa_source: object) -> str | None:
    if qa_source not in (None, "internal", "vendor"):
        raise ParameterError(
            f"qa_source must be 'internal', 'vendor' or None; got {qa_source!r}", key="qa_source"
        )
    return qa_source  # type: ignore[return-value]


def _fmt_period(p: m.Period) -> str:
    return f"{p.start.isoformat()}..{p.end.isoformat()}"


def _confidence(ds: Dataset, market: str | None, confidence_level: float | None) -> float:
    if confidence_level is None:
        return m._confidence(ds, market)
    return _check_unit_interval(confidence_level, "confidence_level")


# --------------------------------------------------------------------------- #
# the engine step: one row per item of the metric's denominator
# --------------------------------------------------------------------------- #
def _metric_table(
    ds: Dataset,
    spec: _RateMetric,
    market: str | None,
    periods: Sequence[m.Period],
    qa_source: str | None,
) -> ir.Table:
    """Rows of the metric in any of `periods`, with ``_period`` (index into
    `periods`), ``_y`` (numerator: 0/1 outcome), ``_d`` (denominator: 1, or 0
    for a row that only counts in the numerator) and ``_w`` (design weight)."""
    span = m.Period(min(p.start for p in periods), max(p.end for p in periods))
    one = ibis.literal(1.0)
    if spec.source == "escalations":
        return _escalation_table(ds, market, span, periods)
    if spec.source == "red_team":
        t = _with_period(_red_team_items(ds, market, span), periods)
        t = t.filter(t.policy != "none")
        y = t.ai_score >= _ai_threshold(ds, market)
        return t.mutate(_y=y.cast("float64"), _d=one, _w=one)
    if spec.source in ("audits", "scored"):
        t = m.audited_decisions(ds, market=market, period=span, qa_source=qa_source)
    elif spec.source == "qa_pairs":
        t = _qa_pairs(ds, market, span)
    else:
        t = m.decisions_in_period(ds, market=market, period=span)
    t = _with_period(t, periods)
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
        y = m._override_expr(t)
    else:  # sla_compliance
        t, y = _sla_outcome(ds, t, market, periods)
    return t.mutate(_y=y.cast("float64"), _d=one, _w=w)


def _with_period(t: ir.Table, periods: Sequence[m.Period]) -> ir.Table:
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


def _qa_pairs(ds: Dataset, market: str | None, span: m.Period) -> ir.Table:
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
    keep = [*_DECISION_DIMENSIONS, "decision_id", "date", "_label", "w"]
    internal = internal.select(*keep).rename(_label_i="_label")
    pairs = internal.join(vendor, internal.decision_id == vendor._vid)
    return pairs.select(*[c for c in pairs.columns if c != "_vid"])


def _red_team_items(ds: Dataset, market: str | None, span: m.Period) -> ir.Table:
    """Red-team items created on market-local dates of `span`, with ``date``."""
    if not ds.has("red_team"):
        raise QualityLabError("red_team is not in the dataset; red_team_recall needs it")
    tzs = m._timezones(ds, market)
    rt = ds.table("red_team")
    if market is not None:
        lo, hi = period_bounds_utc(span.start, span.end, tzs[market])
        rt = rt.filter((rt.market == market) & (rt.created_at >= lo) & (rt.created_at < hi))
    else:
        rt = rt.filter(rt.market.isin(list(tzs)))
    rt = rt.mutate(date=m._local_date(rt, "created_at", tzs, span))
    return rt.filter(rt.date.between(span.start, span.end))


def _escalation_table(
    ds: Dataset, market: str | None, span: m.Period, periods: Sequence[m.Period]
) -> ir.Table:
    """Decisions (denominator rows) and escalations (numerator rows) in one table.

    Escalations are dated by ``raised_at``, decisions by ``created_at``, both
    market-local, as in :func:`qualitylab.escalations.escalation_rate`.
    """
    from qualitylab.operations.escalations import _escalations_in_period

    if not ds.has("escalations"):
        raise QualityLabError("escalations is not in the dataset; escalation_rate needs it")
    dec = m.decisions_in_period(ds, market=market, period=span)
    esc = _escalations_in_period(ds, market, span, m._timezones(ds, market))
    parts = []
    for t, y, d in ((dec, 0.0, 1.0), (esc, 1.0, 0.0)):
        parts.append(
            t.select(
                *[t[c].cast("string").name(c) for c in _ESCALATION_DIMENSIONS],
                date=t.date.cast("date"),
                _y=ibis.literal(y),
                _d=ibis.literal(d),
                _w=ibis.literal(1.0),
            )
        )
    return _with_period(ibis.union(*parts, distinct=False), periods)


def _sla_outcome(
    ds: Dataset, t: ir.Table, market: str | None, periods: Sequence[m.Period]
) -> tuple[ir.Table, ir.BooleanValue]:
    slas = m._sla_map(ds, market, None)
    tzs = m._timezones(ds, market)
    queues = t.select("queue").distinct().to_pandas()["queue"].tolist()
    unknown = sorted(set(queues) - set(slas))
    if unknown:
        warnings.warn(
            f"no SLA configured for queue(s) {unknown}; they are left out of "
            "sla_compliance (set sla_seconds in parameters)",
            stacklevel=4,
        )
    as_of = ibis.cases(
        *[(t._period == i, ibis.literal(m._as_of(p, tzs, market))) for i, p in enumerate(periods)],
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


def _weighted_sums(t: ir.Table, keys: Sequence[str]) -> pd.DataFrame:
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


def _aggregate(t: ir.Table, groupings: Sequence[Sequence[str]]) -> pd.DataFrame:
    """Sums per (segment, period) for every grouping, in one engine query.

    Every grouping has the same width k; the result has columns ``_d0.._dk``
    (dimension names), ``_s0.._sk`` (segment values as strings), ``_period``
    and the sums ``n, k, sw, sw2, swy, sw2y``.
    """
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


_PAIR_KEYS = ["_d0", "_s0", "_d1", "_s1"]


def _wide(agg: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Periods side by side: ``<stat>_0`` (baseline) and ``<stat>_1`` (current)."""
    stats = ["n", "k", "sw", "sw2", "swy", "sw2y"]
    wide = agg.pivot_table(index=keys, columns="_period", values=stats, aggfunc="sum", fill_value=0)
    wide.columns = [f"{s}_{p}" for s, p in wide.columns]
    for s in stats:
        for p in (0, 1):
            if f"{s}_{p}" not in wide:
                wide[f"{s}_{p}"] = 0.0
    return wide.reset_index()


def _use_weights(agg: pd.DataFrame, weighted: bool | None) -> bool:
    if weighted is not None:
        return bool(weighted)
    return bool(
        (~np.isclose(agg["sw"], agg["n"]) | ~np.isclose(agg["sw2"], agg["n"])).any()
        if len(agg)
        else False
    )


def _sums(wide: pd.DataFrame, p: int, weighted: bool) -> tuple[np.ndarray, ...]:
    """Denominator, numerator and effective n of period `p`."""
    n = wide[f"n_{p}"].to_numpy(float)
    if weighted:
        sw = wide[f"sw_{p}"].to_numpy(float)
        sw2 = wide[f"sw2_{p}"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            neff = np.where(sw2 > 0, sw * sw / sw2, 0.0)
        return sw, wide[f"swy_{p}"].to_numpy(float), neff, n
    return n, wide[f"k_{p}"].to_numpy(float), n, n


# --------------------------------------------------------------------------- #
# shift-share arithmetic
# --------------------------------------------------------------------------- #
def shift_share(
    weight_base: npt.ArrayLike,
    events_base: npt.ArrayLike,
    weight_cur: npt.ArrayLike,
    events_cur: npt.ArrayLike,
    *,
    segments: Sequence[Any] | None = None,
    mix: str = "centered",
) -> pd.DataFrame:
    """Symmetric (Kitagawa) shift-share decomposition of a change in a rate.

    Parameters
    ----------
    weight_base, events_base : array_like
        Per segment, the denominator (items, or design-weight sums) and the
        numerator (items with the outcome) in the baseline period.
    weight_cur, events_cur : array_like
        The same in the current period. A segment absent from one period has
        weight 0 there.
    segments : sequence, optional
        Segment labels (default ``0..k-1``).
    mix : {"centered", "kitagawa"}, default "centered"
        How the mix effect is split between segments (the per-dimension total
        is the same); see Notes.

    Returns
    -------
    pandas.DataFrame
        ``segment, share_base, share_cur, rate_base, rate_cur, mix_effect,
        rate_effect, contribution``. The contributions add up to the change in
        the overall rate ``sum(events_cur)/sum(weight_cur) -
        sum(events_base)/sum(weight_base)``.

    Notes
    -----
    With shares :math:`s_i` and rates :math:`r_i` the overall rate is
    :math:`R = \\sum_i s_i r_i`, and (Kitagawa 1955; Das Gupta 1993, ch. 2)

    .. math::

        \\Delta R = \\sum_i \\underbrace{(r_{1i} - r_{0i})\\frac{s_{0i} + s_{1i}}{2}}_{\\text{rate}}
                  + \\underbrace{(s_{1i} - s_{0i})\\frac{r_{0i} + r_{1i}}{2}}_{\\text{mix}}

    exactly, segment by segment (the two terms add up to
    :math:`s_{1i}r_{1i} - s_{0i}r_{0i}`); this is ``mix="kitagawa"``. Its
    per-segment mix term scales with the segment's rate *level*, so a segment
    that merely lost volume at an average rate gets a large negative mix
    effect, offset by the segments that gained it. ``mix="centered"`` (the
    default) measures each segment's rate against the mean overall rate
    :math:`\\bar R = (R_0 + R_1)/2`:

    .. math:: \\text{mix}_i = (s_{1i} - s_{0i})\\left(\\frac{r_{0i} + r_{1i}}{2} - \\bar R\\right)

    Because :math:`\\sum_i (s_{1i} - s_{0i}) = 0` the mix effects of a
    dimension have the same total, the rate effects are unchanged, and the
    decomposition is still exact; volume moving into a segment hurts only if
    that segment is worse than average. A segment present in one period only
    has no rate change: its rate in the other period is taken equal, so its
    whole contribution (its entry or exit) is mix.

    Examples
    --------
    Both segments improve, yet the overall rate falls because the work moved to
    the harder segment (Simpson's paradox):

    >>> out = shift_share(
    ...     [800, 200], [760, 140], [200, 800], [194, 600], segments=["easy", "hard"], mix="kitagawa"
    ... )
    >>> out[["segment", "mix_effect", "rate_effect"]].round(3)
      segment  mix_effect  rate_effect
    0    easy      -0.576        0.010
    1    hard       0.435        0.025
    >>> round(float(out["contribution"].sum()), 3)
    -0.106

    Centred, both moves hurt: volume left the easy (above-average) segment and
    joined the hard (below-average) one:

    >>> shift_share([800, 200], [760, 140], [200, 800], [194, 600])["mix_effect"].round(4).tolist()
    [-0.0678, -0.0732]
    """
    arrays = [
        np.asarray(a, dtype=float).ravel()
        for a in (weight_base, events_base, weight_cur, events_cur)
    ]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ParameterError(
            f"Found input variables with inconsistent numbers of segments: {[a.size for a in arrays]}"
        )
    w0, y0, w1, y1 = arrays
    for arr, name in ((w0, "weight_base"), (w1, "weight_cur")):
        if np.any(~(arr >= 0)) or arr.sum() <= 0:
            raise ParameterError(
                f"{name} must be non-negative with a positive total; got {arr.tolist()!r}",
                key=name,
            )
    for y, w, name in ((y0, w0, "events_base"), (y1, w1, "events_cur")):
        if np.any(~(y >= 0)) or np.any(y > w * (1 + 1e-12)):
            raise ParameterError(f"{name} must lie in [0, weight]; got {y.tolist()!r}", key=name)
    labels = list(range(w0.size)) if segments is None else list(segments)
    if len(labels) != w0.size:
        raise ParameterError(
            f"segments has {len(labels)} labels for {w0.size} segments", key="segments"
        )
    out = _shift_share_arrays(w0, y0, w1, y1, _check_mix(mix))
    out.insert(0, "segment", labels)
    return out


def _check_mix(mix: object) -> str:
    if mix not in MIX_METHODS:
        raise ParameterError(f"mix must be one of {MIX_METHODS}; got {mix!r}", key="mix")
    return str(mix)


def _shift_share_arrays(
    w0: np.ndarray, y0: np.ndarray, w1: np.ndarray, y1: np.ndarray, mix: str
) -> pd.DataFrame:
    s0 = w0 / w0.sum()
    s1 = w1 / w1.sum()
    centre = (y0.sum() / w0.sum() + y1.sum() / w1.sum()) / 2.0 if mix == "centered" else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r0 = np.where(w0 > 0, y0 / w0, np.nan)
        r1 = np.where(w1 > 0, y1 / w1, np.nan)
    r0f = np.where(w0 > 0, r0, r1)  # absent: no rate change
    r1f = np.where(w1 > 0, r1, r0)
    rate = (r1f - r0f) * (s0 + s1) / 2.0
    mix_effect = (s1 - s0) * ((r0f + r1f) / 2.0 - centre)
    return pd.DataFrame(
        {
            "share_base": s0,
            "share_cur": s1,
            "rate_base": r0,
            "rate_cur": r1,
            "mix_effect": mix_effect,
            "rate_effect": rate,
            "contribution": mix_effect + rate,
        }
    )


def _pooled_z(
    r0: np.ndarray, n0: np.ndarray, r1: np.ndarray, n1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z statistic and two-sided p-value (vectorised)."""
    r0, n0, r1, n1 = (np.asarray(a, dtype=float) for a in (r0, n0, r1, n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (r0 * n0 + r1 * n1) / (n0 + n1)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1))
        z = np.where(se > 0, (r1 - r0) / se, np.where(np.isclose(r1, r0), 0.0, np.inf))
    bad = ~((n0 > 0) & (n1 > 0)) | np.isnan(r0) | np.isnan(r1)
    z = np.where(bad, np.nan, z)
    p = np.where(bad, np.nan, 2.0 * sps.norm.sf(np.abs(z)))
    return z, np.minimum(p, 1.0)


# --------------------------------------------------------------------------- #
# decomposition
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class DecompositionResult:
    """Result of :func:`decompose`.

    Attributes
    ----------
    metric : str
    market : str or None
    baseline, current : Period
    rate_base, rate_cur : float
        Overall rate in each period (design-weighted when `weighted`).
    n_base, n_cur : int
        Items (audits for QA metrics) in each period.
    statistic : float
        Pooled two-proportion z of the change, at Kish effective sample sizes
        when weighted.
    pvalue : float
    method : str
        ``"z"``.
    alternative : str
        ``"two-sided"``.
    estimate : float
        The change ``rate_cur - rate_base``.
    confidence_level : float
    weighted : bool
        Whether design weights (``sample_weight``) were used.
    mix : str
        ``"centered"`` or ``"kitagawa"`` (see :func:`shift_share`).
    qa_source : str or None
    dimensions : tuple of str
    neff_base, neff_cur : float
        Effective sample sizes (equal to the n's when unweighted).
    segments : pandas.DataFrame
        :data:`DECOMPOSITION_COLUMNS`, one row per dimension × segment; within
        each dimension ``mix_effect + rate_effect = contribution`` and the
        contributions add up to `estimate`. ``p_value`` tests the segment's
        own rate change (pooled z; NaN for a segment absent from a period).
    totals : pandas.DataFrame
        Per dimension: ``dimension, n_segments, mix_effect, rate_effect,
        change``.
    sums : pandas.DataFrame
        Aligned with `segments`: the numerator and denominator of each rate
        (``num_base, num_cur, den_base, den_cur``; weight sums when weighted)
        and the effective sample sizes ``neff_base, neff_cur``.
    nesting : dict
        Dimensions found nested in another in the data (e.g. every ``site``
        belongs to one ``vendor``): ``{child: (parent, {segment: parent
        segment})}``; used by :func:`adtributor`.
    crossed : pandas.DataFrame or None
        Sums per pair of dimensions and pair of segments (``_d0, _s0, _d1,
        _s1`` and ``n, k, sw, sw2, swy`` per period, suffixed ``_0``/``_1``),
        which :func:`adtributor` uses to tell which of two overlapping
        explanations accounts for the other; ``None`` when not computed.
    where : dict or None
        The segment decomposed within (``{dimension: (values, ...)}``), or None.
    """

    metric: str
    market: str | None
    baseline: m.Period
    current: m.Period
    rate_base: float
    rate_cur: float
    n_base: int
    n_cur: int
    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    weighted: bool
    mix: str
    qa_source: str | None
    dimensions: tuple[str, ...]
    neff_base: float
    neff_cur: float
    segments: pd.DataFrame = field(repr=False, compare=False)
    totals: pd.DataFrame = field(repr=False, compare=False)
    sums: pd.DataFrame = field(repr=False, compare=False)
    nesting: dict[str, tuple[str, dict[str, str]]] = field(repr=False, compare=False)
    crossed: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    where: dict[str, tuple[str, ...]] | None = None

    @property
    def change(self) -> float:
        """The change of the overall rate (same as `estimate`)."""
        return self.estimate

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Newcombe interval for the change, at the effective sample sizes."""
        cl = _check_unit_interval(confidence_level, "confidence_level")
        return proportion_difference_ci(
            self.rate_cur * self.neff_cur,
            self.neff_cur,
            self.rate_base * self.neff_base,
            self.neff_base,
            confidence_level=cl,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row: ``metric, market, baseline/current bounds, rate_base,
        rate_cur, n_base, n_cur, estimate, ci_low, ci_high, statistic, pvalue,
        method, alternative, confidence_level, weighted``."""
        lo, hi = self.confidence_interval(self.confidence_level)
        row = {
            "metric": self.metric,
            "market": self.market,
            "baseline_start": self.baseline.start,
            "baseline_end": self.baseline.end,
            "current_start": self.current.start,
            "current_end": self.current.end,
            "rate_base": self.rate_base,
            "rate_cur": self.rate_cur,
            "n_base": self.n_base,
            "n_cur": self.n_cur,
            "estimate": self.estimate,
            "ci_low": lo,
            "ci_high": hi,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "method": self.method,
            "alternative": self.alternative,
            "confidence_level": self.confidence_level,
            "weighted": self.weighted,
        }
        return pd.DataFrame([row])


def _decompose_wide(wide: pd.DataFrame, weighted: bool, group: list[str], mix: str) -> pd.DataFrame:
    """Shift-share of every group (dimension or pair) of a wide frame."""
    w0, y0, ne0, n0 = _sums(wide, 0, weighted)
    w1, y1, ne1, n1 = _sums(wide, 1, weighted)
    parts = []
    for _, idx in wide.groupby(group, sort=False).indices.items():
        ss = _shift_share_arrays(w0[idx], y0[idx], w1[idx], y1[idx], mix)
        ss.index = wide.index[idx]
        parts.append(ss)
    out = pd.concat([wide, pd.concat(parts).sort_index()], axis=1)
    out["n_base"] = n0.astype("int64")
    out["n_cur"] = n1.astype("int64")
    out["neff_base"] = ne0
    out["neff_cur"] = ne1
    out["_num_base"], out["_num_cur"] = y0, y1
    out["_den_base"], out["_den_cur"] = w0, w1
    _, out["p_value"] = _pooled_z(out["rate_base"], ne0, out["rate_cur"], ne1)
    return out


def decompose(
    ds: Dataset,
    metric: str,
    market: str | None,
    current: tuple[date | str, date | str] | m.Period,
    baseline: tuple[date | str, date | str] | m.Period,
    *,
    dimensions: Sequence[str] | None = None,
    where: Mapping[str, str | Sequence[str]] | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    mix: str = "centered",
    confidence_level: float | None = None,
    cross: bool = True,
) -> DecompositionResult:
    """Split the change of a rate between two periods into mix and rate effects.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
        Market whose calendar defines the dates; ``None`` pools all markets
        (then ``"market"`` is a useful dimension).
    current, baseline : (start, end) or Period
        Market-local, inclusive, disjoint date ranges (dates of the decisions).
    dimensions : sequence of str, optional
        Decision columns to split by (``market, vendor, site, queue, language,
        policy, routing, ai_model, moderator_id``) and, for QA and AI metrics,
        ``auditor_id, qa_policy, qa_source``; ``market, vendor, queue`` for
        ``escalation_rate``; ``market, language, policy, attack, ai_model``
        for ``red_team_recall``. Null values form the segment :data:`MISSING`.
        By default :data:`DEFAULT_DIMENSIONS`, or the metric's entry in
        :data:`METRIC_DIMENSIONS`, less the dimensions `where` fixes.
    where : mapping, optional
        Decompose within a segment only, e.g. ``{"vendor": "VendorC"}``
        (values may be lists): the change of the segment's rate, split by the
        other dimensions.
    qa_source : {"internal", "vendor", None}, default "internal"
        Whose audits are the truth for QA and AI metrics (``qa_alignment``
        always compares the two).
    weighted : bool, optional
        Use design weights ``w`` (``sample_weight``) for shares and rates; by
        default whenever any weight in the two periods differs from 1.
    mix : {"centered", "kitagawa"}, default "centered"
        Per-segment split of the mix effect (:func:`shift_share`); totals per
        dimension and rate effects do not depend on it.
    confidence_level : float, optional
        Defaults to the market's parameter.
    cross : bool, default True
        Also sum every pair of dimensions (one more engine query), so that
        :func:`adtributor` can check overlapping explanations against each
        other.

    Returns
    -------
    DecompositionResult
        Overall rates, the change with its test and interval, ``segments``
        (:data:`DECOMPOSITION_COLUMNS`) and ``totals`` per dimension.

    Notes
    -----
    Shares and rates are :math:`s_i = \\sum_i w / \\sum w` and
    :math:`r_i = \\sum_i w y / \\sum_i w` (Hajek), so
    :math:`R = \\sum_i s_i r_i` is the overall weighted rate and the
    symmetric decomposition of :func:`shift_share` is exact for every
    dimension. The engine runs one ``GROUP BY dimension, period`` per
    dimension, unioned into one query; only the sums leave it.

    ``sla_compliance`` is the share of items answered within their queue's
    SLA among items whose outcome is known at the end of their period
    (answered, or pending and already older than the SLA); unlike
    :func:`qualitylab.metrics.operational_metrics` it does not use the
    Kaplan–Meier estimator, so it can differ slightly when many items are
    still pending at a period's end.
    """
    spec = _check_metric(metric)
    dims = _check_dimensions(
        _default_dimensions(spec, where) if dimensions is None else dimensions, spec
    )
    base, cur = _check_periods(baseline, current)
    qa_source = _check_qa_source(qa_source)
    mix = _check_mix(mix)
    cl = _confidence(ds, market, confidence_level)
    t = _metric_table(ds, spec, market, (base, cur), qa_source)
    fixed = None
    if where is not None:
        t = t.filter(_filter_expr(t, where, spec, "where"))
        fixed = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in where.items()}
    agg = _aggregate(t, [(d,) for d in dims])
    _check_nonempty(agg, spec, market, base, cur, fixed)
    use_w = _use_weights(agg, weighted)
    wide = _wide(agg, ["_d0", "_s0"])
    out = _decompose_wide(wide, use_w, ["_d0"], mix)
    out = out.rename(columns={"_d0": "dimension", "_s0": "segment"})

    first = out[out["dimension"] == dims[0]]
    tot = {
        c: float(first[c].sum())
        for c in ("_num_base", "_num_cur", "_den_base", "_den_cur", "n_base", "n_cur")
    }
    sw2 = {p: float(wide.loc[wide["_d0"] == dims[0], f"sw2_{p}"].sum()) for p in (0, 1)}
    r0 = tot["_num_base"] / tot["_den_base"]
    r1 = tot["_num_cur"] / tot["_den_cur"]
    ne0 = tot["_den_base"] ** 2 / sw2[0] if use_w else tot["n_base"]
    ne1 = tot["_den_cur"] ** 2 / sw2[1] if use_w else tot["n_cur"]
    z, p = _pooled_z(np.array([r0]), np.array([ne0]), np.array([r1]), np.array([ne1]))

    order = {d: i for i, d in enumerate(dims)}
    out["_order"] = out["dimension"].map(order)
    out["_abs"] = -out["contribution"].abs()
    out = out.sort_values(["_order", "_abs", "segment"], kind="stable").reset_index(drop=True)
    totals = (
        out.groupby("dimension", sort=False)
        .agg(
            n_segments=("segment", "size"),
            mix_effect=("mix_effect", "sum"),
            rate_effect=("rate_effect", "sum"),
            change=("contribution", "sum"),
        )
        .reset_index()[TOTALS_COLUMNS]
    )
    sums = out[["_num_base", "_num_cur", "_den_base", "_den_cur", "neff_base", "neff_cur"]]
    sums = sums.rename(columns=lambda c: c.lstrip("_"))
    return DecompositionResult(
        metric=spec.name,
        market=market,
        baseline=base,
        current=cur,
        rate_base=r0,
        rate_cur=r1,
        n_base=int(tot["n_base"]),
        n_cur=int(tot["n_cur"]),
        statistic=float(z[0]),
        pvalue=float(p[0]),
        method="z",
        alternative="two-sided",
        estimate=r1 - r0,
        confidence_level=cl,
        weighted=use_w,
        mix=mix,
        qa_source=qa_source,
        dimensions=tuple(dims),
        neff_base=float(ne0),
        neff_cur=float(ne1),
        segments=out[DECOMPOSITION_COLUMNS].copy(),
        totals=totals,
        sums=sums.reset_index(drop=True),
        nesting=_nesting(t, dims),
        crossed=_wide(_aggregate(t, list(itertools.combinations(dims, 2))), _PAIR_KEYS)
        if cross and len(dims) > 1
        else None,
        where=fixed,
    )


#: Known hierarchies of the data contract, (child, parent); each is checked
#: against the data before it is used.
_HIERARCHY = (("site", "vendor"), ("moderator_id", "site"), ("moderator_id", "vendor"))


def _nesting(t: ir.Table, dims: Sequence[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Which of the known hierarchies hold in the data (one distinct query)."""
    pairs = [(c, p) for c, p in _HIERARCHY if c in dims and p in dims]
    if not pairs:
        return {}
    cols = sorted({x for pair in pairs for x in pair})
    df = (
        t.select(*[t[c].cast("string").fill_null(MISSING).name(c) for c in cols])
        .distinct()
        .to_pandas()
    )
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for child, parent in pairs:
        # Null ids (e.g. no moderator for ai_auto items) are not a real segment.
        links = df.loc[(df[child] != MISSING) & (df[parent] != MISSING), [child, parent]]
        links = links.drop_duplicates()
        if child not in out and len(links) and links[child].is_unique:
            out[child] = (parent, dict(zip(links[child], links[parent], strict=True)))
    return out


def _check_nonempty(
    agg: pd.DataFrame,
    spec: _RateMetric,
    market: str | None,
    base: m.Period,
    cur: m.Period,
    where: Mapping[str, Sequence[str]] | None = None,
) -> None:
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if not (agg.loc[agg["_period"] == p, "n"] > 0).any():
            raise QualityLabError(
                MSG_EMPTY_PERIOD.format(
                    what=spec.items,
                    metric=spec.name,
                    market=market,
                    which=which,
                    period=_fmt_period(period),
                )
                + _where_text(where, prefix=" for ")
            )


def _where_text(where: Mapping[str, Sequence[str]] | None, *, prefix: str = "") -> str:
    """``"vendor VendorC"`` (or ``"vendor VendorA or VendorB"``) for a segment filter."""
    if not where:
        return ""
    parts = [f"{k} {' or '.join(str(x) for x in v)}" for k, v in where.items()]
    return prefix + ", ".join(parts)


# --------------------------------------------------------------------------- #
# Adtributor
# --------------------------------------------------------------------------- #
def _js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-element Jensen–Shannon terms (base 2) of two distributions."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    mid = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, p * np.log2(p / mid), 0.0)
        tq = np.where(q > 0, q * np.log2(q / mid), 0.0)
    return 0.5 * (tp + tq)


def _normalise(x: npt.ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if np.any(~(a >= 0)) or np.any(~np.isfinite(a)):
        raise ParameterError(
            f"{name} must be finite and non-negative; got {a.tolist()!r}", key=name
        )
    s = a.sum()
    return a / s if s > 0 else a


def jensen_shannon(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen–Shannon divergence (base 2) between two distributions.

    Parameters
    ----------
    p, q : array_like
        Non-negative weights over the same segments; each is normalised to sum
        to one (an all-zero vector is left as zeros).

    Returns
    -------
    float
        :math:`\\tfrac12 KL(p\\|m) + \\tfrac12 KL(q\\|m)` with
        :math:`m = (p+q)/2`, in [0, 1]; 0 exactly when ``p == q``, symmetric.

    Notes
    -----
    The square of :func:`scipy.spatial.distance.jensenshannon` with ``base=2``
    (tested against it). Adtributor (Bhagwan et al. 2014) uses the
    per-segment terms as the *surprise* of a segment.

    Examples
    --------
    >>> jensen_shannon([1, 0], [0, 1])
    1.0
    >>> jensen_shannon([3, 1], [6, 2])
    0.0
    """
    pn, qn = _normalise(p, "p"), _normalise(q, "q")
    if pn.size != qn.size:
        raise ParameterError(
            f"Found input variables with inconsistent numbers of segments: [{pn.size}, {qn.size}]"
        )
    return float(max(_js_terms(pn, qn).sum(), 0.0))


def _surprise_inputs(
    df: pd.DataFrame, spec: _RateMetric, num_cols: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    num0, num1, den0, den1 = num_cols
    if spec.higher_is_better:  # surprise in the failures (errors, SLA breaches)
        num0, num1 = den0 - num0, den1 - num1
    return np.maximum(num0, 0.0), np.maximum(num1, 0.0), den0, den1


def _ep_and_surprise(
    df: pd.DataFrame,
    sums: np.ndarray,
    spec: _RateMetric,
    change: float,
    group: list[str],
) -> pd.DataFrame:
    """Explanatory power and surprise of every segment within its group."""
    num0, num1, den0, den1 = _surprise_inputs(df, spec, tuple(sums.T))
    out = df.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["explanatory_power"] = (
            out["contribution"] / change if change != 0 else np.full(len(out), np.nan)
        )
    surprise = np.zeros(len(out))
    for _, idx in out.groupby(group, sort=False).indices.items():
        s = np.zeros(len(idx))
        for a, b in ((num0, num1), (den0, den1)):
            s += _js_terms(_normalise(a[idx], "baseline"), _normalise(b[idx], "current"))
        surprise[idx] = s
    out["surprise"] = surprise
    return out


def _select(out: pd.DataFrame, group: list[str], threshold: float, min_ep: float) -> pd.DataFrame:
    """Greedy minimal set per group: largest EP first until the threshold."""
    out = out.copy()
    out["_neg_ep"] = -out["explanatory_power"].fillna(-np.inf)
    out = out.sort_values([*group, "_neg_ep"], kind="stable")
    out["cumulative_ep"] = np.nan
    out["selected"] = False
    for _, idx in out.groupby(group, sort=False).indices.items():
        ep = out["explanatory_power"].to_numpy(float)[idx]
        cum = 0.0
        chosen: list[int] = []
        for j, e in zip(idx, ep, strict=True):
            if not (e > min_ep):
                break
            cum += e
            chosen.append(j)
            if cum >= threshold:
                break
        if chosen and cum >= threshold:
            out.iloc[chosen, out.columns.get_loc("selected")] = True
        out.iloc[idx, out.columns.get_loc("cumulative_ep")] = np.cumsum(np.nan_to_num(ep))
    return out.drop(columns="_neg_ep")


@dataclass(frozen=True)
class AdtributorResult:
    """Result of :func:`adtributor`.

    Attributes
    ----------
    dimensions : pandas.DataFrame
        :data:`ADTRIBUTOR_DIMENSION_COLUMNS`, best first. ``explained`` says
        whether a set of at most a few segments reaches the EP threshold;
        ``explanatory_power`` and ``surprise`` are those of the selected set;
        ``jsd`` is the whole dimension's surprise (numerator plus denominator
        divergence); ``mix_effect``/``rate_effect`` sum over the selected set.
    segments : pandas.DataFrame
        :data:`ADTRIBUTOR_SEGMENT_COLUMNS`, ordered as ``dimensions`` and by
        explanatory power within a dimension; ``selected`` marks the set.
    ep_threshold, min_segment_ep : float
    """

    dimensions: pd.DataFrame
    segments: pd.DataFrame
    ep_threshold: float
    min_segment_ep: float

    @property
    def top_dimension(self) -> str | None:
        """The best-ranked dimension whose set explains the change, if any."""
        ok = self.dimensions[self.dimensions["explained"]]
        return None if ok.empty else str(ok.iloc[0]["dimension"])

    @property
    def top_segment(self) -> str | None:
        """Largest-EP segment of :attr:`top_dimension`."""
        ok = self.dimensions[self.dimensions["explained"]]
        return None if ok.empty else str(ok.iloc[0]["top_segment"])


def adtributor(
    result: DecompositionResult,
    *,
    ep_threshold: float = 0.67,
    min_segment_ep: float = 0.1,
    rank_by: str = "surprise_per_segment",
    alpha: float = 0.05,
) -> AdtributorResult:
    """Rank dimensions by how succinctly and surprisingly they explain a change.

    Parameters
    ----------
    result : DecompositionResult
        From :func:`decompose`.
    ep_threshold : float, default 0.67
        Explanatory power a dimension's selected segments must reach together
        (Bhagwan et al.'s :math:`T_{EP}`).
    min_segment_ep : float, default 0.1
        Minimum explanatory power of a segment to enter a set
        (:math:`T_{EEP}`).
    rank_by : {"surprise_per_segment", "surprise"}, default "surprise_per_segment"
        Order of the dimensions whose set reaches the threshold: by the
        surprise of the set divided by its size, or by its total surprise
        (Bhagwan et al.).
    alpha : float, default 0.05
        Level of the heterogeneity test that decides between nested
        dimensions (see Notes).

    Returns
    -------
    AdtributorResult

    Notes
    -----
    Explanatory power of a segment is its share of the total change,
    :math:`EP_i = c_i / \\Delta R` with :math:`c_i` its shift-share
    contribution, so the EPs of a dimension add up to 1 (a segment can exceed
    1 when others offset it). Surprise is the segment's Jensen–Shannon term
    between the baseline and current distributions, summed over the numerator
    and the denominator of the rate — for metrics where higher is better the
    numerator is the failures (errors, SLA breaches), the rarer outcome whose
    distribution actually moves. Per dimension, segments with
    :math:`EP > T_{EEP}` are added by decreasing EP (this gives the smallest
    set) until their EP reaches :math:`T_{EP}`; dimensions whose set reaches
    it rank first, by decreasing surprise per segment of the set, then by
    fewer segments. Bhagwan et al. rank by the set's total surprise, which
    grows with the number of segments: a four-segment set of an endogenous
    dimension (e.g. the policy a wrong decision cited) can then outrank the
    single vendor that caused the errors; dividing by the set's size keeps the
    explanation succinct while a trivial set (one segment holding nearly all
    the volume) still has almost no surprise. Bhagwan et al. also order
    candidates by surprise and use a forecast as the baseline; here the
    baseline period plays the forecast.

    Nested dimensions (every ``site`` of one ``vendor``, every moderator of one
    site, as found in the data) explain the same change twice. When the
    child's selected segments lie inside the parent's selected segments, the
    child is only preferred if its segments changed differently within their
    parent: Cochran's :math:`Q = \\sum_j w_j(\\Delta_j - \\bar\\Delta)^2`
    over the children of each selected parent (:math:`\\Delta_j` the rate
    change, :math:`w_j` its inverse variance, :math:`\\chi^2` with
    :math:`\\sum(k-1)` df) must be significant at `alpha`; otherwise the
    coarser parent is ranked ahead of it. The one not preferred moves to just
    behind the other, which keeps its own place. ``nested_in`` and
    ``heterogeneity_p`` report the test.

    Crossed dimensions can also explain the same change, when the cause sits
    mostly inside one segment of another dimension. Between the leading
    explained dimension and each later one, a test on their
    cross-tabulation decides which accounts for the other (``explains_away``
    names the dimension a promoted one was moved ahead of, ``outside_p`` the
    p-value of its change outside that dimension's segments; see
    :func:`decompose`'s ``cross``).
    """
    ep_threshold = _check_unit_interval(ep_threshold, "ep_threshold", closed=True)
    min_segment_ep = _check_unit_interval(min_segment_ep, "min_segment_ep", closed=True)
    if rank_by not in ("surprise_per_segment", "surprise"):
        raise ParameterError(
            f"rank_by must be 'surprise_per_segment' or 'surprise'; got {rank_by!r}",
            key="rank_by",
        )
    spec = _METRICS[result.metric]
    seg = result.segments
    change = result.estimate
    if change == 0 or not np.isfinite(change):
        warnings.warn(MSG_ZERO_CHANGE.format(metric=result.metric), stacklevel=2)
    sums = result.sums[["num_base", "num_cur", "den_base", "den_cur"]].to_numpy(float)
    out = _ep_and_surprise(seg, sums, spec, change, ["dimension"])
    out["_neff_base"] = result.sums["neff_base"].to_numpy(float)
    out["_neff_cur"] = result.sums["neff_cur"].to_numpy(float)
    out = _select(out, ["dimension"], ep_threshold, min_segment_ep)
    rows = []
    for dim in result.dimensions:
        g = out[out["dimension"] == dim]
        sel = g[g["selected"]]
        rows.append(
            {
                "dimension": dim,
                "explained": not sel.empty,
                "n_selected": len(sel),
                "top_segment": g.iloc[0]["segment"] if len(g) else None,
                "explanatory_power": float(sel["explanatory_power"].sum()),
                "surprise": float(sel["surprise"].sum()),
                "jsd": float(g["surprise"].sum()),
                "mix_effect": float(sel["mix_effect"].sum()),
                "rate_effect": float(sel["rate_effect"].sum()),
                "_n_segments": len(g),
            }
        )
    dims = pd.DataFrame(rows)
    dims["surprise_per_segment"] = dims["surprise"] / dims["n_selected"].clip(lower=1)
    dims["_key"] = -dims[rank_by].round(12)
    dims["_ex"] = ~dims["explained"]
    dims["_jsd"] = -dims["jsd"].round(12)
    dims = dims.sort_values(["_ex", "_key", "n_selected", "_jsd", "_n_segments"], kind="stable")
    dims["nested_in"] = None
    dims["heterogeneity_p"] = np.nan
    dims = _prefer_coarse(dims.reset_index(drop=True), out, result.nesting, alpha)
    dims = _explain_away(dims, out, result, alpha)
    dims["rank"] = np.arange(1, len(dims) + 1)
    dims = dims[ADTRIBUTOR_DIMENSION_COLUMNS].reset_index(drop=True)
    order = {d: i for i, d in enumerate(dims["dimension"])}
    out["_order"] = out["dimension"].map(order)
    out = out.sort_values(["_order", "explanatory_power"], ascending=[True, False], kind="stable")
    return AdtributorResult(
        dimensions=dims,
        segments=out[ADTRIBUTOR_SEGMENT_COLUMNS].reset_index(drop=True),
        ep_threshold=ep_threshold,
        min_segment_ep=min_segment_ep,
    )


def _change_var(
    r0: npt.ArrayLike, ne0: npt.ArrayLike, r1: npt.ArrayLike, ne1: npt.ArrayLike
) -> np.ndarray:
    """Variance of a rate change between two independent samples (effective sizes).

    A 0% or 100% rate has no sampling variance; it is floored at one event's worth.
    """
    r0, ne0, r1, ne1 = (np.asarray(v, dtype=float) for v in (r0, ne0, r1, ne1))
    var = r0 * (1 - r0) / ne0 + r1 * (1 - r1) / ne1
    return np.maximum(var, (1.0 / np.maximum(np.minimum(ne0, ne1), 1)) ** 2)


def _heterogeneity_p(child: pd.DataFrame, links: dict[str, str], parents: Sequence[str]) -> float:
    """Cochran's Q test that the children of each parent changed alike."""
    q_total, df_total = 0.0, 0
    for parent in parents:
        kids = child[child["segment"].map(links) == parent]
        kids = kids[(kids["_neff_base"] > 0) & (kids["_neff_cur"] > 0)]
        if len(kids) < 2:
            continue
        r0 = kids["rate_base"].to_numpy(float)
        r1 = kids["rate_cur"].to_numpy(float)
        var = _change_var(
            r0, kids["_neff_base"].to_numpy(float), r1, kids["_neff_cur"].to_numpy(float)
        )
        w = 1.0 / var
        d = r1 - r0
        dbar = float(np.sum(w * d) / np.sum(w))
        q_total += float(np.sum(w * (d - dbar) ** 2))
        df_total += len(kids) - 1
    return float(sps.chi2.sf(q_total, df_total)) if df_total > 0 else float("nan")


def _prefer_coarse(
    dims: pd.DataFrame,
    segs: pd.DataFrame,
    nesting: Mapping[str, tuple[str, dict[str, str]]],
    alpha: float,
) -> pd.DataFrame:
    """Reorder nested dimensions: the parent first unless the child is sharper.

    The one not preferred moves to just behind the preferred one.
    """
    order = dims["dimension"].tolist()
    for child, (parent, links) in nesting.items():
        if child not in order or parent not in order:
            continue
        c_row = dims.loc[dims["dimension"] == child].iloc[0]
        p_row = dims.loc[dims["dimension"] == parent].iloc[0]
        if not (c_row["explained"] and p_row["explained"]):
            continue
        c_sel = segs[(segs["dimension"] == child) & segs["selected"]]["segment"]
        p_sel = segs[(segs["dimension"] == parent) & segs["selected"]]["segment"].tolist()
        if not set(c_sel.map(links)) <= set(p_sel):
            continue  # the two explanations differ; leave them to surprise
        p_het = _heterogeneity_p(segs[segs["dimension"] == child], links, p_sel)
        idx = dims.index[dims["dimension"] == child][0]
        dims.loc[idx, "nested_in"] = parent
        dims.loc[idx, "heterogeneity_p"] = p_het
        first, second = (child, parent) if p_het < alpha else (parent, child)
        if order.index(first) > order.index(second):
            # The redundant view goes just behind the preferred one, which keeps
            # its own place: a child's surprise, inflated by its finer (smaller,
            # noisier) segments, does not lift the parent past other dimensions.
            order.remove(second)
            order.insert(order.index(first) + 1, second)
    return dims.set_index("dimension").loc[order].reset_index()


def _change_within(
    crossed: pd.DataFrame,
    weighted: bool,
    inner: tuple[str, Sequence[str]],
    outer: tuple[str, Sequence[str]],
    inside: bool,
) -> tuple[float, float]:
    """Rate change and its variance of ``inner``'s segments inside (or outside) ``outer``'s.

    ``inner`` and ``outer`` are (dimension, selected segments); the rate of
    the decisions in the inner set and in (or not in) the outer set is
    pooled per period. NaNs when either period has none.
    """
    (da, sa), (db, sb) = inner, outer
    pair = _pairs_from(crossed, [(da, db)])
    if pair is None:
        return float("nan"), float("nan")
    cells = pair[pair["_s0"].isin(list(sa)) & (pair["_s1"].isin(list(sb)) == inside)]
    rate, neff = [], []
    for p in (0, 1):
        den = float(cells[f"sw_{p}" if weighted else f"n_{p}"].sum())
        num = float(cells[f"swy_{p}" if weighted else f"k_{p}"].sum())
        ne = den * den / float(cells[f"sw2_{p}"].sum()) if weighted and den > 0 else den
        if not (den > 0 and ne > 0):
            return float("nan"), float("nan")
        rate.append(num / den)
        neff.append(ne)
    return rate[1] - rate[0], float(_change_var(rate[0], neff[0], rate[1], neff[1]))


def _explain_away(
    dims: pd.DataFrame,
    segs: pd.DataFrame,
    result: DecompositionResult,
    alpha: float,
) -> pd.DataFrame:
    """Promote a dimension whose explanation accounts for the leading one's.

    Two crossed dimensions can explain the same change when the cause is
    concentrated: scam decisions sit mostly in one queue, so a drop on scam
    also shows as a drop in that queue. The cause still moves outside the
    other explanation (scam in the other queues), the bystander does not
    (the queue's other policies). For the leading explained dimension A and
    each later explained dimension B (not nested in each other), with the
    selected segments of each, B moves ahead of A when

    * B's rate changes outside A (one-sided z in the direction of the
      change, significant at `alpha`),
    * A's rate outside B is measured in both periods and does not change
      significantly, and
    * B changed alike inside and outside A (two-sided z of the difference
      not significant): a cause acts wherever it is, while a set that merely
      holds the rest of the market (a model that scores everything) changes
      much more where A is.
    """
    crossed = result.crossed
    dims = dims.copy()
    dims["explains_away"] = None
    dims["outside_p"] = np.nan
    if crossed is None or crossed.empty or not np.isfinite(result.estimate):
        return dims
    sign = float(np.sign(result.estimate)) or 1.0
    nested = {(c, p) for c, (p, _) in result.nesting.items()}
    chosen = {
        d: g.loc[g["selected"], "segment"].tolist()
        for d, g in segs.groupby("dimension", sort=False)
    }
    w = result.weighted

    def one_sided(d: float, v: float) -> float:
        return float(sps.norm.sf(sign * d / math.sqrt(v))) if np.isfinite(d) else float("nan")

    def promotes(top: str, other: str) -> float | None:
        a, b = (top, chosen[top]), (other, chosen[other])
        d_b_out, v_b_out = _change_within(crossed, w, b, a, inside=False)
        d_a_out, v_a_out = _change_within(crossed, w, a, b, inside=False)
        d_b_in, v_b_in = _change_within(crossed, w, b, a, inside=True)
        p_b, p_a = one_sided(d_b_out, v_b_out), one_sided(d_a_out, v_a_out)
        if not (p_b < alpha and p_a >= alpha) or not np.isfinite(d_b_in):
            return None
        z_het = (d_b_in - d_b_out) / math.sqrt(v_b_in + v_b_out)
        return p_b if 2 * sps.norm.sf(abs(z_het)) >= alpha else None

    order = dims["dimension"].tolist()
    explained = set(dims.loc[dims["explained"], "dimension"])
    promoted: dict[str, tuple[str, float]] = {}
    compared: set[frozenset[str]] = set()
    while True:
        cands = [d for d in order if d in explained]
        swap = None
        for other in cands[1:]:
            pair = frozenset((cands[0], other))
            if pair in compared or (cands[0], other) in nested or (other, cands[0]) in nested:
                continue
            compared.add(pair)
            p = promotes(cands[0], other)
            if p is not None:
                swap = (other, p)
                break
        if swap is None:
            break
        other, p = swap
        promoted[other] = (cands[0], p)
        order.remove(other)
        order.insert(order.index(cands[0]), other)
    dims = dims.set_index("dimension").loc[order].reset_index()
    for d, (over, p) in promoted.items():
        dims.loc[dims["dimension"] == d, ["explains_away", "outside_p"]] = [over, p]
    return dims


def _pairs_from(
    crossed: pd.DataFrame | None, pairs: Sequence[tuple[str, ...]]
) -> pd.DataFrame | None:
    """The sums of `pairs` (in their order) from :attr:`DecompositionResult.crossed`, if all there."""
    if crossed is None:
        return None
    have = set(zip(crossed["_d0"], crossed["_d1"], strict=True))
    parts = []
    for a, b in pairs:
        if (a, b) in have:
            parts.append(crossed[(crossed["_d0"] == a) & (crossed["_d1"] == b)])
        elif (b, a) in have:
            flip = crossed[(crossed["_d0"] == b) & (crossed["_d1"] == a)]
            parts.append(
                flip.rename(columns={"_d0": "_d1", "_s0": "_s1", "_d1": "_d0", "_s1": "_s0"})
            )
        else:
            return None
    return pd.concat(parts, ignore_index=True)[crossed.columns]


def drill_down(
    ds: Dataset,
    result: DecompositionResult,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    ranking: AdtributorResult | None = None,
    top_dimensions: int = 3,
    ep_threshold: float = 0.8,
) -> pd.DataFrame:
    """The smallest sets of segment pairs that explain a change.

    Parameters
    ----------
    ds : Dataset
        The dataset `result` was computed on.
    result : DecompositionResult
    pairs : sequence of (str, str), optional
        Pairs of dimensions to cross; by default every pair among the
        `top_dimensions` best dimensions of `ranking`, leaving out pairs where
        one dimension is nested in the other (site × vendor adds nothing).
    ranking : AdtributorResult, optional
        Defaults to ``adtributor(result)``.
    top_dimensions : int, default 3
    ep_threshold : float, default 0.8
        Explanatory power the selected pairs must reach together.

    Returns
    -------
    pandas.DataFrame
        :data:`DRILL_DOWN_COLUMNS`, one row per pair of dimensions × pair of
        segments. Pairs of dimensions are ranked (``pair_rank``) by the number
        of segment pairs needed (``n_selected``; 0 when the threshold cannot
        be reached, ranked last), then by the surprise of the selected set;
        within a pair, rows go by decreasing explanatory power and
        ``selected`` marks the set.

    Notes
    -----
    The sums per pair of segments come from ``result.crossed`` when
    :func:`decompose` computed them (the default), else from one engine query
    grouping by each pair of dimensions and period; the shift-share,
    explanatory power and surprise are those of
    :func:`decompose` and :func:`adtributor` on the cross-classification, so
    the contributions of each pair of dimensions add up exactly to the change.
    """
    ep_threshold = _check_unit_interval(ep_threshold, "ep_threshold", closed=True)
    spec = _METRICS[result.metric]
    chosen = pairs is None
    if pairs is None:
        if not isinstance(top_dimensions, int) or top_dimensions < 2:
            raise ParameterError(
                f"top_dimensions must be an integer >= 2; got {top_dimensions!r}",
                key="top_dimensions",
            )
        ranking = ranking or adtributor(result)
        top = ranking.dimensions["dimension"].tolist()[:top_dimensions]
        nested = {(c, p) for c, (p, _) in result.nesting.items()}
        pairs = [
            (a, b)
            for a, b in itertools.combinations(top, 2)
            if (a, b) not in nested and (b, a) not in nested
        ]
    pairs = [tuple(p) for p in pairs]
    for p in pairs:
        if len(p) != 2 or p[0] == p[1]:
            raise ParameterError(f"each pair must name two different dimensions; got {p!r}")
        _check_dimensions(list(p), spec)
    if not pairs and chosen:
        raise QualityLabError(
            f"no pair of dimensions to cross among {', '.join(result.dimensions)} "
            "(a pair nested in each other adds nothing)"
        )
    if not pairs:
        raise ParameterError(
            "no pair of dimensions to cross; give pairs= or a larger top_dimensions",
            key="pairs",
        )
    wide = _pairs_from(result.crossed, pairs)
    if wide is None:
        t = _metric_table(
            ds, spec, result.market, (result.baseline, result.current), result.qa_source
        )
        if result.where:
            t = t.filter(_filter_expr(t, result.where, spec, "where"))
        wide = _wide(_aggregate(t, pairs), _PAIR_KEYS)
    out = _decompose_wide(wide, result.weighted, ["_d0", "_d1"], result.mix)
    sums = out[["_num_base", "_num_cur", "_den_base", "_den_cur"]].to_numpy(float)
    out = _ep_and_surprise(out, sums, spec, result.estimate, ["_d0", "_d1"])
    out = _select(out, ["_d0", "_d1"], ep_threshold, 0.0)
    out = out.rename(
        columns={"_d0": "dimension_a", "_s0": "segment_a", "_d1": "dimension_b", "_s1": "segment_b"}
    )
    grp = out.groupby(["dimension_a", "dimension_b"], sort=False)
    n_sel = grp["selected"].transform("sum").astype("int64")
    sel_surprise = out["surprise"].where(out["selected"], 0.0)
    out["n_selected"] = n_sel
    out["_s"] = sel_surprise.groupby([out["dimension_a"], out["dimension_b"]]).transform("sum")
    summary = (
        out.groupby(["dimension_a", "dimension_b"], sort=False)
        .agg(n_selected=("n_selected", "first"), s=("_s", "first"))
        .reset_index()
    )
    summary["_none"] = summary["n_selected"] == 0
    summary["_neg_s"] = -summary["s"].round(12)
    summary = summary.sort_values(["_none", "n_selected", "_neg_s"], kind="stable")
    summary["pair_rank"] = np.arange(1, len(summary) + 1)
    out = out.merge(summary[["dimension_a", "dimension_b", "pair_rank"]], how="left")
    out = out.sort_values(
        ["pair_rank", "explanatory_power"], ascending=[True, False], kind="stable"
    )
    return out[DRILL_DOWN_COLUMNS].reset_index(drop=True)


# --------------------------------------------------------------------------- #
# funnel plots
# --------------------------------------------------------------------------- #
def funnel_limits(
    population_rate: float,
    n: npt.ArrayLike,
    *,
    method: str = "exact",
    phi: float = 1.0,
) -> pd.DataFrame:
    """Funnel-plot control limits around a population rate at sample sizes `n`.

    Parameters
    ----------
    population_rate : float
        The target or pooled rate :math:`\\theta` in [0, 1].
    n : array_like
        Sample sizes (positive).
    method : {"exact", "normal"}, default "exact"
        Exact binomial limits with Spiegelhalter's interpolation, or the
        normal approximation.
    phi : float, default 1.0
        Overdispersion factor (>= 1); when above 1 the limits are the normal
        ones widened by :math:`\\sqrt\\phi` whatever `method`.

    Returns
    -------
    pandas.DataFrame
        ``n, lower_95, upper_95, lower_998, upper_998`` (two-sided 95% and
        99.8% limits, clipped to [0, 1]).

    Notes
    -----
    Spiegelhalter (2005), *Funnel plots for comparing institutional
    performance*, Stat Med 24:1185, appendix A.1.1: with :math:`r_p` the
    :math:`p`-quantile of :math:`Bin(n, \\theta)` and :math:`F` its CDF,
    :math:`\\alpha = (F(r_p) - p)/(F(r_p) - F(r_p - 1))` and the limit is
    :math:`(r_p - \\alpha)/n`. Normal: :math:`\\theta \\pm z_p
    \\sqrt{\\phi\\theta(1-\\theta)/n}`.

    Examples
    --------
    >>> funnel_limits(0.1, [100], method="normal").round(4)
         n  lower_95  upper_95  lower_998  upper_998
    0  100    0.0412    0.1588        0.0     0.1927
    """
    theta = _check_unit_interval(population_rate, "population_rate", closed=True)
    method = _funnel_method(method)
    phi = float(phi)
    if not phi >= 1.0:
        raise ParameterError(f"phi must be >= 1; got {phi!r}", key="phi")
    nn = np.asarray(n, dtype=float).ravel()
    if np.any(~(nn > 0)):
        raise ParameterError(f"n must be positive; got {nn[~(nn > 0)][0]!r}", key="n")
    cols: dict[str, np.ndarray] = {
        "n": np.round(nn).astype("int64") if np.allclose(nn, np.round(nn)) else nn
    }
    for tag, level in _FUNNEL_LEVELS.items():
        cols[f"lower_{tag}"], cols[f"upper_{tag}"] = _limits(theta, nn, level, method, phi)
    return pd.DataFrame(cols)


def _funnel_method(method: object) -> str:
    """Validate the limits' method (``"auto"`` is resolved by :func:`funnel`)."""
    if method not in ("exact", "normal"):
        raise ParameterError(f"method must be 'exact' or 'normal'; got {method!r}", key="method")
    return str(method)


def _limits(
    theta: float, n: np.ndarray, level: float, method: str, phi: float
) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    if method == "normal" or phi > 1.0:
        z = sps.norm.isf(a)
        half = z * np.sqrt(phi * theta * (1.0 - theta) / n)
        return np.clip(theta - half, 0.0, 1.0), np.clip(theta + half, 0.0, 1.0)
    nn = np.round(n)
    out = []
    for p in (a, 1.0 - a):
        r = sps.binom.ppf(p, nn, theta)
        f_r = sps.binom.cdf(r, nn, theta)
        f_prev = sps.binom.cdf(r - 1, nn, theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(f_r > f_prev, (f_r - p) / (f_r - f_prev), 0.0)
        out.append(np.clip((r - alpha) / nn, 0.0, 1.0))
    return out[0], out[1]


@dataclass(frozen=True)
class FunnelResult:
    """Result of :func:`funnel` and :func:`outlier_units`.

    Attributes
    ----------
    units : pandas.DataFrame
        ``[unit, *FUNNEL_COLUMNS]``, one row per unit, most extreme first.
    curve : pandas.DataFrame
        :func:`funnel_limits` on a grid of n, for drawing the funnel.
    population_rate : float
    phi : float
        Overdispersion factor used (1 when not adjusted).
    phi_estimate : float
        Spiegelhalter's winsorised estimate :math:`\\hat\\phi`.
    phi_pvalue : float
        Test of no overdispersion, :math:`I\\hat\\phi \\sim \\chi^2_{I-1}`.
    method : str
        ``"exact"``, ``"normal"`` or ``"normal_overdispersed"``.
    alpha : float
        False discovery rate of ``flagged``.
    unit : str
        Name of the unit column.
    metric : str or None
    """

    units: pd.DataFrame
    curve: pd.DataFrame
    population_rate: float
    phi: float
    phi_estimate: float
    phi_pvalue: float
    method: str
    alpha: float
    unit: str
    metric: str | None = None

    @property
    def flagged(self) -> pd.DataFrame:
        """Units flagged after the Benjamini–Hochberg correction."""
        return self.units[self.units["flagged"]]


def funnel(
    counts: pd.DataFrame,
    *,
    unit: str = "unit",
    count: str = "k",
    nobs: str = "n",
    target: float | None = None,
    method: str = "auto",
    overdispersion: bool = False,
    winsorize: float = 0.1,
    alpha: float = 0.05,
    metric: str | None = None,
) -> FunnelResult:
    """Funnel plot and outlier flags for units' rates against the population.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per unit with its `unit` label, events `count` and trials
        `nobs` (rows with ``nobs == 0`` are dropped). Weighted data can be
        given as effective counts (rate × Kish n, Kish n).
    unit, count, nobs : str
        Column names.
    target : float, optional
        Population rate to compare against; by default the pooled rate
        ``sum(count) / sum(nobs)``.
    method : {"auto", "exact", "normal"}, default "auto"
        Exact binomial limits and p-values, or the normal approximation;
        ``"auto"`` is exact for integer counts and normal otherwise.
    overdispersion : bool, default False
        Estimate a multiplicative overdispersion factor and, when it is
        significant, widen limits and deflate z-scores by it.
    winsorize : float, default 0.1
        Share of z-scores winsorised in each tail for :math:`\\hat\\phi`.
    alpha : float, default 0.05
        False discovery rate for ``flagged``.
    metric : str, optional
        Carried into the result for labelling.

    Returns
    -------
    FunnelResult
        ``units`` has the `unit` column then :data:`FUNNEL_COLUMNS`: ``rate``,
        ``z`` (normal z-score, divided by :math:`\\sqrt\\phi` when adjusted),
        two-sided ``p_value``, Benjamini–Hochberg ``p_adjusted``, ``flagged``
        (``p_adjusted < alpha``), ``direction`` (``above``/``below``), the
        95% and 99.8% limits at the unit's n and whether the rate lies outside.

    Notes
    -----
    Exact p-values double the smaller binomial tail,
    :math:`\\min(1, 2\\min(F(k), 1 - F(k-1)))`, and are conservative for
    small units. The drawn limits (:func:`funnel_limits`) interpolate the
    discrete binomial, so a small unit can sit just outside a limit while its
    p-value is just above the level: ``outside_*`` describes the picture,
    ``flagged`` the multiplicity-corrected test. Overdispersion (Spiegelhalter 2005, §7.1): :math:`\\hat\\phi = I^{-1}\\sum
    z_i^2` over winsorised z-scores; it is applied (:math:`\\phi =
    \\hat\\phi`) when :math:`I\\hat\\phi` exceeds the 95% point of
    :math:`\\chi^2_{I-1}`, and limits and p-values then use the normal
    approximation with variance :math:`\\phi\\theta(1-\\theta)/n`. Adjusting
    p-values across units with Benjamini–Hochberg keeps small units with an
    extreme rate from being flagged by chance.

    Examples
    --------
    >>> df = pd.DataFrame({"unit": ["a", "b", "c"], "k": [60, 2, 50], "n": [400, 4, 500]})
    >>> res = funnel(df, target=0.1)
    >>> res.units[["unit", "rate", "flagged"]]
      unit  rate  flagged
    0    a  0.15     True
    1    b  0.50    False
    2    c  0.10    False
    """
    if method not in ("auto", "exact", "normal"):
        raise ParameterError(
            f"method must be 'auto', 'exact' or 'normal'; got {method!r}", key="method"
        )
    alpha = _check_unit_interval(alpha, "alpha")
    winsorize = float(winsorize)
    if not 0.0 <= winsorize < 0.5:
        raise ParameterError(f"winsorize must be in [0, 0.5); got {winsorize!r}", key="winsorize")
    missing = [c for c in (unit, count, nobs) if c not in counts.columns]
    if missing:
        raise ParameterError(
            f"counts has no column {missing[0]!r}; columns are {list(counts.columns)}",
            key=missing[0],
        )
    df = counts[[unit, count, nobs]].copy()
    df = df.rename(columns={count: "k", nobs: "n"})
    df["k"] = df["k"].astype(float)
    df["n"] = df["n"].astype(float)
    df = df[df["n"] > 0].reset_index(drop=True)
    if df.empty:
        raise QualityLabError("no unit has observations; nothing to plot")
    bad = (df["k"] < 0) | (df["k"] > df["n"])
    if bad.any():
        raise ParameterError(
            f"{count} must lie in [0, {nobs}] for every unit; {int(bad.sum())} rows do not, "
            f"e.g. {df.loc[bad].iloc[0].to_dict()!r}",
            key=count,
        )
    exact_ok = np.allclose(df["k"], np.round(df["k"])) and np.allclose(df["n"], np.round(df["n"]))
    if method == "auto":
        method = "exact" if exact_ok else "normal"
    if method == "exact" and not exact_ok:
        raise ParameterError(
            "method='exact' needs integer counts; use method='normal' for weighted counts",
            key="method",
        )
    theta = (
        float(df["k"].sum() / df["n"].sum())
        if target is None
        else _check_unit_interval(target, "target", closed=True)
    )
    k, n = df["k"].to_numpy(float), df["n"].to_numpy(float)
    rate = k / n
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(theta * (1.0 - theta) / n)
        z = np.where(se > 0, (rate - theta) / se, 0.0)
    # Spiegelhalter's winsorised overdispersion estimate.
    lo_q, hi_q = np.quantile(z, [winsorize, 1.0 - winsorize]) if len(z) else (0.0, 0.0)
    zw = np.clip(z, lo_q, hi_q)
    units = len(z)
    phi_hat = float(np.mean(zw**2)) if units else float("nan")
    phi_p = float(sps.chi2.sf(units * phi_hat, units - 1)) if units > 1 else float("nan")
    phi = phi_hat if (overdispersion and units > 1 and phi_p < 0.05 and phi_hat > 1) else 1.0
    if phi > 1.0:
        used = "normal_overdispersed"
        z = z / math.sqrt(phi)
        p = 2.0 * sps.norm.sf(np.abs(z))
    elif method == "normal":
        used = "normal"
        p = 2.0 * sps.norm.sf(np.abs(z))
    else:
        used = "exact"
        kk, nn = np.round(k), np.round(n)
        p = 2.0 * np.minimum(sps.binom.cdf(kk, nn, theta), sps.binom.sf(kk - 1, nn, theta))
    p = np.minimum(p, 1.0)
    lim = {
        f"{side}_{tag}": bound
        for tag, level in _FUNNEL_LEVELS.items()
        for side, bound in zip(
            ("lower", "upper"), _limits(theta, n, level, method, phi), strict=True
        )
    }
    p_adj = adjust_pvalues(p, method="fdr_bh")
    out = pd.DataFrame(
        {
            unit: df[unit].to_numpy(),
            "n": np.round(n).astype("int64") if exact_ok else n,
            "k": np.round(k).astype("int64") if exact_ok else k,
            "rate": rate,
            "population_rate": np.full(len(rate), theta),
            "z": z,
            "p_value": p,
            "p_adjusted": p_adj,
            "flagged": p_adj < alpha,
            "direction": np.where(rate >= theta, "above", "below"),
            **lim,
            "outside_95": (rate < lim["lower_95"]) | (rate > lim["upper_95"]),
            "outside_998": (rate < lim["lower_998"]) | (rate > lim["upper_998"]),
        }
    )
    out = out.sort_values(["p_value", unit], kind="stable").reset_index(drop=True)
    grid = np.unique(np.round(np.geomspace(1, max(float(n.max()), 2.0), 200)))
    curve = funnel_limits(theta, grid, method=method, phi=phi)
    return FunnelResult(
        units=out[[unit, *FUNNEL_COLUMNS]],
        curve=curve,
        population_rate=theta,
        phi=float(phi),
        phi_estimate=phi_hat,
        phi_pvalue=phi_p,
        method=used,
        alpha=alpha,
        unit=unit,
        metric=metric,
    )


def outlier_units(
    ds: Dataset,
    metric: str,
    market: str | None,
    *,
    unit: str = "moderator_id",
    start: date | str | None = None,
    end: date | str | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    target: float | None = None,
    method: str = "auto",
    overdispersion: bool = False,
    min_n: int = 1,
    alpha: float = 0.05,
) -> FunnelResult:
    """Units (moderators, sites, auditors…) whose rate differs from the population.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
    unit : str, default "moderator_id"
        Any dimension :func:`decompose` accepts (``auditor_id`` for QA metrics).
        Items whose unit is null (e.g. ``ai_auto`` decisions have no
        moderator) are left out.
    start, end : date or ISO string, optional
        Market-local period; defaults to the data's range.
    qa_source : {"internal", "vendor", None}, default "internal"
    weighted : bool, optional
        Use design weights; by default whenever any weight differs from 1.
    target : float, optional
        Compare against a target instead of the population rate.
    method : {"auto", "exact", "normal"}, default "auto"
        Exact binomial for unweighted counts, normal for weighted ones.
    overdispersion : bool, default False
    min_n : int, default 1
        Units with fewer items are left out of the plot and the correction.
    alpha : float, default 0.05

    Returns
    -------
    FunnelResult
        See :func:`funnel`. Unweighted, ``n`` and ``k`` are items (audits) and
        events per unit; weighted, ``rate`` is the unit's Hajek rate, ``n``
        its Kish effective sample size :math:`(\\sum w)^2/\\sum w^2` and
        ``k = rate × n``, and the population rate is the market's weighted
        rate.

    Notes
    -----
    One engine ``GROUP BY unit``; the funnel is computed on the sums. QA
    samples are usually stratified (enforced items, appeals oversampled), so
    unweighted audit rates are biased towards the oversampled strata; the
    weighted funnel compares like with like.
    """
    spec = _check_metric(metric)
    (unit,) = _check_dimensions([unit], spec)
    qa_source = _check_qa_source(qa_source)
    if not isinstance(min_n, int) or min_n < 1:
        raise ParameterError(f"min_n must be an integer >= 1; got {min_n!r}", key="min_n")
    period = m.resolve_period(ds, market=market, start=start, end=end)
    t = _metric_table(ds, spec, market, (period,), qa_source)
    t = t.filter(t[unit].notnull())
    agg = _weighted_sums(t, [unit])
    agg = agg[agg["n"] >= min_n]
    if agg.empty:
        raise QualityLabError(
            f"no {unit} with at least {min_n} items for {metric} in market {market!r} "
            f"in {_fmt_period(period)}"
        )
    if _use_weights(agg, weighted):
        if target is None:
            target = float(agg["swy"].sum() / agg["sw"].sum())
        neff = agg["sw"] ** 2 / agg["sw2"]
        agg = agg.assign(n=neff, k=agg["swy"] / agg["sw"] * neff)
    return funnel(
        agg[[unit, "n", "k"]],
        unit=unit,
        target=target,
        method=method,
        overdispersion=overdispersion,
        alpha=alpha,
        metric=spec.name,
    )


# --------------------------------------------------------------------------- #
# error anatomy and context
# --------------------------------------------------------------------------- #
def error_anatomy(
    ds: Dataset,
    market: str | None,
    current: tuple[date | str, date | str] | m.Period,
    baseline: tuple[date | str, date | str] | m.Period,
    *,
    by: Sequence[str] = ("policy", "language"),
    where: Mapping[str, str | Sequence[str]] | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
) -> pd.DataFrame:
    """Which kinds of errors, on which policies and languages, moved the error rate.

    Parameters
    ----------
    ds : Dataset
    market : str or None
    current, baseline : (start, end) or Period
    by : sequence of str, default ("policy", "language")
        Dimensions to cross with the error type (as :func:`decompose`).
        ``policy`` here is the policy *at stake*: the policy the decision cited
        for an over-enforcement, the policy QA found for an under-enforcement
        or a wrong-policy error.
    where : mapping, optional
        Within a segment only, e.g. ``{"vendor": "VendorC"}`` (as :func:`decompose`).
    qa_source : {"internal", "vendor", None}, default "internal"
    weighted : bool, optional
        Design weights, as :func:`decompose`.

    Returns
    -------
    pandas.DataFrame
        ``error_type, *by, n_base, n_cur, rate_base, rate_cur, change,
        share_of_change``: raw error counts; ``rate_*`` the errors of the row
        per audit of the period (so the rates of all rows add up to the error
        rate, 1 − accuracy); ``change`` their difference, which adds up to
        minus the change of accuracy; ``share_of_change`` the row's share of
        the change of the error rate. Sorted by decreasing ``|change|``.
    """
    spec = _METRICS["accuracy"]
    cols = [by] if isinstance(by, str) else list(by)
    if cols:
        _check_dimensions(cols, spec)
    base, cur = _check_periods(baseline, current)
    qa_source = _check_qa_source(qa_source)
    t = _metric_table(ds, spec, market, (base, cur), qa_source)
    if where is not None:
        t = t.filter(_filter_expr(t, where, spec, "where"))
    t = t.mutate(
        _etype=ibis.cases(
            (t.over_enforcement, "over_enforcement"),
            (t.under_enforcement, "under_enforcement"),
            (t.wrong_policy, "wrong_policy"),
            else_="correct",
        ),
        _stake=ibis.ifelse(t.qa_enforced, t.qa_policy, t.policy),
    )
    keys = {
        c: (t._stake if c == "policy" else t[c]).cast("string").fill_null(MISSING) for c in cols
    }
    t = t.mutate(**{f"_k_{c}": e for c, e in keys.items()})
    gcols = ["_etype", *[f"_k_{c}" for c in cols], "_period"]
    agg = (
        t.group_by(gcols)
        .aggregate(n=t.count(), sw=t._w.sum(), sw2=(t._w * t._w).sum())
        .to_pandas()
        .rename(columns={f"_k_{c}": c for c in cols})
    )
    agg["_period"] = agg["_period"].astype("int64")
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if not (agg["_period"] == p).any():
            raise QualityLabError(
                MSG_EMPTY_PERIOD.format(
                    what="audited decisions",
                    metric="accuracy",
                    market=market,
                    which=which,
                    period=_fmt_period(period),
                )
            )
    use_w = _use_weights(agg.assign(n=agg["n"].astype(float)), weighted)
    den = "sw" if use_w else "n"
    totals = agg.groupby("_period")[den].sum().astype(float)
    errs = agg[agg["_etype"] != "correct"]
    wide = errs.pivot_table(
        index=["_etype", *cols], columns="_period", values=["n", den], aggfunc="sum", fill_value=0
    )
    wide.columns = [f"{s}_{p}" for s, p in wide.columns]
    for s in {"n", den}:
        for p in (0, 1):
            if f"{s}_{p}" not in wide:
                wide[f"{s}_{p}"] = 0.0
    wide = wide.reset_index().rename(columns={"_etype": "error_type"})
    out = wide[["error_type", *cols]].copy()
    out["n_base"] = wide["n_0"].astype("int64")
    out["n_cur"] = wide["n_1"].astype("int64")
    out["rate_base"] = wide[f"{den}_0"].astype(float) / totals.loc[0]
    out["rate_cur"] = wide[f"{den}_1"].astype(float) / totals.loc[1]
    out["change"] = out["rate_cur"] - out["rate_base"]
    total_change = float(out["change"].sum())
    out["share_of_change"] = out["change"] / total_change if total_change != 0 else np.nan
    out["_abs"] = -out["change"].abs()
    out = out.sort_values(["_abs", "error_type", *cols], kind="stable")
    return out[["error_type", *cols, *ANATOMY_COLUMNS[1:]]].reset_index(drop=True)


def segment_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    *,
    current: tuple[date | str, date | str] | m.Period,
    baseline: tuple[date | str, date | str] | m.Period,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Calibration and QA alignment around a segment, baseline against current.

    Parameters
    ----------
    ds : Dataset
    market : str or None
    dimension, segment : str
        The segment, e.g. ``("vendor", "VendorC")`` or ``("policy", "scam")``.
    current, baseline : (start, end) or Period
    confidence_level : float, optional

    Returns
    -------
    pandas.DataFrame
        :data:`CONTEXT_COLUMNS`, long: ``calibration_score`` per rater group
        (the segment's vendors and ``internal`` as the reference; share of
        calibration labels matching ``expected_label``, Wilson interval) and,
        when some decisions were audited by both vendor and internal QA,
        ``qa_alignment``, ``qa_alignment_kappa`` and ``qa_leniency`` of the
        segment from :func:`qualitylab.metrics.qa_alignment`; ``period`` is
        ``baseline`` or ``current``. Empty when neither table is present.

    Notes
    -----
    The segment's vendors are the vendor itself, or the vendors whose
    decisions fall in the segment during the current period. For a ``policy``
    segment the calibration cases are those whose expected label is that
    policy.
    """
    allowed = (*_DECISION_DIMENSIONS, "qa_policy")
    if dimension not in allowed:
        raise ParameterError(
            f"unknown dimension {dimension!r}; choose from {', '.join(allowed)}", key="dimension"
        )
    base, cur = _check_periods(baseline, current)
    cl = _confidence(ds, market, confidence_level)
    rows: list[pd.DataFrame] = []
    if ds.has("calibration"):
        vendors = _segment_vendors(ds, market, dimension, segment, cur)
        rows.append(_calibration_context(ds, market, dimension, segment, vendors, base, cur, cl))
    if ds.has("qa_audits") and dimension in m.GRAINS:
        rows.append(_alignment_context(ds, market, dimension, segment, base, cur, cl))
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=CONTEXT_COLUMNS)
    return pd.concat(rows, ignore_index=True)[CONTEXT_COLUMNS]


def _segment_vendors(
    ds: Dataset, market: str | None, dimension: str, segment: str, period: m.Period
) -> list[str]:
    if dimension == "vendor":
        return [segment]
    dec = m.decisions_in_period(ds, market=market, period=period)
    col = "policy" if dimension == "qa_policy" else dimension
    dec = dec.filter(dec[col].cast("string") == segment)
    return sorted(dec.select("vendor").distinct().to_pandas()["vendor"].tolist())


def _calibration_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    vendors: list[str],
    base: m.Period,
    cur: m.Period,
    cl: float,
) -> pd.DataFrame:
    cal = ds.table("calibration")
    if market is not None:
        cal = cal.filter(cal.market == market)
    tz = ds.params.market(market).timezone if market else "UTC"
    groups = [*vendors, "internal"]
    cal = cal.filter(cal.expected_label.notnull() & cal.rater_group.isin(groups))
    if dimension in ("policy", "qa_policy"):
        cal = cal.filter(cal.expected_label == segment)
    bounds = [period_bounds_utc(p.start, p.end, tz) for p in (base, cur)]
    per = ibis.cases(
        *[
            ((cal.held_at >= lo) & (cal.held_at < hi), ibis.literal(i))
            for i, (lo, hi) in enumerate(bounds)
        ],
        else_=ibis.null("int64"),
    )
    cal = cal.mutate(_period=per)
    cal = cal.filter(cal._period.notnull())
    agg = (
        cal.group_by(["rater_group", "_period"])
        .aggregate(n=cal.count(), k=(cal.label == cal.expected_label).cast("int64").sum())
        .to_pandas()
    )
    if agg.empty:
        return agg
    lo, hi = proportion_ci(agg["k"].to_numpy(float), agg["n"].to_numpy(float), confidence_level=cl)
    return pd.DataFrame(
        {
            "metric": "calibration_score",
            "dimension": dimension,
            "segment": segment,
            "rater_group": agg["rater_group"],
            "period": np.where(agg["_period"] == 0, "baseline", "current"),
            "value": agg["k"] / agg["n"],
            "n": agg["n"].astype(float),
            "ci_low": lo,
            "ci_high": hi,
        }
    ).sort_values(["rater_group", "period"], ascending=[True, True], kind="stable")


def _alignment_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    base: m.Period,
    cur: m.Period,
    cl: float,
) -> pd.DataFrame:
    parts = []
    for which, p in (("baseline", base), ("current", cur)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            al = m.qa_alignment(
                ds, market=market, by=[dimension], start=p.start, end=p.end, confidence_level=cl
            )
        al = al[al[dimension].astype(str) == segment]
        if al.empty:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "metric": al["metric"].to_numpy(),
                    "dimension": dimension,
                    "segment": segment,
                    "rater_group": None,
                    "period": which,
                    "value": al["value"].to_numpy(float),
                    "n": al["n"].to_numpy(float),
                    "ci_low": al["ci_low"].to_numpy(float),
                    "ci_high": al["ci_high"].to_numpy(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CONTEXT_COLUMNS)


# --------------------------------------------------------------------------- #
# event impact
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class EventImpactResult:
    """Result of :func:`event_impact`.

    Attributes
    ----------
    statistic, pvalue : float
        Two-proportion test of the treated segment, after against before.
    method : str
        ``"z"`` or ``"fisher"`` (see :func:`qualitylab.stats.compare_proportions`).
    alternative : str
    estimate : float
        ``rate_after - rate_before`` in the treated segment.
    confidence_level : float
    metric : str
    market : str or None
    event_date : date
    before, after : Period
    rate_before, rate_after : float
    n_before, n_after : int
    neff_before, neff_after : float
    did_estimate, did_se, did_pvalue : float
        Difference-in-differences against the control (NaN without one):
        ``(treated after - before) - (control after - before)``, Wald z-test.
    control_rate_before, control_rate_after : float
    control_n_before, control_n_after : int
    control_neff_before, control_neff_after : float
    weighted : bool
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    metric: str
    market: str | None
    event_date: date
    before: m.Period
    after: m.Period
    rate_before: float
    rate_after: float
    n_before: int
    n_after: int
    neff_before: float
    neff_after: float
    did_estimate: float
    did_se: float
    did_pvalue: float
    control_rate_before: float
    control_rate_after: float
    control_n_before: int
    control_n_after: int
    control_neff_before: float
    control_neff_after: float
    weighted: bool

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Newcombe interval for ``rate_after - rate_before`` (effective sizes)."""
        cl = _check_unit_interval(confidence_level, "confidence_level")
        return proportion_difference_ci(
            self.rate_after * self.neff_after,
            self.neff_after,
            self.rate_before * self.neff_before,
            self.neff_before,
            confidence_level=cl,
        )

    def did_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Wald interval for the difference-in-differences."""
        cl = _check_unit_interval(confidence_level, "confidence_level")
        z = sps.norm.isf((1 - cl) / 2)
        return ConfidenceInterval(
            self.did_estimate - z * self.did_se, self.did_estimate + z * self.did_se
        )

    def to_frame(self) -> pd.DataFrame:
        """Rows ``treated``, ``control`` and ``difference_in_differences``:
        ``group, rate_before, rate_after, n_before, n_after, estimate, ci_low,
        ci_high, pvalue``."""
        lo, hi = self.confidence_interval(self.confidence_level)
        rows = [
            {
                "group": "treated",
                "rate_before": self.rate_before,
                "rate_after": self.rate_after,
                "n_before": self.n_before,
                "n_after": self.n_after,
                "estimate": self.estimate,
                "ci_low": lo,
                "ci_high": hi,
                "pvalue": self.pvalue,
            }
        ]
        if np.isfinite(self.did_estimate):
            c_lo, c_hi = proportion_difference_ci(
                self.control_rate_after * self.control_neff_after,
                self.control_neff_after,
                self.control_rate_before * self.control_neff_before,
                self.control_neff_before,
                confidence_level=self.confidence_level,
            )
            _, c_p = _pooled_z(
                np.array([self.control_rate_before]),
                np.array([self.control_neff_before]),
                np.array([self.control_rate_after]),
                np.array([self.control_neff_after]),
            )
            d_lo, d_hi = self.did_confidence_interval(self.confidence_level)
            rows.append(
                {
                    "group": "control",
                    "rate_before": self.control_rate_before,
                    "rate_after": self.control_rate_after,
                    "n_before": self.control_n_before,
                    "n_after": self.control_n_after,
                    "estimate": self.control_rate_after - self.control_rate_before,
                    "ci_low": c_lo,
                    "ci_high": c_hi,
                    "pvalue": float(c_p[0]),
                }
            )
            rows.append(
                {
                    "group": "difference_in_differences",
                    "rate_before": np.nan,
                    "rate_after": np.nan,
                    "n_before": self.n_before + self.control_n_before,
                    "n_after": self.n_after + self.control_n_after,
                    "estimate": self.did_estimate,
                    "ci_low": d_lo,
                    "ci_high": d_hi,
                    "pvalue": self.did_pvalue,
                }
            )
        return pd.DataFrame(rows)


def _filter_expr(t: ir.Table, where: Mapping[str, Any], spec: _RateMetric, name: str):
    if not isinstance(where, Mapping) or not where:
        raise ParameterError(
            f"{name} must be a non-empty mapping of dimension to value(s), e.g. "
            f"{{'policy': 'scam'}}; got {where!r}",
            key=name,
        )
    _check_dimensions(list(where), spec)
    cond = ibis.literal(True)
    for col, val in where.items():
        vals = [val] if isinstance(val, str) else list(val)
        cond = cond & t[col].cast("string").fill_null(MISSING).isin([str(v) for v in vals])
    return cond


def event_impact(
    ds: Dataset,
    metric: str,
    market: str | None,
    event_date: date | str,
    *,
    window_days: int = 14,
    segment: Mapping[str, str | Sequence[str]] | None = None,
    control: Mapping[str, str | Sequence[str]] | str | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    confidence_level: float | None = None,
) -> EventImpactResult:
    """Before/after comparison of a rate around a dated event.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
    event_date : date or ISO string
        Market-local date the event took effect; the *after* window starts on
        it, the *before* window ends the day before.
    window_days : int, default 14
        Length of each window.
    segment : mapping, optional
        The affected segment, e.g. ``{"policy": "scam"}`` (values may be
        lists); the whole market by default.
    control : mapping or "rest", optional
        Unaffected segment for a difference-in-differences; ``"rest"`` is
        everything outside `segment`.
    qa_source, weighted, confidence_level
        As in :func:`decompose`.

    Returns
    -------
    EventImpactResult

    Notes
    -----
    The treated change is tested with
    :func:`qualitylab.stats.compare_proportions` (Fisher's exact test for
    small unweighted counts, else the pooled z-test; weighted rates use Kish
    effective counts and the z-test). The difference-in-differences
    :math:`(T_1 - T_0) - (C_1 - C_0)` has the Wald variance
    :math:`\\sum r(1-r)/n_{eff}` over the four cells; it assumes the treated
    and control segments would have moved in parallel without the event.
    """
    spec = _check_metric(metric)
    qa_source = _check_qa_source(qa_source)
    ev = m._as_date(event_date)
    if ev is None:
        raise ParameterError("event_date is required", key="event_date")
    if not isinstance(window_days, int) or window_days < 1:
        raise ParameterError(
            f"window_days must be a positive integer; got {window_days!r}", key="window_days"
        )
    cl = _confidence(ds, market, confidence_level)
    before = m.Period(ev - timedelta(days=window_days), ev - timedelta(days=1))
    after = m.Period(ev, ev + timedelta(days=window_days - 1))
    t = _metric_table(ds, spec, market, (before, after), qa_source)
    treated = _filter_expr(t, segment, spec, "segment") if segment is not None else None
    if control is None:
        ctrl = None
    elif isinstance(control, str):
        if control != "rest":
            raise ParameterError(
                f"control must be a mapping or 'rest'; got {control!r}", key="control"
            )
        if treated is None:
            raise ParameterError("control='rest' needs a segment to be the complement of")
        ctrl = ~treated
    else:
        ctrl = _filter_expr(t, control, spec, "control")
    grp = ibis.cases(
        (treated if treated is not None else ibis.literal(True), ibis.literal("treated")),
        *([(ctrl, ibis.literal("control"))] if ctrl is not None else []),
        else_=ibis.null("string"),
    )
    t = t.mutate(_grp=grp)
    t = t.filter(t._grp.notnull())
    agg = _weighted_sums(t, ["_grp", "_period"])
    use_w = _use_weights(agg, weighted)

    def cell(g: str, p: int) -> tuple[float, float, int]:
        row = agg[(agg["_grp"] == g) & (agg["_period"] == p)]
        if row.empty:
            which = "before" if p == 0 else "after"
            period = before if p == 0 else after
            raise QualityLabError(
                f"no items for {metric} in the {g} segment {which} the event "
                f"({_fmt_period(period)}) in market {market!r}"
            )
        r = row.iloc[0]
        if use_w:
            return r["swy"] / r["sw"], r["sw"] ** 2 / r["sw2"], int(r["n"])
        return r["k"] / r["n"], r["n"], int(r["n"])

    r0, ne0, n0 = cell("treated", 0)
    r1, ne1, n1 = cell("treated", 1)
    if use_w:
        res = compare_proportions(r1 * ne1, ne1, r0 * ne0, ne0, method="z", confidence_level=cl)
    else:
        res = compare_proportions(round(r1 * ne1), ne1, round(r0 * ne0), ne0, confidence_level=cl)
    nan = float("nan")
    c = {"r0": nan, "r1": nan, "ne0": nan, "ne1": nan, "n0": 0, "n1": 0}
    did, did_se, did_p = nan, nan, nan
    if ctrl is not None:
        c["r0"], c["ne0"], c["n0"] = cell("control", 0)
        c["r1"], c["ne1"], c["n1"] = cell("control", 1)
        did = (r1 - r0) - (c["r1"] - c["r0"])
        did_se = math.sqrt(
            sum(
                r * (1 - r) / ne
                for r, ne in ((r0, ne0), (r1, ne1), (c["r0"], c["ne0"]), (c["r1"], c["ne1"]))
            )
        )
        did_p = (
            float(2 * sps.norm.sf(abs(did / did_se))) if did_se > 0 else (1.0 if did == 0 else 0.0)
        )
    return EventImpactResult(
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        method=res.method,
        alternative=res.alternative,
        estimate=float(r1 - r0),
        confidence_level=cl,
        metric=spec.name,
        market=market,
        event_date=ev,
        before=before,
        after=after,
        rate_before=float(r0),
        rate_after=float(r1),
        n_before=n0,
        n_after=n1,
        neff_before=float(ne0),
        neff_after=float(ne1),
        did_estimate=float(did),
        did_se=float(did_se),
        did_pvalue=float(did_p),
        control_rate_before=float(c["r0"]),
        control_rate_after=float(c["r1"]),
        control_n_before=int(c["n0"]),
        control_n_after=int(c["n1"]),
        control_neff_before=float(c["ne0"]),
        control_neff_after=float(c["ne1"]),
        weighted=use_w,
    )


# --------------------------------------------------------------------------- #
# plain-language summary
# --------------------------------------------------------------------------- #
def _pp(x: float, signed: bool = True, spec: _RateMetric | None = None) -> str:
    """A change: percentage points, or per 1,000 items for a metric with a scale."""
    if spec is not None and spec.scale != 1.0:
        v = x * spec.scale
        return (
            f"{v:+.2f} per {spec.scale:,.0f}" if signed else f"{abs(v):.2f} per {spec.scale:,.0f}"
        )
    v = x * 100.0
    digits = 2 if 0 < abs(v) < 0.05 else 1
    return f"{v:+.{digits}f} pp" if signed else f"{abs(v):.{digits}f} pp"


def _pct(x: float, spec: _RateMetric | None = None) -> str:
    """A level: a percentage, or per 1,000 items for a metric with a scale."""
    if spec is not None and spec.scale != 1.0:
        return f"{x * spec.scale:.2f} per {spec.scale:,.0f} {spec.items}"
    return f"{x * 100:.1f}%"


def _p(p: float) -> str:
    if not np.isfinite(p):
        return "p not available"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _how(mix: float, rate: float, plural: bool = False, spec: _RateMetric | None = None) -> str:
    its = "their" if plural else "its"
    total = abs(mix) + abs(rate)
    share = abs(rate) / total if total > 0 else 0.5
    r, mx = _pp(rate, spec=spec), _pp(mix, spec=spec)
    effects = f"rate effect {r}, mix effect {mx}"
    if share >= 0.8:
        return (
            f"almost entirely through {its} own performance (rate effect {r}), "
            f"not {its} share of volume (mix effect {mx})"
        )
    if share <= 0.2:
        return (
            f"almost entirely through {its} share of volume (mix effect {mx}), "
            f"not {its} own performance (rate effect {r})"
        )
    return f"through both {its} own performance and {its} share of volume ({effects})"


def _segment_rates(spec: _RateMetric, r: pd.Series) -> str:
    if not np.isfinite(r["rate_base"]):
        return f"it is new in the current period ({spec.noun} {_pct(r['rate_cur'], spec)})"
    if not np.isfinite(r["rate_cur"]):
        return (
            f"it is absent from the current period ({spec.noun} was {_pct(r['rate_base'], spec)})"
        )
    return f"its {spec.noun} went from {_pct(r['rate_base'], spec)} to {_pct(r['rate_cur'], spec)}"


def _beyond(ep: float) -> str:
    return " (other segments moved the other way)" if ep > 1.05 else ""


def _change_sentences(result: DecompositionResult, alpha: float) -> str:
    """The change with its interval and test, and a warning when it is noise."""
    spec = _METRICS[result.metric]
    change = result.estimate
    where = (f" in {result.market}" if result.market else "") + _where_text(
        result.where, prefix=" for "
    )
    lo, hi = result.confidence_interval(result.confidence_level)
    verb = "rose" if change > 0 else "fell"
    text = (
        f"{spec.label}{where} {verb} {_pp(change, signed=False, spec=spec)}, from "
        f"{_pct(result.rate_base, spec)} ({_fmt_period(result.baseline)}, n = {result.n_base:,}) "
        f"to {_pct(result.rate_cur, spec)} ({_fmt_period(result.current)}, "
        f"n = {result.n_cur:,}); {result.confidence_level:.0%} CI for the change "
        f"{_pp(lo, spec=spec)} to {_pp(hi, spec=spec)}, {_p(result.pvalue)}."
    )
    if not result.pvalue < alpha:
        text += " The change is within sampling noise, so the breakdown below may describe noise."
    return text


def summarize(
    result: DecompositionResult,
    ranking: AdtributorResult | None = None,
    *,
    alpha: float = 0.05,
) -> str:
    """A few plain sentences that state the change and what explains it.

    Parameters
    ----------
    result : DecompositionResult
    ranking : AdtributorResult, optional
        Defaults to ``adtributor(result)``.
    alpha : float, default 0.05
        Significance level below which the change is called real.

    Returns
    -------
    str
        Plain text. Segment names come from the data verbatim: escape the
        text before putting it into HTML.

    Examples
    --------
    The sentences read like: "Accuracy in ID fell 3.1 pp, from 94.5%
    (2026-10-05..2026-11-01, n = 1,234) to 91.4% (2026-11-02..2026-11-08,
    n = 456); 95% CI for the change -4.8 to -1.4 pp, p < 0.001. By vendor,
    VendorC explains 82% of the drop, almost entirely through its own
    performance (rate effect -2.6 pp), not its share of volume (mix effect
    -0.1 pp); its accuracy went from 95.0% to 80.2%."
    """
    alpha = _check_unit_interval(alpha, "alpha")
    spec = _METRICS[result.metric]
    change = result.estimate
    where = (f" in {result.market}" if result.market else "") + _where_text(
        result.where, prefix=" for "
    )
    if change == 0:
        return (
            f"{spec.label}{where} did not change: {_pct(result.rate_base, spec)} in both "
            f"{_fmt_period(result.baseline)} and {_fmt_period(result.current)}."
        )
    noun = "rise" if change > 0 else "drop"
    sentences = [_change_sentences(result, alpha)]
    ranking = ranking or adtributor(result)
    dim = ranking.top_dimension
    if dim is None:
        sentences.append(
            f"No dimension concentrates the {noun}: no small set of segments explains "
            f"{ranking.ep_threshold:.0%} of it in any of {', '.join(result.dimensions)}."
        )
        return " ".join(sentences)
    seg = ranking.segments
    sel = seg[(seg["dimension"] == dim) & seg["selected"]]
    if len(sel) == 1:
        r = sel.iloc[0]
        sentences.append(
            f"By {dim}, {r['segment']} explains {r['explanatory_power']:.0%} of the {noun}"
            f"{_beyond(r['explanatory_power'])}, "
            f"{_how(r['mix_effect'], r['rate_effect'], spec=spec)}; {_segment_rates(spec, r)}."
        )
    else:
        names = ", ".join(sel["segment"].astype(str).iloc[:-1]) + f" and {sel['segment'].iloc[-1]}"
        ep = float(sel["explanatory_power"].sum())
        how = _how(sel["mix_effect"].sum(), sel["rate_effect"].sum(), plural=True, spec=spec)
        sentences.append(
            f"By {dim}, {names} together explain {ep:.0%} of the {noun}{_beyond(ep)}, {how}."
        )
    tot = result.totals[result.totals["dimension"] == dim].iloc[0]
    if abs(tot["mix_effect"]) > abs(tot["rate_effect"]):
        sentences.append(
            f"Across all {dim} segments the shift in volume between segments "
            f"({_pp(tot['mix_effect'], spec=spec)}) outweighs the change in their own rates "
            f"({_pp(tot['rate_effect'], spec=spec)})."
        )
    # A runner-up only when its leading segment's own rate moved significantly.
    pvals = result.segments.set_index(["dimension", "segment"])["p_value"]
    for _, o in ranking.dimensions.iterrows():
        if not o["explained"] or o["dimension"] == dim:
            continue
        p = pvals.get((o["dimension"], o["top_segment"]), np.nan)
        if p < alpha:
            sentences.append(
                f"The next most telling dimension is {o['dimension']}: "
                f"{o['top_segment']} ({_p(p)} for its own change)."
            )
        break
    return " ".join(sentences)


# --------------------------------------------------------------------------- #
# explain an alert: the breakdown that fits its metric
# --------------------------------------------------------------------------- #
#: Metrics :func:`explain_alert` breaks down, and how: ``rate`` (a decomposition,
#: :func:`decompose` and :func:`adtributor`), ``count`` (items per day by segment),
#: ``backlog`` (open items by segment), ``percentile`` (response times by segment)
#: and ``gap`` (vendor-reported against measured KPIs).
EXPLAINED_METRICS: dict[str, str] = {
    **dict.fromkeys(RCA_METRICS, "rate"),
    "volume": "count",
    "backlog": "backlog",
    "response_p50": "percentile",
    "response_p90": "percentile",
    "response_p99": "percentile",
    "reporting_gap": "gap",
}
#: Columns of :attr:`Explanation.table`.
EXPLANATION_COLUMNS = [
    "dimension",
    "segment",
    "value_base",
    "value_cur",
    "change",
    "n_base",
    "n_cur",
    "contribution",
    "share_of_change",
    "selected",
]
#: Columns of :attr:`Explanation.dimensions`.
EXPLANATION_DIMENSION_COLUMNS = [
    "rank",
    "dimension",
    "explained",
    "concentrated",
    "n_selected",
    "top_segment",
    "explanatory_power",
    "share_of_items",
    "surprise",
]
# How explain_alert decides that a change is concentrated (see _dimension_summary),
# and the p-value above which a change is sampling noise.
_EP_THRESHOLD = 0.67
_MIN_SEGMENT_EP = 0.1
_MIN_SET_EP = 0.5
_MAX_SET_EP = 1.5
_MIN_EXCESS = 0.1
_NOISE_ALPHA = 0.05
MSG_NO_BREAKDOWN = "no breakdown for metric {metric!r}; explain_alert handles {allowed}"
MSG_ALERT_FIELD = "the alert has no {field!r}; it needs {needed}"
_ALERT_FIELDS = ("market", "metric", "dimension", "segment", "start_date", "end_date")
_QUANTILES = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}
_LEVEL_LABELS = {
    "volume": "Volume",
    "backlog": "Backlog",
    "response_p50": "Median response time",
    "response_p90": "Response time p90",
    "response_p99": "Response time p99",
    "reporting_gap": "Reporting gap",
}


@dataclass(frozen=True)
class Explanation:
    """Result of :func:`explain_alert`: the breakdown of one alert's change.

    Attributes
    ----------
    metric, kind : str
        The alert's metric and its kind in :data:`EXPLAINED_METRICS`.
    market, dimension, segment : str
        The alert's series (``dimension == "market"`` for market-wide alerts);
        the breakdown is within that segment.
    current, baseline : Period
        The alert's window and the days before it.
    value_base, value_cur : float
        The series' value in each period in the metric's units (rates as
        proportions, escalations per 1,000 decisions, volume per day, open
        items, seconds; for ``gap``: measured, then vendor-reported).
    top_dimension, top_segment : str or None
        The dimension whose few segments explain the change, and its leading
        segment; when no dimension concentrates it, ``top_dimension`` is None
        and ``top_segment`` names the largest contributor of the best-ranked
        dimension.
    sentence : str
        One plain sentence: the change and the segment behind it (plain text:
        escape it before putting it into HTML).
    summary : str
        The change with its interval and test for rates (as :func:`summarize`
        opens), else `sentence`.
    table : pandas.DataFrame
        :data:`EXPLANATION_COLUMNS`, the segments of the best-ranked dimension
        (at most ``max_segments``), largest share of the change first:
        per-segment values in each period and their ``change``, items
        ``n_base``/``n_cur``, ``contribution`` to the change (additive: the
        contributions of a dimension add up to the change; for percentiles,
        to the change in the share of items slower than the baseline's
        percentile) and ``share_of_change``; ``selected`` marks the smallest
        set explaining most of it.
    dimensions : pandas.DataFrame
        :data:`EXPLANATION_DIMENSION_COLUMNS`, every dimension ranked (as
        :func:`adtributor` ranks them, for rates): ``explained`` when a small
        set reaches the threshold, ``concentrated`` when the segments named
        (``n_selected``, led by ``top_segment``) also carry clearly more of
        the change (``explanatory_power``) than of the items
        (``share_of_items``); :attr:`top_dimension` is the first concentrated one.
    result : DecompositionResult or None
        The decomposition behind a rate (per item, so escalations per decision).
    ranking : AdtributorResult or None
    """

    metric: str
    kind: str
    market: str
    dimension: str
    segment: str
    current: m.Period
    baseline: m.Period
    value_base: float
    value_cur: float
    top_dimension: str | None
    top_segment: str | None
    sentence: str
    summary: str
    table: pd.DataFrame = field(repr=False, compare=False)
    dimensions: pd.DataFrame = field(repr=False, compare=False)
    result: DecompositionResult | None = field(default=None, repr=False, compare=False)
    ranking: AdtributorResult | None = field(default=None, repr=False, compare=False)

    @property
    def change(self) -> float:
        """``value_cur - value_base``."""
        return self.value_cur - self.value_base

    @property
    def shown_dimension(self) -> str | None:
        """The dimension :attr:`table` shows (`top_dimension`, or the best-ranked one)."""
        return str(self.table["dimension"].iloc[0]) if len(self.table) else None


def explain_alert(
    ds: Dataset,
    alert: Mapping[str, Any] | pd.Series,
    *,
    baseline_days: int = 28,
    max_segments: int = 8,
    dimensions: Sequence[str] | None = None,
) -> Explanation:
    """Break an alert's change down by segment, the way its metric allows.

    Parameters
    ----------
    ds : Dataset
    alert : mapping or pandas.Series
        A row of an alerts table (:data:`qualitylab.detect.ALERT_COLUMNS`):
        ``market, metric, dimension, segment, start_date, end_date``. The
        alert's window is the current period. Optional ``baseline_start`` and
        ``baseline_end`` set the baseline.
    baseline_days : int, default 28
        Otherwise the baseline is the days before the window, as the scan's.
    max_segments : int, default 8
        Rows of :attr:`Explanation.table`.
    dimensions : sequence of str, optional
        Dimensions to break down by; by default those of :func:`decompose`
        for rates and :data:`DEFAULT_DIMENSIONS` otherwise, less the alert's
        own dimension.

    Returns
    -------
    Explanation

    Raises
    ------
    QualityLabError
        A metric without a breakdown, or no data for the alert's segment in a
        period (inside :func:`qualitylab.report.section`, a one-line note).

    Notes
    -----
    A market-wide alert is broken down over the market; an alert on a segment
    (``vendor = VendorC``) within that segment, by the other dimensions.

    * ``rate`` (:data:`RCA_METRICS`): :func:`decompose` within the segment and
      :func:`adtributor`.
    * ``count`` (``volume``): decisions created per day in each period, per
      segment; the changes add up to the change of the total. Weekday mix is
      not adjusted for.
    * ``backlog``: items open (created since the baseline's start and not yet
      decided) at the end of the baseline and at the end of the window.
    * ``percentile`` (``response_p50/p90/p99``): the percentile per segment
      in each period (Kaplan–Meier, :func:`qualitylab.metrics.operational_metrics`).
      Percentiles do not add up, so segments are ranked by their
      contribution to the change in the share of items slower than the
      baseline's percentile (pending items already older count as slow, the
      rest are unknown and left out), a rate whose shift-share is exact.
    * ``gap`` (``reporting_gap``): the vendor's reported KPIs against the
      measured ones over the window's weeks
      (:func:`qualitylab.reconcile.reporting_gap_summary`).

    Non-additive breakdowns are ranked like :func:`adtributor`: per dimension
    the smallest set of segments reaching 67% of the change (segments under
    10% left out), dimensions with a set first by the Jensen–Shannon surprise
    per segment of their set; dimensions with one segment cannot explain
    anything and go last.

    Examples
    --------
    A two-day volume spike on demo data (a viral live event in SG):

    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> alert = {"market": "SG", "metric": "volume", "dimension": "market", "segment": "SG",
    ...          "start_date": "2026-11-17", "end_date": "2026-11-18"}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=42, scale="small", seed=1)
    ...     exp = explain_alert(open_dataset(tmp), alert)
    >>> exp.kind, exp.top_dimension, exp.top_segment
    ('count', 'site', 'VendorA-Manila')
    >>> round(exp.value_base, 1), round(exp.value_cur, 1)
    (139.9, 248.0)
    >>> exp.sentence[:70]
    'Volume in SG rose from 139.9 to 248.0 a day (2026-11-17..2026-11-18 ag'
    """
    if isinstance(baseline_days, bool) or not isinstance(baseline_days, int) or baseline_days < 1:
        raise ParameterError(
            f"baseline_days must be a positive integer; got {baseline_days!r}", key="baseline_days"
        )
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ParameterError(
            f"max_segments must be a positive integer; got {max_segments!r}", key="max_segments"
        )
    a = _alert_fields(alert, baseline_days)
    kind = EXPLAINED_METRICS.get(a["metric"])
    if kind is None:
        raise QualityLabError(
            MSG_NO_BREAKDOWN.format(metric=a["metric"], allowed=", ".join(EXPLAINED_METRICS))
        )
    explain = {
        "rate": _explain_rate,
        "count": _explain_count,
        "backlog": _explain_count,
        "percentile": _explain_percentile,
        "gap": _explain_gap,
    }[kind]
    return explain(ds, a, kind, max_segments, dimensions)


def _alert_fields(alert: Mapping[str, Any] | pd.Series, baseline_days: int) -> dict[str, Any]:
    """The alert's series and periods, validated."""
    out: dict[str, Any] = {}
    for name in _ALERT_FIELDS:
        value = alert.get(name) if hasattr(alert, "get") else None
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
            raise ParameterError(
                MSG_ALERT_FIELD.format(field=name, needed=", ".join(_ALERT_FIELDS)), key=name
            )
        out[name] = str(value)
    cur = _as_period((out["start_date"][:10], out["end_date"][:10]), "current")
    b0, b1 = alert.get("baseline_start"), alert.get("baseline_end")
    if b0 is not None and b1 is not None and not pd.isna(b0) and not pd.isna(b1) and str(b0):
        base = _as_period((str(b0)[:10], str(b1)[:10]), "baseline")
    else:
        base = m.Period(cur.start - timedelta(days=baseline_days), cur.start - timedelta(days=1))
    out["current"], out["baseline"] = _check_periods(base, cur)[::-1]
    out["where"] = None if out["dimension"] == "market" else {out["dimension"]: (out["segment"],)}
    return out


def _subject(a: Mapping[str, Any], label: str) -> str:
    """``"AI recall in SG for language ms"``."""
    where = "" if a["where"] is None else f" for {a['dimension']} {a['segment']}"
    return f"{label} in {a['market']}{where}"


def _window(a: Mapping[str, Any]) -> str:
    return f"{_fmt_period(a['current'])} against {_fmt_period(a['baseline'])}"


def _breakdown_dimensions(
    a: Mapping[str, Any], allowed: Sequence[str], defaults: Sequence[str], given: Any
) -> list[str]:
    """The dimensions to break down by: given or default, never the alert's own."""
    if a["where"] is not None and a["dimension"] not in allowed:
        raise QualityLabError(
            f"cannot break {a['metric']} down within {a['dimension']} {a['segment']}: "
            f"{a['metric']} is split by {', '.join(allowed)}"
        )
    dims = [d for d in (defaults if given is None else given) if d != a["dimension"]]
    bad = [d for d in dims if d not in allowed]
    if bad:
        raise ParameterError(
            f"unknown dimension {bad[0]!r} for {a['metric']}; choose from {', '.join(allowed)}",
            key="dimensions",
        )
    if not dims:
        raise QualityLabError(f"no dimension left to break {a['metric']} down by")
    return dims


def _segment_filter(t: ir.Table, where: Mapping[str, Sequence[str]] | None) -> ir.Table:
    if not where:
        return t
    cond = ibis.literal(True)
    for col, vals in where.items():
        cond = cond & t[col].cast("string").fill_null(MISSING).isin([str(v) for v in vals])
    return t.filter(cond)


def _n_segments(seg: pd.DataFrame) -> pd.Series:
    return seg.groupby("dimension", sort=False)["segment"].size()


def _dimension_summary(seg: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Per dimension, in `order`: the segments behind the change, if it is concentrated.

    ``seg`` has ``dimension, segment, explanatory_power, surprise, selected``
    and ``_share`` (the segment's share of the items). Two candidates per
    dimension: the selected set (the smallest set explaining
    :data:`_EP_THRESHOLD` of the change), unless it is the whole dimension,
    and the single segment with the largest excess of change over items. A
    candidate concentrates the change when it explains between
    :data:`_MIN_SET_EP` and :data:`_MAX_SET_EP` of it (beyond, other segments
    offset it: a replacement, such as volume moving to a new model version,
    rather than a cause) and at least :data:`_MIN_EXCESS` more of the change
    than of the items (a change spread in proportion to volume concentrates
    nowhere). ``_picked`` holds the segments named.
    """
    counts = _n_segments(seg)
    rows = []
    for d in order:
        g = seg[seg["dimension"] == d].sort_values(
            "explanatory_power", ascending=False, kind="stable", na_position="last"
        )
        sel = g[g["selected"]]
        ep = g["explanatory_power"].to_numpy(float)
        excess = ep - g["_share"].to_numpy(float)
        candidates = []
        if len(sel) and len(sel) < len(g):
            candidates.append(sel)
        if len(g) > 1 and np.isfinite(excess).any():
            candidates.append(g.iloc[[int(np.nanargmax(excess))]])
        picked, concentrated = (sel if len(sel) else g.head(1)), False
        for cand in candidates:
            c_ep = float(cand["explanatory_power"].sum())
            if _MIN_SET_EP <= c_ep <= _MAX_SET_EP and c_ep - cand["_share"].sum() >= _MIN_EXCESS:
                picked, concentrated = cand, True
                break
        rows.append(
            {
                "dimension": d,
                "explained": bool(len(sel)) and counts.get(d, 0) > 1,
                "concentrated": concentrated,
                "n_selected": len(picked) if concentrated else len(sel),
                "top_segment": picked.iloc[0]["segment"] if len(picked) else None,
                "explanatory_power": float(picked["explanatory_power"].sum()),
                "share_of_items": float(picked["_share"].sum()),
                "surprise": float(picked["surprise"].sum()),
                "_picked": list(picked["segment"]),
            }
        )
    out = pd.DataFrame(rows, columns=[*EXPLANATION_DIMENSION_COLUMNS[1:], "_picked"])
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def _top_of(
    dims: pd.DataFrame, seg: pd.DataFrame, *, noise: bool = False
) -> tuple[str | None, str | None, pd.DataFrame]:
    """(concentrating dimension, dimension shown, the segments named).

    The dimension shown is the best-ranked concentrating one, else the
    best-ranked with more than one segment (then its largest contributor is
    named). A change within sampling noise (`noise`) concentrates nowhere.
    """
    counts = _n_segments(seg)
    conc = dims[dims["concentrated"]] if not noise else dims.iloc[:0]
    top = str(conc.iloc[0]["dimension"]) if len(conc) else None
    ranked = [d for d in dims["dimension"] if counts.get(d, 0) > 1] or list(dims["dimension"])
    # with nothing concentrated, show a dimension whose segments are not offsetting
    # each other (a replacement), if there is one
    ep_max = seg.groupby("dimension")["explanatory_power"].max()
    plain = [d for d in ranked if ep_max.get(d, np.nan) <= _MAX_SET_EP]
    shown = top or (plain or ranked or [None])[0]
    g = seg[seg["dimension"] == shown].sort_values(
        "explanatory_power", ascending=False, kind="stable", na_position="last"
    )
    if top is None:
        return None, shown, g.head(1)
    names = dims.loc[dims["dimension"] == top, "_picked"].iloc[0]
    return top, shown, g[g["segment"].isin(names)]


def _table(seg: pd.DataFrame, shown: str | None, max_segments: int) -> pd.DataFrame:
    g = seg[seg["dimension"] == shown] if shown is not None else seg.iloc[:0]
    g = g.sort_values("share_of_change", ascending=False, kind="stable", na_position="last")
    return g[EXPLANATION_COLUMNS].head(max_segments).reset_index(drop=True)


def _names(segments: Sequence[Any]) -> str:
    names = [str(x) for x in segments]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _concentration(
    top: str | None,
    shown: str | None,
    picked: pd.DataFrame,
    noun: str,
    dims: Sequence[str],
    detail: str = "",
    *,
    noise: bool = False,
) -> str:
    """The clause naming the segment behind the change (`detail` about the first one)."""
    if picked.empty:
        return "no segment to compare"

    def pct(x: float) -> str:
        return f"{x:.0%}" if np.isfinite(x) else "an undefined share"

    ep = float(picked["explanatory_power"].sum())
    share = float(picked["_share"].sum())
    first = str(picked.iloc[0]["segment"])
    if noise:
        return (
            f"that is within sampling noise, so no segment is blamed (the largest share, "
            f"{pct(ep)}, is {shown} {first}, with {pct(share)} of the items{detail})"
        )
    if top is not None and len(picked) == 1:
        return (
            f"by {top}, {first} explains {pct(ep)} of the {noun} with {pct(share)} of the "
            f"items{detail}"
        )
    if top is not None:
        return (
            f"by {top}, {_names(picked['segment'])} together explain {pct(ep)} of the {noun} "
            f"with {pct(share)} of the items; {first}{detail}"
        )
    listed = ", ".join(dims[:-1]) + f" or {dims[-1]}" if len(dims) > 1 else dims[0]
    return (
        f"no {listed} concentrates it (the largest share, {pct(ep)}, is {shown} "
        f"{first}, with {pct(share)} of the items{detail})"
    )


def _explain_rate(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    spec = _METRICS[a["metric"]]
    allowed = _allowed_dimensions(spec)
    dims = _breakdown_dimensions(a, allowed, _default_dimensions(spec, a["where"]), given)
    res = decompose(
        ds,
        spec.name,
        a["market"],
        current=a["current"],
        baseline=a["baseline"],
        dimensions=dims,
        where=a["where"],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unchanged rate: explanatory power undefined
        rank = adtributor(res)
    raw = rank.segments
    seg = raw.rename(columns={"rate_base": "value_base", "rate_cur": "value_cur"})
    seg["share_of_change"] = raw["explanatory_power"]
    seg["_share"] = (raw["share_base"] + raw["share_cur"]) / 2.0
    scale = spec.scale
    for c in ("value_base", "value_cur", "contribution"):
        seg[c] = seg[c] * scale
    seg["change"] = seg["value_cur"] - seg["value_base"]
    summary = _dimension_summary(seg, rank.dimensions["dimension"].tolist())
    noise = not res.pvalue < _NOISE_ALPHA
    top, shown, picked = _top_of(summary, seg, noise=noise)
    noun = "rise" if res.estimate > 0 else "drop"
    detail = ""
    if len(picked):
        row = raw[(raw["dimension"] == shown) & (raw["segment"] == picked.iloc[0]["segment"])]
        detail = f": {_segment_rates(spec, row.iloc[0])}" if len(row) else ""
    if res.estimate == 0:
        sentence = (
            f"{_subject(a, spec.label)} did not change ({_pct(res.rate_base, spec)}, {_window(a)})."
        )
    else:
        sentence = (
            f"{_subject(a, spec.label)} {'rose' if res.estimate > 0 else 'fell'} "
            f"{_pp(res.estimate, signed=False, spec=spec)} ({_pct(res.rate_base, spec)} to "
            f"{_pct(res.rate_cur, spec)}, {_window(a)}; {_p(res.pvalue)}); "
            + _concentration(top, shown, picked, noun, res.dimensions, detail, noise=noise)
            + "."
        )
    return Explanation(
        metric=spec.name,
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=a["current"],
        baseline=a["baseline"],
        value_base=res.rate_base * scale,
        value_cur=res.rate_cur * scale,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=_change_sentences(res, _NOISE_ALPHA) if res.estimate != 0 else sentence,
        table=_table(seg, shown, max_segments),
        dimensions=summary[EXPLANATION_DIMENSION_COLUMNS],
        result=res,
        ranking=rank,
    )


def _additive_ranking(
    seg: pd.DataFrame, change: float, sums: np.ndarray, higher_is_better: bool, dims: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explanatory power, surprise, the selected sets and the dimension ranking.

    ``seg`` has ``dimension, segment, contribution`` and ``_share``; ``sums``
    the numerator and denominator of each row in each period (``num_base,
    num_cur, den_base, den_cur``), from which the surprise is computed as in
    :func:`adtributor`. Dimensions rank as there: those whose set reaches the
    threshold first, by surprise per segment of the set, then by fewer
    segments; dimensions with a single segment last.
    """
    spec = _RateMetric("", "", higher_is_better, "")
    out = _ep_and_surprise(seg.reset_index(drop=True), sums, spec, change, ["dimension"])
    out = _select(out, ["dimension"], _EP_THRESHOLD, _MIN_SEGMENT_EP)
    out["share_of_change"] = out["explanatory_power"]
    summary = _dimension_summary(out, dims)
    counts = _n_segments(out)
    summary["_single"] = summary["dimension"].map(counts).fillna(0) < 2
    per = summary["surprise"] / summary["n_selected"].clip(lower=1)
    summary["_key"] = -per.round(12)
    summary["_ex"] = ~summary["explained"]
    summary = summary.sort_values(["_single", "_ex", "_key", "n_selected"], kind="stable")
    summary["rank"] = np.arange(1, len(summary) + 1)
    return out, summary[[*EXPLANATION_DIMENSION_COLUMNS, "_picked"]].reset_index(drop=True)


def _open_items(
    ds: Dataset, a: Mapping[str, Any], t: ir.Table, periods: Sequence[m.Period]
) -> ir.Table:
    """Items open at the end of each period (created since the first one started)."""
    tzs = m._timezones(ds, a["market"])
    parts = []
    for i, p in enumerate(periods):
        end = ibis.literal(m._as_of(p, tzs, a["market"]))
        still = t.decided_at.isnull() | (t.decided_at >= end)
        parts.append(t.filter((t.created_at < end) & still).mutate(_period=ibis.literal(i)))
    return ibis.union(*parts, distinct=False)


def _explain_count(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    dims = _breakdown_dimensions(a, _DECISION_DIMENSIONS, DEFAULT_DIMENSIONS, given)
    base, cur = a["baseline"], a["current"]
    t = m.decisions_in_period(ds, market=a["market"], period=m.Period(base.start, cur.end))
    t = _segment_filter(t, a["where"])
    t = _open_items(ds, a, t, (base, cur)) if kind == "backlog" else _with_period(t, (base, cur))
    one = ibis.literal(1.0)
    t = t.mutate(_y=ibis.literal(0.0), _d=one, _w=one)
    agg = _aggregate(t, [(d,) for d in dims])
    what = "open items" if kind == "backlog" else "decisions"
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if kind == "count" and not (agg.loc[agg["_period"] == p, "n"] > 0).any():
            raise QualityLabError(
                f"no {what} in market {a['market']!r} in the {which} period "
                f"{_fmt_period(period)}{_where_text(a['where'], prefix=' for ')}"
            )
    wide = _wide(agg, ["_d0", "_s0"]).rename(columns={"_d0": "dimension", "_s0": "segment"})
    days = (1.0, 1.0) if kind == "backlog" else (float(base.days), float(cur.days))
    n0, n1 = wide["n_0"].to_numpy(float), wide["n_1"].to_numpy(float)
    seg = pd.DataFrame(
        {
            "dimension": wide["dimension"],
            "segment": wide["segment"],
            "value_base": n0 / days[0],
            "value_cur": n1 / days[1],
            "n_base": n0.astype("int64"),
            "n_cur": n1.astype("int64"),
        }
    )
    seg["change"] = seg["value_cur"] - seg["value_base"]
    seg["contribution"] = seg["change"]
    total0 = seg.groupby("dimension")["n_base"].transform("sum").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        seg["_share"] = np.where(total0 > 0, n0 / total0, 0.0)  # proportional change: EP = share
    first = seg[seg["dimension"] == dims[0]]
    v0, v1 = float(first["value_base"].sum()), float(first["value_cur"].sum())
    change = v1 - v0
    # surprise in the distribution of items between segments
    sums = np.column_stack([n0, n1, n0, n1])
    seg, ranking = _additive_ranking(seg, change, sums, False, dims)
    top, shown, picked = _top_of(ranking, seg)
    label = _LEVEL_LABELS[a["metric"]]
    unit = " open items" if kind == "backlog" else " a day"
    if change == 0:
        sentence = f"{_subject(a, label)} did not change ({v0:,.1f}{unit}, {_window(a)})."
    else:
        detail = ""
        if len(picked):
            r = picked.iloc[0]
            detail = f": {r['value_base']:,.1f} to {r['value_cur']:,.1f}{unit}"
        noun = "rise" if change > 0 else "drop"
        sentence = (
            f"{_subject(a, label)} {'rose' if change > 0 else 'fell'} from {v0:,.1f} to "
            f"{v1:,.1f}{unit} ({_window(a)}); "
            + _concentration(top, shown, picked, noun, dims, detail)
            + "."
        )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=base,
        value_base=v0,
        value_cur=v1,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=sentence,
        table=_table(seg, shown, max_segments),
        dimensions=ranking[EXPLANATION_DIMENSION_COLUMNS],
    )


def _percentiles(
    ds: Dataset, a: Mapping[str, Any], by: list[str], period: m.Period
) -> pd.DataFrame:
    """The alert's percentile per segment of `by` (restricted to the alert's segment)."""
    if a["where"] is not None:
        by = [a["dimension"], *by]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        om = m.operational_metrics(
            ds, market=a["market"], by=by, start=period.start, end=period.end
        )
    out = om[om["metric"].isin([a["metric"], "volume"])]
    if a["where"] is not None:
        out = out[out[a["dimension"]].astype(str) == a["segment"]]
    return out


def _explain_percentile(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    dims = _breakdown_dimensions(a, _DECISION_DIMENSIONS, DEFAULT_DIMENSIONS, given)
    base, cur = a["baseline"], a["current"]
    overall = {
        i: _percentiles(ds, a, [], p).set_index("metric")["value"]
        for i, p in enumerate((base, cur))
    }
    v0 = float(overall[0].get(a["metric"], np.nan))
    v1 = float(overall[1].get(a["metric"], np.nan))
    if not np.isfinite(v0):
        raise QualityLabError(
            f"{a['metric']} of the baseline {_fmt_period(base)} cannot be estimated in market "
            f"{a['market']!r}{_where_text(a['where'], prefix=' for ')} (too few answered items)"
        )
    # slow: answered after the baseline's percentile, or still pending and already older
    tzs = m._timezones(ds, a["market"])
    t = m.decisions_in_period(ds, market=a["market"], period=m.Period(base.start, cur.end))
    t = _with_period(_segment_filter(t, a["where"]), (base, cur))
    as_of = ibis.cases(
        *[
            (t._period == i, ibis.literal(m._as_of(p, tzs, a["market"])))
            for i, p in enumerate((base, cur))
        ],
        else_=ibis.null("timestamp"),
    )
    decided = t.decided_at.notnull() & (t.decided_at < as_of)
    secs = (epoch_seconds(t.decided_at) - epoch_seconds(t.created_at)).cast("float64")
    age = (epoch_seconds(as_of) - epoch_seconds(t.created_at)).cast("float64")
    t = t.mutate(_decided=decided, _secs=secs, _age=age)
    t = t.filter(t._decided | (t._age > v0))
    one = ibis.literal(1.0)
    t = t.mutate(_y=(t._decided & (t._secs > v0) | ~t._decided).cast("float64"), _d=one, _w=one)
    agg = _aggregate(t, [(d,) for d in dims])
    _check_nonempty(agg, _METRICS["sla_compliance"], a["market"], base, cur, a["where"])
    wide = _wide(agg, ["_d0", "_s0"])
    dec = _decompose_wide(wide, False, ["_d0"], "centered")
    dec = dec.rename(columns={"_d0": "dimension", "_s0": "segment"})
    first = dec[dec["dimension"] == dims[0]]
    slow0 = float(first["_num_base"].sum() / first["_den_base"].sum())
    slow1 = float(first["_num_cur"].sum() / first["_den_cur"].sum())
    den0, den1 = float(first["_den_base"].sum()), float(first["_den_cur"].sum())
    _, pval = _pooled_z(np.array([slow0]), np.array([den0]), np.array([slow1]), np.array([den1]))
    sums = dec[["_num_base", "_num_cur", "_den_base", "_den_cur"]].to_numpy(float)
    dec["_share"] = (dec["share_base"] + dec["share_cur"]) / 2.0
    seg, ranking = _additive_ranking(
        dec[["dimension", "segment", "contribution", "_share"]], slow1 - slow0, sums, False, dims
    )
    noise = not float(pval[0]) < _NOISE_ALPHA
    top, shown, picked = _top_of(ranking, seg, noise=noise)
    # the table: the percentile of each segment of the dimension shown, in both periods
    seg["value_base"] = np.nan
    seg["value_cur"] = np.nan
    seg["n_base"] = 0
    seg["n_cur"] = 0
    if shown is not None:
        for i, p in enumerate((base, cur)):
            pc = _percentiles(ds, a, [shown], p)
            pc = pc.assign(segment=pc[shown].astype("string").fillna(MISSING).astype(str))
            val = pc[pc["metric"] == a["metric"]].set_index("segment")["value"]
            vol = pc[pc["metric"] == "volume"].set_index("segment")["value"]
            mine = seg["dimension"] == shown
            col = ("value_base", "n_base") if i == 0 else ("value_cur", "n_cur")
            seg.loc[mine, col[0]] = seg.loc[mine, "segment"].map(val).astype(float)
            seg.loc[mine, col[1]] = seg.loc[mine, "segment"].map(vol).fillna(0).astype("int64")
    seg["change"] = seg["value_cur"] - seg["value_base"]
    label = _LEVEL_LABELS[a["metric"]]
    noun = "rise" if slow1 > slow0 else "drop"
    q = _QUANTILES[a["metric"]]
    picked = seg.loc[picked.index]
    detail = ""
    if len(picked):
        r = picked.iloc[0]
        if np.isfinite(r["value_base"]) or np.isfinite(r["value_cur"]):
            detail = f": its {a['metric'][-3:]} {_secs(r['value_base'])} to {_secs(r['value_cur'])}"
    moved = "rose" if v1 > v0 else "fell" if v1 < v0 else "stayed"
    sentence = (
        f"{_subject(a, label)} {moved} from {_secs(v0)} to {_secs(v1)} ({_window(a)}), "
        f"the items slower than the baseline's {_secs(v0)} going from {slow0:.0%} to "
        f"{slow1:.0%} (expected {1 - q:.0%}; {_p(float(pval[0]))}); "
        + _concentration(top, shown, picked, f"{noun} in slow items", dims, detail, noise=noise)
        + "."
    )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=base,
        value_base=v0,
        value_cur=v1,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=sentence,
        table=_table(seg, shown, max_segments),
        dimensions=ranking[EXPLANATION_DIMENSION_COLUMNS],
    )


def _secs(x: float) -> str:
    if not np.isfinite(x):
        return "(not reached)"
    return f"{x:,.0f} s" if x < 3600 else f"{x / 3600:,.1f} h"


def _explain_gap(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    from qualitylab.measure.reconcile import reporting_gap, reporting_gap_summary

    if a["dimension"] != "vendor":
        raise QualityLabError(
            f"reporting_gap is measured per vendor; the alert is on {a['dimension']}"
        )
    cur = a["current"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gaps = reporting_gap(ds, a["market"], start=cur.start - timedelta(days=6), end=cur.end)
    gaps = gaps[gaps["vendor"].astype(str) == a["segment"]]
    if gaps.empty:
        raise QualityLabError(
            f"no reported KPIs of vendor {a['segment']} in market {a['market']!r} in "
            f"{_fmt_period(cur)}"
        )
    pooled = reporting_gap_summary(gaps)
    weeks = gaps.groupby("kpi")["week"].nunique()
    seg = pd.DataFrame(
        {
            "dimension": "kpi",
            "segment": pooled["kpi"].astype(str),
            "value_base": pooled["measured"].astype(float),
            "value_cur": pooled["reported"].astype(float),
            "change": pooled["gap"].astype(float),
            "n_base": pooled["kpi"].map(weeks).fillna(0).astype("int64"),
            "n_cur": pooled["kpi"].map(weeks).fillna(0).astype("int64"),
            "contribution": np.nan,
            "share_of_change": np.nan,
            "selected": pooled["flagged"].astype(bool),
        }
    )
    seg["_abs"] = -seg["change"].abs()
    seg = seg.sort_values(["selected", "_abs"], ascending=[False, True], kind="stable")
    seg = seg.drop(columns="_abs").reset_index(drop=True)
    if seg.empty:
        raise QualityLabError(
            f"vendor {a['segment']} reported no rate KPI in market {a['market']!r} in "
            f"{_fmt_period(cur)}"
        )
    r = seg.iloc[0]
    spec = _METRICS.get(str(r["segment"]))
    level = (lambda x: _pct(x, spec)) if spec is not None else (lambda x: f"{x:,.3g}")
    change = _pp(r["change"], spec=spec) if spec is not None else f"{r['change']:+,.3g}"
    sentence = (
        f"Vendor {a['segment']} in {a['market']} reported {r['segment']} of "
        f"{level(r['value_cur'])} while QA measured {level(r['value_base'])} "
        f"({_fmt_period(cur)}, {int(r['n_cur'])} week(s)): a gap of {change}"
        + (", larger than sampling error explains" if r["selected"] else "")
        + (f", the largest of its {len(seg)} KPIs." if len(seg) > 1 else ".")
    )
    dims = pd.DataFrame(
        [
            {
                "rank": 1,
                "dimension": "kpi",
                "explained": bool(seg["selected"].any()),
                "n_selected": int(seg["selected"].sum()),
                "top_segment": str(r["segment"]),
                "explanatory_power": np.nan,
                "surprise": np.nan,
            }
        ]
    )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=a["baseline"],
        value_base=float(r["value_base"]),
        value_cur=float(r["value_cur"]),
        top_dimension="kpi" if r["selected"] else None,
        top_segment=str(r["segment"]),
        sentence=sentence,
        summary=sentence,
        table=seg[EXPLANATION_COLUMNS].head(max_segments),
        dimensions=dims,
    )
