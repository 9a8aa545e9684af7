"""What a new user's "CSV" may really be: each is read correctly or refused in one line that
names the file and says what to do."""

from __future__ import annotations

import gzip
import io
import zipfile

import pandas as pd
import pytest

from matswarm.data import DataError, read_table
from matswarm.data.tables import TableReadWarning

ROWS = [("NaCl", "Müller", 1.5, -2.0), ("Fe2O3", "Ångström", 2.25, -1.75)]


def _frame() -> pd.DataFrame:
    return pd.DataFrame(ROWS, columns=["formula", "lab", "x", "e_form"])


def test_latin1_csv_is_read_with_a_warning(tmp_path):
    f = tmp_path / "latin1.csv"
    f.write_bytes(_frame().to_csv(index=False).encode("latin-1"))
    with pytest.warns(TableReadWarning, match=r"latin1.csv: not UTF-8 .* line 2"):
        t = read_table(f)
    assert t["lab"].tolist() == ["Müller", "Ångström"] and t["x"].tolist() == [1.5, 2.25]


def test_semicolon_csv_with_decimal_comma_is_read(tmp_path):
    f = tmp_path / "excel-de.csv"
    f.write_text("formula;lab;x;e_form\nNaCl;A;1,5;-2,0\nFe2O3;B;2,25;-1,75\n", encoding="utf-8")
    t = read_table(f)
    assert list(t.columns) == ["formula", "lab", "x", "e_form"]
    assert t["x"].tolist() == [1.5, 2.25] and t["e_form"].dtype.kind == "f"


def test_semicolon_csv_with_decimal_point_and_utf8_bom(tmp_path):
    f = tmp_path / "semi.csv"
    f.write_bytes("\ufeffformula;x;e_form\nNaCl;1.5;-2\nKCl;2.5;-3\n".encode())
    t = read_table(f)
    assert list(t.columns) == ["formula", "x", "e_form"] and t["x"].tolist() == [1.5, 2.5]


def test_single_column_csv_stays_one_column(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("formula\nNaCl\nKCl\n")
    assert read_table(f)["formula"].tolist() == ["NaCl", "KCl"]


def _xlsx_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("xl/workbook.xml", "<workbook/>")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (_xlsx_bytes(), r"Excel workbook .*Save As"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(600), r"old Excel workbook"),
        (b"PAR1" + bytes(100), r"Parquet file.*rename it to \.parquet"),
        (gzip.compress(b"formula,y\nNaCl,1\n"), r"gzip-compressed"),
        (bytes(range(256)) * 20, r"binary file"),
        ("formula,y\nNaCl,1\n".encode("utf-16"), r"UTF-16 .*UTF-8"),
        (b"", r"empty"),
        (b"\n\n  \n", r"empty"),
    ],
    ids=["xlsx", "xls", "parquet", "gzip", "binary", "utf16", "empty", "blank"],
)
def test_non_csv_files_are_refused_in_one_line(tmp_path, content, expected):
    f = tmp_path / "data.csv"
    f.write_bytes(content)
    with pytest.raises(DataError, match=expected) as info:
        read_table(f)
    msg = str(info.value)
    assert msg.startswith(str(f)) and "\n" not in msg


def test_ragged_csv_names_the_problem(tmp_path):
    f = tmp_path / "ragged.csv"
    f.write_text("formula,x,y\nNaCl,1,2\nKCl,1,2,3,4\n")
    with pytest.raises(DataError, match=r"ragged.csv: cannot be parsed as a comma-separated"):
        read_table(f)


def test_directory_and_unreadable_paths(tmp_path):
    with pytest.raises(DataError, match=r"is a folder"):
        read_table(tmp_path / ".." / tmp_path.name)
    bad = tmp_path / "t.parquet"
    bad.write_text("formula,y\nNaCl,1\n")
    with pytest.raises(DataError, match=r"cannot be read as Parquet.*rename it to \.csv"):
        read_table(bad)


def test_perovskite_files_read_identically_to_pandas(perovskite_dir):
    for name in ("train_part0.csv", "test_dataset.csv"):
        assert read_table(perovskite_dir / name).equals(pd.read_csv(perovskite_dir / name))
