"""scan(rebaseline=...): a series labelled ``new_normal`` restarts its baseline (issue #16, §4).

Constructed data: the own-shape generator of ``test_detect_young`` (market PH, vendors
Kestrel 62% and Osprey, ~180 QA audits a day), 49 days from 2026-03-02. Kestrel's accuracy
(93%) drops 8 points on day 28 (2026-03-30) and stays there; a second 8-point drop follows
on day 42 (2026-04-13). Scans use the report's shape: a 7-day period judged against the 28
days before it, as :func:`qualitylab.report.scan_period` runs them.
"""

from __future__ import annotations

import warnings
from datetime import date
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from conftest import write_tables
from test_detect_young import MARKET, START, TZ, make_tables

from qualitylab import report
from qualitylab.detect import REBASELINED_COLUMNS, rebaselined_series, scan
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.sources import open_dataset

DAYS = 49
SHIFT = 28  # Kestrel's accuracy 93% -> 85%
SHIFT2 = 42  # 85% -> 77%
KEY = ("accuracy", "vendor", "Kestrel")


def _day(d: int) -> date:
    return (START + pd.Timedelta(days=d)).date()


def _local_day(tables: dict[str, pd.DataFrame]) -> pd.Series:
    dec = tables["decisions"]
    local = dec["created_at"].dt.tz_convert(TZ).dt.tz_localize(None).dt.normalize()
    return pd.Series(((local - START).dt.days).to_numpy(), index=dec["decision_id"])


def _drop_accuracy(tables, vendor: str, from_day: int, points: float, seed: int) -> None:
    """From ``from_day`` on, turn audits of ``vendor`` that agree into disagreements.

    Each agreeing audit is flipped with probability ``points / accuracy``, so the
    vendor's accuracy drops by ``points`` and stays there (the opposite action, as
    ``make_tables`` makes its own errors).
    """
    dec, qa = tables["decisions"].set_index("decision_id"), tables["qa_audits"]
    action = qa["decision_id"].map(dec["action"])
    mine = (qa["decision_id"].map(dec["vendor"]) == vendor).to_numpy()
    later = (qa["decision_id"].map(_local_day(tables)) >= from_day).to_numpy()
    right = (qa["qa_action"] == action).to_numpy()
    accuracy = right[mine & later].mean()
    rng = np.random.default_rng(seed)
    flip = mine & later & right & (rng.random(len(qa)) < points / accuracy)
    wrong = np.where(action[flip] == "warn", "no_action", "warn")
    qa.loc[flip, "qa_action"] = wrong
    qa.loc[flip, "qa_policy"] = np.where(wrong == "warn", "spam", "none")


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    tables = make_tables(31, DAYS, level=1500.0)
    _drop_accuracy(tables, "Kestrel", SHIFT, 0.08, seed=1)
    _drop_accuracy(tables, "Kestrel", SHIFT2, 0.08, seed=2)
    qa = tables["qa_audits"]
    dec = tables["decisions"].set_index("decision_id")
    kestrel = (qa["decision_id"].map(dec["vendor"]) == "Kestrel").to_numpy()
    day = qa["decision_id"].map(_local_day(tables)).to_numpy()
    right = (qa["qa_action"] == qa["decision_id"].map(dec["action"])).to_numpy()
    levels = [
        right[kestrel & (day >= a) & (day < b)].mean()
        for a, b in ((0, SHIFT), (SHIFT, SHIFT2), (SHIFT2, DAYS))
    ]
    folder = write_tables(tmp_path_factory.mktemp("rebaseline") / "d", tables)
    return SimpleNamespace(ds=open_dataset(folder), levels=levels)


def _scan(ds, end: int, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped-series summary
        return scan(ds, MARKET, start=_day(end - 6), end=_day(end), **kw)


def _series(alerts: pd.DataFrame) -> set[tuple[str, str, str]]:
    """Every series that alerted: the primaries and the alerts grouped under them."""
    out = set(zip(alerts["metric"], alerts["dimension"], alerts["segment"], strict=True))
    for related in alerts["related"].dropna():
        for item in filter(None, related.split("; ")):
            metric, seg = item.split(" ", 1)
            out.add((metric, *seg.split("=", 1)))
    return out


def _rows(alerts: pd.DataFrame) -> dict[tuple[str, str, str], tuple]:
    cols = ["start_date", "end_date", "direction", "observed", "expected"]
    return {
        (r.metric, r.dimension, r.segment): tuple(getattr(r, c) for c in cols)
        for r in alerts.itertuples()
    }


def test_planted_levels(shifted):
    before, first, second = shifted.levels
    assert before == pytest.approx(0.93, abs=0.01)
    assert first == pytest.approx(0.85, abs=0.01)
    assert second == pytest.approx(0.77, abs=0.01)


# --------------------------------------------------------------------------- #
# The new level stops alerting on that series, and only on it
# --------------------------------------------------------------------------- #
def test_new_normal_stops_alerting_on_that_series_only(shifted):
    end = SHIFT + 9  # period 2026-04-02..04-08, baseline 03-05..04-01
    before = _scan(shifted.ds, end)
    row = before[(before["metric"] == "accuracy") & (before["segment"] == "Kestrel")]
    assert len(row) == 1 and row.iloc[0]["direction"] == "down"
    assert row.iloc[0]["expected"] == pytest.approx(shifted.levels[0], abs=0.01)

    after = _scan(shifted.ds, end, rebaseline={KEY: _day(SHIFT)})
    assert KEY in _series(before)
    assert KEY not in _series(after)
    # every other series alerts as before (the same windows and values)
    assert _series(after) == _series(before) - {KEY}
    rows_before, rows_after = _rows(before), _rows(after)
    for key in rows_before.keys() & rows_after.keys():
        assert rows_after[key] == rows_before[key], key
    # 3 of its 28 baseline days are since the date: the young rule judges it, and a day
    # against 7-9 days at the new level is no news
    rb = rebaselined_series(after)
    assert list(rb.columns) == REBASELINED_COLUMNS
    assert rb.to_dict("records") == [
        {
            "market": MARKET,
            "metric": "accuracy",
            "dimension": "vendor",
            "segment": "Kestrel",
            "from": "2026-03-30",
            "days": 10,
            "rule": "young",
            "note": "days before it left out; judged by the young-baseline rule "
            "(under 7 baseline days since)",
        }
    ]
    assert rebaselined_series(before).empty


def test_a_further_shift_after_the_rebaseline_is_still_found(shifted):
    end = SHIFT2 + 6  # period 2026-04-13..04-19: the second drop
    rebase = {KEY: _day(SHIFT)}
    alerts = _scan(shifted.ds, end, rebaseline=rebase)
    assert KEY in _series(alerts)  # here grouped under site=Kestrel-Cebu, the same audits
    rb = rebaselined_series(alerts).iloc[0]
    assert (rb["rule"], rb["days"]) == ("full", 21)  # 14 baseline days since the date
    # the series' own alert is judged against the level since the re-baseline
    own = _scan(shifted.ds, end, rebaseline=rebase, dimensions=("vendor",), metrics=("accuracy",))
    row = own[own["segment"] == "Kestrel"].iloc[0]
    assert row["start_date"] == pd.Timestamp(_day(SHIFT2)) and row["direction"] == "down"
    assert row["expected"] == pytest.approx(shifted.levels[1], abs=0.01)
    assert row["observed"] == pytest.approx(shifted.levels[2], abs=0.01)
    assert row["p_adjusted"] < 1e-3
    # without it the same days are measured against the level before the first drop
    plain = _scan(shifted.ds, end, dimensions=("vendor",), metrics=("accuracy",))
    assert plain[plain["segment"] == "Kestrel"].iloc[0]["expected"] > shifted.levels[1] + 0.03


# scan of 2026-04-02..04-08 against 03-05..04-01: the date decides the rule
@pytest.mark.parametrize(
    ("day", "rule", "alerted", "note"),
    [
        (0, "full", True, "from on or before the first day loaded (2026-03-05): nothing dropped"),
        (5, "full", True, "days before it left out; judged by the full-baseline detectors"),
        (SHIFT, "young", False, "days before it left out; judged by the young-baseline rule"),
        (SHIFT + 7, "none", False, "days before it left out; not judged: too little data since"),
        (DAYS + 1, "none", False, "from after the scan's end (2026-04-08): no data since"),
    ],
)
def test_the_date_decides_how_the_series_is_judged(shifted, day, rule, alerted, note):
    kw = {"dimensions": ("vendor",), "metrics": ("accuracy",)}
    alerts = _scan(shifted.ds, SHIFT + 9, rebaseline={KEY: _day(day)}, **kw)
    rb = rebaselined_series(alerts).iloc[0]
    assert rb["rule"] == rule and rb["note"].startswith(note)
    assert (alerts["segment"] == "Kestrel").any() == alerted
    if day == 0:  # a date before the baseline changes nothing
        plain = _scan(shifted.ds, SHIFT + 9, **kw)
        assert _rows(alerts) == _rows(plain)
    if rule == "none":  # the series says why in attrs["skipped"]
        assert any(r["segment"] == "Kestrel" for r in alerts.attrs["skipped"])


# --------------------------------------------------------------------------- #
# Unknown series and bad arguments
# --------------------------------------------------------------------------- #
def test_a_series_that_does_not_exist_is_noted_not_an_error(shifted):
    rebase = {
        ("accuracy", "vendor", "Nobody"): "2026-03-30",  # no such vendor
        ("ai_recall", "vendor", "Kestrel"): "2026-03-30",  # AI metrics are not sliced by vendor
        ("accuracy", "market", MARKET): date(2026, 3, 30),
    }
    with pytest.warns(UserWarning, match=r"2 re-baselined series not in this scan, ignored"):
        alerts = scan(
            shifted.ds,
            MARKET,
            start=_day(SHIFT + 3),
            end=_day(SHIFT + 9),
            dimensions=("market", "vendor"),
            metrics=("accuracy",),
            rebaseline=rebase,
        )
    rb = rebaselined_series(alerts).set_index(["metric", "dimension", "segment"])
    assert rb.loc[("accuracy", "vendor", "Nobody"), "rule"] == "unknown"
    assert rb.loc[("ai_recall", "vendor", "Kestrel"), "note"] == (
        "no such series in this scan: ignored"
    )
    assert rb.loc[("accuracy", "market", MARKET), "rule"] == "young"
    assert (alerts["segment"] == "Kestrel").any()  # not re-baselined: still alerts


def test_an_empty_scan_lists_the_keys_as_not_judged(shifted):
    with pytest.warns(UserWarning, match="only 7 day"):
        empty = scan(shifted.ds, MARKET, end=_day(6), rebaseline={KEY: "2026-03-04"})
    rb = rebaselined_series(empty)
    assert rb["rule"].tolist() == ["none"]
    assert rb["note"][0] == "not judged: the scan is empty (see alerts.attrs['note'])"


@pytest.mark.parametrize(
    "value", ["2026-13-01", "yesterday", "", None, 20260330, pd.NaT, np.datetime64("NaT")]
)
def test_a_bad_date_names_the_key(shifted, value):
    with pytest.raises(ParameterError, match=r"rebaseline\[\('accuracy', 'vendor', 'Kestrel'\)\]"):
        scan(shifted.ds, MARKET, rebaseline={KEY: value})


@pytest.mark.parametrize(
    "rebaseline", [{("accuracy", "vendor"): "2026-03-30"}, {"accuracy": "2026-03-30"}, [KEY]]
)
def test_a_bad_key_or_mapping_is_a_parameter_error(shifted, rebaseline):
    with pytest.raises(ParameterError, match="rebaseline") as info:
        scan(shifted.ds, MARKET, rebaseline=rebaseline)
    assert info.value.key == "rebaseline"


def test_dates_may_be_timestamps_or_iso_strings(shifted):
    kw = {"dimensions": ("vendor",), "metrics": ("accuracy",)}
    for value in ("2026-03-30", pd.Timestamp("2026-03-30"), date(2026, 3, 30)):
        alerts = _scan(shifted.ds, SHIFT + 9, rebaseline={KEY: value}, **kw)
        assert rebaselined_series(alerts).iloc[0]["from"] == "2026-03-30"


# --------------------------------------------------------------------------- #
# A segment that stopped, re-baselined after its stop
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def heron(tmp_path_factory):
    """40 days; vendor Heron's last decisions are on day 34, no event explains it."""
    tables = make_tables(
        21,
        40,
        level=300.0,
        segments=[{"vendor": "Heron", "queue": "live_report", "first": 0, "last": 34, "level": 80}],
    )
    return open_dataset(write_tables(tmp_path_factory.mktemp("heron") / "d", tables))


def test_a_stop_before_the_rebaseline_is_not_alerted_a_later_one_is(heron):
    kw = {"dimensions": ("vendor",), "metrics": ("volume",)}
    key = ("volume", "vendor", "Heron")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = scan(heron, MARKET, rebaseline={key: _day(36)}, **kw)
        earlier = scan(heron, MARKET, rebaseline={key: _day(30)}, **kw)
    stopped = {r["segment"]: r for r in after.attrs["stopped"]}["Heron"]
    assert not stopped["alerted"]
    assert stopped["note"] == "segment stopped before its volume was re-baselined on 2026-04-07"
    assert not (after["segment"] == "Heron").any()
    # re-baselined while it was still active: the stop is a further change
    row = earlier[earlier["segment"] == "Heron"]
    assert len(row) == 1 and row.iloc[0]["detector"] == "segment_stopped"


# --------------------------------------------------------------------------- #
# report.scan_period passes it through
# --------------------------------------------------------------------------- #
def test_scan_period_passes_rebaseline_through(monkeypatch):
    calls = []

    def fake_scan(ds, market, **kw):
        calls.append(kw)
        if "start" in kw:  # as for a market too young for the period's baseline
            raise QualityLabError("no baseline")
        return pd.DataFrame()

    monkeypatch.setattr("qualitylab.detect.scan", fake_scan)
    monkeypatch.setattr(
        report.m, "resolve_period", lambda *a, **k: SimpleNamespace(start=date(2026, 3, 28))
    )
    ctx = SimpleNamespace(market=MARKET, start=date(2026, 4, 2), end=date(2026, 4, 8))
    rebase = {KEY: "2026-03-30"}
    report.scan_period(None, ctx, rebaseline=rebase)
    assert [c["rebaseline"] for c in calls] == [rebase, rebase]


def test_scan_period_raises_a_bad_rebaseline(shifted):
    ctx = SimpleNamespace(market=MARKET, start=_day(SHIFT + 3), end=_day(SHIFT + 9))
    with pytest.raises(ParameterError, match="rebaseline"):
        report.scan_period(shifted.ds, ctx, rebaseline={KEY: "not a date"})
