"""CIDs match what IPFS prints for the same bytes."""

from __future__ import annotations

import hashlib

import pytest

from matswarm.store import InvalidCidError, cid_digest, compute_cid, is_cid

# `ipfs add --cid-version=1 --raw-leaves` of a single-block file. Both ids appear in several
# independent IPFS implementations' test suites (Kubo/boxo fixtures, net-ipfs-engine's
# Add_Raw test, js multiformats users).
KNOWN = {
    b"": "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
    b"hello world": "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
}


@pytest.mark.parametrize(("data", "cid"), list(KNOWN.items()))
def test_known_ipfs_vectors(data, cid):
    assert compute_cid(data) == cid
    assert cid_digest(cid) == hashlib.sha256(data).digest()
    assert is_cid(cid)


def test_round_trip_many():
    for n in range(0, 200, 7):
        data = bytes(range(n % 256)) * 3
        cid = compute_cid(data)
        assert len(cid) == 59 and cid.startswith("bafkrei")
        assert cid_digest(cid) == hashlib.sha256(data).digest()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG",  # CIDv0
        "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",  # dag-pb codec
        KNOWN[b""].upper(),  # base32 upper is another multibase
        KNOWN[b""][:-1] + "1",  # not base32
        KNOWN[b""][:-1] + "v",  # non-canonical trailing bits
        "z" + KNOWN[b""][1:],
        None,
    ],
)
def test_invalid_cids_rejected(bad):
    assert not is_cid(bad)
    with pytest.raises(InvalidCidError):
        cid_digest(bad)
