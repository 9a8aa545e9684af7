"""Leader verification: one rotating organisation aggregates a round, the others check its claim.

In the default mode (``every-org``) each organisation fetches, verifies, decrypts and decodes all
K updates of a round and re-aggregates them itself: the strongest check, but a consortium's work
per round grows as K² (K orgs x K envelopes) and each org's own share grows with K. Swarm
Learning's merge leader and MatSwarm's enclave aggregator instead have one party aggregate.
``mode = "leader"`` does that inside the same round protocol (:mod:`matswarm.protocol.trusted`):

1. Every org publishes and commits its update exactly as before (one signed transaction per org
   and round; updates stay encrypted to every participant and auditor, so any of them can audit).
2. The round's **leader** is the ``(round - 1) mod n``-th of the committed orgs in participant
   order (everyone derives it from the spec and the ledger). It verifies every commitment,
   records its rejections on the ledger, aggregates with its replica and seals a signed
   :class:`AggregateClaim`: the start model's hash, the accepted (org, commitment hash, content
   id) triples, the rejected orgs with reasons, the new global model's hash and content id, and
   the hash and content id of the aggregator's replicated state after the step.
3. Every other org (a **follower**) checks the claim: the leader's signature, task and round,
   that the claim covers exactly the round's commitments with their on-chain hashes, that each
   update the leader rejected really fails its own check (an honest org's update cannot be
   silently dropped), and that the model and state blobs match the claimed hashes. It adopts the
   state (so it can lead a later round) and votes the claimed hash.
4. With probability ``audit_rate`` (default ``1 / (n - 1)``: one audit per round on average) a
   follower instead **audits**: it verifies every update and re-aggregates from its own replica
   as in ``every-org`` mode, and refuses the round (raises, votes nothing) if its model or state
   differs from the claim. The draw is a keyed function of the follower's own Ed25519 key, the
   task and the round (Ed25519 is deterministic), so the leader cannot predict who audits.

Cost per round: the leader does K verifications, each follower O(1) cryptography plus O(K) hash
comparisons, audits add ``audit_rate (n - 1) K`` verifications: linear in K, not K².

What it gives up: a follower that does not audit votes on the leader's word for the aggregate
itself (not for the inputs: those are the ledger's commitments, and omissions are re-checked).
A dishonest leader's wrong model is refused in a round with probability
``1 - (1 - audit_rate)^(n - 1)`` (63 % at the default and large n) and is always found
afterwards by ``matswarm verify``, which recomputes every round from the ledger and the store.
Where a wrong model must never reach the ledger at all, use ``every-org``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from matswarm.ledger import Commitment
from matswarm.protocol.codec import (
    CodecError,
    decode_aggregator_state,
    decode_vector,
    encode_aggregator_state,
)
from matswarm.protocol.messages import Update, vector_hash
from matswarm.store import StoreError
from matswarm.store.cid import cid_from_digest
from matswarm.trust import Envelope, RejectedError, seal

if TYPE_CHECKING:
    from matswarm.protocol.trusted import OrgAgent

MODES = ("every-org", "leader")
CLAIM_KIND = "aggregate_claim"
CLAIM_FORMAT = "matswarm-aggregate-claim/v1"


@dataclass(frozen=True)
class Verification:
    """How the orgs check a round: ``every-org`` (each re-aggregates everything) or
    ``leader`` (one rotating org aggregates; the others check its claim and audit it with
    probability ``audit_rate``, default ``1 / (n - 1)``)."""

    mode: str = "every-org"
    audit_rate: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"verification.mode must be one of {MODES}, got {self.mode!r}")
        if self.audit_rate is not None:
            if self.mode != "leader":
                raise ValueError("verification.audit_rate applies to mode 'leader' only")
            if isinstance(self.audit_rate, bool) or not 0.0 <= float(self.audit_rate) <= 1.0:
                raise ValueError(
                    f"verification.audit_rate must be in [0, 1], got {self.audit_rate!r}"
                )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verification:
        unknown = sorted(set(d) - {"mode", "audit_rate"})
        if unknown:
            raise ValueError(f"verification: unknown field(s) {unknown} (known: mode, audit_rate)")
        return cls(**d)

    def spec_fields(self) -> dict[str, Any] | None:
        """The task spec's ``verification`` entry; None for the default (absent from the JSON)."""
        if self.mode == "every-org":
            return None
        return {"mode": self.mode, "audit_rate": self.audit_rate}

    def rate(self, n_orgs: int) -> float:
        """The probability that one follower audits a round."""
        if self.audit_rate is not None:
            return float(self.audit_rate)
        return 1.0 / (n_orgs - 1) if n_orgs > 1 else 0.0


def leader_of(participants: Sequence[str], round_: int, committed: set[str] | frozenset) -> str:
    """The round's leader: the ``(round - 1) mod n``-th committed org in participant order."""
    candidates = [p for p in participants if p in committed]
    if not candidates:
        raise ValueError(f"round {round_}: no org committed, so no leader")
    return candidates[(round_ - 1) % len(candidates)]


def audits(agent: OrgAgent, round_: int, rate: float) -> bool:
    """Whether ``agent`` audits ``round_``: a PRF of its own signing key (deterministic, so a
    restarted org draws the same, and unpredictable to anyone without the key)."""
    if rate <= 0.0:
        return False
    msg = f"matswarm/audit-draw/v1\0{agent.task_hex}\0{round_}".encode()
    draw = int.from_bytes(hashlib.sha256(agent.identity.sign(msg)).digest()[:8], "big")
    return draw < rate * 2.0**64


@dataclass(frozen=True)
class AggregateClaim:
    """What a round's leader signs: the inputs it aggregated and what came out."""

    task: str
    round: int
    leader: str
    start: str  # hex vector hash of the model the round started from
    result: str  # hex vector hash of the new global model (its content id follows from it)
    inputs: tuple[tuple[str, str, str], ...]  # (org, commitment sha256 hex, content id)
    rejected: tuple[tuple[str, str], ...]  # (org, reason)
    state_sha256: str
    state_cid: str

    def to_bytes(self) -> bytes:
        d = {"format": CLAIM_FORMAT, **self.__dict__}
        d["inputs"] = [list(i) for i in self.inputs]
        d["rejected"] = [list(r) for r in self.rejected]
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, blob: bytes) -> AggregateClaim:
        from matswarm.protocol.trusted import ProtocolError

        try:
            d = json.loads(blob)
            if d.pop("format") != CLAIM_FORMAT:
                raise ValueError("not an aggregate claim")
            claim = cls(
                task=str(d["task"]),
                round=int(d["round"]),
                leader=str(d["leader"]),
                start=str(d["start"]),
                result=str(d["result"]),
                inputs=tuple((str(o), str(h), str(c)) for o, h, c in d["inputs"]),
                rejected=tuple((str(o), str(r)) for o, r in d["rejected"]),
                state_sha256=str(d["state_sha256"]),
                state_cid=str(d["state_cid"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed aggregate claim: {exc}") from None
        return claim


def _by_org(agent: OrgAgent, commitments: Mapping[str, Commitment]) -> dict[str, Commitment]:
    return {agent.name_of.get(addr, addr): c for addr, c in commitments.items()}


@dataclass(frozen=True)
class Lead:
    """What a round's leader produced: the content ids of its signed claim and of the
    aggregator state it claims, and the new global model (stored under its hash's id)."""

    claim_cid: str
    state_cid: str
    model: np.ndarray


def check_supported(aggregator: Any, contribution: Mapping[str, Any] | None) -> None:
    """Refuse what leader verification cannot carry, saying why (in-process and on a node)."""
    if contribution is not None:
        raise ValueError(
            "verification 'leader' cannot run contribution accounting: every org scores the "
            "round's updates on its own validation rows, so every org must hold them "
            "(use verification 'every-org')"
        )
    if getattr(aggregator, "spec_fields", None) is not None:
        raise ValueError(
            "verification 'leader' with secure aggregation is not supported: the masked "
            "updates are unmasked by every org's own sum (use verification 'every-org')"
        )
    # the leader hands its replicated state to the followers: it must be arrays
    encode_aggregator_state(aggregator.state, aggregator.previous_aggregate)


def lead_round(
    agent: OrgAgent,
    round_: int,
    previous_global: np.ndarray,
    accepted: Sequence[Update],
    commitments: Mapping[str, Commitment],
) -> Lead:
    """As the round's leader: aggregate the verified ``accepted`` updates, vote, and store the
    signed :class:`AggregateClaim` (and the state it names)."""
    new_global = agent.aggregate(round_, previous_global, accepted)
    state = encode_aggregator_state(agent.aggregator.state, agent.aggregator.previous_aggregate)
    by_org = _by_org(agent, commitments)
    taken = {u.org for u in accepted}
    claim = AggregateClaim(
        task=agent.task_hex,
        round=round_,
        leader=agent.name,
        start=vector_hash(previous_global),
        result=vector_hash(new_global),  # aggregate() stored it under this hash's content id
        inputs=tuple(
            (o, by_org[o].update_hash.hex(), by_org[o].cid)
            for o in agent.spec.participants
            if o in taken
        ),
        rejected=tuple(
            (r.org, r.reason)
            for r in agent.record.rejections
            if r.round == round_ and r.org not in taken
        ),
        state_sha256=hashlib.sha256(state).hexdigest(),
        state_cid=agent.store.put(state),
    )
    env = seal(
        agent.identity,
        task_id=agent.task_hex,
        round=round_,
        kind=CLAIM_KIND,
        payload=claim.to_bytes(),
    )
    cid = agent.store.put(env.to_bytes())
    agent.record.claims[round_] = cid
    agent.vote(round_, new_global)
    return Lead(cid, claim.state_cid, new_global)


def follow_round(
    agent: OrgAgent,
    round_: int,
    previous_global: np.ndarray,
    claim_cid: str,
    commitments: Mapping[str, Commitment],
    *,
    leader: str,
    audited: Sequence[Update] | None = None,
) -> np.ndarray:
    """As a follower: check the leader's claim (see the module docstring), adopt its state
    and vote its model; with ``audited`` (the updates this org verified itself) re-aggregate
    and compare instead. Raises :class:`~matswarm.protocol.trusted.ProtocolError` naming the
    leader when the claim is wrong; returns the round's global model."""
    from matswarm.protocol.trusted import ProtocolError

    def refuse(why: str) -> ProtocolError:
        return ProtocolError(f"round {round_}: {agent.name} refuses {leader}'s aggregate: {why}")

    env = Envelope.from_bytes(agent.store.get(claim_cid))
    if env.sender != leader:
        raise refuse(f"the claim is signed by {env.sender}, not by the round's leader")
    claim = AggregateClaim.from_bytes(agent.verifier.verify(env, round=round_, kind=CLAIM_KIND))
    if (claim.task, claim.round, claim.leader) != (agent.task_hex, round_, leader):
        raise refuse(f"the claim names task/round/leader {claim.task}/{claim.round}/{claim.leader}")
    if claim.start != vector_hash(previous_global):
        raise refuse("it starts from another model than the round's")
    by_org = _by_org(agent, commitments)
    named = [o for o, _, _ in claim.inputs] + [o for o, _ in claim.rejected]
    if sorted(named) != sorted(by_org):
        raise refuse(
            f"it covers {sorted(named)}, the round's commitments are from {sorted(by_org)}"
        )
    for org, digest, cid in claim.inputs:
        c = by_org[org]
        if (digest, cid) != (c.update_hash.hex(), c.cid):
            raise refuse(f"its input from {org} is not the update {org} committed")
    if audited is None:
        for org, _ in claim.rejected:  # an exclusion must be one this org would make too
            c = by_org[org]
            try:
                agent.check_commitment(round_, org, c.update_hash, c.cid)
            except (RejectedError, ProtocolError, StoreError, ValueError) as exc:
                agent.reject(round_, org, f"{getattr(exc, 'reason', 'invalid')}: {exc}")
            else:
                raise refuse(f"it excludes {org}'s update, which verifies")
        new_global = _fetch_model(agent, claim, refuse)
        _adopt_state(agent, claim, refuse)
    else:
        mine = sorted(u.org for u in audited)
        if mine != sorted(o for o, _, _ in claim.inputs):
            raise refuse(
                f"it aggregates {sorted(o for o, _, _ in claim.inputs)}, this org accepts {mine}"
            )
        new_global = agent.aggregate(round_, previous_global, audited)
        state = encode_aggregator_state(agent.aggregator.state, agent.aggregator.previous_aggregate)
        if vector_hash(new_global) != claim.result:
            raise refuse("its model is not the aggregate of the accepted updates (audited)")
        if hashlib.sha256(state).hexdigest() != claim.state_sha256:
            raise refuse("its aggregator state is not this org's replica's (audited)")
        agent.record.audits.append(round_)
    agent.vote(round_, new_global)
    return new_global


def _fetch_model(agent: OrgAgent, claim: AggregateClaim, refuse) -> np.ndarray:
    cid = cid_from_digest(bytes.fromhex(claim.result))
    try:
        model = decode_vector(agent.store.get(cid))  # the store checks the content id
    except (StoreError, CodecError, ValueError) as exc:
        raise refuse(f"its model blob does not have the claimed hash ({cid}: {exc})") from None
    return model


def _adopt_state(agent: OrgAgent, claim: AggregateClaim, refuse) -> None:
    """Take the leader's replicated state, after checking its hash and that it has the shape
    of this org's own (so a follower can lead or audit a later round)."""
    try:
        blob = agent.store.get(claim.state_cid)
        if hashlib.sha256(blob).hexdigest() != claim.state_sha256:
            raise CodecError("the blob does not have the claimed hash")
        state, previous = decode_aggregator_state(blob)
    except (StoreError, CodecError) as exc:
        raise refuse(f"its aggregator state {claim.state_cid} is unusable: {exc}") from None
    own = agent.aggregator.state
    if sorted(state) != sorted(own) or any(
        state[k].shape != np.shape(own[k]) or state[k].dtype != np.asarray(own[k]).dtype
        for k in state
    ):
        raise refuse("its aggregator state does not have this algorithm's arrays")
    agent.aggregator.state = {k: v.copy() for k, v in state.items()}
    agent.aggregator.previous_aggregate = None if previous is None else previous.copy()


__all__ = [
    "CLAIM_KIND",
    "MODES",
    "AggregateClaim",
    "Lead",
    "Verification",
    "audits",
    "check_supported",
    "follow_round",
    "lead_round",
    "leader_of",
]
