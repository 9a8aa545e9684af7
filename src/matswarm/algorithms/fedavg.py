"""FedAvg, FedProx and server-optimiser variants (FedAvgM, FedAdam)."""

from __future__ import annotations

import numpy as np
import torch

from matswarm.algorithms.base import FederatedAlgorithm, RingMessage, warn_degenerate
from matswarm.algorithms.training import ExtraLoss
from matswarm.data.federated import StandardizedOrg


class FedAvg(FederatedAlgorithm):
    """Federated averaging: local steps from the global model, then the aggregate of deltas.

    With the ``mean`` rule this is the paper's Eq. 4 (sample-weighted average of local models).
    """

    name = "fedavg"
    _citations = (
        "McMahan et al., Communication-Efficient Learning of Deep Networks from "
        "Decentralized Data, AISTATS 2017",
    )


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
        super().__init__(**kw)
        self.server_lr = server_lr
        self.momentum = momentum

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.momentum < 1:
            raise ValueError(f"fedavgm: momentum must be in [0, 1), got {self.momentum}")
        if self.server_lr <= 0:
            raise ValueError(f"fedavgm: server_lr must be > 0, got {self.server_lr}")

    def init_server_state(self, global_params):
        return {"velocity": np.zeros_like(global_params, dtype=np.float64)}

    def server_step(self, global_params, aggregated_delta, state):
        v = self.momentum * state["velocity"] + aggregated_delta.astype(np.float64)
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
        super().__init__(**kw)
        self.server_lr = server_lr
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
        d = aggregated_delta.astype(np.float64)
        state["m"] = self.beta1 * state["m"] + (1 - self.beta1) * d
        state["v"] = self.beta2 * state["v"] + (1 - self.beta2) * d * d
        step = self.server_lr * state["m"] / (np.sqrt(state["v"]) + self.tau)
        return (global_params.astype(np.float64) + step).astype(np.float32)
