"""Providers: the interface (base), the configurable types, the offline built-ins, and plugins.

Every provider type and built-in registers through the entry-point group `glaze.providers`, glaze's own
included; an entry point names a `ProviderType`, a `BuiltinSpec`, or a sequence of them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path

from pydantic import BaseModel

from glaze_cli.config import ProviderConfig
from glaze_cli.errors import ConfigError
from glaze_cli.providers.base import BuiltinSpec, Provider, ProviderType

ENTRY_POINT_GROUP = "glaze.providers"


@dataclass(frozen=True)
class Registry:
    """Every provider type and built-in this installation knows."""

    types: dict[str, ProviderType]
    builtins: dict[str, BuiltinSpec]

    def plugin_options(self) -> Mapping[str, type[BaseModel] | None]:
        """Types beyond the core ones, with the model of their own keys, for config validation."""
        from glaze_cli.config import PROVIDER_TYPES

        return {name: t.options for name, t in self.types.items() if name not in PROVIDER_TYPES}

    def builtins_for(self, columns: Sequence[str]) -> dict[str, Provider]:
        """The built-ins usable with these sheet columns."""
        usable = {}
        for name, spec in self.builtins.items():
            provider = spec.create(columns)
            if provider is not None:
                usable[name] = provider
        return usable

    def build(self, config: ProviderConfig, source: str, base_dir: Path) -> Provider:
        """Instantiate a configured provider by its type."""
        ptype = self.types.get(config.type)
        if ptype is None:
            raise ConfigError(f"config {source}: providers.{config.name}.type: {config.type!r} is not available "
                              f"(known: {', '.join(sorted(self.types))})")
        return ptype.build(config, source, base_dir)


def _own() -> list[object]:
    """glaze's own registrations, used when its entry points are not installed (running from a source tree)."""
    from glaze_cli.providers import builtin, http, lookup, offline, openai, simulated

    return [http.PROVIDER_TYPE, lookup.PROVIDER_TYPE, openai.PROVIDER_TYPE, simulated.PROVIDER_TYPE,
            builtin.WEBSITE, *offline.OFFLINE_BUILTINS]


def _flatten(obj: object) -> Iterable[object]:
    if isinstance(obj, ProviderType | BuiltinSpec):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _flatten(item)
    else:
        raise TypeError(f"expected a ProviderType, a BuiltinSpec or a sequence of them, got {type(obj).__name__}")


@cache
def registry() -> Registry:
    """Load the entry points of `glaze.providers` once; a broken plugin is skipped with one warning."""
    found: list[object] = []
    own_found = False
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            items = list(_flatten(point.load()))
        except Exception as exc:  # a broken plugin must not stop glaze; say which one
            print(f"warning: provider plugin {point.name} ({point.value}) failed to load: {exc}", file=sys.stderr)
            continue
        own_found = own_found or point.value.startswith("glaze_cli.")
        found += items
    if not own_found:
        found = _own() + found
    types: dict[str, ProviderType] = {}
    builtins: dict[str, BuiltinSpec] = {}
    for item in found:
        if isinstance(item, ProviderType):
            types.setdefault(item.name, item)
        elif isinstance(item, BuiltinSpec):
            builtins.setdefault(item.name, item)
    return Registry(types, builtins)


def build_provider(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Instantiate a configured provider by its type."""
    return registry().build(config, source, base_dir)


__all__ = ["ENTRY_POINT_GROUP", "BuiltinSpec", "Provider", "ProviderType", "Registry", "build_provider", "registry"]
