"""A Fulcio-style certificate authority with a CT log that embeds SCTs (RFC 6962).

The CA has a root and an intermediate (ECDSA P-384) and issues short-lived code-signing leaf
certificates for any identity, with Fulcio's OIDC extensions, as Fulcio does after an OIDC
login. Each leaf carries an embedded SCT: the CT log's signature over the precertificate entry
(issuer key hash + TBSCertificate without the SCT extension). For negative tests a leaf can be
issued without an SCT, with an SCT whose signature does not verify, or with an SCT from another
CT log; a second `CertificateAuthority` is "another CA".
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from tests.sigstore_local.encoding import (
    PrivateKey,
    PublicKey,
    der_octet_string,
    der_utf8,
    public_key_of,
    spki,
)

ACTIONS = "https://token.actions.githubusercontent.com"
FULCIO = "1.3.6.1.4.1.57264.1"
SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")
LEAF_LIFETIME = timedelta(minutes=10)

# Fulcio extension numbers (the last arc under 1.3.6.1.4.1.57264.1). 1 to 6 hold the raw string
# (legacy, GitHub-specific); 8 and later hold a DER UTF8String.
OIDC_ISSUER_V1 = 1
GITHUB_WORKFLOW_TRIGGER = 2
GITHUB_WORKFLOW_SHA = 3
GITHUB_WORKFLOW_NAME = 4
GITHUB_WORKFLOW_REPOSITORY = 5
GITHUB_WORKFLOW_REF = 6
OIDC_ISSUER_V2 = 8
BUILD_SIGNER_URI = 9
BUILD_SIGNER_DIGEST = 10
RUNNER_ENVIRONMENT = 11
SOURCE_REPOSITORY_URI = 12
SOURCE_REPOSITORY_DIGEST = 13
SOURCE_REPOSITORY_REF = 14
SOURCE_REPOSITORY_IDENTIFIER = 15
SOURCE_REPOSITORY_OWNER_URI = 16
SOURCE_REPOSITORY_OWNER_IDENTIFIER = 17
BUILD_CONFIG_URI = 18
BUILD_CONFIG_DIGEST = 19
BUILD_TRIGGER = 20
RUN_INVOCATION_URI = 21
SOURCE_REPOSITORY_VISIBILITY = 22

SctMode = bool | Literal["bad"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def p256() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def p384() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def fulcio_extension(number: int, value: str) -> x509.UnrecognizedExtension:
    """Fulcio extension 1.3.6.1.4.1.57264.1.<number>, encoded as Fulcio encodes that number."""
    raw = value.encode() if number <= 6 else der_utf8(value)
    return x509.UnrecognizedExtension(ObjectIdentifier(f"{FULCIO}.{number}"), raw)


def github_claims(
    repository: str = "acme/app",
    *,
    workflow: str = ".github/workflows/release.yml",
    ref: str = "refs/heads/main",
    sha: str = "0123456789abcdef0123456789abcdef01234567",
    trigger: str = "push",
    build_repository: str | None = None,
    build_ref: str | None = None,
    build_sha: str | None = None,
) -> dict[int, str]:
    """The extensions Fulcio writes for a GitHub Actions token (legacy and V2 forms).

    `build_*` describe a reusable workflow in another repository: the build signer is then that
    workflow, while the source repository stays `repository`.
    """
    server = "https://github.com"
    build_repo = build_repository or repository
    signer = f"{server}/{build_repo}/{workflow}@{build_ref or ref}"
    return {
        GITHUB_WORKFLOW_TRIGGER: trigger,
        GITHUB_WORKFLOW_SHA: sha,
        GITHUB_WORKFLOW_NAME: "release",
        GITHUB_WORKFLOW_REPOSITORY: repository,
        GITHUB_WORKFLOW_REF: ref,
        BUILD_SIGNER_URI: signer,
        BUILD_SIGNER_DIGEST: build_sha or sha,
        RUNNER_ENVIRONMENT: "github-hosted",
        SOURCE_REPOSITORY_URI: f"{server}/{repository}",
        SOURCE_REPOSITORY_DIGEST: sha,
        SOURCE_REPOSITORY_REF: ref,
        SOURCE_REPOSITORY_IDENTIFIER: "123456",
        SOURCE_REPOSITORY_OWNER_URI: f"{server}/{repository.split('/', maxsplit=1)[0]}",
        SOURCE_REPOSITORY_OWNER_IDENTIFIER: "654321",
        BUILD_CONFIG_URI: f"{server}/{repository}/{workflow}@{ref}",
        BUILD_CONFIG_DIGEST: sha,
        BUILD_TRIGGER: trigger,
        RUN_INVOCATION_URI: f"{server}/{repository}/actions/runs/1/attempts/1",
        SOURCE_REPOSITORY_VISIBILITY: "public",
    }


def signed_certificate_timestamp(
    ct_key: ec.EllipticCurvePrivateKey,
    *,
    tbs_precertificate: bytes,
    issuer_key: PublicKey,
    timestamp: datetime,
    valid: bool = True,
) -> bytes:
    """One serialized v1 SCT for a precertificate entry (RFC 6962 section 3.2).

    The signature covers version, signature type, timestamp, entry type (precert_entry),
    sha256 of the issuer's SPKI, the TBSCertificate (u24 length) and empty extensions. With
    `valid=False` it covers another issuer key hash, so it parses but does not verify.
    """
    millis = int(timestamp.timestamp() * 1000)
    issuer_hash = hashlib.sha256(spki(issuer_key)).digest()
    if not valid:
        issuer_hash = hashlib.sha256(b"not the issuer" + issuer_hash).digest()
    signed = (
        struct.pack(">BBQH", 0, 0, millis, 1)
        + issuer_hash
        + len(tbs_precertificate).to_bytes(3, "big")
        + tbs_precertificate
        + struct.pack(">H", 0)
    )
    signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
    log_id = hashlib.sha256(spki(ct_key.public_key())).digest()
    # version v1(0), log id, timestamp, no extensions, sha256(4)/ecdsa(3), signature<u16>
    return (
        bytes([0])
        + log_id
        + struct.pack(">QH", millis, 0)
        + bytes([4, 3])
        + struct.pack(">H", len(signature))
        + signature
    )


def sct_list_extension(scts: list[bytes]) -> x509.UnrecognizedExtension:
    """The X.509 SCT list extension: an OCTET STRING around a TLS SCT list."""
    body = b"".join(struct.pack(">H", len(s)) + s for s in scts)
    return x509.UnrecognizedExtension(
        SCT_OID, der_octet_string(struct.pack(">H", len(body)) + body)
    )


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


def _signing_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _name(organization: str, common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def subject_alternative_name(san: str) -> x509.GeneralName:
    """An email SAN for `user@host`, a URI SAN for anything with a scheme (workflow identities)."""
    if "@" in san and "://" not in san:
        return x509.RFC822Name(san)
    return x509.UniformResourceIdentifier(san)


@dataclass
class CertificateAuthority:
    """A Fulcio-like CA: root and intermediate certificates, the keys, and its CT log key.

    `root_cert` and `intermediate_cert` are plain attributes: a test may swap them to build a
    trusted root that names other certificates than the ones that sign.
    """

    name: str = "sigstore-local"
    valid_from: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    root_key: ec.EllipticCurvePrivateKey = field(default_factory=p384)
    intermediate_key: ec.EllipticCurvePrivateKey = field(default_factory=p384)
    ct_key: ec.EllipticCurvePrivateKey = field(default_factory=p256)
    clock: Callable[[], datetime] = utcnow
    root_cert: x509.Certificate = field(init=False, repr=False)
    intermediate_cert: x509.Certificate = field(init=False, repr=False)

    def __post_init__(self) -> None:
        root_name = _name("sigstore.local", f"{self.name}-root")
        inter_name = _name("sigstore.local", f"{self.name}-intermediate")
        root_pub = self.root_key.public_key()
        inter_pub = self.intermediate_key.public_key()
        end = self.valid_from + timedelta(days=3650)
        self.root_cert = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(root_pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.valid_from)
            .not_valid_after(end)
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
            .not_valid_before(self.valid_from)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_pub), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(root_pub), critical=False
            )
            .sign(self.root_key, hashes.SHA384())
        )

    @property
    def ct_log_id(self) -> bytes:
        """The CT log's id: sha256 of its DER public key (what an SCT names)."""
        return hashlib.sha256(spki(self.ct_key.public_key())).digest()

    @property
    def chain(self) -> list[x509.Certificate]:
        """Intermediate then root, as Fulcio returns them after the leaf."""
        return [self.intermediate_cert, self.root_cert]

    def chain_pem(self) -> str:
        """The `dev.sigstore.cosign/chain` annotation value: intermediate then root, PEM."""
        return b"".join(c.public_bytes(Encoding.PEM) for c in self.chain).decode()

    def issue(
        self,
        key: PrivateKey | PublicKey,
        *,
        san: str,
        issuer: str | None = ACTIONS,
        extensions: Mapping[int, str] | None = None,
        not_before: datetime | None = None,
        lifetime: timedelta = LEAF_LIFETIME,
        sct: SctMode = True,
        ct_key: ec.EllipticCurvePrivateKey | None = None,
    ) -> x509.Certificate:
        """A Fulcio-profile leaf for `key` (a private key is taken for its public half).

        Empty subject, critical SAN, digitalSignature, EKU codeSigning, the OIDC issuer in
        both extension forms (1.1 raw, 1.8 DER) unless `issuer` is None, `extensions` keyed
        by Fulcio extension number, valid from `not_before` (default: the CA clock) for
        `lifetime`. `sct`: True embeds a valid SCT from `ct_key` (default: the CA's CT log),
        False none, "bad" one whose signature does not verify.
        """
        subject_key = public_key_of(key)
        start = (not_before or self.clock()).replace(microsecond=0)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate_cert.subject)
            .public_key(subject_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + lifetime)
            .add_extension(_signing_usage(), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([subject_alternative_name(san)]), critical=True
            )
        )
        if issuer is not None:
            builder = builder.add_extension(
                fulcio_extension(OIDC_ISSUER_V1, issuer), critical=False
            ).add_extension(fulcio_extension(OIDC_ISSUER_V2, issuer), critical=False)
        for number, value in sorted((extensions or {}).items()):
            builder = builder.add_extension(fulcio_extension(number, value), critical=False)
        if sct is False:
            return builder.sign(self.intermediate_key, hashes.SHA256())
        # The precertificate is the certificate without its SCT list; CT signs its TBS.
        precert = builder.sign(self.intermediate_key, hashes.SHA256())
        one = signed_certificate_timestamp(
            ct_key or self.ct_key,
            tbs_precertificate=precert.tbs_certificate_bytes,
            issuer_key=self.intermediate_key.public_key(),
            timestamp=start,
            valid=sct is True,
        )
        cert = builder.add_extension(sct_list_extension([one]), critical=False).sign(
            self.intermediate_key, hashes.SHA256()
        )
        assert cert.tbs_precertificate_bytes == precert.tbs_certificate_bytes
        return cert
