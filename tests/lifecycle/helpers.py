"""Driving the lifecycle CLI in tests: a command that must succeed, a founded consortium, and a
home with three registered orgs and a task they all joined (shared by the lifecycle, the
featurisation and the contribution tests)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from typer.testing import CliRunner

from matswarm.cli.main import app
from matswarm.data import synthetic

runner = CliRunner()
ORGS = ("lab-a", "lab-b", "lab-c")
DEFAULT_CONFIG = (
    "[data]\ntarget = 'y'\nunit = 'a.u.'\n[model]\nhidden = 8\n"
    "[training]\nrounds = 4\nlocal_steps = 3\n[run]\nseeds = [0]\n"
)


def ok(*args: str) -> str:
    """Run ``matswarm ARGS``; it must exit 0. Returns its output."""
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def found_consortium(home: Path, orgs: Sequence[str]) -> Callable[..., str]:
    """``orgs`` initialised, the first founding the consortium and admitting the others, all
    registered (MATSWARM_HOME and the passphrase must be set). Returns :func:`ok`."""
    for org in orgs:
        ok("org", "init", org)
    ok("org", "register", orgs[0])
    for org in orgs[1:]:
        ok("org", "admit", str(home / "orgs" / f"{org}.pub.json"), "--by", orgs[0])
        ok("org", "register", org)
    return ok


def home_with_task(
    tmp_path: Path,
    monkeypatch,
    *,
    config: str = DEFAULT_CONFIG,
    algorithm: str = "matswarm",
    create_args: tuple[str, ...] = (),
    label_shift: float = 1.0,
):
    """``(home, task, ok, tmp_path)``: ``ok(*args)`` runs a CLI command and asserts exit 0."""
    home = tmp_path / "home"
    monkeypatch.setenv("MATSWARM_HOME", str(home))
    monkeypatch.setenv("MATSWARM_PASSPHRASE", "test-only-passphrase")
    found_consortium(home, ORGS)
    tables, _ = synthetic.make_tables(
        n_rows=240, n_features=10, n_orgs=3, label_shift=label_shift, seed=2
    )
    files = []
    for i, org in enumerate(ORGS):
        f = tmp_path / f"{org}.csv"
        tables[f"org{i + 1}"].to_csv(f, index=False)
        files.append(f)
    cfg = tmp_path / "task.toml"
    cfg.write_text(config)
    out = ok(
        "task", "create", str(cfg), "--by", "lab-a", "--participants", ",".join(ORGS),
        "--schema-from", str(files[0]), "--algorithm", algorithm, *create_args,
    )  # fmt: skip
    task = next(w for w in out.split() if w.startswith("0x"))
    for org, f in zip(ORGS, files, strict=True):
        ok("task", "join", task, "--org", org, "--data", str(f))
    return home, task, ok, tmp_path
