"""Vendor-reported KPIs against measured ones."""

from __future__ import annotations

import pandas as pd
import pytest

from qualitylab import QualityLabError
from qualitylab.reconcile import RECONCILE_COLUMNS, reporting_gap, reporting_gap_summary
from qualitylab.sources import open_dataset
from tests.conftest import tiny_tables, write_tables


@pytest.fixture(scope="module")
def gaps(small_data):
    return reporting_gap(open_dataset(small_data), "SG")


def test_columns_and_gap_definition(gaps):
    assert list(gaps.columns) == RECONCILE_COLUMNS
    ok = gaps.dropna(subset=["measured"])
    assert (ok.gap == ok.reported - ok.measured).all()


def test_planted_reporting_gap_is_found(small_data, gaps):
    inc = pd.read_csv(small_data / "incidents.csv")
    planted = inc[inc.metric == "reporting_gap"].iloc[0]
    recent = gaps[pd.to_datetime(gaps.week) >= pd.Timestamp(planted.start_date)]
    summary = reporting_gap_summary(recent)
    flagged = summary[summary.flagged]
    assert (planted.market, planted.segment, "accuracy") in set(
        zip(flagged.market, flagged.vendor, flagged.kpi, strict=True)
    )
    assert (summary[summary.flagged].gap > 0).all()  # reported higher than measured


def test_honest_vendor_is_not_flagged_before_the_incident(small_data, gaps):
    inc = pd.read_csv(small_data / "incidents.csv")
    planted = inc[inc.metric == "reporting_gap"].iloc[0]
    before = gaps[pd.to_datetime(gaps.week) < pd.Timestamp(planted.start_date)]
    summary = reporting_gap_summary(before)
    assert not summary[summary.kpi == "accuracy"].flagged.any()


def test_volume_gap_is_exact(gaps):
    vol = gaps[gaps.kpi == "volume"].dropna(subset=["measured"])
    assert (vol.flagged == ((vol.gap.abs() / vol.measured) > 0.01)).all()


def test_missing_table_is_a_clear_error(tmp_path):
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with pytest.raises(QualityLabError, match="vendor_reported is not in the dataset"):
        reporting_gap(ds, "SG")


def _with_reports(tmp_path, weeks):
    tables = tiny_tables()  # 6 SG decisions on Monday 2026-03-02
    tables["vendor_reported"] = pd.DataFrame(
        {
            "week_start": pd.to_datetime(weeks).date,
            "market": "SG",
            "vendor": "VendorA",
            "metric": "volume",
            "value": 3.0,
        }
    )
    return open_dataset(write_tables(tmp_path / "d", tables))


def test_period_without_reports_is_one_error_naming_it(tmp_path):
    # Issue #14: used to be min() of an empty sequence (ValueError).
    ds = _with_reports(tmp_path, ["2026-03-02", "2026-03-09"])
    with pytest.raises(QualityLabError, match=r"market SG in weeks 2026-04-06\.\.2026-04-19"):
        reporting_gap(ds, "SG", start="2026-04-06", end="2026-04-19")


def test_reported_week_without_decisions_is_measured_as_nothing(tmp_path):
    ds = _with_reports(tmp_path, ["2026-03-02", "2026-03-09"])
    gaps = reporting_gap(ds, "SG").set_index("week")
    first, second = pd.Timestamp("2026-03-02").date(), pd.Timestamp("2026-03-09").date()
    assert gaps.loc[first, "measured"] == 3.0 and gaps.loc[first, "gap"] == 0.0
    assert not gaps.loc[first, "flagged"]
    assert pd.isna(gaps.loc[second, "measured"])  # no decisions that week: nothing measured


def _audited_vendors(tmp_path, errors: list[int], n: int, reported: float):
    """One vendor-week per entry of `errors`: n audits, that many wrong, reporting `reported`."""
    t0 = pd.Timestamp("2026-03-03 04:00", tz="UTC")
    vendor = [f"V{v}" for v, _ in enumerate(errors) for _ in range(n)]
    wrong = [i < e for e in errors for i in range(n)]
    ids = [f"d{i}" for i in range(len(vendor))]
    decisions = pd.DataFrame(
        {
            "decision_id": ids,
            "created_at": t0,
            "decided_at": t0 + pd.Timedelta(minutes=1),
            "market": "SG",
            "vendor": vendor,
            "site": "S1",
            "queue": "live_comment",
            "language": "en",
            "moderator_id": "m1",
            "routing": "human",
            "action": "warn",
            "policy": "spam",
            "ai_model": None,
            "ai_score": float("nan"),
            "ai_policy": None,
        }
    )
    audits = pd.DataFrame(
        {
            "audit_id": [f"a{i}" for i in range(len(ids))],
            "decision_id": ids,
            "audited_at": t0 + pd.Timedelta(hours=1),
            "qa_source": "internal",
            "auditor_id": "q1",
            "qa_action": ["no_action" if w else "warn" for w in wrong],
            "qa_policy": ["none" if w else "spam" for w in wrong],
            "sample_weight": 1.0,
        }
    )
    reported_rows = pd.DataFrame(
        {
            "week_start": pd.Timestamp("2026-03-02").date(),
            "market": "SG",
            "vendor": [f"V{v}" for v in range(len(errors))],
            "metric": "accuracy",
            "value": reported,
        }
    )
    tables = {"decisions": decisions, "qa_audits": audits, "vendor_reported": reported_rows}
    return open_dataset(write_tables(tmp_path / "gap", tables))


def test_rate_gap_is_the_score_test_consistent_with_the_interval(tmp_path):
    # Issue #17: the Wald test with se = half-width / z rejected a true 98% in
    # 17% of vendor-weeks with 100 audits (a sample with no error made the
    # interval [0.963, 1] and the reported 0.98 "significant" although inside it).
    from statsmodels.stats.proportion import proportion_confint, proportions_ztest

    errors, n, r = [0, 1, 2, 4, 6, 9], 100, 0.98
    gaps = reporting_gap(_audited_vendors(tmp_path, errors, n, r), "SG")
    acc = gaps[gaps.kpi == "accuracy"].sort_values("vendor")
    for e, (_, row) in zip(errors, acc.iterrows(), strict=True):
        _, want = proportions_ztest(n - e, n, value=r, prop_var=r)
        assert row.p_value == pytest.approx(want, rel=1e-6)
        lo, hi = proportion_confint(n - e, n, alpha=0.05, method="wilson")
        assert (row.p_value >= 0.05) == (lo <= r <= hi)
    assert acc.iloc[0].p_value > 0.05  # no error in 100 audits is consistent with 98%
