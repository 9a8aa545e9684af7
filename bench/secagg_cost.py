"""Cost of secure aggregation: CPU and bytes per round against the plain round, same process.

1. Protocol alone (no training), for K orgs and d parameters: CPU seconds of one round's key
   adverts + share exchange + masking (all orgs) and of one unmasking (one org's
   recomputation), with one org dropped after sharing its keys (``--drop``), and the bytes of
   the protocol's messages (keys, shares, reveals) beside the masked updates'.
2. FedAvg on the perovskite paper split (3 orgs, the paper's MLP): plain rounds and
   secure-aggregation rounds interleaved (same seed, so machine load hits both alike), median
   CPU per round of each and the ratio; the final global models' max difference (fixed-point
   resolution 2^-30 per coordinate).

    python bench/secagg_cost.py                  # K in 3, 10, 20; d in 5889, 100000
    python bench/secagg_cost.py --rounds 10 --orgs 3 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.data import perovskite
from matswarm.models import ModelSpec
from matswarm.privacy.secagg import SecAggClient, SecAggConfig, Transcript, unmask_sum
from matswarm.privacy.secagg_round import enable_secure_aggregation
from matswarm.runtime import build_engine, configure_torch
from matswarm.trust import OrgIdentity


def protocol_round(k: int, d: int, drop: bool) -> tuple[float, float, int, int]:
    """(CPU s of setup + masking for all orgs, CPU s of one unmasking, protocol bytes,
    masked-update bytes)."""
    names = [f"o{i}" for i in range(k)]
    ids = {n: OrgIdentity.generate(n) for n in names}
    directory = {n: i.public for n, i in ids.items()}
    cfg = SecAggConfig()
    x = {
        n: np.random.default_rng(i).normal(0, 0.01, d).astype(np.float32)
        for i, n in enumerate(names)
    }
    task = "0x" + "cd" * 32
    t0 = time.process_time()
    clients = {n: SecAggClient(ids[n], names, directory, task, 1, cfg) for n in names}
    adverts = {n: c.advertise(100) for n, c in clients.items()}
    boxes = {n: c.share_keys(adverts) for n, c in clients.items()}
    for n, c in clients.items():
        c.receive_shares({s: b[n] for s, b in boxes.items() if n in b})
    survivors = names[:-1] if drop else names
    y = {n: clients[n].mask(x[n], 100) for n in survivors}
    reveals = {
        n: clients[n].reveal(survivors, sorted(set(names) - set(survivors))) for n in survivors
    }
    setup = time.process_time() - t0
    t1 = time.process_time()
    unmask_sum(y, Transcript(adverts, reveals), names, directory, task, 1, cfg)
    unmask = time.process_time() - t1
    proto = (
        sum(map(len, adverts.values()))
        + sum(len(b) for box in boxes.values() for b in box.values())
        + sum(map(len, reveals.values()))
    )
    return setup, unmask, proto, sum(v.nbytes for v in y.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orgs", type=int, nargs="+", default=[3, 10, 20])
    ap.add_argument("--dims", type=int, nargs="+", default=[5889, 100_000])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--drop", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    configure_torch()
    print(f"load average {os.getloadavg()[0]:.1f} ({os.cpu_count()} CPUs); CPU = process time")
    print(
        f"{'K':>3} {'d':>8} {'setup+mask (all orgs)':>22} {'unmask (one org)':>17} "
        f"{'protocol bytes':>15} {'masked bytes':>13}"
    )
    for k in args.orgs:
        for d in args.dims:
            s, u, pb, mb = protocol_round(k, d, args.drop)
            print(f"{k:>3} {d:>8} {s:>20.3f} s {u:>15.3f} s {pb:>15,} {mb:>13,}")

    ds = perovskite.load(perovskite.resolve(None))
    spec = ModelSpec("mlp")
    algo = make_algorithm("fedavg", rounds=args.rounds)
    plain = build_engine(ds, spec, algo, make_rule("mean"), 0)
    secure = build_engine(ds, spec, algo, make_rule("mean"), 0)
    board = enable_secure_aggregation(secure)
    cpu_plain, cpu_secure = [], []
    for t in range(1, args.rounds + 1):
        for eng, acc in ((plain, cpu_plain), (secure, cpu_secure)):
            c0 = time.process_time()
            eng.run_round(t)
            acc.append(time.process_time() - c0)
    mp, ms = statistics.median(cpu_plain), statistics.median(cpu_secure)
    diff = np.abs(plain.run_state.global_params - secure.run_state.global_params).max()
    over = statistics.mean(board.overhead_bytes.values())
    print(
        f"\nFedAvg, paper split, {args.rounds} rounds (seed 0): median CPU per round plain "
        f"{mp:.3f} s, secure {ms:.3f} s (x{ms / mp:.2f}); protocol messages {over:,.0f} bytes "
        f"per round; max |global difference| after {args.rounds} rounds {diff:.2e}; "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
