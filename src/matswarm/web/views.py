"""Plain records the dashboard's templates render (built by :mod:`matswarm.web.data`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matswarm.protocol.spec import TaskSpec


@dataclass
class Member:
    address: str
    name: str
    founder: bool
    keys_registered: bool
    admitted_at_block: int


@dataclass
class TaskRow:
    task: str
    name: str
    status: str
    current_round: int
    rounds: int
    participants: int
    quorum: int
    created_block: int
    tx_hash: str


@dataclass
class RoundRow:
    round: int
    phase: str
    commitments: list[dict[str, Any]]
    votes: list[dict[str, Any]]
    missing: list[str]
    final_hash: str | None
    n_participants: int


@dataclass
class Contributions:
    round: int
    method: str
    metric: str
    reporter: str
    tx_hash: str
    cid: str
    rows: list[tuple[str, float, float | None]]  # (org name, value, stderr)


@dataclass
class TaskView:
    task: str
    name: str
    status: str
    issuer: str
    current_round: int
    rounds_total: int
    quorum: int
    participants: list[tuple[str, str]]  # (name, address)
    spec_hash: str
    spec: dict[str, Any]
    rounds: list[RoundRow]
    rejections: list[dict[str, Any]]
    reports: list[dict[str, Any]]
    contributions: list[Contributions]
    other_events: list[dict[str, Any]]
    final_model_cid: str | None
    final_model_hash: str | None
    final_tx: str | None
    card: dict[str, Any] | None
    problems: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.status in ("archived", "aborted")

    @property
    def rounds_final(self) -> int:
        return sum(r.phase == "final" for r in self.rounds)


@dataclass
class TaskModels:
    task: str
    spec: TaskSpec | str  # a string says why the spec cannot be read
    card: dict[str, Any] | None
    finals: list[tuple[int, str]]  # (round, finalised global hash)
    final_cid: str | None
