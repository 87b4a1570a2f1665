"""Funnel plots: units (moderators, sites, auditors) whose rate differs from the population.

:func:`funnel_limits` (exact binomial or normal control limits),
:func:`funnel` (outlier flags with Benjamini–Hochberg and optional
overdispersion, Spiegelhalter 2005) and :func:`outlier_units` (the funnel
of a rate metric's units in a period).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.engine import metric_table, use_weights, weighted_sums
from qualitylab.detection.rca.vocabulary import (
    check_dimensions,
    check_metric,
    check_qa_source,
    check_unit_interval,
    fmt_period,
)
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import scope
from qualitylab.measure.stats import (
    adjust_pvalues,
)

__all__ = ["FUNNEL_COLUMNS", "FunnelResult", "funnel", "funnel_limits", "outlier_units"]

FUNNEL_COLUMNS = [
    "n",
    "k",
    "rate",
    "population_rate",
    "z",
    "p_value",
    "p_adjusted",
    "flagged",
    "direction",
    "lower_95",
    "upper_95",
    "lower_998",
    "upper_998",
    "outside_95",
    "outside_998",
]


_FUNNEL_LEVELS = {"95": 0.95, "998": 0.998}


def funnel_limits(
    population_rate: float,
    n: npt.ArrayLike,
    *,
    method: str = "exact",
    phi: float = 1.0,
) -> pd.DataFrame:
    """Funnel-plot control limits around a population rate at sample sizes `n`.

    Parameters
    ----------
    population_rate : float
        The target or pooled rate :math:`\\theta` in [0, 1].
    n : array_like
        Sample sizes (positive).
    method : {"exact", "normal"}, default "exact"
        Exact binomial limits with Spiegelhalter's interpolation, or the
        normal approximation.
    phi : float, default 1.0
        Overdispersion factor (>= 1); when above 1 the limits are the normal
        ones widened by :math:`\\sqrt\\phi` whatever `method`.

    Returns
    -------
    pandas.DataFrame
        ``n, lower_95, upper_95, lower_998, upper_998`` (two-sided 95% and
        99.8% limits, clipped to [0, 1]).

    Notes
    -----
    Spiegelhalter (2005), *Funnel plots for comparing institutional
    performance*, Stat Med 24:1185, appendix A.1.1: with :math:`r_p` the
    :math:`p`-quantile of :math:`Bin(n, \\theta)` and :math:`F` its CDF,
    :math:`\\alpha = (F(r_p) - p)/(F(r_p) - F(r_p - 1))` and the limit is
    :math:`(r_p - \\alpha)/n`. Normal: :math:`\\theta \\pm z_p
    \\sqrt{\\phi\\theta(1-\\theta)/n}`.

    Examples
    --------
    >>> funnel_limits(0.1, [100], method="normal").round(4)
         n  lower_95  upper_95  lower_998  upper_998
    0  100    0.0412    0.1588        0.0     0.1927
    """
    theta = check_unit_interval(population_rate, "population_rate", closed=True)
    method = _funnel_method(method)
    phi = float(phi)
    if not phi >= 1.0:
        raise ParameterError(f"phi must be >= 1; got {phi!r}", key="phi")
    nn = np.asarray(n, dtype=float).ravel()
    if np.any(~(nn > 0)):
        raise ParameterError(f"n must be positive; got {nn[~(nn > 0)][0]!r}", key="n")
    cols: dict[str, np.ndarray] = {
        "n": np.round(nn).astype("int64") if np.allclose(nn, np.round(nn)) else nn
    }
    for tag, level in _FUNNEL_LEVELS.items():
        cols[f"lower_{tag}"], cols[f"upper_{tag}"] = _limits(theta, nn, level, method, phi)
    return pd.DataFrame(cols)


def _funnel_method(method: object) -> str:
    """Validate the limits' method (``"auto"`` is resolved by :func:`funnel`)."""
    if method not in ("exact", "normal"):
        raise ParameterError(f"method must be 'exact' or 'normal'; got {method!r}", key="method")
    return str(method)


def _limits(
    theta: float, n: np.ndarray, level: float, method: str, phi: float
) -> tuple[np.ndarray, np.ndarray]:
    a = (1.0 - level) / 2.0
    if method == "normal" or phi > 1.0:
        z = sps.norm.isf(a)
        half = z * np.sqrt(phi * theta * (1.0 - theta) / n)
        return np.clip(theta - half, 0.0, 1.0), np.clip(theta + half, 0.0, 1.0)
    nn = np.round(n)
    out = []
    for p in (a, 1.0 - a):
        r = sps.binom.ppf(p, nn, theta)
        f_r = sps.binom.cdf(r, nn, theta)
        f_prev = sps.binom.cdf(r - 1, nn, theta)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(f_r > f_prev, (f_r - p) / (f_r - f_prev), 0.0)
        out.append(np.clip((r - alpha) / nn, 0.0, 1.0))
    return out[0], out[1]


@dataclass(frozen=True)
class FunnelResult:
    """Result of :func:`funnel` and :func:`outlier_units`.

    Attributes
    ----------
    units : pandas.DataFrame
        ``[unit, *FUNNEL_COLUMNS]``, one row per unit, most extreme first.
    curve : pandas.DataFrame
        :func:`funnel_limits` on a grid of n, for drawing the funnel.
    population_rate : float
    phi : float
        Overdispersion factor used (1 when not adjusted).
    phi_estimate : float
        Spiegelhalter's winsorised estimate :math:`\\hat\\phi`.
    phi_pvalue : float
        Test of no overdispersion, :math:`I\\hat\\phi \\sim \\chi^2_{I-1}`.
    method : str
        ``"exact"``, ``"normal"`` or ``"normal_overdispersed"``.
    alpha : float
        False discovery rate of ``flagged``.
    unit : str
        Name of the unit column.
    metric : str or None
    """

    units: pd.DataFrame
    curve: pd.DataFrame
    population_rate: float
    phi: float
    phi_estimate: float
    phi_pvalue: float
    method: str
    alpha: float
    unit: str
    metric: str | None = None

    @property
    def flagged(self) -> pd.DataFrame:
        """Units flagged after the Benjamini–Hochberg correction."""
        return self.units[self.units["flagged"]]


def funnel(
    counts: pd.DataFrame,
    *,
    unit: str = "unit",
    count: str = "k",
    nobs: str = "n",
    target: float | None = None,
    method: str = "auto",
    overdispersion: bool = False,
    winsorize: float = 0.1,
    alpha: float = 0.05,
    metric: str | None = None,
) -> FunnelResult:
    """Funnel plot and outlier flags for units' rates against the population.

    Parameters
    ----------
    counts : pandas.DataFrame
        One row per unit with its `unit` label, events `count` and trials
        `nobs` (rows with ``nobs == 0`` are dropped). Weighted data can be
        given as effective counts (rate × Kish n, Kish n).
    unit, count, nobs : str
        Column names.
    target : float, optional
        Population rate to compare against; by default the pooled rate
        ``sum(count) / sum(nobs)``.
    method : {"auto", "exact", "normal"}, default "auto"
        Exact binomial limits and p-values, or the normal approximation;
        ``"auto"`` is exact for integer counts and normal otherwise.
    overdispersion : bool, default False
        Estimate a multiplicative overdispersion factor and, when it is
        significant, widen limits and deflate z-scores by it.
    winsorize : float, default 0.1
        Share of z-scores winsorised in each tail for :math:`\\hat\\phi`.
    alpha : float, default 0.05
        False discovery rate for ``flagged``.
    metric : str, optional
        Carried into the result for labelling.

    Returns
    -------
    FunnelResult
        ``units`` has the `unit` column then :data:`FUNNEL_COLUMNS`: ``rate``,
        ``z`` (normal z-score, divided by :math:`\\sqrt\\phi` when adjusted),
        two-sided ``p_value``, Benjamini–Hochberg ``p_adjusted``, ``flagged``
        (``p_adjusted < alpha``), ``direction`` (``above``/``below``), the
        95% and 99.8% limits at the unit's n and whether the rate lies outside.

    Notes
    -----
    Exact p-values double the smaller binomial tail,
    :math:`\\min(1, 2\\min(F(k), 1 - F(k-1)))`, and are conservative for
    small units. The drawn limits (:func:`funnel_limits`) interpolate the
    discrete binomial, so a small unit can sit just outside a limit while its
    p-value is just above the level: ``outside_*`` describes the picture,
    ``flagged`` the multiplicity-corrected test. Overdispersion (Spiegelhalter 2005, §7.1): :math:`\\hat\\phi = I^{-1}\\sum
    z_i^2` over winsorised z-scores; it is applied (:math:`\\phi =
    \\hat\\phi`) when :math:`I\\hat\\phi` exceeds the 95% point of
    :math:`\\chi^2_{I-1}`, and limits and p-values then use the normal
    approximation with variance :math:`\\phi\\theta(1-\\theta)/n`. Adjusting
    p-values across units with Benjamini–Hochberg keeps small units with an
    extreme rate from being flagged by chance.

    Examples
    --------
    >>> df = pd.DataFrame({"unit": ["a", "b", "c"], "k": [60, 2, 50], "n": [400, 4, 500]})
    >>> res = funnel(df, target=0.1)
    >>> res.units[["unit", "rate", "flagged"]]
      unit  rate  flagged
    0    a  0.15     True
    1    b  0.50    False
    2    c  0.10    False
    """
    if method not in ("auto", "exact", "normal"):
        raise ParameterError(
            f"method must be 'auto', 'exact' or 'normal'; got {method!r}", key="method"
        )
    alpha = check_unit_interval(alpha, "alpha")
    winsorize = float(winsorize)
    if not 0.0 <= winsorize < 0.5:
        raise ParameterError(f"winsorize must be in [0, 0.5); got {winsorize!r}", key="winsorize")
    missing = [c for c in (unit, count, nobs) if c not in counts.columns]
    if missing:
        raise ParameterError(
            f"counts has no column {missing[0]!r}; columns are {list(counts.columns)}",
            key=missing[0],
        )
    df = counts[[unit, count, nobs]].copy()
    df = df.rename(columns={count: "k", nobs: "n"})
    df["k"] = df["k"].astype(float)
    df["n"] = df["n"].astype(float)
    df = df[df["n"] > 0].reset_index(drop=True)
    if df.empty:
        raise QualityLabError("no unit has observations; nothing to plot")
    bad = (df["k"] < 0) | (df["k"] > df["n"])
    if bad.any():
        raise ParameterError(
            f"{count} must lie in [0, {nobs}] for every unit; {int(bad.sum())} rows do not, "
            f"e.g. {df.loc[bad].iloc[0].to_dict()!r}",
            key=count,
        )
    exact_ok = np.allclose(df["k"], np.round(df["k"])) and np.allclose(df["n"], np.round(df["n"]))
    if method == "auto":
        method = "exact" if exact_ok else "normal"
    if method == "exact" and not exact_ok:
        raise ParameterError(
            "method='exact' needs integer counts; use method='normal' for weighted counts",
            key="method",
        )
    theta = (
        float(df["k"].sum() / df["n"].sum())
        if target is None
        else check_unit_interval(target, "target", closed=True)
    )
    k, n = df["k"].to_numpy(float), df["n"].to_numpy(float)
    rate = k / n
    with np.errstate(divide="ignore", invalid="ignore"):
        se = np.sqrt(theta * (1.0 - theta) / n)
        z = np.where(se > 0, (rate - theta) / se, 0.0)
    # Spiegelhalter's winsorised overdispersion estimate.
    lo_q, hi_q = np.quantile(z, [winsorize, 1.0 - winsorize]) if len(z) else (0.0, 0.0)
    zw = np.clip(z, lo_q, hi_q)
    units = len(z)
    phi_hat = float(np.mean(zw**2)) if units else float("nan")
    phi_p = float(sps.chi2.sf(units * phi_hat, units - 1)) if units > 1 else float("nan")
    phi = phi_hat if (overdispersion and units > 1 and phi_p < 0.05 and phi_hat > 1) else 1.0
    if phi > 1.0:
        used = "normal_overdispersed"
        z = z / math.sqrt(phi)
        p = 2.0 * sps.norm.sf(np.abs(z))
    elif method == "normal":
        used = "normal"
        p = 2.0 * sps.norm.sf(np.abs(z))
    else:
        used = "exact"
        kk, nn = np.round(k), np.round(n)
        p = 2.0 * np.minimum(sps.binom.cdf(kk, nn, theta), sps.binom.sf(kk - 1, nn, theta))
    p = np.minimum(p, 1.0)
    lim = {
        f"{side}_{tag}": bound
        for tag, level in _FUNNEL_LEVELS.items()
        for side, bound in zip(
            ("lower", "upper"), _limits(theta, n, level, method, phi), strict=True
        )
    }
    p_adj = adjust_pvalues(p, method="fdr_bh")
    out = pd.DataFrame(
        {
            unit: df[unit].to_numpy(),
            "n": np.round(n).astype("int64") if exact_ok else n,
            "k": np.round(k).astype("int64") if exact_ok else k,
            "rate": rate,
            "population_rate": np.full(len(rate), theta),
            "z": z,
            "p_value": p,
            "p_adjusted": p_adj,
            "flagged": p_adj < alpha,
            "direction": np.where(rate >= theta, "above", "below"),
            **lim,
            "outside_95": (rate < lim["lower_95"]) | (rate > lim["upper_95"]),
            "outside_998": (rate < lim["lower_998"]) | (rate > lim["upper_998"]),
        }
    )
    out = out.sort_values(["p_value", unit], kind="stable").reset_index(drop=True)
    grid = np.unique(np.round(np.geomspace(1, max(float(n.max()), 2.0), 200)))
    curve = funnel_limits(theta, grid, method=method, phi=phi)
    return FunnelResult(
        units=out[[unit, *FUNNEL_COLUMNS]],
        curve=curve,
        population_rate=theta,
        phi=float(phi),
        phi_estimate=phi_hat,
        phi_pvalue=phi_p,
        method=used,
        alpha=alpha,
        unit=unit,
        metric=metric,
    )


def outlier_units(
    ds: Dataset,
    metric: str,
    market: str | None,
    *,
    unit: str = "moderator_id",
    start: date | str | None = None,
    end: date | str | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    target: float | None = None,
    method: str = "auto",
    overdispersion: bool = False,
    min_n: int = 1,
    alpha: float = 0.05,
) -> FunnelResult:
    """Units (moderators, sites, auditors…) whose rate differs from the population.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
    unit : str, default "moderator_id"
        Any dimension :func:`decompose` accepts (``auditor_id`` for QA metrics).
        Items whose unit is null (e.g. ``ai_auto`` decisions have no
        moderator) are left out.
    start, end : date or ISO string, optional
        Market-local period; defaults to the data's range.
    qa_source : {"internal", "vendor", None}, default "internal"
    weighted : bool, optional
        Use design weights; by default whenever any weight differs from 1.
    target : float, optional
        Compare against a target instead of the population rate.
    method : {"auto", "exact", "normal"}, default "auto"
        Exact binomial for unweighted counts, normal for weighted ones.
    overdispersion : bool, default False
    min_n : int, default 1
        Units with fewer items are left out of the plot and the correction.
    alpha : float, default 0.05

    Returns
    -------
    FunnelResult
        See :func:`funnel`. Unweighted, ``n`` and ``k`` are items (audits) and
        events per unit; weighted, ``rate`` is the unit's Hajek rate, ``n``
        its Kish effective sample size :math:`(\\sum w)^2/\\sum w^2` and
        ``k = rate × n``, and the population rate is the market's weighted
        rate.

    Notes
    -----
    One engine ``GROUP BY unit``; the funnel is computed on the sums. QA
    samples are usually stratified (enforced items, appeals oversampled), so
    unweighted audit rates are biased towards the oversampled strata; the
    weighted funnel compares like with like.
    """
    spec = check_metric(metric)
    (unit,) = check_dimensions([unit], spec)
    qa_source = check_qa_source(qa_source)
    if not isinstance(min_n, int) or min_n < 1:
        raise ParameterError(f"min_n must be an integer >= 1; got {min_n!r}", key="min_n")
    period = scope.resolve_period(ds, market=market, start=start, end=end)
    t = metric_table(ds, spec, market, (period,), qa_source)
    t = t.filter(t[unit].notnull())
    agg = weighted_sums(t, [unit])
    agg = agg[agg["n"] >= min_n]
    if agg.empty:
        raise QualityLabError(
            f"no {unit} with at least {min_n} items for {metric} in market {market!r} "
            f"in {fmt_period(period)}"
        )
    if use_weights(agg, weighted):
        if target is None:
            target = float(agg["swy"].sum() / agg["sw"].sum())
        neff = agg["sw"] ** 2 / agg["sw2"]
        agg = agg.assign(n=neff, k=agg["swy"] / agg["sw"] * neff)
    return funnel(
        agg[[unit, "n", "k"]],
        unit=unit,
        target=target,
        method=method,
        overdispersion=overdispersion,
        alpha=alpha,
        metric=spec.name,
    )
