"""Helpers shared by the benchmarks: sheets, a glaze subprocess, the loopback server, medians."""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def write_sheet(path: Path, rows: int, prefix: str = "company") -> Path:
    """A CSV of `rows` distinct companies (`name,domain`)."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("name,domain\n")
        handle.writelines(f"Company {i},{prefix}{i}.example\n" for i in range(rows))
    return path


@dataclass
class GlazeRun:
    """One `glaze enrich --json` process: its wall time, CPU time, peak RSS and summary."""

    wall_s: float
    cpu_s: float
    max_rss_mb: float
    summary: dict[str, Any]


def run_glaze(args: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> GlazeRun:
    """Run `python -m glaze_cli ARGS --json` and measure it from outside."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "glaze_cli", *args, "--json", "--no-progress"], cwd=cwd,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1, 3):
        raise SystemExit(f"glaze exited {proc.returncode}: {proc.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return GlazeRun(wall, cpu, after.ru_maxrss / 1024, json.loads(proc.stdout))


@dataclass
class ServerProcess:
    """The loopback provider running in its own process; `summary` is filled when it stops."""

    base_url: str
    summary: dict[str, Any]


@contextmanager
def provider_server(latency: float, jitter: float, synthesize: int, *extra: str) -> Iterator[ServerProcess]:
    """The loopback provider from tests/support in its own process (extra: more of its command-line flags)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.provider_server", "--port", "0", "--latency", str(latency),
         "--jitter", str(jitter), "--synthesize", str(synthesize), *extra],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    server = ServerProcess("", {})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"provider server did not start: {line!r}")
        server.base_url = line.removeprefix("listening on ")
        yield server
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        lines = [x for x in (out or "").splitlines() if x.startswith("{")]
        if lines:
            server.summary.update(json.loads(lines[-1]))


def median(values: Sequence[float]) -> float:
    """The median of a few repeated measurements."""
    return statistics.median(values)
