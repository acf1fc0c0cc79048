"""An httpx transport that connects only to addresses the guard has vetted.

`GuardedBackend` is an httpcore network backend: for each new connection it runs
`check_host` on the URL's host (resolving it once) and opens the socket to a vetted IP address.
The URL is unchanged, so the `Host` header, TLS SNI and certificate hostname verification all use
the original name, while the socket goes to the address that was checked: no second DNS lookup,
no time-of-check/time-of-use gap. `GuardedTransport` also refuses schemes other than https (and
http for insecure registries) on every request, redirects and token realms included.

httpx 0.28 has no public way to give `HTTPTransport` a network backend, so the transport
replaces its connection pool with one built on the guarded backend (`_pool` is what
`HTTPTransport.handle_request` uses; the end-to-end guard tests fail loudly if that changes).
Environment proxies are never used: a proxy would make the connection instead of us.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from service.registry.guard import AddressPolicy, Resolver, check_host, check_scheme, system_resolve

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)

DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedBackend(httpcore.NetworkBackend):
    """Resolves and vets each host, then connects to the vetted addresses in order."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver = system_resolve) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = check_host(host, port, self._policy, self._resolve)
        options = list(socket_options or ())
        error: Exception | None = None
        for addr in addresses:
            try:
                return self._inner.connect_tcp(
                    str(addr),
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        assert error is not None
        raise error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("unix sockets are not used by the registry client")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """`HTTPTransport` whose every connection goes through `GuardedBackend`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        insecure_registries: Iterable[str] = (),
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> None:
        context = ssl_context or httpx.create_ssl_context(verify=True, trust_env=False)
        super().__init__(verify=context, trust_env=False, limits=limits)
        self._insecure = tuple(insecure_registries)
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(policy, resolve),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        check_scheme(url.scheme, url.host, port, self._insecure)
        return super().handle_request(request)
