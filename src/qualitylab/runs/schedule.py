"""Schedules: which notebooks run for which markets, when.

``parameters/schedule.yaml`` is validated like every parameters file (unknown
keys and bad values name the file and key). Two exports run it:

- :func:`crontab_lines`: crontab lines with absolute, shell-quoted paths. By
  default in the cron daemon's zone, with one guarded line per UTC offset for
  market zones that have daylight saving (:func:`qualitylab.cron.to_zone` and
  ``qualitylab due``); with ``cron_tz=True``, market-local ``CRON_TZ=`` lines
  for crons that support them (cronie).
- :func:`airflow_dag`: an Airflow DAG file that loads on Airflow 2 and 3; one
  DAG per market-local entry and market, with one task running that market's
  notebooks, so no two tasks write one market's folder at once.

Every scheduled run names its report date: cron passes ``--as-of yesterday``
(resolved in each market's zone when the run starts), Airflow the day before
the run's scheduled time in the entry's zone, from its data interval.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qualitylab.data.params import Parameters, format_validation, load_parameters, read_yaml
from qualitylab.errors import ParameterError, QualityLabError

__all__ = ["Schedule", "ScheduledRun", "airflow_dag", "crontab_lines", "load_schedule"]

_NOTEBOOK_KEYS = ("scorecard", "trends", "rca", "ai")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")
#: Vixie cron (Debian, Ubuntu) cuts a crontab command at 1000 characters.
_MAX_CRON_COMMAND = 999
DAG_FILE = "qualitylab_dag.py"


class ScheduledRun(BaseModel):
    """One schedule entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    markets: Literal["all"] | tuple[str, ...] = "all"
    notebooks: tuple[Literal["scorecard", "trends", "rca", "ai"], ...] = _NOTEBOOK_KEYS
    cron: str
    timezone: str = "market"
    portfolio: bool = False

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        parts = v.split()
        if len(parts) != 5 or not all(_CRON_FIELD.match(p) for p in parts):
            raise ValueError(f"not a 5-field cron expression: {v!r}")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        if v != "market":
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {v!r} (use an IANA name or 'market')") from exc
        return v


class Schedule(BaseModel):
    """All schedule entries plus the parameters they refer to."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    runs: tuple[ScheduledRun, ...]
    path: str = ""
    params: Parameters | None = None


def load_schedule(parameters: str | os.PathLike[str] | None = None) -> Schedule:
    """Load and validate ``parameters/schedule.yaml``.

    Examples
    --------
    >>> sched = load_schedule()
    >>> sched.runs[0].name
    'weekly-review'
    """
    params = load_parameters(parameters)
    path = Path(params.root) / "schedule.yaml"
    if not path.is_file():
        raise ParameterError(f"{path}: no schedule file", file=str(path))
    raw = read_yaml(path)
    try:
        sched = Schedule(runs=raw.get("runs", ()), **{k: v for k, v in raw.items() if k != "runs"})
    except ValidationError as exc:
        raise format_validation(path, exc) from None
    for r in sched.runs:
        if r.markets != "all":
            for code in r.markets:
                if code not in params.markets:
                    raise ParameterError(
                        f"{path}: key 'runs.{r.name}.markets': market {code!r} has no "
                        "parameters file",
                        file=str(path),
                        key=f"runs.{r.name}.markets",
                    )
    return Schedule(runs=sched.runs, path=str(path), params=params)


# --------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class _Paths:
    """Absolute paths a scheduled run needs (``data`` may be a connection URL)."""

    home: str
    executable: str
    parameters: str
    data: str
    out: str


def _absolute(path: str | os.PathLike[str]) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def _is_url(data: str) -> bool:
    return "://" in data and not Path(data).exists()


def _default_executable() -> str:
    """The ``qualitylab`` script of the running environment (not resolved: a venv's
    ``bin/python`` is a symlink, its scripts sit beside it)."""
    beside = Path(sys.executable).with_name("qualitylab")
    if beside.is_file():
        return _absolute(beside)
    found = shutil.which("qualitylab")
    if found:
        return _absolute(found)
    raise QualityLabError(
        f"no qualitylab executable beside {sys.executable} or on PATH; pass its path "
        "(executable=...)"
    )


def _default_home() -> str:
    from qualitylab.runs.runner import find_notebooks_dir

    try:
        return str(find_notebooks_dir().resolve().parent)
    except ParameterError as exc:
        raise ParameterError(
            f"{exc}; pass the project folder (--home DIR, the folder holding notebooks/)",
            key="home",
        ) from None


def _paths(
    sched: Schedule,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    home: str | os.PathLike[str] | None,
    executable: str | os.PathLike[str] | None,
) -> _Paths:
    assert sched.params is not None, "use load_schedule()"
    data = os.fspath(data)
    paths = _Paths(
        home=str(Path(home).expanduser().resolve()) if home is not None else _default_home(),
        executable=_absolute(executable) if executable is not None else _default_executable(),
        parameters=str(Path(sched.params.root).resolve()),
        data=data if _is_url(data) else _absolute(data),
        out=_absolute(out),
    )
    for name, value in vars(paths).items():
        if "\n" in value or "\r" in value:
            raise ParameterError(
                f"{name} {value!r}: a scheduled path cannot hold a line break", key=name
            )
    return paths


def _markets(sched: Schedule, run: ScheduledRun) -> tuple[str, ...]:
    assert sched.params is not None
    return sched.params.codes if run.markets == "all" else run.markets


def _check_zone(zone: str, what: str) -> None:
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParameterError(
            f"unknown {what} time zone {zone!r} (use an IANA name such as UTC or Europe/Berlin)",
            key=what.replace(" ", "_"),
        ) from None


# --------------------------------------------------------------------------- cron


#: Seconds a scheduled run waits for another run of the same market (the Monday
#: review still running when the daily trends run starts) before it gives up.
_WAIT = 3600


def _run_command(p: _Paths, markets: str, notebooks: str, portfolio: bool, guard: str = "") -> str:
    """``mkdir -p OUT && { cd HOME && [GUARD &&] BIN run ...; } >> OUT/cron.log 2>&1``."""
    q = shlex.quote
    run = (
        f"{q(p.executable)} --parameters {q(p.parameters)} run --data {q(p.data)} "
        f"--out {q(p.out)} --markets {markets} --notebooks {notebooks} --as-of yesterday "
        f"--wait {_WAIT}" + ("" if portfolio else " --no-portfolio")
    )
    log = q(os.path.join(p.out, "cron.log"))
    return f"mkdir -p {q(p.out)} && {{ cd {q(p.home)} && {guard}{run}; }} >> {log} 2>&1"


def _cron_line(expr: str, command: str, comment: str) -> str:
    # cron turns an unescaped % into a newline (the rest becomes stdin)
    command = command.replace("%", r"\%")
    if len(command) > _MAX_CRON_COMMAND:
        warnings.warn(
            f"crontab command for {comment} is {len(command)} characters; Debian's cron "
            "cuts commands at about 1000 (use shorter paths)",
            stacklevel=3,
        )
    return f"{expr} {command}  # {comment}"


def crontab_lines(
    sched: Schedule,
    *,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] = "reports",
    home: str | os.PathLike[str] | None = None,
    host_tz: str = "UTC",
    cron_tz: bool = False,
    executable: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Crontab lines that run each schedule entry, with its report date.

    Parameters
    ----------
    sched : Schedule
        From :func:`load_schedule`.
    data : path or str
        The dataset (``--data`` of ``qualitylab run``); a relative path is made
        absolute against the current directory, a connection URL is kept.
    out : path, default "reports"
        Reports folder, made absolute; each line creates it and appends its output
        to ``<out>/cron.log``.
    home : path, optional
        The project folder the runs start in (holding ``notebooks/``); default:
        the parent of the notebooks folder found from the current directory.
    host_tz : str, default "UTC"
        The cron daemon's time zone: the zone its clock runs in (``date`` on the
        host shows it). Lines are converted to it, except with ``cron_tz``.
    cron_tz : bool, default False
        Write market-local lines under ``CRON_TZ=<zone>`` lines instead of
        converting them; only for crons that support ``CRON_TZ`` (cronie), not
        Debian's or Ubuntu's cron.
    executable : path, optional
        The ``qualitylab`` executable; default the script of the running
        environment.

    Returns
    -------
    list of str
        Comment lines, optional ``CRON_TZ=`` lines and one job line per
        market-local entry × market (at most one per UTC offset), one per other
        entry.

    Raises
    ------
    ParameterError
        For an unknown ``host_tz``, a path with a line break, or no ``home``
        given and no notebooks folder found.

    Warns
    -----
    UserWarning
        When a line's command is longer than Debian's cron reads.

    Notes
    -----
    Each job runs ``qualitylab run --markets <CODE> --notebooks <entry's> --as-of
    yesterday``: the report date is the last day that has ended in the market's
    zone when the run starts. Entries with ``timezone: market`` get one line per
    market. By default their local expression is converted to ``host_tz`` with
    :func:`qualitylab.cron.to_zone`; for a zone with daylight saving the line fires
    at the local time under each of the zone's UTC offsets and is prefixed with
    ``qualitylab due --cron <local> --tz <zone> &&``, which lets the run start only
    when the local time matches, so the job runs once, at the same local time, all
    year. Other entries run all their markets in one
    line; ``--no-portfolio`` unless ``portfolio: true``.

    Examples
    --------
    >>> lines = crontab_lines(load_schedule(), data="/srv/data", out="/srv/reports",
    ...                       home="/srv/qualitylab", executable="/srv/venv/bin/qualitylab")
    >>> print(next(line for line in lines if "weekly-review SG" in line))
    0 22 * * 0 mkdir -p /srv/reports && { cd /srv/qualitylab &&
    /srv/venv/bin/qualitylab --parameters ... run --data /srv/data --out /srv/reports
    --markets SG --notebooks scorecard,trends,rca,ai --as-of yesterday --wait 3600
    --no-portfolio; }
    >> /srv/reports/cron.log 2>&1  # weekly-review SG (0 6 * * 1 Asia/Singapore)
    >>> sydney = [line for line in lines if "weekly-review AU" in line]
    >>> [line.split(" mkdir")[0] for line in sydney]  # 06:00 in AEDT (+11) and AEST (+10)
    ['0 19,20 * * 0']
    >>> "due --cron '0 6 * * 1' --tz Australia/Sydney --at " in sydney[0]
    True
    """
    from qualitylab.runs import cron

    assert sched.params is not None, "use load_schedule()"
    _check_zone(host_tz, "host")
    p = _paths(sched, data, out, home, executable)
    q = shlex.quote
    lines = [
        "# qualitylab scheduled runs, from " + p.parameters + "/schedule.yaml",
        "# (regenerate after changing it: qualitylab schedule --crontab)",
        "# Install: qualitylab schedule --crontab > qualitylab.cron && crontab qualitylab.cron",
        "# (crontab FILE replaces your crontab: merge with `crontab -l` first if you have one).",
        "# Each job runs in " + p.home + ", reports the market-local day before it starts",
        "# (--as-of yesterday) and appends its output to " + os.path.join(p.out, "cron.log") + ".",
    ]
    if cron_tz:
        lines += [
            "# Times are local: CRON_TZ=<zone> sets the zone of the lines below it, so they",
            "# stay at the same local time across daylight saving. Needs a cron that supports",
            "# CRON_TZ per line (cronie: Fedora, RHEL, Arch); Debian's and Ubuntu's cron ignore",
            "# it and would run these in the system zone: use the default mode there.",
        ]
    else:
        lines += [
            f"# Times are in {host_tz}: this crontab assumes the cron daemon's clock runs in",
            f"# {host_tz} (check with `date` on the host; regenerate with --host-tz ZONE if not).",
            "# A market zone with daylight saving (e.g. Australia/Sydney) gets lines that fire at",
            "# the entry's local time under each of the zone's UTC offsets, guarded by",
            "# `qualitylab due`, which exits 1 unless the local time matches the entry: the job",
            "# runs once, at the same local time, all year (the other firing logs one line).",
        ]
    current_tz = host_tz
    for r in sched.runs:
        codes = _markets(sched, r)
        nbs = ",".join(r.notebooks)
        if r.timezone == "market":
            groups = [(code, code, sched.params.market(code).timezone) for code in codes]
        else:
            markets = "all" if r.markets == "all" else ",".join(codes)
            groups = [(markets, "", r.timezone)]
        for markets, label, zone in groups:
            comment = " ".join(filter(None, (r.name, label, f"({r.cron} {zone})")))
            if cron_tz:
                if zone != current_tz:
                    lines.append(f"CRON_TZ={zone}")
                    current_tz = zone
                command = _run_command(p, markets, nbs, r.portfolio)
                lines.append(_cron_line(r.cron, command, comment))
                continue
            for line in cron.to_zone(r.cron, zone, host_tz):
                # the firing minute is read by the shell when the line starts, before
                # Python's start-up (about a second) could carry it into the next minute
                guard = (
                    f"{q(p.executable)} due --cron {q(r.cron)} --tz {q(zone)} "
                    '--at "$(date -u +%Y-%m-%dT%H:%M:00+00:00)" && '
                    if line.guarded
                    else ""
                )
                command = _run_command(p, markets, nbs, r.portfolio, guard)
                lines.append(_cron_line(line.cron, command, comment))
    if current_tz != host_tz:
        lines.append(f"CRON_TZ={host_tz}")
    return lines


# --------------------------------------------------------------------------- Airflow

_DAG_TEMPLATE = '''\
"""qualitylab scheduled runs, generated by `qualitylab schedule --airflow` from
{schedule_path}.
Regenerate it after changing the schedule; copy it to Airflow's dags folder.

Exported paths (commands quote them for the shell):

    QUALITYLAB_HOME = {home!r}
        the project folder: runs start there (notebooks/)
    QUALITYLAB_BIN = {executable!r}
        the qualitylab executable
    parameters: {parameters_doc}
    data:       {data_doc}
    reports:    {out_doc}

Where Airflow runs elsewhere, set the environment variables QUALITYLAB_HOME and
QUALITYLAB_BIN wherever this file is parsed and its tasks run (scheduler or dag
processor, and workers); the paths shown under $QUALITYLAB_HOME follow it.

Each run reports the day before its scheduled time in the entry's time zone
(`--as-of`, from the run's data interval), so a rerun or backfill of a past run
reproduces that date's reports. A market-local entry has one DAG per market with
one task running the market's notebooks: no two tasks write one market's folder
at once. Loads on Airflow 2.x and 3.x.
"""

from __future__ import annotations

import os
import shlex
from datetime import timedelta

import pendulum

try:  # Airflow 3
    from airflow.sdk import DAG
except ImportError:  # Airflow 2
    from airflow import DAG
try:  # Airflow 3, or Airflow 2 with apache-airflow-providers-standard
    from airflow.providers.standard.operators.bash import BashOperator
except ImportError:  # Airflow 2
    from airflow.operators.bash import BashOperator

QUALITYLAB_HOME = os.environ.get("QUALITYLAB_HOME") or {home!r}
QUALITYLAB_BIN = os.environ.get("QUALITYLAB_BIN") or {executable!r}
PARAMETERS = {parameters_expr}
DATA = {data_expr}
REPORTS = {out_expr}

# (dag_id, cron, time zone, description, [(task_id, --markets, --notebooks, portfolio)])
RUNS = {runs}


def report_date(dag_run, zone):
    """The run's report date: the day before its scheduled time in `zone`.

    A scheduled run or backfill ends its data interval at its scheduled time (cron
    data intervals on Airflow 2, CronTriggerTimetable on Airflow 3); a manual run on
    Airflow 3 without a logical date has no data interval and uses its run_after.
    """
    when = dag_run.data_interval_end or getattr(dag_run, "run_after", None)
    return pendulum.instance(when).in_timezone(zone).subtract(days=1).strftime("%Y-%m-%d")


def quoted(path):
    """`path` quoted for the shell, and kept out of Jinja's way."""
    text = shlex.quote(path)
    return "{{% raw %}}" + text + "{{% endraw %}}" if "{{" in text else text


def qualitylab_run(markets, notebooks, zone, portfolio):
    """The task's command: run the notebooks for the markets on the run's report date."""
    command = (
        f"cd {{quoted(QUALITYLAB_HOME)}} && {{quoted(QUALITYLAB_BIN)}} "
        f"--parameters {{quoted(PARAMETERS)}} run --data {{quoted(DATA)}} --out {{quoted(REPORTS)}} "
        f"--markets {{markets}} --notebooks {{notebooks}} "
        f"--as-of {{{{{{{{ report_date(dag_run, {{zone!r}}) }}}}}}}} --wait 3600"
    )
    return command if portfolio else command + " --no-portfolio"


for dag_id, cron, zone, description, tasks in RUNS:
    with DAG(
        dag_id=dag_id,
        description=description,
        schedule=cron,
        start_date=pendulum.datetime(2025, 1, 1, tz=zone),
        catchup=False,
        max_active_runs=1,
        default_args={{"retries": 1, "retry_delay": timedelta(minutes=10)}},
        user_defined_macros={{"report_date": report_date}},
        tags=["qualitylab"],
    ) as dag:
        for task_id, markets, notebooks, portfolio in tasks:
            BashOperator(
                task_id=task_id,
                bash_command=qualitylab_run(markets, notebooks, zone, portfolio),
            )
    globals()[dag_id] = dag
'''


def _docstring_safe(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def _under_home(path: str, home: str) -> str | None:
    """``path`` relative to ``home`` when inside it."""
    try:
        rel = Path(path).relative_to(home)
    except ValueError:
        return None
    return rel.as_posix()


def _dag_runs(sched: Schedule) -> list[tuple[str, str, str, str, list[tuple[str, str, str, bool]]]]:
    assert sched.params is not None
    runs = []
    for r in sched.runs:
        codes = _markets(sched, r)
        nbs = ",".join(r.notebooks)
        stem = f"qualitylab_{r.name.replace('-', '_')}"
        if r.timezone == "market":
            for code in codes:
                zone = sched.params.market(code).timezone
                runs.append(
                    (
                        f"{stem}_{code.lower()}",
                        r.cron,
                        zone,
                        f"{r.name}: {nbs} for {code} at {r.cron} {zone}",
                        [(f"run_{code.lower()}", code, nbs, False)],
                    )
                )
        elif r.portfolio:
            markets = "all" if r.markets == "all" else ",".join(codes)
            desc = f"{r.name}: {nbs} for {markets} and the portfolio at {r.cron} {r.timezone}"
            runs.append(
                (f"{stem}_all", r.cron, r.timezone, desc, [("run_all", markets, nbs, True)])
            )
        else:
            desc = f"{r.name}: {nbs} for each market at {r.cron} {r.timezone}"
            tasks = [(f"run_{code.lower()}", code, nbs, False) for code in codes]
            runs.append((f"{stem}_all", r.cron, r.timezone, desc, tasks))
    return runs


def airflow_dag(
    sched: Schedule,
    folder: str | os.PathLike[str],
    *,
    data: str | os.PathLike[str],
    out: str | os.PathLike[str] = "reports",
    home: str | os.PathLike[str] | None = None,
    executable: str | os.PathLike[str] | None = None,
) -> Path:
    """Write an Airflow DAG file (``qualitylab_dag.py``) that runs the schedule.

    Parameters
    ----------
    sched : Schedule
        From :func:`load_schedule`.
    folder : path
        Folder to write the file to (created if missing).
    data : path or str
        The dataset; a relative path is made absolute against the current
        directory, a connection URL is kept.
    out : path, default "reports"
        Reports folder, made absolute.
    home : path, optional
        The project folder the runs start in (holding ``notebooks/``); default:
        the parent of the notebooks folder found from the current directory.
    executable : path, optional
        The ``qualitylab`` executable; default the script of the running
        environment.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    ParameterError
        For a path with a line break, or no ``home`` given and no notebooks
        folder found.

    Notes
    -----
    DAGs: ``qualitylab_<entry>_<market>`` for each market-local entry and market,
    with one task ``run_<market>`` running the entry's notebooks for the market;
    ``qualitylab_<entry>_all`` for other entries, with one task ``run_all``
    (all markets and the portfolio) when the entry has ``portfolio: true``,
    otherwise one task ``run_<market>`` per market. Each DAG has its entry's
    cron in its zone (the market's zone for market-local entries),
    ``max_active_runs=1``, ``catchup=False`` and one retry.

    ``QUALITYLAB_HOME`` and ``QUALITYLAB_BIN`` are written as literals and can be
    overridden by environment variables of the same names; the parameters,
    data and reports folders follow ``QUALITYLAB_HOME`` when they are inside it.
    Every path is shell-quoted when the file is parsed. The report date is
    templated: ``--as-of {{ report_date(dag_run, '<zone>') }}``, the day before
    the run's data interval end in the zone. The file needs Airflow only where it
    is deployed; qualitylab does not import Airflow.

    Examples
    --------
    >>> import ast, tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = airflow_dag(load_schedule(), tmp, data="/srv/data", home="/srv/qualitylab",
    ...                        executable="/srv/venv/bin/qualitylab")
    ...     text = path.read_text()
    >>> runs = next(ast.literal_eval(node.value) for node in ast.parse(text).body
    ...             if isinstance(node, ast.Assign) and node.targets[0].id == "RUNS")
    >>> runs[0]
    ('qualitylab_weekly_review_au', '0 6 * * 1', 'Australia/Sydney',
     'weekly-review: scorecard,trends,rca,ai for AU at 0 6 * * 1 Australia/Sydney',
     [('run_au', 'AU', 'scorecard,trends,rca,ai', False)])
    >>> runs[-1][0], runs[-1][-1]
    ('qualitylab_portfolio_all', [('run_all', 'all', 'scorecard', True)])
    """
    assert sched.params is not None, "use load_schedule()"
    p = _paths(sched, data, out, home, executable)

    def expr_and_doc(path: str) -> tuple[str, str]:
        rel = _under_home(path, p.home)
        if rel is None:
            return repr(path), path
        return f"os.path.join(QUALITYLAB_HOME, {rel!r})", f"$QUALITYLAB_HOME/{rel}"

    parameters_expr, parameters_doc = expr_and_doc(p.parameters)
    out_expr, out_doc = expr_and_doc(p.out)
    if _is_url(p.data):
        data_expr, data_doc = repr(p.data), "(a connection URL)"
    else:
        data_expr, data_doc = expr_and_doc(p.data)
    runs = "".join(
        f"    (\n        {dag_id!r}, {cron!r}, {zone!r},\n        {desc!r},\n        {tasks!r},\n    ),\n"
        for dag_id, cron, zone, desc, tasks in _dag_runs(sched)
    )
    text = _DAG_TEMPLATE.format(
        schedule_path=_docstring_safe(sched.path),
        home=p.home,
        executable=p.executable,
        parameters_expr=parameters_expr,
        parameters_doc=_docstring_safe(parameters_doc),
        data_expr=data_expr,
        data_doc=_docstring_safe(data_doc),
        out_expr=out_expr,
        out_doc=_docstring_safe(out_doc),
        runs=f"[\n{runs}]",
    )
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / DAG_FILE
    path.write_text(text, encoding="utf-8")
    return path
