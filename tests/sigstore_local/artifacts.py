"""What Sigstore clients produce, built from parts (no I/O): cosign payloads and annotations,
Rekor proposals, DSSE envelopes, in-toto statements and Sigstore bundles v0.3."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import Encoding

from tests.sigstore_local.encoding import PrivateKey, b64, canonical_json
from tests.sigstore_local.log import RekorEntry, pae

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
IN_TOTO = "application/vnd.in-toto+json"
IN_TOTO_STATEMENT_V1 = "https://in-toto.io/Statement/v1"
SLSA_PROVENANCE_V1 = "https://slsa.dev/provenance/v1"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
PREDICATE_TYPE_ANNOTATION = "predicateType"
DEFAULT_IDENTITY = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


def simple_signing(image_digest: str, reference: str = "registry.example/app") -> bytes:
    """cosign's payload: Go's json.Marshal of its simple-signing struct (compact, that order)."""
    return json.dumps(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": image_digest},
                "type": "cosign container image signature",
            },
            "optional": None,
        },
        separators=(",", ":"),
    ).encode()


def sign(key: PrivateKey, message: bytes) -> bytes:
    """Sign `message` as cosign signs with this key type (ECDSA/RSA over sha256, Ed25519)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(message, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(message)


def sign_digest(key: ec.EllipticCurvePrivateKey, digest: bytes) -> bytes:
    """ECDSA over an already-computed sha256 (a message signature over an image digest)."""
    return key.sign(digest, ec.ECDSA(utils.Prehashed(hashes.SHA256())))


def signer_pem(signer: x509.Certificate | str | bytes) -> bytes:
    """The PEM a client puts in a Rekor entry: the certificate's, or a PEM public key as is."""
    if isinstance(signer, x509.Certificate):
        return signer.public_bytes(Encoding.PEM)
    return signer.encode() if isinstance(signer, str) else signer


def hashedrekord_proposal(
    digest_hex: str, signature: bytes, signer: x509.Certificate | str | bytes
) -> dict[str, Any]:
    """The `POST /api/v1/log/entries` body for a signature over an artifact's sha256."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": "sha256", "value": digest_hex}},
            "signature": {
                "content": b64(signature),
                "publicKey": {"content": b64(signer_pem(signer))},
            },
        },
    }


def hashedrekord_body(
    payload: bytes, signature: bytes, signer: x509.Certificate | str | bytes
) -> bytes:
    """The canonical body Rekor stores for a hashedrekord over `payload`."""
    return canonical_json(
        hashedrekord_proposal(hashlib.sha256(payload).hexdigest(), signature, signer)
    )


def in_toto_statement(
    digest: str,
    *,
    name: str = "registry.example/app",
    predicate_type: str = SLSA_PROVENANCE_V1,
    predicate: Mapping[str, Any] | None = None,
) -> bytes:
    """An in-toto v1 statement about one subject (`digest` as `sha256:<hex>`)."""
    algorithm, _, value = digest.partition(":")
    return json.dumps(
        {
            "_type": IN_TOTO_STATEMENT_V1,
            "subject": [{"name": name, "digest": {algorithm: value}}],
            "predicateType": predicate_type,
            "predicate": dict(predicate or {}),
        },
        separators=(",", ":"),
    ).encode()


def dsse_envelope(
    payload: bytes, key: PrivateKey, payload_type: str = IN_TOTO
) -> tuple[str, bytes]:
    """A DSSE envelope (JSON text, as cosign writes it) signed by `key`; and the signature."""
    signature = sign(key, pae(payload_type, payload))
    envelope = json.dumps(
        {
            "payloadType": payload_type,
            "payload": b64(payload),
            "signatures": [{"keyid": "", "sig": b64(signature)}],
        },
        separators=(",", ":"),
    )
    return envelope, signature


def dsse_proposal(
    envelope: str, verifiers: Sequence[x509.Certificate | str | bytes]
) -> dict[str, Any]:
    """The `POST /api/v1/log/entries` body for a DSSE envelope (dsse 0.0.1)."""
    return {
        "apiVersion": "0.0.1",
        "kind": "dsse",
        "spec": {
            "proposedContent": {
                "envelope": envelope,
                "verifiers": [b64(signer_pem(v)) for v in verifiers],
            }
        },
    }


def set_bundle_annotation(
    signed_entry_timestamp: bytes, body: bytes, integrated_time: int, log_index: int, log_id: str
) -> str:
    """The `dev.sigstore.cosign/bundle` annotation: a SET and the entry fields it signs."""
    return json.dumps(
        {
            "SignedEntryTimestamp": b64(signed_entry_timestamp),
            "Payload": {
                "body": b64(body),
                "integratedTime": integrated_time,
                "logIndex": log_index,
                "logID": log_id,
            },
        },
        separators=(",", ":"),
    )


def cosign_bundle_annotation(entry: RekorEntry) -> str:
    """The `dev.sigstore.cosign/bundle` annotation cosign writes after logging `entry`."""
    return set_bundle_annotation(
        entry.signed_entry_timestamp,
        entry.body,
        entry.integrated_time,
        entry.log_index,
        entry.log_id,
    )


def transparency_log_entry(entry: RekorEntry) -> dict[str, Any]:
    """A Rekor answer as a bundle's `TransparencyLogEntry` (protobuf JSON: int64 as strings,
    bytes as base64), with its inclusion promise and inclusion proof."""
    kind, version = entry.kind
    proof = entry.inclusion_proof
    return {
        "logIndex": str(entry.log_index),
        "logId": {"keyId": b64(bytes.fromhex(entry.log_id))},
        "kindVersion": {"kind": kind, "version": version},
        "integratedTime": str(entry.integrated_time),
        "inclusionPromise": {"signedEntryTimestamp": b64(entry.signed_entry_timestamp)},
        "inclusionProof": {
            "logIndex": str(proof["logIndex"]),
            "rootHash": b64(bytes.fromhex(proof["rootHash"])),
            "treeSize": str(proof["treeSize"]),
            "hashes": [b64(bytes.fromhex(h)) for h in proof["hashes"]],
            "checkpoint": {"envelope": proof["checkpoint"]},
        },
        "canonicalizedBody": b64(entry.body),
    }


def sigstore_bundle(
    certificate: x509.Certificate,
    entry: RekorEntry,
    *,
    message_digest: bytes | None = None,
    signature: bytes | None = None,
    envelope: str | None = None,
) -> dict[str, Any]:
    """A Sigstore bundle v0.3: a message signature (`message_digest` + `signature`) or a DSSE
    `envelope` (its JSON text), the leaf certificate, and the log entry with proof + promise."""
    bundle: dict[str, Any] = {
        "mediaType": BUNDLE_V03,
        "verificationMaterial": {
            "certificate": {"rawBytes": b64(certificate.public_bytes(Encoding.DER))},
            "tlogEntries": [transparency_log_entry(entry)],
        },
    }
    if envelope is not None:
        doc = json.loads(envelope)
        bundle["dsseEnvelope"] = {
            "payload": doc["payload"],
            "payloadType": doc["payloadType"],
            "signatures": [{"sig": s["sig"]} for s in doc["signatures"]],
        }
    else:
        assert message_digest is not None and signature is not None
        bundle["messageSignature"] = {
            "messageDigest": {"algorithm": "SHA2_256", "digest": b64(message_digest)},
            "signature": b64(signature),
        }
    return bundle


# Fields of Sigstore's messages that are int64, which protobuf JSON writes as strings.
INT64_FIELDS = frozenset({"logIndex", "integratedTime", "treeSize"})


def protobuf_json(value: Any) -> Any:
    """`value` as protobuf's JSON encoders write it (protojson, sigstore-js's generated code):
    a field that holds its proto3 default is left out (an int64 of 0, written "0"; an empty
    string, bytes or list; false). Message fields stay, even when empty."""
    if isinstance(value, list):
        return [protobuf_json(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if item is False or item in ("", []) or (key in INT64_FIELDS and item == "0"):
            continue
        out[key] = protobuf_json(item)
    return out
