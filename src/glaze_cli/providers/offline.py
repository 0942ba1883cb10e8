"""Offline built-ins: domain, phone, person-name and company-name facts from the row alone, with no network.

The parsing libraries are imported on first use, not with this module: the provider registry imports it on
every run, and together they take about a third of a second to load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from typing import TYPE_CHECKING

from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import BuiltinSpec, Provider, as_text, first_filled, matching_columns
from glaze_cli.providers.builtin import BUILTIN_LIMITS, FREE_MAIL, WEBSITE_SOURCES

if TYPE_CHECKING:
    import tldextract

Facts = dict[str, str | None]

DOMAIN_OUTPUTS = ("registered_domain", "email_domain", "free_mail", "disposable_mail")
PHONE_OUTPUTS = ("phone_e164", "phone_country", "phone_carrier", "phone_timezone", "phone_line_type")
PERSON_NAME_OUTPUTS = ("first_name", "last_name", "name_title")
COMPANY_NAME_OUTPUTS = ("company_clean_name", "legal_form")

# Sheet columns each built-in reads, best first (matched case-insensitively).
PHONE_SOURCES = ("phone", "phone_number", "mobile", "mobile_phone", "telephone", "tel", "work_phone", "cell")
COUNTRY_SOURCES = ("country", "country_code", "hq_country")
PERSON_NAME_SOURCES = ("full_name", "person_name", "contact_name", "contact", "person")
COMPANY_NAME_SOURCES = ("company", "company_name", "organisation", "organization", "account")
# `name` holds a person in some sheets and a company in others: read it only when no clearer column exists.
AMBIGUOUS_NAME = ("name",)

# Country cells that are neither region codes nor the English names phonenumbers knows.
_REGION_ALIASES = {"uk": "GB", "usa": "US", "united states of america": "US"}
_DOMAIN = re.compile(r"[\w-]+(?:\.[\w-]+)+")
_EDGE_PUNCTUATION = re.compile(r"^\W+|[^\w.]+$")


@cache
def domain_extractor() -> tldextract.TLDExtract:
    """The one suffix extractor: tldextract's bundled Public Suffix List, never fetched and never cached on disk."""
    import tldextract

    extractor = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    extractor("example.com")  # the suffix list loads on the first call: pay for it here, once
    return extractor


def registered_domain(host: str) -> str | None:
    """The domain under its public suffix ("bbc.co.uk" for "https://www.bbc.co.uk/news"), or None."""
    domain = domain_extractor()(host).top_domain_under_public_suffix
    return domain if _DOMAIN.fullmatch(domain) else None


def domain_facts(value: str) -> Facts | None:
    """The registered domain of a domain, URL or email; for an email also its domain and kind of mailbox."""
    from disposable_email_domains import blocklist

    text = value.strip().lower()
    # An email only when it is not a URL: "https://medium.com/@acme" is medium.com's site.
    if "@" not in text or "/" in text:
        registered = registered_domain(text)
        if registered is None:
            return None
        return {"registered_domain": registered, "email_domain": None, "free_mail": None, "disposable_mail": None}
    host = text.rsplit("@", 1)[1].rstrip(".")
    registered = registered_domain(host) if _DOMAIN.fullmatch(host) else None
    if registered is None:
        return None
    return {"registered_domain": registered, "email_domain": host,
            "free_mail": as_text(host in FREE_MAIL or registered in FREE_MAIL),
            "disposable_mail": as_text(host in blocklist or registered in blocklist)}


@cache
def _regions_by_name() -> dict[str, str]:
    """Case-folded English country names to region codes, from phonenumbers' own locale data."""
    import phonenumbers
    from phonenumbers import geocoder  # ~0.3 s to load its data, so only once a country cell holds a name

    names = {}
    for region in phonenumbers.SUPPORTED_REGIONS:
        example = phonenumbers.example_number(region)
        name = geocoder.country_name_for_number(example, "en") if example else ""
        if name:
            names[name.casefold()] = region
    return names | _REGION_ALIASES


def region_from(country: str) -> str | None:
    """The region code in a country cell: a code ("de"), a calling code ("+49") or an English name ("Germany")."""
    import phonenumbers

    text = country.strip()
    if text.upper() in phonenumbers.SUPPORTED_REGIONS:
        return text.upper()
    digits = text.removeprefix("+")
    if digits.isdigit():
        region = phonenumbers.region_code_for_country_code(int(digits))
        return region if region in phonenumbers.SUPPORTED_REGIONS else None
    return _regions_by_name().get(text.casefold())


def phone_facts(number: str, region: str | None = None) -> Facts | None:
    """E.164 form, region, carrier, time zone and line type of a valid number; None when it is not one.

    `region` is where a number without a leading + is dialled from.
    """
    import phonenumbers
    from phonenumbers import PhoneNumberFormat, PhoneNumberType, carrier, timezone

    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    country = phonenumbers.region_code_for_number(parsed)
    zones = [zone for zone in timezone.time_zones_for_number(parsed) if zone != timezone.UNKNOWN_TIMEZONE]
    line_type = phonenumbers.number_type(parsed)
    line_name = None if line_type == PhoneNumberType.UNKNOWN else PhoneNumberType.to_string(line_type).lower()
    return {
        "phone_e164": phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        "phone_country": country if country in phonenumbers.SUPPORTED_REGIONS else None,  # not "001" (non-geographic)
        "phone_carrier": carrier.name_for_number(parsed, "en") or None,
        # A number spanning zones (US toll-free: 42 of them) has no time zone; its first would be a guess.
        "phone_timezone": zones[0] if len(zones) == 1 else None,
        "phone_line_type": line_name,
    }


def person_name_facts(value: str) -> Facts | None:
    """First name, last name and title of a person's full name; None when it holds none of them."""
    from nameparser import HumanName

    if "@" in value:  # a `contact` column holding an email address
        return None
    name = HumanName(value)
    facts = {"first_name": name.first or None, "last_name": name.last or None, "name_title": name.title or None}
    return facts if any(facts.values()) else None


def company_name_facts(value: str) -> Facts | None:
    """The company name without its legal form, and the legal form as written ("Ltd.", "GmbH & Co. KG")."""
    from cleanco import basename

    words = value.split()
    base = basename(" ".join(words))
    # cleanco strips whole trailing words, so the words past the base name's are the legal form as written.
    legal_form = _EDGE_PUNCTUATION.sub("", " ".join(words[len(base.split()):]))
    facts = {"company_clean_name": base or None, "legal_form": legal_form or None}
    return facts if any(facts.values()) else None


class OfflineProvider(Provider):
    """A built-in computed from the first filled source column alone."""

    type = "builtin"
    cached = False

    def __init__(self, name: str, inputs: Sequence[str], outputs: Sequence[str],
                 facts: Callable[[str], Facts | None]) -> None:
        super().__init__(name, inputs=inputs, outputs=outputs, limits=BUILTIN_LIMITS, settings="v1")
        self._facts = facts

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        """The first source column that has a value."""
        return first_filled(self.inputs, row)

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Every output (None when unknown), or not-found when the value gives none."""
        facts = self._facts(next(iter(inputs.values())))
        return Answer(Outcome.OK, facts) if facts else Answer(Outcome.NOT_FOUND)


def _sources(columns: Sequence[str], clear: Sequence[str]) -> list[str]:
    """The sheet's clear source columns, else its ambiguous `name` column."""
    return matching_columns(columns, clear) or matching_columns(columns, AMBIGUOUS_NAME)


class DomainProvider(OfflineProvider):
    """`registered_domain` from a domain, URL or email column, and for emails the mailbox's domain and kind."""

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__("builtin.domain", matching_columns(columns, WEBSITE_SOURCES), DOMAIN_OUTPUTS, domain_facts)

    async def start(self) -> None:
        """Load the public suffix list before the first row."""
        domain_extractor()


class PersonNameProvider(OfflineProvider):
    """First name, last name and title from a person's full name."""

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__("builtin.person_name", _sources(columns, PERSON_NAME_SOURCES), PERSON_NAME_OUTPUTS,
                         person_name_facts)


class CompanyNameProvider(OfflineProvider):
    """The company name without its legal form, and the legal form."""

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__("builtin.company_name", _sources(columns, COMPANY_NAME_SOURCES), COMPANY_NAME_OUTPUTS,
                         company_name_facts)


class PhoneProvider(Provider):
    """Phone facts from a phone column; a country column gives the region of numbers without a leading +."""

    type = "builtin"
    cached = False

    def __init__(self, columns: Sequence[str]) -> None:
        self.phone_columns = tuple(matching_columns(columns, PHONE_SOURCES))
        self.country_columns = tuple(matching_columns(columns, COUNTRY_SOURCES)) if self.phone_columns else ()
        super().__init__("builtin.phone", inputs=self.phone_columns + self.country_columns, outputs=PHONE_OUTPUTS,
                         limits=BUILTIN_LIMITS, settings="v1")

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        """The first phone column with a value, and the first country column with one if any."""
        phone = first_filled(self.phone_columns, row)
        return None if phone is None else phone | (first_filled(self.country_columns, row) or {})

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Every output (None when unknown), or not-found for a number that is not valid."""
        number = next(value for column, value in inputs.items() if column in self.phone_columns)
        country = next((value for column, value in inputs.items() if column in self.country_columns), None)
        facts = phone_facts(number, region_from(country) if country else None)
        return Answer(Outcome.OK, facts) if facts else Answer(Outcome.NOT_FOUND)


def _create(provider: Callable[[Sequence[str]], Provider]) -> Callable[[Sequence[str]], Provider | None]:
    """A BuiltinSpec's `create`: the provider, or None when the sheet has no column it reads."""
    def create(columns: Sequence[str]) -> Provider | None:
        built = provider(columns)
        return built if built.inputs else None

    return create


def _hint(what: str, sources: Sequence[str]) -> str:
    return f"{what} ({', '.join(sources)})"


DOMAIN = BuiltinSpec("builtin.domain", DOMAIN_OUTPUTS,
                     _hint("a domain, URL or email column", (*WEBSITE_SOURCES[:4], "email")), _create(DomainProvider))
PHONE = BuiltinSpec("builtin.phone", PHONE_OUTPUTS, _hint("a phone column", (*PHONE_SOURCES[:5], "...")),
                    _create(PhoneProvider))
PERSON_NAME = BuiltinSpec("builtin.person_name", PERSON_NAME_OUTPUTS,
                          _hint("a person's name column", PERSON_NAME_SOURCES + AMBIGUOUS_NAME),
                          _create(PersonNameProvider))
COMPANY_NAME = BuiltinSpec("builtin.company_name", COMPANY_NAME_OUTPUTS,
                           _hint("a company name column", COMPANY_NAME_SOURCES + AMBIGUOUS_NAME),
                           _create(CompanyNameProvider))
OFFLINE_BUILTINS: tuple[BuiltinSpec, ...] = (DOMAIN, PHONE, PERSON_NAME, COMPANY_NAME)
