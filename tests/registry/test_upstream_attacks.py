"""The registry client against the hostile registry: what a registry an image reference names can
make it do, and what it cannot."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from service.registry import (
    RegistryCircuitOpen,
    RegistryTimeout,
    Unavailable,
    parse_reference,
)
from tests.hostile_registry import HostileRegistry
from tests.oci import Pusher
from tests.registry.conftest import ClientFactory

SLACK = 1.5


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    with HostileRegistry(drip_interval=0.05, max_hold=20, throttle_count=2, retry_after=1) as s:
        yield s


def test_dripped_headers_end_at_the_request_timeout(
    hostile: HostileRegistry, make_client: ClientFactory
) -> None:
    """Every byte comes well within a read timeout; a 90-byte head at 20 bytes a second would
    take 4.5 s. The timeout is for the whole exchange."""
    client = make_client(hostile.host, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(RegistryTimeout, match="deadline"):
        client.resolve(parse_reference(f"{hostile.host}/drip-headers/app:v1"))
    assert time.monotonic() - started < 0.5 + SLACK


@pytest.mark.parametrize("as_date", [False, True])
def test_429_with_retry_after_is_waited_out_then_answered(
    make_client: ClientFactory, as_date: bool
) -> None:
    with HostileRegistry(throttle_count=2, retry_after=1, retry_after_date=as_date) as server:
        with server.calm(), Pusher(server.url) as pusher:
            image = pusher.image("throttle/app", "v1", layer=b"throttled")
        server.reset()
        resolved = make_client(server.host).resolve(
            parse_reference(f"{server.host}/throttle/app:v1")
        )
        assert resolved.digest == image.digest
        assert server.throttled == {"throttle/app": 2}  # HEAD of the tag refused twice


def test_a_registry_still_throttling_after_the_retries_is_unavailable(
    make_client: ClientFactory,
) -> None:
    with HostileRegistry(throttle_count=10, retry_after=0) as server:
        with pytest.raises(Unavailable, match=r"rate limited \(429\)"):
            make_client(server.host, retries=1).get_manifest(
                parse_reference(f"{server.host}/throttle/app:v1")
            )
        assert server.throttled["throttle/app"] == 2


def test_a_failing_host_is_shed_by_its_own_breaker(make_client: ClientFactory) -> None:
    with HostileRegistry(max_hold=10) as failing, HostileRegistry() as healthy:
        with Pusher(healthy.url) as pusher:
            pusher.image("plain/app", "v1", layer=b"fine")
        client = make_client(failing.host, healthy.host, timeout=0.3, breaker_failures=2)
        bad = parse_reference(f"{failing.host}/silent/app:v1")
        for _ in range(2):
            with pytest.raises(RegistryTimeout):
                client.resolve(bad)
        failing.reset()
        started = time.monotonic()
        with pytest.raises(RegistryCircuitOpen, match="circuit breaker open") as info:
            client.resolve(bad)
        assert time.monotonic() - started < 0.1  # not asked: no time spent
        assert info.value.host == failing.host
        assert 25 < info.value.retry_in <= 30
        assert sum(failing.requests.values()) == 0
        assert client.resolve(parse_reference(f"{healthy.host}/plain/app:v1")).manifest
        assert client.breaker_state == "open"
