"""Org identities and the encrypted keystore. Keys are generated here, at test time only."""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization

from matswarm.trust import PASSPHRASE_ENV, KeystoreError, OrgIdentity, PublicIdentity

FAST = 2**14  # scrypt cost for tests; the default (2**17) is exercised once below
RAW = serialization.Encoding.Raw
RAW_PRIV = serialization.PrivateFormat.Raw
NOENC = serialization.NoEncryption()


def _private_secrets(identity: OrgIdentity) -> list[bytes]:
    """The raw private key bytes (reached through private attributes: test-only)."""
    return [
        identity._signing_key.private_bytes(RAW, RAW_PRIV, NOENC),
        identity._encryption_key.private_bytes(RAW, RAW_PRIV, NOENC),
        identity._evm_key,
    ]


def test_keystore_round_trip(tmp_path):
    org = OrgIdentity.generate("lab-a")
    path = org.save(tmp_path / "lab-a.json", "correct horse", scrypt_n=FAST)
    loaded = OrgIdentity.load(path, "correct horse")
    assert loaded.public == org.public
    assert _private_secrets(loaded) == _private_secrets(org)
    message = b"round 3 update"
    assert org.public.verify(loaded.sign(message), message)
    assert loaded.evm_account().address == org.evm_address


def test_keystore_default_cost_round_trip(tmp_path):
    org = OrgIdentity.generate("lab-default")
    path = org.save(tmp_path / "k.json", "pw")
    assert json.loads(path.read_text())["kdf"]["n"] == 2**17
    assert OrgIdentity.load(path, "pw").public == org.public


def test_keystore_file_mode_is_0600(tmp_path):
    path = OrgIdentity.generate("lab-a").save(tmp_path / "sub" / "k.json", "pw", scrypt_n=FAST)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not [p for p in path.parent.iterdir() if p.name != "k.json"]  # no temp files left


def test_wrong_passphrase_names_the_file(tmp_path):
    path = OrgIdentity.generate("lab-a").save(tmp_path / "k.json", "right", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match="wrong passphrase") as info:
        OrgIdentity.load(path, "wrong")
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_passphrase_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, "from-env")
    org = OrgIdentity.generate("lab-env")
    path = org.save(tmp_path / "k.json", scrypt_n=FAST)
    assert OrgIdentity.load(path).public == org.public
    with pytest.raises(KeystoreError, match="wrong passphrase"):
        OrgIdentity.load(path, "other")


def test_missing_passphrase_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeystoreError, match=PASSPHRASE_ENV):
        OrgIdentity.generate("lab-a").save(tmp_path / "k.json", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match="empty passphrase"):
        OrgIdentity.generate("lab-a").save(tmp_path / "k.json", "", scrypt_n=FAST)


def test_keystore_never_contains_private_keys_in_clear(tmp_path):
    org = OrgIdentity.generate("lab-a")
    passphrase = "s3cret-pass"
    raw = org.save(tmp_path / "k.json", passphrase, scrypt_n=FAST).read_bytes()
    text = raw.decode().lower()
    for secret in _private_secrets(org):
        assert secret not in raw
        assert secret.hex() not in text
        assert base64.b64encode(secret) not in raw
        assert base64.b32encode(secret).lower().decode() not in text
    assert passphrase.encode() not in raw
    doc = json.loads(raw)
    assert PublicIdentity.from_dict(doc["public"]) == org.public  # public part stays readable


def test_repr_and_str_hide_private_keys():
    org = OrgIdentity.generate("lab-a")
    for shown in (repr(org), str(org), f"{org}"):
        for secret in _private_secrets(org):
            assert secret.hex() not in shown.lower()
        assert "lab-a" in shown


def test_refuses_to_overwrite_an_identity(tmp_path):
    path = OrgIdentity.generate("lab-a").save(tmp_path / "k.json", "pw", scrypt_n=FAST)
    with pytest.raises(KeystoreError, match="refusing to overwrite"):
        OrgIdentity.generate("lab-b").save(path, "pw", scrypt_n=FAST)
    OrgIdentity.generate("lab-b").save(path, "pw", overwrite=True, scrypt_n=FAST)
    assert OrgIdentity.load(path, "pw").name == "lab-b"


def test_edited_public_part_fails_to_open(tmp_path):
    victim = OrgIdentity.generate("lab-a")
    path = victim.save(tmp_path / "k.json", "pw", scrypt_n=FAST)
    doc = json.loads(path.read_text())
    doc["public"]["ed25519"] = OrgIdentity.generate("lab-x").public.ed25519
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreError, match="modified"):
        OrgIdentity.load(path, "pw")


def test_malformed_and_missing_keystores(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "something-else"}')
    bad.chmod(0o600)
    with pytest.raises(KeystoreError, match="malformed") as info:
        OrgIdentity.load(bad, "pw")
    assert str(bad) in str(info.value)
    with pytest.raises(KeystoreError, match="org init"):
        OrgIdentity.load(tmp_path / "absent.json", "pw")


def test_world_readable_keystore_warns(tmp_path):
    path = OrgIdentity.generate("lab-a").save(tmp_path / "k.json", "pw", scrypt_n=FAST)
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match="chmod 600"):
        OrgIdentity.load(path, "pw")


def test_public_identity_json_round_trip_and_validation():
    pub = OrgIdentity.generate("lab-a").public
    assert PublicIdentity.from_json(pub.to_json()) == pub
    assert pub.to_json() == PublicIdentity.from_json(pub.to_json()).to_json()  # stable bytes
    assert len(pub.fingerprint) == 16
    with pytest.raises(ValueError, match="invalid org name"):
        PublicIdentity(
            name="bad name!", ed25519=pub.ed25519, x25519=pub.x25519, evm_address=pub.evm_address
        )
    with pytest.raises(ValueError, match="ed25519"):
        PublicIdentity(name="x", ed25519="00", x25519=pub.x25519, evm_address=pub.evm_address)
    with pytest.raises(ValueError, match="missing"):
        PublicIdentity.from_dict({"name": "x"})


def test_signature_does_not_verify_under_another_org():
    a, b = OrgIdentity.generate("a"), OrgIdentity.generate("b")
    sig = a.sign(b"msg")
    assert a.public.verify(sig, b"msg")
    assert not b.public.verify(sig, b"msg")
    assert not a.public.verify(sig, b"msg2")
    assert not a.public.verify(b"\x00" * 64, b"msg")
