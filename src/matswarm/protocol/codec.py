"""Byte encodings of what crosses organisation boundaries.

* A parameter vector (global model) is its raw little-endian float32 bytes, so
  ``sha256(bytes) == vector_hash(vector)`` and its content id follows from the hash on the ledger.
* An :class:`~matswarm.protocol.messages.Update` and a ring message are safetensors blobs whose
  metadata carries the context (task, round, org, ...). Decoding checks the format tag and
  shapes, and names what is wrong.
"""

from __future__ import annotations

import json

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from matswarm.algorithms.base import RingMessage
from matswarm.protocol.messages import Update

UPDATE_FORMAT = "matswarm-update/v1"
RING_FORMAT = "matswarm-ring/v1"
STATE_FORMAT = "matswarm-aggregator-state/v1"


class CodecError(ValueError):
    """A blob does not decode to the expected message."""


def encode_vector(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes, expected_size: int | None = None) -> np.ndarray:
    if len(blob) % 4:
        raise CodecError(f"a float32 vector blob has {len(blob)} bytes, not a multiple of 4")
    v = np.frombuffer(blob, dtype="<f4").astype(np.float32)
    if expected_size is not None and v.size != expected_size:
        raise CodecError(f"vector has {v.size} entries, the model needs {expected_size}")
    return v


def _load(blob: bytes, fmt: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    try:
        tensors = st_load(blob)
        # safetensors' numpy API returns no metadata: read it from the header (u64 length + JSON).
        header_len = int.from_bytes(blob[:8], "little")
        meta = json.loads(blob[8 : 8 + header_len]).get("__metadata__") or {}
    except (SafetensorError, ValueError, KeyError) as exc:
        raise CodecError(f"not a {fmt} blob: {exc}") from None
    if meta.get("format") != fmt:
        raise CodecError(f"expected format {fmt!r}, got {meta.get('format')!r}")
    return tensors, meta


def encode_update(update: Update) -> bytes:
    meta = {
        "format": UPDATE_FORMAT,
        "task": update.task,
        "round": str(update.round),
        "org": update.org,
        "n_samples": str(update.n_samples),
        "kind": update.kind,
    }
    if update.attestation is not None:
        meta["attestation"] = update.attestation
    if update.compressed is not None:  # the codec's arrays travel, not the float32 vector
        name, params, arrays = update.compressed
        meta["compression"] = json.dumps(
            {"kind": name, "params": params, "size": update.vector.size}, separators=(",", ":")
        )
        return st_save(
            {f"c.{k}": np.ascontiguousarray(v) for k, v in arrays.items()}, metadata=meta
        )
    return st_save({"vector": np.ascontiguousarray(update.vector)}, metadata=meta)


def _decompress(meta: dict[str, str], tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, tuple]:
    from matswarm.compression import CompressionError, make_codec

    try:
        c = json.loads(meta["compression"])
        codec = make_codec(c["kind"], **c["params"])
        arrays = {k[2:]: v for k, v in tensors.items() if k.startswith("c.")}
        return codec.decode(arrays, int(c["size"])), (c["kind"], c["params"], arrays)
    except (CompressionError, KeyError, TypeError, ValueError) as exc:
        raise CodecError(f"malformed compressed update: {exc}") from None


def decode_update(blob: bytes) -> Update:
    tensors, meta = _load(blob, UPDATE_FORMAT)
    compressed = None
    if "compression" in meta:
        vector, compressed = _decompress(meta, tensors)
    elif "vector" in tensors:
        vector = tensors["vector"]
    else:
        raise CodecError("malformed update: no 'vector' tensor")
    try:
        return Update(
            task=meta["task"],
            round=int(meta["round"]),
            org=meta["org"],
            vector=vector.astype(np.float32, copy=False),
            n_samples=int(meta["n_samples"]),
            kind=meta["kind"],
            attestation=meta.get("attestation"),
            compressed=compressed,
        )
    except (KeyError, ValueError) as exc:
        raise CodecError(f"malformed update: {exc}") from None


def encode_aggregator_state(state: dict[str, np.ndarray], previous: np.ndarray | None) -> bytes:
    """An :class:`~matswarm.protocol.aggregator.Aggregator`'s replicated state (the server
    step's arrays and the previous aggregate) as a safetensors blob: same state, same bytes."""
    bad = sorted(k for k, v in state.items() if not isinstance(v, np.ndarray))
    if bad:
        raise CodecError(
            f"the server state's {bad} are not arrays: it cannot be handed between orgs "
            "(use verification mode 'every-org' for this algorithm)"
        )
    tensors = {f"state.{k}": np.ascontiguousarray(v) for k, v in state.items()}
    if previous is not None:
        tensors["previous_aggregate"] = np.ascontiguousarray(previous)
    return st_save(tensors, metadata={"format": STATE_FORMAT})


def decode_aggregator_state(blob: bytes) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    tensors, _ = _load(blob, STATE_FORMAT)
    unknown = [k for k in tensors if k != "previous_aggregate" and not k.startswith("state.")]
    if unknown:
        raise CodecError(f"malformed aggregator state: unexpected tensors {unknown}")
    state = {k[len("state.") :]: v for k, v in tensors.items() if k.startswith("state.")}
    return state, tensors.get("previous_aggregate")


def encode_ring(message: RingMessage) -> bytes:
    tensors = {}
    if message.statistics is not None:
        tensors["statistics"] = np.ascontiguousarray(message.statistics, dtype=np.float32)
    if message.params is not None:
        tensors["params"] = np.ascontiguousarray(message.params, dtype=np.float32)
    return st_save(tensors, metadata={"format": RING_FORMAT})


def decode_ring(blob: bytes) -> RingMessage:
    tensors, _ = _load(blob, RING_FORMAT)
    return RingMessage(tensors.get("statistics"), tensors.get("params"))
