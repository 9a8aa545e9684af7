"""An organisation's long-lived node: its private table, its model, its optimiser, its checks.

:class:`OrgService` is the org's side of the Flower runtime. It is created once per node process
(``matswarm node start``), so torch is imported and the table is read once; the Flower ClientApp
that the coordinator's run executes is only a shim that forwards each message here over the
local channel (:mod:`matswarm.runtime.flower.channel`). Everything trust-relevant happens here,
in code the org installed: the task's code hashes are checked against this installation, the
task's participant list must name this org, and training always uses this org's own rows.

Requests (``kind``): ``hello`` (who am I, which code; for a task spec: a refusal or the
per-column sufficient statistics for the federated standardiser), ``join`` (build the org's
model for the task), ``train`` (one local round), ``finish`` (store the final model).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.flower.codec import Payload
from matswarm.runtime.flower.spec import (
    SpecError,
    check_code,
    check_initial,
    installed_code,
    load_spec,
)

log = logging.getLogger("matswarm.node")

# Several org services share one process in tests (InProcessCluster); building a model seeds
# torch's process-global generator, so builds must not interleave.
_TORCH_SEED_LOCK = threading.Lock()


class NodeRefusal(RuntimeError):
    """The node declines a request; the reason travels back to the coordinator."""


@dataclass
class _Joined:
    spec: TaskSpec
    node: object  # matswarm.protocol.OrgNode
    last_round: int = 0
    agent: object = None  # matswarm.protocol.trusted.OrgAgent (trusted tasks)
    latest: np.ndarray | None = None  # latest global model this node finalised itself
    latest_round: int = 0
    # Replies of the last train/aggregate, keyed by (round, start model hash) / (round, role): a
    # coordinator that restarts mid-round asks again and gets the very same answer (the
    # commitment on the ledger is for that update), never a second training step.
    last_train: tuple[tuple[int, str], Payload] | None = None
    last_aggregate: tuple[tuple[int, str], Payload] | None = None
    #: Secure-aggregation clients (matswarm.runtime.flower.secagg.NodeSecAgg) of the task.
    secagg: object = None
    #: Update compression with this org's residual (matswarm.compression.Compression).
    compressor: object = None
    #: Differential privacy of the task (matswarm.privacy.PrivacyPlan), None without.
    privacy: object = None


def stats_payload(x_stats, y_stats) -> Payload:
    """An org's scaling statistics; ``x_count`` (per column) only when the org holds a subset
    of the task's features (heterogeneous feature spaces)."""
    arrays = {
        "x_sum": x_stats.sum,
        "x_sumsq": x_stats.sumsq,
        "y_sum": y_stats.sum,
        "y_sumsq": y_stats.sumsq,
    }
    if np.ndim(x_stats.count):
        arrays["x_count"] = np.asarray(x_stats.count, dtype=np.float64)
    return Payload({"count": int(np.asarray(y_stats.count).max())}, arrays)


class OrgService:
    """The org's private state and its answers to the coordinator's requests."""

    def __init__(
        self,
        org: str,
        data: str | Path,
        workdir: str | Path | None = None,
        trust=None,  # NodeTrustConfig: this org's keystore, ledger and store
        noise_seed: int | None = None,
    ):
        from matswarm.data import read_table
        from matswarm.runtime.inprocess import configure_torch

        configure_torch()
        self.org = org
        self.data_path = Path(data)
        self.table = read_table(self.data_path)  # read once, kept in memory
        self.workdir = Path(workdir) if workdir else None
        self.tasks: dict[str, _Joined] = {}
        self.started = time.time()
        self.trust_config = trust
        #: DP noise and sampling of private tasks: None draws from this node's OS entropy;
        #: a seed (reproducible experiments only: anyone who knows it can remove the noise).
        self.noise_seed = noise_seed
        self._trust = None
        self._lock = threading.Lock()

    def trust(self):
        from matswarm.runtime.flower.trust import NodeTrust

        if self.trust_config is None:
            raise NodeRefusal(
                f"{self.org} has no ledger configuration (node start --identity/--ledger): "
                "it takes no trusted task"
            )
        if self._trust is None:
            self._trust = NodeTrust(self.org, self.trust_config)
        return self._trust

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, kind: str, p: Payload) -> Payload:
        with self._lock:  # one request at a time (channel and in-node executor alike)
            return self._handle(kind, p)

    def _handle(self, kind: str, p: Payload) -> Payload:
        try:
            fn = getattr(self, f"_on_{kind}", None)
            if fn is None:
                raise NodeRefusal(f"unknown request {kind!r}")
            return fn(p)
        except (NodeRefusal, SpecError, ValueError) as exc:
            log.warning("%s: refused %s: %s", self.org, kind, exc)
            # e.g. which org leads a round (trust.NotLeader), whose claim it refuses
            reply = getattr(exc, "reply", {})
            return Payload({"error": str(exc), "org": self.org, **reply})
        except Exception as exc:  # reported to the coordinator instead of a silent timeout
            log.exception("%s: %s failed", self.org, kind)
            return Payload(
                {"error": f"{kind} failed: {type(exc).__name__}: {exc}", "org": self.org}
            )

    def _spec(self, p: Payload) -> TaskSpec:
        spec = load_spec(str(p.config["spec"]))
        check_code(spec)
        if self.org not in spec.participants:
            raise NodeRefusal(f"{self.org} is not a participant of task {spec.name!r}")
        return spec

    def _encoded(self, spec: TaskSpec):
        from matswarm.data import TaskSchema
        from matswarm.data.featurize import prepare_table

        table = prepare_table(self.table, str(self.data_path), spec.featurizer)
        # (X, y, mask): mask marks the features this org holds when the schema declares
        # per-org feature sets (None: it holds them all).
        return TaskSchema.from_dict(spec.schema).encode_org(table, str(self.data_path), self.org)

    # -- requests -----------------------------------------------------------------------------
    def _on_hello(self, p: Payload) -> Payload:
        """Who this node is; with a task spec also its answer to the task: a refusal, or the
        per-column sufficient statistics the federated standardiser needs (never rows)."""
        from matswarm.data import MomentStats

        task = str(p.config.get("task", ""))
        joined = self.tasks.get(task)
        hashes = installed_code()
        out = Payload(
            {
                "org": self.org,
                "code_train": hashes["train"],
                "code_aggregation": hashes["aggregation"],
                "joined": joined is not None,
                "last_round": joined.last_round if joined else 0,
            }
        )
        if joined is not None:
            out.config["n_samples"] = int(joined.node.n_samples)  # type: ignore[attr-defined]
            if joined.agent is not None and joined.latest is not None:
                # Progress of a trusted task: the last round this node finalised and voted.
                from matswarm.protocol import vector_hash

                out.config["latest_round"] = joined.latest_round
                out.config["latest_hash"] = vector_hash(joined.latest)
                out.arrays["latest"] = np.asarray(joined.latest, dtype=np.float32)
        if "spec" in p.config:
            spec = self._spec(p)  # refuses (with the reason) a task this node must not run
            X, y, mask = self._encoded(spec)
            stats = stats_payload(MomentStats.of(X, mask), MomentStats.of(y))
            out.config.update(stats.config)
            out.arrays.update(stats.arrays)
        return out

    def _on_join(self, p: Payload) -> Payload:
        from matswarm.data import MomentStats, StandardizedOrg, Standardizer
        from matswarm.protocol import OrgNode

        spec = self._spec(p)
        X, y, mask = self._encoded(spec)
        # Per-org statistics in task order; this org's own entry must be what it sent.
        xs, ys = [], []
        for i, name in enumerate(spec.participants):
            cnt = int(p.config[f"count_{i}"])
            xcnt = cnt
            if f"x_count_{i}" in p.arrays:  # the org holds a subset of the features
                xcnt = p.array(f"x_count_{i}", "<f8").astype(np.int64)
            xs.append(
                MomentStats(xcnt, p.array(f"x_sum_{i}", "<f8"), p.array(f"x_sumsq_{i}", "<f8"))
            )
            ys.append(
                MomentStats(cnt, p.array(f"y_sum_{i}", "<f8"), p.array(f"y_sumsq_{i}", "<f8"))
            )
            if name == self.org:
                own = MomentStats.of(X, mask)
                if not np.array_equal(xcnt, own.count) or not np.array_equal(xs[-1].sum, own.sum):
                    raise NodeRefusal("the statistics relayed for this org are not its own")
        x_total = MomentStats.combine(xs)
        std = Standardizer.from_stats(x_total, MomentStats.combine(ys))
        task = spec.schema.get("task", "regression")
        if task == "classification":  # 0/1 labels are not scaled
            std = std.with_identity_y()
        Xs = std.transform_x(X)
        if np.ndim(x_total.count):
            # Heterogeneous feature spaces (as FederatedDataset.standardized): a column this org
            # does not hold, or that no org holds, is never filled with anyone's data: 0, or
            # NaN for the mask-aware models.
            from matswarm.models.masked import MASK_AWARE

            fill = np.float32(np.nan if spec.model.get("name") in MASK_AWARE else 0.0)
            if mask is not None:
                Xs[:, ~mask] = fill
            Xs[:, np.asarray(x_total.count) == 0] = fill
        data = StandardizedOrg(self.org, Xs, std.transform_y(y), task)
        algo = spec.build_algorithm()
        with _TORCH_SEED_LOCK:  # model init seeds torch's global generator
            model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
            initial = spec.initial_params()
        index = spec.participants.index(self.org)
        node = OrgNode(data, model, algo, spec.seed, index)
        plan = None
        if spec.privacy is not None:  # DP-SGD as in-process: the same plan and wrapper
            from matswarm.privacy.dp import private_org

            rows = {n: int(p.config[f"count_{i}"]) for i, n in enumerate(spec.participants)}
            # Refuses (BudgetError, naming the fields) a budget exhausted before the last round.
            plan = spec.build_privacy().plan(algo, spec.rule, rows, spec.model_spec().name)
            node = private_org(node, plan, index, self.noise_seed)  # this node's own noise
        joined = _Joined(spec, node)
        joined.privacy = plan
        task_id = str(p.config.get("task_id", ""))
        if task_id:  # a trusted task: checked against the ledger (initial model included)
            joined.latest = initial
            joined.agent = self.trust().open_task(spec, task_id, joined.latest)
        else:
            check_initial(spec, initial)
        if spec.secure_aggregation is not None:
            from matswarm.runtime.flower.secagg import NodeSecAgg

            joined.secagg = NodeSecAgg(joined.agent, spec)  # refuses an untrusted task
        if spec.compression is not None:
            from matswarm.compression import Compression, CompressionSpec

            if spec.secure_aggregation is not None:
                raise NodeRefusal(
                    "compression cannot be combined with secure aggregation (masks cover every "
                    "coordinate in Z_2^32; a quantised or sparse payload would unmask to noise)"
                )

            cs = CompressionSpec(**spec.compression)
            joined.compressor = Compression(
                cs.codec(), spec.participants, spec.seed, cs.error_feedback
            )
        self.tasks[spec.name] = joined
        log.info("%s: joined task %s (%d rows)", self.org, spec.name, data.n)
        return Payload({"org": self.org, "n_samples": data.n})

    def _on_train(self, p: Payload) -> Payload:
        from matswarm.algorithms import RingMessage

        joined = self.tasks.get(str(p.config["task"]))
        if joined is None:
            raise NodeRefusal(f"{self.org} has not joined task {p.config['task']!r}")
        round_ = int(p.config["round"])
        ring_in = None
        if p.config.get("ring_in"):
            ring_in = RingMessage(p.opt_array("ring_stats"), p.opt_array("ring_params"))
        start = p.array("start")
        from matswarm.protocol import vector_hash

        key = (round_, vector_hash(start))
        if joined.last_train is not None and joined.last_train[0] == key:
            return joined.last_train[1]
        if joined.agent is not None:
            self._check_start(joined, round_, start)
        res = joined.node.train(round_, start, ring_in)  # type: ignore[attr-defined]
        joined.last_round = round_
        out = encode_result(res)
        compressed = None
        if joined.compressor is not None:  # the compressed update travels, not the model
            update = plain_update(joined, round_, start, res)
            compressed = joined.compressor(round_, [update])[0]  # type: ignore[operator]
            out = compressed_result(res, compressed)
        if joined.agent is not None:
            from dataclasses import replace

            from matswarm.runtime.flower.trust import trusted_train

            mask = None
            if compressed is not None:  # commit what was sent (named by the ledger task id)
                mask = lambda u: replace(compressed, task=u.task)  # noqa: E731
            if joined.secagg is not None:  # the model never leaves: only the masked update
                mask = lambda u: joined.secagg.masked(round_, p, u)  # noqa: E731
                out = Payload({"org": self.org, "n_samples": res.n_samples, "loss": res.loss})
            sealed = trusted_train(joined, joined.agent, round_, start, res, mask)
            out.config.update(sealed.config)
            out.arrays.update(sealed.arrays)
        if joined.privacy is not None:  # this org's spend after the round (its own plan)
            out.config["epsilon_spent"] = float(res.privacy["epsilon_spent"])
        joined.last_train = (key, out)
        return out

    def _check_start(self, joined: _Joined, round_: int, start: np.ndarray) -> None:
        """A round starts from the model this node finalised itself, or (after missed rounds)
        from the one the ledger finalised: the relay cannot substitute another."""
        from matswarm.protocol import vector_hash

        agent = joined.agent
        if round_ == joined.latest_round + 1:
            expected = vector_hash(joined.latest)
        else:
            final = agent.ledger.round_info(agent.task_id, round_ - 1).final_hash  # type: ignore[attr-defined]
            if final is None:
                raise NodeRefusal(f"round {round_ - 1} is not final on the ledger")
            expected = final.hex()
        if vector_hash(start) != expected:
            raise NodeRefusal(
                f"the start model of round {round_} is not the finalised global "
                f"({vector_hash(start)[:12]}… instead of {expected[:12]}…)"
            )
        joined.latest, joined.latest_round = start, round_ - 1

    def _on_aggregate(self, p: Payload) -> Payload:
        from matswarm.runtime.flower.trust import trusted_aggregate

        joined = self.tasks.get(str(p.config["task"]))
        if joined is None or joined.agent is None:
            raise NodeRefusal(f"{self.org} has no trusted task {p.config['task']!r}")
        round_ = int(p.config["round"])
        # Keyed by role too: in leader mode a relay asks a guessed leader, then the real one.
        key = (round_, str(p.config.get("role", "")))
        if joined.last_aggregate is not None and joined.last_aggregate[0] == key:
            return joined.last_aggregate[1]
        if round_ != joined.latest_round + 1:
            raise NodeRefusal(
                f"aggregate for round {round_}, but this node is at round {joined.latest_round + 1}"
            )
        if joined.secagg is not None:
            joined.secagg.receive_transcript(round_, p)  # type: ignore[attr-defined]
        new_global, out = trusted_aggregate(joined.agent, round_, joined.latest, p)
        joined.latest, joined.latest_round = new_global, round_
        joined.last_aggregate = (key, out)
        return out

    def _secagg(self, p: Payload):
        joined = self.tasks.get(str(p.config["task"]))
        if joined is None or joined.secagg is None:
            raise NodeRefusal(f"{self.org} has no secure-aggregation task {p.config['task']!r}")
        return joined, int(p.config["round"])

    def _on_secagg_keys(self, p: Payload) -> Payload:
        joined, round_ = self._secagg(p)
        return joined.secagg.keys(round_, int(joined.node.n_samples))  # type: ignore[attr-defined]

    def _on_secagg_shares(self, p: Payload) -> Payload:
        joined, round_ = self._secagg(p)
        return joined.secagg.shares(round_, p)  # type: ignore[attr-defined]

    def _on_secagg_reveal(self, p: Payload) -> Payload:
        joined, round_ = self._secagg(p)
        return joined.secagg.reveal(round_, p)  # type: ignore[attr-defined]

    def _on_finish(self, p: Payload) -> Payload:
        from matswarm.protocol import vector_hash

        joined = self.tasks.get(str(p.config["task"]))
        if joined is None:
            raise NodeRefusal(f"{self.org} has not joined task {p.config['task']!r}")
        g = p.array("global")
        h = vector_hash(g)
        if self.workdir is not None:
            out = self.workdir / "models"
            out.mkdir(parents=True, exist_ok=True)
            np.save(out / f"{joined.spec.name}-global.npy", g)
            (out / f"{joined.spec.name}-global.json").write_text(
                json.dumps({"task": joined.spec.name, "sha256": h, "round": joined.last_round})
            )
        return Payload({"org": self.org, "global_hash": h})


def plain_update(joined: _Joined, round_: int, start: np.ndarray, res):
    from matswarm.protocol import Update

    return Update(
        joined.spec.name, round_, res.org, res.update_vector(start), res.n_samples, res.kind
    )


def compressed_result(res, update) -> Payload:
    """A training reply carrying the compressed update message (no model)."""
    from matswarm.protocol.codec import encode_update

    blob = np.frombuffer(encode_update(update), dtype=np.uint8).copy()
    cfg = {"org": res.org, "n_samples": int(res.n_samples), "loss": float(res.loss)}
    return Payload(cfg, {"update": blob})


def encode_result(res) -> Payload:
    """A :class:`~matswarm.algorithms.LocalResult` as a payload (exact bytes)."""
    cfg: dict = {"org": res.org, "n_samples": int(res.n_samples), "loss": float(res.loss)}
    arrays = {"params": np.asarray(res.params, dtype=np.float32)}
    if res.gradient is not None:
        arrays["gradient"] = np.asarray(res.gradient, dtype=np.float32)
    if res.ring_out is not None:
        cfg["ring_out"] = True
        if res.ring_out.statistics is not None:
            arrays["ring_stats"] = np.asarray(res.ring_out.statistics, dtype=np.float32)
        if res.ring_out.params is not None:
            arrays["ring_params"] = np.asarray(res.ring_out.params, dtype=np.float32)
    return Payload(cfg, arrays)


def decode_result(p: Payload):
    from matswarm.algorithms import LocalResult, RingMessage

    ring = None
    if p.config.get("ring_out"):
        ring = RingMessage(p.opt_array("ring_stats"), p.opt_array("ring_params"))
    if "masked" in p.arrays or "update" in p.arrays:
        # Secure aggregation (masked words) or compression (the compressed update message):
        # the relay gets what it aggregates, never the org's model.
        if "masked" in p.arrays:
            vector = p.array("masked")
        else:
            vector = _update_vector(np.asarray(p.arrays["update"], dtype=np.uint8).tobytes())
        return LocalResult(
            org=str(p.config["org"]),
            params=np.zeros(0, dtype=np.float32),
            n_samples=int(p.config["n_samples"]),
            loss=float(p.config["loss"]),
            gradient=vector,
        )
    return LocalResult(
        org=str(p.config["org"]),
        params=p.array("params"),
        n_samples=int(p.config["n_samples"]),
        loss=float(p.config["loss"]),
        ring_out=ring,
        gradient=p.opt_array("gradient"),
    )


def _update_vector(blob: bytes) -> np.ndarray:
    """The (decompressed) vector of an update message."""
    from matswarm.protocol.codec import decode_update

    return decode_update(blob).vector
