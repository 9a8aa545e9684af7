"""Plain, typed records returned by :class:`matswarm.ledger.Ledger`.

Hashes are ``bytes`` (32 bytes); addresses are EIP-55 checksummed strings; task
ids are ``bytes`` (32 bytes). Nothing here talks to a chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class TaskStatus(IntEnum):
    """Mirror of the contract's ``STATUS_*`` constants."""

    UNKNOWN = 0
    ACTIVE = 1
    COMPLETED = 2  # every round final; the final model is not archived yet
    ARCHIVED = 3  # final model content id recorded ("uploading")
    ABORTED = 4
    REJECTED = 5  # the participants voted the final model down; it is never archived


class RoundPhase(IntEnum):
    """Mirror of the contract's ``PHASE_*`` constants."""

    NOT_OPENED = 0
    COMMIT = 1
    VOTE = 2
    FINAL = 3
    FAILED = 4


@dataclass(frozen=True)
class OrgInfo:
    address: str
    ed25519: bytes
    x25519: bytes
    metadata: str
    admitted: bool
    founder: bool
    admitted_at_block: int


@dataclass(frozen=True)
class TaskInfo:
    task_id: bytes
    issuer: str
    participants: tuple[str, ...]
    spec_hash: bytes
    train_code_hash: bytes
    agg_code_hash: bytes
    quorum: int
    rounds: int
    round_duration_s: int
    created_at: int
    current_round: int
    status: TaskStatus
    final_model_hash: bytes | None
    final_model_cid: str | None


@dataclass(frozen=True)
class Commitment:
    org: str
    update_hash: bytes
    cid: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Report:
    """A per-round document anchored by ``recordReport``: its bytes live in the store."""

    reporter: str
    #: 0 for a task-level report.
    round: int
    kind: str
    digest: bytes
    cid: str
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class FinalModelVotes:
    """The participants' accept/reject votes on a completed task's final model."""

    model_hash: bytes | None
    #: org address -> True (accept) / False (reject), in chain order.
    votes: dict[str, bool]
    vote_txs: dict[str, str]
    accepts: int
    rejects: int
    #: True: a quorum accepted; False: rejected (no accepting quorum possible); None: open.
    decided: bool | None


@dataclass(frozen=True)
class RoundInfo:
    task_id: bytes
    round: int
    phase: RoundPhase
    #: Commit deadline in the commit phase, vote deadline afterwards (unix seconds).
    deadline: int
    commitments: dict[str, Commitment]
    votes: dict[str, bytes]
    #: Transaction hash of each vote, for the model card's provenance.
    vote_txs: dict[str, str]
    final_hash: bytes | None
    #: Participants without a commitment when the commit phase was closed by deadline.
    missing: tuple[str, ...]

    @property
    def finalized(self) -> bool:
        return self.phase is RoundPhase.FINAL


@dataclass(frozen=True)
class LedgerEvent:
    """One decoded contract event, as kept by the SQLite event index."""

    name: str
    block_number: int
    log_index: int
    tx_hash: str
    args: dict[str, Any]

    @property
    def task_id(self) -> bytes | None:
        value = self.args.get("taskId")
        return bytes.fromhex(value[2:]) if isinstance(value, str) else None


@dataclass(frozen=True)
class TxResult:
    """Outcome of one mined transaction sent by the adapter."""

    tx_hash: str
    block_number: int
    gas_used: int
    events: tuple[LedgerEvent, ...] = field(default_factory=tuple)

    def event(self, name: str) -> LedgerEvent | None:
        """The first event called ``name`` emitted by this transaction, if any."""
        return next((e for e in self.events if e.name == name), None)
