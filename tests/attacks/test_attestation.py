"""Attested training: post-training manipulations are rejected and logged; label flipping is not
stopped (the SIMULATED enclave attests code and outputs, not honest data)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from matswarm.aggregation import make_rule
from matswarm.attacks import ByzantineParticipant, LabelFlip, make_attack, poison_dataset
from matswarm.evaluation import Evaluator
from matswarm.protocol.attestation import (
    AttestationHooks,
    JsonlRejectionLog,
    LedgerRejectionLog,
    MemoryRejectionLog,
    ProvenFaultyAware,
    Rejection,
    attest_engine,
)
from matswarm.runtime import build_engine

from .helpers import SPEC, gradient_algo

ROUNDS = 6


def attested(dataset, attack=None, rule="mean", rounds=ROUNDS, logs=(), byz="org1", **params):
    a = make_attack(attack) if isinstance(attack, str) else attack
    ds = poison_dataset(dataset, {byz: a}) if isinstance(a, LabelFlip) else dataset
    eng = build_engine(ds, SPEC, gradient_algo(rounds), make_rule(rule, **params), 0, task="t1")
    hooks = attest_engine(eng, logs=logs)
    if a is not None:
        i = [p.name for p in eng.participants].index(byz)
        eng.participants[i] = ByzantineParticipant(eng.participants[i], a)
    return eng, hooks


def test_clean_attested_run_equals_plain_run_bit_for_bit(small_synthetic):
    eng, hooks = attested(small_synthetic)
    run = eng.run()
    plain = build_engine(small_synthetic, SPEC, gradient_algo(ROUNDS), make_rule("mean"), 0)
    assert run.global_params.tobytes() == plain.run().global_params.tobytes()
    assert hooks.rejected == [] and hooks.accepted_count == 3 * ROUNDS


@pytest.mark.parametrize("attack", ["noise", "sign-flip", "alie", "ipm"])
def test_every_post_training_manipulation_is_rejected_and_logged(small_synthetic, tmp_path, attack):
    memory, jsonl = MemoryRejectionLog(), JsonlRejectionLog(tmp_path / "rejections.jsonl")
    eng, hooks = attested(small_synthetic, attack, logs=[memory, jsonl])
    run = eng.run()
    assert [(r.round, r.org, r.reason) for r in memory.entries] == [
        (t, "org1", "output_mismatch") for t in range(1, ROUNDS + 1)
    ]
    lines = [json.loads(x) for x in (tmp_path / "rejections.jsonl").read_text().splitlines()]
    assert [x["org"] for x in lines] == ["org1"] * ROUNDS and lines[0]["task"] == "t1"
    assert all(rec.participants == ("org2", "org3") for rec in run.history)
    assert hooks.accepted_count == 2 * ROUNDS


def test_label_flipping_is_not_stopped_by_attestation(small_synthetic, attacked_mse):
    eng, hooks = attested(small_synthetic, "label-flip", rounds=40)
    run = eng.run()
    assert hooks.rejected == []  # the quote over an update trained on flipped data is valid
    clean = attacked_mse(small_synthetic, None)
    assert Evaluator(small_synthetic, SPEC).evaluate(run.global_params).mse > 1.5 * clean


def test_forged_sample_count_missing_quote_and_swapped_data_are_rejected(small_synthetic):
    class InflateCount:
        def __init__(self, node):
            self.node, self.name = node, node.name

        n_samples = property(lambda self: self.node.n_samples)

        def train(self, *a):
            return self.node.train(*a)

        def craft(self, update, peers):
            return dataclasses.replace(update, n_samples=update.n_samples * 100)

    eng, hooks = attested(small_synthetic, rounds=1)
    eng.participants[0] = InflateCount(eng.participants[0])
    eng.participants[1] = eng.participants[1].node  # trains outside the enclave: no quote
    # org3 trains on other rows than the table it committed
    node3 = eng.participants[2].node
    node3.data = dataclasses.replace(node3.data, y=node3.data.y + 1.0)
    eng.participants[2].dataset_hash = "0" * 64  # what it claims to have read
    hooks.commitments["org3"] = "f" * 64  # what it committed
    with pytest.raises(ValueError, match="no updates"):
        eng.run_round(1)
    reasons = {r.org: r.reason for r in hooks.rejected}
    assert reasons == {
        "org1": "output_mismatch",
        "org2": "missing_quote",
        "org3": "input_mismatch",
    }


def test_proven_faults_lower_f_so_bulyan_stays_applicable():
    from matswarm.data import synthetic

    ds = synthetic.make_dataset(n_rows=280, n_features=6, n_orgs=7, n_test=40, seed=2)
    eng, hooks = attested(ds, "ipm", rule="bulyan", rounds=3, f=1)
    assert isinstance(eng.aggregator.rule, ProvenFaultyAware)
    run = eng.run()  # 6 accepted updates < 4f+3 = 7, but f drops to 0 after the proven fault
    assert len(hooks.rejected) == 3 and np.isfinite(run.global_params).all()
    # without a rejection (label flipping) f stays 1 and Bulyan keeps its full requirement
    eng2, hooks2 = attested(ds, "label-flip", rule="bulyan", rounds=2, f=1)
    eng2.run()
    assert hooks2.rejected == []


def test_ledger_log_adapter_calls_record_rejection():
    calls = []

    class FakeLedger:
        def record_rejection(self, task_id, round, org, reason):
            calls.append((task_id, round, org, reason))

    log = LedgerRejectionLog(FakeLedger(), "0x" + "ab" * 32, {"org1": "0x" + "11" * 20})
    log.record(Rejection("t1", 3, "org1", "output_mismatch"))
    # engine and contract both number rounds from 1
    assert calls == [("0x" + "ab" * 32, 3, "0x" + "11" * 20, "output_mismatch")]


def test_hooks_type_is_a_round_hooks(small_synthetic):
    eng, hooks = attested(small_synthetic)
    assert isinstance(eng.hooks, AttestationHooks) and eng.hooks is hooks
