"""The ``matswarm`` command line (Typer + Rich)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matswarm.cli import deploy, lifecycle, materials, predict
from matswarm.cli._output import console, fail
from matswarm.data import DataError
from matswarm.experiments.compare import Report, load_data, run_comparison
from matswarm.experiments.config import ConfigError, ExperimentConfig, keys_help
from matswarm.experiments.runner import DISPLAY
from matswarm.protocol.consortium import TrustSettings
from matswarm.web.cli import dashboard

app = typer.Typer(
    help="matswarm: federated (swarm) learning of materials properties with verifiable models.",
    no_args_is_help=True,
    add_completion=False,
)
experiment_app = typer.Typer(help="Reproduce the papers' tables and figures.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")
deploy.register(app)  # node / coordinator / task: across machines on Flower
lifecycle.register(app, deploy.task_app)  # org / ledger / model / verify / task create|join|…
app.command("dashboard")(dashboard)  # read-only web dashboard (web extra)
materials.register(app)  # featurize
predict.register(app)  # predict MODEL_DIR IN.csv


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def run_with_progress(cfg: ExperimentConfig, dataset, notice, title: str, **kw) -> Report:
    total = len(cfg.seeds) * len(cfg.methods)
    with progress_bar() as bar:
        task = bar.add_task(title, total=total)

        def done(result) -> None:
            bar.update(
                task,
                advance=1,
                description=f"{title}: {DISPLAY.get(result.method, result.method)} "
                f"seed {result.seed} done",
            )

        report = run_comparison(cfg, dataset, notice=notice, on_done=done, **kw)
        bar.update(task, description=title)
    return report


def print_trust(report: Report) -> None:
    runs = [r.trust for r in report.results if r.trust]
    if not runs:
        console.print("Trust layer: off (--no-trust).")
        return
    ok = all(t["verified"] for t in runs)
    rounds = sum(t["rounds_verified"] for t in runs)
    events = sum(t["ledger_events"] for t in runs)
    chains = sorted({t.get("chain", "py-evm") for t in runs})
    console.print(
        f"Trust layer: {len(runs)} federated runs were tasks on embedded EVM ledgers "
        f"({', '.join(chains)}) "
        f"({events} ledger events) under {report.output / 'trust'}; re-derived from ledger and "
        f"store: [bold {'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] "
        f"({rounds} rounds checked)."
    )
    if not ok:
        for t in runs:
            if not t["verified"]:
                console.print(f"  {t['task']}: {t['verify']}")
    console.print(
        "[dim]What this shows: who committed what, and that each global model is the agreed "
        "aggregate of signed updates. Not shown: that orgs trained honestly on honest data. The "
        "embedded chain is one process (no consensus); a simulated enclave proves code "
        "identity, not hardware isolation.[/]"
    )


def print_report(report: Report, title: str) -> None:
    if report.task == "classification":
        return materials.print_classification_report(report, title)
    unit = report.unit
    models = sorted({r.model for r in report.rows})
    seeds = sorted({r.n_seeds for r in report.rows})
    table = Table(
        title=f"{title} (model {', '.join(models)})",
        caption=f"Test set, metrics in {unit} (MSE in ({unit})²), mean ± std over "
        f"{'/'.join(map(str, seeds))} seeds; Dummy predicts the training mean (MAE = MAD)",
    )
    for col in ("Method", "Org", "MSE", "RMSE", "MAE", "R²"):
        table.add_column(col, justify="left" if col in ("Method", "Org") else "right")
    for r in report.rows:
        table.add_row(
            DISPLAY.get(r.method, r.method),
            r.org,
            f"{r.mse_mean:.4f}±{r.mse_std:.4f}",
            f"{r.rmse_mean:.4f}",
            f"{r.mae_mean:.4f}",
            f"{r.r2_mean:.3f}",
        )
    d = report.dummy
    table.add_row(
        "Dummy",
        "global",
        f"{d['mse']:.4f}",
        f"{d['rmse']:.4f}",
        f"{d['mae']:.4f}",
        f"{d['r2']:.3f}",
    )
    console.print(table)
    console.print(
        f"Wrote {', '.join(p.name for p in report.files)} to [bold]{report.output}[/] "
        f"({report.seconds:.1f} s)"
    )


def _load_or_fail(cfg: ExperimentConfig):
    """The config's dataset (synthetic stand-in allowed, with a printed NOTE), or exit 2."""
    try:
        dataset, notice = load_data(cfg, allow_synthetic_fallback=True)
    except DataError as exc:
        fail(str(exc))
    if notice:
        console.print(f"[bold yellow]NOTE:[/] {notice}")
    return dataset, notice


@app.command()
def demo(
    output: Annotated[
        Path, typer.Option(help="Folder for results.json, results.csv and plots.")
    ] = Path("matswarm-results/demo"),
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds.")] = 3,
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 2,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Override the number of rounds (quick looks).")
    ] = None,
    trust: Annotated[
        bool,
        typer.Option(
            help="Run federated methods through the trust layer (keys, signed/encrypted "
            "updates, embedded EVM ledger, content-addressed store, verify)."
        ),
    ] = True,
    enclave: Annotated[
        bool, typer.Option(help="Aggregate inside a SIMULATED enclave and keep its quotes.")
    ] = False,
) -> None:
    """Paper split, MLP: Solo x3, FedAvg, MatSwarm and Joint over 3 seeds, with a results table.

    With the trust layer (default) every federated run is a real task on its own embedded
    ledger: each org signs, encrypts, stores and commits its update, re-aggregates and votes;
    afterwards the final model is archived and the whole task is re-derived and verified."""
    training: dict = {"methods": ["solo", "fedavg", "matswarm", "joint"]}
    if rounds is not None:
        training["rounds"] = rounds
    cfg = ExperimentConfig.from_dict(
        {
            "data": {"source": "perovskite", **({"path": str(data)} if data else {})},
            "training": training,
            "run": {"seeds": seeds, "jobs": jobs, "output": str(output)},
        },
        source="demo",
    )
    dataset, notice = _load_or_fail(cfg)
    if not notice:
        console.print(
            f"Data: {dataset.description}, {sum(o.n for o in dataset.orgs)} training rows "
            f"in {len(dataset.orgs)} orgs, {dataset.test.n if dataset.test else 0} test "
            f"rows, {dataset.schema.n_features} features, target "
            f"{dataset.schema.target} ({dataset.schema.unit})"
        )
    settings = TrustSettings(enabled=True, enclave=enclave) if trust else None
    report = run_with_progress(cfg, dataset, notice, "demo", trust=settings)
    print_report(report, "matswarm demo: perovskite formation energy, MLP")
    print_trust(report)


@app.command(epilog="Configuration keys (TOML):\n\n" + escape(keys_help()).replace("\n", "\n\n"))
def run(
    config: Annotated[Path, typer.Argument(help="TOML file; see the keys below.")],
    output: Annotated[Path | None, typer.Option(help="Override [run] output.")] = None,
) -> None:
    """Run the comparison a TOML config describes (data, split, model, methods, rule, seeds)."""
    try:
        cfg = ExperimentConfig.from_toml(config)
        if output is not None:
            cfg.output = str(output)
        with materials.data_notes():
            dataset, _ = load_data(cfg)
        cfg.check_privacy_budget({o.name: o.n for o in dataset.orgs})
    except (ConfigError, DataError) as exc:
        fail(str(exc))
    console.print(
        f"Data: {dataset.description}; {len(dataset.orgs)} orgs; "
        f"model {cfg.model.name}; rule {cfg.make_rule().describe()}"
    )
    try:
        report = run_with_progress(cfg, dataset, None, config.stem)
    except (ConfigError, DataError, ValueError) as exc:  # e.g. a rule needing more orgs
        fail(str(exc))
    print_report(report, f"matswarm run {config.name}")
    from matswarm.cli._contrib import run_contributions_table

    contrib = run_contributions_table(report.results)
    if contrib is not None:
        console.print(contrib)
    print_privacy(report)


def print_privacy(report: Report) -> None:
    """The DP spend of every private run, round by round (first seed of each method)."""
    from matswarm.experiments.privacy import privacy_lines

    for line in privacy_lines(report.results):
        console.print(line, highlight=False)


@experiment_app.command("table1")
def table1(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell (the paper used 10).")] = 10,
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("matswarm-results/table1"),
    jobs: Annotated[int, typer.Option(min=1)] = 2,
    models: Annotated[
        str, typer.Option(help="Comma-separated local models.")
    ] = "rnn,lasso,mlp,lstm",
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Override the number of rounds (quick looks).")
    ] = None,
) -> None:
    """MatSwarm Table 1: RNN, Lasso, MLP, LSTM x (Solo, MatSwarm local/global, Joint)."""
    from matswarm.experiments.table1 import run_table1

    try:
        run_table1(
            console,
            progress_bar,
            seeds=seeds,
            data=data,
            output=output,
            jobs=jobs,
            models=[m.strip() for m in models.split(",") if m.strip()],
            rounds=rounds,
        )
    except (ConfigError, DataError, ValueError) as exc:
        fail(str(exc))


@experiment_app.command("fedmdh")
def fedmdh(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per method.")] = 5,
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("matswarm-results/fedmdh"),
    jobs: Annotated[int, typer.Option(min=1)] = 2,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Override the number of rounds (quick looks).")
    ] = None,
    trust: Annotated[
        bool, typer.Option(help="Run every federated method as a task on the trust layer.")
    ] = False,
) -> None:
    """FedMDH split (3 orgs, 144/145/142 columns): FedMDH, its ablation and the baselines,
    beside the FedMDH poster's numbers."""
    from matswarm.experiments.fedmdh import run_fedmdh_experiment

    try:
        run_fedmdh_experiment(
            console,
            progress_bar,
            seeds=seeds,
            data=data,
            output=output,
            jobs=jobs,
            rounds=rounds,
            trust=trust,
        )
    except (ConfigError, DataError, ValueError) as exc:
        fail(str(exc))


@experiment_app.command("scaling")
def scaling(
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("matswarm-results/scaling"),
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    rounds: Annotated[int, typer.Option(min=2, help="Rounds of each MSE run.")] = 60,
    trust_rounds: Annotated[int, typer.Option(min=2, help="Rounds with the trust layer.")] = 8,
    flower_rounds: Annotated[int, typer.Option(min=2, help="Rounds over Flower.")] = 4,
    flower: Annotated[bool, typer.Option(help="Also deploy the org sweep over Flower.")] = True,
    flower_trust: Annotated[
        bool, typer.Option(help="Over Flower, also run with the trust layer (anvil ledger).")
    ] = True,
    flower_orgs: Annotated[
        str | None, typer.Option(help="Comma-separated org counts over Flower (default: all).")
    ] = None,
    chain: Annotated[str, typer.Option(help="Embedded chain: auto | anvil | py-evm.")] = "auto",
    verification: Annotated[
        str,
        typer.Option(
            help="How trusted rounds are checked: leader (one rotating aggregator, "
            "audited at random; linear) | every-org (each org re-aggregates; K² work)."
        ),
    ] = "leader",
    seed: Annotated[int, typer.Option(help="Seed of the row choice, split and models.")] = 0,
) -> None:
    """MatSwarm Fig. 5: time and CPU per round and global MSE against data size, feature count
    and organisations, trust layer on and off, in-process and over Flower on loopback."""
    from matswarm.experiments.scaling import print_summary, run_scaling

    cfg = ExperimentConfig.from_dict(
        {"data": {"source": "perovskite", **({"path": str(data)} if data else {})}},
        source="scaling",
    )
    base, _ = _load_or_fail(cfg)
    with progress_bar() as bar:
        task = bar.add_task("scaling", total=None)

        def point(p) -> None:
            bar.update(
                task,
                description=f"scaling: {p.sweep} {p.x:g} / {p.runtime} / trust "
                f"{'on' if p.trust else 'off'}: {p.wall_s_per_round:.3f} s per round",
            )

        try:
            doc = run_scaling(
                base,
                output,
                rounds=rounds,
                trust_rounds=trust_rounds,
                flower_rounds=flower_rounds,
                flower=flower,
                flower_trust=flower_trust,
                flower_orgs=[int(k) for k in flower_orgs.split(",")] if flower_orgs else None,
                seed=seed,
                chain=chain,
                verification=verification,
                on_point=point,
            )
        except ValueError as exc:
            fail(str(exc))
    print_summary(console, doc, output)


@experiment_app.command("attacks")
def attacks(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell.")] = 3,
    rounds: Annotated[
        int | None, typer.Option(min=1, help="Rounds per run (default: validation-chosen).")
    ] = None,
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("matswarm-results/attacks"),
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 2,
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    split: Annotated[
        str, typer.Option(help="How the pooled training rows are divided: iid | label-quantile.")
    ] = "iid",
    byzantine: Annotated[int, typer.Option(min=1, help="Number of Byzantine orgs (of 4).")] = 1,
    extra: Annotated[
        bool, typer.Option(help="Also run the rules that need n > 4 at the smallest n they accept.")
    ] = True,
    rules: Annotated[
        str | None, typer.Option(help="Comma-separated subset of rules (default: all seven).")
    ] = None,
    attacks: Annotated[
        str | None, typer.Option(help="Comma-separated subset of attacks (default: all).")
    ] = None,
) -> None:
    """MatSwarm Fig. 1 a-j: 7 rules x (no attack + 5 attacks) x (no attestation, SIMULATED
    attestation), gradient mode, 4 orgs with 1 Byzantine; curves, table and summary."""
    from matswarm.experiments.attacks import ROUNDS, run_attacks_experiment

    if split not in ("iid", "label-quantile"):
        fail(f"--split must be iid or label-quantile, got {split!r}")
    if byzantine >= 2:
        console.print(
            "[yellow]note:[/] with 4 orgs, f >= 2 leaves no rule with a guarantee "
            "(median/CC need a honest majority); running anyway"
        )
    with progress_bar() as bar:
        task = bar.add_task("attacks", total=None)

        def planned(n: int) -> None:
            bar.update(task, total=n)

        def done(r) -> None:
            c = r.cell
            bar.update(
                task,
                advance=1,
                description=f"attacks: {c.rule} / {c.attack}"
                f"{' / attested' if c.attested else ''} / seed {c.seed}",
            )

        try:
            doc = run_attacks_experiment(
                seeds=seeds,
                rounds=rounds or ROUNDS,
                output=output,
                jobs=jobs,
                data=data,
                split=split,
                n_byzantine=byzantine,
                extra=extra,
                rules=[r.strip() for r in rules.split(",") if r.strip()] if rules else None,
                scenarios=[a.strip() for a in attacks.split(",") if a.strip()] if attacks else None,
                on_planned=planned,
                on_done=done,
            )
        except (DataError, ValueError) as exc:
            fail(str(exc))
        bar.update(task, description="attacks")
    from matswarm.experiments.attacks import format_cell

    table = Table(
        title="Fig. 1 reproduced: final test MSE (eV/atom)², mean ± std over seeds "
        "(ratio to the rule's clean run; ✓ = within 1.5x)",
        caption=f"{doc['seconds']:.0f} s; attestation is SIMULATED (code identity, not hardware "
        "isolation); full table in results.md",
    )
    table.add_column("panel")
    table.add_column("attack")
    table.add_column("attested")
    rules = list(dict.fromkeys(r["rule"] for r in doc["rows"]))
    for rule in rules:
        table.add_column(rule, justify="right")
    keyed = {(r["panel"], r["attack"], r["attested"], r["rule"]): r for r in doc["rows"]}
    for panel, attack, attested in dict.fromkeys(
        (r["panel"], r["attack"], r["attested"]) for r in doc["rows"]
    ):
        cells = []
        for rule in rules:
            r = keyed.get((panel, attack, attested, rule))
            if r is None:
                cells.append("n/a" if panel == "main" else "")
            else:
                cells.append(format_cell(r).replace(" ± ", "±"))
        table.add_row(panel, attack, "yes" if attested else "no", *cells)
    console.print(table)
    console.print(escape(doc["summary_text"]))
    console.print(f"Wrote {', '.join(doc['files'])} and results.json to [bold]{output}[/]")


@experiment_app.command("privacy")
def privacy(
    seeds: Annotated[int, typer.Option(min=1, help="Seeds per cell.")] = 3,
    output: Annotated[Path, typer.Option(help="Output folder.")] = Path("matswarm-results/privacy"),
    jobs: Annotated[int, typer.Option(min=1, help="Parallel worker processes.")] = 2,
    data: Annotated[Path | None, typer.Option(help="Folder with the perovskite CSVs.")] = None,
    parts: Annotated[
        str | None, typer.Option(help="Comma-separated parts (default: all, in order).")
    ] = None,
) -> None:
    """Privacy and communication on the paper split: global test MSE vs DP epsilon
    (inf, 10, 3, 1; delta 1e-5) for local and central DP (part "dp"), and vs update bytes
    for 8-/4-bit quantisation and top-k (part "compression"); plots + results.json."""
    from matswarm.experiments.privacy import print_privacy_experiment, run_privacy_experiment

    with progress_bar() as bar:
        task = bar.add_task("privacy", total=None)

        def done(label: str) -> None:
            bar.update(task, advance=1, description=f"privacy: {label}")

        try:
            doc = run_privacy_experiment(
                seeds=seeds,
                data=data,
                output=output,
                jobs=jobs,
                parts=[p.strip() for p in parts.split(",") if p.strip()] if parts else None,
                on_done=done,
            )
        except (ConfigError, DataError, ValueError) as exc:
            fail(str(exc))
        bar.update(task, description="privacy")
    print_privacy_experiment(console, doc, output)


def main() -> None:
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    app()


if __name__ == "__main__":
    main()
