"""qualitylab: a notebook workbench for Trust & Safety quality operations."""

from __future__ import annotations

from qualitylab.errors import (
    DataContractError,
    NotebookRunError,
    ParameterError,
    QualityLabError,
)

__version__ = "0.1.0"

from qualitylab import metrics  # noqa: E402
from qualitylab.params import load_parameters  # noqa: E402
from qualitylab.scorecard import scorecard  # noqa: E402
from qualitylab.sources import Dataset, open_dataset  # noqa: E402

_SUBMODULES = (
    "agreement",
    "aieval",
    "calibration",
    "capacity",
    "charts",
    "detect",
    "escalations",
    "findings",
    "forecast",
    "rca",
    "readiness",
    "reconcile",
    "redteam",
    "report",
    "rollout",
    "sampling",
    "stats",
)


def __getattr__(name: str):  # lazy submodules: ``ql.detect``, ``ql.charts``, ...
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"qualitylab.{name}")
    raise AttributeError(f"module 'qualitylab' has no attribute {name!r}")


__all__ = [
    "Dataset",
    "load_parameters",
    "metrics",
    "open_dataset",
    "scorecard",
    "DataContractError",
    "NotebookRunError",
    "ParameterError",
    "QualityLabError",
    "__version__",
]
