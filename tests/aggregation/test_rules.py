"""Each rule against its definition on hand-made cases, plus determinism and input checks."""

import numpy as np
import pytest

from matswarm.aggregation import (
    RULES,
    AggregationError,
    centered_clipping,
    coordinate_median,
    geometric_median,
    krum,
    krum_scores,
    make_rule,
    multi_krum,
    trimmed_mean,
    weighted_mean,
)


def f32(rows):
    return np.asarray(rows, dtype=np.float32)


def test_weighted_mean_is_eq4():
    x = f32([[0, 0], [3, 6]])
    assert np.array_equal(weighted_mean(x, np.array([1, 2])), f32([2, 4]))
    assert np.array_equal(weighted_mean(x), f32([1.5, 3]))


def test_median_ignores_one_huge_outlier():
    x = f32([[1, 10], [2, 20], [3, 30], [1e9, -1e9]])
    assert np.array_equal(coordinate_median(x), f32([2.5, 15]))
    assert np.array_equal(coordinate_median(x[:3]), f32([2, 20]))


def test_trimmed_mean_drops_f_each_side_even_with_extreme_values():
    x = f32([[1], [2], [3], [1e30], [-1e30]])
    assert np.array_equal(trimmed_mean(x, f=1), f32([2]))  # drops one big and one small: 1,2,3 left
    with pytest.raises(AggregationError, match="2f \\+ 1"):
        trimmed_mean(x[:2], f=1)


def test_krum_scores_match_blanchard_on_1d_example():
    # Points {0, 1, 5, 8, 11}, f=1: each scored over n-f-2 = 2 nearest others.
    x = f32([[0], [1], [5], [8], [11]])
    assert krum_scores(x, 1).tolist() == [26, 17, 25, 18, 45]
    assert krum(x, f=1).tolist() == [1]


def test_krum_picks_from_the_tight_cluster():
    rng = np.random.default_rng(0)
    cluster = rng.normal(0, 0.01, (5, 10))
    byz = np.full((2, 10), 50.0)
    x = f32(np.vstack([byz, cluster]))
    chosen = krum(x, f=2)
    assert any(np.array_equal(chosen, r) for r in x[2:])
    with pytest.raises(AggregationError, match="2f \\+ 3"):
        krum(x[:6], f=2)


def test_multikrum_averages_the_m_best_weighted():
    x = f32([[0], [1], [5], [8], [11]])
    # scores 26, 17, 25, 18, 45 -> best three are rows 1, 3, 2
    assert np.allclose(multi_krum(x, f=1, m=3), [(1 + 8 + 5) / 3])
    w = np.array([1, 1, 1, 3, 1])
    assert np.allclose(multi_krum(x, w, f=1, m=2), [(1 * 1 + 8 * 3) / 4])
    assert multi_krum(x, f=1).shape == (1,)  # default m = n - f, never silently one model


def test_geometric_median_of_symmetric_points_and_robustness():
    square = f32([[1, 1], [-1, 1], [1, -1], [-1, -1]])
    assert np.allclose(geometric_median(square), [0, 0], atol=1e-6)
    collinear = f32([[0], [1], [100]])
    assert np.allclose(geometric_median(collinear), [1], atol=1e-4)
    # minimises the sum of distances better than the mean does
    rng = np.random.default_rng(1)
    x = f32(np.vstack([rng.normal(0, 1, (6, 5)), np.full((2, 5), 40.0)]))
    gm = geometric_median(x).astype(np.float64)

    def cost(z):
        return np.linalg.norm(x - z, axis=1).sum()

    assert cost(gm) <= cost(x.mean(0)) and cost(gm) <= cost(gm + 0.01) + 1e-6
    with pytest.raises(AggregationError):
        geometric_median(x, max_iter=0)


def test_centered_clipping_definition():
    x = f32([[1, 0], [0, 1], [100, 0]])
    # one iteration from centre 0 with tau = 1: mean of clipped = ((1,0)+(0,1)+(1,0))/3
    out = centered_clipping(x, tau=1.0, iters=1)
    assert np.allclose(out, [2 / 3, 1 / 3])
    # outlier's pull is bounded by tau / n per iteration
    out3 = centered_clipping(x, tau=1.0, iters=3, center=np.zeros(2))
    assert np.linalg.norm(out3) < 3.0
    with pytest.raises(AggregationError, match="center has shape"):
        centered_clipping(x, tau=1.0, center=np.zeros(3))


@pytest.mark.parametrize("name", sorted(RULES))
def test_every_rule_is_deterministic_and_pure(name):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(7, 1000)).astype(np.float32)
    w = rng.integers(1, 100, 7)
    before = x.copy()
    rule = make_rule(name)
    a, b = rule(x, w), rule(x.copy(), w.copy())
    assert a.dtype == np.float32 and a.shape == (1000,)
    assert a.tobytes() == b.tobytes()  # bit-identical
    assert np.array_equal(x, before)  # inputs untouched


def test_inputs_are_validated():
    with pytest.raises(AggregationError, match="float32"):
        weighted_mean(np.zeros((2, 3)))
    with pytest.raises(AggregationError, match="NaN"):
        weighted_mean(f32([[1, np.nan], [1, 1]]))
    with pytest.raises(AggregationError, match="weights"):
        weighted_mean(f32([[1], [2]]), np.array([1, 0]))
    with pytest.raises(ValueError, match="unknown aggregation rule"):
        make_rule("avg")
    with pytest.raises(ValueError, match="bad parameters"):
        make_rule("median", f=1)


def test_rules_cite_their_papers():
    for cls in RULES.values():
        assert cls.citations(), cls
