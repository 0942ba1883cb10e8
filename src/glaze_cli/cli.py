"""The `glaze` command: parse options, call one service function, hand its result to render.

The one error boundary lives here: a GlazeError becomes one red line and its exit code; anything else is
a bug and shows a traceback only with GLAZE_DEBUG=1.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from glaze_cli import __version__, service
from glaze_cli.errors import ConfigError, GlazeError, UsageError
from glaze_cli.interrupts import EXIT_SIGINT, Interrupted

app = typer.Typer(
    name="glaze",
    help="Fill new columns of a spreadsheet from enrichment providers, resumably, with state in DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
cache_app = typer.Typer(help="Inspect or empty the provider response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

if TYPE_CHECKING:
    from rich.console import Console


@functools.cache
def console(stream: str) -> Console:
    """rich's console on "stdout" or "stderr", made when first used: a `--json` run never imports rich."""
    from rich.console import Console

    return Console(stderr=stream == "stderr", highlight=False, soft_wrap=True)


WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", envvar="GLAZE_WORKSPACE", help="Workspace folder (default: ./.glaze).", show_default=False)]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", envvar="GLAZE_CONFIG", show_default=False,
    help="glaze.toml to use (default: beside SHEET, else ./glaze.toml).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
WaitOpt = Annotated[str | None, typer.Option(
    "--wait", help="Wait this long (90s, 5m) for a workspace another glaze run holds, instead of exiting 75.")]


def _duration(option: str, text: str | None) -> float | None:
    if text is None:
        return None
    from glaze_cli.config import parse_duration  # config brings pydantic: only the commands that need it load it

    try:
        return parse_duration(text)
    except (ValueError, ConfigError):
        raise UsageError(f"{option}: {text!r} is not a duration; write it like 90s, 30m or 2h") from None


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    sys.stdout.flush()


def _version(value: bool) -> None:
    if value:
        console("stdout").print(f"glaze {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Show the version and exit.")] = False,
) -> None:
    """glaze fills new columns of CSV, TSV, Parquet and JSON Lines sheets from enrichment providers."""


@app.command()
def enrich(
    sheet: Annotated[Path, typer.Argument(help="The sheet to enrich (.csv .tsv .parquet .jsonl).",
                                          show_default=False)],
    fields: Annotated[str, typer.Option("--fields", help="Output fields to fill, comma-separated.",
                                        show_default=False)],
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    key: Annotated[str | None, typer.Option("--key", help="Row identity column (default: [sheet].key, "
                                                          "else a hash of the row's values).")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Enriched sheet to write "
                                                "(default: STEM.enriched.SUFFIX beside SHEET).")] = None,
    rows: Annotated[int | None, typer.Option("--rows", help="Only the first N rows.")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Re-queue failed cells.")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="Re-enrich, ignoring done cells and the cache.")] = False,
    budget: Annotated[float | None, typer.Option("--budget", help="Start no call that takes spend past this.")] = None,
    max_runtime: Annotated[str | None, typer.Option("--max-runtime", help="Stop cleanly after this (90s, 30m, 2h).")
                           ] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1,
                                                    help="Global cap on provider calls in flight.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Call nothing; report what a run would do.")] = False,
    wait: WaitOpt = None,
    grace: Annotated[str, typer.Option("--grace", help="After SIGINT/SIGTERM or --max-runtime, how long calls in "
                                                       "flight get to finish before they are cancelled.")] = "5s",
    metrics_file: Annotated[Path | None, typer.Option("--metrics-file", help="Write Prometheus text metrics here.")
                            ] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Sheet encoding when not UTF-8.")] = None,
    progress: Annotated[bool | None, typer.Option("--progress/--no-progress", show_default=False,
                                                  help="Live progress on stderr (default: when a terminal).")
                        ] = None,
    formula_guard: Annotated[bool, typer.Option("--formula-guard/--no-formula-guard",
                                                help="Prefix formula-like text in CSV/TSV output with '.")] = True,
    as_json: JsonOpt = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Only errors.")] = False,
) -> None:
    """Fill FIELDS for every row of SHEET; re-running continues where the last run stopped."""
    from glaze_cli import enrich as enrichment  # the runner and providers: other commands start without them

    request = enrichment.EnrichRequest(
        sheet=sheet, fields=tuple(f.strip() for f in fields.split(",")), workspace=workspace, config=config,
        key=key, output=output, rows=rows, retry_failed=retry_failed, refresh=refresh, budget=budget,
        max_runtime=_duration("--max-runtime", max_runtime), concurrency=concurrency, dry_run=dry_run,
        wait=_duration("--wait", wait) or 0.0, encoding=encoding, formula_guard=formula_guard,
        metrics_file=metrics_file, argv=tuple(sys.argv[1:]), grace=_duration("--grace", grace) or 0.0,
    )
    talk = not quiet and not as_json
    live = progress if progress is not None else (talk and console("stderr").is_terminal)
    if live or talk:
        from glaze_cli import render  # rich: a `--json` or `--quiet` run does without it

        stderr = console("stderr")
        every = float(os.environ.get("GLAZE_LOG_EVERY", "10"))
        summary = enrichment.enrich(request, lambda stats: render.live_progress(stats, stderr) if live else
                                    render.log_progress(stats, stderr, every))
    else:
        summary = enrichment.enrich(request)
    if as_json:
        _print_json(summary.to_json())
    elif not quiet:
        render.enrich_summary(summary.to_json(), stderr)
    raise typer.Exit(summary.exit_code)


@app.command()
def status(
    sheet: Annotated[Path | None, typer.Argument(help="Only this sheet.", show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    as_json: JsonOpt = False,
    rows: Annotated[bool, typer.Option("--rows", help="List rows with their status and errors.")] = False,
    state: Annotated[str | None, typer.Option("--state", help="With --rows: only rows in this status.")] = None,
) -> None:
    """Show progress of the workspace's sheets: rows, tasks, fields, providers, last job."""
    from glaze_cli import render

    if state is not None and state not in render.ROW_STATES:
        raise UsageError(f"--state: {state!r} is not a row status; use one of {', '.join(render.ROW_STATES)}")
    if rows or state:
        listing = service.status_rows(sheet, workspace, state)
        if as_json:
            _print_json(listing)
        else:
            render.row_listing(listing, console("stdout"))
        return
    report = service.status(sheet, workspace)
    if as_json:
        _print_json(report)
    else:
        render.status_tables(report, console("stdout"))


@app.command()
def reconcile(
    sheet: Annotated[Path | None, typer.Argument(help="Only this sheet.", show_default=False)] = None,
    workspace: WorkspaceOpt = None,
    check: Annotated[bool, typer.Option("--check", help="Only report drift; exit 1 when there is any.")] = False,
    as_json: JsonOpt = False,
    wait: WaitOpt = None,
) -> None:
    """Rebuild every row's counters and status from its tasks."""
    report = service.reconcile(sheet, workspace, check, _duration("--wait", wait) or 0.0)
    if as_json:
        _print_json(report)
    else:
        from glaze_cli import render

        render.reconcile_report(report, console("stdout"))
    raise typer.Exit(1 if check and report["drift_rows"] else 0)


@app.command()
def export(
    sheet: Annotated[Path, typer.Argument(help="The sheet to export.", show_default=False)],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Where to write "
                                                "(default: STEM.enriched.SUFFIX beside SHEET).")] = None,
    with_meta: Annotated[bool, typer.Option("--with-meta", help="Add FIELD__source and FIELD__confidence.")] = False,
    formula_guard: Annotated[bool, typer.Option("--formula-guard/--no-formula-guard",
                                                help="Prefix formula-like text in CSV/TSV output with '.")] = True,
    workspace: WorkspaceOpt = None,
    wait: WaitOpt = None,
) -> None:
    """Write the enriched sheet from the state file, without calling anything."""
    report = service.export(sheet, workspace, output, with_meta, formula_guard, _duration("--wait", wait) or 0.0)
    console("stderr").print(f"wrote {report['rows']:,} rows to {report['output']}")


@app.command()
def providers(
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List every provider, configured or built in, with its outputs and limits."""
    listed = service.providers(config, None)
    if as_json:
        _print_json(listed)
    else:
        from glaze_cli import render

        render.providers_table(listed, console("stdout"))


def _cache_command(action: str, workspace: Path | None, as_json: bool) -> None:
    report = service.cache_command(action, workspace)
    if as_json:
        _print_json(report)
    else:
        from glaze_cli import render

        render.cache_report(report, console("stdout"))


@cache_app.command("stats")
def cache_stats(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Entries and size of the response cache."""
    _cache_command("stats", workspace, as_json)


@cache_app.command("prune")
def cache_prune(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Drop expired entries."""
    _cache_command("prune", workspace, as_json)


@cache_app.command("clear")
def cache_clear(workspace: WorkspaceOpt = None, as_json: JsonOpt = False) -> None:
    """Drop every entry (the next run calls providers again)."""
    _cache_command("clear", workspace, as_json)


def _unwrap(exc: BaseException) -> BaseException:
    """The error inside (nested) task-group exception groups, a GlazeError first, so it still reads well."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [_unwrap(e) for e in exc.exceptions]
        exc = next((e for e in inner if isinstance(e, GlazeError)), inner[0])
    return exc


def main() -> None:
    """Entry point of the `glaze` console script."""
    code = _run_app()
    # Leave without the interpreter's teardown: every file and connection is closed by now, DuckDB's bindings
    # print nanobind "leaked instance" notices at teardown after an Arrow export, and tearing down a big
    # run's objects only costs time.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run_app() -> int:
    """Run the command; returns its exit code (the one error boundary)."""
    try:
        try:
            app()
        except BaseExceptionGroup as group:
            raise _unwrap(group) from None
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Interrupted as exc:
        console("stderr").print(exc.message)
        return exc.exit_code
    except KeyboardInterrupt:
        # Commands other than enrich hold nothing worth a clean stop: Ctrl-C ends them with 130, quietly.
        return EXIT_SIGINT
    except GlazeError as exc:
        if os.environ.get("GLAZE_DEBUG") == "1":
            raise
        console("stderr").print(_red("error: ", exc.message))
        return exc.exit_code
    except Exception as exc:
        if os.environ.get("GLAZE_DEBUG") == "1":
            raise
        console("stderr").print(_red("internal error: ", f"{type(exc).__name__}: {exc}. This is a bug in glaze; "
                                     "run again with GLAZE_DEBUG=1 for the traceback and report it."))
        return 70
    return 0


def _red(label: str, message: str) -> Any:
    """`label` in red, then `message` as plain text (never read as rich markup)."""
    from rich.text import Text

    return Text.assemble((label, "red"), message)
