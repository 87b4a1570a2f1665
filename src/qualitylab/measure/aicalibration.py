"""Calibration of model scores: reliability curve, ECE, MCE and Brier score.

* :func:`calibration_histogram` - the engine step: rows, positives and score
  sums per equal-width score bin.
* :func:`calibration` - the reliability curve and summaries from it.

Both are re-exported by :mod:`qualitylab.aieval`. (The calibration of human
graders against QA is :mod:`qualitylab.calibration`.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import ibis.expr.types as ir
import numpy as np
import pandas as pd

from qualitylab.errors import DataContractError, ParameterError
from qualitylab.measure.aihist import (
    KEY,
    MSG_MISSING_COLUMN,
    MSG_UNLISTED,
    ONE_HIST_HINT,
    as_list,
    bin_index,
    bins_of,
    check_int,
    check_table,
    engine_aggregate,
    warn_undefined,
)
from qualitylab.measure.statbase import check_confidence
from qualitylab.measure.stats import proportion_ci

__all__ = ["CALIBRATION_COLUMNS", "CalibrationResult", "calibration", "calibration_histogram"]

CALIBRATION_COLUMNS = (
    "bin",
    "lower",
    "upper",
    "n",
    "pos",
    "sum_score",
    "sum_score_sq",
    "sum_score_truth",
)


def calibration_histogram(
    table: ir.Table,
    *,
    score: str = "ai_score",
    truth: str = "truth",
    by: Sequence[str] = (),
    n_bins: int = 10,
) -> pd.DataFrame:
    """Per equal-width score bin: rows, positives and score sums, in the engine.

    Parameters
    ----------
    table : ibis.Table
        Scored, labelled rows (see :func:`score_histogram`).
    score, truth : str
        Column names.
    by : sequence of str, default ()
        Segment columns.
    n_bins : int, default 10
        Equal-width bins on [0, 1], left-closed (last bin closed).

    Returns
    -------
    pandas.DataFrame
        Populated bins sorted by ``[*by, bin]``: ``*by, bin, lower, upper, n,
        pos, sum_score, sum_score_sq, sum_score_truth`` (sums of :math:`s`,
        :math:`s^2` and :math:`s y`) - enough for the reliability curve, ECE and
        an exact Brier score. ``attrs["excluded_rows"]`` as in
        :func:`score_histogram`, with the same errors and warnings.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"ai_score": [0.05, 0.15, 0.85, 0.95], "truth": [0, 0, 1, 0]})
    >>> calibration_histogram(t, n_bins=2)[["bin", "n", "pos", "sum_score"]]
       bin  n  pos  sum_score
    0    0  2    0        0.2
    1    1  2    1        1.8
    """
    by = as_list(by)
    n_bins = check_int(n_bins, "n_bins", 1)
    name = check_table(
        table,
        score=score,
        truth=truth,
        weight=None,
        by=by,
        reserved=CALIBRATION_COLUMNS,
        func="calibration_histogram",
    )

    def sums(t: ir.Table) -> dict[str, ir.Scalar]:
        s, y = t["__ql_s"], t["__ql_y"]
        return {
            "n": t.count(),
            "pos": y.sum(),
            "sum_score": s.sum(),
            "sum_score_sq": (s * s).sum(),
            "sum_score_truth": (s * y).sum(),
        }

    agg, excluded = engine_aggregate(
        table,
        score=score,
        truth=truth,
        weight=None,
        by=by,
        key=lambda s: bin_index(s, n_bins),
        sums=sums,
        name=name,
    )
    agg = agg.rename(columns={KEY: "bin"})
    agg["n"], agg["pos"] = agg["n"].astype("int64"), agg["pos"].astype("int64")
    agg["lower"], agg["upper"] = agg["bin"] / n_bins, (agg["bin"] + 1) / n_bins
    out = agg.sort_values([*by, "bin"], kind="mergesort").reset_index(drop=True)
    out = out[[*by, *CALIBRATION_COLUMNS]]
    out.attrs["excluded_rows"] = excluded
    return out


@dataclass(frozen=True)
class CalibrationResult:
    """Reliability curve and calibration summaries of one score distribution.

    Attributes
    ----------
    curve : pandas.DataFrame
        Populated bins: ``bin, lower, upper, n, mean_score, frac_pos, ci_low,
        ci_high`` (Wilson interval of ``frac_pos``).
    ece : float
        Expected calibration error :math:`\\sum_b (n_b/N) |\\bar y_b - \\bar s_b|`.
    mce : float
        Maximum calibration error :math:`\\max_b |\\bar y_b - \\bar s_b|`.
    brier : float
        Brier score :math:`\\frac1N \\sum (s - y)^2` (a loss: lower is better).
    n : int
        Rows used.
    n_bins : int
    confidence_level : float
    """

    curve: pd.DataFrame = field(repr=False)
    ece: float
    mce: float
    brier: float
    n: int
    n_bins: int
    confidence_level: float

    def to_frame(self) -> pd.DataFrame:
        """Long summary: ``metric, value, n`` for ``ece``, ``mce`` and ``brier``."""
        return pd.DataFrame(
            {
                "metric": ["ece", "mce", "brier"],
                "value": [self.ece, self.mce, self.brier],
                "n": [self.n] * 3,
            }
        )


def calibration(
    data: ir.Table | pd.DataFrame,
    *,
    score: str = "ai_score",
    truth: str = "truth",
    n_bins: int = 10,
    confidence_level: float = 0.95,
) -> CalibrationResult:
    """Reliability curve, ECE, MCE and Brier score from engine aggregates.

    Parameters
    ----------
    data : ibis.Table or pandas.DataFrame
        Scored rows, or one segment of :func:`calibration_histogram` (then
        `score`, `truth` and `n_bins` are not used).
    score, truth : str
        Column names for table input.
    n_bins : int, default 10
        Equal-width bins for table input.
    confidence_level : float, default 0.95
        Coverage of the Wilson intervals on each bin's fraction of positives.

    Returns
    -------
    CalibrationResult

    Warns
    -----
    RuntimeWarning
        No rows: every summary is NaN.

    Notes
    -----
    Brier is exact from the per-bin sums,
    :math:`\\frac1N \\sum_b (\\sum s^2 - 2 \\sum s y + \\sum y)`, and equals
    :func:`sklearn.metrics.brier_score_loss` (tested to 1e-12). The curve equals
    :func:`sklearn.calibration.calibration_curve` with ``strategy="uniform"`` on
    the populated bins, except that a score exactly on an inner edge belongs to
    the upper bin here and to the lower one in scikit-learn. For several
    segments, call this on each segment of :func:`calibration_histogram`.

    Examples
    --------
    >>> import ibis
    >>> t = ibis.memtable({"ai_score": [0.05, 0.15, 0.85, 0.95], "truth": [0, 0, 1, 0]})
    >>> res = calibration(t, n_bins=2)
    >>> round(res.brier, 4), round(res.ece, 4)
    (0.2375, 0.25)
    >>> res.curve[["lower", "n", "mean_score", "frac_pos"]]
       lower  n  mean_score  frac_pos
    0    0.0  2         0.1       0.0
    1    0.5  2         0.9       0.5
    """
    confidence_level = check_confidence(confidence_level)
    if isinstance(data, pd.DataFrame):
        missing = [c for c in CALIBRATION_COLUMNS if c not in data.columns]
        if missing:
            raise DataContractError(
                MSG_MISSING_COLUMN.format(
                    table="data", column=missing[0], available=list(data.columns)
                ),
                table="data",
                column=missing[0],
                check="missing_column",
            )
        extra = [c for c in data.columns if c not in CALIBRATION_COLUMNS]
        if extra:
            raise ParameterError(
                MSG_UNLISTED.format(extra=extra, by=[], hint=ONE_HIST_HINT), key="by"
            )
        agg = data.sort_values("bin", kind="mergesort").reset_index(drop=True)
        n_bins = bins_of(agg)
    else:
        n_bins = check_int(n_bins, "n_bins", 1)
        agg = calibration_histogram(data, score=score, truth=truth, n_bins=n_bins)
    n_b = agg["n"].to_numpy(dtype=float)
    total = float(n_b.sum())
    mean_score = agg["sum_score"].to_numpy(dtype=float) / n_b
    frac_pos = agg["pos"].to_numpy(dtype=float) / n_b
    low, high = proportion_ci(
        agg["pos"].to_numpy(dtype=float), n_b, confidence_level=confidence_level
    )
    curve = pd.DataFrame(
        {
            "bin": agg["bin"].astype("int64"),
            "lower": agg["lower"],
            "upper": agg["upper"],
            "n": agg["n"].astype("int64"),
            "mean_score": mean_score,
            "frac_pos": frac_pos,
            "ci_low": np.atleast_1d(low),
            "ci_high": np.atleast_1d(high),
        }
    )
    if not total > 0:
        warn_undefined("calibration", "no rows")
        ece = mce = brier = math.nan
    else:
        gap = np.abs(frac_pos - mean_score)
        ece = float(np.sum(n_b * gap) / total)
        mce = float(gap.max())
        sq = agg["sum_score_sq"].sum() - 2.0 * agg["sum_score_truth"].sum() + agg["pos"].sum()
        brier = float(sq / total)
    return CalibrationResult(
        curve=curve,
        ece=ece,
        mce=mce,
        brier=brier,
        n=int(total),
        n_bins=n_bins,
        confidence_level=confidence_level,
    )
