"""FedMDH over Flower: its update is the ordinary flat float32 vector, so the Flower runtime
runs it through the same protocol with the in-process runtime's round hashes."""

from __future__ import annotations

from tests.flower.helpers import dataset_of, inprocess_hashes

from matswarm.runtime.flower.localgrid import run_inprocess
from matswarm.runtime.flower.node import OrgService
from matswarm.runtime.flower.spec import make_task_spec


def test_fedmdh_round_hashes_over_flower_equal_inprocess(org_files, tmp_path):
    ds = dataset_of(org_files)
    spec = make_task_spec(
        "test-fedmdh",
        ds.org_names,
        ds.schema.to_dict(),
        "fedmdh",
        algorithm_params={"local_steps": 3, "batch_size": 32, "lr": 3e-3, "gen_warmup": 0.0},
        rounds=2,
        model={"name": "fedmdh", "hidden": 8, "layers": 3},
        seed=3,
        relay_deadline_s=60.0,
    )
    expected = inprocess_hashes(org_files, spec)
    services = {name: OrgService(name, path) for name, path in org_files.items()}
    result, _ = run_inprocess(spec, services, tmp_path)
    assert result.hashes == expected and len(set(expected)) == 2


def test_per_org_feature_sets_over_flower_equal_inprocess(org_files, tmp_path):
    """Each org lacks a different column: a node encodes only its own columns, relays per-column
    counts, and fills what it lacks like the in-process dataset does (NaN for FedMDH's
    mask-aware model), so the round hashes are the in-process run's."""
    import dataclasses

    import pandas as pd

    from matswarm.data import build_dataset, read_table
    from matswarm.runtime import run_federated

    full = {name: pd.read_parquet(path) for name, path in org_files.items()}
    base = build_dataset({k: (v, k) for k, v in full.items()}, "y", unit="a.u.").schema
    features = list(base.features)
    files, tables, held = {}, {}, {}
    for i, (name, df) in enumerate(full.items()):
        own = df.drop(columns=[features[i]])  # org i does not have feature i
        files[name] = tmp_path / f"{name}.csv"
        own.to_csv(files[name], index=False)
        tables[name] = (read_table(files[name]), str(files[name]))
        held[name] = tuple(f for f in features if f != features[i])
    schema = dataclasses.replace(base, org_features=held)
    ds = build_dataset(tables, "y", schema=schema, unit="a.u.").with_missing("nan")
    spec = make_task_spec(
        "test-fedmdh-orgcols",
        ds.org_names,
        schema.to_dict(),
        "fedmdh",
        algorithm_params={"local_steps": 3, "batch_size": 32, "lr": 3e-3, "gen_warmup": 0.0},
        rounds=2,
        model={"name": "fedmdh", "hidden": 8, "layers": 3},
        seed=3,
        relay_deadline_s=60.0,
    )
    run = run_federated(
        ds, spec.model_spec(), spec.build_algorithm(), spec.build_rule(), spec.seed
    )
    expected = [r.global_hash for r in run.history]
    services = {name: OrgService(name, path) for name, path in files.items()}
    result, _ = run_inprocess(spec, services, tmp_path / "grid")
    assert result.hashes == expected and len(set(expected)) == 2
