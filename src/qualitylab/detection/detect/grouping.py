"""From windows to alerts: events, their false discovery rate, size and severity, and grouping.

Overlapping windows of one series and direction are one event
(:func:`benjamini_hochberg` keeps the significant ones at the run's FDR), each
event one alert (:func:`merge_events`) with its effect, impact and severity;
:func:`group_alerts` attaches each alert explained by another (same cause) to
it.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.detection.detect.vocabulary import (
    COUNTS,
    MIN_EFFECT,
    RATES,
    SCAN_DIMENSIONS,
    TIMES,
    YOUNG_BASELINE,
)
from qualitylab.detection.detect.windows import ScanContext, Window

_SPEED_FAMILY = ("sla_compliance", "response_p90", "response_p50", "response_p99")


def _cluster(windows: list[Window]) -> list[list[Window]]:
    """Windows of one series and direction that overlap or touch (gap <= 1 day): one event."""
    key = lambda w: (w.series.metric, w.series.dimension, w.series.segment, w.direction)  # noqa: E731
    windows = sorted(windows, key=lambda w: (key(w), w.start, w.end))
    groups: list[list[Window]] = []
    for w in windows:
        if (
            groups
            and key(groups[-1][0]) == key(w)
            and w.start <= max(g.end for g in groups[-1]) + 2
        ):
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def merge_events(groups: list[list[Window]], ctx: ScanContext) -> list[dict[str, Any]]:
    """One alert per event: the union of its windows, summarised over those days."""
    alerts: list[dict[str, Any]] = []
    for grp in groups:
        best = min(grp, key=lambda w: (w.p_value, -(w.end - w.start)))
        a = min(w.start for w in grp)
        b = max(w.end for w in grp)
        s = best.series
        obs, exp_, n_w = _window_summary(grp, best, a, b)
        volume = float(np.nansum(s.volume[a : b + 1])) if len(s.volume) else float("nan")
        # Daily excess in the alert's direction on every day (not only inside the
        # window), in decisions affected; grouping compares these between alerts.
        sign = 1.0 if best.direction == "up" else -1.0
        excess = np.zeros(len(ctx.dates))
        if best.kind == "rate":
            excess = sign * np.nan_to_num(s.value - best.expected) * np.nan_to_num(s.volume)
        elif best.kind == "level" and s.counterfactual is not None:
            if s.metric in COUNTS:
                excess = sign * np.nan_to_num(s.value - s.counterfactual)
            else:
                rel = np.nan_to_num(s.value / s.counterfactual - 1)
                excess = np.clip(sign * rel, -1.0, 1.0) * np.nan_to_num(s.volume)
        alerts.append(
            {
                "market": ctx.market,
                "metric": s.metric,
                "dimension": s.dimension,
                "segment": s.segment,
                "start_date": ctx.dates[a],
                "end_date": ctx.dates[b],
                "observed": obs,
                "expected": exp_,
                "direction": best.direction,
                "detector": best.detector,
                "p_value": best.p_value,
                "p_adjusted": min(w.p_adjusted for w in grp),
                "n": n_w,
                "volume": volume,
                "note": _note(grp, best),
                "_a": a,
                "_b": b,
                "_excess": excess,
            }
        )
    return alerts


def _window_summary(grp: list[Window], best: Window, a: int, b: int) -> tuple[float, float, float]:
    s = best.series
    if best.kind == "rate":
        ok = np.isfinite(s.value[a : b + 1]) & (np.nan_to_num(s.n[a : b + 1]) > 0)
        nn = s.n[a : b + 1][ok]
        kk = (s.value[a : b + 1] * s.n[a : b + 1])[ok]
        return float(kk.sum() / nn.sum()), best.expected, float(nn.sum())
    if best.kind == "level":
        obs = s.value[a : b + 1]
        cf = s.counterfactual
        if len(grp) == 1 or cf is None:
            return best.observed, best.expected, best.n
        ok = np.isfinite(obs)
        return (
            float(np.mean(obs[ok])),
            float(np.mean(cf[a : b + 1][ok])),
            float(np.nansum(s.volume[a : b + 1])),
        )
    # reporting gap: mean over the member windows
    return (
        float(np.mean([w.observed for w in grp])),
        float(np.mean([w.expected for w in grp])),
        float(max(w.n for w in grp)),
    )


def _note(grp: list[Window], best: Window) -> str:
    if best.kind == "gap":
        return f"{best.kpi}: partner reported {best.observed:.3f}, measured {best.expected:.3f}"
    if best.detector == YOUNG_BASELINE:
        return f"{YOUNG_BASELINE}: judged against {best.history} day(s) of history"
    dets = sorted({w.detector for w in grp})
    return "detectors: " + ", ".join(dets)


def _effect(alert: dict[str, Any]) -> tuple[float, float]:
    """(absolute, relative) size of the deviation."""
    obs, exp_ = alert["observed"], alert["expected"]
    diff = abs(obs - exp_)
    if alert["metric"] in RATES or alert["metric"] == "reporting_gap":
        rare = max(min(exp_, 1 - exp_), 1e-3)
        return diff, diff / rare
    return diff, diff / max(abs(exp_), 1e-9)


def window_large_enough(w: Window) -> bool:
    """Whether one window's own deviation could make a reportable alert."""
    return large_enough({"metric": w.series.metric, "observed": w.observed, "expected": w.expected})


def large_enough(alert: dict[str, Any]) -> bool:
    """Whether an alert's deviation reaches :data:`MIN_EFFECT` (absolute and relative)."""
    diff, rel = _effect(alert)
    kind = "rate" if alert["metric"] in RATES or alert["metric"] == "reporting_gap" else "level"
    lo = MIN_EFFECT[kind]
    return diff >= lo[0] and rel >= lo[1]


def impact(alert: dict[str, Any]) -> float:
    """Decisions affected: volume in the window x size of the deviation."""
    diff, rel = _effect(alert)
    vol = alert["volume"]
    if alert["metric"] == "volume":
        days = (alert["end_date"] - alert["start_date"]).days + 1
        return diff * days
    if alert["metric"] in TIMES:
        return vol * min(rel, 1.0)
    return vol * diff


def severity(alert: dict[str, Any], fdr: float) -> str:
    """``high``, ``medium`` or ``low``, from ``p_adjusted`` and the effect (see :func:`scan`)."""
    diff, rel = _effect(alert)
    p = alert["p_adjusted"]
    rate = alert["metric"] in RATES or alert["metric"] == "reporting_gap"
    big = (diff >= 0.05 or rel >= 0.5) if rate else rel >= 0.5
    moderate = (diff >= 0.02 or rel >= 0.2) if rate else rel >= 0.2
    if p <= fdr / 100 and big:
        return "high"
    if p <= fdr / 10 and moderate:
        return "medium"
    return "low"


# A segment lies inside another when this share of its decisions does; a part is a
# hotspot when its deviation is this many times its parent's.
CONTAINED = 0.95
_HOTSPOT = 1.5


def dim_rank(dim: str) -> int:
    """Position of a dimension in :data:`SCAN_DIMENSIONS` (unknown ones last)."""
    return SCAN_DIMENSIONS.index(dim) if dim in SCAN_DIMENSIONS else len(SCAN_DIMENSIONS)


def overlap_counts(ds: Any, market: str, start: date, end: date, dims: list[str]) -> pd.DataFrame:
    """Decision counts per combination of the given dimensions in the period (one query)."""
    from qualitylab.measure.metrics import decisions_in_period
    from qualitylab.measure.scope import Period

    dec = decisions_in_period(ds, market=market, period=Period(start, end))
    df = dec.group_by(dims).aggregate(k=dec.count()).to_pandas()
    return df.astype(dict.fromkeys(dims, str))


def group_alerts(
    alerts: list[dict[str, Any]],
    ds: Any,
    market: str,
    start: date,
    end: date,
    counts: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """Attach each alert explained by another (same cause) to it; return the primaries."""
    n = len(alerts)
    if n == 0:
        return []
    parent = [-1] * n
    cache: dict[tuple[str, str], dict[Any, float]] = {}
    cube: dict[str, pd.DataFrame] = {} if counts is None else {"df": counts}
    cube_dims = sorted({a["dimension"] for a in alerts} - {"market"})
    sizes: dict[tuple[str, str], float] = {}

    def share(a: dict[str, Any], b: dict[str, Any]) -> float:
        """Share of a's decisions that are also in b."""
        da, db = a["dimension"], b["dimension"]
        if da == db:
            return 1.0 if a["segment"] == b["segment"] else 0.0
        if db == "market":
            return 1.0
        if da == "market":
            return sizes.get((db, b["segment"]), 0.0) / max(sizes.get(("market", market), 1.0), 1.0)
        if (da, db) not in cache:
            if not cube:
                cube["df"] = overlap_counts(ds, market, start, end, cube_dims)
            df = cube["df"].groupby([da, db], as_index=False)["k"].sum()
            for x, y in ((da, db), (db, da)):
                cache[(x, y)] = {
                    (u, v): float(k) for u, v, k in df[[x, y, "k"]].itertuples(index=False)
                }
                cache[(x, "__total__")] = df.groupby(x)["k"].sum().astype(float).to_dict()
        tot = cache[(da, "__total__")].get(a["segment"], 0.0)
        both = cache[(da, db)].get((a["segment"], b["segment"]), 0.0)
        return both / tot if tot else 0.0

    def overlaps(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return a["_a"] <= b["_b"] and b["_a"] <= a["_b"]

    for a in alerts:
        sizes.setdefault((a["dimension"], a["segment"]), a.get("segment_volume", 0.0))
    sizes.setdefault(
        ("market", market), max((a.get("market_volume", 0.0) for a in alerts), default=1.0)
    )

    def per_day(a: dict[str, Any]) -> float:
        return a["impact"] / (a["_b"] - a["_a"] + 1)

    def explains(i: int, j: int) -> float:
        """Share of j's excess, over j's window, that i's excess accounts for."""
        a, b = alerts[i], alerts[j]
        lo, hi = b["_a"], b["_b"]
        ea = float(a["_excess"][lo : hi + 1].sum())
        eb = float(b["_excess"][lo : hi + 1].sum())
        if not (a["_excess"].any() and b["_excess"].any()):  # no daily detail: daily averages
            ea, eb = per_day(a), per_day(b)
        if eb <= 0:
            return float("inf") if ea > 0 else 0.0
        return max(ea, 0.0) * share(a, b) / eb

    # 1. the same metric across dimensions
    def size(a: dict[str, Any]) -> float:
        """Deviation per decision: points for rates, relative change otherwise."""
        diff, rel = _effect(a)
        return diff if a["metric"] in RATES or a["metric"] == "reporting_gap" else rel

    def related_pair(i: int, j: int) -> bool:
        a, b = alerts[i], alerts[j]
        return (
            i != j
            and a["metric"] == b["metric"]
            and a["direction"] == b["direction"]
            and (a["dimension"], a["segment"]) != (b["dimension"], b["segment"])
            and overlaps(a, b)
        )

    def inside(i: int, j: int) -> bool:
        """Alert i's segment lies (almost) wholly inside alert j's."""
        return share(alerts[i], alerts[j]) >= CONTAINED

    for j in range(n):
        best, best_s = -1, 0.5
        for i in range(n):
            if not related_pair(i, j):
                continue
            a, b = alerts[i], alerts[j]
            s_ij = explains(i, j)
            if s_ij < best_s:
                continue
            j_in_i, i_in_j = inside(j, i), inside(i, j)
            if j_in_i and i_in_j:  # the same population under two names
                wins = dim_rank(a["dimension"]) < dim_rank(b["dimension"]) or (
                    a["dimension"] == b["dimension"] and a["p_value"] < b["p_value"]
                )
            elif j_in_i:  # a parent explains a part that moved like the whole, not a hotspot
                wins = size(b) <= _HOTSPOT * size(a)
            elif i_in_j:  # a part explains its parent only as a hotspot (step 1b)
                wins = False
            else:  # overlapping segments of different dimensions
                wins = s_ij > explains(j, i)
            if wins:
                best, best_s = i, s_ij
        parent[j] = best

    # 1b. a parent whose excess comes mostly from hotspots (parts that moved much more
    # than the whole, in one dimension) is explained by the largest of them
    for j in range(n):
        if parent[j] != -1:
            continue
        b = alerts[j]
        hot: dict[str, list[int]] = {}
        for i in range(n):
            part = related_pair(i, j) and inside(i, j) and not inside(j, i)
            if part and size(alerts[i]) > _HOTSPOT * size(b):
                hot.setdefault(alerts[i]["dimension"], []).append(i)
        eb = float(b["_excess"][b["_a"] : b["_b"] + 1].sum())
        for members in hot.values():
            carried = sum(
                max(float(alerts[i]["_excess"][b["_a"] : b["_b"] + 1].sum()), 0.0) for i in members
            )
            if eb > 0 and carried >= 0.5 * eb:
                parent[j] = max(members, key=lambda i: alerts[i]["_excess"].sum())
                break

    # 2. response percentiles are other views of the SLA on the same segment; accuracy
    # and its error types stay separate alerts (each error type has its own remedy)
    def consistent(a: dict[str, Any], b: dict[str, Any]) -> bool:
        """Same story: accuracy down with an error rate up, SLA down with times up."""
        higher_better = ("accuracy", "sla_compliance")
        flip = (a["metric"] in higher_better) != (b["metric"] in higher_better)
        return (a["direction"] != b["direction"]) if flip else (a["direction"] == b["direction"])

    def family_parent(j: int) -> int:
        b = alerts[j]
        cands = [
            i
            for i in range(n)
            if i != j
            and parent[i] == -1
            and (alerts[i]["dimension"], alerts[i]["segment"]) == (b["dimension"], b["segment"])
            and overlaps(alerts[i], b)
            and consistent(alerts[i], b)
        ]
        if b["metric"] in _SPEED_FAMILY:
            rank = _SPEED_FAMILY.index(b["metric"])
            better = [i for i in cands if alerts[i]["metric"] in _SPEED_FAMILY[:rank]]
            return min(better, key=lambda i: _SPEED_FAMILY.index(alerts[i]["metric"]), default=-1)

        return -1

    for j in range(n):
        if parent[j] == -1:
            parent[j] = family_parent(j)

    def root(i: int) -> int:
        seen = set()
        while parent[i] != -1 and i not in seen:
            seen.add(i)
            i = parent[i]
        if i in seen:  # a cycle: the strongest evidence leads
            cyc = list(seen)
            i = min(cyc, key=lambda c: alerts[c]["p_value"])
            parent[i] = -1
        return i

    roots = [root(i) for i in range(n)]
    primaries = []
    for gid, r in enumerate(sorted(set(roots), key=lambda r: -alerts[r]["impact"]), start=1):
        members = [i for i in range(n) if roots[i] == r and i != r]
        members.sort(key=lambda i: -alerts[i]["impact"])
        alert = dict(alerts[r])
        alert["group_id"] = gid
        alert["related"] = "; ".join(
            f"{alerts[i]['metric']} {alerts[i]['dimension']}={alerts[i]['segment']}"
            for i in members
        )
        primaries.append(alert)
    return primaries


def benjamini_hochberg(windows: list[Window], quiet: int, q: float) -> list[list[Window]]:
    """Events (clusters of windows) significant at FDR ``q`` among events and quiet series."""
    events = _cluster([w for w in windows if w.p_value <= q and window_large_enough(w)])
    untested = max(len(_cluster(windows)) - len(events), 0)
    significant = []
    if events:
        from qualitylab.measure.stats import adjust_pvalues

        p = np.r_[[min(w.p_value for w in e) for e in events], np.ones(quiet + untested)]
        adj = adjust_pvalues(p, method="fdr_bh")
        for e, pa in zip(events, adj[: len(events)], strict=True):
            for w in e:
                w.p_adjusted = float(pa)
            if pa <= q:
                significant.append(e)
    return significant
