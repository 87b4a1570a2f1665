"""One exception hierarchy for qualitylab.

Every error the library raises on purpose derives from :class:`QualityLabError`,
so callers (the CLI, the scheduled runner) can catch one type and print its
message without a traceback from deep inside a dependency.
"""

from __future__ import annotations

__all__ = [
    "QualityLabError",
    "DataContractError",
    "ParameterError",
    "NotebookRunError",
]


class QualityLabError(Exception):
    """Base class of every error qualitylab raises on purpose."""


class DataContractError(QualityLabError):
    """Input data breaks the data contract.

    Parameters
    ----------
    message : str
        Human-readable description naming table, column, count and example.
    table, column, check : str, optional
        Structured fields for programs that want to react to the error.
    bad_rows : int, optional
        Number of offending rows, when known.
    example : object, optional
        One offending value.
    """

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        column: str | None = None,
        check: str | None = None,
        bad_rows: int | None = None,
        example: object = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.column = column
        self.check = check
        self.bad_rows = bad_rows
        self.example = example


class ParameterError(QualityLabError):
    """A parameters file or value is invalid; the message names file and key."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.key = key


class NotebookRunError(QualityLabError):
    """A notebook failed while executing under the runner."""

    def __init__(
        self,
        message: str,
        *,
        notebook: str | None = None,
        market: str | None = None,
        cell_index: int | None = None,
        ename: str | None = None,
        evalue: str | None = None,
    ) -> None:
        super().__init__(message)
        self.notebook = notebook
        self.market = market
        self.cell_index = cell_index
        self.ename = ename
        self.evalue = evalue

    def __str__(self) -> str:
        base = super().__str__()
        parts = [base]
        if self.notebook:
            parts.append(f"notebook={self.notebook}")
        if self.market:
            parts.append(f"market={self.market}")
        if self.cell_index is not None:
            parts.append(f"cell={self.cell_index}")
        if self.ename:
            parts.append(f"{self.ename}: {self.evalue}")
        return " | ".join(parts)
