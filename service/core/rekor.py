"""Rekor v1 evidence (private): SETs, Merkle inclusion proofs, signed checkpoints, and whether
an entry's body is the signature being verified.

- SET (inclusion promise): the log's signature over the RFC 8785 canonical JSON of
  `{body, integratedTime, logID, logIndex}`.
- Inclusion proof: RFC 9162 section 2.1.3.2, leaf hash `sha256(0x00 || body)`.
- Checkpoint: a signed note whose body is `origin\\nsize\\nbase64(root)\\n...`; the signature
  line is `— <name> base64(keyhint[4] || signature)` with keyhint the log id's first 4 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime

import rfc8785
from cryptography import x509

from service.core._util import (
    PublicKey,
    as_public_key,
    b64decode,
    from_unix,
    load_json,
    load_pem_certificates,
    load_public_key_pem,
    mapping,
    rfc3339,
    spki_der,
    text,
)
from service.core.errors import CheckError, InputError
from service.core.inputs import InclusionProof, LogEntry
from service.core.keys import signature_valid
from service.core.trust import LogKey, TrustRoot


def log_key(trust: TrustRoot, log_id: str, at: datetime) -> LogKey:
    key = trust.rekor_logs.get(log_id)
    if key is None:
        raise CheckError(f"found log id {log_id}, expected a rekor log in the trust root")
    if not key.validity.contains(at):
        raise CheckError(
            f"log key {log_id[:16]}… not valid at {rfc3339(at)}, valid {key.validity.describe()}"
        )
    return key


def verify_set(
    trust: TrustRoot,
    *,
    signed_entry_timestamp: bytes,
    body: bytes,
    integrated_time: int,
    log_index: int,
    log_id: str,
) -> LogKey:
    """Verify a SET with the trust root's key for `log_id`; returns that key."""
    key = log_key(trust, log_id, from_unix(integrated_time))
    canonical = rfc8785.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "integratedTime": integrated_time,
            "logID": log_id,
            "logIndex": log_index,
        }
    )
    if not signature_valid(key.key, signed_entry_timestamp, canonical):
        raise CheckError(f"signed entry timestamp does not verify with the key of log {log_id}")
    return key


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root(leaf_hash: bytes, index: int, size: int, hashes: tuple[bytes, ...]) -> bytes:
    """The root an inclusion proof gives for `leaf_hash` at `index` in a tree of `size`."""
    if not 0 <= index < size:
        raise CheckError(f"inclusion proof: found index {index}, expected below tree size {size}")
    fn, sn, root = index, size - 1, leaf_hash
    for sibling in hashes:
        if sn == 0:
            raise CheckError("inclusion proof: found more hashes than the tree has levels")
        if fn & 1 or fn == sn:
            root = _node(sibling, root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            root = _node(root, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise CheckError("inclusion proof: found fewer hashes than the tree has levels")
    return root


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    note: bytes
    signatures: tuple[tuple[str, bytes, bytes], ...]  # (name, key hint, signature)

    @classmethod
    def from_text(cls, envelope: str) -> Checkpoint:
        note, sep, block = envelope.partition("\n\n")
        if not sep or not block.endswith("\n"):
            raise CheckError("checkpoint: found no signature block, expected a signed note")
        lines = note.split("\n")
        if len(lines) < 3:
            raise CheckError("checkpoint: found fewer than 3 lines, expected origin, size, root")
        try:
            size = int(lines[1])
            root = base64.b64decode(lines[2], validate=True)
        except (ValueError, binascii.Error):
            raise CheckError("checkpoint: found an invalid size or root hash") from None
        signatures: list[tuple[str, bytes, bytes]] = []
        for line in block[:-1].split("\n"):
            parts = line.split(" ")
            if len(parts) != 3 or parts[0] != "\u2014":
                raise CheckError("checkpoint: found a malformed signature line")
            try:
                raw = base64.b64decode(parts[2], validate=True)
            except (ValueError, binascii.Error):
                raise CheckError("checkpoint: found a signature that is not base64") from None
            if len(raw) < 5:
                raise CheckError("checkpoint: found a signature shorter than 5 bytes")
            signatures.append((parts[1], raw[:4], raw[4:]))
        return cls(lines[0], size, root, (note + "\n").encode(), tuple(signatures))


def verify_inclusion_proof(entry: LogEntry, trust: TrustRoot) -> str:
    """Verify the Merkle proof of `entry` and the checkpoint signature; returns a detail."""
    proof: InclusionProof | None = entry.inclusion_proof
    if proof is None:
        raise CheckError("log entry has no inclusion proof")
    key = log_key(trust, entry.log_id, from_unix(entry.integrated_time))
    leaf = hashlib.sha256(b"\x00" + entry.body).digest()
    root = merkle_root(leaf, proof.log_index, proof.tree_size, proof.hashes)
    if root != proof.root_hash:
        raise CheckError(
            f"inclusion proof gives root {root.hex()}, expected {proof.root_hash.hex()}"
        )
    checkpoint = Checkpoint.from_text(proof.checkpoint)
    if checkpoint.size != proof.tree_size or checkpoint.root_hash != proof.root_hash:
        raise CheckError(
            f"checkpoint is for size {checkpoint.size} root {checkpoint.root_hash.hex()}, "
            f"expected size {proof.tree_size} root {proof.root_hash.hex()}"
        )
    hint = bytes.fromhex(entry.log_id)[:4]
    for _name, key_hint, signature in checkpoint.signatures:
        if key_hint == hint and signature_valid(key.key, signature, checkpoint.note):
            return (
                f"inclusion proof verified for index {proof.log_index} in tree of size "
                f"{proof.tree_size}; checkpoint signed by {checkpoint.origin}"
            )
    raise CheckError(f"checkpoint has no valid signature by log {entry.log_id}")


# -- does the body describe this signature? ------------------------------------------------


@dataclass(frozen=True)
class Material:
    """What the body must match: the signed bytes, signature, and the signer's cert or key."""

    payload_sha256: str
    signature: bytes | None
    certificate: x509.Certificate | None
    key: PublicKey | None
    envelope: bytes | None = None  # the DSSE envelope as stored, for intoto entries


def _same_signer(encoded_pem: object, material: Material, what: str) -> None:
    pem = b64decode(encoded_pem, what)
    if material.certificate is not None:
        try:
            certs = load_pem_certificates(pem, what)
        except InputError:
            raise CheckError(
                f"{what}: found no certificate, expected the signing certificate"
            ) from None
        if certs[0] != material.certificate:
            raise CheckError(f"{what}: found another certificate, expected the signing one")
        return
    if material.key is None:
        raise CheckError(f"{what}: found a signer, expected none")
    try:
        key = load_public_key_pem(pem, what)
    except InputError:
        try:
            key = as_public_key(load_pem_certificates(pem, what)[0].public_key(), what)
        except InputError:
            raise CheckError(f"{what}: found no public key, expected the signing key") from None
    if spki_der(key) != spki_der(material.key):
        raise CheckError(f"{what}: found another public key, expected the signing key")


def _hash_value(obj: object, what: str) -> str:
    h = mapping(obj, what)
    if h.get("algorithm") != "sha256":
        raise CheckError(f"{what}: found algorithm {h.get('algorithm')!r:.20}, expected sha256")
    return text(h.get("value"), f"{what}.value").lower()


def _same_payload(obj: object, what: str, material: Material) -> None:
    """The entry's sha256 of the payload (at `what`) is the material's."""
    digest = _hash_value(obj, what)
    if digest != material.payload_sha256:
        raise CheckError(
            f"log entry is for payload sha256 {digest}, expected {material.payload_sha256}"
        )


def match_body(body: bytes, material: Material) -> str:
    """Check the entry body against the material; returns the entry kind. Raises CheckError."""
    try:
        doc = mapping(load_json(body, "log entry body"), "log entry body")
        kind = f"{doc.get('kind')}/{doc.get('apiVersion')}"
        spec = mapping(doc.get("spec"), "log entry spec")
        if kind in ("hashedrekord/0.0.1", "rekord/0.0.1"):
            _match_rekord(spec, material, kind)
        elif kind == "dsse/0.0.1":
            _match_dsse(spec, material)
        elif kind == "intoto/0.0.1":
            _match_intoto(spec, material)
        elif kind == "intoto/0.0.2":
            _match_intoto_v2(spec, material)
        else:
            raise CheckError(f"log entry kind {kind} is not supported")
    except (ValueError, InputError) as exc:
        raise CheckError(f"log entry body is malformed: {exc}") from None
    return kind


def _match_rekord(spec: dict[str, object], material: Material, kind: str) -> None:
    data = mapping(spec.get("data"), "spec.data")
    _same_payload(data.get("hash"), "spec.data.hash", material)
    sig = mapping(spec.get("signature"), "spec.signature")
    if kind == "rekord/0.0.1" and sig.get("format") != "x509":
        raise CheckError(f"rekord signature format {sig.get('format')!r:.20}, expected x509")
    if b64decode(sig.get("content"), "spec.signature.content") != material.signature:
        raise CheckError("log entry records another signature, expected this one")
    public_key = mapping(sig.get("publicKey"), "spec.signature.publicKey")
    _same_signer(public_key.get("content"), material, "log entry public key")


def _match_dsse(spec: dict[str, object], material: Material) -> None:
    _same_payload(spec.get("payloadHash"), "spec.payloadHash", material)
    signatures = spec.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise CheckError("dsse log entry: found not exactly one signature, expected one")
    entry = mapping(signatures[0], "spec.signatures[0]")
    if b64decode(entry.get("signature"), "spec.signatures[0].signature") != material.signature:
        raise CheckError("log entry records another signature, expected this one")
    _same_signer(entry.get("verifier"), material, "log entry verifier")


def _match_intoto(spec: dict[str, object], material: Material) -> None:
    content = mapping(spec.get("content"), "spec.content")
    _same_payload(content.get("payloadHash"), "spec.content.payloadHash", material)
    if material.envelope is None:
        raise CheckError("intoto log entry for something that is not a dsse envelope")
    envelope_digest = _hash_value(content.get("hash"), "spec.content.hash")
    actual = hashlib.sha256(material.envelope).hexdigest()
    if envelope_digest != actual:
        raise CheckError(f"log entry is for envelope sha256 {envelope_digest}, expected {actual}")
    _same_signer(spec.get("publicKey"), material, "log entry public key")


def _match_intoto_v2(spec: dict[str, object], material: Material) -> None:
    """intoto 0.0.2 stores the envelope: its payload hash, and each signature (base64 of the
    base64 signature) with the signer's PEM (base64). The envelope hash it also records is of
    Rekor's re-serialisation, which cannot be recomputed, so it is not compared (as
    sigstore-js and sigstore-go do)."""
    content = mapping(spec.get("content"), "spec.content")
    _same_payload(content.get("payloadHash"), "spec.content.payloadHash", material)
    envelope = mapping(content.get("envelope"), "spec.content.envelope")
    signatures = envelope.get("signatures")
    if not isinstance(signatures, list) or len(signatures) != 1:
        raise CheckError("intoto log entry: found not exactly one signature, expected one")
    entry = mapping(signatures[0], "spec.content.envelope.signatures[0]")
    inner = b64decode(entry.get("sig"), "spec.content.envelope.signatures[0].sig")
    if b64decode(inner, "spec.content.envelope.signatures[0].sig") != material.signature:
        raise CheckError("log entry records another signature, expected this one")
    _same_signer(entry.get("publicKey"), material, "log entry public key")
