"""Reading and writing sheet files with polars: formats, encodings, text-only values, atomic writes.

Only reading imports polars: the commands that merely write through DuckDB start without it (~0.1 s).
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from glaze_cli.errors import InputError, UsageError

if TYPE_CHECKING:
    import polars as pl

FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".jsonl": "jsonl", ".ndjson": "jsonl"}


def sheet_format(path: Path) -> str:
    """The format named by a file's suffix, or a usage error that lists the known ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(sorted(FORMATS))
        raise InputError(f"{path}: unknown sheet format {path.suffix or '(no suffix)'!r}; use one of {known}")
    return fmt


def read_sheet(path: Path, encoding: str | None = None) -> pl.DataFrame:
    """Every column of the sheet as text, in file order; `00123` stays `00123`."""
    import polars as pl

    fmt = sheet_format(path)
    if not path.exists():
        raise InputError(f"{path}: no such file; check the path")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        if fmt in ("csv", "tsv"):
            frame = _read_delimited(path, "\t" if fmt == "tsv" else ",", encoding)
        elif fmt == "parquet":
            frame = _as_text(pl.read_parquet(path))
        else:
            frame = _as_text(pl.read_ndjson(io.BytesIO(_decoded(path, encoding).encode("utf-8"))))
    except PermissionError:
        raise InputError(f"{path}: permission denied; make the file readable") from None
    except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path}: cannot be read as {fmt}: {first}") from None
    _check_headers(path, frame)
    if frame.height == 0:
        raise InputError(f"{path}: the sheet has no rows; add data rows below the header")
    return frame


def _decoded(path: Path, encoding: str | None) -> str:
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{path}: the file is empty; a sheet needs a header row and data rows")
    codec = encoding or "utf-8-sig"  # UTF-8, with or without a byte-order mark
    try:
        return data.decode(codec)
    except LookupError:
        raise UsageError(f"--encoding {encoding}: unknown encoding; try utf-8 or latin-1") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        name = "UTF-8" if encoding is None else encoding
        raise InputError(
            f"{path}: line {line} is not valid {name}; pass --encoding with the file's encoding "
            "(for example --encoding latin-1)"
        ) from None


def _read_delimited(path: Path, separator: str, encoding: str | None) -> pl.DataFrame:
    import polars as pl

    text = _decoded(path, encoding)
    _check_shape(path, text, separator)
    try:
        return pl.read_csv(io.BytesIO(text.encode("utf-8")), separator=separator, infer_schema=False,
                           has_header=True, raise_if_empty=True)
    except pl.exceptions.PolarsError:
        _check_quoting(path, text, separator)
        raise


def _check_quoting(path: Path, text: str, separator: str) -> None:
    """After the reader failed: the line where a quoted value goes wrong (most often a quote never closed, which
    a lenient pass reads to the end of the file), read again with the csv module's strict quoting."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    start = 1
    try:
        for _ in reader:
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}: line {start}: {exc}; fix the quoting of that row (a value that opens a quote "
                         'must close it, and a quote inside a quoted value is written twice: "")') from None


def _check_shape(path: Path, text: str, separator: str) -> None:
    """Blank or repeated header names and ragged rows, named by column and line (polars pads short rows)."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator)
    header = next(reader, None)
    if not header:
        raise InputError(f"{path}: the first line is empty; the sheet needs a header row")
    seen: dict[str, int] = {}
    for number, name in enumerate(header, start=1):
        if not name.strip():
            raise InputError(f"{path}: line 1: column {number} has a blank header; give every column a name")
        first = seen.setdefault(name.strip().lower(), number)
        if first != number:
            raise InputError(f"{path}: line 1: column name {name!r} appears twice (columns {first} and {number}); "
                             "give every column a unique name")
    width = len(header)
    start = reader.line_num + 1  # the line the next record starts on (a quoted value may span lines)
    try:
        for record in reader:
            if len(record) != width and record:
                hint = f"quote values that contain {_describe(separator)}"
                if reader.line_num > start:
                    hint = (f"a quoted value that opens there runs on to line {reader.line_num}: close its quote, "
                            "and write a quote inside a quoted value twice")
                raise InputError(f"{path}: line {start} has {len(record)} field(s) but the header has {width}; "
                                 f"fix that line ({hint})")
            start = reader.line_num + 1
    except csv.Error as exc:
        raise InputError(f"{path}: line {reader.line_num}: {exc}; fix the quoting on that line") from None


def _describe(separator: str) -> str:
    return {",": "commas", "\t": "tabs"}.get(separator, repr(separator))


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast every column to text; nested values become JSON."""
    import polars as pl

    columns = []
    for name, dtype in frame.schema.items():
        col = pl.col(name)
        if dtype == pl.String:
            columns.append(col)
        elif dtype.is_nested():
            encoded = [None if v is None else json.dumps(v, ensure_ascii=False) for v in frame[name].to_list()]
            columns.append(pl.Series(name, encoded, dtype=pl.String))
        else:
            columns.append(col.cast(pl.String))
    return frame.select(columns)


def _check_headers(path: Path, frame: pl.DataFrame) -> None:
    for index, name in enumerate(frame.columns, start=1):
        if not name.strip() or re.search(r"_duplicated_\d+$", name):
            raise InputError(f"{path}: header of column {index} ({name!r}) is blank or repeated; give every "
                             "column a unique name")
    lowered = [c.strip().lower() for c in frame.columns]
    seen = {c for c in lowered if lowered.count(c) > 1}
    if seen:
        raise InputError(f"{path}: duplicate column names {sorted(seen)}; give every column a unique name")


def default_output(sheet: Path) -> Path:
    """`STEM.enriched.SUFFIX` beside the sheet."""
    return sheet.with_name(f"{sheet.stem}.enriched{sheet.suffix}")


def check_output(output: Path, sheet: Path) -> None:
    """Refuse an output that would overwrite the input sheet or has an unknown format."""
    sheet_format(output)
    if output.resolve() == sheet.resolve():
        raise UsageError(f"-o {output}: that is the input sheet; glaze never writes over its input")


def write_atomically(path: Path, write: Callable[[Path, str], object]) -> None:
    """Call `write(temporary path, format)` for a file beside `path`, then rename it over `path` atomically."""
    fmt = sheet_format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp, fmt)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write the output ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
