"""Attestation conditions: paths, operators, certificate claims, and refusals. Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from service.core.certs import CertificateDetails
from service.core.conditions import (
    MAX_VISITED,
    Budget,
    BudgetError,
    condition_from_mapping,
    parse_path,
    select,
)
from service.core.errors import PolicyError

STATEMENT: dict[str, Any] = {
    "_type": "https://in-toto.io/Statement/v1",
    "subject": [{"name": "ghcr.io/acme/app", "digest": {"sha256": "ab" * 32}}],
    "predicateType": "https://slsa.dev/provenance/v0.2",
    "predicate": {
        "builder": {"id": "https://github.com/acme/builder@refs/tags/v1"},
        "buildType": "https://acme.dev/container@v1",
        "invocation": {"configSource": {"uri": "git+https://github.com/acme/app@refs/heads/main"}},
        "materials": [
            {"uri": "git+https://github.com/acme/app@refs/heads/main"},
            {"uri": "pkg:docker/golang@1.22"},
        ],
        "metadata": {"reproducible": False, "build.finished": "2025-01-01T00:00:00Z", "n": 3},
    },
}


def cert(**extensions: str) -> CertificateDetails:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    return CertificateDetails(
        subject="https://github.com/acme/app/.github/workflows/release.yml@refs/heads/main",
        subject_alternative_names=(),
        issuer="https://token.actions.githubusercontent.com",
        certificate_issuer="CN=test",
        not_before=now,
        not_after=now,
        serial="1",
        extensions=MappingProxyType(
            {"issuer": "https://token.actions.githubusercontent.com", **extensions}
        ),
    )


def holds(raw: dict[str, Any], certificate: CertificateDetails | None = None) -> bool:
    return condition_from_mapping(raw, "c", 256).evaluate(STATEMENT, certificate).held


def test_paths_parse_into_steps() -> None:
    assert parse_path("predicate.builder.id", "p") == ("predicate", "builder", "id")
    assert parse_path("predicate.materials[*].uri", "p") == ("predicate", "materials", None, "uri")
    assert parse_path('predicate.metadata["build.finished"]', "p") == (
        "predicate",
        "metadata",
        "build.finished",
    )
    assert parse_path("subject[0].digest.sha256", "p") == ("subject", 0, "digest", "sha256")


@pytest.mark.parametrize("path", ["", ".a", "a..b", "a[", "a[x]", "a b", "a.[0]x", "a" * 300])
def test_bad_paths_are_refused_naming_the_field(path: str) -> None:
    with pytest.raises(PolicyError) as err:
        condition_from_mapping({"path": path, "exists": True}, "attestations[0].conditions[2]", 256)
    assert err.value.field == "attestations[0].conditions[2].path"


def test_each_operator_holds_and_fails() -> None:
    builder = "https://github.com/acme/builder@refs/tags/v1"
    assert holds({"path": "predicate.builder.id", "equals": builder})
    assert not holds({"path": "predicate.builder.id", "equals": builder + "x"})
    assert holds({"path": "predicate.buildType", "in": ["x", "https://acme.dev/container@v1"]})
    assert not holds({"path": "predicate.buildType", "in": ["x", "y"]})
    assert holds({"path": "predicate.materials[*].uri", "matches": "^pkg:docker/"})
    assert not holds({"path": "predicate.materials[*].uri", "matches": "^pkg:npm/"})
    assert holds({"path": "predicate.builder.id", "startsWith": "https://github.com/acme/"})
    assert not holds({"path": "predicate.builder.id", "startsWith": "https://gitlab.com/"})
    assert holds({"path": "predicate.metadata.reproducible", "exists": True})
    assert holds({"path": "predicate.metadata.absent", "exists": False})
    assert not holds({"path": "predicate.metadata.absent", "exists": True})
    assert holds({"path": 'predicate.metadata["build.finished"]', "startsWith": "2025-"})
    assert holds({"path": "subject[0].name", "equals": "ghcr.io/acme/app"})
    assert not holds({"path": "subject[1].name", "exists": True})


def test_json_types_are_not_coerced() -> None:
    assert holds({"path": "predicate.metadata.reproducible", "equals": False})
    assert not holds({"path": "predicate.metadata.reproducible", "equals": 0})
    assert not holds({"path": "predicate.metadata.reproducible", "equals": "false"})
    assert holds({"path": "predicate.metadata.n", "equals": 3})
    assert not holds({"path": "predicate.metadata.n", "equals": "3"})
    # a regexp never matches a non-string value
    assert not holds({"path": "predicate.metadata.n", "matches": "3"})


def test_numbers_within_the_exact_range_compare_as_json_numbers() -> None:
    """±(2^53 - 1) and finite floats are accepted; `1` and `1.0` are the same JSON number."""
    for n in (2**53 - 1, -(2**53 - 1), 0.5, -0.0, 3.0):
        condition_from_mapping({"path": "a", "equals": n}, "c", 256)
    assert holds({"path": "predicate.metadata.n", "equals": 3.0})
    assert holds({"path": "predicate.metadata.n", "in": [1, 2**53 - 1, 3]})


def test_certificate_claims_fill_placeholders() -> None:
    certificate = cert(sourceRepositoryUri="https://github.com/acme/app")
    same_repo = {
        "path": "predicate.invocation.configSource.uri",
        "startsWith": "git+${certificate.sourceRepositoryUri}@",
    }
    assert holds(same_repo, certificate)
    assert not holds(same_repo, cert(sourceRepositoryUri="https://github.com/evil/app"))
    # no certificate (a key-signed attestation) or no such claim: the condition fails, saying why
    keyed = condition_from_mapping(same_repo, "c", 256).evaluate(STATEMENT, None)
    assert not keyed.held and "no certificate" in keyed.detail
    bare = condition_from_mapping(same_repo, "c", 256).evaluate(STATEMENT, cert())
    assert not bare.held and "no sourceRepositoryUri" in bare.detail
    # a claim is text, never a pattern: `matches` does not substitute
    literal = {"path": "predicate.builder.id", "matches": "${certificate.subject}"}
    assert not holds(literal, certificate)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"path": "a"}, "c"),
        ({"path": "a", "equals": "x", "in": ["x"]}, "c"),
        ({"path": "a", "equal": "x"}, "c.equal"),
        ({"path": "a", "equals": {"x": 1}}, "c.equals"),
        ({"path": "a", "in": []}, "c.in"),
        ({"path": "a", "in": [[1]]}, "c.in"),
        ({"path": "a", "exists": "yes"}, "c.exists"),
        ({"path": "a", "matches": "(unclosed"}, "c.matches"),
        ({"path": "a", "matches": "x" * 300}, "c.matches"),
        ({"path": "a", "startsWith": ""}, "c.startsWith"),
        ({"path": "a", "equals": "${certificate.nope}"}, "c.equals"),
        ({"path": "a", "in": ["ok", "${certificate.nope}"]}, "c.in[1]"),
        ("not an object", "c"),
        # Numbers JSON readers disagree on: found from outside, each was a 500.
        ({"path": "a", "equals": float("nan")}, "c.equals"),
        ({"path": "a", "equals": float("inf")}, "c.equals"),
        ({"path": "a", "equals": -float("inf")}, "c.equals"),
        ({"path": "a", "equals": 2**53}, "c.equals"),
        ({"path": "a", "equals": -(2**53)}, "c.equals"),
        ({"path": "a", "equals": 10**400}, "c.equals"),
        ({"path": "a", "equals": 1e300}, "c.equals"),
        ({"path": "a", "in": [1, float("nan")]}, "c.in[1]"),
        ({"path": "a", "in": ["x", 2**64]}, "c.in[1]"),
    ],
)
def test_bad_conditions_are_refused_naming_the_field(raw: Any, field: str) -> None:
    with pytest.raises(PolicyError) as err:
        condition_from_mapping(raw, "c", 256)
    assert err.value.field == field


def test_regexps_are_re2_and_linear() -> None:
    # a pattern that backtracks exponentially in Python's re is linear in RE2
    evil = {"path": "predicate.builder.id", "matches": "^(a+)+$"}
    document = {"predicate": {"builder": {"id": "a" * 50_000 + "!"}}}
    condition = condition_from_mapping(evil, "c", 256)
    assert not condition.evaluate(document, None).held


def test_wildcards_are_bounded_by_one_budget_for_all_conditions() -> None:
    wide = {"items": [{"v": i} for i in range(3 * MAX_VISITED)]}
    with pytest.raises(BudgetError):
        select(wide, parse_path("items[*].v", "p"))
    # Out of budget, a condition does not hold, whatever its operator.
    for raw in (
        {"path": "items[*].v", "exists": False},
        {"path": "items[*].v", "exists": True},
        {"path": "items[*].v", "equals": 1},
    ):
        result = condition_from_mapping(raw, "c", 256).evaluate(wide, None)
        assert not result.held and "evaluation stopped after" in result.detail
    # One budget serves every condition of a verification: each may be small, the sum not.
    half = {"items": [{"v": i} for i in range(MAX_VISITED // 4)]}
    budget = Budget()
    last = {"path": "items[*].v", "equals": MAX_VISITED // 4 - 1}
    held = [
        condition_from_mapping(last, "c", 256).evaluate(half, None, budget).held for _ in range(3)
    ]
    assert held == [True, False, False]
    with pytest.raises(PolicyError):
        parse_path("x" + "[0]" * 40, "p")  # more steps than allowed


def test_what_was_found_is_shown_short() -> None:
    found = condition_from_mapping({"path": "predicate", "equals": "x"}, "c", 256)
    assert found.evaluate(STATEMENT, None).detail == "found an object with 5 keys"
    materials = condition_from_mapping({"path": "predicate.materials", "equals": 1}, "c", 256)
    assert materials.evaluate(STATEMENT, None).detail == "found a list of 2 values"
    long = {"predicate": {"id": "x" * 500}}
    detail = condition_from_mapping({"path": "predicate.id", "equals": "y"}, "c", 256)
    assert len(detail.evaluate(long, None).detail) <= len("found ") + 120
