"""The scorecard: every KPI for a grain and period, against targets.

One call returns the long tidy table that notebooks, the CLI and the runner
share: each KPI with its ``n``, interval, target, red/amber/green status and
the change against the previous period with its significance.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date

import numpy as np
import pandas as pd
from scipy import stats as sps
from scipy.optimize import brentq

from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.measure.stats import adjust_pvalues

__all__ = [
    "HIGHER_IS_BETTER",
    "LOWER_IS_BETTER",
    "SCORECARD_COLUMNS",
    "scorecard",
    "scorecard_kpis",
    "status_against_target",
]

HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "sla_compliance",
        "qa_alignment",
        "qa_alignment_kappa",
        "ai_precision",
        "ai_recall",
        "ai_f1",
        "calibration_score",
        "utilization",
        "throughput",
        "override_accuracy",
        "ai_alone_accuracy",
    }
)
LOWER_IS_BETTER = frozenset(
    {
        "over_enforcement_rate",
        "under_enforcement_rate",
        "wrong_policy_rate",
        "ai_fpr",
        "ai_fnr",
        "override_rate",
        "backlog",
        "response_p50",
        "response_p90",
        "response_p99",
        "reporting_gap",
        "escalation_rate",
        "capacity_gap",
    }
)
SCORECARD_COLUMNS = [
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "target",
    "status",
    "prev_value",
    "delta",
    "p_value",
    "p_adjusted",
    "small_n",
]
# Census counts: compared with an exact conditional Poisson test, not an interval.
_COUNTS = ("volume", "backlog")


def status_against_target(
    value: float, ci_low: float, ci_high: float, target: float, metric: str
) -> str:
    """Red/amber/green for one KPI.

    ``green`` meets the target with confidence (the whole interval is on the
    good side), ``red`` misses it with confidence, ``amber`` when the interval
    straddles the target; ``na`` without a target or a value. Without an
    interval (census values) the value alone decides; an interval with one
    open end (NaN) is unbounded on that side.

    Examples
    --------
    >>> status_against_target(0.96, 0.955, 0.965, 0.95, "accuracy")
    'green'
    >>> status_against_target(0.96, 0.94, 0.975, 0.95, "accuracy")
    'amber'
    >>> status_against_target(0.05, 0.04, 0.06, 0.03, "over_enforcement_rate")
    'red'
    >>> status_against_target(300.0, 200.0, float("nan"), 600.0, "response_p90")
    'amber'
    """
    if target is None or np.isnan(target) or value is None or np.isnan(value):
        return "na"
    if np.isnan(ci_low) and np.isnan(ci_high):
        lo, hi = value, value  # a census value: no interval
    else:
        # one open end (e.g. a percentile whose upper limit the data cannot bound)
        lo = -np.inf if np.isnan(ci_low) else ci_low
        hi = np.inf if np.isnan(ci_high) else ci_high
    if metric in LOWER_IS_BETTER:
        if hi <= target:
            return "green"
        if lo > target:
            return "red"
        return "amber"
    if lo >= target:
        return "green"
    if hi < target:
        return "red"
    return "amber"


def scorecard_kpis(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    periods: Sequence[m.Period],
    threshold: float | None = None,
) -> list[pd.DataFrame]:
    """Every scorecard KPI for each of `periods`, from one pass per table.

    Parameters
    ----------
    ds : Dataset
    market : str, optional
        One market (its calendar, SLAs, confidence level and ``min_n``); all
        markets with the defaults otherwise.
    by : sequence of str
        Grain, any of :data:`qualitylab.metrics.GRAINS`.
    periods : sequence of Period
        Market-local periods (a scorecard's current and previous period).
    threshold : float, optional
        AI decision threshold (default from parameters).

    Returns
    -------
    list of pandas.DataFrame
        One frame per period, ``[*by, metric, value, n, ci_low, ci_high,
        small_n]``: the rows of :func:`~qualitylab.metrics.operational_metrics`,
        :func:`~qualitylab.metrics.qa_metrics`, ``qa_alignment`` of
        :func:`~qualitylab.metrics.qa_alignment`,
        :func:`~qualitylab.metrics.ai_workflow_metrics` and
        :func:`~qualitylab.aieval.ai_metrics` (with the same numbers).

    Notes
    -----
    On a market slice (:meth:`~qualitylab.sources.Dataset.for_market`, a
    snapshot) the result is remembered per arguments
    (:meth:`~qualitylab.sources.Dataset.remember`): a repeated call returns
    copies without querying. Otherwise, three engine passes instead of one
    per family and period: one aggregate
    over ``decisions`` with every operational and workflow count
    (:func:`~qualitylab.metrics.decision_summary`, the periods as a grouping
    key), one over ``staffing``, and one join of ``qa_audits`` to its
    decisions, kept by the engine (:meth:`~qualitylab.sources.Dataset.kept`) while the QA, alignment
    and AI families aggregate it.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", seed=1, days=14, markets=["SG"])
    >>> ds = open_dataset(folder)
    >>> p = m.resolve_period(ds, market="SG", start=None, end=None)
    >>> (cur,) = scorecard_kpis(ds, market="SG", by=["vendor"], periods=[p])
    >>> sorted(set(cur["metric"]))[:3]
    ['accuracy', 'ai_f1', 'ai_fnr']
    """
    cols = m.check_by(by)
    periods = list(periods)
    key = ("scorecard_kpis", market, tuple(cols), tuple(periods), threshold)
    frames = ds.remember(key, lambda: _scorecard_kpis(ds, market, cols, periods, threshold))
    return [f.copy() for f in frames]


def _scorecard_kpis(
    ds: Dataset,
    market: str | None,
    cols: list[str],
    periods: list[m.Period],
    threshold: float | None,
) -> list[pd.DataFrame]:
    from qualitylab.measure.aieval import ai_metrics_from_audits, scored_rows

    pcols = [*cols, m.PERIOD]
    params = ds.params.market(market) if market else ds.params.defaults
    cl, min_n = params.confidence_level, params.min_n
    thr = params.ai_threshold if threshold is None else threshold
    slas = dict(params.sla_seconds)
    summary = m.decision_summary(ds, market=market, by=pcols, periods=periods, slas=slas)
    staff = m.staffing_hours(ds, market=market, by=pcols, periods=periods)
    parts = [
        m.operational_from_summary(summary, pcols, slas=slas, staffing=staff, confidence_level=cl),
        m.workflow_from_summary(summary, pcols, confidence_level=cl),
    ]
    if ds.has("qa_audits") and not summary.empty:
        joined = m.audits_in_periods(
            ds, market=market, periods=periods, columns=[*cols, "ai_score"]
        )
        with ds.kept(joined) as audits:
            internal = audits.filter(audits.qa_source == "internal")
            parts.append(m.qa_from_audits(internal, pcols, confidence_level=cl))
            align = m.alignment_from_audits(audits, pcols, confidence_level=cl)
            parts.append(align[align["metric"] == "qa_alignment"].drop(columns=["p_value"]))
            scored = scored_rows(internal)
            with warnings.catch_warnings():
                # undefined rates (no predicted or actual positives in a segment) are
                # NaN rows with status "na", as ai_metrics gives them; the scorecard
                # shows them as such instead of warning once per rate
                warnings.filterwarnings(
                    "ignore", message=r"ai_\w+ is undefined", category=RuntimeWarning
                )
                parts.append(ai_metrics_from_audits(scored, thr, pcols, confidence_level=cl))
    parts = [p for p in parts if len(p)]
    columns = [*cols, *m.METRIC_COLUMNS]
    if not parts:
        return [pd.DataFrame(columns=columns) for _ in periods]
    rows = pd.concat(parts, ignore_index=True)
    for c in ("value", "n", "ci_low", "ci_high"):
        rows[c] = rows[c].astype("float64")
    rows["small_n"] = rows["n"].fillna(0) < min_n
    label = rows[m.PERIOD].to_numpy()
    return [rows.loc[label == i, columns].reset_index(drop=True) for i in range(len(periods))]


def _has_decisions(frame: pd.DataFrame) -> bool:
    """Whether collected KPIs count any decision (ungrouped, an empty period has volume 0)."""
    volume = frame.loc[frame["metric"] == "volume", "value"]
    return bool(volume.fillna(0).sum() > 0)


def _wilson_n(p: float, lo: float, hi: float, z: float) -> float:
    """The sample size at which ``(lo, hi)`` is the Wilson interval of ``p``, else NaN.

    Wilson's bounds solve ``(p - b)**2 = z**2 b (1 - b) / n``; ``n`` is read
    from the bound farther from ``p`` and kept only if the Wilson interval at
    that ``n`` gives back both bounds. For a design-weighted rate it is the
    design effective sample size of a Wilson interval; for a plain rate
    the number of observations.
    """
    far = lo if p - lo >= hi - p else hi
    if not (0 < far < 1) or far == p:
        return np.nan
    n = z**2 * far * (1 - far) / (p - far) ** 2
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    if abs(centre - half - lo) > 1e-6 or abs(centre + half - hi) > 1e-6:
        return np.nan
    return n


def _clopper_pearson_n(p: float, lo: float, hi: float, confidence_level: float) -> float:
    """The size ``n`` at which Clopper-Pearson at ``x = p n`` gives ``(lo, hi)``, else NaN.

    This is the Korn-Graubard interval of a design-weighted rate (``x`` need
    not be whole), so ``n`` is its design effective sample size. Each bound
    moves monotonically with ``n``; it is solved from one bound and kept only
    if the other bound agrees.
    """
    a = (1 - confidence_level) / 2
    if not (0 <= lo <= p <= hi <= 1) or lo == hi:
        return np.nan
    if p == 0:  # hi = 1 - a**(1/n)
        n = np.log(a) / np.log1p(-hi) if 0 < hi < 1 else np.nan
    elif p == 1:  # lo = a**(1/n)
        n = np.log(a) / np.log(lo) if 0 < lo < 1 else np.nan
    else:

        def gap(size: float) -> float:
            return sps.beta.ppf(a, p * size, size - p * size + 1) - lo

        try:
            n = brentq(gap, 1e-3, 1e9, xtol=1e-10, rtol=1e-12)
        except ValueError:
            return np.nan
    if not np.isfinite(n) or n <= 0:
        return np.nan
    x = p * n
    low = sps.beta.ppf(a, x, n - x + 1) if x > 0 else 0.0
    high = sps.beta.ppf(1 - a, x + 1, n - x) if x < n else 1.0
    if abs(low - lo) > 1e-6 or abs(high - hi) > 1e-6:
        return np.nan
    return float(n)


def _effective_n(
    p: float, lo: float, hi: float, confidence_level: float, z: float | None = None
) -> float:
    """The sample size behind a Wilson or Korn-Graubard interval of a rate, else NaN.

    At a rate of 0 or 1 one bound cannot tell the two apart; Wilson is read.
    `z` is the normal quantile of `confidence_level` (computed when not given).
    """
    z = sps.norm.ppf(0.5 + confidence_level / 2) if z is None else z
    n = _wilson_n(p, lo, hi, z)
    return n if np.isfinite(n) else _clopper_pearson_n(p, lo, hi, confidence_level)


def _change_pvalues(
    cur: pd.DataFrame, prev: pd.DataFrame, days: tuple[int, int], confidence_level: float
) -> np.ndarray:
    """Two-sided p-values of the change, per row.

    Rates with a Wilson interval, or a Korn-Graubard one (Clopper-Pearson at
    the design effective n): the pooled two-proportion z-test on the counts
    ``k = p n`` of each period,
    ``z = (p1 - p2) / sqrt(pp (1 - pp) (1/n1 + 1/n2))`` with
    ``pp = (k1 + k2) / (n1 + n2)``; ``n`` is the effective sample size of the
    rate's interval, which is the number of observations for equal weights
    (tested against ``statsmodels.stats.proportion.proportions_ztest``).
    Counts: the exact conditional test that two Poisson counts share one
    daily rate (binomial on k1 | k1 + k2). Percentiles, ratios and
    bootstrapped rates: a Wald test on the difference with standard errors
    recovered from each interval's half-width (approximate).
    """
    z = sps.norm.ppf(0.5 + confidence_level / 2)
    p = np.full(len(cur), np.nan)
    for i, (c, q) in enumerate(zip(cur.itertuples(), prev.itertuples(), strict=True)):
        if np.isnan(q.value) or np.isnan(c.value):
            continue
        if c.metric in _COUNTS:
            k1, k2 = int(c.value), int(q.value)
            if k1 + k2 == 0:
                continue
            share = days[0] / (days[0] + days[1])
            p[i] = sps.binomtest(k1, k1 + k2, share).pvalue
            continue
        n1, n2 = (_effective_n(r.value, r.ci_low, r.ci_high, confidence_level, z) for r in (c, q))
        if np.isfinite(n1) and np.isfinite(n2):
            pooled = (c.value * n1 + q.value * n2) / (n1 + n2)
            se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        else:
            se1 = (c.ci_high - c.ci_low) / (2 * z)
            se2 = (q.ci_high - q.ci_low) / (2 * z)
            se = np.sqrt(se1**2 + se2**2)
        if not np.isfinite(se):
            continue
        if se == 0:
            p[i] = 1.0 if c.value == q.value else np.nan
            continue
        p[i] = 2 * sps.norm.sf(abs(c.value - q.value) / se)
    return p


def scorecard(
    ds: Dataset,
    market: str,
    *,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    threshold: float | None = None,
    compare: bool = True,
) -> pd.DataFrame:
    """All KPIs for one market at a grain, with targets, status and change.

    Parameters
    ----------
    ds : Dataset
    market : str
        Market code (its calendar, targets and SLAs apply).
    by : sequence of str
        Grain, e.g. ``["vendor", "queue"]``.
    start, end : date or ISO string, optional
        Market-local period, inclusive; defaults to the last 28 days with data.
    threshold : float, optional
        AI decision threshold (default from parameters).
    compare : bool, default True
        Compute the previous period of equal length and the change.

    Returns
    -------
    pandas.DataFrame
        ``market, *by, metric, value, n, ci_low, ci_high, target, status,
        prev_value, delta, p_value, p_adjusted, small_n``. ``status`` is
        green/amber/red against the target (see :func:`status_against_target`),
        ``p_value`` tests the change against the previous period (rates: the
        pooled two-proportion z-test on their counts at the effective n of
        their interval; volume and backlog: an exact Poisson test) and
        ``p_adjusted`` controls the false discovery rate across the rows
        (Benjamini–Hochberg). ``attrs["period"]`` holds the period's first and
        last date; ``attrs["notes"]`` one line per gap in the data (e.g. a
        previous period without data, whose ``prev_*`` columns stay empty).
    """
    cols = list([by] if isinstance(by, str) else by)
    mp = ds.params.market(market)
    if hasattr(ds, "for_market"):
        ds = ds.for_market(market)  # a dozen queries follow: slice the market once
    if start is None or end is None:
        full = m.resolve_period(ds, market=market, start=None, end=end)
        e = full.end
        s = max(full.start, date.fromordinal(e.toordinal() - 27)) if start is None else start
        period = m.resolve_period(ds, market=market, start=s, end=e)
    else:
        period = m.resolve_period(ds, market=market, start=start, end=end)
    thr = mp.ai_threshold if threshold is None else threshold
    key = [*cols, "metric"]
    notes: list[str] = []
    prev_p = period.previous()
    with warnings.catch_warnings():  # no decisions at all is the error below
        warnings.filterwarnings("ignore", message="no decisions", category=UserWarning)
        frames = scorecard_kpis(
            ds,
            market=market,
            by=cols,
            periods=[period, prev_p] if compare else [period],
            threshold=thr,
        )
    cur = frames[0]
    if not _has_decisions(cur):
        raise QualityLabError(f"no data for market {market} in {period.start}..{period.end}")
    if compare:
        prev = frames[1]
        if not _has_decisions(prev):  # e.g. the period starts with the data: prev_* stay empty
            prev = cur.iloc[:0]
            notes.append(
                f"no data in the previous period {prev_p.start}..{prev_p.end}; "
                "prev_value, delta and p_value are empty"
            )
        merged = cur.merge(
            prev[[*key, "value", "ci_low", "ci_high"]],
            on=key,
            how="left",
            suffixes=("", "_prev"),
        )
        prev_frame = merged[["metric", "value_prev", "ci_low_prev", "ci_high_prev"]].rename(
            columns={"value_prev": "value", "ci_low_prev": "ci_low", "ci_high_prev": "ci_high"}
        )
        merged["p_value"] = _change_pvalues(
            merged[["metric", "value", "ci_low", "ci_high"]],
            prev_frame,
            (period.days, prev_p.days),
            mp.confidence_level,
        )
        merged["prev_value"] = merged["value_prev"]
        merged["delta"] = merged["value"] - merged["prev_value"]
    else:
        merged = cur.copy()
        merged["prev_value"] = np.nan
        merged["delta"] = np.nan
        merged["p_value"] = np.nan
    merged["p_adjusted"] = adjust_pvalues(merged["p_value"].to_numpy(float), method="fdr_bh")
    merged["target"] = merged["metric"].map(mp.targets).astype("float64")
    merged["status"] = [
        status_against_target(r.value, r.ci_low, r.ci_high, r.target, r.metric)
        for r in merged.itertuples()
    ]
    merged.insert(0, "market", market)
    out = merged[["market", *cols, *SCORECARD_COLUMNS]]
    out.attrs["period"] = (period.start.isoformat(), period.end.isoformat())
    out.attrs["notes"] = notes
    return out.sort_values(["market", *cols, "metric"], kind="stable").reset_index(drop=True)
