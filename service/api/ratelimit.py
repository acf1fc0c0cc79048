"""Per-tenant rate limits, counted in the shared cache (Redis) so every pod sees one budget.

A fixed one-minute window per caller: the tenant when API tokens are on, else the client
address. A verification costs one unit per image (a batch of 10 costs 10). Over the budget, the
answer is 429 with `Retry-After`. If the cache cannot be reached the request is let through
(logged): a cache outage must not stop releases, and the other limits (body, manifest, blob
and signature caps, timeouts) still bound the work.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

from flask import request

from service.api.auth import current_tenant
from service.api.errors import ApiProblem
from service.state import services

log = logging.getLogger(__name__)

WINDOW = 60.0


def caller() -> str:
    """Whose budget a request spends: the tenant, or the client address without auth."""
    tenant = current_tenant()
    return f"tenant:{tenant}" if tenant is not None else f"addr:{request.remote_addr or '-'}"


def charge(cost: int = 1, clock: Callable[[], float] = time.time) -> None:
    """Spend `cost` units of the caller's budget this minute, or raise a 429 problem."""
    svc = services()
    limit = svc.settings.rate_limit_per_minute
    if limit <= 0:
        return
    now = clock()
    window = math.floor(now / WINDOW)
    used = svc.cache.incr(f"ratelimit:{caller()}:{window}", cost, WINDOW * 2)
    if used is None:
        log.warning("rate limit not enforced: the cache is unreachable")
        return
    if used > limit:
        retry = max(1, math.ceil((window + 1) * WINDOW - now))
        raise ApiProblem(
            429,
            "Too Many Requests",
            f"the rate limit of {limit} verifications a minute is spent; retry in {retry} s",
            kind="rate-limited",
            headers={"Retry-After": str(retry)},
        )
