"""The workspace folder: where the state file and cache live, and the lock that allows one run."""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

from glaze_cli.errors import WorkspaceBusy


def workspace_dir(explicit: Path | None) -> Path:
    """--workspace, else $GLAZE_WORKSPACE, else ./.glaze."""
    if explicit is not None:
        return explicit
    env = os.environ.get("GLAZE_WORKSPACE")
    return Path(env) if env else Path(".glaze")


@dataclass
class Workspace:
    """Paths inside one workspace folder, and its run lock."""

    root: Path
    _lock_file: IO[str] | None = field(default=None, repr=False)

    @property
    def db_path(self) -> Path:
        """The DuckDB state file."""
        return self.root / "glaze.duckdb"

    @property
    def cache_dir(self) -> Path:
        """The provider response cache folder."""
        return self.root / "cache"

    @property
    def snapshot_path(self) -> Path:
        """What a running `glaze enrich` publishes for `glaze status` (DuckDB lets only one process in)."""
        return self.root / "status.json"

    def create(self) -> None:
        """Make the folder, readable by its owner only."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def exists(self) -> bool:
        """Whether a state file is here."""
        return self.db_path.exists()

    def acquire(self, wait: float = 0.0) -> None:
        """Take the run lock (an OS lock, so a dead holder leaves no obstacle), or raise WorkspaceBusy."""
        self.create()
        handle = open(self.root / "lock", "a+", encoding="utf-8")  # noqa: SIM115 - held for the run
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(handle)
                    handle.close()
                    raise WorkspaceBusy(f"workspace {self.root} is busy: {holder}; wait for it, or pass "
                                        "--wait DUR to wait for the lock") from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "started_at": time.time()}))
        handle.flush()
        self._lock_file = handle

    def release(self) -> None:
        """Drop the run lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _read_holder(handle: IO[str]) -> str:
    try:
        handle.seek(0)
        info = json.loads(handle.read() or "{}")
        since = datetime.fromtimestamp(info["started_at"]).strftime("%H:%M:%S")
        return f"glaze pid {info['pid']} has held it since {since}"
    except (ValueError, KeyError, OSError):
        return "another glaze run holds it"
