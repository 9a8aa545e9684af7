"""Formula featurisation with matminer (the ``materials`` extra): the descriptors equal the
Magpie columns shipped with the perovskite data, are cached by formula, and a bad formula is an
error naming the file, the row and the value."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

pytest.importorskip(
    "matminer", reason='the materials extra is not installed (pip install -e ".[materials]")'
)

from matswarm.data import DataError
from matswarm.data.featurize import (
    FeatureCache,
    FeaturizerSpec,
    FeaturizeWarning,
    check_same_featurizer,
    feature_columns,
    featurize,
    featurize_table,
    featurizer_spec,
    prepare_table,
    task_featurizer,
)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MATSWARM_FEATURE_CACHE", str(tmp_path / "feature-cache"))


def test_descriptors_equal_the_perovskite_magpie_columns(perovskite_dir):
    ref = pd.read_csv(perovskite_dir / "test_dataset.csv").head(60)
    out = featurize(ref[["formula", "e_form"]], source="test_dataset.csv")
    cols = list(feature_columns("magpie"))
    assert len(cols) == 132 and list(out.columns) == ["formula", "e_form", *cols]
    np.testing.assert_allclose(out[cols].to_numpy(), ref[cols].to_numpy(), rtol=0, atol=1e-6)


def test_features_are_cached_by_formula(tmp_path):
    df = pd.DataFrame({"formula": ["NaCl", "Fe2O3", "NaCl", "SrTiO3"], "y": [1.0, 2, 3, 4]})
    first = featurize_table(df)
    assert (first.computed, first.cached) == (3, 0)  # distinct formulas only
    second = featurize_table(df)
    assert (second.computed, second.cached) == (0, 3)
    pd.testing.assert_frame_equal(first.table, second.table)
    cache = tmp_path / "feature-cache" / f"{first.spec.cache_key()}.sqlite"
    assert cache.is_file()
    # A cache entry of the wrong length (another preset, a corrupt write) is recomputed.
    fc = FeatureCache(first.spec, 132, tmp_path / "feature-cache")
    fc.put_many({"NaCl": np.zeros(3)})
    fc.close()
    third = featurize_table(df)
    assert (third.computed, third.cached) == (1, 2)
    pd.testing.assert_frame_equal(first.table, third.table)


@pytest.mark.parametrize(
    ("formula", "reason"),
    [
        ("XyO3", r"unknown element 'Xy'"),
        ("fe2o3", r"not a chemical formula"),
        ("He", r"Magpie has no data for He"),
        ("", r"empty"),
        ("Fe0", r"no atoms"),
    ],
)
def test_bad_formula_names_file_row_and_value(formula, reason):
    df = pd.DataFrame({"formula": ["NaCl", "KCl", formula], "e_form": [1.0, 2.0, 3.0]})
    with pytest.raises(DataError) as info:
        featurize(df, source="lab-a.csv")
    msg = str(info.value)
    assert msg.startswith("lab-a.csv, column 'formula': invalid formula")
    assert "data row 3" in msg and f"{formula!r}" in msg and "--skip-invalid" in msg
    assert re.search(reason, msg)


def test_skip_invalid_drops_and_reports_every_bad_row():
    df = pd.DataFrame({"formula": ["NaCl", "XyO3", None, "KCl"], "e_form": [1.0, 2, 3, 4]})
    with pytest.warns(FeaturizeWarning, match=r"skipped 2 row\(s\).*data row 2: 'XyO3'"):
        out = featurize(df, source="t.csv", skip_invalid=True)
    assert out["formula"].tolist() == ["NaCl", "KCl"] and out["e_form"].tolist() == [1.0, 4.0]
    res = featurize_table(df, skip_invalid=True)
    assert [(b.row, b.value) for b in res.invalid] == [(2, "XyO3"), (3, "")]


def test_formula_column_choice_and_clashes():
    df = pd.DataFrame({"composition": ["NaCl"], "y": [1.0]})
    assert "MagpieData mean Number" in featurize(df).columns  # falls back to 'composition'
    with pytest.raises(DataError, match=r"column 'chem'.*--formula-column"):
        featurize(df, formula_column="chem")
    twice = featurize(df)
    with pytest.raises(DataError, match=r"already has 132 magpie descriptor"):
        featurize(twice)
    with pytest.raises(DataError, match=r"unknown featurizer preset 'deml'"):
        featurize(df, preset="deml")


def test_spec_is_pinned_and_a_different_version_is_refused():
    spec = featurizer_spec()
    assert spec == FeaturizerSpec.from_dict(spec.as_dict())
    assert spec.name == "matminer.ElementProperty" and spec.preset == "magpie"
    assert "matminer" in spec.version and "pymatgen" in spec.version
    pinned = task_featurizer("magpie", "formula")
    df = pd.DataFrame({"formula": ["NaCl"], "y": [1.0]})
    assert prepare_table(df, "t.csv", None) is df
    assert len(prepare_table(df, "t.csv", pinned).columns) == 134
    other = pinned | {"version": "matminer 0.9.0; pymatgen 2023.1.1"}
    with pytest.raises(DataError, match=r"requires featuriser .*0\.9\.0.*install those versions"):
        check_same_featurizer(other)
    with pytest.raises(DataError, match=r"requires featuriser"):
        prepare_table(df, "t.csv", other)


def test_without_the_materials_extra_the_error_says_what_to_install(monkeypatch):
    import sys

    from matswarm.data import featurize as fz

    monkeypatch.setitem(sys.modules, "matminer", None)  # import matminer -> ImportError
    fz._element_property.cache_clear()
    try:
        with pytest.raises(fz.FeaturizerUnavailable, match=r'pip install -e "\.\[materials\]"'):
            featurize(pd.DataFrame({"formula": ["NaCl"]}))
    finally:
        fz._element_property.cache_clear()
