"""The embedded chain on anvil: a revm (Rust) EVM node that this process starts and owns.

Why: py-evm interprets every opcode in Python; a trust-layer round (one ``voteAndCommit`` per
org) costs it about 3.7 ms per transaction plus the block's state root, 55 ms at 15 orgs.
anvil executes the same bytecode natively and seals real blocks with state roots; the round
costs this process a few ms of JSON-RPC and the node a few more (``bench/ledger_gas.py
--backend anvil-embedded``; the comparison is in ``PRODUCTION.md``).

What it is: :class:`AnvilChain` starts ``anvil`` (see :mod:`.anvil`) on 127.0.0.1 with the
chain's state file in ``directory`` (``--state``: loaded at start, written when the chain is
closed), mining on demand only (``--no-mining``): a batch of transactions is submitted, then
mined as **one block** (``evm_mine``), and its receipts are read in one call
(``eth_getBlockReceipts``). Gas is free (base fee 0), as on the py-evm embedded chain. Like
:class:`~matswarm.ledger.chains.EmbeddedChain` it takes the directory's lock, so one process
writes the chain, which lets it count nonces itself.

What it is not: durable per block. The state file is written when the chain is closed (and
every ``state_interval`` seconds if set); a killed process loses the blocks since. Use it
where a run is re-run rather than resumed (experiments, the demo: ``durable=False``); a
consortium home that must survive ``kill -9`` keeps the py-evm chain, which commits every
block to SQLite. anvil's CPU per block also grows with the chain's state (it re-derives the
state root from all of it), about 3 ms at the start to 8 ms after 150 rounds of 15 orgs.
As everywhere here: no consensus, see the package docstring.

JSON-RPC is spoken directly (``http.client``, one kept-alive connection, batched requests):
web3's middleware stack costs more CPU per round than the node's execution.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_utils import to_canonical_address
from hexbytes import HexBytes
from web3.datastructures import AttributeDict
from web3.types import LogReceipt, TxReceipt

from ._abi import checksum
from .anvil import AnvilNode
from .chains import EMBEDDED_CHAIN_ID, RpcChain, lock_directory, unlock_directory
from .errors import LedgerError, TransactionRejected

STATE_FILE = "anvil-state.json"
META_FILE = "meta.json"


class _Connection(http.client.HTTPConnection):
    """Keep-alive HTTP to the node with Nagle off: http.client writes the headers and the body
    separately, and Nagle + delayed ACKs would hold the body for tens of ms per request."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def embedded_backend(preference: str = "auto") -> str:
    """The embedded chain to use: ``"py-evm"``, ``"anvil"``, or ``"auto"`` (anvil when it is
    installed, see :func:`~matswarm.ledger.anvil.find_anvil`; else py-evm)."""
    from .anvil import find_anvil

    if preference not in ("auto", "py-evm", "anvil"):
        raise ValueError(f"chain must be 'auto', 'py-evm' or 'anvil', got {preference!r}")
    if preference == "auto":
        return "anvil" if find_anvil() else "py-evm"
    return preference


def _int(value: str | None) -> int:
    return int(value, 16) if value else 0


def _log(raw: dict[str, Any]) -> LogReceipt:
    return AttributeDict(
        {
            "address": checksum(raw["address"]),
            "topics": [HexBytes(t) for t in raw["topics"]],
            "data": HexBytes(raw["data"]),
            "blockNumber": _int(raw["blockNumber"]),
            "blockHash": HexBytes(raw["blockHash"]),
            "transactionHash": HexBytes(raw["transactionHash"]),
            "transactionIndex": _int(raw["transactionIndex"]),
            "logIndex": _int(raw["logIndex"]),
            "removed": False,
        }
    )


def _receipt(raw: dict[str, Any]) -> TxReceipt:
    """A node's JSON receipt as web3 would return it (the fields the ledger reads)."""
    contract = raw.get("contractAddress")
    return AttributeDict(
        {
            "transactionHash": HexBytes(raw["transactionHash"]),
            "transactionIndex": _int(raw["transactionIndex"]),
            "blockHash": HexBytes(raw["blockHash"]),
            "blockNumber": _int(raw["blockNumber"]),
            "from": checksum(raw["from"]),
            "to": checksum(raw["to"]) if raw.get("to") else None,
            "contractAddress": checksum(contract) if contract else None,
            "cumulativeGasUsed": _int(raw["cumulativeGasUsed"]),
            "gasUsed": _int(raw["gasUsed"]),
            "status": _int(raw["status"]),
            "logs": [_log(entry) for entry in raw["logs"]],
            "type": _int(raw.get("type")),
        }
    )


class AnvilChain(RpcChain):
    """An anvil node owned by this process, with its state in ``directory`` (module docstring).

    Args:
        directory: holds the state file, the chain's metadata and the lock.
        chain_id: for a new chain (default ``EMBEDDED_CHAIN_ID``); an existing one keeps its own.
        state_interval: also write the state file every this many seconds (anvil's
            ``--state-interval``); default: only when closed.
    """

    mines_batches = True
    free_gas = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        chain_id: int | None = None,
        state_interval: int | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self.directory)
        self._node: AnvilNode | None = None
        try:
            self._meta = self._read_meta()
            stored = self._meta.get("chain_id")
            if stored is not None and chain_id is not None and int(stored) != chain_id:
                raise LedgerError(
                    f"{self.directory} holds chain id {stored}, not the requested {chain_id}"
                )
            self._chain_id = int(stored) if stored is not None else (chain_id or EMBEDDED_CHAIN_ID)
            args = ["--state", str(self.directory / STATE_FILE), "--no-mining"]
            args += ["--base-fee", "0", "--no-priority-fee", "--gas-price", "0"]
            if state_interval:
                args += ["--state-interval", str(int(state_interval))]
            self._node = AnvilNode(
                chain_id=self._chain_id, extra_args=args, die_with_parent=True
            ).start()
            super().__init__(self._node.url)
            self._conn = _Connection("127.0.0.1", self._node.port, timeout=60)
            #: The head block: this process is the only one that mines here.
            self._head: int | None = None
            self._nonces: dict[bytes, int] = {}
            self._hashes: dict[int, str] = {}
            if stored is None:
                self.set_meta("chain_id", str(self._chain_id))
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------
    def _read_meta(self) -> dict[str, str]:
        path = self.directory / META_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def get_meta(self, key: str) -> str | None:
        return self._meta.get(key)

    def set_meta(self, key: str, value: str) -> None:
        """Set a metadata value (written at once: a new file renamed over the old one)."""
        self._meta[key] = value
        tmp = self.directory / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self._meta, indent=1, sort_keys=True))
        os.replace(tmp, self.directory / META_FILE)

    def _rpc(self, payload: dict[str, Any] | list[dict[str, Any]]) -> Any:
        self._conn.request("POST", "/", json.dumps(payload), {"Content-Type": "application/json"})
        return json.loads(self._conn.getresponse().read())

    def _call(self, method: str, *params: Any) -> Any:
        out = self._rpc({"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)})
        if "error" in out:
            raise LedgerError(f"{method}: {out['error'].get('message', out['error'])}")
        return out["result"]

    # -- the Chain surface ------------------------------------------------------------------
    @property
    def chain_id(self) -> int:
        return self._chain_id  # fixed at start (--chain-id), and no one else writes here

    def next_nonce(self, address: str) -> int:
        key = to_canonical_address(address)
        if key not in self._nonces:
            self._nonces[key] = _int(
                self._call("eth_getTransactionCount", checksum(address), "latest")
            )
        return self._nonces[key]

    def send_raw_transactions(self, raws: Sequence[bytes]) -> list[TxReceipt | LedgerError]:
        """Submit the transactions, mine them as one block, return their receipts in order.

        A transaction the node refuses (chain id, nonce, signature) gets a
        :class:`TransactionRejected` in its slot; a revert is mined with ``status`` 0.
        """
        if not raws:
            return []
        answers = self._rpc(
            [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "eth_sendRawTransaction",
                    "params": ["0x" + bytes(raw).hex()],
                }
                for i, raw in enumerate(raws)
            ]
        )
        by_id = {a["id"]: a for a in answers}
        sent: list[str | LedgerError] = []
        for i in range(len(raws)):
            answer = by_id[i]
            if "error" in answer:
                sent.append(TransactionRejected(str(answer["error"].get("message"))))
            else:
                sent.append(str(answer["result"]).lower())
        if not any(isinstance(s, str) for s in sent):
            return list(sent)  # type: ignore[arg-type]
        self._mine()
        receipts = {
            str(r["transactionHash"]).lower(): _receipt(r)
            for r in self._call("eth_getBlockReceipts", "latest")
        }
        out: list[TxReceipt | LedgerError] = []
        for s in sent:
            if isinstance(s, LedgerError):
                out.append(s)
                continue
            receipt = receipts.get(s)
            if receipt is None:
                out.append(LedgerError(f"transaction {s} was accepted but not mined"))
                continue
            key = to_canonical_address(receipt["from"])
            if key in self._nonces:  # else read from the node when next asked
                self._nonces[key] += 1
            self._hashes = {int(receipt["blockNumber"]): receipt["blockHash"].to_0x_hex()}
            out.append(receipt)
        return out

    def node_cpu_seconds(self) -> float:
        """CPU time the anvil node has used so far (for benchmarks: it is not this process's)."""
        return self._node.cpu_seconds() if self._node is not None else 0.0

    def block_number(self) -> int:
        if self._head is None:
            self._head = _int(self._call("eth_blockNumber"))
        return self._head

    def _mine(self) -> None:
        self._call("evm_mine")
        self._head = None if self._head is None else self._head + 1

    def block_hash(self, number: int) -> str:
        known = self._hashes.get(number)
        if known is None:
            known = str(self._call("eth_getBlockByNumber", hex(number), False)["hash"])
            self._hashes = {number: known}  # the parent of the next block is asked next
        return known

    def advance_time(self, seconds: int) -> None:
        """``evm_increaseTime`` then mine an empty block."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._call("evm_increaseTime", int(seconds))
        self._mine()

    def close(self) -> None:
        """Stop the node (it writes the state file on the way out) and release the lock."""
        if self._node is not None:
            self._node.stop()
            self._node = None
        if self._lock_fd >= 0:
            unlock_directory(self._lock_fd)
            self._lock_fd = -1
