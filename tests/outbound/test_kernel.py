"""The outbound kernel against the hostile registry on real sockets, and its pure parts.

Each attack is bounded by the hostile registry's `max_hold`; every assertion on time is one of
the kernel's own bounds (the exchange's deadline, the request's), with room for a loaded
machine.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from service.outbound import (
    CircuitOpen,
    DeadlineExceeded,
    HostBusy,
    HttpKernel,
    KernelConfig,
    ProtocolFailure,
    ResponseTooLarge,
    RetryPolicy,
    Scope,
    UpstreamTimeout,
    UpstreamUnreachable,
    deadline,
)
from service.outbound.kernel import host_of, retry_after_seconds
from tests.hostile_registry import HostileRegistry
from tests.oci import Pusher
from tests.registry.helpers import HTTPServer, Reply
from tests.servers import free_port

SLACK = 1.5  # seconds a loaded machine may add to a bound


@pytest.fixture
def hostile() -> Iterator[HostileRegistry]:
    with HostileRegistry(drip_interval=0.05, max_hold=20, throttle_count=2) as server:
        yield server


def kernel(**config: object) -> HttpKernel:
    options: dict[str, object] = {"timeout": 1.0, **config}
    return HttpKernel(KernelConfig(**options))  # type: ignore[arg-type]


def url(server: HostileRegistry, repo: str, ref: str = "v1") -> str:
    return f"{server.url}/v2/{repo}/manifests/{ref}"


def elapsed(fn: object) -> float:
    started = time.monotonic()
    assert callable(fn)
    fn()
    return time.monotonic() - started


# -- (1): a deadline over the whole exchange ---------------------------------------------------


@pytest.mark.parametrize("repo", ["drip-headers/app", "drip-body/app", "silent/app"])
def test_a_drip_or_silence_ends_at_the_exchange_deadline(
    hostile: HostileRegistry, repo: str
) -> None:
    """Each byte is in time for a per-read timeout; the whole answer is not."""
    client = kernel(timeout=0.6)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout) as info:
        client.exchange("GET", url(hostile, repo), limit=1 << 20)
    took = time.monotonic() - started
    assert 0.5 <= took < 0.6 + SLACK
    assert info.value.host == host_of(httpx.URL(hostile.url))
    assert info.value.timeout and info.value.status == 504


def test_the_request_deadline_cuts_an_exchange_short(hostile: HostileRegistry) -> None:
    client = kernel(timeout=10.0)
    with deadline.scoped(Scope.starting(0.5)), pytest.raises(DeadlineExceeded) as info:
        client.exchange("HEAD", url(hostile, "drip-headers/app"), limit=0)
    assert info.value.reason == "deadline"


def test_cancelling_the_request_stops_an_exchange_at_its_next_read(
    hostile: HostileRegistry,
) -> None:
    client = kernel(timeout=10.0)
    scope = Scope.starting(10.0)
    threading.Timer(0.3, scope.cancel).start()
    started = time.monotonic()
    with deadline.scoped(scope), pytest.raises(DeadlineExceeded):
        client.exchange("GET", url(hostile, "drip-body/app"), limit=1 << 20)
    assert time.monotonic() - started < 0.3 + SLACK


def test_no_exchange_starts_once_the_request_is_over(hostile: HostileRegistry) -> None:
    scope = Scope.starting(5.0)
    scope.cancel()
    hostile.reset()
    with deadline.scoped(scope), pytest.raises(DeadlineExceeded):
        kernel().exchange("GET", url(hostile, "plain/app"), limit=1024)
    assert sum(hostile.requests.values()) == 0


def test_a_copied_context_carries_the_scope_to_another_thread(hostile: HostileRegistry) -> None:
    import contextvars

    client = kernel(timeout=10.0)
    with deadline.scoped(Scope.starting(0.4)), ThreadPoolExecutor(1) as pool:
        job = pool.submit(
            contextvars.copy_context().run,
            client.exchange,
            "GET",
            url(hostile, "silent/app"),
            limit=1024,
        )
        with pytest.raises(DeadlineExceeded):
            job.result(timeout=0.4 + SLACK)


# -- (2): connections per host -----------------------------------------------------------------


def test_one_stuck_host_holds_only_its_own_slots() -> None:
    with (
        HostileRegistry(max_hold=10) as stuck,
        HostileRegistry() as healthy,
        Pusher(healthy.url) as pusher,
    ):
        pusher.image("plain/app", "v1", layer=b"x")
        client = kernel(timeout=5.0, host_connections=2, retry=RetryPolicy(retries=0))
        with ThreadPoolExecutor(2) as pool:
            held = [
                pool.submit(client.exchange, "GET", url(stuck, f"silent/a{i}"), limit=1024)
                for i in range(2)
            ]
            time.sleep(0.3)  # both slots of the stuck host are taken now
            with deadline.scoped(Scope.starting(0.5)), pytest.raises(DeadlineExceeded):
                client.exchange("GET", url(stuck, "silent/a2"), limit=1024)
            took = elapsed(lambda: client.exchange("GET", url(healthy, "plain/app"), limit=4096))
            assert took < SLACK  # the other host is not queued behind the stuck one
            stuck.release()
            for future in held:
                with pytest.raises(UpstreamUnreachable):
                    future.result(timeout=5)


def test_a_host_whose_slots_stay_taken_is_busy_not_failing(hostile: HostileRegistry) -> None:
    client = kernel(timeout=0.4, host_connections=1)
    slots = client._host(host_of(httpx.URL(hostile.url))).slots  # held, as by a stuck exchange
    assert slots.acquire(timeout=1)
    try:
        with pytest.raises(HostBusy, match="1 exchanges with"):
            client.exchange("GET", url(hostile, "plain/app"), limit=1024)
    finally:
        slots.release()
    assert client.breaker_for(hostile.url).consecutive_failures == 0  # it was never asked
    assert client.exchange("GET", url(hostile, "plain/app"), limit=1024).status == 404


# -- (3): retries and Retry-After --------------------------------------------------------------


@pytest.mark.parametrize("as_date", [False, True])
def test_429_with_retry_after_then_200(as_date: bool) -> None:
    waited: list[float] = []
    with HostileRegistry(throttle_count=2, retry_after=2, retry_after_date=as_date) as server:
        with server.calm(), Pusher(server.url) as pusher:
            pusher.image("throttle/app", "v1", layer=b"x")
        server.reset()
        client = HttpKernel(KernelConfig(timeout=2.0), sleep=waited.append, jitter=lambda: 0.0)
        answer = client.exchange("GET", url(server, "throttle/app"), limit=4096)
    assert answer.status == 200
    assert len(waited) == 2
    for wait in waited:  # what the server asked for (a date has whole seconds: 1 to 2 left)
        assert (1.0 <= wait <= 2.0) if as_date else wait == 2.0


def test_a_retry_after_that_does_not_fit_the_request_is_not_waited_for() -> None:
    waited: list[float] = []
    with HostileRegistry(throttle_count=5, retry_after=30) as server:
        with server.calm(), Pusher(server.url) as pusher:
            pusher.image("throttle/app", "v1", layer=b"x")
        server.reset()
        client = HttpKernel(KernelConfig(timeout=2.0), sleep=waited.append)
        with deadline.scoped(Scope.starting(5.0)):
            answer = client.exchange("GET", url(server, "throttle/app"), limit=4096)
    assert answer.status == 429  # the last answer stands; the caller maps it
    assert waited == []
    assert server.throttled["throttle/app"] == 1


def test_backoff_is_exponential_with_jitter_and_only_for_retried_statuses() -> None:
    statuses = iter([503, 502, 200, 500])

    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        return next(statuses), {}, b"{}"

    waited: list[float] = []
    policy = RetryPolicy(retries=2, backoff=0.2, max_backoff=5.0)
    with HTTPServer(route) as server:
        client = HttpKernel(
            KernelConfig(timeout=2.0, retry=policy), sleep=waited.append, jitter=lambda: 1.0
        )
        assert client.exchange("GET", f"{server.url}/x", limit=64).status == 200
        assert waited == [0.2, 0.4]
        assert client.exchange("GET", f"{server.url}/x", limit=64).status == 500  # not retried
    assert len(server.requests) == 4


def test_connection_errors_are_retried_then_unreachable() -> None:
    waited: list[float] = []
    client = HttpKernel(KernelConfig(timeout=1.0), sleep=waited.append)
    with pytest.raises(UpstreamUnreachable) as info:
        client.exchange("GET", f"http://127.0.0.1:{free_port()}/x", limit=64)
    assert info.value.cause == "ConnectError"
    assert len(waited) == 2


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after_seconds("7", lambda: now) == 7.0
    date = email.utils.formatdate(now + 90, usegmt=True)
    assert retry_after_seconds(date, lambda: now) == pytest.approx(90, abs=1)
    past = email.utils.formatdate(now - 90, usegmt=True)
    assert retry_after_seconds(past, lambda: now) == 0.0
    for unreadable in (None, "", "soon", "-3", "1.5e9"):
        assert retry_after_seconds(unreadable, lambda: now) is None


def test_a_retry_after_is_capped_or_honoured_whole() -> None:
    honour = RetryPolicy(backoff=0.2, max_backoff=5.0)
    capped = RetryPolicy(backoff=0.2, max_backoff=2.0, retry_after_cap=2.0)
    assert honour.delay(1, 30.0, jitter=0.0) == 30.0
    assert capped.delay(1, 30.0, jitter=0.0) == 2.0
    assert honour.delay(3, None, jitter=0.0) == 0.4  # half of 0.2 * 2**2
    assert honour.delay(10, None, jitter=1.0) == 5.0  # capped backoff


# -- (4): a breaker per host -------------------------------------------------------------------


def test_failures_open_the_hosts_breaker_and_only_its_own() -> None:
    with HostileRegistry(max_hold=5) as failing, HostileRegistry() as other:
        client = kernel(timeout=0.3, breaker_failures=2, breaker_cooldown=60)
        for _ in range(2):
            with pytest.raises(UpstreamTimeout):
                client.exchange("GET", url(failing, "silent/app"), limit=64)
        failing.reset()
        with pytest.raises(CircuitOpen) as info:
            client.exchange("GET", url(failing, "silent/app"), limit=64)
        assert info.value.host == host_of(httpx.URL(failing.url))
        assert 55 < info.value.retry_in <= 60 and info.value.status == 503
        assert sum(failing.requests.values()) == 0  # not asked
        assert client.exchange("GET", url(other, "plain/app"), limit=1024).status == 404
        assert client.breaker_state == "open"


# -- (5): bodies capped as they stream -----------------------------------------------------------


def _endless() -> Iterator[bytes]:
    for _ in range(1024):
        yield b" " * 65536


@pytest.mark.parametrize("declared", [True, False])
def test_a_body_over_its_cap_is_refused_and_an_error_body_only_loses_detail(
    declared: bool,
) -> None:
    status = iter([200, 503])

    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        reply = {"Content-Length": str(64 << 20)} if declared else {}
        return next(status), reply, _endless()

    with HTTPServer(route) as server:
        client = kernel(timeout=5.0, retry=RetryPolicy(retries=0))
        with pytest.raises(ResponseTooLarge, match="1024-byte limit") as info:
            client.exchange("GET", f"{server.url}/x", limit=1024)
        assert info.value.answer_status == 200
        answer = client.exchange("GET", f"{server.url}/x", limit=1024, error_limit=512)
        assert (answer.status, answer.data) == (503, b"")
        time.sleep(0.2)
        assert server.sent < 16 << 20


def test_redirects_are_followed_up_to_the_limit() -> None:
    def route(method: str, path: str, headers: dict[str, str]) -> Reply:
        hop = int(path.rsplit("/", 1)[1])
        if hop < 3:
            return 307, {"Location": f"/hop/{hop + 1}"}, b""
        return 200, {}, b"here"

    with HTTPServer(route) as server:
        assert kernel(max_redirects=3).exchange("GET", f"{server.url}/hop/0", limit=64).data == (
            b"here"
        )
        with pytest.raises(ProtocolFailure, match="more than 2 redirects"):
            kernel(max_redirects=2).exchange("GET", f"{server.url}/hop/0", limit=64)
        not_followed = kernel(max_redirects=0).exchange("GET", f"{server.url}/hop/0", limit=64)
        assert not_followed.status == 307


def test_hosts_are_keyed_with_their_port() -> None:
    assert host_of(httpx.URL("https://ghcr.io/v2/")) == "ghcr.io:443"
    assert host_of(httpx.URL("http://Registry.Example:5000/v2/")) == "registry.example:5000"
    assert host_of(httpx.URL("http://[::1]/v2/")) == "[::1]:80"
