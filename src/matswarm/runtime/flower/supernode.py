"""``flower-supernode`` with shorter fixed sleeps.

Flower 1.41's SuperNode sleeps a hard-coded 3 s whenever a poll of the SuperLink finds no
message, and 0.5 s while waiting for a reply to push; on a message-by-message protocol that is
about 3 s of dead time per message step (a round of a parallel algorithm is one step, a ring hop
another). ``matswarm node start`` runs the SuperNode through this module, which caps those sleeps
at ``MATSWARM_SUPERNODE_POLL_S`` (default 0.25 s; 4 fleet requests per second per node while
idle) and then runs Flower's own entry point unchanged. It relies on the module attribute
``flwr.supernode.start_client_internal.time``: flwr is pinned exactly, and the deployment test
runs through it.

    python -m matswarm.runtime.flower.supernode --superlink ... (flower-supernode's arguments)
"""

from __future__ import annotations

import os
import sys
import time as _time

POLL_ENV = "MATSWARM_SUPERNODE_POLL_S"


class _CappedTime:
    """``time`` with ``sleep`` capped; everything else is the real module."""

    def __init__(self, cap: float):
        self.cap = cap

    def sleep(self, seconds: float) -> None:
        _time.sleep(min(seconds, self.cap))

    def __getattr__(self, name: str):
        return getattr(_time, name)


def patch(cap: float) -> None:
    import flwr.supernode.start_client_internal as sci

    if not isinstance(getattr(sci, "time", None), type(_time)):
        raise RuntimeError("flwr.supernode.start_client_internal has no `time` module to patch")
    sci.time = _CappedTime(cap)  # type: ignore[assignment]


def main() -> None:
    from matswarm.runtime.flower.env import quiet_flower

    quiet_flower()
    patch(float(os.environ.get(POLL_ENV, "0.25")))
    from flwr.supernode.cli import flower_supernode

    sys.argv[0] = "flower-supernode"
    flower_supernode()


if __name__ == "__main__":
    main()
