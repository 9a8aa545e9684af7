"""The local-model interface every federated algorithm trains.

A model maps standardised features ``(n, d)`` to standardised predictions ``(n,)`` and exposes a
representation ``u(x)`` (its last hidden layer) for alignment losses. Parameters cross
organisation boundaries only as one flat float32 vector in :meth:`parameters` order.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class RegressionModel(nn.Module):
    """Base class: subclasses implement :meth:`represent` and :meth:`head`."""

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """``u(x)``: the ``(n, h)`` representation the output layer reads."""
        raise NotImplementedError

    def head(self, u: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.represent(x)).squeeze(-1)

    def penalty(self) -> torch.Tensor:
        """Model-specific regulariser added to the training loss (e.g. Lasso's L1); 0 by default."""
        return torch.zeros(())

    # -- flat parameter exchange ----------------------------------------------------------------
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def get_flat(self) -> np.ndarray:
        """All parameters as one contiguous float32 vector (a copy)."""
        with torch.no_grad():
            return torch.nn.utils.parameters_to_vector(self.parameters()).detach().numpy().copy()

    def set_flat(self, vector: np.ndarray) -> None:
        v = np.asarray(vector, dtype=np.float32)
        if v.shape != (self.num_parameters(),):
            raise ValueError(
                f"parameter vector has shape {v.shape}, the model needs ({self.num_parameters()},)"
            )
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(torch.from_numpy(v.copy()), self.parameters())

    def predict(self, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Standardised predictions for a float32 matrix (no gradient)."""
        self.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(X), batch_size):
                out.append(self(torch.from_numpy(np.ascontiguousarray(X[i : i + batch_size]))))
        return torch.cat(out).numpy().astype(np.float64) if out else np.empty(0)
