"""The scorecard: KPIs with targets, status and change."""

from __future__ import annotations

import numpy as np
import pytest

from qualitylab.scorecard import SCORECARD_COLUMNS, scorecard, status_against_target
from qualitylab.sources import open_dataset


@pytest.fixture(scope="module")
def sc_vendor(small_data):
    return scorecard(
        open_dataset(small_data), "SG", by=["vendor"], start="2026-10-26", end="2026-11-22"
    )


def test_columns_and_grain(sc_vendor):
    assert list(sc_vendor.columns) == ["market", "vendor", *SCORECARD_COLUMNS]
    assert set(sc_vendor.market) == {"SG"}
    assert {"volume", "sla_compliance", "accuracy", "override_rate"} <= set(sc_vendor.metric)


def test_status_follows_interval_and_target(sc_vendor):
    for r in sc_vendor.dropna(subset=["target", "value"]).itertuples():
        assert r.status == status_against_target(r.value, r.ci_low, r.ci_high, r.target, r.metric)
    acc = sc_vendor[sc_vendor.metric == "accuracy"]
    assert (acc.target == 0.95).all()
    assert set(sc_vendor.status) <= {"green", "amber", "red", "na"}


def test_change_against_previous_period(sc_vendor):
    row = sc_vendor[(sc_vendor.metric == "accuracy")].iloc[0]
    assert row.delta == pytest.approx(row.value - row.prev_value)
    assert 0 <= row.p_value <= 1
    ok = sc_vendor.p_value.notna()
    assert (sc_vendor.p_adjusted[ok] >= sc_vendor.p_value[ok] - 1e-12).all()


def test_previous_period_is_computed_the_same_way(small_data, sc_vendor):
    ds = open_dataset(small_data)
    prev = scorecard(ds, "SG", by=["vendor"], start="2026-09-28", end="2026-10-25", compare=False)
    a = sc_vendor.set_index(["vendor", "metric"])["prev_value"]
    b = prev.set_index(["vendor", "metric"])["value"]
    common = a.index.intersection(b.index)
    np.testing.assert_allclose(a[common].to_numpy(float), b[common].to_numpy(float))


def test_status_examples():
    # Higher is better: interval wholly above → green; straddles → amber; below → red.
    assert status_against_target(0.97, 0.96, 0.98, 0.95, "accuracy") == "green"
    assert status_against_target(0.95, 0.93, 0.97, 0.95, "accuracy") == "amber"
    assert status_against_target(0.90, 0.88, 0.92, 0.95, "accuracy") == "red"
    # Lower is better for error rates.
    assert status_against_target(0.01, 0.005, 0.02, 0.03, "over_enforcement_rate") == "green"
    assert status_against_target(np.nan, np.nan, np.nan, 0.95, "accuracy") == "na"
    assert status_against_target(0.9, np.nan, np.nan, np.nan, "volume") == "na"


def test_whole_data_range_leaves_prev_columns_empty(small_data):
    # Issue #14: over the data's whole range the previous period has no rows;
    # the scorecard used to crash (pd.concat of no parts) instead of leaving
    # prev_* empty.
    import pandas as pd

    from qualitylab.metrics import resolve_period
    from qualitylab.params import load_parameters

    ds = open_dataset(small_data)
    whole = resolve_period(ds, market="SG", start=None, end=None)
    sc = scorecard(ds, "SG", by=["vendor"], start=whole.start, end=whole.end)
    assert sc.attrs["period"] == (whole.start.isoformat(), whole.end.isoformat())
    assert sc[["prev_value", "delta", "p_value", "p_adjusted"]].isna().all().all()
    assert any("previous period" in note for note in sc.attrs["notes"])
    # the current values are those of the same period without comparison
    alone = scorecard(ds, "SG", by=["vendor"], start=whole.start, end=whole.end, compare=False)
    pd.testing.assert_frame_equal(
        sc[["vendor", "metric", "value", "n", "status"]],
        alone[["vendor", "metric", "value", "n", "status"]],
    )
    # and volume per vendor is the plain count of the market's decisions
    dec = pd.read_parquet(small_data / "decisions")
    dec = dec[dec.market == "SG"]
    counts = dec.groupby("vendor").size()
    vol = sc[sc.metric == "volume"].set_index("vendor")["value"]
    assert vol.to_dict() == {v: float(n) for v, n in counts.items()}
    tz = load_parameters().market("SG").tz
    local = dec.created_at.dt.tz_convert(tz).dt.date
    assert (local.min(), local.max()) == (whole.start, whole.end)


def test_period_without_data_is_one_clear_error(small_data):
    from qualitylab.errors import QualityLabError

    ds = open_dataset(small_data)
    for by in (["vendor"], []):  # ungrouped, not a table of zero volume and NaN
        with pytest.raises(
            QualityLabError, match=r"no data for market SG in 2027-01-01\.\.2027-01-28"
        ):
            scorecard(ds, "SG", by=by, start="2027-01-01", end="2027-01-28")


def test_ungrouped_whole_range_has_no_previous_volume(small_data):
    from qualitylab.metrics import resolve_period

    ds = open_dataset(small_data)
    whole = resolve_period(ds, market="SG", start=None, end=None)
    sc = scorecard(ds, "SG", start=whole.start, end=whole.end).set_index("metric")
    assert sc[["prev_value", "delta", "p_value"]].isna().all().all()  # not a volume of 0
    assert sc.loc["volume", "value"] > 0
