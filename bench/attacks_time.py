"""Benchmark and tuning for ``matswarm experiment attacks`` (MatSwarm Fig. 1).

python bench/attacks_time.py [--data DIR] [--seeds 3] [--jobs 2] [--rounds N]
    Runs the full experiment (as the CLI does) and prints its wall time, CPU count and the
    per-cell cost; the target is < 10 minutes for 3 seeds on a 2-core machine.

python bench/attacks_time.py --tune [--data DIR]
    Chooses the gradient-mode hyperparameters (server_lr, minibatches per gradient) on
    VALIDATION rows carved from each organisation's training rows (20%), clean runs with the
    Mean rule, 4 i.i.d. organisations: never on the test set. Prints validation MSE (eV/atom)².
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def tune(data: str | None, seeds: int, rounds: int) -> None:
    from matswarm.aggregation import make_rule
    from matswarm.algorithms import make_algorithm
    from matswarm.evaluation.metrics import Evaluator
    from matswarm.experiments.attacks import BATCH_SIZE, SPEC, load_split
    from matswarm.runtime import build_engine, configure_torch

    configure_torch()
    ds = load_split(Path(data) if data else None, 4, "iid")
    print(f"validation MSE (eV/atom)^2 after {rounds} rounds, mean ± std over {seeds} seeds")
    for server_lr, steps in itertools.product([0.05, 0.1, 0.2], [1, 2, 4]):
        scores, t0 = [], time.perf_counter()
        for seed in range(seeds):
            train, _ = ds.carve_validation(0.2, seed=100 + seed)
            algo = make_algorithm(
                "fedavg",
                update="gradient",
                server_lr=server_lr,
                rounds=rounds,
                local_steps=steps,
                batch_size=BATCH_SIZE,
            )
            eng = build_engine(train, SPEC, algo, make_rule("mean"), seed)
            try:
                run = eng.run()
                scores.append(Evaluator(train, SPEC).evaluate(run.global_params).mse)
            except ValueError:
                scores.append(float("inf"))
        print(
            f"server_lr={server_lr:<5} local_steps={steps}  val_mse={np.mean(scores):.4f} ± "
            f"{np.std(scores):.4f}  ({time.perf_counter() - t0:.1f}s)",
            flush=True,
        )


def bench(data: str | None, seeds: int, jobs: int, rounds: int | None) -> None:
    from matswarm.experiments.attacks import ROUNDS, run_attacks_experiment

    n_done = 0

    def done(_r) -> None:
        nonlocal n_done
        n_done += 1

    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        cpu0 = os.times()
        doc = run_attacks_experiment(
            seeds=seeds,
            rounds=rounds or ROUNDS,
            output=Path(out),
            jobs=jobs,
            data=Path(data) if data else None,
            on_done=done,
        )
        wall = time.perf_counter() - t0
        cpu1 = os.times()
    cpu = (cpu1.children_user + cpu1.children_system + cpu1.user + cpu1.system) - (
        cpu0.children_user + cpu0.children_system + cpu0.user + cpu0.system
    )
    print(
        f"attacks experiment: {n_done} runs, {seeds} seeds, {rounds or ROUNDS} rounds, "
        f"jobs={jobs}, CPUs={len(os.sched_getaffinity(0))}: wall {wall:.1f} s, CPU {cpu:.1f} s, "
        f"{'OK' if wall < 600 else 'OVER'} the 10-minute budget"
    )
    print(doc["summary_text"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", default=None)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--tune", action="store_true")
    args = ap.parse_args()
    if args.tune:
        from matswarm.experiments.attacks import ROUNDS

        tune(args.data, min(args.seeds, 2), args.rounds or ROUNDS)
    else:
        bench(args.data, args.seeds, args.jobs, args.rounds)


if __name__ == "__main__":
    main()
