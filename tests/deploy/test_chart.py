"""The Helm chart: it lints, renders valid Kubernetes objects for the defaults and every
ci/*-values.yaml, is secure by default, and passes the service only settings it knows.

Rendering is offline (`helm template --kube-version`); manifests are validated against the
Kubernetes 1.33 schemas bundled in kubernetes-validate, strictly (unknown fields are errors).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service.config import PREFIX, SETTINGS, Settings
from service.policies import parse_policy_file
from tests.deploy import helm
from tests.deploy.helm import CHART, NAMESPACE, RELEASE, Rendered

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
CASES = ["defaults", *(p.name.removesuffix("-values.yaml") for p in CI_VALUES)]
CHART_META = yaml.safe_load((CHART / "Chart.yaml").read_text())
SCHEMA = json.loads((CHART / "values.schema.json").read_text())

# Settings the chart derives from what it mounts and deploys; values.config may not set them.
CHART_MANAGED = {"bind", "data_dir", "redis_url", "signing_key_file", "docker_config",
                 "trust_root_file", "policy_file", "api_tokens_file",
                 # HTTPS: from admissionWebhook.tls.existingSecret when the webhook is on.
                 "tls_cert_file", "tls_key_file",
                 # Secrets never go into a ConfigMap: tokens come from apiTokens.existingSecret.
                 "api_tokens", "retired_key_files",
                 # Each from trustRoot.extra, mounted from its ConfigMap.
                 "trust_roots",
                 # From admissionWebhook.clientAuth, mounted from its ConfigMap and Secret.
                 "admission_client_ca_file", "admission_client_names",
                 "admission_token_file"}  # fmt: skip
# Variables that are not sigverify settings but that the chart may set.
OTHER_ENV = {"REDIS_PASSWORD", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
FILE_SETTINGS = {"SIGVERIFY_SIGNING_KEY_FILE", "SIGVERIFY_DOCKER_CONFIG",
                 "SIGVERIFY_TRUST_ROOT_FILE", "SIGVERIFY_POLICY_FILE",
                 "SIGVERIFY_API_TOKENS_FILE", "SIGVERIFY_TLS_CERT_FILE",
                 "SIGVERIFY_TLS_KEY_FILE", "SIGVERIFY_ADMISSION_CLIENT_CA_FILE",
                 "SIGVERIFY_ADMISSION_TOKEN_FILE"}  # fmt: skip


def _values(case: str) -> list[Path]:
    return [] if case == "defaults" else [CHART / "ci" / f"{case}-values.yaml"]


@functools.cache
def rendered(case: str) -> Rendered:
    return helm.template(_values(case))


def test_there_is_a_ci_values_file_per_optional_feature() -> None:
    features = {"redis-external", "redis-off", "servicemonitor", "webhook", "secrets", "hpa-off",
                "networkpolicy-off", "digest", "config", "policies", "trust-roots",
                "tuf-mirror", "airgapped", "dashboard"}  # fmt: skip
    assert features <= set(CASES)


# ---- helm lint --------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_helm_lint_strict(case: str) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
    for path in _values(case):
        args += ["--values", str(path)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout


def test_helm_lint_plain_passes_and_lint_fails_on_a_bad_value() -> None:
    assert helm.run("lint", str(CHART)).returncode == 0
    bad = helm.run("lint", str(CHART), "--set", "replicaCount=x")
    assert bad.returncode != 0
    assert "replicaCount" in bad.stdout + bad.stderr


# ---- every manifest is a valid Kubernetes object ------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_manifests_validate_against_kubernetes_schemas(case: str) -> None:
    docs = rendered(case).docs
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked structurally in test_servicemonitor
        kubernetes_validate.validate(doc, helm.KUBE_VERSION, strict=True)
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_the_validator_rejects_a_bad_manifest() -> None:
    deployment = json.loads(json.dumps(rendered("defaults").server))
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContex"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, helm.KUBE_VERSION, strict=True)


def test_defaults_render_what_a_production_install_needs() -> None:
    r = rendered("defaults")
    kinds = {d["kind"] for d in r.docs}
    assert kinds == {"ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "Pod",
                     "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"}  # fmt: skip
    # The one Secret: the release's verdict-signing key (tests/deploy/test_chart_signing_key.py).
    assert r.get("Secret")["metadata"]["name"] == f"{RELEASE}-signing-key"
    assert not r.has("ServiceMonitor") and not r.has("ValidatingWebhookConfiguration")


# ---- secure by default ----------------------------------------------------------------------


def _pod_specs(r: Rendered) -> list[tuple[str, dict[str, Any]]]:
    specs = [(d["metadata"]["name"], d["spec"]["template"]["spec"]) for d in r.all("Deployment")]
    specs += [(d["metadata"]["name"], d["spec"]) for d in r.all("Pod")]
    return specs


@pytest.mark.parametrize("case", CASES)
def test_every_pod_is_locked_down(case: str) -> None:
    for name, spec in _pod_specs(rendered(case)):
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        pod_sc = spec["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert pod_sc["runAsUser"] > 0, name
        assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for host in ("hostNetwork", "hostPID", "hostIPC"):
            assert not spec.get(host), (name, host)
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v], name
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, name
            assert sc["allowPrivilegeEscalation"] is False, name
            assert sc["privileged"] is False, name
            assert sc["capabilities"] == {"drop": ["ALL"]}, name
            assert container["resources"]["limits"]["memory"], name
            assert "@sha256:" in container["image"] or container["image"].startswith(
                "sigverify:"
            ), f"{name}: {container['image']} is neither pinned nor the locally built image"


@pytest.mark.parametrize("case", CASES)
def test_server_probes_and_writable_paths(case: str) -> None:
    r = rendered(case)
    container = r.container
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8080}
    live, ready = container["livenessProbe"]["httpGet"], container["readinessProbe"]["httpGet"]
    assert (live["path"], ready["path"]) == ("/healthz", "/readyz")
    assert live["port"] == ready["port"] == "http"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    spec = r.server["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for mount in mounts.values():
        assert mount["name"] in volumes, mount
        if "emptyDir" not in volumes[mount["name"]]:
            assert mount.get("readOnly") is True, mount
    env = _container_env(r)
    for writable in (env["SIGVERIFY_DATA_DIR"], "/tmp"):
        assert "emptyDir" in volumes[mounts[writable]["name"]], writable
    assert volumes[mounts["/tmp"]["name"]]["emptyDir"]["medium"] == "Memory"


def test_the_chart_runs_the_image_as_the_user_it_declares() -> None:
    dockerfile = (helm.ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER (\d+):(\d+)$", dockerfile, flags=re.MULTILINE)[-1]
    pod_sc = rendered("defaults").server["spec"]["template"]["spec"]["securityContext"]
    assert (str(pod_sc["runAsUser"]), str(pod_sc["runAsGroup"])) == user
    assert str(pod_sc["fsGroup"]) == user[1]


@pytest.mark.parametrize("case", CASES)
def test_selectors_pick_the_right_pods(case: str) -> None:
    r = rendered(case)
    server_labels = r.server["spec"]["template"]["metadata"]["labels"]
    redis = [d for d in r.all("Deployment") if d["metadata"]["name"] != RELEASE]
    redis_labels = redis[0]["spec"]["template"]["metadata"]["labels"] if redis else {}

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    server_selectors = [
        r.server["spec"]["selector"]["matchLabels"],
        r.get("Service", RELEASE)["spec"]["selector"],
    ]
    if r.has("PodDisruptionBudget"):
        server_selectors.append(r.get("PodDisruptionBudget")["spec"]["selector"]["matchLabels"])
    if r.has("NetworkPolicy"):
        policy = r.get("NetworkPolicy", RELEASE)
        server_selectors.append(policy["spec"]["podSelector"]["matchLabels"])
    for constraint in r.server["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
        server_selectors.append(constraint["labelSelector"]["matchLabels"])
    for selector in server_selectors:
        assert selects(selector, server_labels), selector
        assert not redis_labels or not selects(selector, redis_labels), selector
    if redis:
        redis_service = r.get("Service", f"{RELEASE}-redis")["spec"]["selector"]
        assert selects(redis_service, redis_labels)
        assert not selects(redis_service, server_labels)
    if r.has("HorizontalPodAutoscaler"):
        target = r.get("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", RELEASE)


# ---- settings: every variable the chart sets is a real one ------------------------------------


def _container_env(r: Rendered) -> dict[str, str | None]:
    """What the sigverify container sees: ConfigMaps it loads, then `env` (None: from a Secret)."""
    env: dict[str, str | None] = {}
    for source in r.container.get("envFrom", []):
        env.update(r.get("ConfigMap", source["configMapRef"]["name"])["data"])
    for index, var in enumerate(r.container.get("env", [])):
        value = var.get("value")
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value or ""):
            earlier = [v["name"] for v in r.container["env"][:index]]
            assert ref in earlier, f"{var['name']} refers to $({ref}) before it is defined"
        env[var["name"]] = value
    return env


def setting_problems(env: dict[str, str | None]) -> list[str]:
    """Why the service would refuse these variables: unknown SIGVERIFY_* names, bad values."""
    settings = {s.env: s for s in SETTINGS}
    problems = []
    for name, value in env.items():
        if not name.startswith(PREFIX):
            if name not in OTHER_ENV and not name.startswith("OTEL_"):
                problems.append(f"{name}: neither a setting nor a variable the chart may set")
        elif name not in settings:
            problems.append(f"{name}: not a sigverify setting")
        elif value is not None and "$(" not in value:
            try:
                settings[name].parse(value.strip())
            except ValueError as exc:
                problems.append(f"{name}={value!r}: {exc}")
    return problems


@pytest.mark.parametrize("case", CASES)
def test_every_variable_is_a_setting_the_service_accepts(case: str, tmp_path: Path) -> None:
    r = rendered(case)
    env = _container_env(r)
    assert not setting_problems(env)
    assert env["SIGVERIFY_BIND"] == "0.0.0.0:8080"
    # The service would start with this environment: file settings name mounted files (here
    # stand-ins), values from Secrets get stand-ins, and cross-setting rules hold.
    mounts = {m["mountPath"]: m["name"] for m in r.container["volumeMounts"]}
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    start_env: dict[str, str] = {}
    for name, value in env.items():
        if not name.startswith(PREFIX):
            continue
        if name in FILE_SETTINGS:
            assert value is not None
            path = Path(value)
            source = volumes[mounts[str(path.parent)]]
            items = (source.get("secret") or source.get("configMap"))["items"]
            assert [i["path"] for i in items] == [path.name], (name, items)
            stand_in = tmp_path / path.name
            stand_in.write_text("x")
            start_env[name] = str(stand_in)
        elif name == "SIGVERIFY_RETIRED_KEY_FILES":
            assert value is not None
            stand_ins = []
            for n, file in enumerate(value.split(",")):
                path = Path(file)
                source = volumes[mounts[str(path.parent)]]
                assert [i["path"] for i in source["secret"]["items"]] == [path.name], file
                stand_in = tmp_path / f"retired-{n}.pem"
                stand_in.write_text("x")
                stand_ins.append(str(stand_in))
            start_env[name] = ",".join(stand_ins)
        elif name == "SIGVERIFY_TRUST_ROOTS":
            assert value is not None
            stand_ins = []
            for item in value.split(","):
                root, _, file = item.partition("=")
                path = Path(file)
                source = volumes[mounts[str(path.parent)]]
                assert [i["path"] for i in source["configMap"]["items"]] == [path.name], item
                stand_in = tmp_path / f"{root}.json"
                stand_in.write_text("x")
                stand_ins.append(f"{root}={stand_in}")
            start_env[name] = ",".join(stand_ins)
        elif value is None or "$(" in value:
            start_env[name] = "redis://:pw@redis.example:6379/0"
        else:
            start_env[name] = value
    Settings.from_env(start_env)


def test_a_bad_variable_is_caught() -> None:
    r = helm.template(sets=["extraEnv[0].name=SIGVERIFY_WORKERZ", "extraEnv[0].value=x"])
    problems = setting_problems(_container_env(r))
    assert problems == ["SIGVERIFY_WORKERZ: not a sigverify setting"]
    assert setting_problems({"SIGVERIFY_WORKERS": "0"})
    assert setting_problems({"HTTP_PROXY": "x"})


def test_large_numbers_render_as_integers() -> None:
    data = rendered("config").get("ConfigMap", RELEASE)["data"]
    assert data["SIGVERIFY_MAX_BLOB_BYTES"] == "16777216"
    assert data["SIGVERIFY_REKOR_TIMEOUT"] == "2.5"
    assert data["SIGVERIFY_REGISTRY_ALLOW"] == "ghcr.io,*.pkg.dev,registry.internal:5000"
    assert data["SIGVERIFY_ALLOW_PRIVATE"] == "true"


def test_schema_config_keys_are_the_settings_the_chart_does_not_manage() -> None:
    keys = set(SCHEMA["properties"]["config"]["properties"])
    assert keys == {s.name for s in SETTINGS} - CHART_MANAGED
    assert SCHEMA["properties"]["config"]["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted({s.name for s in SETTINGS} - CHART_MANAGED))
def test_schema_bounds_are_the_services_bounds(name: str) -> None:
    """What the schema admits at its edges, the service accepts; just past them, it refuses."""
    prop = SCHEMA["properties"]["config"]["properties"][name]
    parse = next(s for s in SETTINGS if s.name == name).parse
    assert prop["description"] == PREFIX + name.upper()
    step = 1 if prop.get("type") == "integer" else 1e-3
    if "minimum" in prop:
        parse(str(prop["minimum"]))
        with pytest.raises(ValueError):
            parse(str(prop["minimum"] - step))
    if "maximum" in prop:
        parse(str(prop["maximum"]))
        with pytest.raises(ValueError):
            parse(str(prop["maximum"] + step))
    for value in prop.get("enum", []):
        parse(value)
    if prop.get("type") == "boolean":
        assert parse("true") is True and parse("false") is False
    if prop.get("type") in {"integer", "number"}:
        assert "minimum" in prop and "maximum" in prop
        assert math.isfinite(prop["minimum"]) and math.isfinite(prop["maximum"])


@pytest.mark.parametrize(
    ("setting", "path"),
    [
        ("replicaCount=x", "/replicaCount"),
        ("config.workers=0", "/config/workers"),
        ("config.workerz=2", "/config"),
        ("config.log_level=LOUD", "/config/log_level"),
        ("image.digest=sha256:abc", "/image/digest"),
        ("securityContext.runAsUser=0", "/securityContext/runAsUser"),
        ("admissionWebhook.failurePolicy=Maybe", "/admissionWebhook/failurePolicy"),
        ("networkPolicy.egress.registries.ports[0]=0", "/networkPolicy/egress/registries/ports/0"),
        ("redis.external.url=http://redis:6379", "/redis/external/url"),
        ("servce.port=80", "servce"),
        ("extraEnv[0].name=A,extraEnv[0].value=3", "/extraEnv/0/value"),
    ],
)
def test_schema_rejects_bad_values(setting: str, path: str) -> None:
    message = helm.template_error(sets=[setting])
    assert path in message, message


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (["redis.external.url=redis://r:6379/0"], "set either redis.internal.enabled"),
        (["admissionWebhook.enabled=true"], "needs admissionWebhook.caBundle"),
        (["config.tuf_url=https://tuf.example", "trustRoot.existingConfigMap=root"],
         "one trust-root source"),
        (["config.tuf_root_file=/etc/tuf/root.json", "trustRoot.existingConfigMap=root"],
         "one trust-root source"),
        (["config.tuf_url=https://tuf.example", "config.tuf_refresh=false"], "TUF is off"),
    ],
)  # fmt: skip
def test_contradictory_values_are_refused(sets: list[str], expected: str) -> None:
    assert expected in helm.template_error(sets=sets)


# ---- features ---------------------------------------------------------------------------------


def test_image_is_the_app_version_or_pinned_by_digest() -> None:
    assert rendered("defaults").container["image"] == f"sigverify:{CHART_META['appVersion']}"
    digest = yaml.safe_load((CHART / "ci" / "digest-values.yaml").read_text())["image"]["digest"]
    pinned = rendered("digest").container["image"]
    assert pinned == f"registry.example/platform/sigverify@{digest}"
    test_pod = rendered("digest").get("Pod")["spec"]["containers"][0]["image"]
    assert test_pod == pinned


def test_config_change_rolls_the_pods() -> None:
    def checksum(r: Rendered) -> str:
        annotations = r.server["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    assert checksum(rendered("defaults")) != checksum(helm.template(sets=["config.workers=3"]))
    assert checksum(rendered("defaults")) != checksum(rendered("policies"))


def test_autoscaling_owns_replicas_unless_off() -> None:
    assert "replicas" not in rendered("defaults").server["spec"]
    assert rendered("defaults").get("HorizontalPodAutoscaler")["spec"]["minReplicas"] >= 2
    off = rendered("hpa-off")
    assert off.server["spec"]["replicas"] == 3 and not off.has("HorizontalPodAutoscaler")


def test_pods_spread_over_nodes_and_zones_by_default() -> None:
    constraints = rendered("defaults").server["spec"]["template"]["spec"]
    keys = [c["topologyKey"] for c in constraints["topologySpreadConstraints"]]
    assert keys == ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
    assert rendered("defaults").get("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_secrets_are_mounted_and_named_by_their_settings() -> None:
    r = rendered("secrets")
    env = _container_env(r)
    assert env["SIGVERIFY_SIGNING_KEY_FILE"] == "/etc/sigverify/signing-key/signing-key.pem"
    assert env["SIGVERIFY_DOCKER_CONFIG"] == "/etc/sigverify/registry-credentials/config.json"
    assert env["SIGVERIFY_TRUST_ROOT_FILE"] == "/etc/sigverify/trust-root/trusted_root.json"
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    assert volumes["signing-key"]["secret"]["secretName"] == "sigverify-verdict-key"
    assert env["SIGVERIFY_RETIRED_KEY_FILES"] == "/etc/sigverify/retired-keys/0/retired.pem"
    assert volumes["retired-key-0"]["secret"] == {
        "secretName": "sigverify-verdict-key-2025", "defaultMode": 0o440,
        "items": [{"key": "public.pem", "path": "retired.pem"}]}  # fmt: skip
    assert volumes["registry-credentials"]["secret"]["items"] == [
        {"key": ".dockerconfigjson", "path": "config.json"}
    ]
    assert volumes["api-tokens"]["secret"]["secretName"] == "sigverify-api-tokens"
    assert volumes["trust-root"]["configMap"]["name"] == "sigverify-trusted-root"
    # Without them: no file settings but the generated signing key's, no such volumes.
    defaults = _container_env(rendered("defaults"))
    assert FILE_SETTINGS & set(defaults) == {"SIGVERIFY_SIGNING_KEY_FILE"}


def test_policies_are_a_mounted_file() -> None:
    r = rendered("policies")
    values = yaml.safe_load((CHART / "ci" / "policies-values.yaml").read_text())["policies"]
    cm = r.get("ConfigMap", f"{RELEASE}-policies")
    assert yaml.safe_load(cm["data"]["policies.yaml"]) == {"policies": values}
    # The file the pods read is one the service accepts.
    parsed = parse_policy_file(cm["data"]["policies.yaml"].encode(), max_regexp_length=256).policies
    assert sorted(parsed) == ["distroless", "github-release"]
    mounts = {m["name"]: m["mountPath"] for m in r.container["volumeMounts"]}
    assert mounts["policies"] == "/etc/sigverify/policies"
    assert not rendered("defaults").all("ConfigMap")[1:], "no policies ConfigMap by default"


@pytest.mark.parametrize(
    ("case", "url"),
    [
        ("defaults", f"redis://{RELEASE}-redis:6379/0"),
        ("redis-auth", f"redis://:$(REDIS_PASSWORD)@{RELEASE}-redis:6379/0"),
        ("redis-external", "rediss://redis.cache.svc.example:6380/0"),
        ("redis-external-secret", None),
    ],
)
def test_redis_url_follows_the_redis_choice(case: str, url: str | None) -> None:
    env = _container_env(rendered(case))
    assert env["SIGVERIFY_REDIS_URL"] == url
    assert "SIGVERIFY_REDIS_URL" not in _container_env(rendered("redis-off"))
    assert rendered(case).has("Deployment") and len(rendered(case).all("Deployment")) == (
        2 if case.startswith(("defaults", "redis-auth")) else 1
    )


def test_in_chart_redis_is_a_cache_without_persistence() -> None:
    redis = rendered("defaults").get("Deployment", f"{RELEASE}-redis")
    assert redis["spec"]["replicas"] == 1
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    authed = rendered("redis-auth").get("Deployment", f"{RELEASE}-redis")
    authed_args = authed["spec"]["template"]["spec"]["containers"][0]["args"]
    assert authed_args[authed_args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"


# ---- NetworkPolicy ----------------------------------------------------------------------------


@pytest.mark.parametrize("case", [c for c in CASES if c != "networkpolicy-off"])
def test_network_policy_denies_egress_but_what_is_needed(case: str) -> None:
    r = rendered(case)
    policy = r.get("NetworkPolicy", RELEASE)["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert [p["port"] for p in policy["ingress"][0]["ports"]] == ["http"]
    for rule in policy["egress"]:
        assert rule.get("ports"), f"an egress rule open on every port: {rule}"
        for peer in rule.get("to", []):
            block = peer.get("ipBlock")
            if block is None:
                continue
            cidr = ipaddress.ip_network(block["cidr"])
            for excluded in block.get("except", []):
                network = ipaddress.ip_network(excluded)
                # The API server refuses an `except` that is not strictly inside its cidr.
                assert network.version == cidr.version, (cidr, network)
                assert network.subnet_of(cidr) and network != cidr, (cidr, network)  # type: ignore[arg-type]
    dns = policy["egress"][0]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}


def _allowed(policy: dict[str, Any], address: str, port: int) -> bool:
    ip = ipaddress.ip_address(address)
    for rule in policy["egress"]:
        if port not in [p["port"] for p in rule["ports"]]:
            continue
        for peer in rule.get("to", [{"ipBlock": {"cidr": "0.0.0.0/0"}}]):
            block = peer.get("ipBlock")
            if block is None:
                continue
            inside = ip in ipaddress.ip_network(block["cidr"])
            if inside and not any(ip in ipaddress.ip_network(e) for e in block.get("except", [])):
                return True
    return False


def test_default_egress_reaches_public_443_only() -> None:
    policy = rendered("defaults").get("NetworkPolicy", RELEASE)["spec"]
    assert _allowed(policy, "140.82.121.34", 443)  # a public registry
    assert _allowed(policy, "2606:50c0:8000::154", 443)
    assert not _allowed(policy, "140.82.121.34", 80)
    assert not _allowed(policy, "169.254.169.254", 443)  # cloud metadata
    assert not _allowed(policy, "10.0.0.7", 443)
    assert not _allowed(policy, "fd00::1", 443)
    redis_rule = policy["egress"][-1]
    assert redis_rule["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "redis"
    )
    redis_policy = rendered("defaults").get("NetworkPolicy", f"{RELEASE}-redis")["spec"]
    assert redis_policy["egress"] == []
    (ingress,) = redis_policy["ingress"]
    assert ingress["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "server"
    )


def test_restricted_network_policy_keeps_the_test_pod_and_adds_otlp() -> None:
    r = rendered("networkpolicy-restricted")
    policy = r.get("NetworkPolicy", RELEASE)["spec"]
    peers = policy["ingress"][0]["from"]
    test_labels = r.get("Pod")["metadata"]["labels"]
    selectors = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert any(all(test_labels.get(k) == v for k, v in s.items()) for s in selectors)
    assert _allowed(policy, "10.40.0.10", 4318)
    assert _allowed(policy, "10.30.0.5", 5000) and not _allowed(policy, "10.30.1.5", 5000)
    assert _allowed(policy, "203.0.113.9", 443) and not _allowed(policy, "140.82.121.34", 443)
    assert not rendered("networkpolicy-off").has("NetworkPolicy")


# ---- optional objects -------------------------------------------------------------------------


def test_servicemonitor() -> None:
    r = rendered("servicemonitor")
    monitor = r.get("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    service = r.get("Service", RELEASE)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s",
                        "scrapeTimeout": "5s"}  # fmt: skip


def test_admission_webhook() -> None:
    r = rendered("webhook")
    config = r.get("ValidatingWebhookConfiguration")
    (webhook,) = config["webhooks"]
    service = webhook["clientConfig"]["service"]
    assert service == {"name": RELEASE, "namespace": NAMESPACE, "path": "/v1/admission",
                       "port": r.get("Service", RELEASE)["spec"]["ports"][0]["port"]}  # fmt: skip
    values = yaml.safe_load((CHART / "ci" / "webhook-values.yaml").read_text())["admissionWebhook"]
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["clientConfig"]["caBundle"] == values["caBundle"]
    selector = {k: v for k, v in values["namespaceSelector"].items() if v is not None}
    assert webhook["namespaceSelector"] == selector
    assert webhook["sideEffects"] == "None" and webhook["admissionReviewVersions"] == ["v1"]
    injected = rendered("webhook-certmanager").get("ValidatingWebhookConfiguration")
    assert "caBundle" not in injected["webhooks"][0]["clientConfig"]
    assert injected["webhooks"][0]["failurePolicy"] == "Fail"


def test_helm_test_pod_calls_readyz_through_the_service() -> None:
    r = rendered("defaults")
    pod = r.get("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    port = r.get("Service", RELEASE)["spec"]["ports"][0]["port"]
    assert pod["spec"]["containers"][0]["command"][-1] == f"http://{RELEASE}:{port}/readyz"


def _notes(case: str) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster is contacted)."""
    args = ["install", RELEASE, str(CHART), "--dry-run=client", "--namespace", NAMESPACE]
    for path in _values(case):
        args += ["--values", str(path)]
    result = helm.run(*args)
    assert result.returncode == 0, result.stderr
    return result.stdout.split("NOTES:", 1)[1]


def test_notes_warn_about_what_production_needs() -> None:
    notes = _notes("defaults")
    assert f"kubectl -n {NAMESPACE} port-forward svc/{RELEASE} 8080:8080" in notes
    # One key for the release by default: no development keys, and where the key is kept.
    assert "DEVELOPMENT" not in notes
    assert f"Secret {RELEASE}-signing-key" in notes and "reinstall" in notes
    assert f"{RELEASE}-signing-key" not in _notes("secrets")
    assert "no Redis" in _notes("redis-off") and "no Redis" not in notes
    assert "HTTPS only" in _notes("webhook")


def test_extra_trust_roots_are_mounted_and_named() -> None:
    r = rendered("trust-roots")
    env = _container_env(r)
    assert (
        env["SIGVERIFY_TRUST_ROOTS"] == "github=/etc/sigverify/trust-roots/github/trusted_root.json"
    )
    volumes = {v["name"]: v for v in r.server["spec"]["template"]["spec"]["volumes"]}
    assert volumes["trust-root-github"]["configMap"]["name"] == "github-trusted-root"
    assert "SIGVERIFY_TRUST_ROOTS" not in _container_env(rendered("defaults"))


def test_the_tuf_egress_rule_follows_the_refresh() -> None:
    """A rule for the TUF repository when enabled, while the trust root is refreshed only."""
    mirror = rendered("tuf-mirror")
    policy = mirror.get("NetworkPolicy", RELEASE)["spec"]
    assert _allowed(policy, "10.50.0.9", 443)  # the mirror, by a rule of its own
    mirror_rule = {"ports": [{"port": 443, "protocol": "TCP"}],
                   "to": [{"ipBlock": {"cidr": "10.50.0.0/24"}}]}  # fmt: skip
    assert mirror_rule in policy["egress"]
    assert _container_env(mirror)["SIGVERIFY_TUF_URL"] == "https://tuf-mirror.internal.example"
    rule = [
        "networkPolicy.egress.tuf.enabled=true",
        "networkPolicy.egress.tuf.ipBlocks[0].cidr=10.50.0.0/24",
    ]
    assert mirror_rule in helm.template(sets=rule).get("NetworkPolicy", RELEASE)["spec"]["egress"]
    for sets in (
        [*rule, "config.tuf_refresh=false"],
        [*rule, "trustRoot.existingConfigMap=root"],
        ["networkPolicy.egress.tuf.ipBlocks[0].cidr=10.50.0.0/24"],
    ):
        spec = helm.template(sets=sets).get("NetworkPolicy", RELEASE)["spec"]
        assert mirror_rule not in spec["egress"], sets
        assert not _allowed(spec, "10.50.0.9", 443), sets
    # By default no rule of its own: the public-good CDN is a public address on 443, which the
    # sigstore rule reaches (test_default_egress_reaches_public_443_only). Enabled, one more.
    default = rendered("defaults").get("NetworkPolicy", RELEASE)["spec"]["egress"]
    enabled = helm.template(sets=["networkPolicy.egress.tuf.enabled=true"])
    # The same public 443 as the sigstore rule (third), as a rule of its own after it.
    expected = [*default[:3], default[2], *default[3:]]
    assert enabled.get("NetworkPolicy", RELEASE)["spec"]["egress"] == expected


def test_the_airgapped_setup_has_no_tuf_and_its_own_root() -> None:
    r = rendered("airgapped")
    env = _container_env(r)
    assert env["SIGVERIFY_TUF_REFRESH"] == "false"
    assert env["SIGVERIFY_TRUST_ROOT_FILE"] == "/etc/sigverify/trust-root/trusted_root.json"
    enabled = helm.template(
        [CHART / "ci" / "airgapped-values.yaml"], sets=["networkPolicy.egress.tuf.enabled=true"]
    )
    assert enabled.get("NetworkPolicy", RELEASE) == r.get("NetworkPolicy", RELEASE)
    assert "refreshed through TUF" not in _notes("airgapped")
    assert "refreshed through TUF" in _notes("defaults")
