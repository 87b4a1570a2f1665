"""The numbers the glue shows, against an independent computation (issue #17, part 4).

``scorecard``, ``reconcile``, ``readiness``, ``calibration``, ``findings``,
``headline`` and ``report`` mostly pass on numbers from :mod:`qualitylab.metrics`.
Here each is checked against pandas on the raw rows of the demo data, against
statsmodels, or against a case worked by hand, so that a wrong number fails.
"""

from __future__ import annotations

import math
import re
import shutil
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint, proportions_ztest

import qualitylab as ql
from qualitylab import report
from qualitylab.calibration import calibration_summary
from qualitylab.demo import DEMO_LAUNCH
from qualitylab.findings import partner_agenda
from qualitylab.headline import headline
from qualitylab.params import load_parameters
from qualitylab.readiness import load_launch_plan, readiness
from qualitylab.reconcile import reporting_gap
from qualitylab.scorecard import _change_pvalues, status_against_target
from qualitylab.sources import open_dataset
from tests.conftest import PARAMS, tiny_tables, write_tables

MARKET = "SG"
TZ = load_parameters().market(MARKET).tz
START, END = date(2026, 10, 26), date(2026, 11, 22)
PREV_START, PREV_END = date(2026, 9, 28), date(2026, 10, 25)
#: Rates whose interval is a Wilson interval on plain counts when weights are equal.
COUNT_RATES = (
    "accuracy",
    "over_enforcement_rate",
    "under_enforcement_rate",
    "wrong_policy_rate",
    "override_rate",
)


# --------------------------------------------------------------------------- #
# Raw rows, read with pandas only
# --------------------------------------------------------------------------- #
def _decisions(folder: Path) -> pd.DataFrame:
    dec = pd.read_parquet(folder / "decisions")
    dec = dec[dec["market"] == MARKET].copy()
    dec["date"] = dec["created_at"].dt.tz_convert(TZ).dt.date
    return dec


def _audited(folder: Path, qa_source: str | None = "internal") -> pd.DataFrame:
    """Audits joined to their decisions with the correctness flags of the data README."""
    qa = pd.read_parquet(folder / "qa_audits.parquet")
    if qa_source is not None:
        qa = qa[qa["qa_source"] == qa_source]
    dec = _decisions(folder)
    j = qa.merge(dec[dec["action"].notna()], on="decision_id")
    enforced = j["action"] != "no_action"
    qa_enforced = j["qa_action"] != "no_action"
    same_policy = j["policy"].fillna("none") == j["qa_policy"]
    j["correct"] = (enforced == qa_enforced) & (~enforced | same_policy)
    j["w"] = j["sample_weight"].fillna(1.0)
    return j


def _accuracy(j: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Design-weighted accuracy sum(w * correct) / sum(w), the count of correct and n."""
    j = j.assign(wy=j["w"] * j["correct"])
    g = j.groupby(by).agg(wy=("wy", "sum"), w=("w", "sum"), k=("correct", "sum"), n=("w", "size"))
    return g.assign(accuracy=g["wy"] / g["w"])[["accuracy", "k", "n"]]


def _in(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    return frame[(frame["date"] >= start) & (frame["date"] <= end)]


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def audited(small_data):
    return _audited(small_data)


@pytest.fixture(scope="module")
def equal_weights(small_data, tmp_path_factory) -> Path:
    """The small data with every audit weighted 1: rates are plain counts over n."""
    out = tmp_path_factory.mktemp("equal-weights")
    shutil.copytree(small_data, out, dirs_exist_ok=True)
    qa = pd.read_parquet(out / "qa_audits.parquet")
    qa["sample_weight"] = 1.0
    qa.to_parquet(out / "qa_audits.parquet", index=False)
    return out


# --------------------------------------------------------------------------- #
# scorecard: the change test and the status
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def equal_scorecards(equal_weights):
    eq = open_dataset(equal_weights)
    cur = ql.scorecard(eq, MARKET, by=["vendor"], start=START, end=END)
    prev = ql.scorecard(eq, MARKET, by=["vendor"], start=PREV_START, end=PREV_END, compare=False)
    return cur, prev


def test_scorecard_counts_are_the_raw_audits(equal_weights, equal_scorecards):
    cur, _ = equal_scorecards
    raw = _accuracy(_in(_audited(equal_weights), START, END), ["vendor"])
    acc = cur[cur["metric"] == "accuracy"].set_index("vendor")
    assert list(acc.index) == list(raw.index)
    np.testing.assert_allclose(acc["n"], raw["n"])
    np.testing.assert_allclose(acc["value"] * acc["n"], raw["k"], rtol=1e-9)


def test_scorecard_change_is_the_pooled_two_proportion_z_test(equal_scorecards):
    cur, prev = equal_scorecards
    prev = prev.set_index(["vendor", "metric"])
    checked = 0
    for r in cur[cur["metric"].isin(COUNT_RATES)].itertuples():
        q = prev.loc[(r.vendor, r.metric)]
        k1, n1, k2, n2 = r.value * r.n, r.n, q["value"] * q["n"], q["n"]
        if not (0 < k1 + k2 < n1 + n2):
            continue
        # statsmodels: proportions_ztest([k1, k2], [n1, n2]) (pooled variance, two-sided)
        _, expected = proportions_ztest([round(k1), round(k2)], [n1, n2])
        assert r.p_value == pytest.approx(expected, rel=1e-6), (r.vendor, r.metric)
        checked += 1
    assert checked >= 10


def test_scorecard_change_hand_worked():
    # 90 of 100 against 80 of 100: pooled p = 0.85, se = sqrt(0.85 * 0.15 * 2 / 100)
    # = 0.050498, z = 0.10 / 0.050498 = 1.98030, two-sided p = 2 * (1 - Phi(1.98030))
    # = 0.047670. R: prop.test(c(90, 80), c(100, 100), correct = FALSE)$p.value

    lo1, hi1 = proportion_confint(90, 100, method="wilson")
    lo2, hi2 = proportion_confint(80, 100, method="wilson")
    cur = pd.DataFrame({"metric": ["accuracy"], "value": [0.9], "ci_low": [lo1], "ci_high": [hi1]})
    prev = pd.DataFrame({"metric": ["accuracy"], "value": [0.8], "ci_low": [lo2], "ci_high": [hi2]})
    (p,) = _change_pvalues(cur, prev, (28, 28), 0.95)
    assert p == pytest.approx(0.047670, abs=5e-6)


def test_scorecard_status_against_statsmodels_wilson(equal_scorecards):
    cur, _ = equal_scorecards
    acc = cur[cur["metric"] == "accuracy"]
    assert (acc["target"] == 0.95).all()
    for r in acc.itertuples():
        # statsmodels: proportion_confint(k, n, alpha=0.05, method="wilson")
        lo, hi = proportion_confint(round(r.value * r.n), r.n, alpha=0.05, method="wilson")
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), abs=1e-9)
        expected = "green" if lo >= 0.95 else "red" if hi < 0.95 else "amber"
        assert r.status == expected, (r.vendor, r.value, lo, hi)
    # Hand-worked Wilson 95% intervals: 180 of 200 correct, 0.8506-0.9343, wholly below the
    # 0.95 target → red; 196 of 200, 0.9497-0.9922, its lower bound just under 0.95 → amber;
    # an error rate of 4 in 200, 0.0078-0.0503, straddles a 0.05 target → amber.
    assert status_against_target(0.90, 0.8506, 0.9343, 0.95, "accuracy") == "red"
    assert status_against_target(0.98, 0.9497, 0.9922, 0.95, "accuracy") == "amber"
    assert status_against_target(0.02, 0.0078, 0.0503, 0.05, "over_enforcement_rate") == "amber"
    assert status_against_target(0.02, 0.0078, 0.0503, 0.06, "over_enforcement_rate") == "green"


# --------------------------------------------------------------------------- #
# reconcile: measured values are the data's
# --------------------------------------------------------------------------- #
def test_reporting_gap_measured_values_are_the_data(small_data, ds, audited):
    gaps = reporting_gap(ds, MARKET)
    rep = pd.read_parquet(small_data / "vendor_reported.parquet")
    rep = rep[rep["market"] == MARKET]
    weeks = sorted(pd.to_datetime(rep["week_start"]).dt.date.unique())
    # pandas: a decision's week is the Monday of its market-local creation date
    dec = _decisions(small_data)
    dec["week"] = [d - timedelta(days=d.weekday()) for d in dec["date"]]
    volume = dec.groupby(["vendor", "week"]).size()
    j = audited.assign(week=[d - timedelta(days=d.weekday()) for d in audited["date"]])
    j = j[j["week"].isin(weeks)]
    acc = _accuracy(j, ["vendor", "week"])

    vol = gaps[gaps["kpi"] == "volume"].set_index(["vendor", "week"])
    assert len(vol) == len(rep[rep["metric"] == "volume"])
    np.testing.assert_allclose(vol["measured"], volume.reindex(vol.index).to_numpy(float))
    a = gaps[gaps["kpi"] == "accuracy"].set_index(["vendor", "week"])
    assert len(a) == len(rep[rep["metric"] == "accuracy"])
    np.testing.assert_allclose(a["measured"], acc["accuracy"].reindex(a.index), rtol=1e-9)
    np.testing.assert_allclose(a["n"], acc["n"].reindex(a.index))
    # the gap is the vendor's figure minus ours
    reported = rep.assign(week=pd.to_datetime(rep["week_start"]).dt.date)
    reported = reported.set_index(["vendor", "week", "metric"])["value"]
    for kpi, frame in (("volume", vol), ("accuracy", a)):
        keys = [(v, w, kpi) for v, w in frame.index]
        np.testing.assert_allclose(
            frame["gap"], reported.loc[keys].to_numpy() - frame["measured"], rtol=1e-9
        )


# --------------------------------------------------------------------------- #
# calibration: scores by hand
# --------------------------------------------------------------------------- #
def _calibration_rows() -> pd.DataFrame:
    """One session, four cases, three raters: r1 4/4, r2 3/4 (VendorA), r3 1/4 (internal)."""
    expected = ["spam", "spam", "hate_speech", "none"]
    labels = {
        ("r1", "VendorA"): ["spam", "spam", "hate_speech", "none"],
        ("r2", "VendorA"): ["spam", "none", "hate_speech", "none"],
        ("r3", "internal"): ["none", "none", "hate_speech", "spam"],
    }
    rows = [
        {
            "session_id": "cal-1",
            "held_at": pd.Timestamp("2026-03-02 03:00", tz="UTC"),
            "market": MARKET,
            "case_id": f"c{i + 1}",
            "rater_id": rater,
            "rater_group": group,
            "label": label,
            "expected_label": expected[i],
        }
        for (rater, group), given in labels.items()
        for i, label in enumerate(given)
    ]
    return pd.DataFrame(rows)


def test_calibration_scores_hand_worked(tmp_path):
    folder = write_tables(tmp_path / "cal", {**tiny_tables(), "calibration": _calibration_rows()})
    res = calibration_summary(open_dataset(folder), MARKET, n_boot=50)
    raters = res.raters.set_index("rater_id")
    assert raters["value"].to_dict() == pytest.approx({"r1": 1.0, "r2": 0.75, "r3": 0.25})
    assert raters["n"].to_dict() == {"r1": 4.0, "r2": 4.0, "r3": 4.0}
    # statsmodels: proportion_confint(3, 4, alpha=0.05, method="wilson") = (0.300642, 0.954413)
    lo, hi = raters.loc["r2", ["ci_low", "ci_high"]]
    assert (lo, hi) == pytest.approx((0.300642, 0.954413), abs=1e-6)
    groups = res.groups.set_index("rater_group")["value"].to_dict()
    assert groups == pytest.approx({"VendorA": 7 / 8, "internal": 1 / 4})
    (session,) = res.sessions.itertuples()
    assert session.calibration_score == pytest.approx(8 / 12)
    # Fleiss' kappa by hand: P_i = 1/3, 1/3, 1, 1/3 → P̄ = 0.5; category shares 4/12 spam,
    # 3/12 hate_speech, 5/12 none → P_e = 50/144; kappa = (0.5 - 50/144) / (1 - 50/144) = 11/47.
    assert session.fleiss_kappa == pytest.approx(11 / 47)
    # spam was rated none 3 times of its 6 ratings (r2 on c2, r3 on c1 and c2)
    top = res.confusions.iloc[0]
    assert (top.expected_label, top.label, int(top["count"])) == ("spam", "none", 3)
    assert top.share == pytest.approx(3 / 6)


# --------------------------------------------------------------------------- #
# readiness: the evidence text's numbers
# --------------------------------------------------------------------------- #
CALIBRATION_EVIDENCE = re.compile(
    r"score (?P<score>[\d.]+)% \(CI (?P<lo>[\d.]+)%-(?P<hi>[\d.]+)%\) on (?P<n>\d+) ratings "
    r"of (?P<cases>\d+) cases by (?P<raters>\d+) .*; (?P<sessions>\d+) session\(s\), "
    r"last (?P<last>[\d-]+);"
)


def test_readiness_calibration_evidence_is_the_data(small_data, ds):
    plan = load_launch_plan(PARAMS / "launches" / f"{DEMO_LAUNCH.plan}.yaml")
    checklist = readiness(ds, plan)
    text = checklist.loc[checklist["check"] == "calibration", "evidence"].item()
    got = CALIBRATION_EVIDENCE.search(text)
    assert got, text
    tz = load_parameters().market(plan.market).tz
    cal = pd.read_parquet(small_data / "calibration.parquet")
    cal["date"] = cal["held_at"].dt.tz_convert(tz).dt.date
    pols = list(plan.policies)
    first = plan.date - timedelta(days=plan.calibration_max_age_days)
    cal = cal[
        (cal["market"] == plan.market)
        & (cal["rater_group"] == plan.vendor)
        & cal["expected_label"].notna()
        & (cal["expected_label"].isin(pols) | cal["label"].isin(pols))
        & (cal["date"] >= first)
        & (cal["date"] < plan.date)
    ]
    n, k = len(cal), int((cal["label"] == cal["expected_label"]).sum())
    assert n > 0
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert got["score"] == f"{100 * k / n:.1f}"
    assert (got["lo"], got["hi"]) == (f"{100 * lo:.1f}", f"{100 * hi:.1f}")
    assert int(got["n"]) == n
    assert int(got["cases"]) == cal["case_id"].nunique()
    assert int(got["raters"]) == cal["rater_id"].nunique()
    assert int(got["sessions"]) == cal["session_id"].nunique()
    assert got["last"] == str(cal["date"].max())


# --------------------------------------------------------------------------- #
# findings, headline, report: what the notebooks print
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def sc_vendor(ds):
    return ql.scorecard(ds, MARKET, by=["vendor"], start=START, end=END)


def test_partner_agenda_findings_are_the_data(sc_vendor, audited):
    # A target no vendor meets: every vendor's accuracy becomes a "misses target" finding.
    sc = sc_vendor[sc_vendor["metric"] == "accuracy"].assign(
        target=0.999, status="red", p_adjusted=np.nan
    )
    agenda = partner_agenda(sc, top=50).set_index("vendor")
    raw = _accuracy(_in(audited, START, END), ["vendor"])
    assert sorted(agenda.index) == sorted(raw.index) and len(raw) >= 2
    np.testing.assert_allclose(agenda["value"], raw["accuracy"].reindex(agenda.index), rtol=1e-9)
    np.testing.assert_allclose(agenda["n"], raw["n"].reindex(agenda.index))
    impact = (0.999 - raw["accuracy"]) * raw["n"]
    np.testing.assert_allclose(agenda["impact"], impact.reindex(agenda.index), rtol=1e-9)
    assert list(agenda["impact"]) == sorted(agenda["impact"], reverse=True)
    for vendor, r in agenda.iterrows():
        acc, n = raw.loc[vendor, "accuracy"], int(raw.loc[vendor, "n"])
        assert f"accuracy is {100 * acc:.1f}% " in r.finding, r.finding
        assert r.finding.endswith(f"against a target of 99.9%, over {n:,} items"), r.finding


def test_headline_values_are_the_data(small_data, ds):
    (row,) = headline(ds, markets=[MARKET]).to_dict("records")
    first, last = (date.fromisoformat(d) for d in row["period"].split(" to "))
    dec = _decisions(small_data)
    assert last == dec["date"].max() and (last - first).days == 27
    assert row["volume"] == f"{len(_in(dec, first, last)):,}"
    acc = _accuracy(_in(_audited(small_data), first, last).assign(m=1), ["m"]).iloc[0]
    assert row["accuracy"].startswith(f"{100 * acc['accuracy']:.1f}% ["), row["accuracy"]


def _html_rows(html: str) -> list[list[str]]:
    """The text of each row's cells (markup inside a cell, e.g. a status badge, dropped)."""
    return [
        [re.sub(r"<[^>]+>", "", td).strip() for td in re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)]
        for tr in re.findall(r"<tr>(.*?)</tr>", html, re.S)
    ]


def test_kpi_table_shows_the_data(small_data, ds):
    sc = ql.scorecard(ds, MARKET, start=START, end=END)
    html = report.kpi_table(sc).data
    head = re.findall(r"<th>(.*?)</th>", html)
    rows = {r[head.index("metric")]: dict(zip(head, r, strict=True)) for r in _html_rows(html) if r}
    dec = _in(_decisions(small_data), START, END)
    prev = _in(_decisions(small_data), PREV_START, PREV_END)
    assert rows["volume"]["value"] == f"{len(dec):,}"
    assert rows["volume"]["prev_value"] == f"{len(prev):,}"
    assert rows["volume"]["delta"] == f"{len(dec) - len(prev):,}"
    raw = _in(_audited(small_data), START, END).assign(m=1)
    acc = _accuracy(raw, ["m"]).iloc[0]
    assert rows["accuracy"]["value"] == f"{100 * acc['accuracy']:.1f}%"
    assert rows["accuracy"]["n"] == f"{int(acc['n']):,}"
    assert rows["accuracy"]["target"] == "95.0%"


def test_rca_focus_periods_hand_worked(ds, monkeypatch):
    ctx = report.context(ds, MARKET)
    given = report.rca_focus(ctx, "accuracy", current_start="2026-11-10", current_end="2026-11-16")
    assert given.current == (date(2026, 11, 10), date(2026, 11, 16))
    assert given.baseline == (date(2026, 10, 13), date(2026, 11, 9))  # the 28 days before
    top = pd.DataFrame(
        {
            "metric": ["volume", "accuracy", "accuracy"],
            "dimension": ["market", "vendor", "vendor"],
            "segment": ["SG", "VendorB", "VendorA"],
            "direction": ["up", "down", "down"],
            "start_date": ["2026-11-01", "2026-11-05", "2026-11-12"],
            "end_date": ["2026-11-03", "2026-11-09", "2026-11-14"],
        }
    )
    monkeypatch.setattr(report, "alerts", lambda ctx, **kw: top)
    focus = report.rca_focus(ctx, "accuracy", baseline_days=14)
    assert focus.current == (date(2026, 11, 5), date(2026, 11, 9))  # first accuracy alert
    assert focus.baseline == (date(2026, 10, 22), date(2026, 11, 4))
    seg = report.rca_focus(ctx, "accuracy", segment="vendor:VendorA")
    assert seg.current == (date(2026, 11, 12), date(2026, 11, 14))
    assert seg.baseline == (date(2026, 10, 15), date(2026, 11, 11))
    monkeypatch.setattr(report, "alerts", lambda ctx, **kw: top.iloc[:0])
    none = report.rca_focus(ctx, "accuracy")
    assert none.current == (ctx.end - timedelta(days=6), ctx.end)


def test_control_series_observed_is_the_data(small_data, ds):
    ctx = report.context(ds, MARKET)
    alert = {
        "metric": "accuracy",
        "dimension": "vendor",
        "segment": "VendorA",
        "start_date": "2026-11-10",
        "end_date": "2026-11-12",
    }
    series = report.control_series(ctx, alert, baseline_days=14)
    first = date(2026, 10, 27)
    assert series["date"].iloc[0].date() == first and series["date"].iloc[-1].date() == ctx.end
    raw = _audited(small_data)
    raw = _in(raw[raw["vendor"] == "VendorA"], first, ctx.end)
    daily = _accuracy(raw, ["date"])["accuracy"]
    assert len(daily) >= 20
    got = series.assign(day=series["date"].dt.date).set_index("day")["observed"]
    np.testing.assert_allclose(got.reindex(daily.index), daily, rtol=1e-9)
    assert got.drop(daily.index).isna().all()


# --------------------------------------------------------------------------- #
# A notebook's numbers are the library's
# --------------------------------------------------------------------------- #
def test_scorecard_notebook_shows_the_library_scorecard(small_data, tmp_path_factory):
    import notebook_runs

    source = notebook_runs.NOTEBOOK_DIR / "01-vendor-scorecard.ipynb"
    run = notebook_runs.runs(small_data, tmp_path_factory).get(source, MARKET, hostile=False)
    assert run.error is None, run.error
    nb = run.notebook()
    (cell,) = [c for c in nb.cells if "report.kpi_table(sc)" in c.source]
    (html,) = [o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {})]
    head = re.findall(r"<th>(.*?)</th>", html)
    shown = {
        r[head.index("metric")]: dict(zip(head, r, strict=True)) for r in _html_rows(html) if r
    }

    ctx = report.context(str(small_data), MARKET)
    sc = ql.scorecard(ctx.ds, MARKET, start=ctx.start, end=ctx.end).set_index("metric")
    for metric in ("volume", "accuracy", "sla_compliance", "override_rate"):
        r = sc.loc[metric]
        value = f"{int(r.value):,}" if metric == "volume" else f"{100 * r.value:.1f}%"
        assert shown[metric]["value"] == value, (metric, shown[metric])
        assert shown[metric]["status"] == r.status, (metric, shown[metric])
        assert shown[metric]["n"] == f"{int(r.n):,}", (metric, shown[metric])
    assert shown["accuracy"]["p_adjusted"] == f"{sc.loc['accuracy', 'p_adjusted']:.3g}"


def _stratified_n_eff(j: pd.DataFrame) -> tuple[float, float]:
    """Weighted accuracy and its design effective n, by hand from the raw audits.

    Strata are the distinct weights (one audit rate per stratum); the variance is
    the stratified linearised one, sum_h n_h/(n_h - 1) sum_i (a_i - mean_h a)^2 / (sum w)^2
    with a_i = w_i (y_i - p) (Lohr, Sampling, 2nd ed., (9.5) and section 3.2), and the
    effective n is n * p(1 - p)/(n - 1) / var (Korn & Graubard 1998).
    """
    y, w = j["correct"].to_numpy(float), j["w"].to_numpy(float)
    p = (w * y).sum() / w.sum()
    a = pd.Series(w * (y - p))
    g = a.groupby(j["w"].to_numpy())
    n_h = g.transform("size")
    dev2 = (a - g.transform("mean")) ** 2 * n_h / (n_h - 1)
    var = dev2.where(n_h > 1, a**2).sum() / w.sum() ** 2
    n = len(j)
    return p, n * p * (1 - p) / (n - 1) / var


def test_scorecard_change_of_a_weighted_rate_uses_the_design_effective_n(sc_vendor, audited):
    prev = _in(audited, PREV_START, PREV_END)
    cur = _in(audited, START, END)
    acc = sc_vendor[sc_vendor["metric"] == "accuracy"]
    assert len(acc) >= 2
    for r in acc.itertuples():
        p1, n1 = _stratified_n_eff(cur[cur["vendor"] == r.vendor])
        p2, n2 = _stratified_n_eff(prev[prev["vendor"] == r.vendor])
        assert (r.value, r.prev_value) == pytest.approx((p1, p2), rel=1e-9)
        # statsmodels: the pooled z-test at the effective counts p * n_eff
        _, expected = proportions_ztest([p1 * n1, p2 * n2], [n1, n2])
        assert r.p_value == pytest.approx(expected, rel=1e-4), r.vendor


# --------------------------------------------------------------------------- #
# readiness: staffing, QA sampling, reporting and languages, from the raw tables
# --------------------------------------------------------------------------- #
STAFFING_EVIDENCE = re.compile(
    r"peak hour (?P<hour>\d\d):00 carries (?P<share>[\d.]+)% of SG decisions, so "
    r"(?P<volume>[\d,]+)/day x [\d.]+% x (?P<human>\d+)% handled by people = "
    r"(?P<rate>[\d.]+) items/h; handle time (?P<aht>\d+) s \(.*\); [^:]*: "
    r"(?P<agents>\d+) agents for (?P<level>\d+)% within (?P<sla>\d+) s; staffed "
    r"(?P<staffed>[\d.]+) productive agents at peak on the weakest day (?P<day>[\d-]+) "
    r"\((?P<productive>[\d.]+) productive h x [\d.]+%; roster of \w+ at [\w-]+, "
    r"(?P<scheduled>[\d,]+) scheduled h in the go-live week\)$"
)
QA_EVIDENCE = re.compile(
    r"need (?P<need>\d+) audits/week for accuracy within ±(?P<margin>\d+)% at (?P<cl>\d+)% "
    r"\(anticipated (?P<p>\d+)%, (?P<weekly>[\d,]+) items/week\); have (?P<have>\d+)/week "
    r"from \w+'s recent internal audits \((?P<count>\d+) of decisions made "
    r"(?P<first>[\d-]+)\.\.(?P<last>[\d-]+)\)$"
)


def _yaml_parameters() -> dict:
    """SG's parameters read from the YAML files themselves: defaults, then SG's overrides."""
    import yaml

    raw = yaml.safe_load((PARAMS / "defaults.yaml").read_text(encoding="utf-8"))
    sg = yaml.safe_load((PARAMS / "markets" / f"{MARKET}.yaml").read_text(encoding="utf-8"))
    for key, value in sg.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    if "accuracy_target" in sg:
        raw["targets"] = {**raw["targets"], "accuracy": sg["accuracy_target"]}
    return raw


def _erlang_c_agents(rate: float, aht: float, sla: float, level: float) -> int:
    """Fewest agents c with 1 - C(c, a) exp(-(c - a) sla / aht) >= level, a = rate * aht.

    Erlang C from its closed form with factorials (not the Erlang B recursion):
    C(c, a) = a^c/c! * c/(c - a) / (sum_{k<c} a^k/k! + a^c/c! * c/(c - a)).
    """
    a = rate * aht / 3600.0
    c = math.floor(a) + 1
    while True:
        top = a**c / math.factorial(c) * c / (c - a)
        wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
        if 1 - wait * math.exp(-(c - a) * sla / aht) >= level:
            return c
        c += 1


@pytest.fixture(scope="module")
def launch_plan():
    return load_launch_plan(PARAMS / "launches" / f"{DEMO_LAUNCH.plan}.yaml")


def _evidence(checklist: pd.DataFrame, check: str) -> str:
    return checklist.loc[checklist["check"] == check, "evidence"].item()


def _staffing_by_hand(folder: Path, plan) -> dict:
    """The staffing check's numbers from the raw decisions and staffing tables."""
    params = _yaml_parameters()
    dec = _decisions(folder)
    last = dec["date"].max()  # the last market-local day with decisions
    win = _in(dec, last - timedelta(days=27), last)
    hours = win["created_at"].dt.tz_convert(TZ).dt.hour.value_counts()
    hour = int(hours[hours == hours.max()].index.min())
    share = hours.max() / len(win)
    prefix = plan.queue.split("_")[0] + "_"
    similar = [q for q in win["queue"].unique() if q.startswith(prefix) and q != plan.queue]
    mine = win[(win["vendor"] == plan.vendor) & win["queue"].isin(similar)]
    human = mine["routing"] != "ai_auto"
    human_share = human.mean()
    decided = mine[human & mine["decided_at"].notna()].groupby("queue").size()
    aht = sum(params["aht_seconds"][q] * k for q, k in decided.items()) / decided.sum()
    rate = plan.expected_volume * share * human_share
    level = params["targets"]["sla_compliance"]
    agents = _erlang_c_agents(rate, aht, plan.sla_seconds, level)
    st = pd.read_parquet(folder / "staffing.parquet")
    st["date"] = pd.to_datetime(st["date"]).dt.date
    week = [plan.date + timedelta(days=i) for i in range(7)]
    roster = st[
        (st["market"] == plan.market)
        & (st["vendor"] == plan.vendor)
        & (st["site"] == plan.site)
        & (st["queue"] == plan.queue)
        & st["date"].isin(week)
    ]
    daily = roster.groupby("date")[["scheduled_hours", "productive_hours"]].sum()
    daily = daily.reindex(week, fill_value=0.0)
    assert (daily["productive_hours"] > 0).all()  # no day falls back to the site's ratio
    weakest = daily["productive_hours"].idxmin()
    return {
        "hour": hour,
        "share": share,
        "human_share": human_share,
        "rate": rate,
        "aht": aht,
        "agents": agents,
        "level": level,
        "staffed": daily.loc[weakest, "productive_hours"] * share,
        "day": weakest,
        "productive": daily.loc[weakest, "productive_hours"],
        "scheduled": daily["scheduled_hours"].sum(),
    }


@pytest.mark.parametrize("volume", [500.0, 20_000.0])
def test_readiness_staffing_evidence_is_the_data(small_data, ds, launch_plan, volume):
    # 500/day is the demo plan (1 agent needed, pass); 20,000/day needs tens of agents
    # (fail), so the Erlang C count and the arrival rate carry more digits.
    plan = launch_plan.model_copy(update={"expected_volume": volume})
    checklist = readiness(ds, plan)
    text = _evidence(checklist, "staffing")
    got = STAFFING_EVIDENCE.search(text)
    assert got, text
    exp = _staffing_by_hand(small_data, plan)
    assert int(got["hour"]) == exp["hour"]
    assert got["share"] == f"{100 * exp['share']:.1f}"
    assert got["human"] == f"{100 * exp['human_share']:.0f}"
    assert got["rate"] == f"{exp['rate']:.1f}", (text, exp)
    assert got["aht"] == f"{exp['aht']:.0f}"
    assert int(got["agents"]) == exp["agents"], (text, exp)
    assert got["level"] == f"{100 * exp['level']:.0f}"
    assert got["staffed"] == f"{exp['staffed']:.1f}"
    assert got["day"] == str(exp["day"])
    assert got["productive"] == f"{exp['productive']:.1f}"
    assert got["scheduled"] == f"{exp['scheduled']:,.0f}"
    status = checklist.loc[checklist["check"] == "staffing", "status"].item()
    assert status == ("pass" if exp["staffed"] >= exp["agents"] else "fail")
    assert status == ("pass" if volume == 500.0 else "fail")


def test_readiness_qa_sampling_evidence_is_the_data(small_data, ds, launch_plan):
    text = _evidence(readiness(ds, launch_plan), "qa_sampling")
    got = QA_EVIDENCE.search(text)
    assert got, text
    # Cochran (1977) 4.1-4.2 by hand: n0 = z^2 p (1 - p) / e^2, n = n0 / (1 + (n0 - 1) / N)
    p = _yaml_parameters()["targets"]["accuracy"]
    z = norm.ppf(0.975)
    n0 = z**2 * p * (1 - p) / launch_plan.qa_margin**2
    weekly = 7 * launch_plan.expected_volume
    assert int(got["need"]) == math.ceil(n0 / (1 + (n0 - 1) / weekly)) == 72
    assert got["weekly"] == f"{weekly:,.0f}" and got["p"] == f"{100 * p:.0f}"
    # pandas: internal audits of the vendor's decisions made in the four weeks that end
    # a week before the last day with decisions
    last = _decisions(small_data)["date"].max() - timedelta(days=7)
    first = last - timedelta(days=27)
    assert (got["first"], got["last"]) == (str(first), str(last))
    j = _in(_audited(small_data), first, last)
    count = int((j["vendor"] == launch_plan.vendor).sum())
    assert int(got["count"]) == count
    assert got["have"] == f"{count * 7 / 28:.0f}"


def test_readiness_reporting_evidence_is_the_data(small_data, ds, launch_plan):
    text = _evidence(readiness(ds, launch_plan), "reporting")
    got = re.fullmatch(
        r"(?P<vendor>\w+) reported in SG since (?P<since>[\d-]+): (?P<have>.*?)"
        r"(?:; not reported: (?P<missing>.*))?",
        text,
    )
    assert got, text
    since = _decisions(small_data)["date"].max() - timedelta(days=34)  # five weeks
    assert got["since"] == str(since)
    rep = pd.read_parquet(small_data / "vendor_reported.parquet")
    rep["week"] = pd.to_datetime(rep["week_start"]).dt.date
    rep = rep[(rep["market"] == MARKET) & (rep["vendor"] == launch_plan.vendor)]
    weeks = rep[rep["week"] >= since].groupby("metric")["week"].nunique()
    shown = {k: int(n) for k, n in re.findall(r"(\w+) \((\d+) wk\)", got["have"])}
    assert shown == {k: int(weeks[k]) for k in launch_plan.kpis if k in weeks.index}
    assert shown == {"accuracy": 5, "sla_compliance": 5, "volume": 5}
    missing = [k for k in launch_plan.kpis if k not in weeks.index]
    assert (got["missing"] or "").split(", ") == missing == ["escalation_rate"]


def test_readiness_languages_evidence_is_the_data(small_data, ds, launch_plan):
    text = _evidence(readiness(ds, launch_plan), "languages")
    dec = _decisions(small_data)
    last = dec["date"].max()
    dec = _in(dec, last - timedelta(days=27), last)
    dec = dec[
        (dec["vendor"] == launch_plan.vendor)
        & (dec["site"] == launch_plan.site)
        & (dec["routing"] != "ai_auto")
    ]
    counts = dec["language"].value_counts()
    shown = ", ".join(f"{lang} {int(counts.get(lang, 0)):,}" for lang in launch_plan.languages)
    assert f"{last - timedelta(days=27)}..{last}: {shown} (need at least 30 each)" in text, text


# --------------------------------------------------------------------------- #
# report.control_series: the p-chart's centre line and limits
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    ("weights", "dimension", "segment"),
    [("equal", "vendor", "VendorA"), ("demo", "vendor", "VendorA"), ("demo", "market", "SG")],
)
def test_control_series_limits_are_the_p_chart_of_the_data(
    small_data, equal_weights, weights, dimension, segment
):
    # The documented chart (detect.p_chart): reference = the baseline days before the
    # alert, p̄ = (Σk + 0.5) / (Σn + 1) over them with k = rate x n, limits
    # p̄ ± 3 sqrt(p̄ (1 - p̄) / n_t) for each day's n_t; Laney's p′ only when the
    # reference is overdispersed, reference points outside the limits dropped.
    folder = equal_weights if weights == "equal" else small_data
    ctx = report.context(open_dataset(folder), MARKET)
    alert = {
        "metric": "accuracy",
        "dimension": dimension,
        "segment": segment,
        "start_date": "2026-11-10",
        "end_date": "2026-11-12",
    }
    series = report.control_series(ctx, alert, baseline_days=14)
    first, a_start = date(2026, 10, 27), date(2026, 11, 10)
    raw = _audited(folder)
    if dimension == "vendor":
        raw = raw[raw["vendor"] == segment]
    daily = _accuracy(_in(raw, first, ctx.end), ["date"])
    days = [first + timedelta(days=i) for i in range((ctx.end - first).days + 1)]
    daily = daily.reindex(days)
    n_t = daily["n"].to_numpy(float)
    k_t = (daily["accuracy"] * daily["n"]).to_numpy(float)
    if weights == "equal":  # plain counts: k is the number of correct audits
        np.testing.assert_allclose(k_t, daily["k"].to_numpy(float), equal_nan=True)
    ref = np.array([d < a_start for d in days]) & np.isfinite(n_t)
    p_bar = (np.nansum(k_t[ref]) + 0.5) / (np.nansum(n_t[ref]) + 1.0)
    se = np.sqrt(p_bar * (1 - p_bar) / n_t)
    z = (daily["accuracy"].to_numpy(float) - p_bar) / se
    # This series is the plain binomial case: the reference is not overdispersed
    # (chi-square of its z-scores) and no reference day lies outside the limits.
    assert stats.chi2.sf(np.sum(z[ref] ** 2), ref.sum() - 1) >= 0.05
    assert (np.abs(z[ref]) <= 3).all()

    got = series.assign(day=series["date"].dt.date).set_index("day")
    assert list(got.index) == days
    assert series.attrs["laney"] is False
    np.testing.assert_allclose(got["expected"], p_bar, rtol=1e-12)
    np.testing.assert_allclose(got["n"].fillna(0), np.nan_to_num(n_t))
    ok = np.isfinite(n_t)
    lower = np.clip(p_bar - 3 * se, 0, 1)
    upper = np.clip(p_bar + 3 * se, 0, 1)
    np.testing.assert_allclose(got["lower"].to_numpy(float)[ok], lower[ok], rtol=1e-10)
    np.testing.assert_allclose(got["upper"].to_numpy(float)[ok], upper[ok], rtol=1e-10)
    np.testing.assert_allclose(got["statistic"].to_numpy(float)[ok], z[ok], rtol=1e-9)
    monitored = ~np.array([d < a_start for d in days])
    assert list(got["flag"]) == list(ok & monitored & (np.abs(np.nan_to_num(z)) > 3))


# --------------------------------------------------------------------------- #
# A design-weighted rate whose every stratum is pure: the interval must not collapse
# --------------------------------------------------------------------------- #
def test_pure_strata_interval_is_not_a_point(ds, audited):
    # every stratum of the segment holds two or more audits, all correct or all wrong (a
    # stratum of one audit is "lonely" and adds its squared deviation by design)
    strata = audited.groupby(["vendor", "date", "w"])["correct"].agg(["nunique", "size"])
    pure = ((strata["nunique"] == 1) & (strata["size"] >= 2)).groupby(["vendor", "date"]).all()
    rate = audited.groupby(["vendor", "date"])["correct"].mean()
    cases = pure[pure & (rate > 0.05) & (rate < 0.95)].index
    assert len(cases) >= 3
    frame = ql.metrics.qa_metrics(ds, market=MARKET, by=["vendor", "date"])
    acc = frame[frame["metric"] == "accuracy"]
    acc = acc.assign(date=pd.to_datetime(acc["date"]).dt.date).set_index(["vendor", "date"])
    wrong = []
    for key in cases:
        r = acc.loc[key]
        assert r["n"] <= 20  # a day's audits of one vendor
        # Under 20 audits with a rate between 5% and 95% cannot be known to within ±2.5
        # points at 95% (Clopper-Pearson at n is 0.25-0.5 wide; Wilson at even 3n > 0.15).
        ends = [r["ci_low"], r["ci_high"]]
        if not (np.isfinite(ends).all() and r["ci_high"] - r["ci_low"] > 0.05):
            wrong.append((*key, r["value"], r["n"], r["ci_low"], r["ci_high"]))
    assert not wrong, wrong


@pytest.mark.parametrize(
    "pure_events",
    [None, 0.0],
    ids=["default", "floor-off"],
)
@pytest.mark.parametrize(
    ("weights", "sizes", "correct"),
    [
        # VendorA's audits of 2026-10-28 in the demo data: 3 wrong at weight 1.6667,
        # 2 right at 2.7036, 12 right at 4.0554 → p = (5.4072 + 48.6648) / 59.0721 = 0.915356
        ((1.6667, 2.7036, 4.0554), (3, 2, 12), (0, 1, 1)),
        # equal weights in three pure strata: 15 of 18
        ((1.0, 1.0, 1.0), (3, 3, 12), (0, 1, 1)),
    ],
)
def test_stratified_proportion_of_pure_strata_hand_worked(weights, sizes, correct, pure_events):
    from qualitylab.stats import stratified_proportion

    w, n, y = (np.asarray(v, float) for v in (weights, sizes, correct))
    kw = {} if pure_events is None else {"pure_events": pure_events}
    res = stratified_proportion(w * n * y, w * n, w * w * n, w * w * n * y, n=n, **kw)
    p = (w * n * y).sum() / (w * n).sum()
    assert res.estimate[0] == pytest.approx(p)
    # Each a_i = w_i (y_i - p) equals its stratum's mean, so the textbook stratified
    # variance is exactly 0: n* must be a sample size (n = 17 or 18 without the floor,
    # not ~1e16), and the interval a real one around p.
    assert res.n_eff[0] < 10 * n.sum()
    lo, hi = res.ci_low[0], res.ci_high[0]
    assert np.isfinite([lo, hi]).all() and lo < p < hi and hi - lo > 0.05
    if pure_events == 0.0:
        # the floor off: variance exactly 0, so n* = n (the docstring's rule) and the
        # interval is Wilson's at n (statsmodels)
        assert res.se[0] == 0.0
        assert res.n_eff[0] == n.sum()
        lo_sm, hi_sm = proportion_confint(p * n.sum(), n.sum(), alpha=0.05, method="wilson")
        assert (lo, hi) == pytest.approx((lo_sm, hi_sm), abs=1e-12)
