"""Root-cause analysis of every rate metric, and the breakdown that fits each alert.

Issue #16, section 5: ``rca`` accepts the AI metrics, QA alignment, escalations
and red-team recall, each with the numerator and denominator of the function
that computes it (its rates and change are checked against those functions on
the small demo data: seed 7, 56 days ending 2026-11-22); :func:`rca.explain_alert`
breaks down non-rate alerts (volume, backlog, response percentiles) on
constructed data where the answer is known.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qualitylab import ParameterError, QualityLabError, rca, report
from qualitylab.aieval import ai_metrics
from qualitylab.escalations import escalation_rate
from qualitylab.metrics import qa_alignment
from qualitylab.redteam import red_team_evaluation
from qualitylab.sources import open_dataset
from tests.conftest import tiny_tables, write_tables

BASELINE = ("2026-10-05", "2026-11-01")
CURRENT = ("2026-11-02", "2026-11-22")
TOL = 1e-12


@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


def _value(frame: pd.DataFrame, metric: str, **where: str) -> float:
    rows = frame[frame["metric"] == metric]
    for col, val in where.items():
        rows = rows[rows[col].astype(str) == val]
    return float(rows["value"].item())


def _assert_exact(res: rca.DecompositionResult) -> None:
    seg = res.segments
    np.testing.assert_allclose(seg["mix_effect"] + seg["rate_effect"], seg["contribution"])
    for dim, g in seg.groupby("dimension"):
        assert abs(g["contribution"].sum() - res.estimate) < TOL, dim


# --------------------------------------------------------------------------- #
# every rate metric, against the function that computes it
# --------------------------------------------------------------------------- #
# Reference values: qualitylab.aieval.ai_metrics(ds, market="SG", start=..., end=...)
# on the small demo data (design-weighted; truth = QA enforcement, threshold 0.5).
AI_SG = {
    "ai_recall": (0.777016852088982, 0.6886923688927346),
    "ai_precision": (0.8580735699778048, 0.8118568803544882),
    "ai_fpr": (0.020872002568703262, 0.02318325968428775),
    "ai_fnr": (0.22298314791101825, 0.31130763110726545),
}


@pytest.mark.parametrize("metric", sorted(AI_SG))
def test_ai_metrics_decompose_to_the_change_ai_metrics_measures(ds, metric):
    res = rca.decompose(ds, metric, "SG", current=CURRENT, baseline=BASELINE)
    assert res.dimensions == rca.METRIC_DIMENSIONS[metric]  # content dimensions
    assert res.weighted  # the demo QA sample is stratified
    _assert_exact(res)
    before = ai_metrics(ds, market="SG", start=BASELINE[0], end=BASELINE[1], f1_interval=False)
    after = ai_metrics(ds, market="SG", start=CURRENT[0], end=CURRENT[1], f1_interval=False)
    assert res.rate_base == pytest.approx(_value(before, metric), abs=TOL)
    assert res.rate_cur == pytest.approx(_value(after, metric), abs=TOL)
    assert res.estimate == pytest.approx(_value(after, metric) - _value(before, metric), abs=TOL)
    assert (res.rate_base, res.rate_cur) == pytest.approx(AI_SG[metric], abs=1e-12)


def test_ai_recall_within_a_language_is_the_language_row_of_ai_metrics(ds):
    res = rca.decompose(
        ds, "ai_recall", "SG", current=CURRENT, baseline=BASELINE, where={"language": "ms"}
    )
    assert "language" not in res.dimensions and res.where == {"language": ("ms",)}
    _assert_exact(res)
    by = {"by": ["language"], "f1_interval": False}
    before = ai_metrics(ds, market="SG", start=BASELINE[0], end=BASELINE[1], **by)
    after = ai_metrics(ds, market="SG", start=CURRENT[0], end=CURRENT[1], **by)
    assert res.rate_base == pytest.approx(_value(before, "ai_recall", language="ms"), abs=TOL)
    assert res.rate_cur == pytest.approx(_value(after, "ai_recall", language="ms"), abs=TOL)
    # the planted regression: mod-v4 misses far more 'ms' content
    assert res.estimate < -0.2 and res.pvalue < 0.001
    assert "for language ms" in rca.summarize(res)


@pytest.mark.parametrize("market", ["SG", "ID"])
def test_qa_alignment_decomposes_to_the_change_qa_alignment_measures(ds, market):
    res = rca.decompose(ds, "qa_alignment", market, current=CURRENT, baseline=BASELINE)
    assert res.weighted  # the internal audits' design weights, as metrics.qa_alignment
    _assert_exact(res)
    before = qa_alignment(ds, market=market, start=BASELINE[0], end=BASELINE[1])
    after = qa_alignment(ds, market=market, start=CURRENT[0], end=CURRENT[1])
    assert res.rate_base == pytest.approx(_value(before, "qa_alignment"), abs=TOL)
    assert res.rate_cur == pytest.approx(_value(after, "qa_alignment"), abs=TOL)
    assert (res.n_base, res.n_cur) == (
        int(before.loc[before.metric == "qa_alignment", "n"].item()),
        int(after.loc[after.metric == "qa_alignment", "n"].item()),
    )
    if market == "SG":  # 240 -> 188 double-audited decisions (the rates are weighted by
        # the internal audit's sample_weight; test_metrics checks those against pandas)
        assert (res.n_base, res.n_cur) == (240, 188)


@pytest.mark.parametrize("market", ["SG", "ID"])
def test_escalation_rate_decomposes_per_decision(ds, market):
    res = rca.decompose(ds, "escalation_rate", market, current=CURRENT, baseline=BASELINE)
    assert res.dimensions == ("vendor", "queue")
    _assert_exact(res)
    before = escalation_rate(ds, market=market, start=BASELINE[0], end=BASELINE[1])
    after = escalation_rate(ds, market=market, start=CURRENT[0], end=CURRENT[1])
    # escalation_rate reports per 1,000 decisions; rca per decision
    assert 1000 * res.rate_base == pytest.approx(_value(before, "escalation_rate"), rel=1e-12)
    assert 1000 * res.rate_cur == pytest.approx(_value(after, "escalation_rate"), rel=1e-12)
    assert res.n_base == before["n"].item() and res.n_cur == after["n"].item()
    if market == "SG":  # escalation_rate: 5 per 3,760 decisions, then 4 per 3,296
        assert (res.rate_base, res.rate_cur) == pytest.approx((5 / 3760, 4 / 3296), rel=1e-12)
        assert "per 1,000" in rca.summarize(res)
    with pytest.raises(ParameterError, match="unknown dimension 'site' for metric"):
        rca.decompose(ds, "escalation_rate", market, CURRENT, BASELINE, dimensions=["site"])


def test_red_team_recall_decomposes_to_red_team_evaluation(ds):
    res = rca.decompose(ds, "red_team_recall", "ID", current=CURRENT, baseline=BASELINE)
    _assert_exact(res)
    for period, rate in ((BASELINE, res.rate_base), (CURRENT, res.rate_cur)):
        rec = red_team_evaluation(ds, market="ID", start=period[0], end=period[1]).recall
        assert rate == pytest.approx(rec["hits"].sum() / rec["n"].sum(), abs=TOL)
    # the planted evasion: code_switching explains the drop
    assert rca.adtributor(res).top_segment == "code_switching"


def test_every_rate_metric_is_accepted_by_every_entry_point(ds):
    assert set(rca.RCA_METRICS) >= {
        "ai_recall",
        "ai_precision",
        "ai_fpr",
        "qa_alignment",
        "escalation_rate",
    }
    for metric in ("ai_recall", "qa_alignment", "escalation_rate"):
        unit = "vendor" if metric == "escalation_rate" else "site"
        res = rca.decompose(ds, metric, "ID", current=CURRENT, baseline=BASELINE)
        rank = rca.adtributor(res)
        if len(res.dimensions) > 1:
            pairs = rca.drill_down(ds, res, ranking=rank)
            for _, g in pairs.groupby(["dimension_a", "dimension_b"]):
                assert g["contribution"].sum() == pytest.approx(res.estimate, abs=1e-9)
        funnel = rca.outlier_units(ds, metric, "ID", unit=unit, start=CURRENT[0], end=CURRENT[1])
        assert len(funnel.units) > 0 and funnel.metric == metric
        impact = rca.event_impact(ds, metric, "ID", "2026-11-09", window_days=7)
        assert impact.n_before > 0 and impact.metric == metric
        assert rca.summarize(res, rank)


# --------------------------------------------------------------------------- #
# explain_alert on constructed data
# --------------------------------------------------------------------------- #
HOSTILE = '<img src=x onerror=alert("q")>'
BASE_DAYS = pd.date_range("2026-03-02", "2026-03-29")  # 28 days
WINDOW = pd.date_range("2026-03-30", "2026-04-01")  # 3 days
ALERT = {"market": "SG", "start_date": "2026-03-30", "end_date": "2026-04-01"}


def _decisions(folder, rows) -> object:
    """A decisions-only dataset in SG from ``(day, count, site, queue, seconds, pending)`` rows.

    Each row is ``count`` decisions created at 02:00 UTC (10:00 in SG) on ``day``,
    answered after ``seconds`` (spread +-10% evenly), or never when ``pending``.
    """
    base = tiny_tables()["decisions"].iloc[0].to_dict()
    out = []
    for day, count, site, queue, seconds, pending in rows:
        for j in range(count):
            created = pd.Timestamp(f"{day:%Y-%m-%d} 02:00", tz="UTC") + pd.Timedelta(seconds=j)
            spread = seconds * (0.9 + 0.2 * j / max(count - 1, 1))
            row = dict(base)
            row.update(
                decision_id=f"d{len(out)}",
                created_at=created,
                decided_at=pd.NaT if pending else created + pd.Timedelta(seconds=spread),
                market="SG",
                vendor="VendorA",
                site=site,
                queue=queue,
                moderator_id=f"m{j % 4}",
                action=None if pending else "no_action",
                policy=None if pending else "none",
            )
            out.append(row)
    frame = pd.DataFrame(out)
    frame["decided_at"] = pd.to_datetime(frame["decided_at"], utc=True)
    return open_dataset(write_tables(folder, {"decisions": frame}))


def test_explain_volume_names_the_site_that_grew(tmp_path):
    # 20 a day, split evenly between two sites and two queues; in the window the
    # hostile-named site quadruples (10 -> 40 a day) in both queues alike.
    rows = []
    for day in BASE_DAYS:
        for site in ("S1", HOSTILE):
            rows += [(day, 5, site, q, 60, False) for q in ("live_stream", "live_comment")]
    for day in WINDOW:
        rows += [(day, 5, "S1", q, 60, False) for q in ("live_stream", "live_comment")]
        rows += [(day, 20, HOSTILE, q, 60, False) for q in ("live_stream", "live_comment")]
    ds = _decisions(tmp_path / "volume", rows)
    exp = rca.explain_alert(
        ds, {**ALERT, "metric": "volume", "dimension": "market", "segment": "SG"}
    )
    assert exp.kind == "count"
    assert (exp.value_base, exp.value_cur) == pytest.approx((20.0, 50.0))
    assert (exp.top_dimension, exp.top_segment) == ("site", HOSTILE)
    assert exp.baseline.start.isoformat() == "2026-03-02"  # the 28 days before the window
    t = exp.table.set_index("segment")
    assert list(exp.table.columns) == rca.EXPLANATION_COLUMNS
    assert t.loc[HOSTILE, ["value_base", "value_cur", "change"]].tolist() == pytest.approx(
        [10.0, 40.0, 30.0]
    )
    assert (t.loc[HOSTILE, "n_base"], t.loc[HOSTILE, "n_cur"]) == (280, 120)
    assert t["contribution"].sum() == pytest.approx(exp.change)  # additive
    assert t.loc[HOSTILE, "share_of_change"] == pytest.approx(1.0)
    # the queues grew in proportion to their volume: that concentrates nowhere
    dims = exp.dimensions.set_index("dimension")
    assert not dims.loc["queue", "concentrated"] and dims.loc["site", "concentrated"]
    assert HOSTILE in exp.sentence and "rose from 20.0 to 50.0 a day" in exp.sentence
    # hostile segment names stay inert in what notebooks show
    for html_text in (
        report.finding("SG-1", exp.sentence)._repr_mimebundle_()["text/html"],
        report.explanation_table(exp).data,
        report.say("{s}", s=exp.summary).data,
    ):
        assert "<img" not in html_text and "&lt;img src=x onerror=alert(" in html_text


def test_explain_a_percentile_alert_by_queue(tmp_path):
    # Both queues answer in ~100 s; in the window live_stream takes ~1,000 s.
    rows = []
    for day in BASE_DAYS:
        rows += [
            (day, 20, s, q, 100, False)
            for s in ("S1", "S2")
            for q in ("live_stream", "live_comment")
        ]
    for day in WINDOW:
        rows += [(day, 20, s, "live_stream", 1000, False) for s in ("S1", "S2")]
        rows += [(day, 20, s, "live_comment", 100, False) for s in ("S1", "S2")]
    ds = _decisions(tmp_path / "p90", rows)
    alert = {**ALERT, "metric": "response_p90", "dimension": "market", "segment": "SG"}
    exp = rca.explain_alert(ds, alert)
    assert exp.kind == "percentile"
    # p90 of 90..110 s, then of half 90..110 s and half 900..1,100 s (5% histogram bins)
    assert exp.value_base == pytest.approx(108, rel=0.06)
    assert exp.value_cur == pytest.approx(1080, rel=0.06)
    assert (exp.top_dimension, exp.top_segment) == ("queue", "live_stream")
    t = exp.table.set_index("segment")
    assert t.loc["live_stream", "value_cur"] == pytest.approx(1080, rel=0.06)
    assert t.loc["live_comment", "value_cur"] == pytest.approx(108, rel=0.06)
    assert t.loc["live_stream", "value_base"] == pytest.approx(108, rel=0.06)
    # every live_stream item of the window is slower than the baseline's p90: all of the rise
    assert t.loc["live_stream", "share_of_change"] == pytest.approx(1.0, abs=0.02)
    assert (t.loc["live_stream", "n_base"], t.loc["live_stream", "n_cur"]) == (1120, 120)
    assert not exp.dimensions.set_index("dimension").loc["site", "concentrated"]
    assert "by queue, live_stream explains" in exp.sentence


def test_explain_backlog_counts_open_items_by_queue(tmp_path):
    rows = [(day, 10, "S1", "live_stream", 60, False) for day in (*BASE_DAYS, *WINDOW)]
    rows += [(WINDOW[-1], 7, "S1", "live_report", 60, True)]  # pending at the window's end
    rows += [(WINDOW[-1], 1, "S1", "live_stream", 60, True)]
    ds = _decisions(tmp_path / "backlog", rows)
    exp = rca.explain_alert(
        ds, {**ALERT, "metric": "backlog", "dimension": "market", "segment": "SG"}
    )
    assert exp.kind == "backlog" and (exp.value_base, exp.value_cur) == (0.0, 8.0)
    assert (exp.top_dimension, exp.top_segment) == ("queue", "live_report")
    assert exp.table.set_index("segment").loc["live_report", "value_cur"] == 7


def test_explain_a_rate_alert_within_its_segment(ds):
    alert = {
        "market": "ID",
        "metric": "accuracy",
        "dimension": "vendor",
        "segment": "VendorC",
        "start_date": "2026-11-03",
        "end_date": "2026-11-12",
    }
    exp = rca.explain_alert(ds, pd.Series(alert))
    res = rca.decompose(
        ds,
        "accuracy",
        "ID",
        current=("2026-11-03", "2026-11-12"),
        baseline=("2026-10-06", "2026-11-02"),
        where={"vendor": "VendorC"},
    )
    assert exp.kind == "rate" and exp.result.where == {"vendor": ("VendorC",)}
    assert "vendor" not in exp.result.dimensions
    assert (exp.value_base, exp.value_cur) == pytest.approx((res.rate_base, res.rate_cur), abs=TOL)
    assert exp.change < -0.1  # the planted drop of ~10 pp
    assert exp.sentence.startswith("Accuracy in ID for vendor VendorC fell 13.2 pp")
    assert exp.top_segment is not None and exp.top_segment in exp.sentence


def test_explain_ai_recall_names_the_new_model(ds):
    alert = {
        "market": "SG",
        "metric": "ai_recall",
        "dimension": "language",
        "segment": "ms",
        "start_date": "2026-10-27",
        "end_date": "2026-11-21",
    }
    exp = rca.explain_alert(ds, alert)
    assert (exp.top_dimension, exp.top_segment) == ("ai_model", "mod-v4")
    assert "mod-v4 explains" in exp.sentence and "new in the current period" in exp.sentence


def test_explain_escalations_in_the_metric_units(ds):
    alert = {**ALERT, "market": "ID", "metric": "escalation_rate", "dimension": "market"}
    alert.update(segment="ID", start_date=CURRENT[0], end_date=CURRENT[1])
    alert.update(baseline_start=BASELINE[0], baseline_end=BASELINE[1])
    exp = rca.explain_alert(ds, alert)
    after = escalation_rate(ds, market="ID", start=CURRENT[0], end=CURRENT[1])
    assert exp.value_cur == pytest.approx(_value(after, "escalation_rate"), rel=1e-12)
    assert exp.table["contribution"].sum() == pytest.approx(exp.change, rel=1e-9)


def test_explain_alert_refuses_what_it_cannot_break_down(ds):
    alert = {**ALERT, "metric": "capacity_gap", "dimension": "queue", "segment": "live_stream"}
    with pytest.raises(QualityLabError, match="no breakdown for metric 'capacity_gap'"):
        rca.explain_alert(ds, alert)
    with pytest.raises(ParameterError, match="the alert has no 'segment'"):
        rca.explain_alert(ds, {k: v for k, v in alert.items() if k != "segment"})
    with pytest.raises(QualityLabError, match="cannot break red_team_recall down within vendor"):
        rca.explain_alert(ds, {**alert, "metric": "red_team_recall", "dimension": "vendor"})
    with pytest.raises(ParameterError, match="max_segments"):
        rca.explain_alert(ds, alert, max_segments=0)
