"""The coordinator: an untrusted relay that drives :class:`~matswarm.protocol.RoundEngine` over
Flower messages.

It runs inside the Flower ServerApp (deployment) or on the in-process :class:`LocalGrid`
(contract tests), and it never trains, never sees a row, and holds no key. Each organisation is
a :class:`RemoteParticipant` of the one round engine: ``train`` is a ``train.local`` message cycle
to the org's node. For parallel algorithms all orgs are asked at once (the engine then reads the
replies); for ring algorithms every hop is one message cycle (nodes cannot message each other).

Deadlines and dropouts: a round has a deadline (``TaskSpec.round_deadline_s``: the spec's
``relay_deadline_s``, or its round duration). When it passes,
the round proceeds with the orgs that answered if they are at least the quorum; the missing orgs
are recorded (:attr:`TaskResult.dropouts`). With fewer than quorum the task waits, saying what it
waits for ("2 of 3 updates for round 7; missing: org-c"), until ``stall_timeout_s``. An org whose
node comes back (a new SuperNode) is re-admitted at the next round and trains from the latest
finalised global model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.flower.backoff import Backoff
from matswarm.runtime.flower.codec import Payload, from_recorddict, to_recorddict
from matswarm.runtime.flower.node import decode_result
from matswarm.runtime.flower.spec import spec_text

log = logging.getLogger("matswarm.coordinator")


class OrgUnavailable(RuntimeError):
    def __init__(self, org: str, reason: str):
        super().__init__(f"{org}: {reason}")
        self.org = org
        self.reason = reason


class TaskStalled(RuntimeError):
    """Fewer than quorum orgs answered before ``stall_timeout_s``."""


class NodeLink:
    """Push messages and pull replies on a Flower ``Grid`` with a poll loop of our own
    (``Grid.send_and_receive`` of the deployment grid sleeps 3 s between pulls): each wait
    polls after ``poll_s``, backing off to ``longest_s`` while no reply comes
    (:mod:`~matswarm.runtime.flower.backoff`: every pull costs the SuperLink CPU that the
    nodes' work competes for)."""

    def __init__(self, grid, poll_s: float = 0.02, longest_s: float = 0.25):
        self.grid = grid
        self.poll_s = poll_s
        self.longest_s = max(longest_s, poll_s)

    def push(self, node_id: int, message_type: str, payload: Payload, group: str = "") -> str:
        from flwr.app import Message

        msg = Message(
            to_recorddict(payload), dst_node_id=node_id, message_type=message_type, group_id=group
        )
        return next(iter(self.grid.push_messages([msg])))

    def wait(
        self,
        pending: dict[str, str],
        deadline: float | None,
        on_wait: Callable[[set[str]], None] | None = None,
        every_s: float = 5.0,
    ) -> dict[str, Payload]:
        """Collect replies for ``pending`` (message id -> key) until all arrived or ``deadline``.

        ``on_wait(keys still missing)`` is called every ``every_s`` seconds while waiting.
        """
        out: dict[str, Payload] = {}
        left = dict(pending)
        backoff = Backoff(self.poll_s, self.longest_s)
        next_note = time.monotonic() + min(every_s, 1.0)
        while left:
            for msg in self.grid.pull_messages(list(left)):
                key = left.pop(msg.metadata.reply_to_message_id, None)
                if key is None:
                    continue
                backoff.reset()  # replies come in bunches: the others are likely close
                if msg.has_error():
                    err = msg.error
                    out[key] = Payload({"error": f"flower error {err.code}: {err.reason}"})
                else:
                    out[key] = from_recorddict(msg.content)
            if not left:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if on_wait is not None and now >= next_note:
                on_wait(set(left.values()))
                next_note = now + every_s
            pause = backoff.next()
            if deadline is not None:
                pause = min(pause, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)
        return out

    def cycle(
        self,
        requests: dict[str, tuple[int, str, Payload]],
        deadline: float | None,
        group: str = "",
        on_wait: Callable[[set[str]], None] | None = None,
    ) -> dict[str, Payload]:
        pending = {self.push(nid, mt, p, group): key for key, (nid, mt, p) in requests.items()}
        return self.wait(pending, deadline, on_wait)


@dataclass
class OrgState:
    name: str
    node_id: int | None = None
    n_samples: int = 0
    joined: bool = False


class RemoteParticipant:
    """An organisation as the round engine sees it; ``train`` is a message cycle to its node."""

    def __init__(self, coordinator: FlowerCoordinator, org: OrgState):
        self._c = coordinator
        self._org = org
        self.name = org.name
        self.prefetched: tuple[int, np.ndarray, object] | None = None

    @property
    def n_samples(self) -> int:
        return self._org.n_samples

    def train(self, round_: int, start_params: np.ndarray, ring_in):
        pre = self.prefetched
        if (
            pre is not None
            and pre[0] == round_
            and ring_in is None
            and np.array_equal(pre[1], start_params)
        ):
            self.prefetched = None
            return pre[2]
        return self._c.train_one(self._org, round_, start_params, ring_in)


@dataclass
class TaskResult:
    """What the coordinator saw: per-round hashes and who took part or was missing."""

    task: str
    rounds: list[dict] = field(default_factory=list)
    dropouts: dict[int, list[str]] = field(default_factory=dict)
    final_hash: str = ""
    resumed_from: int = 0
    run: object = None  # matswarm.protocol.TaskRun

    @property
    def hashes(self) -> list[str]:
        return [r["global_hash"] for r in self.rounds]

    def to_json(self) -> dict:
        return {
            "task": self.task,
            "rounds": self.rounds,
            "dropouts": {str(k): v for k, v in self.dropouts.items()},
            "final_hash": self.final_hash,
            "resumed_from": self.resumed_from,
        }


class FlowerCoordinator:
    """Runs one task over a Flower grid. ``hooks`` are the engine's trust hooks (optional)."""

    def __init__(
        self,
        grid,
        spec: TaskSpec,
        *,
        task_id: str | None = None,
        hooks=None,
        status_path: str | Path | None = None,
        stall_timeout_s: float | None = None,
        join_timeout_s: float = 120.0,
        probe_timeout_s: float = 10.0,
        poll_s: float = 0.02,
        notify: Callable[[str], None] | None = None,
    ):
        self.grid = grid
        self.spec = spec
        #: Trusted task: its ledger task id (hex); nodes check the spec against the ledger's.
        self.task_id = (task_id or "").removeprefix("0x")
        self.link = NodeLink(grid, poll_s)
        self.hooks = hooks
        self.status_path = Path(status_path) if status_path else None
        self.stall_timeout_s = (
            stall_timeout_s if stall_timeout_s is not None else 10 * spec.round_deadline_s
        )
        self.join_timeout_s = join_timeout_s
        self.probe_timeout_s = probe_timeout_s
        self.notify = notify or (lambda line: log.info("%s", line))
        self.orgs = {name: OrgState(name) for name in spec.participants}
        self.stats: Payload | None = None
        self.result = TaskResult(spec.name)
        self.engine = None
        self._round = 0
        self._dead_nodes: set[int] = set()
        self._hello_pending: dict[str, int] = {}  # message id -> node id
        self._stats: dict[str, Payload] = {}
        self._hellos: dict[str, Payload] = {}
        self.resumed_from = 0  # last round finalised before this coordinator started
        self._resume_model: np.ndarray | None = None
        self.refusals: dict[str, str] = {}
        self.envelopes: dict[int, dict[str, np.ndarray]] = {}  # round -> org -> sealed update
        self.ledger_grace_s = 60.0  # extra wait for ledger transactions in a trusted round
        #: The secure-aggregation relay (matswarm.runtime.flower.secagg.RelayBoard), if on.
        self.secagg = None
        #: Bytes of the training replies' update arrays per round (parallel algorithms).
        self.update_bytes: dict[int, int] = {}
        #: Private task: round -> org -> the DP epsilon that org reports spent after it.
        self.epsilon: dict[int, dict[str, float]] = {}
        if self.task_id and hooks is None:
            from matswarm.runtime.flower.trust import RelayHooks

            self.hooks = RelayHooks(self)

    # -- status -------------------------------------------------------------------------------
    def _status(self, state: str, waiting: str = "") -> None:
        line = f"[{self.spec.name}] {state}" + (f": {waiting}" if waiting else "")
        self.notify(line)
        if self.status_path is not None:
            self.status_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.status_path.with_suffix(".tmp")
            tmp.write_text(
                json.dumps(
                    {
                        "state": state,
                        "waiting_for": waiting,
                        "round": self._round,
                        **self.result.to_json(),
                    },
                    indent=1,
                )
            )
            tmp.replace(self.status_path)

    def fail(self, reason: str) -> None:
        """Record that the task stopped (for ``matswarm task run`` and the status file)."""
        self._status("failed", reason)

    def live(self) -> list[OrgState]:
        return [o for o in self.orgs.values() if o.joined and o.node_id is not None]

    def _drop(self, org: OrgState, reason: str) -> None:
        # The node id stays askable: an org whose node restarts with the same key comes back
        # on the same id and must be found again by the next hello (``discover``).
        org.joined = False
        org.node_id = None
        self.notify(f"[{self.spec.name}] {org.name} dropped out: {reason}")

    # -- discovery and setup ------------------------------------------------------------------
    def _spec_payload(self, extra: Payload | None = None) -> Payload:
        p = Payload({"spec": spec_text(self.spec), "task": self.spec.name})
        if self.task_id:
            p.config["task_id"] = self.task_id
        if extra is not None:
            p.config.update(extra.config)
            p.arrays.update(extra.arrays)
        return p

    def discover(self, until: float, first_answer_by: float | None = None) -> None:
        """Ask every not-yet-mapped node who it is and whether it takes the task
        (``query.hello`` with the spec); a node is asked once, its answer awaited across calls
        (a SuperNode's first message can take many seconds). A node asked for the first time is
        waited for until ``first_answer_by``, if later than ``until``."""
        known = {o.node_id for o in self.orgs.values() if o.node_id is not None}
        asked = set(self._hello_pending.values())
        pushed = False
        for n in self.grid.get_node_ids():
            if n not in known and n not in self._dead_nodes and n not in asked:
                self._hello_pending[self.link.push(n, "query.hello", self._spec_payload())] = n
                pushed = True
        if not self._hello_pending:
            return
        if pushed and first_answer_by is not None:
            until = max(until, first_answer_by)
        replies = self.link.wait({m: str(n) for m, n in self._hello_pending.items()}, until)
        answered = {int(k) for k in replies}
        self._hello_pending = {m: n for m, n in self._hello_pending.items() if n not in answered}
        for key, rep in replies.items():
            name = str(rep.config.get("org", ""))
            if name not in self.orgs:
                continue  # a node of another org: not ours
            if "error" in rep.config:
                self.refusals[name] = str(rep.config["error"])
                continue
            org = self.orgs[name]
            if org.node_id is not None and org.node_id != int(key):
                self._dead_nodes.add(org.node_id)  # the org came back on a new node
            org.node_id = int(key)
            org.joined = False
            self._stats[name] = rep
            self._hellos[name] = rep

    def setup(self) -> None:
        """Map orgs to nodes, gather scaling statistics from every org, and join them all."""
        t_end = time.monotonic() + self.join_timeout_s
        while True:
            self.discover(until=min(time.monotonic() + self.probe_timeout_s, t_end))
            for name, why in self.refusals.items():
                raise OrgUnavailable(name, f"refused the task: {why}")
            missing = [o.name for o in self.orgs.values() if o.node_id is None]
            if not missing:
                break
            self._status(
                "waiting",
                f"{len(self.orgs) - len(missing)} of {len(self.orgs)} "
                f"nodes online for setup; missing: {', '.join(missing)}",
            )
            if time.monotonic() >= t_end:
                raise TaskStalled(f"setup: nodes not online: {', '.join(missing)}")
            time.sleep(0.2)
        stats = Payload()
        for i, name in enumerate(self.spec.participants):
            rep = self._stats[name]
            stats.config[f"count_{i}"] = int(rep.config["count"])
            for k in ("x_sum", "x_sumsq", "y_sum", "y_sumsq", "x_count"):
                if k in rep.arrays:  # x_count: per-column counts of an org holding a subset
                    stats.arrays[f"{k}_{i}"] = rep.arrays[k]
        self.stats = stats
        self._find_resume_point()
        self._join([o for o in self.orgs.values() if not o.joined], t_end)
        missing = [o.name for o in self.orgs.values() if not o.joined]
        if missing:
            why = self.refusals.get(missing[0], "no answer")
            raise OrgUnavailable(missing[0], f"did not join: {why}")

    def _find_resume_point(self) -> None:
        """A trusted task that already ran rounds (this coordinator restarted): continue after
        the last round a quorum of nodes finalised with the same model. Nodes that kept the
        task keep their state (model, optimiser, aggregator replica); nothing is redone."""
        if not self.task_id:
            return
        votes: dict[tuple[int, str], list[str]] = {}
        for name, rep in self._hellos.items():
            if rep.config.get("joined") and int(rep.config.get("latest_round", 0)) > 0:
                key = (int(rep.config["latest_round"]), str(rep.config["latest_hash"]))
                votes.setdefault(key, []).append(name)
        agreed = [k for k, names in votes.items() if len(names) >= self.spec.effective_quorum]
        if not agreed:
            return
        from matswarm.protocol import vector_hash

        k, h = max(agreed)
        model = np.asarray(self._hellos[votes[(k, h)][0]].arrays["latest"], dtype=np.float32)
        if vector_hash(model) != h:
            raise RuntimeError(f"a node reported round {k}'s model with a wrong hash")
        self.resumed_from, self._resume_model = k, model
        self.result.resumed_from = k
        for name, rep in self._hellos.items():  # keep every node that still has the task
            if rep.config.get("joined"):
                self.orgs[name].joined = True
                self.orgs[name].n_samples = int(rep.config["n_samples"])
        self.notify(
            f"[{self.spec.name}] resuming after round {k} ({h[:12]}…), finalised by "
            f"{', '.join(votes[(k, h)])}"
        )

    def _join(self, orgs: Iterable[OrgState], deadline: float) -> None:
        assert self.stats is not None
        reqs = {o.name: (o.node_id, "query.join", self._spec_payload(self.stats)) for o in orgs}
        for name, rep in self.link.cycle(reqs, deadline).items():
            if "error" in rep.config:
                self.refusals[name] = str(rep.config["error"])
                self.notify(f"[{self.spec.name}] {name} refused to join: {rep.config['error']}")
                continue
            self.orgs[name].n_samples = int(rep.config["n_samples"])
            self.orgs[name].joined = True

    def readmit(self) -> None:
        """Before a round: let orgs that dropped out and came back on a new node rejoin."""
        if all(o.joined for o in self.orgs.values()):
            return
        # Waits only for nodes asked for the first time; late answers count next round.
        now = time.monotonic()
        self.discover(until=now, first_answer_by=now + self.probe_timeout_s)
        back = [o for o in self.orgs.values() if o.node_id is not None and not o.joined]
        if back:
            self._join(back, time.monotonic() + self.probe_timeout_s)
            for o in back:
                if o.joined:
                    self.notify(f"[{self.spec.name}] {o.name} rejoined at round {self._round}")

    # -- training -----------------------------------------------------------------------------
    def _train_payload(self, round_: int, start: np.ndarray, ring_in) -> Payload:
        p = Payload(
            {"task": self.spec.name, "round": round_},
            {"start": np.asarray(start, dtype=np.float32)},
        )
        if ring_in is not None:
            p.config["ring_in"] = True
            if ring_in.statistics is not None:
                p.arrays["ring_stats"] = ring_in.statistics
            if ring_in.params is not None:
                p.arrays["ring_params"] = ring_in.params
        return p

    def _deadline(self) -> float:
        return self._round_started + self.spec.round_deadline_s

    def train_one(self, org: OrgState, round_: int, start: np.ndarray, ring_in):
        """One ring hop (or a non-prefetched training request): a single message cycle."""
        if org.node_id is None or not org.joined:
            raise OrgUnavailable(org.name, "not connected")
        reps = self.link.cycle(
            {org.name: (org.node_id, "train.local", self._train_payload(round_, start, ring_in))},
            self._deadline(),
            group=str(round_),
            on_wait=lambda _m: self._status("running", f"round {round_}: ring hop at {org.name}"),
        )
        rep = reps.get(org.name)
        if rep is None:
            raise OrgUnavailable(org.name, f"no update before the round {round_} deadline")
        if "error" in rep.config:
            raise OrgUnavailable(org.name, str(rep.config["error"]))
        return decode_result(rep)

    def _parallel(self, round_: int, g: np.ndarray, orgs: list[OrgState]) -> dict[str, object]:
        """Ask every live org at once; wait for all, or the deadline (then >= quorum)."""
        q = self.spec.effective_quorum
        payload = self._train_payload(round_, g, None)
        inbox: dict[str, Payload] = {}
        if self.secagg is not None:  # key adverts and shares first; each node gets its inbox
            inbox = self.secagg.setup(round_, orgs)
            orgs = [o for o in orgs if o.name in inbox]
        pending = {}
        for o in orgs:
            p = payload
            if o.name in inbox:
                p = Payload(dict(payload.config), {**payload.arrays, **inbox[o.name].arrays})
            pending[self.link.push(o.node_id, "train.local", p, str(round_))] = o.name
        got: dict[str, Payload] = {}
        stall_end = self._round_started + self.stall_timeout_s

        def note(missing: set[str]) -> None:
            absent = set(missing) | (set(self.spec.participants) - {o.name for o in orgs})
            have = len(self.spec.participants) - len(absent)
            self._status(
                "waiting",
                f"{have} of {len(self.spec.participants)} updates for round {round_}"
                f"; missing: {', '.join(sorted(missing))}",
            )

        got.update(self.link.wait(pending, self._deadline(), note))
        if len(got) < q:  # stalled: keep waiting for the quorum, saying for whom
            rest = {mid: k for mid, k in pending.items() if k not in got}
            while len(got) < q and time.monotonic() < stall_end:
                note({k for k in rest.values() if k not in got})
                got.update(
                    self.link.wait(
                        {m: k for m, k in rest.items() if k not in got},
                        min(time.monotonic() + 5.0, stall_end),
                    )
                )
            if len(got) < q:
                missing = sorted(set(self.spec.participants) - set(got))
                raise TaskStalled(
                    f"{len(got)} of {len(self.spec.participants)} updates for round "
                    f"{round_} (quorum {q}); missing: {', '.join(missing)}"
                )
        if len(got) < len(orgs):
            missing = sorted(set(self.spec.participants) - set(got))
            self._status(
                "running",
                f"round {round_} deadline: proceeding with {len(got)} of "
                f"{len(self.spec.participants)} updates (quorum {q}); "
                f"missing: {', '.join(missing)}",
            )
        results = {}
        for name, rep in got.items():
            if "error" in rep.config:
                self._drop(self.orgs[name], str(rep.config["error"]))
                continue
            results[name] = decode_result(rep)
            if "epsilon_spent" in rep.config:  # the org's own accountant (private task)
                self.epsilon.setdefault(round_, {})[name] = float(rep.config["epsilon_spent"])
            # What the relay aggregates from: the model, its masked or its compressed update.
            sent = next(
                rep.arrays[k] for k in ("update", "masked", "gradient", "params") if k in rep.arrays
            )
            self.update_bytes[round_] = self.update_bytes.get(round_, 0) + int(sent.nbytes)
            if "envelope" in rep.arrays:
                self.envelopes.setdefault(round_, {})[name] = rep.arrays["envelope"]
        for o in orgs:
            if o.name not in got:
                self._drop(o, f"no update before the round {round_} deadline")
        return results

    def run(self, start_round: int = 1):
        """Set up, then run every round; returns :class:`TaskResult` (with ``run``)."""
        from matswarm.protocol import Aggregator, RoundEngine
        from matswarm.runtime.inprocess import configure_torch

        configure_torch()
        spec = self.spec
        algo = spec.build_algorithm()
        rule = spec.build_rule()
        if len(spec.participants) < rule.min_participants():
            raise ValueError(
                f"aggregation rule {rule.describe()} needs at least "
                f"{rule.min_participants()} organisations"
            )
        self._status("setup")
        self.setup()
        initial = spec.initial_params()
        proxies = {name: RemoteParticipant(self, self.orgs[name]) for name in spec.participants}
        aggregator = Aggregator(algo, rule, list(spec.participants), initial)
        if spec.secure_aggregation is not None:
            aggregator = self._secure_aggregator(algo, rule, initial)
        engine = RoundEngine(
            spec.name, algo, aggregator, list(proxies.values()), initial, self.hooks
        )
        if self.secagg is not None:
            engine.transforms.append(self.secagg.mark)
        self.engine = engine
        q = spec.effective_quorum
        if self._resume_model is not None:
            engine.run_state.global_params = self._resume_model.copy()
            start_round = max(start_round, self.resumed_from + 1)
        for t in range(start_round, algo.rounds + 1):
            self._round = t
            self.readmit()
            missing_round: set[str] = set()
            while True:
                self._round_started = time.monotonic()
                live = [o for o in self.live() if o.name in proxies]
                live.sort(key=lambda o: spec.participants.index(o.name))
                missing_round |= {n for n in spec.participants if n not in {o.name for o in live}}
                if len(live) < q:
                    self._wait_for_quorum(t)
                    continue
                g = engine.run_state.global_params
                if not algo.ring:
                    results = self._parallel(t, g, live)
                    live = [o for o in live if o.name in results]
                    for o in live:
                        proxies[o.name].prefetched = (t, g, results[o.name])
                    if len(live) < q:
                        continue
                engine.participants = [proxies[o.name] for o in live]
                carry = engine.ring_carry
                try:
                    record = engine.run_round(t)
                    break
                except OrgUnavailable as exc:  # a ring hop timed out: redo the round without it
                    engine.ring_carry = carry
                    self._drop(self.orgs[exc.org], exc.reason)
                    missing_round.add(exc.org)
            missing = sorted(set(spec.participants) - set(record.participants))
            if missing:
                self.result.dropouts[t] = missing
            self.result.rounds.append(
                {
                    "round": t,
                    "global_hash": record.global_hash,
                    "participants": list(record.participants),
                    "missing": missing,
                    "train_loss": record.train_loss,
                    "update_bytes": self.update_bytes.get(t),
                    **({"epsilon_spent": self.epsilon[t]} if t in self.epsilon else {}),
                }
            )
            dp = ""
            if t in self.epsilon:
                dp = (
                    f"; DP epsilon spent {max(self.epsilon[t].values()):.3f} of "
                    f"{spec.privacy['epsilon']}"
                )
            self._status(
                "running",
                f"round {t} of {algo.rounds} final ({record.global_hash[:12]}"
                f"…; {len(record.participants)} of {len(spec.participants)} orgs{dp})",
            )
        g = engine.run_state.global_params
        from matswarm.protocol import vector_hash

        self.result.final_hash = vector_hash(g)
        fin = Payload({"task": spec.name}, {"global": g})
        self.link.cycle(
            {o.name: (o.node_id, "query.finish", fin) for o in self.live()},
            time.monotonic() + self.probe_timeout_s,
        )
        self.result.run = engine.run_state
        self._status("finished", f"final model {self.result.final_hash[:12]}…")
        return self.result

    def _secure_aggregator(self, algo, rule, initial):
        """Secure aggregation: this relay routes the protocol's messages and unmasks only the
        sum (as every node does); the task must be trusted and the rule the mean."""
        from matswarm.privacy.secagg_round import SecureAggregator, require_sum_rule
        from matswarm.runtime.flower.secagg import RelayBoard

        require_sum_rule(rule, len(self.spec.participants))
        if not self.task_id or algo.ring:
            raise ValueError(
                "secure aggregation over Flower needs a trusted task (keys registered on the "
                "ledger) and a parallel algorithm"
            )
        self.secagg = RelayBoard(self)
        return SecureAggregator(algo, self.spec.participants, initial, self.secagg)

    def _wait_for_quorum(self, round_: int) -> None:
        q = self.spec.effective_quorum
        end = time.monotonic() + self.stall_timeout_s
        while time.monotonic() < end:
            live = {o.name for o in self.live()}
            if len(live) >= q:
                return
            missing = [n for n in self.spec.participants if n not in live]
            self._status(
                "waiting",
                f"{len(live)} of {len(self.spec.participants)} orgs connected for "
                f"round {round_} (quorum {q}); missing: {', '.join(missing)}",
            )
            time.sleep(2.0)
            self.readmit()
        raise TaskStalled(f"round {round_}: fewer than {q} orgs connected")
