"""Scan a market's alerts in a helper process while a notebook does other work.

A notebook opens its data, then spends most of its time on scorecards and
charts before it shows the period's alerts. The alert scan is single-threaded
Python and engine work that does not depend on any of that, so
:func:`qualitylab.report.context` starts it here, in a second Python process
that opens the same source with the same parameters, and
:func:`qualitylab.report.alerts` takes its result (waiting for it if needed).
If the helper failed, the notebook scans in-process as before: the alerts are
the same either way, only the wall time differs.

:func:`market_summaries` does the same for the portfolio: one helper process
per market (a few at a time) computes its scorecards and alerts.

Set ``QUALITYLAB_PREFETCH=0`` to turn it off.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["AlertJob", "enabled", "main", "market_summaries", "start"]


class _Helper:
    """A helper process running :func:`main` with ``args``.

    On Linux it is forked from the main thread after the modules it needs are
    imported, so it starts in milliseconds instead of re-importing the stack
    (~3 s); elsewhere it is a fresh interpreter. Its output goes to /dev/null.
    """

    def __init__(self, args: list[str]) -> None:
        self._fork = None
        self._popen: subprocess.Popen | None = None
        if _fork_context() is not None:
            import qualitylab.measure.scorecard  # noqa: F401 - imported before the fork, not in it

            with warnings.catch_warnings():
                # Python 3.12+ warns on any fork of a multi-threaded process, and a kernel
                # is one: forking is on purpose (see above), and a helper that fails only
                # means the notebook scans in-process
                warnings.filterwarnings(
                    "ignore",
                    message=r"This process \(pid=\d+\) is multi-threaded, use of fork\(\)",
                    category=DeprecationWarning,
                )
                self._fork = _fork_context().Process(target=_child, args=(args,), daemon=True)
                self._fork.start()
        else:
            self._popen = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from qualitylab.reporting.prefetch import main; main()",
                    *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

    def poll(self) -> int | None:
        """Exit code, or None while it runs."""
        if self._fork is not None:
            return self._fork.exitcode
        assert self._popen is not None
        return self._popen.poll()

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for it to exit."""
        if self._fork is not None:
            self._fork.join(timeout)
            return
        assert self._popen is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=timeout)

    def kill(self) -> None:
        """Stop it if it still runs."""
        if self.poll() is None:
            if self._fork is not None:
                self._fork.kill()
            else:
                assert self._popen is not None
                self._popen.kill()
            self.wait(5)


def _fork_context() -> Any:
    import multiprocessing

    if sys.platform != "linux" or os.environ.get("QUALITYLAB_PREFETCH_SPAWN"):
        return None
    return multiprocessing.get_context("fork")


def _child(args: list[str]) -> None:
    """Forked helper: silence its output, run :func:`main`, exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the child
    main(args)


def _temp_output(prefix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".pkl")
    os.close(fd)
    out = Path(name)
    out.unlink()  # the helper writes it when done
    return out


def _load(out: Path) -> Any:
    with out.open("rb") as fh:
        return pickle.load(fh)  # noqa: S301 - our own helper wrote it


@dataclass
class AlertJob:
    """A running (or finished) alert scan in a helper process."""

    process: _Helper
    out: Path

    def ready(self) -> bool:
        """Whether the helper finished successfully."""
        return self.process.poll() == 0 and self.out.exists()

    def result(self, timeout: float = 300.0) -> pd.DataFrame | None:
        """The alerts, waiting up to ``timeout`` seconds for the helper.

        A running helper is ahead of a scan started now, so it is waited for.
        Returns None if it failed or timed out; the helper is stopped either way.
        """
        try:
            self.process.wait(timeout)
            if self.ready():
                frame = _load(self.out)
                return frame if isinstance(frame, pd.DataFrame) else None
            return None
        except Exception:  # a torn or unreadable result: scan in-process instead
            return None
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the helper if it still runs and remove its output."""
        self.process.kill()
        self.out.unlink(missing_ok=True)

    def __del__(self) -> None:  # the notebook never asked: do not leave it running
        with contextlib.suppress(Exception):
            self.stop()


def enabled() -> bool:
    """Prefetch unless ``QUALITYLAB_PREFETCH=0`` or the machine has one core.

    Examples
    --------
    >>> isinstance(enabled(), bool)
    True
    """
    if os.environ.get("QUALITYLAB_PREFETCH", "1").strip().lower() in ("0", "off", "false", "no"):
        return False
    return (os.cpu_count() or 1) > 1


def start(
    data: str, parameters: str | None, market: str, start: date, end: date
) -> AlertJob | None:
    """Start scanning ``market`` over ``start..end`` in a helper process.

    ``data`` must be a source another process can open (a path or URL);
    returns None when the helper cannot be started.
    """
    out = _temp_output("ql-alerts-")
    args = ["alerts", data, parameters or "", market, start.isoformat(), end.isoformat(), str(out)]
    try:
        proc = _Helper(args)
    except OSError:
        return None
    return AlertJob(proc, out)


def market_summaries(
    data: str,
    parameters: str | None,
    markets: Sequence[str],
    *,
    as_of: str | date | None,
    weeks: int,
    workers: int | None = None,
    timeout: float = 600.0,
) -> dict[str, dict[str, Any] | None]:
    """Each market's scorecards and alerts, computed in parallel helper processes.

    What :func:`qualitylab.report.portfolio` needs per market (the market and
    per-vendor scorecards for the period and its alerts), one helper process
    per market and task, ``workers`` at a time (default: the cores, at most 4, since
    each helper holds its own engine). A market whose helper failed or ran
    past ``timeout`` seconds maps to None, for the caller to compute in-process.
    """
    limit = max(1, workers or min(4, os.cpu_count() or 1))
    day = "" if as_of is None else str(as_of)
    # two jobs per market, the longer (the alert scan) first, so the cores stay busy
    queue = [(kind, m) for kind in ("market-alerts", "market-scorecards") for m in markets]
    parts: dict[tuple[str, str], dict[str, Any]] = {}
    running: dict[tuple[str, str], tuple[_Helper, Path]] = {}
    deadline = time.monotonic() + timeout
    try:
        while queue or running:
            while queue and len(running) < limit:  # launched from this (main) thread
                job = queue.pop(0)
                out = _temp_output("ql-market-")
                args = [job[0], data, parameters or "", job[1], day, str(weeks), str(out)]
                with contextlib.suppress(OSError):
                    running[job] = (_Helper(args), out)
            for job, (helper, out) in list(running.items()):
                code = helper.poll()
                if code is None and time.monotonic() < deadline:
                    continue
                with contextlib.suppress(Exception):
                    if code == 0 and out.exists():
                        got = _load(out)
                        if isinstance(got, dict):
                            parts[job] = got
                helper.kill()
                out.unlink(missing_ok=True)
                del running[job]
            if running:
                time.sleep(0.05)
    finally:
        for helper, out in running.values():
            helper.kill()
            out.unlink(missing_ok=True)
    results: dict[str, dict[str, Any] | None] = {}
    for m in markets:
        a, b = parts.get(("market-alerts", m)), parts.get(("market-scorecards", m))
        results[m] = {**b, **a} if a is not None and b is not None else None
    return results


def main(argv: list[str] | None = None) -> None:
    """Helper process: compute what was asked and pickle it to the output path.

    ``alerts DATA PARAMETERS MARKET START END OUT``: the alerts of a period.
    ``market-alerts DATA PARAMETERS MARKET AS_OF WEEKS OUT`` and
    ``market-scorecards ...``: a market's alerts, or its market and per-vendor
    scorecards and ``as_of``, for :func:`market_summaries`.
    """
    import warnings

    from qualitylab.data.sources import open_dataset
    from qualitylab.measure.metrics import Period
    from qualitylab.measure.scorecard import scorecard
    from qualitylab.reporting.alertscan import current_alerts, period_alerts, scan_period
    from qualitylab.reporting.context import ReportContext, baseline_of, open_context

    kind, data, parameters, market, a, b, out = argv or sys.argv[1:]
    # The helper's stderr is /dev/null: its warnings (the same the notebook's own scan
    # records) are recorded and dropped, and "always" keeps a parent's "error" filter,
    # inherited by the fork, from failing the helper over one.
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        if kind == "alerts":
            ds = open_dataset(data, parameters=parameters or None)
            period = Period(date.fromisoformat(a), date.fromisoformat(b))
            mp = ds.params.market(market)
            ctx = ReportContext(ds, market, mp, period, baseline_of(period), period.end)
            result: Any = scan_period(ds, ctx)
        elif kind == "market-alerts":
            ctx = open_context(data, market, as_of=a or None, weeks=int(b), parameters=parameters)
            result = {"alerts": current_alerts(period_alerts(ctx), ctx)}
        else:
            ctx = open_context(data, market, as_of=a or None, weeks=int(b), parameters=parameters)
            result = {
                "as_of": ctx.as_of,
                "by_market": scorecard(ctx.ds, market, start=ctx.start, end=ctx.end),
                "by_vendor": scorecard(ctx.ds, market, by=["vendor"], start=ctx.start, end=ctx.end),
            }
    tmp = Path(f"{out}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(result, fh)
    os.replace(tmp, out)
