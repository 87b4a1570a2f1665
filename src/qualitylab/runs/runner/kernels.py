"""Notebook kernels forked from a warm process (Linux; ``QUALITYLAB_FORK_KERNELS=0`` turns it off).

Each worker starts a kernel server (:func:`serve_kernels`) that imports the
notebooks' modules once and forks one fresh kernel per notebook, which saves
~2.5 s of CPU per notebook; :func:`forking_kernel_manager` is the
jupyter_client kernel manager that asks it, and falls back to starting the
kernel the usual way.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from qualitylab.runs.runner.jobs import log

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
    # loaded on a notebook's first query and first chart otherwise (~0.4 s a
    # kernel): the DuckDB backend with sqlglot's dialects, and what altair and
    # pandas reach for when a frame becomes chart data or text
    "duckdb",
    "ibis.backends.duckdb",
    "ibis.backends.sql.compilers",
    "narwhals._pandas_like.dataframe",
    "narwhals._interchange.dataframe",
    "pyarrow.pandas_compat",
    "pandas.core.methods.to_dict",
    "pandas.io.formats.string",
    # what ipykernel and IPython load as a kernel starts: the debugger (debugpy and
    # pydevd, ~0.25 s), history's sqlite3, the inspector and completer helpers
    "ipykernel.debugger",
    "IPython.core.debugger",
    "IPython.core.completerlib",
    "IPython.core.oinspect",
    "IPython.core.logger",
    "IPython.extensions.storemagic",
    "tornado.platform.asyncio",
    "sqlite3",
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


def serve_kernels() -> None:
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

    # No warning filter: these imports warn nothing, and the filters the libraries
    # set as they load stay in place for the kernels, as in a kernel started the
    # usual way.
    # pydevd (the kernel debugger's engine) warns on import that frozen modules
    # may hide breakpoints; nobody debugs the server, and each kernel gets its
    # own environment from the request
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for name in (*_WARM_IMPORTS, *_LAYER_MODULES):
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


class KernelServer:
    """The worker's handle on its kernel server (started on first use)."""

    _instance: KernelServer | None = None
    _failed = False

    def __init__(self) -> None:
        import subprocess

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from qualitylab.runs.runner.kernels import serve_kernels; serve_kernels()",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self.ready = False  # until the server says it has imported everything
        # a pool worker ends through multiprocessing's exit, which skips atexit
        from multiprocessing.util import Finalize

        Finalize(self, type(self).close, exitpriority=10)

    def wait_ready(self) -> None:
        """Block until the server has imported the kernels' modules."""
        if self.ready:
            return
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline() or b"{}").get("ready") is not True:
            self.proc.kill()
            raise RuntimeError("the kernel server did not start")
        self.ready = True

    @classmethod
    def start_soon(cls) -> None:
        """Start this process's server without waiting for it (a pool worker's first act).

        Its imports (~2 s) then run while the worker does other work, e.g. a
        market's cache, instead of before its first notebook.
        """
        if cls._failed or not fork_kernels_enabled() or cls._instance is not None:
            return
        try:
            cls._instance = cls()
        except Exception as exc:
            log.warning("kernels start the usual way: %s", exc)
            cls._failed = True

    @classmethod
    def get(cls) -> KernelServer | None:
        """This process's server, or None when forking is off or the server failed."""
        if cls._failed or not fork_kernels_enabled():
            return None
        if cls._instance is None or cls._instance.proc.poll() is not None:
            cls._instance = None
            cls.start_soon()
        if cls._instance is not None:
            try:
                cls._instance.wait_ready()
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


def quick_ready_client() -> Any:
    """An async kernel client that sees a kernel ready ~0.2 s sooner.

    jupyter_client's ``wait_for_ready`` sends ``kernel_info``, and once the
    reply is in, waits up to 0.2 s for a message on IOPub (the proof that the
    IOPub subscription is connected; messages published before it are lost).
    A new kernel's first status messages usually are lost, so that wait runs
    out and the request is sent again, and a last 0.2 s of IOPub silence is
    waited for at the end: ~0.2-0.4 s a kernel, spent idle. This client makes
    the same check with 20 ms waits, resending ``kernel_info`` until an IOPub
    message arrives, so it proves the same thing. The stray replies and
    statuses of the extra requests carry their own parent ids, which the
    notebook client ignores.
    """
    from queue import Empty

    from jupyter_client.asynchronous import AsyncKernelClient

    class QuickReadyClient(AsyncKernelClient):
        async def wait_for_ready(self, timeout: float | None = None) -> None:
            deadline = time.time() + (float("inf") if timeout is None else timeout)
            while True:
                self.kernel_info()
                try:
                    msg = await self.shell_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    if msg["msg_type"] == "kernel_info_reply":
                        try:
                            await self.iopub_channel.get_msg(timeout=0.02)
                        except Empty:
                            pass
                        else:
                            self._handle_kernel_info_reply(msg)
                            break
                if not await self._async_is_alive():
                    raise RuntimeError("Kernel died before replying to kernel_info")
                if time.time() > deadline:
                    raise RuntimeError(f"Kernel didn't respond in {timeout} seconds")
            while True:  # what is left on IOPub from the requests above
                try:
                    await self.iopub_channel.get_msg(timeout=0.02)
                except Empty:
                    break

    return QuickReadyClient


def forking_kernel_manager() -> Any:
    """A jupyter_client KernelManager that forks ``ipykernel_launcher`` kernels from the server.

    Any other kernel command, or a server that cannot be reached, starts the
    kernel the usual way.
    """
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Type

    class ForkingKernelManager(AsyncKernelManager):
        client_factory = Type(
            klass="jupyter_client.asynchronous.AsyncKernelClient",
            default_value=quick_ready_client(),
        )

        async def _async_finish_shutdown(self, *args: Any, **kw: Any) -> None:
            # a kernel exits a few ms after its shutdown reply: look every 10 ms,
            # not every 100 ms (jupyter_client's default)
            kw["pollinterval"] = 0.01
            await super()._async_finish_shutdown(*args, **kw)

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            server = KernelServer.get()
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
                KernelServer._failed = True
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            prov.process = proc  # type: ignore[attr-defined]
            prov.pid = proc.pid  # type: ignore[attr-defined]
            prov.pgid = proc.pid  # type: ignore[attr-defined]
            prov.cwd = kw.get("cwd") or os.getcwd()  # type: ignore[attr-defined]
            self._reconcile_connection_info(prov.connection_info)

    return ForkingKernelManager
