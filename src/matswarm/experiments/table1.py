"""MatSwarm paper, Table 1: test MSE of RNN, Lasso, MLP and LSTM local models on the paper's
non-i.i.d. perovskite split, for Solo-Org1..3, MatSwarm(Org1..3), MatSwarm(Global) and Joint,
printed beside the paper's numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from matswarm.experiments.compare import load_data, provenance
from matswarm.experiments.config import ExperimentConfig
from matswarm.experiments.runner import Unit, run_units, summarise

# Wang et al., Nature Communications 15, 9290 (2024), Table 1: mean ± std over 10 runs (eV/atom).
PAPER_TABLE1: dict[str, dict[str, tuple[float, float]]] = {
    "rnn": {
        "Solo-Org1": (0.9146, 0.1382),
        "Solo-Org2": (0.2681, 0.0169),
        "Solo-Org3": (1.4023, 0.0692),
        "MatSwarm(Org1)": (0.2341, 0.0232),
        "MatSwarm(Org2)": (0.2156, 0.0199),
        "MatSwarm(Org3)": (0.3769, 0.0866),
        "MatSwarm(Global)": (0.0869, 0.0148),
        "Joint": (0.0147, 0.0021),
    },
    "lasso": {
        "Solo-Org1": (1.3946, 0.0298),
        "Solo-Org2": (0.4313, 0.0026),
        "Solo-Org3": (2.1218, 0.0029),
        "MatSwarm(Org1)": (1.1829, 0.0045),
        "MatSwarm(Org2)": (0.2862, 0.0032),
        "MatSwarm(Org3)": (1.2222, 0.0044),
        "MatSwarm(Global)": (0.2595, 0.0035),
        "Joint": (0.0191, 0.0039),
    },
    "mlp": {
        "Solo-Org1": (1.0291, 0.0551),
        "Solo-Org2": (0.2746, 0.0233),
        "Solo-Org3": (1.6159, 0.0405),
        "MatSwarm(Org1)": (0.2096, 0.0474),
        "MatSwarm(Org2)": (0.1176, 0.0143),
        "MatSwarm(Org3)": (0.5849, 0.0386),
        "MatSwarm(Global)": (0.0903, 0.0073),
        "Joint": (0.0138, 0.004),
    },
    "lstm": {
        "Solo-Org1": (1.1483, 0.0845),
        "Solo-Org2": (0.3481, 0.0292),
        "Solo-Org3": (1.5687, 0.0586),
        "MatSwarm(Org1)": (0.1388, 0.0302),
        "MatSwarm(Org2)": (0.1291, 0.0273),
        "MatSwarm(Org3)": (0.1987, 0.0759),
        "MatSwarm(Global)": (0.0941, 0.0194),
        "Joint": (0.0125, 0.0024),
    },
}
ROWS = [
    "Solo-Org1",
    "Solo-Org2",
    "Solo-Org3",
    "MatSwarm(Org1)",
    "MatSwarm(Org2)",
    "MatSwarm(Org3)",
    "MatSwarm(Global)",
    "Joint",
]


def row_label(method: str, org: str) -> str:
    if method == "solo":
        return f"Solo-{org.capitalize()}"
    if method == "joint":
        return "Joint"
    return f"MatSwarm({'Global' if org == 'global' else org.capitalize()})"


def run_table1(
    console: Console,
    progress_factory: Callable[[], Progress],
    *,
    seeds: int,
    data: Path | None,
    output: Path,
    jobs: int,
    models: list[str],
    rounds: int | None = None,
) -> dict:
    unknown = [m for m in models if m not in PAPER_TABLE1]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; Table 1 has {', '.join(PAPER_TABLE1)}")
    data_section = {"source": "perovskite", **({"path": str(data)} if data else {})}
    base = ExperimentConfig.from_dict(
        {
            "data": data_section,
            "training": {"methods": ["solo", "matswarm", "joint"]},
            "run": {"seeds": seeds, "jobs": jobs, "output": str(output)},
        },
        source="table1",
    )
    dataset, _ = load_data(base)
    units = []
    cfgs = {}
    for m in models:
        cfg = ExperimentConfig.from_dict(
            {
                "data": data_section,
                "model": {"name": m},
                "training": {
                    "methods": base.methods,
                    **({"rounds": rounds} if rounds is not None else {}),
                },
                "run": {"seeds": seeds, "jobs": jobs, "output": str(output)},
            },
            source="table1",
        )
        cfgs[m] = cfg
        rule = cfg.make_rule()
        units += [
            Unit(dataset, cfg.model, meth, cfg.algorithm(meth), rule, s)
            for s in cfg.seeds
            for meth in cfg.methods
        ]
    import time

    t0 = time.perf_counter()
    with progress_factory() as bar:
        task = bar.add_task("table1", total=len(units))
        results = run_units(units, jobs, lambda r: bar.update(task, advance=1))
    seconds = time.perf_counter() - t0
    cells: dict[str, dict[str, tuple[float, float]]] = {}
    all_rows = []
    for m in models:
        res = [r for r, u in zip(results, units, strict=True) if u.model.name == m]
        rows = summarise(res, m)
        all_rows += [r.as_dict() for r in rows]
        cells[m] = {row_label(r.method, r.org): (r.mse_mean, r.mse_std) for r in rows}

    table = Table(
        title=f"MatSwarm Table 1 reproduced: test MSE (eV/atom), mean ± std over "
        f"{seeds} seeds; paper in grey",
        caption=f"{seconds:.0f} s",
    )
    table.add_column("Local model", no_wrap=True)
    for m in models:
        table.add_column(f"{m.upper()} ours", justify="right")
        table.add_column("paper", justify="right", style="grey50")
    for label in ROWS:
        cols = [label]
        for m in models:
            ours = cells[m].get(label)
            paper = PAPER_TABLE1[m][label]
            cols += [
                f"{ours[0]:.4f} ± {ours[1]:.4f}" if ours else "-",
                f"{paper[0]:.4f} ± {paper[1]:.4f}",
            ]
        table.add_row(*cols)
    console.print(table)
    output.mkdir(parents=True, exist_ok=True)
    doc = {
        "units": dataset.schema.unit,
        "rows": all_rows,
        "table": {
            m: {k: {"ours": cells[m].get(k), "paper": PAPER_TABLE1[m][k]} for k in ROWS}
            for m in models
        },
        "config": {m: c.describe() for m, c in cfgs.items()},
        "provenance": provenance(dataset, seconds),
    }
    (output / "table1.json").write_text(json.dumps(doc, indent=2))
    console.print(f"Wrote table1.json to [bold]{output}[/]")
    return doc
