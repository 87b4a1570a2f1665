"""Go-live readiness: the launch-plan contract, Erlang C, and every check's verdict."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from qualitylab.demo import DEMO_LAUNCH, generate
from qualitylab.errors import ParameterError
from qualitylab.params import load_parameters
from qualitylab.readiness import (
    CHECKS,
    READINESS_COLUMNS,
    LaunchPlan,
    _erlang_c,
    _required_agents,
    _service_level,
    has_failures,
    load_launch_plan,
    load_launch_plans,
    readiness,
)
from qualitylab.sources import open_dataset
from tests.conftest import PARAMS, tiny_tables, write_tables

PLAN = PARAMS / "launches" / f"{DEMO_LAUNCH.plan}.yaml"


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def plan() -> LaunchPlan:
    return load_launch_plan(PLAN)


@pytest.fixture(scope="module")
def checklist(ds):
    return readiness(ds, PLAN)


def _status(frame: pd.DataFrame) -> dict[str, str]:
    return dict(zip(frame["check"], frame["status"], strict=True))


def _evidence(frame: pd.DataFrame, check: str) -> str:
    return frame.loc[frame["check"] == check, "evidence"].item()


def _write_plan(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(PLAN.read_text(encoding="utf-8"))
    raw.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        raw.pop(key)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- #
# The planted demo launch
# --------------------------------------------------------------------------- #
def test_demo_plan_fails_exactly_its_planted_check(checklist, plan):
    assert list(checklist.columns) == READINESS_COLUMNS
    assert tuple(checklist["check"]) == CHECKS
    status = _status(checklist)
    assert {c for c, s in status.items() if s == "fail"} == set(plan.expected_failures)
    assert set(status.values()) == {"pass", "fail"}  # nothing unknown on complete data
    assert has_failures(checklist)
    # Evidence names the missing KPI and what was reported; every row has an owner.
    rep = _evidence(checklist, "reporting")
    assert "not reported: escalation_rate" in rep and "accuracy (" in rep
    assert checklist["owner"].str.len().gt(0).all()
    assert checklist["evidence"].str.len().gt(40).all()


def test_passing_checks_show_their_numbers(checklist):
    staffing = _evidence(checklist, "staffing")
    assert "Erlang C" in staffing and "agents" in staffing and "live_shopping" in staffing
    assert "score" in _evidence(checklist, "calibration")
    assert "audits/week" in _evidence(checklist, "qa_sampling")
    lang = _evidence(checklist, "languages")
    assert "en " in lang and "zh " in lang


def test_demo_plan_fails_only_its_check_at_another_seed(tmp_path):
    generate(tmp_path, markets=["SG"], scale="small", seed=23, days=56)
    status = _status(readiness(open_dataset(tmp_path), PLAN))
    assert status == {
        "staffing": "pass",
        "calibration": "pass",
        "qa_sampling": "pass",
        "reporting": "fail",
        "languages": "pass",
    }


# --------------------------------------------------------------------------- #
# Each check can fail, with evidence
# --------------------------------------------------------------------------- #
def test_each_check_fails_for_its_own_reason(ds, plan):
    cases = {
        "staffing": ({"expected_volume": 20_000.0}, "staffed"),
        "calibration": ({"calibration_bar": 0.999}, "bar 100%"),
        "qa_sampling": ({"qa_margin": 0.01}, "need"),
        "languages": ({"languages": ("en", "th")}, "not covered: th"),
    }
    for check, (update, text) in cases.items():
        status = readiness(ds, plan.model_copy(update={**update, "kpis": ()}))
        assert _status(status)[check] == "fail", (check, status)
        assert _status(status)["reporting"] == "pass"
        assert text in _evidence(status, check), (check, _evidence(status, check))


def test_staffing_uses_planning_handle_times(ds, plan):
    # by default the similar queues' planning aht_seconds (15-120 s in defaults.yaml)
    default = _evidence(readiness(ds, plan), "staffing")
    assert "planning aht_seconds of live_comment, live_report, live_stream" in default
    # a plan's own handle time wins: 20 minutes per item needs far more than the roster
    slow = readiness(ds, plan.model_copy(update={"aht_seconds": 1200.0}))
    assert _status(slow)["staffing"] == "fail"
    assert "handle time 1200 s (the launch plan's aht_seconds)" in _evidence(slow, "staffing")


def test_staffing_without_a_roster_fails(ds, plan):
    out = readiness(ds, plan.model_copy(update={"queue": "live_auction"}))
    assert _status(out)["staffing"] == "fail"
    assert "no hours rostered for live_auction" in _evidence(out, "staffing")


def test_missing_tables_make_checks_unknown(tmp_path):
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    plan = LaunchPlan(
        market="SG",
        vendor="VendorB",
        site="B-KUL",
        queue="live_shopping",
        date="2026-03-09",
        expected_volume=100,
        languages=["zh"],
        policies=["scam"],
        sla_seconds=300,
        kpis=["accuracy"],
    )
    status = _status(readiness(ds, plan))
    assert status["calibration"] == "unknown" and status["reporting"] == "unknown"
    assert status["staffing"] == "fail"  # the roster is missing from staffing
    assert status["languages"] == "fail"  # one zh decision is too few


# --------------------------------------------------------------------------- #
# Launch-plan validation names the file and the key
# --------------------------------------------------------------------------- #
def test_committed_plans_validate():
    plans = load_launch_plans(PARAMS, parameters=load_parameters(PARAMS))
    assert set(plans) == {DEMO_LAUNCH.plan}
    assert plans[DEMO_LAUNCH.plan].expected_failures == ("reporting",)


@pytest.mark.parametrize(
    ("changes", "key", "text"),
    [
        ({"head_count": 12}, "head_count", "unknown key"),
        ({"expected_volume": -5}, "expected_volume", "greater than 0"),
        ({"kpis": ["accuracy", "happiness"]}, "kpis", "unknown KPI 'happiness'"),
        ({"expected_failures": ["catering"]}, "expected_failures", "unknown check"),
        ({"languages": ["EN"]}, "languages", "ISO 639-1"),
        ({"market": "sg"}, "market", "alpha-2"),
        ({"date": "next week"}, "date", "valid date"),
        ({"queue": None}, "queue", "required key is missing"),
    ],
)
def test_bad_plans_name_file_and_key(tmp_path, changes, key, text):
    path = _write_plan(tmp_path, **changes)
    with pytest.raises(ParameterError, match=text) as err:
        load_launch_plan(path)
    assert err.value.file == str(path) and err.value.key == key
    assert str(path) in str(err.value) and f"key '{key}'" in str(err.value)


def test_market_without_parameters_is_refused(tmp_path):
    path = _write_plan(tmp_path, market="ZZ")
    with pytest.raises(ParameterError, match="'ZZ' has no parameters file") as err:
        load_launch_plan(path, parameters=load_parameters(PARAMS))
    assert err.value.key == "market"
    with pytest.raises(ParameterError, match="not found"):
        load_launch_plan(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- #
# Erlang C
# --------------------------------------------------------------------------- #
def _erlang_c_factorial(a: float, c: int) -> float:
    """Erlang C from its textbook definition (sum of Poisson terms)."""
    top = a**c / math.factorial(c) * c / (c - a)
    return top / (sum(a**k / math.factorial(k) for k in range(c)) + top)


def test_erlang_c_matches_the_textbook():
    # Worked example (callcentrehelper.com, "Erlang C formula"): 100 calls per
    # 30 minutes, 180 s handle time, 80% answered within 20 s -> 10 Erlangs,
    # 14 agents, P(wait) = 17.4%, service level 88.8%; 13 agents give 79.6%.
    assert _erlang_c(10.0, 14) == pytest.approx(0.1741, abs=1e-4)
    assert _service_level(200.0, 180.0, 20.0, 14) == pytest.approx(0.8883, abs=1e-4)
    assert _service_level(200.0, 180.0, 20.0, 13) == pytest.approx(0.7956, abs=1e-4)
    assert _required_agents(200.0, 180.0, 20.0, 0.8) == 14
    for a, c in [(0.5, 1), (3.2, 5), (17.0, 20), (42.5, 50)]:
        assert _erlang_c(a, c) == pytest.approx(_erlang_c_factorial(a, c), rel=1e-10)
    assert _required_agents(0.0, 60.0, 300.0, 0.9) == 0
    assert _erlang_c(5.0, 5) == 1.0  # saturated: everyone waits
