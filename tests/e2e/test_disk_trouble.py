"""Disk trouble: a cache that cannot be used costs calls, never the run; a state file that cannot be written
stops the run with exit 1 and leaves the last consistent state for the next run."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

from tests.conftest import glaze_env

CONFIG = """
[providers.sim]
type = "simulated"
inputs = ["domain"]
outputs = ["industry"]
concurrency = 50
"""


def write_sheet(tmp_path: Path, rows: int) -> None:
    (tmp_path / "glaze.toml").write_text(CONFIG)
    (tmp_path / "s.csv").write_text("domain\n" + "".join(f"c{i}.example\n" for i in range(rows)))


def test_corrupt_cache_warns_once_and_the_run_goes_on(tmp_path: Path, glaze) -> None:
    """A cache file that is not a database: one warning, every cell still filled, exit 0."""
    write_sheet(tmp_path, 50)
    assert glaze("enrich", "s.csv", "--fields", "industry", "--rows", "1", "-q").code == 0
    (tmp_path / ".glaze" / "cache" / "cache.db").write_bytes(b"this is not an SQLite database" * 100)
    result = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    assert result.code == 0, result.stderr
    assert result.stderr.count("is not usable") == 1 and "Traceback" not in result.stderr
    summary = result.json()
    assert (summary["done"], summary["filled"]) == (49, 49)
    assert any("response cache could not be used" in w for w in summary["warnings"])


def limited_to(size: int):
    """preexec_fn: writes past `size` bytes in any file fail with EFBIG, as on a full disk."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
    return apply


def test_unwritable_state_file_stops_with_exit_1(tmp_path: Path, glaze) -> None:
    """The state file's log cannot grow: exit 1 naming the file; the state stays consistent and a re-run ends it."""
    write_sheet(tmp_path, 3000)
    assert glaze("enrich", "s.csv", "--fields", "industry", "--rows", "1", "-q").code == 0
    proc = subprocess.run([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "industry"],
                          cwd=tmp_path, env=glaze_env(tmp_path / ".glaze"), capture_output=True, text=True,
                          timeout=120, preexec_fn=limited_to(400_000))
    assert proc.returncode == 1, proc.stderr
    assert "glaze.duckdb: cannot write the state file" in proc.stderr and "Traceback" not in proc.stderr
    assert glaze("reconcile", "--check").code == 0
    again = glaze("enrich", "s.csv", "--fields", "industry", "--json")
    assert again.code == 0, again.stderr
    status = glaze("status", "--json").json()["sheets"][0]
    assert (status["tasks"]["done"], status["tasks"]["filled"]) == (3000, 3000)
