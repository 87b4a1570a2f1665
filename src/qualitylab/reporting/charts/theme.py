"""The house theme and palettes: colour-blind-safe colours, status cues, fonts.

The ``qualitylab`` altair theme is registered (not enabled) on import;
:func:`use_theme` enables it. :data:`OKABE_ITO` is the categorical palette,
:data:`STATUS_COLORS` and :data:`STATUS_SHAPES` the red/amber/green cues, and
the upper-case ink colours and default sizes below are what every chart draws with.
"""

from __future__ import annotations

from typing import Any

import altair as alt

# --------------------------------------------------------------------------- #
# palettes and theme
# --------------------------------------------------------------------------- #
THEME_NAME = "qualitylab"
RENDERER_NAME = "qualitylab"

#: Okabe & Ito (2008) colour-blind-safe categorical palette, yellow moved late
#: because it is hard to see on white.
OKABE_ITO = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#D55E00",  # vermillion
    "#000000",  # black
    "#F0E442",  # yellow
)
#: Status colours from Okabe-Ito: distinguishable under deuteranopia and
#: protanopia by lightness as well as hue; always paired with a second cue.
STATUS_COLORS = {"green": "#009E73", "amber": "#E69F00", "red": "#D55E00", "na": "#BBBBBB"}
#: The redundant cue for status wherever a point is drawn.
STATUS_SHAPES = {"green": "circle", "amber": "triangle-up", "red": "cross", "na": "square"}
STATUS_ORDER = ("green", "amber", "red", "na")
#: Vega scheme for one-directional quantities (volumes, rates).
SEQUENTIAL_SCHEME = "viridis"
#: Vega scheme for signed changes (deltas), centred with ``domainMid=0``.
DIVERGING_SCHEME = "blueorange"

#: Metrics that are proportions in [0, 1] and are shown as percentages.
RATE_METRICS = frozenset(
    {
        "sla_compliance",
        "utilization",
        "accuracy",
        "over_enforcement_rate",
        "under_enforcement_rate",
        "wrong_policy_rate",
        "qa_alignment",
        "ai_precision",
        "ai_recall",
        "ai_fpr",
        "ai_fnr",
        "ai_f1",
        "override_rate",
        "auto_action_rate",
        "calibration_score",
        "red_team_recall",
        "override_accuracy",
        "ai_alone_accuracy",
        "precision",
        "recall",
        "fpr",
        "fnr",
        "f1",
    }
)

_FONT = "'Source Sans 3', 'Segoe UI', 'Helvetica Neue', Arial, 'Liberation Sans', sans-serif"
INK = "#333333"
MUTED = "#777777"
_GRID = "#E8E8E8"
BLUE, VERMILLION, PURPLE = OKABE_ITO[0], OKABE_ITO[5], OKABE_ITO[3]
WIDTH, HEIGHT = 560, 260


def theme_config() -> dict[str, Any]:
    """The house theme as a vega-lite top-level ``config`` dict.

    Returns
    -------
    dict
        ``{"config": {...}}``: readable fonts, a light grid, a 560 x 260 px
        default view, the Okabe-Ito categorical range and the viridis /
        blueorange schemes for heatmaps and diverging colour scales.

    Examples
    --------
    >>> cfg = theme_config()["config"]
    >>> cfg["range"]["category"][:2], cfg["view"]["continuousWidth"]
    (['#0072B2', '#E69F00'], 560)
    """
    axis = {
        "labelFontSize": 12,
        "titleFontSize": 12,
        "titleFontWeight": "normal",
        "labelColor": INK,
        "titleColor": INK,
        "domainColor": "#888888",
        "tickColor": "#888888",
        "gridColor": _GRID,
        "gridOpacity": 1,
    }
    return {
        "config": {
            "font": _FONT,
            "background": "white",
            "padding": 8,
            "view": {"continuousWidth": WIDTH, "continuousHeight": HEIGHT, "stroke": None},
            "axis": axis,
            "axisBand": {"grid": False},
            "legend": {
                "labelFontSize": 12,
                "titleFontSize": 12,
                "titleFontWeight": "normal",
                "labelColor": INK,
                "titleColor": INK,
                "orient": "right",
            },
            "header": {"labelFontSize": 12, "titleFontSize": 13, "labelColor": INK},
            "title": {
                "fontSize": 15,
                "fontWeight": 600,
                "anchor": "start",
                "color": INK,
                "subtitleFontSize": 12,
                "subtitleColor": MUTED,
            },
            "text": {"fontSize": 11, "color": INK},
            "line": {"strokeWidth": 2},
            "point": {"size": 36, "filled": True},
            "range": {
                "category": list(OKABE_ITO),
                "heatmap": {"scheme": SEQUENTIAL_SCHEME},
                "ramp": {"scheme": SEQUENTIAL_SCHEME},
                "diverging": {"scheme": DIVERGING_SCHEME},
                "ordinal": {"scheme": SEQUENTIAL_SCHEME},
            },
        }
    }


@alt.theme.register(THEME_NAME, enable=False)
def _qualitylab_theme() -> alt.theme.ThemeConfig:
    return theme_config()  # type: ignore[return-value]


def use_theme() -> Any:
    """Enable the registered ``qualitylab`` altair theme.

    Returns
    -------
    altair.utils.plugin_registry.PluginEnabler
        Also usable as a context manager (``with use_theme(): ...``) to restore
        the previous theme afterwards.

    Examples
    --------
    >>> import altair as alt
    >>> with use_theme():
    ...     alt.theme.active
    'qualitylab'
    """
    return alt.theme.enable(THEME_NAME)
