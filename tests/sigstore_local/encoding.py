"""Encodings the Sigstore services agree on: base64, SPKI, DER strings, canonical JSON."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def b64(data: bytes) -> str:
    """Standard base64 with padding, as Go's `encoding/base64.StdEncoding` writes it."""
    return base64.b64encode(data).decode()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spki(key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo: what Rekor and CT logs hash into their log ids."""
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def pem_public(key: PublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def der_length(n: int) -> bytes:
    """A DER length octet string (short form below 128, long form above)."""
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_utf8(value: str) -> bytes:
    """A DER UTF8String, the encoding of Fulcio's newer (1.8+) certificate extensions."""
    raw = value.encode()
    return bytes([0x0C]) + der_length(len(raw)) + raw


def der_octet_string(data: bytes) -> bytes:
    return bytes([0x04]) + der_length(len(data)) + data


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 (JCS) bytes: what Rekor stores as entry bodies and signs as SETs."""
    return rfc8785.dumps(obj)


def public_key_of(key: PrivateKey | PublicKey) -> PublicKey:
    """The public half of `key`, or `key` itself when it is already public."""
    if isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key.public_key()
    return key
