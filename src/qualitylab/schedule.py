"""Schedules: which notebooks run for which markets, when.

``parameters/schedule.yaml`` is validated like every parameters file (unknown
keys and bad values name the file and key). :func:`crontab_lines` turns it
into crontab entries (UTC, one per market for market-local schedules) and
:func:`airflow_dag` writes an Airflow DAG file with one task per market ×
notebook.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qualitylab.errors import ParameterError
from qualitylab.params import Parameters, _format_validation, _read_yaml, load_parameters

__all__ = ["Schedule", "ScheduledRun", "airflow_dag", "crontab_lines", "load_schedule"]

_NOTEBOOK_KEYS = ("scorecard", "trends", "rca", "ai")
_CRON_FIELD = re.compile(r"^(\*|\d+(-\d+)?)(/\d+)?(,(\*|\d+(-\d+)?)(/\d+)?)*$")


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
    raw = _read_yaml(path)
    try:
        sched = Schedule(runs=raw.get("runs", ()), **{k: v for k, v in raw.items() if k != "runs"})
    except ValidationError as exc:
        raise _format_validation(path, exc) from None
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


def _utc_cron(cron: str, timezone: str) -> str:
    """Shift the minute/hour of a cron expression from a zone to UTC.

    Uses the zone's current offset (APAC zones other than Australia have no
    daylight saving; for those the line is correct in the current season and
    the note in the output says so). Day-of-week moves with the hour when the
    shift crosses midnight.
    """
    minute, hour, dom, month, dow = cron.split()
    if not (minute.isdigit() and hour.isdigit()):
        return cron  # ranges/steps: leave as written (documented: UTC)
    offset = datetime.now(UTC).astimezone(ZoneInfo(timezone)).utcoffset() or timedelta(0)
    total = int(hour) * 60 + int(minute) - int(offset.total_seconds() // 60)
    day_shift, total = divmod(total, 24 * 60)
    h, m = divmod(total, 60)
    if day_shift and dow != "*":
        dow = ",".join(str((int(d) + day_shift) % 7) for d in dow.split(",") if d.isdigit()) or dow
    return f"{m} {h} {dom} {month} {dow}"


def crontab_lines(sched: Schedule, *, data: str, out: str = "reports") -> list[str]:
    """Crontab lines (in UTC) that run each schedule entry.

    Market-local entries become one line per market at that market's local time.
    """
    assert sched.params is not None
    lines = [
        "# qualitylab schedule (times in UTC; regenerate with `qualitylab schedule --crontab`)",
        "CRON_TZ=UTC",
    ]
    for r in sched.runs:
        codes = sched.params.codes if r.markets == "all" else r.markets
        nbs = ",".join(r.notebooks)
        portfolio = "" if r.portfolio else " --no-portfolio"
        if r.timezone == "market":
            for code in codes:
                tz = sched.params.market(code).timezone
                lines.append(
                    f"{_utc_cron(r.cron, tz)} cd {os.getcwd()} && .venv/bin/qualitylab run "
                    f"--data {data} --markets {code} --notebooks {nbs} --out {out}{portfolio} "
                    f">> {out}/cron.log 2>&1  # {r.name} {code} ({r.cron} {tz})"
                )
        else:
            lines.append(
                f"{_utc_cron(r.cron, r.timezone)} cd {os.getcwd()} && .venv/bin/qualitylab run "
                f"--data {data} --markets {','.join(codes)} --notebooks {nbs} --out {out}"
                f"{portfolio} >> {out}/cron.log 2>&1  # {r.name} ({r.cron} {r.timezone})"
            )
    return lines


def airflow_dag(
    sched: Schedule, folder: str | os.PathLike[str], *, data: str, out: str = "reports"
) -> Path:
    """Write an Airflow DAG file: one DAG per schedule entry, one task per market × notebook.

    The file only needs Airflow where it is deployed; qualitylab does not
    import Airflow.
    """
    assert sched.params is not None
    dest = Path(folder)
    dest.mkdir(parents=True, exist_ok=True)
    blocks = []
    for r in sched.runs:
        codes = list(sched.params.codes if r.markets == "all" else r.markets)
        # Market-local entries get one DAG per market in that market's zone.
        groups = (
            [(c, [c], sched.params.market(c).timezone) for c in codes]
            if r.timezone == "market"
            else [("all", codes, r.timezone)]
        )
        for suffix, group, tz in groups:
            dag_id = f"qualitylab_{r.name.replace('-', '_')}_{suffix.lower()}"
            blocks.append(
                f"""
with DAG(
    dag_id={dag_id!r},
    schedule={r.cron!r},
    start_date=pendulum.datetime(2026, 1, 1, tz={tz!r}),
    catchup=False,
    tags=["qualitylab"],
) as {dag_id}:
    for market in {group!r}:
        for notebook in {list(r.notebooks)!r}:
            BashOperator(
                task_id=f"{{market}}_{{notebook}}",
                bash_command=(
                    f"cd {{QUALITYLAB_HOME}} && .venv/bin/qualitylab run --data {data} "
                    f"--markets {{market}} --notebooks {{notebook}} --out {out} --no-portfolio"
                ),
            )
"""
            )
    text = (
        '"""qualitylab scheduled runs (generated by `qualitylab schedule --airflow`)."""\n'
        "import os\n\nimport pendulum\nfrom airflow import DAG\n"
        "from airflow.operators.bash import BashOperator\n\n"
        f"QUALITYLAB_HOME = os.environ.get('QUALITYLAB_HOME', {os.getcwd()!r})\n" + "".join(blocks)
    )
    path = dest / "qualitylab_dag.py"
    path.write_text(text, encoding="utf-8")
    return path
