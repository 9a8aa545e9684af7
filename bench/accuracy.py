"""Issue 2 acceptance figures: paper split, MLP, N seeds (default 5), default hyperparameters.

    python bench/accuracy.py [--seeds 5] [--data DIR] [--jobs 2]

Prints every model's test MSE (eV/atom) beside the paper's Table 1 MLP column and checks:
federated global MSE <= 0.025; Joint <= 0.02; every Solo-Org worse than the global model;
MatSwarm(Org i) better than Solo-Org i.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine
from matswarm.experiments.compare import load_data, run_comparison
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.table1 import PAPER_TABLE1, row_label


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--data", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as out:
        cfg = ExperimentConfig.from_dict(
            {
                "data": {"source": "perovskite", **({"path": args.data} if args.data else {})},
                "training": {"methods": ["solo", "fedavg", "matswarm", "joint"]},
                "run": {"seeds": args.seeds, "jobs": args.jobs, "output": out},
            }
        )
        ds, _ = load_data(cfg)
        t0 = time.perf_counter()
        report = run_comparison(cfg, ds, plots=False)
        wall = time.perf_counter() - t0
    mse = {(r.method, r.org): (r.mse_mean, r.mse_std) for r in report.rows}
    paper = PAPER_TABLE1["mlp"]
    print(f"\npaper split, MLP, seeds 0..{args.seeds - 1}, {wall:.0f} s; test MSE eV/atom")
    print(f"{'model':22s} {'ours':>18s} {'paper (Table 1)':>18s}")
    for (method, org), (m, s) in mse.items():
        label = row_label(method, org) if method != "fedavg" else f"FedAvg({org})"
        p = paper.get(label)
        print(f"{label:22s} {m:9.4f} ± {s:.4f} {'' if p is None else f'{p[0]:9.4f} ± {p[1]:.4f}'}")
    checks = []
    for fed in ("fedavg", "matswarm"):
        g = mse[(fed, "global")][0]
        checks.append((f"{fed} global MSE {g:.4f} <= 0.025", g <= 0.025))
        for i in (1, 2, 3):
            solo = mse[("solo", f"org{i}")][0]
            checks.append((f"Solo-Org{i} {solo:.4f} worse than {fed} global {g:.4f}", solo > g))
    joint = mse[("joint", "global")][0]
    checks.append((f"Joint {joint:.4f} <= 0.02", joint <= 0.02))
    for i in (1, 2, 3):
        loc, solo = mse[("matswarm", f"org{i}")][0], mse[("solo", f"org{i}")][0]
        checks.append(
            (f"MatSwarm(Org{i}) {loc:.4f} better than Solo-Org{i} {solo:.4f}", loc < solo)
        )
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
