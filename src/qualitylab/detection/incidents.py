"""Incidents: the alerts of one market that share a cause, folded under a lead.

One cause often moves many series: a vendor's accuracy drop raises the
override rate in every policy, a model release moves the AI metrics and the
workflow rates together, a report surge slows responses in every queue.
:func:`detect.scan <qualitylab.detect.scan>` already folds the views of *one*
metric across dimensions (``group_id``/``related``); :func:`group_incidents`
folds alerts of *different* metrics and dimensions whose windows overlap when
one cause explains them, so a partner manager reads one incident, not a
dozen alerts.

Rules (see :func:`group_incidents` for the details and thresholds):

1. **Same segment.** Alerts on the same segment (counting the segments
   ``scan`` folded into an alert's ``related``) whose windows overlap and
   whose metrics are linked (:data:`LINKED`: a volume surge slows responses, an accuracy drop raises
   error and override rates, a recall drop lowers auto-actions and raises
   overrides). The lead is the most upstream metric (:data:`CAUSE_ORDER`).
2. **One segment of another dimension.** For each lead,
   :func:`qualitylab.rca.decompose` over its window, within its segment
   (``where=``, one engine query per alert, cached), says which segment of the
   other alerted dimensions explains its change; when one segment explains
   most of it and is a hotspot, the alert and its group fold under that
   segment's incident.
3. **A recorded event.** A ``model_release``, ``policy_change`` or ``outage``
   effective within a day of the start of every incident lead it gathers,
   with every lead moving as the event implies (:data:`EVENT_EFFECTS`). The
   lead is the alert most directly tied to the event (e.g. ``ai_recall`` for
   a model release).

Overlapping windows alone never join two alerts.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import ibis
import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.detection import rca
from qualitylab.detection.detect import SCAN_DIMENSIONS, SCAN_METRICS
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.metrics import Period, decisions_in_period
from qualitylab.measure.notices import NO_SLA, ignoring

__all__ = [
    "ALPHA",
    "BASELINE_DAYS",
    "CAUSE_ORDER",
    "EVENT_DAYS",
    "EVENT_EFFECTS",
    "INCIDENT_COLUMNS",
    "LINKED",
    "MIN_EXPLAINED",
    "REST_RATIO",
    "group_incidents",
    "incident_key",
]

#: Columns :func:`group_incidents` adds after the alert columns.
INCIDENT_COLUMNS = ["incident_id", "incident_role", "incident_cause", "incident_event"]

#: Lead preference between alerts of one segment: upstream metrics first (what
#: arrives, what the model and the moderators decide, then how fast, then the
#: AI workflow rates that follow from all of them).
CAUSE_ORDER = (
    "volume",
    "ai_recall",
    "ai_precision",
    "ai_fpr",
    "red_team_recall",
    "accuracy",
    "over_enforcement_rate",
    "under_enforcement_rate",
    "wrong_policy_rate",
    "reporting_gap",
    "sla_compliance",
    "backlog",
    "response_p50",
    "response_p90",
    "response_p99",
    "auto_action_rate",
    "override_rate",
)

_ERRORS = ("over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")
_TIMES = ("response_p50", "response_p90", "response_p99")

#: Linked metrics on one segment: ``(metric, direction)`` of a cause -> the
#: ``(metric, direction)`` of the effects it explains on the same segment.
LINKED: dict[tuple[str, str], frozenset[tuple[str, str]]] = {
    # a surge slows responses and grows the queue
    ("volume", "up"): frozenset(
        {("sla_compliance", "down"), ("backlog", "up"), *((t, "up") for t in _TIMES)}
    ),
    ("sla_compliance", "down"): frozenset({("backlog", "up"), *((t, "up") for t in _TIMES)}),
    # accuracy is one minus the error rates; moderators who err disagree with the AI more
    ("accuracy", "down"): frozenset({*((e, "up") for e in _ERRORS), ("override_rate", "up")}),
    **{(e, "up"): frozenset({("override_rate", "up")}) for e in _ERRORS},
    # a model that misses more acts alone less and is overridden more
    ("ai_recall", "down"): frozenset({("override_rate", "up"), ("auto_action_rate", "down")}),
    ("ai_precision", "down"): frozenset({("override_rate", "up")}),
    ("ai_fpr", "up"): frozenset({("override_rate", "up")}),
}

#: Event kinds that gather alerts, each with the patterns of ``metric ->
#: direction`` it implies; every lead an event gathers must fit one pattern.
#: The order of each pattern is the lead preference (most directly tied first).
#:
#: * ``model_release``: a model that scores lower (misses more, acts alone
#:   less, is overridden more), one that scores higher, or one that is worse
#:   at both ends;
#: * ``policy_change`` (alerts on the changed policy when the event names
#:   one): a broadened policy (moderators over-apply it, more decisions cite
#:   it, the model that has not learned it is overridden more and acts alone
#:   on a smaller share) or a narrowed one;
#: * ``outage``: routing falls back to humans, responses slow, intake drops.
EVENT_EFFECTS: dict[str, tuple[dict[str, str], ...]] = {
    "model_release": (
        {
            "ai_recall": "down",
            "ai_fpr": "down",
            "ai_precision": "up",
            "red_team_recall": "down",
            "auto_action_rate": "down",
            "override_rate": "up",
        },
        {
            "ai_recall": "up",
            "ai_fpr": "up",
            "ai_precision": "down",
            "red_team_recall": "up",
            "auto_action_rate": "up",
            "override_rate": "up",
        },
        {
            "ai_recall": "down",
            "ai_precision": "down",
            "ai_fpr": "up",
            "red_team_recall": "down",
            "override_rate": "up",
        },
    ),
    "policy_change": (
        {
            "over_enforcement_rate": "up",
            "wrong_policy_rate": "up",
            "accuracy": "down",
            "volume": "up",
            "auto_action_rate": "down",
            "override_rate": "up",
        },
        {
            "under_enforcement_rate": "up",
            "wrong_policy_rate": "up",
            "accuracy": "down",
            "volume": "down",
            "auto_action_rate": "up",
            "override_rate": "up",
        },
    ),
    "outage": (
        {
            "auto_action_rate": "down",
            "sla_compliance": "down",
            "backlog": "up",
            "volume": "down",
            "response_p90": "up",
            "response_p50": "up",
            "response_p99": "up",
        },
    ),
}

#: Days between an event's market-local date and the start of each alert it gathers.
EVENT_DAYS = 1
#: Share of an alert's change within its segment that one segment must explain.
MIN_EXPLAINED = 0.5
#: The rest of the alert's segment may have moved at most this fraction as much
#: as the explaining segment (otherwise the change is spread, not a hotspot).
REST_RATIO = 0.5
#: Level of the explaining segment's own change (pooled z, or Poisson for counts).
ALPHA = 0.05
#: Days of baseline the explanations compare a window with (the scan's).
BASELINE_DAYS = 28

_REQUIRED = ("market", "metric", "dimension", "segment", "start_date", "end_date", "direction")
_EXPLAINABLE_DIMS = tuple(d for d in SCAN_DIMENSIONS if d != "market")
# The model scores content before anyone moderates it: AI metrics are explained by
# what describes the content, not by who handled it (as detect slices them).
_AI_METRICS = ("ai_precision", "ai_recall", "ai_fpr", "red_team_recall")
_CONTENT_DIMS = ("queue", "language", "policy", "ai_model")
_RATE_LIKE = (
    "accuracy",
    *_ERRORS,
    "sla_compliance",
    "auto_action_rate",
    "override_rate",
    "ai_precision",
    "ai_recall",
    "ai_fpr",
    "qa_alignment",
    "red_team_recall",
    "reporting_gap",
)
MSG_COLUMNS = "alerts is missing column(s) {missing}; it needs {need}"
MSG_DATES = "alerts has {count} row(s) without a valid {col}, e.g. {example!r}"
MSG_MARKET = "alerts of market(s) {other} passed with market={market!r}; group one market at a time"


# --------------------------------------------------------------------------- #
# identity
# --------------------------------------------------------------------------- #
def _iso(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return pd.Timestamp(value).date().isoformat()


def incident_key(alert: Mapping[str, Any]) -> str:
    """Stable id of the incident an alert leads.

    Parameters
    ----------
    alert : mapping
        An alert row with ``market, metric, dimension, segment, direction,
        start_date``.

    Returns
    -------
    str
        ``"inc-"`` and 16 hex digits: BLAKE2b (8 bytes) of ``market, metric,
        dimension, segment, direction, start_date`` (ISO date) joined by the
        unit separator ``\\x1f``. The same lead alert gives the same id in
        every run; the text of a segment (which can be hostile) never appears
        in it.

    Examples
    --------
    >>> incident_key({"market": "ID", "metric": "accuracy", "dimension": "vendor",
    ...               "segment": "VendorC", "direction": "down",
    ...               "start_date": "2026-11-02"})
    'inc-b246411f641d3a1c'
    """
    parts = [
        str(alert["market"]),
        str(alert["metric"]),
        str(alert["dimension"]),
        str(alert["segment"]),
        str(alert["direction"]),
        _iso(alert["start_date"]),
    ]
    digest = hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=8).hexdigest()
    return f"inc-{digest}"


# --------------------------------------------------------------------------- #
# the alerts as records
# --------------------------------------------------------------------------- #
@dataclass
class _Alert:
    i: int
    metric: str
    dimension: str
    segment: str
    direction: str
    start: date
    end: date
    observed: float
    expected: float
    impact: float
    aliases: frozenset[tuple[str, str]]  # own (dimension, segment) and those in `related`

    @property
    def own(self) -> tuple[str, str]:
        return (self.dimension, self.segment)

    def overlaps(self, other: _Alert) -> bool:
        return self.start <= other.end and other.start <= self.end

    def rank(self) -> tuple[int, float]:
        order = CAUSE_ORDER.index(self.metric) if self.metric in CAUSE_ORDER else len(CAUSE_ORDER)
        return (order, -self.impact)


_RELATED_SPLIT = re.compile(
    "; (?=(?:{m}) (?:{d})=)".format(
        m="|".join(map(re.escape, sorted({*SCAN_METRICS, *CAUSE_ORDER}, key=len, reverse=True))),
        d="|".join(map(re.escape, (*SCAN_DIMENSIONS, "attack"))),
    )
)
_RELATED_ITEM = re.compile(r"^(\S+) ([a-z_]+)=(.*)$", re.S)


def _related_segments(text: Any) -> set[tuple[str, str]]:
    """``(dimension, segment)`` of the views ``scan`` folded into an alert."""
    if not isinstance(text, str) or not text.strip():
        return set()
    out = set()
    for item in _RELATED_SPLIT.split(text):
        hit = _RELATED_ITEM.match(item.strip())
        if hit:
            out.add((hit.group(2), hit.group(3)))
    return out


def _number(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return x


def _records(alerts: pd.DataFrame) -> list[_Alert]:
    recs = []
    for i, row in enumerate(alerts.to_dict("records")):
        dim, seg = str(row["dimension"]), str(row["segment"])
        impact = _number(row.get("impact"))
        recs.append(
            _Alert(
                i=i,
                metric=str(row["metric"]),
                dimension=dim,
                segment=seg,
                direction=str(row["direction"]),
                start=pd.Timestamp(row["start_date"]).date(),
                end=pd.Timestamp(row["end_date"]).date(),
                observed=_number(row.get("observed")),
                expected=_number(row.get("expected")),
                impact=impact if math.isfinite(impact) else 0.0,
                # a market-wide alert lists every part of the market among its views:
                # those are where it shows, not segments it stands for
                aliases=frozenset(
                    {(dim, seg)}
                    | (set() if dim == "market" else _related_segments(row.get("related")))
                ),
            )
        )
    return recs


# --------------------------------------------------------------------------- #
# words
# --------------------------------------------------------------------------- #
def _change(a: _Alert) -> str:
    """The alert's deviation: points for rates, a relative change otherwise."""
    d = a.observed - a.expected
    if not math.isfinite(d):
        return a.direction
    if a.metric in _RATE_LIKE:
        text = f"{abs(d) * 100:.1f} pp"
    elif a.expected and math.isfinite(a.expected):
        text = f"{abs(d / a.expected) * 100:.0f}%"
    else:
        return a.direction
    return ("+" if d >= 0 else "\u2212") + text


def _where(dim: str, seg: str) -> str:
    return "the market" if dim == "market" else f"{dim} {seg}"


# --------------------------------------------------------------------------- #
# rule 2: which segment of another dimension explains an alert's change
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Explanation:
    dimension: str
    segment: str
    share: float  # of the alert's change within its segment
    metric: str  # what was decomposed (sla_compliance for response times)


def _rate_cells(res: rca.DecompositionResult, other: str) -> pd.DataFrame | None:
    """Per segment of dimension `other`: w0, y0, w1, y1 (weight sums when weighted), ne0, ne1."""
    rows = (res.segments["dimension"] == other).to_numpy()
    if not rows.any():
        return None
    sums = res.sums[rows]
    return pd.DataFrame(
        {
            "segment": res.segments.loc[rows, "segment"].astype(str).to_numpy(),
            "w0": sums["den_base"].to_numpy(float),
            "y0": sums["num_base"].to_numpy(float),
            "w1": sums["den_cur"].to_numpy(float),
            "y1": sums["num_cur"].to_numpy(float),
            "ne0": sums["neff_base"].to_numpy(float),
            "ne1": sums["neff_cur"].to_numpy(float),
        }
    )


def _rate_share(cells: pd.DataFrame, seg: str, sign: float) -> float:
    """Share of the change explained by `seg` when it is a significant hotspot, else 0."""
    w0, y0, w1, y1 = (cells[c].to_numpy(float) for c in ("w0", "y0", "w1", "y1"))
    if w0.sum() <= 0 or w1.sum() <= 0:
        return 0.0
    ss = rca.shift_share(w0, y0, w1, y1, segments=cells["segment"].tolist())
    change = float(ss["contribution"].sum())
    if not (change * sign > 0):
        return 0.0
    hit = np.flatnonzero(cells["segment"].to_numpy() == seg)
    if not len(hit):
        return 0.0
    j = int(hit[0])
    share = float(ss["contribution"].iloc[j]) / change
    if share < MIN_EXPLAINED:
        return 0.0
    if w0[j] > 0 and w1[j] > 0:
        r0, r1 = y0[j] / w0[j], y1[j] / w1[j]
        rest0, rest1 = w0.sum() - w0[j], w1.sum() - w1[j]
        d_seg = (r1 - r0) * sign
        if d_seg <= 0:
            return 0.0
        if rest0 > 0 and rest1 > 0:
            d_rest = ((y1.sum() - y1[j]) / rest1 - (y0.sum() - y0[j]) / rest0) * sign
            if d_rest > REST_RATIO * d_seg:
                return 0.0
        ne0, ne1 = float(cells["ne0"].iloc[j]), float(cells["ne1"].iloc[j])
        pooled = (r0 * ne0 + r1 * ne1) / (ne0 + ne1)
        se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / ne0 + 1 / ne1)) if ne0 * ne1 else 0
        p = 2 * sps.norm.sf(abs(r1 - r0) / se) if se > 0 else 0.0
        if p > ALPHA:
            return 0.0
    return share


def _count_cells(counts: pd.DataFrame, other: str) -> pd.DataFrame | None:
    """Per segment of dimension `other`: decisions in the baseline (c0) and window (c1)."""
    a = counts[counts["_d"] == other]
    if a.empty:
        return None
    wide = a.pivot_table(index="_s", columns="_period", values="n", aggfunc="sum", fill_value=0)
    for p in (0, 1):
        if p not in wide.columns:
            wide[p] = 0
    return pd.DataFrame(
        {
            "segment": wide.index.astype(str),
            "c0": wide[0].to_numpy(float),
            "c1": wide[1].to_numpy(float),
        }
    )


def _count_share(cells: pd.DataFrame, seg: str, sign: float, days0: int, days1: int) -> float:
    """Share of a daily-count change explained by `seg` when it is a significant hotspot."""
    d0 = cells["c0"].to_numpy(float) / days0
    d1 = cells["c1"].to_numpy(float) / days1
    change = float(d1.sum() - d0.sum())
    if not (change * sign > 0):
        return 0.0
    hit = np.flatnonzero(cells["segment"].to_numpy() == seg)
    if not len(hit):
        return 0.0
    j = int(hit[0])
    share = float(d1[j] - d0[j]) / change
    if share < MIN_EXPLAINED:
        return 0.0
    if d0[j] > 0:
        rel = (d1[j] / d0[j] - 1) * sign
        rest0, rest1 = d0.sum() - d0[j], d1.sum() - d1[j]
        if rest0 > 0 and (rest1 / rest0 - 1) * sign > REST_RATIO * rel:
            return 0.0
        expected = d0[j] * days1
        z = (float(cells["c1"].iloc[j]) - expected) / math.sqrt(expected)
        if 2 * sps.norm.sf(abs(z)) > ALPHA:
            return 0.0
    return share


class _Explainer:
    """Explanations of alerts by segments, one engine query set per alert at most, cached."""

    def __init__(self, ds: Any, market: str, start: date, end: date) -> None:
        self.ds, self.market, self.start, self.end = ds, market, start, end
        self.cache: dict[tuple, Any] = {}
        self.calls = 0
        self.refused: list[str] = []

    def _periods(self, a: _Alert) -> tuple[Period, Period]:
        first = min(a.start, self.start)
        base = Period(first - timedelta(days=BASELINE_DAYS), first - timedelta(days=1))
        cur = Period(max(a.start, base.end + timedelta(days=1)), min(a.end, self.end))
        if cur.end < cur.start:
            cur = Period(a.start, a.end)
        return base, cur

    def _decompose(self, metric: str, a: _Alert, dims: list[str]) -> Any:
        base, cur = self._periods(a)
        key = ("rca", metric, a.own, cur, base, tuple(dims))
        if key not in self.cache:
            self.calls += 1
            where = None if a.dimension == "market" else {a.dimension: [a.segment]}
            try:
                # queues without an SLA: the market's own sla_compliance (metrics)
                # reports them; the same note per explained alert would be noise
                with ignoring(NO_SLA):
                    self.cache[key] = rca.decompose(
                        self.ds,
                        metric,
                        self.market,
                        cur,
                        base,
                        dimensions=dims,
                        where=where,
                        cross=False,
                    )
            except QualityLabError as exc:  # a metric or dimension rca refuses, an empty period
                self.cache[key] = None
                self.refused.append(f"{metric} {_where(*a.own)}: {exc}")
        return self.cache[key]

    def _counts(self, a: _Alert, dims: list[str]) -> tuple[pd.DataFrame, int, int] | None:
        base, cur = self._periods(a)
        key = ("counts", a.own, cur, base, tuple(dims))
        if key not in self.cache:
            self.calls += 1
            dec = decisions_in_period(
                self.ds, market=self.market, period=Period(base.start, cur.end)
            )
            if a.dimension != "market":
                dec = dec.filter(dec[a.dimension].cast("string") == a.segment)
            per = ibis.cases(
                (dec.date.between(base.start, base.end), 0),
                (dec.date.between(cur.start, cur.end), 1),
                else_=ibis.null("int64"),
            )
            dec = dec.mutate(_period=per).filter(per.notnull())
            parts = []
            for other in dims:
                keyed = dec.mutate(
                    _d=ibis.literal(other), _s=dec[other].cast("string").fill_null(rca.MISSING)
                )
                parts.append(keyed.group_by(["_d", "_s", "_period"]).aggregate(n=keyed.count()))
            expr = parts[0] if len(parts) == 1 else ibis.union(*parts, distinct=False)
            self.cache[key] = (expr.to_pandas(), base.days, cur.days)
        return self.cache[key]

    def explain(self, a: _Alert, candidates: set[tuple[str, str]]) -> _Explanation | None:
        """The candidate (dimension, segment) explaining most of `a`'s change, if any."""
        metric, sign = a.metric, 1.0 if a.direction == "up" else -1.0
        if metric in _TIMES:  # percentiles do not add up; their SLA breaches do
            metric, sign = "sla_compliance", -sign
        if metric == "volume":
            allowed: tuple[str, ...] = _EXPLAINABLE_DIMS
        else:
            try:
                allowed = rca.dimensions_of(metric)
            except QualityLabError as exc:  # a metric rca does not decompose
                self.refused.append(f"{a.metric} {_where(*a.own)}: {exc}")
                return None
        dims = sorted(
            {d for d, _ in candidates if d != a.dimension and d in allowed},
            key=SCAN_DIMENSIONS.index,
        )
        if not dims:
            return None
        best: _Explanation | None = None
        if metric == "volume":
            got = self._counts(a, dims)
            if got is None:
                return None
            counts, days0, days1 = got
            for d, s in sorted(candidates):
                cells = _count_cells(counts, d)
                if cells is not None:
                    share = _count_share(cells, s, sign, days0, days1)
                    if share and (best is None or share > best.share):
                        best = _Explanation(d, s, share, "volume")
            return best
        res = self._decompose(metric, a, dims)
        if res is None:
            return None
        for d, s in sorted(candidates):
            cells = _rate_cells(res, d)
            if cells is not None:
                share = _rate_share(cells, s, sign)
                if share and (best is None or share > best.share):
                    best = _Explanation(d, s, share, metric)
        return best


# --------------------------------------------------------------------------- #
# rule 3: events
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Event:
    day: date
    kind: str
    policy: str | None
    description: str

    def label(self) -> str:
        pol = f"[{self.policy}]" if self.policy else ""
        return f"{self.kind}{pol} {self.day.isoformat()}: {self.description}"


def _events(ds: Any, market: str, events: pd.DataFrame | None) -> list[_Event]:
    if events is None:
        if not ds.has("events"):
            return []
        events = ds.table("events").to_pandas()
    if events is None or not len(events):
        return []
    need = {"effective_at", "market", "kind"}
    missing = sorted(need - set(events.columns))
    if missing:
        raise ParameterError(f"events is missing column(s) {missing}", key="events")
    tz = ds.params.market(market).timezone
    ev = events[events["market"].astype(str).isin([market, "*"])]
    ev = ev[ev["kind"].isin(list(EVENT_EFFECTS))]
    out = []
    stamps = pd.to_datetime(ev["effective_at"], utc=True).dt.tz_convert(tz)
    for (_, r), ts in zip(ev.iterrows(), stamps, strict=True):
        if pd.isna(ts):
            continue
        pol = r.get("policy")
        out.append(
            _Event(
                day=ts.date(),
                kind=str(r["kind"]),
                policy=str(pol) if isinstance(pol, str) and pol else None,
                description=str(r.get("description") or ""),
            )
        )
    return sorted(out, key=lambda e: (e.day, list(EVENT_EFFECTS).index(e.kind), e.description))


def _fits(ev: _Event, a: _Alert) -> list[int]:
    """Patterns of the event that alert `a` (a lead) fits, by index."""
    if abs((a.start - ev.day).days) > EVENT_DAYS:
        return []
    if ev.kind == "policy_change" and ev.policy and a.own != ("policy", ev.policy):
        return []
    return [k for k, pat in enumerate(EVENT_EFFECTS[ev.kind]) if pat.get(a.metric) == a.direction]


# --------------------------------------------------------------------------- #
# the grouping
# --------------------------------------------------------------------------- #
def _check(alerts: pd.DataFrame, market: str) -> None:
    if not isinstance(alerts, pd.DataFrame):
        raise ParameterError(f"alerts must be a pandas DataFrame; got {type(alerts).__name__}")
    missing = [c for c in _REQUIRED if c not in alerts.columns]
    if missing:
        raise ParameterError(
            MSG_COLUMNS.format(missing=", ".join(missing), need=", ".join(_REQUIRED)),
            key="alerts",
        )
    other = sorted(set(alerts["market"].astype(str)) - {market})
    if other:
        raise ParameterError(MSG_MARKET.format(other=other, market=market), key="market")
    for col in ("start_date", "end_date"):
        dates = pd.to_datetime(alerts[col], errors="coerce")
        bad = alerts[col][dates.isna()]
        if len(bad):
            raise ParameterError(
                MSG_DATES.format(col=col, count=len(bad), example=bad.iloc[0]), key="alerts"
            )


def _root(parent: list[int], i: int) -> int:
    seen = set()
    while parent[i] != -1 and i not in seen:
        seen.add(i)
        i = parent[i]
    return i


def _same_segment(a: _Alert, b: _Alert) -> bool:
    if not a.overlaps(b):
        return False
    if not (a.own in b.aliases or b.own in a.aliases):
        return False
    ka, kb = (a.metric, a.direction), (b.metric, b.direction)
    return kb in LINKED.get(ka, ()) or ka in LINKED.get(kb, ())


def group_incidents(
    alerts: pd.DataFrame,
    ds: Any,
    market: str,
    *,
    start: date | str,
    end: date | str,
    events: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Fold a market's alerts that share a cause into incidents.

    Parameters
    ----------
    alerts : pandas.DataFrame
        One market's alerts, as :func:`qualitylab.detect.scan` or
        :func:`qualitylab.report.scan_period` return them (needs ``market,
        metric, dimension, segment, start_date, end_date, direction``; uses
        ``observed, expected, impact, related`` when present).
    ds : Dataset
        The data the alerts were found in (the explanations query it).
    market : str
        The alerts' market.
    start, end : date or ISO string
        The scanned period. Explanations compare an alert's window (clipped to
        ``end``) with the :data:`BASELINE_DAYS` days before ``start`` (or
        before the window, for a window starting earlier), as the scan did.
    events : pandas.DataFrame, optional
        The ``events`` table (``effective_at, market, kind, policy,
        description``); by default the dataset's, when it has one. Pass an
        empty frame to leave events out.

    Returns
    -------
    pandas.DataFrame
        The alerts (same rows, same order, same columns; the input is not
        modified), then :data:`INCIDENT_COLUMNS`:

        * ``incident_id`` — :func:`incident_key` of the incident's lead alert
          (the same for every alert of the incident);
        * ``incident_role`` — ``"lead"`` or ``"child"``;
        * ``incident_cause`` — one sentence: for a lead, what moved and how
          many alerts it explains; for a child, why it is folded (e.g.
          "vendor VendorC (accuracy −8.1 pp) explains 84% of override_rate's
          change in policy scam");
        * ``incident_event`` — the linked event, ``"kind[policy] date:
          description"``, or ``""``.

        ``attrs["incidents"]`` holds the number of incidents, the engine
        queries made (``rca_calls``) and the explanations rca refused
        (``refused``, e.g. a metric it does not accept yet).

    Notes
    -----
    Alerts join only when their windows overlap and one cause explains them:

    1. *Same segment*: two alerts on the same segment whose metrics are
       :data:`LINKED` in the directions they moved (a volume surge and the
       SLA of that queue; an accuracy drop and the override rate of that
       vendor). An alert also stands for the views ``scan`` folded into its
       ``related`` (a site's alert for its vendor, a queue's surge for the
       market's), except a market-wide alert, whose views are every part of
       the market. Alerts linked in chains form one group; the lead is the
       first in :data:`CAUSE_ORDER` (then the larger ``impact``). Two alerts
       of one segment that are not linked stay apart even when they start
       on the same day.
    2. *Another dimension's segment*: for the lead of each such group,
       :func:`qualitylab.rca.decompose` of its metric over its window against
       the baseline, *within* the alert's segment (``where=``), split by the
       dimensions of the other alerts overlapping it (one engine query;
       response percentiles are decomposed through ``sla_compliance``, their
       SLA breaches, which add up where percentiles do not; volume through
       decision counts per segment, one engine query). A candidate
       segment S (the segment of an overlapping alert of another group)
       explains the alert when, inside the alert's segment, S's shift-share
       contribution is at least :data:`MIN_EXPLAINED` of the change, S's own
       change is significant at :data:`ALPHA`, and the rest of the alert's
       segment moved at most :data:`REST_RATIO` as much as S (a hotspot, not
       a big segment carrying a uniform change). The group folds under S's
       incident. An alert rca refuses (a metric it does not accept, too
       little data) is left as it is.
    3. *Events*: an event of :data:`EVENT_EFFECTS` (its market or ``"*"``)
       gathers the incidents whose lead starts within :data:`EVENT_DAYS` of
       the event's market-local date and moves as one of its patterns
       implies (for a ``policy_change`` naming a policy, leads on that
       policy). The lead of the merged incident is the one whose metric
       comes first in that pattern (then the larger ``impact``). An event
       matching a single incident is linked to it without merging.

    Cost: at most one rca call (or count query) per group lead that has a
    candidate segment, cached by metric, window and dimensions; nothing is
    queried per segment.

    Examples
    --------
    No alerts, no incidents (nothing is queried):

    >>> empty = pd.DataFrame(columns=["market", "metric", "dimension", "segment",
    ...                               "start_date", "end_date", "direction"])
    >>> group_incidents(empty, None, "SG", start="2026-10-26",
    ...                 end="2026-11-22").columns[-4:].tolist()
    ['incident_id', 'incident_role', 'incident_cause', 'incident_event']
    """
    _check(alerts, market)
    start_d, end_d = pd.Timestamp(start).date(), pd.Timestamp(end).date()
    out = alerts.copy()
    out.attrs = dict(alerts.attrs)
    if out.empty:
        for c in INCIDENT_COLUMNS:
            out[c] = pd.Series(dtype="object")
        out.attrs["incidents"] = {"incidents": 0, "rca_calls": 0, "refused": []}
        return out
    recs = _records(alerts)
    n = len(recs)
    parent = [-1] * n
    why: list[str] = [""] * n

    # 1. same segment: components of linked pairs, led by the most upstream alert
    comp = list(range(n))

    def comp_of(i: int) -> int:
        while comp[i] != i:
            comp[i] = comp[comp[i]]
            i = comp[i]
        return i

    for a in recs:
        for b in recs[a.i + 1 :]:
            if _same_segment(a, b):
                comp[comp_of(b.i)] = comp_of(a.i)
    members: dict[int, list[int]] = {}
    for i in range(n):
        members.setdefault(comp_of(i), []).append(i)
    for idx in members.values():
        lead = min(idx, key=lambda i: recs[i].rank())
        for i in idx:
            if i != lead:
                a, b = recs[lead], recs[i]
                parent[i] = lead
                why[i] = (
                    f"{b.metric} {_change(b)} in {_where(*b.own)} moves with "
                    f"{a.metric} {_change(a)} in {_where(*a.own)} (same segment, same days)"
                )
    group = [_root(parent, i) for i in range(n)]
    leads = sorted(set(group), key=lambda g: recs[g].rank())

    # 2. another dimension's segment explains a group's lead
    explainer = _Explainer(ds, market, start_d, end_d)
    edges: list[tuple[float, int, int, _Explanation]] = []
    for g in leads:
        a = recs[g]
        offers: dict[tuple[str, str], set[int]] = {}
        for b in recs:
            if group[b.i] == g or not a.overlaps(b):
                continue
            dims = _CONTENT_DIMS if a.metric in _AI_METRICS else _EXPLAINABLE_DIMS
            for d, s in b.aliases:
                if d in dims and d != a.dimension and (d, s) not in a.aliases:
                    offers.setdefault((d, s), set()).add(group[b.i])
        if not offers:
            continue
        exp = explainer.explain(a, set(offers))
        if exp is None:
            continue
        targets = offers[(exp.dimension, exp.segment)]
        # the explaining segment's group: the one showing the same metric, else the most upstream
        target = min(
            targets,
            key=lambda t: (
                all(recs[i].metric != a.metric for i in range(n) if group[i] == t),
                recs[t].rank(),
            ),
        )
        edges.append((exp.share, g, target, exp))
    top = list(range(n))  # incident of each group lead, after rule 2 (union without cycles)

    def find(i: int) -> int:
        while top[i] != i:
            i = top[i]
        return i

    for share, g, target, exp in sorted(edges, key=lambda e: -e[0]):
        if find(target) == find(g):
            continue
        top[g] = target
        lead = recs[target]
        parent[g] = target
        a = recs[g]
        where_lead = _where(*lead.own)
        named = _where(exp.dimension, exp.segment)
        via = "" if named == where_lead else f" (lead alert in {where_lead})"
        what = a.metric if exp.metric == a.metric else f"{a.metric} (via {exp.metric})"
        why[g] = (
            f"{named} ({lead.metric} {_change(lead)}){via} explains {share:.0%} of "
            f"{what}'s change in {_where(*a.own)}"
        )

    # 3. events gather incidents
    roots = sorted({_root(parent, i) for i in range(n)}, key=lambda r: recs[r].rank())
    linked: dict[int, _Event] = {}
    claims: list[tuple[_Event, list[int]]] = []
    for ev in _events(ds, market, events):
        options = []
        for k, pat in enumerate(EVENT_EFFECTS[ev.kind]):
            fit = [r for r in roots if k in _fits(ev, recs[r])]
            if fit:
                order = list(pat)
                fit.sort(key=lambda r: (order.index(recs[r].metric), recs[r].rank()))
                options.append((len(fit), -order.index(recs[fit[0]].metric), -k, fit))
        if options:
            claims.append((ev, max(options)[3]))
    # the event gathering most incidents first, then the closest in time
    claims.sort(key=lambda c: (-len(c[1]), abs((recs[c[1][0]].start - c[0].day).days)))
    taken: set[int] = set()
    for ev, fit in claims:
        fit = [r for r in fit if r not in taken]
        if not fit:
            continue
        lead = fit[0]
        taken.update(fit)
        linked[lead] = ev
        for r in fit[1:]:
            parent[r] = lead
            a = recs[r]
            why[r] = (
                f"{ev.kind} on {ev.day.isoformat()} ({ev.description}) implies "
                f"{a.metric} {a.direction}; it moved {_change(a)} in {_where(*a.own)}"
            )

    # the frame
    root = [_root(parent, i) for i in range(n)]
    size = {r: root.count(r) for r in set(root)}
    ids, roles, causes, evs = [], [], [], []
    rows = alerts.to_dict("records")
    for i in range(n):
        r = root[i]
        ids.append(incident_key(rows[r]))
        roles.append("lead" if r == i else "child")
        ev = linked.get(r)
        evs.append(ev.label() if ev else "")
        if r == i:
            a = recs[i]
            more = size[r] - 1
            text = (
                f"{a.metric} {_change(a)} in {_where(*a.own)} from {a.start.isoformat()} to "
                f"{a.end.isoformat()}"
            )
            if more:
                text += f", explaining {more} further alert{'s' if more > 1 else ''}"
            if ev:
                text += f", from the {ev.kind} on {ev.day.isoformat()} ({ev.description})"
            causes.append(text)
        else:
            causes.append(why[i])
    out["incident_id"] = ids
    out["incident_role"] = roles
    out["incident_cause"] = causes
    out["incident_event"] = evs
    out.attrs["incidents"] = {
        "incidents": len(size),
        "rca_calls": explainer.calls,
        "refused": list(explainer.refused),
    }
    return out
