"""Explain an alert: the breakdown that fits its metric, over its window against the days before.

:func:`explain_alert` returns an :class:`Explanation`: a rate decomposition
and Adtributor ranking for a rate, counts or open items by segment, response
percentiles by segment, or the vendor's reported KPIs against the measured ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.data.localtime import epoch_seconds
from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.decomposition import (
    DecompositionResult,
    check_nonempty,
    decompose,
    decompose_wide,
    pooled_z,
)
from qualitylab.detection.rca.engine import aggregate, periods_wide, with_period
from qualitylab.detection.rca.ranking import (
    AdtributorResult,
    ep_and_surprise,
    rank_dimensions,
    select_segments,
)
from qualitylab.detection.rca.summary import (
    change_sentences,
    fmt_change,
    fmt_level,
    fmt_p,
    segment_rates,
)
from qualitylab.detection.rca.vocabulary import (
    DECISION_DIMENSIONS,
    DEFAULT_DIMENSIONS,
    METRIC_SPECS,
    MISSING,
    RCA_METRICS,
    RateMetric,
    allowed_dimensions,
    as_period,
    check_periods,
    default_dimensions,
    fmt_period,
    where_text,
)
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure import scope
from qualitylab.measure.notices import NO_AUDITS, NO_DECISIONS, NO_SLA, ignoring
from qualitylab.measure.scope import Period

__all__ = [
    "EXPLAINED_METRICS",
    "EXPLANATION_COLUMNS",
    "EXPLANATION_DIMENSION_COLUMNS",
    "MSG_ALERT_FIELD",
    "MSG_NO_BREAKDOWN",
    "Explanation",
    "explain_alert",
]

#: Metrics :func:`explain_alert` breaks down, and how: ``rate`` (a decomposition,
#: :func:`decompose` and :func:`adtributor`), ``count`` (items per day by segment),
#: ``backlog`` (open items by segment), ``percentile`` (response times by segment)
#: and ``gap`` (vendor-reported against measured KPIs).
EXPLAINED_METRICS: dict[str, str] = {
    **dict.fromkeys(RCA_METRICS, "rate"),
    "volume": "count",
    "backlog": "backlog",
    "response_p50": "percentile",
    "response_p90": "percentile",
    "response_p99": "percentile",
    "reporting_gap": "gap",
}
#: Columns of :attr:`Explanation.table`.
EXPLANATION_COLUMNS = [
    "dimension",
    "segment",
    "value_base",
    "value_cur",
    "change",
    "n_base",
    "n_cur",
    "contribution",
    "share_of_change",
    "selected",
]
#: Columns of :attr:`Explanation.dimensions`.
EXPLANATION_DIMENSION_COLUMNS = [
    "rank",
    "dimension",
    "explained",
    "concentrated",
    "n_selected",
    "top_segment",
    "explanatory_power",
    "share_of_items",
    "surprise",
]
# How explain_alert decides that a change is concentrated (see _dimension_summary),
# and the p-value above which a change is sampling noise.
_EP_THRESHOLD = 0.67
_MIN_SEGMENT_EP = 0.1
_MIN_SET_EP = 0.5
_MAX_SET_EP = 1.5
_MIN_EXCESS = 0.1
_NOISE_ALPHA = 0.05
MSG_NO_BREAKDOWN = "no breakdown for metric {metric!r}; explain_alert handles {allowed}"
MSG_ALERT_FIELD = "the alert has no {field!r}; it needs {needed}"
_ALERT_FIELDS = ("market", "metric", "dimension", "segment", "start_date", "end_date")
_QUANTILES = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}
_LEVEL_LABELS = {
    "volume": "Volume",
    "backlog": "Backlog",
    "response_p50": "Median response time",
    "response_p90": "Response time p90",
    "response_p99": "Response time p99",
    "reporting_gap": "Reporting gap",
}


@dataclass(frozen=True)
class Explanation:
    """Result of :func:`explain_alert`: the breakdown of one alert's change.

    Attributes
    ----------
    metric, kind : str
        The alert's metric and its kind in :data:`EXPLAINED_METRICS`.
    market, dimension, segment : str
        The alert's series (``dimension == "market"`` for market-wide alerts);
        the breakdown is within that segment.
    current, baseline : Period
        The alert's window and the days before it.
    value_base, value_cur : float
        The series' value in each period in the metric's units (rates as
        proportions, escalations per 1,000 decisions, volume per day, open
        items, seconds; for ``gap``: measured, then vendor-reported).
    top_dimension, top_segment : str or None
        The dimension whose few segments explain the change, and its leading
        segment; when no dimension concentrates it, ``top_dimension`` is None
        and ``top_segment`` names the largest contributor of the best-ranked
        dimension.
    sentence : str
        One plain sentence: the change and the segment behind it (plain text:
        escape it before putting it into HTML).
    summary : str
        The change with its interval and test for rates (as :func:`summarize`
        opens), else `sentence`.
    table : pandas.DataFrame
        :data:`EXPLANATION_COLUMNS`, the segments of the best-ranked dimension
        (at most ``max_segments``), largest share of the change first:
        per-segment values in each period and their ``change``, items
        ``n_base``/``n_cur``, ``contribution`` to the change (additive: the
        contributions of a dimension add up to the change; for percentiles,
        to the change in the share of items slower than the baseline's
        percentile) and ``share_of_change``; ``selected`` marks the smallest
        set explaining most of it.
    dimensions : pandas.DataFrame
        :data:`EXPLANATION_DIMENSION_COLUMNS`, every dimension ranked (as
        :func:`adtributor` ranks them, for rates): ``explained`` when a small
        set reaches the threshold, ``concentrated`` when the segments named
        (``n_selected``, led by ``top_segment``) also carry clearly more of
        the change (``explanatory_power``) than of the items
        (``share_of_items``); :attr:`top_dimension` is the first concentrated one.
    result : DecompositionResult or None
        The decomposition behind a rate (per item, so escalations per decision).
    ranking : AdtributorResult or None
    """

    metric: str
    kind: str
    market: str
    dimension: str
    segment: str
    current: Period
    baseline: Period
    value_base: float
    value_cur: float
    top_dimension: str | None
    top_segment: str | None
    sentence: str
    summary: str
    table: pd.DataFrame = field(repr=False, compare=False)
    dimensions: pd.DataFrame = field(repr=False, compare=False)
    result: DecompositionResult | None = field(default=None, repr=False, compare=False)
    ranking: AdtributorResult | None = field(default=None, repr=False, compare=False)

    @property
    def change(self) -> float:
        """``value_cur - value_base``."""
        return self.value_cur - self.value_base

    @property
    def shown_dimension(self) -> str | None:
        """The dimension :attr:`table` shows (`top_dimension`, or the best-ranked one)."""
        return str(self.table["dimension"].iloc[0]) if len(self.table) else None


def explain_alert(
    ds: Dataset,
    alert: Mapping[str, Any] | pd.Series,
    *,
    baseline_days: int = 28,
    max_segments: int = 8,
    dimensions: Sequence[str] | None = None,
) -> Explanation:
    """Break an alert's change down by segment, the way its metric allows.

    Parameters
    ----------
    ds : Dataset
    alert : mapping or pandas.Series
        A row of an alerts table (:data:`qualitylab.detect.ALERT_COLUMNS`):
        ``market, metric, dimension, segment, start_date, end_date``. The
        alert's window is the current period. Optional ``baseline_start`` and
        ``baseline_end`` set the baseline.
    baseline_days : int, default 28
        Otherwise the baseline is the days before the window, as the scan's.
    max_segments : int, default 8
        Rows of :attr:`Explanation.table`.
    dimensions : sequence of str, optional
        Dimensions to break down by; by default those of :func:`decompose`
        for rates and :data:`DEFAULT_DIMENSIONS` otherwise, less the alert's
        own dimension.

    Returns
    -------
    Explanation

    Raises
    ------
    QualityLabError
        A metric without a breakdown, or no data for the alert's segment in a
        period (inside :func:`qualitylab.report.section`, a one-line note).

    Notes
    -----
    A market-wide alert is broken down over the market; an alert on a segment
    (``vendor = VendorC``) within that segment, by the other dimensions.

    * ``rate`` (:data:`RCA_METRICS`): :func:`decompose` within the segment and
      :func:`adtributor`.
    * ``count`` (``volume``): decisions created per day in each period, per
      segment; the changes add up to the change of the total. Weekday mix is
      not adjusted for.
    * ``backlog``: items open (created since the baseline's start and not yet
      decided) at the end of the baseline and at the end of the window.
    * ``percentile`` (``response_p50/p90/p99``): the percentile per segment
      in each period (Kaplan–Meier, :func:`qualitylab.metrics.operational_metrics`).
      Percentiles do not add up, so segments are ranked by their
      contribution to the change in the share of items slower than the
      baseline's percentile (pending items already older count as slow, the
      rest are unknown and left out), a rate whose shift-share is exact.
    * ``gap`` (``reporting_gap``): the vendor's reported KPIs against the
      measured ones over the window's weeks
      (:func:`qualitylab.reconcile.reporting_gap_summary`).

    Non-additive breakdowns are ranked like :func:`adtributor`: per dimension
    the smallest set of segments reaching 67% of the change (segments under
    10% left out), dimensions with a set first by the Jensen–Shannon surprise
    per segment of their set; dimensions with one segment cannot explain
    anything and go last.

    Examples
    --------
    A two-day volume spike on demo data (a viral live event in SG):

    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> alert = {"market": "SG", "metric": "volume", "dimension": "market", "segment": "SG",
    ...          "start_date": "2026-11-17", "end_date": "2026-11-18"}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=42, scale="small", seed=1)
    ...     exp = explain_alert(open_dataset(tmp), alert)
    >>> exp.kind, exp.top_dimension, exp.top_segment
    ('count', 'site', 'VendorA-Manila')
    >>> round(exp.value_base, 1), round(exp.value_cur, 1)
    (139.9, 248.0)
    >>> exp.sentence[:70]
    'Volume in SG rose from 139.9 to 248.0 a day (2026-11-17..2026-11-18 ag'
    """
    if isinstance(baseline_days, bool) or not isinstance(baseline_days, int) or baseline_days < 1:
        raise ParameterError(
            f"baseline_days must be a positive integer; got {baseline_days!r}", key="baseline_days"
        )
    if isinstance(max_segments, bool) or not isinstance(max_segments, int) or max_segments < 1:
        raise ParameterError(
            f"max_segments must be a positive integer; got {max_segments!r}", key="max_segments"
        )
    a = _alert_fields(alert, baseline_days)
    kind = EXPLAINED_METRICS.get(a["metric"])
    if kind is None:
        raise QualityLabError(
            MSG_NO_BREAKDOWN.format(metric=a["metric"], allowed=", ".join(EXPLAINED_METRICS))
        )
    explain = {
        "rate": _explain_rate,
        "count": _explain_count,
        "backlog": _explain_count,
        "percentile": _explain_percentile,
        "gap": _explain_gap,
    }[kind]
    return explain(ds, a, kind, max_segments, dimensions)


def _alert_fields(alert: Mapping[str, Any] | pd.Series, baseline_days: int) -> dict[str, Any]:
    """The alert's series and periods, validated."""
    out: dict[str, Any] = {}
    for name in _ALERT_FIELDS:
        value = alert.get(name) if hasattr(alert, "get") else None
        if value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == "":
            raise ParameterError(
                MSG_ALERT_FIELD.format(field=name, needed=", ".join(_ALERT_FIELDS)), key=name
            )
        out[name] = str(value)
    cur = as_period((out["start_date"][:10], out["end_date"][:10]), "current")
    b0, b1 = alert.get("baseline_start"), alert.get("baseline_end")
    if b0 is not None and b1 is not None and not pd.isna(b0) and not pd.isna(b1) and str(b0):
        base = as_period((str(b0)[:10], str(b1)[:10]), "baseline")
    else:
        base = Period(cur.start - timedelta(days=baseline_days), cur.start - timedelta(days=1))
    out["current"], out["baseline"] = check_periods(base, cur)[::-1]
    out["where"] = None if out["dimension"] == "market" else {out["dimension"]: (out["segment"],)}
    return out


def _subject(a: Mapping[str, Any], label: str) -> str:
    """``"AI recall in SG for language ms"``."""
    where = "" if a["where"] is None else f" for {a['dimension']} {a['segment']}"
    return f"{label} in {a['market']}{where}"


def _window(a: Mapping[str, Any]) -> str:
    return f"{fmt_period(a['current'])} against {fmt_period(a['baseline'])}"


def _breakdown_dimensions(
    a: Mapping[str, Any], allowed: Sequence[str], defaults: Sequence[str], given: Any
) -> list[str]:
    """The dimensions to break down by: given or default, never the alert's own."""
    if a["where"] is not None and a["dimension"] not in allowed:
        raise QualityLabError(
            f"cannot break {a['metric']} down within {a['dimension']} {a['segment']}: "
            f"{a['metric']} is split by {', '.join(allowed)}"
        )
    dims = [d for d in (defaults if given is None else given) if d != a["dimension"]]
    bad = [d for d in dims if d not in allowed]
    if bad:
        raise ParameterError(
            f"unknown dimension {bad[0]!r} for {a['metric']}; choose from {', '.join(allowed)}",
            key="dimensions",
        )
    if not dims:
        raise QualityLabError(f"no dimension left to break {a['metric']} down by")
    return dims


def _segment_filter(t: ir.Table, where: Mapping[str, Sequence[str]] | None) -> ir.Table:
    if not where:
        return t
    cond = ibis.literal(True)
    for col, vals in where.items():
        cond = cond & t[col].cast("string").fill_null(MISSING).isin([str(v) for v in vals])
    return t.filter(cond)


def _n_segments(seg: pd.DataFrame) -> pd.Series:
    return seg.groupby("dimension", sort=False)["segment"].size()


def _dimension_summary(seg: pd.DataFrame, order: Sequence[str]) -> pd.DataFrame:
    """Per dimension, in `order`: the segments behind the change, if it is concentrated.

    ``seg`` has ``dimension, segment, explanatory_power, surprise, selected``
    and ``_share`` (the segment's share of the items). Two candidates per
    dimension: the selected set (the smallest set explaining
    :data:`_EP_THRESHOLD` of the change), unless it is the whole dimension,
    and the single segment with the largest excess of change over items. A
    candidate concentrates the change when it explains between
    :data:`_MIN_SET_EP` and :data:`_MAX_SET_EP` of it (beyond, other segments
    offset it: a replacement, such as volume moving to a new model version,
    rather than a cause) and at least :data:`_MIN_EXCESS` more of the change
    than of the items (a change spread in proportion to volume concentrates
    nowhere). ``_picked`` holds the segments named.
    """
    counts = _n_segments(seg)
    rows = []
    for d in order:
        g = seg[seg["dimension"] == d].sort_values(
            "explanatory_power", ascending=False, kind="stable", na_position="last"
        )
        sel = g[g["selected"]]
        ep = g["explanatory_power"].to_numpy(float)
        excess = ep - g["_share"].to_numpy(float)
        candidates = []
        if len(sel) and len(sel) < len(g):
            candidates.append(sel)
        if len(g) > 1 and np.isfinite(excess).any():
            candidates.append(g.iloc[[int(np.nanargmax(excess))]])
        picked, concentrated = (sel if len(sel) else g.head(1)), False
        for cand in candidates:
            c_ep = float(cand["explanatory_power"].sum())
            if _MIN_SET_EP <= c_ep <= _MAX_SET_EP and c_ep - cand["_share"].sum() >= _MIN_EXCESS:
                picked, concentrated = cand, True
                break
        rows.append(
            {
                "dimension": d,
                "explained": bool(len(sel)) and counts.get(d, 0) > 1,
                "concentrated": concentrated,
                "n_selected": len(picked) if concentrated else len(sel),
                "top_segment": picked.iloc[0]["segment"] if len(picked) else None,
                "explanatory_power": float(picked["explanatory_power"].sum()),
                "share_of_items": float(picked["_share"].sum()),
                "surprise": float(picked["surprise"].sum()),
                "_picked": list(picked["segment"]),
            }
        )
    out = pd.DataFrame(rows, columns=[*EXPLANATION_DIMENSION_COLUMNS[1:], "_picked"])
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


def _top_of(
    dims: pd.DataFrame, seg: pd.DataFrame, *, noise: bool = False
) -> tuple[str | None, str | None, pd.DataFrame]:
    """(concentrating dimension, dimension shown, the segments named).

    The dimension shown is the best-ranked concentrating one, else the
    best-ranked with more than one segment (then its largest contributor is
    named). A change within sampling noise (`noise`) concentrates nowhere.
    """
    counts = _n_segments(seg)
    conc = dims[dims["concentrated"]] if not noise else dims.iloc[:0]
    top = str(conc.iloc[0]["dimension"]) if len(conc) else None
    ranked = [d for d in dims["dimension"] if counts.get(d, 0) > 1] or list(dims["dimension"])
    # with nothing concentrated, show a dimension whose segments are not offsetting
    # each other (a replacement), if there is one
    ep_max = seg.groupby("dimension")["explanatory_power"].max()
    plain = [d for d in ranked if ep_max.get(d, np.nan) <= _MAX_SET_EP]
    shown = top or (plain or ranked or [None])[0]
    g = seg[seg["dimension"] == shown].sort_values(
        "explanatory_power", ascending=False, kind="stable", na_position="last"
    )
    if top is None:
        return None, shown, g.head(1)
    names = dims.loc[dims["dimension"] == top, "_picked"].iloc[0]
    return top, shown, g[g["segment"].isin(names)]


def _table(seg: pd.DataFrame, shown: str | None, max_segments: int) -> pd.DataFrame:
    g = seg[seg["dimension"] == shown] if shown is not None else seg.iloc[:0]
    g = g.sort_values("share_of_change", ascending=False, kind="stable", na_position="last")
    return g[EXPLANATION_COLUMNS].head(max_segments).reset_index(drop=True)


def _names(segments: Sequence[Any]) -> str:
    names = [str(x) for x in segments]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _concentration(
    top: str | None,
    shown: str | None,
    picked: pd.DataFrame,
    noun: str,
    dims: Sequence[str],
    detail: str = "",
    *,
    noise: bool = False,
) -> str:
    """The clause naming the segment behind the change (`detail` about the first one)."""
    if picked.empty:
        return "no segment to compare"

    def pct(x: float) -> str:
        return f"{x:.0%}" if np.isfinite(x) else "an undefined share"

    ep = float(picked["explanatory_power"].sum())
    share = float(picked["_share"].sum())
    first = str(picked.iloc[0]["segment"])
    if noise:
        return (
            f"that is within sampling noise, so no segment is blamed (the largest share, "
            f"{pct(ep)}, is {shown} {first}, with {pct(share)} of the items{detail})"
        )
    if top is not None and len(picked) == 1:
        return (
            f"by {top}, {first} explains {pct(ep)} of the {noun} with {pct(share)} of the "
            f"items{detail}"
        )
    if top is not None:
        return (
            f"by {top}, {_names(picked['segment'])} together explain {pct(ep)} of the {noun} "
            f"with {pct(share)} of the items; {first}{detail}"
        )
    listed = ", ".join(dims[:-1]) + f" or {dims[-1]}" if len(dims) > 1 else dims[0]
    return (
        f"no {listed} concentrates it (the largest share, {pct(ep)}, is {shown} "
        f"{first}, with {pct(share)} of the items{detail})"
    )


def _explain_rate(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    spec = METRIC_SPECS[a["metric"]]
    allowed = allowed_dimensions(spec)
    dims = _breakdown_dimensions(a, allowed, default_dimensions(spec, a["where"]), given)
    res = decompose(
        ds,
        spec.name,
        a["market"],
        current=a["current"],
        baseline=a["baseline"],
        dimensions=dims,
        where=a["where"],
    )
    # rank_dimensions, not adtributor: an unchanged rate is said in the sentence below
    # rather than warned about (its explanatory power is undefined)
    rank = rank_dimensions(res)
    raw = rank.segments
    seg = raw.rename(columns={"rate_base": "value_base", "rate_cur": "value_cur"})
    seg["share_of_change"] = raw["explanatory_power"]
    seg["_share"] = (raw["share_base"] + raw["share_cur"]) / 2.0
    scale = spec.scale
    for c in ("value_base", "value_cur", "contribution"):
        seg[c] = seg[c] * scale
    seg["change"] = seg["value_cur"] - seg["value_base"]
    summary = _dimension_summary(seg, rank.dimensions["dimension"].tolist())
    noise = not res.pvalue < _NOISE_ALPHA
    top, shown, picked = _top_of(summary, seg, noise=noise)
    noun = "rise" if res.estimate > 0 else "drop"
    detail = ""
    if len(picked):
        row = raw[(raw["dimension"] == shown) & (raw["segment"] == picked.iloc[0]["segment"])]
        detail = f": {segment_rates(spec, row.iloc[0])}" if len(row) else ""
    if res.estimate == 0:
        level = fmt_level(res.rate_base, spec)
        sentence = f"{_subject(a, spec.label)} did not change ({level}, {_window(a)})."
    else:
        sentence = (
            f"{_subject(a, spec.label)} {'rose' if res.estimate > 0 else 'fell'} "
            f"{fmt_change(res.estimate, signed=False, spec=spec)} "
            f"({fmt_level(res.rate_base, spec)} to {fmt_level(res.rate_cur, spec)}, "
            f"{_window(a)}; {fmt_p(res.pvalue)}); "
            + _concentration(top, shown, picked, noun, res.dimensions, detail, noise=noise)
            + "."
        )
    return Explanation(
        metric=spec.name,
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=a["current"],
        baseline=a["baseline"],
        value_base=res.rate_base * scale,
        value_cur=res.rate_cur * scale,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=change_sentences(res, _NOISE_ALPHA) if res.estimate != 0 else sentence,
        table=_table(seg, shown, max_segments),
        dimensions=summary[EXPLANATION_DIMENSION_COLUMNS],
        result=res,
        ranking=rank,
    )


def _additive_ranking(
    seg: pd.DataFrame, change: float, sums: np.ndarray, higher_is_better: bool, dims: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Explanatory power, surprise, the selected sets and the dimension ranking.

    ``seg`` has ``dimension, segment, contribution`` and ``_share``; ``sums``
    the numerator and denominator of each row in each period (``num_base,
    num_cur, den_base, den_cur``), from which the surprise is computed as in
    :func:`adtributor`. Dimensions rank as there: those whose set reaches the
    threshold first, by surprise per segment of the set, then by fewer
    segments; dimensions with a single segment last.
    """
    spec = RateMetric("", "", higher_is_better, "")
    out = ep_and_surprise(seg.reset_index(drop=True), sums, spec, change, ["dimension"])
    out = select_segments(out, ["dimension"], _EP_THRESHOLD, _MIN_SEGMENT_EP)
    out["share_of_change"] = out["explanatory_power"]
    summary = _dimension_summary(out, dims)
    counts = _n_segments(out)
    summary["_single"] = summary["dimension"].map(counts).fillna(0) < 2
    per = summary["surprise"] / summary["n_selected"].clip(lower=1)
    summary["_key"] = -per.round(12)
    summary["_ex"] = ~summary["explained"]
    summary = summary.sort_values(["_single", "_ex", "_key", "n_selected"], kind="stable")
    summary["rank"] = np.arange(1, len(summary) + 1)
    return out, summary[[*EXPLANATION_DIMENSION_COLUMNS, "_picked"]].reset_index(drop=True)


def _open_items(
    ds: Dataset, a: Mapping[str, Any], t: ir.Table, periods: Sequence[Period]
) -> ir.Table:
    """Items open at the end of each period (created since the first one started)."""
    tzs = scope.timezones(ds, a["market"])
    parts = []
    for i, p in enumerate(periods):
        end = ibis.literal(scope.as_of(p, tzs, a["market"]))
        still = t.decided_at.isnull() | (t.decided_at >= end)
        parts.append(t.filter((t.created_at < end) & still).mutate(_period=ibis.literal(i)))
    return ibis.union(*parts, distinct=False)


def _explain_count(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    dims = _breakdown_dimensions(a, DECISION_DIMENSIONS, DEFAULT_DIMENSIONS, given)
    base, cur = a["baseline"], a["current"]
    t = m.decisions_in_period(ds, market=a["market"], period=Period(base.start, cur.end))
    t = _segment_filter(t, a["where"])
    t = _open_items(ds, a, t, (base, cur)) if kind == "backlog" else with_period(t, (base, cur))
    one = ibis.literal(1.0)
    t = t.mutate(_y=ibis.literal(0.0), _d=one, _w=one)
    agg = aggregate(t, [(d,) for d in dims], ds=ds)
    what = "open items" if kind == "backlog" else "decisions"
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if kind == "count" and not (agg.loc[agg["_period"] == p, "n"] > 0).any():
            raise QualityLabError(
                f"no {what} in market {a['market']!r} in the {which} period "
                f"{fmt_period(period)}{where_text(a['where'], prefix=' for ')}"
            )
    wide = periods_wide(agg, ["_d0", "_s0"]).rename(columns={"_d0": "dimension", "_s0": "segment"})
    days = (1.0, 1.0) if kind == "backlog" else (float(base.days), float(cur.days))
    n0, n1 = wide["n_0"].to_numpy(float), wide["n_1"].to_numpy(float)
    seg = pd.DataFrame(
        {
            "dimension": wide["dimension"],
            "segment": wide["segment"],
            "value_base": n0 / days[0],
            "value_cur": n1 / days[1],
            "n_base": n0.astype("int64"),
            "n_cur": n1.astype("int64"),
        }
    )
    seg["change"] = seg["value_cur"] - seg["value_base"]
    seg["contribution"] = seg["change"]
    total0 = seg.groupby("dimension")["n_base"].transform("sum").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        seg["_share"] = np.where(total0 > 0, n0 / total0, 0.0)  # proportional change: EP = share
    first = seg[seg["dimension"] == dims[0]]
    v0, v1 = float(first["value_base"].sum()), float(first["value_cur"].sum())
    change = v1 - v0
    # surprise in the distribution of items between segments
    sums = np.column_stack([n0, n1, n0, n1])
    seg, ranking = _additive_ranking(seg, change, sums, False, dims)
    top, shown, picked = _top_of(ranking, seg)
    label = _LEVEL_LABELS[a["metric"]]
    unit = " open items" if kind == "backlog" else " a day"
    if change == 0:
        sentence = f"{_subject(a, label)} did not change ({v0:,.1f}{unit}, {_window(a)})."
    else:
        detail = ""
        if len(picked):
            r = picked.iloc[0]
            detail = f": {r['value_base']:,.1f} to {r['value_cur']:,.1f}{unit}"
        noun = "rise" if change > 0 else "drop"
        sentence = (
            f"{_subject(a, label)} {'rose' if change > 0 else 'fell'} from {v0:,.1f} to "
            f"{v1:,.1f}{unit} ({_window(a)}); "
            + _concentration(top, shown, picked, noun, dims, detail)
            + "."
        )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=base,
        value_base=v0,
        value_cur=v1,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=sentence,
        table=_table(seg, shown, max_segments),
        dimensions=ranking[EXPLANATION_DIMENSION_COLUMNS],
    )


def _percentiles(ds: Dataset, a: Mapping[str, Any], by: list[str], period: Period) -> pd.DataFrame:
    """The alert's percentile per segment of `by` (restricted to the alert's segment)."""
    if a["where"] is not None:
        by = [a["dimension"], *by]
    # A period without decisions gives no percentile, which the explanation reports
    # (an error for the baseline, "not reached" for the window). A percentile needs
    # no SLA: a queue without one concerns sla_compliance only.
    with ignoring(NO_DECISIONS, NO_SLA):
        om = m.operational_metrics(
            ds, market=a["market"], by=by, start=period.start, end=period.end
        )
    out = om[om["metric"].isin([a["metric"], "volume"])]
    if a["where"] is not None:
        out = out[out[a["dimension"]].astype(str) == a["segment"]]
    return out


def _explain_percentile(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    dims = _breakdown_dimensions(a, DECISION_DIMENSIONS, DEFAULT_DIMENSIONS, given)
    base, cur = a["baseline"], a["current"]
    overall = {
        i: _percentiles(ds, a, [], p).set_index("metric")["value"]
        for i, p in enumerate((base, cur))
    }
    v0 = float(overall[0].get(a["metric"], np.nan))
    v1 = float(overall[1].get(a["metric"], np.nan))
    if not np.isfinite(v0):
        raise QualityLabError(
            f"{a['metric']} of the baseline {fmt_period(base)} cannot be estimated in market "
            f"{a['market']!r}{where_text(a['where'], prefix=' for ')} (too few answered items)"
        )
    # slow: answered after the baseline's percentile, or still pending and already older
    tzs = scope.timezones(ds, a["market"])
    t = m.decisions_in_period(ds, market=a["market"], period=Period(base.start, cur.end))
    t = with_period(_segment_filter(t, a["where"]), (base, cur))
    as_of = ibis.cases(
        *[
            (t._period == i, ibis.literal(scope.as_of(p, tzs, a["market"])))
            for i, p in enumerate((base, cur))
        ],
        else_=ibis.null("timestamp"),
    )
    decided = t.decided_at.notnull() & (t.decided_at < as_of)
    secs = (epoch_seconds(t.decided_at) - epoch_seconds(t.created_at)).cast("float64")
    age = (epoch_seconds(as_of) - epoch_seconds(t.created_at)).cast("float64")
    t = t.mutate(_decided=decided, _secs=secs, _age=age)
    t = t.filter(t._decided | (t._age > v0))
    one = ibis.literal(1.0)
    t = t.mutate(_y=(t._decided & (t._secs > v0) | ~t._decided).cast("float64"), _d=one, _w=one)
    agg = aggregate(t, [(d,) for d in dims], ds=ds)
    check_nonempty(agg, METRIC_SPECS["sla_compliance"], a["market"], base, cur, a["where"])
    wide = periods_wide(agg, ["_d0", "_s0"])
    dec = decompose_wide(wide, False, ["_d0"], "centered")
    dec = dec.rename(columns={"_d0": "dimension", "_s0": "segment"})
    first = dec[dec["dimension"] == dims[0]]
    slow0 = float(first["_num_base"].sum() / first["_den_base"].sum())
    slow1 = float(first["_num_cur"].sum() / first["_den_cur"].sum())
    den0, den1 = float(first["_den_base"].sum()), float(first["_den_cur"].sum())
    _, pval = pooled_z(np.array([slow0]), np.array([den0]), np.array([slow1]), np.array([den1]))
    sums = dec[["_num_base", "_num_cur", "_den_base", "_den_cur"]].to_numpy(float)
    dec["_share"] = (dec["share_base"] + dec["share_cur"]) / 2.0
    seg, ranking = _additive_ranking(
        dec[["dimension", "segment", "contribution", "_share"]], slow1 - slow0, sums, False, dims
    )
    noise = not float(pval[0]) < _NOISE_ALPHA
    top, shown, picked = _top_of(ranking, seg, noise=noise)
    # the table: the percentile of each segment of the dimension shown, in both periods
    seg["value_base"] = np.nan
    seg["value_cur"] = np.nan
    seg["n_base"] = 0
    seg["n_cur"] = 0
    if shown is not None:
        for i, p in enumerate((base, cur)):
            pc = _percentiles(ds, a, [shown], p)
            pc = pc.assign(segment=pc[shown].astype("string").fillna(MISSING).astype(str))
            val = pc[pc["metric"] == a["metric"]].set_index("segment")["value"]
            vol = pc[pc["metric"] == "volume"].set_index("segment")["value"]
            mine = seg["dimension"] == shown
            col = ("value_base", "n_base") if i == 0 else ("value_cur", "n_cur")
            seg.loc[mine, col[0]] = seg.loc[mine, "segment"].map(val).astype(float)
            seg.loc[mine, col[1]] = seg.loc[mine, "segment"].map(vol).fillna(0).astype("int64")
    seg["change"] = seg["value_cur"] - seg["value_base"]
    label = _LEVEL_LABELS[a["metric"]]
    noun = "rise" if slow1 > slow0 else "drop"
    q = _QUANTILES[a["metric"]]
    picked = seg.loc[picked.index]
    detail = ""
    if len(picked):
        r = picked.iloc[0]
        if np.isfinite(r["value_base"]) or np.isfinite(r["value_cur"]):
            detail = f": its {a['metric'][-3:]} {_secs(r['value_base'])} to {_secs(r['value_cur'])}"
    moved = "rose" if v1 > v0 else "fell" if v1 < v0 else "stayed"
    sentence = (
        f"{_subject(a, label)} {moved} from {_secs(v0)} to {_secs(v1)} ({_window(a)}), "
        f"the items slower than the baseline's {_secs(v0)} going from {slow0:.0%} to "
        f"{slow1:.0%} (expected {1 - q:.0%}; {fmt_p(float(pval[0]))}); "
        + _concentration(top, shown, picked, f"{noun} in slow items", dims, detail, noise=noise)
        + "."
    )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=base,
        value_base=v0,
        value_cur=v1,
        top_dimension=top,
        top_segment=str(picked.iloc[0]["segment"]) if len(picked) else None,
        sentence=sentence,
        summary=sentence,
        table=_table(seg, shown, max_segments),
        dimensions=ranking[EXPLANATION_DIMENSION_COLUMNS],
    )


def _secs(x: float) -> str:
    if not np.isfinite(x):
        return "(not reached)"
    return f"{x:,.0f} s" if x < 3600 else f"{x / 3600:,.1f} h"


def _explain_gap(
    ds: Dataset, a: dict[str, Any], kind: str, max_segments: int, given: Any
) -> Explanation:
    from qualitylab.measure.reconcile import reporting_gap, reporting_gap_summary

    if a["dimension"] != "vendor":
        raise QualityLabError(
            f"reporting_gap is measured per vendor; the alert is on {a['dimension']}"
        )
    cur = a["current"]
    # Weeks without decisions or audits have no measured KPI, and a queue without an
    # SLA no sla_compliance: the gap table leaves them out (or says there is nothing
    # to compare), so the measuring functions' warnings add nothing here.
    with ignoring(NO_DECISIONS, NO_AUDITS, NO_SLA):
        gaps = reporting_gap(ds, a["market"], start=cur.start - timedelta(days=6), end=cur.end)
    gaps = gaps[gaps["vendor"].astype(str) == a["segment"]]
    if gaps.empty:
        raise QualityLabError(
            f"no reported KPIs of vendor {a['segment']} in market {a['market']!r} in "
            f"{fmt_period(cur)}"
        )
    pooled = reporting_gap_summary(gaps)
    weeks = gaps.groupby("kpi")["week"].nunique()
    seg = pd.DataFrame(
        {
            "dimension": "kpi",
            "segment": pooled["kpi"].astype(str),
            "value_base": pooled["measured"].astype(float),
            "value_cur": pooled["reported"].astype(float),
            "change": pooled["gap"].astype(float),
            "n_base": pooled["kpi"].map(weeks).fillna(0).astype("int64"),
            "n_cur": pooled["kpi"].map(weeks).fillna(0).astype("int64"),
            "contribution": np.nan,
            "share_of_change": np.nan,
            "selected": pooled["flagged"].astype(bool),
        }
    )
    seg["_abs"] = -seg["change"].abs()
    seg = seg.sort_values(["selected", "_abs"], ascending=[False, True], kind="stable")
    seg = seg.drop(columns="_abs").reset_index(drop=True)
    if seg.empty:
        raise QualityLabError(
            f"vendor {a['segment']} reported no rate KPI in market {a['market']!r} in "
            f"{fmt_period(cur)}"
        )
    r = seg.iloc[0]
    spec = METRIC_SPECS.get(str(r["segment"]))
    level = (lambda x: fmt_level(x, spec)) if spec is not None else (lambda x: f"{x:,.3g}")
    change = fmt_change(r["change"], spec=spec) if spec is not None else f"{r['change']:+,.3g}"
    sentence = (
        f"Vendor {a['segment']} in {a['market']} reported {r['segment']} of "
        f"{level(r['value_cur'])} while QA measured {level(r['value_base'])} "
        f"({fmt_period(cur)}, {int(r['n_cur'])} week(s)): a gap of {change}"
        + (", larger than sampling error explains" if r["selected"] else "")
        + (f", the largest of its {len(seg)} KPIs." if len(seg) > 1 else ".")
    )
    dims = pd.DataFrame(
        [
            {
                "rank": 1,
                "dimension": "kpi",
                "explained": bool(seg["selected"].any()),
                "n_selected": int(seg["selected"].sum()),
                "top_segment": str(r["segment"]),
                "explanatory_power": np.nan,
                "surprise": np.nan,
            }
        ]
    )
    return Explanation(
        metric=a["metric"],
        kind=kind,
        market=a["market"],
        dimension=a["dimension"],
        segment=a["segment"],
        current=cur,
        baseline=a["baseline"],
        value_base=float(r["value_base"]),
        value_cur=float(r["value_cur"]),
        top_dimension="kpi" if r["selected"] else None,
        top_segment=str(r["segment"]),
        sentence=sentence,
        summary=sentence,
        table=seg[EXPLANATION_COLUMNS].head(max_segments),
        dimensions=dims,
    )
