"""Multiplicity: p-values adjusted for the number of tests (Holm, Bonferroni, BH).

:func:`adjust_pvalues` is re-exported by :mod:`qualitylab.stats`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from qualitylab.errors import ParameterError
from qualitylab.measure.statbase import MSG_RANGE, as_float_array, check_choice, first_bad

__all__ = ["adjust_pvalues"]

ADJUST_METHODS = ("holm", "bonferroni", "fdr_bh")


def adjust_pvalues(p: npt.ArrayLike, *, method: str = "holm") -> np.ndarray:
    """Adjust p-values for multiple comparisons.

    Parameters
    ----------
    p : array_like
        P-values in [0, 1], any shape. NaNs pass through as NaN and do not
        count towards the number of tests m.
    method : {"holm", "bonferroni", "fdr_bh"}, default "holm"
        Family-wise control (Holm 1979 step-down, Bonferroni) or false
        discovery rate (Benjamini & Hochberg 1995).

    Returns
    -------
    ndarray
        Adjusted p-values, same shape as `p`, capped at 1.

    Notes
    -----
    With sorted :math:`p_{(1)} \\le \\dots \\le p_{(m)}`:
    Bonferroni :math:`\\min(1, m p_i)`;
    Holm :math:`\\tilde p_{(i)} = \\max_{j \\le i} \\min(1, (m-j+1) p_{(j)})`;
    BH :math:`\\tilde p_{(i)} = \\min_{j \\ge i} \\min(1, m p_{(j)}/j)`.
    Tested against statsmodels ``multipletests``.

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03, 0.005, 0.20], method="holm")
    array([0.04 , 0.09 , 0.09 , 0.025, 0.2  ])
    """
    method = check_choice(method, ADJUST_METHODS, "method")
    arr = as_float_array(p, "p")
    flat = arr.ravel()
    ok = ~np.isnan(flat)
    vals = flat[ok]
    if np.any((vals < 0) | (vals > 1)):
        bad = (vals < 0) | (vals > 1)
        raise ParameterError(
            MSG_RANGE.format(name="p", interval="[0, 1]", value=first_bad(vals, bad)), key="p"
        )
    m = vals.size
    out = np.full(flat.shape, np.nan)
    if m == 0:
        return out.reshape(arr.shape)
    if method == "bonferroni":
        adj = np.minimum(1.0, vals * m)
    else:
        order = np.argsort(vals, kind="mergesort")
        sorted_p = vals[order]
        rank = np.arange(1, m + 1)
        if method == "holm":
            adj_sorted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * sorted_p))
        else:  # fdr_bh
            adj_sorted = np.minimum.accumulate((m * sorted_p / rank)[::-1])[::-1]
            adj_sorted = np.minimum(1.0, adj_sorted)
        adj = np.empty(m)
        adj[order] = adj_sorted
    out[ok] = adj
    return out.reshape(arr.shape)
