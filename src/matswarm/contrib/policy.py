"""A task's contribution and governance settings, and the deterministic rules built on them.

Everything here is pinned in the task spec (``TaskSpec.contribution``) so every org and every
auditor applies the same rules:

* **valuation**: ``method`` (``shapley``: exact up to 8 players, Monte-Carlo beyond;
  ``shapley-mc``: always sampled, ``permutations`` orders from ``seed``; ``loo``), on the
  validation rows each org carves from its own table (``val_fraction``, seeded);
* **registration threshold** (seed: "results that show a certain level of performance or higher
  are stored"): an update whose own candidate (the round's start model plus that update alone)
  has a combined validation MSE above ``threshold_mse``, or above ``threshold_ratio`` times the
  start model's, is not admitted to aggregation; every org records the rejection, with the
  numbers, on the ledger;
* **contribution-weighted aggregation** (``weights = "contribution"``): round ``t``'s updates are
  aggregated with weights ``max(phi_i, 0)`` where ``phi_i`` is the org's value of round ``t``
  (computed before aggregation, from the candidates); an org with a non-positive value gets
  weight 0 and is left out of the step. If no admitted update has a positive value, the round
  falls back to sample counts (documented, so that a round never stalls);
* **final-model vote**: each org accepts the final model when its MSE on the org's own
  validation rows is at most ``final_accept_ratio`` times that of the task's initial model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from matswarm.contrib.scores import COMBINE_MODES, CombinedScores
from matswarm.contrib.valuation import METHODS

WEIGHT_MODES = ("samples", "contribution")


@dataclass(frozen=True)
class ContributionSettings:
    method: str = "shapley"
    permutations: int = 64
    seed: int = 0
    val_fraction: float = 0.2
    combine: str = "median"
    threshold_mse: float | None = None
    threshold_ratio: float | None = None
    weights: str = "samples"
    final_accept_ratio: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"contribution method must be one of {METHODS}, got {self.method!r}")
        if self.combine not in COMBINE_MODES:
            raise ValueError(f"contribution combine must be one of {COMBINE_MODES}")
        if self.weights not in WEIGHT_MODES:
            raise ValueError(
                f"aggregation weights must be one of {WEIGHT_MODES}, got {self.weights!r}"
            )
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.permutations < 2:
            raise ValueError(f"permutations must be >= 2, got {self.permutations}")
        for name in ("threshold_mse", "threshold_ratio", "final_accept_ratio"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")

    @property
    def has_threshold(self) -> bool:
        return self.threshold_mse is not None or self.threshold_ratio is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ContributionSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown contribution settings {unknown}; known: {sorted(known)}")
        return cls(**dict(d))


def threshold_rejections(
    combined: CombinedScores, settings: ContributionSettings
) -> dict[str, str]:
    """Players whose single-update candidate misses the registration threshold, with the
    reason recorded on the ledger."""
    out: dict[str, str] = {}
    if not settings.has_threshold:
        return out
    base = combined.mse[0]
    for i, org in enumerate(combined.players):
        m = combined.mse.get(1 << i)
        if m is None:
            raise ValueError(f"the single-update candidate of {org} was not scored")
        if settings.threshold_mse is not None and m > settings.threshold_mse:
            out[org] = f"threshold: val_mse {m:.6g} > threshold_mse {settings.threshold_mse:.6g}"
        elif settings.threshold_ratio is not None and m > settings.threshold_ratio * base:
            out[org] = (
                f"threshold: val_mse {m:.6g} > threshold_ratio {settings.threshold_ratio:.6g} "
                f"x start model's {base:.6g}"
            )
    return out


def contribution_weights(
    values: Mapping[str, float], admitted: Sequence[str]
) -> dict[str, float] | None:
    """Aggregation weights ``max(phi, 0)`` of the admitted orgs; ``None`` (sample counts) if no
    admitted org has a positive value."""
    w = {org: max(float(values.get(org, 0.0)), 0.0) for org in admitted}
    return w if any(v > 0 for v in w.values()) else None


def accepts_final(final_mse: float, initial_mse: float, settings: ContributionSettings) -> bool:
    """An org's vote on the final model from its own validation rows."""
    return final_mse <= settings.final_accept_ratio * initial_mse
