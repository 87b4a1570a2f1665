"""Red-team evaluation: recall per attack vs clean controls, Holm, FPR, ranking."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

from qualitylab.demo import generate
from qualitylab.errors import QualityLabError
from qualitylab.params import load_parameters
from qualitylab.redteam import (
    FPR_COLUMNS,
    RECALL_COLUMNS,
    red_team_evaluation,
)
from qualitylab.sources import open_dataset
from tests.conftest import tiny_tables, write_tables


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


def _planted(folder) -> pd.Series:
    inc = pd.read_csv(folder / "incidents.csv")
    return inc[inc.metric == "red_team_recall"].iloc[0]


def _assert_planted_attack_flagged(ds, planted: pd.Series) -> None:
    ev = red_team_evaluation(
        ds, market=planted.market, start=planted.start_date, end=planted.end_date
    )
    rec = ev.recall.set_index("attack")
    assert rec.loc[planted.segment, "flagged"]
    assert not rec.loc["none", "flagged"] and np.isnan(rec.loc["none", "pvalue"])
    # The planted attack is the least robust, far below clean controls.
    ranking = ev.ranking
    assert ranking.attack.iloc[-1] == planted.segment
    assert rec.loc[planted.segment, "diff_ci_high"] < -0.4
    assert planted.segment in set(ev.flagged.attack) and "none" not in set(ev.flagged.attack)


def test_planted_attack_is_flagged_and_clean_controls_are_not(ds, small_data):
    _assert_planted_attack_flagged(ds, _planted(small_data))


def test_planted_attack_at_another_seed(tmp_path):
    generate(tmp_path, markets=["ID"], scale="small", seed=2, days=56)
    _assert_planted_attack_flagged(open_dataset(tmp_path), _planted(tmp_path))


def test_planted_drop_is_new(ds, small_data):
    planted = _planted(small_data)
    before = red_team_evaluation(ds, market=planted.market, end="2026-10-25").recall
    during = red_team_evaluation(ds, market=planted.market, start=planted.start_date).recall
    b = before.set_index("attack").loc[planted.segment, "recall"]
    d = during.set_index("attack").loc[planted.segment, "recall"]
    assert d < b - 0.2


def test_recall_and_comparisons_match_references(ds, small_data):
    ev = red_team_evaluation(ds, by=["market", "language"])
    assert list(ev.recall.columns) == ["market", "language", *RECALL_COLUMNS]
    assert list(ev.fpr.columns) == ["market", "language", *FPR_COLUMNS]
    rt = pd.read_parquet(small_data / "red_team.parquet")
    params = load_parameters()
    rt["hit"] = rt.ai_score >= rt.market.map(lambda m: params.market(m).ai_threshold)
    viol = rt[rt.policy != "none"]
    ref = viol.groupby(["market", "language", "attack"]).hit.agg(["size", "sum"])
    got = ev.recall.set_index(["market", "language", "attack"])
    assert (got.n == ref["size"]).all() and (got.hits == ref["sum"]).all()
    # Wilson interval: statsmodels proportion_confint(method="wilson")
    lo, hi = proportion_confint(got.hits, got.n, method="wilson")
    np.testing.assert_allclose(got.ci_low, lo, atol=1e-12)
    np.testing.assert_allclose(got.ci_high, hi, atol=1e-12)
    # Newcombe: statsmodels confint_proportions_2indep(method="newcomb")
    att = got[got.index.get_level_values("attack") != "none"]
    for (m, lang, attack), r in att.iterrows():
        c = got.loc[(m, lang, "none")]
        exp = confint_proportions_2indep(r.hits, r.n, c.hits, c.n, method="newcomb")
        assert (r.diff_ci_low, r.diff_ci_high) == pytest.approx(exp, abs=1e-12), attack
        assert r.clean_recall == c.recall
    # Holm across every attack x segment: statsmodels multipletests(method="holm")
    holm = multipletests(att.pvalue, method="holm")[1]
    np.testing.assert_allclose(att.pvalue_holm, holm)
    assert (att.pvalue_holm >= att.pvalue).all()
    # FPR on clean negatives
    neg = rt[rt.policy == "none"].groupby(["market", "language"]).hit.agg(["size", "sum"])
    fpr = ev.fpr.set_index(["market", "language"])
    np.testing.assert_allclose(fpr.fpr, neg["sum"] / neg["size"])
    # Ranks run 1..3 within each segment, 1 = highest recall.
    ranks = ev.ranking.groupby(["market", "language"])["rank"].apply(list)
    assert all(sorted(r) == [1, 2, 3] for r in ranks)
    frame = ev.to_frame()
    assert set(frame.metric) == {"red_team_recall", "ai_fpr"}


def _red_team(n_per_attack: int, recall: dict[str, float], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for attack, r in recall.items():
        hits = rng.random(n_per_attack) < r
        rows += [{"attack": attack, "policy": "spam", "ai_score": 0.9 if h else 0.1} for h in hits]
    rows += [{"attack": "none", "policy": "none", "ai_score": 0.1}] * 50
    rows += [{"attack": "none", "policy": "none", "ai_score": 0.8}] * 5
    df = pd.DataFrame(rows)
    df["item_id"] = [f"rt{i}" for i in range(len(df))]
    df["created_at"] = pd.Timestamp("2026-03-02 03:00", tz="UTC")
    df["market"] = "SG"
    df["language"] = "en"
    df["ai_model"] = "mod-v3"
    return df[
        ["item_id", "created_at", "market", "language", "policy", "attack", "ai_model", "ai_score"]
    ]


def test_an_attack_as_good_as_clean_is_not_flagged(tmp_path):
    tables = tiny_tables()
    tables["red_team"] = _red_team(200, {"none": 0.8, "leetspeak": 0.8, "coded_symbols": 0.3})
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    ev = red_team_evaluation(ds, market="SG")
    flagged = dict(zip(ev.recall.attack, ev.recall.flagged, strict=True))
    assert flagged == {"coded_symbols": True, "leetspeak": False, "none": False}
    assert ev.fpr.fpr.item() == pytest.approx(5 / 55) and ev.fpr.false_positives.item() == 5
    assert ev.threshold == 0.5
    strict = red_team_evaluation(ds, market="SG", threshold=0.95)
    assert (strict.recall.recall == 0).all() and strict.fpr.fpr.item() == 0


def test_bad_input(tmp_path, ds):
    bare = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with pytest.raises(QualityLabError, match="red_team is not in the dataset"):
        red_team_evaluation(bare)
    with pytest.raises(QualityLabError, match="threshold must be in"):
        red_team_evaluation(ds, threshold=1.5)
    with pytest.raises(QualityLabError, match="unknown grain"):
        red_team_evaluation(ds, by=["vendor"])


def test_market_or_period_without_items_is_one_error_naming_them(tmp_path, small_data):
    # Issue #14: the table is present but has no rows for the market or period;
    # the error used to say only "no red-team items in the selection".
    tables = tiny_tables()
    rt = pd.read_parquet(small_data / "red_team.parquet")
    tables["red_team"] = rt[rt.market == "SG"]
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    with pytest.raises(QualityLabError, match=r"^no red_team items for market ID$"):
        red_team_evaluation(ds, market="ID")
    with pytest.raises(QualityLabError, match=r"market SG in 2027-01-01\.\.2027-01-31$"):
        red_team_evaluation(ds, market="SG", start="2027-01-01", end="2027-01-31")
    out = red_team_evaluation(ds, market="SG")  # the market's items are still evaluated
    assert out.recall["n"].sum() == (tables["red_team"].policy != "none").sum()
