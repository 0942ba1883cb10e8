"""CPU cost of the live display: the same simulated run with the live table on a pseudo-terminal, and without.

    python -m benchmarks.display --rows 50000 --repeat 3

Both runs fill rows x 2 fields from the simulated provider at 0 latency in a fresh workspace; the display
run has stderr on a pty (so rich draws ~4 frames a second), the other runs with --no-progress -q.
"""

from __future__ import annotations

import argparse
import os
import pty
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import median, write_sheet

CONFIG = ('[providers.sim]\ntype = "simulated"\ninputs = ["domain"]\nlatency = "0ms"\nconcurrency = 200\n'
          'outputs = ["industry", "website"]\n')


def timed_run(root: Path, display: bool) -> tuple[float, float]:
    """(wall s, CPU s) of one `glaze enrich` in a fresh workspace."""
    shutil.rmtree(root / ".glaze", ignore_errors=True)
    args = [sys.executable, "-m", "glaze_cli", "enrich", "sheet.csv", "--fields", "industry,website",
            "--workspace", ".glaze"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if display:
        master, slave = pty.openpty()
        proc = subprocess.Popen([*args, "--progress"], cwd=root, stdout=subprocess.DEVNULL, stderr=slave,
                                env={**os.environ, "COLUMNS": "100", "LINES": "30"})
        os.close(slave)
        while True:
            try:
                if not os.read(master, 65536):
                    break
            except OSError:
                break
        proc.wait()
        os.close(master)
    else:
        proc = subprocess.run([*args, "--no-progress", "-q"], cwd=root, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"glaze exited {proc.returncode}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glaze-bench-") as tmp:
        root = Path(tmp)
        write_sheet(root / "sheet.csv", args.rows)
        (root / "glaze.toml").write_text(CONFIG, encoding="utf-8")
        results = {True: [], False: []}
        for _ in range(args.repeat):  # interleaved, so drift on a shared machine hits both alike
            for display in (False, True):
                results[display].append(timed_run(root, display))
    off_cpu, on_cpu = (median([c for _, c in results[d]]) for d in (False, True))
    off_wall, on_wall = (median([w for w, _ in results[d]]) for d in (False, True))
    print(f"{args.rows:,} rows x 2 fields = {2 * args.rows:,} cells, simulated at 0 latency; median of {args.repeat}")
    print("| display | wall s | CPU s |\n|---|---|---|")
    print(f"| off (--no-progress -q) | {off_wall:.2f} | {off_cpu:.2f} |")
    print(f"| live table on a pty | {on_wall:.2f} | {on_cpu:.2f} |")
    print(f"CPU share of the display: {100 * (on_cpu - off_cpu) / on_cpu:.1f}% of the run's CPU")


if __name__ == "__main__":
    main()
