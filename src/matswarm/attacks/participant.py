"""A Byzantine organisation: an honest node plus an attack.

The round engine lets any participant with a ``craft(update, honest_peer_updates)`` method
replace its update after seeing the round's honest updates (colluding attackers may, as ALIE and
IPM assume). :class:`ByzantineParticipant` is that participant for an :class:`UpdateAttack`. A
:class:`DataAttack` (label flipping) acts on the org's table before the node is built
(:func:`~matswarm.attacks.data_attacks.poison_dataset`); its participant sends its honestly
computed update unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from matswarm.algorithms.base import LocalResult, RingMessage
from matswarm.attacks.base import Attack, UpdateAttack
from matswarm.protocol.messages import Update

_ATTACK_STREAM = 0x42595A  # separates the attack's random stream from training's


class ByzantineParticipant:
    """Wraps a participant (``OrgNode`` or an attested node) and corrupts what it sends.

    ``colluders`` names the other Byzantine orgs: their honest updates are not counted as benign
    when an omniscient attack computes its statistics (so ``benign`` is exactly the honest
    orgs' updates, as in byzfl).
    """

    byzantine = True

    def __init__(self, node: Any, attack: Attack, colluders: Iterable[str] = ()):
        self.node = node
        self.attack = attack
        self.name: str = node.name
        self.colluders = frozenset(colluders) | {self.name}
        self.crafted = 0

    @property
    def n_samples(self) -> int:
        return self.node.n_samples

    def train(
        self, round_: int, start_params: np.ndarray, ring_in: RingMessage | None
    ) -> LocalResult:
        return self.node.train(round_, start_params, ring_in)

    def craft(self, update: Update, honest_peer_updates: Sequence[Update]) -> Update:
        if not isinstance(self.attack, UpdateAttack):
            return update  # data attacks already shaped the honest computation
        d = update.vector.shape[0]
        if self.attack.needs_benign:
            rows = [u.vector for u in honest_peer_updates if u.org not in self.colluders]
            benign = np.stack(rows) if rows else np.zeros((0, d), np.float32)
        else:
            benign = np.zeros((0, d), np.float32)
        seed = getattr(self.node, "seed", 0)
        index = getattr(self.node, "index", 0)
        rng = np.random.default_rng([seed, index, update.round, _ATTACK_STREAM])
        vector = np.ascontiguousarray(self.attack.craft(update.vector, benign, rng), np.float32)
        if vector.shape != update.vector.shape:
            raise ValueError(
                f"{self.attack.name} produced shape {vector.shape}, expected {update.vector.shape}"
            )
        self.crafted += 1
        return dataclasses.replace(update, vector=vector)

    def __repr__(self) -> str:
        return f"ByzantineParticipant({self.name!r}, {self.attack.describe()})"
