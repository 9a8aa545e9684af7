"""Per-round MSE chart and parity plot of a task's models on a public labelled table.

Neither the ledger nor the store holds a prediction or a test score: rows stay with their
orgs. What they hold are every round's global model (by the hash the round finalised) and the
final archive with the consortium's scaling statistics in its model card. Given a table the
consortium may publish (``matswarm dashboard --eval-data FILE``, e.g. a benchmark test set
in the task's schema), the dashboard applies those models to it: each finalised round's global
model gives one point of the MSE chart, the archived final model gives the parity plot. The
figures are matplotlib PNGs (:mod:`matswarm.evaluation.plots`), cached per task and round.
"""

from __future__ import annotations

import io
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matswarm.data import DataError, TaskSchema, read_table
from matswarm.data.scaling import Standardizer
from matswarm.evaluation.plots import curves_plot, parity_plot
from matswarm.protocol.archive import flat_parameters, read_archive
from matswarm.protocol.codec import decode_vector
from matswarm.protocol.spec import TaskSpec
from matswarm.store import BlobStore
from matswarm.store.cid import cid_from_digest


class ChartUnavailable(Exception):
    """Why a chart cannot be drawn (shown on the page instead of the chart)."""


@dataclass
class Curve:
    rounds: list[int]
    mse: list[float]


class Evaluator:
    """Applies a task's stored models to one public table (see the module docstring)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._table = read_table(path) if path is not None else None
        self._lock = threading.RLock()
        self._mse: dict[tuple[str, str], float] = {}  # (task, global hash) -> MSE
        self._png: dict[tuple[str, ...], bytes] = {}
        self._encoded: dict[tuple[bytes, str], tuple[np.ndarray, np.ndarray, Standardizer]] = {}

    def prepare(
        self, spec: TaskSpec, card: dict | None
    ) -> tuple[np.ndarray, np.ndarray, Standardizer]:
        """The table encoded and scaled for ``spec``; :class:`ChartUnavailable` if it cannot be
        (no table, no scaler yet, or a :class:`~matswarm.data.DataError` naming the column)."""
        if self._table is None:
            raise ChartUnavailable(
                "no public evaluation table: start the dashboard with --eval-data FILE "
                "(the ledger and store hold models, never predictions or rows)"
            )
        if card is None or "scaler" not in card:
            raise ChartUnavailable(
                "the consortium's scaling statistics are published in the final model card; "
                "the chart appears once the final model is archived"
            )
        key = (spec.digest(), json.dumps(card["scaler"], sort_keys=True))
        with self._lock:
            if key not in self._encoded:
                try:
                    X, y = TaskSchema.from_dict(spec.schema).encode(self._table, str(self.path))
                except DataError as exc:
                    raise ChartUnavailable(
                        f"the evaluation table does not fit the task: {exc}"
                    ) from None
                assert y is not None
                scaler = Standardizer.from_dict(card["scaler"])
                self._encoded[key] = (scaler.transform_x(X), y, scaler)
            return self._encoded[key]

    def curve(
        self,
        store: BlobStore,
        spec: TaskSpec,
        card: dict | None,
        task: str,
        finals: list[tuple[int, str]],
    ) -> Curve:
        """MSE (target unit squared) of each finalised round's global model on the table."""
        Xs, y, scaler = self.prepare(spec, card)
        model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
        out = Curve([], [])
        with self._lock:
            for r, h in finals:
                key = (task, h)
                if key not in self._mse:
                    vec = decode_vector(store.get(cid_from_digest(bytes.fromhex(h[2:]))))
                    model.set_flat(vec)
                    pred = scaler.inverse_y(model.predict(Xs))
                    self._mse[key] = float(np.mean((pred - y) ** 2))
                out.rounds.append(r)
                out.mse.append(self._mse[key])
        return out

    def mse_png(
        self,
        store: BlobStore,
        spec: TaskSpec,
        card: dict | None,
        task: str,
        finals: list[tuple[int, str]],
    ) -> bytes:
        key = ("mse", task, *(h for _, h in finals))
        if key not in self._png:
            c = self.curve(store, spec, card, task, finals)
            buf = io.BytesIO()
            unit = spec.schema.get("unit", "")
            curves_plot(
                {"global model": c.mse},
                buf,  # type: ignore[arg-type]
                f"Test MSE per round on {self.path.name if self.path else ''}",
                f"MSE ({unit})²" if unit else "MSE",
            )
            self._png[key] = buf.getvalue()
        return self._png[key]

    def parity_png(
        self, store: BlobStore, spec: TaskSpec, card: dict | None, task: str, cid: str
    ) -> bytes:
        key = ("parity", task, cid)
        if key not in self._png:
            Xs, y, scaler = self.prepare(spec, card)
            weights, _ = read_archive(store.get(cid))
            model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
            flat_parameters(model, weights)
            pred = scaler.inverse_y(model.predict(Xs))
            buf = io.BytesIO()
            parity_plot(
                y,
                {"final model": pred},
                spec.schema.get("unit", ""),
                buf,  # type: ignore[arg-type]
                f"Final model {cid[:16]}… on {self.path.name if self.path else ''}",
            )
            self._png[key] = buf.getvalue()
        return self._png[key]
