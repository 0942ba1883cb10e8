"""The built-in website provider: a normalised https URL from a domain, URL or work email column."""

from __future__ import annotations

import anyio
import pytest

from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.builtin import WebsiteProvider, website_from


@pytest.mark.parametrize(("value", "site"), [
    pytest.param("example.com", "https://example.com", id="domain"),
    pytest.param("  Example.COM  ", "https://example.com", id="domain with case and spaces"),
    pytest.param("example.com.", "https://example.com", id="domain with trailing dot"),
    pytest.param("shop.example.co.uk", "https://shop.example.co.uk", id="subdomain"),
    pytest.param("https://www.Example.com/path", "https://www.example.com", id="url with www and path"),
    pytest.param("http://example.com:8080/a?b=c#d", "https://example.com", id="http url with port and query"),
    pytest.param("www.example.com/about", "https://www.example.com", id="url without scheme"),
    pytest.param("jane@Acme.io", "https://acme.io", id="work email"),
    pytest.param("mailto:jane@acme.io", "https://acme.io", id="mailto link"),
])
def test_website_from_usable_values(value: str, site: str) -> None:
    """Domains, URLs and work emails give https://HOST, lower-cased, without path, port or query."""
    assert website_from(value) == site


@pytest.mark.parametrize("value", [
    pytest.param("bob@gmail.com", id="gmail"),
    pytest.param("Bob@GMAIL.COM", id="gmail upper-case"),
    pytest.param("anna@outlook.com", id="outlook"),
    pytest.param("max@web.de", id="web.de"),
    pytest.param("li@qq.com", id="qq"),
])
def test_website_from_free_mail_gives_none(value: str) -> None:
    """A free-mail address says nothing about the company, so it gives no website."""
    assert website_from(value) is None


@pytest.mark.parametrize("value", [
    pytest.param("", id="empty"),
    pytest.param("not a domain", id="words"),
    pytest.param("localhost", id="no dot"),
    pytest.param("192.168.0.1", id="ip address"),
    pytest.param("n/a", id="placeholder text"),
    pytest.param("-acme.io", id="leading hyphen"),
])
def test_website_from_junk_gives_none(value: str) -> None:
    """Values that are not a host name give no website."""
    assert website_from(value) is None


@pytest.mark.parametrize(("value", "site"), [
    pytest.param("https://acme.io/contact?email=sales@partner.com", "https://acme.io", id="email in query"),
    pytest.param("https://medium.com/@acme", "https://medium.com", id="handle in path"),
])
def test_website_from_url_containing_at_sign(value: str, site: str) -> None:
    """A URL whose path or query holds an @ gives the URL's own host."""
    assert website_from(value) == site


def test_inputs_are_matching_columns_in_preference_order() -> None:
    """The provider reads the sheet's domain, URL and email columns (any case), domain first, others ignored."""
    provider = WebsiteProvider(["Name", "Work_Email", "URL", "Domain", "phone"])
    assert (provider.inputs, provider.outputs) == (("Domain", "URL", "Work_Email"), ("website",))


def test_sheet_without_such_columns_gives_no_inputs() -> None:
    """A sheet with no domain, URL or email column gives the provider nothing to read."""
    assert WebsiteProvider(["name", "city"]).inputs == ()


def test_input_values_are_the_first_filled_column() -> None:
    """Blank and missing cells are skipped; the first column with a value is the one used."""
    provider = WebsiteProvider(["email", "website", "domain"])
    row = {"domain": "  ", "website": None, "email": "jane@acme.io"}
    assert provider.input_values(row) == {"email": "jane@acme.io"}


def test_input_values_none_when_every_column_is_empty() -> None:
    """A row with no value in any source column has nothing to ask."""
    provider = WebsiteProvider(["email", "domain"])
    assert provider.input_values({"domain": "", "email": None}) is None


@pytest.mark.parametrize(("inputs", "answer"), [
    pytest.param({"domain": "Acme.io"}, Answer(Outcome.OK, {"website": "https://acme.io"}), id="domain"),
    pytest.param({"email": "bob@gmail.com"}, Answer(Outcome.NOT_FOUND), id="free mail"),
    pytest.param({"domain": "n/a"}, Answer(Outcome.NOT_FOUND), id="junk"),
])
def test_fetch_answers(inputs: dict[str, str], answer: Answer) -> None:
    """fetch answers with the website, or not-found when the value gives none."""
    provider = WebsiteProvider(["domain", "email"])
    assert anyio.run(provider.fetch, inputs) == answer
