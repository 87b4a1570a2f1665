"""Labels people give alerts: ``alert_labels.csv``, the label in force, and re-baselines.

The file is append-only and human-readable (:data:`LABEL_COLUMNS`); the
latest label of an alert wins (:func:`latest_labels`). ``false_alarm`` and
``expected`` mute an alert while it continues (:data:`MUTING_LABELS`);
``new_normal`` re-baselines its series from the alert's first day
(:func:`rebaselines`).
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from qualitylab.detection.alertstore.store import (
    STORE_FILE,
    conform,
    read_store,
    replace_atomic,
    reports_folder,
    store_lock,
)
from qualitylab.errors import DataContractError, ParameterError

#: The labels' file name in the reports folder.
LABELS_FILE = "alert_labels.csv"
#: Labels a person can give an alert.
LABELS = ("confirmed", "expected", "false_alarm", "new_normal")
#: Labels under which a continuing alert is shown ``muted``.
MUTING_LABELS = ("false_alarm", "expected")
#: Columns of ``alert_labels.csv``, in order.
LABEL_COLUMNS = ["labelled_at", "alert_id", "label", "note", "by"]


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


def empty_labels() -> pd.DataFrame:
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
        return empty_labels()
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
        return empty_labels()
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
    folder = reports_folder(reports_dir, must_exist=True)
    if label not in LABELS:
        raise ParameterError(
            f"unknown label {label!r} for alert {alert_id!r}: use one of {', '.join(LABELS)}",
            key="label",
        )
    with store_lock(folder):
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
        replace_atomic(path, lambda tmp: tmp.write_bytes(data))
    return line


def rebaseline_dates(store: pd.DataFrame, labels: pd.DataFrame) -> dict[str, pd.Timestamp]:
    """alert_id -> re-baseline date, for alerts whose latest label is ``new_normal``."""
    cur = latest_labels(labels)
    ids = set(cur.loc[cur["label"] == "new_normal", "alert_id"])
    if not ids or not len(store):
        return {}
    starts = store[store["alert_id"].isin(ids)].groupby("alert_id")["start_date"].min()
    return {str(k): v for k, v in starts.items()}


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
    frame = conform(store)
    frame = frame[(frame["market"] == market) & (frame["kind"] != "queue")]
    out: dict[tuple[str, str, str], date] = {}
    for aid, since in rebaseline_dates(frame, labels).items():
        r = frame[frame["alert_id"] == aid].iloc[-1]
        key = (str(r["metric"]), str(r["dimension"]), str(r["segment"]))
        day = since.date()
        out[key] = max(out.get(key, day), day)
    return out
