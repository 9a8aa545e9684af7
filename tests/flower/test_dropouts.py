"""Deadlines, dropouts, rejoin and stalls on the in-process Grid (real shim, real channels)."""

from __future__ import annotations

import pytest
from tests.flower.helpers import make_spec

from matswarm.runtime.flower.coordinator import TaskStalled
from matswarm.runtime.flower.localgrid import InProcessCluster
from matswarm.runtime.flower.node import OrgService


def _services(files):
    return {name: OrgService(name, path) for name, path in files.items()}


def test_dropout_recorded_and_returning_org_rejoins_at_latest_model(org_files, tmp_path):
    spec = make_spec(org_files, "fedavg", rounds=4, round_deadline_s=3.0)
    restarted = OrgService("org3", org_files["org3"])
    starts: list[tuple[int, str]] = []
    orig = restarted.handle

    def spy(kind, payload):
        if kind == "train":
            from matswarm.protocol import vector_hash

            starts.append((int(payload.config["round"]), vector_hash(payload.array("start"))))
        return orig(kind, payload)

    restarted.handle = spy  # type: ignore[method-assign]
    with InProcessCluster(_services(org_files), tmp_path) as cluster:
        lines: list[str] = []

        def notify(line: str) -> None:
            lines.append(line)
            if "round 1 of 4 final" in line:
                cluster.grid.disconnect(cluster.node_ids["org3"])  # org3's machine goes away
            if "round 2 of 4 final" in line:
                cluster.add("org3", restarted)  # ...and comes back as a fresh node process

        result = cluster.coordinator(spec, notify=notify).run()
    assert [r["participants"] for r in result.rounds] == [
        ["org1", "org2", "org3"],
        ["org1", "org2"],
        ["org1", "org2", "org3"],
        ["org1", "org2", "org3"],
    ]
    assert result.dropouts == {2: ["org3"]}
    assert any(
        "round 2 deadline: proceeding with 2 of 3 updates (quorum 2); missing: org3" in line
        for line in lines
    )
    assert any("org3 rejoined at round 3" in line for line in lines)
    # the returning org trained from the latest finalised global model (round 2's)
    assert starts[0] == (3, result.hashes[1])


def test_stalled_task_says_what_it_waits_for(org_files, tmp_path):
    spec = make_spec(org_files, "fedavg", rounds=3, round_deadline_s=1.0)
    with InProcessCluster(_services(org_files), tmp_path) as cluster:
        lines: list[str] = []

        def notify(line: str) -> None:
            lines.append(line)
            if "round 1 of 3 final" in line:
                cluster.grid.disconnect(cluster.node_ids["org2"])
                cluster.grid.disconnect(cluster.node_ids["org3"])

        coord = cluster.coordinator(spec, notify=notify, stall_timeout_s=2.5)
        with pytest.raises(
            TaskStalled,
            match=r"1 of 3 updates for round 2 \(quorum 2\); "
            r"missing: org2, org3",
        ):
            coord.run()
    assert any("1 of 3 updates for round 2; missing: org2, org3" in line for line in lines)
    assert len(coord.result.rounds) == 1


def test_ring_hop_timeout_drops_the_org_and_redoes_the_round(org_files, tmp_path):
    spec = make_spec(org_files, "matswarm", rounds=3, round_deadline_s=3.0)
    with InProcessCluster(_services(org_files), tmp_path) as cluster:

        def notify(line: str) -> None:
            if "round 1 of 3 final" in line:
                cluster.grid.disconnect(cluster.node_ids["org2"])

        result = cluster.coordinator(spec, notify=notify).run()
    assert [r["participants"] for r in result.rounds] == [
        ["org1", "org2", "org3"],
        ["org1", "org3"],
        ["org1", "org3"],
    ]
    assert result.dropouts == {2: ["org2"], 3: ["org2"]}
