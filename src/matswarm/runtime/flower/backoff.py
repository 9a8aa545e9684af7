"""Polling intervals that grow while nothing happens and drop back on activity.

Every hop of a Flower deployment polls: the SuperNode polls the SuperLink for messages, the
in-node executor polls the SuperNode's Runtime API for tasks, the coordinator polls the
SuperLink for replies. A fixed short interval keeps latency low but costs CPU in proportion to
the time spent waiting, on both ends of the poll (one SuperNode poll costs about 12 CPU-ms
across SuperNode and SuperLink, measured on loopback with TLS and node authentication). With
K organisations a round lasts longer *and* K pollers wait through it, so fixed-rate polling
makes the consortium's idle CPU grow as K² and, on a small machine, slows the work it waits
for. A geometric back-off spends O(log wait) polls per wait instead of O(wait), at a latency
cost bounded by ``growth - 1`` of the wait (or ``longest``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    """``next()`` gives ``first``, then each interval ``growth`` times the last, at most
    ``longest``; ``reset()`` after activity starts over at ``first``."""

    first: float
    longest: float
    growth: float = 1.5
    _current: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.longest:
            raise ValueError(
                f"backoff needs 0 < first <= longest, got first={self.first}, "
                f"longest={self.longest}"
            )
        if self.growth < 1:
            raise ValueError(f"backoff growth must be >= 1, got {self.growth}")
        self._current = self.first

    def next(self) -> float:
        interval = self._current
        self._current = min(self._current * self.growth, self.longest)
        return interval

    def reset(self) -> None:
        self._current = self.first


__all__ = ["Backoff"]
