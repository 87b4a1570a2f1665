"""Notebook narrative helpers and offline, safe HTML rendering.

Notebooks call these to show text and tables built from data (always
escaped: a vendor or event description containing ``<script>`` shows as
text), and the runner calls :func:`render_html` to turn an executed notebook
into the full or the stakeholder HTML: self-contained (the vega bundle is
inlined once, no CDN script), with a title naming market and period and a
table of contents.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import nbformat
import pandas as pd

from qualitylab import metrics as m
from qualitylab.params import MarketParams
from qualitylab.sources import Dataset, open_dataset

__all__ = [
    "ReportContext",
    "context",
    "data_end",
    "escape",
    "kpi_table",
    "moderator_aliases",
    "render_html",
    "say",
    "table",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"
_RATE_WORDS = (
    "rate",
    "accuracy",
    "compliance",
    "alignment",
    "precision",
    "recall",
    "score",
    "ai_f",
)


@dataclass(frozen=True)
class ReportContext:
    """Everything a notebook needs to know about its run."""

    ds: Dataset
    market: str
    params: MarketParams
    period: m.Period
    baseline: m.Period
    as_of: date

    @property
    def start(self) -> date:
        """First day of the period."""
        return self.period.start

    @property
    def end(self) -> date:
        """Last day of the period."""
        return self.period.end

    @property
    def label(self) -> str:
        """E.g. ``"Singapore (SG), 2026-10-26 to 2026-11-22"``."""
        return f"{self.params.name} ({self.market}), {self.start} to {self.end}"


def data_end(ds: Dataset, market: str) -> date:
    """The last market-local date with decisions for a market."""
    return m.resolve_period(ds, market=market, start=None, end=None).end


def context(
    data: str | Dataset,
    market: str,
    *,
    as_of: str | date | None = None,
    weeks: int = 4,
    parameters: str | None = None,
) -> ReportContext:
    """Open the data and fix the period: the last ``weeks`` full weeks before ``as_of``.

    Parameters
    ----------
    data : str or Dataset
        Source for :func:`qualitylab.open_dataset`.
    market : str
    as_of : str or date, optional
        Defaults to the last day with data (empty string means the same).
    weeks : int, default 4
    parameters : str, optional
        Parameters folder (empty/None: found automatically).
    """
    ds = data if isinstance(data, Dataset) else open_dataset(data, parameters=parameters or None)
    mp = ds.params.market(market)
    day = m._as_date(as_of) if as_of else data_end(ds, market)
    period = m.last_full_weeks(day, weeks)
    baseline = m.Period(period.start - timedelta(days=28), period.start - timedelta(days=1))
    return ReportContext(ds, market, mp, period, baseline, day)


def escape(value: object) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


def _fmt_value(metric: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float | int):
        if any(w in metric for w in _RATE_WORDS):
            return f"{100 * float(value):.1f}%"
        if metric.startswith("response_"):
            return f"{float(value):,.0f} s"
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{float(value):,.3g}"
    return str(value)


def say(template: str, **values: object):
    """A sentence for the reader, with every value escaped.

    ``template`` is trusted text (written in the notebook) using ``{name}``
    placeholders; values are formatted and HTML-escaped.

    Examples
    --------
    >>> say("Vendor {v} leads.", v="<b>X</b>").data
    '<p>Vendor &lt;b&gt;X&lt;/b&gt; leads.</p>'
    """
    from IPython.display import HTML

    safe = {k: escape(v) for k, v in values.items()}
    return HTML(f"<p>{template.format(**safe)}</p>")


def table(
    df: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    metric_column: str | None = "metric",
    max_rows: int = 60,
    caption: str | None = None,
):
    """An escaped HTML table; rates formatted as percentages per their metric.

    Examples
    --------
    >>> t = table(pd.DataFrame({"vendor": ["<img src=x onerror=alert(1)>"],
    ...     "metric": ["accuracy"], "value": [0.9123]}))
    >>> "<img" in t.data, "91.2%" in t.data
    (False, True)
    """
    from IPython.display import HTML

    cols = list(columns or df.columns)
    head = "".join(f"<th>{escape(c)}</th>" for c in cols)
    rows = []
    for _, r in df.head(max_rows).iterrows():
        metric = str(r[metric_column]) if metric_column and metric_column in df.columns else ""
        cells = []
        for c in cols:
            v = r[c]
            if c in (
                "value",
                "ci_low",
                "ci_high",
                "target",
                "prev_value",
                "delta",
                "measured",
                "reported",
                "gap",
            ):
                text = _fmt_value(metric or c, v)
            elif c in ("p_value", "p_adjusted"):
                text = "–" if pd.isna(v) else f"{float(v):.3g}"
            elif c == "status":
                text = f'<span class="ql-{escape(v)}">{escape(v)}</span>'
                cells.append(f"<td>{text}</td>")
                continue
            else:
                text = _fmt_value(c, v) if isinstance(v, float) else v
            cells.append(f"<td>{escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (
        f"<p><em>{len(df) - max_rows} more rows not shown.</em></p>" if len(df) > max_rows else ""
    )
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return HTML(
        f'<table class="ql-table">{cap}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{more}"
    )


def kpi_table(scorecard: pd.DataFrame, *, segment_columns: Sequence[str] = ()):
    """The headline KPI table: value with interval, target, status and change."""
    df = scorecard.copy()
    df["interval"] = [
        f"{_fmt_value(r.metric, r.ci_low)} – {_fmt_value(r.metric, r.ci_high)}"
        if not pd.isna(r.ci_low)
        else ""
        for r in df.itertuples()
    ]
    cols = [
        *segment_columns,
        "metric",
        "value",
        "interval",
        "n",
        "target",
        "status",
        "prev_value",
        "delta",
        "p_adjusted",
    ]
    return table(df, columns=cols)


def moderator_aliases(ids: Iterable[str], *, salt: str = "qualitylab") -> dict[str, str]:
    """Stable, non-reversible aliases for moderator ids (``M-1a2b3c``).

    Examples
    --------
    >>> moderator_aliases(["m-42"]) == moderator_aliases(["m-42"])
    True
    """
    out = {}
    for i in ids:
        if i is None or (isinstance(i, float) and pd.isna(i)):
            continue
        digest = hashlib.sha256(f"{salt}:{i}".encode()).hexdigest()[:6]
        out[str(i)] = f"M-{digest}"
    return out


def _headings(nb: nbformat.NotebookNode) -> list[tuple[int, str, str]]:
    toc = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            match = re.match(r"^(#{2,3})\s+(.*?)\s*#*\s*$", line)
            if match:
                text = match.group(2)
                toc.append((len(match.group(1)), text, text.replace(" ", "-")))
    return toc


def render_html(
    notebook: str | Path | nbformat.NotebookNode,
    out: str | Path,
    *,
    stakeholder: bool = False,
    title: str | None = None,
    subtitle: str | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Path:
    """Render an executed notebook to self-contained HTML.

    Parameters
    ----------
    notebook : path or NotebookNode
        The executed notebook.
    out : path
        HTML file to write.
    stakeholder : bool, default False
        Hide code and prompts, add the title and a table of contents, and
        replace moderator ids by their ``aliases``.
    title, subtitle : str, optional
        Shown at the top (escaped).
    aliases : mapping, optional
        Identifier → alias, applied to the stakeholder rendering.

    Returns
    -------
    Path
        The written file. The page loads no external script: the vega bundle
        is inlined once in ``<head>``, and MathJax, require.js and the widget
        manager (all CDN-hosted) are left out.
    """
    from nbconvert import HTMLExporter

    from qualitylab.charts import vega_bundle

    nb = (
        notebook
        if isinstance(notebook, nbformat.NotebookNode)
        else nbformat.read(str(notebook), as_version=4)
    )
    exporter = HTMLExporter(
        template_name="qualitylab",
        extra_template_basedirs=[str(TEMPLATE_DIR)],
        exclude_input=stakeholder,
        exclude_input_prompt=stakeholder,
        exclude_output_prompt=stakeholder,
    )
    resources = {
        "ql_vega_bundle": vega_bundle(),
        "ql_title": title if stakeholder or title else None,
        "ql_subtitle": subtitle,
        "ql_toc": _headings(nb) if stakeholder else [],
        "metadata": {"name": title or "qualitylab report"},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    if stakeholder and aliases:
        keys = sorted(aliases, key=len, reverse=True)
        pattern = re.compile("|".join(re.escape(k) for k in keys)) if keys else None
        if pattern is not None:
            body = pattern.sub(lambda mt: aliases[mt.group(0)], body)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body, encoding="utf-8")
    return path


def external_references(page: str) -> list[str]:
    """``src``/``href`` URLs in a page that would be fetched from the network."""
    found = re.findall(r"""<(?:script|link|img|iframe)[^>]+(?:src|href)\s*=\s*["']([^"']+)""", page)
    return [u for u in found if re.match(r"^(https?:)?//", u)]


def notebook_json_safe(value: object) -> str:
    """JSON for embedding in a page (``<`` escaped)."""
    return json.dumps(value).replace("<", "\\u003c")


# --------------------------------------------------------------------------- #
# Interactive exploration (JupyterLab) and the portfolio view
# --------------------------------------------------------------------------- #
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

    from qualitylab import charts

    dims = ["vendor", "site", "queue", "language", "policy"]
    metric_w = widgets.Dropdown(
        options=list(EXPLORER_METRICS), value="accuracy", description="Metric"
    )
    dim_w = widgets.Dropdown(
        options=dims, value=by if by in dims else "vendor", description="Segment"
    )
    out = widgets.Output()

    def redraw(*_: object) -> None:
        metric, dim = metric_w.value, dim_w.value
        fn = m.qa_metrics if metric in m.QA_METRICS else m.operational_metrics
        frame = fn(
            ctx.ds, market=ctx.market, by=[dim, grain], start=ctx.baseline.start, end=ctx.end
        )
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
    """All markets side by side."""

    markets: tuple[str, ...]
    as_of: date
    by_market: pd.DataFrame
    by_vendor: pd.DataFrame
    movers: pd.DataFrame
    alert_counts: pd.DataFrame
    history: pd.DataFrame | None


def portfolio(
    data: str | Dataset,
    markets: str | Sequence[str] = "all",
    *,
    as_of: str | date | None = None,
    weeks: int = 4,
    parameters: str | None = None,
    alerts: Mapping[str, pd.DataFrame] | None = None,
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
    alerts : mapping of market to alerts frame, optional
        Alerts already computed (e.g. by the scheduled run); scanned otherwise.
    history : pandas.DataFrame, optional
        Headline KPIs from earlier runs.
    """
    import warnings

    from qualitylab.scorecard import scorecard

    ds = data if isinstance(data, Dataset) else open_dataset(data, parameters=parameters or None)
    if isinstance(markets, str) and markets.strip().lower() == "all":
        dec = ds.table("decisions")
        present = dec.select("market").distinct().to_pandas()["market"].tolist()
        codes = tuple(sorted(c for c in present if c in ds.params.markets))
    else:
        items = markets.split(",") if isinstance(markets, str) else markets
        codes = tuple(c.strip() for c in items if c.strip())
    by_market, by_vendor, counts = [], [], []
    last = None
    for code in codes:
        ctx = context(ds, code, as_of=as_of, weeks=weeks)
        last = max(last, ctx.as_of) if last else ctx.as_of
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            by_market.append(scorecard(ds, code, start=ctx.start, end=ctx.end))
            by_vendor.append(scorecard(ds, code, by=["vendor"], start=ctx.start, end=ctx.end))
            if alerts is not None and code in alerts:
                al = alerts[code]
            else:
                from qualitylab.detect import scan

                al = scan(ds, code, start=ctx.baseline.start, end=ctx.end)
                al = al[al["end_date"].astype(str) >= str(ctx.start)]
        sev = al["severity"].value_counts() if len(al) else pd.Series(dtype=int)
        counts.append(
            {
                "market": code,
                "alerts": len(al),
                "high": int(sev.get("high", 0)),
                "medium": int(sev.get("medium", 0)),
                "low": int(sev.get("low", 0)),
            }
        )
    bm = pd.concat(by_market, ignore_index=True)
    bv = pd.concat(by_vendor, ignore_index=True)
    movers = bv[(bv["p_adjusted"] < 0.05) & bv["metric"].isin(PORTFOLIO_METRICS)].copy()
    movers["size"] = movers["delta"].abs() / movers["prev_value"].abs().where(
        movers["prev_value"] != 0
    )
    movers = movers.sort_values("size", ascending=False).head(top).drop(columns=["size"])
    return Portfolio(
        codes, last, bm, bv, movers.reset_index(drop=True), pd.DataFrame(counts), history
    )


def alerts(ctx: ReportContext, *, current_only: bool = True) -> pd.DataFrame:
    """The market's alerts for the report period.

    Reuses the alerts the scheduled run stored with the market's data
    (``ql_alerts``) when present, and scans otherwise (baseline = the 28 days
    before the period). ``current_only`` keeps alerts that reach into the period.
    """
    from qualitylab.detect import scan

    frame = None
    try:
        if "ql_alerts" in ctx.ds.backend.list_tables():
            frame = ctx.ds.backend.table("ql_alerts").to_pandas()
            frame = frame[frame["market"] == ctx.market].copy()
            for col in ("observed", "expected", "p_value", "impact", "n"):
                if col in frame.columns:
                    frame[col] = pd.to_numeric(frame[col], errors="coerce")
    except Exception:  # a backend that cannot list tables: compute instead
        frame = None
    if frame is None:
        frame = scan(ctx.ds, ctx.market, start=ctx.baseline.start, end=ctx.end)
    if current_only and len(frame):
        frame = frame[frame["end_date"].astype(str) >= str(ctx.start)]
    return frame.reset_index(drop=True)
