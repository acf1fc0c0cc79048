"""The outbound kernel: every HTTP exchange with a registry or Rekor goes through it.

`HttpKernel` (deadlines over whole exchanges, a connection limit and a circuit breaker per
host, retries honouring `Retry-After`), the request `Scope` its deadlines come from
(`service.outbound.deadline`), and one error root, `OutboundError`. Depends on httpx only.
"""

from __future__ import annotations

from service.outbound.breaker import BreakerState, CircuitBreaker
from service.outbound.deadline import Deadline, Scope
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
from service.outbound.kernel import Answer, HttpKernel, KernelConfig, RetryPolicy

__all__ = [
    "Answer",
    "BreakerState",
    "CircuitBreaker",
    "CircuitOpen",
    "Deadline",
    "DeadlineExceeded",
    "HostBusy",
    "HttpKernel",
    "KernelConfig",
    "OutboundError",
    "ProtocolFailure",
    "ResponseTooLarge",
    "RetryPolicy",
    "Scope",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
