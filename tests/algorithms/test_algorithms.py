import warnings

import numpy as np
import pytest
import torch

from matswarm.aggregation import make_rule
from matswarm.algorithms import ALGORITHMS, MatSwarm, make_algorithm, train_local
from matswarm.algorithms.swarm import representation_covariance
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine, run_baseline, run_federated

SMALL = dict(rounds=3, local_steps=5, lr=1e-2, batch_size=32)


def test_unknown_algorithm_and_bad_params():
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_algorithm("fedsgd")
    with pytest.raises(ValueError, match="bad parameter"):
        make_algorithm("fedavg", gamma=1.0)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        make_algorithm("fedavg", rounds=0)
    with pytest.raises(ValueError, match="lr_schedule"):
        make_algorithm("fedavg", lr_schedule="step")


def test_fedprox_mu_zero_warns():
    with pytest.warns(UserWarning, match="mu=0 is FedAvg"):
        make_algorithm("fedprox", mu=0.0)


def test_every_algorithm_cites_its_paper():
    for cls in ALGORITHMS.values():
        if cls.federated:
            assert cls.citations(), cls


def test_shared_loop_reduces_loss_and_is_seeded():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)).astype(np.float32)
    y = (X @ rng.normal(size=6)).astype(np.float32)
    spec = ModelSpec("mlp", hidden=8)
    losses = []
    for _ in range(2):
        m = spec.build(6, seed=1)
        with torch.no_grad():
            before = float(torch.mean((m(torch.from_numpy(X)) - torch.from_numpy(y)) ** 2))
        stats = train_local(
            m, X, y, steps=100, lr=1e-2, batch_size=32, rng=np.random.default_rng(5)
        )
        assert stats.last_mse < before / 2
        losses.append(m.get_flat())
    assert np.array_equal(losses[0], losses[1])


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedavgm", "fedadam", "matswarm"])
def test_federated_methods_run_and_learn(small_synthetic, name):
    from matswarm.evaluation import Evaluator

    spec = ModelSpec("mlp", hidden=8)
    algo = make_algorithm(name, **SMALL)
    run = run_federated(small_synthetic, spec, algo, make_rule("mean"), seed=0)
    ev = Evaluator(small_synthetic, spec)
    assert run.rounds_done == 3
    assert set(run.local_params) == {"org1", "org2", "org3"}
    assert ev.evaluate(run.global_params).mse < ev.evaluate(run.initial_global).mse


def test_fedavg_with_mean_is_eq4_of_local_models(small_synthetic):
    spec = ModelSpec("mlp", hidden=8)
    engine = build_engine(
        small_synthetic, spec, make_algorithm("fedavg", **SMALL), make_rule("mean"), seed=0
    )
    engine.run_round(1)
    run = engine.run_state
    n = np.array([o.n for o in small_synthetic.orgs], dtype=np.float64)
    expected = sum(
        w * run.local_params[o.name].astype(np.float64)
        for w, o in zip(n / n.sum(), small_synthetic.orgs, strict=True)
    )
    assert np.allclose(run.global_params, expected, atol=1e-6)


def test_solo_and_joint_baselines(small_synthetic):
    spec = ModelSpec("mlp", hidden=8)
    solo = run_baseline(small_synthetic, spec, make_algorithm("solo", **SMALL), seed=0)
    assert set(solo) == {"org1", "org2", "org3"}
    joint = run_baseline(small_synthetic, spec, make_algorithm("joint", **SMALL), seed=0)
    assert set(joint) == {"joint"}


def test_matswarm_objective_terms():
    algo = MatSwarm(gamma=0.5, lam=1.0, **SMALL)
    from matswarm.algorithms import RingMessage
    from matswarm.data import StandardizedOrg

    data = StandardizedOrg("o", np.zeros((100, 4), np.float32), np.zeros(100, np.float32))
    model = ModelSpec("mlp", hidden=3).build(4)
    flat = torch.nn.utils.parameters_to_vector(model.parameters())
    u = torch.randn(10, 3)
    no_ring = algo.extra_loss(model.get_flat(), data, None)(model, u)
    assert float(no_ring) == pytest.approx(float(0.5 * (flat**2).sum() / 100), rel=1e-5)
    target = np.eye(3, dtype=np.float32)
    with_ring = algo.extra_loss(model.get_flat(), data, RingMessage(target))(model, u)
    diff = representation_covariance(u) - torch.from_numpy(target)
    extra = 0.5 * float((diff**2).sum()) / (4 * 9)
    assert float(with_ring) - float(no_ring) == pytest.approx(extra, rel=1e-4)


def test_matswarm_ring_statistics_need_enough_rows():
    from matswarm.data import StandardizedOrg

    algo = MatSwarm(gamma=0.5, **SMALL)
    model = ModelSpec("mlp", hidden=8).build(4)
    assert MatSwarm(**SMALL).ring_message(model, None) is None  # gamma = 0: nothing to send
    tiny = StandardizedOrg("tiny", np.zeros((10, 4), np.float32), np.zeros(10, np.float32))
    with pytest.raises(ValueError, match="needs at least 16"):
        algo.ring_message(model, tiny)
    ok = StandardizedOrg(
        "ok",
        np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32),
        np.zeros(40, np.float32),
    )
    msg = algo.ring_message(model, ok)
    assert msg.statistics.shape == (8, 8) and msg.params is None
    assert MatSwarm(gamma=0.5, handoff="model", **SMALL).ring_message(model, ok).params is not None


def test_matswarm_docstring_explains_u_and_boundary():
    doc = MatSwarm.__module__ and __import__("matswarm.algorithms.swarm", fromlist=["x"]).__doc__
    for phrase in ("What u(X) is here", "What crosses an organisation boundary", "No row"):
        assert phrase in doc


def test_server_optimisers_follow_their_update_rules():
    g = np.zeros(3, np.float32)
    d = np.array([1.0, -2.0, 0.5], np.float32)
    m = make_algorithm("fedavgm", momentum=0.5, server_lr=1.0, **SMALL)
    st = m.init_server_state(g)
    g1 = m.server_step(g, d, st)
    g2 = m.server_step(g1, d, st)
    assert np.allclose(g1, d) and np.allclose(g2, d + 1.5 * d)
    a = make_algorithm("fedadam", server_lr=0.1, beta1=0.0, beta2=0.0, tau=1e-9, **SMALL)
    assert np.allclose(a.server_step(g, d, a.init_server_state(g)), 0.1 * np.sign(d), atol=1e-6)


def test_degenerate_settings_do_not_warn_by_default():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_algorithm("fedprox", mu=0.1)
