"""What the orchestration hands the core: signatures as the registry returned them, and Rekor
log entries as the log returned them.

Signature inputs are raw on purpose: a malformed layer in a registry is a verification failure
reported in the verdict, not an exception. Log entries are parsed on construction (a malformed
answer from the log raises `InputError`, and the orchestration treats it as no evidence).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.core._util import b64decode, integer, load_json, mapping, sha256_hex, text
from service.core.errors import InputError

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
CERTIFICATE_ANNOTATION = "dev.sigstore.cosign/certificate"
CHAIN_ANNOTATION = "dev.sigstore.cosign/chain"
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
TIMESTAMP_ANNOTATION = "dev.sigstore.cosign/rfc3161timestamp"


@dataclass(frozen=True)
class CosignSignature:
    """One layer of a cosign `sha256-<hex>.sig` manifest (payload: simple-signing JSON)."""

    payload: bytes
    annotations: Mapping[str, str] = field(hash=False)
    media_type: str
    layer_digest: str
    source: str


@dataclass(frozen=True)
class CosignAttestation:
    """One layer of a cosign `sha256-<hex>.att` manifest (payload: a DSSE envelope)."""

    payload: bytes
    annotations: Mapping[str, str] = field(hash=False)
    media_type: str
    layer_digest: str
    source: str


@dataclass(frozen=True)
class BundleSignature:
    """A Sigstore bundle (v0.1 to v0.3) attached to the image as an OCI referrer."""

    bundle: bytes
    manifest_digest: str
    source: str


Signature = CosignSignature | CosignAttestation | BundleSignature


@dataclass(frozen=True)
class InclusionProof:
    """A Merkle inclusion proof and the signed checkpoint (note) of the tree it proves into."""

    log_index: int
    tree_size: int
    root_hash: bytes
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True)
class LogEntry:
    """A Rekor v1 log entry: the canonical body, its position and time, and its proofs."""

    uuid: str
    body: bytes
    integrated_time: int
    log_id: str
    log_index: int
    signed_entry_timestamp: bytes | None
    inclusion_proof: InclusionProof | None

    @classmethod
    def from_rekor_response(cls, obj: Mapping[str, Any]) -> LogEntry:
        """Parse `GET /api/v1/log/entries?logIndex=N` (or by uuid): `{uuid: {...}}`."""
        if not isinstance(obj, Mapping) or len(obj) != 1:
            raise InputError("log entry: found a document without exactly one entry, expected one")
        ((uuid, value),) = obj.items()
        entry = mapping(value, "log entry")
        uuid = text(uuid, "log entry uuid").lower()
        body = b64decode(entry.get("body"), "log entry body")
        leaf_hash = hashlib.sha256(b"\x00" + body).hexdigest()
        if uuid[-64:] != leaf_hash:
            raise InputError(
                f"log entry: found uuid {uuid:.80}, "
                f"expected one ending in the leaf hash {leaf_hash}"
            )
        log_id = text(entry.get("logID"), "log entry logID").lower()
        try:
            bytes.fromhex(log_id)
        except ValueError:
            raise InputError(f"log entry logID: found {log_id!r:.80}, expected hex") from None
        verification = mapping(entry.get("verification", {}), "log entry verification")
        raw_set = verification.get("signedEntryTimestamp")
        signed_entry_timestamp = (
            None if raw_set is None else b64decode(raw_set, "log entry signedEntryTimestamp")
        )
        raw_proof = verification.get("inclusionProof")
        proof = None if raw_proof is None else _proof(mapping(raw_proof, "inclusionProof"))
        return cls(
            uuid=uuid,
            body=body,
            integrated_time=integer(entry.get("integratedTime"), "log entry integratedTime"),
            log_id=log_id,
            log_index=integer(entry.get("logIndex"), "log entry logIndex"),
            signed_entry_timestamp=signed_entry_timestamp,
            inclusion_proof=proof,
        )


def _hex(value: object, what: str) -> bytes:
    try:
        return bytes.fromhex(text(value, what))
    except ValueError:
        raise InputError(f"{what}: found invalid hex, expected hex") from None


def _proof(raw: Mapping[str, Any]) -> InclusionProof:
    hashes = raw.get("hashes", [])
    if not isinstance(hashes, list):
        raise InputError("inclusionProof.hashes: found no list, expected one")
    proof = InclusionProof(
        log_index=integer(raw.get("logIndex"), "inclusionProof.logIndex"),
        tree_size=integer(raw.get("treeSize"), "inclusionProof.treeSize"),
        root_hash=_hex(raw.get("rootHash"), "inclusionProof.rootHash"),
        hashes=tuple(_hex(h, "inclusionProof.hashes[]") for h in hashes),
        checkpoint=text(raw.get("checkpoint"), "inclusionProof.checkpoint"),
    )
    if len(proof.root_hash) != 32 or any(len(h) != 32 for h in proof.hashes):
        raise InputError("inclusionProof: found hashes that are not 32 bytes, expected sha256")
    return proof


@dataclass(frozen=True)
class LogLookup:
    """What to fetch from Rekor for one signature: by uuid, log index or artifact sha256."""

    by: Literal["uuid", "logIndex", "hash"]
    value: str


@dataclass(frozen=True)
class SetBundle:
    """cosign's `dev.sigstore.cosign/bundle` annotation: a Rekor SET and what it signs."""

    signed_entry_timestamp: bytes
    body: bytes
    integrated_time: int
    log_index: int
    log_id: str

    @classmethod
    def from_annotation(cls, raw: str) -> SetBundle:
        try:
            document = load_json(raw, "cosign bundle")
        except InputError:
            raise InputError("cosign bundle: found invalid JSON, expected an object") from None
        doc = mapping(document, "cosign bundle")
        payload = mapping(doc.get("Payload"), "cosign bundle Payload")
        log_id = text(payload.get("logID"), "cosign bundle logID").lower()
        try:
            bytes.fromhex(log_id)
        except ValueError:
            raise InputError(f"cosign bundle logID: found {log_id!r:.80}, expected hex") from None
        return cls(
            signed_entry_timestamp=b64decode(
                doc.get("SignedEntryTimestamp"), "cosign bundle SignedEntryTimestamp"
            ),
            body=b64decode(payload.get("body"), "cosign bundle body"),
            integrated_time=integer(payload.get("integratedTime"), "cosign bundle integratedTime"),
            log_index=integer(payload.get("logIndex"), "cosign bundle logIndex"),
            log_id=log_id,
        )


def lookup_for(signature: Signature) -> LogLookup | None:
    """The Rekor lookup that would complete this signature's log evidence, if any."""
    if isinstance(signature, BundleSignature):
        return None
    raw_bundle = signature.annotations.get(BUNDLE_ANNOTATION)
    if raw_bundle:
        try:
            return LogLookup("logIndex", str(SetBundle.from_annotation(raw_bundle).log_index))
        except InputError:
            return None  # a broken SET is a failure; no lookup will repair it
    if isinstance(signature, CosignAttestation):
        try:
            envelope = load_json(signature.payload, "dsse envelope")
            statement = base64.b64decode(envelope["payload"], validate=True)
        except (ValueError, KeyError, TypeError, InputError):
            return None
        return LogLookup("hash", sha256_hex(statement))
    return LogLookup("hash", sha256_hex(signature.payload))


def needed_log_lookups(
    signatures: Sequence[Signature], *, log_required: bool = True
) -> list[LogLookup]:
    """For each signature whose log evidence is only a SET, or absent, what to fetch from Rekor.

    SET bundles name their log index; signatures without a bundle are found by the sha256 of
    their payload. Sigstore bundles carry their own evidence. Duplicates are dropped. When the
    policy does not require log evidence (`log_required=False`), key-based signatures need no
    lookup; keyless ones always do, since a certificate outlives its minutes only in the log.
    """
    seen: dict[LogLookup, None] = {}
    for signature in signatures:
        keyless = isinstance(signature, BundleSignature) or bool(
            signature.annotations.get(CERTIFICATE_ANNOTATION)
        )
        if not log_required and not keyless:
            continue
        lookup = lookup_for(signature)
        if lookup is not None:
            seen.setdefault(lookup)
    return list(seen)
