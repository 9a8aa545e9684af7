"""Turning a round's updates into the next global model, exactly the same way on every org."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np

from matswarm.aggregation import AggregationRule
from matswarm.algorithms.base import FederatedAlgorithm
from matswarm.protocol.messages import Update


class Aggregator:
    """The task's aggregation rule plus the algorithm's server step and their replicated state.

    Every organisation holds its own copy; given the same updates they produce bit-identical
    global models, which is what makes the global hash votable. Updates are stacked in the order
    of the task's participant list, never in arrival order.
    """

    def __init__(
        self,
        algorithm: FederatedAlgorithm,
        rule: AggregationRule,
        participant_order: Sequence[str],
        initial_global: np.ndarray,
    ):
        self.algorithm = algorithm
        self.rule = rule
        self.order = {name: i for i, name in enumerate(participant_order)}
        self.state = algorithm.init_server_state(initial_global)
        self.previous_aggregate: np.ndarray | None = None
        #: Per-org aggregation weights in place of sample counts (contribution-weighted
        #: aggregation sets them every round, see :mod:`matswarm.contrib.weights`); an org
        #: with weight 0 is left out of the step. ``None``: sample counts.
        self.weights: dict[str, float] | None = None

    def copy(self) -> Aggregator:
        return copy.deepcopy(self)

    def step(self, global_params: np.ndarray, updates: Sequence[Update]) -> np.ndarray:
        if not updates:
            raise ValueError("no updates to aggregate")
        unknown = [u.org for u in updates if u.org not in self.order]
        if unknown:
            raise ValueError(f"updates from organisations outside the task: {unknown}")
        if any(u.kind == "masked" for u in updates):
            raise ValueError(
                "masked updates (secure aggregation) reveal only their sum: they need "
                "matswarm.privacy.secagg_round.SecureAggregator, not a rule on single updates"
            )
        ordered = sorted(updates, key=lambda u: self.order[u.org])
        if self.weights is None:
            weights = np.array([u.n_samples for u in ordered], dtype=np.float64)
        else:
            missing = [u.org for u in ordered if u.org not in self.weights]
            if missing:
                raise ValueError(f"aggregation weights name no weight for {missing}")
            ordered = [u for u in ordered if self.weights[u.org] > 0]
            if not ordered:
                raise ValueError("every update has aggregation weight 0")
            weights = np.array([self.weights[u.org] for u in ordered], dtype=np.float64)
        stack = np.stack([u.vector for u in ordered])
        aggregated = self.rule(stack, weights, self.previous_aggregate)
        self.previous_aggregate = aggregated
        return self.algorithm.server_step(global_params, aggregated, self.state)
