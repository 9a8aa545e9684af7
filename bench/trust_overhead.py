"""Wall time of `matswarm demo` with the full trust layer against the same run without it,
measured back to back in this process's session (issue 3 target: ratio <= 1.3).

    python bench/trust_overhead.py [--data DIR] [--repeat 1] [-- extra demo args]
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
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("extra", nargs="*", help="extra arguments for matswarm demo")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    walls: dict[str, list[float]] = {"--no-trust": [], "--trust": []}
    for _ in range(args.repeat):
        for flag in walls:
            with tempfile.TemporaryDirectory() as out:
                cmd = [
                    sys.executable,
                    "-m",
                    "matswarm.cli.main",
                    "demo",
                    flag,
                    "--output",
                    out,
                    *args.extra,
                ]
                if args.data:
                    cmd += ["--data", args.data]
                wall, rss, _ = run_measured(cmd)
            walls[flag].append(wall)
            print(f"demo {flag:11s} wall {wall:6.1f} s  peak tree RSS {rss:5.0f} MiB", flush=True)
    off = min(walls["--no-trust"])
    on = min(walls["--trust"])
    print(
        f"best of {args.repeat}: trust off {off:.1f} s, trust on {on:.1f} s, ratio {on / off:.2f} "
        "(target <= 1.3)"
    )


if __name__ == "__main__":
    main()
