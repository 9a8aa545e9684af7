"""A trusted task over Flower messages: every node commits and votes with its own account on a
real JSON-RPC chain (anvil), keeps its own store, receives the others' envelopes through the
relay; the round hashes still equal the in-process runtime's, and the ledger finalised them."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
from tests.flower.helpers import inprocess_hashes, make_consortium, make_spec, trusted_spec

from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.runtime.flower.coordinator import OrgUnavailable
from matswarm.runtime.flower.localgrid import InProcessCluster, run_inprocess
from matswarm.runtime.flower.node import OrgService
from matswarm.runtime.flower.trust import NodeTrustConfig
from matswarm.trust import PASSPHRASE_ENV

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
        ledger, ids, keystores = make_consortium(list(org_files), d, node.url)
        yield {"node": node, "ledger": ledger, "ids": ids, "keystores": keystores, "dir": d}
        ledger.close()


def _trusted_spec(consortium, spec, round_duration_s: int = 120):
    return trusted_spec(consortium["ledger"], consortium["ids"], spec, round_duration_s)


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


def _run(consortium, spec, files, tmp_path, task_id, **coordinator_kw):
    """Run ``spec`` over Flower messages with one trusted service per org in ``files``."""
    services = _services(consortium, files, tmp_path)
    return run_inprocess(spec, services, tmp_path, task_id=task_id.hex(), **coordinator_kw)


def test_trusted_task_hashes_equal_inprocess_and_are_final_on_ledger(
    consortium, org_files, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec, task_id = _trusted_spec(consortium, make_spec(org_files, "fedavg", task="trusted"))
    expected = inprocess_hashes(org_files, spec)
    result, _ = run_inprocess(
        spec, _services(consortium, org_files, tmp_path), tmp_path, task_id=task_id.hex()
    )
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
    spec, task_id = _trusted_spec(consortium, make_spec(org_files, "fedavg", task="tampered"))
    tampered = dataclasses.replace(spec, seed=spec.seed + 1)  # the relay changes the run
    with pytest.raises(OrgUnavailable, match="differs from the task recorded on the ledger"):
        _run(consortium, tampered, org_files, tmp_path, task_id, join_timeout_s=30)


def test_trusted_dropout_is_recorded_on_the_ledger(consortium, org_files, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec = make_spec(org_files, "fedavg", task="trusted-dropout", round_deadline_s=2.0)
    spec, task_id = _trusted_spec(consortium, spec, round_duration_s=10)
    with InProcessCluster(_services(consortium, org_files, tmp_path), tmp_path) as cluster:

        def notify(line: str) -> None:
            if "round 1 of 3 final" in line:
                cluster.grid.disconnect(cluster.node_ids["org3"])

        coordinator = cluster.coordinator(spec, task_id=task_id.hex(), notify=notify)
        # Nodes answer "aggregate" only after the 10 s on-chain commit window of a round with
        # org3 missing: the relay must wait for that, not just its own 2 s deadline + grace.
        coordinator.ledger_grace_s = 3.0
        result = coordinator.run()
    assert result.dropouts == {2: ["org3"], 3: ["org3"]}
    org3 = consortium["ids"]["org3"].evm_address
    for r, h in enumerate(result.hashes, start=1):
        info = consortium["ledger"].round_info(task_id, r)
        assert info.final_hash.hex() == h
        assert info.missing == (() if r == 1 else (org3,))


def test_restarted_node_rejoins_at_the_ledger_finalised_model(
    consortium, org_files, tmp_path, monkeypatch
):
    """org3's node process dies after round 1 and a fresh one (no memory of the task) comes
    back after round 2: it accepts round 3's start model only because the ledger finalised it."""
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec = make_spec(org_files, "fedavg", rounds=4, task="trusted-rejoin", round_deadline_s=2.0)
    spec, task_id = _trusted_spec(consortium, spec, round_duration_s=6)
    services = _services(consortium, org_files, tmp_path)
    fresh = _services(consortium, {"org3": org_files["org3"]}, tmp_path / "restarted")["org3"]
    with InProcessCluster(services, tmp_path) as cluster:

        def notify(line: str) -> None:
            if "round 1 of 4 final" in line:
                cluster.grid.disconnect(cluster.node_ids["org3"])
            if "round 2 of 4 final" in line:
                cluster.add("org3", fresh)

        result = cluster.coordinator(spec, task_id=task_id.hex(), notify=notify).run()
    assert [len(r["participants"]) for r in result.rounds] == [3, 2, 3, 3]
    assert result.dropouts == {2: ["org3"]}
    joined = fresh.tasks["trusted-rejoin"]
    assert (joined.latest_round, joined.agent.name) == (4, "org3")
    org3 = consortium["ids"]["org3"].evm_address
    assert org3 in consortium["ledger"].round_info(task_id, 3).commitments
    assert consortium["ledger"].round_info(task_id, 4).final_hash.hex() == result.hashes[-1]


class _CoordinatorCrash(RuntimeError):
    pass


def test_restarted_coordinator_resumes_after_the_last_finalised_round(
    consortium, org_files, tmp_path, monkeypatch
):
    """The coordinator dies after round 2; a new one (same run spec, same nodes) continues at
    round 3 with no lost or repeated round, and the four hashes are the uninterrupted run's."""
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec = make_spec(org_files, "fedavg", rounds=4, task="trusted-resume")
    expected = inprocess_hashes(org_files, spec)
    spec, task_id = _trusted_spec(consortium, spec)
    with InProcessCluster(_services(consortium, org_files, tmp_path), tmp_path) as cluster:

        def crash(line: str) -> None:
            if "round 2 of 4 final" in line:
                raise _CoordinatorCrash(line)

        first = cluster.coordinator(spec, task_id=task_id.hex(), notify=crash)
        with pytest.raises(_CoordinatorCrash):
            first.run()
        lines: list[str] = []
        second = cluster.coordinator(spec, task_id=task_id.hex(), notify=lines.append).run()
    assert [r["global_hash"] for r in first.result.rounds] == expected[:2]
    assert second.resumed_from == 2
    assert [r["round"] for r in second.rounds] == [3, 4]
    assert second.hashes == expected[2:]
    assert any("resuming after round 2" in line for line in lines)
    ledger = consortium["ledger"]
    assert [ledger.round_info(task_id, r).final_hash.hex() for r in (1, 2, 3, 4)] == expected


def _verify_as(consortium, org, store_dir, spec, task_id):
    """``matswarm verify`` from ``org``'s own store (plus the public spec and initial model)."""
    from matswarm.protocol.codec import encode_vector
    from matswarm.protocol.verify import verify_task
    from matswarm.store import LocalStore
    from matswarm.trust import OrgIdentity

    store = LocalStore(store_dir)
    store.put(spec.to_json())
    store.put(encode_vector(spec.initial_params()))
    ident = OrgIdentity.load(consortium["keystores"][org], "test-pass")
    return verify_task(consortium["ledger"], store, task_id, identity=ident)


@pytest.mark.parametrize("audit_rate", [0.0, 1.0])
def test_leader_verification_over_flower_has_the_plain_hashes_rotates_and_verifies(
    consortium, org_files, tmp_path, monkeypatch, audit_rate
):
    """Leader mode over Flower: the relay sends the envelopes to the leader, then its claim to
    the followers; each org leads exactly its round, followers check (or, at rate 1, audit)."""
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    name = f"trusted-leader-{int(audit_rate)}"
    spec = make_spec(org_files, "fedavg", task=name)
    expected = inprocess_hashes(org_files, spec)
    spec = dataclasses.replace(spec, verification={"mode": "leader", "audit_rate": audit_rate})
    spec, task_id = _trusted_spec(consortium, spec)
    services = _services(consortium, org_files, tmp_path)
    result, _ = run_inprocess(spec, services, tmp_path, task_id=task_id.hex())
    assert result.hashes == expected
    agents = {org: s.tasks[name].agent for org, s in services.items()}
    assert {org: sorted(a.record.claims) for org, a in agents.items()} == {
        "org1": [1],
        "org2": [2],
        "org3": [3],
    }
    for a in agents.values():  # a follower audits every round it follows at rate 1
        followed = [r for r in (1, 2, 3) if r not in a.record.claims]
        assert sorted(a.record.audits) == (followed if audit_rate else [])
    for r, h in enumerate(expected, start=1):
        info = consortium["ledger"].round_info(task_id, r)
        assert info.final_hash.hex() == h and len(info.votes) == 3
    report = _verify_as(consortium, "org2", tmp_path / "org2" / "store", spec, task_id)
    assert report.ok, report


def test_an_audit_over_flower_stops_a_leader_whose_model_is_not_the_aggregate(
    consortium, org_files, tmp_path, monkeypatch
):
    from matswarm.protocol import leader as leader_mod

    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    real_lead = leader_mod.lead_round

    def lead(agent, round_, previous_global, accepted, commitments):
        real_aggregate = agent.aggregate
        agent.aggregate = lambda r, g, u: real_aggregate(r, g, u) + np.float32(1e-3)
        try:
            return real_lead(agent, round_, previous_global, accepted, commitments)
        finally:
            del agent.aggregate

    monkeypatch.setattr(leader_mod, "lead_round", lead)
    spec = make_spec(org_files, "fedavg", rounds=1, task="trusted-lying-leader")
    spec = dataclasses.replace(spec, verification={"mode": "leader", "audit_rate": 1.0})
    spec, task_id = _trusted_spec(consortium, spec)
    with pytest.raises(RuntimeError, match=r"org1's aggregate was refused.*its model is not the"):
        _run(consortium, spec, org_files, tmp_path, task_id)
    assert consortium["ledger"].round_info(task_id, 1).final_hash is None  # only org1 voted


def test_a_node_refuses_leader_mode_with_secure_aggregation(
    consortium, org_files, tmp_path, monkeypatch
):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec = make_spec(org_files, "fedavg", task="trusted-leader-secagg")
    spec = dataclasses.replace(
        spec,
        verification={"mode": "leader"},
        secure_aggregation={"clip": 1.0, "threshold": None},
    )
    spec, task_id = _trusted_spec(consortium, spec)
    with pytest.raises((OrgUnavailable, ValueError), match="leader' with secure aggregation"):
        _run(consortium, spec, org_files, tmp_path, task_id, join_timeout_s=30)
