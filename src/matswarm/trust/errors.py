"""Errors of the trust layer. Each rejection carries a stable ``reason`` code plus a message."""

from __future__ import annotations

from enum import StrEnum


class TrustError(Exception):
    """Base class of every error raised by ``matswarm.trust``."""


class KeystoreError(TrustError):
    """A keystore file cannot be created or opened; ``path`` names the file."""

    def __init__(self, message: str, *, path: str | None = None):
        self.path = path
        super().__init__(f"keystore {path}: {message}" if path else message)


class Reason(StrEnum):
    """Why an envelope or a quote was rejected (stable codes: safe to record on the ledger)."""

    MALFORMED = "malformed"
    UNKNOWN_SENDER = "unknown_sender"
    BAD_SIGNATURE = "bad_signature"
    WRONG_TASK = "wrong_task"
    WRONG_ROUND = "wrong_round"
    WRONG_KIND = "wrong_kind"
    REPLAY = "replay"
    PAYLOAD_HASH_MISMATCH = "payload_hash_mismatch"
    NOT_RECIPIENT = "not_recipient"
    DECRYPTION_FAILED = "decryption_failed"
    # attestation quotes
    UNKNOWN_ENCLAVE = "unknown_enclave"
    WRONG_MEASUREMENT = "wrong_measurement"
    WRONG_ORG = "wrong_org"
    WRONG_PURPOSE = "wrong_purpose"
    INPUT_MISMATCH = "input_mismatch"
    OUTPUT_MISMATCH = "output_mismatch"
    UNSUPPORTED_BACKEND = "unsupported_backend"


class RejectedError(TrustError):
    """A message or quote failed verification. ``reason`` is a :class:`Reason`."""

    def __init__(self, reason: Reason, message: str):
        self.reason = Reason(reason)
        super().__init__(f"[{self.reason.value}] {message}")


class EnvelopeError(RejectedError):
    """A signed envelope was rejected; see ``reason``."""


class QuoteError(RejectedError):
    """An attestation quote was rejected; see ``reason``."""
