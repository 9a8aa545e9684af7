"""The trust layer end to end: the same hashes as the plain run, and verify catches tampering."""

import os

import numpy as np
import pytest
from tests.trustflow.helpers import SPEC, run_trusted, trusted_task

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.protocol.verify import first_failure_line, verify_task
from matswarm.runtime import build_engine
from matswarm.store.cid import cid_from_digest


def test_trusted_run_has_the_plain_runs_hashes_and_verifies(trusted_run, small_synthetic):
    cons, eng, _, task_id = trusted_run
    plain = build_engine(
        small_synthetic,
        SPEC,
        make_algorithm("matswarm", rounds=3, local_steps=4, lr=1e-2, batch_size=32, gamma=0.5),
        make_rule("mean"),
        0,
    ).run()
    assert [r.global_hash for r in eng.run_state.history] == [r.global_hash for r in plain.history]
    ident = cons.identities["org2"]
    rep = verify_task(cons.ledger, cons.store, task_id, identity=ident)
    assert rep.ok, first_failure_line(rep)
    assert rep.rounds_verified == 3
    assert any("final model archive" in f.what and f.ok for f in rep.findings)


def test_without_a_key_encrypted_updates_cannot_be_recomputed(trusted_run):
    cons, _, _, task_id = trusted_run
    rep = verify_task(cons.ledger, cons.store, task_id)
    assert not rep.ok and "encrypted" in rep.first_failure.what


def _flip_byte(cons, cid: str, offset: int = 200) -> None:
    path = cons.store.path_of(cid)
    os.chmod(path, 0o644)
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


def test_flipped_byte_in_a_stored_update_fails_naming_round_and_org(trusted_run):
    cons, _, _, task_id = trusted_run
    c = cons.ledger.round_info(task_id, 2).commitments[cons.identities["org3"].evm_address]
    _flip_byte(cons, c.cid)
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    f = rep.first_failure
    assert f is not None and f.round == 2 and f.org == "org3", first_failure_line(rep)


def test_a_store_lacking_a_rounds_updates_says_so_instead_of_blaming_the_ledger(trusted_run):
    # An org that missed round 2 (killed, or late past the relay's deadline) never received
    # the others' updates: verify from its store must fail, and name the gap.
    cons, _, _, task_id = trusted_run
    commitments = cons.ledger.round_info(task_id, 2).commitments
    gone = [cons.identities[o].evm_address for o in ("org1", "org3")]
    for addr in gone:
        path = cons.store.path_of(commitments[addr].cid)
        os.chmod(path, 0o644)
        path.unlink()
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org2"])
    f = rep.first_failure
    assert f is not None and f.round == 2, first_failure_line(rep)
    assert "2 committed update(s) are not in this store: org1, org3" in f.what
    assert rep.rounds_verified == 1
    for addr in commitments:  # none left: "no valid update", with the same hint
        path = cons.store.path_of(commitments[addr].cid)
        if path.exists():
            os.chmod(path, 0o644)
            path.unlink()
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org2"])
    f = rep.first_failure
    assert f.what.startswith("no valid update") and "3 committed update(s)" in f.what


def test_flipped_byte_in_a_stored_global_model_fails_naming_round(trusted_run):
    cons, _, _, task_id = trusted_run
    final = cons.ledger.round_info(task_id, 1).final_hash
    _flip_byte(cons, cid_from_digest(final), offset=40)
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    f = rep.first_failure
    assert f is not None and f.round == 1 and "global model" in f.what


def test_flipped_byte_in_the_final_archive_fails(trusted_run):
    cons, _, _, task_id = trusted_run
    _flip_byte(cons, cons.ledger.task_info(task_id).final_model_cid, offset=300)
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    assert not rep.ok and "final model archive" in rep.first_failure.what


def test_clear_updates_verify_without_keys_and_enclave_quotes(small_synthetic, tmp_path):
    cons, eng, _, task_id = run_trusted(
        small_synthetic, tmp_path, algorithm="fedavg", encrypt=False, enclave=True, rounds=2
    )
    try:
        rep = verify_task(cons.ledger, cons.store, task_id)
        assert rep.ok, first_failure_line(rep)
        agent = eng.hooks.agents["org1"]
        assert set(agent.record.quotes) == {1, 2}
        from matswarm.trust import Quote

        q = Quote.from_json(cons.store.get(agent.record.quotes[2]))
        assert q.output_hash == eng.run_state.history[-1].global_hash
    finally:
        cons.close()


def test_tampered_update_is_rejected_and_recorded(small_synthetic, tmp_path):
    """An org whose stored envelope is corrupted before the others verify is dropped, the
    rejection is on the ledger, and the round still finalises on the honest aggregate."""
    from matswarm.protocol.trusted import OrgAgent

    original = OrgAgent.publish

    def corrupt_org3(self, update):
        cid = original(self, update)
        if self.name == "org3" and update.round == 2:
            path = self.store.path_of(cid)
            os.chmod(path, 0o644)
            data = bytearray(path.read_bytes())
            data[-5] ^= 0xFF
            path.write_bytes(bytes(data))
        return cid

    OrgAgent.publish = corrupt_org3
    try:
        cons, eng, _, task_id = run_trusted(
            small_synthetic, tmp_path, algorithm="fedavg", finish=False
        )
    finally:
        OrgAgent.publish = original
    try:
        assert eng.run_state.history[1].participants == ("org1", "org2")
        events = cons.ledger.events(task_id, names=["UpdateRejected"])
        assert len(events) == 3 and all(e.args["round"] == 2 for e in events)
        rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
        assert rep.ok, first_failure_line(rep)
    finally:
        cons.close()


def test_spec_round_trip_and_digest(trusted_run):
    from matswarm.protocol.spec import TaskSpec

    _, _, spec, _ = trusted_run
    again = TaskSpec.from_json(spec.to_json())
    assert again == spec and again.digest() == spec.digest()
    assert len(spec.train_code_sha256) == 64 and spec.rounds == 3


def test_global_blob_is_addressed_by_its_hash(trusted_run):
    cons, eng, _, task_id = trusted_run
    h = cons.ledger.round_info(task_id, 3).final_hash
    v = np.frombuffer(cons.store.get(cid_from_digest(h)), "<f4")
    assert np.array_equal(v, eng.run_state.global_params)


def test_unknown_task_is_an_error(trusted_run):
    cons, *_ = trusted_run
    rep = verify_task(cons.ledger, cons.store, b"\x01" * 32)
    assert not rep.ok and "task spec cannot be read" in rep.first_failure.what
    with pytest.raises(Exception, match="unknown task"):
        cons.ledger.task_info(b"\x01" * 32)


def _attested_run(ds, workdir, attack):

    from matswarm.attacks import ByzantineParticipant, make_attack, poison_dataset
    from matswarm.protocol.consortium import Consortium, TrustSettings

    if attack == "label-flip":
        ds = poison_dataset(ds, {"org3": make_attack("label-flip")})
    algo = make_algorithm("fedavg", rounds=3, local_steps=4, lr=1e-2, batch_size=32)
    cons = Consortium.embedded(workdir, ds.org_names)
    eng, _, task_id = trusted_task(
        cons, ds, algo, settings=TrustSettings(attested_training=True)
    )
    if attack != "label-flip":
        eng.participants[2] = ByzantineParticipant(eng.participants[2], make_attack(attack))
    eng.run()
    return cons, eng, task_id


@pytest.mark.parametrize("attack", ["sign-flip", "ipm"])
def test_attested_training_rejects_post_training_manipulation_on_the_ledger(
    small_synthetic, tmp_path, attack
):
    cons, eng, task_id = _attested_run(small_synthetic, tmp_path, attack)
    try:
        assert [r.participants for r in eng.run_state.history] == [("org1", "org2")] * 3
        events = cons.ledger.events(task_id, names=["UpdateRejected"])
        org3 = cons.identities["org3"].evm_address
        assert len(events) == 9  # each of 3 orgs rejects org3 in each of 3 rounds
        assert {e.args["org"] for e in events} == {org3}
        assert all("attestation output_mismatch" in e.args["reason"] for e in events)
        rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
        assert rep.ok, first_failure_line(rep)
    finally:
        cons.close()


def test_attestation_cannot_stop_label_flipping(small_synthetic, tmp_path):
    cons, eng, task_id = _attested_run(small_synthetic, tmp_path, "label-flip")
    try:
        assert all(r.participants == ("org1", "org2", "org3") for r in eng.run_state.history)
        assert cons.ledger.events(task_id, names=["UpdateRejected"]) == []
    finally:
        cons.close()


def test_a_refused_commitment_is_reported_and_votes_cover_what_was_mined(small_synthetic, tmp_path):
    """An org already has a commitment for the round on the ledger (its key used elsewhere, sent
    ahead with its vote on round 1): the vote-and-commit its agent queues is refused in the
    round's block, and the orgs' votes must cover the mined commitment (here: not in the store,
    so rejected), never the refused one."""
    from matswarm.ledger import ContractRevert
    from matswarm.protocol.consortium import Consortium
    from matswarm.store import compute_cid

    ds = small_synthetic
    cons = Consortium.embedded(tmp_path, ds.org_names)
    try:
        algo = make_algorithm("fedavg", rounds=2, local_steps=4, lr=1e-2, batch_size=32)
        eng, _, task_id = trusted_task(cons, ds, algo)
        eng.run_round(1)
        third = cons.identities[ds.org_names[2]]
        assert not cons.ledger.round_info(task_id, 1).finalized  # the votes wait for round 2
        cons.ledger.with_account(third.evm_account()).vote_and_commit(
            task_id,
            1,
            eng.run_state.history[0].global_hash,
            os.urandom(32),
            compute_cid(b"an update nobody stored"),
        )
        with pytest.raises(ContractRevert, match=r"already voted|already committed"):
            eng.run_round(2)
        report = verify_task(
            cons.ledger, cons.store, task_id, identity=cons.identities[ds.org_names[0]]
        )
        assert report.ok and report.rounds_verified == 2, first_failure_line(report)
    finally:
        cons.close()


def test_a_round_where_every_update_is_rejected_stops_with_the_rejections_on_the_ledger(
    small_synthetic, tmp_path
):
    from matswarm.attacks import ByzantineParticipant, make_attack
    from matswarm.protocol.consortium import Consortium, TrustSettings
    from matswarm.protocol.trusted import ProtocolError

    ds = small_synthetic
    cons = Consortium.embedded(tmp_path, ds.org_names)
    try:
        algo = make_algorithm("fedavg", rounds=2, local_steps=4, lr=1e-2, batch_size=32)
        eng, _, task_id = trusted_task(
            cons, ds, algo, settings=TrustSettings(attested_training=True)
        )
        for i, p in enumerate(eng.participants):  # every update manipulated after training
            eng.participants[i] = ByzantineParticipant(p, make_attack("sign-flip"))
        with pytest.raises(ProtocolError, match="no update survived verification"):
            eng.run_round(1)
        assert len(cons.ledger.commitments(task_id, 1)) == 3
        rejected = cons.ledger.events(task_id, ["UpdateRejected"])
        assert len(rejected) == 9  # each org recorded each of the three updates
        assert not cons.ledger.round_info(task_id, 1).finalized
    finally:
        cons.close()
