"""SIGKILL at random points, then run again: every cell done once, counters true, no answered call repeated.

"Answered" is read from the workspace after each kill, not guessed from timing: a call whose answer is in the
response cache must never be made again, and a cell recorded done must have its answer cached.
"""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
import pytest
from tests.conftest import glaze_env, wait_for
from tests.support.provider_server import ProviderServer, synthetic_companies

from glaze_cli.cache import cache_key
from glaze_cli.config import load_config
from glaze_cli.providers import build_provider

ROWS = 300
KILLS_PER_TRIAL = 2
TRIALS = 8

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry", website = "company.website" }}
concurrency = 8
retries = 0
"""


def start(workdir: Path) -> subprocess.Popen[str]:
    """`glaze enrich` on the trial's sheet, as a user runs it."""
    return subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry,website",
                             "--json"], cwd=workdir, env=glaze_env(workdir / ".glaze"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def in_flight_at(server: ProviderServer, killed_at: float) -> set[str]:
    """Domains whose request the server had started and not yet answered when the kill landed."""
    return {r["query"]["domain"] for r in server.requests
            if r["started"] <= killed_at and (r["finished"] is None or r["finished"] > killed_at)}


def state_after_kill(workdir: Path, keys: dict[str, str]) -> tuple[set[str], set[str]]:
    """(domains whose answer is in the response cache, domains with a cell recorded done by the provider)."""
    cache = sqlite3.connect(workdir / ".glaze" / "cache" / "cache.db")
    try:
        cached_keys = {key for (key,) in cache.execute("SELECT key FROM Cache")}
    finally:
        cache.close()
    con = duckdb.connect(str(workdir / ".glaze" / "glaze.duckdb"), read_only=True)
    try:
        done = {json.loads(data)["domain"] for (data,) in con.execute(
            "SELECT DISTINCT r.data FROM tasks t JOIN rows r USING (row_id) "
            "WHERE t.status = 'done' AND t.provider = 'acme'").fetchall()}
    finally:
        con.close()
    return {domain for domain, key in keys.items() if key in cached_keys}, done


def cache_keys(workdir: Path, domains: list[str]) -> dict[str, str]:
    """The response-cache key of each domain's call, as glaze computes it."""
    config = load_config(workdir / "glaze.toml")
    provider = build_provider(config.providers["acme"], config.source, config.base_dir)
    return {d: cache_key(provider.name, provider.fingerprint, {"domain": d}) for d in domains}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_sigkill_at_random_points_then_rerun(tmp_path: Path, trial: int) -> None:
    """Two SIGKILLs at random moments, then a full run: cells done once, counters true, few repeated calls."""
    rng = random.Random(1000 + trial)
    companies = synthetic_companies(ROWS)
    missing = {f"company{i}.example" for i in range(0, ROWS, 10)}  # every tenth is unknown: a 404, cached too
    answered: list[tuple[int, set[str]]] = []  # (requests made by each kill, domains cached at it)
    with ProviderServer(companies={k: v for k, v in companies.items() if k not in missing}) as server:
        server.set_latency(0.03, 0.02)
        (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url))
        (tmp_path / "s.csv").write_text("domain\n" + "".join(f"{d}\n" for d in companies))
        keys = cache_keys(tmp_path, list(companies))
        in_flight = 0
        calls_at_kills: list[int] = []
        for _ in range(KILLS_PER_TRIAL):
            base = len(server.requests)
            proc = start(tmp_path)
            if rng.random() < 0.25:
                time.sleep(rng.uniform(0.05, 1.0))  # while it starts, loads the sheet or makes its first calls
            else:  # mid-fill: after a random share of the calls still to make
                target = base + rng.randint(1, max(1, ROWS - base))
                wait_for(lambda t=target, p=proc: len(server.requests) >= t or p.poll() is not None)
            killed_at = time.monotonic()
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            in_flight += len(in_flight_at(server, killed_at))
            calls_at_kills.append(len(server.requests))
            if (tmp_path / ".glaze" / "cache" / "cache.db").exists():
                cached, done = state_after_kill(tmp_path, keys)
                assert done <= cached, f"cells recorded done without their answer cached: {done - cached}"
                answered.append((len(server.requests), cached))
        final = start(tmp_path)
        stdout, stderr = final.communicate(timeout=120)
        assert final.returncode == 0, stderr
        requests = server.requests
        calls = Counter(r["query"]["domain"] for r in requests)

    repeated = {domain: n - 1 for domain, n in calls.items() if n > 1}
    for made_before, cached in answered:
        asked_again = {r["query"]["domain"] for r in requests[made_before:]} & cached
        assert not asked_again, f"calls repeated although their answers were cached: {asked_again}"
    assert set(calls) == set(companies)
    with open(tmp_path / "s.enriched.csv", newline="") as handle:
        out = {r["domain"]: (r["industry"], r["website"]) for r in csv.DictReader(handle)}
    # An unknown company gets no industry; its website falls through to the built-in (https://DOMAIN).
    assert out == {d: ("" if d in missing else f["industry"], f["website"]) for d, f in companies.items()}
    con = duckdb.connect(str(tmp_path / ".glaze" / "glaze.duckdb"), read_only=True)
    try:
        cells = con.execute("SELECT count(*), count(DISTINCT (row_id, field)), count(*) FILTER (status = 'done') "
                            "FROM tasks").fetchall()[0]
        done_by_jobs = con.execute("SELECT sum(done_tasks) FROM jobs").fetchall()[0][0]
    finally:
        con.close()
    # One task per cell, all done, and each cell's "done" recorded by exactly one job.
    assert cells == (2 * ROWS, 2 * ROWS, 2 * ROWS)
    assert done_by_jobs == 2 * ROWS
    check = subprocess.run([sys.executable, "-m", "glaze_cli", "reconcile", "--check", "--json"], cwd=tmp_path,
                           env=glaze_env(tmp_path / ".glaze"), capture_output=True, text=True, timeout=60)
    assert (check.returncode, json.loads(check.stdout)["drift_rows"]) == (0, 0), check.stdout
    report = {"trial": trial, "calls": sum(calls.values()), "repeated": sum(repeated.values()),
              "in_flight_at_kills": in_flight, "calls_made_by_each_kill": calls_at_kills, "drift_rows": 0}
    if os.environ.get("GLAZE_TRIAL_LOG"):
        with open(os.environ["GLAZE_TRIAL_LOG"], "a") as log:
            log.write(json.dumps(report) + "\n")
