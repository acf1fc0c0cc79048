"""A Kubernetes API server double on 127.0.0.1, for `helm template --dry-run=server`.

No API server runs here, and `helm template` alone has no cluster, so the chart's `lookup` of
its signing-key Secret returns nothing there. This double speaks the part of the Kubernetes REST
protocol helm uses when it renders against a cluster: `/version`, API discovery (`/api`,
`/apis`, each group version's resource list) and `GET` of one Secret by namespace and name, with
the API server's JSON shapes (`APIVersions`, `APIGroupList`, `APIResourceList`, `Secret`, and a
`Status` for a 404). It holds the Secrets a test gives it and records every path asked for.
Nothing else is served: helm's OpenAPI validation is switched off by the caller
(`--disable-openapi-validation`; kubernetes-validate checks the manifests elsewhere).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# group/version -> [(resource, kind, namespaced)]: what the chart renders.
RESOURCES: dict[str, list[tuple[str, str, bool]]] = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
        ("secrets", "Secret", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("services", "Service", True),
    ],
    "apps/v1": [("deployments", "Deployment", True)],
    "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler", True)],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    "admissionregistration.k8s.io/v1": [
        ("validatingwebhookconfigurations", "ValidatingWebhookConfiguration", False)
    ],
}
_SECRET = re.compile(r"^/api/v1/namespaces/([a-z0-9.-]+)/secrets/([a-z0-9.-]+)$")


def _resource_list(group_version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {
                "name": name,
                "singularName": kind.lower(),
                "namespaced": namespaced,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            }
            for name, kind, namespaced in RESOURCES[group_version]
        ],
    }


def _groups() -> dict[str, Any]:
    groups = []
    for group_version in RESOURCES:
        if "/" not in group_version:
            continue
        group, version = group_version.split("/")
        entry = {"groupVersion": group_version, "version": version}
        groups.append({"name": group, "versions": [entry], "preferredVersion": entry})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _not_found(what: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f"{what} not found",
        "reason": "NotFound",
        "code": 404,
    }


class KubeApi:
    """The double's state: Secrets by (namespace, name), and the paths requested."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        self._lock = threading.Lock()

    def add_secret(
        self, secret: dict[str, Any], namespace: str, release: str | None = None
    ) -> None:
        """Store `secret` (a manifest) as the API server would return it; with `release`, as
        `helm install` of that release leaves it (helm's ownership annotations)."""
        stored = json.loads(json.dumps(secret))
        stored["metadata"]["namespace"] = namespace
        if release is not None:
            stored["metadata"].setdefault("annotations", {}).update(
                {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace}
            )
        stored["metadata"].setdefault("uid", "0b5c7a1e-4f0c-4b8e-9d61-2f8a3c9e0d11")
        stored["metadata"].setdefault("resourceVersion", "1")
        self.secrets[(namespace, stored["metadata"]["name"])] = stored

    def answer(self, path: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests.append(path)
        if path == "/version":
            return 200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0",
                         "platform": "linux/amd64"}  # fmt: skip
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"],
                         "serverAddressByClientCIDRs": []}  # fmt: skip
        if path == "/apis":
            return 200, _groups()
        if path == "/api/v1":
            return 200, _resource_list("v1")
        if path.startswith("/apis/") and path.removeprefix("/apis/") in RESOURCES:
            return 200, _resource_list(path.removeprefix("/apis/"))
        secret = _SECRET.match(path)
        if secret:
            found = self.secrets.get((secret.group(1), secret.group(2)))
            if found is not None:
                return 200, found
            return 404, _not_found(f'secrets "{secret.group(2)}"')
        return 404, _not_found(path)


@contextmanager
def kube_api(workdir: Path) -> Iterator[tuple[KubeApi, Path]]:
    """The double, serving on a free loopback port, and a kubeconfig file naming it."""
    api = KubeApi()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = api.answer(self.path.split("?", 1)[0])
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}"
    kubeconfig = workdir / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "double", "cluster": {"server": url}}],
                "users": [{"name": "tester", "user": {"token": "kube-api-double-token"}}],
                "contexts": [
                    {"name": "double", "context": {"cluster": "double", "user": "tester"}}
                ],
                "current-context": "double",
            }
        )
    )
    kubeconfig.chmod(0o600)
    try:
        yield api, kubeconfig
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
