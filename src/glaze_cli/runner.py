"""The async engine: claim batches, run cells under limits, follow waterfalls, coalesce identical calls,
and hand results to the store in batches. Writes no SQL: every store call goes through `StoreGateway`.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from glaze_cli.cache import ResponseCache, cache_key
from glaze_cli.errors import PermanentProviderError, ProviderError
from glaze_cli.limits import ProviderGuard, Slots
from glaze_cli.models import Answer, CallRecord, CellResult, ClaimedRow, Outcome, TaskStatus
from glaze_cli.providers.base import Provider
from glaze_cli.store import Store

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")


class SerialThread:
    """One long-lived thread that runs blocking calls one at a time, in order.

    anyio's worker pool spread a run's store and cache calls over a dozen threads as they were handed back
    and forth, each with its own SQLite connection and malloc arena: a million-row run grew by several hundred
    MB. One thread per resource keeps one connection and bounded memory. (It relies on the asyncio backend,
    which is the one glaze runs on.)
    """

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` on the thread; a caller cancelled meanwhile leaves it to finish there."""
        return await asyncio.wrap_future(self._executor.submit(function, *args))

    def close(self) -> None:
        """Let queued calls finish, then end the thread."""
        self._executor.shutdown(wait=True)


class StoreGateway:
    """Runs store methods on one thread of their own, one at a time, so the event loop never blocks on DuckDB."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread = SerialThread("glaze-store")

    async def call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call `method(*args, **kwargs)` on the store's thread, after every store call made before it."""
        return await self._thread.run(lambda: method(*args, **kwargs))

    def close(self) -> None:
        """End the store's thread."""
        self._thread.close()


@dataclass(frozen=True, slots=True)
class Step:
    """One provider in a field's waterfall."""

    provider: Provider
    min_confidence: float = 0.0


@dataclass(frozen=True)
class Plan:
    """What to fill and how: each field's waterfall over built providers."""

    sheet_id: int
    fields: tuple[str, ...]
    waterfalls: dict[str, tuple[Step, ...]]
    providers: dict[str, Provider]
    max_row_index: int | None = None


@dataclass
class ProviderStats:
    """Live counters for one provider."""

    limit: int
    calls: int = 0
    cache_hits: int = 0
    errors: int = 0
    retries: int = 0
    rate_limited: int = 0
    priced_calls: int = 0  # calls whose answer stated its own cost (token-priced LLMs)
    priced_spend: float = 0.0
    in_flight: int = 0
    window: int = 0  # calls allowed in flight now (shrinks after 429s)
    circuit: str = "closed"
    spend: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2000))  # the most recent calls

    def quantile(self, q: float) -> float:
        """A latency quantile over the most recent calls, in ms."""
        recent = sorted(self.latencies_ms)
        if not recent:
            return 0.0
        return recent[min(len(recent) - 1, int(math.ceil(q * len(recent))) - 1)]


@dataclass
class RunStats:
    """Live progress, read by the display and the final summary."""

    total: int = 0
    done: int = 0
    failed: int = 0
    filled: int = 0
    spend: float = 0.0
    started: float = field(default_factory=time.monotonic)
    fields: dict[str, dict[str, int]] = field(default_factory=dict)
    providers: dict[str, ProviderStats] = field(default_factory=dict)
    stop_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)  # row status counts, refreshed by the status publisher
    field_totals: dict[str, int] = field(default_factory=dict)  # cells of each field this run set out to fill
    budget: float | None = None
    deadline: float | None = None  # time.monotonic() value of --max-runtime

    @property
    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started


@dataclass(frozen=True)
class RunOptions:
    """Knobs of one run."""

    job_id: str
    concurrency: int | None = None
    budget: float | None = None
    deadline: float | None = None  # time.monotonic() value at which to stop
    refresh: bool = False
    claim_size: int = 8000
    flush_interval: float = 0.25
    flush_cells: int = 8000
    grace: float = 5.0


class _StopRun(Exception):
    """Raised inside a row when the run must stop before starting another call."""


class _Pending:
    """An in-flight provider request that identical requests wait on (its event is made by the first waiter)."""

    __slots__ = ("answer", "event")

    def __init__(self) -> None:
        self.event: anyio.Event | None = None
        self.answer: Answer | None = None


class CacheWriter:
    """Group commit for the response cache: answers that arrive while one group is written go in the next.

    Rows do not wait for the disk; instead the result writer drains this writer before each flush, so an
    answer is always cached before the cells it filled are recorded as done (a crash in between repeats at
    most the calls whose cells were not recorded yet).
    """

    def __init__(self, cache: ResponseCache) -> None:
        self.cache = cache
        self.thread = SerialThread("glaze-cache")  # every cache read and write of the run, on one connection
        self._entries: list[tuple[str, Answer, float, str]] = []
        self._unwritten: dict[str, Answer] = {}
        self._submitted = 0
        self._written = 0
        self._progress = anyio.Event()
        self._wake = anyio.Event()
        self._closed = False
        self._gone = False

    def put(self, key: str, answer: Answer, ttl: float, tag: str) -> None:
        """Queue one answer for the next group."""
        if self._gone:
            return
        self._entries.append((key, answer, ttl, tag))
        self._unwritten[key] = answer
        self._submitted += 1
        self._wake.set()

    def unwritten(self, key: str) -> Answer | None:
        """An answer queued but not yet on disk (another row with the same inputs must not call again)."""
        return self._unwritten.get(key)

    async def drain(self) -> None:
        """Return once every answer queued before this call is on disk (or the writer is gone)."""
        target = self._submitted
        while self._written < target and not self._gone:
            await self._progress.wait()

    async def run(self) -> None:
        """Write waiting groups until closed and drained."""
        try:
            while not (self._closed and not self._entries):
                if not self._entries:
                    await self._wake.wait()
                    self._wake = anyio.Event()
                    continue
                entries, self._entries = self._entries, []
                with anyio.CancelScope(shield=True):
                    await self.thread.run(self.cache.set_many, entries)
                for key, *_ in entries:
                    self._unwritten.pop(key, None)
                self._written += len(entries)
                progress, self._progress = self._progress, anyio.Event()
                progress.set()
        finally:
            # Cancelled (the run failed): nobody may wait forever for a writer that is gone.
            self._gone = True
            self._progress.set()

    def close(self) -> None:
        """Let `run` return once nothing is waiting."""
        self._closed = True
        self._wake.set()


class ResultWriter:
    """Buffers finished cells and call records; flushes them every `interval` s or `max_cells` cells."""

    def __init__(self, gateway: StoreGateway, cache_writer: CacheWriter, job_id: str, interval: float,
                 max_cells: int) -> None:
        self.gateway = gateway
        self.cache_writer = cache_writer
        self.job_id = job_id
        self.interval = interval
        self.max_cells = max_cells
        self.results: list[CellResult] = []
        self.calls: list[CallRecord] = []
        self.flushes = 0
        self._wake = anyio.Event()
        self._closed = False

    def add_result(self, result: CellResult) -> None:
        """Queue a finished cell."""
        self.results.append(result)
        if len(self.results) >= self.max_cells:
            self._wake.set()

    def add_call(self, record: CallRecord) -> None:
        """Queue a provider call record."""
        self.calls.append(record)
        if len(self.calls) >= 4 * self.max_cells:
            self._wake.set()

    async def run(self) -> None:
        """Flush periodically until closed, then once more."""
        while not self._closed:
            with anyio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = anyio.Event()
            await self.flush()
        await self.flush()

    def close(self) -> None:
        """Ask `run` to do a last flush and return."""
        self._closed = True
        self._wake.set()

    async def flush(self) -> None:
        """Write everything buffered in one store transaction, once the answers behind it are cached."""
        if not self.results and not self.calls:
            return
        results, self.results = self.results, []
        calls, self.calls = self.calls, []
        with anyio.CancelScope(shield=True):
            await self.cache_writer.drain()
            await self.gateway.call(self.gateway.store.record_results, self.job_id, results, calls)
        self.flushes += 1


class Runner:
    """Fills the plan's queued cells; returns when they are all finished or the run is told to stop."""

    def __init__(self, gateway: StoreGateway, cache: ResponseCache, plan: Plan, options: RunOptions,
                 stats: RunStats) -> None:
        self.gateway = gateway
        self.cache = cache
        self.plan = plan
        self.options = options
        self.stats = stats
        self.cache_writer = CacheWriter(cache)
        self.writer = ResultWriter(gateway, self.cache_writer, options.job_id, options.flush_interval,
                                   options.flush_cells)
        global_slots = Slots(options.concurrency) if options.concurrency else None
        self.guards = {name: ProviderGuard(name, p.limits, global_slots, p.secret_variables)
                       for name, p in plan.providers.items()}
        self._inflight: dict[str, _Pending] = {}
        self._fresh: set[str] = set()  # with --refresh: keys answered anew in this run (their cache is current)
        self._batchers = {name: _Batcher(p) for name, p in plan.providers.items() if p.batch_size > 1}
        # A fixed crew of workers takes claimed rows from `_ready`: no task, no semaphore per row. Twice the calls
        # that can be waited on at once; local providers that answer at once (builtins, offline) do not count
        # (a crew sized to the builtins' 1,000 slots took 0.08 s to start in the provider-bound benchmark).
        waiting = sum(p.limits.concurrency for p in plan.providers.values() if p.cached or p.batch_size > 1)
        if options.concurrency:
            waiting = min(waiting, options.concurrency)
        self._workers = max(64, 2 * waiting)
        # The first claim is small, two rows for each slot of the providers asked first, so calls start sooner.
        first_slots = sum({steps[0].provider.name: steps[0].provider.limits.concurrency
                           for steps in plan.waterfalls.values()}.values())
        if options.concurrency:
            first_slots = min(first_slots, options.concurrency)
        self._first_claim = min(options.claim_size, max(64, 2 * first_slots) * len(plan.fields))
        self._ready: deque[ClaimedRow] = deque()
        self._ready_cells = 0
        self._claimed_all = False
        self._claimed_up_to = 0  # the highest task_id claimed so far: the next claim looks past it
        self._rows_added = anyio.Event()
        self._rows_wanted = anyio.Event()
        # Cache lookups done for a whole batch at once: (provider, row_id) -> (key, inputs), key -> answer/None.
        self._keys: dict[tuple[str, int], tuple[str, dict[str, str]]] = {}
        self._prefetched: dict[str, Answer | None] = {}
        self.stopping = False
        self.claims = 0
        self.claimed_once = anyio.Event()  # set after the first claim, whatever it found
        self._rows_scope = anyio.CancelScope()
        self._watch_scope = anyio.CancelScope()
        self._hurry = anyio.Event()
        self._random = random.Random()
        for name, provider in plan.providers.items():
            stats.providers.setdefault(name, ProviderStats(limit=provider.limits.concurrency,
                                                           window=provider.limits.concurrency))
        for name in plan.fields:
            stats.fields.setdefault(name, {"done": 0, "failed": 0, "filled": 0})

    def stop(self, reason: str) -> None:
        """Stop claiming; rows not started go back to the queue, rows started get `grace` s to finish.

        A budget stop lets calls in flight finish (they are paid for); a signal or the runtime limit cancels
        whatever is still in flight after the grace, and those cells go back to the queue too.
        """
        if not self.stopping:
            self.stopping = True
            self.stats.stop_reason = self.stats.stop_reason or reason
            self._wake_workers()
            self._rows_wanted.set()
        if reason in ("signal", "max-runtime"):
            self._hurry.set()

    async def run(self) -> None:
        """Claim and process batches until the queue is empty or `stop` is called."""
        try:
            await self._run()
        finally:
            self.cache_writer.thread.close()

    async def _run(self) -> None:
        async with anyio.create_task_group() as outer:
            outer.start_soon(self.writer.run)
            outer.start_soon(self.cache_writer.run)
            outer.start_soon(self._watch_deadline)
            try:
                with self._rows_scope:
                    async with anyio.create_task_group() as rows:
                        rows.start_soon(self._claim)
                        for _ in range(self._workers):
                            rows.start_soon(self._work)
            finally:
                # Rows claimed but never started go back to the queue.
                while self._ready:
                    self._release(self._ready.popleft().cells)
                self.cache_writer.close()
                self.writer.close()
                self._watch_scope.cancel()

    def cancel_rows(self) -> None:
        """Cancel the rows in flight now (after a stop's grace); their cells go back to the queue."""
        self.stopping = True
        self.stats.stop_reason = self.stats.stop_reason or "cancelled"
        self._rows_scope.cancel()

    async def _watch_deadline(self) -> None:
        """Stop at the runtime limit; once told to hurry, cancel the rows still in flight after the grace."""
        async def deadline() -> None:
            if self.options.deadline is not None:
                await anyio.sleep(max(0.0, self.options.deadline - time.monotonic()))
                self.stop("max-runtime")

        with self._watch_scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(deadline)
                await self._hurry.wait()
                await anyio.sleep(self.options.grace)
                self.cancel_rows()

    async def _claim(self) -> None:
        """Keep about one claim's worth of cells ready for the workers until the queue is empty or a stop."""
        plan, store = self.plan, self.gateway.store
        try:
            while not self.stopping:
                if self._ready_cells >= self.options.claim_size:
                    self._rows_wanted = anyio.Event()
                    await self._rows_wanted.wait()
                    continue
                # Shielded: claimed rows must reach `_ready`, from where they are worked or released.
                size = self.options.claim_size if self.claims else self._first_claim
                with anyio.CancelScope(shield=True):
                    batch = await self.gateway.call(store.claim_batch, plan.sheet_id, plan.fields,
                                                    self.options.job_id, size, plan.max_row_index,
                                                    self._claimed_up_to)
                    self.claims += 1
                    self.claimed_once.set()
                    if not batch:
                        return
                    self._claimed_up_to = max(cell.task_id for row in batch for cell in row.cells)
                    await self._prefetch(batch)
                    self._ready.extend(batch)
                    self._ready_cells += sum(len(row.cells) for row in batch)
                self._wake_workers()
        finally:
            self._claimed_all = True
            self.claimed_once.set()
            self._wake_workers()

    def _wake_workers(self) -> None:
        added, self._rows_added = self._rows_added, anyio.Event()
        added.set()

    async def _work(self) -> None:
        """One of the crew: take the next ready row and fill it, until none is left or the run stops."""
        while not self.stopping:
            if not self._ready:
                if self._claimed_all:
                    return
                await self._rows_added.wait()
                continue
            row = self._ready.popleft()
            self._ready_cells -= len(row.cells)
            if self._ready_cells < self.options.claim_size:
                self._rows_wanted.set()
            await self._process_row(row)

    async def _prefetch(self, batch: Sequence[ClaimedRow]) -> None:
        """Look up a batch's answers from the first provider of each field in one thread call, so rows do not
        each block the event loop on a disk read (a step further down a waterfall looks up on its own)."""
        if self.options.refresh or self.cache.broken:
            return
        wanted: list[str] = []
        for row in batch:
            for provider in dict.fromkeys(self.plan.waterfalls[cell.field][0].provider for cell in row.cells):
                if not provider.cached:
                    continue
                inputs = provider.input_values(row.data)
                if inputs is None:
                    continue
                key = cache_key(provider.name, provider.fingerprint, inputs)
                self._keys[(provider.name, row.row_id)] = (key, inputs)
                if key not in self._prefetched:
                    wanted.append(key)
        if wanted:
            self._prefetched.update(await self.cache_writer.thread.run(self.cache.get_many, wanted))

    def _release(self, cells: Sequence[Any]) -> None:
        for cell in cells:
            self.writer.add_result(CellResult(cell.task_id, cell.row_id, TaskStatus.QUEUED))

    async def _process_row(self, row: ClaimedRow) -> None:
        pending = {cell.field: cell for cell in row.cells}
        try:
            await self._enrich_row(row, pending)
        except _StopRun:
            pass
        finally:
            # Whatever did not finish (stop, cancellation) goes back to the queue, counters and all.
            self._release(list(pending.values()))

    async def _enrich_row(self, row: ClaimedRow, pending: dict[str, Any]) -> None:
        """Walk every pending field's waterfall, asking each provider at most once for this row."""
        position = dict.fromkeys(pending, 0)
        errors: dict[str, str] = {}
        answers: dict[str, Answer] = {}
        while pending:
            wanted: dict[str, list[str]] = {}
            for name in pending:
                step = self.plan.waterfalls[name][position[name]]
                wanted.setdefault(step.provider.name, []).append(name)
            missing = [p for p in wanted if p not in answers]
            if len(missing) == 1:
                answers[missing[0]] = await self._answer(self.plan.providers[missing[0]], row)
            elif missing:
                async with anyio.create_task_group() as tg:
                    for pname in missing:
                        tg.start_soon(self._answer_into, answers, pname, row)
            for pname, names in wanted.items():
                answer = answers[pname]
                for name in names:
                    step = self.plan.waterfalls[name][position[name]]
                    value = answer.values.get(name) if answer.outcome is Outcome.OK else None
                    if answer.outcome is Outcome.ERROR:
                        errors[name] = f"{pname}: {answer.error}"
                    if value is not None and answer.confidence >= step.min_confidence:
                        self._finish(pending.pop(name), TaskStatus.DONE, value, answer.confidence, pname)
                        continue
                    position[name] += 1
                    if position[name] >= len(self.plan.waterfalls[name]):
                        cell = pending.pop(name)
                        if name in errors:
                            self._finish(cell, TaskStatus.FAILED, error=errors[name])
                        else:
                            self._finish(cell, TaskStatus.DONE)

    async def _answer_into(self, answers: dict[str, Answer], pname: str, row: ClaimedRow) -> None:
        answers[pname] = await self._answer(self.plan.providers[pname], row)

    def _finish(self, cell: Any, status: TaskStatus, value: str | None = None, confidence: float | None = None,
                provider: str | None = None, error: str | None = None) -> None:
        self.writer.add_result(CellResult(cell.task_id, cell.row_id, status, value,
                                          confidence if value is not None else None, provider, error))
        field_stats = self.stats.fields[cell.field]
        if status is TaskStatus.DONE:
            self.stats.done += 1
            field_stats["done"] += 1
            if value is not None:
                self.stats.filled += 1
                field_stats["filled"] += 1
        else:
            self.stats.failed += 1
            field_stats["failed"] += 1

    async def _answer(self, provider: Provider, row: ClaimedRow) -> Answer:
        """The provider's answer for this row: from a call in flight, the cache, or one new call."""
        known = self._keys.pop((provider.name, row.row_id), None)
        if known is not None:
            key, inputs = known
        else:
            found = provider.input_values(row.data)
            if found is None:
                return Answer(Outcome.NOT_FOUND)
            key, inputs = cache_key(provider.name, provider.fingerprint, found), found
        pending = self._inflight.get(key)
        if pending is not None:
            if pending.event is None:
                pending.event = anyio.Event()
            await pending.event.wait()
            answer = pending.answer
            assert answer is not None
            self._record_hit(provider, answer)
            return answer
        if provider.cached and (not self.options.refresh or key in self._fresh):
            if key in self._prefetched:
                cached = self._prefetched.pop(key)
            else:
                cached = self.cache_writer.unwritten(key) or self.cache.get(key)
            if cached is not None:
                self._record_hit(provider, cached)
                return cached
        pending = self._inflight[key] = _Pending()
        try:
            answer = await self._call(provider, inputs)
            if provider.cached:
                limits = provider.limits
                ttl = limits.not_found_ttl if answer.outcome is Outcome.NOT_FOUND else limits.cache_ttl
                if ttl > 0 and answer.outcome is not Outcome.ERROR:
                    self.cache_writer.put(key, answer, ttl, provider.name)
                    if key in self._prefetched:
                        # Another row of a batch looked up before this answer came will find it here.
                        self._prefetched[key] = answer
                if self.options.refresh:
                    self._fresh.add(key)
            pending.answer = answer
            return answer
        finally:
            if pending.answer is None:
                pending.answer = Answer(Outcome.ERROR, error="the run stopped before this call finished")
            del self._inflight[key]
            if pending.event is not None:
                pending.event.set()

    def _record_hit(self, provider: Provider, answer: Answer) -> None:
        self.stats.providers[provider.name].cache_hits += 1
        if provider.cached:
            self.writer.add_call(CallRecord(provider.name, str(answer.outcome), None, 0.0, 0, 0.0, True,
                                            at=time.time()))

    async def _call(self, provider: Provider, inputs: Mapping[str, str]) -> Answer:
        """Call the provider under its guard; transient errors are retried by tenacity with backoff.

        The first attempt runs outside tenacity: most calls succeed at once, and building a retry loop for
        each took about a tenth of the event loop's time in the provider-bound benchmark.
        """
        try:
            return await self._attempt(provider, inputs, 1)
        except ProviderError as exc:
            if not exc.transient or provider.limits.retries == 0:
                return Answer(Outcome.ERROR, error=exc.message, http_status=exc.http_status)
            await anyio.sleep(self._delay(1, exc))
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt  # only once a call has failed

        retrying = AsyncRetrying(
            stop=stop_after_attempt(provider.limits.retries),
            wait=lambda state: self._delay(state.attempt_number + 1, _error_of(state)),
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.transient),
            sleep=anyio.sleep,
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(provider, inputs, attempt.retry_state.attempt_number + 1)
        except ProviderError as exc:
            return Answer(Outcome.ERROR, error=exc.message, http_status=exc.http_status)
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, exc: BaseException | None) -> float:
        """Exponential backoff with full jitter after failed `attempt`, or the provider's Retry-After when longer."""
        jitter = self._random.uniform(0, min(10.0, 0.2 * 2 ** (attempt - 1)))
        asked = exc.retry_after if isinstance(exc, ProviderError) and exc.retry_after else 0.0
        return max(jitter, min(asked, 300.0))

    async def _attempt(self, provider: Provider, inputs: Mapping[str, str], attempt: int) -> Answer:
        """One attempt: admission (circuit, auth stop), a slot, the budget check, the call and its record."""
        stats = self.stats.providers[provider.name]
        guard = self.guards[provider.name]
        if self.stopping:
            raise _StopRun
        batcher = self._batchers.get(provider.name)
        # A batch provider is local and answers a whole batch at once: no per-call slot.
        async with guard.slot() if batcher is None else _no_slot():
            if self.stopping:
                raise _StopRun
            # Checked once a slot is held: the provider may have been stopped while this call waited.
            guard.admit()
            budget = self.options.budget
            # A call is charged its expected cost up front (the configured cost, or the mean of priced calls so
            # far) so no call starts past the budget; the actual cost, when the answer states one, replaces it.
            expected = max(provider.cost, stats.priced_spend / stats.priced_calls if stats.priced_calls else 0.0)
            if budget is not None and expected and self.stats.spend + expected > budget + 1e-12:
                self.stop("budget")
                raise _StopRun
            self.stats.spend += expected
            stats.spend += expected
            stats.calls += 1
            if attempt > 1:
                stats.retries += 1
            started = time.perf_counter()
            stats.in_flight += 1
            try:
                answer = await _fetch_safely(provider, batcher, inputs)
            except ProviderError as exc:
                latency = (time.perf_counter() - started) * 1000
                stats.errors += 1
                stats.latencies_ms.append(latency)
                notice = guard.failed(exc)
                if notice:
                    self.stats.warnings.append(notice)
                stats.rate_limited = guard.rate_limited
                stats.window, stats.circuit = int(guard.window), str(guard.state)
                self.writer.add_call(CallRecord(provider.name, str(Outcome.ERROR), exc.http_status, latency,
                                                attempt, expected, False, exc.message, time.time()))
                raise
            finally:
                stats.in_flight -= 1
        latency = (time.perf_counter() - started) * 1000
        stats.latencies_ms.append(latency)
        guard.succeeded()
        stats.window, stats.circuit = int(guard.window), str(guard.state)
        if answer.pause:
            guard.pause(answer.pause)
        cost = expected
        if answer.cost is not None:
            cost = answer.cost
            self.stats.spend += cost - expected
            stats.spend += cost - expected
            stats.priced_calls += 1
            stats.priced_spend += cost
        if provider.cached or provider.batch_size > 1 or cost:
            self.writer.add_call(CallRecord(provider.name, str(answer.outcome), answer.http_status, latency,
                                            attempt, cost, False, None, time.time()))
        return answer


def _error_of(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None


async def _fetch_safely(provider: Provider, batcher: _Batcher | None, inputs: Mapping[str, str]) -> Answer:
    """The provider's answer; any other exception (a plugin's bug, say) fails the attempt, not the run."""
    try:
        return await (batcher.fetch(inputs) if batcher is not None else provider.fetch(inputs))
    except ProviderError:
        raise
    except Exception as exc:
        raise PermanentProviderError(f"provider {provider.name} failed: {type(exc).__name__}: {exc}") from exc


@asynccontextmanager
async def _no_slot() -> AsyncIterator[None]:
    yield


def _wake(pending: _Pending) -> None:
    if pending.event is not None:
        pending.event.set()


class _Batcher:
    """Gathers concurrent calls to a batch provider (a lookup) into one `fetch_batch` per batch."""

    def __init__(self, provider: Provider, wait: float = 0.002) -> None:
        self.provider = provider
        self.wait = wait
        self._queue: list[tuple[Mapping[str, str], _Pending]] = []
        self._leading = False

    async def fetch(self, inputs: Mapping[str, str]) -> Answer:
        """Join the next batch; the first caller waits a moment for others, then runs every batch queued."""
        slot = _Pending()
        slot.event = anyio.Event()
        self._queue.append((inputs, slot))
        if not self._leading:
            self._leading = True
            try:
                await anyio.sleep(self.wait)
                while self._queue:
                    size = self.provider.batch_size
                    batch, self._queue = self._queue[:size], self._queue[size:]
                    try:
                        answers = await self.provider.fetch_batch([item for item, _ in batch])
                    except ProviderError as exc:
                        answers = [Answer(Outcome.ERROR, error=exc.message)] * len(batch)
                    for (_, waiting), answer in zip(batch, answers, strict=True):
                        waiting.answer = answer
                        _wake(waiting)
            finally:
                self._leading = False
                for _, waiting in self._queue if slot.answer is None else ():
                    waiting.answer = Answer(Outcome.ERROR, error="the run stopped before this lookup ran")
                    _wake(waiting)
        await slot.event.wait()
        assert slot.answer is not None
        if slot.answer.outcome is Outcome.ERROR:
            raise ProviderError(slot.answer.error or "lookup failed")
        return slot.answer
