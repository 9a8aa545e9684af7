"""Turning a loaded dataset into the task's K organisations by a named split."""

from __future__ import annotations

from dataclasses import dataclass

from matswarm.data.federated import FederatedDataset
from matswarm.data.heterogeneous import feature_partition
from matswarm.data.splits import (
    SPLITS,
    apply_feature_subsets,
    feature_subsets,
    split_dirichlet,
    split_iid,
    split_label_quantiles,
    split_quantity,
)


@dataclass(frozen=True)
class SplitSpec:
    """How to divide training rows among organisations.

    ``kind``: ``paper`` (the dataset's own per-org files), ``iid``, ``label-quantile``,
    ``dirichlet`` (uses ``alpha``) or ``quantity`` (uses ``ratios``; K = len(ratios)).
    ``feature_fraction`` < 1 additionally gives each org a random subset of the features.
    ``feature-partition``: iid rows, and a fraction ``overlap`` of the columns held by every org,
    each other column by exactly one (heterogeneous feature spaces; see
    :mod:`matswarm.data.heterogeneous`).
    """

    kind: str = "paper"
    orgs: int = 3
    alpha: float = 0.5
    ratios: tuple[float, ...] = ()
    feature_fraction: float = 1.0
    seed: int = 0
    overlap: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {self.kind!r}")
        if not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap must be in [0, 1], got {self.overlap}")
        if self.kind == "quantity" and len(self.ratios) < 2:
            raise ValueError(
                "split 'quantity' needs ratios with at least two entries, e.g. [1, 2, 3]"
            )


def partition(dataset: FederatedDataset, spec: SplitSpec) -> FederatedDataset:
    """Re-divide ``dataset``'s training rows among organisations according to ``spec``."""
    if spec.kind == "paper":
        if spec.orgs != len(dataset.orgs):
            raise ValueError(
                f"the 'paper' split has {len(dataset.orgs)} organisations (the dataset's own "
                f"files), but orgs = {spec.orgs}; use label-quantile for any K"
            )
        orgs = list(dataset.orgs)
    else:
        pool = dataset.pooled()
        if spec.kind == "iid":
            orgs = split_iid(pool, spec.orgs, spec.seed)
        elif spec.kind == "label-quantile":
            orgs = split_label_quantiles(pool, spec.orgs)
        elif spec.kind == "feature-partition":
            orgs = split_iid(pool, spec.orgs, spec.seed)
            masks = feature_partition(dataset.schema.n_features, len(orgs), spec.overlap, spec.seed)
            orgs = apply_feature_subsets(orgs, masks)
        elif spec.kind == "dirichlet":
            orgs = split_dirichlet(pool, spec.orgs, spec.alpha, spec.seed)
        else:
            orgs = split_quantity(pool, spec.ratios, spec.seed)
    if spec.feature_fraction < 1.0:
        masks = feature_subsets(
            dataset.schema.n_features, len(orgs), spec.feature_fraction, spec.seed
        )
        orgs = apply_feature_subsets(orgs, masks)
    return dataset.with_orgs(orgs, f"{dataset.description.split(' (')[0]} ({spec.kind} split)")
