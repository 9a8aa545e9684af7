"""Secure aggregation over Flower messages: the coordinator only routes the protocol's bytes,
never receives a model, and every node's unmasked sum equals the in-process secure run."""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager

import pytest
from tests.flower.helpers import dataset_of, make_consortium, make_spec, trusted_spec

from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.privacy.secagg_round import TRANSCRIPT_KIND, enable_secure_aggregation
from matswarm.protocol.codec import decode_update
from matswarm.runtime import build_engine
from matswarm.runtime.flower.coordinator import OrgUnavailable
from matswarm.runtime.flower.localgrid import run_inprocess
from matswarm.runtime.flower.node import OrgService
from matswarm.runtime.flower.trust import NodeTrustConfig
from matswarm.trust import PASSPHRASE_ENV, Envelope, open_envelope

SECAGG = {"clip": 1.0, "threshold": None}
CHAIN_ID = 31337


def _reference(files, spec, attach):
    """Round hashes of ``spec`` run in one process, ``attach(engine)`` first (and its result)."""
    eng = build_engine(
        dataset_of(files), spec.model_spec(), spec.build_algorithm(), spec.build_rule(), spec.seed
    )
    attached = attach(eng)
    return [r.global_hash for r in eng.run().history], attached


@contextmanager
def _trusted_run(files, spec, tmp_path, service_of=None, round_duration_s=120):
    """Run ``spec`` as a trusted task over Flower on a fresh anvil chain; yields
    ``(result, ledger, ids, services, task_id)`` while the chain is up."""
    with AnvilNode(chain_id=CHAIN_ID) as node:
        ledger, ids, keystores = make_consortium(list(files), tmp_path, node.url)
        spec, task_id = trusted_spec(ledger, ids, spec, round_duration_s=round_duration_s)
        services = {
            n: ((service_of or {}).get(n, OrgService))(
                n,
                p,
                trust=NodeTrustConfig(
                    keystores[n], node.url, ledger.address, CHAIN_ID, tmp_path / n / "store"
                ),
            )
            for n, p in files.items()
        }
        result, _ = run_inprocess(spec, services, tmp_path, task_id=task_id.hex())
        try:
            yield result, ledger, ids, services, task_id
        finally:
            ledger.close()


def test_untrusted_task_with_secure_aggregation_is_refused(org_files, tmp_path):
    spec = make_spec(org_files, rounds=1, task="secagg-untrusted", secure_aggregation=SECAGG)
    services = {n: OrgService(n, p) for n, p in org_files.items()}
    with pytest.raises(OrgUnavailable, match="needs a trusted task"):
        run_inprocess(spec, services, tmp_path, join_timeout_s=20)


@pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV), reason="anvil not found"
)
def test_trusted_secure_aggregation_over_flower(org_files, tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    spec = make_spec(org_files, rounds=2, task="secagg", secure_aggregation=SECAGG)
    # The same task in one process, secure aggregation on: the reference hashes.
    expected, _ = _reference(org_files, spec, enable_secure_aggregation)
    with _trusted_run(org_files, spec, tmp_path) as (result, ledger, ids, services, task_id):
        assert result.hashes == expected
        # The relay never held a model: only masked words came back from training.
        assert all(p.size == 0 for p in result.run.local_params.values())
        for r, h in enumerate(expected, start=1):
            info = ledger.round_info(task_id, r)
            assert info.final_hash.hex() == h
            for c in info.commitments.values():  # committed: masked inputs
                blob = services["org1"].trust().store.get(c.cid)
                assert hashlib.sha256(blob).digest() == c.update_hash
                upd = decode_update(open_envelope(Envelope.from_bytes(blob), ids["org1"]))
                assert upd.kind == "masked"
            reports = ledger.reports(task_id, kind=TRANSCRIPT_KIND, round=r)
            assert len(reports) == 3 and len({x.digest for x in reports}) == 1


class _DropsAtTraining(OrgService):
    """An org that shares its keys in round 2, then fails before sending its masked input."""

    def _on_train(self, p):
        from matswarm.runtime.flower.node import NodeRefusal

        if int(p.config["round"]) == 2:
            raise NodeRefusal("simulated crash after the key exchange")
        return super()._on_train(p)


@pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV), reason="anvil not found"
)
def test_org_dropped_after_key_exchange_is_recovered_over_flower(tmp_path, monkeypatch):
    from matswarm.data.synthetic import make_tables

    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    tables, _ = make_tables(n_rows=360, n_features=8, n_orgs=4, n_test=30, seed=7)
    files = {}
    for name, df in tables.items():
        files[name] = tmp_path / f"{name}.parquet"
        df.to_parquet(files[name])
    spec = make_spec(files, rounds=2, task="secagg-drop", secure_aggregation=SECAGG)
    expected, _ = _reference(
        files, spec, lambda e: enable_secure_aggregation(e, dropouts={2: ["org4"]})
    )
    drops = {"org4": _DropsAtTraining}
    with _trusted_run(files, spec, tmp_path, drops, round_duration_s=6) as run:
        result, ledger, _, _, task_id = run
        assert result.dropouts == {2: ["org4"]}
        assert result.hashes == expected  # org4's masks were removed with the survivors' shares
        assert ledger.round_info(task_id, 2).final_hash.hex() == expected[1]


def test_compressed_updates_over_flower_match_inprocess(org_files, tmp_path):
    from matswarm.compression import CompressionSpec, enable_compression

    comp = {"kind": "q8", "fraction": 0.1, "block": 256, "error_feedback": True}
    spec = make_spec(org_files, rounds=2, task="compressed", compression=comp)
    expected, comp_transform = _reference(
        org_files, spec, lambda e: enable_compression(e, CompressionSpec(**comp), spec.seed)
    )
    traffic = comp_transform.traffic
    services = {n: OrgService(n, p) for n, p in org_files.items()}
    result, _ = run_inprocess(spec, services, tmp_path)
    assert result.hashes == expected
    assert all(p.size == 0 for p in result.run.local_params.values())  # no model relayed
    for r in result.rounds:  # the same q8 messages as in process (task names differ)
        sent, raw = traffic.sent[r["round"]], traffic.raw[r["round"]]
        assert abs(r["update_bytes"] - sent) <= 3 * 16 and sent < 0.6 * raw


@pytest.mark.skipif(
    find_anvil() is None and not os.environ.get(ANVIL_ENV), reason="anvil not found"
)
def test_trusted_compressed_updates_over_flower(org_files, tmp_path, monkeypatch):
    """The committed envelope holds the compressed update; hashes equal the in-process run."""
    from matswarm.compression import CompressionSpec, enable_compression

    monkeypatch.setenv(PASSPHRASE_ENV, "test-pass")
    comp = {"kind": "topk", "fraction": 0.2, "block": 256, "error_feedback": True}
    spec = make_spec(org_files, rounds=2, task="compressed-trusted", compression=comp)
    expected, _ = _reference(
        org_files, spec, lambda e: enable_compression(e, CompressionSpec(**comp), spec.seed)
    )
    with _trusted_run(org_files, spec, tmp_path) as (result, ledger, ids, services, task_id):
        assert result.hashes == expected
        for c in ledger.round_info(task_id, 2).commitments.values():
            blob = services["org2"].trust().store.get(c.cid)
            upd = decode_update(open_envelope(Envelope.from_bytes(blob), ids["org2"]))
            assert upd.compressed is not None and upd.compressed[0] == "topk"
