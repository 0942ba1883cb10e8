"""Row status from the counters alone: `row_status` against the spec's table, and the store's SQL against it."""

from __future__ import annotations

import itertools

import duckdb
import pytest

from glaze_cli.models import RowStatus, row_status
from glaze_cli.store import status_sql


def small_counters(max_total: int) -> list[tuple[int, int, int, int]]:
    """Every (total, done, failed, running) with total <= max_total and done + failed + running <= total."""
    return [(t, d, f, r) for t, d, f, r in itertools.product(range(max_total + 1), repeat=4) if d + f + r <= t]


@pytest.mark.parametrize(("total", "done", "failed", "running", "expected"), [
    pytest.param(0, 0, 0, 0, RowStatus.IDLE, id="idle: total = 0"),
    pytest.param(3, 0, 0, 1, RowStatus.RUNNING, id="running: running > 0"),
    pytest.param(3, 1, 1, 1, RowStatus.RUNNING, id="running: wins over done and failed cells"),
    pytest.param(3, 3, 0, 0, RowStatus.DONE, id="done: done = total"),
    pytest.param(1, 1, 0, 0, RowStatus.DONE, id="done: a single cell"),
    pytest.param(3, 0, 3, 0, RowStatus.FAILED, id="failed: failed = total"),
    pytest.param(3, 2, 1, 0, RowStatus.AMBIGUOUS, id="ambiguous: done and failed fill the row"),
    pytest.param(3, 0, 0, 0, RowStatus.QUEUED, id="queued: nothing started"),
    pytest.param(3, 2, 0, 0, RowStatus.QUEUED, id="queued: some done, rest not started"),
    pytest.param(3, 0, 2, 0, RowStatus.QUEUED, id="queued: some failed, rest not started"),
    pytest.param(3, 1, 1, 0, RowStatus.QUEUED, id="queued: done and failed, one not started"),
])
def test_row_status_follows_the_spec_table(total: int, done: int, failed: int, running: int,
                                           expected: RowStatus) -> None:
    """Each line of the spec's row-status table maps the counters to its status."""
    assert row_status(total, done, failed, running) is expected


def test_row_status_values_are_the_spec_words() -> None:
    """The statuses stored in `rows.status` are exactly the six words of the spec."""
    assert sorted(str(s) for s in RowStatus) == ["ambiguous", "done", "failed", "idle", "queued", "running"]


def test_status_sql_agrees_with_row_status() -> None:
    """The store's CASE expression, run by DuckDB, gives row_status's answer for every small set of counters."""
    combos = small_counters(4)
    con = duckdb.connect()
    con.execute("CREATE TABLE counters (t INTEGER, d INTEGER, f INTEGER, r INTEGER)")
    con.executemany("INSERT INTO counters VALUES (?, ?, ?, ?)", combos)
    got = con.execute(
        f"SELECT t, d, f, r, {status_sql('t', 'd', 'f', 'r')} FROM counters ORDER BY t, d, f, r"
    ).fetchall()
    assert got == [(*c, str(row_status(*c))) for c in sorted(combos)]


def test_status_sql_covers_every_status() -> None:
    """The small counters used above reach all six statuses, so the agreement check leaves none out."""
    assert {row_status(*c) for c in small_counters(3)} == set(RowStatus)
