"""Fixtures for the ledger tests. Every key is generated at test time."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from matswarm.ledger import Ledger

from .ledger_helpers import Consortium


@pytest.fixture
def consortium(tmp_path: Path) -> Iterator[Consortium]:
    founder = Account.create()
    orgs = [Account.create() for _ in range(5)]
    ledger = Ledger.embedded(tmp_path / "chain", founder)
    for i, org in enumerate(orgs):
        assert ledger.propose_admission(org.address, os.urandom(32), os.urandom(32), f"org{i}")
    yield Consortium(tmp_path / "chain", founder, orgs, Account.create(), ledger)
    ledger.close()
