"""Wall time and peak memory (whole process tree) of `matswarm demo`.

    python bench/demo_cost.py [--data DIR] [--repeat 1]

Targets from issue 2: under 60 s wall and 1.5 GB peak RSS on the 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine, run_measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="extra arguments passed to matswarm demo")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    for i in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "matswarm.cli.main", "demo", "--output", out, *args.extra]
            if args.data:
                cmd += ["--data", args.data]
            wall, rss, _ = run_measured(cmd)
            doc = json.loads((Path(out) / "results.json").read_text())
        g = {(r["method"], r["org"]): r["mse_mean"] for r in doc["rows"]}
        print(
            f"run {i + 1}: wall {wall:.1f} s (target < 60), peak tree RSS {rss:.0f} MiB "
            f"(target < 1536); FedAvg {g[('fedavg', 'global')]:.4f}, MatSwarm "
            f"{g[('matswarm', 'global')]:.4f}, Joint {g[('joint', 'global')]:.4f} eV/atom MSE"
        )


if __name__ == "__main__":
    main()
