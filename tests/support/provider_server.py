"""A real loopback HTTP enrichment provider for tests and benchmarks.

The server runs aiohttp in its own event loop on a background thread, so sync tests, async tests with their own
loops, and subprocesses (the ``glaze`` CLI) can all reach it at :attr:`ProviderServer.base_url`.
It can also run standalone: ``python -m tests.support.provider_server --port 0 --synthesize 1000``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import random
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.loopback import LoopbackServer

COMPANY_PATH = "/v1/company"
ECHO_PATH = "/v1/echo"
STATS_PATH = "/_stats"
DEFAULT_SCORE = 0.9
INDUSTRIES = ("Software", "Fintech", "Healthcare", "Retail", "Logistics")


@dataclass(frozen=True)
class _Scripted:
    """A one-shot response queued with :meth:`ProviderServer.enqueue`."""

    status: int
    body: Any
    headers: dict[str, str]
    delay: float

    def response(self) -> web.Response:
        headers = dict(self.headers)
        if isinstance(self.body, dict | list):
            raw, default_type = json.dumps(self.body).encode(), "application/json"
        elif isinstance(self.body, str):
            raw, default_type = self.body.encode(), "text/plain; charset=utf-8"
        elif isinstance(self.body, bytes):
            raw, default_type = self.body, "text/plain"
        else:
            raw, default_type = None, None
        if default_type and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = default_type
        return web.Response(status=self.status, body=raw, headers=headers)


class ProviderServer(LoopbackServer):
    """Loopback provider API: ``/v1/company`` (GET ``?domain=`` or POST ``{"domain": ...}``) and ``/v1/echo``."""

    def __init__(
        self,
        companies: dict[str, dict[str, Any]] | None = None,
        latency: float = 0.0,
        jitter: float = 0.0,
        port: int = 0,
        host: str = "127.0.0.1",
        *,
        error_rate: float = 0.0,
        malformed_rate: float = 0.0,
        rate_limit: float | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(port, host)
        self._companies = {k.strip().lower(): dict(v) for k, v in (companies or {}).items()}
        self._latency, self._jitter = latency, jitter
        self._requests: list[dict[str, Any]] = []
        self._script: deque[_Scripted] = deque()
        self._in_flight = 0
        self._max_in_flight = 0
        # Fault injection on /v1/company: a share of 503s and of malformed JSON bodies, and a limit of
        # `rate_limit` requests in any 1 s window, past which the server answers 429 with Retry-After.
        self.error_rate, self.malformed_rate, self.rate_limit = error_rate, malformed_rate, rate_limit
        self._random = random.Random(seed)
        self._window: deque[float] = deque()
        self.sent_429 = self.sent_503 = self.sent_malformed = 0

    thread_name = "provider-server"

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return self.origin

    def url(self, path: str = COMPANY_PATH) -> str:
        """Absolute URL for ``path`` on this server."""
        return self.base_url + path

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("GET", COMPANY_PATH, self._company)
        app.router.add_route("POST", COMPANY_PATH, self._company)
        app.router.add_route("GET", ECHO_PATH, self._echo)
        app.router.add_route("GET", STATS_PATH, self._stats)
        return app

    # -- configuration ---------------------------------------------------------------------------------------
    def set_company(self, domain: str, facts: dict[str, Any]) -> None:
        """Add or replace one company."""
        with self._lock:
            self._companies[domain.strip().lower()] = dict(facts)

    def set_latency(self, latency: float, jitter: float = 0.0) -> None:
        """Per-request sleep of ``latency ± uniform(jitter)`` seconds (never negative)."""
        with self._lock:
            self._latency, self._jitter = latency, jitter

    def enqueue(
        self,
        status: int,
        body: dict[str, Any] | str | bytes | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
    ) -> None:
        """Queue a one-shot answer for the next ``/v1/company`` request (FIFO); ``delay`` adds to the latency."""
        with self._lock:
            self._script.append(_Scripted(status, body, dict(headers or {}), delay))

    def reset(self) -> None:
        """Forget recorded requests, the in-flight peak and queued responses."""
        with self._lock:
            self._requests.clear()
            self._script.clear()
            self._max_in_flight = self._in_flight

    # -- observation -----------------------------------------------------------------------------------------
    @property
    def requests(self) -> list[dict[str, Any]]:
        """Recorded requests: ``{"method", "path", "query", "body", "headers", "started", "finished"}``.

        Header names are lower-cased; ``started`` and ``finished`` are ``time.monotonic()`` values (``finished`` is
        None while the answer is being prepared).
        """
        with self._lock:
            return list(self._requests)

    def count(self, path: str | None = None, **query: Any) -> int:
        """Requests to ``path`` (any if None) whose query params, or JSON body keys, match ``query``."""

        def matches(r: dict[str, Any], key: str, want: Any) -> bool:
            body = r["body"]
            return r["query"].get(key) == str(want) or (isinstance(body, dict) and key in body and body[key] == want)

        return sum(
            1
            for r in self.requests
            if (path is None or r["path"] == path) and all(matches(r, k, v) for k, v in query.items())
        )

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    # -- handlers --------------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Record the request, count it in flight, sleep the latency, then answer (scripted or normal)."""
        if request.path == STATS_PATH:
            return await handler(request)
        body = await _json_body(request)
        record = {
            "method": request.method,
            "path": request.path,
            "query": dict(request.query),
            "body": body,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "started": time.monotonic(),
            "finished": None,
        }
        with self._lock:
            self._requests.append(record)
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            scripted = self._script.popleft() if request.path == COMPANY_PATH and self._script else None
            if scripted is None and request.path == COMPANY_PATH:
                scripted = self._fault()
            delay = max(0.0, self._latency + random.uniform(-self._jitter, self._jitter))
        try:
            delay += scripted.delay if scripted else 0.0
            if delay > 0:
                await asyncio.sleep(delay)
            if scripted:
                return scripted.response()
            return await handler(request)
        finally:
            with self._lock:
                self._in_flight -= 1
                record["finished"] = time.monotonic()

    def _fault(self) -> _Scripted | None:
        """Under the lock: an injected 429, 503 or malformed answer for this request, or None."""
        now = time.monotonic()
        if self.rate_limit:
            while self._window and now - self._window[0] >= 1.0:
                self._window.popleft()
            if len(self._window) >= self.rate_limit:
                self.sent_429 += 1
                wait = max(0.0, 1.0 - (now - self._window[0]))
                return _Scripted(429, {"error": "rate limited"}, {"Retry-After": f"{wait:.3f}"}, 0.0)
            self._window.append(now)
        roll = self._random.random()
        if roll < self.error_rate:
            self.sent_503 += 1
            return _Scripted(503, {"error": "unavailable"}, {}, 0.0)
        if roll < self.error_rate + self.malformed_rate:
            self.sent_malformed += 1
            return _Scripted(200, '{"company": {"industry": ', {"Content-Type": "application/json"}, 0.0)
        return None

    async def _company(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _json_body(request)
            domain = body.get("domain") if isinstance(body, dict) else None
        else:
            domain = request.query.get("domain")
        if not isinstance(domain, str) or not domain.strip():
            return web.json_response({"error": "domain is required"}, status=400)
        with self._lock:
            facts = self._companies.get(domain.strip().lower())
        if facts is None:
            return web.json_response({"error": "not found"}, status=404)
        company = dict(facts)
        score = company.pop("score", DEFAULT_SCORE)
        return web.json_response({"company": company, "score": score})

    async def _stats(self, request: web.Request) -> web.Response:
        """Counters for a benchmark run (``?reset=1`` zeroes them afterwards); not itself recorded."""
        with self._lock:
            stats = {"requests": sum(1 for r in self._requests if r["path"] == COMPANY_PATH),
                     "max_in_flight": self._max_in_flight, "sent_429": self.sent_429, "sent_503": self.sent_503,
                     "sent_malformed": self.sent_malformed}
            company = [r for r in self._requests if r["path"] == COMPANY_PATH]
            # time.monotonic() is one clock for every process on the machine: a benchmark lines these up with
            # its own to split a run into start-up, calls and wind-down
            stats["first_started"] = min((r["started"] for r in company), default=None)
            stats["last_finished"] = max((r["finished"] or 0.0 for r in company), default=None)
            if request.query.get("reset"):
                self._requests.clear()
                self._max_in_flight = self._in_flight
                self.sent_429 = self.sent_503 = self.sent_malformed = 0
        return web.json_response(stats)

    async def _echo(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"query": dict(request.query), "headers": {k.lower(): v for k, v in request.headers.items()}}
        )


async def _json_body(request: web.Request) -> Any:
    """The request body parsed as JSON, or None (aiohttp caches the raw body, so this is cheap to repeat)."""
    if not request.body_exists:
        return None
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


# -- standalone ------------------------------------------------------------------------------------------------
def synthetic_companies(n: int) -> dict[str, dict[str, Any]]:
    """``company{i}.example`` for i in 0..n-1, with deterministic facts."""
    return {
        f"company{i}.example": {
            "name": f"Company {i}",
            "industry": INDUSTRIES[i % len(INDUSTRIES)],
            "website": f"https://company{i}.example",
        }
        for i in range(n)
    }


def load_companies_csv(path: str | Path) -> dict[str, dict[str, Any]]:
    """Companies from a CSV with a ``domain`` column; other columns become facts (``score`` parsed as float)."""
    companies: dict[str, dict[str, Any]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "domain" not in (reader.fieldnames or []):
            raise SystemExit(f"{path}: no 'domain' column")
        for row in reader:
            domain = (row.pop("domain") or "").strip().lower()
            facts: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
            if "score" in facts and not facts["score"]:
                del facts["score"]  # empty cell: fall back to the default score
            with contextlib.suppress(KeyError, ValueError):
                facts["score"] = float(facts["score"])
            if domain:
                companies[domain] = facts
    return companies


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGINT/SIGTERM, then print a JSON summary."""
    p = argparse.ArgumentParser(prog="python -m tests.support.provider_server", description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--jitter", type=float, default=0.0)
    p.add_argument("--companies-from", metavar="CSV", help="CSV with a 'domain' column; other columns are facts")
    p.add_argument("--synthesize", type=int, default=0, metavar="N", help="add company{i}.example for i < N")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of /v1/company answers that are 503")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="share of answers with malformed JSON")
    p.add_argument("--rate-limit", type=float, default=None, help="requests per 1 s window before 429s")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args(argv)

    companies = load_companies_csv(args.companies_from) if args.companies_from else {}
    companies.update(synthetic_companies(args.synthesize))
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with ProviderServer(companies, args.latency, args.jitter, args.port, args.host, error_rate=args.error_rate,
                        malformed_rate=args.malformed_rate, rate_limit=args.rate_limit, seed=args.seed) as server:
        print(f"listening on {server.base_url}", flush=True)
        while not done.wait(0.5):
            pass
    print(json.dumps({"requests": len(server.requests), "max_in_flight": server.max_in_flight,
                      "sent_429": server.sent_429, "sent_503": server.sent_503,
                      "sent_malformed": server.sent_malformed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
