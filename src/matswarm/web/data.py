"""What the dashboard shows, read from a home's ledger and artifact store only.

The ledger is opened read-only (:mod:`matswarm.ledger.readonly` for the embedded chain, which
``task run-local`` may be writing at the same time; a JSON-RPC chain is read through its node)
with an event index of the dashboard's own, in memory. Nothing is ever written: not the chain,
not the writer's event index, not the store. Immutable things (task specs, org names, model
cards, report documents, evaluation curves of finalised rounds) are cached by their content
hash, so a page render costs a few index queries and contract views.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

from hexbytes import HexBytes

from matswarm.ledger import Ledger, LedgerError, RoundPhase, TaskStatus
from matswarm.protocol.spec import TaskSpec
from matswarm.runtime.local import Home, HomeError
from matswarm.store import BlobStore, StoreError
from matswarm.store.cid import cid_from_digest
from matswarm.web.views import (
    Contributions,
    Member,
    RoundRow,
    TaskModels,
    TaskRow,
    TaskView,
)

#: Events the round table and the sections above it already show; any other event of a task
#: (e.g. governance votes on the final model) is listed generically.
ROUND_EVENTS = frozenset(
    {
        "TaskCreated",
        "RoundOpened",
        "UpdateCommitted",
        "CommitsClosed",
        "GlobalVoted",
        "RoundFinalized",
        "UpdateRejected",
        "ReportRecorded",
        "TaskCompleted",
        "FinalModelSet",
    }
)
CONTRIBUTIONS_KIND = "contributions"
#: How many of the newest tasks :meth:`Dashboard.warm` reads at startup.
WARM_TASKS = 20


def open_readonly_ledger(home: Home) -> Ledger:
    """The home's ledger, read-only, with its own in-memory event index."""
    cfg = home.config()["ledger"]
    if cfg["backend"] == "embedded":
        from matswarm.ledger.readonly import open_embedded_readonly

        folder = home.path / cfg["path"]
        if not (folder / "chain.sqlite").exists():
            raise HomeError(f"the consortium's embedded ledger {folder} is missing")
        return open_embedded_readonly(folder)
    return Ledger.connect(cfg["url"], cfg["address"], None, chain_id=int(cfg["chain_id"]))


def open_store_readonly(home: Home) -> BlobStore:
    """The home's artifact store, without creating its folder (a :class:`StoreError` says
    it does not exist yet: no task was created)."""
    loc = home.config().get("store", "store")
    if "://" not in loc and not (home.path / loc).is_dir():
        raise StoreError(f"the consortium's store {home.path / loc} does not exist yet")
    return home.store()


def short(value: str | bytes | None, n: int = 10) -> str:
    if value is None:
        return "-"
    text = HexBytes(value).to_0x_hex() if isinstance(value, bytes) else str(value)
    return text if len(text) <= n + 4 else text[: n + 2] + "…"


class Dashboard:
    """Read-only access to one home for the web pages (thread-safe: one lock for all reads)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.ledger = open_readonly_ledger(home)
        self._store: BlobStore | None = None
        self._lock = threading.RLock()
        self._names: dict[str, str] = {}
        self._names_key: int = -1
        self._depth = 0
        self._members: list[Member] = []
        self._specs: dict[bytes, dict[str, Any]] = {}
        self._spec_objs: dict[bytes, TaskSpec] = {}
        self._cards: dict[str, dict[str, Any]] = {}
        self._docs: dict[tuple[str, bytes], dict[str, Any] | str] = {}

    @property
    def store(self) -> BlobStore:
        if self._store is None:
            self._store = open_store_readonly(self.home)
        return self._store

    def close(self) -> None:
        self.ledger.close()

    def warm(self, tasks: int = WARM_TASKS) -> int:
        """At startup rather than in the first pages: build the event index from the chain,
        read the members, and fill the caches (spec, card, report documents) of the newest
        ``tasks`` tasks. Returns the number of events indexed."""
        with self.reading():
            n = len(self.ledger.events())
            for row in self.tasks()[:tasks]:
                self.task(bytes.fromhex(row.task[2:]))
            return n

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the lock and one chain snapshot (embedded chain) for a whole page."""
        snap = getattr(self.ledger.chain, "snapshot", None)
        with self._lock, snap() if snap else nullcontext():
            self._depth += 1
            try:
                if self._depth == 1:
                    self._refresh_names()
                yield
            finally:
                self._depth -= 1

    # -- members -------------------------------------------------------------------------------
    def _refresh_names(self) -> None:
        """Org names by address, re-read when an org was admitted or re-registered (checked
        once per page, not once per name)."""
        key = len(self.ledger.events(names=["OrgAdmitted", "OrgUpdated"]))
        if key != self._names_key:
            members = []
            for addr in self.ledger.members():
                info = self.ledger.org_info(addr)
                members.append(
                    Member(
                        addr,
                        _org_name(info.metadata, addr),
                        info.founder,
                        any(info.ed25519),
                        info.admitted_at_block,
                    )
                )
            self._members = members
            self._names = {m.address.lower(): m.name for m in members}
            self._names_key = key

    def name(self, addr: str) -> str:
        """The org's registered name (the address, shortened, if it has none)."""
        return self._names.get(addr.lower(), short(addr))

    def members(self) -> list[Member]:
        """Admitted orgs in admission order (re-read from the contract when that changes)."""
        with self.reading():
            return list(self._members)

    # -- tasks ---------------------------------------------------------------------------------
    def tasks(self) -> list[TaskRow]:
        with self.reading():
            rows = []
            for e in self.ledger.events(names=["TaskCreated"]):
                tid = bytes(HexBytes(e.args["taskId"]))
                info = self.ledger.task_info(tid)
                rows.append(
                    TaskRow(
                        "0x" + tid.hex(),
                        str(self.spec(info.spec_hash).get("name", "?")),
                        info.status.name.lower(),
                        info.current_round,
                        info.rounds,
                        len(info.participants),
                        info.quorum,
                        e.block_number,
                        e.tx_hash,
                    )
                )
            return rows[::-1]  # newest first

    def spec(self, spec_hash: bytes) -> dict[str, Any]:
        """The task spec as JSON (``{"name": "?", "error": ...}`` if the store lacks it)."""
        obj = self.spec_obj(spec_hash)
        if isinstance(obj, str):
            return {"name": "?", "error": f"task spec not readable from the store: {obj}"}
        return self._specs[spec_hash]

    def spec_obj(self, spec_hash: bytes) -> TaskSpec | str:
        if spec_hash not in self._spec_objs:
            try:
                blob = self.store.get(cid_from_digest(spec_hash))
                self._spec_objs[spec_hash] = TaskSpec.from_json(blob)
                self._specs[spec_hash] = json.loads(blob)
            except (StoreError, ValueError) as exc:
                return str(exc)
        return self._spec_objs[spec_hash]

    def task(self, task_id: bytes) -> TaskView:
        with self.reading():
            info = self.ledger.task_info(task_id)
            spec = self.spec(info.spec_hash)
            problems = [spec["error"]] if "error" in spec else []
            n = len(info.participants)
            rounds = [self._round_row(r, n) for r in self.ledger.rounds(task_id).values()]
            events = self.ledger.events(task_id)
            rejections, other, final_tx = [], [], None
            for e in events:
                if e.name == "UpdateRejected":
                    rejections.append(
                        {
                            "round": e.args.get("round"),
                            "org": self.name(e.args["org"]),
                            "reporter": self.name(e.args["reporter"]),
                            "reason": e.args.get("reason", ""),
                            "tx": e.tx_hash,
                            "block": e.block_number,
                        }
                    )
                elif e.name == "FinalModelSet":
                    final_tx = e.tx_hash
                elif e.name not in ROUND_EVENTS:
                    other.append(self._generic(e))
            reports, contributions = self._reports(task_id, problems)
            card = None
            if info.final_model_cid:
                card = self.card(info.final_model_cid, problems)
            return TaskView(
                task="0x" + task_id.hex(),
                name=str(spec.get("name", "?")),
                status=info.status.name.lower(),
                issuer=self.name(info.issuer),
                current_round=info.current_round,
                rounds_total=info.rounds,
                quorum=info.quorum,
                participants=[(self.name(a), a) for a in info.participants],
                spec_hash="0x" + info.spec_hash.hex(),
                spec=spec,
                rounds=rounds,
                rejections=rejections,
                reports=reports,
                contributions=contributions,
                other_events=other,
                final_model_cid=info.final_model_cid,
                final_model_hash=(
                    None if info.final_model_hash is None else "0x" + info.final_model_hash.hex()
                ),
                final_tx=final_tx,
                card=card,
                problems=problems,
            )

    def progress(self, task_id: bytes) -> tuple[str, list[RoundRow]]:
        """Status and round rows only: what the live-updating table polls."""
        with self.reading():
            info = self.ledger.task_info(task_id)
            n = len(info.participants)
            rows = [self._round_row(r, n) for r in self.ledger.rounds(task_id).values()]
            return info.status.name.lower(), rows

    def round(self, task_id: bytes, number: int) -> tuple[str, RoundRow]:
        """The task's name and one round's row (:class:`LedgerError` if it was not opened)."""
        with self.reading():
            info = self.ledger.task_info(task_id)
            rounds = self.ledger.rounds(task_id)
            if number not in rounds:
                raise LedgerError(f"round {number} of task 0x{task_id.hex()} was not opened")
            name = str(self.spec(info.spec_hash).get("name", "?"))
            return name, self._round_row(rounds[number], len(info.participants))

    def _round_row(self, r: Any, n: int) -> RoundRow:
        commits = [
            {"org": self.name(c.org), "tx": c.tx_hash, "cid": c.cid, "block": c.block_number}
            for c in r.commitments.values()
        ]
        votes = [
            {
                "org": self.name(org),
                "tx": r.vote_txs.get(org, ""),
                "hash": "0x" + h.hex(),
                "agrees": r.final_hash is None or h == r.final_hash,
            }
            for org, h in r.votes.items()
        ]
        phase = {RoundPhase.FAILED: "failed", RoundPhase.NOT_OPENED: "not opened"}.get(
            r.phase, r.phase.name.lower()
        )
        return RoundRow(
            r.round,
            phase,
            commits,
            votes,
            [self.name(m) for m in r.missing],
            None if r.final_hash is None else "0x" + r.final_hash.hex(),
            n,
        )

    def _generic(self, e: Any) -> dict[str, Any]:
        args = {
            k: (self.name(v) if k in ("org", "voter", "reporter", "by") else v)
            for k, v in e.args.items()
            if k != "taskId"
        }
        return {"name": e.name, "block": e.block_number, "tx": e.tx_hash, "args": args}

    # -- reports and contributions --------------------------------------------------------------
    def document(self, cid: str, digest: bytes) -> dict[str, Any] | str:
        """A report's JSON document from the store, checked against its anchored sha256; a
        string says why it cannot be shown. Cached per (content id, digest): two reports may
        name the same blob with different digests."""
        key = (cid, digest)
        if key not in self._docs:
            if not cid:
                return "no content id was anchored"
            try:
                blob = self.store.get(cid)
            except StoreError as exc:
                return f"not in the store: {exc}"
            if hashlib.sha256(blob).digest() != digest:
                self._docs[key] = "the stored document does not match the digest on the ledger"
            else:
                try:
                    doc = json.loads(blob)
                    self._docs[key] = doc if isinstance(doc, dict) else "not a JSON object"
                except ValueError:
                    self._docs[key] = "not JSON"
        return self._docs[key]

    def _reports(
        self, task_id: bytes, problems: list[str]
    ) -> tuple[list[dict[str, Any]], list[Contributions]]:
        reports, contributions = [], []
        for rep in self.ledger.reports(task_id):
            row = {
                "kind": rep.kind,
                "round": rep.round,
                "reporter": self.name(rep.reporter),
                "tx": rep.tx_hash,
                "cid": rep.cid,
                "block": rep.block_number,
                "digest": "0x" + rep.digest.hex(),
                "note": "",
            }
            reports.append(row)
            if rep.kind != CONTRIBUTIONS_KIND:
                continue
            doc = self.document(rep.cid, rep.digest)
            if isinstance(doc, str):
                row["note"] = doc
                problems.append(f"contributions report in tx {short(rep.tx_hash)}: {doc}")
                continue
            try:
                contributions.append(self._contributions(rep, doc))
            except (KeyError, TypeError, ValueError) as exc:
                row["note"] = f"malformed contributions document: {exc}"
                problems.append(row["note"])
        return reports, contributions

    def _contributions(self, rep: Any, doc: dict[str, Any]) -> Contributions:
        values = {str(k): float(v) for k, v in doc["values"].items()}
        stderr = doc.get("stderr") or {}
        names = doc.get("names") or {}
        rows = [
            (
                str(names.get(a) or self.name(a)),
                v,
                None if stderr.get(a) is None else float(stderr[a]),
            )
            for a, v in sorted(values.items(), key=lambda kv: -kv[1])
        ]
        return Contributions(
            int(doc.get("round", rep.round)),
            str(doc.get("method", "?")),
            str(doc.get("metric", "?")),
            self.name(rep.reporter),
            rep.tx_hash,
            rep.cid,
            rows,
        )

    # -- final model ---------------------------------------------------------------------------
    def card(self, cid: str, problems: list[str] | None = None) -> dict[str, Any] | None:
        from matswarm.protocol.archive import read_archive
        from matswarm.protocol.codec import CodecError

        if cid not in self._cards:
            try:
                _, self._cards[cid] = read_archive(self.store.get(cid))
            except (StoreError, CodecError) as exc:
                if problems is not None:
                    problems.append(f"final model archive {cid}: {exc}")
                return None
        return self._cards[cid]

    def models(self, task_id: bytes) -> TaskModels:
        """What the charts need: the spec, the final model card and every finalised hash."""
        with self.reading():
            info = self.ledger.task_info(task_id)
            spec = self.spec_obj(info.spec_hash)
            finals = [
                (r.round, "0x" + r.final_hash.hex())
                for r in self.ledger.rounds(task_id).values()
                if r.final_hash is not None
            ]
            cid = info.final_model_cid
            return TaskModels(
                "0x" + task_id.hex(), spec, self.card(cid) if cid else None, finals, cid
            )

    def task_status(self, task_id: bytes) -> TaskStatus:
        with self.reading():
            return self.ledger.task_info(task_id).status


def _org_name(metadata: str, addr: str) -> str:
    try:
        return str(json.loads(metadata)["name"])
    except (ValueError, KeyError, TypeError):
        return metadata or short(addr)


def parse_task(task: str) -> bytes:
    """A task id from a URL path segment; :class:`HomeError` if it is not one."""
    from matswarm.runtime.local import parse_task_id

    return parse_task_id(task)


def run_verify(home: Home, task_id: bytes, identity: Any = None) -> dict[str, Any]:
    """``matswarm verify``'s re-derivation (:func:`matswarm.protocol.verify.verify_task`) over a
    fresh read-only view of the ledger (its own index, rebuilt from the chain)."""
    from matswarm.protocol.verify import first_failure_line, report_lines, verify_task

    ledger = open_readonly_ledger(home)
    try:
        snap = getattr(ledger.chain, "snapshot", None)
        with snap() if snap else nullcontext():
            rep = verify_task(ledger, open_store_readonly(home), task_id, identity=identity)
    finally:
        ledger.close()
    first = rep.first_failure
    return {
        "ok": rep.ok,
        "summary": first_failure_line(rep),
        "round": None if first is None else first.round,
        "org": None if first is None else first.org,
        "rounds_verified": rep.rounds_verified,
        "rounds_total": rep.rounds_total,
        "lines": report_lines(rep),
    }
