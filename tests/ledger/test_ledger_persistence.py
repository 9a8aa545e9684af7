"""The embedded chain survives restarts, including a writer killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from eth_account import Account

import matswarm
from matswarm.ledger import EmbeddedChain, Ledger, LedgerLocked, RoundPhase, TaskStatus

from .ledger_helpers import Consortium, h

WORKER = Path(__file__).with_name("crash_worker.py")


def test_task_survives_a_clean_restart(consortium: Consortium) -> None:
    c = consortium
    task = c.task(n=4, rounds=2)
    for i, org in enumerate(c.orgs[:2]):
        c.as_(org).commit_update(task, 1, h(f"u0-{i}"), f"bafy-u0-{i}")
    head = c.ledger.chain.block_number()
    n_events = len(c.ledger.events(task))
    c.ledger.close()

    reopened = Ledger.embedded(c.path, c.founder)
    try:
        assert reopened.address == c.ledger.address
        assert reopened.chain.block_number() == head
        assert len(reopened.events(task)) == n_events
        info = reopened.round_info(task, 1)
        assert set(info.commitments) == {o.address for o in c.orgs[:2]}
        # nonces, round state and deadlines carry on
        for i, org in enumerate(c.orgs[2:4], start=2):
            reopened.with_account(org).commit_update(task, 1, h(f"u0-{i}"), f"bafy-u0-{i}")
        for org in c.orgs[:3]:
            reopened.with_account(org).vote_global(task, 1, h("g0"))
        assert reopened.round_info(task, 1).final_hash == h("g0")
        assert reopened.task_info(task).current_round == 2
    finally:
        reopened.close()
    c.ledger = Ledger.embedded(c.path, c.founder)  # so the fixture can close it


def test_single_writer_lock(tmp_path: Path) -> None:
    chain = EmbeddedChain(tmp_path / "c")
    try:
        with pytest.raises(LedgerLocked):
            EmbeddedChain(tmp_path / "c")
    finally:
        chain.close()
    EmbeddedChain(tmp_path / "c").close()  # released on close


def _run_worker(path: Path, task: bytes, keys: list[str], kill_after: int | None) -> list[str]:
    env = dict(os.environ)
    src = str(Path(matswarm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), task.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(keys) + "\n")
    proc.stdin.close()
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line.strip())
            if kill_after is not None and len(lines) >= kill_after:
                # SIGKILL: no atexit, no SQLite close; the worker is mid-way
                # through its next transaction.
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    if kill_after is None:
        assert proc.returncode == 0
    else:
        assert proc.returncode == -signal.SIGKILL
    return lines


def test_task_resumes_after_sigkill_with_no_lost_or_duplicated_round(tmp_path: Path) -> None:
    founder = Account.create()
    orgs = [Account.create() for _ in range(4)]
    path = tmp_path / "chain"
    ledger = Ledger.embedded(path, founder, founders=[founder.address])
    for o in orgs:
        ledger.propose_admission(o.address, os.urandom(32), os.urandom(32), "org")
    rounds = 4
    task = ledger.create_task(
        [o.address for o in orgs],
        spec_hash=h("spec"),
        train_code_hash=h("t"),
        agg_code_hash=h("a"),
        rounds=rounds,
        round_duration_s=3600,
    )
    ledger.close()  # hand the directory to the worker process
    keys = [a.key.hex() for a in (founder, *orgs)]

    printed: list[str] = []
    for kill_after in (5, 6):  # two crashes: mid commit phase, then later
        printed += _run_worker(path, task, keys, kill_after)
        # Every transaction the worker saw mined is on disk; at most one more.
        reopened = Ledger.embedded(path, founder)
        mined = [e for e in reopened.events(task) if e.name in ("UpdateCommitted", "GlobalVoted")]
        assert len(printed) <= len(mined) <= len(printed) + 1
        reopened.close()
    printed += _run_worker(path, task, keys, None)
    assert printed[-1] == "done"

    final = Ledger.embedded(path, founder)
    try:
        assert final.task_info(task).status is TaskStatus.COMPLETED
        for rnd in range(1, rounds + 1):
            info = final.round_info(task, rnd)
            assert info.phase is RoundPhase.FINAL and info.final_hash == h(f"g{rnd}")
            assert len(info.commitments) == 4 and info.missing == ()
            assert all(
                c.update_hash == h(f"u{rnd}-{i}") for i, c in enumerate(info.commitments.values())
            )
        events = final.events(task)
        assert sum(e.name == "RoundFinalized" for e in events) == rounds
        assert sum(e.name == "UpdateCommitted" for e in events) == 4 * rounds
        # the index agrees with a direct scan of the chain
        logs = final.chain.get_logs(final.address, 0, final.chain.block_number())
        assert len(final.events()) == len(logs)
    finally:
        final.close()


def test_event_index_rebuilds_when_it_no_longer_matches_the_chain(consortium: Consortium) -> None:
    c = consortium
    task = c.task()
    c.as_(c.orgs[0]).commit_update(task, 1, h("u"), "bafy-u")
    expected = [(e.name, e.block_number, e.log_index) for e in c.ledger.events()]
    c.ledger.close()
    # a stale or foreign index: wrong head hash and a bogus extra event
    conn = sqlite3.connect(c.path / "index.sqlite")
    with conn:
        conn.execute("UPDATE meta SET v='0xdead' WHERE k='last_hash'")
        conn.execute("INSERT INTO events VALUES (1, 99, '0x00', 'Bogus', NULL, NULL, '{}')")
    conn.close()
    c.ledger = Ledger.embedded(c.path, c.founder)
    assert [(e.name, e.block_number, e.log_index) for e in c.ledger.events()] == expected
