"""Integration test of the JSON-RPC backend against a real anvil node.

The node is started on 127.0.0.1 (a free port) and stopped by PID. The test is
skipped only when the anvil binary is absent; CI installs it (see the ledger
section of .ci/run) and sets $MATSWARM_ANVIL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from hexbytes import HexBytes

from matswarm.ledger import (
    ChainIdMismatch,
    ContractRevert,
    Ledger,
    RoundPhase,
    RpcChain,
    TaskStatus,
    TransactionRejected,
)
from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.ledger.compile import load_artifact

from .ledger_helpers import h

# Skip only when anvil is simply not installed. If $MATSWARM_ANVIL is set (as CI
# does) but wrong, the fixture fails instead, so CI can never skip silently.
pytestmark = pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV),
    reason="anvil not found: npm install --prefix ~/.cache/matswarm-anvil @foundry-rs/anvil@1.7.1",
)

CHAIN_ID = 31337


@pytest.fixture(scope="module")
def node() -> Iterator[AnvilNode]:
    if find_anvil() is None:
        pytest.fail(f"${ANVIL_ENV}={os.environ.get(ANVIL_ENV)!r} is not an anvil binary")
    with AnvilNode(chain_id=CHAIN_ID) as n:
        assert n.proc is not None
        pid = n.proc.pid
        yield n
    assert n.proc is None
    with pytest.raises(ProcessLookupError):  # stopped by PID and reaped
        os.kill(pid, 0)


def test_full_round_trip_on_anvil(node: AnvilNode, tmp_path: Path) -> None:
    chain = RpcChain(node.url)
    assert chain.chain_id == CHAIN_ID
    founder = Account.create()
    orgs = [Account.create() for _ in range(5)]
    for a in (founder, *orgs):
        chain.fund(a.address)  # anvil charges gas; a Besu free-gas network would not
    deployed = Ledger.deploy(chain, founder, index_path=tmp_path / "deploy-index.sqlite")
    code = chain.w3.eth.get_code(deployed.address)
    assert HexBytes(code) == HexBytes(load_artifact()["bytecode_runtime"])
    deployed.close()

    # a second client attaches by URL + address, pinning the chain id
    ledger = Ledger.connect(
        node.url, deployed.address, founder, chain_id=CHAIN_ID, index_path=tmp_path / "idx.sqlite"
    )
    try:
        for o in orgs:
            assert ledger.propose_admission(o.address, os.urandom(32), os.urandom(32), "lab")
        with pytest.raises(ContractRevert, match="sender not admitted"):
            ledger.with_account(Account.create()).register_org(h("e"), h("x"), "intruder")
        with pytest.raises(ContractRevert, match="quorum below 2/3"):
            ledger.create_task(
                [o.address for o in orgs[:4]],
                spec_hash=h("spec"),
                train_code_hash=h("t"),
                agg_code_hash=h("a"),
                rounds=1,
                round_duration_s=30,
                quorum=2,
            )
        task = ledger.create_task(
            [o.address for o in orgs[:4]],
            spec_hash=h("spec"),
            train_code_hash=h("t"),
            agg_code_hash=h("a"),
            rounds=2,
            round_duration_s=30,
        )
        views = [ledger.with_account(o) for o in orgs[:4]]

        # round 1: everyone commits, 1 of 4 votes a wrong hash, the right one wins
        for i, v in enumerate(views):
            v.commit_update(task, 1, h(f"u0-{i}"), f"bafy-u0-{i}")
        with pytest.raises(ContractRevert, match="commit phase over"):
            views[0].commit_update(task, 1, h("again"), "bafy-again")
        with pytest.raises(ContractRevert, match="not a participant"):
            ledger.with_account(orgs[4]).vote_global(task, 1, h("g0"))
        views[0].vote_global(task, 1, h("wrong"))
        with pytest.raises(ContractRevert, match="already voted"):
            views[0].vote_global(task, 1, h("g0"))
        results = [v.vote_global(task, 1, h("g0")) for v in views[1:]]
        assert results[-1].event("RoundFinalized") is not None
        assert ledger.round_info(task, 1).final_hash == h("g0")

        # the contract itself rejects what a careless client sends anyway
        raw = ledger.with_account(orgs[0])
        raw.preflight = False
        with pytest.raises(ContractRevert, match="round not open") as err:
            raw.commit_update(task, 1, h("again"), "bafy")  # round 1 is final
        assert err.value.tx_hash is not None

        # round 2: orgs[3] is silent; after the deadline the round goes on without it
        for i, v in enumerate(views[:3]):
            v.commit_update(task, 2, h(f"u1-{i}"), f"bafy-u1-{i}")
        with pytest.raises(ContractRevert, match="deadline not reached"):
            ledger.close_round(task, 2)
        chain.advance_time(31)
        ledger.close_round(task, 2)
        info = ledger.round_info(task, 2)
        assert info.phase is RoundPhase.VOTE and info.missing == (orgs[3].address,)
        for v in views[:3]:
            v.vote_global(task, 2, h("g1"))
        for v in views[:3]:
            v.vote_final_model(task, h("g1"), True)
        ledger.set_final_model(task, h("g1"), "bafy-model")
        (found,) = ledger.find_task_by_spec(h("spec"))
        assert found.status is TaskStatus.ARCHIVED and found.final_model_cid == "bafy-model"

        names = [e.name for e in ledger.events(task)]
        assert names.count("RoundFinalized") == 2 and names[-1] == "FinalModelSet"
        assert names.count("CommitsClosed") == 2  # one full, one by deadline
    finally:
        ledger.close()


def test_wrong_chain_id_refused_by_client_and_by_node(node: AnvilNode) -> None:
    chain = RpcChain(node.url)
    founder = Account.create()
    chain.fund(founder.address)
    ledger = Ledger.deploy(chain, founder)
    nonce = chain.w3.eth.get_transaction_count(founder.address)
    try:
        wrong = Ledger(chain, ledger.address, founder, chain_id=CHAIN_ID + 1)
        with pytest.raises(ChainIdMismatch):
            wrong.register_org(h("e"), h("x"), "meta")
        assert chain.w3.eth.get_transaction_count(founder.address) == nonce  # nothing sent
        wrong.close()
        # a transaction signed for another chain id is refused by the node too
        tx = {
            "to": ledger.address,
            "data": ledger._contract.encode_abi("updateOrg", args=[h("e"), h("x"), "m"]),
            "value": 0,
            "gas": 500_000,
            "nonce": nonce,
            "chainId": CHAIN_ID + 1,
            "maxFeePerGas": 10**10,
            "maxPriorityFeePerGas": 0,
            "type": 2,
        }
        with pytest.raises(TransactionRejected, match="chain id"):
            chain.send_raw_transaction(founder.sign_transaction(tx).raw_transaction)
    finally:
        ledger.close()


def test_in_process_trusted_task_on_anvil(node: AnvilNode, tmp_path: Path, small_synthetic) -> None:
    """The trusted round over JSON-RPC, where a block producer may order different senders'
    transactions freely: commitments are mined before any vote is sent, and the task verifies."""
    from tests.trustflow.helpers import trusted_task

    from matswarm.algorithms import make_algorithm
    from matswarm.protocol.consortium import Consortium
    from matswarm.protocol.trusted import org_metadata
    from matswarm.protocol.verify import verify_task
    from matswarm.store import LocalStore
    from matswarm.trust import OrgIdentity

    ds = small_synthetic
    chain = RpcChain(node.url)
    identities = {n: OrgIdentity.generate(n) for n in ds.org_names}
    accounts = [i.evm_account() for i in identities.values()]
    for a in accounts:
        chain.fund(a.address)
    ledger = Ledger.deploy(
        chain, accounts[0], [a.address for a in accounts], index_path=tmp_path / "idx.sqlite"
    )
    try:
        for ident in identities.values():
            pub = ident.public
            ledger.with_account(ident.evm_account()).register_org(
                bytes.fromhex(pub.ed25519), bytes.fromhex(pub.x25519), org_metadata(pub)
            )
        cons = Consortium(ledger, LocalStore(tmp_path / "store"), identities)
        algo = make_algorithm("fedavg", rounds=2, local_steps=3, lr=1e-2, batch_size=32)
        engine, _, task_id = trusted_task(cons, ds, algo)
        engine.run()
        rounds = ledger.rounds(task_id)
        assert [r.phase for r in rounds.values()] == [RoundPhase.FINAL, RoundPhase.FINAL]
        for r in rounds.values():  # every commitment mined in an earlier block than any vote
            first_vote = min(
                e.block_number
                for e in ledger.events(task_id, ["GlobalVoted"])
                if e.args["round"] == r.round
            )
            assert max(c.block_number for c in r.commitments.values()) < first_vote
        report = verify_task(ledger, cons.store, task_id, identity=identities[ds.org_names[0]])
        assert report.ok and report.rounds_verified == 2
    finally:
        ledger.close()


def test_embedded_anvil_chain_runs_a_trusted_task_and_keeps_it(small_synthetic, tmp_path):
    """The embedded chain on an anvil node this process owns: one block per round (each org's
    vote on the previous round with its commitment), the task verifies, and the chain's state
    survives closing and reopening the directory."""
    from tests.trustflow.helpers import trusted_task

    from matswarm.algorithms import make_algorithm
    from matswarm.ledger import AnvilChain
    from matswarm.protocol.consortium import Consortium
    from matswarm.protocol.verify import verify_task

    ds = small_synthetic
    cons = Consortium.embedded(tmp_path, ds.org_names, durable=False, backend="anvil")
    try:
        assert isinstance(cons.ledger.chain, AnvilChain)
        algo = make_algorithm("fedavg", rounds=3, local_steps=3, lr=1e-2, batch_size=32)
        engine, _, task_id = trusted_task(cons, ds, algo)
        head = cons.ledger.chain.block_number()
        engine.run()
        # rounds 1..3 plus the last round's votes, which need every commitment mined first
        assert cons.ledger.chain.block_number() - head == 4
        txs = {e.tx_hash for e in cons.ledger.events(task_id, ["GlobalVoted"])}
        assert len(txs) == 9 and len(cons.ledger.events(task_id, ["UpdateCommitted"])) == 9
        report = verify_task(
            cons.ledger, cons.store, task_id, identity=cons.identities[ds.org_names[0]]
        )
        assert report.ok and report.rounds_verified == 3
        address, events = cons.ledger.address, len(cons.ledger.events(task_id))
    finally:
        cons.close()
    first = cons.identities[ds.org_names[0]].evm_account()
    with Ledger.embedded(tmp_path / "ledger", first, backend="anvil") as again:
        assert again.address == address and len(again.events(task_id)) == events
        assert again.round_info(task_id, 3).phase is RoundPhase.FINAL
