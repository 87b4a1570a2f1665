"""Tests of the synthetic demo-data generator (qualitylab.demo)."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qualitylab.demo import ALL_MARKETS, INCIDENT_COLUMNS, DemoSummary, generate
from qualitylab.errors import ParameterError
from qualitylab.params import load_parameters

DAYS = 56
SEED = 11
TS = pa.timestamp("us", tz="UTC")
S = pa.string()
F = pa.float64()

CONTRACT = {
    "decisions": {
        "decision_id": S,
        "created_at": TS,
        "decided_at": TS,
        "market": S,
        "vendor": S,
        "site": S,
        "queue": S,
        "language": S,
        "moderator_id": S,
        "routing": S,
        "action": S,
        "policy": S,
        "ai_model": S,
        "ai_score": F,
        "ai_policy": S,
    },
    "qa_audits": {
        "audit_id": S,
        "decision_id": S,
        "audited_at": TS,
        "qa_source": S,
        "auditor_id": S,
        "qa_action": S,
        "qa_policy": S,
        "sample_weight": F,
    },
    "staffing": {
        "date": pa.date32(),
        "market": S,
        "vendor": S,
        "site": S,
        "queue": S,
        "scheduled_hours": F,
        "productive_hours": F,
    },
    "calibration": {
        "session_id": S,
        "held_at": TS,
        "market": S,
        "case_id": S,
        "rater_id": S,
        "rater_group": S,
        "label": S,
        "expected_label": S,
    },
    "vendor_reported": {
        "week_start": pa.date32(),
        "market": S,
        "vendor": S,
        "metric": S,
        "value": F,
    },
    "events": {"effective_at": TS, "market": S, "kind": S, "policy": S, "description": S},
    "escalations": {
        "escalation_id": S,
        "decision_id": S,
        "raised_at": TS,
        "resolved_at": TS,
        "market": S,
        "vendor": S,
        "queue": S,
        "tier": S,
        "severity": S,
        "reason": S,
    },
    "red_team": {
        "item_id": S,
        "created_at": TS,
        "market": S,
        "language": S,
        "policy": S,
        "attack": S,
        "ai_model": S,
        "ai_score": F,
    },
}
ACTIONS = {"no_action", "warn", "restrict", "end_live", "ban"}
POLICIES = {
    "none",
    "hate_speech",
    "nudity",
    "violence",
    "spam",
    "scam",
    "minor_safety",
    "self_harm",
}


@pytest.fixture(scope="module")
def params():
    return load_parameters()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo_small")
    return out, generate(out, scale="small", days=DAYS, seed=SEED)


@pytest.fixture(scope="module")
def tables(small) -> dict[str, pd.DataFrame]:
    out, _ = small
    return {
        n: pd.read_parquet(out / ("decisions" if n == "decisions" else f"{n}.parquet"))
        for n in CONTRACT
    }


@pytest.fixture(scope="module")
def incidents(small) -> pd.DataFrame:
    out, _ = small
    return pd.read_csv(out / "incidents.csv", dtype=str)


def _local_date(ts: pd.Series, tz: str) -> pd.Series:
    return ts.dt.tz_convert(tz).dt.date


def _split(frame: pd.DataFrame, col: str, inc: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows in the incident window and in the 28 days before it."""
    start, end = date.fromisoformat(inc.start_date), date.fromisoformat(inc.end_date)
    window = frame[(frame[col] >= start) & (frame[col] <= end)]
    before = frame[(frame[col] < start) & (frame[col] >= start - timedelta(days=28))]
    return window, before


def _judged(tables: dict[str, pd.DataFrame], source: str = "internal") -> pd.DataFrame:
    """Human decisions joined with one QA source, with correctness and error types."""
    qa = tables["qa_audits"]
    j = qa[qa.qa_source == source].merge(tables["decisions"], on="decision_id")
    j = j[j.routing != "ai_auto"].copy()
    enf, qenf = j.action != "no_action", j.qa_policy != "none"
    j["correct"] = (enf == qenf) & (~enf | (j.policy == j.qa_policy))
    j["over"] = enf & ~qenf
    return j


# ---------------------------------------------------------------------------
# API, layout, determinism
# ---------------------------------------------------------------------------
def test_summary_matches_files(small) -> None:
    out, s = small
    assert s.markets == ("SG", "ID", "TH")
    assert s.end_date == date(2026, 11, 22) and s.start_date == date(2026, 9, 28)
    parts = sorted((out / "decisions").glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(len(parts))]
    assert sum(pq.read_metadata(p).num_rows for p in parts) == s.n_decisions
    for name, n in s.rows.items():
        if name != "decisions":
            assert pq.read_metadata(out / f"{name}.parquet").num_rows == n, name
    assert s.incidents == len(pd.read_csv(out / "incidents.csv"))
    assert 20_000 < s.n_decisions < 45_000  # ~50k at 90 days


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    kw = {"markets": ["SG"], "days": 35, "scale": "small"}
    a, b, c = (generate(tmp_path / x, seed=s, **kw) for x, s in (("a", 5), ("b", 5), ("c", 6)))
    files = sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file())
    assert len(files) == 9  # 8 tables (one decisions part) + incidents.csv
    for f in files:
        assert (a.path / f).read_bytes() == (b.path / f).read_bytes(), f
    first = Path("decisions/part-00000.parquet")
    assert (a.path / first).read_bytes() != (c.path / first).read_bytes()


def test_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="XX"):
        generate(tmp_path, markets=["XX"], scale="small")
    with pytest.raises(ParameterError, match="days"):
        generate(tmp_path, days=0, scale="small")
    with pytest.raises(ParameterError, match="scale"):
        generate(tmp_path, scale="huge")  # type: ignore[arg-type]


def test_default_markets_by_scale() -> None:
    from qualitylab.demo import SCALES

    assert SCALES["small"].markets == ("SG", "ID", "TH")
    assert SCALES["demo"].markets == ALL_MARKETS == SCALES["large"].markets
    assert SCALES["large"].chunk_days == 15


# ---------------------------------------------------------------------------
# Data contract
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONTRACT))
def test_contract_columns_and_types(small, name: str) -> None:
    out, _ = small
    path = (
        out / "decisions" / "part-00000.parquet" if name == "decisions" else out / f"{name}.parquet"
    )
    schema = pq.read_schema(path)
    assert schema.names == list(CONTRACT[name])
    for col, typ in CONTRACT[name].items():
        assert schema.field(col).type == typ, (name, col)


def test_decisions_invariants(tables, params) -> None:
    d = tables["decisions"]
    assert d.decision_id.is_unique
    decided = d[d.decided_at.notna()]
    assert (decided.decided_at >= decided.created_at).all()
    assert d.ai_score.dropna().between(0, 1).all()
    assert set(decided.action) <= ACTIONS and set(decided.policy) <= POLICIES
    assert ((decided.policy == "none") == (decided.action == "no_action")).all()
    pending = d[d.decided_at.isna()]
    assert pending.action.isna().all() and pending.policy.isna().all()
    assert d.loc[d.routing == "ai_auto", "moderator_id"].isna().all()
    assert d.loc[(d.routing != "ai_auto") & d.decided_at.notna(), "moderator_id"].notna().all()
    assert set(d.routing) == {"human", "ai_assisted", "ai_auto"}
    assert (d.loc[d.queue == "appeal", "routing"] == "human").all()
    auto = d[d.routing == "ai_auto"]
    assert ((auto.ai_score >= 0.97) | (auto.ai_score <= 0.02)).all()
    assert ((d.ai_score >= 0.5) == (d.ai_policy != "none"))[d.ai_score.notna()].all()
    assert d.moderator_id.dropna().str.fullmatch(r"m-[0-9a-f]{10}").all()
    for m, g in d.groupby("market"):
        mp = params.market(m)
        assert set(g.language) == set(mp.languages)
        assert set(g.vendor) == set(mp.vendors)
        assert (g.site.str.split("-").str[0].isin(mp.vendors)).all()


def test_rows_sorted_within_parts(small) -> None:
    out, _ = small
    for p in sorted((out / "decisions").glob("part-*.parquet")):
        t = pq.read_table(p, columns=["created_at", "decision_id"]).to_pandas()
        assert t.created_at.is_monotonic_increasing and t.decision_id.is_monotonic_increasing


def test_realistic_shape(tables, params) -> None:
    d = tables["decisions"]
    mix = d.queue.value_counts(normalize=True)
    assert mix["live_stream"] == pytest.approx(0.40, abs=0.03)
    assert mix["appeal"] == pytest.approx(0.05, abs=0.02)
    # market-local evening peak
    sg = d[d.market == "SG"]
    hour = sg.created_at.dt.tz_convert(params.market("SG").timezone).dt.hour
    assert hour.between(19, 23).mean() > 2.5 * hour.between(3, 7).mean()
    # SLA compliance ~85-95% overall; pending concentrated in the last days
    dec = d[d.decided_at.notna()]
    sla = [params.market(m).sla_seconds[q] for m, q in zip(dec.market, dec.queue, strict=True)]
    rt = (dec.decided_at - dec.created_at).dt.total_seconds()
    assert 0.80 < (rt <= sla).mean() < 0.96
    last_day = d.created_at >= d.created_at.max() - pd.Timedelta(days=2)
    assert d.decided_at.isna()[last_day].mean() > 20 * max(
        d.decided_at.isna()[~last_day].mean(), 1e-6
    )
    # AI: auto only when confident; humans override the hint 8-20% of the time
    a = dec[dec.routing == "ai_assisted"]
    ai_enf, h_enf = a.ai_policy != "none", a.action != "no_action"
    override = (ai_enf != h_enf) | (h_enf & (a.policy != a.ai_policy))
    assert 0.08 < override.mean() < 0.2
    assert 0.05 < (d.routing == "ai_auto").mean() < 0.3


def test_qa_audits(tables) -> None:
    qa, d = tables["qa_audits"], tables["decisions"]
    assert qa.audit_id.is_unique
    assert qa.decision_id.isin(d.decision_id).all()
    assert (qa.sample_weight > 0).all()
    assert set(qa.qa_source) == {"vendor", "internal"}
    assert set(qa.qa_action) <= ACTIONS and set(qa.qa_policy) <= POLICIES
    assert ((qa.qa_policy == "none") == (qa.qa_action == "no_action")).all()
    both = qa.groupby("decision_id").qa_source.nunique()
    assert 0.08 < (both == 2).mean() < 0.25
    j = qa.merge(d[["decision_id", "decided_at"]], on="decision_id")
    assert (j.audited_at > j.decided_at).all()
    # vendor QA is more lenient than internal QA on the same decisions
    assert _judged(tables, "vendor").correct.mean() > _judged(tables, "internal").correct.mean()
    # enforced decisions are over-sampled, so their weights are smaller
    j = qa.merge(d[["decision_id", "action"]], on="decision_id")
    assert (
        j[j.action != "no_action"].sample_weight.median()
        < j[j.action == "no_action"].sample_weight.median()
    )
    assert qa.groupby("qa_source").auditor_id.nunique().min() >= 3


def test_other_tables(tables, small) -> None:
    out, s = small
    st = tables["staffing"]
    assert (st.productive_hours <= st.scheduled_hours).all() and (st.productive_hours >= 0).all()
    ratio = st.productive_hours.sum() / st.scheduled_hours.sum()
    assert 0.78 < ratio < 0.92
    vr = tables["vendor_reported"]
    assert set(vr.metric) == {"accuracy", "sla_compliance", "volume"}
    assert all(w.weekday() == 0 for w in vr.week_start)
    assert "inhouse" not in set(vr.vendor)
    ev = tables["events"]
    assert {"model_release", "policy_change", "training", "outage", "holiday"} <= set(ev.kind)
    assert set(ev.market) <= {*s.markets, "*"}
    cal = tables["calibration"]
    assert {"internal", "policy"} <= set(cal.rater_group)
    assert cal.groupby("session_id").case_id.nunique().between(15, 25).all()
    assert cal.expected_label.isna().any() and cal.expected_label.notna().mean() > 0.9
    esc = tables["escalations"]
    assert esc.escalation_id.is_unique
    assert 0.5 < 1000 * esc.decision_id.notna().sum() / s.n_decisions < 2.5
    assert esc.resolved_at.isna().any()
    closed = esc[esc.resolved_at.notna()]
    assert (closed.resolved_at >= closed.raised_at).all()
    assert set(esc.tier) <= {"vendor_lead", "internal", "policy", "legal"}
    rt = tables["red_team"]
    viol = rt[rt.policy != "none"]
    recall = (viol.ai_score >= 0.5).groupby(viol.attack).mean()
    assert recall[["leetspeak", "code_switching", "coded_symbols"]].max() < recall["none"] - 0.15
    assert (rt.loc[rt.policy == "none", "attack"] == "none").all()


# ---------------------------------------------------------------------------
# Planted incidents
# ---------------------------------------------------------------------------
def test_incidents_file(incidents, small) -> None:
    out, s = small
    with (out / "incidents.csv").open(newline="") as fh:
        assert tuple(next(csv.reader(fh))) == INCIDENT_COLUMNS
    got = set(incidents.metric)
    assert {
        "accuracy",
        "sla_compliance",
        "ai_recall",
        "over_enforcement_rate",
        "volume",
        "reporting_gap",
    } <= got
    assert set(incidents.market) <= set(s.markets)
    assert set(incidents.direction) <= {"up", "down"}
    starts = pd.to_datetime(incidents.start_date).dt.date
    assert (starts >= s.end_date - timedelta(days=27)).all()
    assert (pd.to_datetime(incidents.end_date).dt.date <= s.end_date).all()


def test_incident_effects_are_visible(tables, incidents, params) -> None:
    d = tables["decisions"]
    seen = set()
    for _, inc in incidents.iterrows():
        tz = params.market(inc.market).timezone
        md = d[d.market == inc.market].copy()
        md["day"] = _local_date(md.created_at, tz)
        metric, dim, seg = inc.metric, inc.dimension, inc.segment
        if metric == "volume":
            sel = md if dim == "market" else md[md[dim] == seg]
            daily = sel.groupby("day").size()
            daily.index = pd.Index(daily.index)
            w, b = _split(daily.rename("n").reset_index(), "day", inc)
            assert w.n.mean() > 1.6 * b.n.median(), inc.to_dict()
        elif metric == "sla_compliance":
            sel = md[(md[dim] == seg) & md.decided_at.notna()].copy()
            sla = params.market(inc.market).sla_seconds[seg]
            sel["ok"] = (sel.decided_at - sel.created_at).dt.total_seconds() <= sla
            w, b = _split(sel, "day", inc)
            assert w.ok.mean() < b.ok.mean() - 0.3, inc.to_dict()
        elif metric == "accuracy":
            drops = []  # weighted accuracy before minus during, per QA source
            for source in ("internal", "vendor"):
                j = _judged(tables, source)
                j = j[(j.market == inc.market) & (j[dim] == seg)].copy()
                j["day"] = _local_date(j.created_at, tz)
                w, b = _split(j, "day", inc)
                drops.append(
                    np.average(b.correct, weights=b.sample_weight)
                    - np.average(w.correct, weights=w.sample_weight)
                )
            assert min(drops) > 0 and np.mean(drops) > 0.04, (drops, inc.to_dict())
        elif metric == "ai_recall":
            thr = params.market(inc.market).ai_threshold
            sel = md[(md[dim] == seg) & md.action.notna() & (md.action != "no_action")]
            sel = sel[sel.ai_score.notna()]
            sel = sel.assign(hit=sel.ai_score >= thr)
            w, b = _split(sel, "day", inc)
            assert w.hit.mean() < b.hit.mean() - 0.15, inc.to_dict()
            assert (w.ai_model == "mod-v4").mean() > 0.9
            ev = tables["events"]
            assert ((ev.kind == "model_release") & (ev.market == inc.market)).any()
        elif metric == "over_enforcement_rate":
            human = md[(md.routing != "ai_auto") & md.action.notna()]
            w, b = _split(human.assign(hit=human[dim] == seg), "day", inc)
            assert w.hit.mean() > 1.8 * b.hit.mean(), inc.to_dict()
            j = _judged(tables)
            j = j[j.market == inc.market].copy()
            j["day"] = _local_date(j.created_at, tz)
            j["hit"] = j.over & (j[dim] == seg)
            w, b = _split(j, "day", inc)
            assert w.hit.mean() > b.hit.mean() + 0.02, inc.to_dict()
            ev = tables["events"]
            assert ((ev.kind == "policy_change") & (ev.policy == seg)).any()
        elif metric == "reporting_gap":
            # pooled over the incident weeks vs the four weeks before
            vr = tables["vendor_reported"]
            vr = vr[(vr.market == inc.market) & (vr[dim] == seg) & (vr.metric == "accuracy")]
            j = _judged(tables)
            j = j[(j.market == inc.market) & (j[dim] == seg)].copy()
            j["day"] = _local_date(j.created_at, tz)
            start = date.fromisoformat(inc.start_date)
            gaps = []
            for lo, hi in (
                (start, date.fromisoformat(inc.end_date)),
                (start - timedelta(28), start),
            ):
                rep = vr[(vr.week_start >= lo) & (vr.week_start < hi)].value.mean()
                g = j[(j.day >= lo) & (j.day < hi)]
                gaps.append(rep - np.average(g.correct, weights=g.sample_weight))
            assert gaps[0] > 0.04 and gaps[0] > gaps[1] + 0.02, (gaps, inc.to_dict())
        elif metric == "capacity_gap":
            _assert_capacity_gap(tables, inc, params)
        elif metric == "red_team_recall":
            _assert_red_team_drop(tables, inc, params)
        elif metric == "auto_action_rate":
            w, b = _split(md.assign(auto=md.routing == "ai_auto"), "day", inc)
            assert w.auto.mean() < 0.8 * b.auto.mean(), inc.to_dict()
            no_ai = md[md.ai_score.isna()]
            assert set(no_ai.day) == {date.fromisoformat(inc.start_date)}
            assert (no_ai.routing == "human").all() and len(no_ai) > 10
        else:
            pytest.fail(f"no check for incident metric {metric!r}")
        seen.add(metric)
    assert len(seen) >= 8


def test_findable_column_follows_the_design_rule(incidents) -> None:
    """findable <=> the planted change reaches the detectable one; both sides occur."""
    assert set(incidents.findable) <= {"True", "False"}
    for _, inc in incidents.iterrows():
        if inc.metric == "capacity_gap":  # staffing is a census: findable by construction
            assert inc.findable == "True" and pd.isna(inc.detectable_change)
            continue
        planted, need = float(inc.planted_change), float(inc.detectable_change)
        assert float(inc.expected_n) > 0 and need > 0, inc.to_dict()
        assert (inc.findable == "True") == (abs(planted) >= need), inc.to_dict()
    scored = incidents[incidents.metric != "capacity_gap"]
    assert (scored.findable == "False").any()  # a deliberate blind spot
    assert (scored.findable == "True").mean() > 0.5  # most are findable


def test_findable_inputs_match_the_data(tables, incidents, params) -> None:
    """The design sums behind ``findable`` agree with the tables the generator wrote.

    A census metric (the outage's auto-action rate) is exact: its planted
    change is the day's rate minus the scan's baseline rate (first 28 days,
    holidays out), counted on the decided decisions. For an audit metric
    (VendorC's accuracy) the expected internal audits of the incident's days
    are close to the audits drawn.
    """
    d = tables["decisions"]
    out = incidents[incidents.metric == "auto_action_rate"].iloc[0]
    tz = params.market(out.market).timezone
    md = d[(d.market == out.market) & d.decided_at.notna()].copy()
    md["day"] = _local_date(md.created_at, tz)
    first = md.day.min()
    ev = tables["events"]
    hol = ev[(ev.kind == "holiday") & (ev.market == out.market)]
    hol_days = set(_local_date(hol.effective_at, tz))
    base = md[(md.day < first + timedelta(days=28)) & ~md.day.isin(hol_days)]
    day = md[md.day == date.fromisoformat(out.start_date)]
    change = (day.routing == "ai_auto").mean() - (base.routing == "ai_auto").mean()
    assert float(out.planted_change) == pytest.approx(change, abs=1e-4)
    assert float(out.expected_n) == len(day)

    acc = incidents[(incidents.metric == "accuracy") & (incidents.dimension == "vendor")].iloc[0]
    tz = params.market(acc.market).timezone
    qa = tables["qa_audits"]
    j = qa[qa.qa_source == "internal"].merge(d, on="decision_id")
    j = j[(j.market == acc.market) & (j.vendor == acc.segment)]
    days = _local_date(j.created_at, tz)
    lo, hi = date.fromisoformat(acc.start_date), date.fromisoformat(acc.end_date)
    drawn = int(((days >= lo) & (days <= hi)).sum())
    assert float(acc.expected_n) == pytest.approx(drawn, rel=0.2)


def test_small_scale_adapts_incidents_to_markets(tmp_path: Path) -> None:
    generate(tmp_path, markets=["JP"], days=40, scale="small", seed=1)
    inc = pd.read_csv(tmp_path / "incidents.csv")
    assert set(inc.market) == {"JP"}
    assert {"accuracy", "ai_recall", "reporting_gap", "sla_compliance"} <= set(inc.metric)


# ---------------------------------------------------------------------------
# Operations plants: capacity gap, red-team attack, policy rollout, launch plan
# ---------------------------------------------------------------------------
def _assert_capacity_gap(tables, inc, params) -> None:
    """Productive hours fall short of the Erlang C requirement on every day of the window only.

    The requirement is what a workforce planner computes for the volume that
    arrived: per hour, the moderators Erlang C needs for the market's
    ``sla_compliance`` target within the queue SLA at the generator's handle
    time, summed over the day. Outside understaffed incidents overtime covers
    it, so productive hours are never below it.
    """
    from qualitylab.capacity import required_agents
    from qualitylab.demo import HANDLE_SECONDS, HOURLY, QUEUES

    mp = params.market(inc.market)
    q = QUEUES.index(inc.segment)
    d = tables["decisions"]
    d = d[(d.market == inc.market) & (d[inc.dimension] == inc.segment) & (d.routing != "ai_auto")]
    items = d.groupby(_local_date(d.created_at, mp.timezone)).size()
    rate = items.to_numpy(dtype=float)[:, None] * HOURLY[q][None, :]
    need = required_agents(
        rate, HANDLE_SECONDS[q], mp.sla_seconds[inc.segment], mp.targets["sla_compliance"]
    ).sum(axis=1)
    st = tables["staffing"]
    st = st[(st.market == inc.market) & (st[inc.dimension] == inc.segment)]
    hours = st.groupby("date").productive_hours.sum().reindex(items.index)
    ratio = pd.DataFrame({"day": items.index, "ratio": need / hours.to_numpy()})
    w, b = _split(ratio, "day", inc)
    assert len(w) == 7 and (w.ratio > 1.5).all(), w
    assert len(b) == 28 and b.ratio.max() < 1.01, b.ratio.describe()  # 2-decimal rounding


def _assert_red_team_drop(tables, inc, params) -> None:
    rt = tables["red_team"]
    rt = rt[(rt.market == inc.market) & (rt.policy != "none")].copy()
    rt["day"] = _local_date(rt.created_at, params.market(inc.market).timezone)
    rt["hit"] = rt.ai_score >= params.market(inc.market).ai_threshold
    w, b = _split(rt, "day", inc)
    recall = w.groupby(inc.dimension).hit.mean()
    assert recall.idxmin() == inc.segment, recall
    assert recall[inc.segment] < recall["none"] - 0.45, recall
    before = b[b[inc.dimension] == inc.segment].hit.mean()
    assert before > recall[inc.segment] + 0.2, (before, recall)


def test_staffing_is_planned_with_erlang_c(tables, params) -> None:
    """Every queue is rostered for at least one moderator around the clock, net of shrinkage.

    Erlang C needs a moderator on shift in every hour with arrivals, whatever the
    load; workload-proportional hours would give these small queues a fraction
    of that. The planning handle times in ``defaults.yaml`` are the generator's.
    """
    from qualitylab.demo import HANDLE_SECONDS, QUEUES

    assert params.defaults.aht_seconds == dict(zip(QUEUES, HANDLE_SECONDS.tolist(), strict=True))
    st = tables["staffing"]
    st = st[st.queue.isin(QUEUES)]
    daily = st.groupby(["market", "queue", "date"])[["scheduled_hours", "productive_hours"]].sum()
    share = daily.productive_hours / daily.scheduled_hours
    assert share.between(0.79, 0.98).all()
    rota_cut = daily.productive_hours < 20  # the planted capacity_gap week
    assert rota_cut.sum() == 7
    assert (daily.productive_hours[~rota_cut] >= 24 * 0.99).all()


def test_planted_incidents_cover_operations_metrics(incidents) -> None:
    got = {(r.metric, r.dimension, r.segment) for r in incidents.itertuples()}
    assert ("capacity_gap", "queue", "live_comment") in got
    assert ("red_team_recall", "attack", "code_switching") in got
    assert ("accuracy", "policy", "scam") in got
    cap = incidents[incidents.metric == "capacity_gap"].iloc[0]
    days = (date.fromisoformat(cap.end_date) - date.fromisoformat(cap.start_date)).days + 1
    assert cap.market == "TH" and days == 7 and cap.direction == "up"


def test_policy_rollout_dip_and_recovery_are_recorded(tables, incidents, params) -> None:
    inc = incidents[(incidents.metric == "accuracy") & (incidents.dimension == "policy")].iloc[0]
    start, end = date.fromisoformat(inc.start_date), date.fromisoformat(inc.end_date)
    recovered = end + timedelta(days=1)
    assert recovered.isoformat() in inc.description and start.isoformat() in inc.description
    tz = params.market(inc.market).timezone
    ev = tables["events"]
    ev = ev[(ev.market == inc.market) & (ev.policy == inc.segment)]
    kinds = dict(zip(ev.kind, _local_date(ev.effective_at, tz), strict=True))
    assert kinds == {"policy_change": start, "training": recovered}
    # accuracy on decisions whose decided or QA policy is scam: dips in the window
    j = _judged(tables)
    j = j[(j.market == inc.market) & ((j.policy == inc.segment) | (j.qa_policy == inc.segment))]
    j = j.assign(day=_local_date(j.created_at, tz))
    w, b = _split(j, "day", inc)
    acc_w = np.average(w.correct, weights=w.sample_weight)
    acc_b = np.average(b.correct, weights=b.sample_weight)
    assert acc_w < acc_b - 0.15, (acc_w, acc_b)


def test_launch_plan_matches_the_planted_roster(small, tables) -> None:
    import yaml

    from qualitylab.demo import DEFAULT_END_DATE, DEMO_LAUNCH

    root = Path(__file__).resolve().parent.parent / "parameters" / "launches"
    plan = yaml.safe_load((root / f"{DEMO_LAUNCH.plan}.yaml").read_text(encoding="utf-8"))
    go_live = DEFAULT_END_DATE + timedelta(days=DEMO_LAUNCH.days_after_end)
    assert plan["date"] == go_live
    for key in ("market", "vendor", "site", "queue"):
        assert plan[key] == getattr(DEMO_LAUNCH, key), key
    assert tuple(plan["policies"]) == DEMO_LAUNCH.policies
    assert plan["expected_failures"] == ["reporting"]
    # The roster: one row per day of the go-live week, after the period.
    st = tables["staffing"]
    roster = st[st.queue == DEMO_LAUNCH.queue]
    assert sorted(roster.date) == [go_live + timedelta(days=i) for i in range(7)]
    assert (roster.site == DEMO_LAUNCH.site).all() and (roster.market == "SG").all()
    assert (st.loc[st.queue != DEMO_LAUNCH.queue, "date"] <= small[1].end_date).all()
    assert DEMO_LAUNCH.queue not in set(tables["decisions"].queue)
    # Trained raters; the one KPI VendorB does not report is the planted failure.
    cal = tables["calibration"]
    cal = cal[(cal.market == "SG") & (cal.rater_group == "VendorB") & cal.expected_label.notna()]
    on_launch = cal.expected_label.isin(plan["policies"]) | cal.label.isin(plan["policies"])
    assert (cal.label == cal.expected_label)[on_launch].mean() > 0.92
    vr = tables["vendor_reported"]
    reported = set(vr[(vr.market == "SG") & (vr.vendor == "VendorB")].metric)
    assert set(plan["kpis"]) - reported == {"escalation_rate"}


# ---------------------------------------------------------------------------
# The young market (issue #14) and clean data
# ---------------------------------------------------------------------------
YOUNG = "MY"


@pytest.fixture(scope="module")
def young(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo_young")
    return out, generate(out, scale="small", markets=["SG"], days=35, seed=SEED, young_market=YOUNG)


def test_young_market_starts_late_with_a_queue_live_for_five_days(young, params) -> None:
    from qualitylab.demo import QUEUES, YOUNG_QUEUE, YOUNG_QUEUE_DAYS

    out, s = young
    assert s.markets == ("SG", YOUNG)
    end = s.end_date
    first = end - timedelta(days=13)  # 14 days of history, the last day included
    dec = pd.read_parquet(out / "decisions")
    tz = params.market(YOUNG).timezone
    mine = dec[dec.market == YOUNG].assign(day=lambda d: _local_date(d.created_at, tz))
    assert mine.day.min() == first and mine.day.max() == end
    assert set(mine.queue) == set(QUEUES)
    # the new queue: first decisions on end - 4, five days of data; the others every day
    assert YOUNG_QUEUE_DAYS == 5
    live = mine[mine.queue == YOUNG_QUEUE]
    assert live.day.min() == end - timedelta(days=4)
    assert live.day.nunique() == 5
    assert (mine[mine.queue != YOUNG_QUEUE].groupby("queue").day.nunique() == 14).all()
    # the other market keeps the whole period, incidents and all
    sg = dec[dec.market == "SG"]
    assert _local_date(sg.created_at, params.market("SG").timezone).min() == s.start_date
    inc = pd.read_csv(out / "incidents.csv")
    assert len(inc) > 0 and set(inc.market) == {"SG"}


def test_young_markets_other_tables_start_with_its_data(young, params) -> None:
    from qualitylab.demo import YOUNG_QUEUE

    out, s = young
    tz = params.market(YOUNG).timezone
    first, go_live = s.end_date - timedelta(days=13), s.end_date - timedelta(days=4)
    t = {n: pd.read_parquet(out / f"{n}.parquet") for n in CONTRACT if n != "decisions"}
    st = t["staffing"][t["staffing"].market == YOUNG]
    assert len(st) and st.date.min() == first
    assert st[st.queue == YOUNG_QUEUE].date.min() == go_live
    dec = pd.read_parquet(out / "decisions", columns=["decision_id", "market"])
    qa = t["qa_audits"].merge(dec, on="decision_id")
    for name, frame, col in (
        ("qa_audits", qa, "audited_at"),
        ("escalations", t["escalations"], "raised_at"),
        ("calibration", t["calibration"], "held_at"),
        ("red_team", t["red_team"], "created_at"),
        ("events", t["events"], "effective_at"),
    ):
        rows = frame[frame.market == YOUNG]
        assert len(rows), name
        assert _local_date(rows[col], tz).min() >= first, name
    vr = t["vendor_reported"][t["vendor_reported"].market == YOUNG]
    assert len(vr) and vr.week_start.min() >= first
    ev = t["events"][(t["events"].market == YOUNG) & (t["events"].kind == "queue_launch")]
    assert len(ev) == 1 and _local_date(ev.effective_at, tz).iloc[0] == go_live
    assert YOUNG_QUEUE in ev.description.iloc[0]


def test_young_market_same_seed_same_bytes(tmp_path: Path) -> None:
    kw = {"markets": ["SG"], "days": 21, "scale": "small", "young_market": "KR", "young_days": 10}
    a, b = (generate(tmp_path / x, seed=5, **kw) for x in ("a", "b"))
    files = sorted(p.relative_to(a.path) for p in a.path.rglob("*") if p.is_file())
    assert len(files) == 10  # 8 tables (decisions in two parts) + incidents.csv
    for f in files:
        assert (a.path / f).read_bytes() == (b.path / f).read_bytes(), f
    dec = pd.read_parquet(a.path / "decisions", columns=["market", "created_at"])
    kr = _local_date(dec[dec.market == "KR"].created_at, "Asia/Seoul")
    assert kr.min() == a.end_date - timedelta(days=9)


def test_young_market_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="XX"):
        generate(tmp_path, markets=["SG"], days=21, scale="small", young_market="XX")
    for bad in (5, 22, True):
        with pytest.raises(ParameterError, match="young_days"):
            generate(
                tmp_path, markets=["SG"], days=21, scale="small", young_market="MY", young_days=bad
            )


def test_no_incidents_gives_clean_data(tmp_path: Path) -> None:
    s = generate(tmp_path, markets=["SG", "ID"], days=35, scale="small", incidents=False)
    assert s.incidents == 0
    assert (tmp_path / "incidents.csv").read_text().strip() == ",".join(INCIDENT_COLUMNS)
    events = pd.read_parquet(tmp_path / "events.parquet")
    assert not set(events.kind) & {"outage", "model_release", "policy_change"}
