"""The live progress view, rendered into a recording console."""

from __future__ import annotations

from rich.console import Console

from glaze_cli.render import progress_view
from glaze_cli.runner import ProviderStats, RunStats


def test_progress_view_shows_cells_and_providers() -> None:
    """The view shows cells finished of the total, failures, and a line per provider, within 80 columns."""
    stats = RunStats(total=200, done=120, failed=5, filled=100)
    stats.providers["acme"] = ProviderStats(limit=10, calls=60, cache_hits=7, errors=5, latencies_ms=[10.0, 30.0])
    console = Console(record=True, width=80, color_system=None)
    console.print(progress_view(stats))
    lines = console.export_text().splitlines()
    assert lines[0].startswith("glaze 125/200 cells 62.5%")
    assert lines[1] == "done 120  failed 5  filled 100  spend 0.00"
    assert lines[3].split() == ["acme", "60", "7", "5", "0", "10", "30"]
    assert max(len(line) for line in lines) <= 80
