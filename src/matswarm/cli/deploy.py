"""``matswarm node``, ``matswarm coordinator`` and ``matswarm task``: running across machines on
Flower (needs the ``flower`` extra). See docs/deploy.md."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Annotated

import typer

from matswarm.cli._output import console, fail

node_app = typer.Typer(
    help="An organisation's node (runs next to its private data).", no_args_is_help=True
)
coordinator_app = typer.Typer(
    help="The coordinator (Flower SuperLink): untrusted relay.", no_args_is_help=True
)
task_app = typer.Typer(
    help="Tasks: write a task spec, run it across the nodes.", no_args_is_help=True
)


NODE_REFUSED = 3  # exit status of `node start` when the coordinator refuses the node's key


def _flower():
    try:
        import flwr  # noqa: F401
    except ImportError:
        fail("this command needs Flower: pip install 'matswarm[flower]'")
    from matswarm.runtime.flower import quiet_flower

    quiet_flower()


# -- node ----------------------------------------------------------------------------------------
@node_app.command("keygen")
def node_keygen(
    out: Annotated[Path, typer.Option(help="Private key file to create (public: OUT.pub).")],
) -> None:
    """Create the node's SuperNode key pair (ECDSA P-384, OpenSSH format). Send OUT.pub to
    the coordinator; the private key never leaves this machine."""
    _flower()
    from matswarm.runtime.flower.deploy import make_node_key

    if out.exists():
        fail(f"{out} exists; refusing to overwrite a key")
    priv, pub = make_node_key(out)
    console.print(f"private key: {priv} (mode 600)\npublic key:  {pub}  <- send this one")


@node_app.command("start")
def node_start(
    org: Annotated[str, typer.Option(help="This organisation's name in task specs.")],
    data: Annotated[Path, typer.Option(help="The org's private table (CSV or Parquet).")],
    coordinator: Annotated[str, typer.Option(help="Coordinator fleet address HOST:PORT.")],
    root_cert: Annotated[
        Path | None, typer.Option(help="Coordinator CA certificate (ca.crt).")
    ] = None,
    key: Annotated[Path | None, typer.Option(help="Node private key (node keygen).")] = None,
    workdir: Annotated[Path, typer.Option(help="Endpoint, logs, final models.")] = Path(
        "matswarm-node"
    ),
    insecure: Annotated[bool, typer.Option(help="No TLS (tests on one machine only).")] = False,
    identity: Annotated[
        Path | None,
        typer.Option(help="Trusted tasks: the org's keystore (passphrase: $MATSWARM_PASSPHRASE)."),
    ] = None,
    ledger: Annotated[
        str | None, typer.Option(help="Trusted tasks: this org's ledger JSON-RPC URL.")
    ] = None,
    contract: Annotated[
        str | None, typer.Option(help="Trusted tasks: the consortium's SwarmLedger address.")
    ] = None,
    chain_id: Annotated[int | None, typer.Option(help="Trusted tasks: the chain id.")] = None,
    executor: Annotated[
        str,
        typer.Option(
            help="in-node: answer messages in this process (default; the coordinator's app "
            "bundle is never run); flower: Flower's process per message running the shim."
        ),
    ] = "in-node",
) -> None:
    """Run the org's long-lived node and its Flower SuperNode until stopped (Ctrl-C).

    With --identity/--ledger/--contract/--chain-id the node takes trusted tasks: it signs,
    commits and votes with its own keys on the ledger and keeps its own artifact store
    (WORKDIR/store)."""
    _flower()
    from matswarm.runtime.flower.nodeproc import run_node

    if root_cert is None and not insecure:
        fail("--root-cert is required (or --insecure for a local test)")
    if not data.exists():
        fail(f"{data}: file not found")
    if executor not in ("in-node", "flower"):
        fail(f"--executor must be in-node or flower, got {executor!r}")
    trust = None
    trust_opts = (identity, ledger, contract, chain_id)
    if any(o is not None for o in trust_opts):
        if any(o is None for o in trust_opts):
            fail("--identity, --ledger, --contract and --chain-id go together")
        from matswarm.runtime.flower.trust import NodeTrustConfig

        trust = NodeTrustConfig(identity, ledger, contract, chain_id, workdir / "store")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    code = run_node(
        org,
        data,
        coordinator,
        workdir,
        root_cert=None if insecure else root_cert,
        auth_key=key,
        trust=trust,
        executor=executor,
    )
    if code == 305:  # Flower's "failed to activate SuperNode" (exit statuses stop at 255)
        fail(
            "the coordinator refused this node's key (Flower exit 305): ask it to run "
            "`matswarm coordinator register-node KEY.pub --name ORG`",
            code=NODE_REFUSED,
        )
    raise typer.Exit(code)


# -- coordinator ---------------------------------------------------------------------------------
@coordinator_app.command("start")
def coordinator_start(
    directory: Annotated[Path, typer.Option("--dir", help="TLS material, state, logs.")] = Path(
        "matswarm-coordinator"
    ),
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Fleet + Control port.")] = 9092,
    name: Annotated[
        list[str] | None,
        typer.Option(help="DNS name / IP the orgs use to reach this machine (repeatable)."),
    ] = None,
    insecure: Annotated[bool, typer.Option(help="No TLS (local tests only).")] = False,
) -> None:
    """Start the SuperLink with TLS and SuperNode authentication (only registered keys)."""
    _flower()
    from matswarm.runtime.flower.deploy import (
        TlsFiles,
        flower_env,
        make_tls,
        superlink_argv,
        supervise,
    )

    directory.mkdir(parents=True, exist_ok=True)
    tls = None
    if not insecure:
        tls_dir = directory / "tls"
        if (tls_dir / "server.pem").exists():
            tls = TlsFiles(tls_dir / "ca.crt", tls_dir / "server.pem", tls_dir / "server.key")
        else:
            tls = make_tls(tls_dir, [*(name or []), host, "127.0.0.1", "localhost"])
            console.print(f"new CA: give {tls.ca_cert} to every org (--root-cert)")
    argv = superlink_argv(host, port, tls=tls, database=directory / "superlink.db")
    env = flower_env()
    env.setdefault("FLWR_HOME", str(directory / "flwr-home"))
    with (directory / "superlink.log").open("ab") as log:
        child = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    (directory / "coordinator.json").write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "superlink_pid": child.pid,
                "address": f"{host}:{port}",
                "ca_cert": str(tls.ca_cert) if tls else None,
            }
        )
    )
    console.print(f"SuperLink pid {child.pid} on {host}:{port} (log: {directory}/superlink.log)")

    raise typer.Exit(supervise(child, grace_s=15))


def _control(coordinator: str, root_cert: Path | None, insecure: bool):
    from matswarm.runtime.flower.deploy import ControlClient

    if root_cert is None and not insecure:
        fail("--root-cert is required (or --insecure for a local test)")
    return ControlClient(coordinator, None if insecure else root_cert)


Coordinator = Annotated[str, typer.Option(help="Control API HOST:PORT (coordinator-private).")]
RootCert = Annotated[Path | None, typer.Option(help="Coordinator CA certificate (ca.crt).")]
Insecure = Annotated[bool, typer.Option(help="No TLS (local tests only).")]


@coordinator_app.command("register-node")
def register_node(
    public_key: Annotated[Path, typer.Argument(help="The org's node key (KEY.pub).")],
    name: Annotated[str, typer.Option(help="The org's name.")],
    coordinator: Coordinator = "127.0.0.1:9092",
    root_cert: RootCert = None,
    insecure: Insecure = False,
) -> None:
    """Allow one org's node key to connect (run on the coordinator machine)."""
    _flower()
    with _control(coordinator, root_cert, insecure) as cc:
        node_id = cc.register_node(public_key, name)
    console.print(f"registered {name}: node id {node_id}")


# -- task ----------------------------------------------------------------------------------------
@task_app.command("spec")
def task_spec(
    name: Annotated[str, typer.Argument(help="Task name.")],
    orgs: Annotated[
        str | None, typer.Option(help="Comma-separated org names, in ring order.")
    ] = None,
    schema_from: Annotated[
        Path | None,
        typer.Option(help="A table (e.g. a header-only CSV) whose columns define features."),
    ] = None,
    target: Annotated[str, typer.Option(help="Target column.")] = "e_form",
    unit: Annotated[str, typer.Option(help="Target unit.")] = "eV/atom",
    algorithm: Annotated[str, typer.Option(help="fedavg, fedprox, matswarm, ...")] = "matswarm",
    rule: Annotated[str, typer.Option(help="Aggregation rule.")] = "mean",
    rounds: Annotated[int, typer.Option(min=1)] = 100,
    seed: Annotated[int, typer.Option()] = 0,
    deadline: Annotated[float, typer.Option(help="Round deadline, seconds.")] = 120.0,
    quorum: Annotated[int | None, typer.Option(help="Default: ceil(2n/3).")] = None,
    out: Annotated[Path, typer.Option("-o", "--out")] = Path("task.json"),
) -> None:
    """Write a task spec (JSON) pinned to this installation's code hashes and to the initial
    model built from the default model spec and --seed. A trusted task's spec is the one
    `matswarm task create` put on the ledger: run that one with `task run --task-id`."""
    from matswarm.data import DataError, TaskSchema, read_table
    from matswarm.runtime.flower.spec import SpecError, make_task_spec, spec_text

    if orgs is None or schema_from is None:
        fail("--orgs and --schema-from are required")
    try:
        schema = TaskSchema.infer(
            read_table(schema_from), target, unit=unit, source=str(schema_from)
        )
        spec = make_task_spec(
            name,
            [o.strip() for o in orgs.split(",") if o.strip()],
            schema.to_dict(),
            algorithm,
            rounds=rounds,
            rule=rule,
            seed=seed,
            relay_deadline_s=deadline,
            quorum=quorum,
        )
    except (OSError, DataError, SpecError, ValueError) as exc:
        fail(str(exc))
    out.write_text(spec_text(spec, indent=1))
    console.print(
        f"wrote {out} ({len(spec.participants)} orgs, {len(spec.schema['features'])} features, "
        f"spec sha256 {spec.digest().hex()[:12]}…)"
    )


@task_app.command("run")
def task_run(
    task: Annotated[Path, typer.Argument(help="Task spec JSON (matswarm task spec).")],
    task_id: Annotated[
        str | None,
        typer.Option(help="Trusted task: its ledger task id (0x...); TASK is its ledger spec."),
    ] = None,
    coordinator: Coordinator = "127.0.0.1:9092",
    root_cert: RootCert = None,
    insecure: Insecure = False,
    status_file: Annotated[
        Path | None, typer.Option(help="Where the coordinator writes progress.")
    ] = None,
    result_file: Annotated[Path | None, typer.Option(help="Round hashes, dropouts.")] = None,
    timeout: Annotated[float, typer.Option(help="Give up waiting after this many s.")] = 86400,
    stall_timeout: Annotated[
        float, typer.Option(help="Abort when below quorum this long (0: 10 deadlines).")
    ] = 0,
) -> None:
    """Start TASK on the coordinator through the Control API and follow it to the end."""
    _flower()
    from matswarm.runtime.flower.spec import SpecError, load_spec

    try:
        spec = load_spec(task.read_text())
    except (OSError, SpecError) as exc:
        fail(str(exc))
    status_file = (status_file or task.with_suffix(".status.json")).resolve()
    result_file = (result_file or task.with_suffix(".result.json")).resolve()
    for f in (status_file, result_file):
        f.unlink(missing_ok=True)
    with _control(coordinator, root_cert, insecure) as cc:
        run_id = cc.start_run(
            spec,
            task_id=task_id or "",
            status_file=str(status_file),
            result_file=str(result_file),
            stall_timeout=stall_timeout,
        )
        console.print(
            f"run {run_id} started: task {spec.name}, {len(spec.participants)} orgs"
            + (f", ledger task {task_id}" if task_id else "")
        )
        last = [""]

        def show(_status: str) -> None:
            try:
                line = json.loads(status_file.read_text())
            except (OSError, ValueError):
                return
            text = f"{line['state']}: {line['waiting_for']}"
            if text != last[0]:
                console.print(f"{time.strftime('%H:%M:%S')} {text}")
                last[0] = text

        status = cc.wait_run(run_id, timeout, on_poll=show)
        show(status)
    if status != "finished:completed" or not result_file.exists():
        fail(f"run {run_id} ended as {status}; see {status_file}", code=1)
    res = json.loads(result_file.read_text())
    for r in res["rounds"]:
        miss = f"  missing: {', '.join(r['missing'])}" if r["missing"] else ""
        console.print(f"round {r['round']}: {r['global_hash'][:16]}…{miss}")
    console.print(f"final model sha256 {res['final_hash']}; results in {result_file}")


def register(app: typer.Typer) -> None:
    app.add_typer(node_app, name="node")
    app.add_typer(coordinator_app, name="coordinator")
    app.add_typer(task_app, name="task")
