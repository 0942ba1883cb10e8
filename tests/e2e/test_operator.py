"""What an operator sees: status while a run holds the workspace, log lines without a terminal, metrics."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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


def start_slow_run(tmp_path: Path, server: ProviderServer, *extra: str) -> subprocess.Popen[str]:
    """A `glaze enrich` of 40 rows at 2 calls in flight and 0.1 s a call: a few seconds of work."""
    server.set_latency(0.1)
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url))
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(40)))
    return subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry", *extra],
                            cwd=tmp_path, env=glaze_env(tmp_path / ".glaze", GLAZE_LOG_EVERY="0.5"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def poll(check, timeout: float = 30.0):
    """Call check() until it returns something truthy; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_status_answers_during_a_run(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """While a run holds the workspace, status reads the run's snapshot and says it is live."""
    run = start_slow_run(tmp_path, provider_server)
    try:
        def live_report():
            # The first snapshot comes while the run still loads the sheet; wait for the one of the fill.
            result = glaze("status", "--json")
            report = result.json() if result.code == 0 else {}
            return report if report.get("live", {}).get("phase") == "enriching" else None

        report = poll(live_report)
        assert report["live"]["pid"] == run.pid
        assert report["sheets"][0]["name"] == "s" and report["sheets"][0]["tasks"]["total"] == 40
        text = glaze("status")
        assert text.code == 0 and f"live: glaze pid {run.pid} is running job" in text.stdout
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=30)
    after = glaze("status", "--json").json()
    assert "live" not in after


def test_log_lines_without_a_terminal(tmp_path: Path, provider_server: ProviderServer) -> None:
    """With stderr not a terminal, progress comes as plain timestamped lines, the last one complete."""
    run = start_slow_run(tmp_path, provider_server)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    lines = [line for line in stderr.splitlines() if " glaze: " in line]
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d glaze: [\d,]+/40 cells, .+/s, \d+ failed, spend 0\.00$")
    assert len(lines) >= 2 and all(pattern.match(line) for line in lines), lines
    assert lines[-1].split(" glaze: ")[1].startswith("40/40 cells")
    assert "\x1b[" not in stderr


def test_metrics_file_during_the_run(tmp_path: Path, provider_server: ProviderServer) -> None:
    """The metrics file exists while the run goes on (glaze_running 1) and says 0 with an exit code after."""
    run = start_slow_run(tmp_path, provider_server, "--metrics-file", "glaze.prom")
    metrics = tmp_path / "glaze.prom"
    during = poll(lambda: metrics.exists() and metrics.read_text())
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 0, stderr
    assert 'glaze_running{sheet="s"} 1' in during and "glaze_exit_code" not in during
    after = metrics.read_text()
    assert 'glaze_running{sheet="s"} 0' in after and 'glaze_exit_code{sheet="s"} 0' in after


def test_quiet_and_json_print_no_progress(tmp_path: Path, provider_server: ProviderServer) -> None:
    """-q prints nothing on success; --json prints only the summary object on stdout."""
    run = start_slow_run(tmp_path, provider_server, "--json")
    stdout, stderr = run.communicate(timeout=60)
    assert (run.returncode, stderr) == (0, "")
    assert json.loads(stdout)["done"] == 40


def test_live_display_under_a_terminal(tmp_path: Path, provider_server: ProviderServer) -> None:
    """With stderr on a pseudo-terminal the live table is drawn and redrawn, ending complete."""
    import os
    import pty

    provider_server.set_latency(0.05)
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=provider_server.base_url))
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(40)))
    master, slave = pty.openpty()
    env = glaze_env(tmp_path / ".glaze", COLUMNS="80", LINES="24", TERM="xterm")
    proc = subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the terminal closed: the process is gone
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(master)
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, screen
    assert "\x1b[" in screen and "provider" in screen and "circuit" in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert re.search(r"glaze [█░]+ 40/40 cells 100\.0%", plain)
    assert "40 done (0 filled), 0 failed of 40 cells" in screen


def test_status_and_export_start_without_polars(tmp_path: Path, glaze) -> None:
    """`glaze status` and `glaze export` go through DuckDB only: polars (~0.1 s to import) stays unloaded."""
    (tmp_path / "s.csv").write_text("domain\na.example\nb.example\n")
    (tmp_path / "glaze.toml").write_text('[providers.sim]\ntype = "simulated"\ninputs = ["domain"]\n'
                                         'outputs = ["industry"]\n')
    assert glaze("enrich", "s.csv", "--fields", "industry", "-q").code == 0
    for args in (["status", "--json"], ["export", "s.csv", "-o", "out.csv", "--with-meta"]):
        result = glaze(*args, env={"PYTHONPROFILEIMPORTTIME": "1"})
        loaded = {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
                  if line.startswith("import time:")}
        assert (result.code, "glaze_cli.store" in loaded, "polars" in loaded) == (0, True, False), args
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "domain,industry,industry__source,industry__confidence"
