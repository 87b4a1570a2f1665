"""Tests for qualitylab.incidents: alerts of one market folded into incidents.

The datasets are built by hand (35 days of SG decisions and audits, the last
seven the alert window) so that each planted cause is known exactly; the
alert frames are built by hand too, as ``detect.scan`` returns them, so the
tests exercise the grouping rules and not the detector.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import open_dataset
from qualitylab.detect import ALERT_COLUMNS, EXTRA_COLUMNS
from qualitylab.errors import ParameterError
from qualitylab.incidents import (
    EVENT_EFFECTS,
    INCIDENT_COLUMNS,
    group_incidents,
    incident_key,
)
from tests.conftest import PARAMS, write_tables

START = date(2026, 3, 1)  # first day of data; days 0-27 are the baseline
WIN0, WIN1 = date(2026, 3, 29), date(2026, 4, 4)  # days 28-34: the alert window
POLICIES = ("spam", "scam", "hate_speech")
SLA = {"live_stream": 300, "live_comment": 600, "live_report": 1800}
HOSTILE = '<img src=x onerror=alert(1)>; override_rate vendor={0}%s =cmd|"/c calc"!A1'


def _decisions(
    *, bad_vendor: str = "VendorB", slow_queue: str | None = None, seed: int = 3
) -> dict[str, pd.DataFrame]:
    """SG decisions and internal audits; in the window `bad_vendor` overrides the AI
    and errs far more often, and `slow_queue` (if any) answers 4x slower."""
    rng = np.random.default_rng(seed)
    per_day = 420
    days = 35
    n = per_day * days
    day = np.repeat(np.arange(days), per_day)
    vendors = np.array(["VendorA", bad_vendor, "inhouse"])
    vendor = vendors[rng.choice(3, n, p=[0.45, 0.35, 0.20])]
    queue = np.array(list(SLA))[rng.choice(3, n, p=[0.5, 0.3, 0.2])]
    language = np.array(["en", "zh", "ms"])[rng.choice(3, n, p=[0.6, 0.25, 0.15])]
    truth = np.array([*POLICIES, "none"])[rng.choice(4, n, p=[0.1, 0.1, 0.1, 0.7])]
    routing = np.array(["ai_auto", "ai_assisted", "human"])[rng.choice(3, n, p=[0.1, 0.6, 0.3])]
    window = day >= 28
    bad = window & (vendor == bad_vendor)
    # the human changes the AI's suggested policy: 5% normally, 40% at the bad vendor
    flip = (
        (routing == "ai_assisted") & (truth != "none") & (rng.random(n) < np.where(bad, 0.4, 0.05))
    )
    # another policy than the true one: one or two steps further in POLICIES
    step = rng.integers(1, 3, n)
    pos = np.array([POLICIES.index(t) if t in POLICIES else 0 for t in truth])
    cited = np.where(flip, np.array(POLICIES)[(pos + step) % 3], truth)
    action = np.where(cited == "none", "no_action", "warn")
    base_secs = np.array([SLA[q] for q in queue]) * rng.uniform(0.1, 0.8, n)
    slow = window & (queue == slow_queue) if slow_queue else np.zeros(n, bool)
    secs = np.where(slow, base_secs * 4.0, base_secs)
    local_noon = pd.Timestamp(START) + pd.to_timedelta(day, unit="D") + pd.Timedelta(hours=12)
    created = (local_noon - pd.Timedelta(hours=8)).tz_localize("UTC")  # SG is UTC+8
    created = created + pd.to_timedelta(rng.integers(0, 3600, n), unit="s")
    decided = created + pd.to_timedelta(secs.round(), unit="s")
    site = np.array([f"{v}-Singapore" for v in vendor])
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "created_at": created,
            "decided_at": decided,
            "market": "SG",
            "vendor": vendor,
            "site": site,
            "queue": queue,
            "language": language,
            "moderator_id": np.where(routing == "ai_auto", None, [f"m{i % 40}" for i in range(n)]),
            "routing": routing,
            "action": action,
            "policy": cited,
            "ai_model": "mod-v3",
            "ai_score": np.where(truth == "none", 0.1, 0.9),
            "ai_policy": truth,
        }
    )
    audited = rng.random(n) < 0.25
    wrong = audited & (rng.random(n) < np.where(bad, 0.25, 0.03))
    qa_policy = np.where(wrong, np.where(truth == "none", "spam", "none"), truth)
    qa_policy = np.where(flip & audited, truth, qa_policy)  # QA sides with the model
    idx = np.flatnonzero(audited)
    audits = pd.DataFrame(
        {
            "audit_id": [f"a{i}" for i in idx],
            "decision_id": [f"d{i}" for i in idx],
            "audited_at": decided[idx] + pd.Timedelta(days=1),
            "qa_source": "internal",
            "auditor_id": "q1",
            "qa_action": np.where(qa_policy[idx] == "none", "no_action", "warn"),
            "qa_policy": qa_policy[idx],
            "sample_weight": 1.0,
        }
    )
    return {"decisions": decisions, "qa_audits": audits}


def _open(folder: Path, tables: dict[str, pd.DataFrame]):
    return open_dataset(str(write_tables(folder, tables)), parameters=str(PARAMS))


@pytest.fixture(scope="module")
def two_problems(tmp_path_factory: pytest.TempPathFactory):
    """VendorB overrides and errs more, and live_report slows down, in the same week."""
    folder = tmp_path_factory.mktemp("incidents") / "two"
    return _open(folder, _decisions(slow_queue="live_report"))


def alert(
    metric: str,
    dimension: str,
    segment: str,
    direction: str,
    *,
    observed: float = 0.3,
    expected: float = 0.1,
    start: date = WIN0,
    end: date = WIN1,
    severity: str = "high",
    impact: float = 100.0,
    related: str = "",
) -> dict:
    row = dict.fromkeys([*ALERT_COLUMNS, *EXTRA_COLUMNS])
    row.update(
        market="SG",
        metric=metric,
        dimension=dimension,
        segment=segment,
        start_date=pd.Timestamp(start),
        end_date=pd.Timestamp(end),
        observed=observed,
        expected=expected,
        direction=direction,
        severity=severity,
        detector="p_chart",
        p_value=1e-6,
        impact=impact,
        related=related,
        events="",
        note="",
    )
    return row


def frame(*rows: dict) -> pd.DataFrame:
    df = pd.DataFrame(list(rows), columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    df["group_id"] = np.arange(1, len(df) + 1)
    return df


def group(alerts: pd.DataFrame, ds, events: pd.DataFrame | None = None) -> pd.DataFrame:
    return group_incidents(alerts, ds, "SG", start=WIN0, end=WIN1, events=events)


def release(day: date = WIN0, kind: str = "model_release", policy: str | None = None):
    when = pd.Timestamp(day) + pd.Timedelta(hours=2)  # 10:00 in Singapore
    return pd.DataFrame(
        {
            "effective_at": [when.tz_localize("UTC")],
            "market": ["SG"],
            "kind": [kind],
            "policy": [policy],
            "description": ["mod-v4 replaces mod-v3"],
        }
    )


NO_EVENTS = pd.DataFrame(columns=["effective_at", "market", "kind", "policy", "description"])


# --------------------------------------------------------------------------- #
# rule 2: one segment of another dimension
# --------------------------------------------------------------------------- #
def test_vendor_drop_folds_override_alerts_of_three_policies(two_problems):
    al = frame(
        alert("override_rate", "policy", "spam", "up", impact=80),
        alert("accuracy", "vendor", "VendorB", "down", observed=0.80, expected=0.96, impact=50),
        alert("override_rate", "policy", "scam", "up", impact=70),
        alert("override_rate", "policy", "hate_speech", "up", impact=60),
    )
    before = al.copy()
    out = group(al, two_problems, NO_EVENTS)
    pd.testing.assert_frame_equal(al, before)  # the input is not modified
    assert list(out.columns) == [*al.columns, *INCIDENT_COLUMNS]
    pd.testing.assert_frame_equal(out[al.columns], al)  # same rows, same order
    assert out["incident_id"].nunique() == 1
    lead = out[out["incident_role"] == "lead"]
    assert lead[["metric", "segment"]].values.tolist() == [["accuracy", "VendorB"]]
    assert out["incident_id"].iloc[0] == incident_key(al.iloc[1])
    kids = out[out["incident_role"] == "child"]
    for cause in kids["incident_cause"]:
        assert re.match(
            r"vendor VendorB \(accuracy \u221216\.0 pp\) explains \d+% of override_rate's "
            r"change in policy \w+$",
            cause,
        ), cause
        assert int(re.search(r"(\d+)%", cause).group(1)) >= 50
    assert (out["incident_event"] == "").all()
    assert out.attrs["incidents"]["incidents"] == 1


def test_a_big_segment_carrying_a_uniform_change_explains_nothing(two_problems):
    """English is 60% of live_report, whose slowdown hit every language alike: it
    carries most of the change but is no hotspot, so it explains nothing."""
    al = frame(
        alert("sla_compliance", "queue", "live_report", "down", observed=0.4, expected=0.95),
        alert("wrong_policy_rate", "language", "en", "up", observed=0.05, expected=0.02),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2
    assert (out["incident_role"] == "lead").all()
    assert out.attrs["incidents"]["rca_calls"] == 2


def test_two_unrelated_problems_on_overlapping_days_stay_two_incidents(two_problems):
    al = frame(
        alert("accuracy", "vendor", "VendorB", "down", observed=0.80, expected=0.96),
        alert("override_rate", "policy", "spam", "up"),
        alert("override_rate", "policy", "scam", "up", start=WIN0 + timedelta(days=1)),
        alert("sla_compliance", "queue", "live_report", "down", observed=0.4, expected=1.0),
        alert(
            "response_p90",
            "policy",
            "hate_speech",
            "up",
            observed=2000.0,
            expected=900.0,
            start=WIN0 - timedelta(days=1),
        ),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2
    vendor_inc = out.loc[0, "incident_id"]
    sla_inc = out.loc[3, "incident_id"]
    assert vendor_inc != sla_inc
    assert out["incident_id"].tolist() == [vendor_inc, vendor_inc, vendor_inc, sla_inc, sla_inc]
    assert out["incident_role"].tolist() == ["lead", "child", "child", "lead", "child"]
    # response times are explained through their SLA breaches, by the slow queue
    assert out.loc[4, "incident_cause"].startswith(
        "queue live_report (sla_compliance \u221260.0 pp)"
    )
    assert (
        "response_p90 (via sla_compliance)'s change in policy hate_speech"
        in out.loc[4, "incident_cause"]
    )


def test_a_volume_surge_explains_the_volume_of_the_languages_it_reaches(tmp_path):
    """Counts are split per segment in the engine: live_report's surge, not English."""
    tables = _decisions(seed=11)
    dec = tables["decisions"]
    surge = dec[
        (dec["queue"] == "live_report") & (dec["created_at"] >= pd.Timestamp(WIN0, tz="UTC"))
    ]
    extra = pd.concat([surge, surge], ignore_index=True)  # live_report x3 in the window
    extra["decision_id"] = [f"x{i}" for i in range(len(extra))]
    tables["decisions"] = pd.concat([dec, extra], ignore_index=True)
    ds = _open(tmp_path / "surge", tables)
    al = frame(
        alert("volume", "queue", "live_report", "up", observed=250, expected=84),
        alert("volume", "language", "en", "up", observed=400, expected=250),
        alert("override_rate", "language", "zh", "up"),  # a bystander: no override change
    )
    out = group_incidents(al, ds, "SG", start=WIN0, end=WIN1, events=NO_EVENTS)
    assert out["incident_id"].tolist()[:2] == [out.loc[0, "incident_id"]] * 2
    assert out.loc[2, "incident_id"] != out.loc[0, "incident_id"]
    assert re.match(
        r"queue live_report \(volume \+198%\) explains \d+% of volume's change in language en$",
        out.loc[1, "incident_cause"],
    ), out.loc[1, "incident_cause"]


def test_windows_that_do_not_overlap_are_not_grouped(two_problems):
    al = frame(
        alert("accuracy", "vendor", "VendorB", "down", observed=0.80, expected=0.96),
        alert(
            "override_rate",
            "policy",
            "spam",
            "up",
            start=WIN0 - timedelta(days=10),
            end=WIN0 - timedelta(days=5),
        ),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2
    assert out.attrs["incidents"]["rca_calls"] == 0


# --------------------------------------------------------------------------- #
# rule 1: one segment, linked metrics
# --------------------------------------------------------------------------- #
def test_same_segment_linked_metrics_fold_under_the_upstream_one(two_problems):
    al = frame(
        alert("sla_compliance", "queue", "live_report", "down", observed=0.4, expected=0.95),
        alert("volume", "queue", "live_report", "up", observed=300, expected=120),
        # the market's response time, which scan says is the live_report surge's view
        alert("response_p90", "market", "SG", "up", observed=900, expected=300),
    )
    al.loc[1, "related"] = "volume market=SG; volume language=en"
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 1
    assert out["incident_role"].tolist() == ["child", "lead", "child"]
    assert "moves with volume +150% in queue live_report" in out.loc[0, "incident_cause"]


def test_same_segment_unlinked_metrics_stay_apart(two_problems):
    """Same segment and same days is not enough: volume does not explain accuracy."""
    al = frame(
        alert("volume", "vendor", "VendorA", "up", observed=300, expected=120),
        alert("accuracy", "vendor", "VendorA", "down", observed=0.90, expected=0.96),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2


def test_a_market_alerts_views_do_not_make_every_segment_the_same(two_problems):
    al = frame(
        alert("override_rate", "market", "SG", "up", related="override_rate queue=live_report"),
        alert(
            "under_enforcement_rate",
            "queue",
            "live_report",
            "up",
            start=WIN0 - timedelta(days=12),
        ),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2


# --------------------------------------------------------------------------- #
# rule 3: events
# --------------------------------------------------------------------------- #
def test_model_release_gathers_recall_override_and_auto_action(two_problems):
    al = frame(
        alert("override_rate", "policy", "spam", "up", impact=300),
        alert("ai_recall", "language", "ms", "down", observed=0.5, expected=0.85, impact=40),
        alert(
            "auto_action_rate",
            "market",
            "SG",
            "down",
            observed=0.05,
            expected=0.10,
            start=WIN0 + timedelta(days=1),
        ),
        alert("override_rate", "policy", "scam", "up", start=WIN0 - timedelta(days=1)),
    )
    out = group(al, two_problems, release())
    assert out["incident_id"].nunique() == 1
    assert out.loc[1, "incident_role"] == "lead"  # the alert most directly tied to a release
    assert (out["incident_event"] == "model_release 2026-03-29: mod-v4 replaces mod-v3").all()
    assert out.loc[0, "incident_cause"] == (
        "model_release on 2026-03-29 (mod-v4 replaces mod-v3) implies override_rate up; "
        "it moved +20.0 pp in policy spam"
    )
    assert "from the model_release on 2026-03-29" in out.loc[1, "incident_cause"]


def test_direction_inconsistent_with_the_event_is_not_merged(two_problems):
    al = frame(
        alert("ai_recall", "language", "ms", "down", observed=0.5, expected=0.85),
        alert("override_rate", "policy", "spam", "down", observed=0.05, expected=0.1),
        alert("auto_action_rate", "market", "SG", "up", observed=0.2, expected=0.1),
    )
    out = group(al, two_problems, release())
    assert out["incident_id"].nunique() == 3
    assert out["incident_event"].tolist() == [
        "model_release 2026-03-29: mod-v4 replaces mod-v3",
        "",
        "",
    ]


def test_an_event_more_than_a_day_away_gathers_nothing(two_problems):
    al = frame(
        alert("ai_recall", "language", "ms", "down", observed=0.5, expected=0.85),
        alert("override_rate", "policy", "spam", "up"),
    )
    out = group(al, two_problems, release(WIN0 - timedelta(days=2)))
    assert out["incident_id"].nunique() == 2
    assert (out["incident_event"] == "").all()


def test_policy_change_gathers_only_its_policy(two_problems):
    al = frame(
        alert("over_enforcement_rate", "policy", "scam", "up", observed=0.1, expected=0.02),
        alert("volume", "policy", "scam", "up", observed=90, expected=40, impact=500),
        alert("override_rate", "policy", "spam", "up"),
    )
    out = group(al, two_problems, release(kind="policy_change", policy="scam"))
    assert out.loc[0, "incident_id"] == out.loc[1, "incident_id"] != out.loc[2, "incident_id"]
    assert out.loc[0, "incident_role"] == "lead"
    assert out.loc[2, "incident_event"] == ""
    assert out.loc[0, "incident_event"].startswith("policy_change[scam] 2026-03-29")


def test_event_table_is_documented_with_known_metrics():
    from qualitylab.incidents import CAUSE_ORDER

    for kind, patterns in EVENT_EFFECTS.items():
        assert kind in ("model_release", "policy_change", "outage")
        for pat in patterns:
            assert set(pat) <= set(CAUSE_ORDER)
            assert set(pat.values()) <= {"up", "down"}


# --------------------------------------------------------------------------- #
# edges
# --------------------------------------------------------------------------- #
def test_empty_alerts_give_an_empty_frame_with_the_new_columns():
    empty = pd.DataFrame(columns=[*ALERT_COLUMNS, *EXTRA_COLUMNS])
    out = group_incidents(empty, None, "SG", start=WIN0, end=WIN1)
    assert out.empty
    assert list(out.columns) == [*ALERT_COLUMNS, *EXTRA_COLUMNS, *INCIDENT_COLUMNS]
    assert out.attrs["incidents"] == {"incidents": 0, "rca_calls": 0, "refused": []}


def test_bad_input_is_refused_with_a_clear_message():
    with pytest.raises(ParameterError, match="missing column\\(s\\) direction"):
        group_incidents(
            pd.DataFrame(
                columns=["market", "metric", "dimension", "segment", "start_date", "end_date"]
            ),
            None,
            "SG",
            start=WIN0,
            end=WIN1,
        )
    al = frame(alert("volume", "market", "SG", "up"))
    al.loc[0, "market"] = "ID"
    with pytest.raises(ParameterError, match="market\\(s\\) \\['ID'\\] passed with market='SG'"):
        group_incidents(al, None, "SG", start=WIN0, end=WIN1)
    al = frame(alert("volume", "market", "SG", "up"))
    al["end_date"] = al["end_date"].astype(object)
    al.loc[0, "end_date"] = "soon"
    with pytest.raises(ParameterError, match="1 row\\(s\\) without a valid end_date, e.g. 'soon'"):
        group_incidents(al, None, "SG", start=WIN0, end=WIN1)


def test_refused_metric_is_its_own_incident(two_problems):
    """An alert rca cannot decompose (reporting_gap) stays alone."""
    al = frame(
        alert("reporting_gap", "vendor", "VendorA", "up", observed=0.97, expected=0.9),
        alert("accuracy", "policy", "spam", "down", observed=0.9, expected=0.96),
    )
    out = group(al, two_problems, NO_EVENTS)
    assert out["incident_id"].nunique() == 2
    assert any("reporting_gap" in r for r in out.attrs["incidents"]["refused"])


def test_hostile_segment_names(tmp_path):
    ds = _open(tmp_path / "hostile", _decisions(bad_vendor=HOSTILE, seed=5))
    al = frame(
        alert("override_rate", "policy", "spam", "up"),
        alert("accuracy", "vendor", HOSTILE, "down", observed=0.8, expected=0.96),
        alert("override_rate", "policy", "scam", "up", related=f"override_rate vendor={HOSTILE}"),
    )
    out = group(al, ds, NO_EVENTS)
    assert out["incident_id"].nunique() == 1
    assert out.loc[1, "incident_role"] == "lead"
    assert re.fullmatch(r"inc-[0-9a-f]{16}", out.loc[0, "incident_id"])
    # data text is kept verbatim (escaping is the renderer's job), never interpreted
    assert out.loc[0, "incident_cause"].startswith(f"vendor {HOSTILE} (accuracy")
    assert out["segment"].tolist() == ["spam", HOSTILE, "scam"]


def test_incident_key_is_stable_and_names_the_lead():
    row = alert("accuracy", "vendor", "VendorB", "down")
    key = incident_key(row)
    assert key == incident_key({**row, "observed": 0.1, "start_date": "2026-03-29"})
    assert key != incident_key({**row, "start_date": "2026-03-30"})
    assert key != incident_key({**row, "segment": "VendorA"})
