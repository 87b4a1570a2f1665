"""Tests for qualitylab.agreement: published values, peers (sklearn, statsmodels,
krippendorff), the kappa paradox and edge cases."""

from __future__ import annotations

import math
import warnings

import krippendorff
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from qualitylab.agreement import (
    AgreementResult,
    ReliabilityData,
    agreement_from_long,
    cohen_kappa,
    cohen_kappa_from_counts,
    cohen_kappa_from_table,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
)
from qualitylab.errors import DataContractError, ParameterError

PEER = settings(max_examples=60, deadline=None)
nan = np.nan

# Krippendorff (2011) example C: 4 observers x 12 units, NaN = missing.
# The same data is irrCAC's `cac.raw4raters` (transposed).
EXAMPLE_C = np.array(
    [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
        [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
    ]
)

# irrCAC `distrib.6raters`: 15 subjects, 6 raters, 5 categories (counts).
DISTRIB_6RATERS = np.array(
    [
        [0, 0, 0, 6, 0],
        [0, 3, 0, 0, 3],
        [0, 1, 4, 0, 1],
        [0, 0, 0, 0, 6],
        [0, 3, 0, 3, 0],
        [2, 0, 4, 0, 0],
        [0, 0, 4, 0, 2],
        [2, 0, 3, 1, 0],
        [2, 0, 0, 4, 0],
        [0, 0, 0, 0, 6],
        [1, 0, 0, 5, 0],
        [1, 1, 0, 4, 0],
        [0, 3, 3, 0, 0],
        [1, 0, 0, 5, 0],
        [0, 2, 0, 3, 1],
    ]
)


def _table_to_ratings(table: np.ndarray) -> np.ndarray:
    """Subjects x categories counts -> raters x subjects ratings (equal raters)."""
    return np.array([np.repeat(np.arange(table.shape[1]), row) for row in table]).T


# --------------------------------------------------------------------------- #
# published reference values
# --------------------------------------------------------------------------- #
class TestReferenceValues:
    def test_cohen_kappa_wikipedia(self):
        # Wikipedia 'Cohen's kappa' worked example (two readers, 50 proposals):
        # yes/yes 20, yes/no 5, no/yes 10, no/no 15
        res = cohen_kappa_from_table([[20, 5], [10, 15]])
        assert abs(res.statistic - 0.4) <= 1e-9
        r1 = ["yes"] * 25 + ["no"] * 25
        r2 = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
        assert abs(cohen_kappa(r1, r2).statistic - 0.4) <= 1e-9

    def test_cohen_kappa_irrcac_cont3x3abstractors(self):
        # irrCAC vignette: kappa2.table(cont3x3abstractors) -> 0.7964094, se 0.05891072
        res = cohen_kappa_from_table([[13, 0, 0], [0, 20, 7], [0, 4, 56]])
        assert abs(res.statistic - 0.7964094) <= 1e-7
        assert abs(res.se - 0.05891072) <= 1e-7

    def test_fleiss_kappa_wikipedia(self):
        # Wikipedia 'Fleiss' kappa' worked example (10 subjects, 14 raters, 5 categories)
        table = [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
        res = fleiss_kappa(table)
        assert abs(res.statistic - 0.210) <= 5e-4
        assert res.n_items == 10 and res.n_raters == 14

    def test_fleiss_kappa_irrcac_distrib_6raters(self):
        # irrCAC vignette: fleiss.kappa.dist(distrib.6raters) -> 0.4139265, se 0.08119291
        res = fleiss_kappa(DISTRIB_6RATERS)
        assert abs(res.statistic - 0.4139265) <= 1e-7
        assert abs(res.se - 0.08119291) <= 1e-7

    def test_fleiss_kappa_irrcac_raw4raters_missing(self):
        # irrCAC vignette: fleiss.kappa.raw(cac.raw4raters) -> 0.76117, se 0.15302
        res = fleiss_kappa(agreement_from_long(_long(EXAMPLE_C)).counts())
        assert abs(res.statistic - 0.76117) <= 5e-6
        assert abs(res.se - 0.15302) <= 5e-6

    def test_gwet_ac1_irrcac_distrib_6raters(self):
        # irrCAC vignette: gwet.ac1.dist(distrib.6raters) -> 0.4448007, se 0.08418757
        res = gwet_ac1(_table_to_ratings(DISTRIB_6RATERS))
        assert abs(res.statistic - 0.4448007) <= 1e-7
        assert abs(res.se - 0.08418757) <= 1e-7

    def test_gwet_ac1_irrcac_raw4raters(self):
        # irrCAC vignette: gwet.ac1.raw(cac.raw4raters) -> AC1 0.77544, se 0.14295,
        # pa 0.8181818, pe 0.1903212
        res = gwet_ac1(EXAMPLE_C)
        assert abs(res.statistic - 0.77544) <= 5e-6
        assert abs(res.se - 0.14295) <= 5e-6
        assert abs(res.observed_agreement - 0.8181818) <= 1e-7
        assert abs(res.expected_agreement - 0.1903212) <= 1e-7

    @pytest.mark.parametrize(
        ("level", "expected"),
        [
            # Krippendorff K (2011) Computing Krippendorff's Alpha-Reliability, example C
            ("nominal", 0.743),
            ("ordinal", 0.815),
            ("interval", 0.849),
            ("ratio", 0.797),
        ],
    )
    def test_krippendorff_example_c(self, level, expected):
        res = krippendorff_alpha(EXAMPLE_C, level=level, n_boot=200)
        assert abs(res.statistic - expected) <= 1e-3
        assert res.ci_low <= res.statistic <= res.ci_high


def _long(matrix: np.ndarray) -> pd.DataFrame:
    raters, units = np.nonzero(~np.isnan(matrix))
    return pd.DataFrame(
        {
            "case_id": units,
            "rater_id": [f"r{r}" for r in raters],
            "label": matrix[raters, units],
        }
    )


# --------------------------------------------------------------------------- #
# Cohen's kappa vs sklearn and statsmodels
# --------------------------------------------------------------------------- #
@st.composite
def two_raters(draw):
    k = draw(st.integers(2, 5))
    n = draw(st.integers(2, 150))
    seed = draw(st.integers(0, 2**32 - 1))
    agree = draw(st.floats(0.0, 1.0))
    rng = np.random.default_rng(seed)
    r1 = rng.integers(0, k, n)
    r2 = np.where(rng.random(n) < agree, r1, rng.integers(0, k, n))
    return r1, r2


@pytest.mark.filterwarnings("ignore::RuntimeWarning:statsmodels")
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
@PEER
@given(data=two_raters())
def test_cohen_kappa_matches_sklearn_and_statsmodels(weights, data):
    r1, r2 = data
    labels = np.union1d(r1, r2)
    if len(labels) < 2 or (len(np.unique(r1)) == 1 and len(np.unique(r2)) == 1):
        return  # chance agreement 1: covered by the edge-case tests
    res = cohen_kappa(r1, r2, weights=weights)
    assert res.statistic == pytest.approx(
        cohen_kappa_score(r1, r2, weights=weights), rel=1e-9, abs=1e-12
    )
    table = confusion_matrix(r1, r2, labels=labels)
    sm = cohens_kappa(table, wt=weights) if weights else cohens_kappa(table)
    assert res.statistic == pytest.approx(sm.kappa, rel=1e-9, abs=1e-12)
    # statsmodels can return a rounding-negative variance (NaN std) where the
    # variance is 0; we clamp it at 0, so compare variances.
    assert res.se**2 == pytest.approx(max(sm.var_kappa, 0.0), rel=1e-7, abs=1e-12)
    if sm.var_kappa > 1e-10:
        assert res.se == pytest.approx(sm.std_kappa, rel=1e-7)
        assert res.ci_low == pytest.approx(sm.kappa_low, rel=1e-7, abs=1e-12)
        assert res.ci_high == pytest.approx(min(1.0, sm.kappa_upp), rel=1e-7, abs=1e-12)
    assert res.n_items == len(r1) and res.n_raters == 2


def test_cohen_kappa_labels_strings_and_missing():
    r1 = ["low", "mid", "high", None, "mid", "low"]
    r2 = ["low", "high", "high", "mid", np.nan, "mid"]
    order = ["low", "mid", "high"]
    res = cohen_kappa(r1, r2, labels=order, weights="linear")
    keep = [0, 1, 2, 5]
    expected = cohen_kappa_score(
        [r1[i] for i in keep], [r2[i] for i in keep], labels=order, weights="linear"
    )
    assert res.statistic == pytest.approx(expected)
    assert res.n_items == 4
    with pytest.raises(ParameterError, match="'high'"):
        cohen_kappa(r1, r2, labels=["low", "mid"])
    with pytest.raises(ParameterError, match=r"\[2, 3\]"):
        cohen_kappa([1, 2], [1, 2, 3])
    with pytest.raises(ParameterError, match="'cubic'"):
        cohen_kappa([1, 2], [1, 2], weights="cubic")


def test_cohen_kappa_all_agree_one_class_is_nan_with_warning():
    with pytest.warns(RuntimeWarning, match="undefined"):
        res = cohen_kappa([1, 1, 1], [1, 1, 1])
    assert math.isnan(res.statistic) and math.isnan(res.ci_low)
    assert res.observed_agreement == 1.0 and res.expected_agreement == 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(cohen_kappa_score([1, 1, 1], [1, 1, 1]))  # sklearn agrees


def test_cohen_kappa_perfect_agreement_is_one():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = cohen_kappa([0, 1, 1, 0, 1], [0, 1, 1, 0, 1])
    assert res.statistic == pytest.approx(1.0)
    assert res.se == pytest.approx(0.0, abs=1e-12)
    assert res.ci_high == 1.0


def test_cohen_kappa_one_rater_one_class():
    # rater 2 always says 0: defined, kappa = 0 (no agreement beyond chance)
    res = cohen_kappa([0, 1, 0, 1], [0, 0, 0, 0])
    assert res.statistic == pytest.approx(cohen_kappa_score([0, 1, 0, 1], [0, 0, 0, 0]))
    assert res.statistic == pytest.approx(0.0)


# --------------------------------------------------------------------------- #
# Cohen's kappa for many segments from long counts
# --------------------------------------------------------------------------- #
KAPPA_FIELDS = ("statistic", "se", "ci_low", "ci_high", "observed_agreement", "expected_agreement")


def _random_pairs(seed: int, segments: int = 300) -> pd.DataFrame:
    """Label pairs in many segments: 1-12 categories, perfect agreement, missing labels."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(segments):
        cats = np.array([f"c{i:02d}" for i in rng.choice(20, rng.integers(1, 13), replace=False)])
        n = int(rng.integers(1, 60))
        r1 = rng.choice(cats, n).astype(object)
        r2 = r1.copy() if rng.random() < 0.3 else rng.choice(cats, n).astype(object)
        parts.append(pd.DataFrame({"team": s % 4, "queue": f"q{s}", "r1": r1, "r2": r2}))
    pairs = pd.concat(parts, ignore_index=True)
    pairs.loc[rng.random(len(pairs)) < 0.01, "r2"] = None
    pairs.loc[pairs["queue"] == "q7", "r1"] = None  # a segment without a usable pair
    return pairs


def _counts(pairs: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    counts = pairs.groupby([*by, "r1", "r2"], dropna=False).size().rename("count").reset_index()
    return counts.sample(frac=1.0, random_state=0)  # row order must not matter


def test_cohen_kappa_from_counts_equals_cohen_kappa_per_segment():
    pairs = _random_pairs(1)
    by = ["team", "queue"]
    res = cohen_kappa_from_counts(
        _counts(pairs, by), by=by, rater1="r1", rater2="r2", confidence_level=0.9
    )
    groups = pairs.groupby(by, sort=True)
    assert len(res) == groups.ngroups
    undefined = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for (team, queue), g in groups:
            row = res[(res["team"] == team) & (res["queue"] == queue)]
            assert len(row) == 1
            ref = cohen_kappa(g["r1"].to_numpy(), g["r2"].to_numpy(), confidence_level=0.9)
            got = row.iloc[0]
            assert got["n_items"] == ref.n_items
            for f in KAPPA_FIELDS:  # the same arithmetic, so the same floats
                want = getattr(ref, f)
                assert got[f] == want or (math.isnan(got[f]) and math.isnan(want)), (queue, f)
            undefined += math.isnan(ref.statistic)
    assert 0 < undefined < len(res)  # one-category segments and the empty one are covered


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_cohen_kappa_from_counts_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(5):
        k, n = int(rng.integers(2, 6)), int(rng.integers(20, 200))
        r1 = rng.integers(0, k, n)
        r2 = np.where(rng.random(n) < rng.random(), r1, rng.integers(0, k, n))
        parts.append(pd.DataFrame({"seg": s, "r1": r1, "r2": r2}))
    pairs = pd.concat(parts, ignore_index=True)
    res = cohen_kappa_from_counts(_counts(pairs, ["seg"]), by=["seg"], rater1="r1", rater2="r2")
    for s, g in pairs.groupby("seg"):
        expected = cohen_kappa_score(g["r1"], g["r2"])
        assert res.loc[res["seg"] == s, "statistic"].item() == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_from_counts_null_keys_no_by_and_errors():
    counts = pd.DataFrame(
        {
            "vendor": ["A", "A", None, None],
            "rater1": ["x", "y", "x", "x"],
            "rater2": ["x", "y", "x", "y"],
            "count": [3, 2, 4, 1],
        }
    )
    res = cohen_kappa_from_counts(counts, by=["vendor"])
    assert res["vendor"].iloc[0] == "A" and pd.isna(res["vendor"].iloc[1])  # nulls last
    assert res["statistic"].iloc[0] == 1.0
    assert res["statistic"].iloc[1] == pytest.approx(
        cohen_kappa_score(list("xxxxx"), list("xxxxy"))
    )
    pooled = cohen_kappa_from_counts(counts)
    assert len(pooled) == 1 and pooled["n_items"].item() == 10
    empty = cohen_kappa_from_counts(counts.iloc[:0])
    assert empty["n_items"].item() == 0 and math.isnan(empty["statistic"].item())
    with pytest.raises(ParameterError, match="'label'"):
        cohen_kappa_from_counts(counts, rater1="label")
    with pytest.raises(ParameterError, match="-1"):
        cohen_kappa_from_counts(counts.assign(count=[3, 2, 4, -1]))


def test_agreement_result_object():
    res = cohen_kappa_from_table([[20, 5], [10, 15]], confidence_level=0.9)
    assert isinstance(res, AgreementResult)
    with pytest.raises(AttributeError):
        res.statistic = 1.0  # frozen
    low95, high95 = res.confidence_interval(0.95)
    assert low95 < res.ci_low and high95 > res.ci_high
    frame = res.to_frame()
    assert frame.shape == (1, 11)
    assert list(frame.columns) == [
        "method",
        "statistic",
        "se",
        "ci_low",
        "ci_high",
        "confidence_level",
        "ci_method",
        "n_items",
        "n_raters",
        "observed_agreement",
        "expected_agreement",
    ]
    with pytest.raises(ParameterError, match="square"):
        cohen_kappa_from_table([[1, 2, 3]])


# --------------------------------------------------------------------------- #
# the kappa paradox
# --------------------------------------------------------------------------- #
def test_kappa_paradox_rare_positives():
    # 96 % raw agreement, but positives are rare: kappa collapses, AC1 does not
    r1 = [0] * 95 + [1, 1, 1, 0, 0]
    r2 = [0] * 95 + [1, 0, 0, 1, 1]
    kappa = cohen_kappa(r1, r2)
    ac1 = gwet_ac1([r1, r2])
    assert kappa.observed_agreement == pytest.approx(0.96)
    assert ac1.observed_agreement == pytest.approx(0.96)
    assert kappa.statistic < 0.4  # "fair" on Landis & Koch
    assert ac1.statistic > 0.9  # "almost perfect"
    assert ac1.ci_low > kappa.ci_high


# --------------------------------------------------------------------------- #
# Fleiss' kappa vs statsmodels
# --------------------------------------------------------------------------- #
@st.composite
def rater_table(draw):
    n = draw(st.integers(2, 60))
    q = draw(st.integers(2, 6))
    m = draw(st.integers(2, 10))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(q) * draw(st.floats(0.2, 5.0)), size=n)
    return np.array([rng.multinomial(m, p) for p in probs])


@PEER
@given(table=rater_table())
def test_fleiss_kappa_matches_statsmodels(table):
    if (table.sum(axis=0) > 0).sum() < 2:
        return  # a single category used: chance agreement 1
    res = fleiss_kappa(table)
    assert res.statistic == pytest.approx(sm_fleiss_kappa(table), rel=1e-9, abs=1e-12)
    assert res.n_items == table.shape[0]


@PEER
@given(table=rater_table())
def test_reliability_counts_match_statsmodels_aggregate_raters(table):
    ratings = _table_to_ratings(table)  # raters x subjects
    rd = agreement_from_long(_long(ratings.astype(float)))
    sm_counts, sm_cats = aggregate_raters(ratings.T)  # statsmodels wants subjects x raters
    np.testing.assert_array_equal(rd.counts(), sm_counts)
    np.testing.assert_array_equal(rd.categories.to_numpy(), sm_cats)


def test_fleiss_kappa_edge_cases():
    with pytest.warns(RuntimeWarning, match="undefined"):
        res = fleiss_kappa([[3, 0], [3, 0]])
    assert math.isnan(res.statistic)
    with pytest.raises(ParameterError, match="-1"):
        fleiss_kappa([[3, -1], [2, 1]])


# --------------------------------------------------------------------------- #
# Krippendorff's alpha vs the krippendorff package
# --------------------------------------------------------------------------- #
@st.composite
def reliability_matrix(draw):
    raters = draw(st.integers(2, 6))
    units = draw(st.integers(2, 40))
    values = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    truth = rng.integers(1, values + 1, units)
    noise = rng.integers(1, values + 1, (raters, units))
    data = np.where(rng.random((raters, units)) < draw(st.floats(0, 1)), truth, noise).astype(float)
    data[rng.random((raters, units)) < draw(st.floats(0, 0.5))] = np.nan
    return data


def _peer_can_compute(data: np.ndarray) -> bool:
    present = data[~np.isnan(data)]
    pairable = (~np.isnan(data)).sum(axis=0) >= 2
    return np.unique(present).size >= 2 and bool(pairable.any())


@pytest.mark.filterwarnings("ignore::RuntimeWarning:krippendorff")
@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
@PEER
@given(data=reliability_matrix())
def test_krippendorff_alpha_matches_package(level, data):
    if not _peer_can_compute(data):
        return
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement=level)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = krippendorff_alpha(data, level=level, n_boot=0)
    assert res.statistic == pytest.approx(expected, rel=1e-9, abs=1e-12, nan_ok=True)


def test_krippendorff_alpha_strings_and_long_format():
    labels = np.array(["a", "b", "c", "d", "e"], dtype=object)
    as_strings = np.where(
        np.isnan(EXAMPLE_C), None, labels[np.nan_to_num(EXAMPLE_C).astype(int) - 1]
    )
    res = krippendorff_alpha(as_strings, n_boot=0)
    assert res.statistic == pytest.approx(0.7434211, abs=1e-7)
    with pytest.raises(ParameterError, match="'interval'"):
        krippendorff_alpha(as_strings, level="interval")
    rd = agreement_from_long(_long(EXAMPLE_C))
    assert isinstance(rd, ReliabilityData)
    assert krippendorff_alpha(rd, level="ordinal", n_boot=0).statistic == pytest.approx(
        0.8153875, abs=1e-7
    )


def test_krippendorff_bootstrap_interval():
    a = krippendorff_alpha(EXAMPLE_C, level="interval", n_boot=300, seed=1)
    b = krippendorff_alpha(EXAMPLE_C, level="interval", n_boot=300, seed=1)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.ci_method == "bootstrap" and a.distribution.shape == (300,)
    assert a.confidence_interval(0.5).low > a.ci_low
    assert a.n_items == 11  # unit 12 has a single rating
    none = krippendorff_alpha(EXAMPLE_C, n_boot=0)
    assert math.isnan(none.ci_low) and math.isnan(none.se)
    with pytest.warns(RuntimeWarning, match="undefined"):
        flat = krippendorff_alpha([[1, 1, 1], [1, 1, nan]], n_boot=10)
    assert math.isnan(flat.statistic)
    with pytest.raises(ParameterError, match="'cardinal'"):
        krippendorff_alpha(EXAMPLE_C, level="cardinal")


# --------------------------------------------------------------------------- #
# Gwet's AC1
# --------------------------------------------------------------------------- #
@PEER
@given(data=two_raters())
def test_gwet_ac1_two_raters_closed_form(data):
    # Gwet (2008) two-rater formula from the contingency table
    r1, r2 = data
    labels = np.union1d(r1, r2)
    q = labels.size
    if q < 2:
        return
    table = confusion_matrix(r1, r2, labels=labels) / len(r1)
    pa = np.trace(table)
    pi = (table.sum(axis=0) + table.sum(axis=1)) / 2
    pe = np.sum(pi * (1 - pi)) / (q - 1)
    res = gwet_ac1([r1, r2])
    assert res.statistic == pytest.approx((pa - pe) / (1 - pe), rel=1e-9, abs=1e-12)


def test_gwet_ac1_se_close_to_bootstrap():
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 3, 300)
    data = np.where(rng.random((4, 300)) < 0.7, truth, rng.integers(0, 3, (4, 300))).astype(float)
    data[rng.random(data.shape) < 0.2] = np.nan
    res = gwet_ac1(data)
    boot = [gwet_ac1(data[:, rng.integers(0, 300, 300)]).statistic for _ in range(300)]
    assert res.se == pytest.approx(np.std(boot, ddof=1), rel=0.2)


def test_gwet_ac1_categories_and_relabelling():
    r1 = ["x", "y", "y", "x", "x", "z"]
    r2 = ["x", "y", "x", "x", "z", "z"]
    as_codes = gwet_ac1([[0, 1, 1, 0, 0, 2], [0, 1, 0, 0, 2, 2]])
    assert gwet_ac1([r1, r2]).statistic == pytest.approx(as_codes.statistic)
    # declaring an unused fourth category changes q and hence chance agreement
    wider = gwet_ac1([r1, r2], categories=["x", "y", "z", "w"])
    assert wider.expected_agreement < as_codes.expected_agreement
    # one category used, two declared: everybody agrees -> AC1 = 1
    assert gwet_ac1([[1, 1, 1], [1, 1, 1]], categories=[0, 1]).statistic == pytest.approx(1.0)
    with pytest.warns(RuntimeWarning, match="undefined"):
        assert math.isnan(gwet_ac1([[1, 1, 1], [1, 1, 1]]).statistic)
    with pytest.raises(ParameterError, match="'v'"):
        gwet_ac1([["v", "x"], ["x", "x"]], categories=["x", "y"])


# --------------------------------------------------------------------------- #
# agreement_from_long
# --------------------------------------------------------------------------- #
def test_agreement_from_long_strings_categories_and_errors():
    long = pd.DataFrame(
        {
            "case_id": ["c1", "c1", "c2", "c2", "c3"],
            "rater_id": ["ann", "bob", "ann", "bob", "bob"],
            "label": ["high", "low", "mid", "mid", "low"],
        }
    )
    rd = agreement_from_long(long, categories=["low", "mid", "high"])
    assert rd.coded and list(rd.categories) == ["low", "mid", "high"]
    assert list(rd.raters) == ["ann", "bob"] and list(rd.items) == ["c1", "c2", "c3"]
    np.testing.assert_array_equal(rd.data, [[2, 1, nan], [0, 1, 0]])
    np.testing.assert_array_equal(rd.counts(), [[1, 0, 1], [0, 2, 0], [1, 0, 0]])
    renamed = long.rename(columns={"case_id": "item"})
    with pytest.raises(DataContractError, match="'case_id'"):
        agreement_from_long(renamed)
    assert agreement_from_long(renamed, item="item").data.shape == (2, 3)
    dup = pd.concat([long, long.iloc[[0]]])
    with pytest.raises(DataContractError, match="case_id='c1', rater_id='ann'") as info:
        agreement_from_long(dup)
    assert info.value.bad_rows == 2
    with pytest.raises(DataContractError, match="'high'"):
        agreement_from_long(long, categories=["low", "mid"])
