"""Privacy accounting with Opacus' accountants (RDP or PRV) for the sampled Gaussian mechanism.

Every DP mechanism here is ``steps`` applications of a Gaussian mechanism with noise multiplier
``sigma`` on Poisson-sampled batches (sample rate ``q``; ``q = 1`` for no sub-sampling, as in
org-level DP: one Gaussian mechanism per round, where RDP is exactly ``alpha / (2 sigma^2)``). The
spent epsilon is what Opacus' ``RDPAccountant`` / ``PRVAccountant`` report for that history, and
the noise for a target (epsilon, delta) is Opacus' ``get_noise_multiplier``. Nothing of the
analysis is re-implemented; this module only fixes the conventions (history, delta) and caches.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ACCOUNTANTS = ("rdp", "prv")


class BudgetError(ValueError):
    """The privacy budget cannot cover the planned rounds (the message names the fields)."""


def _require_opacus() -> None:
    try:
        import opacus  # noqa: F401
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            "differential privacy needs Opacus: pip install 'matswarm[privacy]'"
        ) from None


def _accountant(kind: str):
    _require_opacus()
    from opacus.accountants import PRVAccountant, RDPAccountant

    if kind == "rdp":
        return RDPAccountant()
    if kind == "prv":
        return PRVAccountant()
    raise ValueError(f"accountant must be one of {ACCOUNTANTS}, got {kind!r}")


@lru_cache(maxsize=256)
def _rdp_per_step(noise_multiplier: float, sample_rate: float) -> tuple[float, ...]:
    _require_opacus()
    from opacus.accountants import RDPAccountant
    from opacus.accountants.analysis.rdp import compute_rdp

    rdp = compute_rdp(
        q=sample_rate,
        noise_multiplier=noise_multiplier,
        steps=1,
        orders=RDPAccountant.DEFAULT_ALPHAS,
    )
    return tuple(float(v) for v in rdp)


@lru_cache(maxsize=4096)
def epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, kind: str = "rdp"
) -> float:
    """Epsilon spent after ``steps`` sampled-Gaussian steps, as Opacus' accountant reports it.

    RDP composes additively, so the per-step RDP curve is computed once per (sigma, q) and
    scaled by ``steps``: the same numbers as ``RDPAccountant`` with that history (which calls
    ``compute_rdp(..., steps)``, i.e. ``steps * rdp``), without recomputing it every round.
    """
    if steps == 0:
        return 0.0
    if noise_multiplier <= 0:
        return math.inf
    if kind == "rdp":
        from opacus.accountants import RDPAccountant
        from opacus.accountants.analysis.rdp import get_privacy_spent

        rdp = np.asarray(_rdp_per_step(float(noise_multiplier), float(sample_rate))) * steps
        with warnings.catch_warnings():
            # "Optimal order is the largest alpha": for tiny noise the bound is loose, which
            # only overstates the spend (the calibrated noise is never that small).
            warnings.simplefilter("ignore", UserWarning)
            eps, _ = get_privacy_spent(orders=RDPAccountant.DEFAULT_ALPHAS, rdp=rdp, delta=delta)
        return float(eps)
    acc = _accountant(kind)
    acc.history = [(float(noise_multiplier), float(sample_rate), int(steps))]
    with warnings.catch_warnings():
        # q = 1 (org-level DP): Opacus' PRV takes log(1 - q) = -inf inside an np.where that
        # then discards it; the numbers are right (tests compare them with the closed form).
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(acc.get_epsilon(delta=delta))


@lru_cache(maxsize=256)
def calibrate(
    target_epsilon: float, delta: float, sample_rate: float, steps: int, kind: str = "rdp"
) -> float:
    """The smallest noise multiplier (to Opacus' tolerance) whose epsilon after ``steps`` is at
    most ``target_epsilon``."""
    _require_opacus()
    from opacus.accountants.utils import get_noise_multiplier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the largest-alpha note while bisecting
        warnings.simplefilter("ignore", RuntimeWarning)  # PRV's log(1 - q) at q = 1, see above
        sigma = float(
            get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=kind,
                epsilon_tolerance=0.01,
            )
        )
    # get_noise_multiplier stops within its tolerance *below* the target; verify with the
    # accountant itself so the printed spend never exceeds the target.
    while epsilon(sigma, sample_rate, steps, delta, kind) > target_epsilon:
        sigma *= 1.01
    return sigma


@dataclass(frozen=True)
class Mechanism:
    """One party's DP mechanism: ``steps_per_round`` sampled-Gaussian steps each round."""

    noise_multiplier: float
    sample_rate: float
    steps_per_round: int
    delta: float
    accountant: str = "rdp"

    def epsilon_after(self, round_: int) -> float:
        """Epsilon spent once ``round_`` rounds are done."""
        return epsilon(
            self.noise_multiplier,
            self.sample_rate,
            self.steps_per_round * round_,
            self.delta,
            self.accountant,
        )

    def exhausted_at(self, target_epsilon: float, rounds: int) -> int | None:
        """The first round (1..rounds) after which the spend exceeds the target, else None."""
        if self.epsilon_after(rounds) <= target_epsilon:
            return None
        lo, hi = 0, rounds  # eps(lo) <= target < eps(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.epsilon_after(mid) <= target_epsilon:
                lo = mid
            else:
                hi = mid
        return hi
