"""Fulcio certificates: details and extensions, chain validation, embedded SCTs (private API
except `CertificateDetails`)."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.certificate_transparency import LogEntryType, SignatureAlgorithm
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from service.core._util import as_public_key, der_utf8_string, rfc3339, sha256_hex, spki_der
from service.core.errors import CheckError, InputError
from service.core.keys import signature_valid
from service.core.trust import CertificateAuthority, TrustRoot

FULCIO_ARC = "1.3.6.1.4.1.57264.1"
OTHERNAME_SAN = ObjectIdentifier(f"{FULCIO_ARC}.7")

# Fulcio's OID arc 1.3.6.1.4.1.57264.1.x by its camelCase name. 1.1-1.6 hold the raw string;
# 1.8 and later a DER UTF8String. 1.7 is the OtherName SAN type, not an extension.
RAW_EXTENSIONS: Mapping[int, str] = MappingProxyType(
    {
        1: "issuer",
        2: "githubWorkflowTrigger",
        3: "githubWorkflowSha",
        4: "githubWorkflowName",
        5: "githubWorkflowRepository",
        6: "githubWorkflowRef",
    }
)
DER_EXTENSIONS: Mapping[int, str] = MappingProxyType(
    {
        8: "issuer",
        9: "buildSignerUri",
        10: "buildSignerDigest",
        11: "runnerEnvironment",
        12: "sourceRepositoryUri",
        13: "sourceRepositoryDigest",
        14: "sourceRepositoryRef",
        15: "sourceRepositoryIdentifier",
        16: "sourceRepositoryOwnerUri",
        17: "sourceRepositoryOwnerIdentifier",
        18: "buildConfigUri",
        19: "buildConfigDigest",
        20: "buildTrigger",
        21: "runInvocationUri",
        22: "sourceRepositoryVisibilityAtSigning",
    }
)
EXTENSION_NAMES = frozenset(DER_EXTENSIONS.values())
"""The names a policy may constrain under `extensions` (1.8 to 1.22)."""

# Fulcio began embedding SCTs in every certificate with the CA generation that started on
# 2022-04-13; the first Fulcio root (2021-03 to 2022-12) issued certificates without one.
SCT_REQUIRED_FROM = datetime(2022, 4, 13, tzinfo=UTC)


@dataclass(frozen=True)
class CertificateDetails:
    """What a signing certificate says: SANs, OIDC issuer, validity, Fulcio extensions."""

    subject: str
    subject_alternative_names: tuple[str, ...]
    issuer: str | None
    certificate_issuer: str
    not_before: datetime
    not_after: datetime
    serial: str
    extensions: Mapping[str, str]

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> CertificateDetails:
        sans = subject_alternative_names(cert)
        extensions = fulcio_extensions(cert)
        return cls(
            subject=sans[0] if sans else cert.subject.rfc4514_string(),
            subject_alternative_names=tuple(sans),
            issuer=extensions.get("issuer"),
            certificate_issuer=cert.issuer.rfc4514_string(),
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            serial=format(cert.serial_number, "x"),
            extensions=MappingProxyType(extensions),
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "subjectAlternativeNames": list(self.subject_alternative_names),
            "issuer": self.issuer,
            "certificateIssuer": self.certificate_issuer,
            "notBefore": rfc3339(self.not_before),
            "notAfter": rfc3339(self.not_after),
            "serial": self.serial,
            "extensions": dict(self.extensions),
        }


def subject_alternative_names(cert: x509.Certificate) -> list[str]:
    """Every SAN, URIs and emails first (what Fulcio puts there), then Fulcio's OtherName."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names: list[str] = []
    names += ext.get_values_for_type(x509.UniformResourceIdentifier)
    names += ext.get_values_for_type(x509.RFC822Name)
    names += ext.get_values_for_type(x509.DNSName)
    for other in ext.get_values_for_type(x509.OtherName):
        if other.type_id == OTHERNAME_SAN:
            try:
                names.append(der_utf8_string(other.value))
            except InputError:
                continue
    return names


def fulcio_extensions(cert: x509.Certificate) -> dict[str, str]:
    """Fulcio's extensions decoded by name; 1.8 wins over the deprecated 1.1 for `issuer`."""
    raw: dict[str, str] = {}
    der: dict[str, str] = {}
    for ext in cert.extensions:
        dotted = ext.oid.dotted_string
        if not dotted.startswith(FULCIO_ARC + "."):
            continue
        tail = dotted[len(FULCIO_ARC) + 1 :]
        if not tail.isdigit() or not isinstance(ext.value, x509.UnrecognizedExtension):
            continue
        number, value = int(tail), ext.value.value
        if number in RAW_EXTENSIONS:
            raw[RAW_EXTENSIONS[number]] = value.decode("utf-8", errors="replace")
        elif number in DER_EXTENSIONS:
            try:
                der[DER_EXTENSIONS[number]] = der_utf8_string(value)
            except InputError:
                continue
    return {**raw, **der}


def verify_chain(
    leaf: x509.Certificate, trust: TrustRoot, at: datetime
) -> tuple[CertificateAuthority, list[x509.Certificate]]:
    """The Fulcio CA (valid at `at`) the leaf chains to, and the chain above the leaf.

    Path validation uses only certificates from the trust root; a chain shipped with the
    signature is not trusted. The leaf must be a code-signing certificate valid at `at`.
    """
    if not trust.certificate_authorities:
        raise CheckError("found no certificate authorities in the trust root, expected one")
    errors: list[str] = []
    for ca in trust.certificate_authorities:
        if not ca.validity.contains(at):
            errors.append(f"{ca.uri or ca.subject}: not valid at {rfc3339(at)}")
            continue
        ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
            x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
        )
        ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
            x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
        )
        verifier = (
            PolicyBuilder()
            .store(Store([ca.chain[-1]]))
            .time(at)
            .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, list(ca.chain[:-1]))
        except (VerificationError, x509.UnsupportedGeneralNameType, ValueError) as exc:
            errors.append(f"{ca.uri or ca.subject}: {exc}")
            continue
        _require_code_signing(leaf)
        return ca, list(verified.chain[1:])
    raise CheckError(
        "certificate does not chain to a fulcio ca in the trust root: " + "; ".join(errors)
    )


def _require_code_signing(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise CheckError(f"certificate has no {exc.oid._name} extension, expected one") from None
    if not usage.digital_signature:
        raise CheckError("certificate key usage is not digital signature, expected it to be")
    if ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise CheckError("certificate extended key usage lacks code signing, expected it")


def verify_sct(leaf: x509.Certificate, issuer: x509.Certificate, trust: TrustRoot) -> str:
    """Verify the leaf's embedded SCT against a CT log key; returns a detail for the check."""
    try:
        scts = leaf.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        if leaf.not_valid_before_utc < SCT_REQUIRED_FROM:
            return (
                "no embedded sct: certificate issued before "
                f"{SCT_REQUIRED_FROM.date().isoformat()}, when fulcio began embedding them"
            )
        raise CheckError("found no embedded sct in the certificate, expected one") from None
    issuer_key = as_public_key(issuer.public_key(), "issuer certificate")
    issuer_key_hash = bytes.fromhex(sha256_hex(spki_der(issuer_key)))
    tbs = leaf.tbs_precertificate_bytes
    failures: list[str] = []
    for sct in scts:
        log_id = sct.log_id.hex()
        log_key = trust.ct_logs.get(log_id)
        if log_key is None:
            failures.append(f"sct log id {log_id}: not a ct log in the trust root")
            continue
        if sct.entry_type != LogEntryType.PRE_CERTIFICATE:
            failures.append(f"sct log id {log_id}: found an x509 entry, expected a precertificate")
            continue
        if sct.signature_algorithm not in (SignatureAlgorithm.ECDSA, SignatureAlgorithm.RSA):
            failures.append(f"sct log id {log_id}: unsupported signature algorithm")
            continue
        timestamp = sct.timestamp.replace(tzinfo=UTC)
        millis = (timestamp - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
        if not log_key.validity.contains(timestamp):
            failures.append(
                f"sct log id {log_id}: sct time {rfc3339(timestamp)} outside the log key's "
                f"validity {log_key.validity.describe()}"
            )
            continue
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + struct.pack(">H", len(sct.extension_bytes))
            + sct.extension_bytes
        )
        key = log_key.key
        if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
            failures.append(f"sct log id {log_id}: ct log key is not ecdsa or rsa")
            continue
        if signature_valid(key, sct.signature, signed):
            return f"sct from ct log {log_key.base_url or log_id} verified"
        failures.append(f"sct log id {log_id}: invalid signature")
    raise CheckError("no embedded sct verified: " + "; ".join(failures))
