"""Rich tables of contributions (``task status``, ``matswarm run``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.table import Table

from matswarm.contrib.rounds import ranking

EXPLAIN = (
    "value = validation-MSE improvement the org's updates bring (Shapley: averaged over "
    "coalitions; LOO: removing it from the full set), summed over rounds; each org scores "
    "candidates on its own validation rows, the consortium combines the committed scores"
)


def contributions_table(doc: Mapping[str, Any], title: str) -> Table:
    """One contributions document as a table, highest value first."""
    table = Table(title=title, caption=f"{doc['method']}, metric {doc['metric']}")
    for col in ("rank", "org", "value", "± stderr"):
        table.add_column(col, justify="left" if col == "org" else "right")
    for i, (name, value, se) in enumerate(ranking(doc), 1):
        table.add_row(str(i), name, f"{value:+.5f}", "-" if se is None else f"{se:.5f}")
    return table


def run_contributions_table(results: Sequence[Any]) -> Table | None:
    """Task-level contributions of a comparison's federated runs: mean ± std over seeds."""
    per: dict[tuple[str, str], list[float]] = {}
    methods: dict[str, str] = {}
    for r in results:
        section = getattr(r, "contributions", None)
        if not section:
            continue
        doc = section["contributions"]
        methods[r.method] = doc["method"]
        for name, value, _ in ranking(doc):
            per.setdefault((r.method, name), []).append(value)
    if not per:
        return None
    table = Table(title="Contributions (whole task, validation MSE improvement)", caption=EXPLAIN)
    for col in ("method", "org", "value", "± std over seeds", "seeds"):
        table.add_column(col, justify="left" if col in ("method", "org") else "right")
    for (method, name), vals in sorted(per.items(), key=lambda kv: (kv[0][0], -np.mean(kv[1]))):
        std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
        table.add_row(
            f"{method} ({methods[method]})",
            name,
            f"{np.mean(vals):+.5f}",
            f"{std:.5f}",
            str(len(vals)),
        )
    return table
