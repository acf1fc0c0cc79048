"""Outages and hostile input, end to end: never a false "verified", never a stack trace.

Registry, Rekor or Redis down or slow gives a 5xx problem or a degraded-but-correct verdict;
limits and the outbound guard refuse before work is done, and the service stays healthy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory
from tests.oci import Pusher
from tests.servers import RedisServer, RegistryServer, running
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
STRICT = {**POLICY, "transparencyLog": {"allowInclusionPromise": False}}


def local_settings(sigstore: LocalSigstore, **extra: str) -> dict[str, str]:
    return {
        "rekor_url": sigstore.url,
        "trust_root_file": str(sigstore.trusted_root_path),
        "verdict_ttl": "0",
        "rekor_retries": "0",
        "rekor_timeout": "0.5",
        "rekor_breaker_failures": "1000",
        **extra,
    }


def post(client: CheckedClient, image: str, policy: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = client.post("/v1/verify", json={"image": image, "policy": policy})
    body: dict[str, Any] = response.json()
    if response.status_code != 200:
        assert response.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in response.text
    return response.status_code, body


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, sigstore_local: LocalSigstore
) -> Iterator[CheckedClient]:
    with start_service(**local_settings(sigstore_local)) as (_, client):
        yield client


# -- Rekor --------------------------------------------------------------------------------------


def test_rekor_down_a_verified_set_gives_a_degraded_verdict(
    service: CheckedClient, registry_signer: RegistrySigner, fresh_rekor: LocalSigstore
) -> None:
    image = registry_signer.image("outage/rekor-down")
    registry_signer.sign(image)
    fresh_rekor.fail_with = 503
    status, verdict = post(service, image.reference, POLICY)
    assert status == 200, verdict
    assert verdict["verified"] is True
    assert verdict["degraded"] is True
    assert verdict["signatures"][0]["logEntry"]["evidence"] == "inclusion-promise"
    # A policy that wants a proof cannot be answered now: an error, not a verdict.
    status, problem = post(service, image.reference, STRICT)
    assert status == 502
    assert problem["type"].endswith("/rekor-unavailable")
    # A wrong signer is a failure whatever Rekor says: a signed verdict, not "retry later".
    status, verdict = post(service, image.reference, {**POLICY, "certificateIdentity": "x@y"})
    assert status == 200, verdict
    assert (verdict["verified"], verdict["degraded"]) == (False, True)
    assert verdict["rekor"]["status"] == "unreachable"
    # ... even under a policy that wants a proof Rekor cannot give now
    status, verdict = post(service, image.reference, {**STRICT, "certificateIdentity": "x@y"})
    assert (status, verdict["verified"]) == (200, False)
    fresh_rekor.fail_with = None
    status, verdict = post(service, image.reference, STRICT)
    assert (status, verdict["verified"], verdict["degraded"]) == (200, True, False)


def test_rekor_slow_is_a_timeout(
    service: CheckedClient, registry_signer: RegistrySigner, fresh_rekor: LocalSigstore
) -> None:
    image = registry_signer.image("outage/rekor-slow")
    registry_signer.sign(image)
    fresh_rekor.delay = 2.0
    status, problem = post(service, image.reference, STRICT)
    assert status == 504, problem
    assert problem["type"].endswith("/rekor-timeout")


# -- the registry -------------------------------------------------------------------------------


def test_registry_down_and_slow(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    tmp_path: Path,
) -> None:
    own = RegistryServer(tmp_path / "registry")
    with running(own), Pusher(own.url) as pusher:
        image = pusher.image("outage/registry", "v1", layer=b"x")
        host = own.host
    # The registry is gone now; and a listener that never answers stands in for a slow one.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent_host = f"127.0.0.1:{silent.getsockname()[1]}"
        settings = local_settings(
            sigstore_local,
            registry_timeout="0.5",
            insecure_registries=f"{host},{silent_host}",
        )
        with start_service(**settings) as (_, client):
            status, problem = post(client, f"{host}/outage/registry@{image.digest}", POLICY)
            assert status == 502, problem
            assert problem["type"].endswith("/registry-unavailable")
            status, problem = post(client, f"{silent_host}/outage/registry:v1", POLICY)
            assert status == 504, problem
            assert problem["type"].endswith("/registry-timeout")
            assert client.get("/healthz").status_code == 200


def test_unknown_tag_is_404(service: CheckedClient, registry: RegistryServer) -> None:
    status, problem = post(service, f"{registry.host}/outage/none:v0", POLICY)
    assert status == 404
    assert problem["type"].endswith("/image-not-found")


# -- Redis --------------------------------------------------------------------------------------


def test_redis_down_answers_uncached_and_correct(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry_signer: RegistrySigner,
    tmp_path: Path,
) -> None:
    image = registry_signer.image("outage/redis")
    registry_signer.sign(image)
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        settings = local_settings(sigstore_local, redis_url=redis.url, verdict_ttl="300")
        with start_service(**settings) as (_, client):
            assert post(client, image.reference, POLICY)[1]["cached"] is False
            assert post(client, image.reference, POLICY)[1]["cached"] is True
            redis.stop()
            status, verdict = post(client, image.reference, POLICY)
            assert (status, verdict["verified"], verdict["cached"]) == (200, True, False)
            wrong = post(client, image.reference, {**POLICY, "certificateIdentity": "x@y"})[1]
            assert wrong["verified"] is False
            ready = client.get("/readyz").json()
            assert ready["status"] == "degraded"
            assert ready["checks"]["cache"]["ok"] is False
    finally:
        redis.stop()


# -- limits and the outbound guard --------------------------------------------------------------


def test_limits_refuse_before_the_work(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry_signer: RegistrySigner,
) -> None:
    many = registry_signer.image("outage/many-signatures")
    for _ in range(3):
        registry_signer.sign(many)
    settings = local_settings(sigstore_local, max_signatures="2", max_manifest_bytes="1024")
    with start_service(**settings) as (_, client):
        status, problem = post(client, many.reference, POLICY)
        assert status == 422, problem
        assert problem["reason"] == "limit-exceeded"
        big = registry_signer.multi_platform_image(
            "outage/big-index", platforms=[("linux", f"arch{i}") for i in range(12)]
        )
        status, problem = post(client, big.reference, POLICY)
        assert status == 422, problem
        assert "1024" in problem["detail"]
        assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "spelling",
    ["[::ffff:127.0.0.1]", "localhost", "127.1", "2130706433", "0x7f.1", "0177.0.0.1"],
)
def test_the_outbound_guard_refuses_loopback_spellings(
    start_service: ServiceFactory,
    registry: RegistryServer,
    sigstore_local: LocalSigstore,
    spelling: str,
) -> None:
    """Without SIGVERIFY_ALLOW_LOOPBACK the service must not reach this host's registry,
    however the address is spelt; the registry sees no request. A name or address is refused
    by the address guard (403) even when listed; a non-canonical numeric spelling is not a
    valid reference at all (400), nor a valid list entry."""
    port = registry.host.rsplit(":", 1)[1]
    target = f"{spelling}:{port}"
    canonical = not spelling[0].isdigit()
    settings = local_settings(
        sigstore_local,
        allow_loopback="false",
        insecure_registries=target if canonical else registry.host,
        # listed: the address guard has to refuse it
        registry_allow=spelling.strip("[]") if canonical else "127.0.0.1",
    )
    log = registry.workdir / "registry.log"
    with start_service(**settings) as (_, client):
        before = log.read_bytes().count(b"response completed")
        status, problem = post(client, f"{target}/outage/guard:v1", POLICY)
        assert status == (403 if canonical else 400), problem
        assert log.read_bytes().count(b"response completed") == before
        assert client.get("/healthz").json() == {"status": "ok"}


def test_a_served_request_never_shows_internals(service: CheckedClient) -> None:
    response = service.post(
        "/v1/verify", content=b"\xff" * 100, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "Traceback" not in response.text
