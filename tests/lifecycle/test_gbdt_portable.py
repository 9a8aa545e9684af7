"""A gbdt task end to end through the CLI and the trust layer, then the portable model:
``task run-local`` -> ``verify`` -> ``model fetch`` (ONNX checked against the card) ->
``matswarm predict`` with onnxruntime, compared with the in-process model."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
from tests.lifecycle.helpers import home_with_task, runner

from matswarm.cli.main import app
from matswarm.data import Standardizer, TaskSchema
from matswarm.export.predict import load_model_dir
from matswarm.models import ModelSpec
from matswarm.protocol.archive import flat_parameters, read_archive

pytest.importorskip("onnxruntime")

TREES, DEPTH = 4, 2


@pytest.fixture()
def gbdt_task(tmp_path, monkeypatch):
    config = (
        "[data]\ntarget = 'y'\nunit = 'a.u.'\n"
        f"[model]\nname = 'gbdt'\ntrees = {TREES}\ndepth = {DEPTH}\nbins = 16\n"
        "[training]\nlr = 0.3\n[run]\nseeds = [0]\n"
    )
    return home_with_task(tmp_path, monkeypatch, config=config, algorithm="fedgbdt")


def test_gbdt_task_runs_verifies_exports_and_predicts(gbdt_task):
    _, task, ok, tmp_path = gbdt_task
    ok("task", "run-local", task)
    rounds = 1 + TREES * DEPTH
    # Every org re-derived the same model bytes: the auditor's recomputation matches the hash
    # a quorum voted in every round.
    assert f"PASS: {rounds} of {rounds} rounds" in ok("verify", task, "--org", "lab-c")
    model_dir = tmp_path / "model"
    ok("model", "fetch", task, "--out", str(model_dir))
    card = json.loads((model_dir / "model_card.json").read_text())
    onnx_blob = (model_dir / "model.onnx").read_bytes()
    assert card["onnx"]["sha256"] == hashlib.sha256(onnx_blob).hexdigest()
    assert card["onnx"]["check"]["max_abs_difference"] <= 1e-5
    assert card["model"]["name"] == "gbdt" and card["algorithm"]["name"] == "fedgbdt"

    # In-process reference: the archived weights in the card's model, scaler from the card.
    weights, _ = read_archive((model_dir / "model.safetensors").read_bytes())
    model = ModelSpec(**card["model"]).build(len(card["features"]))
    flat_parameters(model, weights)
    table = pd.read_csv(tmp_path / "lab-b.csv")
    X, y = TaskSchema.from_dict(card["schema"]).encode(table, "lab-b.csv")
    scaler = Standardizer.from_dict(card["scaler"])
    expected = scaler.inverse_y(model.predict(scaler.transform_x(X)))
    assert np.mean((expected - y) ** 2) < 0.5 * np.var(y)  # the trees learned something

    out = tmp_path / "pred.csv"
    ok("predict", str(model_dir), str(tmp_path / "lab-b.csv"), "--out", str(out))
    pred = pd.read_csv(out)
    assert list(pred["sample_id"]) == list(table["sample_id"])
    np.testing.assert_allclose(pred["predicted_y"], expected, atol=1e-5, rtol=0)
    assert set(pred["unit"]) == {"a.u."}

    # Schema errors name the columns; a tampered ONNX file is refused.
    table.drop(columns=["f3"]).assign(extra=1).to_csv(tmp_path / "bad.csv", index=False)
    res = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "bad.csv")])
    assert res.exit_code == 2 and "f3" in res.output and "bad.csv" in res.output
    table.assign(notes="x").to_csv(tmp_path / "extra.csv", index=False)
    res = runner.invoke(app, ["predict", str(model_dir), str(tmp_path / "extra.csv")])
    assert res.exit_code == 2 and "notes" in res.output and "--ignore-extra" in res.output
    (model_dir / "model.onnx").write_bytes(onnx_blob[:-1] + bytes([onnx_blob[-1] ^ 1]))
    with pytest.raises(ValueError, match="sha256"):
        load_model_dir(model_dir).onnx_blob()
