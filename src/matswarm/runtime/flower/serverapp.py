"""The Flower ServerApp: runs the :class:`FlowerCoordinator` for the task in the run config.

Run-config keys (declared in the shim app's ``pyproject.toml``, see :mod:`.fab`):
``task-spec`` (the :class:`~matswarm.protocol.spec.TaskSpec` JSON), ``task-id`` (a trusted
task's ledger id, hex; empty: none), ``status-file`` and ``result-file`` (paths on the
coordinator machine, optional), ``stall-timeout`` (seconds, 0 = 10 x the round deadline).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from matswarm.runtime.flower.env import quiet_flower
from matswarm.runtime.flower.spec import load_spec

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    from matswarm.runtime.flower.coordinator import FlowerCoordinator

    quiet_flower()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = context.run_config
    spec = load_spec(str(cfg["task-spec"]))
    task_id = str(cfg.get("task-id", "")) or None
    status = str(cfg.get("status-file", "")) or None
    stall = float(cfg.get("stall-timeout", 0) or 0) or None
    coord = FlowerCoordinator(
        grid, spec, task_id=task_id, status_path=status, stall_timeout_s=stall, poll_s=0.02
    )
    try:
        result = coord.run()
    except Exception as exc:
        coord.fail(f"{type(exc).__name__}: {exc}")
        raise
    out = str(cfg.get("result-file", ""))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result.to_json(), indent=1))
