"""The cache's lists (`Cache.append`, `Cache.items`), in process and in a real Redis: newest
items up to a cap, each item's own lifetime, appends from many threads and pods all kept, and
in Redis a sealed item per append, so that what a Redis writer forges, alters, moves or keeps
past its time is not read back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis

from service.cache import Cache, MemoryCache, RedisCache, Sealer
from tests.sealing import SECRET, seal, unseal
from tests.servers import RedisServer, free_port


@pytest.fixture
def prefix() -> str:
    return f"test-{uuid.uuid4().hex}:"


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest, prefix: str) -> Callable[[], Cache]:
    """A factory of caches that share their lists: one per "pod" (in process: one cache)."""
    if request.param == "memory":
        shared = MemoryCache()
        return lambda: shared
    server: RedisServer = request.getfixturevalue("redis_server")
    return lambda: RedisCache(server.url, secret=SECRET, prefix=prefix)


def test_items_come_back_oldest_first_up_to_the_cap(make: Callable[[], Cache]) -> None:
    cache = make()
    assert cache.items("list:a", max_items=10) == []
    cache.append("list:a", [b"1", b"2"], max_items=3, ttl=60)
    cache.append("list:a", [b"3"], max_items=3, ttl=60)
    assert cache.items("list:a", max_items=10) == [b"1", b"2", b"3"]
    cache.append("list:a", [b"4", b"5"], max_items=3, ttl=60)
    assert cache.items("list:a", max_items=10) == [b"3", b"4", b"5"]
    assert cache.items("list:a", max_items=2) == [b"4", b"5"]  # a reader's own cap
    assert cache.items("list:other", max_items=10) == []
    cache.append("list:a", [], max_items=3, ttl=60)
    cache.append("list:a", [b"x"], max_items=3, ttl=0)  # no lifetime: nothing stored
    assert cache.items("list:a", max_items=10) == [b"3", b"4", b"5"]


def test_each_item_lives_its_own_time(make: Callable[[], Cache]) -> None:
    cache = make()
    cache.append("list:t", [b"short"], max_items=10, ttl=0.2)
    time.sleep(0.1)
    cache.append("list:t", [b"long"], max_items=10, ttl=30)
    deadline = time.monotonic() + 3
    while cache.items("list:t", max_items=10) != [b"long"]:
        assert time.monotonic() < deadline, "the short-lived item did not expire"
        time.sleep(0.05)


def test_appends_from_many_threads_and_pods_are_all_kept(make: Callable[[], Cache]) -> None:
    pods = [make() for _ in range(3)]
    per_thread = 40

    def write(pod: Cache, name: str) -> None:
        for i in range(per_thread):
            pod.append("list:busy", [f"{name}-{i}".encode()], max_items=10_000, ttl=60)

    threads = [
        threading.Thread(target=write, args=(pod, f"p{p}t{t}"))
        for p, pod in enumerate(pods)
        for t in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    found = pods[0].items("list:busy", max_items=10_000)
    assert len(found) == len(set(found)) == 3 * 4 * per_thread


def test_redis_keeps_items_sealed_under_the_cap_and_the_list_ttl(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    cache.append("list:s", [b"one", b"two", b"three"], max_items=2, ttl=60)
    stored = direct.lrange(prefix + "list:s", 0, -1)
    assert [unseal("list:s", raw) for raw in stored] == [b"two", b"three"]
    assert 59_000 < direct.pttl(prefix + "list:s") <= 60_000


def test_what_a_redis_writer_puts_in_a_list_is_not_read(
    redis_server: RedisServer, direct: redis.Redis, prefix: str
) -> None:
    cache = RedisCache(redis_server.url, secret=SECRET, prefix=prefix)
    name = prefix + "list:w"
    cache.append("list:w", [b"ours"], max_items=100, ttl=60)
    ours = direct.lrange(name, 0, -1)[0]
    assert isinstance(ours, bytes)
    altered = ours[:-1] + bytes([ours[-1] ^ 1])
    moved = seal("list:another", b"sealed for another list")
    forged = Sealer(b"k" * 32).seal("list:w", b"sealed with another secret", 60)
    stale = Sealer(SECRET, clock=lambda: time.time() - 120).seal("list:w", b"expired", 60)
    direct.rpush(name, b"plain", altered, moved, forged, stale)
    assert cache.items("list:w", max_items=100) == [b"ours"]
    assert cache.stats.rejected == 1  # counted once per read, expired items not at all
    # A list a writer grew past any cap is read only as far as the reader's cap.
    direct.rpush(name, *([b"junk"] * 5000))
    cache.append("list:w", [b"newest"], max_items=10_000, ttl=60)
    assert cache.items("list:w", max_items=10) == [b"newest"]


def test_an_unreachable_redis_reads_empty_and_drops_appends() -> None:
    cache = RedisCache(f"redis://127.0.0.1:{free_port()}/0", secret=SECRET, timeout=0.2)
    cache.append("list:x", [b"v"], max_items=10, ttl=60)
    assert cache.items("list:x", max_items=10) == []
    assert cache.stats.errors == 2


def test_memory_lists_are_bounded_in_number_and_expire_by_the_clock() -> None:
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0], max_lists=2)
    for name in ("a", "b", "c"):
        cache.append(f"list:{name}", [name.encode()], max_items=5, ttl=10)
    assert cache.items("list:a", max_items=5) == []  # the least recently appended went
    assert cache.items("list:c", max_items=5) == [b"c"]
    now[0] = 10.0
    assert cache.items("list:c", max_items=5) == []
