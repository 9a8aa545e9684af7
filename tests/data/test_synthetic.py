import numpy as np
import pytest

from matswarm.data import synthetic


def test_shape_and_label_shift():
    ds = synthetic.make_dataset(n_rows=300, n_features=20, n_orgs=3, label_shift=2.0, seed=0)
    assert ds.schema.n_features == 20 and [o.n for o in ds.orgs] == [100, 100, 100]
    means = [o.y.mean() for o in ds.orgs]
    assert means[0] < means[1] < means[2]
    flat = synthetic.make_dataset(n_rows=300, n_features=20, n_orgs=3, label_shift=0.0, seed=0)
    assert np.ptp([o.y.mean() for o in flat.orgs]) < np.ptp(means)


def test_deterministic_and_validated():
    a, _ = synthetic.make_tables(n_rows=50, n_features=5, n_orgs=2, seed=4)
    b, _ = synthetic.make_tables(n_rows=50, n_features=5, n_orgs=2, seed=4)
    assert all(a[k].equals(b[k]) for k in a)
    with pytest.raises(ValueError):
        synthetic.make_tables(n_rows=1, n_orgs=2)
