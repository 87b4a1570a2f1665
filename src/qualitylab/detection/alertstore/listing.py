"""Reading the store: each alert's latest row, counts per status, CSV text, alert precision."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from qualitylab.detection.alertstore.labels import (
    LABELS,
    MUTING_LABELS,
    empty_labels,
    latest_labels,
)
from qualitylab.detection.alertstore.lifecycle import SEVERITY_RANK, STATUSES
from qualitylab.detection.alertstore.store import conform, empty_store
from qualitylab.errors import ParameterError

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
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


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
    >>> from qualitylab.detection.alertstore.store import read_store
    >>> latest_alerts(read_store("/nonexistent")).columns[:4].tolist()
    ['alert_id', 'status', 'market', 'metric']
    """
    wanted = _check_statuses(status)
    frame = conform(store) if len(store) else empty_store()
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
    out = conform(out.reset_index(drop=True))
    if wanted is not None:
        out = out[out["status"].isin(wanted)]
    rank = out["status"].map({s: k for k, s in enumerate(STATUSES)})
    sev = out["severity"].map(SEVERITY_RANK).fillna(3)
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
    >>> from qualitylab.detection.alertstore.store import read_store
    >>> status_counts(read_store("/nonexistent")).columns.tolist()
    ['market', 'status', 'alerts']
    """
    latest = latest_alerts(store, labels)
    markets = sorted(latest["market"].dropna().unique())
    grid = pd.MultiIndex.from_product([markets, STATUSES], names=["market", "status"])
    counts = latest.groupby(["market", "status"]).size().reindex(grid, fill_value=0)
    return counts.rename("alerts").reset_index().astype({"alerts": "int64"})


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
    >>> from qualitylab.detection.alertstore.store import read_store
    >>> alert_precision(read_store("/nonexistent"), None).columns.tolist()[:4]
    ['by', 'group', 'n', 'confirmed']
    """
    from qualitylab.measure.stats import proportion_ci

    latest = latest_alerts(store)[["alert_id", "metric", "detector"]]
    cur = latest_labels(labels if labels is not None else empty_labels())
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
