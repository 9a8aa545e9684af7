"""Leader verification: one rotating org aggregates, the others check its claim or audit it."""

import dataclasses

import numpy as np
import pytest
from tests.trustflow.helpers import SPEC, run_trusted

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.protocol import leader as leader_mod
from matswarm.protocol.leader import AggregateClaim, Verification, audits, leader_of
from matswarm.protocol.trusted import ProtocolError
from matswarm.protocol.verify import first_failure_line, verify_task
from matswarm.runtime import build_engine


def _plain_hashes(ds, rounds=3):
    algo = make_algorithm(
        "matswarm", rounds=rounds, local_steps=4, lr=1e-2, batch_size=32, gamma=0.5
    )
    return [r.global_hash for r in build_engine(ds, SPEC, algo, make_rule("mean"), 0).run().history]


def test_leader_mode_has_the_plain_hashes_rotates_and_verifies(small_synthetic, tmp_path):
    cons, eng, spec, task_id = run_trusted(small_synthetic, tmp_path, verification="leader")
    try:
        assert spec.verification == {"mode": "leader", "audit_rate": None}
        assert [r.global_hash for r in eng.run_state.history] == _plain_hashes(small_synthetic)
        agents = eng.hooks.agents
        # round r is led by the ((r - 1) mod n)-th participant: each signed exactly its claim
        led = {name: sorted(a.record.claims) for name, a in agents.items()}
        assert led == {p: [i + 1] for i, p in enumerate(spec.participants)}
        rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org2"])
        assert rep.ok, first_failure_line(rep)
        assert rep.rounds_verified == 3
    finally:
        cons.close()


def test_every_follower_auditing_still_agrees(small_synthetic, tmp_path):
    cons, eng, _, _ = run_trusted(
        small_synthetic, tmp_path, verification="leader", audit_rate=1.0, rounds=2, finish=False
    )
    try:
        assert [r.global_hash for r in eng.run_state.history] == _plain_hashes(small_synthetic, 2)
        audited = sorted(r for a in eng.hooks.agents.values() for r in a.record.audits)
        assert audited == [1, 1, 2, 2]  # two followers per round
    finally:
        cons.close()


def _lying_leader(monkeypatch, mutate):
    """Make every leader sign a claim altered by ``mutate`` (after it aggregated honestly)."""
    real = AggregateClaim.to_bytes

    def to_bytes(self):
        return real(mutate(self))

    monkeypatch.setattr(AggregateClaim, "to_bytes", to_bytes)


def test_an_audit_refuses_a_claimed_model_that_is_not_the_aggregate(
    small_synthetic, tmp_path, monkeypatch
):
    # the leader claims (and stores) a different model: only an audit can tell
    real_lead = leader_mod.lead_round

    def lead(agent, round_, previous_global, accepted, commitments):
        real_aggregate = agent.aggregate

        def aggregate(r, g, u):
            return real_aggregate(r, g, u) + np.float32(1e-3)

        agent.aggregate = aggregate
        try:
            return real_lead(agent, round_, previous_global, accepted, commitments)
        finally:
            del agent.aggregate

    monkeypatch.setattr(leader_mod, "lead_round", lead)
    with pytest.raises(ProtocolError, match="refuses org1's aggregate: its model is not the"):
        run_trusted(small_synthetic, tmp_path, verification="leader", audit_rate=1.0, rounds=1)


def test_a_follower_refuses_a_claim_that_drops_an_honest_update(
    small_synthetic, tmp_path, monkeypatch
):
    def drop_org3(claim):
        return dataclasses.replace(
            claim,
            inputs=tuple(i for i in claim.inputs if i[0] != "org3"),
            rejected=(*claim.rejected, ("org3", "bad_signature: made up")),
        )

    _lying_leader(monkeypatch, drop_org3)
    with pytest.raises(ProtocolError, match="it excludes org3's update, which verifies"):
        run_trusted(small_synthetic, tmp_path, verification="leader", audit_rate=0.0, rounds=1)


def test_a_follower_refuses_a_claim_whose_model_blob_is_not_the_claimed_hash(
    small_synthetic, tmp_path, monkeypatch
):
    _lying_leader(monkeypatch, lambda c: dataclasses.replace(c, result="00" * 32))
    with pytest.raises(ProtocolError, match="its model blob does not have the claimed hash"):
        run_trusted(small_synthetic, tmp_path, verification="leader", audit_rate=0.0, rounds=1)


def test_a_follower_refuses_a_claim_over_another_commitment(small_synthetic, tmp_path, monkeypatch):
    def swap(claim):
        o, _, cid = claim.inputs[0]
        return dataclasses.replace(claim, inputs=((o, "11" * 32, cid), *claim.inputs[1:]))

    _lying_leader(monkeypatch, swap)
    with pytest.raises(ProtocolError, match="its input from org1 is not the update org1 committed"):
        run_trusted(small_synthetic, tmp_path, verification="leader", audit_rate=0.0, rounds=1)


def test_leader_rotation_skips_orgs_that_did_not_commit():
    parts = ("a", "b", "c", "d")
    assert [leader_of(parts, r, {"a", "b", "c", "d"}) for r in (1, 2, 4, 5)] == list("abda")
    assert [leader_of(parts, r, {"b", "d"}) for r in (1, 2, 3)] == list("bdb")
    with pytest.raises(ValueError, match="no org committed"):
        leader_of(parts, 1, set())


def test_audit_draws_follow_the_rate_and_are_repeatable(small_synthetic, tmp_path):
    cons, eng, _, _ = run_trusted(
        small_synthetic, tmp_path, verification="leader", rounds=1, finish=False
    )
    try:
        agent = eng.hooks.agents["org2"]
        draws = [audits(agent, r, 0.25) for r in range(1, 801)]
        assert 0.19 < sum(draws) / len(draws) < 0.31
        assert draws == [audits(agent, r, 0.25) for r in range(1, 801)]
        assert not any(audits(agent, r, 0.0) for r in range(1, 50))
        assert all(audits(agent, r, 1.0) for r in range(1, 50))
    finally:
        cons.close()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"mode": "boss"}, "verification.mode must be one of"),
        ({"mode": "leader", "audit_rate": 1.5}, r"audit_rate must be in \[0, 1\]"),
        ({"mode": "every-org", "audit_rate": 0.5}, "applies to mode 'leader' only"),
        ({"mode": "leader", "rate": 0.5}, r"unknown field\(s\) \['rate'\]"),
    ],
)
def test_bad_verification_settings_name_the_field(fields, message):
    with pytest.raises(ValueError, match=message):
        Verification.from_dict(fields)


def test_default_verification_leaves_the_spec_json_unchanged():
    assert Verification().spec_fields() is None
    assert Verification("leader", 0.5).spec_fields() == {"mode": "leader", "audit_rate": 0.5}
