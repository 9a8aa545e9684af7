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
from eth_account.signers.local import LocalAccount

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


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])
def test_block_commits_are_fsynced_unless_not_durable(
    tmp_path: Path, durable: bool, level: int
) -> None:
    chain = EmbeddedChain(tmp_path / "chain", durable=durable)
    try:
        # SQLite's synchronous level: 2 = FULL (fsync per commit), 1 = NORMAL (WAL: survives
        # a killed process, not a power loss).
        assert chain._kv._conn.execute("PRAGMA synchronous").fetchone()[0] == level
    finally:
        chain.close()


def test_single_writer_lock(tmp_path: Path) -> None:
    chain = EmbeddedChain(tmp_path / "c")
    try:
        with pytest.raises(LedgerLocked):
            EmbeddedChain(tmp_path / "c")
    finally:
        chain.close()
    EmbeddedChain(tmp_path / "c").close()  # released on close


def _run_worker(
    path: Path,
    task: bytes,
    keys: list[str],
    kill_after: int | None,
    *extra: str,
    dies: bool = False,
) -> list[str]:
    """Run the worker; kill it after ``kill_after`` lines, or expect it to die by itself."""
    env = dict(os.environ)
    src = str(Path(matswarm.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), str(path), task.hex(), *extra],
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
    if kill_after is None and not dies:
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


def _new_task(path: Path, n: int = 4, rounds: int = 3) -> tuple[bytes, list[str], LocalAccount]:
    founder = Account.create()
    orgs = [Account.create() for _ in range(n)]
    ledger = Ledger.embedded(path, founder, founders=[founder.address])
    for o in orgs:
        ledger.propose_admission(o.address, os.urandom(32), os.urandom(32), "org")
    task = ledger.create_task(
        [o.address for o in orgs],
        spec_hash=h("spec"),
        train_code_hash=h("t"),
        agg_code_hash=h("a"),
        rounds=rounds,
        round_duration_s=3600,
    )
    ledger.close()  # hand the directory to the worker process
    return task, [a.key.hex() for a in (founder, *orgs)], founder


def _assert_whole_blocks(ledger: Ledger, task: bytes, rounds: int, n: int = 4) -> None:
    """Every batch is all or nothing: a round has 0 or n commitments, and the contract's own
    counters agree with the indexed events, which agree with a direct scan of the chain."""
    for rnd in range(1, rounds + 1):
        info = ledger.round_info(task, rnd)
        assert len(info.commitments) in (0, n), (rnd, len(info.commitments))
        _, _, commits, votes, _, _ = ledger._view("getRound", task, rnd)
        assert commits == len(info.commitments) and votes == len(info.votes)
    logs = ledger.chain.get_logs(ledger.address, 0, ledger.chain.block_number())
    assert len(ledger.events()) == len(logs)


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_inside_the_commit_of_a_batched_block(tmp_path: Path, when: str) -> None:
    """The worker dies inside the durable commit of its first block of 4 commitments:
    before it, the block is entirely gone (state, nonces, events); after it, entirely there.
    Either way the task then runs to completion from the persisted chain."""
    path = tmp_path / "chain"
    task, keys, founder = _new_task(path)
    head = Ledger.embedded(path, founder)
    start = head.chain.block_number()
    head.close()
    crash = ("--die-at-commit", "1", when)
    printed = _run_worker(path, task, keys, None, "--batch", *crash, dies=True)
    assert printed == []  # it died inside its first block
    reopened = Ledger.embedded(path, founder)
    try:
        info = reopened.round_info(task, 1)
        if when == "before":
            assert reopened.chain.block_number() == start
            assert info.commitments == {}
            assert all(reopened.chain.next_nonce(a.address) == 0 for a in _accounts(keys))
        else:
            assert reopened.chain.block_number() == start + 1
            assert len(info.commitments) == 4
            assert all(reopened.chain.next_nonce(a.address) == 1 for a in _accounts(keys))
        _assert_whole_blocks(reopened, task, 3)
    finally:
        reopened.close()
    printed = _run_worker(path, task, keys, None, "--batch")
    assert printed[-1] == "done"
    assert printed[0] == ("commit-batch 1 4" if when == "before" else "vote-batch 1 4")
    final = Ledger.embedded(path, founder)
    try:
        assert final.task_info(task).status is TaskStatus.COMPLETED
        _assert_whole_blocks(final, task, 3)
        for rnd in range(1, 4):
            assert final.round_info(task, rnd).final_hash == h(f"g{rnd}")
    finally:
        final.close()


def _accounts(keys: list[str]) -> list[LocalAccount]:
    return [Account.from_key(bytes.fromhex(k)) for k in keys[1:]]


def test_batched_task_survives_external_sigkills(tmp_path: Path) -> None:
    """kill -9 from outside at two points of a task run in batches: no block is ever half
    there, and the task completes with every round final and no duplicate."""
    path = tmp_path / "chain"
    rounds = 4
    task, keys, founder = _new_task(path, rounds=rounds)
    for kill_after in (1, 3):
        _run_worker(path, task, keys, kill_after, "--batch")
        reopened = Ledger.embedded(path, founder)
        _assert_whole_blocks(reopened, task, rounds)
        reopened.close()
    assert _run_worker(path, task, keys, None, "--batch")[-1] == "done"
    final = Ledger.embedded(path, founder)
    try:
        assert final.task_info(task).status is TaskStatus.COMPLETED
        _assert_whole_blocks(final, task, rounds)
        events = final.events(task)
        assert sum(e.name == "UpdateCommitted" for e in events) == 4 * rounds
        assert sum(e.name == "RoundFinalized" for e in events) == rounds
    finally:
        final.close()
