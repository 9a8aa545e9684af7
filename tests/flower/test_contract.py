"""Contract: the Flower runtime (real Flower messages, shim ClientApp, node channel, in-process
Grid) produces bit-identical round hashes to the in-process runtime for the same task and seed."""

from __future__ import annotations

import numpy as np
import pytest
from tests.flower.helpers import inprocess_hashes, make_spec

from matswarm.runtime.flower.localgrid import run_inprocess
from matswarm.runtime.flower.node import OrgService


def services(files):
    return {name: OrgService(name, path) for name, path in files.items()}


@pytest.mark.parametrize(
    ("algorithm", "rule"),
    [("fedavg", "mean"), ("matswarm", "mean"), ("fedavgm", "median")],
)
def test_round_hashes_bit_identical_to_inprocess(org_files, tmp_path, algorithm, rule):
    spec = make_spec(org_files, algorithm, rule=rule)
    expected = inprocess_hashes(org_files, spec)
    result, _ = run_inprocess(spec, services(org_files), tmp_path)
    assert result.hashes == expected
    assert len(set(expected)) == 3  # the model moves every round
    assert result.dropouts == {}
    assert all(r["participants"] == list(spec.participants) for r in result.rounds)


def test_node_refuses_task_with_other_code(org_files, tmp_path):
    spec = make_spec(org_files, train_code_sha256="0" * 64, agg_code_sha256="1" * 64)
    from matswarm.runtime.flower.coordinator import OrgUnavailable

    with pytest.raises(OrgUnavailable, match="task code does not match the installed matswarm"):
        run_inprocess(spec, services(org_files), tmp_path, join_timeout_s=20)


def test_final_model_stored_by_every_node(org_files, tmp_path):
    spec = make_spec(org_files, rounds=1)
    svcs = {n: OrgService(n, p, workdir=tmp_path / n) for n, p in org_files.items()}
    result, _ = run_inprocess(spec, svcs, tmp_path)
    for n in org_files:
        g = np.load(tmp_path / n / "models" / f"{spec.name}-global.npy")
        from matswarm.protocol import vector_hash

        assert vector_hash(g) == result.final_hash == result.hashes[-1]
