"""The live queue watch (issue #19): tick numbers, alerts, the store, the stream, the CLI.

The tick is checked against an independent pandas computation of the issue's
definitions on a hand-made dataset shaped unlike the demo: items open across
the lookback edge, timestamps exactly on the window boundaries, a queue that
went live today (no history, no staffing row) and escalations open, resolved
and raised after ``now``.
"""

from __future__ import annotations

import http.server
import io
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qualitylab import alertstore as st
from qualitylab.capacity import required_agents
from qualitylab.demostream import SURGE_MINUTES, demo_stream, plant_surge, write_part
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.sources import open_dataset
from qualitylab.watch import (
    ALERT_CAUSES,
    ALERT_COLUMNS,
    TICK_COLUMNS,
    default_now,
    queue_alerts,
    recent_ticks,
    record_alerts,
    tick,
    watch_plan,
)
from qualitylab.watchcli import watch

MARKET = "SG"
NOW = pd.Timestamp("2026-03-16 12:00", tz="UTC")  # 20:00 in Singapore, a Monday
CONTRACT_HEAD = (
    "market,queue,now,open_items,oldest_open_seconds,at_risk,arrivals_15m,arrivals_60m,decided_15m"
)


# --------------------------------------------------------------------------- #
# a hand-made dataset
# --------------------------------------------------------------------------- #
def _decisions(rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    start = NOW - pd.Timedelta(days=16)
    # live_stream and appeal: 16 days of history; live_comment: went live today (SG)
    spans = {
        "live_stream": (start, 30.0, 240.0),  # (first, per hour, mean response s)
        "appeal": (start, 3.0, 40 * 3600.0),
        "live_comment": (pd.Timestamp("2026-03-16 00:30", tz="Asia/Singapore"), 20.0, 400.0),
    }
    horizon = NOW + pd.Timedelta(hours=2)
    for queue, (first, per_hour, mean) in spans.items():
        hours = (horizon - first).total_seconds() / 3600
        n = rng.poisson(per_hour * hours)
        created = first + pd.to_timedelta(np.sort(rng.uniform(0, hours * 3600, n)), unit="s")
        resp = pd.to_timedelta(rng.exponential(mean, n), unit="s")
        pending = rng.random(n) < 0.03
        decided = pd.Series(created + resp).where(~pending)
        rows.append(pd.DataFrame({"queue": queue, "created_at": created, "decided_at": decided}))
    d = pd.concat(rows, ignore_index=True)
    # timestamps exactly on the window edges, and items open across the lookback edge
    edge = [
        ("live_stream", NOW, NOW + pd.Timedelta(minutes=1)),  # created at now: arrives, open
        ("live_stream", NOW - pd.Timedelta(minutes=15), NOW),  # decided at now: in decided_15m
        ("live_stream", NOW - pd.Timedelta(minutes=60), NOW - pd.Timedelta(minutes=15)),
        ("live_stream", NOW - pd.Timedelta(minutes=30), pd.NaT),
        ("appeal", NOW - pd.Timedelta(hours=47), pd.NaT),  # inside the 48 h lookback
        ("appeal", NOW - pd.Timedelta(hours=50), pd.NaT),  # open, but before the lookback
        ("appeal", NOW - pd.Timedelta(hours=49), NOW - pd.Timedelta(minutes=5)),
    ]
    d = pd.concat(
        [d, pd.DataFrame(edge, columns=["queue", "created_at", "decided_at"])], ignore_index=True
    )
    n = len(d)
    d["decided_at"] = pd.to_datetime(d["decided_at"], utc=True).dt.floor("us")
    d["created_at"] = pd.to_datetime(d["created_at"], utc=True).dt.floor("us")
    routing = rng.choice(["human", "ai_assisted", "ai_auto"], n, p=[0.3, 0.5, 0.2])
    decided = d["decided_at"].notna().to_numpy()
    action = np.where(rng.random(n) < 0.8, "no_action", "warn")
    return d.assign(
        decision_id=[f"h{i}" for i in range(n)],
        market=MARKET,
        vendor="VendorA",
        site="A-MNL",
        language="en",
        moderator_id=np.where(routing == "ai_auto", None, "m1"),
        routing=routing,
        action=np.where(decided, action, None),
        policy=np.where(decided, np.where(action == "no_action", "none", "spam"), None),
        ai_model="mod-v3",
        ai_score=rng.random(n),
        ai_policy="none",
    )


def _staffing() -> pd.DataFrame:
    days = pd.date_range("2026-02-28", "2026-03-17", freq="D").date
    rows = [
        {"date": d, "market": MARKET, "vendor": "VendorA", "site": "A-MNL", "queue": q,
         "scheduled_hours": h, "productive_hours": h * 0.8}
        for d in days
        for q, h in (("live_stream", 60.0), ("appeal", 30.0))
    ]  # fmt: skip
    return pd.DataFrame(rows)  # no row for live_comment


def _escalations() -> pd.DataFrame:
    h = pd.Timedelta(hours=1)
    rows = [
        ("e1", NOW - 2 * h, pd.NaT, "live_stream", "sev1"),  # open, past its 1 h SLA
        ("e2", NOW - 0.5 * h, pd.NaT, "live_stream", "sev1"),  # open, within SLA
        ("e3", NOW - 5 * h, NOW - 1 * h, "live_stream", "sev2"),  # resolved before now
        ("e4", NOW - 5 * h, NOW + 1 * h, "live_stream", "sev2"),  # open at now, past 4 h SLA
        ("e5", NOW + 1 * h, pd.NaT, "live_stream", "sev3"),  # raised after now
        ("e6", NOW - 30 * h, pd.NaT, "appeal", "sev3"),  # open, past the 24 h SLA
    ]
    e = pd.DataFrame(
        rows, columns=["escalation_id", "raised_at", "resolved_at", "queue", "severity"]
    )
    e["resolved_at"] = pd.to_datetime(e["resolved_at"], utc=True)
    return e.assign(
        decision_id=None, market=MARKET, vendor="VendorA", tier="vendor_lead", reason="x"
    )


@pytest.fixture(scope="module")
def hand(tmp_path_factory):
    folder = tmp_path_factory.mktemp("watch_hand")
    rng = np.random.default_rng(19)
    dec = _decisions(rng)
    dec.to_parquet(folder / "decisions.parquet", index=False)
    _staffing().to_parquet(folder / "staffing.parquet", index=False)
    _escalations().to_parquet(folder / "escalations.parquet", index=False)
    ds = open_dataset(folder)
    assert ds.validate().ok
    return folder, dec, ds, watch_plan(ds, MARKET, NOW)


def _reference(dec: pd.DataFrame, now: pd.Timestamp, lookback_hours: float, share: float):
    """The issue's definitions, in pandas, on the rows within the lookback."""
    slas = {"live_stream": 300.0, "live_comment": 600.0, "appeal": 86400.0}
    d = dec[(dec["created_at"] > now - pd.Timedelta(hours=lookback_hours))]
    d = d[d["created_at"] <= now]
    out = {}
    for q, g in d.groupby("queue"):
        is_open = g["decided_at"].isna() | (g["decided_at"] > now)
        age = (now - g.loc[is_open, "created_at"]).dt.total_seconds()
        dec15 = (g["decided_at"] > now - pd.Timedelta(minutes=15)) & (g["decided_at"] <= now)
        out[q] = {
            "open_items": int(is_open.sum()),
            "oldest_open_seconds": float(age.max()) if len(age) else np.nan,
            "at_risk": int((age > share * slas[q]).sum()),
            "arrivals_15m": int((g["created_at"] > now - pd.Timedelta(minutes=15)).sum()),
            "arrivals_60m": int((g["created_at"] > now - pd.Timedelta(minutes=60)).sum()),
            "decided_15m": int(dec15.sum()),
            "decisions_per_minute": dec15.sum() / 15.0,
        }
    return pd.DataFrame(out).T


@pytest.mark.parametrize(
    "offset_min", [0, -7.5, -61, -180, 45]
)  # now itself, mid-minute, across an hour, early, and past the last arrival of a queue
def test_tick_equals_pandas_on_the_same_rows(hand, offset_min):
    _folder, dec, ds, plan = hand
    now = NOW + pd.Timedelta(minutes=offset_min)
    got = tick(ds, MARKET, now=now, plan=plan, at_risk_share=0.5).set_index("queue")
    ref = _reference(dec, now, 48.0, 0.5)
    assert sorted(got.index) == sorted(ref.index)
    for col in ref.columns:
        np.testing.assert_allclose(
            got.loc[ref.index, col].to_numpy(float), ref[col].to_numpy(float), rtol=1e-9,
            err_msg=col,
        )  # fmt: skip
    assert (got["now"] == now).all()
    with np.errstate(divide="ignore"):
        clear = got["open_items"] / got["decisions_per_minute"]
    np.testing.assert_allclose(
        got["minutes_to_clear"], np.where(got["open_items"] == 0, 0.0, clear)
    )


@pytest.mark.parametrize(
    "shift_hours, options",
    [
        (0, {}),
        (6, {"at_risk_share": 0.7, "lookback_hours": 20}),  # across local midnight: two plans
        (-3, {"queues": ["appeal", "live_stream"], "service_level_target": 0.8}),
    ],
)
def test_recent_ticks_are_the_ticks_at_each_instant(hand, shift_hours, options):
    # recent_ticks counts every instant in one grouped query; tick one instant at a time
    _folder, _dec, ds, plan = hand
    end = NOW + pd.Timedelta(hours=shift_hours)
    got = recent_ticks(ds, MARKET, now=end, hours=8, step_minutes=35, plan=plan, **options)
    instants = [end - pd.Timedelta(minutes=35 * k) for k in range(13, -1, -1)]
    one = [tick(ds, MARKET, now=at, plan=plan, **options) for at in instants]
    pd.testing.assert_frame_equal(got, pd.concat(one, ignore_index=True), check_exact=True)
    assert got["now"].nunique() == 14 and got["arrivals_60m"].sum() > 0
    same = all(t.attrs == one[0].attrs for t in one)
    assert got.attrs == (one[0].attrs if same else {})


def test_tick_columns_begin_with_the_contract(hand):
    _folder, _dec, ds, plan = hand
    got = tick(ds, MARKET, now=NOW, plan=plan)
    assert list(got.columns) == TICK_COLUMNS
    assert ",".join(got.columns[:9]) == CONTRACT_HEAD


def test_edges_are_half_open(hand):
    _folder, dec, ds, plan = hand
    got = tick(ds, MARKET, now=NOW, plan=plan).set_index("queue").loc["live_stream"]
    # the planted rows: created at now counts; created exactly 15/60 min ago does not
    d = dec[dec["queue"] == "live_stream"]
    c = d["created_at"]
    assert got["arrivals_15m"] == ((c > NOW - pd.Timedelta(minutes=15)) & (c <= NOW)).sum()
    assert (c == NOW - pd.Timedelta(minutes=15)).any() and (c == NOW).any()


def test_the_lookback_bounds_what_is_read(hand):
    _folder, dec, ds, plan = hand
    short = tick(ds, MARKET, now=NOW, plan=plan).set_index("queue").loc["appeal"]
    long = tick(ds, MARKET, now=NOW, plan=plan, lookback_hours=72).set_index("queue").loc["appeal"]
    # the item open since now - 50 h is outside the default 48 h, inside 72 h
    a = dec[(dec["queue"] == "appeal") & (dec["created_at"] <= NOW)]
    open50 = (a["created_at"] == NOW - pd.Timedelta(hours=50)) & a["decided_at"].isna()
    assert open50.sum() == 1
    assert long["open_items"] >= short["open_items"] + 1
    assert short["oldest_open_seconds"] < 48 * 3600 <= long["oldest_open_seconds"]
    ref = _reference(dec, NOW, 72.0, 0.5).loc["appeal"]
    assert long["open_items"] == ref["open_items"]


def test_new_queue_without_history_or_staffing(hand):
    _folder, dec, ds, plan = hand
    got = tick(ds, MARKET, now=NOW, plan=plan).set_index("queue")
    assert np.isnan(got.loc["live_comment", "forecast_60m"])  # no history before today
    assert np.isnan(got.loc["live_comment", "staffed_agents"])  # no staffing row
    assert np.isnan(got.loc["live_comment", "capacity_gap"])
    for q in ("live_stream", "appeal"):
        assert (
            got.loc[q, "forecast_lower"]
            <= got.loc[q, "forecast_60m"]
            <= got.loc[q, "forecast_upper"]
        )
        assert got.loc[q, "staffed_agents"] > 0
    # the requirement at the current rate, recomputed from the parameters and staffing
    row = got.loc["live_stream"]
    recent = dec[
        (dec["queue"] == "live_stream") & (dec["created_at"] > NOW - pd.Timedelta(hours=1))
    ]
    recent = recent[
        (recent["created_at"] <= NOW) & recent["routing"].isin(["human", "ai_assisted"])
    ]
    assert row["human_arrivals_60m"] == len(recent)
    expect = required_agents(len(recent), 60.0, 300.0, 0.9, shrinkage=0.2)
    assert row["required_agents"] == expect
    # last week's hour
    wk = dec[(dec["queue"] == "live_stream")]
    lo, hi = NOW - pd.Timedelta(days=7, minutes=60), NOW - pd.Timedelta(days=7)
    assert (
        row["arrivals_60m_last_week"] == ((wk["created_at"] > lo) & (wk["created_at"] <= hi)).sum()
    )


def test_escalations_open_and_past_sla(hand):
    _folder, _dec, ds, plan = hand
    got = tick(ds, MARKET, now=NOW, plan=plan).set_index("queue")
    ls = got.loc["live_stream"]
    assert (ls["esc_open_sev1"], ls["esc_open_sev2"], ls["esc_open_sev3"]) == (2, 1, 0)
    assert (ls["esc_past_sla_sev1"], ls["esc_past_sla_sev2"]) == (1, 1)
    assert got.loc["appeal", "esc_open_sev3"] == 1 and got.loc["appeal", "esc_past_sla_sev3"] == 1
    assert got.loc["live_comment", ["esc_open_sev1", "esc_past_sla_sev1"]].sum() == 0


def test_default_now_is_the_last_created_at(hand):
    _folder, dec, ds, _plan = hand
    assert default_now(ds, MARKET) == dec["created_at"].max()


def test_bad_arguments(hand):
    _folder, _dec, ds, plan = hand
    with pytest.raises(ParameterError, match="unknown queue 'live_chat'"):
        tick(ds, MARKET, now=NOW, plan=plan, queues=["live_chat"])
    with pytest.raises(QualityLabError, match="'JP' has no decisions"):
        tick(ds, "JP")
    with pytest.raises(ParameterError, match="at_risk_share"):
        tick(ds, MARKET, now=NOW, plan=plan, at_risk_share=0)


# --------------------------------------------------------------------------- #
# alerts
# --------------------------------------------------------------------------- #
def _ticks(**series) -> pd.DataFrame:
    n = len(next(iter(series.values())))
    base = {
        "market": MARKET, "queue": "live_stream", "open_items": 5, "at_risk": 0,
        "arrivals_15m": 30, "decided_15m": 30, "arrivals_60m": 100, "forecast_lower": np.nan,
        "forecast_upper": np.nan, "capacity_gap": 0.0, "sla_seconds": 300.0,
        "esc_past_sla_sev1": 0, "esc_past_sla_sev2": 0,
    }  # fmt: skip
    rows = []
    for i in range(n):
        r = dict(base, now=NOW + pd.Timedelta(minutes=i))
        r.update({k: v[i] for k, v in series.items()})
        rows.append(r)
    return pd.DataFrame(rows)


def test_debounce_one_alert_per_queue_and_cause_until_it_clears():
    # at risk above 10 and above 2 SLA periods of arrivals (100/60*5 = 8.3 -> 16.7) at 1..3
    t = _ticks(at_risk=[0, 40, 45, 50, 0, 0, 60])
    ev = queue_alerts(t)
    got = ev[["cause", "event"]].values.tolist()
    assert got == [["at_risk", "raised"], ["at_risk", "cleared"], ["at_risk", "raised"]]
    assert list(ev.columns) == ALERT_COLUMNS
    assert ev["now"].tolist() == [t["now"][1], t["now"][4], t["now"][6]]


def test_backlog_needs_k_ticks_of_growth_faster_than_decisions():
    opened = [10, 15, 25, 45, 80]
    fast = _ticks(open_items=opened, arrivals_15m=[60] * 5, decided_15m=[20] * 5)
    first = queue_alerts(fast, backlog_ticks=2)
    # 10 -> 15 -> 25: two ticks of growth, +15 >= max(10, 100% of 10)
    assert first[["cause", "now"]].values.tolist()[0] == ["backlog", fast["now"][2]]
    assert queue_alerts(fast, backlog_ticks=3)["now"].iloc[0] == fast["now"][3]
    # the same growth while decisions keep pace is not a backlog alert
    kept = _ticks(open_items=opened, arrivals_15m=[60] * 5, decided_15m=[60] * 5)
    assert not len(queue_alerts(kept))
    # small growth (noise) is not either
    noise = _ticks(open_items=[10, 12, 14, 16, 18], arrivals_15m=[60] * 5, decided_15m=[20] * 5)
    assert not len(queue_alerts(noise))


def test_other_causes():
    t = _ticks(
        arrivals_60m=[100, 160, 100, 100],
        forecast_lower=[80.0] * 4,
        forecast_upper=[120.0] * 4,
        capacity_gap=[0.0, 0.0, 3.0, 0.0],
        esc_past_sla_sev1=[0, 0, 0, 1],
    )
    ev = queue_alerts(t)
    got = {(c, e, str(d)) for c, e, d in ev[["cause", "event", "direction"]].values}
    assert ("arrivals", "raised", "up") in got and ("arrivals", "cleared", "up") in got
    assert ("staffing", "raised", "up") in got and ("staffing", "cleared", "up") in got
    assert ("escalation_sla", "raised", "up") in got
    assert set(ev["metric"]) == {"volume", "capacity_gap", "escalation_sla"}


def test_queue_alerts_in_the_store_with_kind_queue(tmp_path):
    t = _ticks(at_risk=[0, 40, 45, 0])
    ev = queue_alerts(t)
    first = record_alerts(tmp_path, ev.iloc[:1], timezone="Asia/Singapore")
    again = record_alerts(tmp_path, ev.iloc[:1], timezone="Asia/Singapore")  # a restarted watch
    assert len(first) == 1 and len(again) == 0
    closed = record_alerts(tmp_path, ev.iloc[1:], timezone="Asia/Singapore")
    assert closed["status"].tolist() == ["resolved"]
    store = st.read_store(tmp_path)
    assert store["kind"].tolist() == ["queue", "queue"]
    aid = first["alert_id"].iloc[0]
    assert aid.startswith("SG-20260316T1201-items_at_risk-")
    assert store["alert_id"].nunique() == 1
    # a daily run into the same store keeps the queue rows; labels and listing work
    daily = pd.DataFrame({
        "metric": ["accuracy"], "dimension": ["vendor"], "segment": ["VendorA"],
        "start_date": ["2026-03-10"], "end_date": ["2026-03-15"], "observed": [0.8],
        "expected": [0.9], "direction": ["down"], "severity": ["high"], "detector": ["ewma"],
        "p_value": [1e-6]})  # fmt: skip
    st.update_store(tmp_path, daily, run_id="d1", as_of="2026-03-16", market=MARKET,
                    period=("2026-02-17", "2026-03-15"))  # fmt: skip
    store = st.read_store(tmp_path)
    assert sorted(store["kind"]) == ["daily", "queue", "queue"]
    st.label_alert(tmp_path, aid, "new_normal")
    latest = st.latest_alerts(store, st.read_labels(tmp_path)).set_index("alert_id")
    assert latest.loc[aid, "status"] == "resolved" and latest.loc[aid, "label"] == "new_normal"
    assert latest.loc[aid, "metric"] == "items_at_risk"
    # a queue alert's label does not re-baseline a daily series
    assert st.rebaselines(store, st.read_labels(tmp_path), market=MARKET) == {}


# --------------------------------------------------------------------------- #
# the demo stream: surge acceptance
# --------------------------------------------------------------------------- #
STREAM_MARKET = "PH"
STREAM_START = pd.Timestamp("2026-12-06 11:00", tz="UTC")  # 19:00 in Manila
SURGE = "20:00"  # Manila: 12:00 UTC, an hour into the stream
TICK_MINUTES = 5


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def _stream(folder: Path, surge: str | None) -> int:
    clock = FakeClock()
    return demo_stream(
        folder, STREAM_MARKET, speed=600, every=1, surge=surge, start=STREAM_START,
        duration=2 * 3600 + 300, days=21, seed=7, clock=clock, sleep=clock.sleep,
    )  # fmt: skip


@pytest.fixture(scope="module")
def streams(tmp_path_factory):
    out = {}
    for name, surge in (("surge", SURGE), ("calm", None)):
        folder = tmp_path_factory.mktemp(f"stream_{name}")
        parts = _stream(folder, surge)
        ds = open_dataset(folder)
        plan = watch_plan(ds, STREAM_MARKET, STREAM_START)
        ticks = [
            tick(
                ds,
                STREAM_MARKET,
                now=STREAM_START + pd.Timedelta(minutes=TICK_MINUTES * i),
                plan=plan,
            )
            for i in range(1, 2 * 60 // TICK_MINUTES + 1)
        ]
        out[name] = (folder, parts, pd.concat(ticks, ignore_index=True))
    return out


def test_stream_writes_parts_that_readers_can_open(streams):
    folder, parts, _ticks = streams["calm"]
    files = sorted((folder / "decisions").glob("*"))
    # 2 h 5 min at x600, a part a second: 13 parts after the history
    assert parts == 13 and len(files) == parts + 1
    assert not [f for f in files if f.name.startswith(".")]  # no temporary file left
    last = pd.read_parquet(files[-1])
    assert last["created_at"].min() > pd.read_parquet(files[-2])["created_at"].max()


def test_a_planted_surge_raises_a_backlog_or_at_risk_alert_within_3_ticks(streams):
    _folder, _parts, ticks = streams["surge"]
    ev = queue_alerts(ticks)
    hit = ev[(ev["event"] == "raised") & ev["cause"].isin(["backlog", "at_risk"])]
    surge_at = pd.Timestamp("2026-12-06 12:00", tz="UTC")
    assert not len(hit[hit["now"] < surge_at])  # nothing before it
    first = hit["now"].min()
    ticks_after = (first - surge_at) / pd.Timedelta(minutes=TICK_MINUTES)
    assert 0 < ticks_after <= 3, (first, hit)


def test_no_surge_no_backlog_or_at_risk_alert_over_2_hours(streams):
    _folder, _parts, ticks = streams["calm"]
    assert ticks["now"].max() - ticks["now"].min() >= pd.Timedelta(hours=2) - pd.Timedelta(
        minutes=5
    )
    ev = queue_alerts(ticks)
    assert not len(ev[ev["cause"].isin(["backlog", "at_risk"])]), ev
    # the surge stream is the same data with a surge: its ticks before 12:00 agree
    _f, _p, surged = streams["surge"]
    before = STREAM_START + pd.Timedelta(minutes=55)
    a = ticks[ticks["now"] <= before].reset_index(drop=True)
    b = surged[surged["now"] <= before].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_plant_surge_triples_arrivals_and_queues_the_extra_items():
    t0 = pd.Timestamp("2026-12-06 12:00", tz="UTC")
    rng = np.random.default_rng(3)
    created = (
        t0
        - pd.Timedelta(minutes=30)
        + pd.to_timedelta(np.sort(rng.uniform(0, 5400, 300)), unit="s")
    )
    d = pd.DataFrame({
        "decision_id": [f"x{i}" for i in range(300)], "queue": "live_stream",
        "routing": "human", "created_at": created,
        "decided_at": created + pd.Timedelta(seconds=60)})  # fmt: skip
    out = plant_surge(d, t0)
    win = (out["created_at"] >= t0) & (out["created_at"] < t0 + pd.Timedelta(minutes=SURGE_MINUTES))
    base = (
        (d["created_at"] >= t0) & (d["created_at"] < t0 + pd.Timedelta(minutes=SURGE_MINUTES))
    ).sum()
    assert win.sum() == 3 * base
    extra = out[out["decision_id"].str.contains("-s")]
    assert (extra["decided_at"] >= extra["created_at"]).all()
    # served at the normal pace: the last copy waits about as long as the surge
    assert extra["decided_at"].max() >= t0 + pd.Timedelta(minutes=SURGE_MINUTES * 1.8)


def test_write_part_never_leaves_a_half_written_file(tmp_path, monkeypatch):
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("x", pa.int64())])

    def broken(table, where, **kw):
        Path(where).write_bytes(b"PAR1 half")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken)
    with pytest.raises(OSError):
        write_part(tmp_path, pd.DataFrame({"x": [1]}), "part-1.parquet", schema)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- #
# the loop and the commands
# --------------------------------------------------------------------------- #
def test_a_source_that_disappears_mid_watch_warns_and_keeps_the_last_tick(hand, tmp_path):
    folder, _dec, _ds, _plan = hand
    copy = tmp_path / "data"
    shutil.copytree(folder, copy)
    calls = []

    def sleep(_s):
        calls.append(_s)
        if len(calls) == 1:
            shutil.rmtree(copy)
        if len(calls) == 3:
            raise KeyboardInterrupt

    out, err = io.StringIO(), io.StringIO()
    last = watch(copy, MARKET, now=NOW.isoformat(), interval=0.01, stream=out, errors=err,
                 terminal=False, sleep=sleep)  # fmt: skip
    assert len(last) == 3 and (last["now"] == NOW).all()
    lines = err.getvalue().strip().splitlines()
    warnings_ = [x for x in lines if "warning: tick failed" in x]
    assert len(warnings_) == 2 and "keeping the tick of 12:00:00" in warnings_[0]
    assert lines[-1] == "qualitylab watch: stopped"
    assert len(out.getvalue().strip().splitlines()) == 1  # one line per successful tick


def test_once_writes_the_csv_and_notifies(hand, tmp_path):
    folder, _dec, _ds, _plan = hand
    got: list[dict] = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        out = tmp_path / "tick.csv"
        frame = watch(folder, MARKET, once=True, now=NOW.isoformat(), out=out, notify_url=url,
                      reports=tmp_path / "reports", stream=io.StringIO(), terminal=False)  # fmt: skip
    finally:
        server.shutdown()
    text = out.read_text().splitlines()
    assert text[0].startswith(CONTRACT_HEAD) and len(text) == 1 + len(frame) == 4
    # one tick: the sev1/sev2 escalations past SLA of live_stream raise an alert
    assert len(got) == 1 and got[0]["kind"] == "queue"
    posted = {(a["queue"], a["cause"]) for a in got[0]["new_alerts"]}
    assert ("live_stream", "escalation_sla") in posted
    store = st.read_store(tmp_path / "reports")
    assert set(store["kind"]) == {"queue"} and len(store) == len(posted)
    assert set(zip(store["segment"], store["metric"], strict=True)) == {
        (q, ALERT_CAUSES[c]) for q, c in posted
    }


def test_the_table_renders_in_a_terminal(hand):
    folder, _dec, _ds, _plan = hand
    buf = io.StringIO()
    watch(folder, MARKET, once=True, now=NOW.isoformat(), stream=buf, terminal=True)
    text = buf.getvalue()
    assert "qualitylab watch SG at 2026-03-16 12:00:00 UTC" in text and "live_comment" in text


def _cli(args, capsys):
    from qualitylab.cli import main

    rc = main(args)
    return rc, capsys.readouterr()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--market", "JP", "--once"], "market 'JP' has no decisions"),
        (["--market", "SG", "--queues", "live_chat", "--once"], "unknown queue 'live_chat'"),
        (["--market", "SG", "--interval", "0"], "--interval must be > 0"),
        (["--market", "SG", "--interval", "-5"], "--interval must be > 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(hand, capsys, extra, message):
    folder, *_ = hand
    rc, cap = _cli(["watch", "--data", str(folder), *extra], capsys)
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert (
        len(lines) == 1 and lines[0].startswith("qualitylab watch: error: ") and message in lines[0]
    )


def test_demo_stream_command_writes_history_and_parts_then_refuses_a_used_folder(tmp_path, capsys):
    out = tmp_path / "live"
    # six simulated hours from the wall clock: at night (SG 23:00) ten minutes of the small
    # scale can hold no decision at all, and then the stream writes no part
    args = ["demo-stream", "--out", str(out), "--market", "SG", "--scale", "small",
            "--speed", "60000", "--every", "0.01", "--duration", "21600"]  # fmt: skip
    rc, cap = _cli(args, capsys)
    assert rc == 0, cap.err
    parts = sorted((out / "decisions").glob("*.parquet"))
    assert parts[0].name == "part-000000-history.parquet" and len(parts) >= 2
    assert {"staffing.parquet", "escalations.parquet"} <= {p.name for p in out.iterdir()}
    assert cap.out.splitlines()[0].startswith("demo-stream SG: ")
    ds = open_dataset(out)
    assert ds.validate().ok
    rc, cap = _cli(args, capsys)
    assert (
        rc == 2 and "already holds decisions" in cap.err and len(cap.err.strip().splitlines()) == 1
    )
    rc, cap = _cli([*args[:-6], "--speed", "0"], capsys)
    assert rc == 2 and "speed must be > 0" in cap.err


def test_decisions_only_no_escalations_or_staffing(hand, tmp_path):
    folder, _dec, _ds, _plan = hand
    (tmp_path / "d").mkdir()
    shutil.copy(folder / "decisions.parquet", tmp_path / "d" / "decisions.parquet")
    ds = open_dataset(tmp_path / "d")
    plan = watch_plan(ds, MARKET, NOW)
    assert any("staffing" in n for n in plan.notes)
    ticks = pd.concat(
        [tick(ds, MARKET, now=NOW + pd.Timedelta(minutes=5 * i), plan=plan) for i in range(3)]
    )
    assert ticks["esc_open_sev1"].isna().all() and ticks["staffed_agents"].isna().all()
    ev = queue_alerts(ticks)  # NaN escalations and staffing raise nothing
    assert not ev["cause"].isin(["escalation_sla", "staffing"]).any()


def test_the_watch_says_in_one_line_what_a_tick_cannot_show(hand, tmp_path):
    """Decisions only: the missing staffing plan and escalations are one note each."""
    folder, _dec, _ds, _plan = hand
    (tmp_path / "d").mkdir()
    shutil.copy(folder / "decisions.parquet", tmp_path / "d" / "decisions.parquet")
    out, err = io.StringIO(), io.StringIO()
    watch(tmp_path / "d", MARKET, once=True, now=NOW.isoformat(), stream=out, errors=err)
    notes = [line for line in err.getvalue().splitlines() if "note:" in line]
    assert any("staffing" in line for line in notes), err.getvalue()
    assert any("no escalations" in line for line in notes), err.getvalue()
    assert "Traceback" not in err.getvalue()
