"""Wall time of `matswarm experiment table1` (issue 2 target: 10 seeds in under 10 minutes).

python bench/table1_time.py [--seeds 10] [--data DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine, run_measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--data", default=None)
    ap.add_argument("--models", default="rnn,lasso,mlp,lstm")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "matswarm.cli.main",
            "experiment",
            "table1",
            "--seeds",
            str(args.seeds),
            "--output",
            out,
            "--models",
            args.models,
        ]
        if args.data:
            cmd += ["--data", args.data]
        wall, rss, text = run_measured(cmd)
    print(text)
    print(
        f"table1 with {args.seeds} seeds ({args.models}): wall {wall:.0f} s (target < 600), "
        f"peak tree RSS {rss:.0f} MiB"
    )


if __name__ == "__main__":
    main()
