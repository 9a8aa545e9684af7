"""Binary classification tasks: labels from a threshold, cross-entropy in the shared loop,
every algorithm and robust rule unchanged (the update is still one flat float32 vector), the
metrics checked against scikit-learn, and a full `matswarm run` with the documented rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from matswarm.aggregation import make_rule
from matswarm.aggregation.registry import RULES
from matswarm.algorithms import ALGORITHMS, make_algorithm
from matswarm.cli.main import app
from matswarm.data import DataError, TaskSchema, synthetic
from matswarm.evaluation.classification import classification_metrics, confusion, roc_auc
from matswarm.evaluation.metrics import Evaluator
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine, run_baseline

FEDERATED = [n for n, cls in ALGORITHMS.items() if cls.federated and n != "fedgbdt"]
#: Methods that need a model of their own (FedMDH's generator lives in its model).
MODEL_FOR = {"fedmdh": "fedmdh"}


def _classification_dataset(n_orgs: int = 3, rows: int = 240, features: int = 6, seed: int = 0):
    return synthetic.make_dataset(
        n_rows=rows,
        n_features=features,
        n_orgs=n_orgs,
        n_test=90,
        seed=seed,
        task="classification",
        threshold=0.0,
    )


_CLS7 = _classification_dataset(n_orgs=7, rows=280)  # Bulyan with f = 1 needs n >= 7


def test_metrics_match_scikit_learn():
    sk = pytest.importorskip(
        "sklearn.metrics", reason="scikit-learn comes with the materials extra"
    )
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.3).astype(float)
    p = np.clip(0.3 * y + rng.random(300) * 0.7, 0, 1)
    p[:40] = np.round(p[:40], 1)  # ties
    m = classification_metrics(y, p)
    pred = (p >= 0.5).astype(int)
    assert m.accuracy == pytest.approx(sk.accuracy_score(y, pred))
    assert m.balanced_accuracy == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert m.f1 == pytest.approx(sk.f1_score(y, pred))
    assert m.roc_auc == pytest.approx(sk.roc_auc_score(y, p))
    assert m.brier == pytest.approx(sk.brier_score_loss(y, p))
    assert confusion(y, p).tolist() == sk.confusion_matrix(y, pred).tolist()
    assert np.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def test_labels_from_threshold_or_column():
    t = pd.DataFrame({"x": [1.0, 2, 3, 4], "gap": [0.0, 0.0, 1.2, 3.0], "ok": ["1", "0", 1, 0]})
    above = TaskSchema.infer(t, "gap", task="classification", threshold=0.0, exclude=["ok"])
    assert above.encode(t, "t.csv")[1].tolist() == [0, 0, 1, 1]
    below = TaskSchema.infer(t, "gap", task="classification", threshold=0.0, positive="below")
    assert below.encode(t, "t.csv")[1].tolist() == [1, 1, 0, 0]
    flags = TaskSchema.infer(t, "ok", task="classification", exclude=["gap"])
    assert flags.encode(t, "t.csv")[1].tolist() == [1, 0, 1, 0]
    assert TaskSchema.from_dict(above.to_dict()) == above
    # A regression schema's dict (and digest) does not mention the task at all.
    assert "task" not in TaskSchema.infer(t, "gap", exclude=["ok"]).to_dict()
    bad = pd.DataFrame({"x": [1.0, 2], "cls": ["metal", "insulator"]})
    with pytest.raises(DataError, match=r"t.csv, column 'cls': class label 'metal' at data row 1"):
        TaskSchema.infer(bad, "cls", task="classification").encode(bad, "t.csv")
    with pytest.raises(ValueError, match="threshold applies only"):
        TaskSchema.infer(t, "gap", threshold=1.0)
    with pytest.raises(ValueError, match="positive must be"):
        TaskSchema.infer(t, "gap", task="classification", positive="left")


def test_labels_are_not_standardised():
    ds = _classification_dataset()
    for org in ds.standardized_orgs():
        assert set(np.unique(org.y)) <= {0.0, 1.0} and org.task == "classification"
    assert (ds.standardizer.y_mean, ds.standardizer.y_scale) == (0.0, 1.0)


#: Every federated algorithm under a robust rule, and every rule under FedAvg (both update kinds).
_COMBOS = [(m, {}, "trimmed-mean") for m in FEDERATED] + [
    ("fedavg", {"update": u}, r) for u in ("delta", "gradient") for r in RULES
]


@pytest.mark.parametrize(("method", "extra", "rule_name"), _COMBOS)
def test_every_algorithm_and_rule_runs_a_classification_task(method, extra, rule_name):
    ds = _CLS7
    spec = ModelSpec(MODEL_FOR.get(method, "mlp"), hidden=8)
    ev = Evaluator(ds, spec)
    algo = make_algorithm(method, rounds=2, local_steps=2, batch_size=16, **extra)
    engine = build_engine(ds, spec, algo, make_rule(rule_name), seed=0)
    for t in (1, 2):
        engine.run_round(t)
    g = engine.run_state.global_params
    assert g.dtype == np.float32 and np.isfinite(g).all(), (method, rule_name)
    m = ev.evaluate(g)
    assert 0.0 <= m.accuracy <= 1.0 and 0.0 <= m.brier <= 1.0


def test_federated_trees_refuse_a_classification_task():
    ds = _classification_dataset()
    spec = ModelSpec("gbdt", trees=2, depth=2)
    engine = build_engine(ds, spec, make_algorithm("fedgbdt", rounds=5), make_rule("mean"), 0)
    with pytest.raises(ValueError, match="regression tasks only"):
        engine.run_round(1)


@pytest.mark.parametrize("model", ["lasso", "mlp", "rnn", "lstm"])
def test_each_model_learns_the_classes(model):
    ds = _classification_dataset()
    spec = ModelSpec(model, hidden=16, chunk=3)
    ev = Evaluator(ds, spec)
    algo = make_algorithm("fedavg", rounds=20, local_steps=5, lr=1e-2, batch_size=32)
    engine = build_engine(ds, spec, algo, make_rule("mean"), seed=0)
    before = ev.evaluate(engine.run_state.global_params)
    for t in range(1, 21):
        engine.run_round(t)
    after = ev.evaluate(engine.run_state.global_params)
    majority = ev.dummy()
    assert after.brier < before.brier
    assert after.roc_auc > 0.85 and after.accuracy > majority.accuracy + 0.1, (model, after)
    joint = run_baseline(ds, spec, make_algorithm("joint", rounds=20, local_steps=5), 0)
    assert ev.evaluate(joint["joint"]).roc_auc > 0.85


def test_run_writes_classification_rows_and_confusion_plot(tmp_path):
    tables, test = synthetic.make_tables(n_rows=240, n_features=6, n_orgs=3, n_test=60, seed=3)
    files = []
    for name, t in [*tables.items(), ("test", test)]:
        f = tmp_path / f"{name}.csv"
        t.to_csv(f, index=False)
        files.append(str(f))
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f"[data]\nsource = 'files'\ntrain = {json.dumps(files[:3])}\ntest = '{files[3]}'\n"
        "target = 'y'\ntask = 'classification'\nthreshold = 0.0\npositive = 'below'\n"
        "[model]\nname = 'lasso'\n"
        "[training]\nmethods = ['solo', 'fedavg', 'joint']\nrounds = 3\nlocal_steps = 2\n"
        f"[aggregation]\nrule = 'median'\n[run]\nseeds = 2\njobs = 1\noutput = '{tmp_path}/o'\n"
    )
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "Balanced acc." in res.output and "Majority" in res.output
    doc = json.loads((tmp_path / "o" / "results.json").read_text())
    assert doc["task"] == "classification"
    keys = {
        "method", "model", "org", "accuracy_mean", "accuracy_std", "balanced_accuracy_mean",
        "f1_mean", "roc_auc_mean", "brier_mean", "n_seeds",
    }  # fmt: skip
    assert all(set(r) == keys for r in doc["rows"])
    assert {(r["method"], r["org"]) for r in doc["rows"]} >= {
        ("fedavg", "global"),
        ("solo", "org2"),
    }
    assert doc["dummy"]["roc_auc"] == 0.5 and doc["dummy"]["balanced_accuracy"] == 0.5
    assert doc["provenance"]["schema_sha256"] != ""
    for f in ("results.csv", "confusion.png", "rounds.png"):
        assert (tmp_path / "o" / f).stat().st_size > 0
    header = (tmp_path / "o" / "results.csv").read_text().splitlines()[0]
    assert header.startswith("method,model,org,accuracy_mean")
