"""Replay the daily loop over past days: detection and the alert store, without notebooks.

``qualitylab replay --data SRC --from D1 --to D2 --markets SG,ID --out DIR``
does for each day and market what a scheduled ``qualitylab run --as-of DAY``
does to the alert store: it scans the 28 days ending on the day (as the
run does; ``period="report"`` scans the last four full weeks up to the day
instead, :func:`qualitylab.report.context`), with the series the labels
re-baseline, folds the alerts into incidents
(:func:`qualitylab.incidents.group_incidents`) and records them
(:func:`qualitylab.alertstore.track`, :func:`~qualitylab.alertstore.commit`),
so a team can see how the loop would have behaved. Days run in date order,
so statuses are those an in-order daily run would have given.

The dataset is opened once; with ``period="report"`` a scan is reused for
the days that share a period (the report period only moves on Sundays).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.detection.alertstore import commit, read_labels, read_store, rebaselines, track
from qualitylab.errors import ParameterError

__all__ = ["PERIODS", "REPLAY_COLUMNS", "replay"]

#: Columns of :func:`replay`'s summary.
REPLAY_COLUMNS = [
    "as_of",
    "market",
    "period_start",
    "period_end",
    "raised",
    "new",
    "ongoing",
    "muted",
    "resolved",
    "incidents",
    "seconds",
    "note",
]
#: Periods a replay can scan each day: ``report``, the report period of
#: ``qualitylab run --as-of DAY`` (the last four full Monday-Sunday weeks on or
#: before the day); ``trailing``, the 28 days ending on the day itself.
PERIODS = ("report", "trailing")

log = logging.getLogger("qualitylab.replay")


def _date(value: date | str, what: str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ParameterError(f"{what}: {value!r} is not a YYYY-MM-DD date", key=what) from None


def replay(
    source: Any,
    *,
    start: date | str,
    end: date | str,
    markets: Sequence[str] | str,
    out: str | os.PathLike[str],
    parameters: str | None = None,
    period: str = "trailing",
    incidents: bool = True,
    assume_utc: bool = False,
    progress: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Build the alert store day by day over past dates, as daily runs would have.

    Parameters
    ----------
    source : str or Dataset
        The data (:func:`qualitylab.open_dataset`); opened once.
    start, end : date or ISO str
        First and last report date (``as_of``), inclusive.
    markets : sequence of str, or "all"
        Market codes (``"all"``: every market with a parameters file).
    out : str or path
        Reports folder holding ``alerts.parquet`` and ``alert_labels.csv``
        (created if missing). Days already in the store are replaced.
    parameters : str, optional
        Parameters folder.
    period : {"report", "trailing"}, default "trailing"
        What each day scans (:data:`PERIODS`).
    incidents : bool, default True
        Fold each day's alerts into incidents before storing them.
    assume_utc : bool, default False
        Accept naive timestamps as UTC.
    progress : callable, optional
        Called with one line per day.

    Returns
    -------
    pandas.DataFrame
        :data:`REPLAY_COLUMNS`, one row per day and market: the scanned
        period, the alerts raised, the rows written per status, the incidents
        among the raised alerts, the seconds spent and a note (why a day had
        no scan).

    Raises
    ------
    ParameterError
        For dates that are not dates, ``start`` after ``end``, an unknown
        market or period.

    Notes
    -----
    Labels in ``alert_labels.csv`` apply to every replayed day whatever their
    date (mutes, and ``new_normal`` re-baselines once its alert is in the
    store), so a replay shows the loop with the team's present knowledge.

    Examples
    --------
    >>> replay("data/demo", start="2026-11-09", end="2026-11-01", markets=["SG"], out="x")
    Traceback (most recent call last):
    ...
    qualitylab.errors.ParameterError: --from 2026-11-09 is after --to 2026-11-01
    """
    from qualitylab.data.sources import Dataset, open_dataset
    from qualitylab.reporting.report import baseline_of, context, data_end, scan_period

    first, last = _date(start, "from"), _date(end, "to")
    if first > last:
        raise ParameterError(f"--from {first} is after --to {last}", key="from")
    if period not in PERIODS:
        raise ParameterError(f"unknown period {period!r}: use {', '.join(PERIODS)}", key="period")
    say = progress or (lambda _msg: None)
    ds = (
        source
        if isinstance(source, Dataset)
        else open_dataset(source, parameters=parameters, assume_utc=assume_utc)
    )
    codes = list(ds.params.codes) if isinstance(markets, str) and markets == "all" else markets
    codes = [str(c).strip() for c in codes if str(c).strip()]
    if not codes:
        raise ParameterError("no market to replay (--markets)", key="markets")
    for code in codes:
        ds.params.market(code)  # an unknown market stops here
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    labels = read_labels(folder)
    store = read_store(folder)
    ends: dict[str, date | None] = {}
    memo: dict[tuple, pd.DataFrame] = {}
    summary: list[dict[str, Any]] = []
    day = first
    while day <= last:
        started_day = time.perf_counter()
        parts = []
        for code in codes:
            t0 = time.perf_counter()
            if code not in ends:
                try:
                    ends[code] = data_end(ds, code)
                except Exception:  # no decisions for the market
                    ends[code] = None
            ctx = context(ds, code, as_of=day)
            if period == "trailing":
                from qualitylab.measure.metrics import Period

                p = Period(day - timedelta(days=27), day)
                ctx = replace(ctx, period=p, baseline=baseline_of(p))
            rb = rebaselines(store, labels, market=code)
            key = (code, ctx.start, ctx.end, tuple(sorted(rb.items())))
            if key not in memo:
                with warnings.catch_warnings(record=True) as caught:  # undefined rates etc.
                    warnings.simplefilter("always")
                    alerts = scan_period(ds, ctx, rebaseline=rb or None)
                    if incidents and len(alerts):
                        from qualitylab.detection.incidents import group_incidents

                        alerts = group_incidents(alerts, ds, code, start=ctx.start, end=ctx.end)
                log.info("%s %s: %d warnings while scanning", day, code, len(caught))
                memo[key] = alerts
            alerts = memo[key]
            note = str(alerts.attrs.get("note") or "")
            data_last = ends[code]
            p_end = min(ctx.end, data_last) if data_last is not None else ctx.end
            rows = track(
                store,
                alerts,
                labels,
                run_id=f"replay-{day.isoformat()}",
                as_of=day,
                market=code,
                period=(ctx.start, max(p_end, ctx.start)),
            )
            commit(folder, rows)
            store = read_store(folder)
            counts = rows["status"].value_counts()
            raised = rows[rows["status"] != "resolved"]
            n_incidents = raised["incident_id"].nunique()
            summary.append(
                {
                    "as_of": day,
                    "market": code,
                    "period_start": ctx.start,
                    "period_end": ctx.end,
                    "raised": len(alerts),
                    **{s: int(counts.get(s, 0)) for s in ("new", "ongoing", "muted", "resolved")},
                    "incidents": int(n_incidents),
                    "seconds": round(time.perf_counter() - t0, 2),
                    "note": note,
                }
            )
            s = summary[-1]
            parts.append(
                f"{code} {s['new']} new, {s['ongoing']} ongoing, {s['muted']} muted, "
                f"{s['resolved']} resolved" + (f" (no scan: {note})" if note else "")
            )
        say(
            f"{day} (period to {ctx.end}): "
            + "; ".join(parts)
            + f" [{time.perf_counter() - started_day:.1f}s]"
        )
        day += timedelta(days=1)
    return pd.DataFrame(summary, columns=REPLAY_COLUMNS)
