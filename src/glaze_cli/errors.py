"""One error tree: each error carries the exit code and a message that says what to do."""

from __future__ import annotations


class GlazeError(Exception):
    """An error the user can act on; the CLI prints its message and exits with its code."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(GlazeError):
    """Bad usage, config or input; nothing was changed."""

    exit_code = 2


class ConfigError(UsageError):
    """glaze.toml is wrong; the message names the file and key."""


class InputError(UsageError):
    """The sheet cannot be used; the message names the file, line or column."""


class WorkspaceBusy(GlazeError):
    """Another glaze run holds the workspace."""

    exit_code = 75


class StateError(GlazeError):
    """The workspace state could not be read or written."""

    exit_code = 1


class ProviderError(Exception):
    """A provider call failed; `transient` errors are retried, others are not.

    `retry_after` (seconds) is the provider's own word on when to come back (Retry-After).
    """

    transient = False

    def __init__(self, message: str, *, http_status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.retry_after = retry_after


class TransientProviderError(ProviderError):
    """Timeouts, connection errors, 5xx, garbled answers: worth retrying."""

    transient = True


class RateLimitedError(TransientProviderError):
    """HTTP 429: retried, and the whole provider slows down."""


class PermanentProviderError(ProviderError):
    """A request the provider will never answer (4xx other than not-found and 429, oversized body)."""


class RejectedError(PermanentProviderError):
    """A 4xx other than 401/403/429, with the server's explanation in `body` (for callers that act on it)."""

    def __init__(self, message: str, *, http_status: int, body: str) -> None:
        super().__init__(message, http_status=http_status)
        self.body = body


class AuthProviderError(PermanentProviderError):
    """HTTP 401/403: the key is missing, wrong or out of quota; after a few the provider stops for the run."""


class ProviderUnavailable(PermanentProviderError):
    """The provider is not being called right now (circuit open, or stopped for rejected keys)."""


def clip(text: str, limit: int = 120) -> str:
    """`text` on one line, cut at `limit` characters, for quoting a provider's words in a message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
