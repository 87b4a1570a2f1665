"""Trend and anomaly detection on daily market-local series.

Two layers:

* **Detectors** — pure functions on one pandas Series (a value per day), each
  returning a per-day table ``date, observed, expected, lower, upper,
  statistic, p_value, flag`` (plus a few detector-specific columns):

  - :func:`p_chart` — binomial p-chart for rates whose daily ``n`` varies
    (accuracy, error rates, ``sla_compliance``, ``ai_recall``…), with Laney's
    p′ adjustment when the series is overdispersed;
  - :func:`cusum_chart` and :func:`ewma_chart` — slow drift on a standardised
    series (tabular CUSUM with reference ``k`` and decision interval ``h``;
    EWMA with time-varying limits);
  - :func:`stl_mad` — counts and times with weekly seasonality (volume,
    response percentiles): STL decomposition with robust MAD residual scores;
  - :func:`changepoints` — level shifts, by exact penalised segmentation
    (optimal partitioning, the search PELT prunes) with a BIC-like penalty.

  ``baseline`` (leading points used as the reference) and ``mask`` (points
  left out of the reference, e.g. known outages and holidays) mean the same in
  every detector.

* **Scan** — :func:`scan` aggregates a market once per dimension in the engine
  (``by=[dimension, "date"]``), runs the right detectors on every metric of
  every segment, tests the windows they propose, controls the false discovery
  rate across the whole run, groups alerts that share a cause and returns the
  ``alerts.csv`` table (:data:`ALERT_COLUMNS`); :func:`write_alerts` writes it.

The package has one module per job:

=================  ==========================================================
``detectors``      the pure detectors above, and the checks of their inputs
``pvalues``        fast normal and t tails, the window search's p-value
                   (:func:`scan_p_value`), the test of a rate window
``power``          :func:`minimum_detectable_change`, :func:`required_n`
``series``         daily series of every segment, loaded from the engine
``windows``        the window search: windows the detectors propose, tested
``young``          young baselines: days with little history, one by one
``stops``          segments that stop, and the event that explains them
``grouping``       windows to alerts: events, FDR, severity, shared causes
``events``         :func:`nearby_events`: events near an alert
``scanner``        :func:`scan`, which drives them all for one market
``output``         :func:`write_alerts`, :func:`skipped_series`,
                   :func:`rebaselined_series`
``vocabulary``     metric families, dimensions, columns, settings, messages
=================  ==========================================================

References: Laney (2002) "Improved control charts for attributes", Quality
Engineering 14(4); Lucas & Saccucci (1990) EWMA ARL tables; Page (1954) and
Montgomery, *Introduction to Statistical Quality Control*, ch. 9 (tabular
CUSUM); Cleveland et al. (1990) STL; Iglewicz & Hoaglin (1993) modified
z-scores; Killick, Fearnhead & Eckley (2012) PELT; Benjamini & Hochberg (1995).
Tests in ``tests/test_detect.py`` check run lengths by simulation against those
tables and the segmentation against :mod:`ruptures`.
"""

from __future__ import annotations

from qualitylab.detection.detect.detectors import (
    changepoints,
    cusum_chart,
    ewma_chart,
    p_chart,
    stl_mad,
)
from qualitylab.detection.detect.events import nearby_events
from qualitylab.detection.detect.output import rebaselined_series, skipped_series, write_alerts
from qualitylab.detection.detect.power import minimum_detectable_change, required_n
from qualitylab.detection.detect.pvalues import scan_p_value
from qualitylab.detection.detect.scanner import scan
from qualitylab.detection.detect.stops import STOP_EVENT_KINDS
from qualitylab.detection.detect.vocabulary import (
    ALERT_COLUMNS,
    DETECTOR_COLUMNS,
    EXTRA_COLUMNS,
    MIN_EFFECT,
    MSG_BASELINE,
    MSG_CHOICE,
    MSG_FEW_POINTS,
    MSG_LENGTHS,
    MSG_NOT_1D,
    MSG_PERIOD,
    MSG_RANGE,
    MSG_REBASELINE_DATE,
    MSG_REBASELINE_KEY,
    MSG_UNKNOWN_DIMENSION,
    MSG_UNKNOWN_METRIC,
    RATES,
    REBASELINED_COLUMNS,
    SCAN_DIMENSIONS,
    SCAN_METRICS,
    SENSITIVITY_FDR,
    SKIPPED_COLUMNS,
)

__all__ = [
    "ALERT_COLUMNS",
    "DETECTOR_COLUMNS",
    "EXTRA_COLUMNS",
    "MIN_EFFECT",
    "MSG_BASELINE",
    "MSG_CHOICE",
    "MSG_FEW_POINTS",
    "MSG_LENGTHS",
    "MSG_NOT_1D",
    "MSG_PERIOD",
    "MSG_RANGE",
    "MSG_REBASELINE_DATE",
    "MSG_REBASELINE_KEY",
    "MSG_UNKNOWN_DIMENSION",
    "MSG_UNKNOWN_METRIC",
    "RATES",
    "REBASELINED_COLUMNS",
    "SCAN_DIMENSIONS",
    "SCAN_METRICS",
    "SENSITIVITY_FDR",
    "SKIPPED_COLUMNS",
    "STOP_EVENT_KINDS",
    "changepoints",
    "cusum_chart",
    "ewma_chart",
    "minimum_detectable_change",
    "nearby_events",
    "p_chart",
    "rebaselined_series",
    "required_n",
    "scan",
    "scan_p_value",
    "skipped_series",
    "stl_mad",
    "write_alerts",
]
