"""A synthetic multi-organisation tabular regression generator for tests and scalability runs.

Rows follow a fixed nonlinear ground truth ``y = w·x + 0.5·sin(v·x) + noise``; each org's
feature distribution is shifted along a common direction in proportion to ``label_shift``, which
shifts its label range too (non-i.i.d. like the paper's split). The tables go through the same
schema/validation path as real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from matswarm.data.federated import FederatedDataset, build_dataset


def make_tables(
    n_rows: int = 3694,
    n_features: int = 147,
    n_orgs: int = 3,
    *,
    label_shift: float = 1.0,
    noise: float = 0.1,
    n_test: int = 322,
    seed: int = 0,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Per-org DataFrames (``f0..``, target ``y``, identifier ``sample_id``) and a test table."""
    if n_orgs < 1 or n_rows < n_orgs:
        raise ValueError(f"need at least one row per org (n_rows={n_rows}, n_orgs={n_orgs})")
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1, got {n_features}")
    rng = np.random.default_rng(seed)
    w = rng.normal(0, 1 / np.sqrt(n_features), n_features)
    v = rng.normal(0, 2 / np.sqrt(n_features), n_features)
    direction = w / np.linalg.norm(w)
    offsets = label_shift * (np.arange(n_orgs) - (n_orgs - 1) / 2)

    def rows(n: int, offset: float, start: int) -> pd.DataFrame:
        X = rng.normal(0, 1, (n, n_features)) + offset * direction
        y = X @ w + 0.5 * np.sin(X @ v) + rng.normal(0, noise, n)
        df = pd.DataFrame(X, columns=[f"f{j}" for j in range(n_features)])
        df.insert(0, "sample_id", [f"s{start + i}" for i in range(n)])
        df["y"] = y
        return df

    sizes = np.array_split(np.arange(n_rows), n_orgs)
    tables, start = {}, 0
    for i, idx in enumerate(sizes):
        tables[f"org{i + 1}"] = rows(len(idx), offsets[i], start)
        start += len(idx)
    # The test set covers every org's distribution equally.
    test_parts = np.array_split(np.arange(n_test), n_orgs)
    test = pd.concat(
        [rows(len(p), offsets[i], start + 10**6 * (i + 1)) for i, p in enumerate(test_parts)],
        ignore_index=True,
    )
    return tables, test


def make_dataset(
    *, task: str = "regression", threshold: float | None = None, **kwargs
) -> FederatedDataset:
    """:func:`make_tables` run through :func:`~matswarm.data.federated.build_dataset`.

    ``task="classification"`` labels each row ``y > threshold`` (0/1; unitless)."""
    tables, test = make_tables(**kwargs)
    return build_dataset(
        {k: (v, f"synthetic:{k}") for k, v in tables.items()},
        "y",
        test=(test, "synthetic:test"),
        unit="" if task == "classification" else "a.u.",
        description=f"synthetic ({kwargs or 'defaults'})",
        task=task,
        threshold=threshold,
    )
