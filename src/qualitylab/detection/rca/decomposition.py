"""Shift-share decomposition: a rate's change split into mix and rate effects per segment.

:func:`shift_share` is the arithmetic on arrays (Kitagawa's symmetric
decomposition); :func:`decompose` runs it on a metric's items between two
market-local periods, per dimension, and keeps the sums
(:class:`DecompositionResult`) that the Adtributor ranking and the drill-down reuse.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import ibis.expr.types as ir
import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.engine import (
    PAIR_KEYS,
    aggregate,
    filter_expr,
    metric_table,
    period_sums,
    periods_wide,
    use_weights,
)
from qualitylab.detection.rca.vocabulary import (
    MISSING,
    MSG_EMPTY_PERIOD,
    RateMetric,
    check_dimensions,
    check_metric,
    check_periods,
    check_qa_source,
    check_unit_interval,
    default_dimensions,
    fmt_period,
    resolve_confidence,
    where_text,
)
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure.scope import Period
from qualitylab.measure.stats import (
    ConfidenceInterval,
    proportion_difference_ci,
)

__all__ = [
    "DECOMPOSITION_COLUMNS",
    "MIX_METHODS",
    "TOTALS_COLUMNS",
    "DecompositionResult",
    "decompose",
    "shift_share",
]

DECOMPOSITION_COLUMNS = [
    "dimension",
    "segment",
    "share_base",
    "share_cur",
    "rate_base",
    "rate_cur",
    "n_base",
    "n_cur",
    "mix_effect",
    "rate_effect",
    "contribution",
    "p_value",
]
TOTALS_COLUMNS = [
    "dimension",
    "n_segments",
    "mix_effect",
    "rate_effect",
    "change",
]


#: Ways to split the mix effect between segments (see :func:`shift_share`).
MIX_METHODS = ("centered", "kitagawa")


# --------------------------------------------------------------------------- #
# shift-share arithmetic
# --------------------------------------------------------------------------- #
def shift_share(
    weight_base: npt.ArrayLike,
    events_base: npt.ArrayLike,
    weight_cur: npt.ArrayLike,
    events_cur: npt.ArrayLike,
    *,
    segments: Sequence[Any] | None = None,
    mix: str = "centered",
) -> pd.DataFrame:
    """Symmetric (Kitagawa) shift-share decomposition of a change in a rate.

    Parameters
    ----------
    weight_base, events_base : array_like
        Per segment, the denominator (items, or design-weight sums) and the
        numerator (items with the outcome) in the baseline period.
    weight_cur, events_cur : array_like
        The same in the current period. A segment absent from one period has
        weight 0 there.
    segments : sequence, optional
        Segment labels (default ``0..k-1``).
    mix : {"centered", "kitagawa"}, default "centered"
        How the mix effect is split between segments (the per-dimension total
        is the same); see Notes.

    Returns
    -------
    pandas.DataFrame
        ``segment, share_base, share_cur, rate_base, rate_cur, mix_effect,
        rate_effect, contribution``. The contributions add up to the change in
        the overall rate ``sum(events_cur)/sum(weight_cur) -
        sum(events_base)/sum(weight_base)``.

    Notes
    -----
    With shares :math:`s_i` and rates :math:`r_i` the overall rate is
    :math:`R = \\sum_i s_i r_i`, and (Kitagawa 1955; Das Gupta 1993, ch. 2)

    .. math::

        \\Delta R = \\sum_i \\underbrace{(r_{1i} - r_{0i})\\frac{s_{0i} + s_{1i}}{2}}_{\\text{rate}}
                  + \\underbrace{(s_{1i} - s_{0i})\\frac{r_{0i} + r_{1i}}{2}}_{\\text{mix}}

    exactly, segment by segment (the two terms add up to
    :math:`s_{1i}r_{1i} - s_{0i}r_{0i}`); this is ``mix="kitagawa"``. Its
    per-segment mix term scales with the segment's rate *level*, so a segment
    that merely lost volume at an average rate gets a large negative mix
    effect, offset by the segments that gained it. ``mix="centered"`` (the
    default) measures each segment's rate against the mean overall rate
    :math:`\\bar R = (R_0 + R_1)/2`:

    .. math:: \\text{mix}_i = (s_{1i} - s_{0i})\\left(\\frac{r_{0i} + r_{1i}}{2} - \\bar R\\right)

    Because :math:`\\sum_i (s_{1i} - s_{0i}) = 0` the mix effects of a
    dimension have the same total, the rate effects are unchanged, and the
    decomposition is still exact; volume moving into a segment hurts only if
    that segment is worse than average. A segment present in one period only
    has no rate change: its rate in the other period is taken equal, so its
    whole contribution (its entry or exit) is mix.

    Examples
    --------
    Both segments improve, yet the overall rate falls because the work moved to
    the harder segment (Simpson's paradox):

    >>> out = shift_share(
    ...     [800, 200], [760, 140], [200, 800], [194, 600], segments=["easy", "hard"], mix="kitagawa"
    ... )
    >>> out[["segment", "mix_effect", "rate_effect"]].round(3)
      segment  mix_effect  rate_effect
    0    easy      -0.576        0.010
    1    hard       0.435        0.025
    >>> round(float(out["contribution"].sum()), 3)
    -0.106

    Centred, both moves hurt: volume left the easy (above-average) segment and
    joined the hard (below-average) one:

    >>> shift_share([800, 200], [760, 140], [200, 800], [194, 600])["mix_effect"].round(4).tolist()
    [-0.0678, -0.0732]
    """
    arrays = [
        np.asarray(a, dtype=float).ravel()
        for a in (weight_base, events_base, weight_cur, events_cur)
    ]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ParameterError(
            f"Found input variables with inconsistent numbers of segments: {[a.size for a in arrays]}"
        )
    w0, y0, w1, y1 = arrays
    for arr, name in ((w0, "weight_base"), (w1, "weight_cur")):
        if np.any(~(arr >= 0)) or arr.sum() <= 0:
            raise ParameterError(
                f"{name} must be non-negative with a positive total; got {arr.tolist()!r}",
                key=name,
            )
    for y, w, name in ((y0, w0, "events_base"), (y1, w1, "events_cur")):
        if np.any(~(y >= 0)) or np.any(y > w * (1 + 1e-12)):
            raise ParameterError(f"{name} must lie in [0, weight]; got {y.tolist()!r}", key=name)
    labels = list(range(w0.size)) if segments is None else list(segments)
    if len(labels) != w0.size:
        raise ParameterError(
            f"segments has {len(labels)} labels for {w0.size} segments", key="segments"
        )
    out = _shift_share_arrays(w0, y0, w1, y1, _check_mix(mix))
    out.insert(0, "segment", labels)
    return out


def _check_mix(mix: object) -> str:
    if mix not in MIX_METHODS:
        raise ParameterError(f"mix must be one of {MIX_METHODS}; got {mix!r}", key="mix")
    return str(mix)


def _shift_share_arrays(
    w0: np.ndarray, y0: np.ndarray, w1: np.ndarray, y1: np.ndarray, mix: str
) -> pd.DataFrame:
    s0 = w0 / w0.sum()
    s1 = w1 / w1.sum()
    centre = (y0.sum() / w0.sum() + y1.sum() / w1.sum()) / 2.0 if mix == "centered" else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        r0 = np.where(w0 > 0, y0 / w0, np.nan)
        r1 = np.where(w1 > 0, y1 / w1, np.nan)
    r0f = np.where(w0 > 0, r0, r1)  # absent: no rate change
    r1f = np.where(w1 > 0, r1, r0)
    rate = (r1f - r0f) * (s0 + s1) / 2.0
    mix_effect = (s1 - s0) * ((r0f + r1f) / 2.0 - centre)
    return pd.DataFrame(
        {
            "share_base": s0,
            "share_cur": s1,
            "rate_base": r0,
            "rate_cur": r1,
            "mix_effect": mix_effect,
            "rate_effect": rate,
            "contribution": mix_effect + rate,
        }
    )


def pooled_z(
    r0: np.ndarray, n0: np.ndarray, r1: np.ndarray, n1: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z statistic and two-sided p-value (vectorised)."""
    r0, n0, r1, n1 = (np.asarray(a, dtype=float) for a in (r0, n0, r1, n1))
    with np.errstate(divide="ignore", invalid="ignore"):
        pooled = (r0 * n0 + r1 * n1) / (n0 + n1)
        se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n0 + 1.0 / n1))
        z = np.where(se > 0, (r1 - r0) / se, np.where(np.isclose(r1, r0), 0.0, np.inf))
    bad = ~((n0 > 0) & (n1 > 0)) | np.isnan(r0) | np.isnan(r1)
    z = np.where(bad, np.nan, z)
    p = np.where(bad, np.nan, 2.0 * sps.norm.sf(np.abs(z)))
    return z, np.minimum(p, 1.0)


# --------------------------------------------------------------------------- #
# decomposition
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class DecompositionResult:
    """Result of :func:`decompose`.

    Attributes
    ----------
    metric : str
    market : str or None
    baseline, current : Period
    rate_base, rate_cur : float
        Overall rate in each period (design-weighted when `weighted`).
    n_base, n_cur : int
        Items (audits for QA metrics) in each period.
    statistic : float
        Pooled two-proportion z of the change, at Kish effective sample sizes
        when weighted.
    pvalue : float
    method : str
        ``"z"``.
    alternative : str
        ``"two-sided"``.
    estimate : float
        The change ``rate_cur - rate_base``.
    confidence_level : float
    weighted : bool
        Whether design weights (``sample_weight``) were used.
    mix : str
        ``"centered"`` or ``"kitagawa"`` (see :func:`shift_share`).
    qa_source : str or None
    dimensions : tuple of str
    neff_base, neff_cur : float
        Effective sample sizes (equal to the n's when unweighted).
    segments : pandas.DataFrame
        :data:`DECOMPOSITION_COLUMNS`, one row per dimension × segment; within
        each dimension ``mix_effect + rate_effect = contribution`` and the
        contributions add up to `estimate`. ``p_value`` tests the segment's
        own rate change (pooled z; NaN for a segment absent from a period).
    totals : pandas.DataFrame
        Per dimension: ``dimension, n_segments, mix_effect, rate_effect,
        change``.
    sums : pandas.DataFrame
        Aligned with `segments`: the numerator and denominator of each rate
        (``num_base, num_cur, den_base, den_cur``; weight sums when weighted)
        and the effective sample sizes ``neff_base, neff_cur``.
    nesting : dict
        Dimensions found nested in another in the data (e.g. every ``site``
        belongs to one ``vendor``): ``{child: (parent, {segment: parent
        segment})}``; used by :func:`adtributor`.
    crossed : pandas.DataFrame or None
        Sums per pair of dimensions and pair of segments (``_d0, _s0, _d1,
        _s1`` and ``n, k, sw, sw2, swy`` per period, suffixed ``_0``/``_1``),
        which :func:`adtributor` uses to tell which of two overlapping
        explanations accounts for the other; ``None`` when not computed.
    where : dict or None
        The segment decomposed within (``{dimension: (values, ...)}``), or None.
    """

    metric: str
    market: str | None
    baseline: Period
    current: Period
    rate_base: float
    rate_cur: float
    n_base: int
    n_cur: int
    statistic: float
    pvalue: float
    method: str
    alternative: str
    estimate: float
    confidence_level: float
    weighted: bool
    mix: str
    qa_source: str | None
    dimensions: tuple[str, ...]
    neff_base: float
    neff_cur: float
    segments: pd.DataFrame = field(repr=False, compare=False)
    totals: pd.DataFrame = field(repr=False, compare=False)
    sums: pd.DataFrame = field(repr=False, compare=False)
    nesting: dict[str, tuple[str, dict[str, str]]] = field(repr=False, compare=False)
    crossed: pd.DataFrame | None = field(default=None, repr=False, compare=False)
    where: dict[str, tuple[str, ...]] | None = None

    @property
    def change(self) -> float:
        """The change of the overall rate (same as `estimate`)."""
        return self.estimate

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        """Newcombe interval for the change, at the effective sample sizes."""
        cl = check_unit_interval(confidence_level, "confidence_level")
        return proportion_difference_ci(
            self.rate_cur * self.neff_cur,
            self.neff_cur,
            self.rate_base * self.neff_base,
            self.neff_base,
            confidence_level=cl,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row: ``metric, market, baseline/current bounds, rate_base,
        rate_cur, n_base, n_cur, estimate, ci_low, ci_high, statistic, pvalue,
        method, alternative, confidence_level, weighted``."""
        lo, hi = self.confidence_interval(self.confidence_level)
        row = {
            "metric": self.metric,
            "market": self.market,
            "baseline_start": self.baseline.start,
            "baseline_end": self.baseline.end,
            "current_start": self.current.start,
            "current_end": self.current.end,
            "rate_base": self.rate_base,
            "rate_cur": self.rate_cur,
            "n_base": self.n_base,
            "n_cur": self.n_cur,
            "estimate": self.estimate,
            "ci_low": lo,
            "ci_high": hi,
            "statistic": self.statistic,
            "pvalue": self.pvalue,
            "method": self.method,
            "alternative": self.alternative,
            "confidence_level": self.confidence_level,
            "weighted": self.weighted,
        }
        return pd.DataFrame([row])


def decompose_wide(wide: pd.DataFrame, weighted: bool, group: list[str], mix: str) -> pd.DataFrame:
    """Shift-share of every group (dimension or pair) of a wide frame."""
    w0, y0, ne0, n0 = period_sums(wide, 0, weighted)
    w1, y1, ne1, n1 = period_sums(wide, 1, weighted)
    parts = []
    for _, idx in wide.groupby(group, sort=False).indices.items():
        ss = _shift_share_arrays(w0[idx], y0[idx], w1[idx], y1[idx], mix)
        ss.index = wide.index[idx]
        parts.append(ss)
    out = pd.concat([wide, pd.concat(parts).sort_index()], axis=1)
    out["n_base"] = n0.astype("int64")
    out["n_cur"] = n1.astype("int64")
    out["neff_base"] = ne0
    out["neff_cur"] = ne1
    out["_num_base"], out["_num_cur"] = y0, y1
    out["_den_base"], out["_den_cur"] = w0, w1
    _, out["p_value"] = pooled_z(out["rate_base"], ne0, out["rate_cur"], ne1)
    return out


def decompose(
    ds: Dataset,
    metric: str,
    market: str | None,
    current: tuple[date | str, date | str] | Period,
    baseline: tuple[date | str, date | str] | Period,
    *,
    dimensions: Sequence[str] | None = None,
    where: Mapping[str, str | Sequence[str]] | None = None,
    qa_source: str | None = "internal",
    weighted: bool | None = None,
    mix: str = "centered",
    confidence_level: float | None = None,
    cross: bool = True,
) -> DecompositionResult:
    """Split the change of a rate between two periods into mix and rate effects.

    Parameters
    ----------
    ds : Dataset
    metric : str
        One of :data:`RCA_METRICS`.
    market : str or None
        Market whose calendar defines the dates; ``None`` pools all markets
        (then ``"market"`` is a useful dimension).
    current, baseline : (start, end) or Period
        Market-local, inclusive, disjoint date ranges (dates of the decisions).
    dimensions : sequence of str, optional
        Decision columns to split by (``market, vendor, site, queue, language,
        policy, routing, ai_model, moderator_id``) and, for QA and AI metrics,
        ``auditor_id, qa_policy, qa_source``; ``market, vendor, queue`` for
        ``escalation_rate``; ``market, language, policy, attack, ai_model``
        for ``red_team_recall``. Null values form the segment :data:`MISSING`.
        By default :data:`DEFAULT_DIMENSIONS`, or the metric's entry in
        :data:`METRIC_DIMENSIONS`, less the dimensions `where` fixes.
    where : mapping, optional
        Decompose within a segment only, e.g. ``{"vendor": "VendorC"}``
        (values may be lists): the change of the segment's rate, split by the
        other dimensions.
    qa_source : {"internal", "vendor", None}, default "internal"
        Whose audits are the truth for QA and AI metrics (``qa_alignment``
        always compares the two).
    weighted : bool, optional
        Use design weights ``w`` (``sample_weight``) for shares and rates; by
        default whenever any weight in the two periods differs from 1.
    mix : {"centered", "kitagawa"}, default "centered"
        Per-segment split of the mix effect (:func:`shift_share`); totals per
        dimension and rate effects do not depend on it.
    confidence_level : float, optional
        Defaults to the market's parameter.
    cross : bool, default True
        Also sum every pair of dimensions (one more engine query), so that
        :func:`adtributor` can check overlapping explanations against each
        other.

    Returns
    -------
    DecompositionResult
        Overall rates, the change with its test and interval, ``segments``
        (:data:`DECOMPOSITION_COLUMNS`) and ``totals`` per dimension.

    Notes
    -----
    Shares and rates are :math:`s_i = \\sum_i w / \\sum w` and
    :math:`r_i = \\sum_i w y / \\sum_i w` (Hajek), so
    :math:`R = \\sum_i s_i r_i` is the overall weighted rate and the
    symmetric decomposition of :func:`shift_share` is exact for every
    dimension. The engine runs one ``GROUP BY dimension, period`` per
    dimension, unioned into one query; only the sums leave it.

    ``sla_compliance`` is the share of items answered within their queue's
    SLA among items whose outcome is known at the end of their period
    (answered, or pending and already older than the SLA); unlike
    :func:`qualitylab.metrics.operational_metrics` it does not use the
    Kaplan–Meier estimator, so it can differ slightly when many items are
    still pending at a period's end.
    """
    spec = check_metric(metric)
    dims = check_dimensions(
        default_dimensions(spec, where) if dimensions is None else dimensions, spec
    )
    base, cur = check_periods(baseline, current)
    qa_source = check_qa_source(qa_source)
    mix = _check_mix(mix)
    cl = resolve_confidence(ds, market, confidence_level)
    t = metric_table(ds, spec, market, (base, cur), qa_source)
    fixed = None
    if where is not None:
        t = t.filter(filter_expr(t, where, spec, "where"))
        fixed = {k: (v,) if isinstance(v, str) else tuple(v) for k, v in where.items()}
    agg = aggregate(t, [(d,) for d in dims], ds=ds)
    check_nonempty(agg, spec, market, base, cur, fixed)
    use_w = use_weights(agg, weighted)
    wide = periods_wide(agg, ["_d0", "_s0"])
    out = decompose_wide(wide, use_w, ["_d0"], mix)
    out = out.rename(columns={"_d0": "dimension", "_s0": "segment"})

    first = out[out["dimension"] == dims[0]]
    tot = {
        c: float(first[c].sum())
        for c in ("_num_base", "_num_cur", "_den_base", "_den_cur", "n_base", "n_cur")
    }
    sw2 = {p: float(wide.loc[wide["_d0"] == dims[0], f"sw2_{p}"].sum()) for p in (0, 1)}
    r0 = tot["_num_base"] / tot["_den_base"]
    r1 = tot["_num_cur"] / tot["_den_cur"]
    ne0 = tot["_den_base"] ** 2 / sw2[0] if use_w else tot["n_base"]
    ne1 = tot["_den_cur"] ** 2 / sw2[1] if use_w else tot["n_cur"]
    z, p = pooled_z(np.array([r0]), np.array([ne0]), np.array([r1]), np.array([ne1]))

    order = {d: i for i, d in enumerate(dims)}
    out["_order"] = out["dimension"].map(order)
    out["_abs"] = -out["contribution"].abs()
    out = out.sort_values(["_order", "_abs", "segment"], kind="stable").reset_index(drop=True)
    totals = (
        out.groupby("dimension", sort=False)
        .agg(
            n_segments=("segment", "size"),
            mix_effect=("mix_effect", "sum"),
            rate_effect=("rate_effect", "sum"),
            change=("contribution", "sum"),
        )
        .reset_index()[TOTALS_COLUMNS]
    )
    sums = out[["_num_base", "_num_cur", "_den_base", "_den_cur", "neff_base", "neff_cur"]]
    sums = sums.rename(columns=lambda c: c.lstrip("_"))
    return DecompositionResult(
        metric=spec.name,
        market=market,
        baseline=base,
        current=cur,
        rate_base=r0,
        rate_cur=r1,
        n_base=int(tot["n_base"]),
        n_cur=int(tot["n_cur"]),
        statistic=float(z[0]),
        pvalue=float(p[0]),
        method="z",
        alternative="two-sided",
        estimate=r1 - r0,
        confidence_level=cl,
        weighted=use_w,
        mix=mix,
        qa_source=qa_source,
        dimensions=tuple(dims),
        neff_base=float(ne0),
        neff_cur=float(ne1),
        segments=out[DECOMPOSITION_COLUMNS].copy(),
        totals=totals,
        sums=sums.reset_index(drop=True),
        nesting=_nesting(t, dims),
        crossed=periods_wide(aggregate(t, list(itertools.combinations(dims, 2)), ds=ds), PAIR_KEYS)
        if cross and len(dims) > 1
        else None,
        where=fixed,
    )


#: Known hierarchies of the data contract, (child, parent); each is checked
#: against the data before it is used.
_HIERARCHY = (("site", "vendor"), ("moderator_id", "site"), ("moderator_id", "vendor"))


def _nesting(t: ir.Table, dims: Sequence[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """Which of the known hierarchies hold in the data (one distinct query)."""
    pairs = [(c, p) for c, p in _HIERARCHY if c in dims and p in dims]
    if not pairs:
        return {}
    cols = sorted({x for pair in pairs for x in pair})
    df = (
        t.select(*[t[c].cast("string").fill_null(MISSING).name(c) for c in cols])
        .distinct()
        .to_pandas()
    )
    out: dict[str, tuple[str, dict[str, str]]] = {}
    for child, parent in pairs:
        # Null ids (e.g. no moderator for ai_auto items) are not a real segment.
        links = df.loc[(df[child] != MISSING) & (df[parent] != MISSING), [child, parent]]
        links = links.drop_duplicates()
        if child not in out and len(links) and links[child].is_unique:
            out[child] = (parent, dict(zip(links[child], links[parent], strict=True)))
    return out


def check_nonempty(
    agg: pd.DataFrame,
    spec: RateMetric,
    market: str | None,
    base: Period,
    cur: Period,
    where: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """Raise :data:`MSG_EMPTY_PERIOD` when a period has no items of the metric."""
    for p, which, period in ((0, "baseline", base), (1, "current", cur)):
        if not (agg.loc[agg["_period"] == p, "n"] > 0).any():
            raise QualityLabError(
                MSG_EMPTY_PERIOD.format(
                    what=spec.items,
                    metric=spec.name,
                    market=market,
                    which=which,
                    period=fmt_period(period),
                )
                + where_text(where, prefix=" for ")
            )


def pairs_from(
    crossed: pd.DataFrame | None, pairs: Sequence[tuple[str, ...]]
) -> pd.DataFrame | None:
    """The sums of `pairs` (in their order) from :attr:`DecompositionResult.crossed`, if all there."""
    if crossed is None:
        return None
    have = set(zip(crossed["_d0"], crossed["_d1"], strict=True))
    parts = []
    for a, b in pairs:
        if (a, b) in have:
            parts.append(crossed[(crossed["_d0"] == a) & (crossed["_d1"] == b)])
        elif (b, a) in have:
            flip = crossed[(crossed["_d0"] == b) & (crossed["_d1"] == a)]
            parts.append(
                flip.rename(columns={"_d0": "_d1", "_s0": "_s1", "_d1": "_d0", "_s1": "_s0"})
            )
        else:
            return None
    return pd.concat(parts, ignore_index=True)[crossed.columns]
