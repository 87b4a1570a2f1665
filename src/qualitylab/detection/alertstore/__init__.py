"""Alert memory: the store of every alert of every run, its labels and its precision.

A scheduled run scans each market and finds alerts; this module remembers them
across runs, so each run can say which alerts are new, which continue, which
resolved, and which a person has labelled.

Files, in the reports folder (a run's ``--out``):

``alerts.parquet``
    One row per alert per run and market (:data:`STORE_COLUMNS`), written
    atomically (a temporary file, then :func:`os.replace`): a run killed
    mid-way leaves the previous store.
``alert_labels.csv``
    Append-only and human-readable (:data:`LABEL_COLUMNS`), so a team can keep
    it in git and review it. The latest label of an alert wins.

Identity
    An alert is its market, metric, dimension, segment and direction plus a
    window. A sighting whose window overlaps the window the alert was last seen
    with, or starts within :data:`MAX_GAP_DAYS` day of its end (either way
    round), is the same alert and keeps its ``alert_id``; otherwise it is a new
    alert with a new id such as ``SG-20261102-ai_recall-3f2a1c`` (market, first
    window's start, metric, a hash of the key and the first window), never
    reused. After a ``new_normal`` label, only sightings that start on or
    before the re-baseline date (:func:`rebaselines`) continue the alert; a
    later shift of the series is a new alert.

Status (per run and market)
    ``new`` on its first sighting; ``ongoing`` when seen again; ``muted``
    instead of ``ongoing`` while its latest label is ``false_alarm`` or
    ``expected``; ``resolved`` (with ``resolved_on``, the run's ``as_of``) once
    a run whose scanned period reaches the end of the alert's window no longer
    raises it, or raises it only with a window that ended more than
    :data:`ENDED_AFTER_DAYS` days before the period's last day (a window search
    keeps finding a past window while it lies in the period: the days after it
    were normal). One ``resolved`` row is written, in that run; later runs that
    still find the same past window write nothing for it. A resolved alert
    that is raised again with a window reaching past its old end and up to the
    period's end is reopened (``ongoing``, same id).

Queue alerts (``kind="queue"``)
    The live queue watch (:mod:`qualitylab.watch`) stores its alerts here too,
    with their own ids (``SG-20261206T1405-backlog-3f2a1c``), the same labels
    and the same listing. They are events, not daily runs: :func:`append` adds
    their rows without replacing a date's rows, and :func:`rebaselines` leaves
    them out (they are not series of the daily scan).

Runs for the same date, and runs out of order
    A run for a market and ``as_of`` that is already in the store replaces that
    market's rows for that date (:func:`commit`). Statuses are computed against
    the runs with an earlier ``as_of`` only, so a rerun gives the same answer
    as the first run. A run for a past date (a backfill) matches identities
    against every sighting, so it reuses the ids later runs gave, but it does
    not rewrite the rows of later dates: those keep the statuses they were
    written with. :func:`latest_alerts` recomputes ``first_seen`` and
    ``last_seen`` from all rows, so they are right whatever the order; for a
    clean status history, replay dates in order (``qualitylab replay`` does).

Modules
    ``store`` (the file: columns, reading, atomic writes), ``labels`` (the
    labels file, the label in force, re-baselines), ``lifecycle`` (identity
    and status: :func:`track`, :func:`update_store`) and ``listing`` (reading
    the store: :func:`latest_alerts`, counts, CSV, :func:`alert_precision`).

Examples
--------
>>> import tempfile, pandas as pd
>>> reports = tempfile.mkdtemp()
>>> alerts = pd.DataFrame({
...     "market": ["SG"], "metric": ["ai_recall"], "dimension": ["language"],
...     "segment": ["ms"], "start_date": [pd.Timestamp("2026-11-05")],
...     "end_date": [pd.Timestamp("2026-11-15")], "observed": [0.62], "expected": [0.81],
...     "direction": ["down"], "severity": ["high"], "detector": ["ewma"], "p_value": [1e-6]})
>>> rows = update_store(reports, alerts, run_id="r1", as_of="2026-11-16", market="SG",
...                     period=("2026-10-19", "2026-11-15"))
>>> rows[["alert_id", "status"]].to_dict("records")
[{'alert_id': 'SG-20261105-ai_recall-686b9f', 'status': 'new'}]
>>> _ = label_alert(reports, "SG-20261105-ai_recall-686b9f", "false_alarm", note="mod-v4 known")
>>> later = alerts.assign(end_date=pd.Timestamp("2026-11-22"))
>>> update_store(reports, later, run_id="r2", as_of="2026-11-23", market="SG",
...              period=("2026-10-26", "2026-11-22"))["status"].tolist()
['muted']
"""

from __future__ import annotations

from qualitylab.detection.alertstore.labels import (
    LABEL_COLUMNS,
    LABELS,
    LABELS_FILE,
    MUTING_LABELS,
    AlertLabel,
    label_alert,
    latest_labels,
    read_labels,
    rebaselines,
)
from qualitylab.detection.alertstore.lifecycle import (
    ENDED_AFTER_DAYS,
    MAX_GAP_DAYS,
    STATUSES,
    track,
    update_store,
)
from qualitylab.detection.alertstore.listing import (
    LIST_COLUMNS,
    PRECISION_COLUMNS,
    alert_precision,
    alerts_csv,
    latest_alerts,
    status_counts,
)
from qualitylab.detection.alertstore.store import (
    STORE_COLUMNS,
    STORE_FILE,
    append,
    commit,
    read_store,
)

__all__ = [
    "ENDED_AFTER_DAYS",
    "LABELS",
    "LABELS_FILE",
    "LABEL_COLUMNS",
    "LIST_COLUMNS",
    "MAX_GAP_DAYS",
    "MUTING_LABELS",
    "PRECISION_COLUMNS",
    "STATUSES",
    "STORE_COLUMNS",
    "STORE_FILE",
    "AlertLabel",
    "alert_precision",
    "alerts_csv",
    "append",
    "commit",
    "label_alert",
    "latest_alerts",
    "latest_labels",
    "read_labels",
    "read_store",
    "rebaselines",
    "status_counts",
    "track",
    "update_store",
]
