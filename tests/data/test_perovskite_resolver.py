import http.server
import shutil
import threading
from pathlib import Path

import pytest

from matswarm.data import perovskite as pv


@pytest.fixture()
def isolated(monkeypatch, tmp_path):
    monkeypatch.delenv("MATSWARM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_explicit_dir_wins_and_is_verified(isolated, perovskite_dir):
    assert pv.resolve(perovskite_dir) == perovskite_dir
    bad = isolated / "bad"
    shutil.copytree(perovskite_dir, bad)
    with (bad / "test_dataset.csv").open("a") as fh:
        fh.write("\n")
    with pytest.raises(pv.DatasetNotFound, match=r"test_dataset.csv has sha256"):
        pv.resolve(bad)


def test_env_then_cache(isolated, perovskite_dir, monkeypatch):
    monkeypatch.setenv("MATSWARM_DATA", str(perovskite_dir))
    assert pv.resolve(allow_download=False) == perovskite_dir
    monkeypatch.setenv("MATSWARM_DATA", str(isolated / "nowhere"))
    shutil.copytree(perovskite_dir, pv.cache_dir())
    assert pv.resolve(allow_download=False) == pv.cache_dir()


def test_nothing_found_lists_what_was_tried(isolated):
    with pytest.raises(pv.DatasetNotFound) as err:
        pv.resolve(allow_download=False)
    assert "MATSWARM_DATA" in str(err.value) and str(pv.cache_dir()) in str(err.value)


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(directory: Path):
    handler = lambda *a, **k: _Handler(*a, directory=str(directory), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_into_cache_verifies_sha(isolated, perovskite_dir):
    server = _serve(perovskite_dir)
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        got = pv.resolve(base_url=url)
        assert got == pv.cache_dir() and pv.verify_dir(got) == []
    finally:
        server.shutdown()


def test_download_with_wrong_content_is_not_kept(isolated, perovskite_dir):
    mirror = isolated / "mirror"
    shutil.copytree(perovskite_dir, mirror)
    (mirror / "train_part1.csv").write_text("tampered\n")
    server = _serve(mirror)
    try:
        with pytest.raises(pv.DatasetNotFound, match=r"train_part1.csv.*sha256.*not kept"):
            pv.resolve(base_url=f"http://127.0.0.1:{server.server_port}")
        assert not (pv.cache_dir() / "train_part1.csv").exists()
    finally:
        server.shutdown()
