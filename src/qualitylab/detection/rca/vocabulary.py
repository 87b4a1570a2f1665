"""What root-cause analysis accepts: its rate metrics, their dimensions, its argument checks.

Every rate metric's definition (:class:`RateMetric`: where its items come
from, which direction is better, how it reads in a sentence), the
dimensions each can be split by, the label of a null segment
(:data:`MISSING`), the error messages, and the argument checks and small
formatters the other rca modules share.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError
from qualitylab.measure import scope
from qualitylab.measure.scope import Period

# The user-facing names; the checks and formatters are public for the sibling
# modules only.
__all__ = [
    "DEFAULT_DIMENSIONS",
    "METRIC_DIMENSIONS",
    "MISSING",
    "MSG_DIMENSION",
    "MSG_EMPTY_PERIOD",
    "MSG_METRIC",
    "MSG_OVERLAP",
    "RCA_METRICS",
    "dimensions_of",
]


@dataclass(frozen=True)
class RateMetric:
    """A rate metric rca explains: where its items come from and how it reads."""

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
METRIC_SPECS: dict[str, RateMetric] = {
    "accuracy": RateMetric("accuracy", "audits", True, "Accuracy", "audited decisions"),
    "over_enforcement_rate": RateMetric(
        "over_enforcement_rate", "audits", False, "Over-enforcement rate", "audited decisions"
    ),
    "under_enforcement_rate": RateMetric(
        "under_enforcement_rate", "audits", False, "Under-enforcement rate", "audited decisions"
    ),
    "wrong_policy_rate": RateMetric(
        "wrong_policy_rate", "audits", False, "Wrong-policy rate", "audited decisions"
    ),
    "sla_compliance": RateMetric("sla_compliance", "decisions", True, "SLA compliance"),
    "auto_action_rate": RateMetric("auto_action_rate", "decisions", False, "Auto-action rate"),
    "override_rate": RateMetric("override_rate", "decisions", False, "Override rate"),
    "ai_recall": RateMetric(
        "ai_recall", "scored", True, "AI recall", f"{_SCORED} that QA found violating"
    ),
    "ai_fnr": RateMetric(
        "ai_fnr", "scored", False, "AI false negative rate", f"{_SCORED} that QA found violating"
    ),
    "ai_precision": RateMetric(
        "ai_precision", "scored", True, "AI precision", f"{_SCORED} and flagged"
    ),
    "ai_fpr": RateMetric(
        "ai_fpr",
        "scored",
        False,
        "AI false positive rate",
        f"{_SCORED} that QA found not violating",
    ),
    "qa_alignment": RateMetric(
        "qa_alignment", "qa_pairs", True, "QA alignment", "decisions audited by both QA sources"
    ),
    "escalation_rate": RateMetric(
        "escalation_rate", "escalations", False, "Escalation rate", "decisions", scale=1000.0
    ),
    "red_team_recall": RateMetric(
        "red_team_recall", "red_team", True, "Red-team recall", "violating red-team items"
    ),
}
#: Rate metrics the root-cause functions accept.
RCA_METRICS = tuple(METRIC_SPECS)


DECISION_DIMENSIONS = (
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
ESCALATION_DIMENSIONS = ("market", "vendor", "queue")
_RED_TEAM_DIMENSIONS = ("market", "language", "policy", "attack", "ai_model")
#: Dimensions :func:`decompose` splits by unless told otherwise.
DEFAULT_DIMENSIONS = ("vendor", "site", "queue", "language", "policy", "routing", "ai_model")
#: Default dimensions of the metrics that are not sliced by DEFAULT_DIMENSIONS: the
#: model scores content before anyone handles it (as the alert scan slices it), and
#: escalations and red-team items carry only these columns.
METRIC_DIMENSIONS: dict[str, tuple[str, ...]] = {
    **{
        name: ("queue", "language", "policy", "ai_model")
        for name in METRIC_SPECS
        if name[:3] == "ai_"
    },
    "escalation_rate": ("vendor", "queue"),
    "red_team_recall": ("language", "policy", "attack", "ai_model"),
}
#: Segment label for a null dimension value (e.g. ``moderator_id`` of ``ai_auto`` items).
MISSING = "(missing)"


# Error messages are module constants so tests can assert on them.
MSG_METRIC = "metric must be one of {allowed}; got {value!r}"
MSG_DIMENSION = "unknown dimension {value!r} for metric {metric!r}; choose from {allowed}"
MSG_OVERLAP = "baseline {baseline} and current {current} periods overlap; they must be disjoint"
MSG_EMPTY_PERIOD = "no {what} for {metric} in market {market!r} in the {which} period {period}"


# --------------------------------------------------------------------------- #
# validation helpers
# --------------------------------------------------------------------------- #
def check_metric(metric: object) -> RateMetric:
    """The :class:`RateMetric` named `metric` (a ParameterError otherwise)."""
    if not isinstance(metric, str) or metric not in METRIC_SPECS:
        raise ParameterError(MSG_METRIC.format(allowed=RCA_METRICS, value=metric), key="metric")
    return METRIC_SPECS[metric]


def allowed_dimensions(spec: RateMetric) -> tuple[str, ...]:
    """The dimensions the metric's items can be split by."""
    if spec.source in ("audits", "scored"):
        return (*DECISION_DIMENSIONS, *_AUDIT_DIMENSIONS)
    if spec.source == "escalations":
        return ESCALATION_DIMENSIONS
    if spec.source == "red_team":
        return _RED_TEAM_DIMENSIONS
    return DECISION_DIMENSIONS


def dimensions_of(metric: str) -> tuple[str, ...]:
    """The dimensions a rate metric can be split by (:func:`decompose`, :func:`outlier_units`).

    Examples
    --------
    >>> dimensions_of("escalation_rate")
    ('market', 'vendor', 'queue')
    >>> "moderator_id" in dimensions_of("ai_recall")
    True
    """
    return allowed_dimensions(check_metric(metric))


def default_dimensions(spec: RateMetric, where: Mapping[str, Any] | None) -> list[str]:
    """The metric's default dimensions, less those a `where` filter fixes."""
    dims = METRIC_DIMENSIONS.get(spec.name, DEFAULT_DIMENSIONS)
    return [d for d in dims if d not in (where or {})]


def check_dimensions(dimensions: Sequence[str] | str, spec: RateMetric) -> list[str]:
    """`dimensions` as a list: at least one, no repeats, each allowed for the metric."""
    dims = [dimensions] if isinstance(dimensions, str) else list(dimensions)
    allowed = allowed_dimensions(spec)
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


def as_period(value: object, name: str) -> Period:
    """A :class:`Period` from a Period or a (start, end) pair of dates or ISO strings."""
    if isinstance(value, Period):
        return value
    if isinstance(value, str) or not isinstance(value, Sequence) or len(value) != 2:
        raise ParameterError(
            f"{name} must be a (start, end) pair of dates or ISO strings; got {value!r}", key=name
        )
    start, end = scope.as_date(value[0]), scope.as_date(value[1])
    if start is None or end is None:
        raise ParameterError(f"{name} needs both a start and an end; got {value!r}", key=name)
    if end < start:
        raise ParameterError(f"{name} ends ({end}) before it starts ({start})", key=name)
    return Period(start, end)


def check_periods(baseline: object, current: object) -> tuple[Period, Period]:
    """The baseline and current periods, which must not overlap."""
    base = as_period(baseline, "baseline")
    cur = as_period(current, "current")
    if base.start <= cur.end and cur.start <= base.end:
        raise ParameterError(
            MSG_OVERLAP.format(baseline=fmt_period(base), current=fmt_period(cur)),
            key="current",
        )
    return base, cur


def check_unit_interval(value: float, name: str, *, closed: bool = False) -> float:
    """`value` as a float in (0, 1), or in [0, 1] when `closed`."""
    try:
        v = float(value)
        ok = (0.0 <= v <= 1.0) if closed else (0.0 < v < 1.0)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ParameterError(f"{name} must be in {interval}; got {value!r}", key=name)
    return v


def check_qa_source(qa_source: object) -> str | None:
    """`qa_source` when it is ``"internal"``, ``"vendor"`` or None."""
    if qa_source not in (None, "internal", "vendor"):
        raise ParameterError(
            f"qa_source must be 'internal', 'vendor' or None; got {qa_source!r}", key="qa_source"
        )
    return qa_source  # type: ignore[return-value]


def fmt_period(p: Period) -> str:
    """A period as ``2026-11-02..2026-11-08``."""
    return f"{p.start.isoformat()}..{p.end.isoformat()}"


def resolve_confidence(ds: Dataset, market: str | None, confidence_level: float | None) -> float:
    """The confidence level given (checked), else the market's parameter."""
    if confidence_level is None:
        return scope.confidence(ds, market)
    return check_unit_interval(confidence_level, "confidence_level")


def where_text(where: Mapping[str, Sequence[str]] | None, *, prefix: str = "") -> str:
    """``"vendor VendorC"`` (or ``"vendor VendorA or VendorB"``) for a segment filter."""
    if not where:
        return ""
    parts = [f"{k} {' or '.join(str(x) for x in v)}" for k, v in where.items()]
    return prefix + ", ".join(parts)
