"""The start-up floor of a batch run (workload W4 of ``bench.py``).

``qualitylab run --markets all --notebooks all --jobs J`` executes one notebook
per market and notebook key, plus the portfolio. Whatever a notebook computes,
each one costs a kernel start, its first cell's imports
(``import qualitylab as ql`` and the charts/report modules, the theme and the
offline renderer), the papermill round trips, the executed notebook's write
and its two HTML renderings. :func:`measure_floor` runs that many trivial
notebooks (the real parameters cell and import cell, nothing else) through the
runner's own worker pool (:func:`qualitylab.runs.runner.execute.run_jobs`, same ``jobs``,
same kernel start-up: forked from the warm kernel server unless
``QUALITYLAB_FORK_KERNELS=0``), so a benchmark can say "the run took X s, the
floor is Y s".

Run ``python benchmarks/batch_floor.py --data data/demo --jobs 2`` (add
``--cold`` to also measure kernels started the usual way).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nbformat

#: The first cell of every notebook, minus the data it opens (the real cell then
#: calls ``report.context``: that is the notebook's work, not the floor).
IMPORT_CELL = (
    "import qualitylab as ql\n"
    "from qualitylab import charts, report, watch, watchcli\n"
    "\n"
    "charts.use_theme()\n"
    "charts.enable_offline_renderer()"
)
PARAMS_CELL = (
    'market: str = "SG"  # market\n'
    'data: str = ""  # data\n'
    'as_of: str = ""  # as of\n'
    "weeks: int = 4  # weeks\n"
    'parameters: str = ""  # parameters folder\n'
    "interactive: bool = True  # widgets"
)


def _trivial_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS_CELL)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Floor\n\nKernel start and imports only."),
        params,
        nbformat.v4.new_code_cell(IMPORT_CELL),
    ]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, str(path))
    return path


def batch_size(data: str, parameters: str | None = None) -> int:
    """How many notebooks ``run --markets all --notebooks all`` executes on ``data``."""
    from qualitylab.params import load_parameters
    from qualitylab.runner import NOTEBOOKS
    from qualitylab.sources import open_dataset

    params = load_parameters(parameters)
    ds = open_dataset(data, parameters=params)
    present = ds.table("decisions").select("market").distinct().to_pandas()["market"].tolist()
    return len([c for c in present if c in params.markets]) * len(NOTEBOOKS) + 1


@contextmanager
def _env(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def _trivial_batch(n: int, jobs: int, folder: Path) -> dict[str, Any]:
    from qualitylab.runs.runner.execute import run_jobs

    folder.mkdir(parents=True, exist_ok=True)
    nb = _trivial_notebook(folder / "floor.ipynb")
    specs = [
        {
            "market": f"M{i:03d}",
            "notebook": "triage",  # any key the runner titles; the notebook is the trivial one
            "source": str(nb),
            "cwd": str(folder),
            "out_dir": str(folder / f"M{i:03d}"),
            "timeout": 600,
            "title": "floor",
            "subtitle": "",
            "moderators": (),
            "parameters": {"market": f"M{i:03d}"},
        }
        for i in range(n)
    ]
    t0 = time.perf_counter()
    results = run_jobs(specs, jobs, False)
    wall = time.perf_counter() - t0
    bad = [r for r in results if r.status != "ok"]
    if bad:
        raise RuntimeError(f"{len(bad)} trivial notebooks failed: {bad[0].error}")
    per = sorted(r.duration for r in results)
    return {
        "wall_s": round(wall, 2),
        "per_notebook_s": round(wall * jobs / n, 3),
        "papermill_median_s": round(per[len(per) // 2], 3),
    }


def measure_floor(
    data: str, jobs: int, *, n: int | None = None, cold: bool = False
) -> dict[str, Any]:
    """The batch's start-up floor: ``n`` trivial notebooks through the runner's pool.

    Parameters
    ----------
    data : str
        The batch's data: ``n`` defaults to the number of notebooks a
        ``--markets all --notebooks all`` run executes on it (markets × notebooks
        + the portfolio).
    jobs : int
        Worker processes, as ``--jobs``.
    n : int, optional
        Trivial notebooks to run instead.
    cold : bool, default False
        Also measure the floor with kernels started the usual way
        (``QUALITYLAB_FORK_KERNELS=0``: a fresh interpreter importing everything).

    Returns
    -------
    dict
        ``notebooks``, ``jobs``, ``floor_s`` (wall of the trivial batch: the run
        cannot be faster than this), ``per_notebook_s`` (floor × jobs / n),
        ``papermill_median_s`` (one trivial notebook's execution, HTML excluded),
        ``fork_kernels``; with ``cold``, the same under ``cold_``.
    """
    from qualitylab.runner import fork_kernels_enabled

    n = n or batch_size(data)
    out: dict[str, Any] = {"notebooks": n, "jobs": jobs, "fork_kernels": fork_kernels_enabled()}
    with tempfile.TemporaryDirectory(prefix="ql-floor-") as tmp:
        warm = _trivial_batch(n, jobs, Path(tmp) / "warm")
        out.update(
            floor_s=warm["wall_s"],
            per_notebook_s=warm["per_notebook_s"],
            papermill_median_s=warm["papermill_median_s"],
        )
        if cold:
            with _env("QUALITYLAB_FORK_KERNELS", "0"):
                c = _trivial_batch(n, jobs, Path(tmp) / "cold")
            out.update({f"cold_{k.removesuffix('_s')}_s": v for k, v in c.items()})
            out["cold_floor_s"] = out.pop("cold_wall_s")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/demo")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-n", type=int, default=None, help="trivial notebooks (default: the batch's)")
    ap.add_argument("--cold", action="store_true", help="also with kernels started the usual way")
    args = ap.parse_args(argv)
    print(json.dumps(measure_floor(args.data, args.jobs, n=args.n, cold=args.cold), indent=2))


if __name__ == "__main__":
    sys.exit(main())
