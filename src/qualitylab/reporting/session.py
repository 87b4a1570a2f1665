"""A notebook's session: :func:`context` and the period's :func:`alerts`, made once.

:func:`context` opens the data and fixes the period, and may start the
period's alert scan in a helper process (:mod:`qualitylab.prefetch`);
:func:`alerts` takes that scan's result, the alerts a scheduled run stored, or
scans, once per dataset, market and period (:data:`ALERTS_MEMO`).
"""

from __future__ import annotations

import weakref
from datetime import date
from pathlib import Path

import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.reporting import prefetch
from qualitylab.reporting.alertscan import current_alerts, period_alerts
from qualitylab.reporting.context import ReportContext, open_context


def context(
    data: str | Dataset,
    market: str,
    *,
    as_of: str | date | None = None,
    weeks: int = 4,
    parameters: str | None = None,
    prefetch_alerts: bool = False,
) -> ReportContext:
    """Open the data and fix the period: the last ``weeks`` full weeks before ``as_of``.

    Parameters
    ----------
    data : str or Dataset
        Source for :func:`qualitylab.open_dataset`.
    market : str
    as_of : str or date, optional
        Defaults to the last day with data (empty string means the same).
    weeks : int, default 4
    parameters : str, optional
        Parameters folder (empty/None: found automatically).
    prefetch_alerts : bool, default False
        Start the period's alert scan in a helper process now (see
        :mod:`qualitylab.prefetch`), for notebooks that show alerts after other
        work: :func:`alerts` then takes the finished result instead of
        scanning. Only for a ``data`` path or URL, and not when the data
        carries a scheduled run's stored alerts.
    """
    ctx = open_context(data, market, as_of=as_of, weeks=weeks, parameters=parameters)
    if prefetch_alerts and isinstance(data, str | Path) and prefetch.enabled():
        try:
            stored = "ql_alerts" in ctx.ds.backend.list_tables()
        except Exception:  # a backend that cannot list tables: nothing stored
            stored = False
        job = None if stored else prefetch.start(str(data), parameters, market, ctx.start, ctx.end)
        if job is not None:
            PREFETCH_JOBS.setdefault(ctx.ds, {})[alerts_key(ctx)] = job
    return ctx


#: Alerts already scanned, per dataset (dropped with it) and market/period.
ALERTS_MEMO: weakref.WeakKeyDictionary[Dataset, dict[tuple, pd.DataFrame]] = (
    weakref.WeakKeyDictionary()
)
#: Alert scans running in a helper process (context(prefetch_alerts=True)).
PREFETCH_JOBS: weakref.WeakKeyDictionary[Dataset, dict[tuple, prefetch.AlertJob]] = (
    weakref.WeakKeyDictionary()
)


def alerts_key(ctx: ReportContext) -> tuple:
    """What a period's alerts are kept under: market, period and baseline start."""
    return (ctx.market, ctx.period.start, ctx.period.end, ctx.baseline.start)


def alerts(ctx: ReportContext, *, current_only: bool = True) -> pd.DataFrame:
    """The market's alerts for the report period.

    Reuses the alerts the scheduled run stored with the market's data
    (``ql_alerts``) when present, and scans otherwise (baseline = the 28 days
    before the period). ``current_only`` keeps alerts that reach into the period.
    A scan is made once per dataset, market and period; later calls (e.g. the
    triage window after the alerts table) get a copy. When :func:`context` was
    asked to prefetch, the helper process's scan is used (waited for if it
    still runs); if the helper failed, the scan runs here.
    """
    memo = ALERTS_MEMO.setdefault(ctx.ds, {})
    key = alerts_key(ctx)
    frame = memo.get(key)
    job = PREFETCH_JOBS.get(ctx.ds, {}).pop(key, None)
    if frame is None and job is not None:
        frame = job.result()  # None if the helper failed: then scan here
        if frame is not None:
            memo[key] = frame.copy()
            memo[key].attrs = dict(frame.attrs)
    if frame is not None:
        frame = frame.copy()
        frame.attrs = dict(memo[key].attrs)
        return current_alerts(frame, ctx) if current_only else frame.reset_index(drop=True)
    frame = period_alerts(ctx)
    memo[key] = frame.copy()
    return current_alerts(frame, ctx) if current_only else frame.reset_index(drop=True)
