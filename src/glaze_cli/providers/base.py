"""The provider interface: inputs in, an Answer out. Providers never touch the store, cache or screen."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from glaze_cli.config import Limits, ProviderConfig
from glaze_cli.models import Answer

# `{column}` but not `${VAR}`, which is an environment variable resolved when the config loads.
_PLACEHOLDER = re.compile(r"(?<!\$)\{([^{}]+)\}")


def placeholders(template: Any) -> list[str]:
    """The `{column}` names used anywhere in a string, list or dict template, in order of first use."""
    found: list[str] = []
    if isinstance(template, str):
        found = _PLACEHOLDER.findall(template)
    elif isinstance(template, dict):
        for key, value in template.items():
            found += placeholders(key) + placeholders(value)
    elif isinstance(template, list):
        for value in template:
            found += placeholders(value)
    return list(dict.fromkeys(found))


def fill(template: Any, values: Mapping[str, str], encode: Any = None) -> Any:
    """Substitute `{column}` in a template with row values (passed through `encode` if given)."""
    if isinstance(template, str):
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:  # text that only looks like a placeholder, e.g. inside a resolved secret
                return match.group(0)
            return encode(values[name]) if encode else values[name]

        return _PLACEHOLDER.sub(one, template)
    if isinstance(template, dict):
        return {fill(k, values, encode): fill(v, values, encode) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values, encode) for v in template]
    return template


def as_text(value: Any) -> str | None:
    """A provider value as sheet text: strings as they are, numbers plainly, objects as JSON."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) and not value.is_integer() else str(int(value))
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class Provider(ABC):
    """One source of field values. Subclasses set `inputs`/`outputs` and implement `fetch`."""

    type: str = "provider"
    #: whether answers go through the on-disk cache (local computations need not)
    cached: bool = True
    #: >1: the runner gathers concurrent calls and hands them to `fetch_batch` together
    batch_size: int = 1

    def __init__(self, name: str, *, inputs: Sequence[str], outputs: Sequence[str], limits: Limits,
                 cost: float = 0.0, settings: Any = None) -> None:
        self.name = name
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.limits = limits
        self.cost = cost
        self._settings = settings

    @cached_property
    def fingerprint(self) -> str:
        """A hash of everything that shapes the answer (not secrets, not limits): part of cache keys."""
        blob = json.dumps([self.type, self._settings], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def secret_variables(self) -> list[str]:
        """Environment variables holding this provider's credentials (named when its key is rejected)."""
        return []

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        """The row values this provider reads, or None when one is empty (nothing to ask)."""
        values = {}
        for column in self.inputs:
            value = row.get(column)
            if value is None or not value.strip():
                return None
            values[column] = value
        return values

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Begin slow one-time set-up (a big import) in the background: called once the run is planned, while
        the sheet goes into the store; `start` waits for it."""

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections or load data before the first call."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` opened."""

    @abstractmethod
    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Answer for one set of inputs; raise ProviderError subclasses for failures."""

    async def fetch_batch(self, batch: Sequence[Mapping[str, str]]) -> list[Answer]:
        """Answers for many inputs at once; by default one `fetch` each, concurrently."""
        answers: list[Answer | None] = [None] * len(batch)

        async def one(i: int) -> None:
            answers[i] = await self.fetch(batch[i])

        async with anyio.create_task_group() as tg:
            for i in range(len(batch)):
                tg.start_soon(one, i)
        return answers  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """What `glaze providers` shows."""
        limits = self.limits
        return {"name": self.name, "type": self.type, "inputs": list(self.inputs), "outputs": list(self.outputs),
                "concurrency": limits.concurrency, "rate": str(limits.rate) if limits.rate else None,
                "cost": self.cost, "cached": self.cached}


@dataclass(frozen=True)
class ProviderType:
    """A `type = "..."` that `[providers.NAME]` tables can use."""

    name: str
    build: Callable[[ProviderConfig, str, Path], Provider]  # (config, config file, config folder) -> provider
    options: type[BaseModel] | None = None  # a plugin's own keys (glaze checks the common ones: limits, cost)


@dataclass(frozen=True)
class BuiltinSpec:
    """A provider that needs no config: glaze offers it when the sheet has a column it can read."""

    name: str  # "builtin.website": what waterfalls and `glaze providers` call it
    outputs: tuple[str, ...]
    input_hint: str  # what the sheet needs, for error messages ("a phone column (phone, mobile, ...)")
    create: Callable[[Sequence[str]], Provider | None]  # from the sheet's columns; None when none is usable


@functools.cache
def import_in_background(*modules: str) -> None:
    """Import `modules` on a thread, once however often asked: for `prepare`, while the sheet loads into DuckDB
    (mostly without the GIL). The code that needs a module imports it as usual, which waits for the thread's
    import to finish (Python locks each module while it loads) and raises any error it hit."""

    def run() -> None:
        with contextlib.suppress(BaseException):  # raised again by the import that needs the module
            for module in modules:
                importlib.import_module(module)

    threading.Thread(target=run, name=f"import {', '.join(modules)}", daemon=True).start()


def first_filled(columns: Sequence[str], row: Mapping[str, str | None]) -> dict[str, str] | None:
    """{column: value} for the first of `columns` with a non-blank value in the row, else None."""
    for column in columns:
        value = row.get(column)
        if value and value.strip():
            return {column: value}
    return None


def matching_columns(columns: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The sheet's columns named in `wanted` (case-insensitive), in `wanted`'s order of preference."""
    lowered = {c.lower(): c for c in columns}
    return [lowered[name] for name in wanted if name in lowered]
