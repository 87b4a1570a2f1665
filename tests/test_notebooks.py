"""Notebooks: committed without outputs, documented parameters, executed on small data.

Every ``notebooks/[0-9]*.ipynb`` is picked up. Execution is the slow part
(~10-30 s per run); each run happens once per session in :mod:`notebook_runs`
and is reused by ``test_report.py``. Durations are printed (``-s``) and recorded
as the ``seconds`` property (``--junitxml``), not asserted: machine load varies.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat
import notebook_runs
import papermill
import pytest
from notebook_runs import NOTEBOOK_DIR, NOTEBOOKS, REPO

#: ``name: type = value  # help`` — what ``papermill --help-notebook`` documents.
PARAMETER_LINE = re.compile(r"^(?P<name>[a-z_][a-z0-9_]*): (?P<type>\w+) = (?P<value>.+?)  # \S")
#: Parameters every notebook has, with their types.
COMMON_PARAMETERS = {
    "data": "str",
    "as_of": "str",
    "weeks": "int",
    "parameters": "str",
    "interactive": "bool",
}
#: One notebook proves nbval compatibility; this is the quickest to execute.
NBVAL_NOTEBOOK = NOTEBOOK_DIR / "04-ai-model-evaluation.ipynb"

RUNS = [
    pytest.param(
        nb,
        markets,
        hostile,
        id=f"{nb.stem}-{markets}{'-hostile' if hostile else ''}",
        marks=notebook_runs.marks(nb, markets),
    )
    for nb in NOTEBOOKS
    for markets, hostile in notebook_runs.plan(nb)
]


def _ids(path: Path) -> str:
    return path.stem


def _parameters_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


@pytest.fixture(scope="module")
def runs(small_data: Path, tmp_path_factory: pytest.TempPathFactory) -> notebook_runs.Runs:
    return notebook_runs.runs(small_data, tmp_path_factory)


def test_notebooks_found():
    assert len(NOTEBOOKS) >= 3, NOTEBOOKS
    assert any(notebook_runs.is_portfolio(nb) for nb in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        f"cell {i}: {len(c.outputs)} outputs, execution_count={c.execution_count}"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count is not None)
    ]
    assert not dirty, f"{path.name} has outputs; clear them before committing: {dirty}"
    leftovers = {"papermill", "widgets"} & set(nb.metadata)
    assert not leftovers, f"{path.name} keeps execution metadata {sorted(leftovers)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_parameters_cell_documented(path: Path):
    nb = nbformat.read(path, as_version=4)
    cells = _parameters_cells(nb)
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters', expected 1"
    lines = [line for line in cells[0].source.splitlines() if line.strip()]
    bad = [line for line in lines if not PARAMETER_LINE.match(line)]
    assert not bad, f"{path.name}: lines not of the form 'name: type = value  # help': {bad}"

    inspected = papermill.inspect_notebook(str(path))
    assert len(inspected) == len(lines), "a parameter is declared twice"
    undocumented = [name for name, p in inspected.items() if not p["help"].strip()]
    assert not undocumented, f"{path.name}: parameters without help: {undocumented}"
    types = {name: p["inferred_type_name"] for name, p in inspected.items()}
    market = {"markets": "str"} if "markets" in types else {"market": "str"}
    expected = COMMON_PARAMETERS | market
    assert {k: types.get(k) for k in expected} == expected


@pytest.mark.parametrize(("path", "markets", "hostile"), RUNS)
def test_notebook_executes(runs, path: Path, markets: str, hostile: bool, record_property):
    run = runs.get(path, markets, hostile=hostile)
    record_property("seconds", round(run.seconds, 1))
    print(f"\n{run.label}: {run.seconds:.1f} s")
    assert run.error is None, f"{run.label} failed after {run.seconds:.1f} s:\n{run.error}"
    nb = run.notebook()
    assert notebook_runs.error_outputs(nb) == []
    assert nb.metadata.papermill.get("exception") is not True
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and str(run.data) in injected[0].source


def test_kernel_is_this_python(tmp_path: Path):
    """The ``python3`` kernel papermill starts runs the interpreter running the tests."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys\nprint(sys.prefix)")]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    src = tmp_path / "which.ipynb"
    nbformat.write(nb, src)
    out = papermill.execute_notebook(
        str(src), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False
    )
    assert out.cells[0].outputs[0]["text"].strip() == sys.prefix


def _point_at(source: str, values: dict[str, object]) -> str:
    """The parameters cell ``source`` with the defaults of ``values`` replaced."""
    lines = []
    for line in source.splitlines():
        match = PARAMETER_LINE.match(line)
        if match and match["name"] in values:
            start, end = match.span("value")
            line = line[:start] + repr(values[match["name"]]) + line[end:]
        lines.append(line)
    return "\n".join(lines)


def test_nbval_lax_on_small_data(small_data: Path, tmp_path: Path):
    """``pytest --nbval-lax`` runs a notebook whose defaults point at small data."""
    if not NBVAL_NOTEBOOK.exists():
        pytest.skip(f"{NBVAL_NOTEBOOK.name} is gone; pick another notebook for nbval")
    nb = nbformat.read(NBVAL_NOTEBOOK, as_version=4)
    (cell,) = _parameters_cells(nb)
    values = {"data": str(small_data), "parameters": str(REPO / "parameters"), "interactive": False}
    cell.source = _point_at(cell.source, values)
    assert all(f"{k}: " in cell.source for k in values)
    copy = tmp_path / NBVAL_NOTEBOOK.name
    nbformat.write(nb, copy)

    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q", copy.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert re.search(r"\b\d+ passed\b", proc.stdout), proc.stdout[-2000:]
