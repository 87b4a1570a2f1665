"""Events near an alert: the ``events`` table on market-local dates."""

from __future__ import annotations

from datetime import date

import pandas as pd


def local_event_dates(events: pd.DataFrame, market: str, timezone: str) -> pd.DataFrame:
    """Events of ``market`` (and ``"*"``) with their market-local ``date``, in date order."""
    ev = events[events["market"].isin([market, "*"])].copy()
    ts = pd.to_datetime(ev["effective_at"], utc=True)
    ev["date"] = ts.dt.tz_convert(timezone).dt.tz_localize(None).dt.normalize()
    return ev.sort_values("date", kind="stable").reset_index(drop=True)


def nearby_events(
    events: pd.DataFrame,
    start: date | str | pd.Timestamp,
    *,
    market: str,
    timezone: str,
    end: date | str | pd.Timestamp | None = None,
    days_before: int = 3,
    days_after: int = 7,
    policy: str | None = None,
) -> list[str]:
    """Events effective near a date, as short readable strings.

    Parameters
    ----------
    events : pandas.DataFrame
        The ``events`` table (``effective_at, market, kind, policy,
        description``).
    start : date
        Market-local date an alert (or change) starts.
    market : str
        Market code; events for ``"*"`` apply to every market.
    timezone : str
        The market's time zone (event dates are market-local).
    end : date, optional
        Last day of the alert; the window never reaches past it.
    days_before, days_after : int
        Window ``[start - days_before, min(start + days_after, end)]``: what
        changed just before or during the first week of an alert.
    policy : str, optional
        When given (a policy segment), events about another policy are left out.

    Returns
    -------
    list of str
        ``"YYYY-MM-DD kind[policy]: description"`` in date order.

    Examples
    --------
    >>> ev = pd.DataFrame({"effective_at": ["2026-11-08T17:00:00Z"], "market": ["ID"],
    ...                    "kind": ["policy_change"], "policy": ["scam"],
    ...                    "description": ["Scam policy update"]})
    >>> nearby_events(ev, "2026-11-09", market="ID", timezone="Asia/Jakarta")
    ['2026-11-09 policy_change[scam]: Scam policy update']
    """
    ev = local_event_dates(events, market, timezone)
    day = pd.Timestamp(start).normalize()
    last = day + pd.Timedelta(days=days_after)
    if end is not None:
        last = min(last, pd.Timestamp(end).normalize())
    sel = ev[(ev["date"] >= day - pd.Timedelta(days=days_before)) & (ev["date"] <= last)]
    if policy is not None:
        sel = sel[sel["policy"].isna() | (sel["policy"] == policy)]
    out = []
    for _, r in sel.iterrows():
        pol = f"[{r['policy']}]" if isinstance(r["policy"], str) and r["policy"] else ""
        out.append(f"{r['date']:%Y-%m-%d} {r['kind']}{pol}: {r['description']}")
    return out
