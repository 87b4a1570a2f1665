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

The package, one job per module (the functions above are all importable
from ``qualitylab.rca``):

* :mod:`~qualitylab.detection.rca.vocabulary` — the metrics, their
  dimensions and the argument checks;
* :mod:`~qualitylab.detection.rca.engine` — the items of a metric and their
  sums per segment and period (the one engine query);
* :mod:`~qualitylab.detection.rca.decomposition` — :func:`shift_share`,
  :func:`decompose`;
* :mod:`~qualitylab.detection.rca.ranking` — :func:`adtributor`,
  :func:`jensen_shannon`;
* :mod:`~qualitylab.detection.rca.drilldown` — :func:`drill_down`;
* :mod:`~qualitylab.detection.rca.funnels` — :func:`funnel_limits`,
  :func:`funnel`, :func:`outlier_units`;
* :mod:`~qualitylab.detection.rca.anatomy` — :func:`error_anatomy`;
* :mod:`~qualitylab.detection.rca.context` — :func:`segment_context`;
* :mod:`~qualitylab.detection.rca.impact` — :func:`event_impact`;
* :mod:`~qualitylab.detection.rca.summary` — :func:`summarize`;
* :mod:`~qualitylab.detection.rca.alerts` — :func:`explain_alert`.
"""

from __future__ import annotations

from qualitylab.detection.rca.alerts import (
    EXPLAINED_METRICS,
    EXPLANATION_COLUMNS,
    EXPLANATION_DIMENSION_COLUMNS,
    MSG_ALERT_FIELD,
    MSG_NO_BREAKDOWN,
    Explanation,
    explain_alert,
)
from qualitylab.detection.rca.anatomy import ANATOMY_COLUMNS, error_anatomy
from qualitylab.detection.rca.context import CONTEXT_COLUMNS, segment_context
from qualitylab.detection.rca.decomposition import (
    DECOMPOSITION_COLUMNS,
    MIX_METHODS,
    TOTALS_COLUMNS,
    DecompositionResult,
    decompose,
    shift_share,
)
from qualitylab.detection.rca.drilldown import DRILL_DOWN_COLUMNS, drill_down
from qualitylab.detection.rca.funnels import (
    FUNNEL_COLUMNS,
    FunnelResult,
    funnel,
    funnel_limits,
    outlier_units,
)
from qualitylab.detection.rca.impact import EventImpactResult, event_impact
from qualitylab.detection.rca.ranking import (
    ADTRIBUTOR_DIMENSION_COLUMNS,
    ADTRIBUTOR_SEGMENT_COLUMNS,
    MSG_ZERO_CHANGE,
    AdtributorResult,
    adtributor,
    jensen_shannon,
)
from qualitylab.detection.rca.summary import summarize
from qualitylab.detection.rca.vocabulary import (
    DEFAULT_DIMENSIONS,
    METRIC_DIMENSIONS,
    MISSING,
    MSG_DIMENSION,
    MSG_EMPTY_PERIOD,
    MSG_METRIC,
    MSG_OVERLAP,
    RCA_METRICS,
    dimensions_of,
)

# The old module's __all__, plus its other public constants (error messages
# and column lists), which were importable from qualitylab.rca too.
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
    "EXPLANATION_DIMENSION_COLUMNS",
    "MSG_ALERT_FIELD",
    "MSG_DIMENSION",
    "MSG_EMPTY_PERIOD",
    "MSG_METRIC",
    "MSG_NO_BREAKDOWN",
    "MSG_OVERLAP",
    "MSG_ZERO_CHANGE",
    "TOTALS_COLUMNS",
]
