"""``flower-supernode`` with adaptive instead of fixed sleeps.

Flower 1.41's SuperNode sleeps a hard-coded 3 s whenever a poll of the SuperLink finds no
message, and 0.5 s while waiting for a reply to push; on a message-by-message protocol that is
about 3 s of dead time per message step (a round of a parallel algorithm is one step, a ring hop
another). ``matswarm node start`` runs the SuperNode through this module, which replaces them:

* an empty poll sleeps a :class:`~matswarm.runtime.flower.backoff.Backoff` interval, from
  0.05 s growing 1.5x per empty poll up to ``MATSWARM_SUPERNODE_POLL_S`` (default 1 s), so a
  node polls quickly right after it answered (the next message of a round comes soon) and
  rarely while it waits through a long round or sits idle: its polling CPU, and the
  SuperLink's for it, grows with the log of the wait, not with the wait (a fixed 0.25 s made
  15 idle nodes use 1.8 of this machine's 2 cores);
* waiting for the executor's reply (local state, no network) sleeps 0.02 s, and restarts the
  back-off: a message was just received;
* when ``MATSWARM_WAKE_FD`` names a pipe the node process holds, every message pulled and
  stored writes one byte to it, so the in-node executor
  (:class:`~matswarm.runtime.flower.executor.InNodeExecutor`) sleeps on the pipe instead of
  polling the Runtime API: each of its polls is an HTTP request this process serves (the
  Runtime API server was most of a waiting SuperNode's CPU, py-spy at 15 orgs), and a
  polling executor's cost grows with the time a round lasts, which grows with the orgs.

It relies on the module attributes ``time`` and ``_pull_and_store_message`` of
``flwr.supernode.start_client_internal``: flwr is pinned exactly, and the deployment test runs
through it.

    python -m matswarm.runtime.flower.supernode --superlink ... (flower-supernode's arguments)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time as _time

from matswarm.runtime.flower.backoff import Backoff

POLL_ENV = "MATSWARM_SUPERNODE_POLL_S"
#: File descriptor of the write end of the node process's wake pipe (inherited).
WAKE_FD_ENV = "MATSWARM_WAKE_FD"


#: Flower's sleep after a poll that found no message (every other sleep waits on local state).
_EMPTY_POLL_SLEEP_S = 3
#: Waiting for the executor's reply to a message: local state, polled fast.
LOCAL_WAIT_S = 0.02
FIRST_POLL_S = 0.05


class _AdaptiveTime:
    """``time`` whose ``sleep`` follows a back-off on empty polls (see the module docstring);
    everything else is the real module."""

    def __init__(self, longest: float):
        self.backoff = Backoff(min(FIRST_POLL_S, longest), longest)

    def sleep(self, seconds: float) -> None:
        if seconds >= _EMPTY_POLL_SLEEP_S:
            _time.sleep(self.backoff.next())
        else:
            self.backoff.reset()
            _time.sleep(min(seconds, LOCAL_WAIT_S))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def patch(longest: float, wake_fd: int | None = None) -> None:
    """Replace the SuperNode loop's sleeps (and, with ``wake_fd``, signal each stored
    message on it)."""
    import flwr.supernode.start_client_internal as sci

    if not isinstance(getattr(sci, "time", None), type(_time)):
        raise RuntimeError("flwr.supernode.start_client_internal has no `time` module to patch")
    sci.time = _AdaptiveTime(longest)  # type: ignore[assignment]
    if wake_fd is not None:
        sci._pull_and_store_message = _signalling(sci._pull_and_store_message, wake_fd)


def _signalling(pull_and_store, wake_fd: int):
    """``pull_and_store`` that writes a byte to ``wake_fd`` whenever it stored a message
    (it returns the message's run id then, ``None`` when there was none)."""
    os.set_blocking(wake_fd, False)

    def wrapped(*args, **kwargs):
        run_id = pull_and_store(*args, **kwargs)
        if run_id is not None:
            # A full pipe holds unread wakes already: the executor is due anyway.
            with contextlib.suppress(BlockingIOError):
                os.write(wake_fd, b"m")
        return run_id

    return wrapped


def main() -> None:
    from matswarm.runtime.flower.env import quiet_flower

    quiet_flower()
    wake = os.environ.get(WAKE_FD_ENV)
    patch(float(os.environ.get(POLL_ENV, "1.0")), int(wake) if wake else None)
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
