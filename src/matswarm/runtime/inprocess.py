"""In-process runtime: every organisation is an :class:`~matswarm.protocol.OrgNode` in this
process. Fast, for tests, experiments and the demo; the protocol is the same one the Flower
runtime drives across machines."""

from __future__ import annotations

import numpy as np
import torch

from matswarm.aggregation import AggregationRule
from matswarm.algorithms.base import Baseline, FederatedAlgorithm
from matswarm.data.federated import FederatedDataset, StandardizedOrg
from matswarm.models import ModelSpec
from matswarm.protocol import Aggregator, OrgNode, RoundEngine, RoundHooks, TaskRun
from matswarm.protocol.engine import ProgressFn


def configure_torch(threads: int = 1) -> None:
    """Small models train fastest single-threaded; also avoids oversubscribing parallel seeds."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def build_engine(
    dataset: FederatedDataset,
    model_spec: ModelSpec,
    algorithm: FederatedAlgorithm,
    rule: AggregationRule,
    seed: int,
    *,
    hooks: RoundHooks | None = None,
    task: str = "local",
    orgs: list[StandardizedOrg] | None = None,
) -> RoundEngine:
    """Wire organisations, the shared initial model and the aggregator into a round engine."""
    algorithm.validate()
    algorithm.check_model(model_spec, rule)
    orgs = orgs if orgs is not None else dataset.standardized_orgs()
    if len(orgs) < rule.min_participants():
        raise ValueError(
            f"aggregation rule {rule.describe()} needs at least {rule.min_participants()} "
            f"organisations, the task has {len(orgs)}"
        )
    d = dataset.schema.n_features
    initial = model_spec.build(d, seed).get_flat()
    nodes = [OrgNode(o, model_spec.build(d, seed), algorithm, seed, i) for i, o in enumerate(orgs)]
    aggregator = Aggregator(algorithm, rule, [n.name for n in nodes], initial)
    return RoundEngine(task, algorithm, aggregator, nodes, initial, hooks)


def run_federated(
    dataset: FederatedDataset,
    model_spec: ModelSpec,
    algorithm: FederatedAlgorithm,
    rule: AggregationRule,
    seed: int,
    *,
    hooks: RoundHooks | None = None,
    task: str = "local",
    progress: ProgressFn | None = None,
) -> TaskRun:
    """Run all rounds of a federated algorithm in this process."""
    configure_torch()
    engine = build_engine(dataset, model_spec, algorithm, rule, seed, hooks=hooks, task=task)
    return engine.run(progress=progress)


def run_baseline(
    dataset: FederatedDataset, model_spec: ModelSpec, baseline: Baseline, seed: int
) -> dict[str, np.ndarray]:
    """Train Solo or Joint models; returns parameter vectors keyed by org name or ``joint``."""
    configure_torch()
    baseline.validate()
    if model_spec.name == "gbdt":  # trees: the histogram algorithm on one participant
        from matswarm.algorithms.histogram import tree_baseline_fit

        orgs = dataset.standardized_orgs()
        return tree_baseline_fit(baseline.name, orgs, model_spec, baseline.get_params(), seed)
    model = model_spec.build(dataset.schema.n_features, seed)
    return baseline.fit(dataset.standardized_orgs(), model, seed)
