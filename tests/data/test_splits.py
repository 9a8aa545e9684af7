import itertools

import numpy as np
import pytest

from matswarm.data import DataError, OrgTable, SplitSpec, partition
from matswarm.data.splits import (
    feature_subsets,
    split_dirichlet,
    split_iid,
    split_label_quantiles,
    split_quantity,
)


def _tagged(ds):
    """The pooled table with the row number as feature 0 (the data has duplicate rows)."""
    pool = ds.pooled()
    X = pool.X.copy()
    X[:, 0] = np.arange(pool.n)
    return OrgTable("pool", X, pool.y, pool.source)


def _check_partition(pool, orgs):
    ids = np.concatenate([o.X[:, 0] for o in orgs])
    assert len(ids) == pool.n and len(np.unique(ids)) == pool.n
    assert all(o.n > 0 for o in orgs)


@pytest.mark.parametrize("k", [2, 3, 7, 50])
def test_iid_and_quantile_cover_all_rows(perovskite, k):
    pool = _tagged(perovskite)
    for orgs in (split_iid(pool, k, seed=1), split_label_quantiles(pool, k)):
        assert len(orgs) == k
        _check_partition(pool, orgs)


def test_label_quantile_ranges_are_disjoint_and_ordered(perovskite):
    orgs = split_label_quantiles(perovskite.pooled(), 5)
    for a, b in itertools.pairwise(orgs):
        assert a.y.max() <= b.y.min()


def test_dirichlet_skews_labels_more_for_small_alpha(perovskite):
    pool = _tagged(perovskite)

    def spread(alpha):
        orgs = split_dirichlet(pool, 4, alpha, seed=3)
        _check_partition(pool, orgs)
        return np.std([o.y.mean() for o in orgs])

    assert spread(0.1) > spread(100.0)


def test_quantity_ratios(perovskite):
    pool = _tagged(perovskite)
    orgs = split_quantity(pool, [1, 10, 15], seed=0)
    _check_partition(pool, orgs)
    sizes = np.array([o.n for o in orgs])
    assert np.allclose(sizes / sizes.sum(), np.array([1, 10, 15]) / 26, atol=1e-3)


def test_k_out_of_range_is_an_error(perovskite):
    with pytest.raises(ValueError, match="between 2 and 50"):
        split_iid(perovskite.pooled(), 51)
    with pytest.raises(ValueError, match="between 2 and 50"):
        split_iid(perovskite.pooled(), 1)


def test_too_few_rows():
    tiny = OrgTable("p", np.zeros((2, 3)), np.zeros(2), "tiny.csv")
    with pytest.raises(DataError, match="cannot split 2 rows into 3"):
        split_iid(tiny, 3)


def test_feature_subsets_and_partition(perovskite):
    masks = feature_subsets(147, 3, 0.3, seed=0)
    assert all(m.sum() == round(0.3 * 147) for m in masks)
    ds = partition(perovskite, SplitSpec("iid", orgs=3, feature_fraction=0.3, seed=2))
    std = ds.standardized(ds.orgs[0])
    assert np.all(std.X[:, ~ds.orgs[0].feature_mask] == 0)


def test_paper_split_checks_k(perovskite):
    assert partition(perovskite, SplitSpec("paper", orgs=3)).orgs == perovskite.orgs
    with pytest.raises(ValueError, match="paper"):
        partition(perovskite, SplitSpec("paper", orgs=4))
    with pytest.raises(ValueError, match="split must be one of"):
        SplitSpec("random")
