"""HTML for the reader: sentences and tables built from data, always escaped.

A vendor or event description containing ``<script>`` shows as text:
:func:`say` escapes every value it fills in, :func:`table` every cell, and
values are formatted per metric (rates as percentages, response times in
seconds). :func:`explanation_table` formats a root-cause explanation.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

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


def escape(value: object) -> str:
    """HTML-escape any value (quotes too)."""
    return html.escape("" if value is None else str(value), quote=True)


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


def cell_text(value: object) -> str:
    """A cell of an alerts frame as text ('' for missing values)."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NA:
        return ""
    text = str(value)
    return "" if text in ("nan", "NaT", "None", "<NA>") else text


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
