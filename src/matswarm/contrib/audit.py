"""Re-deriving a task's contributions, threshold decisions and weights in ``matswarm verify``.

From the ledger and the store alone, per round: every participant's scores document (checked
against its digest on the ledger and its reporter), their combination, the valuation, the
registration-threshold decisions and the contribution weights; the contributions document the
issuer recorded must be exactly the re-derived one. ``verify`` then checks that the updates it
excluded are the ones the threshold rejected, and aggregates with the re-derived weights.
The scores themselves cannot be re-checked: they are each org's claim about its own rows.
"""

from __future__ import annotations

from collections.abc import Mapping

from matswarm.contrib import records
from matswarm.contrib.rounds import RoundContribution, evaluate_round, round_document, task_document
from matswarm.contrib.scores import canonical, combine
from matswarm.ledger import Ledger
from matswarm.protocol.spec import TaskSpec
from matswarm.store import BlobStore


class ContributionAudit:
    def __init__(
        self,
        ledger: Ledger,
        store: BlobStore,
        spec: TaskSpec,
        task_id: bytes,
        name_of: Mapping[str, str],
    ):
        settings = spec.contribution_settings()
        if settings is None:
            raise ValueError("the task has no contribution settings")
        self.settings = settings
        self.ledger, self.store, self.spec, self.task_id = ledger, store, spec, task_id
        self.task_hex = "0x" + task_id.hex()
        self.name_of = dict(name_of)
        self.address_of = {n: a for a, n in self.name_of.items()}
        self.recorded = records.contributions(ledger, store, task_id)
        self.rounds: dict[int, RoundContribution] = {}

    def round(self, r: int) -> RoundContribution:
        """Re-derive round ``r``; raises ``ValueError`` naming what does not add up."""
        docs = records.scores(self.ledger, self.store, self.task_id, r, self.name_of)
        missing = sorted(set(self.spec.participants) - {d["org"] for d in docs})
        if missing:
            raise ValueError(f"no scores on the ledger from {missing}")
        rc = evaluate_round(combine(docs, self.settings.combine), self.settings, r)
        self._compare(r, round_document(self.task_hex, rc, self.address_of))
        self.rounds[r] = rc
        return rc

    def check_task(self) -> None:
        """The whole task's contributions (round 0), if recorded, re-derived from the rounds."""
        if 0 in self.recorded and self.rounds:
            doc = task_document(
                self.task_hex, list(self.rounds.values()), self.spec.participants, self.address_of
            )
            self._compare(0, doc)

    def _compare(self, r: int, doc: dict) -> None:
        rec = self.recorded.get(r)
        if rec is None:
            raise ValueError(f"the issuer recorded no contributions for round {r}")
        if canonical(rec) != canonical(doc):
            raise ValueError(
                f"contributions recorded for round {r} differ from those re-derived from the "
                "orgs' scores"
            )
