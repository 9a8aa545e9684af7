"""Materials-data commands: ``matswarm featurize`` (formulas to Magpie descriptors), and the
results table of a classification run."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from matswarm.cli._output import console, err_console, fail


def featurize_command(
    table: Annotated[Path, typer.Argument(help="CSV/TSV/Parquet with a formula column.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the featurised table.")],
    formula_column: Annotated[
        str, typer.Option(help="Column with the formulas (default: formula, else composition).")
    ] = "formula",
    preset: Annotated[str, typer.Option(help="matminer ElementProperty preset.")] = "magpie",
    skip_invalid: Annotated[
        bool, typer.Option(help="Drop rows whose formula is invalid (each is listed).")
    ] = False,
) -> None:
    """Add composition descriptors (matminer ElementProperty, Magpie preset) computed from each
    row's formula. Features are cached by formula on this machine; nothing leaves it."""
    from matswarm.data import DataError, read_table
    from matswarm.data.featurize import featurize_table

    if out.suffix.lower() not in (".csv", ".tsv", ".parquet", ".pq"):
        fail(f"{out}: --out must end in .csv, .tsv or .parquet")
    if out.exists() and table.exists() and out.resolve() == table.resolve():
        fail(f"{out}: --out is the input file; write the featurised table to another file")
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
    )
    try:
        with data_notes():
            df = read_table(table)
        with progress:
            bar = progress.add_task("featurising formulas", total=None)

            def step(done: int, total: int) -> None:
                progress.update(bar, completed=done, total=total)

            res = featurize_table(
                df,
                formula_column=formula_column,
                preset=preset,
                source=str(table),
                skip_invalid=skip_invalid,
                progress=step,
            )
        for bad in res.invalid:
            err_console.print(
                f"skipped {table}, {bad.describe()}", soft_wrap=True, highlight=False, markup=False
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        suffix = out.suffix.lower()
        if suffix in (".parquet", ".pq"):
            res.table.to_parquet(out, index=False)
        else:
            res.table.to_csv(out, index=False, sep="\t" if suffix == ".tsv" else ",")
    except (DataError, OSError) as exc:
        fail(str(exc))
    spec = res.spec
    console.print(
        f"wrote {out}: {len(res.table)} rows, {len(res.feature_columns)} descriptor columns "
        f"({spec.name}, {spec.version}, preset {spec.preset}); {res.cached} formulas from the "
        f"cache, {res.computed} computed"
        + (f"; {len(res.invalid)} invalid row(s) skipped" if res.invalid else ""),
        soft_wrap=True,
        highlight=False,
    )


def print_classification_report(report: Any, title: str) -> None:
    """The results table of a classification comparison (one row per method and model)."""
    from matswarm.experiments.runner import DISPLAY

    models = sorted({r.model for r in report.rows})
    seeds = sorted({r.n_seeds for r in report.rows})
    table = Table(
        title=f"{title} (model {', '.join(models)}, classification)",
        caption=f"Test set, mean ± std over {'/'.join(map(str, seeds))} seeds; Majority predicts "
        "the training majority class (with the training positive rate as its probability)",
    )
    for col in ("Method", "Org", "Accuracy", "Balanced acc.", "F1", "ROC-AUC", "Brier"):
        table.add_column(col, justify="left" if col in ("Method", "Org") else "right")
    for r in report.rows:
        table.add_row(
            DISPLAY.get(r.method, r.method),
            r.org,
            f"{r.accuracy_mean:.3f}±{r.accuracy_std:.3f}",
            f"{r.balanced_accuracy_mean:.3f}",
            f"{r.f1_mean:.3f}",
            f"{r.roc_auc_mean:.3f}",
            f"{r.brier_mean:.4f}",
        )
    d = report.dummy
    table.add_row(
        "Majority",
        "global",
        f"{d['accuracy']:.3f}",
        f"{d['balanced_accuracy']:.3f}",
        f"{d['f1']:.3f}",
        f"{d['roc_auc']:.3f}",
        f"{d['brier']:.4f}",
    )
    console.print(table)
    console.print(
        f"Wrote {', '.join(p.name for p in report.files)} to [bold]{report.output}[/] "
        f"({report.seconds:.1f} s)"
    )


@contextmanager
def data_notes() -> Iterator[None]:
    """Print the data layer's warnings raised inside the block (a guessed encoding, skipped
    formulas) as ``note:`` lines on stderr, also when an error ends the block."""
    from matswarm.data.featurize import FeaturizeWarning
    from matswarm.data.tables import TableReadWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TableReadWarning)
        warnings.simplefilter("always", FeaturizeWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, TableReadWarning | FeaturizeWarning):
                    err_console.print(
                        f"note: {w.message}", soft_wrap=True, highlight=False, markup=False
                    )
                else:
                    warnings.showwarning(w.message, w.category, w.filename, w.lineno)


def _show_data_warnings_as_notes() -> None:
    """Print the data layer's warnings (a guessed encoding, skipped formulas) as one ``note:``
    line on stderr instead of Python's two-line ``file:line: Warning`` form."""
    from matswarm.data.featurize import FeaturizeWarning
    from matswarm.data.tables import TableReadWarning

    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TableReadWarning | FeaturizeWarning):
            err_console.print(f"note: {message}", soft_wrap=True, highlight=False, markup=False)
            return
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def register(app: typer.Typer) -> None:
    app.command("featurize")(featurize_command)
    _show_data_warnings_as_notes()
