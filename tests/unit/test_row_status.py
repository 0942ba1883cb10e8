"""Row status from counters, in Python and in the store's SQL, per the spec's table."""

from __future__ import annotations

import itertools

import duckdb
import pytest

from glaze_cli.models import RowStatus, row_status
from glaze_cli.store import status_sql


@pytest.mark.parametrize(("counters", "expected"), [
    ((0, 0, 0, 0), RowStatus.IDLE),
    ((3, 1, 0, 1), RowStatus.RUNNING),
    ((3, 3, 0, 0), RowStatus.DONE),
    ((3, 0, 3, 0), RowStatus.FAILED),
    ((3, 2, 1, 0), RowStatus.AMBIGUOUS),
    ((3, 1, 0, 0), RowStatus.QUEUED),
    ((3, 1, 1, 0), RowStatus.QUEUED),
    ((3, 0, 0, 0), RowStatus.QUEUED),
])
def test_row_status_table(counters: tuple[int, int, int, int], expected: RowStatus) -> None:
    """Each line of the spec's status table (total, done, failed, running)."""
    assert row_status(*counters) is expected


def test_sql_agrees_with_python() -> None:
    """The store's CASE expression gives the same status as row_status for every small combination."""
    combos = [(t, d, f, r) for t, d, f, r in itertools.product(range(4), repeat=4) if d + f + r <= t]
    con = duckdb.connect()
    con.execute("CREATE TABLE c (t INT, d INT, f INT, r INT)")
    con.executemany("INSERT INTO c VALUES (?, ?, ?, ?)", combos)
    got = con.execute(f"SELECT t, d, f, r, {status_sql('t', 'd', 'f', 'r')} FROM c ORDER BY t, d, f, r").fetchall()
    assert got == [(*c, str(row_status(*c))) for c in sorted(combos)]
