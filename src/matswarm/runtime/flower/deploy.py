"""Running the Flower runtime across machines: TLS material, node keys, the shim app (FAB),
SuperLink/SuperNode command lines, and the Control API calls that register nodes and start runs.

Nothing here is trusted by the orgs: the FAB that the coordinator ships contains only a
``pyproject.toml`` whose components name modules of the org's *installed* matswarm
(``matswarm.runtime.flower.serverapp:app`` / ``clientapp:app``); the node checks the task's
code hashes itself (:meth:`TaskSpec.check_code`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from matswarm.runtime.flower.env import quiet_flower

FAB_PYPROJECT = """\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "matswarm-shim"
version = "{version}"
description = "matswarm shim app: components live in the org-installed matswarm package"
license = "Apache-2.0"
dependencies = []

[tool.flwr.app]
publisher = "matswarm"

[tool.flwr.app.components]
serverapp = "matswarm.runtime.flower.serverapp:app"
clientapp = "matswarm.runtime.flower.clientapp:app"

[tool.flwr.app.config]
task-spec = ""
task-id = ""
status-file = ""
result-file = ""
stall-timeout = 0
"""


def fab_bytes() -> bytes:
    """The shim app as a Flower App Bundle (deterministic for a given matswarm version)."""
    from flwr.cli.build import build_fab_from_files

    import matswarm

    pyproject = FAB_PYPROJECT.format(version=matswarm.__version__).encode()
    return build_fab_from_files({"pyproject.toml": pyproject})[0]


# -- TLS and keys --------------------------------------------------------------------------------
def write_private(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def make_tls(directory: str | Path, names: list[str] | None = None, days: int = 365) -> TlsFiles:
    """A private CA and a SuperLink server certificate for ``names`` (DNS names or IPs).

    The CA's private key is not kept: new names mean a new CA (orgs get the new ``ca.crt``).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = Path(directory)
    names = list(dict.fromkeys(names or ["127.0.0.1", "localhost"]))
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "matswarm coordinator CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .sign(ca_key, hashes.SHA384())
    )
    key = ec.generate_private_key(ec.SECP384R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    d.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(d / "ca.crt", d / "server.pem", d / "server.key")
    files.ca_cert.write_bytes(ca.public_bytes(pem))
    files.server_cert.write_bytes(cert.public_bytes(pem))
    write_private(
        files.server_key,
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    return files


def make_node_key(path: str | Path) -> tuple[Path, Path]:
    """An ECDSA P-384 key pair in OpenSSH format (what SuperNode authentication uses).

    Returns ``(private, public)``; the public file is ``path + ".pub"``.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    priv = Path(path)
    key = ec.generate_private_key(ec.SECP384R1())
    write_private(
        priv,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    pub = priv.with_name(priv.name + ".pub")
    pub.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b"\n"
    )
    return priv, pub


# -- processes -----------------------------------------------------------------------------------
def flwr_bin(name: str) -> str:
    """A Flower entry point of this interpreter's environment."""
    cand = Path(sys.executable).with_name(name)
    found = str(cand) if cand.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found; install matswarm with the 'flower' extra")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def superlink_argv(
    host: str,
    port: int,
    *,
    tls: TlsFiles | None,
    node_auth: bool = True,
    database: str | Path | None = None,
) -> list[str]:
    argv = [
        flwr_bin("flower-superlink"),
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
        "--isolation",
        "subprocess",
    ]
    if tls is None:
        argv.append("--insecure")
    else:
        argv += [
            "--ssl-ca-certfile",
            str(tls.ca_cert),
            "--ssl-certfile",
            str(tls.server_cert),
            "--ssl-keyfile",
            str(tls.server_key),
        ]
    if node_auth:
        argv.append("--enable-supernode-auth")
    if database is not None:
        argv += ["--database", str(database)]
    return argv


def supernode_argv(
    superlink: str,
    endpoint_file: str | Path,
    *,
    root_cert: str | Path | None,
    auth_key: str | Path | None,
    runtime_port: int,
    isolation: str = "process",
) -> list[str]:
    """``isolation="process"``: the SuperNode spawns nothing, the node process's
    :class:`~matswarm.runtime.flower.executor.InNodeExecutor` answers each message;
    ``"subprocess"``: Flower's default (a ``flwr-clientapp`` process per message, running the
    shim ClientApp)."""
    argv = [
        sys.executable,
        "-m",
        "matswarm.runtime.flower.supernode",  # flower-supernode with short poll sleeps
        "--superlink",
        superlink,
        "--port",
        str(runtime_port),
        "--isolation",
        isolation,
        "--node-config",
        f"matswarm-endpoint='{endpoint_file}'",
    ]
    argv += ["--insecure"] if root_cert is None else ["--root-certificates", str(root_cert)]
    if auth_key is not None:
        argv += ["--auth-supernode-private-key", str(auth_key)]
    return argv


def node_argv(
    org: str,
    data: str | Path,
    coordinator: str,
    *,
    root_cert: str | Path,
    key: str | Path,
    workdir: str | Path,
    extra: Sequence[str] = (),
) -> list[str]:
    """``matswarm node start`` for one org (this interpreter), as a deployment script or a
    test launches it; ``extra`` appends options such as the ledger and identity flags."""
    return [
        sys.executable,
        "-m",
        "matswarm.cli.main",
        "node",
        "start",
        "--org",
        org,
        "--data",
        str(data),
        "--coordinator",
        coordinator,
        "--root-cert",
        str(root_cert),
        "--key",
        str(key),
        "--workdir",
        str(workdir),
        *extra,
    ]


def flower_env() -> dict[str, str]:
    """This process's environment with Flower telemetry and update checks off, and SuperExec
    polling for new tasks every 0.1 s instead of 1 s (unless set already)."""
    env = quiet_flower(dict(os.environ))
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.1")
    return env


# -- Control API ---------------------------------------------------------------------------------
class ControlClient:
    """The coordinator's Control API, from Python (reachable only on the coordinator's admin
    network: the open-source SuperLink does not authenticate it)."""

    def __init__(self, address: str, root_cert: str | Path | None = None):
        from flwr.cli.typing import SuperLinkConnection
        from flwr.cli.utils import init_http_client_from_connection

        quiet_flower()
        conn = SuperLinkConnection(
            name="matswarm",
            address=address,
            root_certificates=str(root_cert) if root_cert else None,
            insecure=root_cert is None,
        )
        self._client = init_http_client_from_connection(conn)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register_node(self, public_key: str | Path, name: str) -> int:
        from flwr.cli.supernode.register import try_load_public_key
        from flwr.proto.control_pb2 import RegisterNodeRequest

        res = self._client.RegisterNode(
            RegisterNodeRequest(public_key=try_load_public_key(Path(public_key)), name=name)
        )
        if not res.node_id:
            raise RuntimeError(f"the SuperLink did not register {public_key}")
        return int(res.node_id)

    def start_run(
        self,
        spec,
        *,
        task_id: str = "",
        status_file: str = "",
        result_file: str = "",
        stall_timeout: float = 0,
    ) -> int:
        import hashlib

        from flwr.common.serde import fab_to_proto, user_config_to_proto
        from flwr.proto.control_pb2 import StartRunRequest
        from flwr.supercore.fab import Fab

        from matswarm.runtime.flower.spec import spec_text

        fab = fab_bytes()
        override = {
            "task-spec": spec_text(spec),
            "task-id": task_id.removeprefix("0x"),
            "status-file": status_file,
            "result-file": result_file,
            "stall-timeout": float(stall_timeout),
        }
        res = self._client.StartRun(
            StartRunRequest(
                fab=fab_to_proto(Fab(hashlib.sha256(fab).hexdigest(), fab, {})),
                override_config=user_config_to_proto(override),
            )
        )
        if not res.HasField("run_id"):
            raise RuntimeError("the SuperLink did not start the run")
        return int(res.run_id)

    def run_status(self, run_id: int) -> str:
        """``status:sub_status`` of a run, e.g. ``finished:completed`` or ``running:``."""
        from flwr.proto.control_pb2 import ListRunsRequest

        res = self._client.ListRuns(ListRunsRequest(run_id=run_id))
        for rid, run in res.run_dict.items():
            if int(rid) == run_id:
                return f"{run.status.status}:{run.status.sub_status}"
        return "unknown:"

    def wait_run(self, run_id: int, timeout: float, poll_s: float = 0.5, on_poll=None) -> str:
        end = time.monotonic() + timeout
        status = self.run_status(run_id)
        while not status.startswith("finished") and time.monotonic() < end:
            if on_poll is not None:
                on_poll(status)
            time.sleep(poll_s)
            status = self.run_status(run_id)
        return status


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def supervise(child: subprocess.Popen, grace_s: float = 15.0) -> int:
    """Wait for ``child`` (a SuperLink or SuperNode); SIGTERM/SIGINT to this process stop it too,
    and it is terminated (then killed after ``grace_s``) whenever this process leaves."""

    def stop(signum, _frame):
        if child.poll() is None:
            child.terminate()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(grace_s)
            except subprocess.TimeoutExpired:
                child.kill()
