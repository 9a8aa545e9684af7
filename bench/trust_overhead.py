"""The trust layer's cost, both targets in one run (issue 13):

1. `matswarm demo` with the full trust layer against the same run without it (``--no-trust``),
   back to back in this run: wall time and CPU time (the command and its workers), each
   side printed beside the ratio (target <= 1.35);
2. the ledger's CPU per round at 15 orgs (``bench/ledger_gas.py``'s measurement: one
   transaction per org and round, one block; target <= 40 ms).

The machine is shared, so wall time is noisy; CPU time is the steadier figure. The load
average is printed at the start and at the end.

    python bench/trust_overhead.py [--data DIR] [--repeat 1] [--ledger-rounds 30] [-- demo args]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _measure import machine, run_timed

DEMO_TARGET = 1.35
LEDGER_TARGET_MS = 40.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--ledger-rounds", type=int, default=30)
    ap.add_argument("--ledger-orgs", type=int, default=15)
    ap.add_argument("extra", nargs="*", help="extra arguments for matswarm demo")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    runs: dict[str, list[tuple[float, float]]] = {"--no-trust": [], "--trust": []}
    for _ in range(args.repeat):
        for flag in runs:
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, "-m", "matswarm.cli.main", "demo", flag]
                cmd += ["--output", out, *args.extra]
                if args.data:
                    cmd += ["--data", args.data]
                wall, rss, cpu, _ = run_timed(cmd)
            runs[flag].append((wall, cpu))
            print(
                f"demo {flag:11s} wall {wall:6.1f} s  CPU {cpu:6.1f} s  "
                f"peak tree RSS {rss:5.0f} MiB",
                flush=True,
            )
    off_wall = min(w for w, _ in runs["--no-trust"])
    on_wall = min(w for w, _ in runs["--trust"])
    off_cpu = min(c for _, c in runs["--no-trust"])
    on_cpu = min(c for _, c in runs["--trust"])
    print(
        f"demo, best of {args.repeat}: wall {on_wall:.1f} s with trust / {off_wall:.1f} s "
        f"without = {on_wall / off_wall:.2f}; CPU {on_cpu:.1f} s / {off_cpu:.1f} s = "
        f"{on_cpu / off_cpu:.2f} (target <= {DEMO_TARGET})"
    )
    from ledger_gas import run as ledger_round
    from matswarm.ledger.anvil_chain import embedded_backend

    used = embedded_backend("auto")  # what the demo's trusted runs use
    note = " (the demo's chain)"
    for chain, bench_name in (("anvil", "anvil-embedded"), ("py-evm", "embedded")):
        if chain == "anvil" and used != "anvil":
            continue
        res = ledger_round(args.ledger_orgs, args.ledger_rounds, bench_name, False, "combined")
        ms = 1000 * res["cpu_s_per_round"]
        print(
            f"ledger at {args.ledger_orgs} orgs on {chain}{note if chain == used else ''}: "
            f"{ms:.1f} ms CPU per round ({args.ledger_orgs} transactions, one block; median of "
            f"{args.ledger_rounds} rounds; node CPU included) against {LEDGER_TARGET_MS:.0f} ms "
            f"= {ms / LEDGER_TARGET_MS:.2f} of the target"
        )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
