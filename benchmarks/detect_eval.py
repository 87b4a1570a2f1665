"""Score ``qualitylab.detect.scan`` on planted demo incidents, and its detectors on NAB.

Part 1, planted incidents. For every seed the script generates demo data
(:func:`qualitylab.demo.generate`), which writes ``incidents.csv``, the
incidents it planted; runs :func:`qualitylab.detect.scan` on every market over
the whole data range (the defaults: the first 28 days are the baseline, the
rest is scanned); and scores the alerts against the incidents:

* an incident is **found** when one alert of its market, or one of the views
  listed in that alert's ``related`` column (alerts the scan grouped under it),
  has a closely related metric (:data:`RELATED`) moving in the consistent
  direction, the incident's segment or the whole market as its segment, and
  dates overlapping the incident's;
* **recall** = found / incidents whose metric family the scan watches;
  incidents of metrics ``scan`` does not watch (``capacity_gap``) are listed
  but not counted. It is reported twice: on the **findable** incidents (the
  ``findable`` column of ``incidents.csv``, which the generator computes from
  its own design: whether the default scan could see the incident with 80%
  power at the audits its days are expected to get, after the scan's
  corrections, see :mod:`qualitylab.demo`; the target is 100%) and overall,
  beside it, so the findable recall is not read as the whole story;
* a **false alert** is an alert (one row of the scan's output) that finds no
  incident; false alerts are divided by the market-months scanned (scanned
  days / 30.44, summed over markets). They are broken down into *collateral*
  (another metric of a planted incident's segment on overlapping dates, or any
  alert inside the dates of a market-wide incident, give or take a day: a
  knock-on effect the ground truth does not list, e.g. the override rate of
  the policy whose rollout went wrong), *near a change* (the alert's ``events`` column names a model
  release, a policy change, a holiday, an outage or any other event but a
  training), *near a training only* (new-hire cohorts start every few days
  somewhere, so nearly every date is near one) and *unexplained*. The target
  counts false **medium or high** alerts (severity of ``scan``): at most 2
  per market-month; all false alerts are reported beside it.

Every miss is listed with whether it was findable, and the design's numbers
(expected audits, planted change, change the scan sees with 80% power).

For each incident missed in some seed, the script prints the windows the scan
proposed for that series (metric family x segment, and the market-wide
series), with their raw, search-corrected and Benjamini-Hochberg-adjusted
p-values, or the reason the series was skipped; this hooks the scanner's
``evaluate`` and degrades to "not available" if the hook changes. It
also gives each missed rate incident an *oracle*: Fisher's exact test of the
incident's own days against the baseline (told the segment, metric and
dates), times the number of series the scan judged in the market. When that
exceeds the FDR level, no procedure controlling false alarms over that many
series could have reported the incident.

Part 1b, root cause: for every planted rate incident, :func:`qualitylab.rca.decompose`
over its days against the 28 days before and :func:`qualitylab.rca.adtributor`;
found when the planted segment ranks first.

Part 2, NAB: :func:`nab_eval.evaluate` (``benchmarks/nab_eval.py``), the STL +
MAD detector next to a naive rolling 3-sigma rule on the labelled NAB series.

Nothing is tuned to the planted data: ``scan`` runs with its defaults and the
market parameters as committed.

Usage::

    python benchmarks/detect_eval.py [--seeds 1,2,3,4,5] [--scale demo]
        [--out benchmarks/results/detect_eval.md] [--days 90] [--keep DIR]
        [--no-nab] [--nab /work/shared/refdata/nab]

Text below the line ``<!-- notes: kept when the report above is regenerated -->``
of the report file is kept when it is regenerated.

``--scale small`` (3 markets) is a quick check; ``demo`` (10 markets, ~1M
decisions) takes about a minute per seed on two cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab import detect, open_dataset, rca
from qualitylab.demo import generate
from qualitylab.detection.detect import pvalues, scanner

DAYS_PER_MONTH = 365.25 / 12
#: Text below this line of the report file is kept when it is regenerated.
NOTES = "<!-- notes: kept when the report above is regenerated -->"
#: Severities the false-alert target counts (issue #18: medium or high).
SEVERE = ("medium", "high")

#: "Closely related" metrics: for an incident's metric, the metrics whose alert
#: counts as finding it, with +1 when they move in the same direction and -1
#: when they move in the opposite one. Accuracy is one minus the sum of the
#: three error rates; SLA compliance and the response-time percentiles are views
#: of the same response times; AI recall and the false-negative rate are
#: complements (F1 moves with recall), as are AI precision and the FPR. Every
#: other metric is related only to itself. ``capacity_gap``, ``required_agents``
#: and ``utilization`` are one family that ``scan`` does not watch.
RELATED: dict[str, dict[str, int]] = {
    "accuracy": {
        "accuracy": 1,
        "over_enforcement_rate": -1,
        "under_enforcement_rate": -1,
        "wrong_policy_rate": -1,
    },
    **{
        e: {e: 1, "accuracy": -1}
        for e in ("over_enforcement_rate", "under_enforcement_rate", "wrong_policy_rate")
    },
    "sla_compliance": {
        "sla_compliance": 1,
        "response_p50": -1,
        "response_p90": -1,
        "response_p99": -1,
    },
    **{
        r: {"sla_compliance": -1, "response_p50": 1, "response_p90": 1, "response_p99": 1}
        for r in ("response_p50", "response_p90", "response_p99")
    },
    "ai_recall": {"ai_recall": 1, "ai_fnr": -1, "ai_f1": 1},
    "ai_precision": {"ai_precision": 1, "ai_fpr": -1, "ai_f1": 1},
    "ai_fpr": {"ai_fpr": 1, "ai_precision": -1},
    "capacity_gap": {"capacity_gap": 1, "required_agents": 1, "utilization": 1},
}
# Metrics whose "up" is good news: a related view of another polarity moves the
# other way (an SLA drop shows as response times going up).
_HIGHER_IS_BETTER = {
    "accuracy",
    "sla_compliance",
    "ai_precision",
    "ai_recall",
    "ai_f1",
    "red_team_recall",
    "qa_alignment",
    "calibration_score",
    "throughput",
}
_FLIP = {"up": "down", "down": "up"}
_RELATED_ITEM = re.compile(r"^\s*(\S+)\s+([^=\s]+)=(.*?)\s*$")
_EVENT_KIND = re.compile(r"\d{4}-\d{2}-\d{2} ([a-z_]+)")  # "2026-11-05 model_release: ..."
_NOT_NEAR_A_CHANGE = ("near a training only", "unexplained")


def related_metrics(metric: str) -> dict[str, int]:
    """Metrics closely related to `metric` (itself included), with their sign."""
    return RELATED.get(metric, {metric: 1})


def watched(metric: str) -> bool:
    """Whether ``scan`` watches `metric` or a metric closely related to it."""
    return bool(set(related_metrics(metric)) & set(detect.SCAN_METRICS))


def views(alert: pd.Series) -> list[tuple[str, str, str, str, str]]:
    """The alert and the alerts grouped under it: (metric, dimension, segment, direction, how)."""
    out = [(alert["metric"], alert["dimension"], str(alert["segment"]), alert["direction"], "")]
    for item in str(alert.get("related") or "").split(";"):
        hit = _RELATED_ITEM.match(item)
        if not item.strip() or not hit:
            continue
        metric, dim, seg = hit.groups()
        direction = alert["direction"]
        if (metric in _HIGHER_IS_BETTER) != (alert["metric"] in _HIGHER_IS_BETTER):
            direction = _FLIP[direction]
        out.append((metric, dim, seg, direction, "related"))
    return out


def covers(alert: pd.Series, incident: pd.Series) -> str | None:
    """How `alert` finds `incident` ("direct", "market", "related", ...), or None."""
    if alert["market"] != incident["market"]:
        return None
    if alert["start_date"] > incident["end_date"] or alert["end_date"] < incident["start_date"]:
        return None
    rel = related_metrics(incident["metric"])
    for metric, dim, seg, direction, how in views(alert):
        if metric not in rel:
            continue
        want = incident["direction"] if rel[metric] > 0 else _FLIP[incident["direction"]]
        if direction != want:
            continue
        if (dim, seg) == (incident["dimension"], str(incident["segment"])):
            kind = "direct"
        elif dim == "market" and seg == incident["market"]:
            kind = "market"
        else:
            continue
        if metric != incident["metric"]:
            kind += f" via {metric}"
        return f"{kind} (related)" if how else kind
    return None


# --------------------------------------------------------------------------- #
# diagnostics: the windows the scan proposed for a series
# --------------------------------------------------------------------------- #
class Oracle(NamedTuple):
    """What a test told the segment and dates would see of one series (ordered by ``told``)."""

    told: float  # Fisher p x series judged (uncapped, so ties at 1 still order)
    searched: float  # the same with the scan's window search, capped at 1
    mde: float  # change a scan could see with 80% power at these audits
    observed: float  # change the audits show
    series: str


@dataclass
class Capture:
    """What ``scan`` saw for chosen series: the daily values and the windows proposed.

    Filled through the scanner's ``evaluate`` and ``gap_windows`` hooks
    (best effort: ``available`` is False when they are gone).
    """

    targets: set[tuple[str, str, str]]
    found: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    ctx: Any = None
    available: bool = True
    tested: int = 0  # series the scan judged (not skipped) in the current market
    oracles: list[Oracle] = field(default_factory=list)  # one per rows() call

    def oracle(self, name: str, vi: float, ni: float, vb: float, nb: float) -> str:
        """The test someone told the segment and dates would run, and what it faces.

        Fisher's exact test of the incident days against the baseline (no
        window search, no overdispersion). Times the number of series the
        scan judged in the market, it is the p-value of a lone discovery under
        Bonferroni; above the FDR level even that oracle could not report it.
        """
        if not (ni > 0 and nb > 0 and np.isfinite(vi) and np.isfinite(vb)):
            return ""
        ki, kb = round(vi * ni), round(vb * nb)
        p = float(sps.fisher_exact([[ki, round(ni) - ki], [kb, round(nb) - kb]]).pvalue)
        days = self.ctx.monitored_days if self.ctx is not None else 1
        told, found = p * self.tested, min(1.0, pvalues.search_p(p, days) * self.tested)
        observed = vi - vb
        mde = float("nan")
        if 0 < vb < 1:
            mde = detect.minimum_detectable_change(
                vb,
                ni,
                n_reference=nb,
                period_days=days,
                series=max(self.tested, 1),
                direction="down" if observed < 0 else "up",
            )
        self.oracles.append(Oracle(told, found, mde, observed, name))
        return (
            f"; oracle p {p:.2g} (Fisher, told the segment and dates), "
            f"x {self.tested} series judged = {min(1.0, told):.2g}; with the search over "
            f"{days} days = {found:.2g}; a scan sees (80% power) changes of "
            f"{mde:.3f} or more here, observed {observed:+.3f}"
        )

    def rows(self, key: tuple[str, str, str], inc: pd.Series) -> list[str]:
        """Lines explaining what the scan saw of series `key` around incident `inc`."""
        name = f"{key[0]} {key[1]}={key[2]}"
        if key[0] not in detect.SCAN_METRICS:
            return []
        if not self.available:
            return [f"  {name}: (not available: the scanner's evaluate changed)"]
        if key not in self.found or self.ctx is None:
            own = key[1:] == (inc["dimension"], str(inc["segment"]))
            return [f"  {name}: no such series in the scan"] if own else []
        entry, ctx = self.found[key], self.ctx
        dates = ctx.dates
        i0 = int(dates.searchsorted(pd.Timestamp(inc["start_date"])))
        i1 = int(dates.searchsorted(pd.Timestamp(inc["end_date"]), side="right")) - 1
        lines = [] if "value" in entry else [f"  {name}: weekly windows of the reconciliation"]
        if "value" in entry:
            v, n = entry["value"], np.nan_to_num(entry["n"])
            ok = np.isfinite(v) & (n > 0)
            inside = np.zeros(len(v), bool)
            inside[i0 : i1 + 1] = True
            ref = np.zeros(len(v), bool)
            ref[: ctx.base_len] = True
            ref &= ~np.asarray(ctx.mask, bool)

            def level(sel: np.ndarray) -> tuple[float, float]:
                sel = sel & ok
                if not sel.any():
                    return float("nan"), 0.0
                if key[0] in detect.RATES:
                    return float((v[sel] * n[sel]).sum() / n[sel].sum()), float(n[sel].sum())
                return float(np.mean(v[sel])), float(np.median(n[sel]))

            (vi, ni), (vb, nb) = level(inside), level(ref)
            what = "n" if key[0] in detect.RATES else "median daily n"
            lines.append(
                f"  {name}: incident days {vi:.4g} ({what} {ni:.0f}) vs baseline "
                f"{dates[0]:%m-%d}..{dates[ctx.base_len - 1]:%m-%d} {vb:.4g} ({what} {nb:.0f}); "
                f"min_n {ctx.min_n}"
                + ("; SKIPPED as too small to judge" if entry["windows"] is None else "")
                + (self.oracle(name, vi, ni, vb, nb) if key[0] in detect.RATES else "")
            )
        wins = entry["windows"] or []
        near = [w for w in wins if w.end >= i0 - 3 and w.start <= i1 + 3]
        for w in near:
            lines.append(
                f"    window {w.detector} {getattr(w, 'kpi', '')} {dates[w.start]:%m-%d}.."
                f"{dates[w.end]:%m-%d} {w.direction}: {w.observed:.4g} vs {w.expected:.4g} "
                f"(n={w.n:.0f}); p raw {w.p_raw:.2g}, search-corrected {w.p_value:.2g}, "
                + (
                    f"BH-adjusted {w.p_adjusted:.2g}"
                    if np.isfinite(w.p_adjusted)
                    else "not an event (p > FDR)"
                )
            )
        if entry["windows"] is not None and not near:
            lines.append(f"    no window proposed within 3 days of {inc['start_date']:%m-%d}")
        if len(wins) > len(near):
            lines.append(f"    (+{len(wins) - len(near)} window(s) elsewhere in the period)")
        return lines


@contextmanager
def capture_windows(targets: set[tuple[str, str, str]]) -> Iterator[Capture]:
    """Record what ``scan`` sees of `targets` (metric, dimension, segment)."""
    cap = Capture(targets)
    original = getattr(scanner, "evaluate", None)
    original_gap = getattr(scanner, "gap_windows", None)
    if original is None or original_gap is None:
        cap.available = False
        yield cap
        return

    def hooked(s: Any, ctx: Any) -> Any:
        value, n = s.value.copy(), s.n.copy()  # before the detectors touch them
        out = original(s, ctx)
        key = (s.metric, s.dimension, s.segment)
        cap.tested += out is not None
        if key in cap.targets:
            cap.found[key] = {"windows": out, "value": value, "n": n}
            cap.ctx = ctx
        return out

    def hooked_gap(ds: Any, ctx: Any, start: Any, end: Any) -> Any:
        out, tested = original_gap(ds, ctx, start, end)
        cap.tested += tested
        for w in out:
            key = ("reporting_gap", "vendor", w.series.segment)
            if key in cap.targets:
                cap.found.setdefault(key, {"windows": []})["windows"].append(w)
        for key in cap.targets:
            if key[:2] == ("reporting_gap", "vendor"):
                cap.found.setdefault(key, {"windows": []})
        cap.ctx = ctx
        return out, tested

    scanner.evaluate = hooked
    scanner.gap_windows = hooked_gap
    try:
        yield cap
    finally:
        scanner.evaluate = original
        scanner.gap_windows = original_gap


def diagnostic_targets(incidents: pd.DataFrame) -> set[tuple[str, str, str]]:
    """Series whose windows explain a miss: the related metrics on the segment and market."""
    keys = set()
    for _, inc in incidents.iterrows():
        for metric in related_metrics(inc["metric"]):
            keys.add((metric, inc["dimension"], str(inc["segment"])))
            keys.add((metric, "market", inc["market"]))
    return keys


# --------------------------------------------------------------------------- #
# one seed
# --------------------------------------------------------------------------- #
@dataclass
class SeedResult:
    seed: int
    incidents: pd.DataFrame  # + found, how, alert
    alerts: pd.DataFrame  # + incident, kind
    market_months: float
    generate_seconds: float
    scan_seconds: dict[str, float]
    diagnostics: dict[int, list[str]]
    # per missed incident: its related series with the strongest oracle
    oracles: dict[int, Oracle] = field(default_factory=dict)
    # rca over each planted rate incident: what ranks first
    rca_rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scored(self) -> pd.DataFrame:
        return self.incidents[self.incidents["watched"]]

    @property
    def recall(self) -> float:
        return float(self.scored["found"].mean()) if len(self.scored) else float("nan")

    @property
    def findable(self) -> pd.DataFrame:
        return self.scored[self.scored["findable"]]

    def false(self, kind: str | None = None, severe: bool = False) -> int:
        f = self.alerts[self.alerts["incident"].isna()]
        if severe:
            f = f[f["severity"].isin(SEVERE)]
        return int(len(f) if kind is None else (f["kind"] == kind).sum())


def _classify_false(alert: pd.Series, incidents: pd.DataFrame) -> str:
    same = incidents[incidents["market"] == alert["market"]]
    overlap = (same["start_date"] <= alert["end_date"]) & (same["end_date"] >= alert["start_date"])
    segment = (same["dimension"] == alert["dimension"]) & (
        same["segment"].astype(str) == str(alert["segment"])
    )
    day = pd.Timedelta(days=1)
    within = (same["start_date"] - day <= alert["start_date"]) & (
        alert["end_date"] <= same["end_date"] + day
    )
    if (overlap & (segment | ((same["dimension"] == "market") & within))).any():
        return "collateral"
    kinds = set(_EVENT_KIND.findall(str(alert.get("events") or "")))
    if kinds - {"training"}:
        return "near a change"
    return "near a training only" if kinds else "unexplained"


def run_seed(seed: int, scale: str, days: int, folder: Path, say: Any) -> SeedResult:
    t0 = time.perf_counter()
    summary = generate(folder, scale=scale, seed=seed, days=days)
    gen_s = time.perf_counter() - t0
    incidents = pd.read_csv(folder / "incidents.csv", parse_dates=["start_date", "end_date"])
    incidents["findable"] = incidents["findable"].astype(str).str.lower().eq("true")
    ds = open_dataset(folder)
    frames, secs, months = [], {}, 0.0
    with capture_windows(diagnostic_targets(incidents)) as cap:
        captured: dict[str, Capture] = {}
        for market in summary.markets:
            cap.found, cap.ctx, cap.tested = {}, None, 0
            t1 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # skipped-series summaries
                alerts = detect.scan(ds, market)
            secs[market] = time.perf_counter() - t1
            start, end = alerts.attrs["period"]
            months += ((end - start).days + 1) / DAYS_PER_MONTH
            frames.append(alerts.assign(market=market))
            snap = Capture(cap.targets, dict(cap.found), cap.ctx, cap.available, cap.tested)
            captured[market] = snap
            say(f"  seed {seed} {market}: {len(alerts)} alerts, scan {secs[market]:.1f} s")
    alerts = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    alerts["incident"] = pd.Series([None] * len(alerts), dtype=object)
    alerts["kind"] = ""
    found, how, by = [], [], []
    for i, inc in incidents.iterrows():
        hits = [(j, covers(a, inc)) for j, a in alerts.iterrows()]
        hits = [(j, k) for j, k in hits if k]
        for j, _ in hits:
            if alerts.at[j, "incident"] is None:
                alerts.at[j, "incident"] = i
        found.append(bool(hits))
        how.append(hits[0][1] if hits else "")
        by.append(
            "; ".join(
                f"{alerts.at[j, 'metric']} {alerts.at[j, 'dimension']}="
                f"{alerts.at[j, 'segment']} {alerts.at[j, 'start_date']:%m-%d}.."
                f"{alerts.at[j, 'end_date']:%m-%d}"
                for j, _ in hits[:2]
            )
        )
    incidents["watched"] = incidents["metric"].map(watched)
    incidents["found"] = found
    incidents["how"] = how
    incidents["alert"] = by
    for j, a in alerts.iterrows():
        if a["incident"] is None:
            alerts.at[j, "kind"] = _classify_false(a, incidents)
    diagnostics: dict[int, list[str]] = {}
    oracles: dict[int, Oracle] = {}
    for i, inc in incidents.iterrows():
        if inc["found"] or not inc["watched"]:
            continue
        cap_m = captured.get(inc["market"])
        if cap_m is not None:
            cap_m.oracles = []
        lines: list[str] = []
        for metric in related_metrics(inc["metric"]):
            keys = dict.fromkeys(
                [(metric, inc["dimension"], str(inc["segment"])), (metric, "market", inc["market"])]
            )
            for key in keys:
                if cap_m is not None:
                    lines += cap_m.rows(key, inc)
        near = alerts[
            (alerts["market"] == inc["market"])
            & alerts["metric"].isin(list(related_metrics(inc["metric"])))
            & (alerts["start_date"] <= inc["end_date"])
            & (alerts["end_date"] >= inc["start_date"])
        ]
        for _, a in near.iterrows():
            lines.append(
                f"  nearby alert: {a['metric']} {a['dimension']}={a['segment']} "
                f"{a['start_date']:%Y-%m-%d}..{a['end_date']:%Y-%m-%d} {a['direction']}"
            )
        if not lines:
            lines = ["  no window proposed for the series (or the series does not exist)"]
        diagnostics[int(i)] = lines
        if cap_m is not None and cap_m.oracles:
            oracles[int(i)] = min(cap_m.oracles)  # smallest uncapped oracle first
    rca_rows = rca_planted(ds, incidents)
    return SeedResult(seed, incidents, alerts, months, gen_s, secs, diagnostics, oracles, rca_rows)


def rca_planted(ds: Any, incidents: pd.DataFrame) -> list[dict[str, Any]]:
    """``rca`` over each planted rate incident's days against the 28 days before.

    A segment incident is decomposed over the default dimensions of its
    market; a market-wide one over the markets (pooled, each on its own
    calendar). Found = the planted (dimension, segment) ranks first.
    """
    rows = []
    for _, inc in incidents.iterrows():
        if inc["metric"] not in rca.RCA_METRICS:
            continue
        start, end = inc["start_date"].date(), inc["end_date"].date()
        base = (start - timedelta(days=28), start - timedelta(days=1))
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if inc["dimension"] == "market":
                res = rca.decompose(
                    ds, inc["metric"], None, (start, end), base, dimensions=["market"]
                )
            else:
                res = rca.decompose(ds, inc["metric"], inc["market"], (start, end), base)
            rank = rca.adtributor(res)
        top = rank.dimensions.iloc[0]
        rows.append(
            {
                "incident": incident_label(inc),
                "found": (rank.top_dimension, rank.top_segment)
                == (inc["dimension"], str(inc["segment"])),
                "top": f"{rank.top_dimension}={rank.top_segment}",
                "n_selected": int(top["n_selected"]),
                "explains_away": top["explains_away"] or "",
                "seconds": time.perf_counter() - t0,
            }
        )
    return rows


# --------------------------------------------------------------------------- #
# NAB
# --------------------------------------------------------------------------- #
def _nab_module() -> Any:
    here = Path(__file__).resolve().with_name("nab_eval.py")
    spec = importlib.util.spec_from_file_location("nab_eval", here)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {here}")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("nab_eval", mod)
    spec.loader.exec_module(mod)
    return mod


def _md(text: str) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|")


def nab_section(nab: Path) -> list[str]:
    mod = _nab_module()
    t0 = time.perf_counter()
    totals, by_group, n_files = mod.evaluate(nab)
    defaults = {mod.label(d, thr[0]) for d, (_, thr) in mod.DETECTORS.items()}
    lines = [
        "## NAB (real labelled anomaly series)",
        "",
        f"{n_files} NAB files from `{nab}`, hourly means, STL period {mod.PERIOD}, "
        f"first {mod.PROBATION:.0%} of each file unscored (NAB's probation). A window is "
        "detected when a flagged point falls inside it; false = flagged points (and runs "
        "of flagged points, *alarms*) outside every window, per 1,000 scored points. "
        "`stl_mad` is qualitylab's `detect.stl_mad`; `rolling` is the naive 3-sigma rule "
        f"(mean and sd of the previous {mod.ROLLING} points). (*) = default threshold.",
        "",
        "| detector | windows detected | detection rate | false points / 1k | false alarms / 1k |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, sc in totals.items():
        mark = " (*)" if name in defaults else ""
        lines.append(
            f"| `{_md(name)}`{mark} | {sc.detected}/{sc.windows} | "
            f"{sc.detected / max(sc.windows, 1):.0%} | "
            f"{1000 * sc.false / max(sc.points, 1):.1f} | "
            f"{1000 * sc.false_runs / max(sc.points, 1):.2f} |"
        )
    lines += [
        "",
        "By category, default thresholds:",
        "",
        "| category | detector | windows detected | false points / 1k | false alarms / 1k |",
        "|---|---|---:|---:|---:|",
    ]
    for (name, group), sc in sorted(by_group.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines.append(
            f"| {group} | `{_md(name)}` | {sc.detected}/{sc.windows} | "
            f"{1000 * sc.false / max(sc.points, 1):.1f} | "
            f"{1000 * sc.false_runs / max(sc.points, 1):.2f} |"
        )
    lines += ["", f"NAB run time {time.perf_counter() - t0:.0f} s.", ""]
    return lines


# --------------------------------------------------------------------------- #
# report
# --------------------------------------------------------------------------- #
def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> str:
    import duckdb
    import ibis

    head = _git("rev-parse", "--short", "HEAD")
    dirty = " (uncommitted changes in the working tree)" if _git("status", "--porcelain") else ""
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (
        f"{os.cpu_count()} cores (load average {load} at the end of the run), "
        f"{platform.platform()}, Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, ibis {ibis.__version__}, pandas {pd.__version__}; "
        f"git {head or '?'}{dirty}"
    )


def _pct(x: float) -> str:
    return "n/a" if not np.isfinite(x) else f"{x:.0%}"


def _num(x: Any, digits: int, signed: bool = False) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return ""
    if not np.isfinite(v):
        return ""
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def _design(row: pd.Series) -> str:
    """The design's numbers of an incident: planted change / change a scan sees."""
    planted, need = _num(row["planted_change"], 3, True), _num(row["detectable_change"], 3)
    if not planted:
        return "n/a"
    return f"{planted} / {need}" if need else planted


def incident_label(inc: pd.Series) -> str:
    return (
        f"{inc['market']} {inc['metric']} {inc['dimension']}={inc['segment']} "
        f"{inc['start_date']:%m-%d}..{inc['end_date']:%m-%d} {inc['direction']}"
    )


def report(results: list[SeedResult], args: argparse.Namespace) -> list[str]:
    lines = [
        "## Planted incidents in demo data",
        "",
        f"Scale `{args.scale}`, {args.days} days, seeds {', '.join(str(r.seed) for r in results)}; "
        "`scan(ds, market)` with its defaults on every market (28-day baseline, the rest "
        "scanned). Found = an alert (or a view grouped under it in `related`) with a "
        "closely related metric in the consistent direction, the incident's segment or its "
        "market, and overlapping dates. Related metrics: accuracy and its three error "
        "rates; sla_compliance and response_p50/p90/p99; ai_recall, ai_fnr, ai_f1; "
        "ai_precision, ai_fpr; every other metric only itself. *Findable* is the "
        "`findable` column of `incidents.csv`: the generator's own judgement, from its "
        "design and not from any scan, of whether the default scan could see the incident "
        "with 80% power at the audits its days are expected to get, after the scan's "
        "window search over the period and Bonferroni share over the market's series "
        "(`detect.minimum_detectable_change`; the rule is in `qualitylab.demo`). "
        "Targets (issue #18): every findable incident found, at most 2 false medium or "
        "high alerts per market-month. False alert = an alert that finds no incident; "
        "per market-month = false alerts / (scanned days / 30.44 summed over markets).",
        "",
        "| seed | findable found | findable recall | all found | overall recall | alerts "
        "| false alerts (all) | false medium/high | market-months | false medium/high "
        "/ market-month | false (all) / market-month | of which not near a change / "
        "market-month | scan s per market (median, max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    tot = {
        "n": 0,
        "found": 0,
        "fn": 0,
        "ffound": 0,
        "alerts": 0,
        "false": 0,
        "severe": 0,
        "months": 0.0,
        "unexp": 0,
    }
    all_secs: list[float] = []
    for r in results:
        secs = list(r.scan_seconds.values())
        all_secs += secs
        n, f = len(r.scored), int(r.scored["found"].sum())
        fn, ff = len(r.findable), int(r.findable["found"].sum())
        fa, un = r.false(), sum(r.false(k) for k in _NOT_NEAR_A_CHANGE)
        sv = r.false(severe=True)
        for k, v in (
            ("n", n),
            ("found", f),
            ("fn", fn),
            ("ffound", ff),
            ("alerts", len(r.alerts)),
            ("false", fa),
            ("severe", sv),
            ("unexp", un),
            ("months", r.market_months),
        ):
            tot[k] += v
        lines.append(
            f"| {r.seed} | {ff}/{fn} | {_pct(ff / fn if fn else float('nan'))} | {f}/{n} | "
            f"{_pct(r.recall)} | {len(r.alerts)} | {fa} | {sv} | {r.market_months:.1f} | "
            f"{sv / r.market_months:.2f} | {fa / r.market_months:.2f} | "
            f"{un / r.market_months:.2f} | {np.median(secs):.1f}, {max(secs):.1f} |"
        )
    pooled_recall = tot["found"] / tot["n"] if tot["n"] else float("nan")
    pooled_f = tot["ffound"] / tot["fn"] if tot["fn"] else float("nan")
    lines.append(
        f"| **pooled** | {tot['ffound']}/{tot['fn']} | **{_pct(pooled_f)}** | "
        f"{tot['found']}/{tot['n']} | **{_pct(pooled_recall)}** | {tot['alerts']} | "
        f"{tot['false']} | {tot['severe']} | {tot['months']:.1f} | "
        f"**{tot['severe'] / tot['months']:.2f}** | {tot['false'] / tot['months']:.2f} | "
        f"{tot['unexp'] / tot['months']:.2f} | "
        f"{np.median(all_secs):.1f}, {max(all_secs):.1f} |"
    )
    # false alerts by kind
    kinds = ("collateral", "near a change", *_NOT_NEAR_A_CHANGE)
    lines += [
        "",
        "False alerts by kind (pooled, all severities; medium/high in brackets): "
        + ", ".join(
            f"{k} {sum(r.false(k) for r in results)} "
            f"({sum(r.false(k, severe=True) for r in results)})"
            for k in kinds
        )
        + ". *Collateral*: another metric on a planted incident's segment on overlapping "
        "dates, or any alert within the dates of a market-wide incident (±1 day), a "
        "knock-on effect the ground truth does not list; *near a change*: the alert's "
        "`events` names a model release, policy change, holiday or outage; *near a "
        "training only*: only new-hire cohort trainings nearby (they start every few "
        "days somewhere).",
        "",
        "Per incident (✓ found, ✗ missed; how = first matching alert; the design's "
        "verdict in brackets: F findable, B below detectability, with the planted change "
        "of its best series against the change a scan sees there with 80% power):",
        "",
        "| incident | " + " | ".join(f"seed {r.seed}" for r in results) + " | found |",
        "|---|" + "---|" * len(results) + "---:|",
    ]
    base = results[0].incidents
    for i, inc in base.iterrows():
        cells = []
        hits = 0
        for r in results:
            row = r.incidents.loc[i]
            design = f"[{'F' if row['findable'] else 'B'} {_design(row)}]"
            if not row["watched"]:
                cells.append(f"not watched {design}")
                continue
            hits += bool(row["found"])
            cells.append(f"✓ {row['how']} {design}" if row["found"] else f"✗ {design}")
        total = f"{hits}/{len(results)}" if inc["watched"] else "n/a"
        lines.append(f"| {incident_label(inc)} | " + " | ".join(cells) + f" | {total} |")
    missed_rows = [
        (r, i, row) for r in results for i, row in r.scored.iterrows() if not row["found"]
    ]
    lines += [
        "",
        f"Every miss ({len(missed_rows)}), with the design's verdict "
        f"({sum(bool(row['findable']) for _, _, row in missed_rows)} findable):",
        "",
        "| seed | incident | findable | series that shows it best | expected audits "
        "(or items) | planted change | change a scan sees (80% power) |",
        "|---|---|---|---|---:|---:|---:|",
    ]
    for r, _, row in missed_rows:
        lines.append(
            f"| {r.seed} | {incident_label(row)} | {'yes' if row['findable'] else 'no'} | "
            f"{_md(row.get('best_series', ''))} | {_num(row['expected_n'], 0)} | {_num(row['planted_change'], 3, True)} | "
            f"{_num(row['detectable_change'], 3)} |"
        )
    unwatched = base[~base["watched"]]
    if len(unwatched):
        lines += [
            "",
            "Not scored (no closely related metric is watched by `scan`): "
            + "; ".join(incident_label(inc) for _, inc in unwatched.iterrows())
            + ".",
        ]
    # false alerts listed
    lines += [
        "",
        "False alerts (all seeds):",
        "",
        "| seed | market | metric | dimension=segment | dates | direction | severity | "
        "detector | kind | events |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for _, a in r.alerts[r.alerts["incident"].isna()].iterrows():
            ev = str(a.get("events") or "").replace("|", "/")
            ev = ev if len(ev) <= 90 else ev[:87] + "..."
            lines.append(
                f"| {r.seed} | {a['market']} | {a['metric']} | {a['dimension']}={_md(a['segment'])} "
                f"| {a['start_date']:%m-%d}..{a['end_date']:%m-%d} | {a['direction']} | "
                f"{a['severity']} | {a['detector']} | {a['kind']} | {ev} |"
            )
    # root cause
    rc = [(r.seed, row) for r in results for row in r.rca_rows]
    unsplit = sorted(
        {m for r in results for m in r.incidents["metric"] if m not in rca.RCA_METRICS}
    )
    if rc:
        ok = sum(row["found"] for _, row in rc)
        lines += [
            "",
            "## Root cause of each planted incident",
            "",
            f"`rca.decompose` over the incident's days against the 28 days before, then "
            f"`rca.adtributor` (defaults): the planted segment ranks first in **{ok} of "
            f"{len(rc)}** incidents whose metric `rca` splits (`rca.RCA_METRICS`; not: "
            f"{', '.join(unsplit) or 'none'}). A market-wide incident is ranked among the "
            f"markets.",
            "",
            "| seed | incident | first | segments in its set | moved ahead of (explain-away) | s |",
            "|---|---|---|---:|---|---:|",
        ]
        for seed, row in rc:
            mark = "✓" if row["found"] else "✗"
            lines.append(
                f"| {seed} | {row['incident']} | {mark} {row['top']} | {row['n_selected']} | "
                f"{row['explains_away']} | {row['seconds']:.1f} |"
            )
    # diagnostics of misses
    missed = [(r, i, d) for r in results for i, d in r.diagnostics.items()]
    if missed:
        fdr = detect.SENSITIVITY_FDR["medium"]
        rated = [(r, i, r.oracles[i]) for r, i, _ in missed if i in r.oracles]
        within = [x for x in rated if x[2].told <= fdr]
        searched = [x for x in rated if x[2].searched <= fdr]
        lines += [
            "",
            f"**What the realised audits of each miss showed** (beside the design's "
            f"`findable` verdict above, this reads the data the scan saw). For each "
            f"missed rate incident, the *oracle* is Fisher's exact test of the incident's own days against the "
            f"baseline on its segment or market, over every related metric (a test told "
            f"the segment, metric and dates, with no window search), times the number of "
            f"series the scan judged in the market (Bonferroni for a lone discovery). "
            f"When even that exceeds the FDR level ({fdr:g}), no procedure that controls "
            f"false alarms over that many series could report the incident. "
            f"{len(within)} of {len(rated)} missed rate incidents pass it; the others are "
            f"below the information in the audits. A scan is not told the dates: paying "
            f"for the search over the monitored days as `scan` does "
            f"(`detect.scan_p_value`), {len(searched)} of {len(rated)} would pass as a lone "
            f"discovery. (Benjamini-Hochberg's bar is looser by the rank an event takes "
            f"among the market's discoveries, so these columns are the strict end.) The "
            f"last two columns set the change a scan could see with 80% power at the "
            f"audits of the incident's days (`detect.minimum_detectable_change`, on the "
            f"best series, the one with the strongest oracle) beside the change the audits "
            f"show.",
            "",
            "| seed | incident | oracle p x series judged | + search over the period | "
            "an oracle told the dates could report it | a scan could, alone | "
            "best series | change a scan sees (80% power) | observed change |",
            "|---|---|---:|---:|---|---|---|---:|---:|",
        ]
        for r, i, o in rated:
            lines.append(
                f"| {r.seed} | {incident_label(r.incidents.loc[i])} | {min(1.0, o.told):.2g} | "
                f"{o.searched:.2g} | {'yes' if o.told <= fdr else 'no'} | "
                f"{'yes' if o.searched <= fdr else 'no'} | "
                f"{o.series} | {o.mde:.3f} | {o.observed:+.3f} |"
            )
        lines += ["", "Why incidents were missed (windows the scan proposed for the series):", ""]
        lines.append("```")
        for r, i, diag in missed:
            lines.append(f"seed {r.seed}: {incident_label(r.incidents.loc[i])}")
            lines += diag
        lines.append("```")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated demo seeds")
    parser.add_argument("--scale", default="demo", choices=["small", "demo", "large"])
    parser.add_argument("--days", type=int, default=90, help="days of demo data")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/detect_eval.md"), help="report file"
    )
    parser.add_argument("--keep", type=Path, help="keep the generated data under this folder")
    parser.add_argument("--nab", type=Path, default=Path("/work/shared/refdata/nab"))
    parser.add_argument("--no-nab", action="store_true", help="skip the NAB section")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    started = time.perf_counter()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    work = args.keep or Path(tempfile.mkdtemp(prefix="detect_eval_"))
    results = []
    try:
        for seed in seeds:
            folder = work / f"{args.scale}-seed{seed}"
            say(f"seed {seed}: generating {args.scale} data in {folder}")
            results.append(run_seed(seed, args.scale, args.days, folder, say))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    lines = [
        "# Detection evaluation",
        "",
        f"Command: `python benchmarks/detect_eval.py {' '.join(argv or sys.argv[1:])}`",
        "",
        f"Machine: {machine()}.",
        "",
    ]
    lines += report(results, args)
    if not args.no_nab:
        if (args.nab / "combined_windows.json").exists():
            lines += nab_section(args.nab)
        else:
            lines += ["## NAB", "", f"skipped: no `combined_windows.json` in {args.nab}", ""]
    gen = sum(r.generate_seconds for r in results)
    scan_total = sum(sum(r.scan_seconds.values()) for r in results)
    lines += [
        f"Run time {time.perf_counter() - started:.0f} s (data generation {gen:.0f} s, "
        f"scans {scan_total:.0f} s).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    old = args.out.read_text() if args.out.exists() else ""
    if NOTES in old:  # the notes written by hand below the marker stay
        text += "\n" + old[old.index(NOTES) :]
    args.out.write_text(text)
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
