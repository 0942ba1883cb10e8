"""The on-disk provider response cache: diskcache with JSON values (never pickles), keys and TTLs.

A pickled cache would run code for whoever can write the cache folder, so values are JSON text and the
folder is readable by its owner only. If the cache cannot be written the run goes on uncached.

Keys and values are text, which diskcache's default disk stores natively in SQLite (no pickling for str).
Its JSONDisk zlib-compresses every key and value, even at level 0, for ~25 µs a call (measured): it was half
of the engine benchmark's cache cost. Caches written by it are converted once, when first opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import diskcache

from glaze_cli.models import Answer, Outcome

# What json.dumps(..., ensure_ascii=False) builds on every call, built once (the same text, ~2 us less a key).
_KEY_JSON = json.JSONEncoder(ensure_ascii=False)


def cache_key(provider: str, fingerprint: str, inputs: Mapping[str, str]) -> str:
    """provider name + a fingerprint of its config + the input values it uses."""
    digest = hashlib.sha256(_KEY_JSON.encode(sorted(inputs.items())).encode()).hexdigest()
    return f"{provider}:{fingerprint}:{digest[:32]}"


FORMAT_FILE = "format"
FORMAT = "glaze text keys, JSON text values"


class _TextDisk(diskcache.JSONDisk):
    """Text keys and values stored as they are (diskcache's base Disk), without JSONDisk's zlib framing.

    A JSONDisk subclass only so that a cache folder whose settings name a compress level still opens.
    """

    put = diskcache.Disk.put
    get = diskcache.Disk.get
    store = diskcache.Disk.store
    fetch = diskcache.Disk.fetch


def _open(directory: Path) -> diskcache.Cache:
    # No eviction bookkeeping on reads and no culling on writes (each cost a query per call): expired entries
    # are dropped at the end of every run and by `glaze cache prune`. Each thread that touches the cache gets
    # its own SQLite connection; diskcache's default 64 MB memory map and 32 MB page cache per connection
    # made a million-row run's memory grow by ~100 MB per thread, so both are kept small.
    return diskcache.Cache(str(directory), disk=_TextDisk, size_limit=2**34, eviction_policy="none", cull_limit=0,
                           sqlite_mmap_size=0, sqlite_cache_size=2**11)


def _decode(data: Any) -> Answer | None:
    if not isinstance(data, str):
        return None
    parsed = json.loads(data)
    return Answer.from_json(parsed) if isinstance(parsed, dict) else None


def _convert_json_disk(directory: Path, cache: diskcache.Cache) -> None:
    """Rewrite the entries of a cache written with diskcache's JSONDisk (before glaze 0.2) as text, keeping each
    entry's expiry and tag, so an upgrade costs no call."""
    if len(cache) == 0:
        return
    old = diskcache.Cache(str(directory), disk=diskcache.JSONDisk, disk_compress_level=0)
    try:
        entries = []
        now = time.time()
        for key in list(old.iterkeys()):
            value, expire_time, tag = old.get(key, expire_time=True, tag=True)
            if isinstance(key, str) and isinstance(value, dict):
                entries.append((key, json.dumps(value), None if expire_time is None else expire_time - now, tag))
        old.clear()
    finally:
        old.close()
    with cache.transact():
        for key, value, ttl, tag in entries:
            if ttl is None or ttl > 0:
                cache.set(key, value, expire=ttl, tag=tag)


class ResponseCache:
    """Provider answers on disk, shared by every run of one workspace."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broken: str | None = None
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(directory, 0o700)
        self._cache: diskcache.Cache | None = None
        try:
            self._cache = _open(directory)
            if not (directory / FORMAT_FILE).exists():
                _convert_json_disk(directory, self._cache)
                (directory / FORMAT_FILE).write_text(FORMAT + "\n", encoding="utf-8")
        except Exception as exc:  # a corrupt cache must not stop the run; it only costs calls
            self._warn(exc)

    def get(self, key: str) -> Answer | None:
        """The cached answer for `key`, or None when absent, expired or unreadable."""
        if self._cache is None:
            return None
        try:
            return _decode(self._cache.get(key))
        except Exception as exc:
            self._warn(exc)
            return None

    def get_many(self, keys: Sequence[str]) -> dict[str, Answer | None]:
        """The cached answers for many keys (None where absent, expired or unreadable), for a thread to run."""
        if self._cache is None:
            return dict.fromkeys(keys)
        found: dict[str, Answer | None] = {}
        try:
            for key in keys:
                found[key] = _decode(self._cache.get(key))
        except Exception as exc:
            self._warn(exc)
            return dict.fromkeys(keys)
        return found

    def set(self, key: str, answer: Answer, ttl: float, tag: str) -> None:
        """Store an answer for `ttl` seconds; a ttl of 0 stores nothing."""
        if self._cache is None or ttl <= 0 or answer.outcome is Outcome.ERROR:
            return
        try:
            self._cache.set(key, json.dumps(answer.to_json()), expire=ttl, tag=tag)
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
                        self._cache.set(key, json.dumps(answer.to_json()), expire=ttl, tag=tag)
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
