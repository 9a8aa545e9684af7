"""A read-only view of an embedded chain that another process is writing.

:class:`~matswarm.ledger.chains.EmbeddedChain` takes an exclusive ``flock`` on its directory:
one writer (``matswarm task run-local``) at a time. A reader (the dashboard, an auditor's
``verify``) must neither wait for that lock nor write anything, so this module opens the
chain's SQLite file itself, read-only (``mode=ro`` and ``PRAGMA query_only``), and builds the
same py-evm chain object over it. No lock is taken and no row is written (SQLite may create
its empty ``-wal``/``-shm`` sidecar files when the writer has removed them): WAL lets a
reader see the last committed state while the writer works, and the writer commits once per
mined block (see ``_kv``), so a reader only ever sees whole blocks.

Wrap a burst of reads in :meth:`ReadOnlyEmbeddedChain.snapshot` to see one block height
throughout (one SQLite read transaction); outside it each read sees the latest committed block.
The view's event index is its own, in memory: the writer's
``index.sqlite`` is a cache the reader has no business writing to.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from eth.db.atomic import AtomicDB
from eth.db.backends.base import BaseDB

from .chains import EmbeddedChain, _chain_class
from .errors import LedgerError


class ReadOnlyError(LedgerError):
    """Something tried to write through a read-only chain view."""


class ReadOnlyKV(BaseDB):
    """The embedded chain's ``kv`` table, opened read-only; every write raises."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise LedgerError(f"no embedded chain at {path}")
        uri = f"file:{quote(str(path.resolve()))}?mode=ro"
        self._conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA query_only=ON")
        self._lock = threading.RLock()
        self._depth = 0

    def __getitem__(self, key: bytes) -> bytes:
        with self._lock:
            row = self._conn.execute("SELECT v FROM kv WHERE k=?", (key,)).fetchone()
        if row is None:
            raise KeyError(key)
        return bytes(row[0])

    def _exists(self, key: bytes) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM kv WHERE k=?", (key,)).fetchone() is not None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise ReadOnlyError("the embedded chain is open read-only here")

    def __delitem__(self, key: bytes) -> None:
        raise ReadOnlyError("the embedded chain is open read-only here")

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: every read inside sees the same committed block."""
        with self._lock:
            if self._depth == 0:
                self._conn.execute("BEGIN")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self._conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class ReadOnlyEmbeddedChain(EmbeddedChain):
    """An :class:`EmbeddedChain` over ``directory``, opened without its lock, for reading.

    Views (``eth_call``), logs, block numbers and hashes work as on the writer's chain;
    sending a transaction or moving the clock raises :class:`ReadOnlyError`.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:  # no super(): no lock
        self.directory = Path(directory)
        self._lock_fd = -1
        self._kv = ReadOnlyKV(self.directory / "chain.sqlite")
        try:
            stored = self._kv.get_meta("chain_id")
            if stored is None:
                raise LedgerError(f"{self.directory} holds no complete embedded chain yet")
            self._chain_id = int(stored)
            self._time_offset = int(self._kv.get_meta("time_offset") or 0)
            self.chain = _chain_class(self._chain_id)(AtomicDB(self._kv))
        except BaseException:
            self._kv.close()
            raise
        self._head_state = None

    def snapshot(self) -> Iterator[None]:
        return self._kv.snapshot()  # type: ignore[return-value]

    def deployment(self) -> tuple[str, int]:
        """The ledger contract's address and deployment block, as the writer recorded them."""
        stored = self._kv.get_meta("deployment")
        if stored is None:
            raise LedgerError(f"{self.directory}: no ledger contract deployed yet")
        info = json.loads(stored)
        return info["address"], int(info["block"])

    def prepare(self) -> None:
        pass  # the pending header is the writer's business

    def send_raw_transactions(self, raws):  # type: ignore[no-untyped-def]
        raise ReadOnlyError("cannot send transactions through a read-only chain view")

    def advance_time(self, seconds: int) -> None:
        raise ReadOnlyError("cannot move the clock of a read-only chain view")

    def set_meta(self, key: str, value: str) -> None:
        raise ReadOnlyError("the embedded chain is open read-only here")

    @property
    def w3(self):  # type: ignore[override]
        raise ReadOnlyError("a read-only chain view has no web3 provider")

    def close(self) -> None:
        self._kv.close()


def open_embedded_readonly(directory: str | os.PathLike[str]):  # -> Ledger
    """A read-only :class:`~matswarm.ledger.Ledger` over the embedded chain in ``directory``
    (another process may be writing it); its event index lives in memory."""
    from .ledger import Ledger

    chain = ReadOnlyEmbeddedChain(directory)
    try:
        address, block = chain.deployment()
        ledger = Ledger(chain, address, None, start_block=block)
    except BaseException:
        chain.close()
        raise
    ledger._owns_chain = True
    return ledger
