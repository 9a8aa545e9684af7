"""Summary rows of a classification comparison: the regression rows' layout (method, model,
org, n_seeds) with the classification metrics, mean (± std for accuracy) over seeds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from matswarm.evaluation.classification import ClassificationMetrics

if TYPE_CHECKING:
    from matswarm.experiments.runner import UnitResult


@dataclass(frozen=True)
class ClassificationSummaryRow:
    method: str
    model: str
    org: str
    accuracy_mean: float
    accuracy_std: float
    balanced_accuracy_mean: float
    f1_mean: float
    roc_auc_mean: float
    brier_mean: float
    n_seeds: int

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def is_classification(results: Sequence[UnitResult]) -> bool:
    return any(isinstance(m, ClassificationMetrics) for r in results for m in r.metrics.values())


def summarise_classification(
    results: Sequence[UnitResult], model_name: str
) -> list[ClassificationSummaryRow]:
    """Mean over seeds per (method, org), methods in run order, the global model first."""
    groups: dict[tuple[str, str], list[ClassificationMetrics]] = {}
    for r in results:
        for org, m in r.metrics.items():
            assert isinstance(m, ClassificationMetrics)
            groups.setdefault((r.method, org), []).append(m)
    rows = []
    for method in dict.fromkeys(r.method for r in results):
        keys = sorted((k for k in groups if k[0] == method), key=lambda k: (k[1] != "global", k[1]))
        for key in keys:
            ms = groups[key]
            acc = np.array([m.accuracy for m in ms])
            rows.append(
                ClassificationSummaryRow(
                    method=method,
                    model=model_name,
                    org=key[1],
                    accuracy_mean=float(acc.mean()),
                    accuracy_std=float(acc.std(ddof=1)) if len(ms) > 1 else 0.0,
                    balanced_accuracy_mean=float(np.mean([m.balanced_accuracy for m in ms])),
                    f1_mean=float(np.mean([m.f1 for m in ms])),
                    roc_auc_mean=float(np.mean([m.roc_auc for m in ms])),
                    brier_mean=float(np.mean([m.brier for m in ms])),
                    n_seeds=len(ms),
                )
            )
    return rows
