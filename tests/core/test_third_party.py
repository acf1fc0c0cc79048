"""`verify_image` against real third-party cosign signatures, attestations and bundles.

Expected outcomes come from the upstream projects' own tests (see tests/data/third_party/*/
ATTRIBUTION.md and the testdata MANIFEST). Legacy items carry a Rekor SET and no inclusion
proof, and there is no Rekor here, so they verify on the inclusion promise.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from service.core import (
    CosignAttestation,
    ImageResult,
    LogEntry,
    TrustRoot,
    needed_log_lookups,
)
from tests.core import data
from tests.core.data import (
    CONNAISSEUR,
    CONTAINERS_IMAGE,
    COSIGN_BUNDLE,
    COSIGN_BUNDLE_IMAGE,
    GITHUB_ACTIONS,
    GITHUB_OAUTH,
    RATIFY,
    SIGSTORE_RS,
    connaisseur_digest,
    connaisseur_signatures,
    cosign_bundle,
    descriptor_signature,
    dir_image_digest,
    dir_signatures,
    pem,
    production_root,
    slsa_attestations,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
NO_TLOG = {"transparencyLog": {"required": False}}


@pytest.fixture(scope="module")
def trust() -> TrustRoot:
    return production_root()


run = functools.partial(data.run, now=NOW)


def failed_checks(result: ImageResult) -> set[str]:
    return {c.name for s in result.signatures for c in s.checks if not c.passed}


# -- connaisseur -----------------------------------------------------------------------------


def test_connaisseur_keyless_passes_with_issuer_and_subject_regexps(trust: TrustRoot) -> None:
    image = connaisseur_digest("keyless")
    result = run(
        trust,
        image,
        connaisseur_signatures(image),
        {"certificateIdentityRegexp": "philipp", "certificateOidcIssuerRegexp": "github"},
    )
    assert result.verified, result.reasons
    (sig,) = result.signatures
    assert sig.certificate is not None
    assert sig.certificate.subject == "philipp.belitz@securesystems.de"
    assert sig.certificate.issuer == GITHUB_OAUTH
    assert sig.log_entry is not None
    assert sig.log_entry.evidence == "inclusion-promise"
    assert sig.log_entry.log_index == 98235800
    assert {c.name for c in sig.checks} >= {
        "layer-digest",
        "transparency-log",
        "log-entry-match",
        "certificate-validity",
        "certificate-chain",
        "sct",
        "signature",
        "image-digest",
        "identity",
    }


def test_connaisseur_keyless_fails_for_bob_at_google(trust: TrustRoot) -> None:
    image = connaisseur_digest("keyless")
    result = run(
        trust,
        image,
        connaisseur_signatures(image),
        {"certificateIdentity": "bob@gmail.com", "certificateOidcIssuerRegexp": "google"},
    )
    assert not result.verified
    assert failed_checks(result) == {"identity"}
    detail = result.signatures[0].reasons[0]
    assert "signed by philipp.belitz@securesystems.de, expected bob@gmail.com" in detail
    assert (
        "oidc issuer https://github.com/login/oauth, expected a match for regexp google" in detail
    )


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    return {n: pem(CONNAISSEUR / f"{n}.key") for n in ("alice", "bob", "charlie")}


def test_connaisseur_threshold_2_of_alice_bob_passes(
    trust: TrustRoot, keys: dict[str, str]
) -> None:
    image = connaisseur_digest("multi-cosigned-alice-bob-charlie")
    sigs = connaisseur_signatures(image)
    assert len(sigs) == 3
    result = run(
        trust, image, sigs, {"keys": [keys["alice"], keys["bob"]], "threshold": 2, **NO_TLOG}
    )
    assert result.verified, result.reasons
    assert len(result.signers) == 2
    # charlie's layer is there but signed by no policy key
    assert [s.verified for s in result.signatures] == [True, True, False]


def test_connaisseur_threshold_3_of_alice_bob_fails(trust: TrustRoot, keys: dict[str, str]) -> None:
    image = connaisseur_digest("multi-cosigned-alice-bob-charlie")
    result = run(
        trust,
        image,
        connaisseur_signatures(image),
        {"keys": [keys["alice"], keys["bob"]], "threshold": 3, **NO_TLOG},
    )
    assert not result.verified
    assert result.reasons[-1] == (
        "threshold not met: found 2 distinct verified signers, expected at least 3"
    )


def test_connaisseur_threshold_3_with_charlie_passes(
    trust: TrustRoot, keys: dict[str, str]
) -> None:
    image = connaisseur_digest("multi-cosigned-alice-bob-charlie")
    result = run(
        trust,
        image,
        connaisseur_signatures(image),
        {"keys": list(keys.values()), "threshold": 3, **NO_TLOG},
    )
    assert result.verified, result.reasons


def test_connaisseur_alice_only_image(trust: TrustRoot, keys: dict[str, str]) -> None:
    image = connaisseur_digest("multi-cosigned-alice")
    sigs = connaisseur_signatures(image)
    assert run(trust, image, sigs, {"keys": [keys["alice"]], **NO_TLOG}).verified
    requiring_bob = run(trust, image, sigs, {"keys": [keys["bob"]], **NO_TLOG})
    assert not requiring_bob.verified
    assert failed_checks(requiring_bob) == {"signature"}
    assert "does not verify with any policy key (keys[0])" in requiring_bob.reasons[0]


def test_connaisseur_key_signatures_without_log_fail_when_log_required(
    trust: TrustRoot, keys: dict[str, str]
) -> None:
    image = connaisseur_digest("multi-cosigned-alice")
    result = run(trust, image, connaisseur_signatures(image), {"keys": [keys["alice"]]})
    assert not result.verified
    assert failed_checks(result) == {"transparency-log"}
    assert "found no transparency log evidence" in result.reasons[0]


def test_no_signatures(trust: TrustRoot, keys: dict[str, str]) -> None:
    result = run(trust, connaisseur_digest("co-unsigned"), [], {"keys": [keys["alice"]]})
    assert not result.verified
    assert result.reasons == ("no signatures found",)
    assert result.to_dict()["reasons"] == ["no signatures found"]


# -- ratify ----------------------------------------------------------------------------------

RATIFY_POLICY = {"certificateIdentity": "sozercan@gmail.com", "certificateOidcIssuer": GITHUB_OAUTH}


def test_ratify_keyless_passes(trust: TrustRoot) -> None:
    image, sig = descriptor_signature(RATIFY / "successful-keyless-verification")
    result = run(trust, image, [sig], RATIFY_POLICY)
    assert result.verified, result.reasons
    assert result.signatures[0].log_entry is not None
    assert result.signatures[0].log_entry.log_index == 13452680


def test_ratify_failed_keyless_verification_truncated_set(trust: TrustRoot) -> None:
    image, sig = descriptor_signature(RATIFY / "failed-keyless-verification")
    result = run(trust, image, [sig], RATIFY_POLICY)
    assert not result.verified
    assert "transparency-log" in failed_checks(result)
    assert "rekor bundle annotation is malformed" in result.signatures[0].reasons[0]
    # and no Rekor lookup is asked for a broken bundle
    assert needed_log_lookups([sig]) == []


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("valid-hash-256-keysize-2048-rsa-key-akv", "validRSA256PubKey.pem"),
        ("valid-hash-256-keysize-3072-rsa-key", "validRSA384PubKey.pem"),
        ("valid-hash-256-curve-p256-ecdsa-key-akv", "validECDSAP256PubKey.pem"),
        ("valid-hash-256-curve-p384-ecdsa-key", "validECDSAP384PubKey.pem"),
    ],
)
def test_ratify_key_signed(trust: TrustRoot, case: str, key: str) -> None:
    image, sig = descriptor_signature(RATIFY / case)
    result = run(trust, image, [sig], {"keys": [pem(RATIFY / key)], **NO_TLOG})
    assert result.verified, result.reasons
    # the same payload under every other key fails on the signature check
    others = [pem(p) for p in sorted(RATIFY.glob("valid*.pem")) if p.name != key]
    wrong = run(trust, image, [sig], {"keys": others, **NO_TLOG})
    assert failed_checks(wrong) == {"signature"}


# -- sigstore-rs -----------------------------------------------------------------------------


def test_sigstore_rs_kubewarden_2021_rekord_against_fulcio_v1_root(trust: TrustRoot) -> None:
    image, sig = descriptor_signature(
        SIGSTORE_RS / "kubewarden-disallow-service-nodeport-keyless-2021"
    )
    result = run(trust, image, [sig], {"certificateIdentity": "flavio@castelli.me"})
    assert result.verified, result.reasons
    checks = {c.name: c for c in result.signatures[0].checks}
    assert checks["log-entry-match"].detail.startswith("rekord/0.0.1")
    assert "before 2022-04-13" in checks["sct"].detail
    # the cert has no OIDC issuer: requiring one fails on identity
    with_issuer = run(
        trust,
        image,
        [sig],
        {"certificateIdentity": "flavio@castelli.me", "certificateOidcIssuer": GITHUB_OAUTH},
    )
    assert failed_checks(with_issuer) == {"identity"}
    assert "oidc issuer absent, expected https://github.com/login/oauth" in with_issuer.reasons[0]


def test_sigstore_rs_suse_rsa_key(trust: TrustRoot) -> None:
    case = SIGSTORE_RS / "suse-sle-micro-5.0-toolbox-rsa-key"
    image, sig = descriptor_signature(case)
    assert run(trust, image, [sig], {"keys": [pem(case / "key.pub")], **NO_TLOG}).verified
    busybox = pem(SIGSTORE_RS / "busybox-key-no-bundle" / "key.pub")
    assert failed_checks(run(trust, image, [sig], {"keys": [busybox], **NO_TLOG})) == {"signature"}


def test_sigstore_rs_busybox_p256_key(trust: TrustRoot) -> None:
    case = SIGSTORE_RS / "busybox-key-no-bundle"
    image, sig = descriptor_signature(case)
    assert run(trust, image, [sig], {"keys": [pem(case / "key.pub")], **NO_TLOG}).verified
    # no bundle: the orchestration is asked to search Rekor by the payload's sha256
    (lookup,) = needed_log_lookups([sig])
    assert lookup.by == "hash"
    assert "sha256:" + lookup.value == sig.layer_digest


# -- containers/image ------------------------------------------------------------------------


def test_containers_image_fulcio_rekor_valid(trust: TrustRoot) -> None:
    case = CONTAINERS_IMAGE / "dir-img-cosign-fulcio-rekor-valid"
    result = run(
        trust,
        dir_image_digest(case),
        dir_signatures(case),
        {"certificateIdentity": "mitr@redhat.com", "certificateOidcIssuer": GITHUB_OAUTH},
    )
    assert result.verified, result.reasons


def test_containers_image_key_rekor_valid(trust: TrustRoot) -> None:
    case = CONTAINERS_IMAGE / "dir-img-cosign-key-rekor-valid"
    image, sigs = dir_image_digest(case), dir_signatures(case)
    result = run(trust, image, sigs, {"keys": [pem(CONTAINERS_IMAGE / "cosign2.pub")]})
    assert result.verified, result.reasons
    log = result.signatures[0].log_entry
    assert log is not None and log.log_index == 11608800 and log.evidence == "inclusion-promise"
    wrong = run(trust, image, sigs, {"keys": [pem(CONTAINERS_IMAGE / "cosign.pub")]})
    assert failed_checks(wrong) == {"signature"}


@pytest.mark.parametrize(
    ("case", "verified", "failing"),
    [
        ("dir-img-cosign-valid", True, set()),
        ("dir-img-cosign-valid-2", True, set()),
        ("dir-img-cosign-mixed", True, {"signature"}),  # one unknown-key layer, one good one
        ("dir-img-cosign-valid-with-tag", True, set()),
        ("dir-img-cosign-modified-manifest", False, {"image-digest"}),
        ("dir-img-cosign-manifest-digest-error", False, {"image-digest"}),
        ("dir-img-cosign-other-attachment", False, {"signature", "image-digest"}),
    ],
)
def test_containers_image_key_cases(
    trust: TrustRoot, case: str, verified: bool, failing: set[str]
) -> None:
    directory = CONTAINERS_IMAGE / case
    result = run(
        trust,
        dir_image_digest(directory),
        dir_signatures(directory),
        {"keys": [pem(CONTAINERS_IMAGE / "cosign.pub")], **NO_TLOG},
    )
    assert result.verified is verified, result.reasons
    assert failed_checks(result) == failing


def test_containers_image_unknown_key_signature(trust: TrustRoot) -> None:
    directory = CONTAINERS_IMAGE / "dir-img-cosign-valid"
    image = dir_image_digest(directory)
    (good,) = dir_signatures(directory)
    raw = (CONTAINERS_IMAGE / "unknown-cosign-key.signature").read_bytes()
    obj = json.loads(raw[raw.index(b"{") :])
    payload = base64.b64decode(obj["payload"])
    unknown = type(good)(
        payload=payload,
        annotations=obj["annotations"],
        media_type=obj["mimeType"],
        layer_digest=good.layer_digest
        if payload == good.payload
        else "sha256:" + hashlib.sha256(payload).hexdigest(),
        source="unknown",
    )
    for key in ("cosign.pub", "cosign2.pub"):
        result = run(trust, image, [unknown], {"keys": [pem(CONTAINERS_IMAGE / key)], **NO_TLOG})
        assert not result.verified
        assert "signature" in failed_checks(result)


def test_containers_image_pki_cert_does_not_chain_to_fulcio(trust: TrustRoot) -> None:
    case = CONTAINERS_IMAGE / "dir-img-cosign-pki-valid"
    result = run(
        trust,
        dir_image_digest(case),
        dir_signatures(case),
        {"certificateIdentity": "qiwan@redhat.com", "certificateOidcIssuerRegexp": ".*"},
    )
    assert not result.verified
    assert "certificate-chain" in failed_checks(result)


def test_containers_image_unsigned(trust: TrustRoot) -> None:
    case = CONTAINERS_IMAGE / "dir-img-unsigned"
    assert dir_signatures(case) == []
    result = run(
        trust, dir_image_digest(case), [], {"keys": [pem(CONTAINERS_IMAGE / "cosign.pub")]}
    )
    assert result.reasons == ("no signatures found",)


# -- slsa-verifier attestations --------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "kind"),
    [("v1.4.0", "intoto/0.0.1"), ("v2.0.0", "dsse/0.0.1"), ("v2.1.0", "dsse/0.0.1")],
)
def test_slsa_verifier_attestations(trust: TrustRoot, version: str, kind: str) -> None:
    image, atts = slsa_attestations(version)
    identity = (
        "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
        f"generator_container_slsa3.yml@refs/tags/{version}"
    )
    policy = {
        "certificateIdentity": identity,
        "certificateOidcIssuer": GITHUB_ACTIONS,
        "acceptAttestationsAsSignatures": True,  # slsa-verifier verifies the attestation
    }
    result = run(trust, image, atts, policy)
    assert result.verified, result.reasons
    # As `cosign verify` says of this image: it has attestations, no signatures.
    plain = {k: v for k, v in policy.items() if k != "acceptAttestationsAsSignatures"}
    unsigned = run(trust, image, atts, plain)
    assert not unsigned.verified and unsigned.reasons[0].startswith("no signatures found")
    assert result.signatures[0].role == "attestation"
    checks = {c.name: c for c in result.signatures[0].checks}
    assert checks["log-entry-match"].detail.startswith(kind)
    details = result.signatures[0].certificate
    assert details is not None
    assert details.extensions["githubWorkflowRepository"] == "slsa-framework/example-package"
    # wrong builder tag: identity fails, with an actionable reason
    wrong = run(
        trust, image, atts, {**policy, "certificateIdentity": identity.replace(version, "v9.9.9")}
    )
    assert failed_checks(wrong) == {"identity"}
    assert (
        f"signed by {identity}, expected {identity.replace(version, 'v9.9.9')}" in wrong.reasons[0]
    )
    # the attestation is about another image: rejected on the subject
    other = run(trust, "sha256:" + "0" * 64, atts, policy)
    assert failed_checks(other) == {"image-digest"}


# -- cosign bundle v0.3 (OCI referrer) -------------------------------------------------------


ANY_ATTESTER = {"certificateIdentityRegexp": ".*", "acceptAttestationsAsSignatures": True}


def test_cosign_bundle_v03(trust: TrustRoot) -> None:
    """cosign's OCI bundle test data is an attestation (`cosign attest --type custom`)."""
    bundle = cosign_bundle()
    result = run(trust, COSIGN_BUNDLE_IMAGE, [bundle], ANY_ATTESTER)
    assert result.verified, result.reasons
    (sig,) = result.signatures
    assert sig.kind == "sigstore-bundle" and sig.role == "attestation"
    plain = run(trust, COSIGN_BUNDLE_IMAGE, [bundle], {"certificateIdentityRegexp": ".*"})
    assert not plain.verified and plain.reasons[0].startswith("no signatures found")
    assert sig.log_entry is not None and sig.log_entry.evidence == "inclusion-proof"
    assert sig.log_entry.log_index == 175508996
    wrong_subject = run(
        trust, COSIGN_BUNDLE_IMAGE, [bundle], {**ANY_ATTESTER, "certificateIdentityRegexp": "wrong"}
    )
    assert failed_checks(wrong_subject) == {"identity"}
    other_image = run(trust, "sha256:" + "1" * 64, [bundle], ANY_ATTESTER)
    assert failed_checks(other_image) == {"image-digest"}
    assert "expected sha256:" + "1" * 64 in other_image.reasons[0]


def test_cosign_bundle_v03_against_cosigns_own_trust_root() -> None:
    trust = TrustRoot.from_json((COSIGN_BUNDLE / "trusted_root_pgi.json").read_bytes())
    policy = {"certificateIdentity": "cody@soyland.com", "acceptAttestationsAsSignatures": True}
    result = run(trust, COSIGN_BUNDLE_IMAGE, [cosign_bundle()], policy)
    assert result.verified, result.reasons


def _bundle_as_legacy_attestation() -> tuple[CosignAttestation, dict[str, Any]]:
    """The v0.3 bundle's DSSE envelope and certificate as a cosign `.att` layer, and its tlog
    entry as the Rekor v1 API would answer it: real production data with a real proof."""
    doc = json.loads((COSIGN_BUNDLE / "oci-attestation.sigstore.json").read_bytes())
    material = doc["verificationMaterial"]
    cert_der = base64.b64decode(
        (material.get("certificate") or material["x509CertificateChain"]["certificates"][0])[
            "rawBytes"
        ]
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    cert_pem = x509.load_der_x509_certificate(cert_der).public_bytes(Encoding.PEM).decode()
    envelope = json.dumps(
        {
            "payloadType": doc["dsseEnvelope"]["payloadType"],
            "payload": doc["dsseEnvelope"]["payload"],
            "signatures": doc["dsseEnvelope"]["signatures"],
        }
    ).encode()
    layer = CosignAttestation(
        payload=envelope,
        annotations={
            "dev.cosignproject.cosign/signature": "",
            "dev.sigstore.cosign/certificate": cert_pem,
        },
        media_type="application/vnd.dsse.envelope.v1+json",
        layer_digest="sha256:" + hashlib.sha256(envelope).hexdigest(),
        source="derived:cosign-bundle-v03",
    )
    entry = material["tlogEntries"][0]
    body = base64.b64decode(entry["canonicalizedBody"])
    proof = entry["inclusionProof"]
    response = {
        "24296fb24b8ad77a" + hashlib.sha256(b"\x00" + body).hexdigest(): {
            "body": entry["canonicalizedBody"],
            "integratedTime": int(entry["integratedTime"]),
            "logID": base64.b64decode(entry["logId"]["keyId"]).hex(),
            "logIndex": int(entry["logIndex"]),
            "verification": {
                "inclusionProof": {
                    "checkpoint": proof["checkpoint"]["envelope"],
                    "hashes": [base64.b64decode(h).hex() for h in proof["hashes"]],
                    "logIndex": int(proof["logIndex"]),
                    "rootHash": base64.b64decode(proof["rootHash"]).hex(),
                    "treeSize": int(proof["treeSize"]),
                },
                "signedEntryTimestamp": entry["inclusionPromise"]["signedEntryTimestamp"],
            },
        }
    }
    return layer, response


def test_real_inclusion_proof_and_checkpoint_from_production_rekor(trust: TrustRoot) -> None:
    layer, response = _bundle_as_legacy_attestation()
    (lookup,) = needed_log_lookups([layer])
    assert lookup.by == "hash"
    entry = LogEntry.from_rekor_response(response)
    policy = {
        "certificateIdentity": "cody@soyland.com",
        "certificateOidcIssuer": GITHUB_OAUTH,
        "acceptAttestationsAsSignatures": True,
    }
    result = run(trust, COSIGN_BUNDLE_IMAGE, [layer], policy, {lookup: entry})
    assert result.verified, result.reasons
    (sig,) = result.signatures
    assert sig.log_entry is not None and sig.log_entry.evidence == "inclusion-proof"
    assert sig.log_entry.uuid == next(iter(response)).lower()
    detail = sig.check("transparency-log")
    assert detail is not None and "tree of size 53604735" in detail.detail
    # a proof hash flipped: the proof no longer reaches the signed root
    value = next(iter(response.values()))
    hashes = value["verification"]["inclusionProof"]["hashes"]
    hashes[0] = ("0" if hashes[0][0] != "0" else "1") + hashes[0][1:]
    bad = run(
        trust,
        COSIGN_BUNDLE_IMAGE,
        [layer],
        policy,
        {lookup: LogEntry.from_rekor_response(response)},
    )
    assert not bad.verified
    assert "inclusion proof gives root" in bad.signatures[0].reasons[0]
    # no entry and no SET: nothing proves the log holds it
    none = run(trust, COSIGN_BUNDLE_IMAGE, [layer], policy, {lookup: None})
    assert "transparency-log" in failed_checks(none)
