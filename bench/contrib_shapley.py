"""Contribution accounting: does Shapley find a label flipper, and what does it cost per round?

For ``--seeds`` seeds, a synthetic i.i.d. task (``--orgs`` orgs, one flipping its labels,
FedAvg ``--rounds`` x 10 local steps, no trust layer) runs with exact Shapley values combined
by median (the default) and by pooled MSE; it prints in how many seeds the flipper has the
lowest task value, and for one seed how far Monte-Carlo (``--permutations`` orders) lands from
the exact values in units of its stated standard error. Then the CPU per round of a plain round
against the same round with contribution accounting (same process, interleaved), as a ratio.

    python bench/contrib_shapley.py                     # 4 orgs, 10 seeds
    python bench/contrib_shapley.py --orgs 8 --seeds 20
    python bench/contrib_shapley.py --data perovskite   # 800 rows ($MATSWARM_DATA)
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.attacks.data_attacks import LabelFlip, poison_dataset
from matswarm.contrib import ContributionSettings, attach_contributions, split_validation
from matswarm.data import SplitSpec, partition, perovskite, synthetic
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine, configure_torch

SPEC = ModelSpec("mlp", hidden=8)


def data(seed: int, orgs: int, source: str):
    """i.i.d. orgs: synthetic (80 rows each), or 800 random perovskite rows split i.i.d."""
    if source == "synthetic":
        return synthetic.make_dataset(
            n_rows=80 * orgs, n_features=12, n_orgs=orgs, n_test=40, seed=seed, label_shift=0.0
        )
    base = perovskite.load(perovskite.resolve(None))
    pool = base.pooled()
    rows = np.random.default_rng(seed).permutation(pool.n)[:800]
    sub = base.with_orgs([pool.subset(rows, name="pool")], "800 perovskite rows")
    return partition(sub, SplitSpec(kind="iid", orgs=orgs, seed=seed))


def task(seed: int, orgs: int, rounds: int, settings: ContributionSettings | None, source: str):
    ds = poison_dataset(data(seed, orgs, source), {"org2": LabelFlip()})
    algo = make_algorithm("fedavg", rounds=rounds, local_steps=10, lr=1e-2, batch_size=32)
    st = settings or ContributionSettings()
    train, validators = split_validation(ds, SPEC, st, seed)
    eng = build_engine(train, SPEC, algo, make_rule("mean"), seed)
    hooks = attach_contributions(eng, validators, st) if settings is not None else None
    return eng, hooks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orgs", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--permutations", type=int, default=200)
    ap.add_argument("--data", choices=("synthetic", "perovskite"), default="synthetic")
    args = ap.parse_args()
    configure_torch()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPU(s), load "
        f"{os.getloadavg()[0]:.2f}; {args.data} data, {args.orgs} orgs, org2 flips its labels, "
        f"{args.rounds} rounds, seeds 0..{args.seeds - 1}"
    )
    for combine in ("median", "pooled"):
        last = 0
        for seed in range(args.seeds):
            st = ContributionSettings(combine=combine)
            eng, hooks = task(seed, args.orgs, args.rounds, st, args.data)
            eng.run()
            values = hooks.task_document()["values"]
            last += min(values, key=values.get) == "org2"
        print(f"combine={combine}: flipper has the lowest Shapley value in {last}/{args.seeds}")

    exact_eng, exact = task(0, args.orgs, 1, ContributionSettings(), args.data)
    exact_eng.run()
    mc_settings = ContributionSettings(method="shapley-mc", permutations=args.permutations)
    mc_eng, mc = task(0, args.orgs, 1, mc_settings, args.data)
    mc_eng.run()
    e, m = exact.rounds[1], mc.rounds[1]
    z = {o: abs(m.values[o] - e.values[o]) / m.stderr[o] for o in e.values}
    print(
        f"MC ({args.permutations} orders) vs exact, round 1, seed 0: |diff| / stated stderr = "
        + ", ".join(f"{o} {v:.2f}" for o, v in z.items())
    )

    plain, _ = task(0, args.orgs, args.rounds, None, args.data)
    with_c, _ = task(0, args.orgs, args.rounds, ContributionSettings(), args.data)
    times: dict[str, list[float]] = {"plain": [], "contrib": []}
    for t in range(1, args.rounds + 1):
        for name, eng in (("plain", plain), ("contrib", with_c)):
            t0 = time.process_time()
            eng.run_round(t)
            times[name].append(time.process_time() - t0)
    p, c = statistics.median(times["plain"]), statistics.median(times["contrib"])
    print(
        f"CPU per round: plain {1000 * p:.1f} ms, with exact Shapley ({2**args.orgs} "
        f"candidates x {args.orgs} validators) {1000 * c:.1f} ms, ratio {c / p:.2f}"
    )


if __name__ == "__main__":
    main()
