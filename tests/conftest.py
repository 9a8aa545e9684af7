"""Shared fixtures: the perovskite data from ../shared (or MATSWARM_DATA), small synthetic sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def perovskite_path() -> Path:
    env = os.environ.get("MATSWARM_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data" / "perovskite"


@pytest.fixture(scope="session")
def perovskite_dir() -> Path:
    d = perovskite_path()
    if not (d / "train_part0.csv").is_file():
        pytest.fail(
            f"perovskite data not found at {d}; set MATSWARM_DATA or place ../shared beside "
            "the repository"
        )
    return d


@pytest.fixture(scope="session")
def perovskite(perovskite_dir):
    from matswarm.data import perovskite as pv

    return pv.load(perovskite_dir)


@pytest.fixture()
def small_synthetic():
    from matswarm.data import synthetic

    return synthetic.make_dataset(n_rows=240, n_features=12, n_orgs=3, n_test=60, seed=1)
