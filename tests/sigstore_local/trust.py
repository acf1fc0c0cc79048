"""trusted_root.json in Sigstore's protobuf-specs JSON form, describing a local instance."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from tests.sigstore_local.ca import CertificateAuthority
from tests.sigstore_local.encoding import b64, spki

MEDIA_TYPE = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"


def timestamp(when: datetime) -> str:
    """A protobuf JSON Timestamp (RFC 3339, UTC, whole seconds)."""
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class LogKey:
    """A transparency log (Rekor or CT) as the trusted root describes it."""

    public_key: ec.EllipticCurvePublicKey
    base_url: str
    start: datetime
    end: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        der = spki(self.public_key)
        valid_for = {"start": timestamp(self.start)}
        if self.end is not None:
            valid_for["end"] = timestamp(self.end)
        return {
            "baseUrl": self.base_url,
            "hashAlgorithm": "SHA2_256",
            "publicKey": {
                "rawBytes": b64(der),
                "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                "validFor": valid_for,
            },
            "logId": {"keyId": b64(hashlib.sha256(der).digest())},
        }


def authority_json(ca: CertificateAuthority, uri: str | None = None) -> dict[str, Any]:
    """One `certificateAuthorities` item: the chain intermediate first, root last."""
    return {
        "subject": {"organization": "sigstore.local", "commonName": ca.name},
        "uri": uri or f"https://{ca.name}.sigstore.local",
        "certChain": {
            "certificates": [{"rawBytes": b64(c.public_bytes(Encoding.DER))} for c in ca.chain]
        },
        "validFor": {"start": timestamp(ca.valid_from)},
    }


def trusted_root_json(
    *,
    authorities: Sequence[CertificateAuthority],
    tlogs: Sequence[LogKey],
    ctlogs: Sequence[LogKey],
) -> bytes:
    """The trusted root document; no timestamp authorities (time comes from the log)."""
    return json.dumps(
        {
            "mediaType": MEDIA_TYPE,
            "tlogs": [t.to_json() for t in tlogs],
            "certificateAuthorities": [authority_json(ca) for ca in authorities],
            "ctlogs": [c.to_json() for c in ctlogs],
            "timestampAuthorities": [],
        },
        indent=2,
    ).encode()
