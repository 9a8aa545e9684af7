"""Base classes shared by every algorithm.

An algorithm owns both sides of its method: what an organisation does locally
(:meth:`FederatedAlgorithm.local_train`, built on the one shared loop in
:mod:`matswarm.algorithms.training`) and how the consortium turns the aggregated update into the
next global model (:meth:`FederatedAlgorithm.server_step`). Constructors only store explicit
hyperparameters; :meth:`validate` checks them once, at the boundary.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from matswarm.algorithms.training import ExtraLoss, PrivateGradient, adam, train_local
from matswarm.data.federated import StandardizedOrg
from matswarm.models.base import RegressionModel

# Defaults chosen on validation rows carved from each org's training data (bench/tune.py),
# never on the test set; the same values are used for every split and dataset.
DEFAULT_ROUNDS = 150
DEFAULT_LOCAL_STEPS = 20
DEFAULT_LR = 3e-3
DEFAULT_BATCH_SIZE = 128
DEFAULT_LR_SCHEDULE = "constant"
LR_SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class RingMessage:
    """What a ring algorithm hands from ``O_i`` to ``O_{i+1}``.

    ``statistics`` is ``u_i(X_i)`` (aggregate statistics, never rows); ``params`` is ``O_i``'s
    trained model when the model itself travels the ring (``None`` at the start of a round, which
    always begins from the agreed global model).
    """

    statistics: np.ndarray | None
    params: np.ndarray | None = None


@dataclass(frozen=True)
class LocalResult:
    """What one organisation's local training produced in one round."""

    org: str
    params: np.ndarray
    n_samples: int
    loss: float
    ring_out: RingMessage | None = None
    gradient: np.ndarray | None = None
    #: Per-bin gradient/hessian sums (tree algorithms): sent instead of a delta or gradient.
    histogram: np.ndarray | None = None

    @property
    def kind(self) -> str:
        """``"gradient"`` when the algorithm sends gradients, ``"histogram"`` for histogram
        aggregation (trees), else ``"delta"`` (model delta)."""
        if self.histogram is not None:
            return "histogram"
        return "delta" if self.gradient is None else "gradient"

    def update_vector(self, start_global: np.ndarray) -> np.ndarray:
        """What this org contributes: its histogram or gradient, or ``local - global``."""
        if self.histogram is not None:
            return np.asarray(self.histogram, dtype=np.float32)
        if self.gradient is not None:
            return np.asarray(self.gradient, dtype=np.float32)
        return (self.params.astype(np.float64) - start_global).astype(np.float32)


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
        lr_schedule: str = DEFAULT_LR_SCHEDULE,
    ):
        self.rounds = rounds
        self.local_steps = local_steps
        self.lr = lr
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule

    def get_params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def validate(self) -> None:
        for key in ("rounds", "local_steps", "batch_size"):
            v = getattr(self, key)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{self.name}: {key} must be a positive integer, got {v!r}")
        if not (isinstance(self.lr, int | float) and self.lr > 0):
            raise ValueError(f"{self.name}: lr must be > 0, got {self.lr!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(
                f"{self.name}: lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}"
            )

    def lr_at(self, round_: int) -> float:
        """Learning rate of round ``round_`` (1-based): constant, or cosine-annealed from ``lr``
        to ``lr / 10`` over the rounds (damps the round-to-round noise of the final model)."""
        if self.lr_schedule == "constant" or self.rounds == 1:
            return float(self.lr)
        progress = (round_ - 1) / (self.rounds - 1)
        return float(self.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))))

    def make_optimizer(self, model: RegressionModel) -> torch.optim.Optimizer:
        """The org's local optimiser. It lives as long as the org's node, so Adam's moment
        estimates carry over between rounds (re-initialising them every round makes each round
        start with sign-like steps of size ``lr``, a noise floor we measured at 3x the error)."""
        return adam(model, self.lr)

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
        self,
        model: RegressionModel,
        init: np.ndarray,
        data: StandardizedOrg,
        steps_per_round: int,
        seed: int,
    ) -> np.ndarray:
        """Train ``rounds`` chunks of ``steps_per_round`` steps with one optimiser, following
        the same learning-rate schedule as a federated run."""
        model.set_flat(init)
        rng = np.random.default_rng(seed)
        opt = self.make_optimizer(model)
        for t in range(1, self.rounds + 1):
            train_local(
                model,
                data.X,
                data.y,
                steps=steps_per_round,
                lr=self.lr_at(t),
                batch_size=self.batch_size,
                rng=rng,
                optimizer=opt,
                task=data.task,
            )
        return model.get_flat()


class FederatedAlgorithm(Algorithm):
    """A federated method run by the protocol round by round.

    Subclasses override only what differs: :meth:`extra_loss` (client objective),
    :meth:`server_step` (server optimiser), or the ring hooks (:attr:`ring`,
    :meth:`ring_message`).
    """

    ring: ClassVar[bool] = False

    def check_model(self, model: Any, rule: Any) -> None:
        """Refuse a model (``ModelSpec``) or aggregation rule this method cannot train with; the
        neural methods refuse the tree model (trained by ``fedgbdt``)."""
        if getattr(model, "name", None) == "gbdt":
            raise ValueError(
                f"model 'gbdt' is trained by method 'fedgbdt' (histogram aggregation), not "
                f"{self.name!r}; set [training] methods = ['solo', 'fedgbdt', 'joint']"
            )

    # -- client side ----------------------------------------------------------------------------
    def extra_loss(
        self, start_params: np.ndarray, data: StandardizedOrg, ring_in: RingMessage | None
    ) -> ExtraLoss | None:
        """Algorithm-specific term of the local objective (None = plain task loss).

        ``start_params`` is where local training starts: the round's global model, or for a
        ring algorithm whose model travels, the predecessor's model."""
        return None

    def ring_message(self, model: RegressionModel, data: StandardizedOrg) -> RingMessage | None:
        """What a ring algorithm hands to the next organisation after training."""
        return None

    def local_train(
        self,
        model: RegressionModel,
        data: StandardizedOrg,
        start_params: np.ndarray,
        rng: np.random.Generator,
        ring_in: RingMessage | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        round_: int = 1,
        private: PrivateGradient | None = None,
    ) -> LocalResult:
        """Start from ``start_params``, run the shared loop, return the local model.

        ``optimizer`` is the org's persistent optimiser (see :meth:`make_optimizer`); without one
        a fresh Adam is used. ``private`` makes the loop DP-SGD (:mod:`matswarm.privacy`).
        """
        model.set_flat(start_params)
        stats = train_local(
            model,
            data.X,
            data.y,
            steps=self.local_steps,
            lr=self.lr_at(round_),
            batch_size=self.batch_size,
            rng=rng,
            extra=self.extra_loss(start_params, data, ring_in),
            optimizer=optimizer,
            task=data.task,
            private=private,
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
