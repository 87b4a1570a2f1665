"""The hub pages: a report date's ``index.html`` (reports, KPIs, alerts, precision) and the runs index."""

from __future__ import annotations

import contextlib
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qualitylab.runs.runner.jobs import HUB_METRICS, TITLES


def day_alerts(out_root: Path, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The store's rows of a report date (labels in force now applied) and the labels.

    An alert labelled ``false_alarm``/``expected`` after the run that wrote it
    shows ``muted`` at once.
    """
    from qualitylab.detection import alertstore

    store = alertstore.read_store(out_root)
    labels = alertstore.read_labels(out_root)
    if store.empty:
        return store, labels
    day = store[(store["as_of"].astype(str).str[:10] == label) & (store["kind"] == "daily")]
    current = alertstore.latest_labels(labels).set_index("alert_id")
    if len(day) and len(current):
        now = day["alert_id"].map(current["label"])
        note = day["alert_id"].map(current["note"])
        day = day.assign(
            label=now.where(now.notna(), day["label"]),
            label_note=note.where(now.notna(), day["label_note"]),
        )
        muting = day["label"].isin(alertstore.MUTING_LABELS) & day["status"].isin(
            ["new", "ongoing"]
        )
        day = day.assign(status=day["status"].where(~muting, "muted"))
    return day, labels


def manifest_findings(manifest: Mapping[str, Any]) -> dict[str, str]:
    """``alert_id`` → the deep dive's sentence, from every notebook of the date."""
    out: dict[str, str] = {}
    for job in manifest.get("jobs", []):
        for f in job.get("findings") or []:
            if f.get("alert_id") and f.get("sentence"):
                out.setdefault(str(f["alert_id"]), str(f["sentence"]))
    return out


def _alerts_html(day: pd.DataFrame, findings: Mapping[str, str], final: Path) -> str:
    """The hub's alert sections: new since the last run, ongoing, resolved; muted counted."""
    e = html.escape
    if day is None or day.empty:
        return (
            '<h2 id="new">New since the last run</h2><p>No alerts are recorded for this '
            "date (no scan, or nothing found).</p>"
        )
    role = day["incident_role"] if "incident_role" in day.columns else pd.Series("", day.index)
    leads = day[~role.eq("child")]
    kids = day[role.eq("child")]
    sev = {"high": 0, "medium": 1, "low": 2}

    def where(a: Any) -> str:
        return "market" if a.dimension == "market" else f"{a.dimension} {a.segment}"

    def item(a: Any) -> str:
        children = kids[kids["incident_id"] == a.alert_id] if "incident_id" in kids else kids[:0]
        sentence = findings.get(str(a.alert_id), "") or str(getattr(a, "incident_cause", "") or "")
        deep = (
            f' · <a href="{e(a.market)}/rca.stakeholder.html">deep dive</a>'
            if (final / str(a.market) / "rca.stakeholder.html").is_file()
            else ""
        )
        folded = ""
        if len(children):
            lis = "".join(
                f"<li>{e(str(c.severity))} {e(str(c.metric))} {e(str(c.direction))} in "
                f"{e(where(c))} <code>{e(str(c.alert_id))}</code></li>"
                for c in children.itertuples()
            )
            folded = (
                f"<details><summary>{len(children)} related alert"
                f"{'s' if len(children) > 1 else ''} (same cause)</summary><ul>{lis}</ul></details>"
            )
        given = "" if a.label is None or pd.isna(a.label) else str(a.label)
        label = f" <small>label: {e(given)}</small>" if given else ""
        return (
            f'<li class="{e(str(a.severity))}"><strong>{e(str(a.market))}</strong> '
            f"{e(str(a.severity))} {e(str(a.metric))} {e(str(a.direction))} in {e(where(a))}, "
            f"{e(str(a.start_date)[:10])} to {e(str(a.end_date)[:10])} "
            f"<code>{e(str(a.alert_id))}</code>{label}{deep}"
            + (f'<br><span class="why">{e(sentence)}</span>' if sentence else "")
            + f"{folded}</li>"
        )

    parts = []
    for status, title, anchor in (
        ("new", "New since the last run", "new"),
        ("ongoing", "Ongoing", "ongoing"),
        ("resolved", "Resolved", "resolved"),
    ):
        rows = leads[leads["status"] == status]
        rows = rows.assign(_o=rows["severity"].map(sev)).sort_values(["market", "_o"])
        body = (
            '<ul class="alerts">' + "".join(item(a) for a in rows.itertuples()) + "</ul>"
            if len(rows)
            else "<p>None.</p>"
        )
        parts.append(f'<h2 id="{anchor}">{title} ({len(rows)})</h2>{body}')
    muted = leads[leads["status"] == "muted"]
    if len(muted):
        parts.append(
            f"<p><small>{len(muted)} muted alert{'s' if len(muted) > 1 else ''} (labelled "
            "false alarm or expected) left out: "
            + ", ".join(f"<code>{e(str(a))}</code>" for a in muted["alert_id"])
            + "</small></p>"
        )
    return "\n".join(parts)


def _precision_html(out_root: Path) -> str:
    """Alert precision per metric and detector from the labels (Wilson 95% intervals)."""
    from qualitylab.detection import alertstore

    store = alertstore.read_store(out_root)
    labels = alertstore.read_labels(out_root)
    prec = alertstore.alert_precision(store, labels) if len(labels) else None
    if prec is None or prec.empty:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(str(r.by))}</td><td>{e(str(r.group))}</td><td>{int(r.n)}</td>"
        f"<td>{int(r.confirmed)}</td><td>{_fmt('p', r.precision)} "
        f"<small>({_fmt('p', r.ci_low)}–{_fmt('p', r.ci_high)})</small></td></tr>"
        for r in prec.itertuples()
    )
    return (
        '<h2 id="precision">Alert precision</h2><p>Share of labelled alerts that people '
        "confirmed, with a Wilson 95% interval.</p><table><thead><tr><th>by</th><th></th>"
        f"<th>labelled</th><th>confirmed</th><th>precision</th></tr></thead><tbody>{rows}"
        "</tbody></table>"
    )


def _fmt(metric: str, value: float) -> str:
    if pd.isna(value):
        return "–"
    if metric == "volume":
        return f"{int(value):,}"
    return f"{100 * value:.1f}%"


def hub_page(
    label: str, manifest: Mapping[str, Any], history: pd.DataFrame | None, out_root: Path
) -> str:
    """The report date's hub page: every market × notebook in the folder, from any run."""
    e = html.escape
    codes = [c for c in manifest.get("markets", []) if c != "ALL"]
    keys = list(manifest.get("notebooks", []))
    jobs: list[dict[str, Any]] = [dict(j) for j in manifest.get("jobs", [])]
    cell = {(j["market"], j["notebook"]): j for j in jobs}
    final = out_root / label
    runs = manifest.get("runs") or [manifest]
    run_id = str(manifest.get("run_id", ""))
    head = "".join(f"<th>{e(TITLES[k])}</th>" for k in keys)
    kpi_head = "".join(f"<th>{e(m)}</th>" for m in HUB_METRICS)
    day, _ = day_alerts(out_root, label)
    open_alerts = (
        day[day["status"].isin(["new", "ongoing"])].groupby("market").size()
        if len(day)
        else pd.Series(dtype=int)
    )
    now = (
        history[history["as_of"].astype(str) == label]
        if history is not None and "as_of" in history.columns
        else None
    )
    rows = []
    for code in codes:
        tds = []
        for k in keys:
            j = cell.get((code, k))
            if j is None:
                tds.append("<td>–</td>")
                continue
            notes = j.get("notes") or []
            produced = f"run {j.get('run_id', '')}, {str(j.get('finished_at', ''))[:16]}"
            if j.get("status") == "ok":
                short = (
                    f'<br><small class="short" title="{e(_notes_title(notes))}">'
                    f"{len(notes)} section{'s' if len(notes) > 1 else ''} short of data"
                    "</small>"
                    if notes
                    else ""
                )
                tds.append(
                    f'<td class="ok" title="{e(produced)}">ok {float(j.get("duration", 0)):.0f}s<br>'
                    f'<a href="{e(code)}/{e(k)}.stakeholder.html">report</a> · '
                    f'<a href="{e(code)}/{e(k)}.html">full</a>{short}</td>'
                )
            else:
                err = j.get("error") or {}
                where = f"cell {err.get('cell_index')}" if err.get("cell_index") is not None else ""
                good = j.get("last_good") or {}
                previous = final / code / f"{k}.stakeholder.html"
                kept = (
                    f'<br><a href="{e(code)}/{e(k)}.stakeholder.html">last good report</a>'
                    + (f" <small>(run {e(str(good.get('run_id', '')))})</small>" if good else "")
                    if previous.is_file()
                    else ""
                )
                tds.append(
                    f'<td class="failed" title="{e(produced)}">{e(str(j.get("status")))} '
                    f"{e(where)}<br>"
                    f"<small>{e(str(err.get('ename', '')))}: "
                    f"{e(str(err.get('evalue', ''))[:160])}</small>{kept}</td>"
                )
        kpis = []
        mine = now[now["market"] == code] if now is not None and len(now) else None
        for metric in HUB_METRICS:
            row = mine[mine["metric"] == metric] if mine is not None else None
            if row is None or row.empty:
                kpis.append("<td>–</td>")
                continue
            r0 = row.iloc[-1]
            trend = ""
            if history is not None and len(history):
                past = history[(history.market == code) & (history.metric == metric)].tail(6)
                if len(past) > 1:
                    trend = " → ".join(_fmt(metric, v) for v in past["value"])
            kpis.append(
                f'<td class="{e(str(r0.status))}" title="{e(trend)}">{e(_fmt(metric, r0.value))}'
                f"<br><small>{e(str(r0.status))}</small></td>"
            )
        if len(day):  # open alerts from the store: muted and resolved ones left out
            n_alerts: Any = int(open_alerts.get(code, 0))
        else:
            n_alerts = int(mine["alerts"].iloc[-1]) if mine is not None and len(mine) else "–"
        alerts_link = (
            f'<a href="{e(code)}/alerts.csv">{n_alerts}</a>'
            if (final / code / "alerts.csv").is_file()
            else str(n_alerts)
        )
        rows.append(
            f"<tr><th>{e(code)}</th>{''.join(tds)}{''.join(kpis)}<td>{alerts_link}</td></tr>"
        )
    port = cell.get(("ALL", "portfolio"))
    port_html = ""
    if port is not None:
        port_html = (
            f'<p>Portfolio: <a href="portfolio/portfolio.stakeholder.html">report</a> · '
            f'<a href="portfolio/portfolio.html">full</a> (ok, run {e(str(port.get("run_id")))})</p>'
            if port.get("status") == "ok"
            else f"<p>Portfolio: {e(str(port.get('status')))} — "
            f"{e(str((port.get('error') or {}).get('evalue', '')))}</p>"
        )
    failed = [j for j in jobs if j.get("status") != "ok"]
    noted = [j for j in jobs if j.get("notes")]
    notes_html = ""
    if noted:
        items = "".join(
            f"<tr><td>{e(j['market'])}</td><td>{e(TITLES.get(j['notebook'], j['notebook']))}</td>"
            f"<td>{e(str(n.get('section', '')))}</td><td>{e(str(n.get('reason', '')))}</td></tr>"
            for j in noted
            for n in j["notes"]
        )
        notes_html = (
            '<h2 id="short-of-data">Sections with too little data</h2>\n'
            f"<p>{sum(len(j['notes']) for j in noted)} sections in {len(noted)} notebooks show a "
            "note instead of a result: the data for them is absent or too short. "
            "The notebooks themselves ran.</p>\n"
            '<table class="notes"><thead><tr><th>market</th><th>notebook</th><th>section</th>'
            f"<th>why</th></tr></thead><tbody>{items}</tbody></table>"
        )
    runs_text = (
        f"Run {e(run_id)}"
        if len(runs) <= 1
        else f"{len(runs)} runs for this date, the latest {e(run_id)}"
    )
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<title>qualitylab reports {e(label)}</title>
<style>
body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px; }}
table {{ border-collapse: collapse; }} th, td {{ border: 1px solid #ddd; padding: 6px 10px; vertical-align: top; }}
td.ok {{ background: #eef8f4; }} td.failed, td.timeout {{ background: #fbeae5; }}
td.green {{ color: #009E73; }} td.amber {{ color: #B07800; }} td.red {{ color: #D55E00; font-weight: bold; }}
small.short {{ color: #8a5a00; }}
ul.alerts li {{ margin-bottom: 6px; }} li.high strong {{ color: #D55E00; }} span.why {{ color: #444; }}
</style></head><body>
<h1>qualitylab reports — {e(label)}</h1>
<p>{runs_text}: {len(jobs)} notebooks, {len(failed)} failed, {len(noted)} with sections short of
data. <a href="manifest.json">manifest</a> ·
<a href="run.log">log</a> · <a href="../index.html">previous runs</a></p>
{port_html}
<p><a href="digest.html">digest</a> (also <a href="digest.md">digest.md</a>, to paste into chat)</p>
{_alerts_html(day, manifest_findings(manifest), final)}
<h2 id="reports">Reports</h2>
<table><thead><tr><th>market</th>{head}{kpi_head}<th>open alerts</th></tr></thead>
<tbody>{"".join(rows)}</tbody></table>
<p><small>KPI cells: value for the last four full weeks, status against target (hover for the
trend across runs).</small></p>
{notes_html}
{_precision_html(out_root)}
</body></html>"""


def _notes_title(notes: Sequence[Mapping[str, Any]]) -> str:
    """``"section: reason"`` per note, one a line (a cell's hover text)."""
    return "\n".join(f"{n.get('section', '')}: {n.get('reason', '')}" for n in notes)


def runs_index(out_root: Path) -> str:
    e = html.escape
    runs = sorted(
        (
            p
            for p in out_root.iterdir()
            if p.is_dir() and not p.name.startswith(".") and (p / "manifest.json").exists()
        ),
        reverse=True,
    )
    items = []
    for p in runs:
        with contextlib.suppress(Exception):
            man = json.loads((p / "manifest.json").read_text())
            failed = sum(j["status"] != "ok" for j in man["jobs"])
            items.append(
                f'<li><a href="{e(p.name)}/index.html">{e(p.name)}</a> — run {e(man["run_id"])}, '
                f"{len(man['jobs'])} notebooks, {failed} failed</li>"
            )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>qualitylab runs</title>'
        '</head><body style="font-family: Helvetica, Arial, sans-serif"><h1>qualitylab runs</h1><ul>'
        + "".join(items)
        + "</ul></body></html>"
    )
