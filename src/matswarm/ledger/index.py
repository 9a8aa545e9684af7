"""SQLite index of the ledger contract's events, so history queries never scan the chain.

The index is a cache: it can always be rebuilt from the chain. It records the
last indexed block and that block's hash; if the chain no longer has that hash
(a dev chain was reset, or a reorg on a chain without instant finality) the
index is dropped and rebuilt. With Besu/QBFT blocks are final at once, so this
never happens in production.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from hexbytes import HexBytes

from .types import LedgerEvent


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class EventIndex:
    """Decoded events of one contract on one chain, in chain order."""

    def __init__(self, path: str | Path, *, chain_id: int, address: str, start_block: int) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            # A cache of the chain: a commit lost to a power cut is re-indexed from the chain
            # (WAL keeps the file consistent), so no fsync per commit.
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS events (
                block INTEGER NOT NULL, log_index INTEGER NOT NULL, tx_hash TEXT NOT NULL,
                name TEXT NOT NULL, task TEXT, round INTEGER, args TEXT NOT NULL,
                PRIMARY KEY (block, log_index));
            CREATE INDEX IF NOT EXISTS events_task ON events (task, block, log_index);
            """
        )
        self.start_block = start_block
        ident = f"{chain_id}:{address.lower()}"
        if self._meta("ident") != ident:
            self._reset(ident)

    def _meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT v FROM meta WHERE k=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _reset(self, ident: str | None = None) -> None:
        ident = ident or self._meta("ident") or ""
        with self._conn:
            self._conn.execute("BEGIN")
            self._conn.execute("DELETE FROM events")
            self._conn.execute("DELETE FROM meta")
            self._conn.execute("INSERT INTO meta VALUES ('ident', ?)", (ident,))

    @property
    def last_block(self) -> int:
        value = self._meta("last_block")
        return self.start_block - 1 if value is None else int(value)

    def sync(
        self,
        head: int,
        block_hash: Callable[[int], str],
        fetch: Callable[[int, int], Sequence[Any]],
        decode: Callable[[Any], LedgerEvent | None],
    ) -> int:
        """Index blocks ``(last_block, head]``; return how many events were added."""
        with self._lock:
            last = self.last_block
            known = self._meta("last_hash")
            if known is not None and (last > head or block_hash(last) != known):
                self._reset()
                last = self.start_block - 1
            if head <= last:
                return 0
            events = [e for e in (decode(log) for log in fetch(last + 1, head)) if e is not None]
            self._append(events, head, block_hash(head))
            return len(events)

    def extend(
        self, number: int, parent_hash: str, head_hash: str, events: Sequence[LedgerEvent]
    ) -> bool:
        """Append block ``number``, given all its events, if the index ends at its parent.

        For the adapter that just mined the block and holds every receipt of it (the
        embedded chain mines exactly the transactions it was given), so the block need not
        be read back. Returns False, changing nothing, when the index is elsewhere: the
        next :meth:`sync` then reads the block from the chain.
        """
        with self._lock:
            if self.last_block != number - 1 or self._meta("last_hash") != parent_hash:
                return False
            self._append(events, number, head_hash)
            return True

    def _append(self, events: Sequence[LedgerEvent], head: int, head_hash: str) -> None:
        self._conn.execute("BEGIN")
        try:
            self._insert(events)
            self._conn.execute(
                "INSERT OR REPLACE INTO meta VALUES ('last_block', ?), ('last_hash', ?)",
                (str(head), head_hash),
            )
            self._conn.execute("COMMIT")
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise

    def _insert(self, events: Iterable[LedgerEvent]) -> None:
        self._conn.executemany(
            "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    e.block_number,
                    e.log_index,
                    e.tx_hash,
                    e.name,
                    e.args.get("taskId"),
                    e.args.get("round"),
                    json.dumps(e.args, sort_keys=True),
                )
                for e in events
            ],
        )

    def query(
        self,
        *,
        task: str | None = None,
        names: Sequence[str] | None = None,
        round: int | None = None,
    ) -> list[LedgerEvent]:
        """Events filtered by task id (0x hex), event names and round, in chain order."""
        sql = "SELECT block, log_index, tx_hash, name, args FROM events WHERE 1=1"
        params: list[Any] = []
        if task is not None:
            sql += " AND task=?"
            params.append(task.lower())
        if round is not None:
            sql += " AND round=?"
            params.append(round)
        if names:
            sql += f" AND name IN ({','.join('?' * len(names))})"
            params.extend(names)
        sql += " ORDER BY block, log_index"
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [
            LedgerEvent(
                name=r[3], block_number=r[0], log_index=r[1], tx_hash=r[2], args=json.loads(r[4])
            )
            for r in rows
        ]

    def close(self) -> None:
        self._conn.close()


def event_from_log(name: str, log: Any) -> LedgerEvent:
    """Turn a web3-decoded log (``process_log`` output) into a :class:`LedgerEvent`."""
    return LedgerEvent(
        name=name,
        block_number=int(log["blockNumber"]),
        log_index=int(log["logIndex"]),
        tx_hash=HexBytes(log["transactionHash"]).to_0x_hex(),
        args=_jsonable(dict(log["args"])),
    )
