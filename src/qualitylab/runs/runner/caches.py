"""Per-market caches: each market's slice of the data, its scorecard and its alerts, in DuckDB.

:func:`build_market_cache` extracts one market once, so its notebooks (and the
portfolio, from the combined cache of :func:`combine_caches`) read a small
local file and reuse the scorecard and the alerts instead of scanning again;
:func:`build_caches` builds them ``jobs`` markets at a time. :func:`track_alerts`
gives the cached alerts their ids and statuses from the alert store.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing as mp
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.runs.runner.jobs import log, redact


def warning_summary(caught: Sequence[Any]) -> list[str]:
    """One line per distinct warning of ours, then one for the libraries' deprecations.

    The run records the warnings of a market's scorecard and scan (a notebook shows
    them where they matter). In the run's log, each distinct message of ours is one
    line with its count; the deprecation warnings third-party libraries raise on every
    query (pandas' ``future.infer_string`` from inside ibis, DuckDB's
    ``fetch_arrow_table``) are counted in one line, not listed.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     for _ in range(3):
    ...         warnings.warn("scan SG: 2 series too small to judge were skipped")
    ...     warnings.warn("old API", DeprecationWarning)
    >>> warning_summary(caught)
    ['scan SG: 2 series too small to judge were skipped (x3)', '1 deprecation warning from libraries']
    """
    counts: dict[str, int] = {}
    deprecations = 0
    for w in caught:
        if issubclass(w.category, DeprecationWarning | PendingDeprecationWarning):
            deprecations += 1
            continue
        text = (
            f"{w.category.__name__}: {w.message}"
            if w.category is not UserWarning
            else str(w.message)
        )
        counts[text] = counts.get(text, 0) + 1
    out = [f"{text} (x{n})" if n > 1 else text for text, n in counts.items()]
    if deprecations:
        out.append(f"{deprecations} deprecation warning{'s' * (deprecations > 1)} from libraries")
    return out


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

    from qualitylab.data.sources import CHECKS_TABLE, open_dataset
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
        sc = scorecard_or_empty(cached, market, [], ctx.start, ctx.end)
        sc_vendor = scorecard_or_empty(cached, market, ["vendor"], ctx.start, ctx.end)
        scan_ctx = _daily_scan_context(cached, ctx)
        alerts = scan_period(cached, scan_ctx, rebaseline=dict(rebaseline) if rebaseline else None)
        alerts = _incidents(alerts, cached, market, scan_ctx)
    for line in warning_summary(caught):
        log.info("%s: %s", market, line)
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
        [
            sc.assign(vendor=None, grain="market", notes=json.dumps(sc.attrs.get("notes", []))),
            sc_vendor.assign(grain="vendor", notes=json.dumps(sc_vendor.attrs.get("notes", []))),
        ],
        ignore_index=True,
    ).assign(period_start=str(ctx.start), period_end=str(ctx.end))
    stored["vendor"] = stored["vendor"].astype("string")
    con.create_table("ql_scorecard", ibis.memtable(stored))
    # which contract checks the cached tables fail, so each notebook opening the
    # cache skips the checking pass (~0.1 s a table, in every kernel)
    con.create_table(CHECKS_TABLE, ibis.memtable(cached.check_results()))
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


def scorecard_or_empty(ds: Any, market: str, by: list[str], start: Any, end: Any) -> pd.DataFrame:
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


def _as_text(frame: pd.DataFrame) -> Any:
    """A frame as an all-string arrow table (a fixed schema even when empty)."""
    import pyarrow as pa

    cols = {
        c: pa.array([None if pd.isna(v) else str(v) for v in frame[c]], type=pa.string())
        for c in frame.columns
    }
    return pa.table(cols) if cols else pa.table({"market": pa.array([], type=pa.string())})


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


def track_alerts(
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


def cache_moderators(path: Path | None) -> tuple[str, ...]:
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


def combine_caches(paths: Sequence[Path], dest: Path) -> None:
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


def build_caches(
    data: str,
    codes: Sequence[str],
    cache_dir: Path,
    parameters: str,
    jobs: int,
    say: Callable[[str], None],
    as_of: str | None = None,
    rebaseline: Mapping[str, Mapping[tuple[str, str, str], Any]] | None = None,
    pool: cf.Executor | None = None,
) -> dict[str, dict[str, Any]]:
    """Every market's cache (slice, scorecard, alerts), ``jobs`` markets at a time.

    In ``pool`` when given (the run's workers, which then run the notebooks).
    """
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
        with contextlib.ExitStack() as stack:
            if pool is None:
                ctx = mp.get_context("spawn")
                pool = stack.enter_context(
                    cf.ProcessPoolExecutor(max_workers=min(jobs, len(codes)), mp_context=ctx)
                )
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
