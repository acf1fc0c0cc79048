"""`POST /v1/admission` in process: the review protocol, configuration, exemptions, auth, and
which images a workload has (a pure function). Verification itself is end to end in
tests/e2e/test_admission.py; here the only images are on loopback, which the service's
outbound-address guard refuses before any connection, so a checked image always "cannot be
verified now" and no test touches the network."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from service import registry
from service.api.admission import (
    MAX_ANNOTATION_CHARS,
    MAX_WARNING_CHARS,
    Failure,
    ReviewError,
    decide,
    exempt_namespaces,
    failure_of,
    image_label,
    parse_review,
    pod_images,
    policy_name_for,
)
from service.api.errors import (
    NOT_VERIFIABLE,
    REGISTRY_PROBLEMS,
    TYPE_BASE,
    UNEXPECTED,
    operational_problem,
)
from service.app import create_app
from service.config import Settings, SettingsError
from service.policies import AdmissionRules, PolicyStore
from service.verification import UpstreamError
from tests.api.conftest import NO_REKOR
from tests.contract import CheckedClient

POLICIES = b"""
policies:
  - name: gate
    tenant: platform
    mode: enforce
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
  - name: watch
    tenant: platform
    mode: audit
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
"""
TOKEN = "token-for-platform-0123456789"
# Loopback: refused by the address guard (allow_loopback is off), never connected to.
APP = "127.0.0.1:1/shop/app:v1"
SIDECAR = "127.0.0.1:1/shop/sidecar:v2"


def review(
    obj: dict[str, Any] | None = None,
    *,
    kind: str = "Pod",
    group: str = "",
    namespace: str = "shop",
    operation: str = "CREATE",
    uid: str = "5c1f0c56-1b4f-4c09-9a6b-0f4e3c2b1a00",
) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it."""
    if obj is None:
        obj = {"apiVersion": "v1", "kind": "Pod", "spec": pod_spec([APP])}
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": kind.lower() + "s"},
            "namespace": namespace,
            "name": "web",
            "operation": operation,
            "dryRun": False,
            "object": obj,
        },
    }


def pod_spec(
    images: Sequence[str], init: Sequence[str] = (), ephemeral: Sequence[str] = ()
) -> dict[str, Any]:
    """A pod spec with a container per image (and init and ephemeral containers)."""
    spec: dict[str, Any] = {}
    for field, names in (("containers", images), ("initContainers", init),
                         ("ephemeralContainers", ephemeral)):  # fmt: skip
        if names:
            spec[field] = [{"name": f"{field[0]}{i}", "image": x} for i, x in enumerate(names)]
    return spec


def make_client(tmp_path: Path, policies: bytes = POLICIES, **settings: Any) -> CheckedClient:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(policies)
    base: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "rekor_url": NO_REKOR,
        "policy_file": policy_file,
        "admission_policy": "gate",
    }
    app = create_app(Settings(**{**base, **settings}))
    return CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify")


@pytest.fixture
def gate(tmp_path: Path) -> CheckedClient:
    return make_client(tmp_path)


def answer(client: CheckedClient, body: Any, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/v1/admission", json=body, **kwargs)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    assert (found["apiVersion"], found["kind"]) == ("admission.k8s.io/v1", "AdmissionReview")
    if isinstance(body, dict):
        assert found["response"]["uid"] == body["request"]["uid"]
    result: dict[str, Any] = found["response"]
    return result


# -- configuration ------------------------------------------------------------------------------


def test_not_configured_is_404(client: httpx.Client) -> None:
    response = client.post("/v1/admission", json=review())
    assert response.status_code == 404
    problem = response.json()
    assert problem["type"].endswith("/admission-not-configured")
    assert "SIGVERIFY_ADMISSION_POLICY" in problem["detail"]


def test_an_admission_policy_missing_from_the_file_stops_the_start(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="SIGVERIFY_ADMISSION_POLICY='nope'"):
        make_client(tmp_path, admission_policy="nope")


def test_a_policy_gone_from_the_reloaded_file_fails_closed(tmp_path: Path) -> None:
    policy_file = tmp_path / "policies.yaml"
    policy_file.write_bytes(POLICIES)
    settings = Settings(
        data_dir=tmp_path / "data", rekor_url=NO_REKOR, policy_file=policy_file,
        admission_policy="gate",
    )  # fmt: skip
    app = create_app(settings)
    # What the store holds after the file was edited to drop `gate`.
    edited = tmp_path / "edited.yaml"
    edited.write_bytes(POLICIES.replace(b"name: gate", b"name: gate-v2"))
    app.extensions["sigverify"].policies = PolicyStore(edited, max_regexp_length=256)
    client = CheckedClient(transport=httpx.WSGITransport(app=app), base_url="http://sigverify")
    decided = answer(client, review())
    assert decided["allowed"] is False
    assert decided["status"] == {
        "code": 500,
        "message": "sigverify: the admission policy 'gate' is no longer in the policy file",
    }


# -- the protocol -------------------------------------------------------------------------------


_GONE = object()


def _with(path: str, value: Any, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of `body` (default: a good review) with the field at `path` set, or removed."""
    body = copy.deepcopy(body or review())
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is _GONE:
        del node[key]
    else:
        node[key] = value
    return body


def _without(path: str) -> dict[str, Any]:
    return _with(path, _GONE)


DEPLOYMENT = review(
    {"kind": "Deployment", "spec": {"template": {"spec": pod_spec([APP])}}},
    kind="Deployment",
    group="apps",
)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([review()], "body"),
        (_with("apiVersion", "admission.k8s.io/v1beta1"), "apiVersion"),
        (_with("kind", "Review"), "kind"),
        (_without("request"), "request"),
        (_without("request.uid"), "request.uid"),
        (_with("request.uid", ""), "request.uid"),
        (_with("request.operation", "PATCH"), "request.operation"),
        (_with("request.operation", ["CREATE"]), "request.operation"),  # not hashable
        (_with("request.kind.kind", {"kind": "Pod"}), "request.kind.kind"),
        (_with("request.namespace", 7), "request.namespace"),
        (_without("request.kind"), "request.kind"),
        (_with("request.kind.kind", "ConfigMap"), "request.kind"),
        (_with("request.kind.group", "apps"), "request.kind"),  # apps has no Pod
        (_without("request.object"), "request.object"),
        (_with("request.object.spec", []), "request.object.spec"),
        (_with("request.object.spec.containers", {"image": APP}), "request.object.spec.containers"),
        (_with("request.object.spec.containers.0", APP), "request.object.spec.containers.0"),
        (
            _with("request.object.spec.containers.0.image", ["x"]),
            "request.object.spec.containers.0.image",
        ),
        (_with("request.object.spec", {}, DEPLOYMENT), "request.object.spec.template"),
    ],
)
def test_malformed_reviews_are_400_naming_the_field(
    gate: CheckedClient, body: Any, field: str
) -> None:
    response = gate.post("/v1/admission", json=body)
    assert response.status_code == 400, response.text
    problem = response.json()
    assert problem["type"].endswith("/invalid-request")
    assert list(problem["errors"]) == [field]
    assert field in problem["detail"]


@pytest.mark.parametrize("body", [b"{not json", b"[" * 30_000 + b"]" * 30_000])
def test_a_body_that_is_not_json_is_400(gate: CheckedClient, body: bytes) -> None:
    response = gate.post(
        "/v1/admission", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["body"]


def test_a_review_larger_than_a_verification_request_is_read(gate: CheckedClient) -> None:
    body = review(namespace="kube-system")
    body["request"]["object"]["metadata"] = {"annotations": {"big": "x" * 200_000}}
    assert answer(gate, body)["allowed"] is True


# -- decisions ----------------------------------------------------------------------------------


def test_enforce_fails_closed_naming_every_image(gate: CheckedClient) -> None:
    obj = {"kind": "Pod", "spec": pod_spec([APP], init=[SIDECAR, APP])}
    decided = answer(gate, review(obj))
    assert decided["allowed"] is False
    assert decided["status"]["code"] == 403
    message = decided["status"]["message"]
    assert "'gate'" in message and "2 of 2 image(s)" in message
    # Loopback is refused by the outbound guard: said in fixed words, not the guard's.
    assert f"{APP}: cannot be verified now: its registry may not be contacted from here" in message
    assert f"{SIDECAR}: cannot be verified now" in message
    assert "warnings" not in decided


def test_audit_allows_with_a_warning_per_image(tmp_path: Path) -> None:
    watch = make_client(tmp_path, admission_policy="watch")
    decided = answer(watch, review({"kind": "Pod", "spec": pod_spec([APP, SIDECAR])}))
    assert decided["allowed"] is True
    assert "status" not in decided
    warnings = decided["warnings"]
    assert [w.split(": ")[1] for w in warnings] == [APP, SIDECAR]
    assert all(w.startswith("sigverify (audit, policy watch): ") for w in warnings)


@pytest.mark.parametrize("dry_run", [False, True])
def test_exempt_namespaces_are_allowed_without_verification(
    gate: CheckedClient, dry_run: bool
) -> None:
    body = review(namespace="kube-system")
    body["request"]["dryRun"] = dry_run
    assert answer(gate, body) == {"uid": body["request"]["uid"], "allowed": True}
    # The same review anywhere else is checked (and refused: its registry is off-limits).
    assert answer(gate, _with("request.namespace", "shop", body))["allowed"] is False


def test_the_exempt_list_is_a_setting(tmp_path: Path) -> None:
    client = make_client(tmp_path, admission_exempt_namespaces=("infra",))
    assert answer(client, review(namespace="infra"))["allowed"] is True
    assert answer(client, review(namespace="kube-system"))["allowed"] is False


def test_delete_and_pods_without_images_are_allowed(gate: CheckedClient) -> None:
    deleted = _with("request.operation", "DELETE", _with("request.object", None))
    assert answer(gate, deleted)["allowed"] is True
    no_image = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [{}]}}}}
    assert answer(gate, review(no_image, kind="Deployment", group="apps"))["allowed"] is True
    # UPDATE is checked like CREATE.
    assert answer(gate, _with("request.operation", "UPDATE"))["allowed"] is False


def test_a_debug_container_is_checked_and_other_subresources_are_not(gate: CheckedClient) -> None:
    """`kubectl debug` updates the `ephemeralcontainers` subresource, its object the whole Pod:
    every image is verified (here: cannot be, so denied). A Pod's status, binding, eviction or
    resize cannot change what runs: allowed unchecked, whatever object they carry."""
    debug = _with("request.subResource", "ephemeralcontainers")
    debug = _with("request.operation", "UPDATE", debug)
    debug["request"]["object"]["spec"]["ephemeralContainers"] = [
        {"name": "debugger", "image": SIDECAR, "targetContainerName": "c0"}
    ]
    denied = answer(gate, debug)
    assert denied["allowed"] is False
    assert SIDECAR in denied["status"]["message"] and APP in denied["status"]["message"]
    for sub, kind in [("status", "Pod"), ("binding", "Binding"), ("eviction", "Eviction"),
                      ("resize", "Pod")]:  # fmt: skip
        other = _with("request.subResource", sub, _with("request.kind.kind", kind))
        assert answer(gate, other) == {"uid": other["request"]["uid"], "allowed": True}, sub
    # Only a string is a subresource name.
    bad = gate.post("/v1/admission", json=_with("request.subResource", ["status"]))
    assert bad.status_code == 400 and "request.subResource" in bad.json()["errors"]


# -- auth ---------------------------------------------------------------------------------------


def test_with_tokens_the_webhook_is_public_only_when_configured(tmp_path: Path) -> None:
    configured = make_client(tmp_path, api_tokens=(("platform", TOKEN),))
    assert configured.post("/v1/admission", json=review(namespace="kube-system")).status_code == 200
    assert configured.post("/v1/verify", json={}).status_code == 401
    off = make_client(tmp_path, api_tokens=(("platform", TOKEN),), admission_policy=None)
    assert off.post("/v1/admission", json=review()).status_code == 401
    authed = {"Authorization": f"Bearer {TOKEN}"}
    assert off.post("/v1/admission", json=review(), headers=authed).status_code == 404


# -- pure parts ---------------------------------------------------------------------------------


TEMPLATE = {"template": {"spec": pod_spec(["a:1", "b:1"], init=["i:1"], ephemeral=["e:1"])}}


@pytest.mark.parametrize(
    ("group", "kind", "obj"),
    [
        ("", "Pod", {"spec": TEMPLATE["template"]["spec"]}),
        ("apps", "Deployment", {"spec": TEMPLATE}),
        ("apps", "StatefulSet", {"spec": TEMPLATE}),
        ("apps", "DaemonSet", {"spec": TEMPLATE}),
        ("apps", "ReplicaSet", {"spec": TEMPLATE}),
        ("batch", "Job", {"spec": TEMPLATE}),
        ("batch", "CronJob", {"spec": {"jobTemplate": {"spec": TEMPLATE}}}),
    ],
)
def test_every_workload_kind_yields_all_its_images(
    group: str, kind: str, obj: dict[str, Any]
) -> None:
    assert pod_images(group, kind, obj) == ("a:1", "b:1", "i:1", "e:1")


def test_images_are_unique_in_order_and_blank_ones_skipped() -> None:
    spec = pod_spec(["b:1", "a:1", "b:1", ""], init=["a:1", "c:1"])
    spec["containers"].append({"name": "no-image"})
    assert pod_images("", "Pod", {"spec": spec}) == ("b:1", "a:1", "c:1")


def test_a_cronjob_is_not_read_as_a_job() -> None:
    with pytest.raises(ReviewError) as raised:
        pod_images("batch", "CronJob", {"spec": TEMPLATE})
    assert raised.value.field == "request.object.spec.jobTemplate"


def test_parse_review_reads_the_envelope() -> None:
    parsed = parse_review(review(namespace="team-a"))
    assert (parsed.operation, parsed.namespace, parsed.kind, parsed.name) == (
        "CREATE",
        "team-a",
        "Pod",
        "web",
    )
    assert parsed.images == (APP,)
    connect = parse_review(_with("request.operation", "CONNECT", _with("request.kind", None)))
    assert connect.images == ()


def test_failure_of_a_result() -> None:
    assert failure_of({"image": APP, "status": 200, "verdict": {"verified": True}}) is None
    failed = {"image": APP, "status": 200, "verdict": {"verified": False, "reasons": ["r1", "r2"]}}
    assert failure_of(failed) == Failure(APP, "r1", operational=False)
    # An outage is said in fixed words by its problem's type; the detail goes to the log only.
    detail = "manifest v1 in r.example/a: registry error (503) (DB: db-7.corp.internal is down)"
    down = {"image": APP, "status": 502,
            "problem": {"type": f"{TYPE_BASE}registry-unavailable", "detail": detail}}  # fmt: skip
    assert failure_of(down) == Failure(
        APP,
        "cannot be verified now: its registry could not be reached",
        operational=True,
        detail=f"registry-unavailable: {detail}",
    )
    # The time budget is the webhook's own words; anything unknown is said as unexpected.
    late = {"type": f"{TYPE_BASE}verification-timeout", "detail": "not verified within 8s"}
    found = failure_of({"image": APP, "status": 504, "problem": late})
    assert found is not None and found.reason == "cannot be verified now: not verified within 8s"
    odd = failure_of({"image": APP, "status": 500, "problem": {"detail": "Traceback ..."}})
    assert odd is not None and odd.reason == f"cannot be verified now: {UNEXPECTED}"
    assert "Traceback" in odd.logged


def test_every_problem_an_image_can_meet_has_its_words() -> None:
    """Every registry and Rekor problem the service answers with has fixed words here, so none
    is said as 'unexpected', and none could show its detail."""
    raised: list[Exception] = [
        cls(f"{cls.__name__} detail")
        for cls, *_ in REGISTRY_PROBLEMS
        if cls is not registry.RegistryCircuitOpen
    ]
    raised += [
        registry.RegistryCircuitOpen("open", host="ghcr.io", retry_in=12.0),
        UpstreamError("rekor down", timeout=False),
        UpstreamError("slow", timeout=True),
    ]
    for exc in raised:
        problem = operational_problem(exc)
        assert problem is not None and problem.kind in NOT_VERIFIABLE, exc


def test_decide() -> None:
    assert decide("u", "p", "enforce", 2, []) == {"uid": "u", "allowed": True}
    assert decide("u", "p", "audit", 2, []) == {"uid": "u", "allowed": True}
    failures = [Failure("a:1", "no signatures", False), Failure("b:1", "x" * 400, True)]
    denied = decide("u", "p", "enforce", 3, failures)
    assert denied["allowed"] is False and denied["status"]["code"] == 403
    assert denied["status"]["message"].startswith("sigverify policy 'p' denied 2 of 3 image(s): ")
    assert "a:1: no signatures; b:1: xxx" in denied["status"]["message"]
    audited = decide("u", "p", "audit", 3, failures)
    assert audited["allowed"] is True
    assert audited["warnings"][0] == "sigverify (audit, policy p): a:1: no signatures"
    assert len(audited["warnings"][1]) == MAX_WARNING_CHARS
    assert audited["warnings"][1].endswith("...")
    # Both carry audit annotations: keys the API server prefixes with the webhook's name.
    assert denied["auditAnnotations"]["policy"] == audited["auditAnnotations"]["policy"] == "p"
    assert denied["auditAnnotations"]["verification"].startswith(
        "denied 2 of 3 image(s): a:1: no signatures; b:1: xxx"
    )
    assert audited["auditAnnotations"]["verification"].startswith("would deny (audit) 2 of 3")
    many = [Failure(f"img{i}:1", "x" * 300, False) for i in range(20)]
    long = decide("u", "p", "audit", 20, many)["auditAnnotations"]["verification"]
    assert len(long) == MAX_ANNOTATION_CHARS and long.endswith("...")


DIGEST = "sha256:" + "ab" * 32


def test_an_image_by_tag_is_named_with_its_digest() -> None:
    by_tag = {"image": "r/app:v1", "status": 200,
              "verdict": {"verified": False, "reasons": ["no signatures found"],
                          "image": {"digest": DIGEST, "resolvedFromTag": True}}}  # fmt: skip
    assert image_label(by_tag) == f"r/app:v1 ({DIGEST})"
    assert failure_of(by_tag) == Failure(f"r/app:v1 ({DIGEST})", "no signatures found", False)
    by_digest = {**by_tag, "image": f"r/app@{DIGEST}",
                 "verdict": {"image": {"digest": DIGEST, "resolvedFromTag": False}}}  # fmt: skip
    assert image_label(by_digest) == f"r/app@{DIGEST}"
    # No verdict (an outage): nothing was resolved, so the image is named as given.
    assert image_label({"image": "r/app:v1", "status": 502, "problem": {}}) == "r/app:v1"


def test_which_policy_a_namespace_gets() -> None:
    rules = AdmissionRules("release", {"payments": "strict"}, None)
    assert policy_name_for("payments", rules, "env") == "strict"
    assert policy_name_for("shop", rules, "env") == "release"  # the file's default wins
    no_default = AdmissionRules(None, {"payments": "strict"}, ("infra",))
    assert policy_name_for("shop", no_default, "env") == "env"  # then the setting
    assert policy_name_for("shop", no_default, None) is None  # then none: denied
    assert policy_name_for("shop", None, "env") == "env"  # no section: as before
    settings = Settings(admission_exempt_namespaces=("kube-system",))
    assert exempt_namespaces(settings, rules) == ("kube-system",)
    assert exempt_namespaces(settings, no_default) == ("infra",)


RULES = b"""
admission:
  namespaces: {payments: gate, dev: watch}
  exempt: [infra]
"""


def test_namespaces_get_their_policies_from_the_file(tmp_path: Path) -> None:
    client = make_client(tmp_path, POLICIES + RULES, admission_policy=None)
    denied = answer(client, review(namespace="payments"))  # gate: enforce
    assert denied["allowed"] is False
    assert denied["status"]["message"].startswith("sigverify policy 'gate' denied 1 of 1")
    assert denied["auditAnnotations"]["policy"] == "gate"
    audited = answer(client, review(namespace="dev"))  # watch: audit
    assert audited["allowed"] is True
    assert audited["warnings"][0].startswith(f"sigverify (audit, policy watch): {APP}: ")
    assert audited["auditAnnotations"]["policy"] == "watch"
    # The file's exempt list replaces the setting's (kube-system is checked here).
    assert answer(client, review(namespace="infra"))["allowed"] is True
    # Not listed, no default, no SIGVERIFY_ADMISSION_POLICY: denied, saying how to fix it.
    unlisted = answer(client, review(namespace="shop"))
    assert unlisted["allowed"] is False
    assert unlisted["status"] == {
        "code": 403,
        "message": "sigverify: no admission policy for namespace 'shop': list it under "
        "admission.namespaces in the policy file, or set admission.default",
    }
    assert answer(client, review(namespace="kube-system"))["allowed"] is False


def test_the_setting_is_the_default_beside_the_files_rules(tmp_path: Path) -> None:
    client = make_client(tmp_path, POLICIES + RULES, admission_policy="watch")
    assert answer(client, review(namespace="payments"))["allowed"] is False  # mapped: gate
    shop = answer(client, review(namespace="shop"))  # not mapped: the setting's watch
    assert shop["allowed"] is True and shop["auditAnnotations"]["policy"] == "watch"


def test_with_tokens_the_file_section_alone_makes_the_webhook_public(tmp_path: Path) -> None:
    client = make_client(
        tmp_path, POLICIES + RULES, admission_policy=None, api_tokens=(("platform", TOKEN),)
    )
    assert client.post("/v1/admission", json=review(namespace="infra")).status_code == 200
    assert client.post("/v1/verify", json={}).status_code == 401
