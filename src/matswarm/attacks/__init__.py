"""Byzantine behaviours for experiments: noise, label flipping, sign flipping, ALIE and IPM.

Each attack is a small configured class with the MatSwarm paper's parameters as defaults and
its sources in ``citations()``; :func:`make_attack` builds one by name. Update attacks act after
local training (:class:`ByzantineParticipant` wraps an org node); data attacks act on the org's
table before training (:func:`poison_dataset`). Attacks know nothing about defences.
"""

from typing import Any

from matswarm.attacks.base import Attack, AttackError, DataAttack, UpdateAttack
from matswarm.attacks.data_attacks import LabelFlip, poison_dataset
from matswarm.attacks.participant import ByzantineParticipant
from matswarm.attacks.update_attacks import (
    ALittleIsEnough,
    GaussianNoise,
    InnerProductManipulation,
    SignFlip,
)

ATTACKS: dict[str, type[Attack]] = {
    cls.name: cls
    for cls in (GaussianNoise, LabelFlip, SignFlip, ALittleIsEnough, InnerProductManipulation)
}


def make_attack(name: str, **params: Any) -> Attack:
    """Build an attack by name; unknown names and parameters are errors listing the valid ones."""
    try:
        cls = ATTACKS[name]
    except KeyError:
        raise AttackError(f"unknown attack {name!r}; choose one of {', '.join(ATTACKS)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise AttackError(f"bad parameters for attack {name!r}: {exc}") from None


__all__ = [
    "ATTACKS",
    "ALittleIsEnough",
    "Attack",
    "AttackError",
    "ByzantineParticipant",
    "DataAttack",
    "GaussianNoise",
    "InnerProductManipulation",
    "LabelFlip",
    "SignFlip",
    "UpdateAttack",
    "make_attack",
    "poison_dataset",
]
