"""Exceptions raised by the ledger package (one hierarchy for every backend)."""

from __future__ import annotations


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
