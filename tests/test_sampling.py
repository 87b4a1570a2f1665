"""Detectability and QA sampling plans (issue #18), against independent computations."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import QualityLabError, open_dataset
from qualitylab.detect import SENSITIVITY_FDR, minimum_detectable_change
from qualitylab.params import load_parameters
from qualitylab.sampling import (
    DETECTABILITY_COLUMNS,
    PLAN_COLUMNS,
    audits_needed,
    detectability,
    neyman_allocation,
    sampling_plan,
    scan_series,
)
from tests.conftest import write_tables

# --------------------------------------------------------------------------- #
# A dataset shaped unlike the demo: Japan (UTC+9), three vendors with other
# names, two queues, policies, a stratum without audits, a stratum audited at
# 100% correct, AI scores on part of the items, and a vendor that stops before
# the period (no volume in it).
# --------------------------------------------------------------------------- #
MARKET = "JP"
WEEKS = 3
FIRST = pd.Timestamp("2026-03-02")  # a Monday
END = "2026-03-22"  # a Sunday: the period is 2026-03-02..2026-03-22
# (vendor, queue): decisions a day, audit probability, accuracy
DESIGN = {
    ("Acme", "appeal"): (12, 0.50, 0.90),
    ("Acme", "live_report"): (40, 0.20, 0.85),
    ("Bolt", "appeal"): (6, 0.60, 1.00),  # every audit correct: p = 1
    ("Bolt", "live_report"): (30, 0.00, 0.90),  # never audited
    ("Cora", "live_report"): (20, 0.30, 0.95),
}


def _tables(seed: int = 11) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    tz = load_parameters().market(MARKET).tz
    dec_rows, qa_rows = [], []
    for (vendor, queue), (per_day, audit_p, acc) in DESIGN.items():
        for d in range(WEEKS * 7 + 7):  # one week after the period too
            for i in range(int(rng.poisson(per_day))):
                did = f"{vendor}-{queue}-{d}-{i}"
                local = FIRST + pd.Timedelta(days=d, hours=1 + (i % 22), minutes=i % 60)
                created = local.tz_localize(tz).tz_convert("UTC")
                violating = rng.random() < 0.4
                enforced = violating if rng.random() < acc else not violating
                score = float(rng.random()) if i % 3 else np.nan
                dec_rows.append(
                    {
                        "decision_id": did,
                        "created_at": created,
                        "decided_at": created + pd.Timedelta(minutes=5),
                        "market": MARKET,
                        "vendor": vendor,
                        "site": f"{vendor}-TYO",
                        "queue": queue,
                        "language": "ja",
                        "moderator_id": f"m{i % 7}",
                        "routing": "human",
                        "action": "restrict" if enforced else "no_action",
                        "policy": "harassment" if enforced else "none",
                        "ai_model": "jp-v1" if not np.isnan(score) else None,
                        "ai_score": score,
                        "ai_policy": None if np.isnan(score) else "harassment",
                    }
                )
                if rng.random() < audit_p:
                    qa_rows.append(
                        {
                            "audit_id": f"a-{did}",
                            "decision_id": did,
                            "audited_at": created + pd.Timedelta(hours=3),
                            "qa_source": "internal",
                            "auditor_id": "q1",
                            "qa_action": "restrict" if violating else "no_action",
                            "qa_policy": "harassment" if violating else "none",
                            "sample_weight": None,
                        }
                    )
    # a vendor that stopped before the period: decisions and audits, none in it
    for i in range(30):
        created = (FIRST - pd.Timedelta(days=3, minutes=i)).tz_localize(tz).tz_convert("UTC")
        dec_rows.append(
            {
                **dec_rows[0],
                "decision_id": f"old-{i}",
                "created_at": created,
                "decided_at": created + pd.Timedelta(minutes=5),
                "vendor": "Dusk",
                "site": "Dusk-TYO",
            }
        )
        qa_rows.append({**qa_rows[0], "audit_id": f"a-old-{i}", "decision_id": f"old-{i}"})
    dec = pd.DataFrame(dec_rows)
    dec["created_at"] = pd.to_datetime(dec["created_at"], utc=True)
    dec["decided_at"] = pd.to_datetime(dec["decided_at"], utc=True)
    qa = pd.DataFrame(qa_rows)
    qa["audited_at"] = pd.to_datetime(qa["audited_at"], utc=True)
    qa["sample_weight"] = qa["sample_weight"].astype(float)
    return {"decisions": dec, "qa_audits": qa}


@pytest.fixture(scope="module")
def jp(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, dict[str, pd.DataFrame]]:
    tables = _tables()
    folder = write_tables(tmp_path_factory.mktemp("jp"), tables)
    return open_dataset(folder), tables


def _period_frames(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Audited decisions of the period, by pandas on the raw tables (market-local dates)."""
    tz = load_parameters().market(MARKET).tz
    dec = tables["decisions"].copy()
    dec["date"] = dec["created_at"].dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    dec = dec[(dec["date"] >= FIRST) & (dec["date"] <= pd.Timestamp(END))]
    return dec


# --------------------------------------------------------------------------- #
# audits_needed: statsmodels
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("rate", "drop", "direction", "ratio"),
    [
        (0.94, 0.05, "down", 4),
        (0.90, 0.05, "down", 4),
        (0.97, 0.05, "down", 1),
        (0.80, 0.10, "down", 2),
        (0.50, 0.05, "up", 4),
        (0.03, 0.05, "up", 4),
        (0.85, 0.10, "down", 4),
    ],
)
def test_audits_needed_matches_statsmodels_without_corrections(rate, drop, direction, ratio):
    from statsmodels.stats.proportion import (
        power_proportions_2indep,
        samplesize_proportions_2indep_onetail,
    )

    sign = -1 if direction == "down" else 1
    n = audits_needed(rate, drop, direction=direction, reference_weeks=ratio)
    # statsmodels: two independent proportions, two-sided 5%, window n vs ratio*n reference
    sm = samplesize_proportions_2indep_onetail(
        sign * drop, rate, 0.8, ratio=ratio, alpha=0.05, alternative="two-sided"
    )
    assert n == pytest.approx(sm, rel=0.02)
    pw = power_proportions_2indep(
        sign * drop, rate, n, ratio=ratio, alpha=0.05, return_results=False
    )
    assert pw == pytest.approx(0.8, abs=0.002)


def test_audits_needed_against_arcsine_power_where_the_tests_agree():
    # NormalIndPower with Cohen's h is another test (arcsine, variance-stabilised): it
    # agrees with the pooled z-test the scan runs near 0.5 and gives
    # different numbers near 0 and 1 (documented in audits_needed).
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = proportion_effectsize(0.55, 0.45)
    sm = NormalIndPower().solve_power(abs(h), nobs1=None, alpha=0.05, power=0.8, ratio=1)
    assert audits_needed(0.55, 0.10, reference_weeks=1) == pytest.approx(sm, rel=0.02)
    h = proportion_effectsize(0.94, 0.89)
    sm = NormalIndPower().solve_power(abs(h), nobs1=None, alpha=0.05, power=0.8, ratio=4)
    assert audits_needed(0.94, 0.05) < 0.95 * sm  # here the arcsine test asks 5.4% more


def test_audits_needed_inverts_minimum_detectable_change_with_corrections():
    n = audits_needed(0.92, 0.06, period_days=28, series=300, fdr=0.1)
    d = minimum_detectable_change(0.92, n, n_reference=4 * n, period_days=28, series=300, fdr=0.1)
    assert d == pytest.approx(0.06, rel=1e-6)
    # the corrections cost audits; a known baseline saves some
    assert n > 2 * audits_needed(0.92, 0.06)
    assert audits_needed(0.92, 0.06, reference_weeks=None) < audits_needed(0.92, 0.06)
    assert audits_needed(0.04, 0.05) == math.inf  # accuracy cannot drop below 0
    assert audits_needed(0.97, 0.05, direction="up") == math.inf
    with pytest.raises(QualityLabError, match="drop"):
        audits_needed(0.9, 1.2)


# --------------------------------------------------------------------------- #
# neyman_allocation
# --------------------------------------------------------------------------- #
def _variance(pop, s, n):
    w = pop / pop.sum()
    return float(np.sum(w**2 * (1 - n / pop) * s**2 / n))


def test_neyman_equals_the_closed_form_and_beats_proportional():
    pop = np.array([100.0, 200.0, 300.0, 400.0])
    s = np.array([0.5, 0.25, 0.2, 0.125])  # N_h S_h = 50, 50, 60, 50
    budget = 105
    n = neyman_allocation(pop, s, budget)
    closed = budget * pop * s / np.sum(pop * s)  # 25, 25, 30, 25: integers, nothing to round
    np.testing.assert_array_equal(n, closed)
    prop = budget * pop / pop.sum()
    assert _variance(pop, s, n) < _variance(pop, s, prop)
    # a non-integer closed form: within one audit of it, and exact in total
    n = neyman_allocation(pop, s, 100)
    assert n.sum() == 100 and np.all(np.abs(n - 100 * pop * s / np.sum(pop * s)) < 1)


@pytest.mark.parametrize(
    ("pop", "s", "budget", "floor", "cap"),
    [
        ([50, 40, 30, 20, 10], [0.3, 0.3, 0.3, 0.3, 0.3], 37, None, None),
        ([1000, 10, 10, 10], [0.5, 0.5, 0.5, 0.5], 40, None, None),  # caps bind at 10
        ([1000, 500, 100], [0.2, 0.4, 0.3], 100, [1, 1, 60], None),  # a floor binds
        ([1000, 500, 100, 7], [0.2, 0.4, 0.3, 0.49], 301, [1, 150, 1, 1], [1000, 500, 90, 7]),
        ([3, 3, 3], [0.1, 0.2, 0.3], 9, None, None),  # everything at its cap
        ([10, 0, 20], [0.3, 0.4, 0.2], 7, None, None),  # no volume: nothing
    ],
)
def test_neyman_budget_is_exact_within_floors_and_caps(pop, s, budget, floor, cap):
    n = neyman_allocation(pop, s, budget, floor=floor, cap=cap)
    assert n.dtype.kind == "i" and int(n.sum()) == budget
    lo = np.zeros(len(pop)) if floor is None else np.asarray(floor)
    hi = np.ceil(pop) if cap is None else np.asarray(cap)
    live = np.asarray(pop) > 0
    assert np.all(n[live] >= lo[live]) and np.all(n <= np.where(live, hi, 0))
    assert np.all(n[~live] == 0)


def test_neyman_bounded_optimum_is_the_best_integer_neighbour():
    # no single move of one audit between strata lowers the variance (within the bounds)
    pop = np.array([800.0, 300.0, 120.0, 60.0])
    s = np.array([0.22, 0.35, 0.41, 0.28])
    floor = np.array([1, 1, 40, 1])
    n = neyman_allocation(pop, s, 150, floor=floor).astype(float)
    base = _variance(pop, s, n)
    for i in range(4):
        for j in range(4):
            if i == j or n[i] - 1 < floor[i]:
                continue
            m = n.copy()
            m[i] -= 1
            m[j] += 1
            assert _variance(pop, s, m) >= base - 1e-15


def test_neyman_rejects_impossible_budgets():
    with pytest.raises(QualityLabError, match="budget must be a whole number"):
        neyman_allocation([10, 20], [0.3, 0.3], 0)
    with pytest.raises(QualityLabError, match="outside what the bounds allow"):
        neyman_allocation([10, 20], [0.3, 0.3], 5, floor=[4, 4])
    with pytest.raises(QualityLabError, match="outside what the bounds allow"):
        neyman_allocation([2, 3], [0.3, 0.3], 6)


# --------------------------------------------------------------------------- #
# detectability on a dataset, against pandas
# --------------------------------------------------------------------------- #
def test_detectability_matches_pandas_on_the_raw_tables(jp):
    ds, tables = jp
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = detectability(ds, MARKET, weeks=WEEKS, end=END)
    assert list(d.columns) == ["market", "vendor", "queue", *DETECTABILITY_COLUMNS]
    dec = _period_frames(tables)
    qa = tables["qa_audits"].merge(dec, on="decision_id")
    weekly_dec = dec.groupby(["vendor", "queue"]).size() / WEEKS
    weekly_aud = qa.groupby(["vendor", "queue"]).size().reindex(weekly_dec.index, fill_value=0)
    weekly_aud = weekly_aud / WEEKS
    enforced = qa["action"] != "no_action"
    qa_enf = qa["qa_action"] != "no_action"
    qa["correct"] = (enforced == qa_enf) & (~enforced | (qa["policy"] == qa["qa_policy"]))
    qa["over"] = enforced & ~qa_enf
    acc = qa.groupby(["vendor", "queue"])["correct"].mean()
    # the vendor that stopped before the period has no rows; every segment with volume has
    assert set(d["vendor"]) == {"Acme", "Bolt", "Cora"}
    assert len(d) == len(weekly_dec) * 5
    mp = load_parameters().market(MARKET)
    fdr = SENSITIVITY_FDR[mp.alert_sensitivity]
    assert d.attrs["period_days"] == 7 * WEEKS and d.attrs["fdr"] == fdr
    series = d.attrs["series"]
    for (vendor, queue), n_dec in weekly_dec.items():
        rows = d[(d["vendor"] == vendor) & (d["queue"] == queue)].set_index("metric")
        assert rows["weekly_decisions"].iloc[0] == pytest.approx(n_dec)
        assert rows["weekly_audits"].iloc[0] == pytest.approx(weekly_aud[(vendor, queue)])
        a = rows.loc["accuracy"]
        if weekly_aud[(vendor, queue)] == 0:
            assert a["blind_spot"] and np.isnan(a["mdc"]) and np.isnan(a["rate"])
            continue
        assert a["rate"] == pytest.approx(acc[(vendor, queue)])
        n = weekly_aud[(vendor, queue)]
        p = acc[(vendor, queue)]
        k = p * n * WEEKS
        if p in (0.0, 1.0):
            p = (k + 1) / (n * WEEKS + 2)  # the documented adjustment
        mdc = minimum_detectable_change(
            p, n, n_reference=4 * n, period_days=7 * WEEKS, series=series, fdr=fdr
        )
        assert a["mdc"] == pytest.approx(mdc, rel=1e-6, nan_ok=True)
        assert a["blind_spot"] == (not mdc <= mp.detectable_drop["accuracy"])
        need = audits_needed(
            p, 0.05, period_days=7 * WEEKS, series=series, fdr=fdr, reference_weeks=4
        )
        assert a["weekly_audits_needed"] == math.ceil(need)
        o = rows.loc["over_enforcement_rate"]
        assert o["direction"] == "up"
        assert o["rate"] == pytest.approx(
            qa[(qa.vendor == vendor) & (qa.queue == queue)]["over"].mean()
        )
        # AI precision: its denominator is the audited items the model flagged
        thr = mp.ai_threshold
        sub = qa[(qa.vendor == vendor) & (qa.queue == queue)]
        flagged = int((sub["ai_score"] >= thr).sum())
        assert rows.loc["ai_precision", "weekly_n"] == pytest.approx(flagged / WEEKS)
        # audits needed for an AI metric scale by its share of the audits
        pr = rows.loc["ai_precision"]
        if np.isfinite(pr["weekly_n_needed"]) and flagged:
            share = flagged / len(sub)
            assert pr["weekly_audits_needed"] == math.ceil(
                audits_needed(
                    float(pr["rate"])
                    if 0 < pr["rate"] < 1
                    else (pr["rate"] * flagged + 1) / (flagged + 2),
                    0.10,
                    period_days=7 * WEEKS,
                    series=series,
                    fdr=fdr,
                )
                / share
            )
    # Bolt appeal is audited 100% correct: its planning rate is not 1, so it has an mdc
    bolt = d[(d.vendor == "Bolt") & (d.queue == "appeal") & (d.metric == "accuracy")].iloc[0]
    assert bolt["rate"] == 1.0 and np.isfinite(bolt["weekly_audits_needed"])


def test_scan_series_counts_the_segments_of_a_default_scan(jp):
    ds, tables = jp
    period = __import__("qualitylab.metrics", fromlist=["Period"]).Period(
        FIRST.date(), pd.Timestamp(END).date()
    )
    dec = _period_frames(tables)
    # market + vendor (3) + site (3) + queue (2); language/policy... have 1 or 2 segments
    expected = 0
    for dim in ("market", "vendor", "site", "queue", "language", "policy", "ai_model"):
        k = dec[dim].nunique()
        if dim != "market" and k <= 1:
            continue
        ai = 3 if dim in ("market", "queue", "language", "policy", "ai_model") else 0
        expected += k * (7 + 4 + ai)
    assert scan_series(ds, MARKET, period) == expected


def test_detectability_errors_and_notes(jp, tmp_path):
    ds, tables = jp
    with pytest.raises(QualityLabError, match="'NZ' has no parameters file"):
        detectability(ds, "NZ")
    with pytest.raises(QualityLabError, match="no decisions in 2025"):
        detectability(ds, MARKET, end="2025-06-01")
    with pytest.raises(QualityLabError, match="cannot judge metric 'volume'"):
        detectability(ds, MARKET, metrics=["volume"], end=END)
    bare = open_dataset(write_tables(tmp_path / "bare", {"decisions": tables["decisions"]}))
    with pytest.raises(QualityLabError, match="qa_audits is not in the dataset"):
        detectability(bare, MARKET, end=END)
    # without AI scores the AI metrics are left out with a note; the rest is there
    dec = tables["decisions"].assign(ai_score=np.nan, ai_model=None)
    noai = open_dataset(
        write_tables(tmp_path / "noai", {"decisions": dec, "qa_audits": tables["qa_audits"]})
    )
    with pytest.warns(UserWarning, match="AI metrics left out"):
        d = detectability(noai, MARKET, end=END, weeks=WEEKS)
    assert set(d["metric"]) == {"accuracy", "over_enforcement_rate", "under_enforcement_rate"}
    # audits, but none of the period's decisions: one error naming the table, not a merge crash
    none = open_dataset(
        write_tables(
            tmp_path / "none",
            {"decisions": tables["decisions"], "qa_audits": tables["qa_audits"].iloc[:0]},
        )
    )
    with pytest.raises(QualityLabError, match="qa_audits has no audits of"):
        detectability(none, MARKET, end=END, weeks=WEEKS)


# --------------------------------------------------------------------------- #
# sampling_plan on a dataset
# --------------------------------------------------------------------------- #
def _plan(ds, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sampling_plan(ds, MARKET, weeks=WEEKS, end=END, **kw)


def test_sampling_plan_table_and_summary(jp):
    ds, tables = jp
    plan = _plan(ds, budget=60)
    t = plan.plan
    assert list(t.columns) == ["vendor", "queue", *PLAN_COLUMNS]
    assert "Dusk" not in set(t["vendor"])  # no volume in the period: not a stratum
    assert int(t["recommended_audits"].sum()) == 60 == plan.budget
    assert np.all(t["recommended_audits"] >= 1)
    dec = _period_frames(tables)
    weekly = dec.groupby(["vendor", "queue"]).size() / WEEKS
    np.testing.assert_allclose(t.set_index(["vendor", "queue"])["weekly_decisions"], weekly)
    # S_h is never 0: the 100%-correct and the unaudited strata get (x+1)/(n+2)
    assert np.all(t["s"] > 0)
    never = t[(t.vendor == "Bolt") & (t.queue == "live_report")].iloc[0]
    assert never["current_audits"] == 0 and never["s"] == pytest.approx(0.5)
    assert plan.se_before == math.inf  # a stratum with volume has no audits today
    pop, s, n = (t[c].to_numpy(float) for c in ("weekly_decisions", "s", "recommended_audits"))
    w = pop / pop.sum()
    assert plan.se_after == pytest.approx(np.sqrt(np.sum(w**2 * (1 - n / pop) * s**2 / n)))
    summary = plan.summary().set_index("measure")
    assert summary.loc["weekly_audits", "after"] == 60
    assert summary.loc["blind_spots", "before"] == plan.blind_before


def test_sampling_plan_is_neyman_when_no_floor_binds(jp):
    ds, _ = jp
    # audits needed are far above these budgets: the floors are the one-audit minimum
    plan = _plan(ds, budget=120)
    t = plan.plan
    closed = 120 * t["weekly_decisions"] * t["s"] / (t["weekly_decisions"] * t["s"]).sum()
    assert closed.min() > 1.5  # no floor binds
    assert np.all(np.abs(t["recommended_audits"] - closed) < 1)
    assert plan.blind_after == plan.blind_before == len(t)  # every stratum stays blind
    assert set(plan.still_blind) == set(t["vendor"] + " / " + t["queue"])


def test_sampling_plan_closes_blind_spots_where_the_budget_allows(jp):
    ds, _ = jp
    # no corrections and a large drop: a few audits make a stratum detectable
    kw = {"drop": 0.3, "series": 1, "period_days": 1}
    full = _plan(ds, budget=150, **kw)
    t = full.plan
    reachable = np.isfinite(t["audits_needed"]) & (t["audits_needed"] <= t["weekly_decisions"])
    assert full.budget_to_close == int(
        np.where(reachable, np.maximum(t["audits_needed"], 1), 1).sum()
    )
    assert full.budget_to_close <= 150
    assert full.blind_after == int((~reachable).sum())  # only the unreachable stay blind
    ok = t[reachable]
    assert np.all(ok["recommended_audits"] >= ok["audits_needed"])
    # a budget between the strata count and budget_to_close: the cheapest close first
    tight = _plan(ds, budget=full.budget_to_close - 1, **kw)
    assert int(tight.plan["recommended_audits"].sum()) == full.budget_to_close - 1
    assert tight.blind_after == full.blind_after + 1
    assert len(tight.still_blind) == tight.blind_after


def test_sampling_plan_bad_input(jp):
    ds, tables = jp
    with pytest.raises(QualityLabError, match=r"budget 3 is smaller than the 5 strata"):
        _plan(ds, budget=3)
    with pytest.raises(QualityLabError, match="budget must be a whole number"):
        _plan(ds, budget=0)
    with pytest.raises(QualityLabError, match=r"drop must be in \(0, 1\)"):
        _plan(ds, drop=1.5)
    with pytest.raises(QualityLabError, match="exceeds the"):
        _plan(ds, budget=10**6)
    with pytest.raises(QualityLabError, match="no decisions in"):
        sampling_plan(ds, MARKET, end="2025-01-05")


# --------------------------------------------------------------------------- #
# power through the real scan
# --------------------------------------------------------------------------- #
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_planted_drop_at_the_plans_audits_is_found_at_least_80_percent_of_the_time():
    """The fast version of ``benchmarks/sampling_power.py``.

    One planted drop per scan (a lone discovery, as the plan assumes), every
    vendor audited at the plan's weekly audits, the real ``scan``. The
    benchmark runs 400 replicates per design
    (``benchmarks/results/sampling_power.md``): the scan finds the drop
    86% of the time (95% CI 83-89%), a little more than the 80% the plan
    promises, because it keeps the most significant of the windows its
    detectors propose while the plan's power is that of the planted week
    alone (the search penalty is paid either way). Here 60 seeded
    replicates: the band is the binomial 99.7% range around 0.86, and still
    fails if the plan's audits were those of a test without the scan's
    corrections (far too few) or twice what is needed (power near 100%).
    """
    from sampling_power import Design, simulate

    design = Design(rate=0.94, drop=0.05, vendors=4)
    plan_n = design.weekly_audits()
    # the plan's number is the library's, with this scan's corrections
    assert plan_n == math.ceil(audits_needed(0.94, 0.05, period_days=28, series=4, fdr=design.fdr))
    assert plan_n > 2 * audits_needed(0.94, 0.05)  # the corrections matter here
    rate, hits, n_week, _ = simulate(design, 60, seed=5, jobs=2)
    assert n_week == plan_n
    assert 0.72 <= rate <= 0.97, (rate, hits)


def test_neyman_rejects_a_zero_sd_where_there_is_volume():
    with pytest.raises(QualityLabError, match="s > 0 where there is volume"):
        neyman_allocation([10, 20], [0.0, 0.3], 5)
    # ... but a stratum without volume may have any S_h
    assert neyman_allocation([10, 0], [0.3, 0.0], 5).tolist() == [5, 0]


def test_a_young_market_averages_over_the_weeks_it_has(jp, tmp_path):
    """A market with 10 days of data: weekly figures over its one full week, said in a note."""
    _, tables = jp
    young = {k: v.copy() for k, v in tables.items()}
    dec = young["decisions"]
    keep = dec["created_at"] >= pd.Timestamp("2026-03-13", tz="UTC")  # 10 days before END
    young["decisions"] = dec[keep]
    young["qa_audits"] = young["qa_audits"][
        young["qa_audits"]["decision_id"].isin(set(dec.loc[keep, "decision_id"]))
    ]
    ds = open_dataset(write_tables(tmp_path / "young", young))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = detectability(ds, MARKET, weeks=WEEKS, end=END)
        plan = sampling_plan(ds, MARKET, weeks=WEEKS, end=END)
    assert any("full week(s), not 3" in n for n in out.attrs["notes"])
    assert any("full week(s), not 3" in n for n in plan.notes)
    # weekly decisions = the decisions of the one full week (2026-03-16..22), by pandas
    tz = load_parameters().market(MARKET).tz
    local = young["decisions"]["created_at"].dt.tz_convert(tz).dt.tz_localize(None)
    in_week = (local >= pd.Timestamp("2026-03-16")) & (local < pd.Timestamp("2026-03-23"))
    last_week = young["decisions"][in_week]
    weekly = last_week.groupby(["vendor", "queue"]).size()
    got = plan.plan.set_index(["vendor", "queue"])["weekly_decisions"]
    np.testing.assert_allclose(got, weekly.reindex(got.index).to_numpy(float))


def test_strata_with_a_missing_policy_are_labelled(jp, tmp_path):
    """Decisions without a policy form a '(none)' stratum instead of failing the plan."""
    _, tables = jp
    t = {k: v.copy() for k, v in tables.items()}
    t["decisions"]["policy"] = t["decisions"]["policy"].where(
        t["decisions"]["policy"] != "none", None
    )
    ds = open_dataset(write_tables(tmp_path / "nopolicy", t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = sampling_plan(ds, MARKET, weeks=WEEKS, end=END, by=("vendor", "queue", "policy"))
    assert plan.plan["policy"].isna().any()
    assert int(plan.plan["recommended_audits"].sum()) == plan.budget
    from qualitylab.charts import sampling_plan_chart

    sampling_plan_chart(plan)  # labels the null policy "(none)"


# --------------------------------------------------------------------------- #
# speed without new numbers (issue #20): the power arithmetic and the shared aggregate
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "period_days, series, fdr, power", [(1, 1, 0.05, 0.8), (28, 329, 0.1, 0.9)]
)
def test_the_power_helper_is_minimum_detectable_change_to_the_bit(period_days, series, fdr, power):
    from qualitylab.detection.sampling import _Power

    pw = _Power(period_days, series, fdr, power)
    seen_nan = False
    for rate in (0.002, 0.03, 0.5, 0.94, 0.9995):
        for n in (2.0, 37.25, 1000.0):
            for ref in (None, 4.0):
                for direction in ("down", "up"):
                    n_ref = None if ref is None else ref * n
                    want = minimum_detectable_change(
                        rate, n, n_reference=n_ref, period_days=period_days, series=series,
                        fdr=fdr, power=power, direction=direction,
                    )  # fmt: skip
                    got = pw.mdc(rate, n, n_ref, direction)
                    seen_nan |= math.isnan(want)
                    assert got == want or (math.isnan(got) and math.isnan(want)), (rate, n, ref)
    assert seen_nan  # the grid reaches rates and sizes where no change has the power


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kw)


def test_a_shared_aggregate_gives_the_frames_of_separate_queries(jp):
    """One stacked query over several groupings: each grouping's frames as if queried alone."""
    from qualitylab.sampling import segment_aggregate

    ds, _ = jp
    groupings = [("vendor", "queue"), ("queue",), ("policy", "vendor", "queue"), ("vendor",)]
    agg = _quiet(segment_aggregate, ds, MARKET, groupings=groupings, weeks=WEEKS, end=END)
    assert agg.groupings == tuple(groupings) and agg.weeks == WEEKS
    assert agg.series == scan_series(ds, MARKET, agg.period)
    for by in groupings:
        alone = _quiet(detectability, ds, MARKET, by=by, weeks=WEEKS, end=END)
        shared = _quiet(detectability, ds, MARKET, by=by, weeks=WEEKS, end=END, aggregate=agg)
        assert list(alone.columns[1 : 1 + len(by)]) == list(by)
        pd.testing.assert_frame_equal(shared, alone, rtol=1e-12)
        assert shared.attrs == alone.attrs
        # an AI-free subset from the same aggregate
        acc = _quiet(detectability, ds, MARKET, by=by, weeks=WEEKS, end=END, metrics=["accuracy"])
        pd.testing.assert_frame_equal(
            _quiet(
                detectability, ds, MARKET, by=by, weeks=WEEKS, end=END, metrics=["accuracy"],
                aggregate=agg,
            ),
            acc, rtol=1e-12,
        )  # fmt: skip
        p_alone = _quiet(sampling_plan, ds, MARKET, by=by, weeks=WEEKS, end=END)
        p_shared = _quiet(sampling_plan, ds, MARKET, by=by, weeks=WEEKS, end=END, aggregate=agg)
        pd.testing.assert_frame_equal(p_shared.plan, p_alone.plan, rtol=1e-12)
        for f in ("se_before", "se_after", "blind_before", "budget_to_close", "notes"):
            assert getattr(p_shared, f) == pytest.approx(getattr(p_alone, f), rel=1e-12)
    # the volumes are those of pandas, whatever the other groupings
    dec = _period_frames(jp[1])
    got = agg.volume[("queue",)].set_index("queue")["decisions"]
    assert got.to_dict() == dec.groupby("queue").size().to_dict()


def test_an_aggregate_is_used_only_for_what_it_holds(jp):
    from qualitylab.sampling import segment_aggregate

    ds, _ = jp
    agg = _quiet(segment_aggregate, ds, MARKET, weeks=WEEKS, end=END, metrics=["accuracy"])
    with pytest.raises(QualityLabError, match="the aggregate is of JP over 2026-03-02"):
        detectability(ds, MARKET, weeks=2, end=END, aggregate=agg)
    with pytest.raises(QualityLabError, match=r"no grouping by \['site'\]"):
        detectability(ds, MARKET, by=["site"], weeks=WEEKS, end=END, aggregate=agg)
    with pytest.raises(
        QualityLabError,
        match="the aggregate has no over_enforcement_rate, under_enforcement_rate, ai_pre",
    ):
        detectability(ds, MARKET, weeks=WEEKS, end=END, aggregate=agg)
    with pytest.raises(QualityLabError, match="groupings= needs at least one"):
        segment_aggregate(ds, MARKET, groupings=[])
    # what it holds: accuracy by vendor x queue
    d = _quiet(detectability, ds, MARKET, weeks=WEEKS, end=END, metrics=["accuracy"], aggregate=agg)
    assert set(d["metric"]) == {"accuracy"} and len(d) == len(agg.volume[("vendor", "queue")])


def test_an_ai_query_that_fails_over_the_groupings_is_asked_per_grouping(jp, monkeypatch):
    """The AI rates come from each grouping's own query then, or its error becomes the note."""
    from qualitylab.measure import aieval
    from qualitylab.sampling import segment_aggregate

    ds, _ = jp
    groupings = [("vendor", "queue"), ("queue",)]
    expect = {g: _quiet(detectability, ds, MARKET, by=g, weeks=WEEKS, end=END) for g in groupings}
    real = aieval.confusion_at

    def stacked_fails(data, threshold, *, by=(), **kw):
        if "grouping_" in by:
            raise QualityLabError("no grouping sets here")
        return real(data, threshold, by=by, **kw)

    monkeypatch.setattr(aieval, "confusion_at", stacked_fails)
    agg = _quiet(segment_aggregate, ds, MARKET, groupings=groupings, weeks=WEEKS, end=END)
    for g in groupings:
        assert agg.ai_notes[g] == ()
        got = _quiet(detectability, ds, MARKET, by=g, weeks=WEEKS, end=END, aggregate=agg)
        pd.testing.assert_frame_equal(got, expect[g], rtol=1e-12)

    def always_fails(data, threshold, *, by=(), **kw):
        raise QualityLabError(f"no AI by {list(by)}")

    monkeypatch.setattr(aieval, "confusion_at", always_fails)
    agg = _quiet(segment_aggregate, ds, MARKET, groupings=groupings, weeks=WEEKS, end=END)
    assert agg.ai_notes[("queue",)] == ("AI metrics left out: no AI by ['queue']",)
    got = _quiet(detectability, ds, MARKET, by=["queue"], weeks=WEEKS, end=END, aggregate=agg)
    assert got.attrs["notes"] == ["AI metrics left out: no AI by ['queue']"]
    assert set(got["metric"]) == {"accuracy", "over_enforcement_rate", "under_enforcement_rate"}
    acc = expect[("queue",)]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        acc[acc["metric"].isin(set(got["metric"]))].reset_index(drop=True),
        rtol=1e-12,
    )


def test_scan_blind_spots_is_detectability_per_dimension(jp):
    """The report's table: each scan dimension's detectability, stacked, series of the scan."""
    from qualitylab.reporting.blindspots import SCAN_DIMENSIONS, scan_blind_spots
    from qualitylab.reporting.context import open_context

    ds, _ = jp
    ctx = open_context(ds, MARKET, as_of=END, weeks=WEEKS)
    out = _quiet(scan_blind_spots, ctx)
    assert list(out["dimension"].unique()) == list(SCAN_DIMENSIONS)
    for dim in SCAN_DIMENSIONS:
        d = _quiet(detectability, ds, MARKET, by=[dim], weeks=WEEKS, end=END)
        d = d[d[dim].notna()].rename(columns={dim: "segment"}).reset_index(drop=True)
        got = out[out["dimension"] == dim].drop(columns="dimension").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, d[got.columns], rtol=1e-12)
    assert out.attrs["series"] == scan_series(ds, MARKET, ctx.period)
