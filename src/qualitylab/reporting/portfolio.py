"""All markets side by side, a market's red scorecard items, and the explorer.

:func:`portfolio` puts every market's and vendor's scorecard together with
the biggest movers and alert counts (each market in a helper process when it
can, see :mod:`qualitylab.prefetch`); :func:`red_scorecard` lists a market's
standing red items; :func:`explorer` is the JupyterLab control to switch
metric and segment without editing code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.data.sources import Dataset, open_dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.reporting import prefetch
from qualitylab.reporting.context import ReportContext
from qualitylab.reporting.notes import SectionNote, note_reason
from qualitylab.reporting.session import alerts, context

EXPLORER_METRICS = (
    "accuracy",
    "over_enforcement_rate",
    "under_enforcement_rate",
    "wrong_policy_rate",
    "sla_compliance",
    "volume",
    "response_p90",
)
PORTFOLIO_METRICS = (
    "volume",
    "sla_compliance",
    "response_p90",
    "accuracy",
    "over_enforcement_rate",
    "qa_alignment",
    "ai_precision",
    "ai_recall",
    "override_rate",
)


def explorer(ctx: ReportContext, *, by: str = "vendor", grain: str = "week"):
    """ipywidgets controls to switch metric and segment dimension without editing code.

    Returns a widget box: dropdowns for metric and dimension; the chart below
    redraws from the library on every change. Use it in JupyterLab; scheduled
    runs pass ``interactive=False`` and skip it.
    """
    import ipywidgets as widgets
    from IPython.display import display

    from qualitylab.reporting import charts

    dims = ["vendor", "site", "queue", "language", "policy"]
    metric_w = widgets.Dropdown(
        options=list(EXPLORER_METRICS), value="accuracy", description="Metric"
    )
    dim_w = widgets.Dropdown(
        options=dims, value=by if by in dims else "vendor", description="Segment"
    )
    out = widgets.Output()

    # the market's slice (a snapshot) remembers each family x dimension it computed,
    # so switching back to a view, or between metrics of one family, does not query
    ds = ctx.ds.for_market(ctx.market) if hasattr(ctx.ds, "for_market") else ctx.ds

    def frame_for(metric: str, dim: str) -> pd.DataFrame:
        fn = m.qa_metrics if metric in m.QA_METRICS else m.operational_metrics
        key = ("explorer", fn.__name__, ctx.market, dim, grain, ctx.baseline.start, ctx.end)
        return ds.remember(
            key,
            lambda: fn(
                ds, market=ctx.market, by=[dim, grain], start=ctx.baseline.start, end=ctx.end
            ),
        )

    def redraw(*_: object) -> None:
        metric, dim = metric_w.value, dim_w.value
        frame = frame_for(metric, dim)
        with out:
            out.clear_output(wait=True)
            display(
                charts.trend_small_multiples(
                    frame, metric=metric, facet=dim, x=grain, target=ctx.params.targets.get(metric)
                )
            )

    metric_w.observe(redraw, names="value")
    dim_w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([metric_w, dim_w]), out])


@dataclass(frozen=True)
class Portfolio:
    """All markets side by side.

    ``alert_counts`` has a ``note`` column: why a market's scan found nothing
    (e.g. too short a history), empty otherwise. ``notes`` holds one
    :class:`SectionNote` per market left out because its scorecard could not
    be computed; display them in the notebook.
    """

    markets: tuple[str, ...]
    as_of: date
    by_market: pd.DataFrame
    by_vendor: pd.DataFrame
    movers: pd.DataFrame
    alert_counts: pd.DataFrame
    history: pd.DataFrame | None
    notes: tuple[SectionNote, ...] = ()


def portfolio(
    data: str | Dataset,
    markets: str | Sequence[str] = "all",
    *,
    as_of: str | date | None = None,
    weeks: int = 4,
    parameters: str | None = None,
    alerts_by_market: Mapping[str, pd.DataFrame] | None = None,
    history: pd.DataFrame | None = None,
    top: int = 15,
) -> Portfolio:
    """Scorecards of every market and vendor, the biggest movers and alert counts.

    Parameters
    ----------
    data : str or Dataset
    markets : "all" or codes
    as_of, weeks, parameters
        As in :func:`context`; each market uses its own calendar.
    alerts_by_market : mapping of market to alerts frame, optional
        Alerts already computed; otherwise those stored by the scheduled run
        (``ql_alerts``) or a fresh scan.
    history : pandas.DataFrame, optional
        Headline KPIs from earlier runs.
    """
    from qualitylab.measure.scorecard import scorecard

    ds = data if isinstance(data, Dataset) else open_dataset(data, parameters=parameters or None)
    if isinstance(markets, str) and markets.strip().lower() == "all":
        dec = ds.table("decisions")
        present = dec.select("market").distinct().to_pandas()["market"].tolist()
        codes = tuple(sorted(c for c in present if c in ds.params.markets))
    else:
        items = markets.split(",") if isinstance(markets, str) else markets
        codes = tuple(c.strip() for c in items if c.strip())
    by_market, by_vendor, counts = [], [], []
    notes: list[SectionNote] = []
    last = None
    stored = _stored_scorecards(ds)
    helped: dict[str, dict[str, Any] | None] = {}
    if (
        isinstance(data, str | Path)
        and stored is None
        and alerts_by_market is None
        and len(codes) > 1
        and prefetch.enabled()
    ):
        # markets are independent: one helper process per market, on every core
        helped = prefetch.market_summaries(
            str(data), parameters, codes, as_of=as_of or None, weeks=weeks
        )
    for code in codes:
        done = helped.get(code)
        if done is not None:
            last = max(last, done["as_of"]) if last else done["as_of"]
            by_market.append(done["by_market"])
            by_vendor.append(done["by_vendor"])
            counts.append(_alert_counts(code, done["alerts"]))
            continue
        try:
            ctx = context(ds, code, as_of=as_of, weeks=weeks)
        except ParameterError:
            raise
        except QualityLabError as exc:  # e.g. no decisions for the market: leave it out
            notes.append(SectionNote(f"Market {code}", note_reason(exc)))
            continue
        last = max(last, ctx.as_of) if last else ctx.as_of
        mine = None
        if stored is not None:
            mine = stored[
                (stored["market"] == code)
                & (stored["period_start"] == str(ctx.start))
                & (stored["period_end"] == str(ctx.end))
            ]
        if mine is not None and (mine["grain"] == "market").any():
            # computed for this period by the scheduled run's market cache
            by_market.append(_restore(mine[mine["grain"] == "market"], []))
            by_vendor.append(_restore(mine[mine["grain"] == "vendor"], ["vendor"]))
        else:
            try:
                sc_m = scorecard(ds, code, start=ctx.start, end=ctx.end)
                sc_v = scorecard(ds, code, by=["vendor"], start=ctx.start, end=ctx.end)
            except ParameterError:
                raise
            except QualityLabError as exc:  # too little data for this market's scorecard
                notes.append(SectionNote(f"Market {code}", note_reason(exc)))
                continue
            by_market.append(sc_m)
            by_vendor.append(sc_v)
        al = (
            alerts_by_market[code]
            if alerts_by_market is not None and code in alerts_by_market
            else alerts(ctx)
        )
        counts.append(_alert_counts(code, al))
    if not by_market:
        raise QualityLabError(
            "no market has data enough for a scorecard: "
            + "; ".join(f"{n.section}: {n.reason}" for n in notes)
        )
    bm = pd.concat(by_market, ignore_index=True)
    bv = pd.concat(by_vendor, ignore_index=True)
    movers = bv[(bv["p_adjusted"] < 0.05) & bv["metric"].isin(PORTFOLIO_METRICS)].copy()
    movers["size"] = movers["delta"].abs() / movers["prev_value"].abs().where(
        movers["prev_value"] != 0
    )
    movers = movers.sort_values("size", ascending=False).head(top).drop(columns=["size"])
    return Portfolio(
        codes,
        last,
        bm,
        bv,
        movers.reset_index(drop=True),
        pd.DataFrame(counts),
        history,
        tuple(notes),
    )


def _alert_counts(market: str, al: pd.DataFrame) -> dict[str, Any]:
    sev = al["severity"].value_counts() if len(al) else pd.Series(dtype=int)
    return {
        "market": market,
        "alerts": len(al),
        "high": int(sev.get("high", 0)),
        "medium": int(sev.get("medium", 0)),
        "low": int(sev.get("low", 0)),
        "note": str(al.attrs.get("note") or ""),
    }


def _stored_scorecards(ds: Dataset) -> pd.DataFrame | None:
    """Scorecards a scheduled run stored with the data (``ql_scorecard``), if any."""
    try:
        if "ql_scorecard" not in ds.backend.list_tables():
            return None
        return ds.backend.table("ql_scorecard").to_pandas()
    except Exception:  # a backend that cannot list tables: compute instead
        return None


def _restore(rows: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    from qualitylab.measure.scorecard import SCORECARD_COLUMNS

    out = rows[["market", *by, *SCORECARD_COLUMNS]].reset_index(drop=True)
    out["small_n"] = out["small_n"].astype(bool)
    if len(rows):  # the scorecard's attrs, as it returned them
        first = rows.iloc[0]
        out.attrs["period"] = (str(first["period_start"]), str(first["period_end"]))
        notes = first.get("notes") if "notes" in rows.columns else None
        out.attrs["notes"] = json.loads(notes) if isinstance(notes, str) and notes else []
    return out


#: The grains a scheduled run stores in ``ql_scorecard``, by their ``by``.
_STORED_GRAINS = {(): "market", ("vendor",): "vendor"}


def period_scorecard(ctx: ReportContext, by: Sequence[str] = ()) -> pd.DataFrame:
    """The market's scorecard for the report period, by nothing or by vendor.

    A scheduled run computes both while it extracts the market
    (``ql_scorecard`` in the market's cache); the notebook then shows those,
    instead of computing them a second time. Otherwise, and for other groupings,
    this is :func:`qualitylab.scorecard.scorecard` for ``ctx``'s market and
    period.

    Parameters
    ----------
    ctx : ReportContext
    by : sequence of str, default ()
        Grouping columns (``()`` or ``("vendor",)`` can come from the run).

    Returns
    -------
    pandas.DataFrame
        As :func:`qualitylab.scorecard.scorecard`, with its ``attrs``
        (``period``, ``notes``).

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> from qualitylab.reporting.session import context
    >>> folder = tempfile.mkdtemp()
    >>> _ = generate(folder, scale="small", seed=1, days=28, markets=["SG"])
    >>> sc = period_scorecard(context(folder, "SG", weeks=2), by=["vendor"])
    >>> sc.attrs["period"], sorted(sc["vendor"].unique())[:1]
    (('2026-11-09', '2026-11-22'), ['VendorA'])
    """
    from qualitylab.measure.scorecard import scorecard

    grain = _STORED_GRAINS.get(tuple(by))
    stored = _stored_scorecards(ctx.ds) if grain else None
    if stored is not None:
        mine = stored[
            (stored["market"] == ctx.market)
            & (stored["period_start"] == str(ctx.start))
            & (stored["period_end"] == str(ctx.end))
            & (stored["grain"] == grain)
        ]
        if len(mine):
            return _restore(mine, list(by))
    return scorecard(ctx.ds, ctx.market, by=list(by), start=ctx.start, end=ctx.end)


def red_scorecard(ctx: ReportContext) -> pd.DataFrame:
    """The market's standing red scorecard items, for the market and per vendor.

    Uses the scorecards the scheduled run stored (``ql_scorecard``) for the
    period when present, else :func:`qualitylab.scorecard.scorecard`.

    Returns
    -------
    pandas.DataFrame
        ``vendor`` (``all vendors`` for the market) then the scorecard's
        columns, red rows only, the market first.
    """
    market = period_scorecard(ctx)
    vendor = period_scorecard(ctx, by=["vendor"])
    both = pd.concat([market.assign(vendor="all vendors"), vendor], ignore_index=True)
    red = both[both["status"] == "red"]
    cols = ["vendor", *[c for c in both.columns if c not in ("vendor", "market")]]
    return red[cols].reset_index(drop=True)
