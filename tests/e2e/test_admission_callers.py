"""Who may call `POST /v1/admission`: the API server's client certificate and webhook token,
end to end under gunicorn serving TLS on loopback.

The Kubernetes API server presents to a webhook what its AdmissionConfiguration's
kubeConfigFile gives it for that service: a client certificate, a bearer token, or both. Here
a private CA issues the client certificates (as a cluster's front-proxy or webhook-client CA
would); the calls are real HTTPS with and without them. A caller without what is required gets
a 401 or 403 problem, which the API server counts as a failed call (its failurePolicy then
decides), and never an AdmissionReview about any image.
"""

from __future__ import annotations

import datetime
import json
import ssl
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.contract import CheckedClient
from tests.e2e.conftest import service_env
from tests.e2e.test_admission import HttpsServiceServer, pod, review, self_signed
from tests.servers import RegistryServer, running

CLIENT_NAME = "kube-apiserver-webhook-client"
TOKENS = ("webhook-token-current-0123456789", "webhook-token-next-9876543210ab")
API_TOKEN = "platform-api-token-0123456789ab"
POLICIES = """\
policies:
  - name: gate
    tenant: platform
    policy: {certificateIdentity: a@b.c, certificateOidcIssuer: https://accounts.google.com}
"""


@dataclass(frozen=True)
class Pki:
    """A CA and client certificates (PEM files): from the CA, and one from a stranger's CA."""

    ca: Path
    good: tuple[Path, Path]  # CN=CLIENT_NAME
    by_san: tuple[Path, Path]  # CN=other, DNS SAN=CLIENT_NAME
    wrong_name: tuple[Path, Path]  # CN=someone-else
    stranger: tuple[Path, Path]  # CN=CLIENT_NAME, from another CA


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _client(
    directory: Path,
    stem: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    common_name: str,
    dns: str | None = None,
) -> tuple[Path, Path]:
    ca_cert, ca_key = issuer
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    if dns is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False
        )
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca = _ca("webhook client CA")
    stranger = _ca("someone else's CA")
    ca_path = directory / "client-ca.crt"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    return Pki(
        ca=ca_path,
        good=_client(directory, "good", ca, CLIENT_NAME),
        by_san=_client(directory, "by-san", ca, "apiserver-42", dns=CLIENT_NAME),
        wrong_name=_client(directory, "wrong-name", ca, "someone-else"),
        stranger=_client(directory, "stranger", stranger, CLIENT_NAME),
    )


@dataclass(frozen=True)
class Webhook:
    """A running HTTPS service and how to reach it."""

    url: str
    server_ca: Path
    log: Path

    def client(self, cert: tuple[Path, Path] | None = None) -> CheckedClient:
        context = ssl.create_default_context(cafile=str(self.server_ca))
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return CheckedClient(base_url=self.url, verify=context, timeout=30)


WebhookFactory = Callable[..., AbstractContextManager[Webhook]]


@pytest.fixture(scope="module")
def start_webhook(
    tmp_path_factory: pytest.TempPathFactory, registry: RegistryServer
) -> WebhookFactory:
    """Starts the service over HTTPS with admission configured and `settings` on top."""

    @contextmanager
    def start(**settings: str) -> Iterator[Webhook]:
        workdir = tmp_path_factory.mktemp("webhook")
        cert, key = self_signed(workdir)
        policy_file = workdir / "policies.yaml"
        policy_file.write_text(POLICIES)
        env = service_env(
            registry,
            policy_file=str(policy_file),
            admission_policy="gate",
            api_tokens=f"platform={API_TOKEN}",
            tls_cert_file=str(cert),
            tls_key_file=str(key),
            **settings,
        )
        server = HttpsServiceServer(workdir / "service", env=env, ca=cert)
        with running(server):
            yield Webhook(server.url, cert, server.log_path)

    return start


def _review() -> dict[str, Any]:
    # An image on the port-1 "registry": never verified; the answer is still an AdmissionReview.
    return review(pod(["127.0.0.1:1/shop/app:v1"]))


def _post(client: httpx.Client, headers: dict[str, str] | None = None) -> httpx.Response:
    body = _review()
    response = client.post("/v1/admission", json=body, headers=headers)
    if response.status_code == 200:
        assert response.json()["response"]["uid"] == body["request"]["uid"]
    return response


def _refused(response: httpx.Response, status: int) -> None:
    """A problem, not an AdmissionReview: the API server applies its failurePolicy."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "response" not in response.json() and "127.0.0.1:1" not in response.text


@pytest.fixture(scope="module")
def by_certificate(start_webhook: WebhookFactory, pki: Pki) -> Iterator[Webhook]:
    with start_webhook(
        admission_client_ca_file=str(pki.ca), admission_client_names=CLIENT_NAME
    ) as webhook:
        yield webhook


def test_a_client_certificate_from_the_ca_with_the_name_is_required(
    by_certificate: Webhook, pki: Pki
) -> None:
    with by_certificate.client() as anonymous:
        _refused(_post(anonymous), 403)
        # Everything else needs no certificate: the TLS layer asks for one, requires none.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/v1/keys").status_code == 200
        verify = anonymous.post(
            "/v1/verify",
            json={"image": "127.0.0.1:1/a/b:v1", "policyName": "gate"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
        )
        # Through authentication to the registry (nothing listens on port 1): a 502.
        assert verify.status_code == 502
        assert verify.json()["type"].endswith("/registry-unavailable")
    with by_certificate.client(pki.wrong_name) as someone:
        _refused(_post(someone), 403)
    for cert in (pki.good, pki.by_san):
        with by_certificate.client(cert) as apiserver:
            answer = _post(apiserver)
            assert answer.status_code == 200, answer.text
            assert answer.json()["response"]["allowed"] is False  # not verifiable: fail closed


def test_a_certificate_from_another_ca_fails_the_handshake(
    by_certificate: Webhook, pki: Pki
) -> None:
    """An offered certificate is checked at the TLS layer: one the CA did not sign ends the
    connection (the API server sees a failed call, as with a wrong caBundle)."""
    with by_certificate.client(pki.stranger) as stranger, pytest.raises(httpx.HTTPError):
        stranger.post("/v1/admission", json=_review())


def test_refusals_are_logged_without_a_certificate_or_a_token(
    by_certificate: Webhook, pki: Pki
) -> None:
    with by_certificate.client(pki.wrong_name) as someone:
        _refused(_post(someone), 403)
    logged = by_certificate.log.read_text()
    assert "admission call from 127.0.0.1 refused: client certificate names" in logged
    assert "someone-else" in logged


def test_an_api_servers_token_is_required(start_webhook: WebhookFactory, tmp_path: Path) -> None:
    token_file = tmp_path / "webhook-tokens"
    token_file.write_text(f"# the API server's kubeConfigFile token\n{TOKENS[0]}\n\n{TOKENS[1]}\n")
    with start_webhook(admission_token_file=str(token_file)) as webhook, webhook.client() as c:
        missing = _post(c)
        _refused(missing, 401)
        assert missing.headers["www-authenticate"] == 'Bearer realm="sigverify-admission"'
        for wrong in ("not-the-token-0123456789", API_TOKEN, TOKENS[0][:-1]):
            _refused(_post(c, {"Authorization": f"Bearer {wrong}"}), 401)
        _refused(_post(c, {"Authorization": f"Basic {TOKENS[0]}"}), 401)
        # Either token of the file: the current one, and the next one during a rotation.
        for token in TOKENS:
            answer = _post(c, {"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
        logged = webhook.log.read_text()
        assert "admission call from 127.0.0.1 refused: no valid token" in logged
        assert not [t for t in (*TOKENS, "not-the-token") if t in logged]


def test_with_both_set_both_are_required(
    start_webhook: WebhookFactory, pki: Pki, tmp_path: Path
) -> None:
    token_file = tmp_path / "webhook-tokens"
    token_file.write_text(TOKENS[0] + "\n")
    bearer = {"Authorization": f"Bearer {TOKENS[0]}"}
    with start_webhook(
        admission_client_ca_file=str(pki.ca), admission_token_file=str(token_file)
    ) as webhook:
        with webhook.client() as anonymous:
            _refused(_post(anonymous, bearer), 403)
        # No names configured: any certificate the CA signed.
        with webhook.client(pki.wrong_name) as apiserver:
            _refused(_post(apiserver), 401)
            answer = _post(apiserver, bearer)
            assert answer.status_code == 200
            assert json.loads(answer.text)["response"]["allowed"] is False
