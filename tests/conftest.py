"""Shared fixtures: a tiny valid dataset built by hand, and the demo data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
PARAMS = REPO / "parameters"

#: Fixture modules that break the layer rules on purpose (tests/test_layers.py).
collect_ignore = ["layer_fixtures"]


def tiny_tables() -> dict[str, pd.DataFrame]:
    """A minimal dataset that satisfies the contract (8 decisions, 5 audits)."""
    t0 = pd.Timestamp("2026-03-02 02:00", tz="UTC")
    n = 8
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "created_at": [t0 + pd.Timedelta(minutes=10 * i) for i in range(n)],
            "decided_at": [t0 + pd.Timedelta(minutes=10 * i + 3) for i in range(n - 1)] + [pd.NaT],
            "market": ["SG"] * 6 + ["ID"] * 2,
            "vendor": [
                "VendorA",
                "VendorA",
                "VendorB",
                "VendorB",
                "inhouse",
                "VendorA",
                "VendorA",
                "VendorC",
            ],
            "site": ["A-MNL", "A-MNL", "B-KUL", "B-KUL", "HQ", "A-MNL", "A-MNL", "C-JKT"],
            "queue": [
                "live_stream",
                "live_comment",
                "live_stream",
                "live_report",
                "appeal",
                "live_stream",
                "live_stream",
                "live_comment",
            ],
            "language": ["en", "en", "zh", "ms", "en", "en", "id", "id"],
            "moderator_id": ["m1", "m1", "m2", "m3", "m4", None, "m5", "m6"],
            "routing": [
                "human",
                "ai_assisted",
                "ai_assisted",
                "human",
                "human",
                "ai_auto",
                "human",
                "human",
            ],
            "action": [
                "no_action",
                "warn",
                "ban",
                "no_action",
                "end_live",
                "restrict",
                "no_action",
                None,
            ],
            "policy": ["none", "spam", "hate_speech", "none", "nudity", "scam", "none", None],
            "ai_model": ["mod-v3"] * n,
            "ai_score": [0.1, 0.7, 0.9, 0.2, 0.6, 0.99, 0.05, 0.3],
            "ai_policy": ["none", "spam", "hate_speech", "none", "nudity", "scam", "none", "none"],
        }
    )
    decisions["decided_at"] = pd.to_datetime(decisions["decided_at"], utc=True)
    audits = pd.DataFrame(
        {
            "audit_id": [f"a{i}" for i in range(5)],
            "decision_id": ["d0", "d1", "d2", "d2", "d3"],
            "audited_at": [t0 + pd.Timedelta(days=1, minutes=i) for i in range(5)],
            "qa_source": ["vendor", "internal", "vendor", "internal", "internal"],
            "auditor_id": ["q1", "q2", "q1", "q2", "q2"],
            "qa_action": ["no_action", "warn", "ban", "ban", "warn"],
            "qa_policy": ["none", "spam", "hate_speech", "hate_speech", "spam"],
            "sample_weight": [1.0, 2.0, None, 1.5, 1.0],
        }
    )
    staffing = pd.DataFrame(
        {
            "date": pd.to_datetime(["2026-03-02"] * 2).date,
            "market": ["SG", "SG"],
            "vendor": ["VendorA", "VendorB"],
            "site": ["A-MNL", "B-KUL"],
            "queue": ["live_stream", "live_stream"],
            "scheduled_hours": [8.0, 8.0],
            "productive_hours": [7.0, 6.5],
        }
    )
    events = pd.DataFrame(
        {
            "effective_at": [t0],
            "market": ["*"],
            "kind": ["model_release"],
            "policy": [None],
            "description": ["mod-v3 everywhere"],
        }
    )
    return {"decisions": decisions, "qa_audits": audits, "staffing": staffing, "events": events}


def write_tables(folder: Path, tables: dict[str, pd.DataFrame], fmt: str = "parquet") -> Path:
    """Write tables as ``name.parquet`` or ``name.csv`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        if fmt == "csv":
            df.to_csv(folder / f"{name}.csv", index=False)
        else:
            df.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _check_memo_in_tmp(tmp_path_factory: pytest.TempPathFactory):
    """Keep the datasets' check memo (sources.check_memo_dir) out of the home folder."""
    import os

    saved = os.environ.get("QUALITYLAB_CACHE_DIR")
    os.environ["QUALITYLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("qlcache"))
    yield
    if saved is None:
        os.environ.pop("QUALITYLAB_CACHE_DIR", None)
    else:
        os.environ["QUALITYLAB_CACHE_DIR"] = saved


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A folder holding the tiny valid dataset as Parquet."""
    return write_tables(tmp_path / "tiny", tiny_tables())


@pytest.fixture(scope="session")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo data at `small` scale (generated once per test session)."""
    from qualitylab.demo import generate

    out = tmp_path_factory.mktemp("small")
    generate(out, scale="small", seed=7, days=56)
    return out


@pytest.fixture
def params_copy(tmp_path: Path) -> Path:
    """A writable copy of the parameters folder."""
    dest = tmp_path / "parameters"
    shutil.copytree(PARAMS, dest)
    return dest


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ANN001, ARG001
    """Print the partial-data grid (issue #14) when its test ran."""
    import sys

    cases = sys.modules.get("tests.partial_cases")
    lines = cases.matrix_lines() if cases is not None else []
    if lines:
        terminalreporter.section("partial data: case x command (tests/test_partial_data.py)")
        for line in lines:
            terminalreporter.write_line(line)
