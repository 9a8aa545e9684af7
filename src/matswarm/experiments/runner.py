"""Running a comparison (Solo / federated methods / Joint over several seeds) and summarising it.

The unit of work is one (method, seed) pair; units run in parallel worker processes and each
reports test metrics for every model it produced (the global model and each organisation's
local model), plus per-round curves for the plots.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from matswarm.aggregation import AggregationRule
from matswarm.algorithms import Algorithm, Baseline, FederatedAlgorithm
from matswarm.contrib import (
    ContributionSettings,
    attach_contributions,
    final_model_votes,
    split_validation,
)
from matswarm.data.federated import FederatedDataset
from matswarm.evaluation.metrics import Evaluator, Metrics
from matswarm.ledger import AnvilChain
from matswarm.ledger.anvil_chain import embedded_backend
from matswarm.models import ModelSpec
from matswarm.privacy import PrivacyConfig, make_private
from matswarm.protocol.consortium import Consortium, TrustSettings, finish_task, trusted_engine
from matswarm.protocol.verify import first_failure_line, verify_task
from matswarm.runtime import build_engine, configure_torch, run_baseline

T = TypeVar("T")
R = TypeVar("R")

DISPLAY = {
    "solo": "Solo",
    "joint": "Joint",
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedavgm": "FedAvgM",
    "fedadam": "FedAdam",
    "matswarm": "MatSwarm",
    "fedgbdt": "FedGBDT",
    "dummy": "Dummy",
}


@dataclass
class UnitResult:
    """Metrics of one (method, seed) run, keyed by model: ``global`` or an org name."""

    method: str
    seed: int
    metrics: dict[str, Metrics]
    test_mse_per_round: list[float] = field(default_factory=list)
    train_loss_per_round: dict[str, list[float]] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0
    trust: dict | None = None
    #: Contribution accounting of a federated run (model-card section), when configured.
    contributions: dict | None = None
    #: Update bytes on the wire (``bytes_per_round``, ``reduction``, per round), when counted.
    traffic: dict | None = None
    #: The DP plan's summary (model card section) when the unit ran with [privacy].
    privacy: dict | None = None


@dataclass(frozen=True)
class Unit:
    dataset: FederatedDataset
    model: ModelSpec
    method: str
    algorithm: Algorithm
    rule: AggregationRule
    seed: int
    trust: TrustSettings | None = None
    workdir: str | None = None
    contribution: ContributionSettings | None = None
    compression: Any = None  # matswarm.compression.CompressionSpec
    secure_aggregation: Any = None  # matswarm.privacy.secagg.SecAggConfig
    privacy: PrivacyConfig | None = None


def run_unit(unit: Unit) -> UnitResult:
    """Train one method with one seed and evaluate everything it produced on the test table."""
    import time

    configure_torch()
    t0 = time.perf_counter()
    ev = Evaluator(unit.dataset, unit.model)
    algo = unit.algorithm
    if isinstance(algo, Baseline):
        params = run_baseline(unit.dataset, unit.model, algo, unit.seed)
        # Joint's single model is the consortium-wide ("global") one.
        keyed = {("global" if k == "joint" else k): v for k, v in params.items()}
        preds = {k: ev.predict(v) for k, v in keyed.items()}
        metrics = {k: ev.evaluate(v) for k, v in keyed.items()}
        return UnitResult(
            unit.method, unit.seed, metrics, predictions=preds, seconds=time.perf_counter() - t0
        )
    assert isinstance(algo, FederatedAlgorithm)
    data, validators = unit.dataset, None
    if unit.contribution is not None:
        data, validators = split_validation(data, unit.model, unit.contribution, unit.seed)
    engine = build_engine(data, unit.model, algo, unit.rule, unit.seed)
    plan = None
    if unit.privacy is not None:
        # Noise seeded from the unit's seed: reproducible experiment numbers (not private).
        plan = make_private(
            engine,
            unit.privacy,
            rule_name=unit.rule.name,
            model_name=unit.model.name,
            noise_seed=unit.seed,
        )
    consortium = None
    if unit.trust is not None and unit.trust.enabled:
        if unit.workdir is None:
            raise ValueError("a run with the trust layer needs a workdir for its ledger and store")
        workdir = Path(unit.workdir) / f"{unit.method}-seed{unit.seed}"
        # An experiment run is re-run, never resumed: its chain and store skip the fsyncs.
        consortium = Consortium.embedded(
            workdir,
            unit.dataset.org_names,
            durable=False,
            backend=embedded_backend(unit.trust.chain),
        )
        _secure(engine, unit, consortium)  # before the agents copy the aggregator
        engine, spec, task_id = trusted_engine(
            engine,
            consortium,
            model_spec=unit.model,
            algorithm=algo,
            rule=unit.rule,
            seed=unit.seed,
            schema=unit.dataset.schema.to_dict(),
            settings=unit.trust,
            name=f"{unit.method}-seed{unit.seed}",
            contribution=None if unit.contribution is None else unit.contribution.to_dict(),
            privacy=None if plan is None else unit.privacy.resolved(plan).to_dict(),
        )
    else:
        _secure(engine, unit, None)
    hooks = None
    if validators is not None:
        assert unit.contribution is not None
        hooks = attach_contributions(engine, validators, unit.contribution)
    curve: list[float] = []
    traffic = _compress(engine, unit)
    for t in range(1, algo.rounds + 1):
        engine.run_round(t)
        curve.append(ev.evaluate(engine.run_state.global_params).mse)
    run = engine.run_state
    losses: dict[str, list[float]] = {}
    for rec in run.history:
        for org, loss in rec.train_loss.items():
            losses.setdefault(org, []).append(loss)
    metrics = {"global": ev.evaluate(run.global_params)}
    metrics.update({org: ev.evaluate(p) for org, p in run.local_params.items()})
    trust = None
    privacy = None if plan is None else plan.summary(algo.rounds)
    if consortium is not None:
        try:
            trust = _archive_and_verify(
                consortium,
                spec,
                task_id,
                engine,
                unit,
                metrics,
                workdir,
                validators=validators,
                privacy=privacy,
            )
        finally:
            consortium.close()
    return UnitResult(
        unit.method,
        unit.seed,
        metrics,
        curve,
        losses,
        predictions={"global": ev.predict(run.global_params)},
        seconds=time.perf_counter() - t0,
        trust=trust,
        contributions=None if hooks is None else hooks.card_section(),
        traffic=traffic.summary() if traffic is not None else None,
        privacy=privacy,
    )


def _secure(engine, unit: Unit, consortium) -> None:
    """``[privacy] secure_aggregation``: mask every update (the consortium's keys with the trust
    layer, else fresh simulation keys)."""
    if unit.secure_aggregation is not None:
        from matswarm.privacy.secagg_round import enable_secure_aggregation

        if unit.trust is not None and unit.trust.attested_training:
            raise ValueError(
                "secure aggregation cannot be combined with attested training: a training "
                "quote binds the plain update, which no other org may see"
            )
        ids = consortium.identities if consortium is not None else None
        enable_secure_aggregation(engine, identities=ids, config=unit.secure_aggregation)


def _compress(engine, unit: Unit):
    """``[compression]``: each org sends compressed updates; returns the byte counter."""
    if unit.compression is None:
        return None
    from matswarm.compression import enable_compression

    return enable_compression(engine, unit.compression, unit.seed).traffic


def _archive_and_verify(
    consortium, spec, task_id, engine, unit, metrics, workdir, validators=None, privacy=None
) -> dict:
    """Upload the final model with its card, then re-derive the whole task as an auditor would
    (using a participant's key to read the encrypted updates)."""
    ds = unit.dataset
    votes = detail = None
    if validators is not None:
        run = engine.run_state
        votes, detail = final_model_votes(
            validators, run.initial_global, run.global_params, unit.contribution
        )
    cid, _ = finish_task(
        consortium,
        spec,
        task_id,
        engine,
        model=unit.model.build(ds.schema.n_features),
        extra_card={
            "scaler": ds.standardizer.to_dict(),
            "metrics_test": {k: m.as_dict() for k, m in metrics.items()},
            **({"privacy": privacy} if privacy is not None else {}),
        },
        votes=votes,
        vote_detail=detail,
    )
    first = spec.participants[0]
    report = verify_task(
        consortium.ledger, consortium.store, task_id, identity=consortium.identities[first]
    )
    return {
        "task": "0x" + task_id.hex(),
        "workdir": str(workdir),
        "final_model_cid": cid,
        "final_model_accepted": cid is not None,
        "verified": report.ok,
        "verify": first_failure_line(report),
        "rounds_verified": report.rounds_verified,
        "ledger_events": len(consortium.ledger.events(task_id)),
        "chain": "anvil" if isinstance(consortium.ledger.chain, AnvilChain) else "py-evm",
    }


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    jobs: int,
    *,
    on_done: Callable[[R], None] | None = None,
    cost: Callable[[T], float] | None = None,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
) -> list[R]:
    """``[fn(x) for x in items]`` in ``jobs`` forked worker processes when > 1 (most costly
    items first, so the workers stay busy to the end); results come back in input order and
    ``on_done`` sees each as it completes."""
    if jobs <= 1 or len(items) <= 1:
        out = []
        for item in items:
            r = fn(item)
            out.append(r)
            if on_done:
                on_done(r)
        return out
    configure_torch()  # before forking: no intra-op thread pool is inherited by the workers
    ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
    order = sorted(range(len(items)), key=lambda i: -cost(items[i])) if cost else range(len(items))
    results: list[R | None] = [None] * len(items)
    with ProcessPoolExecutor(
        max_workers=jobs, mp_context=ctx, initializer=initializer, initargs=initargs
    ) as pool:
        futures = {pool.submit(fn, items[i]): i for i in order}
        for fut in as_completed(futures):
            r = fut.result()
            results[futures[fut]] = r
            if on_done:
                on_done(r)
    return [r for r in results if r is not None]


def run_units(
    units: Sequence[Unit], jobs: int = 1, on_done: Callable[[UnitResult], None] | None = None
) -> list[UnitResult]:
    """Run units, in ``jobs`` worker processes when > 1; results come back in input order."""
    return parallel_map(run_unit, units, jobs, on_done=on_done, cost=_cost)


#: CPU per training step relative to the MLP (batch 128, one thread; fused Adam), measured on
#: the 2-core CI machine: the scheduler only needs the order of magnitude right.
_STEP_COST = {"lasso": 0.5, "mlp": 1.0, "rnn": 2.0, "lstm": 3.2}
#: A trusted unit's rounds cost about twice a plain one's (signatures, ledger, verify).
_TRUST_FACTOR = 2.0


def _cost(unit: Unit) -> float:
    """Expected CPU of a unit, for longest-first scheduling: Solo trains K models, Joint
    K-times the steps, federated K orgs; all ~ rounds * steps * K * the model's step cost."""
    a = unit.algorithm
    cost = a.rounds * a.local_steps * len(unit.dataset.orgs) * _STEP_COST.get(unit.model.name, 1)
    if unit.trust is not None and unit.trust.enabled and not isinstance(a, Baseline):
        cost *= _TRUST_FACTOR
    return cost


@dataclass(frozen=True)
class SummaryRow:
    method: str
    model: str
    org: str
    mse_mean: float
    mse_std: float
    rmse_mean: float
    mae_mean: float
    r2_mean: float
    n_seeds: int

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def summarise(results: Sequence[UnitResult], model_name: str) -> list[SummaryRow]:
    """Mean ± std over seeds per (method, org), in a stable order (methods as run, global first).
    A classification run gets :class:`ClassificationSummaryRow` rows instead."""
    from matswarm.experiments.classification import is_classification, summarise_classification

    if is_classification(results):
        return summarise_classification(results, model_name)  # type: ignore[return-value]
    groups: dict[tuple[str, str], list[Metrics]] = {}
    for r in results:
        for org, m in r.metrics.items():
            groups.setdefault((r.method, org), []).append(m)

    def key(item):
        (_, org), _ = item
        return (org != "global", org)

    methods = list(dict.fromkeys(r.method for r in results))
    rows = []
    for method in methods:
        items = sorted(((k, v) for k, v in groups.items() if k[0] == method), key=key)
        for (meth, org), ms in items:
            mse = np.array([m.mse for m in ms])
            rows.append(
                SummaryRow(
                    method=meth,
                    model=model_name,
                    org=org,
                    mse_mean=float(mse.mean()),
                    mse_std=float(mse.std(ddof=1)) if len(ms) > 1 else 0.0,
                    rmse_mean=float(np.mean([m.rmse for m in ms])),
                    mae_mean=float(np.mean([m.mae for m in ms])),
                    r2_mean=float(np.mean([m.r2 for m in ms])),
                    n_seeds=len(ms),
                )
            )
    return rows
