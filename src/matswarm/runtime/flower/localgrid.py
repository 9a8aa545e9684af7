"""An in-process Flower ``Grid`` (no Ray, no SuperLink): for contract tests and quick runs.

Messages are real Flower ``Message`` objects and are sent through Flower's protobuf
serialisation in both directions, then handed to the real ClientApp (the shim) of each node on
a worker thread, so payload encoding, the shim and the node channel are exercised exactly as in
deployment; only the transport (SuperLink + SuperNode processes) is replaced. It relies on a few
private Flower details (``TaskIdentity``, ``metadata.__dict__``): flwr is pinned exactly and
this module is covered by the contract test.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.common.serde import message_from_proto, message_to_proto
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity


def _wire(msg: Message) -> Message:
    out = message_from_proto(message_to_proto(msg))
    out.metadata.__dict__["_message_id"] = msg.metadata.message_id
    return out


class LocalGrid(Grid):
    """Nodes are ``node_id -> node_config``; every node runs ``clientapp``.

    :meth:`disconnect` makes a node silent (its messages are never answered), which is how the
    in-process tests exercise deadlines and dropouts.
    """

    def __init__(self, clientapp, node_configs: dict[int, dict], run_id: int = 1):
        self.clientapp = clientapp
        self.contexts = {
            nid: Context(
                run_id=run_id, node_id=nid, node_config=dict(cfg), state=RecordDict(), run_config={}
            )
            for nid, cfg in node_configs.items()
        }
        self._run = Run.create_empty(run_id)
        self._pool = ThreadPoolExecutor(max_workers=32)  # one message per node at a time
        self._futures: dict[str, Future] = {}
        self._silent: set[int] = set()
        self._lock = threading.Lock()
        TaskIdentity.task_id = 1
        TaskIdentity.run_id = run_id
        TaskIdentity.node_id = SUPERLINK_NODE_ID

    def disconnect(self, node_id: int) -> None:
        self._silent.add(node_id)

    def connect(self, node_id: int, node_config: dict) -> None:
        self.contexts[node_id] = Context(
            run_id=self._run.run_id,
            node_id=node_id,
            node_config=dict(node_config),
            state=RecordDict(),
            run_config={},
        )
        self._silent.discard(node_id)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- Grid API -----------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self._silent]

    def _deliver(self, msg: Message) -> Message | None:
        nid = msg.metadata.dst_node_id
        if nid in self._silent:
            return None
        wired = _wire(msg)
        try:
            reply = self.clientapp(wired, self.contexts[nid])
        except Exception as exc:  # what a SuperNode reports for a failing ClientApp
            reply = Message(Error(code=0, reason=f"{type(exc).__name__}: {exc}"), reply_to=wired)
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        if nid in self._silent:
            return None
        return _wire(reply)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            mid = str(uuid.uuid4())
            msg.metadata.__dict__["_message_id"] = mid
            if msg.metadata.dst_node_id not in self.contexts:
                raise ValueError(f"unknown node {msg.metadata.dst_node_id}")
            with self._lock:
                self._futures[mid] = self._pool.submit(self._deliver, msg)
            ids.append(mid)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        out = []
        with self._lock:
            for mid in list(message_ids):
                fut = self._futures.get(mid)
                if fut is None or not fut.done():
                    continue
                del self._futures[mid]
                reply = fut.result()
                if reply is not None:
                    out.append(reply)
        return out

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None):
        ids = set(self.push_messages(messages))
        end = None if timeout is None else time.time() + timeout
        out: list[Message] = []
        while ids and (end is None or time.time() < end):
            got = list(self.pull_messages(ids))
            out.extend(got)
            ids -= {m.metadata.reply_to_message_id for m in got}
            time.sleep(0.01)
        return out


class InProcessCluster:
    """Org services behind their own authenticated channels and the real ClientApp shim, on a
    :class:`LocalGrid`. ``add`` connects a (new) node; ``grid.disconnect(node_id)`` silences
    one. Use as a context manager."""

    def __init__(self, services: dict, workdir):
        from pathlib import Path

        from matswarm.runtime.flower.clientapp import app as clientapp

        self.workdir = Path(workdir)
        self.servers: list = []
        self.node_ids: dict[str, int] = {}
        self.grid = LocalGrid(clientapp, {})
        for name, svc in services.items():
            self.add(name, svc)

    def add(self, name: str, service) -> int:
        from matswarm.runtime.flower.channel import ChannelServer
        from matswarm.runtime.flower.clientapp import ENDPOINT_KEY

        srv = ChannelServer(service.handle).start()
        self.servers.append(srv)
        node_id = 1000 + len(self.servers)
        path = srv.endpoint.write(self.workdir / f"{name}-{node_id}.endpoint.json")
        self.grid.connect(node_id, {ENDPOINT_KEY: str(path)})
        self.node_ids[name] = node_id
        return node_id

    def coordinator(self, spec, **kw):
        from matswarm.runtime.flower.coordinator import FlowerCoordinator

        return FlowerCoordinator(self.grid, spec, **kw)

    def close(self) -> None:
        self.grid.close()
        for srv in self.servers:
            srv.close()

    def __enter__(self) -> InProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_inprocess(spec, services: dict, workdir, **coordinator_kw):
    """Run ``spec`` over Flower messages in this process.

    ``services`` maps org name to its :class:`~matswarm.runtime.flower.node.OrgService`; each is
    served on its own authenticated local channel and reached through the real ClientApp shim.
    Returns ``(TaskResult, LocalGrid)``.
    """
    with InProcessCluster(services, workdir) as cluster:
        return cluster.coordinator(spec, **coordinator_kw).run(), cluster.grid
