"""matswarm's ledger: an EVM contract (Vyper) recording every swarm-learning decision.

One public surface, :class:`Ledger`, over the ``SwarmLedger`` contract
(``contracts/SwarmLedger.vy``, compiled artifact shipped next to it):

* org registry with governed admission (founders admit directly, otherwise a
  2/3 vote of members); unadmitted addresses can do nothing;
* tasks ("sharing"), retrieval of archived tasks by spec digest ("retrieval"),
  per-round commitments, global-hash votes finalised at quorum >= ceil(2n/3),
  deadlines that close a round with the orgs that committed, rejection records,
  and the final model's content id ("uploading");
* an SQLite event index so history queries never scan the chain.

Backends, chosen by configuration only (same bytecode, ABI, gas and events):

``Ledger.embedded(directory, key)``
    eth-tester + py-evm in this process, persisted to ``directory`` (one durable
    SQLite commit per block, safe against kill -9). **It gives no consensus and
    no tamper resistance**: one process holds the whole chain and could rewrite
    it; it does not even enforce anything a node would beyond what we add (we
    do refuse transactions signed for another chain id). Use it for tests and
    single-machine demos only.

``Ledger.connect(url, address, key, chain_id=...)``
    any EVM JSON-RPC node. CI runs it against ``anvil`` (a single dev node, also
    no consensus). **Production** is a permissioned Hyperledger Besu network with
    QBFT consensus and one validator per org (n >= 4 tolerates f = floor((n-1)/3)
    Byzantine validators; blocks are final at once, so there are no reorgs):
    a genesis with ``"qbft"`` config, ``zeroBaseFee: true`` and the org validators
    in ``extraData``, node and account permissioning (allow-lists of each org's
    enode and EVM address), ``--min-gas-price=0``, the contract deployed once with
    the founders, and every org's adapter pointed at its own node's RPC URL with
    the network's chain id. Each org re-executes every block, so no single org can
    forge or rewrite the record. The recipe is in ``PRODUCTION.md`` next to this
    file: documented, not tested here.

Batches: ``ledger.send_batch([org.tx.commit_update(...) for org in views])`` (or a
:class:`Batch`) sends several views' transactions together, each still signed by its
own org and checked by the contract in order. The embedded chain mines them as one
block (one state root, one durable commit: most of its cost per transaction); a
JSON-RPC chain gets them all before the first receipt is awaited. Failures come back
per call (:class:`BatchError`), with the contract's reason.

Keys: transactions are signed locally with the org's EVM key (a ``LocalAccount``
or raw private key supplied by :mod:`matswarm.trust`); the ledger never stores,
logs or prints it.
"""

from .anvil_chain import AnvilChain
from .chains import EMBEDDED_CHAIN_ID, Chain, EmbeddedChain, RpcChain
from .errors import (
    BatchError,
    ChainIdMismatch,
    ContractRevert,
    LedgerError,
    LedgerLocked,
    TransactionRejected,
)
from .ledger import Batch, Calls, Ledger, Pending, TxCall, default_quorum
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

__all__ = [
    "EMBEDDED_CHAIN_ID",
    "AnvilChain",
    "Batch",
    "BatchError",
    "Calls",
    "Chain",
    "ChainIdMismatch",
    "Commitment",
    "ContractRevert",
    "EmbeddedChain",
    "FinalModelVotes",
    "Ledger",
    "LedgerError",
    "LedgerEvent",
    "LedgerLocked",
    "OrgInfo",
    "Pending",
    "Report",
    "RoundInfo",
    "RoundPhase",
    "RpcChain",
    "TaskInfo",
    "TaskStatus",
    "TransactionRejected",
    "TxCall",
    "TxResult",
    "default_quorum",
]
