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

With leader verification (``verification = {"mode": "leader"}``,
:mod:`matswarm.protocol.leader`) ``aggregate`` has two phases, so a round's cryptographic work
is linear in the number of orgs instead of quadratic:

* ``role = "lead"``: the envelopes go to the round's leader (the relay's guess from the
  envelopes it holds; the node derives the leader from the ledger's commitments and, when the
  relay guessed wrong, answers with the right one). It verifies every commitment, aggregates,
  votes, and returns its signed claim, the model and the aggregator state;
* ``role = "follow"``: the claim, model, state and every envelope go to the other orgs. A
  follower votes only when it holds every envelope the claim aggregates, whether or not it
  audits: the relay sends the same to all followers after the claim is signed, so it cannot
  tell auditors apart and a leader cannot adapt its claim to them. Each follower checks the
  claim (or audits it, re-aggregating itself) exactly as in process; a refusal stops the task.

The coordinator (:class:`RelayHooks`) then takes the finalised hash from the nodes' answers and
checks that its own aggregate (the model it relays as the next round's start) equals it; nodes
check the start model of every round against their own (or, after missing rounds, the ledger's)
finalised hash, so a relay can delay or drop, never forge.

Node-side configuration (keystore, ledger URL and contract, chain id) is the org's own
(``matswarm node start --identity ... --ledger ...``), never taken from the coordinator.
Not supported yet: ring algorithms in trusted mode (ring intermediates would need sealing at
the sender's node), the simulated enclave, and a leader that commits and then disconnects (its
round cannot complete: the task stops naming it, where in-process the leader is always there).
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
        if spec.verification is not None:
            from matswarm.protocol.leader import Verification, check_supported

            if Verification.from_dict(spec.verification).mode == "leader":
                try:
                    check_supported(aggregator, spec.contribution)
                except ValueError as exc:
                    raise SpecError(f"refusing the task: {exc}") from None
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


class NotLeader(SpecError):
    """A lead request reached an org that, by the ledger's commitments, does not lead the
    round; :attr:`reply` tells the relay which org does."""

    def __init__(self, round_: int, org: str, leader: str):
        super().__init__(
            f"round {round_}: {org} is not its leader; by the ledger's commitments {leader} is"
        )
        self.reply = {"leader": leader}


class ClaimRefused(SpecError):
    """A follower refuses the leader's aggregate claim (the reason names the leader)."""

    def __init__(self, reason: str, leader: str):
        super().__init__(reason)
        self.reply = {"refuses": leader}


def trusted_aggregate(
    agent, round_: int, start: np.ndarray, p: Payload, max_wait_s: float = 600.0
) -> tuple[np.ndarray, Payload]:
    """Store the relayed envelopes (ids recomputed here), close the commit phase when its
    deadline passed with orgs missing, then verify, aggregate and vote (every-org), or lead
    or follow the round (leader verification, by ``p``'s ``role``); return the new global."""
    from matswarm.protocol import vector_hash
    from matswarm.protocol.leader import Verification

    for name, arr in p.arrays.items():
        if name.startswith("env_"):
            agent.store.put(np.asarray(arr, dtype=np.uint8).tobytes())
    info = _close_commits(agent, round_, max_wait_s)
    checking = Verification.from_dict(agent.spec.verification or {})
    extra: dict[str, str] = {}
    arrays: dict[str, np.ndarray] = {}
    if checking.mode == "leader":
        new_global, accepted, extra, arrays = _leader_step(agent, round_, start, p, checking)
    else:
        updates = agent.collect(round_)  # reads and verifies the commitments itself
        new_global = agent.aggregate_and_vote(round_, start, updates)
        accepted = [u.org for u in updates]
    final = agent.ledger.round_info(agent.task_id, round_).final_hash
    out = Payload(
        {
            "org": agent.name,
            "vote": vector_hash(new_global),
            "final": final.hex() if final else "",
            "accepted": ",".join(accepted),
            "missing": ",".join(agent.name_of.get(a, a) for a in info.missing),
            **extra,
        },
        arrays,
    )
    return new_global, out


def _close_commits(agent, round_: int, max_wait_s: float):
    """Wait for the round's commit phase to end, closing it once its deadline passed with
    orgs missing; returns the round's ledger record."""
    from matswarm.ledger import LedgerError, RoundPhase

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
    return info


def _leader_step(agent, round_: int, start: np.ndarray, p: Payload, checking):
    """Leader verification on a node: lead the round or check its leader's claim (the same
    :mod:`matswarm.protocol.leader` functions as in process). Returns the new global model,
    the orgs it aggregates, and the reply's extra fields and arrays (the leader's: its claim,
    model and state, which the relay passes on to the followers)."""
    from matswarm.protocol.codec import encode_vector
    from matswarm.protocol.leader import (
        AggregateClaim,
        audits,
        follow_round,
        lead_round,
        leader_of,
    )
    from matswarm.protocol.trusted import ProtocolError
    from matswarm.trust import Envelope, RejectedError

    commitments = agent.ledger.commitments(agent.task_id, round_)
    committed = {agent.name_of.get(a, a) for a in commitments}
    leader = leader_of(agent.spec.participants, round_, committed)
    role = str(p.config.get("role", ""))
    if role == "lead":
        if leader != agent.name:
            raise NotLeader(round_, agent.name, leader)
        updates = agent.collect(round_, commitments)
        if not updates:
            raise ProtocolError(f"round {round_}: no update survived verification")
        lead = lead_round(agent, round_, start, updates, commitments)
        blobs = {
            "claim": agent.store.get(lead.claim_cid),
            "model": encode_vector(lead.model),
            "state": agent.store.get(lead.state_cid),
        }
        extra = {"role": "lead", "claim": lead.claim_cid}
        arrays = {k: np.frombuffer(b, dtype=np.uint8).copy() for k, b in blobs.items()}
        return lead.model, [u.org for u in updates], extra, arrays
    if role != "follow":
        raise SpecError(f"aggregate: role must be 'lead' or 'follow' in leader mode, got {role!r}")
    if leader == agent.name:
        raise SpecError(f"round {round_}: {agent.name} leads it by the ledger, it cannot follow")
    for name in ("claim", "model", "state"):
        if name not in p.arrays:
            raise SpecError(f"aggregate (follow): the relay sent no {name!r} of {leader}")
    claim_cid = agent.store.put(np.asarray(p.arrays["claim"], dtype=np.uint8).tobytes())
    for name in ("model", "state"):  # checked against the claim by follow_round
        agent.store.put(np.asarray(p.arrays[name], dtype=np.uint8).tobytes())
    try:
        # Read unverified, only to see which envelopes the claim needs (follow_round checks it
        # in full); every aggregated one, audit or not: the relay cannot tell auditors apart.
        claim = AggregateClaim.from_bytes(Envelope.from_bytes(agent.store.get(claim_cid)).body)
        absent = [org for org, _, cid in claim.inputs if not agent.store.has(cid)]
        if absent:
            raise ProtocolError(
                f"round {round_}: {agent.name} did not receive the envelopes of "
                f"{', '.join(absent)} that {leader}'s claim aggregates (a follower votes only "
                "when it holds every one)"
            )
        audited = None
        if audits(agent, round_, checking.rate(len(agent.spec.participants))):
            audited = agent.collect(round_, commitments)
        new_global = follow_round(
            agent, round_, start, claim_cid, commitments, leader=leader, audited=audited
        )
    except (ProtocolError, RejectedError, ValueError) as exc:
        raise ClaimRefused(str(exc), leader) from None
    extra = {"role": "follow", "leader": leader, "audited": "1" if audited is not None else ""}
    return new_global, [o for o, _, _ in claim.inputs], extra, {}


class RelayHooks(RoundHooks):
    """Coordinator-side round hooks of a trusted task: relay envelopes (and, with leader
    verification, the leader's claim), collect the nodes' votes. Only ``finalise`` differs from
    the base (the coordinator verifies nothing itself: it is untrusted; the nodes do)."""

    def __init__(self, coordinator):
        from matswarm.protocol.leader import Verification

        self.c = coordinator
        self.leader_mode = (
            Verification.from_dict(coordinator.spec.verification or {}).mode == "leader"
        )

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
        # A node answers once the commit phase ended: every org committed, or the on-chain
        # window (round_duration_s from the round's opening, when the last one finalised)
        # passed; with an org missing that can be long after the relay's own deadline.
        opened = getattr(c, "_round_started", time.monotonic())
        end = max(time.monotonic() + c.spec.round_deadline_s, opened + c.spec.round_duration_s)
        deadline = end + c.ledger_grace_s
        if self.leader_mode:
            replies = self._lead_and_follow(round_, orgs, set(envs), p, deadline)
        else:
            replies = c.link.cycle(
                {o.name: (o.node_id, "query.aggregate", p) for o in orgs},
                deadline,
                group=str(round_),
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

    def _lead_and_follow(self, round_, orgs, committed, p: Payload, deadline: float):
        """Leader verification: the envelopes to the round's leader, then its claim, model and
        state with the envelopes to every other org; returns every node's reply."""
        from matswarm.protocol.leader import leader_of

        c = self.c
        by_name = {o.name: o for o in orgs}
        # The relay's guess from the envelopes it holds; a node that committed without its
        # reply reaching the relay shifts the ledger's rotation, and the guessed org says so.
        leader = leader_of(c.spec.participants, round_, committed)
        lead_p = Payload({**p.config, "role": "lead"}, p.arrays)
        for _ in range(2):
            node = by_name.get(leader)
            if node is None:
                raise RuntimeError(
                    f"round {round_}: its leader {leader} (by the ledger's commitments) is not "
                    "connected; a round's leader must aggregate it"
                )
            rep = c.link.cycle(
                {leader: (node.node_id, "query.aggregate", lead_p)}, deadline, group=str(round_)
            ).get(leader)
            if rep is None:
                raise RuntimeError(f"round {round_}: its leader {leader} did not answer in time")
            named = str(rep.config.get("leader", ""))
            if "error" not in rep.config or not named or named == leader:
                break
            leader = named
        if "error" in rep.config:
            raise RuntimeError(f"round {round_}: leader {leader}: {rep.config['error']}")
        arrays = {**p.arrays, **{k: rep.arrays[k] for k in ("claim", "model", "state")}}
        follow_p = Payload({**p.config, "role": "follow"}, arrays)
        replies = {leader: rep}
        replies.update(
            c.link.cycle(
                {o.name: (o.node_id, "query.aggregate", follow_p) for o in orgs if o is not node},
                deadline,
                group=str(round_),
            )
        )
        refusals = {n: r.config["error"] for n, r in replies.items() if r.config.get("refuses")}
        if refusals:
            raise RuntimeError(f"round {round_}: {leader}'s aggregate was refused: {refusals}")
        return replies


__all__ = ["ClaimRefused", "NodeTrust", "NodeTrustConfig", "NotLeader", "RelayHooks"]
