"""`POST /v1/verify` end to end: gunicorn, the real registry and Redis, the local Sigstore instance.

Every acceptance path has its tampered twin here: what verifies when made right must fail, with
a reason that names the broken check, when one part is wrong.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec

from service.core.verify import COSIGN_SIGN_PREDICATE
from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RedisServer, RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority, github_claims
from tests.sigstore_local.encoding import pem_public
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import Image, RegistrySigner, push_bundle_referrer

ROOT = Path(__file__).parents[2]
IDENTITY = artifacts.DEFAULT_IDENTITY
POLICY = {"certificateIdentity": IDENTITY, "certificateOidcIssuer": ACTIONS}
REUSABLE = (
    "https://github.com/kupecloud/github-workflows/.github/workflows/publish-image.yaml"
    "@refs/heads/main"
)


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, redis_server: RedisServer, sigstore_local: LocalSigstore
) -> Iterator[CheckedClient]:
    with start_service(
        redis_url=redis_server.url,
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
    ) as (_, client):
        yield client


def verify(client: CheckedClient, image: str, policy: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/verify", json={"image": image, "policy": policy})
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


def failed_checks(verdict: dict[str, Any]) -> dict[str, str]:
    return {
        c["name"]: c["detail"]
        for s in verdict["signatures"]
        for c in s["checks"]
        if not c["passed"]
    }


# -- the keyless happy path, explained ----------------------------------------------------------


def test_keyless_signature_verifies_with_its_proof_fetched_from_rekor(
    service: CheckedClient, registry_signer: RegistrySigner, fresh_rekor: LocalSigstore
) -> None:
    image = registry_signer.image("e2e/keyless")
    signed = registry_signer.sign(image)
    fresh_rekor.requests.reset()
    verdict = verify(service, image.tag_reference, POLICY)
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["reasons"] == []
    assert verdict["image"]["digest"] == image.digest
    assert verdict["image"]["resolvedFromTag"] is True
    (sig,) = verdict["signatures"]
    assert sig["kind"] == "cosign-signature"
    assert {c["name"] for c in sig["checks"]} >= {
        "certificate-chain",
        "sct",
        "signature",
        "transparency-log",
        "log-entry-match",
        "image-digest",
        "identity",
    }
    cert = sig["certificate"]
    assert cert["subjectAlternativeNames"] == [IDENTITY]
    assert cert["issuer"] == ACTIONS
    # The legacy cosign bundle carries only a SET; the inclusion proof came from Rekor.
    entry = sig["logEntry"]
    assert entry["evidence"] == "inclusion-proof"
    assert entry["logIndex"] == signed.log_index
    assert signed.uuid is not None and entry["uuid"].endswith(signed.uuid[-64:])
    assert fresh_rekor.requests["getLogEntryByIndex"] == 1
    assert verdict["degraded"] is False


def test_github_claims_and_reusable_workflows(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    """The seed's case: a shared workflow signs for many repositories; pin both."""
    image = registry_signer.image("e2e/reusable")
    claims = github_claims(
        "kupecloud/app",
        build_repository="kupecloud/github-workflows",
        build_ref="refs/heads/main",
    )
    identity = registry_signer.signer.identity(REUSABLE, extensions=claims)
    registry_signer.sign(image, identity=identity)
    policy = {
        "certificateIdentityRegexp": (
            r"^https://github\.com/kupecloud/github-workflows/\.github/workflows/"
            r"publish-image\.yaml@refs/heads/main$"
        ),
        "certificateOidcIssuer": ACTIONS,
        "certificateGithubWorkflowRepository": "kupecloud/app",
        "extensions": {"sourceRepositoryUri": "https://github.com/kupecloud/app"},
    }
    verdict = verify(service, image.reference, policy)
    assert verdict["verified"] is True, verdict["reasons"]
    extensions = verdict["signatures"][0]["certificate"]["extensions"]
    assert extensions["sourceRepositoryUri"] == "https://github.com/kupecloud/app"
    assert extensions["buildSignerUri"].startswith("https://github.com/kupecloud/github-workflows/")
    # The same workflow acting for another repository is not this image's signer.
    other = {**policy, "extensions": {"sourceRepositoryUri": "https://github.com/kupecloud/other"}}
    refused = verify(service, image.reference, other)
    assert refused["verified"] is False
    assert any("sourceRepositoryUri" in r for r in refused["reasons"]), refused["reasons"]
    wrong_ref = {**policy, "certificateGithubWorkflowRef": "refs/heads/dev"}
    assert verify(service, image.reference, wrong_ref)["verified"] is False


def test_wrong_identity_says_who_signed_and_what_was_expected(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/identity")
    registry_signer.sign(image)
    expected = IDENTITY.replace("refs/heads/main", "refs/heads/release")
    verdict = verify(service, image.reference, {**POLICY, "certificateIdentity": expected})
    assert verdict["verified"] is False
    assert any(IDENTITY in r and expected in r for r in verdict["reasons"]), verdict["reasons"]
    issuer = verify(service, image.reference, {**POLICY, "certificateOidcIssuer": "https://x"})
    assert issuer["verified"] is False


# -- tampering: every acceptance path refuses a broken input ----------------------------------


def test_a_signature_for_another_digest_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/other-digest")
    other = registry_signer.image("e2e/other-digest", tag="other")
    payload = artifacts.simple_signing(other.digest, image.name)
    registry_signer.sign(image, payload=payload)
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert other.digest in failed_checks(verdict)["image-digest"]


def test_a_certificate_from_another_ca_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/rogue-ca")
    rogue = CertificateAuthority()
    registry_signer.sign(image, identity=registry_signer.signer.identity(IDENTITY, ca=rogue))
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert "certificate-chain" in failed_checks(verdict)


@pytest.mark.parametrize("sct", [False, "bad"])
def test_a_missing_or_bad_sct_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner, sct: bool | str
) -> None:
    image = registry_signer.image(f"e2e/sct-{sct}".lower())
    identity = registry_signer.signer.identity(IDENTITY, sct=sct)  # type: ignore[arg-type]
    registry_signer.sign(image, identity=identity)
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert "sct" in failed_checks(verdict)


def test_an_altered_signature_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/altered")
    good = registry_signer.signer.cosign_signature(image.digest, reference=image.name)
    forged = registry_signer.signer.cosign_signature(image.digest, reference=image.name)
    # The first signature's bytes under the second's certificate and log entry.
    annotations = dict(forged.annotations)
    annotations[artifacts.SIGNATURE_ANNOTATION] = good.annotations[artifacts.SIGNATURE_ANNOTATION]
    registry_signer.attach(
        image, "sig", forged.__class__(**{**vars(forged), "annotations": annotations})
    )
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert "signature" in failed_checks(verdict)


def test_a_proof_that_does_not_match_the_checkpoint_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner, fresh_rekor: LocalSigstore
) -> None:
    image = registry_signer.image("e2e/bad-proof")
    signed = registry_signer.sign(image)
    assert signed.log_index is not None
    fresh_rekor.log.tamper(signed.log_index, root_hash=b"\x00" * 32)
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert "transparency-log" in failed_checks(verdict)


def test_a_flipped_signature_byte_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/flipped")
    layer = registry_signer.signer.cosign_signature(image.digest, reference=image.name)
    raw = bytearray(base64.b64decode(layer.annotations[artifacts.SIGNATURE_ANNOTATION]))
    raw[len(raw) // 2] ^= 0x01
    annotations = {
        **layer.annotations,
        artifacts.SIGNATURE_ANNOTATION: base64.b64encode(bytes(raw)).decode(),
    }
    registry_signer.attach(image, "sig", replace(layer, annotations=annotations))
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert "signature" in failed_checks(verdict)


def test_a_signature_copied_onto_another_image_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    signed = registry_signer.image("e2e/copied")
    registry_signer.sign(signed)
    target = registry_signer.image("e2e/copied", tag="target")
    pusher = registry_signer.pusher
    manifest = pusher.get_manifest(signed.repository, signed.tag_for("sig"))
    assert manifest.status_code == 200
    content_type = manifest.headers["content-type"]
    pusher.manifest(target.repository, target.tag_for("sig"), manifest.content, content_type)
    verdict = verify(service, target.reference, POLICY)
    assert verdict["verified"] is False
    assert signed.digest in failed_checks(verdict)["image-digest"]


def test_a_certificate_expired_at_signing_time_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner, fresh_rekor: LocalSigstore
) -> None:
    """Signed (and logged) after the ten minutes its certificate was valid for."""
    image = registry_signer.image("e2e/expired")
    issued = fresh_rekor.clock() - timedelta(hours=1)
    identity = registry_signer.signer.identity(IDENTITY, not_before=issued)
    registry_signer.sign(image, identity=identity)
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert any("certificate" in name for name in failed_checks(verdict)), failed_checks(verdict)


def test_identity_regexp_mismatch_is_refused(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/regexp")
    registry_signer.sign(image)
    good = {
        "certificateIdentityRegexp": r"^https://github\.com/acme/",
        "certificateOidcIssuer": ACTIONS,
    }
    assert verify(service, image.reference, good)["verified"] is True
    bad = {**good, "certificateIdentityRegexp": r"^https://github\.com/acme/other/"}
    refused = verify(service, image.reference, bad)
    assert refused["verified"] is False
    assert any(IDENTITY in r for r in refused["reasons"]), refused["reasons"]
    issuer = {**good, "certificateOidcIssuerRegexp": "^https://accounts\\.google\\.com$"}
    del issuer["certificateOidcIssuer"]
    assert verify(service, image.reference, issuer)["verified"] is False


def test_signers_of_one_payload_each_find_their_own_log_entry(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    """Without a SET, entries are found by the payload's hash; two signers of one image sign
    the same payload, so the search finds both entries and each signature must take its own."""
    image = registry_signer.image("e2e/same-payload")
    second = IDENTITY.replace("release.yml", "publish.yml")
    registry_signer.sign(image, bundle=False)
    registry_signer.sign(image, bundle=False, identity=registry_signer.signer.identity(second))
    both = {
        "identities": [POLICY, {**POLICY, "certificateIdentity": second}],
        "threshold": 2,
    }
    verdict = verify(service, image.reference, both)
    assert verdict["verified"] is True, verdict["reasons"]
    indexes = {s["logEntry"]["logIndex"] for s in verdict["signatures"]}
    assert len(indexes) == 2


# -- the other signature kinds ---------------------------------------------------------------


def test_key_signatures_with_and_without_a_log_entry(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = pem_public(key.public_key())
    logged = registry_signer.image("e2e/key-logged")
    registry_signer.sign_with_key(logged, key, tlog=True)
    verdict = verify(service, logged.reference, {"keys": [pem]})
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["signatures"][0]["logEntry"]["evidence"] == "inclusion-proof"

    offline = registry_signer.image("e2e/key-offline")
    registry_signer.sign_with_key(offline, key)
    assert verify(service, offline.reference, {"keys": [pem]})["verified"] is False
    no_log = {"keys": [pem], "transparencyLog": {"required": False}}
    assert verify(service, offline.reference, no_log)["verified"] is True
    other = pem_public(ec.generate_private_key(ec.SECP256R1()).public_key())
    wrong = verify(service, offline.reference, {**no_log, "keys": [other]})
    assert wrong["verified"] is False
    assert "signature" in failed_checks(wrong)


def test_threshold_counts_distinct_signers(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/threshold")
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(3)]
    for key in keys[:2]:
        registry_signer.sign_with_key(image, key)
    pems = [pem_public(k.public_key()) for k in keys]
    base = {"keys": pems, "transparencyLog": {"required": False}}
    assert verify(service, image.reference, {**base, "threshold": 2})["verified"] is True
    three = verify(service, image.reference, {**base, "threshold": 3})
    assert three["verified"] is False
    assert any("threshold" in r for r in three["reasons"]), three["reasons"]


def test_attestation_verifies_and_a_foreign_subject_does_not(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.image("e2e/attest")
    registry_signer.attest(image)
    attested = {**POLICY, "acceptAttestationsAsSignatures": True}
    verdict = verify(service, image.reference, attested)
    assert verdict["verified"] is True, verdict["reasons"]
    assert [s["kind"] for s in verdict["signatures"]] == ["cosign-attestation"]
    # as `cosign verify` says: an attestation is not a signature
    assert verify(service, image.reference, POLICY)["verified"] is False

    foreign = registry_signer.image("e2e/attest-foreign")
    registry_signer.attest(foreign, subject_digest=image.digest)
    refused = verify(service, foreign.reference, attested)
    assert refused["verified"] is False


@pytest.mark.parametrize("dsse", [False, True], ids=["message-signature", "cosign-v3-dsse"])
def test_bundle_referrers_verify_offline(
    service: CheckedClient,
    registry_signer: RegistrySigner,
    fresh_rekor: LocalSigstore,
    dsse: bool,
) -> None:
    """cosign v3's image signatures: a message signature, or a DSSE statement of cosign's
    signing predicate type."""
    image = registry_signer.image(f"e2e/bundle-{int(dsse)}")
    kind: dict[str, Any] = {"predicate_type": COSIGN_SIGN_PREDICATE} if dsse else {}
    registry_signer.attach_bundle(image, dsse=dsse, **kind)
    fresh_rekor.requests.reset()
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["signatures"][0]["kind"] == "sigstore-bundle"
    assert verdict["signatures"][0]["logEntry"]["evidence"] == "inclusion-proof"
    assert fresh_rekor.requests.total == 0  # bundles carry their own proofs

    other = registry_signer.image(f"e2e/bundle-{int(dsse)}-wrong")
    wrong: dict[str, Any] = {("subject_digest" if dsse else "signed_digest"): image.digest}
    registry_signer.attach_bundle(other, dsse=dsse, **wrong, **kind)
    assert verify(service, other.reference, POLICY)["verified"] is False


def test_multi_platform_index_verifies_the_digest_asked_for(
    service: CheckedClient, registry_signer: RegistrySigner
) -> None:
    image = registry_signer.multi_platform_image("e2e/multi")
    registry_signer.sign(image)
    verdict = verify(service, image.tag_reference, POLICY)
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["image"]["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = {p["architecture"]: p["digest"] for p in verdict["image"]["platforms"]}
    assert set(platforms) == {"amd64", "arm64"}
    # The index was signed, not its platform manifests: asking for one says so.
    child: Image = image.platforms[0]
    per_platform = verify(service, child.reference, POLICY)
    assert per_platform["image"]["digest"] == child.digest
    assert per_platform["verified"] is False
    assert "no signatures found" in per_platform["reasons"]


def test_unsigned_image(service: CheckedClient, registry_signer: RegistrySigner) -> None:
    image = registry_signer.image("e2e/unsigned")
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is False
    assert verdict["signatures"] == []
    assert verdict["reasons"] == ["no signatures found"]


# -- caching -----------------------------------------------------------------------------------


def test_verdicts_and_rekor_entries_are_cached(
    service: CheckedClient,
    registry_signer: RegistrySigner,
    fresh_rekor: LocalSigstore,
    registry: RegistryServer,
    redis_server: RedisServer,
) -> None:
    image = registry_signer.image("e2e/cache")
    registry_signer.sign(image)
    fresh_rekor.requests.reset()
    first = verify(service, image.reference, POLICY)
    again = verify(service, image.tag_reference, POLICY)
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["signedVerdict"] == first["signedVerdict"]
    # A digest reference's manifest and verdict both come from Redis: the registry is not asked.
    log = registry.workdir / "registry.log"
    before = log.read_bytes().count(b"response completed")
    assert verify(service, image.reference, POLICY)["cached"] is True
    assert log.read_bytes().count(b"response completed") == before
    # A cached manifest is checked again: garbage under its key is refused and refetched.
    direct = redis.Redis.from_url(redis_server.url)
    (key,) = direct.scan_iter(f"sigverify:*:manifest:{registry.host}/{image.repository}@*")
    direct.set(key, b"application/json\n{}")
    assert verify(service, image.reference, POLICY)["image"]["digest"] == image.digest
    assert log.read_bytes().count(b"response completed") > before
    # The cached verdict names the image as this request did.
    assert again["image"]["resolvedFromTag"] is True and first["image"]["resolvedFromTag"] is False
    # Another policy is another verdict, but the log entry comes from Redis, not Rekor.
    # (The same policy spelt differently is the same policy, and the same cached verdict.)
    assert verify(service, image.reference, {"identities": [POLICY]})["cached"] is True
    strict = {**POLICY, "transparencyLog": {"allowInclusionPromise": False}}
    other = verify(service, image.reference, strict)
    assert other["cached"] is False
    assert other["verified"] is True
    assert fresh_rekor.requests["getLogEntryByIndex"] == 1


# -- the signed verdict, checked with code that shares nothing with the service ---------------


def test_signed_verdicts_check_with_openssl_and_plain_python(
    service: CheckedClient, registry_signer: RegistrySigner, tmp_path: Path
) -> None:
    image = registry_signer.image("e2e/signed-verdict")
    registry_signer.sign(image)
    verdict = verify(service, image.reference, POLICY)
    keys = service.get("/v1/keys").json()
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    (tmp_path / "key.pem").write_text(keys["keys"][0]["pem"])
    assert keys["keys"][0]["keyId"] == verdict["signedVerdict"]["signatures"][0]["keyid"]

    def check(name: str, body: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / name
        path.write_text(json.dumps(body))
        shell = subprocess.run(
            [str(ROOT / "examples/verify_verdict.sh"), str(path), str(tmp_path / "key.pem")],
            capture_output=True,
            text=True,
            check=False,
        )
        python = subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/verify_verdict.py"),
                str(path),
                str(tmp_path / "keys.json"),
                image.digest,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert shell.returncode == python.returncode, (shell.stderr, python.stderr)
        return python

    good = check("good.json", verdict)
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() == "PASSED"
    # Flip the result inside the signed payload: the signature no longer holds.
    statement = json.loads(__import__("base64").b64decode(verdict["signedVerdict"]["payload"]))
    statement["predicate"]["verificationResult"] = "FAILED"
    tampered = json.loads(json.dumps(verdict))
    tampered["signedVerdict"]["payload"] = (
        __import__("base64")
        .b64encode(json.dumps(statement, separators=(",", ":"), sort_keys=True).encode())
        .decode()
    )
    assert check("tampered.json", tampered).returncode == 1


DSSE = artifacts.DSSE_ENVELOPE
DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 kB of JSON nested beyond any parser's recursion


@pytest.mark.parametrize("where", ["signature", "attestation", "attestation-statement", "bundle"])
def test_deeply_nested_json_in_a_signature_is_a_verdict_not_a_crash(
    service: CheckedClient, registry_signer: RegistrySigner, where: str
) -> None:
    """Signature layers are the signer's bytes: JSON nested too deeply for the parser is a
    failed check in a signed verdict, never a 500."""
    image = registry_signer.image(f"e2e/deep-{where}")
    registry_signer.sign(image)  # a good signature next to it still counts
    layer = registry_signer.signer.cosign_signature(image.digest, reference=image.name)
    if where == "signature":
        registry_signer.attach(image, "sig", replace(layer, payload=DEEP))
    elif where == "attestation":
        registry_signer.attach(image, "att", replace(layer, payload=DEEP, media_type=DSSE))
    elif where == "attestation-statement":
        envelope = json.dumps(
            {
                "payloadType": "application/vnd.in-toto+json",
                "payload": base64.b64encode(DEEP).decode(),
                "signatures": [{"sig": "AAAA"}],
            }
        ).encode()
        registry_signer.attach(image, "att", replace(layer, payload=envelope, media_type=DSSE))
    else:
        push_bundle_referrer(
            registry_signer.pusher,
            image.repository,
            image.descriptor(),
            DEEP,
            content="message-signature",
        )
    verdict = verify(service, image.reference, POLICY)
    assert verdict["verified"] is True  # the good signature
    broken = [s for s in verdict["signatures"] if not s["verified"]]
    assert len(broken) == 1 and broken[0]["reasons"], verdict["signatures"]
    assert verdict["signedVerdict"]["signatures"]
