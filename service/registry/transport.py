"""An httpx transport that connects only to addresses the guard has vetted.

`GuardedBackend` is an httpcore network backend: for each new connection it runs
`check_host` on the URL's host (resolving it once) and opens the socket to a vetted IP address.
The URL is unchanged, so the `Host` header, TLS SNI and certificate hostname verification all use
the original name, while the socket goes to the address that was checked: no second DNS lookup,
no time-of-check/time-of-use gap. `GuardedTransport` also refuses schemes other than https (and
http for insecure registries) on every request, redirects and token realms included.

The transport is the outbound kernel's (`service.outbound.transport.KernelTransport`) with the
guarded backend inside its deadline-keeping one, so every operation on a vetted connection is
also bounded by the exchange's deadline (the end-to-end guard tests fail loudly if the pool
stops using our backend). Environment proxies are never used: a proxy would make the
connection instead of us.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from service.outbound.transport import KernelTransport
from service.registry.guard import AddressPolicy, Resolver, check_host, check_scheme, system_resolve

SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


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


class GuardedTransport(KernelTransport):
    """The outbound kernel's transport (`service.outbound.transport`: every network operation
    bounded by the exchange's deadline) whose every connection goes through `GuardedBackend`."""

    def __init__(
        self,
        policy: AddressPolicy,
        *,
        insecure_registries: Iterable[str] = (),
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(GuardedBackend(policy, resolve), ssl_context=ssl_context)
        self._insecure = tuple(insecure_registries)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        check_scheme(url.scheme, url.host, port, self._insecure)
        return super().handle_request(request)
