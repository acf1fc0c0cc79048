"""Transparency-log access: the Rekor v1 client, its circuit breaker and errors, trust roots."""

from __future__ import annotations

from service.outbound import CircuitBreaker
from service.tlog.errors import TlogError, TlogProtocolError, TlogTimeout, TlogUnavailable
from service.tlog.rekor import RekorClient, RekorStats

__all__ = [
    "CircuitBreaker",
    "RekorClient",
    "RekorStats",
    "TlogError",
    "TlogProtocolError",
    "TlogTimeout",
    "TlogUnavailable",
]
