"""The on-disk provider response cache: diskcache with JSON values (never pickles), keys and TTLs.

A pickled cache would run code for whoever can write the cache folder, so values are JSON and the
folder is readable by its owner only. If the cache cannot be written the run goes on uncached.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from glaze_cli.models import Answer, Outcome


def cache_key(provider: str, fingerprint: str, inputs: Mapping[str, str]) -> str:
    """provider name + a fingerprint of its config + the input values it uses."""
    digest = hashlib.sha256(json.dumps(sorted(inputs.items()), ensure_ascii=False).encode()).hexdigest()
    return f"{provider}:{fingerprint}:{digest[:32]}"


class ResponseCache:
    """Provider answers on disk, shared by every run of one workspace."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broken: str | None = None
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        try:
            # No eviction bookkeeping on reads and no culling on writes (each cost a query per call): expired
            # entries are dropped at the end of every run and by `glaze cache prune`.
            self._cache: diskcache.Cache | None = diskcache.Cache(
                str(directory), disk=diskcache.JSONDisk, disk_compress_level=0, size_limit=2**34,
                eviction_policy="none", cull_limit=0,
            )
        except Exception as exc:  # a corrupt cache must not stop the run; it only costs calls
            self._cache = None
            self._warn(exc)

    def get(self, key: str) -> Answer | None:
        """The cached answer for `key`, or None when absent, expired or unreadable."""
        if self._cache is None:
            return None
        try:
            data = self._cache.get(key)
        except Exception as exc:
            self._warn(exc)
            return None
        return Answer.from_json(data) if isinstance(data, dict) else None

    def get_many(self, keys: Sequence[str]) -> dict[str, Answer | None]:
        """The cached answers for many keys (None where absent, expired or unreadable), for a thread to run."""
        if self._cache is None:
            return dict.fromkeys(keys)
        found: dict[str, Answer | None] = {}
        try:
            for key in keys:
                data = self._cache.get(key)
                found[key] = Answer.from_json(data) if isinstance(data, dict) else None
        except Exception as exc:
            self._warn(exc)
            return dict.fromkeys(keys)
        return found

    def set(self, key: str, answer: Answer, ttl: float, tag: str) -> None:
        """Store an answer for `ttl` seconds; a ttl of 0 stores nothing."""
        if self._cache is None or ttl <= 0 or answer.outcome is Outcome.ERROR:
            return
        try:
            self._cache.set(key, answer.to_json(), expire=ttl, tag=tag)
        except Exception as exc:
            self._warn(exc)

    def set_many(self, entries: Sequence[tuple[str, Answer, float, str]]) -> None:
        """Store several (key, answer, ttl, tag) entries in one SQLite transaction (one disk sync, not one each)."""
        if self._cache is None:
            return
        try:
            with self._cache.transact():
                for key, answer, ttl, tag in entries:
                    if ttl > 0 and answer.outcome is not Outcome.ERROR:
                        self._cache.set(key, answer.to_json(), expire=ttl, tag=tag)
        except Exception as exc:
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if self.broken is None:
            self.broken = str(exc)
            print(f"warning: response cache {self.directory} is not usable ({exc}); going on without it",
                  file=sys.stderr)
        self._cache = None

    def stats(self) -> dict[str, Any]:
        """Entries, size on disk and entries per provider."""
        if self._cache is None:
            return {"directory": str(self.directory), "entries": 0, "bytes": 0, "providers": {}}
        per_provider: dict[str, int] = {}
        for key in self._cache.iterkeys():
            name = str(key).split(":", 1)[0]
            per_provider[name] = per_provider.get(name, 0) + 1
        return {"directory": str(self.directory), "entries": len(self._cache), "bytes": self._cache.volume(),
                "providers": per_provider}

    def prune(self) -> int:
        """Drop expired entries; returns how many."""
        if self._cache is None:
            return 0
        try:
            return self._cache.expire()
        except Exception as exc:
            self._warn(exc)
            return 0

    def clear(self) -> int:
        """Drop every entry; returns how many."""
        return self._cache.clear() if self._cache is not None else 0

    def close(self, *, expire: bool = False) -> None:
        """Close the underlying SQLite files; with `expire`, first drop the entries past their time to live."""
        if self._cache is not None:
            if expire:
                self.prune()
            self._cache.close()
