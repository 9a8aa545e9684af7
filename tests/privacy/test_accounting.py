"""The accountant reports what Opacus' accountants report, and calibration hits the target."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from matswarm.privacy.accounting import Mechanism, calibrate, epsilon


@pytest.mark.parametrize(
    ("sigma", "q", "steps"), [(1.0, 0.104, 300), (2.9, 0.104, 3000), (0.8, 0.02, 50), (4.0, 1.0, 7)]
)
def test_epsilon_equals_opacus_rdp_accountant(sigma, q, steps):
    acc = RDPAccountant()
    for _ in range(steps):  # the accountant's own history, one step at a time
        acc.step(noise_multiplier=sigma, sample_rate=q)
    assert epsilon(sigma, q, steps, 1e-5, "rdp") == pytest.approx(
        acc.get_epsilon(delta=1e-5), rel=1e-9
    )


def test_epsilon_equals_opacus_prv_accountant():
    acc = PRVAccountant()
    acc.history = [(1.1, 0.05, 200)]
    assert epsilon(1.1, 0.05, 200, 1e-5, "prv") == pytest.approx(acc.get_epsilon(1e-5), rel=1e-6)
    # PRV is tighter than RDP for the same mechanism (numerical composition vs a bound).
    assert epsilon(1.1, 0.05, 200, 1e-5, "prv") < epsilon(1.1, 0.05, 200, 1e-5, "rdp")


def test_unsampled_gaussian_matches_closed_form():
    """q = 1: RDP of the Gaussian mechanism is T * alpha / (2 sigma^2) (Mironov 2017); the
    conversion to (eps, delta) is Balle et al. 2020's, as Opacus applies it."""
    sigma, steps, delta = 5.0, 40, 1e-5
    a = np.array(RDPAccountant.DEFAULT_ALPHAS, dtype=float)
    rdp = steps * a / (2 * sigma**2)
    eps = rdp - (np.log(delta) + np.log(a)) / (a - 1) + np.log((a - 1) / a)
    assert epsilon(sigma, 1.0, steps, delta) == pytest.approx(float(np.nanmin(eps)), rel=1e-9)


def test_calibration_hits_target_from_below():
    q, steps = 0.104, 200
    sigma = calibrate(3.0, 1e-5, q, steps)
    spent = epsilon(sigma, q, steps, 1e-5)
    assert 2.9 < spent <= 3.0
    ref = get_noise_multiplier(
        target_epsilon=3.0, target_delta=1e-5, sample_rate=q, steps=steps, epsilon_tolerance=0.01
    )
    assert sigma == pytest.approx(ref, rel=0.02)
    # More noise, less spend; no steps, nothing spent.
    assert epsilon(2 * sigma, q, steps, 1e-5) < spent
    assert epsilon(sigma, q, 0, 1e-5) == 0.0


def test_mechanism_spend_grows_per_round_and_finds_exhaustion():
    m = Mechanism(noise_multiplier=1.0, sample_rate=0.1, steps_per_round=10, delta=1e-5)
    spends = [m.epsilon_after(t) for t in range(1, 21)]
    assert all(b > a for a, b in itertools.pairwise(spends))
    target = spends[11]  # within budget after round 12, exceeded after round 13
    assert m.exhausted_at(target, 20) == 13
    assert m.exhausted_at(target, 12) is None
    assert m.exhausted_at(math.inf, 20) is None
