"""Organisation identities and their encrypted keystore.

An org identity is three private keys:

* **Ed25519** signs every message that crosses an org boundary (envelopes, votes, registrations);
* **X25519** receives encrypted payloads (see :mod:`matswarm.trust.envelope`);
* **secp256k1** is the org's EVM account, which sends its ledger transactions.

:class:`PublicIdentity` is the part others need (name, both public keys, EVM address); it is what
an org registers on the ledger. :class:`OrgIdentity` holds the private keys and never shows them:
its ``repr`` prints public fingerprints only, and the only way to persist it is the keystore.

Keystore file (one JSON file per org, mode 0600)::

    {"format": "matswarm-keystore", "version": 1,
     "public": {PublicIdentity JSON, in clear},
     "kdf": {"name": "scrypt", "salt": hex, "n": 131072, "r": 8, "p": 1},
     "cipher": {"name": "aes-256-gcm", "nonce": hex},
     "ciphertext": hex}

The private keys are encrypted with AES-256-GCM under a key derived from the passphrase by
scrypt; the AEAD's associated data binds the clear public part and the KDF parameters, so
editing either makes the file fail to open. The passphrase comes from the ``passphrase`` argument
or else the ``MATSWARM_PASSPHRASE`` environment variable; it is never stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from matswarm.trust._canonical import encode_fields
from matswarm.trust.errors import KeystoreError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

PASSPHRASE_ENV = "MATSWARM_PASSPHRASE"
KEYSTORE_FORMAT = "matswarm-keystore"
KEYSTORE_VERSION = 1
DEFAULT_SCRYPT_N = 2**17  # 128 MiB, ~0.3 s: the usual interactive-login cost
MIN_SCRYPT_N = 2**14

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
_RAW = serialization.Encoding.Raw
_RAW_PUB = serialization.PublicFormat.Raw
_RAW_PRIV = serialization.PrivateFormat.Raw
_NOENC = serialization.NoEncryption()


def validate_org_name(name: str) -> str:
    """Return ``name`` if valid: 1–64 characters of ``A-Za-z0-9._-``, first a letter or digit."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"invalid org name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit"
        )
    return name


def _evm_address(private_key: bytes) -> str:
    from eth_account import Account  # imported lazily: web3's import is slow

    try:
        return Account.from_key(private_key).address
    except Exception as exc:  # eth_keys raises ValidationError for keys outside (0, n)
        raise ValueError("invalid secp256k1 private key (must be in 1..n-1)") from exc


@dataclass(frozen=True)
class PublicIdentity:
    """The public half of an org identity: what an org registers and what verifiers use.

    ``ed25519`` and ``x25519`` are 32-byte raw public keys as lowercase hex; ``evm_address`` is
    the EIP-55 checksummed address of the org's ledger account.
    """

    name: str
    ed25519: str
    x25519: str
    evm_address: str

    def __post_init__(self) -> None:
        validate_org_name(self.name)
        for field in ("ed25519", "x25519"):
            value = getattr(self, field)
            if not isinstance(value, str) or not _HEX64_RE.match(value):
                raise ValueError(f"{field} public key must be 64 lowercase hex characters")
        if not (
            isinstance(self.evm_address, str) and re.match(r"^0x[0-9a-fA-F]{40}$", self.evm_address)
        ):
            raise ValueError(f"evm_address {self.evm_address!r} is not a 0x-prefixed address")

    # --- keys -----------------------------------------------------------------------------
    def ed25519_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.ed25519))

    def x25519_key(self) -> X25519PublicKey:
        return X25519PublicKey.from_public_bytes(bytes.fromhex(self.x25519))

    def verify(self, signature: bytes, message: bytes) -> bool:
        """True iff ``signature`` is this org's Ed25519 signature over ``message``."""
        try:
            self.ed25519_key().verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True

    @property
    def fingerprint(self) -> str:
        """Short stable id of the whole public identity (first 16 hex of its canonical sha256)."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()[:16]

    def canonical_bytes(self) -> bytes:
        return encode_fields(
            b"matswarm/public-identity/v1\0",
            [self.name, self.ed25519, self.x25519, self.evm_address],
        )

    # --- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "ed25519": self.ed25519,
            "x25519": self.x25519,
            "evm_address": self.evm_address,
        }

    def to_json(self) -> str:
        """Compact JSON with sorted keys (stable bytes for ledger registration)."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublicIdentity:
        missing = {"name", "ed25519", "x25519", "evm_address"} - set(data)
        if missing:
            raise ValueError(f"public identity is missing {sorted(missing)}")
        return cls(
            name=data["name"],
            ed25519=data["ed25519"],
            x25519=data["x25519"],
            evm_address=data["evm_address"],
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> PublicIdentity:
        return cls.from_dict(json.loads(text))


class OrgIdentity:
    """An org's private keys. Create with :meth:`generate`, persist with :meth:`save`/:meth:`load`.

    The private keys are never exposed as attributes, never printed and never serialised except
    encrypted by :meth:`save`. Use :meth:`sign`, :meth:`x25519_exchange` and :meth:`evm_account`.
    """

    __slots__ = ("_encryption_key", "_evm_key", "_public", "_signing_key")

    def __init__(
        self,
        name: str,
        *,
        signing_key: Ed25519PrivateKey,
        encryption_key: X25519PrivateKey,
        evm_private_key: bytes,
    ):
        validate_org_name(name)
        if not isinstance(evm_private_key, bytes) or len(evm_private_key) != 32:
            raise ValueError("evm_private_key must be 32 bytes")
        self._signing_key = signing_key
        self._encryption_key = encryption_key
        self._evm_key = evm_private_key
        self._public = PublicIdentity(
            name=name,
            ed25519=signing_key.public_key().public_bytes(_RAW, _RAW_PUB).hex(),
            x25519=encryption_key.public_key().public_bytes(_RAW, _RAW_PUB).hex(),
            evm_address=_evm_address(evm_private_key),
        )

    @classmethod
    def generate(cls, name: str) -> OrgIdentity:
        """Fresh keys from the OS CSPRNG (the EVM key via ``eth_account.Account.create``)."""
        from eth_account import Account

        return cls(
            name,
            signing_key=Ed25519PrivateKey.generate(),
            encryption_key=X25519PrivateKey.generate(),
            evm_private_key=bytes(Account.create().key),
        )

    # --- public view ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._public.name

    @property
    def public(self) -> PublicIdentity:
        return self._public

    @property
    def evm_address(self) -> str:
        return self._public.evm_address

    def __repr__(self) -> str:
        return (
            f"OrgIdentity(name={self.name!r}, ed25519={self._public.ed25519[:16]}…, "
            f"evm_address={self.evm_address}, private keys hidden)"
        )

    __str__ = __repr__

    # --- private operations ---------------------------------------------------------------
    def sign(self, message: bytes) -> bytes:
        """Ed25519 signature (64 bytes) over ``message``."""
        return self._signing_key.sign(message)

    def x25519_exchange(self, peer_public: X25519PublicKey) -> bytes:
        """X25519 shared secret with ``peer_public`` (used to unwrap envelope keys)."""
        return self._encryption_key.exchange(peer_public)

    def evm_account(self) -> LocalAccount:
        """The ``eth_account`` account that signs this org's ledger transactions."""
        from eth_account import Account

        return Account.from_key(self._evm_key)

    # --- keystore -------------------------------------------------------------------------
    def save(
        self,
        path: str | os.PathLike[str],
        passphrase: str | None = None,
        *,
        overwrite: bool = False,
        scrypt_n: int = DEFAULT_SCRYPT_N,
    ) -> Path:
        """Write the encrypted keystore to ``path`` (mode 0600, atomic); return the path.

        ``passphrase`` defaults to ``$MATSWARM_PASSPHRASE``. Refuses to replace an existing file
        unless ``overwrite=True``. ``scrypt_n`` is the scrypt cost (power of two ≥ 2**14).
        """
        target = Path(path)
        secret = resolve_passphrase(passphrase, target)
        if scrypt_n < MIN_SCRYPT_N or scrypt_n & (scrypt_n - 1):
            raise KeystoreError(
                f"scrypt_n={scrypt_n} must be a power of two >= {MIN_SCRYPT_N}", path=str(target)
            )
        if target.exists() and not overwrite:
            raise KeystoreError(
                "file exists; refusing to overwrite an identity (pass overwrite=True, or choose "
                "another path)",
                path=str(target),
            )
        kdf = {"name": "scrypt", "salt": os.urandom(16).hex(), "n": scrypt_n, "r": 8, "p": 1}
        cipher = {"name": "aes-256-gcm", "nonce": os.urandom(12).hex()}
        public = self._public.to_dict()
        key = _derive_key(secret, kdf)
        private = json.dumps(
            {
                "ed25519": self._signing_key.private_bytes(_RAW, _RAW_PRIV, _NOENC).hex(),
                "x25519": self._encryption_key.private_bytes(_RAW, _RAW_PRIV, _NOENC).hex(),
                "secp256k1": self._evm_key.hex(),
            }
        ).encode()
        ciphertext = AESGCM(key).encrypt(
            bytes.fromhex(cipher["nonce"]), private, _keystore_aad(public, kdf, cipher)
        )
        doc = {
            "format": KEYSTORE_FORMAT,
            "version": KEYSTORE_VERSION,
            "public": public,
            "kdf": kdf,
            "cipher": cipher,
            "ciphertext": ciphertext.hex(),
        }
        _write_private_file(target, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
        return target

    @classmethod
    def load(cls, path: str | os.PathLike[str], passphrase: str | None = None) -> OrgIdentity:
        """Open a keystore written by :meth:`save` (``passphrase`` defaults to the env var)."""
        target = Path(path)
        where = str(target)
        try:
            raw = target.read_bytes()
            mode = target.stat().st_mode
        except FileNotFoundError:
            raise KeystoreError(
                "no such file (create one with `matswarm org init NAME`)", path=where
            ) from None
        except OSError as exc:
            raise KeystoreError(f"cannot read: {exc.strerror}", path=where) from exc
        if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.warn(
                f"keystore {where} is readable by other users; run `chmod 600 {where}`",
                stacklevel=2,
            )
        try:
            doc = json.loads(raw)
            if doc.get("format") != KEYSTORE_FORMAT:
                raise ValueError(f"not a {KEYSTORE_FORMAT} file")
            if doc.get("version") != KEYSTORE_VERSION:
                raise ValueError(f"unsupported keystore version {doc.get('version')!r}")
            public, kdf, cipher = doc["public"], doc["kdf"], doc["cipher"]
            if kdf.get("name") != "scrypt" or cipher.get("name") != "aes-256-gcm":
                raise ValueError(f"unsupported kdf/cipher {kdf.get('name')}/{cipher.get('name')}")
            nonce = bytes.fromhex(cipher["nonce"])
            ciphertext = bytes.fromhex(doc["ciphertext"])
            expected_public = PublicIdentity.from_dict(public)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise KeystoreError(f"malformed keystore: {exc}", path=where) from None
        secret = resolve_passphrase(passphrase, target)
        try:
            key = _derive_key(secret, kdf)
            private = json.loads(
                AESGCM(key).decrypt(nonce, ciphertext, _keystore_aad(public, kdf, cipher))
            )
        except InvalidTag:
            raise KeystoreError(
                "wrong passphrase, or the file was modified (check MATSWARM_PASSPHRASE or the "
                "passphrase you passed)",
                path=where,
            ) from None
        except (ValueError, TypeError) as exc:
            raise KeystoreError(f"malformed keystore: {exc}", path=where) from None
        identity = cls(
            expected_public.name,
            signing_key=Ed25519PrivateKey.from_private_bytes(bytes.fromhex(private["ed25519"])),
            encryption_key=X25519PrivateKey.from_private_bytes(bytes.fromhex(private["x25519"])),
            evm_private_key=bytes.fromhex(private["secp256k1"]),
        )
        if identity.public != expected_public:  # cannot happen unless the writer was buggy
            raise KeystoreError("private keys do not match the public part", path=where)
        return identity


def resolve_passphrase(passphrase: str | None, path: Path | None = None) -> str:
    """``passphrase`` if given, else ``$MATSWARM_PASSPHRASE``; a clear error if neither is set."""
    secret = passphrase if passphrase is not None else os.environ.get(PASSPHRASE_ENV)
    if secret is None:
        raise KeystoreError(
            f"no passphrase: pass one, or set the {PASSPHRASE_ENV} environment variable",
            path=str(path) if path else None,
        )
    if not secret:
        raise KeystoreError("empty passphrase is not allowed", path=str(path) if path else None)
    return secret


def _derive_key(passphrase: str, kdf: dict[str, Any]) -> bytes:
    n, r, p = int(kdf["n"]), int(kdf["r"]), int(kdf["p"])
    if n < MIN_SCRYPT_N or n > 2**22 or r < 1 or r > 32 or p < 1 or p > 16:
        raise ValueError(f"scrypt parameters out of range (n={n}, r={r}, p={p})")
    return Scrypt(salt=bytes.fromhex(kdf["salt"]), length=32, n=n, r=r, p=p).derive(
        passphrase.encode("utf-8")
    )


def _keystore_aad(public: dict[str, Any], kdf: dict[str, Any], cipher: dict[str, Any]) -> bytes:
    def canon(obj: dict[str, Any]) -> str:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"))

    return encode_fields(
        b"matswarm/keystore/v1\0",
        [KEYSTORE_FORMAT, KEYSTORE_VERSION, canon(public), canon(kdf), canon(cipher)],
    )


def _write_private_file(target: Path, data: bytes) -> None:
    """Atomically write ``data`` to ``target`` with mode 0600 (never visible with looser mode)."""
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists():
        parent.mkdir(parents=True, mode=0o700)
    # mkstemp creates the file with mode 0600, so the secret is never readable by others
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    os.chmod(target, 0o600)
