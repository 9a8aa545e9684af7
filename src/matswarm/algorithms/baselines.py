"""Non-federated references: Solo (each org alone) and Joint (all rows pooled)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matswarm.algorithms.base import Baseline
from matswarm.data.federated import StandardizedOrg
from matswarm.models.base import RegressionModel


class Solo(Baseline):
    """Each organisation trains alone on its own rows: the lower bound federation must beat."""

    name = "solo"

    def fit(
        self, orgs: Sequence[StandardizedOrg], model: RegressionModel, seed: int
    ) -> dict[str, np.ndarray]:
        init = model.get_flat()
        return {
            o.name: self._train_from(model, init, o, self.local_steps, seed * 1000 + i)
            for i, o in enumerate(orgs)
        }


class Joint(Baseline):
    """One model on all organisations' rows pooled: the upper bound (needs raw-data sharing).

    It gets the same number of gradient steps as all organisations together in a federated run
    (``rounds * local_steps * K``).
    """

    name = "joint"

    def fit(
        self, orgs: Sequence[StandardizedOrg], model: RegressionModel, seed: int
    ) -> dict[str, np.ndarray]:
        pooled = StandardizedOrg(
            "joint",
            np.concatenate([o.X for o in orgs]),
            np.concatenate([o.y for o in orgs]),
            orgs[0].task,
        )
        steps = self.local_steps * len(orgs)
        return {
            "joint": self._train_from(model, model.get_flat(), pooled, steps, seed * 1000 + 999)
        }
