"""The :class:`BlobStore` interface shared by every backend."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod

from matswarm.store.cid import cid_digest
from matswarm.store.errors import IntegrityError


class BlobStore(ABC):
    """Content-addressed, immutable blobs. ``get`` always verifies the bytes against the CID."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its CID."""

    @abstractmethod
    def get(self, cid: str) -> bytes:
        """The verified bytes of ``cid``; :class:`BlobNotFoundError` or :class:`IntegrityError`."""

    @abstractmethod
    def has(self, cid: str) -> bool:
        """Whether ``cid`` is available from this store (without fetching or verifying it)."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Human-readable place of the store (directory or URL), used in error messages."""

    def __contains__(self, cid: object) -> bool:
        return isinstance(cid, str) and self.has(cid)

    def _verified(self, cid: str, data: bytes) -> bytes:
        if hashlib.sha256(data).digest() != cid_digest(cid):
            raise IntegrityError(cid, self.location, f"{len(data)} bytes read")
        return data
