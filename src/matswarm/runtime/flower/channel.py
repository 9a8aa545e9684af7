"""The local channel between the Flower shim (a short-lived ClientApp process) and the org's
long-lived node process.

TCP on the loopback interface; one request per connection. The server opens every connection
with a fresh 32-byte nonce and both directions carry ``HMAC-SHA256(secret, nonce | direction |
body)``, so only a process that can read the org's endpoint file (mode 0600, written by
``matswarm node start``) can talk to the node, and a captured request cannot be replayed.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import socket
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from matswarm.runtime.flower.codec import Payload, from_frame, to_frame

MAX_FRAME = 1 << 31


class ChannelError(RuntimeError):
    """The node channel failed (unreachable node, bad secret, malformed frame)."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    secret: bytes

    def write(self, path: str | os.PathLike[str]) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"host": self.host, "port": self.port, "secret": self.secret.hex()}, fh)
        return path

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Endpoint:
        try:
            d = json.loads(Path(path).read_text())
            return cls(d["host"], int(d["port"]), bytes.fromhex(d["secret"]))
        except (OSError, KeyError, ValueError) as exc:
            raise ChannelError(f"cannot read node endpoint {path}: {exc}") from None


def _mac(secret: bytes, nonce: bytes, direction: bytes, body: bytes) -> bytes:
    return hmac.new(secret, nonce + direction + body, hashlib.sha256).digest()


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ChannelError("connection closed mid-frame")
        buf.extend(chunk)
    return bytes(buf)


def _send(sock: socket.socket, secret: bytes, nonce: bytes, direction: bytes, body: bytes) -> None:
    sock.sendall(len(body).to_bytes(8, "little") + _mac(secret, nonce, direction, body) + body)


def _recv(sock: socket.socket, secret: bytes, nonce: bytes, direction: bytes) -> bytes:
    n = int.from_bytes(_recv_exact(sock, 8), "little")
    if n > MAX_FRAME:
        raise ChannelError(f"frame of {n} bytes exceeds the limit")
    mac = _recv_exact(sock, 32)
    body = _recv_exact(sock, n)
    if not hmac.compare_digest(mac, _mac(secret, nonce, direction, body)):
        raise ChannelError("bad channel authentication (wrong secret?)")
    return body


def call(endpoint: Endpoint, kind: str, payload: Payload, timeout: float = 3600.0) -> Payload:
    """Send one request to the node and return its reply."""
    body = kind.encode().ljust(32, b"\0") + to_frame(payload)
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout) as sock:
            nonce = _recv_exact(sock, 32)
            _send(sock, endpoint.secret, nonce, b"req", body)
            return from_frame(_recv(sock, endpoint.secret, nonce, b"rep"))
    except OSError as exc:
        raise ChannelError(f"node at {endpoint.host}:{endpoint.port} unreachable: {exc}") from None


Handler = Callable[[str, Payload], Payload]


class ChannelServer:
    """Serves ``handler(kind, payload) -> payload`` on 127.0.0.1; requests run one at a time."""

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0):
        self.secret = secrets.token_bytes(32)
        self._lock = threading.Lock()
        outer = self

        class _Req(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock = self.request
                nonce = secrets.token_bytes(32)
                try:
                    sock.sendall(nonce)
                    body = _recv(sock, outer.secret, nonce, b"req")
                except (ChannelError, OSError):
                    return  # unauthenticated or broken request: drop silently
                kind = body[:32].rstrip(b"\0").decode()
                with outer._lock:
                    reply = handler(kind, from_frame(body[32:]))
                with contextlib.suppress(OSError):
                    _send(sock, outer.secret, nonce, b"rep", to_frame(reply))

        class _Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = _Server((host, port), _Req)
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> Endpoint:
        host, port = self._server.server_address[:2]
        return Endpoint(str(host), int(port), self.secret)

    def start(self) -> ChannelServer:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
