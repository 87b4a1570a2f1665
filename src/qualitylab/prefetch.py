"""Scan a market's alerts in a helper process while a notebook does other work.

A notebook opens its data, then spends most of its time on scorecards and
charts before it shows the period's alerts. The alert scan is single-threaded
Python and engine work that does not depend on any of that, so
:func:`qualitylab.report.context` starts it here, in a second Python process
that opens the same source with the same parameters, and
:func:`qualitylab.report.alerts` takes its result (waiting for it if needed).
If the helper failed, the notebook scans in-process as before: the alerts are
the same either way, only the wall time differs.

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
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

__all__ = ["AlertJob", "enabled", "start", "main"]


@dataclass
class AlertJob:
    """A running (or finished) alert scan in a helper process."""

    process: subprocess.Popen
    out: Path
    started: float = field(default_factory=time.monotonic)

    def ready(self) -> bool:
        """Whether the helper finished successfully."""
        return self.process.poll() == 0 and self.out.exists()

    def result(self, timeout: float = 300.0) -> pd.DataFrame | None:
        """The alerts, waiting up to ``timeout`` seconds for the helper.

        A running helper is ahead of a scan started now (it has already paid
        for its imports), so it is waited for. Returns None if it failed or
        timed out; the helper is stopped either way.
        """
        try:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=timeout)
            if self.ready():
                with self.out.open("rb") as fh:
                    frame = pickle.load(fh)  # noqa: S301 - our own child wrote it
                return frame if isinstance(frame, pd.DataFrame) else None
            return None
        except Exception:  # a torn or unreadable result: scan in-process instead
            return None
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop the helper if it still runs and remove its output."""
        if self.process.poll() is None:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)
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
    fd, name = tempfile.mkstemp(prefix="ql-alerts-", suffix=".pkl")
    os.close(fd)
    out = Path(name)
    out.unlink()  # the helper writes it when done
    args = [data, parameters or "", market, start.isoformat(), end.isoformat(), str(out)]
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from qualitylab.prefetch import main; main()", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None
    return AlertJob(proc, out)


def main(argv: list[str] | None = None) -> None:
    """Helper process: open the data, scan, pickle the alerts to the output path."""
    import warnings

    from qualitylab import report
    from qualitylab.metrics import Period
    from qualitylab.sources import open_dataset

    data, parameters, market, start_s, end_s, out = argv or sys.argv[1:]
    ds = open_dataset(data, parameters=parameters or None)
    period = Period(date.fromisoformat(start_s), date.fromisoformat(end_s))
    ctx = report.ReportContext(
        ds, market, ds.params.market(market), period, report.baseline_of(period), period.end
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = report.scan_period(ds, ctx)
    tmp = Path(f"{out}.{os.getpid()}.tmp")
    with tmp.open("wb") as fh:
        pickle.dump(frame, fh)
    os.replace(tmp, out)
