"""The http provider's request templating: which columns it reads, and the request it sends for a row.

The provider's remote service is replaced by httpx.MockTransport, which records the request instead of sending it.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from glaze_cli.config import load_config
from glaze_cli.errors import ProviderError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers import build_provider
from glaze_cli.providers.base import Provider

TRICKY = "a b&c/é?#"


def http_provider(tmp_path: Path, lines: str) -> Provider:
    """The `acme` http provider built by the public factory from a glaze.toml holding `lines`."""
    path = tmp_path / "glaze.toml"
    path.write_text('[providers.acme]\ntype = "http"\noutputs = { industry = "company.industry" }\n' + lines,
                    encoding="utf-8")
    config = load_config(path)
    return build_provider(config.providers["acme"], config.source, config.base_dir)


def sent_request(provider: Provider, inputs: dict[str, str]) -> tuple[httpx.Request, Answer]:
    """The request the provider sends for `inputs`, and its answer to a canned JSON response."""
    requests: list[httpx.Request] = []

    def service(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"company": {"industry": "Software"}})

    async def run() -> Answer:
        provider._client = httpx.AsyncClient(transport=httpx.MockTransport(service))  # type: ignore[attr-defined]
        try:
            return await provider.fetch(inputs)
        finally:
            await provider.close()

    answer = anyio.run(run)
    assert len(requests) == 1
    return requests[0], answer


def test_inputs_are_the_template_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider reads every {column} of url, params, headers and body once, in order; ${VAR} is not a column."""
    monkeypatch.setenv("ACME_KEY", "s3cret")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/{country}/c?d={domain}"\n'
                                       'params = { n = "{name}" }\nheaders = { Authorization = "Bearer ${ACME_KEY}" }\n'
                                       'method = "POST"\nbody = { d = "{domain}", city = "{city}" }\n')
    assert (provider.inputs, provider.outputs) == (("country", "domain", "name", "city"), ("industry",))


def test_url_query_value_is_url_encoded(tmp_path: Path) -> None:
    """A {column} in the URL's query is percent-encoded, so space, &, /, ?, # and non-ASCII stay one value."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?domain={domain}"\n')
    request, answer = sent_request(provider, {"domain": TRICKY})
    assert (request.method, str(request.url), dict(request.url.params)) == (
        "GET", "https://api.acme.test/v1/company?domain=a%20b%26c%2F%C3%A9%3F%23", {"domain": TRICKY})
    assert answer == Answer(Outcome.OK, {"industry": "Software"}, http_status=200)


def test_url_path_value_is_url_encoded(tmp_path: Path) -> None:
    """A {column} in the URL's path is percent-encoded, so a / in the value does not add a path segment."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company/{domain}/profile"\n')
    request, _ = sent_request(provider, {"domain": TRICKY})
    assert request.url.raw_path == b"/v1/company/a%20b%26c%2F%C3%A9%3F%23/profile"


def test_params_are_filled(tmp_path: Path) -> None:
    """Query parameters get the row's values (encoded by the HTTP client) next to fixed ones."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\n'
                                       'params = { name = "{name}", q = "{name} in {country}", fixed = "1" }\n')
    request, _ = sent_request(provider, {"name": "Acme & Co", "country": "Österreich"})
    assert list(request.url.params.multi_items()) == [
        ("name", "Acme & Co"), ("q", "Acme & Co in Österreich"), ("fixed", "1")]


def test_url_query_and_params_are_both_sent(tmp_path: Path) -> None:
    """The spec example's URL query (?domain={domain}) and its params (name) both reach the provider."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?domain={domain}"\n'
                                       'params = { name = "{name}" }\n')
    request, _ = sent_request(provider, {"domain": "acme.io", "name": "Acme"})
    assert list(request.url.params.multi_items()) == [("domain", "acme.io"), ("name", "Acme")]


def test_headers_are_filled_with_env_and_row_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Header templates get ${VAR} from the environment and {column} from the row."""
    monkeypatch.setenv("ACME_KEY", "s3cret")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\n'
                                       'headers = { Authorization = "Bearer ${ACME_KEY}", X-Domain = "{domain}" }\n')
    request, _ = sent_request(provider, {"domain": "acme.io"})
    assert (request.headers["authorization"], request.headers["x-domain"]) == ("Bearer s3cret", "acme.io")


def test_non_ascii_header_value_does_not_crash(tmp_path: Path) -> None:
    """A row value httpx cannot put in a header is sent (encoded) or fails that cell, not the whole run."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\nheaders = { X-Name = "{name}" }\n')
    try:
        request, _ = sent_request(provider, {"name": "Nestlé"})
    except ProviderError:
        return
    assert request.headers.get_list("x-name") != []


def test_post_body_is_filled(tmp_path: Path) -> None:
    """A POST sends the body as JSON, {column} filled at any depth, other values kept with their types."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\nmethod = "POST"\n'
                                       'body = { domain = "{domain}", query = { names = ["{name}", "x"] }, '
                                       'limit = 5, exact = true }\n')
    request, _ = sent_request(provider, {"domain": TRICKY, "name": 'Acme "Labs"'})
    assert (request.method, request.headers["content-type"], json.loads(request.content)) == (
        "POST", "application/json",
        {"domain": TRICKY, "query": {"names": ['Acme "Labs"', "x"]}, "limit": 5, "exact": True})


def test_get_sends_no_body(tmp_path: Path) -> None:
    """A GET provider sends no body even when one is configured."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?d={domain}"\n'
                                       'body = { domain = "{domain}" }\n')
    request, _ = sent_request(provider, {"domain": "acme.io"})
    assert (request.method, request.content) == ("GET", b"")


def test_env_value_that_looks_like_a_placeholder_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret containing {braces} is sent as it is, not treated as a column."""
    monkeypatch.setenv("ACME_KEY", "k{ey}")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?d={domain}"\n'
                                       'headers = { Authorization = "Bearer ${ACME_KEY}" }\n')
    request, _ = sent_request(provider, {"domain": "acme.io"})
    assert (provider.inputs, request.headers["authorization"]) == (("domain",), "Bearer k{ey}")
