"""Small values shared across modules: statuses, claimed rows, cell results, call records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class TaskStatus(StrEnum):
    """The life of one (row, field) cell."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RowStatus(StrEnum):
    """A row's status, derived from its counters alone."""

    IDLE = "idle"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    AMBIGUOUS = "ambiguous"


def row_status(total: int, done: int, failed: int, running: int) -> RowStatus:
    """The spec's status table, as arithmetic on the row counters."""
    if total == 0:
        return RowStatus.IDLE
    if running > 0:
        return RowStatus.RUNNING
    if done == total:
        return RowStatus.DONE
    if failed == total:
        return RowStatus.FAILED
    if done > 0 and failed > 0 and done + failed == total:
        return RowStatus.AMBIGUOUS
    return RowStatus.QUEUED


class Outcome(StrEnum):
    """What a provider request came to."""

    OK = "ok"
    NOT_FOUND = "not_found"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class ClaimedCell:
    """A task the store handed to the runner, with the row values it needs."""

    task_id: int
    row_id: int
    field: str


@dataclass(frozen=True, slots=True)
class ClaimedRow:
    """All claimed cells of one row, with the row's values (column -> text or None)."""

    row_id: int
    data: dict[str, str | None]
    cells: tuple[ClaimedCell, ...]


@dataclass(frozen=True, slots=True)
class CellResult:
    """A finished cell: done (with or without a value) or failed, or released back to the queue."""

    task_id: int
    row_id: int
    status: TaskStatus
    value: str | None = None
    confidence: float | None = None
    provider: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """What a provider said for one set of inputs: field values (None = no value) and a confidence."""

    outcome: Outcome
    values: dict[str, str | None] = field(default_factory=dict)
    confidence: float = 1.0
    error: str | None = None
    http_status: int | None = None
    pause: float | None = None  # the provider says its quota is spent for this many seconds (not cached)
    cost: float | None = None  # what this call cost, when the provider prices calls itself (tokens); not cached

    def to_json(self) -> dict[str, Any]:
        """The cache's JSON form."""
        return {"outcome": str(self.outcome), "values": self.values, "confidence": self.confidence}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Answer:
        """Rebuild an answer from the cache's JSON form."""
        return cls(Outcome(data["outcome"]), dict(data.get("values") or {}), float(data.get("confidence", 1.0)))


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One provider request (or cache hit), as written to `provider_calls`."""

    provider: str
    outcome: str
    http_status: int | None
    latency_ms: float
    attempt: int
    cost: float
    cache_hit: bool
    error: str | None = None
    at: float = 0.0
