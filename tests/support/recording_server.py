"""A loopback HTTP service that records each request exactly as it arrived and answers a canned JSON body."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it: method, raw path with its query, headers (CI lookup), body bytes."""

    method: str
    raw_path: str
    headers: Any
    body: bytes


class RecordingServer(LoopbackServer):
    """Answers every request with `answer` (JSON) and keeps what was sent."""

    thread_name = "recording-server"

    def __init__(self, answer: Any = None) -> None:
        super().__init__()
        self.answer = answer if answer is not None else {"company": {"industry": "Software"}}
        self.requests: list[RecordedRequest] = []

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._record)
        return app

    async def _record(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            self.requests.append(RecordedRequest(request.method, request.raw_path, request.headers.copy(), body))
        return web.json_response(self.answer)
