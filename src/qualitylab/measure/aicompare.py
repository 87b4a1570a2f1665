"""Model B against model A: precision, recall, FPR at a threshold, and AUC.

:func:`compare_models` (re-exported by :mod:`qualitylab.aieval`) compares two
score histograms with Newcombe intervals, z-tests and Holm's adjustment.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats

from qualitylab.measure.aihist import ONE_HIST_HINT, check_hist, snap_threshold, warn_undefined
from qualitylab.measure.aithresholds import auc_counts, counts_at_hist, with_rates
from qualitylab.measure.statbase import check_confidence
from qualitylab.measure.stats import adjust_pvalues, proportion_difference_ci

__all__ = ["COMPARE_COLUMNS", "compare_models"]

COMPARED_METRICS = ("ai_precision", "ai_recall", "ai_fpr", "ai_auc")

COMPARE_COLUMNS = (
    "metric",
    "value_a",
    "value_b",
    "difference",
    "ci_low",
    "ci_high",
    "n_a",
    "n_b",
    "statistic",
    "pvalue",
    "pvalue_holm",
    "significant",
)


def _two_proportion_z(c1: float, n1: float, c2: float, n2: float) -> tuple[float, float]:
    """Pooled two-proportion z statistic and two-sided p-value for p1 - p2."""
    if not (n1 > 0 and n2 > 0):
        return math.nan, math.nan
    p1, p2 = c1 / n1, c2 / n2
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    if se == 0.0:
        return (0.0, 1.0) if p1 == p2 else (math.copysign(math.inf, p1 - p2), 0.0)
    z = (p1 - p2) / se
    return z, float(2.0 * stats.norm.sf(abs(z)))


def _hanley_mcneil_se(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley & McNeil (1982) standard error of an AUC."""
    q1, q2 = auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc)
    var = (auc * (1.0 - auc) + (n_pos - 1.0) * (q1 - auc**2) + (n_neg - 1.0) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(var, 0.0))


def compare_models(
    hist_a: pd.DataFrame,
    hist_b: pd.DataFrame,
    *,
    threshold: float,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Model B against model A: precision, recall, FPR at a threshold, and AUC.

    Parameters
    ----------
    hist_a, hist_b : pandas.DataFrame
        Score histograms (one segment each) of the two models, from
        :func:`score_histogram` with the same `bins`.
    threshold : float
        Common threshold, a lower bin edge of both histograms.
    confidence_level : float, default 0.95
        Coverage of the difference intervals; a difference is ``significant``
        when its Holm-adjusted p-value is below ``1 - confidence_level``.

    Returns
    -------
    pandas.DataFrame
        One row per metric ``ai_precision, ai_recall, ai_fpr, ai_auc``:
        ``metric, value_a, value_b, difference (B - A), ci_low, ci_high, n_a,
        n_b, statistic (z), pvalue, pvalue_holm, significant``. ``n`` is the
        denominator in rows (predicted positives, actual positives, actual
        negatives, all rows for AUC). Undefined metrics give NaN rows that do
        not count towards the Holm family.

    Notes
    -----
    The two histograms are treated as **independent** samples (e.g. two model
    versions on different periods or traffic splits). Two models scored on the
    same items are positively correlated, so these intervals and tests are then
    conservative; a paired analysis (McNemar on the joint 2x2) needs the rows.

    * Proportions: Newcombe (1998) hybrid score interval (method 10) from
      Wilson limits, :func:`qualitylab.stats.proportion_difference_ci`, and the
      pooled two-proportion z-test. Weighted histograms use Kish effective
      sizes.
    * AUC: Hanley & McNeil (1982) standard error from the AUC and the class
      sizes, :math:`SE_d = \\sqrt{SE_A^2 + SE_B^2}`, Wald interval and z-test.
    * Holm (1979) step-down adjustment across the metrics compared
      (:func:`qualitylab.stats.adjust_pvalues`). FNR (1 - recall) and F1 are
      not compared: FNR repeats recall's test, F1 has no closed-form test.

    Examples
    --------
    >>> import pandas as pd
    >>> a = pd.DataFrame({"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0],
    ...                   "pos": [100, 300, 600], "neg": [4000, 300, 100]})
    >>> b = pd.DataFrame({"lower": [0.1, 0.5, 0.9], "upper": [0.2, 0.6, 1.0],
    ...                   "pos": [50, 250, 700], "neg": [4200, 150, 50]})
    >>> res = compare_models(a, b, threshold=0.5)
    >>> res[["metric", "difference", "significant"]].round(3)
             metric  difference  significant
    0  ai_precision       0.134         True
    1     ai_recall       0.050         True
    2        ai_fpr      -0.045         True
    3        ai_auc       0.041         True
    """
    confidence_level = check_confidence(confidence_level)
    ha = check_hist(hist_a, [], hint=ONE_HIST_HINT, name="hist_a")
    hb = check_hist(hist_b, [], hint=ONE_HIST_HINT, name="hist_b")
    ta, tb = snap_threshold(threshold, ha), snap_threshold(threshold, hb)
    ra = with_rates(counts_at_hist(ha, ta, []), confidence_level).iloc[0]
    rb = with_rates(counts_at_hist(hb, tb, []), confidence_level).iloc[0]
    rows: list[dict[str, Any]] = []
    for metric, num, den in (
        ("ai_precision", "tp", ("tp", "fp")),
        ("ai_recall", "tp", ("tp", "fn")),
        ("ai_fpr", "fp", ("fp", "tn")),
    ):
        eff = []
        for r in (ra, rb):
            d = r[den[0]] + r[den[1]]
            d_w2 = r[f"{den[0]}_w2"] + r[f"{den[1]}_w2"]
            n_eff = d if d_w2 == d else (d * d / d_w2 if d_w2 > 0 else 0.0)
            p = r[num] / d if d > 0 else math.nan
            eff.append((p, n_eff, r[f"n_{den[0]}"] + r[f"n_{den[1]}"]))
        (pa, na, rows_a), (pb, nb, rows_b) = eff
        if na > 0 and nb > 0:
            low, high = proportion_difference_ci(
                pb * nb, nb, pa * na, na, confidence_level=confidence_level
            )
            z, pvalue = _two_proportion_z(pb * nb, nb, pa * na, na)
        else:
            low = high = z = pvalue = math.nan
        rows.append(
            {"metric": metric, "value_a": pa, "value_b": pb, "difference": pb - pa,
             "ci_low": low, "ci_high": high, "n_a": int(rows_a), "n_b": int(rows_b),
             "statistic": z, "pvalue": pvalue}
        )  # fmt: skip
    auc_a, p_a, n_a, ep_a, en_a = auc_counts(ha)
    auc_b, p_b, n_b, ep_b, en_b = auc_counts(hb)
    z_crit = float(stats.norm.isf((1.0 - confidence_level) / 2.0))
    if p_a > 0 and n_a > 0 and p_b > 0 and n_b > 0:
        se = math.hypot(_hanley_mcneil_se(auc_a, ep_a, en_a), _hanley_mcneil_se(auc_b, ep_b, en_b))
        d = auc_b - auc_a
        if se > 0:
            z = d / se
            pvalue = float(2.0 * stats.norm.sf(abs(z)))
        else:
            z, pvalue = (0.0, 1.0) if d == 0 else (math.copysign(math.inf, d), 0.0)
        low, high = d - z_crit * se, d + z_crit * se
    else:
        auc_a = auc_a if p_a > 0 and n_a > 0 else math.nan
        auc_b = auc_b if p_b > 0 and n_b > 0 else math.nan
        d, low, high, z, pvalue = auc_b - auc_a, math.nan, math.nan, math.nan, math.nan
    rows.append(
        {"metric": "ai_auc", "value_a": auc_a, "value_b": auc_b, "difference": d,
         "ci_low": low, "ci_high": high, "n_a": int(ha["n_pos"].sum() + ha["n_neg"].sum()),
         "n_b": int(hb["n_pos"].sum() + hb["n_neg"].sum()), "statistic": z, "pvalue": pvalue}
    )  # fmt: skip
    out = pd.DataFrame(rows)
    for _, r in out.loc[out["pvalue"].isna()].iterrows():
        warn_undefined(f"{r['metric']} difference", "a model has a zero denominator")
    out["pvalue_holm"] = adjust_pvalues(out["pvalue"].to_numpy(dtype=float), method="holm")
    out["significant"] = out["pvalue_holm"] < 1.0 - confidence_level
    return out[list(COMPARE_COLUMNS)]
