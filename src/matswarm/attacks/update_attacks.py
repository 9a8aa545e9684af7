"""Attacks on the update, applied after local training (the paper's Fig. 1 parameters as
defaults). All are functions of the org's honest update and, for the omniscient ones, of the
benign updates of the round; none of them depends on the defence."""

from __future__ import annotations

import numpy as np

from matswarm.attacks.base import AttackError, UpdateAttack

NOISE_MODES = ("add", "replace")
SIGN_FLIP_SOURCES = ("own", "benign-mean")


class GaussianNoise(UpdateAttack):
    """Send ``own + N(mean, std^2)`` per coordinate (``mode="add"``, the MatSwarm paper's
    wording: noise added to the honest gradient), or pure noise ``N(mean, std^2)``
    (``mode="replace"``, what byzfl's ``Gaussian`` and blades' ``NoiseAdversary`` do)."""

    name = "noise"
    _citations = (
        "Blanchard et al., Machine Learning with Adversaries: Byzantine Tolerant Gradient "
        "Descent, NeurIPS 2017 (Gaussian Byzantine updates)",
        "Wang et al., MatSwarm, Nature Communications 15, 9290 (2024): noise N(0.1, 0.1) "
        "added to the honest gradient",
    )

    def __init__(self, mean: float = 0.1, std: float = 0.1, mode: str = "add"):
        super().__init__()
        if mode not in NOISE_MODES:
            raise AttackError(f"noise: mode must be one of {NOISE_MODES}, got {mode!r}")
        if not std >= 0:
            raise AttackError(f"noise: std must be >= 0, got {std}")
        self.params = dict(mean=float(mean), std=float(std), mode=mode)

    def craft(self, own, benign, rng):
        p = self.params
        noise = rng.normal(p["mean"], p["std"], size=own.shape)
        base = own.astype(np.float64) if p["mode"] == "add" else 0.0
        return (base + noise).astype(np.float32)


class SignFlip(UpdateAttack):
    """Send ``-own`` (``source="own"``: the paper's ``-grad``, non-omniscient) or
    ``-mean(benign)`` (``source="benign-mean"``: byzfl's omniscient ``SignFlipping``)."""

    name = "sign-flip"
    _citations = (
        "Damaskinos et al., Asynchronous Byzantine Machine Learning (the case of SGD), "
        "ICML 2018 (sign flipping)",
    )

    def __init__(self, source: str = "own"):
        super().__init__()
        if source not in SIGN_FLIP_SOURCES:
            raise AttackError(
                f"sign-flip: source must be one of {SIGN_FLIP_SOURCES}, got {source!r}"
            )
        self.params = dict(source=source)

    @property
    def needs_benign(self) -> bool:  # type: ignore[override]
        return self.params["source"] == "benign-mean"

    def craft(self, own, benign, rng):
        if self.params["source"] == "own":
            return (-own.astype(np.float64)).astype(np.float32)
        return (-self._benign(benign, 1).mean(axis=0)).astype(np.float32)


class ALittleIsEnough(UpdateAttack):
    """ALIE: ``mean(benign) + direction * z * std(benign)`` per coordinate (std with ``ddof=1``).

    ``z = 0.3`` as in the MatSwarm paper (its ``z_max``); ``direction = -1`` is Baruch et al.'s
    ``mu - z * sigma`` (byzfl uses ``+1``); both stay inside the paper's
    ``(mu - z_max sigma, mu + z_max sigma)``.
    """

    name = "alie"
    needs_benign = True
    _citations = (
        "Baruch et al., A Little Is Enough: Circumventing Defenses For Distributed Learning, "
        "NeurIPS 2019",
    )

    def __init__(self, z: float = 0.3, direction: int = -1):
        super().__init__()
        if direction not in (-1, 1):
            raise AttackError(f"alie: direction must be -1 or +1, got {direction!r}")
        if not z >= 0:
            raise AttackError(f"alie: z must be >= 0, got {z}")
        self.params = dict(z=float(z), direction=int(direction))

    def craft(self, own, benign, rng):
        b = self._benign(benign, 2)
        mu, sigma = b.mean(axis=0), b.std(axis=0, ddof=1)
        return (mu + self.params["direction"] * self.params["z"] * sigma).astype(np.float32)


class InnerProductManipulation(UpdateAttack):
    """IPM: ``-epsilon * mean(benign)`` (the paper's ``alpha = 2``)."""

    name = "ipm"
    needs_benign = True
    _citations = (
        "Xie et al., Fall of Empires: Breaking Byzantine-tolerant SGD by Inner Product "
        "Manipulation, UAI 2019",
    )

    def __init__(self, epsilon: float = 2.0):
        super().__init__()
        if not epsilon > 0:
            raise AttackError(f"ipm: epsilon must be > 0, got {epsilon}")
        self.params = dict(epsilon=float(epsilon))

    def craft(self, own, benign, rng):
        return (-self.params["epsilon"] * self._benign(benign, 1).mean(axis=0)).astype(np.float32)
