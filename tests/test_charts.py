"""Charts: structure through ``chart.to_dict()``, safe HTML, offline rendering.

Charts are data, so almost every test inspects the vega-lite dict; only two
tests render with vl-convert (one SVG, one renderer call) because renders cost
about a second each.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import warnings
from collections.abc import Callable
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import pytest

from qualitylab import DataContractError, ParameterError
from qualitylab import charts as qc

EVIL = "</script><script>alert(1)</script><img src=x onerror=alert(2)> & <!-- \u2028"


# --------------------------------------------------------------------------- #
# hand-built inputs (the columns the library's functions produce)
# --------------------------------------------------------------------------- #
def detector_series(days: int = 10) -> pd.DataFrame:
    dates = pd.date_range("2026-03-01", periods=days)
    observed = np.full(days, 0.90)
    observed[-2:] = 0.82
    return pd.DataFrame(
        {
            "date": dates.date,  # python dates, as a market-local "date" column often is
            "observed": observed,
            "expected": 0.9,
            "lower": 0.86,
            "upper": 0.94,
            "flag": [False] * (days - 2) + [True, True],
            "changepoint": [i == days - 2 for i in range(days)],
        }
    )


def events_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "effective_at": pd.to_datetime(
                ["2026-03-03 20:00", "2026-03-08 01:00", "2025-12-01 00:00"], utc=True
            ),
            "market": ["SG", "*", "SG"],
            "kind": ["policy_change", "model_release", "training"],
            "policy": ["hate_speech", None, None],
            "description": [EVIL, "model v7", "out of range"],
        }
    )


def metric_frame() -> pd.DataFrame:
    rows = []
    for vendor in ("VendorA", "VendorB"):
        for i, d in enumerate(pd.date_range("2026-03-01", periods=4)):
            value = 0.9 + 0.01 * i
            rows.append((vendor, d, "accuracy", value, 100 + i, value - 0.05, value + 0.04, i == 0))
            rows.append((vendor, d, "volume", 1000.0 + i, 1000 + i, np.nan, np.nan, False))
    return pd.DataFrame(
        rows, columns=["vendor", "date", "metric", "value", "n", "ci_low", "ci_high", "small_n"]
    )


def funnel_data() -> pd.DataFrame:
    n = np.array([0, 40, 200, 900])
    p0 = 0.06
    se = np.sqrt(p0 * (1 - p0) / np.maximum(n, 1))
    return pd.DataFrame(
        {
            "unit": ["m0", "m1", "m2", EVIL],
            "n": n,
            "rate": [np.nan, 0.05, 0.07, 0.11],
            "population_rate": p0,
            "lower95": np.clip(p0 - 1.96 * se, 0, 1),
            "upper95": p0 + 1.96 * se,
            "lower998": np.clip(p0 - 3.09 * se, 0, 1),
            "upper998": p0 + 3.09 * se,
            "flagged": [False, False, False, True],
        }
    )


def scorecard_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "market": "SG",
            "vendor": ["VendorA", "VendorA", "VendorB", "VendorB"],
            "metric": ["accuracy", "volume", "accuracy", "volume"],
            "value": [0.953, 12345.0, 0.871, 800.0],
            "n": [400, 12345, 300, 800],
            "ci_low": [0.93, np.nan, 0.83, np.nan],
            "ci_high": [0.97, np.nan, 0.90, np.nan],
            "target": [0.92, np.nan, 0.92, np.nan],
            "status": ["green", "na", "red", None],
            "prev_value": [0.94, 12000.0, 0.9, 790.0],
            "delta": [0.013, 345.0, -0.029, 10.0],
            "p_value": [0.2, 0.01, 0.03, 0.5],
            "p_adjusted": [0.4, 0.02, 0.06, 0.5],
            "small_n": [False, False, True, False],
        }
    )


def sweep_frame() -> pd.DataFrame:
    t = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    frames = []
    for model, k in (("v6", 0.5), ("v7", 0.7)):
        f = pd.DataFrame(
            {
                "model": model,
                "threshold": t,
                "tp": [90, 85, 75, 60, 30],
                "fp": [400, 150, 60, 20, 5],
                "fn": [10, 15, 25, 40, 70],
                "tn": [500, 750, 840, 880, 895],
                "precision": 0.2 + k * t,
                "recall": 1 - k * t**2,
                "fpr": (1 - t) ** 2,
            }
        )
        for m in ("precision", "recall", "fpr"):
            f[f"{m}_ci_low"] = (f[m] - 0.03).clip(0, 1)
            f[f"{m}_ci_high"] = (f[m] + 0.03).clip(0, 1)
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


def calibration_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "bin": [0, 1, 2],
            "lower": [0.0, 1 / 3, 2 / 3],
            "upper": [1 / 3, 2 / 3, 1.0],
            "n": [300, 120, 40],
            "mean_score": [0.1, 0.5, 0.85],
            "frac_pos": [0.08, 0.45, 0.7],
            "ci_low": [0.05, 0.36, 0.55],
            "ci_high": [0.12, 0.54, 0.82],
        }
    )


# One registry of example charts drives the invariance tests below.
CHARTS: dict[str, Callable[[], Any]] = {
    "control_chart": lambda: qc.control_chart(
        detector_series(), events=events_table(), metric="accuracy", timezone="Asia/Singapore"
    ),
    "trend_small_multiples": lambda: qc.trend_small_multiples(
        metric_frame(), metric="accuracy", target=0.9
    ),
    "funnel_plot": lambda: qc.funnel_plot(funnel_data(), metric="over_enforcement_rate"),
    "waterfall": lambda: qc.waterfall(
        pd.DataFrame({"segment": ["VendorA", "VendorB"], "contribution": [-0.02, 0.005]}),
        start_value=0.92,
        end_value=0.905,
        metric="accuracy",
    ),
    "scorecard_heatmap": lambda: qc.scorecard_heatmap(scorecard_frame()),
    "kpi_intervals": lambda: qc.kpi_intervals(scorecard_frame(), metric="accuracy", target=0.92),
    "pr_curve": lambda: qc.pr_curve(sweep_frame(), color="model"),
    "roc_curve": lambda: qc.roc_curve(sweep_frame(), color="model"),
    "calibration_curve": lambda: qc.calibration_curve(calibration_frame()),
    "threshold_sweep_chart": lambda: qc.threshold_sweep_chart(
        sweep_frame().query("model == 'v7'"), recommended=0.5
    ),
    "rollout_chart": lambda: qc.rollout_chart(
        rollout_daily(), effective="2026-11-09", baseline=0.9, recovered_on="2026-11-12"
    ),
    "triage_timeline": lambda: qc.triage_timeline(*triage_frames()),
    "capacity_heatmap": lambda: qc.capacity_heatmap(capacity_frame(), history_days=2),
    "sampling_plan_chart": lambda: qc.sampling_plan_chart(plan_frame()),
}


def plan_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "vendor": ["VendorA", "VendorA", "<b>x</b>"],
            "queue": ["live_stream", "appeal", "live_stream"],
            "weekly_decisions": [900.0, 40.0, 300.0],
            "accuracy": [0.93, 1.0, np.nan],
            "s": [0.255, 0.12, 0.5],
            "current_audits": [60.0, 25.0, 0.0],
            "audits_needed": [420.0, 35.0, float("inf")],
            "recommended_audits": [70, 35, 15],
            "mdc_before": [0.09, 0.07, np.nan],
            "mdc_after": [0.085, 0.05, 0.3],
            "blind_before": [True, True, True],
            "blind_after": [True, False, True],
        }
    )


def rollout_daily() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": pd.date_range("2026-11-09", periods=5),
            "accuracy": [0.7, 0.75, 0.82, 0.88, 0.9],
            "ci_low": [0.6, 0.66, 0.75, 0.82, 0.85],
            "ci_high": [0.79, 0.83, 0.88, 0.93, 0.94],
            "n": [40, 42, 45, 50, 48],
        }
    )


def triage_frames() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    timeline = pd.DataFrame(
        {
            "date": pd.date_range("2026-11-10", periods=4),
            "volume": [100.0, 250.0, 240.0, 110.0],
            "sla_compliance": [0.95, 0.94, 0.70, 0.93],
        }
    )
    bands = pd.DataFrame(
        {
            "series": ["volume", "sla_compliance", "escalations"],
            "baseline": [100.0, 0.95, 1.0],
            "band_low": [70.0, 0.88, 0.0],
            "band_high": [130.0, 1.0, 3.0],
        }
    )
    moves = pd.DataFrame(
        {"series": ["volume", "sla_compliance"], "first_date": ["2026-11-11", "2026-11-12"]}
    )
    return timeline, bands, moves


def capacity_frame() -> pd.DataFrame:
    days = pd.to_datetime(["2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"])
    return pd.DataFrame(
        {
            "queue": "live_stream",
            "date": days.repeat(2),
            "hour": [20, 21] * 4,
            "gap": [0.4, -0.3, 1.2, 0.1, -0.5, 0.2, 0.8, 0.9],
            "required_agents": [2.0] * 8,
            "staffed_agents": [1.6, 2.3, 0.8, 1.9, 2.5, 1.8, 1.2, 1.1],
            "arrivals": [20.0] * 8,
            "is_forecast": [False] * 6 + [True] * 2,
        }
    )


@functools.cache
def _registry_spec(name: str) -> str:
    with qc.use_theme(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # funnel_plot's dropped n=0 row
        return json.dumps(CHARTS[name]().to_dict(), allow_nan=False)


def registry_spec(name: str) -> dict[str, Any]:
    """The example chart's dict under the house theme, built once per session."""
    return json.loads(_registry_spec(name))


def spec_of(chart: Any) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # funnel_plot's dropped n=0 row
        return chart.to_dict()


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec["spec"]["layer"] if "facet" in spec else spec["layer"]


def mark(layer: dict[str, Any]) -> str:
    m = layer["mark"]
    return m if isinstance(m, str) else m["type"]


def marks(spec: dict[str, Any]) -> list[str]:
    return [mark(layer) for layer in layers(spec)]


def rows_of(spec: dict[str, Any], layer: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    name = (layer if layer and "data" in layer else spec)["data"]["name"]
    return spec["datasets"][name]


# --------------------------------------------------------------------------- #
# registry-wide invariants
# --------------------------------------------------------------------------- #
def test_every_chart_function_is_in_the_registry():
    chart_functions = {
        name
        for name in qc.__all__
        if name.endswith(
            ("_chart", "_curve", "_plot", "_multiples", "_heatmap", "_intervals", "_timeline")
        )
        or name == "waterfall"
    }
    assert chart_functions == set(CHARTS)


@pytest.mark.parametrize("name", sorted(CHARTS))
def test_charts_are_plain_vega_lite_in_the_house_theme(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert isinstance(CHARTS[name](), alt.TopLevelMixin)
    text = _registry_spec(name)  # serialisable without NaN/inf (allow_nan=False)
    # Intervals come from the data's ci columns, never computed by the browser.
    assert '"extent"' not in text and "errorband" not in text and "errorbar" not in text
    config = registry_spec(name)["config"]
    assert config["range"]["category"] == list(qc.OKABE_ITO)
    assert config["font"].startswith("'Source Sans 3'")


def test_inputs_are_not_modified():
    series, sc = detector_series(), scorecard_frame()
    before = series.copy(), sc.copy()
    qc.control_chart(series, events=events_table())
    qc.scorecard_heatmap(sc)
    pd.testing.assert_frame_equal(series, before[0])
    pd.testing.assert_frame_equal(sc, before[1])


# --------------------------------------------------------------------------- #
# theme and palettes
# --------------------------------------------------------------------------- #
def test_theme_is_registered_and_enabled_only_explicitly():
    assert qc.THEME_NAME in alt.theme.names()
    previous = alt.theme.active
    with qc.use_theme():
        assert alt.theme.active == "qualitylab"
        cfg = alt.Chart(pd.DataFrame({"a": [1]})).mark_point().to_dict()["config"]
        assert cfg["view"]["continuousWidth"] == 560
        assert cfg["axis"]["gridColor"] == "#E8E8E8"
        assert cfg["range"]["diverging"] == {"scheme": "blueorange"}
        assert cfg["range"]["heatmap"] == {"scheme": "viridis"}
    assert alt.theme.active == previous


def test_status_palette_is_colour_blind_safe_with_a_second_cue():
    assert qc.STATUS_COLORS["green"] == "#009E73"
    assert qc.STATUS_COLORS["amber"] == "#E69F00"
    assert qc.STATUS_COLORS["red"] == "#D55E00"
    assert len(set(qc.STATUS_SHAPES.values())) == len(qc.STATUS_SHAPES)
    assert set(qc.STATUS_COLORS) == set(qc.STATUS_SHAPES) == {"green", "amber", "red", "na"}
    assert len(set(qc.OKABE_ITO)) == 8


# --------------------------------------------------------------------------- #
# control chart
# --------------------------------------------------------------------------- #
def test_control_chart_layers_and_interval_encoding():
    spec = registry_spec("control_chart")
    assert marks(spec) == ["area", "line", "line", "point", "rule", "rule", "point"]
    band, centre, observed, points, changepoints, event_rules, event_marks = spec["layer"]
    assert band["encoding"]["y"]["field"] == "lower"
    assert band["encoding"]["y2"]["field"] == "upper"
    assert centre["encoding"]["y"]["field"] == "expected"
    assert centre["mark"]["strokeDash"]
    assert observed["encoding"]["y"]["field"] == "observed"
    # flagged days: different colour AND shape, with a legend
    assert points["encoding"]["color"]["scale"] == {
        "domain": ["in control", "flagged"],
        "range": ["#333333", "#D55E00"],
    }
    assert points["encoding"]["shape"]["scale"]["range"] == ["circle", "diamond"]
    assert [r["signal"] for r in rows_of(spec, points)][-2:] == ["flagged", "flagged"]
    # percentages for a rate metric
    assert points["encoding"]["y"]["axis"]["format"] == ".1~%"
    assert {t["field"]: t.get("format") for t in points["encoding"]["tooltip"]}["observed"] == (
        ".1%"
    )
    # one changepoint rule
    assert len(rows_of(spec, changepoints)) == 1
    # events: inside the date range only, with kind/description tooltips
    tips = [t["field"] for t in event_rules["encoding"]["tooltip"]]
    assert {"kind", "description", "policy", "effective_at_utc"} <= set(tips)
    ev = rows_of(spec, event_rules)
    assert [e["kind"] for e in ev] == ["policy_change", "model_release"]
    # converted to market-local time (UTC+8) to sit on the local-date axis
    assert ev[0]["event_time"].startswith("2026-03-04T04:00")
    assert ev[0]["effective_at_utc"] == "2026-03-03 20:00 UTC"
    assert event_marks["encoding"]["y"] == {"value": 0}


def test_control_chart_minimal_and_count_metric():
    series = detector_series().drop(columns="changepoint").assign(metric="volume")
    spec = spec_of(qc.control_chart(series))
    assert marks(spec) == ["area", "line", "line", "point"]
    assert spec["title"] == "volume"
    assert "format" not in spec["layer"][3]["encoding"]["y"].get("axis", {})


def test_control_chart_errors():
    with pytest.raises(DataContractError, match=r"series has no column 'upper'"):
        qc.control_chart(detector_series().drop(columns="upper"))
    with pytest.raises(ParameterError, match="pandas DataFrame"):
        qc.control_chart(detector_series().to_dict())
    bad = detector_series().astype({"date": object})
    bad.loc[3, "date"] = "not a date"
    with pytest.raises(DataContractError, match=r"column 'date' has 1 row\(s\) that are not dates"):
        qc.control_chart(bad)
    two = pd.concat([detector_series().assign(metric="a"), detector_series().assign(metric="b")])
    with pytest.raises(ParameterError, match="several metrics"):
        qc.control_chart(two)
    with pytest.raises(DataContractError, match="duplicate"):
        qc.control_chart(pd.concat([detector_series(), detector_series()]))
    with pytest.raises(ParameterError, match="time zone"):
        qc.control_chart(detector_series(), events=events_table(), timezone="Mars/Base")


# --------------------------------------------------------------------------- #
# small multiples, funnel, waterfall, heatmap, forest plot
# --------------------------------------------------------------------------- #
def test_trend_small_multiples():
    spec = registry_spec("trend_small_multiples")
    assert spec["facet"]["field"] == "vendor"
    assert spec["facet"]["sort"] == ["VendorA", "VendorB"]
    assert marks(spec) == ["area", "line", "point", "rule"]
    band = layers(spec)[0]
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == (
        "ci_low",
        "ci_high",
    )
    assert len(spec["datasets"][spec["data"]["name"]]) == 8  # accuracy rows only
    assert layers(spec)[3]["encoding"]["y"] == {"datum": 0.9}
    independent = qc.trend_small_multiples(metric_frame(), metric="volume", shared_y=False)
    assert spec_of(independent)["resolve"] == {"scale": {"y": "independent"}}
    with pytest.raises(ParameterError, match=r"no rows for metric 'sla'"):
        qc.trend_small_multiples(metric_frame(), metric="sla")
    dup = pd.concat([metric_frame(), metric_frame()])
    with pytest.raises(DataContractError, match="duplicate"):
        qc.trend_small_multiples(dup, metric="accuracy")


def test_funnel_plot():
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\) with n <= 0"):
        spec = qc.funnel_plot(funnel_data()).to_dict()
    assert marks(spec) == ["rule", "line", "point", "text"]
    rule, limits, points, labels = spec["layer"]
    assert points["encoding"]["x"]["scale"]["type"] == "log"
    assert rule["encoding"]["y"] == {"datum": 0.06}
    curves = pd.DataFrame(rows_of(spec, limits))
    assert set(zip(curves["level"], curves["side"], strict=True)) == {
        ("95%", "lower"),
        ("95%", "upper"),
        ("99.8%", "lower"),
        ("99.8%", "upper"),
    }
    assert (curves["n"] > 0).all()
    assert limits["encoding"]["strokeDash"]["field"] == "level"
    assert [r["unit"] for r in rows_of(spec, labels)] == [EVIL]  # flagged units only
    assert points["encoding"]["shape"]["field"] == "status"
    grid = pd.DataFrame({"n": [10, 100, 1000]}).assign(
        lower95=0.01, upper95=0.1, lower998=0.0, upper998=0.12
    )
    with pytest.warns(UserWarning):
        spec = qc.funnel_plot(funnel_data(), limits=grid).to_dict()
    assert len(rows_of(spec, spec["layer"][1])) == 12


def test_waterfall_steps_add_up():
    contrib = pd.DataFrame({"segment": ["A", "B", "C"], "contribution": [-0.02, 0.005, -0.001]})
    spec = spec_of(qc.waterfall(contrib, start_value=0.92, end_value=0.9, metric="accuracy"))
    assert marks(spec) == ["bar", "text"]
    bars = pd.DataFrame(rows_of(spec))
    assert bars["label"].tolist() == ["baseline", "A", "B", "C", "unexplained", "current"]
    assert bars["kind"].tolist() == ["total", "decrease", "increase", "decrease"] + [
        "decrease",
        "total",
    ]
    steps = bars.iloc[1:-1]
    # each step starts where the previous ended; the last ends at end_value
    np.testing.assert_allclose(steps["bar_start"].to_numpy()[1:], steps["bar_end"].to_numpy()[:-1])
    assert steps["bar_start"].iloc[0] == pytest.approx(0.92)
    assert steps["bar_end"].iloc[-1] == pytest.approx(0.9)
    assert bars["amount_label"].tolist()[:3] == ["92.0%", "-2.0 pp", "+0.5 pp"]
    # small steps on a high level: the axis starts below the lowest level, not at zero
    floor = bars["bar_start"].iloc[0]
    assert 0 < floor < 0.9 and spec["layer"][0]["encoding"]["y"]["scale"]["zero"] is False
    counts = qc.waterfall(
        pd.DataFrame({"segment": ["x"], "contribution": [50.0]}), start_value=10, end_value=60
    )
    counts_rows = rows_of(spec_of(counts))
    assert [r["label"] for r in counts_rows] == ["baseline", "x", "current"]
    assert counts_rows[0]["bar_start"] == 0
    with pytest.raises(DataContractError, match="duplicate"):
        qc.waterfall(pd.concat([contrib, contrib]), start_value=0.92, end_value=0.9)
    with pytest.raises(ParameterError, match="start_value must be a finite number"):
        qc.waterfall(contrib, start_value=float("nan"), end_value=0.9)


def test_scorecard_heatmap_maps_status_to_colour_and_text():
    spec = registry_spec("scorecard_heatmap")
    assert marks(spec) == ["rect", "text", "text"]
    rect, value, word = spec["layer"]
    scale = rect["encoding"]["color"]["scale"]
    assert dict(zip(scale["domain"], scale["range"], strict=True)) == qc.STATUS_COLORS
    assert value["encoding"]["text"]["field"] == "value_label"
    assert word["encoding"]["text"]["field"] == "status"  # the colour-independent cue
    cells = pd.DataFrame(rows_of(spec))
    assert cells["value_label"].tolist() == ["95.3%", "12,345", "87.1%*", "800"]
    assert cells["status"].tolist() == ["green", "na", "red", "na"]
    assert cells["interval"].tolist()[0] == "[93.0%, 97.0%]"
    assert cells["delta_label"].tolist()[:3] == ["+1.3 pp", "+345", "-2.9 pp"]
    tips = {t["field"] for t in rect["encoding"]["tooltip"]}
    assert {"interval", "n_label", "target_label", "status"} <= tips
    two_markets = pd.concat([scorecard_frame(), scorecard_frame().assign(market="ID")])
    with pytest.raises(DataContractError, match="add a column"):
        qc.scorecard_heatmap(two_markets)
    both = spec_of(qc.scorecard_heatmap(two_markets, rows=["market", "vendor"]))
    assert {r["row_label"] for r in rows_of(both)} == {
        "SG · VendorA",
        "SG · VendorB",
        "ID · VendorA",
        "ID · VendorB",
    }
    with pytest.raises(DataContractError, match="status"):
        qc.scorecard_heatmap(scorecard_frame().assign(status="blue"))


def test_kpi_intervals_forest_plot():
    spec = registry_spec("kpi_intervals")
    assert marks(spec) == ["rule", "point", "rule"]
    bars, points, target = spec["layer"]
    assert (bars["encoding"]["x"]["field"], bars["encoding"]["x2"]["field"]) == (
        "ci_low",
        "ci_high",
    )
    assert bars["encoding"]["y"]["field"] == "vendor"
    assert points["encoding"]["x"]["field"] == "value"
    assert points["encoding"]["color"]["field"] == "status"
    assert points["encoding"]["shape"]["field"] == "status"
    assert target["encoding"]["x"] == {"datum": 0.92}
    assert spec["title"] == "accuracy"
    frame = metric_frame()
    first_day = frame[frame["date"] == frame["date"].min()]
    plain = spec_of(qc.kpi_intervals(first_day, metric="volume"))
    assert marks(plain) == ["rule", "point"]
    with pytest.raises(ParameterError, match="several metrics"):
        qc.kpi_intervals(scorecard_frame())


# --------------------------------------------------------------------------- #
# AI evaluation charts
# --------------------------------------------------------------------------- #
def test_pr_and_roc_curves():
    pr = registry_spec("pr_curve")
    assert marks(pr) == ["line", "point"]
    line = pr["layer"][0]["encoding"]
    assert (line["x"]["field"], line["y"]["field"]) == ("recall", "precision")
    assert line["color"]["field"] == line["strokeDash"]["field"] == "model"
    assert line["order"]["field"] == "point_order"
    pts = pd.DataFrame(rows_of(pr))
    # drawn along descending threshold within each model
    first = pts[pts["model"] == "v6"].sort_values("point_order")
    assert first["threshold"].is_monotonic_decreasing

    roc = registry_spec("roc_curve")
    assert marks(roc) == ["rule", "line", "point"]
    assert roc["layer"][0]["encoding"] == {
        "x": {"datum": 0},
        "y": {"datum": 0},
        "x2": {"datum": 1},
        "y2": {"datum": 1},
    }
    assert (
        roc["layer"][1]["encoding"]["x"]["field"],
        roc["layer"][1]["encoding"]["y"]["field"],
    ) == (
        "fpr",
        "recall",
    )
    # aieval.roc_curve output: tpr column and an infinite first threshold
    aieval_roc = pd.DataFrame(
        {"threshold": [np.inf, 0.9, 0.5], "fpr": [0.0, 0.04, 0.15], "tpr": [0.0, 0.67, 0.92]}
    )
    spec = spec_of(qc.roc_curve(aieval_roc))
    assert rows_of(spec, spec["layer"][1])[0]["threshold"] is None
    assert "color" not in spec["layer"][1]["encoding"]


def test_calibration_curve():
    spec = registry_spec("calibration_curve")
    assert marks(spec) == ["rule", "rule", "line", "point"]
    bars, points = spec["layer"][1], spec["layer"][3]
    assert (bars["encoding"]["y"]["field"], bars["encoding"]["y2"]["field"]) == (
        "ci_low",
        "ci_high",
    )
    assert bars["encoding"]["x"]["field"] == "mean_score"
    assert points["encoding"]["size"]["field"] == "n"
    assert spec["layer"][0]["encoding"]["x2"] == {"datum": 1}


def test_threshold_sweep_chart():
    spec = registry_spec("threshold_sweep_chart")
    assert marks(spec) == ["area", "line", "rule", "text"]
    band, lines, rule, label = spec["layer"]
    assert (band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == (
        "ci_low",
        "ci_high",
    )
    assert lines["encoding"]["color"]["field"] == lines["encoding"]["strokeDash"]["field"] == "rate"
    long = pd.DataFrame(rows_of(spec, lines))
    assert rows_of(spec, band) == rows_of(spec, lines)
    assert sorted(long["rate"].unique()) == ["fpr", "precision", "recall"]
    assert len(long) == 15
    assert rule["encoding"]["x"] == {"datum": 0.5}
    assert label["encoding"]["text"] == {"value": "recommended 0.5"}
    no_ci = sweep_frame().query("model == 'v6'")[["threshold", "precision", "recall", "fpr"]]
    assert marks(spec_of(qc.threshold_sweep_chart(no_ci))) == ["line"]
    with pytest.raises(DataContractError, match="one model"):
        qc.threshold_sweep_chart(sweep_frame())


# --------------------------------------------------------------------------- #
# HTML fragments, bundle, renderer
# --------------------------------------------------------------------------- #
def evil_chart() -> alt.Chart:
    data = pd.DataFrame({"label": [EVIL, "ok"], "x": [1, 2]})
    return (
        alt.Chart(data)
        .mark_text()
        .encode(x="x:Q", text="label:N", tooltip=["label:N"])
        .properties(title=EVIL)
    )


def embedded_spec(fragment: str) -> dict[str, Any]:
    match = re.search(r"var spec = (\{.*\});\n", fragment)
    assert match
    return json.loads(match.group(1))


def test_chart_html_escapes_data_strings():
    fragment = qc.chart_html(evil_chart(), div_id="chart-1")
    assert fragment.startswith('<div id="chart-1" class="qualitylab-chart"></div>\n<script>')
    # the only closing script tag is the fragment's own; no tag from the data survives
    assert fragment.count("</script") == 1 and fragment.endswith("</script>")
    assert fragment.count("<script") == 1
    assert "<img" not in fragment and "<!--" not in fragment and "\u2028" not in fragment
    assert "</" not in fragment[: fragment.rindex("</script>")].split("<script>", 1)[1]
    assert 'vegaEmbed("#chart-1", spec, {"actions": false, "renderer": "svg"' in fragment
    # the data round-trips exactly through the escaped JSON
    spec = embedded_spec(fragment)
    assert spec["title"] == EVIL
    assert [r["label"] for r in next(iter(spec["datasets"].values()))] == [EVIL, "ok"]
    # nothing to fetch: no URLs at all, $schema included
    assert "$schema" not in spec
    assert "http://" not in fragment and "https://" not in fragment


def test_chart_html_ids_and_errors():
    a, b = qc.chart_html(evil_chart()), qc.chart_html(evil_chart())
    id_a = re.match(r'<div id="(ql-chart-[0-9a-f]{12})"', a).group(1)
    assert id_a not in b
    with pytest.raises(ParameterError, match="div_id"):
        qc.chart_html(evil_chart(), div_id='x" onload="alert(1)')
    with pytest.raises(ParameterError, match="fallback"):
        qc.chart_html(evil_chart(), fallback="jpeg")
    with pytest.raises(ParameterError, match="altair chart"):
        qc.chart_html("<svg/>")
    # a page without the bundle gets a visible notice instead of an empty box
    assert "lacks qualitylab.charts.vega_bundle()" in a


@pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")
def test_chart_html_script_runs_and_calls_vega_embed(tmp_path):
    fragment = qc.chart_html(evil_chart(), div_id="c1")
    script = fragment[fragment.index("<script>") + len("<script>") : fragment.rindex("</script>")]
    (tmp_path / "fragment.js").write_text(script, encoding="utf-8")
    runner = """
const fs = require('fs');
const out = {};
global.document = {getElementById: () => null, querySelector: () => ({})};
global.vegaEmbed = (sel, spec, opts) => {
  Object.assign(out, {sel, title: spec.title, opts}); return Promise.resolve();
};
eval(fs.readFileSync(process.argv[2], 'utf8'));
console.log(JSON.stringify(out));
"""
    (tmp_path / "run.js").write_text(runner, encoding="utf-8")
    done = subprocess.run(
        ["node", str(tmp_path / "run.js"), str(tmp_path / "fragment.js")],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    out = json.loads(done.stdout)
    assert out["sel"] == "#c1" and out["title"] == EVIL
    assert out["opts"] == {"actions": False, "renderer": "svg", "mode": "vega-lite"}


def test_to_svg_renders_offline_and_escapes_text():
    svg = qc.to_svg(evil_chart())
    assert svg.lstrip().startswith("<svg")
    assert "<script" not in svg and "<img" not in svg
    assert "&lt;/script&gt;" in svg


def test_to_png_validates_scale():
    with pytest.raises(ParameterError, match="scale"):
        qc.to_png(evil_chart(), scale=0)


def test_vega_bundle_is_inline_and_cached():
    js = qc.vega_bundle()
    assert len(js) > 100_000
    assert "vegaEmbed" in js
    assert not re.search(r"</script", js, flags=re.IGNORECASE)
    assert "cdn.jsdelivr" not in js and "unpkg.com" not in js
    assert qc.vega_bundle() is js


def test_offline_renderer_mimebundle():
    assert qc.RENDERER_NAME in alt.renderers.names()
    previous = alt.renderers.active
    with qc.enable_offline_renderer():
        assert alt.renderers.active == "qualitylab"
        bundle = evil_chart()._repr_mimebundle_()
    assert alt.renderers.active == previous
    assert set(bundle) == {"text/html", "image/svg+xml"}
    assert bundle["image/svg+xml"].lstrip().startswith("<svg")
    fragment = bundle["text/html"]
    assert "vegaEmbed(" in fragment and fragment.count("</script") == 1
    # the static fallback is inline (for frontends without the bundle), as a data URI
    assert '<img src="data:image/svg+xml;base64,' in fragment
    assert "http://" not in fragment and "https://" not in fragment
    assert embedded_spec(fragment)["title"] == EVIL
    with pytest.raises(ParameterError, match="fallback"):
        qc.enable_offline_renderer(fallback="gif")


# --------------------------------------------------------------------------- #
# operations charts
# --------------------------------------------------------------------------- #
def test_rollout_chart_draws_interval_from_data_and_marks_change_and_recovery():
    spec = registry_spec("rollout_chart")
    kinds = [mark(layer) for layer in spec["layer"]]
    assert kinds[:3] == ["rule", "line", "point"]
    interval = spec["layer"][0]["encoding"]
    assert interval["y"]["field"] == "ci_low" and interval["y2"]["field"] == "ci_high"
    dated = [
        layer["encoding"]["x"]["datum"]
        for layer in spec["layer"]
        if "datum" in layer["encoding"].get("x", {})
    ]
    assert [(d["year"], d["month"], d["date"]) for d in dated] == [(2026, 11, 9), (2026, 11, 12)]
    assert spec["layer"][3]["encoding"]["y"]["datum"] == 0.9  # the baseline


def test_triage_timeline_has_a_panel_per_present_series_and_flags_days_outside():
    spec = registry_spec("triage_timeline")
    assert len(spec["vconcat"]) == 2  # escalations is not in the timeline
    volume = spec["vconcat"][0]
    rows = spec["datasets"][volume["data"]["name"]]
    assert [r["signal"] for r in rows] == ["normal", "outside band", "outside band", "normal"]
    assert any("datum" in layer["encoding"].get("x", {}) for layer in volume["layer"])


def test_capacity_heatmap_keeps_recent_history_and_forecast_on_a_centred_scale():
    spec = registry_spec("capacity_heatmap")
    rows = spec["datasets"][spec["data"]["name"]]
    dates = sorted({r["date"][:10] for r in rows})
    assert dates == ["2026-11-02", "2026-11-03", "2026-11-04"]  # 2 history days + forecast
    color = spec["spec"]["encoding"]["color"]
    assert color["scale"]["domainMid"] == 0 and color["scale"]["domain"] == [-1.2, 1.2]
    with pytest.raises(DataContractError, match="gap"):
        qc.capacity_heatmap(capacity_frame().drop(columns=["gap"]))


def test_a_frame_without_rows_draws_an_empty_chart():
    # Issue #14: a period or segment without data gives an empty chart (the report
    # goes on); a frame with rows but not for the metric asked is still an error.
    from qualitylab.scorecard import SCORECARD_COLUMNS

    empty = pd.DataFrame(columns=["vendor", *SCORECARD_COLUMNS])
    spec = spec_of(qc.kpi_intervals(empty, segment="vendor", metric="accuracy", target=0.95))
    assert [len(rows) for rows in spec["datasets"].values()] == [0]
    spec = spec_of(qc.trend_small_multiples(metric_frame().iloc[:0], metric="accuracy"))
    assert all(len(rows) == 0 for rows in spec["datasets"].values())
    with pytest.raises(ParameterError, match=r"no rows for metric 'sla'"):
        qc.kpi_intervals(metric_frame(), segment="vendor", metric="sla")


def test_sampling_plan_chart_shows_both_allocations_and_the_blind_strata():
    spec = registry_spec("sampling_plan_chart")
    bars, text = spec["layer"]
    rows = rows_of(spec, bars)
    by = {(r["stratum"], r["allocation"]): r["audits"] for r in rows}
    assert by[("VendorA / live_stream", "current")] == 60
    assert by[("VendorA / live_stream", "recommended")] == 70
    assert by[("<b>x</b> / live_stream", "current")] == 0
    assert bars["encoding"]["yOffset"]["field"] == "allocation"  # position, not colour alone
    labels = {r["stratum"]: r["blind"] for r in rows_of(spec, text)}
    assert labels["VendorA / live_stream"] == "blind (needs 420)"
    assert labels["VendorA / appeal"] == ""
    assert labels["<b>x</b> / live_stream"] == "blind (no number of audits)"
    # biggest strata first; a SamplingPlan-like object is accepted as is
    assert bars["encoding"]["y"]["sort"][0] == "VendorA / live_stream"

    class Plan:
        plan = plan_frame()

    assert qc.sampling_plan_chart(Plan()).to_dict()["layer"][0]["mark"]["type"] == "bar"
    with pytest.raises(DataContractError, match="recommended_audits"):
        qc.sampling_plan_chart(plan_frame().drop(columns=["recommended_audits"]))


_GRADIENT_CHARTS = """
import json, sys
import pandas as pd
import altair as alt
from qualitylab.reporting.charts import offline

def heat(k):
    df = pd.DataFrame({"x": list("abc") * 3, "y": list("aaabbbccc"), "v": [k + i for i in range(9)]})
    return alt.Chart(df).mark_rect().encode(x="x:N", y="y:N", color="v:Q").to_dict()

def line():
    df = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 0.75]})
    return alt.Chart(df).mark_line().encode(x="x:Q", y="y:Q").to_dict()

specs = [heat(0), line(), heat(5)]
bundles = [offline._renderer(s) for s in specs]
print(json.dumps(bundles))
"""


def _without_div_ids(text: str) -> str:
    return re.sub(r"ql-chart-[0-9a-f]{12}", "ql-chart-ID", text)


def test_deferred_chart_images_are_what_the_notebooks_kernel_renders(monkeypatch):
    """A batch worker fills a notebook's deferred SVGs exactly as its own kernel would.

    The kernel is a fresh process (vega numbers gradient ids from 0 in it); the
    worker has already rendered other notebooks' charts, so its own counter is
    further on: the filled images must still carry the kernel's ids.
    """
    import sys

    import nbformat

    from qualitylab.reporting.charts import offline

    kernel = subprocess.run(
        [sys.executable, "-c", _GRADIENT_CHARTS], capture_output=True, text=True, check=True
    )
    expected = json.loads(kernel.stdout)
    namespace: dict[str, Any] = {}
    exec(_GRADIENT_CHARTS.replace("print(json.dumps(bundles))", ""), namespace)
    specs = [b for b in namespace["specs"]]
    offline.to_svg(specs[0])  # the worker rendered an earlier notebook's heatmap
    monkeypatch.setenv(offline.DEFER_ENV, "1")
    deferred = [offline._renderer(s) for s in specs]
    monkeypatch.delenv(offline.DEFER_ENV)
    assert all(offline.PENDING_MIME in b for b in deferred)
    assert all(b["image/svg+xml"].startswith("ql-pending-svg-") for b in deferred)
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("display_data", data=b)])
            for b in deferred
        ]
    )
    nb = nbformat.reads(nbformat.writes(nb), as_version=4)  # as the worker reads it from disk
    assert offline.fill_deferred_images(nb) == 3
    for cell, want in zip(nb.cells, expected, strict=True):
        got = cell.outputs[0].data
        assert set(got) == {"text/html", "image/svg+xml"}
        assert got["image/svg+xml"] == want["image/svg+xml"]
        assert _without_div_ids(got["text/html"]) == _without_div_ids(want["text/html"])
    assert 'id="gradient_1"' in nb.cells[2].outputs[0].data["image/svg+xml"]
