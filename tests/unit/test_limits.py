"""Retry-After and rate-limit headers, and the provider guard's window, breaker and key stop."""

from __future__ import annotations

import time

import anyio
import pytest
from multidict import CIMultiDict

from glaze_cli.config import Limits, Rate
from glaze_cli.errors import AuthProviderError, ProviderUnavailable, RateLimitedError, TransientProviderError
from glaze_cli.http_client import parse_retry_after, quota_pause
from glaze_cli.limits import AUTH_STOP_AFTER, BREAKER_THRESHOLD, CircuitState, ProviderGuard, RateWindow, Slots


@pytest.mark.parametrize(("header", "seconds"), [
    ("120", 120.0), ("0.5", 0.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0), ("soon", None), (None, None),
])
def test_parse_retry_after(header: str | None, seconds: float | None) -> None:
    """Both forms of Retry-After: delta seconds and an HTTP date (here 30 s after 'now')."""
    now = 1445412480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(header, now=now) == seconds


@pytest.mark.parametrize(("headers", "pause"), [
    ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"}, 2.0),
    ({"RateLimit-Remaining": "0"}, 1.0),
    ({"RateLimit-Remaining": "5", "RateLimit-Reset": "2"}, None),
    ({}, None),
])
def test_quota_pause(headers: dict[str, str], pause: float | None) -> None:
    """An exhausted quota pauses the provider until its reset; remaining calls mean no pause."""
    assert quota_pause(CIMultiDict(headers)) == pause


def guard(concurrency: int = 8) -> ProviderGuard:
    return ProviderGuard("acme", Limits(concurrency=concurrency), secret_variables=["ACME_KEY"])


def test_429_halves_the_window_and_successes_grow_it_back() -> None:
    """Multiplicative decrease on 429, additive increase on success, never above concurrency."""
    g = guard(8)
    g.failed(RateLimitedError("429", http_status=429, retry_after=0.0))
    g.failed(RateLimitedError("429", http_status=429, retry_after=0.0))
    assert (g.window, g.rate_limited) == (2.0, 2)
    for _ in range(200):
        g.succeeded()
    assert g.window == 8.0


def test_breaker_opens_after_consecutive_failures_and_a_success_closes_it() -> None:
    """N transient failures in a row open the circuit; calls are then refused until a probe succeeds."""
    g = guard()
    for _ in range(BREAKER_THRESHOLD):
        g.failed(TransientProviderError("503", http_status=503))
    assert g.state is CircuitState.OPEN
    with pytest.raises(ProviderUnavailable, match="circuit open"):
        g.admit()
    g.opened_at -= 3600  # the cool-down has passed
    g.admit()  # the probe
    assert g.state is CircuitState.HALF_OPEN
    with pytest.raises(ProviderUnavailable, match="waiting for a probe"):
        g.admit()
    g.succeeded()
    assert g.state is CircuitState.CLOSED


def test_rejected_keys_stop_the_provider_once() -> None:
    """After AUTH_STOP_AFTER rejections the provider is stopped, with one message naming the variable."""
    g = guard()
    notices = [g.failed(AuthProviderError("401", http_status=401)) for _ in range(AUTH_STOP_AFTER + 2)]
    assert [n for n in notices if n] == [
        "provider acme stopped for this run: its key was rejected 3 times (HTTP 401); check ACME_KEY"]
    with pytest.raises(ProviderUnavailable, match="stopped for this run"):
        g.admit()


def test_429s_do_not_open_the_circuit() -> None:
    """Rate limiting is flow control: any number of 429s leaves the circuit closed."""
    g = guard()
    for _ in range(BREAKER_THRESHOLD * 3):
        g.failed(RateLimitedError("429", http_status=429, retry_after=0.0))
    assert (g.state, g.failures_in_a_row, g.window) == (CircuitState.CLOSED, 0, 1.0)


def test_slots_hold_the_limit_and_hand_over_in_order() -> None:
    """No more than `limit` holders at once; waiters get slots first come, first served."""
    async def main() -> tuple[int, list[int]]:
        slots = Slots(2)
        holding, peak, order = 0, 0, []

        async def call(i: int) -> None:
            nonlocal holding, peak
            await slots.take()
            holding += 1
            peak = max(peak, holding)
            order.append(i)
            await anyio.sleep(0.01)
            holding -= 1
            slots.release()

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(call, i)
                await anyio.sleep(0)
        return peak, order

    assert anyio.run(main) == (2, [0, 1, 2, 3, 4, 5])


def test_slots_limit_changes_while_calls_wait() -> None:
    """Raising the limit lets waiting calls in at once; lowering it lets holders finish."""
    async def main() -> list[int]:
        slots = Slots(1)
        seen = []
        await slots.take()
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(slots.take)
            await anyio.sleep(0.01)
            seen.append(slots.used)
            slots.set_limit(3)
            await anyio.sleep(0.01)
            seen.append(slots.used)
            slots.set_limit(1)
            slots.release()
            seen.append(slots.used)  # two holders left, above the new limit: the last waiter still waits
            slots.release()
            slots.release()
            await anyio.sleep(0.01)
            seen.append(slots.used)  # now it holds the one slot
        return seen

    assert anyio.run(main) == [1, 3, 2, 1]


def test_cancelled_waiter_gives_up_its_place() -> None:
    """A waiter cancelled before its turn leaves no slot taken and no place in the queue."""
    async def main() -> tuple[int, int]:
        slots = Slots(1)
        await slots.take()
        with anyio.move_on_after(0.01):
            await slots.take()
        slots.release()
        await slots.take()
        return slots.used, len(slots._waiters)

    assert anyio.run(main) == (1, 0)


def test_rate_window_never_lets_more_than_the_rate_start_in_one_window() -> None:
    """12 calls at 5 per 0.1 s: the first 5 start at once, and no 0.1 s window ever holds more than 5 starts."""
    async def main() -> list[float]:
        window = RateWindow(Rate(5, 0.1))
        starts = []

        async def call() -> None:
            await window.acquire()
            starts.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(call)
        return starts

    starts = sorted(anyio.run(main))
    assert all(later - first >= 0.1 for first, later in zip(starts, starts[5:], strict=False))


def test_a_rated_call_counts_from_when_its_request_was_sent(provider_server) -> None:
    """A provider counts arrivals, so a call's place in the rate window is moved to when aiohttp actually put
    the request on the wire (a busy event loop can send it later than its turn). Real aiohttp, real server."""
    from glaze_cli.http_client import build_client, request_json

    async def main() -> None:
        guard = ProviderGuard("p", Limits(concurrency=1, rate=Rate(5, 1.0)))
        client = build_client(timeout=10.0, max_connections=1, rate_limited=True)
        await client.open()
        try:
            async with guard.slot():
                (start,) = guard._rate._starts
                counted = start[0]
                time.sleep(0.01)  # the event loop is busy elsewhere before this call gets to send
                before_send = time.monotonic()
                await request_json(client, "GET", f"{provider_server.base_url}/v1/company",
                                   params={"domain": "stripe.com"})
                assert counted < before_send <= start[0]
            async with guard.slot():  # the next call is counted as it was taken, then moved again
                assert len(guard._rate._starts) == 2
        finally:
            await client.close()

    anyio.run(main)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_rated_call_is_counted_after_its_request_is_written(provider_server, method: str) -> None:
    """aiohttp signals a request's headers (or body) just before it writes them; a stall right there (another
    thread holding the GIL) must not leave the call counted earlier than it left, or the provider sees more
    than its rate in one window. Real aiohttp, real server; the stall is a second listener on the signals."""
    import aiohttp

    from glaze_cli.http_client import build_client, request_json

    stalls: list[float] = []

    async def stall(*_: object) -> None:
        time.sleep(0.02)
        stalls.append(time.monotonic())  # the request is written after this

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(stall)
    trace.on_request_chunk_sent.append(stall)
    trace.freeze()

    async def main() -> None:
        guard = ProviderGuard("p", Limits(concurrency=1, rate=Rate(5, 1.0)))
        client = build_client(timeout=10.0, max_connections=1, rate_limited=True)
        await client.open()
        client.session._trace_configs.append(trace)  # after glaze's own listener, as a stall would come
        try:
            async with guard.slot():
                (start,) = guard._rate._starts
                await request_json(client, method, f"{provider_server.base_url}/v1/company",
                                   params={"domain": "stripe.com"} if method == "GET" else None,
                                   body={"domain": "stripe.com"} if method == "POST" else None)
                assert stalls and start[0] >= max(stalls)
        finally:
            await client.close()

    anyio.run(main)
