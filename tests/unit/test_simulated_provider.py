"""The simulated provider: deterministic values from the inputs, built from glaze.toml by the public factory."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from glaze_cli.config import load_config
from glaze_cli.errors import ConfigError, TransientProviderError
from glaze_cli.models import Answer, Outcome
from glaze_cli.providers import build_provider
from glaze_cli.providers.base import Provider
from glaze_cli.providers.simulated import simulated_value

INDUSTRIES = {"Software", "Retail", "Banking", "Manufacturing", "Healthcare", "Logistics", "Media", "Energy"}
DOMAINS = [f"company{i}.example" for i in range(50)]


def simulated(tmp_path: Path, extra: str = "", inputs: str = '["domain"]') -> Provider:
    """A `sim` provider (no latency unless `extra` sets one) built from a glaze.toml in tmp_path."""
    path = tmp_path / "glaze.toml"
    path.write_text(f'[providers.sim]\ntype = "simulated"\ninputs = {inputs}\n'
                    f'outputs = ["industry", "website", "employee_count", "revenue"]\n{extra}', encoding="utf-8")
    config = load_config(path)
    return build_provider(config.providers["sim"], config.source, config.base_dir)


def test_same_inputs_give_the_same_answer(tmp_path: Path) -> None:
    """Two providers built from the same config answer the same inputs identically."""
    first = anyio.run(simulated(tmp_path).fetch, {"domain": "acme.io"})
    second = anyio.run(simulated(tmp_path).fetch, {"domain": "acme.io"})
    assert (first.outcome, first.http_status, first == second) == (Outcome.OK, 200, True)


def test_answer_values_by_field(tmp_path: Path) -> None:
    """Each output field gets a value of its kind: an industry, the https site, a head count, a tagged token."""
    answer = anyio.run(simulated(tmp_path).fetch, {"domain": "Acme.io"})
    values = answer.values
    assert (sorted(values), values["industry"] in INDUSTRIES, values["website"],
            10 <= int(values["employee_count"]) < 50_010, values["revenue"].startswith("revenue-")) == (
        ["employee_count", "industry", "revenue", "website"], True, "https://acme.io", True, True)


def test_different_inputs_give_different_values() -> None:
    """Different inputs give different values: all distinct for free-form fields, several industries."""
    revenues = {simulated_value("revenue", {"domain": d}) for d in DOMAINS}
    industries = {simulated_value("industry", {"domain": d}) for d in DOMAINS}
    assert (len(revenues), len(industries) > 1, industries <= INDUSTRIES) == (len(DOMAINS), True, True)


def test_value_ignores_input_order() -> None:
    """The value depends on the inputs, not on the order they are passed in."""
    assert simulated_value("revenue", {"domain": "acme.io", "name": "Acme"}) == simulated_value(
        "revenue", {"name": "Acme", "domain": "acme.io"})


def test_value_depends_on_the_field() -> None:
    """Two free-form fields of the same inputs get different values."""
    assert simulated_value("revenue", {"domain": "acme.io"}) != simulated_value("founded", {"domain": "acme.io"})


def test_inputs_and_outputs_come_from_the_config(tmp_path: Path) -> None:
    """The provider reads the configured input columns and fills the configured outputs."""
    provider = simulated(tmp_path, inputs='["domain", "name"]')
    assert (provider.inputs, provider.outputs) == (
        ("domain", "name"), ("industry", "website", "employee_count", "revenue"))


def test_not_found_rate_one_gives_no_data(tmp_path: Path) -> None:
    """With not_found_rate = 1 every input is a not-found answer."""
    provider = simulated(tmp_path, "not_found_rate = 1.0\n")
    assert anyio.run(provider.fetch, {"domain": "acme.io"}) == Answer(Outcome.NOT_FOUND, http_status=404)


def test_error_rate_one_always_fails_transiently(tmp_path: Path) -> None:
    """With error_rate = 1 every call raises a retryable provider error."""
    provider = simulated(tmp_path, "error_rate = 1.0\n")
    with pytest.raises(TransientProviderError) as caught:
        anyio.run(provider.fetch, {"domain": "acme.io"})
    assert (caught.value.message, caught.value.http_status) == ("simulated error", 503)


def test_bad_latency_names_the_key(tmp_path: Path) -> None:
    """A latency that is not a duration is a ConfigError (exit 2) naming providers.sim.latency."""
    with pytest.raises(ConfigError) as caught:
        simulated(tmp_path, 'latency = "soon"\n')
    assert (caught.value.exit_code, caught.value.message.startswith(
        f"config {tmp_path / 'glaze.toml'}: providers.sim.latency")) == (2, True), caught.value.message


def test_bad_jitter_names_the_key(tmp_path: Path) -> None:
    """A jitter that is not a duration is a ConfigError naming providers.sim.jitter."""
    with pytest.raises(ConfigError) as caught:
        simulated(tmp_path, 'jitter = "soon"\n')
    assert caught.value.message.startswith(f"config {tmp_path / 'glaze.toml'}: providers.sim.jitter: ")
