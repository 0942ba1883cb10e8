"""The resilience layer against a real loopback provider that misbehaves on purpose."""

from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import polars as pl
import pytest
from tests.support.provider_server import ProviderServer

from glaze_cli import enrich as enrichment
from glaze_cli.errors import ConfigError
from glaze_cli.limits import AUTH_STOP_AFTER, BREAKER_THRESHOLD

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
headers = {{ Authorization = "Bearer ${{ACME_KEY}}" }}
outputs = {{ industry = "company.industry" }}
concurrency = 1
retries = {retries}
timeout = "{timeout}"
"""
SECRET = "sk-test-6f1d2c9a"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_KEY", SECRET)


def run(tmp_path: Path, server: ProviderServer, domains: list[str], *, retries: int = 0, timeout: str = "5s",
        extra: str = "") -> enrichment.EnrichSummary:
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url, retries=retries, timeout=timeout)
                                         + extra)
    sheet = tmp_path / "s.csv"
    pl.DataFrame({"domain": domains}).write_csv(sheet)
    return enrichment.enrich(enrichment.EnrichRequest(sheet=sheet, fields=("industry",), workspace=tmp_path / ".glaze"))


def state(tmp_path: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / ".glaze" / "glaze.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_429_retry_after_seconds_then_success(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A 429 with Retry-After in seconds is waited out and retried; the cell is filled."""
    provider_server.enqueue(429, {"error": "slow down"}, {"Retry-After": "0.2"})
    summary = run(tmp_path, provider_server, ["stripe.com"], retries=2)
    assert (summary.exit_code, summary.filled, provider_server.count("/v1/company")) == (0, 1, 2)
    assert state(tmp_path, "SELECT http_status, attempt FROM provider_calls ORDER BY attempt") == [(429, 1), (200, 2)]


def test_429_retry_after_http_date(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A 429 whose Retry-After is an HTTP date (here already past) is retried too."""
    provider_server.enqueue(429, {"error": "slow down"}, {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})
    summary = run(tmp_path, provider_server, ["stripe.com"], retries=1)
    assert (summary.exit_code, provider_server.count("/v1/company")) == (0, 2)


def test_5xx_fails_after_retries_and_is_not_cached(tmp_path: Path, provider_server: ProviderServer) -> None:
    """503 on every attempt: retries + 1 calls, the cell fails with the status, and nothing is cached."""
    for _ in range(3):
        provider_server.enqueue(503, {"error": "busy"})
    summary = run(tmp_path, provider_server, ["stripe.com"], retries=2)
    assert (summary.exit_code, summary.failed, provider_server.count("/v1/company")) == (1, 1, 3)
    assert state(tmp_path, "SELECT status, error FROM tasks") == [("failed", "acme: HTTP 503 from 127.0.0.1")]
    provider_server.reset()
    again = enrichment.enrich(enrichment.EnrichRequest(sheet=tmp_path / "s.csv", fields=("industry",),
                                                 workspace=tmp_path / ".glaze", retry_failed=True))
    assert (again.exit_code, again.filled, provider_server.count("/v1/company")) == (0, 1, 1)


def test_hang_past_the_timeout(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A provider that holds the request past `timeout` fails the attempt with a timeout error."""
    provider_server.enqueue(200, {"company": {"industry": "late"}}, delay=5)
    summary = run(tmp_path, provider_server, ["stripe.com"], timeout="0.3s")
    assert summary.exit_code == 1
    assert state(tmp_path, "SELECT error FROM tasks") == [("acme: no complete answer from 127.0.0.1 within 0.3s",)]


@pytest.mark.parametrize(("body", "headers", "error"), [
    ("{not json", {"Content-Type": "application/json"}, "acme: 127.0.0.1 answered malformed JSON"),
    ("<html>oops</html>", {"Content-Type": "text/html"}, "acme: 127.0.0.1 answered text/html, not JSON"),
    (b"[" + b"1," * 3_000_000 + b"1]", {"Content-Type": "application/json"},
     "acme: 127.0.0.1 sent a body over 5 MB; glaude does not read it".replace("glaude", "glaze")),
    (gzip.compress(b" " * 60_000_000), {"Content-Type": "application/json", "Content-Encoding": "gzip"},
     "acme: 127.0.0.1 sent a body over 5 MB; glaze does not read it"),
])
def test_bad_bodies_fail_the_cell_with_a_clear_error(tmp_path: Path, provider_server: ProviderServer,
                                                     body: str | bytes, headers: dict[str, str], error: str) -> None:
    """Malformed JSON, a wrong content type, a huge body and a gzip bomb each fail the cell, never the run."""
    provider_server.enqueue(200, body, headers)
    summary = run(tmp_path, provider_server, ["stripe.com"])
    assert (summary.exit_code, state(tmp_path, "SELECT status, error FROM tasks")) == (1, [("failed", error)])


def test_malformed_json_is_retried(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A garbled answer is transient: the retry gets the real one."""
    provider_server.enqueue(200, "{not json", {"Content-Type": "application/json"})
    summary = run(tmp_path, provider_server, ["stripe.com"], retries=1)
    assert (summary.exit_code, summary.filled) == (0, 1)


def test_rejected_key_stops_the_provider(tmp_path: Path, provider_server: ProviderServer) -> None:
    """After a few 401s the provider is stopped: no more calls, cells fail, one message names the variable."""
    for _ in range(20):
        provider_server.enqueue(401, {"error": "bad key"})
    summary = run(tmp_path, provider_server, [f"c{i}.example" for i in range(12)], retries=3)
    assert provider_server.count("/v1/company") == AUTH_STOP_AFTER
    assert (summary.exit_code, summary.failed) == (1, 12)
    assert summary.warnings == ["provider acme stopped for this run: its key was rejected 3 times (HTTP 401); "
                                "check ACME_KEY"]


def test_circuit_breaker_falls_through(tmp_path: Path, provider_server: ProviderServer) -> None:
    """After consecutive failures the circuit opens: later cells skip the provider and fall through."""
    (tmp_path / "directory.csv").write_text("domain,industry\n" + "".join(f"c{i}.example,Dir\n" for i in range(30)))
    for _ in range(50):
        provider_server.enqueue(503, {"error": "down"})
    extra = ('\n[providers.directory]\ntype = "lookup"\npath = "directory.csv"\nmatch = { domain = "domain" }\n'
             'outputs = { industry = "industry" }\n[fields.industry]\nproviders = ["acme", "directory"]\n')
    summary = run(tmp_path, provider_server, [f"c{i}.example" for i in range(30)], extra=extra)
    assert provider_server.count("/v1/company") == BREAKER_THRESHOLD
    assert (summary.exit_code, summary.filled) == (0, 30)


def test_dot_segments_are_refused(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A `..` value in a URL path segment fails its cell without a request."""
    (tmp_path / "glaze.toml").write_text(
        f'[providers.acme]\ntype = "http"\nurl = "{provider_server.base_url}/v1/company/{{domain}}"\n'
        'outputs = { industry = "company.industry" }\nretries = 0\n')
    pl.DataFrame({"domain": [".."]}).write_csv(tmp_path / "s.csv")
    summary = enrichment.enrich(enrichment.EnrichRequest(sheet=tmp_path / "s.csv", fields=("industry",),
                                                   workspace=tmp_path / ".glaze"))
    assert (summary.exit_code, provider_server.requests) == (1, [])
    assert state(tmp_path, "SELECT error FROM tasks") == [("acme: column 'domain' value '..' cannot be used in the "
                                                           "URL path",)]


def test_host_comes_from_the_config(tmp_path: Path) -> None:
    """A {column} in the URL's host is a config error: row values never choose where requests go."""
    (tmp_path / "glaze.toml").write_text('[providers.acme]\ntype = "http"\nurl = "https://{domain}/x"\n'
                                         'outputs = { industry = "a" }\n')
    pl.DataFrame({"domain": ["evil.example"]}).write_csv(tmp_path / "s.csv")
    with pytest.raises(ConfigError, match="the host must be written out"):
        enrichment.enrich(enrichment.EnrichRequest(sheet=tmp_path / "s.csv", fields=("industry",),
                                             workspace=tmp_path / ".glaze"))


def test_secret_is_never_stored(tmp_path: Path, provider_server: ProviderServer) -> None:
    """The key sent in a header appears in no file of the workspace or output, even after errors."""
    provider_server.enqueue(401, {"error": "bad key"})
    provider_server.enqueue(500, {"error": "boom"})
    run(tmp_path, provider_server, ["c1.example", "c2.example", "stripe.com"])
    assert {r["headers"]["authorization"] for r in provider_server.requests} == {f"Bearer {SECRET}"}
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()
             and p.name != "glaze.toml"]
    assert leaks == []
