"""A private task through the CLI: ``task create`` pins [privacy] in the spec, ``task run-local``
prints the spend every round, anchors the signed reports and stores them in the model card."""

from __future__ import annotations

import json

from tests.lifecycle.test_lifecycle_cli import TASK_TOML, setup_consortium


def test_run_local_private_task(tmp_path, monkeypatch):
    toml = (
        TASK_TOML.replace("rounds = 4", "rounds = 3\nbatch_size = 16\nmethods = ['fedavg']")
        + "[privacy]\nmode = 'local'\nepsilon = 4.0\nclip = 0.5\n"
    )
    _, task, ok, tmp = setup_consortium(tmp_path, monkeypatch, toml, "fedavg")
    out = ok("task", "run-local", task)
    lines = [ln for ln in out.splitlines() if "DP (local) epsilon spent" in ln]
    assert [ln.split(":")[0].strip() for ln in lines] == ["round 1", "round 2", "round 3"]
    spent = [float(ln.split("spent ")[1].split()[0]) for ln in lines]
    assert spent == sorted(spent) and spent[-1] <= 4.0
    events = ok("ledger", "events", task, "--limit", "100")
    assert events.count("ReportRecorded") == 9  # 3 orgs x 3 rounds
    ok("model", "fetch", task, "--out", str(tmp / "model"))
    card = json.loads((tmp / "model" / "model_card.json").read_text())
    assert card["privacy"]["mode"] == "local" and card["privacy"]["epsilon"] == 4.0
    assert abs(card["privacy"]["epsilon_per_round"][-1] - spent[-1]) < 1e-3  # printed to 3 dp
    assert "PASS: 3 of 3 rounds" in ok("verify", task, "--org", "lab-b")
