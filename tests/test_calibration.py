"""Calibration session summaries."""

from __future__ import annotations

import pytest

from qualitylab import QualityLabError
from qualitylab.calibration import calibration_summary
from qualitylab.sources import open_dataset
from tests.conftest import tiny_tables, write_tables


@pytest.fixture(scope="module")
def summary(small_data):
    return calibration_summary(open_dataset(small_data), "SG", n_boot=100)


def test_sessions_have_agreement_with_intervals(summary):
    s = summary.sessions
    assert len(s) >= 2
    assert ((s.alpha_ci_low <= s.alpha) & (s.alpha <= s.alpha_ci_high)).all()
    assert s.n_raters.min() >= 3


def test_alpha_matches_the_krippendorff_package(small_data, summary):
    import krippendorff
    import numpy as np
    import pandas as pd

    cal = pd.read_parquet(small_data / "calibration.parquet")
    sid = summary.sessions.session_id.iloc[0]
    g = cal[cal.session_id == sid]
    codes = {lab: i for i, lab in enumerate(sorted(g.label.unique()))}
    wide = g.assign(code=g.label.map(codes)).pivot(
        index="rater_id", columns="case_id", values="code"
    )
    expected = krippendorff.alpha(wide.to_numpy(float), level_of_measurement="nominal")
    assert np.isfinite(expected)
    assert summary.sessions.alpha.iloc[0] == pytest.approx(expected, abs=1e-9)


def test_calibration_score_per_group_and_rater(summary):
    g = summary.groups.set_index("rater_group")
    assert g.loc["policy", "value"] >= g["value"].median()  # the policy team knows its policy
    assert (
        (summary.raters.ci_low <= summary.raters.value)
        & (summary.raters.value <= summary.raters.ci_high)
    ).all()


def test_confusions_are_disagreements(summary):
    c = summary.confusions
    assert (c.expected_label != c.label).all()
    assert c["count"].is_monotonic_decreasing


def test_missing_table(tmp_path):
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with pytest.raises(QualityLabError, match="calibration is not in the dataset"):
        calibration_summary(ds, "SG")


def test_market_or_period_without_sessions_is_one_error_naming_them(small_data):
    # Issue #14: the error names the market and the period that have no sessions.
    ds = open_dataset(small_data)
    with pytest.raises(QualityLabError, match=r"^no calibration sessions for market JP$"):
        calibration_summary(ds, "JP")
    with pytest.raises(QualityLabError, match=r"market SG in 2027-01-01\.\.2027-01-31$"):
        calibration_summary(ds, "SG", start="2027-01-01", end="2027-01-31")
