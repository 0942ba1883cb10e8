"""glaze side by side with a hand-written peer and the physical bound, on this machine, in one run.

    python -m benchmarks.compare                 # every scenario, writes benchmarks/results.md and results.png
    python -m benchmarks.compare --smoke --out /tmp/r.md   # seconds: small sizes, for CI (no targets checked)

Scenarios (sizes from the speed issue; --smoke shrinks them):
- provider-bound: ROWS x 3 fields from one loopback provider at LATENCY s, concurrency 100: glaze, the peer
  with one call per row, the peer with one call per cell, and the bound calls x latency / concurrency;
- concurrency sweep: glaze and the per-row peer at several concurrencies (the chart);
- rate-limited: the provider allows 200 requests in any 1 s window (429 past it); glaze with rate 200/s;
  the bound is calls / rate;
- engine: the simulated provider at 0 latency, 200,000 rows x 2 fields: cells/s and DuckDB statements/cell;
- scale: 1,000,000 rows x 2 fields, Parquet in and out: load time, peak RSS, `glaze status`, `glaze reconcile`.

Every wall time is a whole command as a user runs it (start-up included), median of --repeat runs.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, median, provider_server, run_glaze

BASELINE = REPO / "benchmarks" / "baseline.json"

FIELDS = ["industry", "website", "name"]

HTTP_CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry", website = "company.website", name = "company.name" }}
concurrency = {concurrency}
{rate}
retries = 3
"""


@dataclass
class Sizes:
    """How big each scenario is."""

    rows: int = 6000
    latency: float = 0.05
    concurrency: int = 100
    sweep: tuple[int, ...] = (25, 50, 100, 200)
    rate_rows: int = 2000
    rate: int = 200
    engine_rows: int = 200_000
    scale_rows: int = 1_000_000
    repeat: int = 3


SMOKE = Sizes(rows=300, latency=0.01, concurrency=50, sweep=(10, 50), rate_rows=100, rate=100, engine_rows=2000,
              scale_rows=5000, repeat=1)


@dataclass
class Report:
    """Markdown sections and the sweep's points, gathered as scenarios run."""

    sections: list[str] = field(default_factory=list)
    sweep: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def table(self, title: str, intro: str, header: Sequence[str], rows: list[Sequence[Any]]) -> None:
        lines = [f"## {title}", "", intro, "", "| " + " | ".join(header) + " |",
                 "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
        self.sections.append("\n".join(lines))
        print("\n" + self.sections[-1], flush=True)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def write_domains(path: Path, rows: int) -> None:
    """A one-column sheet of distinct synthetic domains the loopback provider knows."""
    with path.open("w", encoding="utf-8") as handle:
        handle.write("domain\n")
        handle.writelines(f"company{i}.example\n" for i in range(rows))


def server_stats(base_url: str) -> dict[str, Any]:
    """The provider's counters since the last call, which resets them."""
    with urllib.request.urlopen(f"{base_url}/_stats?reset=1", timeout=10) as response:
        return json.loads(response.read())


def run_peer(root: Path, base_url: str, concurrency: int, mode: str) -> tuple[float, dict[str, int]]:
    """The hand-written script, as a process: (wall s, {"calls", "rows", "filled"})."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "benchmarks.peer", "--sheet", "sheet.csv", "--out", "peer.csv",
                           "--url", f"{base_url}/v1/company", "--fields", ",".join(FIELDS), "--concurrency",
                           str(concurrency), "--mode", mode], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"peer failed: {proc.stderr.strip()}")
    return wall, json.loads(proc.stdout)


def glaze_http(root: Path, base_url: str, concurrency: int, rate: str | None = None) -> tuple[float, dict[str, Any]]:
    """glaze on the sheet from an empty workspace: (wall s, summary)."""
    (root / "glaze.toml").write_text(HTTP_CONFIG.format(base=base_url, concurrency=concurrency,
                                                        rate=f'rate = "{rate}"' if rate else ""), encoding="utf-8")
    shutil.rmtree(root / ".glaze", ignore_errors=True)
    run = run_glaze(["enrich", "sheet.csv", "--fields", ",".join(FIELDS), "--workspace", ".glaze"], root)
    return run.wall_s, run.summary


def provider_bound(root: Path, sizes: Sizes, report: Report) -> None:
    """glaze, the per-row peer and the per-cell peer against the bound, at one concurrency."""
    write_domains(root / "sheet.csv", sizes.rows)
    with provider_server(sizes.latency, 0.0, sizes.rows) as server:
        server_stats(server.base_url)
        results: dict[str, list[tuple[float, int, float, float]]] = {
            "glaze": [], "peer, a call per row": [], "peer, a call per cell": []}

        def record(name: str, wall: float) -> None:
            # The provider's clock (time.monotonic) is this process's: the run began `wall` s before now.
            ended, stats = time.monotonic(), server_stats(server.base_url)
            began = ended - wall
            results[name].append((wall, stats["requests"], stats["first_started"] - began,
                                  ended - stats["last_finished"]))

        for _ in range(sizes.repeat):
            wall, summary = glaze_http(root, server.base_url, sizes.concurrency)
            record("glaze", wall)
            assert summary["filled"] == sizes.rows * len(FIELDS), summary
            for mode, name in (("row", "peer, a call per row"), ("cell", "peer, a call per cell")):
                wall, _ = run_peer(root, server.base_url, sizes.concurrency, mode)
                record(name, wall)
    bound = sizes.rows * sizes.latency / sizes.concurrency
    peer = median([r[0] for r in results["peer, a call per row"]])
    rows = []
    for name, runs in results.items():
        wall, calls = median([r[0] for r in runs]), runs[-1][1]
        rows.append((name, wall, calls, calls / sizes.rows, bound / wall, wall / peer,
                     median([r[2] for r in runs]), median([r[3] for r in runs])))
    rows.append(("bound (rows x latency / concurrency)", bound, sizes.rows, 1.0, 1.0, bound / peer, 0.0, 0.0))
    report.figures["provider_bound"] = {r[0]: {"wall_s": r[1], "calls": r[2], "efficiency": r[4],
                                               "first_call_s": r[6], "after_last_answer_s": r[7]} for r in rows}
    report.table(
        "Provider-bound",
        f"{sizes.rows:,} rows x {len(FIELDS)} fields from one provider at {sizes.latency * 1000:.0f} ms, "
        f"concurrency {sizes.concurrency}; whole commands, start-up included; median of {sizes.repeat}. "
        "First call: from the command's start until the provider saw its first request; after the last answer: "
        "from the provider's last answer until the command ended.",
        ["who", "wall s", "calls", "calls per row", "efficiency (bound / wall)", "wall / peer", "first call s",
         "after the last answer s"], rows)


def sweep(root: Path, sizes: Sizes, report: Report) -> None:
    """glaze and the per-row peer over concurrencies, for the chart."""
    write_domains(root / "sheet.csv", sizes.rows)
    rows = []
    with provider_server(sizes.latency, 0.0, sizes.rows) as server:
        for concurrency in sizes.sweep:
            glaze_walls, peer_walls = [], []
            for _ in range(sizes.repeat):
                glaze_walls.append(glaze_http(root, server.base_url, concurrency)[0])
                peer_walls.append(run_peer(root, server.base_url, concurrency, "row")[0])
            bound = sizes.rows * sizes.latency / concurrency
            g, p = median(glaze_walls), median(peer_walls)
            report.sweep.setdefault("glaze", []).append((concurrency, g))
            report.sweep.setdefault("peer (a call per row)", []).append((concurrency, p))
            report.sweep.setdefault("bound", []).append((concurrency, bound))
            rows.append((concurrency, bound, g, p, bound / g, bound / p, g / p))
    report.table(
        "Concurrency sweep",
        f"{sizes.rows:,} rows x {len(FIELDS)} fields at {sizes.latency * 1000:.0f} ms; median of {sizes.repeat}.",
        ["concurrency", "bound s", "glaze s", "peer s", "glaze efficiency", "peer efficiency", "glaze / peer"], rows)


def rate_limited(root: Path, sizes: Sizes, report: Report) -> None:
    """glaze with a rate against a provider that enforces it with 429s."""
    write_domains(root / "sheet.csv", sizes.rate_rows)
    walls, over = [], []
    with provider_server(sizes.latency, 0.0, sizes.rate_rows, "--rate-limit", str(sizes.rate)) as server:
        server_stats(server.base_url)
        for _ in range(sizes.repeat):
            wall, summary = glaze_http(root, server.base_url, sizes.concurrency, f"{sizes.rate}/s")
            stats = server_stats(server.base_url)
            walls.append(wall)
            over.append(stats["sent_429"])
            # Each run starts against a provider nobody called in its last window: a run ends with 200 calls
            # in half a second, and glaze knows nothing of calls made before it started.
            time.sleep(1.1)
            assert summary["filled"] == sizes.rate_rows * len(FIELDS), summary
        peer_wall, peer = run_peer(root, server.base_url, sizes.concurrency, "row")
        peer_429 = server_stats(server.base_url)["sent_429"]
    bound = sizes.rate_rows / sizes.rate
    wall = median(walls)
    report.figures["rate_limited"] = {"wall_s": wall, "bound_s": bound, "over_limit": max(over)}
    report.table(
        "Rate-limited",
        f"{sizes.rate_rows:,} rows x {len(FIELDS)} fields; the provider answers 429 past {sizes.rate} requests in "
        f"any 1 s window; glaze has rate {sizes.rate}/s, concurrency {sizes.concurrency}; median of {sizes.repeat}.",
        ["who", "wall s", "bound (calls / rate) s", "wall / bound", "requests over the limit (429s)",
         "cells filled"],
        [("glaze", wall, bound, wall / bound, max(over), sizes.rate_rows * len(FIELDS)),
         ("peer, a call per row (no rate limiter)", peer_wall, bound, peer_wall / bound, peer_429,
          peer["filled"])])


def engine(root: Path, sizes: Sizes, report: Report) -> None:
    """Cells/s with the simulated provider at 0 latency: only glaze itself is measured."""
    write_domains(root / "sheet.csv", sizes.engine_rows)
    (root / "glaze.toml").write_text('[providers.sim]\ntype = "simulated"\ninputs = ["domain"]\nlatency = "0ms"\n'
                                     'concurrency = 200\noutputs = ["industry", "website"]\n', encoding="utf-8")
    runs = []
    for _ in range(sizes.repeat):
        shutil.rmtree(root / ".glaze", ignore_errors=True)
        runs.append(run_glaze(["enrich", "sheet.csv", "--fields", "industry,website", "--workspace", ".glaze"],
                              root))
    cells = sizes.engine_rows * 2
    wall = median([r.wall_s for r in runs])
    fill = median([r.summary["fill_s"] for r in runs])
    statements = runs[-1].summary["db_statements"]
    report.figures["engine"] = {"cells_per_s": cells / wall, "statements_per_cell": statements / cells,
                                "peak_rss_mb": max(r.max_rss_mb for r in runs)}
    report.table(
        "Engine overhead",
        f"The simulated provider at 0 latency, {sizes.engine_rows:,} rows x 2 fields = {cells:,} cells; median of "
        f"{sizes.repeat}.",
        ["measure", "value"],
        [("whole command wall s", wall), ("cells/s, whole command", cells / wall),
         ("cells/s, fill phase", cells / fill), ("DuckDB statements (last run)", statements),
         ("DuckDB statements per cell", f"{statements / cells:.5f}"),
         ("peak RSS MB", max(r.max_rss_mb for r in runs))])


def timed(args: Sequence[str], cwd: Path) -> tuple[float, float]:
    """(wall s, peak RSS MB) of one glaze command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "glaze_cli", *args], cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"glaze {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return wall, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def scale(root: Path, sizes: Sizes, report: Report) -> None:
    """A big Parquet sheet: load, peak memory, status and reconcile."""
    import polars as pl

    n = sizes.scale_rows
    pl.DataFrame({"domain": [f"company{i}.example" for i in range(n)]}).write_parquet(root / "big.parquet")
    (root / "glaze.toml").write_text('[providers.sim]\ntype = "simulated"\ninputs = ["domain"]\nlatency = "0ms"\n'
                                     'concurrency = 200\noutputs = ["industry", "website"]\n', encoding="utf-8")
    shutil.rmtree(root / ".glaze", ignore_errors=True)
    run = run_glaze(["enrich", "big.parquet", "--fields", "industry,website", "--workspace", ".glaze"], root)
    status_walls = [timed(["status", "--workspace", ".glaze"], root)[0] for _ in range(max(3, sizes.repeat))]
    reconcile_walls = [timed(["reconcile", "--workspace", ".glaze"], root)[0] for _ in range(max(3, sizes.repeat))]
    figures = {"load_s": run.summary["load_s"], "enrich_wall_s": run.wall_s, "peak_rss_mb": run.max_rss_mb,
               "status_s": median(status_walls), "reconcile_s": median(reconcile_walls)}
    report.figures["scale"] = figures
    report.table(
        "Scale",
        f"{n:,} rows x 2 fields, Parquet in and out, the simulated provider at 0 latency; status and reconcile "
        "are whole commands, median of 3.",
        ["measure", "value"],
        [("load s (start of the command to the first claim)", figures["load_s"]),
         ("whole enrich wall s", run.wall_s), ("cells/s, whole enrich", 2 * n / run.wall_s),
         ("peak RSS MB (enrich)", run.max_rss_mb), ("glaze status s", figures["status_s"]),
         ("glaze reconcile s", figures["reconcile_s"])])


def chart(report: Report, path: Path) -> None:
    """Wall time against concurrency for glaze, the peer and the bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    styles = {"glaze": "o-", "peer (a call per row)": "s--", "bound": "k:"}
    for name, points in report.sweep.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, styles.get(name, "o-"), label=name)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    concurrencies = sorted({x for points in report.sweep.values() for x, _ in points})
    ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.set_xlabel("concurrency (calls in flight)")
    ax.set_ylabel("wall time, s (log)")
    ax.set_title("Wall time against concurrency (whole command, start-up included)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _ratio(figures: dict[str, Any], base: dict[str, Any]) -> tuple[float | None, float | None]:
    now = figures.get("provider_bound")
    if not now:
        return None, None
    glaze, peer = now["glaze"]["wall_s"], now["peer, a call per row"]["wall_s"]
    return base["provider_bound"]["glaze_s"] / base["provider_bound"]["peer_s"], glaze / peer


def _r(ratio: float) -> str:
    """A ratio to three places, so that one just over its target does not print as equal to it."""
    return f"{ratio:.3f}"


def targets(report: Report, *, smoke: bool = False) -> None:
    """The issue's targets: the baseline (benchmarks/baseline.json), this run, and whether each is met."""
    base = json.loads(BASELINE.read_text(encoding="utf-8"))
    fig = report.figures
    rows: list[Sequence[Any]] = []

    def add(measure: str, target: str, before: Any, now: Any, met: bool | None) -> None:
        rows.append((measure, target, before, now, "-" if met is None else ("yes" if met else "no")))

    if "provider_bound" in fig:
        pb = fig["provider_bound"]
        before_ratio, ratio = _ratio(fig, base)
        add("provider-bound: glaze wall / peer wall", "<= 1.10", _r(before_ratio), _r(ratio), ratio <= 1.10)
        eff = pb["glaze"]["efficiency"]
        add("provider-bound: efficiency (bound / wall, start-up included)", ">= 0.85",
            _r(base["provider_bound"]["bound_s"] / base["provider_bound"]["glaze_s"]), _r(eff), eff >= 0.85)
        per_row = pb["glaze"]["calls"] / pb["bound (rows x latency / concurrency)"]["calls"]
        add("provider-bound: calls per row", "1", base["provider_bound"]["calls_per_row"], per_row, per_row == 1)
    if "rate_limited" in fig:
        rl, b = fig["rate_limited"], base["rate_limited"]
        add("rate-limited: wall / (calls / rate)", "<= 1.05", _r(b["wall_s"] / b["bound_s"]),
            _r(rl["wall_s"] / rl["bound_s"]), rl["wall_s"] / rl["bound_s"] <= 1.05)
        add("rate-limited: requests over the limit", "0", b["over_limit"], rl["over_limit"], rl["over_limit"] == 0)
    if "engine" in fig:
        en, b = fig["engine"], base["engine"]
        add("engine: cells/s, whole command", ">= 20,000", b["cells_per_s"], en["cells_per_s"],
            en["cells_per_s"] >= 20_000)
        add("engine: DuckDB statements per cell", "<= 0.01", f"{b['statements_per_cell']:.5f}",
            f"{en['statements_per_cell']:.5f}", en["statements_per_cell"] <= 0.01)
        add("engine: peak RSS MB (400k cells)", "-", b["peak_rss_mb"], en["peak_rss_mb"], None)
    if "scale" in fig:
        sc, b = fig["scale"], base["scale"]
        add("scale: load s (1M rows)", "<= 10", b["load_s"], sc["load_s"], sc["load_s"] <= 10)
        add("scale: peak RSS MB", "<= 1,024", b["peak_rss_mb"], sc["peak_rss_mb"], sc["peak_rss_mb"] <= 1024)
        add("scale: glaze status s", "<= 0.5", b["status_s"], sc["status_s"], sc["status_s"] <= 0.5)
        add("scale: glaze reconcile s", "<= 3", b["reconcile_s"], sc["reconcile_s"], sc["reconcile_s"] <= 3)
    if rows:
        intro = (f"Before: {base['source']} (that whole run: [baseline.md](baseline.md)). Now: this run, the tables "
                 "below. What changed in between, and why: [changes.md](changes.md).")
        if smoke:
            intro = "A smoke run at toy sizes: neither the before column nor the targets apply to its figures."
        report.table("Targets: before and now", intro, ["measure", "target", "before", "now", "met"], rows)
        report.sections.insert(0, report.sections.pop())  # first in the file


SCENARIOS = {"provider-bound": provider_bound, "sweep": sweep, "rate-limited": rate_limited, "engine": engine,
             "scale": scale}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, for CI: seconds, nothing checked")
    parser.add_argument("--only", action="append", choices=list(SCENARIOS), help="run only these scenarios")
    parser.add_argument("--repeat", type=int, help="runs per measurement (default 3; 1 with --smoke)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results.md")
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes()
    if args.repeat:
        sizes.repeat = args.repeat
    report = Report()
    # As `pip install` does: an editable install (and PYTHONDONTWRITEBYTECODE, set on these machines) would
    # otherwise compile glaze's own modules again at every start (~30 ms a command here).
    compileall.compile_dir(REPO / "src", quiet=1)
    with tempfile.TemporaryDirectory(prefix="glaze-bench-") as tmp:
        for name in args.only or list(SCENARIOS):
            SCENARIOS[name](Path(tmp), sizes, report)
    targets(report, smoke=args.smoke)  # with --smoke too, so that CI runs it
    command = "python -m benchmarks.compare" + (" --smoke" if args.smoke else "") + "".join(
        f" --only {name}" for name in args.only or [])
    header = (f"# Benchmark results\n\nMeasured {date.today().isoformat()} on this machine ({os.cpu_count()} cores, "
              f"Python {platform.python_version()}, {platform.system()}), with `{command}`. The loopback provider "
              "runs in its own process on the same cores.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    body = [header]
    if report.sweep:
        png = args.out.with_suffix(".png")
        chart(report, png)
        body.append(f"![wall time against concurrency]({png.name})\n")
    body += [s + "\n" for s in report.sections]
    args.out.write_text("\n".join(body), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(report.figures, indent=2), encoding="utf-8")
    print(f"\nwrote {args.out}", flush=True)


if __name__ == "__main__":
    main()
