"""A failure is a verdict, Rekor reachable or not: the tamper matrix through gunicorn with Rekor
stopped (nothing listens at its address) and with no Rekor at all (`SIGVERIFY_REKOR_LOOKUPS=false`,
the air-gapped setup).

A wrong identity, issuer, key, digest, chain, SCT or signature is a signed `verified: false`
verdict in both; only an outcome that log evidence alone decides (a good signer whose evidence
must be fetched) is `502 rekor-unavailable` while Rekor is stopped, and a final failure when no
Rekor is configured (nothing will ever be fetched).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer, free_port
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS, CertificateAuthority
from tests.sigstore_local.encoding import pem_public
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

IDENTITY = artifacts.DEFAULT_IDENTITY
POLICY = {"certificateIdentity": IDENTITY, "certificateOidcIssuer": ACTIONS}
STRICT = {**POLICY, "transparencyLog": {"allowInclusionPromise": False}}
KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Case:
    """An image made by `make`, asked about under `policy`; `stopped` and `off` are what each
    setup answers: a failed check's name for a failure verdict, "verified", or an HTTP status."""

    make: Callable[[RegistrySigner, str], str]
    policy: dict[str, Any]
    stopped: str | int
    off: str | int


def signed(
    identity: dict[str, Any] | None = None, **options: Any
) -> Callable[[RegistrySigner, str], str]:
    """A keyless `cosign sign` (options as `Signer.cosign_signature`; `identity` options as
    `Signer.identity`)."""

    def make(signer: RegistrySigner, repo: str) -> str:
        image = signer.image(repo)
        if identity is not None:
            options["identity"] = signer.signer.identity(IDENTITY, **identity)
        signer.sign(image, **options)
        return image.reference

    return make


def for_another_digest(signer: RegistrySigner, repo: str) -> str:
    image = signer.image(repo)
    other = signer.image(repo, tag="other")
    signer.sign(image, payload=artifacts.simple_signing(other.digest, image.name))
    return image.reference


def flipped(*, bundle: bool = True) -> Callable[[RegistrySigner, str], str]:
    """A signature with one byte flipped, with its SET annotation or without."""

    def make(signer: RegistrySigner, repo: str) -> str:
        image = signer.image(repo)
        layer = signer.signer.cosign_signature(image.digest, reference=image.name, bundle=bundle)
        raw = bytearray(base64.b64decode(layer.annotations[artifacts.SIGNATURE_ANNOTATION]))
        raw[len(raw) // 2] ^= 0x01
        annotations = {
            **layer.annotations,
            artifacts.SIGNATURE_ANNOTATION: base64.b64encode(bytes(raw)).decode(),
        }
        signer.attach(image, "sig", replace(layer, annotations=annotations))
        return image.reference

    return make


def copied(signer: RegistrySigner, repo: str) -> str:
    source = signer.image(repo)
    signer.sign(source)
    target = signer.image(repo, tag="target")
    manifest = signer.pusher.get_manifest(source.repository, source.tag_for("sig"))
    signer.pusher.manifest(
        target.repository,
        target.tag_for("sig"),
        manifest.content,
        manifest.headers["content-type"],
    )
    return target.reference


def expired(signer: RegistrySigner, repo: str) -> str:
    image = signer.image(repo)
    issued = signer.signer.ca.clock() - timedelta(hours=1)
    signer.sign(image, identity=signer.signer.identity(IDENTITY, not_before=issued))
    return image.reference


def key_signed(*, bundle: bool) -> Callable[[RegistrySigner, str], str]:
    """`cosign sign --key` with KEY, logged, with the SET annotation or without."""

    def make(signer: RegistrySigner, repo: str) -> str:
        image = signer.image(repo)
        signer.sign_with_key(image, KEY, tlog=True, bundle=bundle)
        return image.reference

    return make


def unsigned(signer: RegistrySigner, repo: str) -> str:
    return signer.image(repo).reference


OTHER_SIGNER = "https://github.com/acme/app/.github/workflows/dev.yml@refs/heads/dev"
CASES: dict[str, Case] = {
    # what the signature carries decides, with or without Rekor
    "verified-by-its-set": Case(signed(), POLICY, "verified", "verified"),
    "wrong-identity": Case(
        signed(), {**POLICY, "certificateIdentity": OTHER_SIGNER}, "identity", "identity"
    ),
    "wrong-issuer": Case(
        signed(),
        {**POLICY, "certificateOidcIssuer": "https://accounts.google.com"},
        "identity",
        "identity",
    ),
    "identity-regexp": Case(
        signed(),
        {"certificateIdentityRegexp": "^https://gitlab\\.com/", "certificateOidcIssuer": ACTIONS},
        "identity",
        "identity",
    ),
    "another-digest": Case(for_another_digest, POLICY, "image-digest", "image-digest"),
    "another-ca": Case(
        signed({"ca": CertificateAuthority()}), POLICY, "certificate-chain", "certificate-chain"
    ),
    "no-sct": Case(signed({"sct": False}), POLICY, "sct", "sct"),
    "bad-sct": Case(signed({"sct": "bad"}), POLICY, "sct", "sct"),
    "flipped-signature": Case(flipped(), POLICY, "signature", "signature"),
    "copied-onto-another-image": Case(copied, POLICY, "image-digest", "image-digest"),
    "expired-at-signing": Case(expired, POLICY, "certificate-validity", "certificate-validity"),
    "unsigned": Case(unsigned, POLICY, "no-signatures", "no-signatures"),
    "wrong-key": Case(
        key_signed(bundle=True),
        {"keys": [pem_public(OTHER_KEY.public_key())]},
        "signature",
        "signature",
    ),
    # no SET: the evidence must be fetched, so only a wrong signer is known without Rekor
    "unlogged-wrong-identity": Case(
        signed(bundle=False),
        {**POLICY, "certificateIdentity": OTHER_SIGNER},
        "identity",
        "identity",
    ),
    "unlogged-another-ca": Case(
        signed({"ca": CertificateAuthority()}, bundle=False),
        POLICY,
        "certificate-chain",
        "certificate-chain",
    ),
    "unlogged-no-sct": Case(signed({"sct": False}, bundle=False), POLICY, "sct", "sct"),
    "unlogged-flipped-signature": Case(flipped(bundle=False), POLICY, "signature", "signature"),
    "unlogged-good-signer": Case(signed(bundle=False), POLICY, 502, "transparency-log"),
    "proof-required": Case(signed(), STRICT, 502, "transparency-log"),
    "key-without-set": Case(
        key_signed(bundle=False), {"keys": [pem_public(KEY.public_key())]}, 502, "transparency-log"
    ),
}


def answer(client: CheckedClient, image: str, policy: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/verify", json={"image": image, "policy": policy})
    body: dict[str, Any] = response.json()
    return response.status_code, body


def check_answer(expected: str | int, status: int, body: dict[str, Any]) -> None:
    """The answer is what the case expects: a status; "verified"; or a failure verdict whose
    final (not log-awaiting) failed checks include `expected` ("no-signatures": none found)."""
    if isinstance(expected, int):
        assert status == expected, body
        return
    assert status == 200, body
    if expected == "verified":
        assert body["verified"] is True, body["reasons"]
        return
    assert body["verified"] is False
    if expected == "no-signatures":
        assert body["signatures"] == [] and body["reasons"][0] == "no signatures found"
        return
    final = {
        c["name"]
        for s in body["signatures"]
        for c in s["checks"]
        if not c["passed"] and not c.get("awaitingLog")
    }
    assert expected in final, body["signatures"]


def rekor_settings(sigstore: LocalSigstore, **extra: str) -> dict[str, str]:
    return {
        "trust_root_file": str(sigstore.trusted_root_path),
        "verdict_ttl": "0",
        "rekor_retries": "0",
        "rekor_timeout": "0.5",
        "rekor_breaker_failures": "1000",
        **extra,
    }


@pytest.fixture(scope="module")
def stopped(
    start_service: ServiceFactory, sigstore_local: LocalSigstore
) -> Iterator[CheckedClient]:
    """Rekor configured but stopped: nothing listens at its address."""
    settings = rekor_settings(sigstore_local, rekor_url=f"http://127.0.0.1:{free_port()}")
    with start_service(**settings) as (_, client):
        yield client


@pytest.fixture(scope="module")
def off(start_service: ServiceFactory, sigstore_local: LocalSigstore) -> Iterator[CheckedClient]:
    """No Rekor at all: the air-gapped setup."""
    with start_service(**rekor_settings(sigstore_local, rekor_lookups="false")) as (_, client):
        yield client


@pytest.fixture(scope="module")
def images(sigstore_local: LocalSigstore, registry: RegistryServer) -> Iterator[dict[str, str]]:
    """Every case's image, made once for both setups."""
    with sigstore_local.registry_signer(registry.url) as signer:
        yield {name: case.make(signer, f"absent/{name}") for name, case in CASES.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_with_rekor_stopped(stopped: CheckedClient, images: dict[str, str], name: str) -> None:
    case = CASES[name]
    status, body = answer(stopped, images[name], case.policy)
    check_answer(case.stopped, status, body)
    if status == 200:
        assert body["degraded"] is (body["rekor"]["status"] == "unreachable")
        if not body["verified"]:
            assert body["signedVerdict"]["payloadType"] == "application/vnd.in-toto+json"
    else:
        assert body["type"].endswith("/rekor-unavailable")


@pytest.mark.parametrize("name", list(CASES))
def test_with_no_rekor(off: CheckedClient, images: dict[str, str], name: str) -> None:
    case = CASES[name]
    status, body = answer(off, images[name], case.policy)
    check_answer(case.off, status, body)
    assert body["degraded"] is False
    assert body["rekor"]["status"] == "off"
    if case.off == "transparency-log":
        tlog = [
            c for s in body["signatures"] for c in s["checks"] if c["name"] == "transparency-log"
        ]
        assert "rekor lookups are off here" in tlog[0]["detail"]


def test_a_wrong_signer_says_who_signed_and_that_rekor_was_not_reached(
    stopped: CheckedClient, images: dict[str, str]
) -> None:
    status, body = answer(
        stopped, images["unlogged-wrong-identity"], CASES["unlogged-wrong-identity"].policy
    )
    assert status == 200 and body["verified"] is False and body["degraded"] is True
    assert any(f"signed by {IDENTITY}, expected {OTHER_SIGNER}" in r for r in body["reasons"])
    assert "does not depend on it" in body["reasons"][-1]
    assert body["rekor"]["status"] == "unreachable"


def test_batch_items_are_verdicts_where_rekor_cannot_change_them(
    stopped: CheckedClient, images: dict[str, str]
) -> None:
    names = ["unlogged-wrong-identity", "unlogged-good-signer", "verified-by-its-set"]
    body = {
        "images": [{"image": images[n], "policy": CASES[n].policy} for n in names],
    }
    response = stopped.post("/v1/verify/batch", json=body)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == [200, 502, 200]
    assert results[0]["verdict"]["verified"] is False
    assert results[1]["problem"]["type"].endswith("/rekor-unavailable")
    assert results[2]["verdict"]["verified"] is True
