"""Payloads: what travels between coordinator, Flower shim and org node.

A :class:`Payload` is a flat dict of scalars/strings (``config``) plus named numpy arrays
(``arrays``: float32 parameter vectors, uint8 blobs). It maps onto the length-prefixed frames of
the local node channel and onto a Flower ``RecordDict`` (one ``ConfigRecord`` plus one
``ArrayRecord`` holding the arrays as one such frame), so nothing is re-encoded lossily on the
way: arrays keep dtype and bytes, floats stay IEEE doubles. This module imports numpy only (the
Flower shim must stay light).

Why one frame and not one Flower ``Array`` per array: Flower moves a message as separate
content-addressed objects, one pull or push request per object at every hop (SuperLink,
SuperNode, executor), two objects per ``Array``. A trusted round's aggregate message carries
every org's envelope, so per-array objects made each org's message cost grow with the number of
orgs in requests, not only in bytes (the largest per-org cost left at 15 orgs, py-spy).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Scalar = bool | int | float | str


@dataclass
class Payload:
    config: dict[str, Scalar] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def array(self, name: str, dtype: str = "<f4") -> np.ndarray:
        return np.asarray(self.arrays[name], dtype=dtype)

    def opt_array(self, name: str) -> np.ndarray | None:
        return self.array(name) if name in self.arrays else None


def to_frame(p: Payload) -> bytes:
    """``json header length (8 bytes LE) | json header | array bytes...``"""
    specs, blobs = [], []
    for name, a in p.arrays.items():
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        specs.append([name, a.dtype.str, list(a.shape), a.nbytes])
        blobs.append(a.tobytes())
    header = json.dumps({"config": p.config, "arrays": specs}).encode()
    return len(header).to_bytes(8, "little") + header + b"".join(blobs)


def from_frame(data: bytes) -> Payload:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    pos = 8 + n
    arrays = {}
    for name, dtype, shape, nbytes in header["arrays"]:
        arrays[name] = np.frombuffer(data[pos : pos + nbytes], dtype=dtype).reshape(shape).copy()
        pos += nbytes
    if pos != len(data):
        raise ValueError(f"frame has {len(data) - pos} trailing bytes")
    return Payload(header["config"], arrays)


#: Name of the ArrayRecord (and its one Array) that holds a payload's arrays as one frame.
PACKED = "packed"


def to_recorddict(p: Payload) -> Any:
    """``p`` as a Flower ``RecordDict``: its config, and its arrays packed into one ``Array``."""
    from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

    rd = RecordDict({"config": ConfigRecord(dict(p.config))})
    if p.arrays:
        frame = np.frombuffer(to_frame(Payload({}, p.arrays)), dtype=np.uint8)
        rd[PACKED] = ArrayRecord({PACKED: Array(frame)})
    return rd


def from_recorddict(rd: Any) -> Payload:
    """The payload of a message built by :func:`to_recorddict` (or by a ClientApp or
    ServerApp that sent its arrays as one ``ArrayRecord`` named ``arrays``)."""
    config = dict(rd["config"]) if "config" in rd.config_records else {}
    arrays = {}
    if PACKED in rd.array_records:
        arrays = from_frame(rd[PACKED][PACKED].numpy().tobytes()).arrays
    elif "arrays" in rd.array_records:
        arrays = {k: v.numpy() for k, v in rd["arrays"].items()}
    return Payload(config, arrays)
