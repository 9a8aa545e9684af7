"""Errors of the artifact store; each names the CID (and backend location) concerned."""

from __future__ import annotations


class StoreError(Exception):
    """Base class of every ``matswarm.store`` error."""


class InvalidCidError(StoreError, ValueError):
    """A string is not a CID this store understands."""

    def __init__(self, cid: object, why: str):
        self.cid = cid
        super().__init__(f"invalid content id {cid!r}: {why}")


class BlobNotFoundError(StoreError, KeyError):
    """No blob with this CID in the store."""

    def __init__(self, cid: str, where: str):
        self.cid = cid
        self.where = where
        super().__init__(cid)

    def __str__(self) -> str:
        return f"blob {self.cid} not found in {self.where}"


class IntegrityError(StoreError):
    """Stored bytes do not hash to their CID: the blob was corrupted or tampered with."""

    def __init__(self, cid: str, where: str, detail: str = ""):
        self.cid = cid
        self.where = where
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"integrity check failed for {cid} in {where}: the bytes do not hash to this "
            f"content id{extra}. The copy is corrupted or was tampered with; fetch it again "
            "from another participant's store"
        )
