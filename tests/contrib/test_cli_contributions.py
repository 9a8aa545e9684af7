"""Contributions and the final-model vote through the CLI: a home-folder task with
[contribution] settings, run with `task run-local`, shown by `task status`, checked by `verify`."""

from __future__ import annotations

from tests.lifecycle.helpers import ORGS, home_with_task

CONFIG = (
    "[data]\ntarget = 'y'\nunit = 'a.u.'\n[model]\nhidden = 8\n"
    "[training]\nrounds = 2\nlocal_steps = 5\nlr = 0.01\n[run]\nseeds = [0]\n"
    "[aggregation]\nweights = 'contribution'\n[contribution]\nmethod = 'shapley-mc'\n"
    "permutations = 8\n"
)


def test_task_status_shows_contributions_and_the_final_vote(tmp_path, monkeypatch):
    _, task, ok, _ = home_with_task(
        tmp_path,
        monkeypatch,
        config=CONFIG,
        algorithm="fedavg",
        create_args=("--no-encrypt",),
        label_shift=0.0,
    )
    assert "final model" in ok("task", "run-local", task)
    status = ok("task", "status", task)
    print(status)
    assert "archived" in status and "Contributions (whole task)" in status
    assert all(o in status for o in ORGS) and "shapley-mc" in status
    assert "final-model vote: 3 accept, 0 reject of 3 (quorum 2): accepted" in status
    assert "PASS: 2 of 2 rounds" in ok("verify", task)
