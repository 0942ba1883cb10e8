"""glaze.toml -> validated, typed config; durations, rates and ${VAR} resolution.

Pydantic checks the file's structure at this edge only; the rest of glaze sees frozen dataclasses.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

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


def env_variables(value: Any) -> list[str]:
    """The ${VAR} names used anywhere in a string, dict or list, in order of first use."""
    if isinstance(value, str):
        return list(dict.fromkeys(_ENV_REF.findall(value)))
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    return list(dict.fromkeys(name for item in items for name in env_variables(item)))


def _duration_value(value: Any) -> str | int | float:
    # Strict: TOML `true` is not 1 second.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{value!r} is not a duration; write it like 50ms, 15s, 30m, 2h or 7d")
    return value


Duration = Annotated[str | int | float, BeforeValidator(_duration_value)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _LimitsModel(_Strict):
    concurrency: Annotated[int, Field(ge=1, strict=True)] | None = None
    rate: str | None = None
    timeout: Duration | None = None
    retries: Annotated[int, Field(ge=0, le=20, strict=True)] | None = None
    cache_ttl: Duration | None = None
    not_found_ttl: Duration | None = None


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
    cost: Annotated[float, Field(ge=0, strict=True)] = 0.0
    not_found: list[int] = [404]


class _LookupModel(_LimitsModel):
    type: Literal["lookup"]
    path: str
    match: dict[str, str]
    outputs: dict[str, str]
    cost: Annotated[float, Field(ge=0, strict=True)] = 0.0


class _OpenAIModel(_LimitsModel):
    type: Literal["openai"]
    base_url: str
    model: str
    api_key: str | None = None
    prompt: str
    system: str | None = None
    outputs: dict[str, Literal["string", "integer", "number", "boolean"]]
    cost: Annotated[float, Field(ge=0, strict=True)] = 0.0
    cost_per_1k_tokens: Annotated[float, Field(ge=0, strict=True)] = 0.0


class _SimulatedModel(_LimitsModel):
    type: Literal["simulated"]
    inputs: list[str]
    outputs: list[str]
    latency: Duration = "0s"
    jitter: Duration = "0s"
    error_rate: Annotated[float, Field(ge=0, le=1, strict=True)] = 0.0
    not_found_rate: Annotated[float, Field(ge=0, le=1, strict=True)] = 0.0
    cost: Annotated[float, Field(ge=0, strict=True)] = 0.0

    @model_validator(mode="after")
    def _has_inputs(self) -> _SimulatedModel:
        if not self.inputs:
            raise ValueError("inputs must name at least one sheet column")
        return self


class _PluginModel(_LimitsModel):
    """A provider type from a plugin: glaze checks the common keys, the plugin's own model the rest."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    cost: Annotated[float, Field(ge=0, strict=True)] = 0.0


CORE_MODELS: dict[str, type[_LimitsModel]] = {
    "http": _HttpModel, "lookup": _LookupModel, "openai": _OpenAIModel, "simulated": _SimulatedModel,
}
PROVIDER_TYPES = tuple(CORE_MODELS)


class _FieldModel(_Strict):
    providers: list[str] | None = None
    min_confidence: Annotated[float, Field(ge=0, le=1, strict=True)] = 0.0


class _ConfigModel(_Strict):
    sheet: _SheetModel = _SheetModel()
    defaults: _LimitsModel = _LimitsModel()
    providers: dict[str, dict[str, Any]] = {}
    fields: dict[str, _FieldModel] = {}


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


def load_config(path: Path | None, plugin_types: Mapping[str, type[BaseModel] | None] | None = None) -> Config:
    """Read and validate a config file; None gives the empty config.

    `plugin_types` maps provider types that plugins add to the pydantic model of their own keys (or None).
    """
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
    plugins = dict(plugin_types or {})
    providers = {name: _validate_provider(name, options, plugins, source) for name, options in model.providers.items()}
    return _build(model, providers, path, source)


def _validate_provider(name: str, options: dict[str, Any], plugins: Mapping[str, type[BaseModel] | None],
                       source: str) -> _LimitsModel:
    key = f"providers.{name}"
    ptype = options.get("type")
    known = [*PROVIDER_TYPES, *sorted(plugins)]
    if not isinstance(ptype, str) or (ptype not in CORE_MODELS and ptype not in plugins):
        got = "missing" if ptype is None else repr(ptype)
        raise ConfigError(f"config {source}: {key}.type: must be one of {', '.join(known)} (got {got})")
    model_class = CORE_MODELS.get(ptype, _PluginModel)
    try:
        validated = model_class.model_validate(options)
        own_model = plugins.get(ptype)
        if ptype not in CORE_MODELS and own_model is not None:
            common = set(_PluginModel.model_fields)
            own_model.model_validate({k: v for k, v in options.items() if k not in common})
    except ValidationError as exc:
        raise ConfigError(_describe(exc, options, source, prefix=["providers", name],
                                    known=_fields_of(model_class, plugins.get(ptype)))) from None
    return validated


def _fields_of(model: type[BaseModel], own: type[BaseModel] | None) -> list[str]:
    fields = [f for f in model.model_fields if f != "model_config"]
    return fields + (list(own.model_fields) if own is not None else [])


def _build(model: _ConfigModel, validated: dict[str, _LimitsModel], path: Path, source: str) -> Config:
    defaults = _limits(model.defaults, Limits(), "defaults", source)
    providers: dict[str, ProviderConfig] = {}
    common = set(_LimitsModel.model_fields) | {"type", "cost"}
    for name, pmodel in validated.items():
        options = {k: v for k, v in pmodel.model_dump().items() if k not in common}
        options.update({k: v for k, v in (pmodel.model_extra or {}).items() if k not in common})
        limits = _limits(pmodel, defaults, f"providers.{name}", source)
        ptype = str(pmodel.type)  # type: ignore[attr-defined]
        cost = float(pmodel.cost)  # type: ignore[attr-defined]
        providers[name] = ProviderConfig(name, ptype, limits, cost, options)
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


def _describe(exc: ValidationError, raw: dict[str, Any], source: str, *, prefix: Sequence[str] = (),
              known: Sequence[str] | None = None) -> str:
    """The first validation error as one sentence naming the key, with a did-you-mean for typos."""
    errors = exc.errors()
    # A typo shows as both an unknown key and a missing one; the unknown key (with its did-you-mean) explains both.
    error = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in error["loc"]]
    key = ".".join([*prefix, *loc])
    kind = error["type"]
    if kind == "extra_forbidden":
        candidates = list(known) if known is not None and len(loc) == 1 else _known_keys(loc[:-1])
        hint = difflib.get_close_matches(loc[-1], candidates, n=1)
        suggestion = f"; did you mean {hint[0]!r}?" if hint else f"; known keys: {', '.join(sorted(candidates))}"
        return f"config {source}: {key}: unknown key{suggestion}"
    if kind == "missing":
        return f"config {source}: {key}: required key is missing"
    message = error["msg"].removeprefix("Value error, ")
    return f"config {source}: {key}: {message} (got {error.get('input')!r})"


def _known_keys(path: list[str]) -> list[str]:
    if not path:
        return list(_ConfigModel.model_fields)
    if path[0] == "fields" and len(path) == 2:
        return list(_FieldModel.model_fields)
    section = {"sheet": _SheetModel, "defaults": _LimitsModel}.get(path[0])
    return list(section.model_fields) if section and len(path) == 1 else []
