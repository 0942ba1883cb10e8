"""Engine overhead: cells/s with the simulated provider at 0 latency, so only glaze itself is measured.

    python -m benchmarks.engine --rows 100000 --fields 2 --repeat 3

Each repeat starts from an empty workspace and runs `glaze enrich` as a user would (load, task creation,
claiming, the provider, cache writes, batched flushes, writing the output sheet). Reports the median of the
whole command and of the fill phase alone, plus DuckDB flushes per cell.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import median, run_glaze, write_sheet

FIELD_NAMES = ["industry", "website", "employee_count", "hq_country"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--fields", type=int, default=2, choices=range(1, len(FIELD_NAMES) + 1))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    fields = FIELD_NAMES[: args.fields]
    with tempfile.TemporaryDirectory(prefix="glaze-bench-") as tmp:
        root = Path(tmp)
        write_sheet(root / "sheet.csv", args.rows)
        (root / "glaze.toml").write_text(
            '[providers.sim]\ntype = "simulated"\ninputs = ["domain"]\nlatency = "0ms"\nconcurrency = 200\n'
            f"outputs = {fields!r}\n".replace("'", '"'),
            encoding="utf-8",
        )
        walls, fills, cpus, rss = [], [], [], []
        for _ in range(args.repeat):
            shutil.rmtree(root / ".glaze", ignore_errors=True)
            run = run_glaze(["enrich", "sheet.csv", "--fields", ",".join(fields), "--workspace", ".glaze"], root)
            cells = run.summary["cells"]
            assert run.summary["done"] == cells == args.rows * len(fields), run.summary
            walls.append(run.wall_s)
            fills.append(run.summary["fill_s"])
            cpus.append(run.cpu_s)
            rss.append(run.max_rss_mb)
            flushes = run.summary.get("flushes", 0)
    cells = args.rows * len(fields)
    print(f"simulated provider, 0 latency: {args.rows:,} rows x {len(fields)} fields = {cells:,} cells, "
          f"median of {args.repeat}")
    print("| measure | value |\n|---|---|")
    print(f"| whole command wall s | {median(walls):.2f} |")
    print(f"| cells/s, whole command | {cells / median(walls):,.0f} |")
    print(f"| fill phase wall s | {median(fills):.2f} |")
    print(f"| cells/s, fill phase | {cells / median(fills):,.0f} |")
    print(f"| CPU s (user+sys) | {median(cpus):.2f} |")
    print(f"| peak RSS MB | {max(rss):.0f} |")
    print(f"| store flushes (last run) | {flushes} ({flushes / cells:.5f} per cell) |")


if __name__ == "__main__":
    main()
