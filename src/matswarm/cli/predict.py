"""``matswarm predict MODEL_DIR IN.csv``: apply a fetched final model to a table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from matswarm.cli._output import console, fail


def predict(
    model_dir: Annotated[
        Path, typer.Argument(help="Folder written by `matswarm model fetch` (card, ONNX).")
    ],
    table: Annotated[Path, typer.Argument(help="CSV/Parquet with the model's input columns.")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where to write the predictions (CSV).")
    ] = None,
    backend: Annotated[
        str, typer.Option(help="onnx (onnxruntime on model.onnx) | torch (model.safetensors).")
    ] = "onnx",
    ignore_extra: Annotated[
        bool, typer.Option(help="Carry columns the model does not know through unchanged.")
    ] = False,
) -> None:
    """Check TABLE against the model card's schema, featurise it if the model was trained on
    formulas, predict, and write the table with predicted_<target> and unit columns."""
    from matswarm.data import DataError, read_table
    from matswarm.export.onnx_model import ExportUnavailable
    from matswarm.export.predict import ModelDirError, load_model_dir, predict_table
    from matswarm.protocol.codec import CodecError

    try:
        model = load_model_dir(model_dir)
        df = read_table(table)
        result = predict_table(model, df, str(table), backend=backend, ignore_extra=ignore_extra)
    except (DataError, ModelDirError, ExportUnavailable, CodecError, ValueError, OSError) as exc:
        fail(str(exc))
    dest = out if out is not None else table.with_name(f"{table.stem}.predictions.csv")
    try:
        result.to_csv(dest, index=False)
    except OSError as exc:
        fail(f"{dest}: cannot write the predictions ({exc})")
    target = model.card["target"]
    console.print(
        f"wrote {len(result)} predictions of {target} ({model.card.get('unit') or 'no unit'}) "
        f"to {dest} (column predicted_{target}; backend {backend})"
    )


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
