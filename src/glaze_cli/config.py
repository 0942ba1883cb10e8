"""glaze.toml -> validated, typed config; durations, rates and ${VAR} resolution.

Pydantic checks the file's structure at this edge only; the rest of glaze sees frozen dataclasses.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from glaze_cli.errors import ConfigError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_RATE_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
                 "h": 3600.0, "hour": 3600.0}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_duration(text: str | int | float, *, what: str = "duration") -> float:
    """Seconds in `90s`, `50ms`, `30m`, `2h`, `7d` or a bare number of seconds."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"{text!r} is not a {what}; it must not be negative")
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a {what}; write it like 50ms, 15s, 30m, 2h or 7d")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]


@dataclass(frozen=True, slots=True)
class Rate:
    """At most `count` requests per `period` seconds."""

    count: float
    period: float

    @property
    def per_second(self) -> float:
        """The rate in requests per second."""
        return self.count / self.period

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(self.period, f"{self.period:g}s")
        return f"{self.count:g}/{unit}"


def parse_rate(text: str) -> Rate:
    """A rate written as `N/s`, `N/min` or `N/h`."""
    match = _RATE.match(str(text))
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{text!r} is not a rate; write it as 20/s, 1200/min or 5000/h")
    return Rate(float(match.group(1)), _RATE_PERIODS[match.group(2)])


def resolve_env(value: Any, key: str, source: str) -> Any:
    """Replace ${VAR} in every string of `value` from the environment; a missing variable names the key."""
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(
                    f"config {source}: {key}: environment variable {name} is not set; "
                    f"export {name} before running glaze"
                )
            return os.environ[name]

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: resolve_env(v, f"{key}.{k}", source) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env(v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LimitsModel(_Strict):
    concurrency: Annotated[int, Field(ge=1)] | None = None
    rate: str | None = None
    timeout: str | int | float | None = None
    retries: Annotated[int, Field(ge=0, le=20)] | None = None
    cache_ttl: str | int | float | None = None
    not_found_ttl: str | int | float | None = None


class _SheetModel(_Strict):
    key: str | None = None


class _HttpModel(_LimitsModel):
    type: Literal["http"]
    method: Literal["GET", "POST", "get", "post"] = "GET"
    url: str
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    body: dict[str, Any] | None = None
    outputs: dict[str, str]
    confidence: str | None = None
    cost: Annotated[float, Field(ge=0)] = 0.0
    not_found: list[int] = [404]


class _LookupModel(_LimitsModel):
    type: Literal["lookup"]
    path: str
    match: dict[str, str]
    outputs: dict[str, str]
    cost: Annotated[float, Field(ge=0)] = 0.0


class _OpenAIModel(_LimitsModel):
    type: Literal["openai"]
    base_url: str
    model: str
    api_key: str | None = None
    prompt: str
    system: str | None = None
    outputs: dict[str, Literal["string", "integer", "number", "boolean"]]
    cost: Annotated[float, Field(ge=0)] = 0.0
    cost_per_1k_tokens: Annotated[float, Field(ge=0)] = 0.0


class _SimulatedModel(_LimitsModel):
    type: Literal["simulated"]
    inputs: list[str]
    outputs: list[str]
    latency: str | int | float = "0s"
    jitter: str | int | float = "0s"
    error_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    not_found_rate: Annotated[float, Field(ge=0, le=1)] = 0.0
    cost: Annotated[float, Field(ge=0)] = 0.0

    @model_validator(mode="after")
    def _has_inputs(self) -> _SimulatedModel:
        if not self.inputs:
            raise ValueError("inputs must name at least one sheet column")
        return self


_ProviderModel = Annotated[
    _HttpModel | _LookupModel | _OpenAIModel | _SimulatedModel, Field(discriminator="type")
]


class _FieldModel(_Strict):
    providers: list[str] | None = None
    min_confidence: Annotated[float, Field(ge=0, le=1)] = 0.0


class _ConfigModel(_Strict):
    sheet: _SheetModel = _SheetModel()
    defaults: _LimitsModel = _LimitsModel()
    providers: dict[str, _ProviderModel] = {}
    fields: dict[str, _FieldModel] = {}


PROVIDER_TYPES = ("http", "lookup", "openai", "simulated")


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard glaze may push one provider."""

    concurrency: int = 10
    rate: Rate | None = None
    timeout: float = 15.0
    retries: int = 3
    cache_ttl: float = 7 * 86400.0
    not_found_ttl: float = 86400.0


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """One `[providers.NAME]` table: its type, limits, and type-specific options (unresolved ${VAR})."""

    name: str
    type: str
    limits: Limits
    cost: float
    options: dict[str, Any]

    @property
    def outputs(self) -> tuple[str, ...]:
        """The fields this provider can fill."""
        outputs = self.options.get("outputs") or ()
        return tuple(outputs)


@dataclass(frozen=True, slots=True)
class FieldConfig:
    """One `[fields.NAME]` table."""

    providers: tuple[str, ...] | None = None
    min_confidence: float = 0.0


@dataclass(frozen=True, slots=True)
class Config:
    """A validated glaze.toml (or the empty config when there is none)."""

    source: str = "(no glaze.toml found)"
    base_dir: Path = field(default_factory=Path.cwd)
    sheet_key: str | None = None
    defaults: Limits = Limits()
    providers: dict[str, ProviderConfig] = field(default_factory=dict)
    fields: dict[str, FieldConfig] = field(default_factory=dict)


def find_config(explicit: Path | None, sheet: Path | None) -> Path | None:
    """The config to use: --config, $GLAZE_CONFIG, glaze.toml beside SHEET, ./glaze.toml, or none."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config {explicit}: no such file; check the --config path")
        return explicit
    env = os.environ.get("GLAZE_CONFIG")
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"config {path}: no such file (from $GLAZE_CONFIG); fix or unset it")
        return path
    candidates = [sheet.parent / "glaze.toml"] if sheet is not None else []
    candidates.append(Path("glaze.toml"))
    return next((c for c in candidates if c.is_file()), None)


def load_config(path: Path | None) -> Config:
    """Read and validate a config file; None gives the empty config."""
    if path is None:
        return Config()
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {source}: not valid TOML: {exc}; fix the file and run again") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {source}: cannot be read ({exc})") from None
    try:
        model = _ConfigModel.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, raw, source)) from None
    return _build(model, path, source)


def _build(model: _ConfigModel, path: Path, source: str) -> Config:
    defaults = _limits(model.defaults, Limits(), "defaults", source)
    providers: dict[str, ProviderConfig] = {}
    for name, pmodel in model.providers.items():
        options = pmodel.model_dump(exclude=set(_LimitsModel.model_fields) | {"type", "cost"})
        limits = _limits(pmodel, defaults, f"providers.{name}", source)
        providers[name] = ProviderConfig(name, pmodel.type, limits, pmodel.cost, options)
        if not providers[name].outputs:
            raise ConfigError(f"config {source}: providers.{name}.outputs: name at least one output field")
    fields: dict[str, FieldConfig] = {}
    for fname, fmodel in model.fields.items():
        chain = tuple(fmodel.providers) if fmodel.providers is not None else None
        fields[fname] = FieldConfig(chain, fmodel.min_confidence)
    return Config(source, path.resolve().parent, model.sheet.key, defaults, providers, fields)


def _limits(model: _LimitsModel, inherited: Limits, key: str, source: str) -> Limits:
    def convert(name: str, parse: Any, fallback: Any) -> Any:
        value = getattr(model, name)
        if value is None:
            return fallback
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigError(f"config {source}: {key}.{name}: {exc}") from None

    return Limits(
        concurrency=model.concurrency if model.concurrency is not None else inherited.concurrency,
        rate=convert("rate", parse_rate, inherited.rate),
        timeout=convert("timeout", parse_duration, inherited.timeout),
        retries=model.retries if model.retries is not None else inherited.retries,
        cache_ttl=convert("cache_ttl", parse_duration, inherited.cache_ttl),
        not_found_ttl=convert("not_found_ttl", parse_duration, inherited.not_found_ttl),
    )


def _describe(exc: ValidationError, raw: dict[str, Any], source: str) -> str:
    """The first validation error as one sentence naming the key, with a did-you-mean for typos."""
    errors = exc.errors()
    # A typo shows as both an unknown key and a missing one; the unknown key (with its did-you-mean) explains both.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error["loc"]]
    # Pydantic puts the provider type (the union tag) in the path; users never wrote it.
    if len(loc) >= 3 and loc[0] == "providers" and loc[2] in PROVIDER_TYPES:
        loc.pop(2)
    key = ".".join(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = _lookup(raw, loc[:-1])
        known = _known_keys(loc[:-1], parent)
        hint = difflib.get_close_matches(loc[-1], known, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(sorted(known))}"
        return f"config {source}: {key}: unknown key{suggestion}"
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        return (f"config {source}: {key}.type: must be one of {', '.join(PROVIDER_TYPES)}")
    if kind == "missing":
        return f"config {source}: {key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"config {source}: {key}: {message} (got {error.get('input')!r})"


def _lookup(raw: Any, path: list[str]) -> Any:
    for part in path:
        raw = raw.get(part, {}) if isinstance(raw, dict) else {}
    return raw


def _known_keys(path: list[str], parent: Any) -> list[str]:
    if not path:
        return list(_ConfigModel.model_fields)
    if path[0] == "providers" and len(path) == 2:
        ptype = parent.get("type") if isinstance(parent, dict) else None
        models = {"http": _HttpModel, "lookup": _LookupModel, "openai": _OpenAIModel,
                  "simulated": _SimulatedModel}
        return list(models.get(ptype, _HttpModel).model_fields)
    if path[0] == "fields" and len(path) == 2:
        return list(_FieldModel.model_fields)
    section = {"sheet": _SheetModel, "defaults": _LimitsModel}.get(path[0])
    return list(section.model_fields) if section and len(path) == 1 else []
