"""The trust-flow tests' shared fixture: a small trusted task (see ``helpers``)."""

from __future__ import annotations

import pytest
from tests.trustflow.helpers import run_trusted


@pytest.fixture()
def trusted_run(small_synthetic, tmp_path):
    cons, eng, spec, task_id = run_trusted(small_synthetic, tmp_path)
    yield cons, eng, spec, task_id
    cons.close()
