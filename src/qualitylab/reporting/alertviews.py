"""Showing alerts: incidents with their children folded, the columns, labelling.

:func:`incident_table` groups a scheduled run's alerts into incidents,
:func:`alert_columns` picks the columns to show, and :func:`label_controls`
lets an analyst label an alert from JupyterLab.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from qualitylab.errors import QualityLabError
from qualitylab.reporting.notes import note_reason
from qualitylab.reporting.tables import cell_text, escape, say


def _alert_words(r: Mapping[str, Any]) -> str:
    """``"ai_recall language=ms, down, 2026-11-05 to 2026-11-22 (high)"``."""
    sev = cell_text(r.get("severity"))
    return (
        f"{cell_text(r.get('metric'))} {cell_text(r.get('dimension'))}={cell_text(r.get('segment'))}, "
        f"{cell_text(r.get('direction'))}, {cell_text(r.get('start_date'))[:10]} to "
        f"{cell_text(r.get('end_date'))[:10]}" + (f" ({sev})" if sev else "")
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
    inc = [cell_text(v) for v in al["incident_id"]]
    role = [cell_text(v).lower() for v in al.get("incident_role", pd.Series([""] * len(al)))]
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
            escape(cell_text(r.get("status")) or "–"),
            escape(_alert_words(r)) + folded,
            escape(cell_text(r.get("incident_cause")) or "–"),
            escape(cell_text(r.get("incident_event")) or "–"),
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
        [cell_text(v) for v in alerts_frame["alert_id"]]
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
                display(say("Not saved: {why}", why=note_reason(exc)))
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
