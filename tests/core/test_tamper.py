"""Every acceptance path, tampered with: each must be rejected by the check that owns it.

Real signatures (connaisseur, ratify, slsa-verifier, cosign's bundle) are altered byte by byte;
where an alteration would also break something else (changing the integrated time breaks the
SET), the property is isolated with a self-made Sigstore instance (tests/core/fakes.py).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from service.core import (
    BundleSignature,
    CosignAttestation,
    CosignSignature,
    ImageResult,
    LogEntry,
    TrustRoot,
    needed_log_lookups,
)
from tests.core import data
from tests.core.data import (
    COSIGN_BUNDLE_IMAGE,
    RATIFY,
    connaisseur_digest,
    connaisseur_signatures,
    cosign_bundle,
    descriptor_signature,
    production_root,
    slsa_attestations,
)
from tests.core.fakes import (
    ACTIONS,
    NOW,
    SIGNED_AT,
    FakeSigstore,
    b64,
    dsse_attestation,
    hashedrekord_body,
    keyless_layer,
    pem_public,
    simple_signing,
)

CONNAISSEUR_POLICY = {
    "certificateIdentityRegexp": "philipp",
    "certificateOidcIssuerRegexp": "github",
}
OTHER_IMAGE = "sha256:" + "e" * 64
IMAGE = "sha256:" + "a" * 64
WORKFLOW = "https://github.com/acme/app/.github/workflows/release.yml"
FAKE_POLICY = {
    "certificateIdentity": f"{WORKFLOW}@refs/heads/main",
    "certificateOidcIssuer": ACTIONS,
}


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return production_root()


@pytest.fixture(scope="module")
def fake() -> FakeSigstore:
    return FakeSigstore()


run = functools.partial(data.run, now=NOW)


def failed(result: ImageResult) -> dict[str, str]:
    """Failed check name -> detail, over all signatures."""
    return {c.name: c.detail for s in result.signatures for c in s.checks if not c.passed}


def annotate(layer: CosignSignature, **changes: str) -> CosignSignature:
    names = {
        "signature": "dev.cosignproject.cosign/signature",
        "certificate": "dev.sigstore.cosign/certificate",
        "bundle": "dev.sigstore.cosign/bundle",
    }
    annotations = dict(layer.annotations)
    for short, value in changes.items():
        annotations[names[short]] = value
    return dataclasses.replace(layer, annotations=annotations)


def flip(data: bytes, at: int = -1) -> bytes:
    out = bytearray(data)
    out[at] ^= 0x01
    return bytes(out)


@pytest.fixture(scope="module")
def keyless() -> tuple[str, CosignSignature]:
    image = connaisseur_digest("keyless")
    (layer,) = connaisseur_signatures(image)
    return image, layer


def test_untampered_baseline(production: TrustRoot, keyless: tuple[str, CosignSignature]) -> None:
    image, layer = keyless
    assert run(production, image, [layer], CONNAISSEUR_POLICY).verified


# -- the signature ---------------------------------------------------------------------------


def test_flipped_signature_byte(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    image, layer = keyless
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    bad = annotate(layer, signature=b64(flip(signature, 10)))
    result = run(production, image, [bad], CONNAISSEUR_POLICY)
    assert not result.verified
    problems = failed(result)
    assert problems["signature"] == "does not verify with the certificate's key"
    # the log entry records the original signature, so it no longer matches either
    assert problems["log-entry-match"] == "log entry records another signature, expected this one"


def test_payload_of_another_image(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    image, layer = keyless
    other_payload = simple_signing(OTHER_IMAGE)
    bad = dataclasses.replace(layer, payload=other_payload)
    problems = failed(run(production, image, [bad], CONNAISSEUR_POLICY))
    assert set(problems) == {"layer-digest", "log-entry-match", "signature", "image-digest"}
    assert problems["image-digest"] == (f"signature is for image {OTHER_IMAGE}, expected {image}")


def test_signature_copied_onto_another_image(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    _, layer = keyless
    problems = failed(run(production, OTHER_IMAGE, [layer], CONNAISSEUR_POLICY))
    assert set(problems) == {"image-digest"}
    assert problems["image-digest"].endswith(f"expected {OTHER_IMAGE}")


def test_payload_type_must_be_cosign_signature(fake: FakeSigstore) -> None:
    payload = json.dumps(
        {"critical": {"image": {"docker-manifest-digest": IMAGE}, "type": "something else"}}
    ).encode()
    signed = keyless_layer(fake, IMAGE, payload=payload)
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert set(problems) == {"image-digest"}
    assert "expected 'cosign container image signature'" in problems["image-digest"]


# -- the certificate -------------------------------------------------------------------------


def test_certificate_from_another_ca(fake: FakeSigstore) -> None:
    """Same Rekor and CT log, another CA: only the chain check may fail."""
    rogue = FakeSigstore(ct_key=fake.ct_key, rekor_key=fake.rekor_key, name="rogue")
    signed = keyless_layer(rogue, IMAGE)
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert set(problems) == {"certificate-chain"}
    assert problems["certificate-chain"].startswith(
        "certificate does not chain to a fulcio ca in the trust root"
    )
    # and it verifies against the trust root that holds that CA
    rogue_trust = FakeSigstore(
        ct_key=fake.ct_key,
        rekor_key=fake.rekor_key,
        root_key=rogue.root_key,
        intermediate_key=rogue.intermediate_key,
        name="rogue",
    )
    rogue_trust.root_cert, rogue_trust.intermediate_cert = rogue.root_cert, rogue.intermediate_cert
    assert run(rogue_trust.trust(), IMAGE, [signed.layer], FAKE_POLICY).verified


def test_certificate_swapped_for_another_fulcio_certificate(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    image, layer = keyless
    _, ratify = descriptor_signature(RATIFY / "successful-keyless-verification")
    bad = annotate(layer, certificate=ratify.annotations["dev.sigstore.cosign/certificate"])
    problems = failed(run(production, image, [bad], CONNAISSEUR_POLICY))
    assert "signature" in problems
    assert problems["log-entry-match"] == (
        "log entry public key: found another certificate, expected the signing one"
    )


def test_certificate_expired_at_signing_time(fake: FakeSigstore) -> None:
    """A valid chain, a valid SET, but the leaf had expired when the entry was integrated."""
    signed = keyless_layer(fake, IMAGE, not_before=SIGNED_AT - timedelta(minutes=30))
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert set(problems) == {"certificate-validity"}
    assert problems["certificate-validity"].startswith("signed at 2025-06-01T12:00:00Z, expected")


def test_certificate_not_yet_valid_at_signing_time(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE, not_before=SIGNED_AT + timedelta(minutes=1))
    assert set(failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))) == {
        "certificate-validity"
    }


def test_altered_integrated_time_breaks_the_set(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    image, layer = keyless
    bundle = json.loads(layer.annotations["dev.sigstore.cosign/bundle"])
    bundle["Payload"]["integratedTime"] += 3600 * 24 * 365
    problems = failed(
        run(production, image, [annotate(layer, bundle=json.dumps(bundle))], CONNAISSEUR_POLICY)
    )
    assert problems["transparency-log"].startswith("signed entry timestamp does not verify")


def test_missing_sct_on_a_modern_certificate(fake: FakeSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = fake.issue(key, san=f"{WORKFLOW}@refs/heads/main", sct=False)
    signed = keyless_layer(fake, IMAGE)
    payload = signed.layer.payload
    signature = key.sign(payload, ec.ECDSA(hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding

    cert_pem = cert.public_bytes(Encoding.PEM)
    body = hashedrekord_body(payload, signature, cert_pem)
    layer = annotate(
        signed.layer,
        signature=b64(signature),
        certificate=cert_pem.decode(),
        bundle=fake.bundle_annotation(body, signed.integrated_time, 1),
    )
    problems = failed(run(fake.trust(), IMAGE, [layer], FAKE_POLICY))
    assert problems == {"sct": "found no embedded sct in the certificate, expected one"}


def test_sct_from_an_unknown_ct_log(fake: FakeSigstore) -> None:
    other_ct = FakeSigstore(
        root_key=fake.root_key, intermediate_key=fake.intermediate_key, rekor_key=fake.rekor_key
    )
    other_ct.root_cert, other_ct.intermediate_cert = fake.root_cert, fake.intermediate_cert
    signed = keyless_layer(other_ct, IMAGE)
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert set(problems) == {"sct"}
    assert "not a ct log in the trust root" in problems["sct"]


# -- the transparency log --------------------------------------------------------------------


def test_set_signed_by_another_key(
    production: TrustRoot, keyless: tuple[str, CosignSignature]
) -> None:
    image, layer = keyless
    bundle = json.loads(layer.annotations["dev.sigstore.cosign/bundle"])
    import rfc8785

    canonical = rfc8785.dumps(
        {
            "body": bundle["Payload"]["body"],
            "integratedTime": bundle["Payload"]["integratedTime"],
            "logID": bundle["Payload"]["logID"],
            "logIndex": bundle["Payload"]["logIndex"],
        }
    )
    impostor = ec.generate_private_key(ec.SECP256R1())
    bundle["SignedEntryTimestamp"] = b64(impostor.sign(canonical, ec.ECDSA(hashes.SHA256())))
    result = run(
        production, image, [annotate(layer, bundle=json.dumps(bundle))], CONNAISSEUR_POLICY
    )
    problems = failed(result)
    assert problems["transparency-log"].startswith("signed entry timestamp does not verify")
    assert "certificate-chain" in problems  # no trusted time, so no certificate validation


def test_set_from_an_unknown_log(fake: FakeSigstore) -> None:
    other_log = FakeSigstore(
        root_key=fake.root_key, intermediate_key=fake.intermediate_key, ct_key=fake.ct_key
    )
    other_log.root_cert, other_log.intermediate_cert = fake.root_cert, fake.intermediate_cert
    signed = keyless_layer(other_log, IMAGE)
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert problems["transparency-log"].startswith(f"found log id {other_log.rekor_log_id}")


def test_tampered_set_body(production: TrustRoot, keyless: tuple[str, CosignSignature]) -> None:
    image, layer = keyless
    bundle = json.loads(layer.annotations["dev.sigstore.cosign/bundle"])
    body = json.loads(base64.b64decode(bundle["Payload"]["body"]))
    body["spec"]["data"]["hash"]["value"] = "0" * 64
    bundle["Payload"]["body"] = b64(json.dumps(body).encode())
    problems = failed(
        run(production, image, [annotate(layer, bundle=json.dumps(bundle))], CONNAISSEUR_POLICY)
    )
    assert problems["transparency-log"].startswith("signed entry timestamp does not verify")


def test_validly_logged_entry_of_another_signature(fake: FakeSigstore) -> None:
    """A genuine SET, but for an entry about other bytes: the body check catches it."""
    signed = keyless_layer(fake, IMAGE)
    other = keyless_layer(fake, IMAGE)
    layer = annotate(signed.layer, bundle=other.layer.annotations["dev.sigstore.cosign/bundle"])
    problems = failed(run(fake.trust(), IMAGE, [layer], FAKE_POLICY))
    assert set(problems) == {"log-entry-match"}
    assert problems["log-entry-match"] == "log entry records another signature, expected this one"


def test_no_log_evidence_for_keyless(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE, bundle=False)
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert problems["transparency-log"].startswith("found no transparency log evidence")
    assert "no verified signing time" in problems["certificate-chain"]


def test_integrated_time_in_the_future(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE, signed_at=NOW + timedelta(hours=1))
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], FAKE_POLICY))
    assert "is in the future" in problems["transparency-log"]


def test_inclusion_promise_refused_when_policy_requires_a_proof(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE)
    policy = {**FAKE_POLICY, "transparencyLog": {"allowInclusionPromise": False}}
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], policy))
    assert "expected an inclusion proof as the policy requires" in problems["transparency-log"]
    # with the entry fetched from the log, the proof satisfies the policy
    (lookup,) = needed_log_lookups([signed.layer])
    entry = LogEntry.from_rekor_response(
        fake.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    )
    result = run(fake.trust(), IMAGE, [signed.layer], policy, {lookup: entry})
    assert result.verified, result.reasons
    assert result.signatures[0].log_entry is not None
    assert result.signatures[0].log_entry.evidence == "inclusion-proof"
    assert result.signatures[0].log_entry.uuid == entry.uuid


def _entry(fake: FakeSigstore, response: dict[str, Any]) -> LogEntry:
    return LogEntry.from_rekor_response(response)


def test_inclusion_proof_tampering(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE)
    (lookup,) = needed_log_lookups([signed.layer])
    trust = fake.trust()

    def with_entry(response: dict[str, Any]) -> dict[str, str]:
        return failed(
            run(trust, IMAGE, [signed.layer], FAKE_POLICY, {lookup: _entry(fake, response)})
        )

    good = fake.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    assert with_entry(good) == {}
    # a proof hash changed
    response = json.loads(json.dumps(good))
    proof = next(iter(response.values()))["verification"]["inclusionProof"]
    proof["hashes"][0] = "00" * 32
    assert with_entry(response)["transparency-log"].startswith("inclusion proof gives root")
    # the checkpoint signed by another key
    impostor = FakeSigstore(
        root_key=fake.root_key, intermediate_key=fake.intermediate_key, ct_key=fake.ct_key
    )
    forged = impostor.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    forged_proof = next(iter(forged.values()))["verification"]["inclusionProof"]
    response = json.loads(json.dumps(good))
    next(iter(response.values()))["verification"]["inclusionProof"] = forged_proof
    assert "checkpoint has no valid signature" in with_entry(response)["transparency-log"]
    # a proof for a tree the checkpoint does not describe
    response = json.loads(json.dumps(good))
    proof = next(iter(response.values()))["verification"]["inclusionProof"]
    proof["treeSize"] = 8
    assert with_entry(response)["transparency-log"].startswith("checkpoint is for size 7")
    # the fetched entry is another entry than the one the SET names
    other = keyless_layer(fake, IMAGE, log_index=signed.log_index)
    response = fake.rekor_response(other.body, other.integrated_time, other.log_index)
    assert (
        "is not the entry the signature's bundle names" in with_entry(response)["transparency-log"]
    )


# -- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            {
                "certificateIdentity": f"{WORKFLOW}@refs/heads/main",
                "certificateOidcIssuer": ACTIONS,
            },
            f"signed by {WORKFLOW}@refs/heads/dev, expected {WORKFLOW}@refs/heads/main",
        ),
        (
            {"certificateIdentityRegexp": r"@refs/tags/v\d+", "certificateOidcIssuer": ACTIONS},
            f"signed by {WORKFLOW}@refs/heads/dev, expected a match for regexp @refs/tags/v\\d+",
        ),
        (
            {
                "certificateIdentityRegexp": "acme/app",
                "certificateOidcIssuer": "https://accounts.google.com",
            },
            f"oidc issuer {ACTIONS}, expected https://accounts.google.com",
        ),
        (
            {
                "certificateIdentityRegexp": "acme/app",
                "certificateOidcIssuerRegexp": "^https://accounts",
            },
            f"oidc issuer {ACTIONS}, expected a match for regexp ^https://accounts",
        ),
    ],
)
def test_identity_mismatch(fake: FakeSigstore, policy: dict[str, str], reason: str) -> None:
    signed = keyless_layer(fake, IMAGE, san=f"{WORKFLOW}@refs/heads/dev")
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], policy))
    assert problems == {"identity": reason}


def test_each_identity_is_reported(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE, san=f"{WORKFLOW}@refs/heads/dev")
    policy = {
        "identities": [
            {"certificateIdentity": f"{WORKFLOW}@refs/heads/main"},
            {"certificateIdentityRegexp": "^https://gitlab.com/", "certificateOidcIssuer": "x"},
        ]
    }
    detail = failed(run(fake.trust(), IMAGE, [signed.layer], policy))["identity"]
    assert (
        f"identities[0]: signed by {WORKFLOW}@refs/heads/dev, expected {WORKFLOW}@refs/heads/main"
        in detail
    )
    assert "identities[1]: signed by" in detail and "identities[1]: oidc issuer" in detail


REUSABLE = "https://github.com/kupecloud/github-workflows/.github/workflows/publish-image.yaml"
REUSABLE_POLICY = {
    "certificateIdentityRegexp": "^" + REUSABLE.replace(".", r"\.") + "@[0-9a-f]{40}$",
    "certificateOidcIssuer": ACTIONS,
    "extensions": {"sourceRepositoryUri": "https://github.com/acme/shop"},
}


def _reusable(
    fake: FakeSigstore, source: str, sha: str = "0123456789abcdef" * 2 + "01234567"
) -> CosignSignature:
    return keyless_layer(
        fake,
        IMAGE,
        san=f"{REUSABLE}@{sha}",
        extensions={12: source, 9: f"{REUSABLE}@{sha}", 11: "github-hosted"},
    ).layer


def test_reusable_workflow_acting_for_a_source_repository(fake: FakeSigstore) -> None:
    result = run(
        fake.trust(), IMAGE, [_reusable(fake, "https://github.com/acme/shop")], REUSABLE_POLICY
    )
    assert result.verified, result.reasons
    details = result.signatures[0].certificate
    assert details is not None
    assert details.extensions["sourceRepositoryUri"] == "https://github.com/acme/shop"
    assert details.extensions["runnerEnvironment"] == "github-hosted"


def test_reusable_workflow_for_another_repository_is_rejected(fake: FakeSigstore) -> None:
    problems = failed(
        run(fake.trust(), IMAGE, [_reusable(fake, "https://github.com/evil/shop")], REUSABLE_POLICY)
    )
    assert problems == {
        "identity": "sourceRepositoryUri https://github.com/evil/shop, expected https://github.com/acme/shop"
    }


def test_reusable_workflow_pinned_to_a_branch_is_rejected(fake: FakeSigstore) -> None:
    layer = keyless_layer(
        fake,
        IMAGE,
        san=f"{REUSABLE}@refs/heads/main",
        extensions={12: "https://github.com/acme/shop"},
    ).layer
    problems = failed(run(fake.trust(), IMAGE, [layer], REUSABLE_POLICY))
    assert set(problems) == {"identity"}
    assert problems["identity"].startswith(
        f"signed by {REUSABLE}@refs/heads/main, expected a match"
    )


def test_keyless_signature_against_a_key_only_policy(fake: FakeSigstore) -> None:
    signed = keyless_layer(fake, IMAGE)
    key = pem_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    problems = failed(run(fake.trust(), IMAGE, [signed.layer], {"keys": [key]}))
    assert set(problems) == {"identity"}
    assert "the policy lists keys only" in problems["identity"]


# -- key-signed ------------------------------------------------------------------------------


def _key_layer(key: ec.EllipticCurvePrivateKey, image: str) -> CosignSignature:
    payload = simple_signing(image)
    return CosignSignature(
        payload=payload,
        annotations={
            "dev.cosignproject.cosign/signature": b64(key.sign(payload, ec.ECDSA(hashes.SHA256())))
        },
        media_type="application/vnd.dev.cosign.simplesigning.v1+json",
        layer_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
        source="key",
    )


def test_key_signed_tampering(fake: FakeSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    policy = {"keys": [pem_public(key.public_key())], "transparencyLog": {"required": False}}
    layer = _key_layer(key, IMAGE)
    assert run(fake.trust(), IMAGE, [layer], policy).verified
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    flipped = dataclasses.replace(
        layer, annotations={"dev.cosignproject.cosign/signature": b64(flip(signature, 8))}
    )
    assert set(failed(run(fake.trust(), IMAGE, [flipped], policy))) == {"signature"}
    assert set(failed(run(fake.trust(), OTHER_IMAGE, [layer], policy))) == {"image-digest"}
    # an identity-only policy does not accept a key signature
    problems = failed(run(fake.trust(), IMAGE, [layer], FAKE_POLICY))
    assert "the policy lists identities only" in problems["signature"]


def test_key_signed_with_fetched_log_entry(fake: FakeSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    layer = _key_layer(key, IMAGE)
    policy = {"keys": [pem_public(key.public_key())]}
    (lookup,) = needed_log_lookups([layer])
    assert lookup.by == "hash"
    signature = base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"])
    body = hashedrekord_body(layer.payload, signature, pem_public(key.public_key()).encode())
    entry = LogEntry.from_rekor_response(fake.rekor_response(body, int(SIGNED_AT.timestamp()), 7))
    result = run(fake.trust(), IMAGE, [layer], policy, {lookup: entry})
    assert result.verified, result.reasons
    # the log entry of another key's signature over the same payload is not evidence
    other = ec.generate_private_key(ec.SECP256R1())
    other_body = hashedrekord_body(
        layer.payload,
        other.sign(layer.payload, ec.ECDSA(hashes.SHA256())),
        pem_public(other.public_key()).encode(),
    )
    wrong = LogEntry.from_rekor_response(
        fake.rekor_response(other_body, int(SIGNED_AT.timestamp()), 8)
    )
    problems = failed(run(fake.trust(), IMAGE, [layer], policy, {lookup: wrong}))
    assert set(problems) == {"log-entry-match"}
    # nothing found in the log: required evidence is missing
    problems = failed(run(fake.trust(), IMAGE, [layer], policy, {lookup: None}))
    assert problems["transparency-log"].startswith("found no transparency log evidence")


def test_rsa_pss_and_ed25519_keys(fake: FakeSigstore) -> None:
    from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    payload = simple_signing(IMAGE)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pss = rsa_key.sign(
        payload, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256()
    )
    ed = ed25519.Ed25519PrivateKey.generate()
    for private, signature in ((rsa_key, pss), (ed, ed.sign(payload))):
        public = private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        layer = CosignSignature(
            payload=payload,
            annotations={"dev.cosignproject.cosign/signature": b64(signature)},
            media_type="application/vnd.dev.cosign.simplesigning.v1+json",
            layer_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
            source="key",
        )
        policy = {"keys": [public.decode()], "transparencyLog": {"required": False}}
        assert run(fake.trust(), IMAGE, [layer], policy).verified
        bad = dataclasses.replace(
            layer, annotations={"dev.cosignproject.cosign/signature": b64(flip(signature, 5))}
        )
        assert set(failed(run(fake.trust(), IMAGE, [bad], policy))) == {"signature"}


# -- attestations ----------------------------------------------------------------------------


def test_attestation_tampering(fake: FakeSigstore) -> None:
    att = dsse_attestation(fake, IMAGE)
    policy = {**FAKE_POLICY, "acceptAttestationsAsSignatures": True}
    assert run(fake.trust(), IMAGE, [att], policy).verified
    envelope = json.loads(att.payload)
    envelope["signatures"][0]["sig"] = b64(flip(base64.b64decode(envelope["signatures"][0]["sig"])))
    raw = json.dumps(envelope).encode()
    bad = dataclasses.replace(
        att, payload=raw, layer_digest="sha256:" + hashlib.sha256(raw).hexdigest()
    )
    problems = failed(run(fake.trust(), IMAGE, [bad], policy))
    assert set(problems) == {"signature", "log-entry-match"}
    other = dsse_attestation(fake, IMAGE, subject_digest=OTHER_IMAGE)
    problems = failed(run(fake.trust(), IMAGE, [other], policy))
    assert problems == {"image-digest": f"in-toto subjects are {OTHER_IMAGE}, expected {IMAGE}"}


def test_real_attestation_with_changed_statement(production: TrustRoot) -> None:
    _, (att,) = slsa_attestations("v2.1.0")
    envelope = json.loads(att.payload)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["subject"][0]["digest"]["sha256"] = OTHER_IMAGE.split(":")[1]
    envelope["payload"] = b64(json.dumps(statement).encode())
    raw = json.dumps(envelope).encode()
    bad = CosignAttestation(raw, att.annotations, att.media_type, att.layer_digest, att.source)
    identity = (
        "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
        "generator_container_slsa3.yml@refs/tags/v2.1.0"
    )
    problems = failed(run(production, OTHER_IMAGE, [bad], {"certificateIdentity": identity}))
    assert {"layer-digest", "signature", "log-entry-match"} <= set(problems)


# -- bundles ---------------------------------------------------------------------------------


def test_bundle_with_flipped_signature(production: TrustRoot) -> None:
    good = cosign_bundle()
    doc = json.loads(good.bundle)
    sig = doc["dsseEnvelope"]["signatures"][0]
    sig["sig"] = b64(flip(base64.b64decode(sig["sig"])))
    bad = BundleSignature(json.dumps(doc).encode(), good.manifest_digest, good.source)
    problems = failed(
        run(production, COSIGN_BUNDLE_IMAGE, [bad], {"certificateIdentityRegexp": ".*"})
    )
    assert set(problems) == {"bundle"}
    assert problems["bundle"].startswith("sigstore-python:")


def test_bundle_that_does_not_parse(production: TrustRoot) -> None:
    bad = BundleSignature(b"{}", "sha256:" + "0" * 64, "x")
    problems = failed(
        run(production, COSIGN_BUNDLE_IMAGE, [bad], {"certificateIdentityRegexp": ".*"})
    )
    assert problems["bundle"].startswith("not a usable sigstore bundle")


def test_bundle_against_a_trust_root_without_its_ca(fake: FakeSigstore) -> None:
    problems = failed(
        run(
            fake.trust(),
            COSIGN_BUNDLE_IMAGE,
            [cosign_bundle()],
            {"certificateIdentityRegexp": ".*"},
        )
    )
    assert set(problems) == {"bundle"}


def test_keyless_signature_against_production_for_fake_material(
    production: TrustRoot, fake: FakeSigstore
) -> None:
    """Everything self-made is rejected by the production root: log, chain."""
    signed = keyless_layer(fake, IMAGE)
    problems = failed(run(production, IMAGE, [signed.layer], FAKE_POLICY))
    assert problems["transparency-log"].startswith("found log id")
