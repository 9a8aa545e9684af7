"""Aggregation rules on a ``(K, d)`` float32 stack of updates with per-update sample counts.

Every rule is a pure function: it never modifies its inputs and returns a new float32 vector.

Determinism: the output must be bit-identical on every participant so that global-model hashes
can be compared. Coordinate-wise work is done element by element in float64 in a fixed row
order (IEEE arithmetic is exact-reproducible there); quantities that need a reduction over the
``d`` coordinates (distances, norms) are computed in float64 and then rounded to float32 before
they steer a decision or a weight, so the last-bit differences that SIMD summation order can
cause between CPUs do not reach the result in practice.

Conventions (pinned here because libraries differ, see ``shared/notes``):

* Krum scores a point by the sum of squared distances to its ``n - f - 2`` nearest other points
  (Blanchard et al. 2017) and needs ``n >= 2f + 3``; ties go to the lowest index.
* MultiKrum averages the ``m`` best-scored points (default ``m = n - f``) weighted by sample count.
* Median and trimmed mean are coordinate-wise and unweighted (sample counts cannot be trusted
  from a Byzantine org); trimmed mean drops ``f`` values at each end and needs ``n > 2f``.
* Geometric median: weighted Weiszfeld, started at the coordinate-wise median, with a smoothing
  ``eps`` against zero distances, stopping at relative change ``tol`` or ``max_iter``.
* Bulyan (El Mhamdi et al. 2018) needs ``n >= 4f + 3``. Selection: ``theta = n - 2f`` updates
  chosen one at a time, each the Krum winner of the updates not yet chosen, Krum's score on a
  remaining set ``R`` summing the ``max(1, |R| - f - 2)`` nearest others (the ``max(1, .)``
  matters only for the last picks, where ``|R| - f - 2`` reaches 0; distances are computed once,
  on the whole stack; equal scores go to the lower participant index, and with one neighbour two
  mutual nearest updates always tie, so the selection depends on the fixed participant order, as
  every bit of the protocol does). Then, per coordinate, the mean of the ``beta = theta - 2f``
  selected values closest to their median (ties in distance: lower participant index). Unweighted.
* Nearest-neighbour mixing (NNM, Allouah et al. 2023) is a pre-aggregation step: every update is
  replaced by the unweighted mean of its ``n - f`` nearest updates, itself included (ties: itself
  first, then lower index); needs ``f < n``. It is a ``(K, K)`` row-stochastic mixing matrix
  applied to the stack, never a ``(K, n - f, d)`` tensor.
* Centered clipping (Karimireddy et al. 2021): ``v <- v + mean_i clip_tau(x_i - v)``, ``iters``
  times, from ``center`` (the previous round's aggregate when the protocol provides it, else 0).
  ``tau=None`` uses the median distance to the centre, a scale-free choice documented as ours.
"""

from __future__ import annotations

import numpy as np


class AggregationError(ValueError):
    """The rule cannot be applied to these inputs (shape, counts, or n-versus-f requirement)."""


def _validate(stack: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(stack)
    if x.ndim != 2 or x.shape[0] == 0:
        raise AggregationError(f"updates must be a non-empty (K, d) array, got shape {x.shape}")
    if x.dtype != np.float32:
        raise AggregationError(f"updates must be float32, got {x.dtype}")
    if not np.isfinite(x).all():
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(x))[:, 0]})
        raise AggregationError(f"updates of rows {bad} contain NaN or infinity")
    if weights is None:
        w = np.ones(x.shape[0], dtype=np.float64)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (x.shape[0],):
            raise AggregationError(f"expected {x.shape[0]} weights, got shape {w.shape}")
        if (w <= 0).any() or not np.isfinite(w).all():
            raise AggregationError(f"weights (sample counts) must be positive, got {w.tolist()}")
    return x, w


def _require(n: int, f: int, minimum: int, rule: str, formula: str) -> None:
    if f < 0:
        raise AggregationError(f"{rule}: f (assumed Byzantine orgs) must be >= 0, got {f}")
    if n < minimum:
        raise AggregationError(
            f"{rule} with f={f} needs n >= {formula} = {minimum} updates, got n={n}; "
            f"lower f or add participants"
        )


def weighted_mean(stack: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Sample-weighted mean, FedAvg Eq. 4: ``sum_i (n_i / n) x_i``."""
    x, w = _validate(stack, weights)
    p = w / w.sum()
    acc = np.zeros(x.shape[1], dtype=np.float64)
    for i in range(x.shape[0]):  # fixed order, element-wise: reproducible bits
        acc += p[i] * x[i].astype(np.float64)
    return acc.astype(np.float32)


def _row_sum(rows: np.ndarray) -> np.ndarray:
    acc = np.zeros(rows.shape[1], dtype=np.float64)
    for r in rows:
        acc += r
    return acc


def coordinate_median(stack: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Coordinate-wise median (unweighted); even K averages the two middle values."""
    x, _ = _validate(stack, weights)
    s = np.sort(x.astype(np.float64), axis=0)
    k = s.shape[0]
    mid = s[k // 2] if k % 2 else (s[k // 2 - 1] + s[k // 2]) / 2.0
    return mid.astype(np.float32)


def trimmed_mean(stack: np.ndarray, weights: np.ndarray | None = None, f: int = 1) -> np.ndarray:
    """Coordinate-wise mean after dropping the ``f`` largest and ``f`` smallest values."""
    x, _ = _validate(stack, weights)
    _require(x.shape[0], f, 2 * f + 1, "trimmed mean", "2f + 1")
    s = np.sort(x.astype(np.float64), axis=0)[f : x.shape[0] - f]
    return (_row_sum(s) / s.shape[0]).astype(np.float32)


def pairwise_sq_distances(stack: np.ndarray) -> np.ndarray:
    """``(K, K)`` squared Euclidean distances, exact differences (no Gram cancellation)."""
    x = np.asarray(stack, dtype=np.float64)
    k = x.shape[0]
    d = np.zeros((k, k), dtype=np.float64)
    for i in range(k - 1):
        diff = x[i + 1 :] - x[i]
        d[i, i + 1 :] = np.einsum("ij,ij->i", diff, diff)
    d = d + d.T
    return d.astype(np.float32).astype(np.float64)


def krum_scores(stack: np.ndarray, f: int) -> np.ndarray:
    """Blanchard et al.'s Krum score of every update (lower is more central)."""
    x = np.asarray(stack)
    n = x.shape[0]
    _require(n, f, 2 * f + 3, "Krum", "2f + 3")
    d = pairwise_sq_distances(x)
    nb = n - f - 2
    scores = np.empty(n, dtype=np.float64)
    for i in range(n):
        others = np.sort(np.delete(d[i], i))
        scores[i] = others[:nb].sum()
    return scores.astype(np.float32).astype(np.float64)


def krum(stack: np.ndarray, weights: np.ndarray | None = None, f: int = 1) -> np.ndarray:
    """Krum: the single update with the lowest score."""
    x, _ = _validate(stack, weights)
    best = int(np.argmin(krum_scores(x, f)))  # argmin returns the first (lowest index) on ties
    return x[best].copy()


def multi_krum(
    stack: np.ndarray, weights: np.ndarray | None = None, f: int = 1, m: int | None = None
) -> np.ndarray:
    """MultiKrum: sample-weighted mean of the ``m`` best-scored updates (default ``n - f``)."""
    x, w = _validate(stack, weights)
    n = x.shape[0]
    m = n - f if m is None else m
    if not 1 <= m <= n:
        raise AggregationError(f"MultiKrum: m must be between 1 and n={n}, got {m}")
    order = np.argsort(krum_scores(x, f), kind="stable")
    chosen = np.sort(order[:m])
    return weighted_mean(x[chosen], w[chosen])


def bulyan_selection(stack: np.ndarray, f: int) -> np.ndarray:
    """Indices (ascending) of the ``theta = n - 2f`` updates Bulyan's recursive Krum selects."""
    x = np.asarray(stack)
    n = x.shape[0]
    _require(n, f, 4 * f + 3, "Bulyan", "4f + 3")
    d = pairwise_sq_distances(x)
    remaining = list(range(n))
    chosen: list[int] = []
    while len(chosen) < n - 2 * f:
        nb = max(1, len(remaining) - f - 2)
        best, best_score = remaining[0], np.inf
        for i in remaining:  # ascending index: the first of equal scores wins
            others = np.sort(d[i, [j for j in remaining if j != i]])
            score = float(np.float32(others[:nb].sum()))
            if score < best_score:
                best, best_score = i, score
        chosen.append(best)
        remaining.remove(best)
    return np.array(sorted(chosen), dtype=np.int64)


def bulyan(stack: np.ndarray, weights: np.ndarray | None = None, f: int = 1) -> np.ndarray:
    """Bulyan: recursive-Krum selection, then coordinate-wise mean of the ``beta`` values
    closest to the median of the selected ones (see the module docstring)."""
    x, _ = _validate(stack, weights)
    sel = x[bulyan_selection(x, f)].astype(np.float64)
    theta = sel.shape[0]
    beta = theta - 2 * f
    s = np.sort(sel, axis=0)
    med = s[theta // 2] if theta % 2 else (s[theta // 2 - 1] + s[theta // 2]) / 2.0
    # stable argsort over rows in participant order: equal distances keep the lower index first
    closest = np.argsort(np.abs(sel - med), axis=0, kind="stable")[:beta]
    picked = np.take_along_axis(sel, closest, axis=0)
    return (_row_sum(picked) / beta).astype(np.float32)


def nnm_matrix(stack: np.ndarray, f: int) -> np.ndarray:
    """NNM's ``(K, K)`` mixing matrix: row ``i`` puts ``1/(n-f)`` on ``i``'s ``n - f`` nearest
    updates (itself included) and 0 elsewhere."""
    x = np.asarray(stack)
    n = x.shape[0]
    if f < 0:
        raise AggregationError(f"NNM: f (assumed Byzantine orgs) must be >= 0, got {f}")
    if f >= n:
        raise AggregationError(
            f"NNM with f={f} needs n >= f + 1 = {f + 1} updates, got n={n}; "
            "lower f or add participants"
        )
    d = pairwise_sq_distances(x)
    k = n - f
    w = np.zeros((n, n), dtype=np.float64)
    for i in range(n):
        # sort key: distance, then "not itself", then index: itself is always among the nearest
        order = sorted(range(n), key=lambda j, i=i: (d[i, j], j != i, j))
        w[i, order[:k]] = 1.0 / k
    return w


def nearest_neighbour_mixing(stack: np.ndarray, f: int = 1) -> np.ndarray:
    """Replace every update by the mean of its ``n - f`` nearest neighbours (float32 stack)."""
    x, _ = _validate(stack, None)
    w = nnm_matrix(x, f)
    x64 = x.astype(np.float64)
    out = np.empty_like(x64)
    for i in range(x.shape[0]):
        nbrs = np.flatnonzero(w[i])  # ascending order: reproducible bits
        out[i] = _row_sum(x64[nbrs]) / len(nbrs)
    return out.astype(np.float32)


def geometric_median(
    stack: np.ndarray,
    weights: np.ndarray | None = None,
    tol: float = 1e-7,
    max_iter: int = 200,
    eps: float = 1e-8,
) -> np.ndarray:
    """Weighted geometric median by Weiszfeld's algorithm (Pillutla et al.'s RFA uses the same)."""
    x, w = _validate(stack, weights)
    if tol <= 0 or max_iter < 1:
        raise AggregationError(
            f"geometric median needs tol > 0 and max_iter >= 1 (got {tol}, {max_iter})"
        )
    x64 = x.astype(np.float64)
    z = coordinate_median(x).astype(np.float64)
    for _ in range(max_iter):
        diff = x64 - z
        dist = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float32).astype(np.float64)
        beta = w / np.maximum(dist, eps)
        beta = beta / beta.sum()
        z_new = np.zeros_like(z)
        for i in range(x64.shape[0]):
            z_new += beta[i] * x64[i]
        step = float(np.float32(np.linalg.norm(z_new - z)))
        scale = float(np.float32(np.linalg.norm(z))) + eps
        z = z_new
        if step <= tol * scale:
            break
    return z.astype(np.float32)


def centered_clipping(
    stack: np.ndarray,
    weights: np.ndarray | None = None,
    tau: float | None = None,
    iters: int = 3,
    center: np.ndarray | None = None,
) -> np.ndarray:
    """Centered clipping: iteratively move the centre by the mean of clipped differences."""
    x, _ = _validate(stack, weights)
    if iters < 1:
        raise AggregationError(f"centered clipping needs iters >= 1, got {iters}")
    if tau is not None and tau <= 0:
        raise AggregationError(f"centered clipping needs tau > 0, got {tau}")
    x64 = x.astype(np.float64)
    v = np.zeros(x.shape[1]) if center is None else np.asarray(center, dtype=np.float64).copy()
    if v.shape != (x.shape[1],):
        raise AggregationError(f"center has shape {v.shape}, updates have d={x.shape[1]}")
    n = x.shape[0]
    for _ in range(iters):
        diff = x64 - v
        norms = np.sqrt(np.einsum("ij,ij->i", diff, diff)).astype(np.float32).astype(np.float64)
        t = float(np.median(norms)) if tau is None else tau
        if t == 0.0:
            break
        scale = np.minimum(1.0, t / np.maximum(norms, 1e-30))
        step = np.zeros_like(v)
        for i in range(n):
            step += scale[i] * diff[i]
        v = v + step / n
    return v.astype(np.float32)
