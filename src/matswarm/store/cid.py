"""IPFS-compatible content ids: CIDv1, raw codec, sha2-256, base32 (lower-case, no padding).

Layout of the id (https://github.com/multiformats/cid)::

    "b" + base32lower( 0x01 (CIDv1) | 0x55 (raw) | 0x12 (sha2-256) | 0x20 (32 bytes) | digest )

Every prefix value is below 0x80, so each unsigned varint is a single byte and the binary CID is
always the same 4 bytes followed by the digest. That makes the whole codec a dozen lines of the
standard library; we write it by hand instead of depending on ``multiformats``/``py-cid`` (extra
dependency chains for a fixed 36-byte layout). Correctness is pinned by known vectors that
``ipfs add --cid-version=1 --raw-leaves`` prints (see ``tests/store/test_cid.py``): a blob that
fits in one IPFS block gets exactly this id from Kubo.
"""

from __future__ import annotations

import base64
import hashlib

from matswarm.store.errors import InvalidCidError

CID_PREFIX = bytes([0x01, 0x55, 0x12, 0x20])  # CIDv1, raw, sha2-256, 32-byte digest
_MULTIBASE_BASE32 = "b"
_CID_LEN = 59  # "b" + ceil(36 * 8 / 5) base32 characters


def cid_from_digest(digest: bytes) -> str:
    """CID of a blob whose sha256 is ``digest``."""
    if len(digest) != 32:
        raise ValueError("a sha2-256 digest is 32 bytes")
    text = base64.b32encode(CID_PREFIX + digest).decode("ascii").rstrip("=").lower()
    return _MULTIBASE_BASE32 + text


def compute_cid(data: bytes) -> str:
    """The content id of ``data`` (what :meth:`BlobStore.put` returns)."""
    return cid_from_digest(hashlib.sha256(data).digest())


def cid_digest(cid: str) -> bytes:
    """The sha256 digest inside ``cid``; :class:`InvalidCidError` if it is not one of our CIDs.

    Accepts only CIDv1 / raw / sha2-256 / base32-lower: the one form this store produces.
    """
    if not isinstance(cid, str) or len(cid) != _CID_LEN or not cid.startswith(_MULTIBASE_BASE32):
        raise InvalidCidError(cid, "expected a 59-character base32 CIDv1 starting with 'bafkrei'")
    body = cid[1:]
    if body != body.lower():
        raise InvalidCidError(cid, "base32 multibase 'b' must be lower-case")
    try:
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
    except ValueError:
        raise InvalidCidError(cid, "not valid base32") from None
    if len(raw) != 36 or raw[:4] != CID_PREFIX:
        raise InvalidCidError(cid, "not a CIDv1 with raw codec and sha2-256 multihash")
    if cid_from_digest(raw[4:]) != cid:  # rejects non-canonical trailing bits
        raise InvalidCidError(cid, "non-canonical base32 encoding")
    return raw[4:]


def is_cid(value: object) -> bool:
    """True if ``value`` is a CID this store can address."""
    try:
        cid_digest(value)  # type: ignore[arg-type]
    except InvalidCidError:
        return False
    return True
