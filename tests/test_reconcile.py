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
