"""Differential privacy for federated rounds: DP-SGD at each org (local) or one Gaussian noise on
the aggregate that the orgs add in shares (central). ``unit`` says what neighbouring inputs
differ in: ``"record"`` (default): one material's row at one organisation; ``"org"``
(central only): one organisation's whole contribution.

* ``unit = "org"`` (DP-FedAvg, McMahan et al. 2018): each org trains as usual, then clips its
  whole round update (model delta or gradient) to L2 norm ``clip`` and adds its share
  ``N(0, (sigma * clip)^2 / K)`` from its own generator (:class:`ClippedGaussianUpdate`, applied
  in :meth:`PrivateOrg.train`, in process and on Flower nodes alike). The rule must be the
  equal-weight mean (``equal-mean``): sample-count weights leak sizes and let one org move the
  sum by more than ``clip``; robust rules pick single updates. The sum of the K updates is then
  one Gaussian mechanism per round with sensitivity ``clip`` (q = 1, steps = rounds), accounted
  by Opacus. Guarantee: org-level on the aggregate, it hides whether any one organisation took
  part (its data vs. a zero update). The mean carries noise ``sigma * clip / K`` per coordinate
  against a signal of norm <= ``clip`` spread over all d coordinates, so it needs many orgs
  (hundreds for a 10k-parameter MLP); at K = 3 it destroys the model (see
  ``matswarm experiment privacy``). One update alone carries ``1/sqrt(K)`` of the noise, and the
  org's row count and train loss travel unprotected beside it.

* ``mode = "local"``: every org runs DP-SGD in the shared training loop
  (:func:`matswarm.algorithms.training.train_local`): Poisson-sampled batches (rate
  ``q_i = batch_size / n_i``), per-sample gradients clipped to L2 norm ``clip``, Gaussian noise
  ``N(0, (sigma_i * clip)^2)`` on their sum, divided by the expected batch size. Each org
  calibrates its own ``sigma_i`` to the target over ``rounds * local_steps`` steps and runs its
  own accountant. The guarantee holds against everyone who sees its updates.
* ``mode = "central"`` (needs ``update = "gradient"``): each org sends its clipped per-sample
  gradient sum on a Poisson batch (one common rate ``q``) plus its *share* of the noise,
  ``N(0, (sigma * clip)^2 / K)`` drawn from its own generator; the sample-weighted mean of the
  K updates is then exactly DP-SGD on the union of the orgs' rows with noise ``sigma * clip``
  on the pooled sum, and no party ever knows the total noise. With the mean rule the guarantee
  holds for the aggregate (the global models): against model users, and against every party
  when the updates are only ever seen summed (secure aggregation). One update on its own
  carries ``1/sqrt(K)`` of the noise; its epsilon is reported too (``update_epsilon_spent``). A
  robust rule (median, Krum, ...) can output one org's update nearly as is, so there each org adds
  the full ``sigma * clip`` and the guarantee is per update.

Why not Opacus' ``PrivacyEngine``: its optimiser noises ``p.grad_sample`` of the whole loss and
assumes one data loader per optimiser step. Our loss has data-independent terms that must not be
clipped (Lasso's L1 penalty, FedProx's proximal term), the org's Adam state lives across rounds,
and central mode needs the noise split into shares. So per-sample gradients come from
``torch.func`` (``vmap(grad(...))``, which also handles the LSTM that Opacus' hooks reject),
clipping and noise are the ~20 lines of :class:`SampledGaussianGradient`, and accounting is
Opacus' (:mod:`matswarm.privacy.accounting`).

Noise and batch sampling draw from a numpy PCG64 generator the org seeds with 128 bits of OS
entropy (``secrets``): the task seed is public (in the spec), so noise derived from it could be
subtracted and sampled indices known. Experiments pass ``noise_seed`` for reproducible numbers;
that is not private.
"""

from __future__ import annotations

import json
import math
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch.func import functional_call, grad_and_value, vmap

from matswarm.algorithms.base import FederatedAlgorithm, LocalResult, RingMessage
from matswarm.algorithms.training import ExtraLoss
from matswarm.models.base import RegressionModel
from matswarm.privacy.accounting import ACCOUNTANTS, BudgetError, Mechanism, calibrate

MODES = ("local", "central")
#: What neighbouring inputs differ in: one row at one org, or one whole org's contribution.
UNITS = ("record", "org")
REPORT_KIND = "dp-epsilon"
REPORT_FORMAT = "matswarm-dp-report/v1"
#: Algorithms whose only data-dependent output is the (clipped, noised) model update. MatSwarm's
#: ring statistics and alignment term read rows outside the per-sample gradient.
PRIVATE_ALGORITHMS = ("fedavg", "fedprox", "fedavgm", "fedadam")
#: torch.func cannot vmap nn.RNN's kernel (it writes its output in place).
PER_SAMPLE_MODELS = ("mlp", "lasso", "lstm")
#: The rule under which the orgs' noise shares add up on the aggregate.
LINEAR_RULES = ("mean",)
#: Org-level DP's aggregate: each clipped update weighs 1/K, so one org moves the sum by <= clip.
ORG_RULE = "equal-mean"

CITATIONS = (
    "Abadi et al., Deep Learning with Differential Privacy, CCS 2016",
    "Mironov, Renyi Differential Privacy of the Sampled Gaussian Mechanism, 2019",
    "Gopi, Lee and Wutschitz, Numerical Composition of Differential Privacy, NeurIPS 2021",
    "Truex et al., A Hybrid Approach to Privacy-Preserving Federated Learning, AISec 2019",
    "McMahan et al., Learning Differentially Private Recurrent Language Models, ICLR 2018",
    "Yousefpour et al., Opacus: User-Friendly Differential Privacy Library in PyTorch, 2021",
)


def citations() -> tuple[str, ...]:
    return CITATIONS


@dataclass(frozen=True)
class PrivacyConfig:
    """The ``[privacy]`` section: target budget, mode and the mechanism's knobs."""

    mode: str
    epsilon: float
    delta: float = 1e-5
    #: L2 bound of each sample's gradient (standardised units).
    clip: float = 1.0
    #: None: calibrated to (epsilon, delta) over the planned rounds; else fixed (and checked).
    noise_multiplier: float | None = None
    accountant: str = "rdp"
    #: central: the common Poisson rate; None: batch_size / mean org rows.
    sample_rate: float | None = None
    #: "record": one row at one org; "org": one organisation's whole update (central only).
    unit: str = "record"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"[privacy] mode must be one of {MODES}, got {self.mode!r}")
        if self.unit not in UNITS:
            raise ValueError(f"[privacy] unit must be one of {UNITS}, got {self.unit!r}")
        if self.unit == "org" and self.mode != "central":
            raise ValueError(
                f"[privacy] unit = 'org' needs mode = 'central', got mode = {self.mode!r}: "
                "org-level DP hides an org's whole update in the noise of the aggregate; an "
                "org's own update cannot hide that org (use unit = 'record' for local DP)"
            )
        if self.unit == "org" and self.sample_rate is not None:
            raise ValueError(
                "[privacy] sample_rate is the Poisson rate of rows (unit = 'record'); with "
                "unit = 'org' every org sends one update each round (q = 1): leave it unset"
            )
        if not (isinstance(self.epsilon, int | float) and 0 < self.epsilon < math.inf):
            raise ValueError(f"[privacy] epsilon must be a finite number > 0, got {self.epsilon!r}")
        if not 0 < self.delta < 1:
            raise ValueError(f"[privacy] delta must be in (0, 1), got {self.delta!r}")
        if not self.clip > 0:
            raise ValueError(f"[privacy] clip must be > 0, got {self.clip!r}")
        if self.noise_multiplier is not None and not self.noise_multiplier > 0:
            raise ValueError(
                f"[privacy] noise_multiplier must be > 0, got {self.noise_multiplier!r}"
            )
        if self.accountant not in ACCOUNTANTS:
            raise ValueError(
                f"[privacy] accountant must be one of {ACCOUNTANTS}, got {self.accountant!r}"
            )
        if self.sample_rate is not None and not 0 < self.sample_rate < 1:
            raise ValueError(f"[privacy] sample_rate must be in (0, 1), got {self.sample_rate!r}")

    def to_dict(self) -> dict[str, Any]:
        """The spec's ``privacy`` dict; ``unit`` only when it is not the default "record", so
        specs written before org-level DP keep their digest."""
        d = asdict(self)
        if self.unit == "record":
            del d["unit"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PrivacyConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"[privacy] unknown key(s) {unknown}; valid: {sorted(known)}")
        return cls(**dict(d))

    # -- planning -----------------------------------------------------------------------------
    def plan(
        self,
        algorithm: FederatedAlgorithm,
        rule_name: str,
        org_rows: Mapping[str, int],
        model_name: str = "mlp",
    ) -> PrivacyPlan:
        """Resolve sample rates and noise for these orgs; refuse what the budget cannot cover."""
        check_compatible(self, algorithm, model_name, rule_name)
        if not org_rows:
            raise ValueError("a private task needs at least one organisation")
        rounds, steps = algorithm.rounds, algorithm.local_steps
        b = algorithm.batch_size
        k = len(org_rows)
        mech: dict[str, Mechanism] = {}
        shares: dict[str, float] = {}
        divisor: dict[str, float] = {}
        update_mech: dict[str, Mechanism] = {}
        if self.unit == "org":
            # One Gaussian mechanism per round on the sum of the K clipped updates (every org
            # takes part every round: q = 1); sensitivity clip, noise sigma * clip in K shares.
            sigma = self._sigma(1.0, rounds, 1)
            share = 1.0 / math.sqrt(k)
            for org in org_rows:
                mech[org] = Mechanism(sigma, 1.0, 1, self.delta, self.accountant)
                update_mech[org] = Mechanism(sigma * share, 1.0, 1, self.delta, self.accountant)
                shares[org], divisor[org] = share, 1.0
            guarantee = (
                "org-level on the aggregate: hides whether any one organisation took part "
                f"(equal-weight mean of {k} updates clipped to L2 norm {self.clip:g}); an "
                f"individual update carries 1/sqrt({k}) of the noise"
            )
            plan = PrivacyPlan(self, rounds, mech, shares, divisor, guarantee, update_mech)
            plan.check_budget()
            return plan
        if self.mode == "local":
            too_small = {o: n for o, n in org_rows.items() if b >= n}
            if too_small:
                raise ValueError(
                    f"[training] batch_size = {b} must be below every org's row count for "
                    f"Poisson sampling; too small: {too_small}"
                )
            for org, n in org_rows.items():
                q = b / n
                sigma = self._sigma(q, rounds, steps)
                mech[org] = Mechanism(sigma, q, steps, self.delta, self.accountant)
                shares[org], divisor[org] = 1.0, q * n
            guarantee = "record-level, each org against every party that sees its updates"
        else:
            q = self.sample_rate
            if q is None:
                q = b / (sum(org_rows.values()) / k)
            if not 0 < q < 1:
                raise ValueError(
                    f"[privacy] sample_rate resolved to {q:.3f} (batch_size {b} / mean rows); "
                    "set [privacy] sample_rate below 1 or lower [training] batch_size"
                )
            sigma = self._sigma(q, rounds, steps)
            linear = rule_name in LINEAR_RULES
            share = 1.0 / math.sqrt(k) if linear else 1.0
            for org, n in org_rows.items():
                mech[org] = Mechanism(sigma, q, steps, self.delta, self.accountant)
                update_mech[org] = Mechanism(sigma * share, q, steps, self.delta, self.accountant)
                shares[org], divisor[org] = share, q * n
            guarantee = (
                "record-level on the aggregate (global models); an individual update carries "
                f"1/sqrt({k}) of the noise"
                if linear
                else f"record-level per update (rule {rule_name!r} is not a sum, so every org "
                "adds the full noise)"
            )
        plan = PrivacyPlan(self, rounds, mech, shares, divisor, guarantee, update_mech)
        plan.check_budget()
        return plan

    def _sigma(self, q: float, rounds: int, steps: int) -> float:
        if self.noise_multiplier is not None:
            return float(self.noise_multiplier)
        return calibrate(self.epsilon, self.delta, q, rounds * steps, self.accountant)

    def resolved(self, plan: PrivacyPlan) -> PrivacyConfig:
        """This config with what every party must agree on pinned (central: rate and noise;
        org-level: the noise, its rate is always 1)."""
        if self.mode != "central":
            return self
        m = next(iter(plan.mechanisms.values()))
        pinned: dict[str, Any] = {"noise_multiplier": m.noise_multiplier}
        if self.unit == "record":
            pinned["sample_rate"] = m.sample_rate
        return PrivacyConfig(**(asdict(self) | pinned))


def check_compatible(
    cfg: PrivacyConfig,
    algorithm: FederatedAlgorithm,
    model_name: str,
    rule_name: str | None = None,
) -> None:
    """Refuse combinations whose guarantee would not hold, naming the fields. ``rule_name``
    (the task's aggregation rule) is checked when given."""
    if algorithm.name not in PRIVATE_ALGORITHMS:
        raise ValueError(
            f"[privacy] is supported for methods {', '.join(PRIVATE_ALGORITHMS)}, not "
            f"{algorithm.name!r} (its ring statistics / alignment term read rows outside the "
            "clipped update)"
        )
    if cfg.unit == "org":
        # The whole update is clipped, so any update kind and model will do; the rule must
        # weigh every clipped update equally.
        if rule_name is not None and rule_name != ORG_RULE:
            raise ValueError(
                f"[privacy] unit = 'org' needs [aggregation] rule = {ORG_RULE!r}, got "
                f"{rule_name!r}: the noise shares sum to one Gaussian on the sum of clipped "
                "updates only under an equal-weight mean; sample-count weights ('mean') leak "
                "each org's size and let a large org move the aggregate by more than clip, "
                "and robust rules select or reorder single updates, which carry only "
                "1/sqrt(K) of the noise"
            )
        return
    update = getattr(algorithm, "update", "delta")
    if cfg.mode == "central" and update != "gradient":
        raise ValueError(
            "[privacy] mode = 'central' needs [training] update = 'gradient': the noise is added "
            "once on the aggregate, so each round's update must be a sum of per-sample clipped "
            "gradients (local Adam steps in between would go unprotected); use mode = 'local' "
            "for delta updates"
        )
    if model_name not in PER_SAMPLE_MODELS:
        raise ValueError(
            f"[privacy] needs per-sample gradients, available for models "
            f"{', '.join(PER_SAMPLE_MODELS)}; [model] name = {model_name!r} is not supported"
        )


@dataclass(frozen=True)
class PrivacyPlan:
    """What each org does and spends: its mechanism, noise share and gradient divisor."""

    config: PrivacyConfig
    rounds: int
    #: The mechanism protecting each org's rows (central: the aggregate's, the same for all).
    mechanisms: dict[str, Mechanism]
    #: Noise std each org adds to its clipped sum, in units of ``sigma * clip``.
    shares: dict[str, float]
    #: Expected batch size each org divides its noised sum by.
    divisors: dict[str, float]
    guarantee: str
    #: central: what one org's update alone reveals (noise ``sigma * share``).
    update_mechanisms: dict[str, Mechanism] = field(default_factory=dict)

    def check_budget(self) -> None:
        """Refuse a plan whose budget runs out before the last planned round."""
        c = self.config
        for org, m in self.mechanisms.items():
            r = m.exhausted_at(c.epsilon, self.rounds)
            if r is not None:
                raise BudgetError(
                    f"[privacy] epsilon = {c.epsilon} (delta = {c.delta}) is exhausted at round "
                    f"{r} of [training] rounds = {self.rounds} for {org} (noise_multiplier "
                    f"{m.noise_multiplier:.4g}, sample_rate {m.sample_rate:.4g}, "
                    f"{'mechanisms' if c.unit == 'org' else 'local_steps'} per round "
                    f"{m.steps_per_round}): raise [privacy] noise_multiplier or "
                    "leave it unset to calibrate, or lower [training] rounds"
                    + ("" if c.unit == "org" else " / local_steps")
                )

    def epsilon_after(self, round_: int) -> dict[str, float]:
        return {org: m.epsilon_after(round_) for org, m in self.mechanisms.items()}

    def report(self, org: str, round_: int) -> dict[str, Any]:
        """The per-round spend document an org signs and anchors (kind ``dp-epsilon``)."""
        m = self.mechanisms[org]
        doc: dict[str, Any] = {
            "format": REPORT_FORMAT,
            "org": org,
            "round": round_,
            "mode": self.config.mode,
            "unit": self.config.unit,
            "epsilon_spent": m.epsilon_after(round_),
            "target_epsilon": self.config.epsilon,
            "delta": self.config.delta,
            "accountant": self.config.accountant,
            "noise_multiplier": m.noise_multiplier,
            "sample_rate": m.sample_rate,
            "steps": m.steps_per_round * round_,
            "clip": self.config.clip,
            "guarantee": self.guarantee,
        }
        if org in self.update_mechanisms:
            doc["update_epsilon_spent"] = self.update_mechanisms[org].epsilon_after(round_)
        return doc

    def summary(self, rounds_done: int) -> dict[str, Any]:
        """The model card's privacy section."""
        return {
            **self.config.to_dict(),
            "unit": self.config.unit,
            "guarantee": self.guarantee,
            "rounds": rounds_done,
            "per_org": {
                org: {
                    "noise_multiplier": m.noise_multiplier,
                    "sample_rate": m.sample_rate,
                    "noise_share": self.shares[org],
                    "epsilon_spent": m.epsilon_after(rounds_done),
                    **(
                        {
                            "update_epsilon_spent": self.update_mechanisms[org].epsilon_after(
                                rounds_done
                            )
                        }
                        if org in self.update_mechanisms
                        else {}
                    ),
                }
                for org, m in self.mechanisms.items()
            },
            "epsilon_per_round": [
                max(self.epsilon_after(t).values()) for t in range(1, rounds_done + 1)
            ],
            "citations": list(CITATIONS),
        }

    def round_line(self, round_: int) -> str:
        eps = self.epsilon_after(round_)
        worst = max(eps.values())
        return (
            f"round {round_}: DP ({self.config.mode}, {self.config.unit}-level) epsilon spent "
            f"{worst:.3f} of "
            f"{self.config.epsilon} (delta {self.config.delta:g})"
        )


class SampledGaussianGradient:
    """One org's DP-SGD gradient: Poisson batches, per-sample clipping, Gaussian noise.

    ``noise_std`` is in units of ``clip`` (``sigma`` locally, ``sigma * share`` in central mode);
    the noised sum is divided by ``divisor`` (the expected batch size).
    """

    def __init__(
        self,
        *,
        clip: float,
        noise_std: float,
        sample_rate: float,
        divisor: float,
        rng: np.random.Generator,
    ):
        self.clip = float(clip)
        self.noise_std = float(noise_std)
        self.sample_rate = float(sample_rate)
        self.divisor = float(divisor)
        self._rng = rng

    def batches(
        self, X: np.ndarray, y: np.ndarray, steps: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        yt = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))
        for _ in range(steps):
            idx = np.flatnonzero(self._rng.random(len(yt)) < self.sample_rate)
            sel = torch.from_numpy(idx)
            yield Xt.index_select(0, sel), yt.index_select(0, sel)

    def gradient(
        self,
        model: RegressionModel,
        xb: torch.Tensor,
        yb: torch.Tensor,
        extra: ExtraLoss | None,
        task: str = "regression",
    ) -> tuple[list[torch.Tensor], float, float]:
        named = list(model.named_parameters())
        params = [p for _, p in named]
        if len(yb):
            per_sample, losses = per_sample_gradients(model, xb, yb, task)
            sq = sum(g.reshape(len(yb), -1).pow(2).sum(1) for g in per_sample)
            scale = (self.clip / (torch.sqrt(sq) + 1e-12)).clamp(max=1.0)
            sums = [torch.einsum("b,b...->...", scale, g) for g in per_sample]
            mse = float(losses.mean())
        else:  # an empty Poisson batch: the noise alone
            sums = [torch.zeros_like(p) for p in params]
            mse = float("nan")
        out = []
        for s in sums:
            noise = self._rng.standard_normal(s.numel()).astype(np.float32)
            noisy = s + torch.from_numpy(noise).reshape(s.shape) * (self.noise_std * self.clip)
            out.append((noisy / self.divisor).detach())
        # Terms that read no rows (Lasso's L1, FedProx's proximal term): exact gradient, no
        # clipping or noise needed. ``extra`` sees an empty batch representation.
        term = model.penalty()
        if extra is not None:
            term = term + extra(model, model.represent(xb[:0]))
        if term.requires_grad:
            tg = torch.autograd.grad(term, params, allow_unused=True)
            out = [o if g is None else o + g.detach() for o, g in zip(out, tg, strict=True)]
        loss = (0.0 if math.isnan(mse) else mse) + float(term.detach())
        return out, loss, mse


class ClippedGaussianUpdate:
    """One org's org-level DP update (DP-FedAvg): the whole round update (model delta or
    gradient) clipped to L2 norm ``clip``, plus its share ``N(0, (noise_std * clip)^2)`` of the
    aggregate's noise per coordinate (``noise_std = sigma / sqrt(K)``)."""

    def __init__(self, *, clip: float, noise_std: float, rng: np.random.Generator):
        self.clip = float(clip)
        self.noise_std = float(noise_std)
        self._rng = rng

    def clipped(self, update: np.ndarray) -> np.ndarray:
        """``update * min(1, clip / ||update||)`` in float64."""
        u = np.asarray(update, dtype=np.float64)
        norm = float(np.linalg.norm(u))
        return u if norm <= self.clip else u * (self.clip / norm)

    def __call__(self, update: np.ndarray) -> np.ndarray:
        c = self.clipped(update)
        return c + self._rng.standard_normal(c.shape) * (self.noise_std * self.clip)


def per_sample_gradients(
    model: RegressionModel, xb: torch.Tensor, yb: torch.Tensor, task: str = "regression"
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Gradient of each sample's task loss (squared error, or binary cross-entropy on the
    output as logit for classification), ``[(b, *p.shape) per parameter]``, and the per-sample
    losses (``torch.func.vmap`` over ``grad``)."""
    names = [n for n, _ in model.named_parameters()]
    params = {n: p.detach() for n, p in model.named_parameters()}

    def loss_one(p: dict[str, torch.Tensor], x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        pred = functional_call(model, p, (x.unsqueeze(0),))
        if task == "classification":
            return torch.nn.functional.binary_cross_entropy_with_logits(
                pred, t.unsqueeze(0), reduction="sum"
            )
        return ((pred - t.unsqueeze(0)) ** 2).sum()

    grads, losses = vmap(grad_and_value(loss_one), in_dims=(None, 0, 0))(params, xb, yb)
    return [grads[n] for n in names], losses


@dataclass(frozen=True)
class PrivateResult(LocalResult):
    """A :class:`LocalResult` plus the org's signed-to-be privacy reports for the round."""

    reports: tuple[tuple[str, bytes], ...] = ()
    privacy: dict[str, Any] | None = None


class PrivateOrg:
    """Wraps an :class:`~matswarm.protocol.participant.OrgNode` and attaches the round's spend
    report (anchored on the ledger by the trust layer). Record-level: the node trains with its
    DP-SGD gradient. Org-level: the node trains as usual and its round update (delta from the
    round's start model, or gradient) is clipped and noised here, before it leaves the org.
    """

    def __init__(self, node: Any, plan: PrivacyPlan, rng: np.random.Generator):
        self.node = node
        self.name = node.name
        self.plan = plan
        noise_std = plan.mechanisms[node.name].noise_multiplier * plan.shares[node.name]
        self.update_noise: ClippedGaussianUpdate | None = None
        if plan.config.unit == "org":
            self.update_noise = ClippedGaussianUpdate(
                clip=plan.config.clip, noise_std=noise_std, rng=rng
            )
            return
        node.private = SampledGaussianGradient(
            clip=plan.config.clip,
            noise_std=noise_std,
            sample_rate=plan.mechanisms[node.name].sample_rate,
            divisor=plan.divisors[node.name],
            rng=rng,
        )

    def __getattr__(self, name: str) -> Any:  # the wrapped node's model, data, algorithm, ...
        node = self.__dict__.get("node")
        if node is None:  # during unpickling/copying, before __init__'s attributes exist
            raise AttributeError(name)
        return getattr(node, name)

    @property
    def n_samples(self) -> int:
        return self.node.n_samples

    def train(
        self, round_: int, start_params: np.ndarray, ring_in: RingMessage | None
    ) -> PrivateResult:
        if round_ > self.plan.rounds:
            raise BudgetError(
                f"{self.name}: round {round_} is beyond the {self.plan.rounds} rounds the "
                f"[privacy] epsilon = {self.plan.config.epsilon} budget was planned for"
            )
        res = self.node.train(round_, start_params, ring_in)
        doc = self.plan.report(self.name, round_)
        blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        base = {f.name: getattr(res, f.name) for f in fields(LocalResult)}
        if self.update_noise is not None:
            base |= self._noised(res, start_params)
        return PrivateResult(**base, reports=((REPORT_KIND, blob),), privacy=doc)

    def _noised(self, res: LocalResult, start: np.ndarray) -> dict[str, np.ndarray]:
        """The fields of ``res`` that carry its update, replaced by the clipped, noised one."""
        assert self.update_noise is not None
        noised = self.update_noise(res.update_vector(start))
        if res.gradient is not None:
            return {"gradient": noised.astype(np.float32)}
        # A delta travels as local params; start + noised delta is post-processing of it.
        return {"params": (np.asarray(start, dtype=np.float64) + noised).astype(np.float32)}


def make_private(
    engine: Any,
    config: PrivacyConfig,
    *,
    rule_name: str,
    model_name: str,
    noise_seed: int | None = None,
) -> PrivacyPlan:
    """Plan the budget for ``engine``'s orgs and wrap each in :class:`PrivateOrg` (in place).

    ``noise_seed`` makes noise and sampling reproducible (experiments only: anyone who knows it
    can remove the noise); without it every org seeds from OS entropy."""
    nodes: Sequence[Any] = engine.participants
    rows = {p.name: p.n_samples for p in nodes}
    plan = config.plan(engine.algorithm, rule_name, rows, model_name)
    engine.participants = [private_org(node, plan, i, noise_seed) for i, node in enumerate(nodes)]
    return plan


def private_org(
    node: Any, plan: PrivacyPlan, index: int, noise_seed: int | None = None
) -> PrivateOrg:
    """``node`` (the ``index``-th participant) wrapped in :class:`PrivateOrg` with its own
    generator: 128 bits of OS entropy, or (experiments only) one derived from ``noise_seed``.
    The in-process engine (:func:`make_private`) and a Flower node use this one function."""
    entropy = secrets.randbits(128) if noise_seed is None else [noise_seed, index, 0x5EC]
    return PrivateOrg(node, plan, np.random.default_rng(entropy))
