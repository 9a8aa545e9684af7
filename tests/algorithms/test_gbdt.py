"""Federated gradient-boosted trees (fedgbdt): split finding, losslessness of histogram
aggregation, the quantile sketch, and the checks at the boundary."""

from __future__ import annotations

import numpy as np
import pytest

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.algorithms.histogram import FedGBDT, tree_baseline_fit
from matswarm.data import synthetic
from matswarm.data.federated import StandardizedOrg
from matswarm.experiments.config import ConfigError, ExperimentConfig
from matswarm.models import ModelSpec
from matswarm.models.trees import TreeLayout, bin_rows, trees_done
from matswarm.runtime import build_engine, run_federated


def _org(name: str, n: int, seed: int, d: int = 4) -> StandardizedOrg:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = np.where(X[:, 1] > 0.3, 1.0, -0.5) + 0.3 * X[:, 2] + 0.05 * rng.standard_normal(n)
    return StandardizedOrg(name, X, y.astype(np.float32))


def _fit(orgs, spec: ModelSpec, lr: float = 0.3, name: str = "joint") -> np.ndarray:
    params = {"rounds": 1 + spec.trees * spec.depth, "lr": lr, "local_steps": 1, "batch_size": 1}
    out = tree_baseline_fit(name, orgs, spec, params, seed=0)
    return next(iter(out.values()))


def test_first_split_is_the_exhaustive_best_over_the_agreed_bins():
    org = _org("a", 400, 0)
    spec = ModelSpec(name="gbdt", trees=1, depth=1, bins=16)
    v = _fit([org], spec, lr=1.0)
    layout = TreeLayout.of(v)
    feat, thr, leaf = layout.tree(v, 0)
    binned = bin_rows(org.X, layout.edges(v))
    r = org.y.astype(np.float64) - float(v[5])
    best = (np.inf, None)
    for j in range(layout.n_features):
        for b in range(layout.bins - 1):
            left = binned[:, j] <= b
            if left.all() or not left.any():
                continue
            sse = ((r[left] - r[left].mean()) ** 2).sum() + (
                (r[~left] - r[~left].mean()) ** 2
            ).sum()
            best = min(best, (sse, (j, b)), key=lambda t: t[0])
    assert (int(feat[0]), int(thr[0])) == best[1]
    left = binned[:, int(feat[0])] <= thr[0]
    # Newton leaf with l2 = 3e-4 (per-sample units): close to the residual means.
    np.testing.assert_allclose(leaf, [r[left].mean(), r[~left].mean()], rtol=2e-3)


def test_federated_histograms_give_the_pooled_model():
    orgs = [_org("a", 150, 1), _org("b", 60, 2), _org("c", 240, 3)]
    spec = ModelSpec(name="gbdt", trees=6, depth=3, bins=16)
    pooled = _fit(orgs, spec)
    ds = synthetic.make_dataset(n_rows=90, n_features=4, n_orgs=3, seed=0)
    algo = FedGBDT(rounds=1 + 6 * 3, lr=0.3)
    engine = build_engine(ds, spec, algo, make_rule("mean"), 0, orgs=orgs)
    run = engine.run()
    model = spec.build(4)
    model.set_flat(run.global_params)
    X = np.concatenate([o.X for o in orgs])
    ref = spec.build(4)
    ref.set_flat(pooled)
    # Same splits and leaves up to float32 rounding of per-org means.
    np.testing.assert_allclose(model.predict(X), ref.predict(X), atol=1e-5)
    layout = TreeLayout.of(run.global_params)
    assert trees_done(layout, run.global_params) == 6
    for t in range(6):
        np.testing.assert_array_equal(
            layout.tree(run.global_params, t)[0], layout.tree(pooled, t)[0]
        )


def test_gbdt_learns_and_updates_are_histograms():
    ds = synthetic.make_dataset(n_rows=600, n_features=6, n_orgs=3, seed=1)
    spec = ModelSpec(name="gbdt", trees=30, depth=3, bins=32)
    engine = build_engine(ds, spec, FedGBDT(rounds=91, lr=0.2), make_rule("mean"), 0)
    assert {r.kind for r in engine.train_phase(1)} == {"histogram"}
    run = run_federated(ds, spec, FedGBDT(rounds=91, lr=0.2), make_rule("mean"), 0)
    model = spec.build(6)
    model.set_flat(run.global_params)
    test = ds.standardized_test()
    mse = float(np.mean((model.predict(test.X) - test.y) ** 2))
    assert mse < 0.25 * float(np.var(test.y))
    losses = [np.mean(list(r.train_loss.values())) for r in run.history[1:]]
    assert losses[-1] < 0.3 * losses[0]


def test_boundary_checks_name_the_problem():
    spec = ModelSpec(name="gbdt", trees=5, depth=2)
    with pytest.raises(ValueError, match="aggregation rule 'mean'"):
        FedGBDT(rounds=11).check_model(spec, make_rule("median"))
    with pytest.raises(ValueError, match="1 \\+ trees \\* depth = 11"):
        FedGBDT(rounds=10).check_model(spec, make_rule("mean"))
    with pytest.raises(ValueError, match="fedgbdt"):
        make_algorithm("fedavg").check_model(spec, make_rule("mean"))
    with pytest.raises(ValueError, match="name = 'gbdt'"):
        FedGBDT(rounds=11).check_model(ModelSpec(name="mlp"), make_rule("mean"))
    with pytest.raises(ValueError, match="lr"):
        make_algorithm("fedgbdt", lr=2.0)
    with pytest.raises(ValueError, match="depth"):
        ModelSpec(name="gbdt", depth=0).build(3)


def test_config_defaults_for_gbdt_and_clear_errors():
    cfg = ExperimentConfig.from_dict({"model": {"name": "gbdt", "trees": 7, "depth": 3}})
    assert cfg.methods == ["solo", "fedgbdt", "joint"]
    algo = cfg.algorithm("fedgbdt")
    assert algo.rounds == 22 and algo.lr == 0.1
    with pytest.raises(ConfigError, match="aggregation rule 'mean'"):
        ExperimentConfig.from_dict(
            {"model": {"name": "gbdt"}, "aggregation": {"rule": "krum", "f": 1}}
        )
    with pytest.raises(ConfigError, match="trained by method 'fedgbdt'"):
        ExperimentConfig.from_dict({"model": {"name": "gbdt"}, "training": {"methods": ["fedavg"]}})


def test_matswarm_run_with_a_gbdt_config(tmp_path):
    from typer.testing import CliRunner

    from matswarm.cli.main import app

    cfg = tmp_path / "gbdt.toml"
    cfg.write_text(
        "[data]\nsource = 'synthetic'\nrows = 300\nfeatures = 5\n"
        "[split]\nkind = 'iid'\n[model]\nname = 'gbdt'\ntrees = 4\ndepth = 2\n"
        f"[run]\nseeds = 1\njobs = 1\noutput = '{tmp_path / 'out'}'\n"
    )
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    assert "FedGBDT" in res.output and "Joint" in res.output and "model gbdt" in res.output
