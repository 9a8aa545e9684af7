"""Helpers of the Flower runtime tests."""

from __future__ import annotations

from pathlib import Path

from matswarm.data import build_dataset, read_table
from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.flower import loopback
from matswarm.runtime.flower.spec import make_task_spec


def dataset_of(files: dict[str, Path]):
    return build_dataset({k: (read_table(p), str(p)) for k, p in files.items()}, "y", unit="a.u.")


def make_spec(files, algorithm="fedavg", rounds=3, **kw) -> TaskSpec:
    """A task spec over ``files`` (``round_deadline_s``: the relay's deadline, default 60 s)."""
    ds = dataset_of(files)
    params = {"local_steps": 4, "batch_size": 32, "lr": 3e-3}
    params.update(kw.pop("algorithm_params", {}))
    return make_task_spec(
        kw.pop("task", f"test-{algorithm}"),
        ds.org_names,
        ds.schema.to_dict(),
        algorithm,
        algorithm_params=params,
        rounds=rounds,
        model={"name": "mlp", "hidden": 16, "layers": 3},
        seed=kw.pop("seed", 3),
        relay_deadline_s=kw.pop("round_deadline_s", 60.0),
        **kw,
    )


def inprocess_hashes(files, spec: TaskSpec) -> list[str]:
    from matswarm.runtime import run_federated

    run = run_federated(
        dataset_of(files),
        spec.model_spec(),
        spec.build_algorithm(),
        spec.build_rule(),
        spec.seed,
    )
    return [r.global_hash for r in run.history]


def make_consortium(names, directory: Path, node_url: str, passphrase: str = "test-pass"):
    """The loopback cluster's consortium set-up (the tests' passphrase)."""
    return loopback.make_consortium(names, directory, node_url, passphrase)


trusted_spec = loopback.trusted_spec
