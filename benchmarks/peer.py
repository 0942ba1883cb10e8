"""The peer glaze is measured against: the enrichment script a competent user writes by hand.

    python -m benchmarks.peer --sheet s.csv --out s.out.csv --url http://127.0.0.1:PORT/v1/company \\
        --fields industry,website,name --concurrency 100 --mode row

aiohttp, one semaphore, every row at once under it, retries with exponential backoff and jitter for
connection errors, 429 and 5xx, and the output written at the end. `--mode row` makes one call per row and
fills every field from it; `--mode cell` makes one call per (row, field), as scripts that loop over columns
do. No cache, no state, no resume: everything glaze adds is missing here on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import random
import sys
from typing import Any

import aiohttp

RETRIES = 3


async def fetch(session: aiohttp.ClientSession, gate: asyncio.Semaphore, url: str, domain: str) -> dict[str, Any]:
    """One company's JSON (or {} when it is unknown or keeps failing), with retries and backoff."""
    for attempt in range(RETRIES + 1):
        async with gate:
            try:
                async with session.get(url, params={"domain": domain}) as response:
                    if response.status == 404:
                        return {}
                    if response.status == 429 or response.status >= 500:
                        retry_after = float(response.headers.get("Retry-After", 0) or 0)
                        raise aiohttp.ClientResponseError(response.request_info, (), status=response.status,
                                                          message=str(retry_after))
                    response.raise_for_status()
                    return (await response.json()).get("company", {})
            except (TimeoutError, aiohttp.ClientError, json.JSONDecodeError) as exc:
                if attempt == RETRIES:
                    return {}
                wait = random.uniform(0, 0.2 * 2 ** attempt)
                if isinstance(exc, aiohttp.ClientResponseError) and exc.message:
                    wait = max(wait, float(exc.message))
        await asyncio.sleep(wait)
    return {}


async def enrich(rows: list[dict[str, str]], url: str, fields: list[str], concurrency: int, mode: str) -> int:
    """Fill `fields` of every row in place; returns the number of calls made (first attempts)."""
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if mode == "row":
            companies = await asyncio.gather(*(fetch(session, gate, url, row["domain"]) for row in rows))
            for row, company in zip(rows, companies, strict=True):
                for name in fields:
                    row[name] = company.get(name, "")
            return len(rows)

        async def one_cell(row: dict[str, str], name: str) -> None:
            row[name] = (await fetch(session, gate, url, row["domain"])).get(name, "")

        await asyncio.gather(*(one_cell(row, name) for row in rows for name in fields))
        return len(rows) * len(fields)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--fields", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--mode", choices=("row", "cell"), default="row")
    args = parser.parse_args()
    fields = args.fields.split(",")
    with open(args.sheet, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = list(reader.fieldnames or [])
        rows = list(reader)
    calls = asyncio.run(enrich(rows, args.url, fields, args.concurrency, args.mode))
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns + fields)
        writer.writeheader()
        writer.writerows(rows)
    filled = sum(1 for row in rows for name in fields if row.get(name))
    json.dump({"calls": calls, "rows": len(rows), "filled": filled}, sys.stdout)


if __name__ == "__main__":
    main()
