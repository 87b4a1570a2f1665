"""Planted incidents: where and when each goes, and whether the default scan could find it.

:func:`plan_incidents` chooses each incident's market and window (all in the
last four weeks) and the effects it plants; :func:`incident_findability`
applies the ``findable`` rule of the package docstring to the design, never
to what a scan found (:data:`INCIDENT_COLUMNS` of ``incidents.csv``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

from qualitylab.data.params import Parameters
from qualitylab.demodata.generate.model import (
    ATTACK_HARD,
    ATTACKS,
    HARD_SHARE,
    INHOUSE,
    POLICY_NAMES,
    QUEUES,
    RED_TEAM_DROP_HARD,
    REPORTED_ACCURACY,
    ROTA_CUT,
    Effects,
    Market,
    ScaleSpec,
    View,
    complete_weeks,
    local_us,
)

#: Columns of ``incidents.csv``, in order: where and when the incident was
#: planted (market-local ISO dates), then whether the default scan could see it
#: (module docstring): ``expected_n`` (expected audits, or decisions/items for
#: census metrics, of the incident's days on the series that shows it best),
#: ``planted_change`` (that series' change the design plants: a rate
#: difference; for volume the relative change), ``detectable_change`` (the
#: smallest change of that series the scan sees with 80% power, from
#: :func:`qualitylab.detect.minimum_detectable_change`) and ``findable``
#: (``True``/``False``), and ``best_series`` (``"metric dimension=segment"`` of
#: that series). Numbers are empty where undefined.
INCIDENT_COLUMNS = (
    "market",
    "metric",
    "dimension",
    "segment",
    "start_date",
    "end_date",
    "direction",
    "description",
    "expected_n",
    "planted_change",
    "detectable_change",
    "findable",
    "best_series",
)
#: Power a scan needs for an incident to count as ``findable`` (``incidents.csv``).
FINDABLE_POWER = 0.8
#: False discovery rate the ``findable`` rule assumes (the scan's ``medium`` sensitivity).
FINDABLE_FDR = 0.05


# ---------------------------------------------------------------------------
# Planning: incidents and per-market state
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class _Incident:
    market: str
    metric: str
    dimension: str
    segment: str
    start: int  # day index, inclusive
    end: int  # day index, inclusive
    direction: str
    description: str


# Where each incident goes when its preferred markets are not generated: the first
# listed market that is, else the generated market with the fewest incidents so far.
_PREFERRED = {
    "accuracy_drop": ("ID", "TH", "VN", "PH", "MY", "SG"),
    "sla_breach": ("TH", "ID", "SG", "PH", "VN"),
    "ai_recall_drop": ("SG", "MY", "PH", "ID", "TH"),
    "over_enforcement": ("PH", "ID", "TH", "SG", "VN"),
    "volume_spike": ("VN", "SG", "PH", "ID", "TH"),
    "reporting_gap": ("SG", "MY", "ID", "TH", "PH"),
    "outage": ("MY", "TH", "SG", "ID", "KR"),
    "capacity_gap": ("TH", "ID", "PH", "VN", "SG"),
    "red_team_recall": ("ID", "PH", "MY", "SG", "TH"),
}


def plan_incidents(
    codes: tuple[str, ...], params: Parameters, days: int, start: date
) -> tuple[list[_Incident], dict[str, Effects]]:
    """Choose the market and the window of each incident (all in the last four weeks)."""
    last = days - 1
    used = dict.fromkeys(codes, 0)
    effects = {c: Effects() for c in codes}
    incidents: list[_Incident] = []

    def partners(c: str) -> list[str]:
        return [v for v in params.market(c).vendors if v != INHOUSE]

    def pick(kind: str, need_partner: bool = False) -> str | None:
        ok = [c for c in codes if partners(c) or not need_partner]
        preferred = [c for c in _PREFERRED[kind] if c in ok]
        if not ok:
            return None
        chosen = preferred[0] if preferred else min(ok, key=lambda c: (used[c], codes.index(c)))
        used[chosen] += 1
        return chosen

    def add(m: str, metric: str, dim: str, seg: str, ago: tuple[int, int], up: bool, text: str):
        """Record an incident from ``ago[0]`` to ``ago[1]`` days before the last day."""
        a, b = last - ago[0], last - ago[1]
        incidents.append(_Incident(m, metric, dim, seg, a, b, "up" if up else "down", text))

    if (m := pick("accuracy_drop")) and last >= 20:
        vs = partners(m) or list(params.market(m).vendors) or [INHOUSE]
        v = "VendorC" if "VendorC" in vs else vs[-1]
        effects[m].accuracy_drop = (last - 20, last - 14, v)
        text = f"{v} accuracy in {m} drops ~10pp for a week after an untrained cohort joined"
        add(m, "accuracy", "vendor", v, (20, 14), False, text)
    if (m := pick("sla_breach")) and last >= 10:
        effects[m].sla_breach = (last - 10, last - 8)
        text = "live_report responses slow down under a 2.5x report surge without extra staff"
        add(m, "sla_compliance", "queue", "live_report", (10, 8), False, text)
        text = "live_report volume x2.5 (coordinated mass-reporting wave)"
        add(m, "volume", "queue", "live_report", (10, 8), True, text)
    if (m := pick("ai_recall_drop")) and last >= 17:
        langs = params.market(m).languages or ("en",)
        lang = "ms" if "ms" in langs else langs[-1]
        effects[m].ai_recall_drop = (last - 17, lang)
        text = f"mod-v4 released in {m} misses far more violating '{lang}' content than mod-v3"
        add(m, "ai_recall", "language", lang, (17, 0), False, text)
    if (m := pick("over_enforcement")) and last >= 13:
        effects[m].over_enforcement = (last - 13, last - 7)
        text = "moderators over-apply the updated scam policy until refresher training"
        add(m, "over_enforcement_rate", "policy", "scam", (13, 7), True, text)
        change = start + timedelta(days=last - 13)
        recovered = start + timedelta(days=last - 6)
        text = (
            f"scam policy rollout: accuracy on scam decisions dips from the policy change on "
            f"{change.isoformat()} and recovers on {recovered.isoformat()} after refresher "
            "training (the day after end_date)"
        )
        add(m, "accuracy", "policy", "scam", (13, 7), False, text)
    if (m := pick("volume_spike")) and last >= 5:
        effects[m].volume_spike = (last - 5, last - 4)
        text = f"viral live event doubles all {m} volume for two days"
        add(m, "volume", "market", m, (5, 4), True, text)
    weeks = complete_weeks(start, days)
    if (m := pick("reporting_gap", need_partner=True)) and len(weeks) >= 4:
        v = "VendorA" if "VendorA" in partners(m) else partners(m)[0]
        effects[m].reporting_gap = (weeks[-3], v)
        text = f"{v} reports ~97% accuracy in {m} while QA measures ~90%"
        add(m, "reporting_gap", "vendor", v, (last - weeks[-3], last - weeks[-1] - 6), True, text)
    if (m := pick("outage")) and last >= 24:
        effects[m].outage = last - 24
        text = "AI scoring outage 14:00-24:00 local: every item routed to humans"
        add(m, "auto_action_rate", "market", m, (24, 24), False, text)
    if (m := pick("capacity_gap")) and last >= 27:
        effects[m].capacity_gap = (last - 27, last - 21)
        text = (
            f"live_comment rota cut to {ROTA_CUT:.0%} of plan for a week (evening shifts "
            "unfilled, no overtime): productive hours fall below the Erlang C requirement, "
            "so required agents exceed staffed"
        )
        add(m, "capacity_gap", "queue", "live_comment", (27, 21), True, text)
    if (m := pick("red_team_recall")) and last >= 27:
        effects[m].red_team_drop = (last - 27, "code_switching")
        text = (
            "a new code-switching technique evades the model: red-team recall on "
            "code_switching items falls far below clean controls"
        )
        add(m, "red_team_recall", "attack", "code_switching", (27, 0), False, text)
    incidents.sort(key=lambda i: (i.start, i.market, i.metric))
    return incidents, effects


# Days of baseline the default scan takes before the period it alerts on.
_SCAN_BASELINE_DAYS = 28
# Day-to-day noise of the demo volumes (sd of log volume, see ``model.build_market``).
_VOLUME_NOISE = 0.03
_HIGHER_IS_BETTER = {"accuracy", "sla_compliance", "ai_recall", "red_team_recall"}
# Views of an incident's metric the scan watches and the evaluation credits (accuracy is
# one minus its three error rates).
_VIEW_METRICS = {
    "accuracy": (
        "accuracy",
        "over_enforcement_rate",
        "under_enforcement_rate",
        "wrong_policy_rate",
    ),
    "over_enforcement_rate": ("over_enforcement_rate", "accuracy"),
    "under_enforcement_rate": ("under_enforcement_rate", "accuracy"),
    "wrong_policy_rate": ("wrong_policy_rate", "accuracy"),
    "ai_recall": ("ai_recall",),
    "auto_action_rate": ("auto_action_rate",),
    "sla_compliance": ("sla_compliance",),
    # the reconciliation compares the vendor's report with QA's accuracy of the vendor
    "reporting_gap": ("accuracy",),
}


def incident_views(m: Market, incidents: Sequence[tuple[int, _Incident]]) -> list[View]:
    """The rate series (incident segment and its market) each incident of ``m`` shows on."""
    views = []
    for i, inc in incidents:
        segs = [(inc.dimension, inc.segment)]
        if inc.metric == "reporting_gap":
            segs = [("vendor", inc.segment)]
        elif inc.dimension != "market":
            segs.append(("market", m.code))
        for metric in _VIEW_METRICS.get(inc.metric, ()):
            direction = inc.direction
            if inc.metric == "reporting_gap":
                direction = "down"  # QA measures less than the vendor reports
            elif (metric in _HIGHER_IS_BETTER) != (inc.metric in _HIGHER_IS_BETTER):
                direction = "up" if direction == "down" else "down"
            for dim, seg in segs:
                sums = [np.zeros(m.days) for _ in range(4)]
                views.append(View(i, metric, dim, seg, direction, *sums))
    return views


def scan_series(m: Market) -> int:
    """Series the default ``detect.scan`` of this market judges at most (its Bonferroni count).

    Every (dimension, segment) of the scan's default dimensions carries volume,
    sla_compliance, three response percentiles, four QA rates and two workflow
    rates; the content dimensions (market, queue, language, policy, ai_model)
    also three AI rates. A dimension with one segment repeats the market and is
    not scanned. Add reporting_gap (accuracy and SLA per partner) and
    red_team_recall per attack. Series too small to judge are skipped by the
    scan, so this is an upper bound (the ``findable`` rule errs on blind).
    """
    release_inside = m.release_us is not None and int(local_us(m, 0, 0)) < m.release_us
    live_queues = len(QUEUES)
    dims = (
        ("market", 1, True),
        ("vendor", len(m.vendors), False),
        ("site", len(m.sites), False),
        ("queue", live_queues, True),
        ("language", len(m.languages), True),
        ("policy", len(POLICY_NAMES), True),
        ("ai_model", 2 if release_inside else 1, True),
    )
    total = 0
    for dim, k, content in dims:
        if dim != "market" and k == 1:
            continue
        total += k * (11 + (3 if content else 0))
    return total + 2 * sum(v != INHOUSE for v in m.vendors) + len(ATTACKS)


def _critical_z(period_days: int, series: int, fdr: float) -> float:
    """Window z a lone discovery needs: the scan's search over the period, Bonferroni over series."""
    from scipy.optimize import brentq

    from qualitylab.detection.detect import scan_p_value

    target = fdr / max(series, 1)
    return float(brentq(lambda z: float(scan_p_value(z, period_days)) - target, 0.0, 40.0))


@dataclass(frozen=True)
class Findability:
    expected_n: float  # observations behind the best series over the incident's days
    planted_change: float  # change of the best series the design plants
    detectable_change: float  # change the scan sees there with FINDABLE_POWER
    findable: bool
    series: str = ""  # "metric dimension=segment" of that series


def _recall_at(m: Market, hard: float) -> float:
    """AI recall of violating items of which a share ``hard`` are hard (design, exact)."""
    from scipy.stats import beta

    t = m.threshold
    return float((1 - hard) * beta.sf(t, 6.0, 1.1) + hard * beta.sf(t, 1.1, 4.5))


def incident_findability(
    m: Market, incidents: Sequence[tuple[int, _Incident]], spec: ScaleSpec
) -> dict[int, Findability]:
    """Whether the default scan could see each incident of ``m`` (see :func:`generate`)."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    from qualitylab.detection.detect import minimum_detectable_change

    period = m.days - _SCAN_BASELINE_DAYS
    out: dict[int, Findability] = {}
    if period < 1:  # nothing is scanned with a full baseline
        nan = float("nan")
        return {i: Findability(nan, nan, nan, False) for i, _ in incidents}
    series = scan_series(m)
    base = np.zeros(m.days, dtype=bool)
    base[:_SCAN_BASELINE_DAYS] = True
    for day, _name in m.holidays:  # the scan masks holidays and outages out of baselines
        base[day] = False
    z_power = float(norm.ppf(FINDABLE_POWER))

    def rate_test(r0: float, n1: float, n0: float | None, direction: str, days: int) -> float:
        if not (0 < r0 < 1 and n1 > 0):
            return float("nan")
        return minimum_detectable_change(
            r0,
            n1,
            n_reference=n0,
            period_days=days,
            series=series,
            fdr=FINDABLE_FDR,
            power=FINDABLE_POWER,
            direction=direction,
        )

    for i, inc in incidents:
        days = np.arange(inc.start, inc.end + 1)
        best: Findability | None = None
        candidates: list[tuple[bool, float, Findability]] = []
        if inc.metric == "capacity_gap":
            # staffing is a census, not a sample: the rota cut below the Erlang C
            # requirement shows on every day it lasts
            out[i] = Findability(
                float("nan"),
                ROTA_CUT - 1.0,
                float("nan"),
                True,
                f"capacity_gap {inc.dimension}={inc.segment}",
            )
            continue
        if inc.metric == "volume":
            qs = (
                [QUEUES.index(inc.segment)]
                if inc.dimension == "queue"
                else list(range(len(QUEUES)))
            )
            lam0 = m.lam_day[np.ix_(days, qs)].sum(axis=1)
            lam1 = (m.lam_day * m.vol_mult)[np.ix_(days, qs)].sum(axis=1)
            # as the scan's STL detector: each day's log deviation over its noise (design
            # day noise plus Poisson) read as Student's t with 10 d.f., turned into a
            # normal z and summed over the window's days (Stouffer)
            sd = math.sqrt(_VOLUME_NOISE**2 + 1 / lam0.mean())
            zc = _critical_z(period, series, FINDABLE_FDR)
            z_day = (zc + z_power) / math.sqrt(len(days))
            need = float(student_t.isf(norm.sf(z_day), 10)) * sd
            change = float(lam1.sum() / lam0.sum() - 1)
            found = math.log1p(change) * (1 if inc.direction == "up" else -1) >= need
            sign = 1 if inc.direction == "up" else -1
            out[i] = Findability(
                float(lam1.sum()),
                change,
                float(math.expm1(sign * need)),
                bool(found),
                f"volume {inc.dimension}={inc.segment}",
            )
            continue
        if inc.metric == "red_team_recall":
            # red-team items are a census of the test set: uniform over days, 80%
            # violating, the attack one of len(ATTACKS) (controls included)
            per_day = spec.red_team * 0.8 / len(ATTACKS) / m.days
            n1, n0 = per_day * len(days), per_day * base.sum()
            v4 = m.release_us is not None and m.release_us <= int(local_us(m, inc.start, 0))
            hs = HARD_SHARE[1] if v4 else HARD_SHARE[0]
            a = ATTACKS.index(inc.segment)
            r0 = _recall_at(m, hs + (1 - hs) * ATTACK_HARD[a])
            r1 = _recall_at(m, hs + (1 - hs) * RED_TEAM_DROP_HARD)
            mdc = rate_test(r0, n1, n0, inc.direction, period)
            out[i] = Findability(
                n1, r1 - r0, mdc, bool(abs(r1 - r0) >= mdc), f"red_team_recall attack={inc.segment}"
            )
            continue
        for v in m.views:
            if v.incident != i:
                continue
            tot1, tot0 = v.total[days].sum(), v.total[base].sum()
            if not (tot1 > 0 and tot0 > 0):
                continue
            # design effective audits (Kish) of the incident's days and of the baseline
            n1 = tot1**2 / v.inv[days].sum()
            n0 = tot0**2 / v.inv[base].sum()
            r1, r0 = v.hits[days].sum() / tot1, v.hits[base].sum() / tot0
            n_ref: float | None = n0
            horizon = period
            if inc.metric == "reporting_gap":
                # weekly reconciliation: QA's accuracy against the reported ~97% (a
                # score test), searched over the scan's weeks
                r0, n_ref, horizon = REPORTED_ACCURACY, None, max(period // 7, 1)
            change = r1 - r0
            mdc = rate_test(r0, n1, n_ref, v.direction, horizon)
            moved = change < 0 if v.direction == "down" else change > 0
            ok = bool(moved and np.isfinite(mdc) and abs(change) >= mdc)
            ratio = abs(change) / mdc if moved and np.isfinite(mdc) and mdc > 0 else 0.0
            audits = float(v.audits[days].sum())
            name = f"{v.metric} {v.dimension}={v.segment}"
            cand = Findability(audits, float(change), float(mdc), ok, name)
            candidates.append((ok, ratio, cand))
        if candidates:
            # the view the scan sees best: largest planted change relative to what it needs
            best = max(candidates, key=lambda c: c[:2])[2]
        nan = float("nan")
        out[i] = best if best is not None else Findability(nan, nan, nan, False)
    return out
