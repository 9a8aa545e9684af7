"""Consortium and task lifecycle commands: ``org``, ``task create|join|status|run-local``,
``ledger events``, ``model fetch`` and ``verify``.

Everything here reads and writes a matswarm home folder (``--home`` or ``$MATSWARM_HOME``,
default ``~/.matswarm``); see :mod:`matswarm.runtime.local`. Private keys never leave their
encrypted keystores and are never printed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matswarm.cli._output import console, fail

HomeOpt = Annotated[
    Path | None,
    typer.Option("--home", help="matswarm home folder (default $MATSWARM_HOME or ~/.matswarm)."),
]

org_app = typer.Typer(help="Organisations: keys, registration and admission.", no_args_is_help=True)
ledger_app = typer.Typer(help="Read the ledger.", no_args_is_help=True)
model_app = typer.Typer(help="Final models archived by tasks.", no_args_is_help=True)


def _home(home: Path | None):
    from matswarm.runtime.local import Home

    return Home(home)


def _passphrase(name: str, confirm: bool = False) -> str:
    from matswarm.runtime.local import passphrase_for

    value = passphrase_for(name)
    if value:
        return value
    return typer.prompt(
        f"Passphrase for {name}'s keystore", hide_input=True, confirmation_prompt=confirm
    )


def _errors():
    """Exceptions that are the user's to fix: shown as one clear line, exit code 2."""
    from matswarm.data import DataError
    from matswarm.ledger import LedgerError
    from matswarm.runtime.local import HomeError
    from matswarm.store import StoreError
    from matswarm.trust import TrustError

    return (HomeError, DataError, LedgerError, StoreError, TrustError, ValueError, OSError)


# -- org -----------------------------------------------------------------------------------------
@org_app.command("init")
def org_init(
    name: Annotated[str, typer.Argument(help="Organisation name, e.g. lab-a.")],
    home: HomeOpt = None,
) -> None:
    """Create NAME's keys (Ed25519, X25519, EVM account) in an encrypted keystore."""
    h = _home(home)
    try:
        if h.keystore_path(name).exists():
            fail(f"{h.keystore_path(name)} exists; choose another name or remove it first")
        ident = h.init_org(name, _passphrase(name, confirm=True))
    except _errors() as exc:
        fail(str(exc))
    console.print(
        f"created {name}: EVM address {ident.evm_address}, key fingerprint "
        f"{ident.public.fingerprint}"
    )
    console.print(f"  keystore (encrypted, keep private): {h.keystore_path(name)}")
    console.print(f"  public identity (send to the consortium): {h.public_path(name)}")


@org_app.command("register")
def org_register(
    name: Annotated[str, typer.Argument(help="An org initialised in this home.")],
    home: HomeOpt = None,
    rpc: Annotated[
        str | None,
        typer.Option(
            help="Found on a JSON-RPC chain at this URL (with --contract and --chain-id)."
        ),
    ] = None,
    contract: Annotated[str | None, typer.Option(help="Deployed SwarmLedger address.")] = None,
    chain_id: Annotated[
        int | None, typer.Option(help="The chain's id (required with --rpc).")
    ] = None,
) -> None:
    """Record NAME's public keys on the ledger. The first org to register founds the consortium
    (on an embedded chain in the home folder unless --rpc is given); later orgs must have been
    admitted by the founders or a 2/3 vote of members."""
    from matswarm.runtime.local import register_public

    h = _home(home)
    try:
        ident = h.identity(name, _passphrase(name))
        if not h.config_path.exists():
            rpc_cfg = None
            if rpc is not None:
                if not contract or chain_id is None:
                    fail("--rpc needs --contract and --chain-id")
                rpc_cfg = {"url": rpc, "address": contract, "chain_id": chain_id}
            ledger = h.found(ident, rpc_cfg)
            console.print(
                f"{name} founded the consortium ({h.config()['ledger']['backend']} "
                f"ledger, contract {ledger.address})"
            )
        else:
            ledger = h.ledger(ident.evm_account())
        with ledger:
            if not ledger.is_admitted(ident.evm_address):
                fail(
                    f"{name} ({ident.evm_address}) is not admitted yet: a member runs "
                    f"`matswarm org admit {h.public_path(name)} --by MEMBER`"
                )
            register_public(ledger, ident.public)
    except _errors() as exc:
        fail(str(exc))
    console.print(f"registered {name}'s public keys on the ledger")


def _load_public(path: Path):
    from matswarm.trust import PublicIdentity

    try:
        return PublicIdentity.from_json(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"{path}: not a public identity file ({exc})")


@org_app.command("admit")
def org_admit(
    public: Annotated[Path, typer.Argument(help="The candidate's NAME.pub.json.")],
    by: Annotated[str, typer.Option(help="The admitted member proposing or voting.")],
    home: HomeOpt = None,
) -> None:
    """Propose (or vote for) admitting an org. A founder admits at once; otherwise 2/3 of the
    members must vote."""
    from matswarm.protocol.trusted import org_metadata

    cand = _load_public(public)
    h = _home(home)
    try:
        member = h.identity(by, _passphrase(by))
        with h.ledger(member.evm_account()) as led:
            if led.is_admitted(cand.evm_address):
                console.print(f"{cand.name} is already admitted")
                return
            try:
                admitted = led.propose_admission(
                    cand.evm_address,
                    bytes.fromhex(cand.ed25519),
                    bytes.fromhex(cand.x25519),
                    org_metadata(cand),
                )
            except _errors() as exc:
                if "open proposal" not in str(exc) and "already proposed" not in str(exc):
                    raise
                admitted = led.vote_admission(cand.evm_address)
    except _errors() as exc:
        fail(str(exc))
    console.print(f"{cand.name}: {'admitted' if admitted else 'vote recorded, not admitted yet'}")


@org_app.command("list")
def org_list(home: HomeOpt = None) -> None:
    """Admitted organisations, in admission order."""
    h = _home(home)
    try:
        with h.ledger() as led:
            table = Table(title="Consortium members")
            for col in ("name", "address", "founder", "keys registered"):
                table.add_column(col)
            for addr in led.members():
                info = led.org_info(addr)
                try:
                    name = json.loads(info.metadata)["name"]
                except (ValueError, KeyError, TypeError):
                    name = info.metadata or "?"
                table.add_row(
                    name, addr, "yes" if info.founder else "", "yes" if any(info.ed25519) else "no"
                )
    except _errors() as exc:
        fail(str(exc))
    console.print(table)


# -- task (lifecycle commands added to the shared `task` group) ------------------------------------
def add_task_commands(task_app: typer.Typer) -> None:
    task_app.command("create")(task_create)
    task_app.command("join")(task_join)
    task_app.command("status")(task_status)
    task_app.command("run-local")(task_run_local)


def task_create(
    config: Annotated[
        Path,
        typer.Argument(
            help="TOML with [model], [training], [aggregation] (see `matswarm run --help`)."
        ),
    ],
    by: Annotated[str, typer.Option(help="The issuing org (a participant).")],
    participants: Annotated[str, typer.Option(help="Comma-separated org names, ring order.")],
    schema_from: Annotated[
        Path,
        typer.Option(
            help="A table whose columns define the schema (the issuer's own, or a header-only CSV)."
        ),
    ],
    algorithm: Annotated[str, typer.Option(help="Federated algorithm.")] = "matswarm",
    name: Annotated[str, typer.Option(help="Task name.")] = "task",
    deadline: Annotated[int, typer.Option(help="Round deadline in seconds.")] = 3600,
    encrypt: Annotated[bool, typer.Option(help="Encrypt updates to the participants.")] = True,
    verification: Annotated[
        str,
        typer.Option(
            help="How the orgs check each round: every-org (each re-aggregates every update) "
            "or leader (a rotating org aggregates, the others check its signed claim and audit "
            "it at random; linear work per round)."
        ),
    ] = "every-org",
    audit_rate: Annotated[
        float | None,
        typer.Option(help="leader mode: probability a follower audits a round (default 1/(n-1))."),
    ] = None,
    org_columns: Annotated[
        list[str] | None,
        typer.Option(
            help="ORG=TABLE (repeatable): heterogeneous feature spaces; the org holds the "
            "schema's features that TABLE (its own table, or a header-only CSV) has, and may "
            "lack the others (use a mask-aware model: masked-mlp or fedmdh)."
        ),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Propose a sharing task: the spec and initial model go to the store, the task to the
    ledger. Prints the task id that participants join."""
    from matswarm.data import TaskSchema, read_table
    from matswarm.experiments.config import ConfigError, ExperimentConfig
    from matswarm.protocol.codec import encode_vector
    from matswarm.protocol.messages import vector_hash
    from matswarm.protocol.spec import TaskSpec

    h = _home(home)
    names = [p.strip() for p in participants.split(",") if p.strip()]
    if by not in names:  # before its keystore is opened: a typo is not a missing key
        fail(f"--by: the issuer {by!r} must be one of the participants {names}")
    try:
        cfg = ExperimentConfig.from_toml(config)
        cfg.methods = [algorithm]
        algo = cfg.algorithm(algorithm)
        if not getattr(algo, "federated", False):
            fail(f"{algorithm!r} is not a federated algorithm")
        cd = cfg.data
        featurizer = None
        schema_table = read_table(schema_from)
        if cd.get("featurize"):  # every org featurises locally with exactly this featuriser
            from matswarm.data.featurize import prepare_table, task_featurizer

            featurizer = task_featurizer(
                cd["featurize"], cd.get("formula_column", "formula"), cd.get("skip_invalid", False)
            )
            schema_table = prepare_table(schema_table, str(schema_from), featurizer)
        schema = TaskSchema.infer(
            schema_table,
            cd["target"],
            unit=cd["unit"],
            categorical=cd["categorical"],
            exclude=cd["exclude"],
            source=str(schema_from),
            task=cd.get("task", "regression"),
            threshold=cd.get("threshold"),
            positive=cd.get("positive", "above"),
        )
        if org_columns:
            from matswarm.data.heterogeneous import declare_org_features

            schema = declare_org_features(schema, org_columns, names)
        from matswarm.protocol.leader import Verification

        checking = Verification(verification, audit_rate)
        if checking.mode == "leader" and cfg.contribution is not None:
            fail(
                f"{config}: [contribution] needs every org to score the round's updates, which "
                "verification 'leader' does not give them; use --verification every-org"
            )
        seed = cfg.seeds[0]
        initial = cfg.model.build(schema.n_features, seed).get_flat()
        spec = TaskSpec.for_run(
            name,
            names,
            cfg.model,
            algo,
            cfg.make_rule(),
            seed,
            schema.to_dict(),
            vector_hash(initial),
            encrypt_updates=encrypt,
            round_duration_s=deadline,
            contribution=None if cfg.contribution is None else cfg.contribution.to_dict(),
            featurizer=featurizer,
            privacy=_privacy_of(cfg, algo),
            verification=checking.spec_fields(),
        )
        issuer = h.identity(by, _passphrase(by))
        store = h.store()
        store.put(spec.to_json())
        store.put(encode_vector(initial))
        with h.ledger(issuer.evm_account()) as led:
            from matswarm.protocol.trusted import directory_from_ledger

            directory = directory_from_ledger(led, led.members())
            missing = [n for n in names if n not in directory]
            if missing:
                fail(f"not registered members of the consortium: {', '.join(missing)}")
            task_id = led.create_task(
                [directory[n].evm_address for n in names],
                spec_hash=spec.digest(),
                train_code_hash=bytes.fromhex(spec.train_code_sha256),
                agg_code_hash=bytes.fromhex(spec.agg_code_sha256),
                rounds=spec.rounds,
                round_duration_s=deadline,
            )
    except (ConfigError, *_errors()) as exc:
        fail(str(exc))
    console.print(
        f"task 0x{task_id.hex()} created: {algorithm}, {spec.rounds} rounds, "
        f"{len(names)} participants, {schema.n_features} features"
    )
    for org in schema.org_features:
        lacks = schema.missing_for(org)
        console.print(f"  {org} holds {schema.n_features - len(lacks)}; lacks: {', '.join(lacks)}")


def task_join(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")],
    org: Annotated[str, typer.Option(help="Your organisation.")],
    data: Annotated[Path, typer.Option(help="Your private table (CSV/Parquet).")],
    home: HomeOpt = None,
) -> None:
    """Check your table against the task schema and bind it to the task. No row leaves."""
    from matswarm.protocol.verify import load_spec
    from matswarm.runtime.local import parse_task_id

    h = _home(home)
    try:
        tid = parse_task_id(task)
        with h.ledger() as led:
            spec = load_spec(led, h.store(), tid)
        rec = h.join(spec, tid, org, data)
    except _errors() as exc:
        fail(str(exc))
    console.print(
        f"{org} joined task {task[:12]}…: {rec.rows} rows of {data} match the schema "
        f"(sha256 {rec.sha256[:12]}…); no row leaves this machine"
    )
    from matswarm.data import TaskSchema

    lacks = TaskSchema.from_dict(spec.schema).missing_for(org)
    if lacks:
        console.print(f"  declared missing (masked, never imputed): {', '.join(lacks)}")


def task_status(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")], home: HomeOpt = None
) -> None:
    """Where a task stands: rounds finalised, and what the current round is waiting for."""
    from matswarm.protocol.trusted import directory_from_ledger
    from matswarm.runtime.local import parse_task_id

    h = _home(home)
    try:
        tid = parse_task_id(task)
        with h.ledger() as led:
            info = led.task_info(tid)
            names = {
                pub.evm_address: n
                for n, pub in directory_from_ledger(led, info.participants).items()
            }
            console.print(
                f"task {task}: {info.status.name.lower()}, round "
                f"{info.current_round} of {info.rounds}, quorum {info.quorum} of "
                f"{len(info.participants)}"
            )
            if info.status.name == "ACTIVE":
                r = led.round_info(tid, info.current_round)
                who = [names.get(a, a) for a in info.participants]
                if r.phase.name == "COMMIT":
                    missing = [names.get(a, a) for a in info.participants if a not in r.commitments]
                    console.print(
                        f"waiting for commitments: {len(r.commitments)} of "
                        f"{len(who)} for round {r.round}; missing: "
                        f"{', '.join(missing) or '-'}"
                    )
                else:
                    missing = [names.get(a, a) for a in info.participants if a not in r.votes]
                    console.print(
                        f"waiting for votes: {len(r.votes)} of {len(who)} for round "
                        f"{r.round}; missing: {', '.join(missing) or '-'}"
                    )
            if info.final_model_cid:
                console.print(f"final model: {info.final_model_cid}")
            _governance_status(led, h.store(), tid, info, names)
    except _errors() as exc:
        fail(str(exc))


def _governance_status(led, store, tid, info, names) -> None:
    """Contributions, registration-threshold rejections and the final-model vote of a task."""
    from matswarm.cli._contrib import EXPLAIN, contributions_table
    from matswarm.contrib import records

    docs = records.contributions(led, store, tid)
    if docs:
        r = 0 if 0 in docs else max(docs)
        what = "whole task" if r == 0 else f"rounds 1–{r} so far: round {r}"
        console.print(contributions_table(docs[r], f"Contributions ({what})"))
        console.print(f"[dim]{EXPLAIN}[/]")
    seen: dict[tuple[int, str], tuple[str, int]] = {}
    for e in led.events(tid, names=["UpdateRejected"]):
        key = (int(e.args["round"]), names.get(_checksum(e.args["org"]), e.args["org"]))
        reason, n = seen.get(key, (e.args["reason"], 0))
        seen[key] = (reason, n + 1)
    for (rnd, org), (reason, n) in sorted(seen.items()):
        excluded = "excluded" if n >= info.quorum else "not excluded (below quorum)"
        console.print(f"round {rnd}: {org}'s update rejected by {n} org(s), {excluded}: {reason}")
    fv = led.final_votes(tid)
    if fv.votes:
        verdict = {True: "accepted", False: "REJECTED (not archived)", None: "open"}[fv.decided]
        console.print(
            f"final-model vote: {fv.accepts} accept, {fv.rejects} reject of "
            f"{len(info.participants)} (quorum {info.quorum}): {verdict}"
        )


def _checksum(addr: str) -> str:
    from eth_utils import to_checksum_address

    return to_checksum_address(addr)


def _privacy_of(cfg, algo) -> dict | None:
    """The config's [privacy] section for the spec, checked against the task's method."""
    if cfg.privacy is None:
        return None
    from matswarm.privacy.dp import check_compatible

    try:
        check_compatible(cfg.privacy, algo, cfg.model.name, cfg.rule)
    except ValueError as exc:
        fail(f"{cfg.source}: {exc}")
    return cfg.privacy.to_dict()


def task_run_local(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")],
    home: HomeOpt = None,
    enclave: Annotated[bool, typer.Option(help="Aggregate in a SIMULATED enclave.")] = False,
    verbose: Annotated[bool, typer.Option(help="Print every commitment.")] = False,
) -> None:
    """Run TASK with every participant in this home, in this process (resumes after a crash)."""
    from matswarm.runtime.local import parse_task_id, run_local_task

    h = _home(home)
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bar: dict = {}

    def on_event(kind: str, d: dict) -> None:
        if kind == "start":
            if d["from_round"] > 1:
                console.print(
                    f"resuming at round {d['from_round']} (rounds 1–"
                    f"{d['from_round'] - 1} verified from the ledger and store)"
                )
            bar["id"] = progress.add_task(
                "rounds", total=d["rounds"], completed=d["from_round"] - 1
            )
        elif kind == "commit" and verbose:
            progress.console.print(f"round {d['round']}: {d['org']} committed", highlight=False)
        elif kind == "round":
            progress.update(bar["id"], advance=1)
            if "privacy" in d:  # the DP spend, every round
                progress.console.print(d["privacy"], highlight=False)

    try:
        tid = parse_task_id(task)
        with progress:
            out = run_local_task(h, tid, on_event=on_event, enclave=enclave)
    except _errors() as exc:
        fail(str(exc))
    if out["final_model_cid"] is None:
        console.print(
            f"task {out['task']} finished; the participants voted the final model down: "
            "it is not archived (`matswarm task status` shows the vote)"
        )
    else:
        console.print(f"task {out['task']} finished; final model {out['final_model_cid']}")


# -- ledger, model, verify -------------------------------------------------------------------------
@ledger_app.command("events")
def ledger_events(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")],
    home: HomeOpt = None,
    limit: Annotated[int, typer.Option(help="Show the last N events.")] = 50,
) -> None:
    """The task's ledger events (from the adapter's SQLite index)."""
    from matswarm.runtime.local import parse_task_id

    h = _home(home)
    try:
        tid = parse_task_id(task)
        with h.ledger() as led:
            events = led.events(tid)
    except _errors() as exc:
        fail(str(exc))
    table = Table(title=f"{len(events)} events of task {task[:12]}… (last {limit})")
    for col in ("block", "event", "round", "org", "detail"):
        table.add_column(col)
    for e in events[-limit:]:
        a = e.args
        detail = ", ".join(
            f"{k}={str(v)[:14]}" for k, v in a.items() if k not in ("taskId", "round", "org")
        )
        table.add_row(
            str(e.block_number),
            e.name,
            str(a.get("round", "")),
            str(a.get("org", ""))[:12],
            detail[:60],
        )
    console.print(table)


@model_app.command("fetch")
def model_fetch(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")],
    out: Annotated[Path, typer.Option("--out", help="Folder to write the model into.")] = Path("."),
    home: HomeOpt = None,
) -> None:
    """Download the task's final model, check it against the ledger, write model.safetensors
    and model_card.json."""
    from matswarm.protocol.archive import flat_parameters, read_archive
    from matswarm.protocol.messages import vector_hash
    from matswarm.protocol.verify import load_spec
    from matswarm.runtime.local import parse_task_id

    h = _home(home)
    try:
        tid = parse_task_id(task)
        with h.ledger() as led:
            info = led.task_info(tid)
            if not info.final_model_cid:
                fail(f"task {task} has no final model yet ({info.status.name.lower()})")
            store = h.store()
            blob = store.get(info.final_model_cid)  # checks the content id
            spec = load_spec(led, store, tid)
        weights, card = read_archive(blob)
        flat = flat_parameters(spec.model_spec().build(len(spec.schema["features"])), weights)
        if info.final_model_hash is None or vector_hash(flat) != info.final_model_hash.hex():
            fail("the archived weights are not the model the ledger recorded")
        onnx = _fetch_onnx(store, card)
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.safetensors").write_bytes(blob)
        (out / "model_card.json").write_text(json.dumps(card, indent=1) + "\n")
        if onnx is not None:
            (out / "model.onnx").write_bytes(onnx)
    except _errors() as exc:
        fail(str(exc))
    console.print(
        f"wrote {out / 'model.safetensors'}, {out / 'model_card.json'}"
        f"{', model.onnx' if onnx is not None else ''} "
        f"(verified against the ledger: {info.final_model_cid})"
    )


def _fetch_onnx(store, card: dict) -> bytes | None:
    """The ONNX export the card names, checked against the card's sha256 (None if none)."""
    import hashlib

    info = card.get("onnx")
    if not info:
        return None
    blob = store.get(info["cid"])
    if hashlib.sha256(blob).hexdigest() != info["sha256"]:
        fail("the stored ONNX file is not the one the model card records")
    return blob


def verify(
    task: Annotated[str, typer.Argument(help="Task id (0x…).")],
    org: Annotated[
        str | None,
        typer.Option(help="A participant or auditor in this home whose key decrypts the updates."),
    ] = None,
    home: HomeOpt = None,
) -> None:
    """Re-derive every round from the ledger and the store alone: signatures, commitments,
    recomputed aggregates, quorum, final model. Exit code 1 names the first bad round/org."""
    from matswarm.protocol.verify import first_failure_line, report_lines, verify_task
    from matswarm.runtime.local import parse_task_id

    h = _home(home)
    try:
        tid = parse_task_id(task)
        identity = h.identity(org, _passphrase(org)) if org else None
        with h.ledger() as led, Progress(console=console, transient=True) as bar:
            t = bar.add_task("verifying rounds", total=None)
            rep = verify_task(
                led,
                h.store(),
                tid,
                identity=identity,
                progress=lambda r, n: bar.update(t, completed=r, total=n),
            )
    except _errors() as exc:
        fail(str(exc))
    for line in report_lines(rep):
        if line.startswith("FAIL") or "excluded" in line or "round" not in line:
            console.print(line, highlight=False)
    console.print(f"[bold {'green' if rep.ok else 'red'}]{first_failure_line(rep)}[/]")
    console.print(
        "[dim]Verified: signatures, commitments, aggregates and quorum. Not verifiable "
        "from here: that orgs trained honestly on honest data.[/]"
    )
    if not rep.ok:
        raise typer.Exit(1)


def register(app: typer.Typer, task_app: typer.Typer) -> None:
    app.add_typer(org_app, name="org")
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(model_app, name="model")
    app.command("verify")(verify)
    add_task_commands(task_app)
