"""Notebook narrative helpers and offline, safe HTML rendering.

Notebooks call these to show text and tables built from data (always
escaped: a vendor or event description containing ``<script>`` shows as
text), and the runner calls :func:`render_html` to turn an executed notebook
into the full or the stakeholder HTML: self-contained (the vega bundle is
inlined once, no CDN script), with a title naming market and period and a
table of contents.

A notebook section runs inside :func:`section`: when the data is too thin for
it (an optional table absent, no rows for the market or period, too little
history), the library raises :class:`~qualitylab.errors.QualityLabError`, and
the section shows one sentence saying what is missing instead of failing the
notebook. The sentence is also an output of mimetype :data:`NOTE_MIMETYPE`,
which the scheduled runner collects into the manifest and the hub.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import re
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from qualitylab.data.localtime import period_bounds_utc
from qualitylab.data.params import MarketParams
from qualitylab.data.sources import Dataset, open_dataset
from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.measure import metrics as m
from qualitylab.reporting import prefetch
from qualitylab.reporting.quietimport import import_jsonschema_quietly

import_jsonschema_quietly()  # before nbformat: saves ~2.5 s of import time

import nbformat  # noqa: E402

__all__ = [
    "EXPLAIN_COLUMNS",
    "FINDING_MIMETYPE",
    "NOTE_MIMETYPE",
    "SCAN_DIMENSIONS",
    "TARGET_COLUMNS",
    "Finding",
    "ReportContext",
    "Section",
    "SectionNote",
    "alert_columns",
    "alerts_to_explain",
    "blind_segment_table",
    "blind_spot_sentence",
    "blind_spot_table",
    "context",
    "data_end",
    "deep_dive_targets",
    "escape",
    "explanation_table",
    "finding",
    "focus_of",
    "header",
    "incident_table",
    "kpi_table",
    "label_controls",
    "moderator_aliases",
    "notebook_findings",
    "notebook_notes",
    "red_scorecard",
    "render_html",
    "require",
    "require_rows",
    "sampling_plan_sentence",
    "sampling_plan_summary",
    "say",
    "scan_blind_spots",
    "section",
    "table",
    "weeks_with_data",
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
    "share",
)
#: Rates that are not proportions (per 1,000 decisions, per hour, ...).
_NOT_PROPORTIONS = ("escalation_rate", "arrival_rate")


@dataclass(frozen=True)
class ReportContext:
    """Everything a notebook needs to know about its run."""

    ds: Dataset
    market: str
    params: MarketParams
    period: m.Period
    baseline: m.Period
    as_of: date
    data_start: date | None = None  # first market-local date with decisions (None: unknown)

    @property
    def coverage(self) -> str:
        """One sentence when the market's data starts after the comparison period does.

        Empty when the data covers the period and its baseline. A market with
        two weeks of history otherwise reads "28 days, compared with the 28
        days before" over days it has no data for.

        Examples
        --------
        >>> from qualitylab.measure.metrics import Period
        >>> c = ReportContext(None, "MY", None, Period(date(2026, 10, 26), date(2026, 11, 22)),
        ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
        ...                   data_start=date(2026, 11, 9))
        >>> c.coverage
        "MY's data starts on 2026-11-09: 14 of the period's 28 days have data, and none of the 28 days before."
        """
        first = self.data_start
        if first is None or first <= self.baseline.start:
            return ""

        def covered(p: m.Period) -> int:
            return max((p.end - max(first, p.start)).days + 1, 0)

        cur, base = covered(self.period), covered(self.baseline)
        before = f"{base or 'none'} of the {self.baseline.days} days before"
        return (
            f"{self.market}'s data starts on {first}: {cur} of the period's {self.period.days} "
            f"days have data, and {before}."
        )

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
    prefetch_alerts: bool = False,
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
    prefetch_alerts : bool, default False
        Start the period's alert scan in a helper process now (see
        :mod:`qualitylab.prefetch`), for notebooks that show alerts after other
        work: :func:`alerts` then takes the finished result instead of
        scanning. Only for a ``data`` path or URL, and not when the data
        carries a scheduled run's stored alerts.
    """
    ds = data if isinstance(data, Dataset) else open_dataset(data, parameters=parameters or None)
    mp = ds.params.market(market)
    try:
        covered = m.resolve_period(ds, market=market, start=None, end=None)
    except QualityLabError:  # no decisions for the market: its sections say so
        covered = None
    day = m._as_date(as_of) if as_of else data_end(ds, market)
    period = m.last_full_weeks(day, weeks)
    first = covered.start if covered is not None else None
    ctx = ReportContext(ds, market, mp, period, baseline_of(period), day, first)
    if prefetch_alerts and isinstance(data, str | Path) and prefetch.enabled():
        try:
            stored = "ql_alerts" in ds.backend.list_tables()
        except Exception:  # a backend that cannot list tables: nothing stored
            stored = False
        job = None if stored else prefetch.start(str(data), parameters, market, ctx.start, ctx.end)
        if job is not None:
            _PREFETCH.setdefault(ds, {})[_alerts_key(ctx)] = job
    return ctx


def baseline_of(period: m.Period, days: int = 28) -> m.Period:
    """The ``days`` before a period: the baseline alerts are judged against.

    Examples
    --------
    >>> b = baseline_of(m.Period(date(2026, 10, 26), date(2026, 11, 22)))
    >>> b.start.isoformat(), b.end.isoformat()
    ('2026-09-28', '2026-10-25')
    """
    return m.Period(period.start - timedelta(days=days), period.start - timedelta(days=1))


def escape(value: object) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


# --------------------------------------------------------------------------- #
# Sections that may lack data
# --------------------------------------------------------------------------- #
#: Mimetype of the output a section note leaves in an executed notebook (a JSON
#: object with ``section`` and ``reason``), read back by :func:`notebook_notes`.
NOTE_MIMETYPE = "application/vnd.qualitylab.note+json"
_NOTE_LIMIT = 300  # characters of the reason kept in the sentence


@dataclass(frozen=True)
class SectionNote:
    """A notebook section that could not be computed, and why.

    Displayed in a notebook, it shows one escaped sentence (``text/html``) and
    carries ``{"section", "reason"}`` under :data:`NOTE_MIMETYPE` for the runner.

    Examples
    --------
    >>> n = SectionNote("Red team", "no red-team items for <MY>")
    >>> n.sentence
    'Red team: not shown, too little data (no red-team items for <MY>).'
    >>> "&lt;MY&gt;" in n._repr_mimebundle_()["text/html"]
    True
    """

    section: str
    reason: str

    @property
    def sentence(self) -> str:
        """``"<section>: not shown, too little data (<reason>)."``"""
        return f"{self.section}: not shown, too little data ({self.reason.rstrip('. ')})."

    def to_dict(self) -> dict[str, str]:
        """``{"section": ..., "reason": ...}``."""
        return {"section": self.section, "reason": self.reason}

    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> dict[str, object]:
        html_text = (
            f'<p class="ql-note"><strong>{escape(self.section)}</strong>: not shown, too '
            f"little data ({escape(self.reason.rstrip('. '))}).</p>"
        )
        return {"text/plain": self.sentence, "text/html": html_text, NOTE_MIMETYPE: self.to_dict()}


def _reason(exc: BaseException) -> str:
    """The first line of an error message, shortened for one sentence."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= _NOTE_LIMIT else text[: _NOTE_LIMIT - 1] + "…"


class Section:
    """Context manager of :func:`section`; ``note`` holds the note it showed, if any."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.note: SectionNote | None = None

    def __enter__(self) -> Section:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if not isinstance(exc, QualityLabError) or isinstance(exc, ParameterError):
            return False  # success, a bug or a bad parameter: let it propagate
        self.note = SectionNote(self.title, _reason(exc))
        from IPython.display import display

        display(self.note)
        return True


def section(title: str) -> Section:
    """Run a notebook section; too little data becomes a one-line note, not a failure.

    A :class:`~qualitylab.errors.QualityLabError` raised in the ``with`` block
    (the library's way of saying the data cannot support a result: a table
    absent or without rows for the market or period, too short a history)
    ends the section there and displays a :class:`SectionNote` naming
    ``title`` and the error's message. Any other exception propagates: a bug
    must still fail the notebook, and so does a
    :class:`~qualitylab.errors.ParameterError` (a wrong notebook parameter or
    parameters file is the user's to fix, not a data gap). Values assigned
    before the error keep their values; display results explicitly
    (``display(...)``) inside the block.

    Parameters
    ----------
    title : str
        The section's name as the reader sees it (usually its heading).

    Returns
    -------
    Section
        Its ``note`` is the :class:`SectionNote` shown, or None.

    Examples
    --------
    Outside a notebook the note displays as its repr:

    >>> with section("Red team") as s:
    ...     raise QualityLabError("no red-team items in the selection")
    SectionNote(section='Red team', reason='no red-team items in the selection')
    >>> s.note.sentence
    'Red team: not shown, too little data (no red-team items in the selection).'
    >>> with section("Red team"):
    ...     1 / 0
    Traceback (most recent call last):
    ZeroDivisionError: division by zero
    """
    return Section(title)


def require(value: Any, what: str) -> Any:
    """``value``, or a :class:`~qualitylab.errors.QualityLabError` if it is not there.

    For a section that builds on an earlier one: ``value`` is missing when it
    is None (the earlier section ended before assigning it) or a frame whose
    ``attrs["note"]`` says why it is empty (as :func:`scan_period` returns
    when the data is too short for a scan).

    Examples
    --------
    >>> require(3, "the scorecard")
    3
    >>> require(None, "the vendor scorecard")
    Traceback (most recent call last):
    qualitylab.errors.QualityLabError: needs the vendor scorecard, which could not be computed
    """
    if value is None:
        raise QualityLabError(f"needs {what}, which could not be computed")
    attrs = getattr(value, "attrs", None)
    if isinstance(attrs, Mapping) and attrs.get("note"):
        raise QualityLabError(f"{what}: {attrs['note']}")
    return value


#: Time column of each table, used to find a market's rows in a period.
_TIME_COLUMNS = {
    "decisions": "created_at",
    "qa_audits": "audited_at",
    "staffing": "date",
    "calibration": "held_at",
    "vendor_reported": "week_start",
    "events": "effective_at",
    "escalations": "raised_at",
    "red_team": "created_at",
}


def require_rows(
    ctx: ReportContext,
    table: str,
    *,
    start: date | str | None = None,
    end: date | str | None = None,
) -> int:
    """The rows ``table`` has for the context's market and period; an error if none.

    Counted in the engine. Rows count for the market when their ``market`` is
    its code (or ``*`` in ``events``; ``qa_audits`` through their decisions),
    and for the period when their time falls in the market-local dates
    ``start``..``end`` (default: the report period; a ``vendor_reported``
    week counts when it overlaps them).

    Raises
    ------
    QualityLabError
        Naming the table and why: not in the dataset, or no rows for the
        market in the period. Inside :func:`section` this becomes its note.

    Examples
    --------
    >>> import tempfile
    >>> from qualitylab.demodata.generate import generate
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = generate(tmp, markets=["SG"], days=14, scale="small")
    ...     ctx = context(tmp, "SG", weeks=1)
    ...     require_rows(ctx, "decisions") > 0
    ...     require_rows(ctx, "red_team", start="2026-01-01", end="2026-01-31")
    Traceback (most recent call last):
    qualitylab.errors.QualityLabError: the red_team table has no rows for SG from 2026-01-01 to 2026-01-31
    """
    if table not in _TIME_COLUMNS:
        raise QualityLabError(f"unknown table {table!r}; choose from {', '.join(_TIME_COLUMNS)}")
    if not ctx.ds.has(table):
        raise QualityLabError(f"the dataset has no {table} table")
    lo = m._as_date(start) or ctx.start
    hi = m._as_date(end) or ctx.end
    t = ctx.ds.table(table)
    col = _TIME_COLUMNS[table]
    if table == "qa_audits":
        dec = ctx.ds.table("decisions")
        dec = dec.filter(dec.market == ctx.market).select("decision_id")
        t = t.semi_join(dec, "decision_id")
    elif table == "events":
        t = t.filter(t.market.isin([ctx.market, "*"]))
    else:
        t = t.filter(t.market == ctx.market)
    if table == "staffing":
        t = t.filter(t[col].between(lo, hi))
    elif table == "vendor_reported":
        t = t.filter(t[col].between(lo - timedelta(days=6), hi))
    else:
        a, b = period_bounds_utc(lo, hi, ctx.params.timezone)
        t = t.filter((t[col] >= a) & (t[col] < b))
    n = int(t.count().to_pyarrow().as_py())
    if n == 0:
        raise QualityLabError(f"the {table} table has no rows for {ctx.market} from {lo} to {hi}")
    return n


def notebook_notes(notebook: str | Path | nbformat.NotebookNode) -> list[dict[str, str]]:
    """The section notes an executed notebook displayed, in order.

    Each is ``{"section", "reason", "cell"}`` (``cell``: the code cell's index),
    read from the outputs of mimetype :data:`NOTE_MIMETYPE`.

    Examples
    --------
    >>> nb = nbformat.v4.new_notebook()
    >>> out = nbformat.v4.new_output("display_data", data={
    ...     NOTE_MIMETYPE: {"section": "Red team", "reason": "no rows"}, "text/plain": "..."})
    >>> nb.cells = [nbformat.v4.new_code_cell("", outputs=[out])]
    >>> notebook_notes(nb)
    [{'section': 'Red team', 'reason': 'no rows', 'cell': 0}]
    """
    nb = (
        notebook
        if isinstance(notebook, nbformat.NotebookNode)
        else nbformat.read(str(notebook), as_version=4)
    )
    notes = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {}).get(NOTE_MIMETYPE)
            if isinstance(data, str):  # a JSON mimetype kept as text by some writers
                data = json.loads(data)
            if isinstance(data, Mapping):
                notes.append(
                    {
                        "section": str(data.get("section", "")),
                        "reason": str(data.get("reason", "")),
                        "cell": i,
                    }
                )
    return notes


def _fmt_value(metric: str, value: object) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "–"
    if isinstance(value, float | int):
        proportion = any(w in metric for w in _RATE_WORDS) or metric.endswith("_sla")
        if proportion and not any(w in metric for w in _NOT_PROPORTIONS):
            return f"{100 * float(value):.1f}%"
        if metric.startswith("response_"):
            return f"{float(value):,.0f} s"
        if float(value).is_integer():
            return f"{int(value):,}"
        return f"{float(value):,.3g}"
    return str(value)


def header(ctx: ReportContext):
    """The notebook's opening line: market, period and baseline, and any gap in the data.

    Examples
    --------
    >>> from qualitylab.measure.metrics import Period
    >>> from qualitylab.data.params import load_parameters
    >>> sg = load_parameters().market("SG")
    >>> c = ReportContext(None, "SG", sg, Period(date(2026, 10, 26), date(2026, 11, 22)),
    ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
    ...                   data_start=date(2026, 10, 5))
    >>> print(header(c).data)  # doctest: +NORMALIZE_WHITESPACE
    <p><strong>Singapore (SG), 2026-10-26 to 2026-11-22</strong> &middot; 28 days, compared with the 28 days
    before. SG&#x27;s data starts on 2026-10-05: 28 of the period&#x27;s 28 days have data, and
    21 of the 28 days before.</p>
    """
    text = "<strong>{label}</strong> &middot; {days} days, compared with the {days} days before."
    if ctx.coverage:
        text += " {coverage}"
    return say(text, label=ctx.label, days=ctx.period.days, coverage=ctx.coverage)


def say(template: str, **values: object):
    """A sentence for the reader, with every value escaped.

    ``template`` is trusted text (written in the notebook) using ``{name}``
    placeholders; values are HTML-escaped. Numbers (which cannot carry markup)
    are passed through, so placeholders may use format specs such as
    ``{rate:.1%}``.

    Examples
    --------
    >>> say("Vendor {v} leads.", v="<b>X</b>").data
    '<p>Vendor &lt;b&gt;X&lt;/b&gt; leads.</p>'
    >>> say("{x:+.1f} points", x=-2.345).data
    '<p>-2.3 points</p>'
    """
    import numbers

    from IPython.display import HTML

    safe = {
        k: v if isinstance(v, numbers.Real) and not isinstance(v, bool) else escape(v)
        for k, v in values.items()
    }
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
        (
            f"{_fmt_value(r.metric, r.ci_low)} – "
            + ("not bounded" if pd.isna(r.ci_high) else _fmt_value(r.metric, r.ci_high))
        )
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


#: HTML exporters by ``stakeholder`` (:func:`render_html`).
_EXPORTERS: dict[bool, Any] = {}


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

    from qualitylab.reporting.charts import vega_bundle

    nb = (
        notebook
        if isinstance(notebook, nbformat.NotebookNode)
        else nbformat.read(str(notebook), as_version=4)
    )
    if stakeholder:  # warnings on stderr are for analysts, not for the stakeholder page
        nb = nbformat.from_dict(json.loads(json.dumps(nb)))
        for cell in nb.cells:
            if cell.get("cell_type") == "code":
                cell.outputs = [
                    o
                    for o in cell.get("outputs", [])
                    if not (o.get("output_type") == "stream" and o.get("name") == "stderr")
                ]
    exporter = _EXPORTERS.get(stakeholder)
    if exporter is None:  # one per kind and process: its templates are compiled once
        exporter = _EXPORTERS[stakeholder] = HTMLExporter(
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

            def swap(text: str) -> str:
                return pattern.sub(lambda mt: aliases[mt.group(0)], text)

            def swap_embedded(mt: re.Match[str]) -> str:
                # static chart images are base64 SVG: alias the ids inside them too
                svg = base64.b64decode(mt.group(2)).decode("utf-8", errors="replace")
                return mt.group(1) + base64.b64encode(swap(svg).encode("utf-8")).decode("ascii")

            body = re.sub(r"(data:image/svg\+xml;base64,)([A-Za-z0-9+/=]+)", swap_embedded, body)
            body = swap(body)
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
    import warnings

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
            notes.append(SectionNote(f"Market {code}", _reason(exc)))
            continue
        last = max(last, ctx.as_of) if last else ctx.as_of
        mine = None
        if stored is not None:
            mine = stored[
                (stored["market"] == code)
                & (stored["period_start"] == str(ctx.start))
                & (stored["period_end"] == str(ctx.end))
            ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
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
                    notes.append(SectionNote(f"Market {code}", _reason(exc)))
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
    return out


def scan_period(
    ds: Dataset,
    ctx: ReportContext,
    *,
    rebaseline: Mapping[tuple[str, str, str], date | str] | None = None,
) -> pd.DataFrame:
    """Alerts for the report period, judged against the 28 days before it.

    When the market's data starts too late for that baseline (fewer than 7
    days before the period: a young market), the whole data range is scanned
    instead, so the detector can judge the young days by its own rule; the
    alerts that reach into the period are the ones shown. When no scan is
    possible, an empty alert table is returned with a warning and the reason
    in ``attrs["note"]`` (:func:`require` turns it into a section note).
    ``rebaseline`` (``{(metric, dimension, segment): date}``, e.g. alerts
    labelled ``new_normal``) is passed to :func:`qualitylab.detect.scan`; a
    bad one raises its :class:`ParameterError`.
    """
    import warnings

    from qualitylab.detection.detect import ALERT_COLUMNS, scan

    try:
        return scan(ds, ctx.market, start=ctx.start, end=ctx.end, rebaseline=rebaseline)
    except QualityLabError as exc:
        if isinstance(exc, ParameterError) and exc.key == "rebaseline":
            raise  # a bad argument, not a market that cannot be scanned
        error = exc
    try:
        first = m.resolve_period(ds, market=ctx.market, start=None, end=None).start
        if ctx.start - timedelta(days=7) < first <= ctx.end:  # too young for the baseline
            return scan(ds, ctx.market, end=ctx.end, rebaseline=rebaseline)
    except QualityLabError as exc:
        error = exc
    warnings.warn(f"no alerts for {ctx.market}: {error}", stacklevel=2)
    empty = pd.DataFrame(columns=ALERT_COLUMNS)
    empty.attrs["note"] = str(error)
    return empty


#: Alerts already scanned, per dataset (dropped with it) and market/period.
_ALERTS_MEMO: weakref.WeakKeyDictionary[Dataset, dict[tuple, pd.DataFrame]] = (
    weakref.WeakKeyDictionary()
)
#: Alert scans running in a helper process (context(prefetch_alerts=True)).
_PREFETCH: weakref.WeakKeyDictionary[Dataset, dict[tuple, prefetch.AlertJob]] = (
    weakref.WeakKeyDictionary()
)


def _alerts_key(ctx: ReportContext) -> tuple:
    return (ctx.market, ctx.period.start, ctx.period.end, ctx.baseline.start)


def alerts(ctx: ReportContext, *, current_only: bool = True) -> pd.DataFrame:
    """The market's alerts for the report period.

    Reuses the alerts the scheduled run stored with the market's data
    (``ql_alerts``) when present, and scans otherwise (baseline = the 28 days
    before the period). ``current_only`` keeps alerts that reach into the period.
    A scan is made once per dataset, market and period; later calls (e.g. the
    triage window after the alerts table) get a copy. When :func:`context` was
    asked to prefetch, the helper process's scan is used (waited for if it
    still runs); if the helper failed, the scan runs here.
    """
    memo = _ALERTS_MEMO.setdefault(ctx.ds, {})
    key = _alerts_key(ctx)
    frame = memo.get(key)
    job = _PREFETCH.get(ctx.ds, {}).pop(key, None)
    if frame is None and job is not None:
        frame = job.result()  # None if the helper failed: then scan here
        if frame is not None:
            memo[key] = frame.copy()
            memo[key].attrs = dict(frame.attrs)
    if frame is not None:
        frame = frame.copy()
        frame.attrs = dict(memo[key].attrs)
        return _current(frame, ctx) if current_only else frame.reset_index(drop=True)
    try:
        stored = ctx.ds.backend.list_tables()
        if "ql_alerts" in stored:
            frame = ctx.ds.backend.table("ql_alerts").to_pandas()
            frame = frame[frame["market"] == ctx.market].copy()
            for col in ("observed", "expected", "p_value", "impact", "n"):
                if col in frame.columns:
                    frame[col] = pd.to_numeric(frame[col], errors="coerce")
            if "ql_alert_notes" in stored:  # why the scheduled run's scan found nothing
                notes = ctx.ds.backend.table("ql_alert_notes").to_pandas()
                notes = notes[notes["market"] == ctx.market]["note"].dropna()
                if len(notes):
                    frame.attrs["note"] = str(notes.iloc[0])
    except Exception:  # a backend that cannot list tables: compute instead
        frame = None
    if frame is None:
        import warnings

        with warnings.catch_warnings():  # undefined daily rates and skipped series are
            warnings.simplefilter("ignore")  # reported in the alerts' attrs, not as noise
            frame = scan_period(ctx.ds, ctx)
    memo[key] = frame.copy()
    return _current(frame, ctx) if current_only else frame.reset_index(drop=True)


def _current(frame: pd.DataFrame, ctx: ReportContext) -> pd.DataFrame:
    if len(frame):
        frame = frame[frame["end_date"].astype(str) >= str(ctx.start)]
    return frame.reset_index(drop=True)


def chartable(frame: pd.DataFrame) -> pd.DataFrame:
    """Alerts that have a daily series to draw (weekly reporting gaps do not)."""
    if frame.empty:
        return frame
    return frame[frame["metric"] != "reporting_gap"]


def control_series(
    ctx: ReportContext,
    alert: Mapping[str, Any] | pd.Series,
    *,
    baseline_days: int = 28,
) -> pd.DataFrame:
    """The daily series behind an alert, with control limits and changepoints.

    Rates get a binomial p-chart (Laney's p′ when overdispersed) from each
    day's n; counts and times get STL with robust MAD scores. The baseline is
    the ``baseline_days`` before the alert (masked days excluded by the
    detector). Adds a ``changepoint`` column from :func:`qualitylab.detect.changepoints`.

    Returns
    -------
    pandas.DataFrame
        ``date, observed, expected, lower, upper, statistic, p_value, flag,
        changepoint`` — the input of :func:`qualitylab.charts.control_chart`.
    """
    from qualitylab.detection import detect
    from qualitylab.measure.aieval import ai_metrics

    metric, dim, seg = str(alert["metric"]), str(alert["dimension"]), str(alert["segment"])
    a_start = m._as_date(str(alert["start_date"])[:10])
    start = a_start - timedelta(days=baseline_days)
    end = max(ctx.end, m._as_date(str(alert["end_date"])[:10]))
    by = ["date"] if dim == "market" else [dim, "date"]
    if metric in m.QA_METRICS:
        fn = m.qa_metrics
    elif metric in ("auto_action_rate", "override_rate"):
        fn = m.ai_workflow_metrics
    elif metric.startswith("ai_"):
        fn = ai_metrics
    else:
        fn = m.operational_metrics
    frame = fn(ctx.ds, market=ctx.market, by=by, start=start, end=end)
    s = frame[frame["metric"] == metric]
    if dim != "market":
        s = s[s[dim].astype(str) == seg]
    days = pd.date_range(start, end, freq="D")
    s = s.assign(date=pd.to_datetime(s["date"])).set_index("date").reindex(days)
    base = int((pd.Timestamp(a_start) - days[0]).days)
    if metric in detect._RATES:
        det = detect.p_chart(s["value"], s["n"].fillna(0), baseline=base)
    else:
        det = detect.stl_mad(s["value"].ffill().bfill(), baseline=base)
    det["date"] = days
    cps = detect.changepoints(s["value"].interpolate().bfill().ffill())
    det["changepoint"] = cps["flag"].to_numpy(dtype=bool)
    return det


def events_for(
    ctx: ReportContext, alert: Mapping[str, Any] | pd.Series | None = None
) -> pd.DataFrame:
    """Events relevant to the market (and to an alert's segment, if given).

    Market-wide kinds (policy changes, model releases, outages, holidays) are
    kept; other events (e.g. a site's training) only when their description
    or policy names the alert's segment.
    """
    if not ctx.ds.has("events"):
        return pd.DataFrame(columns=["effective_at", "market", "kind", "policy", "description"])
    ev = ctx.ds.table("events")
    ev = ev.filter(ev.market.isin([ctx.market, "*"])).to_pandas()
    if alert is None:
        return ev
    seg = str(alert["segment"])
    broad = ev["kind"].isin(["policy_change", "model_release", "outage", "holiday"])
    named = ev["description"].astype(str).str.contains(seg, regex=False) | (
        ev["policy"].astype(str) == seg
    )
    if str(alert["dimension"]) == "policy":
        broad = broad & ((ev["policy"].isna()) | (ev["policy"].astype(str) == seg))
    return ev[broad | named].reset_index(drop=True)


@dataclass(frozen=True)
class RcaFocus:
    """What a root-cause notebook explains: metric, periods and an optional segment."""

    metric: str
    current: tuple[date, date]
    baseline: tuple[date, date]
    reason: str
    segment_filter: dict[str, str] | None = None

    @property
    def current_label(self) -> str:
        """E.g. ``2026-11-02 to 2026-11-08``."""
        return f"{self.current[0]} to {self.current[1]}"

    @property
    def baseline_label(self) -> str:
        """E.g. ``2026-10-05 to 2026-11-01``."""
        return f"{self.baseline[0]} to {self.baseline[1]}"


def rca_focus(
    ctx: ReportContext,
    metric: str,
    *,
    current_start: str = "",
    current_end: str = "",
    baseline_days: int = 28,
    segment: str = "",
) -> RcaFocus:
    """Choose the periods to explain: given dates, else the top alert's window.

    Without dates, the current period is the window of the highest-impact
    alert on ``metric`` in the report period (or the last week of the
    period when there is none) and the baseline the ``baseline_days`` before.
    """
    seg = None
    if segment:
        if ":" not in segment:
            from qualitylab.errors import ParameterError

            raise ParameterError(
                f"segment must look like dimension:value (e.g. vendor:VendorC); got {segment!r}",
                key="segment",
            )
        dim, val = segment.split(":", 1)
        seg = {dim.strip(): val.strip()}
    if current_start and current_end:
        cur = (m._as_date(current_start), m._as_date(current_end))
        reason = "Periods as given."
    else:
        al = alerts(ctx)
        al = al[al["metric"] == metric] if len(al) else al
        if seg and len(al):
            ((dim, val),) = seg.items()
            narrowed = al[(al["dimension"] == dim) & (al["segment"].astype(str) == val)]
            al = narrowed if len(narrowed) else al
        if len(al):
            top = al.iloc[0]
            cur = (m._as_date(str(top["start_date"])[:10]), m._as_date(str(top["end_date"])[:10]))
            reason = (
                f"The window of the top {metric} alert ({top['dimension']} {top['segment']}, "
                f"{top['direction']})."
            )
        else:
            cur = (ctx.end - timedelta(days=6), ctx.end)
            reason = f"No {metric} alert in the period; explaining its last week."
    base = (cur[0] - timedelta(days=baseline_days), cur[0] - timedelta(days=1))
    return RcaFocus(metric, cur, base, reason, seg)


def waterfall_frame(result: Any, dimension: str, *, top: int = 8) -> pd.DataFrame:
    """``segment, contribution`` for a waterfall: the largest ``top`` segments, the rest pooled."""
    seg = result.segments[result.segments["dimension"] == dimension]
    seg = seg.reindex(seg["contribution"].abs().sort_values(ascending=False).index)
    head = seg.head(top)[["segment", "contribution"]].astype({"segment": str})
    rest = seg.iloc[top:]["contribution"].sum()
    if len(seg) > top:
        head = pd.concat(
            [head, pd.DataFrame({"segment": ["(other)"], "contribution": [rest]})],
            ignore_index=True,
        )
    return head.reset_index(drop=True)


@dataclass(frozen=True)
class Event:
    """One event, market-local date."""

    date: date
    kind: str
    description: str


def nearest_event(ctx: ReportContext, focus: RcaFocus) -> Event | None:
    """The latest relevant event between the baseline start and the current end."""
    ev = events_for(
        ctx,
        {
            "metric": focus.metric,
            "dimension": next(iter(focus.segment_filter or {"market": 0})),
            "segment": next(iter((focus.segment_filter or {"market": ctx.market}).values())),
        },
    )
    if ev.empty:
        return None
    local = pd.to_datetime(ev["effective_at"], utc=True).dt.tz_convert(ctx.params.tz).dt.date
    ev = ev.assign(day=local)
    ev = ev[(ev["day"] > focus.baseline[0]) & (ev["day"] <= focus.current[1])]
    if ev.empty:
        return None
    row = ev.sort_values("day").iloc[-1]
    return Event(row["day"], str(row["kind"]), str(row["description"]))


def triage_window(ctx: ReportContext, start: str = "", end: str = "") -> tuple[date, date, str]:
    """The days to triage: given dates, else the top high-impact alert's window.

    Without dates, the window runs from two days before the start of the
    period's highest-impact alert to its end (so the lead-up shows), capped to
    the period; with no alert it is the last seven days of the period.

    Returns
    -------
    (start, end, reason)
    """
    if start and end:
        return m._as_date(start), m._as_date(end), "Window as given."
    al = alerts(ctx)
    if len(al):
        top = al.iloc[0]
        a = m._as_date(str(top["start_date"])[:10])
        b = m._as_date(str(top["end_date"])[:10])
        lo = max(ctx.start, a - timedelta(days=2))
        hi = min(ctx.end, max(b, lo))
        return (
            lo,
            hi,
            f"The top alert's window ({top['metric']} on {top['dimension']} {top['segment']}, "
            f"{a} to {b}), from two days before it.",
        )
    return ctx.end - timedelta(days=6), ctx.end, "No alert in the period: its last seven days."


def alerts_in_window(alerts_frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    """Alerts whose dates overlap ``start``..``end`` (inclusive), in their order."""
    if alerts_frame is None or not len(alerts_frame):
        return alerts_frame
    a = pd.to_datetime(alerts_frame["start_date"].astype(str).str[:10]).dt.date
    b = pd.to_datetime(alerts_frame["end_date"].astype(str).str[:10]).dt.date
    return alerts_frame[(a <= end) & (b >= start)]


def launch_plans(ctx: ReportContext, launch: str = "") -> dict[str, Any]:
    """Launch plans to check for the context's market: the given file, else all of them.

    Plans come from ``<parameters>/launches/`` and are validated
    (:func:`qualitylab.readiness.load_launch_plans`); a given file must be for
    this market.
    """
    from qualitylab.operations.readiness import load_launch_plan, load_launch_plans

    if launch:
        plan = load_launch_plan(launch, parameters=ctx.ds.params)
        if plan.market != ctx.market:
            from qualitylab.errors import ParameterError

            raise ParameterError(
                f"{launch}: the plan is for market {plan.market}, this report is for {ctx.market}",
                key="market",
            )
        return {Path(launch).stem: plan}
    plans = load_launch_plans(ctx.ds.params.root, parameters=ctx.ds.params)
    return {name: p for name, p in plans.items() if p.market == ctx.market}


# --------------------------------------------------------------------------- #
# Deep dives aimed at what the scan found (issue #16)
# --------------------------------------------------------------------------- #
#: Mimetype of the output :func:`finding` leaves in an executed notebook (a JSON
#: object, :attr:`Finding.to_dict`), read back by :func:`notebook_findings`.
FINDING_MIMETYPE = "application/vnd.qualitylab.finding+json"
#: Columns the alert store adds to the market cache's ``ql_alerts`` in scheduled runs.
STORE_ALERT_COLUMNS = (
    "alert_id",
    "status",
    "label",
    "first_seen",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
)
#: Columns of :func:`alerts_to_explain`.
EXPLAIN_COLUMNS = [
    "alert_id",
    "market",
    "metric",
    "dimension",
    "segment",
    "direction",
    "start_date",
    "end_date",
    "severity",
    "observed",
    "expected",
    "impact",
    "status",
    "label",
    "first_seen",
    "incident_id",
    "incident_role",
    "incident_cause",
    "incident_event",
    "children",
    "related",
]
#: Columns of :func:`deep_dive_targets`: :data:`EXPLAIN_COLUMNS` and the periods.
TARGET_COLUMNS = [*EXPLAIN_COLUMNS, "baseline_start", "baseline_end", "reason"]
#: Alert statuses a deep dive explains (new or continuing, not muted or resolved).
EXPLAIN_STATUSES = ("new", "ongoing")
_SEVERITY_ORDER = {"high": 0, "medium": 1, "low": 2}


@dataclass(frozen=True)
class Finding:
    """A deep dive's conclusion: one sentence naming the segment behind an alert.

    Displayed in a notebook it shows the escaped sentence (``text/html``) and
    carries :meth:`to_dict` under :data:`FINDING_MIMETYPE` for the runner.

    Examples
    --------
    >>> f = Finding("SG-1", "AI recall fell; by ai_model, <mod-v4> explains 51% of it.")
    >>> "&lt;mod-v4&gt;" in f._repr_mimebundle_()["text/html"]
    True
    """

    alert_id: str
    sentence: str
    market: str = ""
    metric: str = ""
    dimension: str = ""
    segment: str = ""
    start_date: str = ""
    end_date: str = ""

    def to_dict(self) -> dict[str, str]:
        """``alert_id, sentence, market, metric, dimension, segment, start_date, end_date``."""
        return {k: str(v) for k, v in self.__dict__.items()}

    def _repr_mimebundle_(
        self, include: object = None, exclude: object = None
    ) -> dict[str, object]:
        html_text = f'<p class="ql-finding"><strong>Finding</strong>: {escape(self.sentence)}</p>'
        return {
            "text/plain": self.sentence,
            "text/html": html_text,
            FINDING_MIMETYPE: self.to_dict(),
        }


def _text(value: object) -> str:
    """A cell of an alerts frame as text ('' for missing values)."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    text = str(value)
    return "" if text in ("nan", "NaT", "None", "<NA>") else text


def finding(
    alert_id: object, sentence: str, *, alert: Mapping[str, Any] | pd.Series | None = None
) -> Finding:
    """The sentence a deep dive ends with, as a display object the runner can collect.

    Parameters
    ----------
    alert_id : str
        The alert's id in the store ('' when the alert came from a scan without one).
    sentence : str
        Plain text (it is escaped when shown), e.g. :attr:`qualitylab.rca.Explanation.sentence`.
    alert : mapping or Series, optional
        The alert (a row of :func:`deep_dive_targets`): its market, metric,
        dimension, segment and window go with the sentence, so a finding
        without an id can still be matched to its alert.

    Examples
    --------
    >>> f = finding("SG-20261105-ai_recall-686b9f", "AI recall in SG fell.",
    ...             alert={"market": "SG", "metric": "ai_recall", "start_date": "2026-11-05"})
    >>> f.to_dict()["metric"], f.to_dict()["end_date"]
    ('ai_recall', '')
    """
    about = {
        k: _text(alert.get(k)) if alert is not None else ""
        for k in ("market", "metric", "dimension", "segment", "start_date", "end_date")
    }
    about["start_date"], about["end_date"] = about["start_date"][:10], about["end_date"][:10]
    return Finding(_text(alert_id), str(sentence), **about)


def notebook_findings(notebook: str | Path | nbformat.NotebookNode) -> list[dict[str, str]]:
    """The findings (:func:`finding`) an executed notebook displayed, in order.

    Each is :meth:`Finding.to_dict` plus ``cell`` (the code cell's index).

    Examples
    --------
    >>> nb = nbformat.v4.new_notebook()
    >>> out = nbformat.v4.new_output("display_data", data={
    ...     FINDING_MIMETYPE: finding("SG-1", "Accuracy fell.").to_dict(), "text/plain": "..."})
    >>> nb.cells = [nbformat.v4.new_code_cell("", outputs=[out])]
    >>> [(f["alert_id"], f["sentence"], f["cell"]) for f in notebook_findings(nb)]
    [('SG-1', 'Accuracy fell.', 0)]
    """
    nb = (
        notebook
        if isinstance(notebook, nbformat.NotebookNode)
        else nbformat.read(str(notebook), as_version=4)
    )
    found = []
    fields = [f for f in Finding.__dataclass_fields__]
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.get("cell_type") == "code" else []:
            data = out.get("data", {}).get(FINDING_MIMETYPE)
            if isinstance(data, str):  # a JSON mimetype kept as text by some writers
                data = json.loads(data)
            if isinstance(data, Mapping):
                found.append({**{f: str(data.get(f, "")) for f in fields}, "cell": i})
    return found


def _check_max_alerts(max_alerts: object) -> int:
    if isinstance(max_alerts, bool) or not isinstance(max_alerts, int) or max_alerts < 0:
        raise ParameterError(
            f"max_alerts must be a non-negative integer; got {max_alerts!r}", key="max_alerts"
        )
    return max_alerts


def alerts_to_explain(
    ctx: ReportContext, *, max_alerts: int = 3, alerts_frame: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The market's alerts a deep dive should explain, most important first.

    With the alert store's columns (``ql_alerts`` of a scheduled run:
    :data:`STORE_ALERT_COLUMNS`), the alerts whose status is ``new`` or
    ``ongoing`` and that carry no label, each incident's children folded into
    their lead (``children`` counts them), incident leads first, then by
    severity and impact. Without them (an interactive session's scan), the
    scan's alerts (each already the lead of the views ``related`` lists), by
    severity and impact.

    Parameters
    ----------
    ctx : ReportContext
    max_alerts : int, default 3
    alerts_frame : pandas.DataFrame, optional
        Alerts to choose from; by default :func:`alerts` (those reaching into
        the period).

    Returns
    -------
    pandas.DataFrame
        :data:`EXPLAIN_COLUMNS`, at most `max_alerts` rows; text columns the
        alerts lack are empty strings.

    Raises
    ------
    QualityLabError
        When no scan was possible (the reason :func:`alerts` gives): inside
        :func:`section`, a one-line note.

    Examples
    --------
    >>> al = pd.DataFrame({"alert_id": ["a", "b", "c", "d"], "metric": "accuracy",
    ...     "status": ["new", "ongoing", "muted", "new"], "label": ["", "", "", "confirmed"],
    ...     "severity": ["medium", "high", "high", "high"], "impact": [5.0, 1.0, 9.0, 9.0],
    ...     "incident_id": ["i1", "i2", "", ""], "incident_role": ["lead", "child", "", ""]})
    >>> alerts_to_explain(None, alerts_frame=al)["alert_id"].tolist()
    ['a']
    """
    max_alerts = _check_max_alerts(max_alerts)
    al = require(alerts(ctx), "the alert scan") if alerts_frame is None else alerts_frame
    out = al.copy().reset_index(drop=True)
    stored = "status" in out.columns
    for col in EXPLAIN_COLUMNS:
        if col not in out.columns:
            out[col] = float("nan") if col in ("observed", "expected", "impact") else ""
    for col in ("observed", "expected", "impact"):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    text = [c for c in EXPLAIN_COLUMNS if c not in ("observed", "expected", "impact", "children")]
    for col in text:
        values = [_text(v) for v in out[col]]
        if col in ("start_date", "end_date", "first_seen"):  # dates, not timestamps
            values = [v[:10] for v in values]
        out[col] = pd.Series(values, index=out.index, dtype="object")
    role = out["incident_role"].str.lower()
    inc = out["incident_id"]
    kids = inc[(role == "child") & (inc != "")].value_counts()
    out["children"] = [
        int(kids.get(i, 0)) if r == "lead" and i else 0 for i, r in zip(inc, role, strict=True)
    ]
    if stored:
        keep = out["status"].str.lower().isin(EXPLAIN_STATUSES) & (out["label"].str.strip() == "")
        out = out[keep & (role != "child")]
    out = out.assign(
        _lead=(out["incident_role"].str.lower() != "lead").astype(int),
        _sev=out["severity"].str.lower().map(_SEVERITY_ORDER).fillna(3),
        _impact=-out["impact"].fillna(0.0),
    )
    out = out.sort_values(["_lead", "_sev", "_impact"], kind="stable")
    return out[EXPLAIN_COLUMNS].head(max_alerts).reset_index(drop=True)


def deep_dive_targets(
    ctx: ReportContext,
    *,
    max_alerts: int = 3,
    metric: str = "",
    segment: str = "",
    current_start: str = "",
    current_end: str = "",
    baseline_days: int = 28,
) -> pd.DataFrame:
    """What notebook 03 explains: the given metric and dates, else the alerts.

    Parameters
    ----------
    ctx : ReportContext
    max_alerts : int, default 3
        Alerts explained when no metric is given (:func:`alerts_to_explain`).
    metric : str, optional
        Explain this metric (any of :data:`qualitylab.rca.EXPLAINED_METRICS`)
        instead of the alerts: over the given dates, else the window of its
        top alert (:func:`rca_focus`).
    segment : str, optional
        ``dimension:value``: with a metric, explain it within that segment;
        without, explain only the alerts on that segment.
    current_start, current_end : str, optional
        Both or neither: the current period, for the metric or every alert.
    baseline_days : int, default 28
        The baseline is the days before the current period.

    Returns
    -------
    pandas.DataFrame
        :data:`TARGET_COLUMNS`: one row per deep dive, with ``baseline_start``,
        ``baseline_end`` and a ``reason`` for the choice. Empty when no alert
        needs explaining.
    """
    from qualitylab.detection.rca import EXPLAINED_METRICS

    if bool(current_start) != bool(current_end):
        raise ParameterError(
            "give both current_start and current_end, or neither (the alerts' windows)",
            key="current_start" if not current_start else "current_end",
        )
    if isinstance(baseline_days, bool) or not isinstance(baseline_days, int) or baseline_days < 1:
        raise ParameterError(
            f"baseline_days must be a positive integer; got {baseline_days!r}", key="baseline_days"
        )
    seg = _segment_parameter(segment)
    if metric:
        if metric not in EXPLAINED_METRICS:
            raise ParameterError(
                f"metric must be one of {', '.join(EXPLAINED_METRICS)}; got {metric!r}",
                key="metric",
            )
        focus = rca_focus(
            ctx,
            metric,
            current_start=current_start,
            current_end=current_end,
            baseline_days=baseline_days,
            segment=segment,
        )
        dim, val = seg or ("market", ctx.market)
        row = {c: "" for c in EXPLAIN_COLUMNS} | {
            "market": ctx.market,
            "metric": metric,
            "dimension": dim,
            "segment": val,
            "start_date": str(focus.current[0]),
            "end_date": str(focus.current[1]),
            "observed": float("nan"),
            "expected": float("nan"),
            "impact": float("nan"),
            "children": 0,
            "baseline_start": str(focus.baseline[0]),
            "baseline_end": str(focus.baseline[1]),
            "reason": f"{metric} as asked. {focus.reason}",
        }
        return pd.DataFrame([row], columns=TARGET_COLUMNS)
    max_alerts = _check_max_alerts(max_alerts)
    todo = alerts_to_explain(ctx, max_alerts=10**9)
    if seg is not None:
        todo = todo[(todo["dimension"] == seg[0]) & (todo["segment"] == seg[1])]
    todo = todo.head(max_alerts).reset_index(drop=True)
    if current_start:
        todo["start_date"], todo["end_date"] = current_start, current_end
    starts = [m._as_date(str(s)[:10]) for s in todo["start_date"]]
    todo["baseline_start"] = [str(s - timedelta(days=baseline_days)) for s in starts]
    todo["baseline_end"] = [str(s - timedelta(days=1)) for s in starts]
    todo["reason"] = [_why(r, bool(current_start)) for r in todo.itertuples()]
    return todo[TARGET_COLUMNS]


def _segment_parameter(segment: str) -> tuple[str, str] | None:
    if not segment:
        return None
    if ":" not in segment:
        raise ParameterError(
            f"segment must look like dimension:value (e.g. vendor:VendorC); got {segment!r}",
            key="segment",
        )
    dim, val = segment.split(":", 1)
    return dim.strip(), val.strip()


def _why(r: Any, given: bool) -> str:
    """Why an alert is explained: its status and incident, in a few words."""
    parts = []
    if r.status == "new":
        parts.append("new alert")
    elif r.status == "ongoing":
        parts.append(f"ongoing since {r.first_seen[:10]}" if r.first_seen else "ongoing")
    else:  # a scan without the store: ranked by severity and impact
        parts.append(f"{r.severity} severity" if r.severity else "alert")
    if r.incident_role == "lead":
        parts.append(f"leads incident {r.incident_id}")
        if r.children:
            parts.append(f"{r.children} related alert(s) folded in")
    window = "the window as given" if given else "its window"
    return ", ".join(parts) + f"; {window} against the days before."


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
    from qualitylab.measure.scorecard import scorecard

    stored = _stored_scorecards(ctx.ds)
    mine = None
    if stored is not None:
        mine = stored[
            (stored["market"] == ctx.market)
            & (stored["period_start"] == str(ctx.start))
            & (stored["period_end"] == str(ctx.end))
        ]
    if mine is not None and (mine["grain"] == "market").any():
        market = _restore(mine[mine["grain"] == "market"], [])
        vendor = _restore(mine[mine["grain"] == "vendor"], ["vendor"])
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            market = scorecard(ctx.ds, ctx.market, start=ctx.start, end=ctx.end)
            vendor = scorecard(ctx.ds, ctx.market, by=["vendor"], start=ctx.start, end=ctx.end)
    both = pd.concat([market.assign(vendor="all vendors"), vendor], ignore_index=True)
    red = both[both["status"] == "red"]
    cols = ["vendor", *[c for c in both.columns if c not in ("vendor", "market")]]
    return red[cols].reset_index(drop=True)


def _explained_value(exp: Any, value: object, *, change: bool = False) -> str:
    """A value of an :class:`~qualitylab.rca.Explanation` in its metric's units."""
    if value is None or pd.isna(value):
        return "–"
    v = float(value)
    if exp.kind == "count":
        return f"{v:+,.1f}/day" if change else f"{v:,.1f}/day"
    if exp.kind == "backlog":
        return f"{v:+,.0f}" if change else f"{v:,.0f}"
    if exp.kind == "percentile":
        return f"{v:+,.0f} s" if change else f"{v:,.0f} s"
    if any(w in exp.metric for w in _NOT_PROPORTIONS):
        return f"{v:+.2f}" if change else f"{v:.2f}"
    return f"{100 * v:+.1f} pp" if change else f"{100 * v:.1f}%"


def explanation_table(exp: Any):
    """An :class:`~qualitylab.rca.Explanation`'s table, formatted and escaped."""
    t = exp.table
    share = "share of the change" if exp.kind != "percentile" else "share of the rise in slow items"
    if exp.kind == "gap":
        df = pd.DataFrame(
            {
                "kpi": t["segment"].astype(str),
                "measured": [
                    _gap_value(k, v) for k, v in zip(t["segment"], t["value_base"], strict=True)
                ],
                "reported": [
                    _gap_value(k, v) for k, v in zip(t["segment"], t["value_cur"], strict=True)
                ],
                "gap": [
                    _gap_value(k, v, True) for k, v in zip(t["segment"], t["change"], strict=True)
                ],
                "weeks": t["n_cur"].astype(int).astype(str),
                "beyond sampling error": ["yes" if x else "" for x in t["selected"]],
            }
        )
        return table(df, metric_column=None, caption=f"{exp.metric}: vendor {exp.segment}")
    dimension = str(t["dimension"].iloc[0]) if len(t) else ""
    df = pd.DataFrame(
        {
            dimension or "segment": t["segment"].astype(str),
            "baseline": [_explained_value(exp, v) for v in t["value_base"]],
            "current": [_explained_value(exp, v) for v in t["value_cur"]],
            "change": [_explained_value(exp, v, change=True) for v in t["change"]],
            "items": [
                f"{int(a):,} → {int(b):,}" for a, b in zip(t["n_base"], t["n_cur"], strict=True)
            ],
            share: ["–" if pd.isna(v) else f"{float(v):.0%}" for v in t["share_of_change"]],
            "named": ["yes" if x else "" for x in t["selected"]],
        }
    )
    return table(df, metric_column=None, caption=f"{exp.metric} by {dimension}")


def _gap_value(kpi: object, value: object, change: bool = False) -> str:
    if value is None or pd.isna(value):
        return "–"
    v = float(value)
    if str(kpi) == "volume":
        return f"{v:+,.0f}" if change else f"{v:,.0f}"
    return f"{100 * v:+.1f} pp" if change else f"{100 * v:.1f}%"


def _alert_words(r: Mapping[str, Any]) -> str:
    """``"ai_recall language=ms, down, 2026-11-05 to 2026-11-22 (high)"``."""
    sev = _text(r.get("severity"))
    return (
        f"{_text(r.get('metric'))} {_text(r.get('dimension'))}={_text(r.get('segment'))}, "
        f"{_text(r.get('direction'))}, {_text(r.get('start_date'))[:10]} to "
        f"{_text(r.get('end_date'))[:10]}" + (f" ({sev})" if sev else "")
    )


def incident_table(alerts_frame: pd.DataFrame):
    """The alerts as incidents: each lead with its children folded under it.

    Needs the incident columns a scheduled run adds (``incident_id``,
    ``incident_role``, ``incident_cause``, ``incident_event``); alerts of no
    incident are listed after the incidents. Children are in a collapsed
    ``<details>`` element (no script). Every value is escaped. Alerts without
    those columns (a scan outside a scheduled run) get one sentence saying so.

    Examples
    --------
    >>> al = pd.DataFrame({"metric": ["ai_recall", "override_rate"], "dimension": "policy",
    ...     "segment": ["<b>x</b>", "scam"], "direction": "down", "start_date": "2026-11-05",
    ...     "end_date": "2026-11-22", "severity": "high", "status": "new",
    ...     "incident_id": ["I1", "I1"], "incident_role": ["lead", "child"],
    ...     "incident_cause": ["model release", ""], "incident_event": ["mod-v4", ""]})
    >>> html_text = incident_table(al).data
    >>> "<details>" in html_text, "&lt;b&gt;x&lt;/b&gt;" in html_text, "<b>x" in html_text
    (True, True, False)
    >>> "not grouped into incidents" in incident_table(al.drop(columns="incident_id")).data
    True
    """
    from IPython.display import HTML

    if alerts_frame is None or "incident_id" not in alerts_frame.columns:
        return say(
            "These alerts come from a scan without the alert store, so they are not grouped "
            "into incidents (a scheduled run groups them); each alert lists the views of it "
            "that the scan folded in."
        )
    al = alerts_frame.reset_index(drop=True)
    inc = [_text(v) for v in al["incident_id"]]
    role = [_text(v).lower() for v in al.get("incident_role", pd.Series([""] * len(al)))]
    rows: list[str] = []
    alone: list[str] = []  # alerts of no incident, listed after the incidents
    seen: set[str] = set()
    for i, r in al.iterrows():
        iid = inc[i]
        if (
            iid
            and role[i] == "child"
            and any(inc[j] == iid and role[j] == "lead" for j in range(len(al)))
        ):
            continue  # folded under its lead
        if iid and iid in seen:
            continue
        seen.add(iid)
        children = [al.iloc[j] for j in range(len(al)) if iid and inc[j] == iid and j != i]
        folded = ""
        if children:
            items = "".join(f"<li>{escape(_alert_words(c))}</li>" for c in children)
            folded = (
                f"<details><summary>{len(children)} related alert(s)</summary>"
                f"<ul>{items}</ul></details>"
            )
        cells = [
            escape(iid or "–"),
            escape(_text(r.get("status")) or "–"),
            escape(_alert_words(r)) + folded,
            escape(_text(r.get("incident_cause")) or "–"),
            escape(_text(r.get("incident_event")) or "–"),
        ]
        (rows if iid else alone).append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    rows += alone
    head = "".join(
        f"<th>{h}</th>" for h in ("incident", "status", "lead alert", "cause", "linked event")
    )
    return HTML(
        f'<table class="ql-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def alert_columns(alerts_frame: pd.DataFrame) -> list[str]:
    """The columns to show of an alerts table: the store's (id, status, label) when present."""
    base = [
        "metric",
        "dimension",
        "segment",
        "start_date",
        "end_date",
        "observed",
        "expected",
        "direction",
        "severity",
        "detector",
        "p_value",
    ]
    store = [c for c in ("alert_id", "status", "label") if c in alerts_frame.columns]
    return [*store, *[c for c in base if c in alerts_frame.columns]]


def label_controls(alerts_frame: pd.DataFrame, reports: str, *, by: str = ""):
    """Labelling in JupyterLab: pick an alert, a label and a note, and save.

    Writes through :func:`qualitylab.alertstore.label_alert` to the reports
    folder's ``alert_labels.csv`` (the file ``qualitylab alerts label``
    writes). Without a reports folder, or without stored alerts, returns one
    sentence saying so instead of the controls.

    Parameters
    ----------
    alerts_frame : pandas.DataFrame
        Alerts with ``alert_id`` (a scheduled run's ``ql_alerts``).
    reports : str
        The reports folder (a run's ``--out``); empty: none.
    by : str, optional
        Who labels (default: the user name of the session).

    Examples
    --------
    >>> label_controls(pd.DataFrame(), "").data
    '<p>Labels need a reports folder: run the notebook with reports= set to the scheduled run&#x27;s --out folder.</p>'
    """
    if not reports:
        return say(
            "Labels need a reports folder: run the notebook with reports= set to the "
            "{what} folder.",
            what="scheduled run's --out",
        )
    ids = (
        [_text(v) for v in alerts_frame["alert_id"]]
        if alerts_frame is not None and "alert_id" in alerts_frame.columns
        else []
    )
    if not any(ids):
        return say("No stored alert to label in this period (the alerts carry no alert_id).")
    import getpass

    import ipywidgets as widgets
    from IPython.display import display

    from qualitylab.detection import alertstore

    options = [
        (f"{aid}: {_alert_words(r)}", aid)
        for aid, (_, r) in zip(ids, alerts_frame.iterrows(), strict=True)
        if aid
    ]
    pick = widgets.Dropdown(options=options, description="Alert", layout={"width": "90%"})
    label = widgets.Dropdown(options=list(alertstore.LABELS), description="Label")
    note = widgets.Text(description="Note", placeholder="why (optional)")
    who = widgets.Text(value=by or getpass.getuser(), description="By")
    save = widgets.Button(description="Save label", button_style="primary")
    shown = widgets.Output()

    def on_save(_: object) -> None:
        with shown:
            shown.clear_output()
            try:
                line = alertstore.label_alert(
                    reports, pick.value, label.value, note=note.value, by=who.value
                )
            except QualityLabError as exc:
                display(say("Not saved: {why}", why=_reason(exc)))
                return
            display(
                say(
                    "Saved: {aid} labelled {label} ({when}).",
                    aid=line.alert_id,
                    label=line.label,
                    when=line.labelled_at,
                )
            )

    save.on_click(on_save)
    return widgets.VBox([pick, widgets.HBox([label, who]), note, save, shown])


def focus_of(exp: Any) -> RcaFocus:
    """The :class:`RcaFocus` of an :class:`~qualitylab.rca.Explanation` (for :func:`nearest_event`)."""
    seg = None if exp.dimension == "market" else {exp.dimension: exp.segment}
    return RcaFocus(
        exp.metric,
        (exp.current.start, exp.current.end),
        (exp.baseline.start, exp.baseline.end),
        "The alert's window.",
        seg,
    )


# --------------------------------------------------------------------------- #
# What the QA sample can see (qualitylab.sampling)
# --------------------------------------------------------------------------- #
#: Dimensions of the alert scan that :func:`scan_blind_spots` judges.
SCAN_DIMENSIONS = ("vendor", "site", "queue", "language", "policy")


def _points(value: object) -> str:
    """A change in percentage points; ``none`` when no change reaches the power."""
    v = float(value)  # type: ignore[arg-type]
    return "none" if not math.isfinite(v) else f"{100 * v:.1f} pts"


def _audits(value: object) -> str:
    v = float(value)  # type: ignore[arg-type]
    if math.isnan(v):
        return "–"
    return "no number" if math.isinf(v) else f"{v:,.0f}"


def _segment_columns(detect: pd.DataFrame) -> list[str]:
    cols = list(detect.columns)
    return [c for c in cols[: cols.index("metric")] if c != "market"]


def blind_spot_table(detect: pd.DataFrame, *, max_rows: int = 60):
    """The blind spots of :func:`qualitylab.sampling.detectability`, as an escaped table.

    One row per blind segment x metric: the segment columns, ``metric``,
    ``weekly audits``, ``smallest detectable change`` (a week of audits, 80%
    power, the scan's corrections; ``none`` when no change would be seen),
    ``detectable drop`` and ``audits needed a week`` (``no number`` when no
    number of audits can show the drop).

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG", "SG"], "vendor": ["<b>V</b>", "W"],
    ...     "metric": ["accuracy", "accuracy"], "weekly_audits": [40.0, 900.0],
    ...     "mdc": [0.21, 0.04], "detectable_drop": [0.05, 0.05], "blind_spot": [True, False],
    ...     "weekly_audits_needed": [1877.0, 700.0]})
    >>> t = blind_spot_table(d).data
    >>> "&lt;b&gt;V" in t, "21.0 pts" in t, "1,877" in t, "W" in t
    (True, True, True, False)
    """
    cols = _segment_columns(detect)
    blind = detect[detect["blind_spot"].astype(bool)]
    shown = blind[cols + ["metric"]].copy()
    shown["weekly audits"] = [f"{float(v):,.1f}" for v in blind["weekly_audits"]]
    shown["smallest detectable change"] = [_points(v) for v in blind["mdc"]]
    shown["detectable drop"] = [_points(v) for v in blind["detectable_drop"]]
    shown["audits needed a week"] = [_audits(v) for v in blind["weekly_audits_needed"]]
    return table(shown, metric_column=None, max_rows=max_rows)


def blind_spot_sentence(detect: pd.DataFrame):
    """How many segments are blind, to which metrics, and to what size of change.

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG"] * 3, "vendor": ["A", "A", "B"],
    ...     "metric": ["accuracy", "ai_recall", "accuracy"], "weekly_audits": [40.0, 40.0, 900.0],
    ...     "mdc": [0.21, 0.5, 0.04], "detectable_drop": [0.05, 0.1, 0.05],
    ...     "blind_spot": [True, True, False], "weekly_audits_needed": [1877.0, 4000.0, 700.0]})
    >>> d.attrs.update(period=("2026-10-26", "2026-11-22"), period_days=28, series=329)
    >>> print(blind_spot_sentence(d).data)  # doctest: +NORMALIZE_WHITESPACE
    <p>1 of 2 vendor segments in SG is blind to at least one metric (accuracy in 1, ai_recall in 1):
    a week of its audits could not show a change of the detectable drop (accuracy 5.0 pts,
    ai_recall 10.0 pts) with 80% power, after the scan's corrections for 329 series searched over
    28 days (2026-10-26 to 2026-11-22).</p>
    """
    cols = _segment_columns(detect)
    seg = detect[cols].astype(str).fillna("–").agg(" / ".join, axis=1)
    n = int(seg.nunique())
    blind = detect["blind_spot"].astype(bool)
    k = int(seg[blind].nunique())
    start, end = detect.attrs.get("period", ("", ""))
    what = " × ".join(c for c in cols if c not in ("dimension", "segment")) or "scanned"
    market = str(detect["market"].iloc[0]) if len(detect) else ""
    metrics = list(dict.fromkeys(detect["metric"]))
    drops = detect.drop_duplicates("metric").set_index("metric")["detectable_drop"]
    size = ", ".join(f"{w} {_points(drops[w])}" for w in metrics)
    if k == 0:
        return say(
            "All {n} {what} segments in {market} can show a change of the detectable drop "
            "({size}) within a week of their audits, with 80% power after the scan's "
            "corrections ({start} to {end}).",
            n=n, what=what, market=market, size=size, start=start, end=end,
        )  # fmt: skip
    per = seg[blind].groupby(detect.loc[blind, "metric"], sort=False).nunique()
    which = ", ".join(f"{w} in {int(per[w])}" for w in metrics if w in per.index)
    verb, its = ("is", "its") if k == 1 else ("are", "their")
    return say(
        "{k} of {n} {what} segments in {market} {verb} blind to at least one metric ({which}): "
        "a week of {its} audits could not show a change of the detectable drop ({size}) with 80% "
        "power, after the scan's corrections for {series} series searched over {days} days "
        "({start} to {end}).",
        k=k, n=n, what=what, market=market, verb=verb, which=which, its=its, size=size,
        series=int(detect.attrs.get("series", 0)), days=int(detect.attrs.get("period_days", 0)),
        start=start, end=end,
    )  # fmt: skip


def weeks_with_data(ctx: ReportContext) -> int:
    """Full weeks at the end of the period that have data (at least 1).

    The period's weeks, or fewer when the market's data starts inside the
    period: weekly audits averaged over weeks without data would read as a
    smaller sample than the market has.

    Examples
    --------
    >>> from qualitylab.measure.metrics import Period
    >>> c = ReportContext(None, "MY", None, Period(date(2026, 10, 26), date(2026, 11, 22)),
    ...                   Period(date(2026, 9, 28), date(2026, 10, 25)), date(2026, 11, 22),
    ...                   data_start=date(2026, 11, 9))
    >>> weeks_with_data(c)
    2
    """
    weeks = max(ctx.period.days // 7, 1)
    first = ctx.data_start
    if first is None or first <= ctx.start:
        return weeks
    return min(max(((ctx.end - first).days + 1) // 7, 1), weeks)


def scan_blind_spots(
    ctx: ReportContext, *, dimensions: Sequence[str] = SCAN_DIMENSIONS
) -> pd.DataFrame:
    """Detectability of every segment the period's scan judges, one dimension at a time.

    :func:`qualitylab.sampling.detectability` for each of ``dimensions``
    (``by=[dimension]``) over the report period (its last
    :func:`weeks_with_data` weeks for a market younger than it), concatenated with the
    columns ``market, dimension, segment`` before ``metric``. ``attrs`` are
    those of the first dimension (period, series, notes).
    """
    import warnings

    from qualitylab.detection.sampling import DETECTABILITY_COLUMNS, detectability

    frames = []
    series = None
    weeks = weeks_with_data(ctx)
    for dim in dimensions:
        with warnings.catch_warnings():  # the notes are kept in attrs
            warnings.simplefilter("ignore")
            d = detectability(ctx.ds, ctx.market, by=[dim], weeks=weeks, end=ctx.end, series=series)
        series = d.attrs["series"]
        d = d[d[dim].notna()]  # decisions without a policy: no series of the scan
        frames.append(d.rename(columns={dim: "segment"}).assign(dimension=dim))
    out = pd.concat(frames, ignore_index=True)
    out = out[["market", "dimension", "segment", *DETECTABILITY_COLUMNS]]
    out.attrs = dict(frames[0].attrs)
    return out


def blind_segment_table(detect: pd.DataFrame, *, max_rows: int = 60):
    """Blind segments, one row each: weekly audits and the smallest change per metric.

    A cell reads ``21.6 pts (blind)`` where the change a week of audits can
    show is larger than the metric's detectable drop, ``none (blind)`` where
    no change would be seen, and ``3.1 pts`` where the segment can see it.

    Examples
    --------
    >>> d = pd.DataFrame({"market": ["SG"] * 2, "dimension": ["vendor"] * 2,
    ...     "segment": ["<i>A</i>", "<i>A</i>"], "metric": ["accuracy", "ai_recall"],
    ...     "weekly_audits": [40.0, 40.0], "mdc": [0.21, 0.08], "detectable_drop": [0.05, 0.1],
    ...     "blind_spot": [True, False], "weekly_audits_needed": [1877.0, 30.0]})
    >>> t = blind_segment_table(d).data
    >>> "&lt;i&gt;A" in t, "21.0 pts (blind)" in t, "8.0 pts<" in t
    (True, True, True)
    """
    cols = _segment_columns(detect)
    d = detect.copy()
    d["cell"] = [
        _points(v) + (" (blind)" if b else "")
        for v, b in zip(d["mdc"], d["blind_spot"].astype(bool), strict=True)
    ]
    key = d[cols].astype(str).fillna("–").agg("\x1f".join, axis=1)
    blind_keys = set(key[d["blind_spot"].astype(bool)])
    d = d[key.isin(blind_keys)]
    if d.empty:
        return say("No segment is blind.")
    wide = d.pivot_table(index=cols, columns="metric", values="cell", aggfunc="first", sort=False)
    wide = wide[[w for w in dict.fromkeys(d["metric"]) if w in wide.columns]]
    audits = d.groupby(cols, sort=False)["weekly_audits"].first().map(lambda v: f"{v:,.1f}")
    wide.insert(0, "weekly audits", audits)
    shown = wide.reset_index().fillna("–")
    return table(shown, metric_column=None, max_rows=max_rows)


def sampling_plan_summary(plan: Any):
    """A :class:`~qualitylab.sampling.SamplingPlan` before and after, as an escaped table.

    Rows: weekly audits, the standard error of one week's design-weighted
    market accuracy (in points; ``not bounded`` when a stratum with
    decisions has no audits) and the blind strata.
    """
    s = plan.summary().set_index("measure")
    strata = len(plan.plan)

    def se(v: float) -> str:
        return "not bounded" if not math.isfinite(v) else f"{100 * v:.2f} pts"

    rows = [
        ("weekly audits", f"{s.loc['weekly_audits', 'before']:,.0f}",
         f"{s.loc['weekly_audits', 'after']:,.0f}"),
        ("standard error of the market's weekly accuracy", se(plan.se_before), se(plan.se_after)),
        (f"blind strata (of {strata})", f"{plan.blind_before:,}", f"{plan.blind_after:,}"),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["measure", "now", "with the plan"])
    return table(frame, metric_column=None)


def sampling_plan_sentence(plan: Any):
    """What the plan buys, what stays blind and the budget that would close it, escaped.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> p = SimpleNamespace(market="SG", budget=439, drop=0.05, se_before=0.016,
    ...     se_after=0.0127, blind_before=12, blind_after=12, plan=pd.DataFrame(index=range(12)),
    ...     unreachable=("A / q",) * 12, still_blind=("A / q",) * 12, budget_to_close=12)
    >>> print(sampling_plan_sentence(p).data)  # doctest: +NORMALIZE_WHITESPACE
    <p>Spread as recommended, 439 weekly audits take the standard error of SG's weekly accuracy
    from 1.60 to 1.27 points and the blind strata from 12 to 12 of 12. 12 strata cannot show a
    5.0-point drop at any budget: a week of them has fewer decisions than the audits it would
    need.</p>
    """
    strata = len(plan.plan)

    def se(v: float) -> str:
        return "not bounded" if not math.isfinite(v) else f"{100 * v:.2f}"

    text = (
        "Spread as recommended, {budget:,} weekly audits take the standard error of {market}'s "
        "weekly accuracy from {se_b} to {se_a} points and the blind strata from {bb} to {ba} "
        "of {strata}."
    )
    unreachable = len(plan.unreachable)
    closable = plan.blind_after - sum(1 for s in plan.still_blind if s in set(plan.unreachable))
    if unreachable:
        text += (
            " {u} {strata_word} cannot show a {drop:.1f}-point drop at any budget: a week of "
            "them has fewer decisions than the audits it would need."
        )
    if closable > 0:
        text += " A weekly budget of {close:,} would make every other stratum detectable."
    elif plan.blind_after == 0:
        text += " Every stratum can then show a {drop:.1f}-point drop."
    return say(
        text,
        budget=int(plan.budget), market=plan.market, se_b=se(plan.se_before),
        se_a=se(plan.se_after), bb=int(plan.blind_before), ba=int(plan.blind_after),
        strata=strata, u=unreachable, strata_word="stratum" if unreachable == 1 else "strata",
        drop=100 * float(plan.drop), close=int(plan.budget_to_close),
    )  # fmt: skip
