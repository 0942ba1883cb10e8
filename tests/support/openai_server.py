"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for tests of the `openai` provider.

Like :mod:`tests.support.provider_server`, it runs aiohttp in its own event loop on a background thread, so any
test (sync, async, or a `glaze` subprocess) can reach it at :attr:`OpenAIServer.base_url` (``.../v1``).
"""

from __future__ import annotations

import itertools
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer

COMPLETIONS_PATH = "/v1/chat/completions"
#: what the default answer function knows, keyed by a domain that must appear in the user prompt
COMPANIES: dict[str, dict[str, Any]] = {
    "stripe.com": {"industry": "Financial services", "founded_year": 2010},
    "siemens.com": {"industry": "Industrial manufacturing", "founded_year": 1847},
    "nestle.com": {"industry": "Food and beverage", "founded_year": 1866},
}
UNKNOWN: dict[str, Any] = {"industry": None, "founded_year": None}
# The wording of older llama.cpp servers, which know only "text" and "json_object".
JSON_SCHEMA_REJECTION = {"error": {"code": 400, "type": "invalid_request_error",
                                   "message": 'response_format type must be one of "text" or "json_object", '
                                              "but got: json_schema"}}


def company_facts(prompt: str) -> dict[str, Any]:
    """The default answer: facts of the first known company whose domain is in the prompt, else all null."""
    lowered = prompt.lower()
    return next((dict(facts) for domain, facts in COMPANIES.items() if domain in lowered), dict(UNKNOWN))


@dataclass(frozen=True)
class _Scripted:
    """A one-shot answer: raw message content (status 200), or a whole response with its own status."""

    content: str | None = None
    status: int = 200
    body: Any = None


class OpenAIServer(LoopbackServer):
    """Loopback ``POST /v1/chat/completions`` whose answers are JSON built from the user prompt."""

    def __init__(
        self,
        answer: Callable[[str], Any] = company_facts,
        *,
        api_key: str | None = None,
        reject_json_schema: bool = False,
        usage: tuple[int, int] | None = (100, 150),
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        # `answer(user_prompt)` gives the object the model "says"; `usage` is (prompt, completion) tokens per
        # completion, or None to leave `usage` out as some local servers do.
        self.answer = answer
        self.api_key = api_key
        self.reject_json_schema = reject_json_schema
        self.usage = usage
        super().__init__(port, host)
        self._requests: list[dict[str, Any]] = []
        self._script: deque[_Scripted] = deque()
        self._ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        """What a config's `base_url` should say: ``http://127.0.0.1:PORT/v1``."""
        return self.origin + "/v1"

    thread_name = "openai-server"

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("POST", COMPLETIONS_PATH, self._completions)
        return app

    # -- scripting and observation ---------------------------------------------------------------------------
    def enqueue_content(self, content: str) -> None:
        """Answer the next completion (FIFO) with this raw message content, e.g. malformed JSON."""
        with self._lock:
            self._script.append(_Scripted(content=content))

    def enqueue(self, status: int, body: Any = None) -> None:
        """Answer the next completion (FIFO) with this status and JSON body instead of a completion."""
        with self._lock:
            self._script.append(_Scripted(status=status, body=body))

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests: ``{"method", "path", "body", "headers"}`` (JSON body parsed, header names lower-cased)."""
        with self._lock:
            return list(self._requests)

    def reset(self) -> None:
        """Forget recorded requests and queued answers."""
        with self._lock:
            self._requests.clear()
            self._script.clear()

    # -- handler ---------------------------------------------------------------------------------------------
    async def _completions(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read())
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        with self._lock:
            self._requests.append({"method": request.method, "path": request.path, "body": body,
                                   "headers": headers})
            # Checked in the order a real server would: the key, then the request, then what to answer.
            if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
                return web.json_response({"error": {"message": "Incorrect API key provided", "code": "invalid_api_key",
                                                    "type": "invalid_request_error"}}, status=401)
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                return web.json_response({"error": {"message": "messages is required"}}, status=400)
            response_format = body.get("response_format") or {}
            if self.reject_json_schema and response_format.get("type") == "json_schema":
                return web.json_response(JSON_SCHEMA_REJECTION, status=400)
            scripted = self._script.popleft() if self._script else None
        if scripted is not None and scripted.content is None:
            return web.json_response(scripted.body, status=scripted.status)
        if scripted is not None:
            content = scripted.content
        else:
            prompt = next((m.get("content") for m in reversed(body["messages"])
                           if isinstance(m, dict) and m.get("role") == "user"), "")
            content = json.dumps(self.answer(str(prompt)))
        return web.json_response(self._completion(body.get("model"), content))

    def _completion(self, model: Any, content: str | None) -> dict[str, Any]:
        completion: dict[str, Any] = {
            "id": f"chatcmpl-{next(self._ids)}", "object": "chat.completion", "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        }
        if self.usage is not None:
            prompt_tokens, completion_tokens = self.usage
            completion["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                   "total_tokens": prompt_tokens + completion_tokens}
        return completion
