"""`service.cache.RedisCache` itself against a real redis-server: values, prefix, expiry,
stats, and an unreachable Redis. (The Rekor client's use of it is in test_rekor_redis.py and
test_rekor_local.py.)"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Iterator

import pytest
import redis

from service.cache import MemoryCache, RedisCache, Sealer, make_cache
from tests.sealing import SECRET, seal, unseal
from tests.servers import RedisServer, free_port


@pytest.fixture
def prefix() -> str:
    return f"test-{uuidlib.uuid4().hex}:"


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


def test_values_round_trip_under_the_prefix_with_their_ttl(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    assert cache.backend == "redis" and cache.healthy()
    value = bytes(range(256))  # any bytes, not only text
    assert cache.get("ns:key") is None
    cache.set("ns:key", value, 5.0)
    assert cache.get("ns:key") == value
    stored = direct.get(prefix + "ns:key")  # stored under the prefix, sealed
    assert stored != value and unseal("ns:key", stored) == value
    assert 4000 < direct.pttl(prefix + "ns:key") <= 5000
    cache.set("ns:key", b"newer", 60.0)  # overwritten, value and ttl
    assert cache.get("ns:key") == b"newer"
    assert 59_000 < direct.pttl(prefix + "ns:key") <= 60_000
    assert cache.stats.hits == {"ns": 2}
    assert cache.stats.misses == {"ns": 1}
    assert cache.stats.errors == 0
    # another prefix is another cache
    other = RedisCache(redis_server.url, secret=SECRET, prefix=prefix + "other:")
    assert other.get("ns:key") is None


@pytest.mark.parametrize("ttl", [0.0, -1.0])
def test_no_positive_ttl_stores_nothing(
    redis_server: RedisServer, direct: redis.Redis, prefix: str, ttl: float
) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    cache.set("ns:key", b"value", ttl)
    assert cache.get("ns:key") is None
    assert direct.exists(prefix + "ns:key") == 0


def test_values_expire(redis_server: RedisServer, direct: redis.Redis, prefix: str) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    cache.set("ns:short", b"value", 0.15)
    cache.set("ns:long", b"value", 30.0)
    assert cache.get("ns:short") == b"value"
    deadline = time.monotonic() + 3
    while cache.get("ns:short") is not None:
        assert time.monotonic() < deadline, "the value did not expire"
        time.sleep(0.03)
    assert cache.get("ns:long") == b"value"


def test_an_unreachable_redis_is_a_miss_and_never_raises() -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    cache = RedisCache(nowhere, secret=SECRET, timeout=0.2)
    cache.set("ns:key", b"value", 60.0)
    assert cache.get("ns:key") is None
    assert cache.stats.errors == 2
    assert cache.stats.misses == {"ns": 1}
    assert not cache.healthy()


def test_make_cache_picks_redis_when_configured(redis_server: RedisServer) -> None:
    assert isinstance(make_cache(redis_server.url, secret=SECRET), RedisCache)
    for unset in (None, ""):
        assert isinstance(make_cache(unset, secret=SECRET), MemoryCache)


def test_counters_in_redis_and_in_memory(redis_server: RedisServer) -> None:
    """`incr` counts atomically and starts the counter's life at the first increment."""
    now = [0.0]
    memory = MemoryCache(clock=lambda: now[0])
    prefix = f"incr-{time.monotonic_ns()}:"
    shared = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    for cache in (memory, shared):
        assert cache.incr("n", 2, 60) == 2
        assert cache.incr("n", 3, 60) == 5
    now[0] = 61.0
    assert memory.incr("n", 1, 60) == 1  # expired, a new window
    ttl = redis.Redis.from_url(redis_server.url).ttl(prefix + "n")
    assert isinstance(ttl, int) and 0 < ttl <= 60
    assert RedisCache("redis://127.0.0.1:1/0", secret=SECRET, timeout=0.2).incr("n", 1, 60) is None


# -- a Redis writer can cause misses and nothing else -------------------------------------------


def test_a_value_we_did_not_seal_is_a_miss(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    """Whatever a Redis writer stores (plain bytes, a value sealed with another secret, one
    whose bytes were changed) is rejected, counted, and a miss; a real value then replaces it."""
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    flipped = bytearray(seal("ns:key", b'{"verified": false}'))
    flipped[-3] ^= 0x01
    forgeries = {
        "plain": b'{"verified": true}',
        "other secret": Sealer(b"x" * 32).seal("ns:key", b'{"verified": true}', 60),
        "flipped byte": bytes(flipped),
        "truncated": seal("ns:key", b"value")[:20],
        "empty": b"",
    }
    for n, (name, forged) in enumerate(forgeries.items(), start=1):
        direct.set(prefix + "ns:key", forged)
        assert cache.get("ns:key") is None, name
        assert cache.stats.rejected == n, name
    cache.set("ns:key", b"real", 60)
    assert cache.get("ns:key") == b"real"
    assert cache.stats.rejected == len(forgeries)


def test_a_sealed_value_moved_to_another_key_is_a_miss(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    """The seal covers the key: a verdict that passed for one image cannot be copied onto
    another image's key."""
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    cache.set("verdict:image-a", b'{"verified": true}', 60)
    stored = direct.get(prefix + "verdict:image-a")
    assert isinstance(stored, bytes)
    direct.set(prefix + "verdict:image-b", stored)
    assert cache.get("verdict:image-b") is None
    assert cache.get("verdict:image-a") == b'{"verified": true}'
    assert cache.stats.rejected == 1


def test_a_sealed_value_kept_past_its_lifetime_is_a_miss(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    """The seal covers the expiry it was written with: a writer who makes Redis keep a value
    longer (PERSIST, or storing it again) cannot make us serve it longer."""
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    cache.set("ns:short", b"value", 0.2)
    direct.persist(prefix + "ns:short")
    assert cache.get("ns:short") == b"value"
    time.sleep(0.3)
    assert direct.exists(prefix + "ns:short") == 1  # Redis still has it ...
    assert cache.get("ns:short") is None  # ... but it is not served
    assert cache.stats.rejected == 1


def test_sealer_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sealer(b"short")


def test_no_value_over_the_size_cap_is_stored(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    """What an upstream serves is cached only up to the cap, in Redis and in memory alike."""
    events: list[tuple[str, str]] = []
    caches = (
        RedisCache(redis_server.url, secret=SECRET, prefix=prefix, max_value_bytes=1024),
        MemoryCache(max_value_bytes=1024),
    )
    for cache in caches:
        cache.stats.observers.append(lambda event, ns: events.append((event, ns)))
        cache.set("manifest:big", b"x" * 1025, 60)
        cache.set("manifest:small", b"x" * 1024, 60)
        assert cache.get("manifest:big") is None
        assert cache.get("manifest:small") == b"x" * 1024
        assert cache.stats.too_large == {"manifest": 1}
    assert direct.get(prefix + "manifest:big") is None
    assert events.count(("too-large", "manifest")) == 2
    assert make_cache(None, secret=SECRET, max_value_bytes=10).stats.too_large == {}
