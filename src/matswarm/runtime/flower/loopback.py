"""A whole Flower deployment on 127.0.0.1, for benchmarks, the scaling study and the soak.

:class:`LoopbackCluster` starts a SuperLink (TLS, node authentication), registers one key
per org and starts one ``matswarm node start`` process per org; with ``trust=True`` also an
anvil node with the contract deployed and every org registered with its own keystore, so
each node commits and votes with its own account over JSON-RPC. :meth:`LoopbackCluster.run`
starts a task through the Control API and times its rounds from the coordinator's status
file; :meth:`LoopbackCluster.kill_node` / :meth:`LoopbackCluster.start_node` stop (SIGKILL)
and restart one org's node, and with ``delay_proxy=True`` the nodes reach the SuperLink
through a :class:`DelayProxy` that can hold their traffic. Every process is stopped by its PID.

CPU is read from ``/proc`` for the cluster's whole process tree (SuperLink, nodes, the
per-message ClientApp processes they wait for, anvil): user + system time of the live
processes plus that of the children they reaped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matswarm.runtime.flower.deploy import (
    ControlClient,
    flower_env,
    free_port,
    make_node_key,
    make_tls,
    node_argv,
    superlink_argv,
    wait_port,
)

PASSPHRASE = "loopback-pass"
CHAIN_ID = 31337


def _proc_cpu(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` in seconds (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def tree_cpu(roots: Sequence[int]) -> float:
    """CPU seconds of ``roots`` and their live descendants (each counting its reaped children)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    total, stack, seen = 0.0, list(roots), set()
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _proc_cpu(pid)
        stack.extend(children.get(pid, []))
    return total


class DelayProxy:
    """A TCP relay on 127.0.0.1 in front of the SuperLink, through which the nodes connect:
    :attr:`delay_s` (set at any time) holds every chunk that crosses it that long, in both
    directions: an injected network delay that touches no one else's traffic (unlike netem
    on the loopback device). TLS passes through untouched."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.delay_s = 0.0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)  # long polls may idle; only the connect is bounded
            done = threading.Semaphore(0)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, done), daemon=True).start()
            threading.Thread(target=self._reap, args=(client, upstream, done), daemon=True).start()

    def _pipe(self, src, dst, done) -> None:
        """Copy src to dst; at src's end of stream pass the half-close on (HTTP keep-alive)."""
        import socket

        try:
            while True:
                chunk = src.recv(65536)
                if not chunk:
                    break
                if self.delay_s > 0:
                    time.sleep(self.delay_s)
                dst.sendall(chunk)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)
        except OSError:
            for s in (src, dst):  # a reset on one side: drop the connection
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        finally:
            done.release()

    @staticmethod
    def _reap(a, b, done) -> None:
        done.acquire()
        done.acquire()  # both directions finished
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.close()


def make_consortium(names, directory: Path, node_url: str, passphrase: str = PASSPHRASE):
    """Deploy the contract on the chain at ``node_url``, register ``names`` (all founders),
    write their keystores. Returns ``(ledger, identities, keystores)``."""
    from matswarm.ledger import Ledger, RpcChain
    from matswarm.protocol.trusted import org_metadata
    from matswarm.trust import OrgIdentity

    chain = RpcChain(node_url)
    ids = {n: OrgIdentity.generate(n) for n in names}
    for ident in ids.values():
        chain.fund(ident.evm_address)  # anvil charges gas
    ledger = Ledger.deploy(
        chain, ids[names[0]].evm_account(), [i.evm_address for i in ids.values()]
    )
    keystores = {}
    for name, ident in ids.items():
        pub = ident.public
        ledger.with_account(ident.evm_account()).register_org(
            bytes.fromhex(pub.ed25519), bytes.fromhex(pub.x25519), org_metadata(pub)
        )
        keystores[name] = ident.save(directory / f"{name}.keystore", passphrase, scrypt_n=2**14)
    return ledger, ids, keystores


def trusted_spec(ledger, ids, spec, round_duration_s: int = 120):
    """Create ``spec``'s task on the ledger (issuer: the first org) with a ``round_duration_s``
    commit window (the relay keeps ``spec``'s deadline). Returns ``(spec, task_id)``: the spec
    the ledger records, which the coordinator relays with the task id."""
    spec = dataclasses.replace(
        spec, round_duration_s=round_duration_s, relay_deadline_s=spec.round_deadline_s
    )
    task_id = ledger.with_account(ids[spec.participants[0]].evm_account()).create_task(
        [ids[n].evm_address for n in spec.participants],
        spec_hash=spec.digest(),
        train_code_hash=bytes.fromhex(spec.train_code_sha256),
        agg_code_hash=bytes.fromhex(spec.agg_code_sha256),
        rounds=spec.rounds,
        round_duration_s=spec.round_duration_s,
    )
    return spec, task_id


@dataclass
class LoopbackRun:
    """One task's run on the cluster."""

    round_times: list[float]  # wall seconds between consecutive finalised rounds
    round_cpu: list[float]  # cluster CPU seconds in the same intervals
    hashes: list[str]
    setup_s: float  # run start until round 1 is final
    result: dict[str, Any] = field(default_factory=dict)
    task_id: bytes | None = None
    spec: Any = None  # the spec the run used (the ledger's, when trusted)


class LoopbackCluster:
    """SuperLink + one node process per org (+ anvil and keystores with ``trust``) on loopback.

    Args:
        files: each org's table (name -> path), as its node reads it.
        directory: working folder (TLS, keys, node workdirs, logs).
        trust: run the nodes with their own ledger accounts on an anvil JSON-RPC chain.
    """

    def __init__(
        self,
        files: dict[str, Path],
        directory: Path,
        *,
        trust: bool = False,
        delay_proxy: bool = False,
    ):
        self.files = dict(files)
        self.d = Path(directory)
        self.trust = trust
        self.env = flower_env()
        self.env["FLWR_HOME"] = str(self.d / "flwr-home")
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.ledger = self.ids = self.anvil = None
        self._trust_args: dict[str, list[str]] = {n: [] for n in files}
        self.keys: dict[str, Path] = {}
        #: Nodes connect through a :class:`DelayProxy` when set (``delay_proxy=True``).
        self.proxy: DelayProxy | None = None
        self._delay_proxy = delay_proxy

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 300.0) -> LoopbackCluster:
        from matswarm.ledger.anvil import AnvilNode

        try:
            self.port = free_port()
            self.tls = make_tls(self.d / "tls")
            self.procs["superlink"] = subprocess.Popen(
                superlink_argv("127.0.0.1", self.port, tls=self.tls),
                env=self.env,
                stdout=(self.d / "superlink.log").open("wb"),
                stderr=subprocess.STDOUT,
            )
            self.address = f"127.0.0.1:{self.port}"
            if self.trust:
                self.anvil = AnvilNode(chain_id=CHAIN_ID).start()
                self.ledger, self.ids, keystores = make_consortium(
                    list(self.files), self.d, self.anvil.url
                )
                self.keystores = keystores
                self.env["MATSWARM_PASSPHRASE"] = PASSPHRASE
                for name in self.files:
                    self._trust_args[name] = [
                        "--identity",
                        str(keystores[name]),
                        "--ledger",
                        self.anvil.url,
                        "--contract",
                        self.ledger.address,
                        "--chain-id",
                        str(CHAIN_ID),
                    ]
            wait_port("127.0.0.1", self.port, timeout=60)
            self.node_address = self.address
            if self._delay_proxy:
                self.proxy = DelayProxy(self.port)
                self.node_address = f"127.0.0.1:{self.proxy.port}"
            with ControlClient(self.address, self.tls.ca_cert) as cc:
                for name in self.files:
                    self.keys[name], pub = make_node_key(self.d / "keys" / name)
                    cc.register_node(pub, name)
            for name in self.files:
                self.start_node(name, wait=False)
            end = time.monotonic() + timeout
            while not all((self.d / n / "node.json").exists() for n in self.files):
                if time.monotonic() > end:
                    raise RuntimeError("org nodes did not start in time")
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, name: str, *, wait: bool = True, timeout: float = 120.0) -> None:
        """Start (or restart) org ``name``'s node process."""
        marker = self.d / name / "node.json"
        if wait:
            marker.unlink(missing_ok=True)
        self.procs[name] = subprocess.Popen(
            node_argv(
                name,
                self.files[name],
                self.node_address,
                root_cert=self.tls.ca_cert,
                key=self.keys[name],
                workdir=self.d / name,
                extra=self._trust_args[name],
            ),
            env=self.env,
            stdout=(self.d / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + timeout
        while wait and not marker.exists():
            if time.monotonic() > end:
                raise RuntimeError(f"node {name} did not start in time")
            time.sleep(0.1)

    def kill_node(self, name: str) -> None:
        """SIGKILL org ``name``'s node and its SuperNode (no clean-up: a crash of the org)."""
        p = self.procs.get(name)
        supernode = None
        with contextlib.suppress(OSError, ValueError, KeyError):
            supernode = int(json.loads((self.d / name / "node.json").read_text())["supernode_pid"])
        if p is not None and p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
        if supernode is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(supernode, signal.SIGKILL)

    def node_pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if n in self.files and p.poll() is None}

    def roots(self) -> list[int]:
        pids = [p.pid for p in self.procs.values() if p.poll() is None]
        if self.anvil is not None and self.anvil.proc is not None:
            pids.append(self.anvil.proc.pid)
        return pids

    def stop(self) -> None:
        for p in reversed(list(self.procs.values())):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait()
        self.procs.clear()
        if self.proxy is not None:
            self.proxy.close()
            self.proxy = None
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None
        if self.anvil is not None:
            self.anvil.stop()
            self.anvil = None

    def __enter__(self) -> LoopbackCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running a task -----------------------------------------------------------------------
    def run(
        self,
        spec,
        *,
        trusted: bool | None = None,
        timeout: float = 3600.0,
        on_round=None,
        round_duration_s: int = 120,
    ) -> LoopbackRun:
        """Start ``spec`` and wait for it to end. ``trusted`` (default: the cluster's ``trust``)
        creates the task on the ledger first and relays its id, so the nodes run the trust
        layer; ``on_round(n_final, cluster)`` is called each time a round is finalised."""
        task_id = None
        if self.trust if trusted is None else trusted:
            if self.ledger is None:
                raise ValueError("a trusted run needs a cluster started with trust=True")
            spec, task_id = trusted_spec(self.ledger, self.ids, spec, round_duration_s)
        status, result = self.d / f"status-{spec.name}.json", self.d / f"result-{spec.name}.json"
        t_start = time.monotonic()
        seen: list[float] = []
        cpu_seen: list[float] = []
        with ControlClient(self.address, self.tls.ca_cert) as cc:
            run_id = cc.start_run(
                spec,
                task_id="0x" + task_id.hex() if task_id else "",
                status_file=str(status),
                result_file=str(result),
            )
            st: dict[str, Any] = {"state": "", "rounds": []}
            while time.monotonic() - t_start < timeout:
                with contextlib.suppress(OSError, ValueError):  # being rewritten
                    st = json.loads(status.read_text())
                while len(seen) < len(st.get("rounds", [])):
                    seen.append(time.monotonic())
                    cpu_seen.append(tree_cpu(self.roots()))
                    if on_round is not None:
                        on_round(len(seen), self)
                if st.get("state") in ("finished", "failed"):
                    break
                time.sleep(0.02)
            final = cc.wait_run(run_id, 120)
        if final != "finished:completed":
            raise RuntimeError(f"run ended as {final}: {st.get('waiting_for')}")
        res = json.loads(result.read_text())
        return LoopbackRun(
            round_times=[b - a for a, b in itertools.pairwise(seen)],
            round_cpu=[b - a for a, b in itertools.pairwise(cpu_seen)],
            hashes=[r["global_hash"] for r in res["rounds"]],
            setup_s=seen[0] - t_start if seen else float("nan"),
            result=res,
            task_id=task_id,
            spec=spec,
        )
