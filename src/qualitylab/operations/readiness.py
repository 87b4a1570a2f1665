"""Go-live readiness: is a planned queue launch ready, check by check?

A launch plan ``parameters/launches/<name>.yaml`` describes a queue going live
(market, vendor, site, queue, go-live date, expected volume, languages,
policies, SLA and the KPIs the vendor must report). :func:`readiness` checks it
against the data and returns a checklist, one row per check with its status
(``pass``, ``fail`` or ``unknown``), the evidence behind the status and who owns
the fix. Never a bare yes/no.

The checks (:data:`CHECKS`):

``staffing``
    Forecast peak load is covered by the launch roster at the SLA. Peak-hour
    arrivals = ``expected_volume`` x the market's busiest local-hour share of
    decisions (last 28 days) x the share of items people handle in similar
    queues (the vendor's, else the market's); handle time = the plan's
    ``aht_seconds``, else the planning ``aht_seconds`` parameters of the
    similar queues weighted by their human decisions, else productive hours /
    human decisions in them (an upper bound: productive time includes idle
    time between items); agents required by Erlang C for
    ``service_level`` of items within ``sla_seconds``. Staffed = productive
    hours per day the ``staffing`` table rosters for the plan's site and queue
    in the go-live week x the same busiest-hour share (a rota that follows the
    demand curve), on the weakest day.
``calibration``
    The vendor's raters score at least the bar on calibration cases of the
    launch's policies (cases whose expected answer or whose rater label is one
    of them) in sessions held in the 60 days before go-live, with enough cases.
``qa_sampling``
    The audits needed each week to estimate the new queue's accuracy within
    ``qa_margin`` (:func:`qualitylab.stats.audits_for_margin` at the market's
    accuracy target, finite population = a week's expected volume) do not
    exceed the planned audits (``qa_weekly_audits``) or, failing a plan, the
    internal audits the vendor's decisions received per week in the last four
    weeks that audits have had time to land.
``reporting``
    The vendor reported every KPI of ``kpis`` in ``vendor_reported`` in the
    market in the last five weeks.
``languages``
    The plan's site handled at least ``min_n`` human decisions in each of the
    plan's languages in the market in the last 28 days.

"Last 28 days" end on the last market-local day with decisions in the market.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, field_validator, model_validator

from qualitylab.data.localtime import local_hour, period_bounds_utc
from qualitylab.data.params import Frozen, Parameters, format_validation, read_yaml
from qualitylab.data.sources import Dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.metrics import (
    Period,
    audited_decisions,
    decisions_in_period,
    resolve_period,
)
from qualitylab.measure.stats import audits_for_margin, proportion_ci

__all__ = [
    "CHECKS",
    "KPI_NAMES",
    "READINESS_COLUMNS",
    "STATUSES",
    "LaunchPlan",
    "has_failures",
    "load_launch_plan",
    "load_launch_plans",
    "readiness",
]

#: The checks of :func:`readiness`, in checklist order.
CHECKS = ("staffing", "calibration", "qa_sampling", "reporting", "languages")
#: Statuses a check can have.
STATUSES = ("pass", "fail", "unknown")
#: Columns of the checklist.
READINESS_COLUMNS = ["check", "status", "evidence", "owner"]
#: KPI names a plan may require (the shared metric vocabulary of DESIGN.md).
KPI_NAMES = (
    "volume",
    "backlog",
    "sla_compliance",
    "response_p50",
    "response_p90",
    "response_p99",
    "throughput",
    "utilization",
    "accuracy",
    "over_enforcement_rate",
    "under_enforcement_rate",
    "wrong_policy_rate",
    "qa_alignment",
    "ai_precision",
    "ai_recall",
    "ai_fpr",
    "ai_fnr",
    "ai_f1",
    "override_rate",
    "auto_action_rate",
    "calibration_score",
    "reporting_gap",
    "escalation_rate",
    "escalation_resolution_p90",
    "required_agents",
    "capacity_gap",
    "red_team_recall",
)
LOOKBACK_DAYS = 28  # recent window for profiles, handle time, languages
AUDIT_LAG_DAYS = 7  # audits land days after decisions: skip the last week
REPORTING_DAYS = 35  # a KPI counts as reported when reported within five weeks


class LaunchPlan(Frozen):
    """A planned queue go-live (``parameters/launches/<name>.yaml``).

    Attributes
    ----------
    market : str
        ISO 3166-1 alpha-2 code with a parameters file.
    vendor, site : str
        Partner and delivery site that will staff the queue.
    queue : str
        The new queue (lower case, ``[a-z][a-z0-9_]*``).
    date : date
        Go-live, market-local.
    expected_volume : float
        Items per day expected at go-live (> 0).
    languages : tuple of str
        ISO 639-1 codes the queue serves (at least one).
    policies : tuple of str
        Policies moderators apply in the queue (at least one).
    sla_seconds : float
        Response SLA of the queue (> 0).
    aht_seconds : float, optional
        Planning handle time of the queue in seconds (> 0), e.g. from the
        vendor contract; by default the planning ``aht_seconds`` parameters of
        the similar queues, weighted by their human decisions.
    kpis : tuple of str
        KPIs the vendor must report, from :data:`KPI_NAMES`.
    service_level : float, optional
        Share of items to decide within the SLA for staffing (default: the
        market's ``sla_compliance`` target, else 0.9).
    similar_queues : tuple of str
        Queues whose handle time and automation share the new queue is
        expected to have (default: the market's queues sharing the plan
        queue's prefix before ``_``, e.g. ``live_*``; all queues if none).
    calibration_bar : float, optional
        Calibration score to reach (default: the market's
        ``calibration_score`` target, else 0.85).
    calibration_min_cases : int, default 10
        Distinct calibration cases on the launch policies needed.
    calibration_max_age_days : int, default 60
        Sessions older than this before go-live do not count.
    qa_margin : float, default 0.05
        Half-width of the weekly accuracy interval QA must reach.
    qa_weekly_audits : int, optional
        Audits per week planned for the new queue; when omitted the vendor's
        recent weekly internal audit volume is taken as what is achievable.
    expected_failures : tuple of str
        Checks (from :data:`CHECKS`) this plan is known to fail, e.g. the demo
        plan's ``[reporting]``. Documentation for people and tests; it does not
        change any status.
    description : str
        Free text.
    """

    market: str
    vendor: str = Field(min_length=1)
    site: str = Field(min_length=1)
    queue: str
    date: date
    expected_volume: float = Field(gt=0)
    languages: tuple[str, ...] = Field(min_length=1)
    policies: tuple[str, ...] = Field(min_length=1)
    sla_seconds: float = Field(gt=0)
    aht_seconds: float | None = Field(None, gt=0)
    kpis: tuple[str, ...] = ()
    service_level: float | None = Field(None, gt=0, lt=1)
    similar_queues: tuple[str, ...] = ()
    calibration_bar: float | None = Field(None, gt=0, le=1)
    calibration_min_cases: int = Field(10, ge=1)
    calibration_max_age_days: int = Field(60, ge=1)
    qa_margin: float = Field(0.05, gt=0, lt=0.5)
    qa_weekly_audits: int | None = Field(None, ge=0)
    expected_failures: tuple[str, ...] = ()
    description: str = ""

    @field_validator("market")
    @classmethod
    def _market(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Z]{2}", v):
            raise ValueError(f"market must be an ISO 3166-1 alpha-2 code, upper case; got {v!r}")
        return v

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", v):
            raise ValueError(f"queue must match [a-z][a-z0-9_]*; got {v!r}")
        return v

    @field_validator("languages")
    @classmethod
    def _languages(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for lang in v:
            if not re.fullmatch(r"[a-z]{2}", lang):
                raise ValueError(f"language must be ISO 639-1 lower case, got {lang!r}")
        return v

    @field_validator("kpis")
    @classmethod
    def _kpis(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for kpi in v:
            if kpi not in KPI_NAMES:
                raise ValueError(f"unknown KPI {kpi!r}; choose from {', '.join(KPI_NAMES)}")
        return v

    @field_validator("expected_failures")
    @classmethod
    def _expected(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for check in v:
            if check not in CHECKS:
                raise ValueError(f"unknown check {check!r}; choose from {', '.join(CHECKS)}")
        return v

    @model_validator(mode="after")
    def _new_names(self) -> LaunchPlan:
        for name, values in (("policies", self.policies), ("similar_queues", self.similar_queues)):
            if len(set(values)) != len(values):
                raise ValueError(f"{name} repeats a value: {list(values)}")
        return self


def load_launch_plan(
    path: str | os.PathLike[str], *, parameters: Parameters | None = None
) -> LaunchPlan:
    """Read and validate one launch plan.

    Parameters
    ----------
    path : path
        The YAML file.
    parameters : Parameters, optional
        When given, the plan's market must have a parameters file.

    Returns
    -------
    LaunchPlan

    Raises
    ------
    ParameterError
        Naming the file and the key: an unknown key, a missing key, a bad
        value, or a market without parameters.

    Examples
    --------
    >>> plan = load_launch_plan("parameters/launches/sg-live-shopping.yaml")
    >>> plan.market, plan.queue, plan.date.isoformat(), plan.expected_failures
    ('SG', 'live_shopping', '2026-11-30', ('reporting',))
    """
    p = Path(path)
    if not p.is_file():
        raise ParameterError(f"{p}: launch plan file not found", file=str(p))
    raw = read_yaml(p)
    try:
        plan = LaunchPlan(**raw)
    except ValidationError as exc:
        raise format_validation(p, exc) from None
    if parameters is not None and plan.market not in parameters.markets:
        known = ", ".join(parameters.codes) or "none"
        raise ParameterError(
            f"{p}: key 'market': market {plan.market!r} has no parameters file "
            f"(known markets: {known})",
            file=str(p),
            key="market",
        )
    return plan


def load_launch_plans(
    root: str | os.PathLike[str], *, parameters: Parameters | None = None
) -> dict[str, LaunchPlan]:
    """Validate every plan in ``<root>/launches/`` (``root`` = the parameters folder).

    Returns
    -------
    dict
        Plan name (file stem) -> :class:`LaunchPlan`; empty without a folder.

    Examples
    --------
    >>> sorted(load_launch_plans("parameters"))
    ['sg-live-shopping']
    """
    folder = Path(root) / "launches"
    if not folder.is_dir():
        return {}
    return {
        p.stem: load_launch_plan(p, parameters=parameters) for p in sorted(folder.glob("*.y*ml"))
    }


def has_failures(checklist: pd.DataFrame) -> bool:
    """Whether any check of a :func:`readiness` checklist failed (CLI exit 1).

    Examples
    --------
    >>> has_failures(pd.DataFrame({"check": ["staffing"], "status": ["unknown"]}))
    False
    """
    return bool((checklist["status"] == "fail").any())


# --------------------------------------------------------------------------- #
# Erlang C
# --------------------------------------------------------------------------- #
def _erlang_c(load: float, agents: int) -> float:
    """Probability that an arrival waits (Erlang C), via the Erlang B recursion."""
    if agents <= load:
        return 1.0
    b = 1.0
    for k in range(1, agents + 1):
        b = load * b / (k + load * b)
    return agents * b / (agents - load * (1.0 - b))


def _service_level(rate_per_hour: float, aht_seconds: float, target: float, agents: int) -> float:
    load = rate_per_hour * aht_seconds / 3600.0
    if agents <= load:
        return 0.0
    wait = _erlang_c(load, agents)
    return 1.0 - wait * math.exp(-(agents - load) * target / aht_seconds)


def _required_agents(
    arrival_rate_per_hour: float, aht_seconds: float, target_seconds: float, service_level: float
) -> int:
    """Fewest agents so that ``service_level`` of items wait at most ``target_seconds``.

    M/M/c (Erlang C): :math:`SL = 1 - C(c, a)\\,e^{-(c-a)t/AHT}` with offered
    load :math:`a = \\lambda \\cdot AHT`. Used when :mod:`qualitylab.capacity`
    is not available.
    """
    if arrival_rate_per_hour <= 0:
        return 0
    load = arrival_rate_per_hour * aht_seconds / 3600.0
    agents = max(1, math.floor(load) + 1)
    while (
        _service_level(arrival_rate_per_hour, aht_seconds, target_seconds, agents) < service_level
    ):
        agents += 1
    return agents


def _agents_function() -> tuple[Callable[..., object], str]:
    try:
        from qualitylab.operations.capacity import required_agents  # type: ignore[attr-defined]
    except ImportError:
        return _required_agents, "Erlang C"
    return required_agents, "Erlang C (qualitylab.capacity)"


def _agents_needed(rate: float, aht: float, sla: float, level: float) -> tuple[int, str]:
    fn, label = _agents_function()
    if fn is not _required_agents:
        try:
            return int(math.ceil(float(np.asarray(fn(rate, aht, sla, level)).item()))), label
        except (TypeError, ValueError):
            pass
    return _required_agents(rate, aht, sla, level), "Erlang C"


# --------------------------------------------------------------------------- #
# Checks
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class _Context:
    ds: Dataset
    plan: LaunchPlan
    window: Period  # last LOOKBACK_DAYS days with data
    confidence_level: float
    min_n: int
    targets: dict[str, float]
    timezone: str


def _row(check: str, status: str, evidence: str, owner: str) -> dict[str, str]:
    return {"check": check, "status": status, "evidence": evidence, "owner": owner}


def _missing(ctx: _Context, check: str, table: str, owner: str) -> dict[str, str] | None:
    if ctx.ds.has(table):
        return None
    return _row(check, "unknown", f"table '{table}' is not in the dataset", owner)


def _peak_share(ctx: _Context) -> tuple[float, int, int]:
    """The market's busiest local hour: (share of decisions, hour, decisions)."""
    dec = decisions_in_period(ctx.ds, market=ctx.plan.market, period=ctx.window)
    lo, hi = period_bounds_utc(ctx.window.start, ctx.window.end, ctx.timezone)
    hour = local_hour(dec.created_at, ctx.timezone, start=lo, end=hi)
    prof = dec.group_by(hour.name("hour")).aggregate(n=dec.count()).to_pandas()
    total = int(prof["n"].sum())
    if total == 0:
        return float("nan"), -1, 0
    top = prof.sort_values(["n", "hour"], ascending=[False, True]).iloc[0]
    return float(top["n"]) / total, int(top["hour"]), total


def _similar_queues(ctx: _Context) -> list[str]:
    if ctx.plan.similar_queues:
        return list(ctx.plan.similar_queues)
    dec = decisions_in_period(ctx.ds, market=ctx.plan.market, period=ctx.window)
    queues = sorted(dec.select("queue").distinct().to_pandas()["queue"])
    prefix = ctx.plan.queue.split("_")[0] + "_"
    same = [q for q in queues if q.startswith(prefix) and q != ctx.plan.queue]
    return same or queues


def _handle_profile(ctx: _Context, queues: list[str]) -> dict[str, float | str]:
    """Handle time and human share of the new queue, from similar queues, vendor first.

    Handle time: the plan's ``aht_seconds``; else the planning handle times
    (``aht_seconds`` parameters) of the similar queues weighted by their human
    decisions; else productive seconds per human decision in the data.
    """
    plan = ctx.plan
    dec = decisions_in_period(ctx.ds, market=plan.market, period=ctx.window)
    dec = dec.filter(dec.queue.isin(queues))
    human = (dec.routing != "ai_auto").cast("int64")
    done = (dec.decided_at.notnull() & (dec.routing != "ai_auto")).cast("int64")
    d = (
        dec.group_by(is_vendor=dec.vendor == plan.vendor, queue=dec.queue)
        .aggregate(items=dec.count(), human=human.sum(), decided=done.sum())
        .to_pandas()
    )
    st = ctx.ds.table("staffing")
    st = st.filter(
        (st.market == plan.market)
        & st.queue.isin(queues)
        & st.date.between(ctx.window.start, ctx.window.end)
    )
    h = (
        st.group_by(is_vendor=st.vendor == plan.vendor, queue=st.queue)
        .aggregate(productive=st.productive_hours.sum())
        .to_pandas()
    )
    m = d.merge(h, on=["is_vendor", "queue"], how="outer").fillna(0.0)
    vendor = m[m["is_vendor"].astype(bool)]
    if len(vendor) and vendor["decided"].sum() > 0 and vendor["productive"].sum() > 0:
        scope, part = f"{plan.vendor}", vendor
    else:
        scope, part = f"all vendors in {plan.market}", m
    decided = float(part["decided"].sum())
    items = float(part["items"].sum())
    share = float(part["human"].sum()) / items if items > 0 else float("nan")
    per_queue = part.groupby("queue")["decided"].sum()
    per_queue = per_queue[per_queue > 0]
    planned = ctx.ds.params.market(plan.market).aht_seconds
    recent = f"{', '.join(queues)}, last {LOOKBACK_DAYS} days"
    if plan.aht_seconds is not None:
        aht, source = float(plan.aht_seconds), "the launch plan's aht_seconds"
    elif len(per_queue) and all(q in planned for q in per_queue.index):
        weights = per_queue.to_numpy(dtype=float)
        aht = float(np.average([planned[q] for q in per_queue.index], weights=weights))
        source = (
            f"planning aht_seconds of {', '.join(per_queue.index)} weighted by their human "
            f"decisions ({scope}, last {LOOKBACK_DAYS} days)"
        )
    else:
        productive = float(part["productive"].sum())
        aht = productive * 3600.0 / decided if decided > 0 and productive > 0 else float("nan")
        source = (
            f"productive s per human decision, {scope}, {recent}; no planning aht_seconds, and "
            "this counts idle time as handling, so it overstates the need"
        )
    return {"aht": aht, "human_share": share, "scope": scope, "source": source}


def _roster(ctx: _Context) -> pd.DataFrame:
    plan = ctx.plan
    last = plan.date + timedelta(days=6)
    st = ctx.ds.table("staffing")
    st = st.filter(
        (st.market == plan.market)
        & (st.vendor == plan.vendor)
        & (st.site == plan.site)
        & (st.queue == plan.queue)
        & st.date.between(plan.date, last)
    )
    r = (
        st.group_by("date")
        .aggregate(scheduled=st.scheduled_hours.sum(), productive=st.productive_hours.sum())
        .to_pandas()
    )
    days = pd.DataFrame({"date": [plan.date + timedelta(days=i) for i in range(7)]})
    r["date"] = pd.to_datetime(r["date"]).dt.date
    return days.merge(r, on="date", how="left").fillna({"scheduled": 0.0, "productive": 0.0})


def _site_productive_ratio(ctx: _Context) -> float:
    plan = ctx.plan
    st = ctx.ds.table("staffing")
    st = st.filter(
        (st.market == plan.market)
        & (st.vendor == plan.vendor)
        & (st.site == plan.site)
        & st.date.between(ctx.window.start, ctx.window.end)
    )
    agg = st.aggregate(s=st.scheduled_hours.sum(), p=st.productive_hours.sum()).to_pandas()
    s, p = agg.loc[0, "s"], agg.loc[0, "p"]
    return float(p / s) if pd.notna(s) and s > 0 else float("nan")


def _check_staffing(ctx: _Context) -> dict[str, str]:
    plan = ctx.plan
    owner = f"{plan.vendor} workforce management"
    if (row := _missing(ctx, "staffing", "staffing", owner)) is not None:
        return row
    share, hour, n_dec = _peak_share(ctx)
    queues = _similar_queues(ctx)
    prof = _handle_profile(ctx, queues)
    aht, human_share = float(prof["aht"]), float(prof["human_share"])
    if not (np.isfinite(share) and np.isfinite(aht) and np.isfinite(human_share)):
        return _row(
            "staffing",
            "unknown",
            f"cannot estimate the load: {n_dec:,} decisions in {plan.market} "
            f"{ctx.window.start}..{ctx.window.end}, handle time of {', '.join(queues)} unknown",
            owner,
        )
    level = plan.service_level or ctx.targets.get("sla_compliance", 0.9)
    rate = plan.expected_volume * share * human_share
    required, method = _agents_needed(rate, aht, plan.sla_seconds, level)
    roster = _roster(ctx)
    ratio = _site_productive_ratio(ctx)
    productive = np.where(
        roster["productive"] > 0,
        roster["productive"],
        roster["scheduled"] * (ratio if np.isfinite(ratio) else 0.0),
    )
    heads = productive * share
    weakest = int(np.argmin(heads))
    staffed = float(heads[weakest])
    load = (
        f"peak hour {hour:02d}:00 carries {share:.1%} of {plan.market} decisions, so "
        f"{plan.expected_volume:,.0f}/day x {share:.1%} x {human_share:.0%} handled by people "
        f"= {rate:.1f} items/h; handle time {aht:.0f} s ({prof['source']}); "
        f"{method}: {required} agents for {level:.0%} within {plan.sla_seconds:.0f} s"
    )
    if roster["scheduled"].sum() == 0:
        return _row(
            "staffing",
            "fail",
            f"{load}; no hours rostered for {plan.queue} at {plan.site} in the go-live week "
            f"{plan.date}..{plan.date + timedelta(days=6)}",
            owner,
        )
    status = "pass" if staffed >= required else "fail"
    staffed_text = (
        f"staffed {staffed:.1f} productive agents at peak on the weakest day "
        f"{roster['date'].iloc[weakest]} ({productive[weakest]:.1f} productive h x {share:.1%}; "
        f"roster of {plan.queue} at {plan.site}, {roster['scheduled'].sum():.0f} scheduled h "
        f"in the go-live week)"
    )
    return _row("staffing", status, f"{load}; {staffed_text}", owner)


def _check_calibration(ctx: _Context) -> dict[str, str]:
    plan = ctx.plan
    owner = f"{plan.vendor} quality lead with the policy team"
    if (row := _missing(ctx, "calibration", "calibration", owner)) is not None:
        return row
    bar = plan.calibration_bar or ctx.targets.get("calibration_score", 0.85)
    first = plan.date - timedelta(days=plan.calibration_max_age_days)
    lo, hi = period_bounds_utc(first, plan.date - timedelta(days=1), ctx.timezone)
    cal = ctx.ds.table("calibration")
    pols = list(plan.policies)
    cal = cal.filter(
        (cal.market == plan.market)
        & (cal.rater_group == plan.vendor)
        & cal.expected_label.notnull()
        & (cal.expected_label.isin(pols) | cal.label.isin(pols))
        & (cal.held_at >= lo)
        & (cal.held_at < hi)
    )
    agg = cal.aggregate(
        n=cal.count(),
        k=(cal.label == cal.expected_label).cast("int64").sum(),
        cases=cal.case_id.nunique(),
        sessions=cal.session_id.nunique(),
        raters=cal.rater_id.nunique(),
        last=cal.held_at.max(),
    ).to_pandas()
    n = int(agg.loc[0, "n"] or 0)
    where = (
        f"{plan.vendor} raters on {', '.join(pols)} in {plan.market}, sessions "
        f"{first}..{plan.date - timedelta(days=1)}"
    )
    if n == 0:
        return _row(
            "calibration",
            "fail",
            f"no calibration ratings by {where} (the last {plan.calibration_max_age_days} days "
            "before go-live)",
            owner,
        )
    k = int(agg.loc[0, "k"])
    cases = int(agg.loc[0, "cases"])
    score = k / n
    lo_ci, hi_ci = proportion_ci(k, n, confidence_level=ctx.confidence_level)
    last = pd.Timestamp(agg.loc[0, "last"]).tz_convert(ctx.timezone).date()
    text = (
        f"score {score:.1%} (CI {lo_ci:.1%}-{hi_ci:.1%}) on {n} ratings of {cases} cases by "
        f"{int(agg.loc[0, 'raters'])} {where}; {int(agg.loc[0, 'sessions'])} session(s), last "
        f"{last}; bar {bar:.0%}, at least {plan.calibration_min_cases} cases"
    )
    if cases < plan.calibration_min_cases:
        return _row("calibration", "unknown", f"too few cases: {text}", owner)
    return _row("calibration", "pass" if score >= bar else "fail", text, owner)


def _check_qa(ctx: _Context) -> dict[str, str]:
    plan = ctx.plan
    owner = "internal QA"
    if (row := _missing(ctx, "qa_sampling", "qa_audits", owner)) is not None:
        return row
    p = ctx.targets.get("accuracy", 0.5)
    p = p if 0 < p < 1 else 0.5
    weekly_volume = plan.expected_volume * 7
    needed = int(
        audits_for_margin(
            p,
            plan.qa_margin,
            confidence_level=ctx.confidence_level,
            population=max(weekly_volume, 1.0),
        )
    )
    goal = (
        f"{needed} audits/week for accuracy within ±{plan.qa_margin:.0%} at "
        f"{ctx.confidence_level:.0%} (anticipated {p:.0%}, {weekly_volume:,.0f} items/week)"
    )
    if plan.qa_weekly_audits is not None:
        have, source = plan.qa_weekly_audits, "planned qa_weekly_audits"
    else:
        end = ctx.window.end - timedelta(days=AUDIT_LAG_DAYS)
        period = Period(end - timedelta(days=LOOKBACK_DAYS - 1), end)
        j = audited_decisions(ctx.ds, market=plan.market, period=period, qa_source="internal")
        j = j.filter(j.vendor == plan.vendor)
        count = int(j.count().to_pyarrow().as_py())
        have = count * 7 / period.days
        source = (
            f"{plan.vendor}'s recent internal audits ({count} of decisions made "
            f"{period.start}..{period.end})"
        )
    status = "pass" if have >= needed else "fail"
    return _row("qa_sampling", status, f"need {goal}; have {have:.0f}/week from {source}", owner)


def _check_reporting(ctx: _Context) -> dict[str, str]:
    plan = ctx.plan
    owner = f"{plan.vendor} account management"
    if not plan.kpis:
        return _row("reporting", "pass", "the plan requires no KPI", owner)
    if (row := _missing(ctx, "reporting", "vendor_reported", owner)) is not None:
        return row
    since = ctx.window.end - timedelta(days=REPORTING_DAYS - 1)
    vr = ctx.ds.table("vendor_reported")
    vr = vr.filter(
        (vr.market == plan.market) & (vr.vendor == plan.vendor) & (vr.week_start >= since)
    )
    got = vr.group_by("metric").aggregate(weeks=vr.week_start.nunique()).to_pandas()
    reported = dict(zip(got["metric"], got["weeks"], strict=True))
    missing = [k for k in plan.kpis if k not in reported]
    have = ", ".join(f"{k} ({int(reported[k])} wk)" for k in plan.kpis if k in reported)
    text = (
        f"{plan.vendor} reported in {plan.market} since {since}: {have or 'none of the KPIs'}"
        + (f"; not reported: {', '.join(missing)}" if missing else "")
    )
    return _row("reporting", "fail" if missing else "pass", text, owner)


def _check_languages(ctx: _Context) -> dict[str, str]:
    plan = ctx.plan
    owner = f"{plan.vendor} site lead ({plan.site})"
    dec = decisions_in_period(ctx.ds, market=plan.market, period=ctx.window)
    dec = dec.filter((dec.vendor == plan.vendor) & (dec.routing != "ai_auto"))
    by = (
        dec.group_by(["site", "language"])
        .aggregate(n=dec.count())
        .filter(lambda t: t.language.isin(list(plan.languages)))
        .to_pandas()
    )
    at_site = by[by["site"] == plan.site].set_index("language")["n"]
    counts = {lang: int(at_site.get(lang, 0)) for lang in plan.languages}
    short = [lang for lang, n in counts.items() if n < ctx.min_n]
    text = (
        f"human decisions at {plan.site} in {plan.market}, {ctx.window.start}..{ctx.window.end}: "
        + ", ".join(f"{lang} {n:,}" for lang, n in counts.items())
        + f" (need at least {ctx.min_n} each)"
    )
    if short:
        others = by[(by["site"] != plan.site) & by["language"].isin(short)]
        other = "; ".join(
            f"{r.language} handled at {r.site} ({int(r.n):,})" for r in others.itertuples()
        )
        text += f"; not covered: {', '.join(short)}" + (f" ({other})" if other else "")
    return _row("languages", "fail" if short else "pass", text, owner)


_CHECK_FUNCS: dict[str, Callable[[_Context], dict[str, str]]] = {
    "staffing": _check_staffing,
    "calibration": _check_calibration,
    "qa_sampling": _check_qa,
    "reporting": _check_reporting,
    "languages": _check_languages,
}


def readiness(ds: Dataset, plan: LaunchPlan | str | os.PathLike[str]) -> pd.DataFrame:
    """Check a queue launch plan against the data.

    Parameters
    ----------
    ds : Dataset
        Needs ``decisions``; each check that needs another table (``staffing``,
        ``calibration``, ``qa_audits``, ``vendor_reported``) is ``unknown``
        without it.
    plan : LaunchPlan or path
        The plan, or its YAML file (validated with :func:`load_launch_plan`).

    Returns
    -------
    pandas.DataFrame
        One row per check of :data:`CHECKS`, columns :data:`READINESS_COLUMNS`:
        ``check``, ``status`` (``pass``, ``fail`` or ``unknown``), ``evidence``
        (the numbers behind the status) and ``owner`` (who fixes a failure).
        Use :func:`has_failures` for a go/no-go exit code.

    Raises
    ------
    ParameterError
        For an invalid plan file or a market without parameters.
    QualityLabError
        When the market has no decisions at all.

    Notes
    -----
    The module docstring documents each check's estimate. The staffing check
    assumes the rota follows the market's hourly demand curve, so the agents on
    shift in the busiest hour are the day's productive hours times the busiest
    hour's share; compare with the agents Erlang C requires for that hour's
    arrivals (an M/M/c queue: Poisson arrivals, exponential handle times, no
    abandonment).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=35, scale="small", seed=3)
    ...     checks = readiness(open_dataset(tmp), "parameters/launches/sg-live-shopping.yaml")
    >>> checks[["check", "status"]].to_dict("records")  # doctest: +NORMALIZE_WHITESPACE
    [{'check': 'staffing', 'status': 'pass'}, {'check': 'calibration', 'status': 'pass'},
     {'check': 'qa_sampling', 'status': 'pass'}, {'check': 'reporting', 'status': 'fail'},
     {'check': 'languages', 'status': 'pass'}]
    """
    if not isinstance(plan, LaunchPlan):
        plan = load_launch_plan(plan, parameters=ds.params)
    mp = ds.params.market(plan.market)
    try:
        end = resolve_period(ds, market=plan.market, start=None, end=None).end
    except QualityLabError as exc:
        raise QualityLabError(f"launch plan for {plan.market}: {exc}") from None
    ctx = _Context(
        ds=ds,
        plan=plan,
        window=Period(end - timedelta(days=LOOKBACK_DAYS - 1), end),
        confidence_level=mp.confidence_level,
        min_n=mp.min_n,
        targets=dict(mp.targets),
        timezone=mp.timezone,
    )
    rows = [_CHECK_FUNCS[name](ctx) for name in CHECKS]
    return pd.DataFrame(rows, columns=READINESS_COLUMNS)
