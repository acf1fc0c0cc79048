"""The Rekor client against a scripted in-process log (`httpx.MockTransport`).

These pin down the client's own logic: shape checks, caching rules, retry classification,
backoff and the breaker, on an injected clock with no real sleeping. The same behaviours are
exercised end to end against the real local Rekor and a real Redis in `test_rekor_local.py`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
import pytest

from service.cache import MemoryCache
from service.tlog import (
    CircuitBreaker,
    RekorClient,
    TlogProtocolError,
    TlogTimeout,
    TlogUnavailable,
)
from service.tlog.rekor import check_entry
from tests.tlog.helpers import FakeClock, ScriptedLog, make_entry

BASE = "http://rekor.test"
ORIGIN = "rekor.test"


def state(client: RekorClient) -> str:
    """The breaker state as a plain string (mypy would narrow the Literal across calls)."""
    return client.breaker_state


@pytest.fixture
def rekor() -> ScriptedLog:
    log = ScriptedLog()
    log.add(*(make_entry(i, payload=f"artifact-{i}") for i in range(5)))
    return log


@pytest.fixture
def cache(clock: FakeClock) -> MemoryCache:
    return MemoryCache(clock=clock)


def client_for(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock, **kwargs: Any
) -> RekorClient:
    kwargs.setdefault("jitter", lambda: 1.0)
    return RekorClient(
        BASE,
        cache,
        clock=clock,
        sleep=clock.sleep,
        transport=rekor.transport(),
        **kwargs,
    )


@pytest.fixture
def client(rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock) -> RekorClient:
    return client_for(rekor, cache, clock)


# -- lookups and their cache ---------------------------------------------------------------


def test_entry_by_log_index_returns_rekors_object(client: RekorClient, rekor: ScriptedLog) -> None:
    _, document = rekor.entries[3]
    assert client.entry_by_log_index(3) == document
    (request,) = rekor.requests
    assert request.method == "GET"
    assert request.url.path == "/api/v1/log/entries"
    assert request.url.params["logIndex"] == "3"
    assert request.headers["accept"] == "application/json"


def test_entry_cached_under_both_keys(
    client: RekorClient, rekor: ScriptedLog, cache: MemoryCache
) -> None:
    uuid, document = rekor.entries[2]
    client.entry_by_log_index(2)
    for key in (f"rekor:idx:{ORIGIN}:2", f"rekor:uuid:{ORIGIN}:{uuid}"):
        raw = cache.get(key)
        assert raw is not None
        assert json.loads(raw) == document
    assert client.entry_by_uuid(uuid) == document
    assert client.entry_by_log_index(2) == document
    assert len(rekor.requests) == 1
    assert client.stats.snapshot()["hits"] == 2


def test_entry_by_uuid_accepts_uuid_and_entry_id(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    tree_id = "24296fb24b8ad77a"
    uuid, document = make_entry(7, tree_id=tree_id)
    rekor.add((uuid, document))
    client = client_for(rekor, cache, clock)
    assert client.entry_by_uuid((tree_id + uuid).upper()) == document
    assert rekor.requests[0].url.path == f"/api/v1/log/entries/{tree_id}{uuid}"
    assert client.entry_by_uuid(uuid) == document  # same leaf hash: from the cache
    assert client.entry_by_log_index(7) == document
    assert len(rekor.requests) == 1


def test_entry_id_with_another_tree_id_is_refused(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    uuid, document = make_entry(7, tree_id="24296fb24b8ad77a")
    rekor.add((uuid, document))
    client = client_for(rekor, cache, clock)
    with pytest.raises(TlogProtocolError, match="expected 1111111111111111"):
        client.entry_by_uuid("1111111111111111" + uuid)


def test_search_by_hash(client: RekorClient, rekor: ScriptedLog, clock: FakeClock) -> None:
    digest = "ab" * 32
    rekor.searches[digest] = ["CD" * 32, "24296fb24b8ad77a" + "ef" * 32]
    assert client.search_by_hash("sha256:" + digest.upper()) == [
        "cd" * 32,
        "24296fb24b8ad77a" + "ef" * 32,
    ]
    (request,) = rekor.requests
    assert request.method == "POST"
    assert request.url.path == "/api/v1/index/retrieve"
    assert json.loads(request.content) == {"hash": f"sha256:{digest}"}
    client.search_by_hash(digest)
    assert len(rekor.requests) == 1
    clock.advance(60)
    client.search_by_hash(digest)
    assert len(rekor.requests) == 2


def test_empty_search_is_cached_briefly(
    client: RekorClient, rekor: ScriptedLog, clock: FakeClock
) -> None:
    assert client.search_by_hash("00" * 32) == []
    client.search_by_hash("00" * 32)
    assert len(rekor.requests) == 1
    clock.advance(5)
    client.search_by_hash("00" * 32)
    assert len(rekor.requests) == 2


def test_not_found_is_cached_briefly(
    client: RekorClient, rekor: ScriptedLog, clock: FakeClock
) -> None:
    assert client.entry_by_log_index(99) is None
    assert client.entry_by_log_index(99) is None
    assert client.entry_by_uuid("99" * 32) is None
    assert client.entry_by_uuid("99" * 32) is None
    assert len(rekor.requests) == 2
    clock.advance(4.9)
    client.entry_by_log_index(99)
    assert len(rekor.requests) == 2
    clock.advance(0.1)
    assert client.entry_by_log_index(99) is None
    assert len(rekor.requests) == 3
    assert client.stats.snapshot()["not_found"] == 3


def test_not_found_then_appears(client: RekorClient, rekor: ScriptedLog, clock: FakeClock) -> None:
    assert client.entry_by_log_index(5) is None
    uuid, document = make_entry(5)
    rekor.add((uuid, document))
    clock.advance(5)
    assert client.entry_by_log_index(5) == document


def test_entry_without_inclusion_proof_is_cached_briefly(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    rekor.add(make_entry(8, with_proof=False))
    client = client_for(rekor, cache, clock, unproven_ttl=60)
    client.entry_by_log_index(8)
    clock.advance(59)
    client.entry_by_log_index(8)
    assert len(rekor.requests) == 1
    clock.advance(1)
    client.entry_by_log_index(8)
    assert len(rekor.requests) == 2


def test_entry_with_proof_is_cached_long(
    client: RekorClient, rekor: ScriptedLog, clock: FakeClock
) -> None:
    client.entry_by_log_index(1)
    clock.advance(29 * 24 * 3600)
    client.entry_by_log_index(1)
    assert len(rekor.requests) == 1


def test_each_caller_gets_its_own_copy(client: RekorClient) -> None:
    first = client.entry_by_log_index(1)
    assert first is not None
    first.clear()
    assert client.entry_by_log_index(1)


def test_concurrent_identical_lookups_go_out_once(client: RekorClient, rekor: ScriptedLog) -> None:
    rekor.gate = threading.Event()
    results: list[dict[str, Any] | None] = []
    lock = threading.Lock()

    def look() -> None:
        entry = client.entry_by_log_index(4)
        with lock:
            results.append(entry)

    threads = [threading.Thread(target=look) for _ in range(12)]
    for thread in threads:
        thread.start()
    # let every thread reach the single flight before the log answers
    deadline = threading.Event()
    while len(rekor.requests) < 1:
        deadline.wait(0.005)
    deadline.wait(0.1)
    rekor.gate.set()
    for thread in threads:
        thread.join()
    assert len(rekor.requests) == 1
    assert results == [rekor.entries[4][1]] * 12
    assert client.stats.snapshot()["misses"] == 12  # all were in flight together


def test_entries_by_uuids_batches_and_uses_the_cache(
    client: RekorClient, rekor: ScriptedLog
) -> None:
    uuids = [rekor.entries[i][0] for i in range(5)]
    client.entry_by_log_index(0)
    absent = "77" * 32
    found = client.entries_by_uuids([*uuids, absent])
    assert found == {u: rekor.entries[i][1] for i, u in enumerate(uuids)} | {absent: None}
    (batch,) = [r for r in rekor.requests if r.url.path == "/api/v1/log/entries/retrieve"]
    assert sorted(json.loads(batch.content)["entryUUIDs"]) == sorted([*uuids[1:], absent])
    assert client.entry_by_log_index(3) == rekor.entries[3][1]
    assert len(rekor.requests) == 2


# -- an answer must be the answer to the question ------------------------------------------


def _other(document: dict[str, Any], **changes: Any) -> dict[str, Any]:
    ((key, value),) = document.items()
    return {key: value | changes}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"[]", "expected a JSON object"),
        (b"not json", "not JSON"),
        (b"{}", "exactly one entry"),
        (json.dumps({"xyz": {}}).encode(), "not 64 or 80 hex"),
        (json.dumps({"ab" * 32: []}).encode(), "expected an object"),
    ],
)
def test_malformed_answers_are_protocol_errors(
    client: RekorClient, rekor: ScriptedLog, answer: bytes, message: str
) -> None:
    rekor.override = answer
    with pytest.raises(TlogProtocolError, match=message):
        client.entry_by_log_index(1)


def test_answer_for_another_index_is_refused(client: RekorClient, rekor: ScriptedLog) -> None:
    rekor.override = json.dumps(rekor.entries[2][1]).encode()
    with pytest.raises(TlogProtocolError, match="logIndex 2, expected 1"):
        client.entry_by_log_index(1)


def test_answer_for_another_uuid_is_refused(client: RekorClient, rekor: ScriptedLog) -> None:
    rekor.override = json.dumps(rekor.entries[2][1]).encode()
    with pytest.raises(TlogProtocolError, match="expected"):
        client.entry_by_uuid(rekor.entries[1][0])


def test_uuid_that_is_not_the_leaf_hash_is_refused(
    client: RekorClient, rekor: ScriptedLog, cache: MemoryCache
) -> None:
    _, document = rekor.entries[1]
    other_body = rekor.entries[2][1][rekor.entries[2][0]]["body"]
    rekor.override = json.dumps(_other(document, body=other_body)).encode()
    with pytest.raises(TlogProtocolError, match="not the leaf hash"):
        client.entry_by_log_index(1)
    assert cache.get(f"rekor:idx:{ORIGIN}:1") is None  # errors are never cached


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("body", None, "body is missing"),
        ("body", "***", "not base64"),
        ("logIndex", -1, "logIndex"),
        ("logIndex", True, "logIndex"),
        ("integratedTime", "now", "integratedTime"),
        ("logID", 5, "logID"),
        ("verification", "x", "verification"),
    ],
)
def test_field_shapes_are_checked(field: str, value: object, message: str) -> None:
    _, document = make_entry(1)
    with pytest.raises(TlogProtocolError, match=message):
        check_entry(_other(document, **{field: value}))


def test_tampered_cache_value_is_rejected_and_refetched(
    client: RekorClient, rekor: ScriptedLog, cache: MemoryCache
) -> None:
    key = f"rekor:idx:{ORIGIN}:1"
    cache.set(key, json.dumps(rekor.entries[2][1]).encode(), 3600)  # another entry
    assert client.entry_by_log_index(1) == rekor.entries[1][1]
    assert len(rekor.requests) == 1
    assert client.stats.snapshot()["rejected"] == 1
    raw = cache.get(key)
    assert raw is not None
    assert json.loads(raw) == rekor.entries[1][1]  # repaired


def test_tampered_body_under_uuid_key_is_rejected(
    client: RekorClient, rekor: ScriptedLog, cache: MemoryCache
) -> None:
    uuid, document = rekor.entries[1]
    forged = _other(document, body=rekor.entries[2][1][rekor.entries[2][0]]["body"])
    cache.set(f"rekor:uuid:{ORIGIN}:{uuid}", json.dumps(forged).encode(), 3600)
    cache.set(f"rekor:search:{ORIGIN}:{'aa' * 32}", b"{not a list", 3600)
    assert client.entry_by_uuid(uuid) == document
    assert client.search_by_hash("aa" * 32) == []
    assert client.stats.snapshot()["rejected"] == 2


@pytest.mark.parametrize("bad", ["", "abc", "g" * 64, "ab" * 33, 5])
def test_bad_uuids_are_value_errors(client: RekorClient, bad: Any) -> None:
    with pytest.raises(ValueError, match="64 or 80 hex"):
        client.entry_by_uuid(bad)


@pytest.mark.parametrize("bad", [-1, True, "1", 1.0])
def test_bad_indexes_are_value_errors(client: RekorClient, bad: Any) -> None:
    with pytest.raises(ValueError, match="log index"):
        client.entry_by_log_index(bad)


def test_bad_digest_is_a_value_error(client: RekorClient) -> None:
    with pytest.raises(ValueError, match="sha256"):
        client.search_by_hash("sha512:" + "ab" * 32)


def test_bad_base_url() -> None:
    with pytest.raises(ValueError, match="rekor url"):
        RekorClient("ftp://rekor", MemoryCache())


def test_origin_keeps_port_and_path(cache: MemoryCache) -> None:
    assert RekorClient("https://Rekor.Example:8443/log/", cache).origin == "rekor.example:8443/log"


# -- retries, timeouts and the breaker -------------------------------------------------------


def test_5xx_is_retried_with_exponential_backoff(
    client: RekorClient, rekor: ScriptedLog, clock: FakeClock
) -> None:
    rekor.script = [503, 502]
    assert client.entry_by_log_index(1) == rekor.entries[1][1]
    assert len(rekor.requests) == 3
    assert clock.slept == [0.1, 0.2]
    assert client.stats.snapshot()["retries"] == 2
    assert state(client) == "closed"


def test_jitter_spreads_the_delay(rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock) -> None:
    client = client_for(rekor, cache, clock, jitter=lambda: 0.0, backoff=1.0, retries=3)
    rekor.script = [500, 500, 500]
    client.entry_by_log_index(1)
    assert clock.slept == [0.5, 1.0, 1.0]  # half the exponential delay, capped at max_backoff


def test_429_honours_retry_after_up_to_the_cap(
    client: RekorClient, rekor: ScriptedLog, clock: FakeClock
) -> None:
    rekor.script = [429, 429]
    rekor.headers = {"Retry-After": "1"}
    client.entry_by_log_index(1)
    assert clock.slept == [1.0, 1.0]
    rekor.script = [429]
    rekor.headers = {"Retry-After": "3600"}
    clock.slept.clear()
    client.entry_by_log_index(2)
    assert clock.slept == [2.0]


@pytest.mark.parametrize("status", [400, 401, 403, 422])
def test_4xx_is_not_retried(client: RekorClient, rekor: ScriptedLog, status: int) -> None:
    rekor.script = [status]
    with pytest.raises(TlogProtocolError, match=f"answered {status}"):
        client.entry_by_log_index(1)
    assert len(rekor.requests) == 1
    assert client.breaker.consecutive_failures == 0


def test_outage_raises_unavailable_and_is_not_cached(
    client: RekorClient, rekor: ScriptedLog, cache: MemoryCache
) -> None:
    rekor.script = [503, 503, 503]
    with pytest.raises(TlogUnavailable, match="answered 503") as info:
        client.entry_by_log_index(1)
    assert info.value.reason == "http_503"
    assert len(rekor.requests) == 3
    assert client.stats.snapshot()["errors"] == 1
    assert cache.get(f"rekor:idx:{ORIGIN}:1") is None
    assert client.entry_by_log_index(1) == rekor.entries[1][1]


def test_timeouts_raise_tlog_timeout(client: RekorClient, rekor: ScriptedLog) -> None:
    rekor.script = [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.ReadTimeout("x")]
    with pytest.raises(TlogTimeout, match=r"did not answer within 3\.0s") as info:
        client.entry_by_uuid(rekor.entries[1][0])
    assert info.value.reason == "timeout"
    assert len(rekor.requests) == 3


def test_connect_errors_are_retried(client: RekorClient, rekor: ScriptedLog) -> None:
    rekor.script = [httpx.ConnectError("refused"), httpx.RemoteProtocolError("eof")]
    assert client.search_by_hash("ab" * 32) == []
    rekor.script = [httpx.ConnectError("refused")] * 3
    with pytest.raises(TlogUnavailable, match="unreachable: ConnectError") as info:
        client.search_by_hash("cd" * 32)
    assert info.value.reason == "connect"


def test_breaker_opens_then_half_opens_then_closes(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    breaker = CircuitBreaker(failure_threshold=5, cooldown=30, clock=clock)
    client = client_for(rekor, cache, clock, breaker=breaker)
    rekor.script = [503] * 5
    with pytest.raises(TlogUnavailable, match="answered 503"):
        client.entry_by_log_index(1)  # three attempts
    with pytest.raises(TlogUnavailable, match="circuit breaker open") as info:
        client.entry_by_log_index(1)  # two more attempts open it; the third is refused
    assert info.value.reason == "breaker_open"
    assert state(client) == "open"
    assert len(rekor.requests) == 5
    with pytest.raises(TlogUnavailable, match="circuit breaker open"):
        client.entry_by_log_index(2)
    assert len(rekor.requests) == 5  # refused without asking
    clock.advance(30)
    assert state(client) == "half_open"
    assert client.entry_by_log_index(2) == rekor.entries[2][1]  # the probe
    assert state(client) == "closed"


def test_cache_answers_while_the_breaker_is_open(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    client = client_for(rekor, cache, clock, breaker=CircuitBreaker(1, 30, clock=clock))
    client.entry_by_log_index(1)
    rekor.script = [503]
    with pytest.raises(TlogUnavailable):
        client.entry_by_log_index(2)
    assert state(client) == "open"
    assert client.entry_by_log_index(1) == rekor.entries[1][1]


def test_failed_probe_reopens(rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock) -> None:
    client = client_for(rekor, cache, clock, breaker=CircuitBreaker(1, 30, clock=clock))
    rekor.script = [503, 503]
    with pytest.raises(TlogUnavailable, match="circuit breaker open"):
        client.entry_by_log_index(1)
    clock.advance(30)
    with pytest.raises(TlogUnavailable, match="circuit breaker open"):
        client.entry_by_log_index(1)  # probe fails, the retry is refused
    assert state(client) == "open"
    assert len(rekor.requests) == 2


def test_oversized_answer_is_refused(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    client = client_for(rekor, cache, clock, max_response_bytes=100)
    with pytest.raises(TlogProtocolError, match="unreadable answer"):
        client.entry_by_log_index(1)
    assert len(rekor.requests) == 1


def test_no_retries_means_one_attempt(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    client = client_for(rekor, cache, clock, retries=0)
    rekor.script = [500]
    with pytest.raises(TlogUnavailable):
        client.entry_by_log_index(1)
    assert len(rekor.requests) == 1
    assert clock.slept == []


def test_a_log_that_drips_its_answer_times_out(
    rekor: ScriptedLog, cache: MemoryCache, clock: FakeClock
) -> None:
    answer = rekor.handle

    def slow(request: httpx.Request) -> httpx.Response:
        response = answer(request)
        clock.advance(3.5)  # headers in time, the body too late
        return response

    rekor.handle = slow  # type: ignore[method-assign]
    client = client_for(rekor, cache, clock, retries=0, timeout=3.0)
    with pytest.raises(TlogTimeout):
        client.entry_by_log_index(1)
