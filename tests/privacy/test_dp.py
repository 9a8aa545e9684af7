"""DP-SGD mechanics (per-sample clipping, noise, shares), configuration refusals, and private
runs through the trust layer with their ε reports anchored on the ledger."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from tests.trustflow.helpers import SPEC

from matswarm.aggregation import make_rule
from matswarm.aggregation.registry import RULES
from matswarm.algorithms import make_algorithm
from matswarm.experiments.config import ConfigError, ExperimentConfig
from matswarm.privacy import BudgetError, PrivacyConfig, make_private
from matswarm.privacy.dp import REPORT_KIND, SampledGaussianGradient, per_sample_gradients
from matswarm.privacy.reports import _check_document, audit_reports
from matswarm.protocol.archive import read_archive
from matswarm.protocol.consortium import Consortium, finish_task
from matswarm.protocol.verify import first_failure_line, verify_task
from matswarm.runtime import build_engine


def _loop_grads(model, xb, yb):
    """Per-sample gradients the slow way: one autograd call per row."""
    out = []
    for i in range(len(yb)):
        loss = ((model(xb[i : i + 1]) - yb[i : i + 1]) ** 2).sum()
        out.append(torch.autograd.grad(loss, list(model.parameters())))
    return out


@pytest.mark.parametrize("name", ["mlp", "lasso", "lstm"])
def test_per_sample_gradients_match_a_loop(name):
    from matswarm.models import ModelSpec

    model = ModelSpec(name, hidden=6, chunk=4).build(10, seed=0)
    g = torch.Generator().manual_seed(0)
    xb, yb = torch.randn(7, 10, generator=g), torch.randn(7, generator=g)
    vm, losses = per_sample_gradients(model, xb, yb)
    loop = _loop_grads(model, xb, yb)
    for i in range(7):
        for a, b in zip(vm, loop[i], strict=True):
            torch.testing.assert_close(a[i], b, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses, (model(xb) - yb) ** 2)


def test_clipped_noiseless_gradient_is_the_mean_of_clipped_rows():
    from matswarm.models import ModelSpec

    model = ModelSpec("mlp", hidden=5).build(6, seed=1)
    g = torch.Generator().manual_seed(1)
    xb, yb = torch.randn(9, 6, generator=g), 3 * torch.randn(9, generator=g)
    clip = 0.05  # small enough that every row is clipped
    priv = SampledGaussianGradient(
        clip=clip, noise_std=0.0, sample_rate=0.5, divisor=9, rng=np.random.default_rng(0)
    )
    grads, _, _ = priv.gradient(model, xb, yb, None)
    want = [torch.zeros_like(p) for p in model.parameters()]
    for row in _loop_grads(model, xb, yb):
        norm = torch.sqrt(sum((r**2).sum() for r in row))
        assert norm > clip
        for w, r in zip(want, row, strict=True):
            w += r * (clip / norm) / 9
    for a, b in zip(grads, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    total = torch.sqrt(sum((a**2).sum() for a in grads))
    assert total <= clip + 1e-6  # mean of vectors of norm <= clip


def test_noise_has_the_configured_std_and_l1_penalty_is_exact():
    from matswarm.models import ModelSpec

    model = ModelSpec("lasso", l1=0.1).build(400, seed=0)
    with torch.no_grad():
        model.linear.weight.fill_(0.5)
    xb, yb = torch.zeros(0, 400), torch.zeros(0)  # an empty Poisson batch: noise + penalty
    priv = SampledGaussianGradient(
        clip=2.0, noise_std=1.5, sample_rate=0.1, divisor=4.0, rng=np.random.default_rng(3)
    )
    grads, _, _ = priv.gradient(model, xb, yb, None)
    w = grads[0].flatten() - 0.1  # d|w|/dw = 1 for w > 0, times l1 = 0.1
    assert float(w.mean()) == pytest.approx(0.0, abs=0.1)
    assert float(w.std()) == pytest.approx(1.5 * 2.0 / 4.0, rel=0.1)


def test_poisson_batches_have_the_expected_size():
    priv = SampledGaussianGradient(
        clip=1.0, noise_std=1.0, sample_rate=0.2, divisor=1, rng=np.random.default_rng(0)
    )
    X, y = np.zeros((1000, 3), np.float32), np.zeros(1000, np.float32)
    sizes = [len(b) for _, b in priv.batches(X, y, 200)]
    assert np.mean(sizes) == pytest.approx(200, rel=0.03)
    assert len(set(sizes)) > 5  # sizes vary: Poisson, not fixed batches


def test_central_shares_sum_to_the_full_noise(small_synthetic):
    algo = make_algorithm(
        "fedadam", update="gradient", rounds=4, local_steps=1, batch_size=16, server_lr=0.01
    )
    eng = build_engine(small_synthetic, SPEC, algo, make_rule("mean"), 0)
    plan = make_private(
        eng, PrivacyConfig("central", 3.0), rule_name="mean", model_name="mlp", noise_seed=0
    )
    k = len(eng.participants)
    sigmas = {m.noise_multiplier for m in plan.mechanisms.values()}
    assert len(sigmas) == 1  # one mechanism, the aggregate's
    stds = [p.node.private.noise_std for p in eng.participants]
    assert sum(s**2 for s in stds) == pytest.approx(sigmas.pop() ** 2)  # shares add up
    assert all(s == pytest.approx(stds[0]) for s in stds)
    # One update alone carries 1/sqrt(K) of the noise: it reveals more than the aggregate.
    upd = plan.report(eng.participants[0].name, 4)
    assert upd["update_epsilon_spent"] > upd["epsilon_spent"]
    assert plan.shares[eng.participants[0].name] == pytest.approx(1 / math.sqrt(k))
    # A robust rule is not a sum: each org adds the full noise, guarantee per update.
    eng2 = build_engine(small_synthetic, SPEC, algo, make_rule("median"), 0)
    plan2 = make_private(eng2, PrivacyConfig("central", 3.0), rule_name="median", model_name="mlp")
    assert set(plan2.shares.values()) == {1.0}
    assert "per update" in plan2.guarantee


def test_noise_without_a_seed_comes_from_os_entropy(small_synthetic):
    algo = make_algorithm("fedavg", rounds=1, local_steps=2, batch_size=16)
    finals = []
    for _ in range(2):
        eng = build_engine(small_synthetic, SPEC, algo, make_rule("mean"), 0)
        make_private(eng, PrivacyConfig("local", 5.0), rule_name="mean", model_name="mlp")
        finals.append(eng.run().global_params)
    assert not np.array_equal(finals[0], finals[1])  # the public task seed fixes no noise


def _cfg(privacy, training=None, **extra):
    raw = {
        "data": {"source": "synthetic", "rows": 240, "features": 12},
        "training": {
            "methods": ["fedavg"],
            "rounds": 50,
            "local_steps": 10,
            "batch_size": 16,
            **(training or {}),
        },
        "privacy": privacy,
        **extra,
    }
    return ExperimentConfig.from_dict(raw, source="t.toml")


def test_config_refusals_name_the_fields():
    with pytest.raises(ConfigError, match=r"t\.toml: \[privacy\] needs epsilon"):
        _cfg({"mode": "local"})
    with pytest.raises(ConfigError, match=r"\[privacy\] mode must be one of"):
        _cfg({"mode": "both", "epsilon": 1})
    with pytest.raises(ConfigError, match=r"needs \[training\] update = 'gradient'"):
        _cfg({"mode": "central", "epsilon": 1})
    with pytest.raises(ConfigError, match="not 'matswarm'"):
        _cfg({"mode": "local", "epsilon": 1}, {"methods": ["matswarm"]})
    with pytest.raises(ConfigError, match=r"\[model\] name = 'rnn'"):
        _cfg({"mode": "local", "epsilon": 1}, model={"name": "rnn"})
    with pytest.raises(ConfigError, match="unknown key 'eps'"):
        _cfg({"mode": "local", "epsilon": 1, "eps": 2})
    with pytest.raises(ConfigError, match=r"\[training\] batch_size = 128 must be below"):
        _cfg({"mode": "local", "epsilon": 1}, {"batch_size": 128}).check_privacy_budget({"a": 80})
    cfg = _cfg({"mode": "local", "epsilon": 1.0, "noise_multiplier": 0.7})
    with pytest.raises(ConfigError) as exc:
        cfg.check_privacy_budget({"org1": 80, "org2": 80, "org3": 80})
    msg = str(exc.value)
    assert "t.toml" in msg and "[privacy] epsilon = 1.0" in msg and "exhausted at round" in msg
    assert "[training] rounds = 50" in msg and "noise_multiplier" in msg
    # Calibrated (no fixed sigma), the same budget covers every round.
    _cfg({"mode": "local", "epsilon": 1.0}).check_privacy_budget({"a": 80, "b": 80})


def test_a_round_beyond_the_plan_is_refused(small_synthetic):
    algo = make_algorithm("fedavg", rounds=2, local_steps=2, batch_size=16)
    eng = build_engine(small_synthetic, SPEC, algo, make_rule("mean"), 0)
    make_private(eng, PrivacyConfig("local", 5.0), rule_name="mean", model_name="mlp")
    eng.run()
    with pytest.raises(BudgetError, match="beyond the 2 rounds"):
        eng.run_round(3)


@pytest.mark.parametrize(
    ("mode", "rule", "update", "attested"),
    [
        ("local", "mean", "delta", False),
        ("local", "mean", "delta", True),  # the enclave's quote covers the DP training code
        ("central", "mean", "gradient", False),
        ("central", "geomed", "gradient", False),
    ],
)
def test_private_task_through_the_trust_layer(
    small_synthetic, tmp_path, mode, rule, update, attested
):
    rounds = 2
    algo = make_algorithm(
        "fedavg", rounds=rounds, local_steps=3, batch_size=16, update=update, server_lr=0.1
    )
    cons = Consortium.embedded(tmp_path, small_synthetic.org_names, durable=False)
    try:
        priv = PrivacyConfig(mode, 4.0, clip=0.5)
        eng, spec, task_id, plan = _trusted_private(
            cons, small_synthetic, algo, rule, priv, attested
        )
        eng.run()
        cid, _card = finish_task(
            cons,
            spec,
            task_id,
            eng,
            model=SPEC.build(small_synthetic.schema.n_features),
            extra_card={"privacy": plan.summary(rounds)},
        )
        first = cons.identities[spec.participants[0]]
        report = verify_task(cons.ledger, cons.store, task_id, identity=first)
        assert report.ok, first_failure_line(report)
        directory = {n: i.public for n, i in cons.identities.items()}
        reports, problems = audit_reports(cons.ledger, cons.store, task_id, spec, directory)
        assert problems == []
        assert len(reports) == rounds * len(small_synthetic.org_names)
        for rep in reports:
            assert rep.epsilon_spent == pytest.approx(
                plan.mechanisms[rep.org].epsilon_after(rep.round)
            )
            assert rep.epsilon_spent <= 4.0
        if mode == "central" and rule == "mean":
            # An org that anchors an understated spend is caught by the audit.
            org = spec.participants[1]
            agent = eng.hooks.agents[org]
            doc = plan.report(org, 1) | {"epsilon_spent": 0.01}
            agent.batch = None  # send on its own, outside a round's batch
            agent.report(1, REPORT_KIND, json.dumps(doc).encode())
            _, problems = audit_reports(cons.ledger, cons.store, task_id, spec, directory)
            assert len(problems) == 1 and "[replay]" in problems[0]  # a second round-1 report
            # ... and on its own, the understated claim is what the audit names.
            cfg = spec.build_privacy()
            problems = _check_document(doc, org, 1, cfg, 3)
            assert len(problems) == 1 and "claims epsilon 0.01" in problems[0]
        _, stored = read_archive(cons.store.get(cid))
        assert stored["privacy"]["mode"] == mode
        assert stored["privacy"]["epsilon_per_round"][-1] <= 4.0
        assert stored["ledger"]["reports"]
        assert json.loads(spec.to_json())["privacy"]["mode"] == mode
    finally:
        cons.close()


def _trusted_private(cons, ds, algo, rule, priv, attested=False):
    """A private engine (reproducible noise) with the trust layer attached, spec pinning it."""
    from matswarm.protocol.consortium import TrustSettings, trusted_engine

    eng = build_engine(ds, SPEC, algo, make_rule(rule), 0)
    plan = make_private(eng, priv, rule_name=rule, model_name="mlp", noise_seed=0)
    eng, spec, task_id = trusted_engine(
        eng,
        cons,
        model_spec=SPEC,
        algorithm=algo,
        rule=make_rule(rule),
        seed=0,
        schema=ds.schema.to_dict(),
        settings=TrustSettings(attested_training=attested),
        privacy=priv.resolved(plan).to_dict(),
    )
    return eng, spec, task_id, plan


def test_spec_without_privacy_keeps_its_json():
    """Adding the privacy field must not change the hash of existing (non-private) specs."""
    from matswarm.protocol.spec import TaskSpec

    algo = make_algorithm("fedavg", rounds=1)

    spec = TaskSpec.for_run(
        "t", ["a", "b"], SPEC, algo, make_rule("mean"), 0, {"features": []}, "00" * 32
    )
    assert "privacy" not in json.loads(spec.to_json())
    assert TaskSpec.from_json(spec.to_json()) == spec


@pytest.mark.parametrize("rule", [*sorted(RULES), "nnm+geomed"])
def test_central_dp_runs_under_every_rule(rule):
    from matswarm.data import synthetic

    ds = synthetic.make_dataset(n_rows=7 * 40, n_features=8, n_orgs=7, n_test=20, seed=3)
    algo = make_algorithm(
        "fedavg", update="gradient", rounds=2, local_steps=1, batch_size=8, server_lr=0.1
    )
    try:
        built = make_rule(rule, f=1)
    except ValueError:  # a rule without an f
        built = make_rule(rule)
    eng = build_engine(ds, SPEC, algo, built, 0)
    plan = make_private(
        eng, PrivacyConfig("central", 2.0), rule_name=built.name, model_name="mlp", noise_seed=1
    )
    out = eng.run().global_params
    assert np.isfinite(out).all() and not np.array_equal(out, eng.run_state.initial_global)
    want = 1 / math.sqrt(7) if rule == "mean" else 1.0  # only a sum adds the shares up
    assert all(v == pytest.approx(want) for v in plan.shares.values())
