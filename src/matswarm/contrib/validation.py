"""Each org's validation rows, carved from its own table, and its vote on the final model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from matswarm.contrib.policy import ContributionSettings, accepts_final
from matswarm.contrib.scores import OrgValidator
from matswarm.data.federated import FederatedDataset
from matswarm.models import ModelSpec


def split_validation(
    dataset: FederatedDataset, model: ModelSpec, settings: ContributionSettings, seed: int
) -> tuple[FederatedDataset, dict[str, OrgValidator]]:
    """``(train, validators)``: every org keeps ``val_fraction`` of its rows for validation
    (seeded by the settings' seed, so a restarted or audited task carves the same rows);
    training and the consortium's scaling use the rest."""
    carved, val = dataset.carve_validation(settings.val_fraction, seed=settings.seed)
    # the remaining rows with the dataset's own test table (carve_validation's holds the carve)
    train = dataset.with_orgs(carved.orgs, f"{dataset.description} (validation rows held out)")
    d = dataset.schema.n_features
    validators = {}
    for vo in val.orgs:
        std = train.standardized(vo)
        validators[vo.name] = OrgValidator(
            vo.name, std.X, vo.y, train.standardizer, model.build(d, seed)
        )
    return train, validators


def final_model_votes(
    validators: Mapping[str, OrgValidator],
    initial: np.ndarray,
    final: np.ndarray,
    settings: ContributionSettings,
) -> tuple[dict[str, bool], dict[str, Any]]:
    """Each org's accept/reject vote on ``final`` from its own validation rows, and the numbers
    behind it (for the model card)."""
    votes, detail = {}, {}
    for name, v in validators.items():
        f, i = v.mse(final), v.mse(initial)
        votes[name] = accepts_final(f, i, settings)
        detail[name] = {"final_val_mse": f, "initial_val_mse": i, "accept": votes[name]}
    return votes, {"rule": f"final val_mse <= {settings.final_accept_ratio} x initial", **detail}
