"""Every request's time budget: a `Scope` of SIGVERIFY_REQUEST_TIMEOUT seconds around it.

The scope is set before the view runs and cancelled when the request has been answered
(`teardown_request`), so work done for it in other threads (batch and admission jobs run in
copies of its context) stops there too: registry and Rekor exchanges, retries and waits for an
identical lookup in flight all end by the scope's deadline (`service.outbound.deadline`).

A request that read megabytes from upstreams (an index of thousands of platforms) leaves freed
heap behind; it is given back to the system at its end (glibc's `malloc_trim`, with the two
arenas `sigverify serve` asks for), so what a registry serves does not stay in a worker's RSS.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable

from flask import Flask, g

from service.outbound import Scope, deadline
from service.state import services


def install(app: Flask) -> None:
    """Give each request its scope, and end it with the request."""

    @app.before_request
    def _start() -> None:
        scope = Scope.starting(services().settings.request_timeout)
        g.sigverify_scope = scope
        g.sigverify_scope_token = deadline.enter(scope)

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        scope = g.pop("sigverify_scope", None)
        token = g.pop("sigverify_scope_token", None)
        if scope is not None:
            scope.cancel()
            if scope.received >= TRIM_AFTER_BYTES:
                release_freed_memory()
        if token is not None:
            deadline.leave(token)


TRIM_AFTER_BYTES = 1 << 20


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, looked up among the symbols the process has loaded already."""
    try:
        trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Collect what is only held in reference cycles, then give the heap that freed objects
    left back to the system, where the C library can."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
