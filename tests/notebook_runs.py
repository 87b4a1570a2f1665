"""Execute every notebook once per session and share the runs between test modules.

``test_notebooks.py`` checks that the runs succeed; ``test_report.py`` renders
the same executed notebooks. Each market notebook runs for two markets on the
``small`` demo data: :data:`CLEAN_MARKET` on the data as generated, and
:data:`hostile.HOSTILE_MARKET` on a copy with hostile strings planted in that
market (:mod:`hostile`), so the executions also prove the notebooks cope with
such text and the report tests have hostile pages to open. The portfolio
notebook (parameter ``markets``) runs once, for both markets, on the hostile copy.

Notebooks run in ``notebooks/`` (their ``parameters: ""`` default finds
``../parameters``) on the ``python3`` kernel, which jupyter_client starts with
the interpreter running the tests (the venv's python).

:func:`partial_data` builds the data of the partial-data run (issue #14): the
young-market demo (:data:`YOUNG_MARKET` with two weeks of history and a queue
live for five days) plus :data:`EMPTIED_MARKET`, whose rows in the optional
tables :data:`EMPTIED_TABLES` are removed and one of whose vendors stopped
working ten days before the end.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from hostile import HOSTILE_MARKET, hostile_copy

__all__ = [
    "CLEAN_MARKET",
    "EMPTIED_MARKET",
    "EMPTIED_TABLES",
    "STOPPED_DAYS",
    "YOUNG_MARKET",
    "partial_data",
    "NOTEBOOKS",
    "NOTEBOOK_DIR",
    "REPO",
    "Run",
    "Runs",
    "chart_outputs",
    "error_outputs",
    "KNOWN_FAILURES",
    "is_portfolio",
    "marks",
    "plan",
    "report_run",
    "runs",
]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.ipynb"))
#: The market run on unmodified data.
CLEAN_MARKET = "SG"
#: Notebooks that fail on small data for a known reason: ``stem`` (every run) or
#: ``stem[markets]`` (that run) → reason. Their execution tests, and the report tests
#: of a failing report run, are xfail (not strict) until fixed.
KNOWN_FAILURES: dict[str, str] = {}
#: The young market of the partial-data run: 14 days of history, a queue live for 5.
YOUNG_MARKET = "MY"
#: The market of the partial-data run whose optional tables have no rows for it.
EMPTIED_MARKET = "ID"
#: Optional tables emptied of :data:`EMPTIED_MARKET`'s rows.
EMPTIED_TABLES = ("red_team", "escalations", "calibration", "vendor_reported", "events")
#: The stopped vendor of :data:`EMPTIED_MARKET` has no decisions in these last days.
STOPPED_DAYS = 10


@dataclass(frozen=True)
class Run:
    """One papermill execution of a notebook."""

    source: Path
    markets: str
    data: Path
    output: Path
    seconds: float
    error: str | None

    @property
    def label(self) -> str:
        """E.g. ``01-vendor-scorecard[ID, hostile]``."""
        kind = "hostile" if "hostile" in self.data.name else "small"
        return f"{self.source.stem}[{self.markets}, {kind}]"

    def notebook(self) -> nbformat.NotebookNode:
        """The executed notebook (papermill writes it even when a cell fails)."""
        return nbformat.read(self.output, as_version=4)


def is_portfolio(source: Path) -> bool:
    """Whether the notebook takes ``markets`` (all markets) rather than one ``market``."""
    return "markets" in papermill.inspect_notebook(str(source))


def marks(source: Path, markets: str) -> list[pytest.MarkDecorator]:
    """``xfail`` for a run listed in :data:`KNOWN_FAILURES`."""
    reason = KNOWN_FAILURES.get(f"{source.stem}[{markets}]") or KNOWN_FAILURES.get(source.stem)
    return [pytest.mark.xfail(reason=reason, strict=False)] if reason else []


def plan(source: Path) -> list[tuple[str, bool]]:
    """``(markets, hostile)`` runs of a notebook: two markets, the portfolio once."""
    if is_portfolio(source):
        return [(f"{CLEAN_MARKET},{HOSTILE_MARKET}", True)]
    return [(CLEAN_MARKET, False), (HOSTILE_MARKET, True)]


def report_run(source: Path) -> tuple[str, bool]:
    """The ``(markets, hostile)`` run whose stakeholder page the report tests open."""
    return next(p for p in plan(source) if p[1])


def partial_data(folder: Path, *, days: int = 42, seed: int = 7) -> Path:
    """The partial-data run's dataset: young market, emptied market, a stopped vendor.

    Returns
    -------
    Path
        ``folder``, holding the demo layout (one decisions part).
    """
    from qualitylab.demo import generate
    from qualitylab.params import load_parameters

    generate(
        folder,
        scale="small",
        markets=[EMPTIED_MARKET],
        days=days,
        seed=seed,
        young_market=YOUNG_MARKET,
    )
    for name in EMPTIED_TABLES:
        path = folder / f"{name}.parquet"
        table = pd.read_parquet(path)
        table[table["market"] != EMPTIED_MARKET].to_parquet(path, index=False)
    # the market's last partner vendor stops: no decisions (nor their audits) at the end
    tz = load_parameters().market(EMPTIED_MARKET).timezone
    dec = pd.read_parquet(folder / "decisions")
    mine = dec[dec["market"] == EMPTIED_MARKET]
    vendor = sorted(v for v in mine["vendor"].unique() if v != "inhouse")[-1]
    day = dec["created_at"].dt.tz_convert(tz).dt.date
    cut = day[dec["market"] == EMPTIED_MARKET].max() - timedelta(days=STOPPED_DAYS - 1)
    gone = (dec["market"] == EMPTIED_MARKET) & (dec["vendor"] == vendor) & (day >= cut)
    audits = pd.read_parquet(folder / "qa_audits.parquet")
    audits = audits[~audits["decision_id"].isin(dec.loc[gone, "decision_id"])]
    audits.to_parquet(folder / "qa_audits.parquet", index=False)
    staffing = pd.read_parquet(folder / "staffing.parquet")
    stopped = (
        (staffing["market"] == EMPTIED_MARKET)
        & (staffing["vendor"] == vendor)
        & (staffing["date"] >= cut)
    )
    staffing[~stopped].to_parquet(folder / "staffing.parquet", index=False)
    shutil.rmtree(folder / "decisions")
    (folder / "decisions").mkdir()
    dec[~gone].to_parquet(folder / "decisions" / "part-00000.parquet", index=False)
    return folder


def _error_text(exc: BaseException) -> str:
    """papermill's error with the ANSI colours stripped."""
    return re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()


class Runs:
    """Executes notebooks on demand, each (notebook, markets, data) once."""

    def __init__(self, small_data: Path, folder: Path) -> None:
        self.small_data = small_data
        self.folder = folder
        self._hostile: Path | None = None
        self._runs: dict[tuple[Path, str, bool], Run] = {}

    @property
    def hostile_data(self) -> Path:
        """The small data with hostile strings planted (built on first use)."""
        if self._hostile is None:
            self._hostile = hostile_copy(self.small_data, self.folder / "data-hostile")
        return self._hostile

    def get(self, source: Path, markets: str, *, hostile: bool) -> Run:
        """The run of ``source`` for ``markets``, executing it if needed."""
        key = (source, markets, hostile)
        if key not in self._runs:
            self._runs[key] = self._execute(source, markets, hostile)
        return self._runs[key]

    def _execute(self, source: Path, markets: str, hostile: bool) -> Run:
        data = self.hostile_data if hostile else self.small_data
        name = "markets" if is_portfolio(source) else "market"
        tag = f"{markets.replace(',', '-')}{'-hostile' if hostile else ''}"
        output = self.folder / f"{source.stem}-{tag}.ipynb"
        output.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        error = None
        try:
            papermill.execute_notebook(
                str(source),
                str(output),
                parameters={"data": str(data), name: markets, "interactive": False},
                cwd=str(NOTEBOOK_DIR),
                kernel_name="python3",
                progress_bar=False,
            )
        except papermill.PapermillExecutionError as exc:
            error = _error_text(exc)
        seconds = time.perf_counter() - started
        return Run(source, markets, data, output, seconds, error)


_RUNS: dict[Path, Runs] = {}


def runs(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """The session's :class:`Runs` (one per session, whichever module asks first)."""
    folder = tmp_path_factory.getbasetemp() / "notebook-runs"
    if folder not in _RUNS:
        _RUNS[folder] = Runs(small_data, folder)
    return _RUNS[folder]


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """``"cell N: Name: value"`` for every error output of an executed notebook."""
    return [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]


def chart_outputs(nb: nbformat.NotebookNode) -> int:
    """Outputs that draw a chart in the report: ``text/html`` calling ``vegaEmbed(``."""
    count = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html", "")
            if isinstance(html, list):
                html = "".join(html)
            count += "vegaEmbed(" in html
    return count
