"""Algorithms: how organisations train locally and how their updates combine.

Baselines (not federated): :class:`Solo`, :class:`Joint`. Federated: :class:`FedAvg`,
:class:`FedProx`, :class:`FedAvgM`, :class:`FedAdam`, :class:`MatSwarm` (swarm transfer
learning) and :class:`FedMDH` (heterogeneous feature spaces). All share one local-training loop
(:func:`train_local`; FedMDH adds its terms around the same minibatch schedule).
"""

from typing import Any

from matswarm.algorithms.base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_LOCAL_STEPS,
    DEFAULT_LR,
    DEFAULT_ROUNDS,
    Algorithm,
    Baseline,
    FederatedAlgorithm,
    LocalResult,
    RingMessage,
)
from matswarm.algorithms.baselines import Joint, Solo
from matswarm.algorithms.fedavg import FedAdam, FedAvg, FedAvgM, FedProx
from matswarm.algorithms.fedmdh import FedMDH
from matswarm.algorithms.histogram import FedGBDT
from matswarm.algorithms.swarm import MatSwarm
from matswarm.algorithms.training import TrainStats, train_local

ALGORITHMS: dict[str, type[Algorithm]] = {
    cls.name: cls
    for cls in (Solo, Joint, FedAvg, FedProx, FedAvgM, FedAdam, MatSwarm, FedMDH, FedGBDT)
}


def make_algorithm(name: str, **params: Any) -> Algorithm:
    """Build and validate an algorithm by name; unknown names or parameters are clear errors."""
    try:
        cls = ALGORITHMS[name]
    except KeyError:
        raise ValueError(
            f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}"
        ) from None
    try:
        algo = cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameter for algorithm {name!r}: {exc}") from None
    algo.validate()
    return algo


__all__ = [
    "ALGORITHMS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_LOCAL_STEPS",
    "DEFAULT_LR",
    "DEFAULT_ROUNDS",
    "Algorithm",
    "Baseline",
    "FedAdam",
    "FedAvg",
    "FedAvgM",
    "FedGBDT",
    "FedMDH",
    "FedProx",
    "FederatedAlgorithm",
    "Joint",
    "LocalResult",
    "MatSwarm",
    "RingMessage",
    "Solo",
    "TrainStats",
    "make_algorithm",
    "train_local",
]
