"""Segments that stop: volume that drops to zero and stays there, and the event that explains it."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from qualitylab.detection.detect.events import local_event_dates
from qualitylab.detection.detect.grouping import CONTAINED, dim_rank, overlap_counts
from qualitylab.detection.detect.vocabulary import SEGMENT_STOPPED
from qualitylab.detection.detect.windows import ScanContext

#: Event kind that explains a segment of each dimension dropping to zero.
STOP_EVENT_KINDS = {
    "ai_model": "model_release",
    "vendor": "vendor_offboarding",
    "queue": "queue_retired",
}
#: Days between a stop and the event that explains it.
_STOP_EVENT_DAYS = 2
# Days before a stop that describe the segment's normal share of the volume.
_STOP_LOOKBACK = 14


@dataclass
class Stop:
    """A segment that stopped: when, how much volume is missing, and what explains it."""

    dimension: str
    segment: str
    start: int  # first stopped day (a partial last day counts as stopped)
    last_active: int
    expected: float  # decisions per stopped day had the segment kept its share
    missing: float  # decisions expected over the stopped days
    p_value: float  # Poisson probability of no decisions at all over the zero days
    p_adjusted: float = float("nan")
    event: str = ""
    covered_by: str = ""
    rebaselined: str = ""  # the re-baseline date (ISO) when the segment stopped before it


def find_stops(volume: dict[str, pd.DataFrame], ctx: ScanContext) -> list[Stop]:
    """Segments whose volume drops to zero and stays there until the end of the scan.

    ``volume[dim]`` is a segment x day grid of decisions. A segment stopped
    when its last day with decisions is before the last day scanned, it had
    decisions on at least 80% of the 14 days before, and no decisions at all
    on the remaining days is implausible had it kept its share of the
    dimension's volume: :math:`p = e^{-\\lambda}` with :math:`\\lambda` = that
    share x the dimension's decisions on the zero days, Bonferroni over every
    segment examined, at most the scan's FDR. A last day with less than half
    the segment's median daily volume is the (partial) day it stopped.
    """
    found: list[Stop] = []
    examined = 0
    n = len(ctx.dates)
    for dim, grid in volume.items():
        vol = np.nan_to_num(grid.to_numpy(float))
        total = vol.sum(axis=0)
        for i, seg in enumerate(grid.index):
            v = vol[i]
            active = np.flatnonzero(v > 0)
            if not len(active):
                continue
            examined += 1
            first, last = int(active[0]), int(active[-1])
            if last >= n - 1:
                continue
            lo = max(first, last - _STOP_LOOKBACK)
            pre = np.arange(lo, last) if last > lo else np.array([last])
            if (v[pre] > 0).mean() < 0.8 or not total[pre].sum() > 0:
                continue
            share = v[pre].sum() / total[pre].sum()
            missing = float(share * total[last + 1 :].sum())
            start = last + 1
            if last > first and v[last] < 0.5 * float(np.median(v[pre])):
                start = last
            found.append(
                Stop(
                    dim,
                    str(seg),
                    start,
                    last,
                    float(share * total[last + 1 :].mean()),
                    missing,
                    math.exp(-missing),
                )
            )
    for st in found:
        st.p_adjusted = min(1.0, st.p_value * max(examined, 1))
    return [st for st in found if st.p_adjusted <= ctx.fdr]


def _names(text: str, segment: str) -> bool:
    """Whether ``text`` names ``segment`` as a whole word (``VendorB`` not in ``VendorB-BKK``)."""
    pattern = r"(?<![\w-])" + re.escape(segment.lower()) + r"(?![\w-])"
    return re.search(pattern, str(text).lower()) is not None


def match_stop_events(
    stops: list[Stop],
    events: pd.DataFrame | None,
    ctx: ScanContext,
    timezone: str,
    volume: dict[str, pd.DataFrame],
) -> None:
    """Attach to each stop the event that explains it (see :func:`scan`, Notes)."""
    if events is None or not len(events) or not stops:
        return
    ev = local_event_dates(events, ctx.market, timezone)
    ev = ev[ev["kind"].isin(list(STOP_EVENT_KINDS.values()))]
    for st in stops:
        day = ctx.dates[st.start]
        near = ev[(ev["date"] - day).abs() <= pd.Timedelta(days=_STOP_EVENT_DAYS)]
        desc = near["description"].fillna("").astype(str)
        named = near[[_names(d, st.segment) for d in desc]]
        kind = STOP_EVENT_KINDS.get(st.dimension)
        if not len(named) and kind is not None:
            # an event of the dimension's kind that names none of the dimension's other
            # segments that were there before (a release may name the model it brings)
            grid = volume[st.dimension]
            since = np.argmax(np.nan_to_num(grid.to_numpy(float)) > 0, axis=1)
            others = [
                str(o)
                for o, f in zip(grid.index, since, strict=True)
                if str(o) != st.segment and f < st.start - _STOP_EVENT_DAYS
            ]
            own = near[(near["kind"] == kind).to_numpy()]
            named = own[[not any(_names(d, o) for o in others) for d in own["description"]]]
        if len(named):
            r = named.iloc[int(np.argmin((named["date"] - day).abs().to_numpy()))]
            st.event = f"{r['date']:%Y-%m-%d} {r['kind']}: {r['description']}"


def cover_stops(stops: list[Stop], ds: Any, ctx: ScanContext, start: date, end: date) -> None:
    """A stop inside another that stopped with it (a vendor's site) is covered by that one."""
    if len(stops) < 2:
        return
    dims = sorted({st.dimension for st in stops})
    if len(dims) < 2:
        return
    counts = overlap_counts(ds, ctx.market, start, end, dims)
    order = sorted(
        stops, key=lambda st: (st.dimension not in STOP_EVENT_KINDS, dim_rank(st.dimension))
    )
    for st in stops:
        own = counts.loc[counts[st.dimension] == st.segment, "k"].sum()
        for parent in order:
            if parent is st or parent.dimension == st.dimension or parent.covered_by:
                continue
            if abs(parent.start - st.start) > 1 or not own:
                continue
            both = counts.loc[
                (counts[st.dimension] == st.segment) & (counts[parent.dimension] == parent.segment),
                "k",
            ].sum()
            if both / own >= CONTAINED and order.index(parent) < order.index(st):
                st.covered_by = f"{parent.dimension}={parent.segment}"
                if not st.event:
                    st.event = parent.event
                break


def stop_alert(st: Stop, ctx: ScanContext, grid: pd.DataFrame) -> dict[str, Any]:
    """The one low-severity ``segment stopped`` alert of a stop no event explains."""
    v = np.nan_to_num(grid.loc[st.segment].to_numpy(float))
    a, b = st.start, len(ctx.dates) - 1
    observed = float(v[a:].mean())
    excess = np.zeros(len(ctx.dates))
    excess[a:] = np.maximum(st.expected - v[a:], 0.0)
    return {
        "market": ctx.market,
        "metric": "volume",
        "dimension": st.dimension,
        "segment": st.segment,
        "start_date": ctx.dates[a],
        "end_date": ctx.dates[b],
        "observed": observed,
        "expected": st.expected,
        "direction": "down",
        "detector": SEGMENT_STOPPED,
        "p_value": st.p_value,
        "p_adjusted": st.p_adjusted,
        "n": float(v[max(0, st.last_active - _STOP_LOOKBACK) : st.last_active + 1].sum()),
        "volume": float(v[a:].sum()),
        "note": (
            f"segment stopped: no decisions after {ctx.dates[st.last_active]:%Y-%m-%d} "
            f"(expected ~{st.expected:.0f}/day); no {STOP_EVENT_KINDS.get(st.dimension, 'stop')} "
            "event recorded"
        ),
        "_a": a,
        "_b": b,
        "_excess": excess,
    }


def stop_record(st: Stop, ctx: ScanContext) -> dict[str, Any]:
    """One record of ``alerts.attrs["stopped"]`` (see :func:`scan`, Returns)."""
    if st.event:
        note = f"segment stopped at a known event: {st.event}"
    elif st.covered_by:
        note = f"segment stopped with {st.covered_by}"
    else:
        note = "segment stopped: no event recorded (alerted)"
    if st.covered_by and st.event:
        note = f"segment stopped with {st.covered_by} at a known event: {st.event}"
    if st.rebaselined and not st.event and not st.covered_by:
        note = f"segment stopped before its volume was re-baselined on {st.rebaselined}"
    return {
        "market": ctx.market,
        "dimension": st.dimension,
        "segment": st.segment,
        "last_active": ctx.dates[st.last_active].date().isoformat(),
        "stopped_from": ctx.dates[st.start].date().isoformat(),
        "expected_daily": round(st.expected, 3),
        "p_value": st.p_value,
        "event": st.event,
        "covered_by": st.covered_by,
        "alerted": not st.event and not st.covered_by and not st.rebaselined,
        "note": note,
    }
