"""``matswarm node start``: the org's long-lived node process plus its Flower SuperNode.

The process loads the org's table once, builds the :class:`OrgService`, serves it on an
authenticated loopback channel, writes the channel's endpoint file (mode 0600) into the org's
work directory and starts ``flower-supernode`` pointed at the coordinator, with the endpoint
file in its node config. It stays up as long as the SuperNode does and exits with its code
(305: the coordinator refused this node's key). SIGTERM/SIGINT stop the SuperNode (by PID) and
then the node. ``WORKDIR/node.json`` records both PIDs.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from pathlib import Path

from matswarm.runtime.flower.channel import ChannelServer
from matswarm.runtime.flower.deploy import flower_env, free_port, supernode_argv, supervise
from matswarm.runtime.flower.node import OrgService

log = logging.getLogger("matswarm.node")


def run_node(
    org: str,
    data: str | Path,
    coordinator: str,
    workdir: str | Path,
    *,
    root_cert: str | Path | None,
    auth_key: str | Path | None,
    trust=None,  # NodeTrustConfig (keystore, ledger URL/contract/chain id, store)
    executor: str = "in-node",
) -> int:
    """``executor="in-node"`` (default): messages are answered in this process
    (:mod:`.executor`), the coordinator's app bundle is never executed; ``"flower"``: Flower
    spawns a ClientApp process per message (the shim, reaching this process over the channel)."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    service = OrgService(org, data, workdir=workdir, trust=trust)
    server = ChannelServer(service.handle).start()
    endpoint = server.endpoint.write(workdir / "endpoint.json")
    runtime_port = free_port()
    argv = supernode_argv(
        coordinator,
        endpoint,
        root_cert=root_cert,
        auth_key=auth_key,
        runtime_port=runtime_port,
        isolation="process" if executor == "in-node" else "subprocess",
    )
    env, pass_fds = flower_env(), ()
    if executor == "in-node":
        from matswarm.runtime.flower.executor import InNodeExecutor
        from matswarm.runtime.flower.supernode import WAKE_FD_ENV

        # The write end stays open here too, so the pipe never reads as closed (which would
        # wake the executor forever) while a SuperNode restarts or exits.
        wake_r, wake_w = os.pipe()
        env[WAKE_FD_ENV], pass_fds = str(wake_w), (wake_w,)
        InNodeExecutor(f"127.0.0.1:{runtime_port}", service.handle, wake_fd=wake_r).start()
    log_path = workdir / "supernode.log"
    with log_path.open("ab") as log_fh:
        child = subprocess.Popen(
            argv, env=env, stdout=log_fh, stderr=subprocess.STDOUT, pass_fds=pass_fds
        )
    (workdir / "node.json").write_text(
        json.dumps(
            {
                "org": org,
                "pid": os.getpid(),
                "supernode_pid": child.pid,
                "endpoint": str(endpoint),
                "supernode_log": str(log_path),
            }
        )
    )
    log.info(
        "%s: node up (pid %d), SuperNode pid %d -> %s", org, os.getpid(), child.pid, coordinator
    )

    try:
        code = supervise(child, grace_s=10)
    finally:
        server.close()
    # The SuperNode reports its Flower exit code in its log (the process itself may exit 1).
    found = re.findall(r"Exit Code: (\d+)", log_path.read_text(errors="replace"))
    if found and code != 0:
        code = int(found[-1])
    log.info("%s: SuperNode exited with %s", org, code)
    return int(code)
