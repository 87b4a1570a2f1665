"""scan on young data (issue #14): young baselines, segments that start or stop mid-period."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_tables
from scipy import stats as sps

from qualitylab.detect import (
    ALERT_COLUMNS,
    EXTRA_COLUMNS,
    scan,
)
from qualitylab.detection.detect.pvalues import two_sided
from qualitylab.detection.detect.young import _young_level_test, _young_rate_test
from qualitylab.errors import QualityLabError
from qualitylab.sources import open_dataset

REPO = Path(__file__).resolve().parent.parent
MARKET = "PH"  # Asia/Manila, UTC+8
TZ = "Asia/Manila"
START = pd.Timestamp("2026-03-02")  # a Monday, market-local


# --------------------------------------------------------------------------- #
# A generator with another shape than the demo: two vendors with other names,
# two queues, Poisson volumes with a weekly cycle and day-level overdispersion,
# binomial accuracy through qa_audits
# --------------------------------------------------------------------------- #
WEEK = np.array([1.0, 0.96, 0.98, 1.0, 1.06, 1.14, 1.08])


def make_tables(
    seed: int,
    days: int = 14,
    *,
    level: float = 400.0,
    spike: tuple[int, float] | None = None,
    segments: list[dict] | None = None,
    events: list[dict] | None = None,
) -> dict[str, pd.DataFrame]:
    """A valid dataset for one market.

    ``spike=(day, frac)`` duplicates ``frac`` of that market-local day's
    decisions under new ids; ``segments`` adds streams with their own
    ``vendor``/``queue``, ``first``/``last`` day and daily ``level``.
    """
    rng = np.random.default_rng(seed)
    streams = [{"vendor": None, "queue": None, "first": 0, "last": days - 1, "level": level}]
    streams += segments or []
    rows = []
    for st in streams:
        for d in range(st["first"], st["last"] + 1):
            lam = st["level"] * WEEK[(START + pd.Timedelta(days=d)).day_of_week]
            lam *= rng.gamma(200.0, 1 / 200.0)  # day-level overdispersion (CV 7% of the rate)
            k = rng.poisson(lam)
            if not k:
                continue
            secs = np.sort(rng.uniform(0, 86400, k))
            local = START + pd.Timedelta(days=d) + pd.to_timedelta(secs, unit="s")
            created = local.tz_localize(TZ).tz_convert("UTC")
            vendor = st["vendor"] or np.where(rng.random(k) < 0.62, "Kestrel", "Osprey")
            queue = st["queue"] or np.where(rng.random(k) < 0.7, "live_stream", "live_report")
            rows.append(
                pd.DataFrame(
                    {
                        "created_at": created,
                        "vendor": vendor,
                        "queue": queue,
                        "day": d,
                    }
                )
            )
    dec = pd.concat(rows, ignore_index=True)
    n = len(dec)
    dec["decision_id"] = [f"ph{seed}-{i}" for i in range(n)]
    dec["decided_at"] = dec["created_at"] + pd.to_timedelta(rng.exponential(70.0, n), unit="s")
    dec["market"] = MARKET
    dec["site"] = dec["vendor"] + "-Cebu"
    dec["language"] = np.where(rng.random(n) < 0.55, "tl", "en")
    dec["moderator_id"] = [f"mod{j}" for j in rng.integers(0, 40, n)]
    dec["routing"] = np.where(rng.random(n) < 0.5, "human", "ai_assisted")
    enforced = rng.random(n) < 0.2
    dec["action"] = np.where(enforced, "warn", "no_action")
    dec["policy"] = np.where(enforced, "spam", "none")
    dec["ai_model"] = "sentry-2"
    dec["ai_score"] = np.clip(np.where(enforced, 0.8, 0.1) + rng.normal(0, 0.1, n), 0, 1)
    dec["ai_policy"] = np.where(dec["ai_score"] >= 0.5, "spam", "none")
    if spike is not None:
        day, frac = spike
        pool = dec[dec["day"] == day]
        dup = pool.sample(frac=frac, replace=frac > 1, random_state=seed).copy()
        dup["decision_id"] = dup["decision_id"] + [f"-dup{i}" for i in range(len(dup))]
        dec = pd.concat([dec, dup], ignore_index=True)
    dec = dec.drop(columns="day")
    audited = dec[~dec["decision_id"].str.contains("-dup")].sample(frac=0.12, random_state=seed)
    m = len(audited)
    right = rng.random(m) < 0.93  # binomial accuracy
    qa_action = np.where(
        right, audited["action"], np.where(audited["action"] == "warn", "no_action", "warn")
    )
    audits = pd.DataFrame(
        {
            "audit_id": [f"qa{seed}-{i}" for i in range(m)],
            "decision_id": audited["decision_id"].to_numpy(),
            "audited_at": audited["decided_at"].to_numpy() + pd.Timedelta(hours=6),
            "qa_source": "internal",
            "auditor_id": "aud1",
            "qa_action": qa_action,
            "qa_policy": np.where(qa_action == "warn", "spam", "none"),
            "sample_weight": 1.0,
        }
    )
    ev = pd.DataFrame(
        events or [], columns=["effective_at", "market", "kind", "policy", "description"]
    )
    ev["effective_at"] = pd.to_datetime(ev["effective_at"], utc=True)
    return {"decisions": dec, "qa_audits": audits, "events": ev}


def _scan(folder: Path, market: str = MARKET, **kw) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the skipped-series summary
        return scan(open_dataset(folder), market, **kw)


def _young(alerts: pd.DataFrame) -> pd.DataFrame:
    return alerts[alerts["note"].str.contains("young_baseline", na=False)]


def _day(d: int) -> pd.Timestamp:
    return START + pd.Timedelta(days=d)


# --------------------------------------------------------------------------- #
# The per-day tests are calibrated
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("h", [7, 12, 20, 27])
def test_young_day_pvalues_are_calibrated(h):
    rng = np.random.default_rng(h)
    reps = 1500
    p = {"normal": [], "poisson": [], "binomial": []}
    for _ in range(reps):
        x = rng.normal(5.0, 0.3, h + 1)
        t, hh, _ = _young_level_test(x[:h], x[h], 0.0)
        p["normal"].append(2 * sps.t.sf(abs(t), hh - 1))
        c = np.log1p(rng.poisson(60, h + 1))
        t, hh, _ = _young_level_test(c[:h], c[h], 1 / math.sqrt(61))
        p["poisson"].append(2 * sps.t.sf(abs(t), hh - 1))
        n = rng.integers(40, 90, h + 1).astype(float)
        k = rng.binomial(n.astype(int), 0.92).astype(float)
        z, *_ = _young_rate_test(k[:h], n[:h], k[h], n[h])
        p["binomial"].append(float(two_sided(z)))
    for kind, vals in p.items():
        vals = np.asarray(vals)
        r01, r05 = (vals < 0.01).mean(), (vals < 0.05).mean()
        # binomial standard error at 1,500 draws: 0.0026 at 1%, 0.0056 at 5%
        assert r01 <= 0.01 + 3 * 0.0026 + 0.002, (kind, h, r01)
        assert r05 <= 0.05 + 3 * 0.0056 + 0.003, (kind, h, r05)
        if kind == "normal":  # the exact case: not conservative either
            assert r05 >= 0.05 - 3 * 0.0056 - 0.003, (kind, h, r05)
        else:  # the sampling floor / quasi-binomial scale make these conservative, not blind
            assert r05 >= 0.005, (kind, h, r05)


def test_young_level_test_screens_a_partial_day_and_matches_the_t_formula():
    hist = np.log1p(np.array([25, 118, 134, 135, 148, 166, 152, 154.0]))  # day 0 is partial
    t, h, mean = _young_level_test(hist, math.log1p(150.0), 0.0)
    kept = hist[1:]
    assert h == 7
    assert mean == pytest.approx(kept.mean())
    want = (math.log1p(150.0) - kept.mean()) / (kept.std(ddof=1) * math.sqrt(1 + 1 / 7))
    assert t == pytest.approx(want)


# --------------------------------------------------------------------------- #
# The day-12 spike
# --------------------------------------------------------------------------- #
def _plant_spike(src: Path, dst: Path, market: str, tz: str, day: int, frac: float) -> pd.Timestamp:
    tables = {}
    for name in ("qa_audits", "events", "staffing"):
        if (src / f"{name}.parquet").exists():
            tables[name] = pd.read_parquet(src / f"{name}.parquet")
    dec = pd.read_parquet(src / "decisions")
    local = dec["created_at"].dt.tz_convert(tz).dt.tz_localize(None).dt.normalize()
    days = sorted(local[dec["market"] == market].unique())
    pool = dec[(dec["market"] == market) & (local == days[day])]
    dup = pool.sample(frac=frac, random_state=1).copy()
    dup["decision_id"] = dup["decision_id"] + "-dup"
    tables["decisions"] = pd.concat([dec, dup], ignore_index=True)
    write_tables(dst, tables)
    return pd.Timestamp(days[day])


@pytest.fixture(scope="module")
def demo14(tmp_path_factory):
    from qualitylab.demo import generate

    out = tmp_path_factory.mktemp("demo14")
    generate(out, scale="small", seed=1, days=14)
    return out


def test_day12_spike_on_demo_data_is_a_young_baseline_alert(demo14, tmp_path):
    day = _plant_spike(demo14, tmp_path / "spiked", "ID", "Asia/Jakarta", 12, 0.8)
    alerts = _scan(tmp_path / "spiked", "ID")
    hit = alerts[
        (alerts["metric"] == "volume")
        & (alerts["dimension"] == "market")
        & (alerts["start_date"] <= day)
        & (alerts["end_date"] >= day)
    ]
    assert len(hit) == 1, alerts[["metric", "dimension", "segment", "start_date"]]
    row = hit.iloc[0]
    assert row["detector"] == "young_baseline"
    assert "young_baseline" in row["note"]
    assert row["direction"] == "up"
    assert row["observed"] / row["expected"] > 1.5
    assert row["p_adjusted"] <= alerts.attrs["fdr"]
    # the same data without the spike: no young alert on that day
    clean = _scan(demo14, "ID")
    on_day = _young(clean)
    assert not ((on_day["start_date"] <= day) & (on_day["end_date"] >= day)).any()
    assert list(alerts.columns) == [*ALERT_COLUMNS, *EXTRA_COLUMNS]
    sc = alerts.attrs["scanned"]
    assert sc["full_start"] is None and sc["young_end"] == sc["end"]


def test_day12_spike_on_another_shape_of_data(tmp_path):
    tables = make_tables(3, 14, spike=(12, 0.8))
    local = tables["decisions"]["created_at"].dt.tz_convert(TZ).dt.tz_localize(None)
    on_day = local.dt.normalize() == _day(12)
    original = int((on_day & ~tables["decisions"]["decision_id"].str.contains("-dup")).sum())
    folder = write_tables(tmp_path / "own", tables)
    alerts = _scan(folder)
    hit = alerts[(alerts["metric"] == "volume") & (alerts["start_date"] == _day(12))]
    assert len(hit) == 1  # the market's spike, its segments grouped under it
    row = hit.iloc[0]
    assert row["dimension"] == "market" and row["detector"] == "young_baseline"
    assert row["observed"] == round(1.8 * original)  # the day's decisions and their copies
    assert row["observed"] / row["expected"] > 1.5
    assert "volume vendor=Kestrel" in row["related"]


@pytest.mark.parametrize("seed", [11, 12, 13, 14])
def test_no_young_alert_on_clean_14_day_data(seed, tmp_path):
    folder = write_tables(tmp_path / f"clean{seed}", make_tables(seed, 14))
    alerts = _scan(folder)
    assert alerts.attrs["young"]["days_judged"] > 50  # it did judge days
    assert _young(alerts).empty, alerts[["metric", "dimension", "segment", "start_date"]]


# --------------------------------------------------------------------------- #
# Short data
# --------------------------------------------------------------------------- #
def test_ten_days_give_results_and_seven_days_an_empty_frame_with_the_reason(tmp_path):
    ten = write_tables(tmp_path / "ten", make_tables(5, 10, spike=(8, 1.5)))
    alerts = _scan(ten)
    assert alerts.attrs["scanned"]["young_start"] == "2026-03-09"
    assert alerts.attrs["scanned"]["young_end"] == "2026-03-11"
    assert alerts.attrs["young"]["days_judged"] > 0
    assert (alerts["start_date"] == _day(8)).any()  # a 2.5x day is found on day 8
    seven = write_tables(tmp_path / "seven", make_tables(5, 7))
    with pytest.warns(UserWarning, match="only 7 day"):
        empty = scan(open_dataset(seven), MARKET)
    assert empty.empty
    assert list(empty.columns) == [*ALERT_COLUMNS, *EXTRA_COLUMNS]
    assert "only 7 day(s) of data (2026-03-02..2026-03-08)" in empty.attrs["note"]
    assert empty.attrs["scanned"]["start"] == "2026-03-02"


def test_explicit_start_without_seven_days_of_history_is_scanned_young(tmp_path):
    # data 2026-03-02..03-13: a start 3 days in has no baseline before it, so the days from
    # the 8th day of data on are judged on the young rule, and nothing is reported before start
    folder = write_tables(tmp_path / "d", make_tables(6, 12))
    ds = open_dataset(folder)
    alerts = scan(ds, MARKET, start="2026-03-05")
    sc = alerts.attrs["scanned"]
    assert (sc["start"], sc["end"]) == ("2026-03-05", "2026-03-13")
    assert (sc["young_start"], sc["young_end"]) == ("2026-03-09", "2026-03-13")
    assert sc["full_start"] is None
    assert (alerts["start_date"] >= pd.Timestamp("2026-03-05")).all()
    # a start with 7+ days of data before it keeps them as its (short) baseline, as before
    late = scan(ds, MARKET, start="2026-03-11")
    assert late.attrs["scanned"]["full_start"] == "2026-03-11"
    assert late.attrs["baseline"] == (date(2026, 3, 2), date(2026, 3, 10))
    # a period after the data is still an error that names the dates
    with pytest.raises(
        QualityLabError, match=r"2026-03-20\.\.2026-03-13.*2026-03-02\.\.2026-03-13"
    ):
        scan(ds, MARKET, start="2026-03-20")


# --------------------------------------------------------------------------- #
# Segments that start or stop mid-period
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    """40 days: a vendor that starts on day 24 (a 2.7x day on its day 12), a queue retired on
    day 33 with an event, a vendor that stops on day 35 without one."""
    days = 40
    tables = make_tables(
        21,
        days,
        level=300.0,
        segments=[
            {
                "vendor": "Newco",
                "queue": "live_stream",
                "first": 24,
                "last": days - 1,
                "level": 120,
            },
            {"vendor": "Newco", "queue": "live_stream", "first": 36, "last": 36, "level": 200},
            {"vendor": "Kestrel", "queue": "appeal", "first": 0, "last": 32, "level": 90},
            {"vendor": "Heron", "queue": "live_report", "first": 0, "last": 34, "level": 80},
        ],
        events=[
            {
                "effective_at": "2026-04-04T04:00:00Z",  # day 33 local
                "market": MARKET,
                "kind": "queue_retired",
                "policy": None,
                "description": "appeal queue retired; appeals move to the platform's form",
            },
            {
                "effective_at": "2026-04-04T04:00:00Z",
                "market": "*",
                "kind": "vendor_offboarding",
                "policy": None,
                "description": "Osprey offboarded in every market",  # names another vendor
            },
        ],
    )
    folder = write_tables(tmp_path_factory.mktemp("life") / "d", tables)
    return _scan(folder)


def test_segment_starting_mid_period_is_judged_from_its_first_day(lifecycle):
    alerts = lifecycle
    assert alerts.attrs["scanned"]["full_start"] == "2026-03-30"  # day 28
    newco = alerts[(alerts["segment"] == "Newco") & (alerts["metric"] == "volume")]
    assert len(newco) == 1
    row = newco.iloc[0]
    assert row["start_date"] == _day(36) and row["direction"] == "up"
    assert row["detector"] == "young_baseline" and "young_baseline" in row["note"]
    assert not any(
        r["segment"] == "Newco" and "baseline has" in r["reason"] for r in alerts.attrs["skipped"]
    )


def test_segment_stopping_at_a_known_event_is_annotated_not_alerted(lifecycle):
    alerts = lifecycle
    stopped = {(r["dimension"], r["segment"]): r for r in alerts.attrs["stopped"]}
    appeal = stopped[("queue", "appeal")]
    assert appeal["stopped_from"] == "2026-04-04"
    assert "queue_retired" in appeal["event"] and not appeal["alerted"]
    mine = alerts[(alerts["dimension"] == "queue") & (alerts["segment"] == "appeal")]
    assert mine.empty
    assert not alerts["related"].str.contains("queue=appeal").any()


def test_segment_stopping_without_an_event_gives_one_low_alert(lifecycle):
    alerts = lifecycle
    stopped = {(r["dimension"], r["segment"]): r for r in alerts.attrs["stopped"]}
    heron = stopped[("vendor", "Heron")]
    assert heron["alerted"] and heron["event"] == ""  # the Osprey offboarding is not Heron's
    assert heron["stopped_from"] == "2026-04-06"
    # its site stopped with it: covered, not a second alert
    assert stopped[("site", "Heron-Cebu")]["covered_by"] == "vendor=Heron"
    mine = alerts[alerts["segment"].isin(["Heron", "Heron-Cebu"])]
    assert len(mine) == 1
    row = mine.iloc[0]
    assert row["metric"] == "volume" and row["detector"] == "segment_stopped"
    assert row["severity"] == "low" and row["note"].startswith("segment stopped")
    assert row["start_date"] == _day(35) and row["end_date"] == _day(39)
    assert row["observed"] == 0 and row["expected"] > 40
    assert not alerts["related"].str.contains("=Heron").any()


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #
def test_detect_cli_prints_the_scanned_dates(demo14):
    res = subprocess.run(
        [sys.executable, "-m", "qualitylab.cli", "detect", "--data", str(demo14), "--market", "TH"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "scanned TH 2026-11-09..2026-11-22" in res.stderr
    assert "young baseline 2026-11-16..2026-11-22; no full-baseline days" in res.stderr
    assert "series could not be judged" in res.stderr
    assert len(res.stderr.splitlines()) < 20
