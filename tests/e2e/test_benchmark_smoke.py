"""The benchmark runs end to end at toy sizes, so it cannot rot (speed is never asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_benchmark_smoke(tmp_path: Path) -> None:
    """`python -m benchmarks.compare --smoke` writes its tables, figures and chart."""
    out = tmp_path / "results.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.compare", "--smoke", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == ["## Targets: before and now", "## Provider-bound", "## Concurrency sweep", "## Rate-limited",
                        "## Engine overhead", "## Scale"]
    assert "| scale: glaze reconcile s | <= 3 |" in text
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["provider_bound"]["glaze"]["calls"] == 300
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
