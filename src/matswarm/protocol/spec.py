"""The task specification every participant (and auditor) re-derives a task from.

A spec is canonical JSON; its sha256 is the ``spec_hash`` recorded on the ledger, and the JSON
itself is kept in the artifact store, where its content id follows from that hash. It pins the
model, algorithm, aggregation rule, participants (in stacking/ring order), rounds, seed, data
schema, the initial model's hash and the code measurements of the training and aggregation code;
for a relaying runtime (Flower) also the round deadline and quorum; for a task whose tables hold
formulas, the featuriser (name, version, preset, formula column) every org must run locally.
Every runtime (in-process, ledger-backed, Flower) runs from this one spec.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import matswarm
from matswarm.aggregation import AggregationRule, make_rule
from matswarm.algorithms import FederatedAlgorithm, make_algorithm
from matswarm.models import ModelSpec
from matswarm.trust import measure_modules

if TYPE_CHECKING:
    from matswarm.contrib.policy import ContributionSettings

SPEC_FORMAT = "matswarm-task/v1"

# The code each side runs; its measurement is what a node compares with its installed copy.
TRAINING_CODE = ("matswarm.algorithms", "matswarm.models", "matswarm.data", "matswarm.privacy")
AGGREGATION_CODE = ("matswarm.aggregation", "matswarm.protocol.aggregator")


def training_code_hash() -> str:
    return measure_modules(TRAINING_CODE).digest


def aggregation_code_hash() -> str:
    return measure_modules(AGGREGATION_CODE).digest


#: Fields added after the first release; left out of the canonical JSON when None.
OPTIONAL_FIELDS = (
    "contribution",
    "featurizer",
    "secure_aggregation",
    "compression",
    "privacy",
    "verification",
)


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task's computation (no private data, no keys)."""

    name: str
    participants: tuple[str, ...]
    model: dict[str, Any]
    algorithm: str
    algorithm_params: dict[str, Any]
    rule: str
    rule_params: dict[str, Any]
    seed: int
    schema: dict[str, Any]
    initial_model_sha256: str
    encrypt_updates: bool = True
    #: Local training runs in (simulated) enclaves; updates without a valid quote are rejected.
    attested_training: bool = False
    auditors: tuple[str, ...] = ()
    round_duration_s: int = 3600
    train_code_sha256: str = field(default_factory=training_code_hash)
    agg_code_sha256: str = field(default_factory=aggregation_code_hash)
    matswarm_version: str = matswarm.__version__
    format: str = SPEC_FORMAT
    #: A relaying coordinator (Flower) waits this many seconds for a round's updates, then goes on
    #: with the orgs that delivered if they are at least the quorum. None: ``round_duration_s``.
    relay_deadline_s: float | None = None
    #: Updates a relayed round needs to go on without the missing orgs. None: ceil(2n/3), the
    #: ledger's default quorum.
    quorum: int | None = None
    #: Contribution accounting and governance (:class:`matswarm.contrib.ContributionSettings`
    #: as a dict): validation scores, Shapley/LOO values, registration threshold, contribution
    #: weights, final-model vote. None: none of it (and the key is left out of the JSON, so
    #: specs written before it keep their digest).
    contribution: dict[str, Any] | None = None
    #: Descriptors computed locally from a formula column (``FeaturizerSpec.as_dict()`` plus
    #: ``formula_column`` and ``skip_invalid``); None: the tables hold the descriptors. Left out
    #: of the canonical JSON when None, so specs without it hash as they always did.
    featurizer: dict[str, Any] | None = None
    #: Secure aggregation (``{"clip": ..., "threshold": ...}``, see
    #: :mod:`matswarm.privacy.secagg`): updates are masked, only their sum is recomputable.
    #: Left out of the canonical JSON when off, so other tasks' spec hashes do not change.
    secure_aggregation: dict[str, Any] | None = None
    #: Update compression (``{"kind", "fraction", "block", "error_feedback"}``, see
    #: :mod:`matswarm.compression`); left out of the canonical JSON when off.
    compression: dict[str, Any] | None = None
    #: Differential privacy (:class:`matswarm.privacy.PrivacyConfig` as a dict; central mode
    #: with its sample rate and noise multiplier pinned). None: no DP, and absent from the JSON
    #: so that the hashes of specs without it are unchanged.
    privacy: dict[str, Any] | None = None
    #: How the orgs check a round (:class:`matswarm.protocol.leader.Verification` as a dict):
    #: ``{"mode": "leader", "audit_rate": p}`` has one rotating org aggregate and the others
    #: check its signed claim (and re-aggregate with probability ``p``). None: every org
    #: verifies and re-aggregates every update itself (and the key is absent from the JSON).
    verification: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if len(set(self.participants)) != len(self.participants) or not self.participants:
            raise ValueError(f"participants must be unique and non-empty: {self.participants}")
        if self.format != SPEC_FORMAT:
            raise ValueError(f"unsupported task spec format {self.format!r}")
        if self.relay_deadline_s is not None and not self.relay_deadline_s > 0:
            raise ValueError(f"relay_deadline_s must be > 0, got {self.relay_deadline_s}")
        if self.quorum is not None and not 1 <= self.quorum <= len(self.participants):
            raise ValueError(f"quorum must be in 1..{len(self.participants)}, got {self.quorum}")
        if self.verification is not None:
            from matswarm.protocol.leader import Verification

            Verification.from_dict(self.verification)  # raises naming the field

    @property
    def round_deadline_s(self) -> float:
        """Seconds a relay waits for a round's updates (``relay_deadline_s`` or the round's
        duration on the ledger)."""
        d = self.relay_deadline_s
        return float(d if d is not None else self.round_duration_s)

    @property
    def effective_quorum(self) -> int:
        from matswarm.ledger import default_quorum

        return self.quorum if self.quorum is not None else default_quorum(len(self.participants))

    @property
    def rounds(self) -> int:
        return int(self.algorithm_params["rounds"])

    def model_spec(self) -> ModelSpec:
        return ModelSpec(**self.model)

    def initial_params(self):
        """The initial global model (flat float32), built from the model spec and the seed; its
        ``vector_hash`` is what ``initial_model_sha256`` pins."""
        return self.model_spec().build(len(self.schema["features"]), self.seed).get_flat()

    def build_algorithm(self) -> FederatedAlgorithm:
        algo = make_algorithm(self.algorithm, **self.algorithm_params)
        if not isinstance(algo, FederatedAlgorithm):
            raise ValueError(f"{self.algorithm!r} is not a federated algorithm")
        return algo

    def build_rule(self) -> AggregationRule:
        return make_rule(self.rule, **self.rule_params)

    def contribution_settings(self) -> ContributionSettings | None:
        """The task's :class:`~matswarm.contrib.ContributionSettings`, or None."""
        if self.contribution is None:
            return None
        from matswarm.contrib.policy import ContributionSettings

        return ContributionSettings.from_dict(self.contribution)

    def build_privacy(self):
        """The task's :class:`~matswarm.privacy.PrivacyConfig`, or None."""
        if self.privacy is None:
            return None
        from matswarm.privacy import PrivacyConfig

        return PrivacyConfig.from_dict(self.privacy)

    def to_json(self) -> bytes:
        """Canonical bytes: sorted keys, no whitespace."""
        d = asdict(self)
        for key in OPTIONAL_FIELDS:  # unset: absent, so older specs keep their digest
            if d[key] is None:
                del d[key]
        return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, blob: bytes | str) -> TaskSpec:
        d = json.loads(blob)
        d["participants"] = tuple(d["participants"])
        d["auditors"] = tuple(d.get("auditors", ()))
        return cls(**d)

    def digest(self) -> bytes:
        return hashlib.sha256(self.to_json()).digest()

    @classmethod
    def for_run(
        cls,
        name: str,
        participants: list[str],
        model: ModelSpec,
        algorithm: FederatedAlgorithm,
        rule: AggregationRule,
        seed: int,
        schema: dict[str, Any],
        initial_model_sha256: str,
        **kw: Any,
    ) -> TaskSpec:
        return cls(
            name=name,
            participants=tuple(participants),
            model=asdict(model),
            algorithm=algorithm.name,
            algorithm_params=algorithm.get_params(),
            rule=rule.name,
            rule_params=dict(rule.params),
            seed=seed,
            schema=schema,
            initial_model_sha256=initial_model_sha256,
            **kw,
        )
