"""``matswarm experiment privacy``: what privacy costs in accuracy on the paper split.

Part "dp": global-model test MSE against the DP budget epsilon in (inf, 10, 3, 1) at
delta = 1e-5, for local DP (DP-SGD at each org, FedAvg on model deltas) and central DP (noise
shares summing to one Gaussian on the aggregate, FedAdam on gradients) at record level, and
org-level central DP (DP-FedAvg: FedAvg on clipped, noised deltas, equal-weight mean) on the
paper's 3 orgs and on the training rows split iid into 30; epsilon = inf is the same method
without clipping or noise. The schedules (rounds, local steps, clip, lr), per mode and epsilon,
were chosen on validation rows carved from the training orgs (``bench/privacy_tune.py``), never
on the test set.

The command runs the parts in :data:`PARTS` in order, each writing its rows and plots into
the same results.json; a part is ``fn(context) -> PartResult``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import FederatedAlgorithm, make_algorithm
from matswarm.data.federated import FederatedDataset
from matswarm.data.partition import SplitSpec, partition
from matswarm.evaluation.metrics import Evaluator
from matswarm.experiments.compare import load_data, provenance
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.runner import parallel_map
from matswarm.models import ModelSpec
from matswarm.privacy import PrivacyConfig, PrivacyPlan, make_private
from matswarm.runtime import build_engine, configure_torch

EPSILONS: tuple[float, ...] = (math.inf, 10.0, 3.0, 1.0)
DELTA = 1e-5
#: "central-org": org-level central DP (DP-FedAvg) on the paper's 3 orgs; "central-org-30": the
#: same with the training rows split iid into 30 orgs (org-level DP needs many orgs).
MODES = ("local", "central", "central-org", "central-org-30")
#: Orgs of an org-level mode (None: the paper's three files).
ORG_SPLIT: dict[str, int | None] = {"central-org": None, "central-org-30": 30}


@dataclass(frozen=True)
class Schedule:
    """A mode's method and schedule (chosen on validation rows, see the module docstring)."""

    rounds: int
    local_steps: int
    lr: float
    clip: float | None
    server_lr: float | None = None


#: Per (mode, epsilon), chosen with bench/privacy_tune.py on validation rows (validation MSE,
#: seed 0 unless noted; "2 seeds" is the mean of seeds 0-1). A mode's epsilon without an entry
#: uses its epsilon = 3 schedule.
#: central (eps 3): 200x1 clip 0.5 / 1.0 / 2.0: 0.0409 / 0.0407 / 0.0422 (2 seeds), 300x1: 0.0415.
#: local (2 seeds, clip 1.0; ROUNDSxSTEPS lr: eps inf / 10 / 3 / 1):
#:   200x5 3e-3: 0.0346 / 0.0625 / 0.0521 / 0.0875;  200x5 1e-3: 0.0435 / 0.0716 / 0.1020 / 0.2340
#:   100x10 3e-3: 0.0371 / 0.0779 / 0.0566 / 0.0881;  400x5 1e-3: 0.0376 / 0.0482 / 0.0642 / 0.1558
#:   150x20 1e-3: 0.0337 / 0.0490 / 0.0575 / 0.1305;  100x5 3e-3: 0.0486 / 0.0874 / 0.0649 / 0.1159
#:   400x5 3e-3: 0.0280 / 0.0517;  400x5 2e-3: 0.0300 / 0.0458;  300x10 1e-3: 0.0332 / 0.0425
#:   600x5 1e-3: 0.0351 / 0.0410;  300x5 3e-3: 0.0333 / - / 0.0515;  150x5 3e-3: 0.0405 / - / 0.0539
#:   200x5 5e-3: 0.0319 / - / 0.0590;  200x5 2e-3: 0.0359 / - / 0.0576;  100x5 5e-3: 0.0482 / - /
#:   - / 0.0838;  eps 1 at 5e-3: 200x5 0.0861, 200x2 0.0939, 100x10 0.0892;
#:   200x5 clip 0.5 3e-3: same as 1.0
#:   (Adam is scale-invariant once every row is clipped). Less noise (eps 10) wants more, smaller
#:   steps: with 200x5 3e-3 it scored worse than eps 3, hence the per-epsilon schedules.
#: central-org (eps 3; FedAvg on deltas, equal-weight mean, clip 0.1, lr 3e-3, server_lr s):
#:   3 orgs: 20x20 s=1: 7561 (diverges), 10x20 clip 0.05 s=1: 2.11, 20x20 s=0.1: 0.812,
#:   20x20 s=0.03: 0.840; 30 orgs: 20x20 s=1: 0.297, 50x20 s=1: 2.66, 20x20 s=0.1: 0.880.
SCHEDULES: dict[str, dict[float, Schedule]] = {
    "local": {
        math.inf: Schedule(rounds=400, local_steps=5, lr=3e-3, clip=1.0),
        10.0: Schedule(rounds=600, local_steps=5, lr=1e-3, clip=1.0),
        3.0: Schedule(rounds=200, local_steps=5, lr=3e-3, clip=1.0),
        1.0: Schedule(rounds=100, local_steps=5, lr=5e-3, clip=1.0),
    },
    "central": {3.0: Schedule(rounds=200, local_steps=1, lr=5e-3, clip=1.0)},
    "central-org": {3.0: Schedule(rounds=20, local_steps=20, lr=3e-3, clip=0.1, server_lr=0.1)},
    "central-org-30": {3.0: Schedule(rounds=20, local_steps=20, lr=3e-3, clip=0.1, server_lr=1.0)},
}


def schedule_for(mode: str, epsilon: float) -> Schedule:
    """The validation-chosen schedule of ``mode`` at ``epsilon`` (its epsilon = 3 one if none)."""
    if mode == "reference":
        return REFERENCE
    table = SCHEDULES[mode]
    return table.get(epsilon, table[3.0])


#: The default non-private FedAvg (the project's validation-chosen schedule), for reference.
REFERENCE = Schedule(rounds=150, local_steps=20, lr=3e-3, clip=None)


def method_for(
    mode: str, *, rounds: int, local_steps: int, lr: float, server_lr: float | None = None
) -> FederatedAlgorithm:
    """Local DP: FedAvg on deltas (DP-SGD local steps). Central DP: FedAdam on gradients (each
    round one DP-SGD step on the union of the orgs' rows, Adam at the server)."""
    if mode == "central":
        algo = make_algorithm(
            "fedadam",
            update="gradient",
            rounds=rounds,
            local_steps=local_steps,
            server_lr=server_lr if server_lr is not None else lr,
        )
    elif mode == "central-org":  # FedAvg on clipped, noised deltas; server_lr damps the noise
        algo = make_algorithm(
            "fedavg",
            rounds=rounds,
            local_steps=local_steps,
            lr=lr,
            server_lr=server_lr if server_lr is not None else 1.0,
        )
    else:
        algo = make_algorithm("fedavg", rounds=rounds, local_steps=local_steps, lr=lr)
    assert isinstance(algo, FederatedAlgorithm)
    return algo


def rule_for(mode: str) -> str:
    """The aggregation rule of a mode: org-level DP needs the equal-weight mean."""
    return "equal-mean" if mode == "central-org" else "mean"


def privacy_config(mode: str, epsilon: float, delta: float, clip: float | None) -> PrivacyConfig:
    """The [privacy] section of an experiment mode (``central-org``: central, unit ``org``)."""
    kw = {} if clip is None else {"clip": clip}
    if mode == "central-org":
        return PrivacyConfig("central", epsilon, delta, unit="org", **kw)
    return PrivacyConfig(mode, epsilon, delta, **kw)


def run_private(
    dataset: FederatedDataset,
    model: ModelSpec,
    algorithm: FederatedAlgorithm,
    privacy: PrivacyConfig | None,
    seed: int,
    rule: str = "mean",
) -> tuple[np.ndarray, PrivacyPlan | None]:
    """Train in process (noise seeded from ``seed``: reproducible, experiments only)."""
    configure_torch()
    engine = build_engine(dataset, model, algorithm, make_rule(rule), seed)
    plan = None
    if privacy is not None:
        plan = make_private(engine, privacy, rule_name=rule, model_name=model.name, noise_seed=seed)
    engine.run()
    return engine.run_state.global_params, plan


# -- the experiment ---------------------------------------------------------------------------
@dataclass
class Context:
    """What every part gets: the paper split, the model, seeds, workers, output folder."""

    dataset: FederatedDataset
    model: ModelSpec
    seeds: list[int]
    jobs: int
    output: Path
    on_done: Callable[[str], None] | None = None


@dataclass
class PartResult:
    name: str
    rows: list[dict[str, Any]]
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    planned_units: int = 0


@dataclass(frozen=True)
class _DPUnit:
    dataset: FederatedDataset
    model: ModelSpec
    mode: str
    epsilon: float
    seed: int


def _run_dp_unit(u: _DPUnit) -> dict[str, Any]:
    t0 = time.perf_counter()
    s = schedule_for(u.mode, u.epsilon)
    mode = "central-org" if u.mode in ORG_SPLIT else u.mode
    algo = method_for(
        mode, rounds=s.rounds, local_steps=s.local_steps, lr=s.lr, server_lr=s.server_lr
    )
    cfg = None if math.isinf(u.epsilon) else privacy_config(mode, u.epsilon, DELTA, s.clip)
    data = u.dataset
    if ORG_SPLIT.get(u.mode):
        data = partition(data, SplitSpec("iid", orgs=ORG_SPLIT[u.mode]))
    params, plan = run_private(data, u.model, algo, cfg, u.seed, rule=rule_for(mode))
    m = Evaluator(u.dataset, u.model).evaluate(params)
    spent = None if plan is None else max(plan.epsilon_after(s.rounds).values())
    sigma = None if plan is None else max(x.noise_multiplier for x in plan.mechanisms.values())
    return {
        "mode": u.mode,
        "epsilon": u.epsilon,
        "seed": u.seed,
        "method": algo.name,
        "metrics": m.as_dict(),
        "epsilon_spent": spent,
        "noise_multiplier": sigma,
        "seconds": time.perf_counter() - t0,
    }


def dp_part(ctx: Context) -> PartResult:
    """Global test MSE vs epsilon for local and central DP."""
    units = [
        _DPUnit(ctx.dataset, ctx.model, mode, eps, seed)
        for mode in MODES
        for eps in EPSILONS
        for seed in ctx.seeds
    ] + [_DPUnit(ctx.dataset, ctx.model, "reference", math.inf, seed) for seed in ctx.seeds]

    def done(r: dict[str, Any]) -> None:
        if ctx.on_done:
            ctx.on_done(f"dp {r['mode']} eps={r['epsilon']} seed {r['seed']}")

    # Local DP-SGD per-sample gradients cost most: start them first.
    cost = {"local": 3.0, "central": 1.0, "reference": 2.0, "central-org": 0.3}
    cost["central-org-30"] = 1.0
    results = parallel_map(_run_dp_unit, units, ctx.jobs, on_done=done, cost=lambda u: cost[u.mode])
    rows = []
    cells = [(mode, eps) for mode in MODES for eps in EPSILONS] + [("reference", math.inf)]
    for mode, eps in cells:
        rs = [r for r in results if r["mode"] == mode and r["epsilon"] == eps]
        mse = np.array([r["metrics"]["mse"] for r in rs])
        spent = [r["epsilon_spent"] for r in rs if r["epsilon_spent"] is not None]
        rows.append(
            {
                "method": rs[0]["method"],
                "model": ctx.model.name,
                "org": "global",
                "mse_mean": float(mse.mean()),
                "mse_std": float(mse.std(ddof=1)) if len(rs) > 1 else 0.0,
                "rmse_mean": float(np.mean([r["metrics"]["rmse"] for r in rs])),
                "mae_mean": float(np.mean([r["metrics"]["mae"] for r in rs])),
                "r2_mean": float(np.mean([r["metrics"]["r2"] for r in rs])),
                "n_seeds": len(rs),
                "part": "dp",
                "mode": mode,
                "epsilon": None if math.isinf(eps) else eps,
                "delta": DELTA,
                "epsilon_spent": max(spent) if spent else None,
                "noise_multiplier": rs[0]["noise_multiplier"],
                "schedule": vars(schedule_for(mode, eps)),
                "orgs": ORG_SPLIT.get(mode) or len(ctx.dataset.orgs),
                "seconds": float(sum(r["seconds"] for r in rs)),
            }
        )
    ref = next(r for r in rows if r["mode"] == "reference")
    for mode in MODES:
        base = next(r for r in rows if r["mode"] == mode and r["epsilon"] is None)
        for r in rows:
            if r["mode"] == mode:
                r["ratio_to_nonprivate"] = r["mse_mean"] / base["mse_mean"]
                r["ratio_to_reference"] = r["mse_mean"] / ref["mse_mean"]
    plot = _dp_plot(rows, ctx.output / "privacy_mse_vs_epsilon.png")
    return PartResult(
        "dp",
        rows,
        files=[plot.name],
        notes=[
            "epsilon = null is the non-private run (same method, no clip/noise; schedule chosen "
            "on validation per (mode, epsilon), see SCHEDULES); mode 'reference' is the default "
            "non-private FedAvg (150 rounds x 20 steps)",
            "central-org / central-org-30: org-level DP (DP-FedAvg, equal-weight mean of updates "
            "clipped to L2 norm C, noise sigma*C/K per coordinate on the mean) on the paper's 3 "
            "orgs / the training rows split iid into 30 orgs; it hides whether an org took part, "
            "and needs many orgs: with K = 3 the noise swamps a ~10k-parameter update",
            "central: record-level DP of the aggregate (global models); an individual update "
            "carries 1/sqrt(K) of the noise (secure aggregation hides it)",
        ],
        planned_units=len(units),
    )


def _dp_plot(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    finite = [e for e in EPSILONS if not math.isinf(e)]
    inf_x = max(finite) * 3  # epsilon = inf drawn at the right edge
    ref = next(r for r in rows if r["mode"] == "reference")
    ax.axhline(ref["mse_mean"], color="grey", ls="--", label="non-private FedAvg (default)")
    for mode in MODES:
        rs = [r for r in rows if r["mode"] == mode]
        xs = [inf_x if r["epsilon"] is None else r["epsilon"] for r in rs]
        order = np.argsort(xs)
        ax.errorbar(
            np.array(xs)[order],
            np.array([r["mse_mean"] for r in rs])[order],
            yerr=np.array([r["mse_std"] for r in rs])[order],
            marker="o",
            capsize=3,
            label=f"{mode} DP ({rs[0]['method']})",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")  # org-level DP at few orgs is orders of magnitude above the rest
    ax.set_xticks([*finite, inf_x], [*(f"{e:g}" for e in finite), "∞"])
    ax.set_xlabel(f"ε (δ = {DELTA:g})")
    ax.set_ylabel("global test MSE (eV/atom)²")
    ax.set_title("Privacy vs accuracy, paper split, MLP")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Rounds of the compression part (None: FedAvg's default schedule, as every other run).
COMPRESSION_ROUNDS: int | None = None


def compression_part(ctx: Context) -> PartResult:
    """Global test MSE vs update bytes on the wire (:mod:`matswarm.experiments.compression`):
    FedAvg uncompressed, 8-/4-bit quantisation and top-k, each with error feedback."""
    from matswarm.experiments.compression import PAPER_CLAIM, q8_verdict, run_compression

    def done(r: Any) -> None:
        if ctx.on_done:
            ctx.on_done(f"compression {r.method} seed {r.seed}")

    run = run_compression(
        ctx.dataset,
        seeds=ctx.seeds,
        rounds=COMPRESSION_ROUNDS,
        model=ctx.model,
        jobs=ctx.jobs,
        output=ctx.output,
        on_done=done,
    )
    rows = [{"part": "compression", **r} for r in run.rows]
    files = [str(run.plot)] if run.plot is not None else []
    return PartResult("compression", rows, files, [q8_verdict(run.rows), PAPER_CLAIM])


#: The experiment's parts, run in order.
PARTS: dict[str, Callable[[Context], PartResult]] = {
    "dp": dp_part,
    "compression": compression_part,
}


def run_privacy_experiment(
    *,
    seeds: int,
    data: Path | None,
    output: Path,
    jobs: int,
    parts: Sequence[str] | None = None,
    on_done: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the chosen parts and write results.json (+ plots) to ``output``."""
    chosen = list(parts) if parts else list(PARTS)
    unknown = [p for p in chosen if p not in PARTS]
    if unknown:
        raise ValueError(f"unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    cfg = ExperimentConfig.from_dict(
        {"data": {"source": "perovskite", **({"path": str(data)} if data else {})}},
        source="privacy",
    )
    dataset, _ = load_data(cfg)
    output.mkdir(parents=True, exist_ok=True)
    ctx = Context(dataset, ModelSpec("mlp"), list(range(seeds)), jobs, output, on_done)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    results = [PARTS[p](ctx) for p in chosen]
    seconds = time.perf_counter() - t0
    doc = {
        "units": dataset.schema.unit,
        "rows": [r for part in results for r in part.rows],
        "parts": {p.name: {"files": p.files, "notes": p.notes} for p in results},
        "provenance": provenance(dataset, seconds)
        | {"load_average_start": load0, "load_average_end": os.getloadavg()[0]},
        "seconds": seconds,
        "files": [f for p in results for f in p.files],
    }
    (output / "results.json").write_text(json.dumps(doc, indent=2))
    return doc


def privacy_lines(results: Sequence[Any]) -> list[str]:
    """Per-round DP spend of each private method (its first seed), for the console."""
    out = []
    seen: set[str] = set()
    for r in results:
        p = getattr(r, "privacy", None)
        if not p or r.method in seen:
            continue
        seen.add(r.method)
        eps = ", ".join(f"{t}: {e:.3f}" for t, e in enumerate(p["epsilon_per_round"], 1))
        out.append(
            f"{r.method} seed {r.seed}, DP {p['mode']} (target epsilon {p['epsilon']}, delta "
            f"{p['delta']:g}, {p['accountant']}; {p['guarantee']}): epsilon spent after round "
            + eps
        )
    return out


def print_privacy_experiment(console: Any, doc: dict[str, Any], output: Path) -> None:
    """The experiment's table(s) on the console."""
    from rich.table import Table

    dp_rows = [r for r in doc["rows"] if r.get("part") == "dp"]
    if dp_rows:
        table = Table(
            title="Global test MSE (eV/atom)² vs DP epsilon (delta 1e-5), paper split, MLP; "
            "mean ± std over seeds",
            caption=f"{doc['seconds']:.0f} s; no paper reports these numbers (the MatSwarm "
            "paper lists DP as future work)",
        )
        for col in ("mode", "method", "epsilon", "sigma", "MSE", "× non-private", "× FedAvg"):
            table.add_column(col, justify="left" if col in ("mode", "method") else "right")
        for r in dp_rows:
            table.add_row(
                r["mode"],
                r["method"],
                "∞" if r["epsilon"] is None else f"{r['epsilon']:g}",
                "-" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3g}",
                f"{r['mse_mean']:.4f} ± {r['mse_std']:.4f}",
                f"{r.get('ratio_to_nonprivate', 1.0):.2f}",
                f"{r.get('ratio_to_reference', 1.0):.2f}",
            )
        console.print(table)
    comp_rows = [r for r in doc["rows"] if r.get("part") == "compression"]
    if comp_rows:
        table = Table(
            title="Global test MSE (eV/atom)² vs update bytes per round, paper split, FedAvg, "
            "MLP; mean ± std over seeds",
        )
        for col in ("setting", "MSE", "× none", "bytes/round", "saved"):
            table.add_column(col, justify="left" if col == "setting" else "right")
        for r in comp_rows:
            ratio = r.get("mse_ratio")
            table.add_row(
                r["method"],
                f"{r['mse_mean']:.4f} ± {r['mse_std']:.4f}",
                "-" if ratio is None else f"{ratio:.2f}",
                f"{r['bytes_per_round']:,.0f}",
                f"{100 * r['reduction']:.1f} %",
            )
        console.print(table)
    for name, part in doc["parts"].items():
        for note in part["notes"]:
            console.print(f"[dim]{name}: {note}[/]")
    console.print(f"Wrote results.json and {', '.join(doc['files'])} to [bold]{output}[/]")
