"""Real third-party cosign signatures, verified end to end: real registry, real Redis, gunicorn.

Every case from tests/thirdparty.py (connaisseur, ratify, sigstore-rs, containers/image,
slsa-verifier; see tests/data/third_party/*/ATTRIBUTION.md) is pushed byte for byte and verified
through `POST /v1/verify` against the production trust root embedded in sigstore-python. Rekor is
the local log, which holds none of these entries: the keyless cases rest on their signed entry
timestamps, as `cosign verify` does offline.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.contract import CheckedClient
from tests.e2e.conftest import ServiceFactory, ref
from tests.oci import Pusher
from tests.servers import RedisServer, RegistryServer
from tests.sigstore_local.fixtures import LocalSigstore
from tests.thirdparty import Case, push_all


@pytest.fixture(scope="module")
def service(
    start_service: ServiceFactory, redis_server: RedisServer, sigstore_local: LocalSigstore
) -> Iterator[CheckedClient]:
    with start_service(redis_url=redis_server.url, rekor_url=sigstore_local.url) as (_, client):
        yield client


def _mismatch(case: Case, verdict: dict[str, Any]) -> str | None:
    """What is wrong with the verdict on `case`, or None."""
    if verdict["verified"] is not case.verified:
        return f"verified={verdict['verified']}, expected {case.verified}: {verdict['reasons']}"
    if verdict["image"]["digest"] != case.digest:
        return f"digest {verdict['image']['digest']}"
    if case.verified and verdict["reasons"]:
        return f"a pass with reasons {verdict['reasons']}"
    if case.verified and case.signer and not any(case.signer in s for s in verdict["signers"]):
        return f"signers {verdict['signers']}, expected {case.signer}"
    if not case.verified and not verdict["reasons"]:
        return "a failure that does not say why"
    if not case.verified and case.reason and not any(case.reason in r for r in verdict["reasons"]):
        return f"reasons {verdict['reasons']} lack {case.reason!r}"
    return None


def test_every_third_party_case_gets_its_expected_verdict(
    pusher: Pusher, service: CheckedClient, registry: RegistryServer
) -> None:
    cases = push_all(pusher)
    assert len(cases) >= 30
    assert {c.verified for c in cases} == {True, False}
    wrong: dict[str, str] = {}
    for case in cases:
        body = {"image": ref(registry, case.repo, "@" + case.digest), "policy": case.policy}
        first = service.post("/v1/verify", json=body)
        assert first.status_code == 200, f"{case.id}: {first.text}"
        problem = _mismatch(case, first.json())
        if problem:
            wrong[case.id] = problem
        # Asked again, the same signed verdict comes from the cache.
        again = service.post("/v1/verify", json=body).json()
        assert again["cached"] is True, case.id
        assert again["signedVerdict"] == first.json()["signedVerdict"], case.id
    assert wrong == {}
