"""Choose local-training hyperparameters on validation rows carved from each org's own training
data (never the test set). Prints validation MSE (target units) per configuration.

    python bench/tune.py [--data DIR] [--seeds 2] [--split paper]
    python bench/tune.py --quick --schedules 150x20,75x40 --lrs 3e-3   # rounds x local steps
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.data import SplitSpec, partition, perovskite
from matswarm.evaluation.metrics import Evaluator
from matswarm.models import ModelSpec
from matswarm.runtime import run_federated


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--split", default="paper")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--quick", action="store_true", help="only the schedule grid")
    ap.add_argument(
        "--schedules",
        default="100x20,200x10,50x40",
        help="comma-separated ROUNDSxLOCAL_STEPS pairs for the FedAvg grid",
    )
    ap.add_argument("--lrs", default="2e-3,3e-3,5e-3", help="comma-separated learning rates")
    args = ap.parse_args()
    schedules = [tuple(int(v) for v in s.split("x")) for s in args.schedules.split(",")]
    lrs = [float(v) for v in args.lrs.split(",")]
    ds = partition(perovskite.load(perovskite.resolve(args.data)), SplitSpec(args.split))
    spec = ModelSpec(args.model)
    grid: list[tuple[str, dict]] = []
    for (r, e), lr in itertools.product(schedules, lrs):
        grid.append(("fedavg", dict(rounds=r, local_steps=e, lr=lr)))
    if not args.quick:
        for lam, gamma in itertools.product([0.0, 0.1, 1.0], [0.0, 0.5, 2.0]):
            grid.append(
                ("matswarm", dict(rounds=100, local_steps=20, lr=3e-3, lam=lam, gamma=gamma))
            )
    print(
        f"data={ds.description} model={args.model} seeds={args.seeds} "
        "metric=validation MSE (eV/atom), 20% of each org's rows"
    )
    for name, params in grid:
        scores, t0 = [], time.perf_counter()
        for seed in range(args.seeds):
            train, _ = ds.carve_validation(0.2, seed=100 + seed)
            run = run_federated(
                train, spec, make_algorithm(name, **params), make_rule("mean"), seed
            )
            scores.append(Evaluator(train, spec).evaluate(run.global_params).mse)
        print(
            f"{name:9s} {params}  val_mse={np.mean(scores):.4f} ± {np.std(scores):.4f}  "
            f"({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
