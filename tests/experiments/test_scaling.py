"""The scaling study (Fig. 5) on a small synthetic table: every point measured, the trust
layer's round hashes equal the plain run's, the per-org share ratios and the plot written."""

from __future__ import annotations

import json

import pytest

from matswarm.experiments.scaling import run_scaling, subset


def test_subset_takes_rows_features_and_splits_evenly(small_synthetic):
    ds = subset(small_synthetic, fraction=0.5, n_features=5, orgs=4, seed=0)
    assert ds.schema.features == small_synthetic.schema.features[:5]
    sizes = [o.n for o in ds.orgs]
    assert sum(sizes) == round(0.5 * sum(o.n for o in small_synthetic.orgs))
    assert max(sizes) - min(sizes) <= 1 and all(o.X.shape[1] == 5 for o in ds.orgs)
    assert ds.test is not None and ds.test.X.shape[1] == 5
    with pytest.raises(ValueError, match="n_features"):
        subset(small_synthetic, fraction=1.0, n_features=99, orgs=3, seed=0)


def test_scaling_study_in_process(small_synthetic, tmp_path):
    doc = run_scaling(
        small_synthetic,
        tmp_path,
        rounds=3,
        trust_rounds=2,
        flower=False,
        fractions=(0.5, 1.0),
        features=(6, 12),
        orgs=(3, 6),
        chain="py-evm",
    )
    points = json.loads((tmp_path / "results.json").read_text())["points"]
    assert len(points) == 12  # 6 configurations x trust off / on
    trusted = [p for p in points if p["trust"]]
    assert trusted and all(p["hashes_equal_plain"] for p in trusted)
    assert all(p["cpu_s_per_round"] > 0 and p["mse"] > 0 for p in points)
    assert set(doc["per_org_share_15_vs_3"]) == set()  # no 15-org point in this small sweep
    assert (tmp_path / "scaling.png").stat().st_size > 10_000
    assert "linearly" in doc["paper_trends"]["orgs"]
    with pytest.raises(ValueError, match="include 3"):
        run_scaling(small_synthetic, tmp_path, orgs=(6,), features=(6,), flower=False)
