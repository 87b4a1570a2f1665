"""qualitylab: a notebook workbench for Trust & Safety quality operations."""

from __future__ import annotations

from qualitylab.errors import (
    DataContractError,
    NotebookRunError,
    ParameterError,
    QualityLabError,
)

__version__ = "0.1.0"

__all__ = [
    "DataContractError",
    "NotebookRunError",
    "ParameterError",
    "QualityLabError",
    "__version__",
]
