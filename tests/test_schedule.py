"""Schedules: validated YAML, crontab lines that run as cron runs them, a DAG file.

The DAG file is loaded in a real Airflow in ``test_airflow.py``.
"""

from __future__ import annotations

import ast
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import types
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import jinja2
import pytest

from qualitylab import ParameterError
from qualitylab.cli import main
from qualitylab.schedule import airflow_dag, crontab_lines, load_schedule

REPO = Path(__file__).resolve().parent.parent
CRON_FIELD = r"(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*"
CRON_LINE = re.compile(rf"^(?P<when>{CRON_FIELD}( {CRON_FIELD}){{4}}) (?P<command>\S.*)$")


def jobs(lines: list[str]) -> list[str]:
    return [line for line in lines if not line.startswith(("#", "CRON_TZ="))]


def as_cron_runs_it(line: str) -> str:
    """The command cron hands to ``sh -c``: the time fields stripped, ``\\%`` made ``%``.

    Cron cuts the command at an unescaped ``%`` (the rest becomes stdin), so there
    must be none.
    """
    match = CRON_LINE.match(line)
    assert match, line
    command = match["command"]
    assert not re.search(r"(?<!\\)%", command), f"unescaped % in {command}"
    return command.replace(r"\%", "%")


def words(line: str) -> list[str]:
    """The shell words and operators (``;``, ``&&``, ``>>``) of a crontab line's command,
    its trailing comment dropped."""
    lexer = shlex.shlex(as_cron_runs_it(line), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return list(lexer)


def after(tokens: list[str], word: str) -> str:
    return tokens[tokens.index(word) + 1]


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    """Paths with a space and a percent sign, none of them existing."""
    return {
        "home": tmp_path / "check out",
        "data": tmp_path / "my data",
        "out": tmp_path / "100% reports",
        "executable": tmp_path / "venv dir" / "bin" / "qualitylab",
    }


def test_crontab_lines_in_utc(paths):
    sched = load_schedule()
    lines = crontab_lines(sched, **paths)
    job_lines = jobs(lines)
    assert job_lines and all(CRON_LINE.match(line) for line in job_lines), job_lines[:3]
    assert all(line.startswith("#") for line in lines[: -len(job_lines)])
    assert not any(line.startswith("CRON_TZ=") for line in lines)
    header = "\n".join(lines)
    assert "clock runs in" in header and "`date`" in header and "--host-tz" in header
    # every market has its weekly review (Sydney's line fires under AEDT and AEST)
    for code in sched.params.codes:
        assert any(f"# weekly-review {code} " in line for line in job_lines), code
    # Singapore 06:00 on Monday is 22:00 UTC on Sunday, no daylight saving: no guard
    sg = next(line for line in job_lines if "# weekly-review SG " in line)
    assert sg.split()[:5] == ["0", "22", "*", "*", "0"]
    assert " due " not in sg
    # Sydney: every line is guarded by the local expression
    sydney = [line for line in job_lines if "Australia/Sydney)" in line]
    assert len(sydney) >= 2  # weekly review, daily trends
    for line in sydney:
        expr = re.search(r"\((.*) Australia/Sydney\)", line.rsplit("  # ", 1)[1])[1]
        # the firing minute is read by the shell (cron's \% is a literal %)
        assert (
            f"due --cron {shlex.quote(expr)} --tz Australia/Sydney "
            '--at "$(date -u +\\%Y-\\%m-\\%dT\\%H:\\%M:00+00:00)" && ' in line
        )
        tokens = words(line)
        assert tokens.index("due") < tokens.index("run")
    # every run names its report date; only the portfolio entry runs the portfolio
    for line in job_lines:
        tokens = words(line)
        assert after(tokens, "--as-of") == "yesterday"
        assert ("--no-portfolio" in tokens) == ("# portfolio " not in line), line
    portfolio = next(line for line in job_lines if "# portfolio " in line)
    assert portfolio.split()[:5] == ["0", "2", "*", "*", "1"]
    assert after(words(portfolio), "--markets") == "all"


def test_crontab_paths_are_absolute_and_quoted(paths, params_copy, monkeypatch):
    sched = load_schedule(params_copy)
    for line in jobs(crontab_lines(sched, **paths)):
        tokens = words(line)
        assert tokens[:3] == ["mkdir", "-p", str(paths["out"])]
        assert after(tokens, "cd") == str(paths["home"])
        assert after(tokens, "--parameters") == str(params_copy.resolve())
        assert after(tokens, "--data") == str(paths["data"])
        assert after(tokens, "--out") == str(paths["out"])
        assert after(tokens, ">>") == str(paths["out"] / "cron.log")
        assert tokens[tokens.index("--parameters") - 1] == str(paths["executable"])
    # relative paths are made absolute against the current folder
    monkeypatch.chdir(paths["home"].parent)
    line = jobs(crontab_lines(sched, data="data/demo", out="reports", home=REPO))[0]
    tokens = words(line)
    assert after(tokens, "--data") == str(paths["home"].parent / "data" / "demo")
    assert after(tokens, "cd") == str(REPO)
    assert Path(tokens[tokens.index("--parameters") - 1]).is_absolute()


def test_crontab_warns_about_long_lines(paths):
    paths["home"] = paths["home"] / ("x" * 700)
    with pytest.warns(UserWarning, match=r"Debian's cron cuts commands at about 1000"):
        crontab_lines(load_schedule(), **paths)


def test_crontab_host_zone(paths):
    lines = jobs(crontab_lines(load_schedule(), host_tz="Asia/Singapore", **paths))
    sg = next(line for line in lines if "# weekly-review SG " in line)
    assert sg.split()[:5] == ["0", "6", "*", "*", "1"]
    portfolio = next(line for line in lines if "# portfolio " in line)
    assert portfolio.split()[:5] == ["0", "10", "*", "*", "1"]
    with pytest.raises(ParameterError, match="unknown host time zone 'Mars/Olympus'"):
        crontab_lines(load_schedule(), host_tz="Mars/Olympus", **paths)


def test_crontab_cron_tz_mode(paths):
    sched = load_schedule()
    lines = crontab_lines(sched, cron_tz=True, host_tz="Asia/Tokyo", **paths)
    assert "cronie" in "\n".join(lines) and "Debian" in "\n".join(lines)
    zone = "Asia/Tokyo"
    for line in lines:
        if line.startswith("CRON_TZ="):
            zone = line.removeprefix("CRON_TZ=")
        elif not line.startswith("#"):
            # each line is the local expression verbatim, under its zone, unguarded
            assert line.endswith(f"({' '.join(line.split()[:5])} {zone})"), (zone, line)
            assert " due " not in line
            assert after(words(line), "--as-of") == "yesterday"
    sg = next(line for line in lines if "# weekly-review SG " in line)
    assert sg.split()[:5] == ["0", "6", "*", "*", "1"]
    assert lines[-1] == "CRON_TZ=Asia/Tokyo"  # the host zone again after the last entry (UTC)
    # market zones are set once per line group, not repeated
    tz_lines = [line for line in lines if line.startswith("CRON_TZ=")]
    assert all(a != b for a, b in zip(tz_lines, tz_lines[1:], strict=False))


def test_schedule_cli(paths, capsys, tmp_path):
    argv = ["schedule", "--crontab", "--home", str(paths["home"]), "--data", str(paths["data"])]
    assert main([*argv, "--cron-tz"]) == 0
    assert "CRON_TZ=Asia/Singapore" in capsys.readouterr().out
    assert main([*argv, "--host-tz", "Asia/Singapore"]) == 0
    assert any(
        line.startswith("0 6 * * 1 ") and "# weekly-review SG " in line
        for line in capsys.readouterr().out.splitlines()
    )
    assert main(["schedule", "--airflow", str(tmp_path / "dags"), "--home", "/srv/ql"]) == 0
    assert "qualitylab_dag.py" in capsys.readouterr().out


def test_due_cli(capsys):
    sydney = ["due", "--cron", "0 6 * * 1", "--tz", "Australia/Sydney"]
    assert main([*sydney, "--at", "2026-07-06T06:00"]) == 0  # AEST
    assert main([*sydney, "--at", "2026-11-29T19:00Z"]) == 0  # Monday 06:00 AEDT
    assert main([*sydney, "--at", "2026-07-06T07:00"]) == 1
    err = capsys.readouterr().err
    assert "2026-07-06 07:00 Australia/Sydney does not match '0 6 * * 1'" in err
    assert main([*sydney, "--at", "2026-11-29T20:00Z"]) == 1  # the AEST line in summer
    assert main(["due", "--cron", "0 6 * *", "--tz", "UTC"]) == 2
    assert main(["due", "--cron", "* * * * *", "--tz", "Mars/Olympus"]) == 2
    assert main(["due", "--cron", "* * * * *", "--tz", "UTC"]) == 0  # now


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
    (params_copy / "schedule.yaml").write_text(
        "runs:\n  - name: nightly\n    cron: '0 6 * * 1'\n    markets: [XX]\n"
    )
    with pytest.raises(ParameterError, match=r"schedule\.yaml: key 'runs\.nightly\.markets'"):
        load_schedule(params_copy)


# --------------------------------------------------------------------------- Airflow


def dag_runs(path: Path) -> list[tuple]:
    """The ``RUNS`` table of an exported DAG file, read with ``ast`` (no Airflow)."""
    tree = ast.parse(path.read_text())
    return next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "RUNS"
    )


def test_airflow_dag_parses_with_expected_dags_and_tasks(tmp_path, paths):
    sched = load_schedule()
    path = airflow_dag(sched, tmp_path / "dags", **paths)
    text = path.read_text()
    compile(text, str(path), "exec")
    runs = {dag_id: (cron, zone, tasks) for dag_id, cron, zone, _, tasks in dag_runs(path)}
    codes = sched.params.codes
    assert set(runs) == {
        *(f"qualitylab_weekly_review_{c.lower()}" for c in codes),
        *(f"qualitylab_daily_trends_{c.lower()}" for c in codes),
        "qualitylab_portfolio_all",
    }
    # market-local entries: the market's zone, one task running all the entry's notebooks
    assert runs["qualitylab_weekly_review_sg"] == (
        "0 6 * * 1",
        "Asia/Singapore",
        [("run_sg", "SG", "scorecard,trends,rca,ai", False)],
    )
    # the portfolio entry: one task for all markets that runs the portfolio
    assert runs["qualitylab_portfolio_all"] == (
        "0 2 * * 1",
        "UTC",
        [("run_all", "all", "scorecard", True)],
    )
    # imports for Airflow 3 first, Airflow 2 as the fallback
    assert "from airflow.sdk import DAG" in text
    assert "from airflow.providers.standard.operators.bash import BashOperator" in text
    # the exported paths are literals; the docstring says how to override them
    assert f'os.environ.get("QUALITYLAB_HOME") or {str(paths["home"])!r}' in text
    assert f'os.environ.get("QUALITYLAB_BIN") or {str(paths["executable"])!r}' in text
    assert "set the environment variables QUALITYLAB_HOME and" in text


def _fake_airflow(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stand-ins for the modules the DAG file imports; records the DAGs and tasks."""
    dags: list[dict] = []

    class DAG:
        def __init__(self, **kwargs):
            self.kwargs, self.tasks = kwargs, []

        def __enter__(self):
            dags.append({**self.kwargs, "tasks": self.tasks})
            return self

        def __exit__(self, *exc):
            return False

    def BashOperator(**kwargs):  # noqa: N802
        dags[-1]["tasks"].append(kwargs)

    pendulum = types.ModuleType("pendulum")
    pendulum.datetime = lambda *args, **kwargs: datetime(*args, tzinfo=ZoneInfo(kwargs["tz"]))
    modules = {
        "pendulum": pendulum,
        "airflow": types.ModuleType("airflow"),
        "airflow.sdk": types.SimpleNamespace(DAG=DAG),
        "airflow.providers.standard.operators.bash": types.SimpleNamespace(
            BashOperator=BashOperator
        ),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return dags


def test_airflow_commands_quote_paths_and_follow_home_override(tmp_path, paths, monkeypatch):
    paths["out"] = paths["home"] / "reports"
    path = airflow_dag(load_schedule(), tmp_path / "dags", **paths)
    dags = _fake_airflow(monkeypatch)
    monkeypatch.delenv("QUALITYLAB_HOME", raising=False)
    runpy.run_path(str(path))
    sg = next(d for d in dags if d["dag_id"] == "qualitylab_weekly_review_sg")
    assert (sg["max_active_runs"], sg["catchup"], sg["default_args"]["retries"]) == (1, False, 1)
    assert sg["start_date"].tzinfo == ZoneInfo("Asia/Singapore")
    (task,) = sg["tasks"]
    tokens = shlex.split(task["bash_command"])
    assert after(tokens, "cd") == str(paths["home"])
    assert after(tokens, "--data") == str(paths["data"])
    assert after(tokens, "--out") == str(paths["out"])
    assert task["bash_command"].endswith(
        " --as-of {{ report_date(dag_run, 'Asia/Singapore') }} --wait 3600 --no-portfolio"
    )
    # QUALITYLAB_HOME where Airflow runs moves the paths inside it
    dags.clear()
    monkeypatch.setenv("QUALITYLAB_HOME", "/srv/a b")
    runpy.run_path(str(path))
    sg = next(d for d in dags if d["dag_id"] == "qualitylab_weekly_review_sg")
    tokens = shlex.split(sg["tasks"][0]["bash_command"])
    assert (after(tokens, "cd"), after(tokens, "--out")) == ("/srv/a b", "/srv/a b/reports")
    assert after(tokens, "--data") == str(paths["data"])  # outside the home folder: kept
    portfolio = next(d for d in dags if d["dag_id"] == "qualitylab_portfolio_all")
    assert "--no-portfolio" not in portfolio["tasks"][0]["bash_command"]
    # a path that looks like a template stays a path when Airflow renders the command
    dags.clear()
    monkeypatch.setenv("QUALITYLAB_HOME", "/srv/{{ odd }} {% home %}")
    runpy.run_path(str(path))
    sg = next(d for d in dags if d["dag_id"] == "qualitylab_weekly_review_sg")
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)  # as Airflow's
    rendered = env.from_string(sg["tasks"][0]["bash_command"]).render(
        report_date=lambda dag_run, zone: "2026-11-29", dag_run=None
    )
    assert after(shlex.split(rendered), "cd") == "/srv/{{ odd }} {% home %}"


# --------------------------------------------------------------------------- acceptance


def test_crontab_line_runs_from_a_fresh_checkout(tmp_path):
    """Issue #15: a crontab line, run as cron runs it, where ``reports/`` does not exist."""
    from qualitylab.demo import generate

    home = tmp_path / "fresh checkout"  # a space: the quoting matters
    shutil.copytree(REPO / "notebooks", home / "notebooks")
    shutil.copytree(REPO / "parameters", home / "parameters")
    (home / "parameters" / "schedule.yaml").write_text(
        "runs:\n  - name: nightly\n    markets: [SG]\n    notebooks: [scorecard]\n"
        "    cron: '0 6 * * *'\n    timezone: market\n"
    )
    yesterday = (datetime.now(ZoneInfo("Asia/Singapore")) - timedelta(days=1)).date()
    data = tmp_path / "data"
    generate(data, markets=["SG"], scale="small", days=35, end_date=yesterday, seed=5)
    out = home / "reports"
    assert not out.exists()

    lines = crontab_lines(load_schedule(home / "parameters"), data=data, out=out, home=home)
    (line,) = [line for line in jobs(lines) if "# nightly SG " in line]
    assert line.split()[:5] == ["0", "22", "*", "*", "*"]
    proc = subprocess.run(
        ["sh", "-c", as_cron_runs_it(line)],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},  # cron's minimal environment
        cwd="/",
        capture_output=True,
        text=True,
        timeout=600,
    )
    log = out / "cron.log"
    assert proc.returncode == 0, (proc.stderr, log.read_text() if log.is_file() else "no log")
    assert log.is_file() and "SG" in log.read_text()
    assert (out / yesterday.isoformat() / "SG" / "scorecard.stakeholder.html").is_file()
