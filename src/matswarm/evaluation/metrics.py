"""Regression metrics in the target's own unit; classification tasks are evaluated with
:mod:`matswarm.evaluation.classification`."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from matswarm.data.federated import FederatedDataset
from matswarm.evaluation.classification import (
    ClassificationMetrics,
    classification_metrics,
    sigmoid,
)
from matswarm.models import ModelSpec


@dataclass(frozen=True)
class Metrics:
    """MSE, RMSE, MAE and R² of predictions, in the target's unit (squared for MSE)."""

    mse: float
    rmse: float
    mae: float
    r2: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> Metrics:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_pred = np.asarray(y_pred, dtype=np.float64)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"shapes differ or empty: {y_true.shape} vs {y_pred.shape}")
    err = y_pred - y_true
    mse = float(np.mean(err**2))
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    r2 = 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else float("nan")
    return Metrics(mse=mse, rmse=float(np.sqrt(mse)), mae=float(np.mean(np.abs(err))), r2=r2)


class Evaluator:
    """Evaluates parameter vectors on a dataset's test table, converting back to target units."""

    def __init__(self, dataset: FederatedDataset, model_spec: ModelSpec):
        self.dataset = dataset
        self.test = dataset.standardized_test()
        assert dataset.test is not None
        self.y_true = dataset.test.y
        self.model = model_spec.build(dataset.schema.n_features, 0)

    @property
    def classification(self) -> bool:
        return self.dataset.schema.is_classification

    def predict(self, params: np.ndarray) -> np.ndarray:
        """Predictions in the target's unit (classification: the probability of class 1)."""
        self.model.set_flat(params)
        out = self.model.predict(self.test.X)
        if self.classification:
            return sigmoid(out)
        return self.dataset.standardizer.inverse_y(out)

    def evaluate(self, params: np.ndarray) -> Metrics | ClassificationMetrics:
        if self.classification:
            return classification_metrics(self.y_true, self.predict(params))
        return regression_metrics(self.y_true, self.predict(params))

    def dummy(self) -> Metrics | ClassificationMetrics:
        """Predict the consortium's training mean everywhere (its MAE is the mean absolute
        deviation, MAD): any model must beat this. For classification the training mean is the
        positive rate: the majority class, with that rate as its probability."""
        pred = np.full_like(self.y_true, self.dataset.standardizer.y_mean)
        if self.classification:
            rate = float(np.mean(np.concatenate([o.y for o in self.dataset.orgs])))
            return classification_metrics(self.y_true, np.full_like(self.y_true, rate))
        return regression_metrics(self.y_true, pred)
