"""Signature checks with a public key: ECDSA, RSA (PKCS#1 v1.5 and PSS) and Ed25519 (private).

cosign signs SHA-256 digests whatever the curve, so ECDSA accepts SHA-256 and, for P-384 and
P-521, the curve's own hash as well. RSA accepts PKCS#1 v1.5 and PSS over SHA-256.
A `prehashed` check takes `data` as the SHA-256 digest of what was signed (a hashedrekord
over an artifact known by its digest); Ed25519 signs messages, not digests, so it never
verifies one.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from service.core._util import PublicKey

_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def describe_key(key: PublicKey) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ecdsa {key.curve.name}"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    return "ed25519"


def signature_valid(
    key: PublicKey, signature: bytes, data: bytes, *, prehashed: bool = False
) -> bool:
    """Whether `signature` over `data` (or, `prehashed`, over what `data` is the SHA-256 of)
    verifies with `key` under any accepted scheme."""
    if prehashed and len(data) != hashes.SHA256.digest_size:
        return False
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithms: list[hashes.HashAlgorithm | Prehashed] = [
            Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()
        ]
        extra = _CURVE_HASH.get(key.curve.name)
        if extra is not None and not prehashed:
            algorithms.append(extra())
        for algorithm in algorithms:
            try:
                key.verify(signature, data, ec.ECDSA(algorithm))
                return True
            except InvalidSignature:
                continue
        return False
    if isinstance(key, rsa.RSAPublicKey):
        schemes: list[padding.AsymmetricPadding] = [
            padding.PKCS1v15(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
        ]
        rsa_hash: hashes.HashAlgorithm | Prehashed = (
            Prehashed(hashes.SHA256()) if prehashed else hashes.SHA256()
        )
        for scheme in schemes:
            try:
                key.verify(signature, data, scheme, rsa_hash)
                return True
            except InvalidSignature:
                continue
        return False
    if prehashed:
        return False  # Ed25519 (pure) signs the message itself, never a digest
    if isinstance(key, ed25519.Ed25519PublicKey):
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            return False
    return False  # pragma: no cover - PublicKey is exhaustive
