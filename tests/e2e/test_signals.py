"""SIGTERM and SIGINT stop a run cleanly: state consistent, output written, the next run finishes the job."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import glaze_env
from tests.support.provider_server import ProviderServer

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry" }}
concurrency = 2
retries = 0
"""


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll until predicate() is true, failing after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


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
