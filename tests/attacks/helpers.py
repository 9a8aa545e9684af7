"""Small, fast federated set-ups for attack and attestation tests (gradient mode, 3 orgs)."""

from __future__ import annotations

from matswarm.aggregation import AggregationError, make_rule
from matswarm.algorithms import make_algorithm
from matswarm.attacks import ByzantineParticipant, DataAttack, make_attack, poison_dataset
from matswarm.evaluation import Evaluator
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine

SPEC = ModelSpec("mlp", hidden=8)


def gradient_algo(rounds: int = 40):
    return make_algorithm(
        "fedavg", update="gradient", server_lr=0.2, rounds=rounds, local_steps=2, batch_size=32
    )


def run_attacked(dataset, attack, rule="mean", rounds=40, seed=0, **rule_params):
    """Final test MSE of a run where org1 is Byzantine with ``attack`` (None = clean); a run
    whose model diverged (non-finite updates) counts as infinitely bad."""
    a = make_attack(attack) if isinstance(attack, str) else attack
    ds = poison_dataset(dataset, {"org1": a}) if isinstance(a, DataAttack) else dataset
    eng = build_engine(ds, SPEC, gradient_algo(rounds), make_rule(rule, **rule_params), seed)
    if a is not None:
        eng.participants[0] = ByzantineParticipant(eng.participants[0], a)
    try:
        eng.run()
    except AggregationError:
        return float("inf")
    return Evaluator(dataset, SPEC).evaluate(eng.run_state.global_params).mse
