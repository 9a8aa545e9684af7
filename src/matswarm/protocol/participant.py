"""An organisation's side of the protocol."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from matswarm.algorithms.base import FederatedAlgorithm, LocalResult, RingMessage
from matswarm.algorithms.training import PrivateGradient
from matswarm.data.federated import StandardizedOrg
from matswarm.models.base import RegressionModel


class Participant(Protocol):
    """What the round engine needs from an organisation, wherever it runs."""

    name: str
    n_samples: int

    def train(
        self, round_: int, start_params: np.ndarray, ring_in: RingMessage | None
    ) -> LocalResult: ...


class OrgNode:
    """An organisation's private state: its standardised rows, its own model instance, its RNG.

    The in-process runtime calls it directly; the Flower runtime calls the same object inside
    the org's long-lived node process.
    """

    def __init__(
        self,
        data: StandardizedOrg,
        model: RegressionModel,
        algorithm: FederatedAlgorithm,
        seed: int,
        index: int,
    ):
        self.name = data.name
        self.data = data
        self.model = model
        self.algorithm = algorithm
        self.seed = seed
        self.index = index
        self.optimizer = algorithm.make_optimizer(model)
        #: DP-SGD of this org (set by :mod:`matswarm.privacy`); None trains without privacy.
        self.private: PrivateGradient | None = None

    @property
    def n_samples(self) -> int:
        return self.data.n

    def train(
        self, round_: int, start_params: np.ndarray, ring_in: RingMessage | None
    ) -> LocalResult:
        # A per-round generator: a resumed task replays round t exactly, whatever ran before.
        rng = np.random.default_rng([self.seed, self.index, round_])
        return self.algorithm.local_train(
            self.model,
            self.data,
            start_params,
            rng,
            ring_in,
            optimizer=self.optimizer,
            round_=round_,
            **({"private": self.private} if self.private is not None else {}),
        )
