"""Values that cross organisation boundaries, with canonical hashes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

#: ``masked``: a secure-aggregation input (uint32 words of Z_{2^32} carried bit for bit in the
#: float32 vector; only :class:`matswarm.privacy.secagg_round.SecureAggregator` reads it).
#: ``histogram``: per-bin gradient/hessian sums of federated trees (matswarm.algorithms.histogram).
UPDATE_KINDS = ("delta", "gradient", "masked", "histogram")


def vector_hash(vector: np.ndarray) -> str:
    """sha256 of a parameter vector's little-endian float32 bytes: the id compared across orgs."""
    v = np.ascontiguousarray(vector, dtype="<f4")
    return hashlib.sha256(v.tobytes()).hexdigest()


@dataclass(frozen=True)
class Update:
    """One organisation's contribution to one round.

    ``vector`` is a float32 model delta (``local - global``) or gradient, per the task's update
    mode; ``n_samples`` is the org's row count (its weight in the sample-weighted mean).
    """

    task: str
    round: int
    org: str
    vector: np.ndarray
    n_samples: int
    kind: str = "delta"
    #: JSON of the enclave quote over this update when training is attested (travels inside the
    #: signed envelope; verified by every org; not part of :meth:`digest`).
    attestation: str | None = None
    #: A compressed update: ``(codec name, codec params, codec arrays)``; ``vector`` is their
    #: deterministic decoding. The encoded update (and so its envelope) carries the arrays.
    compressed: tuple[str, dict, dict[str, np.ndarray]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in UPDATE_KINDS:
            raise ValueError(f"update kind must be one of {UPDATE_KINDS}, got {self.kind!r}")
        if self.vector.dtype != np.float32 or self.vector.ndim != 1:
            raise ValueError(
                f"update vector must be 1-D float32, got {self.vector.dtype} {self.vector.shape}"
            )
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")

    def digest(self) -> str:
        """sha256 binding the vector to (task, round, org, kind, n_samples)."""
        h = hashlib.sha256()
        header = (
            f"matswarm-update/v1|{self.task}|{self.round}|{self.org}|{self.kind}|{self.n_samples}|"
        )
        h.update(header.encode())
        h.update(np.ascontiguousarray(self.vector, dtype="<f4").tobytes())
        return h.hexdigest()
