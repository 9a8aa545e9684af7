"""Attacks on the data: applied to the org's raw table before standardisation and training."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from matswarm.attacks.base import AttackError, DataAttack
from matswarm.data.federated import FederatedDataset, OrgTable

SCALING_MODES = ("poisoned", "honest")


class LabelFlip(DataAttack):
    """Label flipping, on the raw table before standardisation. Regression: every target ``l``
    becomes ``-l`` in the target's own unit (the MatSwarm paper flips the formation energy in
    eV/atom). Classification (0/1 labels): every label ``l`` becomes ``1 - l``, since ``-1`` is
    not a class.

    ``scaling`` says what the attacker reports for the consortium's target scaling (fitted from
    every org's sufficient statistics): ``"honest"`` (default) the statistics of its true table,
    so the flip acts on training only (the paper: labels flipped "during the training process");
    ``"poisoned"`` the statistics of its flipped table, which also shifts and widens everyone's
    target scaling. No aggregation rule sees the scaling statistics: that part is not theirs to
    stop.
    """

    name = "label-flip"
    _citations = (
        "Tolpegin et al., Data Poisoning Attacks Against Federated Learning Systems, "
        "ESORICS 2020 (label flipping)",
        "Wang et al., MatSwarm, Nature Communications 15, 9290 (2024): l -> -l on the "
        "formation energy",
    )

    def __init__(self, scaling: str = "honest"):
        super().__init__()
        if scaling not in SCALING_MODES:
            raise AttackError(
                f"label-flip: scaling must be one of {SCALING_MODES}, got {scaling!r}"
            )
        self.params = dict(scaling=scaling)

    @property
    def poisons_scaling(self) -> bool:
        return self.params["scaling"] == "poisoned"

    def poison(self, table: OrgTable, task: str = "regression") -> OrgTable:
        """``table`` with its labels flipped; ``task`` is the schema's ("regression" or
        "classification")."""
        if task == "classification":
            return replace(
                table, y=1.0 - table.y, source=f"{table.source} [labels flipped: y -> 1 - y]"
            )
        if task != "regression":
            raise AttackError(
                f"label-flip: unknown task {task!r}; expected regression or classification"
            )
        return replace(table, y=-table.y, source=f"{table.source} [labels flipped: y -> -y]")


def poison_dataset(
    dataset: FederatedDataset, attacks: Mapping[str, DataAttack]
) -> FederatedDataset:
    """A copy of ``dataset`` where each named org's table went through its data attack (the test
    table is untouched). The consortium's scaling is refitted on the poisoned tables unless every
    attack reports honest statistics (``poisons_scaling`` false)."""
    unknown = sorted(set(attacks) - set(dataset.org_names))
    if unknown:
        raise AttackError(f"data attacks name unknown organisations {unknown}")
    task = dataset.schema.task
    orgs = [attacks[o.name].poison(o, task) if o.name in attacks else o for o in dataset.orgs]
    out = dataset.with_orgs(orgs, dataset.description)
    if not any(getattr(a, "poisons_scaling", True) for a in attacks.values()):
        out.standardizer = dataset.standardizer
    return out
