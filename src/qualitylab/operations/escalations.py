"""Escalations and incident triage.

Escalations are cases raised beyond the front line (``escalations`` table). This
module measures how often they happen (:func:`escalation_rate`, per 1,000
decisions with an exact Poisson interval), how fast they are resolved against
the SLA of their severity with open cases censored (:func:`escalation_resolution`,
Kaplan–Meier), how old the open ones are (:func:`open_escalations`), and lines
up daily volume, backlog, SLA, alerts, escalations and events on one timeline to
find the first signal that moved (:func:`triage`).

Counting and the duration histogram run in the engine; escalations are a
small table (about 1.5 per 1,000 decisions), so resolution times are
aggregated to whole seconds and the survival curve is computed in pandas.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.data.contract import SEVERITY_LEVELS, TIERS
from qualitylab.data.localtime import epoch_seconds, local_date, period_bounds_utc
from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure import scope
from qualitylab.measure.metrics import (
    decisions_in_period,
    escalations_in_period,
    operational_metrics,
)
from qualitylab.measure.scope import (
    METRIC_COLUMNS,
    Period,
    as_date,
    check_by,
    confidence,
    finish,
    min_n,
    resolve_period,
    timezones,
)
from qualitylab.measure.survival import km_grouped, wilson_eff

__all__ = [
    "AGE_BUCKETS",
    "AGEING_COLUMNS",
    "ESCALATION_GRAINS",
    "MOVES_COLUMNS",
    "RESOLUTION_COLUMNS",
    "TRIAGE_SERIES",
    "Triage",
    "escalation_rate",
    "escalation_resolution",
    "open_escalations",
    "resolution_curve",
    "triage",
]

#: Grains of the escalation analyses (market-local dates of ``raised_at``; severity is
#: always part of :func:`escalation_resolution`'s grain).
ESCALATION_GRAINS = ("market", "vendor", "queue", "severity", "tier", "date", "week", "month")
#: Columns of :func:`escalation_resolution` after the grain.
RESOLUTION_COLUMNS = ["severity", "sla_seconds", "n_open", *METRIC_COLUMNS]
#: Age buckets of open escalations: (label, upper bound in hours).
AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<1h", 1.0),
    ("1-4h", 4.0),
    ("4-24h", 24.0),
    ("1-3d", 72.0),
    ("3-7d", 168.0),
    (">7d", math.inf),
)
#: Columns of :func:`open_escalations` after the grain.
AGEING_COLUMNS = ["age_bucket", "open", "past_sla"]
#: Series :func:`triage` lines up (those the data supports).
TRIAGE_SERIES = ("volume", "backlog", "sla_compliance", "escalations", "alerts")
#: Columns of :attr:`Triage.moves`.
MOVES_COLUMNS = ["series", "first_date", "direction", "value", "baseline", "band_low", "band_high"]

MSG_NO_TABLE = "escalations is not in the dataset; escalation analyses need it"


def _require(ds: Dataset) -> None:
    if not ds.has("escalations"):
        raise QualityLabError(MSG_NO_TABLE)


def _poisson_ci(k: np.ndarray, exposure: np.ndarray, cl: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Garwood) interval of a Poisson rate k / exposure."""
    alpha = 1 - cl
    with np.errstate(divide="ignore", invalid="ignore"):
        lo = np.where(k > 0, sps.chi2.ppf(alpha / 2, 2 * k) / 2, 0.0) / exposure
        hi = sps.chi2.ppf(1 - alpha / 2, 2 * (k + 1)) / 2 / exposure
    bad = ~(exposure > 0)
    return np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)


def escalation_rate(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Escalations per 1,000 decisions, with an exact Poisson interval.

    Parameters
    ----------
    ds : Dataset
        Needs ``decisions`` and ``escalations``.
    market : str, optional
        One market (its calendar defines dates); all markets otherwise.
    by : sequence of str
        Grain from ``market, vendor, queue, severity, tier, date, week, month``.
    start, end : date or ISO string, optional
        Market-local period, inclusive; defaults to the data's range.
    confidence_level : float, optional
        Defaults to the parameters' level.

    Returns
    -------
    pandas.DataFrame
        ``[*by, metric, value, n, ci_low, ci_high, small_n]`` with metric
        ``escalation_rate``: escalations raised in the segment per 1,000
        decisions created in it; ``n`` is the number of decisions (the
        escalation count is ``value * n / 1000``). ``severity`` and ``tier``
        split the numerator only (every severity is per 1,000 of all decisions).

    Notes
    -----
    Escalations are dated by ``raised_at``, decisions by ``created_at`` (both
    market-local). Escalations without a decision (e.g. legal requests) count
    in their vendor and queue. The interval is Garwood's exact Poisson interval
    :math:`[\\chi^2_{\\alpha/2}(2k)/2,\\ \\chi^2_{1-\\alpha/2}(2k+2)/2] / n \\times 1000`.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=28, scale="small", seed=1)
    ...     r = escalation_rate(open_dataset(tmp), market="SG")
    >>> r[["metric", "value", "n"]].round(2).to_dict("records")
    [{'metric': 'escalation_rate', 'value': 1.19, 'n': 4188.0}]
    """
    _require(ds)
    cols = check_by(by, ESCALATION_GRAINS)
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    tzs = timezones(ds, market)
    den_cols = [c for c in cols if c not in ("severity", "tier")]
    num_only = [c for c in cols if c in ("severity", "tier")]
    dec = decisions_in_period(ds, market=market, period=period)
    den = (
        dec.group_by(den_cols).aggregate(n=dec.count())
        if den_cols
        else dec.aggregate(n=dec.count())
    ).to_pandas()
    esc = escalations_in_period(ds, market, period, tzs)
    num = (
        esc.group_by(cols).aggregate(k=esc.count()) if cols else esc.aggregate(k=esc.count())
    ).to_pandas()
    if cols and den.empty and num.empty:  # no segment at all: nothing to join
        where = f" in market {market}" if market else ""
        warnings.warn(
            f"no decisions or escalations{where} in {period.start}..{period.end}; "
            "escalation_rate is empty",
            stacklevel=2,
        )
        return finish(pd.DataFrame(columns=[*cols, *METRIC_COLUMNS[:-1]]), cols, 1)
    if num_only:  # every severity / tier, zero when none was raised
        vocab = {"severity": SEVERITY_LEVELS, "tier": TIERS}
        levels = pd.DataFrame({num_only[0]: list(vocab[num_only[0]])})
        for c in num_only[1:]:
            levels = levels.merge(pd.DataFrame({c: list(vocab[c])}), how="cross")
        den = den.merge(levels, how="cross")
    m = den.merge(num, on=cols, how="outer") if cols else pd.concat([den, num], axis=1)
    m["n"] = m["n"].fillna(0).astype(float)
    m["k"] = m["k"].fillna(0).astype(float)
    k, n = m["k"].to_numpy(float), m["n"].to_numpy(float)
    lo, hi = _poisson_ci(k, n, cl)
    out = m[cols].copy()
    out["metric"] = "escalation_rate"
    with np.errstate(divide="ignore", invalid="ignore"):
        out["value"] = np.where(n > 0, 1000.0 * k / n, np.nan)
    out["n"] = n
    out["ci_low"] = 1000.0 * lo
    out["ci_high"] = 1000.0 * hi
    return finish(out, cols, min_n(ds, market))


# --------------------------------------------------------------------------- #
# Resolution times: Kaplan–Meier with open escalations censored
# --------------------------------------------------------------------------- #
def _km_steps(times: np.ndarray, d: np.ndarray, c: np.ndarray) -> pd.DataFrame:
    """Kaplan–Meier at each distinct time: at risk, events, survival, Greenwood se.

    ``times`` sorted ascending, unique; ``d`` events and ``c`` censorings at each
    time (censored at t are at risk at t). Matches statsmodels ``SurvfuncRight``:
    the standard error is NaN from the time the survival reaches 0.
    """
    d = np.asarray(d, dtype=float)
    c = np.asarray(c, dtype=float)
    at_risk = d.sum() + c.sum() - np.concatenate([[0], np.cumsum(d + c)[:-1]])
    surv, var = km_grouped(np.zeros(len(d), dtype=np.int64), d, c, nan_when_exhausted=True)
    se = np.sqrt(var)
    return pd.DataFrame(
        {"time": times, "at_risk": at_risk, "events": d, "censored": c, "surv": surv, "se": se}
    )


def _km_quantile(steps: pd.DataFrame, q: float, cl: float) -> tuple[float, float, float]:
    """Quantile and interval, as statsmodels ``SurvfuncRight.quantile(_ci)``.

    The quantile is the first event time at which the survival drops below
    ``1 - q`` (strictly, the SAS convention); the interval inverts the pointwise
    test on the complementary log-log scale (Brookmeyer & Crowley 1982). An
    upper limit the data cannot reach is NaN, including when the first
    rejecting time would be the event that takes the survival to 0 (its
    Greenwood variance is undefined there; R ``quantile.survfit`` gives NA).
    """
    ev = steps[steps["events"] > 0]
    if ev.empty:
        return float("nan"), float("nan"), float("nan")
    t = ev["time"].to_numpy(float)
    s = ev["surv"].to_numpy(float)
    se = ev["se"].to_numpy(float)
    hit = np.flatnonzero(s < 1 - q)
    value = float(t[hit[0]]) if len(hit) else float("nan")
    z = sps.norm.ppf(1 - (1 - cl) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log(-np.log(s))
        gprime = -1.0 / (s * np.log(s))
        r = (g - math.log(-math.log(1 - q))) / (gprime * se)
    inside = np.flatnonzero(np.abs(r) <= z)
    if len(inside) == 0:
        return value, float("nan"), float("nan")
    low = float(t[inside[0]])
    # The upper limit is the first event time after the band where the test
    # rejects. At the event that empties the risk set (survival 0) the
    # Greenwood variance is undefined, so nothing is rejected there: the upper
    # limit is not reached (NaN), as R's ``quantile.survfit``, whose
    # confidence curve is NA at survival 0. Taking that last event time
    # instead made the p90 interval miss the truth in 15% of samples of 30
    # with 20% open (issue #17).
    after = inside[-1] + 1
    exhausted = after < len(t) and not (s[after] > 0 and np.isfinite(se[after]))
    high = float("nan") if after == len(t) or exhausted else float(t[after])
    return value, low, high


def _km_at(steps: pd.DataFrame, when: float) -> tuple[float, float]:
    """Survival and its variance at ``when``; NaN when nobody is observed that long."""
    upto = steps[steps["time"] <= when]
    s = float(upto["surv"].iloc[-1]) if len(upto) else 1.0
    se = float(upto["se"].iloc[-1]) if len(upto) else 0.0
    reached = bool((steps["time"] >= when).any())
    if not reached and s > 0:
        return float("nan"), float("nan")
    return s, (se * se if np.isfinite(se) else 0.0)


def _durations(
    ds: Dataset, market: str | None, period: Period, cols: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    tzs = timezones(ds, market)
    esc = escalations_in_period(ds, market, period, tzs)
    as_of = ibis.literal(scope.as_of(period, tzs, market))
    done = esc.resolved_at.notnull() & (esc.resolved_at < as_of)
    stop = ibis.ifelse(done, esc.resolved_at, as_of)
    secs = (epoch_seconds(stop) - epoch_seconds(esc.raised_at)).cast("float64")
    t = esc.mutate(__secs=ibis.greatest(secs, 0.0).floor().cast("int64"), __event=done)
    keys = [*cols, "severity", "__secs", "__event"]
    hist = t.group_by(keys).aggregate(k=t.count()).to_pandas()
    return hist.rename(columns={"__secs": "time", "__event": "event"}), [*cols, "severity"]


def _sla_by_severity(ds: Dataset, market: str | None) -> dict[str, float]:
    return dict(
        ds.params.market(market).escalation_sla_seconds
        if market
        else ds.params.defaults.escalation_sla_seconds
    )


def _steps_of(g: pd.DataFrame) -> pd.DataFrame:
    g = g.assign(d=np.where(g["event"], g["k"], 0), c=np.where(g["event"], 0, g["k"]))
    agg = g.groupby("time", sort=True)[["d", "c"]].sum()
    return _km_steps(agg.index.to_numpy(float), agg["d"].to_numpy(float), agg["c"].to_numpy(float))


def resolution_curve(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
) -> pd.DataFrame:
    """The Kaplan–Meier curve of time to resolve, per severity.

    Returns
    -------
    pandas.DataFrame
        ``[*by, severity, time, at_risk, events, censored, surv, se]``: one row
        per distinct duration in whole seconds; ``surv`` is the share of
        escalations still open that long after being raised, ``se`` its
        Greenwood standard error. Escalations open at the end of the period are
        censored there.
    """
    _require(ds)
    cols = check_by(by, tuple(g for g in ESCALATION_GRAINS if g != "severity"))
    period = resolve_period(ds, market=market, start=start, end=end)
    hist, keys = _durations(ds, market, period, cols)
    parts = []
    for key, g in hist.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        steps = _steps_of(g)
        for col, val in zip(keys, key, strict=True):
            steps.insert(keys.index(col), col, val)
        parts.append(steps)
    cols_out = [*keys, "time", "at_risk", "events", "censored", "surv", "se"]
    if not parts:
        return pd.DataFrame(columns=cols_out)
    return pd.concat(parts, ignore_index=True)[cols_out]


def escalation_resolution(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    confidence_level: float | None = None,
) -> pd.DataFrame:
    """Time to resolve escalations per severity, against the severity's SLA.

    Parameters
    ----------
    ds : Dataset
        Needs ``escalations`` (and ``decisions`` to default the period).
    market : str, optional
    by : sequence of str
        Extra grain from ``market, vendor, queue, tier, date, week, month``;
        ``severity`` is always part of the grain.
    start, end : date or ISO string, optional
        Escalations raised on these market-local dates; open ones are censored
        at the end of ``end``.
    confidence_level : float, optional

    Returns
    -------
    pandas.DataFrame
        ``[*by, severity, sla_seconds, n_open, metric, value, n, ci_low,
        ci_high, small_n]`` with metrics ``escalation_resolution_p50`` and
        ``escalation_resolution_p90`` (seconds) and ``sla_compliance`` (share
        resolved within ``sla_seconds``, the severity's
        ``escalation_sla_seconds`` parameter); ``n`` escalations raised,
        ``n_open`` of them still open at the end of the period.

    Warns
    -----
    UserWarning
        When a segment has no resolved escalation: its resolution times are NaN
        (not zero), since nothing is known yet about how long they take.

    Notes
    -----
    Escalations still open are right-censored at the end of the period, so a
    growing open backlog cannot make resolution look faster. Percentiles follow
    statsmodels ``SurvfuncRight.quantile`` (first event time where the
    Kaplan–Meier survival drops below ``1 - q``) with its complementary
    log-log interval; a percentile the data cannot reach yet is NaN.
    Compliance is :math:`1 - \\hat S(SLA)` with a Wilson interval at the
    Greenwood effective sample size; NaN while no escalation has been observed
    for as long as the SLA. Tested against statsmodels ``SurvfuncRight``.
    """
    _require(ds)
    cols = check_by(by, tuple(g for g in ESCALATION_GRAINS if g != "severity"))
    period = resolve_period(ds, market=market, start=start, end=end)
    cl = confidence_level or confidence(ds, market)
    slas = _sla_by_severity(ds, market)
    hist, keys = _durations(ds, market, period, cols)
    rows: list[dict] = []
    unresolved: list[str] = []
    for key, g in hist.groupby(keys, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        base = dict(zip(keys, key, strict=True))
        steps = _steps_of(g)
        n = float(g["k"].sum())
        n_open = float(g.loc[~g["event"].astype(bool), "k"].sum())
        sla = slas.get(str(base["severity"]), float("nan"))
        head = {**base, "sla_seconds": float(sla), "n_open": n_open, "n": n}
        if steps["events"].sum() == 0:
            unresolved.append(", ".join(f"{k}={v}" for k, v in base.items()))
        for q, name in ((0.5, "escalation_resolution_p50"), (0.9, "escalation_resolution_p90")):
            value, low, high = _km_quantile(steps, q, cl)
            rows.append({**head, "metric": name, "value": value, "ci_low": low, "ci_high": high})
        s, var = _km_at(steps, sla) if np.isfinite(sla) else (float("nan"), float("nan"))
        if np.isfinite(s):
            lo, hi = wilson_eff(np.array([1 - s]), np.array([var]), np.array([n]), cl)
            comp = {"value": 1 - s, "ci_low": float(lo[0]), "ci_high": float(hi[0])}
        else:
            comp = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
        rows.append({**head, "metric": "sla_compliance", **comp})
    if unresolved:
        warnings.warn(
            "no escalation resolved yet in: "
            + "; ".join(unresolved)
            + " — their resolution times are NaN (unknown), not 0",
            stacklevel=2,
        )
    out_cols = [*cols, *RESOLUTION_COLUMNS]
    if not rows:
        return pd.DataFrame(columns=out_cols)
    out = pd.DataFrame(rows)
    finished = finish(out, keys, min_n(ds, market))
    extra = out[[*keys, "metric", "sla_seconds", "n_open"]]
    res = finished.merge(extra, on=[*keys, "metric"], how="left")
    return res[out_cols]


# --------------------------------------------------------------------------- #
# Ageing of open escalations
# --------------------------------------------------------------------------- #
def open_escalations(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = ("severity",),
    as_of: date | str | None = None,
) -> pd.DataFrame:
    """How long open escalations have been waiting, in age buckets.

    Parameters
    ----------
    ds : Dataset
    market : str, optional
    by : sequence of str, default ("severity",)
        Grain from ``market, vendor, queue, severity, tier``.
    as_of : date or ISO string, optional
        Count escalations open at the end of this market-local day (default:
        the last day with decisions).

    Returns
    -------
    pandas.DataFrame
        ``[*by, age_bucket, open, past_sla]`` for every bucket of
        :data:`AGE_BUCKETS` (``age_bucket`` is an ordered categorical):
        escalations raised before and unresolved at ``as_of`` by age, and how
        many of them are older than their severity's resolution SLA.
    """
    _require(ds)
    cols = check_by(by, ("market", "vendor", "queue", "severity", "tier"))
    day = as_date(as_of)
    period = resolve_period(ds, market=market, start=day, end=day)
    tzs = timezones(ds, market)
    instant = scope.as_of(Period(period.end, period.end), tzs, market)
    at = ibis.literal(instant)
    esc = ds.table("escalations")
    esc = esc.filter(esc.market == market) if market else esc.filter(esc.market.isin(list(tzs)))
    esc = esc.filter((esc.raised_at < at) & (esc.resolved_at.isnull() | (esc.resolved_at >= at)))
    age_h = (epoch_seconds(at) - epoch_seconds(esc.raised_at)).cast("float64") / 3600.0
    branches = [(age_h < hi, ibis.literal(lab)) for lab, hi in AGE_BUCKETS if np.isfinite(hi)]
    bucket = ibis.cases(*branches, else_=ibis.literal(AGE_BUCKETS[-1][0]))
    slas = _sla_by_severity(ds, market)
    sla_h = ibis.cases(
        *[(esc.severity == s, ibis.literal(v / 3600.0)) for s, v in slas.items()], else_=None
    )
    t = esc.mutate(age_bucket=bucket, __past=(age_h > sla_h).fill_null(False).cast("int64"))
    agg = (
        t.group_by([*cols, "age_bucket"])
        .aggregate(open=t.count(), past_sla=t.__past.sum())
        .to_pandas()
    )
    labels = [lab for lab, _ in AGE_BUCKETS]
    if cols:
        groups = agg[cols].drop_duplicates()
        grid = groups.merge(pd.DataFrame({"age_bucket": labels}), how="cross")
    else:
        grid = pd.DataFrame({"age_bucket": labels})
    out = grid.merge(agg, on=[*cols, "age_bucket"], how="left")
    out["open"] = out["open"].fillna(0).astype("int64")
    out["past_sla"] = out["past_sla"].fillna(0).astype("int64")
    out["age_bucket"] = pd.Categorical(out["age_bucket"], categories=labels, ordered=True)
    return out.sort_values([*cols, "age_bucket"], kind="stable").reset_index(drop=True)[
        [*cols, *AGEING_COLUMNS]
    ]


# --------------------------------------------------------------------------- #
# Triage
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class Triage:
    """One market's operations lined up day by day, and what moved first.

    Attributes
    ----------
    market : str
    period : Period
        The triaged market-local dates.
    baseline : Period
        The days before ``period`` that define each series' normal band.
    timeline : pandas.DataFrame
        One row per date of ``period``: ``date``, each series of
        :data:`TRIAGE_SERIES` the data supports (``volume`` items created,
        ``backlog`` items pending at the end of the day, ``sla_compliance``,
        ``escalations`` raised, ``alerts`` starting that day), ``events``
        (``kind: description`` of events that day, ``; ``-joined; text from the
        data, escape it when rendering) and ``moved`` (series outside their
        band that day, comma-joined).
    bands : pandas.DataFrame
        Per series: ``series, baseline, band_low, band_high, baseline_days``.
    moves : pandas.DataFrame
        Per series, its first day outside the band: :data:`MOVES_COLUMNS`,
        sorted by ``first_date`` (series that never moved last, with
        ``first_date`` None).
    events : pandas.DataFrame
        Events effective in ``baseline`` and ``period``: ``date, kind, policy,
        description``.
    """

    market: str
    period: Period
    baseline: Period
    timeline: pd.DataFrame
    bands: pd.DataFrame
    moves: pd.DataFrame
    events: pd.DataFrame

    @property
    def first(self) -> dict | None:
        """The first signal that moved (earliest date; ties in series order), or None."""
        moved = self.moves[self.moves["first_date"].notna()]
        if moved.empty:
            return None
        return moved.iloc[0].to_dict()

    def summary(self) -> str:
        """One sentence: what moved first, when, and the events just before."""
        first = self.first
        if first is None:
            return (
                f"{self.market} {self.period.start}..{self.period.end}: no series left its "
                "baseline band"
            )
        when = first["first_date"]
        text = (
            f"{self.market}: {first['series']} moved first, on {when} ({first['direction']}: "
            f"{first['value']:.4g} vs band {first['band_low']:.4g}-{first['band_high']:.4g})"
        )
        before = self.events[
            (self.events["date"] <= when) & (self.events["date"] >= when - timedelta(days=7))
        ]
        if len(before):
            last = before.iloc[-1]
            text += f"; latest event before it: {last['kind']} on {last['date']}"
        return text


def _band(values: pd.Series, kind: str, z: float, n: pd.Series | None = None) -> tuple:
    """Baseline centre and band: robust spread, floored by sampling noise."""
    v = values.dropna().astype(float)
    if v.empty:
        return float("nan"), float("nan"), float("nan")
    med = float(v.median())
    robust = 1.4826 * float((v - med).abs().median())
    if kind == "alerts":
        return 0.0, 0.0, 0.0
    if kind == "rate":
        m = float(n.dropna().median()) if n is not None and n.notna().any() else 0.0
        noise = math.sqrt(med * (1 - med) / m) if m > 0 else 0.0
        half = z * max(robust, noise)
        return med, max(0.0, med - half), min(1.0, med + half)
    mean = float(v.mean())
    alpha = 2 * sps.norm.sf(z)
    lo = min(med - z * robust, float(sps.poisson.ppf(alpha / 2, mean)) if mean > 0 else 0.0)
    hi = max(med + z * robust, float(sps.poisson.isf(alpha / 2, mean)) if mean > 0 else 0.0)
    return med, max(0.0, lo), hi


def _daily_counts(expr: ir.Table, col: str, tz: str, lo, hi, name: str) -> pd.Series:
    d = expr.mutate(__d=local_date(expr[col], tz, start=lo, end=hi))
    out = d.group_by("__d").aggregate(k=d.count()).to_pandas()
    out["__d"] = pd.to_datetime(out["__d"]).dt.date
    return out.set_index("__d")["k"].rename(name)


def triage(
    ds: Dataset,
    market: str,
    start: date | str,
    end: date | str,
    *,
    alerts: pd.DataFrame | None = None,
    baseline_days: int = 28,
    z: float = 3.0,
) -> Triage:
    """Line up one market's daily signals and report the first that moved.

    Parameters
    ----------
    ds : Dataset
    market : str
    start, end : date or ISO string
        Market-local dates to triage, inclusive.
    alerts : pandas.DataFrame, optional
        Alerts (the ``alerts.csv`` layout, e.g. from :func:`qualitylab.detect.scan`);
        those of ``market`` are counted on their ``start_date``.
    baseline_days : int, default 28
        Days before ``start`` that define each series' normal band.
    z : float, default 3.0
        Band half-width in robust standard deviations.

    Returns
    -------
    Triage
        The timeline, each series' band, its first move, and the events.

    Notes
    -----
    A series *moves* on a day its value leaves its band. The band is centred on
    the baseline median with half-width ``z`` times the larger of the robust
    spread (1.4826 x median absolute deviation) and the sampling noise: the
    binomial standard error at the median daily volume for ``sla_compliance``,
    Poisson quantiles at the baseline mean (at the same two-sided level) for
    counts. Any alert counts as a move. The first signal is the series that
    moved earliest; ties follow :data:`TRIAGE_SERIES` order. Backlog is the
    number of items created but not decided by the end of each day.
    """
    if baseline_days < 7:
        raise QualityLabError(f"baseline_days must be >= 7, got {baseline_days}")
    mp = ds.params.market(market)
    tz = mp.timezone
    period = resolve_period(ds, market=market, start=start, end=end)
    baseline = Period(period.start - timedelta(days=baseline_days), period.start - timedelta(1))
    full = Period(baseline.start, period.end)
    lo, hi = period_bounds_utc(full.start, full.end, tz)
    days = [full.start + timedelta(days=i) for i in range(full.days)]

    with warnings.catch_warnings():
        # no decisions at all is the QualityLabError below (naming the baseline too);
        # operational_metrics' own "no decisions" warning would come before it
        warnings.filterwarnings("ignore", message="no decisions", category=UserWarning)
        om = operational_metrics(ds, market=market, by=["date"], start=full.start, end=full.end)
    if om.empty:
        raise QualityLabError(
            f"triage: no decisions for market {market} in {full.start}..{full.end} "
            f"(the period and its {baseline_days}-day baseline)"
        )
    om["date"] = pd.to_datetime(om["date"]).dt.date
    vol = om[om.metric == "volume"].set_index("date")["value"]
    sla = om[om.metric == "sla_compliance"].set_index("date")
    frame = pd.DataFrame(index=pd.Index(days, name="date"))
    frame["volume"] = vol.reindex(days).fillna(0.0)

    dec = ds.table("decisions")
    dec = dec.filter(dec.market == market)
    b0 = dec.filter(
        (dec.created_at < lo) & (dec.decided_at.isnull() | (dec.decided_at >= lo))
    ).count()
    start_backlog = int(b0.to_pyarrow().as_py())
    decided = dec.filter((dec.decided_at >= lo) & (dec.decided_at < hi))
    done = _daily_counts(decided, "decided_at", tz, lo, hi, "decided").reindex(days).fillna(0)
    frame["backlog"] = start_backlog + (frame["volume"] - done).cumsum()
    frame["sla_compliance"] = sla["value"].reindex(days)
    sla_n = sla["n"].reindex(days)
    series = ["volume", "backlog", "sla_compliance"]
    if ds.has("escalations"):
        esc = ds.table("escalations")
        esc = esc.filter((esc.market == market) & (esc.raised_at >= lo) & (esc.raised_at < hi))
        frame["escalations"] = (
            _daily_counts(esc, "raised_at", tz, lo, hi, "esc").reindex(days).fillna(0.0)
        )
        series.append("escalations")
    if alerts is not None:
        a = alerts[alerts["market"] == market]
        when = pd.to_datetime(a["start_date"]).dt.date
        frame["alerts"] = when.value_counts().reindex(days).fillna(0.0)
        series.append("alerts")

    events = pd.DataFrame(columns=["date", "kind", "policy", "description"])
    if ds.has("events"):
        ev = ds.table("events")
        ev = ev.filter(
            ev.market.isin([market, "*"]) & (ev.effective_at >= lo) & (ev.effective_at < hi)
        )
        ev = ev.mutate(date=local_date(ev.effective_at, tz, start=lo, end=hi))
        events = (
            ev.select("date", "kind", "policy", "description", "effective_at")
            .to_pandas()
            .sort_values(["effective_at", "kind"], kind="stable")
            .drop(columns="effective_at")
            .reset_index(drop=True)
        )
        events["date"] = pd.to_datetime(events["date"]).dt.date

    base_mask = frame.index < period.start
    band_rows, move_rows = [], []
    moved_on: dict[date, list[str]] = {}
    for name in series:
        kind = "rate" if name == "sla_compliance" else ("alerts" if name == "alerts" else "count")
        centre, low, high = _band(
            frame.loc[base_mask, name], kind, z, sla_n[base_mask] if kind == "rate" else None
        )
        band_rows.append(
            {
                "series": name,
                "baseline": centre,
                "band_low": low,
                "band_high": high,
                "baseline_days": int(frame.loc[base_mask, name].notna().sum()),
            }
        )
        watch = frame.loc[~base_mask, name]
        up = watch > high + 1e-12
        down = watch < low - 1e-12
        out = (up | down) & watch.notna() & np.isfinite(low)
        for d in watch.index[out]:
            moved_on.setdefault(d, []).append(name)
        first = watch.index[out][0] if out.any() else None
        move_rows.append(
            {
                "series": name,
                "first_date": first,
                "direction": None if first is None else ("up" if up[first] else "down"),
                "value": np.nan if first is None else float(watch[first]),
                "baseline": centre,
                "band_low": low,
                "band_high": high,
            }
        )
    moves = pd.DataFrame(move_rows, columns=MOVES_COLUMNS)
    order = {s: i for i, s in enumerate(TRIAGE_SERIES)}
    moves["__o"] = moves["series"].map(order)
    moves["__d"] = pd.to_datetime(moves["first_date"])
    moves = (
        moves.sort_values(["__d", "__o"], na_position="last", kind="stable")
        .drop(columns=["__o", "__d"])
        .reset_index(drop=True)
    )
    timeline = frame.loc[~base_mask, series].reset_index()
    by_day = events.groupby("date")[["kind", "description"]].apply(
        lambda g: "; ".join(f"{k}: {d}" for k, d in zip(g["kind"], g["description"], strict=True))
    )
    timeline["events"] = timeline["date"].map(by_day).fillna("") if len(events) else ""
    timeline["moved"] = timeline["date"].map(lambda d: ", ".join(moved_on.get(d, [])))
    return Triage(
        market=market,
        period=period,
        baseline=baseline,
        timeline=timeline,
        bands=pd.DataFrame(band_rows),
        moves=moves,
        events=events,
    )
