"""A materials scientist's own CSV through the command line: `formula,e_form` only, featurised
locally (matswarm featurize, [data] featurize = "magpie"), and the bad files a new user brings,
each answered with one line that names the file and what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

pytest.importorskip(
    "matminer", reason='the materials extra is not installed (pip install -e ".[materials]")'
)

from tests.data.malformed import malformed_tables

from matswarm.cli.main import app

runner = CliRunner()
PARTS = ("train_part0.csv", "train_part1.csv", "train_part2.csv")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MATSWARM_FEATURE_CACHE", str(tmp_path_factory.getbasetemp() / "fcache"))


def formula_tables(perovskite_dir: Path, out: Path, rows: int = 100) -> list[Path]:
    """Per-org `formula,e_form` CSVs (the first ``rows`` of each paper part) and a test CSV."""
    files = []
    for name in (*PARTS, "test_dataset.csv"):
        df = pd.read_csv(perovskite_dir / name, usecols=["formula", "e_form"]).head(rows)
        f = out / name
        df.to_csv(f, index=False)
        files.append(f)
    return files


def config(tmp_path: Path, train: list[Path], test: Path, **data: object) -> Path:
    lines = [
        "[data]",
        "source = 'files'",
        f"train = {json.dumps([str(p) for p in train])}",
        f"test = '{test}'",
        "featurize = 'magpie'",
        *(f"{k} = {json.dumps(v)}" for k, v in data.items()),
        "[training]",
        "methods = ['fedavg', 'joint']",
        "rounds = 2",
        "local_steps = 2",
        "[run]",
        "seeds = 1",
        "jobs = 1",
        f"output = '{tmp_path / 'out'}'",
    ]
    cfg = tmp_path / "c.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def one_error_line(res, *needles: str) -> str:
    """The run failed with exit code 2 and exactly one ``error:`` line holding ``needles``."""
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.output
    for n in needles:
        assert n in errors[0], (n, errors[0])
    return errors[0]


def test_formula_only_csv_runs_end_to_end(tmp_path, perovskite_dir):
    *train, test = formula_tables(perovskite_dir, tmp_path)
    res = runner.invoke(app, ["run", str(config(tmp_path, train, test))])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["provenance"]["n_features"] == 132  # the Magpie descriptors, nothing else
    assert doc["provenance"]["org_rows"] == {"org1": 100, "org2": 100, "org3": 100}
    glob = next(r for r in doc["rows"] if (r["method"], r["org"]) == ("fedavg", "global"))
    assert 0 < glob["mse_mean"] < 10 * doc["dummy"]["mse"]


def test_featurize_command_writes_descriptors_and_reports_bad_rows(tmp_path, perovskite_dir):
    src = formula_tables(perovskite_dir, tmp_path, rows=30)[0]
    out = tmp_path / "feat.csv"
    res = runner.invoke(app, ["featurize", str(src), "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert table.shape == (30, 134) and "MagpieData mean Electronegativity" in table
    df = pd.read_csv(src)
    df.loc[4, "formula"] = "Xx2O3"
    df.loc[9, "formula"] = "Fe2O3!"
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    res = runner.invoke(app, ["featurize", str(bad), "--out", str(tmp_path / "o.csv")])
    one_error_line(res, str(bad), "data row 5", "'Xx2O3'", "unknown element 'Xx'", "--skip-invalid")
    res = runner.invoke(
        app, ["featurize", str(bad), "--out", str(tmp_path / "o.csv"), "--skip-invalid"]
    )
    assert res.exit_code == 0, res.output
    assert f"skipped {bad}, data row 5: 'Xx2O3'" in res.output
    assert "data row 10: 'Fe2O3!'" in res.output
    assert len(pd.read_csv(tmp_path / "o.csv")) == 28
    res = runner.invoke(app, ["featurize", str(bad), "--out", str(bad)])
    one_error_line(res, "--out is the input file")


def test_bad_formula_in_run_names_file_row_and_value(tmp_path, perovskite_dir):
    *train, test = formula_tables(perovskite_dir, tmp_path, rows=40)
    df = pd.read_csv(train[1])
    df.loc[6, "formula"] = "QqTiO3"
    df.to_csv(train[1], index=False)
    res = runner.invoke(app, ["run", str(config(tmp_path, train, test))])
    one_error_line(res, str(train[1]), "data row 7", "'QqTiO3'", "unknown element 'Qq'")
    res = runner.invoke(app, ["run", str(config(tmp_path, train, test, skip_invalid=True))])
    assert res.exit_code == 0, res.output
    assert "skipped 1 row(s)" in res.output and "'QqTiO3'" in res.output


def _xlsx(path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("xl/workbook.xml", "<workbook/>")


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("binary", "binary file"),
        ("excel", "Excel workbook"),
        ("utf16", "UTF-16"),
        ("unknown-element", "unknown element 'Zz'"),
    ],
)
def test_bad_files_get_one_line_from_run_and_featurize(tmp_path, perovskite_dir, kind, needle):
    *train, test = formula_tables(perovskite_dir, tmp_path, rows=30)
    f = train[0]
    if kind == "binary":
        f.write_bytes(bytes(range(256)) * 8)
    elif kind == "excel":
        _xlsx(f)
    elif kind == "utf16":
        f.write_bytes(f.read_text().encode("utf-16"))
    else:
        f.write_text(f.read_text().replace("EuHfO3", "ZzHfO3", 1))
    res = runner.invoke(app, ["run", str(config(tmp_path, train, test))])
    one_error_line(res, str(f), needle)
    res = runner.invoke(app, ["featurize", str(f), "--out", str(tmp_path / "o.csv")])
    one_error_line(res, str(f), needle)


@pytest.mark.parametrize("kind", ["latin1", "semicolon"])
def test_latin1_and_semicolon_csvs_just_work(tmp_path, perovskite_dir, kind):
    *train, test = formula_tables(perovskite_dir, tmp_path, rows=30)
    df = pd.read_csv(train[0])
    df.insert(1, "lab", "Zürich")
    if kind == "latin1":
        train[0].write_bytes(df.to_csv(index=False).encode("latin-1"))
    else:  # what a German Excel writes: semicolons and decimal commas
        train[0].write_text(df.to_csv(index=False, sep=";", decimal=","))
    res = runner.invoke(app, ["featurize", str(train[0]), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 0, res.output
    out = pd.read_csv(tmp_path / "o.csv")
    assert out["lab"].iloc[0] == "Zürich" and out["e_form"].tolist() == df["e_form"].tolist()
    assert ("not UTF-8" in res.output) == (kind == "latin1")
    res = runner.invoke(app, ["run", str(config(tmp_path, train, test))])
    assert res.exit_code == 0, res.output


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=malformed_tables(), featurized=st.booleans())
def test_fuzz_run_never_tracebacks(tmp_path_factory, perovskite_dir, content, featurized):
    tmp = tmp_path_factory.mktemp("fuzz-run")
    *train, test = formula_tables(perovskite_dir, tmp, rows=20)
    if not featurized:  # tables that already hold a numeric feature
        for f in (*train, test):
            df = pd.read_csv(f)
            df.insert(1, "x", range(len(df)))
            df.to_csv(f, index=False)
    train[0].write_bytes(content)
    cfg = config(tmp, train, test)
    if not featurized:
        cfg.write_text(cfg.read_text().replace("featurize = 'magpie'\n", ""))
    res = runner.invoke(app, ["run", str(cfg)])
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{type(res.exception).__name__}: {res.exception}\n{res.output}"
    )
    assert res.exit_code in (0, 2) and "Traceback" not in res.output
    if res.exit_code == 2:
        one_error_line(res, str(train[0]))
