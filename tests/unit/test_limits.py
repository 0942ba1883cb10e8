"""Retry-After and rate-limit headers, and the provider guard's window, breaker and key stop."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from glaze_cli.config import Limits
from glaze_cli.errors import AuthProviderError, ProviderUnavailable, RateLimitedError, TransientProviderError
from glaze_cli.http_client import parse_retry_after, quota_pause
from glaze_cli.limits import AUTH_STOP_AFTER, BREAKER_THRESHOLD, CircuitState, ProviderGuard


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
