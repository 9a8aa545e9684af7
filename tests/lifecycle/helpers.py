"""Driving the lifecycle CLI in tests: a command that must succeed, and a founded consortium."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from typer.testing import CliRunner

from matswarm.cli.main import app

runner = CliRunner()


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
