"""The offline built-ins: domain, phone, person-name and company-name facts computed from the row alone."""

from __future__ import annotations

import socket
from typing import Any, NoReturn

import anyio
import pytest

from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.builtin import WEBSITE
from glaze_cli.providers.offline import (
    OFFLINE_BUILTINS,
    CompanyNameProvider,
    DomainProvider,
    PersonNameProvider,
    PhoneProvider,
    domain_extractor,
    region_from,
)


def ok(**values: str | None) -> Answer:
    return Answer(Outcome.OK, values)


NO_MAIL = {"email_domain": None, "free_mail": None, "disposable_mail": None}
NOT_FOUND = Answer(Outcome.NOT_FOUND)


def fetch(provider: Any, inputs: dict[str, str]) -> Answer:
    return anyio.run(provider.fetch, inputs)


def test_specs_names_and_outputs() -> None:
    """OFFLINE_BUILTINS offers four built-ins, each with the outputs its provider declares."""
    columns = ["domain", "phone", "full_name", "company"]
    assert [(spec.name, spec.outputs, spec.create(columns).outputs) for spec in OFFLINE_BUILTINS] == [
        ("builtin.domain", ("registered_domain", "email_domain", "free_mail", "disposable_mail"),
         ("registered_domain", "email_domain", "free_mail", "disposable_mail")),
        ("builtin.phone", ("phone_e164", "phone_country", "phone_carrier", "phone_timezone", "phone_line_type"),
         ("phone_e164", "phone_country", "phone_carrier", "phone_timezone", "phone_line_type")),
        ("builtin.person_name", ("first_name", "last_name", "name_title"), ("first_name", "last_name", "name_title")),
        ("builtin.company_name", ("company_clean_name", "legal_form"), ("company_clean_name", "legal_form")),
    ]


def test_spec_outputs_do_not_collide() -> None:
    """No field is offered by two built-ins, builtin.website included."""
    outputs = [field for spec in (WEBSITE, *OFFLINE_BUILTINS) for field in spec.outputs]
    assert len(outputs) == len(set(outputs))


def test_specs_create_nothing_for_a_sheet_without_their_columns() -> None:
    """A sheet with none of a built-in's columns gets no provider from it (a country column alone included)."""
    assert [spec.create(["city", "country", "revenue"]) for spec in OFFLINE_BUILTINS] == [None, None, None, None]


def test_providers_are_uncached_builtins() -> None:
    """Every offline provider is a local, uncached built-in."""
    providers = [spec.create(["email", "mobile", "contact", "organization"]) for spec in OFFLINE_BUILTINS]
    assert [(p.name, p.type, p.cached) for p in providers] == [
        ("builtin.domain", "builtin", False), ("builtin.phone", "builtin", False),
        ("builtin.person_name", "builtin", False), ("builtin.company_name", "builtin", False),
    ]


def test_domain_inputs_are_website_columns_in_preference_order() -> None:
    """builtin.domain reads the website built-in's columns (any case), domain first."""
    assert DomainProvider(["Email", "phone", "URL", "Domain"]).inputs == ("Domain", "URL", "Email")


def test_domain_of_url() -> None:
    """A URL gives the domain under its public suffix, and no email facts."""
    answer = fetch(DomainProvider(["website"]), {"website": "https://www.bbc.co.uk/news"})
    assert answer == ok(registered_domain="bbc.co.uk", **NO_MAIL)


def test_domain_of_work_email_on_subdomain() -> None:
    """A work email gives its domain as written and the registered domain above it."""
    answer = fetch(DomainProvider(["email"]), {"email": "jane@mail.example.co.uk"})
    assert answer == ok(registered_domain="example.co.uk", email_domain="mail.example.co.uk", free_mail="false",
                        disposable_mail="false")


def test_domain_of_free_mail() -> None:
    """A free-mail address is flagged free_mail (and still has its domains)."""
    answer = fetch(DomainProvider(["email"]), {"email": "Bob@GMail.com"})
    assert answer == ok(registered_domain="gmail.com", email_domain="gmail.com", free_mail="true",
                        disposable_mail="false")


def test_domain_of_disposable_mail() -> None:
    """An address at a throwaway-mailbox service is flagged disposable_mail."""
    answer = fetch(DomainProvider(["email"]), {"email": "test123@mailinator.com"})
    assert answer == ok(registered_domain="mailinator.com", email_domain="mailinator.com", free_mail="false",
                        disposable_mail="true")


@pytest.mark.parametrize("value", [
    pytest.param("n/a", id="placeholder text"),
    pytest.param("localhost", id="no public suffix"),
    pytest.param("192.168.0.1", id="ip address"),
    pytest.param("acme widgets.com", id="space in host"),
    pytest.param("jane@", id="email without domain"),
])
def test_domain_of_junk_is_not_found(value: str) -> None:
    """Values without a registrable domain give not-found."""
    assert fetch(DomainProvider(["domain"]), {"domain": value}) == NOT_FOUND


def test_domain_extractor_makes_no_network_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the suffix extractor and using it opens no connection and resolves no host name."""
    attempts: list[tuple[Any, ...]] = []

    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        attempts.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    extractor = domain_extractor.__wrapped__()  # a fresh one, not the one earlier tests built
    assert (extractor("https://forums.bbc.co.uk").top_domain_under_public_suffix, attempts) == ("bbc.co.uk", [])


def test_domain_extractor_is_built_once() -> None:
    """Every call shares one extractor, so the suffix list is parsed once per process."""
    assert domain_extractor() is domain_extractor()


def test_phone_inputs_are_phone_then_country_columns() -> None:
    """builtin.phone reads the phone columns (any case), then the country columns."""
    provider = PhoneProvider(["HQ_Country", "Mobile", "name", "Phone", "country"])
    assert provider.inputs == ("Phone", "Mobile", "country", "HQ_Country")


def test_phone_input_values_are_first_phone_and_first_country() -> None:
    """The first filled phone column and the first filled country column are what the provider reads."""
    provider = PhoneProvider(["phone", "mobile", "country", "hq_country"])
    row = {"phone": " ", "mobile": "020 7946 0958", "country": None, "hq_country": "GB"}
    assert provider.input_values(row) == {"mobile": "020 7946 0958", "hq_country": "GB"}


def test_phone_input_values_without_country() -> None:
    """A row with no country value gives the phone value alone."""
    provider = PhoneProvider(["phone", "country"])
    assert provider.input_values({"phone": "+49 30 901820", "country": ""}) == {"phone": "+49 30 901820"}


def test_phone_input_values_none_without_phone() -> None:
    """A row with a country but no phone number has nothing to ask."""
    provider = PhoneProvider(["phone", "country"])
    assert provider.input_values({"phone": None, "country": "DE"}) is None


def test_phone_german_landline() -> None:
    """An international German landline gives its E.164 form, region, zone and line type, and no carrier."""
    answer = fetch(PhoneProvider(["phone"]), {"phone": "+49 30 901820"})
    assert answer == ok(phone_e164="+4930901820", phone_country="DE", phone_carrier=None,
                        phone_timezone="Europe/Berlin", phone_line_type="fixed_line")


def test_phone_us_number() -> None:
    """A US number is fixed_line_or_mobile: the US numbering plan does not tell the two apart."""
    answer = fetch(PhoneProvider(["phone"]), {"phone": "+1 650-253-0000"})
    assert answer == ok(phone_e164="+16502530000", phone_country="US", phone_carrier=None,
                        phone_timezone="America/Los_Angeles", phone_line_type="fixed_line_or_mobile")


def test_phone_national_number_with_country_column() -> None:
    """A number without a leading + is read as dialled in the row's country."""
    answer = fetch(PhoneProvider(["phone", "country"]), {"phone": "020 7946 0958", "country": "GB"})
    assert answer == ok(phone_e164="+442079460958", phone_country="GB", phone_carrier=None,
                        phone_timezone="Europe/London", phone_line_type="fixed_line")


def test_phone_mobile_carrier() -> None:
    """A mobile number gives the carrier its prefix was allocated to."""
    answer = fetch(PhoneProvider(["mobile"]), {"mobile": "+49 1512 3456789"})
    assert answer == ok(phone_e164="+4915123456789", phone_country="DE", phone_carrier="T-Mobile",
                        phone_timezone="Europe/Berlin", phone_line_type="mobile")


def test_phone_spanning_time_zones_has_no_time_zone() -> None:
    """A US toll-free number belongs to no single time zone, so it gives none."""
    answer = fetch(PhoneProvider(["phone"]), {"phone": "+1 800 555 0199"})
    assert answer == ok(phone_e164="+18005550199", phone_country="US", phone_carrier=None, phone_timezone=None,
                        phone_line_type="toll_free")


def test_phone_national_number_without_country_is_not_found() -> None:
    """A number without a leading + and no country to read it in gives not-found."""
    assert fetch(PhoneProvider(["phone"]), {"phone": "020 7946 0958"}) == NOT_FOUND


@pytest.mark.parametrize("value", [
    pytest.param("+49 123", id="too short"),
    pytest.param("+1 555 0100", id="too short in the US"),
    pytest.param("call me", id="words"),
])
def test_phone_invalid_number_is_not_found(value: str) -> None:
    """A value that is not a valid number gives not-found."""
    assert fetch(PhoneProvider(["phone"]), {"phone": value}) == NOT_FOUND


@pytest.mark.parametrize(("country", "region"), [
    pytest.param("GB", "GB", id="region code"),
    pytest.param(" gb ", "GB", id="lower-case code with spaces"),
    pytest.param("United Kingdom", "GB", id="english name"),
    pytest.param("germany", "DE", id="lower-case english name"),
    pytest.param("UK", "GB", id="common non-ISO code"),
    pytest.param("+44", "GB", id="calling code"),
    pytest.param("Atlantis", None, id="unknown name"),
    pytest.param("999", None, id="unknown calling code"),
])
def test_region_from_country_cells(country: str, region: str | None) -> None:
    """Country cells hold region codes, calling codes or English names; others give no region."""
    assert region_from(country) == region


def test_person_name_sources_prefer_clear_columns() -> None:
    """builtin.person_name reads person columns in preference order and ignores `name` beside them."""
    assert PersonNameProvider(["name", "Contact", "full_name"]).inputs == ("full_name", "Contact")


def test_person_name_falls_back_to_name_column() -> None:
    """A sheet whose only name column is `name` has that column read."""
    assert PersonNameProvider(["Name", "email"]).inputs == ("Name",)


def test_person_name_with_title_middle_names_and_suffix() -> None:
    """A full name gives its first name, last name (particles kept) and title."""
    answer = fetch(PersonNameProvider(["full_name"]), {"full_name": "Dr. Juan Q. Xavier de la Vega III"})
    assert answer == ok(first_name="Juan", last_name="de la Vega", name_title="Dr.")


def test_person_name_last_name_first() -> None:
    """A "Last, First" name is read the right way round."""
    answer = fetch(PersonNameProvider(["contact"]), {"contact": "Lovelace, Ada"})
    assert answer == ok(first_name="Ada", last_name="Lovelace", name_title=None)


def test_person_name_single_word() -> None:
    """A single word is a first name, with no last name or title."""
    assert fetch(PersonNameProvider(["person"]), {"person": "Madonna"}) == ok(first_name="Madonna", last_name=None,
                                                                              name_title=None)


def test_person_name_email_is_not_found() -> None:
    """An email address in a contact column is no name."""
    assert fetch(PersonNameProvider(["contact"]), {"contact": "jane@acme.io"}) == NOT_FOUND


def test_company_name_sources_prefer_clear_columns() -> None:
    """builtin.company_name reads company columns in preference order and ignores `name` beside them."""
    assert CompanyNameProvider(["name", "Organisation", "company"]).inputs == ("company", "Organisation")


def test_company_name_falls_back_to_name_column() -> None:
    """A sheet whose only name column is `name` has that column read."""
    assert CompanyNameProvider(["name", "domain"]).inputs == ("name",)


@pytest.mark.parametrize(("company", "clean", "legal_form"), [
    pytest.param("Siemens AG", "Siemens", "AG", id="german AG"),
    pytest.param("Acme Widgets Ltd.", "Acme Widgets", "Ltd.", id="ltd with dot"),
    pytest.param("Nestlé S.A.", "Nestlé", "S.A.", id="dotted S.A. and an accent"),
    pytest.param("Acme, Inc.", "Acme", "Inc.", id="comma before the legal form"),
    pytest.param("Müller GmbH & Co. KG", "Müller", "GmbH & Co. KG", id="several words"),
    pytest.param("Apple", "Apple", None, id="no legal form"),
])
def test_company_name_and_legal_form(company: str, clean: str, legal_form: str | None) -> None:
    """The company name is split into its base name and its legal form as written."""
    answer = fetch(CompanyNameProvider(["company"]), {"company": company})
    assert answer == ok(company_clean_name=clean, legal_form=legal_form)


def test_company_name_of_punctuation_is_not_found() -> None:
    """A value with neither a name nor a legal form gives not-found."""
    assert fetch(CompanyNameProvider(["company"]), {"company": "--"}) == NOT_FOUND
