"""Per-round overhead of the Flower runtime over the in-process runtime, on loopback.

The demo task (perovskite paper split, or its synthetic stand-in when the data are absent; MLP;
MatSwarm's ring by default) runs for ``--rounds`` rounds twice with the same seed: in this process
(``RoundEngine`` over ``OrgNode``s) and deployed on 127.0.0.1 (SuperLink with TLS and SuperNode
authentication, three ``matswarm node start`` processes, the run started through the Control
API). Per-round wall time of the deployment is taken from the coordinator's status file (time
between consecutive finalised rounds); the round hashes of both runs must be equal.

    python bench/flower_overhead.py                      # matswarm (ring: 3 hops per round)
    python bench/flower_overhead.py --algorithm fedavg   # one parallel step per round
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from matswarm.experiments.compare import load_data
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.scaling_flower import org_files
from matswarm.protocol import Aggregator, OrgNode, RoundEngine
from matswarm.protocol.spec import TaskSpec
from matswarm.runtime import configure_torch
from matswarm.runtime.flower.loopback import LoopbackCluster
from matswarm.runtime.flower.spec import make_task_spec


def demo_task(directory: Path, algorithm: str, rounds: int) -> tuple[TaskSpec, dict[str, Path]]:
    cfg = ExperimentConfig.from_dict({"data": {"source": "perovskite"}}, source="bench")
    ds, notice = load_data(cfg, allow_synthetic_fallback=True)
    if notice:
        print(f"NOTE: {notice}")
    files = org_files(ds, directory)  # each org's table, as its node would read it
    schema = {
        "target": ds.schema.target,
        "unit": ds.schema.unit,
        "features": list(ds.schema.features),
    }
    spec = make_task_spec(
        f"bench-{algorithm}",
        list(files),
        schema,
        algorithm,
        rounds=rounds,
        model={"name": "mlp"},
        seed=0,
        relay_deadline_s=300,
    )
    return spec, files


def inprocess(spec: TaskSpec, files: dict[str, Path]) -> tuple[list[float], list[str]]:
    from matswarm.data import build_dataset, read_table

    configure_torch()
    ds = build_dataset(
        {k: (read_table(p), str(p)) for k, p in files.items()},
        spec.schema["target"],
        unit=spec.schema["unit"],
    )
    algo, model = spec.build_algorithm(), spec.model_spec()
    d = ds.schema.n_features
    initial = model.build(d, spec.seed).get_flat()
    nodes = [
        OrgNode(o, model.build(d, spec.seed), algo, spec.seed, i)
        for i, o in enumerate(ds.standardized_orgs())
    ]
    engine = RoundEngine(
        spec.name, algo, Aggregator(algo, spec.build_rule(), list(files), initial), nodes, initial
    )
    times, hashes = [], []
    for t in range(1, algo.rounds + 1):
        t0 = time.perf_counter()
        hashes.append(engine.run_round(t).global_hash)
        times.append(time.perf_counter() - t0)
    return times, hashes


def deployed(
    spec: TaskSpec, files: dict[str, Path], d: Path
) -> tuple[list[float], list[str], float]:
    with LoopbackCluster(files, d) as cluster:
        run = cluster.run(spec)
    return run.round_times, run.hashes, run.setup_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algorithm", default="matswarm")
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="matswarm-flower-bench-") as tmp:
        d = Path(tmp)
        spec, files = demo_task(d, args.algorithm, args.rounds)
        local_t, local_h = inprocess(spec, files)
        fl_t, fl_h, first = deployed(spec, files, d)
    med_local = statistics.median(local_t[1:])
    med_fl = statistics.median(fl_t)
    print(
        f"machine: {platform.node()} {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
        f"task {spec.name}: {len(spec.participants)} orgs, {args.rounds} rounds"
    )
    print(f"round hashes equal: {local_h == fl_h}")

    def show(ts: list[float]) -> str:
        return ", ".join(f"{t:.2f}" for t in ts)

    print(f"in-process  per round: median {med_local:.2f} s  ({show(local_t)})")
    print(f"Flower      per round: median {med_fl:.2f} s  ({show(fl_t)})")
    print(f"Flower setup until round 1 final (incl. run start, hello, join): {first:.1f} s")
    print(f"overhead per round (median): {med_fl - med_local:.2f} s")
    if local_h != fl_h:
        raise SystemExit("round hashes differ")


if __name__ == "__main__":
    main()
