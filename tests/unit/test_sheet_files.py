"""Sheet files: every format read as text, exact round trips, output paths, the formula guard, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from glaze_cli.errors import InputError, UsageError
from glaze_cli.models import CellResult, TaskStatus
from glaze_cli.sheet import check_output, default_output, read_sheet, write_atomically
from glaze_cli.store import Store, formula_guard_sql

SUFFIXES = [".csv", ".tsv", ".parquet", ".jsonl"]

# Text that a type-guessing reader would change: leading zeros, number-, date- and null-like words, quoting.
TRICKY = pl.DataFrame({
    "id": ["00123", "0042", "7", "1e5", "-0", "1.50", "2024-01-01", "true", "NA", "null", "", None],
    "name": ["Zürich Insurance", "Acme, Inc.", 'He said "hi"', "two\nlines", "tab\there", " padded ",
             "Nestlé", "株式会社", "=SUM(A1)", "-x", "@x", "+x"],
})


def listing(folder: Path) -> list[str]:
    """The file names in a folder, sorted."""
    return sorted(p.name for p in folder.iterdir())


def export(frame: pl.DataFrame, path: Path, fields: dict[str, str] | None = None) -> None:
    """glaze's writer: `frame` loaded into a real store as a sheet, each of `fields` filled with its value in
    every row, then written to `path` by Store.copy_export (the formula guard on, as `glaze enrich` has it)."""
    fields = fields or {}
    (path.parent / ".state").mkdir(parents=True, exist_ok=True)
    with Store(path.parent / ".state" / "glaze.duckdb") as store:
        sheet_id = store.load_sheet(path.parent / "in.csv", frame, None).sheet.sheet_id
        store.add_fields(sheet_id, list(fields), [])
        cells = [c for row in store.claim_batch(sheet_id, list(fields), "job", 10**6) for c in row.cells]
        store.record_results("job", [CellResult(c.task_id, c.row_id, TaskStatus.DONE, fields[c.field], 1.0, "p")
                                     for c in cells], [])
        sheet = store.find_sheet(str(path.parent / "in.csv"))
        assert sheet is not None
        write_atomically(path, lambda tmp, fmt: store.copy_export(sheet, tmp, fmt, formula_guard=True))


def guarded(values: list[str | None]) -> list[str | None]:
    """The formula guard's SQL applied by DuckDB to each value."""
    query = f"SELECT {formula_guard_sql('v')} FROM (SELECT unnest(?::VARCHAR[]) AS v)"
    return [v for (v,) in duckdb.connect().execute(query, [values]).fetchall()]


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_round_trip_is_exact(tmp_path: Path, suffix: str) -> None:
    """glaze's output of a text sheet reads back as the same frame: same columns, text, empties and nulls."""
    path = tmp_path / f"sheet{suffix}"
    export(TRICKY, path)
    assert_frame_equal(read_sheet(path), TRICKY)


@pytest.mark.parametrize(("name", "content"), [
    ("sheet.csv", "id,zip\n00123,01234\n"),
    ("sheet.tsv", "id\tzip\n00123\t01234\n"),
    ("sheet.jsonl", '{"id": "00123", "zip": "01234"}\n'),
])
def test_read_keeps_leading_zeros(tmp_path: Path, name: str, content: str) -> None:
    """CSV, TSV and JSON Lines are read as text, so 00123 stays 00123."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    assert_frame_equal(read_sheet(path), pl.DataFrame({"id": ["00123"], "zip": ["01234"]}))


def test_read_parquet_as_text(tmp_path: Path) -> None:
    """Typed Parquet columns (text, integers, floats, booleans, nulls) come back as text."""
    path = tmp_path / "sheet.parquet"
    pl.DataFrame({"id": ["00123", "7"], "n": [1, 2], "x": [1.5, None], "ok": [True, False]}).write_parquet(path)
    assert_frame_equal(read_sheet(path), pl.DataFrame(
        {"id": ["00123", "7"], "n": ["1", "2"], "x": ["1.5", None], "ok": ["true", "false"]}))


def test_read_jsonl_numbers_and_objects_as_text(tmp_path: Path) -> None:
    """JSON Lines numbers become their text and nested values become JSON text."""
    path = tmp_path / "sheet.jsonl"
    path.write_text('{"id": 12, "tags": ["a", "b"], "meta": {"k": 1}}\n{"id": "00123", "tags": null, "meta": null}\n',
                    encoding="utf-8")
    assert_frame_equal(read_sheet(path), pl.DataFrame(
        {"id": ["12", "00123"], "tags": ['["a", "b"]', None], "meta": ['{"k": 1}', None]}))


def test_read_csv_with_crlf_and_bom(tmp_path: Path) -> None:
    """A spreadsheet-exported CSV (UTF-8 BOM, CRLF line ends) reads with clean names and values."""
    path = tmp_path / "sheet.csv"
    path.write_bytes("\ufeffdomain,name\r\nacme.io,Acme\r\n".encode())
    assert_frame_equal(read_sheet(path), pl.DataFrame({"domain": ["acme.io"], "name": ["Acme"]}))


@pytest.mark.parametrize(("name", "content"), [
    ("sheet.csv", "name\nNestlé\n"),
    ("sheet.jsonl", '{"name": "Nestlé"}\n'),
])
def test_read_latin1_with_encoding(tmp_path: Path, name: str, content: str) -> None:
    """A latin-1 sheet reads correctly when its encoding is named."""
    path = tmp_path / name
    path.write_bytes(content.encode("latin-1"))
    assert_frame_equal(read_sheet(path, "latin-1"), pl.DataFrame({"name": ["Nestlé"]}))


def test_not_utf8_without_encoding_suggests_encoding(tmp_path: Path) -> None:
    """A non-UTF-8 sheet read without an encoding is a usage error (exit 2) naming the file, line and --encoding."""
    path = tmp_path / "sheet.csv"
    path.write_bytes("name\nNestlé\n".encode("latin-1"))
    with pytest.raises(UsageError) as caught:
        read_sheet(path)
    message = caught.value.message
    assert (caught.value.exit_code, message.startswith(f"{path}: line 2 "), "--encoding latin-1" in message) == (
        2, True, True), message


@pytest.mark.parametrize(("content", "line"), [
    ('name,domain\nAcme,acme.com\nBroken,"never closed\nLast,last.io\n', 3),
    ('name,domain\nAcme,acme.com\nTwo,"x"y\n', 3),
])
def test_bad_quoting_names_its_line(tmp_path: Path, content: str, line: int) -> None:
    """A quote never closed (which a lenient reader runs to the end of the file) or text after a closing quote:
    the error names the line where that row starts and how to write quotes."""
    path = tmp_path / "sheet.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_sheet(path)
    message = caught.value.message
    assert message.startswith(f"{path}: line {line}: ") and "fix the quoting" in message, message


def test_unknown_encoding_is_a_usage_error(tmp_path: Path) -> None:
    """An encoding name Python does not know is a usage error naming --encoding."""
    path = tmp_path / "sheet.csv"
    path.write_text("name\nAcme\n", encoding="utf-8")
    with pytest.raises(UsageError) as caught:
        read_sheet(path, "klingon-8")
    assert caught.value.message.startswith("--encoding klingon-8: unknown encoding")


@pytest.mark.parametrize(("content", "fragment"), [
    pytest.param("domain,Domain\nacme.io,x\n", "column name 'Domain' appears twice (columns 1 and 2)",
                 id="duplicate names"),
    pytest.param("domain,\nacme.io,x\n", "column 2 has a blank header", id="blank name"),
    pytest.param("domain,name\na.io,A\nb.io\n", "line 3 has 1 field(s) but the header has 2", id="short row"),
    pytest.param('domain,name\na.io,"A\nB"\nb.io,B,x\n', "line 4 has 3 field(s)", id="long row after quoted newline"),
    pytest.param('domain,name\na.io,A\n"b.io,B\nc.io,C\n', "line 3 has 1 field(s) but the header has 2; fix that line "
                 "(a quoted value that opens there runs on to line 4", id="quote never closed"),
    pytest.param("domain,name\n", "the sheet has no rows", id="header only"),
    pytest.param("", "the file is empty", id="empty file"),
])
def test_unusable_sheet_is_an_input_error(tmp_path: Path, content: str, fragment: str) -> None:
    """A sheet glaze cannot use is an InputError (exit 2) naming the file and the problem."""
    path = tmp_path / "sheet.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        read_sheet(path)
    assert (caught.value.exit_code, caught.value.message.startswith(f"{path}: "), fragment in caught.value.message) \
        == (2, True, True), caught.value.message


@pytest.mark.parametrize(("sheet", "output"), [
    ("companies.csv", "companies.enriched.csv"),
    ("companies.tsv", "companies.enriched.tsv"),
    ("companies.parquet", "companies.enriched.parquet"),
    ("companies.jsonl", "companies.enriched.jsonl"),
    ("leads.v2.csv", "leads.v2.enriched.csv"),
])
def test_default_output_is_stem_enriched_suffix(tmp_path: Path, sheet: str, output: str) -> None:
    """The default output is STEM.enriched.SUFFIX beside the sheet."""
    assert default_output(tmp_path / "in" / sheet) == tmp_path / "in" / output


def test_check_output_accepts_another_file(tmp_path: Path) -> None:
    """An output beside the sheet with a known format is accepted."""
    sheet = tmp_path / "companies.csv"
    sheet.write_text("domain\nacme.io\n", encoding="utf-8")
    assert check_output(tmp_path / "companies.enriched.parquet", sheet) is None


@pytest.mark.parametrize("spelling", ["same", "dotted", "symlink"])
def test_check_output_refuses_the_input(tmp_path: Path, spelling: str) -> None:
    """Writing over the input sheet, however the path is spelt, is a usage error (exit 2)."""
    sheet = tmp_path / "companies.csv"
    sheet.write_text("domain\nacme.io\n", encoding="utf-8")
    output = {"same": sheet, "dotted": tmp_path / "." / "sub" / ".." / "companies.csv",
              "symlink": tmp_path / "link.csv"}[spelling]
    if spelling == "symlink":
        output.symlink_to(sheet)
    with pytest.raises(UsageError) as caught:
        check_output(output, sheet)
    assert (caught.value.exit_code, caught.value.message) == (
        2, f"-o {output}: that is the input sheet; glaze never writes over its input")


def test_check_output_refuses_unknown_format(tmp_path: Path) -> None:
    """An output suffix glaze cannot write is an InputError (exit 2) listing the known ones."""
    with pytest.raises(InputError) as caught:
        check_output(tmp_path / "out.xlsx", tmp_path / "in.csv")
    assert (caught.value.exit_code, caught.value.message.startswith(f"{tmp_path / 'out.xlsx'}: unknown sheet format")
            ) == (2, True)


def test_formula_guard_quotes_formula_like_text() -> None:
    """Text starting with = + - @ tab or CR gets a leading quote; numbers, plain text and nulls stay."""
    assert guarded(["=SUM(A1)", "+x", "-x", "@x", "\tx", "\rx", "-", "=1",
                    "-12.5", "+3", "-1e5", "-.5", "12", "plain", "a=b", "", None]) == [
        "'=SUM(A1)", "'+x", "'-x", "'@x", "'\tx", "'\rx", "'-", "'=1",
        "-12.5", "+3", "-1e5", "-.5", "12", "plain", "a=b", "", None]


def test_formula_guard_leaves_other_columns(tmp_path: Path) -> None:
    """Only the filled fields are guarded; the sheet's own columns keep their values."""
    path = tmp_path / "out.csv"
    export(pl.DataFrame({"domain": ["=own"]}), path, {"industry": "=HYPERLINK(x)"})
    assert_frame_equal(read_sheet(path), pl.DataFrame({"domain": ["=own"], "industry": ["'=HYPERLINK(x)"]}))


@pytest.mark.parametrize(("suffix", "expected"), [
    (".csv", "'=SUM(A1)"), (".tsv", "'=SUM(A1)"), (".parquet", "=SUM(A1)"), (".jsonl", "=SUM(A1)"),
])
def test_write_guards_only_spreadsheet_text_formats(tmp_path: Path, suffix: str, expected: str) -> None:
    """The writer applies the guard to CSV and TSV, where spreadsheets run formulas, and not to Parquet or JSONL."""
    path = tmp_path / f"out{suffix}"
    export(pl.DataFrame({"domain": ["=own"]}), path, {"industry": "=SUM(A1)"})
    assert_frame_equal(read_sheet(path), pl.DataFrame({"domain": ["=own"], "industry": [expected]}))


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_write_leaves_no_temporary_file(tmp_path: Path, suffix: str) -> None:
    """After writing (also over an existing output) the folder holds only the output file."""
    path = tmp_path / "out" / f"out{suffix}"
    export(pl.DataFrame({"a": ["1"]}), path)
    export(pl.DataFrame({"a": ["2"]}), path)
    assert (listing(path.parent), read_sheet(path)["a"].to_list()) == ([".state", path.name], ["2"])


def test_failed_write_keeps_the_old_output(tmp_path: Path) -> None:
    """A write that fails midway leaves the previous output untouched and no temporary file."""
    path = tmp_path / "out.csv"
    path.write_text("a\nold\n", encoding="utf-8")

    def fail_midway(tmp: Path, fmt: str) -> None:
        tmp.write_text("a\nnew, half writ", encoding="utf-8")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError):
        write_atomically(path, fail_midway)
    assert (listing(tmp_path), path.read_text(encoding="utf-8")) == (["out.csv"], "a\nold\n")


def test_write_jsonl_is_one_object_per_row(tmp_path: Path) -> None:
    """JSON Lines output holds one JSON object per row, nulls included, in column order."""
    path = tmp_path / "out.jsonl"
    export(pl.DataFrame({"id": ["00123", "7"], "v": ["x", None]}), path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [{"id": "00123", "v": "x"}, {"id": "7", "v": None}]
