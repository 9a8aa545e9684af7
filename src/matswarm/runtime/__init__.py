"""Where participants run: in-process now; Flower (simulation and multi-machine) drives the same
protocol."""

from matswarm.runtime.inprocess import build_engine, configure_torch, run_baseline, run_federated

__all__ = ["build_engine", "configure_torch", "run_baseline", "run_federated"]
