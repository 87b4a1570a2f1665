"""What the QA sample can see, and how to spend it.

* :func:`detectability` — per market x segment (vendor x queue by default)
  and metric: the weekly audits a segment has, the smallest change a week of
  them could show with 80% power under the daily scan's corrections, and
  whether that is larger than the metric's ``detectable_drop`` parameter (a
  **blind spot**).
* :func:`sampling_plan` — a weekly QA budget allocated across strata
  (Neyman allocation for the market's design-weighted accuracy, with a floor
  per stratum that makes it detectable where the budget allows), with the
  standard error and the blind spots before and after (:class:`SamplingPlan`).
* :func:`audits_needed` and :func:`neyman_allocation` — the two pieces of
  arithmetic behind them, usable on their own.

Power comes from :func:`qualitylab.detect.minimum_detectable_change`: the
scan's pooled two-proportion z-test of a window against its baseline, paid
for the window search over the scanned period
(:func:`qualitylab.detect.scan_p_value`) and a Bonferroni share of the false
discovery rate over the series the scan judges (a lone discovery). The
engine aggregates (:func:`segment_aggregate`: one query per metric family,
grouped by the segments of every ``by=``, shareable); the arithmetic runs on them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

import ibis
import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.optimize import brentq

from qualitylab.data.sources import Dataset
from qualitylab.detection.detect import SENSITIVITY_FDR, minimum_detectable_change, scan_p_value
from qualitylab.detection.detect.power import z_test_power
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure import scope

__all__ = [
    "DETECTABILITY_COLUMNS",
    "DETECTABILITY_METRICS",
    "PLAN_COLUMNS",
    "SamplingPlan",
    "SegmentAggregate",
    "audits_needed",
    "detectability",
    "neyman_allocation",
    "sampling_plan",
    "scan_series",
    "segment_aggregate",
]

#: Metrics :func:`detectability` judges, with the direction of the change that matters.
DETECTABILITY_METRICS: dict[str, str] = {
    "accuracy": "down",
    "over_enforcement_rate": "up",
    "under_enforcement_rate": "up",
    "ai_precision": "down",
    "ai_recall": "down",
}
_AI = ("ai_precision", "ai_recall")
#: Columns of :func:`detectability` after ``market`` and the ``by`` columns.
DETECTABILITY_COLUMNS = [
    "metric",
    "direction",
    "weekly_decisions",
    "weekly_audits",
    "weekly_n",
    "rate",
    "mdc",
    "detectable_drop",
    "blind_spot",
    "weekly_n_needed",
    "weekly_audits_needed",
]
#: Columns of :attr:`SamplingPlan.plan` after the ``by`` columns.
PLAN_COLUMNS = [
    "weekly_decisions",
    "accuracy",
    "s",
    "current_audits",
    "audits_needed",
    "recommended_audits",
    "mdc_before",
    "mdc_after",
    "blind_before",
    "blind_after",
]
# Metrics a market's scan judges on every dimension, on content dimensions only
# (the AI metrics), and the dimensions of a default scan (qualitylab.detect.scan).
_SCAN_OPS = 7  # volume, sla_compliance, response_p50/p90/p99, auto_action_rate, override_rate
_SCAN_QA = 4  # accuracy, over/under_enforcement_rate, wrong_policy_rate
_SCAN_AI = 3  # ai_precision, ai_recall, ai_fpr
_SCAN_DIMS = ("market", "vendor", "site", "queue", "language", "policy", "ai_model")
_CONTENT_DIMS = ("market", "queue", "language", "policy", "ai_model")

MSG_BUDGET = "budget must be a whole number of weekly audits >= 1; got {value!r}"
MSG_BUDGET_STRATA = (
    "budget {budget} is smaller than the {strata} strata with decisions in the period: "
    "each needs at least one audit a week (give a budget >= {strata}, or a coarser by=)"
)
MSG_BUDGET_CAP = (
    "budget {budget} exceeds the {cap} weekly decisions there are to audit in the "
    "strata with volume"
)
MSG_DROP = "drop must be in (0, 1); got {value!r}"


# --------------------------------------------------------------------------- #
# arithmetic
# --------------------------------------------------------------------------- #
def _planning_rate(k: float, n: float) -> float:
    """The rate used for power and S_h: k/n, or (k+1)/(n+2) at 0, 1 or without data."""
    if n > 0 and 0 < k < n:
        return k / n
    return (k + 1) / (n + 2)


def audits_needed(
    rate: float,
    drop: float,
    *,
    direction: str = "down",
    reference_weeks: float | None = 4.0,
    period_days: int = 1,
    series: int = 1,
    fdr: float = 0.05,
    power: float = 0.8,
) -> float:
    """Weekly observations a segment needs for a change of ``drop`` to be seen with ``power``.

    The inverse of :func:`qualitylab.detect.minimum_detectable_change` when
    the baseline is measured on ``reference_weeks`` weeks of the same weekly
    sample (the scan judges a window against the ``baseline_days`` before
    it: 28 days, so 4 weeks).

    Parameters
    ----------
    rate : float
        Baseline rate, in (0, 1).
    drop : float
        Absolute change to see, in (0, 1).
    direction : {"down", "up"}, default "down"
    reference_weeks : float or None, default 4.0
        Weeks of the same sample behind the baseline; ``None`` treats the
        baseline as known.
    period_days, series, fdr, power
        As in :func:`qualitylab.detect.minimum_detectable_change`
        (``period_days=1, series=1``: the plain two-sided two-proportion
        z-test at level ``fdr``).

    Returns
    -------
    float
        Observations per week (not rounded); ``inf`` when the rate cannot
        move that far (``drop >= rate`` for a drop, ``rate + drop >= 1`` for
        a rise).

    Notes
    -----
    With the corrections off it is the sample size of statsmodels'
    ``samplesize_proportions_2indep_onetail`` (pooled null variance,
    unpooled alternative) with ``ratio=reference_weeks``
    (``tests/test_sampling.py``). Cohen's arcsine effect size
    (``NormalIndPower`` with ``proportion_effectsize``) is a different test
    and differs from it by up to 5-18% either way at rates near 0 or 1 (it
    agrees near 0.5); the scan runs the pooled z-test, so this function
    follows it. Through the real scan a drop
    of ``drop`` at these audits is found a little more often than ``power``
    (84-86% for 80%, ``benchmarks/results/sampling_power.md``): the scan
    keeps the most significant of the windows its detectors propose, where
    this is the power of the planted week alone.

    Examples
    --------
    >>> round(audits_needed(0.94, 0.05))  # a week against 4 weeks, no corrections
    283
    >>> round(audits_needed(0.94, 0.05, period_days=28, series=250))  # the scan's corrections
    1101
    """
    if not 0 < rate < 1:
        raise ParameterError(f"rate must be in (0, 1); got {rate!r}", key="rate")
    if not 0 < drop < 1:
        raise ParameterError(MSG_DROP.format(value=drop), key="drop")
    room = rate if direction == "down" else 1 - rate
    if drop >= room:
        return math.inf
    ref, kw = reference_weeks, {"period_days": period_days, "series": series, "fdr": fdr}
    # the checks of minimum_detectable_change, raised where its first call raised them
    n_ref = None if ref is None else ref * 100.0
    minimum_detectable_change(
        rate, 100.0, n_reference=n_ref, **kw, power=power, direction=direction
    )
    return _Power(**kw, power=power).audits_needed(rate, drop, direction, ref)


class _Power:
    """:func:`qualitylab.detect.minimum_detectable_change` at one setting, for many rates.

    The same arithmetic, step for step (``tests/test_sampling.py`` checks the
    two agree to the last bit), with the critical z searched once per setting
    rather than once per call and the normal cdf of a scalar taken by
    :func:`scipy.special.ndtr` (what ``scipy.stats.norm.cdf`` computes, without
    its ~50 µs of argument handling): together nine tenths of the time of
    :func:`detectability`. Arguments are not checked (the callers have).
    """

    def __init__(self, period_days: int, series: int, fdr: float, power: float) -> None:
        target, self.power, self.zc = fdr / max(int(series), 1), power, 0.0
        if not float(scan_p_value(0.0, period_days)) <= target:
            f = lambda z: float(scan_p_value(z, period_days)) - target  # noqa: E731
            self.zc = float(brentq(f, 0.0, 40.0))

    def _power(self, delta: float, rate: float, n: float, n_ref: float | None) -> float:
        return z_test_power(delta, rate, n, n_ref, self.zc)

    def mdc(self, rate: float, n: float, n_ref: float | None, direction: str) -> float:
        """``minimum_detectable_change(rate, n, n_reference=n_ref, direction=...)``."""
        rate, n = float(rate), float(n)
        n_ref = None if n_ref is None else float(n_ref)
        sign = -1.0 if direction == "down" else 1.0
        room = rate if direction == "down" else 1 - rate
        power = self.power
        f = lambda d: self._power(sign * d, rate, n, n_ref) - power  # noqa: E731
        hi = room - 1e-12
        if f(hi) < 0:
            return float("nan")
        return float(brentq(f, 0.0, hi, xtol=1e-10))

    def audits_needed(self, rate: float, drop: float, direction: str, ref: float | None) -> float:
        """:func:`audits_needed` at this setting (``ref``: its ``reference_weeks``)."""
        room = rate if direction == "down" else 1 - rate
        if drop >= room:
            return math.inf

        def mdc(n: float) -> float:
            d = self.mdc(rate, n, None if ref is None else ref * n, direction)
            return room if math.isnan(d) else d

        # log mdc is close to linear in log n (slope -1/2): secant steps on the log scale
        target = math.log(drop)
        x, prev = math.log(100.0), None
        for _ in range(200):
            d = mdc(math.exp(x))
            if d >= room:  # no change within [0, 1] reaches the power yet: more audits
                x, prev = x + math.log(4), None
                if x > math.log(1e12):
                    return math.inf
                continue
            fx = math.log(d) - target
            if abs(fx) < 1e-9:
                return math.exp(x)
            slope = -0.5
            if prev is not None and x != prev[0]:
                slope = (fx - prev[1]) / (x - prev[0])
            if not slope < 0:
                slope = -0.5
            prev = (x, fx)
            x = x - fx / slope
        raise QualityLabError(f"audits_needed did not converge for rate={rate!r}, drop={drop!r}")


def neyman_allocation(
    population: npt.ArrayLike,
    s: npt.ArrayLike,
    budget: int,
    *,
    floor: npt.ArrayLike | None = None,
    cap: npt.ArrayLike | None = None,
) -> np.ndarray:
    """Integer audits per stratum minimising the stratified variance, summing to ``budget``.

    Parameters
    ----------
    population : array_like
        Stratum sizes :math:`N_h` (e.g. weekly decisions); strata of size 0
        get nothing.
    s : array_like
        Stratum standard deviations :math:`S_h` (> 0 where there is volume).
    budget : int
        Total audits.
    floor, cap : array_like of int, optional
        Per-stratum bounds (default 0 and :math:`\\lceil N_h \\rceil`; a
        fractional floor is rounded up, a fractional cap down).

    Returns
    -------
    numpy.ndarray of int
        :math:`n_h`, with ``floor <= n_h <= cap`` and ``sum(n_h) == budget``.

    Raises
    ------
    QualityLabError
        When the bounds cannot hold the budget.

    Notes
    -----
    Minimises :math:`\\sum_h W_h^2 (1-f_h) S_h^2/n_h`, :math:`W_h = N_h/N`,
    :math:`f_h = n_h/N_h` (Cochran 1977, §5.5): without binding bounds
    :math:`n_h = B N_h S_h / \\sum_k N_k S_k`. With bounds, strata whose
    share falls outside them are fixed at the bound and the rest share what
    is left in proportion to :math:`N_h S_h` (a multiplier found by
    bisection). The continuous solution is rounded by largest remainders,
    never past a bound, so the total is exact.

    Examples
    --------
    >>> neyman_allocation([1000, 500, 100], [0.2, 0.4, 0.3], 100).tolist()  # 46.5, 46.5, 7.0
    [47, 46, 7]
    >>> neyman_allocation([1000, 500, 100], [0.2, 0.4, 0.3], 100, floor=[1, 1, 20]).tolist()
    [40, 40, 20]
    """
    pop = np.asarray(population, dtype=float)
    sd = np.asarray(s, dtype=float)
    if pop.shape != sd.shape or pop.ndim != 1:
        raise QualityLabError(
            f"population and s must be 1-D of one length; got {pop.shape} and {sd.shape}"
        )
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1:
        raise QualityLabError(MSG_BUDGET.format(value=budget))
    live = pop > 0
    bad = live & ~(np.isfinite(sd) & (sd > 0))
    if np.any(bad) or np.any(~np.isfinite(pop)) or np.any(pop < 0):
        raise QualityLabError(
            "population must be finite and >= 0 and s > 0 where there is volume; got "
            f"population={pop.tolist()}, s={sd.tolist()}"
        )
    lo = np.zeros(pop.shape) if floor is None else np.ceil(np.asarray(floor, dtype=float))
    hi = np.ceil(pop) if cap is None else np.floor(np.asarray(cap, dtype=float))
    lo[~live], hi[~live] = 0.0, 0.0
    if np.any(lo > hi):
        raise QualityLabError("a stratum's floor exceeds its cap")
    if lo.sum() > budget or hi.sum() < budget:
        raise QualityLabError(
            f"budget {budget} is outside what the bounds allow ({int(lo.sum())} to {int(hi.sum())})"
        )
    a = np.where(live, pop * sd, 0.0)

    def total(lam: float) -> float:
        return float(np.clip(lam * a, lo, hi).sum())

    lam_lo, lam_hi = 0.0, 1.0
    while total(lam_hi) < budget:
        lam_hi *= 2
    for _ in range(200):
        mid = (lam_lo + lam_hi) / 2
        lam_lo, lam_hi = (mid, lam_hi) if total(mid) < budget else (lam_lo, mid)
    x = np.clip(lam_hi * a, lo, hi)
    # the continuous optimum; now round by largest remainders
    n = np.floor(x + 1e-9)
    n = np.clip(n, lo, hi)
    left = int(round(budget - n.sum()))
    frac = x - n
    order = np.lexsort((np.arange(len(x)), -frac))
    while left > 0:
        moved = False
        for i in order:
            if left == 0:
                break
            if n[i] < hi[i]:
                n[i] += 1
                left -= 1
                moved = True
        if not moved:  # pragma: no cover - excluded by the bounds check
            raise QualityLabError("cannot place the budget within the caps")
    for i in order[::-1]:  # float floor overshoot (never seen): the smallest remainders give back
        while left < 0 and n[i] > lo[i]:
            n[i] -= 1
            left += 1
    out = n.astype(np.int64)
    if int(out.sum()) != budget:  # pragma: no cover - the bounds check excludes it
        raise QualityLabError(f"allocation sums to {int(out.sum())}, not the budget {budget}")
    return out


def _stratified_se(pop: np.ndarray, s: np.ndarray, n: np.ndarray) -> float:
    """SE of a stratified mean: sqrt(sum (N_h/N)^2 (1 - n_h/N_h) S_h^2 / n_h); inf if n_h=0."""
    live = pop > 0
    if not live.any():
        return math.nan
    if np.any(n[live] <= 0):
        return math.inf
    w = pop[live] / pop[live].sum()
    f = np.clip(n[live] / pop[live], 0.0, 1.0)
    return float(np.sqrt(np.sum(w**2 * (1 - f) * s[live] ** 2 / n[live])))


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def scan_series(ds: Dataset, market: str, period: m.Period) -> int:
    """Series a default :func:`qualitylab.detect.scan` of the market judges, estimated.

    One engine query counts the segments of each scan dimension (market,
    vendor, site, queue, language, policy, ai_model) with decisions in the
    period. Dimensions with one segment are left out (the scan skips them as
    the market again). Each remaining segment counts 7 operational series
    (volume, SLA compliance, three response percentiles, auto-action and
    override rates), 4 QA rates when the data has ``qa_audits``, and 3 AI
    rates on the content dimensions (not vendor and site) when items carry
    an ``ai_score``. Series the scan skips as too small are counted too, so
    the number errs high (a slightly stricter Bonferroni share; the critical
    z grows with the logarithm of the count).
    """
    dec = m.decisions_in_period(ds, market=market, period=period)
    aggs = {d: dec[d].nunique() for d in _SCAN_DIMS}
    aggs["scored"] = dec.ai_score.count()
    row = dec.aggregate(**aggs).to_pandas().iloc[0]
    qa = _SCAN_QA if ds.has("qa_audits") else 0
    ai = _SCAN_AI if float(row["scored"]) > 0 and ds.has("qa_audits") else 0
    total = 0
    for d in _SCAN_DIMS:
        k = int(row[d])
        if d != "market" and k <= 1:
            continue
        total += k * (_SCAN_OPS + qa + (ai if d in _CONTENT_DIMS else 0))
    return max(total, 1)


@dataclass(frozen=True)
class _Setting:
    period: m.Period
    weeks: int
    period_days: int
    series: int
    fdr: float
    reference_weeks: float
    note: str = ""


def _period(
    ds: Dataset, market: str, weeks: int, end: date | str | None
) -> tuple[m.Period, int, str]:
    """The last ``weeks`` full weeks to ``end``, fewer for a young market, with a note."""
    data = m.resolve_period(ds, market=market, start=None, end=None)
    last = scope.as_date(end) if end is not None else data.end
    period = m.last_full_weeks(last, weeks)
    note = ""
    if period.start < data.start <= period.end:
        # a young market: average over the full weeks it has, not over empty ones
        have = max(1, ((period.end - data.start).days + 1) // 7)
        if have < weeks:
            note = (
                f"{market} has data from {data.start} only: weekly figures are the mean of "
                f"its last {have} full week(s), not {weeks}"
            )
            weeks = have
            period = m.last_full_weeks(last, weeks)
    return period, weeks, note


def _setting(
    ds: Dataset,
    market: str,
    weeks: int,
    end: date | str | None,
    period_days: int | None,
    series: int | None,
    baseline_days: int,
    aggregate: SegmentAggregate | None = None,
) -> _Setting:
    mp = ds.params.market(market)  # unknown market: ParameterError naming the file
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise QualityLabError(f"weeks must be a whole number >= 1; got {weeks!r}")
    if not isinstance(baseline_days, int) or baseline_days < 7:
        raise QualityLabError(f"baseline_days must be a whole number >= 7; got {baseline_days!r}")
    period, weeks, note = _period(ds, market, weeks, end)
    if aggregate is not None and (aggregate.market, aggregate.period) != (market, period):
        raise QualityLabError(
            f"the aggregate is of {aggregate.market} over {aggregate.period.start}.."
            f"{aggregate.period.end}, not of {market} over {period.start}..{period.end}: "
            "pass the weeks= and end= it was made with"
        )
    days = 7 * weeks if period_days is None else int(period_days)
    if days < 1:
        raise QualityLabError(f"period_days must be >= 1; got {period_days!r}")
    if series is not None:
        n_series = int(series)
    elif aggregate is not None:
        n_series = aggregate.series
    else:
        n_series = scan_series(ds, market, period)
    if n_series < 1:
        raise QualityLabError(f"series must be >= 1; got {series!r}")
    return _Setting(
        period,
        weeks,
        days,
        n_series,
        SENSITIVITY_FDR[mp.alert_sensitivity],
        baseline_days / 7,
        note,
    )


def _check_inputs(ds: Dataset, by: Sequence[str] | str) -> list[str]:
    cols = scope.check_by(by, ("vendor", "site", "queue", "language", "policy", "routing"))
    if not cols:
        raise QualityLabError("by= needs at least one column, e.g. ('vendor', 'queue')")
    if not ds.has("qa_audits"):
        raise QualityLabError(
            "qa_audits is not in the dataset: without audits every segment is blind and "
            "there is no accuracy to plan on"
        )
    return cols


@dataclass(frozen=True)
class SegmentAggregate:
    """The engine's part of :func:`detectability` and :func:`sampling_plan`, made once.

    Built by :func:`segment_aggregate`; pass it as ``aggregate=`` to both (with
    the same market, ``weeks`` and ``end``) so they share its queries.

    Attributes
    ----------
    market, period, weeks, note, series
        The market; the weeks measured, their number and why they are fewer
        than asked (a young market; empty otherwise); :func:`scan_series`.
    groupings, metrics : tuple
        The ``by=`` columns of each grouping; the metrics aggregated.
    volume, rates, ai_notes : dict
        Per grouping: ``[*by, decisions]`` sorted by ``by``; the QA metrics
        (as :func:`qualitylab.metrics.qa_metrics`) and the AI metrics (as
        :func:`qualitylab.aieval.ai_metrics`, ``None`` when not asked for or
        failing); why they failed.
    """

    market: str
    period: m.Period
    weeks: int
    note: str
    series: int
    groupings: tuple[tuple[str, ...], ...]
    metrics: tuple[str, ...]
    volume: dict[tuple[str, ...], pd.DataFrame]
    rates: dict[tuple[str, ...], tuple[pd.DataFrame, pd.DataFrame | None]]
    ai_notes: dict[tuple[str, ...], tuple[str, ...]]

    def parts(
        self, cols: Sequence[str], wanted: Sequence[str]
    ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
        """Volume, rates (of `wanted`) and notes of one grouping, as :func:`detectability` uses."""
        key = tuple(cols)
        if key not in self.volume:
            raise QualityLabError(
                f"the aggregate has no grouping by {list(cols)}; it has "
                + ", ".join(str(list(g)) for g in self.groupings)
            )
        missing = [w for w in wanted if w not in self.metrics]
        if missing:
            raise QualityLabError(f"the aggregate has no {', '.join(missing)}")
        notes = [self.note] if self.note else []
        qa, ai = self.rates[key]
        parts = [qa[qa["metric"].isin(wanted)]]
        audits = qa[qa["metric"] == "accuracy"][[*cols, "n"]].rename(columns={"n": "audits"})
        if any(w in _AI for w in wanted):
            notes.extend(self.ai_notes[key])
            if ai is not None:
                ai = ai[ai["metric"].isin(wanted)]
                if ai.empty:
                    notes.append(
                        "AI metrics left out: no audited item in the period has an ai_score"
                    )
                parts.append(ai)
        long = pd.concat([p[[*cols, "metric", "value", "n"]] for p in parts], ignore_index=True)
        long = long.merge(audits, on=list(cols), how="left")
        if self.volume[key].empty:
            raise QualityLabError(
                f"market {self.market} has no decisions in {self.period.start}.."
                f"{self.period.end}; nothing to plan audits for"
            )
        return self.volume[key].copy(), long, notes


_GROUPING = "grouping_"


def _stack(t: ir.Table, groupings: Sequence[Sequence[str]]) -> tuple[ir.Table, list[str]]:
    """`t` once per grouping under a ``grouping_`` number (``UNION ALL``), other columns constant.

    A grouping's segments are then the groups of ``[grouping_, *columns]``:
    grouping sets, written portably.
    """
    cols = list(dict.fromkeys(c for g in groupings for c in g))
    parts = []
    for i, g in enumerate(groupings):
        fill = {c: ibis.literal("").cast(t[c].type()) for c in cols if c not in g}
        parts.append(t.mutate(**{_GROUPING: ibis.literal(i, type="int64")}, **fill))
    return (parts[0] if len(parts) == 1 else ibis.union(*parts)), cols


def _split(frame: pd.DataFrame, i: int, cols: Sequence[str], drop: Sequence[str]) -> pd.DataFrame:
    """Grouping `i`'s rows of a stacked aggregate, without the other groupings' columns."""
    part = frame[frame[_GROUPING] == i]
    rest = [c for c in frame.columns if c != _GROUPING and c not in drop]
    return part[[*cols, *rest]].reset_index(drop=True)


def segment_aggregate(
    ds: Dataset,
    market: str,
    *,
    groupings: Sequence[Sequence[str]] = (("vendor", "queue"),),
    weeks: int = 4,
    end: date | str | None = None,
    metrics: Sequence[str] | None = None,
) -> SegmentAggregate:
    """Decisions, audits and metric rates per segment of several groupings, in four queries.

    The engine's part of :func:`detectability` and :func:`sampling_plan`
    (their ``aggregate=``): the decisions per segment, the QA rates and the
    AI rates, each one query over all the groupings (a grouping-sets
    aggregate), and :func:`scan_series`.

    Parameters
    ----------
    ds : Dataset
    market : str
    groupings : sequence of sequence of str, default (("vendor", "queue"),)
        The ``by=`` of each later call.
    weeks, end
        As in :func:`detectability` (the calls given this aggregate must pass the same).
    metrics : sequence of str, optional
        From :data:`DETECTABILITY_METRICS` (default: all of them).

    Returns
    -------
    SegmentAggregate

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab import open_dataset
    >>> from qualitylab.demodata.generate import generate
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     _ = generate(tmp, markets=["SG"], days=42, scale="small", seed=1)
    ...     ds = open_dataset(tmp)
    ...     agg = segment_aggregate(ds, "SG")
    ...     d = detectability(ds, "SG", aggregate=agg)
    ...     plan = sampling_plan(ds, "SG", aggregate=agg)
    """
    keys = list(dict.fromkeys(tuple(_check_inputs(ds, g)) for g in groupings))
    if not keys:
        raise QualityLabError("groupings= needs at least one grouping, e.g. [('vendor', 'queue')]")
    wanted = _check_metrics(metrics)
    return _aggregate(ds, market, _setting(ds, market, weeks, end, None, None, 28), keys, wanted)


def _aggregate(
    ds: Dataset, market: str, st: _Setting, keys: list[tuple[str, ...]], wanted: Sequence[str]
) -> SegmentAggregate:
    period = st.period
    dec = m.decisions_in_period(ds, market=market, period=period)
    stacked, cols = _stack(dec, keys)
    vol_all = stacked.group_by([_GROUPING, *cols]).aggregate(decisions=stacked.count())
    vol_all = vol_all.to_pandas()
    volume = {
        g: _split(vol_all, i, g, cols).sort_values(list(g), kind="stable").reset_index(drop=True)
        for i, g in enumerate(keys)
    }
    rates, ai_notes = _rates(ds, market, period, keys, wanted)
    return SegmentAggregate(
        market=market,
        period=period,
        weeks=st.weeks,
        note=st.note,
        series=st.series,
        groupings=tuple(keys),
        metrics=tuple(wanted),
        volume=volume,
        rates=rates,
        ai_notes=ai_notes,
    )


def _check_metrics(metrics: Sequence[str] | None) -> list[str]:
    wanted = list(DETECTABILITY_METRICS) if metrics is None else list(metrics)
    for w in wanted:
        if w not in DETECTABILITY_METRICS:
            raise QualityLabError(
                f"detectability cannot judge metric {w!r}; choose from "
                + ", ".join(DETECTABILITY_METRICS)
            )
    return wanted


def _rates(
    ds: Dataset,
    market: str,
    period: m.Period,
    keys: list[tuple[str, ...]],
    wanted: Sequence[str],
) -> tuple[
    dict[tuple[str, ...], tuple[pd.DataFrame, pd.DataFrame | None]],
    dict[tuple[str, ...], tuple[str, ...]],
]:
    """Per grouping: segment x metric value and n over the period (QA and AI metrics), long.

    What :func:`qualitylab.metrics.qa_metrics` and
    :func:`qualitylab.aieval.ai_metrics` give per grouping (their values and
    ``n``; not the intervals), from one QA and one AI query over all groupings.
    """
    from qualitylab.measure import aieval

    j = m.audited_decisions(ds, market=market, period=period, qa_source="internal")
    stacked, cols = _stack(j, keys)
    by = [_GROUPING, *cols]
    mp = ds.params.market(market)
    with warnings.catch_warnings():
        # a segment without predicted or actual positives has no AI rate (NaN, n = 0):
        # detectability plans it on the metric's rate pooled over the segments
        warnings.filterwarnings("ignore", message=r"ai_\w+ is undefined", category=RuntimeWarning)
        qa_all = m.qa_from_audits(stacked, by, confidence_level=scope.confidence(ds, market))
        ai_all, ai_error = None, None
        if any(w in _AI for w in wanted):
            try:
                ai_all = aieval.confusion_at(
                    aieval.scored_rows(stacked),
                    mp.ai_threshold,
                    by=by,
                    weight="w",
                    confidence_level=mp.confidence_level,
                    f1_interval=False,
                )
            except QualityLabError as exc:
                ai_error = exc
        rates, notes = {}, {}
        for i, g in enumerate(keys):
            gc = list(g)
            qa = scope.finish(_split(qa_all, i, gc, cols), gc, scope.min_n(ds, market))
            rates[g] = (qa, None if ai_all is None else _split(ai_all, i, gc, cols))
            notes[g] = ()
            if ai_error is not None:  # this grouping's own query: its rates, or its error
                try:
                    kw = {"start": period.start, "end": period.end, "f1_interval": False}
                    rates[g] = (qa, aieval.ai_metrics(ds, market=market, by=gc, **kw))
                except QualityLabError as exc:
                    notes[g] = (f"AI metrics left out: {exc}",)
    return rates, notes


# --------------------------------------------------------------------------- #
# public
# --------------------------------------------------------------------------- #
def detectability(
    ds: Dataset,
    market: str,
    *,
    by: Sequence[str] = ("vendor", "queue"),
    weeks: int = 4,
    end: date | str | None = None,
    metrics: Sequence[str] | None = None,
    detectable_drop: Mapping[str, float] | None = None,
    period_days: int | None = None,
    series: int | None = None,
    baseline_days: int = 28,
    power: float = 0.8,
    aggregate: SegmentAggregate | None = None,
) -> pd.DataFrame:
    """What a week of each segment's audits can show: minimum detectable change and blind spots.

    Parameters
    ----------
    ds : Dataset
    market : str
    by : sequence of str, default ("vendor", "queue")
        Segment columns (add ``"policy"`` for policy x vendor x queue).
    weeks : int, default 4
        Full Monday-Sunday weeks, ending on or before ``end``, over which the
        weekly audits are averaged and the baseline rates measured.
    end : date or ISO string, optional
        Last day considered (default: the market's last day with data).
    metrics : sequence of str, optional
        From :data:`DETECTABILITY_METRICS` (default: all of them).
    detectable_drop : mapping, optional
        Per-metric change that must be visible; defaults to the market's
        ``detectable_drop`` parameters.
    period_days : int, optional
        Days the scan searches for the window. Default ``7 * weeks``: the
        scheduled reports scan their period (the last ``weeks`` full weeks)
        against the 28 days before it, so a drop must beat the search over
        those days (:func:`qualitylab.detect.scan_p_value`).
    series : int, optional
        Series judged together. Default :func:`scan_series`: the series a
        default scan of the market judges, counted in the engine (an upper
        bound: the scan's false-alarm budget is shared over them).
    baseline_days : int, default 28
        The scan's baseline; the window is compared with
        ``baseline_days / 7`` weeks of the same weekly audits.
    power : float, default 0.8
    aggregate : SegmentAggregate, optional
        The engine's part, made by :func:`segment_aggregate` for this market,
        ``weeks`` and ``end`` with ``by`` among its groupings (shared with
        other calls); default: queried here.

    Returns
    -------
    pandas.DataFrame
        One row per segment with decisions in the period x metric:
        ``market, *by,`` then :data:`DETECTABILITY_COLUMNS`:
        ``direction`` (``down`` or ``up``: the change that matters),
        ``weekly_decisions``, ``weekly_audits`` (internal QA audits a week,
        mean over the weeks), ``weekly_n`` (the metric's denominator a week:
        audits for accuracy and the error rates, audited items the model
        flagged for ``ai_precision``, audited violations for ``ai_recall``),
        ``rate`` (the period's value; NaN without data), ``mdc`` (smallest
        change a week of ``weekly_n`` shows with ``power``; NaN when none
        does), ``detectable_drop``, ``blind_spot`` (``mdc`` is NaN or larger
        than ``detectable_drop``), ``weekly_n_needed`` and
        ``weekly_audits_needed`` (per week, to see ``detectable_drop``;
        ``inf`` when no number of audits can). ``attrs`` hold ``period``,
        ``period_days``, ``series``, ``fdr`` and ``notes``.

    Notes
    -----
    The scan judges one dimension at a time (a vendor, a queue), so a vendor
    x queue segment is not itself one of its series: a drop confined to it
    reaches the scan diluted in its vendor's and its queue's series. The
    numbers here are what the segment's own audits could show if it were
    judged alone with the scan's corrections — the best case. The window is
    one week; its baseline ``baseline_days / 7`` weeks of the same audits;
    the level of the test is the market's false discovery rate
    (``alert_sensitivity``) shared over ``series`` (a lone discovery:
    :func:`qualitylab.detect.minimum_detectable_change`). Rates of exactly 0
    or 1 (and segments without audits) are planned at :math:`(k+1)/(n+2)`,
    since the plain estimate implies no variance; a segment without data for
    a metric uses the metric's pooled rate over the segments. The AI metrics
    are scored at the market's ``ai_threshold`` on the audited items the
    model scored; without scores they are left out with a note.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab import open_dataset
    >>> from qualitylab.demodata.generate import generate
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     _ = generate(tmp, markets=["SG"], days=42, scale="small", seed=1)
    ...     d = detectability(open_dataset(tmp), "SG")
    ...     d[d.blind_spot][["vendor", "queue", "metric", "weekly_audits", "mdc"]]
    """
    cols = _check_inputs(ds, by)
    wanted = _check_metrics(metrics)
    if not 0 < power < 1:
        raise QualityLabError(f"power must be in (0, 1); got {power!r}")
    st = _setting(ds, market, weeks, end, period_days, series, baseline_days, aggregate)
    drops = dict(ds.params.market(market).detectable_drop)
    drops.update(detectable_drop or {})
    missing = [w for w in wanted if w not in drops]
    if missing:
        raise ParameterError(
            f"no detectable_drop for {', '.join(missing)}: add it to parameters/defaults.yaml "
            "or pass detectable_drop=",
            key="detectable_drop",
        )
    for w in wanted:
        if not 0 < drops[w] < 1:
            raise ParameterError(MSG_DROP.format(value=drops[w]), key="detectable_drop")
    agg = aggregate or _aggregate(ds, market, st, [tuple(cols)], wanted)
    vol, long, notes = agg.parts(cols, wanted)
    if long.empty:
        raise QualityLabError(
            f"qa_audits has no audits of {market}'s decisions in "
            f"{st.period.start}..{st.period.end}: there is no rate to judge detectability on"
        )
    present = sorted(set(long["metric"]), key=wanted.index)
    grid = vol.merge(pd.DataFrame({"metric": present}), how="cross")
    out = grid.merge(long, on=[*cols, "metric"], how="left")
    audits = vol.merge(long[[*cols, "audits"]].drop_duplicates(cols), on=cols, how="left")
    out = out.drop(columns="audits").merge(audits[[*cols, "audits"]], on=cols, how="left")
    out["n"] = out["n"].fillna(0.0)
    out["audits"] = out["audits"].fillna(0.0)
    k = out["value"].fillna(0.0) * out["n"]
    pooled = (k.groupby(out["metric"]).sum() / out["n"].groupby(out["metric"]).sum()).to_dict()
    pw = _Power(st.period_days, st.series, st.fdr, power)
    rows = []
    for r, kk in zip(out.itertuples(index=False), k, strict=True):
        metric, n = r.metric, float(r.n)
        direction = DETECTABILITY_METRICS[metric]
        rate = _planning_rate(float(kk), n) if n > 0 else pooled.get(metric, math.nan)
        weekly_n, weekly_audits = n / st.weeks, float(r.audits) / st.weeks
        drop = drops[metric]
        if np.isfinite(rate) and 0 < rate < 1:
            mdc = (
                pw.mdc(rate, weekly_n, st.reference_weeks * weekly_n, direction)
                if weekly_n > 0
                else math.nan
            )
            need = pw.audits_needed(rate, drop, direction, st.reference_weeks)
        else:
            mdc = need = math.nan
        share = n / float(r.audits) if r.audits > 0 else math.nan
        rows.append(
            {
                "direction": direction,
                "weekly_decisions": float(r.decisions) / st.weeks,
                "weekly_audits": weekly_audits,
                "weekly_n": weekly_n,
                "mdc": mdc,
                "detectable_drop": drop,
                "blind_spot": bool(not mdc <= drop),
                "weekly_n_needed": math.ceil(need) if np.isfinite(need) else need,
                "weekly_audits_needed": (
                    math.ceil(need / share)
                    if np.isfinite(need) and share > 0
                    else (math.inf if share == 0 or not np.isfinite(need) else math.nan)
                ),
            }
        )
    res = pd.concat([out[[*cols, "metric", "value"]], pd.DataFrame(rows)], axis=1)
    res = res.rename(columns={"value": "rate"})
    res.insert(0, "market", market)
    res = res[["market", *cols, *DETECTABILITY_COLUMNS]]
    res["metric"] = pd.Categorical(res["metric"], categories=wanted, ordered=True)
    res = res.sort_values([*cols, "metric"], kind="stable").reset_index(drop=True)
    res["metric"] = res["metric"].astype(str)
    for c in ("weekly_n_needed", "weekly_audits_needed"):
        res[c] = res[c].astype(float)
    res.attrs.update(
        period=(st.period.start.isoformat(), st.period.end.isoformat()),
        period_days=st.period_days,
        series=st.series,
        fdr=st.fdr,
        notes=notes,
    )
    for note in notes:
        warnings.warn(f"detectability {market}: {note}", stacklevel=2)
    return res


@dataclass(frozen=True)
class SamplingPlan:
    """A weekly QA budget allocated across strata, with what it buys.

    Attributes
    ----------
    market : str
    period : tuple of str
        ISO first and last day of the weeks the plan was measured on.
    budget : int
        Weekly audits allocated.
    drop : float
        Accuracy drop each stratum should be able to show.
    plan : pandas.DataFrame
        One row per stratum with decisions: the ``by`` columns, then
        :data:`PLAN_COLUMNS` (see :func:`sampling_plan`).
    se_before, se_after : float
        Standard error of one week's design-weighted market accuracy with
        the current and the recommended audits (``inf`` when a stratum with
        decisions has no audits).
    blind_before, blind_after : int
        Strata that cannot show ``drop`` (80% power, the scan's corrections).
    still_blind : tuple of str
        Strata that stay blind with the recommended audits.
    unreachable : tuple of str
        Strata no budget can make detectable (the audits needed exceed their
        weekly decisions, or the accuracy is below ``drop``).
    budget_to_close : int
        The smallest weekly budget that makes every reachable stratum
        detectable (at least one audit for the others).
    period_days, series : int
        The scan's search period and the series it judges (the corrections).
    notes : tuple of str
    """

    market: str
    period: tuple[str, str]
    budget: int
    drop: float
    plan: pd.DataFrame
    se_before: float
    se_after: float
    blind_before: int
    blind_after: int
    still_blind: tuple[str, ...]
    unreachable: tuple[str, ...]
    budget_to_close: int
    period_days: int
    series: int
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> pd.DataFrame:
        """Before and after, tidy: ``measure, before, after``."""
        cur = float(self.plan["current_audits"].sum())
        return pd.DataFrame(
            {
                "measure": ["weekly_audits", "accuracy_se", "blind_spots"],
                "before": [cur, self.se_before, float(self.blind_before)],
                "after": [float(self.budget), self.se_after, float(self.blind_after)],
            }
        )

    def to_frame(self) -> pd.DataFrame:
        """The plan table (a copy)."""
        return self.plan.copy()


def _label(frame: pd.DataFrame, cols: list[str]) -> pd.Series:
    # a segment with no value (e.g. decisions without a policy) reads "(none)"
    return frame[cols].astype("string").fillna("(none)").agg(" / ".join, axis=1)


def sampling_plan(
    ds: Dataset,
    market: str,
    *,
    weeks: int = 4,
    budget: int | None = None,
    drop: float | None = None,
    by: Sequence[str] = ("vendor", "queue"),
    end: date | str | None = None,
    period_days: int | None = None,
    series: int | None = None,
    baseline_days: int = 28,
    aggregate: SegmentAggregate | None = None,
) -> SamplingPlan:
    """Allocate a weekly QA budget across strata: lowest accuracy SE, fewest blind spots.

    Parameters
    ----------
    ds : Dataset
    market : str
    weeks : int, default 4
        Full weeks the volumes, accuracies and current audits are measured on.
    budget : int, optional
        Weekly audits to allocate (default: the current weekly total, rounded).
    drop : float, optional
        Accuracy drop each stratum should be able to show (default: the
        market's ``detectable_drop`` for accuracy).
    by : sequence of str, default ("vendor", "queue")
        Strata (add ``"policy"`` for vendor x queue x policy).
    end, period_days, series, baseline_days, aggregate
        As in :func:`detectability`.

    Returns
    -------
    SamplingPlan
        ``plan`` has one row per stratum with decisions: the ``by`` columns,
        ``weekly_decisions`` (:math:`N_h`), ``accuracy`` (the period's,
        design-weighted within the stratum; NaN without audits), ``s``
        (:math:`S_h`), ``current_audits`` (a week, mean over the weeks),
        ``audits_needed`` (a week, to see ``drop``; ``inf`` when no number
        can), ``recommended_audits`` (int), ``mdc_before``/``mdc_after``
        (the accuracy drop a week of the current/recommended audits shows)
        and ``blind_before``/``blind_after``.

    Raises
    ------
    QualityLabError
        Unknown market, no decisions in the period, no ``qa_audits``, a
        ``drop`` outside (0, 1), a budget below 1 or below the number of
        strata with decisions.

    Notes
    -----
    The market's design-weighted accuracy is :math:`\\sum_h W_h \\hat p_h`
    (:math:`W_h = N_h/N`) with variance
    :math:`\\sum_h W_h^2 (1-f_h) S_h^2/n_h` (the stratified variance of
    :func:`qualitylab.stats.stratified_proportion`, with planning
    :math:`S_h = \\sqrt{p_h(1-p_h)}`; :math:`p_h` is the stratum's accuracy,
    or :math:`(x+1)/(n+2)` when it is 0 or 1 or the stratum has no audits,
    so no stratum looks certain). The allocation (:func:`neyman_allocation`)
    minimises it subject to :math:`1 \\le n_h \\le N_h` and a floor of
    ``audits_needed`` for as many strata as the budget allows, cheapest
    first (which maximises the number made detectable). Strata whose floor
    does not fit stay blind and are listed; ``budget_to_close`` is the budget
    that would close them all. ``audits_needed`` is :func:`audits_needed`
    with the scan's corrections (see :func:`detectability`).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab import open_dataset
    >>> from qualitylab.demodata.generate import generate
    >>> with tempfile.TemporaryDirectory() as tmp:  # doctest: +SKIP
    ...     _ = generate(tmp, markets=["SG"], days=42, scale="small", seed=1)
    ...     plan = sampling_plan(open_dataset(tmp), "SG", budget=400)
    ...     plan.summary()
    """
    cols = _check_inputs(ds, by)
    mp = ds.params.market(market)
    if drop is None:
        drop = mp.detectable_drop.get("accuracy")
        if drop is None:
            raise ParameterError(
                "no detectable_drop for accuracy in the parameters; pass drop=",
                key="detectable_drop",
            )
    if isinstance(drop, bool) or not isinstance(drop, int | float) or not 0 < drop < 1:
        raise QualityLabError(MSG_DROP.format(value=drop))
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 1
    ):
        raise QualityLabError(MSG_BUDGET.format(value=budget))
    st = _setting(ds, market, weeks, end, period_days, series, baseline_days, aggregate)
    agg = aggregate or _aggregate(ds, market, st, [tuple(cols)], ["accuracy"])
    vol, long, notes = agg.parts(cols, ["accuracy"])
    plan = vol.merge(long[[*cols, "value", "n"]], on=cols, how="left")
    plan = plan.sort_values(cols, kind="stable").reset_index(drop=True)
    plan["n"] = plan["n"].fillna(0.0)
    n_total = plan["n"].to_numpy(float)
    k = plan["value"].fillna(0.0).to_numpy(float) * n_total
    p = np.array([_planning_rate(kk, nn) for kk, nn in zip(k, n_total, strict=True)])
    pop = plan["decisions"].to_numpy(float) / st.weeks
    s = np.sqrt(p * (1 - p))
    current = n_total / st.weeks
    pw = _Power(st.period_days, st.series, st.fdr, 0.8)
    need = np.array(
        [
            math.ceil(v) if np.isfinite(v) else v
            for v in (pw.audits_needed(float(pp), drop, "down", st.reference_weeks) for pp in p)
        ],
        dtype=float,
    )
    cap = np.maximum(np.floor(pop), 1.0)
    reachable = need <= cap
    strata = len(plan)
    if budget is None:
        budget = max(int(round(current.sum())), 1)
        if budget < strata:
            notes.append(
                f"the current {current.sum():.1f} weekly audits are fewer than the {strata} "
                f"strata; the plan allocates {strata}, one per stratum"
            )
            budget = strata
    if budget < strata:
        raise QualityLabError(MSG_BUDGET_STRATA.format(budget=budget, strata=strata))
    if budget > cap.sum():
        raise QualityLabError(MSG_BUDGET_CAP.format(budget=budget, cap=int(cap.sum())))
    # floors: one audit everywhere; the detectability floor for the cheapest strata that fit
    floor = np.ones(strata)
    spare = budget - strata
    labels = _label(plan, cols)
    for i in sorted(np.flatnonzero(reachable), key=lambda i: (need[i], labels.iloc[i])):
        extra = max(need[i] - 1, 0.0)
        if extra <= spare:
            floor[i] = max(need[i], 1.0)
            spare -= extra
    rec = neyman_allocation(pop, s, int(budget), floor=floor, cap=cap)

    def mdc_at(n: np.ndarray) -> np.ndarray:
        ref = st.reference_weeks
        d = [
            pw.mdc(a, b, ref * b, "down") if b > 0 else math.nan for a, b in zip(p, n, strict=True)
        ]
        return np.asarray(d, dtype=float)

    blind_before = ~(current >= need)
    blind_after = ~(rec >= need)
    table = plan[cols].copy()
    table["weekly_decisions"] = pop
    table["accuracy"] = plan["value"].to_numpy(float)
    table["s"] = s
    table["current_audits"] = current
    table["audits_needed"] = need
    table["recommended_audits"] = rec
    table["mdc_before"] = mdc_at(current)
    table["mdc_after"] = mdc_at(rec.astype(float))
    table["blind_before"] = blind_before
    table["blind_after"] = blind_after
    close = int(np.where(reachable, np.maximum(need, 1.0), 1.0).sum())
    for note in notes:
        warnings.warn(f"sampling_plan {market}: {note}", stacklevel=2)
    return SamplingPlan(
        market=market,
        period=(st.period.start.isoformat(), st.period.end.isoformat()),
        budget=int(budget),
        drop=float(drop),
        plan=table,
        se_before=_stratified_se(pop, s, current),
        se_after=_stratified_se(pop, s, rec.astype(float)),
        blind_before=int(blind_before.sum()),
        blind_after=int(blind_after.sum()),
        still_blind=tuple(labels[blind_after]),
        unreachable=tuple(labels[~reachable]),
        budget_to_close=close,
        period_days=st.period_days,
        series=st.series,
        notes=tuple(notes),
    )
