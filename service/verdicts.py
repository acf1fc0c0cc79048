"""Signed verdicts: an in-toto Statement v1 whose predicate is a SLSA Verification Summary v1,
wrapped in a DSSE envelope signed with the service's ECDSA P-256 key.

A deploy tool checks a verdict with nothing but the public key from `GET /v1/keys`:
ECDSA-SHA256 over PAE(payloadType, payload), then reads the statement's subject and
`verificationResult`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from service.keys import PublishedKey, SigningKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
VSA_TYPE = "https://slsa.dev/verification_summary/v1"
VERIFIER_ID = "https://github.com/sigverify/sigverify"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


@dataclass(frozen=True)
class VerdictSubject:
    """What was verified: the repository name and the image digest."""

    name: str
    digest: str  # "sha256:<hex>"


def statement(
    *,
    subject: VerdictSubject,
    verified: bool,
    policy_name: str | None,
    policy_digest: str,
    inputs: Sequence[str],
    verified_at: datetime,
    version: str,
    resource_uri: str | None = None,
) -> dict[str, Any]:
    """The in-toto Statement (SLSA VSA v1 predicate) for one verdict.

    `resource_uri` defaults to the image's `oci://<name>@<digest>`; with another resource
    (an artifact), the input attestations are named by digest only.
    """
    algorithm, _, hex_digest = subject.digest.partition(":")
    policy: dict[str, Any] = {"digest": {"sha256": policy_digest.removeprefix("sha256:")}}
    if policy_name:
        policy["uri"] = f"sigverify:policy/{policy_name}"
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": subject.name, "digest": {algorithm: hex_digest}}],
        "predicateType": VSA_TYPE,
        "predicate": {
            "verifier": {"id": VERIFIER_ID, "version": {"sigverify": version}},
            "timeVerified": verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "resourceUri": resource_uri or f"oci://{subject.name}@{subject.digest}",
            "policy": policy,
            "inputAttestations": [
                {"uri": f"oci://{subject.name}@{d}", "digest": {"sha256": d.partition(":")[2]}}
                if resource_uri is None
                else {"digest": {"sha256": d.partition(":")[2]}}
                for d in inputs
            ],
            "verificationResult": "PASSED" if verified else "FAILED",
            "verifiedLevels": [],
        },
    }


def sign(statement_obj: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """A DSSE envelope over the statement, signed with `key`."""
    payload = json.dumps(statement_obj, separators=(",", ":"), sort_keys=True).encode()
    signature = key.private_key.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key.key_id, "sig": base64.b64encode(signature).decode()}],
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def public_keys(keys: Sequence[PublishedKey]) -> dict[str, Any]:
    """The verdict keys as a verifier needs them: PEM with key ids, and a JWKS (RFC 7517).

    The `signing` key signs new verdicts; the others are still published so that verdicts they
    signed before a rotation keep verifying.
    """
    listed: list[dict[str, Any]] = []
    jwks: list[dict[str, str]] = []
    for key in keys:
        numbers = key.public_key.public_numbers()
        listed.append(
            {
                "keyId": key.key_id,
                "algorithm": "ecdsa-p256-sha256",
                "pem": key.public_pem,
                "signing": key.signing,
                "development": key.development,
            }
        )
        jwks.append(
            {
                "kty": "EC",
                "crv": "P-256",
                "x": _b64url(numbers.x.to_bytes(32, "big")),
                "y": _b64url(numbers.y.to_bytes(32, "big")),
                "kid": key.key_id,
                "use": "sig",
                "alg": "ES256",
            }
        )
    return {"keys": listed, "jwks": {"keys": jwks}}
