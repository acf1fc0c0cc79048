"""Per-tenant rate limits under gunicorn: one budget in Redis across workers, 429 past it."""

from __future__ import annotations

import time
from pathlib import Path

from tests.e2e.conftest import ServiceFactory
from tests.servers import RedisServer
from tests.sigstore_local import artifacts
from tests.sigstore_local.ca import ACTIONS
from tests.sigstore_local.fixtures import LocalSigstore
from tests.sigstore_local.signer import RegistrySigner

POLICY = {"certificateIdentity": artifacts.DEFAULT_IDENTITY, "certificateOidcIssuer": ACTIONS}
TOKEN_A = "rate-limit-tenant-a-0123456789"
TOKEN_B = "rate-limit-tenant-b-0123456789"


def _clear_of_the_minute_boundary() -> None:
    """Budgets are per calendar minute; start well inside one so the test cannot straddle."""
    into = time.time() % 60
    if into > 45:
        time.sleep(61 - into)


def test_each_tenant_has_one_budget_across_workers(
    start_service: ServiceFactory,
    sigstore_local: LocalSigstore,
    registry_signer: RegistrySigner,
    tmp_path: Path,
) -> None:
    image = registry_signer.image("ratelimit/app")
    registry_signer.sign(image)
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        settings = {
            "rekor_url": sigstore_local.url,
            "trust_root_file": str(sigstore_local.trusted_root_path),
            "redis_url": redis.url,
            "rate_limit_per_minute": "5",
            "api_tokens": f"a={TOKEN_A},b={TOKEN_B}",
        }
        with start_service(**settings) as (_, client):
            _clear_of_the_minute_boundary()
            a = {"Authorization": f"Bearer {TOKEN_A}"}
            b = {"Authorization": f"Bearer {TOKEN_B}"}
            body = {"image": image.reference, "policy": POLICY}
            # Two workers answer these; the budget is shared through Redis.
            statuses = [
                client.post("/v1/verify", json=body, headers=a).status_code for _ in range(3)
            ]
            batch = {"images": [{"image": image.reference}] * 2, "policy": POLICY}
            statuses.append(client.post("/v1/verify/batch", json=batch, headers=a).status_code)
            assert statuses == [200, 200, 200, 200]  # 3 + 2 images = 5, the whole budget
            refused = client.post("/v1/verify", json=body, headers=a)
            assert refused.status_code == 429
            assert refused.json()["type"].endswith("/rate-limited")
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            # Another tenant's budget is its own; health is never limited.
            assert client.post("/v1/verify", json=body, headers=b).status_code == 200
            assert client.get("/healthz").status_code == 200
            # Redis gone: the limit cannot be counted, and releases are not stopped for it.
            redis.stop()
            assert client.post("/v1/verify", json=body, headers=a).status_code == 200
    finally:
        redis.stop()
