"""A consortium of three orgs in a matswarm home, with a task they all joined (CLI only)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.data import synthetic

runner = CliRunner()
ORGS = ("lab-a", "lab-b", "lab-c")


def cli_ok(*args: str) -> str:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def make_consortium(
    tmp_path: Path, monkeypatch, config: str, algorithm: str
) -> tuple[Path, str, Callable[..., str], Path]:
    """Three orgs with keystores (passphrase from the environment), admitted and registered,
    and a task from ``config`` (TOML text) run by ``algorithm`` that all three joined with
    their own synthetic CSV (``tmp_path / "lab-a.csv"``, ...). Returns ``(home, task id, ok,
    tmp_path)``."""
    home = tmp_path / "home"
    monkeypatch.setenv("MATSWARM_HOME", str(home))
    monkeypatch.setenv("MATSWARM_PASSPHRASE", "test-only-passphrase")
    for org in ORGS:
        cli_ok("org", "init", org)
    cli_ok("org", "register", "lab-a")
    for org in ORGS[1:]:
        cli_ok("org", "admit", str(home / "orgs" / f"{org}.pub.json"), "--by", "lab-a")
        cli_ok("org", "register", org)
    tables, _ = synthetic.make_tables(n_rows=240, n_features=10, n_orgs=3, seed=2)
    files = []
    for i, org in enumerate(ORGS):
        f = tmp_path / f"{org}.csv"
        tables[f"org{i + 1}"].to_csv(f, index=False)
        files.append(f)
    cfg = tmp_path / "task.toml"
    cfg.write_text(config)
    out = cli_ok(
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
        algorithm,
    )
    task = next(w for w in out.split() if w.startswith("0x"))
    for org, f in zip(ORGS, files, strict=True):
        cli_ok("task", "join", task, "--org", org, "--data", str(f))
    return home, task, cli_ok, tmp_path
