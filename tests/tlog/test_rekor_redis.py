"""The Rekor client with a real Redis as its cache: keys, expiry, tampering and a Redis outage.

The log here is the scripted in-process one; `test_rekor_local.py` repeats the essentials
against the real local Rekor.
"""

from __future__ import annotations

import json
import uuid as uuidlib
from pathlib import Path

import pytest
import redis

from service.cache import RedisCache
from service.tlog import RekorClient
from tests.sealing import SECRET, seal, unseal
from tests.servers import RedisServer, running
from tests.tlog.helpers import ScriptedLog, make_entry

PREFIX = "sigverify:"


@pytest.fixture
def rekor() -> ScriptedLog:
    log = ScriptedLog()
    log.add(*(make_entry(i, payload=f"redis-{i}") for i in range(4)))
    return log


def unique_base() -> str:
    """A log URL of its own, so tests sharing the session's Redis never see each other's keys."""
    return f"http://rekor-{uuidlib.uuid4().hex[:12]}.test"


def make_client(base: str, cache: RedisCache, rekor: ScriptedLog) -> RekorClient:
    return RekorClient(base, cache, transport=rekor.transport(), sleep=lambda _s: None)


def test_entry_cached_in_redis_under_both_keys_with_long_ttl(
    redis_server: RedisServer, rekor: ScriptedLog
) -> None:
    base = unique_base()
    client = make_client(base, RedisCache(redis_server.url, secret=SECRET), rekor)
    uuid, document = rekor.entries[1]
    assert client.entry_by_log_index(1) == document
    origin = client.origin
    direct = redis.Redis.from_url(redis_server.url)
    for key in (f"rekor:idx:{origin}:1", f"rekor:uuid:{origin}:{uuid}"):
        assert json.loads(unseal(key, direct.get(PREFIX + key))) == document
        assert direct.pttl(PREFIX + key) > 29 * 24 * 3600 * 1000
    # a second worker (another client, same Redis) asks the log nothing
    other = make_client(base, RedisCache(redis_server.url, secret=SECRET), rekor)
    assert other.entry_by_uuid(uuid) == document
    assert other.entry_by_log_index(1) == document
    assert len(rekor.requests) == 1


def test_not_found_cached_briefly_in_redis(redis_server: RedisServer, rekor: ScriptedLog) -> None:
    client = make_client(unique_base(), RedisCache(redis_server.url, secret=SECRET), rekor)
    assert client.entry_by_log_index(42) is None
    assert client.entry_by_log_index(42) is None
    assert len(rekor.requests) == 1
    ttl = redis.Redis.from_url(redis_server.url).pttl(f"{PREFIX}rekor:idx:{client.origin}:42")
    assert 0 < ttl <= 5000


def test_tampered_redis_value_is_rejected_and_refetched(
    redis_server: RedisServer, rekor: ScriptedLog
) -> None:
    """The wrong entry under index 2, stored by a Redis writer (unsealed: the cache refuses it)
    and by a pod holding the secret (sealed: the client's own check refuses it)."""
    cache = RedisCache(redis_server.url, secret=SECRET)
    client = make_client(unique_base(), cache, rekor)
    direct = redis.Redis.from_url(redis_server.url)
    name = f"rekor:idx:{client.origin}:2"
    wrong = json.dumps(rekor.entries[3][1]).encode()
    direct.set(PREFIX + name, wrong)
    assert client.entry_by_log_index(2) == rekor.entries[2][1]
    assert cache.stats.rejected == 1
    assert len(rekor.requests) == 1
    direct.set(PREFIX + name, seal(name, wrong))
    assert client.entry_by_log_index(2) == rekor.entries[2][1]
    assert client.stats.snapshot()["rejected"] == 1
    assert len(rekor.requests) == 2
    assert json.loads(unseal(name, direct.get(PREFIX + name))) == rekor.entries[2][1]


def test_redis_stopped_mid_run_lookups_still_answered(tmp_path: Path, rekor: ScriptedLog) -> None:
    server = RedisServer(tmp_path / "redis")
    with running(server):
        cache = RedisCache(server.url, secret=SECRET, timeout=0.2)
        client = make_client(unique_base(), cache, rekor)
        assert client.entry_by_log_index(0) == rekor.entries[0][1]
        assert client.entry_by_log_index(0) == rekor.entries[0][1]
        assert len(rekor.requests) == 1
        server.stop()
        assert not cache.healthy()
        for index in range(4):
            assert client.entry_by_log_index(index) == rekor.entries[index][1]
        assert client.entry_by_uuid(rekor.entries[0][0]) == rekor.entries[0][1]
        assert client.search_by_hash("ab" * 32) == []
        assert len(rekor.requests) == 1 + 4 + 1 + 1  # uncached, but answered
        assert cache.stats.errors > 0
        assert client.stats.snapshot()["errors"] == 0
