"""Local models behind one interface; parameters are exchanged as flat float32 vectors."""

from matswarm.models.base import RegressionModel
from matswarm.models.zoo import LSTM, MLP, MODELS, RNN, TREE_MODELS, Lasso, ModelSpec

__all__ = ["LSTM", "MLP", "MODELS", "RNN", "TREE_MODELS", "Lasso", "ModelSpec", "RegressionModel"]
