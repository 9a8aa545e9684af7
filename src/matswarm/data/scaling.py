"""Federated standardisation.

Each organisation publishes only per-column sufficient statistics of its private table (row
count, column sums and sums of squares); the consortium adds them up and derives one mean and
scale per column. No row is pooled, yet the result equals the pooled-data statistics exactly
(up to float64 rounding). Models train on standardised features and targets; every metric is
converted back to the target's own unit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MomentStats:
    """Count, sum and sum of squares per column (float64): what an org shares for scaling.

    ``count`` is one row count, or per column (an array) when organisations hold different
    columns: a column's statistics then come only from the organisations that hold it.
    """

    count: int | np.ndarray
    sum: np.ndarray
    sumsq: np.ndarray

    @classmethod
    def of(cls, values: np.ndarray, mask: np.ndarray | None = None) -> MomentStats:
        """Statistics of ``values``; with a boolean ``mask`` (per column, or per cell) only the
        cells it marks count (the others are columns the org does not hold)."""
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if mask is None:
            return cls(count=int(v.shape[0]), sum=v.sum(axis=0), sumsq=np.square(v).sum(axis=0))
        m = np.broadcast_to(np.asarray(mask, dtype=bool), v.shape)
        held = np.where(m, v, 0.0)
        return cls(
            count=m.sum(axis=0).astype(np.int64),
            sum=held.sum(axis=0),
            sumsq=np.square(held).sum(axis=0),
        )

    def __add__(self, other: MomentStats) -> MomentStats:
        if self.sum.shape != other.sum.shape:
            raise ValueError(
                f"cannot combine statistics of {self.sum.shape[0]} and {other.sum.shape[0]} columns"
            )
        return MomentStats(self.count + other.count, self.sum + other.sum, self.sumsq + other.sumsq)

    @classmethod
    def combine(cls, parts: Iterable[MomentStats]) -> MomentStats:
        parts = list(parts)
        if not parts:
            raise ValueError("no statistics to combine")
        total = parts[0]
        for p in parts[1:]:
            total = total + p
        return total

    @property
    def mean(self) -> np.ndarray:
        """Column means (0 for a column no row holds)."""
        count = np.maximum(self.count, 1)
        return np.where(np.asarray(self.count) > 0, self.sum / count, 0.0)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation; constant columns get 1 so they scale to 0, not NaN."""
        count = np.maximum(self.count, 1)
        var = np.maximum(self.sumsq / count - np.square(self.mean), 0.0)
        std = np.sqrt(var)
        scale_floor = 1e-12 * np.maximum(np.abs(self.mean), 1.0)
        return np.where(std > scale_floor, std, 1.0)


@dataclass(frozen=True)
class Standardizer:
    """Feature and target scaling agreed by the consortium (learned from combined statistics)."""

    x_mean: np.ndarray
    x_scale: np.ndarray
    y_mean: float
    y_scale: float

    @classmethod
    def from_stats(cls, x_stats: MomentStats, y_stats: MomentStats) -> Standardizer:
        return cls(
            x_mean=x_stats.mean,
            x_scale=x_stats.std,
            y_mean=float(y_stats.mean[0]),
            y_scale=float(y_stats.std[0]),
        )

    @classmethod
    def federated(
        cls,
        tables: Iterable[tuple[np.ndarray, np.ndarray]],
        masks: Iterable[np.ndarray | None] | None = None,
    ) -> Standardizer:
        """Combine per-org (X, y) statistics; each table is summarised locally first. With
        ``masks`` (one per table: the columns it holds), a column's mean and scale come only
        from the organisations holding it."""
        xs, ys = [], []
        mask_list = list(masks) if masks is not None else None
        for i, (X, y) in enumerate(tables):
            xs.append(MomentStats.of(X, None if mask_list is None else mask_list[i]))
            ys.append(MomentStats.of(y))
        return cls.from_stats(MomentStats.combine(xs), MomentStats.combine(ys))

    def with_identity_y(self) -> Standardizer:
        """The same feature scaling, targets left as they are (0/1 class labels)."""
        return Standardizer(self.x_mean, self.x_scale, 0.0, 1.0)

    def transform_x(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.x_mean) / self.x_scale).astype(np.float32)

    def transform_y(self, y: np.ndarray) -> np.ndarray:
        return ((y - self.y_mean) / self.y_scale).astype(np.float32)

    def inverse_y(self, y_std: np.ndarray) -> np.ndarray:
        return np.asarray(y_std, dtype=np.float64) * self.y_scale + self.y_mean

    def to_dict(self) -> dict:
        return {
            "x_mean": self.x_mean.tolist(),
            "x_scale": self.x_scale.tolist(),
            "y_mean": self.y_mean,
            "y_scale": self.y_scale,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        return cls(
            x_mean=np.asarray(d["x_mean"], dtype=np.float64),
            x_scale=np.asarray(d["x_scale"], dtype=np.float64),
            y_mean=float(d["y_mean"]),
            y_scale=float(d["y_scale"]),
        )
