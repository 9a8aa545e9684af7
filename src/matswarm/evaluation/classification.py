"""Binary classification metrics: accuracy, balanced accuracy, F1, ROC-AUC and the Brier score,
and the majority-class baseline.

Hand-written rather than scikit-learn's: scikit-learn is not a core dependency, and each metric
is a line or two of numpy (ROC-AUC as the Mann-Whitney U statistic with tied scores counted
half); ``tests/evaluation/test_classification.py`` checks every one against scikit-learn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ClassificationMetrics:
    """Metrics of predicted class-1 probabilities against 0/1 labels (threshold 0.5).

    ``mse`` is the Brier score (the mean squared error of the probabilities): the per-round
    curves and per-seed tables of a run read ``mse`` whatever the task.
    """

    accuracy: float
    balanced_accuracy: float
    f1: float
    roc_auc: float
    brier: float
    positive_rate: float
    n: int

    @property
    def mse(self) -> float:
        return self.brier

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def classification_metrics(y_true: np.ndarray, prob: np.ndarray) -> ClassificationMetrics:
    """Metrics of probabilities ``prob`` for labels ``y_true`` in {0, 1}."""
    y = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(prob, dtype=np.float64)
    if y.shape != p.shape or y.size == 0:
        raise ValueError(f"shapes differ or empty: {y.shape} vs {p.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    pos = y == 1.0
    pred = p >= 0.5
    tp = float(np.sum(pred & pos))
    tn = float(np.sum(~pred & ~pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    recalls = [tp / (tp + fn) if tp + fn else np.nan, tn / (tn + fp) if tn + fp else np.nan]
    balanced = float(np.nanmean(recalls)) if not np.isnan(recalls).all() else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return ClassificationMetrics(
        accuracy=(tp + tn) / y.size,
        balanced_accuracy=balanced,
        f1=float(f1),
        roc_auc=roc_auc(y, p),
        brier=float(np.mean((p - y) ** 2)),
        positive_rate=float(pos.mean()),
        n=int(y.size),
    )


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties half;
    NaN when only one class is present."""
    y = np.asarray(y_true) == 1
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    s = np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties (1-based).
    _, first, counts = np.unique(sorted_s, return_index=True, return_counts=True)
    avg = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def confusion(y_true: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """2x2 counts ``[[tn, fp], [fn, tp]]`` (rows: true class 0/1, columns: predicted)."""
    y = np.asarray(y_true) == 1
    pred = np.asarray(prob) >= 0.5
    return np.array(
        [[np.sum(~y & ~pred), np.sum(~y & pred)], [np.sum(y & ~pred), np.sum(y & pred)]],
        dtype=np.int64,
    )


def sigmoid(logit: np.ndarray) -> np.ndarray:
    z = np.asarray(logit, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))
