"""Contributions and the final-model vote through the CLI: a home-folder task with
[contribution] settings, run with `task run-local`, shown by `task status`, checked by `verify`."""

from __future__ import annotations

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.data import synthetic

runner = CliRunner()
ORGS = ("lab-a", "lab-b", "lab-c")


def test_task_status_shows_contributions_and_the_final_vote(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MATSWARM_HOME", str(home))
    monkeypatch.setenv("MATSWARM_PASSPHRASE", "test-only-passphrase")

    def ok(*args):
        res = runner.invoke(app, list(args))
        assert res.exit_code == 0, res.output
        return res.output

    for org in ORGS:
        ok("org", "init", org)
    ok("org", "register", "lab-a")
    for org in ORGS[1:]:
        ok("org", "admit", str(home / "orgs" / f"{org}.pub.json"), "--by", "lab-a")
        ok("org", "register", org)
    tables, _ = synthetic.make_tables(n_rows=240, n_features=10, n_orgs=3, label_shift=0.0, seed=2)
    files = []
    for i, org in enumerate(ORGS):
        f = tmp_path / f"{org}.csv"
        tables[f"org{i + 1}"].to_csv(f, index=False)
        files.append(f)
    cfg = tmp_path / "task.toml"
    cfg.write_text(
        "[data]\ntarget = 'y'\nunit = 'a.u.'\n[model]\nhidden = 8\n"
        "[training]\nrounds = 2\nlocal_steps = 5\nlr = 0.01\n[run]\nseeds = [0]\n"
        "[aggregation]\nweights = 'contribution'\n[contribution]\nmethod = 'shapley-mc'\n"
        "permutations = 8\n"
    )
    out = ok(
        "task",
        "create",
        str(cfg),
        "--by",
        "lab-a",
        "--participants",
        ",".join(ORGS),
        "--schema-from",
        str(files[0]),
        "--algorithm",
        "fedavg",
        "--no-encrypt",
    )
    task = next(w for w in out.split() if w.startswith("0x"))
    for org, f in zip(ORGS, files, strict=True):
        ok("task", "join", task, "--org", org, "--data", str(f))
    assert "final model" in ok("task", "run-local", task)
    status = ok("task", "status", task)
    print(status)
    assert "archived" in status and "Contributions (whole task)" in status
    assert all(o in status for o in ORGS) and "shapley-mc" in status
    assert "final-model vote: 3 accept, 0 reject of 3 (quorum 2): accepted" in status
    assert "PASS: 2 of 2 rounds" in ok("verify", task)
