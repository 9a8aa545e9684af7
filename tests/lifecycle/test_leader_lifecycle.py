"""A task created with leader verification runs through ``task run-local`` and verifies."""

from __future__ import annotations

import json

import pytest
from tests.lifecycle.helpers import home_with_task


def test_leader_task_runs_locally_and_verifies(tmp_path, monkeypatch):
    home, task, ok, _ = home_with_task(
        tmp_path, monkeypatch, create_args=("--verification", "leader", "--audit-rate", "0.5")
    )
    ok("task", "run-local", task)
    out = ok("verify", task, "--org", "lab-b")
    assert "PASS" in out
    specs = [json.loads(p.read_bytes()) for p in (home / "store").rglob("*") if p.is_file()
             and p.read_bytes().startswith(b'{"agg_code_sha256"')]  # fmt: skip
    assert [s["verification"] for s in specs] == [{"mode": "leader", "audit_rate": 0.5}]


def test_bad_verification_mode_is_refused_naming_the_field(tmp_path, monkeypatch):
    with pytest.raises(AssertionError, match=r"verification\.mode must be one of"):
        home_with_task(tmp_path, monkeypatch, create_args=("--verification", "boss"))
