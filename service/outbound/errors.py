"""What can go wrong in an outbound exchange. One root, `OutboundError`.

Every error says which upstream (`host`), a short machine label (`reason`, for metrics), whether
time ran out (`timeout`), and the HTTP status the service answers a caller with (`status`), so
that one error root for all operational errors can be built on it. The registry and Rekor
clients translate these into their own errors at their boundary; `DeadlineExceeded` passes
through them unchanged, since it is the request's own time that ran out, not an upstream's fault,
and must never be turned into a verdict.

| error | meaning | status |
|---|---|---|
| `UpstreamUnreachable` | connection refused or reset, DNS, TLS, a broken answer | 502 |
| `UpstreamTimeout` | no whole answer within the exchange's time | 504 |
| `HostBusy` | every connection slot for the host stayed taken (an `UpstreamTimeout`) | 504 |
| `CircuitOpen` | the host's breaker is open: not asked (`retry_in` seconds) | 503 |
| `ResponseTooLarge` | the answer is larger than the caller's cap (`answer_status`) | 502 |
| `ProtocolFailure` | too many redirects, an undecodable answer | 502 |
| `DeadlineExceeded` | the request's deadline passed, or it was answered (cancelled) | 504 |
"""

from __future__ import annotations

from typing import ClassVar

import httpx


class OutboundError(Exception):
    """An outbound exchange failed; see the module docstring for the fields."""

    status: ClassVar[int] = 502
    timeout: ClassVar[bool] = False
    default_reason: ClassVar[str] = "error"

    def __init__(self, message: str, *, host: str = "", cause: str = "", detail: str = "") -> None:
        super().__init__(message)
        self.host = host
        self.cause = cause  # the underlying exception's type name, if any
        self.detail = detail  # and its message
        self.reason = self.default_reason


class UpstreamUnreachable(OutboundError):  # noqa: N818 - reads as what it is
    """The host could not be reached, or broke off the exchange."""

    default_reason = "connect"


class UpstreamTimeout(OutboundError):  # noqa: N818 - reads as what it is
    """The host did not give a whole answer in time."""

    status = 504
    timeout = True
    default_reason = "timeout"


class HostBusy(UpstreamTimeout):
    """All connection slots for the host were taken for as long as this exchange could wait."""

    default_reason = "host-busy"


class CircuitOpen(OutboundError):  # noqa: N818 - reads as what it is
    """The host's circuit breaker is open: the exchange was not attempted."""

    status = 503
    default_reason = "circuit-open"

    def __init__(self, message: str, *, host: str, retry_in: float) -> None:
        super().__init__(message, host=host)
        self.retry_in = retry_in


class ResponseTooLarge(OutboundError):  # noqa: N818 - reads as what it is
    """The answer's body is larger than the cap the caller set for it."""

    default_reason = "too-large"

    def __init__(
        self, message: str, *, host: str, answer_status: int, headers: httpx.Headers
    ) -> None:
        super().__init__(message, host=host)
        self.answer_status = answer_status
        self.headers = headers


class ProtocolFailure(OutboundError):  # noqa: N818 - reads as what it is
    """The answer could not be used as HTTP: too many redirects, undecodable content."""

    default_reason = "protocol"


class DeadlineExceeded(OutboundError):  # noqa: N818 - reads as what it is
    """The request this work was for ran out of time, or was answered already."""

    status = 504
    timeout = True
    default_reason = "deadline"
