"""Benchmarks: qualitylab against the code a user would otherwise write.

Workloads (issue #8):

* ``W1`` scorecard: every KPI per market x vendor x queue x day over the last
  28 days of the ``large`` demo data (~10.4M decisions), by qualitylab, by one
  hand-written DuckDB SQL query and by plain pandas; the numbers of the three
  are compared.
* ``W2`` detection: ``qualitylab.detect.scan`` of one market (ID) and of all
  ten markets, on ``demo`` and ``large`` data.
* ``W3`` AI evaluation: threshold sweep, ROC/PR, AUC and calibration from ~10M
  scores through engine histograms, against scikit-learn on the raw arrays.
* ``W4`` batch: ``qualitylab run --markets all`` on ``demo`` data with
  ``--jobs 1`` and ``--jobs 2``.
* ``W5`` live queue watch (issue #19): one tick of one market (ID) on
  ``large``, warm (the contract-check memo and the day's forecast and
  staffing plan computed before the clock, as a running watch has them): the
  dataset re-opened as ``qualitylab watch`` does at every tick, ``now`` found,
  and :func:`qualitylab.watch.tick`. The info column gives a second tick on
  the open dataset and the plan's time (once per market-local day).
* ``W6`` interactive (issue #20): in one process, as in a live kernel on
  ``large``, ``ql.scorecard(ds, "ID", by=["vendor", "queue"])``: the first call
  (the market's slice made and queried), then the median of 10 repeated calls
  (the slice remembers its aggregates) and the median of 10 calls with that
  memo cleared (every engine query run on the warm slice); and on ``demo``,
  notebook 01's explorer widget: the median and largest time of 10 changes of
  metric or dimension (query and chart).
* ``growth``: W1 and W2 (one market) on 1M, 3M and 10M decisions (random
  samples of ``large`` by a hash of ``decision_id``, audits kept with their
  decisions).

Every measurement runs in a fresh Python process (imports excluded from the
time); peak memory is that process's peak resident set size (for W4 also the
largest of its child processes). Times are medians over ``--runs``.

Usage::

    make bench                       # everything, writes benchmarks/results/<date>.md
    make bench BENCH=W1              # one workload (or W1,W3 / growth)
    .venv/bin/python benchmarks/bench.py --workloads W3 --runs 5 --no-write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path.cwd()
WORKLOADS = ("W1", "W2", "W3", "W4", "W5", "W6", "growth")
W1_BY = ["market", "vendor", "queue", "date"]
W1_DAYS = 28
SCAN_MARKET = "ID"
SAMPLES = {"1M": 1_000_000, "3M": 3_000_000}
# KPIs that all three W1 implementations compute; each is compared exactly
# (counts) or to 1e-9 (rates). Response percentiles are compared within the
# histogram's binning error (bins 5% wide), see _compare.
W1_EXACT = (
    "volume",
    "backlog",
    "sla_compliance",
    "throughput",
    "utilization",
    "accuracy",
    "over_enforcement_rate",
    "under_enforcement_rate",
    "wrong_policy_rate",
    "qa_alignment",
    "auto_action_rate",
    "override_rate",
    "ai_precision",
    "ai_recall",
    "ai_fpr",
)
W1_APPROX = ("response_p50", "response_p90", "response_p99")


# --------------------------------------------------------------------------- #
# data
# --------------------------------------------------------------------------- #
def ensure_data(folder: Path, scale: str) -> float | None:
    """Generate demo data at `scale` into `folder` unless present; seconds taken."""
    if (folder / "decisions").exists() or (folder / "decisions.parquet").exists():
        stamp = folder / ".generate-seconds"
        return float(stamp.read_text()) if stamp.exists() else None
    print(f"generating {scale} demo data into {folder} (seed 42)...", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [_qualitylab(), "demo-data", "--scale", scale, "--seed", "42", "--out", str(folder)],
        check=True,
    )
    seconds = time.perf_counter() - started
    (folder / ".generate-seconds").write_text(f"{seconds:.1f}")
    return seconds


def ensure_sample(large: Path, rows: int, dest: Path) -> Path:
    """A random sample of about `rows` decisions of `large` (audits follow them)."""
    if (dest / "decisions.parquet").exists():
        return dest
    import duckdb

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    con = duckdb.connect()
    src = f"read_parquet('{large}/decisions/*.parquet')"
    total = con.execute(f"SELECT count(*) FROM {src}").fetchone()[0]
    keep = f"hash(decision_id) % 1000003 < {round(1000003 * rows / total)}"
    con.execute(
        f"COPY (SELECT * FROM {src} WHERE {keep}) TO '{tmp}/decisions.parquet' (FORMAT parquet)"
    )
    con.execute(
        f"COPY (SELECT a.* FROM read_parquet('{large}/qa_audits.parquet') a "
        f"SEMI JOIN read_parquet('{tmp}/decisions.parquet') d USING (decision_id)) "
        f"TO '{tmp}/qa_audits.parquet' (FORMAT parquet)"
    )
    for f in large.iterdir():
        if f.suffix in (".parquet", ".csv") and f.name not in ("qa_audits.parquet",):
            shutil.copy(f, tmp / f.name)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


def _qualitylab() -> str:
    exe = Path(sys.executable).with_name("qualitylab")
    return str(exe) if exe.exists() else "qualitylab"


def _w1_period(data: str) -> tuple[date, date]:
    """The last 28 market-local days ending on the data's last UTC date."""
    import duckdb

    src = _decisions_glob(data)
    last = duckdb.sql(f"SELECT max(created_at)::DATE FROM read_parquet('{src}')").fetchone()[0]
    return last - timedelta(days=W1_DAYS - 1), last


def _decisions_glob(data: str) -> str:
    p = Path(data)
    return (
        str(p / "decisions" / "*.parquet")
        if (p / "decisions").is_dir()
        else str(p / "decisions.parquet")
    )


# --------------------------------------------------------------------------- #
# W1: the three implementations (run in a child process)
# --------------------------------------------------------------------------- #
def w1_qualitylab(data: str, start: date, end: date) -> Any:
    """Every scorecard KPI (``scorecard.scorecard_kpis``) for all markets at once."""
    import qualitylab as ql
    from qualitylab.metrics import Period
    from qualitylab.scorecard import scorecard_kpis

    ds = ql.open_dataset(data)
    (kpis,) = scorecard_kpis(ds, market=None, by=W1_BY, periods=[Period(start, end)])
    return kpis


def _params() -> Any:
    from qualitylab.params import load_parameters

    return load_parameters(None)


def w1_sql(data: str, start: date, end: date) -> Any:
    """The same KPIs as one DuckDB SQL statement on the Parquet files."""
    import duckdb
    import pandas as pd

    p = _params()
    d = p.defaults
    # UTC offset of each market in the period (one offset each: no DST change in
    # the benchmark's period); DuckDB's per-row timezone() through ICU is slow
    tz_rows = ", ".join(
        f"('{c}', {_local_midnight(end, mp.timezone).utcoffset().total_seconds():.0f})"
        for c, mp in p.markets.items()
    )
    sla_rows = ", ".join(f"('{q}', {float(s)})" for q, s in d.sla_seconds.items())
    folder = Path(data)
    dec = _decisions_glob(data)
    lo = min(_local_midnight(start, mp.timezone) for mp in p.markets.values())
    as_of = max(_local_midnight(end + timedelta(days=1), mp.timezone) for mp in p.markets.values())
    sql = f"""
WITH markets(market, off) AS (VALUES {tz_rows}),
slas(queue, sla) AS (VALUES {sla_rows}),
-- the period ends at the latest local midnight of any market (as qualitylab);
-- literal UTC bounds let DuckDB skip row groups outside the period
dec AS (
  SELECT d.*, DATE '1970-01-01' + CAST((epoch_us(d.created_at) + m.off::BIGINT * 1000000)
           // 86400000000 AS INTEGER) AS date, s.sla,
         epoch_us(d.created_at) AS c_us, epoch_us(d.decided_at) AS d_us,
         epoch_us(TIMESTAMPTZ '{as_of.isoformat()}') AS end_us
  FROM read_parquet('{dec}') d
  JOIN markets m USING (market)
  LEFT JOIN slas s USING (queue)
  WHERE d.created_at >= TIMESTAMPTZ '{lo.isoformat()}'
    AND d.created_at < TIMESTAMPTZ '{as_of.isoformat()}'
),
dec_p AS MATERIALIZED (
  SELECT *, d_us IS NOT NULL AND d_us < end_us AS decided,
         (CASE WHEN d_us IS NOT NULL AND d_us < end_us THEN d_us ELSE end_us END - c_us) / 1e6
           AS secs
  FROM dec WHERE date BETWEEN DATE '{start}' AND DATE '{end}'
),
ops AS (
  SELECT market, vendor, queue, date,
    count(*) AS volume,
    count(*) FILTER (NOT decided) AS backlog,
    count(*) FILTER (decided AND secs <= sla) AS sla_k,
    count(*) FILTER (sla IS NOT NULL AND (decided OR secs > sla)) AS sla_n,
    count(*) FILTER (sla IS NOT NULL AND NOT decided AND secs <= sla) AS sla_censored,
    quantile_disc(secs, 0.5) FILTER (decided) AS p50,
    quantile_disc(secs, 0.9) FILTER (decided) AS p90,
    quantile_disc(secs, 0.99) FILTER (decided) AS p99,
    count(*) FILTER (NOT decided) AS pending,
    count(*) FILTER (action IS NOT NULL) AS decided_n,
    count(*) FILTER (action IS NOT NULL AND routing = 'ai_auto') AS auto_n,
    count(*) FILTER (action IS NOT NULL AND routing = 'ai_assisted') AS assisted_n,
    count(*) FILTER (action IS NOT NULL AND routing = 'ai_assisted' AND (
        (coalesce(ai_policy, 'none') <> 'none') <> (action <> 'no_action')
        OR (coalesce(ai_policy, 'none') <> 'none' AND action <> 'no_action'
            AND policy <> ai_policy))) AS override_n,
    count(*) FILTER (decided_at IS NOT NULL AND routing <> 'ai_auto') AS human_n
  FROM dec_p GROUP BY ALL
),
staff AS (
  SELECT market, vendor, queue, date, sum(scheduled_hours) AS sched,
         sum(productive_hours) AS prod
  FROM read_parquet('{folder}/staffing.parquet')
  WHERE date BETWEEN DATE '{start}' AND DATE '{end}' GROUP BY ALL
),
aud AS (
  SELECT d.market, d.vendor, d.queue, d.date, a.qa_source, a.audited_at, a.decision_id,
         coalesce(a.sample_weight, 1.0) AS w, d.ai_score,
         d.action <> 'no_action' AS enf, a.qa_action <> 'no_action' AS qa_enf,
         coalesce(d.policy, 'none') = a.qa_policy AS same_pol,
         CASE WHEN a.qa_action <> 'no_action' THEN a.qa_policy ELSE 'none' END AS label
  FROM read_parquet('{folder}/qa_audits.parquet') a
  JOIN dec_p d USING (decision_id)
  WHERE d.action IS NOT NULL
),
qa AS (
  SELECT market, vendor, queue, date,
    sum(w) AS sw,
    sum(w * ((enf = qa_enf) AND (NOT enf OR same_pol))::INT) AS correct,
    sum(w * (enf AND NOT qa_enf)::INT) AS over,
    sum(w * (NOT enf AND qa_enf)::INT) AS under,
    sum(w * (enf AND qa_enf AND NOT same_pol)::INT) AS wrong,
    sum(w * (ai_score >= {d.ai_threshold} AND qa_enf)::INT) FILTER (ai_score IS NOT NULL) AS tp,
    sum(w * (ai_score >= {d.ai_threshold})::INT) FILTER (ai_score IS NOT NULL) AS pp,
    sum(w * qa_enf::INT) FILTER (ai_score IS NOT NULL) AS ap,
    sum(w * (ai_score >= {d.ai_threshold} AND NOT qa_enf)::INT)
      FILTER (ai_score IS NOT NULL) AS fp,
    sum(w * (NOT qa_enf)::INT) FILTER (ai_score IS NOT NULL) AS an
  FROM aud WHERE qa_source = 'internal' GROUP BY ALL
),
latest AS (
  SELECT * FROM aud
  QUALIFY row_number() OVER (PARTITION BY decision_id, qa_source ORDER BY audited_at DESC) = 1
),
align AS (
  -- design-weighted (issue #17): each pair carries its internal audit's weight
  SELECT v.market, v.vendor, v.queue, v.date, sum(i.w) AS pairs,
         coalesce(sum(i.w) FILTER (v.label = i.label), 0) AS agree
  FROM latest v JOIN latest i USING (decision_id)
  WHERE v.qa_source = 'vendor' AND i.qa_source = 'internal' GROUP BY ALL
)
SELECT o.*, s.sched, s.prod, q.* EXCLUDE (market, vendor, queue, date),
       al.pairs, al.agree
FROM ops o
LEFT JOIN staff s USING (market, vendor, queue, date)
LEFT JOIN qa q USING (market, vendor, queue, date)
LEFT JOIN align al USING (market, vendor, queue, date)
"""
    con = duckdb.connect()
    wide = con.execute(sql).df()
    return _w1_long(wide, pd)


def _w1_long(w: Any, pd: Any) -> Any:
    """Long [market, vendor, queue, date, metric, value] from the wide baseline sums."""
    import numpy as np

    def div(a: Any, b: Any) -> Any:
        a = np.asarray(a, dtype=float)
        b = np.asarray(b, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(b > 0, a / b, np.nan)

    # sla_compliance is a plain share only where nothing is censored before its
    # SLA (then it equals qualitylab's Kaplan-Meier estimate exactly); other
    # segments are left out of the comparison.
    sla = np.where(w["sla_censored"] == 0, div(w["sla_k"], w["sla_n"]), np.nan)
    # percentiles compared on fully decided segments of at least 1,000 items, where
    # the exact quantile and the histogram's lie in the same 5% bin
    final = (w["pending"] == 0) & (w["volume"] >= 1000)
    metrics = {
        "volume": w["volume"],
        "backlog": w["backlog"],
        "sla_compliance": sla,
        "response_p50": np.where(final, w["p50"], np.nan),
        "response_p90": np.where(final, w["p90"], np.nan),
        "response_p99": np.where(final, w["p99"], np.nan),
        "throughput": div(w["human_n"], w["prod"]),
        "utilization": div(w["prod"], w["sched"]),
        "accuracy": div(w["correct"], w["sw"]),
        "over_enforcement_rate": div(w["over"], w["sw"]),
        "under_enforcement_rate": div(w["under"], w["sw"]),
        "wrong_policy_rate": div(w["wrong"], w["sw"]),
        "qa_alignment": div(w["agree"], w["pairs"]),
        "auto_action_rate": div(w["auto_n"], w["decided_n"]),
        "override_rate": div(w["override_n"], w["assisted_n"]),
        "ai_precision": div(w["tp"], w["pp"]),
        "ai_recall": div(w["tp"], w["ap"]),
        "ai_fpr": div(w["fp"], w["an"]),
    }
    keys = w[W1_BY].copy()
    keys["date"] = pd.to_datetime(keys["date"]).dt.date
    parts = []
    for name, values in metrics.items():
        part = keys.copy()
        part["metric"] = name
        part["value"] = np.asarray(values, dtype=float)
        parts.append(part[np.isfinite(part["value"])])
    return pd.concat(parts, ignore_index=True)


def _local_midnight(day: date, tz: str) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return datetime.combine(day, datetime.min.time(), tzinfo=ZoneInfo(tz))


def w1_pandas(data: str, start: date, end: date) -> Any:
    """The same KPIs in plain pandas: read the needed columns, then groupby."""
    import numpy as np
    import pandas as pd

    p = _params()
    d = p.defaults
    tzs = {c: mp.timezone for c, mp in p.markets.items()}
    lo = min(pd.Timestamp(start).tz_localize(tz) for tz in tzs.values()).tz_convert("UTC")
    as_of = max(pd.Timestamp(end + timedelta(days=1)).tz_localize(tz) for tz in tzs.values())
    as_of = as_of.tz_convert("UTC")
    cols = [
        "decision_id",
        "created_at",
        "decided_at",
        "market",
        "vendor",
        "queue",
        "routing",
        "action",
        "policy",
        "ai_score",
        "ai_policy",
    ]
    dec = pd.read_parquet(
        Path(data) / "decisions"
        if (Path(data) / "decisions").is_dir()
        else Path(data) / "decisions.parquet",
        columns=cols,
        filters=[("created_at", ">=", lo - pd.Timedelta(days=1)), ("created_at", "<", as_of)],
    )
    dec = dec[dec["market"].isin(list(tzs))]
    local = pd.Series(pd.NaT, index=dec.index, dtype="datetime64[us]")
    for code, tz in tzs.items():
        sel = dec["market"] == code
        local[sel] = dec.loc[sel, "created_at"].dt.tz_convert(tz).dt.tz_localize(None)
    dec["date"] = local.dt.normalize().dt.date
    dec = dec[(dec["date"] >= start) & (dec["date"] <= end)]
    decided = dec["decided_at"].notna() & (dec["decided_at"] < as_of)
    stop = dec["decided_at"].where(decided, as_of)
    secs = (stop - dec["created_at"]).dt.total_seconds()
    sla = dec["queue"].map(d.sla_seconds).astype(float)
    acted = dec["action"].notna()
    ai_enf = dec["ai_policy"].fillna("none") != "none"
    human_enf = dec["action"] != "no_action"
    override = (ai_enf != human_enf) | (ai_enf & human_enf & (dec["policy"] != dec["ai_policy"]))
    assisted = acted & (dec["routing"] == "ai_assisted")
    frame = pd.DataFrame(
        {
            **{c: dec[c] for c in W1_BY},
            "volume": 1,
            "backlog": (~decided).astype(int),
            "sla_k": (decided & (secs <= sla)).astype(int),
            "sla_n": (sla.notna() & (decided | (secs > sla))).astype(int),
            "sla_censored": (sla.notna() & ~decided & (secs <= sla)).astype(int),
            "pending": (~decided).astype(int),
            "decided_n": acted.astype(int),
            "auto_n": (acted & (dec["routing"] == "ai_auto")).astype(int),
            "assisted_n": assisted.astype(int),
            "override_n": (assisted & override).astype(int),
            "human_n": (dec["decided_at"].notna() & (dec["routing"] != "ai_auto")).astype(int),
            "secs": secs.where(decided),
        }
    )
    g = frame.groupby(W1_BY, observed=True, sort=False)
    wide = g[[c for c in frame.columns if c not in (*W1_BY, "secs")]].sum()
    q = g["secs"].quantile([0.5, 0.9, 0.99], interpolation="lower").unstack()
    q.columns = ["p50", "p90", "p99"]
    wide = wide.join(q).reset_index()

    st = pd.read_parquet(Path(data) / "staffing.parquet")
    st["date"] = pd.to_datetime(st["date"]).dt.date
    st = st[(st["date"] >= start) & (st["date"] <= end)]
    st = st.groupby(W1_BY, observed=True)[["scheduled_hours", "productive_hours"]].sum()
    st = st.rename(columns={"scheduled_hours": "sched", "productive_hours": "prod"})

    qa = pd.read_parquet(Path(data) / "qa_audits.parquet")
    keep = dec.loc[acted, [*W1_BY, "decision_id", "action", "policy", "ai_score"]]
    aud = qa.merge(keep, on="decision_id")
    aud["w"] = aud["sample_weight"].fillna(1.0)
    enf = aud["action"] != "no_action"
    qa_enf = aud["qa_action"] != "no_action"
    same = aud["policy"].fillna("none") == aud["qa_policy"]
    aud["label"] = aud["qa_policy"].where(qa_enf, "none")
    internal = aud[aud["qa_source"] == "internal"]
    e, qe, sm, w = (x[internal.index] for x in (enf, qa_enf, same, aud["w"]))
    scored = internal["ai_score"].notna()
    pred = internal["ai_score"] >= d.ai_threshold
    qsum = pd.DataFrame(
        {
            **{c: internal[c] for c in W1_BY},
            "sw": w,
            "correct": w * ((e == qe) & (~e | sm)),
            "over": w * (e & ~qe),
            "under": w * (~e & qe),
            "wrong": w * (e & qe & ~sm),
            "tp": w * (scored & pred & qe),
            "pp": w * (scored & pred),
            "ap": w * (scored & qe),
            "fp": w * (scored & pred & ~qe),
            "an": w * (scored & ~qe),
        }
    )
    qsum = qsum.groupby(W1_BY, observed=True).sum()
    latest = aud.sort_values("audited_at").drop_duplicates(
        ["decision_id", "qa_source"], keep="last"
    )
    v = latest[latest["qa_source"] == "vendor"]
    i = latest[latest["qa_source"] == "internal"][["decision_id", "label", "w"]]
    pairs = v.drop(columns=["w"]).merge(i, on="decision_id", suffixes=("_v", "_i"))
    # design-weighted (issue #17): each pair carries its internal audit's weight
    pairs["agree"] = pairs["w"] * (pairs["label_v"] == pairs["label_i"]).astype(int)
    al = pairs.groupby(W1_BY, observed=True).agg(pairs=("w", "sum"), agree=("agree", "sum"))
    wide = wide.set_index(W1_BY).join(st).join(qsum).join(al).reset_index()
    _ = np  # numpy only through pandas here
    return _w1_long(wide, pd)


def _w1_tidy(frame: Any) -> Any:
    import pandas as pd

    out = frame[[*W1_BY, "metric", "value"]].copy()
    out["date"] = pd.to_datetime(out["date"]).dt.date
    for c in ("market", "vendor", "queue", "metric"):
        out[c] = out[c].astype(str)
    return out[out["value"].notna()].reset_index(drop=True)


def _compare(ql: Any, base: Any) -> dict[str, Any]:
    """Per KPI: segments compared, max |difference|, and whether they agree."""
    import numpy as np

    m = ql.merge(base, on=[*W1_BY, "metric"], how="inner", suffixes=("_ql", "_b"))
    out: dict[str, Any] = {}
    for metric in (*W1_EXACT, *W1_APPROX):
        part = m[m["metric"] == metric]
        n_base = int((base["metric"] == metric).sum())
        if not len(part):
            out[metric] = {"segments": 0, "baseline_segments": n_base, "agree": False}
            continue
        diff = (part["value_ql"] - part["value_b"]).abs().to_numpy(float)
        if metric in W1_APPROX:
            rel = diff / part["value_b"].abs().clip(lower=1.0).to_numpy(float)
            # histogram bins are 5% wide: the binned quantile is within one bin
            # of the exact one (quantile definitions differ inside a bin)
            ok = rel <= 0.05 + 1e-9
            out[metric] = {
                "segments": len(part),
                "baseline_segments": n_base,
                "max_rel_diff": float(rel.max()),
                "share_within_5pct": float(ok.mean()),
                "agree": bool(ok.mean() >= 0.95),
            }
        else:
            tol = 0.0 if metric in ("volume", "backlog") else 1e-9
            out[metric] = {
                "segments": len(part),
                "baseline_segments": n_base,
                "max_abs_diff": float(np.max(diff)),
                "agree": bool(np.max(diff) <= tol) and len(part) == n_base,
            }
    return out


# --------------------------------------------------------------------------- #
# W2, W3, W4 (child side)
# --------------------------------------------------------------------------- #
def w2_scan(data: str, markets: str) -> dict[str, Any]:
    import qualitylab as ql
    from qualitylab.detect import scan

    ds = ql.open_dataset(data)
    codes = list(ds.params.codes) if markets == "all" else markets.split(",")
    alerts = 0
    for code in codes:
        alerts += len(scan(ds, code))
    return {"alerts": alerts, "markets": len(codes)}


def _w3_table(con: Any, table: Any) -> Any:
    t = table.filter(table.ai_score.notnull() & table.action.notnull())
    return t.mutate(truth=(t.action != "no_action").cast("int64"))


def w3_qualitylab(data: str, raw: bool) -> dict[str, Any]:
    """Histogram in the engine, then sweep, ROC, PR, AUC and calibration in pandas."""
    import ibis

    from qualitylab import aieval as ae

    if raw:  # the Parquet files as they are, without the contract's typing and quarantine
        con = ibis.duckdb.connect()
        table = con.read_parquet(_decisions_glob(data))
    else:
        import qualitylab as ql

        table = ql.open_dataset(data).table("decisions")
    t = _w3_table(None, table)
    hist = ae.score_histogram(t, bins=1000)
    sweep = ae.threshold_sweep(hist)
    roc = ae.roc_curve(hist)
    pr = ae.pr_curve(hist)
    auc = ae.auc_roc(hist)
    ap = ae.average_precision(hist)
    cal = ae.calibration(ae.calibration_histogram(t, n_bins=10))
    n = int(hist["pos"].sum() + hist["neg"].sum())
    return {
        "scores": n,
        "auc": float(auc),
        "average_precision": float(ap),
        "brier": float(cal.brier),
        "thresholds": len(sweep),
        "roc_points": len(roc),
        "pr_points": len(pr),
    }


def w3_sklearn(data: str) -> dict[str, Any]:
    """Read the two columns into numpy, then scikit-learn on the raw arrays."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.dataset as pds
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import (
        average_precision_score,
        brier_score_loss,
        precision_recall_curve,
        roc_auc_score,
        roc_curve,
    )

    src = Path(data) / "decisions"
    dset = pds.dataset(src if src.is_dir() else Path(data) / "decisions.parquet")
    tab = dset.to_table(
        columns=["ai_score", "action"],
        filter=pc.field("ai_score").is_valid() & pc.field("action").is_valid(),
    )
    s = tab["ai_score"].to_numpy()
    y = pc.not_equal(tab["action"], "no_action").to_numpy(zero_copy_only=False).astype(np.int8)
    del tab
    auc = roc_auc_score(y, s)
    fpr, tpr, thr = roc_curve(y, s)
    prec, rec, _ = precision_recall_curve(y, s)
    ap = average_precision_score(y, s)
    calibration_curve(y, s, n_bins=10, strategy="uniform")
    brier = brier_score_loss(y, s)
    return {
        "scores": len(s),
        "auc": float(auc),
        "average_precision": float(ap),
        "brier": float(brier),
        "roc_points": len(fpr),
        "pr_points": len(prec),
    }


def w4_run(data: str, jobs: int) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix=f"ql-bench-w4-j{jobs}-"))
    try:
        proc = subprocess.run(
            [
                _qualitylab(),
                "run",
                "--markets",
                "all",
                "--data",
                data,
                "--out",
                str(out),
                "--jobs",
                str(jobs),
            ],
            capture_output=True,
            text=True,
        )
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"returncode": proc.returncode, "tail": " | ".join(tail)[-300:]}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def w5_prepare(data: str, market: str) -> dict[str, Any]:
    """Before the clock: open the data once (fills the check memo) and make the day's plan."""
    import qualitylab as ql
    from qualitylab.watch import default_now, tick, watch_plan

    ds = ql.open_dataset(data)
    now = default_now(ds, market)
    started = time.perf_counter()
    plan = watch_plan(ds, market, now)
    plan_s = time.perf_counter() - started
    tick(ds, market, now=now, plan=plan)  # warm-up tick, not timed
    return {"plan": plan, "plan_seconds": plan_s}


def w5_tick(data: str, market: str, plan: Any) -> dict[str, Any]:
    """One tick as the watch loop does it: re-open the source, find now, tick."""
    import qualitylab as ql
    from qualitylab.watch import default_now, tick

    ds = ql.open_dataset(data)
    now = default_now(ds, market)
    frame = tick(ds, market, now=now, plan=plan)
    started = time.perf_counter()
    tick(ds, market, now=now, plan=plan)
    return {
        "queues": len(frame),
        "open_items": int(frame["open_items"].sum()),
        "arrivals_60m": int(frame["arrivals_60m"].sum()),
        "tick_open_dataset_s": round(time.perf_counter() - started, 3),
    }


def w6_scorecard(data: str, market: str, repeats: int = 10) -> dict[str, Any]:
    """``ql.scorecard`` as an analyst calls it in a live kernel: first, remembered, engine."""
    import qualitylab as ql

    ds = ql.open_dataset(data)
    by = ["vendor", "queue"]
    started = time.perf_counter()
    first = ql.scorecard(ds, market, by=by)
    first_s = time.perf_counter() - started
    warm, engine = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        ql.scorecard(ds, market, by=by)
        warm.append(time.perf_counter() - started)
    sliced = ds.for_market(market)
    for _ in range(repeats):
        sliced._memo.clear()  # noqa: SLF001 - measure the engine path on the warm slice
        started = time.perf_counter()
        ql.scorecard(ds, market, by=by)
        engine.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(warm),
        "first_s": round(first_s, 3),
        "engine_median_s": round(statistics.median(engine), 3),
        "rows": len(first),
    }


def w6_explorer(data: str, market: str) -> dict[str, Any]:
    """Notebook 01's explorer widget: 10 changes of metric or dimension (query and chart)."""
    import contextlib
    import io

    from qualitylab import report

    ctx = report.context(data, market, weeks=4, prefetch_alerts=False)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        box = report.explorer(ctx, by="vendor")
    first_s = time.perf_counter() - started
    metric_w, dim_w = box.children[0].children
    changes = [
        (dim_w, "site"),
        (metric_w, "sla_compliance"),
        (dim_w, "queue"),
        (metric_w, "response_p90"),
        (dim_w, "language"),
        (metric_w, "accuracy"),
        (dim_w, "policy"),
        (dim_w, "vendor"),
        (metric_w, "sla_compliance"),
        (dim_w, "site"),
    ]
    times = []
    for widget, value in changes:
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            widget.value = value
        times.append(time.perf_counter() - started)
    return {
        "median_s": statistics.median(times),
        "first_s": round(first_s, 3),
        "max_s": round(max(times), 3),
        "changes": len(times),
    }


# --------------------------------------------------------------------------- #
# child process: one measurement
# --------------------------------------------------------------------------- #
def child(spec: dict[str, Any]) -> dict[str, Any]:
    warnings.simplefilter("ignore")
    kind = spec["kind"]
    data = spec["data"]
    # the contract-check memo (sources.check_memo_dir): a shared folder (warm after
    # the first run) or, for a cold measurement, a new empty one per run
    memo = spec.get("memo") or tempfile.mkdtemp(prefix="ql-memo-")
    os.environ["QUALITYLAB_CACHE_DIR"] = memo
    # import the heavy modules before the clock starts
    import pandas  # noqa: F401

    import qualitylab  # noqa: F401
    import qualitylab.aieval  # noqa: F401
    import qualitylab.detect  # noqa: F401

    fn: Callable[[], Any]
    if kind.startswith("W1:"):
        start, end = date.fromisoformat(spec["start"]), date.fromisoformat(spec["end"])
        impl = {"qualitylab": w1_qualitylab, "sql": w1_sql, "pandas": w1_pandas}[kind[3:]]
        if kind == "W1:sql":
            import duckdb  # noqa: F401
        fn = lambda: impl(data, start, end)  # noqa: E731
    elif kind == "W2":
        fn = lambda: w2_scan(data, spec["markets"])  # noqa: E731
    elif kind == "W3:qualitylab":
        fn = lambda: w3_qualitylab(data, raw=False)  # noqa: E731
    elif kind == "W3:qualitylab-raw":
        fn = lambda: w3_qualitylab(data, raw=True)  # noqa: E731
    elif kind == "W3:sklearn":
        import sklearn.metrics  # noqa: F401

        fn = lambda: w3_sklearn(data)  # noqa: E731
    elif kind == "W4":
        fn = lambda: w4_run(data, int(spec["jobs"]))  # noqa: E731
    elif kind == "W5":
        prep = w5_prepare(data, spec["market"])
        fn = lambda: {  # noqa: E731
            **w5_tick(data, spec["market"], prep["plan"]),
            "plan_s": round(prep["plan_seconds"], 2),
        }
    elif kind == "W4:floor":
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from batch_floor import measure_floor

        fn = lambda: measure_floor(data, int(spec["jobs"]))  # noqa: E731
    elif kind == "W6:scorecard":
        fn = lambda: w6_scorecard(data, spec["market"])  # noqa: E731
    elif kind == "W6:explorer":
        fn = lambda: w6_explorer(data, spec["market"])  # noqa: E731
    else:
        raise SystemExit(f"unknown benchmark kind {kind}")
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    if kind.startswith("W6:"):  # the answer time an analyst waits, not the whole session
        seconds = result.pop("median_s")
    if kind == "W4:floor":  # the trivial batch's wall time, without counting the notebooks
        seconds = result["floor_s"]
    info: dict[str, Any] = {}
    if kind.startswith("W1:"):
        if spec.get("save"):
            _w1_tidy(result).to_parquet(spec["save"])
        info = {"rows": len(result)}
    else:
        info = result
    return {
        "seconds": seconds,
        "rss_mb": _peak_rss_mb(),
        "children_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "info": info,
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM).

    ``ru_maxrss`` is not used for the process itself: Linux carries a parent's
    resident set at ``fork`` into the child's ``ru_maxrss`` across ``exec``, so
    every measurement read at least the benchmark driver's own size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(spec: dict[str, Any], runs: int) -> dict[str, Any]:
    """Run `spec` `runs` times, each in a fresh process; median time, peak memory."""
    times, rss, info, errors = [], [], {}, []
    for i in range(runs):
        s = dict(spec)
        if i > 0:
            s.pop("save", None)
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(s)],
            capture_output=True,
            text=True,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            errors.append((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"])
            break
        res = json.loads(lines[-1])
        times.append(res["seconds"])
        rss.append(max(res["rss_mb"], res["children_rss_mb"]))
        info = res["info"]
    if not times:
        return {"error": errors[0][0] if errors else "failed", "runs": 0}
    return {
        "median": statistics.median(times),
        "min": min(times),
        "max": max(times),
        "runs": len(times),
        "rss_mb": max(rss),
        "info": info,
    }


# --------------------------------------------------------------------------- #
# orchestration
# --------------------------------------------------------------------------- #
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.rows: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.tmp = Path(tempfile.mkdtemp(prefix="ql-bench-"))
        self.memo = str(self.tmp / "memo")  # shared by every run: warm after the first

    def add(self, workload: str, variant: str, data: str, res: dict[str, Any], **extra: Any):
        row = {"workload": workload, "variant": variant, "data": data, **res, **extra}
        self.rows.append(row)
        if "error" in res:
            print(f"  {workload} {variant} [{data}]: FAILED {res['error']}", flush=True)
        else:
            print(
                f"  {workload} {variant} [{data}]: median {res['median']:.2f} s "
                f"({res['runs']} runs), peak {res['rss_mb']:.0f} MB",
                flush=True,
            )
        return row

    def w1(self, data: str, label: str, runs: int, baselines: bool = True) -> None:
        start, end = _w1_period(data)
        print(f"W1 on {label}: {start}..{end}", flush=True)
        saved = {}
        impls = ("qualitylab", "sql", "pandas") if baselines else ("qualitylab",)
        for impl in impls:
            saved[impl] = self.tmp / f"w1-{label}-{impl}.parquet"
            spec = {
                "kind": f"W1:{impl}",
                "data": data,
                "start": str(start),
                "end": str(end),
                "save": str(saved[impl]),
                "memo": self.memo,
            }
            if impl == "qualitylab":
                # cold: no memo of which contract checks the files fail, so the
                # one checking pass per table is timed; warm: remembered from the
                # run before (warm-up run not counted)
                cold = {**spec, "memo": None, "save": None}
                self.add("W1", "qualitylab-cold", label, measure(cold, runs))
                measure({**spec, "save": None}, 1)
            self.add("W1", impl, label, measure(spec, runs))
        if not baselines:
            return
        import pandas as pd

        ok = [i for i in impls if saved[i].exists()]
        if "qualitylab" in ok:
            ql = pd.read_parquet(saved["qualitylab"])
            for impl in ("sql", "pandas"):
                if impl in ok:
                    cmp = _compare(ql, pd.read_parquet(saved[impl]))
                    self.agreement[(label, impl)] = cmp

    def run(self) -> None:
        a = self.args
        wanted = set(a.workloads)
        large, demo = Path(a.large), Path(a.demo)
        self.gen_large = ensure_data(large, "large")
        self.gen_demo = ensure_data(demo, "demo")
        self.agreement: dict[tuple[str, str], dict[str, Any]] = {}
        if wanted & {"growth"}:
            samples = {
                k: ensure_sample(large, n, large.with_name(f"{large.name}-{k.lower()}"))
                for k, n in SAMPLES.items()
            }
        if "W1" in wanted:
            self.w1(str(large), "large", a.runs)
        if "W2" in wanted:
            print("W2 scan", flush=True)
            heavy = a.runs if a.heavy_runs is None else a.heavy_runs
            for label, data in (("demo", demo), ("large", large)):
                self.add(
                    "W2",
                    f"scan {SCAN_MARKET} (90 days)",
                    label,
                    measure(
                        {
                            "kind": "W2",
                            "data": str(data),
                            "markets": SCAN_MARKET,
                            "memo": self.memo,
                        },
                        a.runs,
                    ),
                )
                self.add(
                    "W2",
                    "scan all 10 markets",
                    label,
                    measure(
                        {"kind": "W2", "data": str(data), "markets": "all", "memo": self.memo},
                        heavy,
                    ),
                )
        if "W3" in wanted:
            print("W3 AI evaluation", flush=True)
            for impl in ("qualitylab", "qualitylab-raw", "sklearn"):
                self.add(
                    "W3",
                    impl,
                    "large",
                    measure({"kind": f"W3:{impl}", "data": str(large), "memo": self.memo}, a.runs),
                )
        if "W4" in wanted:
            print("W4 batch run", flush=True)
            heavy = a.runs if a.heavy_runs is None else a.heavy_runs
            for jobs in a.w4_jobs:
                self.add(
                    "W4",
                    f"run --markets all --jobs {jobs}",
                    "demo",
                    measure(
                        {"kind": "W4", "data": str(demo), "jobs": jobs, "memo": self.memo},
                        heavy,
                    ),
                )
            jobs = max(a.w4_jobs)
            self.add(
                "W4",
                f"floor: trivial notebooks, --jobs {jobs}",
                "demo",
                measure(
                    {"kind": "W4:floor", "data": str(demo), "jobs": jobs, "memo": self.memo}, 1
                ),
            )
        if "W5" in wanted:
            print("W5 queue watch tick", flush=True)
            self.add(
                "W5",
                f"tick {SCAN_MARKET} (warm)",
                "large",
                measure(
                    {"kind": "W5", "data": str(large), "market": SCAN_MARKET, "memo": self.memo},
                    a.runs,
                ),
            )
        if "W6" in wanted:
            print("W6 interactive", flush=True)
            self.add(
                "W6",
                f"scorecard {SCAN_MARKET} by vendor x queue",
                "large",
                measure(
                    {
                        "kind": "W6:scorecard",
                        "data": str(large),
                        "market": SCAN_MARKET,
                        "memo": self.memo,
                    },
                    a.runs,
                ),
            )
            self.add(
                "W6",
                f"01 explorer widget change ({SCAN_MARKET})",
                "demo",
                measure(
                    {
                        "kind": "W6:explorer",
                        "data": str(demo),
                        "market": SCAN_MARKET,
                        "memo": self.memo,
                    },
                    a.runs,
                ),
            )
        if "growth" in wanted:
            print("growth", flush=True)
            sizes = [(k, str(p)) for k, p in samples.items()]
            sizes.append(("10M", str(large)))
            for label, data in sizes:
                if label == "10M" and "W1" in wanted:
                    continue  # measured above
                self.w1(
                    data,
                    f"large-{label.lower()}" if label != "10M" else "large",
                    a.runs,
                    baselines=False,
                )
            for label, data in sizes:
                if label == "10M" and "W2" in wanted:
                    continue
                self.add(
                    "W2",
                    f"scan {SCAN_MARKET} (90 days)",
                    f"large-{label.lower()}" if label != "10M" else "large",
                    measure(
                        {"kind": "W2", "data": data, "markets": SCAN_MARKET, "memo": self.memo},
                        a.runs,
                    ),
                )
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---------------------------------------------------------------- report
    def table(self) -> str:
        rows_of = _rows_of(self.args)
        ref: dict[tuple[str, str], float] = {}
        for r in self.rows:
            if "median" in r:
                ref[(r["workload"], r["variant"], r["data"])] = r["median"]
        lines = [
            "| workload | variant | data (decisions) | runs | median s | min–max s | ratio | peak RSS MB | notes |",
            "|---|---|---|---:|---:|---:|---|---:|---|",
        ]
        for r in self.rows:
            data = f"{r['data']} ({rows_of.get(r['data'], '?')})"
            if "error" in r:
                lines.append(
                    f"| {r['workload']} | {r['variant']} | {data} | 0 | – | – | – | – | FAILED: {r['error'][:120]} |"
                )
                continue
            ratio = ""
            if r["workload"] == "W1" and r["variant"].startswith("qualitylab"):
                parts = []
                for b in ("sql", "pandas"):
                    t = ref.get(("W1", b, r["data"]))
                    if t:
                        parts.append(f"{r['median'] / t:.2f}× {b}")
                ratio = ", ".join(parts)
            if r["workload"] == "W3" and r["variant"].startswith("qualitylab"):
                t = ref.get(("W3", "sklearn", r["data"]))
                ratio = f"{r['median'] / t:.2f}× sklearn" if t else ""
            if r["workload"] == "W4" and r["variant"].startswith("run"):
                jobs = r["variant"].rsplit(" ", 1)[-1]
                parts = []
                t = ref.get(("W4", r["variant"][: -len(jobs)] + "1", r["data"]))
                if t and jobs != "1":
                    parts.append(f"{r['median'] / t:.2f}× jobs 1")
                f = ref.get(("W4", f"floor: trivial notebooks, --jobs {jobs}", r["data"]))
                if f:
                    parts.append(f"{r['median'] / f:.2f}× its floor")
                ratio = ", ".join(parts)
            lines.append(
                f"| {r['workload']} | {r['variant']} | {data} | {r['runs']} | {r['median']:.2f} | "
                f"{r['min']:.2f}–{r['max']:.2f} | {ratio} | {r['rss_mb']:.0f} | {_note(r)} |"
            )
        return "\n".join(lines)

    def agreement_text(self) -> str:
        if not self.agreement:
            return ""
        out = [
            "W1 agreement (qualitylab vs baseline, per market × vendor × queue × day segment; "
            "counts must match exactly, rates to 1e-9, percentiles within the 5% histogram bin):",
            "",
            "| baseline | metric | segments | max difference | agree |",
            "|---|---|---:|---:|---|",
        ]
        for (label, impl), cmp in self.agreement.items():
            for metric, c in cmp.items():
                diff = (
                    f"{c['max_abs_diff']:.2e}"
                    if "max_abs_diff" in c
                    else (
                        f"{c['max_rel_diff']:.1%} rel. ({c['share_within_5pct']:.1%} within 5%)"
                        if "max_rel_diff" in c
                        else "–"
                    )
                )
                out.append(
                    f"| {impl} ({label}) | {metric} | {c['segments']}/{c['baseline_segments']} | "
                    f"{diff} | {_verdict(c)} |"
                )
        return "\n".join(out)


def _verdict(c: dict[str, Any]) -> str:
    if c["segments"] == 0 and c["baseline_segments"] == 0:
        return "n/a (no segment with ≥1,000 items, all decided)"
    return "yes" if c["agree"] else "NO"


def _note(r: dict[str, Any]) -> str:
    info = r.get("info") or {}
    if r["workload"] == "W3":
        return f"{info.get('scores', 0):,} scores, AUC {info.get('auc', float('nan')):.6f}"
    if r["workload"] == "W2":
        return f"{info.get('alerts')} alerts"
    if r["workload"] == "W4" and "floor_s" in info:
        return (
            f"{info.get('notebooks')} notebooks of kernel start, imports and HTML export only; "
            f"{info.get('per_notebook_s')} s per notebook slot"
        )
    if r["workload"] == "W4":
        return (
            "ok"
            if info.get("returncode") == 0
            else f"exit {info.get('returncode')}: {info.get('tail', '')}"
        )
    if r["workload"] == "W1":
        return f"{info.get('rows', 0):,} KPI rows"
    if r["workload"] == "W6" and "first_s" in info and "engine_median_s" in info:
        return (
            f"median of 10 repeated calls (the slice remembers); first call "
            f"{info['first_s']} s; engine (memo cleared) median {info['engine_median_s']} s; "
            f"{info.get('rows', 0)} rows"
        )
    if r["workload"] == "W6" and "first_s" in info:
        return (
            f"median of {info.get('changes')} changes, largest {info.get('max_s')} s; "
            f"first draw {info['first_s']} s"
        )
    if r["workload"] == "W5":
        return (
            f"{info.get('queues')} queues, {info.get('open_items')} open; tick on the open "
            f"dataset {info.get('tick_open_dataset_s')} s; day's plan {info.get('plan_s')} s"
        )
    return ""


def _rows_of(args: argparse.Namespace) -> dict[str, str]:
    import duckdb

    out = {}
    large = Path(args.large)
    for label, path in (
        ("demo", Path(args.demo)),
        ("large", large),
        *[(f"large-{k.lower()}", large.with_name(f"{large.name}-{k.lower()}")) for k in SAMPLES],
    ):
        if path.exists():
            n = duckdb.sql(
                f"SELECT count(*) FROM read_parquet('{_decisions_glob(str(path))}')"
            ).fetchone()[0]
            out[label] = f"{n / 1e6:.2f}M"
    return out


def machine() -> str:
    import duckdb
    import ibis
    import pandas as pd

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    try:
        import sklearn

        skl = sklearn.__version__
    except ImportError:
        skl = "absent"
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, DuckDB {duckdb.__version__}, ibis {ibis.__version__}, "
        f"pandas {pd.__version__}, scikit-learn {skl}. Load average at start: {load}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument(
        "--workloads",
        default=os.environ.get("BENCH") or ",".join(WORKLOADS),
        help="comma-separated subset of W1,W2,W3,W4,W5,W6,growth (default: all, or $BENCH)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--w4-jobs",
        default="1,2",
        type=lambda v: [int(x) for x in v.split(",")],
        help="--jobs values of the W4 batch runs (default 1,2)",
    )
    parser.add_argument(
        "--heavy-runs",
        type=int,
        default=1,
        help="runs for the all-market scans and the batch run (default 1: minutes each)",
    )
    parser.add_argument("--large", default="data/large")
    parser.add_argument("--demo", default="data/demo")
    parser.add_argument(
        "--out", default=None, help="results file (default benchmarks/results/<date>.md)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(json.loads(args.child)), default=str))
        return 0
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload(s) {bad}; choose from {', '.join(WORKLOADS)}")
    desc = machine()
    started = time.perf_counter()
    bench = Bench(args)
    bench.run()
    total = time.perf_counter() - started
    gen = []
    if bench.gen_large is not None:
        gen.append(f"`large` data generated in {bench.gen_large:.0f} s")
    if bench.gen_demo is not None:
        gen.append(f"`demo` in {bench.gen_demo:.0f} s")
    text = "\n".join(
        [
            f"# Benchmarks {date.today().isoformat()}",
            "",
            f"Machine: {desc}.",
            "",
            f"Workloads: {', '.join(args.workloads)}; wall time of the whole run {total / 60:.1f} min."
            + (" " + "; ".join(gen) + "." if gen else ""),
            "Each measurement is a fresh process (imports not timed); peak RSS is that process's"
            " (W4: the largest of the CLI process and its workers/kernels).",
            "`qualitylab-cold` opens the data with no memo of which contract checks its files"
            " fail (one checking pass per table is timed); every other qualitylab run shares the"
            " memo of the runs before it (`sources.check_memo_dir`), as repeated analyses on"
            " unchanged files do.",
            "",
            bench.table(),
            "",
            bench.agreement_text(),
            "",
        ]
    )
    print()
    print(text)
    if not args.no_write:
        out = Path(args.out or f"benchmarks/results/{date.today().isoformat()}.md")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
