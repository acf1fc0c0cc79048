"""`POST /v1/verify/batch` under gunicorn: order kept, one bad image never fails the others."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.servers import RedisServer, RegistryServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, redis_server: RedisServer, sigstore_local: LocalSigstore
) -> Iterator[CheckedClient]:
    with start_service(
        redis_url=redis_server.url,
        rekor_url=sigstore_local.url,
        trust_root_file=str(sigstore_local.trusted_root_path),
        batch_max_images="5",
        batch_concurrency="3",
    ) as (_, client):
        yield client


def batch(client: CheckedClient, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response = client.post("/v1/verify/batch", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


def test_each_image_gets_its_own_answer_in_order(
    service: CheckedClient, registry_signer: RegistrySigner, registry: RegistryServer
) -> None:
    signed = registry_signer.image("batch/signed")
    registry_signer.sign(signed)
    unsigned = registry_signer.image("batch/unsigned")
    other_signer = registry_signer.image("batch/other")
    other = artifacts.DEFAULT_IDENTITY.replace("acme/app", "acme/other")
    registry_signer.sign(other_signer, identity=registry_signer.signer.identity(other))
    missing = f"{registry.host}/batch/missing:v0"
    body: dict[str, Any] = {
        "policy": POLICY,
        "images": [
            {"image": signed.reference},
            {"image": unsigned.reference},
            {"image": missing},
            {"image": other_signer.reference, "policy": {**POLICY, "certificateIdentity": other}},
        ],
    }
    result = batch(service, body)
    assert result["verified"] is False
    assert [r["image"] for r in result["results"]] == [i["image"] for i in body["images"]]
    assert [r["status"] for r in result["results"]] == [200, 200, 404, 200]
    first, second, third, fourth = result["results"]
    assert first["verdict"]["verified"] is True
    assert second["verdict"]["verified"] is False
    assert third["problem"]["type"].endswith("/image-not-found")
    assert "verdict" not in third
    assert fourth["verdict"]["verified"] is True  # its own policy, not the batch's
    everything_good = {"policy": POLICY, "images": [{"image": signed.reference}] * 2}
    assert batch(service, everything_good)["verified"] is True


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"images": [{"image": "ghcr.io/a/b:v1"}]}, "images.0.policy"),
        ({"images": [], "policy": POLICY}, "images"),
        ({"images": [{"image": "ghcr.io/a/b:v1"}] * 6, "policy": POLICY}, "images"),
        ({"images": [{"image": "ghcr.io/UPPER/case"}], "policy": POLICY}, "images.0.image"),
        ({"images": ["ghcr.io/a/b:v1"], "policy": POLICY}, "images.0"),
        (
            {"images": [{"image": "ghcr.io/a/b:v1", "policy": {"threshold": 1}}]},
            "images.0.policy",
        ),
    ],
)
def test_malformed_batches_name_the_field(
    service: CheckedClient, body: dict[str, Any], field: str
) -> None:
    problem = batch(service, body, 400)
    assert any(name.startswith(field) for name in problem["errors"]), problem
