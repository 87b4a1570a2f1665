"""An executed notebook as self-contained HTML, the full or the stakeholder page.

:func:`render_html` inlines the vega bundle once (no CDN script), and for
stakeholders hides code and prompts, adds a title naming market and period
and a table of contents, and replaces moderator ids by their aliases.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from qualitylab.reporting.quietimport import import_jsonschema_quietly

import_jsonschema_quietly()  # before nbformat: saves ~2.5 s of import time

import nbformat  # noqa: E402

TEMPLATE_DIR = Path(__file__).parent / "templates"


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
    # nbconvert parses and re-serialises the whole page (BeautifulSoup, for image
    # alt texts and tabindex); the 0.9 MB bundle and the base64 chart images are
    # opaque to it, so they go through as short placeholders and are put back
    # after (~60% of a chart-laden page's rendering time)
    blobs: dict[str, str] = {}

    def stash(text: str) -> str:
        key = f"ql-blob-{len(blobs)}-{uuid.uuid4().hex}"
        blobs[key] = text
        return key

    nb = _with_placeholders(nb, stash)
    resources = {
        "ql_vega_bundle": stash(vega_bundle()),
        "ql_title": title if stakeholder or title else None,
        "ql_subtitle": subtitle,
        "ql_toc": _headings(nb) if stakeholder else [],
        "metadata": {"name": title or "qualitylab report"},
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    if blobs:
        body = _BLOB.sub(lambda mt: blobs.get(mt.group(0), mt.group(0)), body)
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


_DATA_URI = re.compile(r"data:image/(?:svg\+xml|png);base64,[A-Za-z0-9+/=]{256,}")
_BLOB = re.compile(r"ql-blob-\d+-[0-9a-f]{32}")


def _with_placeholders(nb: nbformat.NotebookNode, stash: Any) -> nbformat.NotebookNode:
    """A copy of the notebook whose long base64 images in HTML outputs are placeholders."""
    out = None
    for i, cell in enumerate(nb.cells):
        for j, o in enumerate(cell.get("outputs", [])):
            text = o.get("data", {}).get("text/html")
            if isinstance(text, list):
                text = "".join(text)
            if isinstance(text, str) and _DATA_URI.search(text):
                if out is None:
                    out = nbformat.from_dict(json.loads(json.dumps(nb)))
                out.cells[i].outputs[j].data["text/html"] = _DATA_URI.sub(
                    lambda mt: stash(mt.group(0)), text
                )
    return out if out is not None else nb


def external_references(page: str) -> list[str]:
    """``src``/``href`` URLs in a page that would be fetched from the network."""
    found = re.findall(r"""<(?:script|link|img|iframe)[^>]+(?:src|href)\s*=\s*["']([^"']+)""", page)
    return [u for u in found if re.match(r"^(https?:)?//", u)]


def notebook_json_safe(value: object) -> str:
    """JSON for embedding in a page (``<`` escaped)."""
    return json.dumps(value).replace("<", "\\u003c")
