"""Secure aggregation over Flower: the same protocol (:mod:`matswarm.privacy.secagg`), with the
coordinator as the relay that routes its messages.

Per round of a trusted task whose spec sets ``secure_aggregation``:

1. ``query.secagg_keys``: every live node opens its round client (its keys stay in the node)
   and returns its signed key advert;
2. ``query.secagg_shares`` carries all adverts; each node returns its Shamir shares, each
   encrypted to its recipient's registered X25519 key;
3. ``train.local`` carries each node's inbox (the shares addressed to it); the node trains,
   masks its update, seals, stores and commits the **masked** update, and returns only the
   masked words (never its model) with the envelope;
4. once the coordinator knows who delivered, ``query.secagg_reveal`` asks the survivors for
   their shares (of the survivors' self-mask seeds and of the dropped orgs' mask keys);
5. ``query.aggregate`` relays the envelopes and the signed transcript; each node stores the
   transcript, anchors it on the ledger (``recordReport``), unmasks the sum itself (signatures
   checked against the ledger's directory) and votes.

The relay sees adverts, encrypted shares, masked words and reveals: only the sum is
recoverable. Flower's own SecAgg+ is not used (see :mod:`matswarm.privacy.secagg` for why).
A task without the trust layer is refused: without keys registered on the ledger, the relay
could substitute its own keys for an org's.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from matswarm.privacy.secagg import SecAggClient, SecAggConfig, SecAggError, Transcript
from matswarm.privacy.secagg_round import TRANSCRIPT_KIND, masked_update
from matswarm.runtime.flower.codec import Payload


def _blob(a: np.ndarray) -> bytes:
    return np.asarray(a, dtype=np.uint8).tobytes()


def _arr(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8).copy()


def config_of(spec) -> SecAggConfig:
    return SecAggConfig(**spec.secure_aggregation)


# -- node side --------------------------------------------------------------------------------
class NodeSecAgg:
    """One node's secure-aggregation clients (one per round, kept until the round's reveal)."""

    def __init__(self, agent, spec):
        if agent is None:
            raise SecAggError(
                "secure aggregation over Flower needs a trusted task (keys registered on the "
                "ledger); without them the relay could substitute an org's keys"
            )
        self.agent = agent
        self.spec = spec
        self.config = config_of(spec)
        self.clients: dict[int, SecAggClient] = {}

    def _client(self, round_: int) -> SecAggClient:
        c = self.clients.get(round_)
        if c is None:
            raise SecAggError(
                f"{self.agent.name} has no secure-aggregation keys for round {round_}"
            )
        return c

    def keys(self, round_: int, n_samples: int) -> Payload:
        directory = {n: self.agent.directory[n] for n in self.spec.participants}
        c = SecAggClient(
            self.agent.identity,
            self.spec.participants,
            directory,
            self.agent.task_hex,
            round_,
            self.config,
        )
        self.clients = {r: v for r, v in self.clients.items() if r >= round_ - 1}
        self.clients[round_] = c
        return Payload({"org": self.agent.name}, {"advert": _arr(c.advertise(n_samples))})

    def shares(self, round_: int, p: Payload) -> Payload:
        names = self.spec.participants
        adverts = {names[int(k[4:])]: _blob(v) for k, v in p.arrays.items() if k.startswith("adv_")}
        out = self._client(round_).share_keys(adverts)
        return Payload(
            {"org": self.agent.name}, {f"to_{names.index(o)}": _arr(b) for o, b in out.items()}
        )

    def masked(self, round_: int, p: Payload, update):
        """Receive this node's inbox, then mask ``update`` (a plain
        :class:`~matswarm.protocol.Update`)."""
        names = self.spec.participants
        c = self._client(round_)
        c.receive_shares(
            {names[int(k[5:])]: _blob(v) for k, v in p.arrays.items() if k.startswith("from_")}
        )
        return masked_update(update, c.mask(update.vector, update.n_samples))

    def reveal(self, round_: int, p: Payload) -> Payload:
        surv = [s for s in str(p.config["survivors"]).split(",") if s]
        dropped = [s for s in str(p.config.get("dropped", "")).split(",") if s]
        blob = self._client(round_).reveal(surv, dropped)
        return Payload({"org": self.agent.name}, {"reveal": _arr(blob)})

    def receive_transcript(self, round_: int, p: Payload) -> None:
        """Keep the relayed transcript for the node's aggregator, store it, anchor it."""
        if "transcript" not in p.arrays:
            raise SecAggError(f"round {round_}: the relay sent no secure-aggregation transcript")
        blob = _blob(p.arrays["transcript"])
        agent = self.agent
        agent.aggregator.board.put(agent.task_hex, round_, Transcript.from_bytes(blob))
        agent.record_report(round_, TRANSCRIPT_KIND, blob)


# -- coordinator side ---------------------------------------------------------------------------
class RelayBoard:
    """The coordinator's part: routes the secure-aggregation messages and keeps the round's
    public transcript (it holds no key and checks no signature; every node does)."""

    def __init__(self, coordinator):
        self.c = coordinator
        self.config = config_of(coordinator.spec)
        self.directory = None
        self.task = "0x" + coordinator.task_id
        self.adverts: dict[int, dict[str, bytes]] = {}
        self.transcripts: dict[int, bytes] = {}

    def _deadline(self) -> float:
        return time.monotonic() + self.c.spec.round_deadline_s

    def setup(self, round_: int, orgs: list) -> dict[str, Payload]:
        """Key adverts and share exchange among ``orgs``; returns each org's train payload
        extras (its inbox). Orgs that do not answer in time are left out of the round."""
        names = self.c.spec.participants
        reps = self.c.link.cycle(
            {o.name: (o.node_id, "query.secagg_keys", self._ask(round_)) for o in orgs},
            self._deadline(),
            group=str(round_),
        )
        adverts = {n: _blob(r.arrays["advert"]) for n, r in reps.items() if "error" not in r.config}
        self._drop_failed(orgs, reps)
        self.adverts[round_] = adverts
        ask = self._ask(round_)
        for n, b in adverts.items():
            ask.arrays[f"adv_{names.index(n)}"] = _arr(b)
        live = [o for o in orgs if o.name in adverts]
        reps = self.c.link.cycle(
            {o.name: (o.node_id, "query.secagg_shares", ask) for o in live},
            self._deadline(),
            group=str(round_),
        )
        self._drop_failed(live, reps)
        inbox: dict[str, Payload] = {o.name: Payload() for o in live if o.name in reps}
        for sender, rep in reps.items():
            if "error" in rep.config:
                continue
            for k, v in rep.arrays.items():
                to = names[int(k[3:])]
                if to in inbox:
                    inbox[to].arrays[f"from_{names.index(sender)}"] = v
        return inbox

    def _ask(self, round_: int) -> Payload:
        return Payload({"task": self.c.spec.name, "round": round_})

    def _drop_failed(self, orgs, reps) -> None:
        for o in orgs:
            r = reps.get(o.name)
            if r is None:
                self.c._drop(o, "no secure-aggregation answer before the deadline")
            elif "error" in r.config:
                self.c._drop(o, str(r.config["error"]))

    def mark(self, round_: int, updates: list) -> list:
        """Engine transform on the coordinator: the nodes' replies are masked inputs."""
        return [replace(u, task=self.task, kind="masked") for u in updates]

    def transcript(self, task: str, round_: int, survivors) -> Transcript:
        if round_ in self.transcripts:
            return Transcript.from_bytes(self.transcripts[round_])
        adverts = self.adverts.get(round_, {})
        names = self.c.spec.participants
        dropped = sorted(set(adverts) - set(survivors), key=names.index)
        ask = self._ask(round_)
        ask.config["survivors"] = ",".join(sorted(survivors, key=names.index))
        ask.config["dropped"] = ",".join(dropped)
        orgs = [o for o in self.c.orgs.values() if o.name in survivors and o.node_id is not None]
        reps = self.c.link.cycle(
            {o.name: (o.node_id, "query.secagg_reveal", ask) for o in orgs},
            self._deadline(),
            group=str(round_),
        )
        reveals = {n: _blob(r.arrays["reveal"]) for n, r in reps.items() if "error" not in r.config}
        t = Transcript(dict(adverts), reveals)
        self.transcripts = {r: b for r, b in self.transcripts.items() if r >= round_ - 1}
        self.transcripts[round_] = t.to_bytes()
        return t
