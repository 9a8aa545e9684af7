"""Signed (and optionally encrypted) envelopes: the only form in which messages cross org lines.

Signature
    Ed25519 by the sender over the canonical bytes (see :mod:`matswarm.trust._canonical`) of::

        "matswarm/envelope/v1\\0", version, task_id, round, sender, kind, seq, nonce,
        payload_sha256, payload_size, enc_alg, ephemeral_public, aead_nonce,
        [[recipient, wrapped_key], …], ciphertext_sha256

    (the five encryption fields are "absent" for a clear envelope). ``payload_sha256`` is the
    hash of the *plaintext*, so a ledger commitment of the update hash can be checked against
    the envelope by anyone; ``ciphertext_sha256`` lets non-recipients check an encrypted body.
    ``nonce`` is 16 random bytes; ``seq`` numbers several messages of one kind in one round
    (ring intermediates), default 0.

Encryption (optional, to one or more recipients)
    A random 32-byte content key encrypts the payload with ChaCha20-Poly1305 (random 12-byte
    nonce; AAD = canonical header, see :func:`_aad`). For each recipient the content key is
    wrapped: a fresh ephemeral X25519 key per envelope, ``shared = X25519(eph, recipient)``,
    ``kek = HKDF-SHA256(shared, salt = eph_pub || recipient_pub, info = "matswarm/envelope/v1/
    wrap\\0" || recipient name)``, ``wrapped = ChaCha20-Poly1305(kek, nonce = 0^12, key, AAD)``.
    The zero nonce is safe because every kek is used exactly once. The AAD binds task, round,
    sender, kind, seq, nonce, payload hash and the recipient list, so a ciphertext can't be moved
    into another header.

Wire format (:meth:`Envelope.to_bytes`)
    ``b"MSENV1\\0" || u32be(len(header)) || header || body`` where ``header`` is compact JSON
    with sorted keys (binary values as lowercase hex, signature included) and ``body`` is the
    plaintext or the ciphertext. The JSON is only a container: the signature is over the
    canonical bytes above, never over JSON text.

Verification (:class:`EnvelopeVerifier`) rejects with an :class:`EnvelopeError` whose
``reason`` is one of: unknown_sender, bad_signature, wrong_task, wrong_round, wrong_kind,
replay, payload_hash_mismatch, not_recipient, decryption_failed, malformed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import re
import struct
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from matswarm.trust._canonical import encode_fields
from matswarm.trust.errors import EnvelopeError, Reason
from matswarm.trust.identity import OrgIdentity, PublicIdentity, validate_org_name

ENVELOPE_VERSION = 1
ENC_ALG = "x25519-hkdf-sha256-chacha20poly1305"
MAGIC = b"MSENV1\0"
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_MAX_HEADER = 1 << 20


class Kind(StrEnum):
    """Well-known message kinds (any lowercase ``[a-z0-9_]`` name is accepted)."""

    LOCAL_UPDATE = "local_update"
    AGGREGATE_VOTE = "aggregate_vote"
    RING_INTERMEDIATE = "ring_intermediate"
    GLOBAL_MODEL = "global_model"
    ATTESTATION = "attestation"


@dataclass(frozen=True)
class WrappedKey:
    """The content key wrapped for one recipient."""

    recipient: str
    wrapped: bytes


@dataclass(frozen=True)
class Encryption:
    """Encryption parameters of an encrypted envelope (all covered by the signature)."""

    ephemeral_public: bytes
    aead_nonce: bytes
    recipients: tuple[WrappedKey, ...]
    ciphertext_sha256: bytes
    alg: str = ENC_ALG

    @property
    def recipient_names(self) -> tuple[str, ...]:
        return tuple(w.recipient for w in self.recipients)


@dataclass(frozen=True)
class Envelope:
    """One signed message. Build with :func:`seal`; check with :class:`EnvelopeVerifier`."""

    task_id: str
    round: int
    sender: str
    kind: str
    seq: int
    nonce: bytes
    payload_sha256: bytes
    payload_size: int
    body: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    encryption: Encryption | None = None
    version: int = ENVELOPE_VERSION

    @property
    def encrypted(self) -> bool:
        return self.encryption is not None

    @property
    def payload_hash(self) -> str:
        """Hex sha256 of the plaintext payload (what the ledger commitment records)."""
        return self.payload_sha256.hex()

    def signed_bytes(self) -> bytes:
        """The exact bytes the sender's Ed25519 signature covers."""
        return _signed_bytes(self)

    def verify_signature(self, sender: PublicIdentity) -> None:
        """Raise :class:`EnvelopeError` (bad_signature) unless ``sender`` signed this envelope."""
        if sender.name != self.sender:
            raise EnvelopeError(
                Reason.UNKNOWN_SENDER,
                f"envelope is from {self.sender!r}, not {sender.name!r}",
            )
        if not sender.verify(self.signature, self.signed_bytes()):
            raise EnvelopeError(
                Reason.BAD_SIGNATURE,
                f"signature of {self.kind} from {self.sender!r} (task {self.task_id!r}, round "
                f"{self.round}) does not verify with the sender's registered Ed25519 key",
            )

    # --- wire format ----------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        header: dict[str, object] = {
            "v": self.version,
            "task": self.task_id,
            "round": self.round,
            "sender": self.sender,
            "kind": self.kind,
            "seq": self.seq,
            "nonce": self.nonce.hex(),
            "payload_sha256": self.payload_sha256.hex(),
            "payload_size": self.payload_size,
            "sig": self.signature.hex(),
        }
        if self.encryption is not None:
            enc = self.encryption
            header["enc"] = {
                "alg": enc.alg,
                "epk": enc.ephemeral_public.hex(),
                "nonce": enc.aead_nonce.hex(),
                "ciphertext_sha256": enc.ciphertext_sha256.hex(),
                "recipients": [[w.recipient, w.wrapped.hex()] for w in enc.recipients],
            }
        raw = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
        return MAGIC + struct.pack(">I", len(raw)) + raw + self.body

    @classmethod
    def from_bytes(cls, data: bytes) -> Envelope:
        """Parse :meth:`to_bytes` output; raise :class:`EnvelopeError` (malformed) otherwise."""
        try:
            if not data.startswith(MAGIC):
                raise ValueError("missing MSENV1 magic")
            (hlen,) = struct.unpack(">I", data[len(MAGIC) : len(MAGIC) + 4])
            start = len(MAGIC) + 4
            if hlen > _MAX_HEADER or start + hlen > len(data):
                raise ValueError("header length out of range")
            header = json.loads(data[start : start + hlen])
            body = data[start + hlen :]
            encryption = None
            if "enc" in header:
                enc = header["enc"]
                encryption = Encryption(
                    alg=_str(enc["alg"]),
                    ephemeral_public=bytes.fromhex(enc["epk"]),
                    aead_nonce=bytes.fromhex(enc["nonce"]),
                    ciphertext_sha256=bytes.fromhex(enc["ciphertext_sha256"]),
                    recipients=tuple(
                        WrappedKey(_str(name), bytes.fromhex(w)) for name, w in enc["recipients"]
                    ),
                )
            env = cls(
                version=_int(header["v"]),
                task_id=_str(header["task"]),
                round=_int(header["round"]),
                sender=_str(header["sender"]),
                kind=_str(header["kind"]),
                seq=_int(header["seq"]),
                nonce=bytes.fromhex(header["nonce"]),
                payload_sha256=bytes.fromhex(header["payload_sha256"]),
                payload_size=_int(header["payload_size"]),
                signature=bytes.fromhex(header["sig"]),
                encryption=encryption,
                body=body,
            )
        except (ValueError, KeyError, TypeError, struct.error) as exc:
            raise EnvelopeError(Reason.MALFORMED, f"cannot parse envelope: {exc}") from None
        _check_shape(env)
        return env


def seal(
    identity: OrgIdentity,
    *,
    task_id: str,
    round: int,
    kind: str,
    payload: bytes,
    recipients: Sequence[PublicIdentity] | None = None,
    seq: int = 0,
) -> Envelope:
    """Sign ``payload`` as ``identity`` and, if ``recipients`` are given, encrypt it to them.

    Include the sender in ``recipients`` if it must be able to read its own message back.
    """
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise TypeError(f"payload must be bytes, not {type(payload).__name__}")
    payload = bytes(payload)
    base = dict(
        task_id=task_id,
        round=round,
        sender=identity.name,
        kind=str(kind),
        seq=seq,
        nonce=os.urandom(16),
        payload_sha256=hashlib.sha256(payload).digest(),
        payload_size=len(payload),
    )
    if recipients is None:
        unsigned = Envelope(**base, body=payload, signature=b"", encryption=None)
    else:
        unsigned = _encrypt(base, payload, recipients)
    _check_shape(unsigned, signature=False)
    signature = identity.sign(_signed_bytes(unsigned))
    return dataclasses.replace(unsigned, signature=signature)


class EnvelopeVerifier:
    """Checks envelopes for one task against a directory of admitted orgs.

    ``directory`` maps org names to their registered :class:`PublicIdentity` (as read from the
    ledger). ``identity`` is the verifying org, needed to decrypt envelopes addressed to it.
    :meth:`verify` is stateful: it remembers accepted (sender, round, kind, seq) slots and
    nonces and rejects a second use as a replay. :meth:`check` is the stateless part, for
    auditors re-verifying history.
    """

    def __init__(
        self,
        directory: Mapping[str, PublicIdentity] | Iterable[PublicIdentity],
        *,
        task_id: str,
        identity: OrgIdentity | None = None,
    ):
        if isinstance(directory, Mapping):
            self._directory = dict(directory)
        else:
            self._directory = {p.name: p for p in directory}
        for name, pub in self._directory.items():
            if name != pub.name:
                raise ValueError(f"directory key {name!r} does not match identity {pub.name!r}")
        self.task_id = task_id
        self._identity = identity
        self._slots: set[tuple[str, int, str, int]] = set()
        self._nonces: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()

    def check(
        self, env: Envelope, *, round: int | None, kind: str | Iterable[str] | None = None
    ) -> None:
        """Stateless checks: known sender, signature, task, round, kind and body hash.

        ``round=None`` accepts any round (auditing); ``kind`` restricts the accepted kinds.
        """
        sender = self._directory.get(env.sender)
        if sender is None:
            raise EnvelopeError(
                Reason.UNKNOWN_SENDER,
                f"sender {env.sender!r} is not an admitted participant of task {self.task_id!r}",
            )
        env.verify_signature(sender)
        if env.task_id != self.task_id:
            raise EnvelopeError(
                Reason.WRONG_TASK,
                f"envelope from {env.sender!r} is for task {env.task_id!r}, expected "
                f"{self.task_id!r}",
            )
        if round is not None and env.round != round:
            raise EnvelopeError(
                Reason.WRONG_ROUND,
                f"envelope from {env.sender!r} is for round {env.round}, expected {round}",
            )
        if kind is not None:
            allowed = {kind} if isinstance(kind, str) else set(kind)
            if env.kind not in allowed:
                raise EnvelopeError(
                    Reason.WRONG_KIND,
                    f"envelope from {env.sender!r} is a {env.kind!r}, expected one of "
                    f"{sorted(allowed)}",
                )
        if env.encryption is None:
            if hashlib.sha256(env.body).digest() != env.payload_sha256:
                raise EnvelopeError(
                    Reason.PAYLOAD_HASH_MISMATCH,
                    f"payload of {env.kind} from {env.sender!r} does not match its signed sha256",
                )
        elif hashlib.sha256(env.body).digest() != env.encryption.ciphertext_sha256:
            raise EnvelopeError(
                Reason.PAYLOAD_HASH_MISMATCH,
                f"ciphertext of {env.kind} from {env.sender!r} does not match its signed sha256 "
                "(tampered in transit or in storage)",
            )

    def verify(
        self, env: Envelope, *, round: int, kind: str | Iterable[str] | None = None
    ) -> bytes:
        """Full check plus replay protection; return the (decrypted) payload.

        The slot (sender, round, kind, seq) and the nonce are recorded only once the envelope
        is fully accepted.
        """
        self.check(env, round=round, kind=kind)
        slot = (env.sender, env.round, env.kind, env.seq)
        with self._lock:  # safe to share one verifier between threads
            if slot in self._slots:
                raise EnvelopeError(
                    Reason.REPLAY,
                    f"already accepted a {env.kind} (seq {env.seq}) from {env.sender!r} for "
                    f"task {env.task_id!r} round {env.round}",
                )
            if (env.sender, env.nonce) in self._nonces:
                raise EnvelopeError(
                    Reason.REPLAY, f"nonce {env.nonce.hex()} from {env.sender!r} was already used"
                )
            payload = self.open(env) if env.encryption is not None else env.body
            self._slots.add(slot)
            self._nonces.add((env.sender, env.nonce))
        return payload

    def open(self, env: Envelope) -> bytes:
        """Decrypt an encrypted envelope addressed to this verifier's identity (no other checks)."""
        return open_envelope(env, self._identity)


def open_envelope(env: Envelope, identity: OrgIdentity | None) -> bytes:
    """Decrypt ``env`` as ``identity`` and check the plaintext against the signed hash.

    Does not verify the signature: use :class:`EnvelopeVerifier` for that.
    """
    enc = env.encryption
    if enc is None:
        return env.body
    if identity is None:
        raise EnvelopeError(
            Reason.NOT_RECIPIENT,
            f"{env.kind} from {env.sender!r} is encrypted; pass the recipient's OrgIdentity",
        )
    mine = [w for w in enc.recipients if w.recipient == identity.name]
    if not mine:
        raise EnvelopeError(
            Reason.NOT_RECIPIENT,
            f"{env.kind} from {env.sender!r} is encrypted to {list(enc.recipient_names)}, "
            f"not to {identity.name!r}",
        )
    aad = _aad(env)
    try:
        eph = X25519PublicKey.from_public_bytes(enc.ephemeral_public)
        kek = _kek(
            identity.x25519_exchange(eph),
            enc.ephemeral_public,
            bytes.fromhex(identity.public.x25519),
            identity.name,
        )
        content_key = ChaCha20Poly1305(kek).decrypt(bytes(12), mine[0].wrapped, aad)
        plaintext = ChaCha20Poly1305(content_key).decrypt(enc.aead_nonce, env.body, aad)
    except (InvalidTag, ValueError) as exc:
        raise EnvelopeError(
            Reason.DECRYPTION_FAILED,
            f"cannot decrypt {env.kind} from {env.sender!r} as {identity.name!r}: the key "
            "wrap or the ciphertext fails authentication (tampered, or sealed to another key)",
        ) from exc
    if len(plaintext) != env.payload_size or (
        not hmac.compare_digest(hashlib.sha256(plaintext).digest(), env.payload_sha256)
    ):
        raise EnvelopeError(
            Reason.PAYLOAD_HASH_MISMATCH,
            f"decrypted payload of {env.kind} from {env.sender!r} does not match its signed hash",
        )
    return plaintext


# --- internals ------------------------------------------------------------------------------


def _encrypt(
    base: dict[str, object], payload: bytes, recipients: Sequence[PublicIdentity]
) -> Envelope:
    if not recipients:
        raise ValueError("recipients is empty: pass None for a clear envelope")
    names = [r.name for r in recipients]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate recipients in {names}")
    ordered = sorted(recipients, key=lambda r: r.name)
    eph = X25519PrivateKey.generate()
    eph_pub = eph.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    content_key = ChaCha20Poly1305.generate_key()
    aead_nonce = os.urandom(12)
    # AAD depends only on header fields and recipient names, so compute it on a draft first.
    draft = Envelope(
        **base,  # type: ignore[arg-type]
        body=b"",
        signature=b"",
        encryption=Encryption(
            ephemeral_public=eph_pub,
            aead_nonce=aead_nonce,
            recipients=tuple(WrappedKey(r.name, b"") for r in ordered),
            ciphertext_sha256=b"",
        ),
    )
    aad = _aad(draft)
    wrapped = []
    for r in ordered:
        recipient_pub = bytes.fromhex(r.x25519)
        kek = _kek(eph.exchange(r.x25519_key()), eph_pub, recipient_pub, r.name)
        wrapped_key = ChaCha20Poly1305(kek).encrypt(bytes(12), content_key, aad)
        wrapped.append(WrappedKey(r.name, wrapped_key))
    ciphertext = ChaCha20Poly1305(content_key).encrypt(aead_nonce, payload, aad)
    return Envelope(
        **base,  # type: ignore[arg-type]
        body=ciphertext,
        signature=b"",
        encryption=Encryption(
            ephemeral_public=eph_pub,
            aead_nonce=aead_nonce,
            recipients=tuple(wrapped),
            ciphertext_sha256=hashlib.sha256(ciphertext).digest(),
        ),
    )


def _kek(shared: bytes, eph_pub: bytes, recipient_pub: bytes, recipient: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=eph_pub + recipient_pub,
        info=b"matswarm/envelope/v1/wrap\0" + recipient.encode("utf-8"),
    ).derive(shared)


def _header_fields(env: Envelope) -> list[Any]:
    """The header fields that both the signature and the AEAD's associated data cover."""
    return [
        env.version,
        env.task_id,
        env.round,
        env.sender,
        env.kind,
        env.seq,
        env.nonce,
        env.payload_sha256,
        env.payload_size,
    ]


def _aad(env: Envelope) -> bytes:
    enc = env.encryption
    assert enc is not None
    return encode_fields(
        b"matswarm/envelope-aad/v1\0",
        [
            *_header_fields(env),
            enc.alg,
            enc.ephemeral_public,
            list(enc.recipient_names),
        ],
    )


def _signed_bytes(env: Envelope) -> bytes:
    enc = env.encryption
    return encode_fields(
        b"matswarm/envelope/v1\0",
        [
            *_header_fields(env),
            enc.alg if enc else None,
            enc.ephemeral_public if enc else None,
            enc.aead_nonce if enc else None,
            [[w.recipient, w.wrapped] for w in enc.recipients] if enc else None,
            enc.ciphertext_sha256 if enc else None,
        ],
    )


def _check_shape(env: Envelope, *, signature: bool = True) -> None:
    """Validate field types and sizes (raises EnvelopeError(malformed))."""
    problems = []
    if env.version != ENVELOPE_VERSION:
        problems.append(f"unsupported envelope version {env.version}")
    if not env.task_id or not isinstance(env.task_id, str):
        problems.append("task_id must be a non-empty string")
    if not isinstance(env.round, int) or env.round < 0:
        problems.append("round must be an integer >= 0")
    if not isinstance(env.seq, int) or env.seq < 0:
        problems.append("seq must be an integer >= 0")
    try:
        validate_org_name(env.sender)
    except ValueError as exc:
        problems.append(str(exc))
    if not isinstance(env.kind, str) or not _KIND_RE.match(env.kind):
        problems.append(f"kind {env.kind!r} must match [a-z][a-z0-9_]*")
    if len(env.nonce) != 16:
        problems.append("nonce must be 16 bytes")
    if len(env.payload_sha256) != 32:
        problems.append("payload_sha256 must be 32 bytes")
    if signature and len(env.signature) != 64:
        problems.append("signature must be 64 bytes")
    if env.encryption is not None:
        enc = env.encryption
        names = enc.recipient_names
        if enc.alg != ENC_ALG:
            problems.append(f"unsupported encryption {enc.alg!r} (expected {ENC_ALG})")
        if len(enc.ephemeral_public) != 32 or len(enc.aead_nonce) != 12:
            problems.append("bad ephemeral key or nonce length")
        if not names or list(names) != sorted(set(names)):
            problems.append("recipients must be non-empty, unique and sorted")
        if signature and (
            len(enc.ciphertext_sha256) != 32 or any(len(w.wrapped) != 48 for w in enc.recipients)
        ):
            problems.append("bad wrapped-key or ciphertext hash length")
    elif signature and len(env.body) != env.payload_size:
        problems.append("payload_size does not match the body")
    if problems:
        raise EnvelopeError(Reason.MALFORMED, "; ".join(problems))


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value
