"""What a run is made of: the notebooks, a job's result, the run's summary.

Also what every part of the run shares: the run's logger (``qualitylab.run``),
:func:`redact` for anything that may hold a connection URL, and
:class:`ReportsBusy`.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.errors import ParameterError, QualityLabError

NOTEBOOKS: dict[str, str] = {
    "scorecard": "01-vendor-scorecard.ipynb",
    "trends": "02-trend-detection.ipynb",
    "rca": "03-rca-deep-dive.ipynb",
    "ai": "04-ai-model-evaluation.ipynb",
    "capacity": "05-capacity-and-readiness.ipynb",
    "rollout": "06-policy-rollout.ipynb",
    "triage": "07-incident-triage.ipynb",
    "watch": "08-queue-watch.ipynb",
}
PORTFOLIO = "00-portfolio.ipynb"
TITLES = {
    "scorecard": "Vendor scorecard",
    "trends": "Trends and alerts",
    "rca": "Root-cause deep dive",
    "ai": "AI model evaluation",
    "capacity": "Capacity and readiness",
    "rollout": "Policy rollout",
    "triage": "Incident triage",
    "watch": "Queue watch",
    "portfolio": "APAC portfolio",
}
HUB_METRICS = ("volume", "sla_compliance", "accuracy", "ai_precision", "ai_recall")
_URL_SECRET = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)
TRANSIENT = ("DeadKernelError", "KernelDied", "RuntimeError: Kernel died")

log = logging.getLogger("qualitylab.run")


def redact(text: str) -> str:
    """Hide passwords in connection URLs inside any text.

    Examples
    --------
    >>> redact("trino://ana:s3cret@db.example:8080/hive")
    'trino://ana:***@db.example:8080/hive'
    """
    return _URL_SECRET.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))


def find_notebooks_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The notebooks folder: explicit, ``QUALITYLAB_NOTEBOOKS``, or ``notebooks/`` upwards."""
    if path:
        p = Path(path)
    elif os.environ.get("QUALITYLAB_NOTEBOOKS"):
        p = Path(os.environ["QUALITYLAB_NOTEBOOKS"])
    else:
        here = Path.cwd().resolve()
        p = next(
            (
                f / "notebooks"
                for f in (here, *here.parents)
                if (f / "notebooks" / PORTFOLIO).is_file()
            ),
            here / "notebooks",
        )
    if not p.is_dir():
        raise ParameterError(f"notebooks folder {p} does not exist", key="notebooks")
    return p


@dataclass
class JobResult:
    """The outcome of one market × notebook execution."""

    market: str
    notebook: str
    status: str = "pending"  # ok | failed | timeout | skipped
    duration: float = 0.0
    attempts: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    #: Sections shown as "too little data": ``{"section", "reason", "cell"}`` each.
    notes: list[dict[str, Any]] = field(default_factory=list)
    #: Deep-dive sentences (:func:`qualitylab.report.finding`): ``alert_id``, ``sentence``, ...
    findings: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunSummary:
    """What a run did."""

    run_id: str
    as_of: str
    out: Path
    results: tuple[JobResult, ...]
    manifest: Path

    @property
    def failures(self) -> tuple[JobResult, ...]:
        """Jobs that did not succeed."""
        return tuple(r for r in self.results if r.status != "ok")

    @property
    def ok(self) -> bool:
        """True when every job succeeded."""
        return not self.failures

    def table(self) -> pd.DataFrame:
        """One row per job: market, notebook, status, seconds, error, short_of_data.

        ``short_of_data`` names the sections that showed a "too little data"
        note (``; ``-separated), empty when there were none.
        """
        return pd.DataFrame(
            [
                {
                    "market": r.market,
                    "notebook": r.notebook,
                    "status": r.status,
                    "seconds": round(r.duration, 1),
                    "error": ""
                    if not r.error
                    else f"{r.error.get('ename')}: {r.error.get('evalue')}",
                    "short_of_data": "; ".join(str(n.get("section", "")) for n in r.notes),
                }
                for r in self.results
            ]
        )


class ReportsBusy(QualityLabError):
    """Another run is writing the same market into the same reports folder."""
