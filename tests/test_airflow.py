"""The exported DAG file in a real Apache Airflow, 2.x and 3.x (issue #15).

Each Airflow version is installed from PyPI into its own virtual environment,
created once and cached (``$QUALITYLAB_AIRFLOW_CACHE``, default
``~/.cache/qualitylab``, folder ``airflow-<version>``; a marker file written after
a successful install, so an interrupted install is redone). A script run by that
environment's python loads the exported file with Airflow's ``DagBag`` and
reports import errors, warnings raised by the file, the DAGs and their tasks,
when the scheduler would run them (the timetable of the serialized DAG, as the
scheduler sees it) and one task's command rendered by Airflow's own templating.

Without network the install fails and so does the test; set
``QUALITYLAB_SKIP_AIRFLOW=1`` to skip instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from qualitylab.schedule import airflow_dag, load_schedule

AIRFLOW_VERSIONS = ("2.10.5", "3.3.2")
MARKER = ".qualitylab-installed"

# Run by the Airflow environment's python: argv[1] is a JSON request, stdout one JSON answer.
LOAD_SCRIPT = r'''
import json
import os
import sys
import warnings
from datetime import datetime, timezone
from types import SimpleNamespace

import pendulum

try:  # Airflow 3
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization as Serializer
except ImportError:  # Airflow 2
    from airflow.models.dagbag import DagBag
    from airflow.serialization.serialized_objects import SerializedDAG as Serializer
from airflow.timetables.base import TimeRestriction

request = json.loads(sys.argv[1])


def first_run_at_or_after(dag, when):
    """The scheduler's run of `dag` firing first at or after `when`: its DagRunInfo."""
    timetable = Serializer.from_dict(Serializer.to_dict(dag)).timetable
    restriction = TimeRestriction(earliest=when.subtract(days=8), latest=None, catchup=True)
    info = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    while info.run_after < when:
        info = timetable.next_dagrun_info(
            last_automated_data_interval=info.data_interval, restriction=restriction
        )
    return info


def render(dag, task_id, context):
    task = dag.get_task(task_id)
    return task.render_template(task.bash_command, context, jinja_env=dag.get_template_env())


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    bag = DagBag(dag_folder=request["folder"])
    dag_id, task_id, fire = request["render"]
    dag = bag.dags[dag_id]
    info = first_run_at_or_after(dag, pendulum.parse(fire))
    scheduled = render(dag, task_id, {
        "data_interval_start": info.data_interval.start,
        "data_interval_end": info.data_interval.end,
        "dag_run": SimpleNamespace(
            data_interval_start=info.data_interval.start,
            data_interval_end=info.data_interval.end,
            run_after=info.run_after,
        ),
    })
    # a manual run on Airflow 3 without a logical date: no data interval, a plain datetime
    manual_at = datetime.fromisoformat(request["manual_at"])
    manual = render(dag, task_id, {
        "dag_run": SimpleNamespace(data_interval_end=None, run_after=manual_at),
    })
    runs = {
        f"{d} {after}": first_run_at_or_after(bag.dags[d], pendulum.parse(after)).run_after.isoformat()
        for d, after in request["next_runs"]
    }
    os.environ["QUALITYLAB_HOME"] = request["home_override"]
    moved = DagBag(dag_folder=request["folder"])
    overridden = render(moved.dags[dag_id], task_id, {"dag_run": SimpleNamespace(
        data_interval_end=info.data_interval.end, run_after=info.run_after)})

print(json.dumps({
    "airflow": __import__("airflow").__version__,
    "import_errors": bag.import_errors,
    "file_warnings": {k: list(v) for k, v in bag.captured_warnings.items()}
    | {"(caught)": [f"{w.category.__name__}: {w.message}" for w in caught
                    if w.filename.endswith("qualitylab_dag.py")]},
    "dags": {d: sorted(t.task_id for t in g.tasks) for d, g in bag.dags.items()},
    "run_after": info.run_after.isoformat(),
    "data_interval_end": info.data_interval.end.isoformat(),
    "scheduled": scheduled,
    "manual": manual,
    "overridden": overridden,
    "next_runs": runs,
}))
'''


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two test sessions installing at once)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def airflow_python(version: str) -> Path:
    """The python of a cached virtual environment holding ``apache-airflow==version``."""
    if os.environ.get("QUALITYLAB_SKIP_AIRFLOW") == "1":
        pytest.skip("QUALITYLAB_SKIP_AIRFLOW=1")
    cache = Path(
        os.environ.get("QUALITYLAB_AIRFLOW_CACHE") or Path.home() / ".cache" / "qualitylab"
    )
    venv = cache / f"airflow-{version}"
    python = venv / "bin" / "python"
    with _locked(cache / f"airflow-{version}.lock"):
        marker = venv / MARKER
        if marker.is_file() and marker.read_text().strip() == version:
            return python
        shutil.rmtree(venv, ignore_errors=True)
        steps = (
            [sys.executable, "-m", "venv", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", f"apache-airflow=={version}"],
        )
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            if proc.returncode:
                pytest.fail(
                    f"could not install apache-airflow=={version} into {venv} "
                    f"({' '.join(cmd[-2:])} exited {proc.returncode}; no network?). "
                    f"Set QUALITYLAB_SKIP_AIRFLOW=1 to skip this test.\n"
                    f"{proc.stderr[-3000:]}",
                    pytrace=False,
                )
        (venv / MARKER).write_text(version)
    return python


@pytest.mark.parametrize("version", AIRFLOW_VERSIONS)
def test_exported_dag_loads_in_airflow(version, tmp_path):
    python = airflow_python(version)
    home = tmp_path / "my home"
    exe = home / ".venv" / "bin" / "qualitylab"
    sched = load_schedule()
    folder = airflow_dag(
        sched,
        tmp_path / "dags",
        data=tmp_path / "data dir",
        out=home / "reports",
        home=home,
        executable=exe,
    )
    request = {
        "folder": str(folder.parent),
        # the weekly review for Singapore scheduled Monday 2026-11-30 06:00 +08:00
        "render": ["qualitylab_weekly_review_sg", "run_sg", "2026-11-29T22:00:00+00:00"],
        "manual_at": "2026-12-02T03:00:00+00:00",  # Wednesday 11:00 in Singapore
        "next_runs": [
            ["qualitylab_weekly_review_au", "2026-07-01T00:00:00+00:00"],  # AEST, +10
            ["qualitylab_weekly_review_au", "2026-12-01T00:00:00+00:00"],  # AEDT, +11
            ["qualitylab_portfolio_all", "2026-12-01T00:00:00+00:00"],
        ],
        "home_override": "/srv/quality lab",
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(folder.parent),
    }
    script = tmp_path / "load_dag.py"
    script.write_text(LOAD_SCRIPT)
    proc = subprocess.run(
        [str(python), str(script), json.dumps(request)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["airflow"] == version

    # 1. no import errors, no warnings from the file (deprecated imports)
    assert out["import_errors"] == {}
    assert not any(out["file_warnings"].values()), out["file_warnings"]

    # 2. one DAG per market-local entry and market with one task; the portfolio in one task
    codes = sched.params.codes
    expected = {
        **{f"qualitylab_weekly_review_{c.lower()}": [f"run_{c.lower()}"] for c in codes},
        **{f"qualitylab_daily_trends_{c.lower()}": [f"run_{c.lower()}"] for c in codes},
        "qualitylab_portfolio_all": ["run_all"],
    }
    assert out["dags"] == expected

    # 3. the scheduler runs it at 06:00 Singapore time; the command names the day before
    assert out["run_after"] == out["data_interval_end"] == "2026-11-29T22:00:00+00:00"
    q = shlex.quote

    def command(date: str, home: Path = home) -> str:
        return (
            f"cd {q(str(home))} && {q(str(exe))} --parameters {q(sched.params.root)} run "
            f"--data {q(str(tmp_path / 'data dir'))} --out {q(str(home / 'reports'))} "
            f"--markets SG --notebooks scorecard,trends,rca,ai --as-of {date} --wait 3600 --no-portfolio"
        )

    assert out["scheduled"] == command("2026-11-29")
    # a manual run on Wednesday reports Tuesday
    assert out["manual"] == command("2026-12-01")
    # QUALITYLAB_HOME set where Airflow runs: the reports folder (inside it) follows
    assert out["overridden"] == command("2026-11-29", home=Path("/srv/quality lab"))
    # Sydney's weekly review stays at 06:00 local across daylight saving; portfolio 02:00 UTC
    assert list(out["next_runs"].values()) == [
        "2026-07-05T20:00:00+00:00",
        "2026-12-06T19:00:00+00:00",
        "2026-12-07T02:00:00+00:00",
    ]
