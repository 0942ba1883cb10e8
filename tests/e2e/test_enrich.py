"""`glaze enrich` as a user runs it, against a real loopback provider."""

from __future__ import annotations

import csv
import json
import sqlite3
import time
from pathlib import Path

import diskcache
import duckdb
import polars as pl
import pytest
from tests.support.provider_server import ProviderServer

CONFIG = """
[defaults]
concurrency = 2
retries = 0

[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
headers = {{ Authorization = "Bearer ${{ACME_KEY}}" }}
outputs = {{ industry = "company.industry", website = "company.website" }}
confidence = "score"
cost = 0.01

[fields.industry]
min_confidence = 0.5
"""

SHEET = [
    ("name", "domain"),
    ("Stripe", "stripe.com"),
    ("Siemens", "siemens.com"),
    ("Stripe Payments", "stripe.com"),
    ("Nobody", "unknown.example"),
    ("No Domain", ""),
    ("Spotify", "spotify.com"),
    ("Nestlé", "nestle.com"),
    ("Stripe", "stripe.com"),
]


def write_csv(path: Path, rows: list[tuple[str, ...]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def setup(tmp_path: Path, server: ProviderServer, rows: list[tuple[str, ...]] = SHEET) -> Path:
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url), encoding="utf-8")
    return write_csv(tmp_path / "leads.csv", rows)


ENV = {"ACME_KEY": "k-123"}


def test_one_request_per_distinct_input(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Duplicate inputs share one call and rows without the input make none."""
    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry,website", env=ENV)
    assert result.code == 0, result.stderr
    assert sorted(r["query"]["domain"] for r in provider_server.requests) == [
        "nestle.com", "siemens.com", "spotify.com", "stripe.com", "unknown.example"]
    assert {r["headers"]["authorization"] for r in provider_server.requests} == {"Bearer k-123"}


def test_values_and_not_found_cells(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Found values land in the output; not-found and low-confidence cells are done and empty."""
    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry,website", env=ENV)
    assert result.code == 0, result.stderr
    rows = read_csv(tmp_path / "leads.enriched.csv")
    assert [(r["name"], r["domain"], r["industry"], r["website"]) for r in rows] == [
        ("Stripe", "stripe.com", "Financial services", "https://stripe.com"),
        ("Siemens", "siemens.com", "Industrial manufacturing", "https://siemens.com"),
        ("Stripe Payments", "stripe.com", "Financial services", "https://stripe.com"),
        ("Nobody", "unknown.example", "", "https://unknown.example"),
        ("No Domain", "", "", ""),
        ("Spotify", "spotify.com", "", "https://spotify.com"),
        ("Nestlé", "nestle.com", "Food and beverage", "https://nestle.com"),
        ("Stripe", "stripe.com", "Financial services", "https://stripe.com"),
    ]
    status = glaze("status", "leads.csv", "--json").json()["sheets"][0]
    assert status["tasks"] == {"total": 16, "queued": 0, "running": 0, "done": 16, "failed": 0, "filled": 12}
    assert status["rows"]["done"] == 8


def test_provider_concurrency_limit_holds(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """The server never sees more requests in flight than the provider's concurrency."""
    provider_server.set_latency(0.02, 0.01)
    rows = [("name", "domain")] + [(f"Company {i}", f"c{i}.example") for i in range(40)]
    setup(tmp_path, provider_server, rows)
    result = glaze("enrich", "leads.csv", "--fields", "industry", env=ENV)
    assert result.code == 0, result.stderr
    assert provider_server.count("/v1/company") == 40
    assert 1 <= provider_server.max_in_flight <= 2


def test_rerun_makes_no_call(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Running the same command twice: the second run calls nothing and exits 0."""
    setup(tmp_path, provider_server)
    first = glaze("enrich", "leads.csv", "--fields", "industry,website", env=ENV)
    assert first.code == 0, first.stderr
    provider_server.reset()
    second = glaze("enrich", "leads.csv", "--fields", "industry,website", "--json", env=ENV)
    assert (second.code, provider_server.requests) == (0, []), second.stderr
    assert second.json()["cells"] == 0
    assert read_csv(tmp_path / "leads.enriched.csv")[0]["industry"] == "Financial services"


def test_cache_answers_a_new_workspace(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A refreshed state file with the same cache makes no call: answers come from the on-disk cache."""
    setup(tmp_path, provider_server)
    assert glaze("enrich", "leads.csv", "--fields", "industry", env=ENV).code == 0
    (tmp_path / ".glaze" / "glaze.duckdb").unlink()
    provider_server.reset()
    result = glaze("enrich", "leads.csv", "--fields", "industry,website", "--json", env=ENV)
    assert (result.code, provider_server.requests) == (0, []), result.stderr
    assert result.json()["cache_hits"]["acme"] == 7  # seven rows have a domain


def test_cache_of_an_older_glaze_is_kept(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A cache written in diskcache's JSONDisk format (glaze 0.1) is converted when opened: no call is repeated."""
    setup(tmp_path, provider_server)
    assert glaze("enrich", "leads.csv", "--fields", "industry", env=ENV).code == 0
    cache_dir = tmp_path / ".glaze" / "cache"
    current = diskcache.Cache(str(cache_dir))
    entries = [(key, *current.get(key, expire_time=True, tag=True)) for key in current.iterkeys()]
    current.clear()
    current.close()
    (cache_dir / "format").unlink()
    older = diskcache.Cache(str(cache_dir), disk=diskcache.JSONDisk, disk_compress_level=0)
    for key, value, expire_time, tag in entries:
        older.set(key, json.loads(value), expire=expire_time - time.time(), tag=tag)
    older.close()
    (tmp_path / ".glaze" / "glaze.duckdb").unlink()
    provider_server.reset()
    result = glaze("enrich", "leads.csv", "--fields", "industry", "--json", env=ENV)
    assert (result.code, provider_server.requests) == (0, []), result.stderr
    assert result.json()["cache_hits"]["acme"] == 7


def test_appended_and_changed_rows(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """With a key, appended rows get tasks and a row whose values changed is enriched again."""
    rows = [("name", "domain"), ("Stripe", "stripe.com"), ("Siemens", "siemens.com")]
    setup(tmp_path, provider_server, rows)
    assert glaze("enrich", "leads.csv", "--fields", "industry", "--key", "name", env=ENV).code == 0
    write_csv(tmp_path / "leads.csv", [("name", "domain"), ("Stripe", "stripe.com"), ("Siemens", "nestle.com"),
                                       ("Spotify", "spotify.com")])
    provider_server.reset()
    result = glaze("enrich", "leads.csv", "--fields", "industry", "--key", "name", "--json", env=ENV)
    assert result.code == 0, result.stderr
    assert sorted(r["query"]["domain"] for r in provider_server.requests) == ["nestle.com", "spotify.com"]
    out = read_csv(tmp_path / "leads.enriched.csv")
    assert [(r["name"], r["industry"]) for r in out] == [
        ("Stripe", "Financial services"), ("Siemens", "Food and beverage"), ("Spotify", "")]


def test_failed_cells_exit_1_and_retry(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A server error fails the cell (exit 1, error kept); a plain re-run leaves it; --retry-failed retries it."""
    setup(tmp_path, provider_server, [("name", "domain"), ("Stripe", "stripe.com")])
    provider_server.enqueue(500, {"error": "boom"})
    first = glaze("enrich", "leads.csv", "--fields", "industry", env=ENV)
    assert first.code == 1, first.stderr
    listing = glaze("status", "--rows", "--state", "failed", "--json").json()
    assert [(r["row"], r["status"]) for r in listing["sheets"]["leads"]] == [(1, "failed")]
    assert "500" in listing["sheets"]["leads"][0]["errors"]
    again = glaze("enrich", "leads.csv", "--fields", "industry", env=ENV)
    assert (again.code, provider_server.count("/v1/company")) == (1, 1)
    retried = glaze("enrich", "leads.csv", "--fields", "industry", "--retry-failed", env=ENV)
    assert (retried.code, provider_server.count("/v1/company")) == (0, 2), retried.stderr


def test_budget_stops_with_exit_3(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """--budget starts no call past it; the rest stays queued and exit code is 3."""
    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry", "--budget", "0.02", "--json", env=ENV)
    assert result.code == 3, result.stderr
    assert provider_server.count("/v1/company") == 2
    summary = result.json()
    assert (summary["stop_reason"], summary["spend"]) == ("budget", 0.02)
    assert summary["queued_left"] > 0


def test_state_tables_are_queryable(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """The spec's tables exist in glaze.duckdb and record the calls made."""
    setup(tmp_path, provider_server)
    assert glaze("enrich", "leads.csv", "--fields", "industry", env=ENV).code == 0
    con = duckdb.connect(str(tmp_path / ".glaze" / "glaze.duckdb"), read_only=True)
    try:
        calls = con.execute("SELECT provider, outcome, http_status, cache_hit FROM provider_calls "
                            "WHERE NOT cache_hit ORDER BY http_status, outcome").fetchall()
        jobs = con.execute("SELECT total_tasks, done_tasks, failed_tasks, exit_code FROM jobs").fetchall()
        sheets = con.execute("SELECT name, key_column FROM sheets").fetchall()
    finally:
        con.close()
    assert calls == [("acme", "ok", 200, False)] * 4 + [("acme", "not_found", 404, False)]
    assert jobs == [(8, 8, 0, 0)]
    assert sheets == [("leads", None)]


def test_config_error_names_the_key(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A missing ${VAR} is exit 2 with one line naming the variable and key, and no traceback."""
    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry")
    assert result.code == 2
    assert "ACME_KEY" in result.stderr and "providers.acme.headers" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".glaze" / "glaze.duckdb").exists()


def test_json_summary(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """--json prints one summary object with counts per provider."""
    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry,website", "--json", env=ENV)
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("cells", "done", "failed", "filled", "exit_code", "calls")} == {
        "cells": 16, "done": 16, "failed": 0, "filled": 12, "exit_code": 0,
        "calls": {"acme": 5, "builtin.website": 1}}



def imported(result) -> set[str]:
    """The modules a command run with PYTHONPROFILEIMPORTTIME=1 imported, from Python's import log on stderr."""
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")}


def test_json_run_does_without_rich(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """rich is imported only for what it draws: a `--json` run (cron's kind) starts without it, a plain one
    (progress lines, a summary) still uses it. Python's own import log (PYTHONPROFILEIMPORTTIME) tells."""
    setup(tmp_path, provider_server)

    def imports(*extra: str) -> set[str]:
        result = glaze("enrich", "leads.csv", "--fields", "industry", *extra,
                       env={**ENV, "PYTHONPROFILEIMPORTTIME": "1"})
        assert result.code == 0, result.stderr
        return imported(result)

    assert "rich" not in imports("--json")
    assert "rich" in imports("--no-progress")


def test_http_client_loads_only_for_a_run(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """aiohttp (~0.1 s to import) loads when a run with an HTTP provider is planned, on a thread beside the
    sheet's load; listing the providers, a configured HTTP one among them, does without it."""
    setup(tmp_path, provider_server)
    env = {**ENV, "PYTHONPROFILEIMPORTTIME": "1"}
    listed = glaze("providers", "--json", env=env)
    assert (listed.code, "acme" in listed.stdout) == (0, True), listed.stderr
    assert "aiohttp" not in imported(listed)
    run = glaze("enrich", "leads.csv", "--fields", "industry", "--json", env=env)
    assert "aiohttp" in imported(run)
    assert (provider_server.count("/v1/company"), json.loads(run.stdout)["calls"]) == (5, {"acme": 5}), run.stderr


def test_transient_error_is_retried(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A 503 is retried and the second attempt's answer fills the cell; both attempts are recorded."""
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=provider_server.base_url).replace("retries = 0",
                                                                                             "retries = 2"))
    write_csv(tmp_path / "leads.csv", [("name", "domain"), ("Stripe", "stripe.com")])
    provider_server.enqueue(503, {"error": "busy"})
    result = glaze("enrich", "leads.csv", "--fields", "industry", env=ENV)
    assert (result.code, provider_server.count("/v1/company")) == (0, 2), result.stderr
    con = duckdb.connect(str(tmp_path / ".glaze" / "glaze.duckdb"), read_only=True)
    try:
        calls = con.execute("SELECT outcome, http_status, attempt FROM provider_calls ORDER BY attempt").fetchall()
    finally:
        con.close()
    assert calls == [("error", 503, 1), ("ok", 200, 2)]


def test_export_with_meta(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """export writes the sheet from the state, with FIELD__source and FIELD__confidence on request."""
    setup(tmp_path, provider_server, [("name", "domain"), ("Stripe", "stripe.com"), ("Nobody", "x.example")])
    assert glaze("enrich", "leads.csv", "--fields", "industry,website", env=ENV).code == 0
    result = glaze("export", "leads.csv", "-o", "out.csv", "--with-meta")
    assert result.code == 0, result.stderr
    assert read_csv(tmp_path / "out.csv") == [
        {"name": "Stripe", "domain": "stripe.com", "industry": "Financial services", "website": "https://stripe.com",
         "industry__source": "acme", "industry__confidence": "0.9", "website__source": "acme",
         "website__confidence": "0.9"},
        {"name": "Nobody", "domain": "x.example", "industry": "", "website": "https://x.example",
         "industry__source": "", "industry__confidence": "", "website__source": "builtin.website",
         "website__confidence": "1.0"},
    ]
    refused = glaze("export", "leads.csv", "-o", "leads.csv")
    assert refused.code == 2 and "never writes over its input" in refused.stderr


def test_formula_guard_in_csv_output(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A provider's formula-like text gets a leading ' in CSV output (not numbers, not the sheet's own columns)
    and stays as it is with --no-formula-guard and in Parquet."""
    provider_server.set_company("evil.example", {"industry": "=HYPERLINK(\"http://x\")", "website": "-5"})
    provider_server.set_company("at.example", {"industry": "@SUM(A1)", "website": "+ok"})
    setup(tmp_path, provider_server, [("name", "domain"), ("=1+1", "evil.example"), ("Plain", "at.example")])
    assert glaze("enrich", "leads.csv", "--fields", "industry,website", env=ENV).code == 0
    assert [(r["name"], r["industry"], r["website"]) for r in read_csv(tmp_path / "leads.enriched.csv")] == [
        ("=1+1", "'=HYPERLINK(\"http://x\")", "-5"), ("Plain", "'@SUM(A1)", "'+ok")]
    assert glaze("export", "leads.csv", "-o", "raw.csv", "--no-formula-guard").code == 0
    assert [r["industry"] for r in read_csv(tmp_path / "raw.csv")] == ["=HYPERLINK(\"http://x\")", "@SUM(A1)"]
    assert glaze("export", "leads.csv", "-o", "out.parquet").code == 0
    assert pl.read_parquet(tmp_path / "out.parquet")["industry"].to_list() == ["=HYPERLINK(\"http://x\")",
                                                                              "@SUM(A1)"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_output_formats_keep_text(tmp_path: Path, provider_server: ProviderServer, glaze, suffix: str) -> None:
    """Every output format keeps the sheet's text as text (00123, quotes, commas; an empty cell is null) and adds
    the fields."""
    setup(tmp_path, provider_server, [("id", "name", "domain"), ("00123", 'Acme "Labs", Inc', "stripe.com"),
                                      ("7", "", "unknown.example")])
    assert glaze("enrich", "leads.csv", "--fields", "industry", "-o", f"out{suffix}", env=ENV).code == 0
    path = tmp_path / f"out{suffix}"
    if suffix == ".parquet":
        frame = pl.read_parquet(path)
    elif suffix == ".jsonl":
        frame = pl.read_ndjson(path)
    else:
        frame = pl.read_csv(path, separator="\t" if suffix == ".tsv" else ",", infer_schema=False)
    assert frame.columns == ["id", "name", "domain", "industry"]
    assert frame.rows() == [("00123", 'Acme "Labs", Inc', "stripe.com", "Financial services"),
                            ("7", None, "unknown.example", None)]


def test_reconcile_repairs_drift(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """reconcile --check reports damaged counters (exit 1) and changes nothing; reconcile rebuilds them."""
    setup(tmp_path, provider_server)
    assert glaze("enrich", "leads.csv", "--fields", "industry", env=ENV).code == 0
    con = duckdb.connect(str(tmp_path / ".glaze" / "glaze.duckdb"))
    con.execute("UPDATE rows SET done_tasks = 0, status = 'queued' WHERE row_index < 3")
    con.close()
    check = glaze("reconcile", "--check", "--json")
    assert (check.code, check.json()["drift_rows"]) == (1, 3)
    assert glaze("reconcile", "--check").code == 1
    fixed = glaze("reconcile", "--json")
    assert (fixed.code, fixed.json()["fixed"]) == (0, 3)
    assert glaze("reconcile", "--check").code == 0
    assert glaze("status", "--json").json()["sheets"][0]["rows"]["done"] == 8


def test_cache_folder_is_private_json(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """The response cache folder is readable by its owner only and holds JSON, not pickles."""
    setup(tmp_path, provider_server, [("name", "domain"), ("Stripe", "stripe.com")])
    assert glaze("enrich", "leads.csv", "--fields", "industry", env=ENV).code == 0
    cache_dir = tmp_path / ".glaze" / "cache"
    assert cache_dir.stat().st_mode & 0o777 == 0o700
    con = sqlite3.connect(cache_dir / "cache.db")
    values = [json.loads(v) for (v,) in con.execute("SELECT value FROM Cache").fetchall()]
    con.close()
    assert values == [{"outcome": "ok", "values": {"industry": "Financial services", "website": "https://stripe.com"},
                       "confidence": 0.9}]


def test_metrics_file(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """--metrics-file writes Prometheus text that the official parser reads, with cells, calls and exit code."""
    from prometheus_client.parser import text_string_to_metric_families

    setup(tmp_path, provider_server)
    result = glaze("enrich", "leads.csv", "--fields", "industry", "--metrics-file", "m/glaze.prom", env=ENV)
    assert result.code == 0, result.stderr
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families((tmp_path / "m" / "glaze.prom").read_text())
               for s in family.samples}
    sheet = ("sheet", "leads")
    assert samples[("glaze_cells", (("field", "industry"), sheet, ("status", "done")))] == 8
    assert samples[("glaze_cells", (("field", "industry"), sheet, ("status", "filled")))] == 5
    assert samples[("glaze_provider_calls_total", (("provider", "acme"), sheet))] == 5
    assert samples[("glaze_provider_requests_total", (("outcome", "ok"), ("provider", "acme"), sheet))] == 4
    assert samples[("glaze_provider_requests_total", (("outcome", "not_found"), ("provider", "acme"), sheet))] == 1
    assert samples[("glaze_exit_code", (sheet,))] == 0
    assert samples[("glaze_last_success_timestamp_seconds", (sheet,))] > 0
