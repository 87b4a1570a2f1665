"""Scheduled per-market runs: the main job.

``qualitylab run`` validates parameters and data first, extracts each
market's slice of the data once into a local DuckDB cache (with the market's
scorecard and alerts), executes the notebooks (and the portfolio notebook)
with papermill in parallel worker processes, the longest first, renders the
full and the stakeholder HTML, then the hub ``index.html``. Each notebook gets
a fresh kernel; on Linux it is forked from a per-worker kernel server that has
imported the notebooks' modules once (see :func:`_kernel_server`), which saves
~2.5 s of CPU per notebook; ``QUALITYLAB_FORK_KERNELS=0`` turns that off. Work happens in a temporary
folder; a run then adds to its report date's folder: each notebook that
succeeded replaces only its own files, a failed one keeps the last good copy,
and the date's manifest, the history and the hub are merged under a lock (see
:func:`_finish`). A notebook whose sections lacked data (each showing a
one-line note, see :func:`qualitylab.report.section`) still succeeded: its
notes are listed per job in the manifest and in the hub.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import html
import json
import logging
import multiprocessing as mp
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.data.params import Parameters, load_parameters
from qualitylab.errors import DataContractError, ParameterError, QualityLabError
from qualitylab.version import __version__

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
_TRANSIENT = ("DeadKernelError", "KernelDied", "RuntimeError: Kernel died")

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


# --------------------------------------------------------------------------- #
# validation before any kernel starts
# --------------------------------------------------------------------------- #
def _select(names: str | Sequence[str], allowed: Sequence[str], what: str) -> list[str]:
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    names = list(names)
    if names in (["all"], []):
        return list(allowed)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise ParameterError(
            f"unknown {what} {bad[0]!r}; choose from {', '.join(allowed)} or 'all'", key=what
        )
    return names


def check_notebook_parameters(path: Path, given: Mapping[str, Any]) -> None:
    """Refuse parameters a notebook does not declare (papermill only warns).

    Raises
    ------
    ParameterError
        Naming the notebook file and the unknown key.
    """
    import papermill as pm

    declared = pm.inspect_notebook(str(path))
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ParameterError(
            f"{path}: unknown notebook parameter '{unknown[0]}' "
            f"(declared: {', '.join(sorted(declared))})",
            file=str(path),
            key=unknown[0],
        )


def data_fingerprint(source: str) -> str:
    """A hash of the input data: file names, sizes and modification times.

    Contents are not read (the data can be hundreds of GB); a URL source is
    hashed by its redacted text.
    """
    h = hashlib.sha256()
    p = Path(source)
    if p.exists():
        files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
        for f in files:
            st = f.stat()
            h.update(
                f"{f.relative_to(p) if p.is_dir() else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode()
            )
    else:
        h.update(redact(source).encode())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------- #
# per-market cache: the market's slice, its scorecard and its alerts
# --------------------------------------------------------------------------- #
def build_market_cache(
    source: str,
    market: str,
    path: Path,
    *,
    parameters: str | None,
    as_of: str | None = None,
    weeks: int = 4,
    rebaseline: Mapping[tuple[str, str, str], Any] | None = None,
) -> dict[str, Any]:
    """Extract one market's typed, quarantined tables into a DuckDB file.

    Also stores the market's alerts (``ql_alerts``) and its scorecards for the
    market and per vendor (``ql_scorecard``), computed for the report period
    (``as_of``, ``weeks``), so the market's notebooks and the portfolio reuse
    them instead of scanning again. Returns counts and timings.
    """
    import ibis

    from qualitylab.data.sources import open_dataset
    from qualitylab.reporting.report import context, scan_period

    started = time.perf_counter()
    ds = open_dataset(source, parameters=parameters)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.unlink()
    rows: dict[str, int] = {}
    exprs: dict[str, Any] = ds.market_tables(market)
    src = ds.backend
    if getattr(src, "name", "") == "duckdb":
        src.raw_sql(f"ATTACH '{path}' AS ql_cache")
        try:
            for name, expr in exprs.items():
                src.raw_sql(f'CREATE TABLE ql_cache."{name}" AS {src.compile(expr)}')
        finally:
            src.raw_sql("DETACH ql_cache")
        con = ibis.duckdb.connect(str(path))
    else:  # stream the slice out of a remote engine into the local cache
        con = ibis.duckdb.connect(str(path))
        for name, expr in exprs.items():
            con.create_table(name, ibis.memtable(expr.to_pyarrow()))
    for name in exprs:
        rows[name] = int(con.table(name).count().to_pyarrow().as_py())
    cached = open_dataset(con, parameters=ds.params)
    ctx = context(cached, market, as_of=as_of or None, weeks=weeks)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # undefined daily rates etc.
        warnings.simplefilter("always")
        sc = _scorecard_or_empty(cached, market, [], ctx.start, ctx.end)
        sc_vendor = _scorecard_or_empty(cached, market, ["vendor"], ctx.start, ctx.end)
        scan_ctx = _daily_scan_context(cached, ctx)
        alerts = scan_period(cached, scan_ctx, rebaseline=dict(rebaseline) if rebaseline else None)
        alerts = _incidents(alerts, cached, market, scan_ctx)
    log.info("%s: %d warnings while computing scorecard and alerts", market, len(caught))
    con.create_table("ql_alerts", ibis.memtable(_as_text(alerts)))
    note = alerts.attrs.get("note")  # why the scan found nothing (e.g. too short a history)
    con.create_table(
        "ql_alert_notes",
        ibis.memtable(
            pd.DataFrame(
                {"market": [market] if note else [], "note": [str(note)] if note else []},
                dtype="string",
            )
        ),
    )
    stored = pd.concat(
        [sc.assign(vendor=None, grain="market"), sc_vendor.assign(grain="vendor")],
        ignore_index=True,
    ).assign(period_start=str(ctx.start), period_end=str(ctx.end))
    stored["vendor"] = stored["vendor"].astype("string")
    con.create_table("ql_scorecard", ibis.memtable(stored))
    con.disconnect()
    return {
        "rows": rows,
        "scorecard": sc,
        "alerts": alerts,
        "period": (str(ctx.start), str(ctx.end)),
        "scan_period": (str(scan_ctx.start), str(scan_ctx.end)),
        "seconds": time.perf_counter() - started,
    }


def _daily_scan_context(ds: Any, ctx: Any) -> Any:
    """The context the run's scan uses: the 28 days ending on the report date.

    Scorecards report the last full weeks; the alert scan of a daily loop
    moves every day, so an alert is new on the day its window starts, not on
    the next Sunday. The scan ends on the data's last day when the data ends
    before the report date (late data), so missing days are not read as a
    stop.
    """
    from dataclasses import replace

    from qualitylab.measure.metrics import Period
    from qualitylab.reporting.report import baseline_of, data_end

    try:
        last = min(ctx.as_of, data_end(ds, ctx.market))
    except QualityLabError:
        return ctx
    period = Period(last - timedelta(days=27), last)
    return replace(ctx, period=period, baseline=baseline_of(period))


def _incidents(alerts: pd.DataFrame, ds: Any, market: str, ctx: Any) -> pd.DataFrame:
    """The scan's alerts folded into incidents (lead and children; the scan's attrs kept)."""
    from qualitylab.detection.incidents import group_incidents

    if alerts.empty:
        return alerts
    try:
        grouped = group_incidents(alerts, ds, market, start=ctx.start, end=ctx.end)
    except QualityLabError as exc:  # too little data to explain: each alert its own incident
        log.warning("%s: alerts not grouped into incidents: %s", market, redact(str(exc)))
        return alerts
    grouped.attrs = {**alerts.attrs, **grouped.attrs}
    return grouped


def _scorecard_or_empty(ds: Any, market: str, by: list[str], start: Any, end: Any) -> pd.DataFrame:
    """The market's scorecard, or an empty one when its data is too thin for it.

    The notebooks then say why in their own sections; the market still runs.
    """
    from qualitylab.measure.scorecard import SCORECARD_COLUMNS, scorecard

    try:
        return scorecard(ds, market, by=by, start=start, end=end)
    except ParameterError:
        raise
    except QualityLabError as exc:
        log.warning("%s: no scorecard by %s: %s", market, by or "market", redact(str(exc)))
        text = {"market", *by, "metric", "status"}
        empty = pd.DataFrame(
            {
                c: pd.Series([], dtype="string" if c in text else bool if c == "small_n" else float)
                for c in ["market", *by, *SCORECARD_COLUMNS]
            }
        )
        empty.attrs["note"] = str(exc)
        return empty


# --------------------------------------------------------------------------- #
# kernels forked from a warm process
# --------------------------------------------------------------------------- #
#: Modules every notebook kernel imports in its first cell (~2.5 s of CPU per
#: kernel), imported once per worker in the kernel server instead.
_WARM_IMPORTS = (
    "ipykernel.kernelapp",
    "qualitylab",
    "qualitylab.charts",
    "qualitylab.report",
    "qualitylab.watch",
    "qualitylab.watchcli",
)
#: The analysis modules a notebook reaches through ``ql.<module>``, also warmed.
_LAYER_MODULES = tuple(
    f"qualitylab.{layer}.{name}"
    for layer, names in {
        "measure": ("agreement", "aieval", "calibration", "reconcile", "stats"),
        "detection": ("detect", "findings", "rca", "sampling"),
        "operations": ("capacity", "escalations", "forecast", "readiness", "redteam", "rollout"),
    }.items()
    for name in names
)


def fork_kernels_enabled() -> bool:
    """Fork notebook kernels from a warm process unless ``QUALITYLAB_FORK_KERNELS=0``.

    Linux only (it needs ``fork`` and ``pidfd_open``).

    Examples
    --------
    >>> isinstance(fork_kernels_enabled(), bool)
    True
    """
    if os.environ.get("QUALITYLAB_FORK_KERNELS", "1").strip().lower() in (
        "0",
        "off",
        "false",
        "no",
    ):
        return False
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(os, "fork")


def _kernel_server() -> None:
    """The kernel server: import the kernels' modules once, then fork one kernel per request.

    It reads one JSON request per line on stdin (``argv`` of
    ``python -m ipykernel_launcher``, ``cwd``, ``env``) and answers the forked
    kernel's pid on stdout. Nothing runs in the server but imports: no user
    code, no event loop, no ZMQ socket. Each kernel is a fresh process with
    its own memory (copy-on-write): notebooks share no state, only the
    imported, not yet used, modules. The server exits when its stdin closes
    (the worker that started it ended).
    """
    import importlib
    import signal
    import warnings

    with warnings.catch_warnings():  # a kernel shows import warnings itself, if any
        warnings.simplefilter("ignore")
        for name in _WARM_IMPORTS:
            importlib.import_module(name)
        for name in _LAYER_MODULES:
            importlib.import_module(name)
    # the kernels are reaped as they end (so their CPU time counts as the run's)
    signal.signal(signal.SIGCHLD, lambda *_: _reap())
    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    answers.write(b'{"ready": true}\n')
    answers.flush()
    try:
        _serve(requests, answers)
    finally:  # the worker ended: wait a little for kernels still shutting down
        deadline = time.monotonic() + 10
        while _reap() and time.monotonic() < deadline:
            time.sleep(0.1)


def _reap() -> bool:
    """Reap the server's ended kernels; True while some still run."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _serve(requests: Any, answers: Any) -> None:
    for line in requests:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _kernel_child(req)
            finally:
                os._exit(code)
        answers.write(json.dumps({"pid": pid}).encode() + b"\n")
        answers.flush()


def _kernel_child(req: Mapping[str, Any]) -> int:
    """In a forked kernel: become what ``python -m ipykernel_launcher ARGV`` would be."""
    import random
    import signal

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # its own process group, as jupyter_client starts kernels
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)  # not the server's answer pipe
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives as long as the kernel
    sys.stdout = os.fdopen(1, "w", buffering=1, encoding="utf-8", closefd=False)
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.path[0] = os.getcwd()  # as ``python -m`` sets it
    sys.argv = ["ipykernel_launcher", *req["argv"]]
    random.seed()
    if "numpy.random" in sys.modules:  # a fresh interpreter seeds numpy's global generator
        sys.modules["numpy.random"].seed()
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
    sys.stdout.flush()
    sys.stderr.flush()
    return 0


class _ForkedKernel:
    """A :class:`subprocess.Popen`-like handle on a kernel the server forked.

    It is not our child: its exit is watched through a pidfd, which also
    makes the signals safe from pid reuse.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        try:
            self._fd: int | None = os.pidfd_open(pid)
        except ProcessLookupError:  # already gone
            self._fd = None
            self.returncode = 1

    def _exited(self, timeout: float | None) -> bool:
        import select

        if self._fd is None:
            return True
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if ready:
            os.close(self._fd)
            self._fd = None
            self.returncode = 0 if self.returncode is None else self.returncode
        return bool(ready)

    def poll(self) -> int | None:
        return self.returncode if self._exited(0) else None

    def wait(self, timeout: float | None = None) -> int:
        import subprocess

        if not self._exited(timeout):
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        import signal

        if self._fd is not None and self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._fd, sig)

    def kill(self) -> None:
        import signal

        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        import signal

        self.send_signal(signal.SIGTERM)


class _KernelServer:
    """The worker's handle on its kernel server (started on first use)."""

    _instance: _KernelServer | None = None
    _failed = False

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from qualitylab.runs.runner import _kernel_server; _kernel_server()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline() or b"{}").get("ready") is not True:
            self.proc.kill()
            raise RuntimeError("the kernel server did not start")
        # a pool worker ends through multiprocessing's exit, which skips atexit
        from multiprocessing.util import Finalize

        Finalize(self, type(self).close, exitpriority=10)

    @classmethod
    def get(cls) -> _KernelServer | None:
        """This process's server, or None when forking is off or the server failed."""
        if cls._failed or not fork_kernels_enabled():
            return None
        if cls._instance is None or cls._instance.proc.poll() is not None:
            try:
                cls._instance = cls()
            except Exception as exc:
                log.warning("kernels start the usual way: %s", exc)
                cls._failed = True
                cls._instance = None
        return cls._instance

    def fork(self, argv: Sequence[str], cwd: str, env: Mapping[str, str]) -> _ForkedKernel:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        req = {"argv": list(argv), "cwd": cwd, "env": dict(env)}
        self.proc.stdin.write(json.dumps(req).encode() + b"\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline() or b"{}")
        if "pid" not in answer:
            raise RuntimeError("the kernel server stopped")
        return _ForkedKernel(int(answer["pid"]))

    @classmethod
    def close(cls) -> None:
        """Stop this process's server (its running kernels go on)."""
        server, cls._instance = cls._instance, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.proc.stdin.close()  # type: ignore[union-attr]
                server.proc.wait(5)
            with contextlib.suppress(Exception):
                server.proc.kill()


def _forking_kernel_manager() -> Any:
    """A jupyter_client KernelManager that forks ``ipykernel_launcher`` kernels from the server.

    Any other kernel command, or a server that cannot be reached, starts the
    kernel the usual way.
    """
    from jupyter_client.manager import AsyncKernelManager

    class ForkingKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            server = _KernelServer.get()
            prov = self.provisioner
            python = os.path.realpath(kernel_cmd[0]) if kernel_cmd else ""
            if (
                server is None
                or prov is None
                or python != os.path.realpath(sys.executable)
                or kernel_cmd[1:3] != ["-m", "ipykernel_launcher"]
            ):
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            try:
                proc = server.fork(
                    kernel_cmd[3:], str(kw.get("cwd") or os.getcwd()), kw.get("env") or os.environ
                )
            except Exception as exc:
                log.warning("kernel not forked (%s); starting it the usual way", exc)
                _KernelServer._failed = True
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            prov.process = proc  # type: ignore[attr-defined]
            prov.pid = proc.pid  # type: ignore[attr-defined]
            prov.pgid = proc.pid  # type: ignore[attr-defined]
            prov.cwd = kw.get("cwd") or os.getcwd()  # type: ignore[attr-defined]
            self._reconcile_connection_info(prov.connection_info)

    return ForkingKernelManager


# --------------------------------------------------------------------------- #
# one notebook execution (runs in a worker process)
# --------------------------------------------------------------------------- #
def _execute(job: dict[str, Any]) -> dict[str, Any]:
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
    # kernels forked from the worker's warm kernel server (see _kernel_server);
    # a kernel that did not come up that way is started the usual way on retry
    forked = {"kernel_manager_class": _forking_kernel_manager()} if _KernelServer.get() else {}
    for attempt in (1, 2):
        res.attempts = attempt
        try:
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
            if not any(t in exc.ename for t in _TRANSIENT):
                break
        except Exception as exc:  # kernel died, timeout, ...
            name = type(exc).__name__
            res.status = "timeout" if "Timeout" in name else "failed"
            res.error = {"cell_index": None, "ename": name, "evalue": redact(str(exc))[:500]}
            if forked:  # perhaps the forked kernel: the retry starts one the usual way
                log.warning("forked kernel failed (%s): retrying with a fresh one", name)
                forked = {}
                continue
            if not any(t in name for t in _TRANSIENT):
                break
    res.duration = time.perf_counter() - started
    res.paths["ipynb"] = str(ipynb)
    if ipynb.exists():
        with contextlib.suppress(OSError, ValueError):  # unreadable: the rendering says so
            res.notes = [
                {k: redact(v) if isinstance(v, str) else v for k, v in n.items()}
                for n in notebook_notes(ipynb)
            ]
            res.findings = [
                {k: redact(v) if isinstance(v, str) else v for k, v in f.items()}
                for f in notebook_findings(ipynb)
            ]
        title = f"{TITLES[job['notebook']]} — {job['title']}"
        aliases = moderator_aliases(job.get("moderators", ()))
        try:
            full = render_html(
                ipynb, out_dir / f"{job['notebook']}.html", title=title, subtitle=job["subtitle"]
            )
            stake = render_html(
                ipynb,
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


# --------------------------------------------------------------------------- #
# the run
# --------------------------------------------------------------------------- #
def run(
    data: str,
    *,
    markets: str | Sequence[str] = "all",
    notebooks: str | Sequence[str] = "all",
    as_of: str | None = None,
    out: str | os.PathLike[str] = "reports",
    jobs: int = 1,
    timeout: float = 600,
    parameters: str | None = None,
    notebooks_dir: str | None = None,
    portfolio: bool = True,
    progress: bool | None = None,
    echo: Callable[[str], None] | None = None,
    now: datetime | None = None,
    wait: float = 0,
    notify: str | None = None,
) -> RunSummary:
    """Run the notebooks for every market and build the hub.

    Parameters
    ----------
    data : str
        Dataset source (folder, DuckDB file, ibis URL). A URL's password never
        reaches a notebook, HTML, manifest or log: notebooks read the local
        market cache.
    markets, notebooks : "all" or names
        Markets (codes) and notebooks (``scorecard, trends, rca, ai, capacity,
        rollout, triage``).
    as_of : str, optional
        Last market-local date to report (``YYYY-MM-DD``), or ``"yesterday"`` /
        ``"today"`` resolved in each market's time zone (with several markets,
        the earliest of their dates: the last day that has ended in all of
        them). Defaults to the last day with data. Names the output folder;
        a run for a past date (a backfill) reports that date's period.
    out : path, default "reports"
    jobs : int, default 1
        Parallel worker processes.
    timeout : float, default 600
        Seconds allowed per notebook cell (papermill ``execution_timeout``).
    parameters, notebooks_dir : str, optional
        Folders; found automatically when omitted.
    portfolio : bool, default True
        Also run the portfolio notebook over all selected markets.
    progress : bool, optional
        Progress bar; default on a terminal, off in CI and cron.
    echo : callable, optional
        Receives one-line status messages.
    now : datetime, optional
        The instant ``today``/``yesterday`` are resolved against (default: the
        wall clock).
    wait : float, default 0
        Seconds to wait when another run is writing one of these markets into
        ``out`` (each market, and the portfolio, has a lock; runs of other
        markets go on side by side). After that, :class:`ReportsBusy` names
        the run that holds the lock.

    notify : str, optional
        A webhook URL: the run's digest is POSTed to it as JSON when the run
        finishes. A failure to reach it is a warning, never a failed run.

    Raises
    ------
    ReportsBusy
        When a market's lock is still held after ``wait`` seconds.

    Returns
    -------
    RunSummary
    """
    say = echo or (lambda _msg: None)
    params: Parameters = load_parameters(parameters)
    from qualitylab.operations.readiness import load_launch_plans

    load_launch_plans(params.root, parameters=params)  # a broken launch plan stops the run here
    nb_dir = find_notebooks_dir(notebooks_dir)
    keys = _select(notebooks, list(NOTEBOOKS), "notebook")
    from qualitylab.data.sources import open_dataset
    from qualitylab.detection import alertstore

    ds = open_dataset(data, parameters=params)
    report = ds.validate()
    if not report.ok:
        report.raise_if_fatal()
    present = ds.table("decisions").select("market").distinct().to_pandas()["market"].tolist()
    codes = _select(markets, sorted(c for c in present if c in params.markets), "market")
    if not codes:
        raise DataContractError("no market in the data has a parameters file")
    as_of, as_of_note = _resolve_as_of(as_of, codes, params, now)
    base_params = {
        "as_of": as_of or "",
        "weeks": 4,
        "parameters": str(Path(params.root).resolve()),
        "interactive": False,
    }
    import papermill as pm

    with_reports = {k for k in keys if "reports" in pm.inspect_notebook(str(nb_dir / NOTEBOOKS[k]))}
    for key in keys:
        check_notebook_parameters(
            nb_dir / NOTEBOOKS[key], {**base_params, "market": "", "data": ""}
        )
    if portfolio:
        check_notebook_parameters(
            nb_dir / PORTFOLIO,
            {**{k: v for k, v in base_params.items()}, "markets": "", "data": "", "history": ""},
        )

    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
    out_root = Path(out).resolve()
    label = as_of or _latest_date(ds, codes)
    final = out_root / label
    locks = _run_locks(out_root, [*codes, *(["ALL"] if portfolio else [])], run_id, wait)
    locks.__enter__()  # released in the finally below, also when a notebook fails
    _remove_stale_tmp(out_root)
    tmp = out_root / f".tmp-{label}-{run_id}"
    tmp.mkdir(parents=True, exist_ok=True)
    logfile = tmp / "run.log"
    handler = logging.FileHandler(logfile, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    show = sys.stderr.isatty() and not os.environ.get("CI") if progress is None else progress
    try:
        log.info("run %s: data %s, markets %s, notebooks %s", run_id, redact(data), codes, keys)
        if as_of_note:
            log.info(as_of_note)
            say(as_of_note)
        for note in _late_data_notes(ds, codes, as_of):
            log.warning(note)
            say(note)
        say(
            f"validated data ({sum(report.rows.values()):,} rows); quarantined: {report.quarantined}"
        )
        cache_dir = tmp / "cache"
        store = alertstore.read_store(out_root)
        labels = alertstore.read_labels(out_root)
        rebase = {c: alertstore.rebaselines(store, labels, market=c) for c in codes}
        for code, series in rebase.items():
            for (metric, dim, seg), since in series.items():
                log.info(
                    "%s: %s of %s %s re-baselined from %s (new_normal)",
                    code,
                    metric,
                    dim,
                    seg,
                    since,
                )
        caches = _build_caches(
            data, codes, cache_dir, str(params.root), jobs, say, as_of, rebaseline=rebase
        )
        tracked = _track_alerts(caches, store, labels, run_id, label)
        job_specs = []
        for code in codes:
            cache = caches[code]
            mdir = tmp / code
            mdir.mkdir(parents=True, exist_ok=True)
            if "error" not in cache:
                cache["scorecard"].to_csv(mdir / "scorecard.csv", index=False)
                from qualitylab.detection.detect import write_alerts

                write_alerts(cache["alerts"], mdir / "alerts.csv")
            mods = _moderators(cache.get("path"))
            for key in keys:
                job_specs.append(
                    {
                        "market": code,
                        "notebook": key,
                        "source": str(nb_dir / NOTEBOOKS[key]),
                        "cwd": str(nb_dir),
                        "out_dir": str(mdir),
                        "timeout": timeout,
                        "title": f"{params.market(code).name} ({code})",
                        "subtitle": "{} to {}".format(*cache.get("period", ("", ""))),
                        "moderators": mods,
                        "cache_error": cache.get("error"),
                        "parameters": {
                            **base_params,
                            "market": code,
                            "data": str(cache.get("path", "")),
                            # notebooks that read the alert store and write labels
                            **({"reports": str(out_root)} if key in with_reports else {}),
                        },
                    }
                )
        if portfolio:
            # the portfolio reads the combined cache only, so it runs in the same
            # pool as the market notebooks (first: it is the longest)
            pdir = tmp / "portfolio"
            job_specs.append(
                {
                    "market": "ALL",
                    "notebook": "portfolio",
                    "source": str(nb_dir / PORTFOLIO),
                    "cwd": str(nb_dir),
                    "out_dir": str(pdir),
                    "timeout": timeout,
                    "title": "all markets",
                    "subtitle": label,
                    "moderators": (),
                    "parameters": {
                        **base_params,
                        "markets": ",".join(codes),
                        "data": str(tmp / "cache" / "ALL.duckdb"),
                        "history": str(out_root),
                    },
                }
            )
            _combine_caches(
                [c["path"] for c in caches.values() if "path" in c], tmp / "cache" / "ALL.duckdb"
            )
        results = _run_jobs(job_specs, jobs, show)
        for r in results:
            log.info(
                "%s/%s: %s in %.1fs %s", r.market, r.notebook, r.status, r.duration, r.error or ""
            )
            for n in r.notes:
                log.info(
                    "%s/%s: too little data for %s: %s",
                    r.market,
                    r.notebook,
                    n["section"],
                    n["reason"],
                )
        log.info(
            "run %s finished: %d jobs, %d failed",
            run_id,
            len(results),
            sum(r.status != "ok" for r in results),
        )
        handler.flush()
        manifest = _finish(
            tmp,
            final,
            out_root,
            run_id,
            label,
            data,
            codes,
            keys,
            results,
            caches,
            report,
            portfolio=portfolio,
            logfile=logfile,
            tracked=tracked,
        )
        digest = _write_digest(final, out_root, label, run_id, codes)
        if notify:
            warning = notify_webhook(notify, digest)
            if warning:
                log.warning(warning)
                say(f"warning: {warning}")
            else:
                say("digest posted to the webhook")
        return RunSummary(run_id, label, final, tuple(results), manifest)
    finally:
        log.removeHandler(handler)
        handler.close()
        shutil.rmtree(tmp, ignore_errors=True)
        locks.__exit__(None, None, None)


def _as_text(frame: pd.DataFrame) -> Any:
    """A frame as an all-string arrow table (a fixed schema even when empty)."""
    import pyarrow as pa

    cols = {
        c: pa.array([None if pd.isna(v) else str(v) for v in frame[c]], type=pa.string())
        for c in frame.columns
    }
    return pa.table(cols) if cols else pa.table({"market": pa.array([], type=pa.string())})


class ReportsBusy(QualityLabError):
    """Another run is writing the same market into the same reports folder."""


def _holder(path: Path) -> str:
    """Who holds a market lock, from the note its holder wrote into the file."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another run"
    return (
        f"run {info.get('run_id', '?')} (pid {info.get('pid', '?')}, "
        f"started {str(info.get('started_at', '?'))[:19]}, markets {info.get('markets', '?')})"
    )


@contextlib.contextmanager
def _run_locks(out_root: Path, names: Sequence[str], run_id: str, wait: float) -> Iterator[None]:
    """Hold ``<out>/.locks/<MARKET>.lock`` for each market (and ``ALL`` for the portfolio).

    The locks are ``flock`` locks: the kernel releases them when the process
    ends, however it ends (a run killed with SIGKILL leaves no stale lock).
    Locks are taken in sorted order, so two runs cannot deadlock.
    """
    import fcntl

    folder = out_root / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(float(wait), 0.0)
    held: list[Any] = []
    note = json.dumps(
        {
            "run_id": run_id,
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "markets": ",".join(sorted(set(names))),
        }
    )
    try:
        for name in sorted(set(names)):
            path = folder / f"{name}.lock"
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until the run ends
            while True:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        fh.close()
                        raise ReportsBusy(
                            f"{out_root}: {name} is being written by {_holder(path)}; "
                            + (
                                f"waited {wait:.0f}s. "
                                if wait
                                else "pass --wait SECONDS to wait for it, "
                            )
                            + "or write to another --out"
                        ) from None
                    time.sleep(min(1.0, max(deadline - time.monotonic(), 0.05)))
            fh.seek(0)
            fh.truncate()
            fh.write(note)
            fh.flush()
            held.append(fh)
        yield
    finally:
        for fh in held:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()
                fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def _remove_stale_tmp(out_root: Path, older_than: float = 24 * 3600) -> None:
    """Remove work folders of runs that died (killed) more than a day ago."""
    cutoff = time.time() - older_than
    for p in out_root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if p.is_dir() and p.stat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)


def _resolve_as_of(
    as_of: str | None, codes: Sequence[str], params: Parameters, now: datetime | None
) -> tuple[str | None, str]:
    """The run's report date as ``YYYY-MM-DD`` (or None: the data's last day), and a note.

    ``today``/``yesterday`` are resolved in each market's zone; when the
    markets disagree (a run near midnight), the earliest date is the report
    date and the note says so.
    """
    from qualitylab.data.localtime import report_date

    if as_of is None or not str(as_of).strip():
        return None, ""
    try:
        dates = {c: report_date(as_of, params.market(c).timezone, now) for c in codes}
    except ValueError as exc:
        raise ParameterError(f"--as-of: {exc}", key="as_of") from None
    day = min(dates.values())
    later = sorted(c for c, d in dates.items() if d != day)
    note = ""
    if later:
        note = (
            f"report date {day}: '{as_of}' is already {max(dates.values())} in "
            f"{', '.join(later)}; the run reports the last day that has ended in every market"
        )
    elif str(as_of).strip().lower() in ("today", "yesterday"):
        note = f"report date {day} ('{as_of}' in the markets' time zones)"
    return day.isoformat(), note


#: Store columns the notebooks see beside each alert in the cache's ``ql_alerts``.
_STATUS_COLUMNS = (
    "alert_id",
    "status",
    "label",
    "label_note",
    "first_seen",
    "incident_id",
    "incident_role",
)
_ALERT_KEY = ("metric", "dimension", "segment", "direction", "start_date", "end_date")


def _day_text(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if v is None or pd.isna(v) else str(v)[:10])


def _track_alerts(
    caches: Mapping[str, dict[str, Any]],
    store: pd.DataFrame,
    labels: pd.DataFrame,
    run_id: str,
    label: str,
) -> dict[str, pd.DataFrame]:
    """Each market's store rows for this run; its alerts gain their ids and statuses.

    Nothing is written to the store here (the run commits it when it finishes,
    so a run killed mid-way leaves the store as it was); the statuses go into
    each market's cache (``ql_alerts``, and ``ql_alert_store`` with the
    resolved ones) for the notebooks.
    """
    from qualitylab.detection import alertstore

    tracked: dict[str, pd.DataFrame] = {}
    for code, cache in caches.items():
        if "error" in cache:
            continue
        alerts = cache["alerts"]
        start, end = cache.get("scan_period", cache["period"])
        scanned_end = (alerts.attrs.get("scanned") or {}).get("end")
        if scanned_end:  # the scan's last day (the data's), not the report date
            end = max(min(str(end), str(scanned_end)[:10]), str(start))
        rows = alertstore.track(
            store, alerts, labels, run_id=run_id, as_of=label, market=code, period=(start, end)
        )
        tracked[code] = rows
        if len(alerts):
            keyed = alerts.drop(columns=[c for c in _STATUS_COLUMNS if c in alerts.columns])
            keyed = keyed.assign(_s=_day_text(keyed["start_date"]), _e=_day_text(keyed["end_date"]))
            status = rows[[c for c in (*_ALERT_KEY, *_STATUS_COLUMNS) if c in rows.columns]]
            status = status.assign(
                _s=_day_text(status["start_date"]), _e=_day_text(status["end_date"])
            ).drop(columns=["start_date", "end_date"])
            keys = ["metric", "dimension", "segment", "direction", "_s", "_e"]
            merged = keyed.merge(status.drop_duplicates(keys), on=keys, how="left")
            merged = merged.drop(columns=["_s", "_e"])
            merged.attrs = alerts.attrs
            cache["alerts"] = merged
        _store_statuses(cache["path"], cache["alerts"], rows)
    return tracked


def _store_statuses(path: Path, alerts: pd.DataFrame, rows: pd.DataFrame) -> None:
    """Replace the cache's ``ql_alerts`` with the tracked alerts; add ``ql_alert_store``."""
    import duckdb

    con = duckdb.connect(str(path))
    try:
        for name, frame in (("ql_alerts", alerts), ("ql_alert_store", rows)):
            con.register("frame_view", _as_text(frame))
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM frame_view')
            con.unregister("frame_view")
    finally:
        con.close()


def _late_data_notes(ds: Any, codes: Sequence[str], as_of: str | None) -> list[str]:
    """One line per market whose data ends before the report date (late data)."""
    from datetime import date

    from qualitylab.reporting.report import data_end

    if not as_of:
        return []
    day = date.fromisoformat(as_of)
    notes = []
    for code in codes:
        try:
            end = data_end(ds, code)
        except QualityLabError:
            continue  # no decisions at all: the market's cache says so
        if end < day:
            notes.append(
                f"{code}: the data ends {end}, {(day - end).days} day(s) before the report "
                f"date {day}; the days after {end} show no data"
            )
    return notes


def _latest_date(ds: Any, codes: Sequence[str]) -> str:
    from qualitylab.reporting.report import data_end

    return max(str(data_end(ds, c)) for c in codes)


def _moderators(path: Path | None) -> tuple[str, ...]:
    if path is None:
        return ()
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT moderator_id FROM decisions WHERE moderator_id IS NOT NULL"
        ).fetchall()
    finally:
        con.close()
    return tuple(r[0] for r in rows)


#: Results stored in each market cache that the portfolio reads from the combined one.
_SHARED_RESULTS = ("ql_alerts", "ql_alert_notes", "ql_scorecard")


def _combine_caches(paths: Sequence[Path], dest: Path) -> None:
    """One DuckDB file with every market's tables (and shared results) stacked.

    Tables are stacked by column name: a market's alerts may lack the columns
    of a full scan (an empty alert table when its history is too short).
    """
    import duckdb

    con = duckdb.connect(str(dest))
    try:
        holders: dict[str, list[str]] = {}
        for i, p in enumerate(paths):
            con.execute(f"ATTACH '{p}' AS c{i} (READ_ONLY)")
            for (t,) in con.execute(
                f"SELECT table_name FROM information_schema.tables WHERE table_catalog = 'c{i}'"
            ).fetchall():
                if not t.startswith("ql_") or t in _SHARED_RESULTS:
                    holders.setdefault(t, []).append(f'c{i}."{t}"')
        for t, sources in holders.items():
            union = " UNION ALL BY NAME ".join(f"SELECT * FROM {src}" for src in sources)
            con.execute(f'CREATE TABLE "{t}" AS {union}')
        for i in range(len(paths)):
            con.execute(f"DETACH c{i}")
        # events with market '*' were copied once per market: keep one copy
        if "events" in holders:
            con.execute("CREATE TABLE events_d AS SELECT DISTINCT * FROM events")
            con.execute("DROP TABLE events")
            con.execute("ALTER TABLE events_d RENAME TO events")
    finally:
        con.close()


def _cache_job(args: tuple[str, str, str, str, str | None, dict[Any, Any]]) -> dict[str, Any]:
    """Build one market's cache (in a worker); errors come back as data."""
    data, code, path, parameters, as_of, rebaseline = args
    t0 = time.perf_counter()
    try:
        out = build_market_cache(
            data, code, Path(path), parameters=parameters, as_of=as_of, rebaseline=rebaseline
        )
    except QualityLabError as exc:
        return {"error": redact(str(exc)), "seconds": time.perf_counter() - t0}
    out["path"] = Path(path)
    return out


def _build_caches(
    data: str,
    codes: Sequence[str],
    cache_dir: Path,
    parameters: str,
    jobs: int,
    say: Callable[[str], None],
    as_of: str | None = None,
    rebaseline: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every market's cache (slice, scorecard, alerts), ``jobs`` markets at a time."""
    rebaseline = rebaseline or {}
    args = [
        (
            data,
            code,
            str(cache_dir / f"{code}.duckdb"),
            parameters,
            as_of,
            dict(rebaseline.get(code, {})),
        )
        for code in codes
    ]
    caches: dict[str, dict[str, Any]] = {}

    def record(code: str, cache: dict[str, Any]) -> None:
        caches[code] = cache
        if "error" in cache:
            log.error("%s: cache failed: %s", code, cache["error"])
            say(f"{code}: data could not be prepared: {cache['error']}")
        else:
            log.info("%s: cache built in %.1fs %s", code, cache["seconds"], cache["rows"])
            say(f"{code}: data extracted, scorecard and alerts computed ({cache['seconds']:.1f}s)")

    if jobs <= 1 or len(codes) <= 1:
        for code, a in zip(codes, args, strict=True):
            record(code, _cache_job(a))
    else:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=min(jobs, len(codes)), mp_context=ctx) as pool:
            futures = {
                pool.submit(_cache_job, a): code for code, a in zip(codes, args, strict=True)
            }
            for fut in cf.as_completed(futures):
                code = futures[fut]
                try:
                    record(code, fut.result())
                except Exception as exc:  # the worker process itself died
                    record(code, {"error": redact(f"{type(exc).__name__}: {exc}"), "seconds": 0.0})
    return {code: caches[code] for code in codes}


#: Relative run time of each notebook (CPU seconds on ``demo``, kernel included),
#: to start the longest first.
_COST = {
    "portfolio": 15.0,
    "scorecard": 11.0,
    "trends": 9.5,
    "rca": 6.5,
    "ai": 5.5,
    "watch": 5.0,
    "capacity": 5.0,
    "rollout": 4.5,
    "triage": 4.0,
}


def _run_jobs(specs: list[dict[str, Any]], jobs: int, show: bool) -> list[JobResult]:
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
                results.append(JobResult(**_execute(s)))
                if bar:
                    bar.update(1)
        finally:
            _KernelServer.close()
    else:
        # longest first, so the last notebooks to finish are short ones and the
        # workers end together (each worker forks its kernels from its own server)
        runnable.sort(key=lambda s: -_COST.get(s["notebook"], 1.0))
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_execute, s): s for s in runnable}
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


#: Market-level files a run writes beside the notebooks (from the market's cache).
_MARKET_FILES = ("scorecard.csv", "alerts.csv")


@contextlib.contextmanager
def _locked(out_root: Path) -> Iterator[None]:
    """Hold the output folder's lock: runs that finish at once take turns.

    Two scheduled runs of different markets (or entries) for one report date
    share the date's manifest, hub and the history; each run's finishing step
    reads, merges and writes them under this lock.
    """
    import fcntl

    out_root.mkdir(parents=True, exist_ok=True)
    with open(out_root / ".qualitylab.lock", "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A report date's manifest (``<out>/<as_of>/manifest.json``), or ``{}`` when absent.

    Older manifests (one run per date) are read as one run: their jobs get the
    run's id.
    """
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        return {}
    try:
        man = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        log.warning("%s is unreadable; a new manifest replaces it", path)
        return {}
    for job in man.get("jobs", []):
        job.setdefault("run_id", man.get("run_id"))
        job.setdefault("finished_at", man.get("finished_at"))
    return man


def _job_order(market: str, notebook: str, markets: Sequence[str]) -> tuple[int, int]:
    keys = [*NOTEBOOKS, "portfolio"]
    return (
        markets.index(market) if market in markets else len(markets),
        keys.index(notebook) if notebook in keys else len(keys),
    )


def _finish(
    tmp: Path,
    final: Path,
    out_root: Path,
    run_id: str,
    label: str,
    data: str,
    codes: Sequence[str],
    keys: Sequence[str],
    results: list[JobResult],
    caches: Mapping[str, Mapping[str, Any]],
    report: Any,
    *,
    portfolio: bool = False,
    logfile: Path | None = None,
    tracked: Mapping[str, pd.DataFrame] | None = None,
) -> Path:
    """Land this run's good notebooks beside the others; merge manifest, history and hub.

    A run adds to the report date's folder: each notebook that succeeded
    replaces only its own files (each file atomically); every other notebook
    in the folder, from earlier runs, stays. A failed notebook leaves the last
    good copy of itself in place and its output goes to ``.failed/<run_id>/``.
    """
    from qualitylab.detection import alertstore

    finished_at = datetime.now(UTC).isoformat()
    with _locked(out_root):
        final.mkdir(parents=True, exist_ok=True)
        previous = read_manifest(final)
        old_jobs = {(j["market"], j["notebook"]): j for j in previous.get("jobs", [])}
        landed: set[str] = set()
        for r in results:
            folder = "portfolio" if r.market == "ALL" else r.market
            src_dir = tmp / folder
            names = [Path(v).name for v in r.paths.values()]
            if r.status == "ok" and all((src_dir / n).is_file() for n in names):
                dst = final / folder
                dst.mkdir(parents=True, exist_ok=True)
                for n in names:
                    os.replace(src_dir / n, dst / n)
                landed.add(r.market)
            else:
                dst = final / ".failed" / run_id / folder
                for n in names:
                    if (src_dir / n).is_file():
                        dst.mkdir(parents=True, exist_ok=True)
                        shutil.move(str(src_dir / n), str(dst / n))
            r.paths = {k: str(dst / Path(v).name) for k, v in r.paths.items()}
            r.parameters = {
                k: (redact(v) if isinstance(v, str) else v) for k, v in r.parameters.items()
            }
        for market in landed - {"ALL"}:  # the scorecard and alerts the landed reports show
            for n in _MARKET_FILES:
                if (tmp / market / n).is_file():
                    os.replace(tmp / market / n, final / market / n)
        jobs = dict(old_jobs)
        for r in results:
            entry = {**asdict(r), "run_id": run_id, "finished_at": finished_at}
            prev = old_jobs.get((r.market, r.notebook))
            if r.status != "ok" and prev:
                good = prev if prev.get("status") == "ok" else prev.get("last_good")
                if good:
                    entry["last_good"] = {
                        k: good.get(k) for k in ("run_id", "finished_at", "paths")
                    }
            jobs[(r.market, r.notebook)] = entry
        markets = list(dict.fromkeys([*previous.get("markets", []), *codes]))
        notebooks = [k for k in NOTEBOOKS if k in {*previous.get("notebooks", []), *keys}]
        this_run = {
            "run_id": run_id,
            "finished_at": finished_at,
            "qualitylab_version": __version__,
            "data": redact(data),
            "data_hash": data_fingerprint(data),
            "markets": list(codes),
            "notebooks": list(keys),
            "portfolio": portfolio,
            "validation": {"rows": report.rows, "quarantined": report.quarantined},
        }
        runs = list(previous.get("runs") or [])
        if previous and not runs:  # a manifest written before runs were merged
            runs = [
                {k: previous.get(k) for k in this_run if k in previous}
                | {"portfolio": ("ALL", "portfolio") in old_jobs}
            ]
        manifest = {
            **this_run,
            "as_of": label,
            "markets": markets,
            "notebooks": notebooks,
            "runs": [*runs, this_run],
            "jobs": sorted(
                jobs.values(), key=lambda j: _job_order(j["market"], j["notebook"], markets)
            ),
        }
        path = final / "manifest.json"
        _write_atomic(path, json.dumps(manifest, indent=2, default=str))
        for market in {j["market"] for j in manifest["jobs"]}:
            folder = final / ("portfolio" if market == "ALL" else market)
            if folder.is_dir():
                _write_atomic(
                    folder / "manifest.json",
                    json.dumps(
                        {
                            "as_of": label,
                            "market": market,
                            "jobs": [j for j in manifest["jobs"] if j["market"] == market],
                        },
                        indent=2,
                        default=str,
                    ),
                )
        if tracked:  # the alert store: one atomic write, after every report has landed
            rows = [r for r in tracked.values() if len(r)]
            alertstore.commit(
                out_root,
                pd.concat(rows, ignore_index=True) if rows else next(iter(tracked.values())),
                runs=[(code, label) for code in tracked],  # a rerun that finds nothing too
            )
        history = _append_history(out_root, run_id, label, caches)
        _write_atomic(final / "index.html", _hub(label, manifest, history, out_root))
        _write_atomic(out_root / "index.html", _runs_index(out_root))
        if logfile is not None and logfile.is_file():
            with open(final / "run.log", "a", encoding="utf-8") as fh:
                fh.write(logfile.read_text(encoding="utf-8"))
    return path


def _day_alerts(out_root: Path, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's rows of a report date (labels in force now applied) and the labels.

    An alert labelled ``false_alarm``/``expected`` after the run that wrote it
    shows ``muted`` at once.
    """
    from qualitylab.detection import alertstore

    store = alertstore.read_store(out_root)
    labels = alertstore.read_labels(out_root)
    if store.empty:
        return store, labels
    day = store[(store["as_of"].astype(str).str[:10] == label) & (store["kind"] == "daily")]
    current = alertstore.latest_labels(labels).set_index("alert_id")
    if len(day) and len(current):
        now = day["alert_id"].map(current["label"])
        note = day["alert_id"].map(current["note"])
        day = day.assign(
            label=now.where(now.notna(), day["label"]),
            label_note=note.where(now.notna(), day["label_note"]),
        )
        muting = day["label"].isin(alertstore.MUTING_LABELS) & day["status"].isin(
            ["new", "ongoing"]
        )
        day = day.assign(status=day["status"].where(~muting, "muted"))
    return day, labels


def _findings(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``alert_id`` → the deep dive's sentence, from every notebook of the date."""
    out: dict[str, str] = {}
    for job in manifest.get("jobs", []):
        for f in job.get("findings") or []:
            if f.get("alert_id") and f.get("sentence"):
                out.setdefault(str(f["alert_id"]), str(f["sentence"]))
    return out


def _alerts_html(day: pd.DataFrame, findings: Mapping[str, str], final: Path) -> str:
    """The hub's alert sections: new since the last run, ongoing, resolved; muted counted."""
    e = html.escape
    if day is None or day.empty:
        return (
            '<h2 id="new">New since the last run</h2><p>No alerts are recorded for this '
            "date (no scan, or nothing found).</p>"
        )
    role = day["incident_role"] if "incident_role" in day.columns else pd.Series("", day.index)
    leads = day[~role.eq("child")]
    kids = day[role.eq("child")]
    sev = {"high": 0, "medium": 1, "low": 2}

    def where(a: Any) -> str:
        return "market" if a.dimension == "market" else f"{a.dimension} {a.segment}"

    def item(a: Any) -> str:
        children = kids[kids["incident_id"] == a.alert_id] if "incident_id" in kids else kids[:0]
        sentence = findings.get(str(a.alert_id), "") or str(getattr(a, "incident_cause", "") or "")
        deep = (
            f' · <a href="{e(a.market)}/rca.stakeholder.html">deep dive</a>'
            if (final / str(a.market) / "rca.stakeholder.html").is_file()
            else ""
        )
        folded = ""
        if len(children):
            lis = "".join(
                f"<li>{e(str(c.severity))} {e(str(c.metric))} {e(str(c.direction))} in "
                f"{e(where(c))} <code>{e(str(c.alert_id))}</code></li>"
                for c in children.itertuples()
            )
            folded = (
                f"<details><summary>{len(children)} related alert"
                f"{'s' if len(children) > 1 else ''} (same cause)</summary><ul>{lis}</ul></details>"
            )
        given = "" if a.label is None or pd.isna(a.label) else str(a.label)
        label = f" <small>label: {e(given)}</small>" if given else ""
        return (
            f'<li class="{e(str(a.severity))}"><strong>{e(str(a.market))}</strong> '
            f"{e(str(a.severity))} {e(str(a.metric))} {e(str(a.direction))} in {e(where(a))}, "
            f"{e(str(a.start_date)[:10])} to {e(str(a.end_date)[:10])} "
            f"<code>{e(str(a.alert_id))}</code>{label}{deep}"
            + (f'<br><span class="why">{e(sentence)}</span>' if sentence else "")
            + f"{folded}</li>"
        )

    parts = []
    for status, title, anchor in (
        ("new", "New since the last run", "new"),
        ("ongoing", "Ongoing", "ongoing"),
        ("resolved", "Resolved", "resolved"),
    ):
        rows = leads[leads["status"] == status]
        rows = rows.assign(_o=rows["severity"].map(sev)).sort_values(["market", "_o"])
        body = (
            '<ul class="alerts">' + "".join(item(a) for a in rows.itertuples()) + "</ul>"
            if len(rows)
            else "<p>None.</p>"
        )
        parts.append(f'<h2 id="{anchor}">{title} ({len(rows)})</h2>{body}')
    muted = leads[leads["status"] == "muted"]
    if len(muted):
        parts.append(
            f"<p><small>{len(muted)} muted alert{'s' if len(muted) > 1 else ''} (labelled "
            "false alarm or expected) left out: "
            + ", ".join(f"<code>{e(str(a))}</code>" for a in muted["alert_id"])
            + "</small></p>"
        )
    return "\n".join(parts)


def _precision_html(out_root: Path) -> str:
    """Alert precision per metric and detector from the labels (Wilson 95% intervals)."""
    from qualitylab.detection import alertstore

    store = alertstore.read_store(out_root)
    labels = alertstore.read_labels(out_root)
    prec = alertstore.alert_precision(store, labels) if len(labels) else None
    if prec is None or prec.empty:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(str(r.by))}</td><td>{e(str(r.group))}</td><td>{int(r.n)}</td>"
        f"<td>{int(r.confirmed)}</td><td>{_fmt('p', r.precision)} "
        f"<small>({_fmt('p', r.ci_low)}–{_fmt('p', r.ci_high)})</small></td></tr>"
        for r in prec.itertuples()
    )
    return (
        '<h2 id="precision">Alert precision</h2><p>Share of labelled alerts that people '
        "confirmed, with a Wilson 95% interval.</p><table><thead><tr><th>by</th><th></th>"
        f"<th>labelled</th><th>confirmed</th><th>precision</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
    )


def _write_digest(final: Path, out_root: Path, label: str, run_id: str, codes: Sequence[str]):
    """Write ``digest.md`` and ``digest.html`` for the report date; return the digest."""
    from qualitylab.reporting.digest import build_digest, turned_red

    day, _ = _day_alerts(out_root, label)
    manifest = read_manifest(final)
    path = out_root / "history.parquet"
    history = pd.read_parquet(path) if path.is_file() else None
    digest = build_digest(
        label,
        day,
        turned_red(history, label),
        run_id=run_id,
        findings=_findings(manifest),
        hub="index.html",
        markets=list(codes),
    )
    _write_atomic(final / "digest.md", digest.markdown)
    _write_atomic(final / "digest.html", digest.html)
    return digest


def notify_webhook(url: str, digest: Any) -> str | None:
    """POST the digest to ``url``; a warning (never an exception) when that fails."""
    from qualitylab.reporting.digest import notify

    warning = notify(url, digest)
    return redact(warning) if warning else None


def _append_history(
    out_root: Path, run_id: str, label: str, caches: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """Record each market's headline KPIs and alert count (``history.parquet``).

    One row set per market and report date: a later run for the same date and
    market replaces the earlier rows (scheduled tasks for one date run the
    same data again; a rerun with newer data corrects them).
    """
    rows = []
    for code, cache in caches.items():
        if "scorecard" not in cache:
            continue
        sc = cache["scorecard"]
        for r in sc[sc["metric"].isin(HUB_METRICS)].itertuples():
            rows.append(
                {
                    "run_id": run_id,
                    "as_of": label,
                    "market": code,
                    "metric": r.metric,
                    "value": r.value,
                    "ci_low": r.ci_low,
                    "ci_high": r.ci_high,
                    "status": r.status,
                    "alerts": len(cache["alerts"]),
                }
            )
    path = out_root / "history.parquet"
    new = pd.DataFrame(rows)
    old = pd.read_parquet(path) if path.exists() else None
    if old is not None and len(new):
        replaced = (old["as_of"].astype(str) == label) & old["market"].isin(set(new["market"]))
        old = old[~replaced]
    hist = pd.concat([old, new], ignore_index=True) if old is not None else new
    if len(hist):
        hist = hist.sort_values(["as_of", "market"], kind="stable", ignore_index=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    hist.to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return hist


def _fmt(metric: str, value: float) -> str:
    if pd.isna(value):
        return "–"
    if metric == "volume":
        return f"{int(value):,}"
    return f"{100 * value:.1f}%"


def _hub(
    label: str, manifest: Mapping[str, Any], history: pd.DataFrame | None, out_root: Path
) -> str:
    """The report date's hub page: every market × notebook in the folder, from any run."""
    e = html.escape
    codes = [c for c in manifest.get("markets", []) if c != "ALL"]
    keys = list(manifest.get("notebooks", []))
    jobs: list[dict[str, Any]] = [dict(j) for j in manifest.get("jobs", [])]
    cell = {(j["market"], j["notebook"]): j for j in jobs}
    final = out_root / label
    runs = manifest.get("runs") or [manifest]
    run_id = str(manifest.get("run_id", ""))
    head = "".join(f"<th>{e(TITLES[k])}</th>" for k in keys)
    kpi_head = "".join(f"<th>{e(m)}</th>" for m in HUB_METRICS)
    day, _ = _day_alerts(out_root, label)
    open_alerts = (
        day[day["status"].isin(["new", "ongoing"])].groupby("market").size()
        if len(day)
        else pd.Series(dtype=int)
    )
    now = (
        history[history["as_of"].astype(str) == label]
        if history is not None and "as_of" in history.columns
        else None
    )
    rows = []
    for code in codes:
        tds = []
        for k in keys:
            j = cell.get((code, k))
            if j is None:
                tds.append("<td>–</td>")
                continue
            notes = j.get("notes") or []
            produced = f"run {j.get('run_id', '')}, {str(j.get('finished_at', ''))[:16]}"
            if j.get("status") == "ok":
                short = (
                    f'<br><small class="short" title="{e(_notes_title(notes))}">'
                    f"{len(notes)} section{'s' if len(notes) > 1 else ''} short of data"
                    "</small>"
                    if notes
                    else ""
                )
                tds.append(
                    f'<td class="ok" title="{e(produced)}">ok {float(j.get("duration", 0)):.0f}s<br>'
                    f'<a href="{e(code)}/{e(k)}.stakeholder.html">report</a> · '
                    f'<a href="{e(code)}/{e(k)}.html">full</a>{short}</td>'
                )
            else:
                err = j.get("error") or {}
                where = f"cell {err.get('cell_index')}" if err.get("cell_index") is not None else ""
                good = j.get("last_good") or {}
                previous = final / code / f"{k}.stakeholder.html"
                kept = (
                    f'<br><a href="{e(code)}/{e(k)}.stakeholder.html">last good report</a>'
                    + (f" <small>(run {e(str(good.get('run_id', '')))})</small>" if good else "")
                    if previous.is_file()
                    else ""
                )
                tds.append(
                    f'<td class="failed" title="{e(produced)}">{e(str(j.get("status")))} '
                    f"{e(where)}<br>"
                    f"<small>{e(str(err.get('ename', '')))}: "
                    f"{e(str(err.get('evalue', ''))[:160])}</small>{kept}</td>"
                )
        kpis = []
        mine = now[now["market"] == code] if now is not None and len(now) else None
        for metric in HUB_METRICS:
            row = mine[mine["metric"] == metric] if mine is not None else None
            if row is None or row.empty:
                kpis.append("<td>–</td>")
                continue
            r0 = row.iloc[-1]
            trend = ""
            if history is not None and len(history):
                past = history[(history.market == code) & (history.metric == metric)].tail(6)
                if len(past) > 1:
                    trend = " → ".join(_fmt(metric, v) for v in past["value"])
            kpis.append(
                f'<td class="{e(str(r0.status))}" title="{e(trend)}">{e(_fmt(metric, r0.value))}'
                f"<br><small>{e(str(r0.status))}</small></td>"
            )
        if len(day):  # open alerts from the store: muted and resolved ones left out
            n_alerts: Any = int(open_alerts.get(code, 0))
        else:
            n_alerts = int(mine["alerts"].iloc[-1]) if mine is not None and len(mine) else "–"
        alerts_link = (
            f'<a href="{e(code)}/alerts.csv">{n_alerts}</a>'
            if (final / code / "alerts.csv").is_file()
            else str(n_alerts)
        )
        rows.append(
            f"<tr><th>{e(code)}</th>{''.join(tds)}{''.join(kpis)}<td>{alerts_link}</td></tr>"
        )
    port = cell.get(("ALL", "portfolio"))
    port_html = ""
    if port is not None:
        port_html = (
            f'<p>Portfolio: <a href="portfolio/portfolio.stakeholder.html">report</a> · '
            f'<a href="portfolio/portfolio.html">full</a> (ok, run {e(str(port.get("run_id")))})</p>'
            if port.get("status") == "ok"
            else f"<p>Portfolio: {e(str(port.get('status')))} — "
            f"{e(str((port.get('error') or {}).get('evalue', '')))}</p>"
        )
    failed = [j for j in jobs if j.get("status") != "ok"]
    noted = [j for j in jobs if j.get("notes")]
    notes_html = ""
    if noted:
        items = "".join(
            f"<tr><td>{e(j['market'])}</td><td>{e(TITLES.get(j['notebook'], j['notebook']))}</td>"
            f"<td>{e(str(n.get('section', '')))}</td><td>{e(str(n.get('reason', '')))}</td></tr>"
            for j in noted
            for n in j["notes"]
        )
        notes_html = (
            '<h2 id="short-of-data">Sections with too little data</h2>\n'
            f"<p>{sum(len(j['notes']) for j in noted)} sections in {len(noted)} notebooks show a "
            "note instead of a result: the data for them is absent or too short. "
            "The notebooks themselves ran.</p>\n"
            '<table class="notes"><thead><tr><th>market</th><th>notebook</th><th>section</th>'
            f"<th>why</th></tr></thead><tbody>{items}</tbody></table>"
        )
    runs_text = (
        f"Run {e(run_id)}"
        if len(runs) <= 1
        else f"{len(runs)} runs for this date, the latest {e(run_id)}"
    )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>qualitylab reports {e(label)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ddd; padding: 6px 10px; vertical-align: top; }}
td.ok {{ background: #eef8f4; }} td.failed, td.timeout {{ background: #fbeae5; }}
td.green {{ color: #009E73; }} td.amber {{ color: #B07800; }} td.red {{ color: #D55E00; font-weight: bold; }}
small.short {{ color: #8a5a00; }}
ul.alerts li {{ margin-bottom: 6px; }} li.high strong {{ color: #D55E00; }} span.why {{ color: #444; }}
</style></head><body>
<h1>qualitylab reports — {e(label)}</h1>
<p>{runs_text}: {len(jobs)} notebooks, {len(failed)} failed, {len(noted)} with sections short of
data. <a href="manifest.json">manifest</a> ·
<a href="run.log">log</a> · <a href="../index.html">previous runs</a></p>
{port_html}
<p><a href="digest.html">digest</a> (also <a href="digest.md">digest.md</a>, to paste into chat)</p>
{_alerts_html(day, _findings(manifest), final)}
<h2 id="reports">Reports</h2>
<table><thead><tr><th>market</th>{head}{kpi_head}<th>open alerts</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p><small>KPI cells: value for the last four full weeks, status against target (hover for the
trend across runs).</small></p>
{notes_html}
{_precision_html(out_root)}
</body></html>"""


def _notes_title(notes: Sequence[Mapping[str, Any]]) -> str:
    """``"section: reason"`` per note, one a line (a cell's hover text)."""
    return "\n".join(f"{n.get('section', '')}: {n.get('reason', '')}" for n in notes)


def _runs_index(out_root: Path) -> str:
    e = html.escape
    runs = sorted(
        (
            p
            for p in out_root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").exists()
        ),
        reverse=True,
    )
    items = []
    for p in runs:
        with contextlib.suppress(Exception):
            man = json.loads((p / "manifest.json").read_text())
            failed = sum(j["status"] != "ok" for j in man["jobs"])
            items.append(
                f'<li><a href="{e(p.name)}/index.html">{e(p.name)}</a> — run {e(man["run_id"])}, '
                f"{len(man['jobs'])} notebooks, {failed} failed</li>"
            )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>qualitylab runs</title>'
        '</head><body style="font-family: Helvetica, Arial, sans-serif"><h1>qualitylab runs</h1><ul>'
        + "".join(items)
        + "</ul></body></html>"
    )
