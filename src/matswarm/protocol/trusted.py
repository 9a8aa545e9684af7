"""The trust layer inside the round: signed (and encrypted) updates in a content-addressed store,
commitments and votes on the ledger, every organisation verifying and re-aggregating itself.

Per round, for each organisation ``O`` (an :class:`OrgAgent`):

1. **publish**: ``O`` seals its update (Ed25519 signature over task, round, sender, kind and the
   payload hash; ChaCha20-Poly1305 encryption to every participant and auditor when the task
   says so), puts the envelope in the artifact store (content id ``c``) and commits
   ``sha256(envelope)`` and ``c`` on the ledger. The contract binds the commitment to ``O``'s
   account and accepts one per round.
2. **verify**: ``O`` takes every commitment of the round (from the ledger, or from the
   round's transactions still waiting to be mined: see :class:`TrustedHooks`), fetches
   each envelope by content id (the store checks the hash), checks it equals the committed
   hash, that the signer is the committing org's registered key, and task/round/kind; it
   decrypts and decodes the update. A bad update is rejected with its reason, and the
   rejection is recorded on the ledger.
3. **aggregate and vote**: ``O`` runs the task's rule and server step on the accepted updates in
   participant order (its own :class:`~matswarm.protocol.aggregator.Aggregator` replica), puts
   the new global model in the store (its content id follows from its hash) and votes the hash.
   The vote that brings a hash to quorum (at least ceil(2n/3) participants) finalises the round.
   With the (simulated) enclave on, aggregation runs inside it and yields a quote over the code
   measurement, the update hashes and the output hash.

One signed transaction per org and round (:attr:`OrgAgent.combine`, the in-process default):
``O``'s vote on round ``r`` waits for its commitment of round ``r + 1`` (trained on the model it
votes for) and both go out as one ``voteAndCommit``; the contract holds the commitment until
the quorum finalises ``r``. Round 1 is a plain commitment and the last round's vote a plain
vote. The ledger's verdict on round ``r`` is therefore checked when round ``r + 1``'s
transactions are mined (a disagreement stops the task one round later than with separate
transactions, before anything builds on the unconfirmed round: the next round's aggregate is
only voted on, never final, until then).

With ``verification = {"mode": "leader"}`` in the spec, steps 2 and 3 are done by the round's
rotating leader only; the other orgs check its signed aggregate claim and audit it at random
(linear instead of quadratic work per round; :mod:`matswarm.protocol.leader` says what that
gives up).

Ring intermediates (MatSwarm) travel as envelopes encrypted to the successor and are verified
on arrival; they are not recorded on the ledger.

What this proves, and what not: signatures and the ledger show who committed what and that the
agreed global model is the deterministic aggregate of those commitments; they do not show that
an org trained honestly on honest data. The embedded chain gives no consensus guarantees (one
process holds it); the simulated enclave proves code identity, not hardware isolation.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from matswarm.algorithms.base import LocalResult, RingMessage
from matswarm.ledger import (
    Batch,
    BatchError,
    Commitment,
    Ledger,
    LedgerError,
    Pending,
    TxCall,
    TxResult,
)
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.attestation import AttestationPolicy
from matswarm.protocol.codec import (
    decode_ring,
    decode_update,
    encode_ring,
    encode_update,
    encode_vector,
)
from matswarm.protocol.engine import RoundHooks
from matswarm.protocol.messages import Update, vector_hash
from matswarm.protocol.spec import TaskSpec
from matswarm.store import BlobStore, StoreError
from matswarm.trust import (
    SIMULATED_NOTE,
    Envelope,
    EnvelopeVerifier,
    OrgIdentity,
    PublicIdentity,
    Quote,
    RejectedError,
    SimulatedEnclave,
    seal,
)

UPDATE_KIND = "local_update"
RING_KIND = "ring_intermediate"


def report_envelope_kind(kind: str) -> str:
    """The envelope kind of a report anchored under ledger kind ``kind`` (envelope kinds are
    identifiers: ``dp-epsilon`` travels as ``dp_epsilon``)."""
    return kind.replace("-", "_")


class ProtocolError(RuntimeError):
    """The round could not complete as the protocol requires (names the round and the cause)."""


def org_metadata(identity: PublicIdentity) -> str:
    """What an org records on the ledger beside its keys: its name (the keys are separate)."""
    return json.dumps({"name": identity.name}, sort_keys=True, separators=(",", ":"))


def directory_from_ledger(ledger: Ledger, addresses: Sequence[str]) -> dict[str, PublicIdentity]:
    """Registered public identities of ``addresses``, keyed by org name."""
    out: dict[str, PublicIdentity] = {}
    for addr in addresses:
        info = ledger.org_info(addr)
        try:
            name = json.loads(info.metadata)["name"]
        except (ValueError, KeyError, TypeError):
            raise ProtocolError(
                f"org {addr} has no name in its ledger metadata; run `matswarm org register`"
            ) from None
        out[name] = PublicIdentity(name, info.ed25519.hex(), info.x25519.hex(), addr)
    return out


@dataclass
class Rejection:
    round: int
    org: str
    reason: str


@dataclass
class AgentRecord:
    """What an org keeps about its own part in a task (for the model card)."""

    commit_txs: dict[int, str] = field(default_factory=dict)
    vote_txs: dict[int, str] = field(default_factory=dict)
    quotes: dict[int, str] = field(default_factory=dict)  # round -> quote content id
    rejections: list[Rejection] = field(default_factory=list)
    #: round -> {kind: content id} of the reports this org anchored (e.g. "dp-epsilon").
    reports: dict[int, dict[str, str]] = field(default_factory=dict)
    #: Leader verification: round -> content id of the aggregate claims this org signed, and
    #: the rounds in which it audited the leader (:mod:`matswarm.protocol.leader`).
    claims: dict[int, str] = field(default_factory=dict)
    audits: list[int] = field(default_factory=list)


class OrgAgent:
    """One organisation's trust client for one task: its keys, its ledger account, the store it
    reads and writes, its verifier and its replica of the aggregator."""

    def __init__(
        self,
        identity: OrgIdentity,
        ledger: Ledger,
        store: BlobStore,
        spec: TaskSpec,
        task_id: bytes,
        directory: dict[str, PublicIdentity],
        aggregator: Aggregator,
        enclave: SimulatedEnclave | None = None,
        attestation: AttestationPolicy | None = None,
    ):
        self.identity = identity
        self.name = identity.name
        self.ledger = ledger.with_account(identity.evm_account())
        self.store = store
        self.spec = spec
        self.task_id = task_id
        self.task_hex = "0x" + task_id.hex()
        self.directory = directory
        self.verifier = EnvelopeVerifier(directory, task_id=self.task_hex, identity=identity)
        self.aggregator = aggregator
        self.enclave = enclave
        self.attestation = attestation
        #: Hash of the model the current round started from (quotes must name it).
        self.start_hash = spec.initial_model_sha256
        self.address_of = {name: pub.evm_address for name, pub in directory.items()}
        self.name_of = {pub.evm_address: name for name, pub in directory.items()}
        readers = [*spec.participants, *spec.auditors]
        self.recipients = [directory[n] for n in readers] if spec.encrypt_updates else None
        self.record = AgentRecord()
        #: The round a restarted task continues in (commit and vote become idempotent there).
        self.resume_round: int | None = None
        #: When set, this org's ledger transactions (signed by its own account) are queued here
        #: and sent by the batch's owner, together with the other orgs' (one block on the
        #: embedded chain); :meth:`settle` then records their outcome.
        self.batch: Batch | None = None
        self._queued: list[tuple[str, int, Pending]] = []
        #: This org's commitment of the round while it waits in :attr:`batch` (not yet mined).
        self.queued_commitment: Commitment | None = None
        #: Send the vote on round r with the commitment of round r + 1, in one transaction.
        self.combine = False
        #: ``(round, global hash)`` of the vote waiting for this org's next commitment.
        self.held_vote: tuple[int, bytes] | None = None
        #: Round -> global hash of the rounds this org's mined votes finalised (hex).
        self.finalized: dict[int, str] = {}

    # -- 1. publish ---------------------------------------------------------------------------
    def publish(self, update: Update) -> str | None:
        """Seal, store and commit this org's update; returns the content id.

        In the round a restarted task resumes (:attr:`resume_round`), an org that had already
        committed before the process died sends nothing: the ledger's commitment stands.
        """
        held, self.held_vote = self.held_vote, None
        if held is not None and held[0] != update.round - 1:
            raise ProtocolError(
                f"{self.name}: the vote held for round {held[0]} cannot go with the "
                f"commitment of round {update.round}"
            )
        if self.resume_round is not None and update.round in (
            self.resume_round,
            self.resume_round + 1,  # sent ahead with a vote mined before the restart
        ):
            done = self.ledger.commitments(self.task_id, update.round)
            if self.identity.evm_address in done:
                if held is not None:  # the commitment stands; the vote goes alone
                    self._send("vote", held[0], self.ledger.tx.vote_global(self.task_id, *held))
                return done[self.identity.evm_address].cid
        env = seal(
            self.identity,
            task_id=self.task_hex,
            round=update.round,
            kind=UPDATE_KIND,
            payload=encode_update(update),
            recipients=self.recipients,
        )
        blob = env.to_bytes()
        cid = self.store.put(blob)
        digest = hashlib.sha256(blob).digest()
        if held is not None:
            call = self.ledger.tx.vote_and_commit(self.task_id, held[0], held[1], digest, cid)
            self._send("vote+commit", update.round, call)
        else:
            call = self.ledger.tx.commit_update(self.task_id, update.round, digest, cid)
            self._send("commit", update.round, call)
        if self.batch is not None:
            self.queued_commitment = Commitment(self.identity.evm_address, digest, cid, -1, "")
        return cid

    def report(self, round_: int, kind: str, document: bytes) -> str:
        """Sign ``document`` (a per-round report, e.g. the DP spend), store it and anchor its
        hash and content id on the ledger under ``kind``; returns the content id."""
        env = seal(
            self.identity,
            task_id=self.task_hex,
            round=round_,
            kind=report_envelope_kind(kind),
            payload=document,
        )
        cid = self.record_report(round_, kind, env.to_bytes())
        self.record.reports.setdefault(round_, {})[kind] = cid
        return cid

    def report_result(self, round_: int, result: Any) -> None:
        """Sign and anchor the reports a participant attaches to its result (its DP spend,
        :class:`matswarm.privacy.dp.PrivateResult`); in-process and on a Flower node alike."""
        for kind, document in getattr(result, "reports", ()):
            self.report(round_, kind, document)

    def _send(self, kind: str, round_: int, call: TxCall) -> None:
        """Send one of this org's transactions now, or queue it in :attr:`batch`."""
        if self.batch is not None:
            self._queued.append((kind, round_, self.batch.add(call)))
            return
        self._record(kind, round_, self.ledger.send(call))

    def _record(self, kind: str, round_: int, tx: TxResult) -> None:
        for event in tx.events:
            if event.name == "RoundFinalized":  # the deciding vote carries the verdict
                self.finalized[int(event.args["round"])] = str(
                    event.args["globalHash"]
                ).removeprefix("0x")
        if kind == "commit":
            self.record.commit_txs[round_] = tx.tx_hash
        elif kind == "vote":
            self.record.vote_txs[round_] = tx.tx_hash
        elif kind == "vote+commit":  # the vote on round_ - 1 and the commitment of round_
            self.record.commit_txs[round_] = tx.tx_hash
            self.record.vote_txs[round_ - 1] = tx.tx_hash

    def settle(self, *, raise_failure: bool = True) -> LedgerError | None:
        """Record the outcome of this org's queued transactions once their batch was sent.

        Every mined transaction is recorded; the first failure (the contract's reason) is
        raised, like an unbatched send would, or returned when ``raise_failure`` is off."""
        queued, self._queued = self._queued, []
        self.queued_commitment = None
        failure = None
        for kind, round_, pending in queued:
            try:
                self._record(kind, round_, pending.result())
            except LedgerError as exc:
                failure = failure or exc
        if failure is not None and raise_failure:
            raise failure
        return failure

    # -- 2. verify ----------------------------------------------------------------------------
    def collect(
        self, round_: int, commitments: Mapping[str, Commitment] | None = None
    ) -> list[Update]:
        """Verify every commitment of ``round_``; record and drop the bad ones.

        ``commitments`` are the round's commitments as read from the ledger (read here when
        not given; in-process organisations sharing one ledger connection share one read)."""
        if commitments is None:
            commitments = self.ledger.commitments(self.task_id, round_)
        accepted = []
        for addr, c in sorted(commitments.items(), key=lambda kv: self._order(kv[0])):
            org = self.name_of.get(addr, addr)
            try:
                accepted.append(self.check_commitment(round_, org, c.update_hash, c.cid))
            except (RejectedError, ProtocolError, StoreError, ValueError) as exc:
                self.reject(round_, org, f"{getattr(exc, 'reason', 'invalid')}: {exc}")
        return accepted

    def reject(self, round_: int, org: str, reason: str) -> None:
        """Record (here and on the ledger) that this org refuses ``org``'s update of the round."""
        reason = reason[:250]
        self.record.rejections.append(Rejection(round_, org, reason))
        addr = self.address_of.get(org, org)
        self._send(
            "rejection", round_, self.ledger.tx.record_rejection(self.task_id, round_, addr, reason)
        )

    def record_report(self, round_: int, kind: str, blob: bytes) -> str:
        """Put a report (scores, contributions, ...) in the store and anchor its sha256 and
        content id on the ledger under ``kind``; returns the content id."""
        cid = self.store.put(blob)
        digest = hashlib.sha256(blob).digest()
        self._send(
            "report",
            round_,
            self.ledger.tx.record_report(self.task_id, round_, kind, digest, cid),
        )
        return cid

    def _order(self, addr: str) -> int:
        name = self.name_of.get(addr)
        return self.spec.participants.index(name) if name in self.spec.participants else 10**6

    def check_commitment(self, round_: int, org: str, update_hash: bytes, cid: str) -> Update:
        """Fetch, check and decode one committed update (raises with a reason if bad)."""
        blob = self.store.get(cid)  # verifies the content id
        if hashlib.sha256(blob).digest() != update_hash:
            raise ProtocolError(f"blob {cid} is not the update {org} committed for round {round_}")
        env = Envelope.from_bytes(blob)
        if env.sender != org:
            raise ProtocolError(f"commitment by {org} carries an envelope signed as {env.sender}")
        payload = self.verifier.verify(env, round=round_, kind=UPDATE_KIND)
        upd = decode_update(payload)
        if (upd.task, upd.round, upd.org) != (self.task_hex, round_, org):
            raise ProtocolError(
                f"update from {org} names task/round/org {upd.task}/{upd.round}/{upd.org}"
            )
        if self.attestation is not None:
            quote = Quote.from_json(upd.attestation) if upd.attestation else None
            problem = self.attestation.problem(self.task_hex, round_, upd, quote, self.start_hash)
            if problem is not None:
                raise ProtocolError(f"attestation {problem[0]}: {problem[1]}")
        return upd

    # -- 3. aggregate and vote -----------------------------------------------------------------
    def aggregate_and_vote(
        self, round_: int, global_params: np.ndarray, updates: Sequence[Update]
    ) -> np.ndarray:
        new_global = self.aggregate(round_, global_params, updates)
        self.vote(round_, new_global)
        return new_global

    def aggregate(
        self, round_: int, global_params: np.ndarray, updates: Sequence[Update]
    ) -> np.ndarray:
        """Run this org's aggregator replica (in its enclave when it has one) on ``updates``;
        store the new global model and return it."""
        if self.enclave is not None:
            inputs: dict[str, str | bytes] = {"start_model": vector_hash(global_params)}
            inputs.update({f"update:{u.org}": u.digest() for u in updates})
            attested = self.enclave.run(
                self.aggregator.step,
                global_params,
                list(updates),
                purpose="aggregate",
                task_id=self.task_hex,
                round=round_,
                inputs=inputs,
                encode=encode_vector,
            )
            new_global = attested.value
            self.record.quotes[round_] = self.store.put(attested.quote.to_json().encode())
        else:
            new_global = self.aggregator.step(global_params, updates)
        self.store.put(encode_vector(new_global))
        return new_global

    def vote(self, round_: int, new_global: np.ndarray) -> None:
        """Vote ``new_global``'s hash for ``round_`` (held for the next commitment when
        :attr:`combine` is on; nothing when this org voted before a restart)."""
        if (
            round_ == self.resume_round
            and self.identity.evm_address in self.ledger.round_info(self.task_id, round_).votes
        ):
            return  # voted before the restart; one vote per round
        global_hash = bytes.fromhex(vector_hash(new_global))
        if self.combine and round_ < self.spec.rounds:
            self.held_vote = (round_, global_hash)  # goes with the next commitment
        else:
            self.send_vote(round_, global_hash)

    def send_vote(self, round_: int, global_hash: bytes) -> None:
        """Vote ``global_hash`` for ``round_`` in a transaction of its own."""
        self._send("vote", round_, self.ledger.tx.vote_global(self.task_id, round_, global_hash))

    def release_held_vote(self) -> None:
        """Send a held vote on its own (the task stops before this org's next commitment)."""
        held, self.held_vote = self.held_vote, None
        if held is not None:
            self.send_vote(*held)

    # -- ring intermediates ------------------------------------------------------------------
    def seal_ring(self, round_: int, receiver: str, message: RingMessage) -> bytes:
        env = seal(
            self.identity,
            task_id=self.task_hex,
            round=round_,
            kind=RING_KIND,
            payload=encode_ring(message),
            recipients=[self.directory[receiver]],
        )
        return env.to_bytes()

    def open_ring(self, round_: int, sender: str, blob: bytes) -> RingMessage:
        env = Envelope.from_bytes(blob)
        if env.sender != sender:
            raise ProtocolError(f"ring message from {sender} is signed as {env.sender}")
        return decode_ring(self.verifier.verify(env, round=round_, kind=RING_KIND))


class TrustedHooks(RoundHooks):
    """Runs the trust protocol of every in-process organisation around the engine's round.

    One signed transaction per org and round (``combine``, the default): each org's vote on
    round ``r - 1`` goes with its commitment of round ``r`` (``voteAndCommit``; round 1 is a
    plain commitment, the last round's votes plain votes). A round's transactions go out
    together, in one batch (one block on the embedded chain: one state root, one durable
    commit): the K combined transactions, any rejection records, and in the last round the
    K votes. Each is its org's own signed transaction, checked by the contract one by one.
    The ledger's verdict on round ``r - 1`` is read when round ``r``'s batch is mined and must
    be this process's aggregate; ``finalise`` returns that aggregate's hash at once.

    The orgs verify the round's commitments while they wait to be mined, as a node reads its
    transaction pool, and vote on the aggregate of what they verified. That vote can only
    count for exactly those commitments: the contract opens voting only once every
    participant has committed, once each (a commitment sent ahead counts when its round
    opens), so a vote executes after all K commitments or fails ("voting not open") if any
    of them did not make it. A refused transaction therefore finalises nothing it was needed
    for (the batch's first failure is raised, and a resumed task re-runs the round), unless
    its org already had a commitment mined for the round: then the orgs verified and voted
    on that one.

    The combined transactions of a round are independent of their order (a vote on ``r - 1``
    and a commitment of ``r`` each, from distinct senders), so they also fit a JSON-RPC chain,
    whose block producer may order different senders' transactions as it likes; there the
    last round's votes, which need every commitment of the round first, go in a second batch
    after the first is mined. With ``combine=False`` votes and commitments are separate
    transactions (two per org and round; on JSON-RPC, commitments mined before votes).
    """

    def __init__(
        self,
        agents: Sequence[OrgAgent],
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        *,
        combine: bool = True,
    ):
        from matswarm.protocol.leader import Verification

        self.agents = {a.name: a for a in agents}
        self.reference = agents[0]
        self._accepted: dict[str, list[Update]] = {}
        spec = self.reference.spec
        self.verification = Verification.from_dict(spec.verification or {})
        self._audit_rate = self.verification.rate(len(spec.participants))
        #: Leader mode: the round's commitments and leader, set in :meth:`collect`.
        self._commitments: dict[str, Commitment] = {}
        self._leader: str | None = None
        self.on_event = on_event
        self._batch = self.reference.ledger.batch()
        self._one_block = self.reference.ledger.chain.ordered_batches
        self._published: list[dict[str, Any]] = []
        #: Rounds this process aggregated whose verdict the ledger has not given yet.
        self._unconfirmed: dict[int, str] = {}
        for a in agents:
            a.batch = self._batch
            # A vote only succeeds after the commitments earlier in its batch, so no pre-flight
            # on the state before the batch; a revert is still reported with its reason.
            a.ledger.preflight = False
            a.combine = combine

    def _flush(self) -> None:
        """Send the queued transactions of every org (one block), record them, and raise the
        batch's first failure: in batch order, so a refused commitment is reported rather
        than the votes it left without an open vote phase."""
        if not len(self._batch):
            return
        try:
            self._batch.send()
            failure = None
        except BatchError as exc:
            failure = exc.first
        for agent in self.agents.values():
            agent.settle(raise_failure=False)
        if failure is not None:
            raise failure

    def publish(self, update: Update, result: LocalResult) -> None:
        agent = self.agents[update.org]
        cid = agent.publish(update)
        agent.report_result(update.round, result)
        self._published.append({"round": update.round, "org": update.org, "cid": cid})

    def collect(self, round_: int, updates: list[Update]) -> list[Update]:
        # The round's commitments: those already mined (a resumed round), then the queued ones
        # of the other orgs. A queued commitment of an org that has one on the ledger will be
        # refused ("already committed"), so the mined one is what the votes must cover.
        commitments = dict(self.reference.ledger.commitments(self.reference.task_id, round_))
        for agent in self.agents.values():
            queued = agent.queued_commitment
            if queued is not None and queued.org not in commitments:
                commitments[queued.org] = queued
        self._commitments = commitments
        verifiers: list[str] = list(self.agents)
        self._leader = None
        if self.verification.mode == "leader":
            from matswarm.protocol.leader import audits, leader_of

            committed = {self.reference.name_of.get(a, a) for a in commitments}
            self._leader = leader_of(self.reference.spec.participants, round_, committed)
            verifiers = [self._leader] + [
                n
                for n, a in self.agents.items()
                if n != self._leader and audits(a, round_, self._audit_rate)
            ]
        # Every verifying org checks on its own; an honest consortium reaches the same verdict.
        self._accepted = {n: self.agents[n].collect(round_, commitments) for n in verifiers}
        ref = self._accepted[self._leader or self.reference.name]
        if not ref:
            self._flush()  # the commitments and the rejections that explain them
            raise ProtocolError(f"round {round_}: no update survived verification")
        return ref

    def exclude(self, round_: int, reasons: Mapping[str, str]) -> None:
        """Leave verified updates out of the round's aggregation for a consortium rule (e.g. the
        validation threshold of :mod:`matswarm.contrib`): every org drops them and records the
        rejection with its reason on the ledger (so ``verify`` excludes them too)."""
        if self._leader is not None:
            raise ProtocolError(
                "a consortium exclusion needs every org to hold the round's updates: "
                "use verification mode 'every-org'"
            )
        for name, agent in self.agents.items():
            self._accepted[name] = [u for u in self._accepted[name] if u.org not in reasons]
            for org, reason in reasons.items():
                agent.reject(round_, org, reason)

    def finalise(self, round_, previous_global, global_params, updates, aggregator) -> str:
        if not self._one_block:
            self._flush()  # commitments (and rejections) mined before any vote is sent
        if self._leader is None:
            for name, agent in self.agents.items():
                agent.aggregate_and_vote(round_, previous_global, self._accepted[name])
        else:
            from matswarm.protocol.leader import follow_round, lead_round

            claim = lead_round(
                self.agents[self._leader],
                round_,
                previous_global,
                self._accepted[self._leader],
                self._commitments,
            ).claim_cid
            for name, agent in self.agents.items():
                if name != self._leader:
                    follow_round(
                        agent,
                        round_,
                        previous_global,
                        claim,
                        self._commitments,
                        leader=self._leader,
                        audited=self._accepted.get(name),
                    )
        mine = vector_hash(global_params)
        self._unconfirmed[round_] = mine
        self._flush()  # the round's transactions (embedded chain: one block)
        published, self._published = self._published, []
        if self.on_event is not None:
            for event in published:
                self.on_event("commit", event)
        held = {a.held_vote[0] for a in self.agents.values() if a.held_vote is not None}
        for r in sorted(set(self._unconfirmed) - held):
            self._confirm(r, self._unconfirmed.pop(r))
        for agent in self.agents.values():
            agent.start_hash = mine
        return mine

    def _confirm(self, round_: int, mine: str) -> None:
        """The ledger's verdict on ``round_`` (all votes mined) must be ``mine``."""
        final = None
        for agent in self.agents.values():
            final = agent.finalized.pop(round_, None) or final
        if final is None:
            info = self.reference.ledger.round_info(self.reference.task_id, round_)
            if info.final_hash is None:
                raise ProtocolError(
                    f"round {round_} did not finalise: {len(info.votes)} vote(s) for "
                    f"{len(set(info.votes.values()))} distinct hash(es)"
                )
            final = info.final_hash.hex()
        if final != mine:
            raise ProtocolError(
                f"round {round_}: the ledger finalised {final[:12]}…, but this process "
                f"aggregated {mine[:12]}…"
            )

    def release(self) -> None:
        """Send the votes still held for a next commitment (a run stopped before the task's
        last round) and confirm their round; nothing to do after the last round."""
        for agent in self.agents.values():
            agent.release_held_vote()
        self._flush()
        for r in sorted(self._unconfirmed):
            self._confirm(r, self._unconfirmed.pop(r))

    def ring_handoff(self, round_, sender, receiver, message):
        blob = self.agents[sender].seal_ring(round_, receiver, message)
        return self.agents[receiver].open_ring(round_, sender, blob)


__all__ = [
    "SIMULATED_NOTE",
    "AgentRecord",
    "OrgAgent",
    "ProtocolError",
    "Quote",
    "Rejection",
    "TrustedHooks",
    "directory_from_ledger",
    "org_metadata",
    "report_envelope_kind",
]
