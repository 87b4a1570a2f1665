"""Building blocks of the statistics modules: argument checks, messages, intervals.

:mod:`qualitylab.stats` and its sibling modules (:mod:`~qualitylab.measure.design`,
:mod:`~qualitylab.measure.continuous`, :mod:`~qualitylab.measure.multiplicity`,
:mod:`~qualitylab.measure.planning`) validate their arguments here, once, with
the same messages (the AI evaluation modules use its confidence-level check
too); the normal critical value and Wilson's score formula, which several
interval constructions share, live here too, as does the ``to_frame`` of the
test results.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats

from qualitylab.errors import ParameterError

FloatOrArray = float | npt.NDArray[np.float64]

ALTERNATIVES = ("two-sided", "less", "greater")

# Error messages are module constants so tests can assert on them.
MSG_CHOICE = "{name} must be one of {allowed}; got {value!r}"
MSG_CONFIDENCE = "confidence_level must be strictly between 0 and 1; got {value!r}"
MSG_RANGE = "{name} must be in {interval}; got {value!r}"
MSG_COUNT_GT_NOBS = "count must not exceed nobs; got count={count!r} > nobs={nobs!r}"
MSG_SHAPES = "Found input variables with inconsistent shapes: {shapes}"
MSG_EMPTY = "{name} must contain at least one non-missing value; got {size} values"


class ConfidenceInterval(NamedTuple):
    """A two-sided interval, floats for scalar input and arrays otherwise."""

    low: Any
    high: Any


# --------------------------------------------------------------------------- #
# validation helpers (one place, used by every public entry point)
# --------------------------------------------------------------------------- #
def check_choice(value: object, allowed: tuple[str, ...], name: str) -> str:
    """`value` if it is one of `allowed`, else a ParameterError naming `name`."""
    if not isinstance(value, str) or value not in allowed:
        raise ParameterError(MSG_CHOICE.format(name=name, allowed=allowed, value=value), key=name)
    return value


def check_confidence(confidence_level: float) -> float:
    """`confidence_level` as a float strictly between 0 and 1, or a ParameterError."""
    try:
        ok = 0.0 < float(confidence_level) < 1.0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ParameterError(MSG_CONFIDENCE.format(value=confidence_level), key="confidence_level")
    return float(confidence_level)


def first_bad(values: np.ndarray, bad: np.ndarray) -> object:
    """The first of `values` where `bad` is true, as a Python scalar (for messages)."""
    return np.asarray(values)[bad].flat[0].item()


def as_float_array(x: npt.ArrayLike, name: str) -> np.ndarray:
    """`x` as a float ndarray, or a ParameterError naming `name`."""
    try:
        return np.asarray(x, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"{name} must be numeric; got {x!r}", key=name) from exc


def is_scalar(*args: object) -> bool:
    """Whether every argument is a scalar (then results come back as floats)."""
    return all(np.ndim(a) == 0 for a in args)


def scalar_or_array(x: np.ndarray, scalar: bool) -> FloatOrArray:
    """`x` as a float when `scalar`, else as a float ndarray."""
    return float(x) if scalar else np.asarray(x, dtype=float)


# --------------------------------------------------------------------------- #
# interval formulas several constructions share
# --------------------------------------------------------------------------- #
def z_critical(confidence_level: float) -> float:
    """Two-sided normal critical value :math:`z_{1-\\alpha/2}` at `confidence_level`."""
    return float(stats.norm.isf((1.0 - confidence_level) / 2.0))


def wilson_limits(p: np.ndarray, n: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval from a proportion and a (possibly effective) n."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = z * z
        denom = 1.0 + z2 / n
        center = (p + z2 / (2.0 * n)) / denom
        half = z * np.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    low, high = np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)
    # At p = 0 or 1 the bound is exactly 0 or 1; keep rounding from making it 0.9999999999999999.
    return np.where(p <= 0.0, 0.0, low), np.where(p >= 1.0, 1.0, high)


# --------------------------------------------------------------------------- #
# result objects
# --------------------------------------------------------------------------- #
_FRAME_HEAD = ["method", "alternative", "estimate", "statistic", "pvalue", "ci_low", "ci_high"]


class FrameMixin:
    """Shared ``to_frame``: fixed leading columns, then the remaining public fields."""

    confidence_level: float

    def confidence_interval(self, confidence_level: float = 0.95) -> ConfidenceInterval:
        raise NotImplementedError  # pragma: no cover

    def to_frame(self) -> pd.DataFrame:
        """One-row DataFrame: ``method, alternative, estimate, statistic, pvalue,
        ci_low, ci_high, confidence_level`` followed by the result's other fields."""
        low, high = self.confidence_interval(self.confidence_level)
        row: dict[str, Any] = {"ci_low": low, "ci_high": high}
        extra: list[str] = []
        for f in self.__dataclass_fields__.values():  # type: ignore[attr-defined]
            if f.repr:
                row[f.name] = getattr(self, f.name)
                if f.name not in _FRAME_HEAD:
                    extra.append(f.name)
        extra.remove("confidence_level")
        columns = [*_FRAME_HEAD, "confidence_level", *extra]
        return pd.DataFrame([row], columns=columns)
