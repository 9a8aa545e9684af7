"""Process environment for everything Flower: no telemetry, no update checks, ever."""

from __future__ import annotations

import os

QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1"}


def quiet_flower(env: dict[str, str] | None = None) -> dict[str, str]:
    """Force telemetry and update checks off in ``env`` (default: this process); returns it."""
    target = os.environ if env is None else env
    target.update(QUIET)
    return target  # type: ignore[return-value]
