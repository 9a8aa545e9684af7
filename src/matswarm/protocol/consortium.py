"""Setting up and running a trusted task whose organisations all live in this process.

This is how the demo and the experiments run "with the trust layer on": real keys (generated
for the run), a real EVM ledger (the embedded chain, persisted under the run's folder), a real
content-addressed store and every organisation verifying and voting. The multi-machine Flower
runtime uses the same :class:`~matswarm.protocol.trusted.OrgAgent` per node.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from matswarm.aggregation import AggregationRule
from matswarm.algorithms import FederatedAlgorithm
from matswarm.ledger import Ledger
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
) -> tuple[RoundEngine, TaskSpec, bytes]:
    """Attach the trust layer to an in-process engine: create the task, one agent per org."""
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
    return engine, spec, task_id


SECURITY_NOTE = (
    "Signatures, commitments and votes show who contributed what and that each global model is "
    "the agreed deterministic aggregate; they do not show that an org trained honestly on honest "
    "data. The embedded chain is one process: no consensus, no tamper resistance against its "
    "operator (production: a permissioned Besu/QBFT chain, one validator per org). "
    + SIMULATED_NOTE
)


def finish_task(
    consortium: Consortium,
    spec: TaskSpec,
    task_id: bytes,
    engine: RoundEngine,
    *,
    model: RegressionModel,
    extra_card: dict[str, Any] | None = None,
) -> tuple[str, dict[str, Any]]:
    """Archive the final model (safetensors + model card) and record its content id on the
    ledger (the issuer's "uploading" transaction). Returns ``(cid, card)``."""
    final = engine.run_state.global_params
    model.set_flat(final)
    hooks = engine.hooks
    agents = hooks.agents if isinstance(hooks, TrustedHooks) else {}
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
        },
        "attestation": {
            "backend": "simulated" if any(a.enclave for a in agents.values()) else None,
            "quotes": {name: a.record.quotes for name, a in agents.items() if a.record.quotes},
            "note": SIMULATED_NOTE,
        },
        "security_note": SECURITY_NOTE,
        **(extra_card or {}),
    }
    blob = build_archive(model, card)
    cid = consortium.store.put(blob)
    issuer = ledger.with_account(consortium.identities[spec.participants[0]].evm_account())
    issuer.set_final_model(task_id, bytes.fromhex(vector_hash(final)), cid)
    return cid, card
