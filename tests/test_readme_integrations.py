"""The README's Gatekeeper and Kyverno snippets: they parse, fit together and fit sigverify, and
the ConstraintTemplate's Rego, run by rego-cpp, denies whatever is not verified.

Neither Gatekeeper nor Kyverno runs here, and no `opa` binary is installable: the Rego is
evaluated by rego-cpp (`regopy`), with `external_data` standing in for Gatekeeper's builtin
(tests/gatekeeper_rego.py); the Kyverno policy is checked against the fields Kyverno documents
for `apiCall` (kyverno/kyverno `api/kyverno/v1/common_types.go`: APICall, ServiceCall,
RequestData, HTTPHeader). tests/e2e/test_gatekeeper.py feeds the same Rego with what sigverify
answers under gunicorn.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from marshmallow import ValidationError

from service.api.gatekeeper import API_VERSION
from service.api.schemas import VerifyRequestSchema
from service.config import Settings
from tests.contract import spec
from tests.gatekeeper_rego import asked_keys, pod, snippets, template_rego, violations

OK = {"status_code": 200, "system_error": ""}
GOOD = {"verified": True, "digest": "sha256:" + "1" * 64, "policy": "release", "reasons": []}
BAD = {**GOOD, "verified": False, "reasons": ["no signatures found"]}

# Kyverno's documented fields (ContextAPICall = APICall + default + jmesPath).
KYVERNO_API_CALL = {"urlPath", "method", "data", "service", "jmesPath", "default"}
KYVERNO_SERVICE = {"url", "caBundle", "headers"}
KYVERNO_KEY_VALUE = {"key", "value"}


def test_every_marked_snippet_is_there() -> None:
    assert set(snippets()) == {
        "gatekeeper: Provider",
        "gatekeeper: ConstraintTemplate",
        "gatekeeper: Constraint",
        "kyverno: ClusterPolicy",
    }


# -- Gatekeeper ---------------------------------------------------------------------------------


def test_the_provider_names_a_route_of_the_service_within_its_budget() -> None:
    provider = snippets()["gatekeeper: Provider"]
    assert (provider["apiVersion"], provider["kind"]) == (API_VERSION, "Provider")
    url = provider["spec"]["url"]
    # Gatekeeper calls providers over HTTPS only.
    match = re.fullmatch(r"https://[a-z0-9.-]+:\d+(/v1/gatekeeper/([a-z0-9][a-z0-9._-]*))", url)
    assert match is not None, url
    assert "/v1/gatekeeper/{policy}" in spec()["paths"]
    timeout = provider["spec"]["timeout"]
    assert isinstance(timeout, int)
    # sigverify answers before Gatekeeper gives up, with time to spare for TLS and the network.
    assert Settings().gatekeeper_timeout <= timeout - 1
    assert provider["spec"]["caBundle"]


def test_the_template_the_constraint_and_the_provider_fit_together() -> None:
    found = snippets()
    template, constraint = found["gatekeeper: ConstraintTemplate"], found["gatekeeper: Constraint"]
    assert (template["apiVersion"], template["kind"]) == (
        "templates.gatekeeper.sh/v1",
        "ConstraintTemplate",
    )
    kind = template["spec"]["crd"]["spec"]["names"]["kind"]
    # Gatekeeper requires the template's name to be its kind in lower case.
    assert template["metadata"]["name"] == kind.lower()
    (target,) = template["spec"]["targets"]
    assert target["target"] == "admission.k8s.gatekeeper.sh"
    assert (constraint["apiVersion"], constraint["kind"]) == (
        "constraints.gatekeeper.sh/v1beta1",
        kind,
    )
    assert constraint["spec"]["enforcementAction"] in {"deny", "dryrun", "warn"}
    assert {"apiGroups": [""], "kinds": ["Pod"]} in constraint["spec"]["match"]["kinds"]
    provider = found["gatekeeper: Provider"]["metadata"]["name"]
    assert f'"provider": "{provider}"' in template_rego()
    assert "import rego.v1" in template_rego()


def test_the_template_asks_for_every_container_image() -> None:
    spec_ = pod(["app:v1", "sidecar:v2"], init=["migrate:v3"])
    spec_["ephemeralContainers"] = [{"name": "debug", "image": "busybox:1"}]
    assert asked_keys(spec_) == ["app:v1", "busybox:1", "migrate:v3", "sidecar:v2"]


def test_every_image_verified_is_no_violation() -> None:
    answer = {**OK, "responses": [["a:v1", GOOD], ["b:v1", GOOD]], "errors": []}
    assert violations(answer, pod(["a:v1"], init=["b:v1"])) == []
    # Every key from Gatekeeper's own cache: no request was sent, and the status is 0.
    assert violations({**answer, "status_code": 0}, pod(["a:v1"], init=["b:v1"])) == []


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            {**OK, "responses": [["a:v1", GOOD], ["b:v1", BAD]], "errors": []},
            [f"b:v1 ({BAD['digest']}) is not verified under sigverify policy release: "
             "no signatures found"],
        ),
        # Only `true` passes: not a string, not a missing field, not without reasons.
        (
            {**OK, "responses": [["a:v1", GOOD], ["b:v1", {**BAD, "verified": "true"}]],
             "errors": []},
            [f"b:v1 ({GOOD['digest']}) is not verified under sigverify policy release: "
             "no signatures found"],
        ),
        (
            {**OK, "responses": [["a:v1", GOOD], ["b:v1", {"digest": "d", "policy": "p"}]],
             "errors": []},
            ["b:v1 (d) is not verified under sigverify policy p: no reason given"],
        ),
        (
            {**OK, "responses": [["a:v1", GOOD], ["b:v1", "verified"]], "errors": []},
            ["b:v1 (?) is not verified under sigverify policy ?: no reason given"],
        ),
        (
            {**OK, "responses": [["a:v1", GOOD], ["b:v1", {**BAD, "reasons": [1, {"x": 2}]}]],
             "errors": []},
            [f"b:v1 ({BAD['digest']}) is not verified under sigverify policy release: "
             '1; {"x": 2}'],
        ),
        (
            {**OK, "responses": [["a:v1", GOOD]],
             "errors": [["b:v1", "cannot be verified now: its registry could not be reached"]]},
            ["b:v1: cannot be verified now: its registry could not be reached"],
        ),
        ({**OK, "responses": [["a:v1", GOOD]], "errors": []}, ["b:v1: sigverify gave no answer"]),
        (
            {"responses": [], "errors": [], "status_code": 404,
             "system_error": "no policy named 'release' for the Gatekeeper provider"},
            ["sigverify could not answer (HTTP 404): no policy named 'release' for the "
             "Gatekeeper provider"],
        ),
        (
            {"responses": [["a:v1", GOOD], ["b:v1", GOOD]], "errors": [], "status_code": 503,
             "system_error": ""},
            ["sigverify answered HTTP 503"],
        ),
    ],
)  # fmt: skip
def test_anything_but_verified_is_a_violation(answer: dict[str, Any], expected: list[str]) -> None:
    assert violations(answer, pod(["a:v1"], init=["b:v1"])) == expected


# -- Kyverno ------------------------------------------------------------------------------------


def _api_calls(policy: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for rule in policy["spec"]["rules"]:
        for each in rule["validate"].get("foreach", []):
            calls += [entry["apiCall"] for entry in each.get("context", []) if "apiCall" in entry]
    return calls


def test_the_kyverno_policy_uses_only_the_fields_kyverno_documents() -> None:
    policy = snippets()["kyverno: ClusterPolicy"]
    assert (policy["apiVersion"], policy["kind"]) == ("kyverno.io/v1", "ClusterPolicy")
    assert policy["spec"]["failurePolicy"] in {"Fail", "Ignore"}
    (call,) = _api_calls(policy)
    assert set(call) <= KYVERNO_API_CALL, set(call) - KYVERNO_API_CALL
    # A service call, so no urlPath (they are mutually exclusive); POST sends `data`.
    assert "urlPath" not in call and call["method"] == "POST"
    assert set(call["service"]) <= KYVERNO_SERVICE
    assert call["service"]["caBundle"].startswith("-----BEGIN CERTIFICATE-----")  # PEM
    for entry in [*call["data"], *call["service"]["headers"]]:
        assert set(entry) == KYVERNO_KEY_VALUE
    (rule,) = policy["spec"]["rules"]
    assert rule["validate"]["failureAction"] in {"Enforce", "Audit"}


def test_the_kyverno_call_is_a_verify_request_the_service_accepts() -> None:
    policy = snippets()["kyverno: ClusterPolicy"]
    (call,) = _api_calls(policy)
    url = call["service"]["url"]
    assert re.fullmatch(r"https://[a-z0-9.-]+:\d+/v1/verify", url), url
    # Kyverno's POST body: the `data` entries as one object, variables substituted.
    body = {entry["key"]: entry["value"] for entry in call["data"]}
    assert body["image"] == "{{ element.image }}"
    VerifyRequestSchema().load({**body, "image": "ghcr.io/acme/app:v1.2.3"})
    with pytest.raises(ValidationError):
        VerifyRequestSchema().load({**body, "image": "ghcr.io/acme/app:v1.2.3", "extra": 1})
    # The deny condition reads the verdict's `verified`, which every verdict carries.
    (each,) = policy["spec"]["rules"][0]["validate"]["foreach"]
    (condition,) = each["deny"]["conditions"]["any"]
    assert condition["key"] == "{{ verdict.verified }}"
    assert (condition["operator"], condition["value"]) == ("NotEquals", True)
    assert "verified" in spec()["components"]["schemas"]["Verdict"]["required"]
