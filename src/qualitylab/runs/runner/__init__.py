"""Scheduled per-market runs: the main job.

``qualitylab run`` validates parameters and data first, extracts each
market's slice of the data once into a local DuckDB cache (with the market's
scorecard and alerts), executes the notebooks (and the portfolio notebook)
with papermill in parallel worker processes, the longest first, renders the
full and the stakeholder HTML, then the hub ``index.html``. Each notebook gets
a fresh kernel; on Linux it is forked from a per-worker kernel server that has
imported the notebooks' modules once (see
:mod:`~qualitylab.runs.runner.kernels`), which saves ~2.5 s of CPU per
notebook; ``QUALITYLAB_FORK_KERNELS=0`` turns that off. Work happens in a
temporary folder; a run then adds to its report date's folder: each notebook
that succeeded replaces only its own files, a failed one keeps the last good
copy, and the date's manifest, the history and the hub are merged under a
lock (see :func:`~qualitylab.runs.runner.landing.finish_run`). A notebook
whose sections lacked data (each showing a one-line note, see
:func:`qualitylab.report.section`) still succeeded: its notes are listed per
job in the manifest and in the hub.

Modules: ``jobs`` (the notebooks, a job's result, the run's summary),
``batch`` (:func:`run`: validation, then the steps below), ``caches``
(per-market caches), ``kernels`` (forked kernels), ``execute`` (one
notebook, and the worker pool), ``landing`` (the reports folder: locks,
landing, manifest, history, digest) and ``hub`` (the hub pages).
"""

from __future__ import annotations

# every public name of the module runner was (also those not in __all__)
from qualitylab.runs.runner.batch import check_notebook_parameters, run  # noqa: F401
from qualitylab.runs.runner.caches import build_market_cache  # noqa: F401
from qualitylab.runs.runner.jobs import (  # noqa: F401
    HUB_METRICS,
    NOTEBOOKS,
    PORTFOLIO,
    TITLES,
    JobResult,
    ReportsBusy,
    RunSummary,
    find_notebooks_dir,
    log,
    redact,
)
from qualitylab.runs.runner.kernels import fork_kernels_enabled  # noqa: F401
from qualitylab.runs.runner.landing import (  # noqa: F401
    data_fingerprint,
    notify_webhook,
    read_manifest,
)

__all__ = [
    "NOTEBOOKS",
    "JobResult",
    "ReportsBusy",
    "RunSummary",
    "find_notebooks_dir",
    "read_manifest",
    "redact",
    "run",
]
