"""`type = "simulated"`: deterministic values from the inputs, with latency, jitter and errors.

For demos, tests and benchmarks: the same inputs always give the same values.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path

import anyio

from glaze_cli.config import ProviderConfig, parse_duration
from glaze_cli.errors import ConfigError, TransientProviderError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider, ProviderType

_INDUSTRIES = ("Software", "Retail", "Banking", "Manufacturing", "Healthcare", "Logistics", "Media", "Energy")


def simulated_value(field: str, inputs: Mapping[str, str]) -> str:
    """The deterministic value a simulated provider gives for one field."""
    return _value(field, inputs, str(sorted(inputs.items())))


def _value(field: str, inputs: Mapping[str, str], items: str) -> str:
    """`simulated_value`, given the text of the sorted inputs (made once for all of a row's fields)."""
    if field == "website":
        host = next(iter(inputs.values())).strip().lower()
        return f"https://{host}"
    digest = hashlib.blake2b(f"{field}|{items}".encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "big")
    if field == "industry":
        return _INDUSTRIES[number % len(_INDUSTRIES)]
    if field in ("employee_count", "employees", "headcount"):
        return str(10 + number % 50_000)
    return f"{field}-{digest.hex()[:8]}"


class SimulatedProvider(Provider):
    """Answers from a hash of the inputs after a simulated latency; fails `error_rate` of attempts."""

    type = "simulated"

    def __init__(self, config: ProviderConfig, source: str) -> None:
        opts = config.options
        key = f"providers.{config.name}"
        durations = {}
        for name in ("latency", "jitter"):
            try:
                durations[name] = parse_duration(opts[name])
            except ValueError as exc:
                raise ConfigError(f"config {source}: {key}.{name}: {exc}") from None
        self.latency, self.jitter = durations["latency"], durations["jitter"]
        self.error_rate = float(opts["error_rate"])
        self.not_found_rate = float(opts["not_found_rate"])
        self._random = random.Random()
        super().__init__(config.name, inputs=opts["inputs"], outputs=opts["outputs"], limits=config.limits,
                         cost=config.cost, settings={k: opts[k] for k in ("inputs", "outputs", "not_found_rate")})

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Sleep, maybe fail, then answer deterministically."""
        delay = self.latency + self._random.uniform(-self.jitter, self.jitter) if self.jitter else self.latency
        if delay > 0:
            await anyio.sleep(delay)
        if self.error_rate and self._random.random() < self.error_rate:
            raise TransientProviderError("simulated error", http_status=503)
        # It stands in for a remote service, so it does as little as it can: the engine benchmark measures glaze.
        items = str(sorted(inputs.items()))
        if self.not_found_rate:
            key_hash = hashlib.blake2b(items.encode(), digest_size=4).digest()
            if int.from_bytes(key_hash, "big") / 2**32 < self.not_found_rate:
                return Answer(Outcome.NOT_FOUND, http_status=404)
        return Answer(Outcome.OK, {f: _value(f, inputs, items) for f in self.outputs}, http_status=200)


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Factory used by the provider registry."""
    return SimulatedProvider(config, source)


PROVIDER_TYPE = ProviderType("simulated", build)
