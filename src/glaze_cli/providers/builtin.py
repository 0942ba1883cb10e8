"""Built-in providers that need no config and no network."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from glaze_cli.config import Limits
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import BuiltinSpec, Provider, first_filled, matching_columns

# Sheet columns the website built-in reads, best first (matched case-insensitively).
WEBSITE_SOURCES = ("domain", "website", "url", "homepage", "site", "company_domain", "web", "email",
                   "work_email", "email_address", "e-mail")
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com",
    "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de",
    "mail.ru", "yandex.ru", "qq.com", "163.com", "126.com", "zoho.com",
})
# Local computations: no rate, no retries, no cache (recomputing is cheaper than a cache lookup).
BUILTIN_LIMITS = Limits(concurrency=1000, retries=0, cache_ttl=0)
_HOST = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


def website_from(value: str) -> str | None:
    """`https://host` from a domain, a URL or an email address; None when it is not a usable host."""
    text = value.strip().lower()
    # An email only when it is not a URL: "https://medium.com/@acme" is medium.com's site.
    if "@" in text and "/" not in text:
        text = text.rsplit("@", 1)[1]
        if text in FREE_MAIL:
            return None
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return None
    host = host.rstrip(".")
    return f"https://{host}" if _HOST.match(host) else None


class WebsiteProvider(Provider):
    """`website` from the first domain, URL or email column with a value."""

    type = "builtin"
    cached = False

    def __init__(self, columns: Sequence[str]) -> None:
        super().__init__("builtin.website", inputs=matching_columns(columns, WEBSITE_SOURCES), outputs=["website"],
                         limits=BUILTIN_LIMITS, settings="v1")

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        """The first source column that has a value."""
        return first_filled(self.inputs, row)

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Normalise the value; a free-mail address or a non-host gives no value."""
        site = website_from(next(iter(inputs.values())))
        return Answer(Outcome.OK, {"website": site}) if site else Answer(Outcome.NOT_FOUND)


def _website(columns: Sequence[str]) -> Provider | None:
    provider = WebsiteProvider(columns)
    return provider if provider.inputs else None


WEBSITE = BuiltinSpec("builtin.website", ("website",),
                      "a domain, URL or email column (" + ", ".join(WEBSITE_SOURCES[:4]) + ", email)", _website)
