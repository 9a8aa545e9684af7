import json

import pytest
from typer.testing import CliRunner

from matswarm.cli.main import app

runner = CliRunner()


def test_run_with_config_writes_documented_results(tmp_path, perovskite_dir):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[data]
path = "{perovskite_dir}"
[training]
methods = ["solo", "fedavg", "joint"]
rounds = 2
local_steps = 3
[run]
seeds = 2
jobs = 1
output = "{tmp_path / "out"}"
""")
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["units"] == "eV/atom"
    keys = {
        "method",
        "model",
        "org",
        "mse_mean",
        "mse_std",
        "rmse_mean",
        "mae_mean",
        "r2_mean",
        "n_seeds",
    }
    assert all(set(r) == keys for r in doc["rows"])
    got = {(r["method"], r["org"]) for r in doc["rows"]}
    assert {("solo", "org1"), ("fedavg", "global"), ("fedavg", "org3"), ("joint", "global")} <= got
    assert all(r["n_seeds"] == 2 for r in doc["rows"])
    for f in ("results.csv", "parity.png", "rounds.png", "train_loss.png"):
        assert (tmp_path / "out" / f).stat().st_size > 0
    assert doc["provenance"]["data_sha256"]["train_part0.csv"].startswith("f512257")


def test_run_bad_config_is_a_clear_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[training]\nrouns = 3\n")
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 2
    assert "unknown key 'rouns' in [training]" in result.output and str(cfg) in result.output


def test_run_without_data_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.delenv("MATSWARM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MATSWARM_DATA_URL", "http://127.0.0.1:9/none")
    cfg = tmp_path / "c.toml"
    cfg.write_text("[training]\nrounds = 1\n")
    result = runner.invoke(app, ["run", str(cfg)])
    assert result.exit_code == 2 and "perovskite dataset not found" in result.output


def test_demo_falls_back_to_synthetic_and_says_so_first(tmp_path, monkeypatch):
    monkeypatch.delenv("MATSWARM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("MATSWARM_DATA_URL", "http://127.0.0.1:9/none")
    result = runner.invoke(
        app,
        [
            "demo",
            "--rounds",
            "1",
            "--seeds",
            "1",
            "--jobs",
            "1",
            "--output",
            str(tmp_path / "demo"),
        ],
    )
    assert result.exit_code == 0, result.output
    first = result.output.strip().splitlines()[0]
    assert "SYNTHETIC" in first
    assert (tmp_path / "demo" / "results.json").exists()


@pytest.mark.parametrize(
    "cmd", [["--help"], ["run", "--help"], ["demo", "--help"], ["experiment", "table1", "--help"]]
)
def test_help(cmd):
    result = runner.invoke(app, cmd)
    assert result.exit_code == 0
    if cmd[0] == "run":
        assert "local_steps" in result.output and "[aggregation]" in result.output


def test_table1_prints_ours_beside_the_paper(tmp_path, perovskite_dir):
    out = tmp_path / "t1"
    result = runner.invoke(
        app,
        [
            "experiment",
            "table1",
            "--seeds",
            "2",
            "--models",
            "lasso,mlp",
            "--rounds",
            "2",
            "--jobs",
            "1",
            "--data",
            str(perovskite_dir),
            "--output",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "table1.json").read_text())
    cell = doc["table"]["mlp"]["MatSwarm(Global)"]
    assert cell["paper"] == [0.0903, 0.0073] and cell["ours"][0] > 0
    assert set(doc["table"]) == {"lasso", "mlp"}
    assert "Solo-Org1" in result.output and "0.9146" not in result.output  # rnn not run
    bad = runner.invoke(app, ["experiment", "table1", "--models", "gpt"])
    assert bad.exit_code == 2 and "unknown model" in bad.output
