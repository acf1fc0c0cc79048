"""`policy_from_mapping`: parse errors name the field; regexps match the way cosign's do."""

from __future__ import annotations

from typing import Any

import pytest

from service.core import PolicyError, policy_from_mapping
from service.core.certs import CertificateDetails
from tests.core.data import CONNAISSEUR, pem
from tests.core.fakes import ACTIONS, FakeSigstore

ALICE = pem(CONNAISSEUR / "alice.key")


@pytest.mark.parametrize(
    ("policy", "field", "fragment"),
    [
        ({}, None, "found no identity and no key"),
        ({"threshold": 2}, None, "found no identity and no key"),
        ({"certificateIdentiy": "x"}, "certificateIdentiy", "unknown field"),
        ({"certificateOidcIssuer": ACTIONS}, "certificateIdentity", "found no certificateIdentity"),
        (
            {"certificateIdentity": "a", "certificateIdentityRegexp": "b"},
            "certificateIdentityRegexp",
            "found both certificateIdentity and certificateIdentityRegexp",
        ),
        ({"certificateIdentityRegexp": "("}, "certificateIdentityRegexp", "invalid regexp"),
        ({"certificateIdentityRegexp": "a" * 257}, "certificateIdentityRegexp", "at most 256"),
        ({"certificateIdentityRegexp": r"(a)\1"}, "certificateIdentityRegexp", "invalid regexp"),
        ({"certificateIdentity": ""}, "certificateIdentity", "non-empty string"),
        (
            {"certificateIdentity": "a", "extensions": {"sourceRepoUri": "x"}},
            "extensions.sourceRepoUri",
            "unknown fulcio extension",
        ),
        (
            {"certificateIdentity": "a", "extensions": {"buildSignerUriRegexp": "("}},
            "extensions.buildSignerUriRegexp",
            "invalid regexp",
        ),
        ({"identities": [{"certificateOidcIssuer": "x"}]}, "identities[0].certificateIdentity", ""),
        ({"identities": [{"bogus": "x"}]}, "identities[0].bogus", "unknown field"),
        ({"keys": ["not a key"]}, "keys[0]", "found no PEM public key"),
        ({"keys": [ALICE], "threshold": 0}, "threshold", "expected an integer from 1 to 20"),
        ({"keys": [ALICE], "threshold": True}, "threshold", "expected an integer from 1 to 20"),
        # A policy file's YAML could give more than the policy digest (RFC 8785) can carry.
        ({"keys": [ALICE], "threshold": 2**53}, "threshold", "expected an integer from 1 to 20"),
        # JSON can spell lone surrogates; a policy file's YAML can have keys that are numbers.
        ({"certificateIdentity": "\ud800"}, "certificateIdentity", "lone surrogate"),
        ({"certificateIdentityRegexp": "a\udfff"}, "certificateIdentityRegexp", "lone surrogate"),
        ({"keys": ["\ud800"]}, "keys[0]", "lone surrogate"),
        ({"keys": [ALICE], "\ud800": 1}, None, "expected text"),
        ({"certificateIdentity": "a", "extensions": {1: "x"}}, "extensions", "expected text"),
        (
            {"keys": [ALICE], "attestations": [{"predicateType": "x\udc00"}]},
            "attestations[0].predicateType",
            "lone surrogate",
        ),
        ({"keys": [ALICE], "transparencyLog": {"required": "no"}}, "transparencyLog.required", ""),
        ({"keys": [ALICE], "transparencyLog": {"strict": True}}, "transparencyLog.strict", ""),
    ],
)
def test_policy_errors_name_the_field(
    policy: dict[str, Any], field: str | None, fragment: str
) -> None:
    with pytest.raises(PolicyError) as info:
        policy_from_mapping(policy)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_regexp_length_cap_is_a_parameter() -> None:
    with pytest.raises(PolicyError, match="at most 8"):
        policy_from_mapping({"certificateIdentityRegexp": "a" * 9}, max_regexp_length=8)
    assert policy_from_mapping({"certificateIdentityRegexp": "a" * 9}, max_regexp_length=9)


def test_defaults_and_digest() -> None:
    policy = policy_from_mapping({"keys": [ALICE]})
    assert policy.threshold == 1
    assert policy.transparency_log.required is True
    assert policy.transparency_log.allow_inclusion_promise is True
    assert policy.digest.startswith("sha256:") and len(policy.digest) == 71
    # the digest is of the meaning: defaults spelled out and key PEM formatting do not change it
    same = policy_from_mapping(
        {
            "keys": [ALICE.replace("\n", "\r\n")],
            "threshold": 1,
            "transparencyLog": {"required": True, "allowInclusionPromise": True},
        }
    )
    assert same.digest == policy.digest
    assert policy_from_mapping({"keys": [ALICE], "threshold": 2}).digest != policy.digest


def _details(san: str, issuer: str = ACTIONS, **extensions: str) -> CertificateDetails:
    from cryptography.hazmat.primitives.asymmetric import ec

    numbers = {"sourceRepositoryUri": 12, "buildSignerUri": 9, "githubWorkflowRef": 6}
    fake = FakeSigstore()
    cert = fake.issue(
        ec.generate_private_key(ec.SECP256R1()),
        san=san,
        issuer=issuer,
        extensions={numbers[k]: v for k, v in extensions.items()},
        sct=False,
    )
    return CertificateDetails.from_certificate(cert)


def test_regexps_are_unanchored_like_go_matchstring() -> None:
    details = _details("https://evil.example/https://github.com/acme/app")
    unanchored = policy_from_mapping({"certificateIdentityRegexp": "https://github.com/acme/"})
    assert unanchored.identities[0].mismatches(details) == []
    anchored = policy_from_mapping({"certificateIdentityRegexp": "^https://github.com/acme/"})
    assert anchored.identities[0].mismatches(details) != []


def test_github_workflow_and_extension_constraints() -> None:
    details = _details(
        "https://github.com/acme/app/.github/workflows/r.yml@refs/heads/main",
        githubWorkflowRef="refs/heads/main",
        sourceRepositoryUri="https://github.com/acme/app",
    )
    policy = policy_from_mapping(
        {
            "certificateIdentityRegexp": "acme",
            "certificateGithubWorkflowRef": "refs/heads/main",
            "extensions": {"sourceRepositoryUriRegexp": "^https://github.com/acme/"},
        }
    )
    assert policy.identities[0].mismatches(details) == []
    wrong = policy_from_mapping(
        {
            "certificateIdentityRegexp": "acme",
            "certificateGithubWorkflowRef": "refs/heads/dev",
            "extensions": {"buildSignerUri": "https://x"},
        }
    )
    assert wrong.identities[0].mismatches(details) == [
        "githubWorkflowRef refs/heads/main, expected refs/heads/dev",
        "buildSignerUri absent, expected https://x",
    ]


def test_top_level_identity_and_identities_combine() -> None:
    policy = policy_from_mapping(
        {
            "certificateIdentity": "a@b.c",
            "identities": [{"certificateIdentity": "d@e.f"}],
            "keys": [ALICE],
        }
    )
    assert [i.label for i in policy.identities] == ["policy", "identities[0]"]
    assert [k.label for k in policy.keys] == ["keys[0]"]
