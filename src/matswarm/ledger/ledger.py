"""The :class:`Ledger` adapter: matswarm's one public surface over the SwarmLedger contract."""

from __future__ import annotations

import functools
import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3.contract import Contract
from web3.types import TxReceipt

from ._abi import checksum, contract_abi
from .anvil_chain import AnvilChain
from .chains import Chain, EmbeddedChain, RpcChain
from .compile import load_artifact
from .errors import BatchError, ChainIdMismatch, ContractRevert, LedgerError
from .index import EventIndex, event_from_log
from .types import (
    Commitment,
    FinalModelVotes,
    LedgerEvent,
    OrgInfo,
    Report,
    RoundInfo,
    RoundPhase,
    TaskInfo,
    TaskStatus,
    TxResult,
)

AccountLike = LocalAccount | bytes | str
HashLike = bytes | str

#: Gas limit of every call. Unused gas is refunded and permissioned chains run
#: with free gas, so a fixed, generous limit beats estimating (py-evm's estimate
#: is a binary search costing ~20 executions). createTask with 32 participants
#: uses about 1.9 M.
TX_GAS = 6_000_000
DEPLOY_GAS = 8_000_000
_ZERO_ADDRESS = "0x" + "00" * 20
_DEPLOYMENT_KEY = "deployment"


def _as_account(account: AccountLike) -> LocalAccount:
    if isinstance(account, LocalAccount):
        return account
    return Account.from_key(account)


def _b32(value: HashLike, what: str) -> bytes:
    """A 32-byte value from bytes or 0x-hex; raises ValueError naming ``what``."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(raw)}")
    return raw


#: String bounds of the contract (``MAX_CID``, ``MAX_META``, ``MAX_REASON``, ``MAX_KIND``),
#: in UTF-8 bytes.
MAX_CID = 128
MAX_META = 256
MAX_REASON = 256
MAX_KIND = 32


def _text(value: str, limit: int, what: str) -> str:
    """Check a string against the contract's bound here, with a message naming it."""
    if len(value.encode()) > limit:
        raise ValueError(f"{what} is {len(value.encode())} bytes; the contract allows {limit}")
    return value


def _opt(value: bytes) -> bytes | None:
    return None if value == b"\x00" * 32 else bytes(value)


def default_quorum(n: int) -> int:
    """Smallest quorum the contract accepts for ``n`` participants: ceil(2n/3)."""
    return math.ceil(2 * n / 3)


@dataclass(frozen=True)
class TxCall:
    """One contract transaction prepared for a :class:`Ledger` view, not yet signed or sent.

    Made by a view's :attr:`Ledger.tx` builders (same arguments and checks as
    the view's methods); sent with :meth:`Ledger.send`, :meth:`Ledger.send_batch`
    or a :class:`Batch`. It is signed, when sent, by the view's own account.
    """

    ledger: Ledger = field(repr=False)
    function: str
    args: tuple[Any, ...]

    @property
    def sender(self) -> str | None:
        return self.ledger.sender


class Pending:
    """A call queued in a :class:`Batch`; its outcome is known once the batch is sent."""

    def __init__(self, call: TxCall) -> None:
        self.call = call
        self._outcome: TxResult | LedgerError | None = None

    @property
    def done(self) -> bool:
        return self._outcome is not None

    def result(self) -> TxResult:
        """The mined transaction; raises its error if it failed, or if not sent yet."""
        if self._outcome is None:
            raise LedgerError(f"{self.call.function}: the batch has not been sent")
        if isinstance(self._outcome, LedgerError):
            raise self._outcome
        return self._outcome


class Batch:
    """Calls of views of one ledger, collected now and sent together (one block when embedded).

    ::

        with ledger.batch() as batch:
            for org in orgs:
                batch.add(org.tx.commit_update(task, r, update_hash, cid))
        # sent here, on leaving the block without an exception

    or keep a batch across calls and :meth:`send` it when ready. Sending
    follows :meth:`Ledger.send_batch`: every call that can be sent is sent,
    then :class:`BatchError` reports the failures.
    """

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._queue: list[Pending] = []

    def add(self, call: TxCall) -> Pending:
        if call.ledger.chain is not self.ledger.chain:
            raise ValueError(f"{call.function}: the call belongs to a ledger on another chain")
        pending = Pending(call)
        self._queue.append(pending)
        return pending

    def __len__(self) -> int:
        return len(self._queue)

    def __iter__(self) -> Iterator[Pending]:
        return iter(self._queue)

    def send(self) -> list[TxResult]:
        """Send everything queued (and empty the queue); results in the order added."""
        queue, self._queue = self._queue, []
        calls = [p.call for p in queue]
        outcomes = self.ledger._send_all(calls)
        for pending, outcome in zip(queue, outcomes, strict=True):
            pending._outcome = outcome
        if any(isinstance(o, LedgerError) for o in outcomes):
            raise BatchError(calls, outcomes)
        return [o for o in outcomes if isinstance(o, TxResult)]

    def discard(self) -> None:
        """Drop everything queued without sending it."""
        self._queue = []

    def __enter__(self) -> Batch:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.send()
        else:
            self.discard()


class Calls:
    """:class:`TxCall` builders of one view (``ledger.tx``): the arguments and checks of the
    view's transacting methods, without sending anything."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    def _call(self, function: str, *args: Any) -> TxCall:
        return TxCall(self._ledger, function, args)

    def register_org(self, ed25519: HashLike, x25519: HashLike, metadata: str) -> TxCall:
        return self._call(
            "updateOrg",
            _b32(ed25519, "ed25519"),
            _b32(x25519, "x25519"),
            _text(metadata, MAX_META, "metadata"),
        )

    def propose_admission(
        self, candidate: str, ed25519: HashLike, x25519: HashLike, metadata: str
    ) -> TxCall:
        return self._call(
            "proposeAdmission",
            checksum(candidate),
            _b32(ed25519, "ed25519"),
            _b32(x25519, "x25519"),
            _text(metadata, MAX_META, "metadata"),
        )

    def vote_admission(self, candidate: str) -> TxCall:
        return self._call("voteAdmission", checksum(candidate))

    def withdraw_admission(self, candidate: str) -> TxCall:
        return self._call("withdrawAdmission", checksum(candidate))

    def create_task(
        self,
        participants: Sequence[str],
        *,
        spec_hash: HashLike,
        train_code_hash: HashLike,
        agg_code_hash: HashLike,
        rounds: int,
        round_duration_s: int,
        quorum: int | None = None,
    ) -> TxCall:
        parts = [checksum(p) for p in participants]
        q = default_quorum(len(parts)) if quorum is None else int(quorum)
        return self._call(
            "createTask",
            parts,
            q,
            _b32(spec_hash, "spec_hash"),
            _b32(train_code_hash, "train_code_hash"),
            _b32(agg_code_hash, "agg_code_hash"),
            int(rounds),
            int(round_duration_s),
        )

    def commit_update(
        self, task_id: HashLike, round: int, update_hash: HashLike, cid: str
    ) -> TxCall:
        return self._call(
            "commitUpdate",
            _b32(task_id, "task_id"),
            int(round),
            _b32(update_hash, "update_hash"),
            _text(cid, MAX_CID, "cid"),
        )

    def vote_global(self, task_id: HashLike, round: int, global_hash: HashLike) -> TxCall:
        return self._call(
            "voteGlobal", _b32(task_id, "task_id"), int(round), _b32(global_hash, "global_hash")
        )

    def vote_and_commit(
        self,
        task_id: HashLike,
        round: int,
        global_hash: HashLike,
        next_update_hash: HashLike,
        next_cid: str,
    ) -> TxCall:
        return self._call(
            "voteAndCommit",
            _b32(task_id, "task_id"),
            int(round),
            _b32(global_hash, "global_hash"),
            _b32(next_update_hash, "next_update_hash"),
            _text(next_cid, MAX_CID, "next_cid"),
        )

    def close_round(self, task_id: HashLike, round: int) -> TxCall:
        return self._call("closeRound", _b32(task_id, "task_id"), int(round))

    def record_rejection(self, task_id: HashLike, round: int, org: str, reason: str) -> TxCall:
        return self._call(
            "recordRejection",
            _b32(task_id, "task_id"),
            int(round),
            checksum(org),
            _text(reason, MAX_REASON, "reason"),
        )

    def record_report(
        self, task_id: HashLike, round: int, kind: str, digest: HashLike, cid: str = ""
    ) -> TxCall:
        return self._call(
            "recordReport",
            _b32(task_id, "task_id"),
            int(round),
            _text(kind, MAX_KIND, "kind"),
            _b32(digest, "digest"),
            _text(cid, MAX_CID, "cid"),
        )

    def vote_final_model(self, task_id: HashLike, model_hash: HashLike, accept: bool) -> TxCall:
        return self._call(
            "voteFinalModel",
            _b32(task_id, "task_id"),
            _b32(model_hash, "model_hash"),
            bool(accept),
        )

    def set_final_model(self, task_id: HashLike, model_hash: HashLike, cid: str) -> TxCall:
        return self._call(
            "setFinalModel",
            _b32(task_id, "task_id"),
            _b32(model_hash, "model_hash"),
            _text(cid, MAX_CID, "cid"),
        )


class Ledger:
    """Typed client of one deployed SwarmLedger contract, signing as one org.

    Create one with :meth:`embedded` (in-process chain persisted in a directory),
    :meth:`connect` (an existing deployment on any JSON-RPC chain) or
    :meth:`deploy`. :meth:`with_account` gives a view signing as another org
    that shares the chain connection and the event index.

    Every transaction is signed locally with the org's EVM key and sent raw. Before
    signing, the client checks that the connected chain reports the expected chain
    id (given, or the one seen when the ledger was opened) and raises
    :class:`ChainIdMismatch` otherwise. Contract reverts raise
    :class:`ContractRevert` carrying the contract's reason string; by default a
    transaction is first executed as an ``eth_call`` ("pre-flight") so a doomed
    transaction is never sent.

    A ``Ledger`` may be shared by threads; calls are serialised.

    Args:
        chain: an :class:`EmbeddedChain` or :class:`RpcChain`.
        address: the deployed contract.
        account: the org's EVM key (``LocalAccount`` or private key); ``None`` for
            a read-only view.
        chain_id: the chain id to insist on; default: what the chain reports now.
        index_path: SQLite file of the event index; default: in memory.
        start_block: first block to index (the deployment block).
        preflight: ``eth_call`` each transaction before signing it.
    """

    def __init__(
        self,
        chain: Chain,
        address: str,
        account: AccountLike | None = None,
        *,
        chain_id: int | None = None,
        index_path: str | os.PathLike[str] | None = None,
        start_block: int = 0,
        preflight: bool = True,
        _shared: tuple[EventIndex, threading.RLock] | None = None,
    ) -> None:
        self.chain = chain
        self.address = checksum(address)
        self.account = None if account is None else _as_account(account)
        self.expected_chain_id = chain.chain_id if chain_id is None else int(chain_id)
        self.preflight = preflight
        self._abi = contract_abi()
        if _shared is None:
            self._index = EventIndex(
                ":memory:" if index_path is None else Path(index_path),
                chain_id=self.expected_chain_id,
                address=self.address,
                start_block=start_block,
            )
            self._lock = threading.RLock()
            self._owns = True
        else:
            self._index, self._lock = _shared
            self._owns = False
        self._owns_chain = False

    # ------------------------------------------------------------------ factories

    @classmethod
    def deploy(
        cls,
        chain: Chain,
        account: AccountLike,
        founders: Sequence[str] | None = None,
        *,
        chain_id: int | None = None,
        index_path: str | os.PathLike[str] | None = None,
    ) -> Ledger:
        """Deploy a new SwarmLedger whose founding orgs are ``founders`` (default: the deployer)."""
        acct = _as_account(account)
        founders = [checksum(f) for f in (founders or [acct.address])]
        expected = chain.chain_id if chain_id is None else chain_id
        if chain.chain_id != expected:
            raise ChainIdMismatch(expected, chain.chain_id)
        art = load_artifact()
        data = HexBytes(art["bytecode"]) + abi_encode(["address[]"], [founders])
        chain.prepare()
        tx = {
            "data": data,
            "value": 0,
            "gas": DEPLOY_GAS,
            "nonce": chain.next_nonce(acct.address),
            "chainId": expected,
            "type": 2,
            **_fees(chain),
        }
        receipt = chain.send_raw_transaction(acct.sign_transaction(tx).raw_transaction)
        if receipt["status"] != 1:
            raise LedgerError(
                f"deployment failed in tx {HexBytes(receipt['transactionHash']).to_0x_hex()}"
            )
        return cls(
            chain,
            receipt["contractAddress"],
            acct,
            chain_id=expected,
            index_path=index_path,
            start_block=int(receipt["blockNumber"]),
        )

    @classmethod
    def embedded(
        cls,
        directory: str | os.PathLike[str],
        account: AccountLike,
        *,
        founders: Sequence[str] | None = None,
        chain_id: int | None = None,
        durable: bool = True,
        backend: str = "py-evm",
    ) -> Ledger:
        """Open (or create and deploy on first use) the embedded chain in ``directory``.

        The contract address lives in the chain's own database, so a restart
        reopens the same deployment; the event index is ``directory/index.sqlite``.
        ``founders`` only matters on first use. ``durable=False`` skips the fsync per block
        (see :class:`EmbeddedChain`). ``backend`` is ``"py-evm"`` (in-process, every block
        committed to SQLite) or ``"anvil"`` (:class:`~matswarm.ledger.anvil_chain.AnvilChain`:
        a revm node this process owns, several times cheaper per round, its state written
        when closed). Close with :meth:`close`.
        """
        chain: EmbeddedChain | AnvilChain
        if backend == "py-evm":
            chain = EmbeddedChain(directory, chain_id=chain_id, durable=durable)
        elif backend == "anvil":
            chain = AnvilChain(directory, chain_id=chain_id)
        else:
            raise ValueError(f"backend must be 'py-evm' or 'anvil', got {backend!r}")
        try:
            index_path = Path(directory) / "index.sqlite"
            stored = chain.get_meta(_DEPLOYMENT_KEY)
            if stored is None:
                ledger = cls.deploy(chain, account, founders, index_path=index_path)
                chain.set_meta(
                    _DEPLOYMENT_KEY,
                    json.dumps({"address": ledger.address, "block": ledger._index.start_block}),
                )
            else:
                info = json.loads(stored)
                ledger = cls(
                    chain,
                    info["address"],
                    account,
                    index_path=index_path,
                    start_block=info["block"],
                )
        except BaseException:
            chain.close()
            raise
        ledger._owns_chain = True
        return ledger

    @classmethod
    def connect(
        cls,
        url: str,
        address: str,
        account: AccountLike | None,
        *,
        chain_id: int,
        index_path: str | os.PathLike[str] | None = None,
        start_block: int = 0,
    ) -> Ledger:
        """Attach to a deployment on a JSON-RPC chain (anvil, Besu/QBFT, ...).

        ``chain_id`` is mandatory here: it is what the client refuses to deviate from.
        """
        ledger = cls(
            RpcChain(url),
            address,
            account,
            chain_id=chain_id,
            index_path=index_path,
            start_block=start_block,
        )
        ledger._owns_chain = True
        return ledger

    def with_account(self, account: AccountLike | None) -> Ledger:
        """A view of the same ledger signing as ``account`` (shares chain, index and lock)."""
        return Ledger(
            self.chain,
            self.address,
            account,
            chain_id=self.expected_chain_id,
            preflight=self.preflight,
            _shared=(self._index, self._lock),
        )

    def close(self) -> None:
        """Close the event index and, for ledgers opened by a factory, the chain."""
        if self._owns:
            self._index.close()
        if self._owns_chain:
            self.chain.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def sender(self) -> str | None:
        """Address this view signs with (``None`` for a read-only view)."""
        return None if self.account is None else self.account.address

    @functools.cached_property
    def _contract(self) -> Contract:
        """web3's contract object (the hot paths use :mod:`._abi` instead)."""
        return self.chain.w3.eth.contract(address=self.address, abi=load_artifact()["abi"])

    @property
    def tx(self) -> Calls:
        """Builders of this view's transactions, for :meth:`send_batch` or a :class:`Batch`."""
        return Calls(self)

    # ------------------------------------------------------------------ plumbing

    def _view(self, fn: str, *args: Any) -> Any:
        with self._lock:
            try:
                out = self.chain.call(
                    self.sender or _ZERO_ADDRESS, self.address, self._abi.encode_call(fn, args)
                )
            except ContractRevert as exc:
                raise ContractRevert(fn, exc.reason) from exc
            return self._abi.decode_output(fn, out)

    def _check_chain(self) -> None:
        actual = self.chain.chain_id
        if actual != self.expected_chain_id:
            raise ChainIdMismatch(self.expected_chain_id, actual)

    def send(self, call: TxCall) -> TxResult:
        """Sign and send one prepared call (see :attr:`tx`); raise if it fails."""
        (outcome,) = self._send_all([call])
        if isinstance(outcome, LedgerError):
            raise outcome
        return outcome

    def send_batch(self, calls: Sequence[TxCall]) -> list[TxResult]:
        """Send prepared calls of any views of this ledger together; results in call order.

        Each call is signed by its own view's account (one transaction per call,
        nonces counted per sender). On the embedded chain they are mined in
        **one block** (one state root and one durable commit instead of one per
        transaction); on a JSON-RPC chain they are all submitted before the
        first receipt is awaited, so they share the node's next block(s). The
        contract executes them in order, exactly as if sent one by one.

        Every call that can be sent is sent, even when another fails. If any
        failed (reverted, or refused by the chain), :class:`BatchError` is raised
        after the block is mined; its ``outcomes`` hold each call's
        :class:`TxResult` or error, in order. A view with :attr:`preflight` on
        pre-flights its call on the state *before* the batch, so a call that only
        succeeds after an earlier call of the same batch needs ``preflight`` off.
        """
        outcomes = self._send_all(calls)
        if any(isinstance(o, LedgerError) for o in outcomes):
            raise BatchError(list(calls), outcomes)
        return [o for o in outcomes if isinstance(o, TxResult)]

    def batch(self) -> Batch:
        """A :class:`Batch` collecting calls of this ledger's views, sent together."""
        return Batch(self)

    def _send_all(self, calls: Sequence[TxCall]) -> list[TxResult | LedgerError]:
        for call in calls:
            if call.ledger.chain is not self.chain:
                raise ValueError(f"{call.function}: the call belongs to a ledger on another chain")
            if call.ledger.account is None:
                raise LedgerError(f"{call.function}: this Ledger view has no account to sign with")
        if not calls:
            return []
        with self._lock:
            # Checked before anything is signed: a transaction for another chain
            # is never created, let alone sent.
            actual = self.chain.chain_id
            for call in calls:
                if call.ledger.expected_chain_id != actual:
                    raise ChainIdMismatch(call.ledger.expected_chain_id, actual)
            self.chain.prepare()
            fees = _fees(self.chain)
            outcomes: list[TxResult | LedgerError | None] = [None] * len(calls)
            raws: list[bytes] = []
            slots: list[int] = []
            nonces: dict[str, int] = {}
            for i, call in enumerate(calls):
                view, acct = call.ledger, call.ledger.account
                assert acct is not None
                data = view._abi.encode_call(call.function, call.args)
                if view.preflight:
                    try:
                        block = self.chain.preflight_block
                        self.chain.call(acct.address, view.address, data, block)
                    except ContractRevert as exc:
                        outcomes[i] = ContractRevert(call.function, exc.reason)
                        continue
                if acct.address not in nonces:
                    nonces[acct.address] = self.chain.next_nonce(acct.address)
                raws.append(
                    view._sign(
                        nonce=nonces[acct.address],
                        to=view.address,
                        data=data,
                        chain_id=view.expected_chain_id,
                        **fees,
                    )
                )
                nonces[acct.address] += 1
                slots.append(i)
            receipts = self.chain.send_raw_transactions(raws)
            for i, receipt in zip(slots, receipts, strict=True):
                outcomes[i] = calls[i].ledger._result(calls[i], receipt)
            if self.chain.mines_batches:
                self._index_block(receipts, [o for o in outcomes if isinstance(o, TxResult)])
            return [o for o in outcomes if o is not None]

    def _index_block(self, receipts: list[Any], results: list[TxResult]) -> None:
        """Hand the block just mined to the event index (the embedded chain put exactly these
        transactions in it, so ``results`` hold all its events; reverted ones emit none)."""
        mined = [r for r in receipts if not isinstance(r, LedgerError)]
        if not mined:
            return
        number = int(mined[0]["blockNumber"])
        self._index.extend(
            number,
            self.chain.block_hash(number - 1),
            HexBytes(mined[0]["blockHash"]).to_0x_hex(),
            [e for r in results for e in r.events],
        )

    @functools.cached_property
    def _signing_key(self) -> Any:
        from eth_keys import keys

        assert self.account is not None
        return keys.PrivateKey(bytes(self.account.key))

    def _sign(
        self,
        *,
        nonce: int,
        to: str,
        data: bytes,
        chain_id: int,
        maxFeePerGas: int,
        maxPriorityFeePerGas: int,
    ) -> bytes:
        """This view's account signs an EIP-1559 (type 2) contract call; the raw transaction.

        py-evm's transaction builder, not eth-account's dict pipeline: the same bytes
        (RFC 6979 signatures are deterministic; a test compares) at a third of the CPU.
        """
        from eth.vm.forks.london.transactions import LondonTransactionBuilder

        unsigned = LondonTransactionBuilder.new_unsigned_dynamic_fee_transaction(
            chain_id=chain_id,
            nonce=nonce,
            max_priority_fee_per_gas=maxPriorityFeePerGas,
            max_fee_per_gas=maxFeePerGas,
            gas=TX_GAS,
            to=bytes.fromhex(to.removeprefix("0x")),
            value=0,
            data=bytes(data),
            access_list=(),
        )
        return bytes(unsigned.as_signed_transaction(self._signing_key, chain_id=chain_id).encode())

    def _result(self, call: TxCall, receipt: TxReceipt | LedgerError) -> TxResult | LedgerError:
        if isinstance(receipt, LedgerError):
            return receipt
        tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
        if receipt["status"] != 1:
            reason = receipt.get("revertReason") or self._replay_reason(call, receipt)
            return ContractRevert(call.function, reason, tx_hash)
        events = tuple(e for e in (self._decode(log) for log in receipt["logs"]) if e is not None)
        return TxResult(
            tx_hash=tx_hash,
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            events=events,
        )

    def _replay_reason(self, call: TxCall, receipt: Any) -> str:
        # A JSON-RPC receipt carries no reason; re-run the call on the parent
        # block's state (exact unless an earlier transaction of the same block
        # changed the outcome). The embedded chain reports the reason itself.
        assert self.account is not None
        try:
            self.chain.call(
                self.account.address,
                self.address,
                self._abi.encode_call(call.function, call.args),
                int(receipt["blockNumber"]) - 1,
            )
        except ContractRevert as exc:
            return exc.reason
        return "reverted (reason unavailable)"

    def _decode(self, log: Any) -> LedgerEvent | None:
        if checksum(log["address"]) != self.address:
            return None
        decoded = self._abi.decode_event(log["topics"], log["data"])
        if decoded is None:
            return None
        name, args = decoded
        return event_from_log(
            name,
            {
                "args": args,
                "blockNumber": log["blockNumber"],
                "logIndex": log["logIndex"],
                "transactionHash": log["transactionHash"],
            },
        )

    def sync(self) -> int:
        """Bring the event index up to the chain head; returns the number of new events."""
        with self._lock:
            return self._index.sync(
                self.chain.block_number(),
                self.chain.block_hash,
                lambda a, b: self.chain.get_logs(self.address, a, b),
                self._decode,
            )

    # ------------------------------------------------------------------ registry

    def register_org(self, ed25519: HashLike, x25519: HashLike, metadata: str) -> TxResult:
        """Record (or rotate) this admitted org's Ed25519/X25519 public keys and metadata."""
        return self.send(self.tx.register_org(ed25519, x25519, metadata))

    def propose_admission(
        self, candidate: str, ed25519: HashLike, x25519: HashLike, metadata: str
    ) -> bool:
        """Propose ``candidate`` with its public keys; True if it is admitted now.

        A founder's proposal admits directly; a member's counts as its own vote.
        """
        self.send(self.tx.propose_admission(candidate, ed25519, x25519, metadata))
        return self.is_admitted(candidate)

    def vote_admission(self, candidate: str) -> bool:
        """Approve the open proposal for ``candidate``; True if it is admitted now."""
        self.send(self.tx.vote_admission(candidate))
        return self.is_admitted(candidate)

    def withdraw_admission(self, candidate: str) -> TxResult:
        """Withdraw the open proposal for ``candidate`` (its proposer or a founder only)."""
        return self.send(self.tx.withdraw_admission(candidate))

    def is_admitted(self, org: str) -> bool:
        return bool(self._view("isAdmitted", checksum(org)))

    def org_info(self, org: str) -> OrgInfo:
        ed, xk, meta, admitted, founder, at = self._view("getOrg", checksum(org))
        return OrgInfo(checksum(org), bytes(ed), bytes(xk), meta, admitted, founder, at)

    def members(self) -> list[str]:
        """Admitted orgs in admission order."""
        n = self._view("memberCount")
        return [checksum(self._view("memberAt", i)) for i in range(n)]

    # ------------------------------------------------------------------ tasks

    def create_task(
        self,
        participants: Sequence[str],
        *,
        spec_hash: HashLike,
        train_code_hash: HashLike,
        agg_code_hash: HashLike,
        rounds: int,
        round_duration_s: int,
        quorum: int | None = None,
    ) -> bytes:
        """A "sharing" transaction; returns the task id the contract derived.

        ``quorum`` defaults to ceil(2n/3); the contract rejects anything lower.
        """
        res = self.send(
            self.tx.create_task(
                participants,
                spec_hash=spec_hash,
                train_code_hash=train_code_hash,
                agg_code_hash=agg_code_hash,
                rounds=rounds,
                round_duration_s=round_duration_s,
                quorum=quorum,
            )
        )
        ev = res.event("TaskCreated")
        if ev is None:  # pragma: no cover - the contract always emits it
            raise LedgerError("createTask emitted no TaskCreated event")
        task = ev.task_id
        assert task is not None
        return task

    def task_info(self, task_id: HashLike) -> TaskInfo:
        tid = _b32(task_id, "task_id")
        t = self._view("getTask", tid)
        if t[9] == 0:
            raise LedgerError(f"unknown task {HexBytes(tid).to_0x_hex()}")
        parts = tuple(checksum(p) for p in self._view("getParticipants", tid))
        return TaskInfo(
            task_id=tid,
            issuer=checksum(t[0]),
            participants=parts,
            spec_hash=bytes(t[1]),
            train_code_hash=bytes(t[2]),
            agg_code_hash=bytes(t[3]),
            quorum=t[4],
            rounds=t[5],
            round_duration_s=t[6],
            created_at=t[7],
            current_round=t[8],
            status=TaskStatus(t[9]),
            final_model_hash=_opt(t[10]),
            final_model_cid=t[11] or None,
        )

    def find_task_by_spec(self, spec_hash: HashLike) -> list[TaskInfo]:
        """A "retrieval": every task created for this spec digest, oldest first."""
        spec = _b32(spec_hash, "spec_hash")
        n = self._view("specTaskCount", spec)
        return [self.task_info(self._view("specTaskAt", spec, i)) for i in range(n)]

    def commit_update(
        self, task_id: HashLike, round: int, update_hash: HashLike, cid: str
    ) -> TxResult:
        """Commit this org's update (hash + content id) for ``round``; once per round.

        The contract binds the commitment to the sender. Commit the hash of the
        signed envelope (which covers task, round and sender), so that copying
        another org's hash gains nothing: its signature names the other org.
        """
        return self.send(self.tx.commit_update(task_id, round, update_hash, cid))

    def vote_global(self, task_id: HashLike, round: int, global_hash: HashLike) -> TxResult:
        """Vote the global hash; the deciding vote's result has a ``RoundFinalized`` event."""
        return self.send(self.tx.vote_global(task_id, round, global_hash))

    def vote_and_commit(
        self,
        task_id: HashLike,
        round: int,
        global_hash: HashLike,
        next_update_hash: HashLike,
        next_cid: str,
    ) -> TxResult:
        """Vote ``round``'s global hash and commit this org's update for ``round + 1`` in one
        transaction (not for the last round: vote that with :meth:`vote_global`).

        The commitment is held for ``round + 1`` while ``round`` is still being voted on and
        counts once the quorum finalises ``round``; the result carries ``GlobalVoted``,
        ``UpdateCommitted`` and, from the deciding vote, ``RoundFinalized``.
        """
        return self.send(
            self.tx.vote_and_commit(task_id, round, global_hash, next_update_hash, next_cid)
        )

    def close_round(self, task_id: HashLike, round: int) -> TxResult:
        """After the deadline: continue with the committed orgs (if >= quorum) or abort."""
        return self.send(self.tx.close_round(task_id, round))

    def record_rejection(self, task_id: HashLike, round: int, org: str, reason: str) -> TxResult:
        """Log that this participant rejected ``org``'s update in ``round`` (bad attestation...)."""
        return self.send(self.tx.record_rejection(task_id, round, org, reason))

    def record_report(
        self, task_id: HashLike, round: int, kind: str, digest: HashLike, cid: str = ""
    ) -> TxResult:
        """Anchor a per-round report of this participant on the ledger.

        A report is any signed document the consortium must be able to re-check later
        (differential-privacy spend, validation scores, contributions, ...): put its bytes
        in the artifact store and record ``sha256(bytes)`` and the content id here under a
        short ``kind`` (at most 32 bytes, e.g. ``"dp-epsilon"``). ``round`` 0 means the
        whole task. The contract checks only that the sender is a participant.
        """
        return self.send(self.tx.record_report(task_id, round, kind, digest, cid))

    def reports(
        self, task_id: HashLike, kind: str | None = None, round: int | None = None
    ) -> list[Report]:
        """Recorded reports of a task (optionally one kind and/or round), in chain order."""
        self.sync()
        tid = HexBytes(_b32(task_id, "task_id")).to_0x_hex()
        out = []
        for e in self._index.query(task=tid, names=("ReportRecorded",), round=round):
            if kind is not None and e.args["kind"] != kind:
                continue
            out.append(
                Report(
                    reporter=checksum(e.args["reporter"]),
                    round=int(e.args["round"]),
                    kind=e.args["kind"],
                    digest=bytes(HexBytes(e.args["digest"])),
                    cid=e.args["cid"],
                    block_number=e.block_number,
                    tx_hash=e.tx_hash,
                )
            )
        return out

    def vote_final_model(self, task_id: HashLike, model_hash: HashLike, accept: bool) -> TxResult:
        """Accept or reject the completed task's final model (the last round's final hash),
        once per participant. A quorum of accepts lets the issuer archive it; more than
        ``n - quorum`` rejects mark the task ``REJECTED`` (never archived)."""
        return self.send(self.tx.vote_final_model(task_id, model_hash, accept))

    def final_votes(self, task_id: HashLike) -> FinalModelVotes:
        """The participants' votes on the final model, from the event index."""
        self.sync()
        tid = HexBytes(_b32(task_id, "task_id")).to_0x_hex()
        votes: dict[str, bool] = {}
        txs: dict[str, str] = {}
        model_hash: bytes | None = None
        decided: bool | None = None
        for e in self._index.query(task=tid, names=("FinalModelVoted", "FinalModelDecided")):
            model_hash = bytes(HexBytes(e.args["modelHash"]))
            if e.name == "FinalModelVoted":
                org = checksum(e.args["org"])
                votes[org] = bool(e.args["accept"])
                txs[org] = e.tx_hash
            else:
                decided = bool(e.args["accepted"])
        accepts = sum(votes.values())
        return FinalModelVotes(model_hash, votes, txs, accepts, len(votes) - accepts, decided)

    def set_final_model(self, task_id: HashLike, model_hash: HashLike, cid: str) -> TxResult:
        """The "uploading" transaction: the issuer archives the final model once, at the end,
        after a quorum of participants accepted it (:meth:`vote_final_model`)."""
        return self.send(self.tx.set_final_model(task_id, model_hash, cid))

    def round_info(self, task_id: HashLike, round: int) -> RoundInfo:
        """Phase, deadline, commitments, votes, final hash and missing orgs of one round."""
        tid = _b32(task_id, "task_id")
        phase, deadline, _c, _v, final, missing = self._view("getRound", tid, int(round))
        commitments, votes, vote_txs = self._round_events(tid, int(round), with_votes=True)
        return RoundInfo(
            task_id=tid,
            round=int(round),
            phase=RoundPhase(phase),
            deadline=deadline,
            commitments=commitments,
            votes=votes,
            vote_txs=vote_txs,
            final_hash=_opt(final),
            missing=tuple(checksum(m) for m in missing),
        )

    def rounds(self, task_id: HashLike) -> dict[int, RoundInfo]:
        """Every opened round of a task, rebuilt from the event index alone (one query, no
        contract call): the records :meth:`round_info` returns, for a whole task at once.

        The contract emits ``RoundOpened``, ``CommitsClosed``, ``RoundFinalized`` and
        ``TaskAborted`` exactly when it moves a round between phases, so the phase,
        deadline and missing orgs follow from them; commitments and votes from their events.
        """
        tid = _b32(task_id, "task_id")
        self.sync()
        names = (
            "RoundOpened",
            "UpdateCommitted",
            "CommitsClosed",
            "GlobalVoted",
            "RoundFinalized",
            "TaskAborted",
        )
        state: dict[int, dict[str, Any]] = {}
        for e in self._index.query(task=HexBytes(tid).to_0x_hex(), names=names):
            r = int(e.args["round"])
            st = state.setdefault(
                r,
                {
                    "phase": RoundPhase.NOT_OPENED,
                    "deadline": 0,
                    "commitments": {},
                    "votes": {},
                    "vote_txs": {},
                    "final": None,
                    "missing": (),
                },
            )
            if e.name == "RoundOpened":
                st["phase"], st["deadline"] = RoundPhase.COMMIT, int(e.args["deadline"])
            elif e.name == "UpdateCommitted":
                c = _commitment(e)
                st["commitments"][c.org] = c
            elif e.name == "CommitsClosed":
                st["phase"], st["deadline"] = RoundPhase.VOTE, int(e.args["voteDeadline"])
                st["missing"] = tuple(checksum(m) for m in e.args["missing"])
            elif e.name == "GlobalVoted":
                org = checksum(e.args["org"])
                st["votes"][org] = bytes(HexBytes(e.args["globalHash"]))
                st["vote_txs"][org] = e.tx_hash
            elif e.name == "RoundFinalized":
                st["phase"], st["final"] = RoundPhase.FINAL, bytes(HexBytes(e.args["globalHash"]))
            else:  # TaskAborted
                st["phase"] = RoundPhase.FAILED
        return {
            r: RoundInfo(
                task_id=tid,
                round=r,
                phase=st["phase"],
                deadline=st["deadline"],
                commitments=st["commitments"],
                votes=st["votes"],
                vote_txs=st["vote_txs"],
                final_hash=st["final"],
                missing=st["missing"],
            )
            for r, st in sorted(state.items())
        }

    def commitments(self, task_id: HashLike, round: int) -> dict[str, Commitment]:
        """The round's commitments by org, from the event index alone (no contract call).

        The same records as ``round_info(...).commitments``: every ``UpdateCommitted``
        event the contract emitted for the round (it emits one only for a commitment it
        accepted: a participant, in the open commit phase, once). Cheaper when the
        round's phase and deadline are not needed.
        """
        return self._round_events(_b32(task_id, "task_id"), int(round), with_votes=False)[0]

    def _round_events(
        self, tid: bytes, round: int, *, with_votes: bool
    ) -> tuple[dict[str, Commitment], dict[str, bytes], dict[str, str]]:
        self.sync()
        names = ("UpdateCommitted", "GlobalVoted") if with_votes else ("UpdateCommitted",)
        commitments: dict[str, Commitment] = {}
        votes: dict[str, bytes] = {}
        vote_txs: dict[str, str] = {}
        for e in self._index.query(task=HexBytes(tid).to_0x_hex(), names=names, round=round):
            org = checksum(e.args["org"])
            if e.name == "UpdateCommitted":
                commitments[org] = _commitment(e)
            else:
                votes[org] = bytes(HexBytes(e.args["globalHash"]))
                vote_txs[org] = e.tx_hash
        return commitments, votes, vote_txs

    def chain_time(self) -> int:
        """Timestamp of the latest block: compare deadlines with this, not the wall clock."""
        return int(self.chain.w3.eth.get_block("latest")["timestamp"])

    def events(
        self, task_id: HashLike | None = None, names: Sequence[str] | None = None
    ) -> list[LedgerEvent]:
        """Indexed contract events (all, or one task's), in chain order.

        Names are the contract's events: ``OrgAdmitted``, ``OrgUpdated``,
        ``AdmissionProposed``, ``AdmissionWithdrawn``,
        ``AdmissionVoted``, ``TaskCreated``, ``RoundOpened``,
        ``UpdateCommitted``, ``CommitsClosed``, ``GlobalVoted``, ``RoundFinalized``,
        ``UpdateRejected``, ``TaskCompleted``, ``TaskAborted``, ``FinalModelSet``,
        ``ReportRecorded``, ``FinalModelVoted``, ``FinalModelDecided``. Arguments keep the
        contract's names; bytes are 0x-hex strings.
        """
        self.sync()
        task_hex = None if task_id is None else HexBytes(_b32(task_id, "task_id")).to_0x_hex()
        return self._index.query(task=task_hex, names=names)


def _commitment(e: LedgerEvent) -> Commitment:
    """The commitment an ``UpdateCommitted`` event records."""
    return Commitment(
        checksum(e.args["org"]),
        bytes(HexBytes(e.args["updateHash"])),
        e.args["cid"],
        e.block_number,
        e.tx_hash,
    )


def _fees(chain: Chain) -> dict[str, int]:
    """EIP-1559 fees: twice the latest base fee and no tip (0 on free-gas chains)."""
    if chain.free_gas:
        return {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    base = int(chain.w3.eth.get_block("latest").get("baseFeePerGas", 0))
    return {"maxFeePerGas": 2 * base, "maxPriorityFeePerGas": 0}
