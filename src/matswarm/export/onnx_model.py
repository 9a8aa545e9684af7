"""ONNX export of a final model, checked against the in-process model with onnxruntime.

* Neural models (MLP, Lasso, RNN, LSTM): ``torch.onnx.export(..., dynamo=False)``, the
  TorchScript exporter, with a dynamic batch dimension. Both torch 2.13 exporters work offline
  on the CPU wheel and reproduced our models to 5e-8; the torch.export-based one
  (``dynamo=True``, which also needs onnxscript) took 30-38 s per model on the shared 2-core
  machine against 0.1-0.8 s here, and an export runs at the end of every trusted task.
* Trees (``gbdt``): skl2onnx/onnxmltools convert scikit-learn/XGBoost/LightGBM objects, and the
  federated ensemble is none of those, so the graph is built with ``onnx.helper`` as one
  ``ai.onnx.ml`` ``TreeEnsembleRegressor`` node (``BRANCH_LT`` on the agreed thresholds, leaf
  weights summed, base score added): the operator those converters emit for tree ensembles.

Both graphs map standardised float32 features ``(n, d)`` (``(x - x_mean) / x_scale`` with the
model card's scaler, features in the card's order) to the standardised target ``(n,)`` or
``(n, 1)``; :mod:`matswarm.export.predict` applies the scaler both ways. The export is refused
unless onnxruntime reproduces the in-process predictions on probe rows to ``ONNX_TOLERANCE``.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from matswarm.models.base import RegressionModel
from matswarm.models.trees import GradientBoostedTrees, thresholds, trees_done

ONNX_TOLERANCE = 1e-5
PROBE_ROWS = 256
ML_OPSET = 3
ONNX_OPSET = 18
INPUT_NAME = "x_standardised"
OUTPUT_NAME = "y_standardised"


class ExportUnavailable(RuntimeError):
    """onnx / onnxruntime (the ``export`` extra) are not installed."""


def _require() -> tuple[Any, Any]:
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ExportUnavailable(
            f"ONNX export needs onnx and onnxruntime ({exc.name} is missing); "
            "install them with `pip install -e '.[export]'`"
        ) from None
    return onnx, onnxruntime


@dataclass(frozen=True)
class OnnxExport:
    """An exported model and what its model card records about it."""

    blob: bytes
    info: dict[str, Any]


def export_onnx(model: RegressionModel, n_features: int, seed: int = 0) -> OnnxExport:
    """Export ``model`` (its current parameters) and check it with onnxruntime."""
    onnx, _ = _require()
    if isinstance(model, GradientBoostedTrees):
        blob, exporter = _trees_onnx(model, onnx), "onnx.helper TreeEnsembleRegressor"
    else:
        blob, exporter = _torch_onnx(model, n_features), "torch.onnx.export (TorchScript)"
    diff = max_abs_difference(blob, model, probe_rows(n_features, seed))
    if not diff <= ONNX_TOLERANCE:
        raise ValueError(
            f"onnxruntime differs from the in-process model by {diff:.3g} on probe rows "
            f"(tolerance {ONNX_TOLERANCE}); the ONNX export is not faithful"
        )
    import onnxruntime
    import torch

    info = {
        "file": "model.onnx",
        "sha256": hashlib.sha256(blob).hexdigest(),
        "exporter": exporter,
        "opset": {"": ONNX_OPSET, **({"ai.onnx.ml": ML_OPSET} if "Tree" in exporter else {})},
        "input": f"{INPUT_NAME}: float32 (n, {n_features}) = (x - x_mean) / x_scale, the "
        "card's scaler, features in the card's order",
        "output": f"{OUTPUT_NAME}: standardised target; y = output * y_scale + y_mean",
        "check": {
            "runtime": f"onnxruntime {onnxruntime.__version__}",
            "reference": f"in-process model (torch {torch.__version__})",
            "probe_rows": PROBE_ROWS,
            "max_abs_difference": float(diff),
            "tolerance": ONNX_TOLERANCE,
        },
    }
    return OnnxExport(blob, info)


def probe_rows(n_features: int, seed: int) -> np.ndarray:
    """Standard-normal rows (standardised units) on which an export is checked."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((PROBE_ROWS, n_features)).astype(np.float32)


def run_onnx(blob: bytes, X: np.ndarray) -> np.ndarray:
    """Standardised predictions of an ONNX model (float64, shape ``(n,)``)."""
    _, ort = _require()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # small models; avoids oversubscribing a shared machine
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    out = sess.run(None, {name: np.ascontiguousarray(X, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64).reshape(len(X))


def max_abs_difference(blob: bytes, model: RegressionModel, X: np.ndarray) -> float:
    """Largest ``|onnxruntime - in-process|`` over the rows of ``X`` (standardised units)."""
    ours = model.predict(X)
    theirs = run_onnx(blob, X)
    return float(np.max(np.abs(ours - theirs))) if len(X) else 0.0


def _torch_onnx(model: RegressionModel, n_features: int) -> bytes:
    import torch

    model.eval()
    example = torch.zeros((2, n_features), dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter chatter (torchvision ops, deprecations)
        torch.onnx.export(
            model,
            (example,),
            buf,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamo=False,
            dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAME: {0: "n"}},
            opset_version=ONNX_OPSET,
            verbose=False,
        )
    return buf.getvalue()


def _trees_onnx(model: GradientBoostedTrees, onnx: Any) -> bytes:
    from onnx import TensorProto, helper

    layout = model.layout
    v = model.flat()
    table = thresholds(layout, v)
    attrs: dict[str, list] = {
        k: []
        for k in (
            "nodes_treeids",
            "nodes_nodeids",
            "nodes_featureids",
            "nodes_values",
            "nodes_modes",
            "nodes_truenodeids",
            "nodes_falsenodeids",
            "target_treeids",
            "target_nodeids",
            "target_ids",
            "target_weights",
        )
    }
    n_trees = max(trees_done(layout, v), 1)  # an untrained model exports one all-zero tree
    internal = layout.internal
    for t in range(n_trees):
        feat, thr, leaf = layout.tree(v, t)
        for i in range(internal + layout.leaves):
            attrs["nodes_treeids"].append(t)
            attrs["nodes_nodeids"].append(i)
            if i < internal:
                f, b = int(feat[i]), int(thr[i])
                attrs["nodes_featureids"].append(f)
                attrs["nodes_values"].append(float(table[f, b]))
                attrs["nodes_modes"].append("BRANCH_LT")
                attrs["nodes_truenodeids"].append(2 * i + 1)
                attrs["nodes_falsenodeids"].append(2 * i + 2)
            else:
                attrs["nodes_featureids"].append(0)
                attrs["nodes_values"].append(0.0)
                attrs["nodes_modes"].append("LEAF")
                attrs["nodes_truenodeids"].append(0)
                attrs["nodes_falsenodeids"].append(0)
                attrs["target_treeids"].append(t)
                attrs["target_nodeids"].append(i)
                attrs["target_ids"].append(0)
                attrs["target_weights"].append(float(leaf[i - internal]))
    node = helper.make_node(
        "TreeEnsembleRegressor",
        [INPUT_NAME],
        [OUTPUT_NAME],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values=[float(v[5])],
        **attrs,
    )
    d = layout.n_features
    graph = helper.make_graph(
        [node],
        "matswarm_gbdt",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["n", 1])],
    )
    proto = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", ONNX_OPSET),
            helper.make_opsetid("ai.onnx.ml", ML_OPSET),
        ],
        producer_name="matswarm",
    )
    proto.ir_version = 9
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
