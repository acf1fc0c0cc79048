"""What the core says when the transparency log could not be reached, or is not asked at all.

Only log evidence can wait for the log: a signature whose only failed checks are for want of
evidence from an unreachable log is `awaiting_log`, and so is the image when that could still
make it verify. Every other failure (identity, issuer, key, digest, chain, SCT, signature) is
final whatever the log would say, so the service answers it with a signed verdict. With
lookups off (an air-gapped setup) missing evidence is final.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from service.core import CosignSignature, ImageResult, LogEntry, needed_log_lookups
from tests.core import data
from tests.core.fakes import (
    ACTIONS,
    NOW,
    SIGNED_AT,
    FakeSigstore,
    b64,
    dsse_attestation,
    keyless_layer,
    pem_public,
    simple_signing,
)
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY

IMAGE = "sha256:" + "a" * 64
OTHER_IMAGE = "sha256:" + "e" * 64
POLICY = {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
STRICT = {**POLICY, "transparencyLog": {"allowInclusionPromise": False}}

run = functools.partial(data.run, now=NOW)


@pytest.fixture(scope="module")
def fake() -> FakeSigstore:
    return FakeSigstore()


def offline(
    fake: FakeSigstore, layers: list[CosignSignature], policy: Mapping[str, Any]
) -> ImageResult:
    """`layers` verified with every lookup they need unreachable."""
    return run(fake.trust(), IMAGE, layers, policy, log_unreachable=needed_log_lookups(layers))


def failed(result: ImageResult) -> dict[str, bool]:
    """Failed check name -> whether it awaits the log, over all signatures."""
    return {c.name: c.awaiting_log for s in result.signatures for c in s.checks if not c.passed}


def unlogged(fake: FakeSigstore, image: str = IMAGE, **options: object) -> CosignSignature:
    """A keyless signature without a SET: only a log lookup can give its evidence."""
    return keyless_layer(fake, image, bundle=False, **options).layer  # type: ignore[arg-type]


def test_a_good_signature_awaits_the_log(fake: FakeSigstore) -> None:
    layer = unlogged(fake)
    result = offline(fake, [layer], POLICY)
    assert not result.verified and result.awaiting_log
    assert failed(result) == {"transparency-log": True, "certificate-chain": True}
    (signature,) = result.signatures
    assert signature.awaiting_log
    # every check that does not need the log ran, and passed
    passed = {c.name for c in signature.checks if c.passed}
    assert {"layer-digest", "sct", "signature", "image-digest", "identity"} <= passed
    chain = signature.check("certificate-chain")
    assert chain is not None and "the time awaits the log" in chain.detail
    tlog = signature.check("transparency-log")
    assert tlog is not None and "could not be reached" in tlog.detail


@pytest.mark.parametrize(
    ("policy", "check"),
    [
        (
            {
                **POLICY,
                "certificateIdentity": "https://github.com/other/repo/x.yml@refs/heads/main",
            },
            "identity",
        ),
        ({**POLICY, "certificateOidcIssuer": "https://accounts.google.com"}, "identity"),
        (
            {**POLICY, "certificateIdentity": None, "certificateIdentityRegexp": "^nobody$"},
            "identity",
        ),
    ],
    ids=["identity", "issuer", "identity-regexp"],
)
def test_a_wrong_signer_is_final_without_the_log(
    fake: FakeSigstore, policy: dict[str, object], check: str
) -> None:
    layer = unlogged(fake)
    result = offline(fake, [layer], {k: v for k, v in policy.items() if v is not None})
    assert not result.verified and not result.awaiting_log
    assert failed(result)[check] is False
    assert any("expected" in r for r in result.reasons)


def test_a_signature_for_another_image_is_final(fake: FakeSigstore) -> None:
    layer = unlogged(fake, OTHER_IMAGE)
    result = offline(fake, [layer], POLICY)
    assert not result.awaiting_log and failed(result)["image-digest"] is False


def test_a_flipped_signature_is_final(fake: FakeSigstore) -> None:
    layer = unlogged(fake)
    raw = bytearray(base64.b64decode(layer.annotations["dev.cosignproject.cosign/signature"]))
    raw[-1] ^= 1
    annotations = {**layer.annotations, "dev.cosignproject.cosign/signature": b64(bytes(raw))}
    bad = CosignSignature(layer.payload, annotations, layer.media_type, layer.layer_digest, "x")
    result = offline(fake, [bad], POLICY)
    assert not result.awaiting_log and failed(result)["signature"] is False


def test_a_certificate_from_another_ca_is_final(fake: FakeSigstore) -> None:
    """Without a signing time the chain is checked at both ends of the leaf's validity: a CA
    the trust root does not hold fails at both, so no log entry could help."""
    rogue = FakeSigstore(ct_key=fake.ct_key, rekor_key=fake.rekor_key, name="rogue")
    result = offline(fake, [unlogged(rogue)], POLICY)
    assert not result.awaiting_log
    assert failed(result)["certificate-chain"] is False
    assert any("does not chain to a fulcio ca" in reason for reason in result.reasons)


def test_a_certificate_without_an_sct_is_final(fake: FakeSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = fake.issue(key, san=DEFAULT_IDENTITY, sct=False)
    payload = simple_signing(IMAGE)
    layer = CosignSignature(
        payload=payload,
        annotations={
            "dev.cosignproject.cosign/signature": b64(key.sign(payload, ec.ECDSA(hashes.SHA256()))),
            "dev.sigstore.cosign/certificate": cert.public_bytes(Encoding.PEM).decode(),
        },
        media_type="application/vnd.dev.cosign.simplesigning.v1+json",
        layer_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
        source="x",
    )
    result = offline(fake, [layer], POLICY)
    assert not result.awaiting_log and failed(result)["sct"] is False


def test_a_verified_set_needs_no_log_unless_the_policy_wants_a_proof(fake: FakeSigstore) -> None:
    layer = keyless_layer(fake, IMAGE).layer  # with its SET bundle annotation
    result = offline(fake, [layer], POLICY)
    assert result.verified and not result.awaiting_log
    assert result.signatures[0].log_entry is not None
    assert result.signatures[0].log_entry.evidence == "inclusion-promise"
    strict = offline(fake, [layer], STRICT)
    assert not strict.verified and strict.awaiting_log
    assert failed(strict) == {"transparency-log": True, "certificate-chain": True}
    wrong = offline(fake, [layer], {**STRICT, "certificateIdentity": "someone@else.example"})
    assert not wrong.awaiting_log


def test_a_broken_set_is_final(fake: FakeSigstore) -> None:
    """A SET is the log's signature: one that does not verify is tampering, not a missing
    answer, and no lookup changes that."""
    signed = keyless_layer(fake, IMAGE, bundle=False)
    other_time = fake.set_for(signed.body, signed.integrated_time + 1, signed.log_index)
    bad_set = fake.bundle_annotation(
        signed.body, signed.integrated_time, signed.log_index, set_=other_time
    )
    annotations = {**signed.layer.annotations, "dev.sigstore.cosign/bundle": bad_set}
    layer = CosignSignature(
        signed.layer.payload, annotations, signed.layer.media_type, signed.layer.layer_digest, "x"
    )
    result = offline(fake, [layer], POLICY)
    assert not result.verified and not result.awaiting_log
    assert failed(result)["transparency-log"] is False
    tlog = result.signatures[0].check("transparency-log")
    assert tlog is not None and tlog.detail.startswith("signed entry timestamp does not verify")


def _key_layer(key: ec.EllipticCurvePrivateKey, image: str = IMAGE) -> CosignSignature:
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


def test_key_signed_with_a_required_log(fake: FakeSigstore) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    policy = {"keys": [pem_public(key.public_key())]}
    layer = _key_layer(key)
    result = offline(fake, [layer], policy)
    assert result.awaiting_log and failed(result) == {"transparency-log": True}
    other = ec.generate_private_key(ec.SECP256R1())
    wrong = offline(fake, [_key_layer(other)], policy)
    assert not wrong.awaiting_log and failed(wrong) == {"signature": False}


def test_a_threshold_awaits_only_if_the_log_could_meet_it(fake: FakeSigstore) -> None:
    good = unlogged(fake, san="https://github.com/acme/app/.github/workflows/a.yml@refs/heads/main")
    other = unlogged(
        fake, san="https://github.com/acme/app/.github/workflows/b.yml@refs/heads/main"
    )
    two = {
        "identities": [
            {
                "certificateIdentityRegexp": "^https://github\\.com/acme/app/",
                "certificateOidcIssuer": ACTIONS,
            }
        ],
        "threshold": 2,
    }
    assert offline(fake, [good, other], two).awaiting_log
    assert not offline(fake, [good], two).awaiting_log  # one signer could never make two
    stranger = unlogged(fake, san="someone@else.example")
    assert not offline(fake, [good, stranger], two).awaiting_log


def test_an_attestation_requirement_awaits_its_log_too(fake: FakeSigstore) -> None:
    layer = keyless_layer(fake, IMAGE).layer
    att = dsse_attestation(fake, IMAGE)
    policy = {
        **STRICT,
        "attestations": [{"predicateType": "https://slsa.dev/provenance/v1"}],
    }
    lookups = needed_log_lookups([layer, att])
    result = run(fake.trust(), IMAGE, [layer, att], policy, log_unreachable=lookups)
    assert result.awaiting_log
    unmet = {**policy, "attestations": [{"predicateType": "https://spdx.dev/Document"}]}
    result = run(fake.trust(), IMAGE, [layer, att], unmet, log_unreachable=lookups)
    assert not result.awaiting_log  # no attestation of that type: no log entry can add one


def test_the_log_answered_nothing_is_final(fake: FakeSigstore) -> None:
    """Rekor reached, no entry found: the evidence is missing, not awaited."""
    layer = unlogged(fake)
    result = run(fake.trust(), IMAGE, [layer], POLICY)
    assert not result.verified and not result.awaiting_log
    assert failed(result) == {"transparency-log": False, "certificate-chain": False}


def test_with_lookups_off_only_carried_evidence_counts(fake: FakeSigstore) -> None:
    layer = unlogged(fake)
    result = run(fake.trust(), IMAGE, [layer], POLICY, log_lookups_off=True)
    assert not result.verified and not result.awaiting_log
    tlog = result.signatures[0].check("transparency-log")
    assert tlog is not None and "rekor lookups are off here" in tlog.detail
    carried = keyless_layer(fake, IMAGE).layer
    assert run(fake.trust(), IMAGE, [carried], POLICY, log_lookups_off=True).verified


def test_a_fetched_entry_still_decides_when_reached(fake: FakeSigstore) -> None:
    """The awaiting result turns into a pass once the log answers: the same signature with its
    entry and proof verifies."""
    signed = keyless_layer(fake, IMAGE, bundle=False)
    (lookup,) = needed_log_lookups([signed.layer])
    response = fake.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    entry = LogEntry.from_rekor_response(response)
    assert run(fake.trust(), IMAGE, [signed.layer], POLICY, {lookup: entry}).verified


def test_an_expired_certificate_stays_awaiting_until_the_time_is_known(fake: FakeSigstore) -> None:
    """Validity needs the signing time: a certificate issued long before the log time fails
    only once the log gives the time."""
    signed = keyless_layer(fake, IMAGE, bundle=False, not_before=SIGNED_AT - timedelta(minutes=30))
    result = offline(fake, [signed.layer], POLICY)
    assert result.awaiting_log
    (lookup,) = needed_log_lookups([signed.layer])
    response = fake.rekor_response(signed.body, signed.integrated_time, signed.log_index)
    known = run(
        fake.trust(),
        IMAGE,
        [signed.layer],
        POLICY,
        {lookup: LogEntry.from_rekor_response(response)},
    )
    assert not known.verified and not known.awaiting_log
    assert "certificate-validity" in failed(known)
