"""Bulyan and nearest-neighbour mixing against their definitions, and rule composition."""

import itertools

import numpy as np
import pytest

from matswarm.aggregation import (
    AggregationError,
    Composed,
    bulyan,
    bulyan_selection,
    centered_clipping,
    make_rule,
    nearest_neighbour_mixing,
    nnm_matrix,
)


def f32(rows):
    return np.asarray(rows, dtype=np.float32)


# -- Bulyan ---------------------------------------------------------------------------------------


def test_bulyan_recursive_krum_selection_on_1d_example():
    # f=1, n=7, theta=5. Pick 1 over all 7 (4 neighbours): 2 and 3 tie at 10, lower index wins ->
    # 2; then over 6 (3 nb): 3 (9); over 5 (2 nb): 1 and 4 tie at 10 -> 1; over 4 (1 nb): 4 and 5
    # tie at 1 -> 4; over 3 (max(1, 0) = 1 nb): 0 and 5 tie at 25 -> 0. The outlier never enters.
    x = f32([[0], [1], [2], [3], [4], [5], [100]])
    assert bulyan_selection(x, 1).tolist() == [0, 1, 2, 3, 4]


def test_bulyan_coordinate_step_is_mean_of_beta_closest_to_median():
    # Row 0 is the outlier. Rows -7, 3, 4, 10 are picked first; the last pick is over
    # {row 0, 1000, 100} with one neighbour: 1000 and 100 are each other's nearest (a tie), so
    # the lower index (row 4, value 1000) is selected. Coordinate 1 of the selection is
    # {10, -7, 3, 1000, 4}: median 4, beta = 5 - 2 = 3 closest values 4, 3, 10 -> 17/3; the
    # coordinate step trims the 1000. Coordinate 0 is all zeros.
    x = f32([[1e6, 0], [0, 10], [0, -7], [0, 3], [0, 1000], [0, 4], [0, 100]])
    assert bulyan_selection(x, 1).tolist() == [1, 2, 3, 4, 5]
    out = bulyan(x, f=1)
    assert out.dtype == np.float32
    assert out[0] == 0.0 and out[1] == np.float32(17 / 3)


def naive_bulyan(x: np.ndarray, f: int) -> np.ndarray:
    """Independent loop reference of the documented definition (float64, no vectorisation)."""
    n = len(x)
    remaining, chosen = list(range(n)), []
    while len(chosen) < n - 2 * f:
        nb = max(1, len(remaining) - f - 2)
        scores = []
        for i in remaining:
            ds = sorted(
                float(np.sum((x[i].astype(np.float64) - x[j]) ** 2)) for j in remaining if j != i
            )
            scores.append((sum(ds[:nb]), i))
        best = min(scores)[1]
        chosen.append(best)
        remaining.remove(best)
    sel = x[sorted(chosen)].astype(np.float64)
    beta = len(sel) - 2 * f
    out = []
    for col in sel.T:
        med = float(np.median(col))
        order = sorted(range(len(col)), key=lambda r, col=col, med=med: (abs(col[r] - med), r))
        out.append(np.mean(col[order[:beta]]))
    return np.array(out)


@pytest.mark.parametrize("n,f,seed", [(7, 1, 0), (9, 1, 1), (11, 2, 2), (15, 3, 3)])
def test_bulyan_matches_naive_reference(n, f, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 50))
    x[:f] = -3 * x[f:].mean(0) + rng.normal(0, 0.05, (f, 50))  # IPM-like Byzantine rows
    x = f32(x)
    np.testing.assert_allclose(bulyan(x, f=f), naive_bulyan(x, f), rtol=0, atol=1e-6)


def test_bulyan_refuses_too_few_updates_and_survives_outliers():
    rng = np.random.default_rng(4)
    x = f32(rng.normal(0, 0.1, (7, 20)))
    x[3] = 1e8
    assert np.abs(bulyan(x, f=1)).max() < 1.0
    with pytest.raises(AggregationError, match=r"Bulyan with f=1 needs n >= 4f \+ 3 = 7"):
        bulyan(x[:6], f=1)
    with pytest.raises(AggregationError, match="4f \\+ 3 = 11"):
        make_rule("bulyan", f=2)(x)
    assert make_rule("bulyan", f=2).min_participants() == 11


# -- NNM ------------------------------------------------------------------------------------------


def test_nnm_mixing_matrix_and_output_on_hand_case():
    # 1-D {0, 1, 10}, f=1: each point averages its 2 nearest (itself included).
    x = f32([[0], [1], [10]])
    w = nnm_matrix(x, 1)
    np.testing.assert_array_equal(w, [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0.5, 0.5]])
    np.testing.assert_array_equal(nearest_neighbour_mixing(x, f=1), f32([[0.5], [0.5], [5.5]]))
    out = make_rule("nnm+mean", f=1)(x)
    assert out == np.float32(6.5 / 3)


def test_nnm_always_keeps_itself_and_breaks_ties_by_index():
    x = f32([[1, 1], [1, 1], [1, 1], [4, 0]])
    np.testing.assert_array_equal(nnm_matrix(x, 3), np.eye(4))
    # f=2: row 3's two nearest are itself and row 0 (rows 0..2 tie; lowest index wins)
    assert nnm_matrix(x, 2)[3].tolist() == [0.5, 0, 0, 0.5]
    with pytest.raises(AggregationError, match="f \\+ 1"):
        nnm_matrix(x, 4)


def test_nnm_equals_mixing_matrix_times_stack_and_is_pure():
    rng = np.random.default_rng(5)
    x = f32(rng.normal(size=(6, 30)))
    before = x.copy()
    mixed = nearest_neighbour_mixing(x, f=2)
    np.testing.assert_allclose(mixed, nnm_matrix(x, 2) @ x.astype(np.float64), atol=1e-6)
    assert np.array_equal(x, before)
    assert mixed.tobytes() == nearest_neighbour_mixing(x.copy(), f=2).tobytes()


# -- composition ----------------------------------------------------------------------------------


def test_nnm_composes_with_any_rule():
    rng = np.random.default_rng(6)
    x = f32(rng.normal(size=(7, 40)))
    w = rng.integers(1, 50, 7).astype(np.float64)
    center = rng.normal(size=40).astype(np.float32)
    a = make_rule("nnm+centered-clipping", f=1, tau=0.5)
    b = make_rule("centered-clipping", pre="nnm", f=1, tau=0.5)
    assert isinstance(a, Composed) and a.name == "nnm+centered-clipping"
    assert a.describe() == "nnm(f=1)+centered-clipping(iters=3, tau=0.5)"
    expected = centered_clipping(nearest_neighbour_mixing(x, f=1), tau=0.5, center=center)
    assert a(x, w, center).tobytes() == b(x, w, center).tobytes() == expected.tobytes()
    # f reaches every step that takes it
    nk = make_rule("nnm+multikrum", f=2)
    assert nk.rule.params["f"] == 2 and nk.pre[0].params["f"] == 2
    assert nk.min_participants() == 7
    cites = a.citations()
    assert any("Allouah" in c for c in cites) and any("Karimireddy" in c for c in cites)
    for rule in ("mean", "median", "geomed", "trimmed-mean", "krum", "multikrum", "bulyan"):
        out = make_rule(f"nnm+{rule}", f=1)(x, w)
        assert out.shape == (40,) and np.isfinite(out).all()


def test_make_rule_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown pre-aggregation step 'foo'"):
        make_rule("foo+mean")
    with pytest.raises(ValueError, match="unknown aggregation rule 'nnm'"):
        make_rule("nnm")
    with pytest.raises(ValueError, match="bad parameters"):
        make_rule("nnm+median", f=1, tau=3)


def test_nnm_helps_cc_against_a_colluding_cluster():
    """The point of NNM: honest rows pulled toward each other, Byzantine rows diluted."""
    rng = np.random.default_rng(8)
    honest = rng.normal(1.0, 0.3, (5, 100))
    byz = np.tile(-4.0 * honest.mean(0), (2, 1))
    x = f32(np.vstack([honest, byz]))
    truth = honest.mean(0)
    rules = {
        "cc": make_rule("centered-clipping", tau=1.0),
        "nnm": make_rule("nnm+centered-clipping", f=2, tau=1.0),
    }
    err = {k: float(np.linalg.norm(r(x, None, np.zeros(100)) - truth)) for k, r in rules.items()}
    assert err["nnm"] < err["cc"]


@pytest.mark.parametrize("name", ["bulyan", "nnm+centered-clipping", "nnm+geomed"])
def test_new_rules_are_deterministic(name):
    rng = np.random.default_rng(9)
    x = f32(rng.normal(size=(7, 200)))
    rule = make_rule(name, f=1)
    assert len({rule(x.copy()).tobytes() for _ in range(3)}) == 1


def test_nnm_is_permutation_equivariant():
    # (Bulyan is not permutation-invariant in general: its last Krum picks use one neighbour,
    # where mutual nearest neighbours tie and the lower participant index wins.)
    rng = np.random.default_rng(9)
    x = f32(rng.normal(size=(7, 200)))
    for perm in itertools.islice(itertools.permutations(range(7)), 1, 6):
        p = list(perm)
        np.testing.assert_allclose(
            nearest_neighbour_mixing(x[p], f=2), nearest_neighbour_mixing(x, f=2)[p], atol=1e-6
        )


@pytest.mark.parametrize(
    "name,params",
    [
        ("bulyan", {"f": 2}),
        ("nnm+centered-clipping", {"f": 1, "tau": 0.5}),
        ("nnm+multikrum", {"f": 2}),
        ("nnm+median", {"f": 1}),
    ],
)
def test_rules_round_trip_through_name_and_params(name, params):
    """Task specs store ``rule.name`` and ``rule.params`` and rebuild with ``make_rule``."""
    rule = make_rule(name, **params)
    again = make_rule(rule.name, **rule.params)
    assert again.describe() == rule.describe()
