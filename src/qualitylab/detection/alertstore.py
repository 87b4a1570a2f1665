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

import contextlib
import csv
import hashlib
import io
import os
import re
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError

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

#: The store's file name in the reports folder.
STORE_FILE = "alerts.parquet"
#: The labels' file name in the reports folder.
LABELS_FILE = "alert_labels.csv"
#: Labels a person can give an alert.
LABELS = ("confirmed", "expected", "false_alarm", "new_normal")
#: Labels under which a continuing alert is shown ``muted``.
MUTING_LABELS = ("false_alarm", "expected")
#: Alert statuses, in the order they are shown.
STATUSES = ("new", "ongoing", "muted", "resolved")
#: A sighting continues an alert when its window starts at most this many days
#: after the alert's window ends (or ends this close before it starts); 0 or less overlaps.
MAX_GAP_DAYS = 1
#: A raised window that ends more than this many days before the scanned period's
#: last day has ended (the detector's window can lag the last day by a day or two).
ENDED_AFTER_DAYS = 2

_TEXT = (
    "alert_id",
    "run_id",
    "kind",
    "market",
    "metric",
    "dimension",
    "segment",
    "direction",
    "severity",
    "detector",
    "status",
    "label",
    "label_note",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
)
_DATES = (
    "as_of",
    "start_date",
    "end_date",
    "first_seen",
    "last_seen",
    "resolved_on",
    "period_start",
    "period_end",
)
_FLOATS = ("observed", "expected", "p_value", "n", "impact")

#: Columns of ``alerts.parquet``, in order (text as ``str``, dates as
#: ``datetime64[s]``, numbers as ``float64``).
STORE_COLUMNS = [
    "alert_id",
    "run_id",
    "kind",
    "as_of",
    "market",
    "metric",
    "dimension",
    "segment",
    "direction",
    "start_date",
    "end_date",
    "severity",
    "observed",
    "expected",
    "p_value",
    "n",
    "impact",
    "detector",
    "status",
    "first_seen",
    "last_seen",
    "resolved_on",
    "label",
    "label_note",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
    "period_start",
    "period_end",
]
#: First columns of :func:`latest_alerts` and of ``qualitylab alerts list --format csv``.
LIST_COLUMNS = [
    "alert_id",
    "status",
    "market",
    "metric",
    "dimension",
    "segment",
    "direction",
    "start_date",
    "end_date",
    "severity",
    "label",
    "first_seen",
    "last_seen",
]
#: Columns of ``alert_labels.csv``, in order.
LABEL_COLUMNS = ["labelled_at", "alert_id", "label", "note", "by"]
#: Columns of :func:`alert_precision`.
PRECISION_COLUMNS = [
    "by",
    "group",
    "n",
    "confirmed",
    "expected",
    "false_alarm",
    "new_normal",
    "precision",
    "ci_low",
    "ci_high",
]
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
_SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_LOCK = ".alerts.lock"


# --------------------------------------------------------------------------- #
# frames and files
# --------------------------------------------------------------------------- #
def _dtype(column: str) -> str:
    if column in _DATES:
        return "datetime64[s]"
    if column in _FLOATS:
        return "float64"
    return "str"


def _empty_store() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_dtype(c)) for c in STORE_COLUMNS})


def _days(values: Any) -> pd.Series:
    """Dates (date, ISO text, Timestamp) as ``datetime64[s]`` at midnight."""
    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    out = pd.to_datetime(s, errors="raise")
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        out = out.dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[s]")


def _day(value: date | str | pd.Timestamp, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} is not a date (YYYY-MM-DD): {value!r}", key=what) from None
    if pd.isna(ts):
        raise ParameterError(f"{what} is not a date (YYYY-MM-DD): {value!r}", key=what)
    return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()


def _conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every store column, in order and with the store's dtypes."""
    out = frame.copy()
    for c in STORE_COLUMNS:
        if c not in out.columns:
            out[c] = pd.Series(np.nan, index=out.index)
        if c in _DATES:
            out[c] = _days(out[c]) if len(out) else out[c].astype("datetime64[s]")
        elif c in _FLOATS:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        else:
            out[c] = out[c].astype("str")  # missing stays missing (NaN)
    extra = [c for c in out.columns if c not in STORE_COLUMNS]
    return out[[*STORE_COLUMNS, *extra]].reset_index(drop=True)


def _folder(reports_dir: str | os.PathLike[str], *, must_exist: bool) -> Path:
    path = Path(reports_dir)
    if must_exist and not path.is_dir():
        raise ParameterError(f"reports folder {str(path)!r} does not exist", key="reports")
    return path


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the store's own lock (not the runner's), so writers take turns."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _replace_atomic(path: Path, write: Any) -> None:
    """Write with ``write(tmp_path)``, flush to disk, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def read_store(reports_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Every stored alert row of a reports folder.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder (a run's ``--out``).

    Returns
    -------
    pandas.DataFrame
        :data:`STORE_COLUMNS` (then any columns a later version added), one row
        per alert per run and market; an empty frame with those columns and
        dtypes when there is no store yet.

    Examples
    --------
    >>> import tempfile
    >>> store = read_store(tempfile.mkdtemp())
    >>> len(store), str(store["as_of"].dtype), str(store["observed"].dtype)
    (0, 'datetime64[s]', 'float64')
    """
    path = Path(reports_dir) / STORE_FILE
    if not path.is_file():
        return _empty_store()
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:  # a damaged file: say which
        raise DataContractError(
            f"{path}: cannot read the alert store ({type(exc).__name__}: {exc})",
            table="alerts",
        ) from None
    return _conform(frame)


def _write_store(path: Path, frame: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [], []
    for c in frame.columns:
        col = frame[c]
        if c in _DATES:
            values = [None if pd.isna(v) else v.date() for v in col]
            arrays.append(pa.array(values, type=pa.date32()))
        elif c in _FLOATS:
            arrays.append(pa.array(col.to_numpy(dtype="float64"), type=pa.float64()))
        elif c in _TEXT:
            arrays.append(pa.array([None if pd.isna(v) else str(v) for v in col], pa.string()))
        else:
            arrays.append(pa.array(col, from_pandas=True))
        names.append(c)
    table = pa.Table.from_arrays(arrays, names=names)
    _replace_atomic(path, lambda tmp: pq.write_table(table, tmp))


def commit(
    reports_dir: str | os.PathLike[str],
    rows: pd.DataFrame,
    *,
    runs: Sequence[tuple[str, date | str]] | None = None,
    kind: str = "daily",
) -> Path:
    """Add one run's rows (from :func:`track`) to the store, atomically.

    Rows already stored for the same market, kind and ``as_of`` as ``rows``
    (and as ``runs``) are replaced (a rerun for a date does not duplicate it).
    The new store is written to a temporary file and renamed over
    ``alerts.parquet``; a failure (or a kill) before the rename leaves the
    previous store.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder; created if missing.
    rows : pandas.DataFrame
        :data:`STORE_COLUMNS` rows of one or more runs.
    runs : sequence of (market, as_of), optional
        The market runs these rows stand for, also those that wrote no row
        (a rerun of a date that now finds nothing still replaces that date's
        earlier rows). Default: the pairs found in ``rows``.
    kind : str, default "daily"
        The kind of the ``runs`` pairs.

    Returns
    -------
    pathlib.Path
        The store file.

    Examples
    --------
    >>> import tempfile
    >>> path = commit(tempfile.mkdtemp(), read_store(tempfile.mkdtemp()))
    >>> path.name, len(read_store(path.parent))
    ('alerts.parquet', 0)
    """
    folder = _folder(reports_dir, must_exist=False)
    also = {(str(m), kind, _day(d, "as_of")) for m, d in (runs or ())}
    with _locked(folder):
        return _commit(folder, read_store(folder), rows, also)


def append(
    reports_dir: str | os.PathLike[str],
    rows: pd.DataFrame | Callable[[pd.DataFrame], pd.DataFrame],
) -> pd.DataFrame:
    """Add rows to the store without replacing any, atomically: for event alerts.

    :func:`commit` replaces a market, kind and date's rows (a daily run's
    rerun); the queue watch's alerts are events within a day, so they are
    appended instead.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder; created if missing.
    rows : pandas.DataFrame or callable
        :data:`STORE_COLUMNS` rows, or a function of the current store (read
        under the store's lock) returning them, for a writer that decides
        what to add from what is stored.

    Returns
    -------
    pandas.DataFrame
        The rows added, conformed to the store's columns and dtypes.

    Examples
    --------
    >>> import tempfile
    >>> reports = tempfile.mkdtemp()
    >>> row = pd.DataFrame({"alert_id": ["SG-1"], "kind": ["queue"], "market": ["SG"],
    ...                     "as_of": ["2026-12-06"], "status": ["new"]})
    >>> _ = append(reports, row)
    >>> _ = append(reports, row.assign(status="resolved"))
    >>> read_store(reports)["status"].tolist()
    ['new', 'resolved']
    """
    folder = _folder(reports_dir, must_exist=False)
    with _locked(folder):
        store = read_store(folder)
        new = rows(store) if callable(rows) else rows
        new = _conform(new) if len(new) else _empty_store()
        if len(new):
            missing = new[["market", "kind", "as_of", "alert_id"]].isna().any(axis=1)
            if missing.any():
                raise ParameterError(
                    f"{int(missing.sum())} row(s) to append without market, kind, as_of "
                    "or alert_id",
                    key="rows",
                )
            parts = [f for f in (store, new) if len(f)]
            _write_store(folder / STORE_FILE, _conform(pd.concat(parts, ignore_index=True)))
    return new


def _commit(
    folder: Path, store: pd.DataFrame, rows: pd.DataFrame, also: set[tuple] | None = None
) -> Path:
    missing = [c for c in ("market", "kind", "as_of", "alert_id") if c not in rows.columns]
    if missing:
        raise ParameterError(
            f"rows to commit lack store column(s) {missing}; expected {', '.join(STORE_COLUMNS)}",
            key="rows",
        )
    new = _conform(rows)
    runs = set(zip(new["market"], new["kind"], new["as_of"], strict=True)) | (also or set())
    if runs:
        keys = list(zip(store["market"], store["kind"], store["as_of"], strict=True))
        store = store[[k not in runs for k in keys]]
    parts = [f for f in (store, new) if len(f)]
    out = pd.concat(parts, ignore_index=True) if parts else _empty_store()
    path = folder / STORE_FILE
    _write_store(path, _conform(out))
    return path


# --------------------------------------------------------------------------- #
# labels
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AlertLabel:
    """One line of ``alert_labels.csv``."""

    labelled_at: str  # ISO UTC time, e.g. "2026-11-23T08:15:02Z"
    alert_id: str
    label: str
    note: str
    by: str


def _empty_labels() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "labelled_at": pd.Series([], dtype="datetime64[s, UTC]"),
            **{c: pd.Series([], dtype="str") for c in LABEL_COLUMNS[1:]},
        }
    )


def read_labels(reports_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """All labels of a reports folder, in file order.

    Parameters
    ----------
    reports_dir : str or path

    Returns
    -------
    pandas.DataFrame
        :data:`LABEL_COLUMNS`: ``labelled_at`` (UTC timestamp), ``alert_id``,
        ``label``, ``note`` and ``by`` (empty text when not given). Empty when
        there is no labels file.

    Raises
    ------
    DataContractError
        When a hand-edited file lacks a column, or has unknown labels or
        times that are not ISO times (naming the count and an example).

    Examples
    --------
    >>> import tempfile
    >>> list(read_labels(tempfile.mkdtemp()).columns)
    ['labelled_at', 'alert_id', 'label', 'note', 'by']
    """
    path = Path(reports_dir) / LABELS_FILE
    if not path.is_file():
        return _empty_labels()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise DataContractError(
            f"{path}: no column(s) {missing}; expected {','.join(LABEL_COLUMNS)}",
            table="alert_labels",
            column=missing[0],
            check="missing_column",
        )
    bad = ~frame["label"].isin(LABELS)
    if bad.any():
        raise DataContractError(
            f"{path}: {int(bad.sum())} row(s) with an unknown label, e.g. "
            f"{frame.loc[bad, 'label'].iloc[0]!r} (labels: {', '.join(LABELS)})",
            table="alert_labels",
            column="label",
            check="unknown_label",
            bad_rows=int(bad.sum()),
            example=frame.loc[bad, "label"].iloc[0],
        )
    when = pd.to_datetime(frame["labelled_at"], utc=True, errors="coerce", format="ISO8601")
    if when.isna().any():
        example = frame.loc[when.isna(), "labelled_at"].iloc[0]
        raise DataContractError(
            f"{path}: {int(when.isna().sum())} row(s) whose labelled_at is not an ISO time, "
            f"e.g. {example!r}",
            table="alert_labels",
            column="labelled_at",
            check="bad_time",
            bad_rows=int(when.isna().sum()),
            example=example,
        )
    out = frame[LABEL_COLUMNS].astype("str")
    out["labelled_at"] = when.astype("datetime64[s, UTC]")
    return out.reset_index(drop=True)


def latest_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """The label in force for each labelled alert: its latest (ties: the later line).

    Parameters
    ----------
    labels : pandas.DataFrame
        :func:`read_labels` rows.

    Returns
    -------
    pandas.DataFrame
        One row per ``alert_id``, :data:`LABEL_COLUMNS`.

    Examples
    --------
    >>> labels = pd.DataFrame({"labelled_at": pd.to_datetime(["2026-11-23", "2026-11-24"], utc=True),
    ...                        "alert_id": ["a", "a"], "label": ["false_alarm", "confirmed"],
    ...                        "note": ["", ""], "by": ["", ""]})
    >>> latest_labels(labels)["label"].tolist()
    ['confirmed']
    """
    if labels is None or not len(labels):
        return _empty_labels()
    order = labels.reset_index(drop=True).assign(_line=lambda f: np.arange(len(f)))
    order = order.sort_values(["labelled_at", "_line"], kind="stable")
    return order.groupby("alert_id", sort=True).tail(1)[LABEL_COLUMNS].reset_index(drop=True)


def label_alert(
    reports_dir: str | os.PathLike[str],
    alert_id: str,
    label: str,
    *,
    note: str = "",
    by: str = "",
    labelled_at: datetime | None = None,
) -> AlertLabel:
    """Label a stored alert: append one line to ``alert_labels.csv``.

    Parameters
    ----------
    reports_dir : str or path
        The reports folder holding ``alerts.parquet``.
    alert_id : str
        An id from the store (``qualitylab alerts list``).
    label : {"confirmed", "expected", "false_alarm", "new_normal"}
        ``false_alarm``/``expected`` mute the alert while it continues;
        ``new_normal`` re-baselines its series (:func:`rebaselines`);
        ``confirmed`` keeps it.
    note, by : str, optional
        Free text: why, and who.
    labelled_at : datetime, optional
        Default now (UTC).

    Returns
    -------
    AlertLabel
        The line written.

    Raises
    ------
    ParameterError
        For a missing reports folder, a folder without a store, an unknown
        alert id or an unknown label; nothing is written.

    Notes
    -----
    The file is rewritten whole, with the new line at its end, to a temporary
    file renamed over it, so a kill mid-way leaves the previous file; its
    earlier lines are never changed.

    Examples
    --------
    >>> import tempfile
    >>> label_alert(tempfile.mkdtemp(), "SG-1", "confirmed")
    Traceback (most recent call last):
    ...
    qualitylab.errors.ParameterError: no alert store in ... (alerts.parquet): run `qualitylab run` or `qualitylab replay` first
    """
    folder = _folder(reports_dir, must_exist=True)
    if label not in LABELS:
        raise ParameterError(
            f"unknown label {label!r} for alert {alert_id!r}: use one of {', '.join(LABELS)}",
            key="label",
        )
    with _locked(folder):
        if not (folder / STORE_FILE).is_file():
            raise ParameterError(
                f"no alert store in {str(folder)!r} ({STORE_FILE}): run `qualitylab run` "
                "or `qualitylab replay` first",
                key="reports",
            )
        ids = read_store(folder)["alert_id"]
        if alert_id not in set(ids):
            known = ids.drop_duplicates()
            example = f"; e.g. {known.iloc[-1]!r}" if len(known) else ""
            raise ParameterError(
                f"unknown alert id {alert_id!r}: not in {folder / STORE_FILE} "
                f"({len(known)} alerts{example})",
                key="alert_id",
            )
        read_labels(folder)  # a damaged file stops here, before anything is written
        when = (labelled_at or datetime.now(UTC)).astimezone(UTC)
        line = AlertLabel(
            when.strftime("%Y-%m-%dT%H:%M:%SZ"), str(alert_id), label, str(note), str(by)
        )
        path = folder / LABELS_FILE
        old = path.read_bytes() if path.is_file() else b""
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not old:
            writer.writerow(LABEL_COLUMNS)
        elif not old.endswith(b"\n"):
            buf.write("\n")
        writer.writerow([line.labelled_at, line.alert_id, line.label, line.note, line.by])
        data = old + buf.getvalue().encode("utf-8")
        _replace_atomic(path, lambda tmp: tmp.write_bytes(data))
    return line


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
        out[c] = _days(out[c])
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


def _rebaseline_dates(store: pd.DataFrame, labels: pd.DataFrame) -> dict[str, pd.Timestamp]:
    """alert_id -> re-baseline date, for alerts whose latest label is ``new_normal``."""
    cur = latest_labels(labels)
    ids = set(cur.loc[cur["label"] == "new_normal", "alert_id"])
    if not ids or not len(store):
        return {}
    starts = store[store["alert_id"].isin(ids)].groupby("alert_id")["start_date"].min()
    return {str(k): v for k, v in starts.items()}


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
    day = _day(as_of, "as_of")
    p0, p1 = _day(period[0], "period"), _day(period[1], "period")
    if p0 > p1:
        raise ParameterError(
            f"period starts after it ends: {p0.date()} > {p1.date()}", key="period"
        )
    cur = _check_alerts(alerts, market)
    scanned = len(cur) > 0 or not alerts.attrs.get("note")
    store = _conform(store) if len(store) else _empty_store()
    hist = store[(store["market"] == market) & (store["kind"] == kind) & (store["as_of"] != day)]
    hist = hist.assign(_line=np.arange(len(hist))).sort_values(["as_of", "_line"], kind="stable")
    prior, later = hist[hist["as_of"] < day], hist[hist["as_of"] > day]
    lab = latest_labels(labels if labels is not None else _empty_labels())
    lab_by_id = {r.alert_id: (r.label, r.note) for r in lab.itertuples(index=False)}
    rebase = _rebaseline_dates(store[store["market"] == market], lab)

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
            _SEVERITY_RANK.get(str(cur["severity"].iat[i]), 3),
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

    out = _conform(pd.DataFrame(rows)) if rows else _empty_store()
    out["run_id"] = str(run_id)
    out["kind"] = kind
    out["as_of"] = day
    out["market"] = market
    out["period_start"], out["period_end"] = p0, p1
    rank = out["status"].map({s: k for k, s in enumerate(STATUSES)})
    sev = out["severity"].map(_SEVERITY_RANK).fillna(3)
    out = out.assign(_r=rank, _s=sev).sort_values(["_r", "_s", "start_date"], kind="stable")
    return _conform(out.drop(columns=["_r", "_s"]))[STORE_COLUMNS]


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
    folder = _folder(reports_dir, must_exist=False)
    scanned_end = (alerts.attrs.get("scanned") or {}).get("end")
    if scanned_end:
        end = min(_day(period[1], "period"), _day(scanned_end, "period"))
        period = (period[0], max(end, _day(period[0], "period")))
    with _locked(folder):
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
        stale &= store["as_of"] == _day(as_of, "as_of")
        if len(rows) or stale.any():  # a rerun that finds nothing still replaces the date
            _commit(folder, store, rows, {(market, kind, _day(as_of, "as_of"))})
    return rows


# --------------------------------------------------------------------------- #
# reading the store
# --------------------------------------------------------------------------- #
def _check_statuses(status: str | Sequence[str] | None) -> list[str] | None:
    if status is None:
        return None
    wanted = [s.strip() for s in ([status] if isinstance(status, str) else status)]
    wanted = [w for s in wanted for w in s.split(",") if w.strip()]
    bad = [s for s in wanted if s not in STATUSES]
    if bad:
        raise ParameterError(f"unknown status {bad[0]!r}: use {', '.join(STATUSES)}", key="status")
    return wanted


def latest_alerts(
    store: pd.DataFrame,
    labels: pd.DataFrame | None = None,
    *,
    market: str | None = None,
    status: str | Sequence[str] | None = None,
) -> pd.DataFrame:
    """The latest row of each alert, with the labels in force now.

    Parameters
    ----------
    store : pandas.DataFrame
        :func:`read_store` rows.
    labels : pandas.DataFrame, optional
        :func:`read_labels` rows: ``label``/``label_note`` are the latest
        label now, and an alert whose last run saw it continue (``new``,
        ``ongoing``) under a ``false_alarm``/``expected`` label is shown
        ``muted`` (a ``muted`` one relabelled ``confirmed`` is ``ongoing``).
    market : str, optional
    status : str or sequence of str, optional
        Keep these statuses (comma-separated text accepted).

    Returns
    -------
    pandas.DataFrame
        :data:`LIST_COLUMNS` then the other store columns, one row per alert
        (from the run with the latest ``as_of``); ``first_seen``/``last_seen``
        are the first and last run dates that raised it. Ranked by market,
        status (new, ongoing, muted, resolved), severity and start date.

    Examples
    --------
    >>> latest_alerts(read_store("/nonexistent")).columns[:4].tolist()
    ['alert_id', 'status', 'market', 'metric']
    """
    wanted = _check_statuses(status)
    frame = _conform(store) if len(store) else _empty_store()
    if market is not None:
        frame = frame[frame["market"] == market]
    frame = frame.assign(_line=np.arange(len(frame)))
    frame = frame.sort_values(["as_of", "_line"], kind="stable")
    raised = frame[frame["status"] != "resolved"].groupby("alert_id")["as_of"]
    first, last = raised.min(), raised.max()
    out = frame.groupby("alert_id").tail(1).drop(columns="_line").set_index("alert_id", drop=False)
    out["first_seen"] = first.reindex(out.index).fillna(out["first_seen"])
    out["last_seen"] = last.reindex(out.index).fillna(out["last_seen"])
    if labels is not None and len(labels):
        cur = latest_labels(labels).set_index("alert_id")
        has = out.index.isin(cur.index)
        out.loc[has, "label"] = cur["label"].reindex(out.index[has]).to_numpy()
        out.loc[has, "label_note"] = cur["note"].reindex(out.index[has]).to_numpy()
        mutes = out["label"].isin(MUTING_LABELS)
        out.loc[mutes & out["status"].isin(["new", "ongoing"]), "status"] = "muted"
        out.loc[~mutes & (out["status"] == "muted"), "status"] = "ongoing"
    out = _conform(out.reset_index(drop=True))
    if wanted is not None:
        out = out[out["status"].isin(wanted)]
    rank = out["status"].map({s: k for k, s in enumerate(STATUSES)})
    sev = out["severity"].map(_SEVERITY_RANK).fillna(3)
    out = out.assign(_r=rank, _s=sev).sort_values(
        ["market", "_r", "_s", "start_date", "alert_id"], kind="stable"
    )
    cols = [*LIST_COLUMNS, *[c for c in out.columns if c not in LIST_COLUMNS and c[0] != "_"]]
    return out[cols].reset_index(drop=True)


def alerts_csv(frame: pd.DataFrame) -> str:
    """Alerts (e.g. :func:`latest_alerts`) as CSV text, dates as ``YYYY-MM-DD``.

    Text that a spreadsheet would run as a formula (starting with
    ``= + - @``, tab or carriage return) is prefixed with ``'``: segment names
    come from data.

    Examples
    --------
    >>> print(alerts_csv(pd.DataFrame({"segment": ["=HYPERLINK(1)", "a,b"],
    ...                                "start_date": pd.to_datetime(["2026-11-02"] * 2)})), end="")
    segment,start_date
    '=HYPERLINK(1),2026-11-02
    "a,b",2026-11-02
    """
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].dt.strftime("%Y-%m-%d")
        elif pd.api.types.is_string_dtype(out[c]) or out[c].dtype == object:
            out[c] = out[c].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    return out.to_csv(index=False, lineterminator="\n")


def status_counts(store: pd.DataFrame, labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """Alerts per market and status, from :func:`latest_alerts`.

    Returns
    -------
    pandas.DataFrame
        ``market, status, alerts`` (every status of :data:`STATUSES` per
        market, 0 when none).

    Examples
    --------
    >>> status_counts(read_store("/nonexistent")).columns.tolist()
    ['market', 'status', 'alerts']
    """
    latest = latest_alerts(store, labels)
    markets = sorted(latest["market"].dropna().unique())
    grid = pd.MultiIndex.from_product([markets, STATUSES], names=["market", "status"])
    counts = latest.groupby(["market", "status"]).size().reindex(grid, fill_value=0)
    return counts.rename("alerts").reset_index().astype({"alerts": "int64"})


def rebaselines(
    store: pd.DataFrame, labels: pd.DataFrame | None, *, market: str
) -> dict[tuple[str, str, str], date]:
    """Series to re-baseline for a market's scan: alerts whose latest label is ``new_normal``.

    Parameters
    ----------
    store : pandas.DataFrame
        :func:`read_store` rows.
    labels : pandas.DataFrame or None
        :func:`read_labels` rows.
    market : str

    Returns
    -------
    dict
        ``{(metric, dimension, segment): date}`` for
        ``qualitylab.detect.scan(rebaseline=...)``: the series is judged only
        on data from that date, the first day of the alert's window (the
        earliest stored ``start_date``), when the new level began, so the new
        level is its own baseline and stops alerting while a later shift is
        still found. Where several such alerts share a series, the latest date.

    Examples
    --------
    >>> rebaselines(read_store("/nonexistent"), None, market="SG")
    {}
    """
    if labels is None or not len(labels) or not len(store):
        return {}
    frame = _conform(store)
    frame = frame[(frame["market"] == market) & (frame["kind"] != "queue")]
    out: dict[tuple[str, str, str], date] = {}
    for aid, since in _rebaseline_dates(frame, labels).items():
        r = frame[frame["alert_id"] == aid].iloc[-1]
        key = (str(r["metric"]), str(r["dimension"]), str(r["segment"]))
        day = since.date()
        out[key] = max(out.get(key, day), day)
    return out


def alert_precision(
    store: pd.DataFrame, labels: pd.DataFrame | None, *, confidence_level: float = 0.95
) -> pd.DataFrame:
    """Share of labelled alerts that were confirmed, per metric and per detector.

    Parameters
    ----------
    store : pandas.DataFrame
        :func:`read_store` rows (each alert's metric and detector are taken
        from its latest row).
    labels : pandas.DataFrame or None
        :func:`read_labels` rows; an alert counts once, with its latest label.
        Labels of ids not in the store are left out.
    confidence_level : float, default 0.95

    Returns
    -------
    pandas.DataFrame
        :data:`PRECISION_COLUMNS`: ``by`` (``"all"``, ``"metric"``,
        ``"detector"``), ``group``, ``n`` labelled alerts, the count with each
        label, ``precision`` = confirmed / n and its Wilson interval
        ``ci_low``/``ci_high`` (:func:`qualitylab.stats.proportion_ci`).

    Notes
    -----
    Following ThirdEye, every label other than ``confirmed`` counts against
    precision (``expected`` and ``new_normal`` alerts found a real change, but
    not one that needed action); their counts are shown beside it.

    Examples
    --------
    >>> alert_precision(read_store("/nonexistent"), None).columns.tolist()[:4]
    ['by', 'group', 'n', 'confirmed']
    """
    from qualitylab.measure.stats import proportion_ci

    latest = latest_alerts(store)[["alert_id", "metric", "detector"]]
    cur = latest_labels(labels if labels is not None else _empty_labels())
    merged = latest.merge(cur[["alert_id", "label"]], on="alert_id", how="inner")
    dtypes = {"by": "str", "group": "str", **{c: "int64" for c in ("n", *LABELS)}}
    if not len(merged):
        empty = {c: pd.Series([], dtype=dtypes.get(c, "float64")) for c in PRECISION_COLUMNS}
        return pd.DataFrame(empty)
    parts = [merged.assign(by="all", group="all")]
    parts += [merged.assign(by=col, group=merged[col]) for col in ("metric", "detector")]
    long = pd.concat(parts, ignore_index=True)
    counts = pd.crosstab([long["by"], long["group"].fillna("")], long["label"])
    counts = counts.reindex(columns=list(LABELS), fill_value=0)
    counts["n"] = counts[list(LABELS)].sum(axis=1)
    out = counts.reset_index()
    out["precision"] = out["confirmed"] / out["n"]
    ci = proportion_ci(
        out["confirmed"].to_numpy(), out["n"].to_numpy(), confidence_level=confidence_level
    )
    out["ci_low"], out["ci_high"] = ci.low, ci.high
    order = {"all": 0, "metric": 1, "detector": 2}
    out = out.assign(_o=out["by"].map(order)).sort_values(
        ["_o", "n", "group"], ascending=[True, False, True]
    )
    out = out[PRECISION_COLUMNS].reset_index(drop=True)
    out.columns.name = None
    return out.astype(dtypes)
