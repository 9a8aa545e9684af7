"""Heterogeneous feature spaces: the FedMDH split, the feature-partition generator, masked
federated scaling and the heterogeneity metrics."""

import numpy as np
import pytest

from matswarm.data import SplitSpec, partition
from matswarm.data.federated import FederatedDataset, OrgTable
from matswarm.data.heterogeneous import (
    feature_partition,
    fedmdh_split,
    heterogeneity,
    jaccard,
    jensen_shannon,
    restrict,
    shared_columns,
    wasserstein_1d,
)
from matswarm.data.schema import TaskSchema


def test_fedmdh_split_reproduces_the_repository_setting(perovskite):
    ds = fedmdh_split(perovskite)
    assert [o.n for o in ds.orgs] == [1231, 891, 1066]
    assert [int(o.feature_mask.sum()) for o in ds.orgs] == [144, 145, 142]
    assert ds.schema.n_features == 146 and "b" not in ds.schema.features
    assert len(shared_columns(ds)) == 140
    # FedMDH's README: label (mean, variance) per training set.
    for org, (mean, var) in zip(
        ds.orgs, [(-2.81, 0.128), (-2.03, 0.027), (-0.91, 0.138)], strict=True
    ):
        assert org.y.mean() == pytest.approx(mean, abs=0.005)
        assert org.y.var() == pytest.approx(var, abs=0.0015)
    assert ds.test.n == 322 and ds.missing == "nan"
    # Deterministic: the same derivation twice gives the same rows.
    again = fedmdh_split(perovskite)
    assert all(np.array_equal(a.X, b.X) for a, b in zip(ds.orgs, again.orgs, strict=True))


def test_missing_columns_are_nan_and_never_imputed(perovskite):
    ds = fedmdh_split(perovskite)
    for org in ds.orgs:
        X = ds.standardized(org).X
        assert np.isnan(X[:, ~org.feature_mask]).all()
        assert np.isfinite(X[:, org.feature_mask]).all()
    assert np.isfinite(ds.standardized_test().X).all()
    zero = ds.with_missing("zero").standardized(ds.orgs[2]).X
    assert (zero[:, ~ds.orgs[2].feature_mask] == 0).all()


def test_scaling_uses_only_the_orgs_that_hold_a_column():
    schema = TaskSchema(target="y", features=("a", "b"))
    rng = np.random.default_rng(0)
    x1 = np.column_stack([rng.normal(5, 2, 50), rng.normal(-3, 1, 50)])
    x2 = np.column_stack([rng.normal(5, 2, 40), np.full(40, 1e9)])  # org2 lacks "b": placeholder
    o1 = OrgTable("org1", x1, rng.normal(size=50), "o1")
    o2 = OrgTable("org2", x2, rng.normal(size=40), "o2", feature_mask=np.array([True, False]))
    ds = FederatedDataset(schema, [o1, o2], missing="nan")
    assert ds.standardizer.x_mean[1] == pytest.approx(x1[:, 1].mean())
    assert ds.standardizer.x_scale[1] == pytest.approx(x1[:, 1].std())
    assert ds.standardizer.x_mean[0] == pytest.approx(np.concatenate([x1, x2])[:, 0].mean())
    # Joint / validation pools keep per-cell masks.
    pooled = ds.pooled()
    assert pooled.feature_mask.shape == (90, 2) and not pooled.feature_mask[50:, 1].any()
    assert np.isnan(ds.standardized(pooled).X[50:, 1]).all()


def test_feature_partition_generator_and_split(perovskite):
    masks = feature_partition(147, 3, overlap=0.4, seed=1)
    every = np.logical_and.reduce(masks)
    assert every.sum() == round(0.4 * 147)
    counts = np.sum(masks, axis=0)
    assert set(counts[~every]) == {1}  # every other column is held by exactly one org
    assert all(
        np.array_equal(a, b) for a, b in zip(masks, feature_partition(147, 3, 0.4, 1), strict=True)
    )
    with pytest.raises(ValueError, match="overlap"):
        feature_partition(10, 2, 1.5)
    ds = partition(perovskite, SplitSpec("feature-partition", orgs=3, overlap=0.4, seed=1))
    assert [o.n for o in ds.orgs] == [1232, 1231, 1231]
    assert len(shared_columns(ds)) == round(0.4 * 147)
    with pytest.raises(ValueError, match="overlap"):
        SplitSpec("feature-partition", overlap=-0.1)


def test_restrict_to_shared_columns(perovskite):
    ds = fedmdh_split(perovskite)
    sh = restrict(ds, shared_columns(ds))
    assert sh.schema.n_features == 140 and all(o.feature_mask is None for o in sh.orgs)
    assert np.isfinite(sh.standardized(sh.orgs[0]).X).all()


def test_heterogeneity_metrics(perovskite):
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, 300), rng.normal(1.5, 0.5, 200)
    assert wasserstein_1d(a, a) == 0.0
    assert jensen_shannon(a, a) == pytest.approx(0.0, abs=1e-12)
    assert 0 < jensen_shannon(a, b) <= 1
    assert jaccard(np.array([1, 1, 0], bool), np.array([1, 0, 1], bool)) == pytest.approx(1 / 3)
    stats = pytest.importorskip("scipy.stats")
    distance = pytest.importorskip("scipy.spatial.distance")
    assert wasserstein_1d(a, b) == pytest.approx(stats.wasserstein_distance(a, b))
    edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 21)
    p, q = np.histogram(a, edges)[0], np.histogram(b, edges)[0]
    assert jensen_shannon(a, b) == pytest.approx(distance.jensenshannon(p, q, base=2))
    het = heterogeneity(fedmdh_split(perovskite))
    assert het.sample_ratio == pytest.approx(1231 / 891)
    assert het.columns == {"org1": 144, "org2": 145, "org3": 142}
    assert len(het.pairs) == 3 and all(p["wasserstein"] > 0.5 for p in het.pairs)


def test_files_with_different_columns_build_a_union_schema(tmp_path):
    from matswarm.data import build_dataset
    from matswarm.data.errors import DataError

    rng = np.random.default_rng(0)
    import pandas as pd

    t1 = pd.DataFrame(
        {"a": rng.normal(size=30), "b": rng.normal(size=30), "y": rng.normal(size=30)}
    )
    t2 = pd.DataFrame(
        {"a": rng.normal(size=20), "c": rng.normal(size=20), "y": rng.normal(size=20)}
    )
    test = pd.DataFrame({k: rng.normal(size=10) for k in ("a", "b", "c", "y")})
    tables = {"org1": (t1, "o1.csv"), "org2": (t2, "o2.csv")}
    with pytest.raises(DataError, match="schemas disagree"):
        build_dataset(tables, "y", test=(test, "t.csv"))
    ds = build_dataset(tables, "y", test=(test, "t.csv"), heterogeneous=True)
    assert ds.schema.features == ("a", "b", "c")
    assert ds.schema.org_features == {"org1": ("a", "b"), "org2": ("a", "c")}
    assert ds.schema.missing_for("org2") == ("b",)
    assert list(ds.orgs[1].feature_mask) == [True, False, True]
    assert np.isnan(ds.with_missing("nan").standardized(ds.orgs[1]).X[:, 1]).all()
    # The schema round-trips (a task spec carries it) and re-encodes the same way (task join).
    again = TaskSchema.from_dict(ds.schema.to_dict())
    X, _, mask = again.encode_org(t2, "o2.csv", "org2")
    assert np.array_equal(mask, ds.orgs[1].feature_mask) and np.array_equal(X, ds.orgs[1].X)
    with pytest.raises(DataError, match="'c'"):
        again.encode_org(t2.drop(columns=["c"]), "o2.csv", "org2")
    # A schema without declarations keeps its digest (and its old JSON form).
    plain = TaskSchema("y", ("a", "b"))
    assert "org_features" not in plain.to_dict()
