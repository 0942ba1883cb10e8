"""The enrich use case: load the sheet, queue its cells, fill them with the runner, write the output.

Kept apart from the other use cases so that `glaze status`, `export` and `reconcile` start without importing
the runner, the providers and their HTTP client.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import polars as pl

from glaze_cli.cache import ResponseCache, cache_key
from glaze_cli.config import Config, FieldConfig, find_config, load_config
from glaze_cli.errors import ConfigError, InputError, UsageError
from glaze_cli.interrupts import SIGNALS, Interrupts
from glaze_cli.metrics import render_metrics, write_metrics, write_text_atomically
from glaze_cli.providers import Provider, registry
from glaze_cli.runner import Plan, Runner, RunOptions, RunStats, Step, StoreGateway
from glaze_cli.service import FAILING_ROWS_PUBLISHED, PUBLISH_EVERY, open_workspace
from glaze_cli.sheet import check_output, default_output, read_sheet, write_atomically
from glaze_cli.store import Store
from glaze_cli.workspace import BRIEF_HOLD_WAIT, Workspace

# uvloop (not on Windows) runs anyio's event loop in C: the provider-bound benchmark's client used a tenth less CPU.
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None

EXIT_OK, EXIT_FAILED_CELLS, EXIT_STOPPED = 0, 1, 3


@dataclass(frozen=True)
class EnrichRequest:
    """Everything `glaze enrich` was asked to do."""

    sheet: Path
    fields: tuple[str, ...]
    workspace: Path | None = None
    config: Path | None = None
    key: str | None = None
    output: Path | None = None
    rows: int | None = None
    retry_failed: bool = False
    refresh: bool = False
    budget: float | None = None
    max_runtime: float | None = None
    concurrency: int | None = None
    dry_run: bool = False
    wait: float = 0.0
    encoding: str | None = None
    formula_guard: bool = True
    grace: float = 5.0
    metrics_file: Path | None = None
    argv: tuple[str, ...] = ()


@dataclass
class EnrichSummary:
    """What a run did, for the final line or `--json`."""

    sheet: str
    output: str | None
    job_id: str | None
    fields: list[str]
    cells: int = 0
    done: int = 0
    failed: int = 0
    filled: int = 0
    queued_left: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    cache_hits: dict[str, int] = field(default_factory=dict)
    spend: float = 0.0
    duration_s: float = 0.0
    stop_reason: str | None = None
    exit_code: int = 0
    dry_run: dict[str, Any] | None = None
    rows_loaded: int = 0
    new_rows: int = 0
    changed_rows: int = 0  # rows whose values changed since the last load
    removed_rows: int = 0  # rows gone from the sheet since the last load
    load_s: float = 0.0  # from the start of the command until the first cell could be claimed
    fill_s: float = 0.0  # time spent filling cells, without loading the sheet and writing the output
    db_statements: int = 0  # SQL statements the run sent to the state file, loading and writing included
    flushes: int = 0  # store transactions that wrote finished cells
    claims: int = 0  # store transactions that claimed cells
    warnings: list[str] = field(default_factory=list)  # e.g. a provider stopped for rejected keys
    rate_limited: dict[str, int] = field(default_factory=dict)  # 429 answers per provider

    def to_json(self) -> dict[str, Any]:
        """The `--json` summary object."""
        out = {k: v for k, v in self.__dict__.items() if k != "dry_run"}
        out["duration_s"] = round(self.duration_s, 3)
        out["fill_s"] = round(self.fill_s, 3)
        out["load_s"] = round(self.load_s, 3)
        out["spend"] = round(self.spend, 6)
        if self.dry_run is not None:
            out["dry_run"] = self.dry_run
        return out


ProgressFactory = Callable[[RunStats], AbstractContextManager[Any]]


def _check_key(frame: pl.DataFrame, key: str, sheet: Path) -> None:
    if key not in frame.columns:
        raise InputError(f"{sheet}: key column {key!r} is not in the sheet (columns: {', '.join(frame.columns)}); "
                         "fix --key or [sheet].key")
    blank = frame.filter(pl.col(key).is_null() | (pl.col(key).str.strip_chars() == "")).height
    if blank:
        raise InputError(f"{sheet}: key column {key!r} is empty in {blank} row(s); every row needs a key, "
                         "or drop --key to identify rows by their values")
    dupes = frame.group_by(key, maintain_order=True).len().filter(pl.col("len") > 1)
    if dupes.height:
        example = dupes[key][0]
        # CSV/TSV users think in the file's lines (header = line 1); other formats in data rows.
        unit, offset = ("lines", 2) if sheet.suffix.lower() in (".csv", ".tsv", ".tab") else ("rows", 1)
        where = frame.with_row_index("n", offset=offset).filter(pl.col(key) == example)["n"].head(2).to_list()
        raise InputError(f"{sheet}: key column {key!r} has {dupes.height} value(s) that repeat, in "
                         f"{int(dupes['len'].sum())} rows (e.g. {example!r} on {unit} {where[0]} and {where[1]}); "
                         "row identity must be unique — pick another key or drop --key")


def plan_providers(config: Config, fields: Sequence[str], columns: Sequence[str],
                   sheet: Path) -> tuple[dict[str, tuple[Step, ...]], dict[str, Provider]]:
    """Each field's waterfall, with only the providers it needs built (and their ${VAR}s resolved)."""
    known = registry()
    builtins = known.builtins_for(columns)
    builtin_outputs = {name: spec.outputs for name, spec in known.builtins.items()}
    configured_outputs = {name: pc.outputs for name, pc in config.providers.items()}
    chains: dict[str, list[str]] = {}
    for name in fields:
        fconf = config.fields.get(name, FieldConfig())
        if fconf.providers is not None:
            chain = list(fconf.providers)
            for pname in chain:
                outputs = configured_outputs.get(pname, builtin_outputs.get(pname))
                if outputs is None:
                    names = ", ".join(list(config.providers) + list(builtin_outputs))
                    raise ConfigError(f"config {config.source}: fields.{name}.providers: unknown provider "
                                      f"{pname!r} (known: {names})")
                if name not in outputs:
                    raise ConfigError(f"config {config.source}: fields.{name}.providers: provider {pname!r} has no "
                                      f"output {name!r} (it outputs {', '.join(outputs)})")
        else:
            chain = [p for p, outs in configured_outputs.items() if name in outs]
            chain += [p for p, outs in builtin_outputs.items() if name in outs and p in builtins]
        if not chain:
            hint = next((f"; the built-in {spec.name} needs {spec.input_hint}" for spec in known.builtins.values()
                         if name in spec.outputs), "; add a provider with this output to glaze.toml")
            raise ConfigError(f"config {config.source}: field {name!r}: no provider outputs it{hint}")
        chains[name] = chain
    providers: dict[str, Provider] = {}
    for pname in dict.fromkeys(p for chain in chains.values() for p in chain):
        if pname in config.providers:
            provider = known.build(config.providers[pname], config.source, config.base_dir)
        elif pname in builtins:
            provider = builtins[pname]
        else:
            raise InputError(f"{sheet}: the built-in {pname} needs {known.builtins[pname].input_hint}; the sheet "
                             f"has none (columns: {', '.join(columns)})")
        missing = [c for c in provider.inputs if c not in columns]
        if missing:
            raise InputError(f"{sheet}: provider {pname!r} uses column {missing[0]!r}, which the sheet does not "
                             f"have (columns: {', '.join(columns)})")
        providers[pname] = provider
    waterfalls = {
        name: tuple(Step(providers[p], config.fields.get(name, FieldConfig()).min_confidence) for p in chain)
        for name, chain in chains.items()
    }
    return waterfalls, providers


def read_config(explicit: Path | None, sheet: Path | None) -> Config:
    """The config that applies, validated against every provider type installed (plugins included)."""
    return load_config(find_config(explicit, sheet), registry().plugin_options())


def enrich(req: EnrichRequest, progress: ProgressFactory | None = None) -> EnrichSummary:
    """Load the sheet, queue its cells, fill them, write the output; the summary carries the exit code."""
    started = time.monotonic()
    interrupts = Interrupts()
    # Until the state file is open nothing has changed, so a signal may simply end the command.
    interrupts.raising = True
    main_thread = threading.current_thread() is threading.main_thread()
    if main_thread:
        interrupts.install()
    workspace = open_workspace(req.workspace)
    try:
        return _enrich(req, progress, interrupts, workspace, started)
    finally:
        workspace.release()
        if main_thread:
            interrupts.restore()


def _enrich(req: EnrichRequest, progress: ProgressFactory | None, interrupts: Interrupts, workspace: Workspace,
            started: float) -> EnrichSummary:
    if not req.fields or any(not f.strip() for f in req.fields):
        raise UsageError("--fields: name at least one field, comma-separated (e.g. --fields industry,website)")
    if req.rows is not None and req.rows < 1:
        raise UsageError("--rows: must be 1 or more")
    if workspace.root.is_dir():
        # A busy workspace is answered before a big sheet is read; a new one is made only for valid input.
        workspace.acquire("enrich", req.wait)
    config = read_config(req.config, req.sheet)
    frame = read_sheet(req.sheet, req.encoding)
    key = req.key or config.sheet_key
    if key:
        _check_key(frame, key, req.sheet)
    waterfalls, providers = plan_providers(config, req.fields, frame.columns, req.sheet)
    for provider in providers.values():
        provider.prepare()
    output = req.output or default_output(req.sheet)
    check_output(output, req.sheet)
    if not workspace.held:
        workspace.acquire("enrich", req.wait)

    # `glaze status` may have the file open for a moment: wait for it rather than fail.
    with Store(workspace.db_path, wait=max(BRIEF_HOLD_WAIT, req.wait)) as store:
        interrupts.raising = False  # from here on a signal is a clean stop: finish, flush, write, exit 130/143
        _publish_snapshot(store, workspace, {"pid": os.getpid(), "job_id": None, "phase": "loading"})
        store.requeue_running()
        report = store.load_sheet(req.sheet, frame, key, _field_inputs(waterfalls))
        sheet_id = report.sheet.sheet_id
        present = [f for f in req.fields if f in frame.columns]
        store.add_fields(sheet_id, req.fields, present)
        if req.refresh:
            store.requeue(sheet_id, req.fields, ["done", "failed"])
        elif req.retry_failed:
            store.requeue(sheet_id, req.fields, ["failed"])
        plan = Plan(sheet_id, tuple(req.fields), waterfalls, providers, req.rows)
        summary = EnrichSummary(str(req.sheet), None, None, list(req.fields), rows_loaded=report.rows,
                                new_rows=report.new_rows, changed_rows=report.changed_rows,
                                removed_rows=report.removed_rows)
        cache = ResponseCache(workspace.cache_dir)
        try:
            if req.dry_run:
                summary.dry_run = _dry_run(store, cache, plan, config)
                summary.cells = summary.dry_run["cells"]
            else:
                summary.load_s = time.monotonic() - started
                _run(store, cache, plan, req, summary, progress, workspace, interrupts, started)
                sheet = store.find_sheet(str(req.sheet))
                assert sheet is not None
                write_atomically(output, lambda tmp, fmt: store.copy_export(sheet, tmp, fmt,
                                                                            formula_guard=req.formula_guard))
                summary.output = str(output)
                if interrupts.exit_code is not None:
                    summary.exit_code = interrupts.exit_code
                store.finish_job(summary.job_id or "", summary.exit_code)
                if req.metrics_file is not None:
                    summary.duration_s = time.monotonic() - started
                    text = render_metrics(sheet.name, store.status(sheet), summary.to_json(),
                                          store.last_success(sheet.sheet_id))
                    write_metrics(req.metrics_file, text)
        finally:
            cache.close(expire=not req.dry_run)
            if cache.broken:
                summary.warnings.append(f"the response cache could not be used ({cache.broken}); this run went on "
                                        "without it")
            workspace.snapshot_path.unlink(missing_ok=True)
        summary.db_statements = store.statements
    summary.duration_s = time.monotonic() - started
    return summary


# A collection pass after this many more container objects than were freed (CPython's default is 700).
FILL_GC_THRESHOLD = 50_000


@contextmanager
def _collector_for_the_fill() -> Iterator[None]:
    """Fewer passes of the cycle collector while cells are filled; the thresholds are restored afterwards.

    The fill holds objects in claim-sized batches that live until their rows are done, and makes almost no
    reference cycles. CPython's default thresholds still ran ~3,400 passes in the 400k-cell engine benchmark,
    28 of them over every object of every imported library (~45 ms each, the event loop waiting): 1.75 s of
    collection that found 20 objects. The objects alive when the fill starts are frozen out of the passes
    (`gc.freeze`), and a pass waits for 50,000 more objects, a few MB at most were they all garbage.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(FILL_GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


def _field_inputs(waterfalls: dict[str, tuple[Step, ...]]) -> dict[str, list[str]]:
    """The sheet columns each field's providers read: a change in them re-queues that field's cell."""
    return {name: sorted({column for step in steps for column in step.provider.inputs}) for name, steps in
            waterfalls.items()}


def _run(store: Store, cache: ResponseCache, plan: Plan, req: EnrichRequest, summary: EnrichSummary,
         progress: ProgressFactory | None, workspace: Workspace, interrupts: Interrupts, started: float) -> None:
    job_id = uuid.uuid4().hex[:12]
    field_totals = store.queued_by_field(plan.sheet_id, plan.fields, plan.max_row_index)
    queued = sum(field_totals.values())
    store.start_job(job_id, plan.sheet_id, plan.fields, queued, req.argv)
    summary.job_id = job_id
    # --max-runtime counts from the start of the command: loading a big sheet is part of the run.
    deadline = started + req.max_runtime if req.max_runtime else None
    stats = RunStats(total=queued, field_totals=field_totals, budget=req.budget, deadline=deadline)
    options = RunOptions(job_id, req.concurrency, req.budget, deadline, req.refresh, grace=req.grace)
    runners: list[Runner] = []

    async def main() -> None:
        gateway = StoreGateway(store)
        runner = Runner(gateway, cache, plan, options, stats)
        runners.append(runner)
        interrupts.on_first = lambda signum: runner.stop("signal")
        if interrupts.received:
            runner.stop("signal")
        for provider in plan.providers.values():
            await provider.start()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_watch_signals, interrupts)
                tg.start_soon(_publish, gateway, runner, stats, job_id, workspace, req.metrics_file)
                with progress(stats) if progress else nullcontext():
                    await runner.run()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                for provider in plan.providers.values():
                    await provider.close()
            gateway.close()

    fill_started = time.monotonic()
    try:
        with _collector_for_the_fill():
            anyio.run(main, backend="asyncio", backend_options={"use_uvloop": HAVE_UVLOOP})
    finally:
        interrupts.on_first = None
    summary.fill_s = time.monotonic() - fill_started
    summary.flushes = runners[0].writer.flushes if runners else 0
    summary.claims = runners[0].claims if runners else 0
    counts = store.cell_counts(plan.sheet_id, plan.fields, plan.max_row_index)
    job = store.job(job_id)
    summary.cells = queued
    summary.done, summary.failed, summary.filled = stats.done, stats.failed, stats.filled
    summary.queued_left = counts["queued"] + counts["running"]
    summary.spend = float(job["spend"] or 0.0)
    summary.calls = {n: s.calls for n, s in stats.providers.items()}
    summary.cache_hits = {n: s.cache_hits for n, s in stats.providers.items()}
    summary.stop_reason = stats.stop_reason
    summary.warnings = list(stats.warnings)
    summary.rate_limited = {n: s.rate_limited for n, s in stats.providers.items()}
    if interrupts.exit_code is not None:
        summary.exit_code = interrupts.exit_code
    elif stats.stop_reason in ("budget", "max-runtime") and summary.queued_left:
        summary.exit_code = EXIT_STOPPED
    elif counts["failed"]:
        summary.exit_code = EXIT_FAILED_CELLS
    else:
        summary.exit_code = EXIT_OK


def _publish_snapshot(store: Store, workspace: Workspace, live: dict[str, Any]) -> list[dict[str, Any]]:
    """Write what `glaze status` shows while this run holds the state file; returns each sheet's status."""
    infos = store.sheets()
    sheets = [store.status(s) for s in infos]
    failing = {s.name: store.rows_listing(s, "failed", FAILING_ROWS_PUBLISHED)
               + store.rows_listing(s, "ambiguous", FAILING_ROWS_PUBLISHED) for s in infos}
    live = {**live, "updated_at": time.time()}
    write_text_atomically(workspace.snapshot_path, json.dumps({"sheets": sheets, "live": live,
                                                               "failing_rows": failing}, default=str))
    return sheets


async def _publish(gateway: StoreGateway, runner: Runner, stats: RunStats, job_id: str, workspace: Workspace,
                   metrics_file: Path | None) -> None:
    """Every second: the status snapshot `glaze status` reads during the run, and the metrics file.

    The first waits for the runner's first claim: both use the store's one thread, and the first calls should
    not wait for a status query.
    """
    plan = runner.plan
    await runner.claimed_once.wait()
    while True:
        began = time.monotonic()
        live = {"pid": os.getpid(), "job_id": job_id, "phase": "enriching", "sheet_id": plan.sheet_id,
                "elapsed_s": round(stats.elapsed, 3), "cells": stats.total, "done": stats.done,
                "failed": stats.failed, "filled": stats.filled, "spend": round(stats.spend, 6)}
        sheets = await gateway.call(_publish_snapshot, gateway.store, workspace, live)
        # Publishing costs a status query over the sheet: never more than a tenth of the run's time.
        interval = max(PUBLISH_EVERY, 10 * (time.monotonic() - began))
        current = next((s for s in sheets if s.get("sheet_id") == plan.sheet_id), None)
        if current is not None:
            stats.rows = dict(current["rows"])
        if metrics_file is not None and current is not None:
            run = {"calls": {n: p.calls for n, p in stats.providers.items()},
                   "cache_hits": {n: p.cache_hits for n, p in stats.providers.items()},
                   "spend": stats.spend, "duration_s": stats.elapsed, "exit_code": None}
            write_metrics(metrics_file, render_metrics(current["name"], current, run, None))
        await anyio.sleep(interval)


async def _watch_signals(interrupts: Interrupts) -> None:
    """While cells are filled, SIGINT/SIGTERM arrive here (the runner stops, then cancels after its grace).

    Afterwards the plain handlers come back, so a signal while the output is written is still a clean stop.
    """
    try:
        with anyio.open_signal_receiver(*SIGNALS) as signals:
            async for signum in signals:
                interrupts.record(signum)
    finally:
        if threading.current_thread() is threading.main_thread():
            interrupts.install()


def _dry_run(store: Store, cache: ResponseCache, plan: Plan, config: Config) -> dict[str, Any]:
    """Cells to run, cache hits, calls per provider and projected spend, for each field's first provider."""
    rows = store.queued_inputs(plan.sheet_id, plan.fields, plan.max_row_index)
    seen: set[str] = set()
    calls: dict[str, int] = {}
    hits: dict[str, int] = {}
    cells = 0
    for data, names in rows:
        cells += len(names)
        for provider in dict.fromkeys(plan.waterfalls[n][0].provider for n in names):
            inputs = provider.input_values(data)
            if inputs is None:
                continue
            key = cache_key(provider.name, provider.fingerprint, inputs)
            if key in seen:
                continue
            seen.add(key)
            if provider.cached and cache.get(key) is not None:
                hits[provider.name] = hits.get(provider.name, 0) + 1
            else:
                calls[provider.name] = calls.get(provider.name, 0) + 1
    spend = sum(n * plan.providers[p].cost for p, n in calls.items())
    return {"cells": cells, "cache_hits": hits, "calls": calls, "projected_spend": round(spend, 6),
            "note": "counts the first provider of each waterfall; fall-through calls come on top"}
