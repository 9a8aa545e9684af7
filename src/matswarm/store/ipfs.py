"""Blob store backed by an IPFS node through the Kubo RPC (HTTP) API.

Endpoints used (all ``POST``, as Kubo requires):

* ``/api/v0/add?cid-version=1&raw-leaves=true&chunker=size-1048576&pin=true`` for blobs up to
  1 MiB: Kubo stores them as a single raw block whose CID equals :func:`compute_cid`.
* ``/api/v0/block/put?cid-codec=raw&mhtype=sha2-256&pin=true&allow-big-block=true`` for larger
  blobs, so the id stays the sha256 of the whole blob (``ipfs add`` would chunk it into a UnixFS
  DAG with a different root id). Kubo warns that blocks over 2 MiB do not move over bitswap:
  participants should then read from the same node (its HTTP API or gateway).
* ``/api/v0/cat?arg=CID`` to read; ``/api/v0/block/stat?arg=CID&offline=true`` for :meth:`has`.

The id Kubo returns is compared with ours, and every read is verified against the CID.

Tested against the API shape with a small in-process fake server (``tests/store``), not against
a real Kubo node.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from matswarm.store.base import BlobStore
from matswarm.store.cid import cid_digest, compute_cid
from matswarm.store.errors import BlobNotFoundError, StoreError

MAX_ADD_SIZE = 1 << 20  # Kubo's largest chunk size: above it `add` would build a DAG


class IpfsHttpStore(BlobStore):
    """Blobs in an IPFS node, e.g. ``IpfsHttpStore("http://127.0.0.1:5001")``."""

    def __init__(self, url: str = "http://127.0.0.1:5001", *, timeout: float = 60.0):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"IPFS API url {url!r} must look like http://HOST:5001")
        self.url = url.rstrip("/")
        self.timeout = timeout

    @property
    def location(self) -> str:
        return f"IPFS node {self.url}"

    def __repr__(self) -> str:
        return f"IpfsHttpStore({self.url!r})"

    def put(self, data: bytes) -> str:
        data = bytes(data)
        cid = compute_cid(data)
        if len(data) <= MAX_ADD_SIZE:
            params = {
                "cid-version": "1",
                "raw-leaves": "true",
                "chunker": f"size-{MAX_ADD_SIZE}",
                "hash": "sha2-256",
                "pin": "true",
                "quieter": "true",
            }
            reply = self._json_lines("add", params, data)
            got = reply[-1].get("Hash") if reply else None
        else:
            params = {
                "cid-codec": "raw",
                "mhtype": "sha2-256",
                "mhlen": "32",
                "pin": "true",
                "allow-big-block": "true",
            }
            reply = self._json_lines("block/put", params, data)
            got = reply[-1].get("Key") if reply else None
        if got != cid:
            raise StoreError(
                f"{self.location} stored the blob as {got!r}, expected {cid}: the node does not "
                "use CIDv1/raw/sha2-256 for it (check its version and chunker settings)"
            )
        return cid

    def get(self, cid: str) -> bytes:
        cid_digest(cid)
        status, body = self._post("cat", {"arg": cid}, None)
        if status != 200:
            message = _error_message(body)
            if "not found" in message.lower() or "no link" in message.lower():
                raise BlobNotFoundError(cid, self.location)
            raise StoreError(f"{self.location} could not return {cid}: {message}")
        return self._verified(cid, body)

    def has(self, cid: str) -> bool:
        cid_digest(cid)
        status, body = self._post("block/stat", {"arg": cid, "offline": "true"}, None)
        if status == 200:
            return True
        message = _error_message(body)
        if "not found" in message.lower():
            return False
        raise StoreError(f"{self.location} could not check {cid}: {message}")

    # --- HTTP -----------------------------------------------------------------------------
    def _json_lines(self, endpoint: str, params: dict[str, str], data: bytes) -> list[Any]:
        status, body = self._post(endpoint, params, data)
        if status != 200:
            raise StoreError(f"{self.location} refused {endpoint}: {_error_message(body)}")
        try:
            return [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError:
            raise StoreError(f"{self.location} sent a non-JSON reply to {endpoint}") from None

    def _post(self, endpoint: str, params: dict[str, str], data: bytes | None) -> tuple[int, bytes]:
        url = f"{self.url}/api/v0/{endpoint}?{urllib.parse.urlencode(params)}"
        headers: dict[str, str] = {}
        payload = b""
        if data is not None:
            boundary = "matswarm-" + os.urandom(12).hex()
            payload = (
                (
                    f"--{boundary}\r\n"
                    'Content-Disposition: form-data; name="file"; filename="blob"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n"
                ).encode()
                + data
                + f"\r\n--{boundary}--\r\n".encode()
            )
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise StoreError(
                f"cannot reach the IPFS API at {self.url} ({reason}); is `ipfs daemon` running "
                "and is the API address right?"
            ) from None


def _error_message(body: bytes) -> str:
    try:
        return str(json.loads(body).get("Message", body[:200]))
    except (ValueError, AttributeError):
        return body[:200].decode("utf-8", "replace") or "(empty reply)"
