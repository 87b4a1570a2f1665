"""The named warnings callers ignore match what the measuring functions really say."""

from __future__ import annotations

import re
import warnings

import pandas as pd

from qualitylab import metrics, open_dataset
from qualitylab.measure.notices import NO_AUDITS, NO_DECISIONS, NO_SLA, ignoring
from qualitylab.measure.survival import km_metrics


def _messages(fn, *ignored: str) -> list[str]:
    """The UserWarnings `fn` gives, with `ignored` patterns ignored inside the recording."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ignoring(*ignored):
            fn()
    return [str(w.message) for w in caught if w.category is UserWarning]


def test_no_decisions_and_no_audits_patterns_match_the_metrics_warnings(tiny):
    ds = open_dataset(tiny)
    empty = {"market": "SG", "by": ["vendor"], "start": "2020-01-01", "end": "2020-01-07"}
    said = _messages(lambda: metrics.operational_metrics(ds, **empty))
    assert any(re.match(NO_DECISIONS, s) for s in said), said
    assert _messages(lambda: metrics.operational_metrics(ds, **empty), NO_DECISIONS) == []
    said = _messages(lambda: metrics.qa_metrics(ds, **empty))
    assert any(re.match(NO_AUDITS, s) for s in said), said
    assert _messages(lambda: metrics.qa_metrics(ds, **empty), NO_AUDITS) == []


def test_no_sla_pattern_matches_the_response_time_warning():
    hist = pd.DataFrame(
        {"queue": ["q_without_sla"], "bin": [10], "le_sla": [False], "event": [True], "k": [3]}
    )
    run = lambda: km_metrics(hist, [], {"other_queue": 60.0}, 0.95)  # noqa: E731
    said = _messages(run)
    assert any(re.match(NO_SLA, s) for s in said), said
    assert not any(re.match(NO_SLA, s) for s in _messages(run, NO_SLA))
