"""The CA issues Fulcio-profile certificates whose SCTs verify as RFC 6962 says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.certificate_transparency import LogEntryType
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier

from service.core import CertificateDetails, CoreError, TrustRoot
from service.core.certs import verify_sct
from tests.sigstore_local.ca import (
    ACTIONS,
    FULCIO,
    SOURCE_REPOSITORY_URI,
    CertificateAuthority,
    github_claims,
    p256,
)
from tests.sigstore_local.encoding import der_utf8
from tests.sigstore_local.trust import LogKey, trusted_root_json

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main"


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority(clock=lambda: AT)


@pytest.fixture(scope="module")
def trust(ca: CertificateAuthority) -> TrustRoot:
    rekor = LogKey(p256().public_key(), "http://127.0.0.1:1", ca.valid_from)
    ct = LogKey(ca.ct_key.public_key(), "https://ct.sigstore.local", ca.valid_from)
    return TrustRoot.from_json(trusted_root_json(authorities=[ca], tlogs=[rekor], ctlogs=[ct]))


def extension(cert: x509.Certificate, number: int) -> bytes:
    ext = cert.extensions.get_extension_for_oid(ObjectIdentifier(f"{FULCIO}.{number}"))
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    return ext.value.value


def test_leaf_has_the_fulcio_profile(ca: CertificateAuthority) -> None:
    cert = ca.issue(p256(), san=WORKFLOW, extensions=github_claims())
    assert cert.subject == x509.Name([])
    assert cert.issuer == ca.intermediate_cert.subject
    assert (cert.not_valid_before_utc, cert.not_valid_after_utc) == (AT, AT + timedelta(minutes=10))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [WORKFLOW]
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CODE_SIGNING]
    # legacy extensions hold the raw string, 1.8 and later a DER UTF8String
    assert extension(cert, 1) == ACTIONS.encode()
    assert extension(cert, 8) == der_utf8(ACTIONS)
    assert extension(cert, SOURCE_REPOSITORY_URI) == der_utf8("https://github.com/acme/app")
    details = CertificateDetails.from_certificate(cert)
    assert details.issuer == ACTIONS
    assert details.extensions["githubWorkflowRef"] == "refs/heads/main"
    assert details.extensions["buildSignerUri"] == WORKFLOW
    cert.verify_directly_issued_by(ca.intermediate_cert)
    ca.intermediate_cert.verify_directly_issued_by(ca.root_cert)


def test_email_identity_and_no_issuer(ca: CertificateAuthority) -> None:
    cert = ca.issue(p256(), san="alice@example.com", issuer=None, not_before=AT - timedelta(days=1))
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["alice@example.com"]
    assert CertificateDetails.from_certificate(cert).issuer is None
    assert cert.not_valid_before_utc == AT - timedelta(days=1)


def test_embedded_sct_is_for_the_precertificate(ca: CertificateAuthority, trust: TrustRoot) -> None:
    cert = ca.issue(p256(), san=WORKFLOW)
    (sct,) = cert.extensions.get_extension_for_class(
        x509.PrecertificateSignedCertificateTimestamps
    ).value
    assert sct.entry_type == LogEntryType.PRE_CERTIFICATE
    assert sct.log_id == ca.ct_log_id
    assert sct.timestamp.replace(tzinfo=UTC) == AT
    assert verify_sct(cert, ca.intermediate_cert, trust).endswith("verified")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sct": "bad"}, "no embedded sct verified: .*: invalid signature"),
        ({"sct": False}, "found no embedded sct"),
        ({"ct_key": p256()}, "not a ct log in the trust root"),
    ],
)
def test_broken_scts_fail_the_cores_check(
    ca: CertificateAuthority, trust: TrustRoot, options: dict[str, object], message: str
) -> None:
    cert = ca.issue(p256(), san=WORKFLOW, **options)  # type: ignore[arg-type]
    with pytest.raises(CoreError, match=message):
        verify_sct(cert, ca.intermediate_cert, trust)


def test_every_ca_has_its_own_keys() -> None:
    """Two CAs of the same name ("another CA" in negative tests) differ in keys only."""
    one, two = CertificateAuthority(), CertificateAuthority()
    leaf = two.issue(p256(), san=WORKFLOW)
    assert one.intermediate_cert.subject == two.intermediate_cert.subject
    with pytest.raises(InvalidSignature):
        leaf.verify_directly_issued_by(one.intermediate_cert)
    leaf.verify_directly_issued_by(two.intermediate_cert)
