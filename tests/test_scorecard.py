"""The scorecard: KPIs with targets, status and change."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats import rates
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

from qualitylab.params import load_parameters
from qualitylab.scorecard import SCORECARD_COLUMNS, scorecard, status_against_target
from qualitylab.sources import open_dataset
from tests.design_reference import design_interval

PERIOD = ("2026-10-26", "2026-11-22")
PREVIOUS = ("2026-09-28", "2026-10-25")


@pytest.fixture(scope="module")
def sc_vendor(small_data):
    return scorecard(open_dataset(small_data), "SG", by=["vendor"], start=PERIOD[0], end=PERIOD[1])


def test_columns_and_grain(sc_vendor):
    assert list(sc_vendor.columns) == ["market", "vendor", *SCORECARD_COLUMNS]
    assert set(sc_vendor.market) == {"SG"}
    assert {"volume", "sla_compliance", "accuracy", "override_rate"} <= set(sc_vendor.metric)


def _raw(small_data) -> tuple[pd.DataFrame, pd.DataFrame]:
    """SG decisions and internal audits from the parquet files, with pandas only.

    Correctness and the error flags follow data/README.md: a decision is correct when its
    enforcement matches QA's and, if enforced, its policy too.
    """
    tz = load_parameters().market("SG").tz
    dec = pd.read_parquet(small_data / "decisions")
    dec = dec[dec["market"] == "SG"].copy()
    dec["date"] = dec["created_at"].dt.tz_convert(tz).dt.date
    qa = pd.read_parquet(small_data / "qa_audits.parquet")
    j = qa[qa["qa_source"] == "internal"].merge(dec[dec["action"].notna()], on="decision_id")
    enforced, qa_enforced = j["action"] != "no_action", j["qa_action"] != "no_action"
    same_policy = j["policy"].fillna("none") == j["qa_policy"]
    j["accuracy"] = (enforced == qa_enforced) & (~enforced | same_policy)
    j["over_enforcement_rate"] = enforced & ~qa_enforced
    j["under_enforcement_rate"] = ~enforced & qa_enforced
    j["wrong_policy_rate"] = enforced & qa_enforced & ~same_policy
    j["w"] = j["sample_weight"].fillna(1.0)
    return dec, j


def _in(frame: pd.DataFrame, start: str, end: str) -> pd.DataFrame:
    lo, hi = date.fromisoformat(start), date.fromisoformat(end)
    return frame[(frame["date"] >= lo) & (frame["date"] <= hi)]


def _design(j: pd.DataFrame, flag: str) -> tuple[float, float, float, float]:
    """Design-weighted rate, its interval and design effective n, by hand.

    tests/design_reference.py (pandas and statsmodels, from the documented formulas):
    strata are the distinct weights, the stratified linearised variance with a pure
    stratum's variance as if 1/4 of an audit had the other outcome, n* = n over the
    design effect, and statsmodels' Wilson interval at n*.
    """
    p, lo, hi, n_star = design_interval(j[flag].to_numpy(float), j["w"], j["w"])
    return p, lo, hi, n_star


def _overrides(dec: pd.DataFrame) -> pd.DataFrame:
    """Per vendor: ai_assisted decided items and those whose human decision differs from the AI's."""
    d = dec[dec["action"].notna() & (dec["routing"] == "ai_assisted")]
    ai_enf = d["ai_policy"].fillna("none") != "none"
    human_enf = d["action"] != "no_action"
    over = (ai_enf != human_enf) | (ai_enf & human_enf & (d["policy"] != d["ai_policy"]))
    return d.assign(over=over).groupby("vendor")["over"].agg(k="sum", n="size")


def _targets() -> dict[str, float]:
    """SG's targets read from the YAML files: defaults.yaml, SG's accuracy_target on top."""
    import yaml

    root = Path(__file__).resolve().parent.parent / "parameters"
    targets = yaml.safe_load((root / "defaults.yaml").read_text(encoding="utf-8"))["targets"]
    sg = yaml.safe_load((root / "markets" / "SG.yaml").read_text(encoding="utf-8"))
    return {**targets, "accuracy": sg.get("accuracy_target", targets["accuracy"])}


def _rule(lo: float, hi: float, target: float, metric: str) -> str:
    """The documented status: green when the interval is wholly on the good side of the target."""
    if metric == "accuracy":
        return "green" if lo >= target else "red" if hi < target else "amber"
    return "green" if hi <= target else "red" if lo > target else "amber"


QA_RATES = ("accuracy", "over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")


def test_status_follows_interval_and_target(small_data, sc_vendor):
    dec, j = _raw(small_data)
    j, dec = _in(j, *PERIOD), _in(dec, *PERIOD)
    targets = _targets()
    sc = sc_vendor.set_index(["vendor", "metric"])
    checked = []
    for vendor, part in j.groupby("vendor"):
        for metric in QA_RATES:
            r = sc.loc[(vendor, metric)]
            # Wilson at the design effective n (statsmodels proportion_confint at x = p n*)
            p, lo, hi, _ = _design(part, metric)
            assert (r.value, r.n) == pytest.approx((p, len(part)), rel=1e-9), (vendor, metric)
            assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), abs=1e-7), (vendor, metric)
            assert r.target == targets[metric]
            assert r.status == _rule(lo, hi, targets[metric], metric), (vendor, metric, lo, hi)
            checked.append(r.status)
    for vendor, (k, n) in _overrides(dec).iterrows():
        r = sc.loc[(vendor, "override_rate")]
        # statsmodels: the Wilson interval of k overrides in n ai_assisted decisions
        lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (r.value, r.n) == pytest.approx((k / n, n), rel=1e-12)
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), abs=1e-9)
        assert r.status == _rule(lo, hi, targets["override_rate"], "override_rate")
        checked.append(r.status)
    assert len(checked) >= 12
    assert {"green", "red"} <= set(checked)  # the rule is exercised on both sides


def test_change_against_previous_period(small_data, sc_vendor):
    dec, j = _raw(small_data)
    cur, prev = _in(j, *PERIOD), _in(j, *PREVIOUS)
    sc = sc_vendor.set_index(["vendor", "metric"])
    tested = 0
    for vendor in sorted(cur["vendor"].unique()):
        for metric in QA_RATES:
            r = sc.loc[(vendor, metric)]
            p1, _, _, n1 = _design(cur[cur["vendor"] == vendor], metric)
            p2, _, _, n2 = _design(prev[prev["vendor"] == vendor], metric)
            assert (r.value, r.prev_value) == pytest.approx((p1, p2), rel=1e-9)
            assert r.delta == pytest.approx(p1 - p2, rel=1e-9, abs=1e-12)
            if p1 == p2 == 0:
                assert r.p_value == 1.0  # no events in either period: no evidence of a change
                continue
            # statsmodels: the pooled two-proportion z-test at the effective counts p n*
            _, expected = proportions_ztest([p1 * n1, p2 * n2], [n1, n2])
            assert r.p_value == pytest.approx(expected, rel=1e-4), (vendor, metric)
            tested += 1
    ov1, ov2 = _overrides(_in(dec, *PERIOD)), _overrides(_in(dec, *PREVIOUS))
    for vendor in ov1.index:
        r = sc.loc[(vendor, "override_rate")]
        (k1, n1), (k2, n2) = ov1.loc[vendor], ov2.loc[vendor]
        assert r.delta == pytest.approx(k1 / n1 - k2 / n2, rel=1e-12)
        # statsmodels: pooled two-proportion z-test on the override counts
        _, expected = proportions_ztest([k1, k2], [n1, n2])
        assert r.p_value == pytest.approx(expected, rel=1e-6), vendor
        tested += 1
    # volume: the exact conditional test that two Poisson counts over 28 days each share a rate
    vol1 = _in(dec, *PERIOD).groupby("vendor").size()
    vol2 = _in(dec, *PREVIOUS).groupby("vendor").size()
    for vendor in vol1.index:
        r = sc.loc[(vendor, "volume")]
        assert (r.value, r.prev_value) == (vol1[vendor], vol2[vendor])
        expected = rates.test_poisson_2indep(
            vol1[vendor], 28, vol2[vendor], 28, method="exact-cond"
        ).pvalue
        assert r.p_value == pytest.approx(expected, rel=1e-9), vendor
        tested += 1
    assert tested >= 15
    # p_adjusted: Benjamini-Hochberg over every row with a p-value (statsmodels)
    ok = sc_vendor["p_value"].notna()
    _, bh, _, _ = multipletests(sc_vendor.loc[ok, "p_value"], method="fdr_bh")
    np.testing.assert_allclose(sc_vendor.loc[ok, "p_adjusted"], bh, rtol=1e-12)


def test_previous_period_is_computed_the_same_way(small_data, sc_vendor):
    # The previous period's values are the data's for 2026-09-28..2026-10-25, as a
    # scorecard of that period alone would show them.
    ds = open_dataset(small_data)
    prev = scorecard(ds, "SG", by=["vendor"], start=PREVIOUS[0], end=PREVIOUS[1], compare=False)
    a = sc_vendor.set_index(["vendor", "metric"])["prev_value"]
    b = prev.set_index(["vendor", "metric"])["value"]
    common = a.index.intersection(b.index)
    np.testing.assert_allclose(a[common].to_numpy(float), b[common].to_numpy(float))
    dec, j = _raw(small_data)
    j = _in(j, *PREVIOUS)
    for vendor, part in j.groupby("vendor"):
        w = part["w"]
        assert a[(vendor, "accuracy")] == pytest.approx((w * part["accuracy"]).sum() / w.sum())
    volume = _in(dec, *PREVIOUS).groupby("vendor").size()
    assert {v: a[(v, "volume")] for v in volume.index} == volume.to_dict()


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
