"""Row counters stay equal to a recount from tasks under any interleaving of queue operations."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from glaze_cli.models import CellResult, TaskStatus
from glaze_cli.store import Store

FIELDS = ("industry", "website", "employees")


class QueueMachine(RuleBasedStateMachine):
    """Claims, finishes, fails, releases and re-queues cells in random batches."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.sheet_path = Path(self.tmp.name) / "sheet.csv"
        self.store = Store(Path(self.tmp.name) / "glaze.duckdb")
        frame = pl.DataFrame({"domain": [f"d{i}.example" for i in range(8)], "name": [f"n{i}" for i in range(8)]})
        self.sheet_id = self.store.load_sheet(self.sheet_path, frame, "domain").sheet.sheet_id
        self.store.add_fields(self.sheet_id, FIELDS[:2], [])
        self.running: list[CellResult] = []
        self.fields = list(FIELDS[:2])

    def teardown(self) -> None:
        self.store.close()
        self.tmp.cleanup()

    @rule(limit=st.integers(1, 12))
    def claim(self, limit: int) -> None:
        """Claim a batch of queued cells."""
        for row in self.store.claim_batch(self.sheet_id, self.fields, "job", limit):
            self.running += [CellResult(c.task_id, c.row_id, TaskStatus.RUNNING) for c in row.cells]

    @rule(data=st.data())
    def finish_batch(self, data: st.DataObject) -> None:
        """Finish some running cells as done (with or without a value), failed, or released to the queue."""
        if not self.running:
            return
        count = data.draw(st.integers(1, len(self.running)))
        batch, self.running = self.running[:count], self.running[count:]
        outcomes = data.draw(st.lists(st.sampled_from(["filled", "empty", "failed", "released"]),
                                      min_size=count, max_size=count))
        results = []
        for cell, outcome in zip(batch, outcomes, strict=True):
            if outcome == "filled":
                results.append(CellResult(cell.task_id, cell.row_id, TaskStatus.DONE, "v", 0.75, "p"))
            elif outcome == "empty":
                results.append(CellResult(cell.task_id, cell.row_id, TaskStatus.DONE))
            elif outcome == "failed":
                results.append(CellResult(cell.task_id, cell.row_id, TaskStatus.FAILED, error="boom"))
            else:
                results.append(CellResult(cell.task_id, cell.row_id, TaskStatus.QUEUED))
        self.store.record_results("job", results, [])
        if data.draw(st.booleans()):
            # A result delivered twice must not count twice.
            self.store.record_results("job", results[:1], [])

    @rule(statuses=st.sampled_from([["failed"], ["done", "failed"], ["done"]]))
    def requeue(self, statuses: list[str]) -> None:
        """Re-queue finished cells, as --retry-failed and --refresh do."""
        self.store.requeue(self.sheet_id, self.fields, statuses)

    @rule()
    def crash_and_restart(self) -> None:
        """A run dies: its running cells go back to the queue when the next run starts.

        The cells stay in `self.running`, so their late results arrive for tasks no longer running.
        """
        self.store.requeue_running()

    @rule()
    def add_field(self) -> None:
        """A later run asks for one more field."""
        if len(self.fields) < len(FIELDS):
            self.fields.append(FIELDS[len(self.fields)])
            self.store.add_fields(self.sheet_id, self.fields, [])

    @rule(index=st.integers(0, 7))
    def change_row(self, index: int) -> None:
        """The sheet is reloaded with one row's values changed (its cells are enriched again)."""
        names = [f"n{i}" + ("x" if i == index else "") for i in range(8)]
        frame = pl.DataFrame({"domain": [f"d{i}.example" for i in range(8)], "name": names})
        self.store.load_sheet(self.sheet_path, frame, "domain")

    @invariant()
    def counters_match_recount(self) -> None:
        """Every row's counters and status equal a recount from its tasks."""
        drift = self.store.check_counters(self.sheet_id)
        assert (drift.rows, drift.examples) == (0, [])


QueueMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                          suppress_health_check=[HealthCheck.too_slow])
TestQueueCounters = QueueMachine.TestCase


def test_a_claim_takes_whole_rows(tmp_path: Path) -> None:
    """A claim that reaches its limit in the middle of a row takes the rest of that row too, so no row's
    provider is asked twice by one run (once per part)."""
    with Store(tmp_path / "glaze.duckdb") as store:
        frame = pl.DataFrame({"domain": [f"d{i}.example" for i in range(5)]})
        sheet_id = store.load_sheet(tmp_path / "sheet.csv", frame, "domain").sheet.sheet_id
        store.add_fields(sheet_id, FIELDS, [])
        first = store.claim_batch(sheet_id, FIELDS, "job", 4)
        assert [len(row.cells) for row in first] == [3, 3]
        after = max(cell.task_id for row in first for cell in row.cells)
        second = store.claim_batch(sheet_id, FIELDS, "job", 4, after=after)
        assert [len(row.cells) for row in second] == [3, 3]
        assert {row.row_id for row in first}.isdisjoint(row.row_id for row in second)
        assert store.check_counters(sheet_id).rows == 0


def test_two_results_for_one_task_in_one_batch_count_once(tmp_path: Path) -> None:
    """Found by the state machine above (once, in CI): a row claimed, re-queued by a restart and claimed again
    had both claims' results in one batch, and its counters counted a cell done twice. DuckDB's UPDATE ... FROM
    with two source rows for one task takes either, and its RETURNING can name the task twice; the store now
    keeps the first result of a task in a batch, which this test sees deterministically by the value."""
    with Store(tmp_path / "glaze.duckdb") as store:
        frame = pl.DataFrame({"domain": ["d0.example"]})
        sheet_id = store.load_sheet(tmp_path / "sheet.csv", frame, "domain").sheet.sheet_id
        store.add_fields(sheet_id, FIELDS[:2], [])
        (row,) = store.claim_batch(sheet_id, FIELDS[:2], "job", 1)
        store.requeue_running()
        store.claim_batch(sheet_id, FIELDS[:2], "job", 1)
        first, second = row.cells
        store.record_results("job", [CellResult(first.task_id, first.row_id, TaskStatus.DONE, "a", 0.5, "p"),
                                     CellResult(second.task_id, second.row_id, TaskStatus.DONE, "c", 0.5, "p"),
                                     CellResult(first.task_id, first.row_id, TaskStatus.DONE, "b", 0.9, "p")], [])
        drift = store.check_counters(sheet_id)
        assert (drift.rows, drift.examples) == (0, [])
        assert store.con.execute("SELECT value FROM tasks ORDER BY task_id").fetchall() == [("a",), ("c",)]
