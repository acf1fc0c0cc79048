"""`POST /v1/admission` end to end: gunicorn, the real registry, the local Sigstore instance, and
gunicorn serving the webhook over HTTPS as the Kubernetes API server requires."""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory, service_env
from tests.servers import RegistryServer, ServiceServer, free_port, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
TOKEN = "platform-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dead_registry() -> str:
    """A registry host on loopback where nothing listens: the registry is down."""
    return f"127.0.0.1:{free_port()}"


class TalkativeRegistry:
    """A "registry" on loopback that fails the way real ones do, saying too much: 503 with an
    error message naming its internals, and a token service that refuses with its own."""

    SECRETS = ("db-7.corp.internal", "tenant-acme-payments", "internal-token-service")

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/internal-token-service/"):
                    said = "token db-7.corp.internal refused tenant-acme-payments"
                    owner._send(self, 500, {"errors": [{"code": "UNKNOWN", "message": said}]})
                elif self.path.startswith("/v2/talk/auth/"):
                    realm = f"http://{owner.host}/internal-token-service/issue"
                    challenge = {"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'}
                    owner._send(self, 401, {"errors": [{"code": "UNAUTHORIZED"}]}, challenge)
                elif self.path.startswith("/v2/"):
                    said = "backend db-7.corp.internal:5432 down for tenant-acme-payments"
                    owner._send(self, 503, {"errors": [{"code": "UNAVAILABLE", "message": said}]})
                else:
                    owner._send(self, 404, {})

            def do_HEAD(self) -> None:
                self.do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @staticmethod
    def _send(
        handler: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@pytest.fixture(scope="module")
def talkative() -> Iterator[TalkativeRegistry]:
    registry = TalkativeRegistry()
    yield registry
    registry.close()


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    dead_registry: str,
    talkative: TalkativeRegistry,
) -> dict[str, str]:
    """The same policy twice, enforcing (`gate`) and auditing (`watch`); API tokens on."""
    policy_file = tmp_path_factory.mktemp("admission") / "policies.yaml"
    policies = [
        {"name": "gate", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "watch", "tenant": "platform", "mode": "audit", "policy": POLICY},
    ]
    policy_file.write_text(yaml.safe_dump({"policies": policies}))
    return {
        "rekor_url": sigstore_local.url,
        "trust_root_file": str(sigstore_local.trusted_root_path),
        "policy_file": str(policy_file),
        "api_tokens": f"platform={TOKEN}",
        "insecure_registries": f"{registry.host},{dead_registry},{talkative.host}",
        "registry_timeout": "2",
    }


@dataclass(frozen=True)
class Running:
    """A started service: its client and where it logs."""

    client: CheckedClient
    log: Path


@pytest.fixture(scope="module")
def enforcing(start_service: ServiceFactory, settings: dict[str, str]) -> Iterator[Running]:
    with start_service(**settings, admission_policy="gate") as (server, client):
        yield Running(client, server.log_path)


@pytest.fixture(scope="module")
def enforce(enforcing: Running) -> CheckedClient:
    return enforcing.client


@pytest.fixture(scope="module")
def audit(start_service: ServiceFactory, settings: dict[str, str]) -> Iterator[CheckedClient]:
    with start_service(**settings, admission_policy="watch") as (_, client):
        yield client


@dataclass(frozen=True)
class Images:
    signed: str  # by tag: the webhook resolves it
    also_signed: str  # by digest
    unsigned: str


@pytest.fixture(scope="module")
def images(sigstore_local: LocalSigstore, registry: RegistryServer) -> Iterator[Images]:
    with sigstore_local.registry_signer(registry.url) as signer:
        signed, also, unsigned = (signer.image(f"admission/{n}") for n in ("a", "b", "c"))
        signer.sign(signed)
        signer.sign(also)
        yield Images(signed.tag_reference, also.reference, unsigned.reference)


def review(
    obj: dict[str, Any], kind: str = "Pod", group: str = "", namespace: str = "shop"
) -> dict[str, Any]:
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": f"uid-{time.monotonic_ns()}",
            "kind": {"group": group, "version": "v1", "kind": kind},
            "namespace": namespace,
            "name": "web",
            "operation": "CREATE",
            "object": {"kind": kind, **obj},
        },
    }


def pod(containers: Sequence[str], init: Sequence[str] = ()) -> dict[str, Any]:
    """An object's pod part: `{"spec": ...}` with a container per image."""
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": x} for i, x in enumerate(containers)]
    }
    if init:
        spec["initContainers"] = [{"name": f"i{i}", "image": x} for i, x in enumerate(init)]
    return {"spec": spec}


def admit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    """The AdmissionResponse; the API server sends no bearer token, and none is sent here."""
    response = client.post("/v1/admission", json=body)
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()["response"]
    assert answer["uid"] == body["request"]["uid"]
    return answer


# -- enforce and audit --------------------------------------------------------------------------


def test_enforce_denies_naming_the_unsigned_image(enforce: CheckedClient, images: Images) -> None:
    answer = admit(enforce, review(pod([images.signed], init=[images.unsigned])))
    assert answer["allowed"] is False
    assert answer["status"]["code"] == 403
    message = answer["status"]["message"]
    assert "denied 1 of 2 image(s)" in message
    assert images.unsigned in message and images.signed not in message
    # The reason is the verdict's first reason for that image.
    verdict = enforce.post(
        "/v1/verify", json={"image": images.unsigned, "policyName": "gate"}, headers=AUTH
    ).json()
    assert verdict["verified"] is False
    assert f"{images.unsigned}: {verdict['reasons'][0]}" in message


def test_audit_allows_with_a_warning(audit: CheckedClient, images: Images) -> None:
    answer = admit(audit, review(pod([images.signed], init=[images.unsigned])))
    assert answer["allowed"] is True
    assert "status" not in answer
    (warning,) = answer["warnings"]
    assert warning.startswith(f"sigverify (audit, policy watch): {images.unsigned}: ")


@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_all_signed_is_allowed(request: pytest.FixtureRequest, images: Images, mode: str) -> None:
    client: CheckedClient = request.getfixturevalue(mode)
    deployment = {"spec": {"template": pod([images.signed, images.also_signed])}}
    answer = admit(client, review(deployment, kind="Deployment", group="apps"))
    assert answer == {"uid": answer["uid"], "allowed": True}
    cronjob = {"spec": {"jobTemplate": {"spec": {"template": pod([images.also_signed])}}}}
    assert admit(client, review(cronjob, kind="CronJob", group="batch"))["allowed"] is True


def test_exempt_namespace_is_not_verified(enforce: CheckedClient, images: Images) -> None:
    body = review(pod([images.unsigned]), namespace="kube-system")
    assert admit(enforce, body)["allowed"] is True


# -- outages ------------------------------------------------------------------------------------


def test_registry_down_enforce_denies_audit_warns(
    enforce: CheckedClient, audit: CheckedClient, images: Images, dead_registry: str
) -> None:
    gone = f"{dead_registry}/admission/app:v1"
    denied = admit(enforce, review(pod([images.signed, gone])))
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert f"{gone}: cannot be verified now: its registry could not be reached" in message
    assert images.signed not in message
    allowed = admit(audit, review(pod([images.signed, gone])))
    assert allowed["allowed"] is True
    (warning,) = allowed["warnings"]
    assert f"{gone}: cannot be verified now: its registry could not be reached" in warning


def test_what_a_registry_said_stays_in_the_log(
    enforcing: Running, audit: CheckedClient, talkative: TalkativeRegistry
) -> None:
    """An image that cannot be verified now is named with fixed words for its trouble: neither
    the registry's error text nor its token service's address reaches the answer, which
    whoever may create a Pod reads. The service's log keeps them, under the review's uid."""
    down = f"{talkative.host}/talk/app:v1"
    token = f"{talkative.host}/talk/auth:v1"
    body = review(pod([down], init=[token]))
    denied = admit(enforcing.client, body)
    assert denied["allowed"] is False
    message = denied["status"]["message"]
    assert f"{down}: cannot be verified now: its registry could not be reached" in message
    assert f"{token}: cannot be verified now: " in message
    audited = admit(audit, review(pod([down], init=[token])))
    said = json.dumps([denied, audited])
    for secret in TalkativeRegistry.SECRETS:
        assert secret not in said, secret
    assert len(audited["warnings"]) == 2
    logged = enforcing.log.read_text()
    uid_lines = [line for line in logged.splitlines() if body["request"]["uid"] in line]
    assert uid_lines and "db-7.corp.internal" in "".join(uid_lines)


# -- HTTPS --------------------------------------------------------------------------------------


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for IP 127.0.0.1, signed by its own key; (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class HttpsServiceServer(ServiceServer):
    """The service serving HTTPS; ready once /healthz answers over TLS checked against `ca`."""

    ca: Path = Path()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.url}/healthz", verify=context, timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False


def test_gunicorn_serves_the_webhook_over_https(
    tmp_path: Path, registry: RegistryServer, settings: dict[str, str], images: Images
) -> None:
    cert, key = self_signed(tmp_path)
    env = service_env(
        registry,
        **settings,
        admission_policy="gate",
        tls_cert_file=str(cert),
        tls_key_file=str(key),
    )
    server = HttpsServiceServer(tmp_path / "service", env=env, ca=cert)
    with running(server):
        trusting = ssl.create_default_context(cafile=str(cert))
        with CheckedClient(base_url=server.url, verify=trusting, timeout=30) as client:
            answer = admit(client, review(pod([images.signed])))
            assert answer["allowed"] is True
            assert admit(client, review(pod([images.unsigned])))["allowed"] is False
        # A client that does not trust the certificate refuses the connection ...
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/healthz", timeout=5)
        # ... and plain HTTP gets no answer: the port speaks TLS only.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
