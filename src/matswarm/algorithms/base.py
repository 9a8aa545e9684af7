"""Base classes shared by every algorithm.

An algorithm owns both sides of its method: what an organisation does locally
(:meth:`FederatedAlgorithm.local_train`, built on the one shared loop in
:mod:`matswarm.algorithms.training`) and how the consortium turns the aggregated update into the
next global model (:meth:`FederatedAlgorithm.server_step`). Constructors only store explicit
hyperparameters; :meth:`validate` checks them once, at the boundary.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from matswarm.algorithms.training import ExtraLoss, train_local
from matswarm.data.federated import StandardizedOrg
from matswarm.models.base import RegressionModel

# Defaults chosen on validation rows carved from each org's training data (bench/tune.py),
# never on the test set; the same values are used for every split and dataset.
DEFAULT_ROUNDS = 100
DEFAULT_LOCAL_STEPS = 20
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 128


@dataclass(frozen=True)
class LocalResult:
    """What one organisation's local training produced in one round."""

    org: str
    params: np.ndarray
    n_samples: int
    loss: float
    ring_out: np.ndarray | None = None


class Algorithm:
    """Hyperparameters common to all methods (sklearn style: stored, validated in ``validate``)."""

    name: ClassVar[str]
    federated: ClassVar[bool] = True
    _citations: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        rounds: int = DEFAULT_ROUNDS,
        local_steps: int = DEFAULT_LOCAL_STEPS,
        lr: float = DEFAULT_LR,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ):
        self.rounds = rounds
        self.local_steps = local_steps
        self.lr = lr
        self.batch_size = batch_size

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def validate(self) -> None:
        for key in ("rounds", "local_steps", "batch_size"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}: {key} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"{self.name}: lr must be > 0, got {self.lr!r}")

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class Baseline(Algorithm):
    """A non-federated reference (Solo, Joint): trains for ``rounds * local_steps`` steps."""

    federated = False

    def fit(
        self,
        orgs: Sequence[StandardizedOrg],
        model: RegressionModel,
        seed: int,
    ) -> dict[str, np.ndarray]:
        """Return trained parameter vectors keyed by model name (org name or ``"joint"``)."""
        raise NotImplementedError

    def _train_from(
        self, model: RegressionModel, init: np.ndarray, data: StandardizedOrg, steps: int, seed: int
    ) -> np.ndarray:
        model.set_flat(init)
        train_local(
            model,
            data.X,
            data.y,
            steps=steps,
            lr=self.lr,
            batch_size=self.batch_size,
            rng=np.random.default_rng(seed),
        )
        return model.get_flat()


class FederatedAlgorithm(Algorithm):
    """A federated method run by the protocol round by round.

    Subclasses override only what differs: :meth:`extra_loss` (client objective),
    :meth:`server_step` (server optimiser), or the ring hooks (:attr:`ring`,
    :meth:`ring_message`).
    """

    ring: ClassVar[bool] = False

    # -- client side ----------------------------------------------------------------------------
    def make_optimizer(self, model: RegressionModel) -> torch.optim.Optimizer:
        """The org's local optimiser. It lives as long as the org's node, so Adam's moment
        estimates carry over between rounds (re-initialising them every round makes each round
        start with sign-like steps of size ``lr``, a noise floor we measured at 3x the error)."""
        return torch.optim.Adam(model.parameters(), lr=self.lr)

    def extra_loss(
        self, global_params: np.ndarray, data: StandardizedOrg, ring_in: np.ndarray | None
    ) -> ExtraLoss | None:
        """Algorithm-specific term of the local objective (None = plain task loss)."""
        return None

    def ring_message(self, model: RegressionModel, data: StandardizedOrg) -> np.ndarray | None:
        """What a ring algorithm hands to the next organisation after training."""
        return None

    def local_train(
        self,
        model: RegressionModel,
        data: StandardizedOrg,
        global_params: np.ndarray,
        rng: np.random.Generator,
        ring_in: np.ndarray | None = None,
        optimizer: torch.optim.Optimizer | None = None,
    ) -> LocalResult:
        """Start from the global model, run the shared loop, return the local model.

        ``optimizer`` is the org's persistent optimiser (see :meth:`make_optimizer`); without one
        a fresh Adam is used.
        """
        model.set_flat(global_params)
        stats = train_local(
            model,
            data.X,
            data.y,
            steps=self.local_steps,
            lr=self.lr,
            batch_size=self.batch_size,
            rng=rng,
            extra=self.extra_loss(global_params, data, ring_in),
            optimizer=optimizer,
        )
        ring_out = self.ring_message(model, data) if self.ring else None
        return LocalResult(data.name, model.get_flat(), data.n, stats.mean_loss, ring_out)

    # -- server side (run identically by every organisation) --------------------------------------
    def init_server_state(self, global_params: np.ndarray) -> dict[str, np.ndarray]:
        return {}

    def server_step(
        self,
        global_params: np.ndarray,
        aggregated_delta: np.ndarray,
        state: dict[str, np.ndarray],
    ) -> np.ndarray:
        """Next global model from the aggregated update (model delta). Default: apply it."""
        return (global_params.astype(np.float64) + aggregated_delta).astype(np.float32)


def warn_degenerate(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
