"""Flower-side helpers around the one task spec, :class:`matswarm.protocol.spec.TaskSpec`.

The coordinator relays the spec's canonical JSON; every node re-derives the task from it. The spec
names the *code* it expects by hash (``train_code_sha256``, ``agg_code_sha256``): a node computes
the same measurements over its own installed matswarm
(:func:`~matswarm.protocol.spec.training_code_hash`,
:func:`~matswarm.protocol.spec.aggregation_code_hash`) and refuses a task whose hashes differ, so a
coordinator can never make an org run training or aggregation code other than the version the org
installed and pinned. It also pins the initial model's hash, which a node checks against the model
it builds from the spec's model and seed.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from matswarm.protocol.spec import TaskSpec, aggregation_code_hash, training_code_hash


class SpecError(ValueError):
    """A task spec is malformed or does not match this installation."""


def installed_code() -> dict[str, str]:
    """This installation's code measurements (``train``, ``aggregation``), taken now (about a
    millisecond) so they always describe the sources on disk."""
    return {"train": training_code_hash(), "aggregation": aggregation_code_hash()}


def check_code(spec: TaskSpec, installed: dict[str, str] | None = None) -> None:
    """Raise :class:`SpecError` unless the spec's code hashes equal this installation's."""
    mine = installed if installed is not None else installed_code()
    pinned = {"train": spec.train_code_sha256, "aggregation": spec.agg_code_sha256}
    bad = [k for k in ("train", "aggregation") if pinned[k] != mine[k]]
    if bad:
        raise SpecError(
            "task code does not match the installed matswarm "
            + ", ".join(f"({k}: task {pinned[k][:12]}…, installed {mine[k][:12]}…)" for k in bad)
            + "; install the matswarm version the task pins, or refuse the task"
        )


def check_initial(spec: TaskSpec, initial: np.ndarray) -> None:
    """Raise :class:`SpecError` unless ``initial`` is the model the spec pins."""
    from matswarm.protocol import vector_hash

    if vector_hash(initial) != spec.initial_model_sha256:
        raise SpecError("the initial model is not the one the task pins")


def load_spec(text: str | bytes) -> TaskSpec:
    """Parse a task spec (canonical or indented JSON); :class:`SpecError` when malformed."""
    try:
        return TaskSpec.from_json(text)
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"malformed task spec: {exc}") from None


def spec_text(spec: TaskSpec, indent: int | None = None) -> str:
    """The spec as JSON text (canonical unless ``indent``), for payloads, run configs, files."""
    if indent is None:
        return spec.to_json().decode()
    return json.dumps(json.loads(spec.to_json()), indent=indent, sort_keys=True)


def make_task_spec(
    name: str,
    participants: list[str] | tuple[str, ...],
    schema: dict[str, Any],
    algorithm: str,
    *,
    algorithm_params: dict[str, Any] | None = None,
    rounds: int | None = None,
    rule: str = "mean",
    rule_params: dict[str, Any] | None = None,
    model: dict[str, Any] | None = None,
    seed: int = 0,
    **kw: Any,
) -> TaskSpec:
    """A task spec from names and parameters, its initial model hash built from the model spec
    and the seed (``kw``: further :class:`TaskSpec` fields, e.g. ``relay_deadline_s``)."""
    from matswarm.aggregation import make_rule
    from matswarm.algorithms import FederatedAlgorithm, make_algorithm
    from matswarm.models import ModelSpec
    from matswarm.protocol import vector_hash

    params = dict(algorithm_params or {})
    if rounds is not None:
        params["rounds"] = rounds
    algo = make_algorithm(algorithm, **params)
    if not isinstance(algo, FederatedAlgorithm):
        raise SpecError(f"{algorithm!r} is not a federated algorithm")
    model_spec = ModelSpec(**(model or {}))
    initial = model_spec.build(len(schema["features"]), seed).get_flat()
    return TaskSpec.for_run(
        name,
        list(participants),
        model_spec,
        algo,
        make_rule(rule, **(rule_params or {})),
        seed,
        dict(schema),
        vector_hash(initial),
        **kw,
    )


__all__ = [
    "SpecError",
    "TaskSpec",
    "check_code",
    "check_initial",
    "installed_code",
    "load_spec",
    "make_task_spec",
    "spec_text",
]
