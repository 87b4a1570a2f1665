"""Daily series from the engine: every metric of every segment of a dimension, one day a row.

A scan loads a market once per metric family: operational metrics (volume,
SLA, response percentiles, AI workflow rates) in one aggregation, QA and AI
metrics through :mod:`qualitylab.measure.metrics` and
:mod:`qualitylab.measure.aieval`, for every dimension at once on decisions
stacked per dimension (:func:`load_dimensions`); red-team recall per attack
(:func:`daily_red_team`). Each returns a long table ``segment, date, metric,
value, n`` (plus the day's volume and the response-time spread).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from qualitylab.detection.detect.vocabulary import CONTENT_DIMENSIONS, RATE_AI, RATE_QA, TIMES
from qualitylab.errors import QualityLabError


def _daily_operational(
    ds: Any,
    market: str,
    dim: str | None,
    start: date,
    end: date,
    *,
    stack: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per (segment, day): volume, SLA, response percentiles and AI workflow rates, one query.

    Same definitions as :func:`qualitylab.metrics.operational_metrics` on
    days that are fully observed: items created that day; SLA met when decided
    within the queue's SLA, breached when decided later or still pending past
    it; items still pending and younger than their SLA at the end of the
    period are censored (left out of ``sla_compliance``'s n). Percentiles are
    exact (the metrics module's Kaplan-Meier estimate works on 5% bins) and
    NaN on days with items still pending (not final yet).
    ``auto_action_rate`` and ``override_rate`` are those of
    :func:`qualitylab.metrics.ai_workflow_metrics` (decided items; overrides
    among ``ai_assisted`` ones).

    ``dim=None`` groups by ``dimension, segment`` instead: of a dataset whose
    decisions are already stacked (:meth:`Dataset.stacked`), or, with
    ``stack`` (dimensions), of ``ds``'s decisions stacked here once per
    dimension *after* each decision's flags and response time are computed,
    keeping only the columns the aggregation reads (the same numbers as a
    stacked dataset; the row expressions run once per decision instead of
    once per decision and dimension, ~2.5x faster on the large demo data).
    """
    import ibis

    from qualitylab.data.localtime import epoch_seconds, period_bounds_utc
    from qualitylab.measure.metrics import decisions_in_period, override_expr
    from qualitylab.measure.scope import Period

    mp = ds.params.market(market)
    period = Period(start, end)
    dec = decisions_in_period(ds, market=market, period=period)
    as_of = period_bounds_utc(start, end, mp.timezone)[1]
    end_lit = ibis.literal(as_of)
    decided = dec.decided_at.notnull() & (dec.decided_at < end_lit)
    stop = ibis.ifelse(decided, dec.decided_at, end_lit)
    secs = (epoch_seconds(stop) - epoch_seconds(dec.created_at)).cast("float64")
    slas = dict(mp.sla_seconds)
    sla = (
        ibis.cases(*[(dec.queue == q, ibis.literal(float(s))) for q, s in slas.items()], else_=None)
        if slas
        else ibis.null("float64")
    )
    within = decided & (secs <= sla)
    breach = sla.notnull() & ~within & (decided | (secs > sla))
    resp = ibis.ifelse(decided, secs, ibis.null("float64"))
    # the AI workflow rates of metrics.ai_workflow_metrics, in the same pass
    acted = dec.action.notnull()
    assisted = acted & (dec.routing == "ai_assisted")
    keys = [dim, "date"] if dim is not None else ["dimension", "segment", "date"]
    # one row per decision: the flags the aggregation sums, and the response time
    flags = {
        "_within": within.cast("int64"),
        "_sla": (within | breach).cast("int64"),
        "_pending": (~decided).cast("int64"),
        "_resp": resp,
        "_acted": acted.cast("int64"),
        "_auto": (acted & (dec.routing == "ai_auto")).cast("int64"),
        "_assisted": assisted.cast("int64"),
        "_over": (assisted & override_expr(dec)).cast("int64"),
    }
    if dim is None and stack is not None:
        dims = list(stack)
        rows = dec.select(*dict.fromkeys([*dims, "date"]), **flags)
        cols = ["date", *flags]
        rows = ibis.union(
            *[
                rows.select(
                    dimension=ibis.literal(d),
                    segment=rows[d].cast("string"),
                    **{c: rows[c] for c in cols},
                )
                for d in dims
            ],
            distinct=False,
        )
    else:
        rows = dec.select(*keys, **flags)
    agg = (
        rows.group_by(keys)
        .aggregate(
            volume=rows.count(),
            sla_k=rows["_within"].sum(),
            sla_n=rows["_sla"].sum(),
            pending=rows["_pending"].sum(),
            # the three percentiles in one pass over each group's values
            _q=rows["_resp"].quantile([0.5, 0.9, 0.99]),
            wf_decided=rows["_acted"].sum(),
            wf_auto=rows["_auto"].sum(),
            wf_assisted=rows["_assisted"].sum(),
            wf_overrides=rows["_over"].sum(),
        )
        .to_pandas()
    )
    qs = np.full((len(agg), len(TIMES)), np.nan)
    for i, v in enumerate(agg.pop("_q")):
        if isinstance(v, (list, np.ndarray)):  # null: no decided item that day
            qs[i] = [np.nan if x is None else x for x in v]
    pending = (agg["pending"] == 0).to_numpy()
    for j, c in enumerate(("response_p50", "response_p90", "response_p99")):
        # a day with items still pending has no final percentile yet
        agg[c] = pd.Series(qs[:, j], index=agg.index).where(pending)
    if dim is not None:
        agg = agg.rename(columns={dim: "segment"})
    agg = agg[agg["segment"].notna()]
    agg["date"] = pd.to_datetime(agg["date"]).dt.normalize()
    rows = [
        agg.assign(metric="volume", value=agg["volume"].astype(float), n=agg["volume"]),
        agg.assign(
            metric="sla_compliance",
            value=agg["sla_k"] / agg["sla_n"].where(agg["sla_n"] > 0),
            n=agg["sla_n"],
        ),
    ]
    rows += [agg.assign(metric=c, value=agg[c], n=agg["volume"]) for c in TIMES]
    for metric, k, n in (
        ("auto_action_rate", "wf_auto", "wf_decided"),
        ("override_rate", "wf_overrides", "wf_assisted"),
    ):
        nn = agg[n].astype(float)
        rows.append(agg.assign(metric=metric, value=agg[k] / nn.where(nn > 0), n=nn))
    out = pd.concat(rows, ignore_index=True)
    out["volume_day"] = out["volume"].astype(float)
    # log-scale spread of response times per segment, (log p90 - log p50) / z_0.9
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = (np.log(agg["response_p90"]) - np.log(agg["response_p50"])) / sps.norm.ppf(0.9)
    if dim is not None:
        disp = spread.groupby(agg["segment"]).median()
        out["dispersion"] = out["segment"].map(disp).astype(float)
        return out[["segment", "date", "metric", "value", "n", "volume_day", "dispersion"]]
    disp = spread.groupby([agg["dimension"], agg["segment"]]).median()
    idx = pd.MultiIndex.from_frame(out[["dimension", "segment"]])
    out["dispersion"] = disp.reindex(idx).to_numpy(float)
    return out[["dimension", "segment", "date", "metric", "value", "n", "volume_day", "dispersion"]]


def series_grids(
    long: pd.DataFrame, dates: pd.DatetimeIndex, columns: Sequence[str]
) -> tuple[pd.MultiIndex, list[np.ndarray]]:
    """Each column of a long table as a ``(metric, segment) x day`` grid.

    `long` has one row per ``metric, segment, date`` (dates among `dates`).
    Returns the sorted ``(metric, segment)`` pairs and, per column, a float
    array with one row per pair and one column per date of `dates` (NaN where
    `long` has no row): the values of ``long.pivot(...).reindex(columns=dates)
    .sort_index()``, placed directly instead of one pivot per column.

    Examples
    --------
    >>> days = pd.date_range("2026-01-01", periods=3)
    >>> long = pd.DataFrame({"metric": ["volume", "accuracy", "volume"],
    ...     "segment": ["A", "A", "B"], "date": days[[0, 1, 2]], "n": [5, 7, 9]})
    >>> rows, (n,) = series_grids(long, days, ["n"])
    >>> rows.tolist(), n.tolist()
    ([('accuracy', 'A'), ('volume', 'A'), ('volume', 'B')], [[nan, 7.0, nan], [5.0, nan, nan], [nan, nan, 9.0]])
    """
    keys = pd.MultiIndex.from_frame(long[["metric", "segment"]])
    rows = pd.Series(0, index=keys.unique()).sort_index().index
    r = rows.get_indexer(keys)
    c = dates.get_indexer(pd.DatetimeIndex(long["date"]))
    on = c >= 0  # rows on other dates are left out, as the reindex leaves them
    grids = []
    for col in columns:
        grid = np.full((len(rows), len(dates)), np.nan)
        grid[r[on], c[on]] = long[col].to_numpy(dtype=float, na_value=np.nan)[on]
        grids.append(grid)
    return rows, grids


def daily_red_team(ds: Any, market: str, start: date, end: date) -> pd.DataFrame:
    """red_team_recall per attack and market-local day, in one engine query.

    As :func:`qualitylab.redteam.red_team_evaluation`: recall = violating
    red-team items (``policy != "none"``) the model flags at the market's
    ``ai_threshold``, over violating items; ``attack == "none"`` are the
    clean controls.
    """
    from qualitylab.data.localtime import local_date, period_bounds_utc

    mp = ds.params.market(market)
    lo, hi = period_bounds_utc(start, end, mp.timezone)
    rt = ds.table("red_team")
    rt = rt.filter((rt.market == market) & (rt.created_at >= lo) & (rt.created_at < hi))
    rt = rt.filter(rt.policy.notnull() & (rt.policy != "none") & rt.ai_score.notnull())
    rt = rt.mutate(date=local_date(rt.created_at, mp.timezone, start=lo, end=hi))
    agg = (
        rt.group_by(["attack", "date"])
        .aggregate(n=rt.count(), k=(rt.ai_score >= mp.ai_threshold).cast("int64").sum())
        .to_pandas()
    )
    out = pd.DataFrame(
        {
            "segment": agg["attack"].astype(str),
            "date": pd.to_datetime(agg["date"]).dt.normalize(),
            "metric": "red_team_recall",
            "value": agg["k"] / agg["n"],
            "n": agg["n"].astype(float),
        }
    )
    out["volume_day"] = out["n"]
    out["dispersion"] = np.nan
    return out


def _tidy(frame: pd.DataFrame, dim: str) -> pd.DataFrame:
    out = frame.rename(columns={dim: "segment"})[["segment", "date", "metric", "value", "n"]]
    out = out[out["segment"].notna()]
    out = out.assign(date=pd.to_datetime(out["date"]).dt.normalize())
    return out


def _ai_metrics_fn() -> Any:
    try:
        from qualitylab.measure.aieval import ai_metrics
    except ImportError:
        return None
    return ai_metrics


def load_dimensions(
    ds: Any, market: str, dims: list[str], start: date, end: date, wanted: set[str]
) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """:func:`_load_dimension` for several dimensions, from one query per metric family.

    The decisions are stacked once per dimension (:meth:`Dataset.stacked`) and
    grouped by ``(dimension, segment, date)``: the same numbers as one load
    per dimension, with a third of the engine queries (each costs ~0.1 s of
    ibis compilation on any data size).
    """
    from qualitylab.measure import metrics as qm

    if not hasattr(ds, "stacked"):  # a dataset-like object without stacking
        return {d: _load_dimension(ds, market, d, start, end, wanted) for d in dims}
    notes: list[str] = []
    stacked = ds.stacked(dims)
    ops = _daily_operational(ds, market, None, start, end, stack=dims)
    keys = ["dimension", "segment", "date"]
    volume = ops[ops["metric"] == "volume"][[*keys, "volume_day", "dispersion"]]
    parts = [ops[ops["metric"].isin(wanted)].drop(columns=["volume_day", "dispersion"])]
    kw = {"market": market, "by": keys, "start": start, "end": end}
    # The audits are joined to the decisions once and the (few) joined rows are
    # stacked, rather than joining them to the stacked decisions (every decision
    # once per dimension): the same rows and numbers, a fraction of the work. When
    # the audits carry a column named like a dimension, the join would rename the
    # decisions' one, so the stacked dataset is used as before.
    join_first = ds.has("qa_audits") and not set(dims) & set(ds.table("qa_audits").columns)
    mp = ds.params.market(market)
    if wanted & set(RATE_QA):
        if not ds.has("qa_audits"):
            notes.append("qa_audits is not in the dataset")
        elif join_first:
            parts.append(_tidy_stacked(_qa_stacked(ds, market, dims, start, end)))
        else:
            parts.append(_tidy_stacked(qm.qa_metrics(stacked, **kw)))
    content = [d for d in dims if d in CONTENT_DIMENSIONS]
    if wanted & set(RATE_AI) and content:
        fn = _ai_metrics_fn()
        if fn is None:
            notes.append("qualitylab.aieval.ai_metrics is not available")
        else:
            try:
                if join_first:
                    from qualitylab.measure.aieval import confusion_at, scored_audits

                    table = _stack_rows(
                        scored_audits(ds, market=market, start=start, end=end), content
                    )
                    # the rates and their n of ai_metrics_from_audits: its second
                    # query only narrows the intervals of weighted rates, which a
                    # scan does not read (it keeps value and n)
                    ai = confusion_at(
                        table,
                        mp.ai_threshold,
                        by=keys,
                        weight="w",
                        confidence_level=mp.confidence_level,
                        f1_interval=False,
                    )
                else:
                    ai_ds = stacked if content == dims else ds.stacked(content)
                    ai = fn(ai_ds, **kw, f1_interval=False)
                parts.append(_tidy_stacked(ai))
            except QualityLabError as exc:  # e.g. no QA truth for the model
                notes.append(f"ai metrics unavailable: {exc}")
    long = pd.concat(parts, ignore_index=True)
    long = long[long["metric"].isin(wanted)]
    long = long.merge(volume, on=keys, how="left")
    long["segment"] = long["segment"].astype(str)
    out = {}
    for d in dims:
        mine = long[long["dimension"] == d].drop(columns="dimension").reset_index(drop=True)
        out[d] = (mine, list(notes))
    return out


def _stack_rows(table: Any, dims: Sequence[str]) -> Any:
    """`table`'s rows once per dimension, with ``dimension`` and ``segment`` (as text).

    The rows :meth:`Dataset.stacked` makes of the decisions, for any table that
    has the dimensions' columns (e.g. audits joined to their decisions).
    """
    import ibis

    parts = [table.mutate(dimension=ibis.literal(d), segment=table[d].cast("string")) for d in dims]
    return ibis.union(*parts, distinct=False)


def _qa_stacked(ds: Any, market: str, dims: Sequence[str], start: date, end: date) -> pd.DataFrame:
    """:func:`qualitylab.metrics.qa_metrics` by ``dimension, segment, date`` of a stacked dataset.

    The internal audits are joined to the period's decisions first and the
    joined rows stacked (:func:`_stack_rows`); same defaults as ``qa_metrics``.
    """
    from qualitylab.measure import metrics as qm
    from qualitylab.measure.scope import Period

    j = qm.audited_decisions(ds, market=market, period=Period(start, end), qa_source="internal")
    out = qm.qa_from_audits(
        _stack_rows(j, dims),
        ["dimension", "segment", "date"],
        confidence_level=ds.params.market(market).confidence_level,
    )
    if out.empty:
        warnings.warn("no audited decisions in the period; QA metrics are empty", stacklevel=2)
        return pd.DataFrame(columns=["dimension", "segment", "date", "metric", "value", "n"])
    return out


def _tidy_stacked(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame[["dimension", "segment", "date", "metric", "value", "n"]]
    out = out[out["segment"].notna()]
    return out.assign(date=pd.to_datetime(out["date"]).dt.normalize())


def _load_dimension(
    ds: Any, market: str, dim: str, start: date, end: date, wanted: set[str]
) -> tuple[pd.DataFrame, list[str]]:
    """Every daily metric of one dimension, long: segment, date, metric, value, n."""
    from qualitylab.measure import metrics as qm

    notes: list[str] = []
    ops = _daily_operational(ds, market, dim, start, end)
    volume = ops[ops["metric"] == "volume"][["segment", "date", "volume_day", "dispersion"]]
    parts = [ops[ops["metric"].isin(wanted)].drop(columns=["volume_day", "dispersion"])]
    kw = {"market": market, "by": [dim, "date"], "start": start, "end": end}
    if wanted & set(RATE_QA):
        if ds.has("qa_audits"):
            parts.append(_tidy(qm.qa_metrics(ds, **kw), dim))
        else:
            notes.append("qa_audits is not in the dataset")
    if wanted & set(RATE_AI) and dim in CONTENT_DIMENSIONS:
        fn = _ai_metrics_fn()
        if fn is None:
            notes.append("qualitylab.aieval.ai_metrics is not available")
        else:
            try:
                parts.append(_tidy(fn(ds, **kw, f1_interval=False), dim))
            except QualityLabError as exc:  # e.g. no QA truth for the model
                notes.append(f"ai metrics unavailable: {exc}")
    long = pd.concat(parts, ignore_index=True)
    long = long[long["metric"].isin(wanted)]
    long = long.merge(volume, on=["segment", "date"], how="left")
    long["segment"] = long["segment"].astype(str)
    return long, notes
