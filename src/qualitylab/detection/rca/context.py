"""Context around a segment: calibration scores and QA alignment, baseline against current."""

from __future__ import annotations

import warnings
from datetime import date

import ibis
import numpy as np
import pandas as pd

from qualitylab.data.localtime import period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.vocabulary import (
    DECISION_DIMENSIONS,
    check_periods,
    resolve_confidence,
)
from qualitylab.errors import ParameterError
from qualitylab.measure import metrics as m
from qualitylab.measure import scope
from qualitylab.measure.scope import Period
from qualitylab.measure.stats import (
    proportion_ci,
)

__all__ = ["CONTEXT_COLUMNS", "segment_context"]

CONTEXT_COLUMNS = [
    "metric",
    "dimension",
    "segment",
    "rater_group",
    "period",
    "value",
    "n",
    "ci_low",
    "ci_high",
]


def segment_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    *,
    current: tuple[date | str, date | str] | Period,
    baseline: tuple[date | str, date | str] | Period,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Calibration and QA alignment around a segment, baseline against current.

    Parameters
    ----------
    ds : Dataset
    market : str or None
    dimension, segment : str
        The segment, e.g. ``("vendor", "VendorC")`` or ``("policy", "scam")``.
    current, baseline : (start, end) or Period
    confidence_level : float, optional

    Returns
    -------
    pandas.DataFrame
        :data:`CONTEXT_COLUMNS`, long: ``calibration_score`` per rater group
        (the segment's vendors and ``internal`` as the reference; share of
        calibration labels matching ``expected_label``, Wilson interval) and,
        when some decisions were audited by both vendor and internal QA,
        ``qa_alignment``, ``qa_alignment_kappa`` and ``qa_leniency`` of the
        segment from :func:`qualitylab.metrics.qa_alignment`; ``period`` is
        ``baseline`` or ``current``. Empty when neither table is present.

    Notes
    -----
    The segment's vendors are the vendor itself, or the vendors whose
    decisions fall in the segment during the current period. For a ``policy``
    segment the calibration cases are those whose expected label is that
    policy.
    """
    allowed = (*DECISION_DIMENSIONS, "qa_policy")
    if dimension not in allowed:
        raise ParameterError(
            f"unknown dimension {dimension!r}; choose from {', '.join(allowed)}", key="dimension"
        )
    base, cur = check_periods(baseline, current)
    cl = resolve_confidence(ds, market, confidence_level)
    rows: list[pd.DataFrame] = []
    if ds.has("calibration"):
        vendors = _segment_vendors(ds, market, dimension, segment, cur)
        rows.append(_calibration_context(ds, market, dimension, segment, vendors, base, cur, cl))
    if ds.has("qa_audits") and dimension in scope.GRAINS:
        rows.append(_alignment_context(ds, market, dimension, segment, base, cur, cl))
    rows = [r for r in rows if len(r)]
    if not rows:
        return pd.DataFrame(columns=CONTEXT_COLUMNS)
    return pd.concat(rows, ignore_index=True)[CONTEXT_COLUMNS]


def _segment_vendors(
    ds: Dataset, market: str | None, dimension: str, segment: str, period: Period
) -> list[str]:
    if dimension == "vendor":
        return [segment]
    dec = m.decisions_in_period(ds, market=market, period=period)
    col = "policy" if dimension == "qa_policy" else dimension
    dec = dec.filter(dec[col].cast("string") == segment)
    return sorted(dec.select("vendor").distinct().to_pandas()["vendor"].tolist())


def _calibration_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    vendors: list[str],
    base: Period,
    cur: Period,
    cl: float,
) -> pd.DataFrame:
    cal = ds.table("calibration")
    if market is not None:
        cal = cal.filter(cal.market == market)
    tz = ds.params.market(market).timezone if market else "UTC"
    groups = [*vendors, "internal"]
    cal = cal.filter(cal.expected_label.notnull() & cal.rater_group.isin(groups))
    if dimension in ("policy", "qa_policy"):
        cal = cal.filter(cal.expected_label == segment)
    bounds = [period_bounds_utc(p.start, p.end, tz) for p in (base, cur)]
    per = ibis.cases(
        *[
            ((cal.held_at >= lo) & (cal.held_at < hi), ibis.literal(i))
            for i, (lo, hi) in enumerate(bounds)
        ],
        else_=ibis.null("int64"),
    )
    cal = cal.mutate(_period=per)
    cal = cal.filter(cal._period.notnull())
    agg = (
        cal.group_by(["rater_group", "_period"])
        .aggregate(n=cal.count(), k=(cal.label == cal.expected_label).cast("int64").sum())
        .to_pandas()
    )
    if agg.empty:
        return agg
    lo, hi = proportion_ci(agg["k"].to_numpy(float), agg["n"].to_numpy(float), confidence_level=cl)
    return pd.DataFrame(
        {
            "metric": "calibration_score",
            "dimension": dimension,
            "segment": segment,
            "rater_group": agg["rater_group"],
            "period": np.where(agg["_period"] == 0, "baseline", "current"),
            "value": agg["k"] / agg["n"],
            "n": agg["n"].astype(float),
            "ci_low": lo,
            "ci_high": hi,
        }
    ).sort_values(["rater_group", "period"], ascending=[True, True], kind="stable")


def _alignment_context(
    ds: Dataset,
    market: str | None,
    dimension: str,
    segment: str,
    base: Period,
    cur: Period,
    cl: float,
) -> pd.DataFrame:
    parts = []
    for which, p in (("baseline", base), ("current", cur)):
        with warnings.catch_warnings():
            # A period without double-audited decisions has no alignment row; the
            # context then shows calibration alone.
            warnings.filterwarnings(
                "ignore",
                message="no decision was audited by both vendor and internal QA",
                category=UserWarning,
            )
            al = m.qa_alignment(
                ds, market=market, by=[dimension], start=p.start, end=p.end, confidence_level=cl
            )
        al = al[al[dimension].astype(str) == segment]
        if al.empty:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "metric": al["metric"].to_numpy(),
                    "dimension": dimension,
                    "segment": segment,
                    "rater_group": None,
                    "period": which,
                    "value": al["value"].to_numpy(float),
                    "n": al["n"].to_numpy(float),
                    "ci_low": al["ci_low"].to_numpy(float),
                    "ci_high": al["ci_high"].to_numpy(float),
                }
            )
        )
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=CONTEXT_COLUMNS)
