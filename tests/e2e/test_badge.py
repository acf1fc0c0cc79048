"""`GET /v1/badge` under gunicorn: verified, failed, unsigned and error, SVG and shields JSON."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from service.api.badge import short_signer
from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

RIGHT = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
TOKEN = "badge-tests-token-0123456789"


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CheckedClient]:
    policy_file = tmp_path_factory.mktemp("badge") / "policies.yaml"
    policy = {"name": "release", "tenant": "platform", "policy": RIGHT}
    policy_file.write_text(yaml.safe_dump({"policies": [policy]}))
    with start_service(
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        policy_file=str(policy_file),
        api_tokens=f"platform={TOKEN}",  # badges stay public all the same
        verdict_ttl="120",
    ) as (_, client):
        yield client


def svg_text(client: CheckedClient, image: str) -> tuple[str, str]:
    response = client.get("/v1/badge", params={"image": image, "policy": "release"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.content)  # noqa: S314 - our own service's output
    title = root.find("{http://www.w3.org/2000/svg}title")
    assert title is not None and title.text is not None
    return title.text, response.headers["cache-control"]


def test_badge_states(
    service: CheckedClient, registry_signer: RegistrySigner, registry: RegistryServer
) -> None:
    signed = registry_signer.image("badge/signed")
    registry_signer.sign(signed)
    assert svg_text(service, signed.reference) == (
        "sigstore: acme/app release.yml@main",
        "public, max-age=120",
    )
    other = registry_signer.image("badge/other")
    stranger = artifacts.DEFAULT_IDENTITY.replace("acme/app", "evil/app")
    registry_signer.sign(other, identity=registry_signer.signer.identity(stranger))
    assert svg_text(service, other.reference)[0] == "sigstore: failed"
    unsigned = registry_signer.image("badge/unsigned")
    assert svg_text(service, unsigned.reference)[0] == "sigstore: unsigned"
    missing = f"{registry.host}/badge/missing:v0"
    assert svg_text(service, missing)[0] == "sigstore: not found"

    shields = service.get(
        "/v1/badge", params={"image": signed.reference, "policy": "release", "format": "json"}
    ).json()
    assert shields["schemaVersion"] == 1
    assert shields["message"] == "acme/app release.yml@main"
    assert shields["isError"] is False


def test_a_registry_outage_is_an_error_badge_cached_briefly(
    service: CheckedClient,
) -> None:
    # Nothing listens on port 1: the registry is "down".
    title, cache = svg_text(service, "127.0.0.1:1/badge/app:v1")
    assert title == "sigstore: error"
    assert cache == "public, max-age=30"


@pytest.mark.parametrize(
    ("params", "field", "status"),
    [
        ({"policy": "release"}, "image", 400),
        ({"image": "ghcr.io/a/b:v1"}, "policy", 400),
        ({"image": "ghcr.io/a/b:v1", "policy": "release", "format": "png"}, "format", 400),
        ({"image": "ghcr.io/a/b:v1", "policy": "nope"}, "", 404),
    ],
)
def test_bad_badge_requests(
    service: CheckedClient, params: dict[str, str], field: str, status: int
) -> None:
    response = service.get("/v1/badge", params=params)
    assert response.status_code == status
    if field:
        assert field in response.json()["errors"]


def test_badges_can_be_switched_off(
    start_service: ServiceFactory, sigstore_local: LocalSigstore, tmp_path: Path
) -> None:
    with start_service(rekor_url=sigstore_local.url, badges="false") as (_, client):
        response = client.get("/v1/badge", params={"image": "ghcr.io/a/b:v1", "policy": "x"})
        assert response.status_code == 404


@pytest.mark.parametrize(
    ("signer", "short"),
    [
        (
            "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.2.3 (https://x)",
            "acme/app release.yml@v1.2.3",
        ),
        ("dev@example.com (https://accounts.google.com)", "dev@example.com"),
        ("x" * 80, "x" * 47 + "…"),
    ],
)
def test_short_signers(signer: str, short: str) -> None:
    assert short_signer(signer) == short
