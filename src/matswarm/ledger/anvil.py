"""Start and stop a local ``anvil`` dev node (tests, CI and multi-process demos).

anvil is one Rust binary from npm (``npm install --prefix ~/.cache/matswarm-anvil
@foundry-rs/anvil@1.7.1``). We look for it in ``$MATSWARM_ANVIL``, on ``PATH``,
then under that prefix. It is a single development node
with no consensus: a stand-in for the production Besu/QBFT network's JSON-RPC.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from .compile import EVM_VERSION
from .errors import LedgerError

ANVIL_ENV = "MATSWARM_ANVIL"


#: Where ``npm install --prefix`` puts it in CI and for local development.
DEFAULT_PREFIX = Path.home() / ".cache" / "matswarm-anvil"


def find_anvil() -> str | None:
    """Path of the anvil binary, or None when it is not installed.

    Looks at ``$MATSWARM_ANVIL`` (only there, if set), then ``PATH``, then the
    npm prefix ``~/.cache/matswarm-anvil``.
    """
    env = os.environ.get(ANVIL_ENV)
    if env:
        return env if Path(env).is_file() else None
    found = shutil.which("anvil")
    if found:
        return found
    hits = sorted(DEFAULT_PREFIX.glob("node_modules/@foundry-rs/anvil-*/bin/anvil"))
    return str(hits[0]) if hits else None


def _term_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent dies (``prctl(PR_SET_PDEATHSIG)``)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class AnvilNode:
    """An anvil process on 127.0.0.1, stopped by PID (context manager).

    The node runs the fork the contract is compiled for, so the test exercises
    exactly what a Cancun production chain would accept.
    """

    def __init__(
        self,
        *,
        chain_id: int = 31337,
        binary: str | None = None,
        extra_args: Sequence[str] = (),
        die_with_parent: bool = False,
    ) -> None:
        self.binary = binary or find_anvil()
        if self.binary is None:
            raise LedgerError(f"anvil not found (set ${ANVIL_ENV} or put it on PATH)")
        self.chain_id = chain_id
        self.extra_args = list(extra_args)
        #: The node gets SIGTERM when this process dies (Linux ``PR_SET_PDEATHSIG``), even
        #: by SIGKILL: no orphan node, and anvil writes its ``--state`` file on the way out.
        self.die_with_parent = die_with_parent
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> AnvilNode:
        import urllib.request

        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = free_port()
            args = [self.binary or "anvil", "--host", "127.0.0.1", "--port", str(self.port)]
            args += ["--chain-id", str(self.chain_id), "--hardfork", EVM_VERSION, "--silent"]
            args += self.extra_args
            self.proc = subprocess.Popen(
                args,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                preexec_fn=_term_with_parent if self.die_with_parent else None,
            )
            deadline = time.monotonic() + timeout
            body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    req = urllib.request.Request(
                        self.url, data=body, headers={"Content-Type": "application/json"}
                    )
                    with urllib.request.urlopen(req, timeout=1):
                        return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise LedgerError("anvil did not start")

    def cpu_seconds(self) -> float:
        """User + system CPU time the node has used so far (Linux ``/proc``; 0 if stopped)."""
        if self.proc is None:
            return 0.0
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """Terminate the node by PID; kill it if it does not exit within 5 s."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> AnvilNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
