"""Policy rollout tracking: did a policy change land, where, and when did it settle?

For a ``policy_change`` event (``events`` table), :func:`rollout` compares, per
vendor x site and overall, the accuracy on the affected policy before and after
the change, finds the day accuracy recovered to its baseline, summarises the
calibration results on that policy since the change, and lists who needs a
case alignment session.

*Accuracy on the affected policy* is the QA accuracy of decisions whose decided
policy or QA policy is the changed policy: over-enforcing it (applying it where
QA says no violation) and missing it (QA says it applies, the decision does
not) both count. Audits are joined and aggregated per vendor x site x day in
the engine; the statistics run on those aggregates.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date, timedelta

import ibis
import numpy as np
import pandas as pd

from qualitylab.data.localtime import local_date, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure.metrics import (
    STRATUM_SUMS,
    audited_decisions,
    design_rates,
    stratum_key,
)
from qualitylab.measure.scope import Period, as_date, resolve_period
from qualitylab.measure.stats import (
    compare_proportions,
    proportion_ci,
    proportion_difference_ci,
)

__all__ = [
    "ACCURACY_COLUMNS",
    "ALIGNMENT_COLUMNS",
    "CALIBRATION_COLUMNS",
    "DAILY_COLUMNS",
    "RolloutResult",
    "policy_changes",
    "rollout",
]

ALL = "all"
#: Columns of :attr:`RolloutResult.by_segment` and :attr:`RolloutResult.overall`.
ACCURACY_COLUMNS = [
    "vendor",
    "site",
    "n_before",
    "accuracy_before",
    "ci_low_before",
    "ci_high_before",
    "n_after",
    "accuracy_after",
    "ci_low_after",
    "ci_high_after",
    "difference",
    "diff_ci_low",
    "diff_ci_high",
    "pvalue",
    "significantly_below",
    "dipped",
    "recovered_on",
    "recovery_days",
    "recovery",
]
#: Columns of :attr:`RolloutResult.daily`.
DAILY_COLUMNS = [
    "vendor",
    "site",
    "date",
    "n",
    "accuracy",
    "ci_low",
    "ci_high",
    "baseline",
    "diff_ci_high",
    "significantly_below",
]
#: Columns of :attr:`RolloutResult.calibration`.
CALIBRATION_COLUMNS = [
    "rater_group",
    "period",
    "n",
    "cases",
    "calibration_score",
    "ci_low",
    "ci_high",
    "bar",
    "significantly_below_bar",
]
#: Columns of :attr:`RolloutResult.alignment`.
ALIGNMENT_COLUMNS = ["vendor", "site", "reason", "evidence"]


@dataclass(frozen=True)
class RolloutResult:
    """How a policy change landed in one market.

    Attributes
    ----------
    market, policy : str
    effective : date
        Market-local date the change took effect (day 0).
    description : str
        The event's description (text from the data).
    baseline, after : Period
        Dates compared: ``baseline_days`` before the change, and from the
        change to the end of the data.
    window_days : int
        Length of the rolling window used for recovery.
    overall : pandas.DataFrame
        One row (vendor and site ``"all"``) of :data:`ACCURACY_COLUMNS`.
    by_segment : pandas.DataFrame
        One row per vendor x site, same columns.
    daily : pandas.DataFrame
        Rolling accuracy per segment (``"all"`` included) and day since the
        change: :data:`DAILY_COLUMNS`.
    calibration : pandas.DataFrame
        Calibration on the policy per rater group, ``before`` and ``after``
        the change: :data:`CALIBRATION_COLUMNS`.
    alignment : pandas.DataFrame
        Who needs a case alignment session and why: :data:`ALIGNMENT_COLUMNS`.
    """

    market: str
    policy: str
    effective: date
    description: str
    baseline: Period
    after: Period
    window_days: int
    overall: pd.DataFrame
    by_segment: pd.DataFrame
    daily: pd.DataFrame
    calibration: pd.DataFrame
    alignment: pd.DataFrame


def policy_changes(ds: Dataset, market: str) -> pd.DataFrame:
    """Policy changes effective in a market (its own and the global ``*`` ones).

    Returns
    -------
    pandas.DataFrame
        ``effective_at, date (market-local), market, policy, description``,
        oldest first.
    """
    if not ds.has("events"):
        raise QualityLabError("events is not in the dataset; policy rollout tracking needs it")
    tz = ds.params.market(market).timezone
    ev = ds.table("events")
    ev = ev.filter((ev.kind == "policy_change") & ev.market.isin([market, "*"]))
    ev = ev.mutate(date=local_date(ev.effective_at, tz))
    out = ev.select("effective_at", "date", "market", "policy", "description").to_pandas()
    out["date"] = pd.to_datetime(out["date"]).dt.date
    return out.sort_values("effective_at", kind="stable").reset_index(drop=True)


def _pick_event(ds: Dataset, market: str, policy: str | None, effective: date | None) -> pd.Series:
    ev = policy_changes(ds, market)
    if policy is not None:
        ev = ev[ev["policy"] == policy]
    if effective is not None:
        ev = ev[ev["date"] == effective]
    if ev.empty:
        what = " ".join(
            x
            for x in (
                f"policy={policy!r}" if policy else "",
                f"on {effective}" if effective else "",
            )
            if x
        )
        raise QualityLabError(f"no policy_change event for {market} {what}".strip())
    return ev.iloc[-1]


def _weighted(sums: pd.DataFrame, keys: list[str], cl: float) -> pd.DataFrame:
    """Accuracy per `keys` from per-stratum sums (:func:`~qualitylab.metrics.design_rates`).

    Indexed by `keys`: ``n, accuracy, ci_low, ci_high``, ``n_eff`` (the design
    effective sample size; the audit count for equal weights) and
    ``k_eff = accuracy * n_eff``, the effective counts the comparisons use.
    """
    dr = design_rates(sums, keys, cl).set_index(keys)
    out = dr[["n"]].copy()
    out["accuracy"] = dr["value"]
    out["ci_low"], out["ci_high"] = dr["ci_low"], dr["ci_high"]
    out["n_eff"] = np.nan_to_num(dr["n_eff"].to_numpy(float))
    out["k_eff"] = np.nan_to_num(out["accuracy"].to_numpy(float) * out["n_eff"].to_numpy())
    return out


_SUMS = list(STRATUM_SUMS)


def _compare(after: pd.Series, before: pd.Series, cl: float) -> dict[str, float]:
    """after - before on effective counts: Newcombe interval, one-sided p (after < before)."""
    if not (after["n_eff"] > 0 and before["n_eff"] > 0):
        return {
            "difference": np.nan,
            "diff_ci_low": np.nan,
            "diff_ci_high": np.nan,
            "pvalue": np.nan,
        }
    lo, hi = proportion_difference_ci(
        after["k_eff"], after["n_eff"], before["k_eff"], before["n_eff"], confidence_level=cl
    )
    res = compare_proportions(
        after["k_eff"], after["n_eff"], before["k_eff"], before["n_eff"],
        alternative="less", method="z", confidence_level=cl,
    )  # fmt: skip
    return {
        "difference": after["accuracy"] - before["accuracy"],
        "diff_ci_low": float(lo),
        "diff_ci_high": float(hi),
        "pvalue": res.pvalue,
    }


def _recovery(
    days: pd.DataFrame, base: pd.Series, effective: date, end: date, window: int, cl: float
) -> tuple[pd.DataFrame, date | None, bool]:
    """Rolling accuracy after the change vs the baseline; the day it recovered.

    Returns the daily frame, the recovery date (None = not yet) and whether the
    rolling accuracy was ever significantly below the baseline.
    """
    dates = [effective + timedelta(days=i) for i in range((end - effective).days + 1)]
    # each day's rows join the windows of the next `window` days; summed per window in the
    # rows' order (as a window's own rows would be)
    pos = np.asarray([(d - effective).days for d in days["date"]], dtype=np.int64)
    spread = days[["_stratum", *_SUMS]].assign(_row=np.arange(len(days)))
    spread = pd.concat([spread.assign(_day=pos + k) for k in range(window)], ignore_index=True)
    spread = spread[spread["_day"] < len(dates)].sort_values(["_day", "_row"], kind="stable")
    roll = spread.groupby(["_day", "_stratum"], as_index=False)[_SUMS].sum()
    roll["date"] = np.asarray(dates, dtype=object)[roll["_day"].to_numpy()]
    roll = roll[["_stratum", *_SUMS, "date"]]
    stats = (
        _weighted(roll, ["date"], cl).reindex(dates)
        if len(roll)
        else pd.DataFrame(index=dates, columns=["n", "accuracy", "ci_low", "ci_high"], dtype=float)
    )
    out = pd.DataFrame({"date": dates})
    out["n"] = stats["n"].fillna(0.0).to_numpy(float)
    for c in ("accuracy", "ci_low", "ci_high"):
        out[c] = stats[c].to_numpy(float)
    out["baseline"] = base["accuracy"]
    # _compare's upper limit, for the days with audits (NaN where either side has none)
    high = np.full(len(out), np.nan)
    if "n_eff" in stats and base["n_eff"] > 0:
        ok = (out["n"].to_numpy() > 0) & (stats["n_eff"].to_numpy(float) > 0)
        if ok.any():
            high[ok] = proportion_difference_ci(
                stats["k_eff"].to_numpy(float)[ok],
                stats["n_eff"].to_numpy(float)[ok],
                base["k_eff"],
                base["n_eff"],
                confidence_level=cl,
            )[1]
    out["diff_ci_high"] = high
    below = (out["diff_ci_high"] < 0).to_numpy()
    out["significantly_below"] = below
    if not len(out):
        return out, None, False
    if below[-1]:
        return out, None, bool(below.any())
    last_below = np.flatnonzero(below)
    recovered = dates[last_below[-1] + 1] if len(last_below) else effective
    return out, recovered, bool(below.any())


def _segment_sums(
    ds: Dataset,
    market: str,
    policy: str,
    span: Period,
    qa_source: str,
    human_only: bool,
    strata: str,
) -> pd.DataFrame:
    j = audited_decisions(ds, market=market, period=span, qa_source=qa_source)
    j = j.filter((j.policy == policy) | (j.qa_policy == policy))
    if human_only:
        j = j.filter(j.routing != "ai_auto")
    j = j.mutate(_stratum=stratum_key(j, strata))
    y = j.correct.cast("float64")
    agg = (
        j.group_by(["vendor", "site", "date", "_stratum"])
        .aggregate(
            n=j.count(),
            k=y.sum(),
            sum_w=j.w.sum(),
            sum_w2=(j.w * j.w).sum(),
            wy=(j.w * y).sum(),
            w2y=(j.w * j.w * y).sum(),
        )
        .to_pandas()
    )
    agg["date"] = pd.to_datetime(agg["date"]).dt.date
    return agg


def _calibration(
    ds: Dataset,
    market: str,
    policy: str,
    baseline: Period,
    after: Period,
    tz: str,
    bar: float,
    cl: float,
) -> pd.DataFrame:
    if not ds.has("calibration"):
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    lo, hi = period_bounds_utc(baseline.start, after.end, tz)
    cal = ds.table("calibration")
    cal = cal.filter(
        (cal.market == market)
        & cal.expected_label.notnull()
        & ((cal.expected_label == policy) | (cal.label == policy))
        & (cal.held_at >= lo)
        & (cal.held_at < hi)
    )
    split, _ = period_bounds_utc(after.start, after.end, tz)
    cal = cal.mutate(period=ibis.ifelse(cal.held_at >= split, "after", "before"))
    agg = (
        cal.group_by(["rater_group", "period"])
        .aggregate(
            n=cal.count(),
            k=(cal.label == cal.expected_label).cast("int64").sum(),
            cases=cal.case_id.nunique(),
        )
        .to_pandas()
    )
    if agg.empty:
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    lo_ci, hi_ci = proportion_ci(
        agg["k"].to_numpy(float), agg["n"].to_numpy(float), confidence_level=cl
    )
    agg["calibration_score"] = agg["k"] / agg["n"]
    agg["ci_low"], agg["ci_high"] = lo_ci, hi_ci
    agg["bar"] = bar
    agg["significantly_below_bar"] = agg["ci_high"] < bar
    agg["n"] = agg["n"].astype(float)
    agg["period"] = pd.Categorical(agg["period"], ["before", "after"], ordered=True)
    agg = agg.sort_values(["rater_group", "period"]).reset_index(drop=True)
    agg["period"] = agg["period"].astype(str)
    return agg[CALIBRATION_COLUMNS]


def rollout(
    ds: Dataset,
    market: str,
    *,
    policy: str | None = None,
    effective: date | str | None = None,
    baseline_days: int = 28,
    window_days: int = 7,
    qa_source: str = "internal",
    human_only: bool = True,
    calibration_bar: float | None = None,
    strata: str = "auto",
    confidence_level: float | None = None,
) -> RolloutResult:
    """Track a policy change: accuracy dip, recovery day, calibration, who to align.

    Parameters
    ----------
    ds : Dataset
        Needs ``decisions``, ``qa_audits`` and ``events``; ``calibration`` adds
        the calibration results.
    market : str
    policy : str, optional
        The changed policy; default the latest ``policy_change`` in the market.
    effective : date or ISO string, optional
        Market-local date of the change; default the latest change of
        ``policy``.
    baseline_days : int, default 28
        Days before the change that define the baseline accuracy.
    window_days : int, default 7
        Rolling window (days since the change) for the recovery.
    qa_source : {"internal", "vendor"}, default "internal"
        Whose audits are the truth.
    human_only : bool, default True
        Leave out ``ai_auto`` decisions (a rollout trains people).
    calibration_bar : float, optional
        Default: the market's ``calibration_score`` target, else 0.85.
    strata : {"auto", "column", "weight", "none"}, default "auto"
        The audits' sampling strata, as in :func:`qualitylab.metrics.qa_metrics`.
    confidence_level : float, optional

    Returns
    -------
    RolloutResult

    Notes
    -----
    Accuracy is the design-weighted (Hajek) share of correct decisions, with
    the stratified variance and Wilson's interval at the design effective n for unequal weights
    and Wilson's for equal ones, as :func:`qualitylab.metrics.qa_metrics`.
    Before vs after is compared on effective counts (the accuracy times the
    design effective sample size): Newcombe's interval for the difference and a one-sided
    z-test (after < before). A segment is *significantly below* when the
    interval's upper bound is under 0.

    *Recovery*: for each day ``d`` from the change on, the rolling accuracy over
    the last ``window_days`` days since the change (``max(change, d - window +
    1)..d``) is compared with the baseline. The recovery day is the first day
    after which no rolling accuracy is significantly below the baseline:
    ``recovery_days`` days after the change (0 and ``recovery = "no dip"`` when
    it never dipped), NaN and ``recovery = "not yet"`` when the last day is
    still significantly below.
    Windows with few audits cannot show a dip: read ``n``.

    Case alignment is suggested for a vendor x site whose accuracy since the
    change is significantly below its own baseline, and for every site of a
    vendor whose raters' calibration on the policy since the change is
    significantly below the bar (Wilson upper bound under it).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["ID"], days=56, scale="small", seed=4)
    ...     res = rollout(open_dataset(tmp), "ID")
    >>> res.policy, res.effective.isoformat()
    ('scam', '2026-11-09')
    >>> res.overall[["dipped", "recovered_on", "recovery"]].astype(str).to_dict("records")
    [{'dipped': 'True', 'recovered_on': '2026-11-20', 'recovery': '11 days'}]
    """
    if baseline_days < 7 or window_days < 1:
        raise QualityLabError(
            f"baseline_days must be >= 7 and window_days >= 1; got {baseline_days}, {window_days}"
        )
    mp = ds.params.market(market)
    cl = confidence_level or mp.confidence_level
    bar = calibration_bar or mp.targets.get("calibration_score", 0.85)
    event = _pick_event(ds, market, policy, as_date(effective))
    policy, day0 = str(event["policy"]), event["date"]
    end = resolve_period(ds, market=market, start=None, end=None).end
    if day0 > end:
        raise QualityLabError(f"the {policy} change on {day0} is after the data ends ({end})")
    baseline = Period(day0 - timedelta(days=baseline_days), day0 - timedelta(days=1))
    after = Period(day0, end)
    sums = _segment_sums(
        ds, market, policy, Period(baseline.start, end), qa_source, human_only, strata
    )
    if sums.empty:
        warnings.warn(f"no audited {policy} decisions in {market}", stacklevel=2)
    sums["phase"] = np.where(sums["date"] < day0, "before", "after")

    def assess(part: pd.DataFrame, vendor: str, site: str) -> tuple[dict, pd.DataFrame]:
        st = _weighted(part, ["phase"], cl).reindex(["before", "after"])
        st[["n", "n_eff", "k_eff"]] = st[["n", "n_eff", "k_eff"]].fillna(0.0)
        b, a = st.loc["before"], st.loc["after"]
        cmp = _compare(a, b, cl)
        by_day = part[part["phase"] == "after"]
        daily, recovered, dipped = _recovery(by_day, b, day0, end, window_days, cl)
        daily.insert(0, "site", site)
        daily.insert(0, "vendor", vendor)
        days = None if recovered is None else (recovered - day0).days
        row = {
            "vendor": vendor,
            "site": site,
            "n_before": b["n"],
            "accuracy_before": b["accuracy"],
            "ci_low_before": b["ci_low"],
            "ci_high_before": b["ci_high"],
            "n_after": a["n"],
            "accuracy_after": a["accuracy"],
            "ci_low_after": a["ci_low"],
            "ci_high_after": a["ci_high"],
            **cmp,
            "significantly_below": bool(cmp["diff_ci_high"] < 0),
            "dipped": dipped,
            "recovered_on": recovered,
            "recovery_days": np.nan if days is None else float(days),
            "recovery": "not yet" if days is None else (f"{days} days" if dipped else "no dip"),
        }
        return row, daily

    over_row, over_daily = assess(sums, ALL, ALL)
    rows, dailies = [], [over_daily]
    for (vendor, site), part in sums.groupby(["vendor", "site"], sort=True):
        row, daily = assess(part, str(vendor), str(site))
        rows.append(row)
        dailies.append(daily)
    by_segment = pd.DataFrame(rows, columns=ACCURACY_COLUMNS)
    calib = _calibration(ds, market, policy, baseline, after, mp.timezone, bar, cl)

    align = []
    for r in by_segment.itertuples():
        if r.significantly_below:
            align.append(
                {
                    "vendor": r.vendor,
                    "site": r.site,
                    "reason": "accuracy",
                    "evidence": (
                        f"{policy} accuracy {r.accuracy_after:.1%} since {day0} vs "
                        f"{r.accuracy_before:.1%} before (difference CI {r.diff_ci_low:+.1%} to "
                        f"{r.diff_ci_high:+.1%}; {int(r.n_after)} audits)"
                    ),
                }
            )
    low_cal = calib[(calib["period"] == "after") & calib["significantly_below_bar"]]
    for c in low_cal.itertuples():
        sites = by_segment.loc[by_segment["vendor"] == c.rater_group, "site"].tolist()
        for site in sites or [ALL]:
            align.append(
                {
                    "vendor": c.rater_group,
                    "site": site,
                    "reason": "calibration",
                    "evidence": (
                        f"{c.rater_group} raters score {c.calibration_score:.1%} (CI "
                        f"{c.ci_low:.1%}-{c.ci_high:.1%}, {int(c.n)} ratings) on {policy} "
                        f"cases since {day0}; bar {bar:.0%}"
                    ),
                }
            )
    alignment = pd.DataFrame(align, columns=ALIGNMENT_COLUMNS)
    return RolloutResult(
        market=market,
        policy=policy,
        effective=day0,
        description=str(event["description"]),
        baseline=baseline,
        after=after,
        window_days=window_days,
        overall=pd.DataFrame([over_row], columns=ACCURACY_COLUMNS),
        by_segment=by_segment,
        daily=pd.concat(dailies, ignore_index=True)[DAILY_COLUMNS],
        calibration=calib,
        alignment=alignment,
    )
