"""Aggregation rules as small configured objects, looked up by name.

A rule object stores its parameters (validated in ``__init__``) and is called like the pure
function it wraps: ``rule(stack, weights, center=None)``.

Pre-aggregation steps (:class:`PreAggregator`, e.g. nearest-neighbour mixing) transform the stack
before any rule; :class:`Composed` chains them. ``make_rule("nnm+centered-clipping", f=1)`` and
``make_rule("centered-clipping", pre="nnm", f=1)`` build the same thing. ``f`` is the task's
assumed number of Byzantine orgs: it configures every step that takes an ``f``.

``center`` is the previous round's aggregate; only stateful rules (centered clipping) read it.
Each rule names the work it rests on in :meth:`AggregationRule.citations`.
"""

from __future__ import annotations

import inspect
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


class EqualMean(AggregationRule):
    """The unweighted mean, each org ``1/K`` whatever its row count: the aggregate of org-level
    DP (DP-FedAvg), where a sample-count weight would both leak the org's size and scale its
    clipped update's influence beyond the clip bound."""

    name = "equal-mean"
    byzantine_tolerant = False
    _citations = (
        "McMahan et al., Learning Differentially Private Recurrent Language Models, ICLR 2018 "
        "(DP-FedAvg: clipped updates, equal weights, Gaussian noise on the sum)",
    )

    def aggregate(self, stack, weights, center):
        return R.weighted_mean(stack, np.ones(len(stack)))


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


class Bulyan(AggregationRule):
    name = "bulyan"
    _citations = (
        "El Mhamdi et al., The Hidden Vulnerability of Distributed Learning in Byzantium, "
        "ICML 2018 (Bulyan)",
        *Krum._citations,
    )

    def __init__(self, f: int = 1):
        super().__init__()
        self.params = dict(f=int(f))

    def min_participants(self) -> int:
        return 4 * self.params["f"] + 3

    def aggregate(self, stack, weights, center):
        return R.bulyan(stack, weights, f=self.params["f"])


class PreAggregator:
    """A step applied to the ``(K, d)`` stack before the rule (same shape out, pure)."""

    name: ClassVar[str]
    _citations: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def transform(self, stack: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def min_participants(self) -> int:
        return 1

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def describe(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.name}({args})"


class NearestNeighbourMixing(PreAggregator):
    """NNM: each update becomes the mean of its ``n - f`` nearest updates (itself included)."""

    name = "nnm"
    _citations = (
        "Allouah et al., Fixing by Mixing: A Recipe for Optimal Byzantine ML under "
        "Heterogeneity, AISTATS 2023 (nearest-neighbour mixing)",
    )

    def __init__(self, f: int = 1):
        super().__init__()
        if int(f) < 0:
            raise ValueError(f"nnm: f must be >= 0, got {f}")
        self.params = dict(f=int(f))

    def min_participants(self) -> int:
        return self.params["f"] + 1

    def transform(self, stack: np.ndarray) -> np.ndarray:
        return R.nearest_neighbour_mixing(stack, f=self.params["f"])


PRE_AGGREGATORS: dict[str, type[PreAggregator]] = {
    NearestNeighbourMixing.name: NearestNeighbourMixing
}


class Composed(AggregationRule):
    """Pre-aggregation steps followed by a rule, e.g. ``nnm+centered-clipping``.

    Sample-count weights and the previous round's ``center`` pass through to the final rule
    unchanged (row ``i`` of the mixed stack keeps org ``i``'s weight).
    """

    def __init__(self, pre: list[PreAggregator], rule: AggregationRule):
        super().__init__()
        if not pre:
            raise ValueError("a composed rule needs at least one pre-aggregation step")
        self.pre = list(pre)
        self.rule = rule
        self.name = "+".join([*(p.name for p in self.pre), rule.name])  # type: ignore[misc]
        self.byzantine_tolerant = rule.byzantine_tolerant  # type: ignore[misc]
        # round-trips: make_rule(self.name, **self.params) rebuilds this rule (task specs do)
        self.params = {k: v for p in self.pre for k, v in p.params.items()} | dict(rule.params)

    def min_participants(self) -> int:
        return max([self.rule.min_participants(), *(p.min_participants() for p in self.pre)])

    def citations(self) -> tuple[str, ...]:  # type: ignore[override]
        out: list[str] = []
        for c in (*(c for p in self.pre for c in p.citations()), *self.rule.citations()):
            if c not in out:
                out.append(c)
        return tuple(out)

    def describe(self) -> str:
        return "+".join([*(p.describe() for p in self.pre), self.rule.describe()])

    def aggregate(self, stack, weights, center):
        x = np.asarray(stack)
        for p in self.pre:
            x = p.transform(x)
        return self.rule.aggregate(x, weights, center)


RULES: dict[str, type[AggregationRule]] = {
    cls.name: cls
    for cls in (
        Mean,
        EqualMean,
        Median,
        TrimmedMean,
        Krum,
        MultiKrum,
        GeometricMedian,
        CenteredClipping,
        Bulyan,
    )
}


def register(cls: type[AggregationRule]) -> type[AggregationRule]:
    """Class decorator adding a rule to the registry under ``cls.name``."""
    RULES[cls.name] = cls
    return cls


def with_f(rule: AggregationRule, f: int) -> AggregationRule:
    """A copy of ``rule`` with every step that takes an ``f`` configured for ``f`` instead (other
    rules are returned as they are)."""
    if isinstance(rule, Composed):
        pre = [type(p)(**{**p.params, "f": f}) if "f" in p.params else p for p in rule.pre]
        return Composed(pre, with_f(rule.rule, f))
    if "f" in rule.params:
        return type(rule)(**{**rule.params, "f": f})
    return rule


def assumed_f(rule: AggregationRule) -> int | None:
    """The ``f`` a rule (or the first step of a composed rule that has one) is configured for."""
    if isinstance(rule, Composed):
        for p in rule.pre:
            if "f" in p.params:
                return int(p.params["f"])
        return assumed_f(rule.rule)
    f = rule.params.get("f")
    return None if f is None else int(f)


def _accepts(cls: type, key: str) -> bool:
    return key in inspect.signature(cls.__init__).parameters


def make_rule(name: str, *, pre: str | list[str] | None = None, **params: Any) -> AggregationRule:
    """Build a rule by name; unknown names and parameters are errors that list the valid ones.

    ``name`` may carry pre-aggregation steps joined with ``+`` (``"nnm+centered-clipping"``), or
    they may be given as ``pre="nnm"``. ``f`` goes to every step whose constructor takes it; any
    other parameter goes to the final rule.
    """
    parts = [p.strip() for p in name.split("+")]
    if isinstance(pre, str):
        pre = [p.strip() for p in pre.split("+") if p.strip()]
    steps = [*(pre or []), *parts[:-1]]
    base = parts[-1]
    try:
        cls = RULES[base]
    except KeyError:
        raise ValueError(
            f"unknown aggregation rule {base!r}; choose one of {', '.join(RULES)} "
            f"(optionally prefixed by {', '.join(p + '+' for p in PRE_AGGREGATORS)})"
        ) from None
    pre_objs: list[PreAggregator] = []
    for step in steps:
        try:
            pcls = PRE_AGGREGATORS[step]
        except KeyError:
            raise ValueError(
                f"unknown pre-aggregation step {step!r}; choose one of {', '.join(PRE_AGGREGATORS)}"
            ) from None
        pre_objs.append(pcls(**({"f": params["f"]} if "f" in params else {})))
    rule_params = dict(params)
    if pre_objs and "f" in rule_params and not _accepts(cls, "f"):
        rule_params.pop("f")  # consumed by the pre-aggregation step(s)
    try:
        rule = cls(**rule_params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for aggregation rule {base!r}: {exc}") from None
    return Composed(pre_objs, rule) if pre_objs else rule
