"""`ReportStore` over a real Redis (and in process): sightings kept per tenant and policy in
four lists that cannot push each other out, capped, and read back only as sealed; a record a
Redis writer forges, alters, copies or moves is never in a report."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis

from service.cache import Cache, MemoryCache, RedisCache
from service.reports import Limits, Outcome, ReportPolicy, ReportStore, Sighting
from service.reports.fixes import BY_NAME
from service.reports.store import LANES
from tests.sealing import SECRET, seal
from tests.servers import RedisServer

POLICY = ReportPolicy("watch", "platform", "audit", "sha256:" + "c" * 64)
LIMITS = Limits(max_images=1000, max_names=20)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


def sighting(n: int, *, ok: bool, source: str = "admission", at: float | None = None) -> Sighting:
    outcome = (
        Outcome("verified", digest(n), None, (), None, POLICY.digest)
        if ok
        else Outcome("failed", digest(n), "identity", ("signed by x",), BY_NAME["wrong-identity"],
                     POLICY.digest)
    )  # fmt: skip
    return Sighting.of(
        at=at if at is not None else STORE_NOW,
        reference=f"registry.test/app:{n}",
        source=source,  # type: ignore[arg-type]
        mode="audit",
        outcome=outcome,
        namespace="shop" if source == "admission" else None,
    )


STORE_NOW = 1_800_000_000.0


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def store(cache: Cache, max_sightings: int = 100) -> ReportStore:
    return ReportStore(
        cache, window=3600, max_sightings=max_sightings, limits=LIMITS, clock=lambda: STORE_NOW
    )


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, prefix: str) -> Cache:
    if request.param == "memory":
        return MemoryCache()
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisCache(server.url, secret=SECRET, prefix=prefix)


def test_sightings_come_back_as_the_report(cache: Cache) -> None:
    reports = store(cache)
    reports.record("platform", "watch", [sighting(1, ok=False), sighting(2, ok=True)])
    reports.record("platform", "watch", [sighting(1, ok=False, source="batch")])
    r = reports.read(POLICY)
    assert r.summary.images_seen == 2 and r.summary.would_be_denied == 1
    denied = r.images[0]
    assert denied.digest == digest(1) and denied.count == 2
    assert denied.sources == ("admission", "batch")
    assert r.summary.truncated is False


def test_tenants_and_policies_keep_apart(cache: Cache) -> None:
    reports = store(cache)
    reports.record("platform", "watch", [sighting(1, ok=False)])
    reports.record("other-tenant", "watch", [sighting(2, ok=False)])
    reports.record("platform", "gate", [sighting(3, ok=False)])
    assert [i.digest for i in reports.read(POLICY).images] == [digest(1)]


def test_a_flood_in_one_list_does_not_push_out_another(cache: Cache) -> None:
    """Passing pods cannot push out failures, nor API calls the webhook's sightings."""
    reports = store(cache, max_sightings=20)
    reports.record("platform", "watch", [sighting(1, ok=False)])  # admission, denied
    reports.record("platform", "watch", [sighting(2, ok=False, source="verify")])
    for n in range(100, 160):
        reports.record("platform", "watch", [sighting(n, ok=True)])
        reports.record("platform", "watch", [sighting(n + 1000, ok=True, source="batch")])
    r = reports.read(POLICY)
    assert {digest(1), digest(2)} <= {i.digest for i in r.denied}
    assert r.summary.images_seen == 2 + 20 + 20  # each passing list kept its newest 20
    assert r.summary.truncated is True


def test_forged_altered_moved_and_copied_records_are_not_in_the_report(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    reports = store(cache)
    reports.record("platform", "watch", [sighting(1, ok=False)])
    denied = prefix + ReportStore.key("platform", "watch", "admission-denied")
    passed = prefix + ReportStore.key("platform", "watch", "admission-passed")
    # A plain record, well formed: a pass for the failing digest, and an image never seen.
    forged = [sighting(1, ok=True, at=STORE_NOW + 1).to_json(), sighting(9, ok=True).to_json()]
    direct.rpush(passed, *forged)
    # The real record, altered: its digest swapped.
    (ours,) = direct.lrange(denied, 0, -1)
    assert isinstance(ours, bytes)
    direct.rpush(denied, ours.replace(digest(1).encode(), digest(8).encode()))
    # Sealed, but for another tenant's list.
    direct.rpush(passed, seal(ReportStore.key("other", "watch", "admission-passed"),
                              sighting(7, ok=True).to_json()))  # fmt: skip
    # The real record copied: still one sighting.
    direct.rpush(denied, ours)
    r = reports.read(POLICY)
    assert [(i.digest, i.count, i.denied) for i in r.images] == [(digest(1), 1, True)]
    assert r.summary.sightings == 1
    assert cache.stats.rejected >= 2


def test_what_a_writer_deletes_is_gone_and_no_more(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    """The limit of sealing: a Redis writer can remove sightings (a report then shows fewer)."""
    reports = store(RedisCache(redis_server.url, secret=SECRET, prefix=prefix))
    reports.record("platform", "watch", [sighting(1, ok=False), sighting(2, ok=True)])
    direct.delete(prefix + ReportStore.key("platform", "watch", "admission-denied"))
    assert [i.digest for i in reports.read(POLICY).images] == [digest(2)]


def test_the_lanes() -> None:
    assert LANES == ("admission-denied", "admission-passed", "api-denied", "api-passed")
