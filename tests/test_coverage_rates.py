"""Coverage of the rate intervals (issue #17): the studies of benchmarks/coverage_rates.py.

Each study runs with a few hundred replicates on its designs; a broken
interval (wrong z, wrong variance, unweighted estimate) moves the pooled
coverage far outside the band. Designs whose interval is known to stay off
(reasons in benchmarks/results/coverage.md) are checked against their own
band where it matters, and all rows must have a reason when they are off.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import coverage_rates as cr  # noqa: E402

REPLICATES = 200


def _check(rows, low=0.91, high=0.99):
    cov = [r for r in rows if r.nominal == 0.95]
    assert cov, "no coverage rows"
    for r in cov:
        assert r.replicates >= 0.9 * REPLICATES, r
        assert np.isfinite(r.observed) and np.isfinite(r.mean_width), r
        # every row off by more than 1.5 pp says why
        assert r.ok or r.reason, r
    pooled = np.mean([r.observed for r in cov])
    assert low <= pooled <= high, [(r.interval, r.design, r.observed) for r in cov]
    return cov


def test_wilson_coverage():
    rows = _check(cr.study_wilson(REPLICATES, 1))
    assert len(rows) == len(cr.WILSON_DESIGNS)
    for r in rows:
        assert 0.88 <= r.observed <= 1.0, r


def test_newcombe_coverage():
    rows = _check(cr.study_newcombe(REPLICATES, 2))
    for r in rows:
        assert 0.88 <= r.observed <= 1.0, r


def test_design_weighted_coverage():
    rows = cr.study_design(REPLICATES, 3)
    cov = _check([r for r in rows if "qa_alignment" not in r.interval])
    two_queue = [r for r in cov if "accuracy" in r.interval and "two queues" in r.design]
    assert len(two_queue) == 1 and 0.92 <= two_queue[0].observed <= 0.98
    # the change test's level on vendor pairs of one design (a true null)
    levels = [r for r in rows if r.nominal == 0.05]
    assert levels and all(0.0 <= r.observed <= 0.2 for r in levels)
    # qa_alignment: with equal weights it is the plain share of agreeing double audits
    align = [r for r in rows if "qa_alignment" in r.interval]
    assert len(align) == len(cr.ALIGN_DESIGNS)
    equal = [r for r in align if r.design.startswith("equal")]
    assert 0.91 <= equal[0].observed <= 0.99, equal


def test_ai_coverage():
    rows = _check(cr.study_ai(REPLICATES, 4))
    assert {r.interval.split()[-1] for r in rows} == {"ai_precision", "ai_recall", "ai_fpr"}
    for r in rows:
        assert 0.85 <= r.observed <= 1.0, r


def test_a_broken_interval_fails(monkeypatch):
    """With z for 80% instead of 95% the Wilson and design-weighted checks fail."""
    import qualitylab.stats as st

    monkeypatch.setattr(st, "_z", lambda cl: 1.2816)
    with pytest.raises(AssertionError):
        test_wilson_coverage()
    with pytest.raises(AssertionError):
        test_newcombe_coverage()


def test_a_biased_estimate_fails(monkeypatch):
    """qa_metrics without the weights (unweighted share, Wilson) fails the two-queue check."""
    import qualitylab.metrics as qm

    real = qm.qa_metrics
    two_queue = [cr.QA_DESIGNS[1]]  # unweighted accuracy 0.863 in expectation, truth 0.919
    rows = cr.study_design(REPLICATES, 3, designs=two_queue, align=())
    assert 0.92 <= rows[0].observed <= 0.98, rows[0]  # the check below, unbroken
    monkeypatch.setattr(qm, "qa_metrics", lambda ds, **kw: real(ds, weighted=False, **kw))
    rows = cr.study_design(REPLICATES, 3, designs=two_queue, align=())
    assert "accuracy" in rows[0].interval and rows[0].observed < 0.6, rows[0]
