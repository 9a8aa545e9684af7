"""The deployment CLI's offline parts: task specs and node keys (no processes started)."""

from __future__ import annotations

from tests.flower.helpers import make_spec
from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.runtime.flower.spec import TaskSpec, code_hashes
from matswarm.runtime.flower.trust import protocol_spec_for

runner = CliRunner()


def test_task_spec_from_options_pins_installed_code(org_files, tmp_path):
    out = tmp_path / "t.json"
    res = runner.invoke(
        app,
        [
            "task",
            "spec",
            "demo",
            "--orgs",
            "org1,org2,org3",
            "--schema-from",
            str(org_files["org1"]),
            "--target",
            "y",
            "--algorithm",
            "fedavg",
            "--rounds",
            "5",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    spec = TaskSpec.from_json(out.read_text())
    assert spec.orgs == ("org1", "org2", "org3") and spec.rounds == 5
    assert spec.code == code_hashes()
    assert "sample_id" not in spec.schema["features"] and len(spec.schema["features"]) == 8


def test_task_spec_from_a_ledger_task(org_files, tmp_path):
    spec = make_spec(org_files, "fedavg", task="from-ledger")
    proto = tmp_path / "proto.json"
    proto.write_bytes(protocol_spec_for(spec).to_json())
    out = tmp_path / "t.json"
    res = runner.invoke(
        app,
        [
            "task",
            "spec",
            "x",
            "--protocol-spec",
            str(proto),
            "--task-id",
            "0x" + "ab" * 32,
            "--deadline",
            "30",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    relayed = TaskSpec.from_json(out.read_text())
    assert relayed.trust["task_id"] == "ab" * 32
    assert relayed.make_algorithm().get_params() == spec.make_algorithm().get_params()
    assert (relayed.task, relayed.orgs, relayed.seed, relayed.round_deadline_s) == (
        "from-ledger",
        spec.orgs,
        spec.seed,
        30.0,
    )


def test_task_spec_needs_orgs_and_schema(tmp_path):
    res = runner.invoke(app, ["task", "spec", "demo", "-o", str(tmp_path / "t.json")])
    assert res.exit_code == 2
    assert "--orgs and --schema-from are required" in res.output


def test_node_keygen_writes_an_openssh_pair_and_never_overwrites(tmp_path):
    key = tmp_path / "org-a.key"
    res = runner.invoke(app, ["node", "keygen", "--out", str(key)])
    assert res.exit_code == 0, res.output
    assert key.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "org-a.key.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    again = runner.invoke(app, ["node", "keygen", "--out", str(key)])
    assert again.exit_code == 2 and "refusing to overwrite" in again.output


def test_supernode_wrapper_caps_flowers_fixed_sleeps():
    import time

    import flwr.supernode.start_client_internal as sci

    from matswarm.runtime.flower.supernode import patch

    original = sci.time
    try:
        patch(0.01)
        t0 = time.monotonic()
        sci.time.sleep(3)  # what the idle SuperNode does between polls
        assert time.monotonic() - t0 < 1.0
        assert abs(sci.time.time() - time.time()) < 1.0
    finally:
        sci.time = original
