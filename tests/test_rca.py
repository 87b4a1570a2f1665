"""Root-cause analysis: exact decompositions, Adtributor ranking on planted
incidents, funnel plots that respect multiplicity, event impact."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from qualitylab import ParameterError, QualityLabError, rca
from qualitylab.metrics import Period, operational_metrics, qa_metrics
from qualitylab.sources import open_dataset
from qualitylab.stats import compare_proportions
from tests.conftest import tiny_tables, write_tables

# Planted in the small demo data (seed 7, 56 days ending 2026-11-22); see its
# incidents.csv: ID VendorC accuracy drop 2026-11-02..08, ID over-enforcement
# of the scam policy 2026-11-09..15 after a policy change on 2026-11-09 (local),
# TH live_report SLA breach 2026-11-12..14.
BASELINE = ("2026-10-05", "2026-11-01")
VENDOR_WEEK = ("2026-11-02", "2026-11-08")
SCAM_WEEK = ("2026-11-09", "2026-11-15")
TOL = 1e-12


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def vendor_drop(ds):
    return rca.decompose(ds, "accuracy", "ID", current=VENDOR_WEEK, baseline=BASELINE)


@pytest.fixture(scope="module")
def scam_spike(ds):
    return rca.decompose(ds, "over_enforcement_rate", "ID", current=SCAM_WEEK, baseline=BASELINE)


def _assert_exact(res: rca.DecompositionResult) -> None:
    seg = res.segments
    np.testing.assert_allclose(seg["mix_effect"] + seg["rate_effect"], seg["contribution"])
    for dim, g in seg.groupby("dimension"):
        assert abs(g["contribution"].sum() - res.estimate) < TOL, dim
        assert abs(g["share_base"].sum() - 1) < TOL and abs(g["share_cur"].sum() - 1) < TOL
    tot = res.totals
    np.testing.assert_allclose(tot["mix_effect"] + tot["rate_effect"], res.estimate, atol=TOL)


# --------------------------------------------------------------------------- #
# shift-share arithmetic
# --------------------------------------------------------------------------- #
def test_shift_share_textbook_simpson():
    # Both segments improve (easy 95% -> 97%, hard 70% -> 75%) while volume moves
    # from easy to hard, so the overall rate falls from 90.0% to 79.4%.
    # By hand (Kitagawa 1955 midpoint formula, s = shares, r = rates):
    #   rate: easy (0.97-0.95)(0.8+0.2)/2 = 0.010, hard (0.75-0.70)(0.2+0.8)/2 = 0.025
    #   mix:  easy (0.2-0.8)(0.95+0.97)/2 = -0.576, hard (0.8-0.2)(0.70+0.75)/2 = 0.435
    # Centred on R = (0.900 + 0.794)/2 = 0.847:
    #   mix:  easy -0.6 (0.960 - 0.847) = -0.0678, hard 0.6 (0.725 - 0.847) = -0.0732
    args = ([800, 200], [760, 140], [200, 800], [194, 600])
    kit = rca.shift_share(*args, segments=["easy", "hard"], mix="kitagawa")
    np.testing.assert_allclose(kit["rate_effect"], [0.010, 0.025], atol=TOL)
    np.testing.assert_allclose(kit["mix_effect"], [-0.576, 0.435], atol=TOL)
    cen = rca.shift_share(*args, segments=["easy", "hard"])
    np.testing.assert_allclose(cen["rate_effect"], [0.010, 0.025], atol=TOL)
    np.testing.assert_allclose(cen["mix_effect"], [-0.0678, -0.0732], atol=TOL)
    for out in (kit, cen):
        assert (out["rate_effect"] > 0).all()  # every segment improved
        assert out["mix_effect"].sum() == pytest.approx(-0.141, abs=TOL)  # the mix hurt
        assert out["contribution"].sum() == pytest.approx(0.794 - 0.900, abs=TOL)


def test_shift_share_absent_segments_are_pure_mix():
    # "new" exists only now, "old" only before: no rate change can be measured.
    out = rca.shift_share([50, 50, 0], [40, 20, 0], [60, 0, 40], [30, 0, 36], mix="kitagawa")
    assert out.loc[1, "rate_effect"] == 0 and out.loc[2, "rate_effect"] == 0
    assert out.loc[1, "contribution"] == pytest.approx(-0.5 * 0.4)  # its exit: -s0 r0
    assert out.loc[2, "contribution"] == pytest.approx(0.4 * 0.9)  # its entry: s1 r1
    assert np.isnan(out.loc[2, "rate_base"]) and np.isnan(out.loc[1, "rate_cur"])
    assert out["contribution"].sum() == pytest.approx(66 / 100 - 60 / 100, abs=TOL)


@pytest.mark.parametrize("mix", rca.MIX_METHODS)
def test_shift_share_is_exact_on_random_inputs(mix):
    rng = np.random.default_rng(3)
    for _ in range(200):
        k = int(rng.integers(1, 12))
        w0 = rng.integers(0, 500, k) * rng.random(k) * 3
        w1 = rng.integers(0, 500, k) * rng.random(k) * 3
        w0[0] += 1.0
        w1[-1] += 1.0
        y0, y1 = w0 * rng.random(k), w1 * rng.random(k)
        out = rca.shift_share(w0, y0, w1, y1, mix=mix)
        change = y1.sum() / w1.sum() - y0.sum() / w0.sum()
        assert abs(out["contribution"].sum() - change) < TOL


@st.composite
def _two_periods(draw):
    """Per segment, weights and outcome sums in a baseline and a current period.

    Each segment is in both periods, or in one only (weight 0 in the other),
    as in every decomposition of data.
    """
    k = draw(st.integers(1, 12))
    weight = st.floats(1e-3, 1e6, allow_nan=False, allow_infinity=False)
    rate = st.floats(0.0, 1.0, allow_nan=False)
    present = np.array(
        draw(st.lists(st.sampled_from(["both", "base", "cur"]), min_size=k, max_size=k))
    )
    w0, w1 = (np.array(draw(st.lists(weight, min_size=k, max_size=k))) for _ in range(2))
    w0[present == "cur"] = 0.0
    w1[present == "base"] = 0.0
    assume(w0.sum() > 0 and w1.sum() > 0)
    r0, r1 = (np.array(draw(st.lists(rate, min_size=k, max_size=k))) for _ in range(2))
    return w0, w0 * r0, w1, w1 * r1


@settings(max_examples=300, deadline=None)
@given(data=_two_periods())
def test_contributions_sum_to_the_total_change(data):
    # Property: for any shares and rates, each segment's mix + rate effect is its
    # contribution, and the contributions add up to the change of the overall
    # rate, whichever way the mix effect is split; the split moves mix effect
    # between segments but leaves the rate effects and the totals alone.
    w0, y0, w1, y1 = data
    change = y1.sum() / w1.sum() - y0.sum() / w0.sum()
    outs = {mix: rca.shift_share(w0, y0, w1, y1, mix=mix) for mix in rca.MIX_METHODS}
    for out in outs.values():
        assert np.isfinite(out["contribution"]).all()
        np.testing.assert_allclose(
            out["mix_effect"] + out["rate_effect"], out["contribution"], rtol=0, atol=1e-12
        )
        assert out["contribution"].sum() == pytest.approx(change, abs=1e-9)
        # a segment present in one period only has no rate change: pure mix
        assert (out.loc[(w0 == 0) | (w1 == 0), "rate_effect"] == 0).all()
    centred, kitagawa = outs["centered"], outs["kitagawa"]
    np.testing.assert_allclose(centred["rate_effect"], kitagawa["rate_effect"], atol=1e-12)
    assert centred["mix_effect"].sum() == pytest.approx(kitagawa["mix_effect"].sum(), abs=1e-9)


def test_shift_share_rejects_bad_input():
    with pytest.raises(ParameterError, match="inconsistent numbers of segments"):
        rca.shift_share([1, 2], [1, 1], [1], [1])
    with pytest.raises(ParameterError, match=r"events_cur must lie in \[0, weight\]"):
        rca.shift_share([1, 2], [1, 1], [1, 1], [2, 1])
    with pytest.raises(ParameterError, match="mix must be one of"):
        rca.shift_share([1], [1], [1], [1], mix="midpoint")


# --------------------------------------------------------------------------- #
# decompose on a hand-made dataset
# --------------------------------------------------------------------------- #
def _audited_dataset(folder, cells):
    """Decisions in SG, all enforced as spam, each audited once by internal QA.

    `cells` rows: (date, vendor, language, n, n_correct, weight[, site]).
    Incorrect decisions are over-enforcements (QA says no violation).
    """
    template = tiny_tables()
    base = template["decisions"].iloc[0]
    dec, qa = [], []
    i = 0
    for day, vendor, lang, n, n_ok, weight, *site in cells:
        for j in range(n):
            created = pd.Timestamp(f"{day} 02:00", tz="UTC") + pd.Timedelta(seconds=i)
            row = base.to_dict()
            row.update(
                decision_id=f"d{i}",
                created_at=created,
                decided_at=created + pd.Timedelta(minutes=3),
                market="SG",
                vendor=vendor,
                site=site[0] if site else f"{vendor}-site",
                queue="live_stream",
                language=lang,
                moderator_id=f"m-{vendor}-{j % 3}",
                routing="human",
                action="warn",
                policy="spam",
                ai_policy="spam",
            )
            dec.append(row)
            ok = j < n_ok
            qa.append(
                {
                    "audit_id": f"a{i}",
                    "decision_id": f"d{i}",
                    "audited_at": created + pd.Timedelta(hours=5),
                    "qa_source": "internal",
                    "auditor_id": "q1",
                    "qa_action": "warn" if ok else "no_action",
                    "qa_policy": "spam" if ok else "none",
                    "sample_weight": weight,
                }
            )
            i += 1
    decisions = pd.DataFrame(dec)
    decisions["decided_at"] = pd.to_datetime(decisions["decided_at"], utc=True)
    raw = pd.DataFrame(
        [
            {"date": c[0], "vendor": c[1], "language": c[2], "n": c[3], "k": c[4], "w": c[5]}
            for c in cells
        ]
    )
    path = write_tables(folder, {"decisions": decisions, "qa_audits": pd.DataFrame(qa)})
    return open_dataset(path), raw


CELLS = [
    # date, vendor, language, audits, correct, weight
    ("2026-03-02", "VendorA", "en", 40, 36, 1.0),
    ("2026-03-02", "VendorB", "en", 6, 5, 1.0),
    ("2026-03-02", "VendorB", "zh", 4, 3, 1.0),
    ("2026-03-09", "VendorA", "en", 20, 18, 1.0),
    ("2026-03-09", "VendorB", "zh", 25, 14, 1.0),
    ("2026-03-09", "VendorC", "zh", 5, 5, 1.0),
]


def _expected(raw, dim, period_dates, weighted):
    """Independent pandas path: shares and rates per segment and period."""
    raw = raw.assign(
        W=np.where(weighted, raw["n"] * raw["w"], raw["n"]),
        Y=np.where(weighted, raw["k"] * raw["w"], raw["k"]),
    )
    out = {}
    for p, day in enumerate(period_dates):
        g = raw[raw["date"] == day].groupby(dim)[["W", "Y"]].sum()
        out[p] = pd.DataFrame({"share": g["W"] / g["W"].sum(), "rate": g["Y"] / g["W"]})
    return out


def _one_day_each(ds, dimensions) -> rca.DecompositionResult:
    """Accuracy on 2026-03-09 against 2026-03-02, in SG."""
    return rca.decompose(
        ds,
        "accuracy",
        "SG",
        current=("2026-03-09", "2026-03-09"),
        baseline=("2026-03-02", "2026-03-02"),
        dimensions=dimensions,
    )


@pytest.mark.parametrize("weighted", [False, True])
def test_decompose_matches_hand_computation(tmp_path, weighted):
    cells = [c[:5] + ((3.0 if c[1] == "VendorB" else 1.0) if weighted else 1.0,) for c in CELLS]
    ds, raw = _audited_dataset(tmp_path / "rca", cells)
    res = _one_day_each(ds, ["vendor", "language"])
    assert res.weighted is weighted
    _assert_exact(res)
    for dim in ("vendor", "language"):
        exp = _expected(raw, dim, ["2026-03-02", "2026-03-09"], weighted)
        seg = res.segments[res.segments["dimension"] == dim].set_index("segment")
        for p, col in ((0, "base"), (1, "cur")):
            e = exp[p].reindex(seg.index)
            np.testing.assert_allclose(seg[f"share_{col}"], e["share"].fillna(0), atol=TOL)
            np.testing.assert_allclose(seg[f"rate_{col}"], e["rate"], atol=TOL)
        # The formula, segment by segment, with absent rates carried over.
        s0, s1 = seg["share_base"], seg["share_cur"]
        r0 = seg["rate_base"].fillna(seg["rate_cur"])
        r1 = seg["rate_cur"].fillna(seg["rate_base"])
        np.testing.assert_allclose(seg["rate_effect"], (r1 - r0) * (s0 + s1) / 2, atol=TOL)
    # VendorC is new: its whole contribution is mix, and its rate change untestable.
    c = res.segments.set_index(["dimension", "segment"]).loc[("vendor", "VendorC")]
    assert c["rate_effect"] == 0 and np.isnan(c["p_value"]) and c["n_base"] == 0
    # The overall rate is that of qa_metrics (weighted when weights differ from 1).
    q = qa_metrics(ds, market="SG", start="2026-03-09", end="2026-03-09")
    assert q.loc[q.metric == "accuracy", "value"].item() == pytest.approx(res.rate_cur, abs=TOL)


def test_decompose_test_and_interval(tmp_path):
    ds, raw = _audited_dataset(tmp_path / "rca", CELLS)
    res = rca.decompose(
        ds,
        "accuracy",
        "SG",
        current=("2026-03-09", "2026-03-09"),
        baseline=("2026-03-02", "2026-03-02"),
        dimensions=["vendor"],
    )
    # Unweighted, so the test is the pooled two-proportion z-test on the counts.
    ref = compare_proportions(37, 50, 44, 50, method="z")
    assert res.estimate == pytest.approx(ref.estimate, abs=TOL)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-9)
    assert tuple(res.confidence_interval(0.9)) == pytest.approx(
        tuple(ref.confidence_interval(0.9)), rel=1e-9
    )
    frame = res.to_frame()
    assert frame.loc[0, "n_base"] == 50 and frame.loc[0, "n_cur"] == 50
    assert list(res.segments.columns) == rca.DECOMPOSITION_COLUMNS


def test_decompose_validates_arguments(tmp_path):
    ds, _ = _audited_dataset(tmp_path / "rca", CELLS)
    periods = {"current": ("2026-03-09", "2026-03-09"), "baseline": ("2026-03-02", "2026-03-02")}
    with pytest.raises(ParameterError, match="metric must be one of"):
        rca.decompose(ds, "volume", "SG", **periods)
    with pytest.raises(ParameterError, match="unknown dimension 'shift'"):
        rca.decompose(ds, "accuracy", "SG", dimensions=["shift"], **periods)
    with pytest.raises(ParameterError, match="overlap"):
        rca.decompose(
            ds, "accuracy", "SG", current=("2026-03-02", "2026-03-09"), baseline=periods["baseline"]
        )
    with pytest.raises(ParameterError, match="ends .* before it starts"):
        rca.decompose(
            ds, "accuracy", "SG", current=("2026-03-09", "2026-03-08"), baseline=periods["baseline"]
        )
    with pytest.raises(QualityLabError, match="no audited decisions for accuracy .* current"):
        rca.decompose(
            ds, "accuracy", "SG", current=("2026-04-01", "2026-04-07"), baseline=periods["baseline"]
        )


# --------------------------------------------------------------------------- #
# decompose and rank on the planted incidents
# --------------------------------------------------------------------------- #
def test_decompose_is_exact_on_demo_data(ds, vendor_drop, scam_spike):
    for res in (vendor_drop, scam_spike):
        assert res.weighted  # the demo QA sample is stratified
        _assert_exact(res)
    # Overall rates equal the scorecard's (design-weighted) accuracy.
    q = qa_metrics(ds, market="ID", start=VENDOR_WEEK[0], end=VENDOR_WEEK[1])
    assert q.loc[q.metric == "accuracy", "value"].item() == pytest.approx(
        vendor_drop.rate_cur, abs=TOL
    )


def test_sla_and_workflow_rates_decompose_exactly(ds):
    cur, base = ("2026-11-12", "2026-11-14"), ("2026-10-15", "2026-11-11")
    sla = rca.decompose(ds, "sla_compliance", "TH", current=cur, baseline=base)
    _assert_exact(sla)
    # Close to the Kaplan-Meier compliance of operational_metrics (few items censored).
    om = operational_metrics(ds, market="TH", start=cur[0], end=cur[1])
    km = om.loc[om.metric == "sla_compliance", "value"].item()
    assert sla.rate_cur == pytest.approx(km, abs=0.005)
    # The planted live_report surge: queue first, live_report its segment.
    rank = rca.adtributor(sla)
    assert (rank.top_dimension, rank.top_segment) == ("queue", "live_report")
    ovr = rca.decompose(
        ds, "override_rate", "TH", current=cur, baseline=base, dimensions=["vendor", "queue"]
    )
    assert not ovr.weighted
    _assert_exact(ovr)


def test_vendor_accuracy_drop_is_attributed_to_vendorc(vendor_drop):
    assert vendor_drop.estimate < -0.02 and vendor_drop.pvalue < 0.05
    rank = rca.adtributor(vendor_drop)
    top = rank.dimensions.iloc[0]
    assert top["dimension"] == "vendor" and top["top_segment"] == "VendorC"
    assert (rank.top_dimension, rank.top_segment) == ("vendor", "VendorC")
    vc = rank.segments[(rank.segments.dimension == "vendor") & rank.segments.selected]
    assert vc["segment"].tolist() == ["VendorC"]
    # Its own performance, not its share of the volume, moved the rate.
    assert abs(vc["rate_effect"].item()) > 5 * abs(vc["mix_effect"].item())
    assert list(rank.dimensions.columns) == rca.ADTRIBUTOR_DIMENSION_COLUMNS
    assert list(rank.segments.columns) == rca.ADTRIBUTOR_SEGMENT_COLUMNS


def test_scam_over_enforcement_is_attributed_to_policy(ds, scam_spike):
    assert scam_spike.estimate > 0 and scam_spike.pvalue < 0.05
    rank = rca.adtributor(scam_spike)
    assert (rank.top_dimension, rank.top_segment) == ("policy", "scam")
    # Drill-down: the best pair of dimensions involves policy, and scam is in
    # every selected pair of segments.
    dd = rca.drill_down(ds, scam_spike, ranking=rank)
    assert list(dd.columns) == rca.DRILL_DOWN_COLUMNS
    best = dd[(dd.pair_rank == 1) & dd.selected]
    assert "policy" in {best.dimension_a.iloc[0], best.dimension_b.iloc[0]}
    assert (best[["segment_a", "segment_b"]] == "scam").any(axis=1).all()
    assert best["explanatory_power"].sum() >= 0.8
    for _, g in dd.groupby(["dimension_a", "dimension_b"]):
        assert abs(g["contribution"].sum() - scam_spike.estimate) < TOL


def test_drill_down_reuses_the_stored_cross_tabulation(ds, scam_spike):
    # decompose already summed every pair of dimensions; drill_down reads them
    # (in either orientation) instead of asking the engine again, with the same result.
    pairs = [("policy", "queue"), ("vendor", "policy"), ("language", "site")]
    assert scam_spike.crossed is not None
    stored = rca.drill_down(None, scam_spike, pairs=pairs)  # no dataset: nothing to query
    fresh = rca.drill_down(ds, dataclasses.replace(scam_spike, crossed=None), pairs=pairs)
    pd.testing.assert_frame_equal(stored, fresh)
    assert set(zip(stored.dimension_a, stored.dimension_b, strict=True)) == set(pairs)


def test_adtributor_rank_by_total_surprise_is_available(vendor_drop):
    rank = rca.adtributor(vendor_drop, rank_by="surprise")
    d = rank.dimensions[rank.dimensions.explained]
    # By total surprise, except that a nested child (site) yields to its parent.
    assert d.loc[d.nested_in.isna(), "surprise"].is_monotonic_decreasing
    with pytest.raises(ParameterError, match="rank_by"):
        rca.adtributor(vendor_drop, rank_by="jsd")


def test_summary_states_the_numbers(vendor_drop):
    text = rca.summarize(vendor_drop)
    pp = abs(vendor_drop.estimate) * 100
    assert text.startswith(f"Accuracy in ID fell {pp:.1f} pp")
    assert "By vendor, VendorC explains" in text
    assert "almost entirely through its own performance" in text
    assert "sampling noise" not in text


def test_summary_warns_about_noise(ds):
    res = rca.decompose(
        ds,
        "accuracy",
        "SG",
        current=("2026-10-26", "2026-11-01"),
        baseline=("2026-10-19", "2026-10-25"),
        dimensions=["vendor", "queue"],
    )
    assert res.pvalue > 0.05
    assert "within sampling noise" in rca.summarize(res)


def test_nested_dimensions_prefer_the_coarser_unless_children_differ(tmp_path):
    cells = [
        # baseline: VendorB's two sites at ~95%
        ("2026-03-02", "VendorA", "en", 200, 190, 1.0, "A1"),
        ("2026-03-02", "VendorB", "en", 150, 143, 1.0, "B1"),
        ("2026-03-02", "VendorB", "en", 50, 48, 1.0, "B2"),
        # both VendorB sites drop alike (95 -> 80, 96 -> 84)
        ("2026-03-09", "VendorA", "en", 200, 190, 1.0, "A1"),
        ("2026-03-09", "VendorB", "en", 150, 120, 1.0, "B1"),
        ("2026-03-09", "VendorB", "en", 50, 42, 1.0, "B2"),
        # only site B1 drops (95 -> 70); B2 unchanged
        ("2026-03-16", "VendorA", "en", 200, 190, 1.0, "A1"),
        ("2026-03-16", "VendorB", "en", 150, 105, 1.0, "B1"),
        ("2026-03-16", "VendorB", "en", 50, 48, 1.0, "B2"),
    ]
    ds, _ = _audited_dataset(tmp_path / "nested", cells)
    base = ("2026-03-02", "2026-03-02")
    for day, first, het in (("2026-03-09", "vendor", False), ("2026-03-16", "site", True)):
        res = rca.decompose(
            ds, "accuracy", "SG", current=(day, day), baseline=base, dimensions=["site", "vendor"]
        )
        assert res.nesting["site"][0] == "vendor"
        assert res.nesting["site"][1] == {"A1": "VendorA", "B1": "VendorB", "B2": "VendorB"}
        dims = rca.adtributor(res).dimensions.set_index("dimension")
        assert dims.loc["site", "nested_in"] == "vendor"
        assert bool(dims.loc["site", "heterogeneity_p"] < 0.05) == het
        assert dims["rank"].idxmin() == first


@pytest.mark.parametrize("cause", ["language", "vendor"])
def test_a_concentrated_cause_explains_away_the_dimension_it_sits_in(tmp_path, cause):
    # 80% of VendorB's audits are zh and most zh audits are VendorB's, and VendorB
    # takes on three times its volume in the current week. Both vendor=VendorB and
    # language=zh then "explain" a drop, and the volume shift adds to VendorB's
    # surprise. Only the cause also drops outside the other: zh at VendorA (cause
    # language), or VendorB in en (cause vendor).
    drop = {  # (vendor, language) cells whose accuracy drops 95% -> 70%
        "language": {("VendorA", "zh"), ("VendorB", "zh")},
        "vendor": {("VendorB", "en"), ("VendorB", "zh")},
    }[cause]
    before = {("VendorA", "en"): 400, ("VendorA", "zh"): 60, ("VendorB", "en"): 60}
    before[("VendorB", "zh")] = 240
    after = {k: n * (3 if k[0] == "VendorB" else 1) for k, n in before.items()}
    cells = []
    for day, sizes in (("2026-03-02", before), ("2026-03-09", after)):
        for (vendor, lang), n in sizes.items():
            rate = 0.70 if day == "2026-03-09" and (vendor, lang) in drop else 0.95
            cells.append((day, vendor, lang, n, round(rate * n), 1.0))
    ds, _ = _audited_dataset(tmp_path / cause, cells)
    res = _one_day_each(ds, ["vendor", "language"])
    # By surprise alone VendorB ranks first either way.
    alone = rca.adtributor(dataclasses.replace(res, crossed=None))
    assert alone.top_dimension == "vendor"
    rank = rca.adtributor(res)
    dims = rank.dimensions.set_index("dimension")
    assert dims["explained"].all()  # both explain the drop with one segment
    want = {"language": "zh", "vendor": "VendorB"}[cause]
    assert (rank.top_dimension, rank.top_segment) == (cause, want)
    if cause == "language":  # promoted over vendor: zh dropped at VendorA too
        assert dims.loc["language", "explains_away"] == "vendor"
        assert dims.loc["language", "outside_p"] < 0.001
    else:  # VendorB's en audits dropped too, so language is not promoted
        assert dims["explains_away"].isna().all()


def test_explain_away_leaves_a_set_that_covers_everything_behind(tmp_path):
    # One queue-like cell drops hard; everything else dips a little (spill-over).
    # VendorA holds nearly every audit, so "VendorA outside zh" changes
    # significantly, but VendorA changed far more where zh is: not a cause.
    cells = []
    for day in ("2026-03-02", "2026-03-09"):
        cur = day == "2026-03-09"
        cells += [
            (day, "VendorA", "zh", 200, round((0.45 if cur else 0.95) * 200), 1.0),
            (day, "VendorA", "en", 2000, round((0.93 if cur else 0.95) * 2000), 1.0),
            (day, "VendorB", "en", 20, 19, 1.0),
            (day, "VendorB", "zh", 40, 38, 1.0),
        ]
    ds, _ = _audited_dataset(tmp_path / "spill", cells)
    res = _one_day_each(ds, ["language", "vendor"])
    dims = rca.adtributor(res).dimensions.set_index("dimension")
    assert dims.loc["language", "n_selected"] == 1  # zh alone
    assert dims.loc["vendor", "explains_away"] is None
    assert dims["rank"].idxmin() == "language"


# --------------------------------------------------------------------------- #
# Jensen-Shannon divergence
# --------------------------------------------------------------------------- #
def test_jensen_shannon_divergence():
    rng = np.random.default_rng(1)
    for _ in range(50):
        p, q = rng.random(6), rng.random(6)
        d = rca.jensen_shannon(p, q)
        assert d == pytest.approx(rca.jensen_shannon(q, p), abs=1e-15)  # symmetric
        assert d == pytest.approx(jensenshannon(p, q, base=2) ** 2, abs=1e-12)  # scipy
        assert 0 <= d <= 1
        assert rca.jensen_shannon(p, 3 * p) == pytest.approx(0.0, abs=1e-15)  # identical
    assert rca.jensen_shannon([1, 0, 0], [0, 0, 1]) == 1.0  # disjoint supports
    with pytest.raises(ParameterError, match="inconsistent numbers of segments"):
        rca.jensen_shannon([1, 2], [1, 2, 3])


# --------------------------------------------------------------------------- #
# funnel plots
# --------------------------------------------------------------------------- #
def test_funnel_limits_spiegelhalter():
    # Spiegelhalter (2005) appendix A.1.1 by hand, theta = 0.1, n = 100:
    # r = 16 is the 0.975 quantile, F(16) = 0.97940, F(15) = 0.96005,
    # alpha = (0.97940 - 0.975)/(0.97940 - 0.96005) = 0.2274, limit 0.15773.
    lim = rca.funnel_limits(0.1, [100])
    f16, f15 = sps.binom.cdf(16, 100, 0.1), sps.binom.cdf(15, 100, 0.1)
    assert lim.loc[0, "upper_95"] == pytest.approx((16 - (f16 - 0.975) / (f16 - f15)) / 100)
    assert lim.loc[0, "upper_95"] == pytest.approx(0.15773, abs=5e-5)
    # The exact and normal limits agree for large n; limits narrow as n grows.
    big = rca.funnel_limits(0.1, [20000])
    norm = rca.funnel_limits(0.1, [20000], method="normal")
    for c in ("lower_95", "upper_95", "lower_998", "upper_998"):
        assert big.loc[0, c] == pytest.approx(norm.loc[0, c], abs=5e-4)
    curve = rca.funnel_limits(0.1, np.arange(1, 500))
    assert (curve["lower_998"] <= curve["lower_95"]).all()
    assert (curve["upper_95"] <= curve["upper_998"]).all()


def _null_units(rng, units=300, p=0.08):
    n = rng.integers(5, 500, units)
    return pd.DataFrame({"unit": np.arange(units), "n": n, "k": rng.binomial(n, p)})


def test_funnel_flags_real_deviation_not_small_extremes():
    rng = np.random.default_rng(7)
    df = _null_units(rng, units=60, p=0.1)
    df.loc[len(df)] = {"unit": 1000, "n": 2000, "k": 280}  # 14% on 2,000 items (z ~ 6)
    df.loc[len(df)] = {"unit": 1001, "n": 2, "k": 2}  # 100% on 2 items
    res = rca.funnel(df, target=0.1)
    u = res.units.set_index("unit")
    assert u.loc[1000, "flagged"] and u.loc[1000, "direction"] == "above"
    assert u.loc[1000, "outside_998"]
    # Far outside the picture's limits, but two items are no evidence.
    assert u.loc[1001, "outside_95"] and not u.loc[1001, "flagged"]
    assert list(res.units.columns) == ["unit", *rca.FUNNEL_COLUMNS]
    assert res.method == "exact" and res.phi == 1.0


def test_funnel_fdr_keeps_false_flags_near_nominal():
    # Under the null every flag is false; Benjamini-Hochberg then bounds the
    # chance of any flag by alpha (it controls the FWER under the full null).
    rng = np.random.default_rng(11)
    reps, any_flag, raw_flags, total = 100, 0, 0, 0
    for _ in range(reps):
        res = rca.funnel(_null_units(rng, units=200), alpha=0.05)
        any_flag += bool(res.units["flagged"].any())
        raw_flags += int((res.units["p_value"] < 0.05).sum())
        total += len(res.units)
    assert any_flag / reps <= 0.08
    # Without the correction about 5% of units (here ~10 per run) would be flagged.
    assert 0.02 < raw_flags / total < 0.06


def test_funnel_overdispersion():
    rng = np.random.default_rng(5)
    n = np.full(200, 400)
    p = rng.beta(8 * 0.1 / 0.9 * 9, 8 * 9, 200)  # mean 0.1, extra between-unit spread
    df = pd.DataFrame({"unit": np.arange(200), "n": n, "k": rng.binomial(n, p)})
    plain = rca.funnel(df)
    adj = rca.funnel(df, overdispersion=True)
    assert adj.phi_estimate > 1.5 and adj.phi_pvalue < 0.05
    assert adj.phi == adj.phi_estimate and adj.method == "normal_overdispersed"
    assert adj.units["flagged"].sum() < plain.units["flagged"].sum()
    assert (adj.units["upper_95"] - adj.units["lower_95"]).min() > (
        plain.units["upper_95"] - plain.units["lower_95"]
    ).max()
    # On binomial data the estimate is near 1 and nothing is adjusted.
    null = rca.funnel(_null_units(rng), overdispersion=True)
    assert 0.6 < null.phi_estimate < 1.4 and null.phi == 1.0


def test_funnel_validates_input():
    df = pd.DataFrame({"unit": ["a"], "k": [3], "n": [2]})
    with pytest.raises(ParameterError, match=r"k must lie in \[0, n\]"):
        rca.funnel(df)
    with pytest.raises(ParameterError, match="needs integer counts"):
        rca.funnel(pd.DataFrame({"unit": ["a"], "k": [1.5], "n": [3.2]}), method="exact")
    with pytest.raises(ParameterError, match="no column 'moderator_id'"):
        rca.funnel(df, unit="moderator_id")


def test_outlier_units_on_demo_data(ds):
    week = {"start": VENDOR_WEEK[0], "end": VENDOR_WEEK[1]}
    res = rca.outlier_units(ds, "accuracy", "ID", unit="site", **week)
    q = qa_metrics(ds, market="ID", **week)
    # Weighted: the population rate is the market's design-weighted accuracy.
    assert res.population_rate == pytest.approx(
        q.loc[q.metric == "accuracy", "value"].item(), abs=TOL
    )
    assert res.method == "normal"
    assert set(res.units["site"]) == {"VendorC-Jakarta", "VendorC-HCMC", "VendorA-Jakarta"}
    mods = rca.outlier_units(ds, "accuracy", "ID", unit="moderator_id", weighted=False, **week)
    # ai_auto decisions have no moderator and stay out of the funnel.
    assert mods.method == "exact" and mods.units["n"].dtype == "int64"
    assert mods.units["moderator_id"].notna().all()
    assert (mods.units["p_adjusted"] >= mods.units["p_value"] - TOL).all()


# --------------------------------------------------------------------------- #
# error anatomy, context, event impact
# --------------------------------------------------------------------------- #
def test_error_anatomy_adds_up_and_finds_scam(ds, scam_spike):
    ea = rca.error_anatomy(ds, "ID", current=SCAM_WEEK, baseline=BASELINE)
    assert list(ea.columns) == ["error_type", "policy", "language", *rca.ANATOMY_COLUMNS[1:]]
    acc = rca.decompose(
        ds, "accuracy", "ID", current=SCAM_WEEK, baseline=BASELINE, dimensions=["vendor"]
    )
    assert ea["change"].sum() == pytest.approx(-acc.estimate, abs=TOL)
    assert ea["share_of_change"].sum() == pytest.approx(1.0, abs=1e-9)
    over = ea[ea.error_type == "over_enforcement"]
    assert over["change"].sum() == pytest.approx(scam_spike.estimate, abs=TOL)
    assert over.iloc[0]["policy"] == "scam"
    by_policy = over.groupby("policy")["change"].sum()
    assert by_policy.idxmax() == "scam"


def test_segment_context(ds):
    ctx = rca.segment_context(ds, "ID", "vendor", "VendorC", current=VENDOR_WEEK, baseline=BASELINE)
    assert list(ctx.columns) == rca.CONTEXT_COLUMNS
    cal = ctx[ctx.metric == "calibration_score"]
    assert set(cal["rater_group"]) <= {"VendorC", "internal"} and len(cal)
    assert cal["value"].between(0, 1).all()
    assert {"qa_alignment", "qa_alignment_kappa"} <= set(ctx["metric"])
    assert set(ctx["period"]) == {"baseline", "current"}


def test_event_impact_with_difference_in_differences(tmp_path):
    ds, _ = _audited_dataset(tmp_path / "rca", CELLS)
    res = rca.event_impact(
        ds,
        "accuracy",
        "SG",
        "2026-03-09",
        window_days=7,
        segment={"vendor": "VendorB"},
        control={"vendor": "VendorA"},
    )
    # VendorB 8/10 -> 14/25; VendorA 36/40 -> 18/20 (unchanged).
    ref = compare_proportions(14, 25, 8, 10)
    assert (res.estimate, res.pvalue, res.method) == pytest.approx(
        (ref.estimate, ref.pvalue, ref.method)
    )
    assert res.did_estimate == pytest.approx((14 / 25 - 8 / 10) - (18 / 20 - 36 / 40))
    se = np.sqrt(sum(p * (1 - p) / n for p, n in ((0.8, 10), (0.56, 25), (0.9, 40), (0.9, 20))))
    assert res.did_se == pytest.approx(se)
    assert res.did_pvalue == pytest.approx(2 * sps.norm.sf(abs(res.did_estimate) / se))
    frame = res.to_frame()
    assert frame["group"].tolist() == ["treated", "control", "difference_in_differences"]
    rest = rca.event_impact(
        ds,
        "accuracy",
        "SG",
        "2026-03-09",
        window_days=7,
        segment={"vendor": "VendorB"},
        control="rest",
    )
    # "rest" adds the new VendorC to the control after the event.
    assert rest.control_n_after == 25
    with pytest.raises(QualityLabError, match="no items for accuracy in the treated segment"):
        rca.event_impact(ds, "accuracy", "SG", "2026-03-09", segment={"vendor": "VendorC"})


def test_event_impact_on_scam_policy_change(ds):
    # Two weeks each side: the week before the change also holds the VendorC
    # incident, whose untrained cohort over-enforced scam too.
    res = rca.event_impact(
        ds,
        "over_enforcement_rate",
        "ID",
        "2026-11-09",
        window_days=14,
        segment={"policy": "scam"},
        control="rest",
    )
    assert res.weighted and res.method == "z"
    assert res.before == Period(date(2026, 10, 26), date(2026, 11, 8))
    assert res.estimate > 0.1 and res.did_estimate > 0.1 and res.did_pvalue < 0.05
    lo, hi = res.did_confidence_interval(0.95)
    assert lo > 0 and hi > lo
