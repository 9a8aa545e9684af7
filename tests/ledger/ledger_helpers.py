"""Shared helpers of the ledger tests (a unique module name, unlike conftest)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from eth_account.signers.local import LocalAccount

from matswarm.ledger import Ledger


def h(label: str) -> bytes:
    """A deterministic 32-byte test hash."""
    return hashlib.sha256(label.encode()).digest()


@dataclass
class Consortium:
    """A founder, five admitted orgs and one outsider on a fresh embedded chain."""

    path: Path
    founder: LocalAccount
    orgs: list[LocalAccount]
    outsider: LocalAccount
    ledger: Ledger  # signs as the founder

    def as_(self, account: LocalAccount) -> Ledger:
        return self.ledger.with_account(account)

    def task(self, n: int = 4, rounds: int = 2, duration: int = 60, **kw: object) -> bytes:
        """A task issued by the founder with orgs[:n] as participants."""
        return self.ledger.create_task(
            [a.address for a in self.orgs[:n]],
            spec_hash=kw.pop("spec_hash", h("spec")),  # type: ignore[arg-type]
            train_code_hash=h("train.py"),
            agg_code_hash=h("aggregate.py"),
            rounds=rounds,
            round_duration_s=duration,
            **kw,  # type: ignore[arg-type]
        )
