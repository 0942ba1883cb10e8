"""Bad input and bad config: exit 2, one or two lines naming the file, line, column or key, no traceback, and
the workspace untouched."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.conftest import glaze_env

GOOD_CONFIG = """
[providers.acme]
type = "http"
url = "http://127.0.0.1:9/v1/company?domain={domain}"
outputs = { industry = "company.industry" }
"""
SHEET = "id,domain,name\n1,stripe.com,Stripe\n2,siemens.com,Siemens\n"


def config_with(extra: str) -> str:
    return GOOD_CONFIG.replace('outputs = { industry = "company.industry" }\n',
                               f'outputs = {{ industry = "company.industry" }}\n{extra}\n')


@dataclass(frozen=True)
class Case:
    """Files to write (text, or bytes), the arguments after `glaze`, and a fragment the error must contain."""

    files: dict[str, str | bytes]
    args: tuple[str, ...]
    message: str
    config: str = GOOD_CONFIG
    env: dict[str, str] = field(default_factory=dict)


ENRICH = ("enrich", "s.csv", "--fields", "industry")

CASES = {
    "missing file": Case({}, ("enrich", "nope.csv", "--fields", "industry"), "nope.csv: no such file"),
    "not a file": Case({"dir.csv/x": ""}, ("enrich", "dir.csv", "--fields", "industry"), "dir.csv: not a file"),
    "empty file": Case({"s.csv": ""}, ENRICH, "s.csv: the file is empty"),
    "header only": Case({"s.csv": "id,domain\n"}, ENRICH, "s.csv: the sheet has no rows"),
    "unknown format": Case({"s.xlsx": "x"}, ("enrich", "s.xlsx", "--fields", "industry"),
                           "s.xlsx: unknown sheet format '.xlsx'"),
    "corrupt parquet": Case({"s.parquet": b"PAR1 this is not parquet"}, ("enrich", "s.parquet", "--fields",
                                                                         "industry"),
                            "s.parquet: cannot be read as parquet"),
    "corrupt jsonl": Case({"s.jsonl": '{"domain": "a.com"}\n{"domain": \n'}, ("enrich", "s.jsonl", "--fields",
                                                                                "industry"),
                          "s.jsonl: cannot be read as jsonl"),
    "duplicate header": Case({"s.csv": "domain,Domain\na.com,b.com\n"}, ENRICH,
                             "s.csv: line 1: column name 'Domain' appears twice (columns 1 and 2)"),
    "blank header": Case({"s.csv": "domain,,name\na.com,x,A\n"}, ENRICH, "s.csv: line 1: column 2 has a blank header"),
    "ragged row": Case({"s.csv": "domain,name\na.com,A\nb.com\nc.com,C\n"}, ENRICH,
                       "s.csv: line 3 has 1 field(s) but the header has 2"),
    "wrong encoding": Case({"s.csv": "domain,name\na.com,Caf\xe9\n".encode("latin-1")}, ENRICH,
                           "s.csv: line 2 is not valid UTF-8; pass --encoding"),
    "unknown encoding": Case({"s.csv": SHEET}, (*ENRICH, "--encoding", "klingon-8"),
                             "--encoding klingon-8: unknown encoding"),
    "key column missing": Case({"s.csv": SHEET}, (*ENRICH, "--key", "email"),
                               "s.csv: key column 'email' is not in the sheet"),
    "key duplicates": Case({"s.csv": "id,domain\n1,a.com\n1,b.com\n2,c.com\n2,d.com\n3,e.com\n"}, (*ENRICH, "--key",
                                                                                                 "id"),
                           "s.csv: key column 'id' has 2 value(s) that repeat, in 4 rows"),
    "key blank": Case({"s.csv": "id,domain\n1,a.com\n,b.com\n"}, (*ENRICH, "--key", "id"),
                      "s.csv: key column 'id' is empty in 1 row(s)"),
    "field nobody outputs": Case({"s.csv": SHEET}, ("enrich", "s.csv", "--fields", "revenue"),
                                 "field 'revenue': no provider outputs it"),
    "input column missing": Case({"s.csv": "id,name\n1,Stripe\n"}, ENRICH,
                                 "s.csv: provider 'acme' uses column 'domain', which the sheet does not have"),
    "unknown key": Case({"s.csv": SHEET}, ENRICH, "providers.acme.concurency: unknown key; did you mean 'concurrency'?",
                        config=config_with("concurency = 3")),
    "unknown section": Case({"s.csv": SHEET}, ENRICH, "provider: unknown key; did you mean 'providers'?",
                            config=GOOD_CONFIG + '\n[provider.other]\ntype = "http"\n'),
    "wrong type": Case({"s.csv": SHEET}, ENRICH, "providers.acme.concurrency: Input should be a valid integer",
                       config=config_with('concurrency = "3"')),
    "bad duration": Case({"s.csv": SHEET}, ENRICH, "providers.acme.timeout: '15 secs' is not a duration",
                         config=config_with('timeout = "15 secs"')),
    "bad rate": Case({"s.csv": SHEET}, ENRICH, "providers.acme.rate: '20 per s' is not a rate",
                     config=config_with('rate = "20 per s"')),
    "missing variable": Case({"s.csv": SHEET}, ENRICH, "providers.acme.headers.Authorization: environment variable "
                             "GLAZE_TEST_MISSING_KEY is not set",
                             config=config_with('headers = { Authorization = "Bearer ${GLAZE_TEST_MISSING_KEY}" }')),
    "unknown provider in waterfall": Case({"s.csv": SHEET}, ENRICH,
                                          "fields.industry.providers: unknown provider 'nope'",
                                          config=GOOD_CONFIG + '\n[fields.industry]\nproviders = ["acme", "nope"]\n'),
    "broken toml": Case({"s.csv": SHEET}, ENRICH, "glaze.toml: not valid TOML: ", config='[providers.acme\ntype = 1\n'),
    "broken toml line": Case({"s.csv": SHEET}, ENRICH, "(at line 3, column", config='[sheet]\nkey = "id"\nurl = "x\n'),
    "rows zero": Case({"s.csv": SHEET}, (*ENRICH, "--rows", "0"), "--rows: must be 1 or more"),
    "output over input": Case({"s.csv": SHEET}, (*ENRICH, "-o", "s.csv"), "-o s.csv: that is the input sheet"),
    "bad max-runtime": Case({"s.csv": SHEET}, (*ENRICH, "--max-runtime", "soon"),
                            "--max-runtime: 'soon' is not a duration"),
    "no fields": Case({"s.csv": SHEET}, ("enrich", "s.csv", "--fields", ","), "--fields: name at least one field"),
}


def fingerprint(workspace: Path) -> dict[str, str]:
    """A digest of every state and cache file (the lock file names its last holder and may change)."""
    return {str(p.relative_to(workspace)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(workspace.rglob("*")) if p.is_file() and p.name != "lock"}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with a finished run in it (an offline built-in, so no server is needed)."""
    home = tmp_path_factory.mktemp("good")
    (home / "s.csv").write_text(SHEET)
    result = subprocess.run([sys.executable, "-m", "glaze_cli", "enrich", "s.csv", "--fields", "website", "-q"],
                            cwd=home, env=glaze_env(home / ".glaze"), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return home / ".glaze"


def write_case(tmp_path: Path, case: Case) -> None:
    (tmp_path / "glaze.toml").write_text(case.config)
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_exits_2_and_changes_nothing(tmp_path: Path, glaze, workspace: Path, name: str) -> None:
    """Each bad input: exit 2, a short error naming what is wrong, no traceback, the workspace unchanged."""
    case = CASES[name]
    write_case(tmp_path, case)
    before = fingerprint(workspace)
    result = glaze(*case.args, env={"GLAZE_WORKSPACE": str(workspace), **case.env})
    assert result.code == 2, result.stderr
    assert case.message in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) <= 2, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert fingerprint(workspace) == before


def test_bad_input_creates_no_workspace(tmp_path: Path, glaze) -> None:
    """A first run with bad input leaves no workspace folder behind."""
    write_case(tmp_path, CASES["ragged row"])
    assert glaze(*ENRICH).code == 2
    assert not (tmp_path / ".glaze").exists()


@pytest.mark.parametrize(("content", "args"), [
    pytest.param("\ufeffdomain,name\nstripe.com,Caf\u00e9\n".encode(), (), id="utf-8 with BOM"),
    pytest.param("domain,name\nstripe.com,Caf\u00e9\n".encode("latin-1"), ("--encoding", "latin-1"), id="latin-1"),
])
def test_other_encodings_are_read(tmp_path: Path, glaze, content: bytes, args: tuple[str, ...]) -> None:
    """A UTF-8 sheet with a byte-order mark and a latin-1 sheet (with --encoding) are read; output is UTF-8."""
    (tmp_path / "s.csv").write_bytes(content)
    result = glaze("enrich", "s.csv", "--fields", "website", "-q", *args)
    assert result.code == 0, result.stderr
    assert (tmp_path / "s.enriched.csv").read_text(encoding="utf-8").splitlines() == [
        "domain,name,website", "stripe.com,Caf\u00e9,https://stripe.com"]
