"""A provider that fails and rate-limits: how many cells still fail, and how many 429s glaze provokes.

    python -m benchmarks.faults --rows 800 --error-rate 0.10 --malformed-rate 0.05 --server-limit 60 \\
        --rate 50/s --retries 3

The loopback provider answers 503 to a share of requests, malformed JSON to another share, and 429 (with
Retry-After) past `--server-limit` requests in any 1 s window. glaze runs with `rate` and `retries` set.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmarks.common import provider_server, run_glaze, write_sheet

CONFIG = """
[providers.acme]
type = "http"
url = "{base}/v1/company?domain={{domain}}"
outputs = {{ industry = "company.industry" }}
concurrency = {concurrency}
rate = "{rate}"
retries = {retries}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=800)
    parser.add_argument("--error-rate", type=float, default=0.10)
    parser.add_argument("--malformed-rate", type=float, default=0.05)
    parser.add_argument("--server-limit", type=float, default=60)
    parser.add_argument("--rate", default="50/s")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="glaze-bench-") as tmp:
        root = Path(tmp)
        write_sheet(root / "sheet.csv", args.rows)
        with provider_server(0.0, 0.0, args.rows, "--error-rate", str(args.error_rate), "--malformed-rate",
                             str(args.malformed_rate), "--rate-limit", str(args.server_limit), "--seed",
                             str(args.seed)) as server:
            (root / "glaze.toml").write_text(CONFIG.format(base=server.base_url, concurrency=args.concurrency,
                                                           rate=args.rate, retries=args.retries), encoding="utf-8")
            run = run_glaze(["enrich", "sheet.csv", "--fields", "industry", "--workspace", ".glaze"], root)
    s = run.summary
    print(f"{args.rows} cells; provider: {args.error_rate:.0%} 503, {args.malformed_rate:.0%} malformed JSON, "
          f"{args.server_limit:g} requests/s; glaze: rate {args.rate}, retries {args.retries}, "
          f"concurrency {args.concurrency}")
    print("| measure | value |\n|---|---|")
    print(f"| cells done | {s['done']} ({s['filled']} filled) |")
    print(f"| cells failed | {s['failed']} |")
    print(f"| requests the provider received | {server.summary.get('requests')} |")
    print(f"| 429s the provider sent | {server.summary.get('sent_429')} |")
    sent = server.summary
    print(f"| 503s / malformed answers sent | {sent.get('sent_503')} / {sent.get('sent_malformed')} |")
    print(f"| wall s | {run.wall_s:.2f} |")
    print(f"| exit code | {s['exit_code']} |")


if __name__ == "__main__":
    main()
