"""The instance is faithful if sigstore-python 4.5, given only its trusted_root.json, accepts
what it makes and rejects it once one property is broken (each rejection names the check)."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sigstore.errors import VerificationError
from sigstore.hashes import Hashed
from sigstore.models import Bundle, TrustedRoot
from sigstore.verify import Verifier
from sigstore.verify.policy import Identity
from sigstore_models.common.v1 import HashAlgorithm

from tests.sigstore_local.artifacts import DEFAULT_IDENTITY, IN_TOTO
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, p256
from tests.sigstore_local.encoding import b64
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.log import RekorEntry, TransparencyLog
from tests.sigstore_local.signer import SignedBundle, Signer
from tests.sigstore_local.trust import LogKey

POLICY = Identity(identity=DEFAULT_IDENTITY, issuer=ACTIONS)


def new_digest() -> str:
    return "sha256:" + secrets.token_hex(32)


def hashed(digest: str) -> Hashed:
    return Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(digest.split(":")[1]))


@pytest.fixture(scope="module")
def verifier(sigstore_local: LocalSigstore) -> Verifier:
    return Verifier(trusted_root=TrustedRoot.from_file(str(sigstore_local.trusted_root_path)))


def verify_message(verifier: Verifier, bundle: dict[str, Any] | SignedBundle, digest: str) -> None:
    raw = bundle.to_json() if isinstance(bundle, SignedBundle) else json.dumps(bundle)
    verifier.verify_artifact(hashed(digest), Bundle.from_json(raw), POLICY)


def edit_proof(bundle: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    change(bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"])
    return bundle


# -- accepted --------------------------------------------------------------------------------


def test_message_signature_bundle_verifies(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    verify_message(verifier, signed, digest)
    assert signed.bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert signed.entry.kind == ("hashedrekord", "0.0.1")


def test_dsse_bundle_verifies(sigstore_local: LocalSigstore, verifier: Verifier) -> None:
    digest = new_digest()
    signed = sigstore_local.signer.dsse_bundle(digest, predicate={"buildType": "test"})
    payload_type, payload = verifier.verify_dsse(Bundle.from_json(signed.to_json()), POLICY)
    assert payload_type == IN_TOTO
    assert digest.split(":")[1].encode() in payload
    assert signed.entry.kind == ("dsse", "0.0.1")


def test_bundle_from_a_log_that_grew_since_still_verifies(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    """The proof in a bundle is into the tree at upload time; later entries do not matter."""
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    for _ in range(3):
        sigstore_local.signer.message_bundle(new_digest())
    assert sigstore_local.log.size > int(signed.entry.inclusion_proof["treeSize"])
    verify_message(verifier, signed, digest)


# -- rejected: the certificate -----------------------------------------------------------------


def test_certificate_from_another_ca_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier, tmp_path: Path
) -> None:
    rogue = CertificateAuthority(
        name="rogue", ct_key=sigstore_local.ca.ct_key, clock=sigstore_local.clock
    )
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(
        digest, identity=sigstore_local.signer.identity(ca=rogue)
    )
    with pytest.raises(VerificationError, match="failed to build timestamp certificate chain"):
        verify_message(verifier, signed, digest)
    # the same bundle passes once the rogue CA is trusted: the chain was the only fault
    path = sigstore_local.write_trusted_root(
        tmp_path / "with-rogue.json", authorities=[sigstore_local.ca, rogue]
    )
    verify_message(Verifier(trusted_root=TrustedRoot.from_file(str(path))), signed, digest)


@pytest.mark.parametrize(
    ("sct", "message"),
    [
        ("bad", "failed to verify SCT on signing certificate: SCT verify failed"),
        (False, "Certificate does not contain a signed certificate timestamp"),
    ],
)
def test_certificate_without_a_valid_sct_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier, sct: bool | str, message: str
) -> None:
    digest = new_digest()
    identity = sigstore_local.signer.identity(sct=sct)  # type: ignore[arg-type]
    signed = sigstore_local.signer.message_bundle(digest, identity=identity)
    with pytest.raises(VerificationError, match=message):
        verify_message(verifier, signed, digest)


def test_sct_from_an_unknown_ct_log_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest = new_digest()
    identity = sigstore_local.signer.identity(ct_key=p256())
    signed = sigstore_local.signer.message_bundle(digest, identity=identity)
    with pytest.raises(VerificationError, match="SCT verify failed"):
        verify_message(verifier, signed, digest)


def test_certificate_expired_before_the_entry_was_logged_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest = new_digest()
    identity = sigstore_local.signer.identity(
        not_before=sigstore_local.clock() - timedelta(minutes=30)
    )
    signed = sigstore_local.signer.message_bundle(digest, identity=identity)
    with pytest.raises(VerificationError, match="cert is not valid at validation time"):
        verify_message(verifier, signed, digest)


def test_other_identity_is_rejected_by_the_policy(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest = new_digest()
    identity = sigstore_local.signer.identity("mallory@example.com")
    signed = sigstore_local.signer.message_bundle(digest, identity=identity)
    with pytest.raises(VerificationError, match="SANs do not match"):
        verify_message(verifier, signed, digest)
    verifier.verify_artifact(
        hashed(digest),
        Bundle.from_json(signed.to_json()),
        Identity(identity="mallory@example.com", issuer=ACTIONS),
    )


# -- rejected: the artifact --------------------------------------------------------------------


def test_altered_artifact_is_rejected(sigstore_local: LocalSigstore, verifier: Verifier) -> None:
    digest, other = new_digest(), new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    with pytest.raises(VerificationError, match="message digest mismatch"):
        verify_message(verifier, signed, other)
    # the bundle made to name the other digest: now the signature itself fails
    bundle = signed.edited()
    bundle["messageSignature"]["messageDigest"]["digest"] = b64(bytes.fromhex(other[7:]))
    with pytest.raises(VerificationError, match="Signature is invalid for input"):
        verify_message(verifier, bundle, other)


def test_signature_over_another_digest_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest, other = new_digest(), new_digest()
    signed = sigstore_local.signer.message_bundle(digest, signed_digest=other)
    with pytest.raises(VerificationError, match="message digest mismatch"):
        verify_message(verifier, signed, digest)


def test_altered_dsse_payload_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    signed = sigstore_local.signer.dsse_bundle(new_digest())
    bundle = signed.edited()
    statement = base64.b64decode(bundle["dsseEnvelope"]["payload"])
    bundle["dsseEnvelope"]["payload"] = b64(statement.replace(b"sha256", b"sha512"))
    with pytest.raises(VerificationError, match="DSSE: invalid signature"):
        verifier.verify_dsse(Bundle.from_json(json.dumps(bundle)), POLICY)


# -- rejected: the log evidence ----------------------------------------------------------------


def test_inclusion_proof_that_does_not_match_the_checkpoint_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    sigstore_local.signer.message_bundle(new_digest())  # at least one entry before ours
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    size = int(signed.entry.inclusion_proof["treeSize"])
    assert size >= 2
    # a genuine checkpoint, signed by the log, but of the tree one entry smaller
    older = sigstore_local.log.checkpoint(size - 1)
    bundle = edit_proof(signed.edited(), lambda p: p.update(checkpoint={"envelope": older}))
    with pytest.raises(VerificationError, match="invalid root hash signature"):
        verify_message(verifier, bundle, digest)


def test_altered_proof_hash_is_rejected(sigstore_local: LocalSigstore, verifier: Verifier) -> None:
    sigstore_local.signer.message_bundle(new_digest())
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    assert signed.entry.inclusion_proof["hashes"]
    bundle = edit_proof(signed.edited(), lambda p: p["hashes"].__setitem__(0, b64(b"\x00" * 32)))
    with pytest.raises(VerificationError, match="inclusion proof contains invalid root hash"):
        verify_message(verifier, bundle, digest)


def test_altered_inclusion_promise_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    bundle = signed.edited()
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)
    with pytest.raises(VerificationError, match="SET: invalid inclusion promise"):
        verify_message(verifier, bundle, digest)


def test_entry_in_a_log_that_is_not_trusted_is_rejected(
    sigstore_local: LocalSigstore, verifier: Verifier
) -> None:
    other_log = TransparencyLog(clock=sigstore_local.clock)
    other = Signer(sigstore_local.ca, lambda p: RekorEntry.from_response(other_log.add(p)))
    digest = new_digest()
    signed = other.message_bundle(digest)
    with pytest.raises(VerificationError, match="checkpoint: invalid signature"):
        verify_message(verifier, signed, digest)


def test_trusted_root_with_another_log_key_rejects(
    sigstore_local: LocalSigstore, tmp_path: Path
) -> None:
    digest = new_digest()
    signed = sigstore_local.signer.message_bundle(digest)
    wrong = LogKey(p256().public_key(), sigstore_local.url, sigstore_local.ca.valid_from)
    path = sigstore_local.write_trusted_root(tmp_path / "wrong-log.json", tlogs=[wrong])
    with pytest.raises(VerificationError, match="checkpoint: invalid signature"):
        verify_message(Verifier(trusted_root=TrustedRoot.from_file(str(path))), signed, digest)
