"""`type = "http"`: a JSON API called with the row's values; outputs picked with JMESPath."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jmespath
from jmespath.exceptions import JMESPathError
from jmespath.visitor import TreeInterpreter

from glaze_cli.config import ProviderConfig, env_variables, resolve_env
from glaze_cli.errors import ConfigError, PermanentProviderError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider, ProviderType, as_text, fill, import_in_background, placeholders

if TYPE_CHECKING:
    from types import ModuleType

    from glaze_cli.http_client import HttpClient

HTTP_CLIENT = "glaze_cli.http_client"


class _Path:
    """A compiled JMESPath expression, searched by one interpreter for the provider's life.

    jmespath's own `search` builds an interpreter per call, and each is a reference cycle (its method cache holds
    its own bound methods): three outputs on 6,000 rows left 108,000 objects for the garbage collector, whose
    passes took ~0.35 s of the event loop's time in the provider-bound benchmark.
    """

    __slots__ = ("_ast", "_interpreter")

    def __init__(self, expression: str) -> None:
        self._ast = jmespath.compile(expression).parsed
        self._interpreter = TreeInterpreter()

    def search(self, value: Any) -> Any:
        """The expression's result on `value` (None where it finds nothing)."""
        return self._interpreter.visit(self._ast, value)


def _compile(expression: str, key: str, source: str) -> _Path:
    try:
        return _Path(expression)
    except JMESPathError as exc:
        raise ConfigError(f"config {source}: {key}: {expression!r} is not a JMESPath expression ({exc})") from None


class PooledProvider(Provider):
    """A provider that talks HTTP through its own connection pool, sized to its concurrency."""

    _client: HttpClient | None = None
    http: ModuleType  # glaze_cli.http_client, once started

    def prepare(self) -> None:
        """Import the HTTP client (aiohttp: ~0.1 s of a ~0.55 s start-up) on a thread: the sheet's load into DuckDB
        mostly runs without the GIL, so the import costs little there. `start` imports it again, which waits
        for this one (Python locks each module while it loads)."""
        import_in_background(HTTP_CLIENT)

    async def start(self) -> None:
        """Open this provider's connection pool."""
        self.http = importlib.import_module(HTTP_CLIENT)
        self._client = self.http.build_client(timeout=self.limits.timeout, max_connections=self.limits.concurrency,
                                              rate_limited=self.limits.rate is not None)
        await self._client.open()

    async def close(self) -> None:
        """Close the pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None


class HttpProvider(PooledProvider):
    """GET or POST a templated request; a `not_found` status means no data."""

    type = "http"

    def __init__(self, config: ProviderConfig, source: str) -> None:
        opts = config.options
        key = f"providers.{config.name}"
        self.method = opts["method"].upper()
        self.url_template = resolve_env(opts["url"], f"{key}.url", source)
        parts = urlsplit(self.url_template)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"config {source}: {key}.url: {opts['url']!r} must start with http:// or https://")
        if placeholders(parts.netloc) or not parts.hostname:
            # Row values never choose where a request goes: the host is fixed by the config.
            raise ConfigError(f"config {source}: {key}.url: the host must be written out, without {{column}} "
                              f"placeholders (got {parts.netloc!r})")
        self.path_inputs = frozenset(placeholders(parts.path))
        self.params_template = resolve_env(opts.get("params") or {}, f"{key}.params", source)
        self.headers_template = resolve_env(opts.get("headers") or {}, f"{key}.headers", source)
        self.body_template = resolve_env(opts.get("body"), f"{key}.body", source)
        self.output_paths = {f: _compile(e, f"{key}.outputs.{f}", source) for f, e in opts["outputs"].items()}
        self.confidence_path = (_compile(opts["confidence"], f"{key}.confidence", source)
                                if opts.get("confidence") else None)
        self.not_found = frozenset(opts.get("not_found") or [404])
        # The unresolved templates shape the answer; resolved secrets must never reach cache keys.
        inputs = placeholders([opts["url"], opts.get("params") or {}, opts.get("headers") or {},
                               opts.get("body") or {}])
        self.settings_template = {k: opts.get(k) for k in ("url", "params", "headers", "body")}
        super().__init__(config.name, inputs=inputs, outputs=list(opts["outputs"]), limits=config.limits,
                         cost=config.cost, settings=opts)

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """One request for these inputs."""
        assert self._client is not None, "start() first"
        for column in self.path_inputs:
            if inputs[column].strip() in ("", ".", ".."):
                raise PermanentProviderError(f"column {column!r} value {inputs[column]!r} cannot be used in the "
                                             "URL path")
        url = self.http.with_params(fill(self.url_template, inputs, lambda v: quote(v, safe="")),
                                    fill(self.params_template, inputs) if self.params_template else None)
        headers = fill(self.headers_template, inputs)
        for name, value in headers.items():
            if not value.isascii():
                raise PermanentProviderError(f"header {name}: the row's value has non-ASCII characters, which HTTP "
                                             "headers cannot carry; send it in params or body instead")
        response = await self.http.request_json(
            self._client, self.method, url,
            headers=headers or None,
            body=fill(self.body_template, inputs) if self.method == "POST" else None,
            not_found=self.not_found,
            total_timeout=self.limits.timeout,
        )
        if response.payload is None:
            return Answer(Outcome.NOT_FOUND, http_status=response.status, pause=response.pause)
        payload = response.payload
        values = {f: as_text(path.search(payload)) for f, path in self.output_paths.items()}
        confidence = 1.0
        if self.confidence_path is not None:
            raw = self.confidence_path.search(payload)
            try:
                confidence = min(1.0, max(0.0, float(raw))) if raw is not None else 1.0
            except (TypeError, ValueError):
                confidence = 0.0
        outcome = Outcome.OK if any(v is not None for v in values.values()) else Outcome.NOT_FOUND
        return Answer(outcome, values, confidence, http_status=response.status, pause=response.pause)

    @property
    def secret_variables(self) -> list[str]:
        """The environment variables this provider's requests carry (named when a key is rejected)."""
        return env_variables([self.settings_template])


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Factory used by the provider registry."""
    return HttpProvider(config, source)


PROVIDER_TYPE = ProviderType("http", build)
