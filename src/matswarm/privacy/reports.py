"""Auditing the DP spend a task's orgs anchored on the ledger (``recordReport`` kind
``dp-epsilon``): every participant reported every round, each report is the stored blob its
digest names, signed by the org that anchored it, within the task's budget, and its epsilon is
what the accountant gives for the mechanism it states (central mode: the spec's pinned one).

What this cannot check: that the org really drew the noise it reports (attested training binds
the code that does; the report is otherwise the org's claim).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from matswarm.privacy.accounting import epsilon
from matswarm.privacy.dp import REPORT_FORMAT, REPORT_KIND, PrivacyConfig


@dataclass(frozen=True)
class AuditedReport:
    org: str
    round: int
    epsilon_spent: float
    document: dict[str, Any]


def audit_reports(
    ledger: Any,
    store: Any,
    task_id: bytes,
    spec: Any,
    directory: Mapping[str, Any],
    rounds: int | None = None,
) -> tuple[list[AuditedReport], list[str]]:
    """``(accepted reports, problems)`` for a private task; ``directory`` maps org name to its
    :class:`~matswarm.trust.PublicIdentity` (as registered on the ledger). ``rounds``: audit
    only rounds ``1..rounds`` (the finalised ones); None: every round of the spec."""
    from matswarm.protocol.trusted import report_envelope_kind
    from matswarm.store import StoreError
    from matswarm.trust import Envelope, EnvelopeVerifier, TrustError

    if spec.privacy is None:
        return [], ["the task has no [privacy] section"]
    cfg = PrivacyConfig.from_dict(spec.privacy)
    verifier = EnvelopeVerifier(dict(directory), task_id="0x" + task_id.hex())
    name_of = {pub.evm_address: name for name, pub in directory.items()}
    accepted: list[AuditedReport] = []
    problems: list[str] = []
    seen: set[tuple[str, int]] = set()
    last = spec.rounds if rounds is None else rounds
    for rep in ledger.reports(task_id, kind=REPORT_KIND):
        if rep.round > last:  # a round still open: its reports are checked once it is final
            continue
        org = name_of.get(rep.reporter, rep.reporter)
        where = f"round {rep.round} report of {org}"
        try:
            blob = store.get(rep.cid)
            if hashlib.sha256(blob).digest() != rep.digest:
                raise ValueError("stored blob does not match the anchored digest")
            env = Envelope.from_bytes(blob)
            if env.sender != org:
                raise ValueError(f"signed as {env.sender}, anchored by {org}")
            kind = report_envelope_kind(REPORT_KIND)
            doc = json.loads(verifier.verify(env, round=rep.round, kind=kind))
        except (TrustError, StoreError, ValueError, KeyError, OSError) as exc:
            problems.append(f"{where}: {exc}")
            continue
        # Record-level: one sampled-Gaussian step per local step; org-level: one per round.
        per_round = 1 if cfg.unit == "org" else int(spec.algorithm_params["local_steps"])
        steps = per_round * rep.round
        problems += [f"{where}: {p}" for p in _check_document(doc, org, rep.round, cfg, steps)]
        seen.add((org, rep.round))
        accepted.append(AuditedReport(org, rep.round, float(doc["epsilon_spent"]), doc))
    for org in spec.participants:
        missing = [t for t in range(1, last + 1) if (org, t) not in seen]
        if missing:
            problems.append(f"{org} anchored no dp-epsilon report for round(s) {missing}")
    return accepted, problems


def _check_document(
    doc: dict[str, Any], org: str, round_: int, cfg: PrivacyConfig, steps: int
) -> list[str]:
    out = []
    if doc.get("format") != REPORT_FORMAT or doc.get("org") != org or doc.get("round") != round_:
        out.append("format, org or round does not match the anchoring")
        return out
    if doc.get("steps") != steps:
        out.append(f"counts {doc.get('steps')} steps, the task ran {steps} by round {round_}")
    for key in ("mode", "delta", "accountant", "clip"):
        if doc.get(key) != getattr(cfg, key):
            out.append(f"{key} {doc.get(key)!r} differs from the spec's {getattr(cfg, key)!r}")
    if doc.get("unit", "record") != cfg.unit:  # reports before org-level DP name no unit
        out.append(f"unit {doc.get('unit')!r} differs from the spec's {cfg.unit!r}")
    if cfg.unit == "org" and doc.get("sample_rate") != 1.0:
        rate = doc.get("sample_rate")
        out.append(f"org-level DP has sample_rate 1 (every org, every round), not {rate!r}")
    if cfg.mode == "central":  # one mechanism for all; pinned in the spec when resolved
        for key in ("noise_multiplier", "sample_rate"):
            if getattr(cfg, key) is not None and doc.get(key) != getattr(cfg, key):
                out.append(f"{key} {doc.get(key)!r} is not the spec's pinned {getattr(cfg, key)!r}")
    want = epsilon(doc["noise_multiplier"], doc["sample_rate"], steps, cfg.delta, cfg.accountant)
    if abs(want - float(doc["epsilon_spent"])) > 1e-9 * max(1.0, want):
        out.append(f"claims epsilon {doc['epsilon_spent']:.6g}, its mechanism gives {want:.6g}")
    if want > cfg.epsilon:
        out.append(f"spent epsilon {want:.4g} exceeds the task's budget {cfg.epsilon}")
    return out
