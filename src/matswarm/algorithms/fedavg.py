"""FedAvg, FedProx and server-optimiser variants (FedAvgM, FedAdam).

Update mode (chosen per task with ``update=``):

* ``"delta"`` (default): each org trains ``local_steps`` Adam steps from the global model and
  sends ``local - global``; the server applies ``global + server_lr * aggregate``
  (``server_lr = 1``: plain FedAvg).
* ``"gradient"``: each org sends the gradient of its local loss at the global model, averaged
  over ``local_steps`` minibatches (no local step is taken; ``lr`` is unused); the server takes a
  descent step ``global - server_lr * aggregate`` (FedSGD; the setting of gradient-based Byzantine
  attacks and of the MatSwarm paper's Fig. 1). FedAvgM/FedAdam use ``-aggregate`` as their
  descent direction in this mode.
"""

from __future__ import annotations

import numpy as np
import torch

from matswarm.algorithms.base import FederatedAlgorithm, LocalResult, RingMessage, warn_degenerate
from matswarm.algorithms.training import ExtraLoss, PrivateGradient, local_gradient
from matswarm.data.federated import StandardizedOrg
from matswarm.models.base import RegressionModel

UPDATE_MODES = ("delta", "gradient")


class FedAvg(FederatedAlgorithm):
    """Federated averaging: local steps from the global model, then the aggregate of deltas.

    With the ``mean`` rule this is the paper's Eq. 4 (sample-weighted average of local models).
    """

    name = "fedavg"
    _citations = (
        "McMahan et al., Communication-Efficient Learning of Deep Networks from "
        "Decentralized Data, AISTATS 2017",
    )

    def __init__(self, *, update: str = "delta", server_lr: float = 1.0, **kw):
        super().__init__(**kw)
        self.update = update
        self.server_lr = server_lr

    def validate(self) -> None:
        super().validate()
        if self.update not in UPDATE_MODES:
            raise ValueError(
                f"{self.name}: update must be one of {UPDATE_MODES}, got {self.update!r}"
            )
        if not (isinstance(self.server_lr, int | float) and self.server_lr > 0):
            raise ValueError(f"{self.name}: server_lr must be > 0, got {self.server_lr!r}")

    def descent(self, aggregated: np.ndarray) -> np.ndarray:
        """The direction the server moves in: the aggregated delta, or minus the gradient."""
        d = aggregated.astype(np.float64)
        return -d if self.update == "gradient" else d

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
        if self.update == "delta":
            return super().local_train(
                model,
                data,
                start_params,
                rng,
                ring_in,
                optimizer=optimizer,
                round_=round_,
                private=private,
            )
        model.set_flat(start_params)
        grad, loss = local_gradient(
            model,
            data.X,
            data.y,
            steps=self.local_steps,
            batch_size=self.batch_size,
            rng=rng,
            extra=self.extra_loss(start_params, data, ring_in),
            task=data.task,
            private=private,
        )
        return LocalResult(data.name, start_params.copy(), data.n, loss, gradient=grad)

    def server_step(self, global_params, aggregated_delta, state):
        step = self.server_lr * self.descent(aggregated_delta)
        return (global_params.astype(np.float64) + step).astype(np.float32)


class FedProx(FedAvg):
    """FedProx: FedAvg with a proximal term ``mu/2 * ||theta - theta_global||^2`` locally."""

    name = "fedprox"
    _citations = ("Li et al., Federated Optimization in Heterogeneous Networks, MLSys 2020",)

    def __init__(self, *, mu: float = 0.01, **kw):
        super().__init__(**kw)
        self.mu = mu

    def validate(self) -> None:
        super().validate()
        if self.mu < 0:
            raise ValueError(f"fedprox: mu must be >= 0, got {self.mu}")
        if self.mu == 0:
            warn_degenerate("FedProx with mu=0 is FedAvg; set mu > 0 or use algorithm 'fedavg'")

    def extra_loss(
        self, start_params: np.ndarray, data: StandardizedOrg, ring_in: RingMessage | None
    ) -> ExtraLoss | None:
        anchor = torch.from_numpy(start_params.copy())
        mu = self.mu

        def proximal(model, u):
            flat = torch.nn.utils.parameters_to_vector(model.parameters())
            return 0.5 * mu * torch.sum((flat - anchor) ** 2)

        return proximal


class FedAvgM(FedAvg):
    """FedAvg with server momentum: ``v <- beta*v + delta; theta <- theta + server_lr*v``."""

    name = "fedavgm"
    _citations = (
        "Hsu et al., Measuring the Effects of Non-Identical Data Distribution for "
        "Federated Visual Classification, 2019",
    )

    def __init__(self, *, server_lr: float = 1.0, momentum: float = 0.5, **kw):
        super().__init__(server_lr=server_lr, **kw)
        self.momentum = momentum

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.momentum < 1:
            raise ValueError(f"fedavgm: momentum must be in [0, 1), got {self.momentum}")

    def init_server_state(self, global_params):
        return {"velocity": np.zeros_like(global_params, dtype=np.float64)}

    def server_step(self, global_params, aggregated_delta, state):
        v = self.momentum * state["velocity"] + self.descent(aggregated_delta)
        state["velocity"] = v
        return (global_params.astype(np.float64) + self.server_lr * v).astype(np.float32)


class FedAdam(FedAvg):
    """FedAdam (adaptive server optimiser) treating the aggregated delta as a pseudo-gradient."""

    name = "fedadam"
    _citations = ("Reddi et al., Adaptive Federated Optimization, ICLR 2021",)

    def __init__(
        self,
        *,
        server_lr: float = 0.01,
        beta1: float = 0.9,
        beta2: float = 0.99,
        tau: float = 1e-3,
        **kw,
    ):
        super().__init__(server_lr=server_lr, **kw)
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau

    def validate(self) -> None:
        super().validate()
        for k in ("beta1", "beta2"):
            if not 0 <= getattr(self, k) < 1:
                raise ValueError(f"fedadam: {k} must be in [0, 1), got {getattr(self, k)}")
        if self.server_lr <= 0 or self.tau <= 0:
            raise ValueError("fedadam: server_lr and tau must be > 0")

    def init_server_state(self, global_params):
        z = np.zeros_like(global_params, dtype=np.float64)
        return {"m": z.copy(), "v": np.full_like(z, self.tau**2)}

    def server_step(self, global_params, aggregated_delta, state):
        d = self.descent(aggregated_delta)
        state["m"] = self.beta1 * state["m"] + (1 - self.beta1) * d
        state["v"] = self.beta2 * state["v"] + (1 - self.beta2) * d * d
        step = self.server_lr * state["m"] / (np.sqrt(state["v"]) + self.tau)
        return (global_params.astype(np.float64) + step).astype(np.float32)
