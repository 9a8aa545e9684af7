"""Compression inside the round: each org compresses what it sends and keeps its residual.

:class:`Compression` is an engine update transform (:mod:`matswarm.protocol.engine`). For org
``i`` in round ``t`` it sends ``C(x_i + e_i)`` and keeps ``e_i <- x_i + e_i - D(C(x_i + e_i))``
(error feedback: what compression dropped is added back to the next round's update, so nothing
is lost for good). The update that is published carries the codec's arrays: the trust layer's
envelope, the store and the ledger commitment hold the compressed payload, and every org
decodes the same float32 vector from it. Bytes on the wire are the encoded update messages
(safetensors blob: arrays plus metadata), counted per round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from matswarm.compression.codecs import Codec, Identity
from matswarm.protocol.codec import encode_update
from matswarm.protocol.messages import Update


@dataclass
class Traffic:
    """Update bytes per round: as sent, and as uncompressed float32 messages would be."""

    sent: dict[int, int] = field(default_factory=dict)
    raw: dict[int, int] = field(default_factory=dict)

    def add(self, round_: int, sent: int, raw: int) -> None:
        self.sent[round_] = self.sent.get(round_, 0) + sent
        self.raw[round_] = self.raw.get(round_, 0) + raw

    @property
    def bytes_per_round(self) -> float:
        return float(np.mean(list(self.sent.values()))) if self.sent else 0.0

    def summary(self) -> dict:
        """For results.json: mean bytes per round (sent and uncompressed) and the saving."""
        raw = float(np.mean(list(self.raw.values()))) if self.raw else 0.0
        return {
            "bytes_per_round": self.bytes_per_round,
            "raw_bytes_per_round": raw,
            "reduction": self.reduction,
            "sent_per_round": [self.sent[r] for r in sorted(self.sent)],
        }

    @property
    def reduction(self) -> float:
        """Fraction of the uncompressed update traffic saved (0 for ``none``)."""
        raw = sum(self.raw.values())
        return 1.0 - sum(self.sent.values()) / raw if raw else 0.0


class Compression:
    """Engine transform: compress every org's update with error feedback (residual per org)."""

    def __init__(self, codec: Codec, participants: Sequence[str], seed: int, feedback=True):
        self.codec = codec
        self.participants = list(participants)
        self.seed = seed
        self.feedback = feedback
        #: The residual each org keeps (never sent).
        self.residuals: dict[str, np.ndarray] = {}
        self.traffic = Traffic()

    def __call__(self, round_: int, updates: list[Update]) -> list[Update]:
        out = []
        for u in updates:
            raw = len(encode_update(u))
            if isinstance(self.codec, Identity):
                out.append(u)
                self.traffic.add(round_, raw, raw)
                continue
            v = u.vector.astype(np.float32)
            if self.feedback and u.org in self.residuals:
                v = (v + self.residuals[u.org]).astype(np.float32)
            idx = self.participants.index(u.org)
            # Stochastic rounding draws from the org's own per-round stream (reproducible).
            rng = np.random.default_rng([self.seed, idx, round_, 0x636F6D70])
            tensors = self.codec.encode(v, rng)
            decoded = self.codec.decode(tensors, v.size)
            if self.feedback:
                self.residuals[u.org] = (v - decoded).astype(np.float32)
            sent = Update(
                u.task,
                u.round,
                u.org,
                decoded,
                u.n_samples,
                u.kind,
                u.attestation,
                compressed=(self.codec.name, dict(self.codec.params), tensors),
            )
            out.append(sent)
            self.traffic.add(round_, len(encode_update(sent)), raw)
        return out


def enable_compression(engine, spec, seed: int) -> Compression:
    """Make every org of ``engine`` send compressed updates (``spec``: a
    :class:`~matswarm.compression.CompressionSpec`); returns the transform (its ``traffic``)."""
    comp = Compression(
        spec.codec(), [p.name for p in engine.participants], seed, spec.error_feedback
    )
    engine.transforms.append(comp)
    return comp
