"""Wall time and accuracy of `matswarm experiment fedmdh` (issue 9: 5 seeds in under 10
minutes; FedMDH global RMSE <= 0.25 eV/atom on the FedMDH split).

python bench/fedmdh.py [--seeds 5] [--jobs 2] [--data DIR] [--rounds N]

Prints the machine (with its load average), the wall time and peak memory of the whole run,
the RMSE of every global model against the targets, and the CPU seconds of one FedMDH run
relative to one FedAvg-on-shared-columns run of the same seed (both measured in this run).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine, run_measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--data", default=None)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--keep", default=None, help="Keep the output folder here.")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or tmp
        cmd = [sys.executable, "-m", "matswarm.cli.main", "experiment", "fedmdh"]
        cmd += ["--seeds", str(args.seeds), "--jobs", str(args.jobs), "--output", out]
        if args.data:
            cmd += ["--data", args.data]
        if args.rounds:
            cmd += ["--rounds", str(args.rounds)]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall, rss, text = run_measured(cmd)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        doc = json.loads((Path(out) / "results.json").read_text())
    print(text)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average at the end {load:.2f}")
    print(
        f"experiment fedmdh, {args.seeds} seeds, {args.jobs} jobs: wall {wall:.0f} s "
        f"(target < 600), peak tree RSS {rss:.0f} MiB; CPU {cpu:.0f} s (user+sys of the whole "
        f"process tree), i.e. at least {cpu / 2:.0f} s of wall on an idle 2-core machine"
    )
    for r in doc["rows"]:
        if r["org"] == "global":
            print(f"  {r['method']:22s} RMSE {r['rmse_mean']:.4f} ± {r['rmse_std']:.4f} eV/atom")
    fed = next(r for r in doc["rows"] if r["method"] == "fedmdh" and r["org"] == "global")
    print(f"fedmdh global RMSE {fed['rmse_mean']:.4f} (target <= 0.25; poster 0.9006)")
    secs: dict[str, list[float]] = {}
    for p in doc["per_seed"]:
        secs.setdefault(p["method"], []).append(p["seconds"])
    base = statistics.mean(secs["fedavg-shared"])
    for m, s in secs.items():
        print(f"  {m:22s} {statistics.mean(s):6.1f} s per seed ({statistics.mean(s) / base:.2f}x "
              "FedAvg on shared columns)")  # fmt: skip


if __name__ == "__main__":
    main()
