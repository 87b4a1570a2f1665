"""The scan's tables: ``alerts.csv``, and the skipped and re-baselined series."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from qualitylab.detection.detect.vocabulary import (
    ALERT_COLUMNS,
    REBASELINED_COLUMNS,
    SKIPPED_COLUMNS,
)
from qualitylab.errors import ParameterError


def skipped_series(alerts: pd.DataFrame) -> pd.DataFrame:
    """The series a scan skipped as too small to judge, as a tidy table.

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan`.

    Returns
    -------
    pandas.DataFrame
        :data:`SKIPPED_COLUMNS`, one row per skipped series (empty when the
        frame carries no scan metadata, e.g. after ``pd.concat``).

    Examples
    --------
    >>> skipped_series(pd.DataFrame(columns=ALERT_COLUMNS)).columns.tolist()
    ['market', 'metric', 'dimension', 'segment', 'reason', 'n', 'days']
    """
    return pd.DataFrame(alerts.attrs.get("skipped", []), columns=SKIPPED_COLUMNS)


def rebaselined_series(alerts: pd.DataFrame) -> pd.DataFrame:
    """The series a scan re-baselined (its ``rebaseline`` argument), as a tidy table.

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan`.

    Returns
    -------
    pandas.DataFrame
        :data:`REBASELINED_COLUMNS`, one row per key of ``rebaseline``:
        ``from`` (the date, ISO), ``days`` (days from it to the end of the
        scan), ``rule`` (``"full"``, ``"young"``, ``"none"``: not judged, or
        ``"unknown"``: no such series, ignored) and ``note``. Empty when the
        scan had no ``rebaseline`` or the frame carries no scan metadata.

    Examples
    --------
    >>> rebaselined_series(pd.DataFrame(columns=ALERT_COLUMNS)).columns.tolist()
    ['market', 'metric', 'dimension', 'segment', 'from', 'days', 'rule', 'note']
    """
    return pd.DataFrame(alerts.attrs.get("rebaselined", []), columns=REBASELINED_COLUMNS)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def write_alerts(alerts: pd.DataFrame, path: str | Path) -> Path:
    """Write alerts as ``alerts.csv`` (contract columns first, ISO dates).

    Parameters
    ----------
    alerts : pandas.DataFrame
        The result of :func:`scan` (extra columns are kept after the contract).
    path : str or path
        File to write; parent folders are created.

    Returns
    -------
    pathlib.Path
        The file written.

    Notes
    -----
    Text cells that a spreadsheet would run as a formula (starting with
    ``= + - @``, tab or carriage return) are prefixed with ``'``, since segment
    names and event descriptions come from data.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> empty = pd.DataFrame(columns=ALERT_COLUMNS)
    >>> p = write_alerts(empty, pathlib.Path(tempfile.mkdtemp()) / "alerts.csv")
    >>> p.read_text().strip() == ",".join(ALERT_COLUMNS)
    True
    """
    missing = [c for c in ALERT_COLUMNS if c not in alerts.columns]
    if missing:
        raise ParameterError(
            f"alerts lacks contract column(s) {missing}; expected {', '.join(ALERT_COLUMNS)}",
            key="alerts",
        )
    out = alerts[[*ALERT_COLUMNS, *[c for c in alerts.columns if c not in ALERT_COLUMNS]]].copy()
    for c in ("start_date", "end_date"):
        out[c] = pd.to_datetime(out[c]).dt.strftime("%Y-%m-%d")
    for c in out.columns:
        if out[c].dtype == object or pd.api.types.is_string_dtype(out[c]):
            out[c] = out[c].map(
                lambda v: "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v
            )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(target, index=False)
    return target
