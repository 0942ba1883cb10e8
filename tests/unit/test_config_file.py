"""glaze.toml through the public loader: typed values, rates, durations, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from glaze_cli.config import Config, FieldConfig, Limits, Rate, load_config, parse_duration, parse_rate
from glaze_cli.errors import ConfigError
from glaze_cli.providers import build_provider

DAY = 86400.0

# The spec's example config, word for word apart from comments.
SPEC_EXAMPLE = """
[sheet]
key = "domain"

[defaults]
concurrency = 10
rate = "20/s"
timeout = "15s"
retries = 3
cache_ttl = "7d"

[providers.acme]
type = "http"
method = "GET"
url = "https://api.acme.test/v1/company?domain={domain}"
params = { name = "{name}" }
headers = { Authorization = "Bearer ${ACME_KEY}" }
body = { domain = "{domain}" }
outputs = { industry = "company.industry", website = "company.website" }
confidence = "score"
cost = 0.02
not_found = [404]

[providers.directory]
type = "lookup"
path = "company_directory.csv"
match = { domain = "domain" }
outputs = { industry = "industry", employee_count = "employees" }

[providers.llm]
type = "openai"
base_url = "http://127.0.0.1:11434/v1"
model = "llama3.1"
api_key = "${OPENAI_API_KEY}"
prompt = "Company {name}, website {domain}."
outputs = { industry = "string", founded_year = "integer" }

[providers.sim]
type = "simulated"
inputs = ["domain"]
latency = "50ms"
jitter = "10ms"
error_rate = 0.0
outputs = ["industry", "website", "employee_count"]

[fields.industry]
providers = ["directory", "acme", "llm"]
min_confidence = 0.5
"""

ACME = """
[providers.acme]
type = "http"
url = "https://api.acme.test/v1/company?domain={domain}"
headers = { Authorization = "Bearer ${ACME_KEY}" }
outputs = { industry = "company.industry" }
"""


def write_config(tmp_path: Path, text: str) -> Path:
    """Write `text` as tmp_path/glaze.toml and return its path."""
    path = tmp_path / "glaze.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(path: Path) -> ConfigError:
    """The ConfigError that loading `path` raises."""
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return caught.value


def test_spec_example_loads_with_typed_values(tmp_path: Path) -> None:
    """The spec's example config loads; every provider inherits [defaults] as typed limits."""
    config = load_config(write_config(tmp_path, SPEC_EXAMPLE))
    inherited = Limits(concurrency=10, rate=Rate(20.0, 1.0), timeout=15.0, retries=3, cache_ttl=7 * DAY,
                       not_found_ttl=DAY)
    assert (config.source, config.base_dir, config.sheet_key, config.defaults) == (
        str(tmp_path / "glaze.toml"), tmp_path.resolve(), "domain", inherited)
    assert {name: (p.type, p.limits, p.cost, p.outputs) for name, p in config.providers.items()} == {
        "acme": ("http", inherited, 0.02, ("industry", "website")),
        "directory": ("lookup", inherited, 0.0, ("industry", "employee_count")),
        "llm": ("openai", inherited, 0.0, ("industry", "founded_year")),
        "sim": ("simulated", inherited, 0.0, ("industry", "website", "employee_count")),
    }
    assert config.fields == {"industry": FieldConfig(("directory", "acme", "llm"), 0.5)}


def test_spec_example_keeps_env_references_unresolved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading does not need the ${VAR}s: they are resolved when a provider is built, so secrets stay out of it."""
    monkeypatch.delenv("ACME_KEY", raising=False)
    config = load_config(write_config(tmp_path, SPEC_EXAMPLE))
    assert config.providers["acme"].options["headers"] == {"Authorization": "Bearer ${ACME_KEY}"}


def test_provider_limits_override_defaults(tmp_path: Path) -> None:
    """A provider's own limits win over [defaults]; the ones it does not set are inherited."""
    text = ('[defaults]\nconcurrency = 5\nrate = "1200/min"\nretries = 1\n'
            + ACME + 'concurrency = 2\nrate = "5000/h"\ntimeout = "2s"\ncache_ttl = "0"\n')
    config = load_config(write_config(tmp_path, text))
    assert config.providers["acme"].limits == Limits(concurrency=2, rate=Rate(5000.0, 3600.0), timeout=2.0,
                                                     retries=1, cache_ttl=0.0, not_found_ttl=DAY)


def test_no_config_file_is_the_empty_config() -> None:
    """No glaze.toml at all gives a config with no providers and no fields."""
    assert load_config(None) == Config()


def test_unknown_key_is_named_with_a_suggestion(tmp_path: Path) -> None:
    """A typo in a provider key is a ConfigError naming providers.acme.urll and suggesting url."""
    path = write_config(tmp_path, ACME.replace("url =", "urll ="))
    error = config_error(path)
    assert (error.exit_code, error.message) == (
        2, f"config {path}: providers.acme.urll: unknown key; did you mean 'url'?")


def test_unknown_top_level_section_is_named(tmp_path: Path) -> None:
    """A misspelt section is a ConfigError naming it and suggesting the real one."""
    path = write_config(tmp_path, '[sheeet]\nkey = "domain"\n')
    assert config_error(path).message == f"config {path}: sheeet: unknown key; did you mean 'sheet'?"


def test_missing_env_var_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset ${VAR} is a ConfigError (exit 2) naming the key that uses it and the variable to export."""
    monkeypatch.delenv("ACME_KEY", raising=False)
    path = write_config(tmp_path, ACME)
    config = load_config(path)
    with pytest.raises(ConfigError) as caught:
        build_provider(config.providers["acme"], config.source, config.base_dir)
    assert caught.value.exit_code == 2
    assert caught.value.message.startswith(f"config {path}: providers.acme.headers.Authorization: ")
    assert "export ACME_KEY" in caught.value.message


@pytest.mark.parametrize(("line", "key"), [
    pytest.param('retries = "two"', "providers.acme.retries", id="text for an integer"),
    pytest.param('cost = "cheap"', "providers.acme.cost", id="text for a number"),
    pytest.param("params = { page = 1 }", "providers.acme.params.page", id="integer for a text value"),
    pytest.param('not_found = "404"', "providers.acme.not_found", id="text for a list"),
    pytest.param("concurrency = 0", "providers.acme.concurrency", id="out of range"),
])
def test_wrong_type_names_the_key(tmp_path: Path, line: str, key: str) -> None:
    """A value of the wrong type or range is a ConfigError whose message starts with the file and key."""
    path = write_config(tmp_path, ACME + line + "\n")
    error = config_error(path)
    assert (error.exit_code, error.message.startswith(f"config {path}: {key}: ")) == (2, True), error.message


@pytest.mark.parametrize(("line", "key"), [
    pytest.param("retries = true", "providers.acme.retries", id="retries"),
    pytest.param('retries = "2"', "providers.acme.retries", id="quoted retries"),
    pytest.param("concurrency = 2.5", "providers.acme.concurrency", id="fractional concurrency"),
    pytest.param("cost = true", "providers.acme.cost", id="cost"),
    pytest.param("timeout = true", "providers.acme.timeout", id="timeout"),
])
def test_boolean_or_text_for_a_number_is_a_wrong_type(tmp_path: Path, line: str, key: str) -> None:
    """A TOML boolean or quoted number where a number belongs is a wrong type, not a value glaze converts."""
    path = write_config(tmp_path, ACME + line + "\n")
    message = config_error(path).message
    assert message.startswith(f"config {path}: {key}: "), message


def test_bad_rate_names_the_key_and_the_forms(tmp_path: Path) -> None:
    """`rate = "20 per s"` is a ConfigError naming the key and showing how to write a rate."""
    path = write_config(tmp_path, ACME + 'rate = "20 per s"\n')
    assert config_error(path).message == (
        f"config {path}: providers.acme.rate: '20 per s' is not a rate; write it as 20/s, 1200/min or 5000/h")


@pytest.mark.parametrize(("section", "line", "key"), [
    pytest.param("[defaults]\n", 'timeout = "soon"', "defaults.timeout", id="defaults.timeout"),
    pytest.param("[defaults]\n", 'cache_ttl = "1 week"', "defaults.cache_ttl", id="defaults.cache_ttl"),
    pytest.param(ACME, 'timeout = "-5s"', "providers.acme.timeout", id="providers.acme.timeout"),
])
def test_bad_duration_names_the_key(tmp_path: Path, section: str, line: str, key: str) -> None:
    """A duration that does not parse is a ConfigError naming the key and showing how to write one."""
    path = write_config(tmp_path, section + line + "\n")
    message = config_error(path).message
    assert message.startswith(f"config {path}: {key}: ") and "write it like 50ms, 15s, 30m, 2h or 7d" in message


def test_unknown_provider_type_names_the_key(tmp_path: Path) -> None:
    """A provider type glaze does not know is a ConfigError naming providers.NAME.type."""
    path = write_config(tmp_path, ACME.replace('type = "http"', 'type = "magic"'))
    assert config_error(path).message.startswith(f"config {path}: providers.acme.type: must be one of ")


def test_missing_required_key_is_named(tmp_path: Path) -> None:
    """An http provider without url is a ConfigError naming providers.acme.url."""
    path = write_config(tmp_path, "\n".join(line for line in ACME.splitlines() if not line.startswith("url")))
    assert config_error(path).message == f"config {path}: providers.acme.url: required key is missing"


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is a ConfigError naming the file."""
    path = write_config(tmp_path, "[sheet\nkey = 1\n")
    assert config_error(path).message.startswith(f"config {path}: not valid TOML: ")


@pytest.mark.parametrize(("text", "rate"), [
    ("20/s", Rate(20.0, 1.0)),
    ("1200/min", Rate(1200.0, 60.0)),
    ("5000/h", Rate(5000.0, 3600.0)),
    ("0.5/s", Rate(0.5, 1.0)),
    (" 30 / min ", Rate(30.0, 60.0)),
])
def test_parse_rate(text: str, rate: Rate) -> None:
    """Rates per second, minute and hour parse to a count per period."""
    assert parse_rate(text) == rate


@pytest.mark.parametrize(("text", "per_second", "shown"), [
    ("20/s", 20.0, "20/s"), ("1200/min", 20.0, "1200/min"), ("3600/h", 1.0, "3600/h"),
])
def test_rate_per_second_and_text(text: str, per_second: float, shown: str) -> None:
    """A rate converts to requests per second and prints back in the user's unit."""
    rate = parse_rate(text)
    assert (rate.per_second, str(rate)) == (per_second, shown)


@pytest.mark.parametrize("text", ["20 per s", "20", "/s", "0/s", "-1/s", "20/day", ""])
def test_parse_rate_rejects(text: str) -> None:
    """Anything but a positive N/s, N/min or N/h is refused with the forms to use."""
    with pytest.raises(ValueError, match="write it as 20/s, 1200/min or 5000/h"):
        parse_rate(text)


@pytest.mark.parametrize(("text", "seconds"), [
    ("50ms", 0.05), ("15s", 15.0), ("30m", 1800.0), ("2h", 7200.0), ("7d", 604800.0), ("90", 90.0), ("0", 0.0),
    (90, 90.0), (1.5, 1.5),
])
def test_parse_duration(text: str | float, seconds: float) -> None:
    """Durations in ms, s, m, h and d (or bare seconds) parse to seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "-5s", "5 weeks", "15 s s", "", -1])
def test_parse_duration_rejects(text: str | int) -> None:
    """Text that is not a duration, and negative durations, are refused."""
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
