"""Attestation: enclaves that sign what they computed, and verifiers of their quotes.

.. warning:: **SIMULATED.** :class:`SimulatedEnclave` is not a hardware enclave. Its quotes prove
   *code identity* (the measurement of the source files the org declared it runs) and the
   *integrity of outputs signed inside it* (nothing altered after signing verifies). They do NOT
   prove hardware isolation: an org that controls its machine can read the enclave key from
   memory and sign anything, or patch the measured code at run time. Use it to wire and test the
   protocol, and to show what attestation would catch; claim nothing stronger.

What a quote binds
    A :class:`Quote` states: "code with measurement ``M``, running for org ``O`` as purpose ``P``
    (``"train"``, ``"aggregate"``, …) in task ``T`` round ``R``, read inputs with hashes
    ``{name: sha256}`` (e.g. ``dataset`` = the org's committed dataset hash, ``start_model`` =
    the previous global model) and produced output with hash ``H``". Its canonical *report*
    bytes (:meth:`Quote.report_bytes`, encoding in :mod:`matswarm.trust._canonical`) are what the
    backend's evidence covers. :meth:`Enclave.run` computes the output hash itself over the bytes
    the measured function returned, so an update altered after training (sign flip, noise, ALIE,
    IPM) no longer matches any quote. Changing the *data* (label flipping) is not detected:
    attestation proves which code ran, not that the data are honest.

Measurement
    :func:`measure_modules` / :func:`measure_files` hash source files deterministically: each
    file is named by its path relative to an import root (``matswarm/aggregation/rules.py``),
    CRLF is normalised to LF, and the sorted (path, sha256) list is hashed. The result is the same
    on every machine that has the same source, wherever it is installed.

Plugging in real SGX (Gramine, DCAP)
    Both sides are abstract: :class:`Enclave` and :class:`QuoteVerifier`. A Gramine backend
    subclasses :class:`Enclave` with ``backend = "sgx-dcap"``. Its ``measurement`` is the
    MRENCLAVE of the signed enclave (from the Gramine manifest signature, instead of hashing
    files). Its :meth:`Enclave._evidence` writes ``sha256(report_bytes)`` (zero-padded to 64
    bytes) to ``/dev/attestation/user_report_data`` and returns the bytes read back from
    ``/dev/attestation/quote``: a DCAP quote signed by the platform's quoting enclave. Its
    ``signer`` is the fingerprint of the platform's PCK certificate.

    The matching ``DcapQuoteVerifier(QuoteVerifier)`` implements
    :meth:`QuoteVerifier._verify_evidence`: verify the quote's certificate chain up to Intel's
    root with the DCAP quote-verification library (collateral from a PCCS), then check that the
    quote's MRENCLAVE equals ``quote.measurement`` and its REPORTDATA equals
    ``sha256(quote.report_bytes())``. Everything else (purpose, task, round, inputs, output
    hash, expected measurement) is checked by the shared :meth:`QuoteVerifier.verify`, so the
    protocol code does not change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from matswarm.trust._canonical import encode_fields
from matswarm.trust.errors import QuoteError, Reason
from matswarm.trust.identity import OrgIdentity, PublicIdentity, validate_org_name

log = logging.getLogger(__name__)

SIMULATED_BACKEND = "simulated"
SIMULATED_NOTE = (
    "SIMULATED enclave: proves code identity and the integrity of outputs signed inside it, "
    "NOT hardware isolation (an org controlling its machine could extract the enclave key)"
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")

T = TypeVar("T")


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of ``data`` (the hash format used in quotes)."""
    return hashlib.sha256(data).hexdigest()


# --- measurement ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CodeMeasurement:
    """Hash of a set of source files; ``files`` lists (relative path, sha256) for diagnosis."""

    digest: str
    files: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        return self.digest


def measure_files(files: Iterable[str | Path], *, root: str | Path) -> CodeMeasurement:
    """Measure ``files``, naming each by its POSIX path relative to ``root``."""
    base = Path(root).resolve()
    entries: dict[str, str] = {}
    for f in files:
        path = Path(f).resolve()
        try:
            rel = path.relative_to(base).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not under the measurement root {base}") from None
        content = path.read_bytes().replace(b"\r\n", b"\n")
        entries[rel] = hashlib.sha256(content).hexdigest()
    if not entries:
        raise ValueError("nothing to measure: the file list is empty")
    ordered = tuple(sorted(entries.items()))
    digest = hashlib.sha256(
        encode_fields(b"matswarm/measurement/v1\0", [list(pair) for pair in ordered])
    ).hexdigest()
    return CodeMeasurement(digest=digest, files=ordered)


def measure_modules(modules: Iterable[str | ModuleType]) -> CodeMeasurement:
    """Measure Python modules by name; a package contributes all its ``.py`` files, recursively.

    Paths are relative to each module's import root, so the digest does not depend on where
    matswarm is installed. Example: ``measure_modules(["matswarm.aggregation"])``.
    """
    entries: dict[str, Path] = {}
    for mod in modules:
        name = mod.__name__ if isinstance(mod, ModuleType) else mod
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise ValueError(f"cannot measure {name!r}: no Python source file found")
        origin = Path(spec.origin).resolve()
        depth = len(name.split("."))
        if spec.submodule_search_locations:  # a package: every .py below its directory
            root = origin.parents[depth]
            files = [p for p in origin.parent.rglob("*.py") if "__pycache__" not in p.parts]
        else:
            root = origin.parents[depth - 1]
            files = [origin]
        for p in files:
            entries[p.resolve().relative_to(root).as_posix()] = p
    ordered = sorted(entries.items())
    if not ordered:
        raise ValueError("nothing to measure: no modules given")
    pairs = tuple(
        (rel, hashlib.sha256(p.read_bytes().replace(b"\r\n", b"\n")).hexdigest())
        for rel, p in ordered
    )
    digest = hashlib.sha256(
        encode_fields(b"matswarm/measurement/v1\0", [list(pair) for pair in pairs])
    ).hexdigest()
    return CodeMeasurement(digest=digest, files=pairs)


# --- quotes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Quote:
    """An attestation quote. ``evidence`` is backend-specific (simulated: an Ed25519 signature
    by the enclave key ``signer``; SGX: the DCAP quote)."""

    backend: str
    org: str
    signer: str
    measurement: str
    purpose: str
    task_id: str
    round: int
    inputs: tuple[tuple[str, str], ...]
    output_hash: str
    evidence: bytes = field(repr=False)

    @property
    def simulated(self) -> bool:
        return self.backend == SIMULATED_BACKEND

    def input_dict(self) -> dict[str, str]:
        return dict(self.inputs)

    def report_bytes(self) -> bytes:
        """Canonical bytes of every claim in the quote (what the evidence covers)."""
        return encode_fields(
            b"matswarm/quote/v1\0",
            [
                self.backend,
                self.org,
                self.signer,
                self.measurement,
                self.purpose,
                self.task_id,
                self.round,
                [list(pair) for pair in self.inputs],
                self.output_hash,
            ],
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "org": self.org,
            "signer": self.signer,
            "measurement": self.measurement,
            "purpose": self.purpose,
            "task_id": self.task_id,
            "round": self.round,
            "inputs": dict(self.inputs),
            "output_hash": self.output_hash,
            "evidence": self.evidence.hex(),
        }
        if self.simulated:
            out["note"] = SIMULATED_NOTE  # informative only, not part of the signed report
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quote:
        try:
            quote = cls(
                backend=str(data["backend"]),
                org=str(data["org"]),
                signer=str(data["signer"]),
                measurement=str(data["measurement"]),
                purpose=str(data["purpose"]),
                task_id=str(data["task_id"]),
                round=int(data["round"]),
                inputs=_normalise_inputs(data["inputs"]),
                output_hash=str(data["output_hash"]),
                evidence=bytes.fromhex(data["evidence"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise QuoteError(Reason.MALFORMED, f"cannot parse quote: {exc}") from None
        _check_quote_shape(quote)
        return quote

    @classmethod
    def from_json(cls, text: str | bytes) -> Quote:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise QuoteError(Reason.MALFORMED, f"quote is not JSON: {exc}") from None
        return cls.from_dict(data)


@dataclass(frozen=True)
class Attested(Generic[T]):
    """Result of :meth:`Enclave.run`: the function's value, its encoded output and the quote."""

    value: T
    output: bytes = field(repr=False)
    quote: Quote


class Enclave(ABC):
    """An execution environment that runs measured code and quotes its results."""

    backend: ClassVar[str]

    @property
    @abstractmethod
    def org(self) -> str:
        """The org operating this enclave."""

    @property
    @abstractmethod
    def measurement(self) -> str:
        """Hex digest identifying the code inside (file hash, or MRENCLAVE for SGX)."""

    @property
    @abstractmethod
    def signer(self) -> str:
        """Identifier of the key whose evidence verifiers check (simulated: the enclave key)."""

    @abstractmethod
    def _evidence(self, report: bytes) -> bytes:
        """Backend-specific evidence over ``report`` (signature, or hardware quote)."""

    def run(
        self,
        fn: Callable[..., T],
        /,
        *args: Any,
        purpose: str,
        task_id: str,
        round: int,
        inputs: Mapping[str, str | bytes],
        encode: Callable[[T], bytes] | None = None,
        **kwargs: Any,
    ) -> Attested[T]:
        """Run ``fn(*args, **kwargs)`` inside the enclave and quote its output.

        ``inputs`` names what the code read (e.g. ``{"dataset": …, "start_model": …}``): a
        ``bytes`` value is hashed here, so the quote describes exactly those bytes (preferred);
        a ``str`` must already be a hex sha256. The output hash is computed here over
        ``encode(value)`` (or the value itself, which must then be bytes): callers cannot choose
        it.
        """
        hashed = {
            name: sha256_hex(bytes(v)) if isinstance(v, bytes | bytearray | memoryview) else v
            for name, v in inputs.items()
        }
        value = fn(*args, **kwargs)
        output = encode(value) if encode is not None else value
        if not isinstance(output, bytes | bytearray | memoryview):
            raise TypeError(
                f"{getattr(fn, '__name__', fn)!r} returned {type(output).__name__}; return bytes "
                "or pass encode= to serialise the result"
            )
        output = bytes(output)
        quote = self._make_quote(
            purpose=purpose,
            task_id=task_id,
            round=round,
            inputs=hashed,
            output_hash=sha256_hex(output),
        )
        return Attested(value=value, output=output, quote=quote)

    def _make_quote(
        self,
        *,
        purpose: str,
        task_id: str,
        round: int,
        inputs: Mapping[str, str],
        output_hash: str,
    ) -> Quote:
        draft = Quote(
            backend=self.backend,
            org=self.org,
            signer=self.signer,
            measurement=self.measurement,
            purpose=purpose,
            task_id=task_id,
            round=round,
            inputs=_normalise_inputs(inputs),
            output_hash=output_hash,
            evidence=b"",
        )
        _check_quote_shape(draft, evidence=False)
        return dataclasses.replace(draft, evidence=self._evidence(draft.report_bytes()))


# --- registry of enclave keys ---------------------------------------------------------------


@dataclass(frozen=True)
class EnclaveRegistration:
    """An org's signed statement "enclave key ``signer`` runs code ``measurement`` for me".

    It is what an org publishes (on the ledger) so others accept its simulated quotes.
    """

    org: str
    backend: str
    signer: str
    measurement: str
    org_signature: bytes = field(repr=False)

    def signed_bytes(self) -> bytes:
        return encode_fields(
            b"matswarm/enclave-registration/v1\0",
            [self.org, self.backend, self.signer, self.measurement],
        )

    def to_dict(self) -> dict[str, Any]:
        out = {
            "org": self.org,
            "backend": self.backend,
            "signer": self.signer,
            "measurement": self.measurement,
            "org_signature": self.org_signature.hex(),
        }
        if self.backend == SIMULATED_BACKEND:
            out["note"] = SIMULATED_NOTE
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EnclaveRegistration:
        return cls(
            org=str(data["org"]),
            backend=str(data["backend"]),
            signer=str(data["signer"]),
            measurement=str(data["measurement"]),
            org_signature=bytes.fromhex(data["org_signature"]),
        )


class EnclaveRegistry:
    """Enclave keys accepted by verifiers: each added only with a valid signature of its org."""

    def __init__(self) -> None:
        self._by_signer: dict[str, EnclaveRegistration] = {}

    def add(self, registration: EnclaveRegistration, org: PublicIdentity) -> None:
        """Accept ``registration`` if ``org`` (the registered identity) signed it."""
        if registration.org != org.name:
            raise QuoteError(
                Reason.UNKNOWN_ENCLAVE,
                f"registration names org {registration.org!r} but was checked against {org.name!r}",
            )
        if not org.verify(registration.org_signature, registration.signed_bytes()):
            raise QuoteError(
                Reason.BAD_SIGNATURE,
                f"enclave registration for {org.name!r} is not signed by that org's key",
            )
        self._by_signer[registration.signer] = registration

    def get(self, signer: str) -> EnclaveRegistration | None:
        return self._by_signer.get(signer)

    def __contains__(self, signer: object) -> bool:
        return signer in self._by_signer

    def __len__(self) -> int:
        return len(self._by_signer)


# --- verification ---------------------------------------------------------------------------


class QuoteVerifier(ABC):
    """Checks quotes: backend evidence first, then every claim against what the caller expects."""

    backend: ClassVar[str]

    @abstractmethod
    def _verify_evidence(self, quote: Quote) -> None:
        """Raise :class:`QuoteError` unless ``quote.evidence`` proves ``quote.report_bytes()``."""

    def verify(
        self,
        quote: Quote,
        *,
        measurement: str | Iterable[str],
        purpose: str,
        task_id: str,
        round: int,
        output_hash: str | None = None,
        inputs: Mapping[str, str] | None = None,
        org: str | None = None,
    ) -> None:
        """Raise :class:`QuoteError` (with a ``reason``) unless ``quote`` attests exactly this.

        ``measurement`` is the expected code hash (or several accepted ones), e.g. the training
        code hash recorded in the task on the ledger. ``output_hash`` is the sha256 of the
        artifact the quote is presented with; ``inputs`` the expected input hashes (each given
        name must be present and equal; the quote may list more).
        """
        if quote.backend != self.backend:
            raise QuoteError(
                Reason.UNSUPPORTED_BACKEND,
                f"quote from {quote.org!r} has backend {quote.backend!r}; this verifier checks "
                f"{self.backend!r} quotes",
            )
        self._verify_evidence(quote)
        accepted = {measurement} if isinstance(measurement, str) else set(measurement)
        if quote.measurement not in accepted:
            raise QuoteError(
                Reason.WRONG_MEASUREMENT,
                f"quote from {quote.org!r} attests code {quote.measurement[:16]}…, which is not "
                "the task's agreed code (re-run with the agreed matswarm version)",
            )
        if org is not None and quote.org != org:
            raise QuoteError(Reason.WRONG_ORG, f"quote is from org {quote.org!r}, expected {org!r}")
        if quote.purpose != purpose:
            raise QuoteError(
                Reason.WRONG_PURPOSE, f"quote is for {quote.purpose!r}, expected {purpose!r}"
            )
        if quote.task_id != task_id:
            raise QuoteError(
                Reason.WRONG_TASK, f"quote is for task {quote.task_id!r}, expected {task_id!r}"
            )
        if quote.round != round:
            raise QuoteError(
                Reason.WRONG_ROUND, f"quote is for round {quote.round}, expected {round}"
            )
        if inputs is not None:
            quoted = quote.input_dict()
            for name, expected in inputs.items():
                if quoted.get(name) != expected:
                    raise QuoteError(
                        Reason.INPUT_MISMATCH,
                        f"quote from {quote.org!r} used input {name!r} = "
                        f"{quoted.get(name)!r}, expected {expected!r}",
                    )
        if output_hash is not None and quote.output_hash != output_hash:
            raise QuoteError(
                Reason.OUTPUT_MISMATCH,
                f"artifact from {quote.org!r} (sha256 {output_hash[:16]}…) is not the output the "
                f"enclave attested ({quote.output_hash[:16]}…): it was changed after the attested "
                "computation",
            )


class SimulatedEnclave(Enclave):
    """SIMULATED enclave: an in-process Ed25519 key plus a source-code measurement.

    See the module docstring for what this does and does not prove. ``key`` defaults to a fresh
    in-memory key; it is never written anywhere by this class.
    """

    backend: ClassVar[str] = SIMULATED_BACKEND
    _warned: ClassVar[bool] = False

    def __init__(
        self,
        measurement: str | CodeMeasurement,
        *,
        org: str,
        key: Ed25519PrivateKey | None = None,
    ):
        digest = measurement.digest if isinstance(measurement, CodeMeasurement) else measurement
        if not _HEX64.match(digest):
            raise ValueError("measurement must be a 64-character lowercase hex sha256")
        self._org = validate_org_name(org)
        self._measurement = digest
        self._key = key if key is not None else Ed25519PrivateKey.generate()
        self._signer = (
            self._key.public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            .hex()
        )
        if not SimulatedEnclave._warned:
            SimulatedEnclave._warned = True
            log.warning("%s", SIMULATED_NOTE)

    @classmethod
    def for_modules(cls, modules: Iterable[str | ModuleType], *, org: str) -> SimulatedEnclave:
        """An enclave whose measurement is :func:`measure_modules` of ``modules``."""
        return cls(measure_modules(modules), org=org)

    @property
    def org(self) -> str:
        return self._org

    @property
    def measurement(self) -> str:
        return self._measurement

    @property
    def signer(self) -> str:
        return self._signer

    def registration(self, identity: OrgIdentity) -> EnclaveRegistration:
        """The org-signed registration of this enclave's key (publish it on the ledger)."""
        if identity.name != self._org:
            raise ValueError(f"enclave belongs to {self._org!r}, not {identity.name!r}")
        draft = EnclaveRegistration(
            org=self._org,
            backend=self.backend,
            signer=self._signer,
            measurement=self._measurement,
            org_signature=b"",
        )
        return dataclasses.replace(draft, org_signature=identity.sign(draft.signed_bytes()))

    def _evidence(self, report: bytes) -> bytes:
        return self._key.sign(report)

    def __repr__(self) -> str:
        return (
            f"SimulatedEnclave(org={self._org!r}, measurement={self._measurement[:16]}…, "
            f"signer={self._signer[:16]}…, SIMULATED: no hardware isolation)"
        )


class SimulatedQuoteVerifier(QuoteVerifier):
    """Verifies SIMULATED quotes against a registry of org-endorsed enclave keys."""

    backend: ClassVar[str] = SIMULATED_BACKEND

    def __init__(self, registry: EnclaveRegistry):
        self.registry = registry

    def _verify_evidence(self, quote: Quote) -> None:
        reg = self.registry.get(quote.signer)
        if reg is None:
            raise QuoteError(
                Reason.UNKNOWN_ENCLAVE,
                f"enclave key {quote.signer[:16]}… of {quote.org!r} is not registered (the org "
                "must publish its enclave registration first)",
            )
        if reg.org != quote.org or reg.backend != quote.backend:
            raise QuoteError(
                Reason.UNKNOWN_ENCLAVE,
                f"enclave key {quote.signer[:16]}… is registered to {reg.org!r}, not {quote.org!r}",
            )
        if reg.measurement != quote.measurement:
            raise QuoteError(
                Reason.WRONG_MEASUREMENT,
                f"enclave key of {quote.org!r} was registered for code "
                f"{reg.measurement[:16]}…, but the quote claims {quote.measurement[:16]}…",
            )
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(quote.signer)).verify(
                quote.evidence, quote.report_bytes()
            )
        except Exception:
            raise QuoteError(
                Reason.BAD_SIGNATURE,
                f"quote from {quote.org!r} ({quote.purpose}, task {quote.task_id!r}, round "
                f"{quote.round}) is not signed by its enclave key: some field was altered",
            ) from None


# --- helpers --------------------------------------------------------------------------------


def _normalise_inputs(inputs: Mapping[str, str] | Iterable[Any]) -> tuple[tuple[str, str], ...]:
    items = inputs.items() if isinstance(inputs, Mapping) else inputs
    out = tuple(sorted((str(k), str(v)) for k, v in items))
    if len({k for k, _ in out}) != len(out):
        raise ValueError("duplicate input names")
    return out


def _check_quote_shape(quote: Quote, *, evidence: bool = True) -> None:
    problems = []
    try:
        validate_org_name(quote.org)
    except ValueError as exc:
        problems.append(str(exc))
    if not _PURPOSE.match(quote.purpose):
        problems.append(f"purpose {quote.purpose!r} must match [a-z][a-z0-9_]*")
    if not quote.task_id:
        problems.append("task_id is empty")
    if quote.round < 0:
        problems.append("round must be >= 0")
    for label, value in [("measurement", quote.measurement), ("output_hash", quote.output_hash)]:
        if not _HEX64.match(value):
            problems.append(f"{label} must be a 64-character lowercase hex sha256")
    for name, value in quote.inputs:
        if not _HEX64.match(value):
            problems.append(f"input {name!r} must be a 64-character lowercase hex sha256")
    if evidence and not quote.evidence:
        problems.append("evidence is empty")
    if problems:
        raise QuoteError(Reason.MALFORMED, "; ".join(problems))
