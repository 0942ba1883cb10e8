"""The live progress view, rendered into a recording console at 80 and 120 columns."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from glaze_cli.render import MAX_TABLE_ROWS, progress_line, progress_view
from glaze_cli.runner import ProviderStats, RunStats


def sample_stats() -> RunStats:
    stats = RunStats(total=200, done=120, failed=5, filled=100, spend=2.4, budget=10.0,
                     started=time.monotonic() - 10, field_totals={"industry": 100, "website": 100})
    stats.rows = {"queued": 40, "running": 3, "done": 50, "failed": 2, "ambiguous": 5}
    stats.fields = {"industry": {"done": 60, "failed": 5, "filled": 45}, "website": {"done": 60, "failed": 0,
                                                                                    "filled": 55}}
    stats.providers["acme_company_lookup_service"] = ProviderStats(
        limit=10, window=5, in_flight=4, calls=60, cache_hits=7, errors=5, retries=2, rate_limited=3, spend=2.4,
        circuit="closed")
    stats.providers["acme_company_lookup_service"].latencies_ms.extend([10.0, 30.0])
    return stats


def render(stats: RunStats, width: int) -> list[str]:
    console = Console(record=True, width=width, color_system=None)
    console.print(progress_view(stats))
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 120])
def test_progress_view_lines(width: int) -> None:
    """Bar with counts, rate and eta; row states and budget; a line per field and per provider."""
    lines = render(sample_stats(), width)
    assert lines[0].startswith("glaze ████████████░░░░░░░░ 125/200 cells 62.5%  12/s  eta ")
    assert lines[1] == "rows  queued 40  running 3  done 50  failed 2  ambiguous 5"
    assert lines[2] == "      budget left 7.60 of 10"
    del lines[2]
    assert lines[2].split() == ["field", "done", "filled", "failed"]
    assert lines[3].split() == ["industry", "60/100", "75%", "5"]
    assert lines[4].split() == ["website", "60/100", "92%", "0"]
    assert lines[5].split() == ["provider", "flight", "calls", "hits", "p50", "p95", "err", "429", "retry", "spend",
                                "circuit"]
    cells = lines[6].split()
    assert cells[1:] == ["4/5", "60", "7", "10", "30", "5", "3", "2", "2.40", "closed"]
    assert cells[0].startswith("acme_company")
    assert max(len(line) for line in lines) <= width


def test_progress_view_fits_24_lines() -> None:
    """Many fields and providers are cut to a few each, with a '+N more' line."""
    stats = sample_stats()
    for i in range(20):
        stats.fields[f"f{i}"] = {"done": 0, "failed": 0, "filled": 0}
        stats.providers[f"p{i}"] = ProviderStats(limit=1)
    lines = render(stats, 80)
    assert len(lines) <= 24
    assert lines[-2:] == [f"+{len(stats.fields) - MAX_TABLE_ROWS} more fields",
                          f"+{len(stats.providers) - MAX_TABLE_ROWS} more providers"]


def test_progress_line() -> None:
    """The plain log line for cron: time, cells, rate, failures, spend."""
    line = progress_line(sample_stats())
    assert line.split(" glaze: ")[1] == "125/200 cells, 12/s, 5 failed, spend 2.40"
