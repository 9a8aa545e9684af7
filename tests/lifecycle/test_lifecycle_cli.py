"""The consortium and task lifecycle through the CLI, including a task killed mid-round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from tests.lifecycle.helpers import ORGS, home_with_task, runner

from matswarm.cli.main import app


@pytest.fixture()
def consortium(tmp_path, monkeypatch):
    """Three orgs with keystores (passphrase from the environment), admitted and registered,
    and a 4-round MatSwarm task that all three joined with their own CSV."""
    return home_with_task(tmp_path, monkeypatch)


def test_full_lifecycle(consortium):
    _, task, ok, tmp_path = consortium
    listing = ok("org", "list")
    assert all(o in listing for o in ORGS)
    assert "waiting for commitments: 0 of 3 for round 1" in ok("task", "status", task)
    ok("task", "run-local", task)
    assert "completed" in ok("task", "status", task) or "archived" in ok("task", "status", task)
    events = ok("ledger", "events", task, "--limit", "100")
    assert "RoundFinalized" in events and "FinalModelSet" in events
    ok("model", "fetch", task, "--out", str(tmp_path / "model"))
    card = json.loads((tmp_path / "model" / "model_card.json").read_text())
    assert card["task"] == task and len(card["features"]) == 10 and card["scaler"]
    assert [p["name"] for p in card["participants"]] == list(ORGS)
    out = ok("verify", task, "--org", "lab-b")
    assert "PASS: 4 of 4 rounds" in out
    res = runner.invoke(app, ["verify", task])  # no key: encrypted updates cannot be recomputed
    assert res.exit_code == 1 and "encrypted" in res.output


def test_unadmitted_org_and_bad_data_are_clear_errors(consortium):
    _, task, ok, tmp_path = consortium
    ok("org", "init", "mallory")
    res = runner.invoke(app, ["org", "register", "mallory"])
    assert res.exit_code == 2 and "not admitted" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("sample_id,f0,y\ns1,1.0,2.0\n")
    res = runner.invoke(app, ["task", "join", task, "--org", "lab-a", "--data", str(bad)])
    assert res.exit_code == 2 and "bad.csv" in res.output and "missing" in res.output
    res = runner.invoke(app, ["task", "join", task, "--org", "mallory", "--data", str(bad)])
    assert res.exit_code == 2 and "not a participant" in res.output


def test_an_issuer_outside_the_participants_is_named_before_any_keystore_or_store(consortium):
    home, _, _, tmp_path = consortium
    blobs = sorted(p.name for p in (home / "store").rglob("*") if p.is_file())
    cfg, table = tmp_path / "task.toml", tmp_path / "lab-a.csv"
    for by in ("lab-z", "lab-d"):  # no keystore / a keystore but not a participant
        if by == "lab-d":
            runner.invoke(app, ["org", "init", by])
        res = runner.invoke(app, [
            "task", "create", str(cfg), "--by", by, "--participants", ",".join(ORGS),
            "--schema-from", str(table),
        ])  # fmt: skip
        assert res.exit_code == 2, res.output
        assert f"--by: the issuer '{by}' must be one of the participants" in res.output
        assert "keystore" not in res.output
    assert sorted(p.name for p in (home / "store").rglob("*") if p.is_file()) == blobs


#: Runs `matswarm task run-local TASK` and dies (SIGKILL, no clean-up) in round 3 after the
#: first two orgs' transactions of the round (each its vote on round 2 and its commitment for
#: round 3) were mined and before anything else of the round was: the state a crash mid-round
#: leaves when some orgs' transactions made it into a block. Two of three votes are the quorum,
#: so round 2 is final and round 3 holds two commitments.
_DIE_MID_ROUND_3 = """
import os, signal, sys
from matswarm.ledger.ledger import Batch
from matswarm.cli.main import main

send = Batch.send
def dying_send(self):
    commits = [
        p.call for p in self if p.call.function == "voteAndCommit" and p.call.args[1] + 1 == 3
    ]
    if commits:
        self.ledger.send_batch(commits[:2])
        os.kill(os.getpid(), signal.SIGKILL)
    return send(self)

Batch.send = dying_send
sys.argv = ["matswarm", "task", "run-local", sys.argv[1], "--verbose"]
main()
"""


def test_killed_mid_round_resumes_without_lost_or_duplicated_round(consortium):
    home, task, ok, _ = consortium
    proc = subprocess.run(
        [sys.executable, "-c", _DIE_MID_ROUND_3, task],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    status = ok("task", "status", task)
    assert "waiting for commitments: 2 of 3 for round 3; missing: lab-c" in status, status
    out = ok("task", "run-local", task)
    assert "resuming at round 3" in out
    assert "PASS: 4 of 4 rounds" in ok("verify", task, "--org", "lab-a")
    from matswarm.runtime.local import Home, parse_task_id

    with Home(home).ledger() as led:
        events = led.events(parse_task_id(task))
    commits = [(e.args["round"], e.args["org"]) for e in events if e.name == "UpdateCommitted"]
    assert len(commits) == len(set(commits)) == 12  # 4 rounds x 3 orgs, none twice
    assert sum(e.name == "RoundFinalized" for e in events) == 4


def test_keystore_never_holds_private_keys_in_clear(consortium):
    home, *_ = consortium
    from matswarm.runtime.local import Home

    ident = Home(home).identity("lab-a")
    raw = (home / "orgs" / "lab-a.keystore.json").read_bytes()
    acct = ident.evm_account()
    assert acct.key.hex() not in raw.hex() and acct.key.hex().encode() not in raw
    assert oct(Path(home / "orgs" / "lab-a.keystore.json").stat().st_mode)[-3:] == "600"
