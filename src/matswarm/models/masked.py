"""Mask-aware models for heterogeneous feature spaces (organisations holding different columns).

Input convention: a column the row's organisation does not hold is NaN (the dataset's
``missing = "nan"``). The model turns NaN into a mask ``m`` and feeds ``m * x`` (0 where
missing) to its first linear layer, so a missing column contributes nothing to the
representation and its input weights receive exactly zero gradient from that organisation:
the column is masked, never imputed from another organisation's values.

* :class:`MaskedMLP` (``masked-mlp``): the shared feature-alignment encoder over the union of
  columns (first layers) and the regression head. Every organisation trains the same weights;
  each column's input weights are trained only by the organisations that hold it.
* :class:`FedMDHNet` (``fedmdh``): ``MaskedMLP`` plus a conditional generator ``p(x | y)``
  (see :class:`ConditionalGaussian`) whose parameters travel in the same flat vector, so the
  consortium learns one generator and each organisation samples from it locally.
"""

from __future__ import annotations

import torch
from torch import nn

from matswarm.models.zoo import MLP

#: Model names whose input convention is NaN for a missing column.
MASK_AWARE = ("masked-mlp", "fedmdh")


class MaskedMLP(MLP):
    """An MLP over the union of columns that reads NaN as "this org does not hold the column"."""

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        # NaN -> 0: the cell adds nothing to the first layer and its weight gets no gradient.
        return self.body(torch.nan_to_num(x, nan=0.0))


class ConditionalGaussian(nn.Module):
    """A conditional generator ``x | y ~ N(mu(y), diag(sigma(y)^2))`` over the union of columns.

    Why not a conditional GAN (FedMDH's GPD-CGAN): with about a thousand rows per organisation
    and 146 columns, adversarial training is unstable and mode-collapses, and averaging a
    discriminator's and a generator's parameters across organisations makes it worse (the
    poster's own FedGAN row: RMSE 3.27 ± 1.20). A conditional Gaussian is trained by maximum
    likelihood: a closed-form, stable objective that averages like any regression model, that
    handles missing columns by summing the log-likelihood over the present cells only, and
    that needs no discriminator. The price is one mode per label value, which is what the
    augmentation needs (typical rows for a label range).
    """

    def __init__(self, n_features: int, hidden: int = 64):
        super().__init__()
        self.n_features = n_features
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        # One head for mean and log-scale (fewer, larger ops: per-op overhead dominates here).
        self.out = nn.Linear(hidden, 2 * n_features)

    def forward(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_sigma = self.out(self.net(y.reshape(-1, 1))).chunk(2, dim=-1)
        return mu, log_sigma.clamp(-4.0, 2.0)

    def nll(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per present cell, up to the constant ``log(2 pi) / 2``
        (missing cells are NaN and skipped)."""
        present = ~torch.isnan(x)
        mu, log_sigma = self(y)
        z = (torch.nan_to_num(x, nan=0.0) - mu) * torch.exp(-log_sigma)
        cell = 0.5 * z * z + log_sigma
        return torch.where(present, cell, 0.0).sum() / present.sum().clamp_min(1)

    @torch.no_grad()
    def sample(self, y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        mu, log_sigma = self(y)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
        return mu + eps * torch.exp(log_sigma)


class FedMDHNet(MaskedMLP):
    """The FedMDH model: masked encoder + regression head + conditional generator."""

    def __init__(self, n_features: int, hidden: int = 32, layers: int = 3):
        super().__init__(n_features, hidden, layers)
        self.generator = ConditionalGaussian(n_features, 2 * hidden)

    def regression_parameters(self) -> list[nn.Parameter]:
        return [*self.body.parameters(), *self.out.parameters()]
