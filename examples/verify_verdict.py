"""Check a sigverify verdict with plain Python and `cryptography` (nothing from sigverify).

Usage: python examples/verify_verdict.py VERDICT.json KEYS.json [IMAGE_DIGEST]
  VERDICT.json: the response of POST /v1/verify
  KEYS.json:    GET /v1/keys, fetched once and pinned
Exits 0 and prints the result when the signature verifies (and names IMAGE_DIGEST, if given).
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec


def _b64url_int(text: str) -> int:
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def check(
    verdict: dict[str, Any], keys: dict[str, Any], image_digest: str | None = None
) -> dict[str, Any]:
    """The verified in-toto statement; raises ValueError if anything does not hold."""
    envelope = verdict["signedVerdict"]
    payload_type = envelope["payloadType"]
    payload = base64.b64decode(envelope["payload"], validate=True)
    by_kid = {jwk["kid"]: jwk for jwk in keys["jwks"]["keys"]}
    for signature in envelope["signatures"]:
        jwk = by_kid.get(signature["keyid"])
        if jwk is None or jwk["kty"] != "EC" or jwk["crv"] != "P-256":
            continue
        public = ec.EllipticCurvePublicNumbers(
            _b64url_int(jwk["x"]), _b64url_int(jwk["y"]), ec.SECP256R1()
        ).public_key()
        pae = b"DSSEv1 %d %s %d %s" % (
            len(payload_type.encode()),
            payload_type.encode(),
            len(payload),
            payload,
        )
        try:
            public.verify(base64.b64decode(signature["sig"]), pae, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            continue
        break
    else:
        raise ValueError("no signature verifies with a pinned key")
    statement = json.loads(payload)
    if statement["_type"] != "https://in-toto.io/Statement/v1":
        raise ValueError("not an in-toto Statement v1")
    if statement["predicateType"] != "https://slsa.dev/verification_summary/v1":
        raise ValueError("not a SLSA verification summary")
    if image_digest is not None:
        digests = {"sha256:" + s["digest"]["sha256"] for s in statement["subject"]}
        if image_digest not in digests:
            raise ValueError(f"the verdict is about {sorted(digests)}, not {image_digest}")
    if not isinstance(statement, dict):
        raise ValueError("the statement is not an object")
    return statement


def main() -> int:
    with open(sys.argv[1]) as v, open(sys.argv[2]) as k:
        verdict, keys = json.load(v), json.load(k)
    try:
        statement = check(verdict, keys, sys.argv[3] if len(sys.argv) > 3 else None)
    except (ValueError, KeyError) as exc:
        print(f"verdict does NOT verify: {exc}", file=sys.stderr)
        return 1
    print(statement["predicate"]["verificationResult"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
