"""The deployment CLI's offline parts: task specs and node keys (no processes started)."""

from __future__ import annotations

import pytest
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


def test_supernode_wrapper_backs_off_on_empty_polls_and_resets_on_a_message(monkeypatch):
    import time

    import flwr.supernode.start_client_internal as sci

    from matswarm.runtime.flower import supernode

    slept: list[float] = []
    original = sci.time
    try:
        supernode.patch(0.4)
        monkeypatch.setattr(supernode._time, "sleep", slept.append)
        for _ in range(7):
            sci.time.sleep(3)  # what the idle SuperNode does after an empty poll
        sci.time.sleep(0.5)  # waiting for the executor's reply: a message arrived
        sci.time.sleep(3)
        assert abs(sci.time.time() - time.time()) < 1.0
    finally:
        sci.time = original
    assert slept[:7] == pytest.approx([0.05 * 1.5**i for i in range(6)] + [0.4])  # capped
    assert slept[7:] == [supernode.LOCAL_WAIT_S, 0.05]  # local wait, back-off restarted


def test_backoff_validates_and_grows_geometrically():
    from matswarm.runtime.flower.backoff import Backoff

    b = Backoff(0.1, 0.3, growth=2.0)
    assert [b.next() for _ in range(4)] == [0.1, 0.2, 0.3, 0.3]
    b.reset()
    assert b.next() == 0.1
    with pytest.raises(ValueError, match="first <= longest"):
        Backoff(0.5, 0.1)
    with pytest.raises(ValueError, match="growth"):
        Backoff(0.1, 0.5, growth=0.5)
