"""Attested local training: updates carry an enclave quote, and unquoted or altered ones are
rejected before aggregation, each rejection recorded (org, round, reason).

.. warning:: With :class:`~matswarm.trust.SimulatedEnclave` this is **SIMULATED** attestation:
   it proves code identity and that the update is exactly what the measured training code
   produced; it does not give hardware isolation (see :mod:`matswarm.trust.enclave`).

What it stops, and what it cannot
    An update changed after attested training (sign flip, noise, ALIE, IPM, a forged sample
    count) no longer matches the quote's output hash and is rejected. Label flipping changes the
    org's *data* before the attested code reads it: the org commits the hash of its (flipped)
    table, honest code trains on it, and the quote is valid. Attestation cannot stop it.

The quote of org ``O`` in round ``t`` of task ``T`` binds
    the code measurement, ``purpose = "train"``, ``T``, ``t``, ``O``, the inputs
    ``dataset`` (the hash ``O`` committed for its training table at task start) and
    ``start_model`` (hash of round ``t``'s global model), and the output hash over
    :func:`update_bytes` (update kind, sample count, float32 vector).

Rejections go to any :class:`RejectionLog`: :class:`MemoryRejectionLog`,
:class:`JsonlRejectionLog`, or :class:`LedgerRejectionLog` (``Ledger.record_rejection``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from matswarm.aggregation import AggregationRule, assumed_f, with_f
from matswarm.algorithms.base import LocalResult, RingMessage
from matswarm.data.federated import StandardizedOrg
from matswarm.protocol.engine import RoundEngine, RoundHooks
from matswarm.protocol.messages import Update, vector_hash
from matswarm.trust.enclave import Enclave, Quote, QuoteVerifier, measure_modules, sha256_hex
from matswarm.trust.errors import QuoteError

PURPOSE = "train"
MISSING_QUOTE = "missing_quote"
UNCOMMITTED_DATASET = "uncommitted_dataset"


def dataset_hash(data: StandardizedOrg) -> str:
    """sha256 of the table the training code reads (float32 little-endian X then y)."""
    h = hashlib.sha256(b"matswarm-dataset/v1|")
    h.update(f"{data.X.shape[0]}x{data.X.shape[1]}|".encode())
    h.update(np.ascontiguousarray(data.X, dtype="<f4").tobytes())
    h.update(np.ascontiguousarray(data.y, dtype="<f4").tobytes())
    return h.hexdigest()


def update_bytes(kind: str, n_samples: int, vector: np.ndarray) -> bytes:
    """The attested output: update kind, sample count and the float32 vector."""
    header = f"matswarm-attested-update/v1|{kind}|{int(n_samples)}|".encode()
    return header + np.ascontiguousarray(vector, dtype="<f4").tobytes()


@dataclass(frozen=True)
class AttestedLocalResult(LocalResult):
    """A :class:`LocalResult` plus the enclave's quote over its update."""

    quote: Quote | None = None


class AttestedNode:
    """Runs a participant's local training inside an enclave and attaches the quote.

    ``node`` is an :class:`~matswarm.protocol.OrgNode` (anything with ``name``, ``n_samples``,
    ``data`` and ``train``). Ring algorithms are not supported (their start model is a peer's,
    not the agreed global model).
    """

    def __init__(self, node: Any, enclave: Enclave, task: str):
        if enclave.org != node.name:
            raise ValueError(f"enclave belongs to {enclave.org!r}, node is {node.name!r}")
        self.node = node
        self.enclave = enclave
        self.task = task
        self.name: str = node.name
        self.dataset_hash = dataset_hash(node.data)

    @property
    def n_samples(self) -> int:
        return self.node.n_samples

    def __getattr__(self, item: str) -> Any:  # seed, index, data, ... of the wrapped node
        if item == "node":
            raise AttributeError(item)
        return getattr(self.node, item)

    def train(
        self, round_: int, start_params: np.ndarray, ring_in: RingMessage | None
    ) -> AttestedLocalResult:
        if ring_in is not None:
            raise ValueError("attested training supports non-ring algorithms only")
        start = np.ascontiguousarray(start_params, dtype=np.float32)
        att = self.enclave.run(
            self.node.train,
            round_,
            start,
            None,
            purpose=PURPOSE,
            task_id=self.task,
            round=round_,
            inputs={"dataset": self.dataset_hash, "start_model": vector_hash(start)},
            encode=lambda r: update_bytes(r.kind, r.n_samples, r.update_vector(start)),
        )
        res = att.value
        out = AttestedLocalResult(
            **{f.name: getattr(res, f.name) for f in fields(LocalResult)}, quote=att.quote
        )
        # Reports the wrapped participant attached (a private org's DP spend) travel on.
        if getattr(res, "reports", None):
            object.__setattr__(out, "reports", res.reports)
        return out


@dataclass(frozen=True)
class Rejection:
    """One update refused before aggregation. ``reason`` is a stable code
    (:class:`~matswarm.trust.Reason` value, or ``missing_quote`` / ``uncommitted_dataset``)."""

    task: str
    round: int
    org: str
    reason: str
    detail: str = ""


class RejectionLog(Protocol):
    """Where rejections are recorded (memory, a JSON-lines file, the ledger, ...)."""

    def record(self, rejection: Rejection) -> None: ...


class MemoryRejectionLog:
    def __init__(self) -> None:
        self.entries: list[Rejection] = []

    def record(self, rejection: Rejection) -> None:
        self.entries.append(rejection)

    def to_list(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.entries]


class JsonlRejectionLog:
    """Appends one JSON object per rejection to ``path``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def record(self, rejection: Rejection) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(rejection), sort_keys=True) + "\n")


class LedgerRejectionLog:
    """Records rejections on the ledger via ``ledger.record_rejection(task_id, round, org_address,
    reason)``; ``task_id`` is the task's ledger id and ``addresses`` maps org name to its EVM
    address (as registered on the ledger). The engine and the SwarmLedger contract both number
    rounds from 1.

    The contract accepts a rejection only from a task participant, about a participant, in a round
    that is open on the ledger; with the full trust layer the quote would travel inside the
    signed envelope and be checked in the org agent's verify step (not wired here)."""

    def __init__(self, ledger: Any, task_id: Any, addresses: Mapping[str, str]):
        self.ledger = ledger
        self.task_id = task_id
        self.addresses = dict(addresses)

    def record(self, rejection: Rejection) -> None:
        self.ledger.record_rejection(
            self.task_id,
            rejection.round,
            self.addresses[rejection.org],
            rejection.reason,
        )


@dataclass(frozen=True)
class AttestationPolicy:
    """What every org checks about an attested update: a valid quote from a registered enclave
    running the agreed training code, naming the org's committed dataset hash, the round's start
    model and exactly this update. Used by :class:`AttestationHooks` (experiments) and by each
    :class:`~matswarm.protocol.trusted.OrgAgent` (the full trust layer)."""

    verifier: QuoteVerifier
    measurement: str | tuple[str, ...]
    commitments: Mapping[str, str]

    def problem(
        self, task: str, round_: int, u: Update, quote: Quote | None, start_hash: str
    ) -> tuple[str, str] | None:
        """``(reason, detail)`` if ``u`` must be rejected, else ``None``."""
        if quote is None:
            return MISSING_QUOTE, "update came without an attestation quote"
        committed = self.commitments.get(u.org)
        if committed is None:
            return UNCOMMITTED_DATASET, f"{u.org!r} committed no dataset hash for this task"
        try:
            self.verifier.verify(
                quote,
                measurement=self.measurement,
                purpose=PURPOSE,
                task_id=task,
                round=round_,
                output_hash=sha256_hex(update_bytes(u.kind, u.n_samples, u.vector)),
                inputs={"dataset": committed, "start_model": start_hash},
                org=u.org,
            )
        except QuoteError as exc:
            return exc.reason.value, str(exc)
        return None


class AttestationHooks(RoundHooks):
    """Round hooks that admit only updates with a valid training quote.

    ``commitments`` maps each org to the dataset hash it committed at task start;
    ``measurement`` is the agreed training-code measurement (one or several accepted);
    ``initial_global`` the task's initial model. Other hooks (signatures, ledger) can be chained
    with ``inner``: they see only accepted updates.
    """

    def __init__(
        self,
        task: str,
        verifier: QuoteVerifier,
        measurement: str | Iterable[str],
        commitments: Mapping[str, str],
        initial_global: np.ndarray,
        logs: Sequence[RejectionLog] = (),
        inner: RoundHooks | None = None,
    ):
        self.task = task
        self.policy = AttestationPolicy(
            verifier,
            measurement if isinstance(measurement, str) else tuple(measurement),
            dict(commitments),
        )
        self.logs = list(logs)
        self.inner = inner or RoundHooks()
        self._start_hash = vector_hash(initial_global)
        self._quotes: dict[tuple[int, str], Quote | None] = {}
        self.rejected: list[Rejection] = []
        self.accepted_count = 0
        self.rejected_this_round = 0

    def publish(self, update: Update, result: LocalResult) -> None:
        self._quotes[(update.round, update.org)] = getattr(result, "quote", None)
        self.inner.publish(update, result)

    @property
    def commitments(self) -> Mapping[str, str]:
        """Each org's committed dataset hash (the policy's, shared)."""
        return self.policy.commitments

    def _check(self, round_: int, u: Update) -> tuple[str, str] | None:
        quote = self._quotes.pop((round_, u.org), None)
        return self.policy.problem(self.task, round_, u, quote, self._start_hash)

    def collect(self, round_: int, updates: list[Update]) -> list[Update]:
        accepted = []
        self.rejected_this_round = 0
        for u in updates:
            problem = self._check(round_, u)
            if problem is None:
                accepted.append(u)
                continue
            rej = Rejection(self.task, round_, u.org, problem[0], problem[1])
            self.rejected.append(rej)
            self.rejected_this_round += 1
            for log in self.logs:
                log.record(rej)
        self.accepted_count += len(accepted)
        return self.inner.collect(round_, accepted)

    def finalise(self, round_: int, *args: Any) -> str:
        """Passes through to ``inner``; the new global model (``args[-3]``, whichever of the
        engine's ``(global, updates, aggregator)`` or ``(previous, global, updates, aggregator)``
        signatures is in use) is the start model the next round's quotes must name."""
        digest = self.inner.finalise(round_, *args)
        self._start_hash = vector_hash(args[-3])
        return digest

    def ring_handoff(self, round_, sender, receiver, message):
        return self.inner.ring_handoff(round_, sender, receiver, message)


TRAINING_CODE = ("matswarm.algorithms", "matswarm.models")
"""The modules whose source is measured as "the training code" of an attested task."""


@functools.lru_cache(maxsize=4)
def training_measurement(modules: tuple[str, ...] = TRAINING_CODE) -> str:
    return measure_modules(modules).digest


def attest_participants(
    engine: RoundEngine,
    *,
    enclave_factory: Callable[[str, str], Enclave] | None = None,
    identities: Mapping[str, Any] | None = None,
) -> AttestationPolicy:
    """Run every participant's local training in its own (SIMULATED) enclave and return the
    policy every org checks updates against: the enclaves' registrations (signed by the orgs),
    the training-code measurement and each org's committed dataset hash. Call before round 1."""
    from matswarm.trust import EnclaveRegistry, OrgIdentity, SimulatedEnclave
    from matswarm.trust.enclave import SimulatedQuoteVerifier

    if engine.run_state.history:
        raise ValueError("attested training must be set up before the first round")
    if engine.algorithm.ring:
        raise ValueError("attested training supports non-ring algorithms only")
    measurement = training_measurement()
    registry = EnclaveRegistry()
    nodes = []
    for p in engine.participants:
        if enclave_factory is not None:
            enclave = enclave_factory(p.name, measurement)
        else:
            enclave = SimulatedEnclave(measurement, org=p.name)
        if isinstance(enclave, SimulatedEnclave):
            identity = (identities or {}).get(p.name) or OrgIdentity.generate(p.name)
            registry.add(enclave.registration(identity), identity.public)
        nodes.append(AttestedNode(p, enclave, engine.task))
    engine.participants = nodes
    return AttestationPolicy(
        SimulatedQuoteVerifier(registry), measurement, {n.name: n.dataset_hash for n in nodes}
    )


def attest_engine(
    engine: RoundEngine,
    *,
    logs: Sequence[RejectionLog] = (),
    reduce_f_by_proven_faults: bool = True,
    enclave_factory: Callable[[str, str], Enclave] | None = None,
    identities: Mapping[str, Any] | None = None,
) -> AttestationHooks:
    """Turn on attested training for a freshly built engine (before its first round).

    Every participant gets its own SIMULATED enclave (measuring :data:`TRAINING_CODE`), whose key
    its org registers (signed with a fresh org identity); every org commits the hash of its
    training table; the engine's hooks become :class:`AttestationHooks` around the previous
    ones. ``identities`` (org name -> :class:`~matswarm.trust.OrgIdentity`) signs the enclave
    registrations; missing ones are generated (about 0.1 s each: the EVM key derivation is pure
    Python). With ``reduce_f_by_proven_faults`` the task's rule is wrapped in
    :class:`ProvenFaultyAware`. Wrap Byzantine participants *after* this call: their attack then
    acts on the attested output, as a real post-training manipulation would.
    """
    policy = attest_participants(engine, enclave_factory=enclave_factory, identities=identities)
    hooks = AttestationHooks(
        engine.task,
        policy.verifier,
        policy.measurement,
        policy.commitments,
        engine.run_state.global_params,
        logs=logs,
        inner=engine.hooks,
    )
    engine.hooks = hooks
    if reduce_f_by_proven_faults and assumed_f(engine.aggregator.rule) is not None:
        engine.aggregator.rule = ProvenFaultyAware(engine.aggregator.rule, hooks)
    return hooks


class ProvenFaultyAware(AggregationRule):
    """Aggregates with ``f - r`` where ``r`` updates were rejected this round by attestation.

    An honest org's attested update always verifies, so each rejected org is proven faulty: of
    the accepted updates at most ``f - r`` can come from Byzantine orgs (a data attacker's update
    verifies and still counts against ``f``). Without this, rejecting one update of ``n = 4f + 3``
    would leave Bulyan below its requirement.
    """

    def __init__(self, rule: AggregationRule, hooks: AttestationHooks):
        super().__init__()
        self.rule = rule
        self.hooks = hooks
        self.name = rule.name  # type: ignore[misc]
        self.params = dict(rule.params)
        self.f = assumed_f(rule)

    def min_participants(self) -> int:
        return self.rule.min_participants()

    def citations(self) -> tuple[str, ...]:  # type: ignore[override]
        return self.rule.citations()

    def describe(self) -> str:
        return f"{self.rule.describe()} (f reduced by attestation-proven faults)"

    def aggregate(self, stack, weights, center):
        r = self.hooks.rejected_this_round
        rule = self.rule if r == 0 or self.f is None else with_f(self.rule, max(0, self.f - r))
        return rule.aggregate(stack, weights, center)
