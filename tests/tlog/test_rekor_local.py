"""The Rekor client end to end: the real local Rekor over HTTP on 127.0.0.1, a real Redis.

Every answer the client returns is parsed and verified by the verification core (Merkle
inclusion proof into a signed checkpoint, and the SET) with the local instance's trust root.
Request counts come from the Rekor server itself, so "no request" means none reached it.
Each test has Redis keys of its own (a fresh prefix) and entries of its own (fresh digests).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid as uuidlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from service.cache import RedisCache
from service.core import LogEntry, TrustRoot
from service.core.rekor import verify_inclusion_proof, verify_set
from service.tlog import (
    CircuitBreaker,
    RekorClient,
    TlogProtocolError,
    TlogTimeout,
    TlogUnavailable,
)
from tests.sealing import SECRET
from tests.servers import RedisServer, free_port
from tests.sigstore_local.instance import LocalSigstore
from tests.sigstore_local.log import RekorEntry, Tampering
from tests.tlog.helpers import FakeClock

Lookup = Callable[[RekorClient, RekorEntry], dict[str, Any] | None]


# -- helpers -------------------------------------------------------------------------------


def new_digest() -> str:
    return "sha256:" + secrets.token_hex(32)


def new_entry(rekor: LocalSigstore) -> RekorEntry:
    """A fresh hashedrekord entry in the local log (uploaded over HTTP)."""
    return rekor.signer.message_bundle(new_digest()).entry


def verified(document: dict[str, Any] | None, expected: RekorEntry, trust: TrustRoot) -> LogEntry:
    """The core's reading of `document`, which must be `expected` with valid log evidence."""
    assert document is not None
    entry = LogEntry.from_rekor_response(document)
    assert (entry.uuid, entry.log_index, entry.body) == (
        expected.uuid,
        expected.log_index,
        expected.body,
    )
    assert "inclusion proof verified" in verify_inclusion_proof(entry, trust)
    assert entry.signed_entry_timestamp is not None
    verify_set(
        trust,
        signed_entry_timestamp=entry.signed_entry_timestamp,
        body=entry.body,
        integrated_time=entry.integrated_time,
        log_index=entry.log_index,
        log_id=entry.log_id,
    )
    return entry


def serve_with_log_index(rekor: LocalSigstore, log_index: int, claimed: int) -> None:
    """Make the log serve the entry at `log_index` claiming `claimed` as its logIndex.

    `TransparencyLog.tamper(log_index, **changes)` cannot take this change: its positional
    parameter is also called `log_index`. So the tampering is registered as `tamper` does.
    """
    log = rekor.log
    position = log_index - log.index_offset
    assert 0 <= position < log.size
    with log._lock:
        log._tampering[position] = Tampering(log_index=claimed)


def state(client: RekorClient) -> str:
    """The breaker state as a plain string (mypy would narrow the Literal across calls)."""
    return client.breaker_state


@pytest.fixture
def prefix() -> str:
    """Redis keys of this test's own."""
    return f"test-{uuidlib.uuid4().hex}:"


@pytest.fixture
def direct(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A plain Redis connection, to look at what the client stored."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_client(
    fresh_rekor: LocalSigstore, redis_server: RedisServer, prefix: str
) -> Iterator[Callable[..., RekorClient]]:
    """New clients of the local Rekor, each with its own RedisCache on this test's prefix
    (as separate gunicorn workers sharing one Redis would be)."""
    made: list[RekorClient] = []

    def make(**options: Any) -> RekorClient:
        options.setdefault("cache", RedisCache(redis_server.url, secret=SECRET, prefix=prefix))
        options.setdefault("sleep", lambda _s: None)
        client = RekorClient(fresh_rekor.url, trust_env=False, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def stored_keys(direct: redis.Redis, prefix: str) -> list[bytes]:
    return sorted(direct.scan_iter(match=prefix + "*"))


def by_index(client: RekorClient, entry: RekorEntry) -> dict[str, Any] | None:
    return client.entry_by_log_index(entry.log_index)


def by_entry_id(client: RekorClient, entry: RekorEntry) -> dict[str, Any] | None:
    assert len(entry.uuid) == 80
    return client.entry_by_uuid(entry.uuid)


def by_uuid(client: RekorClient, entry: RekorEntry) -> dict[str, Any] | None:
    return client.entry_by_uuid(entry.uuid[16:])


def by_batch(client: RekorClient, entry: RekorEntry) -> dict[str, Any] | None:
    found = client.entries_by_uuids([entry.uuid])
    assert list(found) == [entry.uuid]
    return found[entry.uuid]


LOOKUPS: dict[str, tuple[Lookup, str]] = {
    "index": (by_index, "getLogEntryByIndex"),
    "uuid-80": (by_entry_id, "getLogEntryByUUID"),
    "uuid-64": (by_uuid, "getLogEntryByUUID"),
    "batch": (by_batch, "searchLogQuery"),
}


# -- lookups and the shared cache ----------------------------------------------------------


@pytest.mark.parametrize("kind", list(LOOKUPS))
def test_lookup_verifies_and_is_then_served_by_redis_to_every_worker(
    kind: str,
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    lookup, operation = LOOKUPS[kind]
    entry = new_entry(fresh_rekor)
    new_entry(fresh_rekor)  # the tree grows past it: the proof is into a larger tree
    trust = fresh_rekor.trust()
    fresh_rekor.requests.reset()

    first = make_client()
    verified(lookup(first, entry), entry, trust)
    assert fresh_rekor.requests.snapshot() == {operation: 1}
    # stored under its index and its leaf hash, for the long entry TTL
    origin = first.origin
    keys = [
        f"{prefix}rekor:idx:{origin}:{entry.log_index}".encode(),
        f"{prefix}rekor:uuid:{origin}:{entry.uuid[16:]}".encode(),
    ]
    assert stored_keys(direct, prefix) == sorted(keys)
    assert all(direct.pttl(key) > 29 * 24 * 3600 * 1000 for key in keys)

    # the same worker again, and a second worker sharing the Redis, by every route
    second = make_client()
    for client in (first, second):
        for again, _operation in LOOKUPS.values():
            verified(again(client, entry), entry, trust)
    assert fresh_rekor.requests.total == 1
    assert second.stats.snapshot()["requests"] == 0
    assert second.stats.snapshot()["hits"] == len(LOOKUPS)


def test_search_by_hash_then_batch_retrieve_verify(
    fresh_rekor: LocalSigstore, make_client: Callable[..., RekorClient]
) -> None:
    digest = new_digest()
    one = fresh_rekor.signer.message_bundle(digest).entry
    two = fresh_rekor.signer.dsse_bundle(digest).entry  # an attestation of the same image
    other = new_entry(fresh_rekor)
    absent = secrets.token_hex(32)
    trust = fresh_rekor.trust()
    fresh_rekor.requests.reset()

    client = make_client()
    uuids = client.search_by_hash(digest)
    assert sorted(uuids) == sorted([one.uuid, two.uuid])
    assert client.search_by_hash(digest.removeprefix("sha256:").upper()) == uuids
    found = client.entries_by_uuids([*uuids, other.uuid[16:], absent, one.uuid[16:]])
    assert list(found) == [*uuids, other.uuid[16:], absent, one.uuid[16:]]
    assert found[absent] is None
    for given, expected in [(one.uuid, one), (two.uuid, two), (other.uuid[16:], other)]:
        verified(found[given], expected, trust)
    verified(found[one.uuid[16:]], one, trust)
    assert fresh_rekor.requests.snapshot() == {"searchIndex": 1, "searchLogQuery": 1}

    # a second worker: the search and the found entries from Redis, only the absent one asked
    second = make_client()
    assert second.search_by_hash(digest) == uuids
    again = second.entries_by_uuids([one.uuid, two.uuid, other.uuid, absent])
    for expected in (one, two, other):
        verified(again[expected.uuid], expected, trust)
    assert again[absent] is None
    assert fresh_rekor.requests.snapshot() == {"searchIndex": 1, "searchLogQuery": 2}


def test_search_for_an_unknown_hash_is_empty_and_cached_briefly(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    client = make_client(miss_ttl=0.3)
    digest = secrets.token_hex(32)
    assert client.search_by_hash(digest) == []
    assert client.search_by_hash(digest) == []
    assert fresh_rekor.requests.snapshot() == {"searchIndex": 1}
    ttl = direct.pttl(f"{prefix}rekor:search:{client.origin}:{digest}")
    assert 0 < ttl <= 300


def test_not_found_is_cached_briefly_not_forever(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    """The next index is absent until an entry is appended: the miss is remembered for
    `miss_ttl` (Redis expires it), then the new entry is found."""
    client = make_client(miss_ttl=0.4)
    other_worker = make_client(miss_ttl=0.4)
    next_index = fresh_rekor.log.index_offset + fresh_rekor.log.size
    unknown_uuid = secrets.token_hex(32)
    fresh_rekor.requests.reset()

    assert client.entry_by_log_index(next_index) is None
    assert client.entry_by_uuid(unknown_uuid) is None
    assert fresh_rekor.requests.snapshot() == {"getLogEntryByIndex": 1, "getLogEntryByUUID": 1}
    miss_keys = [
        f"{prefix}rekor:idx:{client.origin}:{next_index}",
        f"{prefix}rekor:uuid:{client.origin}:{unknown_uuid}",
    ]
    for key in miss_keys:
        assert 0 < direct.pttl(key) <= 400, key

    appended = new_entry(fresh_rekor)
    assert appended.log_index == next_index
    fresh_rekor.requests.reset()
    assert client.entry_by_log_index(next_index) is None  # still the cached miss
    assert other_worker.entry_by_log_index(next_index) is None  # shared through Redis
    assert other_worker.entry_by_uuid(unknown_uuid) is None
    assert fresh_rekor.requests.total == 0

    deadline = time.monotonic() + 3
    while direct.exists(miss_keys[0]):
        assert time.monotonic() < deadline, "the cached miss did not expire"
        time.sleep(0.05)
    verified(client.entry_by_log_index(next_index), appended, fresh_rekor.trust())
    assert fresh_rekor.requests.snapshot() == {"getLogEntryByIndex": 1}


def test_identical_concurrent_lookups_go_out_once(
    fresh_rekor: LocalSigstore, make_client: Callable[..., RekorClient]
) -> None:
    entry = new_entry(fresh_rekor)
    trust = fresh_rekor.trust()
    client = make_client()
    fresh_rekor.requests.reset()
    fresh_rekor.delay = 0.3  # every thread misses the cache before the first answer lands
    barrier = threading.Barrier(16)
    answers: list[dict[str, Any] | None] = []
    errors: list[Exception] = []
    lock = threading.Lock()

    def worker() -> None:
        try:
            barrier.wait(timeout=5)
            answer = client.entry_by_log_index(entry.log_index)
        except Exception as exc:  # reported by the assertion below
            with lock:
                errors.append(exc)
        else:
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert errors == []
    assert len(answers) == 16
    assert fresh_rekor.requests.snapshot() == {"getLogEntryByIndex": 1}
    for answer in answers:
        verified(answer, entry, trust)
    # each caller got its own copy, not one shared mutable object
    assert len({id(answer) for answer in answers}) == 16


# -- failures of the log -------------------------------------------------------------------


@pytest.mark.parametrize("status", [503, 429])
def test_one_failure_is_retried_then_answered(
    status: int, fresh_rekor: LocalSigstore, make_client: Callable[..., RekorClient]
) -> None:
    entry = new_entry(fresh_rekor)
    slept: list[float] = []
    client = make_client(retries=1, sleep=slept.append)
    fresh_rekor.requests.reset()
    fresh_rekor.server.fail_times = 1
    fresh_rekor.fail_with = status

    verified(client.entry_by_log_index(entry.log_index), entry, fresh_rekor.trust())
    assert fresh_rekor.requests.snapshot() == {"getLogEntryByIndex": 2}
    assert client.stats.snapshot()["retries"] == 1 and len(slept) == 1
    assert state(client) == "closed"
    assert client.entry_by_uuid(entry.uuid) is not None  # and it was cached
    assert fresh_rekor.requests.total == 2


def test_a_4xx_is_not_retried_and_not_cached(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    entry = new_entry(fresh_rekor)
    client = make_client(retries=2)
    fresh_rekor.requests.reset()
    fresh_rekor.server.fail_times = 1
    fresh_rekor.fail_with = 400
    with pytest.raises(TlogProtocolError) as info:
        client.entry_by_log_index(entry.log_index)
    assert info.value.reason == "http_400"
    assert fresh_rekor.requests.total == 1
    assert stored_keys(direct, prefix) == []
    verified(client.entry_by_log_index(entry.log_index), entry, fresh_rekor.trust())


def test_outage_opens_the_breaker_then_a_trial_request_closes_it(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
    clock: FakeClock,
) -> None:
    entry = new_entry(fresh_rekor)
    breaker = CircuitBreaker(failure_threshold=4, cooldown=30.0, clock=clock)
    client = make_client(retries=1, breaker=breaker, clock=clock, sleep=clock.sleep)
    fresh_rekor.requests.reset()
    fresh_rekor.fail_with = 503

    for expected_total in (2, 4):  # two lookups of two attempts each: 4 failures
        with pytest.raises(TlogUnavailable) as info:
            client.entry_by_log_index(entry.log_index)
        assert info.value.reason == "http_503"
        assert fresh_rekor.requests.total == expected_total
    assert state(client) == "open"

    # open: every kind of lookup fails at once, without a request
    refused: list[Callable[[], object]] = [
        lambda: client.entry_by_log_index(entry.log_index),
        lambda: client.entry_by_uuid(entry.uuid),
        lambda: client.search_by_hash(new_digest()),
        lambda: client.entries_by_uuids([entry.uuid]),
    ]
    for call in refused:
        with pytest.raises(TlogUnavailable) as info:
            call()
        assert info.value.reason == "breaker_open"
    assert fresh_rekor.requests.total == 4
    assert stored_keys(direct, prefix) == []  # errors are never cached

    # after the cool-down one trial goes out; the log still fails, so it opens again
    clock.advance(31.0)  # not exactly 30: float sums
    assert state(client) == "half_open"
    with pytest.raises(TlogUnavailable):
        client.entry_by_log_index(entry.log_index)
    assert fresh_rekor.requests.total == 5
    assert state(client) == "open"

    # the log recovers, but nothing is asked before the next cool-down has passed
    fresh_rekor.fail_with = None
    with pytest.raises(TlogUnavailable, match="circuit breaker open"):
        client.entry_by_log_index(entry.log_index)
    assert fresh_rekor.requests.total == 5
    clock.advance(31.0)  # not exactly 30: float sums
    verified(client.entry_by_log_index(entry.log_index), entry, fresh_rekor.trust())
    assert fresh_rekor.requests.total == 6
    assert state(client) == "closed"
    assert breaker.opened == 2
    assert client.search_by_hash(new_digest()) == []
    assert fresh_rekor.requests.total == 7


def test_a_log_slower_than_the_timeout_is_tlog_timeout(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    entry = new_entry(fresh_rekor)
    client = make_client(timeout=0.1, retries=1)
    fresh_rekor.requests.reset()
    fresh_rekor.delay = 0.45
    started = time.monotonic()
    with pytest.raises(TlogTimeout) as info:
        client.entry_by_uuid(entry.uuid)
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout"
    assert elapsed < 0.4  # two attempts of 0.1 s, not of 0.45 s
    assert fresh_rekor.requests.total == 2
    assert stored_keys(direct, prefix) == []
    # let the server's slow handlers finish (into closed sockets) while this test runs
    time.sleep(max(0.0, started + elapsed + 0.5 - time.monotonic()))

    fresh_rekor.delay = 0.0
    verified(client.entry_by_uuid(entry.uuid), entry, fresh_rekor.trust())
    assert fresh_rekor.requests.total == 3


# -- answers that are not the answer to the question ---------------------------------------


@pytest.mark.parametrize("kind", list(LOOKUPS))
def test_an_entry_whose_body_is_not_its_uuid_is_refused_and_not_cached(
    kind: str,
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    lookup, operation = LOOKUPS[kind]
    entry = new_entry(fresh_rekor)
    substitute = new_entry(fresh_rekor)  # a real body, just not this entry's
    client = make_client()
    fresh_rekor.requests.reset()
    fresh_rekor.log.tamper(entry.log_index, body=substitute.body)

    with pytest.raises(TlogProtocolError, match="not the leaf hash of its body") as info:
        lookup(client, entry)
    assert info.value.reason == "mismatch"
    assert stored_keys(direct, prefix) == []
    assert state(client) == "closed"  # the log answered: not an outage

    fresh_rekor.log.clear_tampering()
    verified(lookup(client, entry), entry, fresh_rekor.trust())
    assert fresh_rekor.requests.snapshot() == {operation: 2}


def test_an_entry_for_another_log_index_is_refused_and_not_cached(
    fresh_rekor: LocalSigstore,
    make_client: Callable[..., RekorClient],
    direct: redis.Redis,
    prefix: str,
) -> None:
    entry = new_entry(fresh_rekor)
    new_entry(fresh_rekor)
    client = make_client()
    fresh_rekor.requests.reset()
    serve_with_log_index(fresh_rekor, entry.log_index, entry.log_index + 1)

    with pytest.raises(TlogProtocolError, match=f"expected {entry.log_index}") as info:
        client.entry_by_log_index(entry.log_index)
    assert info.value.reason == "mismatch"
    assert stored_keys(direct, prefix) == []

    fresh_rekor.log.clear_tampering()
    verified(client.entry_by_log_index(entry.log_index), entry, fresh_rekor.trust())
    assert fresh_rekor.requests.snapshot() == {"getLogEntryByIndex": 2}


# -- Redis down ----------------------------------------------------------------------------


def test_lookups_work_uncached_when_redis_is_down(
    fresh_rekor: LocalSigstore, make_client: Callable[..., RekorClient]
) -> None:
    digest = new_digest()
    entry = fresh_rekor.signer.message_bundle(digest).entry
    trust = fresh_rekor.trust()
    nowhere = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens
    cache = RedisCache(nowhere, secret=SECRET, timeout=0.2)
    client = make_client(cache=cache)
    fresh_rekor.requests.reset()

    for _ in range(2):
        verified(client.entry_by_log_index(entry.log_index), entry, trust)
        verified(client.entry_by_uuid(entry.uuid), entry, trust)
        assert client.search_by_hash(digest) == [entry.uuid]
        verified(client.entries_by_uuids([entry.uuid])[entry.uuid], entry, trust)
        assert client.entry_by_log_index(10**12) is None
    assert fresh_rekor.requests.snapshot() == {
        "getLogEntryByIndex": 4,
        "getLogEntryByUUID": 2,
        "searchIndex": 2,
        "searchLogQuery": 2,
    }
    assert not cache.healthy()
    assert cache.stats.errors > 0
    assert client.stats.snapshot()["errors"] == 0
    assert state(client) == "closed"
