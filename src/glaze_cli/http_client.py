"""The one place that builds HTTP clients and turns responses into JSON or typed errors.

aiohttp directly, not httpx: httpx 0.28's own pool costs ~8.7 ms of CPU per request at 50 connections
(encode/httpx#3215), and even over its aiohttp transport its request layers took about a third of glaze's
event-loop time in the provider-bound benchmark (py-spy); plain aiohttp is the measured fastest client here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import aiohttp
from yarl import URL

from glaze_cli import __version__
from glaze_cli.errors import (
    AuthProviderError,
    PermanentProviderError,
    RateLimitedError,
    RejectedError,
    TransientProviderError,
    clip,
)
from glaze_cli.limits import mark_sent

MAX_BODY_BYTES = 5 * 1024 * 1024
ERROR_BODY_BYTES = 64 * 1024  # how much of a 4xx body is read for its explanation


class HttpClient:
    """One provider's connection pool, sized to its concurrency; open it inside the event loop."""

    def __init__(self, *, timeout: float, max_connections: int, rate_limited: bool = False) -> None:
        self.timeout = timeout
        self.max_connections = max_connections
        self.rate_limited = rate_limited
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open session (`open` first)."""
        if self._session is None:
            self._session = self._build()
        return self._session

    def _build(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0, ttl_dns_cache=300)
        traces = []
        if self.rate_limited:
            # A provider with a rate counts arrivals: its rate window counts each call from when it was sent.
            sent = aiohttp.TraceConfig()
            sent.on_request_headers_sent.append(_mark_sent)
            sent.on_request_chunk_sent.append(_mark_sent)  # a body carries the headers out with it
            traces.append(sent)
        return aiohttp.ClientSession(connector=connector, timeout=self.timeout_for(self.timeout), trust_env=False,
                                     headers={"user-agent": f"glaze/{__version__}"}, trace_configs=traces)

    def timeout_for(self, seconds: float) -> aiohttp.ClientTimeout:
        """The whole-call timeout of `seconds` (connecting gets at most 5 s of it), built once per value."""
        cached = self._timeouts.get(seconds)
        if cached is None:
            cached = self._timeouts[seconds] = aiohttp.ClientTimeout(total=seconds, sock_connect=min(5.0, seconds))
        return cached

    async def open(self) -> None:
        """Create the pool (must run inside the event loop)."""
        _ = self.session

    async def close(self) -> None:
        """Close the pool's connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _mark_sent(*_: Any) -> None:
    # aiohttp sends these signals just before it writes the headers or a chunk of the body, and writes them
    # before the task next yields: count the call from the loop's next turn, which comes after the write.
    # Marking it here let a stall in between (another thread holding the GIL) put a request on the wire 49 ms
    # after it was counted, and the rate-limited benchmark drew a 429 in about one run in 25.
    asyncio.get_running_loop().call_soon(mark_sent)


def build_client(*, timeout: float, max_connections: int, rate_limited: bool = False) -> HttpClient:
    """An HTTP client for one provider, with its own pool sized to its concurrency."""
    return HttpClient(timeout=timeout, max_connections=max_connections, rate_limited=rate_limited)


def with_params(url: str, params: Mapping[str, str] | None) -> str:
    """`url` with `params` added to its own query (both kept), percent-encoded."""
    if not params:
        return url
    parts = urlsplit(url)
    extra = urlencode(params, quote_via=quote)
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


@dataclass(frozen=True, slots=True)
class JsonResponse:
    """A provider's answer: status, parsed JSON (None for a not-found status) and its pacing hint."""

    status: int
    payload: Any
    pause: float | None = None  # seconds until the provider's quota resets, when it says none is left


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header, in either form (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def quota_pause(headers: Mapping[str, str]) -> float | None:
    """From RateLimit-Remaining / X-RateLimit-Remaining: seconds to pause when no request is left, else None.

    `headers` looks names up case-insensitively (aiohttp's headers do; a plain dict needs lower-case names).
    """
    remaining = headers.get("ratelimit-remaining") or headers.get("x-ratelimit-remaining")
    try:
        if remaining is None or float(remaining) > 0:
            return None
    except ValueError:
        return None
    reset = headers.get("ratelimit-reset") or headers.get("x-ratelimit-reset")
    try:
        seconds = float(reset) if reset else 1.0
    except ValueError:
        return 1.0
    # X-RateLimit-Reset is an epoch timestamp at some providers and a delta at others.
    if seconds > 1e9:
        seconds -= time.time()
    return min(max(0.0, seconds), 3600.0)


async def request_json(
    client: HttpClient,
    method: str,
    url: str,
    *,
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    body: Any = None,
    not_found: frozenset[int] = frozenset({404}),
    max_bytes: int = MAX_BODY_BYTES,
    total_timeout: float | None = None,
    explain_rejections: bool = False,
) -> JsonResponse:
    """Send one request and read its JSON answer, within `total_timeout` seconds overall.

    `url` is sent as written (already percent-encoded). Raises RateLimitedError (429), TransientProviderError
    (timeouts, connection errors, 5xx, a body that is not JSON), AuthProviderError (401/403) and
    PermanentProviderError (other 4xx, a body over the cap); with `explain_rejections`, another 4xx is a
    RejectedError carrying the server's explanation. Messages name the host and status only: never the URL's
    query or headers, which may hold secrets.
    """
    limit = total_timeout if total_timeout is not None else client.timeout
    target = URL(with_params(url, params), encoded=True)
    host = target.host or "the provider"
    try:
        async with client.session.request(method, target, headers=headers, json=body, allow_redirects=False,
                                          timeout=client.timeout_for(limit)) as response:
            status = response.status
            pause = quota_pause(response.headers)
            if status in not_found:
                return JsonResponse(status, None, pause)
            if status >= 400:
                _raise_for_status(response, host, pause, await _explain(response, host) if explain_rejections
                                  else None)
            content_type = response.content_type.lower()
            if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
                raise TransientProviderError(f"{host} answered {content_type}, not JSON", http_status=status)
            raw = await _read(response, host, max_bytes, truncate=False)
    except TimeoutError:
        raise TransientProviderError(f"no complete answer from {host} within {limit:g}s") from None
    except aiohttp.InvalidURL:
        raise PermanentProviderError(f"the request to {host} has an invalid URL") from None
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, aiohttp.ClientResponseError) as exc:
        raise TransientProviderError(f"connection to {host} failed ({type(exc).__name__})") from None
    try:
        return JsonResponse(status, json.loads(raw), pause)
    except ValueError:
        raise TransientProviderError(f"{host} answered malformed JSON", http_status=status) from None


async def _explain(response: aiohttp.ClientResponse, host: str) -> RejectedError | None:
    """A 4xx other than 401/403/429 as a RejectedError with the server's explanation, else None."""
    status = response.status
    if status in (401, 403, 429) or status >= 500:
        return None
    text = (await _read(response, host, ERROR_BODY_BYTES, truncate=True)).decode("utf-8", "replace")
    detail = error_detail(text)
    return RejectedError(f"HTTP {status} from {host}" + (f": {clip(detail, 200)!r}" if detail else ""),
                         http_status=status, body=text)


def _raise_for_status(response: aiohttp.ClientResponse, host: str, pause: float | None,
                      rejected: RejectedError | None) -> None:
    status = response.status
    if status < 400:
        return
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    if status == 429:
        raise RateLimitedError(f"HTTP 429 (rate limited) from {host}", http_status=status,
                               retry_after=retry_after if retry_after is not None else pause)
    if status >= 500:
        raise TransientProviderError(f"HTTP {status} from {host}", http_status=status, retry_after=retry_after)
    if status in (401, 403):
        raise AuthProviderError(f"HTTP {status} from {host}: the key was rejected", http_status=status)
    if rejected is not None:
        raise rejected
    raise PermanentProviderError(f"HTTP {status} from {host}", http_status=status)


async def _read(response: aiohttp.ClientResponse, host: str, limit: int, *, truncate: bool) -> bytes:
    """The body up to `limit` bytes, counted after decompression chunk by chunk (a gzip bomb stops at the cap):
    cut there when `truncate`, else refused."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            if truncate:
                chunks.append(chunk[: limit - (size - len(chunk))])
                break
            raise PermanentProviderError(f"{host} sent a body over {limit / 1048576:g} MB; glaze does not read it",
                                         http_status=response.status)
        chunks.append(chunk)
    return b"".join(chunks)


def error_detail(text: str) -> str:
    """The message in an error body: `error.message` (OpenAI), `error` or `detail` (others), else the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return text.strip()
    if isinstance(data, dict):
        error = data.get("error", data.get("detail", data.get("message")))
        if isinstance(error, dict):
            error = error.get("message", error)
        if error is not None:
            return error if isinstance(error, str) else json.dumps(error)
    return text.strip()
