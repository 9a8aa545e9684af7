"""The IPFS backend, tested against a small fake of the Kubo RPC API on 127.0.0.1.

This checks our use of the API shape (POST, query parameters, multipart upload, JSON replies,
error bodies), not interoperability with a real Kubo node.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from matswarm.store import BlobNotFoundError, IntegrityError, IpfsHttpStore, StoreError


def _kubo_raw_cid(data: bytes) -> str:
    """What Kubo assigns to a single raw block (written independently of matswarm.store)."""
    binary = bytes([0x01, 0x55, 0x12, 0x20]) + hashlib.sha256(data).digest()
    return "b" + base64.b32encode(binary).decode().lower().rstrip("=")


class FakeKubo(BaseHTTPRequestHandler):
    blocks: dict[str, bytes]
    calls: list[tuple[str, dict[str, str]]]
    corrupt_reads = False
    wrong_cid = False

    def log_message(self, *args):  # keep test output quiet
        pass

    def _reply(self, status: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, message: str) -> None:
        self._reply(500, json.dumps({"Message": message, "Code": 0, "Type": "error"}).encode())

    def _upload(self) -> bytes:
        ctype = self.headers["Content-Type"]
        assert ctype.startswith("multipart/form-data; boundary=")
        boundary = ctype.split("boundary=", 1)[1].encode()
        body = self.rfile.read(int(self.headers["Content-Length"]))
        part = body.split(b"--" + boundary)[1]
        headers, _, content = part.partition(b"\r\n\r\n")
        assert b'name="file"' in headers
        assert content.endswith(b"\r\n")
        return content[:-2]

    def do_GET(self):  # Kubo refuses GET on the RPC API
        self._reply(405, b"405 - Method Not Allowed", "text/plain")

    def do_POST(self):
        url = urllib.parse.urlparse(self.path)
        params = dict(urllib.parse.parse_qsl(url.query))
        self.calls.append((url.path, params))
        if url.path == "/api/v0/add":
            assert params["cid-version"] == "1" and params["raw-leaves"] == "true"
            data = self._upload()
            chunk = int(params.get("chunker", "size-262144").removeprefix("size-"))
            if len(data) > chunk:
                return self._error("test fake: multi-block DAGs are not modelled")
            cid = _kubo_raw_cid(data)
            self.blocks[cid] = data
            reply_cid = _kubo_raw_cid(data + b"!") if self.wrong_cid else cid
            line = {"Name": "blob", "Hash": reply_cid, "Size": str(len(data))}
            return self._reply(200, (json.dumps(line) + "\n").encode())
        if url.path == "/api/v0/block/put":
            assert params["cid-codec"] == "raw" and params["mhtype"] == "sha2-256"
            data = self._upload()
            if len(data) > (1 << 20) and params.get("allow-big-block") != "true":
                return self._error("produced block is over 1MiB")
            cid = _kubo_raw_cid(data)
            self.blocks[cid] = data
            return self._reply(200, json.dumps({"Key": cid, "Size": len(data)}).encode())
        if url.path == "/api/v0/cat":
            data = self.blocks.get(params["arg"])
            if data is None:
                return self._error("block was not found locally (offline): ipld: could not find")
            if self.corrupt_reads and data:
                data = bytes([data[0] ^ 1]) + data[1:]
            return self._reply(200, data, "text/plain")
        if url.path == "/api/v0/block/stat":
            assert params.get("offline") == "true"
            data = self.blocks.get(params["arg"])
            if data is None:
                return self._error("block was not found locally (offline): ipld: could not find")
            return self._reply(200, json.dumps({"Key": params["arg"], "Size": len(data)}).encode())
        return self._reply(404, b"404 page not found", "text/plain")


@pytest.fixture()
def kubo():
    handler = type("Handler", (FakeKubo,), {"blocks": {}, "calls": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_put_get_has_small_blob(kubo):
    handler, url = kubo
    store = IpfsHttpStore(url, timeout=5)
    cid = store.put(b"hello world")
    assert cid == "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e"
    assert handler.calls[-1][0] == "/api/v0/add"
    assert store.get(cid) == b"hello world"
    assert store.has(cid)
    assert not store.has(_kubo_raw_cid(b"absent"))


def test_large_blob_goes_through_block_put(kubo):
    handler, url = kubo
    store = IpfsHttpStore(url, timeout=5)
    data = os.urandom((1 << 20) + 1)
    cid = store.put(data)
    assert handler.calls[-1][0] == "/api/v0/block/put"
    assert store.get(cid) == data


def test_missing_blob(kubo):
    _, url = kubo
    cid = _kubo_raw_cid(b"never added")
    with pytest.raises(BlobNotFoundError) as info:
        IpfsHttpStore(url, timeout=5).get(cid)
    assert cid in str(info.value)


def test_corrupted_reply_detected(kubo):
    handler, url = kubo
    store = IpfsHttpStore(url, timeout=5)
    cid = store.put(b"global model round 7")
    handler.corrupt_reads = True
    with pytest.raises(IntegrityError) as info:
        store.get(cid)
    assert cid in str(info.value)


def test_node_storing_under_another_cid_is_refused(kubo):
    handler, url = kubo
    handler.wrong_cid = True
    with pytest.raises(StoreError, match="expected bafkrei"):
        IpfsHttpStore(url, timeout=5).put(b"data")


def test_unreachable_node_says_what_to_check():
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(StoreError, match="ipfs daemon"):
        IpfsHttpStore(f"http://127.0.0.1:{port}", timeout=2).get(_kubo_raw_cid(b"x"))
    with pytest.raises(ValueError):
        IpfsHttpStore("127.0.0.1:5001")
