"""Arrivals forecast: recovers a known process, masks events, beats seasonal naive."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.forecast import (
    BACKTEST_COLUMNS,
    FORECAST_COLUMNS,
    _seasonal_naive,
    backtest,
    forecast_arrivals,
    hourly_arrivals,
)
from qualitylab.metrics import Period, decisions_in_period
from qualitylab.sources import open_dataset

TZ = "Asia/Singapore"
FIRST = date(2026, 3, 2)  # a Monday
DAYS = 42
OUTAGE_DAY = FIRST + timedelta(days=30)
MARKETS = ("SG", "ID", "TH")  # the small demo scale


def _true_rate(days: pd.DatetimeIndex, hours: np.ndarray) -> np.ndarray:
    """Arrivals per hour: an evening peak times a weekend lift (mean about 30)."""
    daily = 0.5 + np.exp(-0.5 * ((hours - 21) / 3.0) ** 2) * 1.5
    weekly = np.where(days.day_of_week >= 5, 1.25, 1.0)
    return 20.0 * daily * weekly


def _synthetic(folder: Path, *, spike: float = 15.0) -> Path:
    """Poisson arrivals at a known rate in SG live_stream, with an outage whose
    hours (14:00-24:00 local) carry ``spike`` times the usual volume."""
    rng = np.random.default_rng(11)
    days = pd.date_range(FIRST, periods=DAYS, freq="D")
    d = np.repeat(days, 24)
    h = np.tile(np.arange(24), DAYS)
    lam = _true_rate(pd.DatetimeIndex(d), h)
    outage = (pd.DatetimeIndex(d).date == OUTAGE_DAY) & (h >= 14)
    counts = rng.poisson(np.where(outage, lam * spike, lam))
    starts = (pd.DatetimeIndex(d) + pd.to_timedelta(h, unit="h")).tz_localize(TZ)
    created = np.repeat(starts.tz_convert("UTC").to_numpy(), counts)
    created = pd.to_datetime(created, utc=True) + pd.to_timedelta(
        rng.uniform(0, 3600, len(created)), unit="s"
    )
    n = len(created)
    decisions = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "created_at": created,
            "decided_at": created + pd.Timedelta(seconds=90),
            "market": "SG",
            "vendor": "VendorA",
            "site": "VendorA-Manila",
            "queue": "live_stream",
            "language": "en",
            "moderator_id": "m1",
            "routing": "human",
            "action": "no_action",
            "policy": "none",
            "ai_model": "mod-v3",
            "ai_score": 0.1,
            "ai_policy": "none",
        }
    )
    at = pd.Timestamp(OUTAGE_DAY.isoformat() + " 14:00", tz=TZ).tz_convert("UTC")
    events = pd.DataFrame(
        {
            "effective_at": [at],
            "market": ["SG"],
            "kind": ["outage"],
            "policy": [None],
            "description": ["AI scoring unavailable"],
        }
    )
    folder.mkdir(parents=True, exist_ok=True)
    decisions.to_parquet(folder / "decisions.parquet", index=False)
    events.to_parquet(folder / "events.parquet", index=False)
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synthetic(tmp_path_factory.mktemp("synthetic"))


def _future(fc: pd.DataFrame) -> pd.DataFrame:
    return fc[fc["is_forecast"]].reset_index(drop=True)


def test_forecast_recovers_known_rate_and_interval_coverage(synthetic: Path):
    fc = forecast_arrivals(open_dataset(synthetic), "SG", horizon_days=14, history_days=DAYS)
    assert list(fc.columns) == FORECAST_COLUMNS
    fut = _future(fc)
    assert len(fut) == 14 * 24
    truth = _true_rate(pd.DatetimeIndex(fut["date"]), fut["hour"].to_numpy())
    rel = np.abs(fut["arrivals"] / truth - 1)
    assert rel.mean() < 0.06
    # chance that a fresh Poisson count at the true rate lands in the 80% interval
    inside = stats.poisson.cdf(fut["upper"], truth) - stats.poisson.cdf(fut["lower"] - 1, truth)
    assert 0.75 <= inside.mean() <= 0.9


def test_masked_event_hours_are_left_out_of_the_fit(synthetic: Path):
    ds = open_dataset(synthetic)
    hist = hourly_arrivals(ds, "SG")
    masked = hist[hist["masked"]]
    assert set(masked["hour"]) == set(range(14, 24))
    assert set(masked["date"].dt.date) == {OUTAGE_DAY}
    kept = _future(forecast_arrivals(ds, "SG", horizon_days=7, history_days=DAYS))
    unmasked = _future(
        forecast_arrivals(ds, "SG", horizon_days=7, history_days=DAYS, mask_kinds=())
    )
    truth = _true_rate(pd.DatetimeIndex(kept["date"]), kept["hour"].to_numpy())
    afternoon = kept["hour"] >= 14
    # with the outage masked the forecast stays on the truth; without, the spike leaks in
    assert np.abs(kept.loc[afternoon, "arrivals"] / truth[afternoon] - 1).mean() < 0.06
    leak = unmasked.loc[afternoon, "arrivals"] / kept.loc[afternoon, "arrivals"]
    assert leak.min() > 1.1 and leak.mean() > 1.2
    assert not hourly_arrivals(ds, "SG", mask_kinds=())["masked"].any()


def test_hourly_arrivals_count_every_decision_once(small_data: Path):
    ds = open_dataset(small_data)
    hist = hourly_arrivals(ds, "TH")
    period = Period(hist["date"].min().date(), hist["date"].max().date())
    total = decisions_in_period(ds, market="TH", period=period).count().to_pyarrow().as_py()
    assert hist["arrivals"].sum() == total
    assert hist.groupby(["queue", "date"]).size().eq(24).all()


def test_forecast_on_demo_data(small_data: Path):
    fc = forecast_arrivals(open_dataset(small_data), "TH", horizon_days=28)
    assert list(fc.columns) == FORECAST_COLUMNS
    assert fc.groupby("queue")["is_forecast"].sum().eq(28 * 24).all()
    past, fut = fc[~fc["is_forecast"]], fc[fc["is_forecast"]]
    assert past[["lower", "upper"]].isna().all().all()
    assert (fut["lower"] <= fut["upper"]).all() and (fut["arrivals"] >= 0).all()
    assert fut["date"].min() == past["date"].max() + pd.Timedelta(days=1)
    # the planted AI outage (14:00-24:00 local) is masked in every queue
    per_queue = past[past["masked"]].groupby("queue").size()
    assert per_queue.eq(10).all() and len(per_queue) == fc["queue"].nunique()


def test_backtest_beats_seasonal_naive_on_demo_data(small_data: Path):
    ds = open_dataset(small_data)
    bt = pd.concat([backtest(ds, m, test_days=28) for m in MARKETS])
    assert list(bt.columns) == BACKTEST_COLUMNS
    wide = bt.pivot_table(index=["market", "queue"], columns="method", values=["mase", "coverage"])
    model, naive = wide["mase"]["seasonal_glm"], wide["mase"]["seasonal_naive"]
    assert (model < naive).mean() >= 0.8
    assert model.median() < naive.median()
    cover = wide["coverage"]["seasonal_glm"]
    assert 0.6 <= cover.mean() <= 0.95
    # queues under one item an hour over-cover (counts are integers); the others must not
    volume = pd.concat(
        [hourly_arrivals(ds, m).groupby(["market", "queue"])["arrivals"].mean() for m in MARKETS]
    )
    busy = volume.reindex(cover.index) >= 1
    assert busy.sum() >= 6
    assert cover[busy].between(0.6, 0.95).all()


def test_seasonal_naive_repeats_last_week_and_scales_by_its_error():
    rng = np.random.default_rng(0)
    y = rng.poisson(5, 168 * 3).astype(float)
    masked = np.zeros(len(y), dtype=bool)
    mean, lower, upper, scale = _seasonal_naive(y, masked, 200, 0.8)
    assert np.array_equal(mean[:168], y[-168:]) and np.array_equal(mean[168:], y[-168:][:32])
    assert scale == pytest.approx(np.mean(np.abs(y[168:] - y[:-168])))
    # the interval widens after the first week (k = 1: sqrt(2) times)
    width = upper - mean
    assert width[170] == pytest.approx(width[0] * np.sqrt(2))
    assert (lower >= 0).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"interval": 1.0}, "interval must be strictly between 0 and 1; got 1.0"),
        ({"history_days": 7}, "history_days must be an integer >= 14; got 7"),
        ({"horizon_days": 0}, "horizon_days must be an integer >= 1; got 0"),
    ],
)
def test_bad_arguments(synthetic: Path, kwargs, message):
    with pytest.raises(ParameterError, match=message):
        forecast_arrivals(open_dataset(synthetic), "SG", **kwargs)


def test_too_little_history_is_refused(synthetic: Path):
    early = (FIRST + timedelta(days=9)).isoformat()
    with pytest.raises(QualityLabError, match="needs at least 14 days of history"):
        forecast_arrivals(open_dataset(synthetic), "SG", end=early)


def test_market_local_hours_follow_the_time_zone(synthetic: Path):
    # the synthetic evening peak is at 21:00 Singapore time
    hist = hourly_arrivals(open_dataset(synthetic), "SG", mask_kinds=())
    by_hour = hist.groupby("hour")["arrivals"].mean()
    assert int(by_hour.idxmax()) in (20, 21, 22)
