"""What a notebook leaves for the runner: section notes and findings.

A notebook section runs inside :func:`section`: when the data is too thin for
it (an optional table absent, no rows for the market or period, too little
history), the library raises :class:`~qualitylab.errors.QualityLabError`, and
the section shows one sentence saying what is missing instead of failing the
notebook. The sentence is also an output of mimetype :data:`NOTE_MIMETYPE`,
which the scheduled runner collects into the manifest and the hub
(:func:`notebook_notes`). A deep dive's conclusion is a :func:`finding`, an
output of mimetype :data:`FINDING_MIMETYPE` read back by :func:`notebook_findings`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

from qualitylab.errors import ParameterError, QualityLabError
from qualitylab.reporting.quietimport import import_jsonschema_quietly
from qualitylab.reporting.tables import cell_text, escape

import_jsonschema_quietly()  # before nbformat: saves ~2.5 s of import time

import nbformat  # noqa: E402

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


def note_reason(exc: BaseException) -> str:
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
        self.note = SectionNote(self.title, note_reason(exc))
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


#: Mimetype of the output :func:`finding` leaves in an executed notebook (a JSON
#: object, :attr:`Finding.to_dict`), read back by :func:`notebook_findings`.
FINDING_MIMETYPE = "application/vnd.qualitylab.finding+json"


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
        k: cell_text(alert.get(k)) if alert is not None else ""
        for k in ("market", "metric", "dimension", "segment", "start_date", "end_date")
    }
    about["start_date"], about["end_date"] = about["start_date"][:10], about["end_date"][:10]
    return Finding(cell_text(alert_id), str(sentence), **about)


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
