"""A task over `formula,e_form` tables: the issuer's config says `featurize = "magpie"`, the
featuriser is pinned in the task spec, each org featurises its own table when it joins and runs,
and bad tables get one line (also under a fuzz of malformed tables)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from typer.testing import CliRunner

pytest.importorskip(
    "matminer", reason='the materials extra is not installed (pip install -e ".[materials]")'
)

from tests.data.malformed import malformed_tables
from tests.lifecycle.helpers import found_consortium

from matswarm.cli.main import app

runner = CliRunner()
ORGS = ("lab-a", "lab-b", "lab-c")
PARTS = ("train_part0.csv", "train_part1.csv", "train_part2.csv")


@pytest.fixture(scope="module")
def task(tmp_path_factory, perovskite_dir):
    """Three registered orgs, a 3-round task over formula-only tables, all joined."""
    tmp = tmp_path_factory.mktemp("featurized-task")
    mp = pytest.MonkeyPatch()
    mp.setenv("MATSWARM_HOME", str(tmp / "home"))
    mp.setenv("MATSWARM_PASSPHRASE", "test-only-passphrase")
    mp.setenv("MATSWARM_FEATURE_CACHE", str(tmp_path_factory.getbasetemp() / "fcache"))

    ok = found_consortium(tmp / "home", ORGS)
    files = []
    for org, part in zip(ORGS, PARTS, strict=True):
        f = tmp / f"{org}.csv"
        df = pd.read_csv(perovskite_dir / part, usecols=["formula", "e_form"]).head(80)
        df.to_csv(f, index=False)
        files.append(f)
    header = tmp / "header.csv"
    header.write_text("formula,e_form\n")
    cfg = tmp / "task.toml"
    cfg.write_text(
        "[data]\nfeaturize = 'magpie'\n[model]\nhidden = 8\n"
        "[training]\nrounds = 3\nlocal_steps = 2\n[run]\nseeds = [0]\n"
    )
    out = ok(
        "task", "create", str(cfg), "--by", "lab-a", "--participants", ",".join(ORGS),
        "--schema-from", str(header), "--algorithm", "fedavg",
    )  # fmt: skip
    tid = next(w for w in out.split() if w.startswith("0x"))
    assert "132 features" in out
    for org, f in zip(ORGS, files, strict=True):
        assert "80 rows" in ok("task", "join", tid, "--org", org, "--data", str(f))
    yield tid, ok, tmp
    mp.undo()


def test_formula_only_task_runs_locally_and_pins_the_featurizer(task):
    tid, ok, tmp = task
    out = ok("task", "run-local", tid)
    assert "finished; final model" in out
    assert "PASS: 3 of 3 rounds" in ok("verify", tid, "--org", "lab-b")
    ok("model", "fetch", tid, "--out", str(tmp / "model"))
    card = json.loads((tmp / "model" / "model_card.json").read_text())
    from matswarm.data.featurize import featurizer_spec

    assert card["featurizer"] == featurizer_spec().as_dict() | {
        "formula_column": "formula",
        "skip_invalid": False,
    }
    assert len(card["features"]) == 132 and card["features"][0].startswith("MagpieData")


def test_predict_featurises_formulas_like_the_orgs(task, perovskite_dir):
    """`matswarm predict` on the fetched model: a formula-only table is featurised with the
    card's featuriser; onnxruntime and the archived torch weights agree to 1e-5."""
    tid, ok, tmp = task
    model_dir = tmp / "model"  # fetched by the test above; made here when run alone
    if not (model_dir / "model_card.json").exists():
        ok("task", "run-local", tid)
        ok("model", "fetch", tid, "--out", str(model_dir))
    new = tmp / "new.csv"
    pd.read_csv(perovskite_dir / "test_dataset.csv", usecols=["formula"]).head(25).to_csv(
        new, index=False
    )
    preds = {}
    for backend in ("onnx", "torch"):
        out = tmp / f"pred-{backend}.csv"
        ok("predict", str(model_dir), str(new), "--out", str(out), "--backend", backend)
        preds[backend] = pd.read_csv(out)
    onnx, torch_ = preds["onnx"], preds["torch"]
    assert len(onnx) == 25 and (onnx["unit"] == "eV/atom").all()
    assert list(onnx["formula"]) == list(torch_["formula"])
    diff = (onnx["predicted_e_form"] - torch_["predicted_e_form"]).abs().max()
    assert diff < 1e-5, diff
    bad = tmp / "bad-predict.csv"
    bad.write_text("formula\nSrTiO3\nQqO3\n")
    res = runner.invoke(app, ["predict", str(model_dir), str(bad)])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "QqO3" in res.output and "row 2" in res.output, res.output


def test_bad_formula_on_join_names_file_row_and_value(task):
    tid, _, tmp = task
    bad = tmp / "bad.csv"
    bad.write_text("formula,e_form\nNaCl,-1.0\nSrTiO3,-2.0\nXyTiO3,-1.5\n")
    res = runner.invoke(app, ["task", "join", tid, "--org", "lab-a", "--data", str(bad)])
    assert res.exit_code == 2, res.output
    assert str(bad) in res.output and "data row 3" in res.output and "'XyTiO3'" in res.output


def _no_traceback(res) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{type(res.exception).__name__}: {res.exception}\n{res.output}"
    )
    assert res.exit_code in (0, 2) and "Traceback" not in res.output
    if res.exit_code == 2:
        assert sum(ln.startswith("error:") for ln in res.output.splitlines()) == 1, res.output


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=malformed_tables())
def test_fuzz_join_and_featurize_never_traceback(task, tmp_path, content):
    tid, _, _ = task
    f = tmp_path / "fuzz.csv"
    f.write_bytes(content)
    _no_traceback(runner.invoke(app, ["task", "join", tid, "--org", "lab-c", "--data", str(f)]))
    for extra in ([], ["--skip-invalid"]):
        res = runner.invoke(app, ["featurize", str(f), "--out", str(tmp_path / "o.csv"), *extra])
        _no_traceback(res)


def test_classification_task_runs_locally_and_verifies(task):
    _, ok, tmp = task
    cfg = tmp / "cls.toml"
    cfg.write_text(
        "[data]\nfeaturize = 'magpie'\ntask = 'classification'\nthreshold = -0.5\n"
        "positive = 'below'\n[model]\nname = 'lasso'\n"
        "[training]\nrounds = 2\nlocal_steps = 2\n[run]\nseeds = [0]\n"
    )
    out = ok(
        "task", "create", str(cfg), "--by", "lab-a", "--participants", ",".join(ORGS),
        "--schema-from", str(tmp / "header.csv"), "--algorithm", "fedavg",
    )  # fmt: skip
    tid = next(w for w in out.split() if w.startswith("0x"))
    for org in ORGS:
        ok("task", "join", tid, "--org", org, "--data", str(tmp / f"{org}.csv"))
    ok("task", "run-local", tid)
    assert "PASS: 2 of 2 rounds" in ok("verify", tid, "--org", "lab-c")
    ok("model", "fetch", tid, "--out", str(tmp / "cls-model"))
    card = json.loads((tmp / "cls-model" / "model_card.json").read_text())
    assert card["task"] == tid
    assert card["classification"] == {"threshold": -0.5, "positive": "below"}
    assert (card["scaler"]["y_mean"], card["scaler"]["y_scale"]) == (0.0, 1.0)
