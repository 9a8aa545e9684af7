"""Helpers of the Flower runtime tests."""

from __future__ import annotations

from pathlib import Path

from matswarm.data import build_dataset, read_table
from matswarm.runtime.flower.spec import TaskSpec


def dataset_of(files: dict[str, Path]):
    return build_dataset({k: (read_table(p), str(p)) for k, p in files.items()}, "y", unit="a.u.")


def make_spec(files, algorithm="fedavg", rounds=3, **kw) -> TaskSpec:
    ds = dataset_of(files)
    params = {"local_steps": 4, "batch_size": 32, "lr": 3e-3}
    params.update(kw.pop("algorithm_params", {}))
    return TaskSpec(
        task=kw.pop("task", f"test-{algorithm}"),
        schema=ds.schema.to_dict(),
        orgs=tuple(ds.org_names),
        algorithm=algorithm,
        algorithm_params=params,
        model={"name": "mlp", "hidden": 16, "layers": 3},
        seed=kw.pop("seed", 3),
        rounds=rounds,
        **kw,
    )


def inprocess_hashes(files, spec: TaskSpec) -> list[str]:
    from matswarm.runtime import run_federated

    run = run_federated(
        dataset_of(files),
        spec.make_model_spec(),
        spec.make_algorithm(),
        spec.make_rule(),
        spec.seed,
    )
    return [r.global_hash for r in run.history]
