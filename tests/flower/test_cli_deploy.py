"""The deployment CLI's offline parts: task specs, node keys, the SuperNode and executor
wrappers and the message codec (no processes started)."""

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


def test_supernode_signals_each_stored_message_on_the_wake_pipe(monkeypatch):
    import os

    import flwr.supernode.start_client_internal as sci

    from matswarm.runtime.flower import supernode
    from matswarm.runtime.flower.executor import wait_for_wake

    results = iter([None, "run-7", None, "run-7", "run-8"])
    monkeypatch.setattr(sci, "_pull_and_store_message", lambda **kw: next(results))
    monkeypatch.setattr(sci, "time", sci.time)  # restored after patch() replaces it
    r, w = os.pipe()
    try:
        supernode.patch(0.4, wake_fd=w)
        assert sci._pull_and_store_message(state=None) is None
        assert not wait_for_wake(r, 0.01)  # no message stored: no wake
        assert sci._pull_and_store_message(state=None) == "run-7"
        assert wait_for_wake(r, 1.0)
        assert not wait_for_wake(r, 0.01)  # the wake was consumed
        assert sci._pull_and_store_message() is None
        sci._pull_and_store_message(), sci._pull_and_store_message()
        assert wait_for_wake(r, 1.0) and not wait_for_wake(r, 0.01)  # two wakes, one poll
    finally:
        os.close(r), os.close(w)


def test_executor_with_a_wake_pipe_asks_for_tasks_only_when_woken(monkeypatch):
    import os
    import threading
    import time

    from matswarm.runtime.flower.executor import InNodeExecutor

    class Runtime:  # the SuperNode's Runtime API: counts AcquireTask requests
        def __init__(self):
            self.asked = 0

        def AcquireTask(self, request):  # Flower's name
            self.asked += 1
            return type("Res", (), {"HasField": lambda self, f: False, "token": ""})()

    runtime = Runtime()
    r, w = os.pipe()
    ex = InNodeExecutor("127.0.0.1:1", handle=None, wake_fd=r, fallback_s=30.0)
    monkeypatch.setattr(ex, "_client", lambda *i: runtime)
    thread = threading.Thread(target=ex._loop, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while runtime.asked < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        assert runtime.asked == 1  # one look at start, then it sleeps on the pipe
        os.write(w, b"m")
        while ex.woken < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)
        assert ex.woken == 1 and runtime.asked == 2
    finally:
        ex.stop()
        os.write(w, b"m")  # let the loop see the stop
        thread.join(5)
        os.close(r), os.close(w)
    assert not thread.is_alive()


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


def test_payload_travels_as_one_flower_array_and_keeps_dtypes_and_bytes():
    import numpy as np

    from matswarm.runtime.flower.codec import Payload, from_recorddict, to_recorddict

    arrays = {f"env_{i}": np.frombuffer(bytes([i]) * (10 + i), np.uint8) for i in range(15)}
    arrays["model"] = np.linspace(-1, 1, 7, dtype=np.float32)
    arrays["big_endian"] = np.arange(6, dtype=">f8").reshape(2, 3)
    p = Payload({"round": 3, "role": "follow", "lr": 0.1, "ok": True}, arrays)
    rd = to_recorddict(p)
    # One Array, however many arrays: Flower moves each Array as its own objects and requests.
    assert sum(len(record) for record in rd.array_records.values()) == 1
    back = from_recorddict(rd)
    assert back.config == p.config
    assert list(back.arrays) == list(arrays)
    for name, a in arrays.items():
        assert back.arrays[name].shape == a.shape
        assert back.arrays[name].dtype == a.dtype.newbyteorder("<")
        np.testing.assert_array_equal(back.arrays[name], a)
    assert from_recorddict(to_recorddict(Payload({"x": 1}))).arrays == {}
