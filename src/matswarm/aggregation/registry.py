"""Aggregation rules as small configured objects, looked up by name.

A rule object stores its parameters (validated in ``__init__``) and is called like the pure
function it wraps: ``rule(stack, weights, center=None)``. ``center`` is the previous round's
aggregate; only stateful rules (centered clipping) read it. Each rule names the work it rests on
in :meth:`AggregationRule.citations`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from matswarm.aggregation import rules as R


class AggregationRule:
    """Base class. Subclasses set ``name`` and override :meth:`aggregate`."""

    name: ClassVar[str]
    byzantine_tolerant: ClassVar[bool] = True
    _citations: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def aggregate(
        self, stack: np.ndarray, weights: np.ndarray, center: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError

    def __call__(
        self, stack: np.ndarray, weights: np.ndarray | None = None, center: np.ndarray | None = None
    ) -> np.ndarray:
        w = np.ones(len(stack)) if weights is None else np.asarray(weights, dtype=np.float64)
        return self.aggregate(stack, w, center)

    def min_participants(self) -> int:
        """Smallest number of updates this configuration accepts."""
        return 1

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"

    def __repr__(self) -> str:
        return self.describe()


class Mean(AggregationRule):
    name = "mean"
    byzantine_tolerant = False
    _citations = (
        "McMahan et al., Communication-Efficient Learning of Deep Networks from "
        "Decentralized Data, AISTATS 2017 (FedAvg, sample-weighted mean)",
    )

    def aggregate(self, stack, weights, center):
        return R.weighted_mean(stack, weights)


class Median(AggregationRule):
    name = "median"
    _citations = (
        "Yin et al., Byzantine-Robust Distributed Learning: Towards Optimal "
        "Statistical Rates, ICML 2018 (coordinate-wise median)",
    )

    def aggregate(self, stack, weights, center):
        return R.coordinate_median(stack, weights)


class TrimmedMean(AggregationRule):
    name = "trimmed-mean"
    _citations = ("Yin et al., ICML 2018 (coordinate-wise trimmed mean)",)

    def __init__(self, f: int = 1):
        super().__init__()
        self.params = dict(f=int(f))

    def min_participants(self) -> int:
        return 2 * self.params["f"] + 1

    def aggregate(self, stack, weights, center):
        return R.trimmed_mean(stack, weights, f=self.params["f"])


class Krum(AggregationRule):
    name = "krum"
    _citations = (
        "Blanchard et al., Machine Learning with Adversaries: Byzantine Tolerant "
        "Gradient Descent, NeurIPS 2017",
    )

    def __init__(self, f: int = 1):
        super().__init__()
        self.params = dict(f=int(f))

    def min_participants(self) -> int:
        return 2 * self.params["f"] + 3

    def aggregate(self, stack, weights, center):
        return R.krum(stack, weights, f=self.params["f"])


class MultiKrum(AggregationRule):
    name = "multikrum"
    _citations = (
        *Krum._citations,
        "El Mhamdi et al., The Hidden Vulnerability of Distributed Learning in Byzantium, "
        "ICML 2018",
    )

    def __init__(self, f: int = 1, m: int | None = None):
        super().__init__()
        self.params = dict(f=int(f), m=m)

    def min_participants(self) -> int:
        return 2 * self.params["f"] + 3

    def aggregate(self, stack, weights, center):
        return R.multi_krum(stack, weights, f=self.params["f"], m=self.params["m"])


class GeometricMedian(AggregationRule):
    name = "geomed"
    _citations = (
        "Pillutla et al., Robust Aggregation for Federated Learning, IEEE TSP 2022 "
        "(RFA, smoothed Weiszfeld)",
    )

    def __init__(self, tol: float = 1e-7, max_iter: int = 200, eps: float = 1e-8):
        super().__init__()
        self.params = dict(tol=float(tol), max_iter=int(max_iter), eps=float(eps))

    def aggregate(self, stack, weights, center):
        return R.geometric_median(stack, weights, **self.params)


class CenteredClipping(AggregationRule):
    name = "centered-clipping"
    _citations = (
        "Karimireddy et al., Learning from History for Byzantine Robust Optimization, ICML 2021",
    )

    def __init__(self, tau: float | None = None, iters: int = 3):
        super().__init__()
        self.params = dict(tau=tau, iters=int(iters))

    def aggregate(self, stack, weights, center):
        return R.centered_clipping(stack, weights, center=center, **self.params)


RULES: dict[str, type[AggregationRule]] = {
    cls.name: cls
    for cls in (Mean, Median, TrimmedMean, Krum, MultiKrum, GeometricMedian, CenteredClipping)
}


def register(cls: type[AggregationRule]) -> type[AggregationRule]:
    """Class decorator adding a rule to the registry under ``cls.name``."""
    RULES[cls.name] = cls
    return cls


def make_rule(name: str, **params: Any) -> AggregationRule:
    """Build a rule by name; unknown names and parameters are errors that list the valid ones."""
    try:
        cls = RULES[name]
    except KeyError:
        raise ValueError(
            f"unknown aggregation rule {name!r}; choose one of {', '.join(RULES)}"
        ) from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for aggregation rule {name!r}: {exc}") from None
