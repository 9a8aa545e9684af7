"""Secure aggregation: pairwise-masked sums with dropout recovery (Bonawitz et al. 2017).

What each party learns. Every org ``i`` of a round sends only ``y_i = e_i + PRG(b_i) +
sum_{j != i} s(i, j) PRG(k_ij)  (mod 2^32)``, where ``e_i`` is its weighted update in fixed point,
``b_i`` a fresh self-mask seed, ``k_ij`` a key both ``i`` and ``j`` derive from an X25519
agreement of per-round mask keys, and ``s(i, j) = +1`` if ``i`` precedes ``j`` in the task's
participant order, else ``-1``. The pairwise masks cancel in the sum, so ``sum_i y_i`` minus the
revealed self masks is ``sum_i e_i`` **exactly** (integer arithmetic in Z_{2^32}: the unmasked
sum is bit-identical to the sum of the unmasked encodings). The relay and every org see the
``y_i``, the signed public mask keys and, after the masked inputs are in, the revealed shares:
each single ``y_i`` stays uniformly distributed for anyone who lacks both ``b_i`` and all of
``i``'s pairwise keys, which no single party holds (an org knows only its own pairwise keys, so
with ``K >= 3`` another org's input is still hidden by the pairwise masks it does not share).

Rounds (the relay only routes bytes; every message is an Ed25519-signed envelope of
:mod:`matswarm.trust.envelope`, verified by its receiver):

0. ``secagg_keys``: org ``i`` advertises a fresh X25519 mask public key and its sample count.
1. ``secagg_shares``: ``i`` Shamir-shares ``b_i`` and its mask private key (threshold ``t``,
   default ``floor(K/2) + 1``) and sends org ``j``'s share encrypted to ``j``'s long-term
   X25519 key (ChaCha20-Poly1305 in the envelope), so the relay cannot read any share.
2. masked input ``y_i`` (the org's update, kind ``"masked"``; this is what the trust layer
   signs, stores and commits on the ledger).
3. ``secagg_reveal``: once the survivors are fixed, each survivor reveals its shares of the
   survivors' ``b`` and of the dropped orgs' mask private keys. A client never reveals both
   for the same org (that would unmask that org's input), reveals only once per round, and
   never for fewer than 3 survivors (two could read each other's input from their sum).

Anyone holding the masked inputs and the signed transcript (keys and reveals) recomputes the
sum (:func:`unmask_sum`): that is how every org, and ``verify``, re-derives the global model.
A reconstructed mask private key must match its advertised public key, and extra shares beyond
``t`` must lie on the same polynomial, so a wrong share is detected, not silently summed.

Threat model: semi-honest orgs and relay (honest-but-curious). A malicious relay that lies about
who dropped could ask survivors for both kinds of share for different orgs; clients check that
the survivor and dropped sets partition the advertised orgs and that they reveal only once, but
the consistency round of the malicious-secure protocol (signed survivor lists) is not built.

Why not Flower's SecAgg+ (``secaggplus_mod`` / ``SecAggPlusWorkflow``): it exists only on
Flower's legacy NumPyClient/strategy path, it yields only the relay's sum (our orgs each
recompute and vote, and ``verify`` re-derives it from the ledger), and its masks come from
``numpy.random.RandomState`` seeded with a 32-bit fold of the key: 2^32 possible masks from a
non-cryptographic generator (see ``shared/notes/robust-aggregation-and-privacy.md`` §3.3). So
the protocol is built here on ``cryptography`` (X25519, HKDF-SHA256, ChaCha20 as the mask PRG)
with Shamir sharing over GF(2^521 - 1); no maintained standalone library implements it. The
messages are plain bytes, so one implementation serves any transport.

What it is incompatible with: every rule that needs individual updates (median, trimmed mean,
Krum, MultiKrum, geometric median, centered clipping, Bulyan, NNM): only the sample-weighted
mean survives (:func:`require_sum_rule` refuses the others, saying why); with ``K = 2`` the sum
minus one's own update *is* the other's update, so fewer than 3 orgs are refused too.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from matswarm.trust import Envelope, EnvelopeVerifier, OrgIdentity, PublicIdentity, seal
from matswarm.trust.envelope import open_envelope

#: Bits of the ring the masked words live in (Z_{2^32}); a masked update is one uint32 per
#: coordinate, the same size on the wire as float32.
MOD_BITS = 32
#: The Mersenne prime 2^521 - 1: Shamir's field (secrets are 256-bit, far below it).
PRIME = (1 << 521) - 1
KEYS_KIND = "secagg_keys"
SHARES_KIND = "secagg_shares"
REVEAL_KIND = "secagg_reveal"
MIN_ORGS = 3


class SecAggError(ValueError):
    """The secure-aggregation round cannot proceed safely (the message says which rule)."""


@dataclass(frozen=True)
class SecAggConfig:
    """Fixed-point range and Shamir threshold.

    ``clip``: every coordinate of an update is clipped to ``[-clip, clip]`` before encoding (the
    encoding is scaled so that the sum of the K weighted inputs cannot wrap around); clipped
    coordinates are counted in :attr:`SecAggClient.clipped`. ``threshold``: shares needed to
    recover a seed (``None``: ``floor(K/2) + 1``).
    """

    clip: float = 1.0
    threshold: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.clip, int | float) and self.clip > 0):
            raise SecAggError(f"secure aggregation: clip must be > 0, got {self.clip!r}")
        if self.threshold is not None and self.threshold < 2:
            raise SecAggError(
                f"secure aggregation: threshold must be >= 2 (1 would hand any single org "
                f"every seed), got {self.threshold}"
            )

    @property
    def scale(self) -> float:
        # |sum_i w_i x_i| <= clip with weights summing to 1: 2 bits of headroom below 2^31.
        return float(1 << (MOD_BITS - 2)) / float(self.clip)

    def threshold_for(self, k: int) -> int:
        t = self.threshold if self.threshold is not None else k // 2 + 1
        if t > k:
            raise SecAggError(f"secure aggregation: threshold {t} exceeds the {k} orgs")
        return t


# -- fixed point in Z_{2^32} ------------------------------------------------------------------
def encode_fixed(x: np.ndarray, weight: float, config: SecAggConfig) -> tuple[np.ndarray, int]:
    """``round(scale * weight * clip(x))`` as uint32 words (two's complement); also the number
    of clipped coordinates."""
    v = np.asarray(x, dtype=np.float64)
    clipped = int(np.count_nonzero(np.abs(v) > config.clip))
    v = np.clip(v, -config.clip, config.clip)
    q = np.rint(v * (weight * config.scale)).astype(np.int64)
    return (q & 0xFFFFFFFF).astype(np.uint32), clipped


def decode_fixed(words: np.ndarray, config: SecAggConfig) -> np.ndarray:
    """The float64 value of a (summed) fixed-point word vector."""
    return np.asarray(words, dtype=np.uint32).view(np.int32).astype(np.float64) / config.scale


# -- keys and the mask PRG --------------------------------------------------------------------
def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def prg_words(key: bytes, d: int) -> np.ndarray:
    """``d`` uint32 words of the ChaCha20 keystream under ``key`` (a CSPRNG; each key is used
    for one mask only, because its HKDF info binds task, round and the pair, so a zero nonce
    is safe)."""
    enc = Cipher(algorithms.ChaCha20(key, b"\0" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(b"\0" * (4 * d)), dtype="<u4").astype(np.uint32)


def _pair_key(shared: bytes, context: str, a: str, b: str) -> bytes:
    return _hkdf(shared, b"matswarm-secagg/v1/pair\0" + f"{context}\0{a}\0{b}".encode())


def _self_key(seed: bytes, context: str, org: str) -> bytes:
    return _hkdf(seed, b"matswarm-secagg/v1/self\0" + f"{context}\0{org}".encode())


def _raw_private(sk: X25519PrivateKey) -> bytes:
    return sk.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def _raw_public(pk: X25519PublicKey) -> bytes:
    return pk.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


# -- Shamir over GF(2^521 - 1) ----------------------------------------------------------------
def shamir_split(secret: bytes, xs: Sequence[int], t: int) -> dict[int, int]:
    """Shares ``{x: f(x)}`` of a random degree ``t-1`` polynomial with ``f(0) = secret``."""
    s = int.from_bytes(secret, "big")
    if s >= PRIME:
        raise SecAggError("secret does not fit Shamir's field")
    coeffs = [s] + [secrets.randbelow(PRIME) for _ in range(t - 1)]
    out = {}
    for x in xs:
        y = 0
        for c in reversed(coeffs):  # Horner
            y = (y * x + c) % PRIME
        out[x] = y
    return out


def _lagrange_at(points: Mapping[int, int], at: int) -> int:
    total = 0
    for xi, yi in points.items():
        num, den = 1, 1
        for xj in points:
            if xj != xi:
                num = num * (at - xj) % PRIME
                den = den * (xi - xj) % PRIME
        total = (total + yi * num * pow(den, -1, PRIME)) % PRIME
    return total


def shamir_combine(shares: Mapping[int, int], t: int, what: str, length: int = 32) -> bytes:
    """The secret from at least ``t`` shares; every share beyond ``t`` must lie on the same
    polynomial (else :class:`SecAggError`: a revealer sent a wrong share)."""
    if len(shares) < t:
        raise SecAggError(f"{what}: {len(shares)} share(s) revealed, {t} needed")
    xs = sorted(shares)
    base = {x: shares[x] for x in xs[:t]}
    for x in xs[t:]:
        if _lagrange_at(base, x) != shares[x]:
            raise SecAggError(f"{what}: revealed shares are inconsistent (share at x={x})")
    return _lagrange_at(base, 0).to_bytes(length, "big")


# -- the protocol -----------------------------------------------------------------------------
def _context(task: str, round_: int) -> str:
    return f"{task}|{round_}"


def _check_orgs(participants: Sequence[str]) -> None:
    if len(participants) < MIN_ORGS:
        raise SecAggError(
            f"secure aggregation needs at least {MIN_ORGS} organisations, the task has "
            f"{len(participants)}: with 2, the sum minus one's own update is the other's update"
        )


@dataclass(frozen=True)
class Advert:
    org: str
    public_key: bytes
    n_samples: int


def _verified(
    blob: bytes,
    verifier: EnvelopeVerifier | None,
    round_: int,
    kind: str,
    sender: str | None = None,
) -> Envelope:
    """Parse an envelope and check it (``verifier=None``: parse only, for a relay, which
    holds no directory and whose result the orgs re-check)."""
    env = Envelope.from_bytes(blob)
    if verifier is not None:
        verifier.check(env, round=round_, kind=kind)
    elif env.round != round_ or env.kind != kind:
        raise SecAggError(f"expected a {kind} of round {round_}, got {env.kind} of {env.round}")
    if sender is not None and env.sender != sender:
        raise SecAggError(f"{kind} message from {sender} is signed by {env.sender}")
    return env


def read_adverts(
    blobs: Mapping[str, bytes], verifier: EnvelopeVerifier | None, round_: int
) -> dict[str, Advert]:
    out = {}
    for org, blob in blobs.items():
        env = _verified(blob, verifier, round_, KEYS_KIND, org)
        d = json.loads(env.body)
        out[org] = Advert(org, bytes.fromhex(d["mask_pk"]), int(d["n_samples"]))
    return out


class SecAggClient:
    """One organisation's side of one secure-aggregation round (its secrets never leave it,
    except as Shamir shares encrypted to each peer and as the reveals of round 3)."""

    def __init__(
        self,
        identity: OrgIdentity,
        participants: Sequence[str],
        directory: Mapping[str, PublicIdentity],
        task: str,
        round_: int,
        config: SecAggConfig,
    ):
        _check_orgs(participants)
        if identity.name not in participants:
            raise SecAggError(f"{identity.name} is not a participant of task {task}")
        self.identity = identity
        self.name = identity.name
        self.order = list(participants)
        self.directory = dict(directory)
        self.task = task
        self.round = round_
        self.config = config
        self.verifier = EnvelopeVerifier(self.directory, task_id=task, identity=identity)
        self._mask_sk = X25519PrivateKey.generate()
        self._seed = os.urandom(32)
        self.adverts: dict[str, Advert] = {}
        #: shares this org holds for each peer: ``{peer: {"b": y, "sk": y}}`` at x = own index+1
        self.held: dict[str, dict[str, int]] = {}
        self.clipped = 0
        self._revealed = False

    @property
    def x(self) -> int:
        return self.order.index(self.name) + 1

    def advertise(self, n_samples: int) -> bytes:
        body = json.dumps(
            {"mask_pk": _raw_public(self._mask_sk.public_key()).hex(), "n_samples": n_samples},
            sort_keys=True,
        ).encode()
        return seal(
            self.identity, task_id=self.task, round=self.round, kind=KEYS_KIND, payload=body
        ).to_bytes()

    def share_keys(self, adverts: Mapping[str, bytes]) -> dict[str, bytes]:
        """Check the adverts, then share ``b`` and the mask private key with every advertised
        org (each share encrypted to its recipient)."""
        self.adverts = read_adverts(adverts, self.verifier, self.round)
        if self.name not in self.adverts:
            raise SecAggError(f"{self.name}'s own key advert is missing from the round")
        _check_orgs(list(self.adverts))
        t = self.config.threshold_for(len(self.adverts))
        xs = [self.order.index(o) + 1 for o in self.adverts]
        b = shamir_split(self._seed, xs, t)
        sk = shamir_split(_raw_private(self._mask_sk), xs, t)
        out = {}
        for org in self.adverts:
            x = self.order.index(org) + 1
            if org == self.name:
                self.held[org] = {"b": b[x], "sk": sk[x]}
                continue
            body = json.dumps({"b": hex(b[x]), "sk": hex(sk[x])}).encode()
            out[org] = seal(
                self.identity,
                task_id=self.task,
                round=self.round,
                kind=SHARES_KIND,
                payload=body,
                recipients=[self.directory[org]],
            ).to_bytes()
        return out

    def receive_shares(self, blobs: Mapping[str, bytes]) -> None:
        missing = set(self.adverts) - set(blobs) - {self.name}
        if missing:
            raise SecAggError(f"{self.name} got no key shares from {sorted(missing)}")
        for sender, blob in blobs.items():
            env = _verified(blob, self.verifier, self.round, SHARES_KIND, sender)
            d = json.loads(open_envelope(env, self.identity))
            self.held[sender] = {"b": int(d["b"], 16), "sk": int(d["sk"], 16)}

    def mask(self, vector: np.ndarray, n_samples: int) -> np.ndarray:
        """The masked input ``y_i`` (uint32 words) of this org's update."""
        if n_samples != self.adverts[self.name].n_samples:
            raise SecAggError(f"{self.name} advertised {self.adverts[self.name].n_samples} rows")
        total = sum(a.n_samples for a in self.adverts.values())
        y, self.clipped = encode_fixed(vector, n_samples / total, self.config)
        d = y.size
        ctx = _context(self.task, self.round)
        y += prg_words(_self_key(self._seed, ctx, self.name), d)
        me = self.order.index(self.name)
        for org, adv in self.adverts.items():
            if org == self.name:
                continue
            shared = self._mask_sk.exchange(X25519PublicKey.from_public_bytes(adv.public_key))
            j = self.order.index(org)
            a, b = (self.name, org) if me < j else (org, self.name)
            m = prg_words(_pair_key(shared, ctx, a, b), d)
            if me < j:
                y += m
            else:
                y -= m
        return y

    def reveal(self, survivors: Collection[str], dropped: Collection[str]) -> bytes:
        """Round 3: shares of the survivors' seeds and of the dropped orgs' mask keys."""
        surv, drop = set(survivors), set(dropped)
        if self._revealed:
            raise SecAggError(f"{self.name} already revealed its shares for round {self.round}")
        if surv & drop or surv | drop != set(self.adverts):
            raise SecAggError(
                f"{self.name} refuses to reveal: survivors {sorted(surv)} and dropped "
                f"{sorted(drop)} must partition the round's orgs {sorted(self.adverts)} "
                "(revealing both shares of one org would unmask its update)"
            )
        if self.name not in surv:
            raise SecAggError(f"{self.name} is listed as dropped and reveals nothing")
        if len(surv) < MIN_ORGS:
            raise SecAggError(
                f"{self.name} refuses to reveal: only {len(surv)} survivors, and the sum of two "
                "updates hands each of them the other's"
            )
        t = self.config.threshold_for(len(self.adverts))
        if len(surv) < t:
            raise SecAggError(f"only {len(surv)} survivors, threshold {t}: the round fails")
        self._revealed = True
        body = json.dumps(
            {
                "survivors": sorted(surv),
                "dropped": sorted(drop),
                "b": {o: hex(self.held[o]["b"]) for o in sorted(surv)},
                "sk": {o: hex(self.held[o]["sk"]) for o in sorted(drop)},
            },
            sort_keys=True,
        ).encode()
        return seal(
            self.identity, task_id=self.task, round=self.round, kind=REVEAL_KIND, payload=body
        ).to_bytes()


@dataclass
class Transcript:
    """The public, signed part of one round: key adverts and reveals (org -> envelope bytes)."""

    adverts: dict[str, bytes] = field(default_factory=dict)
    reveals: dict[str, bytes] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        doc = {
            "format": "matswarm-secagg-transcript/v1",
            "adverts": {k: v.hex() for k, v in sorted(self.adverts.items())},
            "reveals": {k: v.hex() for k, v in sorted(self.reveals.items())},
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> Transcript:
        doc = json.loads(blob)
        if doc.get("format") != "matswarm-secagg-transcript/v1":
            raise SecAggError(f"not a secure-aggregation transcript: {doc.get('format')!r}")
        return cls(
            {k: bytes.fromhex(v) for k, v in doc["adverts"].items()},
            {k: bytes.fromhex(v) for k, v in doc["reveals"].items()},
        )


@dataclass(frozen=True)
class UnmaskedSum:
    words: np.ndarray  # sum of the survivors' fixed-point encodings, uint32
    total_samples: int  # sum over every advertised org (the encoding's weight denominator)
    survivor_samples: int

    def weighted_mean(self, config: SecAggConfig) -> np.ndarray:
        """The survivors' sample-weighted mean update (float32)."""
        s = decode_fixed(self.words, config) * (self.total_samples / self.survivor_samples)
        return s.astype(np.float32)


def unmask_sum(
    masked: Mapping[str, np.ndarray],
    transcript: Transcript,
    participants: Sequence[str],
    directory: Mapping[str, PublicIdentity] | None,
    task: str,
    round_: int,
    config: SecAggConfig,
) -> UnmaskedSum:
    """Sum the survivors' masked inputs and remove every mask, checking the signed transcript:
    what each org (and an auditor) runs. ``directory=None`` skips the signature checks (a
    relay without keys; every org re-checks)."""
    verifier = None if directory is None else EnvelopeVerifier(dict(directory), task_id=task)
    adverts = read_adverts(transcript.adverts, verifier, round_)
    survivors = set(masked)
    dropped = set(adverts) - survivors
    if not survivors <= set(adverts):
        raise SecAggError(
            f"masked inputs from orgs without a key advert: {survivors - set(adverts)}"
        )
    t = config.threshold_for(len(adverts))
    b_shares: dict[str, dict[int, int]] = {o: {} for o in survivors}
    sk_shares: dict[str, dict[int, int]] = {o: {} for o in dropped}
    for revealer, blob in transcript.reveals.items():
        env = _verified(blob, verifier, round_, REVEAL_KIND, revealer)
        d = json.loads(env.body)
        if set(d["survivors"]) != survivors or set(d["dropped"]) != dropped:
            raise SecAggError(f"{revealer} revealed for another survivor set: {d['survivors']}")
        x = list(participants).index(revealer) + 1
        for o, y in d["b"].items():
            b_shares[o][x] = int(y, 16)
        for o, y in d["sk"].items():
            sk_shares[o][x] = int(y, 16)
    ctx = _context(task, round_)
    d = next(iter(masked.values())).size
    acc = np.zeros(d, dtype=np.uint32)
    for org in sorted(survivors, key=participants.index):
        y = np.asarray(masked[org], dtype=np.uint32)
        if y.size != d:
            raise SecAggError(f"masked input of {org} has {y.size} words, expected {d}")
        acc += y
    for org in survivors:
        seed = shamir_combine(b_shares[org], t, f"self-mask seed of {org}")
        acc -= prg_words(_self_key(seed, ctx, org), d)
    for gone in dropped:
        raw = shamir_combine(sk_shares[gone], t, f"mask key of dropped {gone}")
        sk = X25519PrivateKey.from_private_bytes(raw)
        if _raw_public(sk.public_key()) != adverts[gone].public_key:
            raise SecAggError(f"reconstructed mask key of {gone} does not match its advert")
        g = participants.index(gone)
        for org in survivors:
            shared = sk.exchange(X25519PublicKey.from_public_bytes(adverts[org].public_key))
            i = participants.index(org)
            a, b = (org, gone) if i < g else (gone, org)
            m = prg_words(_pair_key(shared, ctx, a, b), d)
            if i < g:  # org added this mask for the pair: take it out
                acc -= m
            else:
                acc += m
    return UnmaskedSum(
        acc,
        sum(a.n_samples for a in adverts.values()),
        sum(adverts[o].n_samples for o in survivors),
    )
