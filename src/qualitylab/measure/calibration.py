"""Policy calibration sessions: do raters agree, and do they match policy?

Calibration rows are few (sessions × cases × raters), so after the engine
filters them they are small enough to summarise in pandas.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure.agreement import agreement_from_long, fleiss_kappa, krippendorff_alpha
from qualitylab.measure.scope import METRIC_COLUMNS, as_date
from qualitylab.measure.stats import proportion_ci

__all__ = ["CalibrationSummary", "calibration_summary"]


@dataclass(frozen=True)
class CalibrationSummary:
    """Calibration results for one market and period.

    Attributes
    ----------
    sessions : pandas.DataFrame
        Per session: ``session_id, held_at, n_cases, n_raters, alpha,
        alpha_ci_low, alpha_ci_high, fleiss_kappa, kappa_ci_low, kappa_ci_high,
        calibration_score`` (share of ratings matching the expected label).
    raters : pandas.DataFrame
        Per rater: ``rater_id, rater_group, metric='calibration_score', value,
        n, ci_low, ci_high, small_n``.
    groups : pandas.DataFrame
        Per rater group (vendor, ``internal``, ``policy``): same columns.
    confusions : pandas.DataFrame
        The most confused label pairs: ``expected_label, label, count, share``
        (share of all ratings of that expected label).
    """

    sessions: pd.DataFrame
    raters: pd.DataFrame
    groups: pd.DataFrame
    confusions: pd.DataFrame


def _score(df: pd.DataFrame, keys: list[str], min_n: int, cl: float) -> pd.DataFrame:
    scored = df[df["expected_label"].notna()]
    agg = scored.groupby(keys, sort=True).agg(k=("match", "sum"), n=("match", "size")).reset_index()
    lo, hi = proportion_ci(agg["k"].to_numpy(float), agg["n"].to_numpy(float), confidence_level=cl)
    agg["metric"] = "calibration_score"
    agg["value"] = agg["k"] / agg["n"]
    agg["ci_low"], agg["ci_high"] = lo, hi
    agg["n"] = agg["n"].astype(float)
    agg["small_n"] = agg["n"] < min_n
    return agg[[*keys, *METRIC_COLUMNS]]


def calibration_summary(
    ds: Dataset,
    market: str,
    *,
    start: date | str | None = None,
    end: date | str | None = None,
    n_boot: int = 500,
    seed: int = 0,
    top: int = 10,
) -> CalibrationSummary:
    """Summarise calibration sessions per session, rater, group and label pair.

    Parameters
    ----------
    ds : Dataset
        Must hold ``calibration``.
    market : str
    start, end : date or ISO string, optional
        Sessions held on these market-local dates (default: all).
    n_boot : int, default 500
        Bootstrap replicates for Krippendorff's alpha intervals.
    seed : int, default 0
    top : int, default 10
        How many confused label pairs to return.

    Returns
    -------
    CalibrationSummary

    Notes
    -----
    Per session, inter-rater reliability is Krippendorff's alpha (nominal,
    missing ratings allowed, bootstrap interval over cases) and Fleiss' kappa
    (asymptotic interval). ``calibration_score`` is the share of a rater's
    labels that match ``expected_label`` (the policy team's answer) with a
    Wilson interval; cases without an expected label are left out of it.
    """
    if not ds.has("calibration"):
        raise QualityLabError("calibration is not in the dataset; calibration results need it")
    mp = ds.params.market(market)
    cal = ds.table("calibration")
    cal = cal.filter(cal.market == market).to_pandas()
    cal["date"] = pd.to_datetime(cal["held_at"], utc=True).dt.tz_convert(mp.tz).dt.date
    s, e = as_date(start), as_date(end)
    if s is not None:
        cal = cal[cal["date"] >= s]
    if e is not None:
        cal = cal[cal["date"] <= e]
    if cal.empty:
        when = f" in {s or '...'}..{e or '...'}" if (s or e) else ""
        raise QualityLabError(f"no calibration sessions for market {market}{when}")
    cal["match"] = cal["label"] == cal["expected_label"]
    cl = mp.confidence_level

    sessions = []
    for sid, g in cal.groupby("session_id", sort=True):
        rd = agreement_from_long(g, item="case_id", rater="rater_id", label="label")
        with warnings.catch_warnings():
            # a session where every rater gave the same label (or no case was rated
            # twice) has no alpha or kappa: its row shows NaN, which says so
            warnings.filterwarnings(
                "ignore",
                message="(Krippendorff's alpha|Fleiss' kappa) is undefined",
                category=RuntimeWarning,
            )
            alpha = krippendorff_alpha(
                rd.data, level="nominal", n_boot=n_boot, seed=seed, confidence_level=cl
            )
            kappa = fleiss_kappa(rd.counts(), confidence_level=cl)
        scored = g[g["expected_label"].notna()]
        sessions.append(
            {
                "session_id": sid,
                "held_at": g["held_at"].min(),
                "n_cases": g["case_id"].nunique(),
                "n_raters": g["rater_id"].nunique(),
                "alpha": alpha.statistic,
                "alpha_ci_low": alpha.ci_low,
                "alpha_ci_high": alpha.ci_high,
                "fleiss_kappa": kappa.statistic,
                "kappa_ci_low": kappa.ci_low,
                "kappa_ci_high": kappa.ci_high,
                "calibration_score": scored["match"].mean() if len(scored) else np.nan,
            }
        )
    wrong = cal[cal["expected_label"].notna() & ~cal["match"]]
    totals = cal[cal["expected_label"].notna()].groupby("expected_label").size()
    conf = (
        wrong.groupby(["expected_label", "label"]).size().rename("count").reset_index()
        if len(wrong)
        else pd.DataFrame(columns=["expected_label", "label", "count"])
    )
    conf["share"] = conf["count"] / conf["expected_label"].map(totals).astype(float)
    conf = conf.sort_values(["count", "share"], ascending=False).head(top).reset_index(drop=True)
    return CalibrationSummary(
        sessions=pd.DataFrame(sessions),
        raters=_score(cal, ["rater_id", "rater_group"], mp.min_n, cl),
        groups=_score(cal, ["rater_group"], mp.min_n, cl),
        confusions=conf,
    )
