"""Policy rollout tracking: the planted scam rollout, recovery logic, calibration."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from design_reference import design_interval

from qualitylab.demo import generate
from qualitylab.errors import QualityLabError
from qualitylab.rollout import (
    ACCURACY_COLUMNS,
    ALIGNMENT_COLUMNS,
    CALIBRATION_COLUMNS,
    DAILY_COLUMNS,
    policy_changes,
    rollout,
)
from qualitylab.sources import open_dataset
from qualitylab.stats import proportion_difference_ci
from tests.conftest import tiny_tables, write_tables


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def res(ds):
    return rollout(ds, "ID")


def _planted(folder) -> pd.Series:
    inc = pd.read_csv(folder / "incidents.csv")
    return inc[(inc.metric == "accuracy") & (inc.dimension == "policy")].iloc[0]


def _assert_dip_and_recovery(res, planted: pd.Series) -> None:
    start, end = date.fromisoformat(planted.start_date), date.fromisoformat(planted.end_date)
    recovered = end + timedelta(days=1)  # the refresher training, recorded in the description
    assert res.policy == planted.segment and res.effective == start
    over = res.overall.iloc[0]
    assert over.dipped and over.significantly_below and over.diff_ci_high < 0
    # A trailing 7-day window clears at most window - 1 days after the true recovery.
    assert recovered <= over.recovered_on <= recovered + timedelta(days=res.window_days - 1)
    assert over.recovery_days == (over.recovered_on - start).days
    assert over.recovery == f"{int(over.recovery_days)} days"
    daily = res.daily[res.daily.vendor == "all"].set_index("date")
    assert daily.loc[end, "significantly_below"]  # still dipping on the last day
    assert not daily.loc[daily.index >= over.recovered_on, "significantly_below"].any()


def test_planted_scam_rollout_dips_and_recovers(res, small_data):
    _assert_dip_and_recovery(res, _planted(small_data))
    assert list(res.overall.columns) == ACCURACY_COLUMNS
    assert list(res.by_segment.columns) == ACCURACY_COLUMNS
    assert list(res.daily.columns) == DAILY_COLUMNS
    assert "Scam policy update" in res.description


def test_planted_rollout_at_another_seed(tmp_path):
    generate(tmp_path, markets=["ID"], scale="small", seed=4, days=56)
    _assert_dip_and_recovery(rollout(open_dataset(tmp_path), "ID"), _planted(tmp_path))


def test_accuracy_is_the_design_weighted_estimate(res, small_data):
    dec = pd.read_parquet(small_data / "decisions")
    qa = pd.read_parquet(small_data / "qa_audits.parquet")
    j = qa[qa.qa_source == "internal"].merge(dec[dec.market == "ID"], on="decision_id")
    j = j[j.action.notna() & (j.routing != "ai_auto")]
    j = j[(j.policy == "scam") | (j.qa_policy == "scam")].copy()
    enf, qenf = j.action != "no_action", j.qa_action != "no_action"
    j["y"] = ((enf == qenf) & (~enf | (j.policy == j.qa_policy))).astype(float)
    j["day"] = j.created_at.dt.tz_convert("Asia/Jakarta").dt.date
    j["w"] = j.sample_weight.fillna(1.0)
    phases = {
        "before": j[(j.day >= res.baseline.start) & (j.day <= res.baseline.end)],
        "after": j[(j.day >= res.after.start) & (j.day <= res.after.end)],
    }
    got = res.overall.iloc[0]
    est = {}
    for phase, g in phases.items():
        # strata = the distinct sample weights (no stratum column)
        p, lo, hi, n_eff = design_interval(g.y, g.w, g.w)
        n, ci = len(g), (lo, hi)
        assert got[f"n_{phase}"] == n
        assert got[f"accuracy_{phase}"] == pytest.approx(p)
        assert (got[f"ci_low_{phase}"], got[f"ci_high_{phase}"]) == pytest.approx(ci)
        est[phase] = (p * n_eff, n_eff)
    lo, hi = proportion_difference_ci(*est["after"], *est["before"])
    assert (got.diff_ci_low, got.diff_ci_high) == pytest.approx((lo, hi))
    # Segments partition the overall audits.
    assert res.by_segment.n_before.sum() == got.n_before
    assert res.by_segment.n_after.sum() == got.n_after


def test_calibration_and_alignment(res):
    cal = res.calibration
    assert list(cal.columns) == CALIBRATION_COLUMNS
    assert set(cal.period) <= {"before", "after"} and (cal.bar == 0.85).all()
    assert ((cal.ci_low <= cal.calibration_score) & (cal.calibration_score <= cal.ci_high)).all()
    assert (cal.significantly_below_bar == (cal.ci_high < cal.bar)).all()
    al = res.alignment
    assert list(al.columns) == ALIGNMENT_COLUMNS and len(al) > 0
    assert set(al.reason) <= {"accuracy", "calibration"}
    seg = res.by_segment.set_index(["vendor", "site"])
    for r in al[al.reason == "accuracy"].itertuples():
        assert seg.loc[(r.vendor, r.site), "significantly_below"]
    low = cal[(cal.period == "after") & cal.significantly_below_bar].rater_group
    assert set(al[al.reason == "calibration"].vendor) == set(low)


def test_policy_changes_and_event_selection(ds):
    ev = policy_changes(ds, "ID")
    assert list(ev.columns) == ["effective_at", "date", "market", "policy", "description"]
    assert (ev.policy == "scam").any()
    with pytest.raises(QualityLabError, match="no policy_change event for ID policy='nudity'"):
        rollout(ds, "ID", policy="nudity")
    with pytest.raises(QualityLabError, match="no policy_change event for SG"):
        rollout(ds, "SG")


# --------------------------------------------------------------------------- #
# Recovery logic on hand-made data
# --------------------------------------------------------------------------- #
def _rollout_dataset(folder, accuracy_by_day: dict[int, float], per_day: int = 40):
    """SG, scam-enforced decisions from 2026-03-01; the change on day 28 (2026-03-29).

    Each day's decisions are audited by internal QA; ``accuracy_by_day`` gives the
    share QA agrees with (the rest are over-enforcements), default 0.9.
    """
    t0 = pd.Timestamp("2026-03-01 02:00", tz="UTC")
    rows, audits = [], []
    for day in range(42):
        correct = round(per_day * accuracy_by_day.get(day, 0.9))
        for i in range(per_day):
            did = f"d{day:02d}-{i:02d}"
            created = t0 + pd.Timedelta(days=day, minutes=10 * i)
            rows.append(
                {
                    "decision_id": did,
                    "created_at": created,
                    "decided_at": created + pd.Timedelta(minutes=3),
                    "market": "SG",
                    "vendor": "VendorA" if i % 2 else "VendorB",
                    "site": "A-MNL" if i % 2 else "B-KUL",
                    "queue": "live_comment",
                    "language": "en",
                    "moderator_id": f"m{i % 5}",
                    "routing": "human",
                    "action": "warn",
                    "policy": "scam",
                    "ai_model": "mod-v3",
                    "ai_score": 0.6,
                    "ai_policy": "scam",
                }
            )
            ok = i < correct
            audits.append(
                {
                    "audit_id": f"a-{did}",
                    "decision_id": did,
                    "audited_at": created + pd.Timedelta(hours=5),
                    "qa_source": "internal",
                    "auditor_id": "q1",
                    "qa_action": "warn" if ok else "no_action",
                    "qa_policy": "scam" if ok else "none",
                    "sample_weight": 1.0,
                }
            )
    tables = tiny_tables()
    tables["decisions"] = pd.DataFrame(rows)
    tables["qa_audits"] = pd.DataFrame(audits)
    tables["events"] = pd.DataFrame(
        {
            "effective_at": [pd.Timestamp("2026-03-28 16:00", tz="UTC")],  # 03-29 00:00 SGT
            "market": ["SG"],
            "kind": ["policy_change"],
            "policy": ["scam"],
            "description": ["Scam policy update"],
        }
    )
    return open_dataset(write_tables(folder, tables))


def test_recovery_day_from_the_rolling_window(tmp_path):
    # Accuracy 0.5 for four days after the change, then back to 0.9.
    ds = _rollout_dataset(tmp_path / "a", {28: 0.5, 29: 0.5, 30: 0.5, 31: 0.5})
    res = rollout(ds, "SG", policy="scam")
    assert res.effective == date(2026, 3, 29)
    daily = res.daily[res.daily.vendor == "all"].reset_index(drop=True)
    # Day i's window holds days max(0, i-6)..i after the change: the last window with
    # a bad day that is still significantly below the 90% baseline ends the dip.
    below = daily.significantly_below.to_numpy()
    last = np.flatnonzero(below)[-1]
    over = res.overall.iloc[0]
    assert over.recovered_on == daily.date[last + 1]
    assert 4 <= over.recovery_days <= 10
    # Window composition: day 6 holds 4 bad days of 40 at 50% and 3 good ones.
    assert daily.n[6] == 7 * 40
    assert daily.accuracy[6] == pytest.approx((4 * 20 + 3 * 36) / 280)


def test_no_dip_and_not_yet(tmp_path):
    flat = rollout(_rollout_dataset(tmp_path / "flat", {}), "SG")
    over = flat.overall.iloc[0]
    assert not over.dipped and over.recovery == "no dip" and over.recovery_days == 0
    assert over.recovered_on == flat.effective and flat.alignment.empty
    stuck = rollout(_rollout_dataset(tmp_path / "stuck", dict.fromkeys(range(28, 42), 0.6)), "SG")
    over = stuck.overall.iloc[0]
    assert over.dipped and over.recovery == "not yet" and np.isnan(over.recovery_days)
    assert over.recovered_on is None
    assert set(stuck.alignment.reason) == {"accuracy"}
    assert set(stuck.alignment.vendor) == {"VendorA", "VendorB"}
