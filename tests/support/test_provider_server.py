"""Tests of the loopback provider server itself."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.provider_server import ProviderServer

ROOT = Path(__file__).resolve().parents[2]
STRIPE = {"name": "Stripe", "industry": "Software", "website": "https://stripe.com"}


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def server() -> Iterator[ProviderServer]:
    with ProviderServer({"stripe.com": STRIPE, "acme.io": {"name": "Acme", "score": 0.42}}) as srv:
        yield srv


def test_known_domain_returns_company_and_default_score(server: ProviderServer) -> None:
    r = httpx.get(server.url(), params={"domain": "stripe.com"})
    assert r.status_code == 200
    assert r.json() == {"company": STRIPE, "score": 0.9}


def test_score_fact_is_lifted_out_of_company(server: ProviderServer) -> None:
    assert httpx.get(server.url(), params={"domain": "acme.io"}).json() == {"company": {"name": "Acme"}, "score": 0.42}


def test_unknown_and_missing_domain(server: ProviderServer) -> None:
    r = httpx.get(server.url(), params={"domain": "nope.example"})
    assert (r.status_code, r.json()) == (404, {"error": "not found"})
    for params in ({}, {"domain": ""}):
        r = httpx.get(server.url(), params=params)
        assert (r.status_code, r.json()) == (400, {"error": "domain is required"})
    assert httpx.post(server.url(), json={}).status_code == 400


def test_count_by_path_and_query(server: ProviderServer) -> None:
    for domain in ("stripe.com", "stripe.com", "acme.io"):
        httpx.get(server.url(), params={"domain": domain})
    httpx.get(server.url("/v1/echo"), params={"domain": "stripe.com"})
    assert server.count() == 4
    assert server.count("/v1/company") == 3
    assert server.count("/v1/company", domain="stripe.com") == 2
    assert server.count(domain="stripe.com") == 3
    assert server.count("/v1/company", domain="missing.example") == 0


def test_post_body_is_recorded_and_matched(server: ProviderServer) -> None:
    r = httpx.post(server.url(), json={"domain": "stripe.com", "tier": 2}, headers={"X-Api-Key": "k1"})
    assert r.json()["company"] == STRIPE
    assert server.count("/v1/company", domain="stripe.com", tier=2) == 1
    assert server.count("/v1/company", domain="acme.io") == 0
    (req,) = server.requests
    assert req["method"] == "POST" and req["body"] == {"domain": "stripe.com", "tier": 2}
    assert req["headers"]["x-api-key"] == "k1"


def test_echo_reflects_query_and_headers(server: ProviderServer) -> None:
    r = httpx.get(server.url("/v1/echo"), params={"q": "x y"}, headers={"Authorization": "Bearer t"})
    assert r.json()["query"] == {"q": "x y"}
    assert r.json()["headers"]["authorization"] == "Bearer t"


def test_max_in_flight_counts_concurrent_requests(server: ProviderServer) -> None:
    server.set_latency(0.2)
    n = 20
    barrier = threading.Barrier(n)
    with httpx.Client(base_url=server.base_url, limits=httpx.Limits(max_connections=n)) as client:

        def fetch(_: int) -> int:
            barrier.wait()
            return client.get("/v1/company", params={"domain": "stripe.com"}).status_code

        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(fetch, i) for i in range(n)]
            assert wait_for(lambda: server.max_in_flight == n)
            assert [f.result() for f in futures] == [200] * n
    assert wait_for(lambda: server.in_flight == 0)
    assert server.max_in_flight == n


def test_enqueued_responses_are_one_shot_fifo(server: ProviderServer) -> None:
    server.enqueue(503, {"error": "busy"}, headers={"Retry-After": "1"})
    server.enqueue(200, "{not json")
    r = httpx.get(server.url(), params={"domain": "stripe.com"})
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (503, {"error": "busy"}, "1")
    httpx.get(server.url("/v1/echo"))  # echo does not consume the queue
    r = httpx.get(server.url(), params={"domain": "stripe.com"})
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "{not json", "text/plain; charset=utf-8")
    r = httpx.get(server.url(), params={"domain": "stripe.com"})
    assert r.json()["company"] == STRIPE
    assert server.count("/v1/company", domain="stripe.com") == 3


def test_set_company_and_reset(server: ProviderServer) -> None:
    server.set_company("New.IO", {"name": "New"})
    assert httpx.get(server.url(), params={"domain": "new.io"}).json()["company"] == {"name": "New"}
    server.enqueue(500)
    server.reset()
    assert (server.requests, server.count(), server.max_in_flight) == ([], 0, 0)
    assert httpx.get(server.url(), params={"domain": "new.io"}).status_code == 200
    assert server.count() == 1


def test_standalone_serves_until_sigterm(tmp_path: Path) -> None:
    csv_path = tmp_path / "companies.csv"
    csv_path.write_text("domain,name,score\nStripe.com,Stripe,0.5\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "tests.support.provider_server", "--port", "0", "--latency", "0.01"]
    cmd += ["--companies-from", str(csv_path), "--synthesize", "3"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        r = httpx.get(f"{base_url}/v1/company", params={"domain": "stripe.com"})
        assert r.json() == {"company": {"name": "Stripe"}, "score": 0.5}
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out.strip().splitlines()[-1]) == {"requests": 1, "max_in_flight": 1, "sent_429": 0, "sent_503": 0,
                                                          "sent_malformed": 0}


def test_synthesized_companies_are_served() -> None:
    from tests.support.provider_server import synthetic_companies

    with ProviderServer(synthetic_companies(3)) as srv:
        r = httpx.get(srv.url(), params={"domain": "company2.example"})
    assert r.json()["company"]["website"] == "https://company2.example"


def test_injected_faults() -> None:
    """Fault shares produce 503s and malformed bodies, and the server counts what it sent."""
    with ProviderServer({"a.example": {"industry": "X"}}, error_rate=0.3, malformed_rate=0.2, seed=1) as server:
        responses = [httpx.get(f"{server.base_url}/v1/company", params={"domain": "a.example"}) for _ in range(60)]
    assert [r.status_code for r in responses].count(503) == server.sent_503 > 0
    assert sum(r.status_code == 200 and r.text.endswith(": ") for r in responses) == server.sent_malformed > 0


def test_rate_limit_answers_429() -> None:
    """Past `rate_limit` requests in a 1 s window the server answers 429 with a Retry-After."""
    with ProviderServer({"a.example": {"industry": "X"}}, rate_limit=2) as server:
        responses = [httpx.get(f"{server.base_url}/v1/company", params={"domain": "a.example"}) for _ in range(60)]
    limited = [r for r in responses if r.status_code == 429]
    # Over 2 per second for 60 requests: some 429s unless the requests took over 30 s.
    assert len(limited) == server.sent_429 > 0
    assert all(float(r.headers["retry-after"]) <= 1.0 for r in limited)
