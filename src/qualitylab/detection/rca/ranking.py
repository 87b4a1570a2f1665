"""Adtributor: which dimension explains a change most succinctly and surprisingly.

:func:`adtributor` ranks the dimensions of a :class:`DecompositionResult`
(Bhagwan et al. 2014): per dimension the smallest set of segments whose
explanatory power reaches a threshold, ranked by the Jensen–Shannon
surprise (:func:`jensen_shannon`) per segment of the set; a nested
dimension (site in vendor) goes ahead of its parent only when its
segments changed differently, and of two crossed dimensions the one that
accounts for the other goes first.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats as sps

from qualitylab.detection.rca.decomposition import DecompositionResult, pairs_from
from qualitylab.detection.rca.vocabulary import METRIC_SPECS, RateMetric, check_unit_interval
from qualitylab.errors import ParameterError

__all__ = [
    "ADTRIBUTOR_DIMENSION_COLUMNS",
    "ADTRIBUTOR_SEGMENT_COLUMNS",
    "MSG_ZERO_CHANGE",
    "AdtributorResult",
    "adtributor",
    "jensen_shannon",
]

ADTRIBUTOR_DIMENSION_COLUMNS = [
    "rank",
    "dimension",
    "explained",
    "n_selected",
    "top_segment",
    "explanatory_power",
    "surprise",
    "surprise_per_segment",
    "jsd",
    "mix_effect",
    "rate_effect",
    "nested_in",
    "heterogeneity_p",
    "explains_away",
    "outside_p",
]
ADTRIBUTOR_SEGMENT_COLUMNS = [
    "dimension",
    "segment",
    "explanatory_power",
    "surprise",
    "cumulative_ep",
    "selected",
    "contribution",
    "mix_effect",
    "rate_effect",
    "share_base",
    "share_cur",
    "rate_base",
    "rate_cur",
    "n_base",
    "n_cur",
]


MSG_ZERO_CHANGE = "{metric} did not change; explanatory power is undefined"


def _js_terms(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-element Jensen–Shannon terms (base 2) of two distributions."""
    p = np.asarray(p, dtype=float)
    q = np.asarray(q, dtype=float)
    mid = (p + q) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        tp = np.where(p > 0, p * np.log2(p / mid), 0.0)
        tq = np.where(q > 0, q * np.log2(q / mid), 0.0)
    return 0.5 * (tp + tq)


def _normalise(x: npt.ArrayLike, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=float).ravel()
    if np.any(~(a >= 0)) or np.any(~np.isfinite(a)):
        raise ParameterError(
            f"{name} must be finite and non-negative; got {a.tolist()!r}", key=name
        )
    s = a.sum()
    return a / s if s > 0 else a


def jensen_shannon(p: npt.ArrayLike, q: npt.ArrayLike) -> float:
    """Jensen–Shannon divergence (base 2) between two distributions.

    Parameters
    ----------
    p, q : array_like
        Non-negative weights over the same segments; each is normalised to sum
        to one (an all-zero vector is left as zeros).

    Returns
    -------
    float
        :math:`\\tfrac12 KL(p\\|m) + \\tfrac12 KL(q\\|m)` with
        :math:`m = (p+q)/2`, in [0, 1]; 0 exactly when ``p == q``, symmetric.

    Notes
    -----
    The square of :func:`scipy.spatial.distance.jensenshannon` with ``base=2``
    (tested against it). Adtributor (Bhagwan et al. 2014) uses the
    per-segment terms as the *surprise* of a segment.

    Examples
    --------
    >>> jensen_shannon([1, 0], [0, 1])
    1.0
    >>> jensen_shannon([3, 1], [6, 2])
    0.0
    """
    pn, qn = _normalise(p, "p"), _normalise(q, "q")
    if pn.size != qn.size:
        raise ParameterError(
            f"Found input variables with inconsistent numbers of segments: [{pn.size}, {qn.size}]"
        )
    return float(max(_js_terms(pn, qn).sum(), 0.0))


def _surprise_inputs(
    df: pd.DataFrame, spec: RateMetric, num_cols: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, ...]:
    num0, num1, den0, den1 = num_cols
    if spec.higher_is_better:  # surprise in the failures (errors, SLA breaches)
        num0, num1 = den0 - num0, den1 - num1
    return np.maximum(num0, 0.0), np.maximum(num1, 0.0), den0, den1


def ep_and_surprise(
    df: pd.DataFrame,
    sums: np.ndarray,
    spec: RateMetric,
    change: float,
    group: list[str],
) -> pd.DataFrame:
    """Explanatory power and surprise of every segment within its group."""
    num0, num1, den0, den1 = _surprise_inputs(df, spec, tuple(sums.T))
    out = df.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["explanatory_power"] = (
            out["contribution"] / change if change != 0 else np.full(len(out), np.nan)
        )
    surprise = np.zeros(len(out))
    for _, idx in out.groupby(group, sort=False).indices.items():
        s = np.zeros(len(idx))
        for a, b in ((num0, num1), (den0, den1)):
            s += _js_terms(_normalise(a[idx], "baseline"), _normalise(b[idx], "current"))
        surprise[idx] = s
    out["surprise"] = surprise
    return out


def select_segments(
    out: pd.DataFrame, group: list[str], threshold: float, min_ep: float
) -> pd.DataFrame:
    """Greedy minimal set per group: largest EP first until the threshold."""
    out = out.copy()
    out["_neg_ep"] = -out["explanatory_power"].fillna(-np.inf)
    out = out.sort_values([*group, "_neg_ep"], kind="stable")
    out["cumulative_ep"] = np.nan
    out["selected"] = False
    for _, idx in out.groupby(group, sort=False).indices.items():
        ep = out["explanatory_power"].to_numpy(float)[idx]
        cum = 0.0
        chosen: list[int] = []
        for j, e in zip(idx, ep, strict=True):
            if not (e > min_ep):
                break
            cum += e
            chosen.append(j)
            if cum >= threshold:
                break
        if chosen and cum >= threshold:
            out.iloc[chosen, out.columns.get_loc("selected")] = True
        out.iloc[idx, out.columns.get_loc("cumulative_ep")] = np.cumsum(np.nan_to_num(ep))
    return out.drop(columns="_neg_ep")


@dataclass(frozen=True)
class AdtributorResult:
    """Result of :func:`adtributor`.

    Attributes
    ----------
    dimensions : pandas.DataFrame
        :data:`ADTRIBUTOR_DIMENSION_COLUMNS`, best first. ``explained`` says
        whether a set of at most a few segments reaches the EP threshold;
        ``explanatory_power`` and ``surprise`` are those of the selected set;
        ``jsd`` is the whole dimension's surprise (numerator plus denominator
        divergence); ``mix_effect``/``rate_effect`` sum over the selected set.
    segments : pandas.DataFrame
        :data:`ADTRIBUTOR_SEGMENT_COLUMNS`, ordered as ``dimensions`` and by
        explanatory power within a dimension; ``selected`` marks the set.
    ep_threshold, min_segment_ep : float
    """

    dimensions: pd.DataFrame
    segments: pd.DataFrame
    ep_threshold: float
    min_segment_ep: float

    @property
    def top_dimension(self) -> str | None:
        """The best-ranked dimension whose set explains the change, if any."""
        ok = self.dimensions[self.dimensions["explained"]]
        return None if ok.empty else str(ok.iloc[0]["dimension"])

    @property
    def top_segment(self) -> str | None:
        """Largest-EP segment of :attr:`top_dimension`."""
        ok = self.dimensions[self.dimensions["explained"]]
        return None if ok.empty else str(ok.iloc[0]["top_segment"])


def adtributor(
    result: DecompositionResult,
    *,
    ep_threshold: float = 0.67,
    min_segment_ep: float = 0.1,
    rank_by: str = "surprise_per_segment",
    alpha: float = 0.05,
) -> AdtributorResult:
    """Rank dimensions by how succinctly and surprisingly they explain a change.

    Parameters
    ----------
    result : DecompositionResult
        From :func:`decompose`.
    ep_threshold : float, default 0.67
        Explanatory power a dimension's selected segments must reach together
        (Bhagwan et al.'s :math:`T_{EP}`).
    min_segment_ep : float, default 0.1
        Minimum explanatory power of a segment to enter a set
        (:math:`T_{EEP}`).
    rank_by : {"surprise_per_segment", "surprise"}, default "surprise_per_segment"
        Order of the dimensions whose set reaches the threshold: by the
        surprise of the set divided by its size, or by its total surprise
        (Bhagwan et al.).
    alpha : float, default 0.05
        Level of the heterogeneity test that decides between nested
        dimensions (see Notes).

    Returns
    -------
    AdtributorResult

    Notes
    -----
    Explanatory power of a segment is its share of the total change,
    :math:`EP_i = c_i / \\Delta R` with :math:`c_i` its shift-share
    contribution, so the EPs of a dimension add up to 1 (a segment can exceed
    1 when others offset it). Surprise is the segment's Jensen–Shannon term
    between the baseline and current distributions, summed over the numerator
    and the denominator of the rate — for metrics where higher is better the
    numerator is the failures (errors, SLA breaches), the rarer outcome whose
    distribution actually moves. Per dimension, segments with
    :math:`EP > T_{EEP}` are added by decreasing EP (this gives the smallest
    set) until their EP reaches :math:`T_{EP}`; dimensions whose set reaches
    it rank first, by decreasing surprise per segment of the set, then by
    fewer segments. Bhagwan et al. rank by the set's total surprise, which
    grows with the number of segments: a four-segment set of an endogenous
    dimension (e.g. the policy a wrong decision cited) can then outrank the
    single vendor that caused the errors; dividing by the set's size keeps the
    explanation succinct while a trivial set (one segment holding nearly all
    the volume) still has almost no surprise. Bhagwan et al. also order
    candidates by surprise and use a forecast as the baseline; here the
    baseline period plays the forecast.

    Nested dimensions (every ``site`` of one ``vendor``, every moderator of one
    site, as found in the data) explain the same change twice. When the
    child's selected segments lie inside the parent's selected segments, the
    child is only preferred if its segments changed differently within their
    parent: Cochran's :math:`Q = \\sum_j w_j(\\Delta_j - \\bar\\Delta)^2`
    over the children of each selected parent (:math:`\\Delta_j` the rate
    change, :math:`w_j` its inverse variance, :math:`\\chi^2` with
    :math:`\\sum(k-1)` df) must be significant at `alpha`; otherwise the
    coarser parent is ranked ahead of it. The one not preferred moves to just
    behind the other, which keeps its own place. ``nested_in`` and
    ``heterogeneity_p`` report the test.

    Crossed dimensions can also explain the same change, when the cause sits
    mostly inside one segment of another dimension. Between the leading
    explained dimension and each later one, a test on their
    cross-tabulation decides which accounts for the other (``explains_away``
    names the dimension a promoted one was moved ahead of, ``outside_p`` the
    p-value of its change outside that dimension's segments; see
    :func:`decompose`'s ``cross``).
    """
    ep_threshold = check_unit_interval(ep_threshold, "ep_threshold", closed=True)
    min_segment_ep = check_unit_interval(min_segment_ep, "min_segment_ep", closed=True)
    if rank_by not in ("surprise_per_segment", "surprise"):
        raise ParameterError(
            f"rank_by must be 'surprise_per_segment' or 'surprise'; got {rank_by!r}",
            key="rank_by",
        )
    if result.estimate == 0 or not np.isfinite(result.estimate):
        warnings.warn(MSG_ZERO_CHANGE.format(metric=result.metric), stacklevel=2)
    return rank_dimensions(
        result,
        ep_threshold=ep_threshold,
        min_segment_ep=min_segment_ep,
        rank_by=rank_by,
        alpha=alpha,
    )


def rank_dimensions(
    result: DecompositionResult,
    *,
    ep_threshold: float = 0.67,
    min_segment_ep: float = 0.1,
    rank_by: str = "surprise_per_segment",
    alpha: float = 0.05,
) -> AdtributorResult:
    """:func:`adtributor` on checked arguments, without its warning for an unchanged rate.

    For callers that report an unchanged rate themselves (an alert's
    explanation says the rate did not change); the explanatory powers are
    then NaN and no set is selected.
    """
    spec = METRIC_SPECS[result.metric]
    seg = result.segments
    change = result.estimate
    sums = result.sums[["num_base", "num_cur", "den_base", "den_cur"]].to_numpy(float)
    out = ep_and_surprise(seg, sums, spec, change, ["dimension"])
    out["_neff_base"] = result.sums["neff_base"].to_numpy(float)
    out["_neff_cur"] = result.sums["neff_cur"].to_numpy(float)
    out = select_segments(out, ["dimension"], ep_threshold, min_segment_ep)
    rows = []
    for dim in result.dimensions:
        g = out[out["dimension"] == dim]
        sel = g[g["selected"]]
        rows.append(
            {
                "dimension": dim,
                "explained": not sel.empty,
                "n_selected": len(sel),
                "top_segment": g.iloc[0]["segment"] if len(g) else None,
                "explanatory_power": float(sel["explanatory_power"].sum()),
                "surprise": float(sel["surprise"].sum()),
                "jsd": float(g["surprise"].sum()),
                "mix_effect": float(sel["mix_effect"].sum()),
                "rate_effect": float(sel["rate_effect"].sum()),
                "_n_segments": len(g),
            }
        )
    dims = pd.DataFrame(rows)
    dims["surprise_per_segment"] = dims["surprise"] / dims["n_selected"].clip(lower=1)
    dims["_key"] = -dims[rank_by].round(12)
    dims["_ex"] = ~dims["explained"]
    dims["_jsd"] = -dims["jsd"].round(12)
    dims = dims.sort_values(["_ex", "_key", "n_selected", "_jsd", "_n_segments"], kind="stable")
    dims["nested_in"] = None
    dims["heterogeneity_p"] = np.nan
    dims = _prefer_coarse(dims.reset_index(drop=True), out, result.nesting, alpha)
    dims = _explain_away(dims, out, result, alpha)
    dims["rank"] = np.arange(1, len(dims) + 1)
    dims = dims[ADTRIBUTOR_DIMENSION_COLUMNS].reset_index(drop=True)
    order = {d: i for i, d in enumerate(dims["dimension"])}
    out["_order"] = out["dimension"].map(order)
    out = out.sort_values(["_order", "explanatory_power"], ascending=[True, False], kind="stable")
    return AdtributorResult(
        dimensions=dims,
        segments=out[ADTRIBUTOR_SEGMENT_COLUMNS].reset_index(drop=True),
        ep_threshold=ep_threshold,
        min_segment_ep=min_segment_ep,
    )


def _change_var(
    r0: npt.ArrayLike, ne0: npt.ArrayLike, r1: npt.ArrayLike, ne1: npt.ArrayLike
) -> np.ndarray:
    """Variance of a rate change between two independent samples (effective sizes).

    A 0% or 100% rate has no sampling variance; it is floored at one event's worth.
    """
    r0, ne0, r1, ne1 = (np.asarray(v, dtype=float) for v in (r0, ne0, r1, ne1))
    var = r0 * (1 - r0) / ne0 + r1 * (1 - r1) / ne1
    return np.maximum(var, (1.0 / np.maximum(np.minimum(ne0, ne1), 1)) ** 2)


def _heterogeneity_p(child: pd.DataFrame, links: dict[str, str], parents: Sequence[str]) -> float:
    """Cochran's Q test that the children of each parent changed alike."""
    q_total, df_total = 0.0, 0
    for parent in parents:
        kids = child[child["segment"].map(links) == parent]
        kids = kids[(kids["_neff_base"] > 0) & (kids["_neff_cur"] > 0)]
        if len(kids) < 2:
            continue
        r0 = kids["rate_base"].to_numpy(float)
        r1 = kids["rate_cur"].to_numpy(float)
        var = _change_var(
            r0, kids["_neff_base"].to_numpy(float), r1, kids["_neff_cur"].to_numpy(float)
        )
        w = 1.0 / var
        d = r1 - r0
        dbar = float(np.sum(w * d) / np.sum(w))
        q_total += float(np.sum(w * (d - dbar) ** 2))
        df_total += len(kids) - 1
    return float(sps.chi2.sf(q_total, df_total)) if df_total > 0 else float("nan")


def _prefer_coarse(
    dims: pd.DataFrame,
    segs: pd.DataFrame,
    nesting: Mapping[str, tuple[str, dict[str, str]]],
    alpha: float,
) -> pd.DataFrame:
    """Reorder nested dimensions: the parent first unless the child is sharper.

    The one not preferred moves to just behind the preferred one.
    """
    order = dims["dimension"].tolist()
    for child, (parent, links) in nesting.items():
        if child not in order or parent not in order:
            continue
        c_row = dims.loc[dims["dimension"] == child].iloc[0]
        p_row = dims.loc[dims["dimension"] == parent].iloc[0]
        if not (c_row["explained"] and p_row["explained"]):
            continue
        c_sel = segs[(segs["dimension"] == child) & segs["selected"]]["segment"]
        p_sel = segs[(segs["dimension"] == parent) & segs["selected"]]["segment"].tolist()
        if not set(c_sel.map(links)) <= set(p_sel):
            continue  # the two explanations differ; leave them to surprise
        p_het = _heterogeneity_p(segs[segs["dimension"] == child], links, p_sel)
        idx = dims.index[dims["dimension"] == child][0]
        dims.loc[idx, "nested_in"] = parent
        dims.loc[idx, "heterogeneity_p"] = p_het
        first, second = (child, parent) if p_het < alpha else (parent, child)
        if order.index(first) > order.index(second):
            # The redundant view goes just behind the preferred one, which keeps
            # its own place: a child's surprise, inflated by its finer (smaller,
            # noisier) segments, does not lift the parent past other dimensions.
            order.remove(second)
            order.insert(order.index(first) + 1, second)
    return dims.set_index("dimension").loc[order].reset_index()


def _change_within(
    crossed: pd.DataFrame,
    weighted: bool,
    inner: tuple[str, Sequence[str]],
    outer: tuple[str, Sequence[str]],
    inside: bool,
) -> tuple[float, float]:
    """Rate change and its variance of ``inner``'s segments inside (or outside) ``outer``'s.

    ``inner`` and ``outer`` are (dimension, selected segments); the rate of
    the decisions in the inner set and in (or not in) the outer set is
    pooled per period. NaNs when either period has none.
    """
    (da, sa), (db, sb) = inner, outer
    pair = pairs_from(crossed, [(da, db)])
    if pair is None:
        return float("nan"), float("nan")
    cells = pair[pair["_s0"].isin(list(sa)) & (pair["_s1"].isin(list(sb)) == inside)]
    rate, neff = [], []
    for p in (0, 1):
        den = float(cells[f"sw_{p}" if weighted else f"n_{p}"].sum())
        num = float(cells[f"swy_{p}" if weighted else f"k_{p}"].sum())
        ne = den * den / float(cells[f"sw2_{p}"].sum()) if weighted and den > 0 else den
        if not (den > 0 and ne > 0):
            return float("nan"), float("nan")
        rate.append(num / den)
        neff.append(ne)
    return rate[1] - rate[0], float(_change_var(rate[0], neff[0], rate[1], neff[1]))


def _explain_away(
    dims: pd.DataFrame,
    segs: pd.DataFrame,
    result: DecompositionResult,
    alpha: float,
) -> pd.DataFrame:
    """Promote a dimension whose explanation accounts for the leading one's.

    Two crossed dimensions can explain the same change when the cause is
    concentrated: scam decisions sit mostly in one queue, so a drop on scam
    also shows as a drop in that queue. The cause still moves outside the
    other explanation (scam in the other queues), the bystander does not
    (the queue's other policies). For the leading explained dimension A and
    each later explained dimension B (not nested in each other), with the
    selected segments of each, B moves ahead of A when

    * B's rate changes outside A (one-sided z in the direction of the
      change, significant at `alpha`),
    * A's rate outside B is measured in both periods and does not change
      significantly, and
    * B changed alike inside and outside A (two-sided z of the difference
      not significant): a cause acts wherever it is, while a set that merely
      holds the rest of the market (a model that scores everything) changes
      much more where A is.
    """
    crossed = result.crossed
    dims = dims.copy()
    dims["explains_away"] = None
    dims["outside_p"] = np.nan
    if crossed is None or crossed.empty or not np.isfinite(result.estimate):
        return dims
    sign = float(np.sign(result.estimate)) or 1.0
    nested = {(c, p) for c, (p, _) in result.nesting.items()}
    chosen = {
        d: g.loc[g["selected"], "segment"].tolist()
        for d, g in segs.groupby("dimension", sort=False)
    }
    w = result.weighted

    def one_sided(d: float, v: float) -> float:
        return float(sps.norm.sf(sign * d / math.sqrt(v))) if np.isfinite(d) else float("nan")

    def promotes(top: str, other: str) -> float | None:
        a, b = (top, chosen[top]), (other, chosen[other])
        d_b_out, v_b_out = _change_within(crossed, w, b, a, inside=False)
        d_a_out, v_a_out = _change_within(crossed, w, a, b, inside=False)
        d_b_in, v_b_in = _change_within(crossed, w, b, a, inside=True)
        p_b, p_a = one_sided(d_b_out, v_b_out), one_sided(d_a_out, v_a_out)
        if not (p_b < alpha and p_a >= alpha) or not np.isfinite(d_b_in):
            return None
        z_het = (d_b_in - d_b_out) / math.sqrt(v_b_in + v_b_out)
        return p_b if 2 * sps.norm.sf(abs(z_het)) >= alpha else None

    order = dims["dimension"].tolist()
    explained = set(dims.loc[dims["explained"], "dimension"])
    promoted: dict[str, tuple[str, float]] = {}
    compared: set[frozenset[str]] = set()
    while True:
        cands = [d for d in order if d in explained]
        swap = None
        for other in cands[1:]:
            pair = frozenset((cands[0], other))
            if pair in compared or (cands[0], other) in nested or (other, cands[0]) in nested:
                continue
            compared.add(pair)
            p = promotes(cands[0], other)
            if p is not None:
                swap = (other, p)
                break
        if swap is None:
            break
        other, p = swap
        promoted[other] = (cands[0], p)
        order.remove(other)
        order.insert(order.index(cands[0]), other)
    dims = dims.set_index("dimension").loc[order].reset_index()
    for d, (over, p) in promoted.items():
        dims.loc[dims["dimension"] == d, ["explains_away", "outside_p"]] = [over, p]
    return dims
