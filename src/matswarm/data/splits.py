"""Partitioning a training table into K organisations (K = 2..50).

Every split returns disjoint row sets that cover the table (except feature subsets, which split
columns). ``paper`` is not here: it uses the dataset's own per-org files as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from matswarm.data.errors import DataError
from matswarm.data.federated import OrgTable

MIN_K, MAX_K = 2, 50


def _check_k(k: int, n: int) -> None:
    if not MIN_K <= k <= MAX_K:
        raise ValueError(f"number of organisations must be between {MIN_K} and {MAX_K}, got {k}")
    if n < k:
        raise DataError(f"cannot split {n} rows into {k} non-empty organisations")


def _orgs(pool: OrgTable, parts: Sequence[np.ndarray], how: str) -> list[OrgTable]:
    out = []
    for i, rows in enumerate(parts):
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        if len(rows) == 0:
            raise DataError(f"{how} split left org{i + 1} with no rows; use fewer organisations")
        out.append(
            pool.subset(rows, name=f"org{i + 1}", source=f"{pool.source} [{how} org{i + 1}]")
        )
    return out


def split_iid(pool: OrgTable, k: int, seed: int = 0) -> list[OrgTable]:
    """Uniformly random, (almost) equal-sized shards."""
    _check_k(k, pool.n)
    perm = np.random.default_rng(seed).permutation(pool.n)
    return _orgs(pool, np.array_split(perm, k), "iid")


def split_label_quantiles(pool: OrgTable, k: int) -> list[OrgTable]:
    """Org i gets the i-th of K equal-count label ranges (disjoint label ranges, like the paper)."""
    _check_k(k, pool.n)
    order = np.argsort(pool.y, kind="stable")
    return _orgs(pool, np.array_split(order, k), "label-quantile")


def split_dirichlet(
    pool: OrgTable, k: int, alpha: float, seed: int = 0, n_bins: int = 10, min_rows: int = 2
) -> list[OrgTable]:
    """Dirichlet label skew for regression: bin labels into quantile bins, then give each bin's
    rows to the orgs in proportions drawn from Dir(alpha). Small alpha = strong skew.

    Redraws (up to 100 times) until each org has ``min_rows`` rows.
    """
    _check_k(k, pool.n)
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    rng = np.random.default_rng(seed)
    edges = np.quantile(pool.y, np.linspace(0, 1, n_bins + 1)[1:-1])
    bins = np.searchsorted(edges, pool.y, side="right")
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(k)]
        for b in range(n_bins):
            rows = rng.permutation(np.flatnonzero(bins == b))
            props = rng.dirichlet(np.full(k, alpha))
            cuts = (np.cumsum(props)[:-1] * len(rows)).astype(int)
            for i, chunk in enumerate(np.split(rows, cuts)):
                parts[i].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_rows:
            return _orgs(pool, [np.array(p) for p in parts], f"dirichlet(alpha={alpha})")
    raise DataError(
        f"Dirichlet split with alpha={alpha} kept leaving an org with fewer than {min_rows} rows; "
        "raise alpha or use fewer organisations"
    )


def split_quantity(pool: OrgTable, ratios: Sequence[float], seed: int = 0) -> list[OrgTable]:
    """Random rows in the given size ratios, e.g. (1, 2, 3) or (1, 10, 15)."""
    k = len(ratios)
    _check_k(k, pool.n)
    r = np.asarray(ratios, dtype=np.float64)
    if (r <= 0).any():
        raise ValueError(f"ratios must be positive, got {list(ratios)}")
    perm = np.random.default_rng(seed).permutation(pool.n)
    cuts = np.round(np.cumsum(r)[:-1] / r.sum() * pool.n).astype(int)
    return _orgs(pool, np.split(perm, cuts), f"quantity{tuple(ratios)}")


def feature_subsets(n_features: int, k: int, fraction: float, seed: int = 0) -> list[np.ndarray]:
    """Boolean masks: each org holds a random ``fraction`` of the features (at least one).

    Used for heterogeneous feature spaces (FedMDH-style tasks); apply with
    :func:`apply_feature_subsets`.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    m = max(1, round(fraction * n_features))
    masks = []
    for _ in range(k):
        mask = np.zeros(n_features, dtype=bool)
        mask[rng.choice(n_features, size=m, replace=False)] = True
        masks.append(mask)
    return masks


def apply_feature_subsets(orgs: Sequence[OrgTable], masks: Sequence[np.ndarray]) -> list[OrgTable]:
    if len(orgs) != len(masks):
        raise ValueError(f"{len(orgs)} organisations but {len(masks)} feature masks")
    from dataclasses import replace

    return [
        replace(o, feature_mask=np.asarray(m, dtype=bool)) for o, m in zip(orgs, masks, strict=True)
    ]


SPLITS = ("paper", "iid", "label-quantile", "dirichlet", "quantity", "feature-partition")
