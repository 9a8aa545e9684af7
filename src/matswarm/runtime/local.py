"""A matswarm home folder: org keystores, the consortium's ledger and store, task joins, and
running a task whose organisations are all on this machine (the in-process runtime), resumable
after the process is killed.

Layout of ``$MATSWARM_HOME`` (default ``~/.matswarm``)::

    orgs/NAME.keystore.json   encrypted keys (Ed25519, X25519, EVM), mode 0600
    orgs/NAME.pub.json        the public identity to hand to the consortium
    consortium.json           which ledger (embedded folder or JSON-RPC URL) and store
    ledger/                   the embedded chain (when the consortium uses it)
    store/                    the local content-addressed artifact store
    tasks/TASK/joins/ORG.json an org's binding of its private table to the task

Passphrases come from ``MATSWARM_PASSPHRASE_<ORG>`` (org name upper-cased, ``-`` as ``_``),
else ``MATSWARM_PASSPHRASE``, else the caller prompts.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_account import Account

from matswarm.contrib import attach_contributions, final_model_votes, split_validation
from matswarm.contrib.audit import ContributionAudit
from matswarm.data import DataError, TaskSchema, build_dataset, read_table
from matswarm.data.featurize import prepare_table
from matswarm.ledger import Ledger, TaskStatus
from matswarm.models.masked import MASK_AWARE
from matswarm.privacy import make_private
from matswarm.protocol.consortium import Consortium, finish_task
from matswarm.protocol.messages import vector_hash
from matswarm.protocol.spec import TaskSpec
from matswarm.protocol.trusted import TrustedHooks, org_metadata
from matswarm.protocol.verify import first_failure_line, load_spec, verify_task
from matswarm.runtime.inprocess import build_engine, configure_torch
from matswarm.store import BlobStore, open_store
from matswarm.trust import OrgIdentity, PublicIdentity

HOME_ENV = "MATSWARM_HOME"


class HomeError(RuntimeError):
    """Something the user must set up first; the message says what to run."""


def default_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".matswarm")


def passphrase_for(name: str) -> str | None:
    key = "MATSWARM_PASSPHRASE_" + name.upper().replace("-", "_")
    return os.environ.get(key) or os.environ.get("MATSWARM_PASSPHRASE")


def parse_task_id(task: str) -> bytes:
    raw = task.removeprefix("0x")
    try:
        tid = bytes.fromhex(raw)
    except ValueError:
        raise HomeError(f"task id {task!r} is not hex") from None
    if len(tid) != 32:
        raise HomeError(f"task id {task!r} must be 32 bytes (64 hex characters)")
    return tid


@dataclass
class JoinRecord:
    org: str
    data: str
    sha256: str
    rows: int


class Home:
    """Files of one matswarm installation (see the module docstring)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else default_home()

    # -- orgs ----------------------------------------------------------------------------------
    def keystore_path(self, name: str) -> Path:
        return self.path / "orgs" / f"{name}.keystore.json"

    def public_path(self, name: str) -> Path:
        return self.path / "orgs" / f"{name}.pub.json"

    def init_org(self, name: str, passphrase: str) -> OrgIdentity:
        ident = OrgIdentity.generate(name)
        (self.path / "orgs").mkdir(parents=True, exist_ok=True)
        ident.save(self.keystore_path(name), passphrase)
        self.public_path(name).write_text(ident.public.to_json() + "\n")
        return ident

    def identity(self, name: str, passphrase: str | None = None) -> OrgIdentity:
        path = self.keystore_path(name)
        if not path.exists():
            raise HomeError(f"no keystore for {name!r} at {path}; run `matswarm org init {name}`")
        return OrgIdentity.load(path, passphrase or passphrase_for(name))

    # -- consortium -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "consortium.json"

    def config(self) -> dict[str, Any]:
        if not self.config_path.exists():
            raise HomeError(
                f"no consortium configured in {self.path}; the founding org runs "
                "`matswarm org register NAME` first"
            )
        return json.loads(self.config_path.read_text())

    def found(self, founder: OrgIdentity, rpc: dict[str, Any] | None = None) -> Ledger:
        """Create the consortium with ``founder`` (embedded chain unless ``rpc`` is given)."""
        if self.config_path.exists():
            raise HomeError(f"{self.config_path} exists: this home already has a consortium")
        if rpc is None:
            ledger = Ledger.embedded(self.path / "ledger", founder.evm_account())
            cfg: dict[str, Any] = {"ledger": {"backend": "embedded", "path": "ledger"}}
        else:
            ledger = Ledger.connect(
                rpc["url"], rpc["address"], founder.evm_account(), chain_id=int(rpc["chain_id"])
            )
            cfg = {"ledger": {"backend": "rpc", **rpc}}
        cfg["store"] = "store"
        self.path.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(cfg, indent=1) + "\n")
        return ledger

    def ledger(self, account: Any = None) -> Ledger:
        """The consortium's ledger, signing as ``account`` (read-only view when ``None``)."""
        cfg = self.config()["ledger"]
        if cfg["backend"] == "embedded":
            folder = self.path / cfg["path"]
            if not folder.exists():
                raise HomeError(f"the consortium's embedded ledger {folder} is missing")
            # Opening needs an account; for a read-only view a throwaway one, never admitted,
            # which the contract would refuse anyway.
            return Ledger.embedded(folder, account if account is not None else Account.create())
        return Ledger.connect(
            cfg["url"],
            cfg["address"],
            account,
            chain_id=int(cfg["chain_id"]),
            index_path=self.path / "ledger-index.sqlite",
        )

    def store(self) -> BlobStore:
        loc = self.config().get("store", "store")
        return open_store(loc if "://" in loc else self.path / loc)

    # -- tasks ---------------------------------------------------------------------------------
    def join_path(self, task_id: bytes, org: str) -> Path:
        return self.path / "tasks" / ("0x" + task_id.hex()) / "joins" / f"{org}.json"

    def join(self, spec: TaskSpec, task_id: bytes, org: str, data: Path) -> JoinRecord:
        """Validate ``data`` against the task schema and record the binding (rows stay here)."""
        if org not in spec.participants:
            raise HomeError(
                f"{org} is not a participant of this task ({', '.join(spec.participants)})"
            )
        schema = TaskSchema.from_dict(spec.schema)
        table = prepare_table(read_table(data), str(data), spec.featurizer)
        X, _, _ = schema.encode_org(table, str(data), org)
        rec = JoinRecord(org, str(Path(data).resolve()), _sha256(data), len(X))
        path = self.join_path(task_id, org)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rec.__dict__, indent=1) + "\n")
        return rec

    def joins(self, task_id: bytes, spec: TaskSpec) -> dict[str, JoinRecord]:
        out, missing = {}, []
        for org in spec.participants:
            p = self.join_path(task_id, org)
            if p.exists():
                out[org] = JoinRecord(**json.loads(p.read_text()))
            else:
                missing.append(org)
        if missing:
            raise HomeError(
                f"not joined yet: {', '.join(missing)}; each runs `matswarm task join "
                f"0x{task_id.hex()} --org NAME --data FILE`"
            )
        return out


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


RoundCallback = Callable[[str, dict[str, Any]], None]


def run_local_task(
    home: Home,
    task_id: bytes,
    *,
    on_event: RoundCallback | None = None,
    enclave: bool = False,
) -> dict[str, Any]:
    """Run (or resume) a task whose participants all joined in ``home``.

    Finalised rounds are re-derived from the ledger and store (the same checks as
    ``matswarm verify``) and the task continues from the last finalised model; in the round
    that was open when the process died, orgs that had committed or voted are not asked again.
    """
    configure_torch()
    emit = on_event or (lambda _e, _d: None)
    ledger_ro = home.ledger()
    store = home.store()
    spec = load_spec(ledger_ro, store, task_id)
    joins = home.joins(task_id, spec)
    for org, j in joins.items():
        if _sha256(j.data) != j.sha256:
            raise HomeError(f"{j.data} changed since {org} joined (sha256 differs); join again")
    identities = {n: home.identity(n) for n in spec.participants}
    tables = {
        o: (prepare_table(read_table(j.data), j.data, spec.featurizer), j.data)
        for o, j in joins.items()
    }
    try:
        ds = build_dataset(
            tables,
            spec.schema["target"],
            schema=TaskSchema.from_dict(spec.schema),
            unit=spec.schema.get("unit", ""),
        )
    except DataError:
        raise
    if spec.model.get("name") in MASK_AWARE:
        ds = ds.with_missing("nan")  # mask-aware models read NaN as "this org lacks the column"
    ledger_ro.close()
    settings = spec.contribution_settings()
    validators = None
    if settings is not None:  # every org holds out its own validation rows (seeded carve)
        ds, validators = split_validation(ds, spec.model_spec(), settings, spec.seed)
    first = identities[spec.participants[0]]
    ledger = home.ledger(first.evm_account())
    try:
        cons = Consortium(ledger, store, identities)
        engine = build_engine(
            ds,
            spec.model_spec(),
            spec.build_algorithm(),
            spec.build_rule(),
            spec.seed,
            task="0x" + task_id.hex(),
        )
        privacy = spec.build_privacy()
        plan = None
        if privacy is not None:  # noise from each org's OS entropy
            plan = make_private(
                engine, privacy, rule_name=spec.rule, model_name=spec.model_spec().name
            )
        if vector_hash(engine.run_state.initial_global) != spec.initial_model_sha256:
            raise HomeError(
                "this installation's initial model differs from the task's "
                "(different matswarm or torch version?)"
            )
        replay = verify_task(ledger, store, task_id, identity=first)
        if not replay.ok:
            raise HomeError(f"the task's history does not verify: {first_failure_line(replay)}")
        start = replay.rounds_verified + 1
        assert replay.global_params is not None and replay.aggregator is not None
        engine.run_state.global_params = replay.global_params
        engine.aggregator = replay.aggregator
        agents = cons.agents(spec, task_id, engine.aggregator, enclave)
        for a in agents:
            a.resume_round = start
        engine.hooks = TrustedHooks(agents, on_event=emit)
        if settings is not None and validators is not None:
            previous = {}
            if start > 1:  # the finalised rounds' contributions, re-derived from the ledger
                audit = ContributionAudit(ledger, store, spec, task_id, agents[0].name_of)
                previous = {r: audit.round(r) for r in range(1, start)}
            attach_contributions(engine, validators, settings, previous)
        emit("start", {"task": "0x" + task_id.hex(), "from_round": start, "rounds": spec.rounds})
        for t in range(start, spec.rounds + 1):
            rec = engine.run_round(t)
            event = {"round": t, "global_hash": rec.global_hash}
            if plan is not None:
                event["epsilon_spent"] = max(plan.epsilon_after(t).values())
                event["privacy"] = plan.round_line(t)
            emit("round", event)
        info = ledger.task_info(task_id)
        cid = info.final_model_cid
        votes = detail = None
        if validators is not None and settings is not None:
            run = engine.run_state
            votes, detail = final_model_votes(
                validators, run.initial_global, run.global_params, settings
            )
        if cid is None and info.status is not TaskStatus.REJECTED:
            cid, _ = finish_task(
                cons,
                spec,
                task_id,
                engine,
                model=spec.model_spec().build(ds.schema.n_features),
                extra_card={
                    "scaler": ds.standardizer.to_dict(),
                    **({"privacy": plan.summary(spec.rounds)} if plan is not None else {}),
                },
                votes=votes,
                vote_detail=detail,
            )
        emit("done", {"final_model_cid": cid})
        return {"task": "0x" + task_id.hex(), "resumed_from": start, "final_model_cid": cid}
    finally:
        ledger.close()


def register_public(ledger_as_org: Ledger, public: PublicIdentity) -> None:
    ledger_as_org.register_org(
        bytes.fromhex(public.ed25519), bytes.fromhex(public.x25519), org_metadata(public)
    )
