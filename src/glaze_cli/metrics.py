"""Prometheus text-format metrics for node_exporter's textfile collector, written atomically."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render_metrics(sheet: str, status: Mapping[str, Any], summary: Mapping[str, Any],
                   last_success: float | None) -> str:
    """The metrics text for one finished run: cells by field and status, calls, spend, duration, exit code."""
    label = f'sheet="{_escape(sheet)}"'
    lines = ["# HELP glaze_cells Cells of the sheet by field and status.", "# TYPE glaze_cells gauge"]
    for field, counts in status["fields"].items():
        for state in ("queued", "running", "done", "failed", "filled"):
            lines.append(f'glaze_cells{{{label},field="{_escape(field)}",status="{state}"}} {counts.get(state, 0)}')
    lines += ["# HELP glaze_provider_calls_total Provider calls made by the last run.",
              "# TYPE glaze_provider_calls_total counter"]
    lines += [f'glaze_provider_calls_total{{{label},provider="{_escape(p)}"}} {n}' for p, n in summary["calls"].items()]
    lines += ["# HELP glaze_cache_hits_total Answers the last run took from the cache or a shared call.",
              "# TYPE glaze_cache_hits_total counter"]
    lines += [f'glaze_cache_hits_total{{{label},provider="{_escape(p)}"}} {n}'
              for p, n in summary["cache_hits"].items()]
    lines += ["# HELP glaze_provider_latency_seconds Provider call latency quantiles over the sheet's calls.",
              "# TYPE glaze_provider_latency_seconds gauge"]
    for name, p in status.get("providers", {}).items():
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("0.99", "p99_ms")):
            lines.append(f'glaze_provider_latency_seconds{{{label},provider="{_escape(name)}",quantile="{q}"}} '
                         f"{(p.get(key) or 0) / 1000:.6f}")
    lines += ["# HELP glaze_provider_requests_total Provider requests recorded for the sheet, by outcome.",
              "# TYPE glaze_provider_requests_total counter"]
    lines += [f'glaze_provider_requests_total{{{label},provider="{_escape(n)}",outcome="{outcome}"}} {count}'
              for n, p in status.get("providers", {}).items() for outcome, count in p.get("outcomes", {}).items()]
    lines += ["# HELP glaze_provider_failures_total Failed provider calls recorded for the sheet.",
              "# TYPE glaze_provider_failures_total counter"]
    lines += [f'glaze_provider_failures_total{{{label},provider="{_escape(n)}"}} {p.get("failures", 0)}'
              for n, p in status.get("providers", {}).items()]
    lines += ["# HELP glaze_spend Spend of the last run (sum of provider cost).", "# TYPE glaze_spend gauge",
              f"glaze_spend{{{label}}} {summary['spend']}",
              "# HELP glaze_run_duration_seconds Wall time of the last run.", "# TYPE glaze_run_duration_seconds gauge",
              f"glaze_run_duration_seconds{{{label}}} {summary['duration_s']}",
              "# HELP glaze_running Whether a run is going on now.", "# TYPE glaze_running gauge",
              f"glaze_running{{{label}}} {1 if summary['exit_code'] is None else 0}",
              ]
    if summary["exit_code"] is not None:
        lines += ["# HELP glaze_last_run_timestamp_seconds When the last run ended.",
                  "# TYPE glaze_last_run_timestamp_seconds gauge",
                  f"glaze_last_run_timestamp_seconds{{{label}}} {time.time():.3f}",
                  "# HELP glaze_exit_code Exit code of the last run.", "# TYPE glaze_exit_code gauge",
                  f"glaze_exit_code{{{label}}} {summary['exit_code']}"]
    if last_success is not None:
        lines += ["# HELP glaze_last_success_timestamp_seconds When a run of this sheet last ended with exit code 0.",
                  "# TYPE glaze_last_success_timestamp_seconds gauge",
                  f"glaze_last_success_timestamp_seconds{{{label}}} {last_success:.3f}"]
    return "\n".join(lines) + "\n"


def write_metrics(path: Path, text: str) -> None:
    """Replace the metrics file atomically, so the collector never reads half a file."""
    write_text_atomically(path, text, mode=0o644)


def write_text_atomically(path: Path, text: str, mode: int = 0o600) -> None:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
