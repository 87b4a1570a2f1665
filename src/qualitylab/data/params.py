"""Parameters: shared defaults plus per-market overrides, validated and typed.

``parameters/defaults.yaml`` holds targets and thresholds shared by all
markets; ``parameters/markets/<CODE>.yaml`` overrides them per market. Both are
loaded into frozen pydantic models. Unknown keys, wrong types, bad time zones
and market codes outside ``^[A-Z]{2}$`` raise :class:`ParameterError` naming
the file and the key.

The parameters folder is found, in order, from an explicit ``root`` argument,
the ``QUALITYLAB_PARAMETERS`` environment variable, or the first
``parameters/defaults.yaml`` found walking up from the working directory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from qualitylab.errors import ParameterError

__all__ = [
    "MARKET_CODE_PATTERN",
    "Defaults",
    "MarketParams",
    "Parameters",
    "find_parameters_dir",
    "load_parameters",
]

MARKET_CODE_PATTERN = re.compile(r"^[A-Z]{2}$")
ENV_VAR = "QUALITYLAB_PARAMETERS"

Sensitivity = Literal["low", "medium", "high"]


class Frozen(BaseModel):
    """Base of the parameter models: unknown keys refused, instances immutable.

    Internal plumbing shared with the launch plan (``readiness``), not part of
    the user-facing API.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


def _check_seconds(what: str, v: dict[str, float]) -> dict[str, float]:
    for k, s in v.items():
        if not s > 0:  # also refuses NaN
            raise ValueError(f"{what} for {k!r} must be > 0 seconds, got {s!r}")
    return v


def _check_drops(v: dict[str, float]) -> dict[str, float]:
    for k, d in v.items():
        if not 0.0 < d < 1.0:  # also refuses NaN
            raise ValueError(f"detectable_drop for {k!r} must be in (0, 1), got {d!r}")
    return v


def _check_unit_interval(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


class Defaults(Frozen):
    """Targets and thresholds shared by every market (``defaults.yaml``)."""

    confidence_level: float = 0.95
    min_n: int = Field(30, ge=1)
    sla_seconds: dict[str, float] = Field(default_factory=dict)
    aht_seconds: dict[str, float] = Field(default_factory=dict)
    targets: dict[str, float] = Field(default_factory=dict)
    ai_threshold: float = 0.5
    alert_sensitivity: Sensitivity = "medium"
    escalation_sla_seconds: dict[str, float] = Field(default_factory=dict)
    detectable_drop: dict[str, float] = Field(default_factory=dict)

    @field_validator("confidence_level")
    @classmethod
    def _cl(cls, v: float) -> float:
        if not 0.5 <= v < 1.0:
            raise ValueError(f"confidence_level must be in [0.5, 1), got {v!r}")
        return v

    @field_validator("ai_threshold")
    @classmethod
    def _thr(cls, v: float) -> float:
        return _check_unit_interval("ai_threshold", v)

    @field_validator("sla_seconds", "escalation_sla_seconds")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_seconds("SLA", v)

    @field_validator("aht_seconds")
    @classmethod
    def _aht(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_seconds("handle time", v)

    @field_validator("detectable_drop")
    @classmethod
    def _drops(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_drops(v)


class _MarketFile(Frozen):
    """Keys allowed in ``markets/<CODE>.yaml``."""

    name: str
    timezone: str
    languages: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    accuracy_target: float | None = None
    alert_sensitivity: Sensitivity | None = None
    sla_seconds: dict[str, float] = Field(default_factory=dict)
    aht_seconds: dict[str, float] = Field(default_factory=dict)
    targets: dict[str, float] = Field(default_factory=dict)
    min_n: int | None = Field(None, ge=1)
    ai_threshold: float | None = None
    confidence_level: float | None = None
    detectable_drop: dict[str, float] = Field(default_factory=dict)

    @field_validator("detectable_drop")
    @classmethod
    def _drops(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_drops(v)

    @field_validator("sla_seconds")
    @classmethod
    def _sla(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_seconds("SLA", v)

    @field_validator("aht_seconds")
    @classmethod
    def _aht(cls, v: dict[str, float]) -> dict[str, float]:
        return _check_seconds("handle time", v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {v!r}") from exc
        return v

    @field_validator("languages")
    @classmethod
    def _langs(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for lang in v:
            if not re.fullmatch(r"[a-z]{2}", lang):
                raise ValueError(f"language must be ISO 639-1 lower case, got {lang!r}")
        return v


class MarketParams(Frozen):
    """Resolved parameters of one market: defaults with the market's overrides."""

    code: str
    name: str
    timezone: str
    languages: tuple[str, ...]
    vendors: tuple[str, ...]
    confidence_level: float
    min_n: int
    sla_seconds: dict[str, float]
    aht_seconds: dict[str, float]
    targets: dict[str, float]
    ai_threshold: float
    alert_sensitivity: Sensitivity
    escalation_sla_seconds: dict[str, float]
    detectable_drop: dict[str, float] = Field(default_factory=dict)

    @property
    def accuracy_target(self) -> float | None:
        """The market's accuracy target."""
        return self.targets.get("accuracy")

    @property
    def tz(self) -> ZoneInfo:
        """The market's time zone object."""
        return ZoneInfo(self.timezone)


class Parameters(Frozen):
    """All parameters: shared defaults and every market's resolved parameters."""

    root: str
    defaults: Defaults
    markets: dict[str, MarketParams]

    def market(self, code: str) -> MarketParams:
        """Return one market's parameters.

        Raises
        ------
        ParameterError
            If the market has no parameters file.
        """
        try:
            return self.markets[code]
        except KeyError:
            known = ", ".join(sorted(self.markets)) or "none"
            raise ParameterError(
                f"market {code!r} has no parameters file "
                f"{Path(self.root) / 'markets' / f'{code}.yaml'} (known markets: {known})",
                file=str(Path(self.root) / "markets" / f"{code}.yaml"),
                key="market",
            ) from None

    @property
    def codes(self) -> tuple[str, ...]:
        """Market codes with a parameters file, sorted."""
        return tuple(sorted(self.markets))


def find_parameters_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Locate the parameters folder.

    Parameters
    ----------
    root : path, optional
        Explicit folder holding ``defaults.yaml``.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    ParameterError
        When no folder can be found.
    """
    if root is not None:
        path = Path(root)
        if not (path / "defaults.yaml").is_file():
            raise ParameterError(
                f"{path}: no defaults.yaml in the parameters folder",
                file=str(path / "defaults.yaml"),
            )
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        return find_parameters_dir(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "parameters"
        if (candidate / "defaults.yaml").is_file():
            return candidate
    raise ParameterError(
        f"no parameters/defaults.yaml found from {here} upwards; pass the folder "
        f"explicitly or set {ENV_VAR}",
        file="parameters/defaults.yaml",
    )


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is ``{}``).

    Raises :class:`ParameterError` naming the file for text that is not UTF-8,
    not valid YAML, or not a mapping at the top level. Shared with the launch
    plan and the schedule readers; not part of the user-facing API.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ParameterError(f"{path}: not UTF-8 text ({exc.reason})", file=str(path)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterError(f"{path}: not valid YAML: {exc}", file=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ParameterError(
            f"{path}: top level must be a mapping of keys, got {type(data).__name__}",
            file=str(path),
        )
    return dict(data)


def format_validation(path: Path, exc: ValidationError) -> ParameterError:
    """One :class:`ParameterError` naming the file and each bad key of ``exc``.

    Shared with the launch plan and the schedule readers; not part of the
    user-facing API.
    """
    lines = []
    first_key = None
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        first_key = first_key or key
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        shown = err.get("input")
        value = "" if err["type"] in ("missing",) else f" (got {shown!r})"
        if err["type"] == "extra_forbidden":
            value = ""
        lines.append(f"{path}: key '{key}': {msg}{value}")
    return ParameterError("\n".join(lines), file=str(path), key=first_key)


def _merge(base: Mapping[str, float], over: Mapping[str, float]) -> dict[str, float]:
    out = dict(base)
    out.update(over)
    return out


def load_parameters(root: str | os.PathLike[str] | None = None) -> Parameters:
    """Load and validate every parameters file.

    Parameters
    ----------
    root : path, optional
        The parameters folder; found automatically when omitted.

    Returns
    -------
    Parameters
        Frozen, validated parameters.

    Raises
    ------
    ParameterError
        Naming the file and key of the first problem found in each file.

    Examples
    --------
    >>> params = load_parameters()
    >>> params.market("SG").timezone
    'Asia/Singapore'
    >>> params.market("SG").targets["accuracy"]
    0.95
    """
    folder = find_parameters_dir(root)
    defaults_path = folder / "defaults.yaml"
    try:
        defaults = Defaults(**read_yaml(defaults_path))
    except ValidationError as exc:
        raise format_validation(defaults_path, exc) from None

    markets: dict[str, MarketParams] = {}
    market_dir = folder / "markets"
    for path in sorted(market_dir.glob("*.y*ml")) if market_dir.is_dir() else []:
        code = path.stem
        if not MARKET_CODE_PATTERN.fullmatch(code):
            raise ParameterError(
                f"{path}: market code {code!r} in the file name must match ^[A-Z]{{2}}$ "
                "(ISO 3166-1 alpha-2, upper case)",
                file=str(path),
                key="market",
            )
        raw = read_yaml(path)
        try:
            mf = _MarketFile(**raw)
        except ValidationError as exc:
            raise format_validation(path, exc) from None
        targets = _merge(defaults.targets, mf.targets)
        if mf.accuracy_target is not None:
            targets["accuracy"] = mf.accuracy_target
        try:
            markets[code] = MarketParams(
                code=code,
                name=mf.name,
                timezone=mf.timezone,
                languages=mf.languages,
                vendors=mf.vendors,
                confidence_level=mf.confidence_level or defaults.confidence_level,
                min_n=mf.min_n or defaults.min_n,
                sla_seconds=_merge(defaults.sla_seconds, mf.sla_seconds),
                aht_seconds=_merge(defaults.aht_seconds, mf.aht_seconds),
                targets=targets,
                ai_threshold=mf.ai_threshold
                if mf.ai_threshold is not None
                else defaults.ai_threshold,
                alert_sensitivity=mf.alert_sensitivity or defaults.alert_sensitivity,
                escalation_sla_seconds=defaults.escalation_sla_seconds,
                detectable_drop=_merge(defaults.detectable_drop, mf.detectable_drop),
            )
        except ValidationError as exc:
            raise format_validation(path, exc) from None
        for metric, value in targets.items():
            if not 0.0 <= value <= 1.0 and metric.endswith(("rate", "accuracy", "compliance")):
                raise ParameterError(
                    f"{path}: key 'targets.{metric}': a rate target must be in [0, 1] (got {value!r})",
                    file=str(path),
                    key=f"targets.{metric}",
                )
    return Parameters(root=str(folder), defaults=defaults, markets=markets)
