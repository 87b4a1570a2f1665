"""Root-cause analysis: which segments explain a change in a rate metric.

(Being split into modules, issue #21; for now everything lives in
:mod:`qualitylab.detection.rca.alerts`.)
"""

from qualitylab.detection.rca.alerts import *  # noqa: F403
from qualitylab.detection.rca.alerts import (  # noqa: F401
    EXPLANATION_DIMENSION_COLUMNS,
    MSG_ALERT_FIELD,
    MSG_DIMENSION,
    MSG_EMPTY_PERIOD,
    MSG_METRIC,
    MSG_NO_BREAKDOWN,
    MSG_OVERLAP,
    MSG_ZERO_CHANGE,
    TOTALS_COLUMNS,
    __all__,
)
