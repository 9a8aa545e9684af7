"""Federated gradient-boosted trees by histogram aggregation (algorithm ``fedgbdt``).

How a tree ensemble maps onto the one round protocol (no second round loop): the global model
is the flat ensemble vector of :mod:`matswarm.models.trees`; an update is a flat float32
*histogram* (kind ``"histogram"``), signed, encrypted, committed and re-aggregated by every org
like any model delta; the server step is a deterministic function of the aggregate, so every
org derives bit-identical model bytes and the ledger's vote on the global hash works unchanged.

* **Round 1, quantile sketch.** Each org sends, per feature, the fraction of its rows in each
  cell of a fixed fine grid (1024 cells, asinh-spaced in standardised units: ~0.01 std wide
  near the mean) plus its mean target. The sample-weighted mean of these is exactly the pooled
  grid histogram, a mergeable quantile sketch; the server step places ``bins - 1`` edges at the
  pooled ``k / bins`` quantiles (grid boundaries, duplicates dropped) and sets the base score to
  the pooled mean target.
* **Rounds 2.., one per tree level** (``1 + trees * depth`` rounds in all). Each org bins its
  rows with the agreed edges, computes squared-loss gradients ``g = F(x) - y`` (hessian 1) of the
  current ensemble, routes rows through the levels of the tree being grown, and sends per node,
  feature and bin the sums of ``g`` and of ``h`` divided by its row count. The mean rule turns
  these into pooled per-sample means; the server step picks each node's best split by the
  second-order gain ``G_L^2/(H_L+l2) + G_R^2/(H_R+l2) - G^2/(H+l2)`` (Chen & Guestrin 2016);
  at the last level it also sets the leaves ``-lr * G/(H+l2)``.

Units: histograms are per-sample means, so ``l2`` and ``min_child`` are fractions of the pooled
row count (``l2 = 3e-4`` on 3694 rows is XGBoost's ``lambda`` of about 1). Dropped updates keep
the scale right (the mean of the accepted orgs). No row, gradient or prediction of a single row
leaves an org; the histograms do reveal per-bin gradient sums (as in SecureBoost/FedTree
without their encryption of the sums).

Why split finding is written here: XGBoost, LightGBM and scikit-learn's HistGradientBoosting
all build their histograms from rows inside the library and expose no entry point that takes
externally aggregated gradient/hessian histograms and returns the split (XGBoost's federated
mode needs its own gRPC collective and plugin, not a signed-update protocol). What is written
here is the standard histogram split search (cumulative sums over bins, vectorised in numpy),
about forty lines; the quantile sketch is a fixed-grid histogram for the same reason.

Aggregation rules: only ``mean``. A split needs the pooled gradient sums; a robust rule
(median, trimmed mean, Krum, ...) replaces them with a statistic of whole per-org histograms,
which on non-IID orgs is not the pooled histogram and voids the gain and leaf formulas, so it
is refused with an error saying so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from matswarm.algorithms.base import FederatedAlgorithm, LocalResult, RingMessage
from matswarm.data.federated import StandardizedOrg
from matswarm.models.trees import (
    NO_EDGE,
    GradientBoostedTrees,
    TreeLayout,
    tree_leaf_index,
)

GRID_CELLS = 1024
#: Interior boundaries of the sketch grid (standardised units): sinh-spaced over +-100 std.
GRID = np.sinh(np.linspace(-np.arcsinh(100.0), np.arcsinh(100.0), GRID_CELLS - 1)).astype(
    np.float32
)
DEFAULT_TREE_LR = 0.1


class FedGBDT(FederatedAlgorithm):
    """Histogram-aggregated gradient boosting; ``lr`` is the shrinkage of every tree.

    ``rounds`` must be ``1 + trees * depth`` of the ``gbdt`` model; ``local_steps`` and
    ``batch_size`` are unused (a histogram covers all of an org's rows).
    """

    name = "fedgbdt"
    _citations = (
        "Chen and Guestrin, XGBoost: A Scalable Tree Boosting System, KDD 2016 "
        "(second-order gain, quantile sketch)",
        "Ke et al., LightGBM: A Highly Efficient Gradient Boosting Decision Tree, NeurIPS 2017 "
        "(histogram split finding)",
        "Cheng et al., SecureBoost: A Lossless Federated Learning Framework, IEEE IS 2021",
        "Li et al., FedTree: A Federated Learning System for Trees, MLSys 2023 "
        "(horizontal histogram aggregation)",
    )

    def __init__(
        self,
        *,
        lr: float = DEFAULT_TREE_LR,
        l2: float = 3e-4,
        min_child: float = 1e-3,
        min_gain: float = 0.0,
        **kw: Any,
    ):
        super().__init__(lr=lr, **kw)
        self.l2 = l2
        self.min_child = min_child
        self.min_gain = min_gain

    def validate(self) -> None:
        super().validate()
        if not 0 < self.lr <= 1:
            raise ValueError(f"{self.name}: lr (shrinkage) must be in (0, 1], got {self.lr!r}")
        for key in ("l2", "min_child", "min_gain"):
            v = getattr(self, key)
            if not (isinstance(v, int | float) and v >= 0):
                raise ValueError(f"{self.name}: {key} must be >= 0, got {v!r}")

    def check_model(self, model: Any, rule: Any) -> None:
        if getattr(model, "name", None) != "gbdt":
            raise ValueError(
                f"{self.name} trains the tree model only: set [model] name = 'gbdt' "
                f"(got {getattr(model, 'name', model)!r})"
            )
        need = 1 + model.trees * model.depth
        if self.rounds != need:
            raise ValueError(
                f"{self.name}: rounds must be 1 + trees * depth = {need} for gbdt with "
                f"trees={model.trees}, depth={model.depth} (one sketch round, then one round "
                f"per tree level), got {self.rounds}"
            )
        check_rule(rule)

    def make_optimizer(self, model):  # no gradient steps: nothing to optimise
        return None

    # -- client side ----------------------------------------------------------------------------
    def local_train(
        self,
        model,
        data: StandardizedOrg,
        start_params: np.ndarray,
        rng: np.random.Generator,
        ring_in: RingMessage | None = None,
        optimizer=None,
        round_: int = 1,
    ) -> LocalResult:
        if not isinstance(model, GradientBoostedTrees):
            raise TypeError(f"{self.name} needs the gbdt model, got {type(model).__name__}")
        if data.task != "regression":
            # The histograms hold squared-error gradients and hessians; a logistic loss would
            # need its own (and a sigmoid in the exported graph): refuse rather than regress 0/1.
            raise ValueError(
                f"{self.name} trains regression tasks only; for [data] task = {data.task!r} "
                "use a neural model (mlp, lasso, rnn, lstm)"
            )
        v = np.asarray(start_params, dtype=np.float32)
        layout = TreeLayout.of(v)
        done = int(v[0])
        if done >= layout.rounds:
            raise ValueError(f"the gbdt model is complete after {layout.rounds} rounds")
        if done == 0:
            update, loss = local_sketch(data), float(np.mean(np.square(data.y, dtype=np.float64)))
        else:
            update, loss = local_histogram(layout, v, data, model)
        return LocalResult(data.name, v.copy(), data.n, loss, histogram=update)

    # -- server side ----------------------------------------------------------------------------
    def server_step(self, global_params, aggregated_delta, state):
        v = np.array(global_params, dtype=np.float32)
        layout = TreeLayout.of(v)
        done = int(v[0])
        agg = np.asarray(aggregated_delta, dtype=np.float64)
        if done == 0:
            agree_edges(layout, v, agg)
        else:
            t, level = divmod(done - 1, layout.depth)
            grow_level(layout, v, agg, t, level, self)
        v[0] = done + 1
        return v


def check_rule(rule: Any) -> None:
    """Refuse aggregation rules other than the sample-weighted mean (see the module docstring)."""
    if getattr(rule, "name", None) != "mean":
        raise ValueError(
            f"fedgbdt needs aggregation rule 'mean', got {getattr(rule, 'name', rule)!r}: a "
            "histogram round needs the pooled gradient sums, and a robust rule replaces them "
            "with a statistic of whole per-org histograms (not the pooled histogram on non-IID "
            "orgs), which voids the split gains and leaf values"
        )


def local_sketch(data: StandardizedOrg) -> np.ndarray:
    """``[mean y, per-feature grid-cell fractions (d * GRID_CELLS)]`` of one org."""
    n, d = data.X.shape
    cells = np.empty((n, d), dtype=np.int64)
    for j in range(d):
        cells[:, j] = np.searchsorted(GRID, data.X[:, j], side="right")
    idx = (np.arange(d)[None, :] * GRID_CELLS + cells).ravel()
    frac = np.bincount(idx, minlength=d * GRID_CELLS) / n
    return np.concatenate([[np.mean(data.y, dtype=np.float64)], frac]).astype(np.float32)


def agree_edges(layout: TreeLayout, v: np.ndarray, agg: np.ndarray) -> None:
    """Bin edges at the pooled quantiles of the merged sketch; base score = pooled mean y."""
    d, nb = layout.n_features, layout.bins
    frac = agg[1:].reshape(d, GRID_CELLS)
    cum = np.cumsum(frac, axis=1)
    total = cum[:, -1:]
    targets = total * (np.arange(1, nb) / nb)[None, :]
    edges = np.full((d, nb - 1), NO_EDGE, dtype=np.float32)
    for j in range(d):
        # Grid cell holding each quantile; the edge is the boundary after it (none after the
        # last cell), and a boundary with no row to its right splits nothing.
        # A quantile that falls exactly on a cell boundary (k/bins of the rows) must not move
        # with float32 rounding of per-org fractions: 1e-6 of slack (less than one row below
        # a million rows) makes the federated edges those of the pooled data.
        cell = np.searchsorted(cum[j], targets[j] - 1e-6 * total[j, 0], side="left")
        cell = cell[cell < GRID_CELLS - 1]
        keep = np.unique(cell[cum[j][cell] < total[j, 0] * (1 - 1e-9)])
        edges[j, : len(keep)] = GRID[keep]
    layout.edges(v)[:] = edges
    v[5] = np.float32(agg[0])


def local_histogram(
    layout: TreeLayout, v: np.ndarray, data: StandardizedOrg, model: GradientBoostedTrees
) -> tuple[np.ndarray, float]:
    """Per-sample-mean gradient and hessian sums per (node, feature, bin) of the level being
    grown, and the org's current training MSE (standardised units)."""
    t, level = divmod(int(v[0]) - 1, layout.depth)
    d, nb = layout.n_features, layout.bins
    pred = model.margin(v, data.X, t)  # base score + finished trees (cached incrementally)
    binned = model.binned(data.X, layout.edges(v))
    g = pred - data.y.astype(np.float64)
    feat, thr, _ = layout.tree(v, t)
    pos = tree_leaf_index(feat, thr, binned, level)  # each row's node at this level
    nodes = 2**level
    idx = ((pos[:, None] * d + np.arange(d)[None, :]) * nb + binned).ravel()
    size = nodes * d * nb
    G = np.bincount(idx, weights=np.repeat(g, d), minlength=size)
    H = np.bincount(idx, minlength=size).astype(np.float64)
    n = len(g)
    return np.concatenate([G, H]).astype(np.float32) / np.float32(n), float(np.mean(g * g))


def grow_level(
    layout: TreeLayout, v: np.ndarray, agg: np.ndarray, t: int, level: int, algo: FedGBDT
) -> None:
    """Choose the splits of tree ``t``'s nodes at ``level`` from the pooled histograms (and the
    leaves under them when ``level`` is the last)."""
    d, nb = layout.n_features, layout.bins
    nodes = 2**level
    size = nodes * d * nb
    if agg.shape != (2 * size,):
        raise ValueError(f"histogram has {agg.shape[0]} values, level {level} needs {2 * size}")
    G = agg[:size].reshape(nodes, d, nb)
    H = agg[size:].reshape(nodes, d, nb)
    GL, HL = np.cumsum(G, axis=2)[:, :, :-1], np.cumsum(H, axis=2)[:, :, :-1]
    Gt, Ht = G.sum(axis=2, keepdims=True), H.sum(axis=2, keepdims=True)
    GR, HR = Gt - GL, Ht - HL
    lam = algo.l2
    parent = np.square(Gt) / (Ht + lam)
    gain = np.square(GL) / (HL + lam) + np.square(GR) / (HR + lam) - parent
    valid = (algo.min_child <= HL) & (algo.min_child <= HR) & (HL > 0) & (HR > 0)
    gain = np.where(valid, gain, -np.inf).reshape(nodes, -1)
    best = np.argmax(gain, axis=1)  # first maximum: ties go to the lower feature, then bin
    feat, thr, leaf = layout.tree(v, t)
    last = level == layout.depth - 1
    for p in range(nodes):
        node = (2**level - 1) + p
        j, b = divmod(int(best[p]), nb - 1)
        if gain[p, best[p]] > algo.min_gain:
            feat[node], thr[node] = j, b
            left = (GL[p, j, b], HL[p, j, b])
            right = (GR[p, j, b], HR[p, j, b])
        else:
            feat[node], thr[node] = 0, nb - 1
            left, right = (Gt[p, 0, 0], Ht[p, 0, 0]), (0.0, 0.0)
        if last:
            leaf[2 * p] = _leaf(left, lam, algo.lr)
            leaf[2 * p + 1] = _leaf(right, lam, algo.lr)


def _leaf(gh: tuple[float, float], lam: float, lr: float) -> np.float32:
    g, h = gh
    return np.float32(0.0 if h <= 0 else -lr * g / (h + lam))


def tree_baseline_fit(
    baseline_name: str,
    orgs: Sequence[StandardizedOrg],
    model_spec: Any,
    params: dict[str, Any],
    seed: int,
) -> dict[str, np.ndarray]:
    """Solo and Joint for the tree model: the same :class:`FedGBDT` rounds on one participant
    (each org alone, or all rows pooled), through the same round engine."""
    from matswarm.aggregation import make_rule
    from matswarm.protocol import Aggregator, OrgNode, RoundEngine

    algo = FedGBDT(**{k: params[k] for k in ("rounds", "lr", "local_steps", "batch_size")})
    algo.validate()
    rule = make_rule("mean")
    algo.check_model(model_spec, rule)
    if baseline_name == "joint":
        groups = {
            "joint": StandardizedOrg(
                "joint", np.concatenate([o.X for o in orgs]), np.concatenate([o.y for o in orgs])
            )
        }
    else:
        groups = {o.name: o for o in orgs}
    out = {}
    for name, data in groups.items():
        d = data.X.shape[1]
        initial = model_spec.build(d, seed).get_flat()
        node = OrgNode(data, model_spec.build(d, seed), algo, seed, 0)
        engine = RoundEngine(
            f"{baseline_name}-{name}",
            algo,
            Aggregator(algo, rule, [name], initial),
            [node],
            initial,
        )
        out[name] = engine.run().global_params
    return out
