"""How hard glaze pushes each provider: concurrency, rate, 429 back-off, quota pauses, circuit breaker,
and stopping a provider whose key is rejected.
"""

from __future__ import annotations

import time
from collections import deque
from contextvars import ContextVar, Token
from enum import StrEnum

import anyio

from glaze_cli.config import Limits, Rate
from glaze_cli.errors import AuthProviderError, ProviderError, ProviderUnavailable, RateLimitedError

BREAKER_THRESHOLD = 8  # consecutive failed attempts that open the circuit
BREAKER_COOLDOWN = 30.0  # seconds before a probe call may close it again
AUTH_STOP_AFTER = 3  # rejected keys before the provider is stopped for the run

#: The start the rate window counted for the call this task is making; `mark_sent` moves it to when the
#: request actually left, since a busy event loop can send a call some milliseconds after its turn.
_CALL_START: ContextVar[list[float] | None] = ContextVar("glaze_call_start", default=None)


def mark_sent() -> None:
    """Called by the HTTP client once a request is on the wire: count the call from now in its rate window."""
    start = _CALL_START.get()
    if start is not None:
        start[0] = max(start[0], time.monotonic())


class CircuitState(StrEnum):
    """The circuit breaker's state."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class Slots:
    """Calls in flight under a limit that may change while calls wait (the 429 window), handed over in order.

    Written here rather than anyio's CapacityLimiter: its borrower bookkeeping (current_task on every take)
    was a tenth of the event loop's time in the engine benchmark (py-spy), and a run takes a slot per call.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[anyio.Event] = deque()

    async def take(self) -> None:
        """Hold one slot, waiting for one if all are in use."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # handed a slot as the wait was cancelled: pass it on
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        """Give a slot back; the longest waiter gets it."""
        self.used -= 1
        self._hand_over()

    def set_limit(self, limit: int) -> None:
        """Change the limit; calls already holding slots keep them."""
        self.limit = limit
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters and self.used < self.limit:
            self.used += 1
            self._waiters.popleft().set()


class RateWindow:
    """At most `count` calls start in any window of `period` seconds: a sliding log of the last starts.

    Written here rather than aiolimiter: with a bucket of one (so no window ever exceeds the rate) it lost
    the time of every late wake-up and reached 177 of 200 calls/s in the rate-limited benchmark; a bigger
    bucket would let 2 x rate through in one window. A provider counts arrivals, so each call is counted
    from when its request was sent (`mark_sent`, from the HTTP client), not from when it took its turn: a
    busy event loop can send a call tens of milliseconds late. The window is longer than the rate's period
    by 2% or 20 ms, whichever is more, for jitter between our clock and the provider's stamps. Measured on
    the loopback provider (which shares this machine's 2 cores), a request reaches it ~0.2 ms after it was
    counted, at most 7.5 ms (18,000 requests, matched one by one); 53 rate-limited runs at 20 ms drew no
    429, 24 of them with another thread holding the GIL for 75 ms every 0.1-0.3 s. The 40 ms this margin
    once needed was covering requests counted just before aiohttp wrote them rather than after.
    """

    MARGIN = 0.02
    MIN_MARGIN = 0.02  # seconds

    def __init__(self, rate: Rate) -> None:
        self.count = max(1, int(rate.count))
        period = rate.period * self.count / rate.count
        self.period = period + max(period * self.MARGIN, self.MIN_MARGIN)
        # Never faster than twice the rate, even with a window to spare: a burst of starts leaves the event loop
        # late in sending them, and late sends bunch up at the provider.
        self.gap = period / self.count / 2
        self._starts: deque[list[float]] = deque(maxlen=self.count)
        self._turn = anyio.Lock()  # first come, first served

    async def acquire(self) -> list[float]:
        """Wait until one more call may start, and count it as started; returns its start, a one-item list
        that `mark_sent` moves later if the request leaves late."""
        async with self._turn:
            now = time.monotonic()
            wait = self._starts[-1][0] + self.gap - now if self._starts else 0.0
            if len(self._starts) == self.count:
                wait = max(wait, self._starts[0][0] + self.period - now)
            if wait > 0:
                await anyio.sleep(wait)
            start = [time.monotonic()]
            self._starts.append(start)
            return start


class _Slot:
    """`async with guard.slot()`: a provider slot (and a global one), after any pause and the rate's spacing."""

    __slots__ = ("guard", "_counted")

    def __init__(self, guard: ProviderGuard) -> None:
        self.guard = guard
        self._counted: Token[list[float] | None] | None = None

    async def __aenter__(self) -> None:
        guard = self.guard
        if guard.paused_until > time.monotonic():
            await guard._wait_pause()
        if guard._global is not None:
            await guard._global.take()
        try:
            await guard._slots.take()
            try:
                if guard.paused_until > time.monotonic():
                    await guard._wait_pause()
                if guard._rate is not None:
                    self._counted = _CALL_START.set(await guard._rate.acquire())
            except BaseException:
                guard._slots.release()
                raise
        except BaseException:
            if guard._global is not None:
                guard._global.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        if self._counted is not None:
            _CALL_START.reset(self._counted)
        self.guard._slots.release()
        if self.guard._global is not None:
            self.guard._global.release()


class ProviderGuard:
    """One provider's limits and health for a run.

    Concurrency adapts to 429s (additive increase, multiplicative decrease); `Retry-After` and an
    exhausted `RateLimit-Remaining` pause every call of the provider, not just the one that was told.
    """

    def __init__(self, name: str, limits: Limits, global_slots: Slots | None = None,
                 secret_variables: list[str] | None = None) -> None:
        self.name = name
        self.limit = limits.concurrency
        self.window = float(limits.concurrency)
        self._slots = Slots(limits.concurrency)
        self._global = global_slots
        # No window of the rate's period (plus a margin) ever holds more starts than the rate allows.
        self._rate = RateWindow(limits.rate) if limits.rate else None
        self.paused_until = 0.0
        self.state = CircuitState.CLOSED
        self.failures_in_a_row = 0
        self.opened_at = 0.0
        self._probing = False
        self.auth_failures = 0
        self.stopped: str | None = None
        self.secret_variables = secret_variables or []
        self.rate_limited = 0

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._slots.used

    def admit(self) -> None:
        """Raise ProviderUnavailable when the provider must not be called now (stopped, or circuit open)."""
        if self.stopped:
            raise ProviderUnavailable(self.stopped)
        if self.state is CircuitState.OPEN:
            if time.monotonic() - self.opened_at < BREAKER_COOLDOWN:
                raise ProviderUnavailable(f"provider {self.name}: circuit open after {BREAKER_THRESHOLD} failures "
                                          "in a row; cells fall through to the next provider")
            self.state = CircuitState.HALF_OPEN
        if self.state is CircuitState.HALF_OPEN:
            if self._probing:
                raise ProviderUnavailable(f"provider {self.name}: circuit half-open, waiting for a probe call")
            self._probing = True

    def slot(self) -> _Slot:
        """Hold one call slot (global and provider), after any pause and the rate's spacing."""
        return _Slot(self)

    async def _wait_pause(self) -> None:
        while (wait := self.paused_until - time.monotonic()) > 0:
            await anyio.sleep(wait)

    def pause(self, seconds: float) -> None:
        """Hold every call of this provider for `seconds` (the longest pause asked for wins)."""
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def succeeded(self) -> None:
        """A call got an answer: close the circuit and grow the window back by about one slot per window."""
        self.failures_in_a_row = 0
        self.state = CircuitState.CLOSED
        self._probing = False
        if self.window < self.limit:
            self.window = min(float(self.limit), self.window + 1.0 / self.window)
            self._slots.set_limit(max(1, int(self.window)))

    def failed(self, error: ProviderError) -> str | None:
        """Account for a failed attempt; returns a message to show once when the provider is stopped."""
        if isinstance(error, RateLimitedError):
            self.rate_limited += 1
            self.window = max(1.0, self.window / 2)
            self._slots.set_limit(max(1, int(self.window)))
            self.pause(error.retry_after if error.retry_after is not None else 1.0)
            # Flow control, not ill health: the window and the pause handle it, the breaker does not count it.
            return None
        if error.retry_after:
            self.pause(error.retry_after)
        if isinstance(error, ProviderUnavailable):
            return None
        if isinstance(error, AuthProviderError):
            self.auth_failures += 1
            if self.auth_failures >= AUTH_STOP_AFTER and not self.stopped:
                where = (f"; check {', '.join(self.secret_variables)}" if self.secret_variables
                         else "; check its credentials")
                self.stopped = (f"provider {self.name} stopped for this run: its key was rejected "
                                f"{self.auth_failures} times (HTTP {error.http_status}){where}")
                return self.stopped
            return None
        self._probing = False
        self.failures_in_a_row += 1
        opening = self.state is CircuitState.HALF_OPEN or self.failures_in_a_row >= BREAKER_THRESHOLD
        if opening and self.state is not CircuitState.OPEN:
            self.state = CircuitState.OPEN
            self.opened_at = time.monotonic()
        return None
