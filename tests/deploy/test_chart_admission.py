"""The chart with the admission webhook on: the pods serve HTTPS from the TLS Secret, everything
that calls them follows, and the webhook's policy is one the service will find."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.api.admission import POD_SPECS
from service.api.auth import ADMISSION_PATHS
from service.config import SETTINGS
from service.policies import parse_policy_file
from tests.contract import spec
from tests.deploy import helm
from tests.deploy.helm import CHART, RELEASE
from tests.deploy.test_chart import _container_env, rendered

CA = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="


def test_the_webhook_pods_serve_https_from_the_tls_secret() -> None:
    r = rendered("webhook")
    values = yaml.safe_load((CHART / "ci" / "webhook-values.yaml").read_text())
    secret = values["admissionWebhook"]["tls"]["existingSecret"]
    env = _container_env(r)
    assert env["SIGVERIFY_TLS_CERT_FILE"] == "/etc/sigverify/tls-cert/tls.crt"
    assert env["SIGVERIFY_TLS_KEY_FILE"] == "/etc/sigverify/tls-key/tls.key"
    volumes = {v["name"]: v["secret"] for v in r.server["spec"]["template"]["spec"]["volumes"]
               if "secret" in v}  # fmt: skip
    assert volumes["tls-cert"]["secretName"] == volumes["tls-key"]["secretName"] == secret
    assert volumes["tls-cert"]["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
    assert volumes["tls-key"]["items"] == [{"key": "tls.key", "path": "tls.key"}]
    assert volumes["tls-key"]["defaultMode"] == 0o440
    container = r.container
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    test_url = r.get("Pod")["spec"]["containers"][0]["command"][-1]
    assert test_url.startswith(f"https://{RELEASE}:")


def test_without_the_webhook_the_pods_serve_plain_http() -> None:
    r = rendered("defaults")
    env = _container_env(r)
    assert "SIGVERIFY_TLS_CERT_FILE" not in env and "SIGVERIFY_ADMISSION_POLICY" not in env
    assert "scheme" not in r.container["readinessProbe"]["httpGet"]
    assert not [m for m in r.container["volumeMounts"] if m["name"].startswith("tls-")]


@pytest.mark.parametrize("case", ["webhook", "webhook-certmanager"])
def test_the_webhook_policy_is_in_the_mounted_policy_file(case: str) -> None:
    r = rendered(case)
    name = _container_env(r)["SIGVERIFY_ADMISSION_POLICY"]
    policy_file = r.get("ConfigMap", f"{RELEASE}-policies")["data"]["policies.yaml"]
    assert name in parse_policy_file(policy_file.encode(), max_regexp_length=256).policies


def test_webhook_exempt_namespaces_are_passed_as_a_list() -> None:
    env = _container_env(rendered("webhook"))
    assert env["SIGVERIFY_ADMISSION_EXEMPT_NAMESPACES"] == "kube-system,kube-public"


POLICY = [
    "policies[0].name=release",
    "policies[0].tenant=platform",
    "policies[0].policy.certificateIdentity=a@b.c",
    "policies[0].policy.certificateOidcIssuer=https://accounts.google.com",
]
WEBHOOK = ["admissionWebhook.enabled=true", f"admissionWebhook.caBundle={CA}"]


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ([*WEBHOOK, *POLICY, "config.admission_policy=release"],
         "needs admissionWebhook.tls.existingSecret"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls"],
         "needs config.admission_policy (the name of one of `policies`) or admissionPolicies"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "admissionPolicies.default=other"], "admissionPolicies.default=other is not the name"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "admissionPolicies.namespaces.dev=other"],
         "admissionPolicies.namespaces.dev=other is not the name"),
        (["admissionPolicies.default=release"], "admissionPolicies needs `policies`"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "config.admission_policy=release", "admissionWebhook.timeoutSeconds=8"],
         "admissionWebhook.timeoutSeconds=8 must be above config.admission_timeout=8"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "config.admission_policy=release", "config.admission_timeout=12"],
         "admissionWebhook.timeoutSeconds=10 must be above config.admission_timeout=12"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "config.admission_policy=other"], "admission_policy=other is not the name"),
        (["config.admission_policy=release"], "admission_policy=release is not the name"),
    ],
)  # fmt: skip
def test_incomplete_webhook_values_are_refused(sets: list[str], expected: str) -> None:
    assert expected in helm.template_error(sets=sets)


def test_complete_webhook_values_render() -> None:
    sets = [*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
            "config.admission_policy=release"]  # fmt: skip
    assert helm.template(sets=sets).has("ValidatingWebhookConfiguration")


def test_a_policy_per_namespace_is_the_policy_files_admission_section() -> None:
    r = rendered("webhook-namespaces")
    values = yaml.safe_load((CHART / "ci" / "webhook-namespaces-values.yaml").read_text())
    env = _container_env(r)
    assert "SIGVERIFY_ADMISSION_POLICY" not in env  # the section alone configures the webhook
    data = r.get("ConfigMap", f"{RELEASE}-policies")["data"]["policies.yaml"]
    parsed = parse_policy_file(data.encode(), max_regexp_length=256)
    rules = parsed.admission
    assert rules is not None
    wanted = values["admissionPolicies"]
    assert rules.default == wanted["default"]
    assert dict(rules.namespaces) == wanted["namespaces"]
    assert rules.exempt == tuple(wanted["exempt"])
    assert r.has("ValidatingWebhookConfiguration")


def test_the_webhook_waits_longer_than_the_service_budget() -> None:
    """The API server's timeoutSeconds is above the service's SIGVERIFY_ADMISSION_TIMEOUT in the
    defaults and every webhook case, so the API server gets sigverify's answer."""
    default_budget = float(next(s for s in SETTINGS if s.name == "admission_timeout").default)
    chart_default = yaml.safe_load((CHART / "values.yaml").read_text())["admissionWebhook"]
    assert chart_default["timeoutSeconds"] > default_budget
    assert chart_default["failurePolicy"] == "Fail"
    for case in ("webhook", "webhook-certmanager", "webhook-namespaces"):
        r = rendered(case)
        (webhook,) = r.get("ValidatingWebhookConfiguration")["webhooks"]
        budget = float(_container_env(r).get("SIGVERIFY_ADMISSION_TIMEOUT") or default_budget)
        assert webhook["timeoutSeconds"] > budget, case


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("admissionPolicies.namespaces.Dev=release", "invalid propertyName 'Dev'"),
        ("admissionPolicies.exempt[0]=kube_system", "/admissionPolicies/exempt/0"),
        ("admissionPolicies.defualt=release", "/admissionPolicies"),
        ("config.admission_timeout=30", "/config/admission_timeout"),
    ],
)
def test_the_schema_refuses_bad_admission_values(setting: str, path: str) -> None:
    message = helm.template_error(sets=[setting])
    assert path in message, message


# ---- which requests the webhook's rules reach -------------------------------------------------

ADMISSION_DATA = helm.ROOT / "tests" / "data" / "admission"
# The resources whose objects the service reads a pod spec from (service.api.admission.POD_SPECS).
RESOURCE_KINDS = {("", "pods"): "Pod", ("apps", "deployments"): "Deployment",
                  ("apps", "statefulsets"): "StatefulSet", ("apps", "daemonsets"): "DaemonSet",
                  ("apps", "replicasets"): "ReplicaSet", ("batch", "jobs"): "Job",
                  ("batch", "cronjobs"): "CronJob"}  # fmt: skip


def _matches(names: list[str], value: str) -> bool:
    return "*" in names or value in names


def _rule_matches(rule: dict[str, Any], request: dict[str, Any]) -> bool:
    """Whether a webhook rule reaches an AdmissionReview request, as the API server decides it
    (RuleWithOperations: `pods` is the resource alone, `pods/x` one subresource, `pods/*` every
    subresource of pods, `*` every resource, `*/*` everything)."""
    resource = request["resource"]
    sub = request.get("subResource") or ""
    wanted = f"{resource['resource']}/{sub}" if sub else resource["resource"]
    resource_ok = any(
        r in (wanted, "*/*")
        or (r == "*" and not sub)
        or (sub and r == f"{resource['resource']}/*")
        or (sub and r == f"*/{sub}")
        for r in rule["resources"]
    )
    scope = rule.get("scope", "*")
    return (
        _matches(rule["operations"], request["operation"])
        and _matches(rule["apiGroups"], resource["group"])
        and _matches(rule["apiVersions"], resource["version"])
        and resource_ok
        and scope in ("*", "Namespaced" if request.get("namespace") else "Cluster")
    )


def _reached(case: str, request: dict[str, Any]) -> bool:
    (webhook,) = rendered(case).get("ValidatingWebhookConfiguration")["webhooks"]
    return any(_rule_matches(rule, request) for rule in webhook["rules"])


def _request(name: str) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((ADMISSION_DATA / name).read_text())["request"]
    return request


def test_the_rule_matcher_follows_the_api_servers_rules() -> None:
    pods = {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
            "resources": ["pods"], "scope": "Namespaced"}  # fmt: skip
    debug = _request("pod-ephemeralcontainers-update.json")
    assert _rule_matches(pods, _request("pod-create.json"))
    assert not _rule_matches(pods, debug)  # `pods` is not its subresources
    assert _rule_matches({**pods, "resources": ["pods/*"]}, debug)
    assert _rule_matches({**pods, "resources": ["*/*"]}, debug)
    assert not _rule_matches({**pods, "resources": ["*"]}, debug)
    assert not _rule_matches({**pods, "operations": ["CREATE"]}, debug)
    assert not _rule_matches(pods, _request("deployment-update.json"))


@pytest.mark.parametrize("case", ["webhook", "webhook-certmanager", "webhook-workloads"])
def test_every_container_is_reached(case: str) -> None:
    """Pods as created and updated, and the `ephemeralcontainers` subresource `kubectl debug`
    updates to add a container to a running Pod (the AdmissionReview the Kubernetes
    documentation shows, in tests/data/admission)."""
    assert _reached(case, _request("pod-create.json"))
    assert _reached(case, _request("pod-ephemeralcontainers-update.json"))
    for operation in ("CREATE", "UPDATE"):
        assert _reached(case, {**_request("pod-create.json"), "operation": operation})


def test_workloads_are_reached_only_where_asked_for() -> None:
    deployment = _request("deployment-update.json")
    assert not _reached("webhook", deployment)
    assert _reached("webhook-workloads", deployment)
    # ReplicaSets are scaled by the Deployment controller with updates: left out on purpose.
    replicaset = {**deployment, "resource": {"group": "apps", "version": "v1",
                                             "resource": "replicasets"}}  # fmt: skip
    assert not _reached("webhook-workloads", replicaset)


@pytest.mark.parametrize("case", ["webhook", "webhook-workloads"])
def test_every_resource_the_rules_name_is_one_the_service_reads(case: str) -> None:
    (webhook,) = rendered(case).get("ValidatingWebhookConfiguration")["webhooks"]
    for rule in webhook["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                main, _, sub = resource.partition("/")
                assert sub in ("", "ephemeralcontainers"), resource
                kind = RESOURCE_KINDS[(group, main)]
                assert (group, kind) in POD_SPECS, (group, kind)


def test_the_default_rules_are_the_webhook_cases_rules() -> None:
    """ci/webhook-values.yaml leaves the rules at their defaults: the tests above test those."""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["admissionWebhook"]["rules"]
    (webhook,) = rendered("webhook").get("ValidatingWebhookConfiguration")["webhooks"]
    assert webhook["rules"] == defaults
    assert (
        "rules"
        not in yaml.safe_load(Path(CHART / "ci" / "webhook-values.yaml").read_text())[
            "admissionWebhook"
        ]
    )


# ---- who may call the webhook -----------------------------------------------------------------


def test_the_api_servers_certificate_and_token_are_wired() -> None:
    r = rendered("webhook-clientauth")
    values = yaml.safe_load((CHART / "ci" / "webhook-clientauth-values.yaml").read_text())
    auth = values["admissionWebhook"]["clientAuth"]
    env = _container_env(r)
    assert env["SIGVERIFY_ADMISSION_CLIENT_CA_FILE"] == "/etc/sigverify/admission-client-ca/ca.crt"
    assert env["SIGVERIFY_ADMISSION_CLIENT_NAMES"] == ",".join(auth["certificate"]["names"])
    assert env["SIGVERIFY_ADMISSION_TOKEN_FILE"] == "/etc/sigverify/admission-token/tokens"
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    assert volumes["admission-client-ca"]["configMap"] == {
        "name": auth["certificate"]["caConfigMap"], "defaultMode": 0o444,
        "items": [{"key": auth["certificate"]["caKey"], "path": "ca.crt"}]}  # fmt: skip
    assert volumes["admission-token"]["secret"] == {
        "secretName": auth["token"]["existingSecret"], "defaultMode": 0o440,
        "items": [{"key": auth["token"]["key"], "path": "tokens"}]}  # fmt: skip
    mounts = {m["name"]: m for m in r.container["volumeMounts"]}
    assert (
        mounts["admission-client-ca"]["readOnly"] is mounts["admission-token"]["readOnly"] is True
    )
    # The settings these make are ones the service starts with (with HTTPS, which they need).
    assert env["SIGVERIFY_TLS_CERT_FILE"]


def test_without_client_auth_nothing_is_asked_of_the_api_server() -> None:
    for case in ("webhook", "defaults"):
        env = _container_env(rendered(case))
        assert not {k for k in env if k.startswith("SIGVERIFY_ADMISSION_CLIENT")}, case
        assert "SIGVERIFY_ADMISSION_TOKEN_FILE" not in env, case


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["admissionWebhook.clientAuth.token.existingSecret=t"],
         "admissionWebhook.clientAuth needs admissionWebhook.enabled"),
        ([*WEBHOOK, *POLICY, "admissionWebhook.tls.existingSecret=tls",
          "config.admission_policy=release", "admissionWebhook.clientAuth.certificate.names[0]=a"],
         "certificate.names needs admissionWebhook.clientAuth.certificate.caConfigMap"),
    ],
)  # fmt: skip
def test_client_auth_values_that_cannot_work_are_refused(sets: list[str], expected: str) -> None:
    assert expected in helm.template_error(sets=sets)


def test_notes_say_what_the_api_server_must_present() -> None:
    from tests.deploy.test_chart import _notes

    notes = _notes("webhook-clientauth")
    assert "a client certificate from the CA in ConfigMap apiserver-webhook-client-ca" in notes
    assert "a token from Secret sigverify-webhook-token" in notes
    assert f"{RELEASE}.verify.svc:8080" in notes
    assert "admissionWebhook.clientAuth" in _notes("webhook")


# ---- the mutating webhook: pinning verified digests -------------------------------------------


def test_the_mutating_webhook_is_the_validating_one_pointed_at_the_pinning_path() -> None:
    """Same service, port, TLS (caBundle), selectors, rules, failure policy and budget, so it
    reviews exactly what the validating webhook reviews; mutating webhooks run first, so the
    validating one then sees the pinned digests."""
    r = rendered("webhook-mutate")
    values = yaml.safe_load((CHART / "ci" / "webhook-mutate-values.yaml").read_text())
    (validating,) = r.get("ValidatingWebhookConfiguration")["webhooks"]
    (mutating,) = r.get("MutatingWebhookConfiguration")["webhooks"]
    assert mutating["name"] == "pin.sigverify.dev" != validating["name"]
    assert mutating["clientConfig"]["service"]["path"] == "/v1/admission/mutate"
    assert validating["clientConfig"]["service"]["path"] == "/v1/admission"
    assert (
        mutating["reinvocationPolicy"] == values["admissionWebhook"]["mutate"]["reinvocationPolicy"]
    )
    assert mutating["sideEffects"] == "None"
    same = {k: v for k, v in validating.items() if k not in ("name", "clientConfig")}
    assert {k: v for k, v in mutating.items() if k in same} == same
    service = dict(mutating["clientConfig"]["service"], path="/v1/admission")
    assert {**mutating["clientConfig"], "service": service} == validating["clientConfig"]
    assert _rule_matches(mutating["rules"][0], _request("pod-create.json"))
    # The path is the service's, and one it answers without an API token (the API server has
    # none; it presents the webhook token wired here, as for the validating webhook).
    assert ("/v1/admission/mutate", "post") in {
        (path, method) for path, item in spec()["paths"].items() for method in item
    }
    assert "/v1/admission/mutate" in ADMISSION_PATHS
    assert _container_env(r)["SIGVERIFY_ADMISSION_TOKEN_FILE"]
    from tests.deploy.test_chart import _notes

    assert "POST /v1/admission/mutate first" in _notes("webhook-mutate")


def test_pinning_is_off_unless_asked_for_and_needs_the_validating_webhook() -> None:
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())["admissionWebhook"]["mutate"]
    assert defaults == {"enabled": False, "reinvocationPolicy": "IfNeeded"}
    for case in ("defaults", "webhook", "webhook-namespaces"):
        assert not rendered(case).has("MutatingWebhookConfiguration"), case
    message = helm.template_error(sets=["admissionWebhook.mutate.enabled=true"])
    assert "admissionWebhook.mutate.enabled needs admissionWebhook.enabled" in message
    bad = helm.template_error(sets=["admissionWebhook.mutate.reinvocationPolicy=Sometimes"])
    assert "/admissionWebhook/mutate/reinvocationPolicy" in bad
