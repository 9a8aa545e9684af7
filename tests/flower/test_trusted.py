"""A trusted task over Flower messages: every node commits and votes with its own account on a
real JSON-RPC chain (anvil), keeps its own store, receives the others' envelopes through the
relay; the round hashes still equal the in-process runtime's, and the ledger finalised them."""

from __future__ import annotations

import dataclasses
import os

import pytest
from tests.flower.helpers import inprocess_hashes, make_spec

from matswarm.ledger import Ledger, RpcChain
from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.protocol.trusted import org_metadata
from matswarm.runtime.flower.coordinator import OrgUnavailable
from matswarm.runtime.flower.localgrid import run_inprocess
from matswarm.runtime.flower.node import OrgService
from matswarm.runtime.flower.trust import NodeTrustConfig, protocol_spec_for
from matswarm.trust import PASSPHRASE_ENV, OrgIdentity

pytestmark = pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV),
    reason="anvil not found: npm install --prefix ~/.cache/matswarm-anvil @foundry-rs/anvil@1.7.1",
)
CHAIN_ID = 31337


@pytest.fixture(scope="module")
def consortium(org_files, tmp_path_factory):
    """Anvil (stopped by PID), a deployed contract, three registered orgs with keystores."""
    d = tmp_path_factory.mktemp("consortium")
    with AnvilNode(chain_id=CHAIN_ID) as node:
        chain = RpcChain(node.url)
        ids = {n: OrgIdentity.generate(n) for n in org_files}
        for ident in ids.values():
            chain.fund(ident.evm_address)
        founder = ids["org1"].evm_account()
        ledger = Ledger.deploy(chain, founder, [i.evm_address for i in ids.values()])
        keystores = {}
        for name, ident in ids.items():
            pub = ident.public
            ledger.with_account(ident.evm_account()).register_org(
                bytes.fromhex(pub.ed25519), bytes.fromhex(pub.x25519), org_metadata(pub)
            )
            keystores[name] = ident.save(d / f"{name}.keystore", "test-pass", scrypt_n=2**14)
        yield {"node": node, "ledger": ledger, "ids": ids, "keystores": keystores, "dir": d}
        ledger.close()


def _trusted_spec(consortium, spec):
    ps = protocol_spec_for(spec, round_duration_s=120)
    ids = consortium["ids"]
    task_id = consortium["ledger"].create_task(
        [ids[n].evm_address for n in spec.orgs],
        spec_hash=ps.digest(),
        train_code_hash=bytes.fromhex(ps.train_code_sha256),
        agg_code_hash=bytes.fromhex(ps.agg_code_sha256),
        rounds=ps.rounds,
        round_duration_s=ps.round_duration_s,
    )
    trust = {"task_id": task_id.hex(), "protocol_spec": ps.to_json().decode()}
    return dataclasses.replace(spec, trust=trust), task_id


def _services(consortium, files, tmp_path):
    c = consortium
    return {
        name: OrgService(
            name,
            path,
            trust=NodeTrustConfig(
                c["keystores"][name],
                c["node"].url,
                c["ledger"].address,
                CHAIN_ID,
                tmp_path / name / "store",
            ),
        )
        for name, path in files.items()
    }


def test_trusted_task_hashes_equal_inprocess_and_are_final_on_ledger(
    consortium, org_files, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec, task_id = _trusted_spec(consortium, make_spec(org_files, "fedavg", task="trusted"))
    expected = inprocess_hashes(org_files, spec)
    result, _ = run_inprocess(spec, _services(consortium, org_files, tmp_path), tmp_path)
    assert result.hashes == expected
    ledger = consortium["ledger"]
    for r, h in enumerate(expected, start=1):
        info = ledger.round_info(task_id, r)
        assert info.final_hash is not None and info.final_hash.hex() == h
        assert len(info.commitments) == 3


def test_node_refuses_trusted_task_whose_spec_differs_from_the_ledger(
    consortium, org_files, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec, _ = _trusted_spec(consortium, make_spec(org_files, "fedavg", task="tampered"))
    tampered = dataclasses.replace(spec, seed=spec.seed + 1)  # the relay changes the run
    with pytest.raises(OrgUnavailable, match="differs from the task recorded on the ledger"):
        run_inprocess(
            tampered, _services(consortium, org_files, tmp_path), tmp_path, join_timeout_s=30
        )
