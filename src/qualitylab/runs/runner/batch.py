"""The run: :func:`run` checks parameters, data and notebooks, then prepares, executes and lands.

Validation comes before any kernel starts (unknown markets, notebooks and
notebook parameters stop the run at once); then the market caches
(:mod:`~qualitylab.runs.runner.caches`), the jobs
(:mod:`~qualitylab.runs.runner.execute`) and the landing of what succeeded
(:mod:`~qualitylab.runs.runner.landing`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qualitylab.data.params import Parameters, load_parameters
from qualitylab.errors import DataContractError, ParameterError, QualityLabError
from qualitylab.runs.runner.caches import (
    build_caches,
    cache_moderators,
    combine_caches,
    track_alerts,
)
from qualitylab.runs.runner.execute import run_jobs, worker_pool
from qualitylab.runs.runner.jobs import (
    NOTEBOOKS,
    PORTFOLIO,
    RunSummary,
    find_notebooks_dir,
    log,
    redact,
)
from qualitylab.runs.runner.landing import (
    finish_run,
    notify_webhook,
    remove_stale_tmp,
    run_locks,
    write_digest,
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
    locks = run_locks(out_root, [*codes, *(["ALL"] if portfolio else [])], run_id, wait)
    locks.__enter__()  # released in the finally below, also when a notebook fails
    remove_stale_tmp(out_root)
    tmp = out_root / f".tmp-{label}-{run_id}"
    tmp.mkdir(parents=True, exist_ok=True)
    logfile = tmp / "run.log"
    handler = logging.FileHandler(logfile, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    show = sys.stderr.isatty() and not os.environ.get("CI") if progress is None else progress
    cleanup = contextlib.ExitStack()  # the worker pool, shut down before the files go
    pool = None
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
        if jobs > 1:  # one set of workers for the caches and the notebooks
            pool = cleanup.enter_context(worker_pool(jobs))
        caches = build_caches(
            data, codes, cache_dir, str(params.root), jobs, say, as_of, rebaseline=rebase, pool=pool
        )
        tracked = track_alerts(caches, store, labels, run_id, label)
        job_specs = []
        for code in codes:
            cache = caches[code]
            mdir = tmp / code
            mdir.mkdir(parents=True, exist_ok=True)
            if "error" not in cache:
                cache["scorecard"].to_csv(mdir / "scorecard.csv", index=False)
                from qualitylab.detection.detect import write_alerts

                write_alerts(cache["alerts"], mdir / "alerts.csv")
            mods = cache_moderators(cache.get("path"))
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
            combine_caches(
                [c["path"] for c in caches.values() if "path" in c], tmp / "cache" / "ALL.duckdb"
            )
        results = run_jobs(job_specs, jobs, show, pool=pool)
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
        manifest = finish_run(
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
        digest = write_digest(final, out_root, label, run_id, codes)
        if notify:
            warning = notify_webhook(notify, digest)
            if warning:
                log.warning(warning)
                say(f"warning: {warning}")
            else:
                say("digest posted to the webhook")
        return RunSummary(run_id, label, final, tuple(results), manifest)
    finally:
        cleanup.close()
        log.removeHandler(handler)
        handler.close()
        shutil.rmtree(tmp, ignore_errors=True)
        locks.__exit__(None, None, None)


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
