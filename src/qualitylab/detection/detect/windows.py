"""The window search: detectors propose windows of days, each tested as one sample.

A daily series (:class:`DailySeries`) in the context of one market's scan
(:class:`ScanContext`) is judged by the detectors for its kind (rates:
p-chart, CUSUM, EWMA, change points; counts and times: STL + MAD and change
points; the reporting gap: weekly z-scores and CUSUM). Runs of flagged days
become windows (:class:`Window`), each tested as one pooled sample against
the baseline with a p-value that pays for the search (:func:`search_p`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.detection.detect.detectors import (
    AS_ARRAYS,
    changepoints,
    cusum_chart,
    ewma_chart,
    p_chart,
    stl_mad,
)
from qualitylab.detection.detect.pvalues import heavy_tailed, search_p, two_sided, window_z
from qualitylab.detection.detect.vocabulary import COUNTS, RATES, TIMES


@dataclass
class ScanContext:
    """One market's scan: its days, baseline, masked days, ``min_n``, FDR, and series skipped."""

    market: str
    dates: pd.DatetimeIndex  # baseline start .. end, daily
    base_len: int  # leading days that are baseline only
    mask: np.ndarray  # days excluded from reference estimates
    min_n: int
    fdr: float
    skipped: list[dict[str, Any]] = field(default_factory=list)
    first_scan: int = 0  # first day alerts may start on (0: the whole range is scanned)
    window: int = 28  # baseline_days: the most history a young-baseline day is judged on

    @property
    def monitored_days(self) -> int:
        return len(self.dates) - self.base_len

    def skip(self, metric: str, dim: str, seg: str, reason: str, n: float, days: int) -> None:
        self.skipped.append(
            {
                "market": self.market,
                "metric": metric,
                "dimension": dim,
                "segment": seg,
                "reason": reason,
                "n": float(n),
                "days": int(days),
            }
        )


@dataclass
class DailySeries:
    """One metric of one segment, a value (and its ``n``) per day of the scan."""

    metric: str
    dimension: str
    segment: str
    value: np.ndarray
    n: np.ndarray
    volume: np.ndarray
    counterfactual: np.ndarray | None = None  # baseline level x weekly pattern (counts/times)
    floor: float = 0.0  # sampling noise of one day, on the log scale (counts/times)
    stop: int | None = None  # first day of a segment that stopped (no data from here on)
    since: int = 0  # first day of the series' history (a re-baseline; no data before it)


@dataclass
class Window:
    """Consecutive days of a series a detector proposes, tested as one sample."""

    series: DailySeries
    kind: str
    detector: str
    start: int
    end: int  # inclusive
    direction: str
    p_raw: float
    observed: float
    expected: float
    n: float
    p_value: float = float("nan")
    p_adjusted: float = float("nan")
    kpi: str = ""
    history: int = 0  # young_baseline: days of history the day was judged against


def _runs(flag: np.ndarray, sign: np.ndarray) -> list[tuple[int, int, int]]:
    """Maximal runs of consecutive flagged points with the same sign."""
    out = []
    i, n = 0, len(flag)
    while i < n:
        if flag[i]:
            j = i
            while j + 1 < n and flag[j + 1] and sign[j + 1] == sign[i]:
                j += 1
            out.append((i, j, int(sign[i])))
            i = j + 1
        else:
            i += 1
    return out


def _extend(
    z: np.ndarray, a: int, b: int, sign: int, first: int, low: float = 2.0
) -> tuple[int, int]:
    """Grow a run of flagged days over neighbours still beyond ``low`` sigma (hysteresis)."""
    while a - 1 >= first and np.isfinite(z[a - 1]) and sign * z[a - 1] >= low:
        a -= 1
    while b + 1 < len(z) and np.isfinite(z[b + 1]) and sign * z[b + 1] >= low:
        b += 1
    return a, b


def _trim(z: np.ndarray, a: int, b: int, sign: int, k: float = 0.5) -> tuple[int, int] | None:
    """Drop end days that do not deviate by at least k sigma in the window's direction."""
    while a <= b and not (np.isfinite(z[a]) and sign * z[a] >= k):
        a += 1
    while b >= a and not (np.isfinite(z[b]) and sign * z[b] >= k):
        b -= 1
    return (a, b) if a <= b else None


def _rate_windows(s: DailySeries, ctx: ScanContext) -> list[Window]:
    base, T = ctx.base_len, ctx.monitored_days
    pc = p_chart(s.value, s.n, baseline=base, mask=ctx.mask)
    p_bar, scale = pc.attrs["p_bar"], pc.attrs["scale"]
    k_ref, n_ref = pc.attrs["reference_k"], pc.attrs["reference_n"]
    z = pc["statistic"].to_numpy()
    ok = np.isfinite(z)
    k = np.where(ok, s.value * s.n, 0.0)
    nn = np.where(ok, s.n, 0.0)
    name = "laney_p_chart" if pc.attrs["laney"] else "p_chart"
    spans: list[tuple[str, int, int, int]] = []
    for a, b, sg in _runs(pc["flag"].to_numpy(), np.sign(z)):
        spans.append((name, *_extend(z, a, b, sg, base), sg))
    zc = np.where(ok, z, np.nan)
    cu = cusum_chart(zc, target=0.0, sigma=1.0, baseline=base)
    stat = cu["statistic"].to_numpy()
    # A CUSUM excursion runs from its onset to its peak (the classic estimates of
    # when the shift started and stopped); an EWMA one from its first signal to its peak.
    for a, b, sg in _runs(cu["flag"].to_numpy(), np.sign(stat)):
        onset = cu["onset"].iloc[a]
        peak = a + int(np.argmax(np.abs(stat[a : b + 1])))
        spans.append(("cusum", int(onset) if pd.notna(onset) else a, peak, sg))
    ew = ewma_chart(zc, target=0.0, sigma=1.0, baseline=base)
    ew_stat = np.nan_to_num(ew["statistic"].to_numpy())
    ew_flag = ew["flag"].to_numpy()
    for a, b, sg in _runs(ew_flag, np.sign(ew_stat)):
        spans.append(("ewma", a, a + int(np.argmax(np.abs(ew_stat[a : b + 1]))), sg))
    if ok.sum() >= 6:
        cp = changepoints(zc, sigma=1.0)
        seg = cp["segment"].to_numpy()
        for a in np.flatnonzero(cp["flag"].to_numpy()):
            if a < base:
                continue
            b = int(np.flatnonzero(seg == seg[a])[-1])
            sg = int(np.sign(cp["statistic"].iloc[a]))
            spans.append(("changepoint", int(a), b, sg))
    out = []
    for det, a, b, sg in spans:
        if det != name:
            tr = _trim(z, a, b, sg)
            if tr is None:
                continue
            a, b = tr
        n_w = nn[a : b + 1].sum()
        if n_w < ctx.min_n or n_w <= 0:
            continue
        k_w = k[a : b + 1].sum()
        zw = window_z(k_w, n_w, k_ref, n_ref, scale)
        if np.sign(zw) != sg:
            continue
        out.append(
            Window(
                s,
                "rate",
                det,
                a,
                b,
                "up" if zw > 0 else "down",
                float(two_sided(zw)),
                k_w / n_w,
                p_bar,
                n_w,
            )
        )
    for w in out:
        w.p_value = search_p(w.p_raw, T)
    return out


def _level_windows(s: DailySeries, ctx: ScanContext) -> list[Window]:
    """Counts and times: STL + MAD spikes, and level shifts of the deseasonalised series."""
    base, T = ctx.base_len, ctx.monitored_days
    st = stl_mad(s.value, log=True, baseline=base, mask=ctx.mask, scale_floor=s.floor)
    z = st["statistic"].to_numpy()
    y = np.log1p(s.value)
    seasonal = st["seasonal"].to_numpy()
    level = y - seasonal
    ref = np.isfinite(level) & ~ctx.mask
    ref[base:] = False
    mu_b = float(np.median(level[ref])) if ref.any() else float(np.nanmedian(level))
    counterfactual = np.expm1(mu_b + seasonal)
    spans: list[tuple[str, int, int, int, float]] = []
    for a, b, sg in _runs(st["flag"].to_numpy(), np.sign(z)):
        a, b = _extend(z, a, b, sg, base)
        zs = heavy_tailed(z[a : b + 1])
        zs = zs[np.isfinite(zs)]
        spans.append(("stl_mad", a, b, sg, float(np.sum(zs) / math.sqrt(len(zs)))))
    # Level shifts: a new segment of the deseasonalised series, tested against the
    # baseline level (not the previous segment, which may itself be anomalous).
    scale = st.attrs["scale"]
    n_ref = int(ref.sum())
    cp = changepoints(level, sigma=scale)
    seg = cp["segment"].to_numpy()
    for a in np.flatnonzero(cp["flag"].to_numpy()):
        if a < base or n_ref < 2:
            continue
        b = int(np.flatnonzero(seg == seg[a])[-1])
        lv = level[a : b + 1]
        lv = lv[np.isfinite(lv)]
        if not len(lv):
            continue
        zc = (float(np.mean(lv)) - mu_b) / (scale * math.sqrt(1 / len(lv) + 1 / n_ref))
        zc = float(heavy_tailed(np.array([zc]))[0])
        spans.append(("changepoint", int(a), b, int(np.sign(zc)), zc))
    out = []
    for det, a, b, sg, zw in spans:
        obs = s.value[a : b + 1]
        okw = np.isfinite(obs)
        if not okw.any():
            continue
        if det == "changepoint":
            expected = counterfactual[a : b + 1]
        else:
            expected = st["expected"].to_numpy()[a : b + 1]
        out.append(
            Window(
                s,
                "level",
                det,
                a,
                b,
                "up" if sg > 0 else "down",
                float(two_sided(zw)),
                float(np.mean(obs[okw])),
                float(np.mean(expected[okw])),
                float(np.nansum(s.volume[a : b + 1])),
            )
        )
    for w in out:
        w.p_value = search_p(w.p_raw, T)
    s.counterfactual = counterfactual
    return out


def noise_floor(s: DailySeries, dispersion: float) -> float:
    """Sampling noise of one day's value on the log scale (0 when unknown).

    Counts: Poisson, sd(log count) ~ 1/sqrt(count). Percentile q of n
    log-normal times with log-sd s: sd(log Q) ~ s sqrt(q(1-q)/n) / phi(z_q).
    """
    n = s.n[np.isfinite(s.n) & (s.n > 0)]
    if not len(n):
        return 0.0
    med = float(np.median(n))
    if s.metric in COUNTS:
        return 1.0 / math.sqrt(med + 1.0)
    if s.metric in TIMES and np.isfinite(dispersion) and dispersion > 0:
        q = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}[s.metric]
        return float(dispersion * math.sqrt(q * (1 - q) / med) / _density_at_quantile(q))
    return 0.0


@functools.lru_cache(maxsize=8)
def _density_at_quantile(q: float) -> float:
    """The standard normal density at its ``q`` quantile (three values per scan: cached)."""
    return sps.norm.pdf(sps.norm.ppf(q))


def percentile_min_n(metric: str) -> int:
    """Daily n that puts 10 observations beyond a percentile (p90: 100, p99: 1000)."""
    q = {"response_p50": 0.5, "response_p90": 0.9, "response_p99": 0.99}[metric]
    return math.ceil(10 / (1 - q) - 1e-9)


def evaluate(s: DailySeries, ctx: ScanContext) -> list[Window] | None:
    """Windows proposed for one series, or None when it is too small to judge."""
    base = ctx.base_len
    has = np.isfinite(s.value) & (np.nan_to_num(s.n) > 0)
    ref_days = int((has[:base] & ~ctx.mask[:base]).sum())
    mon_days = int(has[base:].sum())
    skip = None
    if s.metric in RATES:
        n_ref = float(np.nansum(np.where(has[:base] & ~ctx.mask[:base], s.n[:base], 0)))
        n_mon = float(np.nansum(np.where(has[base:], s.n[base:], 0)))
        if ref_days < 7:
            skip = (f"baseline has {ref_days} day(s) with data (need 7)", n_ref, ref_days)
        elif n_ref < ctx.min_n:
            skip = (f"baseline n={n_ref:.0f} < min_n={ctx.min_n}", n_ref, ref_days)
        elif n_mon < ctx.min_n:
            skip = (f"period n={n_mon:.0f} < min_n={ctx.min_n}", n_mon, mon_days)
    else:
        med_n = float(np.nanmedian(np.where(has, s.n, np.nan))) if has.any() else 0.0
        if has.sum() < 15 or ref_days < 7:
            skip = (
                f"{int(has.sum())} day(s) with data (need 15, 7 in baseline)",
                med_n,
                int(has.sum()),
            )
        elif med_n < ctx.min_n:
            skip = (f"median daily n={med_n:.0f} < min_n={ctx.min_n}", med_n, int(has.sum()))
        elif s.metric in TIMES and med_n < percentile_min_n(s.metric):
            need = percentile_min_n(s.metric)
            skip = (f"median daily n={med_n:.0f} < {need} for {s.metric}", med_n, int(has.sum()))
    if skip is not None:
        ctx.skip(s.metric, s.dimension, s.segment, *skip)
        return None
    if s.metric in COUNTS:
        s.value = np.where(np.isfinite(s.value), s.value, 0.0)
        if s.stop is not None:  # a segment that stopped has no data, not zeros, after it
            s.value[s.stop :] = np.nan
        s.value[: s.since] = np.nan  # nor before its re-baseline
    token = AS_ARRAYS.set(True)  # the detectors' results stay inside: arrays suffice
    try:
        return _rate_windows(s, ctx) if s.metric in RATES else _level_windows(s, ctx)
    finally:
        AS_ARRAYS.reset(token)


def gap_windows(ds: Any, ctx: ScanContext, start: date, end: date) -> tuple[list[Window], int]:
    """reporting_gap: weekly vendor-reported minus measured, tested by reconcile."""
    from qualitylab.measure.reconcile import reporting_gap

    gap = reporting_gap(ds, ctx.market, start=start - timedelta(days=6), end=end)
    gap = gap[gap["kpi"].isin(["accuracy", "sla_compliance"]) & gap["p_value"].notna()]
    out: list[Window] = []
    tested = 0
    for (vendor, kpi), g in gap.groupby(["vendor", "kpi"], sort=True):
        g = g.sort_values("week")
        weeks = pd.to_datetime(g["week"]).dt.normalize().to_numpy()
        z = np.sign(g["gap"].to_numpy(float)) * sps.norm.isf(g["p_value"].to_numpy(float) / 2)
        tested += 1
        flags = np.abs(z) > 3.0
        spans = [(a, b, sg) for a, b, sg in _runs(flags, np.sign(z))]
        cu = cusum_chart(z, target=0.0, sigma=1.0)
        for a, b, sg in _runs(cu["flag"].to_numpy(), np.sign(cu["statistic"].to_numpy())):
            onset = cu["onset"].iloc[a]
            spans.append((int(onset) if pd.notna(onset) else a, b, sg))
        s = DailySeries(
            "reporting_gap", "vendor", str(vendor), np.array([]), np.array([]), np.array([])
        )
        for a, b, sg in spans:
            tr = _trim(z, a, b, sg)
            if tr is None:
                continue
            a, b = tr
            zw = float(np.sum(z[a : b + 1]) / math.sqrt(b - a + 1))
            w0 = pd.Timestamp(weeks[a])
            w1 = min(pd.Timestamp(weeks[b]) + pd.Timedelta(days=6), ctx.dates[-1])
            i0 = int(ctx.dates.get_indexer([max(w0, ctx.dates[0])])[0])
            i1 = int(ctx.dates.get_indexer([w1])[0])
            gw = g.iloc[a : b + 1]
            win = Window(
                s,
                "gap",
                "reconcile",
                i0,
                i1,
                "up" if zw > 0 else "down",
                float(two_sided(zw)),
                float(gw["reported"].mean()),
                float(gw["measured"].mean()),
                float(gw["n"].sum()),
            )
            win.p_value = search_p(win.p_raw, len(z))
            win.kpi = str(kpi)
            out.append(win)
    return out, tested
