"""A private task through the CLI: ``task create`` pins [privacy] in the spec, ``task run-local``
prints the spend every round, anchors the signed reports and stores them in the model card."""

from __future__ import annotations

import json

from tests.lifecycle.helpers import DEFAULT_CONFIG, home_with_task


def test_run_local_private_task(tmp_path, monkeypatch):
    toml = (
        DEFAULT_CONFIG.replace("rounds = 4", "rounds = 3\nbatch_size = 16\nmethods = ['fedavg']")
        + "[privacy]\nmode = 'local'\nepsilon = 4.0\nclip = 0.5\n"
    )
    _, task, ok, tmp = home_with_task(tmp_path, monkeypatch, config=toml, algorithm="fedavg")
    out = ok("task", "run-local", task)
    lines = [ln for ln in out.splitlines() if "DP (local, record-level) epsilon spent" in ln]
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


def test_matswarm_run_with_privacy_prints_the_spend_per_round(tmp_path):
    from typer.testing import CliRunner

    from matswarm.cli.main import app

    cfg = tmp_path / "dp.toml"
    body = (
        "[data]\nsource = 'synthetic'\nrows = 240\nfeatures = 12\n"
        "[training]\nmethods = ['fedavg', 'solo']\nrounds = 3\nlocal_steps = 2\nbatch_size = 16\n"
        "[run]\nseeds = 1\njobs = 1\n"
        f"output = '{tmp_path / 'out'}'\n"
    )
    cfg.write_text(body + "[privacy]\nmode = 'local'\nepsilon = 2\n")
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "fedavg seed 0, DP local (target epsilon 2.0" in text
    assert "epsilon spent after round 1: " in text and ", 3: " in text
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    priv = {r["method"]: r.get("privacy") for r in doc["per_seed"]}
    assert priv["solo"] is None and len(priv["fedavg"]["epsilon_per_round"]) == 3
    assert doc["config"]["privacy"]["epsilon"] == 2.0
    # A fixed noise multiplier that cannot last the planned rounds is refused before training.
    cfg.write_text(body + "[privacy]\nmode = 'local'\nepsilon = 0.5\nnoise_multiplier = 0.3\n")
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert res.exit_code != 0
    assert "[privacy] epsilon = 0.5" in res.output and "[training] rounds = 3" in res.output
