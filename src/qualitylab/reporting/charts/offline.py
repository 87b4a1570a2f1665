"""Offline rendering: SVG/PNG with vl-convert, the inline vega bundle, HTML fragments.

:func:`to_svg` and :func:`to_png` render without a network, :func:`vega_bundle`
is vega, vega-lite and vega-embed as one inline script, :func:`chart_html` a
``<div>`` + ``<script>`` fragment, and the ``qualitylab`` altair renderer
(:func:`enable_offline_renderer`) is registered on import.

A batch run renders the static images in its worker instead of in each notebook
kernel (:data:`DEFER_ENV`, :func:`fill_deferred_images`): vl-convert starts its
JavaScript engine once per process (~0.4 s), which a worker pays once and a
kernel per notebook.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
import uuid
from collections.abc import Mapping
from typing import Any

import altair as alt
import vl_convert as vlc

from qualitylab.errors import ParameterError
from qualitylab.reporting.charts.base import (
    MSG_CHOICE,
    MSG_DIV_ID,
    MSG_NOT_CHART,
    MSG_NOT_JSON,
    MSG_NUMBER,
    finite_number,
)
from qualitylab.reporting.charts.theme import RENDERER_NAME

# --------------------------------------------------------------------------- #
# offline rendering
# --------------------------------------------------------------------------- #
_DIV_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


def _vl_version() -> str | None:
    """The vega-lite version vl-convert should use: altair's, when vl-convert has it."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vlc.get_vegalite_versions() else None


def _spec(chart: Any) -> dict[str, Any]:
    if isinstance(chart, Mapping):
        return json.loads(json.dumps(chart))
    if isinstance(chart, alt.TopLevelMixin):
        return chart.to_dict()
    raise ParameterError(MSG_NOT_CHART.format(type=type(chart).__name__), key="chart")


def to_svg(chart: Any) -> str:
    """Render a chart to an SVG string offline with vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        A chart (the active altair theme applies, as in a notebook) or a
        vega-lite spec.

    Returns
    -------
    str
        The ``<svg …>`` document. External data URLs are refused, so nothing is
        fetched.
    """
    return vlc.vegalite_to_svg(_spec(chart), vl_version=_vl_version(), allowed_base_urls=[])


def to_png(chart: Any, scale: float = 1) -> bytes:
    """Render a chart to PNG bytes offline with vl-convert.

    Parameters
    ----------
    chart : altair chart or dict
        As for :func:`to_svg`.
    scale : float, default 1
        Pixel scale factor (2 for high-DPI images).

    Returns
    -------
    bytes
        The PNG file.
    """
    s = finite_number(scale, "scale")
    if s <= 0:
        raise ParameterError(MSG_NUMBER.format(name="scale", value=scale), key="scale")
    return vlc.vegalite_to_png(
        _spec(chart), vl_version=_vl_version(), scale=s, allowed_base_urls=[]
    )


@functools.cache
def vega_bundle() -> str:
    """The JavaScript defining ``vegaEmbed``, ``vega`` and ``vegaLite``, inline.

    Built once per process by ``vl_convert.javascript_bundle()`` (vega,
    vega-lite at altair's version and vega-embed with every dependency, ~0.9
    MB) and cached. The report builder puts it in the page **once**, in
    ``<head>``: ``"<script>" + vega_bundle() + "</script>"``; it contains no
    ``</script`` and is wrapped so that loading it a second time in the same
    page (e.g. a notebook that also injected it) is a no-op.

    Returns
    -------
    str
        JavaScript source, no network needed.
    """
    js = vlc.javascript_bundle(vl_version=_vl_version())
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    return 'if (typeof window.vegaEmbed !== "function") {\n' + js + "\n}\n"


def _embed_json(spec: Mapping[str, Any]) -> str:
    """JSON safe inside ``<script>``: no ``<``, ``>``, ``&``, U+2028/9 left raw."""
    try:
        text = json.dumps(spec, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ParameterError(MSG_NOT_JSON.format(error=exc), key="chart") from exc
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _alt_text(spec: Mapping[str, Any]) -> str:
    t = spec.get("title")
    if isinstance(t, Mapping):
        t = t.get("text")
    if isinstance(t, list):
        t = " ".join(map(str, t))
    return str(t) if t else "chart"


_FALLBACKS = (None, "svg", "png")

#: Environment variable: when ``"1"``, the ``qualitylab`` renderer leaves each
#: chart's SVG to :func:`fill_deferred_images` (a placeholder and the spec in the
#: output) instead of starting vl-convert in the kernel. The batch runner sets it
#: for the kernels it starts and fills the images in its worker.
DEFER_ENV = "QUALITYLAB_DEFER_CHART_IMAGES"
#: Output mimetype holding a deferred chart's placeholder and vega-lite spec.
PENDING_MIME = "application/vnd.qualitylab.pending-svg+json"
_PENDING = "ql-pending-svg-"
_SVG_URI = "data:image/svg+xml;base64,"


def _deferred() -> bool:
    return os.environ.get(DEFER_ENV, "") == "1"


def _svg(spec: dict[str, Any], key: str) -> str:
    """The chart's SVG, or its placeholder when images are deferred."""
    return _PENDING + key if _deferred() else to_svg(spec)


def _fragment(
    spec: dict[str, Any], div_id: str | None, fallback: str | None
) -> tuple[str, Any, dict[str, Any]]:
    """The HTML fragment, the fallback image (svg str / png bytes / None) and its spec."""
    if div_id is None:
        div_id = "ql-chart-" + uuid.uuid4().hex[:12]
    elif not isinstance(div_id, str) or not _DIV_ID.match(div_id):
        raise ParameterError(MSG_DIV_ID.format(value=div_id), key="div_id")
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    spec = dict(spec)
    spec.pop("$schema", None)  # never fetched, but keep the page free of URLs
    image: Any = None
    parts = [f'<div id="{div_id}" class="qualitylab-chart"></div>']
    if fallback is not None:
        if fallback == "svg":
            image = _svg(spec, div_id)
            uri = _SVG_URI + (
                image if _deferred() else base64.b64encode(image.encode()).decode("ascii")
            )
        else:
            image = to_png(spec)
            uri = "data:image/png;base64," + base64.b64encode(image).decode("ascii")
        alt_text = html.escape(_alt_text(spec), quote=True)
        parts.append(
            f'<div id="{div_id}-fallback" class="qualitylab-chart-fallback">'
            f'<img src="{uri}" alt="{alt_text}"></div>'
        )
    selector = json.dumps("#" + div_id)
    fallback_id = json.dumps(div_id + "-fallback")
    notice = json.dumps(
        "Chart not shown: the page lacks qualitylab.charts.vega_bundle() (vegaEmbed)."
    )
    parts.append(
        "<script>(function () {\n"
        f"  var spec = {_embed_json(spec)};\n"
        f"  var fallback = document.getElementById({fallback_id});\n"
        '  if (typeof vegaEmbed !== "function") {\n'
        f"    if (!fallback) {{ document.querySelector({selector}).textContent = {notice}; }}\n"
        "    return;\n"
        "  }\n"
        f'  vegaEmbed({selector}, spec, {{"actions": false, "renderer": "svg", "mode": "vega-lite"}})\n'
        "    .then(function () { if (fallback) { fallback.remove(); } })\n"
        "    .catch(function (err) { console.error(err); });\n"
        "})();</script>"
    )
    return "\n".join(parts), image, spec


def chart_html(chart: Any, *, div_id: str | None = None, fallback: str | None = None) -> str:
    """An HTML fragment that draws the chart with the page's ``vegaEmbed``.

    Parameters
    ----------
    chart : altair chart or dict
        The chart or a vega-lite spec.
    div_id : str, optional
        ``id`` of the chart's ``<div>`` (letters, digits, ``-``, ``_``);
        a random ``ql-chart-…`` id by default.
    fallback : {None, "svg", "png"}, default None
        Also embed a static image (as a ``data:`` URI in an ``<img>``) that
        stays visible where ``vegaEmbed`` is absent (JupyterLab without the
        bundle, nbviewer, GitHub) and is removed once the interactive chart is
        drawn.

    Returns
    -------
    str
        ``<div id=…></div>``, the optional fallback, and a ``<script>`` calling
        ``vegaEmbed("#id", spec, {actions: false, renderer: "svg"})``. The
        fragment loads nothing: it relies on the ``vegaEmbed`` global that the
        report builder injects once per page in ``<head>`` from
        :func:`vega_bundle`. The spec is embedded with :func:`json.dumps` and
        every ``<``, ``>`` and ``&`` escaped as ``\\u003c``, ``\\u003e``,
        ``\\u0026`` (so ``</`` can never appear), which keeps data strings
        such as ``</script><script>alert(1)</script>`` inside their JSON
        string. The ``$schema`` URL is dropped.

    Examples
    --------
    >>> import altair as alt
    >>> import pandas as pd
    >>> chart = alt.Chart(pd.DataFrame({"v": ["</script><b>"]})).mark_text().encode(text="v")
    >>> fragment = chart_html(chart, div_id="c1")
    >>> fragment.startswith('<div id="c1"'), "</script><b>" in fragment, "vegaEmbed(\\"#c1\\"" in fragment
    (True, False, True)
    """
    return _fragment(_spec(chart), div_id, fallback)[0]


def _renderer(
    spec: dict[str, Any], fallback: str | None = "svg", inline_fallback: bool = True
) -> dict[str, Any]:
    """The ``qualitylab`` altair renderer: a mimebundle with HTML and an image."""
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    if inline_fallback and fallback is not None:
        fragment, image, image_spec = _fragment(spec, None, fallback)
    else:
        fragment, image, image_spec = _fragment(spec, None, None)
        image_spec = spec
        if fallback == "svg":
            image = _svg(spec, uuid.uuid4().hex[:12])
        elif fallback == "png":
            image = to_png(spec)
    bundle: dict[str, Any] = {"text/html": fragment}
    if fallback == "svg":
        bundle["image/svg+xml"] = image
        if _deferred():
            bundle[PENDING_MIME] = {"key": image, "spec": image_spec}
    elif fallback == "png":
        bundle["image/png"] = base64.b64encode(image).decode("ascii")
    return bundle


alt.renderers.register(RENDERER_NAME, _renderer)


#: Ids vega's SVG renderer numbers with a counter per JavaScript engine, and the
#: first number of each: a kernel's charts count from these, a worker's go on.
_COUNTED_IDS = {"gradient_": 0, "clip": 1}
_COUNTED_ID = re.compile(r'(id="|url\(#)(gradient_|clip)(\d+)(?=[")])')


def _renumber(svg: str, seen: dict[str, int]) -> str:
    """Number the SVG's gradient and clip ids as the notebook's own kernel would.

    vega numbers them per process: the charts a kernel renders get
    ``gradient_0``, ``gradient_1``, … in order, while a worker rendering many
    notebooks goes on counting. ``seen`` holds, per prefix, how many ids the
    notebook's earlier charts used (updated here).
    """
    mapping: dict[tuple[str, str], str] = {}

    def new_id(m: re.Match[str]) -> str:
        prefix, number = m.group(2), m.group(3)
        if (prefix, number) not in mapping:
            used = seen.get(prefix, 0)
            mapping[(prefix, number)] = str(_COUNTED_IDS[prefix] + used)
            seen[prefix] = used + 1
        return m.group(1) + prefix + mapping[(prefix, number)]

    return _COUNTED_ID.sub(new_id, svg)


def fill_deferred_images(nb: Any) -> int:
    """Render the charts whose SVG a kernel deferred (:data:`DEFER_ENV`), in place.

    Each output carrying :data:`PENDING_MIME` gets its ``image/svg+xml`` and the
    ``<img>`` of its HTML fragment from :func:`to_svg` of the spec it carries,
    exactly what the kernel would have rendered (vega's gradient and clip ids
    numbered from the notebook's first chart, as in its own kernel), and loses
    the pending entry. A chart vl-convert cannot render keeps its interactive
    HTML and loses the image.

    Parameters
    ----------
    nb : nbformat.NotebookNode
        An executed notebook (as read by ``nbformat.read``).

    Returns
    -------
    int
        How many charts were rendered.

    Examples
    --------
    >>> import nbformat, os
    >>> os.environ[DEFER_ENV] = "1"
    >>> bundle = _renderer({"mark": "point", "data": {"values": [{"a": 1}]}})
    >>> del os.environ[DEFER_ENV]
    >>> bundle["image/svg+xml"].startswith(_PENDING)
    True
    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    ...     outputs=[nbformat.v4.new_output("display_data", data=bundle)])])
    >>> fill_deferred_images(nb)
    1
    >>> data = nb.cells[0].outputs[0].data
    >>> data["image/svg+xml"].startswith("<svg"), PENDING_MIME in data, _PENDING in data["text/html"]
    (True, False, False)
    """
    done = 0
    seen: dict[str, int] = {}
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            data = out.get("data")
            if not data or PENDING_MIME not in data:
                continue
            pending = data.pop(PENDING_MIME)
            key = str(pending.get("key", ""))
            try:
                svg: str | None = _renumber(to_svg(pending["spec"]), seen)
            except Exception:  # vl-convert refused it: keep the interactive chart only
                svg = None
            html_text = data.get("text/html")
            if isinstance(html_text, list):
                html_text = "".join(html_text)
            if svg is None:
                data.pop("image/svg+xml", None)
                if isinstance(html_text, str):
                    data["text/html"] = html_text.replace(_SVG_URI + key, "")
                continue
            data["image/svg+xml"] = svg
            if isinstance(html_text, str):
                uri = _SVG_URI + base64.b64encode(svg.encode()).decode("ascii")
                data["text/html"] = html_text.replace(_SVG_URI + key, uri)
            done += 1
    return done


def enable_offline_renderer(
    *, fallback: str | None = "svg", inline_fallback: bool = True, inject_bundle: bool = False
) -> Any:
    """Make notebooks display charts through the offline ``qualitylab`` renderer.

    Each displayed chart becomes a mimebundle: ``text/html`` from
    :func:`chart_html` (interactive, with tooltips, wherever the page has the
    :func:`vega_bundle`, e.g. the HTML report, whose builder injects it once in
    ``<head>``) and an ``image/svg+xml`` (or ``image/png``) rendering for
    frontends that do not run HTML.

    Parameters
    ----------
    fallback : {"svg", "png", None}, default "svg"
        The static rendering to include.
    inline_fallback : bool, default True
        Also put the static image inside the HTML fragment, so that JupyterLab
        (which prefers ``text/html``) shows the chart even without the bundle;
        turn off to halve the output size when every viewer has the bundle.
    inject_bundle : bool, default False
        In a running IPython kernel, also display the bundle once now, making
        charts interactive in JupyterLab (adds ~0.9 MB to the notebook; the
        bundle is a no-op where the report already loaded it).

    Returns
    -------
    altair.utils.plugin_registry.PluginEnabler
        Usable as a context manager to restore the previous renderer.
    """
    if fallback not in _FALLBACKS:
        raise ParameterError(MSG_CHOICE.format(name="fallback", allowed=_FALLBACKS, value=fallback))
    enabler = alt.renderers.enable(
        RENDERER_NAME, fallback=fallback, inline_fallback=bool(inline_fallback)
    )
    if inject_bundle:
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:  # pragma: no cover - IPython ships with the notebook stack
            return enabler
        if get_ipython() is not None:
            display(HTML("<script>" + vega_bundle() + "</script>"))
    return enabler
