"""Org-level central DP (DP-FedAvg): each org's whole round update clipped to L2 norm C plus
its noise share N(0, sigma^2 C^2 / K), the equal-weight mean, one Gaussian mechanism per round
(q = 1) accounted by Opacus; the refusals name the field."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant
from scipy.optimize import brentq
from scipy.stats import norm

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.experiments.config import ConfigError, ExperimentConfig
from matswarm.models import ModelSpec
from matswarm.privacy import PrivacyConfig, make_private
from matswarm.privacy.accounting import epsilon
from matswarm.privacy.dp import ClippedGaussianUpdate
from matswarm.runtime import build_engine

MODEL = ModelSpec("mlp")  # ~1.6k parameters on 8 features: enough coordinates for a std


@pytest.fixture(scope="module")
def seven_orgs():
    from matswarm.data import synthetic

    return synthetic.make_dataset(n_rows=7 * 40, n_features=8, n_orgs=7, n_test=20, seed=3)


def _algo(update: str, rounds: int = 2):
    if update == "gradient":
        return make_algorithm(
            "fedavg", update="gradient", rounds=rounds, local_steps=2, batch_size=8, server_lr=0.1
        )
    return make_algorithm("fedavg", rounds=rounds, local_steps=3, batch_size=8, lr=1e-2)


def test_clipping_bounds_the_norm_and_keeps_the_direction():
    rng = np.random.default_rng(0)
    clip = ClippedGaussianUpdate(clip=0.5, noise_std=0.0, rng=rng)
    big = rng.normal(size=5000).astype(np.float32) * 3
    out = clip(big)
    assert np.linalg.norm(out) == pytest.approx(0.5, rel=1e-9)
    b64 = big.astype(np.float64)
    np.testing.assert_allclose(out, b64 * (0.5 / np.linalg.norm(b64)), rtol=1e-12)
    small = np.full(4, 0.1, dtype=np.float32)  # norm 0.2 < clip: left as it is
    np.testing.assert_array_equal(clip(small), small.astype(np.float64))


@pytest.mark.parametrize("update", ["delta", "gradient"])
def test_org_update_is_the_clipped_update_plus_its_noise_share(seven_orgs, update):
    """Against the same orgs trained without DP: what leaves each org is clip(raw) + noise with
    noise std sigma * C / sqrt(K), reproduced from the org's own generator."""
    clip, k = 0.05, len(seven_orgs.orgs)
    raw_eng = build_engine(seven_orgs, MODEL, _algo(update), make_rule("equal-mean"), 0)
    eng = build_engine(seven_orgs, MODEL, _algo(update), make_rule("equal-mean"), 0)
    cfg = PrivacyConfig("central", 3.0, clip=clip, unit="org")
    plan = make_private(eng, cfg, rule_name="equal-mean", model_name="mlp", noise_seed=11)
    g = eng.run_state.global_params
    raw = [r.update_vector(g) for r in raw_eng.train_phase(1)]
    priv = [r.update_vector(g) for r in eng.train_phase(1)]
    sigma = next(iter(plan.mechanisms.values())).noise_multiplier
    stds = [p.update_noise.noise_std for p in eng.participants]
    assert stds == pytest.approx([sigma / math.sqrt(k)] * k)
    residuals = []
    for i, (r, p) in enumerate(zip(raw, priv, strict=True)):
        assert np.linalg.norm(r) > clip  # the raw update really is clipped
        clipped = r * (clip / np.linalg.norm(r))
        noise = np.random.default_rng([11, i, 0x5EC]).standard_normal(r.size)
        noise *= sigma * clip / math.sqrt(k)
        np.testing.assert_allclose(p, clipped + noise, rtol=0, atol=1e-6)
        assert np.linalg.norm(p - noise) <= clip * (1 + 1e-5)
        residuals.append(p - clipped)
    pooled = np.concatenate(residuals)
    assert pooled.std() == pytest.approx(sigma * clip / math.sqrt(k), rel=0.03)
    assert abs(pooled.mean()) < 4 * pooled.std() / math.sqrt(pooled.size)


def test_the_equal_weight_mean_carries_noise_sigma_c_over_k(seven_orgs):
    """Negligible updates (lr 1e-9): the aggregate is the noise alone, std sigma C / K."""
    algo = make_algorithm("fedavg", rounds=1, local_steps=1, batch_size=8, lr=1e-9)
    eng = build_engine(seven_orgs, MODEL, algo, make_rule("equal-mean"), 0)
    cfg = PrivacyConfig("central", 2.0, clip=0.3, unit="org")
    plan = make_private(eng, cfg, rule_name="equal-mean", model_name="mlp", noise_seed=5)
    g0 = eng.run_state.global_params.copy()
    step = eng.run().global_params.astype(np.float64) - g0
    sigma, k = next(iter(plan.mechanisms.values())).noise_multiplier, len(seven_orgs.orgs)
    assert step.std() == pytest.approx(sigma * 0.3 / k, rel=0.06)


def test_org_epsilon_is_the_library_s_and_near_the_exact_gaussian(seven_orgs):
    rounds = 12
    eng = build_engine(seven_orgs, MODEL, _algo("delta", rounds), make_rule("equal-mean"), 0)
    cfg = PrivacyConfig("central", 3.0, unit="org")
    plan = make_private(eng, cfg, rule_name="equal-mean", model_name="mlp", noise_seed=0)
    m = next(iter(plan.mechanisms.values()))
    assert (m.sample_rate, m.steps_per_round) == (1.0, 1)
    acc = RDPAccountant()
    for _ in range(rounds):  # one Gaussian mechanism on the sum per round
        acc.step(noise_multiplier=m.noise_multiplier, sample_rate=1.0)
    assert plan.epsilon_after(rounds)["org1"] == pytest.approx(acc.get_epsilon(1e-5), rel=1e-9)
    assert 2.9 < plan.epsilon_after(rounds)["org1"] <= 3.0
    # T Gaussian mechanisms with sigma compose exactly to one with sigma / sqrt(T) (mu-GDP,
    # mu = sqrt(T) / sigma; Balle & Wang 2018's exact delta(eps)). RDP is an upper bound on it;
    # PRV's numerical composition lands on it.
    mu = math.sqrt(rounds) / m.noise_multiplier

    def delta_of(e: float) -> float:
        return norm.cdf(-e / mu + mu / 2) - math.exp(e) * norm.cdf(-e / mu - mu / 2) - 1e-5

    exact = brentq(delta_of, 1e-6, 50)
    rdp = epsilon(m.noise_multiplier, 1.0, rounds, 1e-5, "rdp")
    prv = epsilon(m.noise_multiplier, 1.0, rounds, 1e-5, "prv")
    assert exact < rdp < 1.2 * exact
    assert prv == pytest.approx(exact, rel=0.01)
    # Report, model card and round line say which unit.
    doc = plan.report("org1", rounds)
    assert doc["unit"] == "org" and doc["steps"] == rounds and doc["sample_rate"] == 1.0
    assert "hides whether any one organisation took part" in doc["guarantee"]
    assert plan.summary(rounds)["unit"] == "org"
    assert "DP (central, org-level)" in plan.round_line(rounds)


def test_record_unit_is_left_out_of_the_spec_so_digests_stay():
    from matswarm.protocol.spec import TaskSpec

    legacy = {  # a record-level central dict as specs held it before the unit existed
        "mode": "central",
        "epsilon": 3.0,
        "delta": 1e-5,
        "clip": 1.0,
        "noise_multiplier": 1.2,
        "accountant": "rdp",
        "sample_rate": 0.05,
    }
    cfg = PrivacyConfig.from_dict(legacy)
    assert cfg.unit == "record" and cfg.to_dict() == legacy
    assert PrivacyConfig.from_dict(legacy | {"unit": "record"}) == cfg

    def spec(privacy):
        algo = make_algorithm("fedavg", rounds=1)
        s = TaskSpec.for_run("t", ["a", "b"], MODEL, algo, make_rule("mean"), 0, {}, "00" * 32)
        return TaskSpec(**{**s.__dict__, "privacy": privacy})

    assert spec(cfg.to_dict()).digest() == spec(legacy).digest()
    org = PrivacyConfig("central", 3.0, unit="org")
    assert org.to_dict()["unit"] == "org" and PrivacyConfig.from_dict(org.to_dict()) == org
    assert spec(org.to_dict()).digest() != spec(legacy).digest()


def test_org_level_refusals_name_the_field(seven_orgs):
    with pytest.raises(ValueError, match=r"\[privacy\] unit must be one of"):
        PrivacyConfig("central", 3.0, unit="row")
    with pytest.raises(ValueError, match=r"unit = 'org' needs mode = 'central'"):
        PrivacyConfig("local", 3.0, unit="org")
    with pytest.raises(ValueError, match=r"\[privacy\] sample_rate is the Poisson rate"):
        PrivacyConfig("central", 3.0, unit="org", sample_rate=0.1)
    cfg = PrivacyConfig("central", 3.0, unit="org")
    for rule in ("mean", "median", "nnm+geomed"):
        built = make_rule(rule, f=1) if "+" in rule else make_rule(rule)
        eng = build_engine(seven_orgs, MODEL, _algo("delta"), built, 0)
        with pytest.raises(ValueError, match=r"needs \[aggregation\] rule = 'equal-mean'") as exc:
            make_private(eng, cfg, rule_name=rule, model_name="mlp")
        assert "sample-count weights" in str(exc.value) and "robust rules" in str(exc.value)

    def toml(privacy, aggregation=None, training=None, **extra):
        raw = {
            "data": {"source": "synthetic", "rows": 240, "features": 12},
            "training": training or {"methods": ["fedavg"], "rounds": 5, "local_steps": 2},
            "aggregation": aggregation or {"rule": "equal-mean"},
            "privacy": privacy,
            **extra,
        }
        return ExperimentConfig.from_dict(raw, source="t.toml")

    org = {"mode": "central", "epsilon": 3, "unit": "org"}
    assert toml(org).privacy.unit == "org"  # delta updates are fine at org level
    assert toml(org, model={"name": "rnn"}).privacy.unit == "org"  # no per-sample gradients
    with pytest.raises(ConfigError, match=r"t\.toml: \[privacy\] unit = 'org' needs \[aggreg"):
        toml(org, {"rule": "mean"})
    with pytest.raises(ConfigError, match=r"\[contribution\] scores, thresholds and weighs"):
        toml(org, contribution={"method": "loo"})
    with pytest.raises(ConfigError, match="not 'matswarm'"):  # ring statistics leak rows
        toml(org, training={"methods": ["matswarm"], "rounds": 5})


def test_org_level_task_through_the_trust_layer_verifies(small_synthetic, tmp_path):
    """Spec pins unit and noise; verify replays the equal-weight mean and audits the reports."""
    from tests.privacy.test_dp import _trusted_private

    from matswarm.privacy.reports import audit_reports
    from matswarm.protocol.consortium import Consortium
    from matswarm.protocol.verify import first_failure_line, verify_task

    rounds = 2
    algo = make_algorithm("fedavg", rounds=rounds, local_steps=3, batch_size=16)
    cons = Consortium.embedded(tmp_path, small_synthetic.org_names, durable=False)
    try:
        priv = PrivacyConfig("central", 4.0, clip=0.5, unit="org")
        eng, spec, task_id, plan = _trusted_private(cons, small_synthetic, algo, "equal-mean", priv)
        eng.run()
        pinned = json.loads(spec.to_json())["privacy"]
        assert pinned["unit"] == "org" and pinned["sample_rate"] is None
        assert pinned["noise_multiplier"] == next(iter(plan.mechanisms.values())).noise_multiplier
        first = cons.identities[spec.participants[0]]
        report = verify_task(cons.ledger, cons.store, task_id, identity=first)
        assert report.ok, first_failure_line(report)
        directory = {n: i.public for n, i in cons.identities.items()}
        reports, problems = audit_reports(cons.ledger, cons.store, task_id, spec, directory)
        assert problems == [] and len(reports) == rounds * len(small_synthetic.org_names)
        assert {r.document["unit"] for r in reports} == {"org"}
        assert {r.document["steps"] for r in reports if r.round == 2} == {2}  # one per round
    finally:
        cons.close()
