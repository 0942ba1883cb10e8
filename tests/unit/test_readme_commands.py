"""Every `glaze ...` command shown in the README parses against the real CLI (options and subcommands exist)."""

from __future__ import annotations

import re
import shlex

import pytest
from tests.conftest import REPO
from typer.testing import CliRunner

from glaze_cli.cli import app

BLOCK = re.compile(r"```(?:sh|cron)\n(.*?)```", re.S)


def readme_commands() -> list[str]:
    """`glaze ...` invocations in the README's shell and cron blocks, without comments or `&&` neighbours."""
    found = []
    for block in BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8")):
        for line in block.splitlines():
            for part in line.split("&&"):
                part = part.split(" #")[0].strip()
                if part.startswith("glaze "):
                    found.append(part)
    return found


def test_readme_shows_commands() -> None:
    """The README's tour is there to be checked."""
    assert len(readme_commands()) >= 8


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command: str) -> None:
    """Parsing stops at --help after every option was recognised: unknown options or commands fail."""
    args = shlex.split(command)[1:]
    result = CliRunner().invoke(app, [*args, "--help"])
    assert result.exit_code == 0, result.output
