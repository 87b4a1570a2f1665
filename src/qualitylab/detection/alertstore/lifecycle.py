"""An alert's life across runs: its identity, and its status new, ongoing, muted or resolved.

:func:`track` gives one run's store rows for one market (pure: it reads and
writes nothing); :func:`update_store` tracks and commits them under the
store's lock. The identity and status rules are those of the package
docstring (:mod:`qualitylab.alertstore`).
"""

from __future__ import annotations

import hashlib
import os
import re
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.detection.alertstore.labels import (
    MUTING_LABELS,
    empty_labels,
    latest_labels,
    read_labels,
    rebaseline_dates,
)
from qualitylab.detection.alertstore.store import (
    STORE_COLUMNS,
    as_day,
    as_days,
    commit_rows,
    conform,
    empty_store,
    read_store,
    reports_folder,
    store_lock,
)
from qualitylab.errors import ParameterError

#: Alert statuses, in the order they are shown.
STATUSES = ("new", "ongoing", "muted", "resolved")
#: A sighting continues an alert when its window starts at most this many days
#: after the alert's window ends (or ends this close before it starts); 0 or less overlaps.
MAX_GAP_DAYS = 1
#: A raised window that ends more than this many days before the scanned period's
#: last day has ended (the detector's window can lag the last day by a day or two).
ENDED_AFTER_DAYS = 2
_KEY = ("market", "metric", "dimension", "segment", "direction")
_ALERT_NEEDS = (
    "metric",
    "dimension",
    "segment",
    "direction",
    "start_date",
    "end_date",
    "severity",
)
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}


# --------------------------------------------------------------------------- #
# tracking
# --------------------------------------------------------------------------- #
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_")[:24] or "x"


def _new_id(key: tuple[str, ...], start: pd.Timestamp, end: pd.Timestamp, taken: set[str]) -> str:
    """``MARKET-YYYYMMDD-metric-hash6`` of the key and first window; unused in ``taken``."""
    salt = 0
    while True:
        text = "\x1f".join([*key, start.date().isoformat(), end.date().isoformat(), str(salt)])
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]
        candidate = f"{_slug(key[0])}-{start:%Y%m%d}-{_slug(key[1])}-{digest}"
        if candidate not in taken:
            return candidate
        salt += 1


def _gap(a0: pd.Timestamp, a1: pd.Timestamp, b0: pd.Timestamp, b1: pd.Timestamp) -> int:
    """Days between two windows: <= 0 when they overlap, 1 when adjacent."""
    return (max(a0, b0) - min(a1, b1)).days


def _check_alerts(alerts: pd.DataFrame, market: str) -> pd.DataFrame:
    missing = [c for c in _ALERT_NEEDS if c not in alerts.columns]
    if missing:
        raise ParameterError(
            f"alerts lack column(s) {missing}; expected the columns of detect.scan "
            f"({', '.join(_ALERT_NEEDS)}, ...)",
            key="alerts",
        )
    out = alerts.reset_index(drop=True).copy()
    if "market" in out.columns:
        other = out["market"].notna() & (out["market"].astype(str) != market)
        if other.any():
            raise ParameterError(
                f"alerts: {int(other.sum())} row(s) of another market than {market!r}, "
                f"e.g. {out.loc[other, 'market'].iloc[0]!r}",
                key="alerts",
            )
    out["market"] = market
    for c in ("start_date", "end_date"):
        out[c] = as_days(out[c])
    bad = out["start_date"].isna() | out["end_date"].isna() | (out["start_date"] > out["end_date"])
    if bad.any():
        raise ParameterError(
            f"alerts: {int(bad.sum())} row(s) without a window (start_date <= end_date), "
            f"e.g. {out.loc[bad, 'metric'].iloc[0]!r}",
            key="alerts",
        )
    badd = ~out["direction"].isin(["up", "down"])
    if badd.any():
        raise ParameterError(
            f"alerts: {int(badd.sum())} row(s) whose direction is not up/down, "
            f"e.g. {out.loc[badd, 'direction'].iloc[0]!r}",
            key="alerts",
        )
    return out


def track(
    store: pd.DataFrame,
    alerts: pd.DataFrame,
    labels: pd.DataFrame | None,
    *,
    run_id: str,
    as_of: date | str,
    market: str,
    period: tuple[date | str, date | str],
    kind: str = "daily",
) -> pd.DataFrame:
    """This run's store rows for one market: identities and statuses of its alerts.

    Pure: reads nothing, writes nothing (:func:`commit` stores the rows).

    Parameters
    ----------
    store : pandas.DataFrame
        :func:`read_store` rows (all markets; rows of ``market`` and ``kind``
        are used, those of ``as_of`` itself ignored: a rerun replaces them).
    alerts : pandas.DataFrame
        This run's alerts for ``market`` (:func:`qualitylab.detect.scan`
        columns). When it has ``incident_id``/``incident_role`` (from
        :func:`qualitylab.incidents.group_incidents`), the alerts of one
        incident share the store's ``incident_id`` (below); ``incident_cause``
        and ``incident_event`` are kept when present. An empty frame whose
        ``attrs["note"]`` says why no scan was possible resolves nothing.
    labels : pandas.DataFrame or None
        :func:`read_labels` rows; each alert's latest label is applied.
    run_id : str
    as_of : date or ISO str
        The run's report date.
    market : str
    period : (date, date)
        First and last day the scan covered (the last no later than the
        data's last day).
    kind : str, default "daily"

    Returns
    -------
    pandas.DataFrame
        :data:`STORE_COLUMNS`: a row per alert raised (``new``, ``ongoing``,
        ``muted`` or ``resolved`` when its window has ended) and a
        ``resolved`` row per earlier alert that this run no longer raises;
        ranked new, ongoing, muted, resolved, then by severity.

    Notes
    -----
    Identity and status rules: module docstring. The store's ``incident_id``
    is the ``alert_id`` of the incident's lead; a group keeps the incident id
    one of its alerts had before (the oldest such incident, the group holding
    that incident's lead first), so an incident keeps its id when its lead
    changes. A ``first_seen`` is the earliest earlier sighting (or ``as_of``).

    Examples
    --------
    >>> a = pd.DataFrame({"market": ["ID"], "metric": ["accuracy"], "dimension": ["vendor"],
    ...     "segment": ["VendorC"], "start_date": ["2026-11-02"], "end_date": ["2026-11-08"],
    ...     "observed": [0.81], "expected": [0.91], "direction": ["down"], "severity": ["high"],
    ...     "detector": ["p_chart"], "p_value": [1e-6]})
    >>> week1 = track(read_store("/nonexistent"), a, None, run_id="r1", as_of="2026-11-09",
    ...               market="ID", period=("2026-10-12", "2026-11-08"))
    >>> week1[["alert_id", "status"]].values.tolist()
    [['ID-20261102-accuracy-cf6d59', 'new']]
    >>> week2 = track(week1, a.assign(end_date="2026-11-09"), None, run_id="r2",
    ...               as_of="2026-11-16", market="ID", period=("2026-10-19", "2026-11-15"))
    >>> week2[["alert_id", "status", "resolved_on"]].astype(str).values.tolist()
    [['ID-20261102-accuracy-cf6d59', 'resolved', '2026-11-16']]
    """
    day = as_day(as_of, "as_of")
    p0, p1 = as_day(period[0], "period"), as_day(period[1], "period")
    if p0 > p1:
        raise ParameterError(
            f"period starts after it ends: {p0.date()} > {p1.date()}", key="period"
        )
    cur = _check_alerts(alerts, market)
    scanned = len(cur) > 0 or not alerts.attrs.get("note")
    store = conform(store) if len(store) else empty_store()
    hist = store[(store["market"] == market) & (store["kind"] == kind) & (store["as_of"] != day)]
    hist = hist.assign(_line=np.arange(len(hist))).sort_values(["as_of", "_line"], kind="stable")
    prior, later = hist[hist["as_of"] < day], hist[hist["as_of"] > day]
    lab = latest_labels(labels if labels is not None else empty_labels())
    lab_by_id = {r.alert_id: (r.label, r.note) for r in lab.itertuples(index=False)}
    rebase = rebaseline_dates(store[store["market"] == market], lab)

    # each known alert: its reference sighting (latest earlier row, else earliest later row)
    ref = pd.concat([prior.groupby("alert_id").tail(1), later.groupby("alert_id").head(1)])
    ref = ref.drop_duplicates("alert_id", keep="first").set_index("alert_id", drop=False)
    raised_prior = prior[prior["status"] != "resolved"]
    first_seen = raised_prior.groupby("alert_id")["as_of"].min()
    first_incident_day = prior.groupby("incident_id")["as_of"].min()
    taken_ids = set(store["alert_id"].dropna())

    # identity: best-overlapping candidate of the same key, each used once
    pairs = []
    by_key: dict[tuple, list] = {}
    for r in ref.itertuples(index=False):
        by_key.setdefault(tuple(getattr(r, k) for k in _KEY), []).append(r)
    for i, a in enumerate(cur.itertuples(index=False)):
        for c in by_key.get(tuple(getattr(a, k) for k in _KEY), []):
            gap = _gap(a.start_date, a.end_date, c.start_date, c.end_date)
            if gap > MAX_GAP_DAYS:
                continue
            r_day = rebase.get(c.alert_id)
            if r_day is not None and a.start_date > r_day:  # a shift after the new normal
                continue
            pairs.append((gap, -c.as_of.value, i, c.alert_id))
    match: dict[int, str] = {}
    used: set[str] = set()
    for _gap_days, _recent, i, aid in sorted(pairs):
        if i not in match and aid not in used:
            match[i] = aid
            used.add(aid)

    ended_before = p1 - pd.Timedelta(days=ENDED_AFTER_DAYS)
    rows: list[dict[str, Any]] = []
    keep: list[int] = []  # indices into cur of the rows written
    order = sorted(
        range(len(cur)),
        key=lambda i: (
            SEVERITY_RANK.get(str(cur["severity"].iat[i]), 3),
            cur["start_date"].iat[i],
        ),
    )
    for i in order:
        a = cur.iloc[i]
        aid = match.get(i)
        ended = a["end_date"] < ended_before
        prev = ref.loc[aid] if aid is not None and aid in ref.index else None
        in_prior = prev is not None and prev["as_of"] < day
        if aid is None:
            aid = _new_id(tuple(str(a[k]) for k in _KEY), a["start_date"], a["end_date"], taken_ids)
            taken_ids.add(aid)
            status = "new"
        elif not in_prior:  # a backfill: the id comes from a later run
            status = "new"
        elif prev["status"] == "resolved" and (ended or a["end_date"] <= prev["end_date"]):
            continue  # the resolved window again: already reported
        elif ended:
            status = "resolved"
        else:
            status = "ongoing"
        label, note = lab_by_id.get(aid, (None, None))
        if status == "ongoing" and label in MUTING_LABELS:
            status = "muted"
        row = {c: a[c] for c in a.index if c in STORE_COLUMNS}
        row.update(
            alert_id=aid,
            status=status,
            first_seen=first_seen.get(aid, day) if in_prior else day,
            last_seen=day,
            resolved_on=day if status == "resolved" else pd.NaT,
            label=label,
            label_note=note,
        )
        rows.append(row)
        keep.append(i)

    _assign_incidents(rows, cur, keep, prior, first_incident_day)

    if scanned:  # earlier alerts this run no longer raises
        open_ = prior.groupby("alert_id").tail(1)
        open_ = open_[open_["status"] != "resolved"]
        for aid, last in open_.set_index("alert_id", drop=False).iterrows():
            if aid in used or p1 < last["end_date"]:
                continue
            row = {c: last[c] for c in STORE_COLUMNS}
            label, note = lab_by_id.get(aid, (None, None))
            row.update(status="resolved", resolved_on=day, label=label, label_note=note)
            rows.append(row)

    out = conform(pd.DataFrame(rows)) if rows else empty_store()
    out["run_id"] = str(run_id)
    out["kind"] = kind
    out["as_of"] = day
    out["market"] = market
    out["period_start"], out["period_end"] = p0, p1
    rank = out["status"].map({s: k for k, s in enumerate(STATUSES)})
    sev = out["severity"].map(SEVERITY_RANK).fillna(3)
    out = out.assign(_r=rank, _s=sev).sort_values(["_r", "_s", "start_date"], kind="stable")
    return conform(out.drop(columns=["_r", "_s"]))[STORE_COLUMNS]


def _assign_incidents(
    rows: list[dict[str, Any]],
    cur: pd.DataFrame,
    keep: list[int],
    prior: pd.DataFrame,
    first_day: pd.Series,
) -> None:
    """Fill ``incident_id`` (the lead's alert_id, or an older incident id) and role."""
    grouped = "incident_id" in cur.columns and "incident_role" in cur.columns
    groups: dict[str, list[int]] = {}  # their incident key -> positions in rows
    for pos, i in enumerate(keep):
        gkey = str(cur["incident_id"].iat[i]) if grouped else f"\x00{pos}"
        if grouped and pd.isna(cur["incident_id"].iat[i]):
            gkey = f"\x00{pos}"
        groups.setdefault(gkey, []).append(pos)
    prev_incident = prior.groupby("alert_id").tail(1).set_index("alert_id")["incident_id"]

    def lead_of(members: list[int]) -> int:
        for pos in members:
            if str(rows[pos].get("incident_role", "")) == "lead":
                return pos
        return members[0]

    claims = []
    for gkey, members in groups.items():
        ids = {rows[p]["alert_id"] for p in members}
        olds = {prev_incident.get(rows[p]["alert_id"]) for p in members}
        for old in olds:
            if isinstance(old, str) and old:
                since = first_day.get(old, pd.Timestamp.max)
                claims.append((since, 0 if old in ids else 1, -len(members), old, gkey))
    assigned: dict[str, str] = {}
    taken: set[str] = set()
    for *_rank, old, gkey in sorted(claims):
        if gkey not in assigned and old not in taken:
            assigned[gkey] = old
            taken.add(old)
    for gkey, members in groups.items():
        lead = lead_of(members)
        if gkey not in assigned:
            for pos in [lead, *members]:
                if rows[pos]["alert_id"] not in taken:
                    assigned[gkey] = rows[pos]["alert_id"]
                    taken.add(assigned[gkey])
                    break
        for pos in members:
            rows[pos]["incident_id"] = assigned[gkey]
            rows[pos]["incident_role"] = "lead" if pos == lead else "child"


def update_store(
    reports_dir: str | os.PathLike[str],
    alerts: pd.DataFrame,
    *,
    run_id: str,
    as_of: date | str,
    market: str,
    period: tuple[date | str, date | str],
    kind: str = "daily",
) -> pd.DataFrame:
    """Track one market's alerts of a run and commit them: the call a run makes.

    Reads the store and the labels, :func:`track` s, and :func:`commit` s,
    all under the store's lock. ``period``'s end is clipped to the scan's
    last day (``alerts.attrs["scanned"]["end"]``) when the scan says it.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder (created if missing).
    alerts, run_id, as_of, market, period, kind
        As in :func:`track`.

    Returns
    -------
    pandas.DataFrame
        The rows written for this run and market.

    Examples
    --------
    >>> import tempfile
    >>> update_store(tempfile.mkdtemp(), pd.DataFrame(columns=list(_ALERT_NEEDS)), run_id="r",
    ...              as_of="2026-11-23", market="SG", period=("2026-10-26", "2026-11-22")).shape
    (0, 30)
    """
    folder = reports_folder(reports_dir, must_exist=False)
    scanned_end = (alerts.attrs.get("scanned") or {}).get("end")
    if scanned_end:
        end = min(as_day(period[1], "period"), as_day(scanned_end, "period"))
        period = (period[0], max(end, as_day(period[0], "period")))
    with store_lock(folder):
        store = read_store(folder)
        rows = track(
            store,
            alerts,
            read_labels(folder),
            run_id=run_id,
            as_of=as_of,
            market=market,
            period=period,
            kind=kind,
        )
        stale = (store["market"] == market) & (store["kind"] == kind)
        stale &= store["as_of"] == as_day(as_of, "as_of")
        if len(rows) or stale.any():  # a rerun that finds nothing still replaces the date
            commit_rows(folder, store, rows, {(market, kind, as_day(as_of, "as_of"))})
    return rows
