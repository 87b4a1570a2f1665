"""Executing notebooks: one job (papermill, a retry, the HTML renderings), and the worker pool."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing as mp
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from qualitylab.runs.runner.jobs import TITLES, TRANSIENT, JobResult, log, redact
from qualitylab.runs.runner.kernels import KernelServer, forking_kernel_manager


# --------------------------------------------------------------------------- #
# one notebook execution (runs in a worker process)
# --------------------------------------------------------------------------- #
@contextlib.contextmanager
def _deferred_chart_images() -> Any:
    """Kernels started inside leave their charts' SVG to the worker (see below).

    vl-convert starts a JavaScript engine once per process (~0.4 s); a kernel per
    notebook would pay it 81 times in a run of all notebooks, the worker pays it
    once (it already has for the HTML's vega bundle). The variable is the
    kernel's only: it is restored here once the notebook has run.
    """
    from qualitylab.reporting.charts.offline import DEFER_ENV

    before = os.environ.get(DEFER_ENV)
    os.environ[DEFER_ENV] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DEFER_ENV, None)
        else:
            os.environ[DEFER_ENV] = before


def land_notebook(ipynb: Path) -> Any:
    """The executed notebook, read once, with its deferred chart images rendered.

    The images are written back into ``ipynb`` when there were any; the node
    returned serves the notes, findings and both HTML pages without reading the
    file again (a chart-laden notebook takes ~0.2 s to read and validate).
    """
    import nbformat

    from qualitylab.reporting.charts.offline import PENDING_MIME, fill_deferred_images

    text = ipynb.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=4)
    if PENDING_MIME in text and fill_deferred_images(nb):
        nbformat.write(nb, str(ipynb))
    return nb


def execute_job(job: dict[str, Any]) -> dict[str, Any]:
    import papermill as pm

    from qualitylab.reporting.report import (
        moderator_aliases,
        notebook_findings,
        notebook_notes,
        render_html,
    )

    res = JobResult(job["market"], job["notebook"], parameters=job["parameters"])
    out_dir = Path(job["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    ipynb = out_dir / f"{job['notebook']}.ipynb"
    started = time.perf_counter()
    # kernels forked from the worker's warm kernel server (see kernels.serve_kernels);
    # a kernel that did not come up that way is started the usual way on retry
    forked = {"kernel_manager_class": forking_kernel_manager()} if KernelServer.get() else {}
    for attempt in (1, 2):
        res.attempts = attempt
        try:
            with _deferred_chart_images():
                pm.execute_notebook(
                    job["source"],
                    str(ipynb),
                    parameters=job["parameters"],
                    cwd=job["cwd"],
                    kernel_name="python3",
                    progress_bar=False,
                    log_output=False,
                    execution_timeout=job["timeout"],
                    start_timeout=120,
                    # written once at the end (also when a cell fails), not after every
                    # cell: re-serialising the chart-laden notebook each time cost ~1 s
                    request_save_on_cell_execute=False,
                    # the kernel's own log ("running over TCP without encryption" on
                    # localhost, "KeyboardInterrupt caught" at shutdown) is noise in batch
                    # output; cell errors reach the notebook and the manifest
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                    **forked,
                )
            res.status = "ok"
            res.error = None
            break
        except pm.PapermillExecutionError as exc:
            res.status = "failed"
            res.error = {
                "cell_index": exc.cell_index,
                "ename": exc.ename,
                "evalue": redact(str(exc.evalue))[:500],
                "source": redact(exc.source)[:500],
            }
            if not any(t in exc.ename for t in TRANSIENT):
                break
        except Exception as exc:  # kernel died, timeout, ...
            name = type(exc).__name__
            res.status = "timeout" if "Timeout" in name else "failed"
            res.error = {"cell_index": None, "ename": name, "evalue": redact(str(exc))[:500]}
            if forked:  # perhaps the forked kernel: the retry starts one the usual way
                log.warning("forked kernel failed (%s): retrying with a fresh one", name)
                forked = {}
                continue
            if not any(t in name for t in TRANSIENT):
                break
    landed: Any = ipynb  # read once below, for the notes, findings and pages
    if ipynb.exists():
        try:
            landed = land_notebook(ipynb)
        except (OSError, ValueError) as exc:  # the pages then read (and report on) the file
            log.warning("%s %s: notebook not read: %s", job["market"], job["notebook"], exc)
    res.duration = time.perf_counter() - started
    res.paths["ipynb"] = str(ipynb)
    if ipynb.exists():
        with contextlib.suppress(OSError, ValueError):  # unreadable: the rendering says so
            res.notes = [
                {k: redact(v) if isinstance(v, str) else v for k, v in n.items()}
                for n in notebook_notes(landed)
            ]
            res.findings = [
                {k: redact(v) if isinstance(v, str) else v for k, v in f.items()}
                for f in notebook_findings(landed)
            ]
        title = f"{TITLES[job['notebook']]} — {job['title']}"
        aliases = moderator_aliases(job.get("moderators", ()))
        try:
            full = render_html(
                landed, out_dir / f"{job['notebook']}.html", title=title, subtitle=job["subtitle"]
            )
            stake = render_html(
                landed,
                out_dir / f"{job['notebook']}.stakeholder.html",
                stakeholder=True,
                title=title,
                subtitle=job["subtitle"],
                aliases=aliases,
            )
            res.paths["html"] = str(full)
            res.paths["stakeholder_html"] = str(stake)
        except Exception as exc:
            res.status = "failed"
            res.error = res.error or {
                "cell_index": None,
                "ename": type(exc).__name__,
                "evalue": redact(str(exc))[:500],
            }
    return asdict(res)


#: Relative run time of each notebook (seconds on ``demo``, kernel included,
#: 2026-12-06), to start the longest first.
_COST = {
    "portfolio": 4.7,
    "scorecard": 3.6,
    "ai": 2.3,
    "trends": 2.0,
    "capacity": 1.7,
    "rca": 1.5,
    "watch": 1.3,
    "triage": 1.3,
    "rollout": 0.9,
}


def warm_worker() -> None:
    """A pool worker's first act: start its kernel server, without waiting for it."""
    KernelServer.start_soon()


def worker_pool(jobs: int) -> cf.ProcessPoolExecutor:
    """The run's worker processes: they build the market caches, then run the notebooks.

    One pool for both saves spawning and importing a second set of workers, and
    each worker's kernel server imports while the worker builds caches.
    """
    return cf.ProcessPoolExecutor(
        max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=warm_worker
    )


def run_jobs(
    specs: list[dict[str, Any]], jobs: int, show: bool, pool: cf.Executor | None = None
) -> list[JobResult]:
    """Run the notebook jobs, ``jobs`` at a time (in ``pool`` when given), longest first."""
    results: list[JobResult] = []
    runnable = []
    for s in specs:
        if s.get("cache_error"):
            results.append(
                JobResult(
                    s["market"],
                    s["notebook"],
                    status="failed",
                    parameters=s["parameters"],
                    error={"cell_index": None, "ename": "DataError", "evalue": s["cache_error"]},
                )
            )
        else:
            runnable.append(s)
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(runnable), desc="notebooks", unit="nb", file=sys.stderr)
    if jobs <= 1:
        try:
            for s in runnable:
                results.append(JobResult(**execute_job(s)))
                if bar:
                    bar.update(1)
        finally:
            KernelServer.close()
    else:
        # longest first, so the last notebooks to finish are short ones and the
        # workers end together (each worker forks its kernels from its own server)
        runnable.sort(key=lambda s: -_COST.get(s["notebook"], 1.0))
        with contextlib.ExitStack() as stack:
            if pool is None:
                pool = stack.enter_context(worker_pool(jobs))
            futures = {pool.submit(execute_job, s): s for s in runnable}
            for fut in cf.as_completed(futures):
                s = futures[fut]
                try:
                    results.append(JobResult(**fut.result()))
                except Exception as exc:  # the worker process itself died
                    results.append(
                        JobResult(
                            s["market"],
                            s["notebook"],
                            status="failed",
                            parameters=s["parameters"],
                            error={
                                "cell_index": None,
                                "ename": type(exc).__name__,
                                "evalue": redact(str(exc)),
                            },
                        )
                    )
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    order = {(s["market"], s["notebook"]): i for i, s in enumerate(specs)}
    return sorted(results, key=lambda r: order.get((r.market, r.notebook), 0))
