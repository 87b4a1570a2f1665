"""The tables drawn per market after its decisions: staffing, vendor reports, calibration, red team, events."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pyarrow as pa

from qualitylab.demodata.generate.decisions import (
    FP_CUM,
    ai_scores,
    other_policy,
    pick_category,
    string_array,
    timestamp_array,
)
from qualitylab.demodata.generate.model import (
    ATTACK_HARD,
    ATTACKS,
    DEMO_LAUNCH,
    EPOCH,
    HANDLE_SECONDS,
    HOURLY,
    INHOUSE,
    MODELS,
    NON_AUTO,
    PLAN_BUFFER,
    PLAN_SHRINKAGE,
    POLICIES,
    POLICY_NAMES,
    QUEUES,
    RED_TEAM_DROP_HARD,
    REPORTED_ACCURACY,
    SCAM,
    US,
    Market,
    ScaleSpec,
    complete_weeks,
    crc,
    local_us,
    rng_for,
)
from qualitylab.demodata.generate.schemas import (
    CALIBRATION_SCHEMA,
    EVENTS_SCHEMA,
    RED_TEAM_SCHEMA,
    STAFFING_SCHEMA,
    VENDOR_REPORTED_SCHEMA,
)


# ---------------------------------------------------------------------------
# Other tables
# ---------------------------------------------------------------------------
def _erlang_hours(m: Market, daily: np.ndarray) -> np.ndarray:
    """Productive moderator-hours per day x queue that Erlang C needs for ``daily`` items.

    ``daily`` (days x queues) human-handled items spread over the hours by
    :data:`HOURLY`; per hour the smallest number of moderators meeting the
    market's ``sla_compliance`` target within the queue SLA at the handle
    times :data:`HANDLE_SECONDS` (:func:`qualitylab.capacity.required_agents`),
    summed over the day.
    """
    from qualitylab.operations.capacity import required_agents  # lazy: keeps `import demo` light

    target = float(m.params.targets.get("sla_compliance", 0.9))
    rate = daily[:, :, None] * HOURLY[None, :, :]
    agents = required_agents(rate, HANDLE_SECONDS[None, :, None], m.sla[None, :, None], target)
    return agents.sum(axis=2).astype(float)


def staffing_table(m: Market, seed: int) -> pa.Table:
    """Scheduled and productive hours per day x site x queue, as a workforce planner sets them.

    *Plan.* Per market x queue and day, the Erlang C moderator-hours for the
    expected human-handled volume (:func:`_erlang_hours` of ``lam_day x
    NON_AUTO``: holidays are known ahead, incidents are not), grossed up for
    the planned shrinkage and a planning buffer, with noise, split across the
    sites by their share of the queue; the planted rota cut scales it down.
    *Day of operation.* Productive hours are 80-90% of scheduled. When they
    fall short of the Erlang C hours for the volume that actually arrived, the
    site leads call overtime up to that requirement plus the buffer, except on
    the days an incident flags as understaffed (``m.understaffed``: no
    overtime, and moderators skip breaks, so 97% of scheduled is productive).
    """
    rng = rng_for(seed, "staffing", m.code)
    nd, nu, nq = m.human_items.shape
    planned = _erlang_hours(m, m.lam_day * NON_AUTO)  # (days, queues)
    noise = np.exp(rng.normal(0.0, 0.04, (nd, nu, nq)))
    gross = PLAN_BUFFER / (1.0 - PLAN_SHRINKAGE)
    scheduled = (planned * gross)[:, None, :] * m.unit_share.T[None, :, :] * noise
    scheduled = scheduled * m.rota[:, None, :]
    productive = scheduled * rng.uniform(0.80, 0.90, (nd, nu, nq))
    needed = _erlang_hours(m, m.human_items.sum(axis=1))  # realised volume
    have = productive.sum(axis=1)
    short = needed > have
    maxed = short & m.understaffed
    overtime = short & ~m.understaffed
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(overtime & (have > 0), needed * PLAN_BUFFER / have, 1.0)
    scheduled = scheduled * lift[:, None, :]
    productive = np.where(maxed[:, None, :], scheduled * 0.97, productive * lift[:, None, :])
    d, u, qq = (a.ravel() for a in np.indices((nd, nu, nq)))
    scheduled, productive = scheduled.ravel(), productive.ravel()
    if m.queue_live is not None:  # no roster for a queue before it goes live
        live = (qq != m.queue_live[0]) | (d >= m.queue_live[1])
        d, u, qq, scheduled, productive = (a[live] for a in (d, u, qq, scheduled, productive))
    date_days = (m.start - EPOCH).days + d
    return pa.table(
        {
            "date": pa.array(date_days.astype(np.int32), pa.date32()),
            "market": string_array([m.code], np.zeros(len(d))),
            "vendor": string_array(m.vendors, m.unit_vendor[u]),
            "site": string_array(m.sites, u),
            "queue": string_array(QUEUES, qq),
            "scheduled_hours": pa.array(np.round(scheduled, 2), pa.float64()),
            "productive_hours": pa.array(np.round(productive, 2), pa.float64()),
        },
        schema=STAFFING_SCHEMA,
    )


def launch_roster(m: Market) -> pa.Table | None:
    """The published roster of :data:`DEMO_LAUNCH` for its go-live week (future dates).

    ``productive_hours`` holds the planned productive hours (scheduled net of
    shrinkage): nothing has been worked yet.
    """
    launch = DEMO_LAUNCH
    if m.code != launch.market or launch.site not in m.sites:
        return None
    first = (m.start - EPOCH).days + m.days - 1 + launch.days_after_end
    k = launch.roster_days
    scheduled = np.full(k, launch.scheduled_hours)
    return pa.table(
        {
            "date": pa.array(np.arange(first, first + k, dtype=np.int32), pa.date32()),
            "market": string_array([m.code], np.zeros(k)),
            "vendor": string_array([launch.vendor], np.zeros(k)),
            "site": string_array([launch.site], np.zeros(k)),
            "queue": string_array([launch.queue], np.zeros(k)),
            "scheduled_hours": pa.array(scheduled, pa.float64()),
            "productive_hours": pa.array(
                np.round(scheduled * launch.productive_share, 2), pa.float64()
            ),
        },
        schema=STAFFING_SCHEMA,
    )


def vendor_reported_table(m: Market, seed: int) -> pa.Table:
    """Weekly partner KPIs: the truth plus small noise, except the planted gap."""
    rng = rng_for(seed, "vendor_reported", m.code)
    rows: dict[str, list] = {k: [] for k in ("week_start", "market", "vendor", "metric", "value")}
    total, dec, cor, elig, met = m.vstats
    for w in complete_weeks(m.start, m.days):
        sl = slice(w, w + 7)
        for v, name in enumerate(m.vendors):
            if name == INHOUSE:
                continue
            acc = cor[sl, v].sum() / max(dec[sl, v].sum(), 1)
            acc = min(acc + rng.normal(0.0, 0.004), 0.995)
            if v == m.gap_vendor and w >= m.gap_from_day:
                acc = REPORTED_ACCURACY + rng.normal(0.0, 0.003)
            sla = met[sl, v].sum() / max(elig[sl, v].sum(), 1) + rng.normal(0.0, 0.004)
            vol = round(total[sl, v].sum() * (1 + rng.normal(0.0, 0.004)))
            for metric, value in (
                ("accuracy", round(acc, 4)),
                ("sla_compliance", round(float(np.clip(sla, 0, 1)), 4)),
                ("volume", float(vol)),
            ):
                rows["week_start"].append((m.start - EPOCH).days + w)
                rows["market"].append(m.code)
                rows["vendor"].append(name)
                rows["metric"].append(metric)
                rows["value"].append(float(value))
    return pa.table(
        {
            "week_start": pa.array(rows["week_start"], pa.date32()),
            **{k: pa.array(rows[k], pa.string()) for k in ("market", "vendor", "metric")},
            "value": pa.array(rows["value"], pa.float64()),
        },
        schema=VENDOR_REPORTED_SCHEMA,
    )


def calibration_table(m: Market, seed: int) -> pa.Table:
    """A session every two weeks (Wednesday 10:00 local): ~20 cases, all rater groups.

    The launch vendor's raters in the launch market (:data:`DEMO_LAUNCH`) were
    trained on the launch policies: a hashed share of their wrong labels on cases
    of those policies (expected or given) is made right, without drawing from the
    random stream, so every other row is unchanged.
    """
    rng = rng_for(seed, "calibration", m.code)
    trained = DEMO_LAUNCH.vendor if m.code == DEMO_LAUNCH.market else None
    launch = {POLICY_NAMES.index(p) for p in DEMO_LAUNCH.policies}
    first = (2 - m.start.weekday()) % 7 + 7 * (crc(m.code, "cal") % 2)
    cols: dict[str, list] = {k: [] for k in CALIBRATION_SCHEMA.names}
    for day in range(first, m.days, 14):
        held = int(local_us(m, day, 10 * 3600))
        session = f"cal-{m.code}-{(m.start + timedelta(days=day)):%Y%m%d}"
        n_cases = int(rng.integers(18, 23))
        truth = np.where(rng.random(n_cases) < 0.55, rng.integers(1, len(POLICIES) + 1, n_cases), 0)
        expected_null = rng.random(n_cases) < 0.05
        raters: list[tuple[str, str, float]] = [
            (m.auditors[i], "internal", 0.90) for i in m.internal_aud[:2]
        ]
        raters.append((m.policy_raters[day // 14 % 2], "policy", 0.97))
        for v, name in enumerate(m.vendors):
            units = np.flatnonzero(m.unit_vendor == v)
            pool = np.concatenate([m.unit_mod_off[u] + np.arange(m.elig[u, day]) for u in units])
            p = 0.93 - 1.5 * m.vendor_err[v]
            if any(a <= day <= b + 7 and fv == v for a, b, fv, _ in m.forced_err):
                p -= 0.10
            raters.extend((m.mod_ids[i], name, p) for i in rng.choice(pool, 3, replace=False))
        scam_push = m.scam_over is not None and m.scam_over[0] <= day <= m.scam_over[1] + 1
        for c in range(n_cases):
            for rater, group, p_ok in raters:
                t = int(truth[c])
                if rng.random() < p_ok:
                    label = t
                elif t > 0:
                    label = 0 if rng.random() < 0.4 else int(other_policy(np.array([t]), rng)[0])
                else:
                    label = int(pick_category(FP_CUM, rng.random(1))[0]) + 1
                if (
                    scam_push
                    and group not in ("policy", "internal")
                    and t == 0
                    and rng.random() < 0.25
                ):
                    label = SCAM
                if group == trained and label != t and {label, t} & launch:
                    u = crc(seed, session, c, rater, "launch") % 10_000 / 10_000
                    label = t if u < DEMO_LAUNCH.calibration_boost else label
                cols["session_id"].append(session)
                cols["held_at"].append(held)
                cols["market"].append(m.code)
                cols["case_id"].append(f"{session}-c{c + 1:02d}")
                cols["rater_id"].append(rater)
                cols["rater_group"].append(group)
                cols["label"].append(POLICY_NAMES[label])
                cols["expected_label"].append(None if expected_null[c] else POLICY_NAMES[t])
    return pa.table(
        {k: pa.array(v, CALIBRATION_SCHEMA.field(k).type) for k, v in cols.items()},
        schema=CALIBRATION_SCHEMA,
    )


def red_team_table(m: Market, spec: ScaleSpec, seed: int) -> pa.Table:
    """Adversarial test set: attacks turn easy items into hard ones, so recall drops."""
    rng = rng_for(seed, "red_team", m.code)
    k = spec.red_team
    day = rng.integers(0, m.days, k)
    created = np.sort(
        local_us(m, day, rng.integers(9 * 3600, 18 * 3600, k)) + rng.integers(0, US, k)
    )
    lang = rng.integers(0, len(m.languages), k)
    viol = rng.random(k) < 0.8
    policy = np.where(viol, rng.integers(1, len(POLICIES) + 1, k), 0)
    attack = np.where(viol, rng.integers(0, len(ATTACKS), k), 0)
    v4 = created >= m.release_us if m.release_us is not None else np.zeros(k, dtype=bool)
    extra_hard = ATTACK_HARD[attack]
    if m.red_team_drop is not None:
        first, a = m.red_team_drop
        planted = (created >= local_us(m, first, 0)) & (attack == a)
        extra_hard = np.where(planted, RED_TEAM_DROP_HARD, extra_hard)
    score = ai_scores(rng, viol, v4, viol & v4 & (lang == m.regress_lang), extra_hard)
    ids = np.char.add(f"rt-{m.code}-", np.char.zfill(np.arange(1, k + 1).astype(str), 5))
    return pa.table(
        {
            "item_id": pa.array(ids, pa.string()),
            "created_at": timestamp_array(created),
            "market": string_array([m.code], np.zeros(k)),
            "language": string_array(m.languages, lang),
            "policy": string_array(POLICY_NAMES, policy),
            "attack": string_array(ATTACKS, attack),
            "ai_model": string_array(MODELS, v4.astype(np.int64)),
            "ai_score": pa.array(score, pa.float64()),
        },
        schema=RED_TEAM_SCHEMA,
    )


def events_table(markets: list[Market]) -> pa.Table:
    """Model releases, policy changes, trainings, the outage and public holidays."""
    rows: list[tuple[int, str, str, str | None, str]] = []

    def add(m: Market, day: int, hour: int, kind: str, policy: str | None, text: str) -> None:
        rows.append((int(local_us(m, day, hour * 3600)), m.code, kind, policy, text))

    first = max(markets, key=lambda m: m.days)  # the first market with the longest history
    if first.days > 60:  # a global change, effective at midnight in that market
        text = "Spam policy: repeated off-platform links now count from the third post"
        when = int(local_us(first, first.days - 61, 0))
        rows.append((when, "*", "policy_change", "spam", text))
    for m in markets:
        if m.release_us is not None and m.release_us > 0:
            rows.append((m.release_us, m.code, "model_release", None, "mod-v4 replaces mod-v3"))
        for day, name in m.holidays:
            add(m, day, 0, "holiday", None, f"Public holiday: {name}")
        if m.queue_live is not None:
            q, day = m.queue_live
            add(m, day, 0, "queue_launch", None, f"{QUEUES[q]} queue goes live in {m.code}")
        if m.outage_us is not None:
            text = "AI scoring unavailable 14:00-24:00; all items routed to moderators"
            rows.append((m.outage_us[0], m.code, "outage", None, text))
        if m.scam_over is not None:
            a, b, _ = m.scam_over
            text = (
                'Scam policy update: off-platform payment requests ("DM me" & <link>) now enforced'
            )
            add(m, a, 0, "policy_change", "scam", text)
            add(m, b + 1, 9, "training", "scam", "Refresher training on the updated scam policy")
        for _, b, v, _ in m.forced_err:
            text = f"{m.vendors[v]} retraining after QA flagged an accuracy drop"
            add(m, min(b + 1, m.days - 1), 9, "training", None, text)
        for u, site in enumerate(m.sites):  # new-hire cohorts start with onboarding
            hires = m.mod_hire[m.unit_mod_off[u] : m.unit_mod_off[u] + m.elig[u, -1]]
            for day in np.unique(hires[hires >= 0]):
                add(m, int(day), 9, "training", None, f"{site}: new-hire cohort onboarding")
    rows.sort(key=lambda r: (r[0], r[1], r[2], r[4]))
    return pa.table(
        {
            "effective_at": timestamp_array(np.array([r[0] for r in rows], dtype=np.int64)),
            "market": pa.array([r[1] for r in rows], pa.string()),
            "kind": pa.array([r[2] for r in rows], pa.string()),
            "policy": pa.array([r[3] for r in rows], pa.string()),
            "description": pa.array([r[4] for r in rows], pa.string()),
        },
        schema=EVENTS_SCHEMA,
    )
