"""The workspace folder: where the state file and cache live, and the lock that lets one command in at a time.

`glaze enrich` holds the lock for its whole run; `export` and `reconcile` hold it only while they read or
write the state file, so a run that finds one of them there waits a few seconds instead of giving up.
"""

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

BRIEF_HOLD_WAIT = 15.0  # how long anyone waits for a brief holder (export, reconcile) before giving up
POLL = 0.05


def workspace_dir(explicit: Path | None) -> Path:
    """--workspace, else $GLAZE_WORKSPACE, else ./.glaze."""
    if explicit is not None:
        return explicit
    env = os.environ.get("GLAZE_WORKSPACE")
    return Path(env) if env else Path(".glaze")


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a workspace's lock, as it wrote itself into the lock file."""

    pid: int | None = None
    command: str | None = None
    started_at: float | None = None

    @property
    def brief(self) -> bool:
        """Whether the holder lets go within seconds (anything but a `glaze enrich` run)."""
        return self.command not in (None, "enrich")

    def describe(self) -> str:
        """`glaze enrich pid 4242 has held it since 10:15:02`."""
        if self.pid is None or self.started_at is None:
            return "another glaze command holds it"
        since = datetime.fromtimestamp(self.started_at).strftime("%H:%M:%S")
        return f"glaze {self.command or ''} pid {self.pid} has held it since {since}".replace("  ", " ")


@dataclass
class Workspace:
    """Paths inside one workspace folder, and its lock."""

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

    @property
    def lock_path(self) -> Path:
        """The file the OS lock is taken on; it names the holder."""
        return self.root / "lock"

    def create(self) -> None:
        """Make the folder, readable by its owner only."""
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def exists(self) -> bool:
        """Whether a state file is here."""
        return self.db_path.exists()

    @property
    def held(self) -> bool:
        """Whether this process holds the lock."""
        return self._lock_file is not None

    def acquire(self, command: str, wait: float = 0.0) -> None:
        """Take the lock (an OS lock: a dead holder leaves no obstacle) or raise WorkspaceBusy naming the holder.

        Waits up to `wait` s for a run, and up to BRIEF_HOLD_WAIT s for a command that holds it briefly.
        """
        self.create()
        handle = open(self.lock_path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        began = time.monotonic()
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = read_holder(handle)
                patience = max(wait, BRIEF_HOLD_WAIT) if holder.brief else wait
                if time.monotonic() - began >= patience:
                    handle.close()
                    raise WorkspaceBusy(busy_message(self.root, holder)) from None
                time.sleep(POLL)
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "command": command, "started_at": time.time()}))
        handle.flush()
        self._lock_file = handle

    def holder(self) -> LockHolder:
        """Who last wrote the lock file (the current holder, if anyone holds it)."""
        try:
            with open(self.lock_path, encoding="utf-8") as handle:
                return read_holder(handle)
        except OSError:
            return LockHolder()

    def release(self) -> None:
        """Drop the lock."""
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def busy_message(root: Path, holder: LockHolder) -> str:
    """The one message every command gives when the workspace is taken."""
    return (f"workspace {root} is busy: {holder.describe()}; let it finish, or pass --wait DUR to wait for it "
            "(plain `glaze status` works meanwhile)")


def read_holder(handle: IO[str]) -> LockHolder:
    """The holder a lock file names; empty when it names none."""
    try:
        handle.seek(0)
        info = json.loads(handle.read() or "{}")
        return LockHolder(int(info["pid"]), info.get("command"), float(info["started_at"]))
    except (ValueError, KeyError, TypeError, OSError):
        return LockHolder()
