"""The trust layer across machines: each node runs its own
:class:`~matswarm.protocol.trusted.OrgAgent` (its keys, its ledger account on the shared
JSON-RPC chain, its own content-addressed store); the coordinator only relays envelopes.

Per round, with a trusted task:

* ``train``: the node trains, seals its update (signed, encrypted to the participants), stores
  the envelope in *its* store, commits its hash and content id on the ledger with *its* account,
  and returns the envelope bytes with the result;
* ``aggregate``: the coordinator relays every envelope of the round to every node; each node puts
  them in its own store (the content id is recomputed from the bytes, so a blob altered in
  transit never matches the id committed on the ledger), closes the commit phase if the deadline
  passed with orgs missing, verifies every commitment, aggregates with its own replica, and votes
  the hash with its own account. The contract finalises at quorum.

The coordinator (:class:`RelayHooks`) then takes the finalised hash from the nodes' answers and
checks that its own aggregate (the model it relays as the next round's start) equals it; nodes
check the start model of every round against their own (or, after missing rounds, the ledger's)
finalised hash, so a relay can delay or drop, never forge.

Node-side configuration (keystore, ledger URL and contract, chain id) is the org's own
(``matswarm node start --identity ... --ledger ...``), never taken from the coordinator.
Not supported yet: leader verification (:mod:`matswarm.protocol.leader`: the coordinator
would relay the leader's claim in a second phase), ring algorithms in trusted mode (ring
intermediates would need sealing at the sender's node), and the simulated enclave.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matswarm.protocol import RoundHooks
from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.flower.codec import Payload
from matswarm.runtime.flower.spec import SpecError

log = logging.getLogger("matswarm.node")


@dataclass(frozen=True)
class NodeTrustConfig:
    """An org's own trust settings (from its command line, never from the coordinator)."""

    identity: Path  # encrypted keystore (passphrase: $MATSWARM_PASSPHRASE or prompt)
    ledger_url: str
    contract: str
    chain_id: int
    store: Path


class NodeTrust:
    """The node's ledger connection and per-task agents."""

    def __init__(self, org: str, cfg: NodeTrustConfig):
        from matswarm.ledger import Ledger
        from matswarm.store import LocalStore
        from matswarm.trust import OrgIdentity

        self.identity = OrgIdentity.load(cfg.identity)
        if self.identity.name != org:
            raise SpecError(f"keystore {cfg.identity} is {self.identity.name!r}, not {org!r}")
        self.ledger = Ledger.connect(
            cfg.ledger_url, cfg.contract, self.identity.evm_account(), chain_id=cfg.chain_id
        )
        self.store = LocalStore(cfg.store)

    def open_task(self, spec: TaskSpec, task_id: str, initial: np.ndarray):
        """Check the relayed spec against the task on the ledger (its hash), this installation
        (code hashes) and ``initial`` (the model the spec pins); return the org's
        :class:`OrgAgent` for the task."""
        from matswarm.protocol import Aggregator, vector_hash
        from matswarm.protocol.spec import aggregation_code_hash, training_code_hash
        from matswarm.protocol.trusted import OrgAgent, directory_from_ledger

        if spec.verification is not None:
            raise SpecError(
                f"task {spec.name!r} uses verification {spec.verification.get('mode')!r}, which "
                "runs in-process and in `task run-local` only: over Flower every node verifies "
                "and re-aggregates every update (create the task without it)"
            )
        algo = spec.build_algorithm()
        if algo.ring:
            raise SpecError("trusted tasks over Flower support parallel algorithms only (yet)")
        tid = bytes.fromhex(task_id.removeprefix("0x"))
        info = self.ledger.task_info(tid)
        problems = []
        if info.spec_hash != spec.digest():
            problems.append(
                "the relayed spec differs from the task recorded on the ledger (spec hash)"
            )
        ledger_code = (info.train_code_hash.hex(), info.agg_code_hash.hex())
        pinned_code = (spec.train_code_sha256, spec.agg_code_sha256)
        mine_code = (training_code_hash(), aggregation_code_hash())
        for what, onchain, pinned, mine in zip(
            ("training", "aggregation"), ledger_code, pinned_code, mine_code, strict=True
        ):
            if not onchain == pinned == mine:
                problems.append(
                    f"{what} code: ledger {onchain[:12]}…, spec {pinned[:12]}…, "
                    f"installed {mine[:12]}…"
                )
        if vector_hash(initial) != spec.initial_model_sha256:
            problems.append("the initial model is not the one the task pins")
        directory = directory_from_ledger(self.ledger, info.participants)
        if set(directory) != set(spec.participants):
            problems.append(
                f"ledger participants {sorted(directory)} are not {list(spec.participants)}"
            )
        if problems:
            raise SpecError("refusing the task: " + "; ".join(problems))
        aggregator = Aggregator(algo, spec.build_rule(), list(spec.participants), initial)
        if spec.secure_aggregation is not None:  # the sum of masked updates, relayed transcript
            from matswarm.privacy.secagg import SecAggConfig
            from matswarm.privacy.secagg_round import RelayedTranscripts, SecureAggregator

            board = RelayedTranscripts(directory, SecAggConfig(**spec.secure_aggregation))
            aggregator = SecureAggregator(algo, spec.participants, initial, board)
        return OrgAgent(self.identity, self.ledger, self.store, spec, tid, directory, aggregator)


def trusted_train(joined, agent, round_: int, g: np.ndarray, res, mask=None) -> Payload:
    """Seal, store and commit this org's update (``mask``: what the org sends instead, e.g.
    its masked input or compressed update); the envelope travels back with the result."""
    from matswarm.protocol import Update

    update = Update(
        agent.task_hex, round_, agent.name, res.update_vector(g), res.n_samples, res.kind
    )
    out = Payload()
    if mask is not None:
        update = mask(update)
        if update.kind == "masked":
            out.arrays["masked"] = update.vector
    cid = agent.publish(update)
    agent.report_result(round_, res)  # its DP spend, signed and anchored by this org
    blob = agent.store.get(cid)
    out.config["cid"] = cid
    out.arrays["envelope"] = np.frombuffer(blob, dtype=np.uint8).copy()
    return out


def trusted_aggregate(
    agent, round_: int, start: np.ndarray, p: Payload, max_wait_s: float = 600.0
) -> tuple[np.ndarray, Payload]:
    """Store the relayed envelopes (ids recomputed here), close the commit phase when its
    deadline passed with orgs missing, verify, aggregate, vote; return the new global."""
    from matswarm.ledger import LedgerError, RoundPhase
    from matswarm.protocol import vector_hash

    for name, arr in p.arrays.items():
        if name.startswith("env_"):
            agent.store.put(np.asarray(arr, dtype=np.uint8).tobytes())
    info = agent.ledger.round_info(agent.task_id, round_)
    # Closing is sent without the pre-flight eth_call: that simulates on the latest block,
    # whose timestamp on a dev chain without traffic is older than the deadline.
    closer = agent.ledger.with_account(agent.identity.evm_account())
    closer.preflight = False
    end = time.monotonic() + max_wait_s
    while info.phase is RoundPhase.COMMIT and time.monotonic() < end:
        # The next block's timestamp is about the wall clock (a dev chain's latest block may be
        # old when no transaction came for a while); the contract has the last word.
        if max(agent.ledger.chain_time(), time.time()) > info.deadline + 1:
            try:
                closer.close_round(agent.task_id, round_)
            except LedgerError as exc:  # another org may have closed it first
                log.info("%s: close_round(%d): %s", agent.name, round_, exc)
                time.sleep(0.5)
        else:
            time.sleep(0.5)
        info = agent.ledger.round_info(agent.task_id, round_)
    accepted = agent.collect(round_)  # reads and verifies the commitments itself
    new_global = agent.aggregate_and_vote(round_, start, accepted)
    final = agent.ledger.round_info(agent.task_id, round_).final_hash
    out = Payload(
        {
            "org": agent.name,
            "vote": vector_hash(new_global),
            "final": final.hex() if final else "",
            "accepted": ",".join(u.org for u in accepted),
            "missing": ",".join(agent.name_of.get(a, a) for a in info.missing),
        }
    )
    return new_global, out


class RelayHooks(RoundHooks):
    """Coordinator-side round hooks of a trusted task: relay envelopes, collect the nodes'
    votes. Only ``finalise`` differs from the base (the coordinator verifies nothing itself:
    it is untrusted; the nodes do)."""

    def __init__(self, coordinator):
        self.c = coordinator

    def finalise(self, round_, previous_global, global_params, updates, aggregator) -> str:
        from matswarm.protocol import vector_hash

        c = self.c
        envs = c.envelopes.pop(round_, {})
        p = Payload(
            {"task": c.spec.name, "round": round_},
            {f"env_{c.spec.participants.index(o)}": e for o, e in envs.items()},
        )
        board = getattr(c, "secagg", None)
        if board is not None and round_ in board.transcripts:  # what the nodes unmask with
            p.arrays["transcript"] = np.frombuffer(board.transcripts[round_], np.uint8).copy()
        orgs = [o for o in c.live() if o.name in envs]
        deadline = time.monotonic() + c.spec.round_deadline_s + c.ledger_grace_s
        replies = c.link.cycle(
            {o.name: (o.node_id, "query.aggregate", p) for o in orgs}, deadline, group=str(round_)
        )
        finals = {
            r.config["final"]
            for r in replies.values()
            if "error" not in r.config and r.config.get("final")
        }
        errors = {n: r.config["error"] for n, r in replies.items() if "error" in r.config}
        mine = vector_hash(global_params)
        if len(finals) != 1:
            raise RuntimeError(
                f"round {round_} not finalised on the ledger (votes: "
                f"{ {n: str(r.config.get('vote', ''))[:12] for n, r in replies.items()} }, "
                f"errors: {errors})"
            )
        final = finals.pop()
        if final != mine:
            raise RuntimeError(
                f"round {round_}: the ledger finalised {final[:12]}…, the relay "
                f"aggregated {mine[:12]}… (rejected updates?)"
            )
        return final


__all__ = ["NodeTrust", "NodeTrustConfig", "RelayHooks"]
