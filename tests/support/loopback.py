"""A real aiohttp server on 127.0.0.1, run on its own event loop in a background thread.

Tests (sync or async, any loop) and subprocesses can all reach it. Subclasses say what it serves.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class LoopbackServer:
    """Lifecycle shared by the test servers: start/stop, context manager, address."""

    thread_name = "loopback-server"

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self._host, self._port = host, port
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        """The aiohttp application to serve."""
        raise NotImplementedError

    def start(self) -> Self:
        """Start serving on a background thread; returns once the socket is listening."""
        if self._thread is not None:
            return self
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        try:
            self._port = asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._runner = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._thread is None:
            raise RuntimeError(f"{type(self).__name__} is not running; call start() first")
        return f"http://{self._host}:{self._port}"

    async def _listen(self) -> int:
        # A long backlog and no access log: benchmarks send hundreds of concurrent requests.
        self._runner = web.AppRunner(self.make_app(), access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, backlog=1024, reuse_address=True)
        await site.start()
        return int(self._runner.addresses[0][1])
