"""Exceptions raised by the ledger package (one hierarchy for every backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .ledger import TxCall
    from .types import TxResult


class LedgerError(Exception):
    """Base class of every ledger failure."""


class ContractRevert(LedgerError):
    """The contract rejected a call or transaction; ``reason`` is the contract's message."""

    def __init__(self, function: str, reason: str, tx_hash: str | None = None) -> None:
        self.function = function
        self.reason = reason
        self.tx_hash = tx_hash
        where = f" (tx {tx_hash})" if tx_hash else ""
        super().__init__(f"{function} reverted: {reason}{where}")


class ChainIdMismatch(LedgerError):
    """The connected chain is not the chain the client expects; nothing was sent."""

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(
            f"refusing to send: connected chain has chain id {actual}, expected {expected}"
        )


class LedgerLocked(LedgerError):
    """Another process holds the embedded chain directory (single writer only)."""


class TransactionRejected(LedgerError):
    """The node refused a raw transaction before executing it (bad chain id, nonce, ...)."""


class BatchError(LedgerError):
    """Some transactions of a batch failed; the others were mined all the same.

    ``outcomes[i]`` is the :class:`~matswarm.ledger.TxResult` or the
    :class:`LedgerError` (usually :class:`ContractRevert`) of the i-th call.
    """

    def __init__(self, calls: Sequence[TxCall], outcomes: Sequence[TxResult | LedgerError]) -> None:
        self.outcomes = list(outcomes)
        self.failures = [(i, o) for i, o in enumerate(outcomes) if isinstance(o, LedgerError)]
        detail = "; ".join(f"#{i} ({calls[i].sender}): {err}" for i, err in self.failures)
        n = len(outcomes)
        super().__init__(f"{len(self.failures)} of {n} batched transactions failed: {detail}")

    @property
    def first(self) -> LedgerError:
        """The first failure, in call order."""
        return self.failures[0][1]
