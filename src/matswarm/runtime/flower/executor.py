"""Runs the org's ClientApp tasks inside the long-lived node process (no process per message).

Flower's SuperNode hands each incoming message to an executor through its local Runtime API;
its default executor spawns a new ``flwr-clientapp`` process per message, which re-imports Python
and Flower (seconds of CPU) and installs and executes the app bundle (FAB) the coordinator sent.
``matswarm node start`` runs the SuperNode with ``--isolation process`` instead and this executor
in its own process: it acquires each task from the SuperNode's Runtime API on 127.0.0.1, pulls the
message, answers it with the org's :class:`~matswarm.runtime.flower.node.OrgService` directly and
pushes the reply. The FAB is never installed or executed, so the coordinator cannot make the org
run any code: only what the org installed answers.

It uses Flower's own client functions for the Runtime API (``pull_task_input``, ``push_message``,
``push_task_output``), which are internal; flwr is pinned exactly and the deployment test runs
through this path.

Waiting for a task: with a wake pipe (``wake_fd``, the read end; the SuperNode writes a byte
for each message it stores, see :mod:`.supernode`) the executor blocks on the pipe and asks
for a task only when one has come, or every ``fallback_s`` in case a wake was missed; without
one it polls with a back-off. Each poll is an HTTP request the SuperNode serves, so polling
costs CPU in both processes for as long as a round lasts.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
import time

from matswarm.runtime.flower.backoff import Backoff

log = logging.getLogger("matswarm.node")


class InNodeExecutor:
    """Polls the SuperNode's Runtime API for ClientApp tasks and answers them in-process."""

    def __init__(
        self,
        runtime_address: str,
        handle,
        poll_s: float = 0.02,
        longest_s: float = 0.25,
        *,
        wake_fd: int | None = None,
        fallback_s: float = 2.0,
    ):
        self.runtime_address = runtime_address
        self.handle = handle
        self.wake_fd = wake_fd
        self.fallback_s = fallback_s
        #: Polls quickly after a task (the SuperNode may already hold the round's next
        #: message), backing off to ``longest_s`` while idle (see ``backoff``).
        self.backoff = Backoff(poll_s, longest_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.handled = 0
        self.woken = 0

    def _client(self, *interceptors):
        from flwr.supercore.interceptors import RuntimeVersionHttpInterceptor
        from flwr.supercore.retry import make_simple_http_retry_invoker
        from flwr.supercore.runtime import RuntimeHttpClient

        return RuntimeHttpClient.from_server_address(
            server_address=self.runtime_address,
            insecure=True,
            root_certificates=None,
            interceptors=[RuntimeVersionHttpInterceptor(component_name="SuperExec"), *interceptors],
            retry_invoker=make_simple_http_retry_invoker(),
        )

    def start(self) -> InNodeExecutor:
        self._thread = threading.Thread(target=self._loop, name="matswarm-executor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        from flwr.proto.runtime_pb2 import AcquireTaskRequest
        from flwr.supercore.constant import TaskType

        client = None
        while not self._stop.is_set():
            try:
                if client is None:
                    client = self._client()
                res = client.AcquireTask(
                    AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP.value])
                )
                if res.HasField("task") and res.token:
                    self._run_task(res.token)
                    self.backoff.reset()
                    continue
            except Exception as exc:  # the SuperNode may not be up yet, or restarting
                log.debug("executor: %s", exc)
                client = None
                time.sleep(0.5)
            self._wait()

    def _wait(self) -> None:
        """Until the SuperNode signals a message (or ``fallback_s``), or one back-off step."""
        if self.wake_fd is None:
            time.sleep(self.backoff.next())
        elif wait_for_wake(self.wake_fd, self.fallback_s):
            self.woken += 1

    def _run_task(self, token: str) -> None:
        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode, SubStatus
        from flwr.supercore.heartbeat import HeartbeatSender, make_task_heartbeat_fn_http
        from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor
        from flwr.supernode.runtime.run_clientapp import (
            pull_task_input,
            push_message,
            push_task_output,
        )

        from matswarm.runtime.flower.codec import from_recorddict, to_recorddict

        client = self._client(RuntimeTokenHttpInterceptor(token))
        heartbeat = HeartbeatSender(make_task_heartbeat_fn_http(client))
        context = None
        status, details = SubStatus.FAILED, "matswarm executor failed"
        try:
            heartbeat.start()
            message, context, _run, _fab = pull_task_input(client)  # the FAB is ignored
            kind = message.metadata.message_type.partition(".")[2]
            kind = "train" if kind == "local" else kind
            try:
                reply = Message(
                    to_recorddict(self.handle(kind, from_recorddict(message.content))),
                    reply_to=message,
                )
                status, details = SubStatus.COMPLETED, ""
            except Exception as exc:
                reply = Message(
                    Error(
                        code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION,
                        reason=f"{type(exc).__name__}: {exc}",
                    ),
                    reply_to=message,
                )
                details = str(exc)
            push_message(client, reply, context)
            self.handled += 1
        finally:
            push_task_output(client, context, status, details)
            if heartbeat.is_running:
                heartbeat.stop()
            client.close()


def wait_for_wake(fd: int, timeout_s: float) -> bool:
    """Block until ``fd`` (a pipe's read end) has bytes or ``timeout_s`` passed; read every
    pending byte (several wakes mean one poll: the poll takes whatever tasks are there).
    True when woken."""
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return False
    os.set_blocking(fd, False)
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 4096):
            pass
    return True
