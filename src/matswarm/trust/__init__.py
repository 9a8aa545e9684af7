"""Trust layer: org identities and keystores, signed/encrypted envelopes, attestation quotes.

* :mod:`~matswarm.trust.identity`: :class:`OrgIdentity` (Ed25519 + X25519 + EVM key, encrypted
  keystore) and :class:`PublicIdentity` (what is registered on the ledger).
* :mod:`~matswarm.trust.envelope`: :func:`seal` and :class:`EnvelopeVerifier` for every message
  that crosses an org boundary.
* :mod:`~matswarm.trust.enclave`: attestation quotes behind abstract :class:`Enclave` /
  :class:`QuoteVerifier`; :class:`SimulatedEnclave` is **SIMULATED** (code identity and output
  integrity, not hardware isolation).

Every rejection raises a :class:`RejectedError` subclass with a stable :class:`Reason` code.
"""

from matswarm.trust.enclave import (
    SIMULATED_NOTE,
    Attested,
    CodeMeasurement,
    Enclave,
    EnclaveRegistration,
    EnclaveRegistry,
    Quote,
    QuoteVerifier,
    SimulatedEnclave,
    SimulatedQuoteVerifier,
    measure_files,
    measure_modules,
    sha256_hex,
)
from matswarm.trust.envelope import Envelope, EnvelopeVerifier, Kind, open_envelope, seal
from matswarm.trust.errors import (
    EnvelopeError,
    KeystoreError,
    QuoteError,
    Reason,
    RejectedError,
    TrustError,
)
from matswarm.trust.identity import PASSPHRASE_ENV, OrgIdentity, PublicIdentity

__all__ = [
    "PASSPHRASE_ENV",
    "SIMULATED_NOTE",
    "Attested",
    "CodeMeasurement",
    "Enclave",
    "EnclaveRegistration",
    "EnclaveRegistry",
    "Envelope",
    "EnvelopeError",
    "EnvelopeVerifier",
    "KeystoreError",
    "Kind",
    "OrgIdentity",
    "PublicIdentity",
    "Quote",
    "QuoteError",
    "QuoteVerifier",
    "Reason",
    "RejectedError",
    "SimulatedEnclave",
    "SimulatedQuoteVerifier",
    "TrustError",
    "measure_files",
    "measure_modules",
    "open_envelope",
    "seal",
    "sha256_hex",
]
