"""`HttpKernel`: one way out for every outbound HTTP exchange (registries, Rekor).

What it guarantees, for each call of `exchange`:

1. a deadline over the whole attempt: waiting for a connection slot, connecting, TLS, sending,
   the headers and the body, each network operation bounded by what is left of it and of the
   request's scope (`service.outbound.deadline`), so a peer that drips bytes is cut off when
   the time is up, not when it stops;
2. at most `host_connections` exchanges in flight per upstream host (a slot is waited for
   within the deadline), so one slow host cannot take every connection another host needs;
3. retries of what is worth retrying (the policy's statuses, connection errors, and timeouts
   when the policy says so), with exponential backoff and equal jitter, honouring a server's
   `Retry-After` (seconds or an HTTP-date) only when the wait fits the request's time left;
4. a circuit breaker per host: consecutive failures (timeouts, connection errors, 5xx, 429)
   open it, and while it is open the host is not asked at all (`CircuitOpen`);
5. bodies streamed and refused as soon as they pass their cap (`Content-Length` first), never
   decoded (`accept-encoding: identity`), so nothing large is buffered.

The `httpx.Client` is created on first use, and again in a forked child (gunicorn forks after
the parent may have used it). Redirects are followed here (up to `max_redirects`), each hop
taking its own host's slot. Errors are `service.outbound.errors`; anything else a transport
raises (the registry's address guard refusing a host) passes through unchanged.
"""

from __future__ import annotations

import email.utils
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import httpx

from service.outbound import deadline
from service.outbound.breaker import CLOSED, HALF_OPEN, OPEN, BreakerState, CircuitBreaker
from service.outbound.errors import (
    CircuitOpen,
    DeadlineExceeded,
    HostBusy,
    OutboundError,
    ProtocolFailure,
    ResponseTooLarge,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from service.outbound.transport import KernelTransport

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
MIN_ATTEMPT = 0.1  # a retry is not started with less time than this left
_SEVERITY: dict[BreakerState, int] = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying again.

    `retry_after_cap`: None honours a server's Retry-After in full when it fits the request's
    time left (and gives up otherwise); a number caps it instead (the Rekor client's way).
    """

    retries: int = 2
    backoff: float = 0.2
    max_backoff: float = 5.0
    statuses: frozenset[int] = RETRY_STATUSES
    timeouts: bool = False
    retry_after_cap: float | None = None

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")

    def delay(self, attempt: int, retry_after: float | None, jitter: float) -> float:
        """The wait before attempt number `attempt` (1 for the first retry)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** (attempt - 1))
        wait = ceiling / 2 + ceiling / 2 * jitter
        if retry_after is not None:
            asked = (
                retry_after
                if self.retry_after_cap is None
                else min(retry_after, self.retry_after_cap)
            )
            wait = max(wait, asked)
        return wait


@dataclass(frozen=True)
class KernelConfig:
    """How one kernel talks to its upstreams. `timeout` bounds each network operation and each
    whole attempt; `headers` go on every request."""

    timeout: float = 10.0
    host_connections: int = 8
    max_redirects: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker_failures: int = 5
    breaker_cooldown: float = 30.0
    headers: Mapping[str, str] = field(default_factory=dict)
    trust_env: bool = False
    max_hosts: int = 1024  # hosts whose slots and breakers are kept; idle ones are forgotten

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout}")
        if self.host_connections < 1:
            raise ValueError(f"host_connections must be at least 1, got {self.host_connections}")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer, its body read (empty for HEAD, or an error body over its cap)."""

    status: int
    headers: httpx.Headers
    data: bytes
    url: str


@dataclass(frozen=True)
class _Call:
    method: str
    url: httpx.URL
    headers: Mapping[str, str] | None
    params: Mapping[str, str] | None
    json: Any
    limit: int
    error_limit: int | None


@dataclass
class _Host:
    slots: threading.BoundedSemaphore
    breaker: CircuitBreaker
    busy: int = 0


def host_of(url: httpx.URL) -> str:
    """`host:port` of a URL, the port made explicit, as slots and breakers are keyed."""
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host.lower()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def retry_after_seconds(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """A `Retry-After` header in seconds from now: delta-seconds or an HTTP-date; None if
    absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class HttpKernel:
    """See the module docstring. Thread-safe; one per client per worker process.

    `transport` builds the httpx transport (default: `KernelTransport` on plain sockets);
    `breaker` builds a host's breaker (default: `breaker_failures` / `breaker_cooldown` on
    `clock`); `observe` is told `"request"` for every attempt sent and `"retry"` for every
    retry, with the host. `sleep` defaults to a wait that ends early when the request is
    cancelled.
    """

    def __init__(
        self,
        config: KernelConfig,
        *,
        transport: Callable[[], httpx.BaseTransport] | None = None,
        breaker: Callable[[str], CircuitBreaker] | None = None,
        observe: Callable[[str, str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self._transport = transport or (lambda: KernelTransport(trust_env=config.trust_env))
        self._new_breaker = breaker or (
            lambda _host: CircuitBreaker(
                config.breaker_failures, config.breaker_cooldown, clock=clock
            )
        )
        self._observe = observe or (lambda _event, _host: None)
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}
        self._http: httpx.Client | None = None
        self._pid = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        pid = os.getpid()
        with self._lock:
            if self._http is None or self._pid != pid:
                # after a fork the parent's connections are not ours: start afresh
                self._http = httpx.Client(
                    transport=self._transport(),
                    timeout=httpx.Timeout(self.config.timeout),
                    follow_redirects=False,
                    trust_env=self.config.trust_env,
                    headers={"accept-encoding": "identity", **self.config.headers},
                )
                self._pid = pid
            return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None and self._pid == os.getpid():
                self._http.close()
            self._http = None

    # -- hosts --------------------------------------------------------------------------------

    def _host(self, name: str) -> _Host:
        with self._lock:
            found = self._hosts.get(name)
            if found is None:
                if len(self._hosts) >= self.config.max_hosts:
                    self._forget_idle()
                found = _Host(
                    threading.BoundedSemaphore(self.config.host_connections),
                    self._new_breaker(name),
                )
                self._hosts[name] = found
            return found

    def _forget_idle(self) -> None:
        """Drop hosts nothing is using and whose breakers remember nothing (lock held)."""
        for name in [
            n
            for n, h in self._hosts.items()
            if h.busy == 0 and h.breaker.state == CLOSED and h.breaker.consecutive_failures == 0
        ]:
            del self._hosts[name]

    def breaker_for(self, url: str) -> CircuitBreaker:
        """The breaker of `url`'s host."""
        return self._host(host_of(httpx.URL(url))).breaker

    @property
    def breaker_state(self) -> BreakerState:
        """The worst state among the hosts' breakers (for one gauge, whatever the hosts)."""
        with self._lock:
            breakers = [h.breaker for h in self._hosts.values()]
        return max((b.state for b in breakers), key=_SEVERITY.__getitem__, default=CLOSED)

    @contextmanager
    def _slot(self, name: str, host: _Host, attempt: deadline.Deadline) -> Iterator[None]:
        wait = min(attempt.remaining(), deadline.scope_left())
        if wait <= 0 or not host.slots.acquire(timeout=wait):
            if deadline.scope_over():
                raise DeadlineExceeded(f"no time left to ask {name}", host=name)
            raise HostBusy(
                f"{self.config.host_connections} exchanges with {name} already in flight",
                host=name,
            )
        with self._lock:
            host.busy += 1
        try:
            yield
        finally:
            with self._lock:
                host.busy -= 1
            host.slots.release()

    # -- exchanges ----------------------------------------------------------------------------

    def exchange(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        limit: int,
        error_limit: int | None = None,
    ) -> Answer:
        """The first answer that is not worth retrying, or the last one when retries ran out.

        `limit` caps a 2xx body (`ResponseTooLarge` beyond it); other bodies are capped by
        `error_limit` and dropped beyond it, or, when it is None, by `limit` too.
        """
        call = _Call(method, httpx.URL(url), headers, params, json, limit, error_limit)
        name = host_of(call.url)
        host = self._host(name)
        policy = self.config.retry
        last: Answer | OutboundError | None = None
        retry_after: float | None = None
        for attempt in range(policy.retries + 1):
            if attempt:
                wait = policy.delay(attempt, retry_after, self._jitter())
                if wait + MIN_ATTEMPT > deadline.scope_left():
                    break  # the wait does not fit the request's time: the last answer stands
                self._wait(wait, name)
                self._observe("retry", name)
            scope = deadline.current()
            if scope is not None:
                scope.check(f"{method} {name}")
            if not host.breaker.allow():
                raise CircuitOpen(
                    f"{name} is failing; circuit breaker open, not asking",
                    host=name,
                    retry_in=host.breaker.retry_in(),
                ) from (last if isinstance(last, OutboundError) else None)
            self._observe("request", name)
            retry_after = None
            try:
                answer = self._attempt(call, name, host)
            except HostBusy:
                host.breaker.abandon()  # never asked: says nothing about the host
                raise
            except UpstreamTimeout as exc:
                host.breaker.failure()
                if deadline.scope_over():
                    raise DeadlineExceeded(
                        f"{method} {name}: the request's time ran out ({exc.cause or exc})",
                        host=name,
                        cause=exc.cause,
                    ) from None
                if not policy.timeouts:
                    raise
                last = exc
                continue
            except UpstreamUnreachable as exc:
                host.breaker.failure()
                last = exc
                continue
            except (ResponseTooLarge, ProtocolFailure):
                host.breaker.success()  # it answered; what it said is the caller's problem
                raise
            except BaseException:
                host.breaker.abandon()  # refused before asking (the guard), or our own error
                raise
            if answer.status >= 500 or answer.status == 429:
                host.breaker.failure()
            else:
                host.breaker.success()
            if answer.status not in policy.statuses:
                return answer
            last = answer
            retry_after = retry_after_seconds(answer.headers.get("retry-after"))
        if isinstance(last, Answer):
            return last
        assert last is not None
        raise last

    def _wait(self, seconds: float, name: str) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
            return
        scope = deadline.current()
        if scope is None:
            time.sleep(seconds)
        elif scope.sleep(seconds):
            raise DeadlineExceeded(f"retry of {name}: the request was answered", host=name)

    def _attempt(self, call: _Call, name: str, host: _Host) -> Answer:
        """One attempt, redirects followed, within one deadline; httpx errors mapped."""
        client = self._client()
        attempt = deadline.Deadline.after(self.config.timeout, self._clock)
        request = client.build_request(
            call.method, call.url, headers=call.headers, params=call.params, json=call.json
        )
        hops = 0
        hop_name, hop_host = name, host
        while True:
            with self._slot(hop_name, hop_host, attempt), deadline.exchange(attempt):
                response = self._send(client, request, hop_name, attempt)
                try:
                    if response.next_request is not None and hops < self.config.max_redirects:
                        hops += 1
                        request = response.next_request
                        hop_name = host_of(request.url)
                        hop_host = self._host(hop_name)
                        continue
                    if response.next_request is not None and self.config.max_redirects:
                        raise ProtocolFailure(
                            f"{name}: more than {self.config.max_redirects} redirects", host=name
                        )
                    data = self._read(response, hop_name, attempt, call.limit, call.error_limit)
                    return Answer(response.status_code, response.headers, data, str(request.url))
                except httpx.TimeoutException as exc:
                    raise _timeout(hop_name, exc, attempt, self.config.timeout) from None
                except httpx.DecodingError as exc:
                    raise ProtocolFailure(f"{hop_name}: {exc}", host=hop_name) from None
                except httpx.TransportError as exc:
                    raise UpstreamUnreachable(
                        f"{hop_name}: {type(exc).__name__}: {exc}",
                        host=hop_name,
                        cause=type(exc).__name__,
                        detail=str(exc),
                    ) from None
                finally:
                    response.close()

    def _send(
        self, client: httpx.Client, request: httpx.Request, name: str, attempt: deadline.Deadline
    ) -> httpx.Response:
        try:
            return client.send(request, stream=True, follow_redirects=False)
        except httpx.TimeoutException as exc:
            raise _timeout(name, exc, attempt, self.config.timeout) from None
        except httpx.TransportError as exc:
            cause = type(exc).__name__
            raise UpstreamUnreachable(
                f"{name}: {cause}: {exc}", host=name, cause=cause, detail=str(exc)
            ) from None

    @staticmethod
    def _read(
        response: httpx.Response,
        name: str,
        attempt: deadline.Deadline,
        limit: int,
        error_limit: int | None,
    ) -> bytes:
        if response.request.method == "HEAD":
            # No body, whatever Content-Length says the GET would have; reading the (empty)
            # end hands the connection back to the pool.
            response.read()
            return b""
        ok = 200 <= response.status_code < 300
        cap = limit if ok or error_limit is None else error_limit
        declared = response.headers.get("content-length", "")
        chunks: list[bytes] = []
        total = 0
        try:
            if declared.isdigit() and int(declared) > cap:
                raise _OverCapError(f"{declared} bytes, more than the {cap}-byte limit")
            # As received: a chunk size would buffer. (A transport that answered with the
            # whole body in hand, as httpx.MockTransport does, has it read already.)
            received = [response.content] if response.is_stream_consumed else response.iter_raw()
            for chunk in received:
                if attempt.expired or deadline.scope_over():
                    raise UpstreamTimeout(
                        f"no whole answer from {name} within the deadline",
                        host=name,
                        cause="deadline",
                    )
                total += len(chunk)
                if total > cap:
                    raise _OverCapError(f"more than the {cap}-byte limit")
                chunks.append(chunk)
            scope = deadline.current()
            if scope is not None:
                scope.add_received(total)
        except _OverCapError as exc:
            if ok or error_limit is None:
                raise ResponseTooLarge(
                    str(exc),
                    host=name,
                    answer_status=response.status_code,
                    headers=response.headers,
                ) from None
            return b""  # an oversized error body only loses its detail
        return b"".join(chunks)


def _timeout(
    name: str, exc: httpx.TimeoutException, attempt: deadline.Deadline, seconds: float
) -> UpstreamTimeout:
    """A timeout of one operation, or of the whole attempt when its deadline has passed."""
    if attempt.expired:
        return UpstreamTimeout(
            f"no whole answer from {name} within the {seconds:g}s deadline",
            host=name,
            cause="deadline",
        )
    cause = type(exc).__name__
    return UpstreamTimeout(f"{name}: {cause}", host=name, cause=cause, detail=str(exc))


class _OverCapError(Exception):
    pass
