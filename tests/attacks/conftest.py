"""Fixtures for attack and attestation tests (helpers live in ``helpers.py``)."""

import pytest

from .helpers import run_attacked


@pytest.fixture()
def attacked_mse():
    return run_attacked
