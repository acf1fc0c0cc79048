"""Small parsing helpers shared by the core modules (private)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import re2
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)

from service.core.errors import InputError, PolicyError

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey


def b64decode(value: object, what: str) -> bytes:
    """Strict standard base64 that, like Go's decoder, skips line breaks; errors name `what`."""
    if not isinstance(value, str | bytes):
        raise InputError(f"{what}: found {type(value).__name__}, expected base64 text")
    if isinstance(value, str):
        value = value.encode("ascii", errors="replace")
    try:
        return base64.b64decode(value.replace(b"\r", b"").replace(b"\n", b""), validate=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what}: found invalid base64, expected base64 text") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spki_der(key: PublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def key_fingerprint(key: PublicKey) -> str:
    """sha256 hex of the DER SubjectPublicKeyInfo: Rekor's and CT's key (log) id."""
    return sha256_hex(spki_der(key))


def as_public_key(key: object, what: str) -> PublicKey:
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise InputError(
        f"{what}: found a {type(key).__name__}, expected an ECDSA, RSA or Ed25519 public key"
    )


def load_public_key_pem(pem: bytes, what: str) -> PublicKey:
    try:
        return as_public_key(load_pem_public_key(pem), what)
    except (ValueError, TypeError):
        raise InputError(f"{what}: found no PEM public key, expected one") from None


def load_public_key_der(der: bytes, what: str) -> PublicKey:
    try:
        return as_public_key(load_der_public_key(der), what)
    except (ValueError, TypeError):
        raise InputError(f"{what}: found no DER public key, expected one") from None


def load_pem_certificates(pem: bytes, what: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise InputError(f"{what}: found no PEM certificate, expected at least one") from None


def load_der_certificate(der: bytes, what: str) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise InputError(f"{what}: found an invalid DER certificate, expected one") from None


def parse_time(value: object, what: str) -> datetime:
    """An RFC 3339 timestamp (protobuf JSON) as an aware UTC datetime."""
    if not isinstance(value, str):
        raise InputError(f"{what}: found {type(value).__name__}, expected an RFC 3339 time")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{what}: found {value!r:.40}, expected an RFC 3339 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def mapping(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{what}: found {type(value).__name__}, expected an object")
    return value


def text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what}: found {type(value).__name__}, expected a string")
    return value


def integer(value: object, what: str) -> int:
    """An integer, also from protobuf JSON's decimal strings (int64 fields)."""
    if isinstance(value, bool):
        raise InputError(f"{what}: found a boolean, expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise InputError(f"{what}: found {value!r:.40}, expected an integer")


def der_utf8_string(raw: bytes) -> str:
    """Decode a DER UTF8String (tag 0x0c), as Fulcio encodes extensions 1.8 and later."""
    if len(raw) < 2 or raw[0] != 0x0C:
        raise InputError("extension: found no DER UTF8String, expected one")
    length = raw[1]
    offset = 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or len(raw) < 2 + count:
            raise InputError("extension: found an invalid DER length, expected a definite one")
        length = int.from_bytes(raw[2 : 2 + count], "big")
        offset = 2 + count
    if len(raw) != offset + length:
        raise InputError(f"extension: found {len(raw) - offset} bytes of string, expected {length}")
    try:
        return raw[offset:].decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("extension: found invalid UTF-8, expected text") from None


def compile_re2(pattern: str, where: str, max_length: int) -> Any:
    """An RE2 pattern (linear-time matching); `PolicyError` names `where` when it is too
    long or invalid."""
    if len(pattern) > max_length:
        raise PolicyError(
            f"found a regexp of {len(pattern)} characters, expected at most {max_length}",
            field=where,
        )
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PolicyError(f"found an invalid regexp: {detail}", field=where) from None


def load_json(data: bytes | str, what: str) -> Any:
    """Parse JSON from an untrusted source; `InputError` names `what` when it is not JSON,
    including input nested too deeply for the parser (a RecursionError otherwise)."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        detail = "nested too deeply" if isinstance(exc, RecursionError) else "not valid JSON"
        raise InputError(f"{what}: found {detail}, expected JSON") from None
