"""`GET /v1/reports/{policy}` end to end: gunicorn (two workers) sharing the real Redis, the
real registry and the local Sigstore instance; verifications from `/v1/verify`,
`/v1/verify/batch` and `/v1/admission` recorded and read back per image digest, per tenant."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.e2e.reporting import (
    OTHER,
    PLATFORM,
    POLICY,
    TOKENS,
    Images,
    make_images,
    policy_file,
    review,
)
from tests.servers import RedisServer, RegistryServer, free_port
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner


@dataclass(frozen=True)
class Setup:
    client: CheckedClient
    images: Images
    signer: RegistrySigner
    dead: str  # a registry host where nothing listens


@pytest.fixture(scope="module")
def setup(
    start_service: ServiceFactory,
    tmp_path_factory: pytest.TempPathFactory,
    sigstore_local: LocalSigstore,
    registry: RegistryServer,
    redis_server: RedisServer,
) -> Iterator[Setup]:
    dead = f"127.0.0.1:{free_port()}"
    with (
        sigstore_local.registry_signer(registry.url) as signer,
        start_service(
            rekor_url=sigstore_local.url,
            trust_root_file=str(sigstore_local.trusted_root_path),
            policy_file=str(policy_file(tmp_path_factory.mktemp("reports"))),
            api_tokens=TOKENS,
            redis_url=redis_server.url,
            insecure_registries=f"{registry.host},{dead}",
            registry_timeout="2",
            # Verdicts uncached, so that an image signed after it failed verifies at once
            # (with caching, at the next verification after SIGVERIFY_VERDICT_TTL).
            verdict_ttl="0",
        ) as (_, client),
    ):
        yield Setup(client, make_images(signer, "reports"), signer, dead)


def report(client: CheckedClient, policy: str) -> dict[str, Any]:
    response = client.get(f"/v1/reports/{policy}", headers=PLATFORM)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def by_reference(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {ref: image for image in body["images"] for ref in image["references"]}


def test_every_source_is_recorded_per_digest(setup: Setup) -> None:
    client, images = setup.client, setup.images
    signed = images.signed.tag_reference
    verify = client.post("/v1/verify", json={"image": signed, "policyName": "watch"},
                         headers=PLATFORM)  # fmt: skip
    assert verify.json()["verified"] is True
    batch = client.post(
        "/v1/verify/batch",
        json={"policyName": "watch",
              "images": [{"image": images.wrong_identity.tag_reference},
                         {"image": images.unsigned.tag_reference},
                         {"image": images.signed.reference}]},
        headers=PLATFORM,
    )  # fmt: skip
    assert batch.json()["passed"] is True  # audit: reported, not enforced
    body = review("shop", [signed, images.wrong_issuer.tag_reference])
    assert client.post("/v1/admission", json=body).json()["response"]["allowed"] is True

    r = report(client, "watch")
    assert r["policy"] == {"name": "watch", "tenant": "platform", "mode": "audit",
                           "digest": r["policy"]["digest"]}  # fmt: skip
    assert r["window"]["seconds"] == 7 * 86400
    seen = by_reference(r)
    app = seen[signed]
    assert app is seen[images.signed.reference]  # one digest, two references
    assert app["digest"] == images.signed.digest
    assert (app["verdict"], app["wouldBeDenied"], app["count"]) == ("verified", False, 3)
    assert app["sources"] == ["admission", "batch", "verify"]
    assert app["namespaces"] == ["shop"] and app["workloads"] == ["ReplicaSet/web-7d9f6c"]

    identity = seen[images.wrong_identity.tag_reference]
    assert identity["digest"] == images.wrong_identity.digest
    assert (identity["verdict"], identity["check"]) == ("failed", "identity")
    assert identity["fix"]["name"] == "wrong-identity"
    assert any("refs/heads/dev" in reason for reason in identity["reasons"])
    assert identity["namespaces"] == [] and identity["sources"] == ["batch"]
    assert seen[images.unsigned.tag_reference]["fix"]["name"] == "unsigned"
    issuer = seen[images.wrong_issuer.tag_reference]
    assert issuer["fix"]["name"] == "wrong-issuer" and issuer["namespaces"] == ["shop"]

    summary = r["summary"]
    assert (summary["imagesSeen"], summary["wouldBeDenied"], summary["passing"]) == (4, 3, 1)
    assert [f["name"] for f in summary["byFix"]] == ["unsigned", "wrong-identity", "wrong-issuer"]
    assert summary["readyToEnforce"] is False
    assert summary["ready"] == (
        "Not ready to enforce: 3 of 4 image(s) seen in the last 7 days would be denied."
    )
    assert [i["wouldBeDenied"] for i in r["images"]] == [True, True, True, False]


def test_a_missing_attestation_and_an_unreachable_registry(setup: Setup) -> None:
    client = setup.client
    gone = f"{setup.dead}/reports/app:v1"
    for image in (setup.images.signed.tag_reference, gone):
        client.post("/v1/verify", json={"image": image, "policyName": "provenance"},
                    headers=PLATFORM)  # fmt: skip
    seen = by_reference(report(client, "provenance"))
    missing = seen[setup.images.signed.tag_reference]
    assert (missing["check"], missing["fix"]["name"]) == ("attestation", "attestation")
    down = seen[gone]
    assert (down["digest"], down["verdict"], down["check"]) == (
        None, "unverifiable", "registry-unavailable")  # fmt: skip
    assert down["reasons"] == ["its registry could not be reached"]  # fixed words only
    assert down["fix"]["name"] == "unverifiable"


def test_enforce_policies_report_their_denials(setup: Setup) -> None:
    client, images = setup.client, setup.images
    body = review("payments", [images.signed.tag_reference, images.unsigned.tag_reference],
                  owner="pay", kind="Job")  # fmt: skip
    assert client.post("/v1/admission", json=body).json()["response"]["allowed"] is False
    r = report(client, "gate")
    assert r["policy"]["mode"] == "enforce"
    (denied,) = [i for i in r["images"] if i["wouldBeDenied"]]
    assert denied["digest"] == images.unsigned.digest and denied["mode"] == "enforce"
    assert denied["workloads"] == ["Job/pay"] and denied["namespaces"] == ["payments"]
    assert r["summary"]["ready"] == (
        "Enforcing: 1 of 2 image(s) seen in the last 7 days were denied."
    )


def test_ready_to_enforce_once_the_image_is_signed(setup: Setup) -> None:
    client, signer = setup.client, setup.signer
    late = signer.image("reports/late", "v1")
    empty = report(client, "rollout")["summary"]
    assert empty["readyToEnforce"] is False and "no image was seen" in empty["ready"]
    client.post("/v1/admission", json=review("staging", [late.tag_reference]))
    before = report(client, "rollout")["summary"]
    assert (before["readyToEnforce"], before["wouldBeDenied"]) == (False, 1)
    signer.sign(late)  # the tenant fixes it; the next deployment is verified again
    client.post("/v1/admission", json=review("staging", [late.tag_reference]))
    after = report(client, "rollout")
    assert after["summary"]["readyToEnforce"] is True, after
    assert after["summary"]["ready"] == (
        "Ready to enforce: none of the 1 image(s) seen in the last 7 days would be denied."
    )
    (image,) = after["images"]
    assert (image["verdict"], image["count"], image["fix"]) == ("verified", 2, None)


def test_reports_are_tenant_scoped(setup: Setup) -> None:
    client = setup.client
    assert client.get("/v1/reports/watch").status_code == 401
    hidden = client.get("/v1/reports/watch", headers=OTHER)
    missing = client.get("/v1/reports/nonexistent", headers=OTHER)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"].replace("watch", "X") == missing.json()["detail"].replace(
        "nonexistent", "X"
    )
    assert client.get("/v1/reports/theirs", headers=PLATFORM).status_code == 404
    assert client.get("/v1/reports/theirs", headers=OTHER).json()["summary"]["imagesSeen"] == 0


def test_inline_policies_are_not_recorded(setup: Setup) -> None:
    client = setup.client
    before = report(client, "watch")["summary"]["sightings"]
    client.post("/v1/verify", json={"image": setup.images.unsigned.tag_reference,
                                    "policy": POLICY}, headers=PLATFORM)  # fmt: skip
    assert report(client, "watch")["summary"]["sightings"] == before


def test_both_workers_add_to_one_report_and_none_is_lost(setup: Setup) -> None:
    """Concurrent requests, answered by either gunicorn worker (four threads each), all
    appended to one Redis list: every one of them counts."""
    client, image = setup.client, setup.images.wrong_identity

    def count() -> int:
        found = [i for i in report(client, "watch")["images"] if i["digest"] == image.digest]
        return int(found[0]["count"]) if found else 0

    def verify(_: int) -> int:
        body = {"image": image.reference, "policyName": "watch"}
        return client.post("/v1/verify", json=body, headers=PLATFORM).status_code

    before = count()
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(verify, range(40))) == {200}
    assert count() == before + 40
