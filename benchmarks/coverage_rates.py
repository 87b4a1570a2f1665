"""Coverage studies of the rate intervals (issue #17): Wilson, design-weighted, Newcombe, AI.

Each study calls the library code that makes the interval users see and
returns one :class:`coverage.Row` per (interval, design):

- ``wilson``: :func:`qualitylab.stats.proportion_ci` (Wilson) on simple
  random samples, numpy binomial draws; truth = p.
- ``design``: accuracy and error rates through
  :func:`qualitylab.metrics.qa_metrics` (``strata="auto"``), one vendor per
  replicate and one engine call per design (as
  ``benchmarks/stratified_coverage.py``); the level of the scorecard's change
  test on the same intervals (pairs of vendors of one design: a true null);
  and :func:`qualitylab.metrics.qa_alignment` on decisions audited by vendor
  and (stratified) internal QA. Truth = the population rate of the design.
- ``newcombe``: :func:`qualitylab.stats.proportion_difference_ci` (Newcombe's
  hybrid score interval, also the interval of ``compare_proportions``);
  truth = p1 - p2.
- ``ai``: AI precision, recall and FPR from stratified audits through
  :func:`qualitylab.aieval.ai_metrics`; truth = the design's population rates,
  computed analytically.

Run through the driver::

    .venv/bin/python benchmarks/coverage.py --only wilson,design,newcombe,ai --replicates 2000
"""

from __future__ import annotations

import importlib.util
import math
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats as sps

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
try:
    from coverage import Row
except ImportError:  # the coverage.py package (pip "coverage") was imported first
    _spec = importlib.util.spec_from_file_location("_coverage_driver", HERE / "coverage.py")
    _driver = importlib.util.module_from_spec(_spec)
    sys.modules["_coverage_driver"] = _driver
    _spec.loader.exec_module(_driver)
    Row = _driver.Row

MARKET = "SG"
START = "2026-03-02"
T0 = pd.Timestamp("2026-03-02 02:00", tz="UTC")
NOMINAL = 0.95
TOL = 0.015


# --------------------------------------------------------------------------- #
# shared: one row from per-replicate intervals
# --------------------------------------------------------------------------- #
def _diagnosis(est: np.ndarray, low: np.ndarray, high: np.ndarray, truth: np.ndarray) -> str:
    """Why a row is off, in numbers: centre, width against the spread, side of the misses."""
    ok = np.isfinite(est) & np.isfinite(low) & np.isfinite(high)
    est, low, high, truth = est[ok], low[ok], high[ok], truth[ok]
    se = float(np.std(est, ddof=1)) if est.size > 1 else math.nan
    bias = float(np.mean(est - truth))
    ratio = float(np.mean(high - low)) / (3.92 * se) if se > 0 else math.nan
    below = float(np.mean(truth < low))  # interval entirely above the truth
    above = float(np.mean(truth > high))  # interval entirely below the truth
    parts = []
    if se > 0 and abs(bias) > 0.25 * se:
        parts.append(
            f"off-centre: mean estimate {np.mean(est):.4f} vs truth {np.mean(truth):.4f} "
            f"(bias {bias:+.4f} = {bias / se:+.2f} SE)"
        )
    if np.isfinite(ratio):
        word = "too wide" if ratio > 1.1 else "too narrow" if ratio < 0.9 else "width ~ spread"
        parts.append(f"{word}: mean width / (3.92 SD) = {ratio:.2f}")
    parts.append(
        f"misses: {below:.1%} with the interval above the truth, {above:.1%} below (2.5% each "
        "is nominal)"
    )
    return "; ".join(parts)


def _pure_split(covered: np.ndarray, pure: np.ndarray, label: str = "a stratum") -> str:
    """Coverage with and without a pure stratum (no events, or only events, in it)."""
    if not pure.any() or pure.all():
        return f"{label} is pure in {pure.mean():.0%} of replicates"
    return (
        f"{label} is pure (no events or only events: its variance is only the 1/4-event floor) in "
        f"{pure.mean():.0%} of replicates: coverage {covered[pure].mean():.1%} there, "
        f"{covered[~pure].mean():.1%} in the others"
    )


def _pure_by_replicate(
    rep: np.ndarray,
    stratum: np.ndarray,
    y: np.ndarray,
    domain: np.ndarray | None = None,
    only: int | None = None,
) -> np.ndarray:
    """Per replicate (0..R-1): whether some stratum's (domain) units are all 0 or all 1.

    `only` restricts the check to that stratum.
    """
    d = np.ones(y.size, dtype=bool) if domain is None else np.asarray(domain, dtype=bool)
    if only is not None:
        d = d & (stratum == only)
    g = pd.DataFrame({"r": rep[d], "h": stratum[d], "y": np.asarray(y, dtype=float)[d]})
    m = g.groupby(["r", "h"])["y"].agg(["min", "max"])
    pure = (m["min"] == m["max"]).groupby(level="r").any()
    return pure.reindex(np.arange(rep.max() + 1), fill_value=False).to_numpy()


def _equal(rates: Sequence[float]) -> bool:
    """Whether every stratum has the same audit rate (equal weights: Wilson intervals)."""
    return len(set(rates)) == 1


def _key_stratum(shares: Sequence[float], rates: Sequence[float], n: Sequence[int]) -> int:
    """The stratum with the largest expected variance term, share^2 p (1 - p) / n."""
    s, p, m = (np.asarray(v, dtype=float) for v in (shares, rates, n))
    return int(np.argmax(s * s * p * (1 - p) / m))


def _row(
    family: str,
    interval: str,
    design: str,
    est: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    truth: float | np.ndarray,
    seconds: float,
    why: str | Callable[[float], str] = "",
    pure: np.ndarray | None = None,
    pure_label: str = "a stratum",
) -> Row:
    """Coverage of ``[low, high]`` for ``truth`` over the replicates where it is defined.

    A replicate whose interval is undefined (NaN: e.g. an empty domain) is
    left out and counted in the reason.
    """
    est, low, high = (np.asarray(v, dtype=float) for v in (est, low, high))
    truth = np.broadcast_to(np.asarray(truth, dtype=float), est.shape)
    ok = np.isfinite(low) & np.isfinite(high)
    covered = (low[ok] <= truth[ok] + 1e-12) & (truth[ok] - 1e-12 <= high[ok])
    observed = float(covered.mean()) if covered.size else math.nan
    reason = ""
    if not (abs(observed - NOMINAL) <= TOL):
        extra = why(observed) if callable(why) else why
        reason = (
            f"{observed:.1%} against 95% ({(observed - NOMINAL) * 100:+.1f} pp). "
            + _diagnosis(est, low, high, truth)
            + (
                f". {_pure_split(covered, np.asarray(pure)[ok], pure_label)}"
                if pure is not None
                else ""
            )
            + (f". {extra}" if extra else "")
        )
    if (~ok).any():
        reason = (reason + " " if reason else "") + (
            f"({int((~ok).sum())} of {ok.size} replicates had no interval and are left out.)"
        )
    return Row(
        family=family,
        interval=interval,
        design=design,
        replicates=int(ok.sum()),
        nominal=NOMINAL,
        observed=observed,
        mean_width=float(np.mean(high[ok] - low[ok])) if ok.any() else math.nan,
        spread=float(3.92 * np.nanstd(est[ok], ddof=1)) if ok.sum() > 1 else math.nan,
        seconds=seconds,
        reason=reason.strip(),
    )


# --------------------------------------------------------------------------- #
# 1. Wilson on simple random samples
# --------------------------------------------------------------------------- #
WILSON_DESIGNS = [(n, p) for p in (0.98, 0.95, 0.80) for n in (30, 100, 400)] + [
    (100, 0.01),
    (400, 0.01),
]


def _exact_coverage(n: int, p: float, interval: Callable) -> float:
    """Exact coverage of a binomial interval at (n, p): sum of pmf over the x that cover p."""
    x = np.arange(n + 1, dtype=float)
    lo, hi = interval(x, np.full_like(x, n))
    return float(sps.binom.pmf(x, n, p)[(lo <= p) & (p <= hi)].sum())


def _wilson_why(n: int, p: float) -> Callable[[float], str]:
    from qualitylab.stats import proportion_ci

    def why(observed: float) -> str:
        def wil(x, m):
            return proportion_ci(x, m)

        def jef(x, m):
            return proportion_ci(x, m, method="jeffreys")

        def cp(x, m):
            return proportion_ci(x, m, method="clopper_pearson")

        x = np.arange(n + 1, dtype=float)
        lo, hi = proportion_ci(x, np.full_like(x, n))
        cover = (lo <= p) & (p <= hi)
        xs = x[cover]
        exact = _exact_coverage(n, p, wil)
        if abs(exact - NOMINAL) <= TOL:
            return (
                f"Exact binomial coverage of Wilson at n={n}, p={p}: {exact:.4f}, within "
                "1.5 pp: the simulated miss is Monte Carlo error"
            )
        text = (
            f"Exact binomial coverage of Wilson at n={n}, p={p}: "
            f"{exact:.4f} (Wilson covers p only for "
            f"{int(xs.min())} <= x <= {int(xs.max())}; the coverage of a discrete "
            "interval jumps as p crosses the limits of each x, by most at small "
            "n*min(p, 1-p): Brown, Cai & DasGupta 2001). At the same (n, p) Jeffreys: "
            f"{_exact_coverage(n, p, jef):.4f}, Clopper-Pearson: {_exact_coverage(n, p, cp):.4f}"
        )
        return text

    return why


def study_wilson(replicates: int, seed: int) -> list[Row]:
    """Wilson interval of ``proportion_ci`` on binomial samples."""
    from qualitylab.stats import proportion_ci

    rng = np.random.default_rng(seed)
    rows = []
    for n, p in WILSON_DESIGNS:
        t = time.perf_counter()
        x = rng.binomial(n, p, size=replicates).astype(float)
        low, high = proportion_ci(x, np.full(replicates, float(n)))
        rows.append(
            _row(
                "rates",
                "Wilson (proportion_ci)",
                f"SRS n={n}, p={p}",
                x / n,
                low,
                high,
                p,
                time.perf_counter() - t,
                _wilson_why(n, p),
            )
        )
    return rows


# --------------------------------------------------------------------------- #
# 3. Newcombe differences
# --------------------------------------------------------------------------- #
NEWCOMBE_PAIRS = ((0.98, 0.95), (0.80, 0.75), (0.01, 0.02))
NEWCOMBE_N = (30, 100, 400)


def _newcombe_why(n: int, p1: float, p2: float) -> Callable[[float], str]:
    from qualitylab.stats import proportion_difference_ci

    def why(observed: float) -> str:
        x = np.arange(n + 1, dtype=float)
        x1, x2 = np.meshgrid(x, x, indexing="ij")
        lo, hi = proportion_difference_ci(x1, n, x2, n)
        pmf = np.outer(sps.binom.pmf(x, n, p1), sps.binom.pmf(x, n, p2))
        d = p1 - p2
        exact = float(pmf[(lo <= d + 1e-12) & (d - 1e-12 <= hi)].sum())
        minority = n * min(p1, 1 - p1), n * min(p2, 1 - p2)
        head = f"Exact coverage over the two binomials: {exact:.4f}"
        if abs(exact - NOMINAL) <= TOL:
            return head + ", within 1.5 pp: the simulated miss is Monte Carlo error"
        return head + (
            f". Expected minority counts {minority[0]:.1f} and {minority[1]:.1f}: with few the "
            "Wilson limits of each group take few distinct values and Newcombe's hybrid "
            "interval built from them is conservative (Newcombe 1998, method 10, is above "
            "nominal at small expected counts)"
            if exact > NOMINAL
            else ". The coverage of a discrete interval oscillates with (p1, p2)"
        )

    return why


def study_newcombe(replicates: int, seed: int) -> list[Row]:
    """Newcombe hybrid score interval of ``proportion_difference_ci``."""
    from qualitylab.stats import proportion_difference_ci

    rng = np.random.default_rng(seed)
    rows = []
    for p1, p2 in NEWCOMBE_PAIRS:
        for n in NEWCOMBE_N:
            t = time.perf_counter()
            x1 = rng.binomial(n, p1, size=replicates).astype(float)
            x2 = rng.binomial(n, p2, size=replicates).astype(float)
            low, high = proportion_difference_ci(x1, n, x2, n)
            rows.append(
                _row(
                    "rates",
                    "Newcombe difference (proportion_difference_ci)",
                    f"n1=n2={n}, p1={p1} vs p2={p2}",
                    (x1 - x2) / n,
                    low,
                    high,
                    p1 - p2,
                    time.perf_counter() - t,
                    _newcombe_why(n, p1, p2),
                )
            )
    return rows


# --------------------------------------------------------------------------- #
# 2. design-weighted rates through qa_metrics / qa_alignment
# --------------------------------------------------------------------------- #
# outcome of an audited decision: (action, policy, qa_action, qa_policy)
OUTCOMES = {
    "correct": ("warn", "spam", "warn", "spam"),
    "over": ("warn", "spam", "no_action", "none"),
    "under": ("no_action", None, "warn", "spam"),
    "wrong_policy": ("warn", "spam", "warn", "hate"),
}
METRIC_OF = {
    "correct": "accuracy",
    "over": "over_enforcement_rate",
    "under": "under_enforcement_rate",
    "wrong_policy": "wrong_policy_rate",
}


@dataclass(frozen=True)
class QADesign:
    """Per stratum: share of decisions, outcome probabilities, audit rate.

    ``outcomes[h]`` gives the probabilities of (correct, over, under,
    wrong_policy) in stratum h. Each stratum gets exactly
    ``round(decisions * share * audit_rate)`` audits (stratified sampling);
    ``sample_weight`` = 1 / audit rate and ``stratum`` = the stratum.
    """

    name: str
    shares: tuple[float, ...]
    outcomes: tuple[tuple[float, float, float, float], ...]
    audit_rate: tuple[float, ...]
    decisions: int = 1000

    def audits(self) -> list[int]:
        return [
            round(self.decisions * s * r) for s, r in zip(self.shares, self.audit_rate, strict=True)
        ]

    def truth(self, outcome: str) -> float:
        k = list(OUTCOMES).index(outcome)
        return float(sum(s * o[k] for s, o in zip(self.shares, self.outcomes, strict=True)))


def _errors(acc: float, split: tuple[float, float, float] = (0.5, 0.3, 0.2)) -> tuple:
    """(correct, over, under, wrong_policy) with the errors split as `split`."""
    e = 1.0 - acc
    return (acc, e * split[0], e * split[1], e * split[2])


QA_DESIGNS = (
    QADesign("equal weights (2 strata, 9.5% audited)", (0.7, 0.3), (_errors(0.97), _errors(0.80)),
             (0.095, 0.095)),
    QADesign("two queues (issue #17): 97%/80% audited 5%/20%", (0.7, 0.3),
             (_errors(0.97), _errors(0.80)), (0.05, 0.20)),
    QADesign(
        "four strata: 99/95/90/75% audited 3/5/10/20%",
        (0.4, 0.3, 0.2, 0.1),
        (_errors(0.99), _errors(0.95), _errors(0.90), _errors(0.75)),
        (0.03, 0.05, 0.10, 0.20),
        decisions=2000,
    ),
    QADesign("30 audits per stratum, accuracy 98%", (0.6, 0.4), (_errors(0.99), _errors(0.965)),
             (0.05, 0.075)),
    QADesign(
        "four strata near 99%: 99.5/99/98/95% audited 3/5/10/20%",
        (0.4, 0.3, 0.2, 0.1),
        (_errors(0.995), _errors(0.99), _errors(0.98), _errors(0.95)),
        (0.03, 0.05, 0.10, 0.20),
        decisions=2000,
    ),
    QADesign(
        "over-enforcement ~1%: 0.5%/3% audited 5%/20%",
        (0.8, 0.2),
        ((0.99, 0.005, 0.003, 0.002), (0.96, 0.03, 0.006, 0.004)),
        (0.05, 0.20),
        decisions=4000,
    ),
)  # fmt: skip


def _decisions_frame(vendor: np.ndarray, stratum: np.ndarray, action, policy, score=None):
    m = vendor.size
    ids = np.char.add("d", np.arange(m).astype(str))
    return pd.DataFrame(
        {
            "decision_id": ids,
            "created_at": T0,
            "decided_at": T0 + pd.Timedelta(minutes=1),
            "market": MARKET,
            "vendor": np.char.add("V", np.char.zfill(vendor.astype(str), 5)),
            "site": "S1",
            "queue": np.char.add("q", stratum.astype(str)),
            "language": "en",
            "moderator_id": "m1",
            "routing": "human",
            "action": action,
            "policy": policy,
            "ai_model": None if score is None else "m1",
            "ai_score": np.nan if score is None else score,
            "ai_policy": None,
        }
    )


def _audits_frame(ids, qa_action, qa_policy, weight, stratum, source="internal", offset=0):
    m = len(ids)
    return pd.DataFrame(
        {
            "audit_id": np.char.add(f"a{source[0]}", (np.arange(m) + offset).astype(str)),
            "decision_id": ids,
            "audited_at": T0 + pd.Timedelta(hours=1),
            "qa_source": source,
            "auditor_id": "q1" if source == "internal" else "vq1",
            "qa_action": qa_action,
            "qa_policy": qa_policy,
            "sample_weight": weight,
            "stratum": np.char.add("q", np.asarray(stratum).astype(str)),
        }
    )


def _layout(audits: Sequence[int], rates: Sequence[float], vendors: int):
    """Per audit row: vendor, stratum, weight (fixed n_h per vendor and stratum)."""
    vendor = np.concatenate([np.repeat(np.arange(vendors), n_h) for n_h in audits])
    stratum = np.concatenate([np.full(vendors * n_h, h) for h, n_h in enumerate(audits)])
    weight = np.concatenate(
        [np.full(vendors * n_h, 1.0 / r) for n_h, r in zip(audits, rates, strict=True)]
    )
    order = np.argsort(vendor, kind="stable")
    return vendor[order], stratum[order], weight[order]


def _open(tables: dict[str, pd.DataFrame], folder: Path):
    from qualitylab.sources import open_dataset

    folder.mkdir(parents=True, exist_ok=True)
    for name, df in tables.items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return open_dataset(folder)


def simulate_qa(design: QADesign, vendors: int, seed: int) -> tuple[dict[str, pd.DataFrame], dict]:
    """Decisions and internal audits for `vendors` replicates of `design`, and the raw draws."""
    rng = np.random.default_rng(seed)
    vendor, stratum, weight = _layout(design.audits(), design.audit_rate, vendors)
    probs = np.array(design.outcomes)[stratum]
    u = rng.random(vendor.size)[:, None]
    kind = (u > np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 3)
    table = np.array(list(OUTCOMES.values()), dtype=object)[kind]
    dec = _decisions_frame(vendor, stratum, table[:, 0], table[:, 1])
    qa = _audits_frame(dec["decision_id"].to_numpy(), table[:, 2], table[:, 3], weight, stratum)
    raw = {"vendor": vendor, "stratum": stratum, "kind": np.array(list(OUTCOMES))[kind]}
    return {"decisions": dec, "qa_audits": qa}, raw


OVER_WHY = (
    "Wilson at the design effective n* with the pure-stratum floor (a stratum whose audits "
    "all agree gets the variance of 1/4 audit going the other way): near 0 or 1 with tens "
    "of audits per stratum most strata are pure, each adds its floor, and the interval "
    "errs wide. Clopper-Pearson at n* without the floor errs wider still here (98.9% on "
    "the 30-per-stratum 98% design); a smaller floor under-covers the two-queue design"
)
UNDER_WHY = (
    "The stratified variance is estimated from few events in a heavily weighted stratum; "
    "when that stratum is pure even the 1/4-event floor understates its variance, n* is "
    "overstated and the interval too narrow on the side away from the truth (the misses "
    "are one-sided). A larger floor (1/2 event, Jeffreys) over-covers the other designs "
    "(97.5% on the two-queue design, numpy check of 20,000 replicates)"
)


def _why_design(design: QADesign, metric: str, outcome: str) -> Callable[[float], str]:
    def why(observed: float) -> str:
        if design.name.startswith("equal"):
            return (
                "Equal weights keep the plain Wilson interval on all audits (n = "
                f"{sum(design.audits())}); with proportional allocation across strata of "
                "different rates the true variance is the smaller stratified one"
                if observed > NOMINAL
                else "Equal weights: the plain Wilson interval on all audits"
            )
        return OVER_WHY if observed > NOMINAL else UNDER_WHY

    return why


def _change_level(out: pd.DataFrame, metric: str, pure: np.ndarray) -> tuple[float, int, str]:
    """Rejection rate of the scorecard's change test between pairs of vendors of one design.

    Vendor i is the current period and vendor i + R/2 the previous one: two
    independent samples of one design, so every rejection at 5% is a false one.
    `pure` (per vendor, in vendor order) says whether a stratum had only one
    outcome; the reason splits the rejections by it.
    """
    from qualitylab.scorecard import _change_pvalues

    r = out[out.metric == metric].sort_values("vendor").reset_index(drop=True)
    r = r[["metric", "value", "ci_low", "ci_high"]]
    half = len(r) // 2
    cur, prev = r.iloc[:half].reset_index(drop=True), r.iloc[half : 2 * half].reset_index(drop=True)
    p = _change_pvalues(cur, prev, (7, 7), 0.95)
    ok = np.isfinite(p)
    reject = p[ok] < 0.05
    either = (pure[:half] | pure[half : 2 * half])[ok]
    split = (
        f"rejection {reject[either].mean():.1%} in the {either.mean():.0%} of pairs where "
        "the stratum with the largest expected variance term is pure in either vendor (its "
        f"variance term 0), {reject[~either].mean():.1%} in the others"
        if either.any() and (~either).any()
        else ""
    )
    return float(reject.mean()), int(ok.sum()), split


def study_design(
    replicates: int,
    seed: int,
    designs: Sequence[QADesign] = QA_DESIGNS,
    align: Sequence[AlignDesign] | None = None,
) -> list[Row]:
    """``qa_metrics`` accuracy and error rates, the change test's level, ``qa_alignment``.

    `designs` and `align` (default: all of ``QA_DESIGNS`` and ``ALIGN_DESIGNS``)
    pick the designs.
    """
    from qualitylab.metrics import qa_metrics

    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, design in enumerate(designs):
            t = time.perf_counter()
            tables, raw = simulate_qa(design, replicates, seed + i)
            ds = _open(tables, Path(tmp) / f"qa{i}")
            out = qa_metrics(ds, market=MARKET, by=["vendor"], start=START)
            seconds = time.perf_counter() - t
            n = design.audits()
            label = f"{design.name} ({'+'.join(map(str, n))} audits)"
            pure, pure_label = {}, {}
            for outcome in ("correct", "over"):
                k = list(OUTCOMES).index(outcome)
                h = _key_stratum(design.shares, [o[k] for o in design.outcomes], n)
                pure_label[outcome] = f"the stratum with the largest expected variance term (#{h})"
                pure[outcome] = _pure_by_replicate(
                    raw["vendor"], raw["stratum"], raw["kind"] == outcome, only=h
                )
            for outcome in ("correct", "over"):
                metric = METRIC_OF[outcome]
                r = out[out.metric == metric]
                rows.append(
                    _row(
                        "rates",
                        f"qa_metrics {metric}",
                        label,
                        r.value.to_numpy(),
                        r.ci_low.to_numpy(),
                        r.ci_high.to_numpy(),
                        design.truth(outcome),
                        seconds,
                        _why_design(design, metric, outcome),
                        pure=None if _equal(design.audit_rate) else pure[outcome],
                        pure_label=pure_label[outcome],
                    )
                )
            # the scorecard's change test on these intervals: vendor pairs share one truth
            for outcome in ("correct", "over"):
                metric = METRIC_OF[outcome]
                t2 = time.perf_counter()
                level, pairs, split = _change_level(out, metric, pure[outcome])
                rows.append(
                    _level_row(metric, label, level, pairs, time.perf_counter() - t2, split)
                )
        for j, design in enumerate(ALIGN_DESIGNS if align is None else align):
            rows.append(_alignment_row(design, replicates, seed + 100 + j, Path(tmp) / f"al{j}"))
    return rows


def _level_row(
    metric: str, label: str, level: float, pairs: int, seconds: float, split: str
) -> Row:
    se = math.sqrt(max(level * (1 - level), 1e-12) / max(pairs, 1))
    reason = ""
    if abs(level - 0.05) > TOL:
        reason = (
            f"rejects a true null {level:.1%} of the time against 5% ({(level - 0.05) * 100:+.1f}"
            f" pp, MC SE {se:.1%}). The pooled z-test reads each period's n from its interval "
            "(the effective n of the Korn-Graubard or Wilson interval) and treats the estimated "
            "variance as known, so it inherits the interval's variance error"
            + (f"; {split}" if split else "")
        )
    return Row(
        family="rates",
        interval=f"scorecard change test level, {metric} (scorecard._change_pvalues)",
        design=label + " (vendor pairs, same truth)",
        replicates=pairs,
        nominal=0.05,
        observed=level,
        seconds=seconds,
        reason=reason,
    )


@dataclass(frozen=True)
class AlignDesign:
    """Double audits: per stratum share, agreement rate, internal audit rate.

    Internal QA audits ``round(decisions * share * rate)`` decisions per
    stratum (weight 1 / rate, ``stratum`` set); vendor QA audits the same
    decisions (no weight). Truth = sum_h share_h * agreement_h.
    """

    name: str
    shares: tuple[float, ...]
    agreement: tuple[float, ...]
    audit_rate: tuple[float, ...]
    violating: tuple[float, ...] = (0.5, 0.5)
    decisions: int = 1000

    def audits(self) -> list[int]:
        return [
            round(self.decisions * s * r) for s, r in zip(self.shares, self.audit_rate, strict=True)
        ]

    @property
    def truth(self) -> float:
        return float(np.dot(self.shares, self.agreement))


ALIGN_DESIGNS = (
    AlignDesign("equal weights: agreement 95%/80%", (0.7, 0.3), (0.95, 0.80), (0.095, 0.095)),
    AlignDesign(
        "two queues: agreement 95%/80% audited 5%/20%", (0.7, 0.3), (0.95, 0.80), (0.05, 0.20)
    ),
    AlignDesign(
        "30 per stratum: agreement 99%/96.5% audited 5%/7.5%",
        (0.6, 0.4),
        (0.99, 0.965),
        (0.05, 0.075),
    ),
)


def simulate_alignment(design: AlignDesign, vendors: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    vendor, stratum, weight = _layout(design.audits(), design.audit_rate, vendors)
    m = vendor.size
    violating = rng.random(m) < np.asarray(design.violating)[stratum]
    agree = rng.random(m) < np.asarray(design.agreement)[stratum]
    internal = np.where(violating, "warn", "no_action")
    vendor_qa = np.where(violating == agree, "warn", "no_action")  # flips when they disagree
    dec = _decisions_frame(vendor, stratum, np.full(m, "warn"), np.full(m, "spam"))
    ids = dec["decision_id"].to_numpy()
    pol = {"warn": "spam", "no_action": "none"}
    qa_i = _audits_frame(
        ids, internal, [pol[a] for a in internal], weight, stratum, source="internal"
    )
    qa_v = _audits_frame(
        ids, vendor_qa, [pol[a] for a in vendor_qa], np.nan, stratum, source="vendor"
    )
    raw = {"vendor": vendor, "stratum": stratum, "agree": agree}
    return {"decisions": dec, "qa_audits": pd.concat([qa_i, qa_v], ignore_index=True)}, raw


def _alignment_row(design: AlignDesign, replicates: int, seed: int, folder: Path) -> Row:
    from qualitylab.metrics import qa_alignment

    t = time.perf_counter()
    tables, raw = simulate_alignment(design, replicates, seed)
    ds = _open(tables, folder)
    out = qa_alignment(ds, market=MARKET, by=["vendor"], start=START)
    r = out[out.metric == "qa_alignment"]
    n = design.audits()
    unweighted = float(np.dot(n, design.agreement) / sum(n))
    key = _key_stratum(design.shares, design.agreement, n)

    def why(observed: float) -> str:
        mean = float(r.value.mean())
        closer = "unweighted" if abs(mean - unweighted) < abs(mean - design.truth) else "design"
        return (
            f"The design's agreement is {design.truth:.4f}; the share of agreeing audits "
            f"without weights is {unweighted:.4f} in expectation, and the mean estimate "
            f"{mean:.4f} is at the {closer} value"
            + (
                ": qa_alignment ignores the internal audits' sample_weight and stratum "
                "(needs the design-weighted, stratified estimate and interval as qa_metrics)"
                if closer == "unweighted" and abs(unweighted - design.truth) > 1e-9
                else ". Equal weights: the plain Wilson interval on all pairs"
                if _equal(design.audit_rate)
                else ". " + (OVER_WHY if observed > NOMINAL else UNDER_WHY)
            )
        )

    return _row(
        "rates",
        "qa_alignment (metrics.qa_alignment)",
        f"{design.name} ({'+'.join(map(str, n))} double audits)",
        r.value.to_numpy(),
        r.ci_low.to_numpy(),
        r.ci_high.to_numpy(),
        design.truth,
        time.perf_counter() - t,
        why,
        pure=None
        if _equal(design.audit_rate)
        else _pure_by_replicate(raw["vendor"], raw["stratum"], raw["agree"], only=key),
        pure_label=f"the stratum with the largest expected variance term (#{key})",
    )


# --------------------------------------------------------------------------- #
# 4. AI precision, recall, FPR from stratified audits
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class AIDesign:
    """Per stratum: share, violation rate, P(flag | violating), P(flag | not), audit rate."""

    name: str
    shares: tuple[float, ...]
    violating: tuple[float, ...]
    tpr: tuple[float, ...]
    fpr: tuple[float, ...]
    audit_rate: tuple[float, ...]
    decisions: int = 1000

    def audits(self) -> list[int]:
        return [
            round(self.decisions * s * r) for s, r in zip(self.shares, self.audit_rate, strict=True)
        ]

    def truth(self) -> dict[str, float]:
        s, v, t, f = (np.asarray(a) for a in (self.shares, self.violating, self.tpr, self.fpr))
        tp, fp = (s * v * t).sum(), (s * (1 - v) * f).sum()
        return {
            "ai_precision": float(tp / (tp + fp)),
            "ai_recall": float(tp / (s * v).sum()),
            "ai_fpr": float(fp / (s * (1 - v)).sum()),
        }


AI_DESIGNS = (
    AIDesign(
        "equal weights: violating 20%/60%",
        (0.7, 0.3),
        (0.2, 0.6),
        (0.8, 0.9),
        (0.1, 0.2),
        (0.095, 0.095),
    ),
    AIDesign(
        "two strata: violating 20%/60% audited 5%/20%",
        (0.7, 0.3),
        (0.2, 0.6),
        (0.8, 0.9),
        (0.1, 0.2),
        (0.05, 0.20),
    ),
    AIDesign(
        "two strata, 4x audits: violating 5%/40% audited 10%/40%",
        (0.8, 0.2),
        (0.05, 0.4),
        (0.7, 0.9),
        (0.05, 0.1),
        (0.10, 0.40),
        decisions=2000,
    ),
)


def simulate_ai(design: AIDesign, vendors: int, seed: int) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    vendor, stratum, weight = _layout(design.audits(), design.audit_rate, vendors)
    m = vendor.size
    violating = rng.random(m) < np.asarray(design.violating)[stratum]
    p_flag = np.where(violating, np.asarray(design.tpr)[stratum], np.asarray(design.fpr)[stratum])
    flagged = rng.random(m) < p_flag
    score = np.where(flagged, 0.5 + 0.5 * rng.random(m), 0.5 * rng.random(m))  # >= 0.5 iff flagged
    dec = _decisions_frame(
        vendor, stratum, np.where(flagged, "ban", "no_action"), np.where(flagged, "spam", None),
        score,
    )  # fmt: skip
    qa = _audits_frame(
        dec["decision_id"].to_numpy(),
        np.where(violating, "ban", "no_action"),
        np.where(violating, "spam", "none"),
        weight,
        stratum,
    )
    raw = {"vendor": vendor, "stratum": stratum, "violating": violating, "flagged": flagged}
    return {"decisions": dec, "qa_audits": qa}, raw


# metric: (domain, event) as functions of (flagged, violating)
AI_DOMAINS = {
    "ai_precision": (lambda f, v: f, lambda f, v: v),
    "ai_recall": (lambda f, v: v, lambda f, v: f),
    "ai_fpr": (lambda f, v: ~v, lambda f, v: f),
}


def _ai_why(observed: float) -> str:
    return (
        "A domain rate (denominator: the flagged, violating or clean audits, random within "
        "each stratum) with the stratified domain variance and Wilson at the domain's n* "
        "(pure-stratum floor added to the stratum's variance). "
    ) + (OVER_WHY if observed > NOMINAL else UNDER_WHY)


def _ai_why_equal(observed: float) -> str:
    return "Equal weights: the Wilson interval on the domain's audits"


def study_ai(replicates: int, seed: int, designs: Sequence[AIDesign] = AI_DESIGNS) -> list[Row]:
    """``ai_metrics`` precision, recall and FPR (threshold 0.5) from stratified audits."""
    from qualitylab.aieval import ai_metrics

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, design in enumerate(designs):
            t = time.perf_counter()
            tables, raw = simulate_ai(design, replicates, seed + i)
            ds = _open(tables, Path(tmp) / f"ai{i}")
            out = ai_metrics(
                ds, market=MARKET, by=["vendor"], start=START, threshold=0.5, f1_interval=False
            )
            seconds = time.perf_counter() - t
            label = f"{design.name} ({'+'.join(map(str, design.audits()))} audits)"
            for metric, truth in design.truth().items():
                r = out[out.metric == metric]
                dom, event = AI_DOMAINS[metric]
                f, v = raw["flagged"], raw["violating"]
                rows.append(
                    _row(
                        "rates",
                        f"ai_metrics {metric}",
                        label,
                        r.value.to_numpy(),
                        r.ci_low.to_numpy(),
                        r.ci_high.to_numpy(),
                        truth,
                        seconds,
                        _ai_why_equal if _equal(design.audit_rate) else _ai_why,
                        pure=None
                        if _equal(design.audit_rate)
                        else _pure_by_replicate(
                            raw["vendor"], raw["stratum"], event(f, v), domain=dom(f, v)
                        ),
                        pure_label="a stratum's domain",
                    )
                )
    return rows


STUDIES: dict[str, Callable[[int, int], list[Row]]] = {
    "wilson": study_wilson,
    "design": study_design,
    "newcombe": study_newcombe,
    "ai": study_ai,
}
