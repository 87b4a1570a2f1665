"""Trend and anomaly detection on daily market-local series.

(Being split into modules, issue #21; for now everything lives in
:mod:`qualitylab.detection.detect.detectors`, whose names this package shows,
private ones included until the split.)
"""

from qualitylab.detection.detect import detectors as _module

globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
__all__ = _module.__all__
