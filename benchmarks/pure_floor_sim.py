"""Numpy check behind the pure-stratum floor (issue #17; results/stratified_coverage.md).

Stratified samples with a fixed number of audits per stratum, 20,000 replicates
per design. For each variance rule -- ``raw`` (the plain stratified variance),
``jef`` (a pure stratum as if half an event had the other outcome, Jeffreys) and
``q25`` (a quarter of an event, the library's default) -- it prints the coverage
and the mean width over 3.92 x SD of the estimates, for Clopper-Pearson (``CP``)
and Wilson (``Wil``) at the design effective n. Run::

    .venv/bin/python benchmarks/pure_floor_sim.py
"""

from __future__ import annotations

import numpy as np
import scipy.stats as st

Z = 1.959964
DESIGNS = {  # stratum shares, accuracies, audits
    "two-queue": ((0.7, 0.3), (0.97, 0.80), (35, 60)),
    "small98": ((0.6, 0.4), (0.99, 0.965), (30, 30)),
    "equal": ((0.7, 0.3), (0.97, 0.80), (66, 28)),
    "4strata": ((0.4, 0.3, 0.2, 0.1), (0.99, 0.95, 0.9, 0.75), (24, 30, 40, 40)),
    "4strata99": ((0.4, 0.3, 0.2, 0.1), (0.995, 0.99, 0.98, 0.95), (30, 30, 30, 30)),
    "err1pct": ((0.7, 0.3), (0.005, 0.03), (160, 160)),
    "err1pct_small": ((0.7, 0.3), (0.005, 0.02), (30, 30)),
    "mid": ((0.5, 0.5), (0.9, 0.7), (30, 30)),
    "align": ((0.7, 0.3), (0.95, 0.80), (35, 60)),
}
PSEUDO = {"jef": 0.5, "q25": 0.25}


def intervals(p: np.ndarray, neff: np.ndarray, a: float = 0.025) -> dict[str, tuple]:
    x = p * neff
    with np.errstate(all="ignore"):
        cp = (
            np.where(x > 0, st.beta.ppf(a, x, neff - x + 1), 0.0),
            np.where(x < neff, st.beta.ppf(1 - a, x + 1, neff - x), 1.0),
        )
        c = (p + Z * Z / (2 * neff)) / (1 + Z * Z / neff)
        h = Z / (1 + Z * Z / neff) * np.sqrt(p * (1 - p) / neff + Z * Z / (4 * neff**2))
    return {"CP": cp, "Wil": (c - h, c + h)}


def simulate(shares, acc, nh, reps: int = 20_000, seed: int = 1) -> dict[str, tuple]:
    rng = np.random.default_rng(seed)
    shares, acc, nh = np.array(shares), np.array(acc), np.array(nh)
    truth = shares @ acc
    x = rng.binomial(nh, acc, size=(reps, len(nh)))
    ph = x / nh
    p = (ph * shares).sum(1)
    n = nh.sum()
    v_srs = p * (1 - p) / (n - 1)
    out = {}
    for rule in ("raw", "jef", "q25"):
        pv = ph * (1 - ph)
        if rule in PSEUDO:
            e = PSEUDO[rule]
            pure = (x == 0) | (x == nh)
            pv = np.where(pure, (e / nh) * (1 - e / nh), pv)
        var = (shares**2 * pv * nh / (nh - 1) / nh).sum(1)
        neff = np.where((var > 0) & (v_srs > 0), n * v_srs / np.where(var > 0, var, 1), n)
        for name, (lo, hi) in intervals(p, neff).items():
            cover = np.mean((lo <= truth) & (truth <= hi))
            out[f"{rule}-{name}"] = (cover, np.mean(hi - lo) / (3.92 * p.std()))
    return out


if __name__ == "__main__":
    for design, spec in DESIGNS.items():
        res = simulate(*spec)
        print(design.ljust(14), "  ".join(f"{k}:{c:.3f}/{w:.2f}" for k, (c, w) in res.items()))
