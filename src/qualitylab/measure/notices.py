"""The measurement layer's expected warnings, by name, and a way to ignore only those.

A measuring function warns when a period has nothing to measure (no decisions, no
audited decisions) or when a queue has no SLA. A caller that reports the same fact
itself (a gap table without the week, an explanation that says "not reached") can
ignore exactly these warnings with :func:`ignoring`, and nothing else.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["NO_AUDITS", "NO_DECISIONS", "NO_SLA", "ignoring"]

#: ``metrics.operational_metrics`` (and the scorecard) for a period without decisions.
NO_DECISIONS = r"no decisions.*operational metrics are empty"
#: ``metrics.qa_metrics`` (and the scan's QA series) for a period without audits.
NO_AUDITS = r"no audited decisions in the period"
#: response-time metrics and root-cause analysis for queues missing from ``sla_seconds``.
NO_SLA = r"no SLA configured for queue"


@contextmanager
def ignoring(*patterns: str) -> Iterator[None]:
    """Ignore the ``UserWarning`` s whose message matches one of `patterns`, nothing else.

    Examples
    --------
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     with ignoring(NO_AUDITS):
    ...         warnings.warn("no audited decisions in the period; QA metrics are empty")
    ...         warnings.warn("something else")
    >>> [str(w.message) for w in caught]
    ['something else']
    """
    with warnings.catch_warnings():
        for pattern in patterns:
            warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
        yield
