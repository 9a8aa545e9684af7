"""``matswarm experiment attacks`` on a tiny budget: planning (n-versus-f), outputs, summary."""

from __future__ import annotations

import json

import pytest

from matswarm.experiments.attacks import plan, run_attacks_experiment


def test_plan_refuses_krum_family_at_four_orgs_and_runs_them_in_the_extra_panel():
    cells, refused = plan([0, 1], rounds=5)
    assert {r["rule"]: r["needs"] for r in refused} == {"MultiKrum": 5, "Bulyan": 7}
    main_rules = {c.rule for c in cells if c.panel == "main"}
    assert main_rules == {"mean", "median", "centered-clipping", "geomed", "nnm+centered-clipping"}
    extra = {c.rule for c in cells if c.panel == "extra"}
    assert extra == {"mean", "multikrum", "bulyan"}
    assert {c.n_orgs for c in cells if c.panel == "extra"} == {7}
    # 7 scenarios x 2 attestation modes x 2 seeds per rule
    assert len(cells) == (5 + 3) * 7 * 2 * 2
    with pytest.raises(ValueError, match="unknown attack"):
        plan([0], 5, scenarios=["gradient-ascent"])


def test_tiny_experiment_writes_table_curves_and_rejection_log(perovskite_dir, tmp_path):
    doc = run_attacks_experiment(
        seeds=1,
        rounds=3,
        output=tmp_path,
        jobs=1,
        data=perovskite_dir,
        rules=["mean", "bulyan"],
        scenarios=["ipm", "label-flip"],
    )
    for name in ("fig1.png", "fig1_extra.png", "summary.txt", "results.csv", "results.json"):
        assert (tmp_path / name).is_file(), name
    md = (tmp_path / "results.md").read_text()
    assert "| ipm | no |" in md and "n/a" in md and "EXTRA panel" in md
    rows = doc["rows"]
    main = {(r["rule"], r["attack"], r["attested"]) for r in rows if r["panel"] == "main"}
    assert ("Bulyan", "ipm", False) not in main  # n/a at n=4, reported, not run degraded
    assert doc["not_applicable"][0]["rule"] == "Bulyan"
    att = doc["survival"]["attestation"]
    # every IPM update rejected with attestation on (main: Mean 3 rounds; extra: Mean, Bulyan)
    assert att["post_training_updates_sent"] == 3 * 3
    assert att["post_training_updates_rejected"] == att["post_training_updates_sent"]
    assert att["label_flip_updates_rejected"] == 0 and att["label_flip_updates_sent"] == 9
    assert att["honest_updates_rejected"] == 0
    lines = (tmp_path / "rejections.jsonl").read_text().splitlines()
    assert len(lines) == 9 and {json.loads(x)["reason"] for x in lines} == {"output_mismatch"}
    assert "SIMULATED" in doc["summary_text"] and "not applicable" in doc["summary_text"].lower()
    saved = json.loads((tmp_path / "results.json").read_text())
    assert len(saved["curves"]) == len(doc["curves"]) and saved["units"] == "(eV/atom)^2"
