"""Kaplan–Meier response-time percentiles and SLA compliance with censoring.

Response times of items still pending when a period ends are right-censored.
:func:`km_metrics` turns an engine histogram of response times (bins
:data:`BIN_RATIO` wide on a log scale, the SLA an exact edge; see
:func:`qualitylab.metrics.decision_summary`) into ``sla_compliance`` and the
``response_p50/p90/p99`` percentiles with their intervals, for every group at
once. :func:`km_grouped` is the grouped Kaplan–Meier survival curve with its
Greenwood variance and :func:`wilson_eff` Wilson's interval at the Greenwood
effective sample size; escalation resolution times use both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from qualitylab.measure.stats import proportion_ci

__all__ = ["BIN_RATIO", "LOG_BIN_RATIO", "km_grouped", "km_metrics", "wilson_eff"]

# Response-time histogram: bin k holds [1.05**k, 1.05**(k+1)) seconds (bin 0 also
# holds times under one second), so percentiles carry at most a 5% binning error
# before interpolation. The SLA is an exact edge (see decision_summary).
BIN_RATIO = 1.05
LOG_BIN_RATIO = math.log(BIN_RATIO)


def wilson_eff(p: np.ndarray, var: np.ndarray, n: np.ndarray, cl: float):
    """Wilson interval at the effective sample size p(1-p)/var."""
    p = np.asarray(p, dtype=float)
    var = np.asarray(var, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        n_eff = np.where(var > 0, p * (1 - p) / var, n)
    n_eff = np.where(np.isfinite(n_eff) & (n_eff > 0), np.minimum(n_eff, n), n)
    k = p * n_eff
    low, high = proportion_ci(k, n_eff, confidence_level=cl, method="wilson")
    return np.asarray(low, dtype=float), np.asarray(high, dtype=float)


def km_metrics(
    hist: pd.DataFrame, cols: list[str], slas: Mapping[str, float], cl: float
) -> pd.DataFrame:
    """SLA compliance and response percentiles per group, all groups at once."""
    hist = hist.rename(columns={"__bin": "bin", "__le_sla": "le_sla", "__event": "event"})
    unknown_queues = sorted(set(hist["queue"].unique()) - set(slas))
    if unknown_queues:
        warnings.warn(
            f"no SLA configured for queue(s) {unknown_queues}; they are left out of "
            "sla_compliance (set sla_seconds in parameters)",
            stacklevel=3,
        )
    if hist.empty:
        return pd.DataFrame(columns=[*cols, "metric", "value", "n", "ci_low", "ci_high"])
    event = hist["event"].to_numpy(dtype=bool)
    k = hist["k"].to_numpy(dtype=float)
    hist = hist.assign(
        gid=hist.groupby(cols, dropna=False, sort=True).ngroup() if cols else 0,
        d=np.where(event, k, 0.0),
        c=np.where(event, 0.0, k),
        le_sla=hist["le_sla"].astype("boolean").fillna(False).astype(bool),
    )
    keys = hist.drop_duplicates("gid").set_index("gid")[cols].sort_index()
    parts = []

    # SLA compliance: KM per (group, queue) at the queue's SLA, pooled by volume.
    sla_steps = (
        hist[hist["queue"].isin(list(slas))]
        .groupby(["gid", "queue", "bin", "le_sla"], sort=False)[["d", "c"]]
        .sum()
        .reset_index()
        .sort_values(["gid", "queue", "bin", "le_sla"], ascending=[True, True, True, False])
        .reset_index(drop=True)
    )
    if len(sla_steps):
        gq = sla_steps.groupby(["gid", "queue"], sort=False).ngroup().to_numpy()
        surv, var = km_grouped(gq, sla_steps["d"].to_numpy(), sla_steps["c"].to_numpy())
        sla_steps = sla_steps.assign(gq=gq, surv=surv, var=var)
        by_gq = sla_steps.groupby("gq", sort=False)
        nq = by_gq[["d", "c"]].sum().sum(axis=1)
        at = sla_steps[sla_steps["le_sla"]].groupby("gq", sort=False)[["surv", "var"]].last()
        per_q = pd.DataFrame({"gid": by_gq["gid"].first(), "nq": nq})
        per_q = per_q.join(at).fillna({"surv": 1.0, "var": 0.0})
        per_q["num"] = per_q["nq"] * (1 - per_q["surv"])
        per_q["vs"] = per_q["nq"] ** 2 * per_q["var"]
        pooled = per_q.groupby("gid")[["num", "vs", "nq"]].sum()
        pooled = pooled[pooled["nq"] > 0]
        p = (pooled["num"] / pooled["nq"]).to_numpy()
        v = (pooled["vs"] / pooled["nq"] ** 2).to_numpy()
        lo, hi = wilson_eff(p, v, pooled["nq"].to_numpy(), cl)
        parts.append(
            pd.DataFrame(
                {
                    "gid": pooled.index,
                    "order": 0,
                    "metric": "sla_compliance",
                    "value": p,
                    "n": pooled["nq"].to_numpy(),
                    "ci_low": lo,
                    "ci_high": hi,
                }
            )
        )

    # Percentiles: KM over all queues of a group on the seconds grid.
    steps = hist.groupby(["gid", "bin"], sort=True)[["d", "c"]].sum().reset_index()
    gid = steps["gid"].to_numpy()
    surv, var = km_grouped(gid, steps["d"].to_numpy(), steps["c"].to_numpy())
    f = 1 - surv
    se = np.sqrt(var)
    b = steps["bin"].to_numpy(dtype=float)
    lower = np.where(b <= 0, 0.0, BIN_RATIO**b)
    upper = BIN_RATIO ** (b + 1)
    starts = np.flatnonzero(np.r_[True, gid[1:] != gid[:-1]])
    groups = gid[starts]
    n_all = np.add.reduceat(steps["d"].to_numpy() + steps["c"].to_numpy(), starts)
    for order, (q, name) in enumerate(
        ((0.5, "response_p50"), (0.9, "response_p90"), (0.99, "response_p99")), start=1
    ):
        qs = np.full(len(starts), q)
        value, first = _quantiles_grouped(f, lower, upper, starts, qs)
        # Interval: the quantiles at the Wilson bounds of q, at the Greenwood
        # effective sample size where the estimate sits (order-statistic
        # interval when nothing is censored).
        ok = first >= 0
        i = np.where(ok, first, 0)
        fi, sei = f[i], se[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            n_eff = np.where(sei > 0, fi * (1 - fi) / sei**2, n_all)
        n_eff = np.clip(n_eff, 1.0, n_all)
        n_eff = np.where(ok & (fi < 1), n_eff, n_all)
        lq, hq = proportion_ci(q * n_eff, n_eff, confidence_level=cl)
        ci_low, _ = _quantiles_grouped(f, lower, upper, starts, np.asarray(lq, dtype=float))
        hq = np.asarray(hq, dtype=float)
        ci_high, at = _quantiles_grouped(f, lower, upper, starts, hq)
        # an upper limit reached only at the step that empties the risk set (F = 1,
        # Greenwood variance 0) is not bounded by the data: not reached (NaN). With
        # 30 items the p90's exact order-statistic interval has no upper end either.
        emptied = (at >= 0) & (f[np.maximum(at, 0)] >= 1 - 1e-12) & (hq < 1 - 1e-12)
        ci_high = np.where(emptied, np.nan, ci_high)
        parts.append(
            pd.DataFrame(
                {
                    "gid": groups,
                    "order": order,
                    "metric": name,
                    "value": value,
                    "n": n_all,
                    "ci_low": ci_low,
                    "ci_high": ci_high,
                }
            )
        )
    out = pd.concat(parts, ignore_index=True).sort_values(["gid", "order"], kind="stable")
    out = keys.reindex(out["gid"]).reset_index(drop=True).join(out.reset_index(drop=True))
    return out.drop(columns=["gid", "order"])


def km_grouped(
    group: np.ndarray, d: np.ndarray, c: np.ndarray, *, nan_when_exhausted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier survival and Greenwood variance over ordered steps, per group.

    Rows are ordered within each group (groups contiguous); ``d`` events and
    ``c`` censorings at each step (censored at a step are at risk at it).
    ``nan_when_exhausted`` makes the variance NaN from the step where
    everyone at risk has the event (statsmodels ``SurvfuncRight``'s
    convention) instead of carrying the sum.
    """
    d = np.asarray(d, dtype=float)
    c = np.asarray(c, dtype=float)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    sizes = np.diff(np.r_[starts, len(group)])
    total = np.repeat(np.add.reduceat(d + c, starts), sizes)
    cum = np.cumsum(d + c)
    before_group = np.repeat(np.r_[0.0, cum[starts[1:] - 1]], sizes)
    at_risk = total - (cum - (d + c) - before_group)  # at risk just before each step
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, d / np.where(at_risk > 0, at_risk, 1), 0.0)
        exhausted = np.nan if nan_when_exhausted else 0.0
        term = np.where(
            at_risk - d > 0, d / (at_risk * (at_risk - d)), np.where(d > 0, exhausted, 0.0)
        )
    g = pd.Series(group)
    surv = pd.Series(1.0 - hazard).groupby(g, sort=False).cumprod().to_numpy()
    var = surv**2 * pd.Series(term).groupby(g, sort=False).cumsum().to_numpy()
    if nan_when_exhausted:  # NaN from the exhausting step on (pandas cumsum skips NaN)
        after = pd.Series(np.isnan(term)).groupby(g, sort=False).cummax().to_numpy()
        var = np.where(after, np.nan, var)
    return surv, var


def _quantiles_grouped(
    f: np.ndarray, lower: np.ndarray, upper: np.ndarray, starts: np.ndarray, q: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the first time the step CDF ``f`` reaches ``q[group]``.

    Interpolated geometrically within the bin (linearly in the first bin, which
    starts at 0). Returns the quantiles (NaN where never reached) and the row
    index where each was reached (-1 if never).
    """
    n = len(f)
    sizes = np.diff(np.r_[starts, n])
    qq = np.repeat(q, sizes)
    pos = np.where(f >= qq - 1e-12, np.arange(n), n)
    first = np.minimum.reduceat(pos, starts)
    ok = first < n
    i = np.where(ok, first, 0)
    f_prev = np.where(ok & (i > starts), f[np.maximum(i - 1, 0)], 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(f[i] <= f_prev, 0.0, (q - f_prev) / (f[i] - f_prev))
        lo, hi = lower[i], upper[i]
        value = np.where(lo <= 0, hi * frac, lo * (hi / np.where(lo > 0, lo, 1.0)) ** frac)
    return np.where(ok, value, np.nan), np.where(ok, first, -1)
