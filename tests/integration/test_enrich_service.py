"""The enrich use case in-process: waterfalls, coalescing, lookups, --rows, --dry-run, formats."""

from __future__ import annotations

import gc
from pathlib import Path

import polars as pl
import pytest
from tests.support.provider_server import ProviderServer

from glaze_cli import enrich as enrichment
from glaze_cli import service
from glaze_cli.errors import ConfigError, InputError
from glaze_cli.store import Store

HTTP = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry" }}
concurrency = {concurrency}
retries = 0
"""

LOOKUP = """
[providers.directory]
type = "lookup"
path = "directory.csv"
match = { domain = "domain" }
outputs = { industry = "industry" }
"""


def enrich(tmp_path: Path, sheet: Path, fields: str, **options) -> enrichment.EnrichSummary:
    request = enrichment.EnrichRequest(sheet=sheet, fields=tuple(fields.split(",")), workspace=tmp_path / ".glaze",
                                    **options)
    return enrichment.enrich(request)


def sheet_csv(path: Path, domains: list[str]) -> Path:
    pl.DataFrame({"name": [f"n{i}" for i in range(len(domains))], "domain": domains}).write_csv(path)
    return path


def test_identical_inputs_in_flight_share_one_call(tmp_path: Path, provider_server: ProviderServer) -> None:
    """Many rows with the same input, all in flight together, make exactly one request."""
    provider_server.set_latency(0.3)
    (tmp_path / "glaze.toml").write_text(HTTP.format(base=provider_server.base_url, concurrency=10))
    sheet = sheet_csv(tmp_path / "s.csv", ["stripe.com"] * 30)
    summary = enrich(tmp_path, sheet, "industry")
    assert (summary.exit_code, summary.filled, provider_server.count("/v1/company")) == (0, 30, 1)


def test_waterfall_falls_through_to_the_next_provider(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A lookup miss goes on to the HTTP provider; a lookup hit never calls it."""
    (tmp_path / "directory.csv").write_text("domain,industry\nsiemens.com,Conglomerate\n")
    (tmp_path / "glaze.toml").write_text(
        LOOKUP + HTTP.format(base=provider_server.base_url, concurrency=4)
        + '\n[fields.industry]\nproviders = ["directory", "acme"]\n'
    )
    sheet = sheet_csv(tmp_path / "s.csv", ["siemens.com", "stripe.com", "nowhere.example"])
    summary = enrich(tmp_path, sheet, "industry")
    out = pl.read_csv(tmp_path / "s.enriched.csv", infer_schema=False)
    assert out["industry"].to_list() == ["Conglomerate", "Financial services", None]
    assert sorted(r["query"]["domain"] for r in provider_server.requests) == ["nowhere.example", "stripe.com"]
    with Store(tmp_path / ".glaze" / "glaze.duckdb", read_only=True) as store:
        sources = store.execute("SELECT provider FROM tasks ORDER BY task_id")
    assert (summary.exit_code, sources) == (0, [("directory",), ("acme",), (None,)])


def test_min_confidence_skips_low_scores(tmp_path: Path, provider_server: ProviderServer) -> None:
    """A value below min_confidence counts as not found."""
    (tmp_path / "glaze.toml").write_text(HTTP.format(base=provider_server.base_url, concurrency=4)
                                         .replace('outputs = { industry = "company.industry" }',
                                                  'outputs = { industry = "company.industry" }\nconfidence = "score"')
                                         + "\n[fields.industry]\nmin_confidence = 0.5\n")
    sheet = sheet_csv(tmp_path / "s.csv", ["spotify.com", "stripe.com"])
    enrich(tmp_path, sheet, "industry")
    out = pl.read_csv(tmp_path / "s.enriched.csv", infer_schema=False)
    assert out["industry"].to_list() == [None, "Financial services"]


def test_lookup_with_duplicate_reference_keys(tmp_path: Path) -> None:
    """A lookup answers each row from the first matching reference row, with no network at all."""
    (tmp_path / "directory.csv").write_text("domain,industry\na.example,First\na.example,Second\nb.example,B\n")
    (tmp_path / "glaze.toml").write_text(LOOKUP)
    sheet = sheet_csv(tmp_path / "s.csv", ["b.example", "a.example", "c.example", "a.example"])
    summary = enrich(tmp_path, sheet, "industry")
    out = pl.read_csv(tmp_path / "s.enriched.csv", infer_schema=False)
    assert out["industry"].to_list() == ["B", "First", None, "First"]
    assert (summary.exit_code, summary.done, summary.filled) == (0, 4, 3)


def test_a_run_leaves_the_garbage_collector_as_it_found_it(tmp_path: Path) -> None:
    """The fill freezes old objects out of the collector's passes and spaces them out; a caller in the same
    process gets its own settings back, and nothing stays frozen."""
    (tmp_path / "directory.csv").write_text("domain,industry\na.example,A\n")
    (tmp_path / "glaze.toml").write_text(LOOKUP)
    sheet = sheet_csv(tmp_path / "s.csv", ["a.example", "b.example"])
    before = gc.get_threshold()
    summary = enrich(tmp_path, sheet, "industry")
    assert (summary.exit_code, summary.filled) == (0, 1)
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == (before, 0, True)


def test_rows_option_limits_the_run(tmp_path: Path, provider_server: ProviderServer) -> None:
    """--rows N fills only the first N rows; the rest stay queued."""
    (tmp_path / "glaze.toml").write_text(HTTP.format(base=provider_server.base_url, concurrency=4))
    sheet = sheet_csv(tmp_path / "s.csv", ["stripe.com", "siemens.com", "nestle.com"])
    summary = enrich(tmp_path, sheet, "industry", rows=2)
    assert (summary.cells, summary.done, provider_server.count("/v1/company")) == (2, 2, 2)
    status = service.status(None, tmp_path / ".glaze")["sheets"][0]
    assert status["tasks"]["queued"] == 1


def test_dry_run_calls_nothing(tmp_path: Path, provider_server: ProviderServer) -> None:
    """--dry-run reports cells, calls per provider and cache hits without calling."""
    (tmp_path / "glaze.toml").write_text(HTTP.format(base=provider_server.base_url, concurrency=4)
                                         .replace("retries = 0", "retries = 0\ncost = 0.5"))
    sheet = sheet_csv(tmp_path / "s.csv", ["stripe.com", "siemens.com"])
    enrich(tmp_path, sheet_csv(tmp_path / "first.csv", ["stripe.com"]), "industry")
    provider_server.reset()
    summary = enrich(tmp_path, sheet, "industry", dry_run=True)
    assert provider_server.requests == []
    assert {k: summary.dry_run[k] for k in ("cells", "calls", "cache_hits", "projected_spend")} == {
        "cells": 2, "calls": {"acme": 1}, "cache_hits": {"acme": 1}, "projected_spend": 0.5}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_formats_round_trip_text(tmp_path: Path, suffix: str) -> None:
    """Each format in and out keeps values exactly as text (00123 stays 00123)."""
    frame = pl.DataFrame({"id": ["00123", "0042"], "email": ["ann@acme.io", "bob@gmail.com"]})
    sheet = tmp_path / f"people{suffix}"
    {".csv": lambda: frame.write_csv(sheet), ".tsv": lambda: frame.write_csv(sheet, separator="\t"),
     ".parquet": lambda: frame.write_parquet(sheet), ".jsonl": lambda: frame.write_ndjson(sheet)}[suffix]()
    summary = enrich(tmp_path, sheet, "website")
    out_path = tmp_path / f"people.enriched{suffix}"
    reader = {".csv": lambda: pl.read_csv(out_path, infer_schema=False),
              ".tsv": lambda: pl.read_csv(out_path, separator="\t", infer_schema=False),
              ".parquet": lambda: pl.read_parquet(out_path), ".jsonl": lambda: pl.read_ndjson(out_path)}[suffix]
    assert summary.exit_code == 0
    assert reader().rows() == [("00123", "ann@acme.io", "https://acme.io"), ("0042", "bob@gmail.com", None)]


def test_unknown_field_is_a_config_error(tmp_path: Path) -> None:
    """A field no provider outputs is refused before anything is written."""
    sheet = sheet_csv(tmp_path / "s.csv", ["a.example"])
    with pytest.raises(ConfigError, match="field 'ceo'"):
        enrich(tmp_path, sheet, "ceo")
    assert not (tmp_path / ".glaze").exists()


def test_duplicate_key_is_an_input_error(tmp_path: Path) -> None:
    """A --key column with repeated values is refused, naming the column and a value."""
    sheet = sheet_csv(tmp_path / "s.csv", ["a.example", "a.example"])
    with pytest.raises(InputError, match=r"key column 'domain' has 1 value\(s\) that repeat, in 2 rows"):
        enrich(tmp_path, sheet, "website", key="domain")
