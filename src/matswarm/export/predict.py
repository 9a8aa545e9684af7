"""Applying a final model to a user's table: ``matswarm predict MODEL_DIR IN.csv``.

``MODEL_DIR`` is what ``matswarm model fetch`` writes: ``model_card.json``, ``model.onnx`` (the
ONNX export whose sha256 the card records) and ``model.safetensors`` (the ledger-recorded
archive). The table is checked against the card's schema (missing and unexpected columns are
named), featurised locally when the card declares a featuriser, standardised with the card's
scaler, run through onnxruntime (or the in-process model with ``backend="torch"``) and
de-standardised into the target's unit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matswarm.data.errors import DataError
from matswarm.data.scaling import Standardizer
from matswarm.data.schema import TaskSchema

BACKENDS = ("onnx", "torch")


class ModelDirError(ValueError):
    """The model folder is incomplete or does not match its model card."""


@dataclass
class PortableModel:
    """A model folder, read and checked."""

    path: Path
    card: dict[str, Any]

    @property
    def schema(self) -> TaskSchema:
        return TaskSchema.from_dict(self.card["schema"])

    @property
    def scaler(self) -> Standardizer:
        return Standardizer.from_dict(self.card["scaler"])

    @property
    def featurizer(self) -> dict[str, Any] | None:
        return self.card.get("featurizer") or None

    def onnx_blob(self) -> bytes:
        info = self.card.get("onnx")
        if not info:
            raise ModelDirError(
                f"{self.path / 'model_card.json'}: the card declares no ONNX export (the task "
                "ran without the `export` extra); use --backend torch"
            )
        path = self.path / info.get("file", "model.onnx")
        if not path.exists():
            raise ModelDirError(f"{path} is missing; fetch it with `matswarm model fetch`")
        blob = path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != info["sha256"]:
            raise ModelDirError(f"{path}: sha256 differs from the model card's onnx.sha256")
        return blob

    def standardised_predict(self, X: np.ndarray, backend: str) -> np.ndarray:
        if backend == "onnx":
            from matswarm.export.onnx_model import run_onnx

            return run_onnx(self.onnx_blob(), X)
        return self.torch_model().predict(X)

    def torch_model(self):
        """The archived weights loaded into the card's model (the in-process reference)."""
        from matswarm.models import ModelSpec
        from matswarm.protocol.archive import flat_parameters, read_archive

        path = self.path / "model.safetensors"
        if not path.exists():
            raise ModelDirError(f"{path} is missing; fetch it with `matswarm model fetch`")
        weights, _ = read_archive(path.read_bytes())
        model = ModelSpec(**self.card["model"]).build(len(self.card["features"]))
        flat_parameters(model, weights)
        return model


def load_model_dir(path: str | Path) -> PortableModel:
    path = Path(path)
    card_path = path / "model_card.json"
    if not card_path.exists():
        raise ModelDirError(
            f"{card_path} not found: MODEL_DIR must be a folder written by `matswarm model fetch`"
        )
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelDirError(f"{card_path}: not a JSON model card ({exc})") from None
    for key in ("schema", "scaler", "features", "target", "model"):
        if key not in card:
            raise ModelDirError(f"{card_path}: the model card lacks {key!r}")
    return PortableModel(path, card)


def check_columns(
    model: PortableModel, table: pd.DataFrame, source: str, *, allow_extra: bool = False
) -> None:
    """Name the columns the model needs but the table lacks, and (unless ``allow_extra``) those
    it does not expect."""
    schema = model.schema
    feat = model.featurizer
    formula = str(feat.get("formula_column", "formula")) if feat else None
    if feat:
        if formula not in table.columns and "composition" not in table.columns:
            raise DataError(
                f"the model featurises formulas from column {formula!r}, which the table lacks",
                source=source,
                column=formula,
            )
        needed: list[str] = []
    else:
        needed = [*schema.numeric_columns, *schema.categories]
    missing = [c for c in needed if c not in table.columns]
    if missing:
        more = f" (+{len(missing) - 8} more)" if len(missing) > 8 else ""
        raise DataError(
            f"{len(missing)} column(s) the model needs are missing: {', '.join(missing[:8])}{more}",
            source=source,
            column=missing[0],
        )
    allowed = {*needed, *schema.identifiers, schema.target}
    if feat:
        allowed |= {formula, "composition", *schema.features}
    extra = [str(c) for c in table.columns if c not in allowed]
    if extra and not allow_extra:
        more = f" (+{len(extra) - 8} more)" if len(extra) > 8 else ""
        raise DataError(
            f"{len(extra)} column(s) the model does not know: {', '.join(extra[:8])}{more}; "
            "drop them, or pass --ignore-extra to carry them through to the output unchanged",
            source=source,
            column=extra[0],
        )


def _featurise(model: PortableModel, table: pd.DataFrame, source: str) -> pd.DataFrame:
    feat = model.featurizer
    assert feat is not None
    try:
        from matswarm.data.featurize import featurize
    except ImportError as exc:
        raise DataError(
            f"this model featurises formulas ({feat.get('name', '?')}, preset "
            f"{feat.get('preset', '?')}) but matswarm.data.featurize cannot be imported "
            f"({exc}); install the materials extra: pip install -e '.[materials]'",
            source=source,
        ) from None
    return featurize(
        table,
        formula_column=str(feat.get("formula_column", "formula")),
        preset=str(feat.get("preset", "magpie")),
        source=source,
    )


def predict_table(
    model: PortableModel,
    table: pd.DataFrame,
    source: str,
    *,
    backend: str = "onnx",
    ignore_extra: bool = False,
) -> pd.DataFrame:
    """``table`` with ``predicted_<target>`` (in the card's unit) and ``unit`` columns added."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    check_columns(model, table, source, allow_extra=ignore_extra)
    inputs = _featurise(model, table, source) if model.featurizer else table
    X, _ = model.schema.encode(inputs, source, require_target=False)
    Xs = model.scaler.transform_x(X)
    y = model.scaler.inverse_y(model.standardised_predict(Xs, backend))
    out = table.reset_index(drop=True).copy()
    target = model.card["target"]
    out[f"predicted_{target}"] = y
    out["unit"] = model.card.get("unit") or ""
    return out
