"""Fast versions of the operational coverage studies (issue #17).

``benchmarks/coverage_ops.py`` runs each study at 2,000 replicates for the
results file; here each runs at about 200 replicates on one or two of its
designs, and the observed coverage (or a test's level) must sit in a band
that a broken interval cannot reach. The bands follow the 2,000-replicate
results (``benchmarks/coverage.py --only km,agreement,f1,forecast,reporting_gap``) with about three Monte Carlo
standard errors of room.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import coverage_ops as co  # noqa: E402

REPS = 200


def _by_interval(rows):
    return {(r.interval, r.design.split(";")[0]): r for r in rows}


def test_km_percentiles_cover(monkeypatch):
    monkeypatch.setattr(co, "KM_TIMES", co.KM_TIMES[:1])
    monkeypatch.setattr(co, "KM_SIZES", (100,))
    rows = co.study_km(REPS, 1)
    assert len(rows) == 4
    for r in rows:
        assert r.replicates == REPS
        assert 0.88 <= r.observed <= 0.995, r


def test_agreement_intervals_cover(monkeypatch):
    monkeypatch.setattr(co, "AGREEMENT_DESIGNS", co.AGREEMENT_DESIGNS[1:2])  # 3 x 100
    monkeypatch.setattr(co, "ALPHA_BOOT", 300)  # the product uses 1000; a smoke check here
    rows = co.study_agreement(REPS, 2)
    assert [r.interval for r in rows] == ["fleiss_kappa", "gwet_ac1", "krippendorff_alpha"]
    for r in rows:
        assert 0.89 <= r.observed <= 0.99, r
        assert 0.8 <= r.mean_width / r.spread <= 1.25, r  # the width matches the spread


def test_f1_bootstrap_covers(monkeypatch):
    monkeypatch.setattr(co, "F1_DESIGNS", (co.F1_DESIGNS[1], co.F1_DESIGNS[3]))
    for r in co.study_f1(REPS, 3):
        assert 0.89 <= r.observed <= 0.99, r


def test_forecast_intervals_cover_their_level():
    rows = _by_interval(co.study_forecast(REPS, 4))
    for design in ("mean 40/h, NB alpha 0.05", "mean 4/h, NB alpha 0.1"):
        for level in (0.8, 0.95):
            r = rows[(f"backtest seasonal_glm {level:.0%} prediction interval", design)]
            assert r.replicates >= REPS and r.nominal == level
            assert level - 0.06 <= r.observed <= level + 0.08, r


def test_reporting_gap_test_holds_its_level(monkeypatch):
    # 98% accuracy, 100 audits: the former Wald test rejected 13% of true reports
    monkeypatch.setattr(co, "GAP_DESIGNS", (co.GAP_DESIGNS[3],))
    (r,) = co.study_reporting_gap(2 * REPS, 5)
    assert r.replicates == 2 * REPS and r.nominal == 0.05
    assert r.observed <= 0.09, r


@pytest.mark.parametrize("accuracy, n", [(0.98, 100), (0.95, 50), (0.9, 200)])
def test_exact_level_of_the_score_test(accuracy, n):
    score, wald = co.exact_levels(accuracy, n)
    assert 0.02 <= score <= 0.06
    assert wald > score
