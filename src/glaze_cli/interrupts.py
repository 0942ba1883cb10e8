"""SIGINT and SIGTERM for a whole `glaze enrich`: the first asks for a clean stop, a second exits at once.

Outside the event loop the handlers are plain Python ones that only record the signal; the service checks
between steps. Inside it the runner listens with anyio and records through the same object, so whichever
phase a signal lands in, the exit code is 130 or 143 and the state is whatever the last transaction left.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

from glaze_cli.errors import GlazeError

EXIT_SIGINT, EXIT_SIGTERM = 130, 143
SIGNALS = (signal.SIGINT, signal.SIGTERM)


def exit_code_for(signum: int) -> int:
    """130 for SIGINT, 143 for SIGTERM."""
    return EXIT_SIGINT if signum == signal.SIGINT else EXIT_SIGTERM


class Interrupted(GlazeError):
    """A signal arrived before anything was changed; the command stops with 130 or 143."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name} before anything was changed")
        self.exit_code = exit_code_for(signum)


class Interrupts:
    """The signals a run has received; a second one ends the process at once (every write is one transaction)."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.on_first: Callable[[int], None] | None = None
        self.raising = False  # True while nothing has been written: a signal then ends the command at once
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Record SIGINT/SIGTERM with plain handlers (main thread only)."""
        for signum in SIGNALS:
            previous = signal.signal(signum, self._handle)
            self._previous.setdefault(signum, previous)

    def restore(self) -> None:
        """Put back the handlers that were there before `install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.record(signum)
        if self.raising:
            raise Interrupted(signum)

    def record(self, signum: int) -> None:
        """Note a signal: the first asks for a stop (and calls `on_first`), a second exits now."""
        if self.received:
            os._exit(exit_code_for(signum))
        self.received.append(signum)
        if self.on_first is not None:
            self.on_first(signum)

    @property
    def exit_code(self) -> int | None:
        """130/143 once a signal has arrived, else None."""
        return exit_code_for(self.received[0]) if self.received else None

