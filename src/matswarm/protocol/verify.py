"""``matswarm verify``: re-derive a task from the ledger and the artifact store alone.

For every finalised round it checks, in order: each commitment's blob is in the store and
matches its content id and the committed hash; the envelope is signed by the committing org's
registered key for this task and round; the update decodes and names the same task, round and
org; the task's aggregation rule and server step applied to the valid updates (in participant
order, from the previous round's global model) give exactly the finalised hash; a quorum of
participants voted that hash; the global model's blob is in the store. Then it checks the final
model archive against the last round. A task with ``[privacy]`` also has every finalised
round's signed ``dp-epsilon`` report of every participant audited
(:func:`matswarm.privacy.reports.audit_reports`). The first failure is reported with its round
and org.

Encrypted updates need a participant's or auditor's identity to be decrypted; without one the
signature, commitment and quorum checks still run but the aggregate cannot be recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from eth_utils import to_checksum_address

from matswarm.ledger import Ledger, LedgerError, TaskStatus
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.archive import flat_parameters, read_archive
from matswarm.protocol.codec import CodecError, decode_update, decode_vector
from matswarm.protocol.messages import Update, vector_hash
from matswarm.protocol.spec import TaskSpec
from matswarm.protocol.trusted import UPDATE_KIND, ProtocolError, directory_from_ledger
from matswarm.store import BlobNotFoundError, BlobStore, StoreError
from matswarm.store.cid import cid_from_digest
from matswarm.trust import Envelope, EnvelopeVerifier, OrgIdentity, RejectedError, open_envelope


@dataclass
class Finding:
    ok: bool
    what: str
    round: int | None = None
    org: str | None = None


@dataclass
class VerifyReport:
    task: str
    findings: list[Finding] = field(default_factory=list)
    rounds_verified: int = 0
    rounds_total: int = 0
    #: State after the last verified round (what a resumed task continues from).
    global_params: np.ndarray | None = None
    aggregator: Aggregator | None = None

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)

    @property
    def first_failure(self) -> Finding | None:
        return next((f for f in self.findings if not f.ok), None)

    def add(self, ok: bool, what: str, round_: int | None = None, org: str | None = None) -> bool:
        self.findings.append(Finding(ok, what, round_, org))
        return ok


def load_spec(ledger: Ledger, store: BlobStore, task_id: bytes) -> TaskSpec:
    info = ledger.task_info(task_id)
    return TaskSpec.from_json(store.get(cid_from_digest(info.spec_hash)))


def verify_task(
    ledger: Ledger,
    store: BlobStore,
    task_id: bytes,
    identity: OrgIdentity | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VerifyReport:
    """Re-check every finalised round of ``task_id``; see the module docstring."""
    task_hex = "0x" + task_id.hex()
    rep = VerifyReport(task_hex)
    try:
        info = ledger.task_info(task_id)
        spec = TaskSpec.from_json(store.get(cid_from_digest(info.spec_hash)))
    except (StoreError, ValueError, ProtocolError, LedgerError) as exc:
        rep.add(False, f"task spec cannot be read: {exc}")
        return rep
    rep.rounds_total = info.rounds
    rep.add(True, f"task spec {info.spec_hash.hex()[:12]}… found in the store")
    code_ok = (
        info.train_code_hash.hex() == spec.train_code_sha256
        and info.agg_code_hash.hex() == spec.agg_code_sha256
    )
    if not rep.add(code_ok, "code hashes on the ledger match the spec"):
        return rep
    try:
        directory = directory_from_ledger(ledger, info.participants)
    except ProtocolError as exc:
        rep.add(False, str(exc))
        return rep
    names = [n for n in directory]
    if not rep.add(
        tuple(names) == spec.participants, f"participants on the ledger {names} match the spec"
    ):
        return rep
    for name, pub in directory.items():
        if not rep.add(ledger.is_admitted(pub.evm_address), f"{name} is an admitted org", org=name):
            return rep
    auditors = {}
    if spec.auditors and identity is not None and identity.name in spec.auditors:
        auditors[identity.name] = identity.public
    verifier = EnvelopeVerifier({**directory, **auditors}, task_id=task_hex)
    name_of = {pub.evm_address: n for n, pub in directory.items()}
    try:
        g = decode_vector(store.get(cid_from_digest(bytes.fromhex(spec.initial_model_sha256))))
    except (StoreError, CodecError) as exc:
        rep.add(False, f"initial model: {exc}")
        return rep
    n_features = len(spec.schema["features"])
    seeded = spec.model_spec().build(n_features, spec.seed).get_flat()
    rep.add(
        vector_hash(seeded) == spec.initial_model_sha256,
        "initial model is the seeded initialisation the spec names",
    )
    aggregator = Aggregator(spec.build_algorithm(), spec.build_rule(), spec.participants, g)
    if spec.secure_aggregation is not None:
        # Masked updates: the aggregate is the unmasked sum of the committed masked updates,
        # recomputed with each round's signed transcript anchored on the ledger.
        from matswarm.privacy.secagg_round import ledger_aggregator

        aggregator = ledger_aggregator(spec, g, ledger, store, task_id, directory)
    rep.global_params, rep.aggregator = g, aggregator
    can_decrypt = not spec.encrypt_updates or identity is not None
    if not can_decrypt:
        rep.add(
            False,
            "updates are encrypted: pass a participant's or auditor's keystore to "
            "recompute the aggregates",
        )
    last_final: bytes | None = None
    # An update that a quorum of participants rejected on the ledger (e.g. an invalid training
    # quote, which an auditor cannot re-check without the enclave registry) is excluded;
    # fewer rejections exclude nothing, so no minority can silence an org.
    rejecters: dict[tuple[int, str], set[str]] = {}
    for e in ledger.events(task_id, names=["UpdateRejected"]):
        key = (int(e.args["round"]), to_checksum_address(e.args["org"]))
        rejecters.setdefault(key, set()).add(to_checksum_address(e.args["reporter"]))
    history = ledger.rounds(task_id)  # every round's record in one read of the event index
    audit = None
    if spec.contribution is not None:
        from matswarm.contrib.audit import ContributionAudit

        try:
            audit = ContributionAudit(ledger, store, spec, task_id, name_of)
        except (ValueError, StoreError, LedgerError) as exc:
            rep.add(False, f"contribution records cannot be read: {exc}")
            return rep
    for r in range(1, info.rounds + 1):
        rinfo = history.get(r)
        if rinfo is None or not rinfo.finalized:
            phase = "not opened" if rinfo is None else rinfo.phase.name.lower()
            rep.add(
                True,
                f"round {r} is not final yet ({phase}); "
                f"verified the {r - 1} finalised round(s)",
                round_=r,
            )
            break
        accepted: list[Update] = []
        excluded: set[str] = set()
        absent: list[str] = []  # committed, but the blob is not in this store
        for addr in sorted(
            rinfo.commitments,
            key=lambda a: spec.participants.index(name_of[a]) if a in name_of else 10**6,
        ):
            c = rinfo.commitments[addr]
            org = name_of.get(addr)
            if org is None:
                rep.add(False, f"commitment from {addr}, not a participant", r)
                return rep
            n_rej = len(rejecters.get((r, addr), ()))
            if n_rej >= info.quorum:
                rep.add(
                    True,
                    f"update of {org} excluded: rejected on the ledger by {n_rej} participants",
                    r,
                    org,
                )
                excluded.add(org)
                continue
            try:
                try:
                    blob = store.get(c.cid)
                except BlobNotFoundError:
                    absent.append(org)
                    raise
                if hashlib.sha256(blob).digest() != c.update_hash:
                    raise ProtocolError(f"blob {c.cid} is not the committed update")
                env = Envelope.from_bytes(blob)
                if env.sender != org:
                    raise ProtocolError(f"envelope is signed as {env.sender}")
                verifier.check(env, round=r, kind=UPDATE_KIND)
                if not can_decrypt:
                    continue
                payload = open_envelope(env, identity) if env.encrypted else env.body
                upd = decode_update(payload)
                if (upd.task, upd.round, upd.org) != (task_hex, r, org):
                    raise ProtocolError(f"update names {upd.task}/{upd.round}/{upd.org}")
                accepted.append(upd)
            except (StoreError, RejectedError, ProtocolError, CodecError, ValueError) as exc:
                # Honest orgs dropped this update; the recomputation below must agree.
                rep.add(True, f"update of {org} is invalid and was excluded: {exc}", r, org)
        votes_for_final = sum(v == rinfo.final_hash for v in rinfo.votes.values())
        if not rep.add(
            votes_for_final >= info.quorum,
            f"{votes_for_final} of {len(info.participants)} votes for the final hash "
            f"(quorum {info.quorum})",
            r,
        ):
            return rep
        assert rinfo.final_hash is not None
        if audit is not None and not _audit_round(rep, audit, r, excluded, accepted, can_decrypt):
            return rep
        if can_decrypt:
            if not accepted:
                rep.add(False, "no valid update, yet the round was finalised" + _absent(absent), r)
                return rep
            try:
                g = aggregator.step(g, accepted)
            except ValueError as exc:  # e.g. a secure-aggregation transcript that fails
                rep.add(False, f"the aggregate cannot be recomputed: {exc}", r)
                return rep
            if not rep.add(
                vector_hash(g) == rinfo.final_hash.hex(),
                f"recomputed aggregate {vector_hash(g)[:12]}… equals the finalised "
                f"hash {rinfo.final_hash.hex()[:12]}…",
                r,
            ):
                rep.findings[-1].what += _absent(absent)
                bad = _suspects(rep, r)
                if bad:
                    rep.findings[-1].org = bad
                return rep
        try:
            stored = decode_vector(store.get(cid_from_digest(rinfo.final_hash)))
            rep.add(
                vector_hash(stored) == rinfo.final_hash.hex(), "global model is in the store", r
            )
        except (StoreError, CodecError) as exc:
            rep.add(False, f"global model of the round: {exc}", r)
            return rep
        last_final = rinfo.final_hash
        rep.rounds_verified = r
        rep.global_params = stored
        if progress:
            progress(r, info.rounds)
    private = spec.privacy is not None
    if private and not _audit_privacy(rep, ledger, store, task_id, spec, directory):
        return rep
    if audit is not None and rep.rounds_verified == info.rounds:
        try:
            audit.check_task()
            rep.add(True, "task contributions (round 0) equal the sum of the rounds'")
        except (ValueError, StoreError) as exc:
            rep.add(False, f"contributions: {exc}")
            return rep
    if info.status is TaskStatus.ARCHIVED and info.final_model_cid:
        _check_archive(rep, store, spec, info.final_model_cid, info.final_model_hash, last_final)
    return rep


def _audit_privacy(rep, ledger, store, task_id, spec, directory) -> bool:
    """Every finalised round's ``dp-epsilon`` report of every participant: in the store with
    the anchored digest, signed by that org, its epsilon the accountant's for the spec's
    mechanism and within the budget (:func:`matswarm.privacy.reports.audit_reports`)."""
    from matswarm.privacy.reports import audit_reports

    done = rep.rounds_verified
    if done == 0:
        return True
    try:
        reports, problems = audit_reports(ledger, store, task_id, spec, directory, rounds=done)
    except (ValueError, StoreError, LedgerError) as exc:
        return rep.add(False, f"differential privacy: reports cannot be audited: {exc}")
    if problems:
        for p in problems:
            rep.add(False, f"differential privacy: {p}")
        return False
    last = [r for r in reports if r.round == done]
    worst = max(r.epsilon_spent for r in last)
    cfg = spec.privacy
    return rep.add(
        True,
        f"differential privacy ({cfg['mode']}, {cfg.get('unit', 'record')}-level): "
        f"{len(reports)} signed dp-epsilon reports "
        f"audited; epsilon spent {worst:.3f} of {cfg['epsilon']} (delta {cfg['delta']:g}) "
        f"after round {done}, the accountant's for each org's mechanism",
    )


def _audit_round(rep, audit, r, excluded, accepted, can_decrypt) -> bool:
    """Re-derive round ``r``'s contributions and threshold decisions; the exclusions must be
    the threshold's, and the aggregator gets the re-derived weights."""
    try:
        rc = audit.round(r)
    except (ValueError, StoreError) as exc:
        return rep.add(False, f"contributions: {exc}", r)
    players = set(rc.players)
    if not rep.add(
        set(rc.rejected) == excluded & players,
        f"registration threshold rejects {sorted(rc.rejected) or 'none'}, re-derived from "
        f"the scores; excluded on the ledger: {sorted(excluded & players) or 'none'}",
        r,
    ):
        return False
    if can_decrypt and not rep.add(
        {u.org for u in accepted} == set(rc.admitted),
        f"aggregated updates are the admitted ones {rc.admitted}",
        r,
    ):
        return False
    assert rep.aggregator is not None
    rep.aggregator.weights = None if rc.weights is None else dict(rc.weights)
    return True


def _absent(orgs: list[str]) -> str:
    """What a failed round's finding adds when committed updates are missing from the store:
    an org that missed a round never received the others' updates, so its store cannot show
    the round (the failure may be the store's gap, not the ledger's)."""
    if not orgs:
        return ""
    return (
        f" ({len(orgs)} committed update(s) are not in this store: {', '.join(orgs)}; "
        "an org that missed the round does not hold them: verify with a store that does)"
    )


def _suspects(rep: VerifyReport, round_: int) -> str | None:
    excluded = [f.org for f in rep.findings if f.round == round_ and "excluded" in f.what]
    return excluded[0] if excluded else None


def _check_archive(rep, store, spec, cid, model_hash, last_final) -> None:
    try:
        weights, card = read_archive(store.get(cid))
    except (StoreError, CodecError) as exc:
        rep.add(False, f"final model archive {cid}: {exc}")
        return
    model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
    try:
        flat = flat_parameters(model, weights)
    except (RuntimeError, ValueError) as exc:
        rep.add(False, f"final model weights do not fit the spec's model: {exc}")
        return
    h = vector_hash(flat)
    ok = (
        model_hash is not None
        and h == model_hash.hex()
        and last_final is not None
        and h == last_final.hex()
    )
    rep.add(ok, f"final model archive {cid[:16]}… holds the last finalised global model")
    rep.add(
        card.get("task") == rep.task and card.get("features") == spec.schema["features"],
        "model card names this task and the schema's features in order",
    )
    if card.get("onnx"):
        _check_onnx(rep, store, card["onnx"], model, len(spec.schema["features"]), spec.seed)


def _check_onnx(rep, store, info, model, n_features: int, seed: int) -> None:
    """The ONNX file the card names is in the store with the card's sha256 and (where
    onnxruntime is installed) reproduces the archived weights on the export's probe rows."""
    try:
        blob = store.get(info["cid"])
    except (StoreError, KeyError) as exc:
        rep.add(False, f"ONNX export named by the model card: {exc}")
        return
    if not rep.add(
        hashlib.sha256(blob).hexdigest() == info.get("sha256"),
        "ONNX export in the store has the model card's sha256",
    ):
        return
    from matswarm.export.onnx_model import ExportUnavailable, max_abs_difference, probe_rows

    try:
        diff = max_abs_difference(blob, model, probe_rows(n_features, seed))
    except ExportUnavailable:
        rep.add(True, "ONNX export not re-run (onnxruntime not installed)")
        return
    tol = float(info.get("check", {}).get("tolerance", 1e-5))
    rep.add(diff <= tol, f"onnxruntime reproduces the archived model (max |diff| {diff:.2g})")


def report_lines(rep: VerifyReport) -> list[str]:
    out = []
    for f in rep.findings:
        where = " ".join(
            x for x in (f"round {f.round}" if f.round else "", f"org {f.org}" if f.org else "") if x
        )
        out.append(f"{'PASS' if f.ok else 'FAIL'}  {where + ': ' if where else ''}{f.what}")
    return out


def first_failure_line(rep: VerifyReport) -> str:
    f = rep.first_failure
    if f is None:
        return f"PASS: {rep.rounds_verified} of {rep.rounds_total} rounds re-derived and verified"
    where = ", ".join(
        x for x in (f"round {f.round}" if f.round else "", f"org {f.org}" if f.org else "") if x
    )
    return f"FAIL{' at ' + where if where else ''}: {f.what}"
