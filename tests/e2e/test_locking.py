"""One run per workspace: a second run exits 75 naming the holder, --wait waits, brief holders are waited for,
a lock left by a dead process is no obstacle, and status is never blocked."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import glaze_env, wait_for

from glaze_cli.workspace import BRIEF_HOLD_WAIT

CONFIG = """
[providers.sim]
type = "simulated"
inputs = ["domain"]
outputs = ["industry"]
latency = "{latency}"
concurrency = 2
"""

BUSY = re.compile(r"^error: workspace \S+ is busy: glaze enrich pid (\d+) has held it since \d\d:\d\d:\d\d; "
                  r"let it finish, or pass --wait DUR")



def setup(tmp_path: Path, rows: int = 20, latency: str = "200ms") -> None:
    (tmp_path / "glaze.toml").write_text(CONFIG.format(latency=latency))
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(rows)))


def start_run(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    """A `glaze enrich` in the background; returns once it holds the workspace (its snapshot is out)."""
    proc = subprocess.Popen([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry", "-q",
                             *extra], cwd=tmp_path, env=glaze_env(tmp_path / ".glaze"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: (tmp_path / ".glaze" / "status.json").exists() or proc.poll() is not None)
    assert proc.poll() is None, proc.communicate()
    return proc


def hold_lock(tmp_path: Path, command: str, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the workspace lock as `command` would (glaze's own Workspace), for `seconds`."""
    script = ("import sys, time; from pathlib import Path; from glaze_cli.workspace import Workspace; "
              "ws = Workspace(Path(sys.argv[1])); ws.acquire(sys.argv[2]); print('held', flush=True); "
              "time.sleep(float(sys.argv[3])); ws.release()")
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / ".glaze"), command, str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_second_run_exits_75_naming_the_holder(tmp_path: Path, glaze) -> None:
    """While a run holds the workspace, a second `glaze enrich` exits 75 with the holder's pid, and changes nothing."""
    setup(tmp_path)
    first = start_run(tmp_path)
    try:
        second = glaze("enrich", "s.csv", "--fields", "industry")
        assert second.code == 75, second.stderr
        match = BUSY.match(second.stderr)
        assert match is not None and int(match.group(1)) == first.pid, second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=30)


@pytest.mark.parametrize("command", [["export", "s.csv", "-o", "out.csv"], ["reconcile"], ["reconcile", "--check"],
                                     ["status", "--rows", "--json"]])
def test_other_commands_during_a_run(tmp_path: Path, glaze, command: list[str]) -> None:
    """export and reconcile exit 75 with the same message; status --rows answers from what the run publishes."""
    setup(tmp_path)
    assert glaze("enrich", "s.csv", "--fields", "industry", "--rows", "1", "-q").code == 0
    run = start_run(tmp_path)
    try:
        result = glaze(*command)
        if command[0] == "status":
            assert result.code == 0, result.stderr
            assert result.json()["live"]["pid"] == run.pid
        else:
            assert result.code == 75 and BUSY.match(result.stderr), result.stderr
    finally:
        run.send_signal(signal.SIGTERM)
        run.communicate(timeout=30)


def test_wait_waits_for_the_run(tmp_path: Path, glaze) -> None:
    """With --wait, a second run waits for the first to finish, then finds nothing left to do."""
    setup(tmp_path, rows=10, latency="100ms")
    first = start_run(tmp_path)
    second = glaze("enrich", "s.csv", "--fields", "industry", "--wait", "2m", "--json")
    first_out, first_err = first.communicate(timeout=60)
    assert (first.returncode, second.code) == (0, 0), (first_err, second.stderr)
    assert second.json()["cells"] == 0


def test_export_waits_with_wait(tmp_path: Path, glaze) -> None:
    """export --wait waits for a run and then writes the finished sheet."""
    setup(tmp_path, rows=10, latency="100ms")
    run = start_run(tmp_path)
    result = glaze("export", "s.csv", "-o", "out.csv", "--wait", "2m")
    run.communicate(timeout=60)
    assert (run.returncode, result.code) == (0, 0), result.stderr
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["domain"], bool(r["industry"])) for r in rows] == [(f"c{i}.example", True) for i in range(10)]


def test_run_waits_for_a_brief_holder(tmp_path: Path, glaze) -> None:
    """A run that finds export or reconcile holding the workspace waits for it instead of exiting 75."""
    setup(tmp_path, rows=3, latency="0ms")
    assert glaze("enrich", "s.csv", "--fields", "industry", "--rows", "1", "-q").code == 0
    holder = hold_lock(tmp_path, "export", min(3.0, BRIEF_HOLD_WAIT / 3))
    result = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    holder.communicate(timeout=30)
    assert result.code == 0, result.stderr
    assert result.json()["done"] == 2


def test_dead_holder_is_no_obstacle(tmp_path: Path, glaze) -> None:
    """A lock file left by a SIGKILLed holder names a dead pid; the next run takes the workspace at once."""
    setup(tmp_path, rows=3, latency="0ms")
    holder = hold_lock(tmp_path, "enrich", 60)
    os.kill(holder.pid, signal.SIGKILL)
    holder.communicate(timeout=30)
    assert json.loads((tmp_path / ".glaze" / "lock").read_text())["pid"] == holder.pid
    result = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    assert result.code == 0, result.stderr
    assert result.json()["done"] == 3
