"""Altair charts for qualitylab's tidy frames, and offline rendering.

Every chart function takes a tidy frame the library produced (or one built by
hand with the same columns) and returns an altair chart: plain data, testable
with ``chart.to_dict()``, composed from layers with ``+``. Intervals are drawn
from the ``ci_low``/``ci_high`` columns the statistics computed; nothing here
asks the browser to compute an interval (no ``extent="ci"``).

* Theme and palettes: the registered house theme ``qualitylab`` (enable it with
  :func:`use_theme`), :data:`OKABE_ITO` for categories, :data:`STATUS_COLORS`
  and :data:`STATUS_SHAPES` for red/amber/green, :data:`SEQUENTIAL_SCHEME` and
  :data:`DIVERGING_SCHEME` for heatmaps. Status is never shown by colour alone:
  a shape or a text label repeats it.
* Charts: :func:`control_chart`, :func:`trend_small_multiples`,
  :func:`funnel_plot`, :func:`waterfall`, :func:`scorecard_heatmap`,
  :func:`kpi_intervals`, :func:`pr_curve`, :func:`roc_curve`,
  :func:`calibration_curve`, :func:`threshold_sweep_chart`.
* Offline rendering: :func:`to_svg`, :func:`to_png` (vl-convert, no network),
  :func:`vega_bundle` (vega, vega-lite and vega-embed as one inline script),
  :func:`chart_html` (a ``<div>`` + ``<script>`` fragment) and the ``qualitylab``
  altair renderer (:func:`enable_offline_renderer`).

How a report shows interactive charts without a network: the report builder
puts ``<script>`` + :func:`vega_bundle` + ``</script>`` **once** in the page's
``<head>``; that defines the global ``vegaEmbed``. Each chart is then a
:func:`chart_html` fragment (which is what the ``qualitylab`` renderer writes as
the ``text/html`` output of a notebook cell) calling ``vegaEmbed`` on its own
``<div>``. Without the bundle, a fragment shows its static fallback image (the
renderer's default) or a short notice.

Text that came from data (vendor names, event descriptions) is hostile until
proven otherwise: vega draws it as text, vega-embed's tooltips escape it, and
:func:`chart_html` escapes every ``<``, ``>`` and ``&`` in the embedded JSON so
a string such as ``</script><script>alert(1)</script>`` cannot leave the
``<script>`` element.

The package's modules, one job each: :mod:`~qualitylab.reporting.charts.theme`
(palettes and the theme), :mod:`~qualitylab.reporting.charts.base` (validation
and formatting shared by every chart), :mod:`~qualitylab.reporting.charts.trends`,
:mod:`~qualitylab.reporting.charts.compare`, :mod:`~qualitylab.reporting.charts.models`
and :mod:`~qualitylab.reporting.charts.operations` (the chart families) and
:mod:`~qualitylab.reporting.charts.offline` (rendering without a network). Every
public name is importable from ``qualitylab.charts`` as before.
"""

from __future__ import annotations

from qualitylab.reporting.quietimport import import_jsonschema_quietly

import_jsonschema_quietly()  # before altair (every chart module imports it): saves ~2.5 s

# every public name of the old module; those not in __all__ are re-exported "as" themselves
from qualitylab.reporting.charts.base import MSG_BAD_ROWS as MSG_BAD_ROWS  # noqa: E402
from qualitylab.reporting.charts.base import MSG_CHOICE as MSG_CHOICE  # noqa: E402
from qualitylab.reporting.charts.base import MSG_DIV_ID as MSG_DIV_ID  # noqa: E402
from qualitylab.reporting.charts.base import MSG_DROPPED as MSG_DROPPED  # noqa: E402
from qualitylab.reporting.charts.base import MSG_DUPLICATE as MSG_DUPLICATE  # noqa: E402
from qualitylab.reporting.charts.base import MSG_MISSING_COLUMN as MSG_MISSING_COLUMN  # noqa: E402
from qualitylab.reporting.charts.base import MSG_NOT_CHART as MSG_NOT_CHART  # noqa: E402
from qualitylab.reporting.charts.base import MSG_NOT_FRAME as MSG_NOT_FRAME  # noqa: E402
from qualitylab.reporting.charts.base import MSG_NOT_JSON as MSG_NOT_JSON  # noqa: E402
from qualitylab.reporting.charts.base import MSG_NUMBER as MSG_NUMBER  # noqa: E402
from qualitylab.reporting.charts.base import MSG_ONE_METRIC as MSG_ONE_METRIC  # noqa: E402
from qualitylab.reporting.charts.base import MSG_TIMEZONE as MSG_TIMEZONE  # noqa: E402
from qualitylab.reporting.charts.base import MSG_UNKNOWN_METRIC as MSG_UNKNOWN_METRIC  # noqa: E402
from qualitylab.reporting.charts.compare import (  # noqa: E402
    funnel_plot,
    kpi_intervals,
    scorecard_heatmap,
    waterfall,
)
from qualitylab.reporting.charts.models import MAX_CURVE_POINTS as MAX_CURVE_POINTS  # noqa: E402
from qualitylab.reporting.charts.models import (  # noqa: E402
    calibration_curve,
    pr_curve,
    roc_curve,
    threshold_sweep_chart,
)
from qualitylab.reporting.charts.offline import (  # noqa: E402
    chart_html,
    enable_offline_renderer,
    to_png,
    to_svg,
    vega_bundle,
)
from qualitylab.reporting.charts.operations import (  # noqa: E402
    capacity_heatmap,
    rollout_chart,
    sampling_plan_chart,
    triage_timeline,
)
from qualitylab.reporting.charts.theme import (  # noqa: E402
    DIVERGING_SCHEME,
    OKABE_ITO,
    RATE_METRICS,
    RENDERER_NAME,
    SEQUENTIAL_SCHEME,
    STATUS_COLORS,
    STATUS_SHAPES,
    THEME_NAME,
    theme_config,
    use_theme,
)
from qualitylab.reporting.charts.theme import STATUS_ORDER as STATUS_ORDER  # noqa: E402
from qualitylab.reporting.charts.trends import (  # noqa: E402
    control_chart,
    trend_small_multiples,
)

__all__ = [
    "DIVERGING_SCHEME",
    "OKABE_ITO",
    "RATE_METRICS",
    "RENDERER_NAME",
    "SEQUENTIAL_SCHEME",
    "STATUS_COLORS",
    "STATUS_SHAPES",
    "THEME_NAME",
    "calibration_curve",
    "capacity_heatmap",
    "chart_html",
    "control_chart",
    "enable_offline_renderer",
    "funnel_plot",
    "kpi_intervals",
    "pr_curve",
    "roc_curve",
    "sampling_plan_chart",
    "scorecard_heatmap",
    "theme_config",
    "rollout_chart",
    "threshold_sweep_chart",
    "to_png",
    "to_svg",
    "trend_small_multiples",
    "triage_timeline",
    "use_theme",
    "vega_bundle",
    "waterfall",
]
