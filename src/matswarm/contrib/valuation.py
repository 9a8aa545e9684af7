"""Contribution values of the players of a cooperative game: leave-one-out and Shapley.

Players are a round's verified updates, ``0..K-1`` in participant order; a coalition is a
bitmask over them; ``v(S)`` is the validation improvement of the aggregate of ``S`` over the
round's start model (see :mod:`matswarm.contrib.scores`). Each method works in two steps, so that
the protocol can fix the work before anyone evaluates anything:

1. :meth:`ValuationMethod.coalitions` names every coalition whose value it needs (deterministic
   given ``K`` and the method's seed): every org evaluates exactly these and commits its scores;
2. :meth:`ValuationMethod.values` turns the combined ``v`` into one value per player (and a
   standard error for sampled estimates).

Methods
    ``loo``: ``v(N) - v(N \\ {i})``. ``shapley``: the exact Shapley value (all ``2^K``
    coalitions; allowed for ``K <= 8``, 256 coalitions). ``shapley-mc``: permutation sampling
    (Castro et al. 2009): ``P`` uniformly random orders, each player's value the mean of its
    ``P`` marginal contributions; the stated standard error is the sample standard deviation of
    those marginals over ``sqrt(P)`` (the central-limit error of the mean; the orders are
    independent). :func:`make_method` picks exact Shapley up to 8 players and sampling beyond,
    unless sampling is forced.

Why hand-written: pyDVL and OpenDataVal compute Shapley values by *calling* a utility lazily
while they sample; here the coalitions must be fixed and published first (every org scores the
same set on its own rows, commits the scores, and the consortium combines them), and the
sampled orders must be reproducible by any auditor from the seed. The arithmetic itself is a
few lines; the libraries' sampling loops would have to be bypassed entirely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

#: Largest number of players for which exact Shapley values are computed (2^8 coalitions).
EXACT_MAX_PLAYERS = 8
METHODS = ("shapley", "shapley-mc", "loo")


@dataclass(frozen=True)
class Valuation:
    """Per-player values (and standard errors for sampled estimates) of one game."""

    method: str
    values: np.ndarray
    stderr: np.ndarray | None


class ValuationMethod:
    """Base class: ``name``, the coalitions needed, and the values from ``v``."""

    name: ClassVar[str]
    _citations: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def coalitions(self, k: int, round_: int = 0) -> list[int]:
        """Bitmasks of the coalitions whose value :meth:`values` needs (sorted, with 0)."""
        raise NotImplementedError

    def values(self, k: int, v: Mapping[int, float], round_: int = 0) -> Valuation:
        raise NotImplementedError

    @staticmethod
    def _check(k: int) -> None:
        if k < 1:
            raise ValueError(f"a game needs at least one player, got k={k}")


def _need(v: Mapping[int, float], mask: int) -> float:
    try:
        return float(v[mask])
    except KeyError:
        raise ValueError(f"the value of coalition {mask:#x} was not evaluated") from None


class LeaveOneOut(ValuationMethod):
    name = "loo"
    _citations = (
        "Cook, Detection of Influential Observation in Linear Regression, Technometrics 19 "
        "(1977) (leave-one-out influence)",
        "Jia et al., Towards Efficient Data Valuation Based on the Shapley Value, AISTATS 2019 "
        "(leave-one-out as the baseline data value)",
    )

    def coalitions(self, k: int, round_: int = 0) -> list[int]:
        self._check(k)
        full = (1 << k) - 1
        return sorted({0, full, *(full & ~(1 << i) for i in range(k))})

    def values(self, k: int, v: Mapping[int, float], round_: int = 0) -> Valuation:
        self._check(k)
        full = (1 << k) - 1
        vals = np.array([_need(v, full) - _need(v, full & ~(1 << i)) for i in range(k)])
        return Valuation(self.name, vals, None)


class ExactShapley(ValuationMethod):
    name = "shapley"
    _citations = (
        "Shapley, A Value for n-Person Games, Contributions to the Theory of Games II (1953)",
        "Wang et al., A Principled Approach to Data Valuation for Federated Learning, "
        "Federated Learning (Springer LNCS 12500), 2020 (per-round Shapley values summed over "
        "rounds)",
        "Song et al., Profit Allocation for Federated Learning, IEEE Big Data 2019 "
        "(contribution index from per-round reconstructed models)",
    )

    def coalitions(self, k: int, round_: int = 0) -> list[int]:
        self._check(k)
        if k > EXACT_MAX_PLAYERS:
            raise ValueError(
                f"exact Shapley values need 2^k coalitions; k={k} exceeds "
                f"{EXACT_MAX_PLAYERS}: use method 'shapley-mc'"
            )
        return list(range(1 << k))

    def values(self, k: int, v: Mapping[int, float], round_: int = 0) -> Valuation:
        self.coalitions(k)
        # weight of a coalition of size s not containing i: s! (k - s - 1)! / k!
        w = [math.factorial(s) * math.factorial(k - s - 1) / math.factorial(k) for s in range(k)]
        vals = np.zeros(k)
        for mask in range(1 << k):
            s = mask.bit_count()
            base = _need(v, mask)
            for i in range(k):
                if not mask >> i & 1:
                    vals[i] += w[s] * (_need(v, mask | 1 << i) - base)
        return Valuation(self.name, vals, None)


class MonteCarloShapley(ValuationMethod):
    """Permutation sampling with ``permutations`` orders drawn from ``seed`` and the round."""

    name = "shapley-mc"
    _citations = (
        *ExactShapley._citations[:1],
        "Castro, Gomez and Tejada, Polynomial Calculation of the Shapley Value Based on "
        "Sampling, Computers & Operations Research 36 (2009) (permutation sampling)",
        "Ghorbani and Zou, Data Shapley: Equitable Valuation of Data for Machine Learning, "
        "ICML 2019 (Monte-Carlo Shapley for data valuation)",
    )

    def __init__(self, permutations: int = 64, seed: int = 0):
        if isinstance(permutations, bool) or not isinstance(permutations, int):
            raise ValueError(f"permutations must be an int, got {permutations!r}")
        if permutations < 2:
            raise ValueError(
                f"permutations must be >= 2 (for a standard error), got {permutations}"
            )
        self.permutations = permutations
        self.seed = int(seed)

    def orders(self, k: int, round_: int) -> np.ndarray:
        """The sampled orders, ``(permutations, k)``: the same for everyone given the seed."""
        self._check(k)
        rng = np.random.default_rng([self.seed, round_, k])
        return np.stack([rng.permutation(k) for _ in range(self.permutations)])

    def coalitions(self, k: int, round_: int = 0) -> list[int]:
        masks = {0}
        for order in self.orders(k, round_):
            m = 0
            for i in order:
                m |= 1 << int(i)
                masks.add(m)
        return sorted(masks)

    def values(self, k: int, v: Mapping[int, float], round_: int = 0) -> Valuation:
        marg = np.zeros((self.permutations, k))
        for p, order in enumerate(self.orders(k, round_)):
            m, prev = 0, _need(v, 0)
            for i in order:
                m |= 1 << int(i)
                cur = _need(v, m)
                marg[p, int(i)] = cur - prev
                prev = cur
        stderr = marg.std(axis=0, ddof=1) / math.sqrt(self.permutations)
        return Valuation(self.name, marg.mean(axis=0), stderr)


def make_method(name: str, k: int, *, permutations: int = 64, seed: int = 0) -> ValuationMethod:
    """The valuation for ``k`` players: ``"shapley"`` is exact up to
    :data:`EXACT_MAX_PLAYERS` players and Monte-Carlo beyond; ``"shapley-mc"`` always samples;
    ``"loo"`` is leave-one-out."""
    if name == "loo":
        return LeaveOneOut()
    if name == "shapley" and k <= EXACT_MAX_PLAYERS:
        return ExactShapley()
    if name in ("shapley", "shapley-mc"):
        return MonteCarloShapley(permutations, seed)
    raise ValueError(f"contribution method must be one of {METHODS}, got {name!r}")
