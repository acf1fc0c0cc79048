"""Signature checks with a public key: ECDSA, RSA (PKCS#1 v1.5 and PSS) and Ed25519 (private).

cosign signs SHA-256 digests whatever the curve, so ECDSA accepts SHA-256 and, for P-384 and
P-521, the curve's own hash as well. RSA accepts PKCS#1 v1.5 and PSS over SHA-256.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

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


def signature_valid(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` verifies with `key` under any accepted scheme."""
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithms: list[hashes.HashAlgorithm] = [hashes.SHA256()]
        extra = _CURVE_HASH.get(key.curve.name)
        if extra is not None:
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
        for scheme in schemes:
            try:
                key.verify(signature, data, scheme, hashes.SHA256())
                return True
            except InvalidSignature:
                continue
        return False
    if isinstance(key, ed25519.Ed25519PublicKey):
        try:
            key.verify(signature, data)
            return True
        except InvalidSignature:
            return False
    return False  # pragma: no cover - PublicKey is exhaustive
