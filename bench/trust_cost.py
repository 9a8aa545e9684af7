"""CPU per round of the trust layer: a trusted round against the same plain round, same process.

For K organisations (default 3 and 15) it builds two engines of the same task (same data,
seed, method), one plain and one with the full trust layer (fresh keys, the embedded ledger,
the content-addressed store, encryption), and runs their rounds interleaved, so that machine
load hits both alike. It prints the median CPU per round of each, the overhead, and how much
of the overhead is spent in the ledger adapter (transactions, blocks, reads).

With 3 organisations (the paper split of the demo) it then predicts the demo's cost ratio
(issue 3: trust on / trust off <= 1.3): per seed the demo trains Solo, Joint, FedAvg and
MatSwarm for the configured rounds; with trust, each federated method adds rounds x its
per-round overhead, the closing ``verify``'s replay of each round, and the fixed cost of a task
(consortium and task set-up, archiving the final model), measured here on a short task.

    python bench/trust_cost.py                        # 3 and 15 orgs, 30 rounds
    python bench/trust_cost.py --orgs 3 --rounds 40   # 3 orgs only
    python bench/trust_cost.py --no-demo              # skip the demo prediction
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from matswarm.experiments.compare import load_data
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.runner import Unit, run_unit
from matswarm.ledger import Ledger
from matswarm.ledger.anvil_chain import embedded_backend
from matswarm.protocol.consortium import Consortium, TrustSettings, finish_task, trusted_engine
from matswarm.protocol.verify import verify_task
from matswarm.runtime import build_engine, configure_torch

#: Ledger adapter entry points whose CPU is reported as "ledger" (outermost calls only; the
#: names of older adapters too, so the script also measures a checkout from before batching).
_LEDGER_FNS = ("_send_all", "_transact", "sync", "_view")


class CpuMeter:
    """CPU seconds spent inside selected methods (outermost call only)."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self._depth = 0
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: type, name: str, label: str) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            t0 = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                self.spent[label] += time.process_time() - t0
                self._depth -= 1

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def restore(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._undo = []


def _config(orgs: int, method: str, rounds: int, data: str | None) -> ExperimentConfig:
    split = {} if orgs == 3 else {"split": {"kind": "iid", "orgs": orgs}}
    return ExperimentConfig.from_dict(
        {
            "data": {"source": "perovskite", **({"path": data} if data else {})},
            "training": {"methods": [method], "rounds": rounds},
            **split,
        },
        source="trust_cost",
    )


def _trusted(cfg: ExperimentConfig, ds: Any, method: str, workdir: Path) -> tuple[Any, ...]:
    algo, rule = cfg.algorithm(method), cfg.make_rule()
    engine = build_engine(ds, cfg.model, algo, rule, 0)
    # the demo's chain: experiment runs use durable=False and anvil when it is installed
    consortium = Consortium.embedded(
        workdir, ds.org_names, durable=False, backend=embedded_backend("auto")
    )
    engine, spec, task_id = trusted_engine(
        engine,
        consortium,
        model_spec=cfg.model,
        algorithm=algo,
        rule=rule,
        seed=0,
        schema=ds.schema.to_dict(),
        settings=TrustSettings(),
        name=f"{method}-bench",
    )
    return engine, consortium, spec, task_id


def per_round(orgs: int, method: str, rounds: int, data: str | None) -> dict[str, float]:
    """Median CPU seconds per round: plain, trusted, and the ledger's part of the trusted."""
    cfg = _config(orgs, method, rounds, data)
    ds, _ = load_data(cfg)
    algo, rule = cfg.algorithm(method), cfg.make_rule()
    plain = build_engine(ds, cfg.model, algo, rule, 0)
    meter = CpuMeter()
    for fn in _LEDGER_FNS:
        if hasattr(Ledger, fn):
            meter.wrap(Ledger, fn, "ledger")
    with tempfile.TemporaryDirectory() as tmp:
        trusted, consortium, _, _ = _trusted(cfg, ds, method, Path(tmp))
        try:
            cpu_plain, cpu_trusted, cpu_ledger = [], [], []
            chain = consortium.ledger.chain
            node = getattr(chain, "node_cpu_seconds", lambda: 0.0)  # anvil's own CPU
            head = chain.block_number()
            for t in range(1, rounds + 1):
                t0 = time.process_time()
                plain.run_round(t)
                t1 = time.process_time()
                before, n0 = meter.spent["ledger"], node()
                trusted.run_round(t)
                t2 = time.process_time()
                n1 = node()
                if t > 2:  # warm-up: first blocks, caches, lazy imports
                    cpu_plain.append(t1 - t0)
                    cpu_trusted.append(t2 - t1 + n1 - n0)
                    cpu_ledger.append(meter.spent["ledger"] - before + n1 - n0)
            blocks = (chain.block_number() - head) / rounds
        finally:
            consortium.close()
            meter.restore()
    p, q = statistics.median(cpu_plain), statistics.median(cpu_trusted)
    return {
        "plain": p,
        "trusted": q,
        "overhead": q - p,
        "ledger": statistics.median(cpu_ledger),
        "blocks_per_round": blocks,
    }


def task_costs(method: str, rounds: int, data: str | None) -> tuple[float, float]:
    """CPU of a trusted task outside its rounds: ``(set-up + final-model upload, verify per
    round)``; the closing ``verify`` replays every round, so it is counted per round."""
    cfg = _config(3, method, rounds, data)
    ds, _ = load_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.process_time()
        engine, consortium, spec, task_id = _trusted(cfg, ds, method, Path(tmp))
        node = getattr(consortium.ledger.chain, "node_cpu_seconds", lambda: 0.0)
        setup = time.process_time() - t0 + node()
        for t in range(1, rounds + 1):
            engine.run_round(t)
        try:
            t1 = time.process_time()
            finish_task(
                consortium,
                spec,
                task_id,
                engine,
                model=cfg.model.build(ds.schema.n_features),
                extra_card={"scaler": ds.standardizer.to_dict()},
            )
            t2 = time.process_time()
            report = verify_task(
                consortium.ledger,
                consortium.store,
                task_id,
                identity=consortium.identities[spec.participants[0]],
            )
            t3 = time.process_time()
            assert report.ok and report.rounds_verified == rounds, report
        finally:
            consortium.close()
        return setup + (t2 - t1), (t3 - t2) / rounds


def demo_plain(rounds: int, data: str | None) -> dict[str, float]:
    """CPU of one seed of each demo method without trust (what `matswarm demo --no-trust` runs)."""
    cfg = _config(3, "fedavg", rounds, data)
    ds, _ = load_data(cfg)
    rule = cfg.make_rule()
    out = {}
    for method in ("solo", "joint", "fedavg", "matswarm"):
        t0 = time.process_time()
        run_unit(Unit(ds, cfg.model, method, cfg.algorithm(method), rule, 0))
        out[method] = time.process_time() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orgs", type=int, nargs="+", default=[3, 15])
    ap.add_argument("--rounds", type=int, default=30, help="rounds measured per configuration")
    ap.add_argument("--data", default=None, help="folder with the perovskite CSVs")
    ap.add_argument("--no-demo", action="store_true", help="skip the demo-ratio prediction")
    args = ap.parse_args()
    configure_torch()
    print(
        f"python={platform.python_version()} cpu={platform.processor() or platform.machine()} "
        f"ncpu={os.cpu_count()} load={os.getloadavg()[0]:.1f}; CPU ms per round, medians "
        f"of rounds 3..{args.rounds}"
    )
    print("orgs | method   | plain | trusted | overhead | of which ledger | blocks/round")
    overhead: dict[str, float] = {}
    for n in args.orgs:
        for method in ("fedavg", "matswarm"):
            r = per_round(n, method, args.rounds, args.data)
            if n == 3:
                overhead[method] = r["overhead"]
            print(
                f"{n:4d} | {method:8s} | {1e3 * r['plain']:5.1f} | {1e3 * r['trusted']:7.1f} | "
                f"{1e3 * r['overhead']:8.1f} | {1e3 * r['ledger']:15.1f} | "
                f"{r['blocks_per_round']:.1f}",
                flush=True,
            )
    if args.no_demo or 3 not in args.orgs:
        return
    demo_rounds = ExperimentConfig.from_dict({}, source="defaults").algorithm("fedavg").rounds
    plain = demo_plain(demo_rounds, args.data)
    costs = {m: task_costs(m, 10, args.data) for m in ("fedavg", "matswarm")}
    off = sum(plain.values())
    extra = {m: demo_rounds * (overhead[m] + costs[m][1]) + costs[m][0] for m in costs}
    print(
        "demo, one seed, trust off (CPU s): "
        + ", ".join(f"{m} {s:.1f}" for m, s in plain.items())
        + f" = {off:.1f}"
    )
    for m in costs:
        print(
            f"trust on, {m}: {demo_rounds} rounds x ({1e3 * overhead[m]:.1f} ms overhead + "
            f"{1e3 * costs[m][1]:.1f} ms verify) + {costs[m][0]:.2f} s set-up/upload "
            f"= +{extra[m]:.1f} s"
        )
    ratio = (off + sum(extra.values())) / off
    print(f"predicted demo ratio (CPU, trust on / off): {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
