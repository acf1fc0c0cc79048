"""`verify_artifact` and key-signed bundles, tampered with where the conformance suite does not.

The conformance suite (tests/conformance) runs every upstream case through the CLI; its only
key-signed fail cases are a missing and a malformed key. The key path checks its log evidence
with the core's own Rekor code, so each piece of that evidence is altered here, one at a time,
on the real `managed-key-happy-path` bundle.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from service.core import (
    BundleSignature,
    ImageResult,
    InputError,
    TrustRoot,
    policy_from_mapping,
    verify_artifact,
    verify_image,
)
from service.core.keys import signature_valid
from tests.conformance.cases import CASES, PRODUCTION_ROOT

KEYED = CASES / "managed-key-happy-path"
ARTIFACT = "sha256:a0cfc71271d6e278e57cd332ff957c3f7043fdda354c4cbb190a30d56efa01bf"  # a.txt
ARTIFACT_B64 = base64.b64encode(bytes.fromhex(ARTIFACT.removeprefix("sha256:"))).decode()
NOW = datetime(2026, 1, 1, tzinfo=UTC)
KEY_POLICY = policy_from_mapping({"keys": [(KEYED / "key.pub").read_text()]})


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return TrustRoot.from_json(PRODUCTION_ROOT.read_bytes())


def keyed_bundle() -> dict[str, Any]:
    loaded = json.loads((KEYED / "bundle.sigstore.json").read_text())
    assert isinstance(loaded, dict)
    return loaded


def verify(bundle: dict[str, Any], trust: TrustRoot, **policy: Any) -> ImageResult:
    return verify_artifact(
        bundle=json.dumps(bundle).encode(),
        artifact_digest=ARTIFACT,
        policy=policy_from_mapping(policy) if policy else KEY_POLICY,
        trust=trust,
        now=NOW,
    )


def failed(result: ImageResult) -> dict[str, str]:
    (signature,) = result.signatures
    return {c.name: c.detail for c in signature.checks if not c.passed}


def flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def test_the_untouched_bundle_verifies(production: TrustRoot) -> None:
    result = verify(keyed_bundle(), production)
    assert result.verified, result.reasons
    (signature,) = result.signatures
    assert [c.name for c in signature.checks] == [
        "bundle",
        "signature",
        "transparency-log",
        "log-entry-match",
        "artifact-digest",
    ]
    assert signature.log_entry is not None
    assert signature.log_entry.evidence == "inclusion-proof"


def _entry(b: dict[str, Any]) -> dict[str, Any]:
    entry = b["verificationMaterial"]["tlogEntries"][0]
    assert isinstance(entry, dict)
    return entry


def _replace_body(b: dict[str, Any]) -> None:
    body = json.loads(base64.b64decode(_entry(b)["canonicalizedBody"]))
    body["spec"]["data"]["hash"]["value"] = "0" * 64
    _entry(b)["canonicalizedBody"] = base64.b64encode(json.dumps(body).encode()).decode()


TAMPERS: dict[str, tuple[Callable[[dict[str, Any]], None], str, str]] = {
    "signature": (
        lambda b: b["messageSignature"].update(signature=flip(b["messageSignature"]["signature"])),
        "signature",
        "does not verify with any policy key",
    ),
    "message digest": (
        lambda b: b["messageSignature"]["messageDigest"].update(digest=flip(ARTIFACT_B64)),
        "artifact-digest",
        "bundle messageDigest is",
    ),
    "set": (
        lambda b: _entry(b)["inclusionPromise"].update(
            signedEntryTimestamp=flip(_entry(b)["inclusionPromise"]["signedEntryTimestamp"])
        ),
        "transparency-log",
        "signed entry timestamp does not verify",
    ),
    "proof hash": (
        lambda b: _entry(b)["inclusionProof"]["hashes"].__setitem__(
            0, flip(_entry(b)["inclusionProof"]["hashes"][0])
        ),
        "transparency-log",
        "inclusion proof gives root",
    ),
    "checkpoint": (
        lambda b: _entry(b)["inclusionProof"]["checkpoint"].update(
            envelope=_entry(b)["inclusionProof"]["checkpoint"]["envelope"].replace(
                "rekor.sigstore.dev - ", "rekor.example.com - ", 1
            )
        ),
        "transparency-log",
        "checkpoint has no valid signature",
    ),
    "integrated time": (
        lambda b: _entry(b).update(integratedTime=str(int(_entry(b)["integratedTime"]) + 1)),
        "transparency-log",
        "signed entry timestamp does not verify",
    ),
    "log id": (
        lambda b: _entry(b)["logId"].update(keyId=base64.b64encode(b"\x01" * 32).decode()),
        "transparency-log",
        "expected a rekor log in the trust root",
    ),
    "entry body": (_replace_body, "transparency-log", "inclusion proof gives root"),
    "two entries": (
        lambda b: b["verificationMaterial"]["tlogEntries"].append(_entry(b)),
        "transparency-log",
        "2 log entries, expected one",
    ),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_each_tamper_is_refused(name: str, production: TrustRoot) -> None:
    tamper, check, fragment = TAMPERS[name]
    bundle = keyed_bundle()
    tamper(bundle)
    result = verify(bundle, production)
    assert not result.verified
    problems = failed(result)
    assert check in problems, problems
    assert fragment in problems[check]


def test_another_artifact_is_refused(production: TrustRoot) -> None:
    bundle = keyed_bundle()
    del bundle["messageSignature"]["messageDigest"]
    result = verify_artifact(
        bundle=json.dumps(bundle).encode(),
        artifact_digest="sha256:" + "1" * 64,
        policy=KEY_POLICY,
        trust=production,
        now=NOW,
    )
    assert set(failed(result)) == {"signature"}


def test_an_identity_policy_refuses_a_key_signed_bundle(production: TrustRoot) -> None:
    result = verify(
        keyed_bundle(),
        production,
        certificateIdentity="https://github.com/a/b/.github/workflows/release.yml@refs/heads/main",
    )
    assert "the policy lists identities only" in failed(result)["signature"]


def test_a_policy_without_a_log_skips_the_log(production: TrustRoot) -> None:
    bundle = keyed_bundle()
    TAMPERS["set"][0](bundle)
    pem = (KEYED / "key.pub").read_text()
    result = verify(bundle, production, keys=[pem], transparencyLog={"required": False})
    assert result.verified, result.reasons
    check = result.signatures[0].check("transparency-log")
    assert check is not None
    assert check.detail == "not required by the policy"


def test_a_key_signed_bundle_verifies_an_image_too(production: TrustRoot) -> None:
    """Attached to an image as a referrer, the same bundle is checked by `verify_image`."""
    item = BundleSignature((KEYED / "bundle.sigstore.json").read_bytes(), "sha256:" + "2" * 64, "r")
    result = verify_image(
        image_digest=ARTIFACT,
        signatures=[item],
        log_entries={},
        policy=KEY_POLICY,
        trust=production,
        now=NOW,
    )
    assert result.verified, result.reasons
    assert result.signatures[0].check("image-digest") is not None
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = other.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    result = verify_image(
        image_digest=ARTIFACT,
        signatures=[item],
        log_entries={},
        policy=policy_from_mapping({"keys": [pem]}),
        trust=production,
        now=NOW,
    )
    assert set(failed(result)) == {"signature"}


def test_a_malformed_digest_is_an_input_error(production: TrustRoot) -> None:
    with pytest.raises(InputError, match="artifact digest"):
        verify_artifact(
            bundle=b"{}", artifact_digest="sha256:abc", policy=KEY_POLICY, trust=production, now=NOW
        )


def test_a_malformed_bundle_is_a_failed_check(production: TrustRoot) -> None:
    result = verify_artifact(
        bundle=b"[]", artifact_digest=ARTIFACT, policy=KEY_POLICY, trust=production, now=NOW
    )
    assert not result.verified
    assert "not a usable sigstore bundle" in failed(result)["bundle"]


def test_prehashed_signatures() -> None:
    digest = bytes.fromhex(ARTIFACT.removeprefix("sha256:"))
    ec_key = ec.generate_private_key(ec.SECP384R1())
    sig = ec_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    assert signature_valid(ec_key.public_key(), sig, digest, prehashed=True)
    assert not signature_valid(ec_key.public_key(), sig, digest[:-1], prehashed=True)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    sig = rsa_key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    assert signature_valid(rsa_key.public_key(), sig, digest, prehashed=True)
    assert not signature_valid(rsa_key.public_key(), sig, b"\x00" * 32, prehashed=True)
    ed_key = ed25519.Ed25519PrivateKey.generate()
    assert not signature_valid(ed_key.public_key(), ed_key.sign(digest), digest, prehashed=True)
