"""Batched transactions: one block for many orgs' own transactions, failures reported per call."""

from __future__ import annotations

import pytest
from eth_account import Account
from hexbytes import HexBytes

from matswarm.ledger import (
    BatchError,
    ChainIdMismatch,
    ContractRevert,
    Ledger,
    LedgerError,
    RoundPhase,
    TransactionRejected,
    TxResult,
)
from matswarm.ledger._abi import contract_abi
from matswarm.ledger.index import event_from_log

from .ledger_helpers import Consortium, h


def _commits(c: Consortium, task: bytes, rnd: int, n: int = 4) -> list:
    return [
        c.as_(org).tx.commit_update(task, rnd, h(f"u{rnd}-{i}"), f"bafy-u{rnd}-{i}")
        for i, org in enumerate(c.orgs[:n])
    ]


def test_a_batch_is_one_block_of_each_orgs_own_transactions(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=2)
    w3 = c.ledger.chain.w3
    before = c.ledger.chain.block_number()
    results = c.ledger.send_batch(_commits(c, task, 1))
    assert c.ledger.chain.block_number() == before + 1
    assert {r.block_number for r in results} == {before + 1}
    assert len({r.tx_hash for r in results}) == 4
    block = w3.eth.get_block(before + 1)
    assert [HexBytes(t).to_0x_hex() for t in block["transactions"]] == [r.tx_hash for r in results]
    for org, res in zip(c.orgs, results, strict=False):
        tx = w3.eth.get_transaction(res.tx_hash)
        assert tx["from"] == org.address  # signed by the org itself
        assert w3.eth.get_transaction_receipt(res.tx_hash)["status"] == 1
        ev = res.event("UpdateCommitted")
        assert ev is not None and ev.args["org"] == org.address
    # the last commitment closed the commit phase inside the same block
    assert results[-1].event("CommitsClosed") is not None
    info = c.ledger.round_info(task, 1)
    assert info.phase is RoundPhase.VOTE and len(info.commitments) == 4
    # block-wide log indices, as a node numbers them, and the index holds them all
    indices = [e.log_index for r in results for e in r.events]
    assert indices == sorted(set(indices))
    indexed = {(e.block_number, e.log_index) for e in c.ledger.events(task)}
    assert {(e.block_number, e.log_index) for r in results for e in r.events} <= indexed

    votes = [c.as_(org).tx.vote_global(task, 1, h("g1")) for org in c.orgs[:4]]
    results = c.ledger.send_batch(votes)
    deciding = [i for i, r in enumerate(results) if r.event("RoundFinalized")]
    assert deciding == [2]  # quorum ceil(8/3) = 3: the third vote in block order
    assert c.ledger.round_info(task, 1).final_hash == h("g1")
    assert c.ledger.task_info(task).current_round == 2
    # gas is per transaction, not cumulative over the block
    assert all(0 < r.gas_used < 200_000 for r in results)


def test_a_revert_inside_a_batch_names_its_reason_and_the_rest_is_mined(
    consortium: Consortium,
) -> None:
    c = consortium
    task = c.task(n=4)
    org0, org1, intruder = c.as_(c.orgs[0]), c.as_(c.orgs[1]), c.as_(c.outsider)
    intruder.preflight = False  # the second commit of org0 passes its pre-flight anyway
    calls = [
        org0.tx.commit_update(task, 1, h("a"), "bafy-a"),
        # valid against the parent block, reverted by the first call of the same block:
        # only the chain's own execution can tell why
        org0.tx.commit_update(task, 1, h("b"), "bafy-b"),
        intruder.tx.commit_update(task, 1, h("x"), "bafy-x"),
        org1.tx.commit_update(task, 1, h("c"), "bafy-c"),
    ]
    before = c.ledger.chain.block_number()
    with pytest.raises(BatchError) as err:
        c.ledger.send_batch(calls)
    e = err.value
    assert [i for i, _ in e.failures] == [1, 2]
    assert isinstance(e.first, ContractRevert) and e.first.reason == "already committed"
    outsider = e.outcomes[2]
    assert isinstance(outsider, ContractRevert) and outsider.reason == "sender not admitted"
    assert outsider.function == "commitUpdate"
    assert "already committed" in str(e) and "sender not admitted" in str(e)
    # reverted transactions are mined (status 0) in the same single block
    assert c.ledger.chain.block_number() == before + 1
    for fail in (e.outcomes[1], outsider):
        assert isinstance(fail, ContractRevert) and fail.tx_hash is not None
        assert c.ledger.chain.w3.eth.get_transaction_receipt(fail.tx_hash)["status"] == 0
    ok = [o for o in e.outcomes if isinstance(o, TxResult)]
    assert len(ok) == 2
    commitments = c.ledger.round_info(task, 1).commitments
    assert commitments[c.orgs[0].address].update_hash == h("a")  # the first one stands
    assert set(commitments) == {c.orgs[0].address, c.orgs[1].address}


def test_a_single_send_reports_the_revert_reason_without_preflight(
    consortium: Consortium,
) -> None:
    c = consortium
    task = c.task(n=4)
    led = c.as_(c.orgs[0])
    led.preflight = False
    led.commit_update(task, 1, h("a"), "bafy-a")
    with pytest.raises(ContractRevert, match="already committed") as err:
        led.commit_update(task, 1, h("b"), "bafy-b")
    assert err.value.tx_hash is not None


def test_the_chain_refuses_some_raw_transactions_and_mines_the_others(
    consortium: Consortium,
) -> None:
    c = consortium
    led = c.as_(c.orgs[0])
    chain = led.chain
    data = contract_abi().encode_call("updateOrg", (h("e"), h("x"), "m"))

    def raw(nonce: int, chain_id: int) -> bytes:
        tx = {
            "to": led.address,
            "data": data,
            "value": 0,
            "gas": 500_000,
            "nonce": nonce,
            "chainId": chain_id,
            "maxFeePerGas": 0,
            "maxPriorityFeePerGas": 0,
            "type": 2,
        }
        return bytes(c.orgs[0].sign_transaction(tx).raw_transaction)

    cid = led.expected_chain_id
    out = chain.send_raw_transactions([raw(0, cid), raw(1, cid + 1), raw(5, cid), raw(1, cid)])
    assert [type(o).__name__ for o in out][1:3] == ["TransactionRejected"] * 2
    assert isinstance(out[1], TransactionRejected) and "chain id" in str(out[1])
    assert out[0]["status"] == 1 and out[3]["status"] == 1
    assert out[0]["blockNumber"] == out[3]["blockNumber"]
    assert chain.next_nonce(c.orgs[0].address) == 2
    assert chain.send_raw_transactions([]) == []


def test_one_sender_twice_in_a_batch_gets_consecutive_nonces(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4)
    led = c.as_(c.orgs[0])
    nonce = led.chain.next_nonce(c.orgs[0].address)
    res = c.ledger.send_batch(
        [led.tx.record_rejection(task, 1, c.orgs[1].address, f"bad {i}") for i in range(3)]
    )
    assert len(res) == 3 and led.chain.next_nonce(c.orgs[0].address) == nonce + 3
    assert len(c.ledger.events(task, names=["UpdateRejected"])) == 3


def test_batch_object_sends_on_leaving_the_block(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4)
    before = c.ledger.chain.block_number()
    with c.ledger.batch() as batch:
        pending = [batch.add(call) for call in _commits(c, task, 1, n=2)]
        assert len(batch) == 2
        with pytest.raises(LedgerError, match="not been sent"):
            pending[0].result()
    assert all(p.done for p in pending)
    assert pending[0].result().block_number == pending[1].result().block_number == before + 1
    # an exception inside the block sends nothing
    with pytest.raises(RuntimeError), c.ledger.batch() as batch:
        batch.add(_commits(c, task, 1, n=3)[2])
        raise RuntimeError("abandon")
    assert c.ledger.chain.block_number() == before + 1
    # a batch kept across calls: failures come back through each pending call
    batch = c.ledger.batch()
    again = batch.add(c.as_(c.orgs[0]).tx.commit_update(task, 1, h("again"), "bafy"))
    fresh = batch.add(_commits(c, task, 1, n=3)[2])
    with pytest.raises(BatchError):
        batch.send()
    assert len(batch) == 0 and fresh.result().event("UpdateCommitted") is not None
    with pytest.raises(ContractRevert, match="already committed"):
        again.result()


def test_batch_checks_before_signing(consortium: Consortium, tmp_path) -> None:
    c = consortium
    task = c.task(n=4)
    other = Ledger.embedded(tmp_path / "other", Account.create())
    try:
        with pytest.raises(ValueError, match="another chain"):
            c.ledger.send_batch([other.tx.register_org(h("e"), h("x"), "m")])
        with pytest.raises(ValueError, match="another chain"):
            c.ledger.batch().add(other.tx.register_org(h("e"), h("x"), "m"))
    finally:
        other.close()
    with pytest.raises(LedgerError, match="no account"):
        c.ledger.send_batch([c.ledger.with_account(None).tx.close_round(task, 1)])
    wrong = c.as_(c.orgs[1])
    wrong.expected_chain_id += 1
    before = c.ledger.chain.block_number()
    with pytest.raises(ChainIdMismatch):
        c.ledger.send_batch([*_commits(c, task, 1, n=1), wrong.tx.close_round(task, 1)])
    assert c.ledger.chain.block_number() == before  # nothing was signed or sent
    assert c.ledger.chain.next_nonce(c.orgs[0].address) == 0


def test_preflight_in_a_batch_keeps_a_doomed_call_out(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4)
    intruder = c.as_(c.outsider)  # pre-flight on (the default)
    before = c.ledger.chain.block_number()
    with pytest.raises(BatchError) as err:
        doomed = intruder.tx.commit_update(task, 1, h("x"), "bafy-x")
        c.ledger.send_batch([*_commits(c, task, 1, n=1), doomed])
    fail = err.value.outcomes[1]
    assert isinstance(fail, ContractRevert) and fail.reason == "sender not admitted"
    assert fail.tx_hash is None  # never signed, never sent
    assert c.ledger.chain.block_number() == before + 1
    assert c.ledger.chain.next_nonce(c.outsider.address) == 0


# ----------------------------------------------------------- the fast paths agree with web3


def test_signing_gives_eth_accounts_bytes(consortium: Consortium) -> None:
    led = consortium.as_(consortium.orgs[0])
    data = contract_abi().encode_call("updateOrg", (h("e"), h("x"), "meta"))
    ours = led._sign(
        nonce=7, to=led.address, data=data, chain_id=1234, maxFeePerGas=9, maxPriorityFeePerGas=2
    )
    tx = {
        "to": led.address,
        "data": data,
        "value": 0,
        "gas": 6_000_000,
        "nonce": 7,
        "chainId": 1234,
        "maxFeePerGas": 9,
        "maxPriorityFeePerGas": 2,
        "type": 2,
    }
    assert ours == bytes(consortium.orgs[0].sign_transaction(tx).raw_transaction)


def test_calldata_events_and_views_decode_as_web3_does(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=1)
    c.ledger.send_batch(_commits(c, task, 1))
    c.ledger.send_batch([c.as_(o).tx.vote_global(task, 1, h("g")) for o in c.orgs[:4]])
    c.as_(c.orgs[0]).record_rejection(task, 1, c.orgs[1].address, "why")
    c.ledger.send_batch([c.as_(o).tx.vote_final_model(task, h("g"), True) for o in c.orgs[:3]])
    c.ledger.set_final_model(task, h("g"), "bafy-m")
    led, abi = c.ledger, contract_abi()
    samples = {
        "commitUpdate": [task, 1, h("u"), "bafy-ü"],
        "createTask": [[o.address for o in c.orgs[:3]], 2, h("s"), h("t"), h("a"), 3, 60],
        "proposeAdmission": [c.outsider.address, h("e"), h("x"), "meta"],
    }
    for fn, args in samples.items():
        assert abi.encode_call(fn, args) == HexBytes(led._contract.encode_abi(fn, args=args))
    logs = led.chain.get_logs(led.address, 0, led.chain.block_number())
    names = set()
    for log in logs:
        name, _ = abi.decode_event(log["topics"], log["data"])
        names.add(name)
        web3_event = getattr(led._contract.events, name)().process_log(log)
        assert led._decode(log) == event_from_log(name, web3_event)
    assert {"OrgAdmitted", "TaskCreated", "UpdateCommitted", "CommitsClosed"} <= names
    assert {"GlobalVoted", "RoundFinalized", "TaskCompleted", "UpdateRejected"} <= names
    assert {"FinalModelSet", "FinalModelVoted", "FinalModelDecided"} <= names
    views = {
        "getTask": [task],
        "getRound": [task, 1],
        "getParticipants": [task],
        "getOrg": [c.orgs[0].address],
        "getCommitment": [task, 1, c.orgs[0].address],
        "memberCount": [],
        "isAdmitted": [c.orgs[2].address],
    }
    for fn, args in views.items():
        web3_value = getattr(led._contract.functions, fn)(*args).call({"gasPrice": 0})
        ours = led._view(fn, *args)
        assert (list(ours) if isinstance(ours, tuple) else ours) == (
            list(web3_value) if isinstance(web3_value, tuple | list) else web3_value
        ), fn
    # the update hash is in storage, the content id only in the event
    assert led._view("getCommitment", task, 1, c.orgs[0].address) == h("u1-0")


def test_views_report_reverts_and_read_past_blocks(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4)
    block = c.ledger.chain.block_number()
    c.ledger.send_batch(_commits(c, task, 1))
    abi, chain, me, to = contract_abi(), c.ledger.chain, c.orgs[0].address, c.ledger.address
    data = abi.encode_call("getRound", (task, 1))
    now = abi.decode_output("getRound", chain.call(me, to, data))
    then = abi.decode_output("getRound", chain.call(me, to, data, block))
    assert (now[2], then[2]) == (4, 0)  # commits counter after / before the batch
    burn = abi.encode_call("voteGlobal", (task, 1, b"\0" * 32))
    with pytest.raises(ContractRevert, match="empty global hash"):
        chain.call(me, to, burn)


def test_the_index_takes_mined_blocks_directly_and_matches_a_rebuild(
    consortium: Consortium,
) -> None:
    c = consortium
    task = c.task(n=4, rounds=2)
    c.ledger.sync()
    index = c.ledger._index
    for rnd in (1, 2):
        c.ledger.send_batch(_commits(c, task, rnd))
        # appended from the receipts at once, no sync needed
        assert index.last_block == c.ledger.chain.block_number()
        c.ledger.send_batch([c.as_(o).tx.vote_global(task, rnd, h(f"g{rnd}")) for o in c.orgs[:4]])
    c.ledger.chain.advance_time(5)  # a block the index has not seen: extend must refuse
    assert index.last_block == c.ledger.chain.block_number() - 1
    assert not index.extend(c.ledger.chain.block_number() + 1, "0x00", "0x01", [])
    assert not index.extend(index.last_block + 1, "0xnot-the-parent", "0x01", [])
    seen = [(e.name, e.block_number, e.log_index, e.tx_hash, e.args) for e in c.ledger.events()]
    c.ledger.close()
    (c.path / "index.sqlite").unlink()
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (c.path / extra).unlink(missing_ok=True)
    c.ledger = Ledger.embedded(c.path, c.founder)
    rebuilt = [(e.name, e.block_number, e.log_index, e.tx_hash, e.args) for e in c.ledger.events()]
    assert rebuilt == seen
    assert sum(e[0] == "RoundFinalized" for e in seen) == 2
