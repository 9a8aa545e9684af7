"""Contract semantics and adversarial cases on the embedded chain."""

from __future__ import annotations

import os

import pytest
from eth_account import Account
from hexbytes import HexBytes

from matswarm.ledger import (
    ChainIdMismatch,
    ContractRevert,
    Ledger,
    RoundPhase,
    TaskStatus,
    TransactionRejected,
    default_quorum,
)
from matswarm.ledger.compile import load_artifact

from .ledger_helpers import Consortium, h


def _commit_all(c: Consortium, task: bytes, rnd: int, n: int = 4) -> None:
    for i, org in enumerate(c.orgs[:n]):
        c.as_(org).commit_update(task, rnd, h(f"u{rnd}-{i}"), f"bafy-u{rnd}-{i}")


def _history_matches_the_contract(c: Consortium, task: bytes) -> None:
    """``Ledger.rounds`` (events only) says what the contract's storage says, round by round."""
    history = c.ledger.rounds(task)
    for r in range(1, c.ledger.task_info(task).rounds + 1):
        view = c.ledger.round_info(task, r)
        if r in history:
            assert history[r] == view, r
        else:
            assert view.phase is RoundPhase.NOT_OPENED and not view.commitments, r


def test_deployed_code_is_the_shipped_runtime(consortium: Consortium) -> None:
    code = consortium.ledger.chain.w3.eth.get_code(consortium.ledger.address)
    assert HexBytes(code) == HexBytes(load_artifact()["bytecode_runtime"])


# --------------------------------------------------------------------- identity


def test_unadmitted_sender_can_do_nothing(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    intruder = c.as_(c.outsider)
    attempts = [
        lambda: intruder.register_org(os.urandom(32), os.urandom(32), "me"),
        lambda: intruder.propose_admission(Account.create().address, h("a"), h("b"), "x"),
        lambda: intruder.vote_admission(c.orgs[0].address),
        lambda: intruder.create_task(
            [c.outsider.address],
            spec_hash=h("s"),
            train_code_hash=h("t"),
            agg_code_hash=h("a"),
            rounds=1,
            round_duration_s=10,
        ),
        lambda: intruder.commit_update(task, 1, h("forged"), "bafy-forged"),
        lambda: intruder.vote_global(task, 1, h("forged")),
        lambda: intruder.close_round(task, 1),
        lambda: intruder.record_rejection(task, 1, c.orgs[0].address, "spite"),
        lambda: intruder.set_final_model(task, h("m"), "bafy-m"),
    ]
    for attempt in attempts:
        with pytest.raises(ContractRevert, match="sender not admitted"):
            attempt()
    assert c.ledger.round_info(task, 1).commitments == {}


def test_forged_sender_reverts_on_chain_without_client_preflight(consortium: Consortium) -> None:
    """A client that skips our pre-flight still cannot get past the contract."""
    c = consortium
    task = c.task()
    raw = c.as_(c.outsider)
    raw.preflight = False
    before = c.ledger.chain.block_number()
    with pytest.raises(ContractRevert, match="sender not admitted") as err:
        raw.commit_update(task, 1, h("forged"), "bafy-forged")
    assert err.value.tx_hash is not None  # it was mined, with status 0
    assert c.ledger.chain.block_number() == before + 1
    assert c.ledger.round_info(task, 1).commitments == {}


def test_tampered_signature_changes_the_sender_and_is_rejected(consortium: Consortium) -> None:
    """Flipping a signature byte recovers a different, unadmitted (and unfunded) address."""
    c = consortium
    task = c.task()
    org = c.orgs[0]
    led = c.as_(org)
    data = led._contract.encode_abi("commitUpdate", args=[task, 1, h("u"), "bafy"])
    w3 = led.chain.w3
    tx = {
        "to": led.address,
        "data": data,
        "value": 0,
        "gas": 500_000,
        "nonce": w3.eth.get_transaction_count(org.address),
        "chainId": led.expected_chain_id,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        "type": 2,
    }
    raw = bytearray(org.sign_transaction(tx).raw_transaction)
    raw[-5] ^= 0x01  # inside s
    try:
        receipt = led.chain.send_raw_transaction(bytes(raw))
    except TransactionRejected:
        pass  # invalid signature or a nonce that does not match the recovered address
    else:
        assert receipt["status"] == 0
    assert org.address not in c.ledger.round_info(task, 1).commitments


# --------------------------------------------------------------------- admission


def test_admission_governance(consortium: Consortium) -> None:
    c = consortium
    members = c.ledger.members()
    assert members[0] == c.founder.address and len(members) == 6
    assert c.ledger.org_info(c.founder.address).founder
    # A non-founder's proposal needs ceil(2*6/3) = 4 approvals, its own included.
    cand = Account.create()
    ed, xk = os.urandom(32), os.urandom(32)
    a, b, d, e = (c.as_(o) for o in c.orgs[:4])
    assert a.propose_admission(cand.address, ed, xk, "lab-7") is False
    with pytest.raises(ContractRevert, match="already voted"):
        a.vote_admission(cand.address)
    with pytest.raises(ContractRevert, match="proposal already open"):
        b.propose_admission(cand.address, os.urandom(32), xk, "other keys")
    assert b.vote_admission(cand.address) is False
    assert d.vote_admission(cand.address) is False
    assert not c.ledger.is_admitted(cand.address)
    with pytest.raises(ContractRevert, match="sender not admitted"):
        c.as_(cand).register_org(ed, xk, "too early")
    assert e.vote_admission(cand.address) is True
    info = c.ledger.org_info(cand.address)
    assert (info.ed25519, info.x25519, info.metadata, info.founder) == (ed, xk, "lab-7", False)
    with pytest.raises(ContractRevert, match="no open proposal"):
        e.vote_admission(cand.address)
    with pytest.raises(ContractRevert, match="already admitted"):
        c.ledger.propose_admission(cand.address, ed, xk, "again")
    # admitted: it may now rotate its keys and take part
    new_ed = os.urandom(32)
    c.as_(cand).register_org(new_ed, xk, "lab-7 v2")
    assert c.ledger.org_info(cand.address).ed25519 == new_ed
    names = [ev.name for ev in c.ledger.events(names=["AdmissionVoted", "OrgAdmitted"])]
    assert names.count("AdmissionVoted") == 4 and names[-1] == "OrgAdmitted"


def test_withdrawn_admission_votes_do_not_carry_over(consortium: Consortium) -> None:
    c = consortium
    cand = Account.create()
    a, b, d, e = (c.as_(o) for o in c.orgs[:4])
    a.propose_admission(cand.address, h("wrong-ed"), h("x"), "typo")
    b.vote_admission(cand.address)
    d.vote_admission(cand.address)  # 3 of the 4 needed
    with pytest.raises(ContractRevert, match="not the proposer"):
        b.withdraw_admission(cand.address)
    a.withdraw_admission(cand.address)
    with pytest.raises(ContractRevert, match="no open proposal"):
        e.vote_admission(cand.address)
    # a fresh proposal starts from zero: old approvals are void, voters may vote again
    assert b.propose_admission(cand.address, h("right-ed"), h("x"), "lab-8") is False
    assert d.vote_admission(cand.address) is False
    assert a.vote_admission(cand.address) is False
    assert e.vote_admission(cand.address) is True
    assert c.ledger.org_info(cand.address).ed25519 == h("right-ed")


# --------------------------------------------------------------------- tasks


def test_task_creation_rules(consortium: Consortium) -> None:
    c = consortium
    parts = [o.address for o in c.orgs[:4]]
    common = dict(spec_hash=h("s"), train_code_hash=h("t"), agg_code_hash=h("a"), rounds=1)
    with pytest.raises(ContractRevert, match="quorum below 2/3"):
        c.ledger.create_task(parts, quorum=2, round_duration_s=5, **common)
    with pytest.raises(ContractRevert, match="quorum above participants"):
        c.ledger.create_task(parts, quorum=5, round_duration_s=5, **common)
    with pytest.raises(ContractRevert, match="duplicate participant"):
        c.ledger.create_task([*parts[:3], parts[0]], round_duration_s=5, **common)
    with pytest.raises(ContractRevert, match="participant not admitted"):
        c.ledger.create_task([*parts[:3], c.outsider.address], round_duration_s=5, **common)
    with pytest.raises(ContractRevert, match="zero round duration"):
        c.ledger.create_task(parts, round_duration_s=0, **common)
    assert [default_quorum(n) for n in (1, 2, 3, 4, 5, 6, 15)] == [1, 2, 2, 3, 4, 4, 10]
    task = c.ledger.create_task(parts, round_duration_s=5, **common)
    info = c.ledger.task_info(task)
    assert info.quorum == 3 and info.participants == tuple(parts)
    assert info.issuer == c.founder.address and info.status is TaskStatus.ACTIVE
    # ids are derived by the contract: the same spec twice gives two tasks
    task2 = c.ledger.create_task(parts, round_duration_s=5, **common)
    assert task2 != task
    assert [t.task_id for t in c.ledger.find_task_by_spec(h("s"))] == [task, task2]
    assert c.ledger.find_task_by_spec(h("nothing")) == []


def test_replayed_commitment_is_rejected(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    org = c.as_(c.orgs[0])
    res = org.commit_update(task, 1, h("u0"), "bafy-u0")
    with pytest.raises(ContractRevert, match="already committed"):
        org.commit_update(task, 1, h("u0"), "bafy-u0")
    with pytest.raises(ContractRevert, match="already committed"):
        org.commit_update(task, 1, h("other"), "bafy-other")
    with pytest.raises(ContractRevert, match="round not open"):
        org.commit_update(task, 2, h("u1"), "bafy-u1")
    # the very same signed bytes again: the node refuses the reused nonce
    tx = c.ledger.chain.w3.eth.get_transaction(res.tx_hash)
    assert tx["nonce"] == 0
    info = c.ledger.round_info(task, 1)
    assert info.commitments[c.orgs[0].address].update_hash == h("u0")
    assert info.commitments[c.orgs[0].address].tx_hash == res.tx_hash
    assert len(info.commitments) == 1


def test_raw_replay_of_a_mined_transaction_is_refused(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    org = c.orgs[0]
    led = c.as_(org)
    data = led._contract.encode_abi("commitUpdate", args=[task, 1, h("u"), "bafy"])
    tx = {
        "to": led.address,
        "data": data,
        "value": 0,
        "gas": 500_000,
        "nonce": 0,
        "chainId": led.expected_chain_id,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        "type": 2,
    }
    raw = org.sign_transaction(tx).raw_transaction
    assert led.chain.send_raw_transaction(raw)["status"] == 1
    with pytest.raises(TransactionRejected, match="nonce"):
        led.chain.send_raw_transaction(raw)


def test_vote_rules(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    voter = c.as_(c.orgs[0])
    with pytest.raises(ContractRevert, match="voting not open"):
        voter.vote_global(task, 1, h("g"))  # commits still open
    _commit_all(c, task, 1)
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).vote_global(task, 1, h("g"))  # admitted, but not in this task
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).commit_update(task, 1, h("x"), "bafy-x")
    voter.vote_global(task, 1, h("g"))
    with pytest.raises(ContractRevert, match="already voted"):
        voter.vote_global(task, 1, h("g"))
    with pytest.raises(ContractRevert, match="already voted"):
        voter.vote_global(task, 1, h("another"))
    info = c.ledger.round_info(task, 1)
    assert info.votes == {c.orgs[0].address: h("g")} and info.phase is RoundPhase.VOTE


def test_fewer_than_quorum_equal_votes_never_finalise(consortium: Consortium) -> None:
    c = consortium
    task = c.task()  # n=4, quorum 3
    _commit_all(c, task, 1)
    for org, g in zip(c.orgs[:4], ["A", "A", "B", "B"], strict=True):
        res = c.as_(org).vote_global(task, 1, h(g))
        assert res.event("RoundFinalized") is None
    info = c.ledger.round_info(task, 1)
    assert info.phase is RoundPhase.VOTE and info.final_hash is None
    assert c.ledger.task_info(task).current_round == 1
    assert c.ledger.events(task, names=["RoundFinalized"]) == []


def test_one_of_four_wrong_hash_still_finalises_the_right_one(consortium: Consortium) -> None:
    c = consortium
    task = c.task(rounds=2)
    _commit_all(c, task, 1)
    byz, *honest = c.orgs[:4]
    c.as_(byz).vote_global(task, 1, h("poisoned"))  # the wrong vote arrives first
    results = [c.as_(o).vote_global(task, 1, h("global-0")) for o in honest]
    # quorum is 3: the third honest vote decides, the poisoned one never counts
    assert [r.event("RoundFinalized") is not None for r in results] == [False, False, True]
    fin = results[2].event("RoundFinalized")
    assert fin is not None and fin.args["globalHash"] == "0x" + h("global-0").hex()
    info = c.ledger.round_info(task, 1)
    assert info.final_hash == h("global-0") and info.phase is RoundPhase.FINAL
    assert info.votes[byz.address] == h("poisoned") and len(info.votes) == 4
    assert c.ledger.task_info(task).current_round == 2
    assert c.ledger.round_info(task, 2).phase is RoundPhase.COMMIT


def test_full_task_then_final_model_upload_and_retrieval(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=3, rounds=2, spec_hash=h("perovskite-spec"))
    with pytest.raises(ContractRevert, match="task not completed"):
        c.ledger.set_final_model(task, h("model"), "bafy-model")
    for rnd in (1, 2):
        _commit_all(c, task, rnd, n=3)
        _history_matches_the_contract(c, task)  # round rnd in its vote phase
        for o in c.orgs[:3]:
            c.as_(o).vote_global(task, rnd, h(f"g{rnd}"))
    assert c.ledger.task_info(task).status is TaskStatus.COMPLETED
    _history_matches_the_contract(c, task)
    with pytest.raises(ContractRevert, match="not the issuer"):
        c.as_(c.orgs[0]).set_final_model(task, h("g2"), "bafy-model")
    with pytest.raises(ContractRevert, match="final model not accepted"):
        c.ledger.set_final_model(task, h("g2"), "bafy-model")
    for o in c.orgs[:2]:  # quorum 2 of 3 accept the last round's model
        c.as_(o).vote_final_model(task, h("g2"), True)
    with pytest.raises(ContractRevert, match="not the final round's model"):
        c.ledger.set_final_model(task, h("model"), "bafy-model")
    c.ledger.set_final_model(task, h("g2"), "bafy-model")
    with pytest.raises(ContractRevert, match="task not completed"):
        c.ledger.set_final_model(task, h("g2"), "bafy-model2")  # once only
    (found,) = c.ledger.find_task_by_spec(h("perovskite-spec"))
    assert found.status is TaskStatus.ARCHIVED
    assert (found.final_model_hash, found.final_model_cid) == (h("g2"), "bafy-model")
    names = [e.name for e in c.ledger.events(task)]
    assert names[0] == "TaskCreated" and names[-1] == "FinalModelSet"
    assert names.count("UpdateCommitted") == 6 and names.count("RoundFinalized") == 2


# --------------------------------------------------------------------- deadlines


def test_deadline_close_records_missing_orgs(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=1, duration=60)
    _commit_all(c, task, 1, n=3)  # orgs[3] never commits
    with pytest.raises(ContractRevert, match="deadline not reached"):
        c.ledger.close_round(task, 1)
    assert c.ledger.chain_time() <= c.ledger.round_info(task, 1).deadline
    c.ledger.chain.advance_time(61)
    assert c.ledger.chain_time() > c.ledger.round_info(task, 1).deadline
    with pytest.raises(ContractRevert, match="commit deadline passed"):
        c.as_(c.orgs[3]).commit_update(task, 1, h("late"), "bafy-late")
    # anyone admitted may close it, even an org outside the task
    res = c.as_(c.orgs[4]).close_round(task, 1)
    closed = res.event("CommitsClosed")
    assert closed is not None and closed.args["missing"] == [c.orgs[3].address]
    info = c.ledger.round_info(task, 1)
    assert info.phase is RoundPhase.VOTE and info.missing == (c.orgs[3].address,)
    assert set(info.commitments) == {o.address for o in c.orgs[:3]}
    _history_matches_the_contract(c, task)
    with pytest.raises(ContractRevert, match="commit phase over"):
        c.as_(c.orgs[3]).commit_update(task, 1, h("late"), "bafy-late")
    for o in c.orgs[:3]:
        c.as_(o).vote_global(task, 1, h("g-without-3"))
    assert c.ledger.round_info(task, 1).final_hash == h("g-without-3")
    assert c.ledger.task_info(task).status is TaskStatus.COMPLETED
    _history_matches_the_contract(c, task)


def test_deadline_with_too_few_commitments_aborts(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=2, duration=30)
    _commit_all(c, task, 1, n=2)  # 2 < quorum 3
    c.ledger.chain.advance_time(31)
    res = c.ledger.close_round(task, 1)
    aborted = res.event("TaskAborted")
    assert aborted is not None and aborted.args["reason"] == "too few commitments"
    assert c.ledger.task_info(task).status is TaskStatus.ABORTED
    assert c.ledger.round_info(task, 1).phase is RoundPhase.FAILED
    _history_matches_the_contract(c, task)
    with pytest.raises(ContractRevert, match="task not active"):
        c.as_(c.orgs[2]).commit_update(task, 1, h("x"), "bafy-x")


def test_vote_deadline_without_quorum_aborts(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=1, duration=30)
    _commit_all(c, task, 1)
    c.as_(c.orgs[0]).vote_global(task, 1, h("A"))
    c.as_(c.orgs[1]).vote_global(task, 1, h("B"))
    c.ledger.chain.advance_time(31)
    with pytest.raises(ContractRevert, match="vote deadline passed"):
        c.as_(c.orgs[2]).vote_global(task, 1, h("A"))
    _history_matches_the_contract(c, task)  # voting, two votes
    res = c.ledger.close_round(task, 1)
    aborted = res.event("TaskAborted")
    assert aborted is not None and aborted.args["reason"] == "no quorum on global hash"
    _history_matches_the_contract(c, task)


def test_rejection_records(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    _commit_all(c, task, 1)
    reporter = c.as_(c.orgs[1])
    reporter.record_rejection(task, 1, c.orgs[2].address, "attestation quote: bad signature")
    with pytest.raises(ContractRevert, match="org not a participant"):
        reporter.record_rejection(task, 1, c.orgs[4].address, "not in task")
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).record_rejection(task, 1, c.orgs[2].address, "outsider")
    with pytest.raises(ContractRevert, match="round not opened"):
        reporter.record_rejection(task, 5, c.orgs[2].address, "future")
    (ev,) = c.ledger.events(task, names=["UpdateRejected"])
    assert ev.args["org"] == c.orgs[2].address and ev.args["reporter"] == c.orgs[1].address
    assert ev.args["reason"] == "attestation quote: bad signature" and ev.args["round"] == 1


# --------------------------------------------------------------------- chain id


def test_client_refuses_transactions_for_another_chain_id(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    chain = c.ledger.chain
    wrong = Ledger(chain, c.ledger.address, c.orgs[0], chain_id=chain.chain_id + 1)
    head = chain.block_number()
    with pytest.raises(ChainIdMismatch, match="refusing to send") as err:
        wrong.commit_update(task, 1, h("u"), "bafy-u")
    assert (err.value.expected, err.value.actual) == (chain.chain_id + 1, chain.chain_id)
    assert chain.block_number() == head  # nothing was sent
    assert chain.w3.eth.get_transaction_count(c.orgs[0].address) == 0
    wrong.close()


def test_embedded_node_rejects_a_transaction_signed_for_another_chain(
    consortium: Consortium,
) -> None:
    c = consortium
    task = c.task()
    led = c.as_(c.orgs[0])
    data = led._contract.encode_abi("commitUpdate", args=[task, 1, h("u"), "bafy"])
    tx = {
        "to": led.address,
        "data": data,
        "value": 0,
        "gas": 500_000,
        "nonce": 0,
        "chainId": led.expected_chain_id + 1,
        "maxFeePerGas": 0,
        "maxPriorityFeePerGas": 0,
        "type": 2,
    }
    with pytest.raises(TransactionRejected, match="invalid chain id"):
        led.chain.send_raw_transaction(c.orgs[0].sign_transaction(tx).raw_transaction)
    assert c.ledger.round_info(task, 1).commitments == {}


def test_arguments_are_checked_at_the_boundary(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    org = c.as_(c.orgs[0])
    with pytest.raises(ValueError, match="update_hash must be 32 bytes"):
        org.commit_update(task, 1, b"short", "bafy")
    with pytest.raises(ValueError, match="cid is 129 bytes"):
        org.commit_update(task, 1, h("u"), "b" * 129)
    with pytest.raises(ValueError, match="metadata is 257 bytes"):
        org.register_org(h("e"), h("x"), "m" * 257)
    org.commit_update(task, 1, "0x" + h("u").hex(), "b" * 128)  # hex accepted, bound inclusive
    assert c.ledger.round_info(task, 1).commitments[c.orgs[0].address].cid == "b" * 128


def test_participant_checks_name_the_first_failing_rule(consortium: Consortium) -> None:
    """Admitted, then a known task, then a participant: the reason names the first that fails
    (the contract decides on one lookup for participants, and on the rest only to explain)."""
    c = consortium
    task = c.task(n=2)
    member, outsider = c.as_(c.orgs[3]), c.as_(c.outsider)
    for fn in (
        lambda led, t: led.commit_update(t, 1, h("u"), "bafy"),
        lambda led, t: led.vote_global(t, 1, h("g")),
        lambda led, t: led.record_rejection(t, 1, c.orgs[0].address, "x"),
    ):
        with pytest.raises(ContractRevert, match="sender not admitted"):
            fn(outsider, h("no such task"))
        with pytest.raises(ContractRevert, match="unknown task"):
            fn(member, h("no such task"))
        with pytest.raises(ContractRevert, match="not a participant"):
            fn(member, task)


def test_reports_are_anchored_per_participant_kind_and_round(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    a, b = c.as_(c.orgs[0]), c.as_(c.orgs[1])
    a.record_report(task, 1, "dp-epsilon", h("eps-a-1"), "bafy-a1")
    b.record_report(task, 1, "scores", h("scores-b-1"), "bafy-b1")
    a.record_report(task, 0, "scores", h("scores-a-task"))
    reports = c.ledger.reports(task)
    assert [(r.reporter, r.round, r.kind) for r in reports] == [
        (c.orgs[0].address, 1, "dp-epsilon"),
        (c.orgs[1].address, 1, "scores"),
        (c.orgs[0].address, 0, "scores"),
    ]
    assert reports[0].digest == h("eps-a-1") and reports[0].cid == "bafy-a1"
    assert [r.reporter for r in c.ledger.reports(task, kind="scores", round=1)] == [
        c.orgs[1].address
    ]
    with pytest.raises(ContractRevert, match="not admitted"):
        c.as_(c.outsider).record_report(task, 1, "scores", h("x"))
    with pytest.raises(ContractRevert, match="not a participant"):
        c.as_(c.orgs[4]).record_report(task, 1, "scores", h("x"))
    with pytest.raises(ContractRevert, match="empty report digest"):
        a.record_report(task, 1, "scores", bytes(32))
    with pytest.raises(ContractRevert, match="round beyond the task"):
        a.record_report(task, 10_000, "scores", h("x"))
    with pytest.raises(ValueError, match="kind"):
        a.record_report(task, 1, "k" * 33, h("x"))
