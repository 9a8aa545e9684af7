"""Signed and encrypted envelopes, and every rejection reason of the verifier."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from matswarm.trust import (
    Envelope,
    EnvelopeError,
    EnvelopeVerifier,
    Kind,
    OrgIdentity,
    Reason,
    open_envelope,
    seal,
)
from matswarm.trust._canonical import encode_fields

TASK = "task-perovskite-01"


@pytest.fixture(scope="module")
def orgs() -> dict[str, OrgIdentity]:
    return {name: OrgIdentity.generate(name) for name in ("org-a", "org-b", "org-c", "org-d")}


def verifier(orgs, me: str | None = None, names=("org-a", "org-b", "org-c")) -> EnvelopeVerifier:
    return EnvelopeVerifier(
        [orgs[n].public for n in names], task_id=TASK, identity=orgs[me] if me else None
    )


def _reason(excinfo) -> Reason:
    return excinfo.value.reason


def test_signed_envelope_verifies_and_round_trips(orgs):
    env = seal(orgs["org-a"], task_id=TASK, round=2, kind=Kind.LOCAL_UPDATE, payload=b"u" * 100)
    wire = env.to_bytes()
    assert wire == env.to_bytes()  # deterministic
    parsed = Envelope.from_bytes(wire)
    assert parsed == env
    assert verifier(orgs).verify(parsed, round=2, kind="local_update") == b"u" * 100
    assert parsed.payload_hash == hashlib.sha256(b"u" * 100).hexdigest()


def test_canonical_encoding_is_length_prefixed_and_typed():
    assert encode_fields(b"d\0", ["ab", 7, b"\x01", None, ["x"]]) == (
        b"d\0"
        + b"\x00\x00\x00\x02ab"
        + b"\x00\x00\x00\x017"
        + b"\x00\x00\x00\x01\x01"
        + b"\xff\xff\xff\xff"
        + b"\x00\x00\x00\x0alist\x00\x00\x00\x00\x01x"
    )
    # no ambiguity between ("ab", "c") and ("a", "bc")
    assert encode_fields(b"d\0", ["ab", "c"]) != encode_fields(b"d\0", ["a", "bc"])
    with pytest.raises(TypeError):
        encode_fields(b"d\0", [True])


def test_forged_signature_rejected(orgs):
    env = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    flipped = bytearray(env.signature)
    flipped[5] ^= 0x01
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(dataclasses.replace(env, signature=bytes(flipped)), round=0)
    assert _reason(info) == Reason.BAD_SIGNATURE


def test_impersonation_rejected(orgs):
    """org-c signs with its own key but claims to be org-a."""
    forged = seal(orgs["org-c"], task_id=TASK, round=0, kind="local_update", payload=b"evil")
    forged = dataclasses.replace(forged, sender="org-a")
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(forged, round=0)
    assert _reason(info) == Reason.BAD_SIGNATURE


def test_field_changed_after_signing_rejected(orgs):
    env = seal(orgs["org-a"], task_id=TASK, round=1, kind="local_update", payload=b"p")
    for change in ({"round": 2}, {"task_id": "other"}, {"kind": "aggregate_vote"}, {"seq": 1}):
        moved = dataclasses.replace(env, **change)
        with pytest.raises(EnvelopeError) as info:
            verifier(orgs).verify(moved, round=moved.round)
        assert _reason(info) == Reason.BAD_SIGNATURE, change


def test_unknown_sender_rejected(orgs):
    env = seal(orgs["org-d"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(env, round=0)
    assert _reason(info) == Reason.UNKNOWN_SENDER
    assert "org-d" in str(info.value)


def test_replay_rejected(orgs):
    v = verifier(orgs)
    env = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    v.verify(env, round=0)
    with pytest.raises(EnvelopeError) as info:
        v.verify(Envelope.from_bytes(env.to_bytes()), round=0)
    assert _reason(info) == Reason.REPLAY
    # a second, freshly signed update for the same slot is also a replay (double submission)
    again = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"q")
    with pytest.raises(EnvelopeError) as info:
        v.verify(again, round=0)
    assert _reason(info) == Reason.REPLAY
    # other kinds, sequence numbers and rounds are distinct slots
    v.verify(
        seal(orgs["org-a"], task_id=TASK, round=0, kind="aggregate_vote", payload=b"h"), round=0
    )
    v.verify(
        seal(orgs["org-a"], task_id=TASK, round=0, kind="ring_intermediate", payload=b"1", seq=1),
        round=0,
    )
    v.verify(seal(orgs["org-a"], task_id=TASK, round=1, kind="local_update", payload=b"p"), round=1)


def test_nonce_reuse_rejected(orgs):
    v = verifier(orgs)
    first = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    v.verify(first, round=0)
    # a correctly signed message of another slot that reuses the nonce
    reused = dataclasses.replace(
        seal(orgs["org-a"], task_id=TASK, round=1, kind="local_update", payload=b"p"),
        nonce=first.nonce,
    )
    reused = dataclasses.replace(reused, signature=orgs["org-a"].sign(reused.signed_bytes()))
    with pytest.raises(EnvelopeError) as info:
        v.verify(reused, round=1)
    assert _reason(info) == Reason.REPLAY


def test_rejected_envelope_does_not_burn_its_slot(orgs):
    v = verifier(orgs)
    env = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    with pytest.raises(EnvelopeError):
        v.verify(env, round=1)
    assert v.verify(env, round=0) == b"p"


def test_wrong_task_round_and_kind_rejected(orgs):
    other_task = seal(
        orgs["org-a"], task_id="another-task", round=0, kind="local_update", payload=b"p"
    )
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(other_task, round=0)
    assert _reason(info) == Reason.WRONG_TASK

    env = seal(orgs["org-a"], task_id=TASK, round=3, kind="local_update", payload=b"p")
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(env, round=4)
    assert _reason(info) == Reason.WRONG_ROUND
    assert "round 3" in str(info.value)

    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(env, round=3, kind=Kind.AGGREGATE_VOTE)
    assert _reason(info) == Reason.WRONG_KIND


def test_tampered_clear_payload_rejected(orgs):
    env = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"abcdef")
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs).verify(dataclasses.replace(env, body=b"abcdeg"), round=0)
    assert _reason(info) == Reason.PAYLOAD_HASH_MISMATCH


def test_encryption_round_trip_for_three_recipients(orgs):
    payload = bytes(range(256)) * 40
    recipients = [orgs[n].public for n in ("org-a", "org-b", "org-c")]
    env = seal(
        orgs["org-a"],
        task_id=TASK,
        round=1,
        kind="local_update",
        payload=payload,
        recipients=recipients,
    )
    wire = env.to_bytes()
    assert payload[:64] not in wire  # the body is ciphertext
    assert env.encryption is not None
    assert env.encryption.recipient_names == ("org-a", "org-b", "org-c")
    for name in ("org-a", "org-b", "org-c"):
        v = verifier(orgs, me=name)
        assert v.verify(Envelope.from_bytes(wire), round=1) == payload


def test_non_recipient_cannot_decrypt(orgs):
    env = seal(
        orgs["org-a"],
        task_id=TASK,
        round=0,
        kind="local_update",
        payload=b"secret",
        recipients=[orgs["org-b"].public],
    )
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs, me="org-c").verify(env, round=0)
    assert _reason(info) == Reason.NOT_RECIPIENT
    # the signature still checks for anyone (auditors), without decrypting
    verifier(orgs, me="org-c").check(env, round=0)
    # org-c relabels org-b's wrapped key as its own: the key unwrap fails authentication
    stolen = dataclasses.replace(
        env.encryption,
        recipients=(dataclasses.replace(env.encryption.recipients[0], recipient="org-c"),),
    )
    with pytest.raises(EnvelopeError) as info:
        open_envelope(dataclasses.replace(env, encryption=stolen), orgs["org-c"])
    assert _reason(info) == Reason.DECRYPTION_FAILED
    with pytest.raises(EnvelopeError) as info:
        open_envelope(env, None)
    assert _reason(info) == Reason.NOT_RECIPIENT


def test_tampered_ciphertext_rejected(orgs):
    env = seal(
        orgs["org-a"],
        task_id=TASK,
        round=0,
        kind="local_update",
        payload=b"x" * 64,
        recipients=[orgs["org-b"].public],
    )
    body = bytearray(env.body)
    body[10] ^= 0x80
    tampered = dataclasses.replace(env, body=bytes(body))
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs, me="org-b").verify(tampered, round=0)
    assert _reason(info) == Reason.PAYLOAD_HASH_MISMATCH
    # even bypassing the signed hash, AEAD authentication catches it
    with pytest.raises(EnvelopeError) as info:
        open_envelope(tampered, orgs["org-b"])
    assert _reason(info) == Reason.DECRYPTION_FAILED


def test_ciphertext_bound_to_its_header(orgs):
    """Moving a ciphertext under another (even correctly re-signed) header fails the AEAD."""
    env = seal(
        orgs["org-a"],
        task_id=TASK,
        round=0,
        kind="local_update",
        payload=b"r0",
        recipients=[orgs["org-b"].public],
    )
    moved = dataclasses.replace(env, round=5)
    moved = dataclasses.replace(moved, signature=orgs["org-a"].sign(moved.signed_bytes()))
    with pytest.raises(EnvelopeError) as info:
        verifier(orgs, me="org-b").verify(moved, round=5)
    assert _reason(info) == Reason.DECRYPTION_FAILED


def test_malformed_wire_bytes_rejected(orgs):
    env = seal(orgs["org-a"], task_id=TASK, round=0, kind="local_update", payload=b"p")
    wire = env.to_bytes()
    for bad in (b"", b"garbage", wire[:12], wire.replace(b'"round":0', b'"round":"0"')):
        with pytest.raises(EnvelopeError) as info:
            Envelope.from_bytes(bad)
        assert _reason(info) == Reason.MALFORMED


def test_seal_validates_arguments(orgs):
    with pytest.raises(EnvelopeError, match="round"):
        seal(orgs["org-a"], task_id=TASK, round=-1, kind="local_update", payload=b"p")
    with pytest.raises(EnvelopeError, match="kind"):
        seal(orgs["org-a"], task_id=TASK, round=0, kind="Bad Kind", payload=b"p")
    with pytest.raises(ValueError, match="duplicate"):
        seal(
            orgs["org-a"],
            task_id=TASK,
            round=0,
            kind="x",
            payload=b"p",
            recipients=[orgs["org-b"].public, orgs["org-b"].public],
        )
    with pytest.raises(TypeError):
        seal(orgs["org-a"], task_id=TASK, round=0, kind="x", payload="text")  # type: ignore[arg-type]
