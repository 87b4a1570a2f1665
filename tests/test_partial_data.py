"""Issue #14: every CLI command works on partial data (commands x cases).

Each cell runs ``qualitylab <command>`` in a subprocess on one partial dataset
(see ``tests/partial_cases.py``). A cell passes when the command succeeds, or
stops with exactly one ``qualitylab <command>: error: ...`` line on stderr that
names what is missing (a market, table or date), and never prints a
traceback. ``readiness`` exiting 1 with ``NOT READY`` is a checklist verdict,
not a failure of the tool. Where the brief of the issue says a report must not
fail (an optional table absent or empty for the market, a segment that starts
or stops, the whole data range), the cell must succeed outright.

The grid is printed at the end of the pytest run (``pytest_terminal_summary``
in ``tests/conftest.py``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests import partial_cases as pc
from tests.conftest import PARAMS

CASES = (
    "no_optional",
    "empty_optional",
    "empty_period",
    "whole_range",
    "days10",
    "segment_starts",
    "segment_stops",
    "no_qa_audits",
    "no_staffing",
    "tiny",
)
# Cells that must succeed: the data they get is partial but enough for the
# command. Others may also stop with one clean error line.
MUST_SUCCEED = {
    (case, cmd)
    for case in (
        "no_optional",
        "empty_optional",
        "whole_range",
        "segment_starts",
        "segment_stops",
        "no_qa_audits",
        "no_staffing",
    )
    for cmd in pc.COMMANDS
} - {
    ("whole_range", "rca"),  # its default baseline (28 days before the data) is empty
    ("no_optional", "rca"),  # rca of accuracy needs qa_audits: one error naming it
    ("empty_optional", "rca"),  # ... or audits of the market's decisions
    ("no_optional", "capacity"),  # handle times and rosters come from staffing
    ("no_qa_audits", "rca"),
    ("no_staffing", "capacity"),
}
MUST_SUCCEED |= {(case, "validate") for case in CASES if case != "empty_period"}
WORKERS = int(os.environ.get("QUALITYLAB_MATRIX_JOBS", "2"))
_MISSING_NAMED = re.compile(
    r"\b(market|table|period|no decisions|no data|no rows|\d{4}-\d{2}-\d{2}|"
    + "|".join(("decisions", *pc.OPTIONAL))
    + r")\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Cell:
    case: str
    command: str
    argv: list[str] | None
    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0

    def verdict(self) -> tuple[bool, str]:
        """(passes, short text for the grid)."""
        if self.argv is None:
            return True, "n/a"
        out = self.stdout + self.stderr
        if "Traceback" in out:
            return False, f"FAIL traceback (exit {self.returncode})"
        if self.returncode == 0:
            return True, "ok"
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        if self.command == "readiness" and self.returncode == 1 and "NOT READY" in self.stderr:
            return True, "ok (NOT READY)"
        if self.command == "run" and self.returncode == 1:
            failed = self.failed_notebooks()
            if failed:
                return False, "FAIL " + "; ".join(failed)
            return False, f"FAIL exit 1: {lines[-1:]}"
        prefix = f"qualitylab {self.command}: error: "
        errors = [ln for ln in lines if ln.startswith(prefix)]
        if self.returncode == 2 and len(errors) == 1 and len(lines) == 1:
            message = errors[0][len(prefix) :]
            if not _MISSING_NAMED.search(message):
                return False, f"FAIL vague error: {message[:90]}"
            if (self.case, self.command) in MUST_SUCCEED:
                return False, f"FAIL error: {message[:90]}"
            return True, f"exit 2: {message[:90]}"
        tail = lines[-1] if lines else "(no stderr)"
        return False, f"FAIL exit {self.returncode}, {len(lines)} stderr lines: {tail[:90]}"

    def failed_notebooks(self) -> list[str]:
        """``notebook[cell]: error`` of each failed job in the run's manifest."""
        out = Path(self.argv[self.argv.index("--out") + 1]) if self.argv else None
        manifests = sorted(out.glob("*/manifest.json")) if out and out.is_dir() else []
        failed = []
        for path in manifests:
            for job in json.loads(path.read_text())["jobs"]:
                if job["status"] == "ok":
                    continue
                err = job.get("error") or {}
                if isinstance(err, dict):
                    text = f"{err.get('ename')}: {str(err.get('evalue'))[:80]}"
                    where = f"[{err.get('cell_index')}]"
                else:
                    text, where = str(err)[:80], ""
                failed.append(f"{job['notebook']}{where} {text}")
        return failed


def _run_cell(case: pc.Case, command: str, work: Path, env: dict[str, str]) -> Cell:
    cell_dir = work / case.name / command
    cell_dir.mkdir(parents=True, exist_ok=True)
    argv = pc.command_line(case, command, cell_dir)
    if argv is None:
        return Cell(case.name, command, None)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "qualitylab.cli", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=cell_dir,
        timeout=900,
    )
    return Cell(
        case.name,
        command,
        argv,
        proc.returncode,
        proc.stdout,
        proc.stderr,
        time.perf_counter() - started,
    )


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Cell]:
    """Every cell, run once (in parallel, slowest first)."""
    root = tmp_path_factory.mktemp("partial")
    cases = pc.build_cases(root / "cases")
    assert tuple(c.name for c in cases) == CASES
    env = {
        **os.environ,
        "QUALITYLAB_PARAMETERS": str(PARAMS),
        "QUALITYLAB_CACHE_DIR": str(root / "cache"),
    }
    jobs = [(case, cmd) for cmd in ("run", *pc.COMMANDS[:-1]) for case in cases]
    started = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {
            (case.name, cmd): pool.submit(_run_cell, case, cmd, root / "runs", env)
            for case, cmd in jobs
        }
        cells = {key: f.result() for key, f in futures.items()}
    pc.CASE_ORDER[:] = list(CASES)
    pc.CASE_NOTES.update({case.name: case.note for case in cases})
    for key, cell in cells.items():
        pc.RESULTS[key] = cell.verdict()[1]
    pc.TIMINGS["total"] = time.perf_counter() - started
    for key, cell in cells.items():
        pc.TIMINGS[f"{key[0]}/{key[1]}"] = cell.seconds
    return cells


@pytest.mark.parametrize("command", pc.COMMANDS)
@pytest.mark.parametrize("case", CASES)
def test_cell(matrix: dict[tuple[str, str], Cell], case: str, command: str) -> None:
    cell = matrix[(case, command)]
    ok, text = cell.verdict()
    if not ok:
        pytest.fail(
            f"qualitylab {' '.join(cell.argv or [])}\n-> {text}\n"
            f"--- stderr (last 3000 chars) ---\n{cell.stderr[-3000:]}\n"
            f"--- stdout (last 1500 chars) ---\n{cell.stdout[-1500:]}",
            pytrace=False,
        )
