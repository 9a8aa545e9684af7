"""From a round's combined scores to its contributions, threshold decisions and weights, and the
contributions documents committed on the ledger (``kind = "contributions"``).

The contributions document (read by the dashboard and the model card) is exactly::

    {"task": "0x..", "round": r (0 = whole task), "method": "shapley" | "shapley-mc" | "loo",
     "metric": "val_mse", "values": {"<org address>": float, ...},
     "stderr": {"<org address>": float} or null, "names": {"<org address>": "<org name>"}}

A task's value of an org (round 0) is the sum of its per-round values (Wang et al. 2020's
federated Shapley value; an org absent from a round adds 0); the standard error of a sum of
independently sampled rounds is the root of the summed squared errors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from matswarm.contrib.policy import ContributionSettings, contribution_weights, threshold_rejections
from matswarm.contrib.scores import METRIC, CombinedScores
from matswarm.contrib.valuation import ValuationMethod, make_method


def method_for(settings: ContributionSettings, k: int) -> ValuationMethod:
    return make_method(settings.method, k, permutations=settings.permutations, seed=settings.seed)


def plan(settings: ContributionSettings, k: int, round_: int) -> list[int]:
    """The coalitions every org scores in a round of ``k`` verified updates: those the valuation
    needs, plus every single update when a registration threshold is set."""
    masks = set(method_for(settings, k).coalitions(k, round_))
    if settings.has_threshold:
        masks |= {1 << i for i in range(k)}
    return sorted(masks)


@dataclass(frozen=True)
class RoundContribution:
    round: int
    method: str
    players: tuple[str, ...]
    values: dict[str, float]
    stderr: dict[str, float] | None
    #: Players not admitted to aggregation (registration threshold), with the reason.
    rejected: dict[str, str]
    #: Aggregation weights of the admitted players (``None``: sample counts).
    weights: dict[str, float] | None
    #: Combined validation MSE of the start model and of the full coalition.
    start_mse: float
    all_mse: float | None

    @property
    def admitted(self) -> list[str]:
        return [p for p in self.players if p not in self.rejected]


def evaluate_round(
    combined: CombinedScores, settings: ContributionSettings, round_: int
) -> RoundContribution:
    k = len(combined.players)
    method = method_for(settings, k)
    val = method.values(k, combined.value(), round_)
    values = {p: float(val.values[i]) for i, p in enumerate(combined.players)}
    stderr = (
        None
        if val.stderr is None
        else {p: float(val.stderr[i]) for i, p in enumerate(combined.players)}
    )
    rejected = threshold_rejections(combined, settings)
    admitted = [p for p in combined.players if p not in rejected]
    weights = contribution_weights(values, admitted) if settings.weights == "contribution" else None
    return RoundContribution(
        round_,
        method.name,
        combined.players,
        values,
        stderr,
        rejected,
        weights,
        combined.mse[0],
        combined.mse.get((1 << k) - 1),
    )


def contributions_document(
    task: str,
    round_: int,
    method: str,
    values: Mapping[str, float],
    stderr: Mapping[str, float] | None,
    address_of: Mapping[str, str],
) -> dict[str, Any]:
    """The documented contributions JSON; ``values``/``stderr`` are keyed by org name."""
    return {
        "task": task,
        "round": round_,
        "method": method,
        "metric": METRIC,
        "values": {address_of[o]: float(v) for o, v in values.items()},
        "stderr": None if stderr is None else {address_of[o]: float(v) for o, v in stderr.items()},
        "names": {address_of[o]: o for o in values},
    }


def round_document(task: str, rc: RoundContribution, address_of: Mapping[str, str]) -> dict:
    return contributions_document(task, rc.round, rc.method, rc.values, rc.stderr, address_of)


def task_totals(
    rounds: Sequence[RoundContribution], participants: Sequence[str]
) -> tuple[str, dict[str, float], dict[str, float] | None]:
    """``(method, values, stderr)`` of the whole task: per-round values summed."""
    if not rounds:
        raise ValueError("no round has contributions yet")
    methods = {r.method for r in rounds}
    method = "shapley-mc" if "shapley-mc" in methods else methods.pop()
    values = {p: 0.0 for p in participants}
    var = {p: 0.0 for p in participants}
    sampled = False
    for r in sorted(rounds, key=lambda r: r.round):
        for p, v in r.values.items():
            values[p] = values.get(p, 0.0) + v
        if r.stderr is not None:
            sampled = True
            for p, e in r.stderr.items():
                var[p] = var.get(p, 0.0) + e * e
    stderr = {p: math.sqrt(v) for p, v in var.items()} if sampled else None
    return method, values, stderr


def task_document(
    task: str,
    rounds: Sequence[RoundContribution],
    participants: Sequence[str],
    address_of: Mapping[str, str],
) -> dict[str, Any]:
    method, values, stderr = task_totals(rounds, participants)
    return contributions_document(task, 0, method, values, stderr, address_of)


def ranking(doc: Mapping[str, Any]) -> list[tuple[str, float, float | None]]:
    """``(name, value, stderr)`` of a contributions document, highest value first."""
    names = doc.get("names") or {}
    se = doc.get("stderr") or {}
    rows = [(names.get(a, a), float(v), se.get(a)) for a, v in doc["values"].items()]
    return sorted(rows, key=lambda r: (-r[1], r[0]))
