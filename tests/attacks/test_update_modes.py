"""Gradient mode vs model-delta mode of the FedAvg family (chosen per task with ``update=``)."""

import numpy as np
import pytest
import torch

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.algorithms.training import local_gradient
from matswarm.evaluation import Evaluator
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine


def test_local_gradient_is_the_full_batch_gradient_and_leaves_the_model():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    y = rng.normal(size=50).astype(np.float32)
    model = ModelSpec("mlp", hidden=6).build(4, seed=0)
    before = model.get_flat()
    g, loss = local_gradient(model, X, y, steps=3, batch_size=64, rng=np.random.default_rng(1))
    assert np.array_equal(model.get_flat(), before)
    model.zero_grad()
    mse = torch.mean((model(torch.from_numpy(X)) - torch.from_numpy(y)) ** 2) + model.penalty()
    mse.backward()
    ref = torch.cat([p.grad.reshape(-1) for p in model.parameters()]).numpy()
    np.testing.assert_allclose(g, ref, rtol=1e-5, atol=1e-7)  # 3 identical full batches
    assert loss == pytest.approx(float(mse), rel=1e-5)
    assert g.dtype == np.float32 and g.shape == before.shape


def test_gradient_mode_sends_gradients_and_descends(small_synthetic):
    spec = ModelSpec("mlp", hidden=8)
    algo = make_algorithm(
        "fedavg", update="gradient", server_lr=0.2, rounds=30, local_steps=2, batch_size=32
    )
    eng = build_engine(small_synthetic, spec, algo, make_rule("mean"), seed=0)
    ev = Evaluator(small_synthetic, spec)
    start = eng.run_state.global_params.copy()
    first = ev.evaluate(start).mse
    results = eng.train_phase(1)
    assert all(r.kind == "gradient" for r in results)
    # the server step is global - server_lr * mean(gradients), sample-weighted
    w = np.array([r.n_samples for r in results], dtype=np.float64)
    mean_g = (
        sum(wi * r.gradient.astype(np.float64) for wi, r in zip(w, results, strict=True)) / w.sum()
    )
    stepped = algo.server_step(start, mean_g.astype(np.float32), {})
    np.testing.assert_allclose(stepped, start - 0.2 * mean_g, atol=1e-6)
    eng2 = build_engine(small_synthetic, spec, algo, make_rule("mean"), seed=0)
    run = eng2.run()
    assert ev.evaluate(run.global_params).mse < 0.7 * first


def test_delta_mode_is_unchanged_default_and_modes_are_validated():
    algo = make_algorithm("fedavg")
    assert algo.update == "delta" and algo.server_lr == 1.0
    with pytest.raises(ValueError, match="update must be one of"):
        make_algorithm("fedavg", update="weights")
    with pytest.raises(ValueError, match="server_lr must be > 0"):
        make_algorithm("fedavg", update="gradient", server_lr=0)
    # FedAvgM/FedAdam descend along minus the aggregated gradient in gradient mode
    m = make_algorithm("fedavgm", update="gradient", server_lr=1.0, momentum=0.0)
    out = m.server_step(
        np.zeros(2, np.float32), np.array([1, -2], np.float32), m.init_server_state(np.zeros(2))
    )
    assert out.tolist() == [-1.0, 2.0]
