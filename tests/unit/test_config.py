"""glaze.toml: typed values, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from glaze_cli.config import Rate, load_config, parse_duration, parse_rate
from glaze_cli.errors import ConfigError

VALID = """
[sheet]
key = "domain"

[defaults]
concurrency = 5
rate = "20/s"
timeout = "15s"
retries = 2
cache_ttl = "7d"

[providers.acme]
type = "http"
url = "https://api.acme.test/v1/company?domain={domain}"
headers = { Authorization = "Bearer ${ACME_KEY}" }
outputs = { industry = "company.industry" }
cost = 0.02
concurrency = 3

[providers.sim]
type = "simulated"
inputs = ["domain"]
outputs = ["industry", "website"]

[fields.industry]
providers = ["acme", "sim"]
min_confidence = 0.5
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "glaze.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_config_is_typed(tmp_path: Path) -> None:
    """Limits are inherited from [defaults] unless a provider sets its own."""
    config = load_config(write(tmp_path, VALID))
    acme, sim = config.providers["acme"], config.providers["sim"]
    assert config.sheet_key == "domain"
    assert (acme.limits.concurrency, acme.limits.rate, acme.limits.timeout, acme.limits.retries) == (
        3, Rate(20, 1), 15.0, 2)
    assert (sim.limits.concurrency, sim.limits.cache_ttl, acme.cost, sim.outputs) == (
        5, 7 * 86400.0, 0.02, ("industry", "website"))
    assert (config.fields["industry"].providers, config.fields["industry"].min_confidence) == (("acme", "sim"), 0.5)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace('url = "https', 'urll = "https'), "providers.acme.urll: unknown key; did you mean 'url'?"),
    (lambda t: t.replace("retries = 2", 'retries = "two"'), "defaults.retries"),
    (lambda t: t.replace('rate = "20/s"', 'rate = "20 per s"'), "defaults.rate: '20 per s' is not a rate"),
    (lambda t: t.replace('timeout = "15s"', 'timeout = "soon"'), "defaults.timeout: 'soon' is not a duration"),
    (lambda t: t.replace('type = "simulated"', 'type = "magic"'), "providers.sim.type: must be one of"),
    (lambda t: t + "\n[fields.industry.extra]\n", "fields.industry.extra"),
    (lambda t: t.replace("[sheet]", "[sheet"), "not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path: Path, edit, message: str) -> None:
    """Each broken config is a ConfigError (exit 2) whose message names the file and key."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, edit(VALID)))
    assert message in caught.value.message
    assert str(tmp_path / "glaze.toml") in caught.value.message
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(("text", "seconds"), [("50ms", 0.05), ("15s", 15.0), ("30m", 1800.0), ("2h", 7200.0),
                                               ("7d", 604800.0), ("0", 0.0), (90, 90.0)])
def test_parse_duration(text: str | int, seconds: float) -> None:
    """Durations in ms, s, m, h, d, or bare seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(("text", "per_second"), [("20/s", 20.0), ("1200/min", 20.0), ("3600/h", 1.0)])
def test_parse_rate(text: str, per_second: float) -> None:
    """Rates per second, minute and hour."""
    assert parse_rate(text).per_second == pytest.approx(per_second)
