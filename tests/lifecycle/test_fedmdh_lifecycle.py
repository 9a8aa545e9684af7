"""A FedMDH task whose orgs hold different columns, through `task create --org-columns`,
`task join` and `task run-local` (the trust layer), then `verify`."""

from __future__ import annotations

from tests.lifecycle.test_lifecycle_cli import ORGS, runner

from matswarm.cli.main import app
from matswarm.data import synthetic


def test_heterogeneous_fedmdh_task_runs_on_the_trust_layer(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MATSWARM_HOME", str(home))
    monkeypatch.setenv("MATSWARM_PASSPHRASE", "test-only-passphrase")

    def ok(*args):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
        return res.output

    for org in ORGS:
        ok("org", "init", org)
    ok("org", "register", ORGS[0])
    for org in ORGS[1:]:
        ok("org", "admit", home / "orgs" / f"{org}.pub.json", "--by", ORGS[0])
        ok("org", "register", org)
    tables, _ = synthetic.make_tables(n_rows=240, n_features=8, n_orgs=3, seed=4)
    union = tmp_path / "union.csv"
    tables["org1"].head(5).to_csv(union, index=False)  # every column
    files = {}
    for i, org in enumerate(ORGS):
        # Each lab lacks a different descriptor.
        files[org] = tmp_path / f"{org}.csv"
        tables[f"org{i + 1}"].drop(columns=[f"f{i}"]).to_csv(files[org], index=False)
    cfg = tmp_path / "task.toml"
    cfg.write_text(
        "[data]\ntarget = 'y'\nunit = 'a.u.'\n[model]\nname = 'fedmdh'\nhidden = 8\n"
        "[training]\nrounds = 3\nlocal_steps = 3\n[run]\nseeds = [0]\n"
    )
    out = ok(
        "task", "create", cfg, "--by", ORGS[0], "--participants", ",".join(ORGS),
        "--schema-from", union, "--algorithm", "fedmdh",
        *[x for org in ORGS for x in ("--org-columns", f"{org}={files[org]}")],
    )  # fmt: skip
    assert "lab-b holds 7; lacks: f1" in out
    task = next(w for w in out.split() if w.startswith("0x"))
    for org in ORGS:
        joined = ok("task", "join", task, "--org", org, "--data", files[org])
        assert "declared missing" in joined
    ok("task", "run-local", task)
    assert "PASS: 3 of 3 rounds" in ok("verify", task, "--org", ORGS[1])
    # A table that lacks a column its org declared is refused, naming the column.
    bad = tmp_path / "bad.csv"
    tables["org2"].drop(columns=["f1", "f2"]).to_csv(bad, index=False)
    res = runner.invoke(app, ["task", "join", task, "--org", ORGS[1], "--data", str(bad)])
    assert res.exit_code == 2 and "'f2'" in res.output
