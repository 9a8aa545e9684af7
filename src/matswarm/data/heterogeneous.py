"""Heterogeneous feature spaces: organisations that measured different columns (FedMDH setting).

* :func:`feature_partition`: the experiment generator behind ``[split] kind =
  "feature-partition"``. A fraction ``overlap`` of the columns is held by every organisation;
  the rest are dealt out, each to exactly one organisation (seeded).
* :func:`fedmdh_split`: the FedMDH repository's perovskite setting, derived deterministically
  from the MatSwarm perovskite files (see :data:`FEDMDH_DERIVATION`).
* :func:`restrict`: the same orgs on a subset of the columns (FedAvg on the shared columns).
* :func:`heterogeneity`: the per-run report: label-distribution distances between orgs'
  targets (1-D Wasserstein-1 and Jensen-Shannon), feature overlap (Jaccard), sample-count ratio.

The distances are a few lines of numpy (W1 between two empirical 1-D distributions is the L1
distance between their CDFs; JS on a shared histogram); we do not add scipy as a dependency
for them, and the tests check them against ``scipy.stats`` where it is installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from matswarm.data.errors import DataError
from matswarm.data.federated import FederatedDataset, OrgTable
from matswarm.data.schema import TaskSchema

# -- the FedMDH perovskite split ----------------------------------------------------------------
#: Non-Magpie descriptors each FedMDH org holds, in our column names (FedMDH's ``mu_b``,
#: ``gap pbe`` and ``e_form oxygen`` are our ``mub``, ``bandgap`` and ``eform oxygen``). Read from
#: the headers of SICC-Group/FedMDH ``apps/fl/FedMDH/data/Material/train/train_part{0,1,2}.csv``.
FEDMDH_DESCRIPTORS: dict[str, tuple[str, ...]] = {
    "org1": ("mub", "vpa", "bandgap", "a", "alpha", "beta", "gamma", "eform oxygen"),
    "org2": ("e_hull", "mub", "vpa", "bandgap", "a", "c", "alpha", "gamma", "eform oxygen"),
    "org3": ("e_hull", "mub", "bandgap", "a", "alpha", "beta"),
}
#: Rows of each FedMDH org: the first N rows of our ``train_part{0,1,2}`` in ascending ``e_form``.
FEDMDH_ROWS = {"org1": 1231, "org2": 891, "org3": 1066}
#: Every other numeric column (132 Magpie statistics + 4 oxidation-state statistics) is held by
#: all three orgs, which gives 144 / 145 / 142 columns.
ALL_NON_MAGPIE = ("a", "b", "c", "alpha", "beta", "gamma", "bandgap", "vpa", "mub",
                  "eform oxygen", "e_hull")  # fmt: skip

FEDMDH_DERIVATION = """\
FedMDH split (derived from the MatSwarm perovskite CSVs; no file of the FedMDH repository is read):
  rows:    org1 = train_part0 (all 1231 rows); org2 = the 891 lowest-e_form rows of train_part1;
           org3 = the 1066 lowest-e_form rows of train_part2 (stable sort; the CSVs are already
           in ascending e_form). This reproduces FedMDH's README label statistics exactly:
           mean/variance -2.81/0.128, -2.03/0.027, -0.91/0.138 (ours: -2.812/0.1278,
           -2.029/0.0265, -0.912/0.1380).
  columns: the 136 Magpie + oxidation-state columns for every org, plus the descriptors in
           FedMDH's headers (org1: mub vpa bandgap a alpha beta gamma 'eform oxygen';
           org2: e_hull mub vpa bandgap a c alpha gamma 'eform oxygen'; org3: e_hull mub bandgap
           a alpha beta) = 144 / 145 / 142 columns. Union 146 (no org holds 'b', so it is
           dropped); intersection 140 ('shared columns').
  test:    the 322-row test_dataset.csv with the union's 146 columns."""


def fedmdh_split(base: FederatedDataset) -> FederatedDataset:
    """The FedMDH setting from the perovskite paper split (``perovskite.load``): see
    :data:`FEDMDH_DERIVATION`. The dataset's schema is the union of the orgs' columns and
    missing columns are NaN for mask-aware models."""
    if len(base.orgs) != 3:
        raise DataError(f"the FedMDH split needs the 3 perovskite files, got {len(base.orgs)} orgs")
    features = base.schema.features
    missing = [c for c in ALL_NON_MAGPIE if c not in features]
    if missing:
        raise DataError(f"the FedMDH split needs columns {missing}, not in the schema")
    other = set(ALL_NON_MAGPIE)
    orgs = []
    for org, name in zip(base.orgs, FEDMDH_ROWS, strict=True):
        n = FEDMDH_ROWS[name]
        if org.n < n:
            raise DataError(f"{name} needs {n} rows, the file has {org.n}", source=org.source)
        rows = np.argsort(org.y, kind="stable")[:n]
        held = {c for c in features if c not in other} | set(FEDMDH_DESCRIPTORS[name])
        mask = np.array([c in held for c in features])
        orgs.append(replace(org.subset(rows), name=name, feature_mask=mask))
    ds = FederatedDataset(base.schema, orgs, base.test, "perovskite (FedMDH split)", "nan")
    return restrict(ds, [f for f, h in zip(features, ds.held, strict=True) if h])


# -- the feature-partition generator ----------------------------------------------------------
def feature_partition(n_features: int, k: int, overlap: float, seed: int = 0) -> list[np.ndarray]:
    """Boolean column masks for ``k`` orgs: ``round(overlap * n_features)`` random columns are
    held by every org, each remaining column by exactly one org (dealt round-robin after a
    seeded shuffle). ``overlap = 1`` is a homogeneous feature space."""
    if not 0.0 <= overlap <= 1.0:
        raise ValueError(f"overlap must be in [0, 1], got {overlap}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_features)
    n_shared = round(overlap * n_features)
    masks = [np.zeros(n_features, dtype=bool) for _ in range(k)]
    for m in masks:
        m[perm[:n_shared]] = True
    for i, col in enumerate(perm[n_shared:]):
        masks[i % k][col] = True
    for i, m in enumerate(masks):
        if not m.any():
            raise DataError(
                f"feature partition left org{i + 1} with no column; raise overlap or use "
                "fewer organisations"
            )
    return masks


def restrict(ds: FederatedDataset, features: Sequence[str]) -> FederatedDataset:
    """The same organisations and test rows on a subset of the schema's columns (in the
    schema's order); masks are cut to match, and dropped when every org then holds every
    column."""
    idx = [ds.schema.features.index(f) for f in features]
    if not idx:
        raise DataError("restricting the task to no column")
    if any(c.partition("=")[0] in ds.schema.categories for c in features):
        raise DataError("restrict() works on numeric columns only")
    schema = TaskSchema(
        target=ds.schema.target,
        features=tuple(features),
        unit=ds.schema.unit,
        identifiers=ds.schema.identifiers,
        categories={},
    )

    def cut(o: OrgTable) -> OrgTable:
        mask = o.feature_mask
        if mask is not None:
            mask = mask[..., idx]
            if mask.all():
                mask = None
        return replace(o, X=o.X[:, idx], feature_mask=mask)

    test = cut(ds.test) if ds.test is not None else None
    return FederatedDataset(schema, [cut(o) for o in ds.orgs], test, ds.description, ds.missing)


def declare_org_features(
    schema: TaskSchema, org_tables: Sequence[str], participants: Sequence[str]
) -> TaskSchema:
    """``schema`` with per-org feature sets from ``ORG=TABLE`` pairs: each org holds the
    schema's features its table (or header-only CSV) has. Errors name the pair at fault."""
    from matswarm.data.tables import read_table

    declared: dict[str, tuple[str, ...]] = {}
    for pair in org_tables:
        org, sep, path = pair.partition("=")
        if not sep or not org or not path:
            raise DataError(f"--org-columns wants ORG=TABLE, got {pair!r}")
        if org not in participants:
            raise DataError(f"--org-columns names {org!r}, not a participant {list(participants)}")
        columns = set(read_table(path).columns)
        held = tuple(f for f in schema.features if f in columns)
        if not held:
            raise DataError("holds none of the task's features", source=path)
        declared[org] = held
    return replace(schema, org_features=declared)


def shared_columns(ds: FederatedDataset) -> list[str]:
    """The columns every organisation holds."""
    held = np.ones(ds.schema.n_features, dtype=bool)
    for o in ds.orgs:
        held &= o.cell_mask().all(axis=0)
    return [f for f, h in zip(ds.schema.features, held, strict=True) if h]


def columns_of(ds: FederatedDataset, org: OrgTable) -> list[str]:
    held = org.cell_mask().all(axis=0)
    return [f for f, h in zip(ds.schema.features, held, strict=True) if h]


# -- heterogeneity metrics --------------------------------------------------------------------
def wasserstein_1d(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two empirical 1-D distributions (integral of |F_a - F_b|)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    grid = np.concatenate([a, b])
    grid.sort(kind="mergesort")
    widths = np.diff(grid)
    fa = np.searchsorted(a, grid[:-1], side="right") / len(a)
    fb = np.searchsorted(b, grid[:-1], side="right") / len(b)
    return float(np.sum(np.abs(fa - fb) * widths))


def jensen_shannon(a: np.ndarray, b: np.ndarray, bins: int = 20) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) between histograms of ``a`` and ``b`` on
    ``bins`` shared equal-width bins over their joint range."""
    lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
    p = np.histogram(a, edges)[0].astype(float)
    q = np.histogram(b, edges)[0].astype(float)
    p, q = p / p.sum(), q / q.sum()
    m = 0.5 * (p + q)

    def kl(x: np.ndarray) -> float:
        nz = x > 0
        return float(np.sum(x[nz] * np.log2(x[nz] / m[nz])))

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 1.0


@dataclass(frozen=True)
class Heterogeneity:
    """How different the organisations are, per pair and overall."""

    rows: dict[str, int]
    columns: dict[str, int]
    sample_ratio: float  # largest / smallest org
    pairs: list[dict]  # {"orgs", "wasserstein", "jensen_shannon", "jaccard"}

    def as_dict(self) -> dict:
        return {
            "rows": self.rows,
            "columns": self.columns,
            "sample_ratio": self.sample_ratio,
            "pairs": self.pairs,
        }


def heterogeneity(ds: FederatedDataset) -> Heterogeneity:
    """Label distances (in the target's unit), feature overlap and sample-count ratio."""
    rows = {o.name: o.n for o in ds.orgs}
    masks = {o.name: o.cell_mask().all(axis=0) for o in ds.orgs}
    pairs = [
        {
            "orgs": f"{a.name}-{b.name}",
            "wasserstein": wasserstein_1d(a.y, b.y),
            "jensen_shannon": jensen_shannon(a.y, b.y),
            "jaccard": jaccard(masks[a.name], masks[b.name]),
        }
        for a, b in combinations(ds.orgs, 2)
    ]
    return Heterogeneity(
        rows=rows,
        columns={k: int(v.sum()) for k, v in masks.items()},
        sample_ratio=max(rows.values()) / min(rows.values()),
        pairs=pairs,
    )
