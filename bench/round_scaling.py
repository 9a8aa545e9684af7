"""Time per round against the number of organisations K (synthetic data shaped like the
perovskite set: 3694 training rows, 147 features, split evenly), in-process, no trust layer.

    python bench/round_scaling.py [--rounds 5] [--ks 3,6,9,12,15]

Prints seconds per round for FedAvg and MatSwarm and the ratio to K = 3 measured in the same
process. Total rows are fixed, so local work per round grows with K (each org runs
local_steps minibatch steps), as in the paper's Fig. 5c.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine
from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.data import synthetic
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine, configure_torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ks", default="3,6,9,12,15")
    args = ap.parse_args()
    configure_torch()
    print(f"machine: {machine()}")
    print("K   algorithm  s/round  ratio-to-K=3")
    base: dict[str, float] = {}
    for k in [int(x) for x in args.ks.split(",")]:
        ds = synthetic.make_dataset(n_rows=3694, n_features=147, n_orgs=k, seed=0)
        for name in ("fedavg", "matswarm"):
            eng = build_engine(ds, ModelSpec("mlp"), make_algorithm(name), make_rule("mean"), 0)
            eng.run_round(1)  # warm-up
            t0 = time.perf_counter()
            for t in range(2, args.rounds + 2):
                eng.run_round(t)
            per = (time.perf_counter() - t0) / args.rounds
            base.setdefault(name, per)
            print(f"{k:<3} {name:10s} {per:7.3f}  {per / base[name]:5.2f}x")


if __name__ == "__main__":
    main()
