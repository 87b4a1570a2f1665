"""Pandas reference for the design-weighted interval (independent of qualitylab.stats).

Written from the formulas in the docs, unit by unit, with numpy and scipy:
Hajek ratio, stratified linearised variance (Lohr 2010, (3.6) with (9.5) and
§4.3 for domains), a pure stratum's variance as if ``PURE_EVENTS`` of its units
had the other outcome, the design effective n, and Wilson's interval at it.
"""

from __future__ import annotations

import numpy as np
from statsmodels.stats.proportion import proportion_confint

PURE_EVENTS = 0.25


def design_interval(y, w, strata, domain=None, *, fpc=False, confidence_level=0.95):
    """(estimate, ci_low, ci_high, n_eff) of the weighted share of ``y`` in ``domain``.

    Equal weights (one weight for every unit of the domain) give the plain
    share with statsmodels' Wilson interval.
    """
    y = np.asarray(y, float)
    w = np.asarray(w, float)
    strata = np.asarray(strata)
    x = np.ones_like(y) if domain is None else np.asarray(domain, float)
    yd = y * x
    nd = x.sum()
    alpha = 1 - confidence_level
    wd = w[x > 0]
    if np.allclose(wd, wd[0]):
        lo, hi = proportion_confint(yd.sum(), nd, alpha=alpha, method="wilson")
        return yd.sum() / nd, lo, hi, nd
    r = (w * yd).sum() / (w * x).sum()
    var = 0.0
    for h in np.unique(strata):
        m = strata == h
        a = w[m] * (yd[m] - r * x[m])  # zeros outside the domain
        n_h, nd_h = m.sum(), x[m].sum()
        if n_h == 1:
            within = (a**2).sum()
        else:
            within = n_h / (n_h - 1) * ((a - a.mean()) ** 2).sum()
            pure = nd_h >= 1 and (yd[m].sum() == 0 or yd[m].sum() == nd_h)
            if pure:
                e = min(PURE_EVENTS, nd_h / 2)
                mean_w2 = (w[m] ** 2 * x[m]).sum() / nd_h
                within += n_h / (n_h - 1) * mean_w2 * e * (1 - e / nd_h)
        f = n_h / w[m].sum() if fpc else 0.0
        var += (1 - f) * within
    var /= (w * x).sum() ** 2
    v_srs = r * (1 - r) / (nd - 1) if nd > 1 else 0.0
    n_eff = nd * v_srs / var if var > 0 and v_srs > 0 else nd
    lo, hi = proportion_confint(r * n_eff, n_eff, alpha=alpha, method="wilson")
    return r, lo, hi, n_eff
