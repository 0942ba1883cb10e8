"""Everything drawn on the terminal: the live progress display and the tables of status, reconcile and
providers. Takes plain data; opens no files and makes no calls of its own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from glaze_cli.runner import RunStats

ROW_STATES = ("idle", "queued", "running", "done", "failed", "ambiguous")


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def progress_view(stats: RunStats) -> Group:
    """One frame of the live display: overall progress and one line per provider."""
    finished = stats.done + stats.failed
    elapsed = stats.elapsed
    left = max(0, stats.total - finished)
    eta = f"{left / (finished / elapsed):,.0f}s" if finished and elapsed > 0 else "-"
    pct = 100.0 * finished / stats.total if stats.total else 100.0
    head = Text.assemble(
        ("glaze ", "bold"), f"{finished:,}/{stats.total:,} cells {pct:.1f}%  eta {eta}  {_rate(finished, elapsed)}\n",
        ("done ", "green"), f"{stats.done:,}  ", ("failed ", "red"), f"{stats.failed:,}  ",
        f"filled {stats.filled:,}  spend {stats.spend:.2f}",
    )
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("provider", "calls", "cache hits", "errors", "retries", "p50 ms", "p95 ms"):
        table.add_column(column, justify="left" if column == "provider" else "right")
    for name, p in stats.providers.items():
        table.add_row(name, f"{p.calls:,}", f"{p.cache_hits:,}", f"{p.errors:,}", f"{p.retries:,}",
                      f"{p.quantile(0.5):.0f}", f"{p.quantile(0.95):.0f}")
    return Group(head, table)


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
    if live:
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
        table = Table(box=None, pad_edge=False, header_style="bold")
        for column in ("field", "done", "failed", "filled"):
            table.add_column(column, justify="left" if column == "field" else "right")
        for name, f in sheet["fields"].items():
            table.add_row(name, f"{f['done']:,}", f"{f['failed']:,}", f"{f['filled']:,}")
        console.print(table)
        if sheet["providers"]:
            ptable = Table(box=None, pad_edge=False, header_style="bold")
            for column in ("provider", "calls", "cache_hits", "failures", "retries", "p50_ms", "p95_ms", "cost"):
                ptable.add_column(column, justify="left" if column == "provider" else "right")
            for name, p in sheet["providers"].items():
                ptable.add_row(name, *(f"{p[c]:,}" if isinstance(p[c], int) else f"{p[c]:.2f}"
                                       for c in ("calls", "cache_hits", "failures", "retries", "p50_ms", "p95_ms",
                                                 "cost")))
            console.print(ptable)
        job = sheet.get("last_job")
        if job:
            code = job["exit_code"] if job["exit_code"] is not None else "-"
            console.print(f"last job {job['id']}: started {job['started_at']}, finished "
                          f"{job['finished_at'] or '-'}, exit code {code}")
        console.print()


def row_listing(rows: Mapping[str, Sequence[Mapping[str, Any]]], console: Console) -> None:
    """`glaze status --rows`: one line per row."""
    for sheet, listing in rows.items():
        console.print(Text(sheet, style="bold"))
        for row in listing:
            console.print(json.dumps(row, ensure_ascii=False, default=str))


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
    """`glaze providers` as a table."""
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("provider", "type", "outputs", "concurrency", "rate", "cost", "inputs"):
        table.add_column(column)
    for p in listed:
        table.add_row(p["name"], p["type"], ", ".join(p["outputs"]),
                      str(p["concurrency"]) if p["concurrency"] else "-", p["rate"] or "-", f"{p['cost']:g}",
                      p["inputs"] or "-")
    console.print(table)


def key_values(report: Mapping[str, Any], console: Console) -> None:
    """A flat report as `key: value` lines."""
    for key, value in report.items():
        console.print(f"{key}: {value}")
