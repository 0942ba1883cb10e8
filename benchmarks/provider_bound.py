"""Provider-bound run: glaze against the loopback provider with latency, compared with the physical bound.

    python -m benchmarks.provider_bound --rows 5000 --latency 0.05 --concurrency 100 --repeat 3

The bound is calls x mean latency / concurrency: no client can finish faster while the provider holds each
request for `latency` seconds and allows `concurrency` at once. Efficiency = bound / wall.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from benchmarks.common import median, provider_server, run_glaze, write_sheet

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry", website = "company.website", name = "company.name" }}
concurrency = {concurrency}
retries = 0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bound = args.rows * args.latency / args.concurrency
    with tempfile.TemporaryDirectory(prefix="glaze-bench-") as tmp, \
            provider_server(args.latency, 0.0, args.rows) as server:
        root = Path(tmp)
        write_sheet(root / "sheet.csv", args.rows)
        config = CONFIG.format(base=server.base_url, concurrency=args.concurrency)
        (root / "glaze.toml").write_text(config, encoding="utf-8")
        walls, fills, cpus = [], [], []
        for _ in range(args.repeat):
            shutil.rmtree(root / ".glaze", ignore_errors=True)
            run = run_glaze(["enrich", "sheet.csv", "--fields", "industry,website", "--workspace", ".glaze"], root)
            assert run.summary["calls"]["acme"] == args.rows, run.summary
            assert run.summary["filled"] == 2 * args.rows, run.summary
            walls.append(run.wall_s)
            fills.append(run.summary["fill_s"])
            cpus.append(run.cpu_s)
    print(f"{args.rows:,} rows x 2 fields, one provider at {args.latency * 1000:.0f} ms latency, concurrency "
          f"{args.concurrency}; median of {args.repeat}")
    print("| measure | value |\n|---|---|")
    print(f"| bound (calls x latency / concurrency) s | {bound:.2f} |")
    print(f"| glaze whole command wall s | {median(walls):.2f} |")
    print(f"| glaze fill phase wall s | {median(fills):.2f} |")
    print(f"| efficiency, whole command (bound / wall) | {bound / median(walls):.2f} |")
    print(f"| efficiency, fill phase | {bound / median(fills):.2f} |")
    print(f"| calls per row | {1:.0f} |")
    print(f"| glaze CPU s | {median(cpus):.2f} |")


if __name__ == "__main__":
    main()
