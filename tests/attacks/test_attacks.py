"""Every attack against its definition on a hand-made case, and its effect on plain Mean."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from matswarm.attacks import (
    ATTACKS,
    ALittleIsEnough,
    AttackError,
    ByzantineParticipant,
    GaussianNoise,
    InnerProductManipulation,
    LabelFlip,
    SignFlip,
    make_attack,
    poison_dataset,
)
from matswarm.data import synthetic
from matswarm.protocol import Update

OWN = np.array([1.0, -2.0, 3.0], dtype=np.float32)
NONE = np.zeros((0, 3), np.float32)


def f32(rows):
    return np.asarray(rows, dtype=np.float32)


def test_gaussian_noise_adds_n_0p1_0p1_or_replaces():
    own = np.full(200_000, 5.0, np.float32)
    out = GaussianNoise().craft(own, NONE, np.random.default_rng(3))
    expected = own + np.random.default_rng(3).normal(0.1, 0.1, own.shape)
    np.testing.assert_allclose(out, expected.astype(np.float32))
    noise = out.astype(np.float64) - 5.0
    assert abs(noise.mean() - 0.1) < 1e-3 and abs(noise.std() - 0.1) < 1e-3
    rep = GaussianNoise(mode="replace").craft(own, NONE, np.random.default_rng(3))
    np.testing.assert_allclose(rep, np.random.default_rng(3).normal(0.1, 0.1, own.shape), 1e-6)
    with pytest.raises(AttackError, match="mode"):
        GaussianNoise(mode="swap")


def test_sign_flip_own_and_omniscient():
    assert SignFlip().craft(OWN, NONE, None).tolist() == [-1, 2, -3]
    benign = f32([[1, 1, 0], [3, 5, 2]])
    assert SignFlip("benign-mean").craft(OWN, benign, None).tolist() == [-2, -3, -1]
    assert SignFlip("benign-mean").needs_benign and not SignFlip().needs_benign


def test_alie_is_mean_plus_minus_z_std_of_benign():
    benign = f32([[1, 0, 7], [3, 4, 7], [5, 8, 7]])  # mean (3, 4, 7), std ddof=1 (2, 4, 0)
    np.testing.assert_allclose(ALittleIsEnough().craft(OWN, benign, None), [2.4, 2.8, 7])
    np.testing.assert_allclose(
        ALittleIsEnough(z=0.3, direction=1).craft(OWN, benign, None), [3.6, 5.2, 7]
    )
    with pytest.raises(AttackError, match="at least 2 benign"):
        ALittleIsEnough().craft(OWN, benign[:1], None)


def test_ipm_is_minus_epsilon_times_benign_mean():
    benign = f32([[1, 2, 0], [3, 6, -4]])
    assert InnerProductManipulation().craft(OWN, benign, None).tolist() == [-4, -8, 4]
    assert InnerProductManipulation(0.5).craft(OWN, benign, None).tolist() == [-1, -2, 1]


def test_label_flip_negates_raw_targets_of_the_named_org_only(small_synthetic):
    poisoned = poison_dataset(small_synthetic, {"org2": LabelFlip()})
    for before, after in zip(small_synthetic.orgs, poisoned.orgs, strict=True):
        assert np.array_equal(after.X, before.X)
        flipped = before.name == "org2"
        assert np.array_equal(after.y, -before.y if flipped else before.y)
    assert np.array_equal(poisoned.test.y, small_synthetic.test.y)
    # default: the attacker reports honest statistics, the consortium's scaling is unchanged
    assert poisoned.standardizer is small_synthetic.standardizer
    worse = poison_dataset(small_synthetic, {"org2": LabelFlip(scaling="poisoned")})
    assert worse.standardizer.y_mean != small_synthetic.standardizer.y_mean
    with pytest.raises(AttackError, match="unknown organisations"):
        poison_dataset(small_synthetic, {"org9": LabelFlip()})


def test_label_flip_on_a_classification_task_swaps_the_classes():
    ds = synthetic.make_dataset(
        n_rows=120, n_features=4, n_orgs=2, n_test=30, seed=0, task="classification", threshold=0
    )
    poisoned = poison_dataset(ds, {"org1": LabelFlip()})
    before, after = ds.orgs[0], poisoned.orgs[0]
    assert set(np.unique(before.y)) == {0.0, 1.0}
    assert np.array_equal(after.y, 1.0 - before.y)  # a 0/1 label never becomes -1
    assert np.array_equal(poisoned.orgs[1].y, ds.orgs[1].y)
    with pytest.raises(AttackError, match="unknown task 'ranking'"):
        LabelFlip().poison(before, "ranking")


def test_registry_defaults_are_the_papers_and_cite_sources():
    assert make_attack("noise").params == {"mean": 0.1, "std": 0.1, "mode": "add"}
    assert make_attack("alie").params["z"] == 0.3
    assert make_attack("ipm").params["epsilon"] == 2.0
    assert make_attack("label-flip").params == {"scaling": "honest"}
    assert set(ATTACKS) == {"noise", "label-flip", "sign-flip", "alie", "ipm"}
    for cls in ATTACKS.values():
        assert cls.citations()
    with pytest.raises(AttackError, match="unknown attack"):
        make_attack("gradient-ascent")
    with pytest.raises(AttackError, match="bad parameters"):
        make_attack("ipm", alpha=2)


class _Node:
    def __init__(self, name):
        self.name, self.seed, self.index, self.n_samples = name, 0, 0, 10


def test_colluders_are_not_counted_as_benign():
    ups = {
        o: Update("t", 1, o, f32(v), 10)
        for o, v in {"a": [0, 0], "b": [100, 100], "c": [1, 2], "d": [3, 6]}.items()
    }
    byz = ByzantineParticipant(_Node("a"), InnerProductManipulation(), colluders=["b"])
    out = byz.craft(ups["a"], [ups["b"], ups["c"], ups["d"]])
    assert out.vector.tolist() == [-4, -8]  # -2 * mean of c, d only
    assert dataclasses.replace(out, vector=ups["a"].vector) == ups["a"]  # only the vector changed
    label = ByzantineParticipant(_Node("a"), LabelFlip())
    assert label.craft(ups["a"], [ups["c"]]) is ups["a"]


def test_noise_stream_is_reproducible_per_round():
    byz = ByzantineParticipant(_Node("a"), GaussianNoise())
    u1, u2 = Update("t", 1, "a", OWN, 10), Update("t", 2, "a", OWN, 10)
    assert byz.craft(u1, []).vector.tobytes() == byz.craft(u1, []).vector.tobytes()
    assert byz.craft(u1, []).vector.tobytes() != byz.craft(u2, []).vector.tobytes()


@pytest.mark.parametrize("attack", ["noise", "label-flip", "sign-flip", "alie", "ipm"])
def test_each_attack_clearly_hurts_plain_mean(small_synthetic, attacked_mse, attack):
    clean = attacked_mse(small_synthetic, None)
    attacked = attacked_mse(small_synthetic, attack)
    assert attacked > 1.5 * clean, (attack, clean, attacked)
