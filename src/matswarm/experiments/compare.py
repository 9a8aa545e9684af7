"""A full comparison run: load data, train every method for every seed, write the report.

Output folder (stable layout, documented in the README):

* ``results.json``: ``{"units": ..., "rows": [{"method", "model", "org", "mse_mean", "mse_std",
  "rmse_mean", "mae_mean", "r2_mean", "n_seeds"}, ...], "dummy": {...}, "config": {...},
  "provenance": {...}, "per_seed": [...], "plots": [...]}``; a classification task
  (``"task": "classification"``) has rows ``{"method", "model", "org", "accuracy_mean",
  "accuracy_std", "balanced_accuracy_mean", "f1_mean", "roc_auc_mean", "brier_mean",
  "n_seeds"}``, ``dummy`` is the majority-class baseline and ``per_seed`` "mse" the Brier score;
* ``results.csv``: the ``rows`` as a table;
* ``parity.png`` (seed 0, global models; ``confusion.png`` for classification) and
  ``rounds.png`` (test MSE of each federated global model per round, mean over seeds, with
  Solo/Joint reference lines) and ``train_loss.png``.
"""

from __future__ import annotations

import csv
import json
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import matswarm
from matswarm.data import FederatedDataset, partition, perovskite, synthetic
from matswarm.data.federated import build_dataset
from matswarm.data.heterogeneous import heterogeneity
from matswarm.data.tables import read_table
from matswarm.evaluation.metrics import Evaluator
from matswarm.evaluation.plots import confusion_plot, curves_plot, parity_plot
from matswarm.experiments.config import ConfigError, ExperimentConfig
from matswarm.experiments.runner import DISPLAY, SummaryRow, Unit, UnitResult, run_units, summarise
from matswarm.models.masked import MASK_AWARE
from matswarm.protocol.consortium import SECURITY_NOTE, TrustSettings


def load_data(
    cfg: ExperimentConfig, *, allow_synthetic_fallback: bool = False
) -> tuple[FederatedDataset, str | None]:
    """Dataset for a config, split into its organisations.

    Returns ``(dataset, notice)``: ``notice`` is set when the perovskite data could not be found
    and synthetic data of the same shape is used instead (only if the caller allows it).
    """
    d = cfg.data
    notice = None
    source = d["source"]
    task = data_task_options(cfg)
    if d.get("featurize") and source != "files":
        raise ConfigError(
            f"{cfg.source}: [data] featurize applies to source = 'files' (the perovskite "
            "tables already hold the Magpie descriptors)"
        )
    if task["task"] == "classification" and source == "synthetic":
        raise ConfigError(f"{cfg.source}: [data] task = 'classification' needs source = files")
    if source == "perovskite":
        try:
            base = perovskite.load(
                perovskite.resolve(d["path"]),
                target=d["target"],
                exclude=d["exclude"],
                categorical=d["categorical"],
                **task,
            )
        except perovskite.DatasetNotFound as exc:
            if not allow_synthetic_fallback:
                raise
            notice = f"perovskite data unavailable, using SYNTHETIC data instead ({exc})"
            base = synthetic.make_dataset(seed=0)
    elif source == "synthetic":
        base = synthetic.make_dataset(
            n_rows=d["rows"],
            n_features=d["features"],
            n_orgs=cfg.split.orgs,
            label_shift=float(d["label_shift"]),
            noise=float(d["noise"]),
            seed=cfg.split.seed,
        )
    elif source == "files":
        if not d["train"] or not d["test"]:
            raise ConfigError(f"{cfg.source}: [data] source = 'files' needs train = [...] and test")
        tables = {f"org{i + 1}": (read_org_table(cfg, p), p) for i, p in enumerate(d["train"])}
        base = build_dataset(
            tables,
            d["target"],
            test=(read_org_table(cfg, d["test"]), d["test"]),
            unit=d["unit"],
            categorical=d["categorical"],
            exclude=d["exclude"],
            description=f"{len(tables)} file(s)",
            **task,
            heterogeneous=d["heterogeneous"],
        )
    else:
        raise ConfigError(f"{cfg.source}: [data] source must be perovskite, files or synthetic")
    split = cfg.split
    if split.kind == "paper" and len(base.orgs) != split.orgs:
        raise ConfigError(
            f"{cfg.source}: split 'paper' uses the data's own {len(base.orgs)} organisation "
            f"file(s) but [split] orgs = {split.orgs}"
        )
    ds = partition(base, split) if split.kind != "paper" else base
    if cfg.model.name in MASK_AWARE:
        ds = ds.with_missing("nan")  # the model masks NaN cells itself
    return ds, notice


def data_task_options(cfg: ExperimentConfig) -> dict:
    """The ``[data]`` classification settings as :func:`build_dataset` keywords."""
    d = cfg.data
    opts = {
        "task": d.get("task", "regression"),
        "threshold": d.get("threshold"),
        "positive": d.get("positive", "above"),
    }
    from matswarm.data.schema import check_task

    try:
        check_task(opts["task"], opts["threshold"], opts["positive"])
    except ValueError as exc:
        raise ConfigError(f"{cfg.source}: [data] {exc}") from None
    return opts


def read_org_table(cfg: ExperimentConfig, path: str):
    """One organisation's table, featurised locally when ``[data] featurize`` is set."""
    table = read_table(path)
    preset = cfg.data.get("featurize")
    if not preset:
        return table
    from matswarm.data.featurize import featurize

    return featurize(
        table,
        formula_column=cfg.data.get("formula_column", "formula"),
        preset=preset,
        source=str(path),
        skip_invalid=bool(cfg.data.get("skip_invalid", False)),
    )


@dataclass
class Report:
    rows: list[SummaryRow]
    dummy: dict[str, float]
    unit: str
    output: Path
    files: list[Path]
    seconds: float
    notice: str | None
    results: list[UnitResult]
    task: str = "regression"


def run_comparison(
    cfg: ExperimentConfig,
    dataset: FederatedDataset,
    *,
    notice: str | None = None,
    on_done: Callable[[UnitResult], None] | None = None,
    trust: TrustSettings | None = None,
    plots: bool = True,
) -> Report:
    """Train all (method, seed) units and write results.json/results.csv/plots to cfg.output."""
    t0 = time.perf_counter()
    rule = cfg.make_rule()
    units = [
        Unit(
            dataset,
            cfg.model,
            m,
            cfg.algorithm(m),
            rule,
            seed,
            trust,
            str(Path(cfg.output) / "trust"),
            cfg.contribution,
            compression=cfg.compression,
            secure_aggregation=cfg.secure_aggregation,
            privacy=cfg.privacy if cfg.algorithm(m).federated else None,
        )
        for seed in cfg.seeds
        for m in cfg.methods
    ]
    results = run_units(units, cfg.jobs, on_done)
    rows = summarise(results, cfg.model.name)
    ev = Evaluator(dataset, cfg.model)
    dummy = ev.dummy().as_dict()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    files = [
        _write_json(out, cfg, dataset, rows, dummy, results, time.perf_counter() - t0, notice),
        _write_csv(out, rows),
    ]
    if plots:
        files += _plots(out, dataset, ev.y_true, results, rows)
    return Report(
        rows,
        dummy,
        dataset.schema.unit,
        out,
        files,
        time.perf_counter() - t0,
        notice,
        results,
        dataset.schema.task,
    )


def provenance(dataset: FederatedDataset, seconds: float | None = None) -> dict:
    sources = [o.source for o in dataset.orgs] + ([dataset.test.source] if dataset.test else [])
    digests = {}
    for s in sources:
        p = Path(s)
        if p.is_file():
            digests[p.name] = perovskite.sha256_file(p)
    info = {
        "matswarm_version": matswarm.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": f"{platform.system()} {platform.machine()}, {_cpu_count()} CPU(s)",
        "data": dataset.description,
        "data_sha256": digests,
        "schema_sha256": dataset.schema.digest(),
        "n_features": dataset.schema.n_features,
        "org_rows": {o.name: o.n for o in dataset.orgs},
        "test_rows": dataset.test.n if dataset.test else 0,
    }
    if seconds is not None:
        info["wall_seconds"] = round(seconds, 2)
    return info


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_json(out, cfg, dataset, rows, dummy, results, seconds, notice) -> Path:
    doc = {
        "units": dataset.schema.unit,
        "task": dataset.schema.task,
        "rows": [r.as_dict() for r in rows],
        "dummy": dummy,
        "notice": notice,
        "config": cfg.describe(),
        "provenance": provenance(dataset, seconds),
        "per_seed": [
            {
                "method": r.method,
                "seed": r.seed,
                "seconds": round(r.seconds, 3),
                "mse": {k: m.mse for k, m in r.metrics.items()},
                "test_mse_per_round": r.test_mse_per_round,
                "trust": r.trust,
                "contributions": r.contributions,
                "traffic": r.traffic,
                **({"privacy": r.privacy} if r.privacy else {}),
            }
            for r in results
        ],
        "trust": trust_summary(results),
        # Label distances, feature overlap and sample ratio of the orgs (every run).
        "heterogeneity": heterogeneity(dataset).as_dict(),
    }
    path = out / "results.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


def trust_summary(results: list[UnitResult]) -> dict | None:
    """How many runs went through the trust layer and whether every one verified."""
    runs = [r.trust for r in results if r.trust]
    if not runs:
        return None
    return {
        "tasks": len(runs),
        "all_verified": all(t["verified"] for t in runs),
        "rounds_verified": sum(t["rounds_verified"] for t in runs),
        "ledger_events": sum(t["ledger_events"] for t in runs),
        "ledger": "embedded EVM chain (eth-tester + py-evm), one per run, under trust/",
        "note": SECURITY_NOTE,
    }


def _write_csv(out: Path, rows: list[SummaryRow]) -> Path:
    path = out / "results.csv"
    with path.open("w", newline="") as fh:
        fields = type(rows[0]).__dataclass_fields__ if rows else SummaryRow.__dataclass_fields__
        w = csv.DictWriter(fh, fieldnames=list(fields))
        w.writeheader()
        for r in rows:
            w.writerow(r.as_dict())
    return path


def _plots(out, dataset, y_true, results, rows) -> list[Path]:
    unit = dataset.schema.unit
    first_seed = min(r.seed for r in results)
    preds: dict[str, np.ndarray] = {}
    for r in results:
        if r.seed != first_seed:
            continue
        for k, p in r.predictions.items():
            label = DISPLAY.get(r.method, r.method)
            preds[label if k == "global" else f"{label}-{k}"] = p
    if dataset.schema.is_classification:
        files = [
            confusion_plot(
                y_true, preds, out / "confusion.png", f"Test-set confusion (seed {first_seed})"
            )
        ]
    else:
        files = [
            parity_plot(
                y_true,
                preds,
                unit,
                out / "parity.png",
                f"Parity on the test set (seed {first_seed})",
            )
        ]
    curves: dict[str, list[float]] = {}
    losses: dict[str, list[float]] = {}
    for method in dict.fromkeys(r.method for r in results):
        runs = [r for r in results if r.method == method and r.test_mse_per_round]
        if runs:
            curves[DISPLAY.get(method, method)] = list(
                np.mean([r.test_mse_per_round for r in runs], 0)
            )
            for org in runs[0].train_loss_per_round:
                losses[f"{DISPLAY.get(method, method)} {org}"] = list(
                    np.mean([r.train_loss_per_round[org] for r in runs], 0)
                )
    if curves:
        ref = {
            f"{DISPLAY.get(r.method, r.method)}-{r.org}"
            if r.org != "global"
            else DISPLAY.get(r.method, r.method): getattr(r, "mse_mean", None)
            or getattr(r, "brier_mean", 0.0)
            for r in rows
            if r.method in ("joint", "solo")
        }
        what = "Brier score" if dataset.schema.is_classification else "MSE"
        files.append(
            curves_plot(
                curves,
                out / "rounds.png",
                f"Global model test {what} per round",
                "test Brier score" if what != "MSE" else f"test MSE ({unit})²",
                reference=ref,
            )
        )
        files.append(
            curves_plot(
                losses,
                out / "train_loss.png",
                "Local training loss per round (standardised units)",
                "loss",
            )
        )
    return files
