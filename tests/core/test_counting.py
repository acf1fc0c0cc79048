"""What counts as a signature, as cosign counts it: `.sig` layers, bundles with a message
signature and cosign's own DSSE signing statement are signatures; `.att` layers and other DSSE
bundles are attestations, which count toward a policy's signers only with
`acceptAttestationsAsSignatures` (`cosign verify` vs `cosign verify-attestation`).

Signed with the local Sigstore instance (tests/sigstore_local), whose log is a real server.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from service.core import ImageResult, policy_from_mapping, verify_image
from service.core.inputs import Signature
from service.core.verify import COSIGN_SIGN_PREDICATE
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.instance import LocalSigstore

POLICY = {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
ATTESTED = {**POLICY, "acceptAttestationsAsSignatures": True}


def new_image() -> str:
    return "sha256:" + secrets.token_hex(32)


def verify(
    sigstore: LocalSigstore, image: str, signatures: Sequence[Signature], policy: Mapping[str, Any]
) -> ImageResult:
    """Offline: every signature here carries its evidence (SET or inclusion proof)."""
    return verify_image(
        image_digest=image,
        signatures=signatures,
        log_entries={},
        policy=policy_from_mapping(policy),
        trust=sigstore.trust(),
        now=datetime.now(UTC),
    )


def test_an_attestation_alone_is_not_a_signature(sigstore_local: LocalSigstore) -> None:
    image = new_image()
    att = sigstore_local.signer.cosign_attestation(image).as_core()
    result = verify(sigstore_local, image, [att], POLICY)
    assert not result.verified
    assert result.reasons[0] == (
        "no signatures found: found 1 attestation, which count as signatures only where the "
        "policy sets acceptAttestationsAsSignatures (as cosign verify-attestation does)"
    )
    (found,) = result.signatures
    assert found.verified and found.role == "attestation"  # it verified, it just does not count
    assert result.signers == ()
    counted = verify(sigstore_local, image, [att], ATTESTED)
    assert counted.verified and counted.signers == (found.signer,)


def test_a_signature_with_an_attestation_verifies_under_either_rule(
    sigstore_local: LocalSigstore,
) -> None:
    image = new_image()
    sig = sigstore_local.signer.cosign_signature(image).as_core()
    att = sigstore_local.signer.cosign_attestation(image).as_core()
    for policy in (POLICY, ATTESTED):
        result = verify(sigstore_local, image, [sig, att], policy)
        assert result.verified, result.reasons
    assert [s.role for s in result.signatures] == ["signature", "attestation"]


def test_the_threshold_counts_signers_of_signatures(sigstore_local: LocalSigstore) -> None:
    """Two signers, one of whom only attested: two signers only where attestations count."""
    image = new_image()
    signer = sigstore_local.signer
    other = signer.identity("https://github.com/acme/app/.github/workflows/b.yml@refs/heads/main")
    sig = signer.cosign_signature(image).as_core()
    att = signer.cosign_attestation(image, identity=other).as_core()
    policy = {
        "identities": [
            {
                "certificateIdentityRegexp": "^https://github\\.com/",
                "certificateOidcIssuer": ACTIONS,
            }
        ],
        "threshold": 2,
    }
    assert not verify(sigstore_local, image, [sig, att], policy).verified
    result = verify(
        sigstore_local, image, [sig, att], {**policy, "acceptAttestationsAsSignatures": True}
    )
    assert result.verified and len(result.signers) == 2


def test_bundle_referrers_count_by_what_they_hold(sigstore_local: LocalSigstore) -> None:
    image = new_image()
    signer = sigstore_local.signer
    message = signer.message_bundle(image).as_core()
    cosign_v3 = signer.dsse_bundle(image, predicate_type=COSIGN_SIGN_PREDICATE).as_core()
    provenance = signer.dsse_bundle(image).as_core()  # SLSA provenance: an attestation
    roles = {}
    for name, bundle in {"message": message, "cosign": cosign_v3, "slsa": provenance}.items():
        result = verify(sigstore_local, image, [bundle], POLICY)
        (found,) = result.signatures
        assert found.verified, (name, found.reasons)
        roles[name] = (found.role, result.verified)
    assert roles == {
        "message": ("signature", True),
        "cosign": ("signature", True),
        "slsa": ("attestation", False),
    }
    assert verify(sigstore_local, image, [provenance], ATTESTED).verified


def test_a_cosign_signing_statement_about_another_image_does_not_count(
    sigstore_local: LocalSigstore,
) -> None:
    """The tampered twin: cosign's signing predicate is a signature only of the image it names."""
    image = new_image()
    elsewhere = sigstore_local.signer.dsse_bundle(
        image, predicate_type=COSIGN_SIGN_PREDICATE, subject_digest=new_image()
    ).as_core()
    result = verify(sigstore_local, image, [elsewhere], POLICY)
    assert not result.verified
    assert {c.name for c in result.signatures[0].checks if not c.passed} == {"image-digest"}


def test_an_attestation_requirement_is_met_by_an_attestation_without_counting_it(
    sigstore_local: LocalSigstore,
) -> None:
    image = new_image()
    sig = sigstore_local.signer.cosign_signature(image).as_core()
    att = sigstore_local.signer.cosign_attestation(image).as_core()
    policy = {**POLICY, "attestations": [{"predicateType": "slsaprovenance1"}]}
    assert verify(sigstore_local, image, [sig, att], policy).verified
    # the requirement is not met by the signature, and an attestation alone is not signed
    assert not verify(sigstore_local, image, [sig], policy).verified
    assert not verify(sigstore_local, image, [att], policy).verified
