"""Secure aggregation: exact cancellation, dropout recovery, and what each party can learn."""

from __future__ import annotations

import numpy as np
import pytest

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.models import ModelSpec
from matswarm.privacy.secagg import (
    SecAggClient,
    SecAggConfig,
    SecAggError,
    Transcript,
    _pair_key,
    _self_key,
    encode_fixed,
    prg_words,
    shamir_combine,
    unmask_sum,
)
from matswarm.privacy.secagg_round import enable_secure_aggregation
from matswarm.protocol import vector_hash
from matswarm.runtime import build_engine
from matswarm.trust import OrgIdentity

TASK = "0x" + "ab" * 32
CFG = SecAggConfig()
D = 4096


@pytest.fixture(scope="module")
def ids():
    return {n: OrgIdentity.generate(n) for n in ("a", "b", "c", "d", "e")}


def setup_round(ids, names, round_=1, config=CFG):
    directory = {n: ids[n].public for n in names}
    clients = {n: SecAggClient(ids[n], names, directory, TASK, round_, config) for n in names}
    n_samples = {n: 100 * (i + 1) for i, n in enumerate(names)}
    adverts = {n: c.advertise(n_samples[n]) for n, c in clients.items()}
    boxes = {n: c.share_keys(adverts) for n, c in clients.items()}
    for n, c in clients.items():
        c.receive_shares({s: b[n] for s, b in boxes.items() if n in b})
    return clients, adverts, boxes, n_samples, directory


def updates_for(names, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.normal(0, 0.05, D).astype(np.float32) for n in names}


def test_masks_cancel_bit_identically(ids):
    names = ["a", "b", "c", "d"]
    clients, adverts, _, ns, directory = setup_round(ids, names)
    x = updates_for(names)
    y = {n: clients[n].mask(x[n], ns[n]) for n in names}
    tr = Transcript(adverts, {n: clients[n].reveal(names, []) for n in names})
    s = unmask_sum(y, tr, names, directory, TASK, 1, CFG)
    total = sum(ns.values())
    expected = np.zeros(D, np.uint32)
    for n in names:
        expected += encode_fixed(x[n], ns[n] / total, CFG)[0]
    assert s.words.dtype == np.uint32 and np.array_equal(s.words, expected)
    ref = sum(ns[n] * x[n].astype(np.float64) for n in names) / total
    assert np.abs(s.weighted_mean(CFG) - ref).max() < 1e-7
    # masked inputs are not the encodings
    assert all(not np.array_equal(y[n], encode_fixed(x[n], ns[n] / total, CFG)[0]) for n in names)


def test_dropped_org_is_recovered_from_shares(ids):
    names = ["a", "b", "c", "d", "e"]
    clients, adverts, _, ns, directory = setup_round(ids, names)
    x = updates_for(names, seed=1)
    survivors = ["a", "c", "d", "e"]  # "b" shared its keys, then dropped before masking
    y = {n: clients[n].mask(x[n], ns[n]) for n in survivors}
    tr = Transcript(adverts, {n: clients[n].reveal(survivors, ["b"]) for n in survivors})
    s = unmask_sum(y, tr, names, directory, TASK, 1, CFG)
    total = sum(ns.values())
    expected = np.zeros(D, np.uint32)
    for n in survivors:
        expected += encode_fixed(x[n], ns[n] / total, CFG)[0]
    assert np.array_equal(s.words, expected)
    ref = sum(ns[n] * x[n].astype(np.float64) for n in survivors) / sum(ns[n] for n in survivors)
    assert np.abs(s.weighted_mean(CFG) - ref).max() < 1e-7


def test_below_threshold_and_wrong_shares_fail_loudly(ids):
    names = ["a", "b", "c", "d", "e"]  # threshold 3
    strict, *_ = setup_round(ids, names, config=SecAggConfig(threshold=4))
    with pytest.raises(SecAggError, match="threshold 4"):
        strict["a"].reveal(["a", "b", "c"], ["d", "e"])
    clients, adverts, _, ns, directory = setup_round(ids, names)
    survivors = ["a", "b", "c", "d"]
    x = updates_for(names)
    y = {n: clients[n].mask(x[n], ns[n]) for n in survivors}
    reveals = {n: clients[n].reveal(survivors, ["e"]) for n in survivors}
    # Only two revealers: below the threshold, no seed can be rebuilt.
    with pytest.raises(SecAggError, match="3 needed"):
        unmask_sum(
            y, Transcript(adverts, dict(list(reveals.items())[:2])), names, directory, TASK, 1, CFG
        )
    # A share off by one: the extra shares no longer lie on one polynomial.
    shares = {1: 5, 2: 9, 3: 13}
    assert shamir_combine(shares, 2, "s", length=1) == b"\x01"
    with pytest.raises(SecAggError, match="inconsistent"):
        shamir_combine({**shares, 3: 14}, 2, "s", length=1)


def test_a_forged_reveal_or_advert_is_rejected(ids):
    from matswarm.trust import EnvelopeError

    names = ["a", "b", "c"]
    clients, adverts, _, ns, directory = setup_round(ids, names)
    x = updates_for(names)
    y = {n: clients[n].mask(x[n], ns[n]) for n in names}
    reveals = {n: clients[n].reveal(names, []) for n in names}
    forged = dict(reveals)
    blob = bytearray(reveals["b"])
    i = blob.index(b'"a": "0x') + 8  # first hex digit of b's share of a's seed
    blob[i] = ord("1") if blob[i] != ord("1") else ord("2")
    forged["b"] = bytes(blob)
    assert forged["b"] != reveals["b"]
    with pytest.raises(EnvelopeError, match=r"hash|signature"):
        unmask_sum(y, Transcript(adverts, forged), names, directory, TASK, 1, CFG)
    swapped = {**adverts, "a": adverts["b"]}  # b's advert presented as a's
    with pytest.raises(SecAggError, match="signed by b"):
        unmask_sum(y, Transcript(swapped, reveals), names, directory, TASK, 1, CFG)


def test_client_never_reveals_both_shares_of_one_org(ids):
    names = ["a", "b", "c", "d"]
    clients, *_ = setup_round(ids, names)
    with pytest.raises(SecAggError, match="partition"):
        clients["a"].reveal(["a", "b", "c", "d"], ["b"])
    # Two survivors would each learn the other's update from their sum.
    with pytest.raises(SecAggError, match="only 2 survivors"):
        clients["a"].reveal(["a", "b"], ["c", "d"])
    clients["a"].reveal(["a", "b", "c"], ["d"])
    with pytest.raises(SecAggError, match="already revealed"):
        clients["a"].reveal(["a", "b", "c", "d"], [])


def test_two_orgs_and_robust_rules_are_refused(ids, small_synthetic):
    with pytest.raises(SecAggError, match="at least 3"):
        SecAggClient(ids["a"], ["a", "b"], {}, TASK, 1, CFG)
    algo = make_algorithm("fedavg", rounds=1, local_steps=2, batch_size=32)
    for rule in ("median", "geomed", "trimmed-mean", "nnm+centered-clipping"):
        eng = build_engine(small_synthetic, ModelSpec("mlp", hidden=8), algo, make_rule(rule), 0)
        with pytest.raises(SecAggError, match="needs every individual update"):
            enable_secure_aggregation(eng)
    eng = build_engine(
        small_synthetic, ModelSpec("mlp", hidden=8), algo, make_rule("equal-mean"), 0
    )
    with pytest.raises(SecAggError, match="supports only aggregation rule 'mean'"):
        enable_secure_aggregation(eng)


def _chi2_top_byte(words: np.ndarray) -> float:
    """Chi-square statistic of the words' top byte against the uniform distribution (255
    degrees of freedom: mean 255, sd 22.6; 370 is p < 1e-5)."""
    counts = np.bincount((words >> 24).astype(np.int64), minlength=256)
    expected = words.size / 256
    return float(((counts - expected) ** 2 / expected).sum())


def _uniform(words: np.ndarray) -> bool:
    return _chi2_top_byte(words) < 370


def _same_distribution(u: np.ndarray, v: np.ndarray) -> bool:
    """Two-sample chi-square on the top byte (255 df): no evidence the two differ."""
    cu = np.bincount((u >> 24).astype(np.int64), minlength=256).astype(np.float64)
    cv = np.bincount((v >> 24).astype(np.int64), minlength=256).astype(np.float64)
    keep = (cu + cv) > 0
    return float((((cu - cv) ** 2)[keep] / (cu + cv)[keep]).sum()) < 370


def test_relay_view_is_uniform_and_independent_of_the_update(ids):
    """The relay holds the masked inputs, every signed advert and reveal, and the encrypted
    shares it routed. Even after subtracting the revealed self masks, each input is uniform in
    Z_2^32 and the same for a zero update and a large one."""
    names = ["a", "b", "c"]
    clients, adverts, boxes, ns, _directory = setup_round(ids, names)
    # The relay (no key) and any third org cannot open a routed share: only its recipient.
    from matswarm.trust import Envelope, EnvelopeError, open_envelope

    env = Envelope.from_bytes(boxes["a"]["b"])
    assert env.encrypted
    for who in (None, ids["c"]):
        with pytest.raises(EnvelopeError):
            open_envelope(env, who)
    assert b"sk" in open_envelope(env, ids["b"])
    x = {"a": np.zeros(D, np.float32), "b": np.full(D, 0.9, np.float32), "c": updates_for("c")["c"]}
    y = {n: clients[n].mask(x[n], ns[n]) for n in names}
    tr = Transcript(adverts, {n: clients[n].reveal(names, []) for n in names})
    import json

    ctx = f"{TASK}|1"
    for n in names:
        shares = {}
        for r, blob in tr.reveals.items():
            shares[names.index(r) + 1] = int(json.loads(Envelope.from_bytes(blob).body)["b"][n], 16)
        seed = shamir_combine(shares, 2, n)
        residual = y[n] - prg_words(_self_key(seed, ctx, n), D)  # e_n + pairwise masks only
        assert _uniform(residual)
        enc = encode_fixed(x[n], ns[n] / sum(ns.values()), CFG)[0].astype(np.float64)
        if enc.std() > 0:
            assert abs(np.corrcoef(residual.astype(np.float64), enc)[0, 1]) < 0.1
    # A constant-zero and a constant-0.9 update look alike to the relay; the encodings do not.
    assert _same_distribution(y["a"], y["b"])
    total = sum(ns.values())
    ea, eb = (encode_fixed(x[n], ns[n] / total, CFG)[0] for n in ("a", "b"))
    assert not _same_distribution(ea, eb)


def test_one_org_plus_the_sum_does_not_reveal_another_update(ids):
    """Org "a" knows its own mask key (so every pairwise key it shares), its shares, the reveals
    and the sum. Removing all of that from "b"'s masked input still leaves b's mask with "c":
    the residual is uniform and carries no information on b's update (K = 3)."""
    names = ["a", "b", "c"]
    clients, adverts, _, ns, directory = setup_round(ids, names)
    x = updates_for(names, seed=3)
    y = {n: clients[n].mask(x[n], ns[n]) for n in names}
    reveals = {n: clients[n].reveal(names, []) for n in names}
    a = clients["a"]
    import json

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

    from matswarm.trust import Envelope

    ctx = f"{TASK}|1"
    shares = {
        names.index(r) + 1: int(json.loads(Envelope.from_bytes(blob).body)["b"]["b"], 16)
        for r, blob in reveals.items()
    }
    seed_b = shamir_combine(shares, 2, "b")
    shared_ab = a._mask_sk.exchange(X25519PublicKey.from_public_bytes(a.adverts["b"].public_key))
    guess = (
        y["b"]
        - prg_words(_self_key(seed_b, ctx, "b"), D)
        + prg_words(_pair_key(shared_ab, ctx, "a", "b"), D)
    )  # b subtracted the a-b mask (a precedes b): add it back
    total = sum(ns.values())
    enc_b = encode_fixed(x["b"], ns["b"] / total, CFG)[0]
    assert _uniform(guess)
    err = (guess - enc_b).view(np.int32).astype(np.float64) / CFG.scale
    assert np.abs(err).mean() > 0.1  # vs |update| ~ 0.05: nothing learned
    # The sum minus a's own update is b + c together, not b.
    s = unmask_sum(y, Transcript(adverts, reveals), names, directory, TASK, 1, CFG)
    rest = s.words - encode_fixed(x["a"], ns["a"] / total, CFG)[0]
    both = enc_b + encode_fixed(x["c"], ns["c"] / total, CFG)[0]
    assert np.array_equal(rest, both) and not np.array_equal(rest, enc_b)


def test_engine_round_with_secure_aggregation_matches_plain_mean():
    from matswarm.data import synthetic

    ds = synthetic.make_dataset(n_rows=240, n_features=12, n_orgs=4, n_test=60, seed=1)
    spec = ModelSpec("mlp", hidden=8)
    algo = make_algorithm("fedavg", rounds=3, local_steps=4, lr=1e-2, batch_size=32)
    plain = build_engine(ds, spec, algo, make_rule("mean"), 0).run()
    eng = build_engine(ds, spec, algo, make_rule("mean"), 0)
    board = enable_secure_aggregation(eng, dropouts={2: ["org2"]})
    run = eng.run()
    # org2 dropped after sharing its keys in round 2: its masks were recovered from shares
    assert run.history[1].participants == ("org1", "org3", "org4")
    assert run.history[2].participants == ("org1", "org2", "org3", "org4")
    assert board.overhead_bytes[1] > 0
    # Same training, same mean up to the fixed-point resolution (2^-30 per coordinate).
    first = build_engine(ds, spec, algo, make_rule("mean"), 0)
    eng1 = build_engine(ds, spec, algo, make_rule("mean"), 0)
    enable_secure_aggregation(eng1)
    first.run_round(1)
    eng1.run_round(1)
    diff = np.abs(first.run_state.global_params - eng1.run_state.global_params).max()
    assert diff < 1e-6
    # Round 2 averaged three orgs instead of four: a different model from then on.
    assert vector_hash(plain.global_params) != vector_hash(run.global_params)
