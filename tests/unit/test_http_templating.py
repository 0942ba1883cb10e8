"""The http provider's request templating: which columns it reads, and the request it sends for a row.

The provider's remote service is a loopback server that records each request exactly as it arrived.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import pytest
from tests.support.recording_server import RecordedRequest, RecordingServer

from glaze_cli.config import load_config
from glaze_cli.errors import ProviderError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers import build_provider
from glaze_cli.providers.base import Provider

TRICKY = "a b&c/é?#"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    """The provider's remote service on 127.0.0.1."""
    with RecordingServer() as running:
        yield running


def http_provider(tmp_path: Path, lines: str, server: RecordingServer | None = None,
                  outputs: str = 'industry = "company.industry"') -> Provider:
    """The `acme` http provider built by the public factory from a glaze.toml holding `lines` and `outputs`.

    With a server, the config's https://api.acme.test is that server.
    """
    if server is not None:
        lines = lines.replace("https://api.acme.test", server.origin)
    path = tmp_path / "glaze.toml"
    path.write_text(f'[providers.acme]\ntype = "http"\noutputs = {{ {outputs} }}\n' + lines, encoding="utf-8")
    config = load_config(path)
    return build_provider(config.providers["acme"], config.source, config.base_dir)


def fetch_all(provider: Provider, inputs: dict[str, str], times: int) -> list[Answer]:
    """`times` answers from one started provider."""
    async def run() -> list[Answer]:
        await provider.start()
        try:
            return [await provider.fetch(inputs) for _ in range(times)]
        finally:
            await provider.close()

    return anyio.run(run)


def sent_request(server: RecordingServer, provider: Provider, inputs: dict[str, str]) -> tuple[RecordedRequest,
                                                                                              Answer]:
    """The request the provider sends for `inputs` as the server received it, and the provider's answer."""
    (answer,) = fetch_all(provider, inputs, 1)
    assert len(server.requests) == 1
    return server.requests[0], answer


def query(request: RecordedRequest) -> list[tuple[str, str]]:
    """The request's query parameters, decoded, in order."""
    return parse_qsl(urlsplit(request.raw_path).query, keep_blank_values=True)


def test_inputs_are_the_template_columns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider reads every {column} of url, params, headers and body once, in order; ${VAR} is not a column."""
    monkeypatch.setenv("ACME_KEY", "s3cret")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/{country}/c?d={domain}"\n'
                                       'params = { n = "{name}" }\nheaders = { Authorization = "Bearer ${ACME_KEY}" }\n'
                                       'method = "POST"\nbody = { d = "{domain}", city = "{city}" }\n')
    assert (provider.inputs, provider.outputs) == (("country", "domain", "name", "city"), ("industry",))


def test_url_query_value_is_url_encoded(tmp_path: Path, server: RecordingServer) -> None:
    """A {column} in the URL's query is percent-encoded, so space, &, /, ?, # and non-ASCII stay one value."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?domain={domain}"\n', server)
    request, answer = sent_request(server, provider, {"domain": TRICKY})
    assert (request.method, request.raw_path, query(request)) == (
        "GET", "/v1/company?domain=a%20b%26c%2F%C3%A9%3F%23", [("domain", TRICKY)])
    assert answer == Answer(Outcome.OK, {"industry": "Software"}, http_status=200)


def test_url_path_value_is_url_encoded(tmp_path: Path, server: RecordingServer) -> None:
    """A {column} in the URL's path is percent-encoded, so a / in the value does not add a path segment."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company/{domain}/profile"\n', server)
    request, _ = sent_request(server, provider, {"domain": TRICKY})
    assert request.raw_path == "/v1/company/a%20b%26c%2F%C3%A9%3F%23/profile"


def test_params_are_filled(tmp_path: Path, server: RecordingServer) -> None:
    """Query parameters get the row's values (encoded by the HTTP client) next to fixed ones."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\n'
                                       'params = { name = "{name}", q = "{name} in {country}", fixed = "1" }\n',
                             server)
    request, _ = sent_request(server, provider, {"name": "Acme & Co", "country": "Österreich"})
    assert query(request) == [
        ("name", "Acme & Co"), ("q", "Acme & Co in Österreich"), ("fixed", "1")]


def test_url_query_and_params_are_both_sent(tmp_path: Path, server: RecordingServer) -> None:
    """The spec example's URL query (?domain={domain}) and its params (name) both reach the provider."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?domain={domain}"\n'
                                       'params = { name = "{name}" }\n', server)
    request, _ = sent_request(server, provider, {"domain": "acme.io", "name": "Acme"})
    assert query(request) == [("domain", "acme.io"), ("name", "Acme")]


def test_headers_are_filled_with_env_and_row_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    server: RecordingServer) -> None:
    """Header templates get ${VAR} from the environment and {column} from the row."""
    monkeypatch.setenv("ACME_KEY", "s3cret")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\n'
                                       'headers = { Authorization = "Bearer ${ACME_KEY}", X-Domain = "{domain}" }\n',
                             server)
    request, _ = sent_request(server, provider, {"domain": "acme.io"})
    assert (request.headers["authorization"], request.headers["x-domain"]) == ("Bearer s3cret", "acme.io")


def test_non_ascii_header_value_fails_the_cell(tmp_path: Path, server: RecordingServer) -> None:
    """A row value HTTP headers cannot carry fails that cell with a message saying what to do; nothing is sent."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\nheaders = { X-Name = "{name}" }\n',
                             server)
    with pytest.raises(ProviderError, match="header X-Name: the row's value has non-ASCII characters"):
        sent_request(server, provider, {"name": "Nestlé"})
    assert server.requests == []


def test_post_body_is_filled(tmp_path: Path, server: RecordingServer) -> None:
    """A POST sends the body as JSON, {column} filled at any depth, other values kept with their types."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company"\nmethod = "POST"\n'
                                       'body = { domain = "{domain}", query = { names = ["{name}", "x"] }, '
                                       'limit = 5, exact = true }\n', server)
    request, _ = sent_request(server, provider, {"domain": TRICKY, "name": 'Acme "Labs"'})
    assert (request.method, request.headers["content-type"], json.loads(request.body)) == (
        "POST", "application/json",
        {"domain": TRICKY, "query": {"names": ['Acme "Labs"', "x"]}, "limit": 5, "exact": True})


def test_get_sends_no_body(tmp_path: Path, server: RecordingServer) -> None:
    """A GET provider sends no body even when one is configured."""
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?d={domain}"\n'
                                       'body = { domain = "{domain}" }\n', server)
    request, _ = sent_request(server, provider, {"domain": "acme.io"})
    assert (request.method, request.body) == ("GET", b"")


def test_env_value_that_looks_like_a_placeholder_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         server: RecordingServer) -> None:
    """A secret containing {braces} is sent as it is, not treated as a column."""
    monkeypatch.setenv("ACME_KEY", "k{ey}")
    provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1/company?d={domain}"\n'
                                       'headers = { Authorization = "Bearer ${ACME_KEY}" }\n', server)
    request, _ = sent_request(server, provider, {"domain": "acme.io"})
    assert (provider.inputs, request.headers["authorization"]) == (("domain",), "Bearer k{ey}")


PAYLOAD = {"company": {"industry": "Software", "tags": ["b2b", "saas"], "employees": 120},
           "people": [{"name": "Ada", "role": "cto"}, {"name": "Grace", "role": "ceo"}], "score": 0.8}
OUTPUTS = {
    "industry": "company.industry",
    "first_tag": "company.tags[0]",
    "tag_count": "length(company.tags)",
    "tags": "join(', ', company.tags)",
    "ceo": "people[?role=='ceo'].name | [0]",
    "names": "people[*].name",
    "missing": "company.address.city",
}


def test_outputs_read_every_kind_of_jmespath_expression_alike_on_every_answer(tmp_path: Path) -> None:
    """Functions, filters, projections and missing paths give what jmespath gives, the first answer and later."""
    outputs = ", ".join(f"{name} = {json.dumps(expression)}" for name, expression in OUTPUTS.items())
    with RecordingServer(PAYLOAD) as server:
        provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1?d={domain}"\nconfidence = "score"\n',
                                 server, outputs)
        answers = fetch_all(provider, {"domain": "acme.io"}, 3)
    expected = {"industry": "Software", "first_tag": "b2b", "tag_count": "2", "tags": "b2b, saas", "ceo": "Grace",
                "names": '["Ada", "Grace"]', "missing": None}
    assert [(a.values, a.confidence) for a in answers] == [(expected, 0.8)] * 3


def test_reading_outputs_leaves_nothing_for_the_garbage_collector(tmp_path: Path) -> None:
    """jmespath's own search leaves a reference cycle per output per answer; a run of 6,000 rows spent a tenth
    of its event loop's time collecting them. Outputs are read with no interpreter left behind."""
    from jmespath.visitor import TreeInterpreter

    def interpreters() -> int:
        return sum(1 for o in gc.get_objects() if isinstance(o, TreeInterpreter))

    with RecordingServer(PAYLOAD) as server:
        provider = http_provider(tmp_path, 'url = "https://api.acme.test/v1?d={domain}"\n', server,
                                 'industry = "company.industry", ceo = "people[0].name"')
        gc.collect()
        gc.disable()
        try:
            before = interpreters()
            answers = fetch_all(provider, {"domain": "acme.io"}, 20)
            left = interpreters() - before
        finally:
            gc.enable()
    assert answers[-1].values == {"industry": "Software", "ceo": "Ada"}
    assert left == 0
