"""Red-team evaluation: how robust is the AI model to adversarial content?

The ``red_team`` table holds adversarial test items scored by the model: each
violating item (``policy`` is the true policy) is either a clean control
(``attack == "none"``) or disguised by an attack (``leetspeak``,
``code_switching``, ``coded_symbols``...); items with ``policy == "none"`` are
clean negatives. :func:`red_team_evaluation` measures the model's recall per
attack (optionally per language, model...) at a score threshold, compares it
with the clean controls of the same segment (Newcombe interval, one-sided test,
Holm-corrected across all comparisons), flags the attacks that significantly
lower recall, ranks the attacks by robustness and reports the false positive
rate on clean negatives.

Counts are aggregated in the engine; the statistics run on the aggregates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from qualitylab.data.sources import Dataset
from qualitylab.errors import QualityLabError
from qualitylab.measure.scope import (
    METRIC_COLUMNS,
    Period,
    as_date,
    check_by,
    confidence,
    local_date,
    min_n,
    timezones,
)
from qualitylab.measure.stats import (
    adjust_pvalues,
    compare_proportions,
    proportion_ci,
    proportion_difference_ci,
)

__all__ = [
    "CLEAN",
    "FPR_COLUMNS",
    "RECALL_COLUMNS",
    "RED_TEAM_GRAINS",
    "RedTeamEvaluation",
    "red_team_evaluation",
]

#: The ``attack`` value of clean controls.
CLEAN = "none"
#: Grains :func:`red_team_evaluation` can split by (``attack`` is always one).
RED_TEAM_GRAINS = ("market", "language", "ai_model", "policy")
#: Columns of :attr:`RedTeamEvaluation.recall` after the grain.
RECALL_COLUMNS = [
    "attack",
    "n",
    "hits",
    "recall",
    "ci_low",
    "ci_high",
    "clean_n",
    "clean_recall",
    "difference",
    "diff_ci_low",
    "diff_ci_high",
    "pvalue",
    "pvalue_holm",
    "flagged",
    "rank",
]
#: Columns of :attr:`RedTeamEvaluation.fpr` after the grain.
FPR_COLUMNS = ["n", "false_positives", "fpr", "ci_low", "ci_high"]


@dataclass(frozen=True)
class RedTeamEvaluation:
    """Recall per attack vs clean controls, and the false positive rate.

    Attributes
    ----------
    by : tuple of str
        The grain besides ``attack``.
    threshold : float
        Score at or above which the model flags an item.
    confidence_level : float
    min_n : int
        Segments with fewer items are ``small_n`` in :meth:`to_frame`.
    recall : pandas.DataFrame
        ``[*by, *RECALL_COLUMNS]``: per segment and attack, violating items
        ``n``, flagged ``hits``, ``recall`` with its Wilson interval; the clean
        controls' ``clean_n`` and ``clean_recall`` in the same segment;
        ``difference`` = recall - clean recall with Newcombe's interval; the
        one-sided ``pvalue`` (recall lower than clean) and its Holm adjustment
        across every attack x segment; ``flagged`` when the adjusted p-value is
        below ``1 - confidence_level`` and the difference negative; ``rank``
        of robustness within the segment (1 = highest recall). The clean row
        (``attack == "none"``) has no comparison and is never flagged.
    fpr : pandas.DataFrame
        ``[*by, *FPR_COLUMNS]``: clean negatives (``policy == "none"``) and the
        share the model flags, with a Wilson interval.
    """

    by: tuple[str, ...]
    threshold: float
    confidence_level: float
    min_n: int
    recall: pd.DataFrame
    fpr: pd.DataFrame

    @property
    def flagged(self) -> pd.DataFrame:
        """The attacks whose recall is significantly lower than clean controls."""
        return self.recall[self.recall["flagged"]].reset_index(drop=True)

    @property
    def ranking(self) -> pd.DataFrame:
        """Attacks from most to least robust, per segment (clean controls left out)."""
        r = self.recall[self.recall["attack"] != CLEAN]
        cols = [*self.by, "rank", "attack", "recall", "difference", "flagged"]
        return r.sort_values([*self.by, "rank", "attack"], kind="stable")[cols].reset_index(
            drop=True
        )

    def to_frame(self) -> pd.DataFrame:
        """The metric vocabulary: ``red_team_recall`` per attack and ``ai_fpr``.

        Returns
        -------
        pandas.DataFrame
            ``[*by, attack, metric, value, n, ci_low, ci_high, small_n]``; the
            FPR rows carry ``attack = "none"``.
        """
        rec = self.recall[[*self.by, "attack", "recall", "n", "ci_low", "ci_high"]].rename(
            columns={"recall": "value"}
        )
        rec.insert(len(self.by) + 1, "metric", "red_team_recall")
        fpr = self.fpr[[*self.by, "fpr", "n", "ci_low", "ci_high"]].rename(columns={"fpr": "value"})
        fpr.insert(len(self.by), "attack", CLEAN)
        fpr.insert(len(self.by) + 1, "metric", "ai_fpr")
        out = pd.concat([rec, fpr], ignore_index=True)
        out["small_n"] = out["n"] < self.min_n
        return out[[*self.by, "attack", *METRIC_COLUMNS]]


def red_team_evaluation(
    ds: Dataset,
    *,
    market: str | None = None,
    by: Sequence[str] | str = (),
    start: date | str | None = None,
    end: date | str | None = None,
    threshold: float | None = None,
    ai_model: str | None = None,
    confidence_level: float | None = None,
) -> RedTeamEvaluation:
    """Model recall per attack type vs clean controls, FPR, and a robustness ranking.

    Parameters
    ----------
    ds : Dataset
        Needs ``red_team``.
    market : str, optional
        One market; all markets otherwise.
    by : sequence of str
        Extra grain from ``market, language, ai_model, policy``.
    start, end : date or ISO string, optional
        Items created on these market-local dates (default: all items).
    threshold : float, optional
        Flag threshold; default the market's ``ai_threshold`` (the shared
        default without a market).
    ai_model : str, optional
        Keep one model version.
    confidence_level : float, optional

    Returns
    -------
    RedTeamEvaluation

    Raises
    ------
    QualityLabError
        Without a ``red_team`` table or items in the selection.

    Notes
    -----
    Recall = flagged / violating items (``ai_score >= threshold``), Wilson
    intervals. Each attack is compared with the clean controls of its segment:
    Newcombe's hybrid score interval for the difference and a one-sided test of
    :func:`qualitylab.stats.compare_proportions` (``alternative="less"``, z or
    Fisher's exact test with small counts). The p-values of all attack x
    segment comparisons form one family, adjusted by Holm's step-down method.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.data.sources import open_dataset
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=28, scale="small", seed=1)
    ...     ev = red_team_evaluation(open_dataset(tmp), market="SG")
    >>> ev.ranking[["rank", "attack", "flagged"]].to_dict("records")
    ... # doctest: +NORMALIZE_WHITESPACE
    [{'rank': 1, 'attack': 'leetspeak', 'flagged': True},
     {'rank': 2, 'attack': 'coded_symbols', 'flagged': True},
     {'rank': 3, 'attack': 'code_switching', 'flagged': True}]
    """
    if not ds.has("red_team"):
        raise QualityLabError("red_team is not in the dataset; red-team evaluation needs it")
    cols = check_by(by, RED_TEAM_GRAINS)
    cl = confidence_level or confidence(ds, market)
    if threshold is None:
        threshold = (
            ds.params.market(market).ai_threshold if market else ds.params.defaults.ai_threshold
        )
    if not 0.0 <= threshold <= 1.0:
        raise QualityLabError(f"threshold must be in [0, 1]; got {threshold!r}")
    tzs = timezones(ds, market)
    rt = ds.table("red_team")
    rt = rt.filter(rt.market == market) if market else rt.filter(rt.market.isin(list(tzs)))
    if ai_model is not None:
        rt = rt.filter(rt.ai_model == ai_model)
    s, e = as_date(start), as_date(end)
    if s is not None or e is not None:
        period = Period(s or date(1970, 1, 1), e or date(2100, 1, 1))
        rt = rt.mutate(__d=local_date(rt, "created_at", tzs, period))
        rt = rt.filter(rt.__d.between(period.start, period.end))
    rt = rt.mutate(__viol=rt.policy != "none", __hit=(rt.ai_score >= threshold).cast("int64"))
    agg = (
        rt.group_by([*cols, "attack", "__viol"])
        .aggregate(n=rt.count(), hits=rt.__hit.sum())
        .to_pandas()
    )
    if agg.empty:
        where = f"market {market}" if market else f"markets {', '.join(tzs)}"
        when = f" in {s or '...'}..{e or '...'}" if (s or e) else ""
        model = f" scored by {ai_model}" if ai_model is not None else ""
        raise QualityLabError(f"no red_team items for {where}{when}{model}")
    viol = agg[agg["__viol"].astype(bool)].drop(columns="__viol")
    neg = agg[~agg["__viol"].astype(bool)].drop(columns="__viol")

    rec = viol.copy()
    n = rec["n"].to_numpy(float)
    k = rec["hits"].to_numpy(float)
    rec["recall"] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    rec["ci_low"], rec["ci_high"] = proportion_ci(k, n, confidence_level=cl)
    clean = rec[rec["attack"] == CLEAN][[*cols, "n", "hits", "recall"]].rename(
        columns={"n": "clean_n", "hits": "clean_hits", "recall": "clean_recall"}
    )
    rec = (
        rec.merge(clean, on=cols, how="left")
        if cols
        else rec.assign(**{c: clean[c].iloc[0] if len(clean) else np.nan for c in clean})
    )
    rec["clean_n"] = rec["clean_n"].fillna(0.0).astype(float)
    rec["clean_hits"] = rec["clean_hits"].fillna(0.0).astype(float)
    attacked = (rec["attack"] != CLEAN) & (rec["clean_n"] > 0) & (rec["n"] > 0)
    diff_lo = np.full(len(rec), np.nan)
    diff_hi = np.full(len(rec), np.nan)
    pvals = np.full(len(rec), np.nan)
    idx = np.flatnonzero(attacked.to_numpy())
    if len(idx):
        sel = rec.iloc[idx]
        lo, hi = proportion_difference_ci(
            sel["hits"].to_numpy(float),
            sel["n"].to_numpy(float),
            sel["clean_hits"].to_numpy(float),
            sel["clean_n"].to_numpy(float),
            confidence_level=cl,
        )
        diff_lo[idx], diff_hi[idx] = lo, hi
        for i in idx:
            r = rec.iloc[i]
            pvals[i] = compare_proportions(
                r["hits"], r["n"], r["clean_hits"], r["clean_n"], alternative="less"
            ).pvalue
    rec["difference"] = np.where(attacked, rec["recall"] - rec["clean_recall"], np.nan)
    rec["diff_ci_low"], rec["diff_ci_high"] = diff_lo, diff_hi
    rec["pvalue"] = pvals
    rec["pvalue_holm"] = adjust_pvalues(pvals, method="holm")
    rec["flagged"] = (rec["pvalue_holm"] < 1 - cl) & (rec["difference"] < 0)
    ranked = rec["attack"] != CLEAN
    rec["rank"] = pd.array([pd.NA] * len(rec), dtype="Int64")
    if ranked.any():
        part = rec[ranked]
        grp = part.groupby(cols, sort=False)["recall"] if cols else part["recall"]
        rec.loc[ranked, "rank"] = grp.rank(ascending=False, method="min").astype("int64")
    rec["n"] = rec["n"].astype(float)
    rec["hits"] = rec["hits"].astype(float)
    rec = rec.sort_values([*cols, "attack"], kind="stable").reset_index(drop=True)

    fpr = (
        neg.groupby(cols, sort=True)[["n", "hits"]].sum().reset_index()
        if cols
        else (neg[["n", "hits"]].sum().to_frame().T)
    )
    nn = fpr["n"].to_numpy(float)
    kk = fpr["hits"].to_numpy(float)
    fpr = fpr.rename(columns={"hits": "false_positives"})
    fpr["fpr"] = np.where(nn > 0, kk / np.maximum(nn, 1), np.nan)
    fpr["ci_low"], fpr["ci_high"] = proportion_ci(kk, nn, confidence_level=cl)
    fpr["n"] = nn
    fpr["false_positives"] = kk
    return RedTeamEvaluation(
        by=tuple(cols),
        threshold=float(threshold),
        confidence_level=cl,
        min_n=min_n(ds, market),
        recall=rec[[*cols, *RECALL_COLUMNS]],
        fpr=fpr[[*cols, *FPR_COLUMNS]].reset_index(drop=True),
    )
