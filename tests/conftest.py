"""Shared fixtures: a loopback provider server and a way to run the real `glaze` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.provider_server import ProviderServer

REPO = Path(__file__).resolve().parent.parent

COMPANIES = {
    "stripe.com": {"name": "Stripe", "industry": "Financial services", "website": "https://stripe.com"},
    "siemens.com": {"name": "Siemens", "industry": "Industrial manufacturing", "website": "https://siemens.com"},
    "nestle.com": {"name": "Nestlé", "industry": "Food and beverage", "website": "https://nestle.com"},
    "spotify.com": {"name": "Spotify", "industry": "Media", "website": "https://spotify.com", "score": 0.3},
}


@pytest.fixture
def provider_server() -> Iterator[ProviderServer]:
    """A real HTTP provider on 127.0.0.1 that counts requests and measures requests in flight."""
    with ProviderServer(companies={k: dict(v) for k, v in COMPANIES.items()}) as server:
        yield server


@dataclass
class Result:
    """A finished `glaze` process."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.stdout)


def glaze_env(workspace: Path, **extra: str) -> dict[str, str]:
    """The environment a test runs glaze in: its own workspace, no inherited glaze settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLAZE_")}
    env.update({"GLAZE_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1", **extra})
    return env


@pytest.fixture
def glaze(tmp_path: Path):
    """Run `python -m glaze_cli ARGS` in tmp_path with a workspace of its own; returns a Result."""

    def run(*args: str, timeout: float = 120, env: dict[str, str] | None = None, cwd: Path | None = None) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "glaze_cli", *args], cwd=cwd or tmp_path, capture_output=True, text=True,
            timeout=timeout, env={**glaze_env(tmp_path / ".glaze"), **(env or {})},
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    return run


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll until predicate() is true, failing after timeout seconds (tests never sleep to let things happen)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)
