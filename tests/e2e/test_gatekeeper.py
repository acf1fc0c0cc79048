"""`POST /v1/gatekeeper/{policy}` end to end, as OPA Gatekeeper calls it: ProviderRequests shaped
like Gatekeeper's documentation, over HTTPS (TLS 1.3, the server checked against a caBundle,
Gatekeeper's client certificate) to gunicorn, against the real registry and the local Sigstore
instance, within Gatekeeper's 3 s budget; and the README's ConstraintTemplate Rego run on what
comes back, turned into what Gatekeeper's `external_data` builtin hands to Rego.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from tests.contract import CheckedClient
from tests.e2e.conftest import service_env
from tests.e2e.test_admission import HttpsServiceServer, self_signed
from tests.e2e.test_admission_callers import _ca, _client
from tests.e2e.test_admission_reviews import Tarpit
from tests.gatekeeper_rego import pod, rego_answer, violations
from tests.prometheus import prometheus_value
from tests.servers import RegistryServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore

API_VERSION = "externaldata.gatekeeper.sh/v1beta1"
POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
POLICIES = {
    "policies": [
        {"name": "release", "tenant": "platform", "mode": "enforce", "policy": POLICY},
        {"name": "watch", "tenant": "platform", "mode": "audit", "policy": POLICY},
        {"name": "theirs", "tenant": "payments", "policy": POLICY},
    ]
}
# Gatekeeper's webhook certificate (its gatekeeper-webhook-server-cert Secret) is for the
# webhook Service's name; that is what it presents to providers.
GATEKEEPER = "gatekeeper-webhook-service.gatekeeper-system.svc"
PROVIDER_TIMEOUT = 3.0  # the Provider's `timeout`: Gatekeeper drops a later answer
BUDGET = "2"  # SIGVERIFY_GATEKEEPER_TIMEOUT, its default
TOKEN = "platform-token-0123456789abcdef"


@dataclass(frozen=True)
class Certs:
    """Gatekeeper's CA and certificates: its own, one of the CA with another name, a stranger's."""

    ca: Path
    gatekeeper: tuple[Path, Path]
    other_name: tuple[Path, Path]
    stranger: tuple[Path, Path]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    directory = tmp_path_factory.mktemp("gatekeeper-pki")
    ca = _ca("gatekeeper-ca")
    stranger = _ca("someone else's CA")
    ca_path = directory / "ca.crt"
    ca_path.write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    return Certs(
        ca=ca_path,
        gatekeeper=_client(directory, "gatekeeper", ca, GATEKEEPER, dns=GATEKEEPER),
        other_name=_client(directory, "other", ca, "someone-else"),
        stranger=_client(directory, "stranger", stranger, GATEKEEPER, dns=GATEKEEPER),
    )


@pytest.fixture(scope="module")
def tarpit() -> Iterator[Tarpit]:
    pit = Tarpit()
    yield pit
    pit.close()


@dataclass(frozen=True)
class Provider:
    """sigverify serving HTTPS as Gatekeeper's external data provider."""

    url: str
    server_ca: Path
    log: Path

    def client(self, cert: tuple[Path, Path] | None) -> CheckedClient:
        """A client as Gatekeeper's: TLS 1.3 at least, the server checked against the
        Provider's caBundle, its own certificate presented."""
        context = ssl.create_default_context(cafile=str(self.server_ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        if cert is not None:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
        return CheckedClient(base_url=self.url, verify=context, timeout=30)


@pytest.fixture(scope="module")
def provider(
    tmp_path_factory: pytest.TempPathFactory,
    registry: RegistryServer,
    sigstore_local: LocalSigstore,
    certs: Certs,
    tarpit: Tarpit,
) -> Iterator[Provider]:
    workdir = tmp_path_factory.mktemp("gatekeeper")
    cert, key = self_signed(workdir)
    policy_file = workdir / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(POLICIES))
    env = service_env(
        registry,
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        policy_file=str(policy_file),
        api_tokens=f"platform={TOKEN}",
        insecure_registries=f"{registry.host},{tarpit.host}",
        tls_cert_file=str(cert),
        tls_key_file=str(key),
        gatekeeper_tenant="platform",
        gatekeeper_timeout=BUDGET,
        gatekeeper_client_ca_file=str(certs.ca),
        gatekeeper_client_names=GATEKEEPER,
    )
    server = HttpsServiceServer(workdir / "service", env=env, ca=cert)
    with running(server):
        yield Provider(server.url, cert, server.log_path)


@dataclass(frozen=True)
class Images:
    by_tag: str
    by_tag_digest: str
    by_digest: str
    other_signer: str
    other_digest: str  # signed, but the signature names another image
    unsigned: str
    absent: str  # a tag the registry does not hold
    stuck: str  # on a registry that never answers


@pytest.fixture(scope="module")
def images(
    sigstore_local: LocalSigstore, registry: RegistryServer, tarpit: Tarpit
) -> Iterator[Images]:
    with sigstore_local.registry_signer(registry.url) as signer:
        made = {n: signer.image(f"gatekeeper/{n}", tag="v1") for n in
                ("tag", "digest", "other-signer", "other-digest", "unsigned")}  # fmt: skip
        signer.sign(made["tag"])
        signer.sign(made["digest"])
        evil = signer.signer.identity(
            "https://github.com/evil/app/.github/workflows/x.yml@refs/heads/main"
        )
        signer.sign(made["other-signer"], identity=evil)
        elsewhere = artifacts.simple_signing(made["unsigned"].digest, made["unsigned"].name)
        signer.sign(made["other-digest"], payload=elsewhere)
        yield Images(
            by_tag=made["tag"].tag_reference,
            by_tag_digest=made["tag"].digest,
            by_digest=made["digest"].reference,
            other_signer=made["other-signer"].tag_reference,
            other_digest=made["other-digest"].reference,
            unsigned=made["unsigned"].reference,
            absent=f"{registry.host}/gatekeeper/absent:v1",
            stuck=f"{tarpit.host}/gatekeeper/stuck:v1",
        )


def provider_request(keys: list[str]) -> bytes:
    """The body Gatekeeper's external_data builtin sends (Go's encoding/json, compact)."""
    body = {"apiVersion": API_VERSION, "kind": "ProviderRequest", "request": {"keys": keys}}
    return json.dumps(body, separators=(",", ":")).encode()


def call(client: httpx.Client, policy: str, keys: list[str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = client.post(
        f"/v1/gatekeeper/{policy}",
        content=provider_request(keys),
        headers={"Content-Type": "application/json"},
    )
    return response, time.monotonic() - started


def items_of(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["apiVersion"], body["kind"]) == (API_VERSION, "ProviderResponse")
    assert "systemError" not in body["response"]
    return {item["key"]: item for item in body["response"]["items"]}


# -- verification -------------------------------------------------------------------------------


def test_every_key_is_answered_within_gatekeepers_budget(
    provider: Provider, certs: Certs, images: Images
) -> None:
    """Good, bad, unsigned, unknown and stuck images in one request, on a fresh TLS connection:
    the answer arrives within the Provider's 3 s, the stuck image an error item, and every
    failed verification a value saying so."""
    keys = [images.by_tag, images.by_digest, images.other_signer, images.other_digest,
            images.unsigned, images.absent, images.stuck, images.by_tag]  # fmt: skip
    with provider.client(certs.gatekeeper) as gatekeeper:
        response, took = call(gatekeeper, "release", keys)
    assert took < PROVIDER_TIMEOUT, took
    assert took >= float(BUDGET) - 0.2, took  # the stuck image was waited for, to the budget
    items = items_of(response)
    assert list(items) == list(dict.fromkeys(keys))  # in order, each once

    tagged = items[images.by_tag]["value"]
    assert tagged["verified"] is True
    assert tagged["digest"] == images.by_tag_digest
    repository = images.by_tag.rsplit(":", 1)[0]
    assert tagged["image"] == f"{repository}@{images.by_tag_digest}"
    assert (tagged["resolvedFromTag"], tagged["policy"], tagged["mode"]) == (
        True,
        "release",
        "enforce",
    )
    assert tagged["signers"] == [f"{artifacts.DEFAULT_IDENTITY} ({ACTIONS})"]
    assert tagged["reasons"] == []
    by_digest = items[images.by_digest]["value"]
    assert by_digest["verified"] is True and by_digest["resolvedFromTag"] is False
    assert by_digest["image"] == images.by_digest

    for failed in (images.other_signer, images.other_digest, images.unsigned):
        value = items[failed]["value"]
        assert value["verified"] is False, failed
        assert value["reasons"] and value["signers"] == [], failed
    assert "evil/app" in " ".join(items[images.other_signer]["value"]["reasons"])
    assert "no signatures found" in items[images.unsigned]["value"]["reasons"][0]

    assert items[images.absent] == {
        "key": images.absent,
        "error": "cannot be verified now: not found in its registry",
    }
    assert items[images.stuck] == {
        "key": images.stuck,
        "error": f"cannot be verified now: not verified within the time budget of {BUDGET}s",
    }

    # What the README's ConstraintTemplate makes of it: only the two verified images pass.
    answer = rego_answer(response.status_code, response.json())
    denied = violations(answer, pod(keys[:4], init=keys[4:]))
    assert len(denied) == 5
    for key in (images.other_signer, images.other_digest, images.unsigned, images.absent,
                images.stuck):  # fmt: skip
        assert sum(m.startswith(key) for m in denied) == 1, (key, denied)
    # A Pod of verified images is admitted.
    with provider.client(certs.gatekeeper) as gatekeeper:
        good, took = call(gatekeeper, "release", [images.by_tag, images.by_digest])
    assert took < PROVIDER_TIMEOUT
    assert all(item["value"]["verified"] for item in items_of(good).values())
    assert violations(rego_answer(200, good.json()), pod([images.by_tag, images.by_digest])) == []


def test_the_log_keeps_what_the_items_do_not_say(provider: Provider, images: Images) -> None:
    logged = provider.log.read_text()
    lines = [line for line in logged.splitlines() if "gatekeeper (policy release)" in line]
    assert lines, logged[-2000:]
    assert any(images.absent in line and "image-not-found" in line for line in lines)


def test_an_audit_policy_answers_the_same_facts_with_its_mode(
    provider: Provider, certs: Certs, images: Images
) -> None:
    with provider.client(certs.gatekeeper) as gatekeeper:
        response, took = call(gatekeeper, "watch", [images.unsigned, images.by_digest])
    assert took < PROVIDER_TIMEOUT
    items = items_of(response)
    assert items[images.unsigned]["value"]["verified"] is False
    assert (
        items[images.unsigned]["value"]["mode"],
        items[images.unsigned]["value"]["enforced"],
    ) == (
        "audit",
        False,
    )
    assert items[images.by_digest]["value"]["verified"] is True


# -- refusals -----------------------------------------------------------------------------------


def system_error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["kind"] == "ProviderResponse" and "items" not in body["response"]
    error: str = body["response"]["systemError"]
    # The README's Rego turns it into one violation, whatever the Pod.
    denied = violations(rego_answer(status, body), pod(["ghcr.io/acme/app:v1"]))
    assert denied == [f"sigverify could not answer (HTTP {status}): {error}"]
    return error


@pytest.mark.parametrize("policy", ["theirs", "no-such-policy"])
def test_another_tenants_policy_or_none_is_not_found(
    provider: Provider, certs: Certs, images: Images, policy: str
) -> None:
    with provider.client(certs.gatekeeper) as gatekeeper:
        response, _ = call(gatekeeper, policy, [images.by_digest])
    assert "no policy named" in system_error(response, 404)


def test_a_malformed_request_is_a_system_error(provider: Provider, certs: Certs) -> None:
    with provider.client(certs.gatekeeper) as gatekeeper:
        response = gatekeeper.post(
            "/v1/gatekeeper/release",
            json={"apiVersion": API_VERSION, "kind": "ProviderRequest", "request": {"keys": [1]}},
        )
    assert "request.keys[0]" in system_error(response, 400)


def test_only_gatekeepers_certificate_is_answered(
    provider: Provider, certs: Certs, images: Images
) -> None:
    for cert in (None, certs.other_name):
        with provider.client(cert) as someone:
            response, _ = call(someone, "release", [images.by_digest])
        assert "its client certificate is required" in system_error(response, 403)
        # Nor does an API token open the path: Gatekeeper's certificate is what it takes.
        with provider.client(cert) as someone:
            bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            again = someone.post(
                "/v1/gatekeeper/release",
                content=provider_request([images.by_digest]),
                headers=bearer,
            )
        assert again.status_code == 403
    # A certificate another CA signed ends the handshake.
    with provider.client(certs.stranger) as stranger, pytest.raises(httpx.HTTPError):
        call(stranger, "release", [images.by_digest])
    assert "gatekeeper call from 127.0.0.1 refused" in provider.log.read_text()


# -- metrics ------------------------------------------------------------------------------------


def test_verifications_are_counted_by_policy_mode_and_outcome(
    provider: Provider, certs: Certs, images: Images
) -> None:
    with provider.client(certs.gatekeeper) as gatekeeper:
        call(gatekeeper, "watch", [images.unsigned])
        # A name that is not a policy never becomes a label.
        call(gatekeeper, "attacker-chosen-name", [images.unsigned])
        text = gatekeeper.get("/metrics").text
    series = "sigverify_verification_duration_seconds_count"

    def count(**labels: str) -> float:
        return prometheus_value(text, series, **labels)

    assert count(policy="release", mode="enforce", outcome="verified") >= 2
    assert count(policy="release", mode="enforce", outcome="failed") >= 3
    assert count(policy="release", mode="enforce", outcome="error") >= 1  # the absent tag
    assert count(policy="watch", mode="audit", outcome="failed") >= 2
    assert "attacker-chosen-name" not in text and 'policy="theirs"' not in text
