"""Which HTTP transport glaze's client uses, by measurement: client CPU per request on loopback.

    python -m benchmarks.transport --requests 2000 --connections 50 --repeat 3

Sends the same GETs to the loopback provider (0 latency) through httpx's own pool, through httpx with the
httpx-aiohttp transport (what glaze uses), and through plain aiohttp as the reference. Reports medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from benchmarks.common import provider_server


async def _drive(get: Callable[[str], Awaitable[object]], base: str, requests: int, connections: int) -> None:
    gate = asyncio.Semaphore(connections)

    async def one(i: int) -> None:
        async with gate:
            await get(f"{base}/v1/company?domain=company{i % 100}.example")

    await asyncio.gather(*(one(i) for i in range(requests)))


async def httpx_client(transport: httpx.AsyncBaseTransport | None, base: str, requests: int, connections: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(transport=transport, limits=limits) as client:
        async def get(url: str) -> object:
            return (await client.get(url)).json()

        await _drive(get, base, requests, connections)


async def aiohttp_client(base: str, requests: int, connections: int) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:
        async def get(url: str) -> object:
            async with session.get(url) as response:
                return await response.json()

        await _drive(get, base, requests, connections)


def measure(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall s, client CPU s) of one run in a fresh event loop."""
    cpu, wall = time.process_time(), time.perf_counter()
    asyncio.run(run())
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n, c = args.requests, args.connections
    with provider_server(0.0, 0.0, 100) as server:
        base = server.base_url
        contenders: dict[str, Callable[[], Awaitable[None]]] = {
            "httpx (own pool)": lambda: httpx_client(None, base, n, c),
            "httpx + httpx-aiohttp (glaze)": lambda: httpx_client(
                AiohttpTransport(limits=httpx.Limits(max_connections=c, max_keepalive_connections=c)), base, n, c),
            "aiohttp (reference)": lambda: aiohttp_client(base, n, c),
        }
        results = {}
        for name, run in contenders.items():
            runs = [measure(run) for _ in range(args.repeat)]
            results[name] = (statistics.median(w for w, _ in runs), statistics.median(u for _, u in runs))
    print(f"{n:,} GETs to the loopback provider at {c} connections; median of {args.repeat}")
    print("| transport | wall s | client CPU s | CPU ms/request |\n|---|---|---|---|")
    for name, (wall, cpu) in results.items():
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {cpu / n * 1000:.2f} |")
    own, glaze = results["httpx (own pool)"][1], results["httpx + httpx-aiohttp (glaze)"][1]
    print(f"httpx's own pool uses {own / glaze:.1f}x the CPU of the aiohttp transport")


if __name__ == "__main__":
    main()
