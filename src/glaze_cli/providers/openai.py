"""`type = "openai"`: any OpenAI-compatible chat-completions endpoint, asked for a JSON object of the outputs.

Plain HTTP through `http_client` (no SDK, so no SDK retries: the runner's resilience layer owns retrying).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, Strict, ValidationError, create_model

from glaze_cli.config import ProviderConfig, env_variables, resolve_env
from glaze_cli.errors import (
    ConfigError,
    PermanentProviderError,
    ProviderError,
    RejectedError,
    TransientProviderError,
    clip,
)
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider, ProviderType, as_text, fill, placeholders
from glaze_cli.providers.http import PooledProvider

if TYPE_CHECKING:
    from glaze_cli.http_client import JsonResponse

_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false"}
_INTEGER_TEXT = re.compile(r"[+-]?\d+(?:\.0*)?")
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_FENCED = re.compile(r"\s*```(?:json)?\s*(.*?)\s*```\s*", re.DOTALL | re.IGNORECASE)


def _integer(value: Any) -> int:
    """JSON integers, integral floats (2010.0) and integer text ("2010"): json_object answers often quote numbers."""
    if isinstance(value, bool):
        raise ValueError("not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value.strip()):
        return int(float(value)) if "." in value else int(value)
    raise ValueError("not an integer")


def _number(value: Any) -> int | float:
    """JSON numbers and number text ("3.5"), finite; ints stay ints so large ones keep every digit."""
    if isinstance(value, bool):
        raise ValueError("not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    if isinstance(value, str) and _NUMBER_TEXT.fullmatch(value.strip()) and math.isfinite(float(value)):
        return float(value)
    raise ValueError("not a number")


_TYPES: dict[str, Any] = {
    "string": Annotated[str, Strict()],
    "integer": Annotated[int, PlainValidator(_integer)],
    "number": Annotated[float, PlainValidator(_number)],
    "boolean": Annotated[bool, Strict()],
}


def answer_model(outputs: Mapping[str, str]) -> type[BaseModel]:
    """A pydantic model of the outputs: each typed and optional (null or missing = no value), extra keys ignored."""
    # Fields get safe Python names and the output name as alias: outputs may be any text, even "model_config".
    fields: dict[str, Any] = {f"f{i}": (_TYPES[kind] | None, Field(default=None, alias=name))
                              for i, (name, kind) in enumerate(outputs.items())}
    return create_model("GlazeFields", __config__=ConfigDict(extra="ignore"), **fields)


def json_schema(outputs: Mapping[str, str]) -> dict[str, Any]:
    """The strict JSON schema of the answer: exactly the outputs, each of its type or null, all required."""
    return {
        "type": "object",
        "properties": {name: {"type": [kind, "null"]} for name, kind in outputs.items()},
        "required": list(outputs),
        "additionalProperties": False,
    }


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens that calls consumed, as the server counted them."""

    prompt: int = 0
    completion: int = 0
    total: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt + other.prompt, self.completion + other.completion, self.total + other.total)

    @classmethod
    def from_payload(cls, payload: Any) -> TokenUsage | None:
        """`usage` of a chat completion, or None when the server did not say."""
        usage = payload.get("usage") if isinstance(payload, dict) else None
        if not isinstance(usage, dict):
            return None

        def count(key: str) -> int | None:
            value = usage.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None

        prompt, completion, total = count("prompt_tokens"), count("completion_tokens"), count("total_tokens")
        if prompt is None and completion is None and total is None:
            return None
        prompt, completion = prompt or 0, completion or 0
        return cls(prompt, completion, total if total is not None else prompt + completion)


class OpenAIProvider(PooledProvider):
    """One chat completion per row: the prompt filled from the row, the answer a JSON object of the outputs."""

    type = "openai"

    def __init__(self, config: ProviderConfig, source: str) -> None:
        opts = config.options
        key = f"providers.{config.name}"
        base_url = urlsplit(resolve_env(opts["base_url"], f"{key}.base_url", source))
        if base_url.scheme not in ("http", "https") or not base_url.hostname:
            raise ConfigError(f"config {source}: {key}.base_url: {opts['base_url']!r} must start with http:// or "
                              "https:// and name a host, like https://api.openai.com/v1")
        # Kept with its query: Azure puts api-version there.
        self.url = urlunsplit(base_url._replace(path=base_url.path.rstrip("/") + "/chat/completions"))
        self.host = base_url.hostname
        self.model = resolve_env(opts["model"], f"{key}.model", source)
        self.prompt_template = resolve_env(opts["prompt"], f"{key}.prompt", source)
        self.system_template = resolve_env(opts.get("system"), f"{key}.system", source)
        inputs = placeholders([opts["prompt"], opts.get("system") or ""])
        if not inputs:
            raise ConfigError(f"config {source}: {key}.prompt: name at least one {{column}} of the sheet, like "
                              "\"Company {name}, website {domain}.\"; otherwise every row asks the same question")
        api_key = resolve_env(opts.get("api_key"), f"{key}.api_key", source)
        self._api_key = api_key.strip() if api_key else None
        if self._api_key and not (self._api_key.isascii() and self._api_key.isprintable()):
            raise ConfigError(f"config {source}: {key}.api_key: the key has characters an HTTP header cannot "
                              "carry; check the value you set")
        self.output_types: dict[str, str] = dict(opts["outputs"])
        self.cost_per_1k_tokens = float(opts.get("cost_per_1k_tokens") or 0.0)
        self._model = answer_model(self.output_types)
        self._schema_format = {"type": "json_schema", "json_schema": {
            "name": "glaze_fields", "strict": True, "schema": json_schema(self.output_types)}}
        listed = ", ".join(f'"{name}" ({kind} or null)' for name, kind in self.output_types.items())
        self.json_instruction = (f"Answer with one JSON object with exactly these keys: {listed}. "
                                 "Use null for a value you do not know.")
        # Flipped for the rest of the run by the first server that rejects json_schema.
        self.use_json_schema = True
        self.tokens_used = TokenUsage()
        self.last_usage: TokenUsage | None = None
        self.last_cost: float | None = None
        # The unresolved options shape the answer; the key (resolved or not) never reaches cache keys.
        settings = {k: opts.get(k) for k in ("base_url", "model", "prompt", "system", "outputs")}
        self._key_variables = env_variables([opts.get("api_key") or ""])
        super().__init__(config.name, inputs=inputs, outputs=list(self.output_types), limits=config.limits,
                         cost=config.cost, settings=settings)

    @property
    def secret_variables(self) -> list[str]:
        """The environment variables in `api_key` (named when the key is rejected)."""
        return self._key_variables

    def call_cost(self, usage: TokenUsage | None) -> float | None:
        """What one call cost: `cost` plus `cost_per_1k_tokens` per 1000 tokens; None if tokens are priced but
        the server did not count them (the runner then charges the expected cost)."""
        if usage is None:
            return None if self.cost_per_1k_tokens else self.cost
        return self.cost + self.cost_per_1k_tokens * usage.total / 1000

    def request_body(self, inputs: Mapping[str, str], *, schema: bool) -> dict[str, Any]:
        """The chat-completions request for one row, asking for json_schema or (the fallback) json_object."""
        system = fill(self.system_template, inputs) if self.system_template else None
        if not schema:
            system = f"{system}\n\n{self.json_instruction}" if system else self.json_instruction
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": fill(self.prompt_template, inputs)})
        return {"model": self.model, "messages": messages, "temperature": 0,
                "response_format": self._schema_format if schema else {"type": "json_object"}}

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """One chat completion for these inputs; a garbled answer raises TransientProviderError."""
        assert self._client is not None, "start() first"
        try:
            return await self._ask(inputs)
        except ProviderError as exc:
            # A server may echo what it was sent; the key must not reach logs, the store or the screen.
            if self._api_key and self._api_key in exc.message:
                exc.message = exc.message.replace(self._api_key, "***")
                exc.args = (exc.message,)
            raise

    async def _ask(self, inputs: Mapping[str, str]) -> Answer:
        assert self._client is not None
        headers = {"authorization": f"Bearer {self._api_key}"} if self._api_key else None
        schema = self.use_json_schema
        try:
            response = await self._post(headers, self.request_body(inputs, schema=schema))
        except RejectedError as exc:
            if not (schema and _about_response_format(exc)):
                raise
            # Older llama.cpp and Ollama servers know json_object only: ask that way for the rest of the run.
            self.use_json_schema = False
            response = await self._post(headers, self.request_body(inputs, schema=False))
        usage = TokenUsage.from_payload(response.payload)
        cost = self.call_cost(usage)
        # Counted before the content is checked: the tokens are spent even when the answer is unusable.
        self.last_usage, self.last_cost = usage, cost
        if usage is not None:
            self.tokens_used += usage
        values = self._values(response.payload)
        outcome = Outcome.OK if any(v is not None for v in values.values()) else Outcome.NOT_FOUND
        return Answer(outcome, values, http_status=response.status, pause=response.pause, cost=cost)

    async def _post(self, headers: dict[str, str] | None, body: dict[str, Any]) -> JsonResponse:
        assert self._client is not None
        # No status means "no data" here: a 404 is a wrong model or base_url, and must not be cached as a miss.
        return await self.http.request_json(self._client, "POST", self.url, headers=headers, body=body,
                                            not_found=frozenset(), total_timeout=self.limits.timeout,
                                            explain_rejections=True)

    def _values(self, payload: Any) -> dict[str, str | None]:
        """The outputs in a completion, as text; TransientProviderError when the answer cannot be used."""
        who = f"model {self.model!r} at {self.host}"
        try:
            choice = payload["choices"][0]
            message = choice["message"]
            content = message.get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise TransientProviderError(f"{who} answered without choices[0].message; is base_url an "
                                         "OpenAI-compatible /v1 endpoint?") from None
        refusal = message.get("refusal")
        if not content and isinstance(refusal, str) and refusal:
            raise PermanentProviderError(f"{who} refused to answer: {clip(refusal)!r}")
        if not isinstance(content, str) or not content.strip():
            raise TransientProviderError(f"{who} answered no text")
        fenced = _FENCED.fullmatch(content)
        try:
            data = json.loads(fenced.group(1) if fenced else content)
        except ValueError:
            if isinstance(choice, dict) and choice.get("finish_reason") == "length":
                raise TransientProviderError(f"{who} hit its token limit before the JSON answer ended") from None
            raise TransientProviderError(f"{who} answered text that is not JSON: {clip(content)!r}") from None
        if not isinstance(data, dict):
            raise TransientProviderError(f"{who} answered a JSON {_json_kind(data)}, not an object with the keys "
                                         f"{', '.join(self.output_types)}")
        try:
            parsed = self._model.model_validate(data)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0])
            expected = _TYPE_WORDS[self.output_types[name]]
            raise TransientProviderError(f"{who} answered {name} = {clip(json.dumps(error['input']))}, which is "
                                         f"not {expected} (or null)") from None
        return {name: as_text(value) for name, value in parsed.model_dump(by_alias=True).items()}


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _about_response_format(error: RejectedError) -> bool:
    """Whether the server objected to the json_schema response format (400, or 422 from FastAPI servers)."""
    text = error.body.lower()
    return error.http_status in (400, 422) and ("response_format" in text or "json_schema" in text)


def build(config: ProviderConfig, source: str, base_dir: Path) -> Provider:
    """Factory used by the provider registry."""
    return OpenAIProvider(config, source)


PROVIDER_TYPE = ProviderType("openai", build)
