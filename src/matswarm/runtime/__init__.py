"""Where participants run: in-process now; Flower (simulation and multi-machine) drives the same
protocol."""

from typing import Any

__all__ = ["build_engine", "configure_torch", "run_baseline", "run_federated"]


def __getattr__(name: str) -> Any:
    # Lazy, so that the Flower shim (matswarm.runtime.flower.clientapp) does not import torch.
    if name in __all__:
        from matswarm.runtime import inprocess

        return getattr(inprocess, name)
    raise AttributeError(f"module 'matswarm.runtime' has no attribute {name!r}")
