"""Deep dives aimed at what was found (issue #16, section 5).

The choice of alerts notebook 03 explains (:func:`report.alerts_to_explain`),
the sentence each deep dive leaves for the hub (:func:`report.finding`,
:func:`report.notebook_findings`), the incidents and labelling of notebook 02,
and notebook 03 executed on market caches like a scheduled run's: without the
alert store's columns, with them, and with no alert at all.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import duckdb
import nbformat
import pandas as pd
import papermill
import pytest

from qualitylab import ParameterError, report
from tests.conftest import PARAMS

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
RCA_NOTEBOOK = NOTEBOOKS / "03-rca-deep-dive.ipynb"
TRENDS_NOTEBOOK = NOTEBOOKS / "02-trend-detection.ipynb"
HOSTILE = "<script>alert('seg')</script>"


def _alerts(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {
        "market": ["SG"] * n,
        "metric": ["accuracy"] * n,
        "dimension": ["vendor"] * n,
        "segment": [f"V{i}" for i in range(n)],
        "direction": ["down"] * n,
        "start_date": ["2026-11-02 00:00:00"] * n,
        "end_date": ["2026-11-08"] * n,
        "severity": ["medium"] * n,
        "impact": [1.0] * n,
    }
    return pd.DataFrame(base | columns)


# --------------------------------------------------------------------------- #
# which alerts to explain
# --------------------------------------------------------------------------- #
def test_alerts_to_explain_takes_new_and_ongoing_unlabelled_leads_first():
    al = _alerts(
        alert_id=["a", "b", "c", "d", "e", "f", "g", "h"],
        status=["new", "ongoing", "muted", "resolved", "new", "ongoing", "new", "new"],
        label=["", None, "", "", "confirmed", "", "", ""],
        severity=["high", "high", "high", "high", "high", "medium", "low", "high"],
        impact=[50.0, 90.0, 99.0, 99.0, 99.0, 10.0, 5.0, 70.0],
        incident_id=["", "", "", "", "", "I1", "I1", "I2"],
        incident_role=["", "", "", "", "", "lead", "child", "child"],
        first_seen=["2026-11-09", "2026-11-02", "", "", "", "2026-11-03", "", ""],
    )
    out = report.alerts_to_explain(None, alerts_frame=al, max_alerts=10)
    assert list(out.columns) == report.EXPLAIN_COLUMNS
    # muted, resolved and labelled alerts are left out, and so are children (g, h);
    # the incident lead comes first, then severity, then impact
    assert out["alert_id"].tolist() == ["f", "b", "a"]
    assert out.set_index("alert_id").loc["f", "children"] == 1
    assert out["start_date"].tolist() == ["2026-11-02"] * 3  # dates, not timestamps
    assert report.alerts_to_explain(None, alerts_frame=al, max_alerts=2)["alert_id"].tolist() == [
        "f",
        "b",
    ]
    assert report.alerts_to_explain(None, alerts_frame=al, max_alerts=0).empty


def test_alerts_to_explain_without_the_store_ranks_the_scan():
    al = _alerts(
        severity=["low", "high", "medium", "high"],
        impact=[500.0, 10.0, 80.0, 20.0],
        related=["", "override_rate site=x", "", ""],
    )
    out = report.alerts_to_explain(None, alerts_frame=al)
    assert out["segment"].tolist() == ["V3", "V1", "V2"]  # severity, then impact; max 3
    assert (out["alert_id"] == "").all() and (out["status"] == "").all()
    empty = report.alerts_to_explain(None, alerts_frame=al.iloc[:0])
    assert empty.empty and list(empty.columns) == report.EXPLAIN_COLUMNS
    with pytest.raises(ParameterError, match="max_alerts"):
        report.alerts_to_explain(None, alerts_frame=al, max_alerts=-1)


def test_findings_travel_in_the_notebook_and_stay_escaped():
    target = {"market": "ID", "metric": "accuracy", "dimension": "site", "segment": HOSTILE}
    target |= {"start_date": "2026-11-03 00:00:00", "end_date": "2026-11-12"}
    f = report.finding(
        "ID-20261103-accuracy-1a2b3c", f"by site, {HOSTILE} explains 80%.", alert=target
    )
    bundle = f._repr_mimebundle_()
    assert "<script>" not in bundle["text/html"] and "&lt;script&gt;" in bundle["text/html"]
    nb = nbformat.v4.new_notebook()
    out = nbformat.v4.new_output("display_data", data=bundle)
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("", outputs=[out])]
    (found,) = report.notebook_findings(nb)
    assert found == f.to_dict() | {"cell": 1}
    assert found["segment"] == HOSTILE and found["start_date"] == "2026-11-03"


# --------------------------------------------------------------------------- #
# notebook 02: incidents and labels
# --------------------------------------------------------------------------- #
def test_incident_table_folds_children_under_their_lead():
    al = _alerts(
        metric=["ai_recall", "override_rate", "auto_action_rate", "volume"],
        segment=["ms", HOSTILE, "mod-v4", "SG"],
        status=["new", "new", "ongoing", "new"],
        incident_id=["I1", "I1", "I1", ""],
        incident_role=["child", "lead", "child", ""],
        incident_cause=["", "model release", "", ""],
        incident_event=["", "model_release 2026-11-05: <b>mod-v4</b>", "", ""],
    )
    html_text = report.incident_table(al).data
    assert html_text.count("<tr>") == 3  # header, the incident, the lone volume alert
    assert "2 related alert(s)" in html_text and "<details>" in html_text
    assert html_text.index("override_rate") < html_text.index(
        "ai_recall"
    )  # the lead, then children
    assert "<script>" not in html_text and "<b>mod-v4" not in html_text
    # a scan without the store: one sentence, no note about missing data
    assert (
        "not grouped into incidents" in report.incident_table(al.drop(columns="incident_id")).data
    )


def test_label_controls_write_the_labels_file(tmp_path):
    from qualitylab import alertstore

    assert "reports folder" in report.label_controls(_alerts(alert_id=["x"]), "").data
    al = pd.DataFrame(
        {
            "market": ["SG"],
            "metric": ["ai_recall"],
            "dimension": ["language"],
            "segment": ["ms"],
            "start_date": [pd.Timestamp("2026-11-05")],
            "end_date": [pd.Timestamp("2026-11-15")],
            "observed": [0.62],
            "expected": [0.81],
            "direction": ["down"],
            "severity": ["high"],
            "detector": ["ewma"],
            "p_value": [1e-6],
        }
    )
    rows = alertstore.update_store(
        tmp_path,
        al,
        run_id="r1",
        as_of="2026-11-16",
        market="SG",
        period=("2026-10-19", "2026-11-15"),
    )
    stored = al.assign(alert_id=rows["alert_id"].tolist(), status="new")
    box = report.label_controls(stored, str(tmp_path), by="analyst")
    pick, (label, _who), note, save, _ = (
        box.children[0],
        box.children[1].children,
        *box.children[2:],
    )
    assert pick.value == rows["alert_id"].iloc[0] and list(label.options) == list(alertstore.LABELS)
    label.value, note.value = "false_alarm", "known <release>"
    save.click()
    labels = alertstore.read_labels(tmp_path)
    assert labels[["alert_id", "label", "note", "by"]].values.tolist() == [
        [rows["alert_id"].iloc[0], "false_alarm", "known <release>", "analyst"]
    ]


# --------------------------------------------------------------------------- #
# notebook 03 on market caches
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def caches(small_data, tmp_path_factory) -> dict[str, Path]:
    """SG's market cache as a scheduled run builds it, and two variants of it."""
    from qualitylab.runner import build_market_cache

    folder = tmp_path_factory.mktemp("deep-dive-caches")
    plain = folder / "SG.duckdb"
    build_market_cache(str(small_data), "SG", plain, parameters=str(PARAMS))
    out = {"plain": plain}
    for name in ("store", "quiet"):
        out[name] = folder / f"SG-{name}.duckdb"
        shutil.copy(plain, out[name])
    con = duckdb.connect(str(out["store"]))
    al = con.execute("select * from ql_alerts").df()
    assert len(al) == 3, al  # ai_recall language=ms, volume, reporting_gap (seed 7)
    # the store's columns: the top alert labelled, the second muted, the third an incident lead
    al["alert_id"] = ["SG-A0", "SG-A1", "SG-A2"]
    al["status"] = ["ongoing", "muted", "new"]
    al["label"] = ["confirmed", None, None]
    al["first_seen"] = "2026-11-10"
    al["incident_id"] = [None, None, "SG-I1"]
    al["incident_role"] = [None, None, "lead"]
    al["incident_cause"] = [None, None, "vendor-reported KPIs"]
    con.execute("drop table ql_alerts")
    con.register("al", al.astype(object).where(al.notna(), None).astype(str))
    con.execute("create table ql_alerts as select * from al")
    con.close()
    con = duckdb.connect(str(out["quiet"]))
    con.execute("delete from ql_alerts")  # a scan that found nothing
    con.close()
    return out


def _run(
    notebook: Path, data: Path, output: Path, **parameters
) -> tuple[nbformat.NotebookNode, float]:
    started = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(output),
        parameters={"data": str(data), "market": "SG", "interactive": False, **parameters},
        cwd=str(NOTEBOOKS),
        kernel_name="python3",
        progress_bar=False,
    )
    seconds = time.perf_counter() - started
    print(f"\n{notebook.stem} on {data.name}: {seconds:.1f} s")
    return nbformat.read(output, as_version=4), seconds


def _html(nb: nbformat.NotebookNode) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            text = out.get("data", {}).get("text/html", "")
            parts.append("".join(text) if isinstance(text, list) else text)
    return "\n".join(parts)


def test_rca_notebook_explains_the_scan_of_a_store_less_cache(caches, tmp_path, record_property):
    nb, seconds = _run(RCA_NOTEBOOK, caches["plain"], tmp_path / "plain.ipynb")
    record_property("seconds", round(seconds, 1))
    findings = report.notebook_findings(nb)
    # the three alerts of the period, whatever their metric, by severity then impact
    assert [f["metric"] for f in findings] == ["reporting_gap", "ai_recall", "volume"]
    assert all(f["alert_id"] == "" and f["market"] == "SG" for f in findings)
    by_metric = {f["metric"]: f["sentence"] for f in findings}
    assert "mod-v4 explains" in by_metric["ai_recall"]  # the model release, within 'ms'
    assert "VendorA in SG reported accuracy" in by_metric["reporting_gap"]
    assert "a day" in by_metric["volume"] and "largest share" in by_metric["volume"]
    assert report.notebook_notes(nb) == []  # nothing short of data
    html_text = _html(nb)
    assert "Detailing ai_recall on language ms" in html_text  # the first rate deep dive


def test_rca_notebook_takes_the_stores_unlabelled_alerts(caches, tmp_path):
    nb, _ = _run(RCA_NOTEBOOK, caches["store"], tmp_path / "store.ipynb", max_alerts=3)
    findings = report.notebook_findings(nb)
    # the labelled alert and the muted one are left out
    assert [(f["alert_id"], f["metric"]) for f in findings] == [("SG-A2", "reporting_gap")]
    assert "leads incident SG-I1" in _html(nb)


def test_rca_notebook_with_no_alert_lists_the_red_scorecard(caches, tmp_path):
    nb, _ = _run(RCA_NOTEBOOK, caches["quiet"], tmp_path / "quiet.ipynb")
    assert report.notebook_findings(nb) == [] and report.notebook_notes(nb) == []
    html_text = _html(nb)
    assert html_text.count("No new or ongoing alert to explain in SG for this period") == 1
    assert '<span class="ql-red">red</span>' in html_text  # SG's AI recall is red
    assert "ai_recall" in html_text and "ql-green" not in html_text


def test_rca_notebook_takes_a_metric_by_hand(caches, tmp_path):
    nb, _ = _run(
        RCA_NOTEBOOK,
        caches["plain"],
        tmp_path / "hand.ipynb",
        metric="accuracy",
        segment="vendor:VendorA",
        current_start="2026-11-09",
        current_end="2026-11-15",
    )
    (found,) = report.notebook_findings(nb)
    assert (found["metric"], found["dimension"], found["segment"]) == (
        "accuracy",
        "vendor",
        "VendorA",
    )
    assert (
        found["start_date"] == "2026-11-09"
        and "Accuracy in SG for vendor VendorA" in found["sentence"]
    )


def test_trends_notebook_shows_incidents_of_the_store(caches, tmp_path):
    nb, _ = _run(TRENDS_NOTEBOOK, caches["store"], tmp_path / "trends.ipynb", reports="")
    html_text = _html(nb)
    assert "SG-I1" in html_text and "vendor-reported KPIs" in html_text
    assert "Label alerts in JupyterLab" in html_text
    assert [n["section"] for n in report.notebook_notes(nb)] == []
