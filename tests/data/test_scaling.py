import numpy as np

from matswarm.data import MomentStats, Standardizer


def test_federated_statistics_equal_pooled_statistics():
    rng = np.random.default_rng(0)
    parts = [rng.normal(loc=i, scale=i + 1, size=(50 + 10 * i, 4)) for i in range(3)]
    ys = [rng.normal(size=len(p)) for p in parts]
    fed = Standardizer.federated(zip(parts, ys, strict=True))
    pooled = np.concatenate(parts)
    assert np.allclose(fed.x_mean, pooled.mean(0), atol=1e-12)
    assert np.allclose(fed.x_scale, pooled.std(0), rtol=1e-10)
    assert np.isclose(fed.y_mean, np.concatenate(ys).mean())


def test_constant_column_scales_to_zero_not_nan():
    x = np.column_stack([np.ones(10), np.arange(10.0)])
    st = MomentStats.of(x)
    assert st.std[0] == 1.0
    s = Standardizer.from_stats(st, MomentStats.of(np.arange(10.0)))
    assert np.all(np.isfinite(s.transform_x(x))) and np.all(s.transform_x(x)[:, 0] == 0)


def test_inverse_returns_target_units(perovskite):
    s = perovskite.standardizer
    y = perovskite.orgs[0].y
    assert np.allclose(s.inverse_y(s.transform_y(y)), y, atol=1e-5)
