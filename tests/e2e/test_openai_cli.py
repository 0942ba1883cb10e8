"""The openai provider through the CLI, against a fake OpenAI-compatible server on loopback."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.openai_server import OpenAIServer

CONFIG = """
[providers.llm]
type = "openai"
base_url = "{base}"
model = "test-model"
api_key = "${{LLM_KEY}}"
prompt = "Company {{name}}, website {{domain}}. What is its industry and founding year?"
outputs = {{ industry = "string", founded_year = "integer" }}
cost_per_1k_tokens = 0.002
concurrency = 4
"""
KEY = "sk-llm-0b5e7a4d"


def setup(tmp_path: Path, base: str) -> None:
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=base))
    (tmp_path / "s.csv").write_text("name,domain\nStripe,stripe.com\nSiemens,siemens.com\nNobody,nobody.example\n"
                                    "Stripe,stripe.com\n")


def test_llm_fills_typed_fields_and_prices_tokens(tmp_path: Path, glaze) -> None:
    """Values come back as text, duplicates share a call, and spend is tokens x price."""
    with OpenAIServer(api_key=KEY) as server:
        setup(tmp_path, server.base_url)
        result = glaze("enrich", "s.csv", "--fields", "industry,founded_year", "--json", env={"LLM_KEY": KEY})
        requests = len(server.requests)
    assert result.code == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "s.enriched.csv").open()))
    assert [(r["industry"], r["founded_year"]) for r in rows] == [
        ("Financial services", "2010"), (rows[1]["industry"], rows[1]["founded_year"]), ("", ""),
        ("Financial services", "2010")]
    assert rows[1]["industry"] != ""
    summary = result.json()
    assert (requests, summary["calls"]["llm"]) == (3, 3)
    assert summary["spend"] == 3 * 250 * 0.002 / 1000


def test_rejected_llm_key_stops_the_provider(tmp_path: Path, glaze) -> None:
    """A wrong key: a few 401s, then the provider stops with a message naming LLM_KEY; the key is stored nowhere."""
    with OpenAIServer(api_key="the-right-key") as server:
        setup(tmp_path, server.base_url)
        (tmp_path / "s.csv").write_text("name,domain\n" + "".join(f"C{i},c{i}.example\n" for i in range(10)))
        result = glaze("enrich", "s.csv", "--fields", "industry", env={"LLM_KEY": KEY})
        requests = len(server.requests)
    assert result.code == 1
    # Stopped after 3 rejections; calls already in flight (concurrency 4) when it stopped still end.
    assert 3 <= requests <= 3 + 4 - 1
    assert "provider llm stopped for this run" in result.stderr and "check LLM_KEY" in result.stderr
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and KEY.encode() in p.read_bytes()]
    assert (leaks, KEY in result.stderr + result.stdout) == ([], False)
