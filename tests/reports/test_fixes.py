"""What to fix, from real verdicts: each way of failing, made with the self-made Sigstore
instance and judged by the real core, lands in its fix category (`service.reports.fixes`)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import pytest

from service.core import ImageResult
from service.reports import FIXES, Outcome, classify
from service.reports.fixes import BY_NAME, FailedCheck, Finding
from tests.core import data
from tests.core.fakes import (
    ACTIONS,
    NOW,
    FakeSigstore,
    dsse_attestation,
    keyless_layer,
    pem_public,
)
from tests.sigstore_local.artifacts import DEFAULT_IDENTITY
from tests.sigstore_local.ca import p256

IMAGE = "sha256:" + "a" * 64
OTHER = "sha256:" + "e" * 64
POLICY = {"certificateIdentity": DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
run = functools.partial(data.run, now=NOW)


@pytest.fixture(scope="module")
def fake() -> FakeSigstore:
    return FakeSigstore()


def verdict(result: ImageResult) -> dict[str, Any]:
    """The verdict as the service answers it, around the core's result."""
    return {
        **result.to_dict(),
        "image": {"digest": IMAGE},
        "policy": {"digest": "sha256:" + "b" * 64, "mode": "audit"},
    }


def outcome(fake: FakeSigstore, signatures: list[Any], policy: dict[str, Any]) -> Outcome:
    result = run(fake.trust(), IMAGE, signatures, policy)
    return Outcome.of_verdict(verdict(result))


def test_a_verified_image_has_nothing_to_fix(fake: FakeSigstore) -> None:
    found = outcome(fake, [keyless_layer(fake, IMAGE).layer], POLICY)
    assert found.result == "verified" and not found.denied
    assert found.fix is None and found.check is None and found.reasons == ()
    assert found.digest == IMAGE


def test_no_signature_at_all_is_unsigned(fake: FakeSigstore) -> None:
    found = outcome(fake, [], POLICY)
    assert (found.result, found.check) == ("failed", "no-signatures")
    assert found.fix == BY_NAME["unsigned"]
    assert found.denied and found.reasons == ("no signatures found",)


def test_only_attestations_is_its_own_fix(fake: FakeSigstore) -> None:
    found = outcome(fake, [dsse_attestation(fake, IMAGE)], POLICY)
    assert found.fix == BY_NAME["only-attestations"]
    assert "acceptAttestationsAsSignatures" in found.reasons[0]
    # Counted as a signature where the policy says so: then it verifies.
    accepting = {**POLICY, "acceptAttestationsAsSignatures": True}
    assert outcome(fake, [dsse_attestation(fake, IMAGE)], accepting).result == "verified"


def test_another_workflow_is_a_wrong_identity(fake: FakeSigstore) -> None:
    other = DEFAULT_IDENTITY.replace("refs/heads/main", "refs/heads/dev")
    found = outcome(fake, [keyless_layer(fake, IMAGE, san=other).layer], POLICY)
    assert (found.check, found.fix) == ("identity", BY_NAME["wrong-identity"])
    assert other in found.reasons[0]


def test_another_issuer_alone_is_a_wrong_issuer(fake: FakeSigstore) -> None:
    google = "https://accounts.google.com"
    found = outcome(fake, [keyless_layer(fake, IMAGE, issuer=google).layer], POLICY)
    assert (found.check, found.fix) == ("identity", BY_NAME["wrong-issuer"])
    # Of several acceptable identities, each mismatch is labelled; all of them issuer ones.
    several = {"identities": [POLICY, {**POLICY, "certificateIdentityRegexp": "^https://"}]}
    several["identities"][1].pop("certificateIdentity")
    found = outcome(fake, [keyless_layer(fake, IMAGE, issuer=google).layer], several)
    assert found.fix == BY_NAME["wrong-issuer"], found.reasons
    # Another issuer and another identity: the identity is what to fix first.
    both = keyless_layer(fake, IMAGE, issuer=google, san="mallory@example.com").layer
    assert outcome(fake, [both], POLICY).fix == BY_NAME["wrong-identity"]


def test_keyless_where_a_key_is_expected_is_a_wrong_key(fake: FakeSigstore) -> None:
    keyed = {"keys": [pem_public(p256().public_key())]}
    found = outcome(fake, [keyless_layer(fake, IMAGE).layer], keyed)
    assert found.fix == BY_NAME["wrong-key"], found.reasons


def test_a_missing_attestation(fake: FakeSigstore) -> None:
    wants = {**POLICY, "attestations": [{"predicateType": "slsaprovenance1"}]}
    found = outcome(fake, [keyless_layer(fake, IMAGE).layer], wants)
    assert (found.check, found.fix) == ("attestation", BY_NAME["attestation"])


def test_too_few_signers(fake: FakeSigstore) -> None:
    found = outcome(fake, [keyless_layer(fake, IMAGE).layer], {**POLICY, "threshold": 2})
    assert (found.check, found.fix) == ("threshold", BY_NAME["threshold"])


def test_another_sigstore_instance_is_an_evidence_problem(fake: FakeSigstore) -> None:
    stranger = FakeSigstore(name="another-fulcio")
    found = outcome(fake, [keyless_layer(stranger, IMAGE).layer], POLICY)
    # Its log's SET is checked first here, then its chain: either way, the evidence.
    assert found.check in ("transparency-log", "certificate-chain"), found.reasons
    assert found.fix == BY_NAME["evidence"]


def test_a_signature_of_another_image_does_not_match(fake: FakeSigstore) -> None:
    found = outcome(fake, [keyless_layer(fake, OTHER).layer], POLICY)
    assert (found.check, found.fix) == ("image-digest", BY_NAME["invalid-signature"])
    # A layer whose bytes were altered after signing.
    layer = keyless_layer(fake, IMAGE).layer
    altered = dataclasses.replace(layer, payload=layer.payload.replace(b"}", b" }", 1))
    assert outcome(fake, [altered], POLICY).fix == BY_NAME["invalid-signature"]


def test_unverifiable_and_unknown() -> None:
    found = Outcome.unverifiable("registry-unavailable", "its registry could not be reached", None)
    assert found.denied and found.digest is None and found.fix == BY_NAME["unverifiable"]
    assert classify(Finding()) == BY_NAME["other"]
    assert classify(Finding(failed=(FailedCheck("something-new", "x"),))) == BY_NAME["other"]


def test_the_worst_signature_decides_and_attestations_come_after_signatures() -> None:
    tampered = FailedCheck("signature", "invalid signature")
    wrong = FailedCheck("identity", "signed by a@b.c, expected x@y.z")
    assert classify(Finding(failed=(tampered, wrong))) == BY_NAME["wrong-identity"]
    failed_and_unmet = Finding(failed=(tampered,), attestations_unmet=True)
    assert classify(failed_and_unmet) == BY_NAME["invalid-signature"]


def test_every_fix_has_words_a_tenant_can_act_on() -> None:
    assert len({f.name for f in FIXES}) == len(FIXES)
    for fix in FIXES:
        assert fix.title and fix.action.endswith(".") and len(fix.action) < 300, fix


def test_a_verdict_that_is_not_one_is_read_safely() -> None:
    junk = Outcome.of_verdict({"verified": "yes", "signatures": "x", "reasons": [None, 3]})
    assert junk.result == "failed" and junk.digest is None and junk.fix is not None
    assert junk.reasons == ("None", "3")
