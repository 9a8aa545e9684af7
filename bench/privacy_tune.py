"""Choose the DP schedule (rounds, local steps, clip, lr) on validation rows carved from each
org's training data (never the test set). Prints validation MSE (eV/atom)² per configuration
and epsilon, its ratio to the non-private run of the same schedule, and the seconds each run took.

    python bench/privacy_tune.py --mode central --epsilon 3 --grid 300x1:1.0:3e-3
    python bench/privacy_tune.py --mode local --epsilon 10,3,1 --grid 100x20:1.0:3e-3,200x5:1.0:3e-3
    python bench/privacy_tune.py --mode central-org --orgs 30 --epsilon 3 --grid 50x20:0.1:3e-3

A grid entry is ROUNDSxLOCAL_STEPS:CLIP:LR (the methods the privacy experiment runs:
:func:`matswarm.experiments.privacy.method_for`). ``--orgs N`` re-splits the training rows iid
into N orgs (before carving validation rows) instead of the paper's three files.
"""

from __future__ import annotations

import argparse
import os
import time

from matswarm.data import perovskite
from matswarm.data.partition import SplitSpec, partition
from matswarm.evaluation.metrics import Evaluator
from matswarm.experiments.privacy import method_for, privacy_config, rule_for, run_private
from matswarm.models import ModelSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--mode", choices=["local", "central", "central-org"], default="central")
    ap.add_argument("--epsilon", default="3", help="comma-separated budgets")
    ap.add_argument("--delta", type=float, default=1e-5)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--orgs", type=int, default=None, help="iid re-split into this many orgs")
    ap.add_argument("--grid", default="300x1:1.0:3e-3")
    ap.add_argument("--server-lr", type=float, default=None)
    ap.add_argument("--skip-nonprivate", action="store_true")
    args = ap.parse_args()
    base = perovskite.load(perovskite.resolve(args.data))
    if args.orgs is not None:
        base = partition(base, SplitSpec("iid", orgs=args.orgs))
    spec = ModelSpec("mlp")
    epsilons = [float(e) for e in args.epsilon.split(",")]
    print(
        f"data={base.description} orgs={len(base.orgs)} model=mlp mode={args.mode} "
        f"epsilon={epsilons} delta={args.delta} seeds={args.seeds} metric=validation MSE "
        f"(20% of each org's rows); load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    for entry in args.grid.split(","):
        sched, clip, lr = entry.split(":")
        rounds, steps = (int(v) for v in sched.split("x"))
        cells = ([] if args.skip_nonprivate else [None]) + epsilons
        out = []
        for eps in cells:
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
                    None if eps is None else privacy_config(args.mode, eps, args.delta, float(clip))
                )
                params, _ = run_private(train, spec, algo, cfg, seed, rule=rule_for(args.mode))
                scores.append(Evaluator(val, spec).evaluate(params).mse)
            out.append((eps, sum(scores) / len(scores), time.perf_counter() - t0))
        ref = out[0][1] if not args.skip_nonprivate else None
        cols = "  ".join(
            f"{'non-private' if e is None else f'eps={e:g}'} {m:.4f} ({s:.0f} s)"
            + ("" if ref is None or e is None else f" x{m / ref:.2f}")
            for e, m, s in out
        )
        print(f"{entry:>22}  {cols}  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
