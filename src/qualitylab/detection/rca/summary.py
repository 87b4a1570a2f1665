"""A plain-language summary of a decomposition: the change and what explains it.

:func:`summarize`, and the formatters of changes, levels and p-values that
the explanations of alerts share.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qualitylab.detection.rca.decomposition import DecompositionResult
from qualitylab.detection.rca.ranking import AdtributorResult, adtributor
from qualitylab.detection.rca.vocabulary import (
    METRIC_SPECS,
    RateMetric,
    check_unit_interval,
    fmt_period,
    where_text,
)

__all__ = ["summarize"]


def fmt_change(x: float, signed: bool = True, spec: RateMetric | None = None) -> str:
    """A change: percentage points, or per 1,000 items for a metric with a scale."""
    if spec is not None and spec.scale != 1.0:
        v = x * spec.scale
        return (
            f"{v:+.2f} per {spec.scale:,.0f}" if signed else f"{abs(v):.2f} per {spec.scale:,.0f}"
        )
    v = x * 100.0
    digits = 2 if 0 < abs(v) < 0.05 else 1
    return f"{v:+.{digits}f} pp" if signed else f"{abs(v):.{digits}f} pp"


def fmt_level(x: float, spec: RateMetric | None = None) -> str:
    """A level: a percentage, or per 1,000 items for a metric with a scale."""
    if spec is not None and spec.scale != 1.0:
        return f"{x * spec.scale:.2f} per {spec.scale:,.0f} {spec.items}"
    return f"{x * 100:.1f}%"


def fmt_p(p: float) -> str:
    """A p-value in a sentence (``p = 0.012``, ``p < 0.001``)."""
    if not np.isfinite(p):
        return "p not available"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def _how(mix: float, rate: float, plural: bool = False, spec: RateMetric | None = None) -> str:
    its = "their" if plural else "its"
    total = abs(mix) + abs(rate)
    share = abs(rate) / total if total > 0 else 0.5
    r, mx = fmt_change(rate, spec=spec), fmt_change(mix, spec=spec)
    effects = f"rate effect {r}, mix effect {mx}"
    if share >= 0.8:
        return (
            f"almost entirely through {its} own performance (rate effect {r}), "
            f"not {its} share of volume (mix effect {mx})"
        )
    if share <= 0.2:
        return (
            f"almost entirely through {its} share of volume (mix effect {mx}), "
            f"not {its} own performance (rate effect {r})"
        )
    return f"through both {its} own performance and {its} share of volume ({effects})"


def segment_rates(spec: RateMetric, r: pd.Series) -> str:
    """The clause on a segment's own rate: from, to, new or absent."""
    if not np.isfinite(r["rate_base"]):
        return f"it is new in the current period ({spec.noun} {fmt_level(r['rate_cur'], spec)})"
    base = fmt_level(r["rate_base"], spec)
    if not np.isfinite(r["rate_cur"]):
        return f"it is absent from the current period ({spec.noun} was {base})"
    return f"its {spec.noun} went from {base} to {fmt_level(r['rate_cur'], spec)}"


def _beyond(ep: float) -> str:
    return " (other segments moved the other way)" if ep > 1.05 else ""


def change_sentences(result: DecompositionResult, alpha: float) -> str:
    """The change with its interval and test, and a warning when it is noise."""
    spec = METRIC_SPECS[result.metric]
    change = result.estimate
    where = (f" in {result.market}" if result.market else "") + where_text(
        result.where, prefix=" for "
    )
    lo, hi = result.confidence_interval(result.confidence_level)
    verb = "rose" if change > 0 else "fell"
    text = (
        f"{spec.label}{where} {verb} {fmt_change(change, signed=False, spec=spec)}, from "
        f"{fmt_level(result.rate_base, spec)} "
        f"({fmt_period(result.baseline)}, n = {result.n_base:,}) "
        f"to {fmt_level(result.rate_cur, spec)} ({fmt_period(result.current)}, "
        f"n = {result.n_cur:,}); {result.confidence_level:.0%} CI for the change "
        f"{fmt_change(lo, spec=spec)} to {fmt_change(hi, spec=spec)}, {fmt_p(result.pvalue)}."
    )
    if not result.pvalue < alpha:
        text += " The change is within sampling noise, so the breakdown below may describe noise."
    return text


def summarize(
    result: DecompositionResult,
    ranking: AdtributorResult | None = None,
    *,
    alpha: float = 0.05,
) -> str:
    """A few plain sentences that state the change and what explains it.

    Parameters
    ----------
    result : DecompositionResult
    ranking : AdtributorResult, optional
        Defaults to ``adtributor(result)``.
    alpha : float, default 0.05
        Significance level below which the change is called real.

    Returns
    -------
    str
        Plain text. Segment names come from the data verbatim: escape the
        text before putting it into HTML.

    Examples
    --------
    The sentences read like: "Accuracy in ID fell 3.1 pp, from 94.5%
    (2026-10-05..2026-11-01, n = 1,234) to 91.4% (2026-11-02..2026-11-08,
    n = 456); 95% CI for the change -4.8 to -1.4 pp, p < 0.001. By vendor,
    VendorC explains 82% of the drop, almost entirely through its own
    performance (rate effect -2.6 pp), not its share of volume (mix effect
    -0.1 pp); its accuracy went from 95.0% to 80.2%."
    """
    alpha = check_unit_interval(alpha, "alpha")
    spec = METRIC_SPECS[result.metric]
    change = result.estimate
    where = (f" in {result.market}" if result.market else "") + where_text(
        result.where, prefix=" for "
    )
    if change == 0:
        return (
            f"{spec.label}{where} did not change: {fmt_level(result.rate_base, spec)} in both "
            f"{fmt_period(result.baseline)} and {fmt_period(result.current)}."
        )
    noun = "rise" if change > 0 else "drop"
    sentences = [change_sentences(result, alpha)]
    ranking = ranking or adtributor(result)
    dim = ranking.top_dimension
    if dim is None:
        sentences.append(
            f"No dimension concentrates the {noun}: no small set of segments explains "
            f"{ranking.ep_threshold:.0%} of it in any of {', '.join(result.dimensions)}."
        )
        return " ".join(sentences)
    seg = ranking.segments
    sel = seg[(seg["dimension"] == dim) & seg["selected"]]
    if len(sel) == 1:
        r = sel.iloc[0]
        sentences.append(
            f"By {dim}, {r['segment']} explains {r['explanatory_power']:.0%} of the {noun}"
            f"{_beyond(r['explanatory_power'])}, "
            f"{_how(r['mix_effect'], r['rate_effect'], spec=spec)}; {segment_rates(spec, r)}."
        )
    else:
        names = ", ".join(sel["segment"].astype(str).iloc[:-1]) + f" and {sel['segment'].iloc[-1]}"
        ep = float(sel["explanatory_power"].sum())
        how = _how(sel["mix_effect"].sum(), sel["rate_effect"].sum(), plural=True, spec=spec)
        sentences.append(
            f"By {dim}, {names} together explain {ep:.0%} of the {noun}{_beyond(ep)}, {how}."
        )
    tot = result.totals[result.totals["dimension"] == dim].iloc[0]
    if abs(tot["mix_effect"]) > abs(tot["rate_effect"]):
        sentences.append(
            f"Across all {dim} segments the shift in volume between segments "
            f"({fmt_change(tot['mix_effect'], spec=spec)}) outweighs the change in their own rates "
            f"({fmt_change(tot['rate_effect'], spec=spec)})."
        )
    # A runner-up only when its leading segment's own rate moved significantly.
    pvals = result.segments.set_index(["dimension", "segment"])["p_value"]
    for _, o in ranking.dimensions.iterrows():
        if not o["explained"] or o["dimension"] == dim:
            continue
        p = pvals.get((o["dimension"], o["top_segment"]), np.nan)
        if p < alpha:
            sentences.append(
                f"The next most telling dimension is {o['dimension']}: "
                f"{o['top_segment']} ({fmt_p(p)} for its own change)."
            )
        break
    return " ".join(sentences)
