"""Built-in providers that need no config and no network."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from glaze_cli.config import Limits
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers.base import Provider

# Sheet columns the website built-in reads, best first (matched case-insensitively).
WEBSITE_SOURCES = ("domain", "website", "url", "homepage", "site", "company_domain", "web", "email",
                   "work_email", "email_address", "e-mail")
FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "hotmail.com", "outlook.com", "live.com", "msn.com",
    "icloud.com", "me.com", "aol.com", "proton.me", "protonmail.com", "gmx.de", "gmx.net", "web.de",
    "mail.ru", "yandex.ru", "qq.com", "163.com", "126.com", "zoho.com",
})
_HOST = re.compile(r"^(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,62}$")


def website_from(value: str) -> str | None:
    """`https://host` from a domain, a URL or an email address; None when it is not a usable host."""
    text = value.strip().lower()
    if "@" in text:
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
        lowered = {c.lower(): c for c in columns}
        sources = [lowered[name] for name in WEBSITE_SOURCES if name in lowered]
        super().__init__("builtin.website", inputs=sources, outputs=["website"],
                         limits=Limits(concurrency=1000, retries=0, cache_ttl=0), settings="v1")

    def input_values(self, row: Mapping[str, str | None]) -> dict[str, str] | None:
        """The first source column that has a value."""
        for column in self.inputs:
            value = row.get(column)
            if value and value.strip():
                return {column: value}
        return None

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Normalise the value; a free-mail address or a non-host gives no value."""
        site = website_from(next(iter(inputs.values())))
        return Answer(Outcome.OK, {"website": site}) if site else Answer(Outcome.NOT_FOUND)


BUILTIN_OUTPUTS = {"builtin.website": ("website",)}
BUILTIN_INPUT_HINTS = {
    "builtin.website": "a domain, URL or email column (" + ", ".join(WEBSITE_SOURCES[:4]) + ", email)",
}


def builtin_providers(columns: Sequence[str]) -> dict[str, Provider]:
    """The built-ins usable with these sheet columns."""
    website = WebsiteProvider(columns)
    return {website.name: website} if website.inputs else {}
