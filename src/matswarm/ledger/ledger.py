"""The :class:`Ledger` adapter: matswarm's one public surface over the SwarmLedger contract."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3.exceptions import ContractLogicError

from .chains import Chain, EmbeddedChain, RpcChain
from .compile import load_artifact
from .errors import ChainIdMismatch, ContractRevert, LedgerError
from .index import EventIndex, event_from_log
from .types import (
    Commitment,
    LedgerEvent,
    OrgInfo,
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


#: String bounds of the contract (``MAX_CID``, ``MAX_META``, ``MAX_REASON``), in UTF-8 bytes.
MAX_CID = 128
MAX_META = 256
MAX_REASON = 256


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


def _revert_reason(exc: BaseException) -> str:
    """The contract's revert string from web3's or eth-tester's exception."""
    if isinstance(exc, ContractLogicError) and exc.message:
        msg = exc.message
    else:
        msg = str(exc.args[0]) if exc.args else str(exc)
    return msg.removeprefix("execution reverted: ").removeprefix("execution reverted:").strip()


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
        self.address = to_checksum_address(address)
        self.account = None if account is None else _as_account(account)
        self.expected_chain_id = chain.chain_id if chain_id is None else int(chain_id)
        self.preflight = preflight
        self._contract = chain.w3.eth.contract(address=self.address, abi=load_artifact()["abi"])
        self._topics: dict[bytes, str] = {}
        for item in load_artifact()["abi"]:
            if item["type"] == "event":
                sig = f"{item['name']}({','.join(i['type'] for i in item['inputs'])})"
                self._topics[keccak(text=sig)] = item["name"]
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
        founders = [to_checksum_address(f) for f in (founders or [acct.address])]
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
            "nonce": chain.w3.eth.get_transaction_count(acct.address, "pending"),
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
    ) -> Ledger:
        """Open (or create and deploy on first use) the embedded chain in ``directory``.

        The contract address lives in the chain's own database, so a restart
        reopens the same deployment; the event index is ``directory/index.sqlite``.
        ``founders`` only matters on first use. Close with :meth:`close`.
        """
        chain = EmbeddedChain(directory, chain_id=chain_id)
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

    # ------------------------------------------------------------------ plumbing

    def _view(self, fn: str, *args: Any) -> Any:
        with self._lock:
            call = getattr(self._contract.functions, fn)(*args)
            return call.call({"from": self.sender or _ZERO_ADDRESS, "gasPrice": 0})

    def _check_chain(self) -> None:
        actual = self.chain.chain_id
        if actual != self.expected_chain_id:
            raise ChainIdMismatch(self.expected_chain_id, actual)

    def _transact(self, fn: str, *args: Any) -> TxResult:
        if self.account is None:
            raise LedgerError(f"{fn}: this Ledger view has no account to sign with")
        with self._lock:
            # Checked before anything is signed: a transaction for another chain
            # is never created, let alone sent.
            self._check_chain()
            data = self._contract.encode_abi(fn, args=list(args))
            self.chain.prepare()
            fees = _fees(self.chain)
            base = {"from": self.account.address, "to": self.address, "data": data, "value": 0}
            if self.preflight:
                try:
                    # Zero gas price: the verdict must not depend on the balance.
                    self.chain.w3.eth.call(
                        {**base, "gas": TX_GAS, "gasPrice": 0}, self.chain.preflight_block
                    )
                except Exception as exc:
                    raise self._as_revert(fn, exc) from exc
            tx = {
                **{k: v for k, v in base.items() if k != "from"},
                "gas": TX_GAS,
                "nonce": self.chain.w3.eth.get_transaction_count(self.account.address, "pending"),
                "chainId": self.expected_chain_id,
                "type": 2,
                **fees,
            }
            signed = self.account.sign_transaction(tx)
            receipt = self.chain.send_raw_transaction(signed.raw_transaction)
            tx_hash = HexBytes(receipt["transactionHash"]).to_0x_hex()
            if receipt["status"] != 1:
                raise ContractRevert(fn, self._replay_reason(base, receipt), tx_hash)
            events = tuple(
                e for e in (self._decode(log) for log in receipt["logs"]) if e is not None
            )
            return TxResult(
                tx_hash=tx_hash,
                block_number=int(receipt["blockNumber"]),
                gas_used=int(receipt["gasUsed"]),
                events=events,
            )

    def _as_revert(self, fn: str, exc: Exception) -> Exception:
        from eth_tester.exceptions import TransactionFailed

        if isinstance(exc, ContractLogicError | TransactionFailed):
            return ContractRevert(fn, _revert_reason(exc))
        return exc

    def _replay_reason(self, base: dict[str, Any], receipt: Any) -> str:
        # The receipt of a reverted transaction carries no reason; re-run it on
        # the parent block's state (exact unless another transaction of the same
        # block changed the outcome).
        try:
            self.chain.w3.eth.call(
                {**base, "gas": TX_GAS, "gasPrice": 0}, int(receipt["blockNumber"]) - 1
            )
        except Exception as exc:
            return _revert_reason(exc)
        return "reverted (reason unavailable)"

    def _decode(self, log: Any) -> LedgerEvent | None:
        if to_checksum_address(log["address"]) != self.address or not log["topics"]:
            return None
        name = self._topics.get(bytes(log["topics"][0]))
        if name is None:
            return None
        decoded = getattr(self._contract.events, name)().process_log(log)
        return event_from_log(name, decoded)

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
        return self._transact(
            "updateOrg",
            _b32(ed25519, "ed25519"),
            _b32(x25519, "x25519"),
            _text(metadata, MAX_META, "metadata"),
        )

    def propose_admission(
        self, candidate: str, ed25519: HashLike, x25519: HashLike, metadata: str
    ) -> bool:
        """Propose ``candidate`` with its public keys; True if it is admitted now.

        A founder's proposal admits directly; a member's counts as its own vote.
        """
        self._transact(
            "proposeAdmission",
            to_checksum_address(candidate),
            _b32(ed25519, "ed25519"),
            _b32(x25519, "x25519"),
            _text(metadata, MAX_META, "metadata"),
        )
        return self.is_admitted(candidate)

    def vote_admission(self, candidate: str) -> bool:
        """Approve the open proposal for ``candidate``; True if it is admitted now."""
        self._transact("voteAdmission", to_checksum_address(candidate))
        return self.is_admitted(candidate)

    def withdraw_admission(self, candidate: str) -> TxResult:
        """Withdraw the open proposal for ``candidate`` (its proposer or a founder only)."""
        return self._transact("withdrawAdmission", to_checksum_address(candidate))

    def is_admitted(self, org: str) -> bool:
        return bool(self._view("isAdmitted", to_checksum_address(org)))

    def org_info(self, org: str) -> OrgInfo:
        ed, xk, meta, admitted, founder, at = self._view("getOrg", to_checksum_address(org))
        return OrgInfo(to_checksum_address(org), bytes(ed), bytes(xk), meta, admitted, founder, at)

    def members(self) -> list[str]:
        """Admitted orgs in admission order."""
        n = self._view("memberCount")
        return [to_checksum_address(self._view("memberAt", i)) for i in range(n)]

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
        parts = [to_checksum_address(p) for p in participants]
        q = default_quorum(len(parts)) if quorum is None else int(quorum)
        res = self._transact(
            "createTask",
            parts,
            q,
            _b32(spec_hash, "spec_hash"),
            _b32(train_code_hash, "train_code_hash"),
            _b32(agg_code_hash, "agg_code_hash"),
            int(rounds),
            int(round_duration_s),
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
        parts = tuple(to_checksum_address(p) for p in self._view("getParticipants", tid))
        return TaskInfo(
            task_id=tid,
            issuer=to_checksum_address(t[0]),
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
        return self._transact(
            "commitUpdate",
            _b32(task_id, "task_id"),
            int(round),
            _b32(update_hash, "update_hash"),
            _text(cid, MAX_CID, "cid"),
        )

    def vote_global(self, task_id: HashLike, round: int, global_hash: HashLike) -> TxResult:
        """Vote the global hash; the deciding vote's result has a ``RoundFinalized`` event."""
        return self._transact(
            "voteGlobal", _b32(task_id, "task_id"), int(round), _b32(global_hash, "global_hash")
        )

    def close_round(self, task_id: HashLike, round: int) -> TxResult:
        """After the deadline: continue with the committed orgs (if >= quorum) or abort."""
        return self._transact("closeRound", _b32(task_id, "task_id"), int(round))

    def record_rejection(self, task_id: HashLike, round: int, org: str, reason: str) -> TxResult:
        """Log that this participant rejected ``org``'s update in ``round`` (bad attestation...)."""
        return self._transact(
            "recordRejection",
            _b32(task_id, "task_id"),
            int(round),
            to_checksum_address(org),
            _text(reason, MAX_REASON, "reason"),
        )

    def set_final_model(self, task_id: HashLike, model_hash: HashLike, cid: str) -> TxResult:
        """The "uploading" transaction: the issuer archives the final model once, at the end."""
        return self._transact(
            "setFinalModel",
            _b32(task_id, "task_id"),
            _b32(model_hash, "model_hash"),
            _text(cid, MAX_CID, "cid"),
        )

    def round_info(self, task_id: HashLike, round: int) -> RoundInfo:
        """Phase, deadline, commitments, votes, final hash and missing orgs of one round."""
        tid = _b32(task_id, "task_id")
        phase, deadline, _c, _v, final, missing = self._view("getRound", tid, int(round))
        self.sync()
        task_hex = HexBytes(tid).to_0x_hex()
        commitments: dict[str, Commitment] = {}
        votes: dict[str, bytes] = {}
        vote_txs: dict[str, str] = {}
        for e in self._index.query(
            task=task_hex, names=("UpdateCommitted", "GlobalVoted"), round=int(round)
        ):
            org = to_checksum_address(e.args["org"])
            if e.name == "UpdateCommitted":
                commitments[org] = Commitment(
                    org,
                    bytes(HexBytes(e.args["updateHash"])),
                    e.args["cid"],
                    e.block_number,
                    e.tx_hash,
                )
            else:
                votes[org] = bytes(HexBytes(e.args["globalHash"]))
                vote_txs[org] = e.tx_hash
        return RoundInfo(
            task_id=tid,
            round=int(round),
            phase=RoundPhase(phase),
            deadline=deadline,
            commitments=commitments,
            votes=votes,
            vote_txs=vote_txs,
            final_hash=_opt(final),
            missing=tuple(to_checksum_address(m) for m in missing),
        )

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
        ``UpdateRejected``, ``TaskCompleted``, ``TaskAborted``, ``FinalModelSet``.
        Arguments keep the contract's names; bytes are 0x-hex strings.
        """
        self.sync()
        task_hex = None if task_id is None else HexBytes(_b32(task_id, "task_id")).to_0x_hex()
        return self._index.query(task=task_hex, names=names)


def _fees(chain: Chain) -> dict[str, int]:
    """EIP-1559 fees: twice the latest base fee and no tip (0 on free-gas chains)."""
    if isinstance(chain, EmbeddedChain):
        return {"maxFeePerGas": 0, "maxPriorityFeePerGas": 0}
    base = int(chain.w3.eth.get_block("latest").get("baseFeePerGas", 0))
    return {"maxFeePerGas": 2 * base, "maxPriorityFeePerGas": 0}
