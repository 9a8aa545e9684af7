"""Issue 10 acceptance figure: federated gradient-boosted trees (fedgbdt, histogram aggregation)
beside the federated MLP on the perovskite paper split.

    python bench/gbdt.py [--data DIR] [--mlp-seeds 1] [--validation] [--trees 300 --depth 5
                         --bins 32 --lr 0.1]

Runs, in one process pool: gbdt Solo (each org alone), fedgbdt (federated) and Joint (all rows
pooled: the centralised reference, same algorithm on one participant), and the MLP with FedAvg
(default hyperparameters). Prints test MSE (eV/atom)^2 with the issue's reference figures and
checks: fedgbdt global MSE <= 0.010 and below the federated MLP's. ``--validation`` evaluates on
validation rows carved from each org's training data instead (how the gbdt defaults were
chosen; the test table is not read).
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

#: Issue 10: a centralised tree model reaches about 0.005 here; the federated MLP about 0.022.
REFERENCE = {"centralised tree (issue 10)": 0.005, "federated MLP (issue 10)": 0.022}
TARGET = 0.010


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--mlp-seeds", type=int, default=1, help="seeds of the FedAvg MLP (0: skip)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--validation", action="store_true", help="score on carved validation rows")
    ap.add_argument("--trees", type=int, default=None)
    ap.add_argument("--depth", type=int, default=None)
    ap.add_argument("--bins", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    data = {"source": "perovskite", **({"path": args.data} if args.data else {})}
    model = {"name": "gbdt"}
    for k in ("trees", "depth", "bins"):
        if getattr(args, k) is not None:
            model[k] = getattr(args, k)
    training = {"methods": ["solo", "fedgbdt", "joint"]}
    if args.lr is not None:
        training["lr"] = args.lr
    with tempfile.TemporaryDirectory() as out:
        trees = ExperimentConfig.from_dict(
            {
                "data": data,
                "model": model,
                "training": training,
                "run": {"seeds": 1, "jobs": args.jobs, "output": out},
            }
        )
        ds, _ = load_data(trees)
        if args.validation:
            ds, _ = ds.carve_validation(0.2, seed=0)
        t0 = time.perf_counter()
        rows = list(run_comparison(trees, ds, plots=False).rows)
        gbdt_s = time.perf_counter() - t0
        mlp_s = 0.0
        if args.mlp_seeds:
            mlp = ExperimentConfig.from_dict(
                {
                    "data": data,
                    "training": {"methods": ["fedavg"]},
                    "run": {"seeds": args.mlp_seeds, "jobs": args.jobs, "output": out},
                }
            )
            t0 = time.perf_counter()
            rows += run_comparison(mlp, ds, plots=False).rows
            mlp_s = time.perf_counter() - t0
    m = trees.model
    split = "validation rows carved from each org (seed 0)" if args.validation else "test table"
    print(
        f"\nperovskite paper split, scored on the {split}; gbdt trees={m.trees} depth={m.depth} "
        f"bins={m.bins} lr={trees.training['lr']} ({trees.training['rounds']} rounds, "
        f"{gbdt_s:.0f} s); FedAvg MLP defaults, {args.mlp_seeds} seed(s) ({mlp_s:.0f} s)"
    )
    print(f"{'model':8s} {'method':9s} {'org':7s} {'MSE (eV/atom)^2':>20s}")
    mse = {}
    for r in rows:
        mse[(r.model, r.method, r.org)] = r.mse_mean
        print(f"{r.model:8s} {r.method:9s} {r.org:7s} {r.mse_mean:12.5f} ± {r.mse_std:.5f}")
    for name, value in REFERENCE.items():
        print(f"{'':8s} {name:26s} {value:7.3f}")
    fed = mse[("gbdt", "fedgbdt", "global")]
    joint = mse[("gbdt", "joint", "global")]
    print(f"\nfedgbdt / Joint gbdt (centralised, same algorithm) = {fed / joint:.3f}")
    checks = [(f"fedgbdt global MSE {fed:.5f} <= {TARGET}", fed <= TARGET)]
    if ("mlp", "fedavg", "global") in mse:
        mlp_g = mse[("mlp", "fedavg", "global")]
        checks.append((f"fedgbdt {fed:.5f} < FedAvg MLP global {mlp_g:.5f}", fed < mlp_g))
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")


if __name__ == "__main__":
    main()
