"""The alert store: identity, statuses, labels, precision, atomic writes, CLI, replay."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from qualitylab import alertstore as st
from qualitylab.cli import main
from qualitylab.errors import DataContractError, ParameterError

D = date.fromisoformat


def alert(
    start: str = "2026-11-02",
    end: str = "2026-11-08",
    *,
    metric: str = "accuracy",
    dimension: str = "vendor",
    segment: str = "VendorC",
    direction: str = "down",
    severity: str = "high",
    detector: str = "p_chart",
    market: str = "ID",
    **extra: object,
) -> dict:
    return {
        "market": market,
        "metric": metric,
        "dimension": dimension,
        "segment": segment,
        "start_date": pd.Timestamp(start),
        "end_date": pd.Timestamp(end),
        "observed": 0.81,
        "expected": 0.91,
        "direction": direction,
        "severity": severity,
        "detector": detector,
        "p_value": 1e-6,
        **extra,
    }


def frame(*alerts: dict) -> pd.DataFrame:
    if not alerts:
        return pd.DataFrame(columns=list(alert().keys()))
    return pd.DataFrame(list(alerts))


def run(store, alerts, as_of, *, labels=None, period_end=None, market="ID", run_id=None):
    """One run: its rows, and the store with them committed (in memory)."""
    end = D(period_end or as_of)
    rows = st.track(
        store,
        alerts,
        labels,
        run_id=run_id or f"r-{as_of}",
        as_of=as_of,
        market=market,
        period=(end - timedelta(days=27), end),
    )
    keep = ~((store["market"] == market) & (store["as_of"] == pd.Timestamp(as_of)))
    return rows, pd.concat([store[keep], rows], ignore_index=True)


def labels_frame(*rows: tuple[str, str, str]) -> pd.DataFrame:
    """(labelled_at, alert_id, label) rows as read_labels returns them."""
    return pd.DataFrame(
        {
            "labelled_at": pd.to_datetime([r[0] for r in rows], utc=True),
            "alert_id": [r[1] for r in rows],
            "label": [r[2] for r in rows],
            "note": [""] * len(rows),
            "by": [""] * len(rows),
        }
    )


EMPTY = st.read_store("/nonexistent/folder")


# --------------------------------------------------------------------------- #
# identity
# --------------------------------------------------------------------------- #
def test_empty_store_has_the_columns_and_dtypes():
    assert list(EMPTY.columns) == st.STORE_COLUMNS
    assert str(EMPTY["start_date"].dtype) == "datetime64[s]"
    assert str(EMPTY["p_value"].dtype) == "float64"
    assert pd.api.types.is_string_dtype(EMPTY["alert_id"])


def test_new_id_is_readable_and_stable():
    rows, _ = run(EMPTY, frame(alert()), "2026-11-08")
    again, _ = run(EMPTY, frame(alert()), "2026-11-08")
    (aid,) = rows["alert_id"]
    assert aid.startswith("ID-20261102-accuracy-") and len(aid.rsplit("-", 1)[1]) == 6
    assert again["alert_id"].tolist() == [aid]
    assert rows["status"].tolist() == ["new"]
    assert rows["first_seen"].tolist() == rows["last_seen"].tolist() == [pd.Timestamp("2026-11-08")]


@pytest.mark.parametrize(
    ("second", "same"),
    [
        (("2026-11-05", "2026-11-12"), True),  # overlaps
        (("2026-11-09", "2026-11-15"), True),  # starts the day after its end
        (("2026-11-10", "2026-11-15"), False),  # a day in between
        (("2026-10-20", "2026-11-01"), True),  # ends the day before it starts
        (("2026-10-20", "2026-10-31"), False),
    ],
)
def test_identity_overlapping_adjacent_and_apart(second, same):
    rows1, store = run(EMPTY, frame(alert()), "2026-11-08")
    # the next run's period ends with the second window (its last day)
    rows2, _ = run(store, frame(alert(*second)), "2026-11-16", period_end=second[1])
    first_id = rows1["alert_id"].iat[0]
    raised = rows2[rows2["status"] != "resolved"]
    assert (raised["alert_id"].iat[0] == first_id) is same
    assert raised["status"].tolist() == ["ongoing" if same else "new"]
    resolved = rows2.loc[rows2["status"] == "resolved", "alert_id"].tolist()
    # the first alert resolves when the run scanned past its window without it
    assert resolved == ([first_id] if not same and second[1] > "2026-11-08" else [])


@pytest.mark.parametrize(
    "change",
    [{"direction": "up"}, {"segment": "VendorA"}, {"dimension": "site"}, {"metric": "volume"}],
)
def test_another_direction_or_series_is_another_alert(change):
    rows1, store = run(EMPTY, frame(alert()), "2026-11-08")
    rows2, _ = run(store, frame(alert(**change)), "2026-11-08", run_id="x")  # a rerun
    rows3, _ = run(store, frame(alert(**change)), "2026-11-09", period_end="2026-11-08")
    assert rows2["alert_id"].iat[0] != rows1["alert_id"].iat[0]
    assert rows3.set_index("status")["alert_id"].get("new") != rows1["alert_id"].iat[0]


def test_ids_are_never_reused(monkeypatch):
    # two alerts whose hash collides get different ids
    import hashlib

    real = hashlib.sha256
    same = iter([b"same", b"same", b"other"])  # the 2nd alert's first try collides
    monkeypatch.setattr(hashlib, "sha256", lambda b: real(next(same)))
    rows, _ = run(EMPTY, frame(alert(), alert(segment="VendorA")), "2026-11-08")
    assert rows["alert_id"].nunique() == 2


# --------------------------------------------------------------------------- #
# statuses
# --------------------------------------------------------------------------- #
def test_new_ongoing_resolved_once():
    r1, store = run(EMPTY, frame(alert("2026-11-02", "2026-11-08")), "2026-11-08")
    r2, store = run(store, frame(alert("2026-11-02", "2026-11-09")), "2026-11-09")
    r3, store = run(store, frame(), "2026-11-10")  # the scan no longer raises it
    r4, store = run(store, frame(), "2026-11-11")
    r5, store = run(store, frame(alert("2026-11-02", "2026-11-09")), "2026-11-12")  # old window
    assert [r["status"].tolist() for r in (r1, r2, r3, r4, r5)] == [
        ["new"],
        ["ongoing"],
        ["resolved"],
        [],
        [],
    ]
    assert r3["resolved_on"].tolist() == [pd.Timestamp("2026-11-10")]
    assert r3["alert_id"].iat[0] == r1["alert_id"].iat[0] == r2["alert_id"].iat[0]
    assert r2["first_seen"].iat[0] == pd.Timestamp("2026-11-08")
    latest = st.latest_alerts(store)
    assert latest[["status", "first_seen", "last_seen"]].astype(str).values.tolist() == [
        ["resolved", "2026-11-08", "2026-11-09"]
    ]


def test_a_window_that_ended_resolves_while_the_scan_still_finds_it():
    r1, store = run(EMPTY, frame(alert("2026-11-02", "2026-11-08")), "2026-11-08")
    # two days after the window's end: still ongoing (a window can lag the last day)
    r2, store = run(store, frame(alert("2026-11-02", "2026-11-08")), "2026-11-10")
    r3, store = run(store, frame(alert("2026-11-02", "2026-11-08")), "2026-11-11")
    r4, store = run(store, frame(alert("2026-11-02", "2026-11-08")), "2026-11-12")
    assert [r["status"].tolist() for r in (r1, r2, r3, r4)] == [
        ["new"],
        ["ongoing"],
        ["resolved"],
        [],
    ]


def test_a_run_whose_period_ends_before_the_window_resolves_nothing():
    _, store = run(EMPTY, frame(alert("2026-11-02", "2026-11-15")), "2026-11-16")
    rows, _ = run(store, frame(), "2026-11-17", period_end="2026-11-14")
    assert rows.empty


def test_an_empty_scan_with_a_note_resolves_nothing():
    _, store = run(EMPTY, frame(alert()), "2026-11-08")
    failed = frame()
    failed.attrs["note"] = "no decisions for ID"
    rows, _ = run(store, failed, "2026-11-09")
    assert rows.empty


def test_a_resolved_alert_that_comes_back_is_reopened():
    r1, store = run(EMPTY, frame(alert("2026-11-02", "2026-11-08")), "2026-11-08")
    r2, store = run(store, frame(), "2026-11-09")
    r3, store = run(store, frame(alert("2026-11-02", "2026-11-12")), "2026-11-12")
    assert [r["status"].tolist() for r in (r1, r2, r3)] == [["new"], ["resolved"], ["ongoing"]]
    assert r3["alert_id"].iat[0] == r1["alert_id"].iat[0]
    assert r3["resolved_on"].isna().all()


# --------------------------------------------------------------------------- #
# labels and what they do
# --------------------------------------------------------------------------- #
def test_false_alarm_mutes_and_the_latest_label_wins():
    r1, store = run(EMPTY, frame(alert()), "2026-11-08")
    aid = r1["alert_id"].iat[0]
    fa = labels_frame(("2026-11-08T09:00Z", aid, "false_alarm"))
    assert st.latest_alerts(store, fa)["status"].tolist() == ["muted"]  # shown muted at once
    r2, store = run(store, frame(alert("2026-11-02", "2026-11-09")), "2026-11-09", labels=fa)
    assert r2[["status", "label"]].values.tolist() == [["muted", "false_alarm"]]
    assert st.status_counts(store, fa).set_index("status")["alerts"]["muted"] == 1
    back = labels_frame(
        ("2026-11-08T09:00Z", aid, "false_alarm"), ("2026-11-09T10:00Z", aid, "confirmed")
    )
    assert st.latest_alerts(store, back)["status"].tolist() == ["ongoing"]
    r3, store = run(store, frame(alert("2026-11-02", "2026-11-10")), "2026-11-10", labels=back)
    assert r3[["status", "label"]].values.tolist() == [["ongoing", "confirmed"]]
    r4, _ = run(store, frame(), "2026-11-11", labels=fa)  # muted alerts resolve too
    assert r4["status"].tolist() == ["resolved"]


def test_expected_mutes_too():
    r1, store = run(EMPTY, frame(alert()), "2026-11-08")
    lab = labels_frame(("2026-11-08T09:00Z", r1["alert_id"].iat[0], "expected"))
    r2, _ = run(store, frame(alert("2026-11-02", "2026-11-09")), "2026-11-09", labels=lab)
    assert r2["status"].tolist() == ["muted"]


def test_new_normal_rebaselines_from_the_window_start_and_a_later_shift_is_new():
    r1, store = run(EMPTY, frame(alert("2026-11-02", "2026-11-08")), "2026-11-08")
    _, store = run(store, frame(alert("2026-11-03", "2026-11-09")), "2026-11-09")
    aid = r1["alert_id"].iat[0]
    lab = labels_frame(("2026-11-10T08:00Z", aid, "new_normal"))
    assert st.rebaselines(store, lab, market="ID") == {
        ("accuracy", "vendor", "VendorC"): D("2026-11-02")
    }
    assert st.rebaselines(store, lab, market="SG") == {}
    relabelled = labels_frame(
        ("2026-11-10T08:00Z", aid, "new_normal"), ("2026-11-11T08:00Z", aid, "confirmed")
    )
    assert st.rebaselines(store, relabelled, market="ID") == {}
    # the re-baselined scan raises a further shift that starts after the new normal began
    r3, _ = run(store, frame(alert("2026-11-10", "2026-11-12")), "2026-11-12", labels=lab)
    assert sorted(r3[["alert_id", "status"]].values.tolist()) == sorted(
        [[aid, "resolved"], [r3.loc[r3.status == "new", "alert_id"].iat[0], "new"]]
    )
    assert r3.loc[r3.status == "new", "alert_id"].iat[0] != aid


# --------------------------------------------------------------------------- #
# reruns and past dates
# --------------------------------------------------------------------------- #
def test_a_rerun_for_the_same_date_replaces_it(tmp_path):
    day1 = frame(alert("2026-11-02", "2026-11-08"))
    st.update_store(
        tmp_path,
        day1,
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=(D("2026-10-12"), D("2026-11-08")),
    )
    for run_id in ("b", "c"):
        rows = st.update_store(
            tmp_path,
            frame(alert("2026-11-02", "2026-11-09")),
            run_id=run_id,
            as_of="2026-11-09",
            market="ID",
            period=("2026-10-13", "2026-11-09"),
        )
        assert rows["status"].tolist() == ["ongoing"]  # against the earlier date only
    store = st.read_store(tmp_path)
    assert store.groupby("as_of").size().tolist() == [1, 1]
    assert store["run_id"].tolist() == ["a", "c"]
    # a rerun that finds nothing replaces the date too (the earlier date's alert resolves)
    rows = st.update_store(
        tmp_path,
        frame(),
        run_id="d",
        as_of="2026-11-09",
        market="ID",
        period=("2026-10-13", "2026-11-09"),
    )
    assert rows["status"].tolist() == ["resolved"]
    assert st.read_store(tmp_path)["run_id"].tolist() == ["a", "d"]


def test_commit_replaces_the_runs_it_stands_for(tmp_path):
    rows, _ = run(EMPTY, frame(alert()), "2026-11-08")
    st.commit(tmp_path, rows)
    st.commit(tmp_path, rows)
    assert len(st.read_store(tmp_path)) == 1
    st.commit(tmp_path, EMPTY, runs=[("SG", "2026-11-08")])  # another market: kept
    assert len(st.read_store(tmp_path)) == 1
    st.commit(tmp_path, EMPTY, runs=[("ID", date(2026, 11, 8))])  # a rerun that found nothing
    assert st.read_store(tmp_path).empty


def test_reruns_of_one_market_leave_the_others(tmp_path):
    period = ("2026-10-12", "2026-11-08")
    st.update_store(
        tmp_path, frame(alert()), run_id="a", as_of="2026-11-08", market="ID", period=period
    )
    sg = frame(alert(market="SG"))
    st.update_store(tmp_path, sg, run_id="b", as_of="2026-11-08", market="SG", period=period)
    st.update_store(tmp_path, sg, run_id="c", as_of="2026-11-08", market="SG", period=period)
    store = st.read_store(tmp_path)
    assert sorted(zip(store.market, store.run_id, strict=True)) == [("ID", "a"), ("SG", "c")]


def test_a_backfill_reuses_later_ids_and_leaves_later_rows():
    r_late, store = run(EMPTY, frame(alert("2026-11-03", "2026-11-15")), "2026-11-15")
    r_early, store = run(store, frame(alert("2026-11-02", "2026-11-08")), "2026-11-08")
    assert r_early["alert_id"].tolist() == r_late["alert_id"].tolist()
    assert r_early["status"].tolist() == ["new"]
    assert store.sort_values("as_of")["status"].tolist() == ["new", "new"]  # later row kept
    latest = st.latest_alerts(store)
    assert latest[["first_seen", "last_seen"]].astype(str).values.tolist() == [
        ["2026-11-08", "2026-11-15"]
    ]


# --------------------------------------------------------------------------- #
# incidents
# --------------------------------------------------------------------------- #
def grouped(*rows: tuple[dict, str, str]) -> pd.DataFrame:
    """Alerts with the incidents helper's columns: (alert, their incident key, role)."""
    out = frame(*[r[0] for r in rows])
    out["incident_id"] = [r[1] for r in rows]
    out["incident_role"] = [r[2] for r in rows]
    out["incident_cause"] = ["cause"] * len(rows)
    out["incident_event"] = [""] * len(rows)
    return out


def test_children_carry_the_leads_alert_id_and_the_incident_keeps_it():
    acc = alert()
    ovr = alert(metric="override_rate", dimension="policy", segment="scam", direction="up")
    r1, store = run(EMPTY, grouped((ovr, "k1", "child"), (acc, "k1", "lead")), "2026-11-08")
    lead_id = r1.loc[r1.metric == "accuracy", "alert_id"].iat[0]
    assert set(r1["incident_id"]) == {lead_id}
    assert r1.set_index("metric")["incident_role"].to_dict() == {
        "accuracy": "lead",
        "override_rate": "child",
    }
    assert r1["incident_cause"].tolist() == ["cause", "cause"]
    # next run the grouping picks the other alert as lead: the incident keeps its id
    acc2 = alert("2026-11-02", "2026-11-09")
    ovr2 = {**ovr, "end_date": pd.Timestamp("2026-11-09")}
    r2, store = run(store, grouped((ovr2, "k9", "lead"), (acc2, "k9", "child")), "2026-11-09")
    assert set(r2["incident_id"]) == {lead_id}
    assert r2.set_index("metric")["incident_role"].to_dict() == {
        "accuracy": "child",
        "override_rate": "lead",
    }
    # they split: the group holding the old lead keeps the id, the other takes its own
    r3, _ = run(store, grouped((ovr2, "k1", "lead"), (acc2, "k2", "lead")), "2026-11-10")
    ids = r3.set_index("metric")["incident_id"].to_dict()
    assert ids["accuracy"] == lead_id
    assert ids["override_rate"] == r3.loc[r3.metric == "override_rate", "alert_id"].iat[0]


def test_without_grouping_each_alert_is_its_own_incident():
    rows, _ = run(EMPTY, frame(alert(), alert(segment="VendorA")), "2026-11-08")
    assert (rows["incident_id"] == rows["alert_id"]).all()
    assert set(rows["incident_role"]) == {"lead"}


# --------------------------------------------------------------------------- #
# files: atomic store, labels
# --------------------------------------------------------------------------- #
def test_store_round_trip_keeps_hostile_segments(tmp_path):
    nasty = [
        "<script>alert(1)</script>",
        '"><svg onload=alert(3)>',
        '=HYPERLINK("x")',
        "a,b\nc",
        "ทดสอบ 🚨",
    ]
    alerts = frame(*[alert(segment=s) for s in nasty])
    rows = st.update_store(
        tmp_path,
        alerts,
        run_id="r",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    back = st.read_store(tmp_path)
    assert sorted(back["segment"]) == sorted(nasty)
    assert back["alert_id"].tolist() == rows["alert_id"].tolist()
    assert all("<" not in a and "\n" not in a for a in back["alert_id"])
    csv_text = st.alerts_csv(st.latest_alerts(back))
    again = pd.read_csv(pd.io.common.StringIO(csv_text), dtype=str, keep_default_na=False)
    assert sorted(again["segment"]) == sorted(["'" + s if s.startswith("=") else s for s in nasty])
    assert list(again.columns[: len(st.LIST_COLUMNS)]) == st.LIST_COLUMNS


def test_a_failed_write_leaves_the_old_store(tmp_path, monkeypatch):
    st.update_store(
        tmp_path,
        frame(alert()),
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    before = (tmp_path / st.STORE_FILE).read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        st.update_store(
            tmp_path,
            frame(),
            run_id="b",
            as_of="2026-11-09",
            market="ID",
            period=("2026-10-13", "2026-11-09"),
        )
    assert (tmp_path / st.STORE_FILE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".alerts.lock", st.STORE_FILE]


def test_label_alert_appends_and_reads_back(tmp_path):
    rows = st.update_store(
        tmp_path,
        frame(alert()),
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    aid = rows["alert_id"].iat[0]
    note = 'cohort "B", trained\non 2026-11-09; =1+1 ✓'
    first = st.label_alert(
        tmp_path,
        aid,
        "false_alarm",
        note=note,
        by="ana",
        labelled_at=datetime(2026, 11, 9, 8, tzinfo=UTC),
    )
    st.label_alert(
        tmp_path, aid, "confirmed", by="bo", labelled_at=datetime(2026, 11, 10, 8, tzinfo=UTC)
    )
    assert first.labelled_at == "2026-11-09T08:00:00Z"
    text = (tmp_path / st.LABELS_FILE).read_text(encoding="utf-8")
    assert text.startswith("labelled_at,alert_id,label,note,by\n2026-11-09T08:00:00Z,")
    labels = st.read_labels(tmp_path)
    assert labels["label"].tolist() == ["false_alarm", "confirmed"]
    assert labels["note"].tolist() == [note, ""]
    assert str(labels["labelled_at"].dtype) == "datetime64[s, UTC]"
    assert st.latest_labels(labels)["label"].tolist() == ["confirmed"]


@pytest.mark.parametrize(
    ("alert_id", "label", "message"),
    [
        ("ID-nope", "confirmed", "unknown alert id 'ID-nope'"),
        (None, "wrong", "unknown label 'wrong'"),
    ],
)
def test_label_errors_write_nothing(tmp_path, alert_id, label, message):
    rows = st.update_store(
        tmp_path,
        frame(alert()),
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    with pytest.raises(ParameterError, match=message):
        st.label_alert(tmp_path, alert_id or rows["alert_id"].iat[0], label)
    assert not (tmp_path / st.LABELS_FILE).exists()


def test_label_needs_a_folder_with_a_store(tmp_path):
    with pytest.raises(ParameterError, match="does not exist"):
        st.label_alert(tmp_path / "missing", "x", "confirmed")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ParameterError, match="no alert store"):
        st.label_alert(tmp_path, "x", "confirmed")
    assert not (tmp_path / st.LABELS_FILE).exists()


def test_a_damaged_labels_file_is_named(tmp_path):
    rows = st.update_store(
        tmp_path,
        frame(alert()),
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    path = tmp_path / st.LABELS_FILE
    path.write_text("labelled_at,alert_id,label,note,by\n2026-11-09T08:00:00Z,x,maybe,,\n")
    with pytest.raises(DataContractError, match=r"1 row\(s\) with an unknown label, e.g. 'maybe'"):
        st.read_labels(tmp_path)
    before = path.read_bytes()
    with pytest.raises(DataContractError):
        st.label_alert(tmp_path, rows["alert_id"].iat[0], "confirmed")
    assert path.read_bytes() == before
    path.write_text("when,alert_id,label\n")
    with pytest.raises(DataContractError, match="no column"):
        st.read_labels(tmp_path)


def test_a_failed_label_write_leaves_the_old_file(tmp_path, monkeypatch):
    rows = st.update_store(
        tmp_path,
        frame(alert()),
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    aid = rows["alert_id"].iat[0]
    st.label_alert(tmp_path, aid, "confirmed")
    before = (tmp_path / st.LABELS_FILE).read_bytes()
    monkeypatch.setattr(os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        st.label_alert(tmp_path, aid, "false_alarm")
    assert (tmp_path / st.LABELS_FILE).read_bytes() == before


# --------------------------------------------------------------------------- #
# precision
# --------------------------------------------------------------------------- #
def test_precision_on_a_constructed_label_set():
    from statsmodels.stats.proportion import proportion_confint

    # 10 accuracy alerts by p_chart (7 confirmed, 2 false alarms, 1 expected) and
    # 4 volume alerts by stl_mad (1 confirmed, 2 false alarms, 1 new normal); 2 unlabelled
    specs = (
        [("accuracy", "p_chart", "confirmed")] * 7
        + [("accuracy", "p_chart", "false_alarm")] * 2
        + [("accuracy", "p_chart", "expected")]
        + [("volume", "stl_mad", "confirmed")]
        + [("volume", "stl_mad", "false_alarm")] * 2
        + [("volume", "stl_mad", "new_normal")]
        + [("volume", "stl_mad", None)] * 2
    )
    alerts = frame(
        *[alert(metric=m, detector=d, segment=f"s{i}") for i, (m, d, _) in enumerate(specs)]
    )
    rows, store = run(EMPTY, alerts, "2026-11-08")
    ids = rows.set_index("segment")["alert_id"]
    labels = labels_frame(
        *[("2026-11-09T08:00Z", ids[f"s{i}"], lab) for i, (_, _, lab) in enumerate(specs) if lab],
        ("2026-11-09T09:00Z", "an-id-not-in-the-store", "confirmed"),
    )
    # a relabel: s7 was a false alarm first, confirmed later (counts once, as confirmed)
    labels = pd.concat([labels_frame(("2026-11-08T08:00Z", ids["s7"], "false_alarm")), labels])
    table = st.alert_precision(store, labels)
    assert list(table.columns) == st.PRECISION_COLUMNS
    got = table.set_index(["by", "group"])
    expect = {
        ("all", "all"): (14, 8),
        ("metric", "accuracy"): (10, 7),
        ("metric", "volume"): (4, 1),
        ("detector", "p_chart"): (10, 7),
        ("detector", "stl_mad"): (4, 1),
    }
    assert set(got.index) == set(expect)
    for key, (n, k) in expect.items():
        row = got.loc[key]
        assert (row["n"], row["confirmed"]) == (n, k)
        assert row["precision"] == pytest.approx(k / n)
        low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
        assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert got.loc[("metric", "volume"), ["false_alarm", "new_normal"]].tolist() == [2, 1]
    # statsmodels: proportion_confint(7, 10, method="wilson") = (0.3968, 0.8922)
    assert round(got.loc[("metric", "accuracy"), "ci_low"], 4) == 0.3968
    assert st.alert_precision(store, None).empty


# --------------------------------------------------------------------------- #
# command line
# --------------------------------------------------------------------------- #
@pytest.fixture
def reports(tmp_path) -> tuple[Path, list[str]]:
    alerts = frame(alert(), alert(segment="<b>VendorA</b>", severity="low"))
    rows = st.update_store(
        tmp_path,
        alerts,
        run_id="a",
        as_of="2026-11-08",
        market="ID",
        period=("2026-10-12", "2026-11-08"),
    )
    sg = frame(alert(market="SG", metric="ai_recall", dimension="language", segment="ms"))
    st.update_store(
        tmp_path,
        sg,
        run_id="a",
        as_of="2026-11-08",
        market="SG",
        period=("2026-10-12", "2026-11-08"),
    )
    return tmp_path, rows["alert_id"].tolist()


def test_cli_list_csv_label_and_stats(reports, capsys):
    folder, ids = reports
    assert (
        main(["alerts", "list", "--reports", str(folder), "--market", "ID", "--format", "csv"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith(",".join(st.LIST_COLUMNS) + ",")
    assert "<b>VendorA</b>" in out and ids[0] in out and "SG-" not in out
    assert (
        main(
            [
                "alerts",
                "label",
                ids[0],
                "--as",
                "false_alarm",
                "--note",
                "cohort B",
                "--by",
                "ana",
                "--reports",
                str(folder),
            ]
        )
        == 0
    )
    assert "labelled " + ids[0] in capsys.readouterr().out
    out_file = folder / "list.csv"
    assert (
        main(
            [
                "alerts",
                "list",
                "--reports",
                str(folder),
                "--status",
                "muted",
                "--format",
                "csv",
                "--out",
                str(out_file),
            ]
        )
        == 0
    )
    listed = pd.read_csv(out_file)
    assert listed[["alert_id", "status", "label"]].values.tolist() == [
        [ids[0], "muted", "false_alarm"]
    ]
    assert main(["alerts", "list", "--reports", str(folder)]) == 0
    table = capsys.readouterr().out
    assert "muted" in table and "SG-" in table
    assert main(["alerts", "stats", "--reports", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Alert precision" in out and "false_alarm" in out
    assert "ID" in out and "resolved" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["alerts", "label", "ID-nope", "--as", "confirmed"], "unknown alert id 'ID-nope'"),
        (["alerts", "label", "{id}", "--as", "bogus"], "unknown label 'bogus'"),
        (["alerts", "list", "--status", "open"], "unknown status 'open'"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(reports, capsys, argv, message):
    folder, ids = reports
    argv = [a.replace("{id}", ids[0]) for a in argv] + ["--reports", str(folder)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("qualitylab alerts: error: ") and message in err[0]
    assert not (folder / st.LABELS_FILE).exists()


def test_cli_missing_reports_folder(tmp_path, capsys):
    for argv in (["alerts", "stats"], ["alerts", "label", "x", "--as", "confirmed"]):
        assert main([*argv, "--reports", str(tmp_path / "nope")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "does not exist" in err
    assert not (tmp_path / "nope").exists()


# --------------------------------------------------------------------------- #
# replay on the small demo data
# --------------------------------------------------------------------------- #
def test_replay_builds_the_store_day_by_day(small_data, tmp_path, capsys):
    out = tmp_path / "reports"
    argv = ["replay", "--data", str(small_data), "--from", "2026-11-14", "--to", "2026-11-16"]
    # the report period (the last four full weeks), which moves on Sundays only
    assert main([*argv, "--markets", "SG,ID", "--out", str(out), "--period", "report"]) == 0
    captured = capsys.readouterr()
    progress = [ln for ln in captured.err.splitlines() if ln.startswith("2026-11-1")]
    assert len(progress) == 3 and "SG" in progress[0] and "ID" in progress[0]
    assert "replayed 3 days x 2 markets" in captured.out
    store = st.read_store(out)
    assert set(store["market"]) <= {"SG", "ID"}
    assert set(store["as_of"].dt.date.astype(str)) <= {"2026-11-14", "2026-11-15", "2026-11-16"}
    assert store["status"].isin(st.STATUSES).all()
    assert not store.duplicated(["alert_id", "as_of"]).any()
    # the 14th scans the period to 11-08; the 15th and 16th the period to 11-15
    assert store.groupby("as_of")["period_end"].first().astype(str).tolist()[-2:] == [
        "2026-11-15",
        "2026-11-15",
    ]
    latest = st.latest_alerts(store)
    assert (latest.groupby("alert_id").size() == 1).all()
    # a raised alert on the 16th (same period as the 15th) is never new
    day16 = store[store["as_of"] == pd.Timestamp("2026-11-16")]
    assert not (day16["status"] == "new").any()
    # children point at a lead of the same day
    for _, day in store[store.status != "resolved"].groupby("as_of"):
        leads = set(day.loc[day.incident_role == "lead", "alert_id"])
        assert set(day["incident_id"]) <= leads | set(store["incident_id"])
    # replaying a day again replaces it
    before = len(store)
    assert (
        main(
            [*argv[:4], "2026-11-16", "--to", "2026-11-16", "--markets", "SG,ID", "--out", str(out)]
            + ["--period", "report"]
        )
        == 0
    )
    assert len(st.read_store(out)) == before


def test_replay_scans_the_28_days_ending_on_each_day_by_default(small_data, tmp_path):
    out = tmp_path / "reports"
    argv = ["replay", "--data", str(small_data), "--from", "2026-11-14", "--to", "2026-11-16"]
    assert main([*argv, "--markets", "SG", "--out", str(out)]) == 0
    store = st.read_store(out)
    ends = store.groupby("as_of")["period_end"].first()
    # as `qualitylab run` does: the period moves every day
    assert [str(d)[:10] for d in ends] == ["2026-11-14", "2026-11-15", "2026-11-16"]


def test_replay_bad_arguments(small_data, tmp_path, capsys):
    base = ["replay", "--data", str(small_data), "--out", str(tmp_path)]
    assert main([*base, "--from", "2026-11-16", "--to", "2026-11-14", "--markets", "SG"]) == 2
    assert "is after" in capsys.readouterr().err
    assert main([*base, "--from", "2026-11-1x", "--to", "2026-11-14", "--markets", "SG"]) == 2
    assert "not a YYYY-MM-DD date" in capsys.readouterr().err
    assert main([*base, "--from", "2026-11-14", "--to", "2026-11-14", "--markets", "XX"]) == 2
    assert "XX" in capsys.readouterr().err


def test_replay_labels_act_on_the_next_run(small_data, tmp_path):
    """new_normal: the re-baselined series stops alerting; false_alarm: muted while it goes on."""
    from qualitylab.replay import replay

    out = tmp_path / "reports"
    kw = {"markets": ["ID"], "out": out, "incidents": False}
    replay(small_data, start="2026-11-15", end="2026-11-15", **kw)
    week1 = st.read_store(out)
    active = week1[(week1["status"] == "new") & (week1["end_date"] == week1["period_end"])]
    red_team = active[active["metric"] == "red_team_recall"]  # planted to the data's end
    assert len(red_team) == 1, week1[["alert_id", "end_date"]]
    series = tuple(red_team[["metric", "dimension", "segment"]].iloc[0])
    st.label_alert(out, red_team["alert_id"].iat[0], "new_normal", note="the new attack is here")
    others = active[active["metric"] != "red_team_recall"]["alert_id"].tolist()
    for aid in others:
        st.label_alert(out, aid, "false_alarm")
    assert st.rebaselines(st.read_store(out), st.read_labels(out), market="ID") == {
        series: red_team["start_date"].iat[0].date()
    }
    summary = replay(small_data, start="2026-11-22", end="2026-11-22", **kw)
    week2 = st.read_store(out)
    week2 = week2[week2["as_of"] == pd.Timestamp("2026-11-22")]
    same = week2[[tuple(r) == series for r in week2[["metric", "dimension", "segment"]].values]]
    assert same[["alert_id", "status"]].values.tolist() == [
        [red_team["alert_id"].iat[0], "resolved"]
    ]
    mine = week2[week2["alert_id"].isin(others)]
    assert set(mine["status"]) <= {"muted", "resolved"} and (mine["status"] == "muted").any()
    assert summary["muted"].sum() == (week2["status"] == "muted").sum()
