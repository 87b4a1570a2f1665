"""Engine metrics equal a plain-pandas recomputation, and edge cases are honest."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from design_reference import design_interval
from statsmodels.duration.survfunc import SurvfuncRight
from statsmodels.stats.proportion import proportion_confint

from qualitylab import QualityLabError
from qualitylab.agreement import cohen_kappa
from qualitylab.metrics import (
    ai_workflow_metrics,
    operational_metrics,
    qa_alignment,
    qa_metrics,
)
from qualitylab.params import load_parameters
from qualitylab.sources import open_dataset
from qualitylab.stats import mcnemar, proportion_ci
from tests.conftest import tiny_tables, write_tables

MARKET = "SG"
START, END = "2026-10-12", "2026-11-08"


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def frames(small_data):
    """The small dataset in pandas, with market-local dates (the reference path)."""
    tz = load_parameters().market(MARKET).tz
    dec = pd.read_parquet(small_data / "decisions")
    dec = dec[dec.market == MARKET].copy()
    dec["date"] = dec.created_at.dt.tz_convert(tz).dt.date.astype(str)
    dec = dec[(dec.date >= START) & (dec.date <= END)]
    qa = pd.read_parquet(small_data / "qa_audits.parquet")
    staff = pd.read_parquet(small_data / "staffing.parquet")
    staff = staff[staff.market == MARKET].copy()
    staff["date"] = pd.to_datetime(staff["date"]).dt.date.astype(str)
    staff = staff[(staff.date >= START) & (staff.date <= END)]
    as_of = pd.Timestamp(END).tz_localize(tz) + pd.Timedelta(days=1)
    return {"dec": dec, "qa": qa, "staff": staff, "as_of": as_of.tz_convert("UTC")}


def _get(df, metric, **seg):
    sel = df[df.metric == metric]
    for k, v in seg.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, (metric, seg, sel)
    return sel.iloc[0]


def test_volume_and_backlog_by_vendor(ds, frames):
    out = operational_metrics(ds, market=MARKET, by=["vendor"], start=START, end=END)
    dec = frames["dec"]
    pending = dec.decided_at.isna() | (dec.decided_at >= frames["as_of"])
    for vendor, g in dec.groupby("vendor"):
        assert _get(out, "volume", vendor=vendor).value == len(g)
        assert _get(out, "backlog", vendor=vendor).value == pending[g.index].sum()


def test_volume_by_date_uses_market_local_dates(ds, frames):
    out = operational_metrics(ds, market=MARKET, by=["date"], start=START, end=END)
    vol = out[out.metric == "volume"]
    vol = vol.set_index(vol.date.astype(str))["value"]
    expected = frames["dec"].groupby("date").size().astype(float)
    pd.testing.assert_series_equal(vol.sort_index(), expected.sort_index(), check_names=False)


def _response(dec, as_of):
    done = dec.decided_at.notna() & (dec.decided_at < as_of)
    stop = dec.decided_at.where(done, as_of)
    return (stop - dec.created_at).dt.total_seconds().clip(lower=0), done


def test_sla_compliance_equals_kaplan_meier_from_statsmodels(ds, frames):
    params = load_parameters().market(MARKET)
    out = operational_metrics(ds, market=MARKET, by=["queue"], start=START, end=END)
    dec = frames["dec"]
    t, done = _response(dec, frames["as_of"])
    for queue in ["live_stream", "live_report"]:
        sel = dec.queue == queue
        sla = params.sla_seconds[queue]
        sf = SurvfuncRight(t[sel].to_numpy(), done[sel].astype(int).to_numpy())
        # statsmodels: survival just after the SLA is 1 - compliance.
        idx = np.searchsorted(sf.surv_times, sla, side="right") - 1
        expected = 1 - (sf.surv_prob[idx] if idx >= 0 else 1.0)
        row = _get(out, "sla_compliance", queue=queue)
        # Binned KM orders events before censorings inside a 5%-wide bin; exact KM
        # interleaves them, so the two differ only by that within-bin ordering.
        assert row.value == pytest.approx(expected, abs=2e-4)
        assert row.ci_low < row.value < row.ci_high


def test_sla_without_censoring_is_a_plain_wilson_proportion(tmp_path):
    tables = tiny_tables()
    tables["decisions"] = tables["decisions"][tables["decisions"].decided_at.notna()]
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    out = operational_metrics(ds, market="SG", start="2026-03-02", end="2026-03-02")
    row = _get(out, "sla_compliance")
    lo, hi = proportion_confint(6, 6, method="wilson")  # all 6 within 3 minutes
    assert row.value == 1.0 and row.n == 6
    assert (row.ci_low, row.ci_high) == pytest.approx((lo, hi))
    assert row.small_n  # 6 < min_n: flagged, not shown as a confident 100%


def test_pending_items_make_sla_worse_not_better(tmp_path):
    """A backlog of old pending items must lower compliance (censoring, not dropping)."""
    tables = tiny_tables()
    dec = tables["decisions"]
    extra = dec.iloc[[0] * 4].copy()
    extra["decision_id"] = [f"p{i}" for i in range(4)]
    extra["decided_at"] = pd.NaT
    extra["action"] = None
    extra["policy"] = None
    extra["created_at"] = pd.Timestamp("2026-03-02 01:00", tz="UTC")  # old by period end
    tables["decisions"] = pd.concat([dec, extra], ignore_index=True)
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    out = operational_metrics(ds, market="SG", start="2026-03-02", end="2026-03-02")
    row = _get(out, "sla_compliance")
    assert row.value == pytest.approx(6 / 10)  # the 4 pending ones have breached already
    assert _get(out, "backlog").value == 4


def test_response_percentiles_match_statsmodels_within_bin_width(ds, frames):
    out = operational_metrics(ds, market=MARKET, by=["vendor"], start=START, end=END)
    dec = frames["dec"]
    t, done = _response(dec, frames["as_of"])
    for vendor in sorted(dec.vendor.unique()):
        sel = dec.vendor == vendor
        sf = SurvfuncRight(t[sel].to_numpy(), done[sel].astype(int).to_numpy())
        for q, name in ((0.5, "response_p50"), (0.9, "response_p90")):
            expected = sf.quantile(q)
            row = _get(out, name, vendor=vendor)
            assert row.value == pytest.approx(expected, rel=0.05), (vendor, name)
            assert row.ci_low <= row.value <= row.ci_high


def test_throughput_and_utilization(ds, frames):
    out = operational_metrics(ds, market=MARKET, by=["vendor"], start=START, end=END)
    dec, staff = frames["dec"], frames["staff"]
    human = dec[dec.decided_at.notna() & (dec.routing != "ai_auto")]
    for vendor, g in staff.groupby("vendor"):
        thr = _get(out, "throughput", vendor=vendor)
        assert thr.value == pytest.approx((human.vendor == vendor).sum() / g.productive_hours.sum())
        util = _get(out, "utilization", vendor=vendor)
        assert util.value == pytest.approx(g.productive_hours.sum() / g.scheduled_hours.sum())


def _audited(frames, source="internal"):
    qa = frames["qa"][frames["qa"].qa_source == source]
    j = qa.merge(frames["dec"], on="decision_id")
    j = j[j.action.notna()]
    enf = j.action != "no_action"
    qenf = j.qa_action != "no_action"
    j["correct"] = (enf == qenf) & (~enf | (j.policy == j.qa_policy))
    j["over"] = enf & ~qenf
    j["w"] = j.sample_weight.fillna(1.0)
    return j


def test_accuracy_is_the_design_weighted_estimate(ds, frames):
    out = qa_metrics(ds, market=MARKET, by=["vendor"], start=START, end=END)
    j = _audited(frames)
    for vendor, g in j.groupby("vendor"):
        acc = _get(out, "accuracy", vendor=vendor)
        assert acc.n == len(g)
        assert acc.value == pytest.approx(np.average(g.correct, weights=g.w))
        over = _get(out, "over_enforcement_rate", vendor=vendor)
        assert over.value == pytest.approx(np.average(g.over, weights=g.w))
        assert acc.ci_low < acc.value < acc.ci_high


def test_unweighted_accuracy_uses_wilson(ds, frames):
    out = qa_metrics(ds, market=MARKET, start=START, end=END, weighted=False)
    j = _audited(frames)
    acc = _get(out, "accuracy")
    lo, hi = proportion_confint(j.correct.sum(), len(j), method="wilson")
    assert acc.value == pytest.approx(j.correct.mean())
    assert (acc.ci_low, acc.ci_high) == pytest.approx((lo, hi))


def test_accuracy_by_week_and_queue(ds, frames):
    out = qa_metrics(ds, market=MARKET, by=["week", "queue"], start=START, end=END)
    j = _audited(frames)
    j["week"] = pd.to_datetime(j.date) - pd.to_timedelta(pd.to_datetime(j.date).dt.day_of_week, "D")
    for (week, queue), g in j.groupby(["week", "queue"]):
        row = out[(pd.to_datetime(out.week) == week) & (out.queue == queue)]
        row = row[row.metric == "accuracy"].iloc[0]
        assert row.value == pytest.approx(np.average(g.correct, weights=g.w))


def test_qa_alignment_against_pandas(ds, frames):
    out = qa_alignment(ds, market=MARKET, start=START, end=END)
    both = []
    for src in ("vendor", "internal"):
        j = _audited(frames, src).sort_values("audited_at").groupby("decision_id").tail(1)
        j["label"] = np.where(j.qa_action != "no_action", j.qa_policy, "none")
        both.append(j.set_index("decision_id")[["label", "correct", "w"]])
    pairs = both[0].join(both[1], suffixes=("_v", "_i"), how="inner")
    row = _get(out, "qa_alignment")
    assert row.n == len(pairs)
    # weighted by the internal audit's sample weight (the draw that makes the pair)
    same = (pairs.label_v == pairs.label_i).astype(float)
    assert row.value == pytest.approx(np.average(same, weights=pairs.w_i))
    assert (row.ci_low, row.ci_high) == pytest.approx(_design_by_weight(same, pairs.w_i))
    from sklearn.metrics import cohen_kappa_score

    kappa = _get(out, "qa_alignment_kappa")
    assert kappa.value == pytest.approx(cohen_kappa_score(pairs.label_v, pairs.label_i))


def _design_by_weight(y, w, confidence_level=0.95):
    """The documented design interval with strata = distinct weights (pandas reference)."""
    _, lo, hi, _ = design_interval(y, w, np.asarray(w), confidence_level=confidence_level)
    return lo, hi


def _qa_pairs(frames, by):
    """Double-audited decisions in pandas: latest audit per source, labels and verdicts."""
    latest = []
    for src in ("vendor", "internal"):
        j = _audited(frames, src).sort_values("audited_at").groupby("decision_id").tail(1)
        j["label"] = np.where(j.qa_action != "no_action", j.qa_policy, "none")
        enf, qenf = j.action != "no_action", j.qa_action != "no_action"
        j["correct"] = (enf == qenf) & (~enf | (j.policy.fillna("none") == j.qa_policy))
        latest.append(j.set_index("decision_id")[[*by, "label", "correct", "w"]])
    return latest[0].join(latest[1].drop(columns=by), suffixes=("_v", "_i"), how="inner")


def _qa_alignment_per_segment(pairs, by, confidence_level):
    """Reference: one call of the scalar functions per segment."""
    rows = []
    for key, g in pairs.groupby(by, sort=True, dropna=False):
        seg = dict(zip(by, key, strict=True))
        n = len(g)
        same = (g.label_v == g.label_i).astype(float)
        lo, hi = _design_by_weight(same, g.w_i, confidence_level)
        value = np.average(same, weights=g.w_i)
        rows.append({**seg, "metric": "qa_alignment", "value": value, "n": n})
        rows[-1].update(ci_low=lo, ci_high=hi, p_value=np.nan)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            k = cohen_kappa(g.label_v, g.label_i, confidence_level=confidence_level)
        rows.append({**seg, "metric": "qa_alignment_kappa", "value": k.statistic, "n": n})
        rows[-1].update(ci_low=k.ci_low, ci_high=k.ci_high, p_value=np.nan)
        b = int((g.correct_v & ~g.correct_i).sum())
        c = int((~g.correct_v & g.correct_i).sum())
        if b + c:
            lo, hi = proportion_ci(b, b + c, confidence_level=confidence_level)
            rows.append({**seg, "metric": "qa_leniency", "value": b / (b + c), "n": b + c})
            rows[-1].update(ci_low=lo, ci_high=hi, p_value=mcnemar(b, c).pvalue)
    return pd.DataFrame(rows)


def _assert_same_qa_alignment(out, ref, by):
    assert list(out.columns) == [*by, "metric", "value", "n", "ci_low", "ci_high", "small_n"] + [
        "p_value"
    ]
    got = out.set_index([*by, "metric"]).sort_index()
    want = ref.set_index([*by, "metric"]).sort_index()
    assert got.index.equals(want.index)  # same segments, same metrics (leniency iff b + c > 0)
    for col in ("value", "n", "ci_low", "ci_high", "p_value"):
        np.testing.assert_allclose(got[col], want[col].astype(float), rtol=0, atol=1e-10)


def test_qa_alignment_equals_per_segment_reference(ds, frames):
    by = ["vendor", "queue"]
    out = qa_alignment(ds, market=MARKET, by=by, start=START, end=END)
    cl = ds.params.market(MARKET).confidence_level
    ref = _qa_alignment_per_segment(_qa_pairs(frames, by), by, cl)
    _assert_same_qa_alignment(out, ref, by)
    assert (out["metric"] == "qa_leniency").sum() >= 3


def test_qa_alignment_edge_segments_equal_reference(tmp_path):
    """Chi-square and exact McNemar, one-label kappa, no discordance, a null segment key."""
    t0 = pd.Timestamp("2026-03-02 02:00", tz="UTC")
    # (vendor, moderator, decision, vendor QA, internal QA, repeats); decisions are
    # no_action, so a QA "ban" is a failed verdict
    plan = [
        ("VendorA", "m1", "no_action", "no_action", "ban", 20),  # b: vendor passed
        ("VendorA", "m1", "no_action", "ban", "no_action", 9),  # c
        ("VendorA", "m1", "no_action", "no_action", "no_action", 11),
        ("VendorA", "m1", "no_action", "ban", "ban", 3),
        ("VendorB", "m2", "no_action", "no_action", "ban", 3),
        ("VendorB", "m2", "no_action", "ban", "no_action", 1),
        ("VendorB", "m2", "no_action", "no_action", "no_action", 2),
        ("VendorC", None, "no_action", "no_action", "no_action", 3),  # one label only
    ]
    dec, aud = [], []
    for vendor, mod, action, qv, qi, reps in plan:
        for _ in range(reps):
            i = len(dec)
            dec.append({"decision_id": f"d{i}", "vendor": vendor, "moderator_id": mod})
            dec[-1].update(action=action, created_at=t0 + pd.Timedelta(seconds=i))
            for src, qa in (("vendor", qv), ("internal", qi)):
                policy = "none" if qa == "no_action" else "spam"
                aud.append({"decision_id": f"d{i}", "qa_source": src, "qa_action": qa})
                aud[-1].update(qa_policy=policy, audit_id=f"a{len(aud)}")
    tables = tiny_tables()
    base = tables["decisions"].iloc[0]
    d = pd.DataFrame(dec)
    for col in tables["decisions"].columns:
        if col not in d:
            d[col] = base[col]
    d["decided_at"] = d["created_at"] + pd.Timedelta(minutes=1)
    a = pd.DataFrame(aud)
    a["audited_at"] = t0 + pd.Timedelta(days=1)
    a["auditor_id"], a["sample_weight"] = "q1", 1.0
    tables["decisions"] = d[tables["decisions"].columns]
    tables["qa_audits"] = a[tables["qa_audits"].columns]
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    by = ["vendor", "moderator_id"]
    out = qa_alignment(ds, market="SG", by=by, start="2026-03-02", end="2026-03-02")
    labels = {"no_action": "none", "ban": "spam"}
    pairs = pd.DataFrame(
        [
            {"vendor": v, "moderator_id": m, "label_v": labels[qv], "label_i": labels[qi]}
            | {"correct_v": qv == "no_action", "correct_i": qi == "no_action", "w_i": 1.0}
            for v, m, _, qv, qi, reps in plan
            for _ in range(reps)
        ]
    )
    ref = _qa_alignment_per_segment(pairs, by, ds.params.market("SG").confidence_level)
    _assert_same_qa_alignment(out, ref, by)
    lenient = out[out["metric"] == "qa_leniency"].set_index("vendor")
    assert list(lenient.index) == ["VendorA", "VendorB"]  # none for VendorC: b + c == 0
    assert lenient.loc["VendorA", "p_value"] == mcnemar(20, 9, exact=False).pvalue
    assert lenient.loc["VendorB", "p_value"] == mcnemar(3, 1, exact=True).pvalue
    kappa = out[out["metric"] == "qa_alignment_kappa"].set_index("vendor")["value"]
    assert np.isnan(kappa["VendorC"]) and not np.isnan(kappa["VendorA"])
    assert out.loc[out["vendor"] == "VendorC", "moderator_id"].isna().all()


def test_workflow_rates_against_pandas(ds, frames):
    out = ai_workflow_metrics(ds, market=MARKET, by=["queue"], start=START, end=END)
    dec = frames["dec"][frames["dec"].action.notna()]
    for queue, g in dec.groupby("queue"):
        assert _get(out, "auto_action_rate", queue=queue).value == pytest.approx(
            (g.routing == "ai_auto").mean()
        )
        a = g[g.routing == "ai_assisted"]
        if len(a) == 0:
            assert np.isnan(_get(out, "override_rate", queue=queue).value)
            continue
        ai_enf = a.ai_policy.fillna("none") != "none"
        h_enf = a.action != "no_action"
        ov = (ai_enf != h_enf) | (ai_enf & h_enf & (a.policy != a.ai_policy))
        assert _get(out, "override_rate", queue=queue).value == pytest.approx(ov.mean())


def test_every_output_has_n_and_interval_columns(ds):
    for fn in (operational_metrics, qa_metrics, ai_workflow_metrics):
        out = fn(ds, market=MARKET, by=["vendor"], start=START, end=END)
        assert list(out.columns) == [
            "vendor",
            "metric",
            "value",
            "n",
            "ci_low",
            "ci_high",
            "small_n",
        ]


def test_unknown_grain_is_a_clear_error(ds):
    with pytest.raises(QualityLabError, match="unknown grain 'vendr'"):
        operational_metrics(ds, market=MARKET, by=["vendr"])


def test_missing_qa_table_is_a_clear_error(tmp_path):
    tables = tiny_tables()
    del tables["qa_audits"]
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    with pytest.raises(QualityLabError, match="qa_audits is not in the dataset"):
        qa_metrics(ds, market="SG")


def test_all_correct_segment_is_not_a_confident_100(tmp_path):
    tables = tiny_tables()
    a = tables["qa_audits"]
    a = a[a.decision_id.isin(["d0", "d1"])]  # both correct
    tables["qa_audits"] = a
    ds = open_dataset(write_tables(tmp_path / "d", tables))
    out = qa_metrics(ds, market="SG", qa_source=None)
    acc = _get(out, "accuracy")
    assert acc.value == 1.0 and acc.ci_low < 0.5 and acc.small_n


def test_empty_period_warns_instead_of_crashing(tmp_path):
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        out = qa_metrics(ds, market="SG", start="2026-05-01", end="2026-05-02")
    assert out.empty and any("no audited decisions" in str(w.message) for w in rec)


def test_grouped_period_without_decisions_is_empty_with_a_note(tmp_path):
    # Issue #14: grouped and empty used to be pd.concat of no parts (ValueError).
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with pytest.warns(UserWarning, match=r"no decisions in market SG in 2026-05-01\.\.2026-05-02"):
        out = operational_metrics(
            ds, market="SG", by=["vendor"], start="2026-05-01", end="2026-05-02"
        )
    assert out.empty
    assert list(out.columns) == ["vendor", "metric", "value", "n", "ci_low", "ci_high", "small_n"]
    # ungrouped, the empty period is a census of zero, as before
    whole = operational_metrics(ds, market="SG", start="2026-05-01", end="2026-05-02")
    assert _get(whole, "volume").value == 0
    # and the day with data still counts its 6 SG decisions by vendor
    day = operational_metrics(ds, market="SG", by=["vendor"], start="2026-03-02", end="2026-03-02")
    vol = day[day.metric == "volume"].set_index("vendor")["value"].to_dict()
    assert vol == {"VendorA": 3.0, "VendorB": 2.0, "inhouse": 1.0}


def test_bad_period_is_a_clear_error(tmp_path):
    ds = open_dataset(write_tables(tmp_path / "d", tiny_tables()))
    with pytest.raises(QualityLabError, match="before its start"):
        operational_metrics(ds, market="SG", start="2026-03-05", end="2026-03-01")
    with pytest.raises(QualityLabError, match="not an ISO date"):
        operational_metrics(ds, market="SG", start="March 1st")


def test_error_rates_against_pandas(ds, frames):
    out = qa_metrics(ds, market=MARKET, by=["queue"], start=START, end=END)
    j = _audited(frames)
    enf = j.action != "no_action"
    qenf = j.qa_action != "no_action"
    j["under"] = ~enf & qenf
    j["wrong"] = enf & qenf & (j.policy != j.qa_policy)
    for queue, g in j.groupby("queue"):
        under = _get(out, "under_enforcement_rate", queue=queue)
        wrong = _get(out, "wrong_policy_rate", queue=queue)
        assert under.value == pytest.approx(np.average(g.under, weights=g.w))
        assert wrong.value == pytest.approx(np.average(g.wrong, weights=g.w))
        acc = _get(out, "accuracy", queue=queue).value
        total = (
            acc + under.value + wrong.value + _get(out, "over_enforcement_rate", queue=queue).value
        )
        assert total == pytest.approx(1.0)  # every audit is correct or exactly one error


def test_ai_metrics_equal_scikit_learn_on_the_audited_items(ds, frames):
    from sklearn.metrics import f1_score, precision_score, recall_score

    from qualitylab.aieval import ai_metrics

    out = ai_metrics(ds, market=MARKET, by=["language"], start=START, end=END, threshold=0.5)
    j = _audited(frames)
    j = j[j.ai_score.notna()]
    for lang, g in j.groupby("language"):
        y = (g.qa_action != "no_action").astype(int)
        pred = (g.ai_score >= 0.5).astype(int)
        w = g.w
        if y.sum() == 0 or pred.sum() == 0:
            continue
        assert _get(out, "ai_precision", language=lang).value == pytest.approx(
            precision_score(y, pred, sample_weight=w)
        )
        assert _get(out, "ai_recall", language=lang).value == pytest.approx(
            recall_score(y, pred, sample_weight=w)
        )
        assert _get(out, "ai_f1", language=lang).value == pytest.approx(
            f1_score(y, pred, sample_weight=w)
        )
