"""Chain backends: an embedded, disk-persisted eth-tester chain and any JSON-RPC node.

Both expose the same small surface to :class:`matswarm.ledger.Ledger`: submit a
signed raw transaction and wait for its receipt, read logs of one contract in a
block range, read the chain id, and (dev chains only) move the clock.

Security: the embedded chain is a single-process simulator with **no consensus**;
its operator can rewrite it at will. It is for tests and single-machine demos.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_utils import to_canonical_address
from hexbytes import HexBytes
from web3 import Web3
from web3.datastructures import AttributeDict
from web3.exceptions import TimeExhausted, Web3RPCError
from web3.types import LogReceipt, TxReceipt

from ._abi import checksum
from ._kv import SqliteAtomicDB, SqliteKV
from .errors import ContractRevert, LedgerError, LedgerLocked, TransactionRejected

#: Default chain id of new embedded chains ("mswm"); distinct from eth-tester's
#: fixture id and from anvil/hardhat's 31337 so transactions cannot cross over.
EMBEDDED_CHAIN_ID = 0x6D73776D
_GENESIS_GAS_LIMIT = 30_000_000
#: Gas of an ``eth_call`` (a view or a pre-flight): the transaction gas limit.
CALL_GAS = 6_000_000


def revert_reason(exc: BaseException) -> str:
    """The contract's revert string from web3's or eth-tester's exception."""
    from web3.exceptions import ContractLogicError

    if isinstance(exc, ContractLogicError) and exc.message:
        msg = exc.message
    else:
        msg = str(exc.args[0]) if exc.args else str(exc)
    return msg.removeprefix("execution reverted: ").removeprefix("execution reverted:").strip()


def lock_directory(directory: Path) -> int:
    """Take ``directory/LOCK`` exclusively (``flock``; the OS drops it when the process dies);
    the file descriptor, or :class:`LedgerLocked` if another process holds it."""
    fd = os.open(directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LedgerLocked(f"{directory} is open in another process") from None
    return fd


def unlock_directory(fd: int) -> None:
    """Release a lock taken by :func:`lock_directory`."""
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class Chain(ABC):
    """What the ledger adapter needs from a chain."""

    w3: Web3
    #: Block tag used to pre-flight transactions (``eth_call``) before sending.
    preflight_block: str = "latest"
    #: A batch sent with :meth:`send_raw_transactions` becomes exactly one block, holding
    #: those transactions only (the ledger then indexes its events from the receipts).
    mines_batches: bool = False
    #: ...and executes them in the order given (else producers may reorder senders).
    ordered_batches: bool = False
    #: Base fee 0: transactions carry no fees and accounts need no funds.
    free_gas: bool = False

    @property
    @abstractmethod
    def chain_id(self) -> int:
        """The chain id the connected chain reports now."""

    def send_raw_transaction(self, raw: bytes) -> TxReceipt:
        """Submit a signed transaction and return its receipt once mined (raises if refused)."""
        (outcome,) = self.send_raw_transactions([raw])
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    @abstractmethod
    def send_raw_transactions(self, raws: Sequence[bytes]) -> list[TxReceipt | LedgerError]:
        """Submit signed transactions together; one outcome per transaction, in order.

        An outcome is the receipt once mined (``status`` 0 for a revert) or the
        :class:`LedgerError` that kept that transaction out of the chain
        (:class:`TransactionRejected`: bad chain id, nonce, signature...). One
        refused transaction does not stop the others.
        """

    def next_nonce(self, address: str) -> int:
        """The nonce the next transaction of ``address`` must carry (pending state)."""
        return int(self.w3.eth.get_transaction_count(checksum(address), "pending"))

    def call(self, sender: str, to: str, data: bytes, block: str | int = "latest") -> bytes:
        """``eth_call``: execute without a transaction on the state after ``block``; the
        return data, or :class:`ContractRevert` (function ``eth_call``) with the reason."""
        from web3.exceptions import ContractLogicError

        try:
            out = self.w3.eth.call(
                {
                    "from": checksum(sender),
                    "to": checksum(to),
                    "data": HexBytes(data),
                    "value": 0,
                    "gas": CALL_GAS,
                    "gasPrice": 0,
                },
                block,
            )
        except ContractLogicError as exc:
            raise ContractRevert("eth_call", revert_reason(exc)) from exc
        return bytes(out)

    @abstractmethod
    def get_logs(self, address: str, from_block: int, to_block: int) -> list[LogReceipt]:
        """All logs emitted by ``address`` in ``[from_block, to_block]``, in chain order."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called before a pre-flight call and a send (embedded: refresh the clock)."""

    def advance_time(self, seconds: int) -> None:
        """Move the chain clock forward (development chains only)."""
        raise LedgerError(f"{type(self).__name__} cannot move its clock")

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release resources held by the backend."""

    def block_number(self) -> int:
        return int(self.w3.eth.block_number)

    def block_hash(self, number: int) -> str:
        return HexBytes(self.w3.eth.get_block(number)["hash"]).to_0x_hex()

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- embedded


def _chain_class(chain_id: int) -> type:
    """A py-evm mining chain like eth-tester's, with our chain id and fork."""
    from eth.chains.base import MiningChain
    from eth.consensus import ConsensusApplier, NoProofConsensus
    from eth.vm.forks import CancunVM

    # Same fork as the compiled bytecode's target (compile.EVM_VERSION), so the
    # embedded chain accepts nothing a Cancun production chain would refuse.
    vm_config = ConsensusApplier(NoProofConsensus).amend_vm_configuration(((0, CancunVM),))

    class MatswarmEmbeddedChain(MiningChain):
        vm_configuration = vm_config

        def create_header_from_parent(self, parent_header: Any, **params: Any) -> Any:
            # Constant gas limit, as in eth-tester.
            params["gas_limit"] = parent_header.gas_limit
            return super().create_header_from_parent(parent_header, **params)

        def get_transaction_builder(self) -> Any:
            return super().get_vm().get_transaction_builder()

    MatswarmEmbeddedChain.chain_id = chain_id
    return MatswarmEmbeddedChain


def _tester_backend(chain: Any) -> Any:
    from eth_tester import PyEVMBackend

    class _Backend(PyEVMBackend):
        """eth-tester's backend over a chain we built (and persist) ourselves."""

        def __init__(self, chain: Any) -> None:  # no in-memory genesis, no dev accounts
            self.chain = chain
            self.account_keys = ()

    return _Backend(chain)


def _log_dict(
    log: Any, number: int, block_hash: bytes, tx_hash: bytes, tx_index: int, log_index: int
) -> LogReceipt:
    """A py-evm log entry as web3 returns it from a node."""
    return AttributeDict(
        {
            "address": checksum(log.address),
            "topics": [HexBytes(t.to_bytes(32, "big")) for t in log.topics],
            "data": HexBytes(log.data),
            "blockNumber": number,
            "blockHash": HexBytes(block_hash),
            "transactionHash": HexBytes(tx_hash),
            "transactionIndex": tx_index,
            "logIndex": log_index,
            "removed": False,
        }
    )


#: ``Error(string)``: what Vyper's ``assert cond, "reason"`` reverts with.
_ERROR_SELECTOR = bytes.fromhex("08c379a0")


def _revert_string(computation: Any) -> str:
    """The revert reason of a failed py-evm computation ("" when there is none)."""
    from eth_abi import decode as abi_decode

    data = bytes(computation.output)
    if data[:4] == _ERROR_SELECTOR:
        try:
            return str(abi_decode(["string"], data[4:])[0])
        except Exception:
            pass
    if data:
        return "0x" + data.hex()
    error = computation.error
    return type(error).__name__ + (f": {error}" if str(error) else "")


class EmbeddedChain(Chain):
    """In-process eth-tester + py-evm chain persisted in ``directory``.

    Every mined block is one durable SQLite commit (see ``_kv``), so the chain
    survives a restart or a killed process (and, unless ``durable=False``, a power
    loss: each commit is fsynced). One process at a time may open a
    directory (an exclusive ``flock``; the OS drops it when the process dies).
    Gas is free (base fee 0, as on a Besu network with ``zeroBaseFee``), so org
    accounts need no funding. There is no consensus: see the package docstring.
    """

    preflight_block = "pending"
    mines_batches = True
    ordered_batches = True
    free_gas = True

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        chain_id: int | None = None,
        durable: bool = True,
    ) -> None:
        from eth_tester import EthereumTester
        from web3.providers.eth_tester import EthereumTesterProvider
        from web3.providers.eth_tester.defaults import API_ENDPOINTS, static_return

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_directory(self.directory)
        try:
            self._kv = SqliteKV(self.directory / "chain.sqlite", durable=durable)
            stored = self._kv.get_meta("chain_id")
            if stored is not None and chain_id is not None and int(stored) != chain_id:
                raise LedgerError(
                    f"{self.directory} holds chain id {stored}, not the requested {chain_id}"
                )
            self._chain_id = int(stored) if stored is not None else (chain_id or EMBEDDED_CHAIN_ID)
            self._time_offset = int(self._kv.get_meta("time_offset") or 0)
            cls = _chain_class(self._chain_id)
            db = SqliteAtomicDB(self._kv)
            if stored is None:
                self.chain = self._genesis(cls, db)
            else:
                self.chain = cls(db)
        except BaseException:
            self._release_lock()
            raise
        self._head_state: tuple[bytes, Any] | None = None
        #: Next nonce per sender, kept as blocks are mined: this process is the chain's only
        #: writer (the directory's lock), so a sender's nonce changes only in our own blocks.
        self._nonces: dict[bytes, int] = {}
        self._tester = EthereumTester(_tester_backend(self.chain))
        endpoints = {k: dict(v) for k, v in API_ENDPOINTS.items()}
        endpoints["eth"]["chainId"] = static_return(self._chain_id)
        self.w3 = Web3(EthereumTesterProvider(self._tester, api_endpoints=endpoints))
        # eth-tester needs a sender even for eth_call; gas is free, any address will do.
        self.w3.eth.default_account = checksum(b"\x00" * 20)

    def _genesis(self, cls: Any, db: SqliteAtomicDB) -> Any:
        from eth.constants import BLANK_ROOT_HASH
        from eth_tester.backends.pyevm.main import get_default_genesis_params

        # A crash during an earlier creation may have left orphan rows: start clean.
        self._kv._conn.execute("DELETE FROM kv")
        params = get_default_genesis_params(
            {"gas_limit": _GENESIS_GAS_LIMIT, "timestamp": int(time.time())}
        )
        params["base_fee_per_gas"] = 0
        params.setdefault("receipt_root", BLANK_ROOT_HASH)
        chain = cls.from_genesis(db, params, {})
        self._kv.commit()
        # Written last: its presence marks a complete genesis.
        self._kv.set_meta("chain_id", str(self._chain_id))
        return chain

    @property
    def chain_id(self) -> int:
        return self._chain_id

    def _now(self) -> int:
        return int(time.time()) + self._time_offset

    def prepare(self) -> None:
        # py-evm stamps the pending block when the previous one is mined, so an
        # idle chain would execute with a stale block.timestamp (deadlines!).
        pending = self.chain.header
        parent = self.chain.get_canonical_head()
        ts = max(parent.timestamp + 1, self._now())
        if pending.gas_used == 0 and pending.timestamp != ts:
            self.chain.header = pending.copy(timestamp=ts)

    def send_raw_transactions(self, raws: Sequence[bytes]) -> list[TxReceipt | LedgerError]:
        """Apply the transactions in order to the pending block and mine it: one block.

        This is what eth-tester's auto-mining does per transaction (apply, then
        mine), with the block sealed once for all of them: one state root, one
        receipts trie, one durable SQLite commit. A transaction the chain
        refuses (chain id, nonce, signature, gas) gets a
        :class:`TransactionRejected` in its slot and does not enter the block;
        a revert is mined with ``status`` 0 and the contract's reason in
        ``revertReason``. A crash before the commit loses the whole block and
        nothing else (see ``_kv``).
        """
        from eth_utils import ValidationError

        if not raws:
            return []
        self.prepare()
        vm = self.chain.get_vm(self.chain.header)
        base = vm.get_block()
        if base.transactions:  # pragma: no cover - only our own code mines this chain
            raise LedgerError("the pending block already holds transactions")
        header = base.header
        builder = vm.get_transaction_builder()
        outcomes: list[TxReceipt | LedgerError | None] = [None] * len(raws)
        applied: list[tuple[int, Any, Any, Any]] = []
        for slot, raw in enumerate(raws):
            try:
                tx = self._decode_checked(raw, builder)
                receipt, computation = vm.apply_transaction(header, tx)
            except TransactionRejected as exc:
                outcomes[slot] = exc
                continue
            except ValidationError as exc:
                outcomes[slot] = TransactionRejected(str(exc))
                continue
            header = vm.increment_blob_gas_used(vm.add_receipt_to_header(header, receipt), tx)
            applied.append((slot, tx, receipt, computation))
        if applied:
            block = self._mine(vm, header, [a[1] for a in applied], [a[2] for a in applied])
            log_index = 0
            gas_before = 0
            for tx_index, (slot, tx, receipt, computation) in enumerate(applied):
                outcomes[slot], log_index = self._receipt(
                    block, tx_index, tx, receipt, computation, gas_before, log_index
                )
                gas_before = receipt.gas_used
                self._nonces[tx.sender] = tx.nonce + 1
        return [o for o in outcomes if o is not None]

    def _mine(self, vm: Any, header: Any, txs: list[Any], receipts: list[Any]) -> Any:
        """Seal the pending block (as ``MiningChain.mine_block``) and make it the head."""
        from eth.constants import ZERO_ADDRESS

        filled = vm.set_block_transactions_and_withdrawals(vm.get_block(), header, txs, receipts)
        # prevrandao is random on a post-merge chain, as eth-tester does it.
        block = vm.mine_block(filled, coinbase=ZERO_ADDRESS, mix_hash=os.urandom(32)).block
        self.chain.validate_block(block)
        # Moves the canonical head: the one SQLite commit of this block (see ``_kv``).
        self.chain.chaindb.persist_block(block)
        self.chain.header = self.chain.create_header_from_parent(block.header)
        return block

    @staticmethod
    def _receipt(
        block: Any,
        tx_index: int,
        tx: Any,
        receipt: Any,
        computation: Any,
        gas_before: int,
        log_index: int,
    ) -> tuple[TxReceipt, int]:
        """A web3-style receipt (block-wide log indices, as a node numbers them)."""
        from eth._utils.address import generate_contract_address

        logs = []
        for log in receipt.logs:
            logs.append(_log_dict(log, block.number, block.hash, tx.hash, tx_index, log_index))
            log_index += 1
        fields: dict[str, Any] = {
            "transactionHash": HexBytes(tx.hash),
            "transactionIndex": tx_index,
            "blockHash": HexBytes(block.hash),
            "blockNumber": block.number,
            "from": checksum(tx.sender),
            "to": checksum(tx.to) if tx.to else None,
            "contractAddress": (
                None if tx.to else checksum(generate_contract_address(tx.sender, tx.nonce))
            ),
            "cumulativeGasUsed": receipt.gas_used,
            "gasUsed": receipt.gas_used - gas_before,
            "status": int.from_bytes(receipt.state_root or b"\x00", "big"),
            "logs": logs,
            "type": tx.type_id if tx.type_id is not None else 0,
        }
        if computation.is_error:
            fields["revertReason"] = _revert_string(computation)
        return AttributeDict(fields), log_index

    def _decode_checked(self, raw: bytes, builder: Any) -> Any:
        # eth-tester would mine a transaction signed for another chain; a real
        # node refuses it ("invalid chain id for signer"), and so do we.
        from eth_utils import ValidationError

        try:
            tx = builder.decode(raw)
        except (ValidationError, ValueError) as exc:
            raise TransactionRejected(f"undecodable transaction: {exc}") from exc
        tx_chain = getattr(tx, "chain_id", None)
        if tx_chain != self._chain_id:
            raise TransactionRejected(
                f"invalid chain id for signer: transaction for {tx_chain}, "
                f"chain is {self._chain_id}"
            )
        return tx

    def next_nonce(self, address: str) -> int:
        key = to_canonical_address(address)
        known = self._nonces.get(key)
        if known is not None:
            return known
        # The pending block is always empty between our calls: the head's state, read
        # through one py-evm state object per head (building one costs more than the read).
        head = self.chain.header.parent_hash
        if self._head_state is None or self._head_state[0] != head:
            self._head_state = (head, self.chain.get_vm().state)
        nonce = int(self._head_state[1].get_nonce(key))
        self._nonces[key] = nonce
        return nonce

    def call(self, sender: str, to: str, data: bytes, block: str | int = "latest") -> bytes:
        """Execute on py-evm directly (what eth-tester's ``eth_call`` does, without its
        request normalisation): a spoofed, gas-free transaction on the state after ``block``
        (``latest`` and ``pending`` are the same here: the pending block is empty)."""
        from eth.vm.spoof import SpoofTransaction

        if block in ("latest", "pending"):
            header = self.chain.get_canonical_head()
        else:
            header = self.chain.get_canonical_block_header_by_number(int(block))
        vm = self.chain.get_vm(header)
        origin = to_canonical_address(sender)
        with vm.in_costless_state() as state:
            tx = vm.get_transaction_builder().create_unsigned_transaction(
                nonce=state.get_nonce(origin),
                gas_price=0,
                gas=CALL_GAS,
                to=to_canonical_address(to),
                value=0,
                data=bytes(data),
            )
            computation = state.costless_execute_transaction(SpoofTransaction(tx, from_=origin))
        if computation.is_error:
            raise ContractRevert("eth_call", _revert_string(computation))
        return bytes(computation.output)

    def get_logs(self, address: str, from_block: int, to_block: int) -> list[LogReceipt]:
        # Walk py-evm's receipts directly: eth-tester's eth_getLogs looks each
        # receipt up by scanning back from the head, quadratic in chain length.
        target = to_canonical_address(address)
        head = self.chain.get_canonical_head().block_number
        out: list[LogReceipt] = []
        for number in range(max(from_block, 0), min(to_block, head) + 1):
            block = self.chain.get_canonical_block_by_number(number)
            receipts = block.get_receipts(self.chain.chaindb)
            log_index = 0
            for tx_index, (tx, receipt) in enumerate(
                zip(block.transactions, receipts, strict=True)
            ):
                for log in receipt.logs:
                    if log.address == target:
                        out.append(_log_dict(log, number, block.hash, tx.hash, tx_index, log_index))
                    log_index += 1
        return out

    def block_number(self) -> int:
        return int(self.chain.get_canonical_head().block_number)

    def block_hash(self, number: int) -> str:
        return HexBytes(self.chain.get_canonical_block_hash(number)).to_0x_hex()

    def advance_time(self, seconds: int) -> None:
        """Mine an empty block ``seconds`` after the latest one; the clock offset persists.

        Relative to the latest block, not the wall clock: block timestamps must
        strictly increase, so a burst of transactions (one block each) runs the
        chain clock ahead of the wall clock by up to one second per block.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        target = max(self.chain.get_canonical_head().timestamp, self._now()) + int(seconds)
        self._time_offset = target - int(time.time())
        self._kv.set_meta("time_offset", str(self._time_offset))
        self.prepare()
        self._tester.mine_blocks(1)

    def get_meta(self, key: str) -> str | None:
        return self._kv.get_meta(key)

    def set_meta(self, key: str, value: str) -> None:
        self._kv.set_meta(key, value)

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            unlock_directory(self._lock_fd)
            self._lock_fd = -1

    def close(self) -> None:
        if self._lock_fd >= 0:
            self._kv.close()
            self._release_lock()


# --------------------------------------------------------------------------- JSON-RPC


class RpcChain(Chain):
    """Any EVM JSON-RPC node: anvil for tests, Hyperledger Besu (QBFT) in production.

    ``receipt_timeout`` bounds the wait for a transaction to be mined;
    ``poll_interval`` is the receipt polling period (QBFT blocks come every 1-5 s,
    anvil mines at once).
    """

    def __init__(
        self, url: str, *, receipt_timeout: float = 120.0, poll_interval: float = 0.05
    ) -> None:
        self.url = url
        self.w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self.log_chunk = 5_000

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    def send_raw_transactions(self, raws: Sequence[bytes]) -> list[TxReceipt | LedgerError]:
        """Send every transaction to the node's pool, then wait for each receipt.

        The node decides the blocks: on anvil (automine) each transaction gets
        its own; on Besu/QBFT they share the next block(s). Pipelining saves a
        block interval per transaction over sending them one by one.
        """
        sent: list[HexBytes | LedgerError] = []
        for raw in raws:
            try:
                sent.append(HexBytes(self.w3.eth.send_raw_transaction(raw)))
            except Web3RPCError as exc:
                sent.append(TransactionRejected(str(exc)))
        out: list[TxReceipt | LedgerError] = []
        for tx_hash in sent:
            if isinstance(tx_hash, LedgerError):
                out.append(tx_hash)
                continue
            try:
                out.append(
                    self.w3.eth.wait_for_transaction_receipt(
                        tx_hash, timeout=self.receipt_timeout, poll_latency=self.poll_interval
                    )
                )
            except TimeExhausted:
                out.append(LedgerError(f"transaction {tx_hash.to_0x_hex()} not mined in time"))
        return out

    def get_logs(self, address: str, from_block: int, to_block: int) -> list[LogReceipt]:
        out: list[LogReceipt] = []
        start = max(from_block, 0)
        while start <= to_block:
            end = min(to_block, start + self.log_chunk - 1)
            out.extend(
                self.w3.eth.get_logs(
                    {"address": checksum(address), "fromBlock": start, "toBlock": end}
                )
            )
            start = end + 1
        return out

    def advance_time(self, seconds: int) -> None:
        """``evm_increaseTime`` + ``evm_mine``: anvil and hardhat only, never Besu."""
        self.w3.provider.make_request("evm_increaseTime", [int(seconds)])
        self.w3.provider.make_request("evm_mine", [])

    def fund(self, address: str, wei: int = 10**21) -> None:
        """Give ``address`` a balance on a development node (``anvil_setBalance``)."""
        resp = self.w3.provider.make_request("anvil_setBalance", [checksum(address), hex(wei)])
        if "error" in resp:
            raise LedgerError(f"cannot fund {address}: {resp['error']}")
