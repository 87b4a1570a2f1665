"""AI model evaluation: binned metrics against scikit-learn, statsmodels and scipy."""

from __future__ import annotations

import math
import warnings

import ibis
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from qualitylab import DataContractError, ParameterError
from qualitylab.aieval import (
    AI_METRICS,
    MSG_TARGET,
    CalibrationResult,
    ThresholdRecommendation,
    auc_roc,
    average_precision,
    calibration,
    calibration_histogram,
    compare_models,
    confusion_at,
    pr_curve,
    recommend_threshold,
    roc_curve,
    score_histogram,
    threshold_sweep,
)
from qualitylab.stats import mann_whitney

HYPOTHESIS = settings(max_examples=50, deadline=None)
ENGINE_HYPOTHESIS = settings(max_examples=20, deadline=None)  # ~0.3 s per example (2 queries)


def scored(
    n: int,
    seed: int,
    *,
    decimals: int | None = 3,
    prevalence: float = 0.3,
    shift: float = 0.0,
    markets: tuple[str, ...] = ("SG", "ID", "TH"),
) -> pd.DataFrame:
    """Scores from two betas (positives higher); 3 decimals put every score on a 1/1000 edge."""
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < prevalence
    score = np.where(truth, rng.beta(4 + shift, 2, n), rng.beta(2, 4 + shift, n))
    if decimals is not None:
        # k/1000 exactly; keep 1.0 out so each bin of 1000 holds one distinct score
        score = np.minimum(np.round(score, decimals), 0.999)
    return pd.DataFrame(
        {
            "ai_score": score,
            "truth": truth,
            "market": rng.choice(list(markets), n),
            "w": rng.uniform(0.2, 3.0, n),
        }
    )


@pytest.fixture(scope="module")
def df3() -> pd.DataFrame:
    return scored(6000, 1)


@pytest.fixture(scope="module")
def hist3(df3: pd.DataFrame) -> pd.DataFrame:
    return score_histogram(ibis.memtable(df3), bins=1000)


# --------------------------------------------------------------------------- #
# score_histogram: the engine step
# --------------------------------------------------------------------------- #
def test_histogram_shape_columns_and_order(df3, hist3):
    assert list(hist3.columns) == [
        "bin", "lower", "upper", "pos", "neg", "n_pos", "n_neg", "pos_w2", "neg_w2"
    ]  # fmt: skip
    assert hist3["bin"].is_monotonic_increasing and hist3["bin"].is_unique
    assert hist3["pos"].sum() == df3["truth"].sum()
    assert hist3["neg"].sum() == (~df3["truth"]).sum()
    assert hist3["pos"].dtype == "int64"
    assert (hist3["n_pos"] == hist3["pos"]).all() and (hist3["pos_w2"] == hist3["pos"]).all()
    np.testing.assert_array_equal(hist3["lower"], hist3["bin"] / 1000)
    assert hist3.attrs["excluded_rows"] == {"null score": 0, "null truth": 0}


def test_scores_on_edges_land_in_their_own_bin():
    # floor(0.291 * 1000) is 290 in float64: the engine corrects it to bin 291
    k = np.arange(1000)
    df = pd.DataFrame({"ai_score": np.append(k / 1000, 1.0), "truth": True})
    hist = score_histogram(ibis.memtable(df), bins=1000)
    assert hist["bin"].tolist() == list(range(1000))
    assert hist["pos"].tolist() == [1] * 999 + [2]  # 1.0 joins the last bin
    ten = score_histogram(ibis.memtable(df), bins=10)
    np.testing.assert_array_equal(ten["pos"], np.bincount(np.minimum(k // 100, 9), minlength=10)
                                  + np.eye(10, dtype=int)[9])  # fmt: skip


def test_engine_returns_aggregates_only():
    """200k rows, 3 segments: at most bins x groups rows come back, never row-level."""
    df = scored(200_000, 2, decimals=None)
    df.loc[::1000, "ai_score"] = np.nan  # null scores come back as one status row per group
    with pytest.warns(RuntimeWarning, match=r"excluded 200 with a null score of 200000 row"):
        hist = score_histogram(ibis.memtable(df), by=["market"], bins=100)
    assert len(hist) <= 100 * 3
    assert hist.groupby("market")["bin"].nunique().max() <= 100
    assert int(hist["n_pos"].sum() + hist["n_neg"].sum()) == 200_000 - 200
    assert hist.attrs["excluded_rows"]["null score"] == 200


def test_grouped_histogram_equals_filtered(df3):
    table = ibis.memtable(df3)
    by_market = score_histogram(table, by=["market"], bins=50)
    assert list(by_market.columns[:2]) == ["market", "bin"]
    assert by_market["market"].tolist() == sorted(by_market["market"])
    for market in ("ID", "SG", "TH"):
        alone = score_histogram(table.filter(table.market == market), bins=50)
        got = by_market[by_market["market"] == market].drop(columns="market")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), alone, check_dtype=False)


def test_null_truth_excluded_with_warning():
    df = pd.DataFrame({"ai_score": [0.2, 0.4, None, 0.9], "truth": [True, None, True, False]})
    with pytest.warns(RuntimeWarning, match="1 with a null score and 1 with a null truth of 4"):
        hist = score_histogram(ibis.memtable(df), bins=10)
    assert hist["pos"].sum() + hist["neg"].sum() == 2
    assert hist.attrs["excluded_rows"] == {"null score": 1, "null truth": 1}


@pytest.mark.parametrize(
    ("frame", "column", "count", "example"),
    [
        ({"ai_score": [0.2, 1.5, 1.5], "truth": [1, 0, 1]}, "ai_score", 2, 1.5),
        ({"ai_score": [0.2, -0.1, 0.3], "truth": [1, 0, 1]}, "ai_score", 1, -0.1),
        ({"ai_score": [0.2, 0.5, 0.3], "truth": [1, 2, 1]}, "truth", 1, 2.0),
        ({"ai_score": [0.2, 0.5], "truth": [1, 0], "w": [1.0, -2.0]}, "w", 1, -2.0),
    ],
)
def test_invalid_rows_raise_with_count_and_example(frame, column, count, example):
    weight = "w" if "w" in frame else None
    with pytest.raises(DataContractError, match=f"'{column}' has {count} row") as err:
        score_histogram(ibis.memtable(pd.DataFrame(frame)), weight=weight, bins=10)
    assert err.value.column == column and err.value.bad_rows == count
    assert err.value.example == pytest.approx(example)


def test_bad_arguments():
    table = ibis.memtable(pd.DataFrame({"ai_score": [0.2], "truth": [True], "q": ["a"]}))
    with pytest.raises(DataContractError, match="has no column 'score'") as err:
        score_histogram(table, score="score")
    assert err.value.column == "score"
    with pytest.raises(DataContractError, match="'q' must be boolean or 0/1"):
        score_histogram(table, truth="q")
    with pytest.raises(ParameterError, match="must be an ibis Table"):
        score_histogram(pd.DataFrame({"ai_score": [0.2], "truth": [True]}))  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="bins must be an integer >= 1; got 0"):
        score_histogram(table, bins=0)
    with pytest.raises(ParameterError, match=r"by must not contain \['bin'\]"):
        score_histogram(table.mutate(bin=1), by=["bin"])


# --------------------------------------------------------------------------- #
# threshold sweep against scikit-learn at the bin edges
# --------------------------------------------------------------------------- #
def _sk_at(df: pd.DataFrame, t: float, weight: np.ndarray | None = None) -> dict[str, float]:
    y, pred = df["truth"].to_numpy(), df["ai_score"].to_numpy() >= t
    tn, fp, fn, tp = skm.confusion_matrix(
        y, pred, labels=[False, True], sample_weight=weight
    ).ravel()
    kw = {"sample_weight": weight, "zero_division": np.nan}
    return {
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "precision": skm.precision_score(y, pred, **kw),
        "recall": skm.recall_score(y, pred, **kw),
        "f1": skm.f1_score(y, pred, **kw),
    }  # fmt: skip


def test_sweep_matches_sklearn_at_every_edge(df3, hist3):
    sweep = threshold_sweep(hist3)
    assert sweep["threshold"].is_monotonic_increasing
    for _, row in sweep.iloc[::29].iterrows():
        ref = _sk_at(df3, row["threshold"])
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, rel=1e-12), (row["threshold"], key)
        assert row["fpr"] == pytest.approx(ref["fp"] / (ref["fp"] + ref["tn"]), rel=1e-12)
        assert row["fnr"] == pytest.approx(1 - ref["recall"], rel=1e-12)


def test_sweep_intervals_are_wilson(hist3):
    sweep = threshold_sweep(hist3, confidence_level=0.9).iloc[::50]
    for metric, num, den in (
        ("precision", sweep["tp"], sweep["tp"] + sweep["fp"]),
        ("recall", sweep["tp"], sweep["tp"] + sweep["fn"]),
        ("fpr", sweep["fp"], sweep["fp"] + sweep["tn"]),
    ):
        # statsmodels: proportion_confint(count, nobs, alpha=0.1, method="wilson")
        low, high = proportion_confint(num, den, alpha=0.1, method="wilson")
        np.testing.assert_allclose(sweep[f"{metric}_ci_low"], low, rtol=1e-10)
        np.testing.assert_allclose(sweep[f"{metric}_ci_high"], high, rtol=1e-10)


def test_weighted_sweep_matches_sklearn_sample_weight(df3):
    hist = score_histogram(ibis.memtable(df3), weight="w", bins=1000)
    assert hist["pos"].dtype == "float64"
    assert hist["n_pos"].sum() == df3["truth"].sum()
    np.testing.assert_allclose(hist["pos_w2"].sum(), (df3["w"] ** 2)[df3["truth"]].sum())
    sweep = threshold_sweep(hist)
    for _, row in sweep.iloc[::37].iterrows():
        ref = _sk_at(df3, row["threshold"], weight=df3["w"].to_numpy())
        for key, value in ref.items():
            assert row[key] == pytest.approx(value, rel=1e-9), (row["threshold"], key)
    # the Wilson interval uses the Kish effective size, narrower data -> wider interval
    plain = threshold_sweep(score_histogram(ibis.memtable(df3), bins=1000))
    width = sweep["recall_ci_high"] - sweep["recall_ci_low"]
    plain_width = plain["recall_ci_high"] - plain["recall_ci_low"]
    assert (width.iloc[100:800] > plain_width.iloc[100:800]).mean() > 0.9


def test_null_weight_counts_as_one():
    df = pd.DataFrame({"ai_score": [0.2, 0.7, 0.9], "truth": [0, 1, 1], "w": [None, 2.0, 1.0]})
    hist = score_histogram(ibis.memtable(df), weight="w", bins=10)
    assert hist["pos"].tolist() == [0.0, 2.0, 1.0] and hist["neg"].tolist() == [1.0, 0.0, 0.0]


def test_grouped_sweep_equals_per_group(df3):
    hist = score_histogram(ibis.memtable(df3), by=["market"], bins=100)
    sweep = threshold_sweep(hist, by=["market"])
    assert sweep["market"].is_monotonic_increasing
    for market, sub in hist.groupby("market"):
        alone = threshold_sweep(sub.drop(columns="market"))
        got = sweep[sweep["market"] == market].drop(columns="market").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, alone)


def test_unlisted_group_column_is_an_error(df3):
    hist = score_histogram(ibis.memtable(df3), by=["market"], bins=100)
    with pytest.raises(ParameterError, match=r"column\(s\) \['market'\] that are neither"):
        threshold_sweep(hist)
    with pytest.raises(ParameterError, match="takes one histogram"):
        auc_roc(hist)


@st.composite
def small_scored(draw: st.DrawFn) -> pd.DataFrame:
    n = draw(st.integers(1, 60))
    ks = draw(st.lists(st.integers(0, 19), min_size=n, max_size=n))
    ys = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return pd.DataFrame({"ai_score": np.array(ks) / 20, "truth": ys})


@ENGINE_HYPOTHESIS
@given(df=small_scored(), k=st.integers(0, 19))
def test_confusion_at_table_hist_and_sklearn_agree(df, k):
    """Exact engine count, histogram count and scikit-learn agree at any edge."""
    t = k / 20
    table = ibis.memtable(df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # undefined metrics are checked below
        exact = confusion_at(table, t, n_resamples=50)
        binned = confusion_at(score_histogram(table, bins=20), t, n_resamples=50)
    pd.testing.assert_frame_equal(exact, binned)
    ref = _sk_at(df, t)
    value = exact.set_index("metric")["value"]
    assert value["ai_precision"] == pytest.approx(ref["precision"], nan_ok=True)
    assert value["ai_recall"] == pytest.approx(ref["recall"], nan_ok=True)
    if math.isnan(ref["precision"]) or math.isnan(ref["recall"]):
        assert math.isnan(value["ai_f1"])  # never a misleading 0 when F1 is undefined
    else:
        assert value["ai_f1"] == pytest.approx(ref["f1"])
    n = exact.set_index("metric")["n"]
    assert n["ai_precision"] == ref["tp"] + ref["fp"] and n["ai_fpr"] == ref["fp"] + ref["tn"]


def _pandas_hist(df: pd.DataFrame, bins: int) -> pd.DataFrame:
    """The histogram built in numpy, for property tests of the pandas-side statistics."""
    k = np.minimum(np.round(df["ai_score"].to_numpy() * bins).astype(int), bins - 1)
    y = df["truth"].to_numpy(dtype=bool)
    pos, neg = np.bincount(k[y], minlength=bins), np.bincount(k[~y], minlength=bins)
    keep = (pos + neg) > 0
    idx = np.flatnonzero(keep)
    return pd.DataFrame(
        {
            "bin": idx,
            "lower": idx / bins,
            "upper": (idx + 1) / bins,
            "pos": pos[keep],
            "neg": neg[keep],
        }
    )


@HYPOTHESIS
@given(df=small_scored())
def test_sweep_invariants(df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sweep = threshold_sweep(_pandas_hist(df, 20))
    assert ((sweep["tp"] + sweep["fn"]) == df["truth"].sum()).all()
    assert ((sweep["fp"] + sweep["tn"]) == (~df["truth"]).sum()).all()
    assert sweep["tp"].is_monotonic_decreasing and sweep["fp"].is_monotonic_decreasing
    for m in ("precision", "recall", "fpr"):
        ok = sweep[m].notna()
        assert (sweep.loc[ok, f"{m}_ci_low"] <= sweep.loc[ok, m] + 1e-12).all()
        assert (sweep.loc[ok, m] <= sweep.loc[ok, f"{m}_ci_high"] + 1e-12).all()
        assert sweep.loc[~ok, [f"{m}_ci_low", f"{m}_ci_high"]].isna().all().all()


# --------------------------------------------------------------------------- #
# ranking: ROC, PR, AUC, AP
# --------------------------------------------------------------------------- #
def test_auc_within_0002_of_sklearn_on_100k_continuous_scores():
    df = scored(100_000, 3, decimals=None)
    hist = score_histogram(ibis.memtable(df), bins=1000)
    exact = skm.roc_auc_score(df["truth"], df["ai_score"])  # sklearn, unbinned
    assert abs(auc_roc(hist) - exact) < 0.002


def test_auc_exact_when_bins_hold_one_score(df3, hist3):
    assert auc_roc(hist3) == pytest.approx(
        skm.roc_auc_score(df3["truth"], df3["ai_score"]), abs=1e-12
    )
    weighted = score_histogram(ibis.memtable(df3), weight="w", bins=1000)
    ref = skm.roc_auc_score(df3["truth"], df3["ai_score"], sample_weight=df3["w"])
    assert auc_roc(weighted) == pytest.approx(ref, abs=1e-12)


def test_auc_matches_mann_whitney_with_ties():
    # three tied scores across classes: ties count half (scipy/DeLong convention)
    df = pd.DataFrame({"ai_score": [0.5, 0.5, 0.5, 0.2, 0.8], "truth": [1, 0, 0, 0, 1]})
    hist = score_histogram(ibis.memtable(df), bins=10)
    mw = mann_whitney(df.loc[df.truth == 1, "ai_score"], df.loc[df.truth == 0, "ai_score"])
    assert auc_roc(hist) == pytest.approx(mw.estimate)  # 5/6


def test_roc_curve_matches_sklearn(df3, hist3):
    fpr, tpr, thr = skm.roc_curve(df3["truth"], df3["ai_score"], drop_intermediate=False)
    roc = roc_curve(hist3)
    np.testing.assert_allclose(roc["fpr"], fpr, rtol=1e-12)
    np.testing.assert_allclose(roc["tpr"], tpr, rtol=1e-12)
    np.testing.assert_array_equal(roc["threshold"], thr)


def test_average_precision_matches_sklearn(df3, hist3):
    ref = skm.average_precision_score(df3["truth"], df3["ai_score"])
    assert average_precision(hist3) == pytest.approx(ref, abs=1e-12)
    pr = pr_curve(hist3)
    precision, recall, _ = skm.precision_recall_curve(df3["truth"], df3["ai_score"])
    np.testing.assert_allclose(pr["precision"], precision[:-1][::-1], rtol=1e-12)
    np.testing.assert_allclose(pr["recall"], recall[:-1][::-1], rtol=1e-12)


def test_average_precision_close_on_continuous_scores():
    df = scored(20_000, 4, decimals=None)
    hist = score_histogram(ibis.memtable(df), bins=1000)
    ref = skm.average_precision_score(df["truth"], df["ai_score"])
    assert average_precision(hist) == pytest.approx(ref, abs=0.002)


def test_per_group_auc_with_groupby_apply(df3):
    hist = score_histogram(ibis.memtable(df3), by=["market"], bins=1000)
    per_market = hist.groupby("market").apply(auc_roc)
    for market, value in per_market.items():
        sub = df3[df3["market"] == market]
        assert value == pytest.approx(skm.roc_auc_score(sub["truth"], sub["ai_score"]), abs=1e-12)


# --------------------------------------------------------------------------- #
# confusion_at
# --------------------------------------------------------------------------- #
def test_confusion_at_long_format_and_denominators(df3):
    res = confusion_at(ibis.memtable(df3), 0.6, by=["market"])
    assert list(res.columns) == ["market", "metric", "value", "n", "ci_low", "ci_high"]
    assert res["metric"].tolist() == list(AI_METRICS) * 3
    for market, sub in res.groupby("market"):
        d = df3[df3["market"] == market]
        ref = _sk_at(d, 0.6)
        got = sub.set_index("metric")
        assert got.loc["ai_precision", "n"] == ref["tp"] + ref["fp"]
        assert got.loc["ai_recall", "n"] == got.loc["ai_fnr", "n"] == ref["tp"] + ref["fn"]
        assert got.loc["ai_fpr", "n"] == ref["fp"] + ref["tn"]
        assert got.loc["ai_f1", "value"] == pytest.approx(ref["f1"])
        assert got.loc["ai_fnr", "value"] == pytest.approx(1 - ref["recall"])
        assert (got["ci_low"] <= got["value"]).all() and (got["value"] <= got["ci_high"]).all()
        # FNR's interval is the complement of recall's
        assert got.loc["ai_fnr", "ci_low"] == pytest.approx(1 - got.loc["ai_recall", "ci_high"])


def test_confusion_at_table_threshold_between_edges_is_exact(df3):
    df = scored(3000, 5, decimals=None)
    res = confusion_at(ibis.memtable(df), 0.61234).set_index("metric")
    ref = _sk_at(df, 0.61234)
    assert res.loc["ai_precision", "value"] == pytest.approx(ref["precision"], rel=1e-12)
    hist = score_histogram(ibis.memtable(df), bins=1000)
    with pytest.raises(ParameterError, match="not a lower bin edge of hist"):
        confusion_at(hist, 0.61234)
    # 0.1 + 0.2 is 0.30000000000000004: snapped to the edge 0.3
    snapped = confusion_at(hist, 0.1 + 0.2).set_index("metric")["value"]
    assert snapped["ai_recall"] == pytest.approx(_sk_at(df, 0.3)["recall"])


def test_f1_bootstrap_interval_reproducible_and_plausible(df3):
    table = ibis.memtable(df3)
    a = confusion_at(table, 0.55, seed=1).set_index("metric").loc["ai_f1"]
    b = confusion_at(table, 0.55, seed=1).set_index("metric").loc["ai_f1"]
    assert a["ci_low"] == b["ci_low"] and a["ci_high"] == b["ci_high"]
    assert a["ci_low"] < a["value"] < a["ci_high"]
    # comparable width to a Wilson interval at the F1 denominator
    assert 0.3 < (a["ci_high"] - a["ci_low"]) / (4 * math.sqrt(0.25 / a["n"])) < 3


def test_f1_bootstrap_interval_is_per_segment_whatever_the_other_segments(df3):
    """Each segment's interval restarts from the seed: the same alone or among others."""
    small = df3.iloc[:300]
    alone = confusion_at(ibis.memtable(small), 0.55, seed=1).set_index("metric").loc["ai_f1"]
    parts = [df3.iloc[300:1000].assign(g="a"), small.assign(g="b"), small.assign(g="c")]
    many = confusion_at(ibis.memtable(pd.concat(parts)), 0.55, by=["g"], seed=1)
    f1 = many[many["metric"] == "ai_f1"].set_index("g")
    for g in ("b", "c"):  # equal tables: equal intervals, equal to the one-segment call
        assert (f1.loc[g, "ci_low"], f1.loc[g, "ci_high"]) == (alone["ci_low"], alone["ci_high"])
    assert f1.loc["a", "ci_low"] != alone["ci_low"]


def _messages(record: pytest.WarningsRecorder) -> list[str]:
    """Our RuntimeWarnings only (ibis/pandas may add deprecation warnings)."""
    return [str(w.message) for w in record if w.category is RuntimeWarning]


def test_one_class_truth_gives_nan_and_warnings():
    df = pd.DataFrame({"ai_score": [0.1, 0.5, 0.9], "truth": [False, False, False]})
    with pytest.warns(RuntimeWarning) as rec:
        res = confusion_at(ibis.memtable(df), 0.5).set_index("metric")
    assert _messages(rec) == [
        "ai_recall is undefined (no actual positives); returning NaN",
        "ai_fnr is undefined (no actual positives); returning NaN",
        "ai_f1 is undefined (precision or recall is undefined); returning NaN",
    ]
    assert {w.filename for w in rec if w.category is RuntimeWarning} == {__file__}
    assert res.loc["ai_precision", "value"] == 0.0  # 0 of 1 predicted positives: defined
    for metric in ("ai_recall", "ai_fnr", "ai_f1"):
        assert res.loc[metric, ["value", "ci_low", "ci_high"]].isna().all()
    assert res.loc["ai_recall", "n"] == 0
    hist = score_histogram(ibis.memtable(df), bins=10)
    with pytest.warns(RuntimeWarning, match="AUC is undefined"):
        assert math.isnan(auc_roc(hist))
    with pytest.warns(RuntimeWarning, match="average precision is undefined"):
        assert math.isnan(average_precision(hist))
    with pytest.warns(RuntimeWarning, match="ai_recall is undefined"):
        assert threshold_sweep(hist)["recall"].isna().all()


def test_no_predicted_positives_gives_nan_precision():
    df = pd.DataFrame({"ai_score": [0.1, 0.2, 0.3], "truth": [True, False, True]})
    with pytest.warns(RuntimeWarning) as rec:
        res = confusion_at(ibis.memtable(df), 0.95).set_index("metric")
    assert (
        "ai_precision is undefined (no predicted positives at this threshold)" in _messages(rec)[0]
    )
    assert math.isnan(res.loc["ai_precision", "value"]) and res.loc["ai_precision", "n"] == 0
    assert res.loc["ai_recall", "value"] == 0.0
    assert res.loc["ai_fpr", "value"] == 0.0


def test_only_negatives_in_a_segment_warns_with_segment_name():
    df = pd.DataFrame(
        {
            "ai_score": [0.1, 0.9, 0.8, 0.3],
            "truth": [0, 1, 0, 0],
            "market": ["SG", "SG", "ID", "ID"],
        }
    )
    with pytest.warns(RuntimeWarning) as rec:
        res = confusion_at(ibis.memtable(df), 0.5, by=["market"])
    assert _messages(rec)[0].startswith("ai_recall is undefined for market='ID'")
    sg = res[res["market"] == "SG"].set_index("metric")["value"]
    assert sg["ai_recall"] == 1.0


def test_undefined_segments_give_one_summary_warning_per_metric():
    df = pd.DataFrame(
        {
            "ai_score": [0.1, 0.2, 0.3, 0.4, 0.9, 0.8],
            "truth": [0, 0, 0, 0, 1, 0],
            "market": ["AU", "ID", "KR", "MY", "SG", "SG"],
        }
    )
    with pytest.warns(RuntimeWarning) as rec:
        res = confusion_at(ibis.memtable(df), 0.5, by=["market"])
    messages = _messages(rec)
    assert [m.split(" ")[0] for m in messages] == [
        "ai_precision",
        "ai_recall",
        "ai_fnr",
        "ai_f1",
    ]  # one each, not one per segment
    assert messages[1] == (
        "ai_recall is undefined for 4 segments (no actual positives); returning NaN, "
        "e.g. market='AU'; market='ID'; market='KR'; ..."
    )
    assert messages[0].startswith("ai_precision is undefined for 4 segments (no predicted")
    assert {w.filename for w in rec if w.category is RuntimeWarning} == {__file__}
    recall = res[res["metric"] == "ai_recall"].set_index("market")["value"]
    assert recall.drop("SG").isna().all() and recall["SG"] == 1.0


def test_empty_input_does_not_crash():
    df = pd.DataFrame({"ai_score": [None, None], "truth": [True, False]})
    with pytest.warns(RuntimeWarning):
        hist = score_histogram(ibis.memtable(df), bins=10)
        sweep = threshold_sweep(hist)
        res = confusion_at(hist, 0.5)
        assert math.isnan(auc_roc(hist))
    assert hist.empty and sweep.empty
    assert res["value"].isna().all() and (res["n"] == 0).all()


# --------------------------------------------------------------------------- #
# recommend_threshold
# --------------------------------------------------------------------------- #
def test_recommendation_reaches_target_precision(hist3):
    rec = recommend_threshold(hist3, target_precision=0.8, current_threshold=0.9)
    assert isinstance(rec, ThresholdRecommendation)
    assert rec.precision_ci_low >= 0.8 and rec.reason == ""
    sweep = threshold_sweep(hist3)
    below = sweep[sweep["threshold"] < rec.threshold]
    assert (below["precision_ci_low"] < 0.8).all()  # it is the lowest qualifying edge
    # moving down from 0.9 gains recall: the cost is negative
    assert rec.recall_cost < 0 and rec.current_recall < rec.recall
    assert rec.recall_cost == pytest.approx(rec.current_recall - rec.recall)
    point = recommend_threshold(hist3, target_precision=0.8, conservative=False)
    assert point.threshold <= rec.threshold and point.precision >= 0.8
    frame = rec.to_frame()
    assert len(frame) == 1 and frame.loc[0, "threshold"] == rec.threshold
    assert "95% Wilson lower bound of precision >= 0.8" in rec.method


def test_recommendation_recall_cost_positive_when_raising_threshold(hist3):
    rec = recommend_threshold(hist3, target_fpr=0.01, current_threshold=0.3)
    assert rec.threshold > 0.3 and rec.recall_cost > 0
    assert rec.fpr_ci_high <= 0.01
    assert math.isnan(recommend_threshold(hist3, target_fpr=0.01).recall_cost)


def test_impossible_target_gives_nan_and_warning(hist3):
    with pytest.warns(RuntimeWarning, match="no threshold meets"):
        rec = recommend_threshold(hist3, target_precision=0.9999)
    assert math.isnan(rec.threshold) and math.isnan(rec.recall)
    assert "no threshold meets" in rec.reason


def test_recommendation_needs_exactly_one_target(hist3):
    with pytest.raises(ParameterError, match=MSG_TARGET.format(got="neither")):
        recommend_threshold(hist3)
    with pytest.raises(ParameterError, match="exactly one of target_precision and target_fpr"):
        recommend_threshold(hist3, target_precision=0.9, target_fpr=0.01)
    with pytest.raises(ParameterError, match=r"target_precision must be in \(0, 1\]; got 1.5"):
        recommend_threshold(hist3, target_precision=1.5)


# --------------------------------------------------------------------------- #
# compare_models
# --------------------------------------------------------------------------- #
def test_identical_models_do_not_differ(hist3):
    res = compare_models(hist3, hist3.copy(), threshold=0.5)
    assert res["metric"].tolist() == ["ai_precision", "ai_recall", "ai_fpr", "ai_auc"]
    assert (res["difference"] == 0).all()
    assert ((res["ci_low"] < 0) & (res["ci_high"] > 0)).all()
    assert not res["significant"].any() and (res["pvalue"] == 1).all()


def test_clearly_different_models_are_significant():
    a = score_histogram(ibis.memtable(scored(20_000, 6)), bins=100)
    b = score_histogram(ibis.memtable(scored(20_000, 7, shift=3.0)), bins=100)
    res = compare_models(a, b, threshold=0.5).set_index("metric")
    assert res["significant"].all()
    assert res.loc["ai_auc", "difference"] > 0 and res.loc["ai_fpr", "difference"] < 0


def test_compare_models_against_statsmodels_and_delong():
    a_df, b_df = scored(2000, 8), scored(2500, 9, shift=0.5)
    a, b = (score_histogram(ibis.memtable(d), bins=1000) for d in (a_df, b_df))
    res = compare_models(a, b, threshold=0.5, confidence_level=0.9).set_index("metric")
    ra, rb = (_sk_at(d, 0.5) for d in (a_df, b_df))
    # statsmodels: confint_proportions_2indep(c_b, n_b, c_a, n_a, method="newcomb", alpha=0.1)
    low, high = confint_proportions_2indep(
        rb["tp"], rb["tp"] + rb["fp"], ra["tp"], ra["tp"] + ra["fp"], method="newcomb", alpha=0.1
    )
    assert res.loc["ai_precision", ["ci_low", "ci_high"]].tolist() == pytest.approx([low, high])
    assert res.loc["ai_recall", "value_b"] == pytest.approx(rb["recall"])
    # Holm as statsmodels multipletests(method="holm")
    holm = multipletests(res["pvalue"], method="holm")[1]
    np.testing.assert_allclose(res["pvalue_holm"], holm)
    # Hanley-McNeil SE is close to the DeLong SE of scipy-style mann_whitney
    se = []
    for d in (a_df, b_df):
        mw = mann_whitney(d.loc[d.truth, "ai_score"], d.loc[~d.truth, "ai_score"])
        se.append(mw.se)
    half = (res.loc["ai_auc", "ci_high"] - res.loc["ai_auc", "ci_low"]) / 2
    # Hanley-McNeil assumes exponential score distributions; here it is ~25% wider (conservative)
    delong_half = 1.6448536 * math.hypot(*se)
    assert delong_half < half < 1.4 * delong_half


# --------------------------------------------------------------------------- #
# calibration
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def continuous() -> pd.DataFrame:
    return scored(30_000, 10, decimals=None)


def test_brier_equals_sklearn(continuous):
    res = calibration(ibis.memtable(continuous), n_bins=10)
    assert isinstance(res, CalibrationResult)
    ref = skm.brier_score_loss(continuous["truth"], continuous["ai_score"])
    assert abs(res.brier - ref) < 1e-12
    assert res.n == len(continuous)


@pytest.mark.parametrize("n_bins", [10, 20])
def test_calibration_curve_equals_sklearn(continuous, n_bins):
    res = calibration(ibis.memtable(continuous), n_bins=n_bins)
    prob_true, prob_pred = calibration_curve(
        continuous["truth"], continuous["ai_score"], n_bins=n_bins, strategy="uniform"
    )
    np.testing.assert_allclose(res.curve["frac_pos"], prob_true, rtol=1e-12)
    np.testing.assert_allclose(res.curve["mean_score"], prob_pred, rtol=1e-12)
    assert list(res.curve.columns) == [
        "bin", "lower", "upper", "n", "mean_score", "frac_pos", "ci_low", "ci_high"
    ]  # fmt: skip
    # ECE / MCE from the same bins by numpy
    ids = np.minimum((continuous["ai_score"] * n_bins).astype(int), n_bins - 1)
    by_bin = continuous.groupby(ids).agg(
        s=("ai_score", "mean"), y=("truth", "mean"), n=("truth", "size")
    )
    gap = (by_bin["y"] - by_bin["s"]).abs()
    assert res.ece == pytest.approx((gap * by_bin["n"]).sum() / len(continuous), rel=1e-10)
    assert res.mce == pytest.approx(gap.max(), rel=1e-10)
    low, high = proportion_confint(
        res.curve["frac_pos"] * res.curve["n"], res.curve["n"], method="wilson"
    )
    np.testing.assert_allclose(res.curve["ci_low"], low, rtol=1e-9)


def test_calibration_from_grouped_histogram(continuous):
    agg = calibration_histogram(ibis.memtable(continuous), by=["market"], n_bins=10)
    assert len(agg) <= 10 * 3
    sg = agg[agg["market"] == "SG"].drop(columns="market")
    res = calibration(sg)
    sub = continuous[continuous["market"] == "SG"]
    assert abs(res.brier - skm.brier_score_loss(sub["truth"], sub["ai_score"])) < 1e-12
    assert res.to_frame()["metric"].tolist() == ["ece", "mce", "brier"]
    with pytest.raises(ParameterError, match="takes one histogram"):
        calibration(agg)
