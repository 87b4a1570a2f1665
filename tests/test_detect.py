"""Detectors on simulated series with known answers; the scan against planted incidents."""

from __future__ import annotations

import warnings
from datetime import date

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from qualitylab.detect import (
    ALERT_COLUMNS,
    DETECTOR_COLUMNS,
    MSG_LENGTHS,
    MSG_UNKNOWN_DIMENSION,
    MSG_UNKNOWN_METRIC,
    SKIPPED_COLUMNS,
    changepoints,
    cusum_chart,
    ewma_chart,
    minimum_detectable_change,
    nearby_events,
    p_chart,
    required_n,
    scan,
    scan_p_value,
    skipped_series,
    stl_mad,
    write_alerts,
)
from qualitylab.detection.detect.series import _daily_operational
from qualitylab.errors import ParameterError
from qualitylab.metrics import operational_metrics
from qualitylab.sources import open_dataset

WEEK = np.array([0.94, 0.93, 0.94, 0.97, 1.05, 1.19, 1.16])  # Monday..Sunday volume profile


# --------------------------------------------------------------------------- #
# p-chart
# --------------------------------------------------------------------------- #
def test_p_chart_matches_hand_computation():
    obs = [0.90, 0.92, 0.88, 0.91, 0.80]
    n = [100, 200, 150, 120, 100]
    res = p_chart(obs, n, baseline=4, laney=False)
    assert list(res.columns[: len(DETECTOR_COLUMNS)]) == DETECTOR_COLUMNS
    # p-bar = (sum k + 0.5) / (sum n + 1) over the reference; limits p-bar +- 3 se(n_i)
    k = 90 + 184 + 132 + 109.2
    p_bar = (k + 0.5) / (570 + 1)
    se = np.sqrt(p_bar * (1 - p_bar) / 100)
    last = res.iloc[-1]
    assert last["expected"] == pytest.approx(p_bar)
    assert last["lower"] == pytest.approx(p_bar - 3 * se)
    assert last["upper"] == pytest.approx(p_bar + 3 * se)
    assert last["statistic"] == pytest.approx((0.80 - p_bar) / se)
    assert last["p_value"] == pytest.approx(2 * stats.norm.sf(abs((0.80 - p_bar) / se)))
    assert res["flag"].tolist() == [False, False, False, False, True]


def test_p_chart_flags_planted_drop_and_not_a_stable_series():
    rng = np.random.default_rng(1)
    n = rng.integers(150, 400, 56)
    p = np.full(56, 0.95)
    p[40:44] = 0.85  # a 10-point drop for four days (z ~ 4-9 at these n)
    k = rng.binomial(n, p)
    dates = pd.date_range("2026-09-28", periods=56)
    res = p_chart(pd.Series(k / n, index=dates), pd.Series(n, index=dates), baseline=28)
    flagged = set(np.flatnonzero(res["flag"]))
    assert len(flagged & set(range(40, 44))) >= 3
    assert flagged <= set(range(40, 44))
    assert res["date"].iloc[0] == dates[0]
    stable = p_chart(rng.binomial(n, 0.95) / n, n, baseline=28)
    assert not stable["flag"].any()


def test_p_chart_false_positive_rate_near_nominal():
    # 200 stable binomial series: the share of flagged monitored days should be
    # close to the nominal two-sided 3-sigma rate 2 * (1 - Phi(3)) = 0.0027.
    rng = np.random.default_rng(7)
    flags = []
    for _ in range(200):
        n = rng.integers(200, 800, 56)
        pc = p_chart(rng.binomial(n, 0.9) / n, n, baseline=28)
        flags.append(pc["flag"].to_numpy()[28:])
    rate = np.mean(flags)
    nominal = 2 * stats.norm.sf(3)
    assert nominal == pytest.approx(0.0027, abs=1e-4)
    assert rate <= 2.5 * nominal


def test_laney_adjusts_sigma_on_an_overdispersed_series():
    rng = np.random.default_rng(3)
    n = np.full(56, 2000)
    # daily true rate varies (sd 0.02 around 0.9): beta-binomial overdispersion
    a, b = 0.9 * 201.5, 0.1 * 201.5  # Beta(a, b) has sd sqrt(.9*.1/(a+b+1)) = 0.0211
    p_true = rng.beta(a, b, 56)
    k = rng.binomial(n, p_true)
    res = p_chart(k / n, n, baseline=28)
    # sigma_z ~ sqrt(1 + n * var(p) / (p (1 - p))) = sqrt(1 + 2000 * 0.000444 / 0.09) = 3.3
    expected_sigma = np.sqrt(1 + 2000 * (0.9 * 0.1 / (201.5 + 1)) / 0.09)
    assert res.attrs["laney"]
    assert res.attrs["sigma_z"] == pytest.approx(expected_sigma, rel=0.35)
    binomial_half_width = 3 * np.sqrt(res.attrs["p_bar"] * (1 - res.attrs["p_bar"]) / 2000)
    half_width = (res["upper"] - res["expected"]).iloc[-1]
    assert half_width == pytest.approx(res.attrs["scale"] * binomial_half_width)
    assert res["flag"].sum() <= 2  # the plain p-chart would flag about half the days
    plain = p_chart(k / n, n, baseline=28, laney=False)
    assert plain["flag"].sum() > 5
    stable = p_chart(rng.binomial(n, 0.9) / n, n, baseline=28)
    assert not stable.attrs["laney"]
    assert stable.attrs["sigma_z"] == pytest.approx(1.0, abs=0.35)


def test_p_chart_mask_leaves_points_out_of_the_reference():
    obs = np.r_[np.full(10, 0.9), 0.5, np.full(5, 0.9)]
    n = np.full(16, 500)
    dates = pd.date_range("2026-01-01", periods=16)
    s = pd.Series(obs, index=dates)
    masked = p_chart(s, pd.Series(n, index=dates), baseline=12, mask=[dates[10]], laney=False)
    assert masked.attrs["reference_n"] == 11 * 500
    by_bool = p_chart(obs, n, baseline=12, mask=np.arange(16) == 10, laney=False)
    assert by_bool.attrs["p_bar"] == pytest.approx(masked.attrs["p_bar"])


def test_p_chart_rejects_bad_input():
    with pytest.raises(ParameterError, match="inconsistent lengths"):
        p_chart([0.5, 0.5], [10])
    assert MSG_LENGTHS.startswith("Found input variables")
    with pytest.raises(ParameterError, match=r"observed must be in \[0, 1\]; got 1.5"):
        p_chart([0.5, 1.5, 0.5], [10, 10, 10])
    with pytest.raises(ParameterError, match="baseline must be an integer"):
        p_chart([0.5, 0.5, 0.5], [10, 10, 10], baseline=1)
    with pytest.raises(ParameterError, match="laney must be one of"):
        p_chart([0.5, 0.5, 0.5], [10, 10, 10], laney="yes")


# --------------------------------------------------------------------------- #
# CUSUM and EWMA
# --------------------------------------------------------------------------- #
def _first_signal(flag: np.ndarray, start: int) -> float:
    hits = np.flatnonzero(flag[start:])
    return float(hits[0]) + 1 if len(hits) else np.inf


def test_cusum_and_ewma_detect_a_one_sigma_shift_within_about_ten_days():
    rng = np.random.default_rng(11)
    delays = {"cusum": [], "ewma": []}
    for _ in range(200):
        x = rng.standard_normal(70)
        x[28:] += 1.0
        cu = cusum_chart(x, target=0, sigma=1, baseline=28)
        ew = ewma_chart(x, target=0, sigma=1, baseline=28)
        delays["cusum"].append(_first_signal(cu["flag"].to_numpy(), 28))
        delays["ewma"].append(_first_signal(ew["flag"].to_numpy(), 28))
    # Montgomery Table 9.4 / Lucas & Saccucci (1990): ARL(1 sigma) ~ 9-10 days
    assert np.median(delays["cusum"]) <= 10
    assert np.median(delays["ewma"]) <= 10
    assert np.mean(np.isfinite(delays["cusum"])) >= 0.95
    assert np.mean(np.isfinite(delays["ewma"])) >= 0.95


def test_cusum_and_ewma_rarely_signal_in_control():
    # In-control ARL ~300 (CUSUM k=0.5, h=4.5, two-sided) and 500 (EWMA 0.2/2.962):
    # over 28 monitored days about 9% and 5% of series signal.
    rng = np.random.default_rng(12)
    cu_hits = ew_hits = 0
    for _ in range(300):
        x = rng.standard_normal(56)
        cu_hits += cusum_chart(x, target=0, sigma=1, baseline=28)["flag"].any()
        ew_hits += ewma_chart(x, target=0, sigma=1, baseline=28)["flag"].any()
    assert cu_hits / 300 <= 0.18
    assert ew_hits / 300 <= 0.12


def test_cusum_onset_dates_the_shift():
    rng = np.random.default_rng(13)
    onsets = []
    for _ in range(100):
        x = rng.standard_normal(60)
        x[40:] -= 2.0
        res = cusum_chart(x, target=0, sigma=1, baseline=28)
        lower = res["flag"].to_numpy() & (res["statistic"].to_numpy() < 0)
        first = np.flatnonzero(lower)[0]  # the lower side signals the drop
        onsets.append(res["onset"].iloc[first])
    assert abs(np.median(onsets) - 40) <= 1


def test_cusum_and_ewma_follow_their_recurrences():
    x = np.array([0.0, 1.0, 2.0, -1.0, 0.5, 3.0])
    cu = cusum_chart(x, target=0, sigma=1, k=0.5, h=2.0)
    cp = cm = 0.0
    expected = []
    for v in x:
        cp, cm = max(0.0, cp + v - 0.5), max(0.0, cm - v - 0.5)
        expected.append(cp if cp >= cm else -cm)
    np.testing.assert_allclose(cu["statistic"], expected)
    ew = ewma_chart(x, target=0, sigma=1, lam=0.3, limit=3)
    e, stat = 0.0, []
    for v in x:
        e = 0.3 * v + 0.7 * e
        stat.append(e)
    np.testing.assert_allclose(ew["statistic"], stat)
    width = 3 * np.sqrt(0.3 / 1.7 * (1 - 0.7 ** (2 * np.arange(1, 7))))
    np.testing.assert_allclose(ew["upper"], width)


def test_cusum_estimates_target_and_sigma_from_the_reference():
    x = np.r_[np.tile([9.0, 11.0], 10), np.full(10, 14.0)]
    res = cusum_chart(x, baseline=20)
    assert res.attrs["target"] == pytest.approx(10.0)
    assert res.attrs["sigma"] == pytest.approx(2.0 / 1.128)  # mean moving range / d2
    # z = (14 - 10) / 1.773 = 2.26 a day: C+ = 1.76, 3.51, 5.27 -> signal on the third day
    assert np.flatnonzero(res["flag"]).tolist() == list(range(22, 30))


# --------------------------------------------------------------------------- #
# STL + MAD
# --------------------------------------------------------------------------- #
def test_stl_mad_flags_a_spike_and_not_the_weekly_cycle():
    rng = np.random.default_rng(21)
    mu = 300 * np.tile(np.array([0.8, 0.8, 0.85, 0.9, 1.0, 1.6, 1.5]), 8)  # strong weekends
    x = rng.poisson(mu).astype(float)
    x[45] *= 1.8
    dates = pd.date_range("2026-09-28", periods=56)
    res = stl_mad(pd.Series(x, index=dates), log=True, baseline=28)
    assert np.flatnonzero(res["flag"]).tolist() == [45]
    assert res["date"].iloc[45] == dates[45]
    assert res.loc[45, "observed"] > res.loc[45, "upper"]
    weekends = res["seasonal"].to_numpy()[5::7]
    assert (weekends > 0.3).all()  # the cycle is in the season, not in the residuals


def test_stl_mad_false_positive_rate_on_weekly_poisson_counts():
    rng = np.random.default_rng(22)
    flags = []
    for _ in range(100):
        x = rng.poisson(80 * np.tile(WEEK, 8)).astype(float)
        flags.append(stl_mad(x, log=True, baseline=28)["flag"].to_numpy()[28:])
    assert np.mean(flags) <= 0.01  # normal-theory rate at 3.5 is 0.0005; robust STL ~0.004


def test_stl_mad_scale_floor_and_validation():
    rng = np.random.default_rng(23)
    x = rng.poisson(1000 * np.tile(WEEK, 6)).astype(float)
    res = stl_mad(x, log=True, scale_floor=0.5)
    assert res.attrs["scale"] == 0.5
    assert not res["flag"].any()
    with pytest.raises(ParameterError, match="stl_mad needs at least 15 usable points"):
        stl_mad(np.ones(10))
    with pytest.raises(ParameterError, match="values must be in"):
        stl_mad(-x, log=True)


# --------------------------------------------------------------------------- #
# Changepoints
# --------------------------------------------------------------------------- #
def test_changepoint_finds_a_level_shift_at_the_right_day():
    rng = np.random.default_rng(31)
    found = []
    for _ in range(100):
        x = rng.standard_normal(56)
        x[30:] += 3.0  # a 3 sigma level shift
        res = changepoints(x)
        found.append(res.attrs["changes"])
    near = [any(abs(c - 30) <= 1 for c in ch) for ch in found]
    assert np.mean(near) >= 0.9
    dates = pd.date_range("2026-09-28", periods=56)
    x = np.r_[np.zeros(30), np.full(26, 3.0)] + rng.standard_normal(56) * 0.5
    res = changepoints(pd.Series(x, index=dates))
    assert res.attrs["changes"] == [dates[30]]
    row = res.iloc[30]
    assert row["flag"] and row["statistic"] > 10 and row["p_value"] < 1e-10
    assert res["segment"].tolist() == [0] * 30 + [1] * 26


def test_changepoints_rarely_split_white_noise():
    rng = np.random.default_rng(32)
    splits = [len(changepoints(rng.standard_normal(56)).attrs["changes"]) for _ in range(200)]
    assert np.mean(np.array(splits) > 0) <= 0.05


def test_changepoints_agree_with_ruptures_pelt():
    import ruptures as rpt  # in the dev extra: this comparison must run, not skip

    rng = np.random.default_rng(33)
    for _ in range(20):
        x = np.r_[
            rng.normal(0, 1, rng.integers(10, 30)),
            rng.normal(3, 1, rng.integers(10, 30)),
            rng.normal(-1, 1, rng.integers(10, 30)),
        ]
        pen = 3 * np.log(len(x))
        ours = changepoints(x, penalty=pen, min_size=3)
        # ruptures: Pelt(model="l2", min_size=3, jump=1).fit(x).predict(pen)
        theirs = rpt.Pelt(model="l2", min_size=3, jump=1).fit(x).predict(pen=pen)
        assert [int(c) for c in ours.attrs["changes"]] == theirs[:-1]


def _max_window_z(z: np.ndarray) -> np.ndarray:
    """Largest |sum of a window| / sqrt(length) over every window of each row."""
    c = np.concatenate([np.zeros((len(z), 1)), z.cumsum(axis=1)], axis=1)
    top = np.zeros(len(z))
    for length in range(1, z.shape[1] + 1):
        s = np.abs(c[:, length:] - c[:, :-length]) / np.sqrt(length)
        top = np.maximum(top, s.max(axis=1))
    return top


@pytest.mark.parametrize("days", [9, 28, 62])
def test_scan_p_value_matches_the_simulated_window_search(days):
    # The null distribution of the most deviant window of `days` iid N(0, 1)
    # days, by simulation; the analytic tail must agree within 20% where it
    # matters (tail probabilities 0.002-0.1).
    rng = np.random.default_rng(days)
    top = _max_window_z(rng.standard_normal((40_000, days)))
    for b in (2.8, 3.2, 3.6, 4.0):
        simulated = float(np.mean(top > b))
        if not 0.002 <= simulated <= 0.1:
            continue
        assert scan_p_value(b, days) == pytest.approx(simulated, rel=0.2), (days, b)
    # As a p-value for the search it keeps the family-wise false-alarm rate
    fwer = float(np.mean(np.asarray(scan_p_value(top, days)) <= 0.05))
    assert fwer == pytest.approx(0.05, abs=0.012), fwer
    # ... and is far less strict than Bonferroni over every window of a month or more
    windows = days * (days + 1) / 2
    bonferroni = min(1.0, windows * 2 * stats.norm.sf(4.0))
    assert scan_p_value(4.0, days) < (0.6 if days < 28 else 0.3) * bonferroni


def test_scan_p_value_edge_cases():
    assert scan_p_value(3.0, 1) == pytest.approx(2 * stats.norm.sf(3.0))
    assert scan_p_value(0.0, 62) == 1.0
    z = np.array([2.0, 4.0, 6.0])
    p = scan_p_value(z, 62)
    assert p.shape == (3,) and np.all(np.diff(p) < 0)
    assert np.all(p >= 2 * stats.norm.sf(z))


@pytest.mark.parametrize(
    ("rate", "n", "n_ref"), [(0.94, 130, 480), (0.03, 200, 900), (0.5, 60, 60)]
)
def test_minimum_detectable_change_has_the_power_statsmodels_computes(rate, n, n_ref):
    from statsmodels.stats.proportion import power_proportions_2indep

    for direction, sign in (("down", -1), ("up", 1)):
        d = minimum_detectable_change(rate, n, n_reference=n_ref, direction=direction, power=0.8)
        pw = power_proportions_2indep(
            sign * d, rate, n, ratio=n_ref / n, alpha=0.05, return_results=False
        )
        assert pw == pytest.approx(0.8, abs=0.005), (direction, d)


def test_minimum_detectable_change_holds_through_the_window_search():
    # Windows of 150 audits at 94% accuracy, searched over 62 days among 200
    # series: simulated drops of the detectable size are flagged ~80% of the time.
    rate, n, days, series = 0.94, 150, 62, 200
    d = minimum_detectable_change(rate, n, period_days=days, series=series)
    rng = np.random.default_rng(5)
    k = rng.binomial(n, rate - d, size=20_000)
    z = (k / n - rate) / np.sqrt(rate * (1 - rate) / n)
    flagged = np.asarray(scan_p_value(z, days)) * series <= 0.05
    assert flagged.mean() == pytest.approx(0.8, abs=0.04)
    # ... the search costs: with the dates known the same windows need a smaller drop
    assert minimum_detectable_change(rate, n, series=series) < 0.8 * d
    # required_n inverts it
    assert required_n(rate, -d, period_days=days, series=series) == pytest.approx(n, rel=1e-3)


def test_minimum_detectable_change_validates():
    with pytest.raises(ParameterError, match="rate"):
        minimum_detectable_change(1.2, 100)
    with pytest.raises(ParameterError, match="direction"):
        minimum_detectable_change(0.9, 100, direction="sideways")
    assert np.isnan(minimum_detectable_change(0.02, 5, period_days=62, series=300))


# --------------------------------------------------------------------------- #
# Events
# --------------------------------------------------------------------------- #
def test_nearby_events_use_market_local_dates_and_policy():
    ev = pd.DataFrame(
        {
            "effective_at": pd.to_datetime(
                ["2026-11-08T17:00Z", "2026-11-09T02:00Z", "2026-11-20T00:00Z", "2026-11-09T00:00Z"]
            ),
            "market": ["ID", "*", "ID", "SG"],
            "kind": ["policy_change", "training", "training", "outage"],
            "policy": ["scam", "spam", None, None],
            "description": ["Scam update", "Spam refresher", "Later", "Elsewhere"],
        }
    )
    got = nearby_events(ev, "2026-11-09", market="ID", timezone="Asia/Jakarta")
    # 17:00 UTC on 8 Nov is 00:00 on 9 Nov in Jakarta (UTC+7)
    assert got == [
        "2026-11-09 policy_change[scam]: Scam update",
        "2026-11-09 training[spam]: Spam refresher",
    ]
    only_scam = nearby_events(ev, "2026-11-09", market="ID", timezone="Asia/Jakarta", policy="scam")
    assert only_scam == ["2026-11-09 policy_change[scam]: Scam update"]
    # the window is [start - 3 days, min(start + 7 days, end)]
    assert nearby_events(ev, "2026-11-13", end="2026-11-14", market="ID", timezone="UTC") == []
    assert len(nearby_events(ev, "2026-11-13", market="ID", timezone="UTC")) == 1


# --------------------------------------------------------------------------- #
# Scan on the demo data with planted incidents
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def ds(small_data):
    return open_dataset(small_data)


@pytest.fixture(scope="module")
def incidents(small_data):
    return pd.read_csv(small_data / "incidents.csv", parse_dates=["start_date", "end_date"])


@pytest.fixture(scope="module")
def scanned(ds, incidents):
    """One scan per market with planted incidents, and the warnings each raised."""
    out = {}
    for market in sorted(incidents["market"].unique()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            alerts = scan(ds, market)
        out[market] = (alerts, [str(w.message) for w in caught])
    return out


def _matches(incident, alerts: pd.DataFrame) -> pd.Series:
    slack = pd.Timedelta(days=2)
    return (
        (alerts["market"] == incident.market)
        & (alerts["metric"] == incident.metric)
        & (alerts["dimension"] == incident.dimension)
        & (alerts["segment"] == incident.segment)
        & (alerts["start_date"] <= incident.end_date + slack)
        & (alerts["end_date"] >= incident.start_date - slack)
    )


def test_scan_finds_the_planted_incidents(scanned, incidents):
    alerts = pd.concat([a for a, _ in scanned.values()], ignore_index=True)
    hit = [bool(_matches(i, alerts).any()) for i in incidents.itertuples()]
    matched = np.zeros(len(alerts), bool)
    for i in incidents.itertuples():
        matched |= _matches(i, alerts).to_numpy()
    recall = sum(hit) / len(incidents)
    false_alerts = int((~matched).sum())
    print(
        f"\nscan recall {sum(hit)}/{len(incidents)} = {recall:.2f}; "
        f"false alerts {false_alerts} of {len(alerts)} (planted {len(incidents)}); missed: "
        + ", ".join(
            f"{i.market}/{i.metric}/{i.segment}"
            for i, h in zip(incidents.itertuples(), hit, strict=True)
            if not h
        )
    )
    assert recall >= 0.7
    assert false_alerts <= 3 * len(incidents)
    required = {
        ("ID", "accuracy", "vendor", "VendorC"),
        ("TH", "volume", "queue", "live_report"),
        ("TH", "sla_compliance", "queue", "live_report"),
        ("SG", "volume", "market", "SG"),
        ("ID", "over_enforcement_rate", "policy", "scam"),
    }
    found = {
        (i.market, i.metric, i.dimension, i.segment)
        for i, h in zip(incidents.itertuples(), hit, strict=True)
        if h
    }
    assert required <= found


def test_scan_output_follows_the_alerts_contract(scanned):
    for market, (alerts, _) in scanned.items():
        assert list(alerts.columns[: len(ALERT_COLUMNS)]) == ALERT_COLUMNS
        assert (alerts["market"] == market).all()
        assert alerts["direction"].isin(["up", "down"]).all()
        assert alerts["severity"].isin(["low", "medium", "high"]).all()
        assert alerts["p_value"].between(0, 1).all()
        assert (alerts["p_adjusted"] >= alerts["p_value"] - 1e-12).all()
        assert (alerts["p_adjusted"] <= alerts.attrs["fdr"]).all()
        assert (alerts["start_date"] <= alerts["end_date"]).all()
        start, end = alerts.attrs["period"]
        assert (alerts["end_date"] >= pd.Timestamp(start)).all()
        assert (alerts["end_date"] <= pd.Timestamp(end)).all()
        assert alerts["impact"].is_monotonic_decreasing
        assert alerts["group_id"].tolist() == list(range(1, len(alerts) + 1))
        up = alerts["direction"] == "up"
        assert (alerts.loc[up, "observed"] > alerts.loc[up, "expected"]).all()
        assert (alerts.loc[~up, "observed"] < alerts.loc[~up, "expected"]).all()
    # SG's sensitivity is high (FDR 10%), the others medium (5%)
    assert scanned["SG"][0].attrs["fdr"] == 0.10
    assert scanned["ID"][0].attrs["fdr"] == 0.05


def test_scan_groups_alerts_that_share_a_cause(scanned):
    alerts = scanned["SG"][0]
    spike = alerts[(alerts["metric"] == "volume") & (alerts["dimension"] == "market")]
    assert len(spike) == 1
    related = spike["related"].iloc[0]
    # the market-wide spike explains the same spike in the segments that alert with it
    assert related.startswith("volume ")
    th = scanned["TH"][0]
    sla = th[(th["metric"] == "sla_compliance") & (th["segment"] == "live_report")]
    assert "sla_compliance market=TH" in sla["related"].iloc[0]


def test_scan_reports_what_it_skipped(scanned):
    alerts, messages = scanned["ID"]
    skipped = skipped_series(alerts)
    assert list(skipped.columns) == SKIPPED_COLUMNS
    assert len(skipped) > 0
    assert skipped["reason"].str.contains(r"n=\d+ <|day\(s\) with data").all()
    assert any("too small to judge" in m for m in messages)
    # attrs hold records, so alerts of several markets still concatenate
    both = pd.concat([scanned["ID"][0], scanned["TH"][0]], ignore_index=True)
    assert len(both) == len(scanned["ID"][0]) + len(scanned["TH"][0])


def test_scan_annotates_alerts_with_nearby_events(scanned):
    alerts = pd.concat([a for a, _ in scanned.values()], ignore_index=True)
    assert alerts["events"].str.len().gt(0).any()
    assert alerts["note"].str.len().gt(0).all()


def test_write_alerts_round_trip(scanned, tmp_path):
    alerts = scanned["TH"][0].copy()
    alerts.loc[0, "segment"] = '=HYPERLINK("http://x")'
    path = write_alerts(alerts, tmp_path / "out" / "alerts.csv")
    back = pd.read_csv(path)
    assert list(back.columns[: len(ALERT_COLUMNS)]) == ALERT_COLUMNS
    assert back.loc[0, "segment"].startswith("'=")
    assert back["start_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert len(back) == len(alerts)
    with pytest.raises(ParameterError, match="lacks contract column"):
        write_alerts(alerts.drop(columns="severity"), tmp_path / "bad.csv")


def test_scan_rejects_unknown_metrics_and_dimensions(ds):
    with pytest.raises(ParameterError, match="scan cannot watch metric 'backlog'"):
        scan(ds, "SG", metrics=["backlog"])
    assert MSG_UNKNOWN_METRIC.startswith("scan cannot watch")
    with pytest.raises(ParameterError, match="unknown dimension 'shift'"):
        scan(ds, "SG", dimensions=["shift"])
    assert MSG_UNKNOWN_DIMENSION.startswith("unknown dimension")
    with pytest.raises(ParameterError, match="baseline_days must be"):
        scan(ds, "SG", baseline_days=3)


def test_daily_series_agree_with_operational_metrics_on_complete_days(ds):
    # scan aggregates volume, SLA and percentiles itself (one query per dimension);
    # on days with nothing pending they must equal the metrics module's numbers.
    start, end = date(2026, 10, 19), date(2026, 10, 21)
    ours = _daily_operational(ds, "SG", "queue", start, end)
    ref = operational_metrics(ds, market="SG", by=["queue", "date"], start=start, end=end)
    ref = ref.rename(columns={"queue": "segment"})
    ref["date"] = pd.to_datetime(ref["date"])
    both = ours.merge(ref, on=["segment", "date", "metric"], suffixes=("", "_ref"))
    vol = both[both["metric"] == "volume"]
    assert len(vol) == 12
    np.testing.assert_array_equal(vol["value"], vol["value_ref"])
    sla = both[both["metric"] == "sla_compliance"]
    complete = sla[sla["n"] == sla["n_ref"]]  # nothing censored (pending) that day
    assert len(complete) >= 10
    np.testing.assert_allclose(complete["value"], complete["value_ref"], rtol=1e-9)
    p50 = both[(both["metric"] == "response_p50") & both["value"].notna() & (both["n"] >= 30)]
    assert len(p50) >= 4
    # the metrics module bins times 5% wide on a log scale before interpolating (and
    # interpolates differently between order statistics, which matters for tiny n)
    np.testing.assert_allclose(p50["value"], p50["value_ref"], rtol=0.06)


def test_daily_operational_stacks_after_the_row_expressions(small_data):
    """stack= (rows stacked after the per-decision flags) equals a stacked dataset."""
    ds = open_dataset(small_data).for_market("ID")
    dims = ["market", "vendor", "queue", "ai_model"]
    start, end = date(2026, 10, 1), date(2026, 11, 22)
    ours = _daily_operational(ds, "ID", None, start, end, stack=dims)
    ref = _daily_operational(ds.stacked(dims), "ID", None, start, end)
    key = ["dimension", "segment", "date", "metric"]
    assert set(ours["dimension"]) == set(dims)
    assert ours["metric"].eq("response_p90").any() and ours["value"].notna().any()
    pd.testing.assert_frame_equal(
        ours.sort_values(key).reset_index(drop=True),
        ref.sort_values(key).reset_index(drop=True),
    )


def test_stacked_load_equals_one_load_per_dimension(small_data):
    """The scan's one-query-per-family load gives each dimension's series exactly."""
    from qualitylab import detect
    from qualitylab.detection.detect import series

    ds = open_dataset(small_data).for_market("ID")
    dims = ["market", "vendor", "site", "queue", "language", "policy", "ai_model"]
    wanted = set(detect.SCAN_METRICS) - {"reporting_gap", "red_team_recall"}
    start, end = date(2026, 9, 28), date(2026, 11, 22)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked = series.load_dimensions(ds, "ID", dims, start, end, wanted)
        for d in dims:
            one, notes = series._load_dimension(ds, "ID", d, start, end, wanted)
            got, got_notes = stacked[d]
            key = ["metric", "segment", "date"]
            assert len(one) > 0 and set(got_notes) == set(notes)
            pd.testing.assert_frame_equal(
                got.sort_values(key).reset_index(drop=True)[one.columns],
                one.sort_values(key).reset_index(drop=True),
                check_dtype=False,
                obj=d,
            )


def test_stacked_dataset_has_a_row_per_decision_and_dimension(small_data):
    ds = open_dataset(small_data).for_market("SG")
    n = ds.table("decisions").count().to_pyarrow().as_py()
    st = ds.stacked(["vendor", "queue"])
    counts = st.table("decisions").group_by("dimension").aggregate(k=lambda t: t.count())
    assert dict(counts.to_pandas().itertuples(index=False)) == {"vendor": n, "queue": n}
    assert st.extra_grains == ("dimension", "segment") and ds.extra_grains == ()
    with pytest.raises(Exception, match="no column 'colour'"):
        ds.stacked(["colour"])


def test_fast_tails_equal_scipy_stats_bit_for_bit():
    """The scan's direct special-function tails give scipy.stats' values exactly."""
    from qualitylab.detection.detect import pvalues

    rng = np.random.default_rng(7)
    x = np.r_[rng.normal(0, 3, 5000), [0.0, -0.0, np.inf, -np.inf, np.nan, 40.0, -40.0]]
    q = np.r_[rng.uniform(0, 1, 5000), 10.0 ** -rng.uniform(0, 300, 200), [0.0, 1.0, 0.5]]

    def same(a, b):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(a, b)
        num = ~np.isnan(a)
        np.testing.assert_array_equal(np.signbit(a[num]), np.signbit(b[num]))  # -0.0 vs 0.0

    same(pvalues._norm_sf(x), stats.norm.sf(x))
    same(pvalues._norm_cdf(x), stats.norm.cdf(x))
    same(pvalues._norm_pdf(x), stats.norm.pdf(x))
    same(pvalues.norm_isf(q), stats.norm.isf(q))
    for df in (1, 6, 10, 27):
        same(pvalues.t_sf(x, df), stats.t.sf(x, df))
    assert pvalues.norm_isf(0.5) == 0.0 and not np.signbit(pvalues.norm_isf(0.5))
    table = (3, 40, 12, 300)
    ref = stats.fisher_exact([[3, 40], [12, 300]]).pvalue
    assert pvalues._fisher_p(*table) == ref and pvalues._fisher_p(*table) == ref
    # Fisher's test on the special functions directly: every small table, the scan's
    # window-against-reference shapes, empty rows and columns, a large table
    tables = [tuple(int(v) for v in t) for t in np.ndindex(5, 5, 5, 5)]
    for _ in range(1500):
        nw, nr = int(rng.integers(1, 300)), int(rng.integers(1, 4000))
        rate = rng.uniform(0, 0.3)
        kw = int(rng.binomial(nw, rate * rng.uniform(0.3, 3) if rate < 0.3 else rate))
        kr = int(rng.binomial(nr, rate))
        tables.append((kw, nw - kw, kr, nr - kr))
    tables += [(0, 10, 0, 20), (10, 0, 20, 0), (0, 0, 3, 4), (2, 900000, 9, 1800000)]
    got = [pvalues._fisher_p.__wrapped__(*t) for t in tables]
    ref = [float(stats.fisher_exact([t[:2], t[2:]]).pvalue) for t in tables]
    assert got == ref and len({round(v, 3) for v in got}) > 50


def test_qa_join_then_stack_equals_the_stacked_dataset(small_data):
    """_qa_stacked (audits joined once, joined rows stacked) = qa_metrics of ds.stacked."""
    from qualitylab.detection.detect import series
    from qualitylab.metrics import qa_metrics

    ds = open_dataset(small_data).for_market("ID")
    dims = ["market", "vendor", "policy"]
    start, end = date(2026, 10, 1), date(2026, 11, 22)
    key = ["dimension", "segment", "date", "metric"]
    cols = [*key, "value", "n"]
    ours = series._qa_stacked(ds, "ID", dims, start, end)
    ref = qa_metrics(ds.stacked(dims), market="ID", by=key[:3], start=start, end=end)
    assert len(ours) > 0 and set(ours["dimension"]) == set(dims)
    pd.testing.assert_frame_equal(
        ours[cols].sort_values(key).reset_index(drop=True),
        ref[cols].sort_values(key).reset_index(drop=True),
        check_dtype=False,
    )
    stacked = series._stack_rows(ds.table("decisions"), dims)
    assert (
        stacked.count().to_pyarrow().as_py()
        == 3 * ds.table("decisions").count().to_pyarrow().as_py()
    )


def _partition_reference(x: np.ndarray, pen: float, min_size: int) -> list[int]:
    """Optimal partitioning one end at a time over the finite ``f`` (the former loop)."""
    n = len(x)
    if n < 2 * min_size:
        return [n]
    s1, s2 = np.r_[0.0, np.cumsum(x)], np.r_[0.0, np.cumsum(x * x)]
    f = np.full(n + 1, np.inf)
    f[0] = -pen
    last = np.zeros(n + 1, dtype=int)
    for t in range(min_size, n + 1):
        s = np.flatnonzero(np.isfinite(f[: t - min_size + 1]))
        total = f[s] + (s2[t] - s2[s] - (s1[t] - s1[s]) ** 2 / (t - s)) + pen
        j = int(np.argmin(total))
        f[t], last[t] = total[j], s[j]
    ends, t = [], n
    while t > 0:
        ends.append(t)
        t = last[t]
    return sorted(ends)


def test_optimal_partition_on_slices_equals_the_reference_recursion():
    """Change points on slices of the cost table: the same segments, ties included."""
    from qualitylab.detection.detect.detectors import _optimal_partition

    rng = np.random.default_rng(11)
    shapes = []
    for i in range(400):
        n = int(rng.integers(1, 120))
        x = [
            rng.normal(0, 1, n),
            np.r_[rng.normal(0, 1, n // 2), rng.normal(2.5, 1, n - n // 2)],
            np.round(rng.normal(0, 1, n)),  # many exact ties between candidate splits
            np.full(n, 0.3),
        ][i % 4]
        shapes.append((x, float(rng.choice([0.0, 1.0, 3.5 * np.log(n + 1), 40.0])), 1 + i % 5))
    changed = 0
    for x, pen, m in shapes:
        got = _optimal_partition(x, pen, m)
        assert got == _partition_reference(x, pen, m), (len(x), pen, m)
        changed += len(got) > 1
    assert changed > 50  # segmentations with change points, not only single segments
    with_gap = np.r_[np.zeros(20), np.nan, np.ones(20)]  # not finite: the former loop
    assert _optimal_partition(with_gap, 1.0, 3) == [41]


def test_scan_ai_rates_equal_ai_metrics(small_data):
    """The scan's AI series (confusion counts only) are ai_metrics_from_audits' values and n."""
    from qualitylab import detect
    from qualitylab.aieval import ai_metrics_from_audits, scored_audits
    from qualitylab.detection.detect import series

    ds = open_dataset(small_data).for_market("SG")
    dims = ["market", "queue", "language", "policy", "ai_model"]
    start, end = date(2026, 10, 1), date(2026, 11, 22)
    wanted = set(detect.SCAN_METRICS) - {"reporting_gap", "red_team_recall"}
    key = ["dimension", "segment", "date"]
    mp = ds.params.market("SG")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = series.load_dimensions(ds, "SG", dims, start, end, wanted)
        table = series._stack_rows(scored_audits(ds, market="SG", start=start, end=end), dims)
        ref = ai_metrics_from_audits(
            table, mp.ai_threshold, key, confidence_level=mp.confidence_level, f1_interval=False
        )
    ref = series._tidy_stacked(ref)
    ref = ref[ref["metric"].isin(wanted)].assign(segment=ref["segment"].astype(str))
    ours = pd.concat([frame.assign(dimension=d) for d, (frame, _) in loaded.items()])
    ours = ours[ours["metric"].str.startswith("ai_")]
    key.append("metric")
    ours, ref = (
        f[[*key, "value", "n"]].sort_values(key).reset_index(drop=True) for f in (ours, ref)
    )
    assert len(ours) > 100 and set(ours["dimension"]) == set(dims)
    # n exactly; weighted rates to 1e-12: the engine sums the weights in parallel, so
    # their last bits vary from one run of the same query to the next
    pd.testing.assert_frame_equal(
        ours.drop(columns="value"), ref.drop(columns="value"), check_dtype=False, check_exact=True
    )
    np.testing.assert_allclose(ours["value"], ref["value"], rtol=1e-12, atol=0)


def test_series_grids_equal_one_pivot_per_column(small_data):
    """The scan's day grids are the pivots they replace: same rows, same values."""
    from qualitylab import detect
    from qualitylab.detection.detect import series

    ds = open_dataset(small_data).for_market("TH")
    start, end = date(2026, 10, 1), date(2026, 11, 22)
    dates = pd.date_range(start, end, freq="D")
    wanted = set(detect.SCAN_METRICS) - {"reporting_gap", "red_team_recall"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = series.load_dimensions(ds, "TH", ["vendor", "queue"], start, end, wanted)
    cols = ["value", "n", "volume_day", "dispersion"]
    for long, _ in loaded.values():
        long = long.drop_duplicates(["metric", "segment", "date"])
        late = long.assign(date=long["date"] + pd.Timedelta(days=60))  # outside dates
        rows, grids = series.series_grids(pd.concat([long, late.head(5)]), dates, cols)
        assert len(rows) > 10 and np.isfinite(grids[0]).sum() > 100
        for col, grid in zip(cols, grids, strict=True):
            ref = long.pivot(index=["metric", "segment"], columns="date", values=col)
            ref = ref.reindex(columns=dates).sort_index()
            assert list(ref.index) == list(rows)
            np.testing.assert_array_equal(grid, ref.to_numpy(float))
