"""Content-addressed artifact store with IPFS-compatible ids (CIDv1, raw, sha2-256, base32).

``put(bytes) -> cid``, ``get(cid) -> bytes`` (always verified: a corrupted copy raises
:class:`IntegrityError` naming the CID), ``has(cid)``. Backends: :class:`LocalStore` (a
directory; the default) and :class:`IpfsHttpStore` (an IPFS node's Kubo HTTP API).
:func:`open_store` picks one from a location string.
"""

from __future__ import annotations

import os

from matswarm.store.base import BlobStore
from matswarm.store.cid import cid_digest, compute_cid, is_cid
from matswarm.store.errors import BlobNotFoundError, IntegrityError, InvalidCidError, StoreError
from matswarm.store.ipfs import IpfsHttpStore
from matswarm.store.local import LocalStore


def open_store(location: str | os.PathLike[str]) -> BlobStore:
    """``http(s)://…`` → :class:`IpfsHttpStore`; anything else is a :class:`LocalStore` path."""
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return IpfsHttpStore(text)
    return LocalStore(text)


__all__ = [
    "BlobNotFoundError",
    "BlobStore",
    "IntegrityError",
    "InvalidCidError",
    "IpfsHttpStore",
    "LocalStore",
    "StoreError",
    "cid_digest",
    "compute_cid",
    "is_cid",
    "open_store",
]
