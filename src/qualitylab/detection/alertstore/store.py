"""The alert store's file: ``alerts.parquet``, its columns, reading it and writing it.

One row per alert per run and market (:data:`STORE_COLUMNS`). :func:`commit`
replaces a run's rows (a market, kind and report date) and :func:`append` adds
event rows (the queue watch); both write a temporary file renamed over the
store, under the store's own lock (:func:`store_lock`), so a run killed mid-way
leaves the previous store. :func:`conform` gives any frame the store's columns
and dtypes, :func:`as_day`/:func:`as_days` give dates the store's form; the
package's other modules use them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError

#: The store's file name in the reports folder.
STORE_FILE = "alerts.parquet"

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


def empty_store() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype=_dtype(c)) for c in STORE_COLUMNS})


def as_days(values: Any) -> pd.Series:
    """Dates (date, ISO text, Timestamp) as ``datetime64[s]`` at midnight."""
    s = pd.Series(values) if not isinstance(values, pd.Series) else values
    out = pd.to_datetime(s, errors="raise")
    if isinstance(out.dtype, pd.DatetimeTZDtype):
        out = out.dt.tz_localize(None)
    return out.dt.normalize().astype("datetime64[s]")


def as_day(value: date | str | pd.Timestamp, what: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError):
        raise ParameterError(f"{what} is not a date (YYYY-MM-DD): {value!r}", key=what) from None
    if pd.isna(ts):
        raise ParameterError(f"{what} is not a date (YYYY-MM-DD): {value!r}", key=what)
    return ts.tz_localize(None).normalize() if ts.tzinfo else ts.normalize()


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with every store column, in order and with the store's dtypes."""
    out = frame.copy()
    for c in STORE_COLUMNS:
        if c not in out.columns:
            out[c] = pd.Series(np.nan, index=out.index)
        if c in _DATES:
            out[c] = as_days(out[c]) if len(out) else out[c].astype("datetime64[s]")
        elif c in _FLOATS:
            out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
        else:
            out[c] = out[c].astype("str")  # missing stays missing (NaN)
    extra = [c for c in out.columns if c not in STORE_COLUMNS]
    return out[[*STORE_COLUMNS, *extra]].reset_index(drop=True)


def reports_folder(reports_dir: str | os.PathLike[str], *, must_exist: bool) -> Path:
    path = Path(reports_dir)
    if must_exist and not path.is_dir():
        raise ParameterError(f"reports folder {str(path)!r} does not exist", key="reports")
    return path


@contextlib.contextmanager
def store_lock(folder: Path) -> Iterator[None]:
    """Hold the store's own lock (not the runner's), so writers take turns."""
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / _LOCK, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def replace_atomic(path: Path, write: Any) -> None:
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
        return empty_store()
    import pyarrow.parquet as pq

    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as exc:  # a damaged file: say which
        raise DataContractError(
            f"{path}: cannot read the alert store ({type(exc).__name__}: {exc})",
            table="alerts",
        ) from None
    return conform(frame)


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
    replace_atomic(path, lambda tmp: pq.write_table(table, tmp))


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
    folder = reports_folder(reports_dir, must_exist=False)
    also = {(str(m), kind, as_day(d, "as_of")) for m, d in (runs or ())}
    with store_lock(folder):
        return commit_rows(folder, read_store(folder), rows, also)


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
    folder = reports_folder(reports_dir, must_exist=False)
    with store_lock(folder):
        store = read_store(folder)
        new = rows(store) if callable(rows) else rows
        new = conform(new) if len(new) else empty_store()
        if len(new):
            missing = new[["market", "kind", "as_of", "alert_id"]].isna().any(axis=1)
            if missing.any():
                raise ParameterError(
                    f"{int(missing.sum())} row(s) to append without market, kind, as_of "
                    "or alert_id",
                    key="rows",
                )
            parts = [f for f in (store, new) if len(f)]
            _write_store(folder / STORE_FILE, conform(pd.concat(parts, ignore_index=True)))
    return new


def commit_rows(
    folder: Path, store: pd.DataFrame, rows: pd.DataFrame, also: set[tuple] | None = None
) -> Path:
    missing = [c for c in ("market", "kind", "as_of", "alert_id") if c not in rows.columns]
    if missing:
        raise ParameterError(
            f"rows to commit lack store column(s) {missing}; expected {', '.join(STORE_COLUMNS)}",
            key="rows",
        )
    new = conform(rows)
    runs = set(zip(new["market"], new["kind"], new["as_of"], strict=True)) | (also or set())
    if runs:
        keys = list(zip(store["market"], store["kind"], store["as_of"], strict=True))
        store = store[[k not in runs for k in keys]]
    parts = [f for f in (store, new) if len(f)]
    out = pd.concat(parts, ignore_index=True) if parts else empty_store()
    path = folder / STORE_FILE
    _write_store(path, conform(out))
    return path
