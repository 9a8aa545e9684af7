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
