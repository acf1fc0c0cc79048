"""Attestation requirements and several trust roots, end to end through gunicorn.

The local Sigstore instance attests images as cosign does (`.att` and bundle v0.3 referrers,
keyless and with a key); GitHub's real artifact attestation (its private instance: signed
timestamps, no log) is pushed as a referrer and verified with GitHub's trusted root, configured
next to the default one with `SIGVERIFY_TRUST_ROOTS`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract import CheckedClient
from tests.core.data import (
    GITHUB_ACTIONS,
    GITHUB_IMAGE,
    GITHUB_IMAGE_SIGNER,
    GITHUB_ROOT,
    WHL,
    WHL_SIGNER,
    github_bundle,
    whl_bundle,
)
from tests.e2e.conftest import ServiceFactory, ref
from tests.oci import OCI_MANIFEST, Descriptor, Pusher
from tests.servers import RedisServer, RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS, github_claims, p256
from tests.sigstore_local.encoding import pem_public, public_key_of
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner, push_bundle_referrer

IDENTITY = artifacts.DEFAULT_IDENTITY
POLICY = {"certificateIdentity": IDENTITY, "certificateOidcIssuer": ACTIONS}
# For images that carry attestations only: count them as signatures (cosign verify-attestation).
ATTESTED = {**POLICY, "acceptAttestationsAsSignatures": True}
BUILDER = "https://github.com/acme/builders/.github/workflows/build.yml@refs/tags/v1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
SPDX = "https://spdx.dev/Document"
PROVENANCE = {
    "builder": {"id": BUILDER},
    "buildType": "https://github.com/acme/builders/container@v1",
    "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/heads/main"}},
}
FROM_THE_CERTIFICATES_REPOSITORY = {
    "path": "predicate.invocation.configSource.uri",
    "startsWith": "git+${certificate.sourceRepositoryUri}@",
}
PROVENANCE_REQUIREMENT = {
    "name": "provenance",
    "predicateType": "slsaprovenance",
    "conditions": [
        {"path": "predicate.builder.id", "equals": BUILDER},
        FROM_THE_CERTIFICATES_REPOSITORY,
    ],
}


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory,
    redis_server: RedisServer,
    sigstore_local: LocalSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CheckedClient]:
    policies = tmp_path_factory.mktemp("policies") / "policies.yaml"
    policies.write_text(
        "policies:\n"
        "  - name: github-built\n"
        "    tenant: platform\n"
        "    mode: enforce\n"
        "    policy:\n"
        f"      certificateIdentity: {GITHUB_IMAGE_SIGNER}\n"
        f"      certificateOidcIssuer: {GITHUB_ACTIONS}\n"
        "      trustRoots: [default, github]\n"
        "      acceptAttestationsAsSignatures: true\n"
        "      attestations:\n"
        "        - predicateType: slsaprovenance1\n"
        "          conditions:\n"
        "            - path: predicate.buildDefinition.externalParameters.workflow.repository\n"
        "              equals: ${certificate.sourceRepositoryUri}\n"
    )
    with start_service(
        redis_url=redis_server.url,
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        trust_roots=f"github={GITHUB_ROOT}",
        policy_file=str(policies),
    ) as (_, client):
        yield client


def verify(client: CheckedClient, image: str, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/verify", json={"image": image, **body})
    assert response.status_code == 200, response.text
    verdict: dict[str, Any] = response.json()
    return verdict


@pytest.fixture
def github_signer(registry_signer: RegistrySigner) -> Any:
    """A keyless identity with GitHub Actions claims (acme/app, main)."""
    return registry_signer.signer.identity(extensions=github_claims())


def test_provenance_attestation_from_cosign_attest_meets_the_requirement(
    service: CheckedClient, registry_signer: RegistrySigner, github_signer: Any
) -> None:
    image = registry_signer.image("attest/cosign-att")
    registry_signer.sign(image, identity=github_signer)
    registry_signer.attest(
        image, predicate_type=SLSA_V02, predicate=PROVENANCE, identity=github_signer
    )
    policy = {**POLICY, "attestations": [PROVENANCE_REQUIREMENT]}
    verdict = verify(service, image.tag_reference, policy=policy)
    assert verdict["verified"] is True, verdict["reasons"]
    (requirement,) = verdict["attestations"]
    assert requirement["name"] == "provenance" and requirement["satisfied"] is True
    (found,) = requirement["attestations"]
    assert found["kind"] == "cosign-attestation" and found["verified"] is True
    assert [c["held"] for c in found["conditions"]] == [True, True]
    kinds = {s["kind"]: s["predicateType"] for s in verdict["signatures"]}
    assert kinds == {"cosign-signature": None, "cosign-attestation": SLSA_V02}

    # Another builder: the signature still verifies, the requirement does not, and the signed
    # verdict says which condition failed and what the attestation held.
    wrong = {
        **PROVENANCE_REQUIREMENT,
        "conditions": [{"path": "predicate.builder.id", "equals": "x"}],
    }
    failed = verify(service, image.tag_reference, policy={**POLICY, "attestations": [wrong]})
    assert failed["verified"] is False and failed["signers"] and failed["signedVerdict"]
    assert failed["reasons"] == [
        f"attestation provenance {found['digest']}: condition predicate.builder.id equals x: "
        f"found {BUILDER}"
    ]


def test_several_requirements_from_several_sources(
    service: CheckedClient, registry_signer: RegistrySigner, github_signer: Any
) -> None:
    """Provenance as a `.att` layer, an SBOM as a DSSE bundle referrer (cosign v3): both are
    required, both found."""
    sbom = {"spdxVersion": "SPDX-2.3", "name": "app", "packages": [{"name": "openssl"}]}
    policy = {
        **ATTESTED,
        "attestations": [
            PROVENANCE_REQUIREMENT,
            {
                "name": "sbom",
                "predicateType": "spdxjson",
                "conditions": [{"path": "predicate.spdxVersion", "matches": "^SPDX-2\\."}],
            },
        ],
    }
    both, provenance_only = (
        registry_signer.image(f"attest/two-sources-{n}") for n in ("both", "one")
    )
    for image in (both, provenance_only):
        registry_signer.attest(
            image, predicate_type=SLSA_V02, predicate=PROVENANCE, identity=github_signer
        )
    registry_signer.attach_bundle(
        both, dsse=True, predicate_type=SPDX, predicate=sbom, identity=github_signer
    )
    missing = verify(service, provenance_only.tag_reference, policy=policy)
    assert missing["verified"] is False
    assert missing["reasons"] == [
        f"attestation sbom: found no attestation of type {SPDX} (types found: {SLSA_V02})"
    ]
    after = verify(service, both.tag_reference, policy=policy)
    assert after["verified"] is True, after["reasons"]
    assert [a["attestations"][0]["kind"] for a in after["attestations"]] == [
        "cosign-attestation",
        "sigstore-bundle",
    ]


def test_an_attestation_of_another_signer_or_image_does_not_count(
    service: CheckedClient, registry_signer: RegistrySigner, github_signer: Any
) -> None:
    image = registry_signer.image("attest/forged")
    registry_signer.sign(image, identity=github_signer)
    # Someone else's provenance, claiming our builder: signed, but not by whom the policy says.
    stranger = registry_signer.signer.identity(
        "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main",
        extensions=github_claims("evil/app"),
    )
    registry_signer.attest(image, predicate_type=SLSA_V02, predicate=PROVENANCE, identity=stranger)
    # Our provenance, but about another image.
    registry_signer.attest(
        image,
        predicate_type=SLSA_V02,
        predicate=PROVENANCE,
        identity=github_signer,
        subject_digest="sha256:" + "0" * 64,
    )
    verdict = verify(
        service, image.tag_reference, policy={**POLICY, "attestations": [PROVENANCE_REQUIREMENT]}
    )
    assert verdict["verified"] is False
    matches = verdict["attestations"][0]["attestations"]
    assert len(matches) == 2 and not any(m["satisfied"] for m in matches)
    reasons = " ".join(verdict["reasons"])
    assert "identity: signed by https://github.com/evil/app" in reasons
    assert "image-digest: in-toto subjects are sha256:" + "0" * 64 in reasons


def test_a_key_signed_attestation_with_the_requirements_own_key(
    service: CheckedClient, registry_signer: RegistrySigner, github_signer: Any
) -> None:
    """The image is signed keyless; its scan results are attested with the scanner's key."""
    image = registry_signer.image("attest/keyed")
    registry_signer.sign(image, identity=github_signer)
    scanner = p256()
    scan = {
        "scanner": {"uri": "pkg:github/aquasecurity/trivy"},
        "metadata": {"scanFinishedOn": "x"},
    }
    vuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
    registry_signer.attest(image, predicate_type=vuln, predicate=scan, key=scanner, tlog=False)
    requirement = {
        "name": "scan",
        "predicateType": "vuln",
        "keys": [pem_public(public_key_of(scanner))],
        "conditions": [{"path": "predicate.scanner.uri", "startsWith": "pkg:github/aquasecurity/"}],
    }
    policy = {
        **POLICY,
        "transparencyLog": {"required": False},
        "attestations": [requirement],
    }
    verdict = verify(service, image.tag_reference, policy=policy)
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["attestations"][0]["attestations"][0]["signer"].startswith(
        "attestations[0].keys[0]"
    )
    other_key = {**requirement, "keys": [pem_public(public_key_of(p256()))]}
    refused = verify(service, image.tag_reference, policy={**policy, "attestations": [other_key]})
    assert refused["verified"] is False
    assert any("does not verify with any policy key" in r for r in refused["reasons"])


# -- GitHub's private instance, next to the default root ----------------------------------


@pytest.fixture(scope="module")
def github_image(pusher: Pusher, registry: RegistryServer) -> str:
    """GitHub's attestation, as GitHub attaches it: a referrer of the image (whose own
    manifest is not here; the digest is looked up as it is)."""
    subject = Descriptor(OCI_MANIFEST, GITHUB_IMAGE, 1234)
    push_bundle_referrer(
        pusher,
        "github/opa-provider",
        subject,
        github_bundle().bundle,
        content="dsse-envelope",
        predicate_type="https://slsa.dev/provenance/v1",
    )
    return ref(registry, "github/opa-provider", "@" + GITHUB_IMAGE)


def test_githubs_attestation_verifies_with_githubs_trust_root(
    service: CheckedClient, github_image: str
) -> None:
    policy = {
        "certificateIdentity": GITHUB_IMAGE_SIGNER,
        "certificateOidcIssuer": GITHUB_ACTIONS,
        "trustRoots": ["default", "github"],
        "acceptAttestationsAsSignatures": True,  # as `gh attestation verify oci://...`
    }
    verdict = verify(service, github_image, policy=policy)
    assert verdict["verified"] is True, verdict["reasons"]
    # It is an attestation, not a signature: `cosign verify` would find no signatures.
    plain = {k: v for k, v in policy.items() if k != "acceptAttestationsAsSignatures"}
    unsigned = verify(service, github_image, policy=plain)
    assert unsigned["verified"] is False
    assert any(
        r.startswith("no signatures found: found 1 attestation") for r in unsigned["reasons"]
    )
    assert unsigned["signatures"][0]["role"] == "attestation"
    assert verdict["trustRoot"]["names"] == ["default", "github"]
    (sig,) = verdict["signatures"]
    assert sig["trustRoot"] == "github" and sig["logEntry"] is None
    assert {c["name"] for c in sig["checks"]} >= {"timestamp", "certificate-chain", "signature"}
    # The same attestation under the default root only: refused.
    default_only = verify(service, github_image, policy={**policy, "trustRoots": ["default"]})
    assert default_only["verified"] is False
    assert default_only["trustRoot"]["names"] == ["default"]
    # The named policy adds a provenance requirement.
    named = verify(service, github_image, policyName="github-built")
    assert named["verified"] is True, named["reasons"]
    assert named["attestations"][0]["satisfied"] is True


def test_an_unknown_trust_root_is_a_400_naming_the_field(
    service: CheckedClient, github_image: str
) -> None:
    policy = {"certificateIdentity": GITHUB_IMAGE_SIGNER, "trustRoots": ["default", "gitlab"]}
    response = service.post("/v1/verify", json={"image": github_image, "policy": policy})
    assert response.status_code == 400
    problem = response.json()
    assert list(problem["errors"]) == ["policy.trustRoots[1]"]
    assert "default, github" in problem["errors"]["policy.trustRoots[1]"][0]


def test_githubs_wheel_attestation_through_verify_bundle(service: CheckedClient) -> None:
    body = {
        "bundle": json.loads(whl_bundle()),
        "artifactDigest": "sha256:" + hashlib.sha256(WHL.read_bytes()).hexdigest(),
        "policy": {
            "certificateIdentity": WHL_SIGNER,
            "certificateOidcIssuer": GITHUB_ACTIONS,
            "trustRoots": ["github"],
            "attestations": [{"predicateType": "slsaprovenance1"}],
        },
    }
    response = service.post("/v1/verify/bundle", json=body)
    assert response.status_code == 200, response.text
    verdict = response.json()
    assert verdict["verified"] is True, verdict["reasons"]
    assert verdict["signatures"][0]["trustRoot"] == "github"
    broken = {**body, "bundle": json.loads(whl_bundle("-missing-cert"))}
    assert service.post("/v1/verify/bundle", json=broken).json()["verified"] is False


def test_conditions_share_one_budget_per_verification(
    service: CheckedClient, registry_signer: RegistrySigner, github_signer: Any
) -> None:
    """A large statement and repeated conditions: the walk stops at the budget, and what it
    did not finish does not hold (the verdict fails closed)."""
    image = registry_signer.image("attest/large")
    materials = [{"uri": f"pkg:{i}"} for i in range(25_000)]
    registry_signer.attest(
        image,
        predicate_type=SLSA_V02,
        predicate={**PROVENANCE, "materials": materials},
        identity=github_signer,
    )
    condition = {"path": "predicate.materials[*].uri", "startsWith": "pkg:"}
    requirement = {"name": "big", "predicateType": "slsaprovenance", "conditions": [condition] * 5}
    verdict = verify(
        service, image.tag_reference, policy={**ATTESTED, "attestations": [requirement]}
    )
    assert verdict["verified"] is False
    held = [c["held"] for c in verdict["attestations"][0]["attestations"][0]["conditions"]]
    # each walk visits about 50,000 nodes of the 200,000 allowed
    assert held == [True, True, True, False, False]
    assert "evaluation stopped after" in verdict["reasons"][0]
