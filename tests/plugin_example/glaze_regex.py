"""An example glaze plugin: `type = "regex"` fills fields from named groups of a pattern matched on a column.

Used by tests/e2e/test_plugins.py and shown in docs/providers.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from glaze_cli.config import ProviderConfig
from glaze_cli.errors import ConfigError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import BuiltinSpec, Provider, ProviderType, first_filled, matching_columns


class RegexOptions(BaseModel):
    """The keys a `[providers.NAME]` table of type "regex" may have besides the common ones."""

    model_config = ConfigDict(extra="forbid")
    column: str
    pattern: str
    outputs: dict[str, str]  # field = named group


class RegexProvider(Provider):
    """Named groups of `pattern`, searched in the row's `column`."""

    type = "regex"
    cached = False  # local and cheap: recomputing beats a cache lookup

    def __init__(self, config: ProviderConfig, source: str) -> None:
        opts = RegexOptions.model_validate(config.options)
        try:
            self.pattern = re.compile(opts.pattern)
        except re.error as exc:
            raise ConfigError(f"config {source}: providers.{config.name}.pattern: {exc}") from None
        self.groups = opts.outputs
        super().__init__(config.name, inputs=[opts.column], outputs=list(opts.outputs), limits=config.limits,
                         cost=config.cost, settings=config.options)

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        match = self.pattern.search(next(iter(inputs.values())))
        if match is None:
            return Answer(Outcome.NOT_FOUND)
        return Answer(Outcome.OK, {field: match.group(group) for field, group in self.groups.items()})


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    return RegexProvider(config, source)


REGEX = ProviderType("regex", build, RegexOptions)


class ShoutProvider(Provider):
    """A built-in: the company name in capitals (needs no config)."""

    type = "builtin"
    cached = False

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        return Answer(Outcome.OK, {"shout": next(iter(inputs.values())).upper()})

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        return first_filled(self.inputs, row)


def _shout(columns: list[str]) -> Provider | None:
    found = matching_columns(columns, ["company", "name"])
    if not found:
        return None
    from glaze_cli.providers.builtin import BUILTIN_LIMITS

    return ShoutProvider("example.shout", inputs=found, outputs=["shout"], limits=BUILTIN_LIMITS, settings="v1")


SHOUT = BuiltinSpec("example.shout", ("shout",), "a company or name column", _shout)
