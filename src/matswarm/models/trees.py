"""A gradient-boosted tree ensemble held as one flat float32 vector (the ``gbdt`` model).

The federated protocol moves flat float32 vectors and hashes them (global models, votes, the
archive), so the ensemble lives in a single non-trainable tensor with a fixed layout::

    header  [rounds_done, n_features, trees, depth, bins, base_score]
    edges   (n_features, bins - 1)  bin edges in standardised units (NO_EDGE = unused)
    tree t  split_feature (2^depth - 1), split_bin (2^depth - 1), leaf (2^depth)

Trees are complete binary trees stored breadth first (node ``i`` has children ``2i+1`` and
``2i+2``). A row goes left at node ``i`` when ``x[split_feature[i]] < edges[f, split_bin[i]]``,
i.e. when its bin (:func:`bin_rows`) is ``<= split_bin[i]``; ``split_bin = bins - 1`` means
"no split" (threshold :data:`NO_EDGE`: every row goes left). Leaves include the shrinkage.
Integers (features, bins, counters) are exact in float32 far beyond any size used here.

Because the whole model is one tensor, :mod:`matswarm.protocol.archive` (safetensors),
``get_flat``/``set_flat`` and ``vector_hash`` work for trees exactly as for the neural models.
The training procedure (federated quantile sketch, histograms, split finding) is
:class:`matswarm.algorithms.histogram.FedGBDT`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from matswarm.models.base import RegressionModel

HEADER = 6
#: An unused edge and the no-split threshold: the largest float32, so every finite value is below
#: it and the vector stays finite (aggregation and codecs reject inf/NaN).
NO_EDGE = np.float32(np.finfo(np.float32).max)


@dataclass(frozen=True)
class TreeLayout:
    """Sizes and offsets of the flat ensemble vector."""

    n_features: int
    trees: int
    depth: int
    bins: int

    def __post_init__(self) -> None:
        for key, lo, hi in (("trees", 1, 100_000), ("depth", 1, 12), ("bins", 2, 255)):
            v = getattr(self, key)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise ValueError(f"gbdt: {key} must be an integer in {lo}..{hi}, got {v!r}")
        if self.n_features < 1:
            raise ValueError(f"gbdt: the model needs at least one feature, got {self.n_features}")

    @property
    def internal(self) -> int:
        return 2**self.depth - 1

    @property
    def leaves(self) -> int:
        return 2**self.depth

    @property
    def tree_size(self) -> int:
        return 2 * self.internal + self.leaves

    @property
    def edges_offset(self) -> int:
        return HEADER

    @property
    def trees_offset(self) -> int:
        return HEADER + self.n_features * (self.bins - 1)

    @property
    def size(self) -> int:
        return self.trees_offset + self.trees * self.tree_size

    @property
    def rounds(self) -> int:
        """Protocol rounds to grow the whole ensemble: one sketch round, one round per level."""
        return 1 + self.trees * self.depth

    @classmethod
    def of(cls, vector: np.ndarray) -> TreeLayout:
        """Read the layout from a vector's header (and check the vector's length)."""
        v = np.asarray(vector)
        if v.ndim != 1 or len(v) < HEADER:
            raise ValueError(f"not a gbdt parameter vector (shape {v.shape})")
        layout = cls(int(v[1]), int(v[2]), int(v[3]), int(v[4]))
        if len(v) != layout.size:
            raise ValueError(f"gbdt vector has {len(v)} values, its header implies {layout.size}")
        return layout

    # -- views into a float32 vector (writable when the vector is) ------------------------------
    def edges(self, v: np.ndarray) -> np.ndarray:
        return v[self.edges_offset : self.trees_offset].reshape(self.n_features, self.bins - 1)

    def tree(self, v: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(split_feature, split_bin, leaf)`` views of tree ``t``."""
        start = self.trees_offset + t * self.tree_size
        feat = v[start : start + self.internal]
        thr = v[start + self.internal : start + 2 * self.internal]
        leaf = v[start + 2 * self.internal : start + self.tree_size]
        return feat, thr, leaf

    def trees_block(self, v: np.ndarray, upto: int) -> np.ndarray:
        """The first ``upto`` trees as one slice (what a cached margin was computed from)."""
        return v[self.trees_offset : self.trees_offset + upto * self.tree_size]

    def initial(self) -> np.ndarray:
        """The untrained ensemble: header, no edges agreed yet, every tree "no split", leaf 0."""
        v = np.zeros(self.size, dtype=np.float32)
        v[1:5] = (self.n_features, self.trees, self.depth, self.bins)
        self.edges(v)[:] = NO_EDGE
        for t in range(self.trees):
            self.tree(v, t)[1][:] = self.bins - 1
        return v


def thresholds(layout: TreeLayout, v: np.ndarray) -> np.ndarray:
    """``(n_features, bins)`` float32 table: column ``b`` is the threshold of a split at bin ``b``
    (:data:`NO_EDGE` in the last column: the no-split marker)."""
    tab = np.full((layout.n_features, layout.bins), NO_EDGE, dtype=np.float32)
    tab[:, :-1] = layout.edges(v)
    return tab


def bin_rows(X: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of every value: the number of edges ``<= x`` (``(n, d)`` uint8)."""
    X = np.asarray(X, dtype=np.float32)
    out = np.empty(X.shape, dtype=np.uint8)
    for j in range(X.shape[1]):
        out[:, j] = np.searchsorted(edges[j], X[:, j], side="right")
    return out


def tree_leaf_index(
    feat: np.ndarray, thr: np.ndarray, binned: np.ndarray, levels: int
) -> np.ndarray:
    """Position (0-based within its level) of every binned row after ``levels`` levels of one
    tree: at level ``l`` a row sits at breadth-first node ``2^l - 1 + pos``."""
    rows = np.arange(len(binned))
    pos = np.zeros(len(binned), dtype=np.int64)
    for level in range(levels):
        i = (2**level - 1) + pos
        right = binned[rows, feat[i].astype(np.int64)] > thr[i]
        pos = 2 * pos + right
    return pos


def trees_done(layout: TreeLayout, v: np.ndarray) -> int:
    """Trees whose leaves are set: the sketch round, then ``depth`` rounds per tree."""
    return min(layout.trees, max(int(v[0]) - 1, 0) // layout.depth)


def ensemble_margin(
    layout: TreeLayout,
    v: np.ndarray,
    binned: np.ndarray,
    upto: int,
    trees: range | None = None,
) -> np.ndarray:
    """Sum of the leaf values of trees ``trees`` (default: the first ``upto``) for binned rows
    (float64); the trees are walked together, one level at a time."""
    n = len(binned)
    trees = range(upto) if trees is None else trees
    if len(trees) == 0 or n == 0:
        return np.zeros(n, dtype=np.float64)
    block = layout.trees_block(v, upto).reshape(upto, layout.tree_size)[trees.start : trees.stop]
    upto = len(trees)
    feat = block[:, : layout.internal].astype(np.int64)
    thr = block[:, layout.internal : 2 * layout.internal]
    leaf = block[:, 2 * layout.internal :].astype(np.float64)
    t = np.arange(upto)[None, :]
    rows = np.arange(n)[:, None]
    pos = np.zeros((n, upto), dtype=np.int64)
    for level in range(layout.depth):
        i = (2**level - 1) + pos
        pos = 2 * pos + (binned[rows, feat[t, i]] > thr[t, i])
    return leaf[t, pos].sum(axis=1)


def _fingerprint(*arrays: np.ndarray) -> bytes:
    h = hashlib.sha1()
    for a in arrays:
        h.update(str(a.shape).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.digest()


class GradientBoostedTrees(RegressionModel):
    """Gradient-boosted regression trees; trained only by the ``fedgbdt`` algorithm.

    It is an ``nn.Module`` so that archives, flat-vector exchange and hashing are shared with
    the neural models; it has no differentiable parameters and no representation ``u(x)``.
    """

    def __init__(self, n_features: int, trees: int = 300, depth: int = 5, bins: int = 32):
        super().__init__()
        self.layout = TreeLayout(n_features, trees, depth, bins)
        init = torch.from_numpy(self.layout.initial())
        self.ensemble = nn.Parameter(init, requires_grad=False)
        # Caches keyed by content fingerprints (never by object identity), so a stale entry
        # can only be a miss: the binned rows of the last table seen, and the margin of the
        # first k trees on it.
        self._bins: tuple[bytes, np.ndarray] | None = None
        self._margin: tuple[bytes, int, bytes, np.ndarray] | None = None

    def binned(self, X: np.ndarray, edges: np.ndarray) -> np.ndarray:
        """:func:`bin_rows` of ``X``, cached for the last ``(X, edges)`` seen."""
        key = _fingerprint(X, edges)
        if self._bins is None or self._bins[0] != key:
            self._bins = (key, bin_rows(X, edges))
        return self._bins[1]

    def margin(self, v: np.ndarray, X: np.ndarray, upto: int) -> np.ndarray:
        """Base score plus the first ``upto`` trees of ``v`` on ``X`` (float64), updated
        incrementally while the trees already summed are unchanged."""
        layout = TreeLayout.of(v)
        binned = self.binned(X, layout.edges(v))
        key = self._bins[0] if self._bins is not None else b""
        c = self._margin
        if (
            c is not None
            and c[0] == key
            and c[1] <= upto
            and c[2] == _fingerprint(v[:HEADER], layout.trees_block(v, c[1]))
        ):
            extra = range(c[1], upto)
            m = c[3] + ensemble_margin(layout, v, binned, upto, extra)
        else:
            m = float(v[5]) + ensemble_margin(layout, v, binned, upto)
        fp = _fingerprint(v[:HEADER], layout.trees_block(v, upto))
        self._margin = (key, upto, fp, m)
        return m

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        raise TypeError("gbdt has no representation u(x); it is trained by algorithm 'fedgbdt'")

    def flat(self) -> np.ndarray:
        return self.ensemble.detach().numpy()

    def predict(self, X: np.ndarray, batch_size: int = 4096) -> np.ndarray:
        """Standardised predictions (float64) for standardised float32 features."""
        v = self.flat()
        return self.margin(v, X, trees_done(self.layout, v)).copy()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.predict(x.detach().numpy()).astype(np.float32))
