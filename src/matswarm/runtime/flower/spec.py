"""The task spec a coordinator hands to every node, and the code identity nodes check it against.

A :class:`TaskSpec` is plain JSON (schema, model, algorithm, aggregation rule, seed, ordered
participants, rounds, quorum, round deadline). It names the *code* it expects by hash
(:func:`code_hashes`): a node computes the same hashes over its own installed matswarm and refuses
a task whose hashes differ, so a coordinator can never make an org run training or aggregation
code other than the version the org installed and pinned.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import matswarm

# Which installed sources each hash covers (relative to the matswarm package directory).
TRAIN_CODE = ("algorithms", "models", "data", "protocol", "runtime/flower")
AGG_CODE = ("aggregation", "algorithms", "protocol")


def _tree_hash(root: Path, parts: tuple[str, ...]) -> str:
    h = hashlib.sha256(f"matswarm-code/v1|{matswarm.__version__}|".encode())
    files: list[Path] = []
    for part in parts:
        p = root / part
        files.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    for f in sorted(set(files)):
        rel = f.relative_to(root).as_posix()
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


@cache
def code_hashes() -> dict[str, str]:
    """sha256 over the installed training and aggregation sources (and the package version)."""
    root = Path(matswarm.__file__).resolve().parent
    return {"train": _tree_hash(root, TRAIN_CODE), "aggregation": _tree_hash(root, AGG_CODE)}


class SpecError(ValueError):
    """A task spec is malformed or does not match this installation."""


@dataclass(frozen=True)
class TaskSpec:
    """Everything a node needs to take part in a task (no data, no keys)."""

    task: str
    schema: dict[str, Any]
    orgs: tuple[str, ...]
    algorithm: str
    algorithm_params: dict[str, Any] = field(default_factory=dict)
    rule: str = "mean"
    rule_params: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    rounds: int | None = None
    quorum: int | None = None
    round_deadline_s: float = 60.0
    code: dict[str, str] = field(default_factory=code_hashes)
    #: Trusted task: ``task_id`` (hex, on the ledger) and ``protocol_spec`` (the trust layer's
    #: spec JSON whose hash the ledger records). Empty: no ledger.
    trust: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.orgs or len(set(self.orgs)) != len(self.orgs):
            raise SpecError(f"orgs must be a non-empty list of unique names, got {self.orgs!r}")
        if self.round_deadline_s <= 0:
            raise SpecError(f"round_deadline_s must be > 0, got {self.round_deadline_s}")
        q = self.effective_quorum
        if not 1 <= q <= len(self.orgs):
            raise SpecError(f"quorum must be in 1..{len(self.orgs)}, got {q}")

    # -- derived objects (built identically on every node and on the coordinator) ---------------
    @property
    def effective_quorum(self) -> int:
        return self.quorum if self.quorum is not None else math.ceil(2 * len(self.orgs) / 3)

    def make_algorithm(self):
        from matswarm.algorithms import FederatedAlgorithm, make_algorithm

        params = dict(self.algorithm_params)
        if self.rounds is not None:
            params["rounds"] = self.rounds
        algo = make_algorithm(self.algorithm, **params)
        if not isinstance(algo, FederatedAlgorithm):
            raise SpecError(f"{self.algorithm!r} is not a federated algorithm")
        return algo

    def make_rule(self):
        from matswarm.aggregation import make_rule

        return make_rule(self.rule, **self.rule_params)

    def make_model_spec(self):
        from matswarm.models import ModelSpec

        return ModelSpec(**self.model)

    def make_schema(self):
        from matswarm.data import TaskSchema

        return TaskSchema.from_dict(self.schema)

    def initial_global(self):
        spec = self.make_model_spec()
        return spec.build(len(self.schema["features"]), self.seed).get_flat()

    # -- identity -----------------------------------------------------------------------------
    def check_code(self, installed: dict[str, str] | None = None) -> None:
        """Raise :class:`SpecError` unless the spec's code hashes equal this installation's."""
        mine = installed if installed is not None else code_hashes()
        bad = [k for k in ("train", "aggregation") if self.code.get(k) != mine[k]]
        if bad:
            raise SpecError(
                "task code does not match the installed matswarm "
                + ", ".join(
                    f"({k}: task {str(self.code.get(k))[:12]}…, installed {mine[k][:12]}…)"
                    for k in bad
                )
                + "; install the matswarm version the task pins, or refuse the task"
            )

    def to_json(self) -> str:
        d = asdict(self)
        d["orgs"] = list(self.orgs)
        return json.dumps(d, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> TaskSpec:
        try:
            d = json.loads(text)
            d["orgs"] = tuple(d["orgs"])
            return cls(**d)
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise SpecError(f"malformed task spec: {exc}") from None

    def digest(self) -> str:
        """sha256 of the canonical JSON: the ``spec_hash`` a ledger task records."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()
