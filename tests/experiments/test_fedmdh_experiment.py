"""`matswarm experiment fedmdh` end to end at toy size: tables, results.json schema, plots."""

import io
import json

from rich.console import Console
from rich.progress import Progress

from matswarm.experiments.fedmdh import ABLATION, METHODS, run_fedmdh_experiment


def test_experiment_writes_rows_ablation_and_plots(perovskite_dir, tmp_path):
    out = io.StringIO()
    console = Console(file=out, width=140)
    doc = run_fedmdh_experiment(
        console,
        lambda: Progress(console=console),
        seeds=2,
        data=perovskite_dir,
        output=tmp_path,
        jobs=1,
        rounds=2,
    )
    text = out.getvalue()
    assert "0.9006" in text and "Ablation" in text and "144" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] == doc["rows"]
    methods = {r["method"] for r in saved["rows"]}
    assert methods == set(METHODS)
    for r in saved["rows"]:
        assert {"method", "model", "org", "mse_mean", "rmse_mean", "mae_mean", "r2_mean"} <= set(r)
        assert r["n_seeds"] == 2 and r["rmse_std"] >= 0
    constant = next(r for r in saved["rows"] if r["method"] == "constant")
    assert constant["rmse_mean"] == saved["dummy"]["rmse"]
    assert [a["method"] for a in saved["ablation"]] == list(ABLATION)
    assert all(a["n_seeds"] == 2 for a in saved["ablation"])
    assert saved["heterogeneity"]["columns"] == {"org1": 144, "org2": 145, "org3": 142}
    for name in ("parity.png", "rounds.png", "ablation.png"):
        assert (tmp_path / name).stat().st_size > 0
