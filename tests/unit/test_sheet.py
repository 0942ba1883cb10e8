"""Reading and writing sheets: text round trips, output paths, the formula guard, atomic writes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from glaze_cli.errors import UsageError
from glaze_cli.sheet import check_output, default_output, formula_guard, read_sheet, write_sheet

FRAME = pl.DataFrame({"id": ["00123", "7"], "name": ["Zürich Insurance", "Acme, Inc."], "note": [None, "1e5"]})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_round_trip_keeps_text(tmp_path: Path, suffix: str) -> None:
    """Writing then reading gives back the same text values in every format."""
    path = tmp_path / f"s{suffix}"
    write_sheet(FRAME, path)
    assert read_sheet(path).rows() == FRAME.rows()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_default_output_and_refusal_to_overwrite(tmp_path: Path) -> None:
    """The default output is STEM.enriched.SUFFIX; the input itself is refused."""
    sheet = tmp_path / "leads.csv"
    assert default_output(sheet) == tmp_path / "leads.enriched.csv"
    with pytest.raises(UsageError, match="never writes over its input"):
        check_output(tmp_path / "." / "leads.csv", sheet)


def test_formula_guard_only_formula_like_text() -> None:
    """Formula-like text gets a leading quote; numbers and other columns stay as they are."""
    frame = pl.DataFrame({"f": ["=SUM(A1)", "+x", "-x", "@x", "-12.5", "plain", None], "g": ["=1"] * 7})
    guarded = formula_guard(frame, ["f"])
    assert guarded["f"].to_list() == ["'=SUM(A1)", "'+x", "'-x", "'@x", "-12.5", "plain", None]
    assert guarded["g"].to_list() == ["=1"] * 7


def test_latin1_with_encoding(tmp_path: Path) -> None:
    """A latin-1 sheet reads correctly with the encoding named."""
    path = tmp_path / "s.csv"
    path.write_bytes("name\nNestlé\n".encode("latin-1"))
    assert read_sheet(path, "latin-1")["name"].to_list() == ["Nestlé"]


def test_wrong_encoding_names_the_file(tmp_path: Path) -> None:
    """A sheet that is not UTF-8 is refused with a hint to pass --encoding."""
    path = tmp_path / "s.csv"
    path.write_bytes("name\nNestlé\n".encode("latin-1"))
    with pytest.raises(UsageError) as caught:
        read_sheet(path)
    assert str(path) in caught.value.message and "--encoding" in caught.value.message


def test_utf8_bom_is_dropped(tmp_path: Path) -> None:
    """A UTF-8 BOM does not end up in the first column's name."""
    path = tmp_path / "s.csv"
    path.write_bytes("\ufeffdomain\nacme.io\n".encode())
    assert read_sheet(path).columns == ["domain"]
