"""Drawing one market's decisions, chunk of days by chunk, with their QA audits and escalations.

:func:`decisions_chunk` draws the decisions created on a range of market-local
days: the latent truth, the AI score and routing, the human decision, the
response time; then the stratified QA sample and the escalations of those
decisions. It also adds them to the market's running aggregates (staffing,
vendor reports) and to the incident views the ``findable`` rule reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from qualitylab.demodata.generate.model import (
    ACTIONS,
    AUTO_HIGH,
    AUTO_LOW,
    BORDERLINE,
    CLEAN_B,
    ESC_REASONS,
    ESC_SEVERITIES,
    ESC_TIERS,
    FALSE_POSITIVE_MIX,
    HARD_SHARE,
    HOUR_US,
    HOURLY,
    HUMAN_ONLY,
    INHOUSE,
    LOAD,
    MODELS,
    POLICIES,
    POLICY_ACTIONS,
    POLICY_MIX,
    POLICY_NAMES,
    Q_APPEAL,
    Q_COMMENT,
    Q_REPORT,
    QUEUES,
    REGRESSION_HARD_SHARE,
    ROUTINGS,
    RT_MEDIAN,
    RT_SIGMA,
    SCAM,
    SCAM_CONFUSION,
    SEVERE,
    SPAM,
    US,
    Market,
    local_us,
    rng_for,
)
from qualitylab.demodata.generate.schemas import DECISIONS_SCHEMA, ESCALATIONS_SCHEMA, QA_SCHEMA

# Share of a partner's QA sample that internal QA re-reviews (the rest: vendor QA only).
_INTERNAL_SHARE = 0.60


# ---------------------------------------------------------------------------
# Decisions
# ---------------------------------------------------------------------------
def pick_category(cum: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Category index for uniforms ``u`` given cumulative shares ``cum``."""
    return np.minimum(np.searchsorted(cum, u, side="right"), len(cum) - 1)


def _pick_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Like :func:`_pick` with a different distribution ``cum[row]`` per item."""
    out = np.zeros(len(u), dtype=np.int64)
    for r in range(cum.shape[0]):
        sel = rows == r
        if sel.any():
            out[sel] = np.searchsorted(cum[r], u[sel], side="right")
    return np.minimum(out, cum.shape[1] - 1)


_ACTION_CUM = np.cumsum(POLICY_ACTIONS, axis=1) / POLICY_ACTIONS.sum(axis=1, keepdims=True)
_POLICY_CUM = np.cumsum(POLICY_MIX, axis=1) / POLICY_MIX.sum(axis=1, keepdims=True)
FP_CUM = np.cumsum(FALSE_POSITIVE_MIX) / FALSE_POSITIVE_MIX.sum()


def _action_for(policy: np.ndarray, queue: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Action code (1..4) typical of each policy code (1..7); 0 for policy 0."""
    act = _pick_rows(_ACTION_CUM, np.maximum(policy - 1, 0), u) + 1
    act[(queue == Q_COMMENT) & (act == 3)] = 2  # a comment cannot end a live: restrict
    return np.where(policy > 0, act, 0)


def other_policy(policy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A policy code different from ``policy`` (1..7)."""
    p = np.maximum(policy, 1)
    return (p - 1 + rng.integers(1, len(POLICIES), len(p))) % len(POLICIES) + 1


def ai_scores(
    rng: np.random.Generator,
    viol: np.ndarray,
    v4: np.ndarray,
    regressed: np.ndarray,
    extra_hard: np.ndarray | float = 0.0,
) -> np.ndarray:
    n = len(viol)
    hard_p = np.where(v4, HARD_SHARE[1], HARD_SHARE[0])
    hard_p = np.where(regressed, REGRESSION_HARD_SHARE, hard_p)
    hard_p = hard_p + (1 - hard_p) * extra_hard
    hard = rng.random(n) < hard_p
    border = rng.random(n) < np.where(v4, BORDERLINE[1], BORDERLINE[0])
    a = np.where(viol, np.where(hard, 1.1, 6.0), np.where(border, 2.0, 1.0))
    b = np.where(
        viol,
        np.where(hard, 4.5, 1.1),
        np.where(border, 2.5, np.where(v4, CLEAN_B[1], CLEAN_B[0])),
    )
    return np.round(rng.beta(a, b), 4)


@dataclass
class _Chunk:
    decisions: pa.Table
    qa: pa.Table
    escalations: pa.Table


def string_array(
    values: Sequence[str], idx: np.ndarray, mask: np.ndarray | None = None
) -> pa.Array:
    return pa.array(list(values), pa.string()).take(pa.array(idx.astype(np.int32), mask=mask))


def timestamp_array(us: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    return pa.array(us.astype(np.int64), type=pa.timestamp("us", tz="UTC"), mask=mask)


def decisions_chunk(m: Market, d0: int, d1: int, seed: int, ci: int) -> _Chunk:
    """Draw the decisions created on market-local days ``d0 <= day < d1``."""
    rng = rng_for(seed, "decisions", m.code, ci)
    nq = len(QUEUES)
    lam = (m.lam_day[d0:d1] * m.vol_mult[d0:d1])[:, :, None] * HOURLY[None, :, :]
    counts = rng.poisson(lam).ravel()
    n = int(counts.sum())
    cell = np.repeat(np.arange(counts.size), counts)
    day = cell // (nq * 24) + d0
    q = (cell // 24) % nq
    hour = cell % 24
    created = (m.day_naive_s[day] + hour * 3600 - m.offset_s[day, hour]) * US
    created += rng.integers(0, HOUR_US, n)
    order = np.argsort(created, kind="stable")
    day, q, hour, created = day[order], q[order], hour[order], created[order]

    lang = pick_category(np.cumsum(m.lang_share), rng.random(n))
    unit = _pick_rows(np.cumsum(m.unit_share, axis=1), q, rng.random(n))
    vendor = m.unit_vendor[unit]
    inhouse = np.array([v == INHOUSE for v in m.vendors])[vendor]
    mod = m.unit_mod_off[unit] + (rng.random(n) * m.elig[unit, day]).astype(np.int64)
    tenure = day - m.mod_hire[mod]

    # latent truth
    viol = rng.random(n) < m.prevalence[q]
    tpol = np.where(viol, _pick_rows(_POLICY_CUM, q, rng.random(n)) + 1, 0)
    tact = _action_for(tpol, q, rng.random(n))

    # AI
    avail = np.ones(n, dtype=bool)
    if m.outage_us is not None:
        avail = (created < m.outage_us[0]) | (created >= m.outage_us[1])
    v4 = created >= m.release_us if m.release_us is not None else np.zeros(n, dtype=bool)
    regressed = viol & v4 & (lang == m.regress_lang)
    score = ai_scores(rng, viol, v4, regressed)
    flag = score >= m.threshold
    keep = rng.random(n) < 0.60  # the model's policy guess is often off
    fp_pol = pick_category(FP_CUM, rng.random(n)) + 1
    ai_pol = np.where(
        flag, np.where(viol, np.where(keep, tpol, other_policy(tpol, rng)), fp_pol), 0
    )

    # routing
    confident = avail & ((score >= AUTO_HIGH) | (score <= AUTO_LOW))
    auto = confident & (q != Q_APPEAL) & (rng.random(n) < 0.92)
    human_p = np.minimum(HUMAN_ONLY[q] * np.where(inhouse, 3.0, 1.0), 1.0)
    human = ~auto & (~avail | (rng.random(n) < human_p))
    routing = np.where(auto, 2, np.where(human, 0, 1))
    assisted = routing == 1

    # human decision: error probability by vendor, site, moderator, language, tenure, truth, AI hint
    err = m.vendor_err[vendor] * m.unit_err[unit] * m.mod_skill[mod] * m.lang_err[lang]
    err = err * (1.0 + 1.5 * np.exp(-np.maximum(tenure, 0) / 20.0))
    err = err * np.where(viol, 2.4, 0.7)
    ai_right = ((ai_pol > 0) == viol) & (~viol | (ai_pol == tpol))
    err = np.where(assisted, err * np.where(ai_right, 1.0, 2.4), err)
    wrong = rng.random(n) < np.minimum(err, 0.6)
    for a, b, v, p in m.forced_err:
        wrong |= (day >= a) & (day <= b) & (vendor == v) & (rng.random(n) < p)
    follow_ai = assisted & (ai_pol > 0)
    over_pol = np.where(follow_ai, ai_pol, pick_category(FP_CUM, rng.random(n)) + 1)
    under = np.where(assisted & (ai_pol == 0), rng.random(n) < 0.85, rng.random(n) < 0.55)
    wrong_pol = np.where(follow_ai & (ai_pol != tpol), ai_pol, other_policy(tpol, rng))
    hpol = np.where(~wrong, tpol, np.where(~viol, over_pol, np.where(under, 0, wrong_pol)))
    if m.scam_over is not None:
        a, b, p = m.scam_over
        extra = (day >= a) & (day <= b) & ~viol & (hpol == 0) & (rng.random(n) < p)
        hpol = np.where(extra, SCAM, hpol)
        # ... and, unsure where the new line between scam and spam runs, file scams
        # they spot as spam (wrong policy). Enforced stays enforced, so the QA sample
        # is unchanged; a stream of its own keeps the main one intact.
        confused = rng_for(seed, "scam_rollout", m.code, ci).random(n) < SCAM_CONFUSION
        confused &= (day >= a) & (day <= b) & (tpol == SCAM) & (hpol == SCAM)
        hpol = np.where(confused, SPAM, hpol)
    hact = np.where((hpol == tpol) & (hpol > 0), tact, _action_for(hpol, q, rng.random(n)))
    auto_pol = np.where(score >= AUTO_HIGH, ai_pol, 0)
    auto_act = _action_for(auto_pol, q, rng.random(n))
    pol = np.where(auto, auto_pol, hpol)
    act = np.where(auto, auto_act, hact)
    correct = ((act > 0) == viol) & (~viol | (pol == tpol))

    # response time: lognormal around the SLA, slower at peak, for new hires and in incidents
    median = (
        m.sla[q]
        * RT_MEDIAN
        * m.unit_speed[unit]
        * LOAD[q, hour] ** 0.35
        * m.slow[day, q]
        * np.where(tenure < 30, 1.15, 1.0)
    )
    rt = median * np.exp(RT_SIGMA * rng.standard_normal(n))
    rt = np.where(auto, 0.4 + rng.lognormal(np.log(1.2), 0.5, n), rt)
    decided = created + (rt * US).astype(np.int64)
    age_h = (m.now_us - created) / HOUR_US
    stuck = ~auto & (rng.random(n) < 0.06 * np.exp(-age_h / 10.0))
    pending = (decided > m.now_us) | stuck

    # running aggregates for staffing and vendor_reported
    nv = len(m.vendors)
    key = day * nv + vendor
    decided_h = ~auto & ~pending
    sla_met = ~pending & (rt <= m.sla[q])
    sla_elig = ~pending | ((m.now_us - created) > m.sla[q] * US)
    for k, w in enumerate((None, decided_h, decided_h & correct, sla_elig, sla_met)):
        m.vstats[k] += np.bincount(key, weights=w, minlength=m.days * nv).reshape(m.days, nv)
    hkey = (day * len(m.sites) + unit) * nq + q
    m.human_items += np.bincount(hkey[~auto], minlength=m.human_items.size).reshape(
        m.human_items.shape
    )

    if m.views:
        _add_views(
            m,
            {
                "day": day,
                "q": q,
                "vendor": vendor,
                "unit": unit,
                "lang": lang,
                "routing": routing,
                "pending": pending,
                "act": act,
                "pol": pol,
                "viol": viol,
                "tpol": tpol,
                "correct": correct,
                "auto": auto,
                "avail": avail,
                "score": score,
                "sla_elig": sla_elig,
                "sla_met": sla_met,
            },
        )

    seq = np.arange(m.next_seq, m.next_seq + n)
    m.next_seq += n
    ids = np.char.add(f"{m.code}-", np.char.zfill(seq.astype(str), 9))
    no_mod = auto | pending
    ai_null = ~avail
    table = pa.table(
        {
            "decision_id": pa.array(ids, pa.string()),
            "created_at": timestamp_array(created),
            "decided_at": timestamp_array(decided, pending),
            "market": string_array([m.code], np.zeros(n)),
            "vendor": string_array(m.vendors, vendor),
            "site": string_array(m.sites, unit),
            "queue": string_array(QUEUES, q),
            "language": string_array(m.languages, lang),
            "moderator_id": string_array(m.mod_ids, np.where(no_mod, 0, mod), no_mod),
            "routing": string_array(ROUTINGS, routing),
            "action": string_array(ACTIONS, act, pending),
            "policy": string_array(POLICY_NAMES, pol, pending),
            "ai_model": string_array(MODELS, v4.astype(np.int64), ai_null),
            "ai_score": pa.array(score, pa.float64(), mask=ai_null),
            "ai_policy": string_array(POLICY_NAMES, ai_pol, ai_null),
        },
        schema=DECISIONS_SCHEMA,
    )
    dec_ids = table.column("decision_id").combine_chunks()
    qa = _qa_chunk(
        m,
        rng,
        dec_ids,
        q,
        unit,
        vendor,
        routing,
        pending,
        decided,
        act,
        pol,
        viol,
        tpol,
        tact,
        correct,
    )
    esc = _escalation_chunk(m, rng, dec_ids, q, vendor, created, decided, pending, viol, tpol)
    return _Chunk(table, qa, esc)


def _qa_inclusion(
    m: Market, q: np.ndarray, routing: np.ndarray, act: np.ndarray, vendor: np.ndarray
) -> np.ndarray:
    """QA inclusion probability of each decided item (appeals, enforced and ai_auto over-sampled)."""
    stratum = np.where(q == Q_APPEAL, 3.0, np.where(routing == 2, 1.5, np.where(act > 0, 2.5, 1.0)))
    return np.minimum(m.qa_rate[vendor] * stratum, 1.0)


def _segment_mask(m: Market, dim: str, seg: str, a: Mapping[str, np.ndarray]) -> np.ndarray:
    """Decisions of one segment (``a``: the chunk's arrays)."""
    if dim == "market":
        return np.ones(len(a["day"]), dtype=bool)
    if dim == "vendor":
        return a["vendor"] == m.vendors.index(seg)
    if dim == "site":
        return a["unit"] == m.sites.index(seg)
    if dim == "queue":
        return a["q"] == QUEUES.index(seg)
    if dim == "language":
        return a["lang"] == m.languages.index(seg)
    if dim == "policy":
        return a["pol"] == POLICY_NAMES.index(seg)
    raise ValueError(f"no decision segment for dimension {dim!r}")


def _add_views(m: Market, a: Mapping[str, np.ndarray]) -> None:
    """Add one chunk's decisions to the market's incident views (see :class:`~qualitylab.demodata.generate.model.View`)."""
    decided = ~a["pending"]
    inhouse = np.array([v == INHOUSE for v in m.vendors])[a["vendor"]]
    # the scan's QA rates count internal audits: every sampled in-house item, 60% of others
    prob = _qa_inclusion(m, a["q"], a["routing"], a["act"], a["vendor"]) * np.where(
        inhouse, 1.0, _INTERNAL_SHARE
    )
    enforced, viol = a["act"] > 0, a["viol"]
    for v in m.views:
        census = v.metric in ("auto_action_rate", "sla_compliance")
        if v.metric == "accuracy":
            keep, hit = decided, a["correct"]
        elif v.metric == "over_enforcement_rate":
            keep, hit = decided, enforced & ~viol
        elif v.metric == "under_enforcement_rate":
            keep, hit = decided, ~enforced & viol
        elif v.metric == "wrong_policy_rate":
            keep, hit = decided, enforced & viol & (a["pol"] != a["tpol"])
        elif v.metric == "ai_recall":  # violating items the AI scored
            keep, hit = decided & a["avail"] & viol, a["score"] >= m.threshold
        elif v.metric == "auto_action_rate":
            keep, hit = decided, a["auto"]
        elif v.metric == "sla_compliance":
            keep, hit = a["sla_elig"], a["sla_met"]
        else:  # pragma: no cover - planted.incident_views builds only the metrics above
            raise ValueError(v.metric)
        keep = keep & _segment_mask(m, v.dimension, v.segment, a)
        day = a["day"][keep]
        p = np.ones(len(day)) if census else prob[keep]
        for acc, w in (
            (v.total, None),
            (v.hits, hit[keep].astype(float)),
            (v.audits, p),
            (v.inv, 1.0 / p),
        ):
            acc += np.bincount(day, weights=w, minlength=m.days)


def _qa_chunk(
    m: Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    q: np.ndarray,
    unit: np.ndarray,
    vendor: np.ndarray,
    routing: np.ndarray,
    pending: np.ndarray,
    decided: np.ndarray,
    act: np.ndarray,
    pol: np.ndarray,
    viol: np.ndarray,
    tpol: np.ndarray,
    tact: np.ndarray,
    correct: np.ndarray,
) -> pa.Table:
    """Stratified QA sample; vendor QA, internal QA or both re-review each sampled item."""
    n = len(q)
    pi = _qa_inclusion(m, q, routing, act, vendor)
    idx = np.flatnonzero(~pending & (rng.random(n) < pi))
    inhouse = np.array([v == INHOUSE for v in m.vendors])[vendor[idx]]
    r = rng.random(len(idx))
    parts = []
    # internal only 45%, both 15%, vendor only 40%; in-house teams: internal QA only
    for source, mask, p_src, lag_h, noise, lenient in (
        (
            "internal",
            inhouse | (r < _INTERNAL_SHARE),
            np.where(inhouse, 1.0, _INTERNAL_SHARE),
            (6, 96),
            0.012,
            0.0,
        ),
        ("vendor", ~inhouse & (r >= 0.45), np.full(len(idx), 0.55), (1, 48), 0.018, 0.35),
    ):
        j = idx[mask]
        k = len(j)
        audited = decided[j] + (rng.uniform(*lag_h, k) * HOUR_US).astype(np.int64)
        qpol = tpol[j].copy()
        qact = tact[j].copy()
        flip = rng.random(k) < noise
        to_none = viol[j] & (rng.random(k) < 0.5)
        flipped = np.where(
            viol[j],
            np.where(to_none, 0, other_policy(tpol[j], rng)),
            pick_category(FP_CUM, rng.random(k)) + 1,
        )
        flip_act = _action_for(flipped, q[j], rng.random(k))
        qpol = np.where(flip, flipped, qpol)
        qact = np.where(flip, flip_act, qact)
        copy = ~correct[j] & (rng.random(k) < lenient)
        qpol = np.where(copy, pol[j], qpol)
        qact = np.where(copy, act[j], qact)
        same = (qpol == pol[j]) & (qpol > 0) & (act[j] > 0) & (rng.random(k) < 0.9)
        qact = np.where(same, act[j], qact)
        if source == "internal":
            aud = m.internal_aud[rng.integers(0, len(m.internal_aud), k)]
        else:
            pools = np.stack([m.vendor_aud[v] for v in range(len(m.vendors))])
            aud = pools[vendor[j], rng.integers(0, pools.shape[1], k)]
        weight = 1.0 / (pi[j] * p_src[mask])
        keep = audited <= m.now_us
        parts.append(
            pa.table(
                {
                    "audit_id": pa.nulls(int(keep.sum()), pa.string()),
                    "decision_id": dec_ids.take(pa.array(j[keep])),
                    "audited_at": timestamp_array(audited[keep]),
                    "qa_source": string_array([source], np.zeros(int(keep.sum()))),
                    "auditor_id": string_array(m.auditors, aud[keep]),
                    "qa_action": string_array(ACTIONS, qact[keep]),
                    "qa_policy": string_array(POLICY_NAMES, qpol[keep]),
                    "sample_weight": pa.array(np.round(weight[keep], 4), pa.float64()),
                },
                schema=QA_SCHEMA,
            )
        )
    return pa.concat_tables(parts)


def _escalation_chunk(
    m: Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    q: np.ndarray,
    vendor: np.ndarray,
    created: np.ndarray,
    decided: np.ndarray,
    pending: np.ndarray,
    viol: np.ndarray,
    tpol: np.ndarray,
) -> pa.Table:
    """About 1.5 escalations per 1,000 decisions, mostly for severe harms."""
    n = len(q)
    severe = np.isin(tpol, SEVERE)
    p = 0.0006 + np.where(viol & severe, 0.025, np.where(viol, 0.006, 0.0))
    j = np.flatnonzero(rng.random(n) < p)
    base = np.where(pending[j], created[j], decided[j])
    raised = base + (rng.lognormal(np.log(600), 1.0, len(j)) * US).astype(np.int64)
    pol = tpol[j]
    u = rng.random(len(j))
    violence_like = np.isin(
        pol, (POLICY_NAMES.index("violence"), POLICY_NAMES.index("hate_speech"))
    )
    sev = np.where(
        np.isin(pol, SEVERE),
        np.where(u < 0.4, 0, 1),
        np.where(violence_like, np.where(u < 0.3, 1, 2), np.where(u < 0.4, 2, 3)),
    )
    reason = np.select(
        [pol == SEVERE[0], pol == SEVERE[1], pol == 3, pol == 1],
        [0, 1, 2, 3],
        default=4 + rng.integers(0, 3, len(j)),
    )
    return _escalation_table(
        m, rng, dec_ids.take(pa.array(j)), raised, sev, reason, vendor[j], q[j]
    )


def _escalation_table(
    m: Market,
    rng: np.random.Generator,
    dec_ids: pa.Array,
    raised: np.ndarray,
    sev: np.ndarray,
    reason: np.ndarray,
    vendor: np.ndarray,
    q: np.ndarray,
) -> pa.Table:
    k = len(raised)
    u = rng.random(k)
    tier = np.select(
        [sev == 0, sev == 1, sev == 2],
        [np.where(u < 0.4, 3, 2), np.where(u < 0.5, 1, 2), np.where(u < 0.5, 0, 1)],
        default=0,
    )
    tier = np.where(reason >= 7, 3, tier)  # legal requests
    sla = np.array([m.params.escalation_sla_seconds.get(s, 86400.0) for s in ESC_SEVERITIES])
    resolved = raised + (sla[sev] * 0.35 * np.exp(0.8 * rng.standard_normal(k)) * US).astype(
        np.int64
    )
    age_days = (m.now_us - raised) / (86400 * US)
    stuck = rng.random(k) < 0.8 * np.exp(-age_days / 10.0)  # recent cases wait in a backlog
    open_ = (resolved > m.now_us) | stuck
    keep = raised <= m.now_us
    return pa.table(
        {
            "escalation_id": pa.nulls(int(keep.sum()), pa.string()),
            "decision_id": dec_ids.filter(pa.array(keep)),
            "raised_at": timestamp_array(raised[keep]),
            "resolved_at": timestamp_array(resolved[keep], open_[keep]),
            "market": string_array([m.code], np.zeros(int(keep.sum()))),
            "vendor": string_array(m.vendors, vendor[keep]),
            "queue": string_array(QUEUES, q[keep]),
            "tier": string_array(ESC_TIERS, tier[keep]),
            "severity": string_array(ESC_SEVERITIES, sev[keep]),
            "reason": string_array(ESC_REASONS, reason[keep]),
        },
        schema=ESCALATIONS_SCHEMA,
    )


def standalone_escalations(m: Market, seed: int, n_decisions: int) -> pa.Table:
    """Escalations not tied to a decision (legal and regulator requests)."""
    rng = rng_for(seed, "escalations", m.code)
    k = int(rng.poisson(n_decisions * 0.00006))
    day = rng.integers(0, m.days, k)
    raised = local_us(m, day, rng.integers(8 * 3600, 19 * 3600, k)) + rng.integers(0, US, k)
    sev = np.where(rng.random(k) < 0.3, 1, 2)
    reason = 7 + rng.integers(0, 2, k)
    vendor = rng.integers(0, len(m.vendors), k)
    return _escalation_table(
        m, rng, pa.nulls(k, pa.string()), raised, sev, reason, vendor, np.full(k, Q_REPORT)
    )
