"""Landing a run in its reports folder: locks, the notebooks that succeeded, manifest, history, digest.

A run adds to its report date's folder: each notebook that succeeded replaces
only its own files, a failed one keeps the last good copy, and the date's
manifest, the history, the alert store and the hub are merged under a lock
(:func:`finish_run`). Each market (and the portfolio) also has a lock for the
whole run (:func:`run_locks`), so two runs of one market take turns.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.runs.runner.hub import day_alerts, hub_page, manifest_findings, runs_index
from qualitylab.runs.runner.jobs import HUB_METRICS, NOTEBOOKS, JobResult, ReportsBusy, log, redact
from qualitylab.version import __version__


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
def run_locks(out_root: Path, names: Sequence[str], run_id: str, wait: float) -> Iterator[None]:
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


def remove_stale_tmp(out_root: Path, older_than: float = 24 * 3600) -> None:
    """Remove work folders of runs that died (killed) more than a day ago."""
    cutoff = time.time() - older_than
    for p in out_root.glob(".tmp-*"):
        with contextlib.suppress(OSError):
            if p.is_dir() and p.stat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)


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


def finish_run(
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
        _write_atomic(final / "index.html", hub_page(label, manifest, history, out_root))
        _write_atomic(out_root / "index.html", runs_index(out_root))
        if logfile is not None and logfile.is_file():
            with open(final / "run.log", "a", encoding="utf-8") as fh:
                fh.write(logfile.read_text(encoding="utf-8"))
    return path


def write_digest(final: Path, out_root: Path, label: str, run_id: str, codes: Sequence[str]):
    """Write ``digest.md`` and ``digest.html`` for the report date; return the digest."""
    from qualitylab.reporting.digest import build_digest, turned_red

    day, _ = day_alerts(out_root, label)
    manifest = read_manifest(final)
    path = out_root / "history.parquet"
    history = pd.read_parquet(path) if path.is_file() else None
    digest = build_digest(
        label,
        day,
        turned_red(history, label),
        run_id=run_id,
        findings=manifest_findings(manifest),
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
