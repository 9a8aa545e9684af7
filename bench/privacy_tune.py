"""Choose the DP schedule (rounds, local steps, clip, lr) on validation rows carved from each
org's training data (never the test set). Prints validation MSE (eV/atom)² per configuration
and its ratio to the non-private run of the same schedule, with the seconds each run took.

    python bench/privacy_tune.py --mode central --epsilon 3 --grid 300x1:1.0:3e-3
    python bench/privacy_tune.py --mode local --epsilon 3 --grid 100x20:1.0:3e-3,50x20:0.5:3e-3

A grid entry is ROUNDSxLOCAL_STEPS:CLIP:LR (central mode uses FedAdam on gradients, local mode
FedAvg on deltas: the methods the privacy experiment runs).
"""

from __future__ import annotations

import argparse
import os
import time

from matswarm.data import perovskite
from matswarm.evaluation.metrics import Evaluator
from matswarm.experiments.privacy import method_for, run_private
from matswarm.models import ModelSpec
from matswarm.privacy import PrivacyConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--mode", choices=["local", "central"], default="central")
    ap.add_argument("--epsilon", type=float, default=3.0)
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--grid", default="300x1:1.0:3e-3")
    ap.add_argument("--server-lr", type=float, default=None)
    args = ap.parse_args()
    base = perovskite.load(perovskite.resolve(args.data))
    spec = ModelSpec("mlp")
    print(
        f"data={base.description} model=mlp mode={args.mode} epsilon={args.epsilon} "
        f"delta={args.delta} seeds={args.seeds} metric=validation MSE (20% of each org's rows); "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    for entry in args.grid.split(","):
        sched, clip, lr = entry.split(":")
        rounds, steps = (int(v) for v in sched.split("x"))
        row = []
        for eps in (None, args.epsilon):
            scores, t0 = [], time.perf_counter()
            for seed in range(args.seeds):
                train, val = base.carve_validation(0.2, seed=100 + seed)
                algo = method_for(
                    args.mode,
                    rounds=rounds,
                    local_steps=steps,
                    lr=float(lr),
                    server_lr=args.server_lr,
                )
                cfg = (
                    None
                    if eps is None
                    else PrivacyConfig(args.mode, eps, args.delta, clip=float(clip))
                )
                params, _ = run_private(train, spec, algo, cfg, seed)
                scores.append(Evaluator(val, spec).evaluate(params).mse)
            row.append((sum(scores) / len(scores), time.perf_counter() - t0))
        (mse0, s0), (mse1, s1) = row
        print(
            f"{entry:>22}  non-private {mse0:.4f} ({s0:.0f} s)  eps={args.epsilon}: {mse1:.4f} "
            f"({s1:.0f} s)  ratio {mse1 / mse0:.2f}"
        )


if __name__ == "__main__":
    main()
