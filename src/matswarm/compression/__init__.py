"""Update compression: quantisation (8/4-bit, stochastic rounding), top-k sparsification, error
feedback, and the bytes each round puts on the wire."""

from matswarm.compression.codecs import (
    KINDS,
    Codec,
    CompressionError,
    CompressionSpec,
    Identity,
    Quantize,
    TopK,
    make_codec,
)
from matswarm.compression.feedback import Compression, Traffic, enable_compression

__all__ = [
    "KINDS",
    "Codec",
    "Compression",
    "CompressionError",
    "CompressionSpec",
    "Identity",
    "Quantize",
    "TopK",
    "Traffic",
    "enable_compression",
    "make_codec",
]
