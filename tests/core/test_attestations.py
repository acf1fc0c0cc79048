"""Attestation requirements and several trust roots, against real third-party data.

slsa-verifier's cosign attestations (SLSA provenance v0.2, production Sigstore) and GitHub's
artifact attestations (SLSA provenance v1, GitHub's private instance: signed timestamps and no
transparency log), with the negatives their upstream tests expect, and tampered copies.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from service.core import (
    BundleSignature,
    CosignAttestation,
    ImageResult,
    PolicyError,
    TrustRoot,
    policy_from_mapping,
    verify_artifact,
)
from tests.core import data
from tests.core.data import (
    GITHUB_ACTIONS,
    GITHUB_IMAGE,
    GITHUB_IMAGE_SIGNER,
    WHL,
    WHL_SIGNER,
    github_bundle,
    github_root,
    production_root,
    sha256_digest,
    slsa_attestations,
    whl_bundle,
)

NOW = datetime(2026, 11, 24, tzinfo=UTC)
run = functools.partial(data.run, now=NOW)
GENERATOR = (
    "https://github.com/slsa-framework/slsa-github-generator/.github/workflows/"
    "generator_container_slsa3.yml@refs/tags/"
)
SLSA_VERSIONS = ("v1.4.0", "v2.0.0", "v2.1.0")


@pytest.fixture(scope="module")
def production() -> TrustRoot:
    return production_root()


@pytest.fixture(scope="module")
def github() -> TrustRoot:
    return github_root()


def slsa_policy(version: str, *conditions: dict[str, Any], **requirement: Any) -> dict[str, Any]:
    """slsa-verifier's check of a container provenance: the builder, and the source repository
    being the certificate's (as `--source-uri github.com/slsa-framework/example-package`)."""
    return {
        "certificateIdentity": GENERATOR + version,
        "certificateOidcIssuer": GITHUB_ACTIONS,
        # The generator's images carry attestations only: count them, as slsa-verifier does.
        "acceptAttestationsAsSignatures": True,
        "attestations": [
            {
                "name": "provenance",
                "predicateType": "slsaprovenance",
                "conditions": list(conditions)
                or [
                    {"path": "predicate.builder.id", "equals": GENERATOR + version},
                    {
                        "path": "predicate.invocation.configSource.uri",
                        "startsWith": "git+https://github.com/${certificate.githubWorkflowRepository}@",
                    },
                    {
                        "path": "predicate.buildType",
                        "equals": "https://github.com/slsa-framework/slsa-github-generator/container@v1",
                    },
                ],
                **requirement,
            }
        ],
    }


@pytest.mark.parametrize("version", SLSA_VERSIONS)
def test_slsa_provenance_requirement_is_met(production: TrustRoot, version: str) -> None:
    image, atts = slsa_attestations(version)
    result = run(production, image, atts, slsa_policy(version))
    assert result.verified, result.reasons
    (requirement,) = result.attestations
    assert (
        requirement.satisfied and requirement.predicate_type == "https://slsa.dev/provenance/v0.2"
    )
    (match,) = requirement.matches
    assert match.signature.verified and [c.held for c in match.conditions] == [True, True, True]
    doc = result.to_dict()["attestations"][0]
    assert doc["attestations"][0]["conditions"][1]["detail"].startswith(
        "found git+https://github.com/slsa-framework/example-package@"
    )
    assert result.signatures[0].predicate_type == "https://slsa.dev/provenance/v0.2"


SOURCE = "predicate.invocation.configSource.uri"


@pytest.mark.parametrize(
    ("name", "condition", "reason"),
    [
        (
            "wrong source",
            {"path": SOURCE, "startsWith": "git+https://github.com/slsa-framework/other-package@"},
            "condition predicate.invocation.configSource.uri startsWith",
        ),
        (
            "wrong branch",
            {"path": SOURCE, "matches": "@refs/heads/release$"},
            "found git+https://github.com/slsa-framework/example-package@refs/heads/main",
        ),
        (
            "wrong builder",
            {"path": "predicate.builder.id", "equals": GENERATOR + "v9.9.9"},
            "condition predicate.builder.id equals " + GENERATOR + "v9.9.9",
        ),
        (
            "wrong tag",
            {
                "path": SOURCE,
                "equals": "git+https://github.com/slsa-framework/example-package@refs/tags/v0.0.1",
            },
            "refs/tags/v0.0.1",
        ),
    ],
)
def test_slsa_requirement_fails_as_upstream_expects(
    production: TrustRoot, name: str, condition: dict[str, Any], reason: str
) -> None:
    image, atts = slsa_attestations("v2.1.0")
    result = run(production, image, atts, slsa_policy("v2.1.0", condition))
    assert not result.verified, name
    # the signature verified; the attestation's content is what fails
    assert result.signers and not result.attestations[0].satisfied
    assert any(reason in r and r.startswith("attestation provenance ") for r in result.reasons), (
        result.reasons
    )


def test_a_missing_predicate_type_is_named(production: TrustRoot) -> None:
    image, atts = slsa_attestations("v2.1.0")
    policy = slsa_policy("v2.1.0")
    policy["attestations"][0]["predicateType"] = "cyclonedx"
    result = run(production, image, atts, policy)
    assert not result.verified
    assert result.reasons == (
        "attestation provenance: found no attestation of type https://cyclonedx.org/bom "
        "(types found: https://slsa.dev/provenance/v0.2)",
    )


def test_a_requirement_with_its_own_signers(production: TrustRoot) -> None:
    image, atts = slsa_attestations("v2.1.0")
    stranger = slsa_policy("v2.1.0", identities=[{"certificateIdentity": "https://example.com/ci"}])
    result = run(production, image, atts, stranger)
    assert not result.verified and result.signers  # the image's signer is fine, the requirement not
    assert any("expected https://example.com/ci" in r for r in result.reasons), result.reasons
    builders = slsa_policy(
        "v2.1.0",
        identities=[{"certificateIdentityRegexp": "^https://github\\.com/slsa-framework/"}],
    )
    assert run(production, image, atts, builders).verified


def test_a_tampered_attestation_never_meets_a_requirement(production: TrustRoot) -> None:
    """The statement is rewritten to satisfy the condition; the signature then fails, so the
    conditions that hold on it count for nothing."""
    image, (att,) = slsa_attestations("v2.1.0")
    envelope = json.loads(att.payload)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["builder"]["id"] = "https://evil.example/builder"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    raw = json.dumps(envelope).encode()
    forged = dataclasses.replace(att, payload=raw, layer_digest=sha256_digest(raw))
    policy = slsa_policy(
        "v2.1.0", {"path": "predicate.builder.id", "equals": "https://evil.example/builder"}
    )
    result = run(production, image, [forged], policy)
    assert not result.verified
    (match,) = result.attestations[0].matches
    assert [c.held for c in match.conditions] == [True]
    assert not match.signature.verified and not match.satisfied
    assert "signature" in {c.name for c in match.signature.checks if not c.passed}


# -- GitHub's private instance: timestamps, no log, several trust roots --------------------


def github_policy(*roots: str, **extra: Any) -> dict[str, Any]:
    """`gh attestation verify oci://...`: the image's attestation is what is verified."""
    return {
        "certificateIdentity": GITHUB_IMAGE_SIGNER,
        "certificateOidcIssuer": GITHUB_ACTIONS,
        "trustRoots": list(roots),
        "acceptAttestationsAsSignatures": True,
        **extra,
    }


def failed(result: ImageResult) -> dict[str, str]:
    return {c.name: c.detail for s in result.signatures for c in s.checks if not c.passed}


def test_github_attestation_verifies_with_githubs_trust_root(
    production: TrustRoot, github: TrustRoot
) -> None:
    roots = [production, github]
    result = run(roots, GITHUB_IMAGE, [github_bundle()], github_policy("default", "github"))
    assert result.verified, result.reasons
    (sig,) = result.signatures
    assert sig.trust_root == "github" and sig.log_entry is None
    checks = {c.name: c.detail for c in sig.checks}
    assert checks["timestamp"] == "1 of 1 signed timestamps verified (2025-05-07T08:05:10Z)"
    assert checks["transparency-log"] == "not applicable: trust root github has no log"
    assert checks["sct"] == "not applicable: trust root github has no ct log"
    assert checks["certificate-chain"].startswith("chains to fulcio.githubapp.com")
    # GitHub's root alone is enough; the public-good root alone is not (upstream: "invalid")
    assert run([github], GITHUB_IMAGE, [github_bundle()], github_policy("github")).verified
    public = run(roots, GITHUB_IMAGE, [github_bundle()], github_policy("default"))
    assert not public.verified
    assert set(failed(public)) == {"timestamp"}


def test_github_attestation_with_a_provenance_requirement(
    production: TrustRoot, github: TrustRoot
) -> None:
    same_repository = {
        "path": "predicate.buildDefinition.externalParameters.workflow.repository",
        "equals": "${certificate.sourceRepositoryUri}",
    }
    requirement: dict[str, Any] = {
        "predicateType": "slsaprovenance1",
        "conditions": [
            same_repository,
            {"path": "predicate.runDetails.builder.id", "equals": "${certificate.subject}"},
        ],
    }
    policy = github_policy("default", "github", attestations=[requirement])
    result = run([production, github], GITHUB_IMAGE, [github_bundle()], policy)
    assert result.verified, result.reasons
    assert result.attestations[0].matches[0].signature.trust_root == "github"
    same_repository["equals"] = "https://github.com/github/other"
    assert not run([production, github], GITHUB_IMAGE, [github_bundle()], policy).verified


def _edit(bundle: BundleSignature, change: Any) -> BundleSignature:
    doc = json.loads(bundle.bundle)
    change(doc)
    raw = json.dumps(doc).encode()
    return BundleSignature(raw, sha256_digest(raw), bundle.source)


def _statement(doc: dict[str, Any], change: Any) -> None:
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    change(statement)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _other_timestamp(doc: dict[str, Any]) -> None:
    """A real GitHub timestamp, but over another signature (the wheel's attestation)."""
    other = json.loads(whl_bundle())
    doc["verificationMaterial"]["timestampVerificationData"] = other["verificationMaterial"][
        "timestampVerificationData"
    ]


def _other_certificate(doc: dict[str, Any]) -> None:
    other = json.loads(whl_bundle())
    doc["verificationMaterial"]["certificate"] = other["verificationMaterial"]["certificate"]


@pytest.mark.parametrize(
    ("name", "change", "check"),
    [
        (
            "statement",
            lambda d: _statement(
                d,
                lambda s: s["predicate"]["runDetails"]["builder"].update(id="https://evil.example"),
            ),
            "signature",
        ),
        (
            "subject",
            lambda d: _statement(d, lambda s: s["subject"][0]["digest"].update(sha256="0" * 64)),
            "signature",
        ),
        (
            "no timestamp",
            lambda d: d["verificationMaterial"].pop("timestampVerificationData"),
            "certificate-chain",
        ),
        ("timestamp of another signature", _other_timestamp, "timestamp"),
        ("certificate of another signer", _other_certificate, "signature"),
        (
            "garbage timestamp",
            lambda d: d["verificationMaterial"]["timestampVerificationData"].update(
                rfc3161Timestamps=[{"signedTimestamp": base64.b64encode(b"garbage").decode()}]
            ),
            "timestamp",
        ),
    ],
)
def test_tampered_github_attestations_are_rejected(
    production: TrustRoot, github: TrustRoot, name: str, change: Any, check: str
) -> None:
    bad = _edit(github_bundle(), change)
    result = run([production, github], GITHUB_IMAGE, [bad], github_policy("default", "github"))
    assert not result.verified, name
    assert check in failed(result), (name, failed(result))


def test_a_log_is_waived_only_for_a_root_without_one(production: TrustRoot) -> None:
    """GitHub's timestamped bundle checked against a root that has the same CA and TSA but
    also a transparency log: without a log entry it fails, unless the policy waives the log."""
    doc = json.loads(data.GITHUB_ROOT.read_bytes())
    doc["tlogs"] = json.loads(data.PRODUCTION_ROOT.read_bytes())["tlogs"]
    with_log = TrustRoot.from_json(json.dumps(doc).encode(), "github")
    policy = github_policy("github")
    result = run([with_log], GITHUB_IMAGE, [github_bundle()], policy)
    assert set(failed(result)) == {"transparency-log"}
    waived = {**policy, "transparencyLog": {"required": False}}
    assert run([with_log], GITHUB_IMAGE, [github_bundle()], waived).verified


# -- the wheel: an artifact, verified as `gh attestation verify` does ---------------------


def test_github_wheel_attestation(github: TrustRoot, production: TrustRoot) -> None:
    digest = sha256_digest(WHL.read_bytes())
    policy = policy_from_mapping(
        {
            "certificateIdentity": WHL_SIGNER,
            "trustRoots": ["default", "github"],
            "attestations": [
                {
                    "predicateType": "https://slsa.dev/provenance/v1",
                    "conditions": [{"path": "subject[0].name", "equals": WHL.name}],
                }
            ],
        },
        trust_roots=["default", "github"],
    )
    roots = [production, github]
    result = verify_artifact(
        bundle=whl_bundle(), artifact_digest=digest, policy=policy, trust=roots, now=NOW
    )
    assert result.verified, result.reasons
    assert result.attestations[0].satisfied
    other = verify_artifact(
        bundle=whl_bundle(),
        artifact_digest="sha256:" + "1" * 64,
        policy=policy,
        trust=roots,
        now=NOW,
    )
    assert not other.verified
    for variant in ("-missing-cert", "-missing-verification-material"):
        broken = verify_artifact(
            bundle=whl_bundle(variant), artifact_digest=digest, policy=policy, trust=roots, now=NOW
        )
        assert not broken.verified, variant
        assert "bundle" in {c.name for c in broken.signatures[0].checks if not c.passed}


# -- policy fields ------------------------------------------------------------------------


def test_trust_roots_and_attestations_are_part_of_the_policy_digest() -> None:
    base = {"certificateIdentity": "https://example.com/ci"}
    known = ["default", "github"]
    plain = policy_from_mapping(base, trust_roots=known)
    assert policy_from_mapping({**base, "trustRoots": ["default"]}, trust_roots=known) == plain
    both = policy_from_mapping({**base, "trustRoots": ["default", "github"]}, trust_roots=known)
    assert both.digest != plain.digest and both.trust_roots == ("default", "github")
    attested = policy_from_mapping(
        {**base, "attestations": [{"predicateType": "spdx"}]}, trust_roots=known
    )
    assert attested.digest != plain.digest
    assert attested.attestations[0].predicate_type == "https://spdx.dev/Document"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"trustRoots": ["github"]}, "trustRoots[0]"),
        ({"trustRoots": []}, "trustRoots"),
        ({"trustRoots": "default"}, "trustRoots"),
        ({"attestations": [{}]}, "attestations[0].predicateType"),
        ({"attestations": [{"predicateType": "spdx", "type": "x"}]}, "attestations[0].type"),
        (
            {"attestations": [{"predicateType": "spdx", "conditions": "x"}]},
            "attestations[0].conditions",
        ),
        (
            {
                "attestations": [
                    {"predicateType": "spdx", "identities": [{"certificateOidcIssuer": "x"}]}
                ]
            },
            "attestations[0].identities[0].certificateIdentity",
        ),
        (
            {"attestations": [{"predicateType": "spdx", "keys": ["not a key"]}]},
            "attestations[0].keys[0]",
        ),
        (
            {"attestations": [{"predicateType": "spdx", "conditions": [{"path": "a", "in": 1}]}]},
            "attestations[0].conditions[0].in",
        ),
        ({"attestations": [{"predicateType": "spdx"}] * 11}, "attestations"),
    ],
)
def test_bad_policy_fields_are_named(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_mapping({"certificateIdentity": "https://example.com/ci", **raw})
    assert err.value.field == field


def test_cosign_attestation_kind_is_listed(production: TrustRoot) -> None:
    image, atts = slsa_attestations("v2.1.0")
    assert all(isinstance(a, CosignAttestation) for a in atts)
    doc = run(production, image, atts, slsa_policy("v2.1.0")).to_dict()
    assert doc["signatures"][0]["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert doc["signatures"][0]["trustRoot"] == "default"
    assert doc["attestations"][0]["attestations"][0]["kind"] == "cosign-attestation"


@pytest.mark.parametrize(
    ("bundle", "artifact", "identity", "wrong"),
    [
        (
            # a reusable workflow signs on behalf of the repository named in the certificate
            "reusable-workflow-attestation.sigstore.json",
            "reusable-workflow-artifact",
            {
                "certificateIdentityRegexp": "^https://github\\.com/github/artifact-attestations-"
                "workflows/\\.github/workflows/attest\\.yml@",
                "certificateOidcIssuer": GITHUB_ACTIONS,
                "extensions": {"sourceRepositoryUri": "https://github.com/malancas/attest-demo"},
            },
            {"extensions": {"sourceRepositoryUri": "https://github.com/malancas/other"}},
        ),
        (
            "custom-issuer.sigstore.json",
            "custom-issuer-artifact",
            {
                "certificateIdentity": "https://github.com/too-legit/attest/.github/workflows/"
                "integration.yml@refs/heads/main",
                "certificateOidcIssuer": GITHUB_ACTIONS + "/hammer-time",
            },
            {"certificateOidcIssuer": GITHUB_ACTIONS},
        ),
    ],
)
def test_cli_cli_public_good_attestations(
    bundle: str, artifact: str, identity: dict[str, Any], wrong: dict[str, Any]
) -> None:
    trust = TrustRoot.from_json((data.CLI_CLI / "trusted_root.json").read_bytes())
    raw = (data.CLI_CLI / bundle).read_bytes()
    digest = sha256_digest((data.CLI_CLI / artifact).read_bytes())
    requirement = {
        "predicateType": "slsaprovenance1",
        "conditions": [{"path": "subject[0].digest.sha256", "equals": digest.split(":")[1]}],
    }

    def verify(policy: dict[str, Any]) -> bool:
        parsed = policy_from_mapping({**policy, "attestations": [requirement]})
        result = verify_artifact(
            bundle=raw, artifact_digest=digest, policy=parsed, trust=trust, now=NOW
        )
        return result.verified

    assert verify(identity)
    assert not verify({**identity, **wrong})


def test_the_readmes_attestation_policy_example(production: TrustRoot) -> None:
    """The YAML policy in the README parses, and says of slsa-verifier's image what it should:
    the provenance holds, and there is no SBOM."""
    readme = (data.DATA.parents[2] / "README.md").read_text()
    section = readme[readme.index("### Attestations") :]
    example = yaml.safe_load(section[section.index("```yaml") + 7 : section.index("```\n", 10)])
    image, atts = slsa_attestations("v2.1.0")
    result = run(production, image, atts, example)
    provenance, sbom = result.attestations
    assert provenance.satisfied, provenance.reasons
    assert not sbom.satisfied and not result.verified
    assert result.reasons == (
        "attestation sbom: found no attestation of type https://spdx.dev/Document "
        "(types found: https://slsa.dev/provenance/v0.2)",
    )


def test_cosigns_v03_bundle_as_a_custom_attestation(production: TrustRoot) -> None:
    """cosign's own OCI bundle test data: `cosign attest --type custom` in the new format."""
    requirement = {
        "predicateType": "custom",
        "identities": [{"certificateIdentity": "cody@soyland.com"}],
        "conditions": [{"path": "predicate.Data", "equals": '{"foo": "bar"}\n'}],
    }
    policy = {
        "certificateIdentityRegexp": ".*",
        "acceptAttestationsAsSignatures": True,
        "attestations": [requirement],
    }
    bundle = data.cosign_bundle()
    assert run(production, data.COSIGN_BUNDLE_IMAGE, [bundle], policy).verified
    requirement["conditions"] = [{"path": "predicate.Data", "equals": '{"foo": "baz"}\n'}]
    assert not run(production, data.COSIGN_BUNDLE_IMAGE, [bundle], policy).verified
    requirement["conditions"] = []
    requirement["identities"] = [{"certificateIdentity": "someone@else.example"}]
    assert not run(production, data.COSIGN_BUNDLE_IMAGE, [bundle], policy).verified
