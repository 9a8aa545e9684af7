"""Reading private tables (CSV or Parquet) with pandas, with errors that name the file."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from matswarm.data.errors import DataError
from matswarm.data.schema import check_unique_columns

_CSV = {".csv", ".txt"}
_TSV = {".tsv"}
_PARQUET = {".parquet", ".pq"}


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet table; duplicate column names are an error, not renamed."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    suffix = path.suffix.lower()
    if suffix in _CSV | _TSV:
        sep = "\t" if suffix in _TSV else ","
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh, delimiter=sep), None)
        if header is None:
            raise DataError("the file is empty (no header line)", source=str(path))
        # pandas silently renames duplicates to "col.1"; check the raw header first.
        check_unique_columns([h.strip() for h in header], str(path))
        try:
            table = pd.read_csv(path, sep=sep, encoding="utf-8-sig")
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(
                f"cannot be parsed as {'TSV' if sep == chr(9) else 'CSV'}: {exc}", source=str(path)
            ) from exc
        table.columns = [str(c).strip() for c in table.columns]
    elif suffix in _PARQUET:
        try:
            table = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several unrelated types
            raise DataError(f"cannot be read as Parquet: {exc}", source=str(path)) from exc
        check_unique_columns([str(c) for c in table.columns], str(path))
    else:
        raise DataError(
            f"unsupported file type {suffix!r}; use .csv, .tsv or .parquet", source=str(path)
        )
    return table
