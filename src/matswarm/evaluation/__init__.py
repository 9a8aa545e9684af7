"""Evaluation: metrics in the target's unit, the dummy baseline, parity and curve plots."""

from matswarm.evaluation.metrics import Evaluator, Metrics, regression_metrics

__all__ = ["Evaluator", "Metrics", "regression_metrics"]
