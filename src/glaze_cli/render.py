"""Everything drawn on the terminal: the live progress display and the tables of status, reconcile and
providers. Takes plain data; opens no files and makes no calls of its own.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:  # the runner (anyio, aiohttp) is imported only by commands that run it
    from glaze_cli.runner import RunStats

ROW_STATES = ("idle", "queued", "running", "done", "failed", "ambiguous")


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


MAX_TABLE_ROWS = 6  # fields or providers shown before "+N more", so the view fits 24 lines


def _bar(fraction: float, width: int = 20) -> str:
    filled = max(0, min(width, round(fraction * width)))
    return "█" * filled + "░" * (width - filled)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _table(*columns: str) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold", show_edge=False, padding=(0, 1))
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right", no_wrap=True,
                         overflow="ellipsis", max_width=14 if i == 0 else None)
    return table


def progress_view(stats: RunStats) -> Group:
    """One frame of the live display: overall bar, rows, fields and providers; fits 80 columns and 24 lines."""
    finished = stats.done + stats.failed
    elapsed = stats.elapsed
    left = max(0, stats.total - finished)
    eta = _duration(left / (finished / elapsed)) if finished and elapsed > 0 else "-"
    fraction = finished / stats.total if stats.total else 1.0
    head = Text.assemble(
        ("glaze ", "bold"), (_bar(fraction), "green"),
        f" {finished:,}/{stats.total:,} cells {100 * fraction:.1f}%  {_rate(finished, elapsed)}  eta {eta}",
        no_wrap=True, overflow="ellipsis",
    )
    parts = [f"{state} {stats.rows.get(state, 0):,}" for state in ("queued", "running", "done", "failed", "ambiguous")]
    rows = [Text("rows  " + "  ".join(parts), no_wrap=True, overflow="ellipsis")]
    limits = []
    if stats.budget is not None:
        limits.append(f"budget left {max(0.0, stats.budget - stats.spend):.2f} of {stats.budget:g}")
    if stats.deadline is not None:
        limits.append(f"time left {_duration(stats.deadline - time.monotonic())}")
    if limits:
        rows.append(Text("      " + "  ".join(limits), no_wrap=True, overflow="ellipsis"))
    fields = _table("field", "done", "filled", "failed")
    for name, f in list(stats.fields.items())[:MAX_TABLE_ROWS]:
        share = f"{100 * f['filled'] / f['done']:.0f}%" if f["done"] else "-"
        fields.add_row(name, f"{f['done']:,}/{stats.field_totals.get(name, 0):,}", share, f"{f['failed']:,}")
    providers = _table("provider", "flight", "calls", "hits", "p50", "p95", "err", "429", "retry", "spend",
                       "circuit")
    for name, p in list(stats.providers.items())[:MAX_TABLE_ROWS]:
        providers.add_row(name, f"{p.in_flight}/{p.window}", f"{p.calls:,}", f"{p.cache_hits:,}",
                          f"{p.quantile(0.5):.0f}", f"{p.quantile(0.95):.0f}", f"{p.errors:,}", f"{p.rate_limited:,}",
                          f"{p.retries:,}", f"{p.spend:.2f}", p.circuit)
    more = []
    for what, items in (("fields", stats.fields), ("providers", stats.providers)):
        if len(items) > MAX_TABLE_ROWS:
            more.append(Text(f"+{len(items) - MAX_TABLE_ROWS} more {what}", style="dim"))
    return Group(head, *rows, fields, providers, *more)


@contextmanager
def live_progress(stats: RunStats, console: Console) -> Iterator[None]:
    """Redraw the progress display a few times a second while the run goes on."""

    class _View:
        def __rich__(self) -> Group:
            return progress_view(stats)

    with Live(_View(), console=console, refresh_per_second=4, transient=False):
        yield


def progress_line(stats: RunStats) -> str:
    """One plain log line: time, cells finished of the total, rate, failures, spend."""
    finished = stats.done + stats.failed
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    return (f"{stamp} glaze: {finished:,}/{stats.total:,} cells, {_rate(finished, stats.elapsed)}, "
            f"{stats.failed:,} failed, spend {stats.spend:.2f}")


@contextmanager
def log_progress(stats: RunStats, console: Console, every: float = 10.0) -> Iterator[None]:
    """For cron and pipes: a plain line every `every` s and one at the end, from a background thread."""
    done = threading.Event()

    def report() -> None:
        while not done.wait(every):
            console.print(progress_line(stats), markup=False, highlight=False)

    thread = threading.Thread(target=report, name="glaze-progress-log", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        console.print(progress_line(stats), markup=False, highlight=False)


def enrich_summary(summary: Mapping[str, Any], console: Console) -> None:
    """The closing lines of `glaze enrich`."""
    if summary.get("dry_run") is not None:
        dry = summary["dry_run"]
        console.print(f"dry run: {dry['cells']:,} cells to run; calls per provider: "
                      f"{_pairs(dry['calls'])}; cache hits: {_pairs(dry['cache_hits'])}; "
                      f"projected spend {dry['projected_spend']:.2f}. Nothing was called.")
        return
    calls = _pairs(summary["calls"])
    line = (f"{summary['done']:,} done ({summary['filled']:,} filled), {summary['failed']:,} failed of "
            f"{summary['cells']:,} cells in {summary['duration_s']:.1f}s; calls: {calls}; "
            f"spend {summary['spend']:.2f}")
    console.print(line)
    for warning in summary.get("warnings") or []:
        console.print(Text(warning, style="yellow"))
    if summary.get("stop_reason") and summary.get("queued_left"):
        console.print(f"stopped by {summary['stop_reason']}: {summary['queued_left']:,} cells stay queued; "
                      "run the same command again to continue.")
    if summary["failed"]:
        console.print("some cells failed: `glaze status --rows --state failed` lists them; "
                      "`glaze enrich ... --retry-failed` tries them again.")
    if summary.get("output"):
        console.print(f"wrote {summary['output']}")


def _pairs(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items()) or "none"


def status_tables(report: Mapping[str, Any], console: Console) -> None:
    """`glaze status` as text: one block per sheet."""
    live = report.get("live")
    if live and live.get("phase") == "loading":
        console.print(Text(f"live: glaze pid {live['pid']} is loading the sheet; figures from before this run",
                           style="bold green"))
    elif live:
        console.print(Text(f"live: glaze pid {live['pid']} is running job {live['job_id']}; "
                           f"{live['done'] + live['failed']:,}/{live['cells']:,} cells of this run finished; "
                           f"figures from {live.get('age_s', 0):.0f}s ago", style="bold green"))
    if not report["sheets"]:
        console.print("no sheets loaded in this workspace yet")
    for sheet in report["sheets"]:
        rows, tasks = sheet["rows"], sheet["tasks"]
        console.print(Text(f"{sheet['name']}  ({sheet['path']})", style="bold"))
        console.print("rows   " + "  ".join(f"{s} {rows[s]:,}" for s in ("total", *ROW_STATES)))
        console.print("tasks  " + "  ".join(f"{s} {tasks[s]:,}"
                                            for s in ("total", "queued", "running", "done", "failed", "filled")))
        fields = _table("field", "done", "failed", "filled", "fill rate")
        for name, f in sheet["fields"].items():
            total = f.get("total") or f["done"] + f["failed"]
            rate = f["filled"] / total if total else 0.0
            fields.add_row(name, f"{f['done']:,}", f"{f['failed']:,}", f"{f['filled']:,}",
                           f"{_bar(rate, 10)} {100 * rate:3.0f}%")
        console.print(fields)
        if sheet["providers"]:
            providers = _table("provider", "calls", "hits", "failures", "retries", "p50 ms", "p95 ms", "p99 ms",
                               "spend")
            for name, p in sheet["providers"].items():
                providers.add_row(name, f"{p['calls']:,}", f"{p['cache_hits']:,}", f"{p['failures']:,}",
                                  f"{p['retries']:,}", f"{p['p50_ms']:.0f}", f"{p['p95_ms']:.0f}",
                                  f"{p['p99_ms']:.0f}", f"{p['cost']:.2f}")
            console.print(providers)
        job = sheet.get("last_job")
        if job:
            code = job["exit_code"] if job["exit_code"] is not None else "-"
            console.print(f"last job {job['id']}: started {job['started_at']}, finished "
                          f"{job['finished_at'] or '-'}, exit code {code}")
        console.print()


def row_listing(report: Mapping[str, Any], console: Console) -> None:
    """`glaze status --rows`: one line per row (its number in the sheet, status, counts, errors)."""
    live = report.get("live")
    if live:
        console.print(Text(f"live: {live['note']}", style="bold green"))
    for sheet, listing in report["sheets"].items():
        console.print(Text(f"{sheet}: {len(listing):,} rows", style="bold"))
        table = _table("row", "status", "done", "failed", "total", "errors")
        for row in listing:
            table.add_row(str(row["row"]), row["status"], str(row["done"]), str(row["failed"]), str(row["total"]),
                          row.get("errors") or "")
        table.columns[-1].no_wrap = False
        console.print(table)


def reconcile_report(report: Mapping[str, Any], console: Console) -> None:
    """`glaze reconcile` as text."""
    if report["checked_only"]:
        if report["drift_rows"]:
            console.print(f"{report['drift_rows']:,} of {report['rows']:,} rows have counters that disagree with "
                          "their tasks; run glaze reconcile to rebuild them")
            for example in report["examples"]:
                console.print(f"  {json.dumps(example, default=str)}")
        else:
            console.print(f"all {report['rows']:,} rows agree with their tasks")
    else:
        console.print(f"rebuilt counters of {report['rows']:,} rows from tasks; "
                      f"{report['fixed']:,} had drifted")


def providers_table(listed: Sequence[Mapping[str, Any]], console: Console) -> None:
    """`glaze providers`: one short block per provider (readable at 80 columns)."""
    for p in listed:
        console.print(Text.assemble((p["name"], "bold"), f"  ({p['type']})"))
        console.print(f"  outputs: {', '.join(p['outputs'])}", soft_wrap=False)
        if p["type"] == "builtin":
            console.print(f"  needs {p['inputs']}; offline, free")
        else:
            console.print(f"  concurrency {p['concurrency']}, rate {p['rate'] or 'unlimited'}, timeout "
                          f"{p['timeout_s']:g}s, retries {p['retries']}, cache {_duration(p['cache_ttl_s'])}, "
                          f"cost {p['cost']:g} per call")


def cache_report(report: Mapping[str, Any], console: Console) -> None:
    """`glaze cache stats|prune|clear` as text."""
    for key in ("pruned", "cleared"):
        if key in report:
            console.print(f"{key} {report[key]:,} entries")
    console.print(f"{report['directory']}: {report['entries']:,} entries, {report['bytes'] / 1048576:.1f} MB on disk")
    for name, count in report["providers"].items():
        console.print(f"  {name}: {count:,} entries")
    last = report.get("last_run")
    if last:
        console.print(f"last run ({last['job_id']}): {last['cache_hits']:,} cache hits, {last['calls']:,} calls, "
                      f"hit rate {100 * last['hit_rate']:.0f}%")
