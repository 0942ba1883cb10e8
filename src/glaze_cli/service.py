"""The use cases that read or repair the state (status, reconcile, export, providers, cache); the CLI calls one
function here (or `enrich.enrich`) and renders what it returns.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from glaze_cli.cache import ResponseCache
from glaze_cli.errors import UsageError, WorkspaceBusy
from glaze_cli.sheet import check_output, default_output, write_atomically
from glaze_cli.store import SheetInfo, Store
from glaze_cli.workspace import BRIEF_HOLD_WAIT, Workspace, busy_message, workspace_dir

T = TypeVar("T")
PUBLISH_EVERY = 1.0
FAILING_ROWS_PUBLISHED = 100



def open_workspace(explicit: Path | None) -> Workspace:
    """The workspace a command works in."""
    return Workspace(workspace_dir(explicit))


@contextmanager
def _open_store(workspace: Path | None, command: str, *, wait: float = 0.0,
                read_only: bool = True) -> Iterator[Store]:
    """The state file, with the workspace lock held while it is open (a run that starts meanwhile waits)."""
    ws = open_workspace(workspace)
    if not ws.exists():
        raise UsageError(f"workspace {ws.root}: no glaze state here yet; run glaze enrich first "
                         "(or pass --workspace)")
    ws.acquire(command, wait)
    try:
        # Only `glaze status` opens the file without the lock, and only for a moment.
        with Store(ws.db_path, read_only=read_only, wait=BRIEF_HOLD_WAIT) as store:
            yield store
    finally:
        ws.release()


def _sheets(store: Store, sheet: Path | None) -> list[SheetInfo]:
    if sheet is None:
        return store.sheets()
    found = store.find_sheet(str(sheet))
    if found is None:
        raise UsageError(f"{sheet}: this sheet has not been loaded in this workspace; run glaze enrich on it first")
    return [found]


def _read_live(workspace: Path | None, read: Callable[[Store], T]) -> tuple[T | None, dict[str, Any] | None]:
    """`read(store)` on the state file, or, while a run holds it, the snapshot the run publishes.

    Never takes the workspace lock, so it never stands in a run's way; polls while the file is busy and no
    snapshot is out yet (a run publishes one as soon as it has the file open).
    """
    ws = open_workspace(workspace)
    if not ws.exists():
        raise UsageError(f"workspace {ws.root}: no glaze state here yet; run glaze enrich first "
                         "(or pass --workspace)")
    deadline = time.monotonic() + BRIEF_HOLD_WAIT
    while True:
        try:
            with Store(ws.db_path, read_only=True) as store:
                return read(store), None
        except WorkspaceBusy:
            snapshot = _read_snapshot(ws)
            if snapshot is not None:
                return None, snapshot
            if time.monotonic() >= deadline:
                raise WorkspaceBusy(busy_message(ws.root, ws.holder())) from None
            time.sleep(0.1)


def status(sheet: Path | None, workspace: Path | None) -> dict[str, Any]:
    """The spec's `glaze status --json` object; during a run, the snapshot the run publishes (with "live")."""
    report, snapshot = _read_live(workspace, lambda store: {"sheets": [store.status(s)
                                                                       for s in _sheets(store, sheet)]})
    if report is not None:
        return report
    assert snapshot is not None
    snapshot.pop("failing_rows", None)
    if sheet is not None:
        snapshot["sheets"] = [s for s in snapshot["sheets"] if _is_sheet(s, sheet)]
        if not snapshot["sheets"]:
            raise UsageError(f"{sheet}: this sheet has not been loaded in this workspace; run glaze enrich on it first")
    return snapshot


def _is_sheet(entry: dict[str, Any], sheet: Path) -> bool:
    return entry["path"] in (str(sheet.resolve()), str(sheet)) or entry["name"] == str(sheet)


def _read_snapshot(ws: Workspace) -> dict[str, Any] | None:
    """What a running `glaze enrich` last published, if it is there and fresh."""
    try:
        snapshot = json.loads(ws.snapshot_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    live = snapshot.get("live") or {}
    age = time.time() - float(live.get("updated_at", 0))
    if age > 30 * PUBLISH_EVERY:
        return None
    live["age_s"] = round(age, 1)
    return snapshot


def status_rows(sheet: Path | None, workspace: Path | None, state: str | None) -> dict[str, Any]:
    """Rows (optionally of one status) per sheet, with failed cells' errors.

    During a run only the rows with failed cells (the run publishes the first hundred) can be listed; the
    answer then carries a "live" entry saying so.
    """
    listing, snapshot = _read_live(workspace, lambda store: {s.name: store.rows_listing(s, state)
                                                              for s in _sheets(store, sheet)})
    if listing is not None:
        return {"sheets": listing}
    assert snapshot is not None
    failing = snapshot.get("failing_rows") or {}
    names = [s["name"] for s in snapshot["sheets"] if sheet is None or _is_sheet(s, sheet)]
    if sheet is not None and not names:
        raise UsageError(f"{sheet}: this sheet has not been loaded in this workspace; run glaze enrich on it first")
    rows = {name: [r for r in failing.get(name, []) if state is None or r["status"] == state] for name in names}
    live = dict(snapshot["live"])
    live["note"] = (f"glaze pid {live['pid']} is running: only rows with failed cells are listed (up to "
                    f"{FAILING_ROWS_PUBLISHED} per sheet); every row once the run ends")
    return {"sheets": rows, "live": live}


def reconcile(sheet: Path | None, workspace: Path | None, check: bool, wait: float = 0.0) -> dict[str, Any]:
    """Rebuild (or with `check`, only compare) every row counter from tasks."""
    with _open_store(workspace, "reconcile", wait=wait, read_only=check) as store:
        sheet_ids: list[int | None] = [s.sheet_id for s in _sheets(store, sheet)] if sheet else [None]
        drift_rows, examples = 0, []
        for sid in sheet_ids:
            drift = store.check_counters(sid) if check else store.rebuild_counters(sid)
            drift_rows += drift.rows
            examples += drift.examples
        total = store.execute("SELECT count(*) FROM rows")[0][0]
    return {"rows": total, "drift_rows": drift_rows, "fixed": 0 if check else drift_rows,
            "examples": examples[:10], "checked_only": check}


def export(sheet: Path, workspace: Path | None, output: Path | None, with_meta: bool,
           formula_guard: bool = True, wait: float = 0.0) -> dict[str, Any]:
    """Write the enriched sheet from the state file."""
    target = output or default_output(sheet)
    check_output(target, sheet)
    written: list[int] = []
    with _open_store(workspace, "export", wait=wait) as store:
        info = _sheets(store, sheet)[0]
        write_atomically(target, lambda tmp, fmt: written.append(
            store.copy_export(info, tmp, fmt, with_meta=with_meta, formula_guard=formula_guard)))
    return {"sheet": info.name, "output": str(target), "rows": written[0], "fields": info.fields}


def providers(config_path: Path | None, sheet: Path | None) -> list[dict[str, Any]]:
    """Every provider, configured or built in, with its outputs and limits."""
    from glaze_cli.enrich import read_config  # the provider registry: only this command and enrich need it
    from glaze_cli.providers import registry

    config = read_config(config_path, sheet)
    listed = []
    for pc in config.providers.values():
        limits = pc.limits
        listed.append({"name": pc.name, "type": pc.type, "outputs": list(pc.outputs),
                       "concurrency": limits.concurrency, "rate": str(limits.rate) if limits.rate else None,
                       "timeout_s": limits.timeout, "retries": limits.retries, "cache_ttl_s": limits.cache_ttl,
                       "cost": pc.cost, "inputs": None})
    for spec in registry().builtins.values():
        listed.append({"name": spec.name, "type": "builtin", "outputs": list(spec.outputs), "concurrency": None,
                       "rate": None, "timeout_s": None, "retries": 0, "cache_ttl_s": 0, "cost": 0.0,
                       "inputs": spec.input_hint})
    return listed


def cache_command(action: str, workspace: Path | None) -> dict[str, Any]:
    """`glaze cache stats|prune|clear`, with the last run's hit rate when the state file is readable."""
    if action not in ("stats", "prune", "clear"):
        raise UsageError(f"glaze cache {action}: unknown action; use stats, prune or clear")
    ws = open_workspace(workspace)
    cache = ResponseCache(ws.cache_dir)
    try:
        report: dict[str, Any] = {}
        if action == "prune":
            report["pruned"] = cache.prune()
        elif action == "clear":
            report["cleared"] = cache.clear()
        report.update(cache.stats())
    finally:
        cache.close()
    if ws.exists():
        try:
            with Store(ws.db_path, read_only=True) as store:
                report["last_run"] = store.last_job_hits()
        except WorkspaceBusy:
            report["last_run"] = None
    return report


__all__ = ["cache_command", "export", "providers", "reconcile", "status", "status_rows"]
