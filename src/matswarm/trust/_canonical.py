"""Deterministic byte encoding of signed structures (shared by envelopes, quotes, registrations).

Every signature in ``matswarm.trust`` is over bytes produced here, never over JSON, so that
formatting, key order or a JSON library's float printing can never change what was signed.

Encoding of a record ``(domain, f1, f2, …)``::

    domain tag (ASCII, ends in NUL)  ||  for each field in its fixed order:  u32be(len) || bytes

A field is ``bytes`` as is, ``str`` as UTF-8, ``int`` as a decimal ASCII string (so negative and
large integers are unambiguous), and ``None`` as the single byte ``0xff`` with length 0xffffffff
marking "absent" (distinct from an empty string). Lists are encoded as a nested record with the
domain ``b"list\\0"`` and the nested bytes are then one field. The domain tag separates the kinds
of signed statements: a signature over an envelope can never be replayed as a quote.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

Field = bytes | str | int | None | Sequence["Field"]

_ABSENT = struct.pack(">I", 0xFFFFFFFF)


def encode_fields(domain: bytes, fields: Sequence[Field]) -> bytes:
    """Encode ``fields`` under ``domain`` (must end with a NUL byte) as documented above."""
    if not domain.endswith(b"\0") or b"\0" in domain[:-1]:
        raise ValueError("domain tag must contain exactly one NUL byte, at its end")
    out = bytearray(domain)
    for field in fields:
        out += _encode_one(field)
    return bytes(out)


def _encode_one(field: Field) -> bytes:
    if field is None:
        return _ABSENT
    if isinstance(field, bool):  # bool is an int subclass: refuse rather than guess
        raise TypeError("booleans are not a canonical field type; use 0/1 explicitly")
    if isinstance(field, int):
        raw = str(field).encode("ascii")
    elif isinstance(field, str):
        raw = field.encode("utf-8")
    elif isinstance(field, bytes | bytearray | memoryview):
        raw = bytes(field)
    elif isinstance(field, Sequence):
        raw = encode_fields(b"list\0", list(field))
    else:
        raise TypeError(f"cannot canonically encode a {type(field).__name__}")
    if len(raw) >= 0xFFFFFFFF:
        raise ValueError("field too large for canonical encoding")
    return struct.pack(">I", len(raw)) + raw
