"""Reading private tables (CSV or Parquet) with pandas, with errors that name the file.

What a new user's "CSV" may really be, and what happens:

* UTF-8 (with or without BOM), comma-, semicolon-, tab- or pipe-separated: read; the delimiter
  is detected with :class:`csv.Sniffer` on the first lines (``.tsv`` is always tab-separated);
  a semicolon file whose numbers use a decimal comma (``1,5``, the European Excel export) is read
  with ``decimal=","``;
* not UTF-8 but text (Latin-1 / Windows-1252, an Excel "CSV" export on Windows): read as
  Windows-1252 (Latin-1 for the five bytes cp1252 leaves undefined) and a
  :class:`TableReadWarning` says so, because an encoding guess is never certain;
* an Excel workbook, a Parquet file, a zip/gzip archive or any other binary file renamed ``.csv``:
  refused with one line saying what the file is and how to make a CSV of it.

The detection is a few byte checks and the standard library's ``csv.Sniffer``; a charset
detector (chardet, charset-normalizer) would add a dependency to tell apart encodings that a
materials table (ASCII formulas and numbers, a few accented names) does not need told apart.
"""

from __future__ import annotations

import csv
import io
import re
import warnings
from pathlib import Path

import pandas as pd

from matswarm.data.errors import DataError
from matswarm.data.schema import check_unique_columns

_CSV = {".csv", ".txt"}
_TSV = {".tsv"}
_PARQUET = {".parquet", ".pq"}
_DELIMITERS = ",;\t|"

#: Leading bytes of binary formats a user may rename to .csv, and what to do about each.
_MAGIC: tuple[tuple[bytes, str], ...] = (
    (
        b"PK\x03\x04",
        "is an Excel workbook (.xlsx) or another zip archive, not a CSV text file: in Excel use "
        "File > Save As > 'CSV UTF-8 (Comma delimited)', or run "
        "python -c \"import pandas as p; p.read_excel('IN.xlsx').to_csv('OUT.csv', index=False)\"",
    ),
    (
        b"\xd0\xcf\x11\xe0",
        "is an old Excel workbook (.xls), not a CSV text file: in Excel use File > Save As > "
        "'CSV UTF-8 (Comma delimited)'",
    ),
    (b"PAR1", "is a Parquet file, not a CSV: rename it to .parquet"),
    (b"\x1f\x8b", "is gzip-compressed: decompress it first (gunzip FILE)"),
    (b"%PDF", "is a PDF document, not a table: export the table as CSV"),
    (b"SQLite format 3", "is an SQLite database, not a table: export the table as CSV"),
)


class TableReadWarning(UserWarning):
    """A table was read, but with a guess the user should know about (e.g. its encoding)."""


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet table; duplicate column names are an error, not renamed."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if path.is_dir():
        raise DataError("is a folder, not a table file", source=str(path))
    suffix = path.suffix.lower()
    if suffix in _CSV | _TSV:
        return _read_text_table(path, "\t" if suffix in _TSV else None)
    if suffix in _PARQUET:
        try:
            table = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise DataError(
                f"cannot be read as Parquet ({type(exc).__name__}); if it is a CSV, rename it "
                "to .csv",
                source=str(path),
            ) from exc
        check_unique_columns([str(c) for c in table.columns], str(path))
        return table
    raise DataError(
        f"unsupported file type {suffix!r}; use .csv, .tsv or .parquet", source=str(path)
    )


def _read_text_table(path: Path, sep: str | None) -> pd.DataFrame:
    src = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot be read: {exc.strerror or exc}", source=src) from exc
    for magic, what in _MAGIC:
        if raw.startswith(magic):
            raise DataError(what, source=src)
    text = _decode(raw, src)
    if not text.strip():
        raise DataError("the file is empty (no header line)", source=src)
    lines = text.splitlines()
    if sep is None:
        sep = _sniff_delimiter(lines[:20])
    header = next(csv.reader([lines[0]], delimiter=sep), [])
    # pandas silently renames duplicates to "col.1"; check the raw header first.
    check_unique_columns([h.strip() for h in header], src)
    decimal = "," if sep == ";" and _uses_decimal_comma(lines[1:50]) else "."
    try:
        table = pd.read_csv(io.StringIO(text), sep=sep, decimal=decimal)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, csv.Error, ValueError) as exc:
        kind = {"\t": "tab", ";": "semicolon", "|": "pipe"}.get(sep, "comma")
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot be parsed as a {kind}-separated table ({detail}); check that every line "
            "has as many fields as the header",
            source=src,
        ) from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _decode(raw: bytes, src: str) -> str:
    """UTF-8 (BOM stripped), else Windows-1252/Latin-1 with a warning; binary is refused."""
    if b"\x00" in raw[:4096]:
        utf16 = raw.startswith((b"\xff\xfe", b"\xfe\xff"))
        raise DataError(
            "is UTF-16 text; save it again as UTF-8 (in Excel: 'CSV UTF-8 (Comma delimited)')"
            if utf16
            else "is a binary file, not a CSV text file (it contains NUL bytes); export the "
            "table as CSV (UTF-8)",
            source=src,
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        first_bad = exc.start
    # Text in a legacy single-byte encoding has few control characters; binary data has many.
    controls = sum(1 for b in raw[:65536] if b < 32 and b not in (9, 10, 13))
    if controls > max(8, len(raw[:65536]) // 200):
        raise DataError(
            "is a binary file, not a CSV text file; export the table as CSV (UTF-8)", source=src
        )
    text = "".join(_cp1252(raw))
    line = raw.count(b"\n", 0, first_bad) + 1
    warnings.warn(
        f"{src}: not UTF-8 (first non-UTF-8 byte on line {line}); read as Windows-1252/Latin-1. "
        "If accented names look wrong, save the file as UTF-8.",
        TableReadWarning,
        stacklevel=4,
    )
    return text


def _cp1252(raw: bytes):
    """Decode as Windows-1252, falling back to Latin-1 for its five undefined bytes."""
    for chunk in re.split(rb"([\x81\x8d\x8f\x90\x9d])", raw):
        if len(chunk) == 1 and chunk in b"\x81\x8d\x8f\x90\x9d":
            yield chunk.decode("latin-1")
        elif chunk:
            yield chunk.decode("cp1252", errors="replace")


def _sniff_delimiter(lines: list[str]) -> str:
    sample = "\n".join(lines)
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        pass
    # One-line or irregular files: the candidate that splits the header most wins.
    counts = {d: lines[0].count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


_DECIMAL_COMMA = re.compile(r"(?:^|;)\s*-?\d+,\d+(?:[eE][-+]?\d+)?\s*(?:;|$)")


def _uses_decimal_comma(lines: list[str]) -> bool:
    return any(_DECIMAL_COMMA.search(line) for line in lines)
