"""What the QA sample can see (:mod:`qualitylab.sampling`), for the reader.

:func:`scan_blind_spots` judges every segment the alert scan does;
:func:`blind_spot_table`, :func:`blind_spot_sentence` and
:func:`blind_segment_table` show the blind ones, and
:func:`sampling_plan_summary` and :func:`sampling_plan_sentence` what a
sampling plan would change.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from qualitylab.reporting.context import ReportContext, weeks_with_data
from qualitylab.reporting.tables import say, table

#: Dimensions of the alert scan that :func:`scan_blind_spots` judges.
SCAN_DIMENSIONS = ("vendor", "site", "queue", "language", "policy")


def _points(value: object) -> str:
    """A change in percentage points; ``none`` when no change reaches the power."""
    v = float(value)  # type: ignore[arg-type]
    return "none" if not math.isfinite(v) else f"{100 * v:.1f} pts"


def _audits(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if math.isnan(v):
        return "–"
    return "no number" if math.isinf(v) else f"{v:,.0f}"


def _segment_columns(detect: pd.DataFrame) -> list[str]:
    cols = list(detect.columns)
    return [c for c in cols[: cols.index("metric")] if c != "market"]


def blind_spot_table(detect: pd.DataFrame, *, max_rows: int = 60):
    """The blind spots of :func:`qualitylab.sampling.detectability`, as an escaped table.

    One row per blind segment x metric: the segment columns, ``metric``,
    ``weekly audits``, ``smallest detectable change`` (a week of audits, 80%
    power, the scan's corrections; ``none`` when no change would be seen),
    ``detectable drop`` and ``audits needed a week`` (``no number`` when no
    number of audits can show the drop).

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG", "SG"], "vendor": ["<b>V</b>", "W"],
    ...     "metric": ["accuracy", "accuracy"], "weekly_audits": [40.0, 900.0],
    ...     "mdc": [0.21, 0.04], "detectable_drop": [0.05, 0.05], "blind_spot": [True, False],
    ...     "weekly_audits_needed": [1877.0, 700.0]})
    >>> t = blind_spot_table(d).data
    >>> "&lt;b&gt;V" in t, "21.0 pts" in t, "1,877" in t, "W" in t
    (True, True, True, False)
    """
    cols = _segment_columns(detect)
    blind = detect[detect["blind_spot"].astype(bool)]
    shown = blind[cols + ["metric"]].copy()
    shown["weekly audits"] = [f"{float(v):,.1f}" for v in blind["weekly_audits"]]
    shown["smallest detectable change"] = [_points(v) for v in blind["mdc"]]
    shown["detectable drop"] = [_points(v) for v in blind["detectable_drop"]]
    shown["audits needed a week"] = [_audits(v) for v in blind["weekly_audits_needed"]]
    return table(shown, metric_column=None, max_rows=max_rows)


def blind_spot_sentence(detect: pd.DataFrame):
    """How many segments are blind, to which metrics, and to what size of change.

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG"] * 3, "vendor": ["A", "A", "B"],
    ...     "metric": ["accuracy", "ai_recall", "accuracy"], "weekly_audits": [40.0, 40.0, 900.0],
    ...     "mdc": [0.21, 0.5, 0.04], "detectable_drop": [0.05, 0.1, 0.05],
    ...     "blind_spot": [True, True, False], "weekly_audits_needed": [1877.0, 4000.0, 700.0]})
    >>> d.attrs.update(period=("2026-10-26", "2026-11-22"), period_days=28, series=329)
    >>> print(blind_spot_sentence(d).data)  # doctest: +NORMALIZE_WHITESPACE
    <p>1 of 2 vendor segments in SG is blind to at least one metric (accuracy in 1, ai_recall in 1):
    a week of its audits could not show a change of the detectable drop (accuracy 5.0 pts,
    ai_recall 10.0 pts) with 80% power, after the scan's corrections for 329 series searched over
    28 days (2026-10-26 to 2026-11-22).</p>
    """
    cols = _segment_columns(detect)
    seg = detect[cols].astype(str).fillna("–").agg(" / ".join, axis=1)
    n = int(seg.nunique())
    blind = detect["blind_spot"].astype(bool)
    k = int(seg[blind].nunique())
    start, end = detect.attrs.get("period", ("", ""))
    what = " × ".join(c for c in cols if c not in ("dimension", "segment")) or "scanned"
    market = str(detect["market"].iloc[0]) if len(detect) else ""
    metrics = list(dict.fromkeys(detect["metric"]))
    drops = detect.drop_duplicates("metric").set_index("metric")["detectable_drop"]
    size = ", ".join(f"{w} {_points(drops[w])}" for w in metrics)
    if k == 0:
        return say(
            "All {n} {what} segments in {market} can show a change of the detectable drop "
            "({size}) within a week of their audits, with 80% power after the scan's "
            "corrections ({start} to {end}).",
            n=n, what=what, market=market, size=size, start=start, end=end,
        )  # fmt: skip
    per = seg[blind].groupby(detect.loc[blind, "metric"], sort=False).nunique()
    which = ", ".join(f"{w} in {int(per[w])}" for w in metrics if w in per.index)
    verb, its = ("is", "its") if k == 1 else ("are", "their")
    return say(
        "{k} of {n} {what} segments in {market} {verb} blind to at least one metric ({which}): "
        "a week of {its} audits could not show a change of the detectable drop ({size}) with 80% "
        "power, after the scan's corrections for {series} series searched over {days} days "
        "({start} to {end}).",
        k=k, n=n, what=what, market=market, verb=verb, which=which, its=its, size=size,
        series=int(detect.attrs.get("series", 0)), days=int(detect.attrs.get("period_days", 0)),
        start=start, end=end,
    )  # fmt: skip


def scan_blind_spots(
    ctx: ReportContext, *, dimensions: Sequence[str] = SCAN_DIMENSIONS
) -> pd.DataFrame:
    """Detectability of every segment the period's scan judges, one dimension at a time.

    :func:`qualitylab.sampling.detectability` for each of ``dimensions``
    (``by=[dimension]``) over the report period (its last
    :func:`weeks_with_data` weeks for a market younger than it), concatenated with the
    columns ``market, dimension, segment`` before ``metric``. ``attrs`` are
    those of the first dimension (period, series, notes). The engine is asked
    once for all the dimensions (:func:`qualitylab.sampling.segment_aggregate`).
    """
    import warnings

    from qualitylab.detection.sampling import (
        DETECTABILITY_COLUMNS,
        detectability,
        segment_aggregate,
    )

    frames = []
    weeks = weeks_with_data(ctx)
    agg = None
    for dim in dimensions:
        with warnings.catch_warnings():
            # detectability repeats each note of attrs["notes"] as a warning; kept in
            # attrs (the first dimension's), not repeated once per dimension on stderr
            warnings.filterwarnings("ignore", message="detectability ", category=UserWarning)
            if agg is None:  # one aggregate for every dimension (none: no query)
                agg = segment_aggregate(
                    ctx.ds, ctx.market, groupings=[[d] for d in dimensions], weeks=weeks,
                    end=ctx.end,
                )  # fmt: skip
            d = detectability(ctx.ds, ctx.market, by=[dim], weeks=weeks, end=ctx.end, aggregate=agg)
        d = d[d[dim].notna()]  # decisions without a policy: no series of the scan
        frames.append(d.rename(columns={dim: "segment"}).assign(dimension=dim))
    out = pd.concat(frames, ignore_index=True)
    out = out[["market", "dimension", "segment", *DETECTABILITY_COLUMNS]]
    out.attrs = dict(frames[0].attrs)
    return out


def blind_segment_table(detect: pd.DataFrame, *, max_rows: int = 60):
    """Blind segments, one row each: weekly audits and the smallest change per metric.

    A cell reads ``21.6 pts (blind)`` where the change a week of audits can
    show is larger than the metric's detectable drop, ``none (blind)`` where
    no change would be seen, and ``3.1 pts`` where the segment can see it.

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG"] * 2, "dimension": ["vendor"] * 2,
    ...     "segment": ["<i>A</i>", "<i>A</i>"], "metric": ["accuracy", "ai_recall"],
    ...     "weekly_audits": [40.0, 40.0], "mdc": [0.21, 0.08], "detectable_drop": [0.05, 0.1],
    ...     "blind_spot": [True, False], "weekly_audits_needed": [1877.0, 30.0]})
    >>> t = blind_segment_table(d).data
    >>> "&lt;i&gt;A" in t, "21.0 pts (blind)" in t, "8.0 pts<" in t
    (True, True, True)
    """
    cols = _segment_columns(detect)
    d = detect.copy()
    d["cell"] = [
        _points(v) + (" (blind)" if b else "")
        for v, b in zip(d["mdc"], d["blind_spot"].astype(bool), strict=True)
    ]
    key = d[cols].astype(str).fillna("–").agg("\x1f".join, axis=1)
    blind_keys = set(key[d["blind_spot"].astype(bool)])
    d = d[key.isin(blind_keys)]
    if d.empty:
        return say("No segment is blind.")
    wide = d.pivot_table(index=cols, columns="metric", values="cell", aggfunc="first", sort=False)
    wide = wide[[w for w in dict.fromkeys(d["metric"]) if w in wide.columns]]
    audits = d.groupby(cols, sort=False)["weekly_audits"].first().map(lambda v: f"{v:,.1f}")
    wide.insert(0, "weekly audits", audits)
    shown = wide.reset_index().fillna("–")
    return table(shown, metric_column=None, max_rows=max_rows)


def sampling_plan_summary(plan: Any):
    """A :class:`~qualitylab.sampling.SamplingPlan` before and after, as an escaped table.

    Rows: weekly audits, the standard error of one week's design-weighted
    market accuracy (in points; ``not bounded`` when a stratum with
    decisions has no audits) and the blind strata.
    """
    s = plan.summary().set_index("measure")
    strata = len(plan.plan)

    def se(v: float) -> str:
        return "not bounded" if not math.isfinite(v) else f"{100 * v:.2f} pts"

    rows = [
        ("weekly audits", f"{s.loc['weekly_audits', 'before']:,.0f}",
         f"{s.loc['weekly_audits', 'after']:,.0f}"),
        ("standard error of the market's weekly accuracy", se(plan.se_before), se(plan.se_after)),
        (f"blind strata (of {strata})", f"{plan.blind_before:,}", f"{plan.blind_after:,}"),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["measure", "now", "with the plan"])
    return table(frame, metric_column=None)


def sampling_plan_sentence(plan: Any):
    """What the plan buys, what stays blind and the budget that would close it, escaped.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p = SimpleNamespace(market="SG", budget=439, drop=0.05, se_before=0.016,
    ...     se_after=0.0127, blind_before=12, blind_after=12, plan=pd.DataFrame(index=range(12)),
    ...     unreachable=("A / q",) * 12, still_blind=("A / q",) * 12, budget_to_close=12)
    >>> print(sampling_plan_sentence(p).data)  # doctest: +NORMALIZE_WHITESPACE
    <p>Spread as recommended, 439 weekly audits take the standard error of SG's weekly accuracy
    from 1.60 to 1.27 points and the blind strata from 12 to 12 of 12. 12 strata cannot show a
    5.0-point drop at any budget: a week of them has fewer decisions than the audits it would
    need.</p>
    """
    strata = len(plan.plan)

    def se(v: float) -> str:
        return "not bounded" if not math.isfinite(v) else f"{100 * v:.2f}"

    text = (
        "Spread as recommended, {budget:,} weekly audits take the standard error of {market}'s "
        "weekly accuracy from {se_b} to {se_a} points and the blind strata from {bb} to {ba} "
        "of {strata}."
    )
    unreachable = len(plan.unreachable)
    closable = plan.blind_after - sum(1 for s in plan.still_blind if s in set(plan.unreachable))
    if unreachable:
        text += (
            " {u} {strata_word} cannot show a {drop:.1f}-point drop at any budget: a week of "
            "them has fewer decisions than the audits it would need."
        )
    if closable > 0:
        text += " A weekly budget of {close:,} would make every other stratum detectable."
    elif plan.blind_after == 0:
        text += " Every stratum can then show a {drop:.1f}-point drop."
    return say(
        text,
        budget=int(plan.budget), market=plan.market, se_b=se(plan.se_before),
        se_a=se(plan.se_after), bb=int(plan.blind_before), ba=int(plan.blind_after),
        strata=strata, u=unreachable, strata_word="stratum" if unreachable == 1 else "strata",
        drop=100 * float(plan.drop), close=int(plan.budget_to_close),
    )  # fmt: skip
