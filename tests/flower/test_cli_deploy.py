"""The deployment CLI's offline parts: task specs and node keys (no processes started)."""

from __future__ import annotations

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.protocol import vector_hash
from matswarm.protocol.spec import TaskSpec, aggregation_code_hash, training_code_hash

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
            "--deadline",
            "30",
            "-o",
            str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    spec = TaskSpec.from_json(out.read_text())  # the one task spec (what a ledger records)
    assert spec.participants == ("org1", "org2", "org3") and spec.rounds == 5
    assert spec.train_code_sha256 == training_code_hash()
    assert spec.agg_code_sha256 == aggregation_code_hash()
    assert "sample_id" not in spec.schema["features"] and len(spec.schema["features"]) == 8
    assert vector_hash(spec.initial_params()) == spec.initial_model_sha256
    assert (spec.round_deadline_s, spec.effective_quorum) == (30.0, 2)
    assert spec.digest().hex()[:12] in res.output


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
