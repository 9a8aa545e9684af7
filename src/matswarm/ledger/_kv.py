"""A durable key/value store for py-evm, on SQLite.

py-evm 0.12 only ships an in-memory database, but its database is a plain
bytes -> bytes map and it writes in ``atomic_batch()``es. We keep one SQLite
transaction open for all writes and commit it (durably: WAL, ``synchronous=FULL``)
at the end of the atomic batch that moves the canonical-head pointer, i.e. once
per mined block. Everything a block references (its header, body, receipts and
state trie nodes, written by earlier batches of the same block) is in that
commit or an earlier one, so after a crash (kill -9 included) the file holds a
consistent chain at the last committed head; writes after it (a half-built
block) are simply gone. Batches that do not move the head (state persisted
while a block is being built) join the open transaction without a commit of
their own: an fsync per block, not one per py-evm batch (about 7 per
transaction).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from eth.abc import AtomicWriteBatchAPI
from eth.db.atomic import AtomicDB, AtomicDBWriteBatch
from eth.db.backends.base import BaseDB
from eth.db.schema import SchemaV1

_HEAD_KEY = SchemaV1.make_canonical_head_hash_lookup_key()


class SqliteKV(BaseDB):
    """bytes -> bytes table in a SQLite file; writes join the open transaction."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed block survives power loss as well as a killed process. NORMAL
        # (durable=False) still survives a killed process, but not a power loss or OS crash.
        self._conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        self._conn.execute("CREATE TABLE IF NOT EXISTS kv (k BLOB PRIMARY KEY, v BLOB NOT NULL)")
        self._conn.execute("CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL)")
        self._in_tx = False
        #: Set when the open transaction rewrote the canonical-head pointer.
        self.head_moved = False

    def _begin(self) -> None:
        if not self._in_tx:
            self._conn.execute("BEGIN IMMEDIATE")
            self._in_tx = True

    def commit(self) -> None:
        if self._in_tx:
            self._conn.execute("COMMIT")
            self._in_tx = False
        self.head_moved = False

    def __getitem__(self, key: bytes) -> bytes:
        row = self._conn.execute("SELECT v FROM kv WHERE k=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._begin()
        if key == _HEAD_KEY:
            self.head_moved = True
        self._conn.execute("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", (key, value))

    def __delitem__(self, key: bytes) -> None:
        self._begin()
        cur = self._conn.execute("DELETE FROM kv WHERE k=?", (key,))
        if cur.rowcount == 0:
            raise KeyError(key)

    def _exists(self, key: bytes) -> bool:
        return self._conn.execute("SELECT 1 FROM kv WHERE k=?", (key,)).fetchone() is not None

    def get_meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value durably (joins and commits the open transaction)."""
        self._begin()
        self._conn.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (key, value))
        self.commit()

    def close(self) -> None:
        # Uncommitted writes are, by design, those of no finished block: drop them.
        if self._in_tx:
            self._conn.execute("ROLLBACK")
            self._in_tx = False
        self.head_moved = False
        self._conn.close()


class SqliteAtomicDB(AtomicDB):
    """py-evm ``AtomicDB`` whose atomic batches are SQLite commits."""

    wrapped_db: SqliteKV

    def __init__(self, kv: SqliteKV) -> None:
        super().__init__(kv)

    @contextmanager
    def atomic_batch(self) -> Iterator[AtomicWriteBatchAPI]:
        with AtomicDBWriteBatch._commit_unless_raises(self) as batch:
            yield batch
        # Reached only when the batch was applied. If it moved the head, make the
        # new head durable together with everything written before it.
        if self.wrapped_db.head_moved:
            self.wrapped_db.commit()
