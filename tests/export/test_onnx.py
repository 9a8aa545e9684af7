"""ONNX export of the neural models and `matswarm predict` on a model folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.data import synthetic
from matswarm.export.onnx_model import ONNX_TOLERANCE, export_onnx, run_onnx
from matswarm.models import ModelSpec
from matswarm.protocol.archive import build_archive
from matswarm.protocol.consortium import portable_onnx
from matswarm.store import LocalStore

pytest.importorskip("onnxruntime")
runner = CliRunner()


@pytest.mark.parametrize("name", ["mlp", "lstm", "lasso"])
def test_onnx_reproduces_the_torch_model(name):
    model = ModelSpec(name=name, hidden=8, chunk=4).build(10, seed=3)
    exported = export_onnx(model, 10)
    X = np.random.default_rng(1).standard_normal((50, 10)).astype(np.float32) * 3
    assert np.max(np.abs(run_onnx(exported.blob, X) - model.predict(X))) <= ONNX_TOLERANCE
    assert exported.info["check"]["max_abs_difference"] <= ONNX_TOLERANCE


def _model_dir(tmp_path, card_extra=None):
    """A model folder as `model fetch` writes it, for an MLP on synthetic data."""
    ds = synthetic.make_dataset(n_rows=120, n_features=5, n_orgs=2, seed=4)
    spec = ModelSpec(hidden=8)
    model = spec.build(5, seed=0)
    store = LocalStore(tmp_path / "store")
    card = {
        "target": ds.schema.target,
        "unit": ds.schema.unit,
        "features": list(ds.schema.features),
        "schema": ds.schema.to_dict(),
        "scaler": ds.standardizer.to_dict(),
        "model": vars(spec),
        "onnx": portable_onnx(store, model, 5, 0),
        **(card_extra or {}),
    }
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(build_archive(model, card))
    (folder / "model_card.json").write_text(json.dumps(card))
    (folder / "model.onnx").write_bytes(store.get(card["onnx"]["cid"]))
    _, test = synthetic.make_tables(n_rows=120, n_features=5, n_orgs=2, seed=4)
    csv = tmp_path / "in.csv"
    test.to_csv(csv, index=False)
    return folder, csv


def test_predict_cli_onnx_equals_in_process_model(tmp_path):
    folder, csv = _model_dir(tmp_path)
    outs = {}
    for backend in ("onnx", "torch"):
        out = tmp_path / f"{backend}.csv"
        res = runner.invoke(
            app, ["predict", str(folder), str(csv), "--out", str(out), "--backend", backend]
        )
        assert res.exit_code == 0, res.output
        outs[backend] = pd.read_csv(out)
    np.testing.assert_allclose(outs["onnx"]["predicted_y"], outs["torch"]["predicted_y"], atol=1e-5)
    assert list(outs["onnx"].columns[-2:]) == ["predicted_y", "unit"]
    assert len(outs["onnx"]) == len(pd.read_csv(csv))


def test_predict_names_a_missing_formula_column(tmp_path):
    feat = {
        "featurizer": {
            "name": "matminer",
            "version": "x",
            "preset": "magpie",
            "formula_column": "formula",
        }
    }
    folder, csv = _model_dir(tmp_path, feat)
    res = runner.invoke(app, ["predict", str(folder), str(csv)])
    assert res.exit_code == 2 and "'formula'" in res.output and "in.csv" in res.output
    res = runner.invoke(app, ["predict", str(tmp_path), str(csv)])
    assert res.exit_code == 2 and "model_card.json" in res.output
