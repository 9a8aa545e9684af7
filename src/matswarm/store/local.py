"""Local-directory blob store (the default backend).

Layout: ``<directory>/<shard>/<cid>`` with ``shard = cid[-3:-1]`` (two base32 characters taken
from the end, where the digest varies, like Kubo's ``next-to-last/2`` flatfs sharding), so no
directory grows past ~1024 entries per million blobs. Writes go to a temporary file in the same
directory, are fsynced, then ``os.replace``-d into place and the directory is fsynced: a crash
leaves either no blob or the whole blob, never a partial one. Blobs are made read-only (0444).

``durable=False`` skips the fsyncs: a killed process still leaves whole blobs (the OS keeps
what was written), but a power loss or kernel crash may lose recent ones. For throw-away
experiment runs, which are re-run rather than resumed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from matswarm.store.base import BlobStore
from matswarm.store.cid import cid_digest, compute_cid, is_cid
from matswarm.store.errors import BlobNotFoundError, IntegrityError

log = logging.getLogger(__name__)


class LocalStore(BlobStore):
    """Blobs as files under ``directory`` (created if missing)."""

    def __init__(self, directory: str | os.PathLike[str], *, durable: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.durable = durable

    @property
    def location(self) -> str:
        return str(self.directory)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.directory)!r})"

    def path_of(self, cid: str) -> Path:
        """Where the blob ``cid`` lives on disk (whether or not it exists)."""
        cid_digest(cid)  # validates
        return self.directory / cid[-3:-1] / cid

    def put(self, data: bytes) -> str:
        data = bytes(data)
        cid = compute_cid(data)
        path = self.path_of(cid)
        if path.exists():
            try:
                self._verified(cid, path.read_bytes())
                return cid
            except IntegrityError:
                log.warning("replacing corrupted copy of %s in %s", cid, self.directory)
        path.parent.mkdir(exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{cid}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                if self.durable:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        if self.durable:
            _fsync_dir(path.parent)
        return cid

    def get(self, cid: str) -> bytes:
        path = self.path_of(cid)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BlobNotFoundError(cid, self.location) from None
        return self._verified(cid, data)

    def has(self, cid: str) -> bool:
        return self.path_of(cid).is_file()

    def cids(self) -> Iterator[str]:
        """Every CID stored here (unverified; use :meth:`get` to check one)."""
        for shard in sorted(self.directory.iterdir()):
            if shard.is_dir() and len(shard.name) == 2:
                for f in sorted(shard.iterdir()):
                    if is_cid(f.name) and f.name[-3:-1] == shard.name:
                        yield f.name


def _fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
