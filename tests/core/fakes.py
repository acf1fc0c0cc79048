"""A small self-made Sigstore instance for tests: Fulcio-like CA, CT log, Rekor log.

It issues Fulcio-profile leaf certificates (empty subject, critical SAN, code signing, Fulcio
extensions, an embedded SCT over the precertificate), signs cosign layers with them, writes
SET bundles and Rekor API answers with a real Merkle inclusion proof and signed checkpoint,
and describes itself as a trusted_root.json. Every key is generated per test run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from service.core import CosignAttestation, CosignSignature, TrustRoot

SIGNED_AT = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ACTIONS = "https://token.actions.githubusercontent.com"
FULCIO = "1.3.6.1.4.1.57264.1"
SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def pem_public(key: ec.EllipticCurvePublicKey) -> str:
    return key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der_utf8(value: str) -> bytes:
    raw = value.encode()
    assert len(raw) < 128
    return bytes([0x0C, len(raw)]) + raw


def simple_signing(image_digest: str, reference: str = "registry.example/app") -> bytes:
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


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node(a: bytes, b: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + a + b).digest()


def merkle_tree_hash(leaves: list[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return _node(merkle_tree_hash(leaves[:k]), merkle_tree_hash(leaves[k:]))


def merkle_path(index: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]) over leaf hashes."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*merkle_path(index, leaves[:k]), merkle_tree_hash(leaves[k:])]
    return [*merkle_path(index - k, leaves[k:]), merkle_tree_hash(leaves[:k])]


@dataclass
class FakeSigstore:
    """One private Sigstore instance; `trust()` is its trusted root."""

    valid_from: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    name: str = "fake-fulcio"

    def __post_init__(self) -> None:
        start = self.valid_from
        root_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test.invalid"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-root"),
            ]
        )
        inter_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "test.invalid"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{self.name}-intermediate"),
            ]
        )
        root_pub = self.root_key.public_key()
        inter_pub = self.intermediate_key.public_key()
        self.root_cert = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_pub), critical=False)
            .sign(self.root_key, hashes.SHA384())
        )
        self.intermediate_cert = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(root_name)
            .public_key(inter_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_pub), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pub), critical=False
            )
            .sign(self.root_key, hashes.SHA384())
        )

    # -- identities ------------------------------------------------------------------------

    @property
    def rekor_log_id(self) -> str:
        return hashlib.sha256(spki(self.rekor_key.public_key())).hexdigest()

    @property
    def ct_log_id(self) -> bytes:
        return hashlib.sha256(spki(self.ct_key.public_key())).digest()

    def trusted_root_json(self) -> bytes:
        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            der = spki(key.public_key())
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(der),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": self.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ")},
                },
                "logId": {"keyId": b64(hashlib.sha256(der).digest())},
            }

        return json.dumps(
            {
                "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
                "tlogs": [log(self.rekor_key, "https://rekor.test.invalid")],
                "certificateAuthorities": [
                    {
                        "subject": {"organization": "test.invalid", "commonName": self.name},
                        "uri": f"https://{self.name}.test.invalid",
                        "certChain": {
                            "certificates": [
                                {"rawBytes": b64(c.public_bytes(Encoding.DER))}
                                for c in (self.intermediate_cert, self.root_cert)
                            ]
                        },
                        "validFor": {"start": self.valid_from.strftime("%Y-%m-%dT%H:%M:%SZ")},
                    }
                ],
                "ctlogs": [log(self.ct_key, "https://ct.test.invalid")],
                "timestampAuthorities": [],
            }
        ).encode()

    def trust(self) -> TrustRoot:
        return TrustRoot.from_json(self.trusted_root_json())

    # -- certificates ----------------------------------------------------------------------

    def issue(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        san: str,
        issuer: str = ACTIONS,
        extensions: Mapping[int, str] | None = None,
        not_before: datetime = SIGNED_AT - timedelta(minutes=1),
        lifetime: timedelta = timedelta(minutes=10),
        sct: bool = True,
    ) -> x509.Certificate:
        """A Fulcio-profile leaf for `key`, with an embedded SCT from the fake CT log."""
        general: x509.GeneralName = (
            x509.RFC822Name(san)
            if "@" in san and "://" not in san
            else x509.UniformResourceIdentifier(san)
        )
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_cert.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(not_before)
            .not_valid_after(not_before + lifetime)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([general]), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO}.1"), issuer.encode()),
                critical=False,
            )
            .add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO}.8"), der_utf8(issuer)),
                critical=False,
            )
        )
        for number, value in (extensions or {}).items():
            raw = value.encode() if number <= 6 else der_utf8(value)
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO}.{number}"), raw),
                critical=False,
            )
        if not sct:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        precert = builder.sign(self.intermediate_key, hashes.SHA256())
        tbs = precert.tbs_certificate_bytes
        millis = int(not_before.timestamp() * 1000)
        issuer_hash = hashlib.sha256(spki(self.intermediate_key.public_key())).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", 0)
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        one = (
            bytes([0])
            + self.ct_log_id
            + struct.pack(">Q", millis)
            + struct.pack(">H", 0)
            + bytes([4, 3])
            + struct.pack(">H", len(signature))
            + signature
        )
        tls_list = struct.pack(">H", len(one) + 2) + struct.pack(">H", len(one)) + one
        octet = bytes([0x04]) + _der_length(len(tls_list)) + tls_list
        cert = builder.add_extension(
            x509.UnrecognizedExtension(SCT_OID, octet), critical=False
        ).sign(self.intermediate_key, hashes.SHA256())
        assert cert.tbs_precertificate_bytes == tbs
        return cert

    # -- Rekor -----------------------------------------------------------------------------

    def set_for(self, body: bytes, integrated_time: int, log_index: int) -> bytes:
        canonical = rfc8785.dumps(
            {
                "body": b64(body),
                "integratedTime": integrated_time,
                "logID": self.rekor_log_id,
                "logIndex": log_index,
            }
        )
        return self.rekor_key.sign(canonical, ec.ECDSA(hashes.SHA256()))

    def bundle_annotation(
        self, body: bytes, integrated_time: int, log_index: int, set_: bytes | None = None
    ) -> str:
        return json.dumps(
            {
                "SignedEntryTimestamp": b64(
                    set_ if set_ is not None else self.set_for(body, integrated_time, log_index)
                ),
                "Payload": {
                    "body": b64(body),
                    "integratedTime": integrated_time,
                    "logIndex": log_index,
                    "logID": self.rekor_log_id,
                },
            }
        )

    def rekor_response(
        self,
        body: bytes,
        integrated_time: int,
        log_index: int,
        *,
        tree_size: int = 7,
        with_set: bool = True,
    ) -> dict[str, Any]:
        """What `GET /api/v1/log/entries?logIndex=N` answers, with a real inclusion proof."""
        leaves = [_leaf_hash(f"other entry {i}".encode()) for i in range(tree_size)]
        position = log_index % tree_size
        leaves[position] = _leaf_hash(body)
        root = merkle_tree_hash(leaves)
        proof = merkle_path(position, leaves)
        origin = "rekor.test.invalid - 1234"
        note = f"{origin}\n{tree_size}\n{b64(root)}\n"
        signature = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        hint = bytes.fromhex(self.rekor_log_id)[:4]
        checkpoint = f"{note}\n\u2014 rekor.test.invalid {b64(hint + signature)}\n"
        verification: dict[str, Any] = {
            "inclusionProof": {
                "checkpoint": checkpoint,
                "hashes": [h.hex() for h in proof],
                "logIndex": position,
                "rootHash": root.hex(),
                "treeSize": tree_size,
            }
        }
        if with_set:
            verification["signedEntryTimestamp"] = b64(
                self.set_for(body, integrated_time, log_index)
            )
        uuid = "24296fb24b8ad77a" + _leaf_hash(body).hex()
        return {
            uuid: {
                "body": b64(body),
                "integratedTime": integrated_time,
                "logID": self.rekor_log_id,
                "logIndex": log_index,
                "verification": verification,
            }
        }


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _der_length(n: int) -> bytes:
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def hashedrekord_body(payload: bytes, signature: bytes, signer_pem: bytes) -> bytes:
    return json.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": {
                    "hash": {"algorithm": "sha256", "value": hashlib.sha256(payload).hexdigest()}
                },
                "signature": {"content": b64(signature), "publicKey": {"content": b64(signer_pem)}},
            },
        },
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True)
class Signed:
    """A keyless cosign layer made by `keyless_layer`, with what went into it."""

    layer: CosignSignature
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    body: bytes
    integrated_time: int
    log_index: int


def keyless_layer(
    fake: FakeSigstore,
    image_digest: str,
    *,
    san: str = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
    issuer: str = ACTIONS,
    extensions: Mapping[int, str] | None = None,
    signed_at: datetime = SIGNED_AT,
    not_before: datetime | None = None,
    log_index: int = 4242,
    bundle: bool = True,
    payload: bytes | None = None,
) -> Signed:
    """A keyless cosign signature layer as `cosign sign` writes it (cert, chain, SET bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = fake.issue(
        key,
        san=san,
        issuer=issuer,
        extensions=extensions,
        not_before=not_before or signed_at - timedelta(minutes=1),
    )
    payload = payload if payload is not None else simple_signing(image_digest)
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    cert_pem = cert.public_bytes(Encoding.PEM)
    body = hashedrekord_body(payload, signature, cert_pem)
    integrated = int(signed_at.timestamp())
    annotations = {
        "dev.cosignproject.cosign/signature": b64(signature),
        "dev.sigstore.cosign/certificate": cert_pem.decode(),
        "dev.sigstore.cosign/chain": (
            fake.intermediate_cert.public_bytes(Encoding.PEM)
            + fake.root_cert.public_bytes(Encoding.PEM)
        ).decode(),
    }
    if bundle:
        annotations["dev.sigstore.cosign/bundle"] = fake.bundle_annotation(
            body, integrated, log_index
        )
    layer = CosignSignature(
        payload=payload,
        annotations=annotations,
        media_type="application/vnd.dev.cosign.simplesigning.v1+json",
        layer_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
        source="fake",
    )
    return Signed(layer, cert, key, body, integrated, log_index)


def dsse_attestation(
    fake: FakeSigstore, image_digest: str, *, subject_digest: str | None = None
) -> CosignAttestation:
    """A keyless cosign attestation (DSSE in-toto statement) with a dsse/0.0.1 SET bundle."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = fake.issue(
        key, san="https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"
    )
    statement = json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [
                {
                    "name": "registry.example/app",
                    "digest": {"sha256": (subject_digest or image_digest).split(":")[1]},
                }
            ],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {},
        }
    ).encode()
    payload_type = "application/vnd.in-toto+json"
    pae = b"DSSEv1 %d %s %d %s" % (
        len(payload_type),
        payload_type.encode(),
        len(statement),
        statement,
    )
    signature = key.sign(pae, ec.ECDSA(hashes.SHA256()))
    envelope = json.dumps(
        {
            "payloadType": payload_type,
            "payload": b64(statement),
            "signatures": [{"keyid": "", "sig": b64(signature)}],
        }
    ).encode()
    cert_pem = cert.public_bytes(Encoding.PEM)
    body = json.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(envelope).hexdigest(),
                },
                "payloadHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(statement).hexdigest(),
                },
                "signatures": [{"signature": b64(signature), "verifier": b64(cert_pem)}],
            },
        }
    ).encode()
    integrated = int(SIGNED_AT.timestamp())
    return CosignAttestation(
        payload=envelope,
        annotations={
            "dev.cosignproject.cosign/signature": "",
            "dev.sigstore.cosign/certificate": cert_pem.decode(),
            "dev.sigstore.cosign/bundle": fake.bundle_annotation(body, integrated, 99),
        },
        media_type="application/vnd.dsse.envelope.v1+json",
        layer_digest="sha256:" + hashlib.sha256(envelope).hexdigest(),
        source="fake",
    )
