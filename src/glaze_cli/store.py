"""The only owner of DuckDB: the workspace file, its schema, every query, and batched writes.

Every write is set-based: a batch of cells is one transaction of a few statements over an Arrow
frame, never a statement per cell. A PostgreSQL store can follow by implementing the same methods.
The methods that build frames import polars themselves: `glaze status` and `export` start without it (~0.1 s).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from glaze_cli.errors import StateError, WorkspaceBusy
from glaze_cli.models import CallRecord, CellResult, ClaimedCell, ClaimedRow

if TYPE_CHECKING:
    import polars as pl

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS sheets (
    sheet_id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, path VARCHAR NOT NULL UNIQUE,
    key_column VARCHAR, columns VARCHAR NOT NULL, fields VARCHAR NOT NULL DEFAULT '[]',
    loaded_at TIMESTAMP, row_count BIGINT DEFAULT 0);
CREATE TABLE IF NOT EXISTS rows (
    row_id BIGINT NOT NULL, sheet_id INTEGER NOT NULL, row_key VARCHAR NOT NULL, row_index BIGINT NOT NULL,
    data VARCHAR NOT NULL, data_hash VARCHAR NOT NULL, removed BOOLEAN NOT NULL DEFAULT false,
    total_tasks INTEGER NOT NULL DEFAULT 0, done_tasks INTEGER NOT NULL DEFAULT 0,
    failed_tasks INTEGER NOT NULL DEFAULT 0, running_tasks INTEGER NOT NULL DEFAULT 0,
    confidence_sum DOUBLE NOT NULL DEFAULT 0, status VARCHAR NOT NULL DEFAULT 'idle');
CREATE TABLE IF NOT EXISTS tasks (
    task_id BIGINT NOT NULL, row_id BIGINT NOT NULL, sheet_id INTEGER NOT NULL, field VARCHAR NOT NULL,
    status VARCHAR NOT NULL, value VARCHAR, confidence DOUBLE, provider VARCHAR,
    attempts INTEGER NOT NULL DEFAULT 0, error VARCHAR, job_id VARCHAR, updated_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS jobs (
    job_id VARCHAR PRIMARY KEY, sheet_id INTEGER, fields VARCHAR, started_at TIMESTAMP,
    finished_at TIMESTAMP, total_tasks BIGINT DEFAULT 0, done_tasks BIGINT DEFAULT 0,
    failed_tasks BIGINT DEFAULT 0, calls BIGINT DEFAULT 0, cache_hits BIGINT DEFAULT 0,
    spend DOUBLE DEFAULT 0, exit_code INTEGER, pid INTEGER, argv VARCHAR);
CREATE TABLE IF NOT EXISTS provider_calls (
    job_id VARCHAR, provider VARCHAR NOT NULL, outcome VARCHAR NOT NULL, http_status INTEGER,
    latency_ms DOUBLE, attempt INTEGER, cost DOUBLE, cache_hit BOOLEAN NOT NULL, error VARCHAR,
    called_at TIMESTAMP);
"""


def status_sql(total: str, done: str, failed: str, running: str) -> str:
    """The spec's row-status table as a SQL CASE over counter expressions (kept in step with models.row_status)."""
    return (
        f"CASE WHEN ({total}) = 0 THEN 'idle' WHEN ({running}) > 0 THEN 'running' "
        f"WHEN ({done}) = ({total}) THEN 'done' WHEN ({failed}) = ({total}) THEN 'failed' "
        f"WHEN ({done}) > 0 AND ({failed}) > 0 AND ({done}) + ({failed}) = ({total}) THEN 'ambiguous' "
        "ELSE 'queued' END"
    )


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class SheetInfo:
    """A loaded sheet as the store knows it."""

    sheet_id: int
    name: str
    path: str
    key_column: str | None
    columns: list[str]
    fields: list[str]


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What loading a sheet changed."""

    sheet: SheetInfo
    rows: int
    new_rows: int
    changed_rows: int
    removed_rows: int


@dataclass(frozen=True, slots=True)
class Drift:
    """Rows whose stored counters disagree with a recount from tasks."""

    rows: int
    examples: list[dict[str, Any]]


class Store:
    """The workspace's DuckDB file; one instance per process, used by one thread at a time."""

    def __init__(self, path: Path, *, read_only: bool = False, wait: float = 0.0) -> None:
        """Open (and migrate) the file; `wait` s of retries when another process has it open briefly."""
        self.path = path
        deadline = time.monotonic() + wait
        while True:
            try:
                self.con = _CountingConnection(duckdb.connect(str(path), read_only=read_only))
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StateError(f"{path}: cannot open the state file ({exc})") from None
                if time.monotonic() >= deadline:
                    raise WorkspaceBusy(
                        f"workspace {path.parent} is busy: another process has {path.name} open; "
                        "wait for it to finish or pass --wait"
                    ) from None
                time.sleep(0.1)
        if not read_only:
            self._migrate()

    def close(self) -> None:
        """Checkpoint and close the file (a checkpoint the disk refuses is left to the next open: the WAL has it)."""
        with contextlib.suppress(duckdb.Error):
            self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        with self._transaction():
            self.con.execute(_SCHEMA)
            # Version 2: the sheet columns each field's providers read, so an edit re-queues only what it affects.
            self.con.execute("ALTER TABLE sheets ADD COLUMN IF NOT EXISTS field_inputs VARCHAR DEFAULT '{}'")
            self.con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [str(SCHEMA_VERSION)],
            )

    def _transaction(self) -> _Transaction:
        return _Transaction(self.con, self.path)

    def _frame(self, sql: str, params: Sequence[Any] | None = None) -> pl.DataFrame:
        import polars as pl

        return pl.DataFrame(self.con.sql(sql, params=list(params or [])))

    def _dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """A small result as dicts (no Arrow round trip: status answers in a few milliseconds)."""
        cursor = self.con.execute(sql, list(params or []))
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    # ---- sheets and rows -------------------------------------------------------------------

    def find_sheet(self, path_or_name: str) -> SheetInfo | None:
        """A loaded sheet by resolved path or by name (the newest when names repeat)."""
        resolved = str(Path(path_or_name).resolve())
        row = self.con.execute(
            "SELECT sheet_id, name, path, key_column, columns, fields FROM sheets "
            "WHERE path = ? OR name = ? ORDER BY (path = ?) DESC, loaded_at DESC LIMIT 1",
            [resolved, path_or_name, resolved],
        ).fetchall()
        return _sheet_info(row[0]) if row else None

    def sheets(self) -> list[SheetInfo]:
        """Every loaded sheet, oldest first."""
        rows = self.con.execute(
            "SELECT sheet_id, name, path, key_column, columns, fields FROM sheets ORDER BY sheet_id"
        ).fetchall()
        return [_sheet_info(r) for r in rows]

    def load_sheet(self, path: Path, frame: pl.DataFrame, key_column: str | None,
                   field_inputs: Mapping[str, Sequence[str]] | None = None) -> LoadReport:
        """Insert new rows, refresh known ones (matched by identity), mark missing ones removed.

        `field_inputs` names the columns each field's providers read: when a known row's values change, only
        the cells of fields whose inputs changed are queued again (fields never described: any change).
        """
        import polars as pl

        resolved = str(path.resolve())
        columns = frame.columns
        incoming = frame.select(
            pl.int_range(0, frame.height, dtype=pl.Int64).alias("row_index"),
            (pl.col(key_column) if key_column else pl.lit(None, dtype=pl.String)).alias("key_value"),
            pl.struct(pl.all()).struct.json_encode().alias("data"),
        )
        with self._transaction():
            existing = self.con.execute("SELECT sheet_id, field_inputs FROM sheets WHERE path = ?",
                                        [resolved]).fetchall()
            inputs = {**json.loads(existing[0][1] or "{}"), **(field_inputs or {})} if existing else \
                dict(field_inputs or {})
            if existing:
                sheet_id = existing[0][0]
                self.con.execute(
                    "UPDATE sheets SET columns = ?, key_column = ?, loaded_at = now(), row_count = ?, "
                    "field_inputs = ? WHERE sheet_id = ?",
                    [json.dumps(columns), key_column, frame.height, json.dumps(inputs), sheet_id],
                )
            else:
                sheet_id = self.con.execute("SELECT coalesce(max(sheet_id), 0) + 1 FROM sheets").fetchall()[0][0]
                self.con.execute(
                    "INSERT INTO sheets (sheet_id, name, path, key_column, columns, loaded_at, row_count, "
                    "field_inputs) VALUES (?, ?, ?, ?, ?, now(), ?, ?)",
                    [sheet_id, path.stem, resolved, key_column, json.dumps(columns), frame.height,
                     json.dumps(inputs)],
                )
            self.con.register("_incoming_raw", incoming)
            # Without a key column a row is known by a hash of its values; repeats get an ordinal.
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE _incoming AS SELECT row_index, data, md5(data) AS data_hash, "
                "coalesce(key_value, md5(data) || '#' || "
                "row_number() OVER (PARTITION BY md5(data) ORDER BY row_index)) AS row_key "
                "FROM _incoming_raw"
            )
            self.con.unregister("_incoming_raw")
            changed = removed = 0
            if existing:
                changed, removed = self._refresh_known_rows(sheet_id, inputs)
            new_rows = self.con.execute(
                "INSERT INTO rows (row_id, sheet_id, row_key, row_index, data, data_hash) "
                "SELECT (SELECT coalesce(max(row_id), 0) FROM rows) + row_number() OVER (ORDER BY i.row_index), "
                "?, i.row_key, i.row_index, i.data, i.data_hash FROM _incoming i "
                "WHERE NOT EXISTS (SELECT 1 FROM rows r WHERE r.sheet_id = ? AND r.row_key = i.row_key)",
                [sheet_id, sheet_id],
            ).fetchall()[0][0]
            self.con.execute("DROP TABLE _incoming")
        sheet = self.find_sheet(resolved)
        assert sheet is not None
        return LoadReport(sheet, frame.height, new_rows, changed, removed)

    def _refresh_known_rows(self, sheet_id: int, inputs: Mapping[str, Sequence[str]]) -> tuple[int, int]:
        """Inside load_sheet, for a sheet loaded before: update the rows it already has from `_incoming`, queue
        again what their changes call for, and mark rows gone from the sheet removed; (changed, removed)."""
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _changed AS SELECT r.row_id, r.data AS old_data, i.data AS new_data "
            "FROM rows r JOIN _incoming i USING (row_key) WHERE r.sheet_id = ? AND r.data_hash <> i.data_hash",
            [sheet_id],
        )
        changed = self.con.execute("SELECT count(*) FROM _changed").fetchall()[0][0]
        self.con.execute(
            "UPDATE rows SET row_index = i.row_index, data = i.data, data_hash = i.data_hash, removed = false "
            "FROM _incoming i WHERE rows.sheet_id = ? AND rows.row_key = i.row_key "
            "AND (rows.data_hash <> i.data_hash OR rows.row_index <> i.row_index OR rows.removed)",
            [sheet_id],
        )
        removed = self.con.execute(
            "UPDATE rows SET removed = true WHERE sheet_id = ? AND NOT removed "
            "AND row_key NOT IN (SELECT row_key FROM _incoming)",
            [sheet_id],
        ).fetchall()[0][0]
        self._requeue_changed(inputs)
        self.con.execute("DROP TABLE _changed")
        return changed, removed

    def _requeue_changed(self, inputs: Mapping[str, Sequence[str]]) -> None:
        """Inside load_sheet: queue again the cells of changed rows whose inputs changed, and cells the sheet
        used to fill itself but now leaves empty."""
        import polars as pl

        pairs = [(name, column) for name, columns in inputs.items() for column in columns]
        self.con.register("_known_fields", pl.DataFrame({"field": list(inputs)}, schema={"field": pl.String}))
        self.con.register("_field_inputs", pl.DataFrame({"field": [p[0] for p in pairs],
                                                         "col": [p[1] for p in pairs]},
                                                        schema={"field": pl.String, "col": pl.String}))
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE _affected AS SELECT t.task_id FROM tasks t JOIN _changed c USING (row_id) "
            "WHERE t.status IN ('done', 'failed') AND CASE WHEN t.provider = 'sheet' "
            "THEN nullif(json_extract_string(c.new_data, '$.' || to_json(t.field)), '') IS NULL "
            "ELSE t.field NOT IN (SELECT field FROM _known_fields) OR EXISTS (SELECT 1 FROM _field_inputs f "
            "WHERE f.field = t.field AND json_extract_string(c.old_data, '$.' || to_json(f.col)) "
            "IS DISTINCT FROM json_extract_string(c.new_data, '$.' || to_json(f.col))) END"
        )
        self.con.unregister("_known_fields")
        self.con.unregister("_field_inputs")
        self._requeue_tasks("task_id IN (SELECT task_id FROM _affected)", [])
        self.con.execute("DROP TABLE _affected")

    def add_fields(self, sheet_id: int, fields: Sequence[str], present: Sequence[str]) -> int:
        """Create the missing (row, field) tasks set-based; cells the sheet already fills are done at once.

        Returns how many tasks were created.
        """
        import polars as pl

        known = json.loads(self.con.execute("SELECT fields FROM sheets WHERE sheet_id = ?",
                                            [sheet_id]).fetchall()[0][0])
        fields_frame = pl.DataFrame({
            "field": list(fields),
            "field_order": list(range(len(fields))),
            "in_sheet": [f in present for f in fields],
        })
        with self._transaction():
            self.con.execute(
                "UPDATE sheets SET fields = ? WHERE sheet_id = ?",
                [json.dumps(known + [f for f in fields if f not in known]), sheet_id],
            )
            self.con.register("_fields", fields_frame)
            self.con.execute(
                "CREATE OR REPLACE TEMP TABLE _new_tasks AS "
                "SELECT r.row_id, f.field, f.field_order, r.row_index, "
                "CASE WHEN f.in_sheet THEN nullif(json_extract_string(r.data, '$.' || to_json(f.field)), '') "
                "END AS preset FROM rows r CROSS JOIN _fields f "
                "WHERE r.sheet_id = ? AND NOT r.removed AND NOT EXISTS "
                "(SELECT 1 FROM tasks t WHERE t.row_id = r.row_id AND t.field = f.field)",
                [sheet_id],
            )
            self.con.unregister("_fields")
            created = self.con.execute(
                "INSERT INTO tasks (task_id, row_id, sheet_id, field, status, value, confidence, provider, updated_at) "
                "SELECT (SELECT coalesce(max(task_id), 0) FROM tasks) "
                "+ row_number() OVER (ORDER BY row_index, field_order), row_id, ?, field, "
                "CASE WHEN preset IS NULL THEN 'queued' ELSE 'done' END, preset, "
                "CASE WHEN preset IS NULL THEN NULL ELSE 1.0 END, "
                "CASE WHEN preset IS NULL THEN NULL ELSE 'sheet' END, now() FROM _new_tasks",
                [sheet_id],
            ).fetchall()[0][0]
            self._apply_row_deltas(
                "SELECT row_id, count(*) AS d_total, count(preset) AS d_done, 0 AS d_failed, 0 AS d_running, "
                "count(preset) * 1.0 AS d_conf FROM _new_tasks GROUP BY row_id"
            )
            self.con.execute("DROP TABLE _new_tasks")
        return created

    def _apply_row_deltas(self, deltas_sql: str, params: Sequence[Any] | None = None,
                          row_range: tuple[int, int] | None = None) -> None:
        """Add counter deltas (row_id, d_total, d_done, d_failed, d_running, d_conf) and restate status.

        `row_range` (lowest, highest row_id touched) lets DuckDB skip the rest of the table by its zone maps.
        """
        total = "rows.total_tasks + d.d_total"
        done = "rows.done_tasks + d.d_done"
        failed = "rows.failed_tasks + d.d_failed"
        running = "rows.running_tasks + d.d_running"
        bounded = " AND rows.row_id BETWEEN ? AND ?" if row_range else ""
        self.con.execute(
            f"UPDATE rows SET total_tasks = {total}, done_tasks = {done}, failed_tasks = {failed}, "
            f"running_tasks = {running}, confidence_sum = rows.confidence_sum + d.d_conf, "
            f"status = {status_sql(total, done, failed, running)} "
            f"FROM ({deltas_sql}) d WHERE rows.row_id = d.row_id{bounded}",
            [*(params or []), *(row_range or ())],
        )

    # ---- queue -----------------------------------------------------------------------------

    def requeue_running(self) -> int:
        """Return cells left `running` by a run that died to `queued`, counters corrected."""
        # Most runs follow a clean stop: one look then, instead of a transaction of five statements (~15 ms).
        if not self.con.execute("SELECT 1 FROM tasks WHERE status = 'running' LIMIT 1").fetchall():
            return 0
        return self._requeue("status = 'running'", [])

    def requeue(self, sheet_id: int, fields: Sequence[str], statuses: Sequence[str]) -> int:
        """Put cells of `fields` in `statuses` back in the queue (for --retry-failed and --refresh)."""
        if not fields or not statuses:
            return 0
        return self._requeue(
            f"sheet_id = ? AND provider IS DISTINCT FROM 'sheet' AND field IN ({_marks(fields)}) "
            f"AND status IN ({_marks(statuses)})",
            [sheet_id, *fields, *statuses],
        )

    def _requeue(self, where: str, params: list[Any]) -> int:
        with self._transaction():
            return self._requeue_tasks(where, params)

    def _requeue_tasks(self, where: str, params: list[Any]) -> int:
        """Inside a transaction: tasks matching `where` back to `queued`, row counters corrected."""
        self.con.execute(
            f"CREATE OR REPLACE TEMP TABLE _requeue AS SELECT task_id, row_id, status, "
            f"coalesce(confidence, 0) AS confidence FROM tasks WHERE {where}",
            params,
        )
        count = self.con.execute(
            "UPDATE tasks SET status = 'queued', value = NULL, confidence = NULL, provider = NULL, "
            "error = NULL, updated_at = now() FROM _requeue q WHERE tasks.task_id = q.task_id"
        ).fetchall()[0][0]
        self._apply_row_deltas(
            "SELECT row_id, 0 AS d_total, -count(*) FILTER (status = 'done') AS d_done, "
            "-count(*) FILTER (status = 'failed') AS d_failed, "
            "-count(*) FILTER (status = 'running') AS d_running, "
            "-coalesce(sum(confidence) FILTER (status = 'done'), 0) AS d_conf FROM _requeue GROUP BY row_id"
        )
        self.con.execute("DROP TABLE _requeue")
        return count

    def cell_counts(self, sheet_id: int, fields: Sequence[str], max_row_index: int | None = None) -> dict[str, int]:
        """Cells of these fields (in rows still in the sheet) by status."""
        index_filter, params = _before_row(max_row_index)
        counts = dict(self.con.execute(
            f"SELECT t.status, count(*) FROM tasks t JOIN rows r USING (row_id) WHERE t.sheet_id = ? "
            f"AND NOT r.removed AND t.field IN ({_marks(fields)}) {index_filter} GROUP BY t.status",
            [sheet_id, *fields, *params],
        ).fetchall())
        return {status: counts.get(status, 0) for status in ("queued", "running", "done", "failed")}

    def queued_by_field(self, sheet_id: int, fields: Sequence[str],
                        max_row_index: int | None = None) -> dict[str, int]:
        """Queued cells of each of these fields (in rows still in the sheet), in one scan."""
        index_filter, params = _before_row(max_row_index)
        counts = dict(self.con.execute(
            f"SELECT t.field, count(*) FROM tasks t JOIN rows r USING (row_id) WHERE t.sheet_id = ? "
            f"AND t.status = 'queued' AND NOT r.removed AND t.field IN ({_marks(fields)}) {index_filter} "
            "GROUP BY t.field",
            [sheet_id, *fields, *params],
        ).fetchall())
        return {name: counts.get(name, 0) for name in fields}

    def queued_inputs(self, sheet_id: int, fields: Sequence[str],
                      max_row_index: int | None = None) -> list[tuple[dict[str, str | None], list[str]]]:
        """(row values, queued fields) of rows with queued cells of these fields (for --dry-run)."""
        index_filter, params = _before_row(max_row_index)
        rows = self.con.execute(
            f"SELECT r.data, list(t.field ORDER BY t.field) FROM tasks t "
            f"JOIN rows r USING (row_id) WHERE t.sheet_id = ? AND t.status = 'queued' AND NOT r.removed "
            f"AND t.field IN ({_marks(fields)}) {index_filter} GROUP BY r.row_id, r.data ORDER BY r.row_id",
            [sheet_id, *fields, *params],
        ).fetchall()
        return [(json.loads(data), names) for data, names in rows]

    def claim_batch(self, sheet_id: int, fields: Sequence[str], job_id: str, limit: int,
                    max_row_index: int | None = None, after: int = 0) -> list[ClaimedRow]:
        """Mark about `limit` queued cells with a task_id above `after` running, in one transaction, and return
        them grouped by row, whole rows only (a run passes the highest task_id it claimed so far).

        Tasks are numbered row by row, so a claim looks at a window of ids past `after` first and at the rest
        only when the window holds none: no claim scans the whole table.
        """
        rows_filter = "AND row_index < ?" if max_row_index is not None else ""
        window = 8 * limit
        with self._transaction():
            for upper in (after + window, None):
                params: list[Any] = [sheet_id, after, *([upper] if upper is not None else []), *fields, sheet_id,
                                     *([max_row_index] if max_row_index is not None else [])]
                self.con.execute(
                    "CREATE OR REPLACE TEMP TABLE _claim AS SELECT t.task_id, t.row_id, t.field FROM tasks t "
                    "WHERE t.sheet_id = ? AND t.status = 'queued' AND t.task_id > ? "
                    f"{'AND t.task_id <= ? ' if upper is not None else ''}AND t.field IN ({_marks(fields)}) "
                    f"AND t.row_id IN (SELECT row_id FROM rows WHERE sheet_id = ? AND NOT removed {rows_filter}) "
                    f"ORDER BY t.task_id LIMIT {int(limit)}",
                    params,
                )
                # The rest of the last row's cells too, so no row is split between two claims (its second
                # part would ask the same provider again, if only of the cache).
                self.con.execute(
                    "INSERT INTO _claim SELECT t.task_id, t.row_id, t.field FROM tasks t, "
                    "(SELECT row_id, task_id FROM _claim ORDER BY task_id DESC LIMIT 1) last "
                    "WHERE t.row_id = last.row_id AND t.task_id > last.task_id AND t.status = 'queued' "
                    f"AND t.field IN ({_marks(fields)})",
                    list(fields),
                )
                bounds = self.con.execute(
                    "SELECT min(task_id), max(task_id), min(row_id), max(row_id) FROM _claim").fetchall()[0]
                if bounds[0] is not None:
                    break
            else:
                self.con.execute("DROP TABLE _claim")
                return []
            low_task, high_task, low_row, high_row = bounds
            self.con.execute(
                "UPDATE tasks SET status = 'running', attempts = attempts + 1, job_id = ?, updated_at = now() "
                "FROM _claim c WHERE tasks.task_id = c.task_id AND tasks.task_id BETWEEN ? AND ?",
                [job_id, low_task, high_task],
            )
            self._apply_row_deltas(
                "SELECT row_id, 0 AS d_total, 0 AS d_done, 0 AS d_failed, count(*) AS d_running, "
                "0.0 AS d_conf FROM _claim GROUP BY row_id", row_range=(low_row, high_row)
            )
            claimed = self.con.execute(
                "SELECT c.row_id, r.data, list(c.task_id ORDER BY c.task_id), list(c.field ORDER BY c.task_id) "
                "FROM _claim c JOIN rows r ON r.row_id = c.row_id AND r.row_id BETWEEN ? AND ? "
                "GROUP BY c.row_id, r.data ORDER BY c.row_id",
                [low_row, high_row],
            ).fetchall()
            self.con.execute("DROP TABLE _claim")
        return [
            ClaimedRow(row_id, json.loads(data),
                       tuple(ClaimedCell(tid, row_id, f) for tid, f in zip(task_ids, names, strict=True)))
            for row_id, data, task_ids, names in claimed
        ]

    def record_results(self, job_id: str | None, results: Sequence[CellResult],
                       calls: Sequence[CallRecord]) -> None:
        """One transaction: finished cells, row counter deltas, job counters and provider call records.

        A result whose task is no longer `running` is ignored, and so is a second result for one task in the
        same batch (the first wins), so counters cannot double-count.
        """
        import polars as pl

        if len({r.task_id for r in results}) < len(results):
            first: dict[int, CellResult] = {}
            for result in results:
                first.setdefault(result.task_id, result)
            results = list(first.values())
        with self._transaction():
            if results:
                frame = pl.DataFrame(
                    {
                        "task_id": [r.task_id for r in results],
                        "status": [str(r.status) for r in results],
                        "value": [r.value for r in results],
                        "confidence": [r.confidence for r in results],
                        "provider": [r.provider for r in results],
                        "error": [r.error for r in results],
                    },
                    schema={"task_id": pl.Int64, "status": pl.String, "value": pl.String,
                            "confidence": pl.Float64, "provider": pl.String, "error": pl.String},
                )
                self.con.register("_results", frame)
                task_ids = [r.task_id for r in results]
                row_ids = [r.row_id for r in results]
                applied = self.con.sql(
                    "UPDATE tasks SET status = r.status, value = r.value, confidence = r.confidence, "
                    "provider = r.provider, error = r.error, updated_at = now() FROM _results r "
                    "WHERE tasks.task_id = r.task_id AND tasks.status = 'running' AND tasks.task_id BETWEEN ? AND ? "
                    "RETURNING tasks.row_id, tasks.status, coalesce(tasks.confidence, 0) AS confidence",
                    params=[min(task_ids), max(task_ids)],
                )
                applied = pl.DataFrame(applied)
                self.con.unregister("_results")
                self.con.register("_applied", applied)
                self._apply_row_deltas(
                    "SELECT row_id, 0 AS d_total, count(*) FILTER (status = 'done') AS d_done, "
                    "count(*) FILTER (status = 'failed') AS d_failed, -count(*) AS d_running, "
                    "coalesce(sum(confidence) FILTER (status = 'done'), 0) AS d_conf "
                    "FROM _applied GROUP BY row_id", row_range=(min(row_ids), max(row_ids))
                )
                if job_id is not None:
                    self.con.execute(
                        "UPDATE jobs SET done_tasks = done_tasks + (SELECT count(*) FROM _applied "
                        "WHERE status = 'done'), failed_tasks = failed_tasks + (SELECT count(*) FROM _applied "
                        "WHERE status = 'failed') WHERE job_id = ?",
                        [job_id],
                    )
                self.con.unregister("_applied")
            if calls:
                self._insert_calls(job_id, calls)

    def _insert_calls(self, job_id: str | None, calls: Sequence[CallRecord]) -> None:
        import polars as pl

        frame = pl.DataFrame(
            {
                "provider": [c.provider for c in calls],
                "outcome": [c.outcome for c in calls],
                "http_status": [c.http_status for c in calls],
                "latency_ms": [c.latency_ms for c in calls],
                "attempt": [c.attempt for c in calls],
                "cost": [c.cost for c in calls],
                "cache_hit": [c.cache_hit for c in calls],
                "error": [c.error for c in calls],
                "called_at": [c.at for c in calls],
            },
            schema={"provider": pl.String, "outcome": pl.String, "http_status": pl.Int32,
                    "latency_ms": pl.Float64, "attempt": pl.Int32, "cost": pl.Float64,
                    "cache_hit": pl.Boolean, "error": pl.String, "called_at": pl.Float64},
        )
        self.con.register("_calls", frame)
        self.con.execute(
            "INSERT INTO provider_calls SELECT ?, provider, outcome, http_status, latency_ms, attempt, cost, "
            "cache_hit, error, to_timestamp(called_at) FROM _calls",
            [job_id],
        )
        if job_id is not None:
            self.con.execute(
                "UPDATE jobs SET calls = jobs.calls + s.calls, cache_hits = jobs.cache_hits + s.hits, "
                "spend = jobs.spend + s.spend FROM (SELECT count(*) FILTER (NOT cache_hit) AS calls, "
                "count(*) FILTER (cache_hit) AS hits, coalesce(sum(cost), 0) AS spend FROM _calls) s "
                "WHERE job_id = ?",
                [job_id],
            )
        self.con.unregister("_calls")

    # ---- jobs ------------------------------------------------------------------------------

    def start_job(self, job_id: str, sheet_id: int, fields: Sequence[str], total: int,
                  argv: Sequence[str]) -> None:
        """Record the start of a `glaze enrich` run."""
        self.con.execute(
            "INSERT INTO jobs (job_id, sheet_id, fields, started_at, total_tasks, pid, argv) "
            "VALUES (?, ?, ?, now(), ?, ?, ?)",
            [job_id, sheet_id, json.dumps(list(fields)), total, os.getpid(), json.dumps(list(argv))],
        )

    def finish_job(self, job_id: str, exit_code: int) -> None:
        """Record how a run ended."""
        self.con.execute("UPDATE jobs SET finished_at = now(), exit_code = ? WHERE job_id = ?",
                         [exit_code, job_id])

    def last_job_hits(self) -> dict[str, Any] | None:
        """Calls and cache hits of the newest job, and its hit rate."""
        rows = self.con.execute(
            "SELECT job_id, calls, cache_hits FROM jobs ORDER BY started_at DESC LIMIT 1").fetchall()
        if not rows:
            return None
        job_id, calls, hits = rows[0]
        return {"job_id": job_id, "calls": calls, "cache_hits": hits,
                "hit_rate": round(hits / (calls + hits), 4) if calls + hits else 0.0}

    def last_success(self, sheet_id: int) -> float | None:
        """Unix time at which a run of this sheet last ended with exit code 0."""
        return self.con.execute(
            "SELECT max(epoch(finished_at::TIMESTAMPTZ)) FROM jobs WHERE sheet_id = ? AND exit_code = 0", [sheet_id]
        ).fetchall()[0][0]

    def job(self, job_id: str) -> dict[str, Any]:
        """One job's counters."""
        return self._dicts("SELECT * FROM jobs WHERE job_id = ?", [job_id])[0]

    # ---- reading ---------------------------------------------------------------------------

    def status(self, sheet: SheetInfo) -> dict[str, Any]:
        """The spec's `glaze status --json` entry for one sheet."""
        sid = sheet.sheet_id
        row_counts = dict(self.con.execute(
            "SELECT status, count(*) FROM rows WHERE sheet_id = ? AND NOT removed GROUP BY status", [sid]
        ).fetchall())
        rows = {"total": sum(row_counts.values())}
        rows.update({s: row_counts.get(s, 0) for s in ("idle", "queued", "running", "done", "failed", "ambiguous")})
        per_field = self._dicts(
            "SELECT t.field, count(*) FILTER (t.status = 'queued') AS queued, "
            "count(*) FILTER (t.status = 'running') AS running, count(*) FILTER (t.status = 'done') AS done, "
            "count(*) FILTER (t.status = 'failed') AS failed, "
            "count(*) FILTER (t.status = 'done' AND t.value IS NOT NULL) AS filled, count(*) AS total "
            "FROM tasks t WHERE t.sheet_id = ? AND t.row_id NOT IN "
            "(SELECT row_id FROM rows WHERE sheet_id = ? AND removed) GROUP BY t.field",
            [sid, sid],
        )
        by_field = {r["field"]: r for r in per_field}
        ordered = [f for f in sheet.fields if f in by_field] + sorted(set(by_field) - set(sheet.fields))
        keys = ("total", "queued", "running", "done", "failed", "filled")
        tasks = {k: sum(by_field[f][k] for f in ordered) for k in keys}
        fields = {f: {k: by_field[f][k] for k in ("done", "failed", "filled", "queued", "running", "total")}
                  for f in ordered}
        jobs = self._dicts(
            "SELECT job_id, started_at, finished_at, exit_code, total_tasks, done_tasks, failed_tasks, calls, "
            "cache_hits, spend FROM jobs WHERE sheet_id = ? ORDER BY started_at DESC LIMIT 1", [sid]
        )
        last_job = None
        if jobs:
            job = jobs[0]
            last_job = {"id": job["job_id"],
                        "started_at": _iso(job["started_at"]), "finished_at": _iso(job["finished_at"]),
                        "exit_code": job["exit_code"], "total_tasks": job["total_tasks"],
                        "done_tasks": job["done_tasks"], "failed_tasks": job["failed_tasks"],
                        "calls": job["calls"], "cache_hits": job["cache_hits"], "spend": job["spend"]}
        return {"name": sheet.name, "path": sheet.path, "sheet_id": sid, "key": sheet.key_column, "rows": rows,
                "tasks": tasks,
                "fields": fields, "providers": self.provider_stats(sid), "last_job": last_job}

    def provider_stats(self, sheet_id: int | None = None) -> dict[str, dict[str, Any]]:
        """Calls, cache hits, failures, retries, latency quantiles and cost per provider."""
        where, params = ("WHERE j.sheet_id = ?", [sheet_id]) if sheet_id is not None else ("", [])
        found = self._dicts(
            "SELECT c.provider, count(*) FILTER (NOT c.cache_hit) AS calls, "
            "count(*) FILTER (c.cache_hit) AS cache_hits, "
            "count(*) FILTER (NOT c.cache_hit AND c.outcome = 'error') AS failures, "
            "count(*) FILTER (NOT c.cache_hit AND c.outcome = 'ok') AS answered, "
            "count(*) FILTER (NOT c.cache_hit AND c.outcome = 'not_found') AS not_found, "
            "count(*) FILTER (NOT c.cache_hit AND c.attempt > 1) AS retries, "
            "quantile_cont(c.latency_ms, [0.5, 0.95, 0.99]) FILTER (NOT c.cache_hit) AS quantiles, "
            "coalesce(sum(c.cost), 0) AS cost "
            f"FROM provider_calls c LEFT JOIN jobs j USING (job_id) {where} GROUP BY c.provider ORDER BY c.provider",
            params,
        )
        out = {}
        for r in found:
            name = r.pop("provider")
            quantiles = r.pop("quantiles") or [None, None, None]
            for q, value in zip(("p50_ms", "p95_ms", "p99_ms"), quantiles, strict=True):
                r[q] = round(value or 0.0, 1)
            r["cost"] = round(r["cost"], 6)
            r["outcomes"] = {"ok": r.pop("answered"), "not_found": r.pop("not_found"), "error": r["failures"]}
            out[name] = r
        return out

    def copy_export(self, sheet: SheetInfo, path: Path, fmt: str, *, with_meta: bool = False,
                    formula_guard: bool = False) -> int:
        """Write the enriched sheet to `path` in `fmt` (csv, tsv, parquet, jsonl) straight from DuckDB; returns
        the rows written.

        The sheet's original columns come first, in order (a field that is a column fills only its empty cells),
        then each new field (and its `__source` and `__confidence` with meta). With `formula_guard`, a field's
        formula-like text gets a leading `'` in CSV and TSV (`formula_guard_sql`). DuckDB streams the rows to
        the file, so a million-row sheet is never held as one frame.
        """
        fields = sheet.fields
        guard = formula_guard_sql if formula_guard and fmt in ("csv", "tsv") else (lambda expr: expr)
        aggs = []
        for i, name in enumerate(fields):
            literal = _literal(name)
            aggs.append(f"max(value) FILTER (field = {literal}) AS v{i}")
            aggs.append(f"max(provider) FILTER (field = {literal}) AS s{i}")
            aggs.append(f"max(confidence) FILTER (field = {literal} AND status = 'done' AND value IS NOT NULL) "
                        f"AS c{i}")
        structure = _literal(json.dumps(dict.fromkeys(sheet.columns, "VARCHAR")))
        columns: list[tuple[str, str]] = []
        for name in sheet.columns:
            expr = f"r.j.{_quote(name)}"
            if name in fields:
                i = fields.index(name)
                expr = guard(f"CASE WHEN {expr} IS NULL OR {expr} = '' THEN t.v{i} ELSE {expr} END")
            columns.append((name, expr))
        for i, name in enumerate(fields):
            if name not in sheet.columns:
                columns.append((name, guard(f"t.v{i}")))
            if with_meta:
                columns += [(f"{name}__source", f"t.s{i}"), (f"{name}__confidence", f"t.c{i}")]
        tasks = (f"LEFT JOIN (SELECT row_id, {', '.join(aggs)} FROM tasks WHERE sheet_id = {int(sheet.sheet_id)} "
                 "GROUP BY row_id) t USING (row_id)") if fields else ""
        query = (f"SELECT {', '.join(f'{expr} AS {_quote(name)}' for name, expr in columns)} FROM "
                 f"(SELECT row_id, row_index, from_json(data, {structure}) AS j FROM rows "
                 f"WHERE sheet_id = {int(sheet.sheet_id)} AND NOT removed) r {tasks} ORDER BY r.row_index")
        # No comment character: DuckDB would otherwise quote every value with a '#' in it (polars does not).
        options = {"csv": "FORMAT csv, HEADER, COMMENT ''", "tsv": "FORMAT csv, HEADER, COMMENT '', DELIMITER '\t'",
                   "parquet": "FORMAT parquet", "jsonl": "FORMAT json"}[fmt]
        written = self.con.execute(f"COPY ({query}) TO {_literal(str(path))} ({options})").fetchall()
        return int(written[0][0]) if written else 0

    def rows_listing(self, sheet: SheetInfo, state: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Rows with their status and, for failed cells, the error text."""
        where = "AND r.status = ?" if state else ""
        params: list[Any] = [sheet.sheet_id] + ([state] if state else [])
        return self._dicts(
            "SELECT r.row_index + 1 AS row, r.row_key AS key, r.status, r.done_tasks AS done, "
            "r.failed_tasks AS failed, r.total_tasks AS total, "
            "(SELECT string_agg(t.field || ': ' || coalesce(t.error, 'failed'), '; ' ORDER BY t.field) "
            " FROM tasks t WHERE t.row_id = r.row_id AND t.status = 'failed') AS errors "
            f"FROM rows r WHERE r.sheet_id = ? AND NOT r.removed {where} ORDER BY r.row_index LIMIT {int(limit)}",
            params,
        )

    # ---- reconcile -------------------------------------------------------------------------

    _RECOUNT = (
        "SELECT r.row_id, r.sheet_id, r.row_index, coalesce(c.total, 0) AS total, coalesce(c.done, 0) AS done, "
        "coalesce(c.failed, 0) AS failed, coalesce(c.running, 0) AS running, coalesce(c.conf, 0) AS conf "
        "FROM rows r LEFT JOIN (SELECT row_id, count(*) AS total, count(*) FILTER (status = 'done') AS done, "
        "count(*) FILTER (status = 'failed') AS failed, count(*) FILTER (status = 'running') AS running, "
        "coalesce(sum(confidence) FILTER (status = 'done'), 0) AS conf FROM tasks GROUP BY row_id) c "
        "USING (row_id)"
    )
    _DRIFT = (
        "r.total_tasks <> x.total OR r.done_tasks <> x.done OR r.failed_tasks <> x.failed "
        "OR r.running_tasks <> x.running OR abs(r.confidence_sum - x.conf) > 1e-6 OR r.status <> "
        + status_sql("x.total", "x.done", "x.failed", "x.running")
    )

    def check_counters(self, sheet_id: int | None = None) -> Drift:
        """Rows whose counters or status differ from a recount of their tasks (how many, and the first ten);
        changes nothing."""
        where, params = ("AND r.sheet_id = ?", [sheet_id]) if sheet_id is not None else ("", [])
        drifted = f"FROM rows r JOIN ({self._RECOUNT}) x USING (row_id) WHERE ({self._DRIFT}) {where}"
        examples = self._dicts(
            f"SELECT r.row_id, r.row_index + 1 AS row, r.status, "
            f"{status_sql('x.total', 'x.done', 'x.failed', 'x.running')} AS recounted_status, "
            "r.total_tasks, x.total AS recounted_total, r.done_tasks, x.done AS recounted_done, "
            "r.failed_tasks, x.failed AS recounted_failed, r.running_tasks, x.running AS recounted_running "
            f"{drifted} ORDER BY r.row_id LIMIT 10",
            params,
        )
        count = self.con.execute(f"SELECT count(*) {drifted}", params).fetchall()[0][0] if examples else 0
        return Drift(count, examples)

    def rebuild_counters(self, sheet_id: int | None = None) -> Drift:
        """Rebuild every counter and status from tasks, set-based; returns the drift it repaired."""
        drift = self.check_counters(sheet_id)
        where, params = ("AND rows.sheet_id = ?", [sheet_id]) if sheet_id is not None else ("", [])
        with self._transaction():
            self.con.execute(
                "UPDATE rows SET total_tasks = x.total, done_tasks = x.done, failed_tasks = x.failed, "
                "running_tasks = x.running, confidence_sum = x.conf, "
                f"status = {status_sql('x.total', 'x.done', 'x.failed', 'x.running')} "
                f"FROM ({self._RECOUNT}) x WHERE rows.row_id = x.row_id {where}",
                params,
            )
        return drift

    def counters_frame(self) -> pl.DataFrame:
        """Every row's stored counters, for tests and tools."""
        return self._frame(
            "SELECT row_id, total_tasks, done_tasks, failed_tasks, running_tasks, confidence_sum, status "
            "FROM rows ORDER BY row_id"
        )

    @property
    def statements(self) -> int:
        """SQL statements sent since the file was opened."""
        return self.con.statements

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple[Any, ...]]:
        """Run a read query (for tests and diagnostics)."""
        return self.con.execute(sql, params or []).fetchall()


class ArrowStream:
    """A polars frame offered to DuckDB through the Arrow C stream interface alone.

    DuckDB reads such an object without pyarrow; handed the frame itself, it imports pyarrow (and numpy),
    which cost every glaze command ~0.1 s of start-up.
    """

    __slots__ = ("frame",)

    def __init__(self, frame: pl.DataFrame) -> None:
        self.frame = frame

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.frame.__arrow_c_stream__(requested_schema)


class _CountingConnection:
    """A DuckDB connection that counts the statements sent to it (benchmarks report statements per cell)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self.statements = 0

    def execute(self, query: str, parameters: Any = None) -> duckdb.DuckDBPyConnection:
        self.statements += 1
        return self._con.execute(query, parameters)

    def sql(self, query: str, *, params: Any = None) -> duckdb.DuckDBPyRelation:
        self.statements += 1
        return self._con.sql(query, params=params)

    def register(self, name: str, frame: pl.DataFrame) -> None:
        self._con.register(name, ArrowStream(frame))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


class _Transaction:
    """BEGIN/COMMIT around a block; ROLLBACK if it raises, so a batch lands whole or not at all.

    A write the disk refuses (full, read-only, I/O error) becomes a StateError: DuckDB keeps every earlier
    commit, so the state file stays consistent and the next run continues from it.
    """

    def __init__(self, con: _CountingConnection, path: Path) -> None:
        self.con = con
        self.path = path

    def __enter__(self) -> None:
        self.con.execute("BEGIN TRANSACTION")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.con.execute("COMMIT")
                return
            except duckdb.Error as error:
                self._rollback()
                raise _write_error(self.path, error) from None
        self._rollback()
        if isinstance(exc, duckdb.IOException | duckdb.FatalException):
            raise _write_error(self.path, exc) from None

    def _rollback(self) -> None:
        # After a failed COMMIT (or a fatal error) DuckDB may already have ended the transaction.
        with contextlib.suppress(duckdb.Error):
            self.con.execute("ROLLBACK")


def _write_error(path: Path, error: BaseException) -> StateError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return StateError(f"{path}: cannot write the state file ({reason}); free disk space or fix the folder's "
                      "permissions and run again: every cell saved before this is kept, the rest stays queued")


# Text a spreadsheet runs as a formula starts with one of these; numbers like -5 are left alone.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"


def formula_guard_sql(expr: str) -> str:
    """SQL that prefixes `'` to the text of `expr` when a spreadsheet would run it as a formula (text starting
    with = + - @ tab or CR), but not to numbers like -5; `copy_export` applies it to fields in CSV and TSV."""
    starts = " OR ".join(f"starts_with({expr}, {_literal(start)})" for start in _FORMULA_START)
    return (f"CASE WHEN ({starts}) AND NOT regexp_full_match({expr}, {_literal(_NUMBER)}) "
            f"THEN {_literal(chr(39))} || {expr} ELSE {expr} END")


def _before_row(max_row_index: int | None) -> tuple[str, list[Any]]:
    """The SQL filter (on rows `r`) and its parameter for `--rows N`: nothing when there is no limit."""
    return ("AND r.row_index < ?", [max_row_index]) if max_row_index is not None else ("", [])


def _literal(text: str) -> str:
    """`text` as an SQL string literal (for statements that take no parameters, like COPY)."""
    return "'" + text.replace("'", "''") + "'"


def _marks(values: Iterable[Any]) -> str:
    return ", ".join("?" for _ in values)


def _sheet_info(row: tuple[Any, ...]) -> SheetInfo:
    sheet_id, name, path, key_column, columns, fields = row
    return SheetInfo(sheet_id, name, path, key_column, json.loads(columns), json.loads(fields))


def _iso(value: Any) -> str | None:
    return value.isoformat(sep=" ", timespec="seconds") if value is not None else None


def now() -> float:
    """Wall-clock seconds, for call records."""
    return time.time()
