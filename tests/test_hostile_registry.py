"""The hostile registry does what its docstring says, within its bounds."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.hostile_registry import OCI_INDEX, HostileRegistry, SlowClient, sha256_digest
from tests.oci import ALL_MANIFEST_TYPES, Pusher


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    with HostileRegistry(drip_interval=0.05, max_hold=5.0, huge_bytes=64 * 1024) as server:
        yield server


def raw_get(host: str, path: str, method: str = "GET") -> socket.socket:
    """A connection with one request sent on it."""
    address, port = host.rsplit(":", 1)
    sock = socket.create_connection((address, int(port)), timeout=10)
    sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    return sock


def read_until(sock: socket.socket, marker: bytes, limit: float) -> tuple[bytes, float]:
    """What arrived until `marker` (or the connection ended), and how long it took."""
    started = time.monotonic()
    data = b""
    sock.settimeout(limit)
    while marker not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - started


def test_a_plain_repository_takes_a_push_and_serves_it(hostile: HostileRegistry) -> None:
    with Pusher(hostile.url) as pusher:
        image = pusher.image("plain/app", "v1", layer=b"layer bytes")
        got = pusher.get_manifest("plain/app", "v1")
        assert got.status_code == 200
        assert sha256_digest(got.content) == image.digest
        assert got.headers["docker-content-digest"] == image.digest
        assert pusher.get_manifest("plain/app", image.digest).content == got.content
        assert pusher.get_manifest("plain/app", "absent").status_code == 404
    with httpx.Client(base_url=hostile.url) as client:
        assert client.get(f"/v2/plain/app/referrers/{image.digest}").status_code == 404
        assert client.get(f"/v2/plain/app/blobs/{sha256_digest(b'layer bytes')}").content == (
            b"layer bytes"
        )


def test_drip_headers_sends_the_head_a_byte_at_a_time(hostile: HostileRegistry) -> None:
    with raw_get(hostile.host, "/v2/drip-headers/app/manifests/v1", "HEAD") as sock:
        head, took = read_until(sock, b"\r\n\r\n", 10)
    assert head.startswith(b"HTTP/1.1 404")
    assert took >= 0.8 * 0.05 * len(head)  # one byte per interval, give or take the clock


def test_drip_body_sends_headers_at_once_and_the_body_slowly(hostile: HostileRegistry) -> None:
    with raw_get(hostile.host, "/v2/drip-body/app/manifests/v1") as sock:
        head, head_took = read_until(sock, b"\r\n\r\n", 10)
        assert head_took < 0.5
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body, body_took = read_until(sock, b"}]}", 10)
    assert len(body) >= length - 1  # what came with the head was at most a byte
    assert body_took >= 0.8 * 0.05 * (length - 1)


def test_silent_never_answers_and_stop_ends_the_hold(hostile: HostileRegistry) -> None:
    with raw_get(hostile.host, "/v2/silent/app/manifests/v1") as sock:
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recv(1)
        assert hostile.holding == 1
        started = time.monotonic()
        hostile.stop()
        assert hostile.holding == 0
        assert time.monotonic() - started < 2
        sock.settimeout(2)
        assert sock.recv(1) == b""  # closed, not answered


def test_holds_are_bounded_by_max_hold() -> None:
    with (
        HostileRegistry(max_hold=0.3) as hostile,
        raw_get(hostile.host, "/v2/silent/app/manifests/v1") as sock,
    ):
        data, took = read_until(sock, b"\r\n", 5)
    assert data == b""
    assert 0.25 <= took < 2


@pytest.mark.parametrize("as_date", [False, True])
def test_throttle_answers_429_with_retry_after_then_serves(as_date: bool) -> None:
    with HostileRegistry(throttle_count=2, retry_after=3, retry_after_date=as_date) as hostile:
        with hostile.calm(), Pusher(hostile.url) as pusher:
            image = pusher.image("throttle/app", "v1", layer=b"x")
        hostile.reset()
        with httpx.Client(base_url=hostile.url, headers={"accept": ALL_MANIFEST_TYPES}) as client:
            answers = [client.get("/v2/throttle/app/manifests/v1") for _ in range(3)]
    assert [a.status_code for a in answers] == [429, 429, 200]
    retry_after = answers[0].headers["retry-after"]
    if as_date:
        when = email.utils.parsedate_to_datetime(retry_after).timestamp()
        assert 1 < when - time.time() <= 4
    else:
        assert retry_after == "3"
    assert sha256_digest(answers[2].content) == image.digest
    assert hostile.throttled["throttle/app"] == 2


def test_huge_serves_distinct_indexes_of_the_size_asked(hostile: HostileRegistry) -> None:
    with httpx.Client(base_url=hostile.url) as client:
        one = client.get("/v2/huge/app/manifests/v1")
        two = client.get("/v2/huge/app/manifests/v2")
        head = client.head("/v2/huge/app/manifests/v1")
        by_digest = client.get(f"/v2/huge/app/manifests/{head.headers['docker-content-digest']}")
        signatures = client.get("/v2/huge/app/manifests/" + "sha256-" + "ab" * 32 + ".sig")
    assert one.headers["content-type"] == OCI_INDEX
    assert 60 * 1024 <= len(one.content) <= 64 * 1024
    assert sha256_digest(one.content) != sha256_digest(two.content)
    assert by_digest.content == one.content
    assert int(head.headers["content-length"]) == len(one.content)
    index = json.loads(one.content)
    assert len(index["manifests"]) > 250
    assert {"os", "architecture", "variant"} <= set(index["manifests"][0]["platform"])
    assert signatures.status_code == 404


def test_slow_client_sends_a_byte_per_interval_and_reads_the_answer(
    hostile: HostileRegistry,
) -> None:
    address, port = hostile.host.rsplit(":", 1)
    request = b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n"
    client = SlowClient(address, int(port), interval=0.02, max_seconds=10, request=request)
    line, took = client.run()
    assert line == "HTTP/1.1 200 OK"
    assert took >= 0.8 * 0.02 * (len(request) - 1)


def test_throttle_every_so_many_requests() -> None:
    with HostileRegistry(throttle_every=3, retry_after=0) as hostile:
        with hostile.calm(), Pusher(hostile.url) as pusher:
            pusher.image("throttle/app", "v1", layer=b"x")
        with httpx.Client(base_url=hostile.url, headers={"accept": ALL_MANIFEST_TYPES}) as client:
            statuses = [client.get("/v2/throttle/app/manifests/v1").status_code for _ in range(7)]
    assert statuses == [200, 200, 429, 200, 200, 429, 200]
