"""The MatSwarm paper's public perovskite formation-energy dataset: locate, verify, load.

Resolution order (first that works wins):

1. an explicit directory (``--data DIR``),
2. the ``MATSWARM_DATA`` environment variable,
3. the user cache (``$XDG_CACHE_HOME/matswarm/perovskite`` or ``~/.cache/matswarm/perovskite``),
4. a download of the four CSVs from the public MatSwarm repository at a pinned commit into that
   cache.

Every file is checked against its sha256 before use, so a corrupted or different copy is never
mistaken for the paper's data.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from matswarm.data.errors import DataError
from matswarm.data.federated import FederatedDataset, build_dataset
from matswarm.data.tables import read_table

TARGET = "e_form"
UNIT = "eV/atom"
TRAIN_FILES = ("train_part0.csv", "train_part1.csv", "train_part2.csv")
TEST_FILE = "test_dataset.csv"
SHA256 = {
    "train_part0.csv": "f51225740d5ba15cb81ba21f51267c4a6bb3f9182459da1245d9159aa9a2e3ac",
    "train_part1.csv": "8428d95db2d7205044318bdb0912add3993723aec83278238771c0b16401969e",
    "train_part2.csv": "1bb8deede7e60498288e7ac95cb637f5be5f7a21ba899fb19f5f67a46316c01d",
    "test_dataset.csv": "a5b255e5d5ad353dc23f7a71ce16bf7e367a0d69cf44ec5b76b9125973476228",
}
SOURCE_REPO = "SICC-Group/MatSwarm"
SOURCE_COMMIT = "b13aa6c5a90742a371d6e671c686fce76f477be9"
DOWNLOAD_BASE = (
    f"https://raw.githubusercontent.com/{SOURCE_REPO}/{SOURCE_COMMIT}/Dataset_%20perovskite"
)


class DatasetNotFound(DataError):
    """None of the places the perovskite dataset may live had a verified copy."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "matswarm" / "perovskite"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_dir(directory: Path) -> list[str]:
    """Problems with ``directory`` as a perovskite copy (empty list = verified)."""
    problems = []
    for name, digest in SHA256.items():
        f = directory / name
        if not f.is_file():
            problems.append(f"{f} is missing")
        elif sha256_file(f) != digest:
            problems.append(f"{f} has sha256 {sha256_file(f)[:12]}…, expected {digest[:12]}…")
    return problems


def download(
    target: Path,
    base_url: str = DOWNLOAD_BASE,
    opener: Callable[[str], bytes] | None = None,
) -> None:
    """Fetch the four CSVs into ``target``, verifying each sha256 before it is kept."""
    fetch = opener or _http_get
    target.mkdir(parents=True, exist_ok=True)
    for name, digest in SHA256.items():
        dest = target / name
        if dest.is_file() and sha256_file(dest) == digest:
            continue
        blob = fetch(f"{base_url}/{name}")
        got = hashlib.sha256(blob).hexdigest()
        if got != digest:
            raise DataError(
                f"downloaded file has sha256 {got}, expected {digest}; not kept",
                source=f"{base_url}/{name}",
            )
        tmp = dest.with_suffix(".part")
        tmp.write_bytes(blob)
        os.replace(tmp, dest)


def _http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return resp.read()


def resolve(
    data_dir: str | Path | None = None,
    *,
    allow_download: bool = True,
    base_url: str | None = None,
) -> Path:
    """Return a directory holding a verified copy of the dataset, or raise ``DatasetNotFound``
    listing everything that was tried and why it failed.

    ``base_url`` (else ``MATSWARM_DATA_URL``, else the pinned GitHub commit) is where the four
    files are downloaded from; a mirror must serve byte-identical files.
    """
    base_url = base_url or os.environ.get("MATSWARM_DATA_URL") or DOWNLOAD_BASE
    tried: list[str] = []
    if data_dir is not None:
        d = Path(data_dir).expanduser()
        problems = verify_dir(d)
        if problems:
            # An explicit directory that is wrong is the user's mistake: say so, do not fall back.
            raise DatasetNotFound(
                "the directory given with --data is not a verified perovskite copy: "
                + "; ".join(problems),
                source=str(d),
            )
        return d
    env = os.environ.get("MATSWARM_DATA")
    if env:
        d = Path(env).expanduser()
        problems = verify_dir(d)
        if not problems:
            return d
        tried.append(f"MATSWARM_DATA={d}: " + "; ".join(problems))
    cache = cache_dir()
    problems = verify_dir(cache)
    if not problems:
        return cache
    tried.append(f"cache {cache}: " + problems[0] + (" …" if len(problems) > 1 else ""))
    if allow_download:
        try:
            download(cache, base_url)
            return cache
        except (urllib.error.URLError, OSError, DataError) as exc:
            tried.append(f"download from {base_url}: {exc}")
    raise DatasetNotFound(
        "perovskite dataset not found. Tried: "
        + " | ".join(tried)
        + ". Pass --data DIR or set MATSWARM_DATA to a folder with "
        + ", ".join((*TRAIN_FILES, TEST_FILE))
    )


def load(directory: str | Path, target: str = TARGET, **schema_options) -> FederatedDataset:
    """The paper split: org1..org3 are ``train_part0..2`` (disjoint label ranges) + the test set.

    ``target`` is ``e_form`` (the paper's) unless another property column is named (e.g.
    ``bandgap`` for a metal / non-metal classification)."""
    d = Path(directory)
    orgs = {
        f"org{i + 1}": (read_table(d / name), str(d / name)) for i, name in enumerate(TRAIN_FILES)
    }
    test = (read_table(d / TEST_FILE), str(d / TEST_FILE))
    schema_options.setdefault("unit", UNIT if target == TARGET else "")
    return build_dataset(
        orgs, target, test=test, description="perovskite (paper split)", **schema_options
    )
