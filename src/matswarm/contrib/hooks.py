"""Contribution accounting and the registration threshold inside the round, around any hooks.

After the inner hooks verified the round's updates (:meth:`RoundHooks.collect`), every org
scores the round's candidate aggregates on its own validation rows; with the trust layer each
org stores its scores document and anchors it on the ledger (``kind = "scores"``), in the
round's batch. The consortium's combination gives the round's contributions (recorded by the
task's issuer, ``kind = "contributions"``; after the last round also the whole task's, round 0),
the updates that miss the registration threshold (left out, every org recording the rejection
with its reason) and, with contribution weighting, the aggregation weights, set on every org's
aggregator replica before it aggregates.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from matswarm.contrib.policy import ContributionSettings
from matswarm.contrib.records import CONTRIBUTIONS_KIND, SCORES_KIND
from matswarm.contrib.rounds import (
    RoundContribution,
    evaluate_round,
    plan,
    round_document,
    task_document,
)
from matswarm.contrib.scores import OrgValidator, candidates, canonical, combine, scores_document
from matswarm.protocol.aggregator import Aggregator
from matswarm.protocol.engine import RoundEngine, RoundHooks
from matswarm.protocol.messages import Update
from matswarm.protocol.trusted import OrgAgent, ProtocolError, TrustedHooks


class ContributionHooks(RoundHooks):
    """Wraps ``engine``'s hooks (call :func:`attach_contributions`)."""

    def __init__(
        self,
        engine: RoundEngine,
        validators: Mapping[str, OrgValidator],
        settings: ContributionSettings,
        inner: RoundHooks | None = None,
    ):
        missing = [p.name for p in engine.participants if p.name not in validators]
        if missing:
            raise ValueError(f"no validation rows for {missing}")
        self.engine = engine
        self.validators = dict(validators)
        self.settings = settings
        self.inner = inner if inner is not None else engine.hooks
        self.rounds: dict[int, RoundContribution] = {}
        self.documents: dict[int, dict[str, Any]] = {}
        self.trusted = self.inner if isinstance(self.inner, TrustedHooks) else None
        names = [p.name for p in engine.participants]
        if self.trusted is not None:
            ref = self.trusted.reference
            self.address_of = dict(ref.address_of)
            issuer = ref.ledger.task_info(ref.task_id).issuer
            self.recorder: OrgAgent | None = next(
                (a for a in self.trusted.agents.values() if a.identity.evm_address == issuer), ref
            )
        else:
            self.address_of = {n: n for n in names}
            self.recorder = None

    # -- pass-through -----------------------------------------------------------------------
    def publish(self, update, result) -> None:
        self.inner.publish(update, result)

    def finalise(self, round_, *args) -> str:
        return self.inner.finalise(round_, *args)

    def ring_handoff(self, round_, sender, receiver, message):
        return self.inner.ring_handoff(round_, sender, receiver, message)

    # -- the round's contributions ------------------------------------------------------------
    def collect(self, round_: int, updates: list[Update]) -> list[Update]:
        accepted = self.inner.collect(round_, updates)
        eng = self.engine
        order = eng.aggregator.order
        players = sorted(accepted, key=lambda u: order[u.org])
        names = [u.org for u in players]
        masks = plan(self.settings, len(players), round_)
        cands = candidates(eng.aggregator, eng.run_state.global_params, players, masks)
        docs = []
        for v in self.validators.values():
            doc = scores_document(eng.task, round_, v, names, cands)
            docs.append(doc)
            if self.trusted is not None:
                self.trusted.agents[v.name].record_report(round_, SCORES_KIND, canonical(doc))
        rc = evaluate_round(combine(docs, self.settings.combine), self.settings, round_)
        self.rounds[round_] = rc
        if rc.rejected and self.trusted is not None:
            self.trusted.exclude(round_, rc.rejected)
        admitted = [u for u in players if u.org not in rc.rejected]
        if not admitted:
            raise ProtocolError(
                f"round {round_}: no update meets the registration threshold "
                f"({'; '.join(f'{o}: {r}' for o, r in rc.rejected.items())})"
            )
        for agg in self._aggregators():
            agg.weights = None if rc.weights is None else dict(rc.weights)
        self._record(round_, round_document(eng.task, rc, self.address_of))
        if round_ == eng.algorithm.rounds:
            self._record(0, self.task_document())
        return admitted

    def task_document(self) -> dict[str, Any]:
        names = [p.name for p in self.engine.participants]
        return task_document(self.engine.task, list(self.rounds.values()), names, self.address_of)

    def card_section(self) -> dict[str, Any]:
        """What the model card shows: the task's contributions (round 0), each round's, and the
        settings they follow."""
        return {
            "contributions": self.documents.get(0) or self.task_document(),
            "contributions_per_round": [self.documents[r] for r in sorted(self.documents) if r],
            "contribution_settings": self.settings.to_dict(),
        }

    def _record(self, round_: int, doc: dict[str, Any]) -> None:
        self.documents[round_] = doc
        if self.recorder is not None:
            self.recorder.record_report(round_, CONTRIBUTIONS_KIND, canonical(doc))

    def _aggregators(self) -> Iterator[Aggregator]:
        yield self.engine.aggregator
        if self.trusted is not None:
            for a in self.trusted.agents.values():
                yield a.aggregator


def attach_contributions(
    engine: RoundEngine,
    validators: Mapping[str, OrgValidator],
    settings: ContributionSettings,
    previous: Mapping[int, RoundContribution] | None = None,
) -> ContributionHooks:
    """Wrap ``engine``'s current hooks (plain or trusted) with contribution accounting.
    ``previous``: rounds already accounted for (a resumed task)."""
    hooks = ContributionHooks(engine, validators, settings)
    if previous:
        hooks.rounds.update(previous)
    engine.hooks = hooks
    return hooks
