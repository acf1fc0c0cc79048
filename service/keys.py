"""The verdict-signing key: a configured PEM file, or a development key made on first start.

Key id = lowercase hex sha256 of the DER SubjectPublicKeyInfo, the same id published by
`GET /v1/keys`, so a verifier can pick the key a verdict names.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.config import PREFIX, SettingsError

log = logging.getLogger(__name__)

DEV_KEY_NAME = "dev-signing-key.pem"
DEV_KEY_WARNING = (
    "verdicts are signed with a DEVELOPMENT key generated on first start; "
    f"set {PREFIX}SIGNING_KEY_FILE to a managed ECDSA P-256 key before production use"
)


@dataclass(frozen=True)
class SigningKey:
    """An ECDSA P-256 private key with its key id."""

    private_key: ec.EllipticCurvePrivateKey
    key_id: str
    development: bool

    @property
    def cache_secret(self) -> bytes:
        """The secret cache values are sealed with (`service.cache.Sealer`), derived from this
        key (HKDF-SHA256): every pod holding the release's key can read what another wrote,
        and nobody without it can write a value they accept."""
        scalar = self.private_key.private_numbers().private_value.to_bytes(32, "big")
        return HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"sigverify cache seal v1"
        ).derive(scalar)

    @property
    def public_pem(self) -> str:
        return (
            self.private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


def key_id(public_key: ec.EllipticCurvePublicKey) -> str:
    """sha256 hex of the DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def _from_pem(data: bytes, source: str, *, development: bool) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{source}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SettingsError(f"{source}: the verdict-signing key must be ECDSA P-256")
    return SigningKey(key, key_id(key.public_key()), development)


def load_signing_key(key_file: Path | None, data_dir: Path) -> SigningKey:
    """The configured key, or the development key in `data_dir` (created if absent)."""
    if key_file is not None:
        try:
            data = key_file.read_bytes()
        except OSError as exc:
            raise SettingsError(f"{PREFIX}SIGNING_KEY_FILE: cannot read: {exc.strerror}") from None
        return _from_pem(data, f"{PREFIX}SIGNING_KEY_FILE", development=False)
    path = data_dir / DEV_KEY_NAME
    if not path.exists():
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(pem)
        except FileExistsError:
            pass  # another worker made it first
        except OSError as exc:
            raise SettingsError(
                f"{PREFIX}DATA_DIR={str(data_dir)!r}: cannot write the development key: "
                f"{exc.strerror}"
            ) from None
    key = _from_pem(path.read_bytes(), str(path), development=True)
    log.warning("%s (key id %s)", DEV_KEY_WARNING, key.key_id)
    return key


@dataclass(frozen=True)
class PublishedKey:
    """A public key verdicts may have been signed with: the signing one or a retired one."""

    public_key: ec.EllipticCurvePublicKey
    key_id: str
    signing: bool
    development: bool = False

    @property
    def public_pem(self) -> str:
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def load_retired_keys(paths: tuple[Path, ...]) -> list[PublishedKey]:
    """Keys that signed verdicts before a rotation (PEM, public or private), still published."""
    keys: list[PublishedKey] = []
    for path in paths:
        where = f"{PREFIX}RETIRED_KEY_FILES: {path}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SettingsError(f"{where}: cannot read: {exc.strerror}") from None
        public: object
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            try:
                public = serialization.load_pem_private_key(data, password=None).public_key()
            except (ValueError, TypeError):
                raise SettingsError(f"{where}: not a PEM public or private key") from None
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(
            public.curve, ec.SECP256R1
        ):
            raise SettingsError(f"{where}: verdict keys are ECDSA P-256")
        keys.append(PublishedKey(public, key_id(public), signing=False))
    return keys


def published_keys(signing: SigningKey, retired: list[PublishedKey]) -> list[PublishedKey]:
    """The signing key first, then the retired ones (a key listed twice once)."""
    first = PublishedKey(
        signing.private_key.public_key(), signing.key_id, True, signing.development
    )
    out = [first]
    for key in retired:
        if all(key.key_id != k.key_id for k in out):
            out.append(key)
    return out
