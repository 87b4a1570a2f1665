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
