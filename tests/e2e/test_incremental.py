"""Incremental re-runs with a key column: appended rows, edited rows and deleted rows, counted in calls."""

from __future__ import annotations

import csv
from pathlib import Path

from tests.support.provider_server import ProviderServer

CONFIG = """
[sheet]
key = "id"

[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry" }}
retries = 0
"""

ROWS = [
    ("1", "stripe.com", "first"),
    ("2", "siemens.com", "second"),
    ("3", "nestle.com", "third"),
]


def write(tmp_path: Path, rows: list[tuple[str, str, str]]) -> None:
    with open(tmp_path / "leads.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("id", "domain", "notes"), *rows])


def output(tmp_path: Path) -> list[tuple[str, str, str]]:
    with open(tmp_path / "leads.enriched.csv", newline="") as handle:
        return [(r["id"], r["domain"], r["industry"]) for r in csv.DictReader(handle)]


def enrich(glaze, *extra: str) -> dict:
    result = glaze("enrich", "leads.csv", "--fields", "industry", "--json", *extra)
    assert result.code == 0, result.stderr
    return result.json()


def setup(tmp_path: Path, server: ProviderServer, glaze) -> None:
    (tmp_path / "glaze.toml").write_text(CONFIG.format(base=server.base_url))
    write(tmp_path, ROWS)
    enrich(glaze)
    assert server.count("/v1/company") == 3


def test_unchanged_sheet_costs_no_call(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Running again on the same sheet makes no call and queues no cell."""
    setup(tmp_path, provider_server, glaze)
    summary = enrich(glaze)
    assert (summary["cells"], provider_server.count("/v1/company")) == (0, 3)


def test_appended_rows_get_tasks(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Rows appended to the sheet are enriched; the others are not asked again."""
    setup(tmp_path, provider_server, glaze)
    write(tmp_path, [*ROWS, ("4", "spotify.com", "fourth")])
    summary = enrich(glaze)
    assert (summary["new_rows"], summary["cells"], provider_server.count("/v1/company")) == (1, 1, 4)
    assert output(tmp_path)[-1] == ("4", "spotify.com", "Media")


def test_changed_input_requeues_the_cell(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A row whose domain changed is enriched again and its old value replaced."""
    setup(tmp_path, provider_server, glaze)
    write(tmp_path, [ROWS[0], ("2", "spotify.com", "second"), ROWS[2]])
    summary = enrich(glaze)
    assert (summary["changed_rows"], summary["cells"], provider_server.count("/v1/company", domain="spotify.com")) \
        == (1, 1, 1)
    assert output(tmp_path) == [("1", "stripe.com", "Financial services"), ("2", "spotify.com", "Media"),
                                ("3", "nestle.com", "Food and beverage")]


def test_change_outside_the_inputs_costs_no_call(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """Editing a column no provider reads keeps the row's cells done: no call, the new notes in the output."""
    setup(tmp_path, provider_server, glaze)
    write(tmp_path, [ROWS[0], ("2", "siemens.com", "edited"), ROWS[2]])
    summary = enrich(glaze)
    assert (summary["changed_rows"], summary["cells"], provider_server.count("/v1/company")) == (1, 0, 3)
    with open(tmp_path / "leads.enriched.csv", newline="") as handle:
        assert [r["notes"] for r in csv.DictReader(handle)] == ["first", "edited", "third"]


def test_deleted_rows_leave_status_and_export(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """A row gone from the sheet is marked removed: not counted in status, not in the output or the export."""
    setup(tmp_path, provider_server, glaze)
    write(tmp_path, [ROWS[0], ROWS[2]])
    summary = enrich(glaze)
    assert (summary["removed_rows"], summary["cells"], provider_server.count("/v1/company")) == (1, 0, 3)
    assert [r[0] for r in output(tmp_path)] == ["1", "3"]
    assert glaze("status", "--json").json()["sheets"][0]["rows"]["total"] == 2
    assert glaze("export", "leads.csv", "-o", "again.csv").code == 0
    with open(tmp_path / "again.csv", newline="") as handle:
        assert [r["id"] for r in csv.DictReader(handle)] == ["1", "3"]


def test_refresh_calls_again_ignoring_the_cache(tmp_path: Path, provider_server: ProviderServer, glaze) -> None:
    """--refresh re-enriches every cell of the field with new calls, not from the cache."""
    setup(tmp_path, provider_server, glaze)
    summary = enrich(glaze, "--refresh")
    assert (summary["cells"], summary["calls"]["acme"], provider_server.count("/v1/company")) == (3, 3, 6)
