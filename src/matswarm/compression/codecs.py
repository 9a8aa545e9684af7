"""Update compressors: blockwise 8-/4-bit quantisation with stochastic rounding, top-k.

A codec turns a float32 update into a few named arrays (what travels, inside the update's
safetensors blob and its signed envelope) and back. Decoding is deterministic IEEE float32
arithmetic, so every org re-derives bit-identical vectors from the same payload and the
global-model hash stays votable. Encoding may be random (stochastic rounding draws from the
org's per-round generator).

* ``q8`` / ``q4``: blocks of ``block`` coordinates share a float32 scale ``max|v| / L``
  (``L = 127`` or ``7``); each coordinate is the integer ``floor(v / scale + u)``, ``u ~ U[0,1)``
  (unbiased: QSGD-style stochastic rounding); 4-bit levels are packed two per byte.
* ``topk``: the ``ceil(fraction * d)`` largest-magnitude coordinates as (index, float32 value)
  pairs (uint16 indices up to 65,536 parameters, else uint32); everything else is zero.

Why our own: torch's quantisation APIs (``torch.ao``) quantise models and activations
deterministically, not communication payloads with stochastic rounding; PowerSGD and the
compression hooks of ``torch.distributed`` need a process group and compress gradients in
place during backward. The codecs are a few vectorised numpy lines each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

Tensors = dict[str, np.ndarray]


class CompressionError(ValueError):
    """A bad compression setting or payload (names the field)."""


class Codec:
    name: ClassVar[str]
    _citations: ClassVar[tuple[str, ...]] = ()

    def encode(self, v: np.ndarray, rng: np.random.Generator) -> Tensors:
        raise NotImplementedError

    def decode(self, t: Tensors, d: int) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def citations(cls) -> tuple[str, ...]:
        return cls._citations

    def describe(self) -> str:
        return self.name

    @property
    def params(self) -> dict[str, float | int]:
        return {}


class Identity(Codec):
    """No compression: the float32 vector itself (the baseline bytes)."""

    name = "none"

    def encode(self, v, rng):
        return {"v": np.ascontiguousarray(v, dtype=np.float32)}

    def decode(self, t, d):
        return _get(t, "v", np.float32, d)


def _get(t: Tensors, key: str, dtype, size: int | None = None) -> np.ndarray:
    if key not in t:
        raise CompressionError(f"compressed payload lacks {key!r}")
    a = np.asarray(t[key])
    if a.dtype != dtype or a.ndim != 1 or (size is not None and a.size != size):
        raise CompressionError(
            f"compressed payload field {key!r}: expected {np.dtype(dtype)} of {size} entries, "
            f"got {a.dtype} {a.shape}"
        )
    return a


class Quantize(Codec):
    """Blockwise ``bits``-bit quantisation with stochastic rounding."""

    _citations = (
        "Alistarh et al., QSGD: Communication-Efficient SGD via Gradient Quantization and "
        "Encoding, NeurIPS 2017 (stochastic rounding)",
        "Karimireddy et al., Error Feedback Fixes SignSGD and other Gradient Compression "
        "Schemes, ICML 2019 (error feedback)",
    )

    def __init__(self, bits: int, block: int = 256):
        if bits not in (4, 8):
            raise CompressionError(f"quantisation bits must be 4 or 8, got {bits}")
        if not isinstance(block, int) or block < 2:
            raise CompressionError(f"compression block must be an integer >= 2, got {block!r}")
        self.bits = bits
        self.block = block
        self.name = f"q{bits}"  # type: ignore[misc]
        self.levels = (1 << (bits - 1)) - 1

    @property
    def params(self):
        return {"block": self.block}

    def _blocks(self, d: int) -> int:
        return math.ceil(d / self.block)

    def encode(self, v, rng):
        x = np.asarray(v, dtype=np.float32)
        d = x.size
        nb = self._blocks(d)
        padded = np.zeros(nb * self.block, dtype=np.float32)
        padded[:d] = x
        blocks = padded.reshape(nb, self.block)
        scale = (np.abs(blocks).max(axis=1) / np.float32(self.levels)).astype(np.float32)
        safe = np.where(scale > 0, scale, np.float32(1))
        u = rng.random(blocks.shape, dtype=np.float32)
        q = np.floor(blocks / safe[:, None] + u)
        q = np.clip(q, -self.levels, self.levels).astype(np.int8).reshape(-1)[:d]
        if self.bits == 8:
            data = q.view(np.uint8)
        else:  # two 4-bit two's-complement nibbles per byte
            nib = (q.astype(np.int16) & 0xF).astype(np.uint8)
            if nib.size % 2:
                nib = np.append(nib, np.uint8(0))
            data = (nib[0::2] | (nib[1::2] << 4)).astype(np.uint8)
        return {"q": data, "scale": scale}

    def decode(self, t, d):
        nb = self._blocks(d)
        scale = _get(t, "scale", np.float32, nb)
        if self.bits == 8:
            q = _get(t, "q", np.uint8, d).view(np.int8)
        else:
            data = _get(t, "q", np.uint8, (d + 1) // 2)
            nib = np.empty(data.size * 2, dtype=np.uint8)
            nib[0::2] = data & 0xF
            nib[1::2] = data >> 4
            q = ((nib[:d].astype(np.int16) ^ 8) - 8).astype(np.int8)  # sign-extend 4 bits
        per = np.repeat(scale, self.block)[:d]
        return (q.astype(np.float32) * per).astype(np.float32)


class TopK(Codec):
    """Keep the ``fraction`` largest-magnitude coordinates."""

    name = "topk"
    _citations = (
        "Aji & Heafield, Sparse Communication for Distributed Gradient Descent, EMNLP 2017",
        "Stich et al., Sparsified SGD with Memory, NeurIPS 2018 (error feedback)",
    )

    def __init__(self, fraction: float = 0.1):
        if not (isinstance(fraction, int | float) and 0 < fraction <= 1):
            raise CompressionError(f"top-k fraction must be in (0, 1], got {fraction!r}")
        self.fraction = float(fraction)

    @property
    def params(self):
        return {"fraction": self.fraction}

    def describe(self) -> str:
        return f"topk({self.fraction:g})"

    def encode(self, v, rng):
        x = np.asarray(v, dtype=np.float32)
        k = max(1, math.ceil(self.fraction * x.size))
        idx = np.sort(np.argpartition(np.abs(x), x.size - k)[x.size - k :])
        # 16-bit indices while they fit (models up to 65,536 parameters): 6 bytes per value.
        return {"idx": idx.astype(_index_dtype(x.size)), "val": x[idx].astype(np.float32)}

    def decode(self, t, d):
        idx = _get(t, "idx", _index_dtype(d))
        val = _get(t, "val", np.float32, idx.size)
        if idx.size and int(idx.max()) >= d:
            raise CompressionError(f"top-k index {int(idx.max())} outside a vector of {d}")
        out = np.zeros(d, dtype=np.float32)
        out[idx] = val
        return out


def _index_dtype(d: int) -> type:
    return np.uint16 if d <= 1 << 16 else np.uint32


KINDS = ("none", "q8", "q4", "topk")


def make_codec(kind: str, *, fraction: float = 0.1, block: int = 256) -> Codec:
    """A codec by name (``[compression] kind``)."""
    if kind == "none":
        return Identity()
    if kind in ("q8", "q4"):
        return Quantize(int(kind[1]), block=block)
    if kind == "topk":
        return TopK(fraction)
    raise CompressionError(f"[compression] kind must be one of {', '.join(KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class CompressionSpec:
    """The ``[compression]`` settings of a run."""

    kind: str = "none"
    fraction: float = 0.1
    block: int = 256
    error_feedback: bool = True

    def __post_init__(self) -> None:
        self.codec()  # validates kind, fraction and block

    def codec(self) -> Codec:
        return make_codec(self.kind, fraction=self.fraction, block=self.block)

    def label(self) -> str:
        return self.codec().describe()
