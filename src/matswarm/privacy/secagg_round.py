"""Secure aggregation inside the round protocol (:mod:`matswarm.protocol.engine`).

* :class:`SecureAggregation` is an engine update transform: after local training it runs key
  advertisement and share exchange among the round's orgs, and replaces each update by its
  masked input (kind ``"masked"``). The trust layer then signs, stores and commits the
  **masked** update: the commitment on the ledger is of what the org sent. It is also the
  round's bulletin board: once the survivors are known it collects their signed reveals.
* :class:`SecureAggregator` replaces the task's :class:`~matswarm.protocol.Aggregator`: it
  unmasks the sum of the accepted masked updates with the signed transcript and applies the
  algorithm's server step to the survivors' sample-weighted mean. Every org's replica (the
  trust layer's ``aggregator.copy()``) reads the same board, so all recompute the same bits.

Here every org's client lives in this process and the driver routes their messages as bytes,
exactly what a relay would forward; a Flower relay forwarding the same messages is not wired
yet (see the module docstring of :mod:`matswarm.privacy.secagg` for the protocol).
"""

from __future__ import annotations

import copy
import hashlib
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from matswarm.aggregation import AggregationRule, Mean
from matswarm.algorithms.base import FederatedAlgorithm
from matswarm.privacy.secagg import (
    MIN_ORGS,
    SecAggClient,
    SecAggConfig,
    SecAggError,
    Transcript,
    unmask_sum,
)
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.engine import RoundEngine
from matswarm.protocol.messages import Update
from matswarm.trust import OrgIdentity, PublicIdentity

#: ``recordReport`` kind under which a round's transcript is anchored on the ledger.
TRANSCRIPT_KIND = "secagg-transcript"
#: What secure aggregation does and does not guarantee (for command output and model cards).
SECURITY_NOTE = (
    "Secure aggregation (pairwise masks, semi-honest model): the relay and each org see only "
    "masked updates and their sum; a dropped org's masks are recovered from Shamir shares; "
    "fewer than 3 orgs or survivors are refused. Not defended: a malicious relay that lies "
    "about who dropped out (no consistency round), and what the sum itself reveals."
)


def require_sum_rule(rule: AggregationRule, n_orgs: int) -> None:
    """Refuse a rule that needs individual updates, and a consortium too small to hide one."""
    if getattr(rule, "name", "") == "equal-mean":
        raise SecAggError(
            "secure aggregation supports only aggregation rule 'mean' (it unmasks the "
            "sample-weighted sum of the updates); 'equal-mean' (org-level DP) is not supported "
            "with it yet: turn secure_aggregation off, or use [privacy] unit = 'record' with "
            "rule 'mean'"
        )
    if type(rule) is not Mean:
        raise SecAggError(
            f"secure aggregation reveals only the sum of the updates, but aggregation rule "
            f"{rule.describe()} needs every individual update (robust rules compare, sort or "
            f"select single updates); the only rule it supports is 'mean'; or turn "
            f"secure_aggregation off"
        )
    if n_orgs < MIN_ORGS:
        raise SecAggError(
            f"secure aggregation needs at least {MIN_ORGS} organisations, got {n_orgs}: with 2, "
            "the sum minus one's own update is the other's update"
        )


def masked_update(update: Update, words: np.ndarray) -> Update:
    """The update as it crosses the org boundary: its Z_{2^32} words, bit for bit."""
    return Update(
        update.task,
        update.round,
        update.org,
        np.ascontiguousarray(words, dtype=np.uint32).view(np.float32),
        update.n_samples,
        "masked",
        update.attestation,
    )


def masked_words(update: Update) -> np.ndarray:
    if update.kind != "masked":
        raise SecAggError(f"update of {update.org} is {update.kind!r}, not a masked input")
    return np.ascontiguousarray(update.vector).view(np.uint32)


@dataclass
class _RoundState:
    clients: dict[str, SecAggClient]
    adverts: dict[str, bytes]
    masked: set[str] = field(default_factory=set)
    transcript: Transcript | None = None
    survivors: frozenset[str] | None = None


class SecureAggregation:
    """Engine update transform running the SecAgg rounds among in-process orgs.

    ``identities`` are the orgs' keys (signing and the X25519 keys shares are encrypted to);
    ``dropouts`` maps a round to orgs that drop out after sharing their keys and before sending
    their masked input (their masks are then recovered from the survivors' shares).
    """

    def __init__(
        self,
        identities: Mapping[str, OrgIdentity],
        participants: Sequence[str],
        config: SecAggConfig | None = None,
        dropouts: Mapping[int, Collection[str]] | None = None,
    ):
        self.participants = list(participants)
        missing = [n for n in self.participants if n not in identities]
        if missing:
            raise SecAggError(f"secure aggregation: no keys for {missing}")
        if len(self.participants) < MIN_ORGS:
            require_sum_rule(Mean(), len(self.participants))  # names the reason
        self.identities = dict(identities)
        self.directory: dict[str, PublicIdentity] = {
            n: self.identities[n].public for n in self.participants
        }
        self.config = config or SecAggConfig()
        self.dropouts = {int(k): set(v) for k, v in (dropouts or {}).items()}
        self._rounds: dict[tuple[str, int], _RoundState] = {}
        #: Bytes of every secure-aggregation message per round (keys, shares, reveals), beyond
        #: the masked updates themselves.
        self.overhead_bytes: dict[int, int] = {}
        #: Coordinates clipped to ``[-clip, clip]`` per round and org.
        self.clipped: dict[int, dict[str, int]] = {}
        #: Called with ``(task, round, transcript bytes)`` once a round is unmasked.
        self.on_transcript: Callable[[str, int, bytes], None] | None = None

    def __call__(self, round_: int, updates: list[Update]) -> list[Update]:
        if not updates:
            return updates
        task = updates[0].task
        clients = {
            u.org: SecAggClient(
                self.identities[u.org],
                self.participants,
                self.directory,
                task,
                round_,
                self.config,
            )
            for u in updates
        }
        adverts = {u.org: clients[u.org].advertise(u.n_samples) for u in updates}
        outboxes = {org: c.share_keys(adverts) for org, c in clients.items()}
        for org, c in clients.items():  # the relay routes each encrypted share to its recipient
            c.receive_shares({s: box[org] for s, box in outboxes.items() if org in box})
        gone = self.dropouts.get(round_, set())
        state = _RoundState(clients, adverts)
        out = []
        for u in updates:
            if u.org in gone:
                continue
            out.append(masked_update(u, clients[u.org].mask(u.vector, u.n_samples)))
            state.masked.add(u.org)
        self.clipped[round_] = {o: c.clipped for o, c in clients.items() if o in state.masked}
        if any(self.clipped[round_].values()):
            warnings.warn(
                f"secure aggregation, round {round_}: coordinates beyond ±{self.config.clip} "
                f"were clipped {self.clipped[round_]}; raise [privacy] secagg_clip",
                UserWarning,
                stacklevel=2,
            )
        self.overhead_bytes[round_] = sum(map(len, adverts.values())) + sum(
            len(b) for box in outboxes.values() for b in box.values()
        )
        self._rounds = {k: v for k, v in self._rounds.items() if k[1] >= round_ - 1}
        self._rounds[(task, round_)] = state
        return out

    def transcript(self, task: str, round_: int, survivors: Collection[str]) -> Transcript:
        """The signed keys and reveals for ``survivors`` (the orgs whose masked update was
        accepted). Reveals happen once: a second, different survivor set is refused."""
        state = self._rounds.get((task, round_))
        if state is None:
            raise SecAggError(f"no secure-aggregation round {round_} of task {task} on record")
        surv = frozenset(survivors)
        if state.transcript is not None:
            if surv != state.survivors:
                raise SecAggError(
                    f"round {round_} was unmasked for {sorted(state.survivors or ())}; "
                    f"revealing again for {sorted(surv)} would expose single updates"
                )
            return state.transcript
        dropped = set(state.adverts) - surv
        reveals = {o: state.clients[o].reveal(surv, dropped) for o in sorted(surv)}
        state.transcript = Transcript(dict(state.adverts), reveals)
        state.survivors = surv
        if self.on_transcript is not None:
            self.on_transcript(task, round_, state.transcript.to_bytes())
        self.overhead_bytes[round_] = self.overhead_bytes.get(round_, 0) + sum(
            map(len, reveals.values())
        )
        return state.transcript


class TranscriptSource(Protocol):
    """Where a :class:`SecureAggregator` reads each round's public transcript."""

    directory: dict[str, PublicIdentity] | None  # None: a relay, which checks no signature
    config: SecAggConfig

    def transcript(self, task: str, round_: int, survivors: Collection[str]) -> Transcript: ...


class StoredTranscripts:
    """Transcripts as an auditor finds them: anchored on the ledger (``recordReport`` of kind
    :data:`TRANSCRIPT_KIND`: sha256 and content id), bytes in the artifact store."""

    def __init__(self, ledger, store, task_id: bytes, directory, config: SecAggConfig):
        self.ledger = ledger
        self.store = store
        self.task_id = task_id
        self.directory = dict(directory)
        self.config = config

    def transcript(self, task: str, round_: int, survivors: Collection[str]) -> Transcript:
        reports = self.ledger.reports(self.task_id, kind=TRANSCRIPT_KIND, round=round_)
        if not reports:
            raise SecAggError(f"round {round_}: no secure-aggregation transcript on the ledger")
        from matswarm.store import StoreError

        try:
            blob = self.store.get(reports[0].cid)
        except StoreError as exc:
            raise SecAggError(f"round {round_}: secure-aggregation transcript: {exc}") from None
        if hashlib.sha256(blob).digest() != reports[0].digest:
            raise SecAggError(f"round {round_}: stored transcript differs from the anchored one")
        return Transcript.from_bytes(blob)


class RelayedTranscripts:
    """Transcripts an org received from a relay (Flower); checked in full by :func:`unmask_sum`
    (signatures against this org's directory)."""

    def __init__(self, directory: Mapping[str, PublicIdentity], config: SecAggConfig):
        self.directory = dict(directory)
        self.config = config
        self.received: dict[tuple[str, int], Transcript] = {}

    def put(self, task: str, round_: int, transcript: Transcript) -> None:
        self.received = {k: v for k, v in self.received.items() if k[1] >= round_ - 1}
        self.received[(task, round_)] = transcript

    def transcript(self, task: str, round_: int, survivors: Collection[str]) -> Transcript:
        t = self.received.get((task, round_))
        if t is None:
            raise SecAggError(f"round {round_}: the relay sent no secure-aggregation transcript")
        return t


class SecureAggregator(Aggregator):
    """The aggregator of a secure-aggregation task: sample-weighted mean of the survivors,
    computed from their masked inputs and the round's signed transcript only."""

    def __init__(
        self,
        algorithm: FederatedAlgorithm,
        participant_order: Sequence[str],
        initial_global: np.ndarray,
        board: TranscriptSource,
    ):
        super().__init__(algorithm, Mean(), participant_order, initial_global)
        self.board = board
        self.participants = list(participant_order)

    def spec_fields(self) -> dict[str, Any]:
        """What the task spec records (so ``verify`` rebuilds this aggregator)."""
        return {"clip": self.board.config.clip, "threshold": self.board.config.threshold}

    def archive_transcripts(self, agent) -> None:
        """Trust layer: store each round's transcript in ``agent``'s store and anchor it on the
        ledger in its name (queued with the round's other transactions)."""
        board = self.board
        if not isinstance(board, SecureAggregation):
            raise SecAggError("only the live round board produces transcripts to archive")

        def archive(task: str, round_: int, blob: bytes) -> None:
            agent.record_report(round_, TRANSCRIPT_KIND, blob)

        board.on_transcript = archive

    def copy(self) -> SecureAggregator:
        # Every replica reads the one public board (what the relay broadcasts); the rest is
        # the replicated state.
        board, self.board = self.board, None  # type: ignore[assignment]
        try:
            twin = copy.deepcopy(self)
        finally:
            self.board = board
        twin.board = board
        return twin

    def step(self, global_params: np.ndarray, updates: Sequence[Update]) -> np.ndarray:
        if not updates:
            raise ValueError("no updates to aggregate")
        tasks_rounds = {(u.task, u.round) for u in updates}
        if len(tasks_rounds) != 1:
            raise SecAggError(f"masked updates of several rounds in one sum: {tasks_rounds}")
        task, round_ = tasks_rounds.pop()
        masked = {u.org: masked_words(u) for u in updates}
        transcript = self.board.transcript(task, round_, set(masked))
        s = unmask_sum(
            masked,
            transcript,
            self.participants,
            self.board.directory,
            task,
            round_,
            self.board.config,
        )
        aggregated = s.weighted_mean(self.board.config)
        self.previous_aggregate = aggregated
        return self.algorithm.server_step(global_params, aggregated, self.state)


def enable_secure_aggregation(
    engine: RoundEngine,
    identities: Mapping[str, OrgIdentity] | None = None,
    config: SecAggConfig | None = None,
    dropouts: Mapping[int, Collection[str]] | None = None,
) -> SecureAggregation:
    """Switch an engine to secure aggregation (before attaching the trust layer, whose agents
    copy the engine's aggregator). Refuses rules that need individual updates.

    Without ``identities``, fresh keys are generated for the run (simulation keys, never
    stored); with the trust layer pass the consortium's identities."""
    names = [p.name for p in engine.participants]
    require_sum_rule(engine.aggregator.rule, len(names))
    if identities is None:
        identities = {n: OrgIdentity.generate(n) for n in names}
    board = SecureAggregation(identities, names, config, dropouts)
    engine.aggregator = SecureAggregator(
        engine.algorithm, names, engine.run_state.global_params, board
    )
    engine.transforms.append(board)
    return board


def ledger_aggregator(spec, initial_global, ledger, store, task_id: bytes, directory):
    """The aggregator ``verify`` re-derives a secure-aggregation task with."""
    cfg = SecAggConfig(**spec.secure_aggregation)
    board = StoredTranscripts(ledger, store, task_id, directory, cfg)
    return SecureAggregator(spec.build_algorithm(), spec.participants, initial_global, board)
