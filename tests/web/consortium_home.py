"""Build a real matswarm home (orgs, embedded ledger, store, one joined task) through the CLI,
as an operator would: what the dashboard tests and the dashboard benchmark read."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.data import synthetic

PASSPHRASE = "test-only-passphrase"


def cli(*args: str) -> str:
    """Run one ``matswarm`` command in-process; raise with its output if it fails."""
    res = CliRunner().invoke(app, list(args))
    if res.exit_code != 0:
        raise AssertionError(f"matswarm {' '.join(args)} failed:\n{res.output}")
    return res.output


def make_home(
    root: Path,
    *,
    n_orgs: int = 3,
    rounds: int = 3,
    hidden: int = 8,
    rows: int = 240,
    encrypt: bool = False,
    local_steps: int = 3,
    seed: int = 2,
) -> tuple[Path, str, Path]:
    """``(home, task_id, eval_csv)``: ``n_orgs`` admitted, registered orgs and one joined
    MatSwarm task of ``rounds`` rounds on synthetic tables (plus a held-out table).

    The keystores' passphrase is read from ``MATSWARM_PASSPHRASE``, which the caller sets
    (to :data:`PASSPHRASE`)."""
    if os.environ.get("MATSWARM_PASSPHRASE") != PASSPHRASE:
        raise RuntimeError("set MATSWARM_PASSPHRASE to consortium_home.PASSPHRASE first")
    home = root / "home"
    h = ("--home", str(home))
    orgs = [f"lab-{chr(ord('a') + i)}" for i in range(n_orgs)]
    for org in orgs:
        cli("org", "init", org, *h)
    cli("org", "register", orgs[0], *h)
    for org in orgs[1:]:
        cli("org", "admit", str(home / "orgs" / f"{org}.pub.json"), "--by", orgs[0], *h)
        cli("org", "register", org, *h)
    tables, test = synthetic.make_tables(
        n_rows=rows * n_orgs // 3, n_features=10, n_orgs=n_orgs, seed=seed
    )
    files = []
    for i, org in enumerate(orgs):
        f = root / f"{org}.csv"
        tables[f"org{i + 1}"].to_csv(f, index=False)
        files.append(f)
    eval_csv = root / "public-test.csv"
    test.to_csv(eval_csv, index=False)
    cfg = root / "task.toml"
    cfg.write_text(
        f"[data]\ntarget = 'y'\nunit = 'a.u.'\n[model]\nhidden = {hidden}\n"
        f"[training]\nrounds = {rounds}\nlocal_steps = {local_steps}\n[run]\nseeds = [0]\n"
    )
    out = cli(
        "task",
        "create",
        str(cfg),
        "--by",
        orgs[0],
        "--participants",
        ",".join(orgs),
        "--schema-from",
        str(files[0]),
        "--algorithm",
        "matswarm",
        "--name",
        "dashboard-demo",
        "--encrypt" if encrypt else "--no-encrypt",
        *h,
    )
    task = next(w for w in out.split() if w.startswith("0x"))
    for org, f in zip(orgs, files, strict=True):
        cli("task", "join", task, "--org", org, "--data", str(f), *h)
    return home, task, eval_csv
