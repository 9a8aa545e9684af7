"""End to end on 127.0.0.1: a SuperLink with TLS and SuperNode authentication, three org nodes
(`matswarm node start`, each a long-lived node process plus its SuperNode), tasks started with
`matswarm task run` through the Control API; the ledger on an anvil node when one is installed
(CI installs it), every org committing and voting with its own account. Every process is
started here and stopped by PID."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tests.flower.helpers import inprocess_hashes, make_consortium, make_spec, trusted_spec

from matswarm.cli.deploy import NODE_REFUSED
from matswarm.ledger.anvil import ANVIL_ENV, AnvilNode, find_anvil
from matswarm.runtime.flower.deploy import (
    ControlClient,
    free_port,
    make_node_key,
    node_argv,
    wait_port,
)

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "matswarm.cli.main"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1")
    return env


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="module")
def cluster(org_files, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    port = free_port()
    procs: list[subprocess.Popen] = []
    env = _env()
    env["FLWR_HOME"] = str(d / "flwr-home")
    coord = subprocess.Popen(
        [*CLI, "coordinator", "start", "--dir", str(d / "coord"), "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    procs.append(coord)
    address = f"127.0.0.1:{port}"
    ca = d / "coord" / "tls" / "ca.crt"
    nodes: dict[str, dict] = {}
    anvil = None
    ledger = ids = None
    trust_args: dict[str, list[str]] = {name: [] for name in org_files}
    try:
        if find_anvil() is not None or os.environ.get(ANVIL_ENV):
            # The shared ledger: a real JSON-RPC chain (anvil, stopped by PID), every org
            # with its own keystore and account; nodes commit and vote themselves.
            anvil = AnvilNode(chain_id=31337).start()
            ledger, ids, keystores = make_consortium(list(org_files), d, anvil.url)
            env["MATSWARM_PASSPHRASE"] = "test-pass"
            for name in org_files:
                trust_args[name] = [
                    "--identity",
                    str(keystores[name]),
                    "--ledger",
                    anvil.url,
                    "--contract",
                    ledger.address,
                    "--chain-id",
                    "31337",
                ]
        wait_port("127.0.0.1", port, timeout=60)
        keys = {name: make_node_key(d / "keys" / name) for name in org_files}
        # One registration through the CLI, the others through the same Control API call.
        first = next(iter(org_files))
        out = subprocess.run(
            [
                *CLI,
                "coordinator",
                "register-node",
                str(keys[first][1]),
                "--name",
                first,
                "--coordinator",
                address,
                "--root-cert",
                str(ca),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        with ControlClient(address, ca) as cc:
            for name in list(org_files)[1:]:
                cc.register_node(keys[name][1], name)
        for name, path in org_files.items():
            wd = d / name
            p = subprocess.Popen(
                node_argv(
                    name,
                    path,
                    address,
                    root_cert=ca,
                    key=keys[name][0],
                    workdir=wd,
                    extra=trust_args[name],
                ),
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            procs.append(p)
            nodes[name] = {"proc": p, "workdir": wd}
        # A node whose key was never registered (started now, checked by its test).
        intruder_key, _ = make_node_key(d / "keys" / "intruder")
        intruder = subprocess.Popen(
            node_argv(
                "org1",
                org_files["org1"],
                address,
                root_cert=ca,
                key=intruder_key,
                workdir=d / "intruder",
            ),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(intruder)
        end = time.monotonic() + 90
        while not all((n["workdir"] / "node.json").exists() for n in nodes.values()):
            assert time.monotonic() < end, "org nodes did not start"
            time.sleep(0.2)
        yield {
            "intruder": intruder,
            "ledger": ledger,
            "ids": ids,
            "address": address,
            "ca": ca,
            "dir": d,
            "nodes": nodes,
            "env": env,
            "procs": procs,
        }
    finally:
        for p in reversed(procs):
            _stop(p)
        if ledger is not None:
            ledger.close()
        if anvil is not None:
            anvil.stop()


def _task_run(
    cluster, spec, name: str, timeout: float = 240, task_id: bytes | None = None
) -> subprocess.Popen:
    task = cluster["dir"] / f"{name}.json"
    task.write_bytes(spec.to_json())
    return subprocess.Popen(
        [
            *CLI,
            "task",
            "run",
            str(task),
            "--coordinator",
            cluster["address"],
            "--root-cert",
            str(cluster["ca"]),
            "--timeout",
            str(timeout),
            *(["--task-id", "0x" + task_id.hex()] if task_id is not None else []),
        ],
        env=cluster["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_unregistered_node_is_refused(cluster):
    proc = cluster["intruder"]
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == NODE_REFUSED, out
    assert "refused this node's key" in out


def test_three_rounds_over_tls_match_inprocess(cluster, org_files):
    spec = make_spec(org_files, "fedavg", task="deploy-fedavg", round_deadline_s=120)
    expected = inprocess_hashes(org_files, spec)
    task_id = None
    if cluster["ledger"] is not None:  # CI: always (anvil is installed there)
        spec, task_id = trusted_spec(cluster["ledger"], cluster["ids"], spec)
    proc = _task_run(cluster, spec, "deploy-fedavg", task_id=task_id)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    result = json.loads((cluster["dir"] / "deploy-fedavg.result.json").read_text())
    assert [r["global_hash"] for r in result["rounds"]] == expected
    assert result["dropouts"] == {}
    # every node stored the final model and agrees on its hash
    for n in cluster["nodes"].values():
        meta = json.loads((n["workdir"] / "models" / "deploy-fedavg-global.json").read_text())
        assert meta["sha256"] == result["final_hash"] == expected[-1]
    if task_id is not None:  # finalised on the ledger by the nodes' own votes
        for r, h in enumerate(expected, start=1):
            info = cluster["ledger"].round_info(task_id, r)
            assert info.final_hash.hex() == h
            assert len(info.votes) == 3 and len(info.commitments) == 3


def test_private_task_over_tls_reports_each_nodes_spend(cluster, org_files):
    """Local DP across processes: every node draws its own noise (OS entropy), reports the
    in-process plan's epsilon each round and anchors its signed dp-epsilon report itself."""
    from tests.flower.test_dp_flower import _private_spec, _UnionStore

    from matswarm.privacy import PrivacyConfig
    from matswarm.privacy.reports import audit_reports
    from matswarm.store import LocalStore

    cfg = PrivacyConfig("local", 4.0, clip=0.5)
    spec, seeded, plan = _private_spec(org_files, cfg, "deploy-dp")
    task_id = None
    if cluster["ledger"] is not None:
        spec, task_id = trusted_spec(cluster["ledger"], cluster["ids"], spec)
    proc = _task_run(cluster, spec, "deploy-dp", task_id=task_id)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    result = json.loads((cluster["dir"] / "deploy-dp.result.json").read_text())
    assert [r["epsilon_spent"] for r in result["rounds"]] == [plan.epsilon_after(t) for t in (1, 2)]
    assert result["rounds"][0]["global_hash"] != seeded[0]  # not the seeded reference's noise
    if task_id is not None:
        # each org's report is in that org's own store
        store = _UnionStore([LocalStore(v["workdir"] / "store") for v in cluster["nodes"].values()])
        directory = {n: cluster["ids"][n].public for n in org_files}
        audited, problems = audit_reports(cluster["ledger"], store, task_id, spec, directory)
        assert problems == [] and len(audited) == 2 * len(org_files)


def test_killed_node_is_a_recorded_dropout_and_the_task_finishes(cluster, org_files):
    spec = make_spec(org_files, "fedavg", rounds=4, task="deploy-dropout", round_deadline_s=20)
    proc = _task_run(cluster, spec, "deploy-dropout")
    status = cluster["dir"] / "deploy-dropout.status.json"
    victim = cluster["nodes"]["org3"]
    pids = json.loads((victim["workdir"] / "node.json").read_text())
    end = time.monotonic() + 180
    while time.monotonic() < end:  # kill org3 (node + SuperNode, by PID) once round 1 is final
        try:
            if json.loads(status.read_text())["rounds"]:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    else:
        pytest.fail("round 1 never finished")
    for pid in (pids["pid"], pids["supernode_pid"]):
        os.kill(pid, signal.SIGKILL)
    victim["proc"].wait(10)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    result = json.loads((cluster["dir"] / "deploy-dropout.result.json").read_text())
    assert len(result["rounds"]) == 4
    assert result["rounds"][0]["participants"] == ["org1", "org2", "org3"]
    later = {int(k): v for k, v in result["dropouts"].items()}
    assert later and all(v == ["org3"] for v in later.values())
    assert min(later) >= 2
    assert "missing: org3" in out
