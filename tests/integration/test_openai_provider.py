"""The `openai` provider against a fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import anyio
import pytest
from tests.support.openai_server import OpenAIServer

from glaze_cli.config import load_config
from glaze_cli.errors import (
    AuthProviderError,
    ConfigError,
    PermanentProviderError,
    ProviderError,
    TransientProviderError,
)
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers import openai
from glaze_cli.providers.openai import OpenAIProvider, TokenUsage

KEY = "sk-test-3b9e61f0c2d4"
STRIPE = {"name": "Stripe", "domain": "stripe.com"}
UNKNOWN = {"name": "Nobody", "domain": "nobody.example"}
CONFIG = """
[providers.llm]
type = "openai"
base_url = "{base_url}"
model = "gpt-4o-mini"
api_key = "${{TEST_OPENAI_KEY}}"
system = "You research companies."
prompt = "Company {{name}}, website {{domain}}."
outputs = {{ industry = "string", founded_year = "integer" }}
cost = 0.25
cost_per_1k_tokens = 2.0
"""
# Each fake completion uses 100 + 150 tokens: 0.25 + 2.0 * 250 / 1000.
CALL_COST = 0.75
SCHEMA_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "glaze_fields",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"industry": {"type": ["string", "null"]}, "founded_year": {"type": ["integer", "null"]}},
            "required": ["industry", "founded_year"],
            "additionalProperties": False,
        },
    },
}
FALLBACK_SYSTEM = ('You research companies.\n\nAnswer with one JSON object with exactly these keys: '
                   '"industry" (string or null), "founded_year" (integer or null). '
                   "Use null for a value you do not know.")


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_OPENAI_KEY", KEY)


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY) as srv:
        yield srv


def provider(tmp_path: Path, server: OpenAIServer, config: str = CONFIG) -> OpenAIProvider:
    """The `llm` provider of a glaze.toml written to tmp_path, pointed at the fake server."""
    (tmp_path / "glaze.toml").write_text(config.format(base_url=server.base_url))
    loaded = load_config(tmp_path / "glaze.toml")
    built = openai.build(loaded.providers["llm"], loaded.source, loaded.base_dir)
    assert isinstance(built, OpenAIProvider)
    return built


def ask(llm: OpenAIProvider, *rows: Mapping[str, str]) -> list[Answer]:
    """Start the provider, fetch each row in turn, close it."""

    async def main() -> list[Answer]:
        await llm.start()
        try:
            return [await llm.fetch(row) for row in rows]
        finally:
            await llm.close()

    return anyio.run(main)


def answer(values: dict[str, str | None], outcome: Outcome = Outcome.OK) -> Answer:
    return Answer(outcome, values, http_status=200, cost=CALL_COST)


def test_request_shape(tmp_path: Path, server: OpenAIServer) -> None:
    """One POST to /v1/chat/completions: model, system + filled prompt, temperature 0, json_schema, Bearer key."""
    llm = provider(tmp_path, server)
    ask(llm, STRIPE)
    [request] = server.requests
    assert (request["method"], request["path"], request["headers"]["authorization"]) == (
        "POST", "/v1/chat/completions", f"Bearer {KEY}")
    assert request["body"] == {
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You research companies."},
                     {"role": "user", "content": "Company Stripe, website stripe.com."}],
        "temperature": 0,
        "response_format": SCHEMA_FORMAT,
    }
    assert (llm.inputs, llm.outputs) == (("name", "domain"), ("industry", "founded_year"))


def test_values_are_typed_and_returned_as_text(tmp_path: Path, server: OpenAIServer) -> None:
    """The model's JSON object becomes the answer's values, numbers as text."""
    assert ask(provider(tmp_path, server), STRIPE) == [answer({"industry": "Financial services",
                                                              "founded_year": "2010"})]


def test_all_null_is_not_found(tmp_path: Path, server: OpenAIServer) -> None:
    """A model that knows none of the outputs gives NOT_FOUND."""
    assert ask(provider(tmp_path, server), UNKNOWN) == [answer({"industry": None, "founded_year": None},
                                                              Outcome.NOT_FOUND)]


def test_missing_and_extra_keys(tmp_path: Path, server: OpenAIServer) -> None:
    """A missing key is no value, extra keys are ignored, and a ```json fence around the object is tolerated."""
    server.enqueue_content('```json\n{"industry": "Software", "ceo": "someone"}\n```')
    assert ask(provider(tmp_path, server), STRIPE) == [answer({"industry": "Software", "founded_year": None})]


def test_fallback_to_json_object_is_remembered(tmp_path: Path) -> None:
    """A server that rejects json_schema is asked again with json_object, and from then on json_object only."""
    with OpenAIServer(reject_json_schema=True) as srv:
        answers = ask(provider(tmp_path, srv), STRIPE, UNKNOWN)
        requests = srv.requests
    assert answers == [answer({"industry": "Financial services", "founded_year": "2010"}),
                       answer({"industry": None, "founded_year": None}, Outcome.NOT_FOUND)]
    assert [r["body"]["response_format"]["type"] for r in requests] == ["json_schema", "json_object", "json_object"]
    assert [r["body"]["messages"] for r in requests[1:]] == [
        [{"role": "system", "content": FALLBACK_SYSTEM}, {"role": "user", "content": prompt}]
        for prompt in ("Company Stripe, website stripe.com.", "Company Nobody, website nobody.example.")
    ]


def test_other_400_does_not_fall_back(tmp_path: Path, server: OpenAIServer) -> None:
    """A 400 about something else is a permanent error that quotes the server, with no second request."""
    server.enqueue(400, {"error": {"message": "This model's maximum context length is 8192 tokens",
                                   "type": "invalid_request_error"}})
    llm = provider(tmp_path, server)
    with pytest.raises(PermanentProviderError) as caught:
        ask(llm, STRIPE)
    assert caught.value.message == "HTTP 400 from 127.0.0.1: \"This model's maximum context length is 8192 tokens\""
    assert (len(server.requests), llm.use_json_schema) == (1, True)


def test_unknown_model_is_an_error_not_a_miss(tmp_path: Path, server: OpenAIServer) -> None:
    """A 404 (Ollama's "model not found") fails the call instead of caching "no data"."""
    server.enqueue(404, {"error": {"message": 'model "gpt-4o-mini" not found, try pulling it first'}})
    with pytest.raises(PermanentProviderError, match="HTTP 404 from 127.0.0.1: .*not found, try pulling it"):
        ask(provider(tmp_path, server), STRIPE)


@pytest.mark.parametrize(("content", "message"), [
    ("Sure! Stripe is a fintech company.",
     "model 'gpt-4o-mini' at 127.0.0.1 answered text that is not JSON: 'Sure! Stripe is a fintech company.'"),
    ('{"industry": "Software", "founded_year": ',
     "model 'gpt-4o-mini' at 127.0.0.1 answered text that is not JSON: "
     "'{\"industry\": \"Software\", \"founded_year\":'"),
    ("[1, 2]",
     "model 'gpt-4o-mini' at 127.0.0.1 answered a JSON list, not an object with the keys industry, founded_year"),
])
def test_malformed_content_is_transient(tmp_path: Path, server: OpenAIServer, content: str, message: str) -> None:
    """Content that is not a JSON object raises TransientProviderError saying what came back."""
    server.enqueue_content(content)
    with pytest.raises(TransientProviderError) as caught:
        ask(provider(tmp_path, server), STRIPE)
    assert caught.value.message == message


@pytest.mark.parametrize(("values", "message"), [
    ({"industry": "Software", "founded_year": "about 2010"},
     "model 'gpt-4o-mini' at 127.0.0.1 answered founded_year = \"about 2010\", which is not an integer (or null)"),
    ({"industry": "Software", "founded_year": 2010.5},
     "model 'gpt-4o-mini' at 127.0.0.1 answered founded_year = 2010.5, which is not an integer (or null)"),
    ({"industry": "Software", "founded_year": True},
     "model 'gpt-4o-mini' at 127.0.0.1 answered founded_year = true, which is not an integer (or null)"),
    ({"industry": 42, "founded_year": 2010},
     "model 'gpt-4o-mini' at 127.0.0.1 answered industry = 42, which is not a string (or null)"),
])
def test_wrong_type_is_transient(tmp_path: Path, server: OpenAIServer, values: dict, message: str) -> None:
    """A value of the wrong JSON type raises TransientProviderError naming the field."""
    server.enqueue_content(json.dumps(values))
    with pytest.raises(TransientProviderError) as caught:
        ask(provider(tmp_path, server), STRIPE)
    assert caught.value.message == message


@pytest.mark.parametrize("year", [2010, 2010.0, "2010", " 2010 "])
def test_integer_accepts_integral_numbers_and_text(tmp_path: Path, server: OpenAIServer, year: object) -> None:
    """An integer output takes a JSON integer, an integral float, or integer text (json_object answers quote)."""
    server.enqueue_content(json.dumps({"industry": "Software", "founded_year": year}))
    assert ask(provider(tmp_path, server), STRIPE) == [answer({"industry": "Software", "founded_year": "2010"})]


def test_tokens_and_cost(tmp_path: Path, server: OpenAIServer) -> None:
    """Each answer carries its cost (cost + cost_per_1k_tokens); the provider keeps the running token total."""
    llm = provider(tmp_path, server)
    answers = ask(llm, STRIPE, UNKNOWN, STRIPE)
    assert [a.cost for a in answers] == [CALL_COST] * 3
    assert (llm.tokens_used, llm.last_usage, llm.last_cost) == (TokenUsage(300, 450, 750), TokenUsage(100, 150, 250),
                                                                CALL_COST)


def test_tokens_of_an_unusable_answer_still_count(tmp_path: Path, server: OpenAIServer) -> None:
    """A garbled answer raises, but its tokens are counted and its cost is on `last_cost`."""
    server.enqueue_content("not json")
    llm = provider(tmp_path, server)
    with pytest.raises(TransientProviderError):
        ask(llm, STRIPE)
    assert (llm.tokens_used, llm.last_cost) == (TokenUsage(100, 150, 250), CALL_COST)


def test_no_usage_leaves_the_cost_to_the_runner(tmp_path: Path) -> None:
    """Without `usage` token-priced calls have no stated cost (the runner charges the expected cost)."""
    with OpenAIServer(usage=None) as srv:
        llm = provider(tmp_path, srv)
        [only] = ask(llm, STRIPE)
    assert (only.outcome, only.cost, llm.tokens_used, llm.last_cost) == (Outcome.OK, None, TokenUsage(), None)


@pytest.mark.parametrize("script", ["wrong key", "400 echo", "content echo"])
def test_key_never_in_errors(tmp_path: Path, script: str) -> None:
    """Neither a rejected key nor a server that echoes the key puts it in an error message."""
    with OpenAIServer(api_key="sk-the-right-one") as srv:
        if script == "wrong key":
            expected: type[ProviderError] = AuthProviderError
        else:
            srv.api_key = None
            expected = PermanentProviderError if script == "400 echo" else TransientProviderError
            if script == "400 echo":
                srv.enqueue(400, {"error": {"message": f"malformed header: Bearer {KEY}"}})
            else:
                srv.enqueue_content(f"my key is {KEY}")
        llm = provider(tmp_path, srv)
        with pytest.raises(expected) as caught:
            ask(llm, STRIPE)
    assert KEY not in caught.value.message and KEY not in str(caught.value)
    assert llm.secret_variables == ["TEST_OPENAI_KEY"]


def test_key_is_not_part_of_the_fingerprint(tmp_path: Path, server: OpenAIServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Changing the key keeps cached answers valid: the fingerprint sees the unresolved options only."""
    first = provider(tmp_path, server).fingerprint
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-another-key")
    literal = CONFIG.replace("${{TEST_OPENAI_KEY}}", "sk-literal-key")
    assert provider(tmp_path, server).fingerprint == first == provider(tmp_path, server, literal).fingerprint


def test_prompt_without_a_column_is_a_config_error(tmp_path: Path, server: OpenAIServer) -> None:
    """A prompt naming no {column} would ask every row the same question: a config error naming the key."""
    config = CONFIG.replace("Company {{name}}, website {{domain}}.", "Tell me about a company.")
    with pytest.raises(ConfigError, match=r"providers\.llm\.prompt: name at least one \{column\}"):
        provider(tmp_path, server, config)
