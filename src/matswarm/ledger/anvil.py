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

    def __init__(self, *, chain_id: int = 31337, binary: str | None = None) -> None:
        self.binary = binary or find_anvil()
        if self.binary is None:
            raise LedgerError(f"anvil not found (set ${ANVIL_ENV} or put it on PATH)")
        self.chain_id = chain_id
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
            self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
