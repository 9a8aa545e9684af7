"""The round state machine, written once for every runtime.

One round::

    local training (ring order for ring algorithms, else independently)
      -> updates (delta = local - global, float32)
      -> hooks.publish     (trust layer: sign, encrypt, store, commit on the ledger)
      -> hooks.collect     (trust layer: verify signatures/commitments, drop rejected ones)
      -> aggregate         (task rule + algorithm server step, deterministic)
      -> hooks.finalise    (trust layer: every org recomputes, votes the hash, quorum finalises)
      -> next round starts from the finalised global model

Without a trust layer the hooks are no-ops (:class:`RoundHooks`), which is what fast
experiments use; the trust layer and the Flower runtime plug in here without touching the
algorithms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from matswarm.algorithms.base import FederatedAlgorithm, LocalResult, RingMessage
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.messages import Update, vector_hash
from matswarm.protocol.participant import Participant


@dataclass(frozen=True)
class RoundRecord:
    round: int
    global_hash: str
    participants: tuple[str, ...]
    train_loss: dict[str, float]
    update_hashes: dict[str, str]


@dataclass
class TaskRun:
    """The outcome of running a task: final models and per-round history."""

    task: str
    initial_global: np.ndarray
    global_params: np.ndarray
    local_params: dict[str, np.ndarray]
    history: list[RoundRecord] = field(default_factory=list)
    global_per_round: list[np.ndarray] = field(default_factory=list)

    @property
    def rounds_done(self) -> int:
        return len(self.history)


class RoundHooks:
    """Extension points around a round. The base class trusts everything and records nothing."""

    def publish(self, update: Update, result: LocalResult) -> None:
        """Called once per update right after local training."""

    def collect(self, round_: int, updates: list[Update]) -> list[Update]:
        """Return the updates that may be aggregated (all of them, here)."""
        return updates

    def finalise(
        self,
        round_: int,
        previous_global: np.ndarray,
        global_params: np.ndarray,
        updates: Sequence[Update],
        aggregator: Aggregator,
    ) -> str:
        """Agree on the round's global model (aggregated from ``previous_global`` and
        ``updates``) and return its hash."""
        return vector_hash(global_params)

    def ring_handoff(
        self, round_: int, sender: str, receiver: str, message: RingMessage
    ) -> RingMessage:
        """A ring intermediate crossing from ``sender`` to ``receiver`` (trust: sign/encrypt,
        then verify on the receiver's side and return what the receiver accepts)."""
        return message


ProgressFn = Callable[[int, int], None]

#: Changes what the orgs send after training and before publication: ``(round, updates) ->
#: updates``. Compression (each org sends its compressed update) and secure aggregation (each
#: org sends its masked update) plug in here, so the trust layer signs, stores and commits
#: exactly what crosses the org boundary.
UpdateTransform = Callable[[int, list[Update]], list[Update]]


def _quote_json(result: LocalResult) -> str | None:
    quote = getattr(result, "quote", None)  # set by attested training
    return None if quote is None else quote.to_json()


class RoundEngine:
    """Drives a federated algorithm over participants, round by round."""

    def __init__(
        self,
        task: str,
        algorithm: FederatedAlgorithm,
        aggregator: Aggregator,
        participants: Sequence[Participant],
        initial_global: np.ndarray,
        hooks: RoundHooks | None = None,
        keep_global_history: bool = False,
    ):
        if not participants:
            raise ValueError("a task needs at least one participant")
        names = [p.name for p in participants]
        if len(set(names)) != len(names):
            raise ValueError(f"participant names must be unique, got {names}")
        self.task = task
        self.algorithm = algorithm
        self.aggregator = aggregator
        self.participants = list(participants)
        self.hooks = hooks or RoundHooks()
        self.keep_global_history = keep_global_history
        self.run_state = TaskRun(task, initial_global.copy(), initial_global.copy(), {})
        self.ring_carry: RingMessage | None = None
        #: Applied in order to the round's updates before they are published.
        self.transforms: list[UpdateTransform] = []

    def train_phase(self, round_: int) -> list[LocalResult]:
        g = self.run_state.global_params
        if not self.algorithm.ring:
            return [p.train(round_, g, None) for p in self.participants]
        results = []
        k = len(self.participants)
        for i, p in enumerate(self.participants):
            msg = self.ring_carry
            if msg is not None:
                if i == 0:  # O_K -> O_1: statistics only; a round starts from the agreed global
                    msg = replace(msg, params=None)
                sender = self.participants[(i - 1) % k].name
                msg = self.hooks.ring_handoff(round_, sender, p.name, msg)
            start = msg.params if msg is not None and msg.params is not None else g
            res = p.train(round_, start, msg)
            results.append(res)
            self.ring_carry = res.ring_out
        return results

    def run_round(self, round_: int) -> RoundRecord:
        g = self.run_state.global_params
        results = self.train_phase(round_)
        honest = [
            Update(
                self.task,
                round_,
                res.org,
                res.update_vector(g),
                res.n_samples,
                res.kind,
                _quote_json(res),
            )
            for res in results
        ]
        updates = []
        for p, upd in zip(self.participants, honest, strict=True):
            # A Byzantine participant may replace its update after seeing the others' (the
            # colluding attacks assume that); honest participants have no ``craft``.
            craft = getattr(p, "craft", None)
            if craft is not None:
                upd = craft(upd, [u for u in honest if u.org != upd.org])
            updates.append(upd)
        for transform in self.transforms:
            updates = transform(round_, updates)
        by_org = {r.org: r for r in results}
        for upd in updates:
            self.hooks.publish(upd, by_org[upd.org])
        accepted = self.hooks.collect(round_, updates)
        new_global = self.aggregator.step(g, accepted)
        global_hash = self.hooks.finalise(round_, g, new_global, accepted, self.aggregator)
        self.run_state.global_params = new_global
        self.run_state.local_params = {r.org: r.params for r in results}
        if self.keep_global_history:
            self.run_state.global_per_round.append(new_global.copy())
        record = RoundRecord(
            round=round_,
            global_hash=global_hash,
            participants=tuple(u.org for u in accepted),
            train_loss={r.org: r.loss for r in results},
            update_hashes={u.org: u.digest() for u in accepted},
        )
        self.run_state.history.append(record)
        return record

    def run(
        self, rounds: int | None = None, start_round: int = 1, progress: ProgressFn | None = None
    ) -> TaskRun:
        total = self.algorithm.rounds if rounds is None else rounds
        for t in range(start_round, total + 1):
            self.run_round(t)
            if progress is not None:
                progress(t, total)
        return self.run_state
