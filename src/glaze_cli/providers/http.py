"""`type = "http"`: a JSON API called with the row's values; outputs picked with JMESPath."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import jmespath
from jmespath.exceptions import JMESPathError

from glaze_cli.config import ProviderConfig, resolve_env
from glaze_cli.errors import ConfigError
from glaze_cli.http_client import build_client, request_json
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider, as_text, fill, placeholders


def _compile(expression: str, key: str, source: str) -> Any:
    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ConfigError(f"config {source}: {key}: {expression!r} is not a JMESPath expression ({exc})") from None


class HttpProvider(Provider):
    """GET or POST a templated request; a `not_found` status means no data."""

    type = "http"

    def __init__(self, config: ProviderConfig, source: str) -> None:
        opts = config.options
        key = f"providers.{config.name}"
        self.method = opts["method"].upper()
        self.url_template = resolve_env(opts["url"], f"{key}.url", source)
        if urlsplit(self.url_template).scheme not in ("http", "https"):
            raise ConfigError(f"config {source}: {key}.url: {opts['url']!r} must start with http:// or https://")
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
        super().__init__(config.name, inputs=inputs, outputs=list(opts["outputs"]), limits=config.limits,
                         cost=config.cost, settings=opts)
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        """Open this provider's connection pool."""
        self._client = build_client(timeout=self.limits.timeout, max_connections=self.limits.concurrency)

    async def close(self) -> None:
        """Close the pool."""
        if self._client is not None:
            await self._client.aclose()

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """One request for these inputs."""
        assert self._client is not None, "start() first"
        url = fill(self.url_template, inputs, lambda v: quote(v, safe=""))
        status, payload = await request_json(
            self._client, self.method, url,
            params=fill(self.params_template, inputs) or None,
            headers=fill(self.headers_template, inputs) or None,
            body=fill(self.body_template, inputs) if self.method == "POST" else None,
            not_found=self.not_found,
        )
        if payload is None:
            return Answer(Outcome.NOT_FOUND, http_status=status)
        values = {f: as_text(path.search(payload)) for f, path in self.output_paths.items()}
        confidence = 1.0
        if self.confidence_path is not None:
            raw = self.confidence_path.search(payload)
            try:
                confidence = min(1.0, max(0.0, float(raw))) if raw is not None else 1.0
            except (TypeError, ValueError):
                confidence = 0.0
        outcome = Outcome.OK if any(v is not None for v in values.values()) else Outcome.NOT_FOUND
        return Answer(outcome, values, confidence, http_status=status)


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Factory used by the provider registry."""
    return HttpProvider(config, source)
