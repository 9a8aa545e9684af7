"""Attacks on the data: applied to the org's raw table before standardisation and training."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from matswarm.attacks.base import AttackError, DataAttack
from matswarm.data.federated import FederatedDataset, OrgTable


class LabelFlip(DataAttack):
    """Label flipping for regression: every target ``l`` becomes ``-l`` in the target's own unit
    (the MatSwarm paper flips the formation energy in eV/atom). Applied to the raw table, so the
    consortium's target scaling, fitted from every org's statistics, sees the flipped labels too,
    as it would in a deployment."""

    name = "label-flip"
    _citations = (
        "Tolpegin et al., Data Poisoning Attacks Against Federated Learning Systems, "
        "ESORICS 2020 (label flipping)",
        "Wang et al., MatSwarm, Nature Communications 15, 9290 (2024): l -> -l on the "
        "formation energy",
    )

    def poison(self, table: OrgTable) -> OrgTable:
        return replace(table, y=-table.y, source=f"{table.source} [labels flipped: y -> -y]")


def poison_dataset(
    dataset: FederatedDataset, attacks: Mapping[str, DataAttack]
) -> FederatedDataset:
    """A copy of ``dataset`` where each named org's table went through its data attack (the test
    table is untouched)."""
    unknown = sorted(set(attacks) - set(dataset.org_names))
    if unknown:
        raise AttackError(f"data attacks name unknown organisations {unknown}")
    orgs = [attacks[o.name].poison(o) if o.name in attacks else o for o in dataset.orgs]
    return dataset.with_orgs(orgs, dataset.description)
