"""Fixtures of the Flower runtime tests: a small synthetic task, one Parquet file per org."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from matswarm.data.synthetic import make_tables

if importlib.util.find_spec("flwr") is None:  # the `flower` extra is not installed
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session")
def org_files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("orgdata")
    tables, _ = make_tables(n_rows=360, n_features=8, n_orgs=3, n_test=30, seed=7)
    out = {}
    for name, df in tables.items():
        out[name] = d / f"{name}.parquet"
        df.to_parquet(out[name])
    return out
