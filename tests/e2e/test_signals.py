"""SIGTERM and SIGINT stop a run cleanly: state consistent, output written, the next run finishes the job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import glaze_env, wait_for
from tests.support.provider_server import ProviderServer

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry" }}
concurrency = 2
retries = 0
"""



@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_cleanly_and_rerun_finishes(tmp_path: Path, provider_server: ProviderServer, glaze,
                                                 signum: int, code: int) -> None:
    """A signal mid-run exits 130/143 with no running cells and true counters; a re-run completes the rest."""
    provider_server.set_latency(0.1)
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=provider_server.base_url))
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(40)))
    proc = subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry"],
                            cwd=tmp_path, env=glaze_env(tmp_path / ".glaze"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: provider_server.count("/v1/company") >= 4)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    status = glaze("status", "--json").json()["sheets"][0]
    assert status["tasks"]["running"] == 0 and status["rows"]["running"] == 0
    assert 0 < status["tasks"]["done"] < 40
    assert glaze("reconcile", "--check").code == 0
    assert (tmp_path / "s.enriched.csv").exists()
    calls_before = provider_server.count("/v1/company")
    again = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    assert again.code == 0, again.stderr
    # Only cells whose answer never arrived are asked again; finished ones come from the state or cache.
    assert provider_server.count("/v1/company") == 40
    assert again.json()["calls"]["acme"] == 40 - calls_before


def start_hung_run(tmp_path: Path, server: ProviderServer, *extra: str) -> subprocess.Popen[str]:
    """A run whose provider never answers in time; returns once both its calls are in flight."""
    server.set_latency(60)
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url))
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(10)))
    proc = subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry", *extra],
                            cwd=tmp_path, env=glaze_env(tmp_path / ".glaze"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: server.in_flight >= 2)
    return proc


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_calls_in_flight_are_cancelled_after_the_grace(tmp_path: Path, provider_server: ProviderServer, glaze,
                                                       signum: int, code: int) -> None:
    """With calls that hang, a signal still ends the run within 10 s: cells back in the queue, output written."""
    proc = start_hung_run(tmp_path, provider_server)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=10)  # the promise: a clean stop within 10 s (5 s of it is the grace)
    assert proc.returncode == code, stderr
    status = glaze("status", "--json").json()["sheets"][0]
    assert (status["tasks"]["queued"], status["tasks"]["running"], status["tasks"]["done"]) == (10, 0, 0)
    assert glaze("reconcile", "--check").code == 0
    assert (tmp_path / "s.enriched.csv").read_text().splitlines()[0] == "domain,industry"


def test_second_signal_exits_at_once(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A second Ctrl-C skips the grace and the output, yet leaves a consistent state that a re-run finishes."""
    proc = start_hung_run(tmp_path, provider_server)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # let the first be handled as a first
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 130, stderr
    assert not (tmp_path / "s.enriched.csv").exists()
    assert glaze("reconcile", "--check").code == 0
    provider_server.set_latency(0)
    again = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    assert (again.code, again.json()["done"]) == (0, 10), again.stderr


def test_max_runtime_stops_with_exit_3(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """--max-runtime stops like a signal at its deadline: exit 3, calls in flight cancelled, the rest queued."""
    proc = start_hung_run(tmp_path, provider_server, "--max-runtime", "3s", "--json")
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3, stderr
    summary = json.loads(stdout)
    assert (summary["stop_reason"], summary["done"], summary["queued_left"]) == ("max-runtime", 0, 10)
    assert glaze("reconcile", "--check").code == 0
