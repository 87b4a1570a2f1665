"""Schedules: validated YAML, valid crontab lines, a parseable Airflow DAG."""

from __future__ import annotations

import ast
import re

import pytest

from qualitylab import ParameterError
from qualitylab.schedule import airflow_dag, crontab_lines, load_schedule

CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON_LINE = re.compile(rf"^{CRON_FIELD}( {CRON_FIELD}){{4}} \S.*$")


def test_crontab_lines_are_valid_cron():
    sched = load_schedule()
    lines = crontab_lines(sched, data="data/demo")
    jobs = [line for line in lines if not line.startswith(("#", "CRON_TZ"))]
    assert jobs and all(CRON_LINE.match(line) for line in jobs), jobs[:3]
    minute, hour, *_ = jobs[0].split()
    assert 0 <= int(minute) < 60 and 0 <= int(hour) < 24
    # one line per market for the market-local weekly review
    assert sum("weekly-review" in line for line in jobs) == len(sched.params.codes)
    # Singapore 06:00 local on Monday is 22:00 UTC on Sunday
    sg = next(line for line in jobs if "weekly-review SG" in line)
    assert sg.split()[:5] == ["0", "22", "*", "*", "0"]


def test_airflow_dag_is_valid_python_with_expected_tasks(tmp_path):
    path = airflow_dag(load_schedule(), tmp_path, data="data/demo")
    tree = ast.parse(path.read_text())
    dag_ids = [
        kw.value.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "DAG"
        for kw in node.keywords
        if kw.arg == "dag_id"
    ]
    assert "qualitylab_weekly_review_sg" in dag_ids and "qualitylab_portfolio_all" in dag_ids
    task_ids = [
        kw.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "BashOperator"
        for kw in node.keywords
        if kw.arg == "task_id"
    ]
    # task ids are f"{market}_{notebook}"
    assert task_ids and all(isinstance(t, ast.JoinedStr) for t in task_ids)


def test_bad_schedule_names_file_and_key(params_copy):
    (params_copy / "schedule.yaml").write_text(
        "runs:\n  - name: nightly\n    cron: '61 25 * *'\n    notebooks: [scorecard]\n"
    )
    with pytest.raises(ParameterError, match=r"schedule\.yaml: key 'runs\.0\.cron'"):
        load_schedule(params_copy)
    (params_copy / "schedule.yaml").write_text(
        "runs:\n  - name: nightly\n    cron: '0 6 * * 1'\n    notebooks: [scorecard]\n    colour: red\n"
    )
    with pytest.raises(ParameterError, match=r"key 'runs\.0\.colour': unknown key"):
        load_schedule(params_copy)
