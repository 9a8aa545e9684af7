"""Setting up and running a trusted task whose organisations all live in this process.

This is how the demo and the experiments run "with the trust layer on": real keys (generated
for the run), a real EVM ledger (the embedded chain, persisted under the run's folder), a real
content-addressed store and every organisation verifying and voting. The multi-machine Flower
runtime uses the same :class:`~matswarm.protocol.trusted.OrgAgent` per node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matswarm.aggregation import AggregationRule
from matswarm.algorithms import FederatedAlgorithm
from matswarm.ledger import BatchError, Ledger, TaskStatus
from matswarm.models import ModelSpec
from matswarm.models.base import RegressionModel
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.archive import build_archive
from matswarm.protocol.attestation import AttestationPolicy, attest_participants
from matswarm.protocol.codec import encode_vector
from matswarm.protocol.engine import RoundEngine
from matswarm.protocol.messages import vector_hash
from matswarm.protocol.spec import TaskSpec
from matswarm.protocol.trusted import OrgAgent, TrustedHooks, org_metadata
from matswarm.store import BlobStore, LocalStore
from matswarm.trust import SIMULATED_NOTE, OrgIdentity, SimulatedEnclave


@dataclass(frozen=True)
class TrustSettings:
    """How much of the trust layer a run uses. ``enabled=False`` is the fast experiment path."""

    enabled: bool = True
    encrypt_updates: bool = True
    enclave: bool = False
    attested_training: bool = False
    #: Embedded chain of runs that are re-run, never resumed (``durable=False``): ``"auto"``
    #: (anvil when installed, else py-evm), ``"anvil"`` or ``"py-evm"``.
    chain: str = "auto"
    #: How the orgs check each round: ``"every-org"`` (each verifies and re-aggregates every
    #: update: K² work per round) or ``"leader"`` (one rotating org aggregates, the others
    #: check its signed claim and audit it with probability ``audit_rate``; see
    #: :mod:`matswarm.protocol.leader`). Recorded in the task spec.
    verification: str = "every-org"
    audit_rate: float | None = None


class Consortium:
    """Identities of the orgs, a ledger where all of them are admitted, and a shared store."""

    def __init__(self, ledger: Ledger, store: BlobStore, identities: dict[str, OrgIdentity]):
        self.ledger = ledger
        self.store = store
        self.identities = identities

    @classmethod
    def embedded(
        cls,
        directory: str | Path,
        names: Sequence[str],
        *,
        durable: bool = True,
        backend: str = "py-evm",
    ) -> Consortium:
        """Fresh keys for ``names``, all founders of a new embedded chain in ``directory``.

        ``durable=False`` writes the chain and the store without fsyncs: safe against a killed
        process, not against a power loss; for experiment runs, which are re-run, not resumed.
        ``backend`` is the embedded chain (:meth:`Ledger.embedded`); ``"anvil"`` keeps the
        chain's state only when closed, so it is for such runs too.
        """
        directory = Path(directory)
        identities = {n: OrgIdentity.generate(n) for n in names}
        founders = [i.evm_address for i in identities.values()]
        first = identities[names[0]]
        ledger = Ledger.embedded(
            directory / "ledger",
            first.evm_account(),
            founders=founders,
            durable=durable,
            backend=backend,
        )
        # Gas is free on the embedded chain and a reverted transaction is still reported with
        # the contract's reason, so the pre-flight eth_call (which doubles the EVM work) is off.
        ledger.preflight = False
        for ident in identities.values():
            pub = ident.public
            ledger.with_account(ident.evm_account()).register_org(
                bytes.fromhex(pub.ed25519), bytes.fromhex(pub.x25519), org_metadata(pub)
            )
        return cls(ledger, LocalStore(directory / "store", durable=durable), identities)

    def close(self) -> None:
        self.ledger.close()

    def create_task(self, spec: TaskSpec, initial_global: np.ndarray) -> bytes:
        """Archive the spec and initial model in the store and open the task on the ledger."""
        if vector_hash(initial_global) != spec.initial_model_sha256:
            raise ValueError("initial model does not match the spec's initial_model_sha256")
        self.store.put(spec.to_json())
        self.store.put(encode_vector(initial_global))
        issuer = self.ledger.with_account(self.identities[spec.participants[0]].evm_account())
        return issuer.create_task(
            [self.identities[n].evm_address for n in spec.participants],
            spec_hash=spec.digest(),
            train_code_hash=bytes.fromhex(spec.train_code_sha256),
            agg_code_hash=bytes.fromhex(spec.agg_code_sha256),
            rounds=spec.rounds,
            round_duration_s=spec.round_duration_s,
        )

    def agents(
        self,
        spec: TaskSpec,
        task_id: bytes,
        aggregator: Aggregator,
        enclave: bool = False,
        attestation: AttestationPolicy | None = None,
    ) -> list[OrgAgent]:
        directory = {n: self.identities[n].public for n in [*spec.participants, *spec.auditors]}
        out = []
        for name in spec.participants:
            encl = (
                SimulatedEnclave.for_modules(
                    ["matswarm.aggregation", "matswarm.protocol.aggregator"], org=name
                )
                if enclave
                else None
            )
            out.append(
                OrgAgent(
                    self.identities[name],
                    self.ledger,
                    self.store,
                    spec,
                    task_id,
                    directory,
                    aggregator.copy(),
                    encl,
                    attestation,
                )
            )
        return out


def trusted_engine(
    engine: RoundEngine,
    consortium: Consortium,
    *,
    model_spec: ModelSpec,
    algorithm: FederatedAlgorithm,
    rule: AggregationRule,
    seed: int,
    schema: dict,
    settings: TrustSettings,
    name: str = "task",
    contribution: dict[str, Any] | None = None,
    privacy: dict[str, Any] | None = None,
) -> tuple[RoundEngine, TaskSpec, bytes]:
    """Attach the trust layer to an in-process engine: create the task, one agent per org.

    ``contribution`` (settings as a dict) goes into the spec; attach the accounting itself with
    :func:`matswarm.contrib.attach_contributions` afterwards. ``privacy`` (a resolved
    :class:`~matswarm.privacy.PrivacyConfig` as a dict) is pinned in the spec; the engine's
    participants must already be private (``make_private``)."""
    from matswarm.protocol.leader import Verification, check_supported

    verification = Verification(settings.verification, settings.audit_rate)
    if verification.mode == "leader":
        check_supported(engine.aggregator, contribution)
    spec = TaskSpec.for_run(
        name,
        [p.name for p in engine.participants],
        model_spec,
        algorithm,
        rule,
        seed,
        schema,
        vector_hash(engine.run_state.initial_global),
        encrypt_updates=settings.encrypt_updates,
        attested_training=settings.attested_training,
        contribution=contribution,
        # A secure-aggregation task (matswarm.privacy.secagg_round) says so in its spec.
        secure_aggregation=getattr(engine.aggregator, "spec_fields", lambda: None)(),
        privacy=privacy,
        verification=verification.spec_fields(),
    )
    task_id = consortium.create_task(spec, engine.run_state.initial_global)
    engine.task = "0x" + task_id.hex()
    policy = None
    if settings.attested_training:
        # Training runs in each org's (simulated) enclave, registered with the org's own key;
        # every org's agent checks every quote in its verify step.
        policy = attest_participants(engine, identities=consortium.identities)
    engine.hooks = TrustedHooks(
        consortium.agents(spec, task_id, engine.aggregator, settings.enclave, policy)
    )
    archive = getattr(engine.aggregator, "archive_transcripts", None)
    if archive is not None:  # each round's signed unmasking transcript: store + ledger
        archive(engine.hooks.reference)
    return engine, spec, task_id


SECURITY_NOTE = (
    "Signatures, commitments and votes show who contributed what and that each global model is "
    "the agreed deterministic aggregate; they do not show that an org trained honestly on honest "
    "data. The embedded chain is one process: no consensus, no tamper resistance against its "
    "operator (production: a permissioned Besu/QBFT chain, one validator per org). "
    + SIMULATED_NOTE
)


def portable_onnx(
    store: BlobStore, model: RegressionModel, n_features: int, seed: int
) -> dict[str, Any] | None:
    """Export ``model`` to ONNX (checked with onnxruntime), store it, and return what the
    model card records (its sha256 and content id); None without the ``export`` extra."""
    from matswarm.export.onnx_model import ExportUnavailable, export_onnx

    try:
        exported = export_onnx(model, n_features, seed)
    except ExportUnavailable:
        return None
    return {**exported.info, "cid": store.put(exported.blob)}


def finish_task(
    consortium: Consortium,
    spec: TaskSpec,
    task_id: bytes,
    engine: RoundEngine,
    *,
    model: RegressionModel,
    extra_card: dict[str, Any] | None = None,
    votes: Mapping[str, bool] | None = None,
    vote_detail: dict[str, Any] | None = None,
) -> tuple[str | None, dict[str, Any]]:
    """The participants vote on the final model; if a quorum accepts, archive it (safetensors
    + model card, with the ONNX export's hash and content id) and record its content id on the
    ledger (the issuer's "uploading" transaction). Returns ``(cid, card)``; ``cid`` is None
    when the vote rejected the model (nothing is archived, the task is ``REJECTED`` on the
    ledger).

    ``votes`` maps each participant to its vote (missing: accept, i.e. no objection to the
    model its quorum finalised); ``vote_detail`` (what each based its vote on) goes in the card.
    """
    final = engine.run_state.global_params
    final_vote = _vote_final_model(consortium, spec, task_id, final, votes or {})
    model.set_flat(final)
    hooks = engine.hooks
    # Wrapping hooks (contribution accounting) expose the trusted hooks they wrap as ``trusted``
    # and what they add to the card as ``card_section()``.
    trusted = hooks if isinstance(hooks, TrustedHooks) else getattr(hooks, "trusted", None)
    agents = trusted.agents if isinstance(trusted, TrustedHooks) else {}
    section = getattr(hooks, "card_section", None)
    extra_card = {**(section() if callable(section) else {}), **(extra_card or {})}
    ledger = consortium.ledger
    card: dict[str, Any] = {
        "format": "matswarm-model-card/v1",
        "task": "0x" + task_id.hex(),
        "spec_sha256": spec.digest().hex(),
        "name": spec.name,
        "target": spec.schema.get("target"),
        "unit": spec.schema.get("unit"),
        "features": spec.schema.get("features"),
        "model": spec.model,
        "algorithm": {"name": spec.algorithm, **spec.algorithm_params},
        "aggregation": {"rule": spec.rule, **spec.rule_params},
        "participants": [
            {"name": n, "address": consortium.identities[n].evm_address} for n in spec.participants
        ],
        "rounds": [
            {"round": rec.round, "global_sha256": rec.global_hash}
            for rec in engine.run_state.history
        ],
        "final_model_sha256": vector_hash(final),
        "ledger": {
            "chain_id": ledger.expected_chain_id,
            "contract": ledger.address,
            "transactions": {
                name: {"commits": a.record.commit_txs, "votes": a.record.vote_txs}
                for name, a in agents.items()
            },
            "rejections": [
                {"by": name, "round": r.round, "org": r.org, "reason": r.reason}
                for name, a in agents.items()
                for r in a.record.rejections
            ],
            "reports": {name: a.record.reports for name, a in agents.items() if a.record.reports},
        },
        "attestation": {
            "backend": "simulated" if any(a.enclave for a in agents.values()) else None,
            "quotes": {name: a.record.quotes for name, a in agents.items() if a.record.quotes},
            "note": SIMULATED_NOTE,
        },
        "final_model_vote": {**final_vote, **(vote_detail or {})},
        "security_note": SECURITY_NOTE,
        # What `matswarm predict` needs to prepare a new table the way the orgs did.
        **({"featurizer": spec.featurizer} if spec.featurizer else {}),
        **(
            {"classification": {k: spec.schema[k] for k in ("threshold", "positive")}}
            if spec.schema.get("task") == "classification"
            else {}
        ),
        **(extra_card or {}),
    }
    if not final_vote["accepted"]:
        return None, card  # a rejected model is never archived as final
    card["schema"] = spec.schema  # what `matswarm predict` checks a table against
    card["onnx"] = portable_onnx(consortium.store, model, len(spec.schema["features"]), spec.seed)
    blob = build_archive(model, card)
    cid = consortium.store.put(blob)
    issuer = ledger.with_account(consortium.identities[spec.participants[0]].evm_account())
    issuer.set_final_model(task_id, bytes.fromhex(vector_hash(final)), cid)
    return cid, card


def _vote_final_model(
    consortium: Consortium,
    spec: TaskSpec,
    task_id: bytes,
    final: np.ndarray,
    votes: Mapping[str, bool],
) -> dict[str, Any]:
    """Every participant that has not voted yet (a resumed task) votes on the final model, in
    one batch; returns the outcome as recorded on the ledger."""
    ledger = consortium.ledger
    model_hash = bytes.fromhex(vector_hash(final))
    done = ledger.final_votes(task_id).votes
    calls = [
        ledger.with_account(consortium.identities[n].evm_account()).tx.vote_final_model(
            task_id, model_hash, bool(votes.get(n, True))
        )
        for n in spec.participants
        if consortium.identities[n].evm_address not in done
    ]
    if calls and ledger.task_info(task_id).status is TaskStatus.COMPLETED:
        try:
            ledger.send_batch(calls)
        except BatchError as exc:
            # Votes after the deciding rejection find the task REJECTED ("task not completed").
            if ledger.task_info(task_id).status is not TaskStatus.REJECTED:
                raise exc.first from None
    fv = ledger.final_votes(task_id)
    name_of = {consortium.identities[n].evm_address: n for n in spec.participants}
    return {
        "model_sha256": model_hash.hex(),
        "accepted": ledger.task_info(task_id).status is not TaskStatus.REJECTED
        and fv.accepts >= ledger.task_info(task_id).quorum,
        "accepts": fv.accepts,
        "rejects": fv.rejects,
        "votes": {name_of.get(a, a): v for a, v in fv.votes.items()},
        "transactions": {name_of.get(a, a): tx for a, tx in fv.vote_txs.items()},
    }
