"""``matswarm experiment scaling``: MatSwarm's scalability study (paper Fig. 5, RQ4).

Three sweeps on the perovskite data (3694 training rows, 147 features, test 322 rows; each
sweep's rows split evenly and at random among the organisations, as in the paper):

* data size: 25 / 50 / 75 / 100 % of the training rows, 3 orgs;
* feature count: the first 25 ... 147 features of the schema, 3 orgs;
* organisations: 3, 6, 9, 12, 15, all rows and features.

For every point it measures wall time and CPU time per round and the global model's test MSE:

* **in-process, trust layer off**: the MSE run (``rounds`` rounds, MatSwarm at its defaults),
  timed per round;
* **in-process, trust layer on**: ``trust_rounds`` rounds of the same task through the full
  trust layer (keys, signed and encrypted updates, one ``voteAndCommit`` per org and round on
  the embedded chain, every org verifying and re-aggregating); its round hashes must equal
  the plain run's (the trust layer changes no number, so the MSE is the plain run's);
* **over Flower on loopback** (the organisation sweep): SuperLink with TLS and node
  authentication, one ``matswarm node start`` process per org, ``flower_rounds`` rounds;
  wall time per round from the coordinator's status, CPU from the whole process tree.

The figure the issue asks for is the **per-org share of a round**: time per round divided by
the number of orgs. Linear cost keeps it flat; at 15 orgs it must stay within 1.3x of 3 orgs.
Every panel prints the paper's reported trend beside ours (the paper gives no numbers we can
read off its plots, only the trends quoted in :data:`PAPER_TRENDS`).

Results: ``results.json`` (every point, the ratios, the paper's trends, the machine),
``scaling.png``. Times are from a shared 2-core machine: the load average is recorded at the
start and at the end of every run; CPU time is the steadier figure.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from matswarm.aggregation import make_rule
from matswarm.algorithms import make_algorithm
from matswarm.data.federated import FederatedDataset, OrgTable
from matswarm.data.schema import TaskSchema
from matswarm.data.splits import split_iid
from matswarm.evaluation.metrics import Evaluator
from matswarm.models import ModelSpec
from matswarm.runtime import build_engine, configure_torch

#: What the paper reports (MatSwarm, Fig. 5 and its RQ4 text); it publishes no table.
PAPER_TRENDS = {
    "data": "MSE decreases as the data grow (10-100 %); response time barely changes",
    "features": "response time barely changes; MSE falls with more features (0.155 at 30 %), "
    "flat after ~90 %",
    "orgs": "response time grows linearly with participants (3-15); MSE improves, then "
    "declines slightly past a threshold",
}
DATA_FRACTIONS = (0.25, 0.5, 0.75, 1.0)
FEATURE_COUNTS = (25, 50, 75, 100, 125, 147)
ORG_COUNTS = (3, 6, 9, 12, 15)
#: The issue's bound on the per-org share of a round at 15 orgs against 3 orgs.
LINEAR_BOUND = 1.3
MODEL = ModelSpec("mlp")


@dataclass
class Point:
    """One measured configuration of one runtime."""

    sweep: str  # data | features | orgs
    x: float  # the swept value (fraction of rows, feature count, org count)
    orgs: int
    rows: int
    features: int
    runtime: str  # in-process | flower
    trust: bool
    rounds: int
    wall_s_per_round: float
    cpu_s_per_round: float
    mse: float | None = None
    hashes_equal_plain: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def per_org_wall(self) -> float:
        return self.wall_s_per_round / self.orgs

    @property
    def per_org_cpu(self) -> float:
        return self.cpu_s_per_round / self.orgs


def subset(
    base: FederatedDataset, *, fraction: float, n_features: int, orgs: int, seed: int
) -> FederatedDataset:
    """``fraction`` of the pooled training rows (a seeded random choice) and the schema's first
    ``n_features`` features, split evenly at random among ``orgs`` organisations."""
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if not 1 <= n_features <= base.schema.n_features:
        raise ValueError(f"n_features must be in 1..{base.schema.n_features}, got {n_features}")
    pool = base.pooled()
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(pool.n)[: max(orgs, round(fraction * pool.n))])
    cols = slice(0, n_features)
    schema = TaskSchema(
        base.schema.target,
        tuple(base.schema.features[:n_features]),
        base.schema.unit,
        base.schema.identifiers,
        {
            c: v
            for c, v in base.schema.categories.items()
            if any(f.startswith(c + "=") for f in base.schema.features[:n_features])
        },
    )
    rows = OrgTable("pool", pool.X[keep][:, cols], pool.y[keep], pool.source)
    assert base.test is not None
    test = OrgTable("test", base.test.X[:, cols], base.test.y, base.test.source)
    desc = f"{base.description}: {len(keep)} rows, {n_features} features, {orgs} orgs"
    return FederatedDataset(schema, split_iid(rows, orgs, seed), test, desc)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def plain_run(
    ds: FederatedDataset, rounds: int, seed: int
) -> tuple[list[float], list[float], list[str], float]:
    """The MSE run: wall and CPU per round, the round hashes, the final global test MSE."""
    configure_torch()
    algo = make_algorithm("matswarm", rounds=rounds)
    engine = build_engine(ds, MODEL, algo, make_rule("mean"), seed)
    walls, cpus, hashes = [], [], []
    for t in range(1, rounds + 1):
        w0, c0 = time.perf_counter(), _cpu()
        hashes.append(engine.run_round(t).global_hash)
        walls.append(time.perf_counter() - w0)
        cpus.append(_cpu() - c0)
    mse = Evaluator(ds, MODEL).evaluate(engine.run_state.global_params).mse
    return walls, cpus, hashes, float(mse)


def trusted_run(
    ds: FederatedDataset,
    rounds: int,
    seed: int,
    workdir: Path,
    chain: str,
    verification: str = "leader",
) -> tuple[list[float], list[float], list[str], dict]:
    """``rounds`` rounds through the full trust layer (a fresh consortium on the embedded
    chain ``chain``, rounds checked by ``verification``: see
    :mod:`matswarm.protocol.leader`); wall and CPU per round (the chain node's CPU included),
    round hashes."""
    from matswarm.ledger import AnvilChain
    from matswarm.protocol.consortium import Consortium, TrustSettings, trusted_engine

    configure_torch()
    algo = make_algorithm("matswarm", rounds=rounds)
    rule = make_rule("mean")
    cons = Consortium.embedded(workdir, ds.org_names, durable=False, backend=chain)
    try:
        engine = build_engine(ds, MODEL, algo, rule, seed)
        engine, _, _ = trusted_engine(
            engine,
            cons,
            model_spec=MODEL,
            algorithm=algo,
            rule=rule,
            seed=seed,
            schema=ds.schema.to_dict(),
            settings=TrustSettings(verification=verification),
        )
        node = cons.ledger.chain
        node_cpu = node.node_cpu_seconds if isinstance(node, AnvilChain) else (lambda: 0.0)
        walls, cpus, hashes = [], [], []
        for t in range(1, rounds + 1):
            w0, c0 = time.perf_counter(), _cpu() + node_cpu()
            hashes.append(engine.run_round(t).global_hash)
            walls.append(time.perf_counter() - w0)
            cpus.append(_cpu() + node_cpu() - c0)
        info = {
            "chain": "anvil" if isinstance(node, AnvilChain) else "py-evm",
            "verification": verification,
        }
    finally:
        cons.close()
    return walls, cpus, hashes, info


def _point(common: dict, trust: bool, walls: list[float], cpus: list[float], **kw) -> Point:
    """An in-process point from its per-round wall and CPU times."""
    return Point(
        **common,
        runtime="in-process",
        trust=trust,
        rounds=len(walls),
        wall_s_per_round=_per_round(walls),
        cpu_s_per_round=_per_round(cpus),
        **kw,
    )


def _per_round(values: list[float]) -> float:
    """Median over rounds, the first left out (warm-up) when there are more than two."""
    return float(statistics.median(values[1:] if len(values) > 2 else values))


def sweep_configs(
    fractions: Sequence[float] = DATA_FRACTIONS,
    features: Sequence[int] = FEATURE_COUNTS,
    orgs: Sequence[int] = ORG_COUNTS,
    all_features: int = 147,
) -> list[tuple[str, float, float, int, int]]:
    """(sweep, x, fraction, features, orgs) of every point."""
    out: list[tuple[str, float, float, int, int]] = []
    out += [("data", f, f, all_features, 3) for f in fractions]
    out += [("features", n, 1.0, n, 3) for n in features]
    out += [("orgs", k, 1.0, all_features, k) for k in orgs]
    return out


def run_scaling(
    base: FederatedDataset,
    out: Path,
    *,
    rounds: int = 60,
    trust_rounds: int = 8,
    flower_rounds: int = 4,
    flower: bool = True,
    flower_trust: bool = True,
    seed: int = 0,
    chain: str = "auto",
    verification: str = "leader",
    fractions: Sequence[float] = DATA_FRACTIONS,
    features: Sequence[int] = FEATURE_COUNTS,
    orgs: Sequence[int] = ORG_COUNTS,
    flower_orgs: Sequence[int] | None = None,
    on_point: Callable[[Point], None] | None = None,
) -> dict:
    """Run every sweep (see the module docstring); write ``results.json`` and the plot.

    ``fractions``, ``features`` and ``orgs`` are the sweeps' points (the paper's by default);
    ``flower_orgs`` the org counts deployed over Flower (default: ``orgs``). ``verification``
    is how the trusted runs, in process and over Flower, check their rounds (``"leader"``: one
    rotating aggregator, linear work per round; ``"every-org"``: each org re-aggregates, K²).
    """
    from matswarm.ledger.anvil_chain import embedded_backend

    for name, values, lo, hi in (
        ("fractions", fractions, 0.0, 1.0),
        ("features", features, 1, base.schema.n_features),
        ("orgs", orgs, 2, 50),
    ):
        bad = (
            [v for v in values if not lo < v <= hi]
            if name == "fractions"
            else [v for v in values if not lo <= v <= hi]
        )
        if bad or not values:
            raise ValueError(f"{name} must be non-empty values in [{lo}, {hi}], got {list(values)}")
    if 3 not in orgs:
        raise ValueError(f"orgs must include 3 (the reference of the per-org share), got {orgs}")
    out.mkdir(parents=True, exist_ok=True)
    chain = embedded_backend(chain)
    t_start, load_start = time.perf_counter(), os.getloadavg()[0]
    cpu_start = _cpu() + _children_cpu()
    points: list[Point] = []

    def add(p: Point) -> None:
        points.append(p)
        if on_point is not None:
            on_point(p)

    with tempfile.TemporaryDirectory(prefix="matswarm-scaling-") as tmp:
        plain_hashes: dict[int, list[str]] = {}
        configs = sweep_configs(fractions, features, orgs, base.schema.n_features)
        for i, (sweep, x, fraction, n_features, k) in enumerate(configs):
            ds = subset(base, fraction=fraction, n_features=n_features, orgs=k, seed=seed)
            common = {
                "sweep": sweep,
                "x": x,
                "orgs": k,
                "features": n_features,
                "rows": sum(o.n for o in ds.orgs),
            }
            walls, cpus, hashes, mse = plain_run(ds, rounds, seed)
            if sweep == "orgs":
                plain_hashes[k] = hashes
            add(_point(common, False, walls, cpus, mse=mse))
            tw, tc, th, info = trusted_run(
                ds, trust_rounds, seed, Path(tmp) / f"t{i}", chain, verification
            )
            equal = th == hashes[:trust_rounds]
            add(_point(common, True, tw, tc, mse=mse, hashes_equal_plain=equal, extra=info))
        if flower:
            from matswarm.experiments.scaling_flower import flower_points

            for p in flower_points(
                base,
                orgs if flower_orgs is None else flower_orgs,
                flower_rounds,
                seed,
                Path(tmp),
                trust=flower_trust,
                subset=subset,
                verification=verification,
            ):
                mine = p.extra.pop("hashes")
                if mine:
                    p.hashes_equal_plain = mine == plain_hashes.get(p.orgs, [])[: len(mine)]
                add(p)
    doc = summarise(
        points, rounds=rounds, trust_rounds=trust_rounds, chain=chain, verification=verification
    )
    doc["machine"] = {
        "system": f"{platform.system()} {platform.machine()}",
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_start": round(load_start, 2),
        "load_average_end": round(os.getloadavg()[0], 2),
        "wall_seconds": round(time.perf_counter() - t_start, 1),
        # this process and every process it waited for (nodes, SuperLinks, anvil)
        "cpu_seconds": round(_cpu() + _children_cpu() - cpu_start, 1),
    }
    doc["data"] = base.description
    from matswarm.experiments.scaling_plot import scaling_plot

    doc["plots"] = [str(scaling_plot(doc, out / "scaling.png"))]
    (out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def summarise(points: list[Point], **settings: object) -> dict:
    """Every point, and per runtime and trust setting the org sweep's per-org share ratio."""
    ratios = {}
    for runtime in ("in-process", "flower"):
        for trust in (False, True):
            org = {
                p.orgs: p
                for p in points
                if p.sweep == "orgs" and p.runtime == runtime and p.trust == trust
            }
            if 3 in org and 15 in org:
                key = f"{runtime}, trust {'on' if trust else 'off'}"
                ratios[key] = {
                    "per_org_wall_3": org[3].per_org_wall,
                    "per_org_wall_15": org[15].per_org_wall,
                    "wall_ratio_15_to_3": org[15].per_org_wall / org[3].per_org_wall,
                    "per_org_cpu_3": org[3].per_org_cpu,
                    "per_org_cpu_15": org[15].per_org_cpu,
                    "cpu_ratio_15_to_3": org[15].per_org_cpu / org[3].per_org_cpu,
                    "bound": LINEAR_BOUND,
                }
    return {
        "points": [
            asdict(p) | {"per_org_wall": p.per_org_wall, "per_org_cpu": p.per_org_cpu}
            for p in points
        ],
        "per_org_share_15_vs_3": ratios,
        "paper_trends": PAPER_TRENDS,
        "settings": dict(settings),
    }


def print_summary(console, doc: dict, output: Path) -> None:
    """Per sweep our trend beside the paper's, then the per-org share ratios against the bound."""
    from rich.table import Table

    table = Table(title="MatSwarm scalability (Fig. 5): ours on this machine")
    for col in (
        "sweep",
        "x",
        "orgs",
        "runtime",
        "trust",
        "s/round",
        "CPU s/round",
        "CPU/org",
        "MSE",
        "hashes = plain",
    ):
        table.add_column(col)
    for p in doc["points"]:
        table.add_row(
            p["sweep"],
            f"{p['x']:g}",
            str(p["orgs"]),
            p["runtime"],
            "on" if p["trust"] else "off",
            f"{p['wall_s_per_round']:.3f}",
            f"{p['cpu_s_per_round']:.3f}",
            f"{p['per_org_cpu'] * 1000:.1f} ms",
            "" if p["mse"] is None else f"{p['mse']:.4f}",
            "" if p["hashes_equal_plain"] is None else str(p["hashes_equal_plain"]),
        )
    console.print(table)
    for p in doc["points"]:
        if p["extra"].get("error"):
            console.print(
                f"[red]failed:[/] {p['runtime']} {p['orgs']} orgs, trust "
                f"{'on' if p['trust'] else 'off'}: {p['extra']['error']}"
            )
    for sweep, trend in doc["paper_trends"].items():
        console.print(f"paper, {sweep}: {trend}")
    for key, r in doc["per_org_share_15_vs_3"].items():
        ok = r["cpu_ratio_15_to_3"] <= r["bound"]
        console.print(
            f"per-org share of a round, {key}: CPU {r['per_org_cpu_15'] * 1000:.1f} ms at 15 "
            f"orgs / {r['per_org_cpu_3'] * 1000:.1f} ms at 3 = {r['cpu_ratio_15_to_3']:.2f}; "
            f"wall {r['wall_ratio_15_to_3']:.2f} (bound {r['bound']}: "
            f"{'[green]met[/]' if ok else '[red]not met[/]'})"
        )
    m = doc["machine"]
    console.print(
        f"{m['wall_seconds']:.0f} s wall, {m['cpu_seconds']:.0f} s CPU on {m['system']}, "
        f"{m['cpus']} CPUs, load average "
        f"{m['load_average_start']} -> {m['load_average_end']}; {output / 'results.json'}, "
        f"{', '.join(doc['plots'])}"
    )
