"""A read-only view of an embedded chain while its writer keeps the directory locked."""

from __future__ import annotations

import hashlib
import os

import pytest
from eth_account import Account

from matswarm.ledger import Ledger, LedgerError
from matswarm.ledger.readonly import ReadOnlyError, open_embedded_readonly

from .ledger_helpers import Consortium


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_reader_follows_a_locked_writer_and_never_writes(consortium: Consortium):
    writer = consortium.ledger  # holds the directory's exclusive lock
    index = consortium.path / "index.sqlite"
    reader = open_embedded_readonly(consortium.path)
    try:
        assert reader.members() == writer.members()
        assert reader.address == writer.address
        task = consortium.task(n=3, rounds=2)
        index_before = _digest(index)
        # The reader sees the writer's new block and its events, through its own index.
        assert reader.task_info(task).participants == writer.task_info(task).participants
        assert [e.name for e in reader.events(task)] == [e.name for e in writer.events(task)]
        assert _digest(index) == index_before  # the writer's index cache is not touched

        # Inside a snapshot the reader keeps seeing one block height.
        with reader.chain.snapshot():
            height = reader.chain.block_number()
            consortium.as_(consortium.orgs[0]).commit_update(task, 1, os.urandom(32), "bafkreitest")
            assert reader.chain.block_number() == height
            assert reader.commitments(task, 1) == {}
        assert reader.chain.block_number() == height + 1
        assert list(reader.commitments(task, 1)) == [consortium.orgs[0].address]

        # Nothing can be written through it.
        with pytest.raises(ReadOnlyError):
            reader.with_account(Account.create()).commit_update(task, 1, os.urandom(32), "x")
        with pytest.raises(ReadOnlyError):
            reader.chain.advance_time(10)
        with pytest.raises(ReadOnlyError):
            reader.chain._kv[b"k"] = b"v"
    finally:
        reader.close()


def test_reader_takes_no_lock(consortium: Consortium):
    reader = open_embedded_readonly(consortium.path)
    try:
        consortium.ledger.close()  # the writer goes; another writer may come while we read
        again = Ledger.embedded(consortium.path, consortium.founder)
        try:
            assert again.members() == reader.members()
        finally:
            again.close()
    finally:
        reader.close()


def test_missing_chain_is_a_clear_error(tmp_path):
    with pytest.raises(LedgerError, match="no embedded chain"):
        open_embedded_readonly(tmp_path / "nowhere")


def test_reader_opens_a_chain_whose_writer_closed_cleanly(consortium: Consortium):
    consortium.ledger.close()  # SQLite checkpoints and removes the WAL sidecar files
    chain = consortium.path / "chain.sqlite"
    before = _digest(chain)
    reader = open_embedded_readonly(consortium.path)
    try:
        assert len(reader.members()) == 1 + len(consortium.orgs)
    finally:
        reader.close()
    assert _digest(chain) == before
