"""`service.client` without a server: flags to a request body, answers to outcomes and exit
statuses, and the step summary's escaping of what signers and registries wrote."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from service import client
from service.client import NoAnswerError, Outcome, UsageError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    client.add_parser(parser.add_subparsers())
    return parser.parse_args(["verify", *argv])


def test_flags_map_onto_the_apis_policy_fields(tmp_path: Path) -> None:
    key = tmp_path / "cosign.pub"
    key.write_text("-----BEGIN PUBLIC KEY-----\n...\n")
    args = parse(
        *("--certificate-identity-regexp", "^https://github\\.com/acme/"),
        *("--certificate-oidc-issuer", "https://token.actions.githubusercontent.com"),
        *("--certificate-github-workflow-trigger", "push"),
        *("--certificate-github-workflow-sha", "a" * 40),
        *("--certificate-github-workflow-name", "release"),
        *("--certificate-github-workflow-repository", "acme/app"),
        *("--certificate-github-workflow-ref", "refs/heads/main"),
        *("--key", str(key), "--attestation", "slsaprovenance1", "--attestation", "spdxjson"),
        *("ghcr.io/acme/app:v1", "ghcr.io/acme/worker:v1"),
    )
    assert client.request_body(args) == {
        "policy": {
            "certificateIdentityRegexp": "^https://github\\.com/acme/",
            "certificateOidcIssuer": "https://token.actions.githubusercontent.com",
            "certificateGithubWorkflowTrigger": "push",
            "certificateGithubWorkflowSha": "a" * 40,
            "certificateGithubWorkflowName": "release",
            "certificateGithubWorkflowRepository": "acme/app",
            "certificateGithubWorkflowRef": "refs/heads/main",
            "keys": ["-----BEGIN PUBLIC KEY-----\n...\n"],
            "attestations": [{"predicateType": "slsaprovenance1"}, {"predicateType": "spdxjson"}],
        },
        "images": [{"image": "ghcr.io/acme/app:v1"}, {"image": "ghcr.io/acme/worker:v1"}],
    }
    assert client.request_body(parse("--policy", "release", "ghcr.io/a/b:v1")) == {
        "policyName": "release",
        "images": [{"image": "ghcr.io/a/b:v1"}],
    }


def test_every_identity_flag_is_a_policy_field_of_the_api() -> None:
    from service.api.schemas import IdentitySchema

    assert set(client.IDENTITY_FLAGS.values()) <= set(IdentitySchema().fields)
    for option, field in client.IDENTITY_FLAGS.items():
        assert client.flag_of(f"policy.{field}") == option


@pytest.mark.parametrize(
    ("field", "flag"),
    [
        ("policy.keys.0", "--key"),
        ("policy.keys[0]", "--key"),
        ("policy.attestations.1.predicateType", "--attestation"),
        ("policyName", "--policy"),
        ("images.0.image", "IMAGE 1"),
        ("policy.threshold", "policy.threshold"),
        ("body", "body"),
    ],
)
def test_fields_are_named_by_their_flags(field: str, flag: str) -> None:
    assert client.flag_of(field) == flag


def verdict(verified: bool, **more: Any) -> dict[str, Any]:
    return {
        "verified": verified,
        "image": {"digest": "sha256:" + "a" * 64},
        "policy": {"digest": "d", "name": None, "mode": "enforce"},
        "signers": ["s"] if verified else [],
        "signatures": [],
        "reasons": [] if verified else ["no signatures found"],
        "enforced": True,
        **more,
    }


def answer(*results: dict[str, Any]) -> dict[str, Any]:
    return {"verified": False, "passed": False, "results": list(results)}


def test_outcomes_and_exit_statuses() -> None:
    ok = {"image": "a", "status": 200, "verdict": verdict(True)}
    bad = {"image": "b", "status": 200, "verdict": verdict(False)}
    audited = {"image": "c", "status": 200, "verdict": verdict(False, enforced=False)}
    missing = {"image": "d", "status": 404, "problem": {"type": "x/image-not-found", "detail": "?"}}
    outcomes = client.judge(answer(ok, bad, audited, missing), ["a", "b", "c", "d"])
    assert [o.result for o in outcomes] == [
        "verified",
        "not verified",
        "not enforced",
        "could not verify",
    ]
    assert outcomes[3].reasons == ("image-not-found: ?",)
    assert client.exit_status(outcomes) == 1
    assert client.exit_status(outcomes[2:]) == 2
    assert client.exit_status(outcomes[:1] + outcomes[2:3]) == 0
    assert client.exit_status([]) == 0


@pytest.mark.parametrize(
    "result",
    [
        # Only a JSON true under status 200 verifies: anything else is not a pass.
        {"image": "a", "status": 200, "verdict": {**verdict(False), "verified": "true"}},
        {"image": "a", "status": 200, "verdict": {**verdict(False), "verified": 1}},
        {"image": "a", "status": 500, "verdict": verdict(True)},
        {"image": "a", "status": 200, "verdict": "verified"},
        {"image": "a", "status": 200},
    ],
)
def test_nothing_but_a_verified_verdict_passes(result: dict[str, Any]) -> None:
    (outcome,) = client.judge(answer(result), ["a"])
    assert outcome.result != "verified"
    assert client.exit_status([outcome]) != 0


@pytest.mark.parametrize(
    "body",
    [
        {"results": []},
        {"results": "all good"},
        {"verified": True, "passed": True},
        # Another image's verdict, or the images in another order, answer nothing asked.
        answer({"image": "other", "status": 200, "verdict": verdict(True)}),
        answer(
            {"image": "b", "status": 200, "verdict": verdict(True)},
            {"image": "a", "status": 200, "verdict": verdict(True)},
        ),
    ],
)
def test_an_answer_that_does_not_fit_the_request_is_no_answer(body: dict[str, Any]) -> None:
    images = ["a"] if len(body.get("results", [])) < 2 else ["a", "b"]
    with pytest.raises(NoAnswerError):
        client.judge(body, images)


def test_step_summary_cells_show_what_was_written_and_nothing_more() -> None:
    hostile = "x | y `z` <img src=x onerror=alert(1)> [link](https://evil) **b**\nnext"
    cell = client.code(hostile)
    assert cell.startswith("`` ") and cell.endswith(" ``")  # longer than the `z` run inside
    assert "\n" not in cell
    assert "\\|" in cell and cell.count("|") == cell.count("\\|")
    table = client.markdown_summary(
        [Outcome("img", "not verified", reasons=(hostile,), signed_by=("a|b",))]
    )
    row = table.splitlines()[-1]
    # Five cells: every `|` a signer or registry wrote is escaped.
    assert row.replace("\\|", "").count("|") == 6
    assert client.code("") == ""


def test_usage_errors_name_the_flag(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--key"):
        client.request_body(parse("--key", str(tmp_path / "absent.pub"), "ghcr.io/a/b"))
    binary = tmp_path / "key.der"
    binary.write_bytes(b"\x30\x82\xff\xfe")
    with pytest.raises(UsageError, match="not a PEM file"):
        client.request_body(parse("--key", str(binary), "ghcr.io/a/b"))
