"""``matswarm experiment privacy`` end to end on the paper split, with tiny schedules."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.experiments import privacy as exp


def test_privacy_experiment_writes_rows_and_plot(perovskite_dir, tmp_path, monkeypatch):
    tiny = exp.Schedule(rounds=2, local_steps=2, lr=3e-3, clip=1.0)
    monkeypatch.setattr(exp, "SCHEDULES", {m: {3.0: tiny} for m in exp.MODES})
    monkeypatch.setattr(exp, "REFERENCE", exp.Schedule(2, 2, 3e-3, None))
    monkeypatch.setattr(exp, "EPSILONS", (float("inf"), 10.0, 1.0))
    monkeypatch.setattr(exp, "COMPRESSION_ROUNDS", 2)
    out = tmp_path / "privacy"
    res = CliRunner().invoke(
        app,
        [
            "experiment",
            "privacy",
            "--seeds",
            "1",
            "--jobs",
            "1",
            "--output",
            str(out),
            "--data",
            str(perovskite_dir),
        ],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "results.json").read_text())
    comp = [r for r in doc["rows"] if r["part"] == "compression"]
    assert [r["kind"] for r in comp] == ["none", "q8", "q4", "topk", "topk", "topk", "topk"]
    assert comp[0]["reduction"] == 0 and all(r["reduction"] > 0.7 for r in comp[1:3])
    assert (out / "compression.png").stat().st_size > 0
    assert "update bytes per round" in res.output
    rows = [r for r in doc["rows"] if r["part"] == "dp"]
    assert [(r["mode"], r["epsilon"]) for r in rows] == [
        *((m, e) for m in exp.MODES for e in (None, 10.0, 1.0)),
        ("reference", None),
    ]
    summary_keys = {"method", "model", "org", "mse_mean", "mse_std", "rmse_mean", "n_seeds"}
    for r in rows:
        assert summary_keys <= set(r) and r["org"] == "global" and r["mse_mean"] > 0
        if r["epsilon"] is not None:
            assert 0 < r["epsilon_spent"] <= r["epsilon"] and r["noise_multiplier"] > 0
    sigma = {r["epsilon"]: r["noise_multiplier"] for r in rows if r["mode"] == "central"}
    assert sigma[1.0] > sigma[10.0]  # a smaller budget needs more noise
    org = {(r["mode"], r["epsilon"]): r for r in rows if r["mode"].startswith("central-org")}
    assert org[("central-org", 1.0)]["orgs"] == 3 and org[("central-org-30", 1.0)]["orgs"] == 30
    assert org[("central-org", 1.0)]["method"] == "fedavg"
    assert (out / "privacy_mse_vs_epsilon.png").stat().st_size > 0
    assert "Global test MSE" in res.output


def test_unknown_part_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(
        app, ["experiment", "privacy", "--parts", "dp,zip", "--output", str(tmp_path)]
    )
    assert res.exit_code != 0 and "unknown part(s) ['zip']" in res.output
