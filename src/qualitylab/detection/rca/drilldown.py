"""The drill-down: the smallest sets of segment pairs that explain a change.

:func:`drill_down` crosses the best dimensions of an Adtributor ranking
two by two and runs the decomposition and the ranking on the
cross-classification.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.detection.rca.decomposition import (
    DecompositionResult,
    decompose_wide,
    pairs_from,
)
from qualitylab.detection.rca.engine import (
    PAIR_KEYS,
    aggregate,
    filter_expr,
    metric_table,
    periods_wide,
)
from qualitylab.detection.rca.ranking import (
    AdtributorResult,
    adtributor,
    ep_and_surprise,
    select_segments,
)
from qualitylab.detection.rca.vocabulary import METRIC_SPECS, check_dimensions, check_unit_interval
from qualitylab.errors import ParameterError, QualityLabError

__all__ = ["DRILL_DOWN_COLUMNS", "drill_down"]

DRILL_DOWN_COLUMNS = [
    "pair_rank",
    "dimension_a",
    "segment_a",
    "dimension_b",
    "segment_b",
    "explanatory_power",
    "surprise",
    "cumulative_ep",
    "selected",
    "n_selected",
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


def drill_down(
    ds: Dataset,
    result: DecompositionResult,
    *,
    pairs: Sequence[tuple[str, str]] | None = None,
    ranking: AdtributorResult | None = None,
    top_dimensions: int = 3,
    ep_threshold: float = 0.8,
) -> pd.DataFrame:
    """The smallest sets of segment pairs that explain a change.

    Parameters
    ----------
    ds : Dataset
        The dataset `result` was computed on.
    result : DecompositionResult
    pairs : sequence of (str, str), optional
        Pairs of dimensions to cross; by default every pair among the
        `top_dimensions` best dimensions of `ranking`, leaving out pairs where
        one dimension is nested in the other (site × vendor adds nothing).
    ranking : AdtributorResult, optional
        Defaults to ``adtributor(result)``.
    top_dimensions : int, default 3
    ep_threshold : float, default 0.8
        Explanatory power the selected pairs must reach together.

    Returns
    -------
    pandas.DataFrame
        :data:`DRILL_DOWN_COLUMNS`, one row per pair of dimensions × pair of
        segments. Pairs of dimensions are ranked (``pair_rank``) by the number
        of segment pairs needed (``n_selected``; 0 when the threshold cannot
        be reached, ranked last), then by the surprise of the selected set;
        within a pair, rows go by decreasing explanatory power and
        ``selected`` marks the set.

    Notes
    -----
    The sums per pair of segments come from ``result.crossed`` when
    :func:`decompose` computed them (the default), else from one engine query
    grouping by each pair of dimensions and period; the shift-share,
    explanatory power and surprise are those of
    :func:`decompose` and :func:`adtributor` on the cross-classification, so
    the contributions of each pair of dimensions add up exactly to the change.
    """
    ep_threshold = check_unit_interval(ep_threshold, "ep_threshold", closed=True)
    spec = METRIC_SPECS[result.metric]
    chosen = pairs is None
    if pairs is None:
        if not isinstance(top_dimensions, int) or top_dimensions < 2:
            raise ParameterError(
                f"top_dimensions must be an integer >= 2; got {top_dimensions!r}",
                key="top_dimensions",
            )
        ranking = ranking or adtributor(result)
        top = ranking.dimensions["dimension"].tolist()[:top_dimensions]
        nested = {(c, p) for c, (p, _) in result.nesting.items()}
        pairs = [
            (a, b)
            for a, b in itertools.combinations(top, 2)
            if (a, b) not in nested and (b, a) not in nested
        ]
    pairs = [tuple(p) for p in pairs]
    for p in pairs:
        if len(p) != 2 or p[0] == p[1]:
            raise ParameterError(f"each pair must name two different dimensions; got {p!r}")
        check_dimensions(list(p), spec)
    if not pairs and chosen:
        raise QualityLabError(
            f"no pair of dimensions to cross among {', '.join(result.dimensions)} "
            "(a pair nested in each other adds nothing)"
        )
    if not pairs:
        raise ParameterError(
            "no pair of dimensions to cross; give pairs= or a larger top_dimensions",
            key="pairs",
        )
    wide = pairs_from(result.crossed, pairs)
    if wide is None:
        t = metric_table(
            ds, spec, result.market, (result.baseline, result.current), result.qa_source
        )
        if result.where:
            t = t.filter(filter_expr(t, result.where, spec, "where"))
        wide = periods_wide(aggregate(t, pairs, ds=ds), PAIR_KEYS)
    out = decompose_wide(wide, result.weighted, ["_d0", "_d1"], result.mix)
    sums = out[["_num_base", "_num_cur", "_den_base", "_den_cur"]].to_numpy(float)
    out = ep_and_surprise(out, sums, spec, result.estimate, ["_d0", "_d1"])
    out = select_segments(out, ["_d0", "_d1"], ep_threshold, 0.0)
    out = out.rename(
        columns={"_d0": "dimension_a", "_s0": "segment_a", "_d1": "dimension_b", "_s1": "segment_b"}
    )
    grp = out.groupby(["dimension_a", "dimension_b"], sort=False)
    n_sel = grp["selected"].transform("sum").astype("int64")
    sel_surprise = out["surprise"].where(out["selected"], 0.0)
    out["n_selected"] = n_sel
    out["_s"] = sel_surprise.groupby([out["dimension_a"], out["dimension_b"]]).transform("sum")
    summary = (
        out.groupby(["dimension_a", "dimension_b"], sort=False)
        .agg(n_selected=("n_selected", "first"), s=("_s", "first"))
        .reset_index()
    )
    summary["_none"] = summary["n_selected"] == 0
    summary["_neg_s"] = -summary["s"].round(12)
    summary = summary.sort_values(["_none", "n_selected", "_neg_s"], kind="stable")
    summary["pair_rank"] = np.arange(1, len(summary) + 1)
    out = out.merge(summary[["dimension_a", "dimension_b", "pair_rank"]], how="left")
    out = out.sort_values(
        ["pair_rank", "explanatory_power"], ascending=[True, False], kind="stable"
    )
    return out[DRILL_DOWN_COLUMNS].reset_index(drop=True)
