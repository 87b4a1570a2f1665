"""What a scan watches and returns: metric families, dimensions, columns, settings, messages.

The shared names of :mod:`qualitylab.detection.detect`: the metrics a scan can
watch and their families (rates, counts, response times), the dimensions it
slices by, the columns of ``alerts.csv`` and of the scan's side tables, the
false discovery rate of each market sensitivity, the smallest effect reported,
the names of the scan's rule-based detectors, and the error messages (module
constants so tests can assert on them).
"""

from __future__ import annotations

#: Columns of ``alerts.csv``, in order (the shared contract).
ALERT_COLUMNS = [
    "market",
    "metric",
    "dimension",
    "segment",
    "start_date",
    "end_date",
    "observed",
    "expected",
    "direction",
    "severity",
    "detector",
    "p_value",
]
#: Extra columns :func:`scan` adds after the contract ones.
EXTRA_COLUMNS = ["p_adjusted", "n", "impact", "group_id", "related", "events", "note"]
#: Columns every detector returns (some add more after these).
DETECTOR_COLUMNS = [
    "date",
    "observed",
    "expected",
    "lower",
    "upper",
    "statistic",
    "p_value",
    "flag",
]
#: Columns of ``alerts.attrs["skipped"]``.
SKIPPED_COLUMNS = ["market", "metric", "dimension", "segment", "reason", "n", "days"]
#: Columns of ``alerts.attrs["rebaselined"]`` (see :func:`scan`, ``rebaseline``).
REBASELINED_COLUMNS = ["market", "metric", "dimension", "segment", "from", "days", "rule", "note"]
#: Market ``alert_sensitivity`` -> false discovery rate of a scan.
SENSITIVITY_FDR = {"low": 0.01, "medium": 0.05, "high": 0.10}
#: Smallest deviation :func:`scan` reports: (absolute, relative). Rates: points
#: of proportion and change relative to the rarer outcome; counts and times:
#: relative change only.
MIN_EFFECT = {"rate": (0.01, 0.10), "level": (0.0, 0.20)}
# The model scores content before anyone moderates it: AI metrics are sliced by
# what describes the content, not by who (vendor, site) handled it.
CONTENT_DIMENSIONS = ("market", "queue", "language", "policy", "ai_model")
#: Dimensions a scan may slice by.
SCAN_DIMENSIONS = ("market", "vendor", "site", "queue", "language", "policy", "ai_model", "routing")

# Metric families: rates (events over a daily n), counts and response times.
RATE_QA = ("accuracy", "over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")
RATE_OPS = ("sla_compliance",)
RATE_WORKFLOW = ("auto_action_rate", "override_rate")
# ai_fnr (= 1 - ai_recall) and ai_f1 (not a proportion) are covered by ai_recall/ai_precision.
RATE_AI = ("ai_precision", "ai_recall", "ai_fpr")
COUNTS = ("volume",)
TIMES = ("response_p50", "response_p90", "response_p99")
#: Metrics :func:`scan` can watch, in the shared vocabulary.
SCAN_METRICS = (
    *COUNTS,
    *RATE_OPS,
    *TIMES,
    *RATE_QA,
    *RATE_WORKFLOW,
    *RATE_AI,
    "reporting_gap",
    "red_team_recall",
)
#: Metrics judged as rates (a binomial proportion with its daily n).
RATES = (*RATE_QA, *RATE_OPS, *RATE_WORKFLOW, *RATE_AI, "red_team_recall")

# Error messages are module constants so tests can assert on them.
MSG_NOT_1D = "{name} must be one-dimensional; got shape {shape}"
MSG_LENGTHS = "Found input variables with inconsistent lengths: {name}={a}, {other}={b}"
MSG_RANGE = "{name} must be in {interval}; got {value!r}"
MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_BASELINE = (
    "baseline must be an integer in [2, {n}] (leading points of the reference); got {value!r}"
)
MSG_FEW_POINTS = "{detector} needs at least {need} usable points{where}; got {got}"
MSG_UNKNOWN_METRIC = "scan cannot watch metric {metric!r}; choose from {allowed}"
MSG_UNKNOWN_DIMENSION = "unknown dimension {dim!r}; choose from {allowed}"
MSG_REBASELINE_KEY = (
    "rebaseline keys must be (metric, dimension, segment) tuples of strings; got {key!r}"
)
MSG_REBASELINE_DATE = (
    "rebaseline[{key!r}] must be a date or an ISO date string (YYYY-MM-DD); got {value!r}"
)
MSG_PERIOD = (
    "market {market}: the scan period {start}..{end} is empty or leaves no baseline; data "
    "covers {data_start}..{data_end} and baseline_days={baseline_days} (an explicit start needs "
    "7 days of data before it; leave start unset to scan the whole range)"
)

#: Detector name of days judged against a short history (young baselines).
YOUNG_BASELINE = "young_baseline"
#: Detector name of the alert on a segment that stopped with no event to explain it.
SEGMENT_STOPPED = "segment_stopped"
