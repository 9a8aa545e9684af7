"""Secure aggregation with the trust layer: what is committed is the masked update, and verify
re-derives each global model as the unmasked sum of the committed masked updates."""

from __future__ import annotations

import hashlib

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.compression import CompressionSpec, enable_compression
from matswarm.models import ModelSpec
from matswarm.privacy.secagg import encode_fixed
from matswarm.privacy.secagg_round import TRANSCRIPT_KIND, enable_secure_aggregation
from matswarm.protocol.codec import decode_update
from matswarm.protocol.consortium import Consortium, TrustSettings, trusted_engine
from matswarm.protocol.verify import first_failure_line, verify_task
from matswarm.runtime import build_engine
from matswarm.trust import Envelope, open_envelope

SPEC = ModelSpec("mlp", hidden=8)


def _trusted(ds, cons, algo, *, secagg=False, compression=None):
    eng = build_engine(ds, SPEC, algo, make_rule("mean"), 0)
    board = enable_secure_aggregation(eng, identities=cons.identities) if secagg else None
    eng, spec, task_id = trusted_engine(
        eng,
        cons,
        model_spec=SPEC,
        algorithm=algo,
        rule=make_rule("mean"),
        seed=0,
        schema=ds.schema.to_dict(),
        settings=TrustSettings(),
    )
    comp = enable_compression(eng, compression, 0) if compression else None
    return eng, spec, task_id, board, comp


def _committed(cons, task_id, round_, reader):
    out = {}
    for _addr, c in cons.ledger.commitments(task_id, round_).items():
        blob = cons.store.get(c.cid)
        assert hashlib.sha256(blob).digest() == c.update_hash
        payload = open_envelope(Envelope.from_bytes(blob), cons.identities[reader])
        upd = decode_update(payload)
        out[upd.org] = (upd, payload)
    return out


def test_commitments_are_masked_and_verify_recomputes_the_sum(small_synthetic, tmp_path):
    ds = small_synthetic
    algo = make_algorithm("fedavg", rounds=2, local_steps=4, lr=1e-2, batch_size=32)
    cons = Consortium.embedded(tmp_path / "secagg", ds.org_names)
    eng, spec, task_id, _, _ = _trusted(ds, cons, algo, secagg=True)
    assert spec.secure_aggregation == {"clip": 1.0, "threshold": None}
    plain: dict[int, dict] = {}

    def record(round_, updates):  # runs before masking: the orgs' true updates
        plain[round_] = {u.org: u for u in updates}
        return updates

    eng.transforms.insert(0, record)
    eng.run()
    committed = _committed(cons, task_id, 1, "org2")
    total = sum(u.n_samples for u in plain[1].values())
    for org, true in plain[1].items():
        upd, _ = committed[org]
        assert upd.kind == "masked" and upd.digest() != true.digest()
        words = upd.vector.view(np.uint32)
        enc = encode_fixed(true.vector, true.n_samples / total, spec_cfg(spec))[0]
        assert np.count_nonzero(words == enc) < 0.01 * words.size  # masked, not the encoding
    assert len(cons.ledger.reports(task_id, kind=TRANSCRIPT_KIND)) == 2
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    assert rep.ok, first_failure_line(rep)
    assert rep.rounds_verified == 2
    # A transcript that does not match its ledger anchor stops verify at that round.
    r1 = cons.ledger.reports(task_id, kind=TRANSCRIPT_KIND, round=1)[0]
    path = next(p for p in (tmp_path / "secagg" / "store").rglob("*") if r1.cid in p.name)
    path.chmod(0o644)
    path.write_bytes(path.read_bytes().replace(b'"reveals"', b'"reveal_"'))
    bad = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    assert not bad.ok and bad.first_failure.round == 1
    cons.close()


def spec_cfg(spec):
    from matswarm.privacy.secagg import SecAggConfig

    return SecAggConfig(**spec.secure_aggregation)


def test_stored_envelope_holds_the_compressed_payload(small_synthetic, tmp_path):
    ds = small_synthetic
    algo = make_algorithm("fedavg", rounds=2, local_steps=4, lr=1e-2, batch_size=32)
    cons = Consortium.embedded(tmp_path / "q8", ds.org_names)
    eng, _, task_id, _, comp = _trusted(ds, cons, algo, compression=CompressionSpec("q8"))
    eng.run()
    for r in (1, 2):
        committed = _committed(cons, task_id, r, "org3")
        assert all(
            u.compressed is not None and u.compressed[0] == "q8" for u, _ in committed.values()
        )
        assert sum(len(p) for _, p in committed.values()) == comp.traffic.sent[r]
    rep = verify_task(cons.ledger, cons.store, task_id, identity=cons.identities["org1"])
    assert rep.ok, first_failure_line(rep)
    cons.close()


def test_experiment_unit_with_secure_aggregation_and_trust_verifies(small_synthetic, tmp_path):
    from matswarm.experiments.runner import Unit, run_unit
    from matswarm.privacy.secagg import SecAggConfig

    algo = make_algorithm("fedavg", rounds=2, local_steps=4, lr=1e-2, batch_size=32)
    unit = Unit(
        small_synthetic,
        SPEC,
        "fedavg",
        algo,
        make_rule("mean"),
        0,
        TrustSettings(),
        str(tmp_path),
        secure_aggregation=SecAggConfig(),
    )
    res = run_unit(unit)
    assert res.trust["verified"], res.trust["verify"]
    assert res.trust["rounds_verified"] == 2
