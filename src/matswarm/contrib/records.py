"""Reading the scores and contributions documents a task anchored on the ledger.

Each document's bytes are in the artifact store; the ledger's ``ReportRecorded`` event pins
its sha256, content id, reporter and round. A reader takes the latest report per (reporter,
round, kind) (a resumed round may re-send one) and checks the bytes against the digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from matswarm.ledger import Ledger, Report
from matswarm.store import BlobStore

SCORES_KIND = "scores"
CONTRIBUTIONS_KIND = "contributions"


class ReportError(ValueError):
    """A report on the ledger cannot be read back (names reporter, round and kind)."""


def latest_reports(
    ledger: Ledger, task_id: bytes, kind: str, round_: int | None = None
) -> dict[tuple[int, str], Report]:
    """The last report of each (round, reporter address)."""
    out: dict[tuple[int, str], Report] = {}
    for rep in ledger.reports(task_id, kind=kind, round=round_):
        out[(rep.round, rep.reporter)] = rep
    return out


def load_document(store: BlobStore, rep: Report) -> dict[str, Any]:
    """The JSON document of a report, checked against the digest on the ledger."""
    where = f"{rep.kind} report of {rep.reporter} for round {rep.round}"
    try:
        blob = store.get(rep.cid)
    except Exception as exc:  # StoreError, or a malformed content id
        raise ReportError(f"{where}: {exc}") from None
    if hashlib.sha256(blob).digest() != rep.digest:
        raise ReportError(f"{where}: the stored bytes are not the ones recorded on the ledger")
    try:
        doc = json.loads(blob)
    except ValueError as exc:
        raise ReportError(f"{where}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ReportError(f"{where}: not a JSON object")
    return doc


def contributions(
    ledger: Ledger, store: BlobStore, task_id: bytes, reporter: str | None = None
) -> dict[int, dict[str, Any]]:
    """Contributions documents by round (0 = whole task), from ``reporter`` (default: the
    task's issuer, who records them)."""
    who = reporter or ledger.task_info(task_id).issuer
    out = {}
    for (r, addr), rep in sorted(latest_reports(ledger, task_id, CONTRIBUTIONS_KIND).items()):
        if addr == who:
            out[r] = load_document(store, rep)
    return out


def scores(
    ledger: Ledger, store: BlobStore, task_id: bytes, round_: int, name_of: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Every participant's scores document of a round; each must name its reporter."""
    docs = []
    for (_, addr), rep in sorted(latest_reports(ledger, task_id, SCORES_KIND, round_).items()):
        doc = load_document(store, rep)
        if addr not in name_of or doc.get("org") != name_of[addr]:
            raise ReportError(
                f"scores report of {addr} for round {round_} names org {doc.get('org')!r}"
            )
        docs.append(doc)
    return docs
