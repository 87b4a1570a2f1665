"""Event impact: a rate before and after a dated event, optionally against a control."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta

import ibis
import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.decomposition import pooled_z
from qualitylab.detection.rca.engine import filter_expr, metric_table, use_weights, weighted_sums
from qualitylab.detection.rca.vocabulary import (
    check_metric,
    check_qa_source,
    check_unit_interval,
    fmt_period,
    resolve_confidence,
)
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import scope
from qualitylab.measure.scope import Period
from qualitylab.measure.stats import (
    ConfidenceInterval,
    compare_proportions,
    proportion_difference_ci,
)

__all__ = ["EventImpactResult", "event_impact"]


@dataclass(frozen=True)
class EventImpactResult:
    """Result of :func:`event_impact`.

    Attributes
    ----------
    statistic, pvalue : float
        Two-proportion test of the treated segment, after against before.
    method : str
        ``"z"`` or ``"fisher"`` (see :func:`qualitylab.stats.compare_proportions`).
    alternative : str
    estimate : float
        ``rate_after - rate_before`` in the treated segment.
    confidence_level : float
    metric : str
    market : str or None
    event_date : date
    before, after : Period
    rate_before, rate_after : float
    n_before, n_after : int
    neff_before, neff_after : float
    did_estimate, did_se, did_pvalue : float
        Difference-in-differences against the control (NaN without one):
        ``(treated after - before) - (control after - before)``, Wald z-test.
    control_rate_before, control_rate_after : float
    control_n_before, control_n_after : int
    control_neff_before, control_neff_after : float
    weighted : bool
    """

    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    metric: str
    market: str | None
    event_date: date
    before: Period
    after: Period
    rate_before: float
    rate_after: float
    n_before: int
    n_after: int
    neff_before: float
    neff_after: float
    did_estimate: float
    did_se: float
    did_pvalue: float
    control_rate_before: float
    control_rate_after: float
    control_n_before: int
    control_n_after: int
    control_neff_before: float
    control_neff_after: float
    weighted: bool

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Newcombe interval for ``rate_after - rate_before`` (effective sizes)."""
        cl = check_unit_interval(confidence_level, "confidence_level")
        return proportion_difference_ci(
            self.rate_after * self.neff_after,
            self.neff_after,
            self.rate_before * self.neff_before,
            self.neff_before,
            confidence_level=cl,
        )

    def did_confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Wald interval for the difference-in-differences."""
        cl = check_unit_interval(confidence_level, "confidence_level")
        z = sps.norm.isf((1 - cl) / 2)
        return ConfidenceInterval(
            self.did_estimate - z * self.did_se, self.did_estimate + z * self.did_se
        )

    def to_frame(self) -> pd.DataFrame:
        """Rows ``treated``, ``control`` and ``difference_in_differences``:
        ``group, rate_before, rate_after, n_before, n_after, estimate, ci_low,
        ci_high, pvalue``."""
        lo, hi = self.confidence_interval(self.confidence_level)
        rows = [
            {
                "group": "treated",
                "rate_before": self.rate_before,
                "rate_after": self.rate_after,
                "n_before": self.n_before,
                "n_after": self.n_after,
                "estimate": self.estimate,
                "ci_low": lo,
                "ci_high": hi,
                "pvalue": self.pvalue,
            }
        ]
        if np.isfinite(self.did_estimate):
            c_lo, c_hi = proportion_difference_ci(
                self.control_rate_after * self.control_neff_after,
                self.control_neff_after,
                self.control_rate_before * self.control_neff_before,
                self.control_neff_before,
                confidence_level=self.confidence_level,
            )
            _, c_p = pooled_z(
                np.array([self.control_rate_before]),
                np.array([self.control_neff_before]),
                np.array([self.control_rate_after]),
                np.array([self.control_neff_after]),
            )
            d_lo, d_hi = self.did_confidence_interval(self.confidence_level)
            rows.append(
                {
                    "group": "control",
                    "rate_before": self.control_rate_before,
                    "rate_after": self.control_rate_after,
                    "n_before": self.control_n_before,
                    "n_after": self.control_n_after,
                    "estimate": self.control_rate_after - self.control_rate_before,
                    "ci_low": c_lo,
                    "ci_high": c_hi,
                    "pvalue": float(c_p[0]),
                }
            )
            rows.append(
                {
                    "group": "difference_in_differences",
                    "rate_before": np.nan,
                    "rate_after": np.nan,
                    "n_before": self.n_before + self.control_n_before,
                    "n_after": self.n_after + self.control_n_after,
                    "estimate": self.did_estimate,
                    "ci_low": d_lo,
                    "ci_high": d_hi,
                    "pvalue": self.did_pvalue,
                }
            )
        return pd.DataFrame(rows)


def event_impact(
    ds: Dataset,
    metric: str,
    market: str | None,
    event_date: date | str,
    *,
    window_days: int = 14,
    segment: Mapping[str, str | Sequence[str]] | None = None,
    control: Mapping[str, str | Sequence[str]] | str | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    confidence_level: float | None = None,
) -> EventImpactResult:
    """Before/after comparison of a rate around a dated event.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
    event_date : date or ISO string
        Market-local date the event took effect; the *after* window starts on
        it, the *before* window ends the day before.
    window_days : int, default 14
        Length of each window.
    segment : mapping, optional
        The affected segment, e.g. ``{"policy": "scam"}`` (values may be
        lists); the whole market by default.
    control : mapping or "rest", optional
        Unaffected segment for a difference-in-differences; ``"rest"`` is
        everything outside `segment`.
    qa_source, weighted, confidence_level
        As in :func:`decompose`.

    Returns
    -------
    EventImpactResult

    Notes
    -----
    The treated change is tested with
    :func:`qualitylab.stats.compare_proportions` (Fisher's exact test for
    small unweighted counts, else the pooled z-test; weighted rates use Kish
    effective counts and the z-test). The difference-in-differences
    :math:`(T_1 - T_0) - (C_1 - C_0)` has the Wald variance
    :math:`\\sum r(1-r)/n_{eff}` over the four cells; it assumes the treated
    and control segments would have moved in parallel without the event.
    """
    spec = check_metric(metric)
    qa_source = check_qa_source(qa_source)
    ev = scope.as_date(event_date)
    if ev is None:
        raise ParameterError("event_date is required", key="event_date")
    if not isinstance(window_days, int) or window_days < 1:
        raise ParameterError(
            f"window_days must be a positive integer; got {window_days!r}", key="window_days"
        )
    cl = resolve_confidence(ds, market, confidence_level)
    before = Period(ev - timedelta(days=window_days), ev - timedelta(days=1))
    after = Period(ev, ev + timedelta(days=window_days - 1))
    t = metric_table(ds, spec, market, (before, after), qa_source)
    treated = filter_expr(t, segment, spec, "segment") if segment is not None else None
    if control is None:
        ctrl = None
    elif isinstance(control, str):
        if control != "rest":
            raise ParameterError(
                f"control must be a mapping or 'rest'; got {control!r}", key="control"
            )
        if treated is None:
            raise ParameterError("control='rest' needs a segment to be the complement of")
        ctrl = ~treated
    else:
        ctrl = filter_expr(t, control, spec, "control")
    grp = ibis.cases(
        (treated if treated is not None else ibis.literal(True), ibis.literal("treated")),
        *([(ctrl, ibis.literal("control"))] if ctrl is not None else []),
        else_=ibis.null("string"),
    )
    t = t.mutate(_grp=grp)
    t = t.filter(t._grp.notnull())
    agg = weighted_sums(t, ["_grp", "_period"])
    use_w = use_weights(agg, weighted)

    def cell(g: str, p: int) -> tuple[float, float, int]:
        row = agg[(agg["_grp"] == g) & (agg["_period"] == p)]
        if row.empty:
            which = "before" if p == 0 else "after"
            period = before if p == 0 else after
            raise QualityLabError(
                f"no items for {metric} in the {g} segment {which} the event "
                f"({fmt_period(period)}) in market {market!r}"
            )
        r = row.iloc[0]
        if use_w:
            return r["swy"] / r["sw"], r["sw"] ** 2 / r["sw2"], int(r["n"])
        return r["k"] / r["n"], r["n"], int(r["n"])

    r0, ne0, n0 = cell("treated", 0)
    r1, ne1, n1 = cell("treated", 1)
    if use_w:
        res = compare_proportions(r1 * ne1, ne1, r0 * ne0, ne0, method="z", confidence_level=cl)
    else:
        res = compare_proportions(round(r1 * ne1), ne1, round(r0 * ne0), ne0, confidence_level=cl)
    nan = float("nan")
    c = {"r0": nan, "r1": nan, "ne0": nan, "ne1": nan, "n0": 0, "n1": 0}
    did, did_se, did_p = nan, nan, nan
    if ctrl is not None:
        c["r0"], c["ne0"], c["n0"] = cell("control", 0)
        c["r1"], c["ne1"], c["n1"] = cell("control", 1)
        did = (r1 - r0) - (c["r1"] - c["r0"])
        did_se = math.sqrt(
            sum(
                r * (1 - r) / ne
                for r, ne in ((r0, ne0), (r1, ne1), (c["r0"], c["ne0"]), (c["r1"], c["ne1"]))
            )
        )
        did_p = (
            float(2 * sps.norm.sf(abs(did / did_se))) if did_se > 0 else (1.0 if did == 0 else 0.0)
        )
    return EventImpactResult(
        statistic=float(res.statistic),
        pvalue=float(res.pvalue),
        method=res.method,
        alternative=res.alternative,
        estimate=float(r1 - r0),
        confidence_level=cl,
        metric=spec.name,
        market=market,
        event_date=ev,
        before=before,
        after=after,
        rate_before=float(r0),
        rate_after=float(r1),
        n_before=n0,
        n_after=n1,
        neff_before=float(ne0),
        neff_after=float(ne1),
        did_estimate=float(did),
        did_se=float(did_se),
        did_pvalue=float(did_p),
        control_rate_before=float(c["r0"]),
        control_rate_after=float(c["r1"]),
        control_n_before=int(c["n0"]),
        control_n_after=int(c["n1"]),
        control_neff_before=float(c["ne0"]),
        control_neff_after=float(c["ne1"]),
        weighted=use_w,
    )
