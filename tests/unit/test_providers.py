"""Provider pieces that need no network: templating, the website built-in, simulated values."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from glaze_cli.config import load_config
from glaze_cli.models import Outcome
from glaze_cli.providers import build_provider
from glaze_cli.providers.base import fill, placeholders
from glaze_cli.providers.builtin import WEBSITE, website_from
from glaze_cli.providers.simulated import simulated_value


def test_placeholders_skip_environment_variables() -> None:
    """`{column}` names are found in strings, dicts and lists; `${VAR}` is not a column."""
    template = ["https://x.test/{domain}", {"q": "{name}", "Authorization": "Bearer ${KEY}"}]
    assert placeholders(template) == ["domain", "name"]


def test_fill_url_encodes_values() -> None:
    """Values are URL-encoded when an encoder is given, and placeholders without a value stay."""
    from urllib.parse import quote

    url = fill("https://x.test/c?d={domain}&k={other}", {"domain": "a b&c/é"}, lambda v: quote(v, safe=""))
    assert url == "https://x.test/c?d=a%20b%26c%2F%C3%A9&k={other}"


def test_http_provider_inputs_and_fingerprint_hide_secrets(tmp_path: Path, monkeypatch) -> None:
    """The provider reads the template's columns; its cache fingerprint does not change with the secret."""
    (tmp_path / "glaze.toml").write_text(
        '[providers.acme]\ntype = "http"\nurl = "https://x.test/?d={domain}"\nparams = { n = "{name}" }\n'
        'headers = { Authorization = "Bearer ${KEY}" }\noutputs = { industry = "a.b" }\n')
    prints = []
    for secret in ("one", "two"):
        monkeypatch.setenv("KEY", secret)
        config = load_config(tmp_path / "glaze.toml")
        provider = build_provider(config.providers["acme"], config.source, config.base_dir)
        prints.append(provider.fingerprint)
    assert provider.inputs == ("domain", "name")
    assert prints[0] == prints[1]


@pytest.mark.parametrize(("value", "site"), [
    ("Example.com", "https://example.com"),
    ("https://www.Example.com/path?q=1", "https://www.example.com"),
    ("jane@acme.io", "https://acme.io"),
    ("bob@gmail.com", None),
    ("not a domain", None),
    ("", None),
])
def test_website_from(value: str, site: str | None) -> None:
    """Domains, URLs and work emails give a website; free mail and junk give none."""
    assert website_from(value) == site


def test_website_builtin_uses_the_first_filled_column() -> None:
    """The built-in reads the first of its columns that has a value."""
    provider = WEBSITE.create(["name", "email", "domain"])
    inputs = provider.input_values({"name": "x", "email": "a@b.io", "domain": ""})
    answer = anyio.run(provider.fetch, inputs)
    assert (answer.outcome, answer.values) == (Outcome.OK, {"website": "https://b.io"})
    assert WEBSITE.create(["name"]) is None


def test_simulated_values_are_deterministic() -> None:
    """The same inputs always give the same value; other inputs give another."""
    a = simulated_value("industry", {"domain": "a.example"})
    assert a == simulated_value("industry", {"domain": "a.example"})
    assert {simulated_value("industry", {"domain": f"{i}.example"}) for i in range(20)} != {a}
