"""Providers: the interface (base), the configurable types, and the offline built-ins."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from glaze_cli.config import ProviderConfig
from glaze_cli.errors import ConfigError
from glaze_cli.providers import http, lookup, simulated
from glaze_cli.providers.base import Provider

Factory = Callable[[ProviderConfig, str, Path], Provider]

PROVIDER_FACTORIES: dict[str, Factory] = {
    "http": http.build,
    "lookup": lookup.build,
    "simulated": simulated.build,
}


def build_provider(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Instantiate a configured provider by its type."""
    factory = PROVIDER_FACTORIES.get(config.type)
    if factory is None:
        raise ConfigError(f"config {source}: providers.{config.name}.type: {config.type!r} is not available "
                          f"in this version of glaze (known: {', '.join(sorted(PROVIDER_FACTORIES))})")
    return factory(config, source, base_dir)


__all__ = ["PROVIDER_FACTORIES", "Provider", "build_provider"]
