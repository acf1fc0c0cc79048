"""Network streams that honour the exchange's deadline on every operation.

httpx's timeouts are per operation: a peer that sends one byte a second never trips a 10 s read
timeout, however long the whole answer takes. `DeadlineBackend` wraps an httpcore network
backend so that every connect, TLS handshake, read and write on its streams is given at most
`min(operation timeout, deadline.time_left())`, and none starts once that is zero: a drip of
headers or body ends when the exchange's deadline (or the request's) does.

`KernelTransport` is an `httpx.HTTPTransport` whose connection pool uses such a backend around
any other (the registry's outbound-address guard, or httpcore's plain sockets). httpx 0.28 has
no public way to give `HTTPTransport` a network backend, so the transport replaces its pool with
one built on ours (`_pool` is what `HTTPTransport.handle_request` uses; the slow-peer tests fail
loudly if that changes). The pool has no overall connection cap: the kernel bounds connections
per host, and the number of exchanges in flight is bounded by the requests' own concurrency, so
one host's stuck connections can never exhaust a pool that another host needs.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from service.outbound import deadline

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)
KEEPALIVE_CONNECTIONS = 32
KEEPALIVE_EXPIRY = 5.0


def _bounded(timeout: float | None, error: type[Exception]) -> float:
    left = deadline.time_left()
    if left <= 0:
        raise error("the exchange's deadline has passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _bounded(timeout, httpcore.ConnectTimeout)
        )
        return DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """Connects through `inner` (default: plain sockets) within the deadline; its streams are
    `DeadlineStream`s."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host,
            port,
            timeout=_bounded(timeout, httpcore.ConnectTimeout),
            local_address=local_address,
            socket_options=socket_options,
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, timeout=_bounded(timeout, httpcore.ConnectTimeout), socket_options=socket_options
        )
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class KernelTransport(httpx.HTTPTransport):
    """`HTTPTransport` on a `DeadlineBackend` around `backend`, with no overall connection cap."""

    def __init__(
        self,
        backend: httpcore.NetworkBackend | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trust_env: bool = False,
    ) -> None:
        context = ssl_context or httpx.create_ssl_context(verify=True, trust_env=trust_env)
        super().__init__(verify=context, trust_env=trust_env)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=None,
            max_keepalive_connections=KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=DeadlineBackend(backend),
        )
