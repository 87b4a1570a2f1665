"""Stratified design-weighted rates (issue #17, part 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qualitylab import QualityLabError
from qualitylab.metrics import qa_metrics
from qualitylab.sources import open_dataset
from qualitylab.stats import proportion_ci, stratified_proportion

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import stratified_coverage as sc  # noqa: E402
from design_reference import design_interval  # noqa: E402


def _sums(y, w):
    y, w = np.asarray(y, float), np.asarray(w, float)
    return {
        "sum_wy": (w * y).sum(),
        "sum_w": w.sum(),
        "sum_w2": (w * w).sum(),
        "sum_w2y": (w * w * y).sum(),
        "sum_w2y2": (w * w * y * y).sum(),
        "n": float(len(y)),
    }


def _stack(*strata):
    return {k: np.array([s[k] for s in strata]) for k in strata[0]}


def test_hand_computed_two_strata():
    # stratum 1: weight 1, y = 1, 1, 1, 0; stratum 2: weight 3, y = 1, 0
    # N1 = 4, N2 = 6, N = 10; p = (3 + 3) / 10 = 0.6
    # s1^2 = 0.25 (3 of 4, ddof 1), s2^2 = 0.5
    # var = (4/10)^2 * 0.25 / 4 + (6/10)^2 * 0.5 / 2 = 0.01 + 0.09 = 0.1
    # n* = n * [p(1-p)/(n-1)] / var = 6 * (0.24 / 5) / 0.1 = 2.88
    res = stratified_proportion(
        **_stack(_sums([1, 1, 1, 0], [1] * 4), _sums([1, 0], [3] * 2)), method="wilson"
    )
    assert res.estimate[0] == pytest.approx(0.6)
    assert res.se[0] ** 2 == pytest.approx(0.1)
    assert res.n_eff[0] == pytest.approx(2.88)
    assert res.n[0] == 6
    assert (res.ci_low[0], res.ci_high[0]) == pytest.approx(tuple(proportion_ci(0.6 * 2.88, 2.88)))
    # Korn-Graubard: Clopper-Pearson at n* with x = p n*
    kg = stratified_proportion(
        **_stack(_sums([1, 1, 1, 0], [1] * 4), _sums([1, 0], [3] * 2)), method="korn_graubard"
    )
    x, m = 0.6 * 2.88, 2.88
    assert kg.ci_low[0] == pytest.approx(stats.beta.ppf(0.025, x, m - x + 1))
    assert kg.ci_high[0] == pytest.approx(stats.beta.ppf(0.975, x + 1, m - x))


def test_pure_stratum_hand_computed():
    # stratum 1: weight 1, y = 1, 1, 1, 1 (pure); stratum 2: weight 3, y = 1, 0
    # p = (4 + 3) / 10 = 0.7. Stratum 2: (6/10)^2 * 0.5 / 2 = 0.09.
    # Stratum 1 as if 1/4 of an audit had failed: p~ = 0.25 / 4 = 0.0625,
    # s~^2 = 4/3 * 0.0625 * 0.9375 = 0.078125; (4/10)^2 * 0.078125 / 4 = 0.003125.
    # var = 0.093125; n* = 6 * (0.21 / 5) / 0.093125 = 2.70604...
    binary = [
        {k: v for k, v in _sums(y, w).items() if k != "sum_w2y2"}
        for y, w in (([1, 1, 1, 1], [1] * 4), ([1, 0], [3] * 2))
    ]
    res = stratified_proportion(**_stack(*binary))
    assert res.estimate[0] == pytest.approx(0.7)
    assert res.se[0] ** 2 == pytest.approx(0.093125)
    assert res.n_eff[0] == pytest.approx(6 * 0.042 / 0.093125)
    lo, hi = proportion_ci(0.7 * res.n_eff[0], res.n_eff[0])
    assert (res.ci_low[0], res.ci_high[0]) == pytest.approx((lo, hi))
    # without the floor the pure stratum adds nothing: var = 0.09
    off = stratified_proportion(**_stack(*binary), pure_events=0)
    assert off.se[0] ** 2 == pytest.approx(0.09)
    # a continuous outcome (sum_w2y2 given) is never floored
    full = stratified_proportion(**_stack(_sums([1, 1, 1, 1], [1] * 4), _sums([1, 0], [3] * 2)))
    assert full.se[0] ** 2 == pytest.approx(0.09)


def test_lohr_example_3_2_stratified_mean_and_se():
    # Lohr, S. L. (2010). Sampling: Design and Analysis, 2nd ed., Example 3.2:
    # stratified random sample of 300 US counties (agstrat), acres devoted to
    # farms in 1992, strata = regions. Published stratum summaries
    # (N_h, n_h, ybar_h, s_h):
    table = [
        ("NE", 220, 21, 97_629.8, 87_449.5),
        ("NC", 1054, 103, 300_504.2, 172_612.6),
        ("S", 1382, 135, 211_315.0, 231_015.2),
        ("W", 422, 41, 662_295.5, 629_262.1),
    ]
    # Published: t_str = 909,736,035 with SE 50,417,248, i.e. ybar_str = 295,561
    # (= t / 3078) with SE 16,380, using the finite-population correction.
    # The same figures are the expected values of R `survey`'s svytotal/svymean
    # on agstrat in the test suites of several survey packages (checked with the
    # code search, December 2026), and the published stratum totals are
    # NE 21,478,558, NC 316,731,380, S 292,037,391, W 279,488,706.
    strata = []
    for _, big_n, n, ybar, s in table:
        w = big_n / n
        strata.append(
            {
                "sum_wy": w * n * ybar,
                "sum_w": float(big_n),
                "sum_w2": w * w * n,
                "sum_w2y": w * w * n * ybar,
                "sum_w2y2": w * w * ((n - 1) * s * s + n * ybar * ybar),
                "n": float(n),
            }
        )
    args = _stack(*strata)
    res = stratified_proportion(**args, population=[r[1] for r in table])
    assert res.estimate[0] * 3078 == pytest.approx(909_736_035, rel=1e-7)
    assert res.estimate[0] == pytest.approx(295_561, abs=1)
    # the s_h are rounded in the table: 0.1% tolerance on the SE
    assert res.se[0] == pytest.approx(16_380, rel=1e-3)
    assert res.se[0] * 3078 == pytest.approx(50_417_248, rel=1e-3)
    totals = [r[1] * r[3] for r in table]  # N_h ybar_h
    assert totals == pytest.approx([21_478_558, 316_731_380, 292_037_391, 279_488_706], rel=1e-6)
    # without the fpc the variance is larger by about 1 / (1 - 0.097)
    wr = stratified_proportion(**args)
    assert wr.se[0] > res.se[0] * 1.04


def test_equal_weights_one_stratum_is_the_plain_wilson_interval():
    y = np.r_[np.ones(17), np.zeros(8)]
    res = stratified_proportion(**_sums(y, np.full(25, 4.0)), method="wilson")
    assert res.n_eff[0] == pytest.approx(25)
    assert (res.ci_low[0], res.ci_high[0]) == pytest.approx(tuple(proportion_ci(17, 25)))


def test_single_unit_and_pure_strata_are_defined():
    # one unit in a stratum contributes a^2 (R survey lonely.psu = "adjust")
    one = stratified_proportion(**_stack(_sums([1, 0, 1], [2] * 3), _sums([1], [5])))
    p = (2 * 2 + 5) / 11
    a = [2 * (1 - p), 2 * (0 - p), 2 * (1 - p)]
    within = 3 / 2 * np.sum((np.array(a) - np.mean(a)) ** 2) + (5 * (1 - p)) ** 2
    assert one.se[0] ** 2 == pytest.approx(within / 11**2)
    # all correct: variance 0, n* = n, interval still wide at n = 3
    pure = stratified_proportion(**_stack(_sums([1, 1], [1, 1]), _sums([1], [4])))
    assert pure.estimate[0] == 1 and pure.n_eff[0] == 3 and pure.ci_low[0] < 0.5


def test_segments_are_combined_separately():
    s = [_sums([1, 0], [1, 1]), _sums([1, 1, 0], [2] * 3), _sums([1, 1, 1, 0], [1] * 4)]
    both = stratified_proportion(**_stack(*s), segment=[0, 0, 1])
    first = stratified_proportion(**_stack(*s[:2]))
    last = stratified_proportion(**_stack(s[2]))
    assert both.estimate == pytest.approx(np.r_[first.estimate, last.estimate])
    assert both.ci_low == pytest.approx(np.r_[first.ci_low, last.ci_low])


# --------------------------------------------------------------------------- #
# qa_metrics: engine aggregation vs pandas on the raw rows
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def two_queue(tmp_path_factory):
    tables, truth = sc.simulate(sc.TWO_QUEUE_BERNOULLI, vendors=40, seed=3)
    folder = tmp_path_factory.mktemp("twoq")
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return open_dataset(folder), tables


def _pandas_reference(tables, strata_col, fpc=False):
    j = tables["qa_audits"].merge(tables["decisions"], on="decision_id")
    j["y"] = (j.qa_action == j.action).astype(float)
    rows = {}
    for vendor, g in j.groupby("vendor"):
        p, lo, hi, _ = design_interval(g.y, g.sample_weight, g[strata_col], fpc=fpc)
        rows[vendor] = (p, len(g), lo, hi)
    return pd.DataFrame(rows, index=["value", "n", "ci_low", "ci_high"]).T


@pytest.mark.parametrize(("strata", "col"), [("auto", "stratum"), ("weight", "sample_weight")])
def test_engine_aggregation_equals_pandas_on_raw_rows(two_queue, strata, col):
    ds, tables = two_queue
    out = qa_metrics(ds, market=sc.MARKET, by=["vendor"], start="2026-03-02", strata=strata)
    acc = out[out.metric == "accuracy"].set_index("vendor")[["value", "n", "ci_low", "ci_high"]]
    ref = _pandas_reference(tables, col).loc[acc.index]
    np.testing.assert_allclose(acc.to_numpy(float), ref.to_numpy(float), rtol=1e-9)


def test_finite_population_correction_from_the_weights(two_queue):
    ds, tables = two_queue
    kw = {"market": sc.MARKET, "by": ["vendor"], "start": "2026-03-02"}
    out = qa_metrics(ds, fpc=True, **kw)
    acc = out[out.metric == "accuracy"].set_index("vendor")[["value", "n", "ci_low", "ci_high"]]
    ref = _pandas_reference(tables, "stratum", fpc=True).loc[acc.index]
    np.testing.assert_allclose(acc.to_numpy(float), ref.to_numpy(float), rtol=1e-9)
    # audit rates of 5% and 20%: the corrected interval is narrower, same estimate
    plain = qa_metrics(ds, **kw)
    plain = plain[plain.metric == "accuracy"].set_index("vendor").loc[acc.index]
    assert acc.value.to_numpy() == pytest.approx(plain.value.to_numpy())
    assert ((acc.ci_high - acc.ci_low) < (plain.ci_high - plain.ci_low)).all()


def test_strata_modes(two_queue):
    ds, _ = two_queue
    kw = {"market": sc.MARKET, "by": ["vendor"], "start": "2026-03-02"}
    none = qa_metrics(ds, strata="none", **kw)
    auto = qa_metrics(ds, **kw)
    assert none.value.to_numpy() == pytest.approx(auto.value.to_numpy())
    assert not np.allclose(none.ci_low, auto.ci_low)
    with pytest.raises(QualityLabError, match="strata must be"):
        qa_metrics(ds, strata="queue", **kw)


def test_strata_column_needs_the_column(tmp_path):
    tables, _ = sc.simulate(sc.TWO_QUEUE, vendors=2, seed=1)
    tables["qa_audits"] = tables["qa_audits"].drop(columns="stratum")
    for name, df in tables.items():
        df.to_parquet(tmp_path / f"{name}.parquet", index=False)
    ds = open_dataset(tmp_path)
    with pytest.raises(QualityLabError, match="needs a 'stratum' column"):
        qa_metrics(ds, market=sc.MARKET, strata="column", start="2026-03-02")
    # auto falls back to the weights, which here are the same strata
    out = qa_metrics(ds, market=sc.MARKET, by=["vendor"], start="2026-03-02")
    assert out.ci_low.notna().all()


# --------------------------------------------------------------------------- #
# coverage (the full 2,000-replicate study is benchmarks/stratified_coverage.py)
# --------------------------------------------------------------------------- #
def test_two_queue_design_covers_95_percent_with_the_right_width(tmp_path):
    # Issue #17: before this change 98.8% coverage, width 0.137 vs spread 0.105.
    r = sc.coverage(sc.TWO_QUEUE, vendors=400, seed=17, folder=tmp_path)
    assert r["replicates"] == 400
    assert 0.93 <= r["coverage"] <= 0.97  # 95% +- 2 pp (binomial SE 1.1 pp at 400)
    assert 0.9 <= r["mean_width"] / r["spread"] <= 1.1


# --------------------------------------------------------------------------- #
# AI precision / recall / FPR from stratified audits: domain rates
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    tables, _ = sc.simulate(sc.TWO_QUEUE_BERNOULLI, vendors=6, seed=5)
    rng = np.random.default_rng(5)
    d, a = tables["decisions"], tables["qa_audits"]
    # some items violate (QA says ban), the model's score is noisy
    violating = rng.random(len(a)) < 0.4
    a["qa_action"] = np.where(violating, "ban", "no_action")
    a["qa_policy"] = np.where(violating, "spam", "none")
    d["ai_model"] = "m1"
    d["ai_score"] = np.clip(0.3 * violating + rng.random(len(a)) * 0.6, 0, 1)
    folder = tmp_path_factory.mktemp("scored")
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return open_dataset(folder), tables


def _domain_reference(g, domain, event):
    """Stratified domain rate (Lohr 2010, §4.3) and its interval."""
    r, lo, hi, _ = design_interval(event, g.sample_weight, g.stratum, domain=domain)
    return r, lo, hi


def test_ai_rates_from_stratified_audits_against_raw_rows(scored):
    from qualitylab.aieval import ai_metrics

    ds, tables = scored
    out = ai_metrics(
        ds, market=sc.MARKET, by=["vendor"], start="2026-03-02", threshold=0.5, f1_interval=False
    )
    j = tables["qa_audits"].merge(tables["decisions"], on="decision_id")
    for vendor, g in j.groupby("vendor"):
        pred = (g.ai_score >= 0.5).to_numpy()
        truth = (g.qa_action != "no_action").to_numpy()
        for metric, domain, event in (
            ("ai_precision", pred, truth),
            ("ai_recall", truth, pred),
            ("ai_fpr", ~truth, pred),
        ):
            row = out[(out.vendor == vendor) & (out.metric == metric)].iloc[0]
            ref = _domain_reference(g, domain, event)
            assert (row.value, row.ci_low, row.ci_high) == pytest.approx(ref, rel=1e-9)


def test_ai_alone_accuracy_is_stratified_as_qa_metrics(tmp_path):
    from qualitylab.metrics import override_quality

    tables, _ = sc.simulate(sc.TWO_QUEUE, vendors=5, seed=8)
    tables["decisions"]["routing"] = "ai_auto"
    tables["decisions"]["moderator_id"] = None
    for name, df in tables.items():
        df.to_parquet(tmp_path / f"{name}.parquet", index=False)
    ds = open_dataset(tmp_path)
    kw = {"market": sc.MARKET, "by": ["vendor"], "start": "2026-03-02"}
    acc = qa_metrics(ds, **kw)
    acc = acc[acc.metric == "accuracy"].set_index("vendor")
    alone = override_quality(ds, **kw).set_index("vendor")
    assert (alone.metric == "ai_alone_accuracy").all()
    cols = ["value", "n", "ci_low", "ci_high"]
    np.testing.assert_allclose(
        alone[cols].to_numpy(float), acc.loc[alone.index, cols].to_numpy(float)
    )
