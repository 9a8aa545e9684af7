"""What an attack is: a configured object that corrupts either an org's data or its update.

Two stages, because they meet different defences:

* :class:`DataAttack` changes the org's *data* before any (attested) code runs on it, e.g. label
  flipping. Honest training code then produces a poisoned but perfectly well-formed update; an
  attestation quote over that update is valid.
* :class:`UpdateAttack` replaces the update *after* local training (noise, sign flip, ALIE, IPM).
  Colluding attackers may read the benign updates of the round, as those attacks assume.

Constructors store parameters (validated there: they are few and simple); every attack lists
the work it implements in :meth:`Attack.citations`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from matswarm.data.federated import OrgTable


class AttackError(ValueError):
    """An attack cannot be built or applied with these parameters or inputs."""


class Attack:
    """Base class: ``name``, ``stage`` (``"data"`` or ``"update"``), parameters, citations."""

    name: ClassVar[str]
    stage: ClassVar[str]
    _citations: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        return self.describe()


class DataAttack(Attack):
    """Corrupts the org's raw table (target units) before standardisation and training."""

    stage = "data"

    def poison(self, table: OrgTable, task: str = "regression") -> OrgTable:
        """``table`` after the attack; ``task`` is the schema's task ("regression" or
        "classification"), since what a poisoned label looks like depends on it."""
        raise NotImplementedError


class UpdateAttack(Attack):
    """Replaces the org's update after local training.

    ``needs_benign``: the attack reads the benign updates of the round (omniscient, colluding).
    """

    stage = "update"
    needs_benign: ClassVar[bool] = False

    def craft(self, own: np.ndarray, benign: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The vector to send instead of ``own`` (the org's honest update, float32 ``(d,)``).

        ``benign`` is the ``(m, d)`` float32 stack of the other honest orgs' updates of this
        round (empty ``(0, d)`` when the attack does not need them); ``rng`` is seeded per org and
        round, so a run is reproducible.
        """
        raise NotImplementedError

    def _benign(self, benign: np.ndarray, minimum: int) -> np.ndarray:
        b = np.asarray(benign, dtype=np.float64)
        if b.ndim != 2 or b.shape[0] < minimum:
            raise AttackError(
                f"{self.name} needs the updates of at least {minimum} benign org(s), got "
                f"{0 if b.ndim != 2 else b.shape[0]}"
            )
        return b
