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
from matswarm.web.views import TaskModels

CHARTS = ("mse", "parity")


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

    def curve(self, store: BlobStore, m: TaskModels) -> Curve:
        """MSE (target unit squared) of each finalised round's global model on the table."""
        spec = _spec(m)
        Xs, y, scaler = self.prepare(spec, m.card)
        model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
        out = Curve([], [])
        with self._lock:
            for r, h in m.finals:
                key = (m.task, h)
                if key not in self._mse:
                    vec = decode_vector(store.get(cid_from_digest(bytes.fromhex(h[2:]))))
                    model.set_flat(vec)
                    pred = scaler.inverse_y(model.predict(Xs))
                    self._mse[key] = float(np.mean((pred - y) ** 2))
                out.rounds.append(r)
                out.mse.append(self._mse[key])
        return out

    def png(self, store: BlobStore, m: TaskModels, chart: str) -> bytes:
        """The ``"mse"`` or ``"parity"`` chart of a task (cached per task and models)."""
        if chart not in CHARTS:
            raise ChartUnavailable(f"no chart {chart!r}; there are {', '.join(CHARTS)}")
        if chart == "parity" and m.final_cid is None:
            raise ChartUnavailable("no final model yet")
        key = (chart, m.task, str(m.final_cid), *(h for _, h in m.finals))
        with self._lock:
            if key not in self._png:
                self._png[key] = self._draw(store, m, chart)
            return self._png[key]

    def _draw(self, store: BlobStore, m: TaskModels, chart: str) -> bytes:
        spec = _spec(m)
        unit = spec.schema.get("unit", "")
        where = self.path.name if self.path else ""
        buf = io.BytesIO()
        if chart == "mse":
            c = self.curve(store, m)
            ylabel = f"MSE ({unit})²" if unit else "MSE"
            curves_plot({"global model": c.mse}, buf, f"Test MSE per round on {where}", ylabel)  # type: ignore[arg-type]
        else:
            assert m.final_cid is not None
            Xs, y, scaler = self.prepare(spec, m.card)
            weights, _ = read_archive(store.get(m.final_cid))
            model = spec.model_spec().build(len(spec.schema["features"]), spec.seed)
            flat_parameters(model, weights)
            pred = scaler.inverse_y(model.predict(Xs))
            title = f"Final model {m.final_cid[:16]}… on {where}"
            parity_plot(y, {"final model": pred}, unit, buf, title)  # type: ignore[arg-type]
        return buf.getvalue()


def _spec(m: TaskModels) -> TaskSpec:
    if isinstance(m.spec, str):
        raise ChartUnavailable(f"task spec not readable from the store: {m.spec}")
    return m.spec
