"""A third-party provider registered through the `glaze.providers` entry-point group, used by the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import REPO

ENTRY_POINTS = """[glaze.providers]
regex = glaze_regex:REGEX
shout = glaze_regex:SHOUT
"""


def install_example_plugin(site: Path) -> dict[str, str]:
    """Put the example plugin and its dist-info (with entry points) on a folder; returns the env to use it."""
    site.mkdir()
    shutil.copy(REPO / "tests" / "plugin_example" / "glaze_regex.py", site / "glaze_regex.py")
    info = site / "glaze_regex-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: glaze-regex\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return {"PYTHONPATH": str(site)}


def test_plugin_type_and_builtin(tmp_path: Path, glaze) -> None:
    """A plugin's provider type is configured in glaze.toml and its built-in needs no config."""
    env = install_example_plugin(tmp_path / "site")
    (tmp_path / "glaze.toml").write_text('[providers.ticket]\ntype = "regex"\ncolumn = "subject"\n'
                                         'pattern = "#(?P<num>\\\\d+)"\noutputs = { ticket = "num" }\n')
    (tmp_path / "s.csv").write_text("company,subject\nAcme,Re: order #4521\nGlobex,hello\n")
    result = glaze("enrich", "s.csv", "--fields", "ticket,shout", env=env)
    assert result.code == 0, result.stderr
    assert (tmp_path / "s.enriched.csv").read_text().splitlines() == [
        "company,subject,ticket,shout", "Acme,Re: order #4521,4521,ACME", "Globex,hello,,GLOBEX"]
    listed = glaze("providers", "--json", env=env).json()
    assert {p["name"]: p["type"] for p in listed if p["name"] in ("ticket", "example.shout")} == {
        "ticket": "regex", "example.shout": "builtin"}


def test_plugin_options_are_validated(tmp_path: Path, glaze) -> None:
    """A plugin type's own keys are checked by its model: a typo is a config error naming the key."""
    env = install_example_plugin(tmp_path / "site")
    (tmp_path / "glaze.toml").write_text('[providers.ticket]\ntype = "regex"\ncolum = "subject"\n'
                                         'pattern = "x"\noutputs = { ticket = "num" }\n')
    (tmp_path / "s.csv").write_text("company,subject\nAcme,x\n")
    result = glaze("enrich", "s.csv", "--fields", "ticket", env=env)
    assert result.code == 2
    assert "providers.ticket.colum: unknown key; did you mean 'column'?" in result.stderr


def test_unknown_type_lists_the_installed_ones(tmp_path: Path, glaze) -> None:
    """Without the plugin installed, its type is a config error listing the known types."""
    (tmp_path / "glaze.toml").write_text('[providers.ticket]\ntype = "regex"\noutputs = { ticket = "num" }\n')
    (tmp_path / "s.csv").write_text("company\nAcme\n")
    result = glaze("enrich", "s.csv", "--fields", "ticket")
    assert result.code == 2
    assert "providers.ticket.type: must be one of http, lookup" in result.stderr
