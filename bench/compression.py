"""Global test MSE against update bytes per round, on the perovskite paper split.

Runs :func:`matswarm.experiments.compression.run_compression`: FedAvg (150 rounds x 20 local
steps, the task defaults) with uncompressed, 8-bit, 4-bit and top-k updates (fractions 0.3,
0.1, 0.03, 0.01), error feedback at each org, and prints per setting the MSE (mean and std over
seeds), its ratio to the uncompressed run of the same seeds, the bytes per round and the
traffic saved; the 8-bit bar of issue 11 and the seed article's "> 90 %" beside ours. It also
prints the machine's load average before and after (the 2-core machine is shared).

    python bench/compression.py                     # 3 seeds, jobs 2
    python bench/compression.py --seeds 1 --rounds 30 --out /tmp/comp
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from matswarm.data import perovskite
from matswarm.experiments.compression import PAPER_CLAIM, q8_verdict, run_compression


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=None, help="default: the task default (150)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("matswarm-results/compression"))
    args = ap.parse_args()

    ds = perovskite.load(perovskite.resolve(args.data))
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    run = run_compression(
        ds,
        seeds=range(args.seeds),
        rounds=args.rounds,
        jobs=args.jobs,
        output=args.out,
        on_done=lambda r: print(f"  done {r.method} seed {r.seed} ({r.seconds:.1f} s)", flush=True),
    )
    wall = time.perf_counter() - t0
    load1 = os.getloadavg()
    print(
        f"\nFedAvg, paper split ({', '.join(f'{o.name} {o.n}' for o in ds.orgs)} rows), "
        f"seeds 0..{args.seeds - 1}, rounds {args.rounds or 'default (150)'}"
    )
    print(
        f"{'setting':<12} {'MSE mean':>10} {'std':>9} {'x none':>8} {'bytes/round':>12} "
        f"{'saved':>7}  per-seed x none"
    )
    for r in run.rows:
        ratio = f"{r['mse_ratio']:.3f}" if r["mse_ratio"] is not None else "-"
        print(
            f"{r['method']:<12} {r['mse_mean']:>10.5f} {r['mse_std']:>9.5f} {ratio:>8} "
            f"{r['bytes_per_round']:>12.0f} {100 * r['reduction']:>6.1f}%  "
            + " ".join(f"{x:.2f}" for x in r["mse_ratio_per_seed"])
        )
    print("\n" + q8_verdict(run.rows))
    best = [r for r in run.rows if r["reduction"] > 0.9]
    print(f"paper: {PAPER_CLAIM}")
    print(
        "ours: settings with > 90 % less update traffic: "
        + (", ".join(f"{r['method']} (MSE x{r['mse_ratio']:.2f})" for r in best) or "none")
    )
    print(
        f"\nwall {wall:.0f} s with {args.jobs} job(s); load average {load0[0]:.1f} before, "
        f"{load1[0]:.1f} after ({os.cpu_count()} CPUs, {platform.machine()})"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    doc = {"rows": run.rows, "seconds": wall, "load": [load0, load1], "plot": str(run.plot)}
    (args.out / "results.json").write_text(json.dumps(doc, indent=1))
    print(f"wrote {args.out / 'results.json'} and {run.plot}")


if __name__ == "__main__":
    main()
